//! One yardstick for both plans: moves applied to OUR snapshot with `shared::planner::apply`,
//! then spread, CV, GiB moved and hard-rule violations computed by the same functions.

use shared::plan::{MigrationKind, Plan, PlanStep, StepPurpose};
use shared::rules::{policies, RuleConfig, Strength};
use shared::{ClusterSnapshot, GuestKind, Method, Mode, NodeStatus};
use std::collections::{BTreeMap, BTreeSet};

const GIB: f64 = (1u64 << 30) as f64;

/// Imbalance figures over the online nodes that are not in maintenance.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Balance {
    /// max − min node memory use, in points.
    pub spread: f64,
    /// Coefficient of variation of node memory use, divided by √(n−1) (0–1).
    pub cv: f64,
}

/// Nodes taking part in balance: online and not drained.
fn counted(s: &ClusterSnapshot, rules: &RuleConfig) -> BTreeSet<String> {
    let pol = policies(s, rules);
    s.nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Online && !n.maintenance && !pol.maintenance_nodes.contains(&n.name)
        })
        .map(|n| n.name.clone())
        .collect()
}

pub fn balance(s: &ClusterSnapshot, rules: &RuleConfig) -> Balance {
    let keep = counted(s, rules);
    let pct: Vec<f64> = shared::planner::node_loads(s, Method::Memory, Mode::Used)
        .into_iter()
        .filter(|l| keep.contains(&l.node))
        .map(|l| l.percent)
        .collect();
    if pct.is_empty() {
        return Balance::default();
    }
    let n = pct.len() as f64;
    let max = pct.iter().cloned().fold(f64::MIN, f64::max);
    let min = pct.iter().cloned().fold(f64::MAX, f64::min);
    let mean = pct.iter().sum::<f64>() / n;
    let sd = (pct.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n).sqrt();
    let cv = if mean > 0.0 && n > 1.0 { sd / mean / (n - 1.0).sqrt() } else { 0.0 };
    Balance { spread: max - min, cv }
}

/// A plan made of `moves` (vmid, from, to), for `apply`. `template` supplies the other fields.
pub fn plan_of(template: &Plan, s: &ClusterSnapshot, moves: &[(u32, String, String)]) -> Plan {
    let steps = moves
        .iter()
        .map(|(vmid, from, to)| {
            let g = s.guests.iter().find(|g| g.vmid == *vmid);
            PlanStep {
                vmid: *vmid,
                name: g.map(|g| g.name.clone()).unwrap_or_default(),
                kind: g.map(|g| g.kind).unwrap_or(GuestKind::Qemu),
                from: from.clone(),
                to: to.clone(),
                migration: MigrationKind::Live,
                mem_bytes: g.map(|g| g.mem_used).unwrap_or(0),
                reason: String::new(),
                purpose: StepPurpose::Balance,
                depends_on: vec![],
                disk_bytes: 0,
            }
        })
        .collect();
    Plan { steps, ..template.clone() }
}

/// Moves of a plan as (vmid, from, to).
pub fn moves_of(p: &Plan) -> Vec<(u32, String, String)> {
    p.steps.iter().map(|s| (s.vmid, s.from.clone(), s.to.clone())).collect()
}

/// GiB crossing the network: used memory of each moved running guest plus its local disk, per
/// migration (a guest moved twice counts twice).
pub fn gib_moved(s: &ClusterSnapshot, moves: &[(u32, String, String)]) -> f64 {
    let by_id: BTreeMap<u32, &shared::Guest> = s.guests.iter().map(|g| (g.vmid, g)).collect();
    moves
        .iter()
        .filter_map(|(v, _, _)| by_id.get(v))
        .map(|g| (if g.is_running() { g.mem_used } else { 0 } + g.local_disk_bytes) as f64 / GIB)
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// The part of [`gib_moved`] that is local disk (copied by every migration of such a guest,
/// running or not).
pub fn local_gib_moved(s: &ClusterSnapshot, moves: &[(u32, String, String)]) -> f64 {
    let by_id: BTreeMap<u32, &shared::Guest> = s.guests.iter().map(|g| (g.vmid, g)).collect();
    moves.iter().filter_map(|(v, _, _)| by_id.get(v)).map(|g| g.local_disk_bytes as f64 / GIB).sum::<f64>()
        + 0.0
}

/// Hard-rule violations of a placement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Violations {
    /// Guests on a node their hard pin does not allow.
    pub pin: usize,
    /// Extra members sharing a node in hard anti-affinity groups.
    pub apart: usize,
    /// Extra nodes a hard affinity group is spread over.
    pub together: usize,
    /// Ignored guests the plan moves.
    pub ignored_moved: usize,
    /// Nodes above their memory capacity.
    pub capacity: usize,
    /// Running guests left on a maintenance node.
    pub maintenance: usize,
    /// Moves of guests that are not where the plan says (stale or unknown).
    pub bad_source: usize,
}

