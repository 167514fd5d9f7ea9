//! `cargo xtask <task>`: the project's tasks, so that the README needs two commands.
//!
//! - `setup`     install what is not a crate (Debian packages, trunk, wasm-bindgen-cli, venv)
//! - `frontend`  build the panel with trunk into `frontend/dist` (`--optimize`: immediate-abort
//!   panics and wasm-opt -Oz on both modules, the shipped build, which fails when the module the
//!   page loads first is over the 350 KB gzip budget; the what-if worker's module is reported;
//!   `deb` builds it too and only warns over the budget)
//! - `test`      set up, fmt, build the panel and the tests (linted with clippy as they compile),
//!   run every test (with nothing beside the repository, see `isolation.rs`), the PVE UI tests and
//!   the package test; prints each stage's wall time and the total
//! - `self-contained`  the lone-clone guard alone: no tracked file points outside the repository,
//!   and pve-sim's schema tests pass in a copy of the tracked tree with nothing beside it
//! - `demo`      set up, build, start the simulator and the backend, print the panel's URL
//! - `screenshots` every panel view, light and dark, into `docs/screenshots/`
//! - `bench`     side by side with ProxLB 2.3; rewrites that section of docs/BENCHMARKS.md
//! - `fuzz`      the libFuzzer targets in `fuzz/` for N seconds each (`--seconds`, default 60)
//! - `load`      wrk on `GET /api/v1/cluster` at a paced rate, backend RSS sampled (`--seconds`, `--rate`)
//! - `deb`       build the Debian package into `target/deb/`; the panel is shrunk by wasm-opt
//!   unless `--no-optimize` (installs binaryen 116's wasm-opt once, ~15 min)
//!
//! Every task is idempotent and quick when already done.

mod fuzz;
mod isolation;
mod load;
mod screenshots;
mod selfcontained;
mod testrun;

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    match args.first().map(String::as_str) {
        Some("setup") => setup(flag("--with-wasm-opt")),
        Some("frontend") => frontend(flag("--optimize")).and_then(|()| match flag("--optimize") {
            true => check_panel_budget(),
            false => Ok(()),
        }),
        Some("test") => testrun::test(),
        Some("self-contained") => selfcontained::check(&root()),
        Some("deb") => deb(!flag("--no-optimize")),
        Some("bench") => bench(),
        Some("screenshots") => screenshots::screenshots(),
        Some("fuzz") => fuzz::fuzz(number(&args, "--seconds", 60)),
        Some("load") => {
            load::load(number(&args, "--seconds", 30), number(&args, "--rate", 500) as u32, flag("--debug"))
        }
        Some("demo") => {
            demo(args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)).map(String::as_str))
        }
        _ => {
            eprintln!("usage: cargo xtask <setup [--with-wasm-opt] | frontend [--optimize] | test | self-contained | demo [--port N] | deb [--no-optimize] | bench | screenshots | load [--seconds N] [--rate R] [--debug] | fuzz [--seconds N]>");
            std::process::exit(2)
        }
    }
}

/// The value after `name` (e.g. `--seconds 30`), or `default`.
fn number(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

/// Runs a command in the workspace root, failing with its command line if it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    testrun::say(&format!("[xtask] {shown}"));
    testrun::to_lane_log(cmd)?;
    let status = cmd.current_dir_if_unset(&root()).status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

trait CurrentDir {
    fn current_dir_if_unset(&mut self, dir: &Path) -> &mut Self;
}

impl CurrentDir for Command {
    fn current_dir_if_unset(&mut self, dir: &Path) -> &mut Self {
        if self.get_current_dir().is_none() {
            self.current_dir(dir);
        }
        self
    }
}

fn setup(with_wasm_opt: bool) -> Result<()> {
    let mut cmd = setup_script();
    if with_wasm_opt {
        cmd.env("WITH_WASM_OPT", "1");
    }
    run(&mut cmd)
}

/// `bash xtask/setup.sh` (its variables select what it does).
fn setup_script() -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("xtask/setup.sh"));
    cmd
}

