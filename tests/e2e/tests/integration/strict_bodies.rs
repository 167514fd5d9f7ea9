//! No action from a typo: every write route refuses a body with a misspelt field (naming it and
//! the closest known one), and a body that is not a JSON object (`[]`, `null`, a string), with
//! 400 — and nothing starts: no migration is posted to PVE, no job, no mark, no stored setting.

use serde_json::{json, Value};
use test_support::migrate_posts;

/// `(method, path, a body with one misspelt field, the misspelt field, the field it meant)`.
fn typos(plan: &Value) -> Vec<(&'static str, &'static str, Value, &'static str, &'static str)> {
    vec![
        ("POST", "/api/v1/plan", json!({"balanciess": 5}), "balanciess", "balanciness"),
        ("PUT", "/api/v1/settings", json!({"max_movs": 3}), "max_movs", "max_moves"),
        ("POST", "/api/v1/plan/execute", json!({"plan": plan, "step": [100]}), "step", "steps"),
        ("POST", "/api/v1/maintenance/pve1/enter", json!({"preveiw": true}), "preveiw", "preview"),
        ("POST", "/api/v1/maintenance/pve1/exit", json!({"return_hom": true}), "return_hom", "return_home"),
        ("POST", "/api/v1/best-node", json!({"vmidd": 100}), "vmidd", "vmid"),
        ("POST", "/api/migrate", json!({"vmid": 100, "target_nod": "pve3"}), "target_nod", "target_node"),
    ]
}

#[tokio::test]
async fn a_misspelt_field_or_a_body_that_is_no_object_is_refused_and_starts_nothing() {
    let stack = e2e::Stack::builder().start().await.expect("stack");
    let root = stack.login("root@pam", "demo").await.expect("login");
    let plan = serde_json::to_value(root.plan(json!({})).await).unwrap();
    assert!(!plan["steps"].as_array().unwrap().is_empty(), "the demo needs moves for the execute case");
    let before = migrate_posts(&stack.sim);
    let settings_before = std::fs::read(stack.work.join("settings.json")).ok();
    for (method, path, body, field, meant) in typos(&plan) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let send = |body: Value| {
            let req = root.http.request(m.clone(), format!("{}{path}", stack.backend_url));
            req.header("CSRFPreventionToken", &root.csrf).json(&body).send()
        };
        let resp = send(body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{method} {path} {body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["field"], field, "{method} {path}: {err}");
        let detail = err["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("did you mean `{meant}`")), "{method} {path}: {detail}");
        for not_an_object in [json!([]), Value::Null, json!("preview")] {
            let resp = send(not_an_object.clone()).await.unwrap();
            assert_eq!(resp.status(), 400, "{method} {path} {not_an_object}");
        }
    }
    // Nothing started and nothing changed.
    assert_eq!(migrate_posts(&stack.sim), before, "a refused body posted a migration");
    assert!(stack.executor.jobs(10).unwrap().is_empty(), "a refused body started a job");
    assert!(stack.maintenance.marks().unwrap().is_empty(), "a refused body marked a node");
    assert_eq!(std::fs::read(stack.work.join("settings.json")).ok(), settings_before, "settings changed");
    stack.sim.check_invariants().expect("invariants");
    stack.stop().await;
}

#[tokio::test]
async fn a_misspelt_login_field_is_refused_by_name() {
    let stack = e2e::Stack::builder().start().await.expect("stack");
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/login", stack.backend_url))
        .json(&json!({"username": "root@pam", "pasword": "demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["field"], "pasword", "{err}");
    stack.stop().await;
}

/// PVE's own parameter check on a login (a user name over 64 characters) is the caller's bad
/// input: 400 naming the field, never a 502 as if PVE had failed.
#[tokio::test]
async fn a_user_name_pve_would_refuse_is_bad_input_not_a_gateway_error() {
    let stack = e2e::Stack::builder().start().await.expect("stack");
    let client = reqwest::Client::new();
    for username in ["x".repeat(65), "é".repeat(40) + "@pam"] {
        let resp = client
            .post(format!("{}/api/v1/login", stack.backend_url))
            .json(&json!({"username": username, "password": "demo"}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let err: Value = resp.json().await.unwrap();
        assert!(status == 400 || status == 401, "{username}: {status} {err}");
        if username.chars().count() > 64 {
            assert_eq!(err["field"], "username", "{err}");
        }
    }
    stack.stop().await;
}
