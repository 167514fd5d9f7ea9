//! Threshold alerts from one node only: two services' notifiers watch one simulated cluster and
//! share a state directory (as every node shares pmxcfs), with one webhook receiver on loopback.
//! Each spell above the limit arrives exactly once, also after a service restarts during it;
//! with separate state directories (no shared claim) each arrives twice, which is what the claim
//! prevents.

use axum::body::Bytes;
use axum::extract::State;
use backend::notify::{Alert, Notifier, NotifyConfig, Target};
use backend::pve::{Credentials, PveClient, PveOptions};
use pve_sim::RunningSim;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: f64 = 1.0;
/// The watcher checks at most every 5 s: the first check fires at once, the next 5 s later.
const CHECK_SECS: u64 = 5;

type Received = Arc<Mutex<Vec<serde_json::Value>>>;

async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new()
        .fallback(|State(got): State<Received>, body: Bytes| async move {
            got.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or_default());
            "ok"
        })
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

async fn start_sim() -> RunningSim {
    let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).expect("demo scenario");
    let mut cfg = pve_sim::SimConfig::new(scenario);
    // A stepped clock: loads stay where they are, so no spell ends during the test.
    cfg.clock_rate = 0.0;
    pve_sim::start(cfg).await.expect("simulator starts")
}

fn client(sim: &RunningSim) -> Arc<PveClient> {
    Arc::new(
        PveClient::new(PveOptions {
            base_url: sim.base_url.clone(),
            credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
            ca_pem: Some(sim.ca_pem.clone()),
            insecure: false,
            timeout: Duration::from_secs(30),
        })
        .expect("client"),
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pvrb-alerts-once-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(hook: &str) -> (NotifyConfig, Alert) {
    let target: Target = serde_json::from_value(serde_json::json!({"kind": "json", "url": hook})).unwrap();
    let alert =
        Alert { percent: LIMIT, minutes: 0.0, resource: "memory".into(), check_interval_secs: CHECK_SECS };
    (NotifyConfig { targets: vec![target], alert: Some(alert.clone()), timeout_secs: Some(5) }, alert)
}

/// Nodes whose memory use is at or above the limit: one spell each.
async fn nodes_above(sim: &RunningSim) -> Vec<String> {
    let snap = backend::collect::snapshot(&client(sim), 0).await.unwrap();
    let view = shared::api::ClusterView::of(snap);
    let mut nodes: Vec<String> =
        view.memory.iter().filter(|l| l.percent >= LIMIT).map(|l| l.node.clone()).collect();
    nodes.sort();
    nodes
}

/// Services watching `sim`, one per state directory, for `checks` checks each; what the
/// receiver got, counted per node.
async fn run_services(sim: &RunningSim, dirs: &[&Path], checks: u64) -> BTreeMap<String, usize> {
    let (hook, got) = receiver().await;
    let (notify, alert) = config(&hook);
    let watchers: Vec<_> = dirs
        .iter()
        .map(|dir| Arc::new(Notifier::new(&notify)).watch_thresholds(client(sim), alert.clone(), dir))
        .collect();
    let end = Instant::now() + Duration::from_secs((checks - 1) * CHECK_SECS + 2);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watchers.iter().for_each(|w| w.abort());
    let mut per_node = BTreeMap::new();
    for v in got.lock().unwrap().iter() {
        assert_eq!(v["event"], "threshold", "{v}");
        *per_node.entry(v["node"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    per_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_sharing_the_state_dir_send_each_spell_once() {
    let sim = start_sim().await;
    let expected = nodes_above(&sim).await;
    assert!(!expected.is_empty(), "some node is above {LIMIT}%");
    let shared_dir = temp_dir("shared");
    // Three checks per service: the second and third look at the same spells send nothing more.
    let got = run_services(&sim, &[&shared_dir, &shared_dir], 3).await;
    let want: BTreeMap<String, usize> = expected.iter().map(|n| (n.clone(), 1)).collect();
    assert_eq!(got, want, "exactly one message per spell");
    // The claims are on record: node, resource, who sent it.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared_dir.join(backend::notify::ALERTS_FILE)).unwrap())
            .unwrap();
    let recorded: Vec<&str> =
        state["announced"].as_array().unwrap().iter().map(|a| a["node"].as_str().unwrap()).collect();
    assert_eq!(recorded.len(), expected.len(), "{state}");
    assert!(state["announced"][0]["by"].as_str().is_some_and(|h| !h.is_empty()), "{state}");
    // A service (re)started during the spells, as by a package upgrade, sends nothing again.
    let again = run_services(&sim, &[&shared_dir], 2).await;
    assert_eq!(again, BTreeMap::new(), "the spells are still the announced ones");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_claim_each_service_would_send_its_own_copy() {
    let sim = start_sim().await;
    let expected = nodes_above(&sim).await;
    let (a, b) = (temp_dir("a"), temp_dir("b"));
    let got = run_services(&sim, &[&a, &b], 3).await;
    let want: BTreeMap<String, usize> = expected.iter().map(|n| (n.clone(), 2)).collect();
    assert_eq!(got, want, "one copy per service");
    sim.shutdown().await;
}
