//! Thin-path tests: TLS, login, auth failures, CSRF, API tokens, derived usage.

use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn login_and_resources() {
    let sim = start_demo(1000.0).await;
    assert!(sim.base_url.starts_with("https://127.0.0.1:"));
    let s = Session::root(&sim).await;
    assert!(s.ticket.starts_with("PVE:root@pam:"));
    let v = s.data("/version").await;
    assert_eq!(v["version"], "9.1.2");
    assert_eq!(v["release"], "9.1");

    let res = s.data("/cluster/resources").await;
    let rows = res.as_array().unwrap();
    let nodes: Vec<&Value> = rows.iter().filter(|r| r["type"] == "node").collect();
    assert_eq!(nodes.len(), 4);
    let guests: Vec<&Value> = rows.iter().filter(|r| r["type"] == "qemu" || r["type"] == "lxc").collect();
    assert_eq!(guests.len(), 35);
    let vm100 = guests.iter().find(|r| r["vmid"] == 100).unwrap();
    assert_eq!(vm100["id"], "qemu/100");
    assert_eq!(vm100["node"], "pve1");
    assert_eq!(vm100["tags"], "plb_anti_affinity_web");
    assert_eq!(vm100["pool"], "prod");
    assert_eq!(vm100["template"], 0);
    let tmpl = guests.iter().find(|r| r["vmid"] == 206).unwrap();
    assert_eq!(tmpl["template"], 1);
    assert_eq!(tmpl["status"], "stopped");
    assert!(rows.iter().any(|r| r["type"] == "pool" && r["pool"] == "prod"));

    let only_vms = s.data("/cluster/resources?type=vm").await;
    assert!(only_vms.as_array().unwrap().iter().all(|r| r["type"] == "qemu" || r["type"] == "lxc"));
    let (st, body) = s.get("/cluster/resources?type=bogus").await;
    assert_eq!(st, 400);
    assert!(body["errors"]["type"].is_string());

    // memory imbalance as designed
    let ratio = |n: &str| {
        let r = nodes.iter().find(|r| r["node"] == n).unwrap();
        r["mem"].as_f64().unwrap() / r["maxmem"].as_f64().unwrap()
    };
    assert!(ratio("pve1") > 0.85 && ratio("pve1") < 0.95, "pve1 {}", ratio("pve1"));
    assert!(ratio("pve3") > 0.15 && ratio("pve3") < 0.25, "pve3 {}", ratio("pve3"));

    let nl = s.data("/nodes").await;
    assert_eq!(nl.as_array().unwrap().len(), 4);
    assert!(nl[0]["ssl_fingerprint"].as_str().unwrap().contains(':'));
    let cs = s.data("/cluster/status").await;
    assert_eq!(cs[0]["type"], "cluster");
    assert_eq!(cs[0]["quorate"], 1);
    let perms = s.data("/access/permissions").await;
    assert_eq!(perms["/"]["VM.Migrate"], 1);
    sim.check_invariants().unwrap();
    assert!(sim.request_count() >= 8);
    sim.shutdown().await;
}

