//! `pve-rebalancer`: the service (`serve`), the command line (`plan`, `best-node`, `apply`,
//! `backtest`, `maintenance enter|exit|status`), and with no subcommand ProxLB's command line
//! (`-c proxlb.yaml [-d] [-j] [-b]`, see `backend::cli_proxlb`).

use anyhow::Context;
use backend::app::{origins::Origins, AppState, Policy};
use backend::http::router;
use backend::pve::{Credentials, PveClient, PveOptions};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pve-rebalancer",
    version,
    about = "Load balancing and maintenance evacuation for Proxmox VE",
    // ProxLB's `-v/--version` (clap's own is `-V`).
    disable_version_flag = true
)]
struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: (),
    /// Without a subcommand: run as ProxLB does (collect, plan, print, execute; daemon loop).
    #[command(flatten)]
    proxlb: backend::cli_proxlb::ProxlbArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Try it without a cluster: a simulated PVE cluster in-process and the service in front of
    /// it (built with `--features demo`; `cargo xtask demo` also builds the panel).
    #[cfg(feature = "demo")]
    Demo {
        /// Address the service listens on.
        #[arg(long, default_value = "127.0.0.1:8017")]
        listen: SocketAddr,
        /// Directory with the built panel (frontend/dist) to serve at `/`.
        #[arg(long)]
        panel_dir: Option<PathBuf>,
    },
    /// Run the HTTP API (and serve the panel with --panel-dir).
    Serve {
        #[command(flatten)]
        pve: PveArgs,
        /// Address to listen on [default: the configuration's `rebalancer.listen`, else
        /// 127.0.0.1:8017].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Directory with the built panel (frontend/dist) to serve at `/`.
        #[arg(long)]
        panel_dir: Option<PathBuf>,
        /// A host name whose PVE UI (`https://NAME:8006`) may call this service, besides the
        /// cluster's own node names and addresses (repeatable; e.g. the nodes' FQDNs).
        #[arg(long = "ui-origin")]
        ui_origins: Vec<String>,
        #[command(flatten)]
        exec: backend::execute::ExecArgs,
        #[command(flatten)]
        maint: backend::maintenance::MaintArgs,
        #[command(flatten)]
        sampler: backend::sampler::SamplerArgs,
        /// proxlb.yaml with the balancing defaults (settings stored in --state-dir win over them)
        /// and the `rebalancer.notify` targets.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
        /// `GET /api/v1/cluster` shares one collection per this many milliseconds (0: collect
        /// on every request).
        #[arg(long, default_value_t = 1000)]
        cluster_cache_ms: u64,
        /// Where the back-test (`/api/v1/backtest`) caches PVE's RRD series (node-local).
        #[arg(long, default_value = backend::history::DEFAULT_CACHE_DIR)]
        history_cache_dir: PathBuf,
        /// Serve HTTPS with this certificate (PEM) and --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Serve HTTPS with the node's own PVE certificate from this directory
        /// (pveproxy-ssl.* if present, else pve-ssl.*), as pveproxy does.
        #[arg(long, conflicts_with = "tls_cert")]
        tls_pve_dir: Option<PathBuf>,
        /// PVE's key the CSRF tokens of ticket writes are verified with (as pveproxy does).
        #[arg(long, default_value = backend::auth::DEFAULT_CSRF_KEY)]
        csrf_key: PathBuf,
    },
    /// A live table of the cluster: nodes, imbalance, the running job's progress.
    Status {
        #[command(flatten)]
        pve: PveArgs,
        /// Refresh until Ctrl-C (default: print one frame).
        #[arg(long, conflicts_with = "once")]
        watch: bool,
        /// Print one frame, without terminal escape codes.
        #[arg(long)]
        once: bool,
        /// Seconds between frames with --watch.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
        /// The service's execution journal (read for the running job, if this user may).
        #[arg(long, default_value = backend::execute::journal::DEFAULT_PATH)]
        journal: PathBuf,
    },
    /// Collect once, plan with the policy in force (configuration file < stored settings <
    /// --balanciness), and print the plan as JSON.
    Plan {
        #[command(flatten)]
        pve: PveArgs,
        /// Balanciness in percentage points, for this plan.
        #[arg(long)]
        balanciness: Option<f64>,
        /// Take connection and planning settings from this proxlb.yaml instead.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        maint: backend::maintenance::MaintArgs,
    },
    /// What the policy would have done over the last days: imports PVE's RRD history and task
    /// log, replays the effective policy (and each --policy file on top of it) hourly with the
    /// engine, and prints the figures beside nobody balancing and what actually happened.
    Backtest {
        #[command(flatten)]
        pve: PveArgs,
        #[command(flatten)]
        args: backend::backtest_cli::BacktestArgs,
    },
    /// Rank the nodes for a new guest; the best node's name is the last stdout line.
    BestNode {
        #[command(flatten)]
        pve: PveArgs,
        /// Take connection and planning settings from this proxlb.yaml instead.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        guest: GuestArgs,
        #[command(flatten)]
        maint: backend::maintenance::MaintArgs,
    },
    /// Node maintenance: evacuate a node, bring its guests back, show the marks.
    Maintenance {
        #[command(subcommand)]
        action: MaintAction,
    },
    /// Collect, plan and execute the plan, waiting for it (as ProxLB without -d).
    Apply {
        #[command(flatten)]
        pve: PveArgs,
        #[command(flatten)]
        args: backend::maintenance_cli::ApplyArgs,
    },
}

