use super::*;
use crate::model::{GuestKind, GuestStatus, NodeStatus};
use crate::plan::PlanStep;
use proptest::prelude::*;

const GIB: u64 = 1 << 30;

fn node(name: &str, mem_gib: u64) -> Node {
    Node {
        name: name.into(),
        status: NodeStatus::Online,
        cpus: 32,
        cpu_used: 0.0,
        mem_total: mem_gib * GIB,
        mem_used: 0,
        disk_total: 100 * GIB,
        disk_used: 0,
        maintenance: false,
        ..Default::default()
    }
}

fn vm(vmid: u32, node: &str, mem_gib: u64) -> Guest {
    Guest {
        vmid,
        name: format!("vm{vmid}"),
        kind: GuestKind::Qemu,
        node: node.into(),
        status: GuestStatus::Running,
        template: false,
        cpus: 2.0,
        cpu_used: 0.5,
        mem_max: mem_gib * GIB,
        mem_used: mem_gib * GIB,
        disk_max: 0,
        disk_used: 0,
        tags: vec![],
        pool: None,
        lock: None,
        ha_managed: false,
        ..Default::default()
    }
}

/// A snapshot whose node usage is exactly the sum of its running guests.
fn cluster(nodes: Vec<Node>, guests: Vec<Guest>) -> ClusterSnapshot {
    let mut s = ClusterSnapshot { nodes, guests, quorate: true, ..Default::default() };
    for n in s.nodes.iter_mut() {
        n.mem_used = s.guests.iter().filter(|g| g.node == n.name && g.is_running()).map(|g| g.mem_used).sum();
        n.cpu_used = s.guests.iter().filter(|g| g.node == n.name && g.is_running()).map(|g| g.cpu_used).sum();
    }
    s
}

fn imbalanced() -> ClusterSnapshot {
    let guests = (0..10).map(|i| vm(100 + i, "a", 8)).chain([vm(200, "b", 8)]).collect();
    cluster(vec![node("a", 100), node("b", 100), node("c", 100)], guests)
}

#[test]
fn moves_load_off_the_hot_node_and_narrows_the_spread() {
    let s = imbalanced();
    let p = plan(&s, &PlanRequest::default());
    assert!(!p.steps.is_empty());
    assert!(p.steps.iter().all(|st| st.from == "a"), "{:?}", p.steps);
    assert!((p.spread_before - 80.0).abs() < 1e-6, "{}", p.spread_before);
    assert!(p.spread_after <= 10.0, "spread after {}", p.spread_after);
    assert!(p.steps[0].reason.starts_with("a memory 80.0% → 72.0%, c 0.0% → 8.0%"), "{}", p.steps[0].reason);
}

#[test]
fn a_balanced_cluster_is_left_alone() {
    let s = cluster(vec![node("a", 100), node("b", 100)], vec![vm(1, "a", 10), vm(2, "b", 12)]);
    let p = plan(&s, &PlanRequest::default());
    assert!(p.steps.is_empty());
    assert!(p.notes[0].starts_with("balanced"), "{:?}", p.notes);
}

#[test]
fn ignored_pinned_locked_and_templates_stay_put() {
    let mut s = imbalanced();
    s.guests[0].tags = vec!["plb_ignore_db".into()];
    s.guests[1].tags = vec!["ignore".into()];
    s.guests[2].tags = vec!["plb_pin_A".into()]; // node match is case-insensitive
    s.guests[3].lock = Some("backup".into());
    s.guests[4].template = true;
    let p = plan(&s, &PlanRequest::default());
    let moved: Vec<u32> = p.steps.iter().map(|st| st.vmid).collect();
    for vmid in [100, 101, 102, 103, 104] {
        assert!(!moved.contains(&vmid), "{vmid} moved: {moved:?}");
    }
    assert!(!p.steps.is_empty());
}

#[test]
fn anti_affinity_keeps_group_members_apart() {
    let mut s = imbalanced();
    s.guests[10].tags = vec!["plb_anti_affinity_web".into()]; // on b
    for g in s.guests.iter_mut().take(2) {
        g.tags = vec!["plb_anti_affinity_web".into()];
    }
    let p = plan(&s, &PlanRequest::default());
    let tagged = |st: &&PlanStep| st.vmid == 100 || st.vmid == 101;
    assert!(p.steps.iter().filter(tagged).all(|st| st.to != "b"), "{:?}", p.steps);
    assert!(p.steps.iter().filter(tagged).filter(|st| st.to == "c").count() <= 1, "{:?}", p.steps);
    // A group larger than the cluster cannot hold: it becomes a preference, with a diagnostic.
    for g in s.guests.iter_mut() {
        g.tags = vec!["plb_anti_affinity_web".into()];
    }
    let p = plan(&s, &PlanRequest::default());
    assert!(p.diagnostics.iter().any(|d| d.message.contains("kept as a preference")), "{:?}", p.diagnostics);
}

