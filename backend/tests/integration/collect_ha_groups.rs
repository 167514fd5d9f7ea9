//! PVE 7/8 HA groups collected as node-affinity rules (issue 18): the simulator serves a
//! scenario's node-affinity rules as the HA groups they came from on PVE < 9; collection reads
//! them with two more cluster-wide calls, still none per guest, and the rule engine pins by them.

use backend::collect;
use backend::pve::{Credentials, PveClient, PveOptions};
use pve_sim::scenario::{HaRuleSpec, HaSpec};
use pve_sim::{RunningSim, Scenario};
use std::time::Duration;

fn client(sim: &RunningSim) -> PveClient {
    PveClient::new(PveOptions {
        base_url: sim.base_url.clone(),
        credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
        ca_pem: Some(sim.ca_pem.clone()),
        insecure: false,
        timeout: Duration::from_secs(30),
    })
    .expect("client")
}

fn group_rule() -> HaRuleSpec {
    serde_json::from_value(serde_json::json!({
        "rule": "db-nodes", "type": "node-affinity", "resources": ["vm:201"],
        "nodes": ["pve3:2", "pve4:1"], "strict": true
    }))
    .expect("rule spec")
}

fn scenario(version: &str) -> Scenario {
    let mut sc = Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    sc.version = version.into();
    sc.ha_rules = vec![group_rule()];
    let g = sc.guests.iter_mut().find(|g| g.vmid == 201).expect("vm 201 in the demo");
    g.ha = Some(serde_json::from_value::<HaSpec>(serde_json::json!({"state": "started"})).expect("HA spec"));
    sc
}

#[tokio::test]
async fn pve7_and_8_ha_groups_become_node_affinity_rules_in_o_nodes_calls() {
    for version in ["7.4-17", "8.4.1"] {
        let sim = pve_sim::start(pve_sim::SimConfig::new(scenario(version))).await.expect("simulator starts");
        let pve = client(&sim);
        pve.get::<serde_json::Value>("/version").await.expect("login");
        let before = sim.request_stats();
        let snap = collect::snapshot(&pve, 1).await.unwrap_or_else(|e| panic!("{version}: {e}"));
        let after = sim.request_stats();
        let calls = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
        let total: u64 = after
            .iter()
            .filter(|(k, _)| *k != "POST /access/ticket")
            .map(|(k, v)| v - before.get(k).copied().unwrap_or(0))
            .sum();
        let online = snap.nodes.iter().filter(|n| n.status == shared::NodeStatus::Online).count() as u64;
        assert_eq!(calls("GET /cluster/ha/groups"), 1, "{version}");
        assert_eq!(calls("GET /cluster/ha/resources"), 1, "{version}");
        // Cluster-wide: the four of every version, `/cluster/tasks`, the groups' two after the
        // rules' 404, `/storage` (rows before 9.1 do not say `shared`). Per online node:
        // `apt/versions` and the demo's one local storage with guest volumes; no pressure calls.
        assert_eq!(calls("GET /storage"), 1, "{version}");
        assert!(total <= 8 + 2 * online, "{version}: {total} calls for {online} online nodes");

        let rule = snap
            .ha_rules
            .iter()
            .find(|r| r.rule == "group:db-nodes")
            .unwrap_or_else(|| panic!("{version}: {:?}", snap.ha_rules));
        assert_eq!(rule.kind, "node-affinity");
        assert_eq!(rule.resources, "vm:201");
        assert_eq!(rule.nodes, "pve3:2,pve4:1");
        assert!(rule.strict, "restricted group = strict");
        // The rule engine pins by it: the highest-priority node of the group.
        let p = shared::rules::policies(&snap, &Default::default());
        assert_eq!(p.guest(201).and_then(|g| g.allowed.clone()), Some(vec!["pve3".to_string()]), "{version}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn pve9_reads_rules_and_never_asks_for_groups() {
    let sim = pve_sim::start(pve_sim::SimConfig::new(scenario("9.1.2"))).await.expect("simulator starts");
    let pve = client(&sim);
    let snap = collect::snapshot(&pve, 1).await.expect("collects");
    assert!(snap.ha_rules.iter().any(|r| r.rule == "db-nodes"), "{:?}", snap.ha_rules);
    assert_eq!(sim.request_stats().get("GET /cluster/ha/groups").copied().unwrap_or(0), 0);
    sim.shutdown().await;
}

#[test]
fn groups_without_members_bind_nothing() {
    let groups = [serde_json::json!({"group": "empty", "nodes": "pve1", "restricted": 1})];
    let resources = [serde_json::json!({"sid": "vm:100", "group": "other"})];
    assert!(collect::ha_groups_as_rules(&groups, &resources).is_empty());
}
