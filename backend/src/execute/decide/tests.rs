use super::*;
use serde_json::json;
use shared::MigrationKind;

fn step(index: usize, vmid: u32, from: &str, to: &str, deps: &[usize]) -> StepView {
    StepView {
        index,
        vmid,
        name: format!("g{vmid}"),
        kind: GuestKind::Qemu,
        from: from.into(),
        to: to.into(),
        migration: MigrationKind::Live,
        depends_on: deps.to_vec(),
        state: StepState::Queued,
        phase: None,
        upid: None,
        task_upid: None,
        started_at: None,
        finished_at: None,
        message: None,
    }
}

fn seen() -> Observed {
    observe(&[
        json!({"type":"node","node":"a","status":"online"}),
        json!({"type":"node","node":"b","status":"online"}),
        json!({"type":"node","node":"c","status":"offline"}),
        json!({"type":"node","node":"m","status":"online","hastate":"maintenance"}),
        json!({"type":"qemu","vmid":100,"node":"a","status":"running"}),
        json!({"type":"qemu","vmid":"101","node":"b","status":"stopped"}),
        json!({"type":"lxc","vmid":102,"node":"a","status":"running","lock":"backup"}),
        json!({"type":"qemu","vmid":null,"node":"a"}),
        json!({"type":"storage","node":"a"}),
    ])
}

#[test]
fn scheduling_respects_dependencies_and_limits() {
    let mut steps = vec![
        step(0, 100, "a", "b", &[]),
        step(1, 101, "a", "c", &[]),
        step(2, 102, "d", "e", &[]),
        step(3, 103, "b", "d", &[0]),
    ];
    let limits = Limits { global: 10, per_node: 1 };
    // node a is busy after step 0; step 3 waits for step 0
    assert_eq!(startable(&steps, limits), vec![0, 2]);
    assert_eq!(startable(&steps, Limits { global: 1, per_node: 5 }), vec![0]);
    steps[0].state = StepState::Running;
    steps[2].state = StepState::Running;
    assert!(startable(&steps, limits).is_empty());
    steps[0].state = StepState::Done;
    assert_eq!(startable(&steps, limits), vec![1], "d is still busy with step 2");
    steps[2].state = StepState::Done;
    assert_eq!(startable(&steps, limits), vec![1, 3]);
}

#[test]
fn one_guest_never_has_two_steps_in_flight() {
    let mut steps = vec![step(0, 100, "a", "b", &[]), step(1, 100, "b", "c", &[])];
    steps[0].state = StepState::Running;
    assert!(startable(&steps, Limits { global: 9, per_node: 9 }).is_empty());
}

#[test]
fn failed_dependencies_block_with_the_reason() {
    let mut steps =
        vec![step(0, 100, "a", "b", &[]), step(1, 101, "b", "a", &[0]), step(2, 1, "x", "y", &[7])];
    assert_eq!(blocked_reason(&steps, 1), None);
    steps[0].state = StepState::Failed;
    steps[0].message = Some("migration aborted".into());
    let why = blocked_reason(&steps, 1).unwrap();
    assert!(why.contains("step 0 (vmid 100 a → b), which ended failed: migration aborted"), "{why}");
    assert!(blocked_reason(&steps, 2).unwrap().contains("not part of this job"));
}

#[test]
fn job_outcomes() {
    let mut steps = vec![step(0, 100, "a", "b", &[]), step(1, 101, "b", "a", &[])];
    steps[0].state = StepState::Done;
    steps[1].state = StepState::Done;
    assert_eq!(job_outcome(&steps, false), JobState::Done);
    assert_eq!(job_outcome(&steps, true), JobState::Cancelled);
    steps[1].state = StepState::Skipped;
    assert_eq!(job_outcome(&steps, false), JobState::Partial);
    steps[1].state = StepState::Unknown;
    assert_eq!(job_outcome(&steps, false), JobState::Failed);
}

