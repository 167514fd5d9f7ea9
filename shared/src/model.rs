//! The cluster as the engine sees it: a snapshot of nodes and guests taken from the PVE API.

use serde::{Deserialize, Serialize};

/// Everything the engine needs to plan, collected at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub cluster_name: String,
    /// PVE version of the answering node, e.g. "9.1.2".
    pub pve_version: String,
    /// Unix seconds at collection; supplied by the caller (the engine reads no clock).
    pub collected_at: u64,
    pub quorate: bool,
    pub nodes: Vec<Node>,
    pub guests: Vec<Guest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Online,
    Offline,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub status: NodeStatus,
    /// Logical CPUs of the host.
    pub cpus: u32,
    /// CPU in use, in cores (PVE reports a 0..1 fraction of `cpus`).
    pub cpu_used: f64,
    pub mem_total: u64,
    /// Memory in use on the host, guests and host overhead together.
    pub mem_used: u64,
    /// Root filesystem of the host (what PVE reports as the node's disk).
    pub disk_total: u64,
    pub disk_used: u64,
    /// In maintenance (PVE HA maintenance, or ours): no guest may be placed here.
    #[serde(default)]
    pub maintenance: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestKind {
    Qemu,
    Lxc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestStatus {
    Running,
    Stopped,
    /// paused, suspended, prelaunch, unknown: not moved by the planner.
    Other,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Guest {
    pub vmid: u32,
    pub name: String,
    pub kind: GuestKind,
    pub node: String,
    pub status: GuestStatus,
    #[serde(default)]
    pub template: bool,
    /// Assigned vCPUs.
    pub cpus: f64,
    /// CPU in use, in cores.
    pub cpu_used: f64,
    pub mem_max: u64,
    pub mem_used: u64,
    pub disk_max: u64,
    pub disk_used: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pool: Option<String>,
    /// PVE config lock (`migrate`, `backup`, `snapshot`, …): a locked guest cannot move.
    #[serde(default)]
    pub lock: Option<String>,
    /// Managed by PVE HA (`hastate` present).
    #[serde(default)]
    pub ha_managed: bool,
}

impl Guest {
    pub fn is_running(&self) -> bool {
        self.status == GuestStatus::Running
    }
}

impl ClusterSnapshot {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn guests_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Guest> + 'a {
        self.guests.iter().filter(move |g| g.node == node)
    }
}

/// Splits PVE's tag string (`;`, `,` or space separated, as PVE accepts all three) into tags.
pub fn split_tags(raw: &str) -> Vec<String> {
    raw.split([';', ',', ' ']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_on_every_pve_separator_and_drop_empties() {
        assert_eq!(split_tags("a;b,c d;;"), vec!["a", "b", "c", "d"]);
        assert!(split_tags("").is_empty());
    }
}
