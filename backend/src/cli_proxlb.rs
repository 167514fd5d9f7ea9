//! ProxLB's command line on top of our engine: `pve-rebalancer -c FILE [-d] [-j] [-b]`.
//!
//! One run = load → connect (hosts in order) → collect → plan (maintenance nodes evacuated) →
//! print → execute (unless `-d`, `balancing.enable: false`, or no `balance_types`). With
//! `service.daemon` it repeats every `service.schedule`, after `service.delay`; SIGHUP reloads the
//! file before the next run, SIGTERM/SIGINT stop (a running job is cancelled first).
//!
//! Exit codes are ProxLB's: 0 ok (also "nothing to do"), 1 configuration or permission,
//! 2 authentication, TLS or connection.

mod connect;
pub(crate) mod output;
pub mod proxlb_json;
mod signals;

pub use connect::{connect, Failure};

use crate::app::Policy;
use crate::config::{self, LoadedConfig};
use crate::execute::{DirLock, Executor, Journal};
use shared::best_node::{best_node, NewGuest, NodeRank};
use shared::evacuate::{evacuate, EvacuationRequest};
use shared::policy::PolicyView;
use shared::{ClusterSnapshot, Plan, PlanRequest};
use signals::Signals;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The flags ProxLB has (and a hidden bound on daemon runs for tests).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ProxlbArgs {
    /// proxlb.yaml [default: /etc/pve-rebalancer/proxlb.yaml, else /etc/proxlb/proxlb.yaml].
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Plan and print, never migrate.
    #[arg(short = 'd', long)]
    pub dry_run: bool,
    /// Print the plan as JSON on stdout (docs/CONFIG.md describes it).
    #[arg(short = 'j', long)]
    pub json: bool,
    /// The JSON to print (implies -j): ours, or ProxLB 2.3's shape [default: rebalancer.output].
    #[arg(long, value_enum)]
    pub output: Option<config::OutputFormat>,
    /// Print the best node for a new guest as the last stdout line (ranking on stderr), then exit.
    #[arg(short = 'b', long)]
    pub best_node: bool,
    /// Stop after this many runs even in daemon mode (tests).
    #[arg(long, hide = true)]
    pub runs: Option<u32>,
}

/// `-c`, or our path, or ProxLB's if only that exists.
pub fn config_path(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_owned();
    }
    let ours = PathBuf::from(config::DEFAULT_PATH);
    if !ours.exists() && Path::new(config::PROXLB_DEFAULT_PATH).exists() {
        return PathBuf::from(config::PROXLB_DEFAULT_PATH);
    }
    ours
}

/// Loads the file and reports its warnings on stderr.
pub fn load(path: &Path) -> Result<LoadedConfig, Failure> {
    let loaded = config::load_file(path).map_err(|e| Failure::Config(e.to_string()))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    Ok(loaded)
}

/// The whole ProxLB-style program; returns the exit code.
pub async fn run(args: ProxlbArgs) -> i32 {
    let path = config_path(args.config.as_deref());
    tracing::info!("Using config path: {}", path.display());
    let mut loaded = match load(&path) {
        Ok(l) => l,
        Err(f) => return f.report(),
    };
    let signals = Signals::install();
    let daemon = |l: &LoadedConfig| l.config.service.daemon && !args.best_node;
    if daemon(&loaded) && signals.sleep(loaded.config.service.delay.duration()).await.is_stop() {
        return 0;
    }
    let mut runs = 0u32;
    loop {
        if signals.take_reload() {
            match load(&path) {
                Ok(l) => {
                    tracing::info!("configuration reloaded from {}", path.display());
                    loaded = l;
                }
                Err(f) => tracing::error!("reload failed, keeping the previous configuration: {f}"),
            }
        }
        let result = run_once(&loaded, &args, &signals).await;
        runs += 1;
        let code = match &result {
            Ok(()) => 0,
            Err(f) => f.report(),
        };
        if !daemon(&loaded) {
            tracing::info!("Daemon mode not active - stopping.");
            return code;
        }
        if args.runs.is_some_and(|n| runs >= n) || signals.stopping() {
            return code;
        }
        let interval = loaded.config.service.schedule.duration();
        tracing::info!("next run in {}s", interval.as_secs());
        if signals.sleep(interval).await.is_stop() {
            return code;
        }
    }
}

