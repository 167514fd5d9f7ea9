//! Where should a new guest go? (ProxLB's `-b`, with capacity and rules, and a ranking.)

use crate::engine::objective::State;
use crate::engine::problem::{self, Task};
use crate::model::{ClusterSnapshot, Guest, GuestKind, GuestStatus};
use crate::plan::PlanRequest;
use serde::{Deserialize, Serialize};

/// The guest to place.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewGuest {
    pub name: String,
    pub kind: GuestKind,
    pub cpus: f64,
    /// Memory it will use, bytes (its maximum if unsure).
    pub mem_bytes: u64,
    pub disk_bytes: u64,
    pub tags: Vec<String>,
    pub pool: Option<String>,
}

/// One node's verdict, best first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRank {
    pub node: String,
    pub fits: bool,
    /// Objective (imbalance + penalties) with the guest there; lower is better.
    pub score: f64,
    /// Combined use of the node after placing, percent.
    pub use_after: f64,
    pub reason: String,
}

/// Ranks every node for `guest`: nodes that fit first, by the objective the cluster would have;
/// the others after, with why not.
pub fn best_node(snapshot: &ClusterSnapshot, guest: &NewGuest, request: &PlanRequest) -> Vec<NodeRank> {
    if snapshot.nodes.is_empty() {
        return vec![];
    }
    // The candidate joins the snapshot on a phantom offline node (outside the objective), so the
    // rule engine reads its tags and pool like any guest's; each node is then tried by moving it.
    let vmid = snapshot.guests.iter().map(|g| g.vmid).max().unwrap_or(0).saturating_add(1);
    let phantom = "\u{0}new-guest".to_owned();
    let mut with = snapshot.clone();
    with.nodes.push(crate::model::Node { name: phantom.clone(), ..Default::default() });
    with.guests.push(Guest {
        vmid,
        name: guest.name.clone(),
        kind: guest.kind,
        node: phantom,
        status: GuestStatus::Running,
        cpus: guest.cpus,
        cpu_used: guest.cpus,
        mem_max: guest.mem_bytes,
        mem_used: guest.mem_bytes,
        disk_max: guest.disk_bytes,
        disk_used: guest.disk_bytes,
        tags: guest.tags.clone(),
        pool: guest.pool.clone(),
        ..Default::default()
    });
    let mut p = problem::build(&with, request, Task::default());
    let Some(g) = p.guests.iter().position(|i| i.vmid == vmid) else { return vec![] };
    let home = p.guests[g].home;
    p.guests[g].pinned_down = None;
    p.guests[g].frozen = None;
    let mut st = State::new(&p);
    let mut out: Vec<NodeRank> = (0..p.nodes.len())
        .filter(|&t| t != home)
        .map(|t| {
            let name = p.nodes[t].name.clone();
            let verdict = if let Err(e) = p.static_allows(g, t) {
                Err(e)
            } else if !st.has_room(&p, g, t) {
                Err("not enough free memory (or vCPU headroom) after the reserve".to_owned())
            } else if !st.under_target_max(&p, g, t) {
                Err("would exceed the target maximum".to_owned())
            } else if st.apart_mates_on(&p, g, t) > 0 {
                Err("an anti-affinity mate runs there".to_owned())
            } else {
                Ok(())
            };
            let mark = st.mark();
            st.shift(&p, g, t);
            // The new guest costs nothing to "move"; score the cluster's balance and penalties.
            let (score, use_after) = (st.imbalance(&p) + st.penalties(), st.use_pct(&p, t));
            st.rollback(&p, mark, &[(g, home)]);
            match verdict {
                Ok(()) => NodeRank {
                    node: name,
                    fits: true,
                    score,
                    use_after,
                    reason: format!("use after {use_after:.1}%"),
                },
                Err(reason) => NodeRank { node: name, fits: false, score, use_after, reason },
            }
        })
        .collect();
    out.sort_by(|a, b| b.fits.cmp(&a.fits).then(a.score.total_cmp(&b.score)).then(a.node.cmp(&b.node)));
    out
}
