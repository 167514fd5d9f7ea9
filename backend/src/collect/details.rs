//! What the cost model and `mode: psi` need beyond `/cluster/resources`, still O(nodes) calls:
//!
//! - local disk bytes per guest: one `GET /nodes/{node}/storage/{storage}/content` per online node
//!   and *local* storage holding guest volumes (`images`/`rootdir`), summed per vmid over the
//!   volumes on the guest's own node (shared storages are not copied by a migration);
//! - on PVE 9 nodes, guest pressure from `GET /nodes/{node}/qemu` and `…/lxc` (10 s averages in
//!   the list rows) and node pressure from `GET /nodes/{node}/rrddata?timeframe=hour` (PVE 9's
//!   node RRD; `/nodes/{node}/status` has none). PVE 7/8 report no pressure: nothing is asked.
//!
//! A call that fails (no `Datastore.Audit` on a storage, 403, 501, a node gone) leaves its figure
//! unknown (0 bytes, no pressure) and is logged once per process, never failing the snapshot.

use crate::pve::{wire, PveClient, PveError};
use serde_json::Value;
use shared::model::Pressure;
use shared::ClusterSnapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Storage plugin types whose volumes every node sees (a migration does not copy them), for
/// rows and configurations that do not say `shared` themselves.
const SHARED_TYPES: &[&str] =
    &["rbd", "cephfs", "nfs", "cifs", "glusterfs", "iscsi", "iscsidirect", "pbs", "zfs", "esxi"];

/// One node's calls beyond `apt/versions`.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `GET /nodes/{node}/storage/{storage}/content`.
    Content { node: String, storage: String },
    /// `GET /nodes/{node}/{qemu|lxc}` (PVE 9: pressure in the rows).
    Guests { node: String, kind: &'static str },
    /// `GET /nodes/{node}/rrddata?timeframe=hour&cf=AVERAGE` (PVE 9: node pressure).
    NodeRrd { node: String },
}

impl Call {
    pub fn path(&self) -> String {
        match self {
            Call::Content { node, storage } => format!("/nodes/{node}/storage/{storage}/content"),
            Call::Guests { node, kind } => format!("/nodes/{node}/{kind}"),
            Call::NodeRrd { node } => format!("/nodes/{node}/rrddata?timeframe=hour&cf=AVERAGE"),
        }
    }
}

/// The local storages holding guest volumes, per node, from `/cluster/resources` storage rows.
/// A row that does not say `shared` (PVE before 9.1) is judged by the storage configuration
/// `config` (`/storage`: its `shared` flag) and the plugin type.
pub fn local_storages(resources: &[Value], config: &[Value]) -> BTreeMap<String, Vec<String>> {
    let configured_shared: BTreeSet<&str> =
        config.iter().filter(|c| wire::flag(c, "shared")).filter_map(|c| wire::text(c, "storage")).collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in resources.iter().filter(|r| wire::text(r, "type") == Some("storage")) {
        let (Some(node), Some(storage)) = (wire::text(row, "node"), wire::text(row, "storage")) else {
            continue;
        };
        let content = wire::text(row, "content").unwrap_or("");
        let holds_guests = content.split(',').any(|c| matches!(c.trim(), "images" | "rootdir"));
        let shared = match row.get("shared") {
            Some(_) => wire::flag(row, "shared"),
            None => {
                configured_shared.contains(storage)
                    || wire::text(row, "plugintype").is_some_and(|t| SHARED_TYPES.contains(&t))
            }
        };
        let available = wire::text(row, "status").is_none_or(|s| s == "available");
        if holds_guests && !shared && available {
            out.entry(node.to_owned()).or_default().push(storage.to_owned());
        }
    }
    out
}

/// Do some storage rows lack `shared` (so `/storage` must say)?
pub fn needs_storage_config(resources: &[Value]) -> bool {
    resources.iter().any(|r| wire::text(r, "type") == Some("storage") && r.get("shared").is_none())
}

