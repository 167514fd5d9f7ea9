//! The rule engine: one place that turns every source of placement rules into typed constraints,
//! each hard or soft, and reports every conflict or unreadable input as a diagnostic that names its
//! source. Nothing here panics and nothing is dropped silently.
//!
//! Sources:
//! - tags ([`tags`]): ProxLB `plb_affinity_*`, `plb_anti_affinity_*`, `plb_ignore_*`,
//!   `plb_pin_<node>`; ProxLB 1.0 `plb_include_*`/`plb_exclude_*`; ProxBalance `ignore`,
//!   `exclude_<group>`;
//! - configuration ([`RuleConfig`], in [`config`]): ProxLB pools, `ignore_guests`, `ignore_nodes`,
//!   `maintenance_nodes` (with `*` suffix wildcards), ProxLB 0.9.9 `ignore_vms`;
//! - PVE 9 HA rules ([`ha`]): `node-affinity` (priorities, strict) and `resource-affinity`.
//!
//! Strength: ProxLB tags and pools and PVE resource-affinity are hard (their tools enforce them),
//! a strict node-affinity is hard and a non-strict one soft. A hard rule that cannot hold (more
//! anti-affinity members than nodes, members pinned apart) is downgraded to soft, with a
//! diagnostic, so the engine still does its best.

mod config;
mod ha;
mod resolve;
mod tags;
#[cfg(test)]
mod tests;

use crate::model::{ClusterSnapshot, Guest};
use serde::{Deserialize, Serialize};

pub use resolve::{GuestPolicy, Policies};

/// Rules that come from configuration rather than from the cluster.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleConfig {
    /// ProxLB `balancing.pools`.
    pub pools: Vec<PoolRule>,
    /// ProxLB 2.3 `balancing.ignore_guests`: guest names (`*` suffix wildcard).
    pub ignore_guests: Vec<String>,
    /// ProxLB 0.9.9 `ignore_vms`: names or vmids (`*` suffix wildcard).
    pub ignore_vms: Vec<String>,
    /// ProxLB `ignore_nodes`: neither source nor target; their guests stay (`*` wildcard).
    pub ignore_nodes: Vec<String>,
    /// ProxLB `maintenance_nodes`: drained (`*` wildcard).
    pub maintenance_nodes: Vec<String>,
    /// Guests the policy keeps in place (`balance_types`, `live: false`).
    pub stay: crate::policy::StayRules,
}

/// One entry of ProxLB's `balancing.pools`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolRule {
    pub pool: String,
    /// `affinity` or `anti-affinity` (kept as text so a typo becomes a diagnostic, not a parse
    /// failure of the whole request).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Nodes the pool's guests may run on.
    pub pin: Vec<String>,
    /// A strict pin is hard; a non-strict one a preference.
    pub strict: bool,
}

