//! The search state and the objective, kept incrementally: a move touches two nodes and the
//! groups of one guest, so its effect on the objective is computed in O(1) (O(groups)) instead of
//! re-summing the cluster.
//!
//! Objective J = 100·n·Σ_d w_d·Var_d + soft-rule penalties + overload penalty + migration cost
//! (seconds / `seconds_per_point`, see docs/ENGINE.md),
//! where n is the number of balanced nodes and Var_d is the capacity-weighted variance of node use of
//! dimension d over the balanced nodes: Var = Σ L²/C / ΣC − (ΣL/ΣC)². Minimising Σ L²/C under a
//! fixed total drives every node to the same use fraction (heterogeneous capacities included), and
//! it only needs the running sums ΣL and ΣL²/C. Hard rules are not in J: they are counted apart
//! (`violations`) and a move may never add one.

// Per-dimension arithmetic indexes several arrays by the same `d`; index loops read best.
#![allow(clippy::needless_range_loop)]

use super::problem::{Problem, DIMS};
use std::collections::HashMap;

/// Points one broken soft rule costs.
pub const SOFT_PENALTY: f64 = 5.0;
/// Points per point of use above an overload threshold.
pub const OVERLOAD_WEIGHT: f64 = 1.0;
/// Points per point of use on a node under pressure (PSI mode).
pub const PRESSURE_WEIGHT: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct State {
    pub pos: Vec<usize>,
    pub load: Vec<[f64; DIMS]>,
    pub mem: Vec<f64>,
    pub vcpus: Vec<f64>,
    s1: [f64; DIMS],
    s2: [f64; DIMS],
    ctot: [f64; DIMS],
    apart_cnt: HashMap<(u32, usize), u32>,
    together_cnt: HashMap<(u32, usize), u32>,
    together_nodes: HashMap<u32, u32>,
    /// Hard violations now, and what the current trial added/removed.
    pub violations: i64,
    pub added: i64,
    pub removed: i64,
    pub soft: f64,
    pub over: f64,
    pub cost: f64,
    /// √(balanced nodes) (see `spread_term`).
    scale: f64,
    journal: Vec<(usize, [f64; DIMS], f64, f64)>,
}

/// What `State::quick_move` finds.
#[derive(Clone, Copy, Debug)]
pub struct QuickMove {
    /// Change of the objective.
    pub delta: f64,
    /// Change of `penalties()`.
    pub pen_delta: f64,
    /// Combined use of the target after the move.
    pub target_use: f64,
}

/// Scalars saved before a trial.
#[derive(Clone, Copy)]
pub struct Mark {
    s1: [f64; DIMS],
    s2: [f64; DIMS],
    violations: i64,
    soft: f64,
    over: f64,
    cost: f64,
    journal: usize,
}

impl State {
    pub fn new(p: &Problem) -> State {
        let n = p.nodes.len();
        let mut st = State {
            pos: p.guests.iter().map(|g| g.home).collect(),
            load: p.nodes.iter().map(|n| n.initial_load).collect(),
            mem: p.nodes.iter().map(|n| n.initial_mem).collect(),
            vcpus: p.nodes.iter().map(|n| n.initial_vcpus).collect(),
            s1: [0.0; DIMS],
            s2: [0.0; DIMS],
            ctot: [0.0; DIMS],
            apart_cnt: HashMap::new(),
            together_cnt: HashMap::new(),
            together_nodes: HashMap::new(),
            violations: 0,
            added: 0,
            removed: 0,
            soft: 0.0,
            over: 0.0,
            cost: 0.0,
            scale: (p.nodes.iter().filter(|n| n.balanced).count().max(1) as f64).sqrt(),
            journal: Vec::new(),
        };
        for i in 0..n {
            let node = &p.nodes[i];
            if !node.balanced {
                continue;
            }
            for d in 0..DIMS {
                let c = node.capacity[d];
                if c > 0.0 {
                    st.s1[d] += st.load[i][d];
                    st.s2[d] += st.load[i][d] * st.load[i][d] / c;
                    st.ctot[d] += c;
                }
            }
            st.over += node_over(p, i, &st.load[i]);
        }
        for (g, info) in p.guests.iter().enumerate() {
            let at = info.home;
            if place_violates(p, g, at) {
                st.violations += 1;
            }
            if info.preferred.as_ref().is_some_and(|pr| pr.binary_search(&at).is_err()) {
                st.soft += 1.0;
            }
            for &grp in info.apart_hard.iter() {
                let c = st.apart_cnt.entry((grp, at)).or_insert(0);
                if *c >= 1 {
                    st.violations += 1;
                }
                *c += 1;
            }
            for &grp in info.apart_soft.iter() {
                let c = st.apart_cnt.entry((grp, at)).or_insert(0);
                if *c >= 1 {
                    st.soft += 1.0;
                }
                *c += 1;
            }
            for &grp in info.together_soft.iter() {
                let c = st.together_cnt.entry((grp, at)).or_insert(0);
                if *c == 0 {
                    let k = st.together_nodes.entry(grp).or_insert(0);
                    if *k >= 1 {
                        st.soft += 1.0;
                    }
                    *k += 1;
                }
                *c += 1;
            }
        }
        for b in &p.bundles {
            st.violations += split_count(&st.pos, b);
        }
        st
    }

