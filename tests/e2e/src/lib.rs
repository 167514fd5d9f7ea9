//! Harness for end-to-end tests: a simulated cluster, a backend in front of it, and a WebDriver
//! client for Debian's headless Chromium.
//!
//! Everything binds to 127.0.0.1 on a free port and every wait is bounded.

pub mod routes;
pub mod service;
pub mod webdriver;

use backend::app::{AppState, Policy};
use backend::config::map::FileLayer;
use backend::execute::{DirLock, ExecConfig, Executor, Journal};
use backend::http::router;
use backend::maintenance::Maintenance;
use backend::pve::PveClient;
use backend::sampler::{Sampler, SamplerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use test_support::{pve_client, temp_dir, workspace_root, Scratch};

/// The built `pve-rebalancer` binary (target/debug), for tests that run the real process. Fails
/// (never skips) when it is missing or older than `backend/src`.
pub fn service_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(Path::parent).unwrap().join("pve-rebalancer");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p pve-rebalancer`, or run `cargo test --workspace`)",
        bin.display()
    );
    let built = std::fs::metadata(&bin).unwrap().modified().unwrap();
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut dirs = vec![workspace_root().join("backend/src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                newest = newest.max(e.metadata().unwrap().modified().unwrap());
            }
        }
    }
    assert!(
        built >= newest,
        "{} is older than backend/src: rebuild it (`cargo build -p pve-rebalancer`)",
        bin.display()
    );
    bin
}

/// The built panel. Tests that need it fail (never skip) when it is missing.
/// The online node with the least memory in use: its guests fit elsewhere, and it takes one
/// more guest most easily.
pub fn least_used_online_node(view: &shared::api::ClusterView) -> String {
    view.memory
        .iter()
        .filter(|l| view.snapshot.node(&l.node).is_some_and(|n| n.status == shared::NodeStatus::Online))
        .min_by(|x, y| x.percent.total_cmp(&y.percent))
        .expect("an online node")
        .node
        .clone()
}

pub fn panel_dir() -> PathBuf {
    let dir = workspace_root().join("frontend/dist");
    assert!(
        dir.join("index.html").exists() && dir.join("frontend_bg.wasm").exists(),
        "the panel is not built at {}: run `cargo xtask frontend` (or `cargo xtask test`, which does it)",
        dir.display()
    );
    dir
}

/// A simulator and a backend in front of it (router + executor, journal and lock in a private
/// temp directory), served on a loopback port. `Stack::builder()` sets what differs per test.
pub struct Stack {
    pub sim: pve_sim::RunningSim,
    /// `http://127.0.0.1:PORT`
    pub backend_url: String,
    /// The backend's PVE client (the service account).
    pub pve: Arc<PveClient>,
    /// Private directory holding `journal.sqlite`, the `lock` directory, the settings and the
    /// maintenance state (removed with the stack).
    pub work: PathBuf,
    _work: Scratch,
    /// The backend's executor and maintenance store (the same ones its routes use).
    pub executor: Arc<Executor>,
    pub maintenance: Arc<Maintenance>,
    /// The state the routes run with (for driving service tasks such as the scheduler).
    pub state: AppState,
    backend: tokio::task::JoinHandle<()>,
    sampling: tokio::task::JoinHandle<()>,
}

/// What a test may change about its [`Stack`]; everything else is as in the service.
pub struct StackBuilder {
    scenario: Option<pve_sim::Scenario>,
    time_scale: f64,
    exec: ExecConfig,
    panel: Option<PathBuf>,
    service_user: (String, String),
    ha_manager: Option<PathBuf>,
    pve_timeout: Duration,
    config: Option<String>,
}

impl StackBuilder {
    /// A `proxlb.yaml` the service plans with (`serve -c`), below the stored settings. Written
    /// to `<work>/proxlb.yaml`; `rebalancer.state_dir` is set to the stack's directory, and
    /// `{SIM}` / `{CA}` stand for the simulator's `host:port` and its CA file (for the CLI).
    pub fn config(mut self, yaml: &str) -> Self {
        self.config = Some(yaml.to_owned());
        self
    }

    /// The cluster (default: `scenarios/demo.yaml`).
    pub fn scenario(mut self, scenario: pve_sim::Scenario) -> Self {
        self.scenario = Some(scenario);
        self
    }

