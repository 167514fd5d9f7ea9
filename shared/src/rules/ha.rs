//! PVE 9 HA rules: `node-affinity` (nodes with priorities, strict or not) and
//! `resource-affinity` (positive or negative). Disabled rules are skipped.

use super::{find_node, ConstraintKind, RuleSet, RuleSource, Severity, Strength};
use crate::model::{ClusterSnapshot, HaRule, NodeStatus};

pub(super) fn read(snapshot: &ClusterSnapshot, set: &mut RuleSet) {
    dynamic_balancer(snapshot, set);
    for rule in &snapshot.ha_rules {
        let source = RuleSource::HaRule { rule: rule.rule.clone() };
        if rule.disable {
            set.diag(Severity::Info, source, "disabled; skipped", vec![]);
            continue;
        }
        let vmids = resources(rule, snapshot, &source, set);
        match rule.kind.trim() {
            "node-affinity" => node_affinity(rule, &vmids, snapshot, source, set),
            "resource-affinity" => {
                let group = format!("ha:{}", rule.rule);
                if vmids.len() < 2 {
                    set.diag(
                        Severity::Info,
                        source.clone(),
                        "fewer than two known resources; no effect",
                        vmids.clone(),
                    );
                }
                // PVE enforces resource affinity strictly.
                match rule.affinity.trim() {
                    "positive" => set.add(ConstraintKind::Together { group, vmids }, Strength::Hard, source),
                    "negative" => set.add(ConstraintKind::Apart { group, vmids }, Strength::Hard, source),
                    other => set.diag(
                        Severity::Warning,
                        source,
                        format!("unknown affinity '{other}' (expected positive or negative); skipped"),
                        vmids,
                    ),
                }
            }
            other => {
                set.diag(Severity::Warning, source, format!("unknown rule type '{other}'; skipped"), vmids)
            }
        }
    }
}

/// PVE 9.2's automatic rebalancing moves HA-managed guests on its own; moving them too would
/// have two balancers fight over the same guests (each undoing the other's moves). They are left
/// to PVE, and a note says so once (not once per guest).
fn dynamic_balancer(snapshot: &ClusterSnapshot, set: &mut RuleSet) {
    let Some(b) = &snapshot.dynamic_balancer else { return };
    let vmids: Vec<u32> = snapshot.guests.iter().filter(|g| g.ha_managed).map(|g| g.vmid).collect();
    let source = RuleSource::PveDynamicBalancer;
    for &vmid in &vmids {
        set.add(ConstraintKind::Ignore { vmid }, Strength::Hard, source.clone());
    }
    set.diag(
        Severity::Info,
        source,
        format!(
            "PVE balances HA-managed guests itself (crs ha={}, ha-auto-rebalance=1): {} HA guest(s) \
             left to it; only the other guests are balanced here",
            b.scheduler,
            vmids.len()
        ),
        vmids,
    );
}

/// `"vm:100,ct:101"` → vmids present in the snapshot (others are reported).
fn resources(rule: &HaRule, snapshot: &ClusterSnapshot, source: &RuleSource, set: &mut RuleSet) -> Vec<u32> {
    let mut vmids = Vec::new();
    for sid in rule.resources.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let id = sid.split_once(':').map_or(sid, |(_, id)| id);
        match id.trim().parse::<u32>() {
            Ok(vmid) if snapshot.guests.iter().any(|g| g.vmid == vmid) => vmids.push(vmid),
            Ok(vmid) => set.diag(
                Severity::Info,
                source.clone(),
                format!("resource '{sid}' is not in the snapshot"),
                vec![vmid],
            ),
            Err(_) => set.diag(
                Severity::Warning,
                source.clone(),
                format!("malformed resource '{sid}'; skipped"),
                vec![],
            ),
        }
    }
    vmids.sort_unstable();
    vmids.dedup();
    vmids
}

