//! Back-test: what a policy would have done over a stretch of history (PVE's RRD series and its
//! task log), planned with the real engine at each step.
//!
//! The replay assumes **load follows the guest**: a node's usage at a past time is its own
//! overhead (its recorded usage minus the guests that were really on it) plus the recorded usage
//! of the guests the replay puts there. Guests without data at a time (created later, or a gap in
//! the RRD) are absent then; guests deleted since are absent throughout (the history is read for
//! the guests that exist now). Pure: the backend imports the history, this module replays it.

mod measure;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ClusterSnapshot, RecentMigration};
use crate::plan::{MigrationKind, PlanRequest};
use crate::planner;

pub use measure::hard_violations;

/// One value per sample time; `None` = no data then.
pub type Series = Vec<Option<f64>>;

/// A node's recorded usage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHistory {
    pub node: String,
    /// CPU in use, in cores.
    pub cpu: Series,
    /// Memory in use, in bytes.
    pub mem: Series,
}

/// A guest's recorded usage.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestHistory {
    pub vmid: u32,
    /// CPU in use, in cores.
    pub cpu: Series,
    /// Memory in use, in bytes.
    pub mem: Series,
}

/// A successful migration from PVE's task log: the guest left `from` at `at` (task end). The
/// target is not in PVE's task list; it is where the guest was next (see [`History::node_at`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PastMigration {
    pub vmid: u32,
    pub from: String,
    pub at: u64,
    /// Task start (0 when unknown): `at − started` is how long the migration took.
    #[serde(default)]
    pub started: u64,
}

/// The imported history: the cluster as it is now plus series on one uniform time grid.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Node sizes, guest metadata (kind, tags, pools, HA) and rules, as collected now.
    pub now: ClusterSnapshot,
    /// Sample times (Unix seconds), ascending, equally spaced.
    pub times: Vec<u64>,
    pub nodes: Vec<NodeHistory>,
    pub guests: Vec<GuestHistory>,
    pub migrations: Vec<PastMigration>,
}

/// Which figure the spread is measured on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    #[default]
    Memory,
    Cpu,
}

/// One policy to replay, by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedPolicy {
    pub name: String,
    pub request: PlanRequest,
}

/// What to replay and how to measure it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacktestRequest {
    /// Seconds between two balancing runs (a multiple of the sample spacing works best).
    pub interval_secs: u64,
    /// A node above this memory use (percent) counts as a node-hour over the threshold.
    pub memory_threshold: f64,
    /// The same for CPU.
    pub cpu_threshold: f64,
    pub spread_on: Resource,
    pub policies: Vec<NamedPolicy>,
}

/// Whose placement a run follows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// The placement at the start, kept.
    Nobody,
    /// What PVE's task log says happened.
    Actual,
    /// A policy replayed with the engine.
    Policy,
}

/// One migration of a run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// Sample time at which the guest is on `to`.
    pub at: u64,
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Memory plus local disk copied, in bytes.
    pub bytes: u64,
    /// A running container restarted to move.
    pub restart: bool,
}

/// The figures of one run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub name: String,
    pub kind: RunKind,
    pub migrations: usize,
    pub migrations_per_day: f64,
    pub gib_moved: f64,
    pub node_hours_over_memory: f64,
    pub node_hours_over_cpu: f64,
    /// Mean and worst max − min node use (points) over the samples.
    pub spread_mean: f64,
    pub spread_worst: f64,
    /// Moves that take a guest back to a node it left less than 24 h before.
    pub reversals_24h: usize,
    pub ct_restarts: usize,
    /// Hard-rule breaches counted at every balancing time (must be 0 for a policy).
    pub hard_violations: usize,
    /// Spread per sample (the chart).
    pub spread: Vec<f64>,
    pub moves: Vec<Move>,
}

/// The back-test: nobody, actual, then each policy in the request's order.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    pub times: Vec<u64>,
    pub interval_secs: u64,
    pub days: f64,
    pub spread_on: Resource,
    pub runs: Vec<RunReport>,
}

impl History {
    /// Checks the shape: ascending equally spaced times, one value per time in every series, every
    /// node of the series in `now`. The error says which series and how to fix it.
    pub fn check(&self) -> Result<(), String> {
        if self.times.len() < 2 {
            return Err(format!("history has {} sample(s); import at least two", self.times.len()));
        }
        let step = self.times[1].saturating_sub(self.times[0]);
        if step == 0 || self.times.windows(2).any(|w| w[1].checked_sub(w[0]) != Some(step)) {
            return Err("history times must be ascending and equally spaced (one RRD timeframe)".into());
        }
        let n = self.times.len();
        for s in &self.nodes {
            if s.cpu.len() != n || s.mem.len() != n {
                return Err(format!("node {}: series length differs from the {n} sample times", s.node));
            }
            if !self.now.nodes.iter().any(|x| x.name == s.node) {
                return Err(format!("node {}: not in the cluster snapshot", s.node));
            }
        }
        match self.guests.iter().find(|g| g.cpu.len() != n || g.mem.len() != n) {
            Some(g) => Err(format!("guest {}: series length differs from the {n} sample times", g.vmid)),
            None => Ok(()),
        }
    }

