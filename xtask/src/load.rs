//! `cargo xtask load [--seconds N] [--rate R]`: HTTP load on `GET /api/v1/cluster` from a second
//! process (`wrk`), against the release `pve-rebalancer serve` in front of the release simulator
//! (demo scenario), all on loopback. The backend's resident memory (`VmRSS`) is sampled before,
//! every second during, and after the run, to show it stays flat.
//!
//! wrk has no fixed-rate mode (that is wrk2), so the Lua script paces each connection with
//! `delay()`: `connections × 1000 / rate` ms between its requests, which caps the offered rate at
//! `rate`; the achieved rate is what wrk reports. Results go to stdout, for docs/BENCHMARKS.md.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b";
const CONNECTIONS: u32 = 8;

/// Kills the wrapped child when dropped, so an error path leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn load(seconds: u64, rate: u32, debug: bool) -> Result<()> {
    let root = super::root();
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed: run xtask/setup.sh (Debian package wrk)");
    }
    // `--debug` measures the debug build (quicker to get while release builds queue; slower code).
    let profile: &[&str] = if debug { &[] } else { &["--release"] };
    super::run(Command::new("cargo").arg("build").args(profile).args([
        "-p",
        "pve-sim",
        "-p",
        "pve-rebalancer",
    ]))?;
    let work = root.join("target/load");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let bin = root.join(if debug { "target/debug" } else { "target/release" });
    let ca = work.join("sim-ca.pem");
    let (sim, sim_url) = super::start_and_wait(
        Command::new(bin.join("pve-sim"))
            .arg("--scenario")
            .arg(root.join("tests/pve-sim/scenarios/demo.yaml"))
            .args(["--port", "0"])
            .arg("--ca-out")
            .arg(&ca),
        "pve-sim listening on",
    )?;
    let _sim = Reaped(sim);
    let (backend, url) = super::start_and_wait(
        Command::new(bin.join("pve-rebalancer"))
            .args(["serve", "--pve-url", &sim_url, "--listen", "127.0.0.1:0", "--user", "root@pam"])
            .arg("--pve-ca")
            .arg(&ca)
            .arg("--journal")
            .arg(work.join("journal.sqlite"))
            .arg("--lock-dir")
            .arg(work.join("lock"))
            .env("PVE_REBALANCER_PASSWORD", "demo")
            .env("RUST_LOG", "warn"),
        "pve-rebalancer listening on",
    )?;
    let pid = backend.id();
    let _backend = Reaped(backend);
    let target = format!("{url}/api/v1/cluster");

    // One authenticated call first: fails loudly on a broken set-up instead of measuring 401s.
    let probe = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Authorization: {TOKEN}"),
            &target,
        ])
        .output()
        .context("curl (to check the set-up)")?;
    let code = String::from_utf8_lossy(&probe.stdout).into_owned();
    if code != "200" {
        bail!("GET {target} answered {code}, not 200: the load would measure errors");
    }

    let script = work.join("cluster.lua");
    let delay_ms = f64::from(CONNECTIONS) * 1000.0 / f64::from(rate.max(1));
    std::fs::write(
        &script,
        format!(
            "-- paces each of the {CONNECTIONS} connections to {rate} req/s in total\n\
             wrk.headers[\"Authorization\"] = \"{TOKEN}\"\n\
             function delay() return {delay_ms:.3} end\n"
        ),
    )?;

    let rss_before = rss_kib(pid).context("reading the backend's VmRSS")?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, done) = (samples.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    samples.lock().expect("samples").push(kib);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let shown = format!(
        "wrk -t2 -c{CONNECTIONS} -d{seconds}s --latency -s {} {target}",
        rel(&script, &root).display()
    );
    eprintln!("[xtask] {shown}");
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(&script)
        .arg(&target)
        .output()
        .context("running wrk")?;
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    // Let anything deferred (connection teardown, caches) settle before the last reading.
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(pid).context("reading the backend's VmRSS")?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {}\n{report}", String::from_utf8_lossy(&out.stderr));
    }
    println!("{report}");
    let field = |label: &str| {
        report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    let samples = samples.lock().expect("samples").clone();
    let (lo, hi) = (samples.iter().min().copied().unwrap_or(0), samples.iter().max().copied().unwrap_or(0));
    let errors = report.lines().find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    println!("build:     {}", if debug { "debug" } else { "release" });
    println!("command:   {shown}");
    println!("offered:   {rate} req/s ({CONNECTIONS} connections, {delay_ms:.1} ms apart each)");
    println!("achieved:  {} req/s", field("Requests/sec:"));
    println!("latency:   p50 {}  p90 {}  p99 {}", field("50%"), field("90%"), field("99%"));
    println!(
        "VmRSS:     before {rss_before} KiB, during {lo}–{hi} KiB ({} samples), after {rss_after} KiB",
        samples.len()
    );
    println!("errors:    {}", errors.map_or("none", str::trim));
    Ok(())
}

fn rel<'a>(p: &'a Path, root: &Path) -> &'a Path {
    p.strip_prefix(root).unwrap_or(p)
}