    /// Imbalance in points (see the module doc).
    pub fn imbalance(&self, p: &Problem) -> f64 {
        imbalance_of(p, &self.s1, &self.s2, &self.ctot)
    }

    /// 100·n·Σ_d w_d·Var_d: the capacity-weighted *sum* of squared deviations. A move's gain on
    /// it is about 200·size·(u_source − u_target) whatever the node count, so `min_gain` means
    /// the same at 4 and at 500 nodes (a mean or a root would shrink gains as clusters grow).
    fn spread_term(&self, p: &Problem) -> f64 {
        let i = self.imbalance(p) / 100.0;
        100.0 * self.scale * self.scale * i * i
    }

    pub fn objective(&self, p: &Problem) -> f64 {
        self.spread_term(p) + SOFT_PENALTY * self.soft + self.over + self.cost
    }

    /// The effect of moving a *simple* guest (a bundle of one, in no affinity or anti-affinity
    /// group) between two *balanced* nodes, without changing the state, in O(dims) and without
    /// allocating. It reads only the two nodes and the guest (the total load of the balanced
    /// nodes does not change), so it stays valid until one of the two nodes changes. Such a move
    /// adds no hard violation when `to` may take the guest (`Problem::allows`); capacity and
    /// budget are the caller's to check.
    pub fn quick_move(&self, p: &Problem, g: usize, to: usize) -> QuickMove {
        let from = self.pos[g];
        let info = &p.guests[g];
        debug_assert!(info.apart_hard.is_empty() && info.apart_soft.is_empty());
        debug_assert!(info.together_soft.is_empty() && p.bundles[info.bundle].len() == 1);
        debug_assert!(p.nodes[from].balanced && p.nodes[to].balanced && from != to);
        // Var_d = Σ L²/C / ΣC − (ΣL/ΣC)²; with ΣL fixed only the two Σ L²/C terms change.
        let mut var = 0.0;
        let mut over = 0.0;
        let mut load_to = self.load[to];
        for (n, sign) in [(from, -1.0), (to, 1.0)] {
            let node = &p.nodes[n];
            let old = &self.load[n];
            let mut new = *old;
            for d in 0..DIMS {
                new[d] += sign * info.load[d];
                let c = node.capacity[d];
                if p.weights[d] > 0.0 && c > 0.0 && self.ctot[d] > 0.0 {
                    var += p.weights[d] * (new[d] * new[d] - old[d] * old[d]) / c / self.ctot[d];
                }
            }
            if node.may_be_over {
                over += node_over(p, n, &new) - node_over(p, n, old);
            }
            if n == to {
                load_to = new;
            }
        }
        let cost = self.quick_move_cost(p, g, to);
        let pref = |n: usize| info.preferred.as_ref().is_some_and(|pr| pr.binary_search(&n).is_err()) as i64;
        let pen = SOFT_PENALTY * (pref(to) - pref(from)) as f64 + over;
        QuickMove {
            delta: 100.0 * self.scale * self.scale * var + pen + cost,
            pen_delta: pen,
            target_use: combined(p, to, &load_to),
        }
    }

