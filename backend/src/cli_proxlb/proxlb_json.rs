//! `--output proxlb`: the cluster and a plan in ProxLB 2.3's `-j` shape, so scripts written for
//! ProxLB (`guests[*].node_current/node_target`) read our plan unchanged.
//!
//! ProxLB prints its internal state after simulating the moves (research notes §5.4): `guests`
//! and `nodes` keyed by name, `groups`, `pools`, `ha_rules`. The shape is rebuilt here from our
//! snapshot, the plan's steps and the rule engine's reading of tags, pools and HA rules; the
//! values follow ProxLB's collection:
//! - only running guests on online, not ignored nodes (plus any guest a step moves, so every
//!   move is visible);
//! - guest `cpu.used` is a fraction of its vCPUs (PVE's RRD `cpu`), node `cpu.used` in cores;
//! - node values are after the plan: a moved guest's use and allocation count on its target;
//! - node memory `total` is less the configured reserve, as ProxLB's `node_resource_reserve`.
//!
//! Differences, each because we do not have the figure: the `*_spikes_percent` pressure fields
//! are 0 (we collect averages only), `pve_version` is the answering node's for every node, and
//! the single-guest affinity groups ProxLB keys by a random UUID have a stable UUID-shaped key.
//! Two guests with one name (ProxLB keeps the last) are both kept, the second as `name#vmid`.

use super::output::kind;
use serde_json::{json, Map, Value};
use shared::model::Pressure;
use shared::rules::{policies, Policies, RuleSource};
use shared::{ClusterSnapshot, Guest, Node, NodeStatus, Plan};
use std::collections::{BTreeMap, BTreeSet};

/// The JSON ProxLB 2.3 prints with `-j`, for `snapshot` after `plan`.
pub fn proxlb_json(snapshot: &ClusterSnapshot, plan: &Plan) -> Value {
    let rules = policies(snapshot, &plan.request.rules);
    let targets = final_targets(plan);
    let nodes: Vec<&Node> = snapshot
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Online && !rules.ignored_nodes.contains(&n.name))
        .collect();
    let guests: Vec<Placed> = snapshot
        .guests
        .iter()
        .filter(|g| targets.contains_key(&g.vmid) || shown_unmoved(g, &nodes))
        .map(|g| Placed { guest: g, target: targets.get(&g.vmid).map_or(g.node.as_str(), String::as_str) })
        .collect();
    let names = keys(&guests);
    json!({
        "guests": guests_json(snapshot, &guests, &names, &rules, plan),
        "nodes": nodes_json(snapshot, &nodes, &guests, &rules, plan),
        "groups": groups_json(snapshot, &guests, &names, &rules),
        "pools": pools_json(&guests, &names),
        "ha_rules": Value::Object(
            ha_rules(snapshot).into_iter().map(|r| (r["rule"].as_str().unwrap_or("").to_owned(), r)).collect()
        ),
    })
}

/// `value` as ProxLB prints it: indent 4, so the first line is `{` and the last `}`.
pub fn render(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(value, &mut ser).expect("a JSON value always serialises");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// A guest and the node it is on once the plan ran.
struct Placed<'a> {
    guest: &'a Guest,
    target: &'a str,
}

/// Where each moved guest ends up: its last step's target (a parked guest hops twice).
fn final_targets(plan: &Plan) -> BTreeMap<u32, String> {
    plan.steps.iter().map(|s| (s.vmid, s.to.clone())).collect()
}

/// ProxLB lists running guests of the nodes it balances.
fn shown_unmoved(g: &Guest, nodes: &[&Node]) -> bool {
    g.is_running() && !g.template && nodes.iter().any(|n| n.name == g.node)
}

/// The key of each guest (by vmid): its name, or `name#vmid` when an earlier guest has the name.
fn keys(guests: &[Placed]) -> BTreeMap<u32, String> {
    let mut taken = BTreeSet::new();
    guests
        .iter()
        .map(|p| {
            let g = p.guest;
            let key = if taken.contains(&g.name) { format!("{}#{}", g.name, g.vmid) } else { g.name.clone() };
            taken.insert(key.clone());
            (g.vmid, key)
        })
        .collect()
}

