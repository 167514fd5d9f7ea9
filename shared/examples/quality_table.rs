//! Prints the engine quality table of docs/BENCHMARKS.md (a report, not a test):
//! `cargo run -p shared --release --example quality_table`.

use shared::plan::PlanRequest;
use shared::planner::plan;
use shared::testkit::cluster;

fn main() {
    let req = PlanRequest { balanciness: 5.0, max_moves: 200, ..Default::default() };
    println!("| scenario | spread before → after (pts) | CV before → after | moves | GiB moved |");
    println!("|---|---|---|---|---|");
    for (seed, nodes, guests) in [(1, 4, 40), (2, 8, 200), (3, 16, 800), (42, 32, 3000), (42, 64, 10_000)] {
        let s = cluster(seed, nodes, guests);
        let p = plan(&s, &req);
        println!(
            "| seed {seed}, {nodes}×{guests} | {:.1} → {:.1} | {:.3} → {:.3} | {} | {:.0} |",
            p.spread_before,
            p.spread_after,
            p.cv_before,
            p.cv_after,
            p.steps.len(),
            p.gib_moved
        );
        if p.steps.is_empty() {
            println!("{:?} {:?}", p.notes, p.why_not.iter().take(3).collect::<Vec<_>>());
        }
    }
}
