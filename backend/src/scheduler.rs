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
//! - Outside the balancing windows (`windows`) nothing is planned.
//! - Plans are made with the policy in force (`app::Policy`: file < stored settings) through
//!   the one pipeline (`AppState::plan_now`); only balancing steps of the guest types in
//!   `balance_types` are executed (evacuations always are).

use crate::app::{AppState, PlanNowError};
use crate::store::{JsonStore, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const STATE_FILE: &str = "schedule.json";

/// What the scheduler was started with.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Where `schedule.json` and the lock live (`--state-dir`, shared by every node).
    pub state_dir: PathBuf,
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
    Policy(#[from] crate::settings::SettingsFailure),
    #[error("{0}")]
    State(#[from] StoreError),
    #[error("planning failed: {0}")]
    Plan(#[from] PlanNowError),
    #[error("cannot start the scheduled job: {0}")]
    Start(#[from] crate::execute::StartError),
    #[error("execution is disabled on this node (no journal)")]
    NoExecutor,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    state: Arc<JsonStore<ScheduleState>>,
    host: String,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Scheduler {
        let state = Arc::new(JsonStore::new(&cfg.state_dir, STATE_FILE));
        Scheduler { cfg, state, host: crate::this_host() }
    }

    /// The last run as recorded (none yet: zero).
    pub fn state(&self) -> Result<ScheduleState, SchedulerError> {
        Ok(self.state.load()?)
    }

    /// Claims the run due at `now` for this node; `Err(round)` says why not (not due, or another
    /// node is claiming it right now).
    async fn claim(&self, now: u64, interval: u64) -> Result<Result<(), Round>, SchedulerError> {
        let host = self.host.clone();
        let claimed = self
            .state
            .update_async(move |s: &mut ScheduleState| {
                if s.last_run > 0 && now < s.last_run + interval {
                    return Ok::<_, StoreError>(Err(Round::NotDue {
                        next_in_secs: s.last_run + interval - now,
                    }));
                }
                *s = ScheduleState { last_run: now, host };
                Ok(Ok(()))
            })
            .await;
        match claimed {
            Err(StoreError::Busy { .. }) => Ok(Err(Round::Busy)),
            other => Ok(other?),
        }
    }

    /// One look at the schedule at `now` (Unix seconds; `local` is the node's local week time for
    /// the windows): runs the plan when due.
    pub async fn round(
        &self,
        state: &AppState,
        now: u64,
        local: crate::windows::WeekTime,
    ) -> Result<Round, SchedulerError> {
        let policy = state.policy.resolve_scheduled().await?;
        let settings = &policy.settings;
        let Some(interval) = settings.schedule_interval_secs else {
            return Ok(Round::Off);
        };
        let ex = state.jobs.as_ref().ok_or(SchedulerError::NoExecutor)?;
        if ex.active_job().is_some() {
            return Ok(Round::Busy);
        }
        // Checked when stored or loaded, so a parse error cannot happen here; read as "always".
        let windows = crate::windows::parse_all(&settings.windows).unwrap_or_default();
        if !crate::windows::is_open(&windows, local) {
            return Ok(Round::OutsideWindow);
        }
        if let Err(skip) = self.claim(now, interval).await? {
            return Ok(skip);
        }
        let plan = state.plan_now(&policy.request, now).await?;
        let selection: Vec<u32> = plan
            .steps
            .iter()
            .filter(|s| s.purpose != shared::plan::StepPurpose::Balance || settings.executes(s.kind))
            .map(|s| s.vmid)
            .collect();
        if selection.is_empty() {
            tracing::info!(notes = ?plan.notes, "scheduled run: nothing to move (or no step's type in balance_types)");
            return Ok(Round::Balanced { notes: plan.notes });
        }
        let job_id = ex.start(&plan, Some(&selection), "scheduler")?;
        let detail = format!(
            "{} moves, spread {:.1} → {:.1} points",
            selection.len(),
            plan.spread_before,
            plan.spread_after
        );
        state.audit("scheduler", "schedule.run", "cluster", &detail, Some(job_id));
        tracing::info!(job = job_id, %detail, "scheduled run started");
        Ok(Round::Started { job_id, steps: selection.len() })
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
