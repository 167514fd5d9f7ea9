//! The imperative shell of execution: runs a job's steps against PVE, journals every change,
//! announces it, and reconciles in-flight steps after a restart. Every decision is delegated to
//! `decide`; every loop here is bounded by a deadline or a count.

use super::decide::{self, Limits, Observed, Precheck, TaskOutcome};
use super::journal::{Journal, JournalError};
use super::lock::{ClusterLock, Guard};
use super::upid::{path_segment, Upid};
use crate::pve::{PveClient, PveError};
use crate::unix_now;
use serde_json::Value;
use shared::api::{JobState, JobSummary, JobView, StepState, StepView};
use shared::{GuestKind, Plan};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Tunables of the executor.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Migrations in flight at once, cluster-wide.
    pub max_parallel: usize,
    /// Migrations in flight per node (as source or target).
    pub max_per_node: usize,
    /// A step still running after this long is stopped (`DELETE` of its task) and failed.
    pub step_timeout: Duration,
    /// Task polling starts at `poll_min` and backs off to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// Consecutive unanswered status polls before a step is recorded `unknown` (a transport
    /// error is "don't know yet", not a failure).
    pub max_unknown_polls: u32,
    /// How long to wait for the HA manager to start the migration a `hamigrate` asked for.
    pub ha_child_wait: Duration,
    /// `timeout` of a container's shutdown in restart mode, seconds.
    pub ct_shutdown_timeout: u32,
    /// Name of the cluster-wide lock, and its TTL (refreshed every third of it).
    pub lock_name: String,
    pub lock_ttl: Duration,
    /// Tries of a read-only call (cluster state, migrate precondition) on transport errors.
    pub read_attempts: u32,
    /// Ask PVE 9+ to carry a running VM's conntrack state (ProxLB's `with_conntrack_state`).
    pub conntrack_state: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            max_parallel: 2,
            max_per_node: 1,
            step_timeout: Duration::from_secs(3600),
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(10),
            max_unknown_polls: 30,
            ha_child_wait: Duration::from_secs(300),
            ct_shutdown_timeout: 180,
            lock_name: "pve-rebalancer-executor".into(),
            lock_ttl: Duration::from_secs(120),
            read_attempts: 3,
            conntrack_state: true,
        }
    }
}

/// A change worth telling listeners (the SSE route) about.
#[derive(Clone, Debug)]
pub enum ExecEvent {
    Step {
        job_id: u64,
        step: StepView,
    },
    /// The job ended; no more events for it.
    End {
        job: JobSummary,
    },
}

