//! Settles the compiled constraints per guest and per group: pins from several sources are
//! intersected, groups are merged by name, and rules that cannot hold are downgraded or dropped,
//! each with a diagnostic.

use super::{Constraint, ConstraintKind, Diagnostic, RuleSet, RuleSource, Severity, Strength};
use crate::model::{ClusterSnapshot, NodeStatus};
use std::collections::{BTreeMap, BTreeSet};

/// What the rules say about one guest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestPolicy {
    /// Why it is never moved by balancing, if it is not.
    pub ignored: Option<RuleSource>,
    /// Hard pin: the only nodes it may run on; `None` = anywhere.
    pub allowed: Option<Vec<String>>,
    pub allowed_source: Option<RuleSource>,
    /// Soft pin: where it should run.
    pub preferred: Option<Vec<String>>,
    pub preferred_source: Option<RuleSource>,
}

/// A together or apart group after merging.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub vmids: Vec<u32>,
    pub strength: Strength,
    pub source: RuleSource,
}

/// The rules, resolved: what the engine consumes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policies {
    pub guests: BTreeMap<u32, GuestPolicy>,
    pub together: Vec<Group>,
    pub apart: Vec<Group>,
    pub ignored_nodes: BTreeSet<String>,
    pub maintenance_nodes: BTreeSet<String>,
    pub constraints: Vec<Constraint>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Policies {
    pub fn guest(&self, vmid: u32) -> Option<&GuestPolicy> {
        self.guests.get(&vmid)
    }

    fn diag(&mut self, severity: Severity, source: RuleSource, message: impl Into<String>, vmids: Vec<u32>) {
        self.diagnostics.push(Diagnostic::new(severity, source, message, vmids));
    }
}

/// Precedence of hard pins when they contradict: PVE HA enforces its own rules, so they win,
/// then the guest's own tags, then pools.
fn precedence(source: &RuleSource) -> u8 {
    match source {
        RuleSource::HaRule { .. } | RuleSource::PveDynamicBalancer => 0,
        RuleSource::Tag { .. } => 1,
        RuleSource::Pool { .. } => 2,
        RuleSource::Config { .. } | RuleSource::Engine => 3,
    }
}

/// Source category, so that pins from one category (repeatable `plb_pin_*` tags) are a union and
/// pins from different categories an intersection.
fn category(source: &RuleSource) -> String {
    match source {
        RuleSource::Tag { .. } => "tag".into(),
        other => format!("{other}"),
    }
}

pub(super) fn resolve(snapshot: &ClusterSnapshot, set: RuleSet) -> Policies {
    let mut out = Policies { diagnostics: set.diagnostics.clone(), ..Default::default() };
    // (vmid, strength, category) → (nodes, first source)
    let mut pins: BTreeMap<(u32, Strength, String), (BTreeSet<String>, RuleSource)> = BTreeMap::new();
    let mut groups: BTreeMap<(bool, String), Group> = BTreeMap::new();
    for c in &set.constraints {
        match &c.kind {
            ConstraintKind::Ignore { vmid } => {
                let p = out.guests.entry(*vmid).or_default();
                p.ignored.get_or_insert_with(|| c.source.clone());
            }
            ConstraintKind::Pin { vmid, nodes } => {
                let e = pins
                    .entry((*vmid, c.strength, category(&c.source)))
                    .or_insert_with(|| (BTreeSet::new(), c.source.clone()));
                e.0.extend(nodes.iter().cloned());
            }
            ConstraintKind::Together { group, vmids } | ConstraintKind::Apart { group, vmids } => {
                let together = matches!(c.kind, ConstraintKind::Together { .. });
                let g = groups.entry((together, group.clone())).or_insert_with(|| Group {
                    name: group.clone(),
                    vmids: vec![],
                    strength: c.strength,
                    source: c.source.clone(),
                });
                g.vmids.extend(vmids);
                g.strength = g.strength.min(c.strength);
            }
            ConstraintKind::IgnoreNode { node } => {
                out.ignored_nodes.insert(node.clone());
            }
            ConstraintKind::Maintenance { node } => {
                out.maintenance_nodes.insert(node.clone());
            }
        }
    }
    resolve_pins(pins, &mut out);
    let eligible = snapshot
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Online
                && !n.maintenance
                && !out.ignored_nodes.contains(&n.name)
                && !out.maintenance_nodes.contains(&n.name)
        })
        .count();
    for ((together, _), mut g) in groups {
        g.vmids.sort_unstable();
        g.vmids.dedup();
        if g.vmids.len() < 2 {
            continue; // a lone member of a tag group binds nothing
        }
        if together {
            out.together.push(g);
        } else {
            out.apart.push(g);
        }
    }
    settle_groups(&mut out, eligible);
    out.constraints = set.constraints;
    out
}

