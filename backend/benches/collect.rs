//! Collection benchmark (not a test): wall time and PVE calls of `collect::snapshot` at 32 nodes
//! × 3,000 guests with 5 ms of simulated latency on every API call.
//!
//! `cargo bench -p pve-rebalancer --bench collect` (optional: `-- NODES GUESTS LATENCY_MS RUNS`).
//! Prints one line per run and a summary; the numbers go into docs/BENCHMARKS.md ("Collection").

use backend::collect;
use backend::pve::{Credentials, PveClient, PveOptions};
use pve_sim::FaultSpec;
use std::time::{Duration, Instant};

fn arg(i: usize, default: u64) -> u64 {
    // `cargo bench` passes `--bench` first; numbers are read from the arguments that parse.
    let nums: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    nums.get(i).copied().unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (nodes, guests, latency, runs) = (arg(0, 32), arg(1, 3000), arg(2, 5), arg(3, 20));
    let mut sc = pve_sim::generate(1, nodes as usize, guests as usize);
    // Local storages holding guest volumes: listed once per node (the local disk sizes).
    let local = sc
        .effective_storages()
        .iter()
        .filter(|s| !s.shared && s.content.split(',').any(|c| c == "images" || c == "rootdir"))
        .count() as u64;
    let demo = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    sc.users = demo.users;
    sc.acls = demo.acls;
    let sim = pve_sim::start(pve_sim::SimConfig::new(sc)).await.expect("simulator");
    let pve = PveClient::new(PveOptions {
        base_url: sim.base_url.clone(),
        credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
        ca_pem: Some(sim.ca_pem.clone()),
        insecure: false,
        timeout: Duration::from_secs(30),
    })
    .expect("client");
    // Log in and warm the connection pool outside the measurement.
    collect::snapshot(&pve, 0).await.expect("warm-up");
    sim.arm_fault(&FaultSpec::Latency { ms: latency, path_prefix: None }).expect("latency");
    let mut times = Vec::new();
    let mut calls = Vec::new();
    for run in 1..=runs {
        let before = sim.request_count();
        let t = Instant::now();
        let snap = collect::snapshot(&pve, run).await.expect("snapshot");
        let dt = t.elapsed();
        let n = sim.request_count() - before;
        assert_eq!((snap.nodes.len(), snap.guests.len()), (nodes as usize, guests as usize));
        println!("run {run:>2}: {:>7.1} ms, {n} calls", dt.as_secs_f64() * 1e3);
        times.push(dt.as_secs_f64() * 1e3);
        calls.push(n);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((p / 100.0 * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    println!(
        "collect {nodes} nodes x {guests} guests, {latency} ms/call, {runs} runs: median {:.1} ms, \
         p95 {:.1} ms, min {:.1} ms, max {:.1} ms; calls per run {}..={} (bound 5 + nodes × (1 + \
         {local} local storages + 3 on PVE 9) = {})",
        pct(50.0),
        pct(95.0),
        times[0],
        times[times.len() - 1],
        calls.iter().min().unwrap(),
        calls.iter().max().unwrap(),
        5 + nodes * (1 + local + 3)
    );
    sim.shutdown().await;
}
