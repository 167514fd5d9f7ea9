//! `serve`'s scheduled balancing against the simulator: off until `schedule_interval_secs` is
//! stored, one run per interval even with two nodes' schedulers on one state directory, the job
//! and its audit entry under user `scheduler`, and nothing outside the balancing windows.

use backend::scheduler::{Round, Scheduler, SchedulerConfig};
use backend::windows::WeekTime;
use serde_json::json;
use shared::api::{AuditEntry, JobState};
use std::time::Duration;

fn scheduler(stack: &e2e::Stack) -> Scheduler {
    Scheduler::new(SchedulerConfig { state_dir: stack.work.clone(), tick: Duration::from_secs(30) })
}

/// Monday 12:00.
const NOON: WeekTime = WeekTime { day: 0, minute: 12 * 60 };
const T0: u64 = 1_800_000_000;

async fn store(stack: &e2e::Stack, settings: serde_json::Value) {
    stack.login("root@pam", "demo").await.expect("login").put_settings(settings).await;
}

#[tokio::test]
async fn a_stored_interval_runs_one_plan_per_interval_cluster_wide_and_audits_it() {
    let stack = e2e::Stack::builder().start().await.expect("stack");
    let (here, there) = (scheduler(&stack), scheduler(&stack));
    assert_eq!(here.round(&stack.state, T0, NOON).await.unwrap(), Round::Off);
    assert!(!stack.work.join(backend::scheduler::STATE_FILE).exists());

    store(&stack, json!({"schedule_interval_secs": 3600, "balanciness": 3})).await;
    let Round::Started { job_id, steps } = here.round(&stack.state, T0, NOON).await.unwrap() else {
        panic!("the first round after storing the interval did not start a job")
    };
    assert!(steps > 0);
    // The other node, at the same moment: busy (this node's job) or not due; never a second run.
    let other = there.round(&stack.state, T0 + 1, NOON).await.unwrap();
    assert!(matches!(other, Round::Busy | Round::NotDue { .. }), "{other:?}");
    let view = stack.executor.wait_finished(job_id, Duration::from_secs(60)).await.expect("job ended");
    assert_eq!(view.job.state, JobState::Done, "{view:?}");
    assert_eq!(view.job.started_by, "scheduler");
    assert_eq!(
        there.round(&stack.state, T0 + 1800, NOON).await.unwrap(),
        Round::NotDue { next_in_secs: 1800 }
    );
    let state = here.state().unwrap();
    assert_eq!(state.last_run, T0);

    // An interval later the cluster is balanced at this level: planned, nothing moved.
    let again = there.round(&stack.state, T0 + 3600, NOON).await.unwrap();
    assert!(matches!(again, Round::Balanced { .. } | Round::Started { .. }), "{again:?}");
    assert_eq!(there.state().unwrap().last_run, T0 + 3600);

    let audit = stack.login("audit@pve", "audit").await.expect("login");
    let history: Vec<AuditEntry> =
        audit.get("/api/v1/history?action=schedule.run").send().await.unwrap().json().await.unwrap();
    let first = history.iter().find(|e| e.job_id == Some(job_id)).expect("the run is audited");
    assert_eq!(first.user, "scheduler");
    assert!(first.detail.starts_with(&format!("{steps} moves")), "{}", first.detail);
    stack.sim.check_invariants().expect("invariants");
    stack.stop().await;
}

#[tokio::test]
async fn outside_the_windows_nothing_is_planned_and_a_corrupt_state_file_is_an_error() {
    let stack = e2e::Stack::builder().start().await.expect("stack");
    let nights = scheduler(&stack);
    store(&stack, json!({"schedule_interval_secs": 600, "windows": ["mon-fri 22:00-06:00"]})).await;
    assert_eq!(nights.round(&stack.state, T0, NOON).await.unwrap(), Round::OutsideWindow);
    assert!(!stack.work.join(backend::scheduler::STATE_FILE).exists(), "a skipped round claimed the run");

    std::fs::write(stack.work.join(backend::scheduler::STATE_FILE), b"{ half").unwrap();
    store(&stack, json!({"windows": []})).await;
    let err = scheduler(&stack).round(&stack.state, T0, NOON).await.unwrap_err().to_string();
    assert!(err.contains("schedule.json") && err.contains("fix or delete"), "{err}");
    assert!(stack.executor.jobs(10).unwrap().is_empty(), "a job started despite the error");
    stack.stop().await;
}
