//! Replays the engine on request/snapshot pairs dumped by `compare --ours-only` with
//! `COMPARE_DUMP=DIR` (tuning without a simulator):
//! `cargo run -p shared --release --example replay -- DIR [SECONDS_PER_POINT]`.

use shared::model::ClusterSnapshot;
use shared::plan::PlanRequest;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: replay DIR [SECONDS_PER_POINT]");
    let price: Option<f64> = args.next().map(|a| a.parse().expect("a number of seconds"));
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("a readable directory").flatten().map(|e| e.path()).collect();
    files.sort();
    let (mut moves, mut gib) = (0, 0.0);
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let text = std::fs::read(f).expect("readable");
        let (mut req, snapshot): (PlanRequest, ClusterSnapshot) =
            serde_json::from_slice(&text).expect("a dump");
        if let Some(p) = price {
            req.seconds_per_point = p;
        }
        let t = Instant::now();
        let plan = shared::planner::plan(&snapshot, &req);
        let took = t.elapsed();
        moves += plan.steps.len();
        gib += plan.gib_moved;
        println!(
            "{:<14} spread {:>5.1} -> {:>5.1}  moves {:>4}  GiB {:>6.0}  secs {:>6.0}  {:?}",
            f.file_stem().unwrap_or_default().to_string_lossy(),
            plan.spread_before,
            plan.spread_after,
            plan.steps.len(),
            plan.gib_moved,
            plan.migration_secs,
            took
        );
        if let Some(n) = &plan.priced_out {
            println!(
                "{:<14} priced out: vm {} {} -> {} would take {:.0} s for {:.2} points (needs {:.2}, pays from {:.0} s/point)",
                "", n.vmid, n.from, n.to, n.secs, n.gain, n.needed, n.pays_at
            );
        }
    }
    println!("total: {moves} moves, {gib:.0} GiB");
}
