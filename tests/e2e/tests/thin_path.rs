//! The thin path over real sockets: simulator (HTTPS) → backend (collect, plan) → JSON API.

use e2e::Stack;
use shared::api::{ApiError, ClusterView};
use shared::Plan;

#[tokio::test]
async fn backend_collects_the_simulated_cluster_and_returns_a_plan_that_narrows_the_spread() {
    let stack = Stack::start(None).await.expect("stack starts");
    let http = reqwest::Client::new();

    let view: ClusterView =
        http.get(format!("{}/api/v1/cluster", stack.backend_url)).send().await.unwrap().json().await.unwrap();
    assert!(view.snapshot.nodes.len() >= 3, "nodes: {:?}", view.snapshot.nodes);
    assert!(view.snapshot.guests.len() >= 20, "guests: {}", view.snapshot.guests.len());
    assert!(view.memory_spread > 10.0, "the demo cluster is meant to be imbalanced: {}", view.memory_spread);

    let resp = http
        .post(format!("{}/api/v1/plan", stack.backend_url))
        .json(&serde_json::json!({"balanciness": 5.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let plan: Plan = resp.json().await.unwrap();
    assert!(!plan.steps.is_empty(), "no steps: {:?}", plan.notes);
    assert!(plan.spread_after < plan.spread_before, "{} → {}", plan.spread_before, plan.spread_after);
    for step in &plan.steps {
        let guest = view.snapshot.guests.iter().find(|g| g.vmid == step.vmid).expect("planned guest exists");
        assert_eq!(guest.node, step.from, "step starts where the guest is");
    }
    // Planning changes nothing in the cluster.
    assert!(stack.sim.check_invariants().is_ok());
    for step in &plan.steps {
        assert_eq!(stack.sim.guest_node(step.vmid).as_deref(), Some(step.from.as_str()));
    }
    stack.stop().await;
}

#[tokio::test]
async fn bad_plan_input_gets_a_clear_error_naming_the_field() {
    let stack = Stack::start(None).await.expect("stack starts");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/plan", stack.backend_url);

    let resp = http.post(&url).json(&serde_json::json!({"balanciness": 250})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: ApiError = resp.json().await.unwrap();
    assert_eq!(err.field.as_deref(), Some("balanciness"));
    assert!(err.detail.contains("0–100"), "{}", err.detail);

    let resp = http.post(&url).json(&serde_json::json!({"method": "ram"})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: ApiError = resp.json().await.unwrap();
    assert!(err.detail.contains("method") && err.detail.contains("memory"), "{}", err.detail);
    stack.stop().await;
}
