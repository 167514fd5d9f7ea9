use super::*;
use serde_json::{json, Value};

/// Three distinct, valid values per field: what the file, the stored settings and a request set.
fn samples(field: &str) -> [Value; 3] {
    match field {
        "method" => [json!("cpu"), json!("disk"), json!("weighted")],
        "mode" => [json!("assigned"), json!("percentile"), json!("psi")],
        "balanciness" | "min_gain" | "memory_reserve_gib" => [json!(3.0), json!(4.0), json!(5.0)],
        "level" => [json!(2), json!(3), json!(4)],
        "stop_spread" | "max_gib" | "cpu_overcommit" => [json!(1.5), json!(2.5), json!(3.5)],
        "migration_bandwidth_mib_s" => [json!(100.0), json!(250.0), json!(1200.0)],
        "memory_threshold" | "cpu_threshold" | "disk_threshold" => [json!(70.0), json!(80.0), json!(90.0)],
        "max_moves" | "max_moves_per_node" | "max_parallel" | "max_per_node" => {
            [json!(2), json!(3), json!(4)]
        }
        "cooldown_secs" | "no_return_secs" | "schedule_interval_secs" => [json!(600), json!(700), json!(800)],
        "pools" => [
            json!([{"pool": "a", "type": "affinity"}]),
            json!([{"pool": "b", "type": "anti-affinity"}]),
            json!([{"pool": "c", "pin": ["n1"]}]),
        ],
        "ignore_nodes" | "ignore_guests" => [json!(["x*"]), json!(["y"]), json!(["z1", "z2"])],
        "balance_types" => [json!(["vm"]), json!(["ct"]), json!([])],
        "live" | "with_local_disks" => [json!(false), json!(true), json!(false)],
        "larger_guests_first" => [json!(true), json!(false), json!(true)],
        "windows" => [json!(["daily"]), json!(["sat,sun"]), json!(["mon-fri 22:00-06:00"])],
        other => panic!("no samples for `{other}`: add them (every field needs a precedence test)"),
    }
}

fn layer(field: &str, value: &Value) -> PolicyLayer {
    serde_json::from_value(json!({ field: value })).unwrap_or_else(|e| panic!("{field}: {e}"))
}

fn field_of(settings: &Settings, field: &str) -> Value {
    serde_json::to_value(settings).unwrap()[field].clone()
}

/// `value` as `Settings` writes it back (defaults filled in, e.g. a pool's `strict`).
fn normal(field: &str, value: &Value) -> Value {
    let mut settings = Settings::default();
    layer(field, value).overlay(&mut settings, &mut Sources::new(), Source::Default);
    field_of(&settings, field)
}

#[test]
fn every_field_is_won_by_the_highest_layer_that_sets_it() {
    for field in PolicyLayer::FIELDS {
        let [file, stored, request] = samples(field);
        let (f, s, r) = (layer(field, &file), layer(field, &stored), layer(field, &request));
        let none = PolicyLayer::default();
        let cases = [
            (vec![(Source::File, &f)], &file, Source::File),
            (vec![(Source::File, &f), (Source::Stored, &s)], &stored, Source::Stored),
            (
                vec![(Source::File, &f), (Source::Stored, &s), (Source::Request, &r)],
                &request,
                Source::Request,
            ),
            (
                vec![(Source::File, &f), (Source::Stored, &none), (Source::Request, &none)],
                &file,
                Source::File,
            ),
        ];
        for (layers, want, source) in cases {
            let (settings, sources) = resolve(&layers);
            assert_eq!(field_of(&settings, field), normal(field, want), "{field} from {source:?}");
            assert_eq!(sources.get(*field), Some(&source), "{field}");
            assert_eq!(settings.check(), Ok(()), "{field}: sample values must be valid");
        }
        let (defaults, sources) = resolve(&[]);
        assert_eq!(field_of(&defaults, field), field_of(&Settings::default(), field));
        assert!(sources.is_empty());
    }
}

#[test]
fn every_field_changes_the_plan_request_or_the_execution() {
    // A field that changes neither would be a key that silently does nothing.
    let execution_only =
        ["balance_types", "schedule_interval_secs", "windows", "max_parallel", "max_per_node"];
    for field in PolicyLayer::FIELDS {
        let [a, b, _] = samples(field);
        let (sa, _) = resolve(&[(Source::File, &layer(field, &a))]);
        let (sb, _) = resolve(&[(Source::File, &layer(field, &b))]);
        let (mut ra, mut rb) = (PlanRequest::default(), PlanRequest::default());
        sa.apply_to(&mut ra);
        sb.apply_to(&mut rb);
        let request_differs = serde_json::to_value(&ra).unwrap() != serde_json::to_value(&rb).unwrap();
        assert!(
            request_differs || execution_only.contains(field),
            "{field}: {a} and {b} make the same plan request"
        );
    }
}

#[test]
fn null_clears_an_optional_field_set_below() {
    let file = layer("level", &json!(3));
    let stored: PolicyLayer = serde_json::from_value(json!({"level": null})).unwrap();
    let (settings, sources) = resolve(&[(Source::File, &file), (Source::Stored, &stored)]);
    assert_eq!(settings.level, None);
    assert_eq!(sources["level"], Source::Stored);
}

