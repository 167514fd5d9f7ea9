//! The fixed, seeded suite: every scenario is `pve_sim::generate(seed, nodes, guests)` plus a
//! deterministic reshaping (node sizes, rules, maintenance, pre-balanced placement).

use pve_sim::scenario::{GuestStatus, HaRuleSpec, HaSpec, StorageSpec};
use pve_sim::Scenario;
use shared::rules::RuleConfig;

/// How the generated cluster is reshaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// As generated: mixed node sizes (16–1024 GiB), skewed placement.
    Heterogeneous,
    /// Every node the same size, same skewed placement.
    Homogeneous,
    /// Heterogeneous plus pins, affinity, anti-affinity, ignores and PVE HA rules, several of
    /// them broken at the start.
    RuleHeavy,
    /// Heterogeneous, with `pve2` in maintenance (HA maintenance in the simulator, and
    /// `maintenance_nodes` for both tools).
    Maintenance,
    /// Already balanced by a greedy spread (nothing should move).
    Balanced,
    /// Heterogeneous, with long-tailed guest sizes (Pareto: most guests 0.5–4 GiB, a few of
    /// 64–128 GiB), rescaled to the same overall use.
    LongTail,
    /// Node sizes from 64 GiB to 1 TiB in one cluster (64, 128, 256, 512, 1024 GiB in turn),
    /// the guests rescaled to the same overall use.
    MixedSizes,
    /// Heterogeneous, with about a third of the guests' disks on the node-local `local-lvm`
    /// (lvmthin) of their own node, 8–64 GiB or (about a third of them) 100–500 GiB, 50–100 %
    /// allocated; the other guests' disks on the shared `ceph`. Moving a local-disk guest copies
    /// its disk too.
    LocalDisk,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::Heterogeneous => "heterogeneous",
            Shape::Homogeneous => "homogeneous",
            Shape::RuleHeavy => "rule-heavy",
            Shape::Maintenance => "maintenance",
            Shape::Balanced => "already balanced",
            Shape::LongTail => "long-tailed guest sizes",
            Shape::MixedSizes => "mixed node sizes",
            Shape::LocalDisk => "local disks",
        }
    }
}

/// One scenario of the suite.
#[derive(Clone, Debug)]
pub struct Case {
    pub id: String,
    pub seed: u64,
    pub nodes: usize,
    pub guests: usize,
    pub shape: Shape,
}

/// The node put in maintenance by [`Shape::Maintenance`].
pub const MAINTENANCE_NODE: &str = "pve2";

/// The full suite, or the `--quick` subset (every shape once, small).
pub fn suite(quick: bool) -> Vec<Case> {
    let c = |id: &str, seed, nodes, guests, shape| Case { id: id.into(), seed, nodes, guests, shape };
    if quick {
        return vec![
            c("small-het", 11, 4, 40, Shape::Heterogeneous),
            c("small-hom", 12, 4, 40, Shape::Homogeneous),
            c("rules-small", 41, 4, 40, Shape::RuleHeavy),
            c("maint-small", 51, 4, 40, Shape::Maintenance),
            c("balanced-small", 61, 4, 40, Shape::Balanced),
            c("local-small", 91, 4, 40, Shape::LocalDisk),
        ];
    }
    vec![
        c("small-het", 11, 4, 40, Shape::Heterogeneous),
        c("small-hom", 12, 4, 40, Shape::Homogeneous),
        c("medium-het", 21, 16, 800, Shape::Heterogeneous),
        c("medium-hom", 22, 16, 800, Shape::Homogeneous),
        c("large-het", 31, 32, 3000, Shape::Heterogeneous),
        c("large-hom", 32, 32, 3000, Shape::Homogeneous),
        c("rules", 41, 8, 200, Shape::RuleHeavy),
        c("maintenance", 51, 8, 200, Shape::Maintenance),
        c("balanced", 61, 8, 200, Shape::Balanced),
        c("long-tail", 71, 24, 2500, Shape::LongTail),
        c("mixed-sizes", 81, 12, 500, Shape::MixedSizes),
        c("local-disk", 91, 12, 400, Shape::LocalDisk),
    ]
}

/// What a case gives both tools: the simulator scenario, our extra rule config and ProxLB's
/// extra YAML (under `proxmox_cluster:`).
pub struct Built {
    pub scenario: Scenario,
    pub rules: RuleConfig,
    pub proxlb_cluster_yaml: String,
}