#[derive(Subcommand)]
enum MaintAction {
    /// Mark NODE, evacuate it (a job, as for plans) and record where its guests ran.
    Enter {
        #[command(flatten)]
        pve: PveArgs,
        #[command(flatten)]
        args: backend::maintenance_cli::EnterArgs,
    },
    /// Clear NODE's mark, optionally bringing its guests back (--return-home).
    Exit {
        #[command(flatten)]
        pve: PveArgs,
        #[command(flatten)]
        args: backend::maintenance_cli::ExitArgs,
    },
    /// Show every node's maintenance state (or NODE's).
    Status {
        #[command(flatten)]
        pve: PveArgs,
        #[command(flatten)]
        args: backend::maintenance_cli::StatusArgs,
    },
}

/// The new guest `best-node` places.
#[derive(Args)]
struct GuestArgs {
    /// Its name (tags and pool rules match on it).
    #[arg(long, default_value = "new-guest")]
    name: String,
    /// Memory in GiB.
    #[arg(long, default_value_t = 0.0)]
    memory_gib: f64,
    /// vCPUs.
    #[arg(long, default_value_t = 0.0)]
    cpus: f64,
    /// Its PVE pool.
    #[arg(long)]
    pool: Option<String>,
    /// Its tags (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    tag: Vec<String>,
}

#[derive(Args)]
struct PveArgs {
    /// PVE API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8006")]
    pve_url: String,
    /// PVE user for ticket login (e.g. root@pam).
    #[arg(long, env = "PVE_REBALANCER_USER")]
    user: Option<String>,
    /// Password for --user (prefer the environment variable over the command line).
    #[arg(long, env = "PVE_REBALANCER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// API token id, `user@realm!tokenid`.
    #[arg(long, env = "PVE_REBALANCER_TOKEN_ID")]
    token_id: Option<String>,
    #[arg(long, env = "PVE_REBALANCER_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// CA certificate (PEM) to verify the PVE API's TLS certificate with.
    #[arg(long)]
    pve_ca: Option<PathBuf>,
    /// Do not verify the PVE API's TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// Trust exactly the PVE certificate with this SHA-256 fingerprint (`AA:BB:…`, from
    /// `pvenode cert info`), e.g. a node's self-signed one; takes the place of --pve-ca.
    #[arg(long)]
    pve_fingerprint: Option<String>,
    /// Another node's API URL, tried when --pve-url cannot be reached (repeatable, in order).
    #[arg(long = "pve-fallback-url")]
    pve_fallback_urls: Vec<String>,
}

