//! The service over TLS with a node certificate, as on a PVE node.

use backend::http::serve::{serve, TlsFiles};
use std::time::Duration;
use test_support::temp_dir;

#[test]
fn the_custom_pveproxy_certificate_wins_over_the_cluster_one() {
    let dir = temp_dir("certs");
    for f in ["pve-ssl.pem", "pve-ssl.key"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    assert_eq!(TlsFiles::pve_node(&dir).unwrap().cert, dir.join("pve-ssl.pem"));
    for f in ["pveproxy-ssl.pem", "pveproxy-ssl.key"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    assert_eq!(TlsFiles::pve_node(&dir).unwrap().cert, dir.join("pveproxy-ssl.pem"));
    assert!(TlsFiles::pve_node(&temp_dir("empty")).is_none());
}

#[tokio::test]
async fn serves_https_with_the_given_certificate_and_stops_on_signal() {
    let dir = temp_dir("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("node.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), cert.key_pair.serialize_pem()).unwrap();
    let tls = TlsFiles { cert: dir.join("node.pem"), key: dir.join("node.key") };

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(app, addr, Some(tls), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let mut body = None;
    for _ in 0..50 {
        if let Ok(r) = client.get(format!("https://127.0.0.1:{port}/ok")).send().await {
            body = Some(r.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body.as_deref(), Some("ok"));
    // Plain HTTP to the TLS port fails: nothing is served unencrypted by mistake.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/ok")).await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server).await.expect("stops").unwrap().unwrap();
}