/// Used GiB a running guest puts on its node.
fn need(g: &pve_sim::GuestSpec) -> f64 {
    if g.status != GuestStatus::Running {
        return 0.0;
    }
    g.memory_used_gib.unwrap_or(g.memory_gib * g.memory_used.unwrap_or(0.6))
}

fn node_index(sc: &Scenario, name: &str) -> usize {
    sc.nodes.iter().position(|n| n.name == name).unwrap_or(0)
}

/// Used GiB per node (overhead included) and capacity left below 92 % for guests.
pub(crate) fn loads(sc: &Scenario) -> Vec<f64> {
    let mut l: Vec<f64> = sc.nodes.iter().map(|n| n.overhead.memory_gib).collect();
    for g in &sc.guests {
        l[node_index(sc, &g.node)] += need(g);
    }
    l
}

/// Moves guests off nodes above 92 % to the least-used node (bounded: one pass over the guests).
pub(crate) fn fix_overflow(sc: &mut Scenario) {
    let mut l = loads(sc);
    for j in 0..sc.guests.len() {
        let i = node_index(sc, &sc.guests[j].node);
        if l[i] <= sc.nodes[i].memory_gib * 0.92 {
            continue;
        }
        let n = need(&sc.guests[j]);
        let best = (0..sc.nodes.len())
            .min_by(|a, b| (l[*a] / sc.nodes[*a].memory_gib).total_cmp(&(l[*b] / sc.nodes[*b].memory_gib)))
            .unwrap_or(0);
        l[i] -= n;
        l[best] += n;
        sc.guests[j].node = sc.nodes[best].name.clone();
    }
}

/// Builds a case deterministically.
pub fn build(case: &Case) -> Built {
    let mut sc = pve_sim::generate(case.seed, case.nodes, case.guests);
    let mut rules = RuleConfig::default();
    let mut proxlb_cluster_yaml = String::new();
    match case.shape {
        Shape::Heterogeneous => {}
        Shape::Homogeneous => {
            let used: f64 = sc.guests.iter().map(need).sum();
            let per = used / 0.55 / sc.nodes.len() as f64 + 2.0;
            let size = ((per / 16.0).ceil() * 16.0).max(32.0);
            for n in sc.nodes.iter_mut() {
                n.cpus = 48;
                n.memory_gib = size;
            }
            fix_overflow(&mut sc);
        }
        Shape::Balanced => {
            let mut order: Vec<usize> = (0..sc.guests.len()).collect();
            order.sort_by(|a, b| need(&sc.guests[*b]).total_cmp(&need(&sc.guests[*a])).then(a.cmp(b)));
            let mut l: Vec<f64> = sc.nodes.iter().map(|n| n.overhead.memory_gib).collect();
            for j in order {
                let n = need(&sc.guests[j]);
                let best = (0..sc.nodes.len())
                    .min_by(|a, b| {
                        ((l[*a] + n) / sc.nodes[*a].memory_gib)
                            .total_cmp(&((l[*b] + n) / sc.nodes[*b].memory_gib))
                    })
                    .unwrap_or(0);
                l[best] += n;
                sc.guests[j].node = sc.nodes[best].name.clone();
            }
        }
        Shape::Maintenance => {
            if let Some(n) = sc.nodes.iter_mut().find(|n| n.name == MAINTENANCE_NODE) {
                n.maintenance = true;
            }
            rules.maintenance_nodes = vec![MAINTENANCE_NODE.into()];
            proxlb_cluster_yaml = format!("  maintenance_nodes: ['{MAINTENANCE_NODE}']\n");
        }
        Shape::RuleHeavy => add_rules(&mut sc),
        Shape::LongTail => {
            for (j, g) in sc.guests.iter_mut().enumerate() {
                // Pareto, α = 1.2, from 0.5 GiB, capped at 128 GiB; deterministic per guest.
                let u = unit(case.seed, j as u64);
                g.memory_gib = (0.5 * (1.0 - u).powf(-1.0 / 1.2)).min(128.0);
                g.memory_used_gib = None;
            }
            rescale_guests(&mut sc, 0.55);
            fix_overflow(&mut sc);
        }
        Shape::MixedSizes => {
            for (i, n) in sc.nodes.iter_mut().enumerate() {
                let size = [64.0, 128.0, 256.0, 512.0, 1024.0][i % 5];
                n.memory_gib = size;
                n.cpus = (size / 8.0).clamp(16.0, 128.0) as u32;
            }
            rescale_guests(&mut sc, 0.55);
            fix_overflow(&mut sc);
        }
        Shape::LocalDisk => local_disks(&mut sc, case.seed),
    }
    Built { scenario: sc, rules, proxlb_cluster_yaml }
}

