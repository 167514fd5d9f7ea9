//! For each dump of `compare --ours-only` (`COMPARE_DUMP=DIR`): the plan's prefixes, and the GiB
//! and moves by which its spread first reaches a given figure (ProxLB's, to compare ends):
//! `cargo run -p shared --release --example trajectory -- DIR [SECONDS_PER_POINT] [id=spread ...]`.

use shared::model::{ClusterSnapshot, NodeStatus};
use shared::plan::{Method, Mode, Plan, PlanRequest};

/// max − min memory use over the online nodes outside maintenance (the harness's yardstick).
fn loads(s: &ClusterSnapshot, req: &PlanRequest) -> Vec<(f64, f64)> {
    let pol = shared::rules::policies(s, &req.rules);
    let keep: Vec<&str> = s
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Online && !n.maintenance && !pol.maintenance_nodes.contains(&n.name)
        })
        .map(|n| n.name.as_str())
        .collect();
    shared::planner::node_loads(s, Method::Memory, Mode::Used)
        .into_iter()
        .filter(|l| keep.contains(&l.node.as_str()))
        .map(|l| (l.percent, l.total))
        .collect()
}

fn spread(s: &ClusterSnapshot, req: &PlanRequest) -> f64 {
    let pct: Vec<f64> = loads(s, req).into_iter().map(|l| l.0).collect();
    pct.iter().cloned().fold(f64::MIN, f64::max) - pct.iter().cloned().fold(f64::MAX, f64::min)
}

/// The least GiB any plan must move to bring the spread to `target` (ignoring guest sizes):
/// the use above the band's top must leave, the room below its bottom must be filled.
fn lower_bound(l: &[(f64, f64)], target: f64) -> f64 {
    let gib = |pct: f64, total: f64| pct / 100.0 * total / (1u64 << 30) as f64;
    (0..=2000)
        .map(|i| i as f64 * 0.05)
        .map(|top| {
            let above: f64 = l.iter().map(|&(u, c)| gib((u - top).max(0.0), c)).sum();
            let below: f64 = l.iter().map(|&(u, c)| gib((top - target - u).max(0.0), c)).sum();
            above.max(below)
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: trajectory DIR [SECONDS_PER_POINT] [id=spread ...]");
    let rest: Vec<String> = args.collect();
    let price: Option<f64> = rest.first().and_then(|a| a.parse().ok());
    let targets: Vec<(String, f64)> = rest
        .iter()
        .filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_string(), v.parse().expect("a spread"))))
        .collect();
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("a readable directory").flatten().map(|e| e.path()).collect();
    files.sort();
    let (mut at_moves, mut at_gib) = (0, 0.0);
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let id = f.file_stem().unwrap_or_default().to_string_lossy().to_string();
        let (mut req, snap): (PlanRequest, ClusterSnapshot) =
            serde_json::from_slice(&std::fs::read(f).expect("readable")).expect("a dump");
        if let Some(p) = price {
            req.seconds_per_point = p;
        }
        let plan = shared::planner::plan(&snap, &req);
        let target = targets.iter().find(|(k, _)| *k == id).map(|t| t.1);
        let mut reached = None;
        let mut gib = 0.0;
        for k in 0..=plan.steps.len() {
            if k > 0 {
                let s = &plan.steps[k - 1];
                gib += (s.mem_bytes + s.disk_bytes) as f64 / (1u64 << 30) as f64;
            }
            let prefix = Plan { steps: plan.steps[..k].to_vec(), ..plan.clone() };
            let sp = spread(&shared::planner::apply(&snap, &prefix), &req);
            if reached.is_none() && target.is_some_and(|t| sp <= t) {
                reached = Some((k, gib, sp));
            }
        }
        let end = spread(&shared::planner::apply(&snap, &plan), &req);
        print!("{id:<14} end {end:>5.1} moves {:>4} GiB {:>6.0}", plan.steps.len(), plan.gib_moved);
        if let Some(t) = target {
            // Mandatory moves (drains, rule repairs) first: what any plan moves whatever it balances.
            let floor = shared::planner::plan(&snap, &PlanRequest { level: Some(1), ..req.clone() });
            let after = shared::planner::apply(&snap, &floor);
            let bound = floor.gib_moved + lower_bound(&loads(&after, &req), t);
            print!("   mandatory {:.0} + bound {bound:.0} GiB", floor.gib_moved);
        }
        if let (Some(t), Some((k, g, sp))) = (target, reached) {
            at_moves += k;
            at_gib += g;
            print!("   reaches {t:.1} at move {k} ({sp:.1}), {g:.0} GiB");
        }
        println!("  notes: {:?}", plan.notes);
    }
    println!("sum at targets: {at_moves} moves, {at_gib:.0} GiB");
}
