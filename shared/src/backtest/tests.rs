use super::measure::Grid;
use super::*;
use crate::model::{Guest, GuestKind, GuestStatus, Node, NodeStatus};
use crate::plan::PlanRequest;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const T0: u64 = 1_700_000_000;
const HOURS: usize = 48;

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        status: NodeStatus::Online,
        cpus: 10,
        mem_total: (100.0 * GIB) as u64,
        disk_total: 1 << 40,
        ..Default::default()
    }
}

fn guest(vmid: u32, node: &str, tags: &[&str]) -> Guest {
    Guest {
        vmid,
        name: format!("g{vmid}"),
        kind: GuestKind::Qemu,
        node: node.into(),
        status: GuestStatus::Running,
        cpus: 2.0,
        mem_max: (32.0 * GIB) as u64,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// Nodes a, b, c (100 GiB, 10 cores, 2 GiB / 0.5 core own overhead); guests 1–4 of 20 GiB and
/// 1 core, all on `a` at the start; guest 1 really moved to `b` at hour 10.
fn history() -> History {
    let times: Vec<u64> = (0..HOURS as u64).map(|h| T0 + h * 3600).collect();
    let mut now =
        ClusterSnapshot { nodes: vec![node("a"), node("b"), node("c")], quorate: true, ..Default::default() };
    now.guests = vec![guest(1, "b", &[]), guest(2, "a", &[]), guest(3, "a", &[]), guest(4, "a", &[])];
    let flat = |v: f64| vec![Some(v); HOURS];
    let guests = (1..=4).map(|vmid| GuestHistory { vmid, cpu: flat(1.0), mem: flat(20.0 * GIB) }).collect();
    let moved = 10;
    let on_a = |h: usize| if h < moved { 4.0 } else { 3.0 };
    let on_b = |h: usize| if h < moved { 0.0 } else { 1.0 };
    let series =
        |f: &dyn Fn(usize) -> f64, own: f64, per: f64| (0..HOURS).map(|h| Some(own + per * f(h))).collect();
    let nodes = vec![
        NodeHistory {
            node: "a".into(),
            cpu: series(&on_a, 0.5, 1.0),
            mem: series(&on_a, 2.0 * GIB, 20.0 * GIB),
        },
        NodeHistory {
            node: "b".into(),
            cpu: series(&on_b, 0.5, 1.0),
            mem: series(&on_b, 2.0 * GIB, 20.0 * GIB),
        },
        NodeHistory { node: "c".into(), cpu: flat(0.5), mem: flat(2.0 * GIB) },
    ];
    let migrations = vec![PastMigration { vmid: 1, from: "a".into(), at: times[moved] - 60, started: 0 }];
    History { now, times, nodes, guests, migrations }
}

fn request(policies: Vec<NamedPolicy>) -> BacktestRequest {
    BacktestRequest {
        interval_secs: 3600,
        memory_threshold: 70.0,
        cpu_threshold: 90.0,
        spread_on: Resource::Memory,
        policies,
    }
}

fn balancing() -> NamedPolicy {
    NamedPolicy {
        name: "balance".into(),
        request: PlanRequest { seconds_per_point: 1e6, ..Default::default() },
    }
}

fn run_of<'r>(report: &'r BacktestReport, name: &str) -> &'r RunReport {
    report.runs.iter().find(|r| r.name == name).expect("run")
}

#[test]
fn nobody_keeps_the_start_and_actual_follows_the_task_log() {
    let report = run(&history(), &request(vec![])).unwrap();
    let nobody = run_of(&report, "nobody");
    assert_eq!(nobody.migrations, 0);
    // a = 2 + 80 GiB of 100, c = 2: 80 points the whole time, a above 70 % for 48 node-hours
    assert!(nobody.spread.iter().all(|s| (s - 80.0).abs() < 1e-9), "{:?}", nobody.spread);
    assert!((nobody.node_hours_over_memory - 48.0).abs() < 1e-9);
    let actual = run_of(&report, "actual");
    assert_eq!(actual.moves.len(), 1);
    let m = &actual.moves[0];
    assert_eq!((m.vmid, m.from.as_str(), m.to.as_str(), m.at), (1, "a", "b", T0 + 10 * 3600));
    assert!((actual.gib_moved - 20.0).abs() < 1e-6);
    // after the move a = 62 %, c = 2 %: 60 points; before, 80
    assert!((actual.spread[9] - 80.0).abs() < 1e-9 && (actual.spread[10] - 60.0).abs() < 1e-9);
    assert!((actual.node_hours_over_memory - 10.0).abs() < 1e-9, "{}", actual.node_hours_over_memory);
    assert!((report.days - 2.0).abs() < 1e-9 && (actual.migrations_per_day - 0.5).abs() < 1e-9);
}