impl PveArgs {
    fn client(&self) -> anyhow::Result<PveClient> {
        let credentials = match (&self.token_id, &self.token_secret, &self.user, &self.password) {
            (Some(token_id), Some(secret), _, _) => {
                Credentials::Token { token_id: token_id.clone(), secret: secret.clone() }
            }
            (None, None, Some(user), Some(password)) => {
                Credentials::Password { user: user.clone(), password: password.clone() }
            }
            _ => anyhow::bail!(
                "no PVE credentials: give --token-id and --token-secret, or --user and --password \
                 (or the PVE_REBALANCER_* environment variables)"
            ),
        };
        let ca_pem = match &self.pve_ca {
            Some(p) => Some(
                std::fs::read_to_string(p).with_context(|| format!("reading --pve-ca {}", p.display()))?,
            ),
            None => None,
        };
        let connection = backend::pve::Connection {
            fallback_urls: self.pve_fallback_urls.clone(),
            fingerprint: self.pve_fingerprint.clone(),
            ..Default::default()
        };
        let opts = PveOptions {
            base_url: self.pve_url.clone(),
            credentials,
            ca_pem,
            insecure: self.insecure,
            timeout: Duration::from_secs(30),
        };
        Ok(PveClient::with_connection(opts, connection)?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli);
    let Some(command) = cli.command else {
        std::process::exit(backend::cli_proxlb::run(cli.proxlb).await);
    };
    dispatch(command).await
}

/// `RUST_LOG` when set; else the configuration's `service.log_level` (ProxLB's key), else info.
fn init_logging(cli: &Cli) {
    let config = match &cli.command {
        None => Some(backend::cli_proxlb::config_path(cli.proxlb.config.as_deref())),
        Some(
            Command::Serve { config, .. } | Command::Plan { config, .. } | Command::BestNode { config, .. },
        ) => config.clone(),
        _ => None,
    };
    // Read quietly here: the command loads the file again and reports its problems.
    let level = config
        .and_then(|p| backend::config::load_file(&p).ok())
        .map_or("info", |l| l.config.service.log_level.directive());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| format!("{level},tower_http=warn").into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Runs one subcommand (boxed: `demo` runs `serve` through it).
fn dispatch(command: Command) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>> {
    Box::pin(run_command(command))
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        #[cfg(feature = "demo")]
        Command::Demo { listen, panel_dir } => demo(listen, panel_dir).await?,
        Command::Status { pve, watch, once, interval, journal } => {
            let client = pve.client()?;
            backend::status_watch::run(&client, &journal, Duration::from_secs(interval), once || !watch)
                .await?;
        }
        Command::Serve {
            pve,
            listen,
            panel_dir,
            ui_origins,
            exec,
            maint,
            sampler,
            config,
            cluster_cache_ms,
            history_cache_dir,
            tls_cert,
            tls_key,
            tls_pve_dir,
            csrf_key,
        } => {
            let tls = match (tls_cert, tls_key, tls_pve_dir) {
                (Some(cert), Some(key), _) => Some(backend::http::serve::TlsFiles { cert, key }),
                (_, _, Some(dir)) => {
                    Some(backend::http::serve::TlsFiles::pve_node(&dir).with_context(|| {
                        format!("no pveproxy-ssl.pem/.key or pve-ssl.pem/.key in {}", dir.display())
                    })?)
                }
                _ => None,
            };
            let client = Arc::new(pve.client()?);
            let loaded = config
                .as_ref()
                .map(|p| backend::cli_proxlb::load(p).unwrap_or_else(|f| std::process::exit(f.report())));
            // One policy for every plan: stored settings (cluster-wide, --state-dir) over the file.
            let policy = Arc::new(Policy::new(&maint.state_dir, loaded.as_ref().map(|l| l.file_layer())));
            let maintenance = maint.store();
            maintenance.set_policy(policy.clone());
            let listen = listen
                .or_else(|| loaded.as_ref().and_then(|l| l.config.rebalancer.listen.parse().ok()))
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8017)));
            let mut hosts = ui_origins;
            hosts.extend(loaded.iter().flat_map(|l| l.config.rebalancer.ui_origins.clone()));
            let origins = Arc::new(Origins::new(hosts));
            spawn_origin_refresh(origins.clone(), client.clone());
            let mut state = AppState::new(client.clone())
                .with_maintenance(maintenance.clone())
                .with_policy(policy.clone())
                .with_origins(origins)
                .with_cluster_cache(std::time::Duration::from_millis(cluster_cache_ms))
                .with_history_cache(history_cache_dir)
                .with_csrf_key(csrf_key);
            let notify = loaded.as_ref().map(|l| l.config.rebalancer.notify.clone()).unwrap_or_default();
            let notifier = Arc::new(backend::notify::Notifier::new(&notify));
            if let Some(alert) = notify.alert.clone().filter(|_| !notify.targets.is_empty()) {
                notifier.clone().watch_thresholds(client.clone(), alert, &maint.state_dir);
            }
            let sampler =
                sampler.config().map_err(|e| anyhow::anyhow!("--sample-interval/--history-hours: {e}"))?;
            let sampler = Arc::new(backend::sampler::Sampler::new(sampler));
            sampler.clone().spawn(client.clone());
            state = state.with_sampler(sampler);
            // Without a journal nothing may execute (a step must never be submitted unrecorded);
            // the rest of the service still runs and the job routes say why they are off.
            let exec_base = loaded.as_ref().map(|l| l.config.exec_config()).unwrap_or_default();
            match exec.executor_with(client, exec_base) {
                Ok(executor) => {
                    let recovering = executor.clone();
                    tokio::spawn(async move {
                        if let Err(e) = recovering.recover().await {
                            tracing::error!(error = %e, "reconciling the execution journal failed");
                        }
                    });
                    executor.set_closed_targets(maintenance.closed_targets());
                    executor.set_limits_source(policy.limits_source());
                    if !notify.targets.is_empty() {
                        notifier.clone().follow(&executor, Some(maintenance.clone()));
                    }
                    state = state.with_executor(executor);
                    // Scheduled balancing: idle until the policy's `schedule_interval_secs` is set.
                    let scheduler = backend::scheduler::SchedulerConfig {
                        state_dir: maint.state_dir.clone(),
                        tick: Duration::from_secs(30),
                    };
                    backend::scheduler::Scheduler::new(scheduler).spawn(state.clone());
                }
                Err(e) => tracing::error!(error = %e, "execution disabled: cannot open the journal"),
            }
            backend::http::serve::serve(router(state, panel_dir), listen, tls, shutdown_signal()).await?;
        }
        Command::Plan { config: Some(path), balanciness, .. } => {
            let loaded = backend::cli_proxlb::load(&path).unwrap_or_else(|f| std::process::exit(f.report()));
            let overrides = shared::policy::PolicyLayer { balanciness, ..Default::default() };
            match backend::cli_proxlb::plan_with_config(&loaded, &overrides).await {
                Ok(plan) => println!("{}", serde_json::to_string_pretty(&plan)?),
                Err(f) => std::process::exit(f.report()),
            }
        }
        Command::BestNode { pve, config, guest, maint } => {
            let guest = shared::best_node::NewGuest {
                name: guest.name,
                cpus: guest.cpus,
                mem_bytes: (guest.memory_gib * 1024.0 * 1024.0 * 1024.0) as u64,
                pool: guest.pool,
                tags: guest.tag,
                ..Default::default()
            };
            let ranks = match config {
                Some(path) => {
                    let loaded =
                        backend::cli_proxlb::load(&path).unwrap_or_else(|f| std::process::exit(f.report()));
                    backend::cli_proxlb::best_node_with_config(&loaded, &guest)
                        .await
                        .unwrap_or_else(|f| std::process::exit(f.report()))
                }
                None => {
                    let request = backend::maintenance_cli::policy_request(&maint, None, &Default::default())
                        .unwrap_or_else(|code| std::process::exit(code));
                    let client = pve.client()?;
                    let snapshot = backend::collect::snapshot(&client, backend::unix_now()).await?;
                    shared::best_node::best_node(&snapshot, &guest, &request)
                }
            };
            backend::cli_proxlb::print_best_node(&ranks);
        }
        Command::Maintenance { action } => std::process::exit(match action {
            MaintAction::Enter { pve, args } => backend::maintenance_cli::enter(pve.client()?, args).await,
            MaintAction::Exit { pve, args } => backend::maintenance_cli::exit(pve.client()?, args).await,
            MaintAction::Status { pve, args } => backend::maintenance_cli::status(pve.client()?, args).await,
        }),
        Command::Backtest { pve, args } => {
            std::process::exit(backend::backtest_cli::run(pve.client()?, args).await)
        }
        Command::Apply { pve, args } => {
            std::process::exit(backend::maintenance_cli::apply(pve.client()?, args).await)
        }
        Command::Plan { pve, balanciness, config: None, maint } => {
            let overrides = shared::policy::PolicyLayer { balanciness, ..Default::default() };
            let request = backend::maintenance_cli::policy_request(&maint, None, &overrides)
                .unwrap_or_else(|code| std::process::exit(code));
            let client = pve.client()?;
            let mut snapshot = backend::collect::snapshot(&client, backend::unix_now()).await?;
            let plan =
                backend::preflight::plan(&client, &mut snapshot, |s| shared::planner::plan(s, &request))
                    .await;
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
    }
    Ok(())
}