/// The node-local storage of [`Shape::LocalDisk`] and the shared one beside it.
pub const LOCAL_STORAGE: &str = "local-lvm";
pub const SHARED_STORAGE: &str = "ceph";

/// [`Shape::LocalDisk`]: PVE's usual storages (`local` for ISOs and backups, `local-lvm` for
/// guest volumes on each node, plus a shared `ceph`) and a third of the guests on `local-lvm`.
fn local_disks(sc: &mut Scenario, seed: u64) {
    let storage = |id: &str, kind: &str, shared: bool, content: &str, size_gib: f64| StorageSpec {
        id: id.into(),
        kind: kind.into(),
        shared,
        content: content.into(),
        size_gib,
        nodes: vec![],
    };
    sc.storages = vec![
        storage("local", "dir", false, "iso,vztmpl,backup", 500.0),
        // Per node: room for every local disk the skewed placement may put there.
        storage(LOCAL_STORAGE, "lvmthin", false, "images,rootdir", 16384.0),
        storage(SHARED_STORAGE, "rbd", true, "images,rootdir", 65536.0),
    ];
    // One stream of draws per question (`unit(seed, j)` itself is the long tail's).
    let draw = |stream: u64, j: usize| unit(seed ^ (stream << 40), j as u64);
    for (j, g) in sc.guests.iter_mut().enumerate() {
        if draw(1, j) >= 1.0 / 3.0 {
            g.storage = Some(SHARED_STORAGE.into());
            continue;
        }
        g.storage = Some(LOCAL_STORAGE.into());
        let size = if draw(2, j) < 1.0 / 3.0 { 100.0 + 400.0 * draw(3, j) } else { 8.0 + 56.0 * draw(3, j) };
        g.disk_gib = (size / 4.0).round() * 4.0;
        g.disk_used = ((0.5 + 0.5 * draw(4, j)) * 100.0).round() / 100.0;
    }
}

