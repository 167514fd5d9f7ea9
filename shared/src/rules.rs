//! What tags say about a guest. The full rule engine (pools, HA rules, config, conflicts) grows
//! here; this first cut reads the tags ProxLB and ProxBalance users already put on guests.

use crate::model::{ClusterSnapshot, Guest};

/// The constraints tags put on one guest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GuestRules {
    /// Never moved by balancing (`plb_ignore_*`, ProxBalance `ignore`).
    pub ignored: bool,
    /// May only run on these nodes (`plb_pin_<node>`, repeatable); empty = anywhere.
    pub pinned_to: Vec<String>,
    /// Guests sharing a group should run on distinct nodes (`plb_anti_affinity_*`,
    /// ProxBalance `exclude_<group>`).
    pub anti_affinity: Vec<String>,
}

impl GuestRules {
    /// Reads the tags of `guest`; pins name nodes case-insensitively and resolve to the cluster's
    /// spelling. Pins to nodes that do not exist are dropped here (diagnostics come with the
    /// rule engine).
    pub fn of(guest: &Guest, snapshot: &ClusterSnapshot) -> GuestRules {
        let mut rules = GuestRules::default();
        for tag in &guest.tags {
            let lower = tag.to_ascii_lowercase();
            if lower == "ignore" || lower.starts_with("plb_ignore") {
                rules.ignored = true;
            } else if let Some(node) = lower.strip_prefix("plb_pin_") {
                if let Some(n) = snapshot.nodes.iter().find(|n| n.name.eq_ignore_ascii_case(node)) {
                    rules.pinned_to.push(n.name.clone());
                }
            } else if lower.starts_with("plb_anti_affinity") {
                rules.anti_affinity.push(lower.clone());
            } else if let Some(group) = lower.strip_prefix("exclude_") {
                rules.anti_affinity.push(format!("exclude_{group}"));
            }
        }
        rules
    }

    pub fn allows(&self, node: &str) -> bool {
        self.pinned_to.is_empty() || self.pinned_to.iter().any(|p| p == node)
    }
}
