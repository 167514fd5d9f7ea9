//! What the planner is asked for and what it answers.

use crate::model::GuestKind;
use crate::rules::{Diagnostic, RuleConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which resource the balance is measured on (ProxLB's `balancing.method`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Memory,
    Cpu,
    Disk,
    /// Memory, CPU and disk together, weighted by `PlanRequest::weights`.
    Weighted,
}

/// Which figure of that resource (ProxLB's `balancing.mode`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// What the guests use now.
    #[default]
    Used,
    /// What the guests are configured with (vCPUs, max memory, disk size).
    Assigned,
    /// The 95th percentile of use over the collection window (`cpu_p95`, `mem_p95`; a guest
    /// without them counts with its current use).
    Percentile,
    /// Current use, plus host pressure (PSI) as a trigger: a node whose pressure for the balanced
    /// resource reaches `psi_threshold` counts as overloaded.
    Psi,
}

/// Weights of each resource in `Method::Weighted` (relative; need not sum to 1).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceWeights {
    pub memory: f64,
    pub cpu: f64,
    pub disk: f64,
}

impl Default for ResourceWeights {
    fn default() -> Self {
        // Memory is the hard limit, CPU the soft one (PVE's TOPSIS weighs RAM far above CPU too).
        ResourceWeights { memory: 2.0, cpu: 1.0, disk: 0.0 }
    }
}

/// A percentage per resource; `None` = not set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcePercents {
    pub memory: Option<f64>,
    pub cpu: Option<f64>,
    pub disk: Option<f64>,
}

/// Which nodes may give or take guests in balancing (evacuation and rule fixes still may).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeRoles {
    /// Never a source: guests here stay unless a hard rule makes them leave.
    pub not_source: Vec<String>,
    /// Never a target.
    pub not_target: Vec<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanRequest {
    pub method: Method,
    pub mode: Mode,
    /// Balance only when max − min node usage exceeds this many percentage points (ProxLB's
    /// `balanciness`), and stop once it is at or below it.
    pub balanciness: f64,
    /// At most this many balancing migrations in one plan; [`PlanRequest::UNCAPPED`] (0, the
    /// default) = no cap: the plan goes on until the stop band is reached or no move pays. One-shot
    /// plans (CLI, panel, maintenance) leave it uncapped; the scheduled service sets its per-cycle
    /// cap. Rule repairs and drains are never capped.
    pub max_moves: u32,
    /// A move must lower the spread by at least this many points, so plans never overshoot.
    pub min_gain: f64,
    /// Memory kept free on every node, in bytes (ProxLB's `node_resource_reserve.defaults`).
    pub memory_reserve: u64,
    /// Per-node memory reserve in bytes; wins over `memory_reserve` for that node.
    pub node_memory_reserve: BTreeMap<String, u64>,
    /// DRS-like migration threshold 1–5. When set it replaces `balanciness`, `min_gain` and the
    /// stop band: 1 = only mandatory moves (rules, maintenance), 5 = chase slight imbalance.
    pub level: Option<u8>,
    /// Hysteresis: once triggered, balance down to this spread (points); `None` = `balanciness`.
    pub stop_spread: Option<f64>,
    /// Resource weights for `Method::Weighted`.
    pub weights: ResourceWeights,
    /// A node above one of these percentages is overloaded: balancing triggers whatever the spread.
    pub overload: ResourcePercents,
    /// Balancing never fills a target above these percentages.
    pub target_max: ResourcePercents,
    /// Running vCPUs may reach this many times a node's cores; `None` = no limit.
    pub cpu_overcommit: Option<f64>,
    /// PSI threshold (`some` average, percent) for `Mode::Psi`.
    pub psi_threshold: f64,
    /// λ: extra objective points per GiB moved, on top of the time cost (`seconds_per_point`);
    /// 0 by default (the time cost prices the GiB). Kept for requests that set it.
    pub migration_cost_per_gib: f64,
    /// With `migration_cost_per_gib`: a container restart counts as this many GiB.
    pub restart_cost_gib: f64,
    /// Allow moving guests with local disks (copied by `with-local-disks`).
    pub allow_local_disks: bool,
    /// Budget: at most this many GiB (memory plus local disk) moved in one plan.
    pub max_gib: Option<f64>,
    /// Budget: at most this many migrations into or out of any one node.
    pub max_moves_per_node: Option<u32>,
    /// A guest migrated within this many seconds is not moved again for balance.
    pub cooldown_secs: u64,
    /// A guest does not return to a node it left within this many seconds. A day by default: load
    /// follows the day, and a guest moved off at one peak would otherwise go back for the next.
    pub no_return_secs: u64,
    /// Which nodes may give or take guests.
    pub roles: NodeRoles,
    /// Rules from configuration (pools, ignore and maintenance lists); tags and HA rules come
    /// with the snapshot.
    pub rules: RuleConfig,
    /// Between moves of about the same gain, prefer the larger guest (ProxLB
    /// `balance_larger_guests_first`); false = the smaller.
    pub larger_guests_first: bool,
    /// Migration bandwidth in MiB/s used to price a move in seconds (memory and local disk).
    /// `None` = [`PlanRequest::DEFAULT_BANDWIDTH_MIB_S`] (a caller that measured past migrations
    /// in `/cluster/tasks` sets it from them).
    pub migration_bandwidth_mib_s: Option<f64>,
    /// Fixed seconds every migration costs besides the copy (task start, switch-over).
    pub migration_setup_secs: f64,
    /// Downtime of a running container's restart migration, in seconds; counted like migration
    /// seconds, times `downtime_weight`.
    pub restart_downtime_secs: f64,
    /// How many seconds of migration one second of downtime is worth.
    pub downtime_weight: f64,
    /// The price of balance: seconds of migration one point of gain is worth (see
    /// docs/ENGINE.md). A move is taken only when its gain × this ≥ its seconds.
    pub seconds_per_point: f64,
    /// Refuse balancing moves that leave the cluster unable to absorb the loss of its largest
    /// node (N+1, see `Plan::n_plus_one`); the plan stops short instead.
    pub keep_n_plus_one: bool,
}