fn guests_json(
    snapshot: &ClusterSnapshot,
    guests: &[Placed],
    names: &BTreeMap<u32, String>,
    rules: &Policies,
    plan: &Plan,
) -> Value {
    let all_rules = ha_rules(snapshot);
    // Groups (the rule engine's, after merging) that have the guest as a member.
    let member_of_groups = |together: bool, vmid: u32| -> Vec<String> {
        let groups = if together { &rules.together } else { &rules.apart };
        groups.iter().filter(|g| g.vmids.contains(&vmid)).map(|g| group_key(&g.name, &g.source)).collect()
    };
    let mut out = Map::new();
    for p in guests {
        let g = p.guest;
        let policy = rules.guest(g.vmid).cloned().unwrap_or_default();
        let relationships = policy.allowed.clone().or(policy.preferred.clone()).unwrap_or_default();
        let pressure = g.pressure.unwrap_or_default();
        let hot = is_hot(g.pressure, plan.request.psi_threshold);
        let member_of: Vec<&Value> = all_rules
            .iter()
            .filter(|r| r["members"].as_array().is_some_and(|m| m.contains(&json!(g.vmid))))
            .collect();
        out.insert(
            names[&g.vmid].clone(),
            json!({
                "name": g.name,
                "id": g.vmid,
                "type": kind(g.kind),
                "node_current": g.node,
                "node_target": p.target,
                "processed": p.target != g.node,
                "pressure_hot": hot,
                "ignore": policy.ignored.is_some(),
                "node_relationships_strict": policy.preferred.is_none(),
                "tags": g.tags,
                "pools": g.pool.iter().collect::<Vec<_>>(),
                "affinity_groups": member_of_groups(true, g.vmid),
                "anti_affinity_groups": member_of_groups(false, g.vmid),
                "node_relationships": relationships,
                "ha_rules": member_of,
                "cpu": guest_metric(g.cpus.trunc(), cpu_fraction(g), pressure.cpu_some, pressure.cpu_full, hot),
                "memory": guest_metric(g.mem_max as f64, g.mem_used as f64, pressure.memory_some, pressure.memory_full, hot),
                "disk": guest_metric(g.disk_max as f64, g.disk_used as f64, pressure.io_some, pressure.io_full, hot),
            }),
        );
    }
    Value::Object(out)
}

/// ProxLB names an HA rule's group by the rule id; tag and pool groups by their tag or pool.
fn group_key(name: &str, source: &RuleSource) -> String {
    match source {
        RuleSource::HaRule { rule } => rule.clone(),
        _ => name.to_owned(),
    }
}

/// CPU use as PVE's RRD reports it for a guest: a fraction of its vCPUs.
fn cpu_fraction(g: &Guest) -> f64 {
    if g.cpus > 0.0 {
        g.cpu_used / g.cpus
    } else {
        0.0
    }
}

fn is_hot(pressure: Option<Pressure>, threshold: f64) -> bool {
    pressure.is_some_and(|p| [p.cpu_some, p.memory_some, p.io_some].iter().any(|v| *v >= threshold))
}

/// The four pressure figures ProxLB keeps per resource (spikes: not collected, 0).
fn pressure_fields(m: &mut Map<String, Value>, some: f64, full: f64, hot: bool) {
    m.insert("pressure_some_percent".into(), json!(some));
    m.insert("pressure_full_percent".into(), json!(full));
    m.insert("pressure_some_spikes_percent".into(), json!(0.0));
    m.insert("pressure_full_spikes_percent".into(), json!(0.0));
    m.insert("pressure_hot".into(), json!(hot));
}

fn guest_metric(total: f64, used: f64, some: f64, full: f64, hot: bool) -> Value {
    let mut m = Map::new();
    m.insert("total".into(), int(total));
    m.insert("used".into(), json!(used));
    pressure_fields(&mut m, some, full, hot);
    Value::Object(m)
}

