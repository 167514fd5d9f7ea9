//! `GET /metrics`: the cluster and the executor in Prometheus' text exposition format (0.0.4).
//!
//! Rendering is a pure function of what the handler gathered (a fresh collection, the journal's
//! totals), so its format is unit-tested; the route itself sits behind auth like every other
//! (`Sys.Audit` on `/`; a Prometheus scraper uses an API token in `Authorization`).

use shared::api::ClusterView;
use shared::{GuestKind, NodeStatus};
use std::fmt::Write;

/// What one scrape reports besides the snapshot.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// Jobs per state, from the journal (empty without one).
    pub jobs: Vec<(String, u64)>,
    /// Steps per state.
    pub steps: Vec<(String, u64)>,
    /// Seconds the collection for this scrape took.
    pub collection_seconds: f64,
    /// Whether execution is enabled (a journal is open).
    pub executor: bool,
    /// PVE API requests the service sent since it started, and how many failed.
    pub pve_calls: (u64, u64),
}

/// Label values escaped as the format asks (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let value = if value.is_finite() { format!("{value}") } else { "NaN".into() };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

/// Coefficient of variation (population standard deviation / mean) of `xs`; 0 when the mean is 0.
pub fn cv(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return 0.0;
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

pub fn render(view: &ClusterView, extra: &Extra) -> String {
    let mut o = Out(String::new());
    let snap = &view.snapshot;
    o.family("pve_rebalancer_node_online", "gauge", "1 when the node is online in PVE.");
    for n in &snap.nodes {
        o.sample(
            "pve_rebalancer_node_online",
            &[("node", &n.name)],
            f64::from(n.status == NodeStatus::Online),
        );
    }
    o.family("pve_rebalancer_node_maintenance", "gauge", "1 when the node is in maintenance.");
    for n in &snap.nodes {
        o.sample("pve_rebalancer_node_maintenance", &[("node", &n.name)], f64::from(n.maintenance));
    }
    for (resource, loads) in [("cpu", &view.cpu), ("memory", &view.memory), ("disk", &view.disk)] {
        let name = format!("pve_rebalancer_node_{resource}_percent");
        o.family(&name, "gauge", &format!("Node {resource} usage in percent (0-100)."));
        for l in loads {
            o.sample(&name, &[("node", &l.node)], l.percent);
        }
    }
    o.family("pve_rebalancer_node_guests", "gauge", "Guests on the node by kind (templates excluded).");
    for n in &snap.nodes {
        for (kind, k) in [(GuestKind::Qemu, "qemu"), (GuestKind::Lxc, "lxc")] {
            let count =
                snap.guests.iter().filter(|g| g.node == n.name && g.kind == kind && !g.template).count();
            o.sample("pve_rebalancer_node_guests", &[("node", &n.name), ("kind", k)], count as f64);
        }
    }
    let balanced = |l: &&shared::NodeLoad| {
        snap.node(&l.node).is_some_and(|n| n.status == NodeStatus::Online && !n.maintenance)
    };
    o.family(
        "pve_rebalancer_imbalance_spread",
        "gauge",
        "Max minus min usage (percentage points) over online nodes not in maintenance.",
    );
    o.sample("pve_rebalancer_imbalance_spread", &[("resource", "memory")], view.memory_spread);
    o.sample("pve_rebalancer_imbalance_spread", &[("resource", "cpu")], view.cpu_spread);
    o.family("pve_rebalancer_imbalance_cv", "gauge", "Coefficient of variation of node usage (same nodes).");
    for (resource, loads) in [("memory", &view.memory), ("cpu", &view.cpu)] {
        let xs: Vec<f64> = loads.iter().filter(balanced).map(|l| l.percent).collect();
        o.sample("pve_rebalancer_imbalance_cv", &[("resource", resource)], cv(&xs));
    }
    o.family("pve_rebalancer_jobs", "gauge", "Execution jobs in the journal by state.");
    for (state, n) in &extra.jobs {
        o.sample("pve_rebalancer_jobs", &[("state", state)], *n as f64);
    }
    o.family("pve_rebalancer_steps", "gauge", "Migration steps in the journal by state.");
    for (state, n) in &extra.steps {
        o.sample("pve_rebalancer_steps", &[("state", state)], *n as f64);
    }
    let in_flight = extra.steps.iter().filter(|(s, _)| s == "running").map(|(_, n)| *n).sum::<u64>();
    o.family("pve_rebalancer_migrations_in_flight", "gauge", "Migration steps running now.");
    o.sample("pve_rebalancer_migrations_in_flight", &[], in_flight as f64);
    o.family("pve_rebalancer_executor_enabled", "gauge", "1 when execution is enabled (journal open).");
    o.sample("pve_rebalancer_executor_enabled", &[], f64::from(extra.executor));
    o.family(
        "pve_rebalancer_collection_duration_seconds",
        "gauge",
        "How long collecting the cluster state for this scrape took.",
    );
    o.sample("pve_rebalancer_collection_duration_seconds", &[], extra.collection_seconds);
    o.family("pve_rebalancer_pve_api_requests_total", "counter", "PVE API requests sent as the service.");
    o.sample("pve_rebalancer_pve_api_requests_total", &[], extra.pve_calls.0 as f64);
    o.family(
        "pve_rebalancer_pve_api_errors_total",
        "counter",
        "PVE API requests that failed (transport errors and PVE refusals).",
    );
    o.sample("pve_rebalancer_pve_api_errors_total", &[], extra.pve_calls.1 as f64);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cv_of_equal_values_is_zero_and_grows_with_spread() {
        assert_eq!(cv(&[50.0, 50.0, 50.0]), 0.0);
        assert!((cv(&[25.0, 75.0]) - 0.5).abs() < 1e-9);
        assert_eq!(cv(&[]), 0.0);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
