//! Issue 22: a node's maintenance state follows what is on it. When the evacuation ends without
//! emptying the node (cancelled, the service killed with SIGKILL mid-evacuation, a target gone
//! offline), the node is not `in_maintenance` while a running guest that can move is on it: it
//! stays `entering` or becomes `failed`, and the HTTP view and `maintenance status` say why.

use backend::execute::ExecConfig;
use serde_json::{json, Value};
use shared::api::{JobState, JobView, MaintenanceState, NodeMaintenance};
use std::path::Path;
use std::time::{Duration, Instant};

/// One migration at a time, so the evacuation of pve2 lasts long enough to interrupt.
fn one_at_a_time() -> ExecConfig {
    ExecConfig {
        poll_min: Duration::from_millis(10),
        poll_max: Duration::from_millis(50),
        step_timeout: Duration::from_secs(60),
        max_parallel: 1,
        max_per_node: 1,
        ..ExecConfig::default()
    }
}

/// Running guests on `node`, as the simulator has them.
fn running_on(sim: &pve_sim::RunningSim, node: &str) -> Vec<u32> {
    let s = sim.state_summary();
    let guests = s["guests"].as_object().expect("guests");
    let mut out: Vec<u32> = guests
        .iter()
        .filter(|(_, g)| g["node"] == node && g["status"] == "running")
        .map(|(id, _)| id.parse().unwrap())
        .collect();
    out.sort_unstable();
    out
}

/// The invariant: `in_maintenance` only when every running guest on the node is listed as
/// staying; otherwise the guests that can move are listed, and each is really there.
fn assert_truthful(sim: &pve_sim::RunningSim, m: &NodeMaintenance) {
    let on = running_on(sim, &m.node);
    if m.state == MaintenanceState::InMaintenance {
        let staying: Vec<u32> = m.staying.iter().map(|w| w.vmid).collect();
        let movable: Vec<&u32> = on.iter().filter(|v| !staying.contains(v)).collect();
        assert!(movable.is_empty(), "in_maintenance with movable guests {movable:?} on it: {m:#?}");
    }
    for v in &m.remaining {
        assert!(on.contains(v), "{v} listed as remaining but not running on {}: {on:?}", m.node);
    }
}

