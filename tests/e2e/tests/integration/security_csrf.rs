//! Issue 22: the CSRF token of every ticket-authenticated write is verified as pveproxy verifies
//! it: PVE's signature (the key derived from `pve-www.key`; here the simulator's, which signs
//! its tokens exactly as PVE does), for the ticket's user, within PVE's age window. Forged,
//! expired, another user's and absent tokens are refused with 403 on every write route; the
//! token the simulator handed out at login passes; API-token callers need none.

use e2e::routes::{concrete, in_source as routes_in_source, PUBLIC};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token signed with the simulator's key file, as PVE signs, issued at `at`.
fn signed(sim: &pve_sim::RunningSim, userid: &str, at: i64) -> String {
    pve_sim::auth::csrf_token(&std::fs::read(&sim.csrf_key).unwrap(), userid, at)
}

async fn call(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.json(&json!({})).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_ticket_write_needs_pves_own_csrf_token_for_its_user() {
    let s = e2e::Stack::builder().start().await.unwrap();
    let root = s.login("root@pam", "demo").await.unwrap();
    let audit = s.login("audit@pve", "audit").await.unwrap();
    let writes: Vec<(String, String)> =
        routes_in_source().into_iter().filter(|(m, p)| m != "GET" && !PUBLIC.contains(&p.as_str())).collect();
    assert!(writes.len() >= 8, "{writes:?}");
    let t = now();
    let bad: Vec<(&str, Option<String>)> = vec![
        ("absent", None),
        ("forged (well-formed, unsigned)", Some(format!("{t:08X}:{}", "A".repeat(43)))),
        ("signed with another key", Some(pve_sim::auth::csrf_token(b"not PVE's key", "root@pam", t))),
        ("expired (2 h old)", Some(signed(&s.sim, "root@pam", t - 7200))),
        ("issued 10 min ahead", Some(signed(&s.sim, "root@pam", t + 600))),
        ("another user's (audit@pve's from its login)", Some(audit.csrf.clone())),
        ("another user's, freshly signed", Some(signed(&s.sim, "audit@pve", t))),
    ];
    for (method, path) in &writes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}{}", s.backend_url, concrete(path));
        for (what, token) in &bad {
            let mut req = root.http.request(m.clone(), &url);
            if let Some(t) = token {
                req = req.header("CSRFPreventionToken", t);
            }
            let (status, body) = call(req).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with a {what} token: {body}");
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("CSRFPreventionToken"), "{method} {path} ({what}): {body}");
        }
        // The simulator's real token from login, and one it would sign now, pass the check.
        for token in [root.csrf.clone(), signed(&s.sim, "root@pam", t - 60)] {
            let (status, body) =
                call(root.http.request(m.clone(), &url).header("CSRFPreventionToken", token)).await;
            assert!(
                ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                "{method} {path} with PVE's token: {status} {body}"
            );
        }
        // API-token callers send no CSRF token, as with PVE.
        let (status, body) =
            call(reqwest::Client::new().request(m.clone(), &url).header(
                "Authorization",
                "PVEAPIToken=root@pam!rebalancer=5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b",
            ))
            .await;
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
            "{method} {path} with an API token: {status} {body}"
        );
    }
    // Nothing the refused requests asked for happened.
    let posts: u64 = s
        .sim
        .request_stats()
        .iter()
        .filter(|(k, _)| k.starts_with("POST") && k.ends_with("/migrate"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(posts, 0);
    s.stop().await;
}

#[tokio::test]
async fn without_pves_key_ticket_writes_are_refused_with_a_clear_reason() {
    let s = e2e::Stack::builder().start().await.unwrap();
    // The same service, but pointed at a key file that does not exist (not on a PVE node).
    let missing = std::env::temp_dir().join("pvrb-no-such-dir/pve-www.key");
    let app = backend::http::router(s.state.clone().with_csrf_key(&missing), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let root = e2e::login(&url, "root@pam", "demo").await.unwrap();
    let r = root.http.put(format!("{url}/api/v1/settings")).header("CSRFPreventionToken", &root.csrf);
    let (status, body) = call(r).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(missing.to_str().unwrap()) && detail.contains("--csrf-key"), "{body}");
    server.abort();
    s.stop().await;
}
