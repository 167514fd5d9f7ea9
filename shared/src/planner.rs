//! The planner's stable entry points: [`plan`], [`apply`], [`node_loads`] and [`guest_load`]. The
//! work is done by [`crate::engine`]; evacuation, return-home, best-node and N+1 checks live in
//! [`crate::evacuate`] and [`crate::best_node`].

use crate::engine::problem::{guest_loads, method_weights};
use crate::model::{ClusterSnapshot, Guest, Node};
use crate::plan::{Method, Mode, NodeLoad, Plan, PlanRequest};

/// The figure of `method`/`mode` one guest adds to its node (`Weighted`: the default-weighted
/// sum of its memory, CPU and disk figures, each relative to nothing; prefer per-resource calls).
pub fn guest_load(guest: &Guest, method: Method, mode: Mode) -> f64 {
    let l = guest_loads(guest, mode);
    match method {
        Method::Memory => l[0],
        Method::Cpu => l[1],
        Method::Disk => l[2],
        Method::Weighted => {
            let w = method_weights(method, &PlanRequest::default());
            w[0] * l[0] + w[1] * l[1] + w[2] * l[2]
        }
    }
}

/// Capacity of a node for `method`.
fn node_total(node: &Node, method: Method) -> f64 {
    match method {
        Method::Memory => node.mem_total as f64,
        Method::Cpu => f64::from(node.cpus),
        Method::Disk => node.disk_total as f64,
        Method::Weighted => 100.0,
    }
}

/// Per-node load for `method`/`mode`, in snapshot node order. `Weighted` reports the
/// default-weighted use in percent (used = percent, total = 100).
pub fn node_loads(snapshot: &ClusterSnapshot, method: Method, mode: Mode) -> Vec<NodeLoad> {
    if method == Method::Weighted {
        let w = method_weights(method, &PlanRequest::default());
        let per = [Method::Memory, Method::Cpu, Method::Disk].map(|m| node_loads(snapshot, m, mode));
        return (0..snapshot.nodes.len())
            .map(|i| {
                let pct: f64 = (0..3).map(|d| w[d] * per[d][i].percent).sum();
                NodeLoad { node: snapshot.nodes[i].name.clone(), used: pct, total: 100.0, percent: pct }
            })
            .collect();
    }
    snapshot
        .nodes
        .iter()
        .map(|node| {
            let used = match (method, mode) {
                (_, Mode::Assigned) | (_, Mode::Percentile) => {
                    let base = if mode == Mode::Assigned {
                        0.0
                    } else {
                        let own: f64 =
                            snapshot.guests_on(&node.name).map(|g| guest_load(g, method, Mode::Used)).sum();
                        (node_used(node, method) - own).max(0.0)
                    };
                    base + snapshot.guests_on(&node.name).map(|g| guest_load(g, method, mode)).sum::<f64>()
                }
                _ => node_used(node, method),
            };
            let total = node_total(node, method);
            NodeLoad { node: node.name.clone(), used, total, percent: percent(used, total) }
        })
        .collect()
}

fn node_used(node: &Node, method: Method) -> f64 {
    match method {
        Method::Memory => node.mem_used as f64,
        Method::Cpu => node.cpu_used,
        Method::Disk => node.disk_used as f64,
        Method::Weighted => 0.0,
    }
}

fn percent(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        used / total * 100.0
    } else {
        0.0
    }
}

/// Plans migrations that even out `request.method` across the online, non-maintenance nodes,
/// fixes hard-rule violations and drains maintenance nodes (see [`crate::engine`]).
///
/// Every plan says whether the cluster it leaves can absorb the loss of its largest node
/// (`Plan::n_plus_one`); with `keep_n_plus_one` a plan that would break an N+1 that holds now
/// stops at its longest prefix that keeps it.
pub fn plan(snapshot: &ClusterSnapshot, request: &PlanRequest) -> Plan {
    let run = |request: &PlanRequest| {
        let mut plan = crate::engine::run(snapshot, request, crate::engine::problem::Task::default());
        plan.n_plus_one = crate::evacuate::n_plus_one(&apply(snapshot, &plan), request);
        plan
    };
    let mut plan = run(request);
    if request.keep_n_plus_one && plan.n_plus_one.as_ref().is_some_and(|n| !n.ok) {
        plan = keep_n_plus_one(snapshot, request, plan, run);
    }
    if let Some(note) = dynamic_balancer_note(snapshot) {
        plan.notes.insert(0, note);
    }
    plan
}

