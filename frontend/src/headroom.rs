//! N+1: could the cluster lose any one node and still hold its running guests? For each online
//! node, the memory its running guests use is set against what the other online nodes have free
//! (after the memory reserve the service plans with). The node whose loss leaves the least is the
//! one that decides. Memory only: it is what a failover cannot overcommit.

use shared::api::ClusterView;
use shared::{GuestStatus, NodeStatus};

/// The node whose failure is hardest to absorb, and what would be left (negative: short by).
#[derive(Clone, Debug, PartialEq)]
pub struct Headroom {
    pub node: String,
    pub spare_bytes: i64,
}

pub fn n_plus_one(c: &ClusterView) -> Option<Headroom> {
    let online: Vec<_> = c.snapshot.nodes.iter().filter(|n| n.status == NodeStatus::Online).collect();
    if online.len() < 2 {
        return None;
    }
    let free = |n: &shared::Node| {
        let reserve = c.memory_reserve.get(&n.name).copied().unwrap_or(0);
        n.mem_total.saturating_sub(n.mem_used).saturating_sub(reserve) as i64
    };
    let load = |name: &str| -> i64 {
        c.snapshot
            .guests
            .iter()
            .filter(|g| g.node == name && g.status == GuestStatus::Running)
            .map(|g| g.mem_used as i64)
            .sum()
    };
    // Nodes in maintenance take nothing in, but their loss still has to be absorbed.
    let total_free: i64 = online.iter().filter(|n| !n.maintenance).map(|n| free(n)).sum();
    online
        .iter()
        .map(|n| {
            let own = if n.maintenance { 0 } else { free(n) };
            Headroom { node: n.name.clone(), spare_bytes: total_free - own - load(&n.name) }
        })
        .min_by_key(|h| h.spare_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{ClusterSnapshot, Guest, Node};

    const G: u64 = 1 << 30;

    fn node(name: &str, total: u64, used: u64) -> Node {
        Node {
            name: name.into(),
            status: NodeStatus::Online,
            mem_total: total * G,
            mem_used: used * G,
            ..Default::default()
        }
    }

    fn guest(vmid: u32, node: &str, used: u64) -> Guest {
        Guest {
            vmid,
            node: node.into(),
            status: GuestStatus::Running,
            mem_used: used * G,
            ..Default::default()
        }
    }

    fn view(nodes: Vec<Node>, guests: Vec<Guest>) -> ClusterView {
        ClusterView::of(ClusterSnapshot { nodes, guests, ..Default::default() })
    }

    #[test]
    fn the_hardest_node_to_lose_decides() {
        // pve1 runs 40 GiB; the others have 20 + 30 free → 10 GiB left. pve2's 10 GiB fit easily.
        let c = view(
            vec![node("pve1", 64, 44), node("pve2", 64, 44), node("pve3", 64, 34)],
            vec![guest(100, "pve1", 40), guest(101, "pve2", 10), guest(102, "pve3", 30)],
        );
        let h = n_plus_one(&c).unwrap();
        assert_eq!(h.node, "pve1");
        assert_eq!(h.spare_bytes, (20 + 30 - 40) * G as i64);
    }

    #[test]
    fn short_when_the_others_cannot_take_it_and_none_for_one_node() {
        let c = view(vec![node("a", 64, 60), node("b", 64, 60)], vec![guest(1, "a", 50), guest(2, "b", 50)]);
        assert!(n_plus_one(&c).unwrap().spare_bytes < 0);
        assert_eq!(n_plus_one(&view(vec![node("a", 64, 1)], vec![])), None);
    }
}
