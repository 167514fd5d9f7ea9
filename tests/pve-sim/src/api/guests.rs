//! `/nodes/{node}/{qemu,lxc}/{vmid}/*`: config, status, RRD, migration.

use serde_json::{json, Map, Value};

use super::{ok, ApiError, ApiResult, Ctx};
use crate::rrd;
use crate::scenario::GuestType;
use crate::server::{Sim, World};
use crate::state::{hash2, Guest};

fn conf_path(node: &str, kind: GuestType, vmid: &str) -> String {
    match kind {
        GuestType::Qemu => format!("nodes/{node}/qemu-server/{vmid}.conf"),
        GuestType::Lxc => format!("nodes/{node}/lxc/{vmid}.conf"),
    }
}

/// The guest addressed by the path, checked against node and type like PVE's config-file lookup.
fn lookup<'w>(w: &'w World, node: &str, kind: GuestType, vmid: &str) -> Result<&'w Guest, ApiError> {
    let id: u32 = vmid
        .parse()
        .map_err(|_| ApiError::param("vmid", format!("type check ('integer') failed - got '{vmid}'")))?;
    if !(100..=999_999_999).contains(&id) {
        return Err(ApiError::param("vmid", "value must have a minimum value of 100"));
    }
    w.cluster.guests.get(&id).filter(|g| g.node == node && g.spec.kind == kind).ok_or_else(|| {
        ApiError::die(format!("Configuration file '{}' does not exist", conf_path(node, kind, vmid)))
    })
}

/// Row of `/nodes/{n}/qemu|lxc`; with `current`, the `status/current` object.
/// `pressure` is the node's PSI tuple from [`rrd::pressure`] (computed once per node by callers).
pub fn status_row(w: &World, cx: &Ctx, g: &Guest, current: bool, pressure: rrd::Pressure) -> Value {
    let c = &w.cluster;
    let (ni, no, dr, dw) = super::cluster::io_rates(c, g);
    let up = g.uptime(cx.now_i());
    let upf = up as f64;
    let mut m = Map::new();
    m.insert("vmid".into(), g.spec.vmid.into());
    m.insert("status".into(), g.status.as_str().into());
    m.insert("name".into(), g.name().into());
    m.insert("cpu".into(), json!(g.cpu()));
    m.insert("cpus".into(), g.vcpus().into());
    m.insert("mem".into(), g.mem().into());
    m.insert("maxmem".into(), g.maxmem().into());
    m.insert("disk".into(), (if g.spec.kind == GuestType::Lxc { g.disk_used() } else { 0 }).into());
    m.insert("maxdisk".into(), g.maxdisk().into());
    m.insert("netin".into(), ((ni * upf) as u64).into());
    m.insert("netout".into(), ((no * upf) as u64).into());
    m.insert("diskread".into(), ((dr * upf) as u64).into());
    m.insert("diskwrite".into(), ((dw * upf) as u64).into());
    m.insert("uptime".into(), up.into());
    if g.running() {
        m.insert("pid".into(), (1000 + hash2(1, g.spec.vmid as u64) % 3_000_000).into());
    }
    if let Some(l) = &g.lock {
        m.insert("lock".into(), l.clone().into());
    }
    if !g.spec.tags.is_empty() {
        m.insert("tags".into(), g.tags_string().into());
    }
    if g.spec.template {
        m.insert("template".into(), 1.into());
    }
    let is9 = c.version.is9();
    let (ps, ios, iof, ms, mf) = if g.running() { pressure } else { (0.0, 0.0, 0.0, 0.0, 0.0) };
    match g.spec.kind {
        GuestType::Qemu => {
            if current || g.running() {
                m.insert("qmpstatus".into(), g.status.as_str().into());
            }
            if g.running() && current {
                let qemu = super::nodes::qemu_upstream(c, &g.node);
                let machine = qemu.split('.').take(2).collect::<Vec<_>>().join(".");
                m.insert("running-machine".into(), format!("pc-q35-{machine}+pve1").into());
                m.insert("running-qemu".into(), qemu.into());
            }
            if is9 {
                m.insert("memhost".into(), ((g.mem() as f64 * 1.02) as u64).into());
                m.insert("pressurecpusome".into(), json!(ps));
                m.insert("pressurecpufull".into(), json!(ps * 0.5));
                m.insert("pressureiosome".into(), json!(ios));
                m.insert("pressureiofull".into(), json!(iof));
                m.insert("pressurememorysome".into(), json!(ms));
                m.insert("pressurememoryfull".into(), json!(mf));
            }
        }
        GuestType::Lxc => {
            m.insert("type".into(), "lxc".into());
            m.insert("maxswap".into(), 536_870_912u64.into());
            if is9 {
                m.insert("pressurecpusome".into(), json!(ps));
                m.insert("pressureiosome".into(), json!(ios));
                m.insert("pressureiofull".into(), json!(iof));
                m.insert("pressurememorysome".into(), json!(ms));
                m.insert("pressurememoryfull".into(), json!(mf));
            }
        }
    }
    if current {
        let mut ha = json!({"managed": g.spec.ha.is_some() as u8});
        if let Some(s) = c.ha_state(g) {
            ha["state"] = s.into();
        }
        m.insert("ha".into(), ha);
    }
    Value::Object(m)
}

