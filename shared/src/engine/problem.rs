//! The dense, index-based view of a snapshot that the search works on: every rule resolved to
//! per-guest and per-group facts, every figure in the unit the objective uses.

// Per-dimension arithmetic indexes several arrays by the same `d`; index loops read best.
#![allow(clippy::needless_range_loop)]

use crate::model::{ClusterSnapshot, Guest, GuestKind, GuestStatus, NodeStatus};
use crate::plan::{Method, Mode, PlanRequest};
use crate::rules::{Diagnostic, Policies, RuleSource, Severity, Strength};
use std::collections::{BTreeMap, HashMap};

/// Memory, CPU, disk.
pub const DIMS: usize = 3;
pub const GIB: f64 = (1u64 << 30) as f64;

/// What the engine is asked to do.
#[derive(Clone, Debug, Default)]
pub struct Task {
    /// Extra nodes to drain (besides maintenance ones).
    pub drain: Vec<String>,
    /// Drain stopped guests too.
    pub drain_stopped: bool,
    /// Ignored guests leave drained nodes as well (maintenance is explicit intent).
    pub drain_ignored: bool,
    /// Guests that must go to a node (return home).
    pub homes: BTreeMap<u32, String>,
    /// Only mandatory moves (rules, drains, homes); no balancing.
    pub mandatory_only: bool,
    /// Only guests on drained nodes or with a home move: a maintenance action must not also
    /// repair rules broken elsewhere (those stay diagnostics, for a plan to fix).
    pub scoped: bool,
}

#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    /// Counted in the objective and the spread.
    pub balanced: bool,
    /// May receive guests at all (online, not drained, not ignored, not a no-target node).
    pub can_target: bool,
    /// Balancing may take guests from it.
    pub can_source: bool,
    pub drained: bool,
    pub capacity: [f64; DIMS],
    pub mem_cap: f64,
    pub vcpu_cap: Option<f64>,
    pub qemu: Option<Vec<u64>>,
    pub target_max: [Option<f64>; DIMS],
    pub overload: [Option<f64>; DIMS],
    /// PSI mode: host pressure at or above the threshold.
    pub pressure_hot: bool,
    /// An overload threshold is set or the node is under pressure (`node_over` may be > 0).
    pub may_be_over: bool,
    pub initial_load: [f64; DIMS],
    pub initial_mem: f64,
    pub initial_vcpus: f64,
}

#[derive(Clone, Debug)]
pub struct GuestInfo {
    /// Index into `snapshot.guests`.
    pub index: usize,
    pub vmid: u32,
    pub home: usize,
    pub load: [f64; DIMS],
    /// Memory it occupies on a node (running guests), bytes.
    pub mem: f64,
    pub vcpus: f64,
    /// Estimated migration seconds (set-up, RAM and local disk at the bandwidth, container
    /// downtime times its weight): the plan's `migration_secs`.
    pub secs: f64,
    /// The same in objective points (`secs / seconds_per_point`, plus the legacy λ term): what a
    /// move's gain must beat.
    pub cost: f64,
    /// The seconds that grow with the guest (copy and downtime, `secs` without the set-up):
    /// what ranks paying moves. The set-up is in the price (`cost`), so dust never pays, but
    /// ranking by it would favour mid-sized guests over the small ones that close a gap with
    /// fewer GiB.
    pub rank_secs: f64,
    /// GiB that actually cross the network.
    pub gib: f64,
    /// Why balancing must not move it (`None` = it may).
    pub frozen: Option<String>,
    /// Why nothing may move it, not even a rule fix or drain (`None` = mandatory moves may).
    pub pinned_down: Option<String>,
    /// Hard allowed nodes (sorted indices); `None` = any.
    pub allowed: Option<Vec<usize>>,
    pub preferred: Option<Vec<usize>>,
    pub apart_hard: Vec<u32>,
    pub apart_soft: Vec<u32>,
    pub together_soft: Vec<u32>,
    pub bundle: usize,
    /// Nodes it left recently: balancing does not send it back.
    pub no_return: Vec<usize>,
    /// Running VM with a known QEMU version.
    pub qemu: Option<Vec<u64>>,
    /// Must leave its node (drain) or must reach `allowed` (home); drives mandatory moves.
    pub must_leave_drained: bool,
}

