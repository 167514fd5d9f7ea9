//! Maintenance: drain nodes, bring guests back home, and check N+1 headroom.

use crate::engine::problem::Task;
use crate::model::{ClusterSnapshot, GuestStatus, NodeStatus};
use crate::plan::{NPlusOne, Plan, PlanRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to drain and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvacuationRequest {
    pub nodes: Vec<String>,
    /// Stopped guests leave too (their configuration moves; nothing runs).
    pub include_stopped: bool,
    /// Guests ignored for balancing leave too (maintenance is an explicit decision).
    pub move_ignored: bool,
    /// Capacity, reserves, roles and rule configuration, as for a plan.
    pub request: PlanRequest,
}

impl Default for EvacuationRequest {
    fn default() -> Self {
        EvacuationRequest {
            nodes: vec![],
            include_stopped: false,
            move_ignored: true,
            request: PlanRequest::default(),
        }
    }
}

/// Moves every guest off `nodes` that can leave, spreading the load over the remaining nodes
/// (the drained nodes are out of the spread), respecting hard rules and capacity at every step;
/// nothing else moves. Guests that cannot leave are in `why_not`. Steps carry dependencies so a
/// parallel executor may run the independent ones at once.
pub fn evacuate(snapshot: &ClusterSnapshot, evacuation: &EvacuationRequest) -> Plan {
    let task = Task {
        drain: evacuation.nodes.clone(),
        drain_stopped: evacuation.include_stopped,
        drain_ignored: evacuation.move_ignored,
        mandatory_only: true,
        scoped: true,
        ..Task::default()
    };
    crate::engine::run(snapshot, &evacuation.request, task)
}

/// A guest's recorded home (where it ran before an evacuation).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestHome {
    pub vmid: u32,
    pub node: String,
}

/// The inverse of an evacuation: each guest goes back to its recorded home when rules and
/// capacity allow (largest first); the others stay and say why.
pub fn return_home(snapshot: &ClusterSnapshot, homes: &[GuestHome], request: &PlanRequest) -> Plan {
    let homes: BTreeMap<u32, String> = homes.iter().map(|h| (h.vmid, h.node.clone())).collect();
    let task = Task { homes, mandatory_only: true, scoped: true, ..Task::default() };
    crate::engine::run(snapshot, request, task)
}

/// Could the cluster lose this node and restart its running guests elsewhere?
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailoverCheck {
    pub node: String,
    pub ok: bool,
    /// Running guests that would find no node with room (or that rules keep there).
    pub stranded: Vec<u32>,
    pub stranded_mem_bytes: u64,
}

/// N+1 headroom: for each online node, whether its running guests fit on the others (memory with
/// reserve, vCPU ratio, hard rules).
pub fn headroom(snapshot: &ClusterSnapshot, request: &PlanRequest) -> Vec<FailoverCheck> {
    snapshot
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Online)
        .map(|n| failover(snapshot, request, &n.name))
        .collect()
}

/// Could the cluster lose `node` and restart its running guests elsewhere? Drains it as an
/// evacuation would (same capacity and rule checks) and lists the running guests that stay.
pub fn failover(snapshot: &ClusterSnapshot, request: &PlanRequest, node: &str) -> FailoverCheck {
    let request = PlanRequest { keep_n_plus_one: false, ..request.clone() };
    let evacuation = EvacuationRequest {
        nodes: vec![node.to_owned()],
        include_stopped: false,
        move_ignored: true,
        request,
    };
    let plan = evacuate(snapshot, &evacuation);
    let moved: std::collections::HashSet<u32> = plan.steps.iter().map(|s| s.vmid).collect();
    let stranded: Vec<&crate::model::Guest> = snapshot
        .guests_on(node)
        .filter(|g| g.status == GuestStatus::Running && !moved.contains(&g.vmid))
        .collect();
    FailoverCheck {
        node: node.to_owned(),
        ok: stranded.is_empty(),
        stranded: stranded.iter().map(|g| g.vmid).collect(),
        stranded_mem_bytes: stranded.iter().map(|g| g.mem_used).sum(),
    }
}

/// N+1 of a cluster: the loss of the online, non-maintenance node whose running guests hold the
/// most memory (the hardest single loss to absorb), checked with [`failover`]. `None` with fewer
/// than two such nodes.
pub fn n_plus_one(snapshot: &ClusterSnapshot, request: &PlanRequest) -> Option<NPlusOne> {
    let candidates: Vec<&crate::model::Node> =
        snapshot.nodes.iter().filter(|n| n.status == NodeStatus::Online && !n.maintenance).collect();
    if candidates.len() < 2 {
        return None;
    }
    // One pass over the guests, not one per node.
    let mut by_node: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for g in snapshot.guests.iter().filter(|g| g.status == GuestStatus::Running) {
        *by_node.entry(g.node.as_str()).or_default() += g.mem_used;
    }
    let running_mem = |node: &str| by_node.get(node).copied().unwrap_or(0);
    // Ties go to the first node in snapshot order.
    let (largest, mem_bytes) = candidates.iter().map(|n| (n.name.as_str(), running_mem(&n.name))).fold(
        None,
        |best: Option<(&str, u64)>, (n, m)| match best {
            Some((_, bm)) if bm >= m => best,
            _ => Some((n, m)),
        },
    )?;
    let check = failover(snapshot, request, largest);
    Some(NPlusOne {
        node: check.node,
        ok: check.ok,
        mem_bytes,
        stranded: check.stranded,
        stranded_mem_bytes: check.stranded_mem_bytes,
    })
}