#[test]
fn memory_reserve_is_never_used() {
    let s = cluster(vec![node("a", 100), node("b", 20)], (0..9).map(|i| vm(i, "a", 10)).collect());
    let req = PlanRequest { memory_reserve: 5 * GIB, balanciness: 1.0, ..Default::default() };
    let after = apply(&s, &plan(&s, &req));
    let b = after.node("b").unwrap();
    assert!(b.mem_used <= b.mem_total - 5 * GIB, "{} > {}", b.mem_used, b.mem_total - 5 * GIB);
}

fn arb_cluster() -> impl Strategy<Value = ClusterSnapshot> {
    (2usize..6, prop::collection::vec((0usize..6, 1u64..16, any::<bool>()), 1..40)).prop_map(|(n, gs)| {
        let nodes = (0..n).map(|i| node(&format!("n{i}"), 64 + 32 * (i as u64 % 3))).collect::<Vec<_>>();
        let guests = gs
            .into_iter()
            .enumerate()
            .map(|(i, (at, mem, running))| {
                let mut g = vm(100 + i as u32, &format!("n{}", at % n), mem);
                if !running {
                    g.status = GuestStatus::Stopped;
                }
                g
            })
            .collect();
        cluster(nodes, guests)
    })
}

proptest! {
    #[test]
    fn plans_conserve_guests_respect_capacity_and_do_not_oscillate(s in arb_cluster()) {
        let req = PlanRequest { balanciness: 5.0, ..Default::default() };
        let p = plan(&s, &req);
        prop_assert!(p.spread_after <= p.spread_before + 1e-9);
        prop_assert_eq!(&p, &plan(&s, &req), "deterministic");
        let after = apply(&s, &p);
        prop_assert_eq!(after.guests.len(), s.guests.len());
        for (n, was) in after.nodes.iter().zip(&s.nodes) {
            // A node that receives guests ends within its capacity (the input may start overcommitted).
            prop_assert!(n.mem_used <= was.mem_used || n.mem_used <= n.mem_total, "{} over capacity", n.name);
        }
        let again = plan(&after, &req);
        prop_assert!(again.steps.is_empty(), "re-plan proposed {:?}", again.steps);
    }
}

/// Balancing with moves priced low enough that every move toward balance pays.
fn cheap(req: PlanRequest) -> PlanRequest {
    PlanRequest { seconds_per_point: 10_000.0, ..req }
}

/// Thirty 4 GiB guests on one of three equal nodes: balancing takes about twenty moves.
fn many_small_on_one() -> ClusterSnapshot {
    let guests = (0..30).map(|i| vm(100 + i, "a", 4)).collect();
    cluster(vec![node("a", 128), node("b", 128), node("c", 128)], guests)
}

#[test]
fn an_uncapped_plan_goes_on_until_the_stop_band() {
    let s = many_small_on_one();
    let req = cheap(PlanRequest { balanciness: 5.0, ..Default::default() });
    assert_eq!(req.max_moves, PlanRequest::UNCAPPED, "one-shot plans are uncapped by default");
    let p = plan(&s, &req);
    assert!(p.steps.len() > 10, "{} steps", p.steps.len());
    assert!(p.spread_after <= 5.0, "spread after {}", p.spread_after);
    assert_eq!(p.remaining, None, "no cap, nothing remaining");
    assert!(p.migration_secs > 0.0);
}

#[test]
fn a_capped_plan_says_what_the_rest_would_take() {
    let s = many_small_on_one();
    let full = plan(&s, &cheap(PlanRequest { balanciness: 5.0, ..Default::default() }));
    let capped = plan(&s, &cheap(PlanRequest { balanciness: 5.0, max_moves: 4, ..Default::default() }));
    assert_eq!(capped.steps.len(), 4);
    let rest = capped.remaining.clone().expect("the cap stopped the plan");
    assert!(rest.moves > 0 && rest.gib > 0.0, "{rest:?}");
    assert!(rest.spread_after < capped.spread_after, "{rest:?} vs {}", capped.spread_after);
    // Going on from where the capped plan stopped ends about where the uncapped plan does.
    assert!(rest.spread_after <= 5.0, "{rest:?}");
    assert_eq!(capped.steps.len() as u32 + rest.moves, full.steps.len() as u32, "{rest:?}");
    assert!(capped.notes.iter().any(|n| n.contains("cap") && n.contains("more moves")), "{:?}", capped.notes);

    // A GiB cap stops it too, and says so the same way.
    let by_gib =
        plan(&s, &cheap(PlanRequest { balanciness: 5.0, max_gib: Some(10.0), ..Default::default() }));
    assert!(by_gib.gib_moved <= 10.0 + 1e-9, "{}", by_gib.gib_moved);
    assert!(by_gib.remaining.as_ref().is_some_and(|r| r.moves > 0), "{:?}", by_gib.remaining);
}

#[test]
fn a_cap_that_does_not_bind_leaves_nothing_remaining() {
    let s = many_small_on_one();
    let p = plan(&s, &cheap(PlanRequest { balanciness: 5.0, max_moves: 500, ..Default::default() }));
    assert!(p.spread_after <= 5.0);
    assert_eq!(p.remaining, None);
}

