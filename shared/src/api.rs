//! Types of the backend's HTTP API (`/api/v1`), shared by the backend and the panel.

use crate::model::ClusterSnapshot;
use crate::plan::{Method, Mode, NodeLoad};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/cluster`: the snapshot plus each node's usage per resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub snapshot: ClusterSnapshot,
    pub memory: Vec<NodeLoad>,
    pub cpu: Vec<NodeLoad>,
    pub disk: Vec<NodeLoad>,
    /// Spread (max − min %) of memory and CPU over the balanced nodes.
    pub memory_spread: f64,
    pub cpu_spread: f64,
}

impl ClusterView {
    pub fn of(snapshot: ClusterSnapshot) -> ClusterView {
        let load = |m| crate::planner::node_loads(&snapshot, m, Mode::Used);
        let (memory, cpu, disk) = (load(Method::Memory), load(Method::Cpu), load(Method::Disk));
        let spread = |loads: &[NodeLoad]| {
            let balanced = |l: &&NodeLoad| {
                snapshot
                    .node(&l.node)
                    .is_some_and(|n| n.status == crate::NodeStatus::Online && !n.maintenance)
            };
            let it = || loads.iter().filter(balanced).map(|l| l.percent);
            let (hi, lo) = (it().fold(f64::NEG_INFINITY, f64::max), it().fold(f64::INFINITY, f64::min));
            if hi >= lo {
                hi - lo
            } else {
                0.0
            }
        };
        let (memory_spread, cpu_spread) = (spread(&memory), spread(&cpu));
        ClusterView { snapshot, memory, cpu, disk, memory_spread, cpu_spread }
    }
}

/// Every error the API returns: what went wrong, the detail (PVE's own message where there is
/// one), and the offending field for bad input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
