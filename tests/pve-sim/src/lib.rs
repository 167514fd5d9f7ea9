//! pve-sim: a stateful Proxmox VE API simulator served over HTTPS on loopback.
//!
//! Start one with [`start`]; see `SCENARIOS.md` for the scenario format.

pub mod api;
pub mod auth;
pub mod dynamics;
pub mod faults;
pub mod generate;
pub mod maintenance;
pub mod rrd;
pub mod scenario;
pub mod schema;
pub mod server;
pub mod state;
pub mod tasks;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

pub use generate::generate;
pub use scenario::{FaultSpec, GuestSpec, GuestType, NodeSpec, PastMigrationSpec, Scenario};
pub use state::Cluster;

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub scenario: Scenario,
    /// Loopback address to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Simulated seconds per wall-clock second for task durations (1.0 = real time; 1000 = fast tests).
    pub time_scale: f64,
    /// Rate of the simulated clock: 1 = real time, 600 = ten simulated minutes per second,
    /// 0 = stepped (moves only with `/_sim/clock` `advance`). See `server::Clock`.
    pub clock_rate: f64,
    /// Serve without the PVE API schema (no request validation). Only on explicit request
    /// (`pve-sim --no-schema`): by default a schema that cannot be loaded stops the start.
    pub no_schema: bool,
}

impl SimConfig {
    /// `127.0.0.1:0`, time scale 1.
    pub fn new(scenario: Scenario) -> Self {
        SimConfig {
            scenario,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            time_scale: 1.0,
            clock_rate: 1.0,
            no_schema: false,
        }
    }
}

