//! The OpenAPI document (`backend/src/http/openapi.rs`), derived from the router itself
//! (utoipa-axum): its public routes say so, it names PVE's two security schemes, and it is served
//! at `GET /api/v1/openapi.json` behind auth like every protected route. (That every documented
//! route is routed and guarded is `backend`'s `http::tests`.)

use e2e::routes;
use e2e::Stack;
use serde_json::Value;
use std::collections::BTreeSet;

const TOKEN: &str = "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b";

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn the_router_s_document_marks_public_routes_and_names_pve_s_auth() {
    let doc = serde_json::to_value(backend::http::openapi::document()).unwrap();
    let routed = documented(&doc);
    assert!(routed.len() >= 25, "the router documents too little: {routed:?}");
    assert!(routed.contains(&("GET".to_owned(), "/api/v1/policy".to_owned())), "{routed:?}");
    // Public routes say so (no security); every other route inherits the document's schemes.
    for path in routes::PUBLIC {
        let item = doc["paths"][path].as_object().unwrap();
        for op in item.values() {
            assert_eq!(op["security"], serde_json::json!([{}]), "{path} is public");
        }
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("pve_ticket") && schemes.contains_key("pve_token"), "{schemes:?}");
}

#[tokio::test]
async fn the_document_is_served_to_callers_with_sys_audit_only() {
    let s = Stack::start(None).await.expect("stack");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/openapi.json", s.backend_url);

    let anon = http.get(&url).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let body: Value = anon.json().await.unwrap();
    assert_eq!(body["error"], "not logged in", "{body}");

    let resp = http.get(&url).header("Authorization", TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let served: Value = resp.json().await.unwrap();
    assert_eq!(served, serde_json::to_value(backend::http::openapi::document()).unwrap());
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"), "{}", served["openapi"]);

    // The demo's nobody@pve has no ACL at all: logged in, but may not read it.
    let nobody = s.login("nobody@pve", "nobody").await.expect("login nobody@pve");
    let resp = nobody.get("/api/v1/openapi.json").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["detail"], "Permission check failed (/, Sys.Audit)", "{body}");
    s.stop().await;
}
