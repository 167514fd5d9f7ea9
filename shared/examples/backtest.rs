//! The back-test's replay time: `days` of hourly history for a generated cluster, replayed
//! hourly with the default policy as the scheduler runs it (20 moves per run), then with an
//! uncapped eager one, each timed alone (one core): `cargo run -p shared --release --example backtest -- NODES GUESTS DAYS`.

use shared::backtest::{self, BacktestRequest, NamedPolicy, Resource};
use shared::plan::PlanRequest;
use shared::policy::{PolicyLayer, Settings};
use std::time::Instant;

fn policy(name: &str, layer: PolicyLayer) -> NamedPolicy {
    let mut settings = Settings::default();
    layer.overlay(&mut settings, &mut Default::default(), shared::policy::Source::Request);
    let mut request = PlanRequest::default();
    settings.apply_to(&mut request);
    NamedPolicy { name: name.into(), request }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (nodes, guests, days) = match args[..] {
        [n, g, d] => (n, g, d as u32),
        _ => (32, 3000, 7),
    };
    let t = Instant::now();
    let history = shared::testkit::history(42, nodes, guests, days);
    let built = t.elapsed();
    println!(
        "{nodes} nodes × {guests} guests, {days} days hourly ({} samples), history built in {built:.2?}",
        history.times.len()
    );
    let eager = PolicyLayer { balanciness: Some(3.0), max_moves: Some(0), ..Default::default() };
    for p in [policy("default", PolicyLayer::default()), policy("eager", eager)] {
        let request = BacktestRequest {
            interval_secs: 3600,
            memory_threshold: 85.0,
            cpu_threshold: 85.0,
            spread_on: Resource::Memory,
            policies: vec![p],
        };
        let t = Instant::now();
        let report = backtest::run(&history, &request).expect("a valid history");
        let took = t.elapsed();
        let nobody = &report.runs[0];
        let r = &report.runs[2];
        println!(
            "{:<8} replay {took:>8.2?}  moves {:>5}  GiB {:>6.0}  spread mean {:>5.1} (nobody {:>5.1}) worst {:>5.1}  reversals {:>3}  hard {}",
            r.name, r.migrations, r.gib_moved, r.spread_mean, nobody.spread_mean, r.spread_worst, r.reversals_24h, r.hard_violations
        );
    }
}