#[tokio::test]
async fn auth_failures_and_wire_format() {
    let sim = start_demo(1000.0).await;
    let c = client(&sim);
    let r = c.get(url(&sim, "/cluster/resources")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], Value::Null);
    assert_eq!(v["message"], "No ticket\n");

    let r = c
        .post(url(&sim, "/access/ticket"))
        .form(&[("username", "root@pam"), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "authentication failure\n");

    let r = c
        .get(url(&sim, "/version"))
        .header("Cookie", "PVEAuthCookie=PVE:root@pam:00000000::forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // JSON login, realm split
    let r = c
        .post(url(&sim, "/access/ticket"))
        .json(&serde_json::json!({"username": "root", "realm": "pam", "password": "demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["username"], "root@pam");
    assert_eq!(v["data"]["clustername"], "demo");
    assert_eq!(v["data"]["cap"]["vms"]["VM.Migrate"], 1);

    let s = Session::root(&sim).await;
    let (st, v) = s.get("/no/such/path").await;
    assert_eq!(st, 501);
    assert_eq!(v["message"], "Method 'GET /no/such/path' not implemented\n");

    // extjs: always 200
    let r = c.get(format!("{}/api2/extjs/cluster/resources", sim.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], 0);
    assert_eq!(v["status"], 401);

    // a PVEAuditor may read but not migrate
    let (t, _) = login(&c, &sim, "audit@pve", "audit").await;
    let r = c
        .get(url(&sim, "/nodes/pve1/qemu/100/migrate"))
        .header("Cookie", format!("PVEAuthCookie={t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Permission check failed (/vms/100, VM.Migrate)\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn csrf_required_on_post_with_ticket() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let r =
        s.c.post(url(&sim, "/nodes/pve1/qemu/110/migrate"))
            .header("Cookie", format!("PVEAuthCookie={}", s.ticket))
            .form(&[("target", "pve3")])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("csrf"));
    // with the token it works (stopped VM, offline migration)
    let (st, v) = s.post("/nodes/pve1/qemu/110/migrate", &[("target", "pve3")]).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"].as_str().unwrap().starts_with("UPID:pve1:"));
    sim.shutdown().await;
}

#[tokio::test]
async fn token_auth_and_ticket_renewal() {
    let sim = start_demo(1000.0).await;
    let c = client(&sim);
    for header in [
        "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b",
        "PVEAPIToken=root@pam!rebalancer 5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b",
    ] {
        let r = c.get(url(&sim, "/nodes")).header("Authorization", header).send().await.unwrap();
        assert_eq!(r.status(), 200, "{header}");
    }
    let r = c
        .get(url(&sim, "/nodes"))
        .header("Authorization", "PVEAPIToken=root@pam!rebalancer=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // token POST without CSRF is fine
    let r = c
        .post(url(&sim, "/nodes/pve1/qemu/110/migrate"))
        .header("Authorization", "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b")
        .form(&[("target", "pve2")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"].as_str().unwrap().ends_with(":qmigrate:110:root@pam!rebalancer:"));

    // renewal: the ticket as password
    let (t, _) = login(&c, &sim, "root@pam", "demo").await;
    let (t2, _) = login(&c, &sim, "root@pam", &t).await;
    assert!(t2.starts_with("PVE:root@pam:"));
    // verify-only
    let r = c
        .post(url(&sim, "/access/ticket"))
        .form(&[
            ("username", "root@pam"),
            ("password", t.as_str()),
            ("path", "/vms/100"),
            ("privs", "VM.Audit"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], serde_json::json!({"username": "root@pam"}));
    sim.shutdown().await;
}

#[tokio::test]
async fn usage_is_derived_from_guests() {
    let yaml = r#"
cluster: t
nodes:
  - { name: a, cpus: 10, memory_gib: 100, overhead: { memory_gib: 10, cpu: 0.1 } }
  - { name: b, cpus: 10, memory_gib: 100, overhead: { memory_gib: 10, cpu: 0.1 } }
guests:
  - { vmid: 100, node: a, cores: 2, memory_gib: 40, memory_used_gib: 30, cpu: 0.5 }
  - { vmid: 101, node: a, status: stopped, memory_gib: 40 }
"#;
    let sc = pve_sim::Scenario::from_yaml(yaml).unwrap();
    let sim = start_with(sc, 1000.0).await;
    let s = Session::root(&sim).await;
    let nodes = s.data("/cluster/resources?type=node").await;
    let get = |n: &str, k: &str| {
        nodes.as_array().unwrap().iter().find(|r| r["node"] == n).unwrap()[k].as_f64().unwrap()
    };
    let gib = 1024.0 * 1024.0 * 1024.0;
    assert_eq!(get("a", "mem"), 40.0 * gib);
    assert_eq!(get("b", "mem"), 10.0 * gib);
    assert!((get("a", "cpu") - 0.2).abs() < 1e-9); // (1 + 2*0.5) / 10
    assert!((get("b", "cpu") - 0.1).abs() < 1e-9);
    // move the running guest: its load moves too
    let (st, v) = s.post("/nodes/a/qemu/100/migrate", &[("target", "b"), ("online", "1")]).await;
    assert_eq!(st, 200, "{v}");
    let st = s.wait_task("a", v["data"].as_str().unwrap()).await;
    assert_eq!(st["exitstatus"], "OK");
    let nodes = s.data("/cluster/resources?type=node").await;
    let get = |n: &str, k: &str| {
        nodes.as_array().unwrap().iter().find(|r| r["node"] == n).unwrap()[k].as_f64().unwrap()
    };
    assert_eq!(get("a", "mem"), 10.0 * gib);
    assert_eq!(get("b", "mem"), 40.0 * gib);
    assert_eq!(sim.guest_node(100).as_deref(), Some("b"));
    sim.check_invariants().unwrap();
    sim.shutdown().await;
}
