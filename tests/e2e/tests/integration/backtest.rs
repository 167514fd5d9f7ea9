//! The back-test end to end: the simulator serves a week of diurnal RRD history and two past
//! migrations; `pve-rebalancer backtest --json` imports it and replays the effective policy and
//! two policy files. The report's figures are then recomputed here from the simulator's own RRD
//! rows and the report's moves (never from the replay's numbers): spread per sample, node-hours
//! over the thresholds, GiB moved, and the actual placement from the task log.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MEMORY_THRESHOLD: f64 = 45.0;
const CPU_THRESHOLD: f64 = 40.0;

pub(crate) fn scenario() -> pve_sim::Scenario {
    let path = pve_sim::demo_scenario_path().with_file_name("diurnal.yaml");
    let mut sc = pve_sim::Scenario::from_file(&path).expect("diurnal.yaml");
    sc.past_migrations = vec![
        pve_sim::PastMigrationSpec { vmid: 102, from: "pve2".into(), hours_ago: 100.0 },
        pve_sim::PastMigrationSpec { vmid: 106, from: "pve1".into(), hours_ago: 30.0 },
    ];
    sc
}

fn config(host: &str, ca: &str) -> String {
    format!(
        "proxmox_api: {{hosts: ['{host}'], user: root@pam, pass: demo}}\n\
         balancing: {{balanciness: 10, method: memory, memory_threshold: {MEMORY_THRESHOLD}, cpu_threshold: {CPU_THRESHOLD}}}\n\
         rebalancer: {{ca_file: '{ca}'}}\n"
    )
}

async fn backtest(work: &std::path::Path, sim: &pve_sim::RunningSim) -> (Value, String) {
    let w = |p: &str| work.join(p).display().to_string();
    let args = [
        "backtest",
        "--days",
        "7",
        "--json",
        "-c",
        &w("proxlb.yaml"),
        "--state-dir",
        &w("state"),
        "--cache-dir",
        &w("cache"),
        "--pve-url",
        &sim.base_url,
        "--pve-ca",
        &w("ca.pem"),
        "--policy",
        &w("eager.yaml"),
        "--policy",
        &w("calm.yaml"),
        "--calls-per-sec",
        "50",
    ];
    let out = tokio::process::Command::new(e2e::service_binary())
        .args(args)
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", "demo")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out).await.expect("in time").expect("runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "backtest failed: {stdout}{stderr}");
    (serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")), stderr.into_owned())
}

/// Sample time → (cpu cores, memory bytes), as the simulator's RRD rows say.
type Rows = BTreeMap<u64, (f64, f64)>;

/// The simulator's own series: per node (rows, cpus, memory bytes) and per guest.
struct Truth {
    nodes: BTreeMap<String, (Rows, f64, f64)>,
    guests: BTreeMap<u32, Rows>,
    /// (vmid, source node, end time) of the past migrations.
    moves: Vec<(u32, String, u64)>,
    now_on: BTreeMap<u32, String>,
}

async fn truth(sim: &pve_sim::RunningSim) -> Truth {
    let pve = e2e::pve_client(sim, &sim.base_url, Duration::from_secs(30));
    let rows = |v: Vec<Value>, mem: &str| -> Rows {
        v.iter()
            .map(|r| {
                let cores = r["cpu"].as_f64().unwrap() * r["maxcpu"].as_f64().unwrap();
                (r["time"].as_u64().unwrap(), (cores, r[mem].as_f64().unwrap()))
            })
            .collect()
    };
    let mut t =
        Truth { nodes: BTreeMap::new(), guests: BTreeMap::new(), moves: vec![], now_on: BTreeMap::new() };
    for node in ["pve1", "pve2", "pve3"] {
        let v: Vec<Value> =
            pve.get(&format!("/nodes/{node}/rrddata?timeframe=week&cf=AVERAGE")).await.unwrap();
        let (cpus, mem) = (v[0]["maxcpu"].as_f64().unwrap(), v[0]["memtotal"].as_f64().unwrap());
        t.nodes.insert(node.into(), (rows(v, "memused"), cpus, mem));
    }
    let resources: Vec<Value> = pve.get("/cluster/resources?type=vm").await.unwrap();
    for r in &resources {
        let (vmid, node, kind) =
            (r["vmid"].as_u64().unwrap() as u32, r["node"].as_str().unwrap(), r["type"].as_str().unwrap());
        let v: Vec<Value> =
            pve.get(&format!("/nodes/{node}/{kind}/{vmid}/rrddata?timeframe=week&cf=AVERAGE")).await.unwrap();
        t.guests.insert(vmid, rows(v, "mem"));
        t.now_on.insert(vmid, node.into());
    }
    let tasks: Vec<Value> = pve.get("/cluster/tasks").await.unwrap();
    for task in tasks.iter().filter(|x| x["type"] == "qmigrate" || x["type"] == "vzmigrate") {
        let vmid = task["id"].as_str().unwrap().parse().unwrap();
        t.moves.push((vmid, task["node"].as_str().unwrap().into(), task["endtime"].as_u64().unwrap()));
    }
    t
}