/// Bytes per vmid of guest volumes in one content listing (`images`/`rootdir` rows; backups,
/// ISOs and templates are not a guest's disks). A volume counts with `used` when the storage
/// reports it (thin volumes: a migration copies the allocated blocks), else with its `size`.
pub fn volume_bytes(rows: &[Value]) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for row in rows {
        let is_disk = match wire::text(row, "content") {
            Some(c) => c == "images" || c == "rootdir",
            // Rows without `content`: a backup's format or volid gives it away.
            None => {
                let format = wire::text(row, "format").unwrap_or("");
                let volid = wire::text(row, "volid").unwrap_or("");
                let backup = ["vma", "tar", "pbs"].iter().any(|b| format.starts_with(b));
                !(backup || volid.contains(":backup/"))
            }
        };
        let vmid = wire::number(row, "vmid").filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX));
        if let (true, Some(vmid)) = (is_disk, vmid) {
            let size = wire::bytes(row, "size");
            let used = wire::bytes(row, "used");
            *out.entry(vmid as u32).or_default() += if used > 0 { used } else { size };
        }
    }
    out
}

/// PVE 9's pressure fields of one row (`pressure{cpu,io,memory}{some,full}`), `None` when it
/// has none (PVE 7/8, a stopped guest on some versions).
pub fn pressure(row: &Value) -> Option<Pressure> {
    let f = |k: &str| wire::number(row, k).filter(|x| x.is_finite() && *x >= 0.0);
    let any = ["pressurecpusome", "pressureiosome", "pressurememorysome"].iter().any(|k| f(k).is_some());
    any.then(|| Pressure {
        cpu_some: f("pressurecpusome").unwrap_or(0.0),
        cpu_full: f("pressurecpufull").unwrap_or(0.0),
        memory_some: f("pressurememorysome").unwrap_or(0.0),
        memory_full: f("pressurememoryfull").unwrap_or(0.0),
        io_some: f("pressureiosome").unwrap_or(0.0),
        io_full: f("pressureiofull").unwrap_or(0.0),
    })
}

/// A node's pressure from its RRD rows: the newest row that has it (the current minute's row
/// may still be empty).
pub fn node_pressure(rows: &[Value]) -> Option<Pressure> {
    let newest = rows.iter().filter(|r| pressure(r).is_some()).max_by(|a, b| {
        let t = |r: &Value| wire::number(r, "time").unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    })?;
    pressure(newest)
}

/// The calls for these online nodes: content of each local storage, and on PVE 9 nodes the
/// guest lists and the node RRD.
pub fn calls(online: &[(String, bool)], local: &BTreeMap<String, Vec<String>>) -> Vec<Call> {
    let mut out = Vec::new();
    for (node, is9) in online {
        for storage in local.get(node).into_iter().flatten() {
            out.push(Call::Content { node: node.clone(), storage: storage.clone() });
        }
        if *is9 {
            out.push(Call::Guests { node: node.clone(), kind: "qemu" });
            out.push(Call::Guests { node: node.clone(), kind: "lxc" });
            out.push(Call::NodeRrd { node: node.clone() });
        }
    }
    out
}

/// Runs `calls`, at most `concurrency` at once; a failed call is logged once and left out.
pub async fn fetch(pve: &PveClient, calls: Vec<Call>, concurrency: usize) -> Vec<(Call, Vec<Value>)> {
    let permits = tokio::sync::Semaphore::new(concurrency);
    let runs = calls.into_iter().map(|call| {
        let permits = &permits;
        async move {
            let _permit = permits.acquire().await.expect("semaphore never closed");
            match pve.get::<Vec<Value>>(&call.path()).await {
                Ok(rows) => Some((call, rows)),
                Err(e) => {
                    warn_once(&call, &e);
                    None
                }
            }
        }
    });
    futures_util::future::join_all(runs).await.into_iter().flatten().collect()
}

