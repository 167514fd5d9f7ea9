//! Types of the backend's HTTP API (`/api/v1`), shared by the backend and the panel.

use crate::model::ClusterSnapshot;
use crate::plan::{Method, Mode, NodeLoad, PlanStep};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/cluster`: the snapshot plus each node's usage per resource.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub snapshot: ClusterSnapshot,
    pub memory: Vec<NodeLoad>,
    pub cpu: Vec<NodeLoad>,
    pub disk: Vec<NodeLoad>,
    /// Spread (max − min %) of memory and CPU over the balanced nodes.
    pub memory_spread: f64,
    pub cpu_spread: f64,
    /// PVE's own balancer when it is on (copied from the snapshot): HA-managed guests are left
    /// to it and the panel says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_balancer: Option<crate::model::DynamicBalancer>,
    /// Memory kept free per node in bytes (the configuration's `node_resource_reserve`, the
    /// value the service plans with); nodes without a reserve are absent.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub memory_reserve: std::collections::BTreeMap<String, u64>,
}

impl ClusterView {
    /// Fills `memory_reserve` for every node of the snapshot from a plan request's reserve
    /// (`node_memory_reserve` wins over `memory_reserve`, as in planning).
    pub fn with_memory_reserve(mut self, request: &crate::PlanRequest) -> ClusterView {
        self.memory_reserve = self
            .snapshot
            .nodes
            .iter()
            .map(|n| {
                let bytes =
                    request.node_memory_reserve.get(&n.name).copied().unwrap_or(request.memory_reserve);
                (n.name.clone(), bytes)
            })
            .filter(|(_, bytes)| *bytes > 0)
            .collect();
        self
    }

    pub fn of(snapshot: ClusterSnapshot) -> ClusterView {
        let load = |m| crate::planner::node_loads(&snapshot, m, Mode::Used);
        let (memory, cpu, disk) = (load(Method::Memory), load(Method::Cpu), load(Method::Disk));
        let spread = |loads: &[NodeLoad]| {
            let balanced = |l: &&NodeLoad| {
                snapshot
                    .node(&l.node)
                    .is_some_and(|n| n.status == crate::NodeStatus::Online && !n.maintenance)
            };
            let it = || loads.iter().filter(balanced).map(|l| l.percent);
            let (hi, lo) = (it().fold(f64::NEG_INFINITY, f64::max), it().fold(f64::INFINITY, f64::min));
            if hi >= lo {
                hi - lo
            } else {
                0.0
            }
        };
        let (memory_spread, cpu_spread) = (spread(&memory), spread(&cpu));
        let dynamic_balancer = snapshot.dynamic_balancer.clone();
        ClusterView {
            snapshot,
            memory,
            cpu,
            disk,
            memory_spread,
            cpu_spread,
            dynamic_balancer,
            memory_reserve: Default::default(),
        }
    }
}

/// Every error the API returns: what went wrong, the detail (PVE's own message where there is
/// one), and the offending field for bad input.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

// ---- Execution jobs (`/api/v1/plan/execute`, `/api/v1/jobs`) ----

/// `POST /api/v1/plan/execute`: a plan as `POST /api/v1/plan` returned it, and optionally the
/// vmids whose steps to run (all steps when absent). A selected step must not depend on an
/// unselected one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    pub plan: crate::plan::Plan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<u32>>,
}

/// Answer to `POST /api/v1/plan/execute` (202 Accepted).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteResponse {
    pub job_id: u64,
}

/// Where one step of a job stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Not started yet.
    Queued,
    /// Being checked, submitted or tracked.
    Running,
    /// The guest is on its target (checked in `/cluster/resources`).
    Done,
    /// PVE refused or the task failed or timed out; `message` has PVE's words.
    Failed,
    /// Not attempted: a precondition did not hold or a step it depends on did not finish.
    Skipped,
    /// Stopped by the user (or never started because the job was cancelled).
    Cancelled,
    /// Contact with PVE was lost, or a restart found it ambiguous: check the guest in PVE.
    Unknown,
}

impl StepState {
    /// No further change will happen.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepState::Queued | StepState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Queued => "queued",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Cancelled => "cancelled",
            StepState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<StepState> {
        [
            StepState::Queued,
            StepState::Running,
            StepState::Done,
            StepState::Failed,
            StepState::Skipped,
            StepState::Cancelled,
            StepState::Unknown,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// Where a job stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// Every step done.
    Done,
    /// No step failed, but some were skipped.
    Partial,
    /// At least one step failed or ended unknown.
    Failed,
    /// Cancelled by the user.
    Cancelled,
    /// The service stopped while the job ran; its in-flight steps were reconciled with PVE at the
    /// next start and nothing was re-submitted.
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Partial => "partial",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Running,
            JobState::Done,
            JobState::Partial,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Interrupted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One step of a job: the planned move and what became of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    /// Index of the step in the plan (what `depends_on` refers to).
    pub index: usize,
    pub vmid: u32,
    pub name: String,
    pub kind: crate::model::GuestKind,
    pub from: String,
    pub to: String,
    /// As planned; the executor decides online/restart from the guest's status right before.
    pub migration: crate::plan::MigrationKind,
    #[serde(default)]
    pub depends_on: Vec<usize>,
    pub state: StepState,
    /// What a running step is doing: `checking`, `submitting`, `migrating`, `waiting for HA`,
    /// `verifying`, `stopping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The UPID PVE answered to the migrate call (a `hamigrate` one for HA guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upid: Option<String>,
    /// The task being tracked when it differs from `upid` (the HA manager's `qmigrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_upid: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Why it was skipped, PVE's error text, what a restart found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepView {
    /// Step `index` of a plan as it enters a job: queued, nothing submitted yet.
    pub fn queued(index: usize, step: &PlanStep) -> StepView {
        StepView {
            index,
            vmid: step.vmid,
            name: step.name.clone(),
            kind: step.kind,
            from: step.from.clone(),
            to: step.to.clone(),
            migration: step.migration,
            depends_on: step.depends_on.clone(),
            state: StepState::Queued,
            phase: None,
            upid: None,
            task_upid: None,
            started_at: None,
            finished_at: None,
            message: None,
        }
    }
}

