//! RRD data, version modes, scenario faults, invariant detection, and the binary.

use crate::common::*;
use serde_json::Value;

fn demo_as(version: &str) -> pve_sim::Scenario {
    let yaml = std::fs::read_to_string(pve_sim::demo_scenario_path())
        .unwrap()
        .replace("\"9.1.2\"", &format!("\"{version}\""));
    let mut sc = pve_sim::Scenario::from_yaml(&yaml).unwrap();
    if !version.starts_with('9') {
        sc.ha_rules.clear();
    }
    sc
}

#[tokio::test]
async fn rrd_follows_load_and_version() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let avg = s.data("/nodes/pve1/rrddata?timeframe=hour&cf=AVERAGE").await;
    let rows = avg.as_array().unwrap();
    assert_eq!(rows.len(), 60);
    let t: Vec<i64> = rows.iter().map(|r| r["time"].as_i64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[1] - w[0] == 60));
    for k in ["cpu", "memused", "memtotal", "pressurecpusome", "pressurememorysome", "memavailable"] {
        assert!(rows[0].get(k).is_some(), "missing {k}");
    }
    let mean = |rows: &[Value], k: &str| {
        rows.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>() / rows.len() as f64
    };
    let max = s.data("/nodes/pve1/rrddata?timeframe=hour&cf=MAX").await;
    assert!(mean(max.as_array().unwrap(), "cpu") >= mean(rows, "cpu"));
    let idle = s.data("/nodes/pve3/rrddata?timeframe=hour&cf=AVERAGE").await;
    assert!(mean(rows, "memused") / mean(rows, "memtotal") > 0.8);
    assert!(mean(idle.as_array().unwrap(), "memused") / mean(idle.as_array().unwrap(), "memtotal") < 0.3);
    assert_eq!(s.data("/nodes/pve1/rrddata?timeframe=day").await.as_array().unwrap().len(), 1440);
    assert_eq!(s.data("/nodes/pve1/rrddata?timeframe=week").await.as_array().unwrap().len(), 336);
    // guest rrd on both paths (like PVE), cpu near the configured fraction
    let g = s.data("/nodes/pve1/qemu/106/rrddata?timeframe=hour&cf=AVERAGE").await;
    let c = mean(g.as_array().unwrap(), "cpu");
    assert!((c - 0.6).abs() < 0.1, "cpu {c}");
    assert!(g[0].get("pressurecpufull").is_some());
    let (st, _) = s.get("/nodes/pve1/lxc/106/rrddata?timeframe=hour").await;
    assert_eq!(st, 200);
    // PSI in guest lists (9.x)
    let q = s.data("/nodes/pve1/qemu").await;
    assert!(q[0].get("pressurememorysome").is_some() && q[0].get("memhost").is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn version_modes_differ() {
    for (ver, psi, rows, hastate) in
        [("8.4.1", false, 70, true), ("7.4-17", false, 70, false), ("9.0.11", true, 60, true)]
    {
        let sim = start_with(demo_as(ver), 1000.0).await;
        let s = Session::root(&sim).await;
        assert_eq!(s.data("/version").await["version"], ver);
        assert_eq!(s.data("/nodes/pve2/version").await["version"], ver);
        let q = s.data("/nodes/pve1/qemu").await;
        assert_eq!(q[0].get("pressurecpusome").is_some(), psi, "{ver}");
        let r = s.data("/nodes/pve1/rrddata?timeframe=hour").await;
        assert_eq!(r.as_array().unwrap().len(), rows, "{ver}");
        let n = s.data("/cluster/resources?type=node").await;
        assert_eq!(n[0].get("hastate").is_some(), hastate, "{ver}");
        let pre = s.data("/nodes/pve1/qemu/104/migrate").await;
        assert_eq!(pre.get("allowed_nodes").is_some(), !ver.starts_with('7'), "{ver}");
        let cfg = s.data("/nodes/pve1/qemu/104/config").await;
        assert_eq!(cfg["memory"].is_string(), !ver.starts_with('7'), "{ver}");
        let (st, _) = s.get("/pools?poolid=prod").await;
        assert_eq!(st == 200, !ver.starts_with('7'), "{ver}");
        let groups = s.data("/cluster/ha/groups").await;
        assert!(groups.is_array());
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn scenario_faults_are_armed_at_start() {
    let mut sc = demo_as("9.1.2");
    sc.faults = vec![
        pve_sim::FaultSpec::ErrorBurst { count: 1, status: 502, path_prefix: Some("/nodes".into()) },
        pve_sim::FaultSpec::NodeOffline { node: "pve4".into(), online: false },
    ];
    let sim = start_with(sc, 1000.0).await;
    let s = Session::root(&sim).await;
    assert_eq!(s.get("/nodes").await.0, 502);
    let nodes = s.data("/nodes").await;
    assert!(nodes.as_array().unwrap().iter().any(|n| n["node"] == "pve4" && n["status"] == "offline"));
    let cs = s.data("/cluster/status").await;
    assert!(cs.as_array().unwrap().iter().any(|n| n["name"] == "pve4" && n["online"] == 0));
    let ha = s.data("/cluster/ha/status/current").await;
    assert!(ha.as_array().unwrap().iter().any(|e| e["id"] == "lrm:pve4"));
    sim.shutdown().await;
}

#[test]
fn invariants_catch_overcommit_and_bad_scenarios() {
    let yaml = "nodes: [{name: a, cpus: 4, memory_gib: 8}]\nguests: [{vmid: 100, node: a, memory_gib: 16, memory_used: 1.0}]\n";
    let sc = pve_sim::Scenario::from_yaml(yaml).unwrap();
    let c = pve_sim::Cluster::from_scenario(&sc, 1_800_000_000).unwrap();
    let v = c.check_invariants().unwrap_err();
    assert!(v[0].contains("over-committed"), "{v:?}");
    for bad in [
        "nodes: []",
        "nodes: [{name: a, cpus: 4, memory_gib: 8}]\nguests: [{vmid: 100, node: b}]",
        "nodes: [{name: a, cpus: 4, memory_gib: 8}]\nguests: [{vmid: 100, node: a}, {vmid: 100, node: a}]",
        "nodes: [{name: a, cpus: 4, memory_gib: 8}]\nguests: [{vmid: 100, node: a, memory_used: 3}]",
        "nodes: [{name: a, cpus: 4, memory_gib: 8, colour: red}]",
        "version: '6.4'\nnodes: [{name: a, cpus: 4, memory_gib: 8}]",
    ] {
        assert!(pve_sim::Scenario::from_yaml(bad).is_err(), "accepted: {bad}");
    }
}

#[tokio::test]
async fn binary_prints_address_and_writes_ca() {
    use tokio::io::AsyncBufReadExt;
    let dir = std::env::temp_dir().join(format!("pve-sim-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pve-sim"))
        .arg("--scenario")
        .arg(pve_sim::demo_scenario_path())
        .arg("--time-scale")
        .arg("100")
        .arg("--ca-out")
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("pve-sim listening on ").expect("announce line").to_string();
    assert!(url.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read_to_string(&ca).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("{url}/api2/json/version"))
        .header("Authorization", "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SIGTERM ends it
    let pid = child.id().unwrap() as i32;
    std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    let st = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(st.success(), "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
