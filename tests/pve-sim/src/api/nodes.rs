//! `/nodes` and `/nodes/{node}/*` (node status, version, guest lists, RRD; guests and tasks delegated).

use serde_json::{json, Value};

use super::{ok, ApiError, ApiResult, Ctx};
use crate::rrd;
use crate::scenario::GuestType;
use crate::server::{Sim, World};

pub fn list(sim: &Sim, w: &World, cx: &Ctx) -> ApiResult {
    let mut out = Vec::new();
    for (name, u) in w.cluster.usage_map() {
        let mut row = super::cluster::node_row(w, cx, &name, &u);
        if let Some(o) = row.as_object_mut() {
            o.remove("hastate");
            o.remove("cgroup-mode");
            o.insert("ssl_fingerprint".into(), sim.fingerprint.clone().into());
        }
        out.push(row);
    }
    ok(Value::Array(out))
}

/// 595 like pveproxy when the node a call is proxied to does not answer.
fn unreachable(node: &str) -> ApiError {
    ApiError::new(595, format!("Connection refused (node '{node}' is offline)"))
}

pub fn dispatch(sim: &Sim, w: &mut World, cx: &Ctx, node: &str, rest: &[&str]) -> ApiResult {
    let m = cx.method.as_str();
    // PVE takes `localhost` as the node that answers (its UI asks `/nodes/localhost/subscription`).
    let local = (node == "localhost").then(|| super::cluster::local_node(&w.cluster)).flatten();
    let node = local.as_deref().unwrap_or(node);
    let Some(n) = w.cluster.nodes.get(node) else {
        return Err(ApiError::die(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )));
    };
    if !n.online {
        return Err(unreachable(node));
    }
    match (m, rest) {
        ("GET", []) => ok(json!([
            {"name": "status"}, {"name": "version"}, {"name": "qemu"}, {"name": "lxc"},
            {"name": "rrddata"}, {"name": "tasks"}, {"name": "apt"},
            {"name": "subscription"}, {"name": "config"}, {"name": "ceph"}
        ])),
        ("GET", ["apt", "versions"]) => apt_versions(w, cx, node),
        ("GET", ["apt", "repositories"]) => super::node_admin::apt_repositories(w, cx, node),
        ("GET", ["subscription"]) => super::node_admin::subscription(w, cx, node),
        ("GET", ["config"]) => super::node_admin::config(w, cx, node),
        ("GET", ["status"]) => status(w, cx, node),
        ("GET", ["version"]) => {
            cx.require(w, &format!("/nodes/{node}"), "Sys.Audit").ok();
            super::access::version(w)
        }
        ("GET", ["rrddata"]) => {
            cx.require(w, &format!("/nodes/{node}"), "Sys.Audit")?;
            let (tf, cf) = rrd::params(cx, w.cluster.version.is9())?;
            ok(rrd::node_rows(&w.cluster, node, tf, cf, cx.now))
        }
        ("GET", ["storage", storage, "content"]) => storage_content(w, cx, node, storage),
        ("GET", ["qemu"]) => guest_list(w, cx, node, GuestType::Qemu),
        ("GET", ["lxc"]) => guest_list(w, cx, node, GuestType::Lxc),
        (_, ["qemu", vmid, tail @ ..]) => {
            super::guests::dispatch(sim, w, cx, node, GuestType::Qemu, vmid, tail)
        }
        (_, ["lxc", vmid, tail @ ..]) => {
            super::guests::dispatch(sim, w, cx, node, GuestType::Lxc, vmid, tail)
        }
        (_, ["tasks", tail @ ..]) => super::tasks::dispatch(w, cx, node, tail),
        ("POST", ["migrateall"]) => super::bulk::migrateall(w, cx, node),
        // The simulated nodes have no Ceph: PVE's words (its handlers check for ceph-mon first).
        // PVE's Ceph views match /not (installed|initialized)/ and offer the installer; the
        // datacenter Summary tries each node, then hides Ceph.
        ("GET", ["ceph", ..]) => Err(ApiError::die("binary not installed: /usr/bin/ceph-mon")),
        _ => Err(ApiError::not_implemented(m, cx.path)),
    }
}

fn status(w: &World, cx: &Ctx, node: &str) -> ApiResult {
    cx.require(w, &format!("/nodes/{node}"), "Sys.Audit")?;
    let c = &w.cluster;
    let n = &c.nodes[node];
    let u = c.node_usage(node);
    let load = u.cpu * u.maxcpu as f64;
    let kernel = match c.version.major {
        7 => "5.15.158-2-pve",
        8 => "6.8.12-9-pve",
        _ => "6.17.2-1-pve",
    };
    let sockets = n.spec.sockets.max(1);
    ok(json!({
        "cpu": u.cpu,
        "wait": 0.001,
        "loadavg": [format!("{:.2}", load), format!("{:.2}", load * 0.95), format!("{:.2}", load * 0.9)],
        "uptime": (cx.now_i() - n.boot_time).max(0),
        "idle": 0,
        "memory": {"total": u.maxmem, "used": u.mem, "free": u.maxmem.saturating_sub(u.mem),
                   "available": u.maxmem.saturating_sub(u.mem)},
        "swap": {"total": 8u64 << 30, "used": 0, "free": 8u64 << 30},
        "ksm": {"shared": 0},
        "rootfs": {"total": u.maxdisk, "used": u.disk, "free": u.maxdisk.saturating_sub(u.disk),
                   "avail": u.maxdisk.saturating_sub(u.disk)},
        "cpuinfo": {"cpus": u.maxcpu, "cores": (u.maxcpu / sockets / 2).max(1), "sockets": sockets,
                    "model": "Simulated CPU @ 3.00GHz", "mhz": "3000.000", "hvm": "1",
                    "user_hz": 100, "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep"},
        "kversion": format!("Linux {kernel} #1 SMP PREEMPT_DYNAMIC PMX"),
        "current-kernel": {"sysname": "Linux", "release": kernel, "version": "#1 SMP PREEMPT_DYNAMIC PMX", "machine": "x86_64"},
        "boot-info": {"mode": "efi", "secureboot": 0},
        "pveversion": format!("pve-manager/{}/5a1b0c7e", c.version.text),
    }))
}

