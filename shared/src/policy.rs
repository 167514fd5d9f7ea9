//! The effective policy: one truth from configuration to every plan.
//!
//! Every place that plans (the panel's plan and what-if, the scheduler, the ProxLB-style CLI,
//! `plan`/`apply`, maintenance, best node, the ProxBalance aliases) resolves its settings here,
//! field by field, in one order:
//!
//! ```text
//! built-in default  <  configuration file  <  stored settings  <  this request
//! ```
//!
//! Each layer is a [`PolicyLayer`] (only the fields it sets); [`resolve`] stacks them into
//! [`Settings`] and remembers which layer each value came from ([`Sources`]), so the panel can
//! show why a value is what it is. [`Settings::apply_to`] turns the result into the engine's
//! [`PlanRequest`]; what only the configuration file can say (per-node reserves, weights, PSI
//! thresholds, maintenance lists) stays in the base request the file produced.
//!
//! Invariant: the field list is written once (the `policy!` macro below); `Settings`,
//! `PolicyLayer`, the overlay and the field names are generated from it, so no layer can miss a
//! field.

use crate::model::{Guest, GuestKind, GuestStatus};
use crate::plan::{Method, Mode, PlanRequest, ResourcePercents};
use crate::rules::PoolRule;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// ProxLB's `balance_types`: which guests balancing may move.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalanceType {
    Vm,
    Ct,
}

impl BalanceType {
    pub fn of(kind: GuestKind) -> BalanceType {
        match kind {
            GuestKind::Qemu => BalanceType::Vm,
            GuestKind::Lxc => BalanceType::Ct,
        }
    }
}

/// Where a value of the effective policy came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Nobody set it: the built-in default (ProxLB's, where ProxLB has the key).
    #[default]
    Default,
    /// The configuration file (`proxlb.yaml`).
    File,
    /// The cluster-wide stored settings (the panel's Settings view).
    Stored,
    /// This one request (the panel's plan form, a CLI flag).
    Request,
}

/// Field name → where its value came from; a field absent here is [`Source::Default`].
pub type Sources = BTreeMap<String, Source>;

/// A field a present JSON value sets (`null` too, for the optional ones: it clears them).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