#[test]
fn a_move_that_does_not_pay_is_not_taken() {
    // At the end the last 4 GiB move (18 s at the defaults) would close a 6.25-point gap between
    // two of three nodes: a gain of 2·3.125·3.125/100 ≈ 0.2 points, worth 9 s at 45 s per point.
    let s = many_small_on_one();
    let p = plan(&s, &PlanRequest { balanciness: 5.0, ..Default::default() });
    assert!(p.spread_after > 5.0 && p.spread_after < 10.0, "{}", p.spread_after);
    assert!(p.notes.iter().any(|n| n.contains("no allowed move pays")), "{:?}", p.notes);
    // The same move at a price that values balance more is taken.
    let dearer = plan(&s, &PlanRequest { balanciness: 5.0, seconds_per_point: 200.0, ..Default::default() });
    assert!(dearer.spread_after <= 5.0, "{}", dearer.spread_after);
    assert!(dearer.steps.len() > p.steps.len());
    assert_eq!(dearer.priced_out, None, "it reached its stop band");
}

#[test]
fn a_plan_the_price_stopped_says_what_the_next_move_would_cost_and_from_which_price_it_pays() {
    let s = many_small_on_one();
    let req = PlanRequest { balanciness: 5.0, ..Default::default() };
    let p = plan(&s, &req);
    let next = p.priced_out.clone().expect("stopped by the price above the stop band");
    assert!((next.spread - p.spread_after).abs() < 1e-9, "{next:?} vs {}", p.spread_after);
    assert!(next.gain > 0.0 && next.gain < next.needed, "{next:?}");
    assert!(next.pays_at > req.seconds_per_point, "{next:?}");
    // The move it names is one the plan could make: from a node at the top to one below it.
    let use_of = |n: &str| p.after.iter().find(|l| l.node == n).map(|l| l.percent).expect("a node");
    assert!(use_of(&next.from) > use_of(&next.to), "{next:?} {:?}", p.after);
    let note = p.notes.iter().find(|n| n.contains("no allowed move pays")).expect("a note");
    assert!(note.contains(&format!("guest {}", next.vmid)) && note.contains("pays from"), "{note}");
    // At the price it names, the plan goes on past where it stopped.
    let at = plan(&s, &PlanRequest { seconds_per_point: next.pays_at.ceil() + 1.0, ..req.clone() });
    assert!(at.steps.len() > p.steps.len(), "{} vs {}", at.steps.len(), p.steps.len());
    assert!(at.spread_after < p.spread_after, "{} vs {}", at.spread_after, p.spread_after);
    // A cap that stops the plan is a different story: the plan says so, not the price.
    let capped = plan(&s, &PlanRequest { max_moves: 2, ..req });
    assert_eq!(capped.priced_out, None);
}

#[test]
fn every_plan_says_whether_the_cluster_survives_losing_its_largest_node() {
    // a holds 60 GiB of running guests; b and c have 40 + 20 GiB free after the plan: enough.
    let s = many_small_on_one();
    let p = plan(&s, &PlanRequest { balanciness: 5.0, ..Default::default() });
    let n1 = p.n_plus_one.clone().expect("three nodes");
    assert!(n1.ok, "{n1:?}");
    assert!(n1.mem_bytes > 0 && n1.stranded.is_empty());

    // Two nodes of 100 GiB, each 70 GiB full: neither can take the other's guests.
    let guests = (0..7).map(|i| vm(100 + i, "a", 10)).chain((0..7).map(|i| vm(200 + i, "b", 10))).collect();
    let full = cluster(vec![node("a", 100), node("b", 100)], guests);
    let p = plan(&full, &PlanRequest::default());
    let n1 = p.n_plus_one.expect("two nodes");
    assert_eq!(n1.node, "a", "ties go to the first node");
    assert!(!n1.ok);
    assert_eq!(n1.stranded.len(), 4, "3 of a's 7 guests fit in b's 30 free GiB: {n1:?}");
    assert_eq!(n1.stranded_mem_bytes, 40 * GIB);
}

proptest! {
    #[test]
    fn keep_n_plus_one_never_breaks_an_n_plus_one_that_holds(s in arb_cluster()) {
        let req = PlanRequest { balanciness: 5.0, keep_n_plus_one: true, ..Default::default() };
        let before = crate::evacuate::n_plus_one(&s, &req);
        let p = plan(&s, &req);
        if before.as_ref().is_some_and(|n| n.ok) {
            prop_assert!(p.n_plus_one.as_ref().is_some_and(|n| n.ok), "{:?} after {:?}", p.n_plus_one, p.steps);
        }
        // Without the option, the fact is still reported and the plan never ends worse balanced.
        let free = plan(&s, &PlanRequest { keep_n_plus_one: false, ..req.clone() });
        prop_assert_eq!(free.n_plus_one.is_some(), p.n_plus_one.is_some());
        prop_assert!(free.spread_after <= p.spread_after + 1e-9);
    }
}
