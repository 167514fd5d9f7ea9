//! `/cluster/ha/*`: resources, groups, rules (9.x), status.

use serde_json::{json, Map, Value};

use super::{ok, ApiError, ApiResult, Ctx};
use crate::scenario::GuestType;
use crate::server::World;
use crate::state::Guest;

/// The PVE 7/8 HA group of a resource: its own `group`, else the first node-affinity rule that
/// lists it (PVE 9 turned groups into node-affinity rules; before 9 a scenario's node-affinity
/// rules are served as the groups they came from).
fn group_of(rules: &[crate::scenario::HaRuleSpec], g: &Guest) -> Option<String> {
    let ha = g.spec.ha.as_ref()?;
    ha.group.clone().or_else(|| {
        let sid = g.sid();
        rules.iter().find(|r| r.kind == "node-affinity" && r.resources.contains(&sid)).map(|r| r.rule.clone())
    })
}

fn resource_row(g: &Guest, is9: bool, group: Option<String>) -> Value {
    let ha = g.spec.ha.as_ref().expect("HA guest");
    let mut r = json!({
        "sid": g.sid(), "type": g.spec.kind.ha_prefix(), "state": ha.state,
        "max_restart": ha.max_restart, "max_relocate": ha.max_relocate,
        "digest": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
    });
    if is9 {
        r["failback"] = (ha.failback as u8).into();
    } else if let Some(gr) = group {
        r["group"] = gr.into();
    }
    if let Some(cm) = &ha.comment {
        r["comment"] = cm.clone().into();
    }
    r
}

/// Parses `vm:100`, `ct:101` or `100` to a vmid.
fn parse_sid(sid: &str) -> Option<u32> {
    let id = sid.strip_prefix("vm:").or_else(|| sid.strip_prefix("ct:")).unwrap_or(sid);
    id.parse().ok()
}

pub fn get(w: &World, cx: &Ctx, rest: &[&str]) -> ApiResult {
    cx.require(w, "/", "Sys.Audit")?;
    let c = &w.cluster;
    let is9 = c.version.is9();
    match rest {
        [] => ok(json!([{"id": "status"}, {"id": "resources"}, {"id": "groups"}, {"id": "rules"}])),
        ["resources"] => {
            let ty = cx.params.str("type");
            if let Some(t) = &ty {
                if t != "vm" && t != "ct" {
                    return Err(ApiError::param(
                        "type",
                        format!("value '{t}' does not have a value in the enumeration 'ct, vm'"),
                    ));
                }
            }
            let rows: Vec<Value> = c
                .guests
                .values()
                .filter(|g| g.spec.ha.is_some())
                .filter(|g| ty.as_deref().is_none_or(|t| t == g.spec.kind.ha_prefix()))
                .map(|g| resource_row(g, is9, group_of(&c.ha_rules, g)))
                .collect();
            ok(Value::Array(rows))
        }
        ["resources", sid] => {
            let g = parse_sid(sid)
                .and_then(|id| c.guests.get(&id))
                .filter(|g| g.spec.ha.is_some())
                .ok_or_else(|| ApiError::die(format!("no such resource '{sid}'")))?;
            ok(resource_row(g, is9, group_of(&c.ha_rules, g)))
        }
        ["groups"] => {
            if is9 {
                return ok(json!([]));
            }
            const DIGEST: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
            // Node-affinity rules as the groups PVE 9 converts into them: nodes with priorities,
            // strict = restricted.
            let mut rows: Vec<Value> = c
                .ha_rules
                .iter()
                .filter(|r| r.kind == "node-affinity")
                .map(|r| json!({"group": r.rule, "type": "group", "nodes": r.nodes.join(","), "restricted": r.strict as u8, "nofailback": 0, "digest": DIGEST}))
                .collect();
            // Groups only named by a resource: every node, unrestricted.
            let mut named: Vec<String> =
                c.guests.values().filter_map(|g| g.spec.ha.as_ref()?.group.clone()).collect();
            named.sort();
            named.dedup();
            named.retain(|gr| !c.ha_rules.iter().any(|r| r.kind == "node-affinity" && &r.rule == gr));
            let nodes: Vec<&str> = c.nodes.keys().map(String::as_str).collect();
            rows.extend(named.into_iter().map(|gr| {
                json!({"group": gr, "type": "group", "nodes": nodes.join(","), "restricted": 0, "nofailback": 0, "digest": DIGEST})
            }));
            ok(Value::Array(rows))
        }
        ["rules"] => {
            if !is9 {
                return Err(ApiError::not_implemented("GET", cx.path));
            }
            let ty = cx.params.str("type");
            let res = cx.params.str("resource");
            let rows: Vec<Value> = c
                .ha_rules
                .iter()
                .enumerate()
                .filter(|(_, r)| ty.as_deref().is_none_or(|t| t == r.kind))
                .filter(|(_, r)| res.as_deref().is_none_or(|s| r.resources.iter().any(|x| x == s)))
                .map(|(i, r)| {
                    let mut v = json!({
                        "rule": r.rule, "type": r.kind, "resources": r.resources.join(","),
                        "order": i + 1, "digest": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
                    });
                    if r.kind == "node-affinity" {
                        v["nodes"] = r.nodes.join(",").into();
                        v["strict"] = (r.strict as u8).into();
                    } else if let Some(a) = &r.affinity {
                        v["affinity"] = a.clone().into();
                    }
                    if r.disable {
                        v["disable"] = 1.into();
                    }
                    if let Some(cm) = &r.comment {
                        v["comment"] = cm.clone().into();
                    }
                    v
                })
                .collect();
            ok(Value::Array(rows))
        }
        ["status"] => ok(json!([{"name": "current"}, {"name": "manager_status"}])),
        ["status", "current"] => status_current(w, cx),
        ["status", "manager_status"] => manager_status(w, cx),
        _ => Err(ApiError::not_implemented("GET", cx.path)),
    }
}

