//! Tags on guests: ProxLB (`plb_*`, including the 1.0 `plb_include_*`/`plb_exclude_*`) and
//! ProxBalance (`ignore`, `exclude_<group>`).

use super::{find_node, ConstraintKind, RuleSet, RuleSource, Severity, Strength};
use crate::model::{ClusterSnapshot, Guest};

/// Group tags: prefix, and whether members are kept together (`true`) or apart.
const GROUP_PREFIXES: [(&str, bool); 5] = [
    // Anti-affinity first: `plb_anti_affinity_` does not start with `plb_affinity_`, but keeping
    // the longer, more specific prefixes first makes the intent plain.
    ("plb_anti_affinity", false),
    ("plb_affinity", true),
    ("plb_include", true),
    ("plb_exclude", false),
    ("exclude", false),
];

/// Adds the constraints `guest`'s tags put on it, and a diagnostic for each tag that looks like a
/// rule but cannot be read.
pub(super) fn read(guest: &Guest, snapshot: &ClusterSnapshot, set: &mut RuleSet) {
    for raw in &guest.tags {
        let tag = raw.trim().to_ascii_lowercase();
        let source = RuleSource::Tag { vmid: guest.vmid, tag: raw.clone() };
        let vmid = guest.vmid;
        if tag == "ignore" || tag.starts_with("plb_ignore") {
            set.add(ConstraintKind::Ignore { vmid }, Strength::Hard, source);
        } else if let Some(rest) = tag.strip_prefix("plb_pin") {
            read_pin(rest, vmid, snapshot, source, set);
        } else if let Some((prefix, together)) = GROUP_PREFIXES.iter().find(|(p, _)| tag.starts_with(p)) {
            // The group is the full tag (as ProxLB names it), so `plb_affinity_web` on two guests
            // binds exactly those two.
            match tag[prefix.len()..].strip_prefix('_') {
                Some(name) if !name.is_empty() => {
                    let group = tag.clone();
                    let kind = if *together {
                        ConstraintKind::Together { group, vmids: vec![vmid] }
                    } else {
                        ConstraintKind::Apart { group, vmids: vec![vmid] }
                    };
                    set.add(kind, Strength::Hard, source);
                }
                _ => set.diag(
                    Severity::Warning,
                    source,
                    format!("malformed tag: expected {prefix}_<group>; ignored"),
                    vec![vmid],
                ),
            }
        } else if tag.starts_with("plb_") {
            set.diag(Severity::Warning, source, "unknown ProxLB tag; ignored", vec![vmid]);
        }
    }
}

fn read_pin(rest: &str, vmid: u32, snapshot: &ClusterSnapshot, source: RuleSource, set: &mut RuleSet) {
    let node = match rest.strip_prefix('_') {
        Some(node) if !node.is_empty() => node,
        _ => {
            set.diag(
                Severity::Warning,
                source,
                "malformed tag: expected plb_pin_<node>; ignored",
                vec![vmid],
            );
            return;
        }
    };
    match find_node(snapshot, node) {
        Some(name) => {
            set.add(ConstraintKind::Pin { vmid, nodes: vec![name.to_owned()] }, Strength::Hard, source)
        }
        None => set.diag(
            Severity::Warning,
            source,
            format!("pin to node '{node}', which is not in the cluster"),
            vec![vmid],
        ),
    }
}
