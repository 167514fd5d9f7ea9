//! The real `pve-rebalancer serve` as its own process in front of a simulator (tests that kill
//! and restart it).

use std::path::Path;
use std::time::{Duration, Instant};

/// `serve` on a free loopback port with its journal `dir/<journal>`, lock `dir/lock`, state
/// `dir/state`, the simulator's CA and CSRF key, the service account root@pam/demo, `extra`
/// arguments and `env`; stderr in `dir/stderr-<port>.log`. Returns once `/api/v1/health`
/// answers (at most 20 s).
pub async fn spawn(
    dir: &Path,
    sim: &pve_sim::RunningSim,
    journal: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    spawn_at(dir, sim, &sim.base_url, journal, extra, env).await
}

/// [`spawn`] talking to PVE at `pve_url` (e.g. a recording proxy in front of `sim`).
pub async fn spawn_at(
    dir: &Path,
    sim: &pve_sim::RunningSim,
    pve_url: &str,
    journal: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(crate::service_binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--pve-url", pve_url])
        .arg("--pve-ca")
        .arg(&ca)
        .arg("--journal")
        .arg(dir.join(journal))
        .arg("--lock-dir")
        .arg(dir.join("lock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--csrf-key")
        .arg(&sim.csrf_key)
        .args(extra)
        .envs(env.iter().copied())
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("stderr-{port}.log"))).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start pve-rebalancer serve");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    while !http.get(format!("{url}/api/v1/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "pve-rebalancer serve did not answer within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url)
}
