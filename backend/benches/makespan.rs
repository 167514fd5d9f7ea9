//! Evacuation makespan against its lower bound: how long draining a node takes when the
//! executor's scheduler (`execute::decide::startable`, the same function the executor runs)
//! starts steps under its global and per-node limits, versus the best any schedule could do.
//!
//! `cargo bench -p pve-rebalancer --bench makespan`
//!
//! Step duration model (the executor's own wall time is not the point here): a fixed 5 s of
//! task set-up plus the guest's memory and local disk at 1 GiB/s (a 10 GbE migration network),
//! plus 10 s for a container's restart. Every evacuation step leaves the drained node, so no
//! schedule beats `max(Σ durations / min(per_node, global), longest step)`; the ratio to that
//! bound is what the scheduler costs (1.00 = optimal).

use backend::execute::decide::{job_steps, startable, Limits};
use shared::api::StepState;
use shared::evacuate::{evacuate, EvacuationRequest};
use shared::GuestKind;

const GIB: f64 = (1u64 << 30) as f64;

fn duration(step: &shared::PlanStep) -> f64 {
    let restart = if step.kind == GuestKind::Lxc { 10.0 } else { 0.0 };
    5.0 + (step.mem_bytes + step.disk_bytes) as f64 / GIB + restart
}

/// Simulated wall time of the whole job, and how many steps never became startable.
fn makespan(plan: &shared::Plan, limits: Limits) -> (f64, usize) {
    let mut steps = job_steps(plan, None).expect("a valid plan");
    let dur: Vec<f64> = steps
        .iter()
        .map(|s| {
            duration(plan.steps.iter().find(|p| p.vmid == s.vmid && p.to == s.to).expect("its plan step"))
        })
        .collect();
    let (mut now, mut running): (f64, Vec<(f64, usize)>) = (0.0, Vec::new());
    loop {
        for pos in startable(&steps, limits) {
            steps[pos].state = StepState::Running;
            running.push((now + dur[pos], pos));
        }
        let Some(i) = (0..running.len()).min_by(|&a, &b| running[a].0.total_cmp(&running[b].0)) else {
            break;
        };
        let (end, pos) = running.swap_remove(i);
        now = end;
        steps[pos].state = StepState::Done;
    }
    let stuck = steps.iter().filter(|s| s.state == StepState::Queued).count();
    (now, stuck)
}

fn main() {
    println!("| cluster | drained node | steps | GiB | limits (global / per node) | makespan | bound | ratio | never started |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (seed, nodes, guests) in [(1u64, 8usize, 400usize), (2, 16, 1600), (3, 32, 3000)] {
        let snapshot = shared::testkit::cluster(seed, nodes, guests);
        let node = snapshot.nodes[0].name.clone();
        let request = EvacuationRequest { nodes: vec![node.clone()], ..Default::default() };
        let plan = evacuate(&snapshot, &request);
        let total: f64 = plan.steps.iter().map(duration).sum();
        let longest = plan.steps.iter().map(duration).fold(0.0, f64::max);
        let gib: f64 = plan.steps.iter().map(|s| (s.mem_bytes + s.disk_bytes) as f64 / GIB).sum();
        for (global, per_node) in [(1, 1), (2, 1), (4, 2), (8, 4)] {
            let (span, stuck) = makespan(&plan, Limits { global, per_node });
            let bound = (total / per_node.min(global) as f64).max(longest);
            println!(
                "| {nodes}×{guests} (seed {seed}) | {node} | {} | {gib:.0} | {global} / {per_node} | {:.0} s | {:.0} s | {:.3} | {stuck} |",
                plan.steps.len(),
                span,
                bound,
                span / bound
            );
        }
    }
}
