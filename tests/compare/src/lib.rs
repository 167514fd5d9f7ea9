//! Side-by-side benchmark of pve-rebalancer and ProxLB 2.3 on the same simulated clusters.
//!
//! For every scenario of a fixed seeded suite ([`scenarios`]) one simulator is started
//! in-process; ProxLB (dry run, JSON) and ours (in-process and through the CLI) plan against it;
//! both plans are measured by the same functions on our snapshot ([`metrics`]). Also: ours and
//! ProxLB against the exhaustive optimum on tiny clusters ([`optimum`]), and the engine's scaling
//! curve. [`week`]: a simulated week, both tools executing on identical simulator copies.
//! [`report`] renders the "Side by side with ProxLB" section of `docs/BENCHMARKS.md`.

pub mod metrics;
pub mod optimum;
pub mod ours;
pub mod proxlb;
pub mod report;
pub mod scenarios;
pub mod week;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use metrics::{Balance, Outcome, Violations};
use scenarios::Case;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A fresh private temp directory.
pub fn temp_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "compare-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// What the harness is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    /// Run ProxLB with its sub-second sleeps skipped for scenarios above this many guests.
    pub skip_sleeps_above: usize,
    pub proxlb_timeout: Duration,
    /// Run the simulated week ([`week`]).
    pub week: bool,
    /// Run the scenarios, tiny instances and scaling curve (off: the week alone, for iterating).
    pub scenarios: bool,
}

impl Options {
    pub fn new(quick: bool) -> Options {
        Options {
            quick,
            skip_sleeps_above: if quick { 0 } else { 100 },
            proxlb_timeout: Duration::from_secs(if quick { 120 } else { 900 }),
            week: true,
            scenarios: true,
        }
    }
}

/// Our side of one scenario.
#[derive(Clone, Debug)]
pub struct OursRun {
    pub outcome: Outcome,
    pub engine: Duration,
    pub collect: Duration,
    /// End to end through the CLI (collection included), its API calls, and whether its plan
    /// equals the in-process one.
    pub cli: Result<(Duration, u64, bool), String>,
    pub api_inprocess: u64,
    /// The first steps of our plan that reach ProxLB's result (spread and violations), when
    /// ProxLB produced one and some prefix does ([`metrics::prefix_matching`]).
    pub matching_proxlb: Option<Outcome>,
    /// Our plan with ProxLB's migration count as the move budget (`max_moves`), everything else
    /// as above: the spread each tool gets for the same number of migrations.
    pub same_moves_as_proxlb: Option<Outcome>,
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    pub case: Case,
    pub running: usize,
    pub before: Balance,
    pub before_violations: Violations,
    /// `Err` = our side failed (collection, CLI): the harness reports it, the quick test fails.
    pub ours: Result<OursRun, String>,
    pub proxlb: proxlb::Run,
    pub proxlb_outcome: Option<Outcome>,
    pub proxlb_api: u64,
}

async fn start_sim(sc: pve_sim::Scenario) -> anyhow::Result<pve_sim::RunningSim> {
    let mut cfg = pve_sim::SimConfig::new(sc);
    cfg.time_scale = 1000.0;
    pve_sim::start(cfg).await
}

/// Runs one scenario: ours in-process, ours through the CLI, then ProxLB, on one simulator.
pub async fn run_case(case: &Case, cli: &std::path::Path, opts: &Options) -> anyhow::Result<Row> {
    let built = scenarios::build(case);
    let sim = start_sim(built.scenario.clone()).await?;
    let rules = built.rules.clone();
    let req = ours::request(&rules);
    let c0 = sim.request_count();
    let collected = ours::collect(&sim).await;
    let c1 = sim.request_count();
    let (snapshot, collect_time) = match collected {
        Ok(x) => x,
        Err(e) => {
            sim.shutdown().await;
            anyhow::bail!("collecting {}: {e}", case.id);
        }
    };
    let reps = if case.guests > 1000 { 3 } else { 5 };
    let (plan, engine) = ours::plan_timed(&snapshot, &req, reps);
    let our_moves = metrics::moves_of(&plan);
    let outcome = metrics::evaluate(&snapshot, &plan, &our_moves, &rules);
    let c2 = sim.request_count();
    let cli_res = ours::run_cli(cli, &sim, Duration::from_secs(300)).await;
    let c3 = sim.request_count();
    let cli = cli_res.map(|(p, wall)| (wall, c3 - c2, metrics::moves_of(&p) == our_moves));
    // ProxLB on the same state (the runs above are read-only).
    let skip = case.guests > opts.skip_sleeps_above;
    let cfg = proxlb::config(sim.addr.port(), &built.proxlb_cluster_yaml, false);
    let c4 = sim.request_count();
    let run = proxlb::run(&cfg, true, skip, opts.proxlb_timeout).await;
    let c5 = sim.request_count();
    let proxlb_outcome = run.ok.then(|| metrics::evaluate(&snapshot, &plan, &run.moves, &rules));
    let matching_proxlb = proxlb_outcome
        .as_ref()
        .and_then(|p| metrics::prefix_matching(&snapshot, &plan, &our_moves, &rules, p));
    let same_moves_as_proxlb = proxlb_outcome.as_ref().map(|p| {
        // max_moves 0 means "no cap": ProxLB moving nothing means balancing nothing.
        let req = match p.migrations {
            0 => shared::PlanRequest { level: Some(1), ..req.clone() },
            n => shared::PlanRequest { max_moves: n as u32, ..req.clone() },
        };
        let plan = shared::planner::plan(&snapshot, &req);
        metrics::evaluate(&snapshot, &plan, &metrics::moves_of(&plan), &rules)
    });
    sim.shutdown().await;
    Ok(Row {
        case: case.clone(),
        running: snapshot.guests.iter().filter(|g| g.is_running()).count(),
        before: metrics::balance(&snapshot, &rules),
        before_violations: metrics::violations(&snapshot, &snapshot, &[], &rules),
        ours: Ok(OursRun {
            outcome,
            engine,
            collect: collect_time,
            cli,
            api_inprocess: c1 - c0,
            matching_proxlb,
            same_moves_as_proxlb,
        }),
        proxlb: run,
        proxlb_outcome,
        proxlb_api: c5 - c4,
    })
}