/// The plan cut to its longest prefix of balancing steps after which N+1 still holds (when it
/// holds before any step), re-planned with that many balancing moves (fewer if the capped plan
/// still breaks it) so every figure is the shorter plan's; the rest is in `remaining`.
fn keep_n_plus_one(
    snapshot: &ClusterSnapshot,
    request: &PlanRequest,
    full: Plan,
    run: impl Fn(&PlanRequest) -> Plan,
) -> Plan {
    let holds = |steps: usize| {
        let prefix = Plan { steps: full.steps[..steps].to_vec(), ..full.clone() };
        crate::evacuate::n_plus_one(&apply(snapshot, &prefix), request).is_none_or(|n| n.ok)
    };
    if !holds(0) {
        let mut plan = full;
        plan.notes.push("N+1 does not hold before the plan either; the plan is not cut for it".into());
        return plan;
    }
    // Largest prefix that holds (binary search: one failover check per halving).
    let (mut lo, mut hi) = (0, full.steps.len());
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if holds(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // Re-plan with that many balancing moves; a capped search may choose other moves (the
    // exhaustive phase honours the cap), so check again and give up one move at a time.
    let mut cap =
        full.steps[..lo].iter().filter(|s| s.purpose == crate::plan::StepPurpose::Balance).count() as u32;
    let mut plan = loop {
        let shorter = if cap == 0 {
            PlanRequest { level: Some(1), ..request.clone() }
        } else {
            PlanRequest { max_moves: cap, ..request.clone() }
        };
        let plan = run(&shorter);
        if cap == 0 || plan.n_plus_one.as_ref().is_none_or(|n| n.ok) {
            break plan;
        }
        cap -= 1;
    };
    plan.request = request.clone();
    plan.notes.push(format!(
        "stopped after {} of {} steps: the next would leave the cluster unable to absorb the loss of its largest node (keep_n_plus_one)",
        plan.steps.len(),
        full.steps.len()
    ));
    plan
}

/// Why HA-managed guests are not in the plan when PVE's own balancer is on (the rule engine
/// leaves them out, see `rules::ha`).
fn dynamic_balancer_note(snapshot: &ClusterSnapshot) -> Option<String> {
    let b = snapshot.dynamic_balancer.as_ref()?;
    let n = snapshot.guests.iter().filter(|g| g.ha_managed).count();
    (n > 0).then(|| {
        format!(
            "{n} HA-managed guest(s) left to PVE's automatic HA rebalancing (crs ha={}, \
             ha-auto-rebalance=1), so the two balancers do not undo each other's moves",
            b.scheduler
        )
    })
}

/// The snapshot as it would be once `plan` has run: guests on their targets, node usage moved.
pub fn apply(snapshot: &ClusterSnapshot, plan: &Plan) -> ClusterSnapshot {
    let mut next = snapshot.clone();
    let at: std::collections::HashMap<u32, usize> =
        next.guests.iter().enumerate().map(|(i, g)| (g.vmid, i)).collect();
    for step in &plan.steps {
        let Some(guest) = at.get(&step.vmid).map(|&i| &mut next.guests[i]) else { continue };
        guest.node = step.to.clone();
        let (mem, cpu, disk) =
            if guest.is_running() { (guest.mem_used, guest.cpu_used, guest.disk_used) } else { (0, 0.0, 0) };
        for node in next.nodes.iter_mut() {
            if node.name == step.from {
                node.mem_used = node.mem_used.saturating_sub(mem);
                node.cpu_used = (node.cpu_used - cpu).max(0.0);
                node.disk_used = node.disk_used.saturating_sub(disk);
            } else if node.name == step.to {
                node.mem_used += mem;
                node.cpu_used += cpu;
                node.disk_used += disk;
            }
        }
    }
    next
}

#[cfg(test)]
mod tests;