/// Steps per state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    pub queued: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
    pub unknown: usize,
}

impl StepCounts {
    pub fn of(steps: &[StepView]) -> StepCounts {
        let mut c = StepCounts::default();
        for s in steps {
            *match s.state {
                StepState::Queued => &mut c.queued,
                StepState::Running => &mut c.running,
                StepState::Done => &mut c.done,
                StepState::Failed => &mut c.failed,
                StepState::Skipped => &mut c.skipped,
                StepState::Cancelled => &mut c.cancelled,
                StepState::Unknown => &mut c.unknown,
            } += 1;
        }
        c
    }
}

/// `GET /api/v1/jobs` rows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: u64,
    pub state: JobState,
    pub started_by: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub counts: StepCounts,
}

/// `GET /api/v1/jobs/{id}`: the job and its steps in plan order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "JobViewWire")]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobSummary,
    pub steps: Vec<StepView>,
}

/// [`JobView`] as read: the same flat JSON object, decoded field by field. serde's decoder for a
/// `flatten`ed field buffers the whole object first (its `Content` type), which the panel's
/// size-budgeted module would pay for (docs/BENCHMARKS.md, Panel); written out as before.
#[derive(Deserialize)]
struct JobViewWire {
    id: u64,
    state: JobState,
    started_by: String,
    created_at: u64,
    #[serde(default)]
    finished_at: Option<u64>,
    #[serde(default)]
    message: Option<String>,
    counts: StepCounts,
    steps: Vec<StepView>,
}

impl From<JobViewWire> for JobView {
    fn from(w: JobViewWire) -> Self {
        // Every field named (no `..`): a field added to `JobSummary` must be added here too.
        let job = JobSummary {
            id: w.id,
            state: w.state,
            started_by: w.started_by,
            created_at: w.created_at,
            finished_at: w.finished_at,
            message: w.message,
            counts: w.counts,
        };
        JobView { job, steps: w.steps }
    }
}

// ---- Maintenance (`/api/v1/maintenance`) and best node (`/api/v1/best-node`) ----

/// Where a node stands in our maintenance workflow.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceState {
    /// Not marked by us (PVE HA maintenance is `NodeMaintenance::ha_maintenance`, separately).
    #[default]
    None,
    /// Marked; the evacuation job is running.
    Entering,
    /// Marked, and no running guest that can move is left on the node (those that stay are in
    /// `NodeMaintenance::staying`, each with its reason).
    InMaintenance,
    /// The mark is being cleared; the return-home job is running.
    Exiting,
    /// Marked, but the evacuation failed or was interrupted with guests that can move still on
    /// the node (`NodeMaintenance::remaining`, `reason`): enter again to resume, or exit.
    Failed,
}

impl MaintenanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceState::None => "none",
            MaintenanceState::Entering => "entering",
            MaintenanceState::InMaintenance => "in_maintenance",
            MaintenanceState::Exiting => "exiting",
            MaintenanceState::Failed => "failed",
        }
    }
}

/// `POST /api/v1/maintenance/{node}/enter`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct MaintenanceRequest {
    /// Plan only: nothing is marked, nothing moves.
    pub preview: bool,
    /// Also put the node in PVE's HA maintenance (`ha-manager crm-command node-maintenance enable`).
    pub ha: bool,
    /// Stopped guests leave too (default true: the node may be switched off).
    pub include_stopped: bool,
}

