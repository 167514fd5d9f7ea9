//! Scheduled balancing in `serve`. When the stored setting `schedule_interval_secs` is set (the
//! panel's Settings view, or `service.daemon: true` with `balancing.enable: true` in the
//! configuration), one node of the cluster plans with the stored settings every interval and
//! executes the plan, as an admin pressing Execute would; the audit log records it as user
//! `scheduler` (`schedule.run`).
//!
//! Invariants:
//! - At most one scheduled run per interval cluster-wide: every node's service ticks, but a run
//!   first advances `<state-dir>/schedule.json`'s `last_run` under a cluster-wide `mkdir` lock
//!   (pmxcfs), so the other nodes find it not due.
//! - Never beside a job: a node whose executor runs one skips the round (the executor's own
//!   cluster lock refuses a second job anywhere).
//! - Outside the balancing windows (`rebalancer.windows`) nothing is planned.
//! - Plans go through `preflight` and the maintenance marks like any other plan.

use crate::execute::{ClusterLock, DirLock};
use crate::http::AppState;
use crate::windows::Window;
use serde::{Deserialize, Serialize};
use shared::PlanRequest;
use std::path::PathBuf;
use std::time::Duration;

pub const STATE_FILE: &str = "schedule.json";
const LOCK_NAME: &str = "scheduler";
/// The lock covers a read and a write of a small file: a holder older than this is dead.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// What the scheduler was started with.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Where `schedule.json` and the lock live (`--state-dir`, shared by every node).
    pub state_dir: PathBuf,
    /// The plan request the stored settings are applied over (the configuration's, or defaults).
    pub base: PlanRequest,
    /// Balancing windows; empty = always open.
    pub windows: Vec<Window>,
    /// How often the service looks whether a run is due.
    pub tick: Duration,
}

/// `schedule.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ScheduleState {
    /// Unix seconds of the last run's start (any node's).
    pub last_run: u64,
    /// The host that ran it.
    pub host: String,
}

/// What one round did.
#[derive(Clone, Debug, PartialEq)]
pub enum Round {
    /// `schedule_interval_secs` is not set.
    Off,
    /// The last run (here or on another node) was less than an interval ago.
    NotDue {
        next_in_secs: u64,
    },
    /// Another node holds the schedule lock, or a job is running here.
    Busy,
    OutsideWindow,
    /// Planned; nothing to move.
    Balanced {
        notes: Vec<String>,
    },
    Started {
        job_id: u64,
        steps: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("{0}")]
    Settings(#[from] crate::settings::SettingsStoreError),
    #[error("schedule state {path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("planning failed: {0}")]
    Plan(#[from] crate::http::PlanNowError),
    #[error("cannot start the scheduled job: {0}")]
    Start(#[from] crate::execute::StartError),
    #[error("execution is disabled on this node (no journal)")]
    NoExecutor,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    lock: DirLock,
    host: String,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Scheduler {
        let lock = DirLock::new(cfg.state_dir.join("lock"));
        let host = crate::maintenance::this_host();
        Scheduler { cfg, lock, host }
    }

    fn state_path(&self) -> PathBuf {
        self.cfg.state_dir.join(STATE_FILE)
    }

    fn state_err(&self, detail: impl std::fmt::Display) -> SchedulerError {
        SchedulerError::State { path: self.state_path(), detail: detail.to_string() }
    }

    /// The last run as recorded (none yet: zero).
    pub fn state(&self) -> Result<ScheduleState, SchedulerError> {
        match std::fs::read(self.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.state_err(format!("not valid ({e}); fix or remove the file"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ScheduleState::default()),
            Err(e) => Err(self.state_err(e)),
        }
    }

    /// Claims the run due at `now` for this node; `Err(round)` says why not (not due, or another
    /// node is claiming it right now).
    fn claim(&self, now: u64, interval: u64) -> Result<Result<(), Round>, SchedulerError> {
        let Some(_guard) = self.lock.try_acquire(LOCK_NAME, LOCK_TTL) else {
            return Ok(Err(Round::Busy));
        };
        let last = self.state()?.last_run;
        if last > 0 && now < last + interval {
            return Ok(Err(Round::NotDue { next_in_secs: last + interval - now }));
        }
        let claimed = ScheduleState { last_run: now, host: self.host.clone() };
        let bytes = serde_json::to_vec_pretty(&claimed).map_err(|e| self.state_err(e))?;
        crate::state_file::write_atomically(&self.cfg.state_dir, STATE_FILE, &bytes)
            .map_err(|e| self.state_err(format!("cannot write it: {e}")))?;
        Ok(Ok(()))
    }

    /// One look at the schedule at `now` (Unix seconds; `local` is the node's local week time for
    /// the windows): runs the plan when due.
    pub async fn round(
        &self,
        state: &AppState,
        now: u64,
        local: crate::windows::WeekTime,
    ) -> Result<Round, SchedulerError> {
        let settings = state.admin.settings.load()?.settings;
        let Some(interval) = settings.schedule_interval_secs else {
            return Ok(Round::Off);
        };
        let ex = state.jobs.as_ref().ok_or(SchedulerError::NoExecutor)?;
        if ex.active_job().is_some() {
            return Ok(Round::Busy);
        }
        if !crate::windows::is_open(&self.cfg.windows, local) {
            return Ok(Round::OutsideWindow);
        }
        if let Err(skip) = self.claim(now, interval)? {
            return Ok(skip);
        }
        let mut request = self.cfg.base.clone();
        settings.apply_to(&mut request);
        let plan = state.plan_now(&request, now).await?;
        if plan.steps.is_empty() {
            tracing::info!(notes = ?plan.notes, "scheduled run: balanced, nothing to move");
            return Ok(Round::Balanced { notes: plan.notes });
        }
        let job_id = ex.start(&plan, None, "scheduler")?;
        let detail = format!(
            "{} moves, spread {:.1} → {:.1} points",
            plan.steps.len(),
            plan.spread_before,
            plan.spread_after
        );
        crate::http_admin::record(state, "scheduler", "schedule.run", "cluster", &detail, Some(job_id));
        tracing::info!(job = job_id, %detail, "scheduled run started");
        Ok(Round::Started { job_id, steps: plan.steps.len() })
    }

    /// Looks every `tick` for as long as the service runs.
    pub fn spawn(self, state: AppState) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.cfg.tick.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                match self.round(&state, now, crate::windows::local_now()).await {
                    Ok(r) => tracing::debug!(round = ?r, "schedule"),
                    Err(e) => tracing::error!(error = %e, "scheduled run failed"),
                }
            }
        })
    }
}
