//! Each knob of `PlanRequest` changes the plan the way its documentation says: every test plans
//! the same small cluster twice, with and without the knob, and checks the difference (so a knob
//! that did nothing would fail its test).

use shared::model::{ClusterSnapshot, Guest, GuestStatus, Node, NodeStatus, RecentMigration};
use shared::plan::{Method, Mode, Plan, PlanRequest, ResourcePercents, ResourceWeights};
use shared::planner::{apply, node_loads, plan};

const GIB: u64 = 1 << 30;
const NOW: u64 = 1_000_000;

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        status: NodeStatus::Online,
        cpus: 32,
        mem_total: 100 * GIB,
        disk_total: 1000 * GIB,
        ..Default::default()
    }
}

/// A running guest using `mem_gib` of memory, `cpu` cores and `disk_gib` of disk.
fn guest(vmid: u32, at: &str, mem_gib: u64, cpu: f64, disk_gib: u64) -> Guest {
    Guest {
        vmid,
        name: format!("g{vmid}"),
        node: at.into(),
        status: GuestStatus::Running,
        cpus: 2.0,
        cpu_used: cpu,
        mem_max: mem_gib * GIB,
        mem_used: mem_gib * GIB,
        disk_max: disk_gib * GIB,
        disk_used: disk_gib * GIB,
        ..Default::default()
    }
}

/// `count` guests with ids from `first`, on `at`, of one shape.
fn guests(first: u32, count: u32, at: &str, mem_gib: u64, cpu: f64, disk_gib: u64) -> Vec<Guest> {
    (first..first + count).map(|v| guest(v, at, mem_gib, cpu, disk_gib)).collect()
}

/// Nodes' used figures are their running guests' sums (no host overhead).
fn cluster(nodes: &[&str], guests: Vec<Guest>) -> ClusterSnapshot {
    let mut s = ClusterSnapshot {
        nodes: nodes.iter().map(|n| node(n)).collect(),
        guests,
        quorate: true,
        collected_at: NOW,
        ..Default::default()
    };
    for n in s.nodes.iter_mut() {
        let on: Vec<&Guest> = s.guests.iter().filter(|g| g.node == n.name && g.is_running()).collect();
        n.mem_used = on.iter().map(|g| g.mem_used).sum();
        n.cpu_used = on.iter().map(|g| g.cpu_used).sum();
        n.disk_used = on.iter().map(|g| g.disk_used).sum();
    }
    s
}

fn moves(p: &Plan) -> Vec<(u32, &str, &str)> {
    p.steps.iter().map(|s| (s.vmid, s.from.as_str(), s.to.as_str())).collect()
}

fn why(p: &Plan, vmid: u32) -> String {
    p.why_not.iter().find(|w| w.vmid == vmid).map(|w| w.reason.clone()).unwrap_or_default()
}

/// Percent use of `method` per node after the plan, in node order.
fn percent_after(s: &ClusterSnapshot, p: &Plan, method: Method, mode: Mode) -> Vec<f64> {
    node_loads(&apply(s, p), method, mode).iter().map(|l| l.percent).collect()
}

fn spread(loads: &[f64]) -> f64 {
    loads.iter().cloned().fold(f64::MIN, f64::max) - loads.iter().cloned().fold(f64::MAX, f64::min)
}

/// Memory even (4 GiB a node), `a` busy in CPU (16 of 32 cores) and in disk (400 of 1000 GiB).
fn cpu_and_disk_heavy_a() -> ClusterSnapshot {
    let mut g = guests(1, 4, "a", 1, 4.0, 100);
    g.extend(guests(11, 4, "b", 1, 0.1, 1));
    cluster(&["a", "b"], g)
}

#[test]
fn the_cpu_method_evens_out_cpu_that_memory_does_not_see() {
    let s = cpu_and_disk_heavy_a();
    let by_memory = plan(&s, &PlanRequest::default());
    assert!(by_memory.steps.is_empty(), "memory is even: {:?}", moves(&by_memory));
    let by_cpu = plan(&s, &PlanRequest { method: Method::Cpu, ..Default::default() });
    assert!(!by_cpu.steps.is_empty(), "{:?}", by_cpu.why_not);
    assert!(
        moves(&by_cpu).iter().all(|&(v, from, to)| v <= 4 && from == "a" && to == "b"),
        "{:?}",
        moves(&by_cpu)
    );
    let before =
        spread(&node_loads(&s, Method::Cpu, Mode::Used).iter().map(|l| l.percent).collect::<Vec<_>>());
    let after = spread(&percent_after(&s, &by_cpu, Method::Cpu, Mode::Used));
    assert!(before > 45.0 && after <= 10.0, "cpu spread {before:.1} → {after:.1}");
}

