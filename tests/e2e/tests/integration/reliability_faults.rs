//! Fault matrix: the simulator (HTTPS on loopback) + the backend's HTTP API + the executor, with
//! faults armed before or during a plan. Every scenario checks three things:
//!
//! 1. the simulator's invariants (every guest exactly once, on a known node, no stray migrate
//!    lock, no over-committed node): `RunningSim::check_invariants`;
//! 2. the journal's accuracy: every step's final state in `GET /api/v1/jobs/{id}` agrees with
//!    where PVE says the guest is (`done` ⇔ on its target; failed/skipped/cancelled ⇒ not moved
//!    by us; `unknown` only when the executor really could not tell);
//! 3. what the user sees: the state and the message (PVE's words where PVE gave them).
//!
//! Executor timings are short (polls of 10–50 ms, step timeouts of ~1 s) and every wait is
//! bounded. See docs/RELIABILITY.md for the table.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use backend::execute::{DirLock, ExecConfig, Executor, Journal};
use backend::http::{router, AppState};
use e2e::{pve_client, temp_dir, Scratch};
use pve_sim::{FaultSpec, RunningSim};
use serde_json::{json, Value};
use shared::api::{JobState, JobView, StepState};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use test_support::{migrate_posts, plan_of as plan, step, step_message as msg};

// ------------------------------------------------------------------------------------ harness

async fn sim_with(scenario: pve_sim::Scenario, time_scale: f64) -> RunningSim {
    let mut cfg = pve_sim::SimConfig::new(scenario);
    cfg.time_scale = time_scale;
    pve_sim::start(cfg).await.expect("simulator starts")
}

fn demo() -> pve_sim::Scenario {
    pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario")
}

async fn demo_sim(time_scale: f64) -> RunningSim {
    sim_with(demo(), time_scale).await
}

fn fast() -> ExecConfig {
    ExecConfig {
        max_parallel: 2,
        max_per_node: 1,
        step_timeout: Duration::from_secs(15),
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        max_unknown_polls: 20,
        ha_child_wait: Duration::from_secs(5),
        lock_ttl: Duration::from_secs(10),
        read_attempts: 3,
        ..ExecConfig::default()
    }
}

/// The backend (router + executor) on a free loopback port, its service client talking to
/// `pve_base` (the simulator, or a proxy in front of it).
struct Backend {
    url: String,
    server: tokio::task::JoinHandle<()>,
    /// Where its journal lives, removed with the backend (`None`: the test holds the folder).
    _dir: Option<Scratch>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn backend(sim: &RunningSim, pve_base: &str, cfg: ExecConfig, lock_dir: Option<&Path>) -> Backend {
    backend_with_timeout(sim, pve_base, cfg, lock_dir, Duration::from_secs(10)).await
}

async fn backend_with_timeout(
    sim: &RunningSim,
    pve_base: &str,
    cfg: ExecConfig,
    lock_dir: Option<&Path>,
    timeout: Duration,
) -> Backend {
    let pve = pve_client(sim, pve_base, timeout);
    let dir = temp_dir("be");
    let journal = Journal::open(&dir.join("journal.sqlite")).expect("journal");
    let lock = DirLock::new(lock_dir.map_or_else(|| dir.join("lock"), Path::to_path_buf));
    let ex = Executor::new(pve.clone(), Arc::new(journal), Arc::new(lock), cfg);
    // The user's own credentials are checked against the simulator directly.
    let app = router(AppState::new(pve).with_csrf_key(&sim.csrf_key).with_executor(ex), None);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Backend { url, server, _dir: Some(dir) }
}

/// A logged-in user of the backend.
struct User {
    http: reqwest::Client,
    csrf: String,
    base: String,
}

async fn login(b: &Backend, user: &str, password: &str) -> User {
    let http =
        reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(30)).build().unwrap();
    let resp = http
        .post(format!("{}/api/v1/login", b.url))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "login as {user}: {}", resp.status());
    let body: Value = resp.json().await.unwrap();
    User {
        http,
        csrf: body["CSRFPreventionToken"].as_str().unwrap_or_default().to_owned(),
        base: b.url.clone(),
    }
}

async fn root(b: &Backend) -> User {
    login(b, "root@pam", "demo").await
}