/// `demo`: the project's PVE simulator (demo scenario, users `root@pam`/`demo` and the rest of
/// `tests/pve-sim/scenarios/demo.yaml`) on a loopback port, and `serve` in front of it with its
/// journal, lock and state in a fresh temporary directory, until Ctrl-C.
#[cfg(feature = "demo")]
async fn demo(listen: SocketAddr, panel_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path())?;
    let mut cfg = pve_sim::SimConfig::new(scenario);
    // Migrations take seconds, not minutes, so a plan can be watched to its end.
    cfg.time_scale = 30.0;
    let sim = pve_sim::start(cfg).await?;
    let work = std::env::temp_dir().join(format!("pve-rebalancer-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let ca = work.join("sim-ca.pem");
    std::fs::write(&ca, &sim.ca_pem)?;
    eprintln!("simulated PVE cluster at {} (log in as root@pam / demo)", sim.base_url);
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let mut args = vec![
        "pve-rebalancer".to_owned(),
        "serve".into(),
        "--pve-url".into(),
        sim.base_url.clone(),
        "--pve-ca".into(),
        path(ca),
        "--user".into(),
        "root@pam".into(),
        "--password".into(),
        "demo".into(),
        "--listen".into(),
        listen.to_string(),
        "--journal".into(),
        path(work.join("journal.sqlite")),
        "--lock-dir".into(),
        path(work.join("lock")),
        "--state-dir".into(),
        path(work.join("state")),
        "--csrf-key".into(),
        path(sim.csrf_key.clone()),
    ];
    if let Some(dir) = panel_dir {
        args.extend(["--panel-dir".to_owned(), path(dir)]);
    }
    let serve = Cli::try_parse_from(args)?.command.expect("serve");
    let result = dispatch(serve).await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The cluster's node names and addresses for CORS, now and every five minutes (nodes join).
fn spawn_origin_refresh(origins: Arc<Origins>, pve: Arc<PveClient>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            origins.refresh(&pve).await;
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
