//! Set-up the modules share: the demo simulator, a service client for it, an executor with fast
//! polls, scratch folders (removed when dropped).

use backend::execute::{DirLock, ExecConfig, Executor, Journal};
use backend::pve::{Credentials, PveClient, PveOptions};
use pve_sim::{RunningSim, Scenario};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

/// The service's connection to `sim`: root@pam, trusting the simulator's CA.
pub fn options(sim: &RunningSim, timeout: Duration) -> PveOptions {
    PveOptions {
        base_url: sim.base_url.clone(),
        credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
        ca_pem: Some(sim.ca_pem.clone()),
        insecure: false,
        timeout,
    }
}

pub fn client(sim: &RunningSim) -> Arc<PveClient> {
    Arc::new(PveClient::new(options(sim, Duration::from_secs(10))).expect("client"))
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

/// An executor on `sim` with its journal in `dir` and its cluster lock in `lock_dir`.
pub fn executor_in(sim: &RunningSim, dir: &Path, lock_dir: &Path, cfg: ExecConfig) -> Arc<Executor> {
    let journal = Journal::open(&dir.join("journal.sqlite")).expect("journal");
    Executor::new(client(sim), Arc::new(journal), Arc::new(DirLock::new(lock_dir)), cfg)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("workspace root")
}

/// A fresh folder under the system's temporary folder, removed when dropped; reads as a `Path`.
pub struct Scratch(tempfile::TempDir);

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
