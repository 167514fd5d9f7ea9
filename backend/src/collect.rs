//! Collection: PVE answers → `shared::ClusterSnapshot`.
//!
//! Cost is O(nodes), never O(guests): five cluster-wide calls (`/cluster/resources` for nodes,
//! guests, storages, tags, pools, locks and HA state; `/cluster/status`; `/cluster/options` for
//! PVE's own balancer; `/cluster/ha/rules`, or on PVE 7/8 `/cluster/ha/groups` and
//! `/cluster/ha/resources` after it; `/cluster/tasks` for how long past migrations took) in
//! parallel, then one `GET /nodes/{node}/apt/versions` per online node (bounded concurrency) for
//! the installed QEMU and PVE versions, then per online node the content of each local storage
//! holding guest volumes and, on PVE 9, the guest lists and the node RRD for pressure
//! ([`details`]). Node `status` is not read: `/cluster/resources` already carries what the
//! planner uses, and usage history comes from the service's own sampler (`crate::sampler`).
//! `/version` is asked only when no node told its version; `/storage` only when the storage
//! rows do not say which storages are shared (PVE before 9.1).

pub mod details;

use crate::pve::{wire, PveClient, PveError};
use serde_json::Value;
use shared::model::{DynamicBalancer, HaRule, MigrationTiming};
use shared::{ClusterSnapshot, Guest, GuestKind, GuestStatus, Node, NodeStatus};

/// Node calls in flight at once: enough to hide latency on a 32-node cluster, few enough not to
/// load pveproxy (each call is proxied to its node).
pub const NODE_CONCURRENCY: usize = 8;

/// A snapshot and the task list it was collected with: the planning paths read their recent
/// migrations (cooldown rules, [`crate::recent::for_plan`]) from the same rows, not a second call.
pub struct Collected {
    pub snapshot: ClusterSnapshot,
    /// `/cluster/tasks` (empty when PVE refused it).
    pub tasks: Vec<Value>,
}

pub async fn snapshot(pve: &PveClient, now: u64) -> Result<ClusterSnapshot, PveError> {
    Ok(collect(pve, now).await?.snapshot)
}

pub async fn collect(pve: &PveClient, now: u64) -> Result<Collected, PveError> {
    let (resources, status, options, ha_rules, tasks) = tokio::try_join!(
        pve.get::<Vec<Value>>("/cluster/resources"),
        pve.get::<Vec<Value>>("/cluster/status"),
        options(pve),
        ha_rules(pve),
        optional_rows(pve, "/cluster/tasks", "no measured migration bandwidth, no cooldown data"),
    )?;
    let mut snapshot = from_answers(&resources, &status, &Value::Null, now);
    snapshot.ha_rules = ha_rules;
    snapshot.dynamic_balancer = dynamic_balancer(&options);
    let online: Vec<String> =
        snapshot.nodes.iter().filter(|n| n.status == NodeStatus::Online).map(|n| n.name.clone()).collect();
    let versions = node_versions(pve, &online).await;
    apply_versions(&mut snapshot, &versions);
    if snapshot.pve_version.is_empty() {
        let version = pve.get::<Value>("/version").await?;
        snapshot.pve_version = wire::text(&version, "version").unwrap_or("").to_owned();
    }
    let config = if details::needs_storage_config(&resources) {
        optional_rows(pve, "/storage", "shared storages judged by type").await?
    } else {
        Vec::new()
    };
    let local = details::local_storages(&resources, &config);
    let calls = details::calls(&pve9_nodes(&online, &versions, &snapshot.pve_version), &local);
    let answers = details::fetch(pve, calls, NODE_CONCURRENCY).await;
    details::apply(&mut snapshot, &answers);
    snapshot.migration_timings = migration_timings(&tasks, &snapshot);
    Ok(Collected { snapshot, tasks })
}

