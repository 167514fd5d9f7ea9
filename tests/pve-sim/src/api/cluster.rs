//! `/cluster/*` (resources, status, options, tasks and log; HA in `ha.rs`) and `/pools`.

use serde_json::{json, Map, Value};

use super::{ok, ApiError, ApiResult, Ctx};
use crate::scenario::{GuestType, GIB};
use crate::server::World;
use crate::state::{unit, Cluster, Guest, NodeUsage};

/// Network/disk I/O rates of a guest in bytes/s: (netin, netout, diskread, diskwrite).
pub fn io_rates(c: &Cluster, g: &Guest) -> (f64, f64, f64, f64) {
    if !g.running() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let (ni, no) = g.spec.net_bps.unwrap_or_else(|| {
        let base = 20_000.0 + 2_000_000.0 * g.spec.cpu * unit(c.seed, g.spec.vmid as u64 + 7);
        (base, base * 0.6)
    });
    let dr = 50_000.0 + 500_000.0 * g.spec.cpu;
    (ni, no, dr, dr * 0.8)
}

/// Node row as in `/cluster/resources` (and, with small changes, `/nodes`).
pub fn node_row(w: &World, cx: &Ctx, name: &str, u: &NodeUsage) -> Value {
    let c = &w.cluster;
    let n = &c.nodes[name];
    let mut row = json!({
        "id": format!("node/{name}"), "type": "node", "node": name,
        "status": if n.online { "online" } else { "offline" }, "level": "",
    });
    if cx.has(w, &format!("/nodes/{name}"), "Sys.Audit") {
        let o = row.as_object_mut().expect("object");
        o.insert("maxcpu".into(), u.maxcpu.into());
        o.insert("maxmem".into(), u.maxmem.into());
        o.insert("maxdisk".into(), u.maxdisk.into());
        if n.online {
            o.insert("cpu".into(), json!(u.cpu));
            o.insert("mem".into(), u.mem.into());
            o.insert("disk".into(), u.disk.into());
            o.insert("uptime".into(), (cx.now_i() - n.boot_time).max(0).into());
        }
        o.insert("cgroup-mode".into(), 2.into());
    }
    if c.version.at_least(8, 3) {
        let hastate = if !n.online {
            "unknown"
        } else if n.maintenance {
            "maintenance"
        } else {
            "online"
        };
        row["hastate"] = hastate.into();
    }
    row
}

/// Guest row as in `/cluster/resources`.
pub fn guest_row(w: &World, cx: &Ctx, g: &Guest) -> Value {
    let c = &w.cluster;
    let vmid = g.spec.vmid;
    let node_online = c.nodes.get(&g.node).is_some_and(|n| n.online);
    let (ni, no, dr, dw) = io_rates(c, g);
    let up = g.uptime(cx.now_i()) as f64;
    let mut row = json!({
        "id": format!("{}/{vmid}", g.spec.kind.as_str()),
        "type": g.spec.kind.as_str(),
        "vmid": vmid,
        "node": g.node,
        "name": g.name(),
        "status": if node_online { g.status.as_str() } else { "unknown" },
        "template": g.spec.template as u8,
        "cpu": g.cpu(),
        "maxcpu": g.vcpus(),
        "mem": g.mem(),
        "maxmem": g.maxmem(),
        "disk": if g.spec.kind == GuestType::Lxc { g.disk_used() } else { 0 },
        "maxdisk": g.maxdisk(),
        "netin": (ni * up) as u64,
        "netout": (no * up) as u64,
        "diskread": (dr * up) as u64,
        "diskwrite": (dw * up) as u64,
        "uptime": g.uptime(cx.now_i()),
    });
    let o = row.as_object_mut().expect("object");
    if g.spec.kind == GuestType::Qemu && c.version.is9() {
        o.insert("memhost".into(), ((g.mem() as f64 * 1.02) as u64).into());
    }
    if !g.spec.tags.is_empty() {
        o.insert("tags".into(), g.tags_string().into());
    }
    if let Some(l) = &g.lock {
        o.insert("lock".into(), l.clone().into());
    }
    if let Some(p) = &g.spec.pool {
        if cx.has(w, &format!("/pool/{p}"), "Pool.Audit") {
            o.insert("pool".into(), p.clone().into());
        }
    }
    if let Some(h) = c.ha_state(g) {
        o.insert("hastate".into(), h.into());
    }
    row
}

/// `GET /storage`: the storage configuration (`storage.cfg`) of the storages the caller may audit.
/// `shared` appears only where the configuration sets it: on types that may be either (a `dir`
/// on a mounted share); network types are shared by their nature and do not say so.
pub fn storage_config(w: &World, cx: &Ctx) -> ApiResult {
    let mut out = Vec::new();
    for st in &w.cluster.storages {
        if !cx.has(w, &format!("/storage/{}", st.id), "Datastore.Audit") {
            continue;
        }
        let mut row = json!({"storage": st.id, "type": st.kind, "content": st.content, "digest": "0"});
        if !st.nodes.is_empty() {
            row["nodes"] = st.nodes.join(",").into();
        }
        if st.shared && matches!(st.kind.as_str(), "dir" | "lvm" | "btrfs" | "lvmthin" | "zfspool") {
            row["shared"] = 1.into();
        }
        out.push(row);
    }
    ok(Value::Array(out))
}

