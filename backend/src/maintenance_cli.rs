//! The command line of maintenance (`pve-rebalancer maintenance enter|exit|status NODE`) and
//! `apply` (collect, plan, execute and wait, as ProxLB without `-d`). Human tables by default,
//! `--json` for scripts; exit status 0 when everything asked for was done, 1 otherwise.

use crate::app::Policy;
use crate::cli_proxlb::output::{job_table, kind, table};
use crate::execute::{ExecArgs, Executor};
use crate::maintenance::{Caller, MaintArgs, MaintError, Maintenance};
use crate::pve::PveClient;
use shared::api::{ExitRequest, JobState, MaintenanceAnswer, MaintenanceRequest, NodeMaintenance};
use shared::{Plan, PlanRequest};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct EnterArgs {
    /// The node to evacuate.
    pub node: String,
    /// Plan only: mark nothing, move nothing.
    #[arg(long, visible_alias = "dry-run")]
    pub preview: bool,
    /// Also put the node in PVE HA maintenance (`ha-manager crm-command node-maintenance enable`).
    #[arg(long)]
    pub ha: bool,
    /// Leave stopped guests on the node (by default they move too).
    #[arg(long)]
    pub running_only: bool,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// proxlb.yaml to plan with [default: the service's, /etc/pve-rebalancer/proxlb.yaml, if any].
    #[arg(short = 'c', long)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub maint: MaintArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(clap::Args, Debug)]
pub struct ExitArgs {
    /// The node to bring back.
    pub node: String,
    /// Plan only: the mark stays, nothing moves.
    #[arg(long, visible_alias = "dry-run")]
    pub preview: bool,
    /// Move the guests evacuated at enter back to the node.
    #[arg(long)]
    pub return_home: bool,
    /// Also leave PVE HA maintenance (done anyway when enter set it).
    #[arg(long)]
    pub ha: bool,
    #[arg(long)]
    pub json: bool,
    /// proxlb.yaml to plan with [default: the service's, /etc/pve-rebalancer/proxlb.yaml, if any].
    #[arg(short = 'c', long)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub maint: MaintArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// One node (all nodes when absent).
    pub node: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// proxlb.yaml to plan with [default: the service's, /etc/pve-rebalancer/proxlb.yaml, if any].
    #[arg(short = 'c', long)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub maint: MaintArgs,
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Balanciness in percentage points, for this run (over the configured and stored ones).
    #[arg(long)]
    pub balanciness: Option<f64>,
    #[arg(long)]
    pub json: bool,
    /// proxlb.yaml to plan with [default: the service's, /etc/pve-rebalancer/proxlb.yaml, if any].
    #[arg(short = 'c', long)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub maint: MaintArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// Everything the CLI may do (it acts with the service's own PVE rights).
fn anything(_: &Plan) -> Result<(), crate::auth::AuthError> {
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    1
}

/// The policy the service plans with: this node's configuration file (if any), the settings
/// stored beside the marks (the panel's), and this command's overrides; an unreadable or invalid
/// file is an error, not silently the defaults.
pub fn policy_request(
    maint: &MaintArgs,
    config: Option<&std::path::Path>,
    overrides: &shared::policy::PolicyLayer,
) -> Result<PlanRequest, i32> {
    cli_policy(maint, config)?.resolve(overrides).map(|v| v.request).map_err(fail)
}

/// The policy of [`policy_request`] itself: `config` (else the service's file, if there is
/// one) below the settings stored in `--state-dir`.
pub fn cli_policy(maint: &MaintArgs, config: Option<&std::path::Path>) -> Result<Arc<Policy>, i32> {
    let path = crate::cli_proxlb::config_path(config);
    let file = match (config.is_some() || path.exists()).then(|| crate::cli_proxlb::load(&path)) {
        Some(Ok(loaded)) => Some(loaded.file_layer()),
        Some(Err(f)) => return Err(f.report()),
        None => None,
    };
    Ok(Arc::new(Policy::new(&maint.state_dir, file)))
}

/// The marks store judging with the CLI's policy, and the plan request of that policy.
fn store_and_request(
    maint: &MaintArgs,
    config: Option<&std::path::Path>,
) -> Result<(Arc<Maintenance>, PlanRequest), i32> {
    let policy = cli_policy(maint, config)?;
    let request = policy.resolve(&Default::default()).map_err(fail)?.request;
    let store = maint.store();
    store.set_policy(policy);
    Ok((store, request))
}

pub async fn enter(pve: PveClient, a: EnterArgs) -> i32 {
    let pve = Arc::new(pve);
    let req = MaintenanceRequest { preview: a.preview, ha: a.ha, include_stopped: !a.running_only };
    let (store, request) = match store_and_request(&a.maint, a.config.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ex = match executor(&pve, &a.exec, a.preview).await {
        Ok(ex) => ex,
        Err(code) => return code,
    };
    let answer = store
        .enter(&pve, ex.as_ref(), &a.node, &req, &request, Caller { userid: "cli", authorize: &anything })
        .await;
    finish(answer, ex, &store, a.json, &a.exec).await
}

pub async fn exit(pve: PveClient, a: ExitArgs) -> i32 {
    let pve = Arc::new(pve);
    let req = ExitRequest { preview: a.preview, return_home: a.return_home, ha: a.ha };
    let (store, request) = match store_and_request(&a.maint, a.config.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let ex = match executor(&pve, &a.exec, a.preview).await {
        Ok(ex) => ex,
        Err(code) => return code,
    };
    let answer = store
        .exit(&pve, ex.as_ref(), &a.node, &req, &request, Caller { userid: "cli", authorize: &anything })
        .await;
    finish(answer, ex, &store, a.json, &a.exec).await
}

pub async fn status(pve: PveClient, a: StatusArgs) -> i32 {
    let (store, _) = match store_and_request(&a.maint, a.config.as_deref()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let now = crate::unix_now();
    let snapshot = match crate::collect::snapshot(&pve, now).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // No executor here: the marks are judged on what is on the nodes (a node with a running
    // guest that can move is not `in_maintenance`); a job's end is read by the service.
    let mut all = match store.status(&pve, &snapshot, None).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(node) = &a.node {
        all.retain(|m| &m.node == node);
        if all.is_empty() {
            return fail(MaintError::UnknownNode(node.clone()));
        }
    }
    if a.json {
        let out = match &a.node {
            Some(_) => serde_json::to_string_pretty(&all[0]),
            None => serde_json::to_string_pretty(&all),
        };
        println!("{}", out.unwrap_or_default());
    } else {
        print!("{}", status_table(&all));
    }
    0
}

pub async fn apply(pve: PveClient, a: ApplyArgs) -> i32 {
    let pve = Arc::new(pve);
    let now = crate::unix_now();
    let mut snapshot = match crate::collect::snapshot(&pve, now).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = a.maint.store().apply_marks(&mut snapshot).await {
        return fail(e);
    }
    let overrides = shared::policy::PolicyLayer { balanciness: a.balanciness, ..Default::default() };
    let request = match policy_request(&a.maint, a.config.as_deref(), &overrides) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let plan = crate::preflight::plan(&pve, &mut snapshot, |s| shared::planner::plan(s, &request)).await;
    if !a.json {
        print!("{}", plan_table(&plan));
    }
    if plan.steps.is_empty() {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
        }
        return 0;
    }
    let ex = match executor(&pve, &a.exec, false).await {
        Ok(Some(ex)) => ex,
        Ok(None) => return 1,
        Err(code) => return code,
    };
    let id = match ex.start(&plan, None, "cli") {
        Ok(id) => id,
        Err(e) => return fail(format!("cannot start execution: {e}")),
    };
    report_job(&ex, id, plan.steps.len(), &a.exec, a.json).await
}

/// The executor, unless only previewing. Steps an earlier run left in flight are followed to
/// their end first (as the service does at start).
async fn executor(
    pve: &Arc<PveClient>,
    exec: &ExecArgs,
    preview: bool,
) -> Result<Option<Arc<Executor>>, i32> {
    if preview {
        return Ok(None);
    }
    let ex = exec.executor(pve.clone()).map_err(|e| fail(format!("execution is not available: {e:#}")))?;
    ex.recover().await.map_err(|e| fail(format!("reconciling the journal: {e}")))?;
    Ok(Some(ex))
}

async fn finish(
    answer: Result<MaintenanceAnswer, MaintError>,
    ex: Option<Arc<Executor>>,
    store: &Arc<Maintenance>,
    json: bool,
    exec: &ExecArgs,
) -> i32 {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if json && answer.job_id.is_none() {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return 0;
    }
    if !json {
        print!("{}", plan_table(&answer.plan));
        println!("{}", if answer.preview { "preview: nothing was changed" } else { "" }.trim_end());
    }
    let (Some(id), Some(ex)) = (answer.job_id, ex) else {
        if !json {
            print!("{}", status_table(std::slice::from_ref(&answer.state)));
        }
        return 0;
    };
    let code = report_job(&ex, id, answer.plan.steps.len(), exec, json).await;
    // The follower ends with the job; waiting for it means no state write is cut off at exit.
    store.settle(Duration::from_secs(10)).await;
    if let Err(e) = store.reconcile(ex.pve(), Some(&ex), None).await {
        return fail(e);
    }
    code
}

/// Waits (bounded by the step timeout per step) for job `id`; prints its steps; 0 when done.
async fn report_job(ex: &Arc<Executor>, id: u64, steps: usize, exec: &ExecArgs, json: bool) -> i32 {
    let bound = Duration::from_secs(exec.step_timeout_secs.max(1)) * (steps as u32) + Duration::from_secs(60);
    let Some(view) = ex.wait_finished(id, bound).await else {
        let _ = ex.cancel(id);
        return fail(format!("job {id} did not finish within {} s; cancelled", bound.as_secs()));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
    } else {
        print!("{}", job_table(&view));
    }
    i32::from(view.job.state != JobState::Done)
}

/// `NODE STATE SINCE BY JOB HA GUESTS-HOME WHY` (WHY: what on the node decides the state).
pub fn status_table(all: &[NodeMaintenance]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.node.clone(),
                m.state.as_str().to_owned(),
                m.since.map_or("-".into(), |s| s.to_string()),
                m.by.clone().unwrap_or_else(|| "-".into()),
                m.job_id.map_or("-".into(), |j| j.to_string()),
                if m.ha_maintenance { "maintenance" } else { "-" }.to_owned(),
                m.homes.len().to_string(),
                m.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["NODE", "STATE", "SINCE", "BY", "JOB", "PVE-HA", "HOMES", "WHY"], &rows)
}

/// The moves, then the guests that stay and why.
pub fn plan_table(plan: &Plan) -> String {
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .map(|s| vec![s.vmid.to_string(), kind(s.kind).into(), s.name.clone(), s.from.clone(), s.to.clone()])
        .collect();
    let mut out = if rows.is_empty() {
        "no moves\n".to_owned()
    } else {
        table(&["VMID", "TYPE", "NAME", "FROM", "TO"], &rows)
    };
    for w in &plan.why_not {
        let _ = writeln!(out, "stays: {}", serde_json::to_string(w).unwrap_or_default());
    }
    for n in &plan.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::MaintenanceState;

    #[test]
    fn status_table_has_a_header_and_one_aligned_row_per_node() {
        let t = status_table(&[
            NodeMaintenance {
                node: "pve1".into(),
                state: MaintenanceState::InMaintenance,
                since: Some(1700000000),
                by: Some("root@pam".into()),
                job_id: Some(7),
                ..Default::default()
            },
            NodeMaintenance { node: "pve2".into(), ha_maintenance: true, ..Default::default() },
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("NODE  STATE"), "{t}");
        assert!(lines[1].starts_with("pve1  in_maintenance  1700000000  root@pam  7"), "{t}");
        assert!(lines[2].starts_with("pve2  none") && lines[2].contains("maintenance"), "{t}");
        // Columns line up: STATE starts at the same place in every line.
        let col = lines[0].find("STATE").unwrap();
        assert!(lines.iter().all(|l| l[col..].chars().next().is_some_and(|c| c != ' ')), "{t}");
    }
}
