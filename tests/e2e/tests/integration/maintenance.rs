//! Node maintenance over real sockets: the simulator (HTTPS), the backend with its executor and a
//! private state directory, PVE auth in front. Enter (preview and for real), status, planning
//! around a node in maintenance, best node, exit with return home, the refusals (read-only user,
//! unknown node, twice, bad JSON), PVE HA maintenance through a stand-in `ha-manager`, and the
//! `pve-rebalancer maintenance` command line.

use backend::execute::ExecConfig;
use serde_json::{json, Value};
use shared::api::{
    ApiError, BestNodeAnswer, JobState, JobView, MaintenanceAnswer, MaintenanceState, NodeMaintenance,
};
use shared::Plan;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Backend {
    stack: e2e::Stack,
    url: String,
    /// Holds the stand-in `ha-manager`, its log, and the CLI tests' files.
    dir: e2e::Scratch,
    /// The stack's maintenance state directory.
    state_dir: PathBuf,
}

impl Backend {
    async fn stop(self) {
        self.stack.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join(backend::maintenance::STATE_FILE)
    }

    /// vmid → node, as the simulator has it.
    fn placement(&self) -> BTreeMap<u32, String> {
        let s = self.stack.sim.state_summary();
        s["guests"]
            .as_object()
            .expect("guests")
            .iter()
            .map(|(id, g)| (id.parse().unwrap(), g["node"].as_str().unwrap().to_owned()))
            .collect()
    }
}

async fn start(tag: &str) -> Backend {
    let dir = e2e::temp_dir(&format!("maint-{tag}"));
    let exec = ExecConfig {
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        step_timeout: Duration::from_secs(30),
        max_parallel: 4,
        max_per_node: 4,
        ..ExecConfig::default()
    };
    let stack =
        e2e::Stack::builder().exec_config(exec).ha_manager(dir.join("ha-manager")).start().await.unwrap();
    e2e::ha_manager_stand_in(&dir, &stack.sim);
    Backend { url: stack.backend_url.clone(), state_dir: stack.work.clone(), dir, stack }
}

struct Client {
    http: reqwest::Client,
    csrf: String,
    base: String,
}