fn master(w: &World) -> Option<String> {
    w.cluster.nodes.values().find(|n| n.online).map(|n| n.spec.name.clone())
}

fn lrm_mode(w: &World, node: &str) -> &'static str {
    let n = &w.cluster.nodes[node];
    if !n.online {
        "old timestamp - dead?"
    } else if n.maintenance {
        "maintenance mode"
    } else if w.cluster.guests.values().any(|g| g.node == node && g.spec.ha.is_some()) {
        "active"
    } else {
        "idle"
    }
}

fn status_current(w: &World, cx: &Ctx) -> ApiResult {
    let c = &w.cluster;
    let now = cx.now_i();
    let mut out = Vec::new();
    let online = c.nodes.values().filter(|n| n.online).count();
    let quorate = (online * 2 > c.nodes.len()) as u8;
    let m = master(w).unwrap_or_default();
    out.push(json!({"id": "quorum", "type": "quorum", "node": m, "status": if quorate == 1 { "OK" } else { "No quorum on node" }, "quorate": quorate}));
    let has_ha = c.guests.values().any(|g| g.spec.ha.is_some());
    if has_ha {
        out.push(json!({"id": "master", "type": "master", "node": m, "status": format!("{m} (active, {})", ctime(now)), "timestamp": now}));
        if c.version.at_least(9, 1) {
            out.push(json!({"id": "fencing", "type": "fencing", "node": m, "status": "armed", "armed-state": "armed"}));
        }
    }
    for name in c.nodes.keys() {
        out.push(json!({
            "id": format!("lrm:{name}"), "type": "lrm", "node": name,
            "status": format!("{name} ({}, {})", lrm_mode(w, name), ctime(now)), "timestamp": now,
        }));
    }
    for g in c.guests.values().filter(|g| g.spec.ha.is_some()) {
        let ha = g.spec.ha.as_ref().expect("HA");
        let crm = c.ha_state(g).unwrap_or_default();
        out.push(json!({
            "id": format!("service:{}", g.sid()), "type": "service", "sid": g.sid(), "node": g.node,
            "crm_state": crm, "state": crm, "request_state": ha.state,
            "max_restart": ha.max_restart, "max_relocate": ha.max_relocate,
            "status": format!("{} ({}, {crm})", g.sid(), g.node),
        }));
    }
    ok(Value::Array(out))
}