impl ExecEvent {
    pub fn job_id(&self) -> u64 {
        match self {
            ExecEvent::Step { job_id, .. } => *job_id,
            ExecEvent::End { job } => job.id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("job {0} is still running; cancel it or wait for it to end")]
    Busy(u64),
    #[error("another executor holds the cluster lock `{0}`")]
    Locked(String),
    #[error("the journal is being reconciled with PVE after a restart; try again shortly")]
    Recovering,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no job {0}")]
    NotFound(u64),
    #[error("job {0} is {1} and is not running in this service")]
    NotRunning(u64, &'static str),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

#[derive(Default)]
struct Active {
    job: Option<(u64, watch::Sender<bool>)>,
    /// The running job's driver, so [`Executor::halt`] can stop it dead.
    driver: Option<tokio::task::AbortHandle>,
    recovering: bool,
}

/// Names of nodes no step may target besides those PVE reports in HA maintenance (the
/// service's own maintenance marks), read afresh before each step.
pub type ClosedTargets = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// `(max_parallel, max_per_node)` in force, read at each job start (the stored settings, which any
/// node may change); `None` keeps the configured [`ExecConfig`] limits.
pub type LimitsSource = Arc<dyn Fn() -> Option<(usize, usize)> + Send + Sync>;

pub struct Executor {
    pve: Arc<PveClient>,
    journal: Arc<Journal>,
    lock: Arc<dyn ClusterLock>,
    cfg: ExecConfig,
    events: broadcast::Sender<ExecEvent>,
    active: Mutex<Active>,
    closed_targets: Mutex<Option<ClosedTargets>>,
    limits_source: Mutex<Option<LimitsSource>>,
}

fn finish(step: &mut StepView, state: StepState, message: String) {
    step.state = state;
    step.phase = None;
    step.finished_at = Some(unix_now());
    step.message = Some(message);
}

impl Executor {
    pub fn new(
        pve: Arc<PveClient>,
        journal: Arc<Journal>,
        lock: Arc<dyn ClusterLock>,
        cfg: ExecConfig,
    ) -> Arc<Executor> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Executor {
            pve,
            journal,
            lock,
            cfg,
            events,
            active: Mutex::new(Active::default()),
            closed_targets: Mutex::new(None),
            limits_source: Mutex::new(None),
        })
    }

    /// Also treats these nodes as in maintenance in every step's precheck: a plan made before
    /// a node was marked must not move guests onto it.
    pub fn set_closed_targets(&self, source: ClosedTargets) {
        *self.closed_targets.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// Takes the parallelism limits from `source` at each job start instead of the fixed config.
    pub fn set_limits_source(&self, source: LimitsSource) {
        *self.limits_source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn limits(&self) -> Limits {
        let source = self.limits_source.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (global, per_node) =
            source.and_then(|f| f()).unwrap_or((self.cfg.max_parallel, self.cfg.max_per_node));
        Limits { global: global.max(1), per_node: per_node.max(1) }
    }

    fn closed_targets(&self) -> Vec<String> {
        let source = self.closed_targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        source.map(|f| f()).unwrap_or_default()
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The PVE client the executor acts with (maintenance reads the nodes' contents with it).
    pub fn pve(&self) -> &PveClient {
        &self.pve
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ExecEvent> {
        self.events.subscribe()
    }

    /// The job this service is running, if any.
    pub fn active_job(&self) -> Option<u64> {
        self.active().job.as_ref().map(|(id, _)| *id)
    }

    pub fn job(&self, id: u64) -> Result<Option<JobView>, JournalError> {
        self.journal.job(id)
    }

    pub fn jobs(&self, limit: usize) -> Result<Vec<JobSummary>, JournalError> {
        self.journal.jobs(limit)
    }

    /// Starts executing `plan` (or the steps of the `selection` vmids); returns the job id.
    /// One job at a time, and only while holding the cluster-wide lock.
    pub fn start(
        self: &Arc<Self>,
        plan: &Plan,
        selection: Option<&[u32]>,
        started_by: &str,
    ) -> Result<u64, StartError> {
        let steps = decide::job_steps(plan, selection)
            .map_err(|(field, detail)| StartError::Invalid { field, detail })?;
        let plan_json = serde_json::to_string(plan)
            .map_err(|e| StartError::Invalid { field: "plan", detail: e.to_string() })?;
        let mut active = self.active();
        if active.recovering {
            return Err(StartError::Recovering);
        }
        if let Some((id, _)) = &active.job {
            return Err(StartError::Busy(*id));
        }
        let guard = self
            .lock
            .try_acquire(&self.cfg.lock_name, self.cfg.lock_ttl)
            .ok_or_else(|| StartError::Locked(self.cfg.lock_name.clone()))?;
        let id = self.journal.create_job(&plan_json, started_by, unix_now(), &steps)?;
        let (cancel_tx, cancel_rx) = watch::channel(false);
        active.job = Some((id, cancel_tx));
        tracing::info!(job = id, steps = steps.len(), %started_by, "execution started");
        let allow_local_disks = plan.request.allow_local_disks;
        let driver = tokio::spawn(self.clone().drive(id, steps, guard, cancel_rx, allow_local_disks));
        active.driver = Some(driver.abort_handle());
        Ok(id)
    }

    /// Stops the running job dead, as a crash would: nothing more is polled or written, and its
    /// in-flight steps stay `running` in the journal for [`Executor::recover`] (used to test
    /// restarts; the lock is released).
    pub fn halt(&self) {
        let mut active = self.active();
        if let Some(driver) = active.driver.take() {
            driver.abort();
        }
        active.job = None;
    }

    /// Asks a running job to stop: no new steps start, running ones have their tasks stopped.
    pub fn cancel(&self, id: u64) -> Result<(), CancelError> {
        if let Some((active_id, tx)) = &self.active().job {
            if *active_id == id {
                tx.send_replace(true);
                tracing::info!(job = id, "cancel requested");
                return Ok(());
            }
        }
        match self.journal.job(id)? {
            None => Err(CancelError::NotFound(id)),
            Some(v) => Err(CancelError::NotRunning(id, v.job.state.as_str())),
        }
    }

    /// Waits (bounded) until job `id` is no longer running; returns its final view.
    pub async fn wait_finished(&self, id: u64, timeout: Duration) -> Option<JobView> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.journal.job(id) {
                Ok(Some(v)) if v.job.state != JobState::Running => return Some(v),
                Ok(None) | Err(_) => return None,
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        None
    }

    fn record(&self, job_id: u64, step: &StepView) {
        if let Err(e) = self.journal.save_step(job_id, step) {
            // Carry on: PVE is already acting; the log keeps what the journal could not.
            tracing::error!(job = job_id, vmid = step.vmid, error = %e, state = step.state.as_str(), "journal write failed");
        }
        let _ = self.events.send(ExecEvent::Step { job_id, step: step.clone() });
    }

    async fn drive(
        self: Arc<Self>,
        id: u64,
        mut steps: Vec<StepView>,
        guard: Guard,
        mut cancel: watch::Receiver<bool>,
        allow_local_disks: bool,
    ) {
        let pve_major = self.pve_major().await;
        let limits = self.limits();
        let mut tasks = tokio::task::JoinSet::new();
        let mut task_pos: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut refresh = tokio::time::interval((self.cfg.lock_ttl / 3).max(Duration::from_millis(10)));
        refresh.tick().await;
        let (mut lost_lock, mut cancel_open) = (false, true);
        loop {
            let user_cancelled = *cancel.borrow();
            let stopping = user_cancelled || lost_lock;
            for pos in 0..steps.len() {
                if steps[pos].state != StepState::Queued {
                    continue;
                }
                let verdict = if stopping {
                    let why = if user_cancelled {
                        "job cancelled before this step started"
                    } else {
                        "lost the cluster lock; not started"
                    };
                    Some((StepState::Cancelled, why.to_owned()))
                } else {
                    decide::blocked_reason(&steps, pos).map(|why| (StepState::Skipped, why))
                };
                if let Some((state, why)) = verdict {
                    finish(&mut steps[pos], state, why);
                    self.record(id, &steps[pos]);
                }
            }
            if !stopping {
                for pos in decide::startable(&steps, limits) {
                    let step = &mut steps[pos];
                    step.state = StepState::Running;
                    step.started_at = Some(unix_now());
                    step.phase = Some("checking".into());
                    self.record(id, step);
                    let ctx = StepCtx {
                        exec: self.clone(),
                        job_id: id,
                        pve_major,
                        allow_local_disks,
                        cancel: Some(cancel.clone()),
                    };
                    let step = step.clone();
                    let handle = tasks.spawn(async move { ctx.run(step).await });
                    task_pos.insert(handle.id(), pos);
                }
            }
            if tasks.is_empty() {
                // Whatever is still queued waits on something that will never be done.
                for s in steps.iter_mut().filter(|s| s.state == StepState::Queued) {
                    finish(s, StepState::Skipped, "its dependencies can never all be done".into());
                    self.record(id, s);
                }
                break;
            }
            tokio::select! {
                joined = tasks.join_next_with_id() => match joined {
                    Some(Ok((task_id, out))) => {
                        if let Some(pos) = task_pos.remove(&task_id) {
                            steps[pos] = out;
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(pos) = task_pos.remove(&e.id()) {
                            finish(&mut steps[pos], StepState::Unknown,
                                format!("internal error while tracking this step ({e}); check the guest in PVE"));
                            self.record(id, &steps[pos]);
                        }
                    }
                    None => {}
                },
                changed = cancel.changed(), if cancel_open => cancel_open = changed.is_ok(),
                _ = refresh.tick() => {
                    if !lost_lock && !guard.refresh() {
                        tracing::error!(job = id, "lost the cluster executor lock; submitting nothing more");
                        lost_lock = true;
                    }
                }
            }
        }
        let user_cancelled = *cancel.borrow();
        let outcome = decide::job_outcome(&steps, user_cancelled);
        let message =
            lost_lock.then_some("the cluster executor lock was lost; remaining steps were not started");
        // Release before the journal says the job ended: a CLI that waits for that record and
        // exits at once would otherwise leave the lock behind for its TTL, refusing the next run.
        drop(guard);
        if let Err(e) = self.journal.finish_job(id, outcome, unix_now(), message) {
            tracing::error!(job = id, error = %e, "journal write failed");
        }
        {
            let mut active = self.active();
            if active.job.as_ref().is_some_and(|(a, _)| *a == id) {
                active.job = None;
                active.driver = None;
            }
        }
        tracing::info!(job = id, state = outcome.as_str(), "execution ended");
        if let Ok(Some(view)) = self.journal.job(id) {
            let _ = self.events.send(ExecEvent::End { job: view.job });
        }
    }

    async fn pve_major(&self) -> Option<u32> {
        let v: Value = read(&self.pve, &self.cfg, "/version").await.ok()?;
        decide::pve_major(crate::pve::wire::text(&v, "version")?)
    }

    /// Reconciles jobs the journal says were running when the service stopped: queued steps are
    /// cancelled, in-flight ones are followed by their UPID (and the guest's location) to an
    /// end state. Nothing is submitted. Returns how many jobs were reconciled.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, JournalError> {
        {
            let mut active = self.active();
            if active.recovering || active.job.is_some() {
                return Ok(0);
            }
            active.recovering = true;
        }
        let result = self.recover_jobs().await;
        self.active().recovering = false;
        result
    }

    async fn recover_jobs(self: &Arc<Self>) -> Result<usize, JournalError> {
        let ids = self.journal.job_ids_in_state(JobState::Running)?;
        for &id in &ids {
            let Some(view) = self.journal.job(id)? else { continue };
            tracing::warn!(job = id, "reconciling a job interrupted by a restart");
            let ctx = StepCtx {
                exec: self.clone(),
                job_id: id,
                pve_major: None,
                allow_local_disks: false,
                cancel: None,
            };
            for mut step in view.steps {
                match step.state {
                    StepState::Queued => finish(
                        &mut step,
                        StepState::Cancelled,
                        "not started: the service stopped while the job ran; nothing is re-submitted".into(),
                    ),
                    // `unknown` but not finished: its task ended OK and it was being verified.
                    StepState::Running | StepState::Unknown if step.finished_at.is_none() => {
                        let (state, why) = ctx.reconcile(&mut step).await;
                        finish(&mut step, state, why);
                    }
                    _ => continue,
                }
                self.record(id, &step);
            }
            self.journal.finish_job(
                id,
                JobState::Interrupted,
                unix_now(),
                Some("the service stopped while this job ran; in-flight steps were reconciled with PVE"),
            )?;
            if let Some(v) = self.journal.job(id)? {
                let _ = self.events.send(ExecEvent::End { job: v.job });
            }
        }
        Ok(ids.len())
    }
}

/// A read-only GET, tried again on transport errors and gateway-type answers (a 500 from PVE is
/// a deliberate refusal with its reason, so it is returned at once).
async fn read<T: serde::de::DeserializeOwned>(
    pve: &PveClient,
    cfg: &ExecConfig,
    path: &str,
) -> Result<T, PveError> {
    let mut delay = Duration::ZERO;
    let mut attempt = 1;
    loop {
        match pve.get::<T>(path).await {
            Err(e @ (PveError::Transport { .. } | PveError::Api { status: 502.., .. }))
                if attempt < cfg.read_attempts.max(1) =>
            {
                tracing::debug!(error = %e, attempt, "PVE read failed; trying again");
                delay = decide::next_delay(delay, cfg.poll_min, cfg.poll_max);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

enum ChildSearch {
    Found(String),
    NotFound,
    Cancelled,
}

/// Everything one step's run needs.
struct StepCtx {
    exec: Arc<Executor>,
    job_id: u64,
    pve_major: Option<u32>,
    allow_local_disks: bool,
    /// `None` when reconciling after a restart (no user to cancel).
    cancel: Option<watch::Receiver<bool>>,
}

impl StepCtx {
    fn cfg(&self) -> &ExecConfig {
        &self.exec.cfg
    }

    fn pve(&self) -> &PveClient {
        &self.exec.pve
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| *c.borrow())
    }

    fn phase(&self, step: &mut StepView, phase: &str) {
        step.phase = Some(phase.into());
        self.exec.record(self.job_id, step);
    }

    /// Sleeps `d`, waking early when the job is cancelled.
    async fn pause(&self, d: Duration) {
        match &self.cancel {
            Some(c) => {
                let mut c = c.clone();
                let _ = tokio::time::timeout(d, c.wait_for(|v| *v)).await;
            }
            None => tokio::time::sleep(d).await,
        }
    }

    async fn observe(&self) -> Result<Observed, PveError> {
        let rows: Vec<Value> = read(self.pve(), self.cfg(), "/cluster/resources").await?;
        let mut seen = decide::observe(&rows);
        decide::close_targets(&mut seen, &self.exec.closed_targets());
        Ok(seen)
    }

    async fn where_is(&self, step: &StepView) -> String {
        match self.observe().await {
            Ok(seen) => decide::location_note(step, &seen),
            Err(e) => format!("guest location unknown: {e}"),
        }
    }

    async fn run(self, mut step: StepView) -> StepView {
        let (state, message) = self.attempt(&mut step).await;
        tracing::info!(job = self.job_id, vmid = step.vmid, state = state.as_str(), %message, "step ended");
        finish(&mut step, state, message);
        self.exec.record(self.job_id, &step);
        step
    }

    async fn attempt(&self, step: &mut StepView) -> (StepState, String) {
        let seen = match self.observe().await {
            Ok(s) => s,
            Err(e) => {
                return (
                    StepState::Failed,
                    format!("could not read the cluster state; nothing submitted: {e}"),
                )
            }
        };
        let running = match decide::precheck(step, &seen) {
            Precheck::Go { running } => running,
            Precheck::AlreadyThere => {
                return (
                    StepState::Done,
                    format!(
                        "already on {} before this step ran (moved outside this job); nothing submitted",
                        step.to
                    ),
                )
            }
            Precheck::Skip(why) => return (StepState::Skipped, why),
        };
        let local_disks = match self.migrate_check(step).await {
            Ok(d) => d,
            Err(verdict) => return verdict,
        };
        if self.cancelled() {
            return (StepState::Cancelled, "job cancelled before this step was submitted".into());
        }
        self.phase(step, "submitting");
        let call = {
            let cfg = self.cfg();
            decide::migrate_call(
                step,
                running,
                local_disks,
                self.pve_major,
                cfg.ct_shutdown_timeout,
                cfg.conntrack_state,
            )
        };
        let since = unix_now().saturating_sub(5);
        let upid = match self.pve().post(&call.path, &call.form).await {
            Ok(v) => match v.as_str().filter(|u| Upid::parse(u).is_some()) {
                Some(u) => u.to_owned(),
                None => {
                    return (
                        StepState::Unknown,
                        format!("PVE accepted the migration but answered no task id: {v}"),
                    )
                }
            },
            Err(PveError::Api { message, .. }) => return (StepState::Failed, message),
            Err(e) => match self.find_task(step, since, &["qmigrate", "vzmigrate", "hamigrate"]).await {
                // The request may have reached PVE before the connection broke: look, don't resend.
                Some(u) => u,
                None => {
                    return (
                        StepState::Failed,
                        format!("submitting failed ({e}); no migration task found on {}", step.from),
                    )
                }
            },
        };
        step.upid = Some(upid.clone());
        let ha = Upid::parse(&upid).is_some_and(|u| u.is_ha_request());
        self.phase(step, if ha { "waiting for HA" } else { "migrating" });
        let deadline = Instant::now() + self.cfg().step_timeout;
        self.track(step, upid, deadline).await
    }

    /// PVE's own migrate precondition check: `Ok(has_local_disks)`, or the step's verdict.
    async fn migrate_check(&self, step: &StepView) -> Result<bool, (StepState, String)> {
        let (kind, vmid, from) = (step.kind, step.vmid, &step.from);
        let path = match kind {
            GuestKind::Qemu => format!("/nodes/{from}/qemu/{vmid}/migrate"),
            // The container check exists from PVE 9 on.
            GuestKind::Lxc if self.pve_major.is_some_and(|m| m >= 9) => {
                format!("/nodes/{from}/lxc/{vmid}/migrate")
            }
            GuestKind::Lxc => return Ok(false),
        };
        match read::<Value>(self.pve(), self.cfg(), &path).await {
            Ok(answer) => match kind {
                GuestKind::Qemu => decide::qemu_precondition(&answer, &step.to, self.allow_local_disks),
                GuestKind::Lxc => decide::lxc_precondition(&answer, &step.to).map(|()| false),
            }
            .map_err(|why| (StepState::Skipped, why)),
            Err(PveError::Api { status: 501, .. }) if kind == GuestKind::Lxc => Ok(false),
            Err(PveError::Api { message, .. }) => {
                Err((StepState::Skipped, format!("PVE's migration check refused: {}", message.trim_end())))
            }
            Err(e) => Err((StepState::Failed, format!("migration check failed; nothing submitted: {e}"))),
        }
    }

    /// A migration task of the step's guest on its source node started at or after `since`.
    async fn find_task(&self, step: &StepView, since: u64, kinds: &[&str]) -> Option<String> {
        let query = [
            ("vmid", step.vmid.to_string()),
            ("since", since.to_string()),
            ("source", "all".to_string()),
            ("limit", "50".to_string()),
        ];
        let path = format!("/nodes/{}/tasks", step.from);
        for _ in 0..self.cfg().read_attempts.max(1) {
            if let Ok(rows) = self.pve().get_with_query::<Vec<Value>>(&path, &query).await {
                return decide::pick_task(&rows, step.vmid, since, kinds);
            }
            tokio::time::sleep(self.cfg().poll_min).await;
        }
        None
    }

    /// Follows task `upid` (and, for `hamigrate`, the migration the HA manager starts) to an end
    /// state, stopping it on cancel or at `deadline`.
    async fn track(&self, step: &mut StepView, upid: String, deadline: Instant) -> (StepState, String) {
        let mut current = upid;
        let Some(mut parsed) = Upid::parse(&current) else {
            return (StepState::Unknown, format!("cannot follow task `{current}`: not a UPID"));
        };
        let (mut delay, mut misses) = (Duration::ZERO, 0u32);
        loop {
            delay = decide::next_delay(delay, self.cfg().poll_min, self.cfg().poll_max);
            self.pause(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
            if self.cancelled() {
                return self.stop(step, &current, "cancelled by the user", StepState::Cancelled).await;
            }
            if Instant::now() >= deadline {
                let why = format!("timed out after {} s", self.cfg().step_timeout.as_secs_f64().ceil());
                return self.stop(step, &current, &why, StepState::Failed).await;
            }
            let path = format!("/nodes/{}/tasks/{}/status", parsed.node, path_segment(&current));
            let outcome = match self.pve().get::<Value>(&path).await {
                Ok(v) => decide::task_outcome(&v).ok_or_else(|| format!("unreadable task status {v}")),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Err(e) => {
                    misses += 1;
                    if self.landed(step).await {
                        return (
                            StepState::Done,
                            format!("on {}; the task's status could not be read afterwards ({e})", step.to),
                        );
                    }
                    tracing::debug!(vmid = step.vmid, misses, error = %e, "task status unknown; polling again");
                    if misses > self.cfg().max_unknown_polls {
                        let whereabouts = self.where_is(step).await;
                        return (
                            StepState::Unknown,
                            format!("lost track of task {current} after {misses} failed polls ({e}); {whereabouts}"),
                        );
                    }
                }
                Ok(TaskOutcome::Running) => misses = 0,
                Ok(TaskOutcome::Failed(msg)) => {
                    let whereabouts = self.where_is(step).await;
                    return (StepState::Failed, format!("{msg} ({whereabouts})"));
                }
                Ok(TaskOutcome::Ok) if parsed.is_ha_request() => {
                    match self.find_ha_child(step, parsed.starttime, deadline).await {
                        ChildSearch::Found(child) => {
                            let Some(p) = Upid::parse(&child) else {
                                return (StepState::Unknown, format!("HA started task `{child}`, which is not a UPID"));
                            };
                            step.task_upid = Some(child.clone());
                            self.phase(step, "migrating");
                            (current, parsed, delay, misses) = (child, p, Duration::ZERO, 0);
                        }
                        ChildSearch::Cancelled => {
                            return (
                                StepState::Cancelled,
                                "cancelled by the user after the HA manager accepted the request; it may still move the guest".into(),
                            )
                        }
                        ChildSearch::NotFound => {
                            return match self.verify(step, deadline).await {
                                (StepState::Done, m) => (StepState::Done, m),
                                (_, m) => (
                                    StepState::Failed,
                                    format!("the HA manager accepted the request but started no migration in time: {m}"),
                                ),
                            }
                        }
                    }
                }
                Ok(TaskOutcome::Ok) => return self.verify(step, deadline).await,
            }
        }
    }

    async fn find_ha_child(&self, step: &StepView, since: u64, deadline: Instant) -> ChildSearch {
        let kind = if step.kind == GuestKind::Qemu { "qmigrate" } else { "vzmigrate" };
        let give_up = deadline.min(Instant::now() + self.cfg().ha_child_wait);
        let mut delay = Duration::ZERO;
        while Instant::now() < give_up {
            if let Some(child) = self.find_task(step, since, &[kind]).await {
                return ChildSearch::Found(child);
            }
            if self.cancelled() {
                return ChildSearch::Cancelled;
            }
            delay = decide::next_delay(delay, self.cfg().poll_min, self.cfg().poll_max);
            self.pause(delay.min(give_up.saturating_duration_since(Instant::now()))).await;
        }
        ChildSearch::NotFound
    }

    /// Confirms in `/cluster/resources` that the guest is on its target after its task ended OK.
    /// A view that disagrees is read a few more times (it may lag the task's end by a moment),
    /// then the step failed. While PVE cannot be read at all, the step is recorded `unknown`
    /// (not finished) and read again until `deadline` (at least a short grace): a migration that
    /// landed is never reported failed because PVE was briefly unreachable.
    async fn verify(&self, step: &mut StepView, deadline: Instant) -> (StepState, String) {
        self.phase(step, "verifying");
        let deadline = deadline.max(Instant::now() + self.cfg().poll_max * 20);
        let (mut misplaced, mut unreadable_since) = (0u32, None::<Instant>);
        let mut delay = Duration::ZERO;
        loop {
            match self.observe().await {
                Ok(seen) if seen.guests.get(&step.vmid).is_some_and(|g| g.node == step.to) => {
                    let after = unreadable_since.map_or(String::new(), |t| {
                        format!(
                            " (PVE could not be read for {:.1} s after the task ended)",
                            t.elapsed().as_secs_f64()
                        )
                    });
                    return (StepState::Done, format!("on {}{after}", step.to));
                }
                Ok(seen) => {
                    misplaced += 1;
                    if misplaced >= 5 {
                        let last = decide::location_note(step, &seen);
                        return (
                            StepState::Failed,
                            format!("the task ended OK but the guest did not land on {}: {last}", step.to),
                        );
                    }
                }
                Err(e) => {
                    let why =
                        format!("the task ended OK; where the guest is stays unknown until PVE answers: {e}");
                    if unreadable_since.is_none() {
                        unreadable_since = Some(Instant::now());
                        step.state = StepState::Unknown;
                        step.message = Some(why.clone());
                        self.exec.record(self.job_id, step);
                    }
                    if Instant::now() >= deadline || self.cancelled() {
                        return (StepState::Unknown, why);
                    }
                }
            }
            delay = decide::next_delay(delay, self.cfg().poll_min, self.cfg().poll_max);
            self.pause(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// While a task's status cannot be read (its node may be offline): a guest that is visibly
    /// on its target has landed, whatever the source node does afterwards.
    async fn landed(&self, step: &StepView) -> bool {
        self.observe().await.is_ok_and(|seen| seen.guests.get(&step.vmid).is_some_and(|g| g.node == step.to))
    }

    /// Stops a running task and records why, with where the guest ended up.
    async fn stop(
        &self,
        step: &mut StepView,
        upid: &str,
        why: &str,
        state: StepState,
    ) -> (StepState, String) {
        self.phase(step, "stopping");
        let node = Upid::parse(upid).map(|u| u.node).unwrap_or_else(|| step.from.clone());
        let stop_note = match self.pve().delete(&format!("/nodes/{node}/tasks/{}", path_segment(upid))).await
        {
            Ok(_) => "stop requested".to_owned(),
            Err(e) => format!("stopping it failed: {e}"),
        };
        // Give PVE a bounded moment to end the task, then read how it ended.
        let mut exit = None;
        let mut delay = Duration::ZERO;
        for _ in 0..10 {
            let path = format!("/nodes/{node}/tasks/{}/status", path_segment(upid));
            if let Ok(Some(outcome)) = self.pve().get::<Value>(&path).await.map(|v| decide::task_outcome(&v))
            {
                if outcome != TaskOutcome::Running {
                    exit = Some(outcome);
                    break;
                }
            }
            delay = decide::next_delay(delay, self.cfg().poll_min, self.cfg().poll_max);
            tokio::time::sleep(delay).await;
        }
        let seen = self.observe().await;
        if let Ok(seen) = &seen {
            if seen.guests.get(&step.vmid).is_some_and(|g| g.node == step.to) {
                return (
                    StepState::Done,
                    format!("{why}, but the migration had already finished: on {}", step.to),
                );
            }
        }
        let exit = match exit {
            Some(TaskOutcome::Failed(m)) => m,
            Some(_) => "ended".into(),
            None => format!("{stop_note}, still running"),
        };
        let whereabouts = match &seen {
            Ok(seen) => decide::location_note(step, seen),
            Err(e) => format!("guest location unknown: {e}"),
        };
        (state, format!("{why}; stopped task {upid} ({exit}); {whereabouts}"))
    }

    /// After a restart: follow the step's task if one is known or can be found, else judge by
    /// where the guest is.
    async fn reconcile(&self, step: &mut StepView) -> (StepState, String) {
        let known = step.task_upid.clone().or_else(|| step.upid.clone());
        let since = step.started_at.unwrap_or(0).saturating_sub(5);
        let found = match known {
            Some(u) => Some(u),
            None => self.find_task(step, since, &["qmigrate", "vzmigrate", "hamigrate"]).await,
        };
        match found {
            Some(upid) => {
                if step.upid.is_none() {
                    step.upid = Some(upid.clone());
                }
                let started = step.started_at.unwrap_or_else(unix_now);
                let left = (started + self.cfg().step_timeout.as_secs()).saturating_sub(unix_now());
                let deadline = Instant::now() + Duration::from_secs(left).max(self.cfg().poll_max * 3);
                let (state, why) = self.track(step, upid, deadline).await;
                (state, format!("after restart: {why}"))
            }
            None => match self.observe().await {
                Ok(seen) => decide::reconcile(step, None, &seen),
                Err(e) => (
                    StepState::Unknown,
                    format!("after restart: no task known and the cluster unreadable: {e}"),
                ),
            },
        }
    }
}