impl Client {
    async fn login(b: &Backend, user: &str, password: &str) -> Client {
        let http =
            reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(60)).build().unwrap();
        let resp = http
            .post(format!("{}/api/v1/login", b.url))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "login as {user}");
        let body: Value = resp.json().await.unwrap();
        let csrf = body["CSRFPreventionToken"].as_str().unwrap_or_default().to_owned();
        Client { http, csrf, base: b.url.clone() }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("CSRFPreventionToken", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("CSRFPreventionToken", &self.csrf)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn node(&self, node: &str) -> NodeMaintenance {
        let (status, v) = self.get(&format!("/api/v1/maintenance/{node}")).await;
        assert_eq!(status, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }

    /// Polls (bounded) until the node's record satisfies `done`.
    async fn wait_node(
        &self,
        node: &str,
        what: &str,
        done: impl Fn(&NodeMaintenance) -> bool,
    ) -> NodeMaintenance {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let m = self.node(node).await;
            if done(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "{node} never became {what}: {m:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn job(&self, id: u64) -> JobView {
        let (status, v) = self.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }
}

fn error(v: Value) -> ApiError {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not an ApiError ({e}): {v}"))
}

fn on(placement: &BTreeMap<u32, String>, node: &str) -> Vec<u32> {
    placement.iter().filter(|(_, n)| *n == node).map(|(v, _)| *v).collect()
}

#[tokio::test]
async fn enter_evacuates_plans_avoid_the_node_and_exit_returns_the_guests_home() {
    let b = start("flow").await;
    let root = Client::login(&b, "root@pam", "demo").await;
    let audit = Client::login(&b, "audit@pve", "audit").await;
    let before = b.placement();
    let on_pve2 = on(&before, "pve2");
    assert!(on_pve2.len() >= 5, "the demo has guests on pve2: {on_pve2:?}");

    // Preview: a plan that empties pve2, and nothing changes.
    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({"preview": true})).await;
    assert_eq!(status, 200, "{v}");
    let preview: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    assert!(preview.preview && preview.job_id.is_none());
    assert_eq!(preview.state.state, MaintenanceState::None);
    assert!(!preview.plan.steps.is_empty());
    // Every guest leaves pve2 (or is reported), and nothing else moves: a rule broken elsewhere
    // is a plan's business, not maintenance's.
    assert!(preview.plan.steps.iter().all(|s| s.from == "pve2"), "{:?}", preview.plan.steps);
    let leaving = preview.plan.steps.iter().filter(|s| s.from == "pve2").count();
    let reported = preview.plan.why_not.iter().filter(|w| w.node == "pve2").count();
    assert_eq!(leaving + reported, on_pve2.len(), "{:?} {:?}", preview.plan.steps, preview.plan.why_not);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.placement(), before, "a preview moved a guest");
    assert!(!b.state_file().exists(), "a preview wrote the state file");
    assert_eq!(root.node("pve2").await.state, MaintenanceState::None);

    // Refusals change nothing: read-only user, unknown node, bad JSON, bad node name.
    let (status, v) = audit.post("/api/v1/maintenance/pve2/enter", json!({})).await;
    assert_eq!(status, 403, "{v}");
    assert!(error(v).detail.contains("Sys.Modify"));
    let (status, v) = audit.post("/api/v1/maintenance/pve2/exit", json!({})).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = root.post("/api/v1/maintenance/pve9/enter", json!({})).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(error(v).field.as_deref(), Some("node"));
    let (status, v) = root.get("/api/v1/maintenance/pve9").await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = root.post_raw("/api/v1/maintenance/pve2/enter", "{\"preview\": tru").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = root.post_raw("/api/v1/maintenance/pve2/enter", "{\"preview\": \"yes\"}").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = root.post("/api/v1/maintenance/pve2/exit", json!({})).await;
    assert_eq!(status, 409, "exit while not in maintenance: {v}");
    assert!(!b.state_file().exists(), "a refused request wrote the state file");
    assert_eq!(b.placement(), before, "a refused request moved a guest");

    // Enter for real: a job like any plan's; entering again is refused.
    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({})).await;
    assert_eq!(status, 202, "{v}");
    let entered: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    let job = entered.job_id.expect("a job");
    assert_eq!(entered.state.state, MaintenanceState::Entering);
    assert_eq!(entered.state.by.as_deref(), Some("root@pam"));
    let leaving: Vec<u32> = entered.plan.steps.iter().filter(|s| s.from == "pve2").map(|s| s.vmid).collect();
    assert_eq!(entered.state.homes.iter().map(|h| h.vmid).collect::<Vec<_>>(), leaving);
    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({})).await;
    assert_eq!(status, 409, "{v}");

    let m = root.wait_node("pve2", "in_maintenance", |m| m.state == MaintenanceState::InMaintenance).await;
    assert_eq!(m.job_id, Some(job));
    assert_eq!(root.job(job).await.job.state, JobState::Done);
    b.stack.sim.check_invariants().expect("every guest exactly once, usage consistent");
    let after = b.placement();
    assert_eq!(after.len(), before.len());
    let stayed = on(&after, "pve2");
    let reported: Vec<u32> = entered.plan.why_not.iter().map(|w| w.vmid).collect();
    for vmid in &stayed {
        assert!(
            reported.contains(vmid),
            "guest {vmid} stayed on pve2 without a reason: {:?}",
            entered.plan.why_not
        );
    }
    for h in &m.homes {
        assert_eq!(h.node, "pve2");
        assert_ne!(after[&h.vmid], "pve2", "guest {} was to leave", h.vmid);
    }
    // The state file is the PVE way: one JSON document, not world-readable.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b.state_file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o137, 0, "state file mode {mode:o}");
    }

    // Status of every node; pve2 is in maintenance.
    let (status, v) = audit.get("/api/v1/maintenance").await;
    assert_eq!(status, 200, "{v}");
    let all: Vec<NodeMaintenance> = serde_json::from_value(v).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|m| (m.node == "pve2") == (m.state == MaintenanceState::InMaintenance)));

    // Planning never targets pve2 now, nor does best node.
    let (status, v) = root.post("/api/v1/plan", json!({"balanciness": 0.0, "min_gain": 0.0})).await;
    assert_eq!(status, 200, "{v}");
    let plan: Plan = serde_json::from_value(v).unwrap();
    assert!(plan.steps.iter().all(|s| s.to != "pve2"), "{:?}", plan.steps);
    let (status, v) =
        audit.post("/api/v1/best-node", json!({"guest": {"cpus": 1.0, "mem_bytes": 1u64 << 30}})).await;
    assert_eq!(status, 200, "{v}");
    let best: BestNodeAnswer = serde_json::from_value(v).unwrap();
    assert_eq!(best.ranks.len(), 4);
    assert!(best.best.as_deref().is_some_and(|n| n != "pve2"), "{best:?}");
    assert!(best.ranks.iter().any(|r| r.node == "pve2" && !r.fits), "{best:?}");
    let (status, v) = audit.post("/api/v1/best-node", json!({"vmid": 99999})).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(error(v).field.as_deref(), Some("vmid"));
    let (status, v) = audit.post("/api/v1/best-node", json!({"vmid": 100, "guest": {}})).await;
    assert_eq!(status, 400, "{v}");

    // Exit, preview first (nothing changes), then with return home.
    let (status, v) =
        root.post("/api/v1/maintenance/pve2/exit", json!({"preview": true, "return_home": true})).await;
    assert_eq!(status, 200, "{v}");
    let exit_preview: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    assert!(exit_preview.plan.steps.iter().all(|s| s.to == "pve2"));
    assert_eq!(root.node("pve2").await.state, MaintenanceState::InMaintenance);
    assert_eq!(b.placement(), after);
    let (status, v) = audit.post("/api/v1/maintenance/pve2/exit", json!({"return_home": true})).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = root.post("/api/v1/maintenance/pve2/exit", json!({"return_home": true})).await;
    assert_eq!(status, 202, "{v}");
    let exited: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    let back = exited.job_id.expect("a return-home job");
    assert_eq!(exited.state.state, MaintenanceState::Exiting);
    // Most guests fit back home (the node was theirs a moment ago).
    assert!(
        exited.plan.steps.len() * 2 >= m.homes.len(),
        "{} of {} return",
        exited.plan.steps.len(),
        m.homes.len()
    );
    root.wait_node("pve2", "cleared", |m| m.state == MaintenanceState::None).await;
    assert_eq!(root.job(back).await.job.state, JobState::Done);
    b.stack.sim.check_invariants().expect("invariants after return home");
    let home = b.placement();
    for s in &exited.plan.steps {
        assert_eq!(home[&s.vmid], "pve2", "guest {} is back home", s.vmid);
    }
    b.stop().await;
}