fn manager_status(w: &World, cx: &Ctx) -> ApiResult {
    let c = &w.cluster;
    let now = cx.now_i();
    let mut node_status = Map::new();
    let mut node_request = Map::new();
    let mut lrm = Map::new();
    for (name, n) in &c.nodes {
        let st = if !n.online {
            "unknown"
        } else if n.maintenance {
            "maintenance"
        } else {
            "online"
        };
        node_status.insert(name.clone(), st.into());
        if n.maintenance {
            node_request.insert(name.clone(), json!({"maintenance": 1}));
        }
        let mode = if n.maintenance { "maintenance" } else { "active" };
        lrm.insert(name.clone(), json!({"mode": mode, "state": if n.online { "active" } else { "wait_for_agent_lock" }, "timestamp": now, "results": {}}));
    }
    let mut services = Map::new();
    for g in c.guests.values().filter(|g| g.spec.ha.is_some()) {
        let mut s = json!({"node": g.node, "state": c.ha_state(g).unwrap_or_default(), "uid": format!("{:016x}", g.spec.vmid)});
        if g.running() {
            s["running"] = 1.into();
        }
        if let Some(m) = &g.migration {
            s["target"] = m.target.clone().into();
        }
        if let Some(n) = &g.maintenance_node {
            s["maintenance_node"] = n.clone().into();
        }
        services.insert(g.sid(), s);
    }
    let m = master(w).unwrap_or_default();
    let online = c.nodes.values().filter(|n| n.online).count();
    ok(json!({
        "manager_status": {"master_node": m, "timestamp": now, "node_status": node_status,
                           "node_request": node_request, "service_status": services},
        "lrm_status": lrm,
        "quorum": {"node": m, "quorate": ((online * 2 > c.nodes.len()) as u8).to_string()},
    }))
}

/// `POST /cluster/ha/resources/{sid}/migrate` and `.../relocate`: the CRM starts the migration
/// (no UPID is returned). Relocate stops the guest, moves it and starts it again.
pub fn migrate(w: &mut crate::server::World, cx: &Ctx, sid: &str, relocate: bool) -> ApiResult {
    cx.require(w, "/", "Sys.Console")?;
    let node = cx.params.required("node")?;
    let vmid = parse_sid(sid).ok_or_else(|| ApiError::param("sid", "unable to parse HA resource id"))?;
    let c = &w.cluster;
    let g = c
        .guests
        .get(&vmid)
        .filter(|g| g.spec.ha.is_some())
        .ok_or_else(|| ApiError::die(format!("service '{sid}' not defined")))?;
    if !c.nodes.contains_key(&node) {
        return Err(ApiError::die(format!("node '{node}' does not exist")));
    }
    let full_sid = g.sid();
    if g.node != node && g.migration.is_none() && g.lock.is_none() {
        let running = g.running();
        let is_ct = g.spec.kind == GuestType::Lxc;
        let (fail, hang) = w.faults.take_task_fault(vmid);
        let (online, restart) =
            if relocate { (false, running) } else { (running && !is_ct, running && is_ct) };
        w.cluster.start_migration(
            vmid,
            &node,
            online,
            restart,
            "root@pam",
            cx.now,
            cx.time_scale,
            fail,
            hang,
        );
        if let Some(m) = w.cluster.guests.get_mut(&vmid).and_then(|g| g.migration.as_mut()) {
            m.relocate = relocate;
        }
    }
    if w.cluster.version.is9() {
        ok(json!({"sid": full_sid, "requested-node": node}))
    } else {
        ok(Value::Null)
    }
}

fn ctime(t: i64) -> String {
    // ctime-like enough for humans: "2026-05-01 12:00:00"
    let secs = t.rem_euclid(86400);
    format!("{}d {:02}:{:02}:{:02}", t.div_euclid(86400), secs / 3600, (secs / 60) % 60, secs % 60)
}