    /// The objective change of swapping two *simple* guests on two *balanced* nodes (`x` to
    /// `y`'s node and `y` to `x`'s), in closed form like `quick_move`. It is the change to the end
    /// state, so it holds whatever the order of the two moves or a park on a third node.
    pub fn quick_swap(&self, p: &Problem, x: usize, y: usize) -> f64 {
        let (a, b) = (self.pos[x], self.pos[y]);
        let (lx, ly) = (&p.guests[x].load, &p.guests[y].load);
        let (mut var, mut over) = (0.0, 0.0);
        for (n, sign) in [(a, -1.0), (b, 1.0)] {
            let node = &p.nodes[n];
            let old = &self.load[n];
            let mut new = *old;
            for d in 0..DIMS {
                new[d] += sign * (lx[d] - ly[d]);
                let c = node.capacity[d];
                if p.weights[d] > 0.0 && c > 0.0 && self.ctot[d] > 0.0 {
                    var += p.weights[d] * (new[d] * new[d] - old[d] * old[d]) / c / self.ctot[d];
                }
            }
            if node.may_be_over {
                over += node_over(p, n, &new) - node_over(p, n, old);
            }
        }
        let pref = |g: usize, n: usize| {
            p.guests[g].preferred.as_ref().is_some_and(|pr| pr.binary_search(&n).is_err()) as i64
        };
        let soft = (pref(x, b) - pref(x, a) + pref(y, a) - pref(y, b)) as f64;
        let cost = self.quick_move_cost(p, x, b) + self.quick_move_cost(p, y, a);
        100.0 * self.scale * self.scale * var + SOFT_PENALTY * soft + over + cost
    }

    /// The migration-cost part of `quick_move`'s delta: a guest leaving home adds its price, one
    /// coming back home takes it off, a guest already away moves at no further cost.
    pub fn quick_move_cost(&self, p: &Problem, g: usize, to: usize) -> f64 {
        let info = &p.guests[g];
        if self.pos[g] == info.home {
            info.cost
        } else if to == info.home {
            -info.cost
        } else {
            0.0
        }
    }

    /// Penalties the trigger looks at (soft rules, overload): what "not balancing" may still fix.
    pub fn penalties(&self) -> f64 {
        SOFT_PENALTY * self.soft + self.over
    }

    /// Weighted use of a node in percent (what the spread and the reasons show).
    pub fn use_pct(&self, p: &Problem, n: usize) -> f64 {
        combined(p, n, &self.load[n])
    }

    /// Weighted use of node `n` in percent if guest `g` joined it (`joins`) or left it.
    pub fn use_pct_with(&self, p: &Problem, n: usize, g: usize, joins: bool) -> f64 {
        let sign = if joins { 1.0 } else { -1.0 };
        let mut load = self.load[n];
        for d in 0..DIMS {
            load[d] += sign * p.guests[g].load[d];
        }
        combined(p, n, &load)
    }

    /// max − min combined use over the balanced nodes.
    pub fn spread(&self, p: &Problem) -> f64 {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for n in (0..p.nodes.len()).filter(|&n| p.nodes[n].balanced) {
            let u = self.use_pct(p, n);
            lo = lo.min(u);
            hi = hi.max(u);
        }
        if hi >= lo {
            hi - lo
        } else {
            0.0
        }
    }

    pub fn mark(&mut self) -> Mark {
        self.added = 0;
        self.removed = 0;
        Mark {
            s1: self.s1,
            s2: self.s2,
            violations: self.violations,
            soft: self.soft,
            over: self.over,
            cost: self.cost,
            journal: self.journal.len(),
        }
    }