async fn node_record(u: &e2e::Session, node: &str) -> NodeMaintenance {
    let r = u.get(&format!("/api/v1/maintenance/{node}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn job(u: &e2e::Session, id: u64) -> JobView {
    let r = u.get(&format!("/api/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls (bounded) until job `id` has ended.
async fn ended(u: &e2e::Session, id: u64) -> JobView {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = job(u, id).await;
        if v.job.state != JobState::Running {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} never ended: {v:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls (bounded) until the node's record has left `entering` with a running job (its job's end
/// was read), checking the invariant at every read.
async fn settled(u: &e2e::Session, sim: &pve_sim::RunningSim, node: &str) -> NodeMaintenance {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = node_record(u, node).await;
        assert_truthful(sim, &m);
        if m.reason.is_some() || m.state != MaintenanceState::Entering {
            return m;
        }
        assert!(Instant::now() < deadline, "{node}'s mark never settled: {m:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn enter(u: &e2e::Session, node: &str) -> (u64, Value) {
    let r = u.post(&format!("/api/v1/maintenance/{node}/enter")).json(&json!({})).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{status} {v}");
    (v["job_id"].as_u64().expect("a job"), v)
}

/// Waits (bounded) until the first migration of job `id` is under way.
async fn first_step_running(u: &e2e::Session, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = job(u, id).await;
        if v.steps.iter().any(|s| s.upid.is_some()) {
            return;
        }
        assert!(Instant::now() < deadline, "no step was submitted: {v:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_then_cancel_leaves_the_node_entering_with_its_guests_named() {
    let stack = e2e::Stack::builder().time_scale(2.0).exec_config(one_at_a_time()).start().await.unwrap();
    let root = stack.login("root@pam", "demo").await.unwrap();
    assert!(running_on(&stack.sim, "pve2").len() >= 4);
    let (id, _) = enter(&root, "pve2").await;
    first_step_running(&root, id).await;
    let r = root.post(&format!("/api/v1/jobs/{id}/cancel")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(ended(&root, id).await.job.state, JobState::Cancelled);

    let m = settled(&root, &stack.sim, "pve2").await;
    assert_eq!(m.state, MaintenanceState::Entering, "{m:#?}");
    assert!(!m.remaining.is_empty(), "{m:#?}");
    let reason = m.reason.as_deref().unwrap();
    assert!(reason.contains(&format!("job {id} was cancelled")) && reason.contains("can move"), "{reason}");
    // Still closed to plans, and it may be entered again (the evacuation resumes).
    let (again, _) = enter(&root, "pve2").await;
    assert_ne!(again, id);
    assert_eq!(ended(&root, again).await.job.state, JobState::Done);
    let m = settled(&root, &stack.sim, "pve2").await;
    assert_eq!(m.state, MaintenanceState::InMaintenance, "{m:#?}");
    assert!(m.remaining.is_empty(), "{m:#?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_going_offline_mid_evacuation_fails_the_mark_not_marks_it_done() {
    let stack = e2e::Stack::builder().time_scale(2.0).exec_config(one_at_a_time()).start().await.unwrap();
    let root = stack.login("root@pam", "demo").await.unwrap();
    let (id, answer) = enter(&root, "pve2").await;
    first_step_running(&root, id).await;
    // Every target of the plan but one goes offline: the evacuation cannot finish.
    let mut targets: Vec<String> = answer["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["to"].as_str().unwrap().to_owned())
        .collect();
    targets.sort();
    targets.dedup();
    let down = targets[0].clone();
    stack.sim.arm_fault(&pve_sim::FaultSpec::NodeOffline { node: down.clone(), online: false }).unwrap();
    let v = ended(&root, id).await;
    assert_ne!(v.job.state, JobState::Done, "{v:#?}");

    let m = settled(&root, &stack.sim, "pve2").await;
    assert_ne!(m.state, MaintenanceState::InMaintenance, "{m:#?}");
    assert!(!m.remaining.is_empty(), "{m:#?}");
    let expect =
        if v.job.state == JobState::Failed { MaintenanceState::Failed } else { MaintenanceState::Entering };
    assert_eq!(m.state, expect, "job {:?}: {m:#?}", v.job.state);
    assert!(m.reason.as_deref().unwrap().contains("can move"), "{m:#?}");
    stack.stop().await;
}

/// `pve-rebalancer serve`, one migration at a time.
async fn spawn_service(dir: &Path, sim: &pve_sim::RunningSim) -> (tokio::process::Child, String) {
    e2e::service::spawn(dir, sim, "journal.sqlite", &["--max-parallel", "1", "--max-per-node", "1"], &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_evacuation_then_restart_marks_the_node_failed_with_its_guests() {
    let mut cfg = pve_sim::SimConfig::new(
        pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario"),
    );
    cfg.time_scale = 2.0;
    let sim = pve_sim::start(cfg).await.unwrap();
    let dir = e2e::temp_dir("maint-kill");
    let (mut first, url) = spawn_service(&dir, &sim).await;
    let u = e2e::login(&url, "root@pam", "demo").await.unwrap();
    let (id, _) = enter(&u, "pve2").await;
    first_step_running(&u, id).await;
    first.start_kill().expect("SIGKILL");
    let status = tokio::time::timeout(Duration::from_secs(10), first.wait()).await.unwrap().unwrap();
    assert!(!status.success(), "{status}");

    let (second, url) = spawn_service(&dir, &sim).await;
    let u = e2e::login(&url, "root@pam", "demo").await.unwrap();
    assert_eq!(ended(&u, id).await.job.state, JobState::Interrupted);
    let m = settled(&u, &sim, "pve2").await;
    assert_eq!(m.state, MaintenanceState::Failed, "{m:#?}");
    assert!(!m.remaining.is_empty(), "{m:#?}");
    assert!(m.reason.as_deref().unwrap().contains("interrupted"), "{m:#?}");

    // The command line says the same, with the reason.
    let out = tokio::process::Command::new(e2e::service_binary())
        .args(["maintenance", "status", "pve2", "--pve-url", &sim.base_url])
        .arg("--pve-ca")
        .arg(dir.join("ca.pem"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let row = text.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("pve2") && row.contains("failed") && row.contains("interrupted"), "{text}");
    drop(second);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
