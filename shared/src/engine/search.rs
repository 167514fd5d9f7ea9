//! Best-improvement local search over moves, bundle moves and swaps.
//!
//! Each round first looks for a mandatory move (a guest or affinity bundle that breaks a hard
//! rule or sits on a drained node, largest first, to the target that keeps the objective lowest);
//! failing that, and while balancing is triggered, for the single move or swap that lowers the
//! objective most, by at least `min_gain`. A move never adds a hard-rule violation, never
//! overfills a node (memory with reserve, vCPU ratio, target maximum) and never lifts its target
//! above where its source was (no overshoot). The search order is itself a valid execution order:
//! each action is checked against the state the previous actions leave.

// Per-dimension arithmetic indexes several arrays by the same `d`; index loops read best.
#![allow(clippy::needless_range_loop)]

use super::objective::State;
use super::problem::{Problem, DIMS};
use crate::plan::StepPurpose;

#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub guest: usize,
    pub from: usize,
    pub to: usize,
    pub purpose: StepPurpose,
}

pub struct Outcome {
    pub state: State,
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
    /// Bundles that must move but cannot, with the reason.
    pub stuck: Vec<(usize, String)>,
}

/// Above this many balanced nodes, balancing looks only at the hottest and coolest few.
const FULL_SCAN_NODES: usize = 12;
const HOT_NODES: usize = 8;
const SWAP_NODES: usize = 4;
const SWAP_GUESTS: usize = 48;

struct Budget {
    moved: Vec<bool>,
    moves: u32,
    gib: f64,
    per_node: Vec<u32>,
}

/// The guests balancing may pick, per node (ascending guest index), kept up to date as moves
/// are committed instead of being rebuilt every round.
struct Movable {
    on: Vec<Vec<usize>>,
    cache: PairCache,
    /// A bundle of one in no group rule: its moves are evaluated in closed form
    /// (`State::quick_move`).
    simple: Vec<bool>,
    movable: Vec<bool>,
}

impl Movable {
    fn new(p: &Problem, st: &State) -> Movable {
        let movable: Vec<bool> =
            (0..p.guests.len()).map(|g| p.guests[g].frozen.is_none() && weight_of(p, g) > 0.0).collect();
        let simple = p
            .guests
            .iter()
            .map(|g| {
                p.bundles[g.bundle].len() == 1
                    && g.apart_hard.is_empty()
                    && g.apart_soft.is_empty()
                    && g.together_soft.is_empty()
            })
            .collect();
        let mut on = vec![Vec::new(); p.nodes.len()];
        for (g, &n) in st.pos.iter().enumerate() {
            if movable[g] {
                on[n].push(g);
            }
        }
        Movable { on, cache: PairCache::new(p.nodes.len()), simple, movable }
    }

    fn moved(&mut self, g: usize, from: usize, to: usize) {
        self.cache.touched(from);
        self.cache.touched(to);
        if !self.movable[g] || from == to {
            return;
        }
        if let Ok(i) = self.on[from].binary_search(&g) {
            self.on[from].remove(i);
        }
        if let Err(i) = self.on[to].binary_search(&g) {
            self.on[to].insert(i, g);
        }
    }
}

/// The best simple move of one (source, target) pair, or none.
#[derive(Clone, Copy)]
struct PairBest {
    guest: usize,
    delta: f64,
    cost: f64,
    pen_delta: f64,
    target_use: f64,
}

/// Best simple move per (source, target) pair, kept while neither node changes. A simple move's
/// figures read only its two nodes, the guest and the budget (`State::quick_move`), so after a
/// committed step only the pairs that touch one of its nodes are scanned again: per round that is
/// one source's guests to every target and every source's guests to one target, instead of every
/// source's guests to every target.
struct PairCache {
    /// Bumped whenever a node's load, guests or budget count changes.
    version: Vec<u32>,
    entries: std::collections::HashMap<(usize, usize), (u32, u32, Option<PairBest>)>,
}

impl PairCache {
    fn new(nodes: usize) -> PairCache {
        PairCache { version: vec![0; nodes], entries: std::collections::HashMap::new() }
    }
    fn touched(&mut self, n: usize) {
        self.version[n] = self.version[n].wrapping_add(1);
    }
}