impl Violations {
    pub fn total(&self) -> usize {
        self.pin
            + self.apart
            + self.together
            + self.ignored_moved
            + self.capacity
            + self.maintenance
            + self.bad_source
    }

    /// `3 (2 apart, 1 pin)` or `0`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.pin, "pin"),
            (self.apart, "anti-aff."),
            (self.together, "aff."),
            (self.ignored_moved, "ignored moved"),
            (self.capacity, "over capacity"),
            (self.maintenance, "left on maint."),
            (self.bad_source, "bad source"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "0".into()
        } else {
            format!("{} ({})", self.total(), parts.join(", "))
        }
    }
}

/// Checks `after` (= `before` with `moves` applied) against the hard rules `before` carries
/// (tags, HA rules, `rules`) and against memory capacity.
pub fn violations(
    before: &ClusterSnapshot,
    after: &ClusterSnapshot,
    moves: &[(u32, String, String)],
    rules: &RuleConfig,
) -> Violations {
    let pol = policies(before, rules);
    let at: BTreeMap<u32, &str> = after.guests.iter().map(|g| (g.vmid, g.node.as_str())).collect();
    let was: BTreeMap<u32, &str> = before.guests.iter().map(|g| (g.vmid, g.node.as_str())).collect();
    let mut v = Violations::default();
    for g in &after.guests {
        if let Some(allowed) = pol.guest(g.vmid).and_then(|p| p.allowed.as_ref()) {
            if !allowed.iter().any(|n| n == &g.node) {
                v.pin += 1;
            }
        }
    }
    let mut seen = BTreeSet::new();
    // Replayed in order: a guest may move twice (a parking hop, then on).
    let mut now: BTreeMap<u32, &str> = was.clone();
    for (vmid, from, to) in moves {
        if pol.guest(*vmid).is_some_and(|p| p.ignored.is_some()) && seen.insert(*vmid) {
            v.ignored_moved += 1;
        }
        if now.get(vmid) != Some(&from.as_str()) {
            v.bad_source += 1;
        }
        now.insert(*vmid, to.as_str());
    }
    let distinct = |vmids: &[u32]| -> (usize, usize) {
        let nodes: Vec<&str> = vmids.iter().filter_map(|v| at.get(v).copied()).collect();
        let d: BTreeSet<&str> = nodes.iter().copied().collect();
        (nodes.len(), d.len())
    };
    for g in pol.apart.iter().filter(|g| g.strength == Strength::Hard) {
        let (n, d) = distinct(&g.vmids);
        v.apart += n - d;
    }
    for g in pol.together.iter().filter(|g| g.strength == Strength::Hard) {
        let (_, d) = distinct(&g.vmids);
        v.together += d.saturating_sub(1);
    }
    v.capacity = after.nodes.iter().filter(|n| n.mem_used > n.mem_total).count();
    let drained: BTreeSet<&str> = after
        .nodes
        .iter()
        .filter(|n| n.maintenance || pol.maintenance_nodes.contains(&n.name))
        .map(|n| n.name.as_str())
        .collect();
    v.maintenance =
        after.guests.iter().filter(|g| g.is_running() && drained.contains(g.node.as_str())).count();
    v
}

/// Everything measured about one plan on one snapshot.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub after: Balance,
    pub migrations: usize,
    /// Memory and local disk; of it local disk: `local_gib`.
    pub gib: f64,
    pub local_gib: f64,
    pub violations: Violations,
}

impl Outcome {
    /// Spread no higher and no more hard-rule violations: the yardstick of the like-for-like views.
    pub fn as_good_as(&self, other: &Outcome) -> bool {
        self.after.spread <= other.after.spread && self.violations.total() <= other.violations.total()
    }
}

pub fn evaluate(
    s: &ClusterSnapshot,
    template: &Plan,
    moves: &[(u32, String, String)],
    rules: &RuleConfig,
) -> Outcome {
    let after = shared::planner::apply(s, &plan_of(template, s, moves));
    Outcome {
        after: balance(&after, rules),
        migrations: moves.len(),
        gib: gib_moved(s, moves),
        local_gib: local_gib_moved(s, moves),
        violations: violations(s, &after, moves, rules),
    }
}

