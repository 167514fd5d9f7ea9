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