#[derive(Clone)]
struct Candidate {
    moves: Vec<(usize, usize)>,
    delta: f64,
    cost: f64,
    /// Soft and overload penalties after the moves.
    pen_after: f64,
    /// Combined use of the last target after the moves.
    target_use: f64,
}

pub fn run(p: &Problem) -> Outcome {
    let mut st = State::new(p);
    let mut actions: Vec<Action> = Vec::new();
    let mut notes = Vec::new();
    let mut budget =
        Budget { moved: vec![false; p.guests.len()], moves: 0, gib: 0.0, per_node: vec![0; p.nodes.len()] };
    let req = &p.request;
    let trigger = req.balanciness;
    let stop = req.stop_spread.filter(|s| !s.is_nan()).unwrap_or(trigger).min(trigger);
    let min_gain = req.min_gain.max(1e-9);
    let mut pending: Vec<usize> = violating_bundles(p, &st);
    let mut balancing = false;
    let mut stop_note: Option<String> = None;
    let mut movable = Movable::new(p, &st);
    let limit = 4 * p.guests.len() + 64;
    for _round in 0..limit {
        if let Some(c) = best_mandatory(p, &mut st, &mut pending) {
            commit(p, &mut st, &mut actions, &mut budget, &mut movable, &c, None);
            continue;
        }
        if p.task.mandatory_only || !trigger.is_finite() {
            break;
        }
        let spread = st.spread(p);
        let penalised = st.penalties() > 1e-9;
        if !balancing && (spread > trigger || st.over > 1e-9) {
            balancing = true;
        }
        if balancing && spread <= stop && st.over <= 1e-9 {
            balancing = false;
        }
        if !balancing && !penalised {
            break;
        }
        if budget.moves >= req.max_moves {
            stop_note =
                Some(format!("stopped at spread {spread:.1} points: budget of {} moves used", req.max_moves));
            break;
        }
        let found = best_balance(p, &mut st, &budget, &mut movable, balancing, min_gain, false)
            .or_else(|| best_balance(p, &mut st, &budget, &mut movable, balancing, min_gain, true));
        match found {
            Some(c) => {
                commit(p, &mut st, &mut actions, &mut budget, &mut movable, &c, Some(StepPurpose::Balance))
            }
            None => {
                if balancing {
                    stop_note = Some(format!(
                        "stopped at spread {spread:.1} points: no allowed move or swap improves the objective by {:.2}",
                        req.min_gain
                    ));
                }
                break;
            }
        }
    }
    notes.extend(stop_note);
    pending.retain(|&b| bundle_violates(p, &st, b));
    let stuck = pending.iter().map(|&b| (b, why_stuck(p, &mut st, b))).collect();
    Outcome { state: st, actions, notes, stuck }
}

fn commit(
    p: &Problem,
    st: &mut State,
    actions: &mut Vec<Action>,
    budget: &mut Budget,
    movable: &mut Movable,
    c: &Candidate,
    purpose: Option<StepPurpose>,
) {
    for (i, &(g, to)) in c.moves.iter().enumerate() {
        let from = st.pos[g];
        st.shift(p, g, to);
        movable.moved(g, from, to);
        let purpose = purpose.unwrap_or_else(|| {
            if p.task.homes.contains_key(&p.guests[g].vmid) {
                StepPurpose::ReturnHome
            } else if p.nodes[from].drained {
                StepPurpose::Evacuate
            } else {
                StepPurpose::Rule
            }
        });
        // A guest that moves again later in the same candidate is parked first.
        let parked = c.moves[i + 1..].iter().any(|&(h, _)| h == g);
        actions.push(Action {
            guest: g,
            from,
            to,
            purpose: if parked { StepPurpose::Park } else { purpose },
        });
        budget.per_node[from] += 1;
        budget.per_node[to] += 1;
    }
    st.commit();
    for &(g, _) in &c.moves {
        let away = st.pos[g] != p.guests[g].home;
        if away != budget.moved[g] {
            budget.moved[g] = away;
            if !away {
                // Budget freed: moves the cache dropped as over budget may fit again.
                movable.cache.entries.clear();
            }
            let sign = if away { 1.0 } else { -1.0 };
            budget.moves = (budget.moves as i64 + sign as i64).max(0) as u32;
            budget.gib += sign * p.guests[g].gib;
        }
    }
}

