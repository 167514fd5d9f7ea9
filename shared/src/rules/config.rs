//! Rules from configuration: ProxLB pools, ignore lists and maintenance nodes.

use super::{find_node, wildcard_match, ConstraintKind, RuleConfig, RuleSet, RuleSource, Severity, Strength};
use crate::model::ClusterSnapshot;

pub(super) fn read(snapshot: &ClusterSnapshot, config: &RuleConfig, set: &mut RuleSet) {
    read_pools(snapshot, config, set);
    let cfg = |key: &str, value: &str| RuleSource::Config { key: key.into(), value: value.into() };

    for pattern in &config.ignore_guests {
        let hits: Vec<u32> =
            snapshot.guests.iter().filter(|g| wildcard_match(pattern, &g.name)).map(|g| g.vmid).collect();
        ignore_all(&hits, cfg("ignore_guests", pattern), set);
    }
    for guest in &snapshot.guests {
        if let Some((key, value)) = config.stay.why(guest) {
            set.add(ConstraintKind::Ignore { vmid: guest.vmid }, Strength::Hard, cfg(key, value));
        }
    }
    for pattern in &config.ignore_vms {
        // 0.9.9 accepted names; vmids are accepted too since names are not unique.
        let by_id = pattern.trim().parse::<u32>().ok();
        let hits: Vec<u32> = snapshot
            .guests
            .iter()
            .filter(|g| by_id == Some(g.vmid) || wildcard_match(pattern, &g.name))
            .map(|g| g.vmid)
            .collect();
        ignore_all(&hits, cfg("ignore_vms", pattern), set);
    }
    for (key, maintenance, patterns) in [
        ("ignore_nodes", false, &config.ignore_nodes),
        ("maintenance_nodes", true, &config.maintenance_nodes),
    ] {
        for pattern in patterns {
            let source = cfg(key, pattern);
            let hits: Vec<&str> = snapshot
                .nodes
                .iter()
                .filter(|n| wildcard_match(pattern, &n.name))
                .map(|n| n.name.as_str())
                .collect();
            if hits.is_empty() {
                set.diag(Severity::Warning, source.clone(), "matches no node", vec![]);
            }
            for node in hits {
                let node = node.to_owned();
                let kind = if maintenance {
                    ConstraintKind::Maintenance { node }
                } else {
                    ConstraintKind::IgnoreNode { node }
                };
                set.add(kind, Strength::Hard, source.clone());
            }
        }
    }
}

fn ignore_all(hits: &[u32], source: RuleSource, set: &mut RuleSet) {
    if hits.is_empty() {
        set.diag(Severity::Info, source.clone(), "matches no guest", vec![]);
    }
    for &vmid in hits {
        set.add(ConstraintKind::Ignore { vmid }, Strength::Hard, source.clone());
    }
}

fn read_pools(snapshot: &ClusterSnapshot, config: &RuleConfig, set: &mut RuleSet) {
    for pool in &config.pools {
        let source = RuleSource::Pool { pool: pool.pool.clone() };
        let members: Vec<u32> = snapshot
            .guests
            .iter()
            .filter(|g| g.pool.as_deref() == Some(pool.pool.as_str()))
            .map(|g| g.vmid)
            .collect();
        if members.is_empty() {
            set.diag(Severity::Info, source.clone(), "pool has no guests", vec![]);
            continue;
        }
        let group = format!("pool:{}", pool.pool);
        match pool.kind.as_deref().map(|k| k.trim().to_ascii_lowercase().replace('_', "-")) {
            None => {}
            Some(k) if k == "affinity" => set.add(
                ConstraintKind::Together { group, vmids: members.clone() },
                Strength::Hard,
                source.clone(),
            ),
            Some(k) if k == "anti-affinity" || k == "antiaffinity" => set.add(
                ConstraintKind::Apart { group, vmids: members.clone() },
                Strength::Hard,
                source.clone(),
            ),
            Some(other) => set.diag(
                Severity::Warning,
                source.clone(),
                format!("unknown pool type '{other}' (expected affinity or anti-affinity); ignored"),
                members.clone(),
            ),
        }
        if pool.pin.is_empty() {
            continue;
        }
        let mut nodes = Vec::new();
        for name in &pool.pin {
            match find_node(snapshot, name) {
                Some(n) => nodes.push(n.to_owned()),
                None => set.diag(
                    Severity::Warning,
                    source.clone(),
                    format!("pin to node '{name}', which is not in the cluster"),
                    members.clone(),
                ),
            }
        }
        if nodes.is_empty() {
            set.diag(
                Severity::Error,
                source.clone(),
                "no pinned node exists; pin not applied",
                members.clone(),
            );
            continue;
        }
        let strength = if pool.strict { Strength::Hard } else { Strength::Soft };
        for &vmid in &members {
            set.add(ConstraintKind::Pin { vmid, nodes: nodes.clone() }, strength, source.clone());
        }
    }
}
