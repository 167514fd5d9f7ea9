//! Exhaustive optimum on tiny clusters: every assignment of the movable running guests, so the
//! best spread reachable with at most k moved guests is known exactly.

use shared::rules::{policies, RuleConfig};
use shared::ClusterSnapshot;

/// A tiny instance in the form the brute force needs.
#[derive(Clone, Debug)]
pub struct Tiny {
    pub nodes: Vec<String>,
    pub caps: Vec<f64>,
    /// Node use that does not move: host overhead, stopped and unmovable guests.
    pub base: Vec<f64>,
    /// Movable running guests: vmid, used bytes, home node index, allowed nodes.
    pub guests: Vec<(u32, f64, usize, Vec<bool>)>,
}

/// Upper bound on assignments enumerated.
pub const MAX_ASSIGNMENTS: u64 = 2_000_000;

impl Tiny {
    pub fn from_snapshot(s: &ClusterSnapshot, rules: &RuleConfig) -> Tiny {
        let pol = policies(s, rules);
        let nodes: Vec<String> = s.nodes.iter().map(|n| n.name.clone()).collect();
        let caps: Vec<f64> = s.nodes.iter().map(|n| n.mem_total as f64).collect();
        let mut base: Vec<f64> = s.nodes.iter().map(|n| n.mem_used as f64).collect();
        let mut guests = Vec::new();
        for g in s.guests.iter().filter(|g| g.is_running()) {
            let Some(home) = nodes.iter().position(|n| *n == g.node) else { continue };
            let p = pol.guest(g.vmid);
            if p.is_some_and(|p| p.ignored.is_some()) || g.template || g.lock.is_some() {
                continue;
            }
            let allowed: Vec<bool> = nodes
                .iter()
                .map(|n| p.and_then(|p| p.allowed.as_ref()).is_none_or(|a| a.contains(n)) || *n == g.node)
                .collect();
            base[home] -= g.mem_used as f64;
            guests.push((g.vmid, g.mem_used as f64, home, allowed));
        }
        Tiny { nodes, caps, base, guests }
    }

    fn spread(&self, used: &[f64]) -> f64 {
        let pct = used.iter().zip(&self.caps).map(|(u, c)| if *c > 0.0 { u / c * 100.0 } else { 0.0 });
        let (lo, hi) = pct.fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p), hi.max(p)));
        hi - lo
    }

    /// `best[k]` = least spread with at most k guests off their home node (capacity and pins
    /// respected); `None` when the instance is too large to enumerate.
    pub fn exhaustive(&self) -> Option<Vec<f64>> {
        let n = self.nodes.len();
        let g = self.guests.len();
        if (n as u64).checked_pow(g as u32).is_none_or(|c| c > MAX_ASSIGNMENTS) {
            return None;
        }
        let mut best = vec![f64::INFINITY; g + 1];
        let mut at: Vec<usize> = self.guests.iter().map(|x| x.2).collect();
        // Odometer over all assignments, starting at home.
        let start = at.clone();
        let mut used = vec![0.0; n];
        loop {
            let ok = at.iter().enumerate().all(|(i, a)| self.guests[i].3[*a]);
            if ok {
                used.copy_from_slice(&self.base);
                for (i, a) in at.iter().enumerate() {
                    used[*a] += self.guests[i].1;
                }
                if used.iter().zip(&self.caps).all(|(u, c)| *u <= *c) {
                    let k = at.iter().zip(&self.guests).filter(|(a, x)| **a != x.2).count();
                    let s = self.spread(&used);
                    if s < best[k] {
                        best[k] = s;
                    }
                }
            }
            let mut i = 0;
            while i < g {
                at[i] = (at[i] + 1) % n;
                if at[i] != start[i] {
                    break;
                }
                i += 1;
            }
            if i == g {
                break;
            }
        }
        for k in 1..=g {
            best[k] = best[k].min(best[k - 1]);
        }
        Some(best)
    }
}

/// Distinct guests a move list relocates (a guest moved away and back counts if it ends elsewhere).
pub fn moved_guests(s: &ClusterSnapshot, moves: &[(u32, String, String)]) -> usize {
    let mut end: std::collections::BTreeMap<u32, &str> = std::collections::BTreeMap::new();
    for (v, _, to) in moves {
        end.insert(*v, to);
    }
    end.iter()
        .filter(|(v, to)| s.guests.iter().find(|g| g.vmid == **v).is_some_and(|g| g.node != **to))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brute_force_finds_the_perfect_split() {
        // Two nodes of 100, guests 40+20+20+20 all on node 0: one move gives 60/40 (spread 20),
        // two moves give 40/60 or 60/40 … perfect 50/50 is impossible, 60/40 is the best.
        let t = Tiny {
            nodes: vec!["a".into(), "b".into()],
            caps: vec![100.0, 100.0],
            base: vec![0.0, 0.0],
            guests: vec![
                (1, 40.0, 0, vec![true, true]),
                (2, 20.0, 0, vec![true, true]),
                (3, 20.0, 0, vec![true, true]),
                (4, 20.0, 0, vec![true, true]),
            ],
        };
        let b = t.exhaustive().unwrap();
        assert_eq!(b[0], 100.0);
        assert_eq!(b[1], 20.0);
        assert_eq!(b[4], 20.0);
        // A pin to node 0 on the big guest changes nothing here; on all small ones it does.
        let mut pinned = t.clone();
        for g in pinned.guests.iter_mut().skip(1) {
            g.3 = vec![true, false];
        }
        assert_eq!(pinned.exhaustive().unwrap()[4], 20.0);
    }
}