#[test]
fn prechecks_name_what_changed() {
    let s = seen();
    assert_eq!(precheck(&step(0, 100, "a", "b", &[]), &s), Precheck::Go { running: true });
    assert_eq!(precheck(&step(0, 101, "a", "b", &[]), &s), Precheck::AlreadyThere);
    let skip = |st: StepView| match precheck(&st, &s) {
        Precheck::Skip(why) => why,
        other => panic!("{other:?}"),
    };
    assert!(skip(step(0, 101, "a", "m", &[])).contains("on b now, not on a"));
    assert!(skip(step(0, 100, "a", "c", &[])).contains("c is offline"));
    assert!(skip(step(0, 100, "a", "m", &[])).contains("maintenance"));
    assert!(skip(step(0, 100, "a", "zz", &[])).contains("not in the cluster"));
    assert!(skip(step(0, 999, "a", "b", &[])).contains("no longer exists"));
    let mut ct = step(0, 102, "a", "b", &[]);
    assert!(skip(ct.clone()).contains("is a container now"));
    ct.kind = GuestKind::Lxc;
    assert_eq!(skip(ct), "guest is locked (backup)");
    // The service's own maintenance mark closes a target PVE still calls open.
    let mut marked = s.clone();
    close_targets(&mut marked, &["b".to_owned(), "not-a-node".to_owned()]);
    match precheck(&step(0, 100, "a", "b", &[]), &marked) {
        Precheck::Skip(why) => assert!(why.contains("b is in maintenance"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(marked.nodes.len(), s.nodes.len());
}

#[test]
fn qemu_preconditions() {
    let ok = json!({"running":1,"allowed_nodes":["b"],"local_disks":[],"local_resources":[]});
    assert_eq!(qemu_precondition(&ok, "b", false), Ok(false));
    let no_list = json!({"running":1,"local_disks":[],"local_resources":[]});
    assert_eq!(qemu_precondition(&no_list, "b", false), Ok(false), "7.4 omits the list for running VMs");
    let disks = json!({"allowed_nodes":["b"],"local_disks":[{"volid":"local:1/vm-1-disk-0.qcow2"}],"local_resources":[]});
    assert_eq!(qemu_precondition(&disks, "b", true), Ok(true));
    assert!(qemu_precondition(&disks, "b", false).unwrap_err().contains("local:1/vm-1-disk-0.qcow2"));
    let pci = json!({"allowed_nodes":["b"],"local_disks":[],"local_resources":["hostpci0"]});
    assert!(qemu_precondition(&pci, "b", true).unwrap_err().contains("hostpci0"));
    let denied = json!({"allowed_nodes":["c"],"not_allowed_nodes":{"b":{"unavailable_storages":["local"]}}});
    let why = qemu_precondition(&denied, "b", true).unwrap_err();
    assert!(why.contains("does not allow b") && why.contains("unavailable_storages"), "{why}");
    assert!(lxc_precondition(&json!({"allowed-nodes":["b"]}), "b").is_ok());
    assert!(lxc_precondition(&json!({"allowed-nodes":[]}), "b").is_err());
}

#[test]
fn migrate_calls_follow_guest_kind_status_and_version() {
    let vm = step(0, 100, "a", "b", &[]);
    let c = migrate_call(&vm, true, true, Some(9), 180, true);
    assert_eq!(c.path, "/nodes/a/qemu/100/migrate");
    let keys: Vec<&str> = c.form.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["target", "online", "with-conntrack-state", "with-local-disks"]);
    let c = migrate_call(&vm, true, false, Some(8), 180, true);
    assert_eq!(c.form, vec![("target", "b".to_string()), ("online", "1".to_string())]);
    let c = migrate_call(&vm, false, false, Some(9), 180, true);
    assert_eq!(c.form, vec![("target", "b".to_string())]);
    // with_conntrack_state: false: PVE 9 too is asked without it.
    let c = migrate_call(&vm, true, false, Some(9), 180, false);
    assert_eq!(c.form, vec![("target", "b".to_string()), ("online", "1".to_string())]);
    let c = migrate_call(&vm, false, false, Some(9), 180, true);
    assert_eq!(c.form, vec![("target", "b".to_string())]);
    let mut ct = step(0, 106, "a", "b", &[]);
    ct.kind = GuestKind::Lxc;
    let c = migrate_call(&ct, true, false, Some(9), 120, true);
    assert_eq!(c.path, "/nodes/a/lxc/106/migrate");
    assert_eq!(c.form[1..], [("restart", "1".to_string()), ("timeout", "120".to_string())]);
    assert_eq!(pve_major("9.1.2"), Some(9));
    assert_eq!(pve_major("x"), None);
}

#[test]
fn task_statuses() {
    assert_eq!(task_outcome(&json!({"status":"running"})), Some(TaskOutcome::Running));
    assert_eq!(task_outcome(&json!({"status":"stopped","exitstatus":"OK"})), Some(TaskOutcome::Ok));
    assert_eq!(task_outcome(&json!({"status":"stopped","exitstatus":"WARNINGS: 2"})), Some(TaskOutcome::Ok));
    assert_eq!(
        task_outcome(&json!({"status":"stopped","exitstatus":"migration aborted\n"})),
        Some(TaskOutcome::Failed("migration aborted".into()))
    );
    assert!(matches!(task_outcome(&json!({"status":"stopped"})), Some(TaskOutcome::Failed(_))));
    assert_eq!(task_outcome(&json!({})), None);
}

#[test]
fn backoff_is_bounded() {
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(50));
    let mut d = Duration::ZERO;
    let seq: Vec<u128> = (0..5)
        .map(|_| {
            d = next_delay(d, min, max);
            d.as_millis()
        })
        .collect();
    assert_eq!(seq, [10, 20, 40, 50, 50]);
}

#[test]
fn the_ha_child_is_the_first_migration_after_the_request() {
    let rows = vec![
        json!({"upid":"old","type":"qmigrate","id":"201","starttime":90}),
        json!({"upid":"ha","type":"hamigrate","id":"201","starttime":100}),
        json!({"upid":"later","type":"qmigrate","id":"201","starttime":130}),
        json!({"upid":"child","type":"qmigrate","id":"201","starttime":101}),
        json!({"upid":"other","type":"qmigrate","id":"202","starttime":101}),
    ];
    assert_eq!(pick_child_task(&rows, 201, 100).as_deref(), Some("child"));
    assert_eq!(pick_child_task(&rows, 203, 100), None);
}

#[test]
fn reconciliation_never_guesses_a_success() {
    let s = seen();
    let vm = step(0, 100, "a", "b", &[]);
    assert_eq!(reconcile(&vm, Some(&TaskOutcome::Ok), &s).0, StepState::Failed, "OK but not on b");
    let landed = step(0, 101, "a", "b", &[]);
    assert_eq!(reconcile(&landed, Some(&TaskOutcome::Ok), &s).0, StepState::Done);
    assert_eq!(reconcile(&landed, None, &s).0, StepState::Done);
    let (st, msg) = reconcile(&vm, Some(&TaskOutcome::Failed("boom".into())), &s);
    assert_eq!((st, msg.as_str()), (StepState::Failed, "boom (guest still on a)"));
    assert_eq!(reconcile(&vm, None, &s).0, StepState::Failed, "never submitted");
    let mut locked = step(0, 102, "a", "b", &[]);
    locked.kind = GuestKind::Lxc;
    assert_eq!(reconcile(&locked, None, &s).0, StepState::Unknown);
    assert_eq!(reconcile(&vm, Some(&TaskOutcome::Running), &s).0, StepState::Unknown);
}

fn plan_of(steps: Vec<StepView>) -> shared::Plan {
    let json = json!({
        "request": shared::PlanRequest::default(),
        "steps": steps.iter().map(|s| json!({
            "vmid": s.vmid, "name": s.name, "kind": s.kind, "from": s.from, "to": s.to,
            "migration": s.migration, "mem_bytes": 0, "reason": "", "depends_on": s.depends_on,
        })).collect::<Vec<_>>(),
        "before": [], "after": [], "spread_before": 0.0, "spread_after": 0.0, "notes": [],
    });
    serde_json::from_value(json).unwrap()
}

#[test]
fn job_steps_select_by_vmid_and_keep_dependencies_closed() {
    let plan =
        plan_of(vec![step(0, 100, "a", "b", &[]), step(1, 101, "b", "c", &[0]), step(2, 102, "c", "a", &[])]);
    let all = job_steps(&plan, None).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|s| s.state == StepState::Queued));
    let some = job_steps(&plan, Some(&[102, 100])).unwrap();
    assert_eq!(some.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 2]);
    let (field, why) = job_steps(&plan, Some(&[101])).unwrap_err();
    assert_eq!(field, "steps");
    assert!(why.contains("depends on step 0 (vmid 100), which is not selected"), "{why}");
    assert_eq!(job_steps(&plan, Some(&[555])).unwrap_err().0, "steps");
    assert_eq!(job_steps(&plan, Some(&[])).unwrap_err().0, "steps");
    let bad = plan_of(vec![step(0, 100, "a/../x", "b", &[])]);
    assert_eq!(job_steps(&bad, None).unwrap_err().0, "plan.steps");
    let dangling = plan_of(vec![step(0, 100, "a", "b", &[4])]);
    assert!(job_steps(&dangling, None).unwrap_err().1.contains("does not exist"));
    assert!(job_steps(&plan_of(vec![]), None).is_err());
}