/// Builds the panel with trunk, through Debian's cargo (build-std for wasm32).
fn frontend(optimize: bool) -> Result<()> {
    let web_bin = Path::new("/opt/rust-web/bin");
    if !web_bin.join("rust-lld").exists() {
        bail!("the wasm toolchain is not set up: run `cargo xtask setup` first");
    }
    let path = format!(
        "{}:{}:{}",
        web_bin.display(),
        home().join(".cargo/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(home().join(".cargo/bin/trunk"));
    cmd.args(["build", "--release"])
        .current_dir(root().join("frontend"))
        .env("PATH", path)
        .env("RUSTC_BOOTSTRAP", "1")
        // Rustup's variables would point Debian's cargo at the wrong rustc.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("CARGO")
        .env_remove("RUSTDOC")
        .env_remove("CARGO_TARGET_DIR");
    if optimize {
        // The shipped (size-budgeted) build: a panic aborts without formatting its message
        // (9.5 KB gzip, docs/BENCHMARKS.md). The development and test build keeps the message
        // (console_error_panic_hook) to debug with.
        cmd.env("CARGO_UNSTABLE_PANIC_IMMEDIATE_ABORT", "true")
            .env("CARGO_PROFILE_RELEASE_PANIC", "immediate-abort");
    }
    run(&mut cmd)?;
    if optimize {
        for wasm in [panel_wasm(), worker_wasm()] {
            run(Command::new(home().join(".cargo/bin/wasm-opt")).arg("-Oz").arg(&wasm).arg("-o").arg(&wasm))?;
        }
    }
    Ok(())
}

/// The module the panel page loads.
fn panel_wasm() -> PathBuf {
    root().join("frontend/dist/frontend_bg.wasm")
}

/// The what-if worker's module, loaded at the first what-if (frontend/src/whatif.rs).
fn worker_wasm() -> PathBuf {
    root().join("frontend/dist/whatif_bg.wasm")
}

/// The panel issue's budget for the module the page loads first, measured as docs/BENCHMARKS.md
/// does (`gzip -9 -c frontend_bg.wasm | wc -c`). The what-if worker's module is loaded only when
/// a what-if is asked for: its size is printed, not budgeted.
const PANEL_BUDGET_GZIP: u64 = 350_000;

/// Prints both modules' sizes; fails when the first-load module is over the budget. `cargo xtask
/// frontend --optimize` fails with it; `cargo xtask deb` only warns, so an admin can still build
/// the package while the panel is over.
fn check_panel_budget() -> Result<()> {
    let size = |wasm: &Path| -> Result<(u64, u64)> {
        let raw = std::fs::metadata(wasm).with_context(|| format!("{}", wasm.display()))?.len();
        Ok((raw, gzip_size(wasm)?))
    };
    let (raw, gz) = size(&panel_wasm())?;
    let (worker_raw, worker_gz) = size(&worker_wasm())?;
    println!(
        "[xtask] frontend_bg.wasm (first load): {raw} B raw, {gz} B gzip -9 (budget {PANEL_BUDGET_GZIP} B)"
    );
    println!("[xtask] whatif_bg.wasm (what-if worker, loaded at first use): {worker_raw} B raw, {worker_gz} B gzip -9");
    if gz > PANEL_BUDGET_GZIP {
        bail!(
            "the panel's first-load module is {gz} B gzip -9, over its {PANEL_BUDGET_GZIP} B budget (docs/BENCHMARKS.md, Panel)"
        );
    }
    Ok(())
}

fn gzip_size(path: &Path) -> Result<u64> {
    let out = Command::new("gzip").args(["-9", "-c"]).arg(path).output().context("gzip")?;
    if !out.status.success() {
        bail!("gzip -9 -c {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout.len() as u64)
}

/// Side by side with ProxLB 2.3 (needs the venv); rewrites that section of docs/BENCHMARKS.md.
fn bench() -> Result<()> {
    setup(false)?;
    run(Command::new("cargo").args([
        "run",
        "--release",
        "-p",
        "compare",
        "--",
        "--out",
        "docs/BENCHMARKS.md",
    ]))
}

/// Builds the Debian package into target/deb/ (builds the panel first).
fn deb(optimize: bool) -> Result<()> {
    if optimize {
        setup(true)?;
    }
    frontend(optimize)?;
    if optimize {
        if let Err(e) = check_panel_budget() {
            eprintln!("[xtask] warning: {e}");
        }
    }
    run(Command::new("bash").arg(root().join("debian/build.sh")))
}

/// Starts `cmd`, waits (bounded) for its line starting with `prefix`, returns the child and the
/// rest of that line.
fn start_and_wait(cmd: &mut Command, prefix: &str) -> Result<(Child, String)> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(&wanted) {
                let _ = tx.send(rest.trim().to_owned());
            } else {
                println!("{line}");
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => Ok((child, rest)),
        Err(_) => {
            let _ = child.kill();
            bail!("{shown} did not report `{prefix}` within 60 s")
        }
    }
}

fn demo(port: Option<&str>) -> Result<()> {
    setup(false)?;
    frontend(false)?;
    run(Command::new("cargo").args(["build", "-p", "pve-sim", "-p", "pve-rebalancer"]))?;
    let work = root().join("target/demo");
    std::fs::create_dir_all(&work)?;
    let ca = work.join("sim-ca.pem");
    let bin = root().join("target/debug");
    let (mut sim, sim_url) = start_and_wait(
        Command::new(bin.join("pve-sim"))
            .arg("--scenario")
            .arg(root().join("tests/pve-sim/scenarios/demo.yaml"))
            .arg("--port")
            .arg("0")
            .arg("--ca-out")
            .arg(&ca)
            // The simulator signs CSRF tokens as PVE does; the service verifies with this key.
            .arg("--csrf-key-out")
            .arg(work.join("sim-www.key"))
            // Migrations of tens of GiB take seconds, not minutes, so the demo's progress is watchable.
            .args(["--time-scale", "20"]),
        "pve-sim listening on",
    )?;
    let listen = format!("127.0.0.1:{}", port.unwrap_or("8017"));
    let backend = start_and_wait(
        Command::new(bin.join("pve-rebalancer"))
            .args(["serve", "--pve-url", &sim_url, "--listen", &listen, "--user", "root@pam"])
            .arg("--pve-ca")
            .arg(&ca)
            .arg("--panel-dir")
            .arg(root().join("frontend/dist"))
            // The demo's execution journal and cluster lock live in target/, not /var/lib and /etc/pve.
            .arg("--journal")
            .arg(work.join("journal.sqlite"))
            .arg("--lock-dir")
            .arg(work.join("lock"))
            // Settings and maintenance marks in target/ too, never the machine's /etc/pve.
            .arg("--state-dir")
            .arg(work.join("state"))
            .arg("--csrf-key")
            .arg(work.join("sim-www.key"))
            .env("PVE_REBALANCER_PASSWORD", "demo"),
        "pve-rebalancer listening on",
    );
    let (mut backend, url) = match backend {
        Ok(b) => b,
        Err(e) => {
            let _ = sim.kill();
            return Err(e);
        }
    };
    println!("\n  Simulated PVE cluster: {sim_url}  (root@pam / demo)");
    println!("  Rebalancing panel:     {url}/\n\n  Press Ctrl-C to stop.\n");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    while !stop.load(Ordering::SeqCst) {
        if let Some(status) = sim.try_wait()? {
            eprintln!("the simulator exited ({status})");
            break;
        }
        if let Some(status) = backend.try_wait()? {
            eprintln!("the backend exited ({status})");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = backend.kill();
    let _ = sim.kill();
    let _ = backend.wait();
    let _ = sim.wait();
    Ok(())
}
