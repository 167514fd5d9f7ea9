//! Set-up the test crates share (`backend`'s integration tests, `e2e`, `compare`): the
//! simulator, a PVE client for it, an executor with fast polls, plans of explicit steps and
//! what a test reads back from a job, scratch folders removed when dropped. One place, so that
//! a change to how the service talks to PVE or runs a plan is made once for every test.

use backend::execute::{DirLock, ExecConfig, Executor, Journal};
use backend::pve::{Credentials, PveClient, PveOptions};
use pve_sim::{RunningSim, Scenario};
use serde_json::json;
use shared::api::{JobView, StepView};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The repository's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The demo cluster the simulator ships.
pub fn demo() -> Scenario {
    Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario")
}

/// `scenario` on 127.0.0.1 with tasks running `time_scale` times faster than real time.
pub async fn start_sim_with(scenario: Scenario, time_scale: f64) -> RunningSim {
    let mut cfg = pve_sim::SimConfig::new(scenario);
    cfg.time_scale = time_scale;
    pve_sim::start(cfg).await.expect("simulator starts")
}

/// The demo cluster (see [`start_sim_with`]).
pub async fn start_sim(time_scale: f64) -> RunningSim {
    start_sim_with(demo(), time_scale).await
}

/// The service's connection to `sim` at `base_url` (the simulator, or a proxy in front of it),
/// logged in as `user`, trusting the simulator's CA.
pub fn options_as(
    sim: &RunningSim,
    base_url: &str,
    (user, password): (&str, &str),
    timeout: Duration,
) -> PveOptions {
    PveOptions {
        base_url: base_url.to_owned(),
        credentials: Credentials::Password { user: user.to_owned(), password: password.to_owned() },
        ca_pem: Some(sim.ca_pem.clone()),
        insecure: false,
        timeout,
    }
}

/// The service's connection to `sim` as root@pam.
pub fn options(sim: &RunningSim, timeout: Duration) -> PveOptions {
    options_as(sim, &sim.base_url, ("root@pam", "demo"), timeout)
}

/// A PVE client for `sim` reached at `base_url`, as root@pam.
pub fn pve_client(sim: &RunningSim, base_url: &str, timeout: Duration) -> Arc<PveClient> {
    let options = options_as(sim, base_url, ("root@pam", "demo"), timeout);
    Arc::new(PveClient::new(options).expect("a PVE client for the simulator"))
}

/// A PVE client for `sim` as root@pam, with a 10 s timeout.
pub fn client(sim: &RunningSim) -> Arc<PveClient> {
    pve_client(sim, &sim.base_url, Duration::from_secs(10))
}

/// Executor timings for tests: polls of 10–50 ms, two at a time, one per node.
pub fn fast_exec_config() -> ExecConfig {
    ExecConfig {
        max_parallel: 2,
        max_per_node: 1,
        step_timeout: Duration::from_secs(20),
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        max_unknown_polls: 20,
        ha_child_wait: Duration::from_secs(5),
        lock_ttl: Duration::from_secs(10),
        ..ExecConfig::default()
    }
}

/// An executor with `pve`, its journal in `dir` and its cluster lock in `lock_dir`.
pub fn executor_with(pve: Arc<PveClient>, dir: &Path, lock_dir: &Path, cfg: ExecConfig) -> Arc<Executor> {
    let journal = Journal::open(&dir.join("journal.sqlite")).expect("journal");
    Executor::new(pve, Arc::new(journal), Arc::new(DirLock::new(lock_dir)), cfg)
}

/// An executor on `sim` (see [`executor_with`]).
pub fn executor_in(sim: &RunningSim, dir: &Path, lock_dir: &Path, cfg: ExecConfig) -> Arc<Executor> {
    executor_with(client(sim), dir, lock_dir, cfg)
}

/// A plan of explicit steps: (vmid, kind, from, to, depends_on), as the API carries one.
pub fn plan_of(steps: &[(u32, &str, &str, &str, &[usize])]) -> shared::Plan {
    let steps: Vec<_> = steps
        .iter()
        .map(|(vmid, kind, from, to, deps)| {
            json!({"vmid": vmid, "name": format!("g{vmid}"), "kind": kind, "from": from, "to": to,
                   "migration": "live", "mem_bytes": 0, "reason": "test", "depends_on": deps})
        })
        .collect();
    serde_json::from_value(json!({
        "request": shared::PlanRequest::default(), "steps": steps, "before": [], "after": [],
        "spread_before": 0.0, "spread_after": 0.0, "notes": [],
    }))
    .expect("a plan of explicit steps")
}

/// A plan of independent VM moves: (vmid, from, to).
pub fn moves(steps: &[(u32, &str, &str)]) -> shared::Plan {
    let steps: Vec<_> = steps.iter().map(|&(vmid, from, to)| (vmid, "qemu", from, to, &[][..])).collect();
    plan_of(&steps)
}

/// The job's step for `vmid`.
pub fn step(v: &JobView, vmid: u32) -> &StepView {
    v.steps.iter().find(|s| s.vmid == vmid).expect("step of vmid")
}

/// The message of the job's step for `vmid` ("" when it has none).
pub fn step_message(v: &JobView, vmid: u32) -> String {
    step(v, vmid).message.clone().unwrap_or_default()
}

/// How many migrations `sim` was asked for (its `POST …/migrate` requests).
pub fn migrate_posts(sim: &RunningSim) -> u64 {
    sim.request_stats()
        .iter()
        .filter(|(k, _)| k.starts_with("POST") && k.ends_with("/migrate"))
        .map(|(_, n)| *n)
        .sum()
}

/// A fresh folder under the system's temporary folder, removed when dropped; reads as a `Path`.
pub struct Scratch(tempfile::TempDir);

/// A [`Scratch`] folder named after `tag`.
pub fn temp_dir(tag: &str) -> Scratch {
    Scratch(tempfile::Builder::new().prefix(&format!("pvrb-{tag}-")).tempdir().expect("temp dir"))
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}