    /// Undoes trial moves `moves` (guest, node it came from), newest last, back to `mark`.
    pub fn rollback(&mut self, p: &Problem, mark: Mark, moves: &[(usize, usize)]) {
        for &(g, from) in moves.iter().rev() {
            let to = self.pos[g];
            self.move_groups(p, g, to, from);
            self.pos[g] = from;
        }
        while self.journal.len() > mark.journal {
            if let Some((n, load, mem, vcpus)) = self.journal.pop() {
                self.load[n] = load;
                self.mem[n] = mem;
                self.vcpus[n] = vcpus;
            }
        }
        self.s1 = mark.s1;
        self.s2 = mark.s2;
        self.violations = mark.violations;
        self.soft = mark.soft;
        self.over = mark.over;
        self.cost = mark.cost;
        self.added = 0;
        self.removed = 0;
    }

    /// Forgets the journal (after a committed move).
    pub fn commit(&mut self) {
        self.journal.clear();
        self.added = 0;
        self.removed = 0;
    }

    /// Moves guest `g` to node `to`, updating every running figure.
    pub fn shift(&mut self, p: &Problem, g: usize, to: usize) {
        let from = self.pos[g];
        if from == to {
            return;
        }
        let info = &p.guests[g];
        // Hard placement (pins, drains) and bundle split, before and after.
        let before = place_violates(p, g, from) as i64 + self.bundle_split(p, g);
        self.touch(p, from, |l, m, v| {
            for d in 0..DIMS {
                l[d] -= info.load[d];
            }
            *m -= info.mem;
            *v -= info.vcpus;
        });
        self.touch(p, to, |l, m, v| {
            for d in 0..DIMS {
                l[d] += info.load[d];
            }
            *m += info.mem;
            *v += info.vcpus;
        });
        self.move_groups(p, g, from, to);
        self.pos[g] = to;
        let after = place_violates(p, g, to) as i64 + self.bundle_split(p, g);
        self.count(after - before);
        // Cost: paid once per guest that ends away from home.
        let home = info.home;
        if from == home {
            self.cost += info.cost;
        } else if to == home {
            self.cost -= info.cost;
        }
        let pref = |n: usize| info.preferred.as_ref().is_some_and(|pr| pr.binary_search(&n).is_err()) as i64;
        self.soft += (pref(to) - pref(from)) as f64;
    }

    fn count(&mut self, delta: i64) {
        self.violations += delta;
        if delta > 0 {
            self.added += delta;
        } else {
            self.removed -= delta;
        }
    }

    fn bundle_split(&self, p: &Problem, g: usize) -> i64 {
        let b = &p.bundles[p.guests[g].bundle];
        if b.len() < 2 {
            0
        } else {
            split_count(&self.pos, b)
        }
    }

    fn touch(&mut self, p: &Problem, n: usize, f: impl FnOnce(&mut [f64; DIMS], &mut f64, &mut f64)) {
        self.journal.push((n, self.load[n], self.mem[n], self.vcpus[n]));
        let node = &p.nodes[n];
        let old = self.load[n];
        if node.balanced {
            self.over -= node_over(p, n, &old);
        }
        f(&mut self.load[n], &mut self.mem[n], &mut self.vcpus[n]);
        if node.balanced {
            let new = self.load[n];
            for d in 0..DIMS {
                let c = node.capacity[d];
                if c > 0.0 {
                    self.s1[d] += new[d] - old[d];
                    self.s2[d] += (new[d] * new[d] - old[d] * old[d]) / c;
                }
            }
            self.over += node_over(p, n, &new);
        }
    }

    /// Group counters only (used by shift and, reversed, by rollback).
    fn move_groups(&mut self, p: &Problem, g: usize, from: usize, to: usize) {
        let info = &p.guests[g];
        for &grp in &info.apart_hard {
            let c = self.apart_cnt.entry((grp, from)).or_insert(1);
            *c = c.saturating_sub(1);
            let left = *c >= 1;
            let c = self.apart_cnt.entry((grp, to)).or_insert(0);
            let joined = *c >= 1;
            *c += 1;
            self.count(joined as i64 - left as i64);
        }
        for &grp in &info.apart_soft {
            let c = self.apart_cnt.entry((grp, from)).or_insert(1);
            *c = c.saturating_sub(1);
            let left = *c >= 1;
            let c = self.apart_cnt.entry((grp, to)).or_insert(0);
            let joined = *c >= 1;
            *c += 1;
            self.soft += joined as i64 as f64 - left as i64 as f64;
        }
        for &grp in &info.together_soft {
            let c = self.together_cnt.entry((grp, from)).or_insert(1);
            *c = c.saturating_sub(1);
            let emptied = *c == 0;
            let c = self.together_cnt.entry((grp, to)).or_insert(0);
            let opened = *c == 0;
            *c += 1;
            self.soft += opened as i64 as f64 - emptied as i64 as f64;
        }
    }