pub struct Problem<'a> {
    pub snapshot: &'a ClusterSnapshot,
    pub request: PlanRequest,
    pub method: Method,
    pub weights: [f64; DIMS],
    pub nodes: Vec<NodeInfo>,
    pub guests: Vec<GuestInfo>,
    pub bundles: Vec<Vec<usize>>,
    pub policies: Policies,
    pub diagnostics: Vec<Diagnostic>,
    /// Guests left out of the problem (on a node the snapshot lacks), with the reason.
    pub outside: Vec<(usize, String)>,
    pub task: Task,
    pub group_names: Vec<String>,
    pub group_index: HashMap<String, u32>,
}

/// Dotted version → numbers ("9.2.0-1+pve2" → [9, 2, 0]); `None` if it starts with no number.
pub fn parse_version(v: &str) -> Option<Vec<u64>> {
    let parts: Vec<u64> = v
        .split(['.', '-', '+', '~'])
        .map_while(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    (!parts.is_empty()).then_some(parts)
}

/// Applies a DRS-like level: (balanciness, stop spread, min gain).
pub fn effective_request(request: &PlanRequest) -> PlanRequest {
    let mut r = request.clone();
    if let Some(level) = r.level {
        let (trigger, stop, gain) = match level {
            0 | 1 => (f64::INFINITY, f64::INFINITY, f64::INFINITY),
            2 => (30.0, 20.0, 2.0),
            3 => (20.0, 10.0, 1.0),
            4 => (10.0, 5.0, 0.5),
            _ => (5.0, 2.0, 0.1),
        };
        r.balanciness = trigger;
        r.stop_spread = Some(stop);
        r.min_gain = gain;
    }
    // NaN or negative settings would make every comparison lie; read them as "off".
    let sane = |x: f64, default: f64| if x.is_nan() || x < 0.0 { default } else { x };
    r.balanciness = sane(r.balanciness, 0.0);
    r.min_gain = sane(r.min_gain, 0.0);
    r.migration_cost_per_gib = sane(r.migration_cost_per_gib, 0.0);
    r.restart_cost_gib = sane(r.restart_cost_gib, 0.0);
    r.migration_setup_secs = sane(r.migration_setup_secs, 0.0);
    r.restart_downtime_secs = sane(r.restart_downtime_secs, 0.0);
    r.downtime_weight = sane(r.downtime_weight, 0.0);
    // 0 or an unreadable bandwidth would make every move infinitely dear: use the default.
    r.migration_bandwidth_mib_s = r.migration_bandwidth_mib_s.filter(|b| b.is_finite() && *b > 0.0);
    // A price of 0 makes every move unaffordable; "infinite" makes moves free.
    r.seconds_per_point = sane(r.seconds_per_point, crate::plan::SECONDS_PER_POINT);
    r
}

/// Fewest past migrations a measured bandwidth is taken from; fewer: the default.
pub const MIN_MEASURED: usize = 3;
/// Newest past migrations a measurement looks at.
pub const MAX_MEASURED: usize = 20;
/// A measured bandwidth is bounded to this range (MiB/s): from a throttled 1 GbE link to
/// 100 GbE, so one odd task cannot make moves free or unaffordable.
pub const MEASURED_RANGE: (f64, f64) = (50.0, 10_000.0);

/// MiB a migration of `g` copies, as the cost model counts them: memory of a running guest and
/// its local disks.
pub fn migration_mib(g: &Guest) -> f64 {
    let mem = if g.status == GuestStatus::Running { g.mem_used as f64 } else { 0.0 };
    (mem + g.local_disk_bytes as f64) / (1024.0 * 1024.0)
}

/// The bandwidth the snapshot's past migrations show: the median of each one's MiB (as
/// [`migration_mib`] counts them now; the guest must still exist) over its seconds beyond the
/// set-up, over the newest [`MAX_MEASURED`]; `None` below [`MIN_MEASURED`] usable ones.
/// Migrations that copied nothing or ended within the set-up say nothing about the link, nor do
/// containers': a restart migration copies no memory and its time is mostly the restart.
pub fn measured_bandwidth(snapshot: &ClusterSnapshot, setup_secs: f64) -> Option<(f64, u32)> {
    let guests: HashMap<u32, &Guest> = snapshot.guests.iter().map(|g| (g.vmid, g)).collect();
    let mut rates: Vec<f64> = snapshot
        .migration_timings
        .iter()
        .filter_map(|t| {
            let g = guests.get(&t.vmid).filter(|g| g.kind == GuestKind::Qemu)?;
            let mib = migration_mib(g);
            let copy = t.secs as f64 - setup_secs.max(0.0);
            (mib > 0.0 && copy >= 1.0).then(|| mib / copy)
        })
        .take(MAX_MEASURED)
        .collect();
    if rates.len() < MIN_MEASURED {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    let mid = rates.len() / 2;
    let median = if rates.len().is_multiple_of(2) { (rates[mid - 1] + rates[mid]) / 2.0 } else { rates[mid] };
    Some((median.clamp(MEASURED_RANGE.0, MEASURED_RANGE.1), rates.len() as u32))
}

/// The bandwidth a plan for `request` prices at: the request's, else measured, else the default.
pub fn bandwidth(snapshot: &ClusterSnapshot, request: &PlanRequest) -> crate::plan::Bandwidth {
    use crate::plan::{Bandwidth, BandwidthSource};
    if let Some(mib_s) = request.migration_bandwidth_mib_s.filter(|b| b.is_finite() && *b > 0.0) {
        return Bandwidth { mib_s, source: BandwidthSource::Configured, migrations: 0 };
    }
    match measured_bandwidth(snapshot, request.migration_setup_secs) {
        Some((mib_s, migrations)) => Bandwidth { mib_s, source: BandwidthSource::Measured, migrations },
        None => Bandwidth {
            mib_s: PlanRequest::DEFAULT_BANDWIDTH_MIB_S,
            source: BandwidthSource::Default,
            migrations: 0,
        },
    }
}

/// What moving one guest costs, in seconds and in objective points.
pub struct MoveCost {
    pub secs: f64,
    pub points: f64,
}

/// Prices a migration of `g` (see docs/ENGINE.md): set-up, memory (running guests) and local disk
/// at the bandwidth, a running container's restart downtime weighted, plus the legacy λ term.
pub fn move_cost(g: &Guest, request: &PlanRequest) -> MoveCost {
    let running = g.status == GuestStatus::Running;
    let mem_gib = if running { g.mem_used as f64 / GIB } else { 0.0 };
    let disk_gib = g.local_disk_bytes as f64 / GIB;
    let restart = running && g.kind == GuestKind::Lxc;
    let bandwidth = request.migration_bandwidth_mib_s.unwrap_or(PlanRequest::DEFAULT_BANDWIDTH_MIB_S);
    let downtime = if restart { request.restart_downtime_secs * request.downtime_weight } else { 0.0 };
    let secs = request.migration_setup_secs + (mem_gib + disk_gib) * 1024.0 / bandwidth + downtime;
    let legacy_gib = mem_gib + disk_gib + if restart { request.restart_cost_gib } else { 0.0 };
    let points = if request.seconds_per_point.is_finite() { secs / request.seconds_per_point } else { 0.0 };
    MoveCost { secs, points: points + request.migration_cost_per_gib * legacy_gib }
}

/// The figure one guest adds to its node per dimension, for `mode`.
pub fn guest_loads(g: &Guest, mode: Mode) -> [f64; DIMS] {
    let running = g.status == GuestStatus::Running;
    let f = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    match mode {
        Mode::Assigned => {
            let r = if running { 1.0 } else { 0.0 };
            [r * g.mem_max as f64, r * f(g.cpus), g.disk_max as f64]
        }
        _ if !running => [0.0; DIMS],
        Mode::Percentile => [
            g.mem_p95.unwrap_or(g.mem_used).max(g.mem_used) as f64,
            f(g.cpu_p95.unwrap_or(g.cpu_used)).max(f(g.cpu_used)),
            g.disk_used as f64,
        ],
        Mode::Used | Mode::Psi => [g.mem_used as f64, f(g.cpu_used), g.disk_used as f64],
    }
}

pub fn method_weights(method: Method, request: &PlanRequest) -> [f64; DIMS] {
    let w = match method {
        Method::Memory => [1.0, 0.0, 0.0],
        Method::Cpu => [0.0, 1.0, 0.0],
        Method::Disk => [0.0, 0.0, 1.0],
        Method::Weighted => {
            let c = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
            [c(request.weights.memory), c(request.weights.cpu), c(request.weights.disk)]
        }
    };
    let sum: f64 = w.iter().sum();
    if sum > 0.0 {
        w.map(|x| x / sum)
    } else {
        [1.0, 0.0, 0.0]
    }
}

fn interned(names: &mut Vec<String>, index: &mut HashMap<String, u32>, name: &str) -> u32 {
    if let Some(&i) = index.get(name) {
        return i;
    }
    let i = names.len() as u32;
    names.push(name.to_owned());
    index.insert(name.to_owned(), i);
    i
}

/// The dense problem for `task`: nodes, their loads, rule groups, guests, affinity bundles.
pub fn build<'a>(snapshot: &'a ClusterSnapshot, request: &PlanRequest, task: Task) -> Problem<'a> {
    let mut request = effective_request(request);
    // Unset: the measured figure, so every move is priced at what this cluster's links did.
    request.migration_bandwidth_mib_s = Some(bandwidth(snapshot, &request).mib_s);
    let policies = crate::rules::policies(snapshot, &request.rules);
    let method = request.method;
    let weights = method_weights(method, &request);
    let node_pos: HashMap<&str, usize> =
        snapshot.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut diagnostics = policies.diagnostics.clone();
    diagnostics.extend(unknown_roles(&request, &node_pos));
    let mut nodes: Vec<NodeInfo> =
        snapshot.nodes.iter().map(|n| node_info(n, &request, &policies, &task)).collect();
    set_initial_loads(snapshot, &request, &node_pos, &mut nodes);
    let mut groups = Groups::of(snapshot, &policies);
    let ctx = GuestContext {
        snapshot,
        request: &request,
        policies: &policies,
        task: &task,
        node_pos: &node_pos,
        nodes: &nodes,
    };
    let mut guests = Vec::new();
    let mut outside = Vec::new();
    for (index, g) in snapshot.guests.iter().enumerate() {
        match ctx.guest_info(index, g, &groups) {
            Ok(info) => guests.push(info),
            Err(why) => outside.push((index, why)),
        }
    }
    let bundles = bundle(&mut guests, &mut groups.union);
    Problem {
        snapshot,
        request,
        method,
        weights,
        nodes,
        guests,
        bundles,
        policies,
        diagnostics,
        outside,
        task,
        group_names: groups.names,
        group_index: groups.index,
    }
}