/// A list whose loss only costs one figure: an API error (403 without the privilege, 501) is
/// logged and read as empty; a transport error still fails the snapshot (PVE is not there).
async fn optional_rows(pve: &PveClient, path: &str, loses: &str) -> Result<Vec<Value>, PveError> {
    match pve.get::<Vec<Value>>(path).await {
        Ok(rows) => Ok(rows),
        Err(PveError::Api { status, message, .. }) => {
            tracing::warn!("GET {path}: HTTP {status}: {message}; {loses}");
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Each online node with whether it runs PVE 9 or later (its own `pve-manager`, else the
/// cluster's version): only those report pressure.
fn pve9_nodes(online: &[String], versions: &[NodeVersions], cluster: &str) -> Vec<(String, bool)> {
    let major = |v: &str| v.split('.').next().and_then(|m| m.trim().parse::<u32>().ok()).unwrap_or(0);
    online
        .iter()
        .map(|node| {
            let own = versions.iter().find(|v| &v.node == node).and_then(|v| v.pve.as_deref());
            (node.clone(), major(own.unwrap_or(cluster)) >= 9)
        })
        .collect()
}

/// How long recent successful migrations of guests still in the cluster took, newest first
/// (the task rows read by the back-test's own parser, `history::migrations_from_tasks`).
pub fn migration_timings(tasks: &[Value], snapshot: &ClusterSnapshot) -> Vec<MigrationTiming> {
    let known: std::collections::BTreeSet<u32> = snapshot.guests.iter().map(|g| g.vmid).collect();
    crate::history::migrations_from_tasks(tasks)
        .into_iter()
        .rev()
        .filter(|m| known.contains(&m.vmid) && m.started > 0 && m.at >= m.started)
        .map(|m| MigrationTiming { vmid: m.vmid, secs: m.at - m.started })
        .collect()
}

/// `/cluster/options` (datacenter.cfg). Without `Sys.Audit` PVE shows only a few keys; an
/// error here loses only the balancer detection, so it is logged, not fatal.
async fn options(pve: &PveClient) -> Result<Value, PveError> {
    match pve.get::<Value>("/cluster/options").await {
        Ok(v) => Ok(v),
        Err(PveError::Api { status, message, .. }) => {
            tracing::warn!("GET /cluster/options: HTTP {status}: {message}; PVE's own balancer not detected");
            Ok(Value::Null)
        }
        Err(e) => Err(e),
    }
}

/// PVE's automatic HA rebalancing (9.2+), when on: `crs` with `ha-auto-rebalance=1` and a
/// `static` or `dynamic` scheduler (PVE only rebalances with those). `crs` comes back parsed as
/// an object; a raw property string (`ha=dynamic,ha-auto-rebalance=1`) is read too.
pub fn dynamic_balancer(options: &Value) -> Option<DynamicBalancer> {
    let crs = match options.get("crs")? {
        Value::String(raw) => Value::Object(
            raw.split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_owned(), Value::String(v.trim().to_owned())))
                })
                .collect(),
        ),
        other => other.clone(),
    };
    let scheduler = wire::text(&crs, "ha").unwrap_or("basic");
    if !wire::flag(&crs, "ha-auto-rebalance") || !matches!(scheduler, "static" | "dynamic") {
        return None;
    }
    Some(DynamicBalancer {
        scheduler: scheduler.to_owned(),
        threshold: wire::number(&crs, "ha-auto-rebalance-threshold"),
        margin: wire::number(&crs, "ha-auto-rebalance-margin"),
        method: wire::text(&crs, "ha-auto-rebalance-method").map(str::to_owned),
    })
}

/// What one node's `apt/versions` says, `None` per field when it did not answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeVersions {
    pub node: String,
    /// `pve-manager` version, e.g. `9.1.2`.
    pub pve: Option<String>,
    /// `pve-qemu-kvm` upstream version (Debian revision dropped), e.g. `9.2.0`.
    pub qemu: Option<String>,
}

/// One `apt/versions` call per node, at most [`NODE_CONCURRENCY`] at a time. A node that fails
/// (offline between the two calls, no `Sys.Audit` on it, an old or fake PVE) only loses its
/// versions: the live-migration check then has nothing to hold against that node.
async fn node_versions(pve: &PveClient, nodes: &[String]) -> Vec<NodeVersions> {
    let permits = tokio::sync::Semaphore::new(NODE_CONCURRENCY);
    let calls = nodes.iter().map(|node| {
        let permits = &permits;
        async move {
            let _permit = permits.acquire().await.expect("semaphore never closed");
            let path = format!("/nodes/{node}/apt/versions");
            match pve.get::<Vec<Value>>(&path).await {
                Ok(rows) => read_versions(node, &rows),
                Err(e) => {
                    tracing::warn!("{e}; node {node} has no QEMU version this time");
                    NodeVersions { node: node.clone(), ..Default::default() }
                }
            }
        }
    });
    futures_util::future::join_all(calls).await
}