fn mac(vmid: u32, i: u32) -> String {
    let h = hash2(vmid as u64, i as u64);
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", (h >> 16) & 0xFF, (h >> 8) & 0xFF, h & 0xFF)
}

pub(super) fn volid(w: &World, g: &Guest) -> String {
    let vmid = g.spec.vmid;
    let kind = w.cluster.storage(&g.storage).map(|s| s.kind.as_str()).unwrap_or("dir");
    match (g.spec.kind, kind) {
        (GuestType::Qemu, "dir" | "nfs" | "cifs") => format!("{}:{vmid}/vm-{vmid}-disk-0.qcow2", g.storage),
        (GuestType::Qemu, _) => format!("{}:vm-{vmid}-disk-0", g.storage),
        (GuestType::Lxc, "dir" | "nfs" | "zfspool") => format!("{}:subvol-{vmid}-disk-0", g.storage),
        (GuestType::Lxc, _) => format!("{}:vm-{vmid}-disk-0", g.storage),
    }
}

/// Parses `hostpci0=0000:01:00.0` into (key, value).
fn local_resource(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), "host=0000:00:00.0".to_string()),
    }
}

pub fn config(w: &World, g: &Guest) -> Value {
    let c = &w.cluster;
    let vmid = g.spec.vmid;
    let mut m = Map::new();
    let size = format!("{}G", g.spec.disk_gib.round() as u64);
    let mem_mib = (g.spec.memory_gib * 1024.0).round() as u64;
    match g.spec.kind {
        GuestType::Qemu => {
            m.insert("name".into(), g.name().into());
            m.insert("cores".into(), g.spec.cores.into());
            m.insert("sockets".into(), g.spec.sockets.into());
            // property string since 8.1 → string; a plain integer before
            m.insert(
                "memory".into(),
                if c.version.at_least(8, 1) { mem_mib.to_string().into() } else { mem_mib.into() },
            );
            m.insert("cpu".into(), "x86-64-v2-AES".into());
            m.insert("ostype".into(), "l26".into());
            m.insert("boot".into(), "order=scsi0;net0".into());
            m.insert("scsihw".into(), "virtio-scsi-single".into());
            m.insert("scsi0".into(), format!("{},iothread=1,size={size}", volid(w, g)).into());
            m.insert("net0".into(), format!("virtio={},bridge=vmbr0,firewall=1", mac(vmid, 0)).into());
            m.insert("numa".into(), 0.into());
            m.insert("agent".into(), "1".into());
            m.insert(
                "smbios1".into(),
                format!("uuid={:08x}-0000-4000-8000-{:012x}", vmid, hash2(vmid as u64, 9) & 0xFFFF_FFFF_FFFF)
                    .into(),
            );
            m.insert(
                "vmgenid".into(),
                format!("{:08x}-1111-4000-8000-{:012x}", vmid, hash2(vmid as u64, 10) & 0xFFFF_FFFF_FFFF)
                    .into(),
            );
            m.insert(
                "meta".into(),
                format!("creation-qemu=9.2.0,ctime={}", c.started_at - 86400 * 30).into(),
            );
            for r in &g.spec.local_resources {
                let (k, v) = local_resource(r);
                m.insert(k, v.into());
            }
        }
        GuestType::Lxc => {
            m.insert("hostname".into(), g.name().into());
            m.insert("cores".into(), g.spec.cores.into());
            m.insert("memory".into(), mem_mib.into());
            m.insert("swap".into(), 512.into());
            m.insert("rootfs".into(), format!("{},size={size}", volid(w, g)).into());
            m.insert(
                "net0".into(),
                format!("name=eth0,bridge=vmbr0,hwaddr={},ip=dhcp,type=veth", mac(vmid, 0)).into(),
            );
            m.insert("ostype".into(), "debian".into());
            m.insert("arch".into(), "amd64".into());
            m.insert("unprivileged".into(), 1.into());
            for r in &g.spec.local_resources {
                let (k, v) = local_resource(r);
                m.insert(k, v.into());
            }
        }
    }
    if !g.spec.tags.is_empty() {
        m.insert("tags".into(), g.tags_string().into());
    }
    if let Some(l) = &g.lock {
        m.insert("lock".into(), l.clone().into());
    }
    if g.spec.template {
        m.insert("template".into(), 1.into());
    }
    let digest_src = serde_json::to_string(&m).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, digest_src.as_bytes());
    m.insert("digest".into(), d.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>().into());
    Value::Object(m)
}