/// ProxLB's integer fields (`total`, `assigned`: bytes and cores); its `used`, `free` and
/// percentages are floats (`json!(f64)` prints `1.0`, as Python does).
fn int(v: f64) -> Value {
    json!(v.round() as i64)
}

/// One resource of a node after the plan: capacity, what its guests are allocated, what is used.
struct NodeResource {
    total: f64,
    assigned: f64,
    used: f64,
}

impl NodeResource {
    fn to_json(&self, some: f64, full: f64, hot: bool) -> Value {
        let percent = |v: f64| if self.total > 0.0 { v / self.total * 100.0 } else { 0.0 };
        let free = self.total - self.used;
        let mut m = Map::new();
        m.insert("total".into(), int(self.total));
        m.insert("assigned".into(), int(self.assigned));
        m.insert("used".into(), json!(self.used));
        m.insert("free".into(), json!(free));
        m.insert("assigned_percent".into(), json!(percent(self.assigned)));
        m.insert("free_percent".into(), json!(percent(free)));
        m.insert("used_percent".into(), json!(percent(self.used)));
        pressure_fields(&mut m, some, full, hot);
        Value::Object(m)
    }
}

/// The node's figure with the plan's moves applied: what left subtracted, what arrived added.
fn after_moves(node: &str, measured: f64, guests: &[Placed], each: impl Fn(&Guest) -> f64) -> f64 {
    guests.iter().fold(measured, |acc, p| {
        let (from, to) = (p.guest.node.as_str(), p.target);
        match (from == node, to == node) {
            (true, false) => acc - each(p.guest),
            (false, true) => acc + each(p.guest),
            _ => acc,
        }
    })
}

fn assigned(node: &str, guests: &[Placed], each: impl Fn(&Guest) -> f64) -> f64 {
    guests.iter().filter(|p| p.target == node).map(|p| each(p.guest)).sum()
}

fn nodes_json(
    snapshot: &ClusterSnapshot,
    nodes: &[&Node],
    guests: &[Placed],
    rules: &Policies,
    plan: &Plan,
) -> Value {
    let request = &plan.request;
    let mut out = Map::new();
    for n in nodes {
        let name = n.name.as_str();
        let reserve = *request.node_memory_reserve.get(name).unwrap_or(&request.memory_reserve);
        let mem_total = if reserve < n.mem_total { n.mem_total - reserve } else { n.mem_total };
        let cpu = NodeResource {
            total: f64::from(n.cpus),
            assigned: assigned(name, guests, |g| g.cpus.trunc()),
            used: after_moves(name, n.cpu_used, guests, |g| g.cpu_used),
        };
        let memory = NodeResource {
            total: mem_total as f64,
            assigned: assigned(name, guests, |g| g.mem_max as f64),
            used: after_moves(name, n.mem_used as f64, guests, |g| g.mem_used as f64),
        };
        let disk = NodeResource {
            total: n.disk_total as f64,
            assigned: assigned(name, guests, |g| g.disk_max as f64),
            used: after_moves(name, n.disk_used as f64, guests, |g| g.disk_used as f64),
        };
        let p = n.pressure.unwrap_or_default();
        let hot = is_hot(n.pressure, request.psi_threshold);
        out.insert(
            n.name.clone(),
            json!({
                "name": n.name,
                "pve_version": snapshot.pve_version,
                "maintenance": n.maintenance || rules.maintenance_nodes.contains(&n.name),
                "pressure_hot": hot,
                "cpu": cpu.to_json(p.cpu_some, p.cpu_full, hot),
                "memory": memory.to_json(p.memory_some, p.memory_full, hot),
                "disk": disk.to_json(p.io_some, p.io_full, hot),
            }),
        );
    }
    Value::Object(out)
}

