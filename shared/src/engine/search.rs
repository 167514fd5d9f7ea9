//! Best-improvement local search over moves, bundle moves and swaps.
//!
//! Each round first looks for a mandatory move (a guest or affinity bundle that breaks a hard
//! rule or sits on a drained node, largest first, to the target that keeps the objective lowest);
//! failing that, and while balancing is triggered, for the single move or swap that lowers the
//! objective most, by at least `min_gain` points of gap closed (`required_gain`); when those are
//! exhausted, for a pair of moves, and on small clusters for the best placement of all. A move
//! never adds a hard-rule violation, never overfills a node (memory with reserve, vCPU ratio,
//! target maximum) and a balancing move never lifts its target above where its source was (no
//! overshoot). The search order is itself a valid execution order:
//! each action is checked against the state the previous actions leave.

// Per-dimension arithmetic indexes several arrays by the same `d`; index loops read best.
#![allow(clippy::needless_range_loop)]

use super::objective::State;
use super::problem::{Problem, DIMS, GIB};
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
    /// What the rest would take when a cap stopped the search.
    pub remaining: Option<crate::plan::Remaining>,
    /// When the price stopped the search above its stop band: the move that would pay at the
    /// lowest price per point.
    pub priced_out: Option<Unpaid>,
}

/// A simple balancing move that gains but does not pay.
pub struct Unpaid {
    pub spread: f64,
    pub guest: usize,
    pub from: usize,
    pub to: usize,
    /// Objective points it gains before its price.
    pub gain: f64,
    /// Points it needed to gain: its price plus `required_gain`.
    pub needed: f64,
    /// The `seconds_per_point` from which it would pay.
    pub pays_at: f64,
}

/// Above this many balanced nodes, balancing looks only at the hottest and coolest few.
const FULL_SCAN_NODES: usize = 12;
const HOT_NODES: usize = 8;
const SWAP_NODES: usize = 4;
const SWAP_GUESTS: usize = 48;
/// Exact improvement: when the local search is stuck and every placement of the movable guests
/// numbers at most this many, all of them are tried.
const EXACT_LEAVES: u64 = 25_000;
/// At most this many of the better placements are tried for a valid order of moves.
const EXACT_TRIES: usize = 1_000;
/// Pair moves (the last resort): the hottest and coolest few nodes, their largest few guests.
const PAIR_NODES: usize = 3;
const PAIR_GUESTS: usize = 16;

/// Ties: objective deltas closer than this are equal (then the cheaper move wins).
const TIE: f64 = 1e-12;
/// Slack for percentages, penalties, GiB and vCPUs summed in floating point.
const SLACK: f64 = 1e-9;
/// A closed-form objective change used to skip a trial is lowered by this much first, so
/// rounding (against the trial's difference of two objectives) never skips one that would win.
const QUICK_MARGIN: f64 = 1e-6;

/// The caps a request sets (`None` = uncapped).
#[derive(Clone, Copy, Debug)]
struct Limits {
    moves: Option<u32>,
    gib: Option<f64>,
    per_node: Option<u32>,
}

impl Limits {
    fn of(req: &crate::plan::PlanRequest) -> Limits {
        Limits { moves: req.move_cap(), gib: req.max_gib, per_node: req.max_moves_per_node }
    }
    const NONE: Limits = Limits { moves: None, gib: None, per_node: None };
    fn any(&self) -> bool {
        self.moves.is_some() || self.gib.is_some() || self.per_node.is_some()
    }
}

/// What the plan has spent against its caps: guests away from home, their GiB, moves per node.
#[derive(Clone)]
struct Budget {
    limits: Limits,
    moved: Vec<bool>,
    moves: u32,
    gib: f64,
    per_node: Vec<u32>,
}

impl Budget {
    fn new(p: &Problem, limits: Limits) -> Budget {
        Budget {
            limits,
            moved: vec![false; p.guests.len()],
            moves: 0,
            gib: 0.0,
            per_node: vec![0; p.nodes.len()],
        }
    }

    /// Is the move cap used up?
    fn moves_used(&self) -> bool {
        self.limits.moves.is_some_and(|cap| self.moves >= cap)
    }

    /// Do migrations of `guests` (each once) through `nodes` (a node once per migration that
    /// leaves or enters it) fit what is left?
    fn fits(&self, p: &Problem, guests: &[usize], nodes: &[usize]) -> bool {
        let new: Vec<usize> = guests.iter().copied().filter(|&g| !self.moved[g]).collect();
        let gib: f64 = new.iter().map(|&g| p.guests[g].gib).sum();
        let l = &self.limits;
        l.moves.is_none_or(|cap| self.moves + new.len() as u32 <= cap)
            && l.gib.is_none_or(|max| self.gib + gib <= max + SLACK)
            && l.per_node.is_none_or(|max| {
                nodes
                    .iter()
                    .all(|&n| self.per_node[n] + nodes.iter().filter(|&&m| m == n).count() as u32 <= max)
            })
    }

    /// `fits` for bundle `b` moving from `s` to `t`.
    fn fits_bundle(&self, p: &Problem, b: usize, s: usize, t: usize) -> bool {
        let members = &p.bundles[b];
        if self.limits.per_node.is_none() && self.limits.gib.is_none() && self.limits.moves.is_none() {
            return true;
        }
        let nodes: Vec<usize> = members.iter().flat_map(|_| [s, t]).collect();
        self.fits(p, members, &nodes)
    }