/// The policy this file makes with the settings stored in its `rebalancer.state_dir` (the
/// panel's), as the service resolves it.
pub async fn policy(loaded: &LoadedConfig) -> Result<PolicyView, Failure> {
    policy_with(loaded, Default::default()).await
}

/// [`policy`] with one command's overrides on top.
pub async fn policy_with(
    loaded: &LoadedConfig,
    overrides: shared::policy::PolicyLayer,
) -> Result<PolicyView, Failure> {
    let policy = Arc::new(Policy::new(&loaded.config.rebalancer.state_dir, Some(loaded.file_layer())));
    let failed = |e: crate::settings::SettingsFailure| Failure::Config(e.to_string());
    // As a daemon this is the scheduled service (the per-cycle cap applies); once, a one-shot plan.
    if loaded.config.service.daemon && overrides == shared::policy::PolicyLayer::default() {
        return policy.resolve_scheduled().await.map_err(failed);
    }
    policy.resolve_async(overrides).await.map_err(failed)
}

async fn run_once(loaded: &LoadedConfig, args: &ProxlbArgs, signals: &Signals) -> Result<(), Failure> {
    let cfg = &loaded.config;
    let policy = policy(loaded).await?;
    let request = &policy.request;
    let client = Arc::new(connect(cfg).await?);
    let collected = collect(&client).await?;
    if args.best_node {
        let ranks = best_node(&collected.snapshot, &NewGuest::default(), request);
        print_best_node(&ranks);
        return Ok(());
    }
    let mut snapshot = crate::recent::for_plan(collected, &client, request);
    if let Some(why) = shared::engine::psi_note(&snapshot, request) {
        // With `-j` the plan's notes are not printed: say it where an admin reads warnings.
        tracing::warn!("{why}");
    }
    let plan = crate::preflight::plan(&client, &mut snapshot, |s| plan_for(loaded, s, request)).await;
    let format = args.output.unwrap_or(cfg.rebalancer.output);
    if args.json || args.output.is_some() {
        println!("{}", plan_json(format, &snapshot, &plan)?);
    } else {
        print!("{}", output::plan_table(&plan));
    }
    let why_not = if args.dry_run {
        Some("dry run (-d)")
    } else if !cfg.balancing.enable {
        Some("balancing.enable is false")
    } else if plan.steps.is_empty() {
        None
    } else if policy.settings.balance_types.is_empty() {
        Some("balance_types is empty (use ['vm', 'ct'])")
    } else {
        execute(loaded, &policy, client, &plan, signals).await?;
        None
    };
    if let (Some(why), false) = (why_not, plan.steps.is_empty()) {
        tracing::info!("not migrating: {why}");
    }
    Ok(())
}

fn plan_json(
    format: config::OutputFormat,
    snapshot: &ClusterSnapshot,
    plan: &Plan,
) -> Result<String, Failure> {
    match format {
        config::OutputFormat::Ours => {
            serde_json::to_string_pretty(plan).map_err(|e| Failure::Other(e.to_string()))
        }
        config::OutputFormat::Proxlb => Ok(proxlb_json::render(&proxlb_json::proxlb_json(snapshot, plan))),
    }
}

async fn collect(client: &crate::pve::PveClient) -> Result<crate::collect::Collected, Failure> {
    let now = crate::unix_now();
    crate::collect::collect(client, now).await.map_err(Failure::from_pve)
}

/// Maintenance nodes present → evacuate them (ProxLB: ignored guests stay); else balance.
pub fn plan_for(loaded: &LoadedConfig, snapshot: &ClusterSnapshot, request: &PlanRequest) -> Plan {
    let cfg = &loaded.config;
    let drained = cfg.maintenance_nodes_in(snapshot.nodes.iter().map(|n| n.name.as_str()));
    if drained.is_empty() {
        return shared::planner::plan(snapshot, request);
    }
    tracing::info!("evacuating maintenance nodes: {}", drained.join(", "));
    evacuate(
        snapshot,
        &EvacuationRequest {
            nodes: drained,
            include_stopped: cfg.rebalancer.evacuate_stopped,
            move_ignored: false,
            request: request.clone(),
        },
    )
}