impl Default for PoolRule {
    fn default() -> Self {
        PoolRule { pool: String::new(), kind: None, pin: Vec::new(), strict: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strength {
    /// Never broken by the engine, at any step.
    Hard,
    /// Costs objective points when broken.
    Soft,
}

/// Where a rule or diagnostic comes from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", try_from = "RuleSourceWire")]
pub enum RuleSource {
    Tag {
        vmid: u32,
        tag: String,
    },
    Pool {
        pool: String,
    },
    Config {
        key: String,
        value: String,
    },
    HaRule {
        rule: String,
    },
    /// PVE's own balancer (9.2+ `crs: ha-auto-rebalance`) moves HA-managed guests: they are left
    /// to it.
    PveDynamicBalancer,
    /// Found by combining rules (a conflict between sources).
    Engine,
}

/// [`RuleSource`] as read: the same JSON (`kind` beside the variant's fields), decoded as one flat
/// object. serde's decoder for an internally tagged enum buffers the whole object first (its
/// `Content` type), 12 KB of the panel's size-budgeted module for this enum alone
/// (docs/BENCHMARKS.md, Panel); written out as before.
#[derive(Deserialize)]
struct RuleSourceWire {
    kind: RuleSourceKind,
    vmid: Option<u32>,
    tag: Option<String>,
    pool: Option<String>,
    key: Option<String>,
    value: Option<String>,
    rule: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RuleSourceKind {
    Tag,
    Pool,
    Config,
    HaRule,
    PveDynamicBalancer,
    Engine,
}

impl TryFrom<RuleSourceWire> for RuleSource {
    type Error = String;

    fn try_from(w: RuleSourceWire) -> Result<Self, String> {
        fn field<T>(value: Option<T>, name: &str) -> Result<T, String> {
            value.ok_or_else(|| format!("missing field `{name}`"))
        }
        Ok(match w.kind {
            RuleSourceKind::Tag => {
                RuleSource::Tag { vmid: field(w.vmid, "vmid")?, tag: field(w.tag, "tag")? }
            }
            RuleSourceKind::Pool => RuleSource::Pool { pool: field(w.pool, "pool")? },
            RuleSourceKind::Config => {
                RuleSource::Config { key: field(w.key, "key")?, value: field(w.value, "value")? }
            }
            RuleSourceKind::HaRule => RuleSource::HaRule { rule: field(w.rule, "rule")? },
            RuleSourceKind::PveDynamicBalancer => RuleSource::PveDynamicBalancer,
            RuleSourceKind::Engine => RuleSource::Engine,
        })
    }
}

impl std::fmt::Display for RuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleSource::Tag { vmid, tag } => write!(f, "tag '{tag}' on {vmid}"),
            RuleSource::Pool { pool } => write!(f, "pool '{pool}'"),
            RuleSource::Config { key, value } => write!(f, "config {key} '{value}'"),
            RuleSource::HaRule { rule } => write!(f, "HA rule '{rule}'"),
            RuleSource::PveDynamicBalancer => write!(f, "PVE's automatic HA rebalancing"),
            RuleSource::Engine => write!(f, "rule engine"),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// A finding about the rules: a conflict, an unreadable tag, a reference to nothing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub source: RuleSource,
    pub message: String,
    /// Guests concerned.
    #[serde(default)]
    pub vmids: Vec<u32>,
}

impl Diagnostic {
    fn new(severity: Severity, source: RuleSource, message: impl Into<String>, vmids: Vec<u32>) -> Self {
        Diagnostic { severity, source, message: message.into(), vmids }
    }
}

/// What a constraint demands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ConstraintKind {
    /// Never moved by balancing.
    Ignore { vmid: u32 },
    /// Runs only on (hard) or preferably on (soft) these nodes, in the cluster's spelling.
    Pin { vmid: u32, nodes: Vec<String> },
    /// Members run on one node.
    Together { group: String, vmids: Vec<u32> },
    /// Members run on distinct nodes.
    Apart { group: String, vmids: Vec<u32> },
    /// Node takes no part in balancing; its guests stay.
    IgnoreNode { node: String },
    /// Node is drained.
    Maintenance { node: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub kind: ConstraintKind,
    pub strength: Strength,
    pub source: RuleSource,
}

/// Every constraint the sources put on a snapshot, plus what went wrong reading them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleSet {
    pub constraints: Vec<Constraint>,
    pub diagnostics: Vec<Diagnostic>,
}

impl RuleSet {
    fn add(&mut self, kind: ConstraintKind, strength: Strength, source: RuleSource) {
        self.constraints.push(Constraint { kind, strength, source });
    }

    fn diag(&mut self, severity: Severity, source: RuleSource, message: impl Into<String>, vmids: Vec<u32>) {
        self.diagnostics.push(Diagnostic::new(severity, source, message, vmids));
    }
}

/// Reads every rule source. Constraints come in a fixed order (tags by guest, pools, config, HA
/// rules), so the result is deterministic.
pub fn compile(snapshot: &ClusterSnapshot, config: &RuleConfig) -> RuleSet {
    let mut set = RuleSet::default();
    for guest in &snapshot.guests {
        tags::read(guest, snapshot, &mut set);
    }
    config::read(snapshot, config, &mut set);
    ha::read(snapshot, &mut set);
    set
}

/// Compiles the rules and resolves them per guest (conflicts settled, with diagnostics).
pub fn policies(snapshot: &ClusterSnapshot, config: &RuleConfig) -> Policies {
    resolve::resolve(snapshot, compile(snapshot, config))
}

/// Finds a node by name, case-insensitively, and returns the cluster's spelling.
fn find_node<'a>(snapshot: &'a ClusterSnapshot, name: &str) -> Option<&'a str> {
    snapshot.nodes.iter().find(|n| n.name.eq_ignore_ascii_case(name)).map(|n| n.name.as_str())
}

/// ProxLB-style pattern: a trailing `*` matches any suffix; otherwise the whole text, ignoring case.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.trim().to_ascii_lowercase(), text.to_ascii_lowercase());
    match p.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => p == t,
    }
}

/// The constraints tags put on one guest (the first cut's view, kept for callers that only need
/// tags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestRules {
    /// Never moved by balancing (`plb_ignore_*`, ProxBalance `ignore`).
    pub ignored: bool,
    /// May only run on these nodes (`plb_pin_<node>`, repeatable); empty = anywhere.
    pub pinned_to: Vec<String>,
    /// Guests sharing a group should run on distinct nodes (`plb_anti_affinity_*`,
    /// ProxBalance `exclude_<group>`).
    pub anti_affinity: Vec<String>,
}

impl GuestRules {
    /// Reads the tags of `guest` through the rule engine (diagnostics are dropped here; use
    /// [`compile`] to see them).
    pub fn of(guest: &Guest, snapshot: &ClusterSnapshot) -> GuestRules {
        let mut set = RuleSet::default();
        tags::read(guest, snapshot, &mut set);
        let mut rules = GuestRules::default();
        for c in set.constraints {
            match c.kind {
                ConstraintKind::Ignore { .. } => rules.ignored = true,
                ConstraintKind::Pin { nodes, .. } => rules.pinned_to.extend(nodes),
                ConstraintKind::Apart { group, .. } => rules.anti_affinity.push(group),
                _ => {}
            }
        }
        rules
    }

    pub fn allows(&self, node: &str) -> bool {
        self.pinned_to.is_empty() || self.pinned_to.iter().any(|p| p == node)
    }
}
