//! `GET /api/v1/cluster/history` end to end: the simulator, the real sampler task sampling it
//! (one `/cluster/resources` per tick), and the service's router on loopback.

use backend::http::{router, AppState};
use backend::pve::{Credentials, PveClient, PveOptions};
use backend::sampler::{Sampler, SamplerConfig};
use shared::api::{ApiError, HistoryView};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b";

#[tokio::test]
async fn the_sampler_samples_the_cluster_and_the_route_serves_its_history() {
    let scenario = pve_sim::Scenario::from_file(&pve_sim::demo_scenario_path()).unwrap();
    let sim = pve_sim::start(pve_sim::SimConfig::new(scenario)).await.unwrap();
    let pve = Arc::new(
        PveClient::new(PveOptions {
            base_url: sim.base_url.clone(),
            credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
            ca_pem: Some(sim.ca_pem.clone()),
            insecure: false,
            timeout: Duration::from_secs(10),
        })
        .unwrap(),
    );
    let cfg = SamplerConfig { interval: Duration::from_millis(50), ..SamplerConfig::default() };
    let sampler = Arc::new(Sampler::new(cfg));
    let task = sampler.clone().spawn(pve.clone());
    // Bounded wait for three samples (50 ms apart).
    for _ in 0..200 {
        if sampler.history(60).samples.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let sampled = sim.request_stats().get("GET /cluster/resources").copied().unwrap_or(0);
    assert!(sampled >= 3, "one /cluster/resources call per sample: {sampled}");

    let app = router(AppState::new(pve.clone()).with_sampler(sampler.clone()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let get =
        |q: &str| http.get(format!("{base}/api/v1/cluster/history{q}")).header("Authorization", TOKEN).send();

    let resp = get("?minutes=5").await.unwrap();
    assert_eq!(resp.status(), 200);
    let view: HistoryView = resp.json().await.unwrap();
    assert_eq!(view.minutes, 5);
    assert_eq!(view.nodes, vec!["pve1", "pve2", "pve3", "pve4"]);
    assert!(view.samples.len() >= 3, "{}", view.samples.len());
    let s = &view.samples[0];
    assert_eq!((s.cpu.len(), s.memory.len()), (4, 4));
    let mem: Vec<f64> = s.memory.iter().map(|m| m.expect("all nodes online")).collect();
    let spread = mem.iter().cloned().fold(f64::MIN, f64::max) - mem.iter().cloned().fold(f64::MAX, f64::min);
    assert!((s.memory_spread - spread).abs() < 0.02, "{} vs {spread}", s.memory_spread);
    assert!(s.memory_spread > 0.0 && s.memory_cv > 0.0, "the demo is imbalanced: {s:?}");
    assert_eq!(view.percentiles.len(), 4);
    assert!(view.percentiles.iter().all(|p| p.samples as usize == view.samples.len()));

    for bad in ["?minutes=0", "?minutes=99999", "?minutes=x", "?hours=1"] {
        let resp = get(bad).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let e: ApiError = resp.json().await.unwrap();
        assert!(e.field.is_some() && !e.detail.is_empty(), "{bad}: {e:?}");
    }
    let anon = http.get(format!("{base}/api/v1/cluster/history")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    server.abort();

    // A service without a sampler says so instead of inventing an empty history.
    let app = router(AppState::new(pve), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let resp = http.get(format!("{base}/api/v1/cluster/history")).header("Authorization", TOKEN).send().await;
    assert_eq!(resp.unwrap().status(), 503);
    server.abort();
    sim.shutdown().await;
}