fn guest_list(w: &World, cx: &Ctx, node: &str, kind: GuestType) -> ApiResult {
    let c = &w.cluster;
    let mut out = Vec::new();
    let pressure = rrd::pressure(c, node);
    for g in c.guests.values().filter(|g| g.node == node && g.spec.kind == kind) {
        if !cx.has(w, &format!("/vms/{}", g.spec.vmid), "VM.Audit") {
            continue;
        }
        out.push(super::guests::status_row(w, cx, g, false, pressure));
    }
    ok(Value::Array(out))
}

/// `GET /nodes/{node}/storage/{storage}/content`: each guest's boot disk on that storage (a
/// local storage lists the guests of `node` only, a shared one every guest on it), as PVE lists
/// volumes: `volid`, `vmid`, `size`, `format`, `content`. Needs `Datastore.Audit` (or
/// `Datastore.AllocateSpace`) on the storage; volumes of guests without `VM.Audit` are hidden.
fn storage_content(w: &World, cx: &Ctx, node: &str, storage: &str) -> ApiResult {
    let c = &w.cluster;
    let path = format!("/storage/{storage}");
    if !cx.has(w, &path, "Datastore.Audit") && !cx.has(w, &path, "Datastore.AllocateSpace") {
        return Err(ApiError::forbidden(&path, "Datastore.Audit|Datastore.AllocateSpace"));
    }
    let Some(st) = c.node_storages(node).find(|s| s.id == storage) else {
        return Err(ApiError::die(format!("storage '{storage}' does not exist on node '{node}'")));
    };
    let mut out = Vec::new();
    for g in c.guests.values().filter(|g| g.storage == st.id && (st.shared || g.node == node)) {
        if !cx.has(w, &format!("/vms/{}", g.spec.vmid), "VM.Audit") {
            continue;
        }
        let volid = super::guests::volid(w, g);
        let (content, format) = match g.spec.kind {
            GuestType::Qemu if volid.ends_with(".qcow2") => ("images", "qcow2"),
            GuestType::Qemu => ("images", "raw"),
            GuestType::Lxc if volid.contains("subvol-") => ("rootdir", "subvol"),
            GuestType::Lxc => ("rootdir", "raw"),
        };
        out.push(json!({
            "volid": volid, "vmid": g.spec.vmid, "size": g.maxdisk(), "used": g.disk_used(), "format": format,
            "content": content, "ctime": 1_700_000_000,
        }));
    }
    ok(Value::Array(out))
}

/// `pve-qemu-kvm` installed on `node`: the scenario's value, else the one the PVE release ships
/// (7.4: QEMU 7.2, 8.4: 9.0, 9.x: 10.1).
pub fn qemu_package_version(c: &crate::state::Cluster, node: &str) -> String {
    c.nodes.get(node).and_then(|n| n.spec.qemu_version.clone()).unwrap_or_else(|| {
        match c.version.major {
            7 => "7.2.10-1",
            8 => "9.0.2-4",
            _ => "10.1.2-1",
        }
        .into()
    })
}

/// The upstream part of the QEMU package version (`9.0.2-4` → `9.0.2`), as `running-qemu` shows it.
pub fn qemu_upstream(c: &crate::state::Cluster, node: &str) -> String {
    let v = qemu_package_version(c, node);
    v.split('-').next().unwrap_or(&v).to_owned()
}

/// `GET /nodes/{node}/apt/versions`: the important packages (a subset of PVE's list, same fields).
fn apt_versions(w: &World, cx: &Ctx, node: &str) -> ApiResult {
    cx.require(w, &format!("/nodes/{node}"), "Sys.Audit")?;
    let c = &w.cluster;
    let kernel = match c.version.major {
        7 => "5.15.158-2-pve",
        8 => "6.8.12-9-pve",
        _ => "6.17.2-1-pve",
    };
    let ha_manager = match c.version.major {
        7 => "3.6.1",
        8 => "4.0.7",
        _ => "5.0.5",
    };
    let row = |pkg: &str, title: &str, version: String| {
        json!({
            "Package": pkg, "Title": title, "Description": title, "Version": version,
            "Arch": "amd64", "CurrentState": "Installed", "Origin": "Proxmox",
            "Priority": "optional", "Section": "admin",
        })
    };
    let mut ve = row("proxmox-ve", "Proxmox Virtual Environment", c.version.text.clone());
    ve["RunningKernel"] = kernel.into();
    let mut manager =
        row("pve-manager", "Proxmox Virtual Environment Management Tools", c.version.text.clone());
    manager["ManagerVersion"] = c.version.text.clone().into();
    ok(json!([
        ve,
        manager,
        row("pve-qemu-kvm", "Full virtualization on x86 hardware", qemu_package_version(c, node)),
        row("pve-ha-manager", "Proxmox VE HA Manager", ha_manager.into()),
    ]))
}
