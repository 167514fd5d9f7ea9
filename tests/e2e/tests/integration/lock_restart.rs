//! Issue 22: a service killed with SIGKILL mid-job and restarted on the same node takes its own
//! executor lock back at once (a new job within 5 s, not after the 120 s TTL), while a service
//! on another node still never runs a job beside it. Two `pve-rebalancer serve` processes share
//! one lock directory (as two nodes share pmxcfs) and tell their nodes apart by
//! `PVE_REBALANCER_LOCK_NODE`.

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// `serve` as node `node` (journal `journal-<node>.sqlite`, the shared lock directory).
async fn spawn_service(dir: &Path, sim: &pve_sim::RunningSim, node: &str) -> (tokio::process::Child, String) {
    e2e::service::spawn(
        dir,
        sim,
        &format!("journal-{node}.sqlite"),
        &[],
        &[("PVE_REBALANCER_LOCK_NODE", node)],
    )
    .await
}

/// A one-step plan moving `vmid` from `from` to `to`.
fn plan(vmid: u32, from: &str, to: &str) -> Value {
    json!({"plan": {
        "request": shared::PlanRequest::default(),
        "steps": [{"vmid": vmid, "name": format!("g{vmid}"), "kind": "qemu", "from": from, "to": to,
                   "migration": "live", "mem_bytes": 0, "reason": "test", "depends_on": []}],
        "before": [], "after": [], "spread_before": 0.0, "spread_after": 0.0, "notes": [],
    }})
}

async fn execute(u: &e2e::Session, body: &Value) -> (u16, Value) {
    let r = u.post("/api/v1/plan/execute").json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_takes_its_own_lock_back_at_once_and_another_node_waits() {
    // 104 (8.4 GiB) migrates for ≈ 9 simulated seconds: ≈ 2.3 s real at 4× (the restarted
    // service follows it to its end before it takes new jobs).
    let mut cfg = pve_sim::SimConfig::new(
        pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario"),
    );
    cfg.time_scale = 4.0;
    let sim = pve_sim::start(cfg).await.unwrap();
    let dir = e2e::temp_dir("lock-restart");
    let (mut a, url_a) = spawn_service(&dir, &sim, "pve1").await;
    let (b, url_b) = spawn_service(&dir, &sim, "pve2").await;
    let ua = e2e::login(&url_a, "root@pam", "demo").await.unwrap();
    let ub = e2e::login(&url_b, "root@pam", "demo").await.unwrap();

    let (status, v) = execute(&ua, &plan(104, "pve1", "pve3")).await;
    assert_eq!(status, 202, "{v}");
    let (status, v) = execute(&ub, &plan(111, "pve1", "pve4")).await;
    assert_eq!(status, 409, "the other node must wait: {v}");
    // Kill A while 104 migrates.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.state_summary()["guests"]["104"]["migrating_to"].is_null() {
        assert!(Instant::now() < deadline, "104 never started migrating");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.start_kill().expect("SIGKILL");
    let _ = tokio::time::timeout(Duration::from_secs(10), a.wait()).await.unwrap();
    // A's lock is a dead process's, but on another node: B cannot know, and waits for the TTL.
    let (status, v) = execute(&ub, &plan(111, "pve1", "pve4")).await;
    assert_eq!(status, 409, "another node took a lock within its TTL: {v}");

    // A again, on the same node: the in-flight step is followed, then a new job within 5 s.
    let (a2, url_a) = spawn_service(&dir, &sim, "pve1").await;
    let restarted = Instant::now();
    let ua = e2e::login(&url_a, "root@pam", "demo").await.unwrap();
    let accepted = loop {
        let (status, v) = execute(&ua, &plan(111, "pve1", "pve4")).await;
        if status == 202 {
            break restarted.elapsed();
        }
        assert_eq!(status, 409, "{v}");
        assert!(restarted.elapsed() < Duration::from_secs(5), "no new job within 5 s of the restart: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("new job accepted {accepted:?} after the restart");
    // Still one executor cluster-wide: B is refused while A's new job runs.
    let (status, v) = execute(&ub, &plan(105, "pve1", "pve3")).await;
    assert_eq!(status, 409, "{v}");
    drop((a2, b));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
