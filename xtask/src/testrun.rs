//! `cargo xtask test`: every test, in stages that print their wall time.
//!
//! After set-up and the checks that need no build, three lanes run side by side: the tests mostly
//! wait (on loopback servers, ProxLB's Python, Chromium) while the builds compute, so together
//! they keep both cores of a small CI machine busy. The panel (wasm, its own target dir) builds
//! while the tests do; lane 1 waits for the test build where it needs it.
//!
//! ```text
//! lane 1: panel build → (tests built) → browser tests (e2e modules browser*, panel*)
//! lane 2: test build+lint → (python venv) → every other test
//! lane 3: python venv (setup's last step, mostly waiting on PyPI) → node tests (PVE UI, a
//!         stand-in panel: no build needed) → (tests built) → (panel built) → package
//! ```
//!
//! The test build compiles the workspace through clippy's driver (the lint pass), and it and the
//! other tests run with nothing beside the repository ([`Isolation`], the self-contained guard).
//! Where that isolation cannot be made, lane 3 builds the schema tests in a lone copy instead,
//! once the tests are built.
//! The test runs start the binaries the test build listed (`nextest --binaries-metadata`),
//! without cargo, so none waits for a lock on `target/`.
//!
//! A lane stops at its first failed stage; the others go on, and the task fails at the end. Each
//! lane's commands write to `target/xtask/lane-N.log`, shown whole when the lane ends, so that the
//! lanes' output does not interleave in a CI log.

use crate::isolation::Isolation;
use crate::{frontend, root, run, selfcontained, setup_script};
use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn test() -> Result<()> {
    // A test run builds each crate once: incremental caches (3 GB here) only cost disk.
    // Set for the process so that the cargo builds the tests start themselves inherit it.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    report_disk();
    let stages = Stages::new();
    stages.run("setup", || run(setup_script().env("WITH_PYTHON", "0")))?;
    stages.run("fmt", || run(Command::new("cargo").args(["fmt", "--all", "--", "--check"])))?;
    stages.run("layout", || selfcontained::scan(&root()))?;
    let mut alone = None;
    stages.run("self-contained", || {
        alone = nothing_beside(&root());
        Ok(())
    })?;
    let alone = alone.as_ref();
    let (built, venv, panel) = (Gate::default(), Gate::default(), Gate::default());
    let build_tests = || built.open(test_build(alone));
    let make_venv = || venv.open(run(setup_script().env("ONLY_PYTHON", "1")));
    let build_panel = || panel.open(frontend(false));
    let tests_built = || built.wait();
    let venv_made = || venv.wait();
    let panel_built = || panel.wait();
    let other_tests = || nextest(alone, &["-E", &format!("not ({})", panel_tests())]);
    // Without the isolation, the guard builds the schema tests in a lone copy of the tree.
    let lone_copy = || selfcontained::check(&root());
    let mut lane_3: Vec<Stage> = vec![("python venv", &make_venv), ("node tests", &node_tests)];
    lane_3.push(("(tests built)", &tests_built));
    if alone.is_none() {
        lane_3.push(("lone copy", &lone_copy));
    }
    lane_3.push(("(panel built)", &panel_built));
    lane_3.push(("package", &package));
    let result = stages.lanes(&[
        &[("panel build", &build_panel), ("(tests built)", &tests_built), ("browser tests", &browser_tests)],
        &[("test build+lint", &build_tests), ("(python venv)", &venv_made), ("other tests", &other_tests)],
        &lane_3,
    ]);
    report_disk();
    stages.summary();
    result?;
    eprintln!("[xtask] all tests passed");
    Ok(())
}

/// The nextest filter of the tests that need the built panel (see
/// [`selfcontained::PANEL_MODULE_PREFIXES`], which the layout stage enforces).
fn panel_tests() -> String {
    let modules: Vec<String> =
        selfcontained::PANEL_MODULE_PREFIXES.iter().map(|p| format!("test(/^{p}/)")).collect();
    format!("package(e2e) & ({})", modules.join(" | "))
}

/// The isolation the test build and the other tests run in ([`Isolation`]), or `None` with the
/// reason on stderr: then the lone-copy stage guards instead.
fn nothing_beside(root: &std::path::Path) -> Option<Isolation> {
    match Isolation::for_repo(root) {
        Ok(alone) => {
            eprintln!(
                "[xtask] the test build and the tests run with nothing beside the repository: {}",
                alone.describe()
            );
            Some(alone)
        }
        Err(why) => {
            eprintln!(
                "[xtask] cannot hide what lies beside the repository ({why}); a lone copy guards instead"
            );
            None
        }
    }
}

/// The browser tests run outside the isolation: Chromium and its profile need the machine.
fn browser_tests() -> Result<()> {
    nextest(None, &["-E", &panel_tests()])
}