#[test]
fn a_misspelt_or_ill_typed_field_is_refused_by_name() {
    let e = serde_json::from_value::<PolicyLayer>(json!({"balanciess": 5})).unwrap_err().to_string();
    assert!(e.contains("unknown field `balanciess`"), "{e}");
    let e = serde_json::from_value::<PolicyLayer>(json!({"max_moves": "many"})).unwrap_err().to_string();
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn overrides_are_checked_and_keep_the_base_request_s_own_fields() {
    let base = PlanRequest { memory_reserve: 1, psi_threshold: 33.0, ..PlanRequest::default() };
    let view =
        PolicyView { settings: Settings::default(), sources: Sources::new(), request: base, bandwidth: None };
    let got = view.with_overrides(&layer("balanciness", &json!(2.0))).unwrap();
    assert_eq!((got.request.balanciness, got.request.psi_threshold), (2.0, 33.0));
    assert_eq!(got.sources["balanciness"], Source::Request);
    let bad = view.with_overrides(&layer("balanciness", &json!(500.0))).unwrap_err();
    assert_eq!(bad.field, "balanciness");
}

#[test]
fn each_limit_names_its_field() {
    assert_eq!(Settings::default().check(), Ok(()));
    type Spoil = fn(&mut Settings);
    let cases: [(&str, Spoil); 13] = [
        ("migration_bandwidth_mib_s", |s| s.migration_bandwidth_mib_s = Some(0.0)),
        ("balanciness", |s| s.balanciness = 101.0),
        ("min_gain", |s| s.min_gain = f64::NAN),
        ("level", |s| s.level = Some(9)),
        ("max_moves", |s| s.max_moves = 10_001),
        ("max_gib", |s| s.max_gib = Some(0.0)),
        ("cpu_threshold", |s| s.cpu_threshold = Some(-1.0)),
        ("memory_reserve_gib", |s| s.memory_reserve_gib = -2.0),
        ("pools", |s| {
            s.pools = vec![PoolRule { pool: "p".into(), kind: Some("affinty".into()), ..Default::default() }]
        }),
        ("schedule_interval_secs", |s| s.schedule_interval_secs = Some(5)),
        ("max_parallel", |s| s.max_parallel = 0),
        ("max_per_node", |s| s.max_per_node = 65),
        ("ignore_guests", |s| s.ignore_guests = vec!["a b".into()]),
    ];
    for (field, spoil) in cases {
        let mut s = Settings::default();
        spoil(&mut s);
        assert_eq!(s.check().unwrap_err().field, field);
    }
}

#[test]
fn guests_outside_balance_types_and_running_vms_without_live_stay_with_the_key_as_reason() {
    let vm = Guest { vmid: 1, kind: GuestKind::Qemu, status: GuestStatus::Running, ..Default::default() };
    let ct = Guest { vmid: 2, kind: GuestKind::Lxc, status: GuestStatus::Running, ..Default::default() };
    let stopped_vm = Guest { status: GuestStatus::Stopped, ..vm.clone() };
    let only_vms = Settings { balance_types: vec![BalanceType::Vm], ..Settings::default() }.staying_guests();
    assert_eq!(only_vms.why(&ct), Some(("balance_types", "ct not listed")));
    assert_eq!(only_vms.why(&vm), None);
    let offline = Settings { live: false, ..Settings::default() }.staying_guests();
    assert!(offline.why(&vm).is_some_and(|(k, _)| k == "live"));
    assert_eq!(offline.why(&stopped_vm), None);
    assert_eq!(offline.why(&ct), None);
    let nothing = Settings { balance_types: vec![], ..Settings::default() };
    assert_eq!(nothing.staying_guests().why(&ct), None, "empty plans everything, executes nothing");
    assert!(!nothing.executes(GuestKind::Lxc));
}

#[test]
fn a_plan_with_vms_only_moves_no_container_and_says_why() {
    let snapshot = crate::testkit::cluster(7, 4, 60);
    // Moves priced as free: the test is about which guests may move, not which moves pay.
    let mut all =
        PlanRequest { balanciness: 1.0, max_moves: 200, seconds_per_point: 1e9, ..PlanRequest::default() };
    Settings { balanciness: 1.0, max_moves: 200, ..Settings::default() }.apply_to(&mut all);
    let kind = |vmid: u32| snapshot.guests.iter().find(|g| g.vmid == vmid).unwrap().kind;
    let plan = crate::planner::plan(&snapshot, &all);
    assert!(plan.steps.iter().any(|s| kind(s.vmid) == GuestKind::Lxc), "the sample must move a CT at all");
    let mut vms = all.clone();
    Settings {
        balanciness: 1.0,
        max_moves: 200,
        balance_types: vec![BalanceType::Vm],
        ..Settings::default()
    }
    .apply_to(&mut vms);
    let plan = crate::planner::plan(&snapshot, &vms);
    assert!(!plan.steps.is_empty());
    assert!(plan.steps.iter().all(|s| kind(s.vmid) == GuestKind::Qemu), "{:?}", plan.steps);
    let ct = snapshot.guests.iter().find(|g| g.kind == GuestKind::Lxc).unwrap();
    let why = plan.why_not.iter().find(|w| w.vmid == ct.vmid).map(|w| w.reason.clone()).unwrap_or_default();
    assert!(why.contains("balance_types"), "{why}");
}

#[test]
fn one_shot_plans_run_until_balanced_unless_the_request_caps_them() {
    let view = PolicyView {
        settings: Settings::default(),
        sources: Sources::new(),
        request: PlanRequest::default(),
        bandwidth: None,
    };
    let stored = view.with_overrides(&layer("max_moves", &json!(7))).unwrap();
    assert_eq!(stored.request.max_moves, 7, "the scheduled run keeps the per-cycle cap");
    let mut from_store = stored.clone();
    from_store.sources.insert("max_moves".into(), Source::Stored);
    assert_eq!(from_store.one_shot().request.max_moves, PlanRequest::UNCAPPED);
    assert_eq!(stored.one_shot().request.max_moves, 7, "a request's own cap stays");
}