#[test]
fn the_disk_method_evens_out_disk_that_memory_does_not_see() {
    let s = cpu_and_disk_heavy_a();
    let by_disk = plan(&s, &PlanRequest { method: Method::Disk, ..Default::default() });
    assert!(!by_disk.steps.is_empty(), "{:?}", by_disk.why_not);
    assert!(
        moves(&by_disk).iter().all(|&(v, from, to)| v <= 4 && from == "a" && to == "b"),
        "{:?}",
        moves(&by_disk)
    );
    let after = spread(&percent_after(&s, &by_disk, Method::Disk, Mode::Used));
    assert!(after <= 10.0, "disk spread after {after:.1}");
}

#[test]
fn the_weighted_method_follows_its_weights() {
    let s = cpu_and_disk_heavy_a();
    let weighted = |memory, cpu, disk| PlanRequest {
        method: Method::Weighted,
        weights: ResourceWeights { memory, cpu, disk },
        ..Default::default()
    };
    let memory_only = plan(&s, &weighted(1.0, 0.0, 0.0));
    assert!(memory_only.steps.is_empty(), "memory is even: {:?}", moves(&memory_only));
    let cpu_heavy = plan(&s, &weighted(0.2, 0.8, 0.0));
    assert!(!cpu_heavy.steps.is_empty(), "{:?}", cpu_heavy.why_not);
    assert!(
        moves(&cpu_heavy).iter().all(|&(_, from, to)| from == "a" && to == "b"),
        "{:?}",
        moves(&cpu_heavy)
    );
    assert!(
        cpu_heavy.spread_after < cpu_heavy.spread_before - 5.0,
        "{} → {}",
        cpu_heavy.spread_before,
        cpu_heavy.spread_after
    );
    let cpu_after = spread(&percent_after(&s, &cpu_heavy, Method::Cpu, Mode::Used));
    assert!(cpu_after < 20.0, "cpu spread after {cpu_after:.1}");
}

#[test]
fn assigned_mode_balances_configured_memory_not_used_memory() {
    // Same use (4 GiB) on both nodes; `a`'s guests are configured with 40 GiB each.
    let mut g = guests(1, 2, "a", 2, 0.5, 10);
    for x in &mut g {
        x.mem_max = 40 * GIB;
    }
    g.extend(guests(11, 2, "b", 2, 0.5, 10));
    let s = cluster(&["a", "b"], g);
    let used = plan(&s, &PlanRequest::default());
    assert!(used.steps.is_empty(), "{:?}", moves(&used));
    let assigned = plan(&s, &PlanRequest { mode: Mode::Assigned, ..Default::default() });
    assert_eq!(moves(&assigned).len(), 1, "{:?} {:?}", moves(&assigned), assigned.why_not);
    let (vmid, from, to) = moves(&assigned)[0];
    assert!(vmid <= 2 && from == "a" && to == "b", "{:?}", moves(&assigned));
}

#[test]
fn percentile_mode_balances_the_peaks() {
    // Same use now (4 GiB a node); `a`'s guests peaked at 30 GiB.
    let mut g = guests(1, 2, "a", 2, 0.5, 10);
    for x in &mut g {
        x.mem_p95 = Some(30 * GIB);
    }
    g.extend(guests(11, 2, "b", 2, 0.5, 10));
    let s = cluster(&["a", "b"], g);
    assert!(plan(&s, &PlanRequest::default()).steps.is_empty());
    let p95 = plan(&s, &PlanRequest { mode: Mode::Percentile, ..Default::default() });
    assert_eq!(moves(&p95).len(), 1, "{:?} {:?}", moves(&p95), p95.why_not);
    let (vmid, from, to) = moves(&p95)[0];
    assert!(vmid <= 2 && from == "a" && to == "b", "{:?}", moves(&p95));
}

#[test]
fn stop_spread_balances_further_than_the_trigger() {
    // 30 guests of 1 GiB on `a`: spread 30 points, over the trigger (balanciness 10).
    let s = cluster(&["a", "b"], guests(1, 30, "a", 1, 0.1, 1));
    // Moves priced as free, so the stop band alone decides how far the plan goes (the price of a
    // move is its own test: docs/ENGINE.md).
    let request = PlanRequest { max_moves: 30, seconds_per_point: 1e9, ..Default::default() };
    let to_trigger = plan(&s, &request);
    let deeper = plan(&s, &PlanRequest { stop_spread: Some(2.0), ..request.clone() });
    let (a, b) = (
        spread(&percent_after(&s, &to_trigger, Method::Memory, Mode::Used)),
        spread(&percent_after(&s, &deeper, Method::Memory, Mode::Used)),
    );
    assert!(a <= 10.0 && a > 2.0, "without stop_spread: {a:.1} after {} moves", to_trigger.steps.len());
    assert!(b <= 2.0, "stop_spread 2: {b:.1} after {} moves", deeper.steps.len());
    assert!(deeper.steps.len() > to_trigger.steps.len());
}