    /// Simulated seconds per real second (default 1000: migrations take milliseconds).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = scale;
        self
    }

    /// The executor's polling, timeouts and limits (default: polls 20–100 ms, step timeout 60 s).
    pub fn exec_config(mut self, cfg: ExecConfig) -> Self {
        self.exec = cfg;
        self
    }

    /// Serve the built panel at `/`.
    pub fn panel(mut self, dir: Option<PathBuf>) -> Self {
        self.panel = dir;
        self
    }

    /// The `ha-manager` command PVE HA maintenance runs (default: [`ha_manager_stand_in`] in
    /// `work`). It is run only when called, so a test may write it after `start`.
    pub fn ha_manager(mut self, path: PathBuf) -> Self {
        self.ha_manager = Some(path);
        self
    }

    /// The backend's timeout for one PVE call (default 10 s; a cluster of thousands of guests
    /// on two busy cores needs more).
    pub fn pve_timeout(mut self, timeout: Duration) -> Self {
        self.pve_timeout = timeout;
        self
    }

    /// The PVE account the backend itself uses (default `root@pam` / `demo`, the demo's).
    pub fn service_user(mut self, user: &str, password: &str) -> Self {
        self.service_user = (user.to_owned(), password.to_owned());
        self
    }

    pub async fn start(self) -> anyhow::Result<Stack> {
        let scenario = match self.scenario {
            Some(s) => s,
            None => pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path())?,
        };
        let mut cfg = pve_sim::SimConfig::new(scenario);
        cfg.time_scale = self.time_scale;
        let sim = pve_sim::start(cfg).await?;
        let (user, password) = self.service_user;
        let options = test_support::options_as(&sim, &sim.base_url, (&user, &password), self.pve_timeout);
        let pve = Arc::new(PveClient::new(options).expect("a PVE client for the simulator"));
        let scratch = temp_dir("stack");
        let work = scratch.to_path_buf();
        let exec_limits = (self.exec.max_parallel as u32, self.exec.max_per_node as u32);
        let journal = Journal::open(&work.join("journal.sqlite"))?;
        let executor = Executor::new(
            pve.clone(),
            Arc::new(journal),
            Arc::new(DirLock::new(work.join("lock"))),
            self.exec,
        );
        // Settings and maintenance state in the private directory, never the machine's /etc/pve; no
        // ha-manager there, so PVE HA maintenance fails cleanly unless a test provides one.
        // PVE's `ha-manager` CLI does not exist here: a stand-in asks the simulator's CRM.
        let ha_manager = match self.ha_manager {
            Some(path) => path,
            None => ha_manager_stand_in(&work, &sim),
        };
        let maintenance = Arc::new(Maintenance::new(&work, &ha_manager));
        executor.set_closed_targets(maintenance.closed_targets());
        // The policy as `serve` makes it: the config file (if any) below the stored settings in
        // the private directory. Without a file, as `serve` with the executor flags in its
        // configuration file: they show as `file`.
        let file = match &self.config {
            Some(yaml) => {
                let path = work.join("proxlb.yaml");
                let ca = work.join("sim-ca.pem");
                std::fs::write(&ca, &sim.ca_pem)?;
                let host = sim.base_url.trim_start_matches("https://").trim_end_matches('/');
                let yaml = yaml.replace("{SIM}", host).replace("{CA}", &ca.display().to_string());
                let yaml = format!("{yaml}\nrebalancer:\n  state_dir: {}\n", work.display());
                std::fs::write(&path, merge_rebalancer(&yaml))?;
                backend::config::load_file(&path).map_err(|e| anyhow::anyhow!("{e}"))?.file_layer()
            }
            None => FileLayer {
                layer: shared::policy::PolicyLayer {
                    max_parallel: Some(exec_limits.0),
                    max_per_node: Some(exec_limits.1),
                    ..Default::default()
                },
                named: ["max_parallel", "max_per_node"].into_iter().collect(),
                base: shared::PlanRequest::default(),
            },
        };
        let policy = Arc::new(Policy::new(&work, Some(file)));
        executor.set_limits_source(policy.limits_source());
        maintenance.set_policy(policy.clone());
        let state = AppState::new(pve.clone())
            .with_csrf_key(&sim.csrf_key)
            .with_executor(executor.clone())
            .with_policy(policy)
            .with_maintenance(maintenance.clone())
            .with_history_cache(work.join("history"));
        // CORS trusts this cluster's nodes, read from PVE as `serve` does.
        state.origins.refresh(&pve).await;
        // The usage sampler as `serve` runs it (history for /api/v1/cluster/history).
        let sampler = Arc::new(Sampler::new(
            SamplerConfig::new(5, 1.0).map_err(|e| anyhow::anyhow!("sampler config: {e}"))?,
        ));
        let sampling = sampler.clone().spawn(pve.clone());
        let state = state.with_sampler(sampler);
        let app = router(state.clone(), self.panel);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let backend_url = format!("http://{}", listener.local_addr()?);
        let backend = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Stack {
            sim,
            backend_url,
            pve,
            work,
            _work: scratch,
            executor,
            maintenance,
            state,
            backend,
            sampling,
        })
    }
}