fn storage_rows(w: &World, cx: &Ctx) -> Vec<Value> {
    let c = &w.cluster;
    let mut out = Vec::new();
    for (name, n) in &c.nodes {
        for st in c.node_storages(name) {
            if !cx.has(w, &format!("/storage/{}", st.id), "Datastore.Audit") {
                continue;
            }
            let (used, total) = c.storage_usage(st, name);
            let mut row = json!({
                "id": format!("storage/{name}/{}", st.id), "type": "storage", "storage": st.id, "node": name,
                "plugintype": st.kind, "status": if n.online { "available" } else { "unknown" },
                "content": st.content,
            });
            // Declared in the schema from 9.1 on; older releases leave it to `/storage`.
            if (c.version.major, c.version.minor) >= (9, 1) {
                row["shared"] = (st.shared as u8).into();
            }
            if n.online {
                row["disk"] = used.into();
                row["maxdisk"] = total.into();
            }
            out.push(row);
        }
    }
    out
}

pub fn resources(w: &World, cx: &Ctx) -> ApiResult {
    let ty = cx.params.str("type");
    let c = &w.cluster;
    let mut out = Vec::new();
    match ty.as_deref() {
        None | Some("vm") | Some("node") | Some("storage") | Some("sdn") => {}
        Some(other) => {
            return Err(ApiError::param(
                "type",
                format!("value '{other}' does not have a value in the enumeration 'vm, storage, node, sdn'"),
            ))
        }
    }
    if matches!(ty.as_deref(), None | Some("vm")) {
        for g in c.guests.values() {
            if cx.has(w, &format!("/vms/{}", g.spec.vmid), "VM.Audit") {
                out.push(guest_row(w, cx, g));
            }
        }
    }
    if matches!(ty.as_deref(), None | Some("node")) {
        for (name, u) in c.usage_map() {
            out.push(node_row(w, cx, &name, &u));
        }
    }
    if matches!(ty.as_deref(), None | Some("storage")) {
        out.extend(storage_rows(w, cx));
    }
    if ty.is_none() {
        for p in &c.pools {
            if cx.has(w, &format!("/pool/{}", p.id), "Pool.Audit") {
                out.push(json!({"id": format!("/pool/{}", p.id), "type": "pool", "pool": p.id}));
            }
        }
    }
    ok(Value::Array(out))
}

pub fn status(w: &World, cx: &Ctx) -> ApiResult {
    cx.require(w, "/", "Sys.Audit")?;
    let c = &w.cluster;
    let online = c.nodes.values().filter(|n| n.online).count();
    let quorate = online * 2 > c.nodes.len();
    let mut out = vec![json!({
        "id": "cluster", "type": "cluster", "name": c.name, "nodes": c.nodes.len(),
        "quorate": quorate as u8, "version": 3 + c.nodes.len(),
    })];
    let local = local_node(c);
    for (name, n) in &c.nodes {
        out.push(json!({
            "id": format!("node/{name}"), "type": "node", "name": name, "nodeid": n.nodeid, "ip": n.ip,
            "online": n.online as u8, "local": (Some(name) == local.as_ref()) as u8, "level": "",
        }));
    }
    ok(Value::Array(out))
}

/// The node the API answers from (the first online one): `local` in `/cluster/status`, and what
/// PVE resolves the node name `localhost` to (its UI asks `/nodes/localhost/subscription`).
pub fn local_node(c: &Cluster) -> Option<String> {
    c.nodes.values().find(|n| n.online).map(|n| n.spec.name.clone())
}

pub fn options(w: &World, cx: &Ctx) -> ApiResult {
    let mut answer = options_for(w, cx);
    // PVE adds the tags the user may set (its web UI iterates over them on load).
    if let Some(m) = answer.as_object_mut() {
        m.insert("allowed-tags".into(), json!(allowed_tags(w, cx)));
    }
    ok(answer)
}