/// A deterministic number in [0, 1) for (seed, i) (splitmix64).
fn unit(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Scales every guest's memory so that running guests use `share` of the nodes' memory (beyond
/// their overhead) in all, rounded to 0.25 GiB, at least 0.25 GiB.
fn rescale_guests(sc: &mut Scenario, share: f64) {
    let capacity: f64 = sc.nodes.iter().map(|n| n.memory_gib - n.overhead.memory_gib).sum();
    let used: f64 = sc.guests.iter().map(need).sum();
    if used <= 0.0 {
        return;
    }
    let k = capacity * share / used;
    for g in sc.guests.iter_mut() {
        g.memory_gib = ((g.memory_gib * k * 4.0).round() / 4.0).max(0.25);
    }
}

/// Running guests on `node`, in vmid order.
fn running_on(sc: &Scenario, node: &str) -> Vec<usize> {
    (0..sc.guests.len())
        .filter(|j| sc.guests[*j].node == node && sc.guests[*j].status == GuestStatus::Running)
        .collect()
}

/// Built through serde so that fields the simulator adds later keep their defaults.
fn ha_spec() -> HaSpec {
    serde_json::from_value(serde_json::json!({"state": "started"})).expect("HA spec")
}

fn ha_rule(v: serde_json::Value) -> HaRuleSpec {
    serde_json::from_value(v).expect("HA rule spec")
}

/// Pins, affinity, anti-affinity, ignores and HA rules, mostly on the busiest node so that
/// balancing has to deal with them.
fn add_rules(sc: &mut Scenario) {
    let l = loads(sc);
    let n = sc.nodes.len();
    let mut by_use: Vec<usize> = (0..n).collect();
    by_use.sort_by(|a, b| (l[*b] / sc.nodes[*b].memory_gib).total_cmp(&(l[*a] / sc.nodes[*a].memory_gib)));
    let hot = sc.nodes[by_use[0]].name.clone();
    let second = sc.nodes[by_use[1 % n]].name.clone();
    let cold = sc.nodes[by_use[n - 1]].name.clone();
    let on_hot = running_on(sc, &hot);
    let on_second = running_on(sc, &second);
    let mut it = on_hot.into_iter().chain(on_second).collect::<Vec<_>>().into_iter();
    let mut take = |k: usize| -> Vec<usize> { it.by_ref().take(k).collect() };
    // Anti-affinity groups co-located on the hot node (broken at the start).
    for (k, idx) in [take(3), take(3), take(2)].into_iter().enumerate() {
        for j in idx {
            sc.guests[j].tags.push(format!("plb_anti_affinity_ag{k}"));
        }
    }
    // Affinity groups (together on one node, as they should be).
    for (k, idx) in [take(2), take(3)].into_iter().enumerate() {
        for j in idx {
            sc.guests[j].tags.push(format!("plb_affinity_af{k}"));
        }
    }
    // Pins: some to their current node, some to elsewhere (broken at the start).
    for j in take(3) {
        let here = sc.guests[j].node.clone();
        sc.guests[j].tags.push(format!("plb_pin_{here}"));
    }
    for j in take(2) {
        sc.guests[j].tags.push(format!("plb_pin_{cold}"));
    }
    // Ignored guests on the hot node.
    for j in take(3) {
        sc.guests[j].tags.push("plb_ignore_keep".into());
    }
    // PVE HA rules: a negative resource affinity between two co-located guests, and a strict
    // node affinity to the current node plus the coldest one.
    let neg = take(2);
    let strict = take(1);
    for j in neg.iter().chain(&strict) {
        sc.guests[*j].ha = Some(ha_spec());
    }
    let sid = |sc: &Scenario, j: usize| format!("{}:{}", sc.guests[j].kind.ha_prefix(), sc.guests[j].vmid);
    if neg.len() == 2 {
        let resources: Vec<String> = neg.iter().map(|j| sid(sc, *j)).collect();
        sc.ha_rules.push(ha_rule(serde_json::json!({
            "rule": "keep-apart", "type": "resource-affinity", "resources": resources, "affinity": "negative"
        })));
    }
    if let Some(j) = strict.first() {
        let here = sc.guests[*j].node.clone();
        let resources = vec![sid(sc, *j)];
        sc.ha_rules.push(ha_rule(serde_json::json!({
            "rule": "stay-home", "type": "node-affinity", "resources": resources, "nodes": [here, cold], "strict": true
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_builds_deterministically_and_valid() {
        for case in suite(true) {
            let a = build(&case);
            let b = build(&case);
            assert_eq!(a.scenario, b.scenario, "{}", case.id);
            a.scenario.validate().unwrap();
            for (i, n) in a.scenario.nodes.iter().enumerate() {
                assert!(loads(&a.scenario)[i] <= n.memory_gib, "{} over capacity on {}", case.id, n.name);
            }
        }
    }

    #[test]
    fn new_shapes_are_valid_long_tailed_and_mixed() {
        let tail = build(&Case { id: "t".into(), seed: 71, nodes: 12, guests: 600, shape: Shape::LongTail });
        tail.scenario.validate().unwrap();
        let mut sizes: Vec<f64> = tail.scenario.guests.iter().map(|g| g.memory_gib).collect();
        sizes.sort_by(f64::total_cmp);
        let (median, top) = (sizes[sizes.len() / 2], sizes[sizes.len() - 1]);
        assert!(top >= 20.0 * median, "long tail: median {median} GiB, largest {top} GiB");
        let mixed =
            build(&Case { id: "m".into(), seed: 81, nodes: 12, guests: 500, shape: Shape::MixedSizes });
        mixed.scenario.validate().unwrap();
        let node_sizes: std::collections::BTreeSet<u64> =
            mixed.scenario.nodes.iter().map(|n| n.memory_gib as u64).collect();
        assert_eq!(node_sizes.len(), 5, "{node_sizes:?}");
        for b in [&tail, &mixed] {
            let l = loads(&b.scenario);
            let (used, cap): (f64, f64) =
                b.scenario.nodes.iter().zip(&l).fold((0.0, 0.0), |(u, c), (n, x)| (u + x, c + n.memory_gib));
            assert!((0.45..0.65).contains(&(used / cap)), "overall use {}", used / cap);
            for (n, x) in b.scenario.nodes.iter().zip(&l) {
                assert!(*x <= n.memory_gib, "{} over capacity", n.name);
            }
        }
    }

    #[test]
    fn local_disk_shape_puts_a_third_of_the_disks_on_their_own_nodes_local_storage() {
        let case = Case { id: "l".into(), seed: 91, nodes: 12, guests: 400, shape: Shape::LocalDisk };
        let b = build(&case);
        b.scenario.validate().unwrap();
        let storages = b.scenario.effective_storages();
        let st = |id: &str| storages.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("{id}"));
        let (local, shared): (Vec<_>, Vec<_>) =
            b.scenario.guests.iter().partition(|g| g.storage.as_deref() == Some(LOCAL_STORAGE));
        let share = local.len() as f64 / b.scenario.guests.len() as f64;
        assert!((0.25..0.42).contains(&share), "share of guests with local disks {share}");
        assert!(!st(LOCAL_STORAGE).shared && st(SHARED_STORAGE).shared);
        for g in &local {
            let s = st(LOCAL_STORAGE);
            assert!(
                s.nodes.is_empty() || s.nodes.contains(&g.node),
                "{}: no {LOCAL_STORAGE} on {}",
                g.vmid,
                g.node
            );
            assert!((8.0..=500.0).contains(&g.disk_gib) && (0.5..=1.0).contains(&g.disk_used), "{g:?}");
        }
        let large = local.iter().filter(|g| g.disk_gib >= 100.0).count();
        assert!(
            large * 5 >= local.len() && large * 2 <= local.len(),
            "{large} of {} local disks ≥ 100 GiB",
            local.len()
        );
        assert!(shared.iter().all(|g| g.storage.as_deref() == Some(SHARED_STORAGE)));
        // Only the disks change: memory and placement are the heterogeneous cluster's.
        let het = build(&Case { shape: Shape::Heterogeneous, ..case.clone() });
        assert_eq!(loads(&b.scenario), loads(&het.scenario));
        // The smoke suite's small instance has local disks too.
        let small = suite(true).into_iter().find(|c| c.shape == Shape::LocalDisk).expect("in --quick");
        let small = build(&small);
        assert!(small.scenario.guests.iter().any(|g| g.storage.as_deref() == Some(LOCAL_STORAGE)));
    }

    /// What our collector reads from the simulator is what the shape put there: each local-disk
    /// guest's allocated bytes on its own node, nothing for guests on shared storage; and the GiB
    /// moved of a migration counts that disk beside the memory.
    #[tokio::test]
    async fn the_collector_sees_each_guests_local_disk_on_its_own_node_and_gib_moved_counts_it() {
        let case = Case { id: "l".into(), seed: 91, nodes: 6, guests: 120, shape: Shape::LocalDisk };
        let b = build(&case);
        let sim = pve_sim::start(pve_sim::SimConfig::new(b.scenario.clone())).await.unwrap();
        let collected = crate::ours::collect(&sim).await;
        sim.shutdown().await;
        let (snap, _) = collected.unwrap();
        let gib = (1u64 << 30) as f64;
        let mut local = 0;
        for g in &b.scenario.guests {
            let got = snap.guests.iter().find(|s| s.vmid == g.vmid).expect("collected").local_disk_bytes;
            if g.storage.as_deref() == Some(LOCAL_STORAGE) {
                local += 1;
                let want = g.disk_gib * g.disk_used * gib;
                assert!((got as f64 - want).abs() < 1.0 + want * 1e-9, "{}: {got} B, want {want}", g.vmid);
            } else {
                assert_eq!(got, 0, "{}: on {SHARED_STORAGE}", g.vmid);
            }
        }
        assert!(local > 0);
        let g = snap.guests.iter().filter(|g| g.is_running()).max_by_key(|g| g.local_disk_bytes).unwrap();
        let mv = [(g.vmid, g.node.clone(), "elsewhere".to_string())];
        let want = (g.mem_used + g.local_disk_bytes) as f64 / gib;
        assert!((crate::metrics::gib_moved(&snap, &mv) - want).abs() < 1e-9);
        assert!((crate::metrics::local_gib_moved(&snap, &mv) - g.local_disk_bytes as f64 / gib).abs() < 1e-9);
        assert!(g.local_disk_bytes as f64 / gib >= 100.0, "the largest local disk");
    }

    #[test]
    fn rule_heavy_has_every_kind_of_rule() {
        let b = build(&Case { id: "r".into(), seed: 41, nodes: 8, guests: 200, shape: Shape::RuleHeavy });
        let tags: Vec<&String> = b.scenario.guests.iter().flat_map(|g| &g.tags).collect();
        for p in ["plb_anti_affinity_ag", "plb_affinity_af", "plb_pin_", "plb_ignore_"] {
            assert!(tags.iter().any(|t| t.starts_with(p)), "{p}");
        }
        assert_eq!(b.scenario.ha_rules.len(), 2);
        for r in &b.scenario.ha_rules {
            assert!(
                r.resources.iter().all(|s| s.starts_with("vm:") || s.starts_with("ct:")),
                "{:?}",
                r.resources
            );
        }
    }
}
