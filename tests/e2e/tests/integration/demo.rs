//! `pve-rebalancer demo`: the real binary starts the simulated cluster and the service in front
//! of it on its own; a user logs in with the demo's account, sees the cluster, gets a plan, and
//! SIGTERM ends the process cleanly.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The binary with the `demo` feature. `cargo test --workspace` (and `cargo xtask test`) builds
/// it so: this crate's dependency on the backend turns the feature on for the whole build. A
/// plain `cargo build -p pve-rebalancer` leaves it out; only then is it built again here
/// (incremental), never while another test may be running the binary.
fn demo_binary() -> PathBuf {
    let bin = e2e::service_binary();
    let has_demo = std::process::Command::new(&bin)
        .args(["demo", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_demo {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(e2e::workspace_root())
        .args(["build", "-q", "-p", "pve-rebalancer", "--features", "demo", "--bin", "pve-rebalancer"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building pve-rebalancer --features demo failed");
    e2e::service_binary()
}

#[tokio::test]
async fn the_demo_subcommand_serves_a_simulated_cluster_until_terminated() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(demo_binary())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start pve-rebalancer demo");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(format!("{url}/api/v1/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "pve-rebalancer demo did not answer within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "pve-rebalancer demo exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let root = e2e::login(&url, "root@pam", "demo").await.expect("the demo's root@pam / demo");
    let cluster: Value = root.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    let nodes = cluster["snapshot"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "the demo scenario's four nodes: {cluster}");
    let plan: Value = root.post("/api/v1/plan").json(&json!({})).send().await.unwrap().json().await.unwrap();
    assert!(plan["steps"].as_array().is_some_and(|s| !s.is_empty()), "the demo is unbalanced: {plan}");
    assert!(e2e::login(&url, "root@pam", "wrong").await.is_err(), "a wrong password is refused");

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits on SIGTERM");
    assert!(exit.unwrap().success(), "a clean exit on SIGTERM");
}
