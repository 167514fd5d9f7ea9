//! Plan time on seeded clusters: `cargo bench -p shared`.

use criterion::{criterion_group, criterion_main, Criterion};
use shared::plan::PlanRequest;
use shared::testkit::cluster;
use std::hint::black_box;

fn request() -> PlanRequest {
    PlanRequest { balanciness: 5.0, max_moves: 200, ..Default::default() }
}

fn plan_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for (nodes, guests) in [(8, 200), (32, 3_000), (64, 10_000), (500, 100_000)] {
        let snapshot = cluster(42, nodes, guests);
        let req = request();
        group.bench_function(format!("{nodes}x{guests}"), |b| {
            b.iter(|| shared::planner::plan(black_box(&snapshot), black_box(&req)))
        });
    }
    group.finish();
}

criterion_group!(benches, plan_time);
criterion_main!(benches);
