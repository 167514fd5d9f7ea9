//! Harness for end-to-end tests: a simulated cluster, a backend in front of it, and a WebDriver
//! client for Debian's headless Chromium.
//!
//! Everything binds to 127.0.0.1 on a free port and every wait is bounded.

pub mod webdriver;

use backend::execute::{DirLock, ExecConfig, Executor, Journal};
use backend::http::{router, AppState};
use backend::pve::{Credentials, PveClient, PveOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The built panel. Tests that need it fail (never skip) when it is missing.
pub fn panel_dir() -> PathBuf {
    let dir = workspace_root().join("frontend/dist");
    assert!(
        dir.join("index.html").exists() && dir.join("frontend_bg.wasm").exists(),
        "the panel is not built at {}: run `cargo xtask frontend` (or `cargo xtask test`, which does it)",
        dir.display()
    );
    dir
}

/// A simulator with the demo scenario and a backend serving the API (and the panel).
pub struct Stack {
    pub sim: pve_sim::RunningSim,
    /// `http://127.0.0.1:PORT`
    pub backend_url: String,
    backend: tokio::task::JoinHandle<()>,
}

impl Stack {
    pub async fn start(panel: Option<PathBuf>) -> anyhow::Result<Stack> {
        let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path())?;
        let mut cfg = pve_sim::SimConfig::new(scenario);
        cfg.time_scale = 1000.0;
        let sim = pve_sim::start(cfg).await?;
        let pve = PveClient::new(PveOptions {
            base_url: sim.base_url.clone(),
            credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
            ca_pem: Some(sim.ca_pem.clone()),
            insecure: false,
            timeout: Duration::from_secs(10),
        })?;
        let pve = Arc::new(pve);
        // Execution as in the service, with the journal and lock in a private temp directory.
        let work = std::env::temp_dir().join(format!("pvrb-e2e-{}-{}", std::process::id(), sim.addr.port()));
        std::fs::create_dir_all(&work)?;
        let journal = Journal::open(&work.join("journal.sqlite"))?;
        let exec_cfg = ExecConfig {
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(100),
            step_timeout: Duration::from_secs(60),
            ..ExecConfig::default()
        };
        let executor = Executor::new(
            pve.clone(),
            Arc::new(journal),
            Arc::new(DirLock::new(work.join("lock"))),
            exec_cfg,
        );
        let app = router(AppState::new(pve).with_executor(executor), panel);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let backend_url = format!("http://{}", listener.local_addr()?);
        let backend = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Stack { sim, backend_url, backend })
    }

    /// Logs in at the backend as a PVE user: a client that keeps the `PVEAuthCookie`, and the
    /// CSRF token to send on writes.
    pub async fn login(&self, user: &str, password: &str) -> anyhow::Result<Session> {
        let http = reqwest::Client::builder().cookie_store(true).build()?;
        let resp = http
            .post(format!("{}/api/v1/login", self.backend_url))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "login as {user} failed: {}", resp.text().await?);
        let body: serde_json::Value = resp.json().await?;
        let csrf = body["CSRFPreventionToken"].as_str().unwrap_or_default().to_owned();
        Ok(Session { http, csrf, base: self.backend_url.clone() })
    }

    pub async fn stop(self) {
        self.backend.abort();
        self.sim.shutdown().await;
    }
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
}