/// `--ours-only`: our in-process plan on every scenario of the suite, one line each on stderr
/// (spread before → after, CV, migrations, GiB, violations). A tuning aid: no ProxLB, no CLI, no
/// file written; ProxLB's side of the same seeds is in the last full report.
pub async fn ours_only(quick: bool) -> anyhow::Result<()> {
    let (mut gib, mut moves) = (0.0, 0);
    for case in scenarios::suite(quick) {
        let built = scenarios::build(&case);
        let sim = start_sim(built.scenario.clone()).await?;
        let collected = ours::collect(&sim).await;
        sim.shutdown().await;
        let (snapshot, _) = collected?;
        if let Some(dir) = std::env::var_os("COMPARE_DUMP") {
            // The request and snapshot as JSON, to replay the engine without a simulator.
            let req = serde_json::to_vec(&(ours::request(&built.rules), &snapshot))?;
            std::fs::write(PathBuf::from(dir).join(format!("{}.json", case.id)), req)?;
        }
        let (plan, engine) = ours::plan_timed(&snapshot, &ours::request(&built.rules), 1);
        let m = metrics::moves_of(&plan);
        let o = metrics::evaluate(&snapshot, &plan, &m, &built.rules);
        let before = metrics::balance(&snapshot, &built.rules);
        gib += o.gib;
        moves += o.migrations;
        // Memory above the mean use: the least any plan must move to balance fully.
        let excess = |l: &[shared::NodeLoad]| {
            let (u, c): (f64, f64) = l.iter().fold((0.0, 0.0), |(u, c), n| (u + n.used, c + n.total));
            l.iter().map(|n| (n.used - n.total * u / c.max(1.0)).max(0.0)).sum::<f64>() / (1u64 << 30) as f64
        };
        eprintln!(
            "{:<12} spread {:>5.1} -> {:>5.1}  cv {:.3} -> {:.3}  moves {:>3}  GiB {:>6.0} (excess {:.0} -> {:.0})  violations {}  {:?}",
            case.id,
            before.spread,
            o.after.spread,
            before.cv,
            o.after.cv,
            o.migrations,
            o.gib,
            excess(&plan.before),
            excess(&plan.after),
            o.violations.total(),
            engine
        );
        for n in &plan.notes {
            eprintln!("             note: {n}");
        }
    }
    eprintln!("total: {moves} moves, {gib:.0} GiB");
    Ok(())
}

/// One tiny instance against the exhaustive optimum.
#[derive(Clone, Debug)]
pub struct TinyRow {
    pub label: String,
    pub before: f64,
    pub ours: (f64, usize),
    pub proxlb: Result<(f64, usize), String>,
    /// best[k] for k = 0..=movable guests.
    pub best: Vec<f64>,
}

/// The tiny instances: `(seed, nodes, guests)`.
pub fn tiny_suite(quick: bool) -> Vec<(u64, usize, usize)> {
    let all = vec![
        (101, 3, 9),
        (102, 3, 10),
        (103, 4, 8),
        (104, 4, 9),
        (105, 3, 10),
        (106, 4, 8),
        (107, 5, 7),
        (108, 5, 8),
    ];
    if quick {
        all.into_iter().take(2).collect()
    } else {
        all
    }
}