    /// Records a committed step; returns whether the guest's away-from-home state changed back
    /// (budget freed).
    fn record(&mut self, p: &Problem, g: usize, away: bool) -> bool {
        if away == self.moved[g] {
            return false;
        }
        self.moved[g] = away;
        if away {
            self.moves += 1;
            self.gib += p.guests[g].gib;
        } else {
            self.moves = self.moves.saturating_sub(1);
            self.gib -= p.guests[g].gib;
        }
        !away
    }
}

/// The guests balancing may pick, per node (ascending guest index), kept up to date as moves
/// are committed instead of being rebuilt every round.
#[derive(Clone)]
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
    secs: f64,
    pen_delta: f64,
    target_use: f64,
}

/// Best simple move per (source, target) pair, kept while neither node changes. A simple move's
/// figures read only its two nodes, the guest and the budget (`State::quick_move`), so after a
/// committed step only the pairs that touch one of its nodes are scanned again: per round that is
/// one source's guests to every target and every source's guests to one target, instead of every
/// source's guests to every target.
#[derive(Clone)]
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

/// A move or a short sequence of moves, with what it does to the objective.
#[derive(Clone)]
struct Candidate {
    moves: Vec<(usize, usize)>,
    delta: f64,
    /// The moves' growing seconds (`GuestInfo::rank_secs`): what ranks paying candidates.
    secs: f64,
    /// Soft and overload penalties after the moves.
    pen_after: f64,
    /// Combined use of the last target after the moves.
    target_use: f64,
}

/// The one comparison of candidates: `delta` is the objective change including the moves' cost
/// in points, so only moves that pay are below 0; `secs` are the moves' growing seconds
/// (`GuestInfo::rank_secs`). Of two paying moves the one with the larger net gain per growing
/// second wins (many small moves beat one huge one that gains little more); equal rates (within
/// `TIE`, relative) go to the cheaper, or with `larger_first` (ProxLB's
/// `balance_larger_guests_first`) to the larger move.
fn beats(delta: f64, secs: f64, best: Option<(f64, f64)>, larger_first: bool) -> bool {
    let Some((best_delta, best_secs)) = best else { return true };
    let rate = |d: f64, s: f64| -d / s.max(SLACK);
    let (a, b) = (rate(delta, secs), rate(best_delta, best_secs));
    let tie = TIE * b.abs().max(1.0);
    let tie_goes_here = if larger_first { secs > best_secs + TIE } else { secs < best_secs - TIE };
    a > b + tie || (a >= b - tie && tie_goes_here)
}

/// What a balancing candidate must do to replace the best so far: pay across its gap, lower the
/// penalties when only penalties are being fixed, and beat the best (`beats`).
#[derive(Clone, Copy)]
struct Accept {
    balancing: bool,
    min_gain: f64,
    base_pen: f64,
    larger_first: bool,
}

impl Accept {
    fn new(p: &Problem, st: &State, balancing: bool, min_gain: f64) -> Accept {
        Accept { balancing, min_gain, base_pen: st.penalties(), larger_first: p.request.larger_guests_first }
    }

    fn takes(&self, delta: f64, secs: f64, pen_after: f64, gap: f64, best: &Option<Candidate>) -> bool {
        pays(delta, gap, self.min_gain)
            && (self.balancing || pen_after < self.base_pen - SLACK)
            && beats(delta, secs, best.as_ref().map(Candidate::key), self.larger_first)
    }
}

impl Candidate {
    fn key(&self) -> (f64, f64) {
        (self.delta, self.secs)
    }
}

/// The search in progress: state, steps so far, what the caps have left, the guests it may move.
#[derive(Clone)]
struct Search<'p, 'a> {
    p: &'p Problem<'a>,
    st: State,
    actions: Vec<Action>,
    budget: Budget,
    movable: Movable,
    /// Bundles that break a hard rule, to repair (largest first).
    pending: Vec<usize>,
    /// Within the hysteresis: triggered and not yet at the stop band.
    balancing: bool,
    min_gain: f64,
}

/// Why a search ended.
enum Stop {
    /// Nothing (more) to do: balanced, or only mandatory moves asked for.
    Done,
    /// The move cap is used up.
    Cap,
    /// No allowed move pays.
    NoMove,
}

pub fn run(p: &Problem) -> Outcome {
    let limits = Limits::of(&p.request);
    let mut search = Search::new(p, limits);
    let stop = search.go();
    let spread = search.st.spread(p);
    let mut notes = Vec::new();
    let mut priced_out = None;
    // When a cap may have stopped the plan, go on without it (on a copy) to say what the rest
    // would take.
    let remaining = match stop {
        Stop::Cap | Stop::NoMove if limits.any() => search.remaining(),
        _ => None,
    };
    match (&stop, &remaining) {
        (Stop::Cap, _) | (Stop::NoMove, Some(_)) => {
            let rest = remaining.as_ref().map(|r| {
                format!(
                    "; the rest would take {} more moves, {:.0} GiB, to reach {:.1} points",
                    r.moves, r.gib, r.spread_after
                )
            });
            notes.push(format!(
                "stopped at spread {spread:.1} points by the plan's cap{}",
                rest.unwrap_or_default()
            ));
        }
        (Stop::NoMove, None) if search.balancing => {
            priced_out = search.closest_unpaid();
            notes.push(priced_out_note(p, spread, priced_out.as_ref()));
        }
        _ => {}
    }
    let Search { mut st, mut actions, mut pending, .. } = search;
    pending.retain(|&b| bundle_violates(p, &st, b));
    merge_repeats(p, &mut actions);
    let stuck = pending.iter().map(|&b| (b, why_stuck(p, &mut st, b))).collect();
    Outcome { state: st, actions, notes, stuck, remaining, priced_out }
}