pub fn dispatch(
    _sim: &Sim,
    w: &mut World,
    cx: &Ctx,
    node: &str,
    kind: GuestType,
    vmid: &str,
    tail: &[&str],
) -> ApiResult {
    let m = cx.method.as_str();
    // RRD is served for any vmid on either path (PVE reads the RRD file by vmid only)
    if let ("GET", ["rrddata"]) = (m, tail) {
        let id: u32 = vmid.parse().map_err(|_| ApiError::param("vmid", "type check ('integer') failed"))?;
        cx.require(w, &format!("/vms/{id}"), "VM.Audit")?;
        let (tf, cf) = rrd::params(cx, w.cluster.version.is9())?;
        let g = w
            .cluster
            .guests
            .get(&id)
            .ok_or_else(|| ApiError::die(format!("RRD data for {vmid} does not exist")))?;
        return ok(rrd::guest_rows(&w.cluster, g, tf, cf, cx.now));
    }
    let g = lookup(w, node, kind, vmid)?;
    let id = g.spec.vmid;
    let acl_path = format!("/vms/{id}");
    match (m, tail) {
        ("GET", []) => {
            cx.require(w, &acl_path, "VM.Audit")?;
            ok(
                json!([{"subdir": "config"}, {"subdir": "status"}, {"subdir": "rrddata"}, {"subdir": "migrate"}]),
            )
        }
        ("GET", ["config"]) => {
            cx.require(w, &acl_path, "VM.Audit")?;
            ok(config(w, g))
        }
        ("GET", ["status"]) => {
            cx.require(w, &acl_path, "VM.Audit")?;
            ok(json!([{"subdir": "current"}]))
        }
        ("GET", ["status", "current"]) => {
            cx.require(w, &acl_path, "VM.Audit")?;
            ok(status_row(w, cx, g, true, rrd::pressure(&w.cluster, &g.node)))
        }
        ("GET", ["migrate"]) => {
            cx.require(w, &acl_path, "VM.Migrate")?;
            match kind {
                GuestType::Qemu => ok(qemu_precondition(w, g)?),
                GuestType::Lxc if w.cluster.version.is9() => ok(lxc_precondition(w, g)?),
                GuestType::Lxc => Err(ApiError::not_implemented("GET", cx.path)),
            }
        }
        ("POST", ["migrate"]) => {
            cx.require(w, &acl_path, "VM.Migrate")?;
            migrate(w, cx, id, kind)
        }
        _ => Err(ApiError::not_implemented(m, cx.path)),
    }
}

fn check_lock(g: &Guest) -> Result<(), ApiError> {
    match &g.lock {
        Some(l) => Err(ApiError::die(format!(
            "{} is locked ({l})",
            if g.spec.kind == GuestType::Qemu { "VM" } else { "CT" }
        ))),
        None => Ok(()),
    }
}

/// Online nodes other than the guest's; split by storage availability.
fn target_nodes(w: &World, g: &Guest) -> (Vec<String>, Map<String, Value>) {
    let c = &w.cluster;
    let mut allowed = Vec::new();
    let mut not_allowed = Map::new();
    for (name, n) in &c.nodes {
        if *name == g.node {
            continue;
        }
        let st_ok = c.storage(&g.storage).is_none_or(|s| s.nodes.is_empty() || s.nodes.contains(name));
        if !st_ok {
            not_allowed.insert(name.clone(), json!({"unavailable_storages": [g.storage]}));
        } else if n.online {
            allowed.push(name.clone());
        }
    }
    (allowed, not_allowed)
}