/// PVE places an HA resource on the highest-priority group of its listed nodes that is online;
/// balancing it anywhere else would be undone by HA (ping-pong), so that group is the pin.
fn node_affinity(
    rule: &HaRule,
    vmids: &[u32],
    snapshot: &ClusterSnapshot,
    source: RuleSource,
    set: &mut RuleSet,
) {
    let mut listed: Vec<(String, i64)> = Vec::new();
    for entry in rule.nodes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, prio) = match entry.split_once(':') {
            Some((name, p)) => match p.trim().parse::<i64>() {
                Ok(p) => (name.trim(), p),
                Err(_) => {
                    set.diag(
                        Severity::Warning,
                        source.clone(),
                        format!("malformed priority in '{entry}'; taken as 0"),
                        vmids.to_vec(),
                    );
                    (name.trim(), 0)
                }
            },
            None => (entry, 0),
        };
        match find_node(snapshot, name) {
            Some(n) => listed.push((n.to_owned(), prio)),
            None => set.diag(
                Severity::Warning,
                source.clone(),
                format!("node '{name}' is not in the cluster"),
                vmids.to_vec(),
            ),
        }
    }
    if listed.is_empty() {
        set.diag(Severity::Error, source, "no listed node exists; rule not applied", vmids.to_vec());
        return;
    }
    let up = |n: &str| snapshot.node(n).is_some_and(|n| n.status == NodeStatus::Online && !n.maintenance);
    let available: Vec<&(String, i64)> = listed.iter().filter(|(n, _)| up(n)).collect();
    let pool: Vec<&(String, i64)> = if available.is_empty() {
        set.diag(
            Severity::Warning,
            source.clone(),
            "no listed node is online; pinned to the listed nodes anyway",
            vmids.to_vec(),
        );
        listed.iter().collect()
    } else {
        available
    };
    let top = pool.iter().map(|(_, p)| *p).max().unwrap_or(0);
    let nodes: Vec<String> = pool.iter().filter(|(_, p)| *p == top).map(|(n, _)| n.clone()).collect();
    let strength = if rule.strict { Strength::Hard } else { Strength::Soft };
    for &vmid in vmids {
        set.add(ConstraintKind::Pin { vmid, nodes: nodes.clone() }, strength, source.clone());
    }
}

#[cfg(test)]
mod dynamic_balancer_tests {
    use crate::model::{ClusterSnapshot, DynamicBalancer, Guest};
    use crate::rules::{compile, ConstraintKind, RuleConfig, RuleSource, Strength};

    fn snap(on: bool) -> ClusterSnapshot {
        ClusterSnapshot {
            guests: vec![
                Guest { vmid: 1, ha_managed: true, ..Default::default() },
                Guest { vmid: 2, ..Default::default() },
            ],
            dynamic_balancer: on
                .then(|| DynamicBalancer { scheduler: "dynamic".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn ha_guests_are_left_to_pves_balancer_only_when_it_is_on() {
        let set = compile(&snap(true), &RuleConfig::default());
        let ignored: Vec<_> = set
            .constraints
            .iter()
            .filter(|c| c.source == RuleSource::PveDynamicBalancer)
            .map(|c| (c.kind.clone(), c.strength))
            .collect();
        assert_eq!(ignored, vec![(ConstraintKind::Ignore { vmid: 1 }, Strength::Hard)]);
        let note = set.diagnostics.iter().find(|d| d.source == RuleSource::PveDynamicBalancer).unwrap();
        assert!(
            note.message.contains("ha=dynamic") && note.message.contains("1 HA guest"),
            "{}",
            note.message
        );
        let off = compile(&snap(false), &RuleConfig::default());
        assert!(off.constraints.iter().all(|c| c.source != RuleSource::PveDynamicBalancer));
        assert!(off.diagnostics.iter().all(|d| d.source != RuleSource::PveDynamicBalancer));
    }

    #[test]
    fn the_plan_moves_only_non_ha_guests_and_says_why() {
        use crate::model::{GuestStatus, Node, NodeStatus};
        const G: u64 = 1 << 30;
        let node = |name: &str, used| Node {
            name: name.into(),
            status: NodeStatus::Online,
            cpus: 16,
            mem_total: 100 * G,
            mem_used: used * G,
            disk_total: 100 * G,
            ..Default::default()
        };
        let guest = |vmid, ha| Guest {
            vmid,
            node: "a".into(),
            status: GuestStatus::Running,
            cpus: 2.0,
            mem_max: 30 * G,
            mem_used: 30 * G,
            ha_managed: ha,
            ..Default::default()
        };
        let mut s = ClusterSnapshot {
            nodes: vec![node("a", 70), node("b", 10)],
            guests: vec![guest(1, true), guest(2, false)],
            quorate: true,
            ..Default::default()
        };
        let request = crate::PlanRequest::default();
        let free = crate::planner::plan(&s, &request);
        assert!(!free.steps.is_empty(), "without PVE's balancer something moves: {:?}", free.notes);
        s.dynamic_balancer = Some(DynamicBalancer { scheduler: "dynamic".into(), ..Default::default() });
        let plan = crate::planner::plan(&s, &request);
        assert!(plan.steps.iter().all(|st| st.vmid != 1), "{:?}", plan.steps);
        assert!(plan.steps.iter().any(|st| st.vmid == 2), "{:?}", plan.notes);
        assert!(plan.notes[0].starts_with("1 HA-managed guest(s) left to PVE"), "{:?}", plan.notes);
    }
}