impl Default for MaintenanceRequest {
    fn default() -> Self {
        MaintenanceRequest { preview: false, ha: false, include_stopped: true }
    }
}

/// `POST /api/v1/maintenance/{node}/exit`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct ExitRequest {
    /// Plan only: the mark stays, nothing moves.
    pub preview: bool,
    /// Bring the guests recorded at enter back to this node (those rules and capacity allow).
    pub return_home: bool,
    /// Also leave PVE's HA maintenance (done anyway when enter set it).
    pub ha: bool,
}

/// `GET /api/v1/maintenance[/{node}]`: one node's maintenance record.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMaintenance {
    pub node: String,
    pub state: MaintenanceState,
    /// Unix seconds of the last state change (absent when `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// The PVE user who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The evacuation (or return-home) job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    /// PVE reports the node in HA maintenance (`hastate: maintenance`), whoever set it.
    #[serde(default)]
    pub ha_maintenance: bool,
    /// We put it in HA maintenance at enter (so exit takes it out again).
    #[serde(default)]
    pub ha_requested: bool,
    /// Where the evacuated guests ran before (what exit with `return_home` brings back).
    #[serde(default)]
    pub homes: Vec<crate::evacuate::GuestHome>,
    /// Why the node is in this state, from what is on it (e.g. why it is still `entering` after
    /// its job ended, or why it `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Running guests still on the node that could move (the node is not `in_maintenance`
    /// while there is one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<u32>,
    /// Guests that stay on the node in maintenance, each with the reason it cannot move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staying: Vec<crate::plan::WhyNot>,
}

impl NodeMaintenance {
    /// No guest may be placed here: marked by us or in PVE HA maintenance.
    pub fn in_maintenance(&self) -> bool {
        self.state != MaintenanceState::None || self.ha_maintenance
    }
}

/// Answer to enter and exit: the plan (evacuation or return home), its job unless `preview` or
/// the plan is empty, and the node's record afterwards.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceAnswer {
    pub plan: crate::plan::Plan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    pub preview: bool,
    pub state: NodeMaintenance,
}

/// `POST /api/v1/best-node`: either a new guest's shape or the vmid of an existing guest (ranked
/// as if it were not placed yet).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct BestNodeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<crate::best_node::NewGuest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
}

/// Answer to `POST /api/v1/best-node`: the best fitting node (none when nothing fits) and every
/// node's rank, best first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestNodeAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<String>,
    pub ranks: Vec<crate::best_node::NodeRank>,
    /// The policy's plan request the nodes were ranked with (reserve, rules, thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::PlanRequest>,
}

// ---- Settings (`/api/v1/settings`) and history (`/api/v1/history`) ----

pub use crate::policy::{Settings, SettingsError};

/// `GET /api/v1/settings` (and the answer to `PUT`): the settings in force, and whether the caller
/// may change them (`Sys.Modify` on `/`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingsView {
    pub settings: Settings,
    /// Field → where its value comes from (`file`, `stored`); absent = the built-in default.
    #[serde(default)]
    pub sources: crate::policy::Sources,
    pub writable: bool,
    /// The privilege the caller lacks to write, e.g. `Sys.Modify on /`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_privilege: Option<String>,
    /// Who stored them last and when (Unix seconds); absent while only the defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<u64>,
}

/// `GET /api/v1/history`: one write, newest first. `action` is one of `plan.execute`,
/// `job.cancel`, `settings.update`, `maintenance.enter`, `maintenance.exit`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    /// Unix seconds.
    pub at: u64,
    /// The PVE user (or token) who did it.
    pub user: String,
    pub action: String,
    /// What it was done to: `job/7`, `node/pve2`, `settings`.
    pub target: String,
    /// A one-line summary: steps of a plan, `balanciness: 10 → 5` for settings.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
}

/// `GET /api/v1/cluster/history?minutes=`: the service's own samples of node usage (one
/// `/cluster/resources` call per interval), oldest first, for the panel's sparklines.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// Seconds between samples (the sampler's interval).
    pub interval_secs: u64,
    /// The window asked for (minutes back from the newest sample).
    pub minutes: u32,
    /// Node names; `HistorySample::cpu` and `memory` are in this order.
    pub nodes: Vec<String>,
    pub samples: Vec<HistorySample>,
    /// Per node over the same window: median and 95th percentile, in percent.
    pub percentiles: Vec<NodePercentiles>,
}