pub async fn run_tiny(seed: u64, nodes: usize, guests: usize, opts: &Options) -> anyhow::Result<TinyRow> {
    let case =
        Case { id: format!("tiny-{seed}"), seed, nodes, guests, shape: scenarios::Shape::Heterogeneous };
    let built = scenarios::build(&case);
    let sim = start_sim(built.scenario).await?;
    let (s, _) = ours::collect(&sim).await?;
    let rules = built.rules;
    let (plan, _) = ours::plan_timed(&s, &ours::request(&rules), 1);
    let om = metrics::moves_of(&plan);
    let o = metrics::evaluate(&s, &plan, &om, &rules);
    let cfg = proxlb::config(sim.addr.port(), "", false);
    let run = proxlb::run(&cfg, true, true, opts.proxlb_timeout).await;
    sim.shutdown().await;
    let p = if run.ok {
        let po = metrics::evaluate(&s, &plan, &run.moves, &rules);
        Ok((po.after.spread, optimum::moved_guests(&s, &run.moves)))
    } else {
        Err(run.error.unwrap_or_default())
    };
    let tiny = optimum::Tiny::from_snapshot(&s, &rules);
    let best = tiny.exhaustive().ok_or_else(|| anyhow::anyhow!("tiny instance too large"))?;
    Ok(TinyRow {
        label: format!("seed {seed}, {nodes}×{guests} ({} movable)", tiny.guests.len()),
        before: metrics::balance(&s, &rules).spread,
        ours: (o.after.spread, optimum::moved_guests(&s, &om)),
        proxlb: p,
        best,
    })
}

/// One point of the engine's scaling curve.
#[derive(Clone, Debug)]
pub struct ScaleRow {
    pub nodes: usize,
    pub guests: usize,
    pub engine: Duration,
    pub moves: usize,
    pub spread: (f64, f64),
}

pub fn scaling_suite(quick: bool) -> Vec<(usize, usize)> {
    if quick {
        vec![(8, 200), (32, 3000)]
    } else {
        vec![(8, 200), (16, 800), (32, 3000), (64, 10_000), (128, 25_000), (250, 50_000), (500, 100_000)]
    }
}

pub fn run_scaling(nodes: usize, guests: usize) -> ScaleRow {
    let s = shared::testkit::cluster(42, nodes, guests);
    let req = ours::request(&Default::default());
    let reps = if guests >= 25_000 { 1 } else { 3 };
    let (p, engine) = ours::plan_timed(&s, &req, reps);
    ScaleRow { nodes, guests, engine, moves: p.steps.len(), spread: (p.spread_before, p.spread_after) }
}

/// Everything one harness run produced.
#[derive(Clone, Debug)]
pub struct Results {
    /// What was asked, so the report states the settings that ran.
    pub opts: Options,
    pub rows: Vec<Row>,
    pub tiny: Vec<Result<TinyRow, String>>,
    pub scaling: Vec<ScaleRow>,
    /// `None` when not asked for.
    pub week: Option<Result<week::WeekResult, String>>,
    pub env: report::Env,
    pub total: Duration,
}

/// `v`, or nothing when `yes` is false.
fn only<T>(yes: bool, v: Vec<T>) -> Vec<T> {
    if yes {
        v
    } else {
        Vec::new()
    }
}

/// Runs the whole harness; progress goes to stderr.
pub async fn run_all(opts: &Options) -> anyhow::Result<Results> {
    let t = Instant::now();
    let say = |what: String| eprintln!("compare [{:>6.1} s]: {what}", t.elapsed().as_secs_f64());
    let cli = ours::ensure_cli()?;
    let env = report::Env::probe(&cli).await;
    let mut rows = Vec::new();
    for case in only(opts.scenarios, scenarios::suite(opts.quick)) {
        say(format!("{} ({}×{}, {})", case.id, case.nodes, case.guests, case.shape.label()));
        match run_case(&case, &cli, opts).await {
            Ok(r) => rows.push(r),
            Err(e) => rows.push(Row {
                case: case.clone(),
                running: 0,
                before: Balance::default(),
                before_violations: Violations::default(),
                ours: Err(format!("{e:#}")),
                proxlb: proxlb::Run::default(),
                proxlb_outcome: None,
                proxlb_api: 0,
            }),
        }
    }
    let mut tiny = Vec::new();
    for (seed, n, g) in only(opts.scenarios, tiny_suite(opts.quick)) {
        say(format!("tiny seed {seed} {n}×{g}"));
        tiny.push(run_tiny(seed, n, g, opts).await.map_err(|e| format!("{e:#}")));
    }
    let mut scaling = Vec::new();
    for (n, g) in only(opts.scenarios, scaling_suite(opts.quick)) {
        say(format!("scaling {n}×{g}"));
        scaling.push(tokio::task::spawn_blocking(move || run_scaling(n, g)).await?);
    }
    let week = if opts.week {
        let spec = week::WeekSpec::new(opts.quick);
        say(format!("week: {}×{}, {} simulated hours", spec.nodes, spec.guests, spec.hours));
        Some(week::run(&spec, &cli, Duration::from_secs(300)).await.map_err(|e| format!("{e:#}")))
    } else {
        None
    };
    say("done".into());
    Ok(Results { opts: opts.clone(), rows, tiny, scaling, week, env, total: t.elapsed() })
}