fn violating_bundles(p: &Problem, st: &State) -> Vec<usize> {
    let mut list: Vec<usize> = (0..p.bundles.len()).filter(|&b| bundle_violates(p, st, b)).collect();
    // Largest first (first-fit decreasing keeps big guests from being stranded).
    let size = |b: usize| p.bundles[b].iter().map(|&g| p.guests[g].mem + p.guests[g].load[1]).sum::<f64>();
    list.sort_by(|&a, &b| size(b).total_cmp(&size(a)).then(a.cmp(&b)));
    list
}

fn bundle_violates(p: &Problem, st: &State, b: usize) -> bool {
    let members = &p.bundles[b];
    let first = st.pos[members[0]];
    members.iter().any(|&g| {
        st.pos[g] != first
            || super::objective::place_violates(p, g, st.pos[g])
            || st.apart_mates_on(p, g, st.pos[g]) > 0
    })
}

/// Tries bundle `b` on node `t` (all members to `t`). Returns the candidate if it is feasible
/// step by step and adds no violation.
fn try_bundle(p: &Problem, st: &mut State, b: usize, t: usize, balance: bool) -> Option<(Candidate, i64)> {
    let members = &p.bundles[b];
    let mut moves = Vec::with_capacity(members.len());
    for &g in members {
        if st.pos[g] == t {
            continue;
        }
        let info = &p.guests[g];
        let blocked = if balance { info.frozen.is_some() } else { info.pinned_down.is_some() };
        if blocked || !p.allows(g, t) {
            return None;
        }
        if balance && (info.no_return.binary_search(&t).is_ok() || !st.under_target_max(p, g, t)) {
            return None;
        }
        moves.push((g, t));
    }
    if moves.is_empty() {
        return None;
    }
    let before = st.objective(p);
    let mark = st.mark();
    let mut done: Vec<(usize, usize)> = Vec::with_capacity(moves.len());
    let mut ok = true;
    for &(g, to) in &moves {
        if !st.has_room(p, g, to) {
            ok = false;
            break;
        }
        done.push((g, st.pos[g]));
        st.shift(p, g, to);
        // No step may add a hard-rule violation, not even in passing.
        if st.added > 0 {
            ok = false;
            break;
        }
    }
    let result = ok.then(|| {
        let removed = st.removed;
        let delta = st.objective(p) - before;
        let cost: f64 = moves.iter().map(|&(g, _)| p.guests[g].cost_gib).sum();
        let (pen_after, target_use) = (st.penalties(), st.use_pct(p, t));
        (Candidate { moves, delta, cost, pen_after, target_use }, removed)
    });
    st.rollback(p, mark, &done);
    result
}

fn best_mandatory(p: &Problem, st: &mut State, pending: &mut Vec<usize>) -> Option<Candidate> {
    pending.retain(|&b| bundle_violates(p, st, b));
    for &b in pending.iter() {
        let mut best: Option<(Candidate, i64)> = None;
        for t in 0..p.nodes.len() {
            let Some((c, removed)) = try_mandatory(p, st, b, t) else { continue };
            let better = match &best {
                None => true,
                Some((bc, br)) => removed > *br || (removed == *br && c.delta < bc.delta - 1e-12),
            };
            if better {
                best = Some((c, removed));
            }
        }
        if let Some((c, _)) = best {
            return Some(c);
        }
    }
    None
}

