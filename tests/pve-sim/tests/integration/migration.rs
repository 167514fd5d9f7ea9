//! Migrations as tasks: preconditions and die texts, UPIDs, locks, memory on both nodes,
//! task status/log/list/stop, HA migrations, faults, and the /_sim admin endpoints.

use crate::common::*;
use pve_sim::FaultSpec;
use serde_json::Value;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn upid_ok(u: &str) -> bool {
    // UPID:<node>:<pid8>:<pstart8-9>:<start8>:<type>:<id>:<user>:
    let p: Vec<&str> = u.split(':').collect();
    p.len() == 9
        && p[0] == "UPID"
        && p[2].len() == 8
        && (8..=9).contains(&p[3].len())
        && p[4].len() == 8
        && [p[2], p[3], p[4]].iter().all(|x| x.chars().all(|c| c.is_ascii_hexdigit()))
        && p[8].is_empty()
}

#[tokio::test]
async fn preconditions_and_die_texts() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case] = &[
        (
            "/nodes/pve1/qemu/104/migrate",
            &[("target", "pve3")],
            500,
            "can't migrate running VM without --online\n",
        ),
        (
            "/nodes/pve1/lxc/106/migrate",
            &[("target", "pve3")],
            500,
            "can't migrate running container without --online or --restart\n",
        ),
        (
            "/nodes/pve1/lxc/106/migrate",
            &[("target", "pve3"), ("online", "1")],
            500,
            "lxc live migration is currently not implemented\n",
        ),
        (
            "/nodes/pve1/qemu/109/migrate",
            &[("target", "pve3"), ("online", "1")],
            500,
            "can't migrate VM which uses local devices: hostpci0\n",
        ),
        (
            "/nodes/pve3/qemu/308/migrate",
            &[("target", "pve2"), ("online", "1")],
            500,
            "can't live migrate attached local disks without with-local-disks option\n",
        ),
        (
            "/nodes/pve1/qemu/104/migrate",
            &[("target", "pve1"), ("online", "1")],
            500,
            "target is local node.\n",
        ),
        (
            "/nodes/pve1/qemu/104/migrate",
            &[("target", "pve9"), ("online", "1")],
            500,
            "no such cluster node 'pve9'\n",
        ),
        (
            "/nodes/pve2/qemu/104/migrate",
            &[("target", "pve3"), ("online", "1")],
            500,
            "Configuration file 'nodes/pve2/qemu-server/104.conf' does not exist\n",
        ),
    ];
    for (path, form, code, msg) in cases {
        let (st, v) = s.post(path, form).await;
        assert_eq!(st, *code, "{path} {form:?}: {v}");
        assert_eq!(v["message"], *msg, "{path} {form:?}");
    }
    // lock blocks
    sim.arm_fault(&FaultSpec::GuestLock { vmid: 105, lock: Some("backup".into()) }).unwrap();
    let (st, v) = s.post("/nodes/pve1/qemu/105/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!((st, v["message"].as_str().unwrap()), (500, "VM is locked (backup)\n"));
    let (st, _) = s.get("/nodes/pve1/qemu/105/migrate").await;
    assert_eq!(st, 500);

    // precondition check
    let pre = s.data("/nodes/pve3/qemu/308/migrate").await;
    assert_eq!(pre["running"], 1);
    assert_eq!(pre["local_disks"][0]["volid"], "local:308/vm-308-disk-0.qcow2");
    assert_eq!(pre["allowed_nodes"], serde_json::json!(["pve1", "pve2", "pve4"]));
    let pre = s.data("/nodes/pve1/qemu/109/migrate").await;
    assert_eq!(pre["local_resources"], serde_json::json!(["hostpci0"]));
    let pre = s.data("/nodes/pve1/lxc/106/migrate").await;
    assert_eq!(pre["allowed-nodes"].as_array().unwrap().len(), 3);

    // with-local-disks and conntrack state (9.x) are accepted. The clock stands still until the
    // second request is in: at 1000× a loaded machine can finish the copy before it arrives.
    sim.set_clock_rate(0.0);
    let (st, v) = s
        .post(
            "/nodes/pve3/qemu/308/migrate",
            &[("target", "pve2"), ("online", "1"), ("with-local-disks", "1"), ("with-conntrack-state", "1")],
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let u = v["data"].as_str().unwrap();
    assert!(upid_ok(u), "{u}");
    assert!(u.contains(":qmigrate:308:root@pam:"));
    // a second migration while the first runs: locked
    let (st, v) = s.post("/nodes/pve3/qemu/308/migrate", &[("target", "pve1"), ("online", "1")]).await;
    assert_eq!((st, v["message"].as_str().unwrap()), (500, "VM is locked (migrate)\n"));
    sim.set_clock_rate(1000.0);
    let st = s.wait_task("pve3", u).await;
    assert_eq!(st["exitstatus"], "OK");
    assert_eq!(sim.guest_node(308).as_deref(), Some("pve2"));
    sim.check_invariants().unwrap();
    sim.shutdown().await;
}

#[tokio::test]
async fn conntrack_rejected_before_pve9() {
    let yaml =
        std::fs::read_to_string(pve_sim::demo_scenario_path()).unwrap().replace("\"9.1.2\"", "\"8.4.1\"");
    let mut sc = pve_sim::Scenario::from_yaml(&yaml).unwrap();
    sc.ha_rules.clear();
    let sim = start_with(sc, 1000.0).await;
    let s = Session::root(&sim).await;
    let (st, v) = s
        .post(
            "/nodes/pve1/qemu/104/migrate",
            &[("target", "pve3"), ("online", "1"), ("with-conntrack-state", "1")],
        )
        .await;
    assert_eq!(st, 400);
    assert!(v["errors"]["with-conntrack-state"].is_string());
    let (st, _) = s.get("/cluster/ha/rules").await;
    assert_eq!(st, 501);
    let (st, _) = s.get("/nodes/pve1/lxc/106/migrate").await;
    assert_eq!(st, 501);
    sim.shutdown().await;
}

#[tokio::test]
async fn live_migration_holds_memory_on_both_nodes() {
    // real time: 12.8 GiB at 1024 MiB/s ≈ 16 s, so the state mid-flight is observable
    let sim = start_demo(1.0).await;
    let s = Session::root(&sim).await;
    let mem = |rows: &Value, n: &str| {
        rows.as_array().unwrap().iter().find(|r| r["node"] == n).unwrap()["mem"].as_f64().unwrap()
    };
    let before = s.data("/cluster/resources?type=node").await;
    let (st, v) = s.post("/nodes/pve1/qemu/103/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!(st, 200);
    let upid = v["data"].as_str().unwrap().to_string();
    let during = s.data("/cluster/resources?type=node").await;
    let used = 16.0 * 0.85 * GIB;
    assert!((mem(&during, "pve1") - mem(&before, "pve1")).abs() < 1.0);
    assert!((mem(&during, "pve3") - mem(&before, "pve3") - used).abs() < 2.0);
    let vm = s.data("/nodes/pve1/qemu/103/status/current").await;
    assert_eq!(vm["lock"], "migrate");
    let cfg = s.data("/nodes/pve1/qemu/103/config").await;
    assert_eq!(cfg["lock"], "migrate");
    let st = s.data(&format!("/nodes/pve1/tasks/{}/status", upid.replace(':', "%3A"))).await;
    assert_eq!(st["status"], "running");
    assert!(st.get("exitstatus").is_none());
    let active = s.data("/nodes/pve1/tasks?source=active").await;
    assert_eq!(active.as_array().unwrap().len(), 1);
    sim.check_invariants().unwrap();
    // step the simulated clock past the end
    sim.advance_clock(60.0);
    let st = s.data(&format!("/nodes/pve1/tasks/{}/status", upid.replace(':', "%3A"))).await;
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["exitstatus"], "OK");
    let after = s.data("/cluster/resources?type=node").await;
    assert!((mem(&after, "pve1") - (mem(&before, "pve1") - used)).abs() < 2.0);
    assert!((mem(&after, "pve3") - (mem(&before, "pve3") + used)).abs() < 2.0);
    let log = s.get(&format!("/nodes/pve1/tasks/{}/log", upid.replace(':', "%3A"))).await.1;
    let lines = log["data"].as_array().unwrap();
    assert_eq!(lines.last().unwrap()["t"], "TASK OK");
    assert_eq!(log["total"].as_u64().unwrap() as usize, lines.len());
    let (st, _) = s.get("/nodes/pve3/qemu/103/status/current").await;
    assert_eq!(st, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn ha_managed_guest_uses_hamigrate_then_qmigrate() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let (st, v) = s.post("/nodes/pve2/qemu/201/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!(st, 200, "{v}");
    let ha = v["data"].as_str().unwrap().to_string();
    assert!(ha.contains(":hamigrate:201:root@pam:"), "{ha}");
    let st = s.wait_task("pve2", &ha).await;
    assert_eq!(st["type"], "hamigrate");
    assert_eq!(st["exitstatus"], "OK");
    let since = st["starttime"].as_i64().unwrap();
    let list = s
        .data(&format!(
            "/nodes/pve2/tasks?typefilter=qmigrate&vmid=201&since={since}&source=all&start=0&limit=10"
        ))
        .await;
    let child = list.as_array().unwrap().first().expect("child qmigrate").clone();
    assert_eq!(child["id"], "201");
    let st = s.wait_task("pve2", child["upid"].as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "OK");
    assert_eq!(sim.guest_node(201).as_deref(), Some("pve3"));
    let cur = s.data("/nodes/pve3/qemu/201/status/current").await;
    assert_eq!(cur["ha"]["managed"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn task_faults_stop_and_offline_target() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    // error
    sim.arm_fault(&FaultSpec::TaskError {
        vmid: Some(104),
        count: 1,
        message: "simulated copy failure".into(),
    })
    .unwrap();
    let (_, v) = s.post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3"), ("online", "1")]).await;
    let u = v["data"].as_str().unwrap().to_string();
    let st = s.wait_task("pve1", &u).await;
    assert_eq!(st["exitstatus"], "simulated copy failure");
    let log = s.data(&format!("/nodes/pve1/tasks/{}/log", u.replace(':', "%3A"))).await;
    assert_eq!(log.as_array().unwrap().last().unwrap()["t"], "TASK ERROR: simulated copy failure");
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve1"));
    let errs = s.data("/nodes/pve1/tasks?errors=1").await;
    assert_eq!(errs.as_array().unwrap().len(), 1);

    // hang, then DELETE
    sim.arm_fault(&FaultSpec::TaskHang { vmid: None, count: 1 }).unwrap();
    let (_, v) = s.post("/nodes/pve1/qemu/105/migrate", &[("target", "pve3"), ("online", "1")]).await;
    let u = v["data"].as_str().unwrap().to_string();
    sim.advance_clock(3600.0);
    let enc = u.replace(':', "%3A");
    assert_eq!(s.data(&format!("/nodes/pve1/tasks/{enc}/status")).await["status"], "running");
    let (st, _) = s.delete(&format!("/nodes/pve1/tasks/{enc}")).await;
    assert_eq!(st, 200);
    let st = s.data(&format!("/nodes/pve1/tasks/{enc}/status")).await;
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["exitstatus"], "interrupted by signal");
    assert_eq!(sim.guest_node(105).as_deref(), Some("pve1"));
    sim.check_invariants().unwrap();

    // offline target: the task fails; proxied calls to the node answer 595. The clock stands
    // still until the node is down: at 1000× the copy would otherwise finish first on a busy
    // machine.
    sim.set_clock_rate(0.0);
    let (_, v) = s.post("/nodes/pve1/qemu/107/migrate", &[("target", "pve4"), ("online", "1")]).await;
    let u = v["data"].as_str().unwrap().to_string();
    sim.arm_fault(&FaultSpec::NodeOffline { node: "pve4".into(), online: false }).unwrap();
    sim.set_clock_rate(1000.0);
    let st = s.wait_task("pve1", &u).await;
    assert!(st["exitstatus"].as_str().unwrap().contains("Can't connect to destination"));
    assert_eq!(sim.guest_node(107).as_deref(), Some("pve1"));
    let (st, _) = s.get("/nodes/pve4/qemu").await;
    assert_eq!(st, 595);
    let nodes = s.data("/nodes").await;
    assert!(nodes.as_array().unwrap().iter().any(|n| n["node"] == "pve4" && n["status"] == "offline"));
    let pre = s.data("/nodes/pve1/qemu/104/migrate").await;
    assert!(!pre["allowed_nodes"].as_array().unwrap().iter().any(|n| n == "pve4"));

    // cluster task list contains everything
    let all = s.data("/cluster/tasks").await;
    assert!(all.as_array().unwrap().len() >= 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn request_faults_and_admin_endpoints() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let c = client(&sim);
    let admin = |p: &str| format!("{}/_sim/{p}", sim.base_url);
    // burst via the admin endpoint
    let r = c
        .post(admin("faults"))
        .json(&serde_json::json!({"kind": "error_burst", "count": 2, "status": 503, "path_prefix": "/cluster/resources"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.get("/cluster/resources").await.0, 503);
    assert_eq!(s.get("/cluster/resources").await.0, 503);
    assert_eq!(s.get("/cluster/resources").await.0, 200);
    // latency
    sim.arm_fault(&FaultSpec::Latency { ms: 150, path_prefix: Some("/version".into()) }).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(s.get("/version").await.0, 200);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(150));
    let r = c.delete(admin("faults")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // guest deleted
    sim.arm_fault(&FaultSpec::GuestDelete { vmid: 307 }).unwrap();
    let (st, v) = s.get("/nodes/pve3/qemu/307/config").await;
    assert_eq!(st, 500);
    assert!(v["message"].as_str().unwrap().contains("does not exist"));
    // ticket expiry (fault) and by clock
    sim.arm_fault(&FaultSpec::ExpireTickets).unwrap();
    assert_eq!(s.get("/version").await.0, 401);
    // Tickets carry whole seconds: a new login works once the clock has passed the expiry.
    let mut s = Session::root(&sim).await;
    for _ in 0..40 {
        if s.get("/version").await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        s = Session::root(&sim).await;
    }
    assert_eq!(s.get("/version").await.0, 200, "a fresh ticket is valid within 2 s");
    let r: Value = c
        .post(admin("clock"))
        .json(&serde_json::json!({"advance": 7300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["offset"].as_f64().unwrap() >= 7300.0);
    assert_eq!(s.get("/version").await.0, 401);
    // invariants and stats
    let inv: Value = c.get(admin("invariants")).send().await.unwrap().json().await.unwrap();
    assert_eq!(inv["ok"], true, "{inv}");
    let stats: Value = c.get(admin("stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["by_endpoint"]["GET /cluster/resources"], 3);
    assert_eq!(stats["by_endpoint"]["GET /nodes/{node}/qemu/{vmid}/config"], 1);
    assert_eq!(stats["total"].as_u64().unwrap(), sim.request_count());
    let state: Value = c.get(admin("state")).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["guests"]["100"]["node"], "pve1");
    sim.shutdown().await;
}