/// The shortest prefix of `moves` (a plan's steps, in execution order) whose result is at
/// least as good as `other`: spread no higher and no more hard-rule violations. Answers "what
/// would this plan have moved to get the other tool's result"; `None` when no prefix does.
pub fn prefix_matching(
    s: &ClusterSnapshot,
    template: &Plan,
    moves: &[(u32, String, String)],
    rules: &RuleConfig,
    other: &Outcome,
) -> Option<Outcome> {
    (0..=moves.len()).map(|k| evaluate(s, template, &moves[..k], rules)).find(|o| o.as_good_as(other))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Guest, GuestStatus, Node, PlanRequest};

    const G: u64 = 1 << 30;

    fn snap() -> ClusterSnapshot {
        let node = |n: &str, used: u64| Node {
            name: n.into(),
            status: NodeStatus::Online,
            cpus: 8,
            mem_total: 100 * G,
            mem_used: used * G,
            ..Default::default()
        };
        let vm = |id: u32, at: &str, gib: u64, tags: &[&str]| Guest {
            vmid: id,
            name: format!("vm{id}"),
            node: at.into(),
            status: GuestStatus::Running,
            mem_max: gib * G,
            mem_used: gib * G,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        ClusterSnapshot {
            quorate: true,
            nodes: vec![node("a", 80), node("b", 25)],
            guests: vec![
                vm(1, "a", 30, &["plb_anti_affinity_x"]),
                vm(2, "a", 30, &["plb_anti_affinity_x"]),
                vm(3, "a", 20, &["plb_pin_a"]),
                vm(4, "b", 25, &["plb_ignore_me"]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn same_yardstick_counts_spread_gib_and_violations() {
        let s = snap();
        let template = shared::planner::plan(&s, &PlanRequest::default());
        let rules = RuleConfig::default();
        assert!((balance(&s, &rules).spread - 55.0).abs() < 1e-9);
        // Moving the pinned guest and the ignored one breaks two rules and fixes the anti-affinity.
        let moves =
            vec![(3, "a".into(), "b".into()), (4, "b".into(), "a".into()), (1, "a".into(), "b".into())];
        let o = evaluate(&s, &template, &moves, &rules);
        assert_eq!(o.migrations, 3);
        assert!((o.gib - 75.0).abs() < 1e-9);
        assert_eq!(o.violations, Violations { pin: 1, ignored_moved: 1, ..Default::default() });
        // Doing nothing leaves the anti-affinity pair together.
        let o = evaluate(&s, &template, &[], &rules);
        assert_eq!(o.violations.describe(), "1 (1 anti-aff.)");
        // Over capacity.
        let o = evaluate(&s, &template, &[(4, "b".into(), "a".into())], &rules);
        assert_eq!(o.violations.capacity, 1);
    }

    #[test]
    fn gib_moved_counts_local_disk_running_or_not_and_memory_only_when_running() {
        let mut s = snap();
        s.guests[0].local_disk_bytes = 50 * G; // running, 30 GiB used
        s.guests[3].local_disk_bytes = 100 * G;
        s.guests[3].status = GuestStatus::Stopped; // 25 GiB of memory not copied
        let mv = |id: u32, from: &str, to: &str| (id, from.to_string(), to.to_string());
        let moves = [mv(1, "a", "b"), mv(4, "b", "a"), mv(2, "a", "b")];
        assert!((gib_moved(&s, &moves) - (30.0 + 50.0 + 100.0 + 30.0)).abs() < 1e-9);
        assert!((local_gib_moved(&s, &moves) - 150.0).abs() < 1e-9);
        let template = shared::planner::plan(&s, &PlanRequest::default());
        let o = evaluate(&s, &template, &moves, &RuleConfig::default());
        assert_eq!((o.gib, o.local_gib), (210.0, 150.0));
        assert_eq!(local_gib_moved(&s, &[]).to_string(), "0");
    }

    #[test]
    fn prefix_matching_stops_at_the_first_step_as_good_as_the_other_plan() {
        let s = snap();
        let template = shared::planner::plan(&s, &PlanRequest::default());
        let rules = RuleConfig::default();
        let mv = |id: u32| (id, "a".to_string(), "b".to_string());
        // The other tool moved guest 2: spread 5, anti-affinity fixed.
        let other = evaluate(&s, &template, &[mv(2)], &rules);
        let ours = [mv(1), mv(3)];
        let p = prefix_matching(&s, &template, &ours, &rules, &other).expect("one step matches");
        assert_eq!((p.migrations, p.gib), (1, 30.0));
        // Doing nothing already matches a plan that did nothing.
        let idle = evaluate(&s, &template, &[], &rules);
        assert_eq!(prefix_matching(&s, &template, &ours, &rules, &idle).map(|p| p.migrations), Some(0));
        // Moving the pinned guest never gets there: spread 15 and two violations.
        assert!(prefix_matching(&s, &template, &[mv(3)], &rules, &other).is_none());
    }
}