fn try_mandatory(p: &Problem, st: &mut State, b: usize, t: usize) -> Option<(Candidate, i64)> {
    let members = &p.bundles[b];
    let mut moves = Vec::new();
    for &g in members {
        if st.pos[g] == t {
            continue;
        }
        if p.guests[g].pinned_down.is_some() || !p.allows(g, t) {
            return None;
        }
        moves.push((g, t));
    }
    if moves.is_empty() {
        return None;
    }
    let before_v = st.violations;
    let before = st.objective(p);
    let mark = st.mark();
    let mut done = Vec::new();
    let mut ok = true;
    for &(g, to) in &moves {
        if !st.has_room(p, g, to) {
            ok = false;
            break;
        }
        done.push((g, st.pos[g]));
        st.shift(p, g, to);
        // A member may not join an anti-affinity mate or a forbidden node, even in passing.
        if st.added > 0 {
            ok = false;
            break;
        }
    }
    let after_v = st.violations;
    let result = (ok && after_v < before_v).then(|| {
        let delta = st.objective(p) - before;
        let cost = moves.iter().map(|&(g, _)| p.guests[g].cost_gib).sum();
        let (pen_after, target_use) = (st.penalties(), st.use_pct(p, t));
        (Candidate { moves, delta, cost, pen_after, target_use }, before_v - after_v)
    });
    st.rollback(p, mark, &done);
    result
}

fn why_stuck(p: &Problem, st: &mut State, b: usize) -> String {
    let members = &p.bundles[b];
    for &g in members {
        if let Some(why) = &p.guests[g].pinned_down {
            return why.clone();
        }
    }
    let mut reasons: Vec<String> = Vec::new();
    for t in 0..p.nodes.len() {
        for &g in members {
            if st.pos[g] == t {
                continue;
            }
            let why = if let Err(e) = p.static_allows(g, t) {
                e
            } else if !st.has_room(p, g, t) {
                format!("{} has no room", p.nodes[t].name)
            } else if st.apart_mates_on(p, g, t) > 0 {
                format!("anti-affinity with a guest on {}", p.nodes[t].name)
            } else {
                continue;
            };
            reasons.push(why);
            break;
        }
    }
    reasons.sort();
    reasons.dedup();
    if reasons.is_empty() {
        "no node can take it without breaking a rule".into()
    } else {
        reasons.join("; ")
    }
}

fn best_balance(
    p: &Problem,
    st: &mut State,
    budget: &Budget,
    movable: &mut Movable,
    balancing: bool,
    min_gain: f64,
    swaps: bool,
) -> Option<Candidate> {
    let mut order: Vec<usize> = (0..p.nodes.len()).filter(|&n| p.nodes[n].balanced).collect();
    if order.len() < 2 {
        return None;
    }
    let u: Vec<f64> = (0..p.nodes.len()).map(|n| st.use_pct(p, n)).collect();
    order.sort_by(|&a, &b| u[b].total_cmp(&u[a]).then(a.cmp(&b)));
    let full = order.len() <= FULL_SCAN_NODES;
    let k = if swaps { SWAP_NODES } else { HOT_NODES };
    let sources: Vec<usize> =
        if full && !swaps { order.clone() } else { order.iter().copied().take(k).collect() };
    let targets: Vec<usize> =
        if full && !swaps { order.clone() } else { order.iter().rev().copied().take(k).collect() };
    let base_pen = st.penalties();
    let mut best: Option<Candidate> = None;
    let accept = |delta: f64, cost: f64, pen_after: f64, best: &Option<Candidate>| {
        delta < -min_gain
            && (balancing || pen_after < base_pen - 1e-9)
            && best.as_ref().is_none_or(|b| {
                delta < b.delta - 1e-12 || (delta <= b.delta + 1e-12 && cost < b.cost - 1e-12)
            })
    };
    if !swaps {
        for &s in &sources {
            for &t in &targets {
                if t == s {
                    continue;
                }
                let Some(pb) =
                    pair_best(p, st, budget, movable, s, t, u[s], (!balancing).then_some(base_pen))
                else {
                    continue;
                };
                if accept(pb.delta, pb.cost, base_pen + pb.pen_delta, &best) {
                    best = Some(Candidate {
                        moves: vec![(pb.guest, t)],
                        delta: pb.delta,
                        cost: pb.cost,
                        pen_after: base_pen + pb.pen_delta,
                        target_use: pb.target_use,
                    });
                }
            }
            // Bundles and guests in group rules: the full trial.
            for &g in &movable.on[s] {
                if movable.simple[g] {
                    continue;
                }
                let b = p.guests[g].bundle;
                if p.bundles[b].len() > 1 && p.bundles[b].iter().any(|&m| st.pos[m] != s) {
                    continue;
                }
                for &t in &targets {
                    if t == s || !within_budget(p, budget, b, s, t) {
                        continue;
                    }
                    let Some((c, _)) = try_bundle(p, st, b, t, true) else { continue };
                    // The target must not end above where the source was (ProxLB's overshoot).
                    if c.target_use > u[s] + 1e-9 {
                        continue;
                    }
                    if accept(c.delta, c.cost, c.pen_after, &best) {
                        best = Some(c);
                    }
                }
            }
        }
        return best;
    }
    let guests_on = &movable.on;
    // Swaps: a guest from a hot node for a smaller one from a cool node.
    for &a in &sources {
        let mut xs: Vec<usize> = guests_on[a].iter().copied().filter(|&g| single(p, g)).collect();
        xs.sort_by(|&x, &y| weight_of(p, y).total_cmp(&weight_of(p, x)).then(x.cmp(&y)));
        xs.truncate(SWAP_GUESTS);
        for &bn in &targets {
            if bn == a || u[bn] >= u[a] {
                continue;
            }
            let mut ys: Vec<usize> = guests_on[bn].iter().copied().filter(|&g| single(p, g)).collect();
            ys.sort_by(|&x, &y| weight_of(p, y).total_cmp(&weight_of(p, x)).then(x.cmp(&y)));
            ys.truncate(SWAP_GUESTS);
            for &x in &xs {
                for &y in &ys {
                    if weight_of(p, y) >= weight_of(p, x) {
                        continue;
                    }
                    if let Some(c) = try_swap(p, st, budget, x, y) {
                        if c.target_use <= u[a] + 1e-9 && accept(c.delta, c.cost, c.pen_after, &best) {
                            best = Some(c);
                        }
                    }
                }
            }
        }
    }
    best
}