/// A tag list option as PVE's GET shows it (an array) or as written (`a;b`).
fn tag_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(s)) => {
            s.split([';', ',', ' ']).filter(|t| !t.is_empty()).map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

/// As PVE's `get_allowed_tags` (pve-guest-common): a user with `Sys.Modify` on `/` gets the
/// allow-list, every guest's tags and the registered tags; anyone else the allow-list (unless
/// `user-allow` is `none`) and, for `free`/`existing` (`free` by default), the tags of the guests
/// they may audit, never a registered tag. Sorted, once each.
fn allowed_tags(w: &World, cx: &Ctx) -> Vec<String> {
    let o = &w.cluster.options;
    let privileged = cx.has(w, "/", "Sys.Modify");
    let registered = tag_list(o.get("registered-tags"));
    let access = o.get("user-tag-access");
    let allow = access.and_then(|a| a.get("user-allow")).and_then(Value::as_str).unwrap_or("free");
    let mut tags = Vec::new();
    if allow != "none" || privileged {
        tags.extend(tag_list(access.and_then(|a| a.get("user-allow-list"))));
    }
    if matches!(allow, "free" | "existing") || privileged {
        let visible = w.cluster.guests.values();
        let visible =
            visible.filter(|g| privileged || cx.has(w, &format!("/vms/{}", g.spec.vmid), "VM.Audit"));
        tags.extend(visible.flat_map(|g| g.spec.tags.iter().cloned()));
    }
    if privileged {
        tags.extend(registered);
    } else {
        tags.retain(|t| !registered.contains(t));
    }
    tags.sort();
    tags.dedup();
    tags
}

/// Without `Sys.Audit` on `/` PVE shows only `console` and `tag-style` of datacenter.cfg.
fn options_for(w: &World, cx: &Ctx) -> Value {
    if !cx.has(w, "/", "Sys.Audit") {
        let mut m = Map::new();
        for k in ["console", "tag-style"] {
            if let Some(v) = w.cluster.options.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        return Value::Object(m);
    }
    w.cluster.options.clone()
}

pub fn get(w: &World, cx: &Ctx, rest: &[&str]) -> ApiResult {
    match rest {
        [] => ok(json!([
            {"name": "resources"}, {"name": "status"}, {"name": "options"}, {"name": "tasks"}, {"name": "log"}, {"name": "ha"}
        ])),
        ["resources"] => resources(w, cx),
        ["status"] => status(w, cx),
        ["options"] => options(w, cx),
        ["tasks"] => super::tasks::cluster_tasks(w, cx),
        ["log"] => super::tasks::cluster_log(w, cx),
        ["ha", rest @ ..] => super::ha::get(w, cx, rest),
        _ => Err(ApiError::not_implemented("GET", cx.path)),
    }
}

fn pool_members(w: &World, cx: &Ctx, id: &str, ty: Option<&str>) -> Vec<Value> {
    w.cluster
        .guests
        .values()
        .filter(|g| g.spec.pool.as_deref() == Some(id))
        .filter(|g| ty.is_none_or(|t| t == g.spec.kind.as_str()))
        .filter(|g| cx.has(w, &format!("/vms/{}", g.spec.vmid), "VM.Audit"))
        .map(|g| guest_row(w, cx, g))
        .collect()
}

fn check_pool_type(cx: &Ctx) -> Result<Option<String>, ApiError> {
    match cx.params.str("type") {
        None => Ok(None),
        Some(t) if ["qemu", "lxc", "storage"].contains(&t.as_str()) => Ok(Some(t)),
        Some(t) => Err(ApiError::param(
            "type",
            format!("value '{t}' does not have a value in the enumeration 'qemu, lxc, storage'"),
        )),
    }
}

/// `GET /pools` (and 8.1+ `?poolid=`).
pub fn pools(w: &World, cx: &Ctx) -> ApiResult {
    let ty = check_pool_type(cx)?;
    let c = &w.cluster;
    if let Some(id) = cx.params.str("poolid") {
        if !c.version.at_least(8, 1) {
            return Err(ApiError::param(
                "poolid",
                "property is not defined in schema and the schema does not allow additional properties",
            ));
        }
        let p = c
            .pools
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| ApiError::die(format!("pool '{id}' does not exist")))?;
        cx.require(w, &format!("/pool/{id}"), "Pool.Audit")?;
        let mut row = json!({"poolid": id, "members": pool_members(w, cx, &id, ty.as_deref())});
        if let Some(cm) = &p.comment {
            row["comment"] = cm.clone().into();
        }
        return ok(json!([row]));
    }
    if ty.is_some() {
        return Err(ApiError::param("type", "the 'type' parameter requires 'poolid'"));
    }
    let rows: Vec<Value> = c
        .pools
        .iter()
        .filter(|p| cx.has(w, &format!("/pool/{}", p.id), "Pool.Audit"))
        .map(|p| {
            let mut r = json!({"poolid": p.id});
            if let Some(cm) = &p.comment {
                r["comment"] = cm.clone().into();
            }
            r
        })
        .collect();
    ok(Value::Array(rows))
}

/// `GET /pools/{poolid}` (deprecated form).
pub fn pool(w: &World, cx: &Ctx, id: &str) -> ApiResult {
    let ty = check_pool_type(cx)?;
    let p = w
        .cluster
        .pools
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::die(format!("pool '{id}' does not exist")))?;
    cx.require(w, &format!("/pool/{id}"), "Pool.Audit")?;
    let mut r = json!({"members": pool_members(w, cx, id, ty.as_deref())});
    if let Some(cm) = &p.comment {
        r["comment"] = cm.clone().into();
    }
    ok(r)
}

/// Memory in GiB for log lines.
pub fn gib(b: u64) -> f64 {
    b as f64 / GIB
}