/// Role lists (`not_source`, `not_target`) that name no node.
fn unknown_roles(request: &PlanRequest, node_pos: &HashMap<&str, usize>) -> Vec<Diagnostic> {
    request
        .roles
        .not_source
        .iter()
        .chain(&request.roles.not_target)
        .filter(|role| !node_pos.contains_key(role.as_str()))
        .map(|role| Diagnostic {
            severity: Severity::Warning,
            source: RuleSource::Config { key: "roles".into(), value: role.clone() },
            message: "names no node".into(),
            vmids: vec![],
        })
        .collect()
}

/// One node's static facts: state, capacity with reserve, limits, pressure; loads come later.
fn node_info(n: &crate::model::Node, request: &PlanRequest, policies: &Policies, task: &Task) -> NodeInfo {
    let method = request.method;
    let online = n.status == NodeStatus::Online;
    let ignored = policies.ignored_nodes.contains(&n.name);
    let drained = n.maintenance
        || policies.maintenance_nodes.contains(&n.name)
        || task.drain.iter().any(|d| d == &n.name);
    let reserve = request.node_memory_reserve.get(&n.name).copied().unwrap_or(request.memory_reserve);
    let balanced = online && !ignored && !drained;
    let pct = |p: Option<f64>| p.filter(|x| x.is_finite());
    let pressure_hot = request.mode == Mode::Psi
        && n.pressure.is_some_and(|p| {
            let v = match method {
                Method::Cpu => p.cpu_some,
                Method::Disk => p.io_some,
                Method::Memory | Method::Weighted => p.memory_some.max(p.cpu_some),
            };
            v >= request.psi_threshold
        });
    let overload = [pct(request.overload.memory), pct(request.overload.cpu), pct(request.overload.disk)];
    NodeInfo {
        name: n.name.clone(),
        balanced,
        can_target: balanced && !request.roles.not_target.contains(&n.name),
        can_source: !request.roles.not_source.contains(&n.name),
        drained,
        capacity: [n.mem_total as f64, f64::from(n.cpus), n.disk_total as f64],
        mem_cap: n.mem_total.saturating_sub(reserve) as f64,
        vcpu_cap: request.cpu_overcommit.filter(|r| r.is_finite() && *r > 0.0).map(|r| r * f64::from(n.cpus)),
        qemu: n.qemu_version.as_deref().and_then(parse_version),
        target_max: [
            pct(request.target_max.memory),
            pct(request.target_max.cpu),
            pct(request.target_max.disk),
        ],
        overload,
        pressure_hot,
        may_be_over: pressure_hot || overload.iter().any(Option::is_some),
        initial_load: [0.0; DIMS],
        initial_mem: n.mem_used as f64,
        initial_vcpus: 0.0,
    }
}

