//! One plan on a seeded cluster, for profilers (`valgrind --tool=callgrind`) and quick timing:
//! `cargo run -p shared --release --example plan_once -- NODES GUESTS [SEED] [MAX_MOVES] [SECONDS_PER_POINT]`
//! (MAX_MOVES 0 = uncapped, the default).

use shared::plan::PlanRequest;
use shared::testkit::cluster;

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (nodes, guests) = (args.first().copied().unwrap_or(32), args.get(1).copied().unwrap_or(3000));
    let seed = args.get(2).copied().unwrap_or(42);
    let snapshot = cluster(seed, nodes as usize, guests as usize);
    let max_moves = args.get(3).copied().unwrap_or(0) as u32;
    let seconds_per_point = args.get(4).map(|&s| s as f64).unwrap_or(shared::plan::SECONDS_PER_POINT);
    let req = PlanRequest { balanciness: 5.0, max_moves, seconds_per_point, ..Default::default() };
    let start = std::time::Instant::now();
    let p = shared::planner::plan(&snapshot, &req);
    let took = start.elapsed();
    println!(
        "{nodes}x{guests} seed {seed}: {} steps, spread {:.1} -> {:.1}, imbalance {:.3} -> {:.3}, {:.0} GiB, {:.1} ms; remaining {:?}; N+1 {:?}; {:?}",
        p.steps.len(),
        p.spread_before,
        p.spread_after,
        p.imbalance_before,
        p.imbalance_after,
        p.gib_moved,
        took.as_secs_f64() * 1e3,
        p.remaining,
        p.n_plus_one.map(|n| (n.node, n.ok)),
        p.notes
    );
}