#[test]
fn an_overloaded_node_triggers_balancing_below_the_spread_trigger() {
    // 85 / 78 / 78 GiB: spread 7 points, under the trigger of 10.
    let mut g = guests(1, 85, "a", 1, 0.1, 1);
    g.extend(guests(101, 78, "b", 1, 0.1, 1));
    g.extend(guests(201, 78, "c", 1, 0.1, 1));
    let s = cluster(&["a", "b", "c"], g);
    assert!(plan(&s, &PlanRequest::default()).steps.is_empty());
    let request = PlanRequest {
        overload: ResourcePercents { memory: Some(82.0), ..Default::default() },
        ..Default::default()
    };
    let p = plan(&s, &request);
    assert!(!p.steps.is_empty(), "{:?}", p.why_not);
    assert!(moves(&p).iter().all(|&(_, from, _)| from == "a"), "{:?}", moves(&p));
    let after = percent_after(&s, &p, Method::Memory, Mode::Used);
    assert!(after.iter().all(|&x| x <= 82.0), "{after:?}");
}

#[test]
fn cpu_overcommit_keeps_vcpus_within_the_ratio() {
    // `a` is full of memory, `b` (8 cores) already runs 14 vCPUs; each of `a`'s guests has 4.
    let mut g = guests(1, 4, "a", 15, 0.5, 10);
    for x in &mut g {
        x.cpus = 4.0;
    }
    let mut busy = guest(11, "b", 1, 0.5, 10);
    busy.cpus = 14.0;
    g.push(busy);
    let mut s = cluster(&["a", "b"], g);
    for n in &mut s.nodes {
        n.cpus = 8;
    }
    let free = plan(&s, &PlanRequest::default());
    assert!(moves(&free).iter().any(|&(_, _, to)| to == "b"), "{:?} {:?}", moves(&free), free.why_not);
    let capped = plan(&s, &PlanRequest { cpu_overcommit: Some(2.0), ..Default::default() });
    assert!(
        capped.steps.is_empty(),
        "2 × 8 cores leaves no room for 4 more vCPUs on b: {:?}",
        moves(&capped)
    );
}

#[test]
fn max_moves_per_node_caps_the_moves_into_and_out_of_each_node() {
    let s = cluster(&["a", "b", "c", "d"], guests(1, 40, "a", 2, 0.1, 1));
    let free = plan(&s, &PlanRequest::default());
    assert!(free.steps.len() > 2, "{:?}", moves(&free));
    let capped = plan(&s, &PlanRequest { max_moves_per_node: Some(2), ..Default::default() });
    assert!(!capped.steps.is_empty());
    for n in ["a", "b", "c", "d"] {
        let touching = moves(&capped).iter().filter(|&&(_, from, to)| from == n || to == n).count();
        assert!(touching <= 2, "{n}: {touching} moves: {:?}", moves(&capped));
    }
}

/// `a` holds guest 1 (movable, moved there from `b` at `left_b_at`) and guest 2 (pinned).
fn moved_back_candidate(left_b_at: u64) -> ClusterSnapshot {
    let mut s = cluster(&["a", "b"], vec![guest(1, "a", 30, 0.5, 10), guest(2, "a", 30, 0.5, 10)]);
    s.guests[1].local_resources = vec!["hostpci0".into()];
    s.recent_migrations = vec![RecentMigration { vmid: 1, from: "b".into(), to: "a".into(), at: left_b_at }];
    s
}

#[test]
fn no_return_keeps_a_guest_off_the_node_it_left_after_its_cooldown() {
    // Two hours ago: past the cooldown (1 h), within no-return (a day).
    let s = moved_back_candidate(NOW - 7200);
    let held = plan(&s, &PlanRequest::default());
    assert!(held.steps.is_empty(), "{:?}", moves(&held));
    assert!(!why(&held, 1).contains("cooldown"), "held by no-return, not cooldown: {}", why(&held, 1));
    let allowed = plan(&s, &PlanRequest { no_return_secs: 0, ..Default::default() });
    assert_eq!(moves(&allowed), vec![(1, "a", "b")], "{:?}", allowed.why_not);
    // The cooldown alone, without no-return, holds it too when it is longer.
    let cooling = plan(&s, &PlanRequest { no_return_secs: 0, cooldown_secs: 10_000, ..Default::default() });
    assert!(cooling.steps.is_empty(), "{:?}", moves(&cooling));
    assert!(why(&cooling, 1).contains("cooldown"), "{}", why(&cooling, 1));
}

#[test]
fn no_return_ends_after_its_window() {
    let s = moved_back_candidate(NOW - 2 * 24 * 3600);
    assert_eq!(moves(&plan(&s, &PlanRequest::default())), vec![(1, "a", "b")]);
}