impl User {
    /// `POST /api/v1/plan/execute`: (status, body).
    async fn execute(&self, plan: &shared::Plan) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/plan/execute", self.base))
            .header("CSRFPreventionToken", &self.csrf)
            .json(&json!({ "plan": plan }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn start(&self, plan: &shared::Plan) -> u64 {
        let (status, body) = self.execute(plan).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["job_id"].as_u64().expect("job_id")
    }

    async fn job(&self, id: u64) -> JobView {
        let resp = self.http.get(format!("{}/api/v1/jobs/{id}", self.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET /api/v1/jobs/{id}");
        resp.json().await.unwrap()
    }

    /// Polls the job (bounded) until it is no longer running.
    async fn wait(&self, id: u64) -> JobView {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let v = self.job(id).await;
            if v.job.state != JobState::Running {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} still running after 40 s: {v:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls (bounded) until the step of `vmid` has a UPID, i.e. its migration runs.
    async fn wait_submitted(&self, id: u64, vmid: u32) {
        for _ in 0..1000 {
            if step(&self.job(id).await, vmid).upid.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the step of {vmid} was never submitted");
    }

    async fn cancel(&self, id: u64) -> StatusCode {
        self.http
            .post(format!("{}/api/v1/jobs/{id}/cancel", self.base))
            .header("CSRFPreventionToken", &self.csrf)
            .send()
            .await
            .unwrap()
            .status()
    }
}

/// The two checks every scenario ends with: the simulator's invariants, and the journal (as the
/// API reports it) agreeing with where PVE says each guest is.
fn assert_consistent(sim: &RunningSim, v: &JobView) {
    if let Err(violations) = sim.check_invariants() {
        panic!("simulator invariants violated: {violations:?}\njob: {v:#?}");
    }
    for s in &v.steps {
        let at = sim.guest_node(s.vmid);
        match s.state {
            StepState::Done => {
                assert_eq!(at.as_deref(), Some(s.to.as_str()), "journal says done, PVE disagrees: {s:?}")
            }
            StepState::Failed | StepState::Skipped | StepState::Cancelled => {
                assert_ne!(
                    at.as_deref(),
                    Some(s.to.as_str()),
                    "journal says not moved, PVE has it moved: {s:?}"
                );
                // Where the message names the guest's location, it must be right.
                if let (Some(m), Some(node)) = (&s.message, &at) {
                    if let Some(rest) = m.split("still on ").nth(1) {
                        assert!(rest.starts_with(node.as_str()), "message says {m:?}, PVE says {node}");
                    }
                }
            }
            StepState::Unknown => {}
            StepState::Queued | StepState::Running => {
                panic!("job ended with a step still {:?}: {s:?}", s.state)
            }
        }
        if s.state != StepState::Queued {
            assert!(s.finished_at.is_some(), "{s:?}");
        }
    }
}

async fn arm(sim: &RunningSim, f: FaultSpec) {
    sim.arm_fault(&f).expect("fault armed");
}

/// Someone else migrates a guest through PVE (not this job), and it lands (bounded wait).
async fn manual_migration(sim: &RunningSim, vmid: u32, from: &str, to: &str) {
    let pve = pve_client(sim, &sim.base_url, Duration::from_secs(10));
    let form = [("target", to.to_string()), ("online", "1".to_string())];
    pve.post(&format!("/nodes/{from}/qemu/{vmid}/migrate"), &form).await.expect("manual migration");
    // Until its task has ended: PVE moves the guest's config to the target before it drops the
    // migration lock, and a step that came in between would (rightly) be refused as locked.
    let landed =
        || sim.with_cluster(|c| c.guests.get(&vmid).is_some_and(|g| g.node == to && g.lock.is_none()));
    for _ in 0..3000 {
        if landed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("manual migration of {vmid} did not land on {to} and end within 30 s");
}

// ------------------------------------------------------------------------------- the matrix

#[tokio::test]
async fn f01_task_error_fails_the_step_with_pves_text_and_skips_dependents() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::TaskError { vmid: Some(104), count: 1, message: "copy failed: broken pipe".into() })
        .await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (103, "qemu", "pve1", "pve3", &[0])])).await;
    let v = u.wait(id).await;
    assert_eq!(v.job.state, JobState::Failed);
    assert_eq!(step(&v, 104).state, StepState::Failed);
    assert_eq!(msg(&v, 104), "copy failed: broken pipe (guest still on pve1)");
    assert_eq!(step(&v, 103).state, StepState::Skipped);
    assert_eq!(migrate_posts(&sim), 1);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f02_task_hang_times_out_and_the_task_is_stopped() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::TaskHang { vmid: Some(105), count: 1 }).await;
    let b =
        backend(&sim, &sim.base_url, ExecConfig { step_timeout: Duration::from_millis(700), ..fast() }, None)
            .await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(105, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    let m = msg(&v, 105);
    assert_eq!(step(&v, 105).state, StepState::Failed, "{v:#?}");
    assert!(m.starts_with("timed out after 1 s; stopped task UPID:"), "{m}");
    assert!(m.contains("guest still on pve1"), "{m}");
    let stops =
        sim.request_stats().iter().filter(|(k, _)| k.starts_with("DELETE")).map(|(_, n)| *n).sum::<u64>();
    assert_eq!(stops, 1, "exactly one DELETE of the task");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f03_user_cancel_over_http_stops_a_hung_task_and_starts_nothing_more() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::TaskHang { vmid: Some(104), count: 1 }).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (103, "qemu", "pve1", "pve4", &[0])])).await;
    u.wait_submitted(id, 104).await;
    assert_eq!(u.cancel(id).await, StatusCode::ACCEPTED);
    let v = u.wait(id).await;
    assert_eq!(v.job.state, JobState::Cancelled);
    assert_eq!(step(&v, 104).state, StepState::Cancelled);
    assert_eq!(step(&v, 103).state, StepState::Cancelled);
    assert_eq!(migrate_posts(&sim), 1);
    assert_eq!(u.cancel(id).await, StatusCode::CONFLICT, "an ended job cannot be cancelled");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f04_slow_api_still_completes() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::Latency { ms: 150, path_prefix: None }).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[])])).await;
    let v = u.wait(id).await;
    assert_eq!(v.job.state, JobState::Done, "{v:#?}");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f05_api_slower_than_the_client_timeout_fails_before_submitting() {
    let sim = demo_sim(1000.0).await;
    let b = backend_with_timeout(&sim, &sim.base_url, fast(), None, Duration::from_millis(400)).await;
    let u = root(&b).await;
    arm(&sim, FaultSpec::Latency { ms: 1500, path_prefix: Some("/cluster/resources".into()) }).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Failed, "{v:#?}");
    assert!(msg(&v, 104).starts_with("could not read the cluster state; nothing submitted"), "{v:#?}");
    assert_eq!(migrate_posts(&sim), 0);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f06_a_burst_of_gateway_errors_on_reads_is_retried() {
    let sim = demo_sim(1000.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    // Two 503s on the cluster view: below read_attempts (3), so the step goes on.
    arm(
        &sim,
        FaultSpec::ErrorBurst { count: 2, status: 503, path_prefix: Some("/cluster/resources".into()) },
    )
    .await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Done, "{v:#?}");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f07_a_pve_500_on_the_cluster_view_is_a_refusal_and_nothing_is_submitted() {
    let sim = demo_sim(1000.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    arm(
        &sim,
        FaultSpec::ErrorBurst { count: 1, status: 500, path_prefix: Some("/cluster/resources".into()) },
    )
    .await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Failed, "{v:#?}");
    assert!(msg(&v, 104).contains("nothing submitted") && msg(&v, 104).contains("HTTP 500"), "{v:#?}");
    assert_eq!(migrate_posts(&sim), 0);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f08_5xx_while_polling_the_task_is_ridden_out() {
    let sim = demo_sim(50.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    u.wait_submitted(id, 104).await;
    arm(&sim, FaultSpec::ErrorBurst { count: 8, status: 502, path_prefix: Some("/nodes/pve1/tasks".into()) })
        .await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Done, "{v:#?}");
    assert_eq!(migrate_posts(&sim), 1, "never re-submitted");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f09_losing_the_task_status_for_good_is_recorded_unknown_with_the_guests_location() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::TaskHang { vmid: Some(104), count: 1 }).await;
    let cfg = ExecConfig { max_unknown_polls: 3, ..fast() };
    let b = backend(&sim, &sim.base_url, cfg, None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    u.wait_submitted(id, 104).await;
    arm(
        &sim,
        FaultSpec::ErrorBurst { count: 1000, status: 502, path_prefix: Some("/nodes/pve1/tasks".into()) },
    )
    .await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Unknown, "{v:#?}");
    let m = msg(&v, 104);
    assert!(m.starts_with("lost track of task UPID:") && m.contains("guest still on pve1"), "{m}");
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve1"));
    // The hung task still holds the migrate lock: honest `unknown`, not a false `failed`.
    sim.with_cluster(|c| c.guests.get_mut(&104).map(|g| g.lock.clone())).flatten().expect("lock still held");
    sim.shutdown().await;
}

// ---- dropped connections: a TCP proxy between the backend and the simulator that can cut
// every open connection and refuse the next few.

struct DropProxy {
    url: String,
    cut: tokio::sync::watch::Sender<u64>,
    refuse: Arc<AtomicUsize>,
}

impl DropProxy {
    async fn start(target: SocketAddr) -> DropProxy {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let refuse = Arc::new(AtomicUsize::new(0));
        let (cut2, refuse2) = (cut.clone(), refuse.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if refuse2.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    drop(inbound);
                    continue;
                }
                let mut rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        DropProxy { url, cut, refuse }
    }

    /// Cuts every open connection and refuses the next `n` new ones.
    fn drop_connections(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }
}

#[tokio::test]
async fn f10_dropped_connections_mid_migration_are_survived_without_resubmitting() {
    let sim = demo_sim(50.0).await;
    let proxy = DropProxy::start(sim.addr).await;
    let b = backend(&sim, &proxy.url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[0])])).await;
    u.wait_submitted(id, 104).await;
    proxy.drop_connections(3);
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.drop_connections(2);
    let v = u.wait(id).await;
    assert_eq!(v.job.state, JobState::Done, "{v:#?}");
    assert_eq!(migrate_posts(&sim), 2, "one submission per step, none repeated");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f11_target_node_goes_offline_mid_plan() {
    let sim = demo_sim(50.0).await;
    let b = backend(&sim, &sim.base_url, ExecConfig { max_parallel: 1, ..fast() }, None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[])])).await;
    u.wait_submitted(id, 104).await;
    arm(&sim, FaultSpec::NodeOffline { node: "pve4".into(), online: false }).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Done, "{v:#?}");
    assert_eq!(step(&v, 111).state, StepState::Skipped, "{v:#?}");
    assert_eq!(msg(&v, 111), "target node pve4 is offline");
    assert_eq!(v.job.state, JobState::Partial);
    assert_eq!(migrate_posts(&sim), 1);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f12_source_node_offline_nothing_is_submitted() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::NodeOffline { node: "pve2".into(), online: false }).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(204, "qemu", "pve2", "pve3", &[])])).await;
    let v = u.wait(id).await;
    assert!(matches!(step(&v, 204).state, StepState::Skipped | StepState::Failed), "{v:#?}");
    assert!(!msg(&v, 204).is_empty());
    assert_eq!(migrate_posts(&sim), 0, "no migration from an offline node");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f13_guest_locked_before_its_step() {
    let sim = demo_sim(50.0).await;
    let b = backend(&sim, &sim.base_url, ExecConfig { max_parallel: 1, ..fast() }, None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[])])).await;
    u.wait_submitted(id, 104).await;
    arm(&sim, FaultSpec::GuestLock { vmid: 111, lock: Some("backup".into()) }).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Done, "{v:#?}");
    assert_eq!(step(&v, 111).state, StepState::Skipped);
    assert_eq!(msg(&v, 111), "guest is locked (backup)");
    assert_eq!(migrate_posts(&sim), 1);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f14_guest_deleted_mid_plan() {
    let sim = demo_sim(50.0).await;
    let b = backend(&sim, &sim.base_url, ExecConfig { max_parallel: 1, ..fast() }, None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[])])).await;
    u.wait_submitted(id, 104).await;
    arm(&sim, FaultSpec::GuestDelete { vmid: 111 }).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 111).state, StepState::Skipped, "{v:#?}");
    assert_eq!(msg(&v, 111), "guest 111 no longer exists");
    assert_eq!(sim.guest_node(111), None);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f15_guest_moved_by_someone_else_mid_plan() {
    let sim = demo_sim(50.0).await;
    let b = backend(&sim, &sim.base_url, ExecConfig { max_parallel: 1, ..fast() }, None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[])])).await;
    u.wait_submitted(id, 104).await;
    manual_migration(&sim, 111, "pve1", "pve2").await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 111).state, StepState::Skipped, "{v:#?}");
    assert_eq!(msg(&v, 111), "guest is on pve2 now, not on pve1 as planned (moved outside this job)");
    assert_eq!(sim.guest_node(111).as_deref(), Some("pve2"));
    assert_eq!(migrate_posts(&sim), 2, "ours for 104, the other one's for 111");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f16_capacity_changed_so_the_step_no_longer_fits_is_skipped() {
    let sim = demo_sim(1000.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    // Planned: 104 (12 GiB, 8.4 GiB used) pve1 → pve4 (64 GiB, ~37 GiB used). Before it runs,
    // someone moves analytics (32 GiB, 22.4 GiB used) onto pve4: 104 no longer fits there.
    manual_migration(&sim, 301, "pve3", "pve4").await;
    sim.check_invariants().expect("still fits after the manual move");
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve4", &[])])).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 104).state, StepState::Skipped, "{v:#?}");
    assert!(msg(&v, 104).contains("memory"), "the reason names the memory: {v:#?}");
    assert_eq!(migrate_posts(&sim), 1, "only the manual migration");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f17_ha_guest_hamigrate_then_qmigrate_succeeds() {
    let sim = demo_sim(1000.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(201, "qemu", "pve2", "pve3", &[])])).await;
    let v = u.wait(id).await;
    let s = step(&v, 201);
    assert_eq!(s.state, StepState::Done, "{v:#?}");
    assert!(s.upid.as_deref().is_some_and(|x| x.contains(":hamigrate:201:")), "{s:?}");
    assert!(s.task_upid.as_deref().is_some_and(|x| x.contains(":qmigrate:201:")), "{s:?}");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f18_ha_guest_whose_qmigrate_fails_is_failed_with_pves_text() {
    let sim = demo_sim(1000.0).await;
    arm(&sim, FaultSpec::TaskError { vmid: Some(201), count: 1, message: "migration aborted".into() }).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(201, "qemu", "pve2", "pve3", &[])])).await;
    let v = u.wait(id).await;
    let s = step(&v, 201);
    assert_eq!(s.state, StepState::Failed, "{v:#?}");
    assert!(msg(&v, 201).contains("migration aborted"), "{v:#?}");
    assert!(msg(&v, 201).contains("still on pve2"), "{v:#?}");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f19_ticket_expiry_during_a_long_plan_is_survived() {
    let sim = demo_sim(50.0).await;
    let b = backend(&sim, &sim.base_url, ExecConfig { max_parallel: 1, ..fast() }, None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (111, "qemu", "pve1", "pve4", &[])])).await;
    u.wait_submitted(id, 104).await;
    // Every ticket issued so far becomes invalid, the service's own included (PVE: 2 h lifetime).
    arm(&sim, FaultSpec::ExpireTickets).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The user logs in again (their old cookie is refused by PVE, hence by us).
    let u2 = root(&b).await;
    let v = u2.wait(id).await;
    assert_eq!(v.job.state, JobState::Done, "the service logs in again and carries on: {v:#?}");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