/// Builds every test binary (`cargo nextest list`, which builds what it lists) and the benches,
/// linted as they compile (see [`linted`]), and keeps the list and the workspace metadata, so
/// that the lanes run the tests without starting cargo.
fn test_build(alone: Option<&Isolation>) -> Result<()> {
    let mut list = linted();
    list.args(["nextest", "list", "--workspace", "--list-type", "binaries-only", "--message-format", "json"]);
    let mut list = isolated(alone, list);
    list.stderr(std::process::Stdio::inherit());
    to_lane_log(&mut list)?;
    let listed = list.stdout(std::process::Stdio::piped()).output().context("starting cargo nextest list")?;
    if !listed.status.success() {
        bail!("building the tests failed ({})", listed.status);
    }
    // Benches are no test target; built (dev profile, like the tests' dependencies) to be linted.
    let mut benches = linted();
    benches.args(["build", "--workspace", "--benches"]);
    run(&mut isolated(alone, benches))?;
    let metadata = Command::new("cargo")
        .args(["metadata", "--format-version", "1"])
        .current_dir(root())
        .output()
        .context("starting cargo metadata")?;
    if !metadata.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&metadata.stderr));
    }
    std::fs::create_dir_all(build_list(BINARIES).parent().expect("a folder"))?;
    std::fs::write(build_list(BINARIES), listed.stdout)?;
    std::fs::write(build_list(METADATA), metadata.stdout)?;
    Ok(())
}