/// Node loads: what the host uses beyond its guests stays put; guests carry their figure.
fn set_initial_loads(
    snapshot: &ClusterSnapshot,
    request: &PlanRequest,
    node_pos: &HashMap<&str, usize>,
    nodes: &mut [NodeInfo],
) {
    let mut used_sum = vec![[0.0; DIMS]; nodes.len()];
    let mut mode_sum = vec![[0.0; DIMS]; nodes.len()];
    let mut vcpus = vec![0.0; nodes.len()];
    for g in &snapshot.guests {
        if let Some(&n) = node_pos.get(g.node.as_str()) {
            let used = guest_loads(g, Mode::Used);
            let load = guest_loads(g, request.mode);
            for d in 0..DIMS {
                used_sum[n][d] += used[d];
                mode_sum[n][d] += load[d];
            }
            if g.status == GuestStatus::Running {
                vcpus[n] += g.cpus.max(0.0);
            }
        }
    }
    for (i, (info, n)) in nodes.iter_mut().zip(&snapshot.nodes).enumerate() {
        let node_used = [n.mem_used as f64, n.cpu_used.max(0.0), n.disk_used as f64];
        for d in 0..DIMS {
            let base =
                if request.mode == Mode::Assigned { 0.0 } else { (node_used[d] - used_sum[i][d]).max(0.0) };
            let load = base + mode_sum[i][d];
            info.initial_load[d] = if load.is_finite() { load } else { 0.0 };
        }
        info.initial_vcpus = vcpus[i];
    }
}

