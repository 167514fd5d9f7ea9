//! Security of the HTTP API against the simulator (real PVE auth semantics on loopback):
//!
//! - every route except health/login/logout refuses requests without valid PVE credentials; the
//!   routes are discovered from the backend's source (`.route("...", method(...))` in
//!   `backend/src/**/*.rs`) at test time and cross-checked with `docs/API.md`, so a new route
//!   cannot be forgotten;
//! - ticket writes without the CSRF header are refused;
//! - `VM.Migrate` is checked per guest; a read-only user sees but cannot act;
//! - secrets (passwords, token secrets, tickets, CSRF tokens) never appear in the service's
//!   debug log or in API answers (the real `pve-rebalancer` binary, `RUST_LOG=debug`, stderr
//!   captured);
//! - the journal file is created 0600.

use backend::execute::{ExecConfig, Journal};
use e2e::routes::{concrete, in_docs as routes_in_docs, in_source as routes_in_source, PUBLIC};
use e2e::{temp_dir, Session as User, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::api::{JobState, JobView};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use test_support::{migrate_posts, moves as plan};

const ROOT_PW: &str = "Root-pw-4b1e9f7c";
const OPS_PW: &str = "Ops-pw-d2a8e610";
const TOKEN_SECRET: &str = "0d9e2f4c-7a1b-4c3d-9e8f-5a6b7c8d9e0f";

// ------------------------------------------------------------------------------------ stack

/// The demo cluster with our own users and ACLs (unique passwords, so a leak is unmistakable).
fn scenario() -> pve_sim::Scenario {
    let demo = std::fs::read_to_string(pve_sim::demo_scenario_path()).expect("demo scenario");
    let (head, rest) = demo.split_once("\nusers:").expect("demo has users");
    let (_, tail) = rest.split_once("\nha_rules:").expect("demo has ha_rules");
    let yaml = format!(
        r#"{head}
users:
  - userid: root@pam
    password: {ROOT_PW}
    tokens: [ {{ id: auto, secret: {TOKEN_SECRET}, privsep: false }} ]
  - {{ userid: audit@pve, password: audit-pw-91 }}
  - {{ userid: nobody@pve, password: nobody-pw-33 }}
  - {{ userid: ops@pve, password: {OPS_PW} }}
acls:
  - {{ path: /, ugid: audit@pve, role: PVEAuditor }}
  - {{ path: /, ugid: ops@pve, role: PVEAuditor }}
  - {{ path: /vms/104, ugid: ops@pve, privs: [VM.Migrate] }}
  - {{ path: /vms/105, ugid: ops@pve, privs: [VM.Migrate] }}
ha_rules:{tail}"#
    );
    pve_sim::Scenario::from_yaml(&yaml).expect("security scenario")
}

async fn stack() -> Stack {
    Stack::builder()
        .scenario(scenario())
        .service_user("root@pam", ROOT_PW)
        .exec_config(ExecConfig {
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_millis(50),
            step_timeout: Duration::from_secs(20),
            ..ExecConfig::default()
        })
        .start()
        .await
        .expect("simulator and backend")
}

async fn login(base: &str, user: &str, pw: &str) -> User {
    e2e::login(base, user, pw).await.expect("login")
}

async fn wait_job(u: &User, id: u64) -> JobView {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: JobView = u.get(&format!("/api/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
        if v.job.state != JobState::Running {
            return v;
        }
        assert!(Instant::now() < deadline, "job {id} did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

// ------------------------------------------------------------------------------------ tests

#[test]
fn the_documented_routes_are_exactly_the_routes_in_the_source() {
    let code = routes_in_source();
    assert!(code.len() >= 10, "route discovery found too little: {code:?}");
    let docs = routes_in_docs();
    let missing_in_docs: Vec<_> = code.difference(&docs).collect();
    let missing_in_code: Vec<_> = docs.difference(&code).collect();
    assert!(
        missing_in_docs.is_empty() && missing_in_code.is_empty(),
        "docs/API.md and the router disagree: undocumented {missing_in_docs:?}, documented but absent {missing_in_code:?}"
    );
}

#[tokio::test]
async fn every_route_but_health_login_logout_refuses_requests_without_valid_credentials() {
    let s = stack().await;
    let anon = reqwest::Client::new();
    let routes = routes_in_source();
    let mut checked = 0;
    for (method, path) in &routes {
        let url = format!("{}{}", s.backend_url, concrete(path));
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let public = PUBLIC.contains(&path.as_str());
        let bogus_ticket = "PVE:root@pam:6B000000::forged";
        let attempts: Vec<(&str, reqwest::RequestBuilder)> = vec![
            ("none", anon.request(m.clone(), &url)),
            (
                "forged ticket",
                anon.request(m.clone(), &url)
                    .header("Cookie", format!("PVEAuthCookie={}", backend::pve::escape_cookie(bogus_ticket)))
                    .header("CSRFPreventionToken", "6B000000:abcdefghijklmnopqrstuvwxyz"),
            ),
            (
                "wrong token secret",
                anon.request(m.clone(), &url)
                    .header("Authorization", "PVEAPIToken=root@pam!auto=not-the-secret"),
            ),
        ];
        for (what, req) in attempts {
            let (status, body) = status_of(req.json(&json!({}))).await;
            if public {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} is public ({what})");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {what}: {body}");
                assert_eq!(body["error"], "not logged in", "{method} {path}: {body}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 7 * 3, "only {checked} protected probes");
    assert_eq!(migrate_posts(&s.sim), 0);
    s.stop().await;
}

#[tokio::test]
async fn ticket_writes_without_the_csrf_header_are_refused() {
    let s = stack().await;
    let u = login(&s.backend_url, "root@pam", ROOT_PW).await;
    let writes: Vec<_> =
        routes_in_source().into_iter().filter(|(m, p)| m != "GET" && !PUBLIC.contains(&p.as_str())).collect();
    assert!(writes.len() >= 3, "{writes:?}");
    for (method, path) in &writes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}{}", s.backend_url, concrete(path));
        let (status, body) = status_of(u.http.request(m.clone(), &url).json(&json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} without CSRF: {body}");
        assert!(body["detail"].as_str().unwrap_or("").contains("CSRFPreventionToken"), "{body}");
        // A malformed header is no better than none.
        let (status, _) =
            status_of(u.http.request(m.clone(), &url).header("CSRFPreventionToken", "x").json(&json!({})))
                .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} with a malformed CSRF token");
        // With the token the request gets past authentication (whatever the handler answers).
        let (status, body) =
            status_of(u.http.request(m, &url).header("CSRFPreventionToken", &u.csrf).json(&json!({}))).await;
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
            "{method} {path} with CSRF: {body}"
        );
    }
    assert_eq!(migrate_posts(&s.sim), 0);
    s.stop().await;
}

#[tokio::test]
async fn vm_migrate_is_checked_for_every_guest_of_the_plan() {
    let s = stack().await;
    let ops = login(&s.backend_url, "ops@pve", OPS_PW).await;
    // ops@pve holds VM.Migrate on /vms/104 and /vms/105 only.
    let p = plan(&[(104, "pve1", "pve3"), (111, "pve1", "pve4")]);
    let (status, body) = status_of(ops.post("/api/v1/plan/execute").json(&json!({"plan": p}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["detail"], "Permission check failed (/vms/111, VM.Migrate)", "{body}");
    assert_eq!(migrate_posts(&s.sim), 0, "nothing submitted");
    let jobs: Value = ops.get("/api/v1/jobs").send().await.unwrap().json().await.unwrap();
    assert_eq!(jobs, json!([]), "no job recorded for a refused request");

    // Only the permitted guest selected: allowed, and it runs.
    let (status, body) =
        status_of(ops.post("/api/v1/plan/execute").json(&json!({"plan": p, "steps": [104]}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let v = wait_job(&ops, body["job_id"].as_u64().unwrap()).await;
    assert_eq!(v.job.state, JobState::Done, "{v:#?}");
    assert_eq!(s.sim.guest_node(104).as_deref(), Some("pve3"));
    assert_eq!(s.sim.guest_node(111).as_deref(), Some("pve1"));

    // A job root starts with a guest ops may not migrate: ops cannot cancel it.
    let root = login(&s.backend_url, "root@pam", ROOT_PW).await;
    s.sim.arm_fault(&pve_sim::FaultSpec::TaskHang { vmid: Some(111), count: 1 }).unwrap();
    let (status, body) =
        status_of(root.post("/api/v1/plan/execute").json(&json!({"plan": plan(&[(111, "pve1", "pve4")])})))
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["job_id"].as_u64().unwrap();
    let (status, body) = status_of(ops.post(&format!("/api/v1/jobs/{id}/cancel"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["detail"], "Permission check failed (/vms/111, VM.Migrate)");
    let (status, _) = status_of(root.post(&format!("/api/v1/jobs/{id}/cancel"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(wait_job(&root, id).await.job.state, JobState::Cancelled);
    s.sim.check_invariants().expect("invariants");
    s.stop().await;
}

#[tokio::test]
async fn a_read_only_user_sees_but_cannot_act_and_a_user_without_acl_sees_nothing() {
    let s = stack().await;
    let audit = login(&s.backend_url, "audit@pve", "audit-pw-91").await;
    let (status, cluster) = status_of(audit.get("/api/v1/cluster")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cluster.to_string().contains("pve1"));
    let (status, plan_body) = status_of(audit.post("/api/v1/plan").json(&json!({"balanciness": 5.0}))).await;
    assert_eq!(status, StatusCode::OK, "planning changes nothing: {plan_body}");
    let (status, _) = status_of(audit.get("/api/v1/jobs")).await;
    assert_eq!(status, StatusCode::OK);
    let p = plan(&[(104, "pve1", "pve3")]);
    let (status, body) = status_of(audit.post("/api/v1/plan/execute").json(&json!({"plan": p}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["detail"], "Permission check failed (/vms/104, VM.Migrate)");

    let nobody = login(&s.backend_url, "nobody@pve", "nobody-pw-33").await;
    for path in ["/api/v1/cluster", "/api/v1/jobs", "/api/v1/jobs/1"] {
        let (status, body) = status_of(nobody.get(path)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, _) = status_of(nobody.post("/api/v1/plan").json(&json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(migrate_posts(&s.sim), 0);
    s.stop().await;
}

#[tokio::test]
async fn the_journal_file_is_private() {
    let dir = temp_dir("mode");
    let path = dir.join("journal.sqlite");
    let _j = Journal::open(&path).expect("journal");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "journal mode {mode:o}");
}

// ------------------------------------------------------------ secrets in logs and answers

/// The `pve-rebalancer` binary cargo built next to this test (`cargo test --workspace` builds it).

#[tokio::test]
async fn secrets_never_appear_in_the_debug_log_or_in_answers() {
    let bin = e2e::service_binary();
    let mut cfg = pve_sim::SimConfig::new(scenario());
    cfg.time_scale = 1000.0;
    let sim = pve_sim::start(cfg).await.expect("simulator");
    let dir = temp_dir("log");
    std::fs::write(dir.join("ca.pem"), &sim.ca_pem).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stderr_path = dir.join("stderr.log");
    let mut child = tokio::process::Command::new(&bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--pve-url", &sim.base_url])
        .arg("--pve-ca")
        .arg(dir.join("ca.pem"))
        .arg("--csrf-key")
        .arg(&sim.csrf_key)
        .arg("--journal")
        .arg(dir.join("journal.sqlite"))
        .arg("--lock-dir")
        .arg(dir.join("lock"))
        .env("PVE_REBALANCER_USER", "root@pam")
        .env("PVE_REBALANCER_PASSWORD", ROOT_PW)
        .env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start pve-rebalancer");
    let url = format!("http://127.0.0.1:{port}");
    let anon = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if anon.get(format!("{url}/api/v1/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "pve-rebalancer did not answer within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Traffic that carries every kind of secret.
    let mut secrets: Vec<String> =
        vec![ROOT_PW.into(), OPS_PW.into(), TOKEN_SECRET.into(), "Wrong-pw-5c7d".into()];
    let resp = anon
        .post(format!("{url}/api/v1/login"))
        .json(&json!({"username": "root@pam", "password": ROOT_PW}))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("ticket").is_none(), "the ticket goes into the HttpOnly cookie only: {body}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let ticket_cookie = cookie.split(';').next().unwrap().trim_start_matches("PVEAuthCookie=").to_owned();
    assert!(ticket_cookie.len() > 20);
    secrets.push(ticket_cookie.clone());
    secrets.push(body["CSRFPreventionToken"].as_str().unwrap().to_owned());
    let root = login(&url, "root@pam", ROOT_PW).await;
    let ops = login(&url, "ops@pve", OPS_PW).await;
    secrets.push(root.csrf.clone());
    secrets.push(ops.csrf.clone());
    let (st, _) = status_of(
        anon.post(format!("{url}/api/v1/login"))
            .json(&json!({"username": "root@pam", "password": "Wrong-pw-5c7d"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let mut answers = String::new();
    for req in [
        root.get("/api/v1/cluster"),
        root.post("/api/v1/plan").json(&json!({"balanciness": 5.0})),
        root.get("/api/v1/jobs"),
        ops.post("/api/v1/plan/execute").json(&json!({"plan": plan(&[(111, "pve1", "pve4")])})),
        root.post("/api/v1/plan/execute").json(&json!({"plan": plan(&[(104, "pve1", "pve3")])})),
        anon.get(format!("{url}/api/v1/cluster"))
            .header("Authorization", format!("PVEAPIToken=root@pam!auto={TOKEN_SECRET}")),
        anon.get(format!("{url}/api/v1/cluster"))
            .header("Authorization", "PVEAPIToken=root@pam!auto=Wrong-pw-5c7d"),
        root.post("/api/v1/plan/execute").json(&json!({"plan": "not a plan"})),
    ] {
        let resp = req.send().await.unwrap();
        answers.push_str(&resp.text().await.unwrap_or_default());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs: Value = root.get("/api/v1/jobs").send().await.unwrap().json().await.unwrap();
        if jobs.as_array().is_some_and(|a| a.iter().all(|j| j["state"] != "running")) {
            answers.push_str(&jobs.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "job did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jv = root.get("/api/v1/jobs/1").send().await.unwrap().text().await.unwrap();
    answers.push_str(&jv);
    let mode = std::fs::metadata(dir.join("journal.sqlite")).unwrap().permissions().mode() & 0o777;
    child.kill().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(log.contains("execution started"), "the debug log was captured: {} bytes", log.len());
    assert_eq!(mode, 0o600, "the service's journal mode {mode:o}");
    // Tickets are also recognisable by shape, escaped or not.
    for shape in ["PVE:root@pam:", "PVE%3Aroot%40pam%3A", "PVE:ops@pve:", "PVE%3Aops%40pve%3A"] {
        assert!(!log.contains(shape), "a ticket ({shape}…) is in the log");
        assert!(!answers.contains(shape), "a ticket ({shape}…) is in an API answer");
    }
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret ({}…) is in the log", &secret[..4]);
        assert!(!answers.contains(secret.as_str()), "a secret ({}…) is in an API answer", &secret[..4]);
    }
    let journal = std::fs::read(dir.join("journal.sqlite")).unwrap();
    let journal = String::from_utf8_lossy(&journal);
    for secret in &secrets {
        assert!(!journal.contains(secret.as_str()), "a secret ({}…) is in the journal", &secret[..4]);
    }
    sim.shutdown().await;
}