macro_rules! policy {
    ($( $(#[doc = $doc:expr])* $name:ident : $ty:ty = $default:expr, )*) => {
        /// The balancing policy in force: every setting an admin may change, whole.
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $( $name: $default, )* }
            }
        }

        /// One layer of the policy: the fields it sets; an absent field leaves the layer below
        /// in force. The body of `PUT /api/v1/settings` and `POST /api/v1/plan`.
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct PolicyLayer {
            $(
                $(#[doc = $doc])*
                #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        impl PolicyLayer {
            /// Every field's JSON name, in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$( stringify!($name), )*];

            /// Puts the fields this layer sets over `settings`, noting `source` for each.
            pub fn overlay(&self, settings: &mut Settings, sources: &mut Sources, source: Source) {
                $(
                    if let Some(v) = &self.$name {
                        settings.$name = v.clone();
                        sources.insert(stringify!($name).to_owned(), source);
                    }
                )*
            }

            /// `other`'s fields put over this layer's (a newer write of the same layer).
            pub fn merge(&mut self, other: &PolicyLayer) {
                $( if other.$name.is_some() { self.$name = other.$name.clone(); } )*
            }

            /// The names of the fields this layer sets.
            pub fn set_fields(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $( if self.$name.is_some() { out.push(stringify!($name)); } )*
                out
            }

            /// Unsets the field named `name` (the layers below it apply again); false when no
            /// field has that name.
            pub fn clear(&mut self, name: &str) -> bool {
                $( if name == stringify!($name) { self.$name = None; return true; } )*
                false
            }

            /// Every field set, as this layer of `settings`.
            pub fn whole(settings: &Settings) -> PolicyLayer {
                PolicyLayer { $( $name: Some(settings.$name.clone()), )* }
            }
        }
    };
}

policy! {
    /// Which resource the balance is measured on (ProxLB `balancing.method`).
    method: Method = Method::Memory,
    /// Which figure of it (ProxLB `balancing.mode`).
    mode: Mode = Mode::Used,
    /// Percentage points of max − min node usage that trigger balancing (0–100).
    balanciness: f64 = 10.0,
    /// DRS-like threshold 1–5 that replaces balanciness, min_gain and the stop band; null = off.
    level: Option<u8> = None,
    /// Once triggered, balance down to this spread (points); null = balanciness.
    stop_spread: Option<f64> = None,
    /// Points of the gap a move must close (0–100).
    min_gain: f64 = 0.5,
    /// Migrations per scheduled run: the service's per-cycle cap (0 = none, at most 10000).
    /// One-shot plans (panel, CLI, maintenance) run until balanced unless the request itself
    /// sets a cap (`PolicyView::one_shot`).
    max_moves: u32 = 20,
    /// GiB (memory plus local disk) moved per plan; null = no limit.
    max_gib: Option<f64> = None,
    /// Migrations into or out of one node per plan; null = no limit.
    max_moves_per_node: Option<u32> = None,
    /// MiB/s a migration copies at (prices moves in seconds, docs/ENGINE.md); null = measured
    /// from recent successful migrations in PVE's task list, else 500.
    migration_bandwidth_mib_s: Option<f64> = None,
    /// Seconds a migrated guest is left alone by balancing.
    cooldown_secs: u64 = 3600,
    /// Seconds a guest does not return to a node it left.
    no_return_secs: u64 = 24 * 3600,
    /// A node at or above this memory use (percent) triggers balancing whatever the spread.
    memory_threshold: Option<f64> = None,
    /// The same for CPU.
    cpu_threshold: Option<f64> = None,
    /// The same for disk.
    disk_threshold: Option<f64> = None,
    /// Memory kept free on every node, GiB (ProxLB `node_resource_reserve.defaults.memory`).
    memory_reserve_gib: f64 = 0.0,
    /// Affinity, anti-affinity and pins by PVE pool (ProxLB `balancing.pools`).
    pools: Vec<PoolRule> = Vec::new(),
    /// Nodes balancing leaves alone (ProxLB `ignore_nodes`; `*` suffix wildcard).
    ignore_nodes: Vec<String> = Vec::new(),
    /// Guests balancing never moves (names, `*` suffix wildcard, as ProxLB `ignore_guests`).
    ignore_guests: Vec<String> = Vec::new(),
    /// Guest types balancing moves (ProxLB `balance_types`); empty = none is executed.
    balance_types: Vec<BalanceType> = vec![BalanceType::Vm, BalanceType::Ct],
    /// Running VMs migrate live; false = only stopped VMs move (PVE cannot move a running VM
    /// offline), as ProxLB `live: false` asks.
    live: bool = true,
    /// Guests with local disks may move (copied by PVE's `with-local-disks`).
    with_local_disks: bool = true,
    /// Running vCPUs may reach this many times a node's cores; null = no limit.
    cpu_overcommit: Option<f64> = None,
    /// Between moves of about the same gain, take the larger guest first (ProxLB
    /// `balance_larger_guests_first`); false = the smaller.
    larger_guests_first: bool = false,
    /// Seconds between automatic balancing runs; null = only on demand.
    schedule_interval_secs: Option<u64> = None,
    /// When scheduled runs may execute balancing (`mon-fri 22:00-06:00`, node-local); empty = always.
    windows: Vec<String> = Vec::new(),
    /// Migrations in flight at once, cluster-wide (1–64).
    max_parallel: u32 = 1,
    /// Migrations in flight per node, as source or target (1–64).
    max_per_node: u32 = 1,
}

/// The layers stacked in order, lowest first: the effective settings and each value's source.
pub fn resolve(layers: &[(Source, &PolicyLayer)]) -> (Settings, Sources) {
    let mut settings = Settings::default();
    let mut sources = Sources::new();
    for (source, layer) in layers {
        layer.overlay(&mut settings, &mut sources, *source);
    }
    (settings, sources)
}

/// A setting out of range: which one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    pub field: &'static str,
    pub detail: String,
}

fn out_of(field: &'static str, detail: String) -> Result<(), SettingsError> {
    Err(SettingsError { field, detail })
}

fn percent_ok(x: f64) -> bool {
    x.is_finite() && (0.0..=100.0).contains(&x)
}

impl Settings {
    /// Every field within its limits (the panel checks with this before sending; the backend
    /// again on every layer it is given), else the first offending field.
    pub fn check(&self) -> Result<(), SettingsError> {
        self.check_plan_limits()?;
        self.check_lists()?;
        self.check_execution()
    }

