//! Collection against the real simulator: the call count stays O(nodes) (counted by the
//! simulator per endpoint), PVE 7.4 / 8.4 / 9.1 answers, per-node QEMU versions, PVE's own
//! balancer detected from `/cluster/options` and respected by the plan.

use backend::collect;
use backend::pve::PveClient;
use pve_sim::{RunningSim, Scenario};
use serde_json::json;
use shared::{GuestKind, GuestStatus, NodeStatus};
use std::time::Duration;
use test_support::{demo, options};

/// A generated cluster with the demo's users (the generator makes none).
fn generated(nodes: usize, guests: usize) -> Scenario {
    let mut sc = pve_sim::generate(7, nodes, guests);
    let d = demo();
    sc.users = d.users;
    sc.acls = d.acls;
    sc
}

/// A generous timeout: the generated clusters are large and the cores busy.
fn client(sim: &RunningSim) -> PveClient {
    PveClient::new(options(sim, Duration::from_secs(30))).expect("client")
}

async fn start(sc: Scenario) -> RunningSim {
    pve_sim::start(pve_sim::SimConfig::new(sc)).await.expect("simulator starts")
}

/// API calls per endpoint template made by `f`, login excluded.
async fn counted<T>(sim: &RunningSim, f: impl std::future::Future<Output = T>) -> (T, Vec<(String, u64)>) {
    let before = sim.request_stats();
    let out = f.await;
    let after = sim.request_stats();
    let diff = after
        .into_iter()
        .filter(|(k, _)| k != "POST /access/ticket")
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    (out, diff)
}