/// A running simulator; dropping it without [`RunningSim::shutdown`] leaves the server task running
/// until the runtime ends.
pub struct RunningSim {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT`
    pub base_url: String,
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    /// SHA-256 fingerprint of the server certificate (`AA:BB:..`).
    pub fingerprint: String,
    /// The simulator's `pve-www.key` (0600, removed at shutdown): the CSRF tokens it hands out
    /// are signed from it as PVE signs them, so a service given this file verifies them.
    pub csrf_key: std::path::PathBuf,
    sim: Arc<server::Sim>,
    handle: axum_server::Handle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningSim {
    /// Consistency checks of the simulated cluster (see `Cluster::check_invariants`).
    pub fn check_invariants(&self) -> Result<(), Vec<String>> {
        let (w, _) = self.sim.lock();
        w.cluster.check_invariants()
    }

    /// Number of `/api2` requests served so far.
    pub fn request_count(&self) -> u64 {
        self.sim.requests.load(Ordering::Relaxed)
    }

    /// Requests per endpoint template, e.g. `"GET /nodes/{node}/qemu" → 4`.
    pub fn request_stats(&self) -> std::collections::BTreeMap<String, u64> {
        self.sim.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on the live cluster state (after letting due tasks finish).
    pub fn with_cluster<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        let (mut w, _) = self.sim.lock();
        f(&mut w.cluster)
    }

    /// Node a guest currently sits on.
    pub fn guest_node(&self, vmid: u32) -> Option<String> {
        self.with_cluster(|c| c.guests.get(&vmid).map(|g| g.node.clone()))
    }

    /// Moves the simulated clock forward.
    pub fn advance_clock(&self, secs: f64) {
        server::advance_clock(&self.sim, secs);
    }

    /// Sets the simulated clock's rate (1 real time, > 1 faster, 0 stepped).
    pub fn set_clock_rate(&self, rate: f64) {
        server::set_clock_rate(&self.sim, rate);
    }

    /// Current simulated time (fractional Unix seconds).
    pub fn now(&self) -> f64 {
        self.sim.lock().1
    }

    /// HA node maintenance on/off (what `ha-manager crm-command node-maintenance` does):
    /// HA-managed guests move off the node, and back when it ends. Returns the moves started.
    pub fn set_ha_maintenance(&self, node: &str, enable: bool) -> Result<Vec<maintenance::CrmMove>, String> {
        server::set_ha_maintenance(&self.sim, node, enable)
    }

    /// Arms a fault (same shapes as the scenario's `faults:`).
    pub fn arm_fault(&self, f: &FaultSpec) -> Result<(), String> {
        let (mut w, now) = self.sim.lock();
        let server::World { cluster, faults, .. } = &mut *w;
        faults.arm(f, cluster, now.floor() as i64)
    }

    /// Placement and usage overview, as served by `GET /_sim/state`.
    pub fn state_summary(&self) -> serde_json::Value {
        self.with_cluster(|c| server::state_summary(c))
    }

    /// Stops the server (in-flight requests get up to one second).
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
        if let Some(dir) = self.csrf_key.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `<crate>/scenarios/demo.yaml`
pub fn demo_scenario_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join("demo.yaml")
}

/// Starts a simulator on a loopback address; returns once it accepts connections.
/// Writes the CSRF key file (0600) into a directory of its own for this simulator.
fn write_www_key(key: &[u8], addr: SocketAddr) -> anyhow::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir().join(format!("pve-sim-{}-{}", std::process::id(), addr.port()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("pve-www.key");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(key)?;
    Ok(path)
}

pub async fn start(cfg: SimConfig) -> anyhow::Result<RunningSim> {
    if !cfg.bind.ip().is_loopback() {
        bail!("pve-sim only binds loopback addresses, not {}", cfg.bind);
    }
    if !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0) {
        bail!("time_scale must be > 0");
    }
    if !(cfg.clock_rate.is_finite() && cfg.clock_rate >= 0.0) {
        bail!("clock_rate must be >= 0");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let cluster = Cluster::from_scenario(&cfg.scenario, now.floor() as i64)?;
    let tls = tls::generate()?;
    let schema = if cfg.no_schema {
        tracing::warn!("--no-schema: request validation against the PVE API schema is off");
        None
    } else {
        Some(
            schema::for_version(&cluster.version)
                .context("loading the PVE API schema (or pass --no-schema)")?,
        )
    };
    let sim = Arc::new(server::Sim::with_clock(
        cluster,
        cfg.time_scale,
        cfg.clock_rate,
        tls.fingerprint.clone(),
        schema,
    ));
    {
        let mut w = sim.world.lock().unwrap_or_else(|e| e.into_inner());
        let server::World { cluster, faults, .. } = &mut *w;
        for f in &cfg.scenario.faults {
            faults.arm(f, cluster, now.floor() as i64).map_err(|e| anyhow::anyhow!("scenario fault: {e}"))?;
        }
    }
    let listener = std::net::TcpListener::bind(cfg.bind).with_context(|| format!("binding {}", cfg.bind))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let app = server::router(sim.clone());
    let rustls_cfg = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config.clone());
    let server = axum_server::from_tcp_rustls(listener, rustls_cfg).handle(handle.clone());
    let join = tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    handle.listening().await.context("server failed to start")?;
    let csrf_key = write_www_key(sim.signer.www_key(), addr)?;
    Ok(RunningSim {
        addr,
        base_url: format!("https://{addr}"),
        ca_pem: tls.ca_pem,
        fingerprint: tls.fingerprint,
        csrf_key,
        sim,
        handle,
        join,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> SimConfig {
        SimConfig::new(Scenario::from_file(&demo_scenario_path()).expect("demo scenario"))
    }

    #[tokio::test]
    async fn the_bundled_schema_is_loaded_unless_no_schema_is_asked_for() {
        let sim = start(demo()).await.expect("starts");
        let source = sim.sim.schema.as_ref().map(|s| s.source.clone());
        assert_eq!(source.as_deref(), Some("bundled pve-9.1.json"));
        sim.shutdown().await;
        let sim = start(SimConfig { no_schema: true, ..demo() }).await.expect("starts");
        assert!(sim.sim.schema.is_none());
        sim.shutdown().await;
    }
}