    fn check_plan_limits(&self) -> Result<(), SettingsError> {
        if !percent_ok(self.balanciness) {
            return out_of("balanciness", format!("{} is outside 0–100 percentage points", self.balanciness));
        }
        if !percent_ok(self.min_gain) {
            return out_of("min_gain", format!("{} is outside 0–100 points", self.min_gain));
        }
        if let Some(l) = self.level.filter(|l| !(1..=5).contains(l)) {
            return out_of("level", format!("{l} is not one of 1, 2, 3, 4, 5 (null turns it off)"));
        }
        if let Some(s) = self.stop_spread.filter(|s| !percent_ok(*s)) {
            return out_of("stop_spread", format!("{s} is outside 0–100 points"));
        }
        if self.max_moves > 10_000 {
            return out_of("max_moves", format!("{} is above the limit of 10000", self.max_moves));
        }
        if let Some(g) = self.max_gib.filter(|g| !(g.is_finite() && *g > 0.0)) {
            return out_of("max_gib", format!("{g} must be more than 0 GiB (null: no limit)"));
        }
        for (field, t) in [
            ("memory_threshold", self.memory_threshold),
            ("cpu_threshold", self.cpu_threshold),
            ("disk_threshold", self.disk_threshold),
        ] {
            if let Some(t) = t.filter(|t| !percent_ok(*t)) {
                return out_of(field, format!("{t} is outside 0–100 percent"));
            }
        }
        if !(self.memory_reserve_gib.is_finite() && self.memory_reserve_gib >= 0.0) {
            return out_of(
                "memory_reserve_gib",
                format!("{} must be 0 or more GiB", self.memory_reserve_gib),
            );
        }
        if let Some(b) = self.migration_bandwidth_mib_s.filter(|b| !(b.is_finite() && *b >= 1.0)) {
            return out_of(
                "migration_bandwidth_mib_s",
                format!("{b} must be at least 1 MiB/s (null: measured from past migrations)"),
            );
        }
        if let Some(o) = self.cpu_overcommit.filter(|o| !(o.is_finite() && *o > 0.0)) {
            return out_of("cpu_overcommit", format!("{o} must be more than 0 (1.0 = no overcommit)"));
        }
        Ok(())
    }

    fn check_lists(&self) -> Result<(), SettingsError> {
        for (field, list) in [("ignore_nodes", &self.ignore_nodes), ("ignore_guests", &self.ignore_guests)] {
            if let Some(bad) = list.iter().find(|e| e.trim().is_empty() || e.contains(char::is_whitespace)) {
                return out_of(field, format!("`{bad}` is not a name or `prefix*` pattern"));
            }
        }
        for p in &self.pools {
            if p.pool.trim().is_empty() {
                return out_of("pools", "a pool entry has no `pool` name".into());
            }
            if p.kind.as_deref().is_some_and(|k| k != "affinity" && k != "anti-affinity") {
                return out_of("pools", format!("pool `{}`: type must be affinity or anti-affinity", p.pool));
            }
        }
        Ok(())
    }

    fn check_execution(&self) -> Result<(), SettingsError> {
        if let Some(s) = self.schedule_interval_secs.filter(|s| !(60..=7 * 86_400).contains(s)) {
            return out_of(
                "schedule_interval_secs",
                format!("{s} is outside 60–604800 seconds (1 minute to 1 week); null turns it off"),
            );
        }
        if !(1..=64).contains(&self.max_parallel) {
            return out_of("max_parallel", format!("{} is outside 1–64 migrations", self.max_parallel));
        }
        if !(1..=64).contains(&self.max_per_node) {
            return out_of("max_per_node", format!("{} is outside 1–64 migrations", self.max_per_node));
        }
        Ok(())
    }