    /// Members of hard anti-affinity groups of `g` (other than `g`) on node `n`.
    pub fn apart_mates_on(&self, p: &Problem, g: usize, n: usize) -> u32 {
        p.guests[g]
            .apart_hard
            .iter()
            .map(|&grp| {
                self.apart_cnt.get(&(grp, n)).copied().unwrap_or(0).saturating_sub((self.pos[g] == n) as u32)
            })
            .sum()
    }

    /// Does node `n` have room for `g` right now (memory with reserve, vCPU ratio)? The guest's
    /// source still holds it during a live migration, so only the target is checked.
    pub fn has_room(&self, p: &Problem, g: usize, n: usize) -> bool {
        let info = &p.guests[g];
        let node = &p.nodes[n];
        (info.mem <= 0.0 || self.mem[n] + info.mem <= node.mem_cap)
            && node.vcpu_cap.is_none_or(|cap| info.vcpus <= 0.0 || self.vcpus[n] + info.vcpus <= cap + 1e-9)
            && (info.load[2] <= 0.0
                || p.weights[2] <= 0.0
                || node.capacity[2] <= 0.0
                || self.load[n][2] + info.load[2] <= node.capacity[2])
    }

    /// Would `g` on `n` stay under the target maximums?
    pub fn under_target_max(&self, p: &Problem, g: usize, n: usize) -> bool {
        let node = &p.nodes[n];
        (0..DIMS).all(|d| match node.target_max[d] {
            Some(max) if node.capacity[d] > 0.0 && p.guests[g].load[d] > 0.0 => {
                (self.load[n][d] + p.guests[g].load[d]) / node.capacity[d] * 100.0 <= max
            }
            _ => true,
        })
    }
}

fn imbalance_of(p: &Problem, s1: &[f64; DIMS], s2: &[f64; DIMS], ctot: &[f64; DIMS]) -> f64 {
    let mut var = 0.0;
    for d in 0..DIMS {
        if p.weights[d] > 0.0 && ctot[d] > 0.0 {
            let mean = s1[d] / ctot[d];
            var += p.weights[d] * (s2[d] / ctot[d] - mean * mean).max(0.0);
        }
    }
    100.0 * var.sqrt()
}

/// Distinct nodes of a bundle, minus one.
fn split_count(pos: &[usize], bundle: &[usize]) -> i64 {
    if bundle.len() < 2 {
        return 0;
    }
    let mut nodes: Vec<usize> = bundle.iter().map(|&g| pos[g]).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len() as i64 - 1
}

/// Is `g` on `n` against a hard pin or a drain?
pub fn place_violates(p: &Problem, g: usize, n: usize) -> bool {
    let info = &p.guests[g];
    info.allowed.as_ref().is_some_and(|a| a.binary_search(&n).is_err())
        || (p.nodes[n].drained && info.must_leave_drained)
}

pub fn combined(p: &Problem, n: usize, load: &[f64; DIMS]) -> f64 {
    let node = &p.nodes[n];
    let mut u = 0.0;
    for d in 0..DIMS {
        if p.weights[d] > 0.0 && node.capacity[d] > 0.0 {
            u += p.weights[d] * load[d] / node.capacity[d];
        }
    }
    100.0 * u
}

fn node_over(p: &Problem, n: usize, load: &[f64; DIMS]) -> f64 {
    let node = &p.nodes[n];
    let mut over = 0.0;
    for d in 0..DIMS {
        if let Some(t) = node.overload[d] {
            if node.capacity[d] > 0.0 {
                over += OVERLOAD_WEIGHT * (load[d] / node.capacity[d] * 100.0 - t).max(0.0);
            }
        }
    }
    if node.pressure_hot {
        over += PRESSURE_WEIGHT * combined(p, n, load);
    }
    over
}
