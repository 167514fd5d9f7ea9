//! Which browser origins may call us with the user's PVE cookie: the PVE web UI of this
//! cluster's own nodes (`https://<node name or address>:8006`), exact matches only, plus the
//! names an admin configures (`serve --ui-origin`, e.g. the nodes' FQDNs). Anything else gets no
//! CORS headers, so a look-alike (`https://pve1:8006.evil.example`) cannot read our answers.

use crate::pve::PveClient;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::RwLock;

/// The hosts whose port-8006 HTTPS origin is trusted; refreshed from `/cluster/status`.
#[derive(Debug, Default)]
pub struct Origins {
    configured: BTreeSet<String>,
    nodes: RwLock<BTreeSet<String>>,
}

impl Origins {
    /// Trusts `configured` hosts (lower case) besides the nodes found later.
    pub fn new(configured: impl IntoIterator<Item = String>) -> Origins {
        Origins {
            configured: configured.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            nodes: Default::default(),
        }
    }

    /// Is `origin` exactly `https://<trusted host>:8006`?
    pub fn allows(&self, origin: &str) -> bool {
        let Some(host) = origin.strip_prefix("https://").and_then(|h| h.strip_suffix(":8006")) else {
            return false;
        };
        // The sets hold bare names and addresses only, so membership is the whole check.
        let host =
            host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_ascii_lowercase();
        self.configured.contains(&host)
            || self.nodes.read().unwrap_or_else(|e| e.into_inner()).contains(&host)
    }

    /// Replaces the node hosts with those `/cluster/status` names (node names and addresses).
    pub fn set_nodes(&self, status: &[Value]) {
        let hosts = status
            .iter()
            .filter(|row| row.get("type").and_then(Value::as_str) == Some("node"))
            .flat_map(|row| {
                ["name", "ip"].map(|k| row.get(k).and_then(Value::as_str).map(str::to_ascii_lowercase))
            })
            .flatten()
            .collect();
        *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = hosts;
    }

    /// Reads the cluster's nodes now; on failure the hosts known so far stay.
    pub async fn refresh(&self, pve: &PveClient) {
        match pve.get::<Vec<Value>>("/cluster/status").await {
            Ok(status) => self.set_nodes(&status),
            Err(e) => tracing::warn!(error = %e, "CORS origins not refreshed from /cluster/status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_cluster_s_ui_origins_exactly() {
        let o = Origins::new(["pve1.example.com".to_owned()]);
        o.set_nodes(&[
            serde_json::json!({"type": "cluster", "name": "lab"}),
            serde_json::json!({"type": "node", "name": "pve1", "ip": "192.0.2.11"}),
            serde_json::json!({"type": "node", "name": "pve2", "ip": "2001:db8::2"}),
        ]);
        for ok in [
            "https://pve1:8006",
            "https://PVE1:8006",
            "https://192.0.2.11:8006",
            "https://[2001:db8::2]:8006",
            "https://pve1.example.com:8006",
        ] {
            assert!(o.allows(ok), "{ok}");
        }
        for bad in [
            "https://pve1:8006.evil.example",
            "https://evil.example:8006",
            "null",
            "http://pve1:8006",
            "https://pve1:8007",
            "https://lab:8006",
            "https://pve1",
            "https://user@pve1:8006",
            "https://pve3:8006",
        ] {
            assert!(!o.allows(bad), "{bad}");
        }
    }
}