/// The simple move from `s` to `t` that lowers the objective most (ties: the cheaper, then the
/// lower guest index), among those that pass every check of `try_bundle`, do not lift `t` above
/// `use_s` (no overshoot), fit the budget, and — when `pen_limit` is set (not balancing, only
/// fixing penalties) — leave the penalties below it. Cached per pair while balancing.
#[allow(clippy::too_many_arguments)]
fn pair_best(
    p: &Problem,
    st: &State,
    budget: &Budget,
    movable: &mut Movable,
    s: usize,
    t: usize,
    use_s: f64,
    pen_limit: Option<f64>,
) -> Option<PairBest> {
    let key = (s, t);
    let (vs, vt) = (movable.cache.version[s], movable.cache.version[t]);
    if pen_limit.is_none() {
        if let Some(&(cs, ct, cached)) = movable.cache.entries.get(&key) {
            // Budget only shrinks between clears, so a cached "none" stays none and a cached best
            // stays the best while it still fits.
            let fits = cached.is_none_or(|pb| within_budget(p, budget, p.guests[pb.guest].bundle, s, t));
            if cs == vs && ct == vt && fits {
                return cached;
            }
        }
    }
    let mut best: Option<PairBest> = None;
    for &g in &movable.on[s] {
        if !movable.simple[g] {
            continue;
        }
        let info = &p.guests[g];
        if !p.allows(g, t)
            || info.no_return.binary_search(&t).is_ok()
            || !st.has_room(p, g, t)
            || !st.under_target_max(p, g, t)
            || !within_budget(p, budget, info.bundle, s, t)
        {
            continue;
        }
        let q = st.quick_move(p, g, t);
        if q.target_use > use_s + 1e-9
            || pen_limit.is_some_and(|lim| st.penalties() + q.pen_delta >= lim - 1e-9)
        {
            continue;
        }
        let cost = info.cost_gib;
        let better = best.as_ref().is_none_or(|b| {
            q.delta < b.delta - 1e-12 || (q.delta <= b.delta + 1e-12 && cost < b.cost - 1e-12)
        });
        if better {
            best = Some(PairBest {
                guest: g,
                delta: q.delta,
                cost,
                pen_delta: q.pen_delta,
                target_use: q.target_use,
            });
        }
    }
    if pen_limit.is_none() {
        movable.cache.entries.insert(key, (vs, vt, best));
    }
    best
}