/// Reads `pve-manager` and `pve-qemu-kvm` from an `apt/versions` answer.
pub fn read_versions(node: &str, rows: &[Value]) -> NodeVersions {
    let version = |pkg: &str| {
        rows.iter()
            .find(|r| wire::text(r, "Package") == Some(pkg))
            .and_then(|r| wire::text(r, "Version"))
            .map(str::to_owned)
    };
    NodeVersions {
        node: node.to_owned(),
        pve: version("pve-manager"),
        // `9.2.0-5`: the part before the Debian revision is what `running-qemu` reports.
        qemu: version("pve-qemu-kvm").map(|v| v.split('-').next().unwrap_or(&v).to_owned()),
    }
}

/// Puts the versions into the snapshot: each node's QEMU; for running VMs whose own QEMU is
/// unknown (reading `running-qemu` costs one call per guest), the node's installed QEMU, an upper
/// bound of what they run, so a live migration to an older QEMU is never proposed (it may skip a
/// VM started before its node's upgrade). The cluster's `pve_version` is the oldest node's: what
/// every node supports.
pub fn apply_versions(snapshot: &mut ClusterSnapshot, versions: &[NodeVersions]) {
    for v in versions {
        if let Some(node) = snapshot.nodes.iter_mut().find(|n| n.name == v.node) {
            node.qemu_version = v.qemu.clone().or(node.qemu_version.take());
        }
    }
    for g in &mut snapshot.guests {
        if g.kind == GuestKind::Qemu && g.status == GuestStatus::Running && g.running_qemu.is_none() {
            g.running_qemu =
                snapshot.nodes.iter().find(|n| n.name == g.node).and_then(|n| n.qemu_version.clone());
        }
    }
    let key = |v: &str| -> Vec<u64> { v.split(['.', '-']).map(|p| p.parse().unwrap_or(0)).collect() };
    if let Some(oldest) = versions.iter().filter_map(|v| v.pve.as_deref()).min_by_key(|v| key(v)) {
        snapshot.pve_version = oldest.to_owned();
    }
}

/// PVE 9's HA rules. Older PVE has no such endpoint but HA groups: those are read instead (two
/// more cluster-wide calls, on PVE 7/8 only) and become the node-affinity rules PVE 9's upgrade
/// makes of them.
async fn ha_rules(pve: &PveClient) -> Result<Vec<HaRule>, PveError> {
    match pve.get::<Vec<Value>>("/cluster/ha/rules").await {
        Ok(rows) => Ok(rows.iter().filter_map(ha_rule).collect()),
        Err(PveError::Api { status: 404 | 501, .. }) => ha_groups(pve).await,
        Err(e) => Err(e),
    }
}

/// PVE 7/8 HA groups (`/cluster/ha/groups`) with their members (`/cluster/ha/resources`'s
/// `group`), as node-affinity rules: the group's nodes with priorities, strict when restricted.
async fn ha_groups(pve: &PveClient) -> Result<Vec<HaRule>, PveError> {
    let (groups, resources) = tokio::try_join!(
        pve.get::<Vec<Value>>("/cluster/ha/groups"),
        pve.get::<Vec<Value>>("/cluster/ha/resources"),
    )?;
    Ok(ha_groups_as_rules(&groups, &resources))
}