impl PlanRequest {
    /// `max_moves` value meaning "no cap".
    pub const UNCAPPED: u32 = 0;
    /// Migration bandwidth when neither the request nor past migrations give one (MiB/s): a
    /// dedicated 10 GbE migration network moves about 1,100 MiB/s; half of that leaves room for
    /// shared links and dirty-page rounds.
    pub const DEFAULT_BANDWIDTH_MIB_S: f64 = 500.0;

    /// The move cap, `None` when uncapped.
    pub fn move_cap(&self) -> Option<u32> {
        (self.max_moves != Self::UNCAPPED).then_some(self.max_moves)
    }

    /// Is any cap (moves, GiB, moves per node) set?
    pub fn capped(&self) -> bool {
        self.move_cap().is_some() || self.max_gib.is_some() || self.max_moves_per_node.is_some()
    }
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest {
            method: Method::Memory,
            mode: Mode::Used,
            balanciness: 10.0,
            max_moves: PlanRequest::UNCAPPED,
            min_gain: 0.5,
            memory_reserve: 0,
            node_memory_reserve: BTreeMap::new(),
            level: None,
            stop_spread: None,
            weights: ResourceWeights::default(),
            overload: ResourcePercents::default(),
            target_max: ResourcePercents::default(),
            cpu_overcommit: None,
            psi_threshold: 20.0,
            migration_cost_per_gib: 0.0,
            restart_cost_gib: 8.0,
            allow_local_disks: true,
            max_gib: None,
            max_moves_per_node: None,
            cooldown_secs: 3600,
            no_return_secs: 24 * 3600,
            roles: NodeRoles::default(),
            rules: RuleConfig::default(),
            larger_guests_first: false,
            migration_bandwidth_mib_s: None,
            migration_setup_secs: 10.0,
            restart_downtime_secs: 30.0,
            downtime_weight: 2.0,
            seconds_per_point: SECONDS_PER_POINT,
            keep_n_plus_one: false,
        }
    }
}

/// Default price of balance (`PlanRequest::seconds_per_point`): measured on the compare
/// scenarios (docs/BENCHMARKS.md, issue 18), 40–48 s reach ProxLB's spread on every one with
/// the fewest GiB; 45 sits inside that window.
pub const SECONDS_PER_POINT: f64 = 45.0;

/// How PVE will move the guest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationKind {
    /// Running VM, live (`online=1`).
    Live,
    /// Running container: shut down, moved, started again (`restart=1`): downtime.
    Restart,
    /// Stopped guest.
    Offline,
}

/// Why a step is in the plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepPurpose {
    /// Evens out load.
    #[default]
    Balance,
    /// Repairs a hard rule the current placement breaks (pin, affinity, anti-affinity).
    Rule,
    /// Leaves a node that is being drained.
    Evacuate,
    /// Temporary hop that frees room for a swap; a later step moves the guest on.
    Park,
    /// Back to its recorded home node.
    ReturnHome,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub vmid: u32,
    pub name: String,
    pub kind: GuestKind,
    pub from: String,
    pub to: String,
    pub migration: MigrationKind,
    /// Memory that crosses the network (live) or is released/claimed, in bytes.
    pub mem_bytes: u64,
    /// Why, in units: "pve2 memory 91.0% → 74.2%, pve4 20.3% → 37.1%".
    pub reason: String,
    #[serde(default)]
    pub purpose: StepPurpose,
    /// Indices (into `Plan::steps`) of the steps that must finish before this one may start; a
    /// parallel executor may run any step whose dependencies are done, and every state it can
    /// pass through stays within capacity and hard rules.
    #[serde(default)]
    pub depends_on: Vec<usize>,
    /// Bytes of local disk copied along.
    #[serde(default)]
    pub disk_bytes: u64,
}

/// A guest that stays, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WhyNot {
    pub vmid: u32,
    pub name: String,
    pub node: String,
    pub reason: String,
}

