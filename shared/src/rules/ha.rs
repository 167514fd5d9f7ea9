//! PVE 9 HA rules: `node-affinity` (nodes with priorities, strict or not) and
//! `resource-affinity` (positive or negative). Disabled rules are skipped.

use super::{find_node, ConstraintKind, RuleSet, RuleSource, Severity, Strength};
use crate::model::{ClusterSnapshot, HaRule, NodeStatus};

pub(super) fn read(snapshot: &ClusterSnapshot, set: &mut RuleSet) {
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