    /// These settings applied to a plan request; what they do not cover (per-node reserves,
    /// weights, PSI thresholds, maintenance lists) stays as the request had it.
    pub fn apply_to(&self, request: &mut PlanRequest) {
        request.method = self.method;
        request.mode = self.mode;
        request.balanciness = self.balanciness;
        request.level = self.level;
        request.stop_spread = self.stop_spread;
        request.min_gain = self.min_gain;
        request.max_moves = self.max_moves;
        request.max_gib = self.max_gib;
        request.max_moves_per_node = self.max_moves_per_node;
        request.migration_bandwidth_mib_s = self.migration_bandwidth_mib_s;
        request.cooldown_secs = self.cooldown_secs;
        request.no_return_secs = self.no_return_secs;
        request.overload = ResourcePercents {
            memory: self.memory_threshold,
            cpu: self.cpu_threshold,
            disk: self.disk_threshold,
        };
        request.memory_reserve = (self.memory_reserve_gib * GIB) as u64;
        request.cpu_overcommit = self.cpu_overcommit;
        request.allow_local_disks = self.with_local_disks;
        request.larger_guests_first = self.larger_guests_first;
        request.rules.pools = self.pools.clone();
        request.rules.ignore_nodes = self.ignore_nodes.clone();
        request.rules.ignore_guests = self.ignore_guests.clone();
        request.rules.stay = self.staying_guests();
    }

    /// What these settings keep from moving, whatever the balance: guest types outside
    /// `balance_types`, and running VMs when `live` is off.
    fn staying_guests(&self) -> StayRules {
        let kinds = &self.balance_types;
        StayRules {
            // Empty = ProxLB's "nothing executes": the plan still shows what balancing would do.
            kinds: if kinds.is_empty() { vec![BalanceType::Vm, BalanceType::Ct] } else { kinds.clone() },
            running_vms: !self.live,
        }
    }

    /// May a balancing step move this guest type (the executor's gate, as ProxLB's)?
    pub fn executes(&self, kind: GuestKind) -> bool {
        self.balance_types.contains(&BalanceType::of(kind))
    }
}

/// Guests that stay for policy reasons (part of `RuleConfig`; read by the rule engine).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StayRules {
    /// Guest types balancing may move.
    pub kinds: Vec<BalanceType>,
    /// Running VMs stay (`live: false`).
    pub running_vms: bool,
}

impl Default for StayRules {
    fn default() -> Self {
        StayRules { kinds: vec![BalanceType::Vm, BalanceType::Ct], running_vms: false }
    }
}

impl StayRules {
    /// Why `guest` must stay, if it must: `(config key, value)` for the diagnostic.
    pub fn why(&self, guest: &Guest) -> Option<(&'static str, &'static str)> {
        let kind = BalanceType::of(guest.kind);
        if !self.kinds.contains(&kind) {
            let value = if kind == BalanceType::Vm { "vm not listed" } else { "ct not listed" };
            return Some(("balance_types", value));
        }
        (self.running_vms && guest.kind == GuestKind::Qemu && guest.status == GuestStatus::Running)
            .then_some(("live", "false: running VMs are not migrated"))
    }
}

/// `GET /api/v1/policy`: the effective policy for a plan with no overrides, each value's source,
/// and the engine request it makes (the panel's what-if plans with exactly this).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub settings: Settings,
    /// Field → `default`, `file`, `stored` or `request`; absent = default.
    pub sources: Sources,
    pub request: PlanRequest,
    /// The migration bandwidth plans price at now and where it comes from (configured, measured
    /// from N past migrations, or the default); filled by `GET /api/v1/policy` from the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<crate::plan::Bandwidth>,
}

impl PolicyView {
    /// The plan one asks for now (panel, CLI, maintenance): until balanced or no move pays, so
    /// the per-cycle `max_moves` does not apply unless this request set it. A scheduled run
    /// keeps the cap.
    pub fn one_shot(mut self) -> PolicyView {
        if self.sources.get("max_moves") != Some(&Source::Request) {
            self.request.max_moves = PlanRequest::UNCAPPED;
        }
        self
    }

    /// This policy with one request's overrides on top (what the service does for
    /// `POST /api/v1/plan`, and the panel for what-if): the request, or the offending field.
    pub fn with_overrides(&self, overrides: &PolicyLayer) -> Result<PolicyView, SettingsError> {
        let mut settings = self.settings.clone();
        let mut sources = self.sources.clone();
        overrides.overlay(&mut settings, &mut sources, Source::Request);
        settings.check()?;
        let mut request = self.request.clone();
        settings.apply_to(&mut request);
        Ok(PolicyView { settings, sources, request, bandwidth: self.bandwidth.clone() })
    }
}

#[cfg(test)]
mod tests;