    /// Seconds between two samples.
    pub fn step_secs(&self) -> u64 {
        self.times.get(1).zip(self.times.first()).map_or(0, |(b, a)| b - a)
    }

    /// Where guest `vmid` was at `t`: the source of its first migration that ended after `t`,
    /// else where it is now.
    pub fn node_at(&self, vmid: u32, t: u64) -> Option<&str> {
        let next = self.migrations.iter().filter(|m| m.vmid == vmid && m.at > t).min_by_key(|m| m.at);
        match next {
            Some(m) => Some(m.from.as_str()),
            None => self.now.guests.iter().find(|g| g.vmid == vmid).map(|g| g.node.as_str()),
        }
    }
}

impl BacktestRequest {
    /// Checks the request; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.interval_secs < 60 {
            return Err(format!("interval_secs: {} is under 60 seconds", self.interval_secs));
        }
        for (field, v) in [("memory_threshold", self.memory_threshold), ("cpu_threshold", self.cpu_threshold)]
        {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("{field}: {v} is outside 0–100 percent"));
            }
        }
        if self.policies.iter().any(|p| p.name.trim().is_empty()) {
            return Err("policies: every policy needs a name".into());
        }
        Ok(())
    }
}

/// Runs the back-test: nobody, actual and every policy over the whole history.
pub fn run(history: &History, request: &BacktestRequest) -> Result<BacktestReport, String> {
    history.check()?;
    request.check()?;
    let grid = measure::Grid::new(history);
    let rules = request.policies.first().map(|p| p.request.clone()).unwrap_or_default();
    let mut runs = vec![
        grid.report("nobody", RunKind::Nobody, &grid.nobody(), &rules, request),
        grid.report("actual", RunKind::Actual, &grid.actual(), &rules, request),
    ];
    for p in &request.policies {
        let placements = replay(&grid, &p.request, request.interval_secs);
        runs.push(grid.report(&p.name, RunKind::Policy, &placements, &p.request, request));
    }
    let days = (history.times.len() as u64 * history.step_secs()) as f64 / 86400.0;
    Ok(BacktestReport {
        times: history.times.clone(),
        interval_secs: request.interval_secs,
        days,
        spread_on: request.spread_on,
        runs: runs.into_iter().map(|r| r.with_rate(days)).collect(),
    })
}

/// A run's placement per sample (guest index → node index, `None` = absent) and its moves.
pub(crate) struct Placements {
    pub at: Vec<Vec<Option<usize>>>,
    pub moves: Vec<Move>,
}

/// The policy's placements: at each balancing time, plan on the replayed cluster and apply it.
fn replay(grid: &measure::Grid, request: &PlanRequest, interval: u64) -> Placements {
    let mut current: Vec<Option<usize>> = grid.actual_at(0);
    let mut out = Placements { at: Vec::with_capacity(grid.len()), moves: Vec::new() };
    let mut next_run = grid.time(0);
    for i in 0..grid.len() {
        grid.admit_new_guests(&mut current, i);
        if grid.time(i) >= next_run {
            next_run = grid.time(i) + interval;
            let snapshot = grid.snapshot(&current, i, recent(&out.moves, grid.time(i), request));
            let plan = planner::plan(&snapshot, request);
            for step in &plan.steps {
                if let Some(m) = grid.apply_step(&mut current, step, i) {
                    out.moves.push(Move { restart: step.migration == MigrationKind::Restart, ..m });
                }
            }
        }
        out.at.push(current.clone());
    }
    out
}

/// The replay's own migrations the engine must know for cooldown and no-return.
fn recent(moves: &[Move], now: u64, request: &PlanRequest) -> Vec<RecentMigration> {
    let window = request.cooldown_secs.max(request.no_return_secs);
    moves
        .iter()
        .filter(|m| now.saturating_sub(m.at) < window)
        .map(|m| RecentMigration { vmid: m.vmid, from: m.from.clone(), to: m.to.clone(), at: m.at })
        .collect()
}

/// Counts moves that bring a guest back to a node it left less than 24 h before.
pub fn reversals_within_day(moves: &[Move]) -> usize {
    let mut left: BTreeMap<(u32, &str), u64> = BTreeMap::new();
    let mut count = 0;
    for m in moves {
        if left.get(&(m.vmid, m.to.as_str())).is_some_and(|&t| m.at.saturating_sub(t) < 86400) {
            count += 1;
        }
        left.insert((m.vmid, m.from.as_str()), m.at);
    }
    count
}