impl Truth {
    fn actual_node(&self, vmid: u32, t: u64) -> String {
        let mut later: Vec<&(u32, String, u64)> =
            self.moves.iter().filter(|m| m.0 == vmid && m.2 > t).collect();
        later.sort_by_key(|m| m.2);
        later.first().map_or_else(|| self.now_on[&vmid].clone(), |m| m.1.clone())
    }

    /// Per node (cpu %, memory %) at `t` with guests on `place`: recorded node use minus the
    /// guests really there plus the guests placed there.
    fn percents(&self, t: u64, place: &BTreeMap<u32, String>) -> BTreeMap<String, (f64, f64)> {
        let mut out = BTreeMap::new();
        for (node, (series, cpus, mem_total)) in &self.nodes {
            let (mut cpu, mut mem) = series[&t];
            for (vmid, g) in &self.guests {
                let (gc, gm) = g[&t];
                if self.actual_node(*vmid, t) == *node {
                    (cpu, mem) = (cpu - gc, mem - gm);
                }
                if place[vmid] == *node {
                    (cpu, mem) = (cpu + gc, mem + gm);
                }
            }
            out.insert(node.clone(), (cpu.max(0.0) / cpus * 100.0, mem.max(0.0) / mem_total * 100.0));
        }
        out
    }
}

/// Placement at `t` of a run: the actual one at the start, then the run's moves up to `t`
/// (the "actual" run: the task log's placement at `t`).
fn placement(truth: &Truth, run: &Value, t0: u64, t: u64) -> BTreeMap<u32, String> {
    if run["kind"] == "actual" {
        return truth.guests.keys().map(|v| (*v, truth.actual_node(*v, t))).collect();
    }
    let mut place: BTreeMap<u32, String> =
        truth.guests.keys().map(|v| (*v, truth.actual_node(*v, t0))).collect();
    for m in run["moves"].as_array().unwrap().iter().filter(|m| m["at"].as_u64().unwrap() <= t) {
        let vmid = m["vmid"].as_u64().unwrap() as u32;
        assert_eq!(place[&vmid], m["from"].as_str().unwrap(), "a move starts where the guest is");
        place.insert(vmid, m["to"].as_str().unwrap().into());
    }
    place
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs())), "{what}: report {a} vs recomputed {b}");
}

fn check_run(truth: &Truth, times: &[u64], run: &Value, hours: f64) {
    let name = run["name"].as_str().unwrap().to_owned();
    let (mut over_mem, mut over_cpu, mut spreads) = (0.0, 0.0, vec![]);
    for &t in times {
        let pct = truth.percents(t, &placement(truth, run, times[0], t));
        over_mem += pct.values().filter(|p| p.1 > MEMORY_THRESHOLD).count() as f64 * hours;
        over_cpu += pct.values().filter(|p| p.0 > CPU_THRESHOLD).count() as f64 * hours;
        let mem: Vec<f64> = pct.values().map(|p| p.1).collect();
        spreads.push(
            mem.iter().cloned().fold(f64::MIN, f64::max) - mem.iter().cloned().fold(f64::MAX, f64::min),
        );
    }
    for (i, s) in spreads.iter().enumerate() {
        close(run["spread"][i].as_f64().unwrap(), *s, &format!("{name} spread at sample {i}"));
    }
    close(run["spread_mean"].as_f64().unwrap(), spreads.iter().sum::<f64>() / spreads.len() as f64, &name);
    close(run["spread_worst"].as_f64().unwrap(), spreads.iter().cloned().fold(0.0, f64::max), &name);
    close(run["node_hours_over_memory"].as_f64().unwrap(), over_mem, &format!("{name} memory node-hours"));
    close(run["node_hours_over_cpu"].as_f64().unwrap(), over_cpu, &format!("{name} cpu node-hours"));
    // GiB: each move carries the guest's recorded memory at its time (no local disks here)
    let gib: f64 = run["moves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mem = truth.guests[&(m["vmid"].as_u64().unwrap() as u32)][&m["at"].as_u64().unwrap()].1;
            assert_eq!(m["bytes"].as_u64().unwrap(), mem.round() as u64, "{name}: bytes of {m}");
            mem.round() / GIB
        })
        .sum();
    close(run["gib_moved"].as_f64().unwrap(), gib, &format!("{name} GiB"));
    let moves = run["moves"].as_array().unwrap().len();
    assert_eq!(run["migrations"].as_u64().unwrap() as usize, moves);
    close(run["migrations_per_day"].as_f64().unwrap(), moves as f64 / 7.0, &format!("{name} per day"));
}

