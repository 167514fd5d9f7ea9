//! The balancing engine: a dense model of the snapshot ([`problem`]), an incrementally kept
//! objective ([`objective`]), best-improvement local search ([`search`]) and dependencies for a
//! parallel executor ([`order`]). [`run`] turns a snapshot, a request and a task into a [`Plan`].

pub mod objective;
pub mod order;
pub mod problem;
pub mod search;

use crate::model::{ClusterSnapshot, GuestKind, GuestStatus};
use crate::plan::{Method, MigrationKind, NodeLoad, Plan, PlanRequest, PlanStep, StepPurpose, WhyNot};
use crate::rules::{Diagnostic, RuleSource, Severity};
use objective::State;
use problem::{Problem, Task, DIMS, GIB};

/// Plans for `task` and reports the result in units.
pub fn run(snapshot: &ClusterSnapshot, request: &PlanRequest, task: Task) -> Plan {
    let p = problem::build(snapshot, request, task);
    let outcome = search::run(&p);
    let initial = State::new(&p);
    let deps = order::dependencies(&p, &outcome.actions);

    // Replay for the reasons, in units, as each step sees the cluster.
    let mut replay = State::new(&p);
    let label = match p.method {
        Method::Memory => "memory",
        Method::Cpu => "cpu",
        Method::Disk => "disk",
        Method::Weighted => "load",
    };
    let mut steps = Vec::with_capacity(outcome.actions.len());
    for (a, depends_on) in outcome.actions.iter().zip(deps) {
        let (from_before, to_before) = (replay.use_pct(&p, a.from), replay.use_pct(&p, a.to));
        replay.shift(&p, a.guest, a.to);
        replay.commit();
        let (from_after, to_after) = (replay.use_pct(&p, a.from), replay.use_pct(&p, a.to));
        let guest = p.guest(a.guest);
        let (from, to) = (&p.nodes[a.from].name, &p.nodes[a.to].name);
        let units = format!(
            "{from} {label} {from_before:.1}% → {from_after:.1}%, {to} {to_before:.1}% → {to_after:.1}%"
        );
        let reason = match a.purpose {
            StepPurpose::Balance => units,
            StepPurpose::Evacuate => format!("leaves drained node {from}; {units}"),
            StepPurpose::Park => format!("parked on {to} to make room for a swap; {units}"),
            StepPurpose::ReturnHome => format!("returns to its home {to}; {units}"),
            StepPurpose::Rule => format!("{}; {units}", rule_reason(&p, a.guest, a.from)),
        };
        let running = guest.status == GuestStatus::Running;
        steps.push(PlanStep {
            vmid: guest.vmid,
            name: guest.name.clone(),
            kind: guest.kind,
            from: from.clone(),
            to: to.clone(),
            migration: match (running, guest.kind) {
                (false, _) => MigrationKind::Offline,
                (true, GuestKind::Qemu) => MigrationKind::Live,
                (true, GuestKind::Lxc) => MigrationKind::Restart,
            },
            mem_bytes: if running { guest.mem_used } else { 0 },
            reason,
            purpose: a.purpose,
            depends_on,
            disk_bytes: guest.local_disk_bytes,
        });
    }

    let st = &outcome.state;
    let mut notes = Vec::new();
    let spread_before = initial.spread(&p);
    if steps.is_empty() && spread_before <= p.request.balanciness && outcome.stuck.is_empty() {
        notes.push(format!(
            "balanced: spread {spread_before:.1} points is within balanciness {:.1}",
            p.request.balanciness
        ));
    }
    notes.extend(outcome.notes.iter().cloned());
    notes.extend(psi_note(snapshot, request));
    let bandwidth = problem::bandwidth(snapshot, request);
    if !steps.is_empty() || outcome.priced_out.is_some() {
        notes.push(format!("moves priced at {}", bandwidth.describe()));
    }
    let mut why_not = Vec::new();
    for (b, why) in &outcome.stuck {
        for &g in &p.bundles[*b] {
            let guest = p.guest(g);
            notes.push(format!("{} ({}) stays on {}: {why}", guest.vmid, guest.name, guest.node));
            why_not.push(WhyNot {
                vmid: guest.vmid,
                name: guest.name.clone(),
                node: guest.node.clone(),
                reason: why.clone(),
            });
        }
    }
    why_not.extend(hot_node_why_not(&p, st, &why_not));
    let mut diagnostics = p.diagnostics.clone();
    for (i, why) in &p.outside {
        let g = &snapshot.guests[*i];
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            source: RuleSource::Engine,
            message: format!("guest {} is {why}; left alone", g.vmid),
            vmids: vec![g.vmid],
        });
    }
    let gib_moved =
        (0..p.guests.len()).filter(|&g| st.pos[g] != p.guests[g].home).map(|g| p.guests[g].gib).sum();
    Plan {
        request: request.clone(),
        steps,
        before: loads(&p, &initial),
        after: loads(&p, st),
        spread_before,
        spread_after: st.spread(&p),
        notes,
        imbalance_before: initial.imbalance(&p),
        imbalance_after: st.imbalance(&p),
        objective_before: initial.objective(&p),
        objective_after: st.objective(&p),
        cv_before: cv(&p, &initial),
        cv_after: cv(&p, st),
        gib_moved,
        why_not,
        diagnostics,
        remaining: outcome.remaining.clone(),
        priced_out: outcome.priced_out.as_ref().map(|n| crate::plan::PricedOut {
            spread: n.spread,
            vmid: p.guests[n.guest].vmid,
            from: p.nodes[n.from].name.clone(),
            to: p.nodes[n.to].name.clone(),
            secs: p.guests[n.guest].secs,
            gain: n.gain,
            needed: n.needed,
            pays_at: n.pays_at,
        }),
        migration_secs: outcome.actions.iter().map(|a| p.guests[a.guest].secs).sum(),
        n_plus_one: None,
        bandwidth: Some(bandwidth),
    }
}

