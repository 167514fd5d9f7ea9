//! Collection: PVE answers → `shared::ClusterSnapshot`.
//!
//! Cost is O(1) calls here (`/cluster/resources`, `/cluster/status`, `/version`): guests, tags,
//! pools, locks and HA state all come from `/cluster/resources`.

use crate::pve::{wire, PveClient, PveError};
use serde_json::Value;
use shared::model::HaRule;
use shared::{ClusterSnapshot, Guest, GuestKind, GuestStatus, Node, NodeStatus};

pub async fn snapshot(pve: &PveClient, now: u64) -> Result<ClusterSnapshot, PveError> {
    let (resources, status, version, ha_rules) = tokio::try_join!(
        pve.get::<Vec<Value>>("/cluster/resources"),
        pve.get::<Vec<Value>>("/cluster/status"),
        pve.get::<Value>("/version"),
        ha_rules(pve),
    )?;
    let mut snapshot = from_answers(&resources, &status, &version, now);
    snapshot.ha_rules = ha_rules;
    Ok(snapshot)
}

/// PVE 9's HA rules. Older PVE has no such endpoint (HA groups instead): that reads as no rules.
async fn ha_rules(pve: &PveClient) -> Result<Vec<HaRule>, PveError> {
    match pve.get::<Vec<Value>>("/cluster/ha/rules").await {
        Ok(rows) => Ok(rows.iter().filter_map(ha_rule).collect()),
        Err(PveError::Api { status: 404 | 501, .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn ha_rule(row: &Value) -> Option<HaRule> {
    Some(HaRule {
        rule: wire::text(row, "rule")?.to_owned(),
        kind: wire::text(row, "type")?.to_owned(),
        resources: wire::text(row, "resources").unwrap_or("").to_owned(),
        nodes: wire::text(row, "nodes").unwrap_or("").to_owned(),
        strict: wire::flag(row, "strict"),
        affinity: wire::text(row, "affinity").unwrap_or("").to_owned(),
        disable: wire::flag(row, "disable"),
    })
}

/// Builds the snapshot from the three answers; pure, so it is tested without a server.
pub fn from_answers(resources: &[Value], status: &[Value], version: &Value, now: u64) -> ClusterSnapshot {
    let cluster = status.iter().find(|r| wire::text(r, "type") == Some("cluster"));
    let mut nodes: Vec<Node> =
        resources.iter().filter(|r| wire::text(r, "type") == Some("node")).filter_map(node).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut guests: Vec<Guest> = resources.iter().filter_map(guest).collect();
    guests.sort_by_key(|g| g.vmid);
    ClusterSnapshot {
        cluster_name: cluster.and_then(|c| wire::text(c, "name")).unwrap_or("").to_owned(),
        pve_version: wire::text(version, "version").unwrap_or("").to_owned(),
        collected_at: now,
        // A single node without a cluster has no `cluster` row and is quorate by definition.
        quorate: cluster.is_none_or(|c| wire::flag(c, "quorate")),
        nodes,
        guests,
        ..Default::default()
    }
}

fn node(row: &Value) -> Option<Node> {
    let name = wire::text(row, "node")?.to_owned();
    let status = match wire::text(row, "status") {
        Some("online") => NodeStatus::Online,
        Some("offline") => NodeStatus::Offline,
        _ => NodeStatus::Unknown,
    };
    let cpus = wire::number(row, "maxcpu").unwrap_or(0.0).max(0.0) as u32;
    Some(Node {
        name,
        status,
        cpus,
        cpu_used: wire::number(row, "cpu").unwrap_or(0.0).clamp(0.0, 1.0) * f64::from(cpus),
        mem_total: wire::bytes(row, "maxmem"),
        mem_used: wire::bytes(row, "mem"),
        disk_total: wire::bytes(row, "maxdisk"),
        disk_used: wire::bytes(row, "disk"),
        maintenance: wire::text(row, "hastate") == Some("maintenance"),
        ..Default::default()
    })
}

fn guest(row: &Value) -> Option<Guest> {
    let kind = match wire::text(row, "type")? {
        "qemu" => GuestKind::Qemu,
        "lxc" => GuestKind::Lxc,
        _ => return None,
    };
    let vmid = wire::number(row, "vmid").filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX))? as u32;
    let cpus = wire::number(row, "maxcpu").unwrap_or(0.0).max(0.0);
    Some(Guest {
        vmid,
        name: wire::text(row, "name").unwrap_or("").to_owned(),
        kind,
        node: wire::text(row, "node")?.to_owned(),
        status: match wire::text(row, "status") {
            Some("running") => GuestStatus::Running,
            Some("stopped") => GuestStatus::Stopped,
            _ => GuestStatus::Other,
        },
        template: wire::flag(row, "template"),
        cpus,
        // PVE reports guest cpu as a fraction of its own vCPUs; the engine works in cores.
        cpu_used: wire::number(row, "cpu").unwrap_or(0.0).max(0.0) * cpus,
        mem_max: wire::bytes(row, "maxmem"),
        mem_used: wire::bytes(row, "mem"),
        disk_max: wire::bytes(row, "maxdisk"),
        disk_used: wire::bytes(row, "disk"),
        tags: wire::text(row, "tags").map(shared::model::split_tags).unwrap_or_default(),
        pool: wire::text(row, "pool").map(str::to_owned),
        lock: wire::text(row, "lock").map(str::to_owned),
        ha_managed: wire::text(row, "hastate").is_some(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_a_snapshot_from_pve_rows_and_survives_odd_ones() {
        let resources = vec![
            json!({"id":"node/pve1","type":"node","node":"pve1","status":"online","cpu":0.25,"maxcpu":8,
                   "mem":4_000_000_000u64,"maxmem":8_000_000_000u64,"disk":1,"maxdisk":2,"hastate":"online"}),
            json!({"id":"node/pve2","type":"node","node":"pve2","status":"offline"}),
            json!({"id":"qemu/100","type":"qemu","vmid":100,"node":"pve1","name":"web","status":"running",
                   "cpu":0.5,"maxcpu":4,"mem":"1024","maxmem":2048,"tags":"plb_pin_pve1;web","hastate":"started"}),
            json!({"id":"lxc/101","type":"lxc","vmid":"101","node":"pve1","status":"stopped","template":1}),
            json!({"id":"qemu/x","type":"qemu","vmid":null,"node":"pve1"}),
            json!({"id":"storage/pve1/local","type":"storage","node":"pve1"}),
        ];
        let status = vec![json!({"type":"cluster","name":"lab","quorate":1})];
        let s = from_answers(&resources, &status, &json!({"version":"9.1.2"}), 7);
        assert_eq!((s.cluster_name.as_str(), s.pve_version.as_str(), s.quorate), ("lab", "9.1.2", true));
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[0].cpu_used, 2.0);
        assert_eq!(s.nodes[1].status, NodeStatus::Offline);
        assert_eq!(s.guests.len(), 2, "row without vmid is dropped");
        let web = &s.guests[0];
        assert_eq!((web.cpu_used, web.mem_used, web.ha_managed), (2.0, 1024, true));
        assert_eq!(web.tags, vec!["plb_pin_pve1", "web"]);
        assert!(s.guests[1].template);
        let rule = ha_rule(&json!({"rule":"apart","type":"resource-affinity","resources":"vm:1,vm:2",
                                   "affinity":"negative","disable":"1"}))
        .unwrap();
        assert_eq!(
            (rule.kind.as_str(), rule.affinity.as_str(), rule.disable),
            ("resource-affinity", "negative", true)
        );
        assert!(ha_rule(&json!({"type":"node-affinity"})).is_none(), "a rule without id is dropped");
        assert_eq!(s.guests[1].status, GuestStatus::Stopped);
    }
}
