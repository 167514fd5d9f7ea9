//! Engine properties over random clusters, exhaustive optimum on tiny ones, and maintenance.

use crate::best_node::{best_node, NewGuest};
use crate::engine::problem::parse_version;
use crate::evacuate::{evacuate, headroom, return_home, EvacuationRequest, GuestHome};
use crate::model::{ClusterSnapshot, Guest, GuestStatus, Node, NodeStatus, RecentMigration};
use crate::plan::{Plan, PlanRequest, StepPurpose};
use crate::planner::{apply, plan};
use crate::rules::{policies, RuleConfig};
use proptest::prelude::*;

const GIB: u64 = 1 << 30;

fn node(name: &str, mem_gib: u64) -> Node {
    Node {
        name: name.into(),
        status: NodeStatus::Online,
        cpus: 32,
        mem_total: mem_gib * GIB,
        disk_total: 100 * GIB,
        ..Default::default()
    }
}

fn vm(vmid: u32, at: &str, mem_gib: u64, tags: &[&str]) -> Guest {
    Guest {
        vmid,
        name: format!("vm{vmid}"),
        node: at.into(),
        status: GuestStatus::Running,
        cpus: 2.0,
        cpu_used: 0.5,
        mem_max: mem_gib * GIB,
        mem_used: mem_gib * GIB,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn cluster(nodes: Vec<Node>, guests: Vec<Guest>) -> ClusterSnapshot {
    let mut s =
        ClusterSnapshot { nodes, guests, quorate: true, collected_at: 1_000_000, ..Default::default() };
    for n in s.nodes.iter_mut() {
        let on = s.guests.iter().filter(|g| g.node == n.name && g.is_running());
        n.mem_used = on.clone().map(|g| g.mem_used).sum();
        n.cpu_used = on.map(|g| g.cpu_used).sum();
    }
    s
}

/// Replays `plan` step by step and checks every intermediate state: memory within the reserve
/// on any node that received a guest, hard pins and hard anti-affinity never newly broken.
fn check_steps(s: &ClusterSnapshot, p: &Plan, req: &PlanRequest) -> Result<(), String> {
    let pol = policies(s, &req.rules);
    let mut at: std::collections::HashMap<u32, String> =
        s.guests.iter().map(|g| (g.vmid, g.node.clone())).collect();
    let mut mem: std::collections::HashMap<String, u64> =
        s.nodes.iter().map(|n| (n.name.clone(), n.mem_used)).collect();
    let apart_broken = |at: &std::collections::HashMap<u32, String>| -> usize {
        pol.apart
            .iter()
            .filter(|g| g.strength == crate::rules::Strength::Hard)
            .map(|g| {
                let mut nodes: Vec<&String> = g.vmids.iter().filter_map(|v| at.get(v)).collect();
                let n = nodes.len();
                nodes.sort();
                nodes.dedup();
                n - nodes.len()
            })
            .sum()
    };
    let mut broken = apart_broken(&at);
    for (i, st) in p.steps.iter().enumerate() {
        let g = s.guests.iter().find(|g| g.vmid == st.vmid).ok_or("unknown guest")?;
        if at.get(&g.vmid) != Some(&st.from) {
            return Err(format!("step {i}: {} is not on {}", g.vmid, st.from));
        }
        let node = s.node(&st.to).ok_or("unknown node")?;
        let used = if g.is_running() { g.mem_used } else { 0 };
        let cap = node.mem_total.saturating_sub(req.memory_reserve);
        // Transient: the guest holds memory on the target while the source still has it.
        let now = mem[&st.to] + used;
        if used > 0 && now > cap {
            return Err(format!("step {i}: {} over capacity ({now} > {cap})", st.to));
        }
        if let Some(allowed) = pol.guest(g.vmid).and_then(|p| p.allowed.as_ref()) {
            if !allowed.contains(&st.to) {
                return Err(format!("step {i}: {} pinned elsewhere", g.vmid));
            }
        }
        *mem.get_mut(&st.to).ok_or("node")? += used;
        *mem.get_mut(&st.from).ok_or("node")? -= used;
        at.insert(g.vmid, st.to.clone());
        let now_broken = apart_broken(&at);
        if now_broken > broken {
            return Err(format!("step {i}: anti-affinity broken"));
        }
        broken = now_broken;
    }
    Ok(())
}

const TAGS: [&str; 6] =
    ["", "plb_pin_n0", "plb_anti_affinity_a", "plb_anti_affinity_a", "plb_ignore", "plb_pin_n1"];

fn arb_cluster() -> impl Strategy<Value = ClusterSnapshot> {
    (2usize..6, prop::collection::vec((0usize..6, 1u64..16, 0u8..10, 0usize..12), 1..40)).prop_map(
        |(n, gs)| {
            let nodes = (0..n).map(|i| node(&format!("n{i}"), 64 + 32 * (i as u64 % 3))).collect::<Vec<_>>();
            let guests = gs
                .into_iter()
                .enumerate()
                .map(|(i, (at, mem, state, tag))| {
                    let t = TAGS.get(tag).copied().unwrap_or("");
                    let tags: Vec<&str> = if t.is_empty() { vec![] } else { vec![t] };
                    let mut g = vm(100 + i as u32, &format!("n{}", at % n), mem, &tags);
                    if state == 0 {
                        g.status = GuestStatus::Stopped;
                    }
                    g
                })
                .collect();
            cluster(nodes, guests)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn plans_are_valid_at_every_step_deterministic_and_stable(s in arb_cluster(), reserve in 0u64..4) {
        let req = PlanRequest { balanciness: 3.0, max_moves: 1000, memory_reserve: reserve * GIB, ..Default::default() };
        let p = plan(&s, &req);
        prop_assert_eq!(&p, &plan(&s, &req), "deterministic");
        if let Err(e) = check_steps(&s, &p, &req) {
            prop_assert!(false, "{}: {:?}", e, p.steps);
        }
        let after = apply(&s, &p);
        prop_assert_eq!(after.guests.len(), s.guests.len());
        let again = plan(&after, &req);
        prop_assert!(again.steps.is_empty(), "re-plan proposed {:?}\nfirst {:?}", again.steps, p.steps);
    }

    #[test]
    fn evacuation_empties_the_node_when_the_rest_has_room(s in arb_cluster()) {
        let mut s = s;
        for n in s.nodes.iter_mut().skip(1) {
            n.mem_total = 1 << 50; // ample room elsewhere
        }
        for g in s.guests.iter_mut() {
            g.tags.retain(|t| !t.starts_with("plb_pin") && !t.starts_with("plb_anti"));
        }
        let ev = EvacuationRequest { nodes: vec!["n0".into()], ..Default::default() };
        let p = evacuate(&s, &ev);
        if let Err(e) = check_steps(&s, &p, &ev.request) {
            prop_assert!(false, "{}", e);
        }
        let after = apply(&s, &p);
        let left: Vec<u32> = after.guests_on("n0").filter(|g| g.is_running()).map(|g| g.vmid).collect();
        prop_assert!(left.is_empty(), "still on n0: {:?} why {:?}", left, p.why_not);
        prop_assert!(p.steps.iter().all(|st| st.from == "n0" && st.purpose == StepPurpose::Evacuate));
    }
}

/// Imbalance (capacity-weighted std-dev of memory use, points) of an assignment.
fn imbalance(nodes: &[Node], mem: &[u64], at: &[usize]) -> f64 {
    let mut load = vec![0f64; nodes.len()];
    for (g, &n) in at.iter().enumerate() {
        load[n] += mem[g] as f64;
    }
    let ctot: f64 = nodes.iter().map(|n| n.mem_total as f64).sum();
    let s1: f64 = load.iter().sum();
    let s2: f64 = load.iter().zip(nodes).map(|(l, n)| l * l / n.mem_total as f64).sum();
    100.0 * (s2 / ctot - (s1 / ctot).powi(2)).max(0.0).sqrt()
}

/// Calls `f` with every assignment of guests (memory `mem`) to `nodes` that fits every node.
fn for_each_fitting_assignment(nodes: &[Node], mem: &[u64], mut f: impl FnMut(&[usize])) {
    let (n, count) = (nodes.len(), mem.len());
    let mut at = vec![0usize; count];
    loop {
        let fits = (0..n).all(|k| {
            at.iter().zip(mem).filter(|(a, _)| **a == k).map(|(_, m)| m).sum::<u64>() <= nodes[k].mem_total
        });
        if fits {
            f(&at);
        }
        let mut i = 0;
        while i < count && at[i] == n - 1 {
            at[i] = 0;
            i += 1;
        }
        if i == count {
            return;
        }
        at[i] += 1;
    }
}

#[test]
fn tiny_clusters_land_within_five_percent_of_the_exhaustive_optimum() {
    let mut rng = crate::testkit::Rng::new(7);
    let mut worst: f64 = 0.0;
    let mut within = 0;
    for case in 0..40 {
        let n = 3 + (case % 2) as usize;
        let count = if n == 3 { 9 } else { 7 };
        let nodes: Vec<Node> = (0..n).map(|i| node(&format!("n{i}"), 64 + 32 * (i as u64 % 2))).collect();
        let guests: Vec<Guest> = (0..count)
            .map(|i| vm(100 + i as u32, &format!("n{}", rng.range(0, n as u64 - 1)), rng.range(1, 12), &[]))
            .collect();
        let s = cluster(nodes.clone(), guests);
        let req = PlanRequest {
            balanciness: 0.0,
            min_gain: 1e-6,
            max_moves: 100,
            // Free moves: this one measures the search against the best balance alone.
            seconds_per_point: f64::INFINITY,
            ..Default::default()
        };
        let p = plan(&s, &req);
        let moves = p.steps.iter().filter(|st| st.purpose != StepPurpose::Park).count();
        let mem: Vec<u64> = s.guests.iter().map(|g| g.mem_used).collect();
        let home: Vec<usize> = s.guests.iter().map(|g| g.node[1..].parse().unwrap_or(0)).collect();
        // Best imbalance over every assignment with at most as many moved guests as ours.
        let mut best = f64::INFINITY;
        for_each_fitting_assignment(&nodes, &mem, |at| {
            let moved = at.iter().zip(&home).filter(|(a, h)| a != h).count();
            if moved <= moves {
                best = best.min(imbalance(&nodes, &mem, at));
            }
        });
        let ours = p.imbalance_after;
        // 5 % of the optimum, or a tenth of a point when the optimum is (near) perfect.
        if ours <= best * 1.05 + 0.1 {
            within += 1;
        } else {
            eprintln!(
                "case {case}: ours {ours:.2} with {moves} moves ({} steps), optimum {best:.2}; home {home:?} mem {:?}",
                p.steps.len(),
                mem.iter().map(|m| m / GIB).collect::<Vec<_>>()
            );
        }
        worst = worst.max(ours - best);
    }
    eprintln!("within 5% of the optimum: {within}/40, worst gap {worst:.2} points");
    // Local search alone stops in local optima here (34/40); the pair moves and the exhaustive
    // final phase must bring every case within 5 % at no more moves.
    assert_eq!(within, 40, "only {within}/40 within 5 %");
    assert!(worst < 0.1, "worst gap {worst:.2} points");
}

/// Tiny clusters with the default price of moves: our objective (imbalance term plus migration
/// seconds / `seconds_per_point`) within 5 % of the least objective over every assignment.
#[test]
fn tiny_clusters_land_within_five_percent_of_the_cost_weighted_optimum() {
    let mut rng = crate::testkit::Rng::new(11);
    let mut within = 0;
    let mut moved_any = 0;
    for case in 0..40 {
        let n = 3 + (case % 2) as usize;
        let count = if n == 3 { 9 } else { 7 };
        let nodes: Vec<Node> = (0..n).map(|i| node(&format!("n{i}"), 64 + 32 * (i as u64 % 2))).collect();
        let guests: Vec<Guest> = (0..count)
            .map(|i| vm(100 + i as u32, &format!("n{}", rng.range(0, n as u64 - 1)), rng.range(1, 12), &[]))
            .collect();
        let s = cluster(nodes.clone(), guests);
        let req = PlanRequest { balanciness: 0.0, min_gain: 1e-6, ..Default::default() };
        let p = plan(&s, &req);
        moved_any += usize::from(!p.steps.is_empty());
        let mem: Vec<u64> = s.guests.iter().map(|g| g.mem_used).collect();
        let home: Vec<usize> = s.guests.iter().map(|g| g.node[1..].parse().unwrap_or(0)).collect();
        let secs = |g: usize| {
            req.migration_setup_secs
                + mem[g] as f64 / GIB as f64 * 1024.0 / PlanRequest::DEFAULT_BANDWIDTH_MIB_S
        };
        let mut best = f64::INFINITY;
        for_each_fitting_assignment(&nodes, &mem, |at| {
            let imb = imbalance(&nodes, &mem, at);
            let cost: f64 = (0..count).filter(|&g| at[g] != home[g]).map(secs).sum();
            best = best.min(n as f64 * imb * imb / 100.0 + cost / req.seconds_per_point);
        });
        let ours = p.objective_after;
        if ours <= best * 1.05 + 0.01 {
            within += 1;
        } else {
            eprintln!("case {case}: ours {ours:.3} ({} steps), optimum {best:.3}", p.steps.len());
        }
    }
    eprintln!("cost-weighted: {within}/40 within 5 %, {moved_any} plans moved something");
    assert!(moved_any >= 20, "the price must not forbid moving: {moved_any}/40 plans moved");
    assert_eq!(within, 40, "only {within}/40 within 5 % of the cost-weighted optimum");
}

#[test]
fn evacuation_spreads_respects_rules_and_says_why() {
    let s = cluster(
        vec![node("a", 100), node("b", 100), node("c", 100)],
        vec![
            vm(1, "a", 20, &[]),
            vm(2, "a", 20, &[]),
            vm(3, "a", 10, &["plb_pin_a"]),
            vm(4, "a", 10, &["plb_anti_affinity_x"]),
            vm(5, "b", 10, &["plb_anti_affinity_x"]),
            vm(6, "c", 10, &["plb_anti_affinity_x"]),
        ],
    );
    let p = evacuate(&s, &EvacuationRequest { nodes: vec!["a".into()], ..Default::default() });
    let to: Vec<(u32, &str)> = p.steps.iter().map(|st| (st.vmid, st.to.as_str())).collect();
    assert!(to.contains(&(1, "b")) || to.contains(&(1, "c")), "{to:?}");
    let (t1, t2) =
        (p.steps.iter().find(|s| s.vmid == 1).unwrap(), p.steps.iter().find(|s| s.vmid == 2).unwrap());
    assert_ne!(t1.to, t2.to, "spread, not stacked");
    let stays: Vec<u32> = p.why_not.iter().map(|w| w.vmid).collect();
    assert!(stays.contains(&3) && stays.contains(&4), "{:?}", p.why_not);
    assert!(p.why_not.iter().any(|w| w.vmid == 4 && w.reason.contains("anti-affinity")), "{:?}", p.why_not);
    // And back home.
    let after = apply(&s, &p);
    let homes: Vec<GuestHome> =
        vec![GuestHome { vmid: 1, node: "a".into() }, GuestHome { vmid: 2, node: "a".into() }];
    let back = return_home(&after, &homes, &PlanRequest::default());
    assert_eq!(back.steps.len(), 2, "{:?}", back.steps);
    assert!(back.steps.iter().all(|s| s.to == "a" && s.purpose == StepPurpose::ReturnHome));
}

#[test]
fn maintenance_moves_only_what_it_drains_or_brings_home() {
    // 5 and 6 already break their anti-affinity on b: a plan repairs that, maintenance must not.
    let s = cluster(
        vec![node("a", 100), node("b", 100), node("c", 100)],
        vec![
            vm(1, "a", 20, &[]),
            vm(5, "b", 10, &["plb_anti_affinity_x"]),
            vm(6, "b", 10, &["plb_anti_affinity_x"]),
        ],
    );
    let p = evacuate(&s, &EvacuationRequest { nodes: vec!["a".into()], ..Default::default() });
    let moved: Vec<u32> = p.steps.iter().map(|st| st.vmid).collect();
    assert_eq!(moved, vec![1], "{:?}", p.steps);
    let after = apply(&s, &p);
    let back = return_home(&after, &[GuestHome { vmid: 1, node: "a".into() }], &PlanRequest::default());
    let moved: Vec<u32> = back.steps.iter().map(|st| st.vmid).collect();
    assert_eq!(moved, vec![1], "{:?}", back.steps);
    // The same snapshot planned normally does repair the rule.
    assert!(plan(&s, &PlanRequest::default()).steps.iter().any(|st| st.vmid == 5 || st.vmid == 6));
}

#[test]
fn maintenance_nodes_drain_in_a_normal_plan_and_leave_the_spread() {
    let s = cluster(
        vec![node("a", 100), node("b", 100), node("c", 100)],
        vec![vm(1, "a", 30, &[]), vm(2, "b", 10, &[])],
    );
    let req = PlanRequest {
        rules: RuleConfig { maintenance_nodes: vec!["a*".into()], ..Default::default() },
        ..Default::default()
    };
    let p = plan(&s, &req);
    assert_eq!(p.steps.len(), 1, "{:?}", p.steps);
    assert_eq!((p.steps[0].vmid, p.steps[0].to.as_str()), (1, "c"));
    assert_eq!(p.steps[0].purpose, StepPurpose::Evacuate);
}

#[test]
fn swaps_need_ordering_or_parking_and_stay_valid() {
    // a: 60 GiB guest, b: 20 GiB guest, both nodes 70 GiB with a third small node: a swap of the
    // two cannot run in either order without parking.
    let s = cluster(
        vec![node("a", 70), node("b", 70), node("c", 30)],
        vec![vm(1, "a", 60, &[]), vm(2, "b", 20, &[]), vm(3, "b", 20, &[]), vm(4, "c", 5, &[])],
    );
    let req = PlanRequest { balanciness: 1.0, min_gain: 0.01, ..Default::default() };
    let p = plan(&s, &req);
    check_steps(&s, &p, &req).unwrap();
    for (i, st) in p.steps.iter().enumerate() {
        assert!(st.depends_on.iter().all(|&d| d < i), "{:?}", p.steps);
    }
}

#[test]
fn cooldown_no_return_qemu_and_local_resources_hold() {
    let mut s = cluster(
        vec![node("a", 100), node("b", 100)],
        vec![vm(1, "a", 30, &[]), vm(2, "a", 30, &[]), vm(3, "a", 10, &[]), vm(4, "a", 10, &[])],
    );
    s.recent_migrations = vec![RecentMigration { vmid: 1, from: "b".into(), to: "a".into(), at: 999_000 }];
    s.guests[1].local_resources = vec!["hostpci0".into()];
    s.guests[2].running_qemu = Some("9.2.0".into());
    s.nodes[1].qemu_version = Some("9.0.2".into());
    let p = plan(&s, &PlanRequest { balanciness: 1.0, ..Default::default() });
    let moved: Vec<u32> = p.steps.iter().map(|st| st.vmid).collect();
    assert_eq!(moved, vec![4], "{:?} why {:?}", p.steps, p.why_not);
    let why = |v: u32| p.why_not.iter().find(|w| w.vmid == v).map(|w| w.reason.clone()).unwrap_or_default();
    assert!(why(1).contains("cooldown"), "{}", why(1));
    assert!(why(2).contains("hostpci0"), "{}", why(2));
    assert!(why(3).contains("QEMU") || why(3).contains("rules"), "{}", why(3));
    assert!(parse_version("9.2.0-1+pve2") > parse_version("9.0.10"));
}

#[test]
fn best_node_ranks_fitting_nodes_by_resulting_balance() {
    let s = cluster(
        vec![node("a", 100), node("b", 100), node("c", 16)],
        vec![vm(1, "a", 60, &["plb_anti_affinity_db"]), vm(2, "b", 20, &[])],
    );
    let g = NewGuest {
        name: "new".into(),
        cpus: 2.0,
        mem_bytes: 20 * GIB,
        tags: vec!["plb_anti_affinity_db".into()],
        ..Default::default()
    };
    let rank = best_node(&s, &g, &PlanRequest::default());
    assert_eq!(
        rank.iter().map(|r| (r.node.as_str(), r.fits)).collect::<Vec<_>>(),
        vec![("b", true), ("c", false), ("a", false)],
        "{rank:?}"
    );
}

#[test]
fn n_plus_one_headroom() {
    let s = cluster(vec![node("a", 64), node("b", 64)], vec![vm(1, "a", 40, &[]), vm(2, "b", 40, &[])]);
    let h = headroom(&s, &PlanRequest::default());
    assert!(h.iter().all(|c| !c.ok && c.stranded.len() == 1), "{h:?}");
    let s = cluster(vec![node("a", 64), node("b", 64)], vec![vm(1, "a", 20, &[]), vm(2, "b", 20, &[])]);
    assert!(headroom(&s, &PlanRequest::default()).iter().all(|c| c.ok));
}

#[test]
fn levels_budgets_and_weighted_mode() {
    let s = crate::testkit::cluster(3, 6, 120);
    let level1 = plan(&s, &PlanRequest { level: Some(1), ..Default::default() });
    assert!(level1.steps.is_empty());
    let p = plan(&s, &PlanRequest { level: Some(5), max_moves: 5, ..Default::default() });
    assert!(p.steps.len() <= 5 && !p.steps.is_empty());
    assert!(p.objective_after < p.objective_before);
    let gib = plan(&s, &PlanRequest { balanciness: 1.0, max_gib: Some(10.0), ..Default::default() });
    assert!(gib.gib_moved <= 10.0 + 1e-9, "{}", gib.gib_moved);
    let w = plan(
        &s,
        &PlanRequest { method: crate::plan::Method::Weighted, balanciness: 2.0, ..Default::default() },
    );
    assert!(w.spread_after <= w.spread_before);
    for st in &p.steps {
        assert!(st.reason.contains('%') && st.reason.contains('→'), "{}", st.reason);
    }
}

#[test]
fn local_disks_raise_the_price_and_the_cheaper_twin_moves() {
    // Two equal VMs on a hot node; one has 200 GiB on local storage. Balancing takes the other.
    let mut heavy = vm(101, "a", 8, &[]);
    heavy.local_disk_bytes = 200 * GIB;
    let s =
        cluster(vec![node("a", 64), node("b", 64)], vec![heavy, vm(102, "a", 8, &[]), vm(103, "a", 8, &[])]);
    let req = PlanRequest { balanciness: 5.0, ..Default::default() };
    let p = crate::engine::problem::build(&s, &req, Default::default());
    let secs = |vmid| p.guests.iter().find(|g| g.vmid == vmid).unwrap().secs;
    assert!(secs(101) > secs(102) + 200.0 * 1024.0 / PlanRequest::DEFAULT_BANDWIDTH_MIB_S - 1.0);
    let out = plan(&s, &req);
    assert!(!out.steps.is_empty(), "{:?}", out.notes);
    assert!(out.steps.iter().all(|st| st.vmid != 101), "{:?}", out.steps);
}

#[test]
fn bandwidth_is_configured_else_measured_from_past_migrations_else_the_default() {
    use crate::model::MigrationTiming;
    use crate::plan::BandwidthSource;
    let mut s = cluster(vec![node("a", 64), node("b", 64)], (1..=4).map(|i| vm(i, "a", 4, &[])).collect());
    let timing = |vmid, secs| MigrationTiming { vmid, secs };
    let req = PlanRequest::default();
    let bw = |s: &ClusterSnapshot, req: &PlanRequest| crate::engine::problem::bandwidth(s, req);
    assert_eq!(bw(&s, &req).source, BandwidthSource::Default);
    // 4 GiB each: 4096 MiB over (secs − 10 s set-up): 100, 200, 400 MiB/s, median 200; an
    // unknown guest, one within the set-up and a container (restart, no copy) say nothing.
    s.guests.push(crate::model::Guest { kind: crate::model::GuestKind::Lxc, ..vm(5, "a", 4, &[]) });
    s.migration_timings = vec![
        timing(1, 10 + 41),
        timing(2, 10 + 20),
        timing(5, 10 + 1),
        timing(3, 10 + 10),
        timing(99, 30),
        timing(4, 5),
    ];
    let got = bw(&s, &req);
    assert_eq!((got.source, got.migrations), (BandwidthSource::Measured, 3));
    assert!((got.mib_s - 204.8).abs() < 0.1, "{got:?}");
    assert!(got.describe().contains("measured from 3 past migrations"), "{}", got.describe());
    let p = plan(&s, &req);
    assert_eq!(p.bandwidth.as_ref().map(|b| b.source), Some(BandwidthSource::Measured));
    let set = PlanRequest { migration_bandwidth_mib_s: Some(900.0), ..req.clone() };
    assert_eq!((bw(&s, &set).source, bw(&s, &set).mib_s), (BandwidthSource::Configured, 900.0));
    // One absurd task cannot make moves free: bounded.
    s.migration_timings = vec![timing(1, 100_000), timing(2, 100_000), timing(3, 100_000)];
    assert_eq!(bw(&s, &req).mib_s, crate::engine::problem::MEASURED_RANGE.0);
    s.migration_timings.truncate(2);
    assert_eq!(bw(&s, &req).source, BandwidthSource::Default, "fewer than three: not measured");
}

#[test]
fn psi_without_pressure_says_so_and_psi_with_pressure_moves_off_the_hot_node() {
    let guests = (1..=6).map(|i| vm(i, if i <= 3 { "a" } else { "b" }, 8, &[])).collect();
    let mut s = cluster(vec![node("a", 64), node("b", 64), node("c", 64)], guests);
    s.guests.push(vm(7, "c", 16, &[]));
    let psi = PlanRequest { mode: crate::plan::Mode::Psi, balanciness: 50.0, ..Default::default() };
    let used = PlanRequest { mode: crate::plan::Mode::Used, ..psi.clone() };
    let p = plan(&s, &psi);
    assert!(p.notes.iter().any(|n| n.contains("no node reports pressure")), "{:?}", p.notes);
    assert!(p.steps.is_empty() && plan(&s, &used).steps.is_empty());
    s.nodes[0].pressure = Some(crate::model::Pressure { memory_some: 40.0, ..Default::default() });
    let p = plan(&s, &psi);
    assert!(!p.notes.iter().any(|n| n.contains("no node reports pressure")));
    assert!(p.steps.iter().any(|st| st.from == "a"), "{:?} {:?}", p.steps, p.notes);
    assert!(plan(&s, &used).steps.is_empty(), "mode used ignores pressure");
}