fn groups_json(
    snapshot: &ClusterSnapshot,
    guests: &[Placed],
    names: &BTreeMap<u32, String>,
    rules: &Policies,
) -> Value {
    let shown =
        |vmids: &[u32]| -> Vec<&Placed> { guests.iter().filter(|p| vmids.contains(&p.guest.vmid)).collect() };
    let member_names = |members: &[&Placed]| -> Vec<String> {
        members.iter().map(|p| names[&p.guest.vmid].clone()).collect()
    };
    let sum = |members: &[&Placed], total: fn(&Guest) -> f64, used: fn(&Guest) -> f64| {
        json!({
            "total": int(members.iter().map(|p| total(p.guest)).sum()),
            "used": json!(members.iter().map(|p| used(p.guest)).sum::<f64>()),
        })
    };
    let affinity_group = |members: &[&Placed]| {
        json!({
            "counter": members.len(),
            "guests": member_names(members),
            "cpu": sum(members, |g| g.cpus.trunc(), cpu_fraction),
            "memory": sum(members, |g| g.mem_max as f64, |g| g.mem_used as f64),
            "disk": sum(members, |g| g.disk_max as f64, |g| g.disk_used as f64),
        })
    };
    let mut affinity: Map<String, Value> = rules
        .together
        .iter()
        .map(|g| (group_key(&g.name, &g.source), affinity_group(&shown(&g.vmids))))
        .collect();
    // ProxLB puts every other guest in an affinity group of its own, under a random UUID; ours
    // are UUID-shaped too, and stable (the vmid is the last field).
    for p in guests.iter().filter(|p| !rules.together.iter().any(|g| g.vmids.contains(&p.guest.vmid))) {
        affinity.insert(format!("00000000-0000-4000-8000-{:012}", p.guest.vmid), affinity_group(&[p]));
    }
    let anti_affinity: Map<String, Value> = rules
        .apart
        .iter()
        .map(|g| {
            let members = shown(&g.vmids);
            let used_nodes: BTreeSet<&str> = members.iter().map(|p| p.target).collect();
            let body = json!({
                "guests": member_names(&members),
                "counter": members.len(),
                "used_nodes": used_nodes,
            });
            (group_key(&g.name, &g.source), body)
        })
        .collect();
    let drained = |node: &str| {
        rules.maintenance_nodes.contains(node) || snapshot.node(node).is_some_and(|n| n.maintenance)
    };
    let maintenance: Vec<String> =
        guests.iter().filter(|p| drained(&p.guest.node)).map(|p| names[&p.guest.vmid].clone()).collect();
    json!({ "affinity": affinity, "anti_affinity": anti_affinity, "maintenance": maintenance })
}

fn pools_json(guests: &[Placed], names: &BTreeMap<u32, String>) -> Value {
    let mut pools: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in guests {
        if let Some(pool) = &p.guest.pool {
            pools.entry(pool).or_default().push(names[&p.guest.vmid].clone());
        }
    }
    Value::Object(
        pools
            .into_iter()
            .map(|(name, members)| (name.to_owned(), json!({ "name": name, "members": members })))
            .collect(),
    )
}

