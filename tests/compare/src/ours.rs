//! pve-rebalancer: in-process (collect + engine, timed apart) and end to end through the CLI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backend::pve::{Credentials, PveClient, PveOptions};
use shared::rules::RuleConfig;
use shared::{ClusterSnapshot, Plan, PlanRequest};

/// The request both tools are compared under (ProxLB: memory / used / balanciness 5); everything
/// else is our product default, exactly what `pve-rebalancer plan --balanciness 5` sends.
pub fn request(rules: &RuleConfig) -> PlanRequest {
    PlanRequest {
        method: shared::Method::Memory,
        mode: shared::Mode::Used,
        balanciness: 5.0,
        rules: rules.clone(),
        ..Default::default()
    }
}

pub fn client(sim: &pve_sim::RunningSim) -> anyhow::Result<PveClient> {
    Ok(PveClient::new(PveOptions {
        base_url: sim.base_url.clone(),
        credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
        ca_pem: Some(sim.ca_pem.clone()),
        insecure: false,
        timeout: Duration::from_secs(60),
    })?)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Collects a snapshot in-process; returns it with the collection time.
pub async fn collect(sim: &pve_sim::RunningSim) -> anyhow::Result<(ClusterSnapshot, Duration)> {
    let c = client(sim)?;
    let t = Instant::now();
    let s = backend::collect::snapshot(&c, now()).await?;
    Ok((s, t.elapsed()))
}

/// Plans `reps` times (at least once); returns the plan and the median engine time.
pub fn plan_timed(s: &ClusterSnapshot, req: &PlanRequest, reps: usize) -> (Plan, Duration) {
    let mut times = Vec::new();
    let mut plan = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let p = shared::planner::plan(s, req);
        times.push(t.elapsed());
        plan = Some(p);
    }
    times.sort();
    (plan.expect("at least one plan"), times[times.len() / 2])
}

/// The CLI binary next to this harness's profile, built on demand with the same profile;
/// `$COMPARE_CLI` names a binary to use as it is instead.
pub fn ensure_cli() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("COMPARE_CLI") {
        let p = PathBuf::from(p);
        anyhow::ensure!(p.exists(), "COMPARE_CLI={} does not exist", p.display());
        return Ok(p);
    }
    let release = !cfg!(debug_assertions);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let bin = target.join(if release { "release" } else { "debug" }).join("pve-rebalancer");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(crate::workspace_root()).args([
        "build",
        "-q",
        "-p",
        "pve-rebalancer",
        "--bin",
        "pve-rebalancer",
    ]);
    if release {
        cmd.arg("--release");
    }
    let st = cmd.status()?;
    anyhow::ensure!(st.success(), "building pve-rebalancer failed");
    anyhow::ensure!(bin.exists(), "{} missing after build", bin.display());
    Ok(bin)
}

/// The CLI arguments (password through the environment, as the CLI recommends).
pub fn cli_args(url: &str, ca: &Path) -> Vec<String> {
    [
        "plan",
        "--pve-url",
        url,
        "--pve-ca",
        &ca.display().to_string(),
        "--user",
        "root@pam",
        "--balanciness",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `pve-rebalancer plan` against the simulator; returns the plan and the wall time.
pub async fn run_cli(
    bin: &Path,
    sim: &pve_sim::RunningSim,
    timeout: Duration,
) -> Result<(Plan, Duration), String> {
    let dir = crate::temp_dir("ours");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem).map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(cli_args(&sim.base_url, &ca))
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let t = Instant::now();
    let out = tokio::time::timeout(timeout, cmd.output()).await;
    let wall = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run {}: {e}", bin.display())),
        Err(_) => return Err(format!("timed out after {} s (killed)", timeout.as_secs())),
    };
    if !out.status.success() {
        return Err(format!("exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    let plan: Plan = serde_json::from_slice(&out.stdout).map_err(|e| format!("plan JSON: {e}"))?;
    Ok((plan, wall))
}
