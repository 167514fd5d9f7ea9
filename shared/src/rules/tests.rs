//! Table tests: every source, malformed input and conflicts.

use super::*;
use crate::model::{Guest, GuestStatus, HaRule, Node, NodeStatus};

fn node(name: &str) -> Node {
    Node { name: name.into(), status: NodeStatus::Online, cpus: 8, mem_total: 64 << 30, ..Default::default() }
}

fn guest(vmid: u32, name: &str, tags: &[&str]) -> Guest {
    Guest {
        vmid,
        name: name.into(),
        node: "pve1".into(),
        status: GuestStatus::Running,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn snapshot(guests: Vec<Guest>) -> ClusterSnapshot {
    ClusterSnapshot {
        nodes: vec![node("pve1"), node("PVE2"), node("pve3")],
        guests,
        quorate: true,
        ..Default::default()
    }
}

fn has_diag(p: &Policies, severity: Severity, needle: &str) -> bool {
    p.diagnostics.iter().any(|d| d.severity == severity && d.message.contains(needle))
}

#[test]
fn tags_of_every_dialect_become_typed_constraints() {
    // (tag, expected constraint on vmid 100 or None)
    let table: Vec<(&str, Option<ConstraintKind>)> = vec![
        ("plb_ignore_db", Some(ConstraintKind::Ignore { vmid: 100 })),
        ("plb_ignore", Some(ConstraintKind::Ignore { vmid: 100 })),
        ("ignore", Some(ConstraintKind::Ignore { vmid: 100 })),
        ("IGNORE", Some(ConstraintKind::Ignore { vmid: 100 })),
        ("plb_pin_pve2", Some(ConstraintKind::Pin { vmid: 100, nodes: vec!["PVE2".into()] })),
        (
            "plb_affinity_web",
            Some(ConstraintKind::Together { group: "plb_affinity_web".into(), vmids: vec![100] }),
        ),
        (
            "plb_include_web",
            Some(ConstraintKind::Together { group: "plb_include_web".into(), vmids: vec![100] }),
        ),
        (
            "plb_anti_affinity_db",
            Some(ConstraintKind::Apart { group: "plb_anti_affinity_db".into(), vmids: vec![100] }),
        ),
        ("plb_exclude_db", Some(ConstraintKind::Apart { group: "plb_exclude_db".into(), vmids: vec![100] })),
        ("exclude_db", Some(ConstraintKind::Apart { group: "exclude_db".into(), vmids: vec![100] })),
        ("production", None),
    ];
    for (tag, expected) in table {
        let s = snapshot(vec![guest(100, "a", &[tag])]);
        let set = compile(&s, &RuleConfig::default());
        let got = set.constraints.first().map(|c| c.kind.clone());
        assert_eq!(got, expected, "tag {tag}");
        if let Some(c) = set.constraints.first() {
            assert_eq!(c.source, RuleSource::Tag { vmid: 100, tag: tag.into() }, "tag {tag}");
            assert_eq!(c.strength, Strength::Hard);
        }
        assert!(set.diagnostics.is_empty(), "tag {tag}: {:?}", set.diagnostics);
    }
}

#[test]
fn malformed_and_dangling_tags_are_diagnosed_with_their_source() {
    let table = [
        ("plb_pin_", "malformed"),
        ("plb_pin", "malformed"),
        ("plb_pinpve1", "malformed"),
        ("plb_pin_nowhere", "not in the cluster"),
        ("plb_affinity_", "malformed"),
        ("plb_affinity", "malformed"),
        ("plb_anti_affinity", "malformed"),
        ("exclude_", "malformed"),
        ("plb_balance_me", "unknown ProxLB tag"),
    ];
    for (tag, needle) in table {
        let s = snapshot(vec![guest(7, "a", &[tag])]);
        let set = compile(&s, &RuleConfig::default());
        assert!(set.constraints.is_empty(), "{tag}: {:?}", set.constraints);
        assert_eq!(set.diagnostics.len(), 1, "{tag}");
        let d = &set.diagnostics[0];
        assert!(d.message.contains(needle), "{tag}: {}", d.message);
        assert_eq!(d.source, RuleSource::Tag { vmid: 7, tag: tag.into() });
        assert_eq!(d.vmids, vec![7]);
    }
}

#[test]
fn repeated_pin_tags_are_a_union_matched_case_insensitively() {
    let s = snapshot(vec![guest(1, "a", &["plb_pin_pve1", "plb_pin_pve2", "plb_pin_PVE3"])]);
    let p = policies(&s, &RuleConfig::default());
    assert_eq!(p.guest(1).unwrap().allowed, Some(vec!["PVE2".into(), "pve1".into(), "pve3".into()]));
}

#[test]
fn pools_give_affinity_anti_affinity_and_strict_or_soft_pins() {
    let mut gs = vec![guest(1, "a", &[]), guest(2, "b", &[]), guest(3, "c", &[]), guest(4, "d", &[])];
    for g in &mut gs[..2] {
        g.pool = Some("web".into());
    }
    for g in &mut gs[2..] {
        g.pool = Some("db".into());
    }
    let s = snapshot(gs);
    let config = RuleConfig {
        pools: vec![
            PoolRule {
                pool: "web".into(),
                kind: Some("affinity".into()),
                pin: vec!["pve1".into()],
                strict: true,
            },
            PoolRule {
                pool: "db".into(),
                kind: Some("anti-affinity".into()),
                pin: vec!["pve3".into()],
                strict: false,
            },
            PoolRule { pool: "empty".into(), ..Default::default() },
            PoolRule { pool: "web".into(), kind: Some("sideways".into()), ..Default::default() },
        ],
        ..Default::default()
    };
    let p = policies(&s, &config);
    assert_eq!(p.together.len(), 1);
    assert_eq!(p.together[0].vmids, vec![1, 2]);
    assert_eq!(p.together[0].source, RuleSource::Pool { pool: "web".into() });
    assert_eq!(p.apart.len(), 1);
    assert_eq!(p.apart[0].vmids, vec![3, 4]);
    assert_eq!(p.guest(1).unwrap().allowed, Some(vec!["pve1".into()]));
    assert_eq!(p.guest(3).unwrap().allowed, None);
    assert_eq!(p.guest(3).unwrap().preferred, Some(vec!["pve3".into()]));
    assert!(has_diag(&p, Severity::Info, "pool has no guests"));
    assert!(has_diag(&p, Severity::Warning, "unknown pool type 'sideways'"));
}

#[test]
fn config_lists_match_names_vmids_and_star_suffix_wildcards() {
    let s = snapshot(vec![
        guest(1, "dev-a", &[]),
        guest(2, "dev-b", &[]),
        guest(3, "prod", &[]),
        guest(4, "x", &[]),
    ]);
    let config = RuleConfig {
        ignore_guests: vec!["dev-*".into(), "nothing".into()],
        ignore_vms: vec!["4".into()],
        ignore_nodes: vec!["pve3".into()],
        maintenance_nodes: vec!["pve*".into(), "ghost".into()],
        ..Default::default()
    };
    let p = policies(&s, &config);
    let ignored: Vec<u32> = p.guests.iter().filter(|(_, g)| g.ignored.is_some()).map(|(v, _)| *v).collect();
    assert_eq!(ignored, vec![1, 2, 4]);
    assert_eq!(
        p.guest(1).unwrap().ignored,
        Some(RuleSource::Config { key: "ignore_guests".into(), value: "dev-*".into() })
    );
    assert_eq!(p.ignored_nodes.iter().collect::<Vec<_>>(), vec!["pve3"]);
    assert_eq!(p.maintenance_nodes.iter().collect::<Vec<_>>(), vec!["PVE2", "pve1", "pve3"]);
    assert!(has_diag(&p, Severity::Info, "matches no guest"));
    assert!(has_diag(&p, Severity::Warning, "matches no node"));
}

fn ha(rule: &str, kind: &str, resources: &str) -> HaRule {
    HaRule { rule: rule.into(), kind: kind.into(), resources: resources.into(), ..Default::default() }
}

#[test]
fn ha_rules_node_affinity_priorities_strictness_and_resource_affinity() {
    let s = ClusterSnapshot {
        ha_rules: vec![
            HaRule {
                nodes: "pve1:1,pve2:2,pve3:2".into(),
                strict: true,
                ..ha("prefer-23", "node-affinity", "vm:1")
            },
            HaRule { nodes: "pve1".into(), ..ha("soft", "node-affinity", "vm:2") },
            HaRule { affinity: "positive".into(), ..ha("pair", "resource-affinity", "vm:1,ct:2") },
            HaRule { affinity: "negative".into(), ..ha("split", "resource-affinity", "vm:3, vm:4") },
            HaRule {
                affinity: "negative".into(),
                disable: true,
                ..ha("off", "resource-affinity", "vm:1,vm:3")
            },
            HaRule { nodes: "pve1:x,nope".into(), ..ha("bad", "node-affinity", "vm:abc,vm:999,vm:4") },
            ha("weird", "cpu-affinity", "vm:1"),
        ],
        ..snapshot(vec![guest(1, "a", &[]), guest(2, "b", &[]), guest(3, "c", &[]), guest(4, "d", &[])])
    };
    let p = policies(&s, &RuleConfig::default());
    // Highest priority available group: PVE2 and pve3 (priority 2), strict = hard.
    assert_eq!(p.guest(1).unwrap().allowed, Some(vec!["PVE2".into(), "pve3".into()]));
    assert_eq!(p.guest(1).unwrap().allowed_source, Some(RuleSource::HaRule { rule: "prefer-23".into() }));
    assert_eq!(p.guest(2).unwrap().preferred, Some(vec!["pve1".into()]));
    assert_eq!(p.together.iter().map(|g| g.vmids.clone()).collect::<Vec<_>>(), vec![vec![1, 2]]);
    assert_eq!(p.apart.iter().map(|g| g.vmids.clone()).collect::<Vec<_>>(), vec![vec![3, 4]]);
    assert!(has_diag(&p, Severity::Info, "disabled; skipped"));
    assert!(has_diag(&p, Severity::Warning, "malformed priority"));
    assert!(has_diag(&p, Severity::Warning, "node 'nope' is not in the cluster"));
    assert!(has_diag(&p, Severity::Warning, "malformed resource 'vm:abc'"));
    assert!(has_diag(&p, Severity::Info, "'vm:999' is not in the snapshot"));
    assert!(has_diag(&p, Severity::Warning, "unknown rule type 'cpu-affinity'"));
    // pve1 is down: the strict rule falls back to the next available priority.
    let mut down = s.clone();
    down.nodes[1].status = NodeStatus::Offline;
    down.nodes[2].maintenance = true;
    let p = policies(&down, &RuleConfig::default());
    assert_eq!(p.guest(1).unwrap().allowed, Some(vec!["pve1".into()]));
}

#[test]
fn conflicts_become_diagnostics_never_panics() {
    let gs = vec![
        guest(1, "a", &["plb_affinity_x", "plb_anti_affinity_y", "plb_pin_pve1"]),
        guest(2, "b", &["plb_affinity_x", "plb_anti_affinity_y"]),
        guest(3, "c", &["plb_anti_affinity_big"]),
        guest(4, "d", &["plb_anti_affinity_big"]),
        guest(5, "e", &["plb_anti_affinity_big"]),
        guest(6, "f", &["plb_anti_affinity_big"]),
        guest(7, "g", &["plb_pin_pve3"]),
        guest(8, "h", &["plb_affinity_pinned", "plb_pin_pve1"]),
        guest(9, "i", &["plb_affinity_pinned", "plb_pin_pve2"]),
    ];
    let mut s = snapshot(gs);
    s.ha_rules.push(HaRule { nodes: "pve1".into(), strict: true, ..ha("r", "node-affinity", "vm:7") });
    let p = policies(&s, &RuleConfig::default());
    // affinity + anti-affinity on the same pair: anti-affinity wins.
    assert!(has_diag(
        &p,
        Severity::Error,
        "affinity 'plb_affinity_x' contradicts anti-affinity 'plb_anti_affinity_y'"
    ));
    assert!(p.together.iter().all(|g| g.name != "plb_affinity_x"));
    // 4 members, 3 nodes: downgraded to a preference.
    let big = p.apart.iter().find(|g| g.name == "plb_anti_affinity_big").unwrap();
    assert_eq!(big.strength, Strength::Soft);
    assert!(has_diag(&p, Severity::Warning, "has 4 guests but only 3 nodes"));
    // affinity members pinned apart.
    let pinned = p.together.iter().find(|g| g.name == "plb_affinity_pinned").unwrap();
    assert_eq!(pinned.strength, Strength::Soft);
    assert!(has_diag(&p, Severity::Error, "pinned to disjoint nodes"));
    // tag pin vs strict HA pin: HA wins.
    assert_eq!(p.guest(7).unwrap().allowed, Some(vec!["pve1".into()]));
    assert!(has_diag(&p, Severity::Error, "pin contradicts HA rule 'r'"));
}

#[test]
fn guest_rules_keeps_the_first_cuts_view() {
    let s = snapshot(vec![guest(1, "a", &["plb_pin_PVE1", "exclude_x", "plb_ignore"])]);
    let r = GuestRules::of(&s.guests[0], &s);
    assert!(r.ignored);
    assert_eq!(r.pinned_to, vec!["pve1"]);
    assert_eq!(r.anti_affinity, vec!["exclude_x"]);
    assert!(r.allows("pve1") && !r.allows("PVE2"));
}

#[test]
fn wildcards() {
    assert!(wildcard_match("pve*", "PVE12"));
    assert!(wildcard_match("*", "x"));
    assert!(!wildcard_match("pve", "pve1"));
    assert!(wildcard_match(" pve1 ", "pve1"));
}

mod conflicts {
    //! Each conflict diagnostic appears for generated conflicting inputs and never for
    //! consistent ones.
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn sized(name: &str, gib: u64, status: NodeStatus) -> Node {
        Node { name: name.into(), status, cpus: 8, mem_total: gib * GIB, ..Default::default() }
    }

    fn running(vmid: u32, node: &str, gib: u64, tags: &[String]) -> Guest {
        Guest {
            vmid,
            name: format!("g{vmid}"),
            node: node.into(),
            status: GuestStatus::Running,
            mem_used: gib * GIB,
            mem_max: gib * GIB,
            tags: tags.to_vec(),
            ..Default::default()
        }
    }

    fn count(p: &Policies, needle: &str) -> usize {
        p.diagnostics.iter().filter(|d| d.message.contains(needle)).count()
    }

    proptest! {
        #[test]
        fn an_affinity_group_larger_than_any_node_is_said_once_with_sizes(
            sizes in prop::collection::vec(16u64..128, 2..5),
            members in prop::collection::vec(1u64..48, 2..6),
        ) {
            let nodes: Vec<Node> =
                sizes.iter().enumerate().map(|(i, &g)| sized(&format!("n{i}"), g, NodeStatus::Online)).collect();
            let tag = vec!["plb_affinity_app".to_string()];
            let guests = members.iter().enumerate().map(|(i, &m)| running(100 + i as u32, "n0", m, &tag)).collect();
            let s = ClusterSnapshot { nodes, guests, quorate: true, ..Default::default() };
            let p = policies(&s, &RuleConfig::default());
            let need: u64 = members.iter().sum();
            let largest = *sizes.iter().max().unwrap_or(&0);
            let conflicting = need > largest;
            prop_assert_eq!(count(&p, "needs"), usize::from(conflicting), "{:?}", p.diagnostics);
            if conflicting {
                let d = p.diagnostics.iter().find(|d| d.message.contains("needs")).unwrap();
                let expected_need = format!("{:.1} GiB", need as f64);
                let expected_largest = format!("{:.1} GiB", largest as f64);
                prop_assert!(d.message.contains(&expected_need), "{}", d.message);
                prop_assert!(d.message.contains(&expected_largest), "{}", d.message);
                prop_assert_eq!(&d.source, &RuleSource::Tag { vmid: 100, tag: "plb_affinity_app".into() });
                prop_assert_eq!(d.vmids.len(), members.len());
            }
        }

        #[test]
        fn a_pin_to_nodes_that_take_no_guests_is_said_at_the_pin(
            states in prop::collection::vec(0u8..3, 2..5),
            pin_to in prop::collection::vec(0usize..5, 1..3),
        ) {
            // 0 online, 1 offline, 2 in maintenance.
            let nodes: Vec<Node> = states
                .iter()
                .enumerate()
                .map(|(i, &st)| {
                    let mut n = sized(&format!("n{i}"), 64, if st == 1 { NodeStatus::Offline } else { NodeStatus::Online });
                    n.maintenance = st == 2;
                    n
                })
                .collect();
            let pins: Vec<usize> = pin_to.iter().map(|&k| k % states.len()).collect();
            let tags: Vec<String> = pins.iter().map(|&k| format!("plb_pin_n{k}")).collect();
            let s = ClusterSnapshot { nodes, guests: vec![running(7, "n0", 4, &tags)], quorate: true, ..Default::default() };
            let p = policies(&s, &RuleConfig::default());
            let conflicting = pins.iter().all(|&k| states[k] != 0);
            prop_assert_eq!(count(&p, "pinned to nodes that take no guests"), usize::from(conflicting), "{:?}", p.diagnostics);
            if conflicting {
                let d = p.diagnostics.iter().find(|d| d.message.contains("take no guests")).unwrap();
                prop_assert!(matches!(d.source, RuleSource::Tag { vmid: 7, .. }), "{:?}", d.source);
                prop_assert_eq!(d.severity, Severity::Error);
                for &k in &pins {
                    let why = if states[k] == 1 { "offline" } else { "in maintenance" };
                    let expected = format!("n{k} {why}");
                    prop_assert!(d.message.contains(&expected), "{}", d.message);
                }
            }
        }

        #[test]
        fn an_anti_affinity_group_larger_than_the_nodes_its_members_may_use_is_said_once(
            node_count in 2usize..6,
            members in prop::collection::vec(prop::option::of(prop::collection::vec(0usize..6, 1..3)), 2..6),
        ) {
            let nodes: Vec<Node> = (0..node_count).map(|i| sized(&format!("n{i}"), 64, NodeStatus::Online)).collect();
            let guests: Vec<Guest> = members
                .iter()
                .enumerate()
                .map(|(i, pins)| {
                    let mut tags = vec!["plb_anti_affinity_db".to_string()];
                    tags.extend(pins.iter().flatten().map(|&k| format!("plb_pin_n{}", k % node_count)));
                    running(200 + i as u32, "n0", 2, &tags)
                })
                .collect();
            let s = ClusterSnapshot { nodes, guests, quorate: true, ..Default::default() };
            let p = policies(&s, &RuleConfig::default());
            let usable: std::collections::BTreeSet<usize> = members
                .iter()
                .flat_map(|pins| match pins {
                    Some(ks) => ks.iter().map(|&k| k % node_count).collect::<Vec<_>>(),
                    None => (0..node_count).collect(),
                })
                .collect();
            let conflicting = members.len() > usable.len();
            prop_assert_eq!(count(&p, "anti-affinity 'plb_anti_affinity_db' has"), usize::from(conflicting), "{:?}", p.diagnostics);
            let hard = p.apart.iter().any(|g| g.strength == Strength::Hard);
            prop_assert_eq!(hard, !conflicting, "a group that cannot hold is a preference");
        }

        #[test]
        fn a_config_pin_that_a_pve_ha_rule_contradicts_is_said_once(
            pool_node in 0usize..3,
            ha_node in 0usize..3,
        ) {
            let names = ["pve1", "PVE2", "pve3"];
            let mut g = guest(100, "a", &[]);
            g.pool = Some("prod".into());
            let s = ClusterSnapshot {
                ha_rules: vec![HaRule {
                    rule: "ha-pin".into(),
                    kind: "node-affinity".into(),
                    resources: "vm:100".into(),
                    nodes: names[ha_node].into(),
                    strict: true,
                    ..Default::default()
                }],
                ..snapshot(vec![g])
            };
            let config = RuleConfig {
                pools: vec![PoolRule { pool: "prod".into(), pin: vec![names[pool_node].into()], ..Default::default() }],
                ..Default::default()
            };
            let p = policies(&s, &config);
            let conflicting = pool_node != ha_node;
            let said: Vec<&Diagnostic> = p.diagnostics.iter().filter(|d| d.message.contains("contradicts")).collect();
            prop_assert_eq!(said.len(), usize::from(conflicting), "{:?}", p.diagnostics);
            if conflicting {
                prop_assert_eq!(&said[0].source, &RuleSource::Pool { pool: "prod".into() });
                prop_assert!(said[0].message.contains("ha-pin"), "{}", said[0].message);
                // PVE HA enforces its own rules: the HA pin wins.
                prop_assert_eq!(p.guest(100).and_then(|x| x.allowed.clone()), Some(vec![names[ha_node].to_string()]));
            }
        }
    }
}

#[test]
fn rule_source_reads_what_it_writes_and_names_a_missing_field() {
    let sources = [
        RuleSource::Tag { vmid: 101, tag: "plb_pin_pve1".into() },
        RuleSource::Pool { pool: "db".into() },
        RuleSource::Config { key: "ignore_nodes".into(), value: "pve3".into() },
        RuleSource::HaRule { rule: "keep-apart".into() },
        RuleSource::PveDynamicBalancer,
        RuleSource::Engine,
    ];
    for source in sources {
        let json = serde_json::to_string(&source).unwrap();
        assert_eq!(serde_json::from_str::<RuleSource>(&json).unwrap(), source, "{json}");
    }
    assert_eq!(
        serde_json::to_string(&RuleSource::HaRule { rule: "r".into() }).unwrap(),
        r#"{"kind":"ha-rule","rule":"r"}"#
    );
    let err = serde_json::from_str::<RuleSource>(r#"{"kind":"tag","vmid":7}"#).unwrap_err();
    assert!(err.to_string().contains("missing field `tag`"), "{err}");
    assert!(serde_json::from_str::<RuleSource>(r#"{"kind":"rumour"}"#).is_err());
}
