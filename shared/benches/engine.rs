//! Plan time on seeded clusters: `cargo bench -p shared --bench engine`.
//!
//! `plan/*`: at most 200 balancing moves (the figures recorded since the first engine work);
//! `uncapped/*`: the default request (no move cap: until the stop band or no move pays), the
//! targets of issue 18 (32 × 3,000 < 200 ms, 500 × 100,000 < 5 s).

use criterion::{criterion_group, criterion_main, Criterion};
use shared::plan::PlanRequest;
use shared::testkit::cluster;
use std::hint::black_box;

fn capped() -> PlanRequest {
    PlanRequest { balanciness: 5.0, max_moves: 200, ..Default::default() }
}

fn uncapped() -> PlanRequest {
    PlanRequest { balanciness: 5.0, max_moves: PlanRequest::UNCAPPED, ..Default::default() }
}

fn bench(c: &mut Criterion, group: &str, req: PlanRequest, sizes: &[(usize, usize)]) {
    let mut group = c.benchmark_group(group);
    group.sample_size(10);
    for &(nodes, guests) in sizes {
        let snapshot = cluster(42, nodes, guests);
        group.bench_function(format!("{nodes}x{guests}"), |b| {
            b.iter(|| shared::planner::plan(black_box(&snapshot), black_box(&req)))
        });
    }
    group.finish();
}

fn plan_time(c: &mut Criterion) {
    bench(c, "plan", capped(), &[(8, 200), (32, 3_000), (64, 10_000), (500, 100_000)]);
    bench(c, "uncapped", uncapped(), &[(32, 3_000), (500, 100_000)]);
}

criterion_group!(benches, plan_time);
criterion_main!(benches);