/// One node's usage of the balanced resource, in percent, plus the raw figures.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub node: String,
    pub used: f64,
    pub total: f64,
    pub percent: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub request: PlanRequest,
    pub steps: Vec<PlanStep>,
    pub before: Vec<NodeLoad>,
    pub after: Vec<NodeLoad>,
    /// max − min node percent before and after.
    pub spread_before: f64,
    pub spread_after: f64,
    /// Plain-words notes: why nothing was done, which guests could not move.
    pub notes: Vec<String>,
    /// Imbalance (capacity-weighted standard deviation of node use, in points) before and after.
    #[serde(default)]
    pub imbalance_before: f64,
    #[serde(default)]
    pub imbalance_after: f64,
    /// Objective = imbalance + soft-rule penalties + λ·migration cost, before (no moves) and after.
    #[serde(default)]
    pub objective_before: f64,
    #[serde(default)]
    pub objective_after: f64,
    /// Normalised coefficient of variation of node load, 0–1 (PVE 9.2's imbalance figure).
    #[serde(default)]
    pub cv_before: f64,
    #[serde(default)]
    pub cv_after: f64,
    /// Memory plus local disk crossing the network, in GiB.
    #[serde(default)]
    pub gib_moved: f64,
    /// Guests that could have helped (on a hot or drained node) but stay, with the reason.
    #[serde(default)]
    pub why_not: Vec<WhyNot>,
    /// What the rule engine found (conflicts, malformed tags), each with its source.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
    /// When a cap (`max_moves`, `max_gib`, `max_moves_per_node`) stopped the plan: what the rest
    /// would take, found by going on without the cap. `None` = no cap stopped it.
    #[serde(default)]
    pub remaining: Option<Remaining>,
    /// When the price stopped the plan above its stop band (no allowed move paid): the move
    /// that came closest, what it would take and gain. `None` = the plan reached its stop band,
    /// a cap stopped it, or no allowed move would gain at all.
    #[serde(default)]
    pub priced_out: Option<PricedOut>,
    /// Estimated migration time of the steps, in seconds, one after the other (copy at the
    /// bandwidth, set-up, container downtime); see docs/ENGINE.md.
    #[serde(default)]
    pub migration_secs: f64,
    /// After the plan, can the cluster absorb the loss of its largest node? `None` = fewer than
    /// two balanced nodes.
    #[serde(default)]
    pub n_plus_one: Option<NPlusOne>,
    /// The migration bandwidth the moves were priced at, and where it came from.
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
}

/// The migration bandwidth a plan prices moves at (`PlanRequest::migration_bandwidth_mib_s`,
/// else measured from past migrations, else the default) and where the figure came from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub mib_s: f64,
    pub source: BandwidthSource,
    /// Successful past migrations it was measured from (`measured` only; else 0).
    #[serde(default)]
    pub migrations: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BandwidthSource {
    /// Set by the admin (file, stored settings or this request).
    Configured,
    /// The median of recent successful migrations in PVE's task list.
    Measured,
    /// [`PlanRequest::DEFAULT_BANDWIDTH_MIB_S`]: neither set nor measurable.
    Default,
}

impl Bandwidth {
    /// In words, for plan notes and the CLI: "500 MiB/s (default: no past migrations to measure)".
    pub fn describe(&self) -> String {
        match self.source {
            BandwidthSource::Configured => format!("{:.0} MiB/s (configured)", self.mib_s),
            BandwidthSource::Measured => {
                format!("{:.0} MiB/s (measured from {} past migrations)", self.mib_s, self.migrations)
            }
            BandwidthSource::Default => {
                format!("{:.0} MiB/s (default: no past migrations to measure)", self.mib_s)
            }
        }
    }
}

/// The best move a plan did not take because it did not pay (docs/ENGINE.md, "When a move
/// pays"): raising `seconds_per_point` above `secs / gain` would let it pay.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PricedOut {
    /// The spread the plan stopped at (points), above the stop band.
    pub spread: f64,
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Its estimated migration seconds.
    pub secs: f64,
    /// Its gain in objective points (before its price).
    pub gain: f64,
    /// The gain it needed: its price (`secs / seconds_per_point`) plus `min_gain` of the gap.
    pub needed: f64,
    /// The `seconds_per_point` from which it would pay (the plan would go on at least this move).
    pub pays_at: f64,
}

/// What a capped plan left undone.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Remaining {
    /// Further migrations an uncapped plan would make after this one.
    pub moves: u32,
    /// GiB (memory plus local disk) those migrations would move.
    pub gib: f64,
    /// The spread they would end at (points).
    pub spread_after: f64,
}

/// N+1 after the plan: the node whose running guests hold the most memory is lost; do they fit
/// on the others (memory with reserve, vCPU ratio, hard rules)?
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NPlusOne {
    /// The node assumed lost.
    pub node: String,
    pub ok: bool,
    /// Memory of its running guests, bytes.
    pub mem_bytes: u64,
    /// Running guests that would find no room.
    pub stranded: Vec<u32>,
    pub stranded_mem_bytes: u64,
}
