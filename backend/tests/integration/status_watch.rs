//! `pve-rebalancer status --once` against the real simulator, run as the built binary: one plain
//! frame naming every node of the cluster and the imbalance.

use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pve-rebalancer");

#[tokio::test]
async fn status_once_prints_every_node_and_the_spread() {
    let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    let sim = pve_sim::start(pve_sim::SimConfig::new(scenario)).await.expect("simulator starts");
    let dir = test_support::temp_dir("status");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem).unwrap();
    let child = tokio::process::Command::new(BIN)
        .args(["status", "--once", "--pve-url", &sim.base_url, "--user", "root@pam", "--pve-ca"])
        .arg(&ca)
        .arg("--journal")
        .arg(dir.join("absent.sqlite"))
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child).await.expect("in time").expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains('\x1b'), "--once prints no escape codes");
    let client = backend::pve::PveClient::new(backend::pve::PveOptions {
        base_url: sim.base_url.clone(),
        credentials: backend::pve::Credentials::Password { user: "root@pam".into(), password: "demo".into() },
        ca_pem: Some(sim.ca_pem.clone()),
        insecure: false,
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    let snap = backend::collect::snapshot(&client, 0).await.unwrap();
    assert!(snap.nodes.len() >= 2);
    for n in &snap.nodes {
        let row = stdout.lines().find(|l| l.split_whitespace().next() == Some(n.name.as_str()));
        assert!(row.is_some(), "node {} missing from:\n{stdout}", n.name);
    }
    let view = shared::api::ClusterView::of(snap);
    let spread_line =
        stdout.lines().find(|l| l.starts_with("imbalance: memory spread")).expect("spread line");
    let shown: f64 = spread_line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!((shown - view.memory_spread).abs() < 5.0, "{spread_line} vs {}", view.memory_spread);
    assert!(stdout.contains("job: unknown (no journal at"), "{stdout}");
    sim.shutdown().await;
}