#[tokio::test]
async fn a_week_replayed_matches_an_independent_recomputation() {
    // a stepped clock: the newest RRD row stays put between the import and the recomputation
    let mut cfg = pve_sim::SimConfig::new(scenario());
    cfg.clock_rate = 0.0;
    let sim = pve_sim::start(cfg).await.expect("simulator");
    let work = e2e::temp_dir("backtest");
    let host = sim.base_url.trim_start_matches("https://").trim_end_matches('/').to_owned();
    std::fs::write(work.join("ca.pem"), &sim.ca_pem).unwrap();
    std::fs::write(work.join("proxlb.yaml"), config(&host, &work.join("ca.pem").display().to_string()))
        .unwrap();
    std::fs::write(work.join("eager.yaml"), "balanciness: 3\nmin_gain: 0.2\n").unwrap();
    std::fs::write(work.join("calm.yaml"), "balanciness: 30\n").unwrap();

    let (report, stderr) = backtest(&work, &sim).await;
    let truth = truth(&sim).await;
    let times: Vec<u64> = report["times"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    let newest = *truth.nodes["pve1"].0.keys().last().unwrap();
    let expected: Vec<u64> =
        truth.nodes["pve1"].0.keys().copied().filter(|t| *t > newest - 7 * 86400).collect();
    assert_eq!(times, expected, "a week of PVE 9's 30-minute rows");
    let names: Vec<&str> =
        report["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nobody", "actual", "effective", "eager", "calm"]);
    for run in report["runs"].as_array().unwrap() {
        check_run(&truth, &times, run, 0.5);
    }
    let run =
        |name: &str| report["runs"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone();
    // the two past migrations are what happened; policies keep the hard rules and balance
    let actual: Vec<u64> =
        run("actual")["moves"].as_array().unwrap().iter().map(|m| m["vmid"].as_u64().unwrap()).collect();
    assert_eq!(actual, [102, 106]);
    assert!(run("nobody")["node_hours_over_memory"].as_f64().unwrap() > 0.0, "the thresholds are crossed");
    for name in ["effective", "eager", "calm"] {
        assert_eq!(run(name)["hard_violations"], 0, "{name}");
    }
    let mean = |name: &str| run(name)["spread_mean"].as_f64().unwrap();
    assert!(run("eager")["migrations"].as_u64().unwrap() > 0 && mean("eager") < mean("nobody"));
    assert!(stderr.contains("11/11 series (0 from the cache)"), "{stderr}");

    // run again: every series comes from the cache, the figures are the same
    let before = sim.request_stats();
    let (again, stderr) = backtest(&work, &sim).await;
    assert!(stderr.contains("11/11 series (11 from the cache)"), "{stderr}");
    let after = sim.request_stats();
    let grew = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let guest_series =
        grew("GET /nodes/{node}/qemu/{vmid}/rrddata") + grew("GET /nodes/{node}/lxc/{vmid}/rrddata");
    assert_eq!(guest_series, 0, "no guest series fetched the second time");
    // Node RRD is read once per node by the collection (PVE 9's pressure), not for the series.
    assert!(grew("GET /nodes/{node}/rrddata") <= grew("GET /nodes/{node}/apt/versions"), "no node series");
    assert_eq!(again["runs"], report["runs"]);
    sim.shutdown().await;
}

/// The service's route: started with a named policy, followed to its report; bad input is a
/// 400 naming the field and starts nothing.
#[tokio::test]
async fn the_service_runs_a_backtest_and_names_bad_fields() {
    let stack = e2e::Stack::builder().scenario(scenario()).start().await.expect("stack");
    let root = stack.login("root@pam", "demo").await.expect("login");
    let idle: Value = root.get("/api/v1/backtest").send().await.unwrap().json().await.unwrap();
    assert_eq!(idle["state"], "idle");
    for (body, field) in [
        (serde_json::json!({"days": 0}), "days"),
        (serde_json::json!({"policies": [{"name": "actual", "overrides": {}}]}), "policies[0].name"),
        (
            serde_json::json!({"policies": [{"name": "x", "overrides": {"balanciness": 500}}]}),
            "policies[0].overrides.balanciness",
        ),
        (serde_json::json!({"dayz": 7}), "dayz"),
    ] {
        let resp = root.post("/api/v1/backtest").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["field"], field, "{err}");
    }
    let idle: Value = root.get("/api/v1/backtest").send().await.unwrap().json().await.unwrap();
    assert_eq!(idle["state"], "idle", "bad input started nothing");

    let body =
        serde_json::json!({"days": 2, "policies": [{"name": "eager", "overrides": {"balanciness": 3}}]});
    let resp = root.post("/api/v1/backtest").json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let mut status = Value::Null;
    for _ in 0..600 {
        status = root.get("/api/v1/backtest").send().await.unwrap().json().await.unwrap();
        if status["state"] == "done" || status["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!((status["done"].as_u64(), status["total"].as_u64()), (Some(11), Some(11)));
    let names: Vec<&str> =
        status["report"]["runs"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nobody", "actual", "effective", "eager"]);
    // two days of 30-minute rows from the week view
    assert_eq!(status["report"]["times"].as_array().unwrap().len(), 96);
    stack.stop().await;
}
