//! The application layer: one state every front door shares (HTTP routes, the scheduler, the
//! notifier), the one plan pipeline, and the audit log. The policy itself (`crate::policy`) sits
//! one layer down, so maintenance and the CLI resolve it the same way.
//!
//! Layer rule (checked by `backend/tests/layers.rs`): `app` may use the services below it
//! (`execute`, `collect`, `settings`/`store`, `maintenance`, …) and `pve`, never `http` or the
//! CLI modules above it.

pub mod backtest;
pub mod origins;

use crate::auth::Authenticator;
use crate::pve::{PveClient, PveError};
use shared::{Plan, PlanRequest};
use std::sync::Arc;

pub use crate::policy::Policy;

/// Everything a request, a scheduled run or an alert needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The service's own PVE session (collection, execution).
    pub pve: Arc<PveClient>,
    /// Checks callers' own PVE credentials.
    pub auth: Arc<Authenticator>,
    /// Runs plans; `None` disables the job routes (503).
    pub jobs: Option<Arc<crate::execute::Executor>>,
    /// Cluster-wide maintenance marks.
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// The policy every plan is made with (file < stored settings < request).
    pub policy: Arc<Policy>,
    /// The usage history; `None`: history routes answer 503.
    pub sampler: Option<Arc<crate::sampler::Sampler>>,
    /// Shared snapshot for `GET /api/v1/cluster`; no sharing by default.
    pub snapshots: Arc<crate::snapshot_cache::SnapshotCache>,
    /// The PVE web UI origins of this cluster (CORS).
    pub origins: Arc<origins::Origins>,
    /// The back-test (`/api/v1/backtest`); no history cache by default.
    pub backtests: Arc<backtest::Backtests>,
}

impl AppState {
    pub fn new(pve: Arc<PveClient>) -> AppState {
        AppState {
            auth: Arc::new(Authenticator::new(pve.clone())),
            pve,
            jobs: None,
            maintenance: Default::default(),
            policy: Arc::new(Policy::new(std::path::Path::new(crate::settings::DEFAULT_STATE_DIR), None)),
            sampler: None,
            snapshots: Default::default(),
            origins: Default::default(),
            backtests: Default::default(),
        }
    }

    /// Caches the back-test's history in `dir` (resume, reuse within the hour).
    pub fn with_history_cache(mut self, dir: std::path::PathBuf) -> AppState {
        self.backtests = Arc::new(backtest::Backtests::new(Some(dir)));
        self
    }

    /// Plans with this policy (configuration file and stored settings).
    pub fn with_policy(mut self, policy: Arc<Policy>) -> AppState {
        self.policy = policy;
        self
    }

    /// Enables execution with this executor.
    pub fn with_executor(mut self, executor: Arc<crate::execute::Executor>) -> AppState {
        self.jobs = Some(executor);
        self
    }

    /// Keeps the maintenance marks in this store (default: `/etc/pve/pve-rebalancer`).
    pub fn with_maintenance(mut self, maintenance: Arc<crate::maintenance::Maintenance>) -> AppState {
        self.maintenance = maintenance;
        self
    }

    /// Serves the history of `sampler`.
    pub fn with_sampler(mut self, sampler: Arc<crate::sampler::Sampler>) -> AppState {
        self.sampler = Some(sampler);
        self
    }

    /// CSRF tokens of ticket writes checked with the key file at `path` (default: PVE's
    /// `/etc/pve/priv/pve-www.key`; tests give the simulator's).
    pub fn with_csrf_key(mut self, path: impl Into<std::path::PathBuf>) -> AppState {
        self.auth = Arc::new(Authenticator::new(self.pve.clone()).with_csrf_key(path));
        self
    }

    /// `GET /api/v1/cluster` answers from a snapshot at most `ttl` old (one collection per `ttl`).
    pub fn with_cluster_cache(mut self, ttl: std::time::Duration) -> AppState {
        self.snapshots = Arc::new(crate::snapshot_cache::SnapshotCache::new(ttl));
        self
    }

    /// Trusts these PVE UI origins for CORS (see [`origins::Origins`]).
    pub fn with_origins(mut self, origins: Arc<origins::Origins>) -> AppState {
        self.origins = origins;
        self
    }
}

/// Why no plan was made.
#[derive(Debug, thiserror::Error)]
pub enum PlanNowError {
    #[error("{0}")]
    Pve(#[from] PveError),
    #[error("the maintenance state failed: {0}")]
    Maintenance(#[from] crate::maintenance::MaintError),
    #[error("{0}")]
    Policy(#[from] crate::settings::SettingsFailure),
}

impl AppState {
    /// A balance plan on a fresh snapshot, as every service path makes one (`/plan`, the
    /// scheduler, the ProxBalance aliases): recent migrations for the cooldown rules, our own
    /// usage samples for the percentile mode, our maintenance marks (PVE HA maintenance is in the
    /// snapshot already), and PVE's migrate check.
    pub async fn plan_now(&self, request: &PlanRequest, now: u64) -> Result<Plan, PlanNowError> {
        let collected = crate::collect::collect(&self.pve, now).await?;
        let mut snapshot = crate::recent::for_plan(collected, &self.pve, request);
        if let Some(sampler) = &self.sampler {
            sampler.fill_percentiles(&mut snapshot);
        }
        self.maintenance.apply_marks(&mut snapshot).await?;
        Ok(crate::preflight::plan(&self.pve, &mut snapshot, |s| shared::planner::plan(s, request)).await)
    }

    /// The policy in force with `overrides` on top.
    pub async fn policy_with(
        &self,
        overrides: shared::policy::PolicyLayer,
    ) -> Result<shared::policy::PolicyView, crate::settings::SettingsFailure> {
        self.policy.resolve_async(overrides).await
    }

    /// The plan request in force, with no overrides.
    pub async fn plan_request(&self) -> Result<PlanRequest, crate::settings::SettingsFailure> {
        Ok(self.policy_with(Default::default()).await?.request)
    }

    /// Records one write in the audit log, when there is a journal. A failed audit write is
    /// logged and does not undo the write it describes (that already happened).
    pub fn audit(&self, user: &str, action: &str, target: &str, detail: &str, job_id: Option<u64>) {
        let Some(ex) = &self.jobs else {
            tracing::warn!(%user, %action, %target, "no journal: audit entry not recorded");
            return;
        };
        let rec = crate::execute::AuditRecord { user, action, target, detail, job_id };
        if let Err(e) = ex.journal().record_audit(crate::unix_now(), &rec) {
            tracing::error!(error = %e, %user, %action, "audit write failed");
        }
    }
}
