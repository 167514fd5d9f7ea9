//! HA node maintenance (`ha-manager crm-command node-maintenance enable|disable NODE`; PVE has no
//! REST endpoint for it, the simulator offers `/_sim/ha-maintenance`). Like the CRM, enabling it
//! moves every HA-managed guest off the node and remembers where it came from (`maintenance_node`);
//! disabling it moves those guests back. Non-HA guests stay where they are.

use std::collections::BTreeMap;

use crate::scenario::GuestType;
use crate::state::{Cluster, Guest};

/// One move started by the CRM.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CrmMove {
    pub sid: String,
    pub vmid: u32,
    pub from: String,
    pub to: String,
    pub upid: String,
}

impl Cluster {
    fn ha_movable(g: &Guest) -> bool {
        g.spec.ha.as_ref().is_some_and(|h| h.state != "ignored") && g.migration.is_none() && g.lock.is_none()
    }

    /// Nodes allowed by node-affinity rules for `sid`, with priorities (None = unrestricted),
    /// and whether the rule is strict.
    fn affinity_nodes(&self, sid: &str) -> Option<(BTreeMap<String, i64>, bool)> {
        let r = self
            .ha_rules
            .iter()
            .find(|r| !r.disable && r.kind == "node-affinity" && r.resources.iter().any(|x| x == sid))?;
        let nodes = r
            .nodes
            .iter()
            .map(|n| match n.split_once(':') {
                Some((name, p)) => (name.to_string(), p.parse().unwrap_or(0)),
                None => (n.clone(), 0),
            })
            .collect();
        Some((nodes, r.strict))
    }

    /// Where the CRM would put `g` now: an online, non-maintenance node other than its own,
    /// honouring node-affinity priorities and negative resource-affinity, with the lowest memory
    /// use (counting moves already planned in `planned`, bytes per node).
    pub fn crm_target(&self, g: &Guest, planned: &BTreeMap<String, f64>) -> Option<String> {
        let sid = g.sid();
        let usage = self.usage_map();
        let mut cands: Vec<&String> = self
            .nodes
            .iter()
            .filter(|(n, s)| **n != g.node && s.online && !s.maintenance)
            .map(|(n, _)| n)
            .collect();
        if let Some((prio, strict)) = self.affinity_nodes(&sid) {
            let best = cands.iter().filter_map(|n| prio.get(*n)).max().copied();
            match best {
                Some(b) => cands.retain(|n| prio.get(*n) == Some(&b)),
                None if strict => return None,
                None => {}
            }
        }
        // negative resource affinity: avoid nodes that host (or will host) a partner
        let partners: Vec<u32> = self
            .ha_rules
            .iter()
            .filter(|r| {
                !r.disable && r.kind == "resource-affinity" && r.affinity.as_deref() == Some("negative")
            })
            .filter(|r| r.resources.contains(&sid))
            .flat_map(|r| {
                r.resources.iter().filter(|x| **x != sid).filter_map(|x| x.split(':').nth(1)?.parse().ok())
            })
            .collect();
        let busy: Vec<String> = partners
            .iter()
            .filter_map(|p| self.guests.get(p))
            .flat_map(|p| [Some(p.node.clone()), p.migration.as_ref().map(|m| m.target.clone())])
            .flatten()
            .collect();
        if cands.iter().any(|n| !busy.contains(n)) {
            cands.retain(|n| !busy.contains(n));
        }
        cands
            .into_iter()
            .min_by(|a, b| {
                let r = |n: &String| {
                    let u = usage[n];
                    (u.mem as f64 + planned.get(n).copied().unwrap_or(0.0)) / u.maxmem.max(1) as f64
                };
                r(a).total_cmp(&r(b)).then(a.cmp(b))
            })
            .cloned()
    }

    /// Enables or disables HA maintenance of `node` and starts the resulting CRM migrations
    /// (live for running VMs, restart mode for running CTs).
    pub fn set_ha_maintenance(
        &mut self,
        node: &str,
        enable: bool,
        now: f64,
        time_scale: f64,
    ) -> Result<Vec<CrmMove>, String> {
        let n = self.nodes.get_mut(node).ok_or_else(|| format!("no such node '{node}'"))?;
        n.maintenance = enable;
        let mut plan = Vec::new();
        if enable {
            let mut planned: BTreeMap<String, f64> = BTreeMap::new();
            let ids: Vec<u32> = self
                .guests
                .values()
                .filter(|g| g.node == node && Self::ha_movable(g))
                .map(|g| g.spec.vmid)
                .collect();
            for id in ids {
                let g = &self.guests[&id];
                if let Some(t) = self.crm_target(g, &planned) {
                    *planned.entry(t.clone()).or_default() += g.mem() as f64;
                    plan.push((id, t, Some(node.to_string())));
                }
            }
        } else {
            for g in self.guests.values_mut().filter(|g| g.maintenance_node.as_deref() == Some(node)) {
                if Self::ha_movable(g) && g.node != node {
                    plan.push((g.spec.vmid, node.to_string(), None));
                } else {
                    g.maintenance_node = None;
                }
            }
        }
        let mut moves = Vec::new();
        for (id, to, mnode) in plan {
            let g = &self.guests[&id];
            let (from, sid, running, ct) =
                (g.node.clone(), g.sid(), g.running(), g.spec.kind == GuestType::Lxc);
            let upid = self.start_migration(
                id,
                &to,
                running && !ct,
                running && ct,
                "root@pam",
                now,
                time_scale,
                None,
                false,
            );
            if let Some(g) = self.guests.get_mut(&id) {
                g.maintenance_node = mnode;
            }
            moves.push(CrmMove { sid, vmid: id, from, to, upid });
        }
        Ok(moves)
    }
}