/// One sample of the cluster.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistorySample {
    /// Unix seconds.
    pub at: u64,
    /// Max − min percent over the online nodes not in maintenance.
    pub cpu_spread: f64,
    pub memory_spread: f64,
    /// Coefficient of variation (standard deviation / mean) of the same percentages; 0 when the
    /// mean is 0.
    pub cpu_cv: f64,
    pub memory_cv: f64,
    /// Percent used per node (order of `HistoryView::nodes`); `null` when the node was offline
    /// or not yet known at that time.
    pub cpu: Vec<Option<f64>>,
    pub memory: Vec<Option<f64>>,
}

/// Percentiles of one node's usage over a history window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodePercentiles {
    pub node: String,
    /// Samples the percentiles are taken over.
    pub samples: u32,
    pub cpu_p50: f64,
    pub cpu_p95: f64,
    pub memory_p50: f64,
    pub memory_p95: f64,
}

#[cfg(test)]
mod cluster_view_tests {
    use super::*;

    #[test]
    fn memory_reserve_per_node_wins_over_the_default_and_zero_is_left_out() {
        let node = |name: &str| crate::model::Node { name: name.into(), ..Default::default() };
        let snapshot = ClusterSnapshot { nodes: vec![node("a"), node("b"), node("c")], ..Default::default() };
        let mut request = crate::PlanRequest { memory_reserve: 4 << 30, ..Default::default() };
        request.node_memory_reserve.insert("b".into(), 8 << 30);
        request.node_memory_reserve.insert("c".into(), 0);
        let view = ClusterView::of(snapshot.clone()).with_memory_reserve(&request);
        let want: std::collections::BTreeMap<String, u64> =
            [("a".into(), 4 << 30), ("b".into(), 8 << 30)].into();
        assert_eq!(view.memory_reserve, want);
        // No reserve configured: the field is absent on the wire, and an old answer reads as none.
        let plain = ClusterView::of(snapshot).with_memory_reserve(&crate::PlanRequest::default());
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("memory_reserve").is_none(), "{json}");
        let back: ClusterView = serde_json::from_value(json).unwrap();
        assert!(back.memory_reserve.is_empty());
    }
}

/// `POST /api/v1/backtest`: replay the last `days` of PVE's history with the effective policy
/// and each of `policies` (overrides on top of it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BacktestStart {
    /// Days of history, 1–365 (default 7).
    pub days: u32,
    /// Minutes between two balancing runs in the replay, 1–1440 (default 60).
    pub interval_mins: u64,
    /// Up to 4 policies besides the effective one.
    pub policies: Vec<BacktestPolicy>,
}

impl Default for BacktestStart {
    fn default() -> Self {
        BacktestStart { days: 7, interval_mins: 60, policies: Vec::new() }
    }
}

/// One policy of a back-test: a name and the settings it changes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BacktestPolicy {
    pub name: String,
    pub overrides: crate::policy::PolicyLayer,
}

/// Where the service's back-test is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BacktestState {
    /// None was started since the service started.
    #[default]
    Idle,
    Importing,
    Replaying,
    Done,
    Failed,
}

/// `GET /api/v1/backtest`: progress, then the report.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BacktestStatus {
    pub state: BacktestState,
    /// Series imported (fetched or from the cache) of all.
    pub done: usize,
    pub total: usize,
    pub from_cache: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::backtest::BacktestReport>,
}

impl BacktestStatus {
    pub fn running(&self) -> bool {
        matches!(self.state, BacktestState::Importing | BacktestState::Replaying)
    }
}

#[cfg(test)]
mod job_view_tests {
    use super::*;

    #[test]
    fn job_view_reads_the_flat_object_it_writes() {
        let job = JobView {
            job: JobSummary {
                id: 7,
                state: JobState::Partial,
                started_by: "root@pam".into(),
                created_at: 1_700_000_000,
                finished_at: Some(1_700_000_090),
                message: Some("1 skipped".into()),
                counts: StepCounts { done: 1, skipped: 1, ..StepCounts::default() },
            },
            steps: Vec::new(),
        };
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.starts_with(r#"{"id":7,"state":"partial","started_by":"root@pam""#), "{json}");
        assert_eq!(serde_json::from_str::<JobView>(&json).unwrap(), job);
        // A running job's answer has neither `finished_at` nor `message`.
        let running = r#"{"id":8,"state":"running","started_by":"a@pve","created_at":5,
            "counts":{"queued":0,"running":0,"done":0,"failed":0,"skipped":0,"cancelled":0,"unknown":0},
            "steps":[]}"#;
        let read: JobView = serde_json::from_str(running).unwrap();
        assert_eq!((read.job.id, read.job.finished_at, read.job.message), (8, None, None));
        assert!(serde_json::from_str::<JobView>(r#"{"id":9,"steps":[]}"#).is_err());
    }
}