/// Group rules as the state counts them: interned ids per guest (hard and soft anti-affinity,
/// soft affinity) and hard affinity as a union-find over snapshot guests.
struct Groups {
    names: Vec<String>,
    index: HashMap<String, u32>,
    apart_of: HashMap<u32, (Vec<u32>, Vec<u32>)>,
    together_soft: HashMap<u32, Vec<u32>>,
    union: UnionFind,
}

impl Groups {
    fn of(snapshot: &ClusterSnapshot, policies: &Policies) -> Groups {
        let mut names = Vec::new();
        let mut index = HashMap::new();
        let mut apart_of: HashMap<u32, (Vec<u32>, Vec<u32>)> = HashMap::new();
        for g in &policies.apart {
            let id = interned(&mut names, &mut index, &format!("apart:{}", g.name));
            for v in &g.vmids {
                let e = apart_of.entry(*v).or_default();
                if g.strength == Strength::Hard {
                    e.0.push(id);
                } else {
                    e.1.push(id);
                }
            }
        }
        let mut together_soft: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut union = UnionFind::new(snapshot.guests.len());
        let vmid_pos: HashMap<u32, usize> =
            snapshot.guests.iter().enumerate().map(|(i, g)| (g.vmid, i)).collect();
        for g in &policies.together {
            if g.strength == Strength::Hard {
                let members: Vec<usize> = g.vmids.iter().filter_map(|v| vmid_pos.get(v).copied()).collect();
                for w in members.windows(2) {
                    union.join(w[0], w[1]);
                }
            } else {
                let id = interned(&mut names, &mut index, &format!("together:{}", g.name));
                for v in &g.vmids {
                    together_soft.entry(*v).or_default().push(id);
                }
            }
        }
        Groups { names, index, apart_of, together_soft, union }
    }
}

