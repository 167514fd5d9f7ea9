//! What the planner is asked for and what it answers.

use crate::model::GuestKind;
use serde::{Deserialize, Serialize};

/// Which resource the balance is measured on (ProxLB's `balancing.method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Memory,
    Cpu,
    Disk,
}

/// Which figure of that resource (ProxLB's `balancing.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// What the guests use now.
    #[default]
    Used,
    /// What the guests are configured with (vCPUs, max memory, disk size).
    Assigned,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanRequest {
    pub method: Method,
    pub mode: Mode,
    /// Balance only when max − min node usage exceeds this many percentage points (ProxLB's
    /// `balanciness`), and stop once it is at or below it.
    pub balanciness: f64,
    /// At most this many migrations in one plan.
    pub max_moves: u32,
    /// A move must lower the spread by at least this many points, so plans never overshoot.
    pub min_gain: f64,
    /// Memory kept free on every node, in bytes (ProxLB's `node_resource_reserve`).
    pub memory_reserve: u64,
}

impl Default for PlanRequest {
    fn default() -> Self {
        PlanRequest {
            method: Method::Memory,
            mode: Mode::Used,
            balanciness: 10.0,
            max_moves: 20,
            min_gain: 0.5,
            memory_reserve: 0,
        }
    }
}

/// How PVE will move the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationKind {
    /// Running VM, live (`online=1`).
    Live,
    /// Running container: shut down, moved, started again (`restart=1`): downtime.
    Restart,
    /// Stopped guest.
    Offline,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    pub vmid: u32,
    pub name: String,
    pub kind: GuestKind,
    pub from: String,
    pub to: String,
    pub migration: MigrationKind,
    /// Memory that crosses the network (live) or is released/claimed, in bytes.
    pub mem_bytes: u64,
    /// Why, in units: "pve2 memory 91.0% → 74.2%, pve4 20.3% → 37.1%".
    pub reason: String,
}

/// One node's usage of the balanced resource, in percent, plus the raw figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub node: String,
    pub used: f64,
    pub total: f64,
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub request: PlanRequest,
    pub steps: Vec<PlanStep>,
    pub before: Vec<NodeLoad>,
    pub after: Vec<NodeLoad>,
    /// max − min node percent before and after.
    pub spread_before: f64,
    pub spread_after: f64,
    /// Plain-words notes: why nothing was done, which guests could not move.
    pub notes: Vec<String>,
}
