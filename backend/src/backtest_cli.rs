//! `pve-rebalancer backtest`: import the last N days of PVE's history and replay the effective
//! policy (and each `--policy` file on top of it) against nobody balancing and what happened.

use std::path::{Path, PathBuf};

use shared::backtest::{self, BacktestReport, BacktestRequest, Resource, RunReport};
use shared::policy::{PolicyLayer, PolicyView};

use crate::history::{ImportOptions, Progress};
use crate::maintenance::MaintArgs;
use crate::pve::PveClient;

#[derive(clap::Args, Debug, Clone)]
pub struct BacktestArgs {
    /// Days of history to replay (1–365; PVE's RRD keeps a week at 30 min, a year at 6 h).
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// A policy to compare, as a YAML layer of settings on top of the effective policy (e.g.
    /// `balanciness: 5`); repeatable; named after the file.
    #[arg(long = "policy")]
    pub policies: Vec<PathBuf>,
    /// Minutes between two balancing runs in the replay.
    #[arg(long, default_value_t = 60)]
    pub interval_mins: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where imported series are cached (resume, reuse within an hour).
    #[arg(long, default_value = crate::history::DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// The cache is trimmed to this many MiB after an import.
    #[arg(long, default_value_t = 64)]
    pub cache_mib: u64,
    /// `rrddata` calls in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// `rrddata` calls started per second at most.
    #[arg(long, default_value_t = 20.0)]
    pub calls_per_sec: f64,
    /// Take the file layer of the policy from this proxlb.yaml.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub maint: MaintArgs,
}

/// Runs the command; the process exit code.
pub async fn run(client: PveClient, args: BacktestArgs) -> i32 {
    match report(&client, &args).await {
        Ok(r) if args.json => {
            println!("{}", serde_json::to_string_pretty(&r).expect("plain data serializes"));
            0
        }
        Ok(r) => {
            print!("{}", table(&r));
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn report(client: &PveClient, args: &BacktestArgs) -> anyhow::Result<BacktestReport> {
    let effective = crate::maintenance_cli::cli_policy(&args.maint, args.config.as_deref())
        .map_err(|code| anyhow::anyhow!("the policy could not be read (exit {code})"))?
        .resolve_scheduled()
        .await?;
    let request = backtest_request(&effective, &args.policies, args.interval_mins)?;
    let now = crate::collect::snapshot(client, crate::unix_now()).await?;
    let opts = ImportOptions {
        days: args.days,
        concurrency: args.concurrency,
        calls_per_sec: args.calls_per_sec,
        cache_dir: Some(args.cache_dir.clone()),
        cache_limit_bytes: args.cache_mib * 1024 * 1024,
    };
    let history = crate::history::import(client, now, &opts, print_progress).await?;
    backtest::run(&history, &request).map_err(|e| anyhow::anyhow!("back-test: {e}"))
}

fn print_progress(p: Progress) {
    if p.done == p.total || p.done.is_multiple_of(100) {
        eprintln!("history: {}/{} series ({} from the cache)", p.done, p.total, p.from_cache);
    }
}

/// The effective policy (as the scheduler runs it: per-cycle cap kept) and each file's layer on
/// top of it.
pub fn backtest_request(
    effective: &PolicyView,
    files: &[PathBuf],
    interval_mins: u64,
) -> anyhow::Result<BacktestRequest> {
    let mut layers = Vec::new();
    for file in files {
        layers.push((policy_name(file), read_layer(file)?));
    }
    crate::history::backtest_request(effective, &layers, interval_mins)
        .map_err(|(field, detail)| anyhow::anyhow!("policy {field}: {detail}"))
}

/// A policy file: a YAML mapping of settings (the names of `PUT /api/v1/settings`).
pub fn read_layer(file: &Path) -> anyhow::Result<PolicyLayer> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    serde_norway::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (a policy file is a mapping of settings, e.g. `balanciness: 5`)",
            file.display()
        )
    })
}

fn policy_name(file: &Path) -> String {
    file.file_stem().map_or_else(|| file.display().to_string(), |s| s.to_string_lossy().into_owned())
}

/// The report as a text table, one row per run.
pub fn table(r: &BacktestReport) -> String {
    let on = if r.spread_on == Resource::Cpu { "cpu" } else { "memory" };
    let mut out = format!(
        "back-test over {:.1} days, balancing every {} min; spread = max − min node {on} use (points)\n",
        r.days,
        r.interval_secs / 60
    );
    out += &format!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>5} {:>5} {:>5}\n",
        "run", "moves/day", "GiB", "mem n-h", "cpu n-h", "spread", "worst", "rev", "ct", "hard"
    );
    for run in &r.runs {
        out += &row(run);
    }
    out += "n-h: node-hours above the threshold; rev: back to a node left < 24 h before; ct: container restarts;\n";
    out += "hard: hard-rule breaches at balancing times. Assumes load follows the guest; guests created\n";
    out += "later are absent before; guests deleted since are not in the history.\n";
    out
}

fn row(run: &RunReport) -> String {
    format!(
        "{:<16} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.1} {:>7.1} {:>5} {:>5} {:>5}\n",
        run.name,
        run.migrations_per_day,
        run.gib_moved,
        run.node_hours_over_memory,
        run.node_hours_over_cpu,
        run.spread_mean,
        run.spread_worst,
        run.reversals_24h,
        run.ct_restarts,
        run.hard_violations
    )
}
