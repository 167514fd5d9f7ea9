//! `migrateall`, bulk migrate (9.1+), HA migrate/relocate and HA node maintenance
//! (`/_sim/ha-maintenance`); every new answer is checked against the PVE schema.

use crate::common::*;
use pve_sim::schema;
use pve_sim::state::PveVersion;
use serde_json::Value;

fn segs(path: &str) -> Vec<String> {
    path.split('?').next().unwrap().split('/').filter(|s| !s.is_empty()).map(String::from).collect()
}

fn check_schema(version: &str, method: &str, path: &str, data: &Value) {
    let sch = schema::for_version(&PveVersion::parse(version).unwrap()).expect("bundled PVE API schema");
    if let Err(e) = sch.validate_response(method, &segs(path), data) {
        panic!("{method} {path} does not match the {version} schema: {e:?}\n{data}");
    }
}

fn demo_as(version: &str) -> pve_sim::Scenario {
    let yaml = std::fs::read_to_string(pve_sim::demo_scenario_path()).unwrap();
    let mut sc =
        pve_sim::Scenario::from_yaml(&yaml.replace("version: \"9.1.2\"", &format!("version: \"{version}\"")))
            .unwrap();
    if !version.starts_with('9') {
        sc.ha_rules.clear();
    }
    sc
}

/// Polls `f` until it returns true (bounded: 400 × 10 ms).
async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not reached within the bounded wait");
}

#[tokio::test]
async fn migrateall_moves_everything_movable_to_one_target() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    // neither max-workers nor datacenter max_workers → PVE's error
    let (st, v) = s.post("/nodes/pve1/migrateall", &[("target", "pve3")]).await;
    assert_eq!(st, 500, "{v}");
    assert!(v["message"].as_str().unwrap().contains("max_workers in datacenter.cfg must be set"), "{v}");
    // out of range / version-specific parameters are validated by the schema
    let (st, v) = s.post("/nodes/pve1/migrateall", &[("target", "pve3"), ("max-workers", "65")]).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = s.post("/nodes/pve1/migrateall", &[("target", "pve1"), ("max-workers", "2")]).await;
    assert_eq!(st, 500, "{v}");

    let (st, v) = s.post("/nodes/pve1/migrateall", &[("target", "pve3"), ("max-workers", "2")]).await;
    assert_eq!(st, 200, "{v}");
    check_schema("9.1.2", "POST", "/nodes/pve1/migrateall", &v["data"]);
    let upid = v["data"].as_str().unwrap().to_string();
    assert!(upid.starts_with("UPID:pve1:") && upid.contains(":migrateall::root@pam:"), "{upid}");
    let st = s.wait_task("pve1", &upid).await;
    assert_eq!(st["type"], "migrateall");
    assert_eq!(st["exitstatus"], "OK", "{st}");
    let log = s.data(&format!("/nodes/pve1/tasks/{}/log?limit=500", upid.replace(':', "%3A"))).await;
    let text: Vec<&str> = log.as_array().unwrap().iter().map(|l| l["t"].as_str().unwrap()).collect();
    assert!(text.iter().any(|l| l.contains("skipping VM 109")), "{text:?}");
    assert_eq!(text.last(), Some(&"TASK OK"));
    // everything but the GPU VM went to the one target; CTs in restart mode, VMs live
    let left: Vec<u32> =
        sim.with_cluster(|c| c.guests.values().filter(|g| g.node == "pve1").map(|g| g.spec.vmid).collect());
    assert_eq!(left, vec![109]);
    for id in [100, 106, 108, 110, 111] {
        assert_eq!(sim.guest_node(id).as_deref(), Some("pve3"), "guest {id}");
    }
    let tasks = s.data("/nodes/pve1/tasks?source=all&limit=100").await;
    let kinds: Vec<&str> = tasks.as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"vzmigrate") && kinds.contains(&"qmigrate"), "{kinds:?}");
    assert!(sim.check_invariants().is_ok(), "{:?}", sim.check_invariants());

    // datacenter max_workers suffices; `vms` restricts; an old version uses `maxworkers`
    let mut sc = demo_as("8.4.1");
    sc.options = Some(serde_json::json!({"max_workers": 3}));
    let sim2 = start_with(sc, 1000.0).await;
    let s2 = Session::root(&sim2).await;
    let (st, v) = s2.post("/nodes/pve2/migrateall", &[("target", "pve3"), ("vms", "202,204")]).await;
    assert_eq!(st, 200, "{v}");
    check_schema("8.4.1", "POST", "/nodes/pve2/migrateall", &v["data"]);
    s2.wait_task("pve2", v["data"].as_str().unwrap()).await;
    assert_eq!(sim2.guest_node(202).as_deref(), Some("pve3"));
    assert_eq!(sim2.guest_node(204).as_deref(), Some("pve3"));
    assert_eq!(sim2.guest_node(200).as_deref(), Some("pve2"));
    let (st, _) = s2.post("/nodes/pve2/migrateall", &[("target", "pve3"), ("max-workers", "2")]).await;
    assert_eq!(st, 400, "max-workers is 9.1+");
    sim.shutdown().await;
    sim2.shutdown().await;
}