fn resolve_pins(pins: BTreeMap<(u32, Strength, String), (BTreeSet<String>, RuleSource)>, out: &mut Policies) {
    let mut by_guest: BTreeMap<u32, Vec<(Strength, BTreeSet<String>, RuleSource)>> = BTreeMap::new();
    for ((vmid, strength, _), (nodes, source)) in pins {
        by_guest.entry(vmid).or_default().push((strength, nodes, source));
    }
    for (vmid, mut list) in by_guest {
        list.sort_by_key(|(s, _, src)| (*s, precedence(src)));
        let mut allowed: Option<(BTreeSet<String>, RuleSource)> = None;
        let mut preferred: Option<(BTreeSet<String>, RuleSource)> = None;
        for (strength, nodes, source) in list {
            match strength {
                Strength::Hard => match &mut allowed {
                    None => allowed = Some((nodes, source)),
                    Some((cur, cur_src)) => {
                        let both: BTreeSet<String> = cur.intersection(&nodes).cloned().collect();
                        if both.is_empty() {
                            out.diag(
                                Severity::Error,
                                source,
                                format!("pin contradicts {cur_src}; the latter wins"),
                                vec![vmid],
                            );
                        } else {
                            *cur = both;
                        }
                    }
                },
                Strength::Soft => match &mut preferred {
                    None => preferred = Some((nodes, source)),
                    Some((cur, _)) => {
                        let both: BTreeSet<String> = cur.intersection(&nodes).cloned().collect();
                        if !both.is_empty() {
                            *cur = both;
                        }
                    }
                },
            }
        }
        if let (Some((a, asrc)), Some((p, psrc))) = (&allowed, &preferred) {
            if a.is_disjoint(p) {
                out.diag(
                    Severity::Warning,
                    psrc.clone(),
                    format!("preference cannot hold: {asrc} allows none of its nodes"),
                    vec![vmid],
                );
                preferred = None;
            }
        }
        let policy = out.guests.entry(vmid).or_default();
        if let Some((nodes, source)) = allowed {
            policy.allowed = Some(nodes.into_iter().collect());
            policy.allowed_source = Some(source);
        }
        if let Some((nodes, source)) = preferred {
            policy.preferred = Some(nodes.into_iter().collect());
            policy.preferred_source = Some(source);
        }
    }
}

/// Conflicts between groups and with pins; anti-affinity wins over affinity (as in DRS).
fn settle_groups(out: &mut Policies, eligible_nodes: usize) {
    let apart = out.apart.clone();
    let mut kept = Vec::new();
    for t in std::mem::take(&mut out.together) {
        let clash = apart.iter().find_map(|a| {
            let both: Vec<u32> = t.vmids.iter().copied().filter(|v| a.vmids.contains(v)).collect();
            (both.len() >= 2).then_some((a, both))
        });
        if let Some((a, both)) = clash {
            out.diag(
                Severity::Error,
                t.source.clone(),
                format!(
                    "affinity '{}' contradicts anti-affinity '{}' ({}); affinity not enforced",
                    t.name, a.name, a.source
                ),
                both,
            );
            continue;
        }
        let mut t = t;
        if t.strength == Strength::Hard {
            let mut common: Option<BTreeSet<&String>> = None;
            for v in &t.vmids {
                if let Some(nodes) = out.guests.get(v).and_then(|p| p.allowed.as_ref()) {
                    let set: BTreeSet<&String> = nodes.iter().collect();
                    common = Some(match common {
                        None => set,
                        Some(c) => c.intersection(&set).copied().collect(),
                    });
                }
            }
            if common.is_some_and(|c| c.is_empty()) {
                out.diag(
                    Severity::Error,
                    t.source.clone(),
                    format!(
                        "affinity '{}': members are pinned to disjoint nodes; kept as a preference",
                        t.name
                    ),
                    t.vmids.clone(),
                );
                t.strength = Strength::Soft;
            }
        }
        kept.push(t);
    }
    out.together = kept;
    let mut apart = std::mem::take(&mut out.apart);
    for a in apart.iter_mut() {
        if a.strength == Strength::Hard && a.vmids.len() > eligible_nodes {
            out.diag(
                Severity::Warning,
                a.source.clone(),
                format!(
                    "anti-affinity '{}' has {} guests but only {eligible_nodes} nodes can take guests; kept as a preference",
                    a.name,
                    a.vmids.len()
                ),
                a.vmids.clone(),
            );
            a.strength = Strength::Soft;
        }
    }
    out.apart = apart;
}