/// A failing call is warned about once per process (every snapshot would repeat it), then only
/// at debug level.
fn warn_once(call: &Call, e: &PveError) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let what = match call {
        Call::Content { .. } => "local disk sizes unknown (0) for guests there",
        Call::Guests { .. } => "guest pressure unknown",
        Call::NodeRrd { .. } => "node pressure unknown",
    };
    let path = call.path();
    let first = WARNED.lock().map(|mut w| w.insert(path.clone())).unwrap_or(true);
    if first {
        tracing::warn!("GET {path}: {e}; {what} (said once)");
    } else {
        tracing::debug!("GET {path}: {e}; {what}");
    }
}

/// Puts the answers into the snapshot: each guest's local disk bytes (volumes on its own node
/// only), guest pressure, node pressure.
pub fn apply(snapshot: &mut ClusterSnapshot, answers: &[(Call, Vec<Value>)]) {
    let mut disks: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    let mut guest_pressure: BTreeMap<(&str, u32), Pressure> = BTreeMap::new();
    for (call, rows) in answers {
        match call {
            Call::Content { node, .. } => {
                for (vmid, bytes) in volume_bytes(rows) {
                    *disks.entry((node.as_str(), vmid)).or_default() += bytes;
                }
            }
            Call::Guests { node, .. } => {
                for row in rows {
                    let vmid = wire::number(row, "vmid").filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX));
                    if let (Some(vmid), Some(p)) = (vmid, pressure(row)) {
                        guest_pressure.insert((node.as_str(), vmid as u32), p);
                    }
                }
            }
            Call::NodeRrd { node } => {
                if let Some(n) = snapshot.nodes.iter_mut().find(|n| &n.name == node) {
                    n.pressure = node_pressure(rows);
                }
            }
        }
    }
    for g in &mut snapshot.guests {
        let key = (g.node.as_str(), g.vmid);
        g.local_disk_bytes = disks.get(&key).copied().unwrap_or(0);
        g.pressure = guest_pressure.get(&key).copied();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::{Guest, Node};

    #[test]
    fn local_storages_holding_guests_only_and_shared_judged_when_unsaid() {
        let resources = vec![
            json!({"type":"storage","node":"a","storage":"local-lvm","plugintype":"lvmthin","shared":0,
                   "content":"images,rootdir","status":"available"}),
            json!({"type":"storage","node":"a","storage":"local","plugintype":"dir","shared":0,
                   "content":"iso,vztmpl,backup","status":"available"}),
            json!({"type":"storage","node":"a","storage":"ceph","plugintype":"rbd","shared":1,
                   "content":"images","status":"available"}),
            json!({"type":"storage","node":"b","storage":"local-lvm","plugintype":"lvmthin","shared":0,
                   "content":"images","status":"unknown"}),
            json!({"type":"storage","storage":"nonode","content":"images","shared":0}),
            json!({"type":"qemu","node":"a","vmid":100}),
        ];
        let got = local_storages(&resources, &[]);
        assert_eq!(got, BTreeMap::from([("a".to_owned(), vec!["local-lvm".to_owned()])]));
        assert!(!needs_storage_config(&resources));
        // PVE before 9.1: no `shared` in the rows; the configuration and the type say.
        let old = vec![
            json!({"type":"storage","node":"a","storage":"zfs","plugintype":"zfspool","content":"images"}),
            json!({"type":"storage","node":"a","storage":"nfs","plugintype":"nfs","content":"images"}),
            json!({"type":"storage","node":"a","storage":"san","plugintype":"lvm","content":"images"}),
        ];
        assert!(needs_storage_config(&old));
        let config = vec![json!({"storage":"san","type":"lvm","shared":1}), json!({"storage":"zfs"})];
        assert_eq!(local_storages(&old, &config)["a"], vec!["zfs"]);
    }

    #[test]
    fn volumes_sum_per_vmid_and_backups_isos_and_odd_rows_are_not_disks() {
        let rows = vec![
            json!({"volid":"l:vm-100-disk-0","vmid":100,"size":1000,"format":"raw","content":"images"}),
            json!({"volid":"l:vm-100-disk-1","vmid":"100","size":"500","used":200,"format":"raw"}),
            json!({"volid":"l:subvol-101-disk-0","vmid":101,"size":300,"format":"subvol","content":"rootdir"}),
            json!({"volid":"l:backup/vzdump-qemu-100.vma.zst","vmid":100,"size":9999,"format":"vma.zst"}),
            json!({"volid":"l:backup/vzdump-lxc-101.tar.zst","vmid":101,"size":9999,"content":"backup"}),
            json!({"volid":"l:iso/debian.iso","size":9999,"format":"iso","content":"iso"}),
            json!({"volid":"l:vm-x-disk-0","vmid":null,"size":5}),
            json!({"volid":"l:vm-102-disk-0","vmid":102}),
        ];
        let got = volume_bytes(&rows);
        assert_eq!(got, BTreeMap::from([(100, 1200), (101, 300), (102, 0)]), "used wins over size");
    }

    #[test]
    fn pressure_only_where_pve_reports_it_and_nodes_take_their_newest_row() {
        let lxc = json!({"vmid":1,"pressurecpusome":"2.5","pressureiosome":1,"pressurememorysome":30,
                         "pressurememoryfull":"bad"});
        let p = pressure(&lxc).unwrap();
        assert_eq!((p.cpu_some, p.cpu_full, p.memory_some, p.memory_full), (2.5, 0.0, 30.0, 0.0));
        assert_eq!(pressure(&json!({"vmid":1,"cpu":0.5})), None, "PVE 7/8 rows");
        let rows = vec![
            json!({"time":60,"pressurememorysome":10}),
            json!({"time":180}),
            json!({"time":120,"pressurememorysome":25,"pressurecpusome":1}),
        ];
        assert_eq!(node_pressure(&rows).map(|p| p.memory_some), Some(25.0));
        assert_eq!(node_pressure(&[json!({"time":1,"cpu":0.1})]), None);
    }

    #[test]
    fn calls_are_per_node_and_local_storage_and_pressure_only_on_pve_9() {
        let local = BTreeMap::from([("a".to_owned(), vec!["l1".to_owned(), "l2".to_owned()])]);
        let online = [("a".to_owned(), false), ("b".to_owned(), true)];
        let paths: Vec<String> = calls(&online, &local).iter().map(Call::path).collect();
        assert_eq!(
            paths,
            [
                "/nodes/a/storage/l1/content",
                "/nodes/a/storage/l2/content",
                "/nodes/b/qemu",
                "/nodes/b/lxc",
                "/nodes/b/rrddata?timeframe=hour&cf=AVERAGE"
            ]
        );
    }

    #[test]
    fn answers_land_on_the_guests_own_node_only() {
        let guest = |vmid, node: &str| Guest { vmid, node: node.into(), ..Default::default() };
        let mut s = ClusterSnapshot {
            nodes: ["a", "b"].map(|n| Node { name: n.into(), ..Default::default() }).to_vec(),
            guests: vec![guest(100, "a"), guest(101, "b")],
            ..Default::default()
        };
        let content = |node: &str, vmid: u32, size: u64| {
            (
                Call::Content { node: node.into(), storage: "l".into() },
                vec![json!({"volid":"l:x","vmid":vmid,"size":size,"content":"images"})],
            )
        };
        let answers = vec![
            content("a", 100, 7),
            content("a", 101, 1000), // a stale volume of 101 left on a: not copied when 101 moves
            content("b", 101, 5),
            (Call::Guests { node: "a".into(), kind: "qemu" }, vec![json!({"vmid":100,"pressurecpusome":3})]),
            (Call::NodeRrd { node: "b".into() }, vec![json!({"time":1,"pressurememorysome":40})]),
        ];
        apply(&mut s, &answers);
        let disks: Vec<u64> = s.guests.iter().map(|g| g.local_disk_bytes).collect();
        assert_eq!(disks, [7, 5]);
        assert_eq!(s.guests[0].pressure.map(|p| p.cpu_some), Some(3.0));
        assert_eq!(s.guests[1].pressure, None);
        assert_eq!((s.nodes[0].pressure, s.nodes[1].pressure.map(|p| p.memory_some)), (None, Some(40.0)));
    }
}