/// Collect once with the configuration's connection and request, and plan.
pub async fn plan_with_config(
    loaded: &LoadedConfig,
    overrides: &shared::policy::PolicyLayer,
) -> Result<Plan, Failure> {
    let request = policy_with(loaded, overrides.clone()).await?.request;
    let client = connect(&loaded.config).await?;
    let mut snapshot = crate::recent::for_plan(collect(&client).await?, &client, &request);
    Ok(crate::preflight::plan(&client, &mut snapshot, |s| plan_for(loaded, s, &request)).await)
}

/// Rank nodes for `guest` with the configuration's connection and rules.
pub async fn best_node_with_config(
    loaded: &LoadedConfig,
    guest: &NewGuest,
) -> Result<Vec<NodeRank>, Failure> {
    let request = policy(loaded).await?.request;
    let client = connect(&loaded.config).await?;
    Ok(best_node(&collect(&client).await?.snapshot, guest, &request))
}

/// Ranking on stderr; the best node's name as the last stdout line (ProxLB's `-b` contract).
pub fn print_best_node(ranks: &[NodeRank]) {
    eprint!("{}", output::ranking_table(ranks));
    match ranks.first().filter(|r| r.fits) {
        Some(best) => println!("{}", best.node),
        None => tracing::error!("No possible target node: no node has room for the guest"),
    }
}

async fn execute(
    loaded: &LoadedConfig,
    policy: &PolicyView,
    client: Arc<crate::pve::PveClient>,
    plan: &Plan,
    signals: &Signals,
) -> Result<(), Failure> {
    let cfg = &loaded.config;
    // Validated at load, so a parse error here cannot happen; read as "no windows" if it did.
    let windows = crate::windows::parse_all(&policy.settings.windows).unwrap_or_default();
    let now = crate::windows::local_now();
    let in_window = crate::windows::is_open(&windows, now);
    if !in_window {
        let next = crate::windows::minutes_until_open(&windows, now).unwrap_or(0);
        tracing::info!(
            "outside the balancing windows (next opens in {}h{:02}m): only evacuations run now",
            next / 60,
            next % 60
        );
    }
    let selection: Vec<u32> = plan
        .steps
        .iter()
        .filter(|s| {
            policy.settings.executes(s.kind)
                && (in_window || s.purpose == shared::plan::StepPurpose::Evacuate)
        })
        .map(|s| s.vmid)
        .collect();
    if selection.is_empty() {
        tracing::info!(
            "not migrating: no step's guest type is in balancing.balance_types, or outside the windows"
        );
        return Ok(());
    }
    let r = &cfg.rebalancer;
    let journal = Journal::open(&r.journal)
        .map_err(|e| Failure::Permission(format!("cannot open the journal {}: {e}", r.journal.display())))?;
    let mut exec_cfg = cfg.exec_config();
    exec_cfg.max_parallel = policy.settings.max_parallel as usize;
    exec_cfg.max_per_node = policy.settings.max_per_node as usize;
    let bound = exec_cfg.step_timeout * (selection.len() as u32) + Duration::from_secs(60);
    let executor = Executor::new(client, Arc::new(journal), Arc::new(DirLock::new(&r.lock_dir)), exec_cfg);
    // Steps an earlier run left in flight are followed to their end before anything new starts.
    executor.recover().await.map_err(|e| Failure::Other(format!("reconciling the journal: {e}")))?;
    let id = executor
        .start(plan, Some(&selection), "proxlb-cli")
        .map_err(|e| Failure::Other(format!("cannot start execution: {e}")))?;
    let view = tokio::select! {
        v = executor.wait_finished(id, bound) => v,
        () = signals.stopped() => {
            tracing::warn!("stopping: cancelling job {id}");
            let _ = executor.cancel(id);
            executor.wait_finished(id, Duration::from_secs(120)).await
        }
    };
    match view {
        Some(v) => eprint!("{}", output::job_table(&v)),
        None => tracing::error!("job {id} did not finish within {}s", bound.as_secs()),
    }
    Ok(())
}
