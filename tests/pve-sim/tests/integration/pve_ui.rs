//! What PVE's own web UI asks on load and on the views an admin opens, answered as PVE does, so
//! the real UI runs against the simulator without errors.

use crate::common::*;

#[tokio::test]
async fn cluster_options_list_the_allowed_tags() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let options = s.data("/cluster/options").await;
    // PVE's UI iterates over it ("tags is not iterable" without it).
    let tags = options["allowed-tags"].as_array().expect("allowed-tags is an array");
    let mut expected: Vec<String> =
        sim.with_cluster(|c| c.guests.values().flat_map(|g| g.spec.tags.clone()).collect());
    expected.sort();
    expected.dedup();
    let got: Vec<String> = tags.iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(got, expected, "every guest tag, sorted, once");
}

#[tokio::test]
async fn ceph_status_says_ceph_is_not_installed() {
    let sim = start_demo(1000.0).await;
    let s = Session::root(&sim).await;
    let node = sim.with_cluster(|c| c.nodes.keys().next().unwrap().clone());
    let (status, body) = s.get(&format!("/nodes/{node}/ceph/status")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.to_string().contains("not installed"), "{body}");
}
