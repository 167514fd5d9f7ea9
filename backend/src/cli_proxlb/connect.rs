//! Connecting with failover over `proxmox_api.hosts`, and what failures mean for the exit code.

use crate::config::ProxlbConfig;
use crate::pve::{PveClient, PveError};
use serde_json::Value;
use std::time::Duration;

/// Why a run failed, by ProxLB's exit codes.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the file is unreadable or invalid.
    Config(String),
    /// Exit 1: PVE or the system refused (403, journal not writable).
    Permission(String),
    /// Exit 2: authentication, TLS or connection.
    Connection(String),
    /// Exit 1: anything else.
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Config(m) | Failure::Permission(m) | Failure::Connection(m) | Failure::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Connection(_) => 2,
            _ => 1,
        }
    }

    /// Prints the message (stderr, with its cause) and returns the exit code.
    pub fn report(&self) -> i32 {
        eprintln!("pve-rebalancer: {self}");
        self.exit_code()
    }

    pub fn from_pve(e: PveError) -> Failure {
        let msg = error_chain(&e);
        match &e {
            PveError::Transport { .. } | PveError::Setup(_) => Failure::Connection(msg),
            PveError::Api { status: 401, .. } => Failure::Connection(format!("authentication failed: {msg}")),
            PveError::Api { status: 403, .. } => Failure::Permission(format!("permission denied: {msg}")),
            _ => Failure::Other(msg),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A logged-in client on the first host that answers, trying `hosts` in order (each `retries`
/// times, `wait_time` apart). Wrong credentials stop at once: they are wrong on every node.
pub async fn connect(cfg: &ProxlbConfig) -> Result<PveClient, Failure> {
    let credentials = cfg.credentials(|k| std::env::var(k).ok()).map_err(Failure::Config)?;
    let ca_pem =
        match &cfg.rebalancer.ca_file {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                Failure::Config(format!("rebalancer.ca_file {}: cannot read: {e}", p.display()))
            })?),
            None => None,
        };
    let attempts = cfg.proxmox_api.retries.max(1);
    let wait = Duration::from_secs_f64(cfg.proxmox_api.wait_time.max(0.0));
    let mut last = Failure::Connection("no host in proxmox_api.hosts".into());
    for opts in cfg.pve_options(&credentials, ca_pem) {
        let url = opts.base_url.clone();
        let client = PveClient::new(opts).map_err(Failure::from_pve)?;
        for attempt in 1..=attempts {
            match client.get::<Value>("/version").await {
                Ok(_) => {
                    tracing::debug!("connected to {url}");
                    return Ok(client);
                }
                Err(e) => {
                    let f = Failure::from_pve(e);
                    if !matches!(&f, Failure::Connection(m) if !m.starts_with("authentication")) {
                        return Err(f);
                    }
                    tracing::warn!("{url} (attempt {attempt}/{attempts}): {f}");
                    last = f;
                    if attempt < attempts {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }
    Err(last)
}
