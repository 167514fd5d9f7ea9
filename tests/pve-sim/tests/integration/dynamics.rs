//! Time-varying load (diurnal curve, noise, bursts) on a real-time, scaled or stepped clock,
//! and the RRD history generated from it. No wall-clock timings are asserted.

use crate::common::*;
use pve_sim::{RunningSim, Scenario, SimConfig};

fn diurnal() -> Scenario {
    Scenario::from_file(&pve_sim::demo_scenario_path().with_file_name("diurnal.yaml")).expect("diurnal.yaml")
}

async fn start(sc: Scenario, clock_rate: f64) -> RunningSim {
    let mut cfg = SimConfig::new(sc);
    cfg.time_scale = 1000.0;
    cfg.clock_rate = clock_rate;
    pve_sim::start(cfg).await.expect("starts")
}

fn node_cpu(sim: &RunningSim, node: &str) -> f64 {
    sim.with_cluster(|c| c.usage_map()[node].cpu)
}

#[tokio::test]
async fn stepped_clock_walks_a_week_of_diurnal_load() {
    // Random bursts key on the absolute simulated time, which starts at the wall clock: one can
    // land on 103 just when this test checks that its scheduled burst has ended.
    let mut sc = diurnal();
    sc.dynamics.as_mut().expect("dynamics").random_bursts = None;
    let sim = start(sc, 0.0).await;
    let s = Session::root(&sim).await;
    // stepped: the clock stands still between advances
    let t0 = sim.now();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert_eq!(sim.now(), t0);
    // the one-off burst of 103 (600 s after start) shows in the API
    sim.advance_clock(660.0);
    let g = s.data("/nodes/pve2/qemu/103/status/current").await;
    assert!(g["cpu"].as_f64().unwrap() >= 0.99, "{g}");
    assert!(g["mem"].as_f64().unwrap() >= 0.9 * g["maxmem"].as_f64().unwrap(), "{g}");
    sim.advance_clock(600.0);
    let g = s.data("/nodes/pve2/qemu/103/status/current").await;
    assert!(g["cpu"].as_f64().unwrap() < 0.9, "{g}");

    // one simulated week in hourly steps (bounded): load varies, a migration completes meanwhile
    let mut samples = Vec::new();
    let (st, v) = s.post("/nodes/pve1/qemu/101/migrate", &[("target", "pve3"), ("online", "1")]).await;
    assert_eq!(st, 200, "{v}");
    for _ in 0..(7 * 24) {
        sim.advance_clock(3600.0);
        samples.push(node_cpu(&sim, "pve1"));
        assert!(sim.check_invariants().is_ok(), "{:?}", sim.check_invariants());
    }
    assert_eq!(sim.guest_node(101).as_deref(), Some("pve3"));
    let (lo, hi) = samples.iter().fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
    assert!(hi > lo * 1.5, "diurnal swing expected: {lo}..{hi}");
    assert!((sim.now() - t0 - 7.0 * 86400.0 - 1260.0).abs() < 1.0);
    sim.shutdown().await;
}