#[tokio::test]
async fn collection_costs_five_cluster_calls_plus_a_few_per_online_node_whatever_the_guest_count() {
    let mut sc = generated(12, 900);
    sc.nodes[11].status = pve_sim::scenario::NodeStatus::Offline;
    assert!(sc.version.starts_with('9'), "PVE 9: the pressure calls are counted too");
    // Local storages holding guest volumes: each is listed once per online node.
    let local = sc
        .effective_storages()
        .iter()
        .filter(|s| !s.shared && s.content.split(',').any(|c| c == "images" || c == "rootdir"))
        .count() as u64;
    assert!(local >= 1, "the count covers a content listing");
    let sim = start(sc).await;
    let pve = client(&sim);
    pve.get::<serde_json::Value>("/version").await.unwrap(); // log in outside the count
    let (snap, calls) = counted(&sim, collect::snapshot(&pve, 1)).await;
    let snap = snap.expect("snapshot");
    assert_eq!(snap.nodes.len(), 12);
    assert_eq!(snap.guests.len(), 900);
    let total: u64 = calls.iter().map(|(_, n)| n).sum();
    // Per online node: apt/versions, each local storage's content, PVE 9's qemu, lxc, rrddata.
    assert_eq!(total, 5 + 11 * (1 + local + 3), "{total} calls: {calls:?}");
    let per = |k: &str| calls.iter().find(|(e, _)| e == k).map_or(0, |(_, n)| *n);
    for k in [
        "GET /cluster/resources",
        "GET /cluster/status",
        "GET /cluster/options",
        "GET /cluster/ha/rules",
        "GET /cluster/tasks",
    ] {
        assert_eq!(per(k), 1, "{k}: {calls:?}");
    }
    assert_eq!(per("GET /nodes/{node}/apt/versions"), 11, "online nodes only: {calls:?}");
    assert_eq!(per("GET /nodes/{node}/storage/{storage}/content"), 11 * local, "{calls:?}");
    for k in ["GET /nodes/{node}/qemu", "GET /nodes/{node}/lxc", "GET /nodes/{node}/rrddata"] {
        assert_eq!(per(k), 11, "{k}: once per online node: {calls:?}");
    }
    assert_eq!(per("GET /storage"), 0, "the storage rows say which are shared: {calls:?}");
    let online = |n: &&shared::Node| n.status == NodeStatus::Online;
    assert!(snap.nodes.iter().filter(online).all(|n| n.pressure.is_some()), "node pressure on PVE 9");
    assert!(calls.iter().all(|(k, _)| !k.contains("{vmid}")), "no per-guest call: {calls:?}");
    assert_eq!(per("GET /version"), 0, "the nodes told the version: {calls:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn every_supported_pve_version_collects_with_its_own_shape() {
    for (version, qemu) in [("7.4-17", "7.2.10"), ("8.4.1", "9.0.2"), ("9.1.2", "10.1.2")] {
        let mut sc = demo();
        sc.version = version.into();
        if !version.starts_with('9') {
            // HA rules exist only since PVE 9 (groups before).
            sc.ha_rules.clear();
        }
        let sim = start(sc).await;
        let snap = collect::snapshot(&client(&sim), 1).await.unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(snap.pve_version, version, "{version}");
        assert_eq!(snap.nodes.len(), 4, "{version}");
        assert!(
            snap.nodes.iter().all(|n| n.qemu_version.as_deref() == Some(qemu)),
            "{version}: {:?}",
            snap.nodes
        );
        assert_eq!(snap.ha_rules.is_empty(), !version.starts_with('9'), "{version}");
        assert!(snap.guests.iter().any(|g| g.ha_managed), "{version}: HA state from /cluster/resources");
        assert!(snap.dynamic_balancer.is_none(), "{version}");
        let stats = sim.request_stats();
        // Pressure exists from PVE 9 on: asked and found there, neither asked nor invented before.
        let nine = version.starts_with('9');
        assert_eq!(snap.nodes.iter().all(|n| n.pressure.is_some()), nine, "{version}");
        let running = snap.guests.iter().filter(|g| g.status == GuestStatus::Running);
        assert_eq!(running.clone().all(|g| g.pressure.is_some()), nine, "{version}");
        assert!(nine || running.clone().all(|g| g.pressure.is_none()), "{version}");
        for k in ["GET /nodes/{node}/qemu", "GET /nodes/{node}/lxc", "GET /nodes/{node}/rrddata"] {
            assert_eq!(stats.get(k).copied().unwrap_or(0), if nine { 4 } else { 0 }, "{version} {k}");
        }
        // Storage rows say `shared` from 9.1 on; before, the storage configuration is read once.
        assert_eq!(stats.get("GET /storage").copied().unwrap_or(0), u64::from(!nine), "{version}");
        // The demo's one local storage with guest volumes (`local`) is listed on every node.
        assert_eq!(stats.get("GET /nodes/{node}/storage/{storage}/content"), Some(&4), "{version}");
        if !version.starts_with('9') {
            // The 7.4/8.4 simulator answers /cluster/ha/rules like those releases: no such path.
            assert_eq!(stats.get("GET /cluster/ha/rules"), Some(&1), "{version}: asked once, {stats:?}");
        }
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn nodes_report_their_own_qemu_and_running_vms_are_held_to_it() {
    let mut sc = demo();
    sc.nodes[2].qemu_version = Some("9.0.2-4".into());
    let old = sc.nodes[2].name.clone();
    let sim = start(sc).await;
    let snap = collect::snapshot(&client(&sim), 1).await.unwrap();
    for n in &snap.nodes {
        let want = if n.name == old { "9.0.2" } else { "10.1.2" };
        assert_eq!(n.qemu_version.as_deref(), Some(want), "{}", n.name);
        assert_eq!(n.status, NodeStatus::Online);
    }
    for g in &snap.guests {
        let node = snap.node(&g.node).unwrap();
        if g.kind == GuestKind::Qemu && g.status == GuestStatus::Running {
            assert_eq!(g.running_qemu, node.qemu_version, "{}", g.vmid);
        } else {
            assert_eq!(g.running_qemu, None, "{}", g.vmid);
        }
    }
    // The engine refuses live moves from 10.1 nodes to the 9.0 one.
    let plan = shared::planner::plan(&snap, &shared::PlanRequest { balanciness: 1.0, ..Default::default() });
    for st in &plan.steps {
        let g = snap.guests.iter().find(|g| g.vmid == st.vmid).unwrap();
        if st.to == old && g.status == GuestStatus::Running && g.kind == GuestKind::Qemu {
            panic!("live move of {} to the older QEMU on {old}: {plan:?}", g.vmid);
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn pves_own_balancer_is_detected_and_its_ha_guests_are_left_to_it() {
    let mut sc = demo();
    sc.options = Some(json!({
        "crs": {"ha": "dynamic", "ha-auto-rebalance": 1, "ha-auto-rebalance-threshold": 30,
                "ha-auto-rebalance-method": "topsis"},
        "keyboard": "en-us"
    }));
    let sim = start(sc).await;
    let snap = collect::snapshot(&client(&sim), 1).await.unwrap();
    let b = snap.dynamic_balancer.clone().expect("detected");
    assert_eq!(
        (b.scheduler.as_str(), b.threshold, b.method.as_deref()),
        ("dynamic", Some(30.0), Some("topsis"))
    );
    let view = shared::api::ClusterView::of(snap.clone());
    assert_eq!(view.dynamic_balancer, Some(b));
    let ha: Vec<u32> = snap.guests.iter().filter(|g| g.ha_managed).map(|g| g.vmid).collect();
    assert!(!ha.is_empty());
    let plan = shared::planner::plan(&snap, &shared::PlanRequest { balanciness: 1.0, ..Default::default() });
    assert!(plan.steps.iter().all(|s| !ha.contains(&s.vmid)), "{:?}", plan.steps);
    assert!(plan.notes[0].contains("left to PVE's automatic HA rebalancing"), "{:?}", plan.notes);
    sim.shutdown().await;

    // Static scheduling without auto-rebalance (the demo's default) is not a balancer.
    let sim = start(demo()).await;
    assert!(collect::snapshot(&client(&sim), 1).await.unwrap().dynamic_balancer.is_none());
    sim.shutdown().await;
}