#[tokio::test]
async fn f19b_an_expired_user_ticket_is_refused_by_the_backend() {
    let sim = demo_sim(1000.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    // A ticket PVE issued, then expired before the backend ever saw it (the backend caches a
    // verified credential for auth::CACHE_TTL, so only an unseen one shows PVE's verdict at once).
    let pve = pve_client(&sim, &sim.base_url, Duration::from_secs(5));
    let fresh = pve.login_user("root@pam", "demo").await.expect("login at PVE");
    let ticket = fresh["ticket"].as_str().unwrap().to_owned();
    arm(&sim, FaultSpec::ExpireTickets).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/jobs", b.url))
        .header("Cookie", format!("PVEAuthCookie={}", backend::pve::escape_cookie(&ticket)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "not logged in", "{body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn f20_two_backends_racing_for_the_cluster_lock() {
    let sim = demo_sim(50.0).await;
    let lock_dir = temp_dir("shared-lock");
    let (b1, b2) = tokio::join!(
        backend(&sim, &sim.base_url, fast(), Some(&lock_dir)),
        backend(&sim, &sim.base_url, fast(), Some(&lock_dir))
    );
    let (u1, u2) = tokio::join!(root(&b1), root(&b2));
    let p = plan(&[(104, "qemu", "pve1", "pve3", &[])]);
    let ((s1, r1), (s2, r2)) = tokio::join!(u1.execute(&p), u2.execute(&p));
    let (winner, loser_body, won) = match (s1, s2) {
        (StatusCode::ACCEPTED, StatusCode::CONFLICT) => (&u1, r2, r1),
        (StatusCode::CONFLICT, StatusCode::ACCEPTED) => (&u2, r1, r2),
        other => panic!("exactly one backend may execute: {other:?} {r1} {r2}"),
    };
    assert!(loser_body["detail"].as_str().unwrap_or("").contains("another executor holds the cluster lock"));
    let id = won["job_id"].as_u64().unwrap();
    let v = winner.wait(id).await;
    assert_eq!(v.job.state, JobState::Done);
    assert_eq!(migrate_posts(&sim), 1, "one migration, not two");
    assert_consistent(&sim, &v);
    // The loser's journal has no job at all.
    let other = if std::ptr::eq(winner, &u1) { &u2 } else { &u1 };
    let jobs: Value =
        other.http.get(format!("{}/api/v1/jobs", other.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs, json!([]));
    sim.shutdown().await;
}

/// Mounts a tmpfs of `kib` KiB at `dir` (the tests run as root here; see docs/RELIABILITY.md).
fn mount_tmpfs(dir: &Path, kib: u32, extra: &str) {
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k{extra}"), "tmpfs"])
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mounting a tmpfs needs root (CAP_SYS_ADMIN): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unmounts (lazily if a just-aborted server still holds the journal open).
fn umount(dir: &Path) {
    let ok = std::process::Command::new("umount").arg(dir).stderr(std::process::Stdio::null()).status();
    if !ok.is_ok_and(|s| s.success()) {
        let _ = std::process::Command::new("umount").arg("-l").arg(dir).status();
    }
}

#[tokio::test]
async fn f21_journal_on_a_readonly_filesystem_is_a_clear_error() {
    let dir = temp_dir("ro");
    mount_tmpfs(&dir, 256, ",ro");
    let err = Journal::open(&dir.join("journal.sqlite")).err();
    umount(&dir);
    let err = err.expect("opening a journal on a read-only filesystem must fail").to_string();
    assert!(
        err.to_lowercase().contains("read-only")
            || err.contains("readonly")
            || err.contains("unable to open"),
        "{err}"
    );
    assert!(err.contains("journal.sqlite"), "the error names the file: {err}");
}

#[tokio::test]
async fn f22_journal_on_a_full_disk_refuses_the_job_and_submits_nothing() {
    let sim = demo_sim(1000.0).await;
    let dir = temp_dir("full");
    mount_tmpfs(&dir, 512, "");
    let pve = pve_client(&sim, &sim.base_url, Duration::from_secs(10));
    let journal = Journal::open(&dir.join("journal.sqlite")).expect("journal fits at first");
    let lock = temp_dir("full-lock");
    let ex =
        Executor::new(pve.clone(), Arc::new(journal), Arc::new(DirLock::new(lock.to_path_buf())), fast());
    let app = router(AppState::new(pve).with_csrf_key(&sim.csrf_key).with_executor(ex), None);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let b = Backend { url, server, _dir: None };
    let u = root(&b).await;
    // Fill the disk.
    let filler = dir.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
        let _ = f.sync_all();
    }
    let (status, body) = u.execute(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    let outcome = (status, body.clone());
    // Space again: the service works, and no half-written job is left behind.
    std::fs::remove_file(&filler).unwrap();
    let jobs: Value =
        u.http.get(format!("{}/api/v1/jobs", b.url)).send().await.unwrap().json().await.unwrap();
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    drop(b);
    umount(&dir);
    assert_eq!(outcome.0, StatusCode::INTERNAL_SERVER_ERROR, "{}", outcome.1);
    assert_eq!(outcome.1["error"], "the execution journal failed", "{}", outcome.1);
    assert!(outcome.1["detail"].as_str().unwrap_or("").to_lowercase().contains("full"), "{}", outcome.1);
    assert_eq!(jobs, json!([]), "no half-written job");
    assert_eq!(v.job.state, JobState::Done, "{v:#?}");
    assert_eq!(migrate_posts(&sim), 1, "nothing was submitted while the journal could not record it");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

// ---- PVE 8 vs 9: a recording reverse proxy (plain HTTP in, HTTPS to the simulator) shows the
// form the executor sends.

#[derive(Clone)]
struct Recorder {
    sim_url: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn record_and_forward(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(axum::http::HeaderName, String); 1], Bytes) {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    r.seen.lock().unwrap().push((
        method.to_string(),
        path.clone(),
        String::from_utf8_lossy(&body).into_owned(),
    ));
    let mut req = r.http.request(method, format!("{}{path}", r.sim_url)).body(body.to_vec());
    for name in ["cookie", "csrfpreventiontoken", "content-type", "authorization"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.as_bytes());
        }
    }
    let resp = req.send().await.expect("simulator answers");
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    (status, [(axum::http::header::CONTENT_TYPE, ct)], resp.bytes().await.unwrap_or_default())
}

async fn recorder(sim: &RunningSim) -> (String, Arc<Mutex<Vec<(String, String, String)>>>) {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let r = Recorder { sim_url: sim.base_url.clone(), http, seen: seen.clone() };
    let app = axum::Router::new().fallback(record_and_forward).with_state(r);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

async fn migrate_form_on(version: &str) -> (JobView, String, RunningSim) {
    let mut sc = demo();
    sc.version = version.into();
    if !version.starts_with('9') {
        sc.ha_rules.clear();
    }
    let sim = sim_with(sc, 1000.0).await;
    let (url, seen) = recorder(&sim).await;
    let b = backend(&sim, &url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(104, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    let form = seen
        .lock()
        .unwrap()
        .iter()
        .find(|(m, p, _)| m == "POST" && p.ends_with("/qemu/104/migrate"))
        .map(|(_, _, body)| body.clone())
        .expect("the migrate POST went through the recorder");
    (v, form, sim)
}

#[tokio::test]
async fn f23_pve9_gets_with_conntrack_state_and_pve8_does_not() {
    let (v9, form9, sim9) = migrate_form_on("9.1.2").await;
    assert_eq!(step(&v9, 104).state, StepState::Done, "{v9:#?}");
    assert!(form9.contains("with-conntrack-state=1") && form9.contains("online=1"), "{form9}");
    assert_consistent(&sim9, &v9);
    sim9.shutdown().await;

    let (v8, form8, sim8) = migrate_form_on("8.4.1").await;
    assert_eq!(step(&v8, 104).state, StepState::Done, "PVE 8 must accept our call: {v8:#?}");
    assert!(!form8.contains("conntrack") && form8.contains("online=1"), "{form8}");
    assert_consistent(&sim8, &v8);
    sim8.shutdown().await;
}

#[tokio::test]
async fn f24_pves_precondition_refusal_is_skipped_with_its_reason() {
    let sim = demo_sim(1000.0).await;
    let b = backend(&sim, &sim.base_url, fast(), None).await;
    let u = root(&b).await;
    let id = u.start(&plan(&[(109, "qemu", "pve1", "pve3", &[]), (104, "qemu", "pve1", "pve3", &[])])).await;
    let v = u.wait(id).await;
    assert_eq!(step(&v, 109).state, StepState::Skipped);
    assert!(msg(&v, 109).contains("hostpci0"), "{v:#?}");
    assert_eq!(step(&v, 104).state, StepState::Done);
    assert_eq!(migrate_posts(&sim), 1);
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}

// ------------------------------------------------------------------ the real service process
//
// f25/f26 run the built `pve-rebalancer` binary (target/debug) as a separate process, in front
// of a recording proxy so every migrate POST is counted per guest.

/// `POST …/{vmid}/migrate` calls the recorder saw, per vmid.
fn migrate_posts_per_guest(
    seen: &Mutex<Vec<(String, String, String)>>,
) -> std::collections::BTreeMap<u32, usize> {
    let mut out = std::collections::BTreeMap::new();
    for (m, p, _) in seen.lock().unwrap().iter() {
        let parts: Vec<&str> = p.split('/').collect();
        if m == "POST" && parts.last() == Some(&"migrate") && parts.len() >= 2 {
            if let Ok(vmid) = parts[parts.len() - 2].parse::<u32>() {
                *out.entry(vmid).or_default() += 1;
            }
        }
    }
    out
}

async fn job_at(u: &e2e::Session, id: u64) -> JobView {
    let resp = u.get(&format!("/api/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f25_service_killed_mid_plan_reconciles_after_restart_and_never_resubmits() {
    // 104 carries 8.4 GiB: ≈ 9 simulated seconds of migration, ≈ 2 s real at 4×.
    let sim = demo_sim(4.0).await;
    let (pve_url, seen) = recorder(&sim).await;
    let dir = temp_dir("kill");
    let (mut first, url) = e2e::service::spawn_at(&dir, &sim, &pve_url, "journal.sqlite", &[], &[]).await;
    let u = e2e::login(&url, "root@pam", "demo").await.unwrap();
    let resp = u
        .post("/api/v1/plan/execute")
        .json(&json!({"plan": plan(&[(104, "qemu", "pve1", "pve3", &[]), (105, "qemu", "pve1", "pve3", &[0])])}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let id = resp.json::<Value>().await.unwrap()["job_id"].as_u64().unwrap();
    // Kill while 104's migration runs in PVE (submitted, lock held, not landed).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !migrate_posts_per_guest(&seen).contains_key(&104) {
        assert!(Instant::now() < deadline, "104's migration was never submitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve1"), "killed too late: 104 already landed");
    first.start_kill().expect("SIGKILL"); // tokio's kill is SIGKILL: no shutdown code runs
    let status = tokio::time::timeout(Duration::from_secs(10), first.wait()).await.unwrap().unwrap();
    assert!(!status.success(), "{status}");

    let (second, url) = e2e::service::spawn_at(&dir, &sim, &pve_url, "journal.sqlite", &[], &[]).await;
    let u = e2e::login(&url, "root@pam", "demo").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let v = loop {
        let v = job_at(&u, id).await;
        if v.job.state != JobState::Running {
            break v;
        }
        assert!(Instant::now() < deadline, "the interrupted job was not reconciled within 40 s: {v:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(v.job.state, JobState::Interrupted, "{v:#?}");
    assert_eq!(step(&v, 104).state, StepState::Done, "followed to its end after the restart: {v:#?}");
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve3"));
    assert_eq!(step(&v, 105).state, StepState::Cancelled, "{v:#?}");
    assert!(msg(&v, 105).contains("nothing is re-submitted"), "{}", msg(&v, 105));
    // Give a wrongly re-submitting service time to do it, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = migrate_posts_per_guest(&seen);
    assert_eq!(posts.get(&104), Some(&1), "104 submitted once, ever: {posts:?}");
    assert_eq!(posts.get(&105), None, "105 never submitted: {posts:?}");
    assert_consistent(&sim, &v);
    drop(second);
    sim.shutdown().await;
}

/// A ProxLB-style daemon config for `sim` (journal, lock and CA in `dir`) with `extra` appended.
fn daemon_config(sim: &RunningSim, dir: &Path, extra: &str) -> String {
    format!(
        "proxmox_api:\n  hosts: ['{addr}']\n  user: root@pam\n  pass: demo\n  timeout: 10\n\
         service:\n  daemon: true\n  schedule:\n    interval: 0.05\n    format: minutes\n\
         rebalancer:\n  ca_file: {dir}/ca.pem\n  journal: {dir}/journal.sqlite\n  lock_dir: {dir}/lock\n\
         {extra}",
        addr = sim.addr,
        dir = dir.display(),
    )
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f26_sighup_while_the_daemon_executes_a_plan_reloads_only_after_the_job() {
    use std::os::unix::fs::PermissionsExt;
    let sim = demo_sim(10.0).await;
    let dir = temp_dir("hup");
    std::fs::write(dir.join("ca.pem"), &sim.ca_pem).unwrap();
    let cfg = dir.join("proxlb.yaml");
    let write = |text: String| {
        std::fs::write(&cfg, text).unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write(daemon_config(
        &sim,
        &dir,
        "balancing:\n  enable: true\n  balance_types: ['vm', 'ct']\n  parallel: true\n  parallel_jobs: 2\n",
    ));
    let stderr_path = dir.join("stderr.log");
    let mut child = tokio::process::Command::new(e2e::service_binary())
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start the daemon");
    let pid = child.id().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while migrate_posts(&sim) == 0 {
        assert!(Instant::now() < deadline, "the daemon never started a migration");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The next run must use this: pve4 drained, but balancing off, so it is only planned.
    write(daemon_config(
        &sim,
        &dir,
        "balancing:\n  enable: false\nproxmox_cluster:\n  maintenance_nodes: ['pve4*']\n",
    ));
    let kill = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(kill("-HUP").success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if log.contains("not migrating") {
            break;
        }
        assert!(Instant::now() < deadline, "no run with the reloaded configuration:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kill("-TERM").success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("stops").unwrap();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"));
    // The signal arrived mid-job; the job ran to its end; only the next run reloaded.
    assert!(at("execution started") < at("SIGHUP"), "{log}");
    assert!(at("SIGHUP") < at("execution ended"), "SIGHUP came after the job:\n{log}");
    assert!(at("execution ended") < at("configuration reloaded"), "{log}");
    assert!(at("configuration reloaded") < at("not migrating: balancing.enable is false"), "{log}");
    assert_eq!(log.matches("execution started").count(), 1, "{log}");
    let journal = Journal::open(&dir.join("journal.sqlite")).unwrap();
    let v = journal.job(1).unwrap().expect("job 1");
    assert!(journal.job(2).unwrap().is_none(), "nothing executed after the reload");
    assert_eq!(v.job.state, JobState::Done, "{v:#?}");
    let submitted = v.steps.iter().filter(|s| s.upid.is_some()).count() as u64;
    assert_eq!(migrate_posts(&sim), submitted, "one POST per submitted step, none repeated: {v:#?}");
    assert_consistent(&sim, &v);
    sim.shutdown().await;
}