/// What every guest's facts are read against.
struct GuestContext<'c> {
    snapshot: &'c ClusterSnapshot,
    request: &'c PlanRequest,
    policies: &'c Policies,
    task: &'c Task,
    node_pos: &'c HashMap<&'c str, usize>,
    nodes: &'c [NodeInfo],
}

impl GuestContext<'_> {
    /// One guest's facts, or why it is left out of the problem.
    fn guest_info(&self, index: usize, g: &Guest, groups: &Groups) -> Result<GuestInfo, String> {
        let (request, task, nodes) = (self.request, self.task, self.nodes);
        let Some(&home) = self.node_pos.get(g.node.as_str()) else {
            return Err(format!("on node '{}', which is not in the snapshot", g.node));
        };
        let policy = self.policies.guest(g.vmid);
        let running = g.status == GuestStatus::Running;
        let mem = if running { g.mem_used as f64 } else { 0.0 };
        let price = move_cost(g, request);
        let pinned_down = self.pinned_down(g, home);
        let (frozen, no_return) = self.balance_holds(g, home, &pinned_down);
        let (apart_hard, apart_soft) = groups.apart_of.get(&g.vmid).cloned().unwrap_or_default();
        Ok(GuestInfo {
            index,
            vmid: g.vmid,
            home,
            load: guest_loads(g, request.mode),
            mem,
            vcpus: if running { g.cpus.max(0.0) } else { 0.0 },
            secs: price.secs,
            cost: price.points,
            rank_secs: price.secs - request.migration_setup_secs,
            gib: mem / GIB + g.local_disk_bytes as f64 / GIB,
            frozen,
            pinned_down,
            allowed: self.allowed(g),
            preferred: policy.and_then(|p| self.resolve(&p.preferred)),
            apart_hard,
            apart_soft,
            together_soft: groups.together_soft.get(&g.vmid).cloned().unwrap_or_default(),
            bundle: 0,
            no_return,
            qemu: if running && g.kind == GuestKind::Qemu {
                g.running_qemu.as_deref().and_then(parse_version)
            } else {
                None
            },
            must_leave_drained: nodes[home].drained && (running || task.drain_stopped),
        })
    }

    /// Node names → sorted node indices (unknown names dropped).
    fn resolve(&self, names: &Option<Vec<String>>) -> Option<Vec<usize>> {
        names.as_ref().map(|ns| {
            let mut v: Vec<usize> =
                ns.iter().filter_map(|n| self.node_pos.get(n.as_str()).copied()).collect();
            v.sort_unstable();
            v
        })
    }

    /// Hard allowed nodes: the rules' pin, narrowed to its home when the task returns it home.
    fn allowed(&self, g: &Guest) -> Option<Vec<usize>> {
        let allowed = self.policies.guest(g.vmid).and_then(|p| self.resolve(&p.allowed));
        let Some(home_node) = self.task.homes.get(&g.vmid) else { return allowed };
        let want: Vec<usize> = self.node_pos.get(home_node.as_str()).copied().into_iter().collect();
        Some(match allowed {
            None => want,
            Some(a) => want.into_iter().filter(|w| a.contains(w)).collect(),
        })
    }

    /// Why nothing may move the guest, not even a rule fix or a drain.
    fn pinned_down(&self, g: &Guest, home: usize) -> Option<String> {
        let (policies, request) = (self.policies, self.request);
        if g.template {
            Some("template".to_owned())
        } else if let Some(lock) = &g.lock {
            Some(format!("locked ({lock})"))
        } else if !g.local_resources.is_empty() {
            Some(format!("local resources: {}", g.local_resources.join(", ")))
        } else if g.local_disk_bytes > 0 && !request.allow_local_disks {
            Some("local disks (moving them is not allowed)".to_owned())
        } else if g.status == GuestStatus::Other {
            Some("neither running nor stopped".to_owned())
        } else if self.snapshot.nodes[home].status != NodeStatus::Online {
            Some(format!("its node {} is not online", g.node))
        } else if policies.ignored_nodes.contains(&g.node) {
            Some(format!("its node {} is ignored", g.node))
        } else if let Some(source) = policies.guest(g.vmid).and_then(|p| p.ignored.as_ref()) {
            let drains = self.task.drain_ignored && self.nodes[home].drained;
            (!drains).then(|| format!("ignored ({source})"))
        } else {
            None
        }
    }

    /// Why balancing must not move the guest (`frozen`), and the nodes it left too recently to
    /// return to.
    fn balance_holds(
        &self,
        g: &Guest,
        home: usize,
        pinned_down: &Option<String>,
    ) -> (Option<String>, Vec<usize>) {
        let (request, now) = (self.request, self.snapshot.collected_at);
        let recent: Vec<&crate::model::RecentMigration> =
            self.snapshot.recent_migrations.iter().filter(|m| m.vmid == g.vmid).collect();
        let cooling = recent.iter().any(|m| m.at <= now && now - m.at < request.cooldown_secs);
        let frozen = pinned_down.clone().or_else(|| {
            if cooling {
                Some(format!("cooldown: migrated less than {} s ago", request.cooldown_secs))
            } else if !self.nodes[home].can_source {
                Some(format!("{} is not a source node", g.node))
            } else {
                None
            }
        });
        let mut no_return: Vec<usize> = recent
            .iter()
            .filter(|m| m.at <= now && now - m.at < request.no_return_secs)
            .filter_map(|m| self.node_pos.get(m.from.as_str()).copied())
            .filter(|&n| n != home)
            .collect();
        no_return.sort_unstable();
        no_return.dedup();
        (frozen, no_return)
    }
}