fn qemu_precondition(w: &World, g: &Guest) -> Result<Value, ApiError> {
    check_lock(g)?;
    let c = &w.cluster;
    let (allowed, not_allowed) = target_nodes(w, g);
    let mut m = Map::new();
    m.insert("running".into(), (g.running() as u8).into());
    if g.running() && !c.version.at_least(8, 0) {
        // PVE 7.4 only fills these for stopped VMs
    } else {
        m.insert("allowed_nodes".into(), json!(allowed));
        m.insert("not_allowed_nodes".into(), Value::Object(not_allowed));
    }
    let local_disks: Vec<Value> = if c.guest_has_local_disk(g) {
        vec![
            json!({"volid": volid(w, g), "size": g.maxdisk(), "cdrom": 0, "is_unused": 0, "drivename": "scsi0"}),
        ]
    } else {
        vec![]
    };
    m.insert("local_disks".into(), Value::Array(local_disks));
    let lr: Vec<String> = g.spec.local_resources.iter().map(|r| local_resource(r).0).collect();
    m.insert("local_resources".into(), json!(lr));
    if c.version.at_least(8, 0) {
        m.insert("mapped-resources".into(), json!([]));
        m.insert("mapped-resource-info".into(), json!({}));
    }
    if c.version.is9() {
        m.insert("has-dbus-vmstate".into(), 0.into());
        m.insert("dependent-ha-resources".into(), json!([]));
    }
    Ok(Value::Object(m))
}

fn lxc_precondition(w: &World, g: &Guest) -> Result<Value, ApiError> {
    check_lock(g)?;
    let (allowed, not_allowed) = target_nodes(w, g);
    Ok(json!({
        "running": g.running() as u8,
        "allowed-nodes": allowed,
        "not-allowed-nodes": Value::Object(not_allowed),
        "dependent-ha-resources": [],
    }))
}

fn migrate(w: &mut World, cx: &Ctx, vmid: u32, kind: GuestType) -> ApiResult {
    let c = &w.cluster;
    let g = &c.guests[&vmid];
    let p = &cx.params;
    let target = p.required("target")?;
    if !crate::scenario::valid_node_name(&target) {
        return Err(ApiError::param("target", "invalid format - value does not look like a valid node name"));
    }
    if !c.version.is9() && p.get("with-conntrack-state").is_some() {
        return Err(ApiError::param(
            "with-conntrack-state",
            "property is not defined in schema and the schema does not allow additional properties",
        ));
    }
    let online = p.bool("online")?.unwrap_or(false);
    let restart = if kind == GuestType::Lxc { p.bool("restart")?.unwrap_or(false) } else { false };
    let with_local =
        if kind == GuestType::Qemu { p.bool("with-local-disks")?.unwrap_or(false) } else { false };
    let force = if kind == GuestType::Qemu { p.bool("force")?.unwrap_or(false) } else { false };
    if kind == GuestType::Qemu {
        p.bool("with-conntrack-state")?;
    }
    for root_only in ["force", "migration_type", "migration_network"] {
        if p.get(root_only).is_some() && kind == GuestType::Qemu && cx.ident.userid != "root@pam" {
            return Err(ApiError::forbidden("/", &format!("root@pam only ({root_only})")));
        }
    }
    if !c.nodes.contains_key(&target) {
        return Err(ApiError::die(format!("no such cluster node '{target}'")));
    }
    if target == g.node {
        return Err(ApiError::die("target is local node."));
    }
    check_lock(g)?;
    if g.spec.template && online {
        return Err(ApiError::die("can't migrate running VM without --online"));
    }
    match kind {
        GuestType::Qemu => {
            if g.running() && !online {
                return Err(ApiError::die("can't migrate running VM without --online"));
            }
            if !g.spec.local_resources.is_empty() && !force {
                let lr: Vec<String> = g.spec.local_resources.iter().map(|r| local_resource(r).0).collect();
                return Err(ApiError::die(format!(
                    "can't migrate VM which uses local devices: {}",
                    lr.join(", ")
                )));
            }
            if g.running() && c.guest_has_local_disk(g) && !with_local {
                return Err(ApiError::die(
                    "can't live migrate attached local disks without with-local-disks option",
                ));
            }
        }
        GuestType::Lxc => {
            if online {
                return Err(ApiError::die("lxc live migration is currently not implemented"));
            }
            if g.running() && !restart {
                return Err(ApiError::die("can't migrate running container without --online or --restart"));
            }
        }
    }
    let user = cx.ident.task_user();
    let ha_managed = g.spec.ha.as_ref().is_some_and(|h| h.state != "ignored");
    if ha_managed {
        let upid = w.cluster.start_ha_migration(vmid, &target, &user, cx.now, cx.time_scale);
        return ok(upid.into());
    }
    let (fail, hang) = w.faults.take_task_fault(vmid);
    let upid =
        w.cluster.start_migration(vmid, &target, online, restart, &user, cx.now, cx.time_scale, fail, hang);
    ok(upid.into())
}
