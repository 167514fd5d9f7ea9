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
    let eligible: BTreeSet<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Online
                && !n.maintenance
                && !out.ignored_nodes.contains(&n.name)
                && !out.maintenance_nodes.contains(&n.name)
        })
        .map(|n| n.name.as_str())
        .collect();
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
    pins_to_unavailable_nodes(snapshot, &eligible, &mut out);
    settle_groups(&mut out);
    groups_that_cannot_fit(snapshot, &eligible, &mut out);
    out.constraints = set.constraints;
    out
}

/// Why a node takes no guests, for a diagnostic.
fn unavailable_because(snapshot: &ClusterSnapshot, out: &Policies, name: &str) -> &'static str {
    match snapshot.nodes.iter().find(|n| n.name == name) {
        None => "not in the cluster",
        Some(n) if n.status != NodeStatus::Online => "offline",
        Some(n) if n.maintenance || out.maintenance_nodes.contains(&n.name) => "in maintenance",
        Some(_) if out.ignored_nodes.contains(name) => "ignored",
        Some(_) => "available",
    }
}

/// A hard pin whose nodes all take no guests (offline, maintenance, ignored): the guest can run
/// nowhere it is allowed. Said once, at the pin.
fn pins_to_unavailable_nodes(snapshot: &ClusterSnapshot, eligible: &BTreeSet<&str>, out: &mut Policies) {
    let present: BTreeSet<u32> = snapshot.guests.iter().map(|g| g.vmid).collect();
    let mut found = Vec::new();
    for (vmid, policy) in &out.guests {
        let (Some(allowed), Some(source)) = (&policy.allowed, &policy.allowed_source) else { continue };
        if !present.contains(vmid) || allowed.iter().any(|n| eligible.contains(n.as_str())) {
            continue;
        }
        let why: Vec<String> =
            allowed.iter().map(|n| format!("{n} {}", unavailable_because(snapshot, out, n))).collect();
        found.push((
            source.clone(),
            format!(
                "pinned to nodes that take no guests ({}); it can run nowhere it is allowed",
                why.join(", ")
            ),
            *vmid,
        ));
    }
    for (source, message, vmid) in found {
        out.diag(Severity::Error, source, message, vec![vmid]);
    }
}

/// Memory a running guest needs on its node, in bytes.
fn running_mem(snapshot: &ClusterSnapshot, vmid: u32) -> u64 {
    snapshot.guests.iter().find(|g| g.vmid == vmid && g.is_running()).map(|g| g.mem_used).unwrap_or(0)
}

/// The nodes a guest may run on: its hard pin, or every eligible node.
fn may_run_on<'a>(out: &Policies, eligible: &BTreeSet<&'a str>, vmid: u32) -> BTreeSet<&'a str> {
    match out.guests.get(&vmid).and_then(|p| p.allowed.as_ref()) {
        Some(allowed) => eligible.iter().copied().filter(|n| allowed.iter().any(|a| a == n)).collect(),
        None => eligible.clone(),
    }
}

/// Hard groups no placement can satisfy, with sizes: an affinity group whose running guests need
/// more memory than the largest node that may take them all holds; an anti-affinity group with
/// more members than the nodes its members may run on. Each becomes a preference, with one
/// diagnostic at the group's source.
fn groups_that_cannot_fit(snapshot: &ClusterSnapshot, eligible: &BTreeSet<&str>, out: &mut Policies) {
    const GIB: f64 = (1u64 << 30) as f64;
    let mut diags = Vec::new();
    let (mut together, mut apart) = (std::mem::take(&mut out.together), std::mem::take(&mut out.apart));
    for t in together.iter_mut().filter(|t| t.strength == Strength::Hard) {
        let need: u64 = t.vmids.iter().map(|&v| running_mem(snapshot, v)).sum();
        let common = t.vmids.iter().fold(eligible.clone(), |acc, &v| {
            acc.intersection(&may_run_on(out, eligible, v)).copied().collect()
        });
        let largest = snapshot
            .nodes
            .iter()
            .filter(|n| common.contains(n.name.as_str()))
            .max_by_key(|n| (n.mem_total, std::cmp::Reverse(n.name.clone())));
        let fits = largest.is_some_and(|n| need <= n.mem_total);
        if need == 0 || fits {
            continue;
        }
        let holds = match largest {
            Some(n) => format!(
                "the largest node that may take it, {}, holds {:.1} GiB",
                n.name,
                n.mem_total as f64 / GIB
            ),
            None => "no node may take all of its members".to_owned(),
        };
        diags.push(Diagnostic::new(
            Severity::Error,
            t.source.clone(),
            format!(
                "affinity '{}' needs {:.1} GiB on one node for its {} running guests, but {holds}; kept as a preference",
                t.name,
                need as f64 / GIB,
                t.vmids.len()
            ),
            t.vmids.clone(),
        ));
        t.strength = Strength::Soft;
    }
    for a in apart.iter_mut().filter(|a| a.strength == Strength::Hard) {
        let nodes: BTreeSet<&str> = a.vmids.iter().flat_map(|&v| may_run_on(out, eligible, v)).collect();
        if a.vmids.len() <= nodes.len() {
            continue;
        }
        diags.push(Diagnostic::new(
            Severity::Warning,
            a.source.clone(),
            format!(
                "anti-affinity '{}' has {} guests but only {} nodes can take them ({}); kept as a preference",
                a.name,
                a.vmids.len(),
                nodes.len(),
                nodes.iter().copied().collect::<Vec<_>>().join(", ")
            ),
            a.vmids.clone(),
        ));
        a.strength = Strength::Soft;
    }
    out.together = together;
    out.apart = apart;
    out.diagnostics.extend(diags);
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
fn settle_groups(out: &mut Policies) {
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
}
