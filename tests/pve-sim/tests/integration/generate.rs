//! The seeded generator: reproducible, valid, imbalanced, and served at scale.

use crate::common::*;
use pve_sim::state::Cluster;

#[test]
fn generator_is_deterministic_and_valid() {
    let a = pve_sim::generate(7, 20, 2000);
    let b = pve_sim::generate(7, 20, 2000);
    assert_eq!(a, b);
    assert_ne!(a, pve_sim::generate(8, 20, 2000));
    a.validate().unwrap();
    // round trip through YAML
    let back = pve_sim::Scenario::from_yaml(&a.to_yaml().unwrap()).unwrap();
    assert_eq!(a, back);
    let c = Cluster::from_scenario(&a, 1_800_000_000).unwrap();
    c.check_invariants().unwrap();
    // usage_map agrees with node_usage
    for (n, u) in c.usage_map() {
        assert_eq!(u, c.node_usage(&n));
    }
    // imbalanced: spread of memory ratios is substantial
    let ratios: Vec<f64> = c.usage_map().values().map(|u| u.mem as f64 / u.maxmem as f64).collect();
    let max = ratios.iter().cloned().fold(0.0, f64::max);
    let min = ratios.iter().cloned().fold(1.0, f64::min);
    assert!(max - min > 0.2, "ratios {ratios:?}");
}

#[test]
fn generator_reaches_500_nodes_100k_guests() {
    let sc = pve_sim::generate(1, 500, 100_000);
    assert_eq!(sc.nodes.len(), 500);
    assert_eq!(sc.guests.len(), 100_000);
    let c = Cluster::from_scenario(&sc, 1_800_000_000).unwrap();
    c.check_invariants().unwrap();
}

#[tokio::test]
async fn large_cluster_is_served() {
    let sim = start_with(pve_sim::generate(3, 100, 20_000), 1000.0).await;
    let s = Session::root(&sim).await;
    let res = s.data("/cluster/resources").await;
    let rows = res.as_array().unwrap();
    assert_eq!(rows.iter().filter(|r| r["type"] == "node").count(), 100);
    assert_eq!(rows.iter().filter(|r| r["type"] == "qemu" || r["type"] == "lxc").count(), 20_000);
    let q = s.data("/nodes/pve1/qemu").await;
    assert!(!q.as_array().unwrap().is_empty());
    sim.shutdown().await;
}
