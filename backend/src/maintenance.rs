//! Node maintenance: mark a node, evacuate it through the executor, remember where its guests
//! ran, and on exit clear the mark and (optionally) bring them back.
//!
//! The marks live where PVE keeps cluster-wide state: a JSON file in a directory on pmxcfs
//! (`/etc/pve/pve-rebalancer/maintenance.json` by default), so every node's service sees the same
//! marks. It is kept by the one state-file pattern (`store::JsonStore`): read-modify-write under
//! this process's mutex and a cluster-wide `mkdir` lock on pmxcfs, replaced atomically (temporary
//! file + rename, which pmxcfs applies cluster-wide as one change), created 0640, and from async
//! code always on tokio's blocking pool.
//!
//! PVE's own HA maintenance (`hastate: maintenance` on the node's `/cluster/resources` row, read
//! by `collect` into `Node::maintenance`) counts as maintenance for planning too. With `ha` the
//! node also enters/leaves it through `ha-manager crm-command node-maintenance enable|disable`
//! (there is no REST endpoint); PVE's CRM then moves the HA-managed guests itself, so the
//! evacuation leaves those to it.

use crate::execute::{Executor, StartError};
use crate::pve::{PveClient, PveError};
use crate::store::{JsonStore, StoreError};
use crate::unix_now;
use shared::api::{
    ExitRequest, JobState, MaintenanceAnswer, MaintenanceRequest, MaintenanceState, NodeMaintenance,
};
use shared::evacuate::{EvacuationRequest, GuestHome};
use shared::{ClusterSnapshot, Plan, PlanRequest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// pmxcfs: shared by all nodes of the cluster.
pub const DEFAULT_STATE_DIR: &str = "/etc/pve/pve-rebalancer";
/// The file in the state directory.
pub const STATE_FILE: &str = "maintenance.json";
/// PVE's HA CLI (on the node the service runs on).
pub const DEFAULT_HA_MANAGER: &str = "ha-manager";
/// Why a guest was left on a node entering HA maintenance (shown as the guest's lock).
const HA_LOCK: &str = "ha-maintenance (PVE's CRM moves it)";

#[derive(Debug, thiserror::Error)]
pub enum MaintError {
    #[error("node `{0}` is not in the cluster")]
    UnknownNode(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Pve(#[from] PveError),
    #[error("maintenance state {path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("ha-manager failed: {0}")]
    HaManager(String),
    #[error("execution is not available: this service runs without an execution journal (see its log)")]
    NoExecutor,
    #[error(transparent)]
    Start(#[from] StartError),
    /// The caller may not migrate a guest the plan moves.
    #[error("permission denied: {0:?}")]
    Forbidden(crate::auth::AuthError),
    #[error("`{0}` is not a valid node name (letters, digits and `-`, at most 63)")]
    BadNode(String),
}

/// Checks, before anything changes, that the caller may carry out the plan (the HTTP routes
/// require `VM.Migrate` on every guest it moves; the CLI runs with the service's own rights).
pub type Authorize<'a> = &'a (dyn Fn(&Plan) -> Result<(), crate::auth::AuthError> + Sync);

/// Who asks: the PVE user recorded as `by` and as the job's starter, and their rights check.
pub struct Caller<'a> {
    pub userid: &'a str,
    pub authorize: Authorize<'a>,
}

/// The state file: every node with a mark, by name.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct StateFile {
    version: u32,
    nodes: BTreeMap<String, NodeMaintenance>,
    /// node → (host, job id): journals are per host, so only the service on the host that started
    /// a mark's job may read its end from its own journal.
    #[serde(default)]
    job_hosts: BTreeMap<String, (String, u64)>,
}

pub use crate::this_host;

/// One change of the marks: `f` edits them, then the job hosts follow (a job id this process
/// just wrote is in this host's journal; a cleared mark takes its entry along).
fn change_marks<T>(
    file: &mut StateFile,
    host: &str,
    f: impl FnOnce(&mut BTreeMap<String, NodeMaintenance>) -> Result<T, MaintError>,
) -> Result<T, MaintError> {
    let out = f(&mut file.nodes)?;
    let StateFile { nodes, job_hosts, .. } = file;
    job_hosts.retain(|n, (_, j)| nodes.get(n).is_some_and(|m| m.job_id == Some(*j)));
    for (n, m) in nodes.iter() {
        if let Some(id) = m.job_id {
            job_hosts.entry(n.clone()).or_insert_with(|| (host.to_owned(), id));
        }
    }
    file.version = 1;
    Ok(out)
}

impl From<StoreError> for MaintError {
    fn from(e: StoreError) -> MaintError {
        match e {
            StoreError::Busy { path } => MaintError::Conflict(format!(
                "another node is changing the maintenance state ({}); try again",
                path.display()
            )),
            StoreError::Corrupt { path, detail } => MaintError::State {
                path,
                detail: format!(
                    "not valid maintenance state ({detail}); fix or remove the file (removing it \
                     clears every mark)"
                ),
            },
            StoreError::Io { path, detail } => MaintError::State { path, detail },
        }
    }
}

/// Whether `node`'s job is in this host's journal (marks written before hosts were recorded
/// count as ours).
fn job_is_ours(job_hosts: &BTreeMap<String, (String, u64)>, node: &str, job: u64, host: &str) -> bool {
    job_hosts.get(node).is_none_or(|(h, j)| *j != job || h == host)
}

/// Where the marks are kept and how to reach PVE's HA manager.
pub struct Maintenance {
    dir: PathBuf,
    store: Arc<JsonStore<StateFile>>,
    ha_manager: PathBuf,
    host: String,
    /// The tasks that update a mark when its job ends; a short-lived process (the CLI) awaits
    /// them with `settle` so it never exits in the middle of a state write.
    followers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The policy evacuations are judged with (default: the stored settings beside the marks).
    policy: std::sync::RwLock<Option<Arc<crate::policy::Policy>>>,
}

/// `serve` and CLI options.
#[derive(clap::Args, Clone, Debug)]
pub struct MaintArgs {
    /// Directory of the cluster-wide maintenance state (pmxcfs, so all nodes share it).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The `ha-manager` command used with `ha: true` / `--ha`.
    #[arg(long, default_value = DEFAULT_HA_MANAGER)]
    pub ha_manager: PathBuf,
}

impl MaintArgs {
    pub fn store(&self) -> Arc<Maintenance> {
        Arc::new(Maintenance::new(&self.state_dir, &self.ha_manager))
    }
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance::new(Path::new(DEFAULT_STATE_DIR), Path::new(DEFAULT_HA_MANAGER))
    }
}

impl Maintenance {
    pub fn new(dir: &Path, ha_manager: &Path) -> Maintenance {
        Maintenance {
            dir: dir.to_owned(),
            store: Arc::new(JsonStore::new(dir, STATE_FILE)),
            ha_manager: ha_manager.to_owned(),
            host: this_host(),
            followers: Default::default(),
            policy: Default::default(),
        }
    }

    /// Waits, at most `bound`, for the job followers this store started (each ends soon after
    /// its job does); a follower still waiting on an unfinished job is left to the next reader's
    /// `reconcile`.
    pub async fn settle(&self, bound: Duration) {
        let followers = std::mem::take(&mut *self.followers.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(bound, async {
            for f in followers {
                let _ = f.await;
            }
        })
        .await;
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// For [`Executor::set_closed_targets`]: nodes marked (entering or in maintenance) are
    /// closed to every step, also of a plan made before the mark. An unreadable state file
    /// closes nothing here; the routes report it.
    pub fn closed_targets(self: &Arc<Self>) -> crate::execute::ClosedTargets {
        let store = self.clone();
        Arc::new(move || {
            let marks = store.marks().unwrap_or_default();
            marks.into_values().filter(|m| is_marked(m.state)).map(|m| m.node).collect()
        })
    }

    /// Judges evacuations with `policy` (the service's: its configuration file too).
    pub fn set_policy(&self, policy: Arc<crate::policy::Policy>) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Some(policy);
    }

    fn policy(&self) -> Arc<crate::policy::Policy> {
        let set = self.policy.read().unwrap_or_else(|e| e.into_inner()).clone();
        set.unwrap_or_else(|| Arc::new(crate::policy::Policy::new(&self.dir, None)))
    }

    /// The marks; no file yet means no node is marked. Blocking, one small read: the
    /// executor's closed-targets check and the job notifier; planning goes through
    /// `apply_marks` and `reconcile`, which read on the blocking pool.
    pub fn marks(&self) -> Result<BTreeMap<String, NodeMaintenance>, MaintError> {
        Ok(self.load()?.nodes)
    }

    fn load(&self) -> Result<StateFile, MaintError> {
        Ok(self.store.load()?)
    }

    /// Changes the marks under the store's locks, blocking (tests; the service uses
    /// `update_async`).
    #[cfg(test)]
    fn update<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, NodeMaintenance>) -> Result<T, MaintError>,
    ) -> Result<T, MaintError> {
        let host = self.host.clone();
        self.store.update(|file| change_marks(file, &host, f))
    }

    /// [`Maintenance::update`] on tokio's blocking pool (the lock wait and the pmxcfs write
    /// never hold a worker thread).
    async fn update_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, NodeMaintenance>) -> Result<T, MaintError> + Send + 'static,
    ) -> Result<T, MaintError> {
        let host = self.host.clone();
        self.store.update_async(move |file| change_marks(file, &host, f)).await
    }

    /// Sets `node`'s mark to `record`, or removes it (`None`).
    async fn set_mark(&self, node: &str, record: Option<NodeMaintenance>) -> Result<(), MaintError> {
        let node = node.to_owned();
        self.update_async(move |n| {
            match record {
                Some(r) => n.insert(node, r),
                None => n.remove(&node),
            };
            Ok(())
        })
        .await
    }

    /// How the job of `m` stands, as far as this host can tell.
    fn job_stand(&self, file: &StateFile, m: &NodeMaintenance, executor: Option<&Executor>) -> JobStand {
        let Some(id) = m.job_id else { return JobStand::Unknown };
        if !job_is_ours(&file.job_hosts, &m.node, id, &self.host) {
            return JobStand::Elsewhere;
        }
        let Some(ex) = executor else { return JobStand::Unknown };
        match ex.job(id) {
            Ok(Some(v)) if v.job.state == JobState::Running => JobStand::Running,
            Ok(Some(v)) => JobStand::Ended(v.job.state),
            // Not in the journal (removed) or unreadable: nothing runs it here.
            Ok(None) => JobStand::Ended(JobState::Interrupted),
            Err(_) => JobStand::Unknown,
        }
    }

    /// Makes every mark follow what is on its node: exiting marks whose job ended are cleared;
    /// a marked node whose job is not running is `in_maintenance` only when no running guest
    /// that could move is left on it (judged on `snapshot`, or a fresh one, with PVE's migrate
    /// precondition for local devices), else `entering` or `failed` with the reason. Returns the
    /// marks as they are afterwards (no second read of the file).
    pub async fn reconcile(
        &self,
        pve: &PveClient,
        executor: Option<&Executor>,
        snapshot: Option<&ClusterSnapshot>,
    ) -> Result<BTreeMap<String, NodeMaintenance>, MaintError> {
        let file = self.store.load_async().await?;
        let stands: BTreeMap<String, JobStand> =
            file.nodes.iter().map(|(n, m)| (n.clone(), self.job_stand(&file, m, executor))).collect();
        // (node, job) of exiting marks whose return-home job has ended: cleared.
        let exits_ended: Vec<(String, Option<u64>)> = file
            .nodes
            .values()
            .filter(|m| m.state == MaintenanceState::Exiting && matches!(stands[&m.node], JobStand::Ended(_)))
            .map(|m| (m.node.clone(), m.job_id))
            .collect();
        let to_judge: Vec<&NodeMaintenance> = file
            .nodes
            .values()
            // An evacuation started from another node is judged there, where its end is known.
            .filter(|m| match stands[&m.node] {
                JobStand::Running => false,
                JobStand::Elsewhere => is_marked(m.state) && m.state != MaintenanceState::Entering,
                _ => is_marked(m.state),
            })
            .collect();
        if to_judge.is_empty() && exits_ended.is_empty() {
            return Ok(file.nodes.clone());
        }
        let fresh;
        let snapshot = match snapshot {
            Some(s) => s,
            None => {
                fresh = crate::collect::snapshot(pve, unix_now()).await?;
                &fresh
            }
        };
        let request = self
            .policy()
            .resolve_async(Default::default())
            .await
            .map_err(|e| MaintError::State { path: self.path(), detail: e.to_string() })?
            .request;
        let mut judged = BTreeMap::new();
        for m in to_judge {
            let mut snap = snapshot.clone();
            apply_marks(&mut snap, &file.nodes);
            let req = MaintenanceRequest { preview: false, ha: m.ha_requested, include_stopped: false };
            let plan =
                crate::preflight::plan(pve, &mut snap, |s| evacuation_plan(s, &m.node, &req, &request)).await;
            let verdict = judge(m, stands[&m.node], &plan, unix_now());
            // Unchanged marks are not written again (every node's service reads the file).
            if verdict.mark != *m {
                judged.insert(m.node.clone(), verdict);
            }
        }
        if judged.is_empty() && exits_ended.is_empty() {
            return Ok(file.nodes);
        }
        self.update_async(move |nodes| {
            nodes.retain(|n, m| {
                !(m.state == MaintenanceState::Exiting && exits_ended.contains(&(n.clone(), m.job_id)))
            });
            for (node, verdict) in judged {
                // Only a mark nobody changed meanwhile (same state and job) takes the verdict.
                if let Some(m) = nodes.get_mut(&node) {
                    if (m.state, m.job_id) == (verdict.before, verdict.mark.job_id) {
                        *m = verdict.mark;
                    }
                }
            }
            Ok(nodes.clone())
        })
        .await
    }

    /// Every node of the snapshot with its record (nodes without a mark are `none`), plus marks
    /// of nodes the snapshot no longer has.
    pub async fn status(
        &self,
        pve: &PveClient,
        snapshot: &ClusterSnapshot,
        executor: Option<&Executor>,
    ) -> Result<Vec<NodeMaintenance>, MaintError> {
        let marks = self.reconcile(pve, executor, Some(snapshot)).await?;
        Ok(status_of(snapshot, &marks))
    }

    /// Marks the snapshot's nodes that are in our maintenance (entering or in it), so no plan
    /// places a guest there. Nodes in PVE HA maintenance are marked by `collect` already.
    pub async fn apply_marks(&self, snapshot: &mut ClusterSnapshot) -> Result<(), MaintError> {
        apply_marks(snapshot, &self.store.load_async().await?.nodes);
        Ok(())
    }

    /// Runs `ha-manager crm-command node-maintenance enable|disable NODE` (bounded).
    async fn ha(&self, node: &str, enable: bool) -> Result<(), MaintError> {
        let verb = if enable { "enable" } else { "disable" };
        let run = tokio::process::Command::new(&self.ha_manager)
            .args(["crm-command", "node-maintenance", verb, node])
            .kill_on_drop(true)
            .output();
        let cmd = format!("{} crm-command node-maintenance {verb} {node}", self.ha_manager.display());
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .map_err(|_| MaintError::HaManager(format!("`{cmd}` did not finish within 60 s")))?
            .map_err(|e| MaintError::HaManager(format!("cannot run `{cmd}`: {e}")))?;
        if !out.status.success() {
            return Err(MaintError::HaManager(format!(
                "`{cmd}` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Checks `node`'s name, moves ended jobs' marks on, and reads a fresh snapshot, the marks
    /// and `node`'s record (enter and exit both start here).
    async fn locate(
        &self,
        pve: &PveClient,
        executor: Option<&Arc<Executor>>,
        node: &str,
    ) -> Result<(ClusterSnapshot, BTreeMap<String, NodeMaintenance>, NodeMaintenance), MaintError> {
        if !crate::execute::decide::valid_node_name(node) {
            return Err(MaintError::BadNode(node.to_owned()));
        }
        let snapshot = crate::collect::snapshot(pve, unix_now()).await?;
        let marks = self.reconcile(pve, executor.map(|e| &**e), Some(&snapshot)).await?;
        let current = status_of(&snapshot, &marks).into_iter().find(|m| m.node == node);
        let current = current.ok_or_else(|| MaintError::UnknownNode(node.to_owned()))?;
        Ok((snapshot, marks, current))
    }

    /// Enter maintenance: plan the evacuation on a fresh snapshot; unless `preview`, mark the
    /// node, start the plan as a job and (with `ha`) put the node in PVE HA maintenance.
    pub async fn enter(
        self: &Arc<Self>,
        pve: &PveClient,
        executor: Option<&Arc<Executor>>,
        node: &str,
        req: &MaintenanceRequest,
        request: &PlanRequest,
        caller: Caller<'_>,
    ) -> Result<MaintenanceAnswer, MaintError> {
        let (user, authorize) = (caller.userid, caller.authorize);
        let (mut snapshot, marks, current) = self.locate(pve, executor, node).await?;
        // A mark left `entering` or `failed` (guests still there, its job over) may be entered
        // again: the new evacuation resumes it.
        let resumable = matches!(current.state, MaintenanceState::Entering | MaintenanceState::Failed)
            && !job_running(executor.map(|e| &**e), current.job_id);
        if current.state != MaintenanceState::None && !resumable {
            return Err(MaintError::Conflict(format!(
                "node `{node}` is already {} (since {}, by {}); exit maintenance first",
                current.state.as_str(),
                current.since.unwrap_or(0),
                current.by.as_deref().unwrap_or("?")
            )));
        }
        apply_marks(&mut snapshot, &marks);
        let plan =
            crate::preflight::plan(pve, &mut snapshot, |s| evacuation_plan(s, node, req, request)).await;
        if req.preview {
            return Ok(MaintenanceAnswer { plan, job_id: None, preview: true, state: current });
        }
        authorize(&plan).map_err(MaintError::Forbidden)?;
        let ex = executor.ok_or(MaintError::NoExecutor)?;
        if let Some(id) = ex.active_job() {
            return Err(StartError::Busy(id).into());
        }
        // The engine may also repair a hard rule broken elsewhere; only guests leaving this node
        // have it as their home.
        let mut homes: Vec<GuestHome> = current.homes.clone();
        for s in plan.steps.iter().filter(|s| s.from == node) {
            if !homes.iter().any(|h| h.vmid == s.vmid) {
                homes.push(GuestHome { vmid: s.vmid, node: s.from.clone() });
            }
        }
        let mut record = NodeMaintenance {
            node: node.to_owned(),
            state: MaintenanceState::Entering,
            since: Some(unix_now()),
            by: Some(user.to_owned()),
            job_id: None,
            ha_maintenance: current.ha_maintenance,
            ha_requested: req.ha || (resumable && current.ha_requested),
            homes,
            ..Default::default()
        };
        // Marked before the job starts, so no plan made meanwhile targets the node.
        self.set_mark(node, Some(record.clone())).await?;
        // On failure the node goes back to what it was (unmarked, or the mark being resumed).
        let before = resumable.then(|| current.clone());
        if req.ha {
            if let Err(e) = self.ha(node, true).await {
                let _ = self.set_mark(node, before).await;
                return Err(e);
            }
        }
        if plan.steps.is_empty() {
            // Nothing can move: whatever is left stays for the reasons the plan gives.
            let verdict = judge(&record, JobStand::Unknown, &plan, unix_now());
            record = NodeMaintenance { since: record.since, ..verdict.mark };
        } else {
            match ex.start(&plan, None, user) {
                Ok(id) => record.job_id = Some(id),
                Err(e) => {
                    if req.ha {
                        let _ = self.ha(node, false).await;
                    }
                    let _ = self.set_mark(node, before).await;
                    return Err(e.into());
                }
            }
        }
        self.set_mark(node, Some(record.clone())).await?;
        self.follow(ex, record.job_id);
        Ok(MaintenanceAnswer { plan, job_id: record.job_id, preview: false, state: record })
    }

    /// Exit maintenance: unless `preview`, clear the mark (with `return_home`, after the job that
    /// brings the recorded guests back) and leave PVE HA maintenance if enter set it or `ha`.
    pub async fn exit(
        self: &Arc<Self>,
        pve: &PveClient,
        executor: Option<&Arc<Executor>>,
        node: &str,
        req: &ExitRequest,
        request: &PlanRequest,
        caller: Caller<'_>,
    ) -> Result<MaintenanceAnswer, MaintError> {
        let (user, authorize) = (caller.userid, caller.authorize);
        let (mut snapshot, marks, current) = self.locate(pve, executor, node).await?;
        let leave_ha = req.ha || current.ha_requested;
        match current.state {
            MaintenanceState::None if !(req.ha && current.ha_maintenance) => {
                return Err(MaintError::Conflict(format!("node `{node}` is not in maintenance")))
            }
            MaintenanceState::Exiting | MaintenanceState::Entering | MaintenanceState::Failed
                if current.state == MaintenanceState::Exiting
                    || job_running(executor.map(|e| &**e), current.job_id) =>
            {
                return Err(MaintError::Conflict(format!(
                    "node `{node}` is {} (job {}); wait for the job to end or cancel it first",
                    current.state.as_str(),
                    current.job_id.map_or("?".into(), |j| j.to_string())
                )))
            }
            _ => {}
        }
        // Plan as the cluster will be: this node open again (unless HA maintenance stays on).
        let others: BTreeMap<String, NodeMaintenance> =
            marks.iter().filter(|(n, _)| *n != node).map(|(n, m)| (n.clone(), m.clone())).collect();
        apply_marks(&mut snapshot, &others);
        if let Some(n) = snapshot.nodes.iter_mut().find(|n| n.name == node) {
            n.maintenance = current.ha_maintenance && !leave_ha;
        }
        let homes: Vec<GuestHome> = if req.return_home { current.homes.clone() } else { vec![] };
        let plan = shared::evacuate::return_home(&snapshot, &homes, request);
        if req.preview {
            return Ok(MaintenanceAnswer { plan, job_id: None, preview: true, state: current });
        }
        authorize(&plan).map_err(MaintError::Forbidden)?;
        let ex = executor.ok_or(MaintError::NoExecutor)?;
        if !plan.steps.is_empty() {
            if let Some(id) = ex.active_job() {
                return Err(StartError::Busy(id).into());
            }
        }
        if leave_ha && current.ha_maintenance {
            self.ha(node, false).await?;
        }
        let ha_maintenance = current.ha_maintenance && !leave_ha;
        let mut record = NodeMaintenance { ha_maintenance, ha_requested: false, ..current };
        if plan.steps.is_empty() {
            record = NodeMaintenance { node: node.to_owned(), ha_maintenance, ..Default::default() };
            self.set_mark(node, None).await?;
        } else {
            let id = ex.start(&plan, None, user)?;
            record.by = Some(user.to_owned());
            record.state = MaintenanceState::Exiting;
            record.job_id = Some(id);
            record.since = Some(unix_now());
            self.set_mark(node, Some(record.clone())).await?;
            self.follow(ex, Some(id));
        }
        Ok(MaintenanceAnswer { plan, job_id: record.job_id, preview: false, state: record })
    }

    /// Updates the mark when the job ends (reads reconcile too, e.g. after a restart).
    fn follow(self: &Arc<Self>, ex: &Arc<Executor>, job: Option<u64>) {
        let Some(id) = job else { return };
        let (me, ex) = (self.clone(), ex.clone());
        let follower = tokio::spawn(async move {
            // Bounded per round; a maintenance evacuation may take hours.
            while ex.wait_finished(id, Duration::from_secs(600)).await.is_none() {
                if ex.job(id).ok().flatten().is_none() {
                    return;
                }
            }
            if let Err(e) = me.reconcile(ex.pve(), Some(&ex), None).await {
                tracing::error!(error = %e, job = id, "updating the maintenance state failed");
            }
        });
        let mut followers = self.followers.lock().unwrap_or_else(|e| e.into_inner());
        followers.retain(|f| !f.is_finished());
        followers.push(follower);
    }
}

/// The evacuation of `node`. With `ha`, the HA-managed guests stay in the plan's snapshot (PVE's
/// CRM moves them when HA maintenance is enabled), held by a lock so the engine reports them.
pub fn evacuation_plan(
    snapshot: &ClusterSnapshot,
    node: &str,
    req: &MaintenanceRequest,
    request: &PlanRequest,
) -> Plan {
    let mut snapshot = snapshot.clone();
    if req.ha {
        for g in snapshot.guests.iter_mut().filter(|g| g.node == node && g.ha_managed) {
            g.lock.get_or_insert_with(|| HA_LOCK.to_owned());
        }
    }
    let evacuation = EvacuationRequest {
        nodes: vec![node.to_owned()],
        include_stopped: req.include_stopped,
        move_ignored: true,
        request: request.clone(),
    };
    shared::evacuate::evacuate(&snapshot, &evacuation)
}

/// Ranks the nodes for a new guest, or for an existing one (`vmid`), which is taken out of the
/// snapshot first so its own node is judged as if it were empty of it. `Err(vmid)`: no such guest.
pub fn best_node(
    snapshot: &mut ClusterSnapshot,
    req: &shared::api::BestNodeRequest,
    request: &PlanRequest,
) -> Result<Vec<shared::best_node::NodeRank>, u32> {
    let guest = match (req.vmid, &req.guest) {
        (Some(vmid), _) => {
            let pos = snapshot.guests.iter().position(|g| g.vmid == vmid).ok_or(vmid)?;
            let g = snapshot.guests.remove(pos);
            shared::best_node::NewGuest {
                name: g.name,
                kind: g.kind,
                cpus: g.cpus,
                mem_bytes: g.mem_max,
                disk_bytes: g.disk_max,
                tags: g.tags,
                pool: g.pool,
            }
        }
        (None, Some(g)) => g.clone(),
        (None, None) => shared::best_node::NewGuest::default(),
    };
    Ok(shared::best_node::best_node(snapshot, &guest, request))
}

/// Our marks (entering, in maintenance) on the snapshot's nodes; exiting nodes take guests again.
pub fn apply_marks(snapshot: &mut ClusterSnapshot, marks: &BTreeMap<String, NodeMaintenance>) {
    for n in snapshot.nodes.iter_mut() {
        if marks.get(&n.name).is_some_and(|m| is_marked(m.state)) {
            n.maintenance = true;
        }
    }
}

/// Whether `job` runs on this host's executor now.
fn job_running(executor: Option<&Executor>, job: Option<u64>) -> bool {
    let (Some(ex), Some(id)) = (executor, job) else { return false };
    ex.active_job() == Some(id)
}

/// Marked by us and closed to every plan: entering, in maintenance, or failed.
fn is_marked(state: MaintenanceState) -> bool {
    matches!(state, MaintenanceState::Entering | MaintenanceState::InMaintenance | MaintenanceState::Failed)
}

/// How a mark's job stands, as far as this host can tell (a job started on another host, or
/// no executor here: unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStand {
    Running,
    Ended(JobState),
    /// Started from another node: its journal (and so its end) is there.
    Elsewhere,
    Unknown,
}

/// A mark as what is on its node says, and the state it had before.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub before: MaintenanceState,
    pub mark: NodeMaintenance,
}

/// At most this many vmids are listed in a reason (all are in `remaining`).
const LISTED: usize = 10;

fn vmid_list(vmids: &[u32]) -> String {
    let mut out: Vec<String> = vmids.iter().take(LISTED).map(u32::to_string).collect();
    if vmids.len() > LISTED {
        out.push(format!("and {} more", vmids.len() - LISTED));
    }
    out.join(", ")
}

/// The mark of a node whose job is not running, judged on `plan`, the node's evacuation made
/// on a fresh snapshot (running guests only: a stopped guest does not mind a reboot). Pure.
///
/// In maintenance only when the plan moves nothing off the node: every guest left there stays
/// for a reason the engine or PVE gave (pinned, local devices, no node may take it), listed in
/// `staying`. Otherwise the guests that could move are `remaining`, and the state is `failed`
/// when the job failed or was interrupted, else `entering`, with the reason either way.
pub fn judge(mark: &NodeMaintenance, job: JobStand, plan: &Plan, now: u64) -> Verdict {
    let before = mark.state;
    let node = mark.node.as_str();
    let mut remaining: Vec<u32> = plan.steps.iter().filter(|s| s.from == node).map(|s| s.vmid).collect();
    remaining.sort_unstable();
    remaining.dedup();
    let staying: Vec<shared::plan::WhyNot> =
        plan.why_not.iter().filter(|w| w.node == node).cloned().collect();
    let job_words = |state: JobState| match mark.job_id {
        Some(id) => format!("job {id} {}", ended_words(state)),
        None => format!("the evacuation {}", ended_words(state)),
    };
    let (state, reason) = if remaining.is_empty() {
        let reason = (!staying.is_empty()).then(|| {
            let each: Vec<String> = staying.iter().map(|w| format!("{} ({})", w.vmid, w.reason)).collect();
            format!("{} guest(s) stay on the node: {}", staying.len(), each.join("; "))
        });
        (MaintenanceState::InMaintenance, reason)
    } else {
        let left = format!(
            "{} running guest(s) that can move are still on the node: {}",
            remaining.len(),
            vmid_list(&remaining)
        );
        let hint = "enter maintenance again to move them, or exit";
        match job {
            JobStand::Ended(s @ (JobState::Failed | JobState::Interrupted)) => {
                (MaintenanceState::Failed, Some(format!("{}; {left}; {hint}", job_words(s))))
            }
            JobStand::Ended(s) => {
                (MaintenanceState::Entering, Some(format!("{}; {left}; {hint}", job_words(s))))
            }
            // Nothing new here (a reader without the job's journal): the reason given by the
            // service that saw the job end stands, and a failed mark stays failed until someone acts.
            JobStand::Unknown
                if before != MaintenanceState::InMaintenance
                    && mark.remaining == remaining
                    && mark.reason.is_some() =>
            {
                (before, mark.reason.clone())
            }
            JobStand::Unknown | JobStand::Elsewhere if before == MaintenanceState::Failed => {
                (MaintenanceState::Failed, Some(format!("{left}; {hint}")))
            }
            JobStand::Unknown | JobStand::Elsewhere | JobStand::Running => {
                (MaintenanceState::Entering, Some(format!("{left}; {hint}")))
            }
        }
    };
    let since = if state == before { mark.since } else { Some(now) };
    Verdict { before, mark: NodeMaintenance { state, since, reason, remaining, staying, ..mark.clone() } }
}

fn ended_words(state: JobState) -> &'static str {
    match state {
        JobState::Cancelled => "was cancelled",
        JobState::Interrupted => "was interrupted (the service stopped while it ran)",
        JobState::Failed => "failed",
        JobState::Partial => "ended with skipped steps",
        JobState::Done => "ended",
        JobState::Running => "is running",
    }
}

/// Records for every node (snapshot order), `ha_maintenance` from PVE's `hastate` as collected.
pub fn status_of(
    snapshot: &ClusterSnapshot,
    marks: &BTreeMap<String, NodeMaintenance>,
) -> Vec<NodeMaintenance> {
    let mut out: Vec<NodeMaintenance> = snapshot
        .nodes
        .iter()
        .map(|n| {
            let mut m = marks
                .get(&n.name)
                .cloned()
                .unwrap_or_else(|| NodeMaintenance { node: n.name.clone(), ..Default::default() });
            m.ha_maintenance = n.maintenance;
            m
        })
        .collect();
    out.extend(marks.values().filter(|m| snapshot.node(&m.node).is_none()).cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::Node;

    fn snap() -> ClusterSnapshot {
        ClusterSnapshot {
            nodes: ["a", "b"].map(|n| Node { name: n.into(), ..Default::default() }).to_vec(),
            ..Default::default()
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pvrb-maint-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn marks_round_trip_through_an_atomic_0640_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("rt");
        let m = Maintenance::new(&dir, Path::new("ha-manager"));
        assert!(m.marks().unwrap().is_empty(), "no file yet: no marks");
        let rec = NodeMaintenance {
            node: "a".into(),
            state: MaintenanceState::InMaintenance,
            since: Some(5),
            by: Some("root@pam".into()),
            homes: vec![GuestHome { vmid: 100, node: "a".into() }],
            ..Default::default()
        };
        m.update(|n| {
            n.insert("a".into(), rec.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(m.marks().unwrap().get("a"), Some(&rec));
        let mode = std::fs::metadata(m.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o137, 0, "mode {mode:o} must be 0640 or stricter");
        let mut leftovers: Vec<_> =
            std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        leftovers.sort();
        assert_eq!(leftovers, ["lock", STATE_FILE].map(std::ffi::OsString::from), "no temporary file");
        let held: Vec<_> = std::fs::read_dir(dir.join("lock")).unwrap().flatten().collect();
        assert!(held.is_empty(), "the write lock is released: {held:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_nodes_writing_at_once_lose_no_update() {
        // Two services (two stores, as on two nodes) share the directory, as they share pmxcfs;
        // each update is a read-modify-write of one counter.
        let dir = temp_dir("race");
        let bump = |m: &Maintenance| {
            m.update(|n| {
                let rec = n
                    .entry("a".into())
                    .or_insert_with(|| NodeMaintenance { node: "a".into(), ..Default::default() });
                let seen = rec.since.unwrap_or(0);
                std::thread::yield_now();
                rec.since = Some(seen + 1);
                Ok(())
            })
            .unwrap()
        };
        std::thread::scope(|s| {
            for _ in 0..2 {
                let m = Maintenance::new(&dir, Path::new("ha-manager"));
                s.spawn(move || (0..40).for_each(|_| bump(&m)));
            }
        });
        let m = Maintenance::new(&dir, Path::new("ha-manager"));
        assert_eq!(m.marks().unwrap()["a"].since, Some(80));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_that_names_it_and_says_how_to_fix() {
        let dir = temp_dir("bad");
        std::fs::create_dir_all(&dir).unwrap();
        let m = Maintenance::new(&dir, Path::new("ha-manager"));
        std::fs::write(m.path(), "{not json").unwrap();
        let e = m.marks().unwrap_err().to_string();
        assert!(e.contains(STATE_FILE) && e.contains("remove the file"), "{e}");
        // A failed read must not be "fixed" by overwriting the file.
        assert!(m.update(|_| Ok(())).is_err());
        assert_eq!(std::fs::read_to_string(m.path()).unwrap(), "{not json");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_host_that_started_a_job_reads_its_end_from_its_journal() {
        let dir = temp_dir("hosts");
        let m = Maintenance::new(&dir, Path::new("ha-manager"));
        let rec = NodeMaintenance {
            node: "a".into(),
            state: MaintenanceState::Entering,
            job_id: Some(3),
            ..Default::default()
        };
        m.update(|n| {
            n.insert("a".into(), rec.clone());
            Ok(())
        })
        .unwrap();
        let file = m.load().unwrap();
        assert_eq!(file.job_hosts.get("a"), Some(&(m.host.clone(), 3)));
        assert!(job_is_ours(&file.job_hosts, "a", 3, &m.host));
        assert!(!job_is_ours(&file.job_hosts, "a", 3, "other-node"));
        // Cleared with the mark.
        m.update(|n| {
            n.remove("a");
            Ok(())
        })
        .unwrap();
        assert!(m.load().unwrap().job_hosts.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn marks_close_nodes_for_planning_but_exiting_nodes_are_open() {
        let mut marks = BTreeMap::new();
        for (node, state) in [("a", MaintenanceState::InMaintenance), ("b", MaintenanceState::Exiting)] {
            marks.insert(node.to_owned(), NodeMaintenance { node: node.into(), state, ..Default::default() });
        }
        let mut s = snap();
        apply_marks(&mut s, &marks);
        assert!(s.node("a").unwrap().maintenance);
        assert!(!s.node("b").unwrap().maintenance);
    }

    #[test]
    fn status_lists_every_node_and_reads_ha_maintenance_from_the_snapshot() {
        let mut s = snap();
        s.nodes[1].maintenance = true;
        let st = status_of(&s, &BTreeMap::new());
        assert_eq!(st.len(), 2);
        assert_eq!((st[0].state, st[0].ha_maintenance), (MaintenanceState::None, false));
        assert!(st[1].ha_maintenance && st[1].in_maintenance());
    }

    fn plan_moving(vmids: &[u32], staying: &[u32]) -> Plan {
        let mut plan = shared::planner::plan(&ClusterSnapshot::default(), &PlanRequest::default());
        for &v in vmids {
            plan.steps.push(shared::plan::PlanStep {
                vmid: v,
                name: "g".into(),
                kind: shared::GuestKind::Qemu,
                from: "a".into(),
                to: "b".into(),
                migration: shared::plan::MigrationKind::Live,
                mem_bytes: 0,
                reason: "drain".into(),
                purpose: Default::default(),
                depends_on: vec![],
                disk_bytes: 0,
            });
        }
        for &v in staying {
            plan.why_not.push(shared::plan::WhyNot {
                vmid: v,
                name: "p".into(),
                node: "a".into(),
                reason: "pinned by tag".into(),
            });
        }
        plan
    }

    #[test]
    fn a_node_is_in_maintenance_only_when_nothing_that_can_move_is_left() {
        let mark = NodeMaintenance {
            node: "a".into(),
            state: MaintenanceState::Entering,
            job_id: Some(4),
            since: Some(1),
            ..Default::default()
        };
        // Empty but for a pinned guest: in maintenance, and it says which stays and why.
        let v = judge(&mark, JobStand::Ended(JobState::Done), &plan_moving(&[], &[7]), 9);
        assert_eq!((v.mark.state, v.mark.since), (MaintenanceState::InMaintenance, Some(9)));
        assert!(v.mark.reason.as_deref().unwrap().contains("7 (pinned by tag)"), "{v:?}");
        // Cancelled, done-but-not-empty: entering with the guests; failed or interrupted: failed.
        for (job, state, words) in [
            (JobState::Cancelled, MaintenanceState::Entering, "job 4 was cancelled"),
            (JobState::Done, MaintenanceState::Entering, "job 4 ended"),
            (JobState::Failed, MaintenanceState::Failed, "job 4 failed"),
            (JobState::Interrupted, MaintenanceState::Failed, "job 4 was interrupted"),
        ] {
            let v = judge(&mark, JobStand::Ended(job), &plan_moving(&[101, 100, 101], &[]), 9);
            assert_eq!(v.mark.state, state, "{job:?}");
            assert_eq!(v.mark.remaining, [100, 101]);
            assert!(v.mark.reason.as_deref().unwrap().starts_with(words), "{v:?}");
        }
        // A guest placed on a node in maintenance takes it back to entering.
        let done = NodeMaintenance { state: MaintenanceState::InMaintenance, ..mark.clone() };
        let v = judge(&done, JobStand::Unknown, &plan_moving(&[300], &[]), 9);
        assert_eq!(v.mark.state, MaintenanceState::Entering);
        assert!(v.mark.reason.as_deref().unwrap().contains("300"), "{v:?}");
    }
}
