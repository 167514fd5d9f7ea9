//! A first planner: best-improvement greedy. Each round it takes the most loaded node, tries every
//! movable guest on it against every allowed target, and keeps the single move that lowers the
//! spread (max − min node %) the most; it stops when the spread is within `balanciness`, when no
//! move gains `min_gain` points, or at `max_moves`. Requiring a gain is what keeps it from
//! overshooting (the fault behind ProxLB's ping-pong): applying its plan and planning again
//! proposes nothing.
//!
//! The balancing-engine issue replaces this with local search over moves and swaps, transient
//! capacity and the full rule set; the types in `plan` stay.

use crate::model::{ClusterSnapshot, Guest, GuestKind, Node, NodeStatus};
use crate::plan::{Method, MigrationKind, Mode, NodeLoad, Plan, PlanRequest, PlanStep};
use crate::rules::GuestRules;

/// The figure of `method`/`mode` one guest adds to its node.
pub fn guest_load(guest: &Guest, method: Method, mode: Mode) -> f64 {
    if !(guest.is_running() || mode == Mode::Assigned && method == Method::Disk) {
        // A stopped guest uses nothing and is assigned nothing but its disk.
        return 0.0;
    }
    match (method, mode) {
        (Method::Memory, Mode::Used) => guest.mem_used as f64,
        (Method::Memory, Mode::Assigned) => guest.mem_max as f64,
        (Method::Cpu, Mode::Used) => guest.cpu_used,
        (Method::Cpu, Mode::Assigned) => guest.cpus,
        (Method::Disk, Mode::Used) => guest.disk_used as f64,
        (Method::Disk, Mode::Assigned) => guest.disk_max as f64,
        (Method::Memory, _) => guest.mem_used as f64,
        (Method::Cpu, _) => guest.cpu_used,
        (Method::Disk, _) => guest.disk_used as f64,
        (Method::Weighted, _) => 0.0,
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

/// Per-node load for `method`/`mode`, in snapshot node order.
pub fn node_loads(snapshot: &ClusterSnapshot, method: Method, mode: Mode) -> Vec<NodeLoad> {
    snapshot
        .nodes
        .iter()
        .map(|node| {
            let used = match (method, mode) {
                (Method::Memory, Mode::Used) => node.mem_used as f64,
                (Method::Cpu, Mode::Used) => node.cpu_used,
                (Method::Disk, Mode::Used) => node.disk_used as f64,
                (Method::Weighted, _) => 0.0,
                (_, Mode::Assigned) => {
                    snapshot.guests_on(&node.name).map(|g| guest_load(g, method, mode)).sum()
                }
                (Method::Memory, _) => node.mem_used as f64,
                (Method::Cpu, _) => node.cpu_used,
                (Method::Disk, _) => node.disk_used as f64,
            };
            let total = node_total(node, method);
            NodeLoad { node: node.name.clone(), used, total, percent: percent(used, total) }
        })
        .collect()
}

fn percent(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        used / total * 100.0
    } else {
        0.0
    }
}

/// Nodes that take part in balancing: online and not in maintenance.
fn balanced(node: &Node) -> bool {
    node.status == NodeStatus::Online && !node.maintenance
}

/// max − min percent over the balanced nodes.
fn spread(loads: &[NodeLoad], eligible: &[bool]) -> f64 {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (l, _) in loads.iter().zip(eligible).filter(|(_, e)| **e) {
        lo = lo.min(l.percent);
        hi = hi.max(l.percent);
    }
    if hi >= lo {
        hi - lo
    } else {
        0.0
    }
}

fn migration_kind(guest: &Guest) -> MigrationKind {
    match (guest.is_running(), guest.kind) {
        (false, _) => MigrationKind::Offline,
        (true, GuestKind::Qemu) => MigrationKind::Live,
        (true, GuestKind::Lxc) => MigrationKind::Restart,
    }
}

/// Why a guest may not move at all, if it may not.
fn immovable_reason(guest: &Guest, rules: &GuestRules) -> Option<String> {
    if guest.template {
        Some("template".into())
    } else if rules.ignored {
        Some("ignored by tag".into())
    } else {
        guest.lock.as_ref().map(|lock| format!("locked ({lock})"))
    }
}

struct Candidate {
    guest: usize,
    target: usize,
    spread_after: f64,
}

/// Plans migrations that even out `request.method` across the online, non-maintenance nodes.
pub fn plan(snapshot: &ClusterSnapshot, request: &PlanRequest) -> Plan {
    let (method, mode) = (request.method, request.mode);
    let before = node_loads(snapshot, method, mode);
    let mut loads = before.clone();
    let eligible: Vec<bool> = snapshot.nodes.iter().map(balanced).collect();
    let node_index = |name: &str| snapshot.nodes.iter().position(|n| n.name == name);
    let rules: Vec<GuestRules> = snapshot.guests.iter().map(|g| GuestRules::of(g, snapshot)).collect();
    // Memory is checked on every move, whatever the method: it is the one resource PVE cannot
    // overcommit safely.
    let mut mem_used: Vec<f64> = snapshot.nodes.iter().map(|n| n.mem_used as f64).collect();
    let mut placement: Vec<Option<usize>> = snapshot.guests.iter().map(|g| node_index(&g.node)).collect();
    let mut steps = Vec::new();
    let mut notes = Vec::new();

    let spread_before = spread(&before, &eligible);
    if spread_before <= request.balanciness {
        notes.push(format!(
            "balanced: spread {spread_before:.1} points is within balanciness {:.1}",
            request.balanciness
        ));
    }
    // Rounds are bounded too: a guest may move more than once, which merges steps.
    let mut rounds = 0usize;
    while steps.len() < request.max_moves as usize && rounds < 4 * request.max_moves as usize + 16 {
        let current = spread(&loads, &eligible);
        if current <= request.balanciness {
            break;
        }
        let Some(hot) = (0..loads.len())
            .filter(|&i| eligible[i])
            .max_by(|&a, &b| loads[a].percent.total_cmp(&loads[b].percent).then(b.cmp(&a)))
        else {
            break;
        };
        let mut best: Option<Candidate> = None;
        for (gi, guest) in snapshot.guests.iter().enumerate() {
            if placement[gi] != Some(hot) || immovable_reason(guest, &rules[gi]).is_some() {
                continue;
            }
            let delta = guest_load(guest, method, mode);
            if delta <= 0.0 {
                continue;
            }
            let mem = if guest.is_running() { guest.mem_used as f64 } else { 0.0 };
            for (ti, target) in snapshot.nodes.iter().enumerate() {
                if ti == hot || !eligible[ti] || !rules[gi].allows(&target.name) {
                    continue;
                }
                let capacity = target.mem_total.saturating_sub(request.memory_reserve) as f64;
                if mem_used[ti] + mem > capacity {
                    continue;
                }
                if violates_anti_affinity(snapshot, &rules, &placement, gi, ti) {
                    continue;
                }
                let mut trial = loads.clone();
                shift(&mut trial, hot, ti, delta);
                let after = spread(&trial, &eligible);
                let better = match &best {
                    None => true,
                    Some(b) => {
                        after < b.spread_after - 1e-9
                            || ((after - b.spread_after).abs() <= 1e-9
                                && (guest.mem_used, guest.vmid)
                                    < (snapshot.guests[b.guest].mem_used, snapshot.guests[b.guest].vmid))
                    }
                };
                if better {
                    best = Some(Candidate { guest: gi, target: ti, spread_after: after });
                }
            }
        }
        let Some(best) = best.filter(|b| current - b.spread_after >= request.min_gain) else {
            notes.push(format!(
                "stopped at spread {current:.1} points: no allowed move off {} improves it by {:.1} points",
                loads[hot].node, request.min_gain
            ));
            break;
        };
        let guest = &snapshot.guests[best.guest];
        let delta = guest_load(guest, method, mode);
        let (src_before, dst_before) = (loads[hot].percent, loads[best.target].percent);
        shift(&mut loads, hot, best.target, delta);
        if guest.is_running() {
            mem_used[hot] -= guest.mem_used as f64;
            mem_used[best.target] += guest.mem_used as f64;
        }
        placement[best.guest] = Some(best.target);
        let resource = match method {
            Method::Memory => "memory",
            Method::Cpu => "cpu",
            Method::Disk => "disk",
            Method::Weighted => "load",
        };
        let reason = format!(
            "{} {resource} {:.1}% → {:.1}%, {} {:.1}% → {:.1}%",
            loads[hot].node,
            src_before,
            loads[hot].percent,
            loads[best.target].node,
            dst_before,
            loads[best.target].percent
        );
        let to = loads[best.target].node.clone();
        // A guest moved twice in one plan gets one step to its final node (none if it is back home).
        match steps.iter().position(|st: &PlanStep| st.vmid == guest.vmid) {
            Some(i) if steps[i].from == to => {
                steps.remove(i);
            }
            Some(i) => {
                steps[i].to = to;
                steps[i].reason = reason;
            }
            None => steps.push(PlanStep {
                vmid: guest.vmid,
                name: guest.name.clone(),
                kind: guest.kind,
                from: loads[hot].node.clone(),
                to,
                migration: migration_kind(guest),
                mem_bytes: guest.mem_used,
                reason,
                purpose: Default::default(),
                depends_on: vec![],
                disk_bytes: 0,
            }),
        }
        rounds += 1;
    }
    let spread_after = spread(&loads, &eligible);
    Plan {
        request: request.clone(),
        steps,
        before,
        after: loads,
        spread_before,
        spread_after,
        notes,
        imbalance_before: 0.0,
        imbalance_after: 0.0,
        objective_before: 0.0,
        objective_after: 0.0,
        cv_before: 0.0,
        cv_after: 0.0,
        gib_moved: 0.0,
        why_not: vec![],
        diagnostics: vec![],
    }
}

fn shift(loads: &mut [NodeLoad], from: usize, to: usize, delta: f64) {
    loads[from].used -= delta;
    loads[to].used += delta;
    for i in [from, to] {
        loads[i].percent = percent(loads[i].used, loads[i].total);
    }
}

/// Would `guest` on node `target` share a node with another member of one of its anti-affinity
/// groups?
fn violates_anti_affinity(
    snapshot: &ClusterSnapshot,
    rules: &[GuestRules],
    placement: &[Option<usize>],
    guest: usize,
    target: usize,
) -> bool {
    rules[guest].anti_affinity.iter().any(|group| {
        snapshot.guests.iter().enumerate().any(|(other, _)| {
            other != guest && placement[other] == Some(target) && rules[other].anti_affinity.contains(group)
        })
    })
}

/// The snapshot as it would be once `plan` has run: guests on their targets, node usage moved.
pub fn apply(snapshot: &ClusterSnapshot, plan: &Plan) -> ClusterSnapshot {
    let mut next = snapshot.clone();
    for step in &plan.steps {
        let Some(guest) = next.guests.iter_mut().find(|g| g.vmid == step.vmid) else { continue };
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