/// Why a plan stopped above its stop band: no allowed move pays, and what the next would take
/// and gain (the admin's cue to raise `seconds_per_point`, or to accept the spread).
fn priced_out_note(p: &Problem, spread: f64, next: Option<&Unpaid>) -> String {
    let price = p.request.seconds_per_point;
    let head = format!("stopped at spread {spread:.1} points: no allowed move pays");
    match next {
        Some(u) => {
            let info = &p.guests[u.guest];
            format!(
                "{head}: the next move (guest {} {} → {}) would cost {:.0} s for {:.2} points, worth \
                 {:.0} s at {price} s per point; it needs {:.2} (its price and {:.2} points of gap \
                 closed) and pays from {:.0} s per point",
                info.vmid,
                p.nodes[u.from].name,
                p.nodes[u.to].name,
                info.secs,
                u.gain,
                u.gain * price,
                u.needed,
                p.request.min_gain,
                u.pays_at.ceil(),
            )
        }
        None => format!("{head}: no allowed move would lower the imbalance"),
    }
}

impl<'p, 'a> Search<'p, 'a> {
    fn new(p: &'p Problem<'a>, limits: Limits) -> Self {
        let st = State::new(p);
        let pending = violating_bundles(p, &st);
        let movable = Movable::new(p, &st);
        let min_gain = p.request.min_gain.max(SLACK);
        Search {
            p,
            st,
            actions: Vec::new(),
            budget: Budget::new(p, limits),
            movable,
            pending,
            balancing: false,
            min_gain,
        }
    }

    /// Rounds until done, capped or stuck: each round repairs a broken rule if it can, else takes
    /// the best balancing move (single move, swap, pair), else on small clusters the best
    /// placement of all.
    fn go(&mut self) -> Stop {
        let p = self.p;
        let trigger = p.request.balanciness;
        let stop = p.request.stop_spread.filter(|s| !s.is_nan()).unwrap_or(trigger).min(trigger);
        let limit = 4 * p.guests.len() + 64;
        for _round in 0..limit {
            if self.repair() {
                continue;
            }
            if p.task.mandatory_only || !trigger.is_finite() {
                return Stop::Done;
            }
            let spread = self.st.spread(p);
            if !self.balancing && (spread > trigger || self.st.over > SLACK) {
                self.balancing = true;
            }
            if self.balancing && spread <= stop && self.st.over <= SLACK {
                self.balancing = false;
            }
            if !self.balancing && self.st.penalties() <= SLACK {
                // `pending` is the list found at the start: look at every bundle again before
                // stopping (with the smallest-first repair order a re-plan of the result found a
                // conflict this pass repairs; the property test keeps it honest).
                self.pending = violating_bundles(p, &self.st);
                if self.repair() {
                    continue;
                }
                return Stop::Done;
            }
            if self.budget.moves_used() {
                return Stop::Cap;
            }
            if let Some(c) = self.best_move() {
                self.commit(&c, Some(StepPurpose::Balance));
                continue;
            }
            // A move can trade one broken rule for another (a guest joins an anti-affinity mate
            // while leaving another): look at every bundle again before stopping.
            self.pending = violating_bundles(p, &self.st);
            if self.repair() {
                continue;
            }
            if let Some(c) = self.best_placement() {
                self.commit(&c, Some(StepPurpose::Balance));
                continue;
            }
            return Stop::NoMove;
        }
        Stop::Done
    }

    /// Commits the first repair of a pending broken rule, if any.
    fn repair(&mut self) -> bool {
        match best_mandatory(self.p, &mut self.st, &mut self.pending) {
            Some(c) => {
                self.commit(&c, None);
                true
            }
            None => false,
        }
    }

    /// The best single move, else swap, else pair of moves.
    fn best_move(&mut self) -> Option<Candidate> {
        let (p, balancing, min_gain) = (self.p, self.balancing, self.min_gain);
        best_balance(p, &mut self.st, &self.budget, &mut self.movable, balancing, min_gain, false)
            .or_else(|| {
                best_balance(p, &mut self.st, &self.budget, &mut self.movable, balancing, min_gain, true)
            })
            .or_else(|| best_pair(p, &mut self.st, &self.budget, &self.movable, balancing, min_gain))
    }

    /// A local optimum on a small cluster: the best placement of all, when it is better by
    /// `min_gain` and can be reached step by step (then the rounds go on: a placement may trade
    /// which rule is broken; the repair pass fixes that).
    fn best_placement(&mut self) -> Option<Candidate> {
        if !self.balancing || !self.pending.is_empty() {
            return None;
        }
        let p = self.p;
        let beat = self.st.objective(p) - self.min_gain;
        let moves = exact(p, self.st.clone(), beat, self.st.violations, &self.budget.limits)?;
        Some(Candidate { moves, delta: 0.0, secs: 0.0, pen_after: 0.0, target_use: 0.0 })
    }

