//! The thin path over real sockets: simulator (HTTPS) → backend (collect, plan) → JSON API.

use e2e::Stack;
use shared::api::{ApiError, ClusterView};
use shared::Plan;

#[tokio::test]
async fn backend_collects_the_simulated_cluster_and_returns_a_plan_that_narrows_the_spread() {
    let stack = Stack::start(None).await.expect("stack starts");
    let session = stack.login("root@pam", "demo").await.unwrap();

    let view: ClusterView = session.get("/api/v1/cluster").send().await.unwrap().json().await.unwrap();
    assert!(view.snapshot.nodes.len() >= 3, "nodes: {:?}", view.snapshot.nodes);
    assert!(view.snapshot.guests.len() >= 20, "guests: {}", view.snapshot.guests.len());
    assert!(view.memory_spread > 10.0, "the demo cluster is meant to be imbalanced: {}", view.memory_spread);

    let resp =
        session.post("/api/v1/plan").json(&serde_json::json!({"balanciness": 5.0})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let plan: Plan = resp.json().await.unwrap();
    assert!(!plan.steps.is_empty(), "no steps: {:?}", plan.notes);
    assert!(plan.spread_after < plan.spread_before, "{} → {}", plan.spread_before, plan.spread_after);
    for step in &plan.steps {
        let guest = view.snapshot.guests.iter().find(|g| g.vmid == step.vmid).expect("planned guest exists");
        assert_eq!(guest.node, step.from, "step starts where the guest is");
    }
    // The demo's HA rule keeps vm:201 and vm:401 apart; the plan must not bring them together.
    assert!(view.snapshot.ha_rules.iter().any(|r| r.rule == "keep-db02-app04-apart"));
    let after = shared::planner::apply(&view.snapshot, &plan);
    let node_of = |vmid| after.guests.iter().find(|g| g.vmid == vmid).map(|g| g.node.clone());
    assert_ne!(node_of(201), node_of(401), "HA negative affinity broken by {:?}", plan.steps);
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
    let session = stack.login("root@pam", "demo").await.unwrap();

    let resp =
        session.post("/api/v1/plan").json(&serde_json::json!({"balanciness": 250})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: ApiError = resp.json().await.unwrap();
    assert_eq!(err.field.as_deref(), Some("balanciness"));
    assert!(err.detail.contains("0–100"), "{}", err.detail);

    let resp = session.post("/api/v1/plan").json(&serde_json::json!({"method": "ram"})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: ApiError = resp.json().await.unwrap();
    assert_eq!(err.field.as_deref(), Some("method"), "{}", err.detail);
    assert!(err.detail.contains("`ram`") && err.detail.contains("memory"), "{}", err.detail);
    stack.stop().await;
}

#[tokio::test]
async fn the_api_refuses_callers_pve_would_refuse() {
    let stack = Stack::start(None).await.expect("stack starts");
    let anonymous = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", stack.backend_url);

    // Health is the one open route.
    assert_eq!(anonymous.get(url("/api/v1/health")).send().await.unwrap().status(), 200);
    // No credentials, a forged ticket, a wrong password.
    assert_eq!(anonymous.get(url("/api/v1/cluster")).send().await.unwrap().status(), 401);
    let forged = anonymous
        .get(url("/api/v1/cluster"))
        .header("Cookie", "PVEAuthCookie=PVE%3Aroot%40pam%3A00000000%3A%3Aforged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(stack.login("root@pam", "wrong").await.is_err());

    // A write with a valid ticket but no CSRF token.
    let root = stack.login("root@pam", "demo").await.unwrap();
    let no_csrf = root.http.post(url("/api/v1/plan")).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let err: ApiError = no_csrf.json().await.unwrap();
    assert!(err.detail.contains("CSRFPreventionToken"), "{}", err.detail);

    // A user PVE knows but who holds no privilege: 403 naming the privilege.
    let nobody = stack.login("nobody@pve", "nobody").await.unwrap();
    let resp = nobody.get("/api/v1/cluster").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let err: ApiError = resp.json().await.unwrap();
    assert_eq!(err.detail, "Permission check failed (/, Sys.Audit)");

    // An auditor sees the cluster; an API token works without a ticket or CSRF token.
    let audit = stack.login("audit@pve", "audit").await.unwrap();
    assert_eq!(audit.get("/api/v1/cluster").send().await.unwrap().status(), 200);
    let token = anonymous
        .post(url("/api/v1/plan"))
        .header("Authorization", "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    stack.stop().await;
}

#[tokio::test]
async fn only_the_pve_ui_origin_gets_cors_with_credentials() {
    let stack = Stack::start(None).await.expect("stack starts");
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/api/v1/plan", stack.backend_url))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "csrfpreventiontoken,content-type")
            .send()
    };
    // The demo cluster's own node (from the simulator's /cluster/status), exactly.
    let ok = preflight("https://pve1:8006").await.unwrap();
    let allow = |r: &reqwest::Response, h: &str| r.headers().get(h).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(allow(&ok, "access-control-allow-origin").as_deref(), Some("https://pve1:8006"));
    assert_eq!(allow(&ok, "access-control-allow-credentials").as_deref(), Some("true"));
    for evil in [
        "https://evil.example.com",
        "http://pve1:8006",
        "https://a@evil:8006",
        "https://evil.example:8006",
        "https://pve1:8006.evil.example",
        "null",
    ] {
        let r = preflight(evil).await.unwrap();
        assert_eq!(allow(&r, "access-control-allow-origin"), None, "{evil} got CORS");
    }
    stack.stop().await;
}