#[test]
fn a_policy_replays_with_the_engine_and_beats_nobody() {
    let report = run(&history(), &request(vec![balancing()])).unwrap();
    let (nobody, policy) = (run_of(&report, "nobody"), run_of(&report, "balance"));
    assert_eq!(policy.kind, RunKind::Policy);
    assert!(policy.migrations >= 2, "{:?}", policy.moves);
    assert!(
        policy.moves.iter().all(|m| m.at == T0),
        "one run balances, later runs find nothing: {:?}",
        policy.moves
    );
    assert!(policy.spread_worst < nobody.spread_worst && policy.spread_worst <= 20.0 + 1e-9);
    assert_eq!(policy.node_hours_over_memory, 0.0);
    assert_eq!((policy.hard_violations, policy.reversals_24h, policy.ct_restarts), (0, 0, 0));
    let bytes: u64 = policy.moves.iter().map(|m| m.bytes).sum();
    assert!((policy.gib_moved - bytes as f64 / GIB).abs() < 1e-9);
}

#[test]
fn guests_created_later_are_absent_before() {
    let mut h = history();
    h.now.guests.push(guest(5, "c", &[]));
    let mut mem = vec![None; 24];
    mem.extend(vec![Some(40.0 * GIB); 24]);
    h.guests.push(GuestHistory { vmid: 5, cpu: mem.iter().map(|m| m.map(|_| 1.0)).collect(), mem });
    for v in h.nodes[2].mem.iter_mut().skip(24) {
        *v = Some(42.0 * GIB);
    }
    let report = run(&h, &request(vec![])).unwrap();
    let nobody = run_of(&report, "nobody");
    // first day a 82 / c 2; second day c carries guest 5: 82 − 2 = 80 (b at 2 % is the minimum)
    assert!((nobody.spread[23] - 80.0).abs() < 1e-9 && (nobody.spread[24] - 80.0).abs() < 1e-9);
    let snapshot = Grid::new(&h).snapshot(&Grid::new(&h).actual_at(23), 23, vec![]);
    assert!(!snapshot.guests.iter().any(|g| g.vmid == 5), "absent before its data starts");
    let snapshot = Grid::new(&h).snapshot(&Grid::new(&h).actual_at(24), 24, vec![]);
    assert_eq!(snapshot.nodes[2].mem_used, (42.0 * GIB) as u64);
}

#[test]
fn hard_rules_are_counted_and_kept_by_a_policy() {
    let mut h = history();
    for g in h.now.guests.iter_mut().filter(|g| g.vmid == 2 || g.vmid == 3) {
        g.tags = vec!["plb_anti_affinity_db".into()];
    }
    let report = run(&h, &request(vec![balancing()])).unwrap();
    // guests 2 and 3 share node a in the start placement, at each of the 48 hourly runs
    assert_eq!(run_of(&report, "nobody").hard_violations, 48);
    assert_eq!(run_of(&report, "balance").hard_violations, 0);
}

#[test]
fn reversals_count_returns_within_a_day() {
    let mv = |at: u64, from: &str, to: &str| Move {
        at,
        vmid: 7,
        from: from.into(),
        to: to.into(),
        bytes: 0,
        restart: false,
    };
    assert_eq!(reversals_within_day(&[mv(0, "a", "b"), mv(3600, "b", "a")]), 1);
    assert_eq!(reversals_within_day(&[mv(0, "a", "b"), mv(90_000, "b", "a")]), 0);
    assert_eq!(reversals_within_day(&[mv(0, "a", "b"), mv(3600, "b", "c")]), 0);
}

#[test]
fn bad_histories_and_requests_are_named() {
    let mut h = history();
    h.times[5] += 1;
    assert!(run(&h, &request(vec![])).unwrap_err().contains("equally spaced"));
    let mut h = history();
    h.guests[1].mem.pop();
    assert!(run(&h, &request(vec![])).unwrap_err().contains("guest 2"));
    let mut h = history();
    h.nodes[0].node = "zz".into();
    assert!(run(&h, &request(vec![])).unwrap_err().contains("node zz"));
    let mut r = request(vec![]);
    r.interval_secs = 5;
    assert!(run(&history(), &r).unwrap_err().contains("interval_secs"));
    r = request(vec![]);
    r.cpu_threshold = 120.0;
    assert!(run(&history(), &r).unwrap_err().contains("cpu_threshold"));
}

#[test]
fn the_replay_is_deterministic() {
    let req = request(vec![balancing()]);
    assert_eq!(run(&history(), &req).unwrap(), run(&history(), &req).unwrap());
}

#[test]
fn a_running_container_moved_counts_as_a_restart() {
    let mut h = history();
    h.now.guests[0].kind = GuestKind::Lxc;
    let report = run(&h, &request(vec![])).unwrap();
    let actual = run_of(&report, "actual");
    assert_eq!((actual.ct_restarts, actual.moves[0].restart), (1, true));
    h.now.guests[0].status = GuestStatus::Stopped;
    let report = run(&h, &request(vec![])).unwrap();
    assert_eq!(run_of(&report, "actual").ct_restarts, 0, "a stopped container just moves");
}