#[tokio::test]
async fn bulk_migrate_is_9_1_only() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    // form arrays arrive as repeated keys
    let (st, v) = s
        .post(
            "/cluster/bulk-action/guest/migrate",
            &[
                ("target", "pve2"),
                ("vms", "302"),
                ("vms", "303"),
                ("vms", "110"),
                ("online", "1"),
                ("max-workers", "2"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{v}");
    check_schema("9.1.2", "POST", "/cluster/bulk-action/guest/migrate", &v["data"]);
    let upid = v["data"].as_str().unwrap().to_string();
    assert!(upid.contains(":bulk-migrate:"), "{upid}");
    let node = upid.split(':').nth(1).unwrap().to_string();
    let st = s.wait_task(&node, &upid).await;
    assert_eq!(st["exitstatus"], "OK", "{st}");
    for id in [302, 303, 110] {
        assert_eq!(sim.guest_node(id).as_deref(), Some("pve2"), "guest {id}");
    }
    // without online, running guests fail (the task reports them)
    let (st, v) = s.post("/cluster/bulk-action/guest/migrate", &[("target", "pve3"), ("vms", "302")]).await;
    assert_eq!(st, 200, "{v}");
    let st = s.wait_task(&node, v["data"].as_str().unwrap()).await;
    assert!(st["exitstatus"].as_str().unwrap().contains("302"), "{st}");
    sim.shutdown().await;

    let sim = start_with(demo_as("9.0.11"), 1000.0).await;
    let s = Session::root(&sim).await;
    let (st, _) = s.post("/cluster/bulk-action/guest/migrate", &[("target", "pve2")]).await;
    assert_eq!(st, 501);
    sim.shutdown().await;
}

#[tokio::test]
async fn ha_resource_migrate_and_relocate() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let (st, v) = s.post("/cluster/ha/resources/vm:201/migrate", &[("node", "pve3")]).await;
    assert_eq!(st, 200, "{v}");
    check_schema("9.1.2", "POST", "/cluster/ha/resources/vm:201/migrate", &v["data"]);
    assert_eq!(v["data"]["sid"], "vm:201");
    assert_eq!(v["data"]["requested-node"], "pve3");
    wait_until(|| sim.guest_node(201).as_deref() == Some("pve3")).await;
    // relocate: stop, move, start; the CRM state reads "relocate" meanwhile
    let (st, v) = s.post("/cluster/ha/resources/201/relocate", &[("node", "pve2")]).await;
    assert_eq!(st, 200, "{v}");
    check_schema("9.1.2", "POST", "/cluster/ha/resources/201/relocate", &v["data"]);
    let hastate = sim.with_cluster(|c| c.guests.get(&201).and_then(|g| c.ha_state(g)));
    assert!(matches!(hastate.as_deref(), Some("relocate") | Some("started")), "{hastate:?}");
    wait_until(|| sim.guest_node(201).as_deref() == Some("pve2")).await;
    // not an HA resource / needs Sys.Console
    let (st, v) = s.post("/cluster/ha/resources/vm:100/migrate", &[("node", "pve3")]).await;
    assert_eq!(st, 500, "{v}");
    let c = client(&sim);
    let (t, csrf) = login(&c, &sim, "audit@pve", "audit").await;
    let r = c
        .post(url(&sim, "/cluster/ha/resources/vm:201/migrate"))
        .header("Cookie", format!("PVEAuthCookie={t}"))
        .header("CSRFPreventionToken", csrf)
        .form(&[("node", "pve3")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(sim.check_invariants().is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn ha_node_maintenance_moves_ha_guests_and_shows_everywhere() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let c = client(&sim);
    let admin = format!("{}/_sim/ha-maintenance", sim.base_url);
    let r = c.post(&admin).json(&serde_json::json!({"node": "pve2", "enable": true})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["maintenance"]["pve2"], true);
    let moves = v["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{v}");
    assert_eq!(moves[0]["sid"], "vm:201");
    // negative resource affinity with vm:401 keeps it off pve4
    assert_ne!(moves[0]["to"], "pve4");
    let target = moves[0]["to"].as_str().unwrap().to_string();

    let nodes = s.data("/cluster/resources?type=node").await;
    check_schema("9.1.2", "GET", "/cluster/resources", &nodes);
    let pve2 = nodes.as_array().unwrap().iter().find(|n| n["node"] == "pve2").unwrap();
    assert_eq!(pve2["hastate"], "maintenance");
    let cur = s.data("/cluster/ha/status/current").await;
    check_schema("9.1.2", "GET", "/cluster/ha/status/current", &cur);
    let lrm = cur.as_array().unwrap().iter().find(|e| e["id"] == "lrm:pve2").unwrap();
    assert!(lrm["status"].as_str().unwrap().starts_with("pve2 (maintenance mode, "), "{lrm}");
    let ms = s.data("/cluster/ha/status/manager_status").await;
    check_schema("9.1.2", "GET", "/cluster/ha/status/manager_status", &ms);
    assert_eq!(ms["manager_status"]["node_request"]["pve2"]["maintenance"], 1);
    assert_eq!(ms["manager_status"]["service_status"]["vm:201"]["maintenance_node"], "pve2");
    wait_until(|| sim.guest_node(201).as_deref() == Some(target.as_str())).await;
    // non-HA guests stay
    assert_eq!(sim.guest_node(200).as_deref(), Some("pve2"));

    // disabling moves the guest back
    let moves = sim.set_ha_maintenance("pve2", false).unwrap();
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].to, "pve2");
    wait_until(|| sim.guest_node(201).as_deref() == Some("pve2")).await;
    let ms = s.data("/cluster/ha/status/manager_status").await;
    assert!(ms["manager_status"]["node_request"].get("pve2").is_none(), "{ms}");
    let r = c.post(&admin).json(&serde_json::json!({"node": "nope", "enable": true})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(sim.check_invariants().is_ok());
    sim.shutdown().await;
}