/// HA groups and resources → node-affinity rules named `group:<name>` (groups without members
/// bind nothing and are left out).
pub fn ha_groups_as_rules(groups: &[Value], resources: &[Value]) -> Vec<HaRule> {
    groups
        .iter()
        .filter_map(|g| {
            let name = wire::text(g, "group")?;
            let members: Vec<&str> = resources
                .iter()
                .filter(|r| wire::text(r, "group") == Some(name))
                .filter_map(|r| wire::text(r, "sid"))
                .collect();
            (!members.is_empty()).then(|| HaRule {
                rule: format!("group:{name}"),
                kind: "node-affinity".into(),
                resources: members.join(","),
                nodes: wire::text(g, "nodes").unwrap_or("").to_owned(),
                strict: wire::flag(g, "restricted"),
                affinity: String::new(),
                disable: false,
            })
        })
        .collect()
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

    #[test]
    fn pves_balancer_counts_only_with_auto_rebalance_and_a_load_aware_scheduler() {
        let on = dynamic_balancer(&json!({"crs": {"ha": "dynamic", "ha-auto-rebalance": 1,
                                                   "ha-auto-rebalance-margin": "0.1"}}))
        .unwrap();
        assert_eq!((on.scheduler.as_str(), on.margin, on.threshold), ("dynamic", Some(0.1), None));
        let raw = dynamic_balancer(&json!({"crs": "ha=static, ha-auto-rebalance=1"})).unwrap();
        assert_eq!(raw.scheduler, "static");
        for off in [
            json!({"crs": {"ha": "dynamic"}}),
            json!({"crs": {"ha": "basic", "ha-auto-rebalance": 1}}),
            json!({"crs": {"ha-auto-rebalance": 1}}),
            json!({"crs": {"ha": "static", "ha-rebalance-on-start": 1}}),
            json!({}),
            Value::Null,
        ] {
            assert_eq!(dynamic_balancer(&off), None, "{off}");
        }
    }

    #[test]
    fn migration_timings_are_newest_first_for_known_guests_with_both_times() {
        let rows = vec![
            json!({"type":"qmigrate","id":"100","node":"a","status":"OK","starttime":100,"endtime":160}),
            json!({"type":"vzmigrate","id":"101","node":"a","status":"OK","starttime":200,"endtime":230}),
            json!({"type":"qmigrate","id":"999","node":"a","status":"OK","starttime":300,"endtime":310}),
            json!({"type":"qmigrate","id":"100","node":"b","status":"OK","endtime":400}),
            json!({"type":"qmigrate","id":"100","node":"b","status":"error","starttime":1,"endtime":500}),
        ];
        let s = ClusterSnapshot {
            guests: [100, 101].map(|vmid| Guest { vmid, ..Default::default() }).to_vec(),
            ..Default::default()
        };
        let got: Vec<(u32, u64)> = migration_timings(&rows, &s).iter().map(|t| (t.vmid, t.secs)).collect();
        assert_eq!(got, [(101, 30), (100, 60)], "unknown guest, no start time and failures are left out");
    }

    #[test]
    fn only_pve_9_nodes_are_asked_for_pressure() {
        let v = |node: &str, pve: Option<&str>| NodeVersions {
            node: node.into(),
            pve: pve.map(str::to_owned),
            ..Default::default()
        };
        let online = ["a", "b", "c"].map(str::to_owned);
        let got = pve9_nodes(&online, &[v("a", Some("9.1.2")), v("b", Some("8.4.1")), v("c", None)], "9.0.3");
        assert_eq!(got.iter().map(|(_, is9)| *is9).collect::<Vec<_>>(), [true, false, true]);
        assert!(!pve9_nodes(&online[2..], &[], "")[0].1, "unknown version: not asked");
    }

    #[test]
    fn versions_come_from_apt_and_running_vms_get_their_nodes_qemu() {
        let rows = vec![
            json!({"Package": "proxmox-ve", "Version": "9.1.0"}),
            json!({"Package": "pve-manager", "Version": "9.1.2"}),
            json!({"Package": "pve-qemu-kvm", "Version": "10.1.2-1"}),
        ];
        let a = read_versions("a", &rows);
        assert_eq!((a.pve.as_deref(), a.qemu.as_deref()), (Some("9.1.2"), Some("10.1.2")));
        let b = NodeVersions { node: "b".into(), pve: Some("8.4.1".into()), qemu: Some("9.0.2".into()) };
        let silent = NodeVersions { node: "c".into(), ..Default::default() };
        let mut s = ClusterSnapshot {
            nodes: ["a", "b", "c"].map(|n| Node { name: n.into(), ..Default::default() }).to_vec(),
            guests: vec![
                Guest { vmid: 1, node: "a".into(), status: GuestStatus::Running, ..Default::default() },
                Guest { vmid: 2, node: "b".into(), status: GuestStatus::Stopped, ..Default::default() },
                Guest {
                    vmid: 3,
                    node: "a".into(),
                    kind: GuestKind::Lxc,
                    status: GuestStatus::Running,
                    ..Default::default()
                },
                Guest { vmid: 4, node: "c".into(), status: GuestStatus::Running, ..Default::default() },
            ],
            ..Default::default()
        };
        apply_versions(&mut s, &[a, b, silent]);
        let q: Vec<_> = s.nodes.iter().map(|n| n.qemu_version.as_deref()).collect();
        assert_eq!(q, vec![Some("10.1.2"), Some("9.0.2"), None]);
        let r: Vec<_> = s.guests.iter().map(|g| g.running_qemu.as_deref()).collect();
        assert_eq!(r, vec![Some("10.1.2"), None, None, None], "running VMs only, where known");
        assert_eq!(s.pve_version, "8.4.1", "the oldest node's version");
    }
}
