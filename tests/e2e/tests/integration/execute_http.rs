//! The job routes over real sockets: plan → execute → events → job view, with the simulator's
//! migrations as tasks, the backend's PVE auth in front, and the errors as `ApiError` JSON.

use backend::execute::ExecConfig;
use e2e::Stack;
use serde_json::json;
use shared::api::{ApiError, ExecuteResponse, JobState, JobSummary, JobView, StepState};
use shared::Plan;
use std::time::Duration;

async fn start() -> Stack {
    Stack::builder()
        .exec_config(ExecConfig {
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_millis(50),
            step_timeout: Duration::from_secs(20),
            ..ExecConfig::default()
        })
        .start()
        .await
        .expect("simulator and backend")
}

/// A logged-in client and its CSRF token.
async fn login(b: &Stack, user: &str, password: &str) -> (reqwest::Client, String) {
    let s = b.login(user, password).await.expect("login");
    (s.http, s.csrf)
}

#[tokio::test]
async fn a_plan_is_executed_followed_and_inspected_over_http() {
    let b = start().await;
    let (http, csrf) = login(&b, "root@pam", "demo").await;
    let post =
        |path: &str| http.post(format!("{}{path}", b.backend_url)).header("CSRFPreventionToken", &csrf);
    let get = |path: &str| http.get(format!("{}{path}", b.backend_url));

    let plan: Plan =
        post("/api/v1/plan").json(&json!({"balanciness": 5.0})).send().await.unwrap().json().await.unwrap();
    let first =
        plan.steps.iter().find(|s| s.depends_on.is_empty()).expect("a step without dependencies").clone();

    // Bad input: a vmid the plan does not move.
    let resp =
        post("/api/v1/plan/execute").json(&json!({"plan": plan, "steps": [4242]})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: ApiError = resp.json().await.unwrap();
    assert_eq!(err.field.as_deref(), Some("steps"));

    let resp = post("/api/v1/plan/execute")
        .json(&json!({"plan": plan, "steps": [first.vmid]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let ExecuteResponse { job_id } = resp.json().await.unwrap();

    // The event stream carries step states and ends by itself when the job ends.
    let events = tokio::time::timeout(
        Duration::from_secs(30),
        get(&format!("/api/v1/jobs/{job_id}/events")).send().await.unwrap().text(),
    )
    .await
    .expect("the event stream ends with the job")
    .unwrap();
    assert!(events.contains("event: step"), "{events}");
    let end = events.split("event: end\ndata: ").nth(1).expect("an end event");
    let summary: JobSummary = serde_json::from_str(end.lines().next().unwrap()).unwrap();
    assert_eq!((summary.id, summary.state), (job_id, JobState::Done));

    let view: JobView = get(&format!("/api/v1/jobs/{job_id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(view.job.started_by, "root@pam");
    assert_eq!(view.steps.len(), 1);
    assert_eq!(view.steps[0].state, StepState::Done);
    assert!(view.steps[0].upid.as_deref().is_some_and(|u| u.starts_with("UPID:")));
    assert_eq!(b.sim.guest_node(first.vmid).as_deref(), Some(first.to.as_str()));

    let jobs: Vec<JobSummary> = get("/api/v1/jobs").send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs[0].id, job_id);
    assert_eq!(jobs[0].counts.done, 1);

    // A finished job cannot be cancelled; an unknown one is 404.
    let resp = post(&format!("/api/v1/jobs/{job_id}/cancel")).send().await.unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(get("/api/v1/jobs/999999").send().await.unwrap().status(), 404);
    let resp = get("/api/v1/jobs/abc").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<ApiError>().await.unwrap().field.as_deref(), Some("id"));

    // An auditor may look but not migrate.
    let (audit, audit_csrf) = login(&b, "audit@pve", "audit").await;
    let resp = audit
        .post(format!("{}/api/v1/plan/execute", b.backend_url))
        .header("CSRFPreventionToken", &audit_csrf)
        .json(&json!({"plan": plan}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.json::<ApiError>().await.unwrap().detail.contains("VM.Migrate"));
    assert_eq!(audit.get(format!("{}/api/v1/jobs", b.backend_url)).send().await.unwrap().status(), 200);

    // Without credentials nothing at all.
    let anon = reqwest::Client::new();
    assert_eq!(anon.get(format!("{}/api/v1/jobs", b.backend_url)).send().await.unwrap().status(), 401);

    b.sim.check_invariants().unwrap();
    b.stop().await;
}

#[tokio::test]
async fn a_plan_leaves_out_the_vms_pves_migrate_check_refuses() {
    // The demo's gpu-worker (109) has a PCI device: only PVE's per-guest migrate check says so.
    let b = start().await;
    let root = b.login("root@pam", "demo").await.expect("login");
    let plan = root.plan(json!({"balanciness": 2.0})).await;
    assert!(!plan.steps.is_empty(), "{:?}", plan.notes);
    assert!(plan.steps.iter().all(|s| s.vmid != 109), "{:?}", plan.steps);
    // Whether a balance plan wants 109 depends on the load of the moment; an evacuation of its
    // node always does: the preview leaves it home and says why.
    let (status, v) = {
        let resp =
            root.post("/api/v1/maintenance/pve1/enter").json(&json!({"preview": true})).send().await.unwrap();
        (resp.status(), resp.json::<serde_json::Value>().await.unwrap())
    };
    assert!(status.is_success(), "{v}");
    let evacuation: Plan = serde_json::from_value(v["plan"].clone()).unwrap();
    assert!(evacuation.steps.iter().all(|s| s.vmid != 109), "{:?}", evacuation.steps);
    let note = evacuation.notes.iter().find(|n| n.contains("PVE's migrate check")).expect("a note says why");
    assert!(note.contains("gpu-worker (109): hostpci0"), "{note}");

    // So executing it skips nothing.
    let resp = root.post("/api/v1/plan/execute").json(&json!({"plan": plan})).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let ExecuteResponse { job_id } = resp.json().await.unwrap();
    let view = b.executor.wait_finished(job_id, Duration::from_secs(60)).await.expect("job ended");
    assert_eq!(view.job.state, JobState::Done, "{view:?}");
    b.stop().await;
}