#[tokio::test]
async fn a_plan_made_before_the_mark_never_moves_a_guest_onto_the_marked_node() {
    let b = start("stale").await;
    let root = Client::login(&b, "root@pam", "demo").await;
    let (status, v) = root.post("/api/v1/plan", json!({"balanciness": 0.0, "min_gain": 0.0})).await;
    assert_eq!(status, 200, "{v}");
    let stale: Plan = serde_json::from_value(v).unwrap();
    // The node the stale plan sends the most guests to goes into maintenance.
    let mut targets: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &stale.steps {
        *targets.entry(s.to.as_str()).or_default() += 1;
    }
    let (node, _) = targets.iter().max_by_key(|(_, n)| **n).expect("the demo plan moves guests");
    let node = node.to_string();
    let (status, v) = root.post(&format!("/api/v1/maintenance/{node}/enter"), json!({})).await;
    assert_eq!(status, 202, "{v}");
    root.wait_node(&node, "in_maintenance", |m| m.state == MaintenanceState::InMaintenance).await;
    let emptied = on(&b.placement(), &node);

    let (status, v) = root.post("/api/v1/plan/execute", json!({"plan": stale})).await;
    assert_eq!(status, 202, "{v}");
    let id = v["job_id"].as_u64().expect("job id");
    let deadline = Instant::now() + Duration::from_secs(90);
    let job = loop {
        let job = root.job(id).await;
        if job.job.state != JobState::Running {
            break job;
        }
        assert!(Instant::now() < deadline, "job {id} never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let into: Vec<_> = job.steps.iter().filter(|s| s.to == node).collect();
    assert!(!into.is_empty());
    for s in &into {
        assert_eq!(s.state, shared::api::StepState::Skipped, "{s:?}");
        let why = s.message.as_deref().unwrap_or_default();
        assert!(why.contains(&format!("{node} is in maintenance")), "{why}");
    }
    assert_eq!(on(&b.placement(), &node), emptied, "a guest moved onto {node} in maintenance");
    b.stack.sim.check_invariants().expect("invariants");
    b.stop().await;
}

#[tokio::test]
async fn the_stored_settings_hold_for_maintenance_plans_and_best_node() {
    let b = start("settings").await;
    let root = Client::login(&b, "root@pam", "demo").await;
    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({"preview": true})).await;
    assert_eq!(status, 200, "{v}");
    let open: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    assert!(
        open.plan.steps.iter().any(|s| s.to == "pve3"),
        "pve3 takes guests by default: {:?}",
        open.plan.steps
    );
    // The admin takes pve3 out of balancing cluster-wide: maintenance must not fill it either.
    let resp = root
        .http
        .put(format!("{}/api/v1/settings", b.url))
        .header("CSRFPreventionToken", &root.csrf)
        .json(&json!({"ignore_nodes": ["pve3"]}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({"preview": true})).await;
    assert_eq!(status, 200, "{v}");
    let closed: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    assert!(!closed.plan.steps.is_empty());
    assert!(closed.plan.steps.iter().all(|s| s.to != "pve3"), "{:?}", closed.plan.steps);
    let (status, v) =
        root.post("/api/v1/best-node", json!({"guest": {"cpus": 1.0, "mem_bytes": 1u64 << 30}})).await;
    assert_eq!(status, 200, "{v}");
    let best: BestNodeAnswer = serde_json::from_value(v).unwrap();
    assert_ne!(best.best.as_deref(), Some("pve3"), "{best:?}");

    // The command line plans with the same stored settings (it shares the state directory).
    let (code, out, err) = cli(&b, &["maintenance", "enter", "--preview", "--json", "pve2"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let by_cli: MaintenanceAnswer = serde_json::from_str(&out).expect("JSON answer");
    assert!(!by_cli.plan.steps.is_empty());
    assert!(by_cli.plan.steps.iter().all(|s| s.to != "pve3"), "{:?}", by_cli.plan.steps);

    // An unreadable settings file: the CLI says which file and why, and marks nothing.
    let settings = b.state_dir.join("settings.json");
    let good = std::fs::read(&settings).expect("the PUT stored the settings");
    std::fs::write(&settings, b"{ not json").unwrap();
    let (code, out, err) = cli(&b, &["maintenance", "enter", "pve2"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("settings.json"), "{err}");
    assert!(!b.state_file().exists(), "a mark was written despite the error");
    std::fs::write(&settings, good).unwrap();
    b.stop().await;
}

#[tokio::test]
async fn ha_maintenance_goes_through_ha_manager_and_the_crm_moves_the_ha_guests() {
    let b = start("ha").await;
    let root = Client::login(&b, "root@pam", "demo").await;
    // vm 201 is HA-managed on pve2 in the demo.
    assert_eq!(b.placement()[&201], "pve2");

    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({"ha": true, "preview": true})).await;
    assert_eq!(status, 200, "{v}");
    let preview: MaintenanceAnswer = serde_json::from_value(v).unwrap();
    assert!(
        preview.plan.steps.iter().all(|s| s.vmid != 201),
        "the CRM moves HA guests: {:?}",
        preview.plan.steps
    );
    assert!(preview.plan.why_not.iter().any(|w| w.vmid == 201), "{:?}", preview.plan.why_not);
    assert!(!b.dir.join("ha-manager.log").exists(), "a preview ran ha-manager");

    let (status, v) = root.post("/api/v1/maintenance/pve2/enter", json!({"ha": true})).await;
    assert_eq!(status, 202, "{v}");
    let log = std::fs::read_to_string(b.dir.join("ha-manager.log")).unwrap();
    assert_eq!(log.trim(), "crm-command node-maintenance enable pve2");
    let m = root
        .wait_node("pve2", "in maintenance with HA", |m| {
            m.state == MaintenanceState::InMaintenance && m.ha_maintenance
        })
        .await;
    assert!(m.ha_requested);
    // PVE's CRM (the simulator's) moved the HA guest; ours moved the rest.
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.placement()[&201] == "pve2" {
        assert!(Instant::now() < deadline, "the CRM never moved vm 201");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.stack.sim.check_invariants().expect("invariants with HA maintenance");

    let (status, v) = root.post("/api/v1/maintenance/pve2/exit", json!({})).await;
    assert!(status == 200 || status == 202, "{status} {v}");
    let log = std::fs::read_to_string(b.dir.join("ha-manager.log")).unwrap();
    assert!(log.trim().ends_with("crm-command node-maintenance disable pve2"), "{log}");
    let cleared = root.wait_node("pve2", "out of maintenance", |m| !m.in_maintenance()).await;
    assert!(!cleared.ha_maintenance);
    // PVE's CRM brings the HA guest back to the node it left for maintenance, on its own time.
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.placement()[&201] != "pve2" {
        assert!(Instant::now() < deadline, "the CRM never brought vm 201 back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A failing ha-manager: a clear 502 and nothing marked.
    std::fs::write(b.dir.join("ha-manager"), "#!/bin/sh\necho 'no quorum' >&2\nexit 3\n").unwrap();
    let before = b.placement();
    let (status, v) = root.post("/api/v1/maintenance/pve3/enter", json!({"ha": true})).await;
    assert_eq!(status, 502, "{v}");
    assert!(error(v).detail.contains("no quorum"));
    assert_eq!(root.node("pve3").await.state, MaintenanceState::None);
    assert_eq!(b.placement(), before);
    b.stop().await;
}

async fn cli(b: &Backend, args: &[&str]) -> (i32, String, String) {
    let ca = b.dir.join("sim-ca.pem");
    let out = tokio::process::Command::new(e2e::service_binary())
        .args(args)
        .args(["--pve-url", &b.stack.sim.base_url, "--pve-ca", ca.to_str().unwrap()])
        .args(["--state-dir", b.state_dir.to_str().unwrap()])
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("the CLI finished").unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn the_command_line_shows_status_and_previews_an_evacuation() {
    let b = start("cli").await;
    let before = b.placement();

    let (code, out, err) = cli(&b, &["maintenance", "status"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NODE") && lines[0].contains("STATE"), "{out}");
    assert_eq!(lines.len(), 5, "header and four nodes: {out}");
    assert!(lines[1..].iter().all(|l| l.split_whitespace().nth(1) == Some("none")), "{out}");

    let (code, out, err) = cli(&b, &["maintenance", "enter", "--preview", "pve2"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("VMID"), "{out}");
    assert!(out.contains("preview: nothing was changed"), "{out}");
    let moves: Vec<&str> = out.lines().skip(1).take_while(|l| l.starts_with(char::is_numeric)).collect();
    assert!(!moves.is_empty(), "{out}");
    assert!(moves.iter().all(|l| l.split_whitespace().nth(4) != Some("pve2")), "{out}");
    assert!(moves.iter().any(|l| l.split_whitespace().nth(3) == Some("pve2")), "{out}");

    let (code, out, err) = cli(&b, &["maintenance", "enter", "--dry-run", "--json", "pve2"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let answer: MaintenanceAnswer = serde_json::from_str(&out).expect("JSON answer");
    assert!(answer.preview && answer.job_id.is_none() && !answer.plan.steps.is_empty());

    let (code, out, err) = cli(&b, &["maintenance", "status", "--json", "pve3"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let m: NodeMaintenance = serde_json::from_str(&out).unwrap();
    assert_eq!((m.node.as_str(), m.state), ("pve3", MaintenanceState::None));

    let (code, out, err) = cli(&b, &["maintenance", "enter", "--preview", "pve9"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("node `pve9` is not in the cluster"), "{err}");

    assert_eq!(b.placement(), before, "previews moved a guest");
    assert!(!b.state_file().exists());
    b.stop().await;
}

#[tokio::test]
async fn the_command_line_applies_a_plan_and_runs_maintenance_to_the_end() {
    let b = start("cli-run").await;
    let journal = b.dir.join("cli-journal.sqlite");
    let lock = b.dir.join("cli-lock");
    let exec = ["--journal", journal.to_str().unwrap(), "--lock-dir", lock.to_str().unwrap()];
    let exec =
        [&exec[..], &["--max-parallel", "4", "--max-per-node", "4", "--step-timeout-secs", "30"]].concat();
    let before = b.placement();

    // apply: plan, execute, wait; the table of steps ends with the job's state.
    let (code, out, err) = cli(&b, &[&["apply", "--balanciness", "5"], &exec[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("VMID"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("job ") && l.ends_with(": done")), "{out}");
    assert_ne!(b.placement(), before, "apply moved nothing");
    b.stack.sim.check_invariants().expect("invariants after apply");

    // enter for real: waits for the evacuation, then the node is in maintenance.
    let (code, out, err) = cli(&b, &[&["maintenance", "enter", "pve4"], &exec[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("job ") && l.ends_with(": done")), "{out}");
    let (code, out, err) = cli(&b, &["maintenance", "status", "--json", "pve4"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let m: NodeMaintenance = serde_json::from_str(&out).unwrap();
    assert_eq!(m.state, MaintenanceState::InMaintenance, "{m:?}");
    assert_eq!(m.by.as_deref(), Some("cli"));
    assert!(!m.homes.is_empty());
    let placed = b.placement();
    for h in &m.homes {
        assert_ne!(placed[&h.vmid], "pve4", "guest {} left", h.vmid);
    }
    // Twice: refused, exit status 1.
    let (code, _, err) = cli(&b, &[&["maintenance", "enter", "pve4"], &exec[..]].concat()).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already in_maintenance"), "{err}");

    // exit with return home: the guests are back and the mark is gone.
    let (code, out, err) =
        cli(&b, &[&["maintenance", "exit", "pve4", "--return-home"], &exec[..]].concat()).await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = cli(&b, &["maintenance", "status", "--json", "pve4"]).await;
    let m2: NodeMaintenance = serde_json::from_str(&out).unwrap();
    assert_eq!(m2.state, MaintenanceState::None, "{m2:?}");
    let home = b.placement();
    assert!(m.homes.iter().filter(|h| home[&h.vmid] == "pve4").count() * 2 >= m.homes.len(), "{home:?}");
    b.stack.sim.check_invariants().expect("invariants after return home");
    b.stop().await;
}