    /// The simple move between the hottest and coolest nodes (those balancing scans) that would
    /// pay at the lowest price per point, among those that gain more than `required_gain` and
    /// pass every other check; found once, when the price stopped the plan.
    fn closest_unpaid(&self) -> Option<Unpaid> {
        let (p, st) = (self.p, &self.st);
        let (sources, targets, u) = scan_nodes(p, st, false)?;
        let mut best: Option<(f64, Unpaid)> = None;
        for &s in &sources {
            for &g in self.movable.on[s].iter().filter(|&&g| self.movable.simple[g]) {
                let info = &p.guests[g];
                for &t in targets.iter().filter(|&&t| t != s) {
                    if !p.allows(g, t)
                        || info.no_return.binary_search(&t).is_ok()
                        || !st.has_room(p, g, t)
                        || !st.under_target_max(p, g, t)
                        || !self.budget.fits_bundle(p, info.bundle, s, t)
                    {
                        continue;
                    }
                    let q = st.quick_move(p, g, t);
                    let price = st.quick_move_cost(p, g, t);
                    let gain = price - q.delta;
                    if q.target_use > u[s] + SLACK || gain <= SLACK {
                        continue;
                    }
                    // Break-even: the price per point from which it pays (gain − price >
                    // required, the price scaling with 1 / seconds_per_point).
                    let required = required_gain(self.min_gain, u[s] - u[t]);
                    if gain <= required + SLACK {
                        continue;
                    }
                    let pays_at = p.request.seconds_per_point * price / (gain - required);
                    if best.as_ref().is_none_or(|(b, _)| pays_at < *b - TIE) {
                        let (spread, needed) = (st.spread(p), price + required);
                        best = Some((
                            pays_at,
                            Unpaid { spread, guest: g, from: s, to: t, gain, needed, pays_at },
                        ));
                    }
                }
            }
        }
        best.map(|(_, u)| u)
    }

    fn commit(&mut self, c: &Candidate, purpose: Option<StepPurpose>) {
        commit(self.p, &mut self.st, &mut self.actions, &mut self.budget, &mut self.movable, c, purpose);
    }

    /// Goes on from here without caps; what those further moves take (counted from here: guests
    /// whose node differs at the end), or `None` when nothing more would move.
    fn remaining(&self) -> Option<crate::plan::Remaining> {
        let p = self.p;
        let mut rest = self.clone();
        rest.budget.limits = Limits::NONE;
        rest.movable.cache.entries.clear();
        rest.go();
        let moved: Vec<usize> = (0..p.guests.len()).filter(|&g| rest.st.pos[g] != self.st.pos[g]).collect();
        (!moved.is_empty()).then(|| crate::plan::Remaining {
            moves: moved.len() as u32,
            gib: moved.iter().map(|&g| p.guests[g].gib).sum(),
            spread_after: rest.st.spread(p),
        })
    }
}

/// A guest that moves twice in one plan (a hop, a park, a later correction) moves once, from
/// its first source straight to its last target, or not at all when it comes back, whenever
/// the shorter plan is still valid at every step. The end state does not change; the plan has
/// fewer migrations.
fn merge_repeats(p: &Problem, actions: &mut Vec<Action>) {
    let mut skip: Vec<(usize, usize)> = Vec::new();
    loop {
        let repeat = (0..actions.len()).find_map(|i| {
            let j = (i + 1..actions.len()).find(|&j| actions[j].guest == actions[i].guest)?;
            (!skip.contains(&(i, j))).then_some((i, j))
        });
        let Some((i, j)) = repeat else { return };
        let (first, last) = (actions[i].clone(), actions[j].clone());
        let purpose = if first.purpose == StepPurpose::Park || first.purpose == StepPurpose::Balance {
            last.purpose
        } else {
            first.purpose
        };
        let merged = Action { guest: first.guest, from: first.from, to: last.to, purpose };
        let mut tries: Vec<Vec<Action>> = Vec::new();
        for at in [j, i] {
            let mut v = actions.clone();
            if merged.from == merged.to {
                v.remove(j);
                v.remove(i);
            } else {
                v[at] = merged.clone();
                v.remove(if at == j { i } else { j });
            }
            tries.push(v);
        }
        match tries.into_iter().find(|v| replay_valid(p, v)) {
            Some(v) => {
                *actions = v;
                skip.clear();
            }
            None => skip.push((i, j)),
        }
    }
}

