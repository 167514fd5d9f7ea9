//! Serving the router over plain HTTP or TLS, until a shutdown signal.
//!
//! On a PVE node the service answers the PVE UI's pages, which are HTTPS on port 8006; a browser
//! only sends the `PVEAuthCookie` along and accepts the answer over TLS with a certificate it
//! already trusts, so the service uses the node's own certificate (`TlsFiles::pve_node`).

use anyhow::Context;
use axum::Router;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate pveproxy itself serves: a custom `pveproxy-ssl.*` when present, else the
    /// cluster-CA-signed `pve-ssl.*`.
    pub fn pve_node(dir: &Path) -> Option<TlsFiles> {
        ["pveproxy-ssl", "pve-ssl"].iter().find_map(|stem| {
            let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
            (cert.exists() && key.exists()).then_some(TlsFiles { cert, key })
        })
    }
}

/// Binds `addr`, prints the one line tools wait for (`pve-rebalancer listening on URL`), and
/// serves until `shutdown` completes (then gives open requests a few seconds).
pub async fn serve(
    app: Router,
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("pve-rebalancer listening on {scheme}://{local}");
    tracing::info!(addr = %local, scheme, "serving");
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    match tls {
        Some(files) => {
            // rustls needs one process-wide crypto provider; ring keeps the build free of C/CMake.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS certificate {} and key {}",
                        files.cert.display(),
                        files.key.display()
                    )
                })?;
            axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
        None => axum_server::from_tcp(listener).handle(handle).serve(app.into_make_service()).await?,
    }
    Ok(())
}