#[tokio::test]
async fn scaled_clock_runs_fast_but_tickets_follow_real_time() {
    let sim = start(diurnal(), 100_000.0).await;
    let s = Session::root(&sim).await;
    let t0 = sim.now();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // ≥ 0.2 s × 100000 = 5.5 simulated hours passed: longer than the 2 h ticket lifetime…
    assert!(sim.now() - t0 >= 15_000.0);
    // …but the ticket is still valid, because authentication uses the unscaled clock
    let (st, _) = s.get("/cluster/resources").await;
    assert_eq!(st, 200);
    // switch to stepped, then back to real time, over /_sim/clock
    let c = client(&sim);
    let clock = format!("{}/_sim/clock", sim.base_url);
    let v: serde_json::Value = c
        .post(&clock)
        .json(&serde_json::json!({"mode": "stepped"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["mode"], "stepped");
    let v: serde_json::Value = c
        .post(&clock)
        .json(&serde_json::json!({"rate": 1, "advance": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["mode"], "real");
    assert_eq!(v["task_divisor"], 1000.0);
    let r = c.post(&clock).json(&serde_json::json!({"rate": -1})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    sim.shutdown().await;
}

fn ratio(rows: &serde_json::Value, key: &str) -> f64 {
    let xs: Vec<f64> = rows.as_array().unwrap().iter().filter_map(|r| r[key].as_f64()).collect();
    let lo = xs.iter().cloned().fold(f64::MAX, f64::min);
    let hi = xs.iter().cloned().fold(0.0, f64::max);
    hi / lo.max(1e-9)
}

#[tokio::test]
async fn rrd_history_follows_the_curves() {
    let sim = start(diurnal(), 1.0).await;
    let s = Session::root(&sim).await;
    let day = s.data("/nodes/pve1/rrddata?timeframe=day&cf=AVERAGE").await;
    assert_eq!(day.as_array().unwrap().len(), 1440);
    assert!(ratio(&day, "cpu") > 1.5, "node cpu over a day should swing");
    let max = s.data("/nodes/pve1/rrddata?timeframe=day&cf=MAX").await;
    let avg_sum: f64 = day.as_array().unwrap().iter().map(|r| r["cpu"].as_f64().unwrap()).sum();
    let max_sum: f64 = max.as_array().unwrap().iter().map(|r| r["cpu"].as_f64().unwrap()).sum();
    assert!(max_sum >= avg_sum);
    let week = s.data("/nodes/pve2/rrddata?timeframe=week&cf=AVERAGE").await;
    assert!(ratio(&week, "cpu") > 1.5);
    let g = s.data("/nodes/pve1/qemu/100/rrddata?timeframe=day&cf=AVERAGE").await;
    assert!(ratio(&g, "cpu") > 1.5);
    sim.shutdown().await;

    // without dynamics the history stays flat apart from the small noise
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let day = s.data("/nodes/pve1/rrddata?timeframe=day&cf=AVERAGE").await;
    assert!(ratio(&day, "cpu") < 1.3);
    sim.shutdown().await;
}

#[test]
fn bad_dynamics_are_rejected() {
    let y = std::fs::read_to_string(pve_sim::demo_scenario_path().with_file_name("diurnal.yaml")).unwrap();
    assert!(Scenario::from_yaml(&y.replace("diurnal_amplitude: 0.6", "diurnal_amplitude: 1.6")).is_err());
    assert!(Scenario::from_yaml(&y.replace("vmid: 103, start_s", "vmid: 999, start_s")).is_err());
    assert!(Scenario::from_yaml(&y.replace("every_s: 86400", "every_s: 60")).is_err());
    assert!(Scenario::from_yaml(&y.replace("noise: 0.15", "nosie: 0.15")).is_err());
}

/// The diurnal scenario with db-01 (102, 24 GiB at 80 %) on pve2 until 30 h ago, then on pve1.
fn with_past_migration() -> Scenario {
    let mut sc = diurnal();
    sc.dynamics.as_mut().expect("dynamics").random_bursts = None;
    sc.past_migrations = vec![pve_sim::PastMigrationSpec { vmid: 102, from: "pve2".into(), hours_ago: 30.0 }];
    sc
}

fn mean_mem(rows: &serde_json::Value, from: i64, to: i64) -> f64 {
    let xs: Vec<f64> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| (from..to).contains(&r["time"].as_i64().unwrap()))
        .map(|r| r["memused"].as_f64().unwrap())
        .collect();
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

#[tokio::test]
async fn past_migrations_are_tasks_and_move_the_history() {
    let sim = start(with_past_migration(), 0.0).await;
    let s = Session::root(&sim).await;
    let now = sim.now() as i64;
    let tasks = s.data("/cluster/tasks").await;
    let m = tasks.as_array().unwrap().iter().find(|t| t["type"] == "qmigrate").expect("the past migration");
    assert_eq!(
        (m["id"].as_str(), m["node"].as_str(), m["status"].as_str()),
        (Some("102"), Some("pve2"), Some("OK"))
    );
    let end = m["endtime"].as_i64().unwrap();
    assert!((now - 30 * 3600 - end).abs() < 120, "ended about 30 h ago: {end} vs now {now}");

    // db-01 uses ~19 GiB: pve2 carried it before the migration, pve1 after (6 h either side)
    let gib = 1024.0f64.powi(3);
    let (before, after) = ((end - 12 * 3600, end - 3600), (end + 3600, end + 12 * 3600));
    let week1 = s.data("/nodes/pve1/rrddata?timeframe=week&cf=AVERAGE").await;
    let week2 = s.data("/nodes/pve2/rrddata?timeframe=week&cf=AVERAGE").await;
    let gain1 = (mean_mem(&week1, after.0, after.1) - mean_mem(&week1, before.0, before.1)) / gib;
    let loss2 = (mean_mem(&week2, before.0, before.1) - mean_mem(&week2, after.0, after.1)) / gib;
    assert!(gain1 > 12.0 && loss2 > 12.0, "pve1 gained {gain1:.1} GiB, pve2 lost {loss2:.1} GiB");
    sim.shutdown().await;
}

#[test]
fn bad_past_migrations_are_rejected_by_name() {
    let mut sc = with_past_migration();
    sc.past_migrations[0].from = "pve1".into();
    let e = Scenario::from_yaml(&sc.to_yaml().unwrap()).unwrap_err().to_string();
    assert!(e.contains("same node"), "{e}");
    sc.past_migrations[0].from = "nope".into();
    let e = Scenario::from_yaml(&sc.to_yaml().unwrap()).unwrap_err().to_string();
    assert!(e.contains("not a node"), "{e}");
}