/// Bundles: hard affinity components (in snapshot order); a bundle moves as one.
fn bundle(guests: &mut [GuestInfo], union: &mut UnionFind) -> Vec<Vec<usize>> {
    let mut root_bundle: HashMap<usize, usize> = HashMap::new();
    let mut bundles: Vec<Vec<usize>> = Vec::new();
    for (gi, guest) in guests.iter_mut().enumerate() {
        let root = union.find(guest.index);
        let b = *root_bundle.entry(root).or_insert_with(|| {
            bundles.push(Vec::new());
            bundles.len() - 1
        });
        bundles[b].push(gi);
        guest.bundle = b;
    }
    bundles
}

impl Problem<'_> {
    /// May `g` ever run on node `t` (static checks: hard pins, node state, QEMU version)?
    pub fn static_allows(&self, g: usize, t: usize) -> Result<(), String> {
        let guest = &self.guests[g];
        let node = &self.nodes[t];
        if !node.can_target {
            return Err(format!("{} takes no guests", node.name));
        }
        if let Some(allowed) = &guest.allowed {
            if allowed.binary_search(&t).is_err() {
                return Err("a hard pin allows other nodes only".into());
            }
        }
        if let (Some(running), Some(target)) = (&guest.qemu, &node.qemu) {
            if target < running {
                return Err(format!("{} runs an older QEMU than the VM", node.name));
            }
        }
        Ok(())
    }

    /// `static_allows(g, t).is_ok()`, without building the reason.
    pub fn allows(&self, g: usize, t: usize) -> bool {
        let guest = &self.guests[g];
        let node = &self.nodes[t];
        node.can_target
            && guest.allowed.as_ref().is_none_or(|a| a.binary_search(&t).is_ok())
            && !matches!((&guest.qemu, &node.qemu), (Some(running), Some(target)) if target < running)
    }

    pub fn guest(&self, g: usize) -> &Guest {
        &self.snapshot.guests[self.guests[g].index]
    }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind((0..n).collect())
    }
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn join(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // The smaller index as root keeps bundles in snapshot order.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}
