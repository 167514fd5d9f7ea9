//! Dependencies for a parallel executor. The search emits actions in an order that is valid when
//! run one by one; here each step learns which earlier steps must finish before it may start so
//! that running any ready steps at once still never overfills a node or breaks anti-affinity:
//! - the same guest's earlier steps;
//! - enough earlier departures from its target to make room, counting pessimistically every
//!   earlier arrival there as already present and every departure not waited for as still
//!   holding its memory (a live migration holds memory on both nodes until it ends);
//! - earlier departures of hard anti-affinity mates from its target.

use super::problem::Problem;
use super::search::Action;

pub fn dependencies(p: &Problem, actions: &[Action]) -> Vec<Vec<usize>> {
    let n = p.nodes.len();
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(actions.len());
    let mut arrived_mem = vec![0.0; n];
    let mut arrived_vcpus = vec![0.0; n];
    let mut last_of_guest: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (k, a) in actions.iter().enumerate() {
        let g = &p.guests[a.guest];
        let mut mine: Vec<usize> = Vec::new();
        if let Some(&j) = last_of_guest.get(&a.guest) {
            mine.push(j);
        }
        arrived_mem[a.to] += g.mem;
        arrived_vcpus[a.to] += g.vcpus;
        let node = &p.nodes[a.to];
        let mut need_mem = node.initial_mem + arrived_mem[a.to] - node.mem_cap;
        let mut need_vcpus = node.vcpu_cap.map_or(0.0, |cap| node.initial_vcpus + arrived_vcpus[a.to] - cap);
        for (j, earlier) in actions[..k].iter().enumerate() {
            if earlier.from != a.to {
                continue;
            }
            let e = &p.guests[earlier.guest];
            let mate = g.apart_hard.iter().any(|grp| e.apart_hard.contains(grp));
            let helps = (need_mem > 1e-6 && e.mem > 0.0) || (need_vcpus > 1e-9 && e.vcpus > 0.0);
            if mate || helps {
                mine.push(j);
                need_mem -= e.mem;
                need_vcpus -= e.vcpus;
            }
        }
        mine.sort_unstable();
        mine.dedup();
        deps.push(mine);
        last_of_guest.insert(a.guest, k);
    }
    deps
}