/// Does `actions` run from the snapshot, each step fitting its target and adding no violation?
fn replay_valid(p: &Problem, actions: &[Action]) -> bool {
    let mut st = State::new(p);
    for a in actions {
        let g = a.guest;
        if st.pos[g] != a.from
            || !st.has_room(p, g, a.to)
            || (a.purpose == StepPurpose::Balance && !st.under_target_max(p, g, a.to))
        {
            return false;
        }
        st.mark();
        st.shift(p, g, a.to);
        if st.added > 0 {
            return false;
        }
        st.commit();
    }
    true
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
        st.mark();
        st.shift(p, g, to);
        movable.moved(g, from, to);
        // A step that repairs a rule says so, whatever found it.
        let purpose = purpose.filter(|_| st.removed == 0).unwrap_or_else(|| {
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
        if budget.record(p, g, st.pos[g] != p.guests[g].home) {
            // Budget freed: moves the cache dropped as over budget may fit again.
            movable.cache.entries.clear();
        }
    }
}

fn violating_bundles(p: &Problem, st: &State) -> Vec<usize> {
    let in_scope = |b: usize| {
        !p.task.scoped
            || p.bundles[b]
                .iter()
                .any(|&g| p.nodes[st.pos[g]].drained || p.task.homes.contains_key(&p.guests[g].vmid))
    };
    let mut list: Vec<usize> =
        (0..p.bundles.len()).filter(|&b| in_scope(b) && bundle_violates(p, st, b)).collect();
    // Bundles that must leave their node (drained, pinned elsewhere) first, largest first
    // (first-fit decreasing keeps big guests from being stranded); then those that only share a
    // node with an anti-affinity mate or are split, smallest first: moving any one of them repairs
    // the rule, and the smallest does it with the fewest GiB.
    let size = |b: usize| p.bundles[b].iter().map(|&g| p.guests[g].mem + p.guests[g].load[1]).sum::<f64>();
    let must_leave =
        |b: usize| p.bundles[b].iter().any(|&g| super::objective::place_violates(p, g, st.pos[g]));
    list.sort_by(|&a, &b| {
        let by_size = if must_leave(a) { size(b).total_cmp(&size(a)) } else { size(a).total_cmp(&size(b)) };
        must_leave(b).cmp(&must_leave(a)).then(by_size).then(a.cmp(&b))
    });
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
        let secs = moves.iter().map(|&(g, _)| p.guests[g].rank_secs).sum();
        let (pen_after, target_use) = (st.penalties(), st.use_pct(p, t));
        (Candidate { moves, delta, secs, pen_after, target_use }, removed)
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
                Some((bc, br)) => {
                    removed > *br
                        || (removed == *br
                            && beats(c.delta, c.secs, Some(bc.key()), p.request.larger_guests_first))
                }
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

/// A repair of bundle `b` onto `t`: all members there, each step fitting and adding no
/// violation, and fewer violations in the end. Returns it with the violations it removes.
fn try_mandatory(p: &Problem, st: &mut State, b: usize, t: usize) -> Option<(Candidate, i64)> {
    try_bundle(p, st, b, t, false).filter(|&(_, removed)| removed > 0)
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

/// The nodes balancing scans, hottest first and coolest first (every balanced node on small
/// clusters, else the hottest and coolest few), with every node's use; `None` below two nodes.
fn scan_nodes(p: &Problem, st: &State, swaps: bool) -> Option<ScanNodes> {
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
    Some((sources, targets, u))
}

/// The best balancing move of one guest or bundle, or with `swaps` the best swap, among the nodes
/// `scan_nodes` picks.
fn best_balance(
    p: &Problem,
    st: &mut State,
    budget: &Budget,
    movable: &mut Movable,
    balancing: bool,
    min_gain: f64,
    swaps: bool,
) -> Option<Candidate> {
    let nodes = scan_nodes(p, st, swaps)?;
    let accept = Accept::new(p, st, balancing, min_gain);
    if swaps {
        best_swap(p, st, budget, movable, &nodes, &accept)
    } else {
        best_single(p, st, budget, movable, &nodes, &accept)
    }
}

type ScanNodes = (Vec<usize>, Vec<usize>, Vec<f64>);

/// The best move of one simple guest (closed form, cached per pair) or one bundle or guest in a
/// group rule (full trial), from a source to a target of `nodes`.
fn best_single(
    p: &Problem,
    st: &mut State,
    budget: &Budget,
    movable: &mut Movable,
    (sources, targets, u): &ScanNodes,
    accept: &Accept,
) -> Option<Candidate> {
    let base_pen = accept.base_pen;
    let pen_limit = (!accept.balancing).then_some(base_pen);
    let mut best: Option<Candidate> = None;
    for &s in sources {
        for &t in targets.iter().filter(|&&t| t != s) {
            let Some(pb) = pair_best(p, st, budget, movable, s, t, u[s], pen_limit) else { continue };
            let pen_after = base_pen + pb.pen_delta;
            if accept.takes(pb.delta, pb.secs, pen_after, u[s] - u[t], &best) {
                let (moves, target_use) = (vec![(pb.guest, t)], pb.target_use);
                best = Some(Candidate { moves, delta: pb.delta, secs: pb.secs, pen_after, target_use });
            }
        }
        // Bundles and guests in group rules: the full trial.
        for &g in movable.on[s].iter().filter(|&&g| !movable.simple[g]) {
            let b = p.guests[g].bundle;
            if p.bundles[b].len() > 1 && p.bundles[b].iter().any(|&m| st.pos[m] != s) {
                continue;
            }
            for &t in targets.iter().filter(|&&t| t != s && budget.fits_bundle(p, b, s, t)) {
                let Some((c, _)) = try_bundle(p, st, b, t, true) else { continue };
                // The target must not end above where the source was (ProxLB's overshoot).
                if c.target_use <= u[s] + SLACK
                    && accept.takes(c.delta, c.secs, c.pen_after, u[s] - u[t], &best)
                {
                    best = Some(c);
                }
            }
        }
    }
    best
}

/// Can swapping `x` and `y` (simple guests, while balancing) pay and beat the best so far? Their
/// end state in closed form (`State::quick_swap`) and their fewest seconds (no park) bound what
/// the step-by-step trial (`try_swap`) can find, so a swap that fails here is not tried. Other
/// guests, and penalty-only rounds, always go to the trial.
fn swap_may_win(
    p: &Problem,
    st: &State,
    movable: &Movable,
    accept: &Accept,
    (x, y): (usize, usize),
    gap: f64,
    best: &Option<Candidate>,
) -> bool {
    if !accept.balancing || !movable.simple[x] || !movable.simple[y] {
        return true;
    }
    let secs = p.guests[x].rank_secs + p.guests[y].rank_secs;
    let delta = st.quick_swap(p, x, y) - QUICK_MARGIN;
    accept.takes(delta, secs, accept.base_pen, gap, best)
}

/// The best swap: a guest from a hot node for a smaller one from a cooler node (their largest
/// `SWAP_GUESTS` each), in an order valid at every step.
fn best_swap(
    p: &Problem,
    st: &mut State,
    budget: &Budget,
    movable: &Movable,
    (sources, targets, u): &ScanNodes,
    accept: &Accept,
) -> Option<Candidate> {
    let largest = |n: usize| {
        let mut gs: Vec<usize> = movable.on[n].iter().copied().filter(|&g| single(p, g)).collect();
        gs.sort_by(|&x, &y| weight_of(p, y).total_cmp(&weight_of(p, x)).then(x.cmp(&y)));
        gs.truncate(SWAP_GUESTS);
        gs
    };
    let mut best: Option<Candidate> = None;
    for &a in sources {
        let xs = largest(a);
        for &bn in targets.iter().filter(|&&bn| bn != a && u[bn] < u[a]) {
            let ys = largest(bn);
            for &x in &xs {
                for &y in ys.iter().filter(|&&y| weight_of(p, y) < weight_of(p, x)) {
                    if !swap_may_win(p, st, movable, accept, (x, y), u[a] - u[bn], &best) {
                        continue;
                    }
                    let Some(c) = try_swap(p, st, budget, x, y) else { continue };
                    if c.target_use <= u[a] + SLACK
                        && accept.takes(c.delta, c.secs, c.pen_after, u[a] - u[bn], &best)
                    {
                        best = Some(c);
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
            let fits = cached.is_none_or(|pb| budget.fits_bundle(p, p.guests[pb.guest].bundle, s, t));
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
            || !budget.fits_bundle(p, info.bundle, s, t)
        {
            continue;
        }
        let q = st.quick_move(p, g, t);
        if q.target_use > use_s + SLACK
            || pen_limit.is_some_and(|lim| st.penalties() + q.pen_delta >= lim - SLACK)
        {
            continue;
        }
        if beats(q.delta, info.rank_secs, best.map(|b| (b.delta, b.secs)), p.request.larger_guests_first) {
            best = Some(PairBest {
                guest: g,
                delta: q.delta,
                secs: info.rank_secs,
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

/// The placement of the movable guests (balancing may move them, bundles of one) with the lowest
/// objective below `beat`, fewest moves from `start` on ties, among those that fit every node
/// that grows, break at most `max_violations` hard rules and fit the budget; searched exhaustively when there are at
/// most `EXACT_LEAVES` placements. Returns a valid order of moves from `start` (each step fits
/// its target and adds no violation when it runs), or `None`.
fn exact(
    p: &Problem,
    start: State,
    beat: f64,
    max_violations: i64,
    limits: &Limits,
) -> Option<Vec<(usize, usize)>> {
    let mut st = start;
    let guests: Vec<usize> = (0..p.guests.len())
        .filter(|&g| {
            let info = &p.guests[g];
            info.frozen.is_none() && weight_of(p, g) > 0.0 && p.nodes[st.pos[g]].balanced
        })
        .collect();
    if guests.len() as u32 > EXACT_LEAVES.ilog2() || guests.iter().any(|&g| !single(p, g)) {
        return None;
    }
    let options: Vec<Vec<usize>> = guests
        .iter()
        .map(|&g| {
            let info = &p.guests[g];
            let at = st.pos[g];
            let mut o = vec![at];
            o.extend((0..p.nodes.len()).filter(|&t| {
                t != at && p.nodes[t].balanced && p.allows(g, t) && info.no_return.binary_search(&t).is_err()
            }));
            o
        })
        .collect();
    let mut leaves: u64 = 1;
    for o in &options {
        leaves = leaves.saturating_mul(o.len() as u64);
        if leaves > EXACT_LEAVES {
            return None;
        }
    }
    if leaves <= 1 {
        return None;
    }
    struct Exhaustive<'s> {
        guests: &'s [usize],
        options: &'s [Vec<usize>],
        violations: i64,
        start_mem: &'s [f64],
        start_vcpus: &'s [f64],
        found: Vec<(f64, usize, Vec<usize>)>,
        beat: f64,
        limits: &'s Limits,
    }
    fn leaf_fits(p: &Problem, st: &State, s: &Exhaustive, moved: &[usize]) -> bool {
        let (start_mem, start_vcpus, limits) = (s.start_mem, s.start_vcpus, s.limits);
        let away: Vec<usize> = (0..p.guests.len()).filter(|&g| st.pos[g] != p.guests[g].home).collect();
        let gib: f64 = away.iter().map(|&g| p.guests[g].gib).sum();
        let fits_nodes = (0..p.nodes.len()).all(|n| {
            let node = &p.nodes[n];
            (st.mem[n] <= start_mem[n] + SLACK * GIB || st.mem[n] <= node.mem_cap)
                && node
                    .vcpu_cap
                    .is_none_or(|cap| st.vcpus[n] <= start_vcpus[n] + SLACK || st.vcpus[n] <= cap + SLACK)
        });
        let per_node_ok = limits.per_node.is_none_or(|max| {
            (0..p.nodes.len()).all(|n| {
                away.iter().filter(|&&g| p.guests[g].home == n || st.pos[g] == n).count() as u32 <= max
            })
        });
        fits_nodes
            && !moved.is_empty()
            && limits.moves.is_none_or(|cap| away.len() as u32 <= cap)
            && limits.gib.is_none_or(|max| gib <= max + SLACK)
            && per_node_ok
    }
    fn dfs(p: &Problem, st: &mut State, s: &mut Exhaustive, i: usize, moved: &mut Vec<usize>) {
        if i == s.guests.len() {
            if st.violations > s.violations || !leaf_fits(p, st, s, moved) {
                return;
            }
            let obj = st.objective(p);
            if obj < s.beat {
                s.found.push((obj, moved.len(), s.guests.iter().map(|&g| st.pos[g]).collect()));
            }
            return;
        }
        let g = s.guests[i];
        for k in 0..s.options[i].len() {
            let t = s.options[i][k];
            if k == 0 {
                dfs(p, st, s, i + 1, moved);
                continue;
            }
            let from = st.pos[g];
            let mark = st.mark();
            st.shift(p, g, t);
            moved.push(g);
            dfs(p, st, s, i + 1, moved);
            moved.pop();
            st.rollback(p, mark, &[(g, from)]);
        }
    }
    let (start_mem, start_vcpus) = (st.mem.clone(), st.vcpus.clone());
    let mut search = Exhaustive {
        guests: &guests,
        options: &options,
        violations: max_violations,
        start_mem: &start_mem,
        start_vcpus: &start_vcpus,
        found: Vec::new(),
        beat,
        limits,
    };
    dfs(p, &mut st, &mut search, 0, &mut Vec::new());
    // Best first (fewest moves, then placement order on ties); the first that can be run step
    // by step wins.
    let mut found = search.found;
    found.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then_with(|| x.2.cmp(&y.2)));
    found.into_iter().take(EXACT_TRIES).find_map(|(_, _, at)| sequence(p, st.clone(), &guests, &at))
}

/// Moves `guests` to `at` from `st` in an order valid at every step (repeatedly the first
/// pending move, largest first, that fits now and adds no violation), or `None`.
fn sequence(p: &Problem, mut st: State, guests: &[usize], at: &[usize]) -> Option<Vec<(usize, usize)>> {
    let mut pending: Vec<(usize, usize)> =
        guests.iter().zip(at).filter(|(&g, &t)| st.pos[g] != t).map(|(&g, &t)| (g, t)).collect();
    pending.sort_by(|&(x, _), &(y, _)| weight_of(p, y).total_cmp(&weight_of(p, x)).then(x.cmp(&y)));
    let mut moves = Vec::new();
    while !pending.is_empty() {
        let mut done = None;
        for (k, &(g, t)) in pending.iter().enumerate() {
            if !st.has_room(p, g, t) || !st.under_target_max(p, g, t) || st.apart_mates_on(p, g, t) > 0 {
                continue;
            }
            let from = st.pos[g];
            let mark = st.mark();
            st.shift(p, g, t);
            if st.added > 0 {
                st.rollback(p, mark, &[(g, from)]);
                continue;
            }
            st.commit();
            moves.push((g, t));
            done = Some(k);
            break;
        }
        pending.remove(done?);
    }
    Some(moves)
}

/// When no single move or swap helps: the best pair of moves of two simple guests (any sources,
/// any targets among the hottest and coolest few nodes), run one after the other, each step
/// valid. That covers swaps of any sizes and two guests leaving one node for two others, which
/// is where single moves get stuck in a local optimum on small clusters. A pair must not lift
/// any node it touches above the hottest of them before (no overshoot).
fn best_pair(
    p: &Problem,
    st: &mut State,
    budget: &Budget,
    movable: &Movable,
    balancing: bool,
    min_gain: f64,
) -> Option<Candidate> {
    let mut order: Vec<usize> = (0..p.nodes.len()).filter(|&n| p.nodes[n].balanced).collect();
    if order.len() < 2 {
        return None;
    }
    let u: Vec<f64> = (0..p.nodes.len()).map(|n| st.use_pct(p, n)).collect();
    order.sort_by(|&a, &b| u[b].total_cmp(&u[a]).then(a.cmp(&b)));
    if order.len() > 2 * PAIR_NODES {
        let cool = order.split_off(order.len() - PAIR_NODES);
        order.truncate(PAIR_NODES);
        order.extend(cool);
    }
    let mut singles: Vec<(usize, usize)> = Vec::new();
    for &n in &order {
        let mut gs: Vec<usize> = movable.on[n].iter().copied().filter(|&g| movable.simple[g]).collect();
        gs.sort_by(|&x, &y| weight_of(p, y).total_cmp(&weight_of(p, x)).then(x.cmp(&y)));
        gs.truncate(PAIR_GUESTS);
        for g in gs {
            let info = &p.guests[g];
            for &t in &order {
                if t != n && p.allows(g, t) && info.no_return.binary_search(&t).is_err() {
                    singles.push((g, t));
                }
            }
        }
    }
    let base = st.objective(p);
    let accept = Accept::new(p, st, balancing, min_gain);
    let mut best: Option<Candidate> = None;
    for (i, &(g1, t1)) in singles.iter().enumerate() {
        let s1 = st.pos[g1];
        if !st.has_room(p, g1, t1) || !st.under_target_max(p, g1, t1) {
            continue;
        }
        let mark = st.mark();
        st.shift(p, g1, t1);
        let after1 = st.objective(p) - base;
        let pen1 = st.penalties();
        for (j, &(g2, t2)) in singles.iter().enumerate() {
            // Each unordered pair once, unless the order matters for room (then both orders).
            if g2 == g1 || (j < i && st.pos[g2] != t1 && t2 != s1) {
                continue;
            }
            let s2 = st.pos[g2];
            if s2 == t2 || !st.has_room(p, g2, t2) || !st.under_target_max(p, g2, t2) {
                continue;
            }
            let q = st.quick_move(p, g2, t2);
            let delta = after1 + q.delta;
            let secs = p.guests[g1].rank_secs + p.guests[g2].rank_secs;
            let pen_after = pen1 + q.pen_delta;
            let touched = [s1, t1, s2, t2];
            let gap = touched.iter().map(|&n| u[n]).fold(f64::NEG_INFINITY, f64::max)
                - touched.iter().map(|&n| u[n]).fold(f64::INFINITY, f64::min);
            if !accept.takes(delta, secs, pen_after, gap, &best)
                || !budget.fits(p, &[g1, g2], &[s1, t1, s2, t2])
            {
                continue;
            }
            // No overshoot: the touched nodes' peak must not rise.
            let touched = [s1, t1, s2, t2];
            let peak_before = touched.iter().map(|&n| u[n]).fold(f64::NEG_INFINITY, f64::max);
            let after = |n: usize| {
                if n == t2 {
                    q.target_use
                } else if n == s2 {
                    st.use_pct_with(p, n, g2, false)
                } else {
                    st.use_pct(p, n)
                }
            };
            if touched.iter().any(|&n| after(n) > peak_before + SLACK) {
                continue;
            }
            best = Some(Candidate {
                moves: vec![(g1, t1), (g2, t2)],
                delta,
                secs,
                pen_after,
                target_use: q.target_use,
            });
        }
        st.rollback(p, mark, &[(g1, s1)]);
    }
    best
}

/// The objective gain a balancing move must bring: `min_gain` points of gap closed between its
/// source and its target. The objective is the summed squared deviation (points²/100): moving x
/// points from a node `gap` points above its target to it gains 2·x·(gap − x)/100 and closes
/// their gap by about 2·x, so `min_gain · gap / 100` asks for roughly `min_gain` points closed
/// whatever the gap (2·x·(gap − x)/gap ≥ `min_gain`). A fixed threshold in objective units
/// instead forbade every move once the spread fell below √(200·min_gain) (10 points at the
/// default 0.5), so `balanciness` under that was unreachable. Never below 1e-9 (strict descent).
fn required_gain(min_gain: f64, gap: f64) -> f64 {
    (min_gain * gap.max(0.0) / 100.0).max(SLACK)
}

/// Does a balancing candidate with objective change `delta` (its cost in points included) pay,
/// between nodes `gap` points apart?
fn pays(delta: f64, gap: f64, min_gain: f64) -> bool {
    delta < -required_gain(min_gain, gap)
}

fn single(p: &Problem, g: usize) -> bool {
    p.bundles[p.guests[g].bundle].len() == 1
}

/// The guest's weight in the balanced dimensions, relative to an average node.
fn weight_of(p: &Problem, g: usize) -> f64 {
    (0..DIMS).map(|d| p.weights[d] * p.guests[g].load[d]).sum()
}

/// Swap x (on a) with y (on b), in an order that is valid at every step, parking x on a third
/// node when neither order fits.
fn try_swap(p: &Problem, st: &mut State, budget: &Budget, x: usize, y: usize) -> Option<Candidate> {
    let (a, b) = (st.pos[x], st.pos[y]);
    for (g, t) in [(x, b), (y, a)] {
        let info = &p.guests[g];
        if !p.allows(g, t) || info.no_return.binary_search(&t).is_ok() {
            return None;
        }
    }
    if !budget.fits(p, &[x, y], &[a, b, a, b]) {
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
        secs: seq.iter().map(|&(g, _)| p.guests[g].rank_secs).sum(),
        pen_after: st.penalties(),
        target_use: st.use_pct(p, watch),
    });
    st.rollback(p, mark, &done);
    result
}

#[cfg(test)]
mod beats_tests {
    use super::beats;

    #[test]
    fn a_better_rate_wins_and_equal_rates_go_to_the_cheaper_or_with_larger_first_the_larger() {
        // (delta, secs): -2 points in 20 s and -4 points in 40 s pay the same per second.
        let small = (-2.0, 20.0);
        let large = (-4.0, 40.0);
        assert!(beats(small.0, small.1, Some(large), false), "a tie goes to the cheaper move");
        assert!(!beats(large.0, large.1, Some(small), false));
        assert!(beats(large.0, large.1, Some(small), true), "balance_larger_guests_first: the larger");
        assert!(!beats(small.0, small.1, Some(large), true));
        // A clearly better rate wins either way.
        for larger_first in [false, true] {
            assert!(beats(-4.0, 20.0, Some(large), larger_first));
            assert!(!beats(-1.0, 40.0, Some(small), larger_first));
        }
    }
}
