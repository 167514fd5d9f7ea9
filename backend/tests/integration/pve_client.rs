//! `PveClient` against the real simulator (HTTPS on loopback): TLS trust (CA file, pinned
//! fingerprint, neither), API tokens, retries of GETs only, host failover, PVE's words in errors.

use backend::pve::{Connection, Credentials, PveClient, PveError, PveOptions};
use pve_sim::{FaultSpec, RunningSim};
use serde_json::Value;
use std::error::Error as _;
use std::time::Duration;
use test_support::start_sim;

fn opts(url: &str, ca_pem: Option<String>) -> PveOptions {
    PveOptions {
        base_url: url.into(),
        credentials: Credentials::Password { user: "root@pam".into(), password: "demo".into() },
        ca_pem,
        insecure: false,
        timeout: Duration::from_secs(10),
    }
}

fn fast() -> Connection {
    Connection { backoff: Duration::from_millis(5), ..Connection::default() }
}

fn calls(sim: &RunningSim, key: &str) -> u64 {
    sim.request_stats().get(key).copied().unwrap_or(0)
}

/// The whole error chain as one line (reqwest hides the TLS reason in its sources).
fn chain(e: &PveError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[tokio::test]
async fn tls_is_verified_by_default_with_a_ca_file_or_a_pinned_fingerprint() {
    let sim = start_sim(1000.0).await;
    // The simulator's certificate is signed by its own CA: no system root trusts it.
    let plain = PveClient::new(opts(&sim.base_url, None)).unwrap();
    let err = plain.get::<Value>("/version").await.unwrap_err();
    assert!(matches!(err, PveError::Transport { .. }), "{err:?}");
    assert!(chain(&err).to_lowercase().contains("certificate"), "{}", chain(&err));

    let with_ca = PveClient::new(opts(&sim.base_url, Some(sim.ca_pem.clone()))).unwrap();
    assert_eq!(with_ca.get::<Value>("/version").await.unwrap()["version"], "9.1.2");

    let pinned = Connection { fingerprint: Some(sim.fingerprint.clone()), ..fast() };
    let pinned = PveClient::with_connection(opts(&sim.base_url, None), pinned).unwrap();
    assert_eq!(pinned.get::<Value>("/version").await.unwrap()["version"], "9.1.2");

    // A pin overrides the CA: the right CA with the wrong fingerprint is refused.
    let wrong = "00:".repeat(31) + "00";
    let conn = Connection { fingerprint: Some(wrong), ..fast() };
    let other = PveClient::with_connection(opts(&sim.base_url, Some(sim.ca_pem.clone())), conn).unwrap();
    let err = other.get::<Value>("/version").await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("is not the pinned 00:00:") && text.contains(&sim.fingerprint), "{text}");

    let bad = Connection { fingerprint: Some("AB:CD".into()), ..fast() };
    let err = PveClient::with_connection(opts(&sim.base_url, None), bad).err().expect("refused");
    assert!(err.to_string().contains("not a SHA-256 fingerprint"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn api_tokens_need_no_ticket_and_errors_carry_pves_status_and_message() {
    let sim = start_sim(1000.0).await;
    let token = Credentials::Token {
        token_id: "root@pam!rebalancer".into(),
        secret: "5f3e6c2a-8d4b-4e7f-9a1c-2b3d4e5f6a7b".into(),
    };
    let client = PveClient::with_connection(
        PveOptions { credentials: token, ..opts(&sim.base_url, Some(sim.ca_pem.clone())) },
        fast(),
    )
    .unwrap();
    let nodes: Vec<Value> = client.get("/nodes").await.unwrap();
    assert_eq!(nodes.len(), 4);
    assert_eq!(calls(&sim, "POST /access/ticket"), 0, "a token never logs in");

    let err = client.get::<Value>("/nodes/nope/status").await.unwrap_err();
    match &err {
        PveError::Api { status: 500, message, .. } => {
            assert!(message.contains("hostname lookup 'nope' failed"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls(&sim, "GET /nodes/{node}/status"), 1, "a PVE refusal (500) is not retried");
    sim.shutdown().await;
}

#[tokio::test]
async fn gets_ride_out_gateway_errors_with_backoff_and_posts_are_sent_once() {
    let sim = start_sim(1000.0).await;
    let client = PveClient::with_connection(opts(&sim.base_url, Some(sim.ca_pem.clone())), fast()).unwrap();
    let burst =
        |count, path: &str| FaultSpec::ErrorBurst { count, status: 503, path_prefix: Some(path.into()) };

    sim.arm_fault(&burst(2, "/cluster/status")).unwrap();
    let status: Vec<Value> = client.get("/cluster/status").await.expect("third attempt answers");
    assert!(!status.is_empty());
    assert_eq!(calls(&sim, "GET /cluster/status"), 3);

    // Three attempts by default: a longer burst is PVE's (proxy's) answer.
    sim.arm_fault(&burst(5, "/cluster/status")).unwrap();
    let err = client.get::<Value>("/cluster/status").await.unwrap_err();
    assert!(matches!(err, PveError::Api { status: 503, .. }), "{err:?}");
    assert_eq!(calls(&sim, "GET /cluster/status"), 6);

    // A migration is never submitted twice, whatever the answer.
    sim.arm_fault(&burst(1, "/nodes/pve1/qemu/104/migrate")).unwrap();
    let err = client
        .post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3".into()), ("online", "1".into())])
        .await
        .unwrap_err();
    assert!(matches!(err, PveError::Api { status: 503, .. }), "{err:?}");
    assert_eq!(calls(&sim, "POST /nodes/{node}/qemu/{vmid}/migrate"), 1);
    assert_eq!(sim.guest_node(104).as_deref(), Some("pve1"));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_host_fails_over_to_the_next_and_the_client_stays_there() {
    let sim = start_sim(1000.0).await;
    // A port that was free a moment ago: nothing listens there, connections are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    let conn = Connection { fallback_urls: vec![sim.base_url.clone()], ..fast() };
    let client = PveClient::with_connection(opts(&dead, Some(sim.ca_pem.clone())), conn).unwrap();
    assert_eq!(client.current_url(), dead);
    let v: Value = client.get("/version").await.expect("second host answers");
    assert_eq!(v["version"], "9.1.2");
    assert_eq!(client.current_url(), sim.base_url);
    // Login went to the live host too; a write (with its CSRF token) follows the same way.
    assert_eq!(calls(&sim, "POST /access/ticket"), 1);
    let upid = client
        .post("/nodes/pve1/qemu/104/migrate", &[("target", "pve3".into()), ("online", "1".into())])
        .await
        .unwrap();
    assert!(upid.as_str().is_some_and(|u| u.starts_with("UPID:pve1:")), "{upid}");

    // Only unreachable hosts fail over: with every host down the error names the last one.
    let conn = Connection { fallback_urls: vec![dead.clone()], get_attempts: 1, ..fast() };
    let client = PveClient::with_connection(opts(&dead, None), conn).unwrap();
    let err = client.get::<Value>("/version").await.unwrap_err();
    assert!(matches!(&err, PveError::Transport { source, .. } if source.is_connect()), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn task_ages_are_read_on_pves_clock_even_when_it_differs_from_ours() {
    let sim = start_sim(1000.0).await;
    // PVE's clock a year ahead of this machine's (a skewed cluster, or a simulated week).
    sim.advance_clock(365.0 * 86_400.0);
    let client = PveClient::with_connection(opts(&sim.base_url, Some(sim.ca_pem.clone())), fast()).unwrap();
    assert_eq!(client.server_now(), None, "no answer yet, no clock");
    client.get::<Value>("/version").await.unwrap();
    let pve_now = client.server_now().expect("pveproxy's Date header") as f64;
    assert!((pve_now - sim.now()).abs() < 3.0, "PVE's clock {pve_now} vs the simulator's {}", sim.now());

    let form = [("target", "pve3".to_string()), ("online", "1".to_string())];
    let upid = client.post("/nodes/pve1/qemu/101/migrate", &form).await.unwrap();
    let path = format!("/nodes/pve1/tasks/{}/status", upid.as_str().unwrap().replace(':', "%3A"));
    for _ in 0..200 {
        if client.get::<Value>(&path).await.unwrap()["status"] == "stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.guest_node(101).as_deref(), Some("pve3"));
    let ours = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let collected = backend::collect::collect(&client, ours).await.unwrap();
    let request = shared::plan::PlanRequest { cooldown_secs: 3600, ..Default::default() };
    let snapshot = backend::recent::for_plan(collected, &client, &request);
    let recent: Vec<_> =
        snapshot.recent_migrations.iter().map(|m| (m.vmid, m.from.as_str(), m.to.as_str())).collect();
    assert_eq!(recent, vec![(101, "pve1", "pve3")], "a migration a moment old on PVE's clock is recent");
    let at = snapshot.recent_migrations[0].at;
    assert!(at <= ours && ours - at < 120, "placed on our clock: {at} vs {ours}");
    sim.shutdown().await;
}