/// A cargo command whose workspace crates compile through clippy's driver with `-D warnings`:
/// what `cargo clippy --workspace --all-targets -- -D warnings` checks, found while building
/// the tests instead of in a second pass that checks every dependency again (292 s of a cold
/// run and its own artifacts in target/).
fn linted() -> Command {
    let driver = Command::new("rustup")
        .args(["which", "clippy-driver"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "clippy-driver".into());
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .env("RUSTC_WORKSPACE_WRAPPER", driver)
        .env("CLIPPY_ARGS", "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__");
    cmd
}

/// `cmd`, inside the isolation when there is one.
fn isolated(alone: Option<&Isolation>, cmd: Command) -> Command {
    match alone {
        Some(alone) => alone.wrap(&cmd),
        None => cmd,
    }
}

const BINARIES: &str = "binaries.json";
const METADATA: &str = "cargo-metadata.json";

fn build_list(name: &str) -> std::path::PathBuf {
    root().join("target/xtask").join(name)
}

/// cargo-nextest over the test build's binaries (.config/nextest.toml: one process per test, one
/// pool). The harness and the e2e tests run the service binary this build made (`cargo test
/// --workspace` builds it with the `demo` feature e2e turns on): told so, the harness does not
/// build it again with other features, which rebuilt the backend mid-run and replaced the binary
/// under running tests.
fn nextest(alone: Option<&Isolation>, args: &[&str]) -> Result<()> {
    let binary = root().join("target/debug/pve-rebalancer");
    let mut cmd = Command::new("cargo");
    cmd.args(["nextest", "run", "--binaries-metadata"])
        .arg(build_list(BINARIES))
        .arg("--cargo-metadata")
        .arg(build_list(METADATA))
        .args(args)
        .env("COMPARE_CLI", binary)
        .current_dir(root());
    run(&mut isolated(alone, cmd))
}

/// The package test checks the packaging (files, unit, trigger, install and removal, the service
/// under its sandbox); the program in it is the debug build the tests just ran, so there is no
/// second (release) build of the dependency tree here. `cargo xtask deb` builds the release
/// package users install (without the test build's `demo` subcommand).
fn package() -> Result<()> {
    let binary = root().join("target/debug/pve-rebalancer");
    if !binary.exists() {
        bail!("{} is missing: the test build makes it", binary.display());
    }
    run(Command::new("bash").arg(root().join("debian/build.sh")).env("DEB_PREBUILT_BINARY", binary))?;
    // The service must really start under its unit's sandbox here (a booted systemd in a
    // throwaway container); where that cannot run, the package test fails instead of noting it.
    run(Command::new("bash").arg(root().join("tests/deb/run.sh")).env("PVE_REBALANCER_DEB_BOOT", "require"))
}

fn node_tests() -> Result<()> {
    run(Command::new("bash").arg(root().join("pve-integration/test/run.sh")))
}

/// Opened once by the stage others wait for, with its outcome.
#[derive(Default)]
struct Gate {
    outcome: Mutex<Option<bool>>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn open(&self, result: Result<()>) -> Result<()> {
        *self.outcome.lock().unwrap() = Some(result.is_ok());
        self.opened.notify_all();
        result
    }

    fn wait(&self) -> Result<()> {
        let outcome = self.opened.wait_while(self.outcome.lock().unwrap(), |o| o.is_none()).unwrap();
        match *outcome {
            Some(true) => Ok(()),
            _ => bail!("the stage this one waits for failed"),
        }
    }
}

type Stage<'a> = (&'static str, &'a (dyn Fn() -> Result<()> + Sync));

/// The wall time of each stage of a task, one line as each ends and a table with the total at
/// the end (also when a stage fails), so that a slow stage stands out in a CI log.
struct Stages {
    started: Instant,
    done: Mutex<Vec<(&'static str, Duration, bool)>>,
    /// One lane's whole log at a time on stderr.
    show: Mutex<()>,
}

impl Stages {
    fn new() -> Self {
        Stages { started: Instant::now(), done: Mutex::new(Vec::new()), show: Mutex::new(()) }
    }

    fn run(&self, name: &'static str, stage: impl FnOnce() -> Result<()>) -> Result<()> {
        let started = Instant::now();
        let result = stage();
        let took = started.elapsed();
        eprintln!("[xtask] stage {}", stage_line(name, took, result.is_ok()));
        self.done.lock().unwrap().push((name, took, result.is_ok()));
        if let Err(e) = &result {
            eprintln!("[xtask] {name}: {e:#}");
            self.summary();
        }
        result
    }

    /// Runs each lane's stages in order, the lanes side by side; fails if any stage failed.
    fn lanes(&self, lanes: &[&[Stage]]) -> Result<()> {
        let failed = std::thread::scope(|scope| {
            let handles: Vec<_> = lanes
                .iter()
                .enumerate()
                .map(|(i, lane)| scope.spawn(move || self.lane(i + 1, lane)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().expect("a lane panicked").err()).collect::<Vec<_>>()
        });
        if failed.is_empty() {
            return Ok(());
        }
        let what: Vec<String> = failed.iter().map(|e| format!("{e:#}")).collect();
        bail!("{} lane(s) failed:\n{}", failed.len(), what.join("\n"))
    }

    fn lane(&self, number: usize, stages: &[Stage]) -> Result<()> {
        let path = root().join(format!("target/xtask/lane-{number}.log"));
        std::fs::create_dir_all(path.parent().expect("a folder")).context("target/xtask")?;
        let log = File::create(&path).with_context(|| format!("{}", path.display()))?;
        LANE_LOG.with(|l| *l.borrow_mut() = Some(log));
        let mut result = Ok(());
        for (name, stage) in stages {
            let started = Instant::now();
            result = stage().with_context(|| format!("lane {number}, {name}"));
            let took = started.elapsed();
            eprintln!("[xtask] stage {} (lane {number})", stage_line(name, took, result.is_ok()));
            self.done.lock().unwrap().push((name, took, result.is_ok()));
            if result.is_err() {
                break;
            }
        }
        LANE_LOG.with(|l| *l.borrow_mut() = None);
        let _shown = self.show.lock().unwrap();
        eprintln!("[xtask] ---- lane {number} log ({}) ----", path.display());
        eprint!("{}", std::fs::read_to_string(&path).unwrap_or_default());
        eprintln!("[xtask] ---- end of lane {number} log ----");
        result
    }

    fn summary(&self) {
        eprintln!("[xtask] stage times (lanes overlap: their stages add up to more than the total):");
        for (name, took, ok) in self.done.lock().unwrap().iter() {
            eprintln!("[xtask]   {}", stage_line(name, *took, *ok));
        }
        eprintln!("[xtask]   {:<15} {:>7.1} s", "total", self.started.elapsed().as_secs_f64());
    }
}

fn stage_line(name: &str, took: Duration, ok: bool) -> String {
    format!("{name:<15} {:>7.1} s  {}", took.as_secs_f64(), if ok { "ok" } else { "FAILED" })
}

thread_local! {
    /// The log of the lane this thread runs, if any: commands started from it write there.
    static LANE_LOG: RefCell<Option<File>> = const { RefCell::new(None) };
}

/// A line for the user: into the current lane's log, else on stderr.
pub fn say(line: &str) {
    LANE_LOG.with(|l| match l.borrow_mut().as_mut() {
        Some(log) => {
            let _ = writeln!(log, "{line}");
        }
        None => eprintln!("{line}"),
    })
}

/// Points `cmd`'s output at the current lane's log (nothing outside a lane).
pub fn to_lane_log(cmd: &mut Command) -> Result<()> {
    LANE_LOG.with(|l| {
        if let Some(log) = l.borrow().as_ref() {
            cmd.stdout(log.try_clone()?).stderr(log.try_clone()?);
        }
        Ok(())
    })
}

/// Prints the free space and the size of `target/`, so that a CI log shows how close a run came
/// to filling its disk. Informational: never fails the task.
fn report_disk() {
    let out = |cmd: &mut Command| {
        cmd.current_dir(root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let free = out(Command::new("df").args(["-h", "--output=avail", "."]));
    let target = out(Command::new("du").args(["-sh", "target"]));
    let target = target.split_whitespace().next().unwrap_or("nothing");
    eprintln!("[xtask] disk: {} free, {target} in target/", free.trim());
}