fn single(p: &Problem, g: usize) -> bool {
    p.bundles[p.guests[g].bundle].len() == 1
}

/// The guest's weight in the balanced dimensions, relative to an average node.
fn weight_of(p: &Problem, g: usize) -> f64 {
    (0..DIMS).map(|d| p.weights[d] * p.guests[g].load[d]).sum()
}

fn within_budget(p: &Problem, budget: &Budget, b: usize, s: usize, t: usize) -> bool {
    let members = &p.bundles[b];
    let new_moves = members.iter().filter(|&&g| !budget.moved[g]).count() as u32;
    let new_gib: f64 = members.iter().filter(|&&g| !budget.moved[g]).map(|&g| p.guests[g].gib).sum();
    let req = &p.request;
    budget.moves + new_moves <= req.max_moves
        && req.max_gib.is_none_or(|max| budget.gib + new_gib <= max + 1e-9)
        && req.max_moves_per_node.is_none_or(|max| {
            let n = members.len() as u32;
            budget.per_node[s] + n <= max && budget.per_node[t] + n <= max
        })
}

/// Swap x (on a) with y (on b), in an order that is valid at every step, parking x on a third
/// node when neither order fits.
fn try_swap(p: &Problem, st: &mut State, budget: &Budget, x: usize, y: usize) -> Option<Candidate> {
    let (a, b) = (st.pos[x], st.pos[y]);
    let req = &p.request;
    for (g, t) in [(x, b), (y, a)] {
        let info = &p.guests[g];
        if !p.allows(g, t) || info.no_return.binary_search(&t).is_ok() {
            return None;
        }
    }
    let new_moves = [x, y].iter().filter(|&&g| !budget.moved[g]).count() as u32;
    let new_gib: f64 = [x, y].iter().filter(|&&g| !budget.moved[g]).map(|&g| p.guests[g].gib).sum();
    if budget.moves + new_moves > req.max_moves
        || req.max_gib.is_some_and(|max| budget.gib + new_gib > max + 1e-9)
        || req
            .max_moves_per_node
            .is_some_and(|max| budget.per_node[a] + 2 > max || budget.per_node[b] + 2 > max)
    {
        return None;
    }
    let before = st.objective(p);
    let orders: [&[(usize, usize)]; 2] = [&[(x, b), (y, a)], &[(y, a), (x, b)]];
    for seq in orders {
        if let Some(c) = try_sequence(p, st, seq, before, b) {
            return Some(c);
        }
    }
    // Park x on the coolest third node that fits it, then y to a, then x to b.
    let mut parks: Vec<usize> = (0..p.nodes.len()).filter(|&n| n != a && n != b && p.allows(x, n)).collect();
    parks.sort_by(|&m, &n| (st.mem[m] - p.nodes[m].mem_cap).total_cmp(&(st.mem[n] - p.nodes[n].mem_cap)));
    for park in parks.into_iter().take(3) {
        if let Some(c) = try_sequence(p, st, &[(x, park), (y, a), (x, b)], before, b) {
            return Some(c);
        }
    }
    None
}

fn try_sequence(
    p: &Problem,
    st: &mut State,
    seq: &[(usize, usize)],
    before: f64,
    watch: usize,
) -> Option<Candidate> {
    let mark = st.mark();
    let mut done = Vec::new();
    let mut ok = true;
    for &(g, to) in seq {
        if !st.has_room(p, g, to) || !st.under_target_max(p, g, to) || st.apart_mates_on(p, g, to) > 0 {
            ok = false;
            break;
        }
        done.push((g, st.pos[g]));
        st.shift(p, g, to);
        if st.added > 0 {
            ok = false;
            break;
        }
    }
    let result = ok.then(|| Candidate {
        moves: seq.to_vec(),
        delta: st.objective(p) - before,
        cost: seq.iter().map(|&(g, _)| p.guests[g].cost_gib).sum(),
        pen_after: st.penalties(),
        target_use: st.use_pct(p, watch),
    });
    st.rollback(p, mark, &done);
    result
}