/// `mode: psi` on a cluster where no online node reports pressure (PVE before 9.0 has none):
/// said, not silently planned as `mode: used` (the plan's notes; the CLI warns on stderr too).
pub fn psi_note(snapshot: &ClusterSnapshot, request: &PlanRequest) -> Option<String> {
    let online = || snapshot.nodes.iter().filter(|n| n.status == crate::model::NodeStatus::Online);
    (request.mode == crate::plan::Mode::Psi && online().all(|n| n.pressure.is_none())).then(|| {
        "mode psi: no node reports pressure (PVE exposes it from 9.0 on), so no pressure trigger \
         fires and the plan balances on current use, as mode used"
            .to_owned()
    })
}

fn rule_reason(p: &Problem, g: usize, from: usize) -> String {
    let info = &p.guests[g];
    if info.allowed.as_ref().is_some_and(|a| a.binary_search(&from).is_err()) {
        let src = p.policies.guest(info.vmid).and_then(|pol| pol.allowed_source.as_ref());
        match src {
            Some(s) => format!("pinned elsewhere by {s}"),
            None => "pinned elsewhere".into(),
        }
    } else if !info.apart_hard.is_empty() {
        "anti-affinity: shares a node with a group mate".into()
    } else {
        "affinity: joins its group".into()
    }
}

fn loads(p: &Problem, st: &State) -> Vec<NodeLoad> {
    let d = match p.method {
        Method::Memory => Some(0),
        Method::Cpu => Some(1),
        Method::Disk => Some(2),
        Method::Weighted => None,
    };
    (0..p.nodes.len())
        .map(|n| {
            let (used, total) = match d {
                Some(d) => (st.load[n][d], p.nodes[n].capacity[d]),
                None => (st.use_pct(p, n), 100.0),
            };
            let percent = if total > 0.0 { used / total * 100.0 } else { 0.0 };
            NodeLoad { node: p.nodes[n].name.clone(), used, total, percent }
        })
        .collect()
}

/// Coefficient of variation of node use over the balanced nodes, divided by √(n−1) so it lies in
/// 0..1 (PVE 9.2's imbalance figure).
fn cv(p: &Problem, st: &State) -> f64 {
    let u: Vec<f64> = (0..p.nodes.len()).filter(|&n| p.nodes[n].balanced).map(|n| st.use_pct(p, n)).collect();
    if u.len() < 2 {
        return 0.0;
    }
    let mean = u.iter().sum::<f64>() / u.len() as f64;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = u.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / u.len() as f64;
    var.sqrt() / mean / ((u.len() - 1) as f64).sqrt()
}

/// Why the guests on the hottest balanced node stay (at most 20).
fn hot_node_why_not(p: &Problem, st: &State, already: &[WhyNot]) -> Vec<WhyNot> {
    let Some(hot) = (0..p.nodes.len())
        .filter(|&n| p.nodes[n].balanced)
        .max_by(|&a, &b| st.use_pct(p, a).total_cmp(&st.use_pct(p, b)).then(b.cmp(&a)))
    else {
        return vec![];
    };
    let mut out = Vec::new();
    for g in (0..p.guests.len()).filter(|&g| st.pos[g] == hot && st.pos[g] == p.guests[g].home) {
        let info = &p.guests[g];
        if already.iter().any(|w| w.vmid == info.vmid)
            || (0..DIMS).all(|d| info.load[d] * p.weights[d] <= 0.0)
        {
            continue;
        }
        let reason = if let Some(why) = &info.frozen {
            why.clone()
        } else if p.bundles[info.bundle].len() > 1 {
            "moves only with its affinity group".to_owned()
        } else {
            let targets: Vec<usize> = (0..p.nodes.len()).filter(|&t| t != hot && p.allows(g, t)).collect();
            if targets.is_empty() {
                "rules allow no other node".to_owned()
            } else if targets.iter().all(|&t| !st.has_room(p, g, t)) {
                "no other allowed node has room".to_owned()
            } else if targets.iter().all(|&t| st.apart_mates_on(p, g, t) > 0) {
                "anti-affinity rules out every node with room".to_owned()
            } else {
                format!(
                    "no move pays for its {:.0} s of migration at {} s per point (size {:.1} GiB)",
                    info.secs,
                    p.request.seconds_per_point,
                    info.mem / GIB
                )
            }
        };
        let guest = p.guest(g);
        out.push(WhyNot { vmid: guest.vmid, name: guest.name.clone(), node: guest.node.clone(), reason });
        if out.len() >= 20 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests;