/// `yaml` with its `rebalancer:` sections joined into the last one (a test's own section and
/// the stack's `state_dir`), so the YAML has one key per section.
fn merge_rebalancer(yaml: &str) -> String {
    let mut head = Vec::new();
    let mut ours = Vec::new();
    let mut in_ours = false;
    for line in yaml.lines() {
        if line.starts_with("rebalancer:") {
            in_ours = true;
            continue;
        }
        if in_ours && !line.starts_with(' ') && !line.trim().is_empty() {
            in_ours = false;
        }
        if in_ours {
            ours.push(line)
        } else {
            head.push(line)
        }
    }
    format!("{}\nrebalancer:\n{}\n", head.join("\n"), ours.join("\n"))
}

/// A stand-in for `ha-manager crm-command node-maintenance enable|disable NODE` at
/// `dir/ha-manager`: the simulator's CRM does what PVE's would (moves HA guests off, and back on
/// disable). Each call is appended to `dir/ha-manager.log`; the simulator's CA is written to
/// `dir/sim-ca.pem` for curl.
pub fn ha_manager_stand_in(dir: &Path, sim: &pve_sim::RunningSim) -> PathBuf {
    let ca = dir.join("sim-ca.pem");
    std::fs::write(&ca, &sim.ca_pem).expect("write the simulator's CA");
    let script = dir.join("ha-manager");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
[ "$1 $2" = "crm-command node-maintenance" ] || {{ echo "unexpected arguments: $*" >&2; exit 2; }}
case "$3" in enable) e=true ;; disable) e=false ;; *) echo "bad verb $3" >&2; exit 2 ;; esac
echo "$*" >> "{log}"
exec curl -sS --fail-with-body --max-time 10 --cacert "{ca}" -H 'Content-Type: application/json' \
  -d "{{\"node\":\"$4\",\"enable\":$e}}" "{url}/_sim/ha-maintenance" >/dev/null
"#,
            log = dir.join("ha-manager.log").display(),
            ca = ca.display(),
            url = sim.base_url
        ),
    )
    .expect("write the ha-manager stand-in");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder {
            scenario: None,
            time_scale: 1000.0,
            exec: ExecConfig {
                poll_min: Duration::from_millis(20),
                poll_max: Duration::from_millis(100),
                step_timeout: Duration::from_secs(60),
                ..ExecConfig::default()
            },
            panel: None,
            service_user: ("root@pam".into(), "demo".into()),
            ha_manager: None,
            pve_timeout: Duration::from_secs(10),
            config: None,
        }
    }

    /// The demo cluster, serving the panel when given.
    pub async fn start(panel: Option<PathBuf>) -> anyhow::Result<Stack> {
        Stack::builder().panel(panel).start().await
    }

    /// Logs in at the backend as a PVE user (see [`login`]).
    pub async fn login(&self, user: &str, password: &str) -> anyhow::Result<Session> {
        login(&self.backend_url, user, password).await
    }

    pub async fn stop(self) {
        self.backend.abort();
        self.sampling.abort();
        self.sim.shutdown().await;
    }
}

/// Logs in at the backend at `base` (`http://127.0.0.1:PORT`) as a PVE user: a client that keeps
/// the `PVEAuthCookie`, and the CSRF token to send on writes.
pub async fn login(base: &str, user: &str, password: &str) -> anyhow::Result<Session> {
    let http = reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(30)).build()?;
    let resp = http
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "login as {user} failed: {}", resp.text().await?);
    let body: serde_json::Value = resp.json().await?;
    let csrf = body["CSRFPreventionToken"].as_str().unwrap_or_default().to_owned();
    Ok(Session { http, csrf, base: base.to_owned() })
}

/// A logged-in client of the backend.
pub struct Session {
    pub http: reqwest::Client,
    pub csrf: String,
    base: String,
}

impl Session {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    /// A write, with the CSRF token as PVE's UI sends it.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).header("CSRFPreventionToken", &self.csrf)
    }

    /// `POST /api/v1/plan` with `request`; panics unless a plan comes back.
    pub async fn plan(&self, request: serde_json::Value) -> shared::Plan {
        let resp = self.post("/api/v1/plan").json(&request).send().await.expect("POST /api/v1/plan");
        assert!(resp.status().is_success(), "plan {request}: {}", resp.status());
        resp.json().await.expect("a Plan")
    }

    /// `PUT /api/v1/settings` with `changes`; panics unless they were stored.
    pub async fn put_settings(&self, changes: serde_json::Value) {
        let resp = self.http.put(format!("{}/api/v1/settings", self.base));
        let resp = resp.header("CSRFPreventionToken", &self.csrf).json(&changes).send().await.unwrap();
        assert!(resp.status().is_success(), "settings {changes}: {}", resp.text().await.unwrap_or_default());
    }
}