/// Enabled HA rules as ProxLB reads them: `type` is `anti-affinity` for a negative resource
/// affinity, else `affinity`; `nodes` the raw `node[:priority]` entries; `members` the vmids.
fn ha_rules(snapshot: &ClusterSnapshot) -> Vec<Value> {
    snapshot
        .ha_rules
        .iter()
        .filter(|r| !r.disable)
        .map(|r| {
            let members: Vec<u32> = r
                .resources
                .split(',')
                .filter_map(|res| res.trim().split_once(':').and_then(|(_, id)| id.trim().parse().ok()))
                .collect();
            let nodes: Vec<&str> = r.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
            let kind = if r.affinity == "negative" { "anti-affinity" } else { "affinity" };
            json!({ "rule": r.rule, "type": kind, "nodes": nodes, "members": members })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::model::HaRule;
    use shared::plan::{MigrationKind, PlanStep, StepPurpose};
    use shared::{GuestKind, GuestStatus};

    const GIB: u64 = 1 << 30;

    fn node(name: &str, mem_used: u64) -> Node {
        Node {
            name: name.into(),
            status: NodeStatus::Online,
            cpus: 8,
            cpu_used: 2.0,
            mem_total: 64 * GIB,
            mem_used,
            disk_total: 100 * GIB,
            disk_used: 10 * GIB,
            ..Default::default()
        }
    }

    fn guest(vmid: u32, name: &str, node: &str, tags: &[&str]) -> Guest {
        Guest {
            vmid,
            name: name.into(),
            kind: if vmid >= 200 { GuestKind::Lxc } else { GuestKind::Qemu },
            node: node.into(),
            status: GuestStatus::Running,
            cpus: 2.0,
            cpu_used: 1.0,
            mem_max: 8 * GIB,
            mem_used: 4 * GIB,
            disk_max: 32 * GIB,
            disk_used: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    fn step(vmid: u32, name: &str, from: &str, to: &str) -> PlanStep {
        PlanStep {
            vmid,
            name: name.into(),
            kind: GuestKind::Qemu,
            from: from.into(),
            to: to.into(),
            migration: MigrationKind::Live,
            mem_bytes: 8 * GIB,
            reason: String::new(),
            purpose: StepPurpose::Balance,
            depends_on: vec![],
            disk_bytes: 0,
        }
    }

    fn cluster() -> ClusterSnapshot {
        let mut stopped = guest(103, "cold", "pve1", &[]);
        stopped.status = GuestStatus::Stopped;
        ClusterSnapshot {
            pve_version: "9.1.2".into(),
            nodes: vec![node("pve1", 40 * GIB), node("pve2", 10 * GIB)],
            guests: vec![
                guest(100, "web", "pve1", &["plb_anti_affinity_web"]),
                guest(101, "web2", "pve1", &["plb_anti_affinity_web"]),
                guest(102, "keep", "pve1", &["plb_ignore_x"]),
                stopped,
                guest(200, "box", "pve2", &[]),
            ],
            ha_rules: vec![HaRule {
                rule: "apart".into(),
                kind: "resource-affinity".into(),
                resources: "vm:100,ct:200".into(),
                affinity: "negative".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn plan_with(steps: Vec<PlanStep>) -> Plan {
        let mut plan = shared::planner::plan(&ClusterSnapshot::default(), &Default::default());
        plan.steps = steps;
        plan
    }

    #[test]
    fn moved_guests_name_their_target_and_the_rest_stay_where_they_are() {
        let v = proxlb_json(&cluster(), &plan_with(vec![step(101, "web2", "pve1", "pve2")]));
        let g = &v["guests"];
        assert_eq!(g["web2"]["node_current"], "pve1");
        assert_eq!(g["web2"]["node_target"], "pve2");
        assert_eq!(g["web2"]["processed"], true);
        assert_eq!(g["web"]["node_target"], g["web"]["node_current"]);
        assert_eq!(g["web"]["id"], 100);
        assert_eq!(g["box"]["type"], "ct");
        assert_eq!(g["web"]["type"], "vm");
        // ProxLB lists running guests only.
        assert!(g.get("cold").is_none());
    }

    #[test]
    fn a_parked_guest_targets_its_last_hop_and_a_moved_stopped_guest_is_listed() {
        let steps = vec![
            step(100, "web", "pve1", "pve2"),
            step(100, "web", "pve2", "pve1"),
            step(103, "cold", "pve1", "pve2"),
        ];
        let v = proxlb_json(&cluster(), &plan_with(steps));
        assert_eq!(v["guests"]["web"]["node_target"], "pve1");
        assert_eq!(v["guests"]["cold"]["node_target"], "pve2");
    }

    #[test]
    fn rules_show_as_proxlb_reads_them() {
        let v = proxlb_json(&cluster(), &plan_with(vec![]));
        let g = &v["guests"];
        assert_eq!(g["keep"]["ignore"], true);
        assert_eq!(g["web"]["ignore"], false);
        // Tags and HA rules both make groups, as in ProxLB.
        assert_eq!(g["web"]["anti_affinity_groups"], json!(["apart", "plb_anti_affinity_web"]));
        assert_eq!(v["groups"]["anti_affinity"]["apart"]["guests"], json!(["web", "box"]));
        assert_eq!(g["web2"]["anti_affinity_groups"], json!(["plb_anti_affinity_web"]));
        assert_eq!(
            g["web"]["ha_rules"],
            json!([{"rule": "apart", "type": "anti-affinity", "nodes": [], "members": [100, 200]}])
        );
        let group = &v["groups"]["anti_affinity"]["plb_anti_affinity_web"];
        assert_eq!(group["counter"], 2);
        assert_eq!(group["used_nodes"], json!(["pve1"]));
        assert_eq!(v["ha_rules"]["apart"]["members"], json!([100, 200]));
        // Every guest outside an affinity group is one of its own, as in ProxLB.
        let own = &v["groups"]["affinity"]["00000000-0000-4000-8000-000000000100"];
        assert_eq!((own["counter"].as_u64(), &own["guests"]), (Some(1), &json!(["web"])));
        assert_eq!(own["cpu"]["used"].as_f64(), Some(0.5), "a fraction of its vCPUs");
        assert_eq!(v["groups"]["affinity"].as_object().unwrap().len(), 4, "the running guests");
    }

    #[test]
    fn node_figures_are_after_the_plan() {
        let v = proxlb_json(&cluster(), &plan_with(vec![step(101, "web2", "pve1", "pve2")]));
        let (pve1, pve2) = (&v["nodes"]["pve1"]["memory"], &v["nodes"]["pve2"]["memory"]);
        assert_eq!(pve1["used"].as_f64(), Some((36 * GIB) as f64));
        assert_eq!(pve2["used"].as_f64(), Some((14 * GIB) as f64));
        assert_eq!(pve1["total"], json!(64 * GIB), "an integer, as ProxLB's");
        assert!(pve1["used"].is_f64() && pve1["free"].is_f64(), "floats, as ProxLB's");
        assert_eq!(pve1["free"].as_f64(), Some((28 * GIB) as f64));
        // pve1 keeps web and keep (8 GiB each); pve2 has box and web2.
        assert_eq!(pve1["assigned"], json!(16 * GIB));
        assert_eq!(pve2["assigned_percent"], json!(25.0));
        assert_eq!(v["nodes"]["pve2"]["cpu"]["used"].as_f64(), Some(3.0));
        assert_eq!(v["nodes"]["pve1"]["pve_version"], "9.1.2");
    }

    #[test]
    fn the_memory_reserve_lowers_the_node_total() {
        let mut plan = plan_with(vec![]);
        plan.request.memory_reserve = 4 * GIB;
        let v = proxlb_json(&cluster(), &plan);
        assert_eq!(v["nodes"]["pve1"]["memory"]["total"], json!(60 * GIB));
    }

    #[test]
    fn maintenance_nodes_list_their_guests() {
        let mut snapshot = cluster();
        snapshot.nodes[1].maintenance = true;
        let v = proxlb_json(&snapshot, &plan_with(vec![]));
        assert_eq!(v["nodes"]["pve2"]["maintenance"], true);
        assert_eq!(v["groups"]["maintenance"], json!(["box"]));
    }

    #[test]
    fn a_second_guest_with_a_taken_name_keeps_its_entry() {
        let mut snapshot = cluster();
        snapshot.guests.push(guest(104, "web", "pve2", &[]));
        let v = proxlb_json(&snapshot, &plan_with(vec![]));
        assert_eq!(v["guests"]["web"]["id"], 100);
        assert_eq!(v["guests"]["web#104"]["id"], 104);
    }

    #[test]
    fn rendered_with_indent_four_between_a_first_and_last_brace_line() {
        let text = render(&proxlb_json(&cluster(), &plan_with(vec![])));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"{"));
        assert_eq!(lines.last(), Some(&"}"));
        assert!(lines[1].starts_with("    \"") && !lines[1].starts_with("     "), "{}", lines[1]);
        let back: Value = serde_json::from_str(&text).unwrap();
        for key in ["guests", "nodes", "groups", "pools", "ha_rules"] {
            assert!(back.get(key).is_some(), "missing {key}");
        }
    }
}
