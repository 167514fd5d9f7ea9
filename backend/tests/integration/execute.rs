//! The executor against the real simulator (HTTPS on loopback, migrations as tasks): whole
//! plans, PVE task errors, hangs and timeouts, guests moved by someone else, HA guests, user
//! cancel, a restart mid-plan, and two executors racing for the cluster lock.

use backend::execute::{ClusterLock, DirLock, ExecConfig, Executor, Journal, StartError};
use pve_sim::FaultSpec;
use shared::api::{JobState, JobView, StepState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use test_support::{
    client, executor_in, fast_exec_config, migrate_posts, plan_of as plan, start_sim, step,
    step_message as msg, temp_dir,
};

async fn run(ex: &Arc<Executor>, plan: &shared::Plan) -> JobView {
    let id = ex.start(plan, None, "test@pve").expect("job starts");
    ex.wait_finished(id, Duration::from_secs(60)).await.expect("job ends within a minute")
}

#[tokio::test]
async fn a_planned_rebalance_executes_end_to_end() {
    let sim = start_sim(1000.0).await;
    let pve = client(&sim);
    let mut snapshot = backend::collect::snapshot(&pve, 1).await.expect("snapshot");
    // As the service plans: PVE's migrate check keeps gpu-worker (a PCI device) where it is, now
    // that a one-shot plan runs until balanced and would otherwise reach it.
    let request = shared::PlanRequest::default();
    let p = backend::preflight::plan(&pve, &mut snapshot, |s| shared::planner::plan(s, &request)).await;
    assert!(p.steps.len() >= 2, "the demo cluster is imbalanced: {:?}", p.notes);
    let dir = temp_dir("e2e");
    let ex = executor_in(&sim, &dir, &dir.join("lock"), fast_exec_config());
    let v = run(&ex, &p).await;
    assert_eq!(v.job.state, JobState::Done, "{v:#?}");
    assert_eq!(v.job.started_by, "test@pve");
    // Every guest ends where the plan's last step for it says.
    for s in &p.steps {
        let last = p.steps.iter().rev().find(|x| x.vmid == s.vmid).expect("step");
        assert_eq!(sim.guest_node(s.vmid).as_deref(), Some(last.to.as_str()), "vmid {}", s.vmid);
    }
    assert!(v.steps.iter().all(|s| s.upid.is_some() && s.finished_at.is_some()));
    sim.check_invariants().expect("simulator invariants");
    assert_eq!(migrate_posts(&sim) as usize, p.steps.len(), "one submission per step");
    assert!(!dir.join("lock").join("pve-rebalancer-executor").exists(), "lock released");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_task_error_fails_the_step_with_pves_text_and_skips_its_dependents() {
    let sim = start_sim(1000.0).await;
    sim.arm_fault(&FaultSpec::TaskError {
        vmid: Some(104),
        count: 1,
        message: "simulated copy failure".into(),
    })
    .unwrap();
    let dir = temp_dir("error");
    let ex = executor_in(&sim, &dir, &dir, fast_exec_config());
    let v = run(&ex, &plan(&[(104, "qemu", "pve1", "pve3", &[]), (103, "qemu", "pve1", "pve3", &[0])])).await;
    assert_eq!(v.job.state, JobState::Failed);
    assert_eq!(step(&v, 104).state, StepState::Failed);
    assert_eq!(msg(&v, 104), "simulated copy failure (guest still on pve1)");
    assert_eq!(step(&v, 103).state, StepState::Skipped);
    assert!(msg(&v, 103).contains("depends on step 0 (vmid 104 pve1 → pve3), which ended failed"), "{v:#?}");
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve1"));
    assert_eq!(sim.guest_node(103).as_deref(), Some("pve1"));
    assert_eq!(migrate_posts(&sim), 1, "the dependent step was never submitted");
    sim.check_invariants().expect("simulator invariants");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_submission_records_pves_words() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("refused");
    // 109 has a PCI device: PVE's precondition names it and nothing is submitted.
    let v =
        run(&executor_in(&sim, &dir, &dir, fast_exec_config()), &plan(&[(109, "qemu", "pve1", "pve3", &[])]))
            .await;
    assert_eq!(step(&v, 109).state, StepState::Skipped);
    assert!(msg(&v, 109).contains("hostpci0"), "{v:#?}");
    assert_eq!(migrate_posts(&sim), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_hung_task_times_out_and_is_stopped() {
    let sim = start_sim(1000.0).await;
    sim.arm_fault(&FaultSpec::TaskHang { vmid: Some(105), count: 1 }).unwrap();
    let dir = temp_dir("hang");
    let cfg = ExecConfig { step_timeout: Duration::from_millis(600), ..fast_exec_config() };
    let v = run(&executor_in(&sim, &dir, &dir, cfg), &plan(&[(105, "qemu", "pve1", "pve3", &[])])).await;
    let s = step(&v, 105);
    assert_eq!(s.state, StepState::Failed);
    let m = msg(&v, 105);
    assert!(m.starts_with("timed out after"), "{m}");
    assert!(m.contains("interrupted by signal") && m.contains("guest still on pve1"), "{m}");
    assert_eq!(sim.guest_node(105).as_deref(), Some("pve1"));
    sim.check_invariants().expect("no stray migrate lock");
    sim.shutdown().await;
}

#[tokio::test]
async fn guests_moved_by_someone_else_are_not_touched() {
    let sim = start_sim(1000.0).await;
    let pve = client(&sim);
    // Someone moves 104 to pve2 and 107 to its planned target before the job runs.
    for (vmid, to) in [(104, "pve2"), (107, "pve3")] {
        let form = [("target", to.to_string()), ("online", "1".to_string())];
        pve.post(&format!("/nodes/pve1/qemu/{vmid}/migrate"), &form).await.expect("manual migration");
    }
    for _ in 0..200 {
        if sim.guest_node(104).as_deref() == Some("pve2") && sim.guest_node(107).as_deref() == Some("pve3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posts_before = migrate_posts(&sim);
    let dir = temp_dir("moved");
    let v = run(
        &executor_in(&sim, &dir, &dir, fast_exec_config()),
        &plan(&[
            (104, "qemu", "pve1", "pve3", &[]),
            (107, "qemu", "pve1", "pve3", &[]),
            (999, "qemu", "pve1", "pve3", &[]),
        ]),
    )
    .await;
    assert_eq!(step(&v, 104).state, StepState::Skipped);
    assert_eq!(msg(&v, 104), "guest is on pve2 now, not on pve1 as planned (moved outside this job)");
    assert_eq!(step(&v, 107).state, StepState::Done);
    assert!(msg(&v, 107).contains("already on pve3"), "{v:#?}");
    assert_eq!(step(&v, 999).state, StepState::Skipped);
    assert!(msg(&v, 999).contains("no longer exists"));
    assert_eq!(v.job.state, JobState::Partial);
    assert_eq!(migrate_posts(&sim), posts_before, "nothing submitted");
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve2"));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_ha_guest_is_followed_from_hamigrate_to_its_qmigrate() {
    let sim = start_sim(1000.0).await;
    let dir = temp_dir("ha");
    let v =
        run(&executor_in(&sim, &dir, &dir, fast_exec_config()), &plan(&[(201, "qemu", "pve2", "pve3", &[])]))
            .await;
    let s = step(&v, 201);
    assert_eq!(s.state, StepState::Done, "{v:#?}");
    assert!(s.upid.as_deref().is_some_and(|u| u.contains(":hamigrate:201:")), "{s:?}");
    assert!(s.task_upid.as_deref().is_some_and(|u| u.contains(":qmigrate:201:")), "{s:?}");
    assert_eq!(sim.guest_node(201).as_deref(), Some("pve3"));
    sim.check_invariants().expect("simulator invariants");
    sim.shutdown().await;
}

async fn wait_for_upid(ex: &Executor, id: u64, vmid: u32) {
    for _ in 0..500 {
        let v = ex.job(id).unwrap().unwrap();
        if step(&v, vmid).upid.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("step of {vmid} was never submitted");
}

#[tokio::test]
async fn cancel_stops_the_running_task_and_starts_nothing_more() {
    let sim = start_sim(1000.0).await;
    sim.arm_fault(&FaultSpec::TaskHang { vmid: Some(104), count: 1 }).unwrap();
    let dir = temp_dir("cancel");
    let ex = executor_in(&sim, &dir, &dir, fast_exec_config());
    let id = ex
        .start(&plan(&[(104, "qemu", "pve1", "pve3", &[]), (103, "qemu", "pve1", "pve4", &[0])]), None, "u")
        .unwrap();
    wait_for_upid(&ex, id, 104).await;
    ex.cancel(id).expect("cancel a running job");
    let v = ex.wait_finished(id, Duration::from_secs(30)).await.expect("ends");
    assert_eq!(v.job.state, JobState::Cancelled);
    assert_eq!(step(&v, 104).state, StepState::Cancelled);
    assert!(
        msg(&v, 104).contains("cancelled by the user") && msg(&v, 104).contains("interrupted by signal"),
        "{v:#?}"
    );
    assert_eq!(step(&v, 103).state, StepState::Cancelled);
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve1"));
    assert!(matches!(ex.cancel(id), Err(backend::execute::CancelError::NotRunning(..))));
    sim.check_invariants().expect("simulator invariants");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_restart_reconciles_from_the_journal_and_submits_nothing_again() {
    // Slow enough (≈0.5 s per live migration) to stop the service while the first step runs.
    let sim = start_sim(20.0).await;
    let dir = temp_dir("restart");
    let first = executor_in(&sim, &dir, &dir, fast_exec_config());
    let p = plan(&[(104, "qemu", "pve1", "pve3", &[]), (103, "qemu", "pve1", "pve4", &[0])]);
    let id = first.start(&p, None, "u").unwrap();
    wait_for_upid(&first, id, 104).await;
    first.halt();
    drop(first);
    let posts = migrate_posts(&sim);
    assert_eq!(posts, 1);
    let journal_says = Journal::open(&dir.join("journal.sqlite")).unwrap().job(id).unwrap().unwrap();
    assert_eq!(step(&journal_says, 104).state, StepState::Running);

    let second = executor_in(&sim, &dir, &dir, fast_exec_config());
    assert_eq!(second.recover().await.expect("recovery"), 1);
    let v = second.job(id).unwrap().unwrap();
    assert_eq!(v.job.state, JobState::Interrupted);
    assert_eq!(step(&v, 104).state, StepState::Done, "{v:#?}");
    assert!(msg(&v, 104).starts_with("after restart"), "{v:#?}");
    assert_eq!(step(&v, 103).state, StepState::Cancelled);
    assert!(msg(&v, 103).contains("nothing is re-submitted"));
    assert_eq!(migrate_posts(&sim), posts, "recovery submitted nothing");
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve3"));
    assert_eq!(sim.guest_node(103).as_deref(), Some("pve1"));
    assert_eq!(second.recover().await.unwrap(), 0, "nothing left to reconcile");
    sim.shutdown().await;
}

#[tokio::test]
async fn two_executors_sharing_a_lock_directory_never_both_execute() {
    let sim = start_sim(50.0).await;
    let lock_dir = temp_dir("race-lock");
    let (da, db) = (temp_dir("race-a"), temp_dir("race-b"));
    let a = executor_in(&sim, &da, &lock_dir, fast_exec_config());
    let b = executor_in(&sim, &db, &lock_dir, fast_exec_config());
    let p = plan(&[(104, "qemu", "pve1", "pve3", &[])]);
    let (ra, rb) = tokio::join!(async { a.start(&p, None, "a") }, async { b.start(&p, None, "b") });
    let (winner, id, loser) = match (ra, rb) {
        (Ok(id), Err(e)) => (&a, id, e),
        (Err(e), Ok(id)) => (&b, id, e),
        other => panic!("exactly one executor may start: {other:?}"),
    };
    assert!(matches!(loser, StartError::Locked(_)), "{loser:?}");
    winner.wait_finished(id, Duration::from_secs(30)).await.expect("winner ends");
    // Released at the end: the other one may go now.
    let q = plan(&[(104, "qemu", "pve3", "pve1", &[])]);
    let other = if Arc::ptr_eq(winner, &a) { &b } else { &a };
    let id2 = other.start(&q, None, "x").expect("lock free after the job");
    assert_eq!(other.wait_finished(id2, Duration::from_secs(30)).await.unwrap().job.state, JobState::Done);
    sim.shutdown().await;

    // And under contention from threads: never two holders at once.
    let holders = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (dir, holders, max_seen) = (lock_dir.to_path_buf(), holders.clone(), max_seen.clone());
            std::thread::spawn(move || {
                let lock = DirLock::new(dir);
                for _ in 0..200 {
                    if let Some(g) = lock.try_acquire("contended", Duration::from_secs(60)) {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        max_seen.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        holders.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(max_seen.load(Ordering::SeqCst), 1);
}
