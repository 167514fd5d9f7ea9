//! The simulated week: two identical simulators run a seeded week of diurnal load with bursts;
//! ProxLB (executing) balances copy A every simulated hour, pve-rebalancer's ProxLB-compatible CLI
//! (`pve-rebalancer -c proxlb.yaml`, executing) balances copy B on its own schedule.
//!
//! Clock: each simulator's clock runs at [`CLOCK_RATE`] simulated seconds per wall second while a
//! tool runs (so migration tasks finish and both tools' status polling ends), and the harness
//! advances it to the next schedule point between runs. Node load is then sampled from the
//! simulator's own load model (`Cluster::node_load_at`, the curves behind `/cluster/resources` and
//! the RRD) for the placement each tool left, [`SAMPLES_PER_HOUR`] times per simulated hour.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pve_sim::scenario::{BurstSpec, DynamicsSpec, GuestStatus, RandomBurstSpec, GIB};
use pve_sim::{GuestType, Scenario};
use shared::Plan;

/// Simulated seconds per wall second while a tool runs.
pub const CLOCK_RATE: f64 = 300.0;
/// Load samples per simulated hour.
pub const SAMPLES_PER_HOUR: usize = 4;
/// A node above this percentage (memory or CPU) is "hot".
pub const HOT_PERCENT: f64 = 85.0;
/// ProxLB's sleeps of a second or more (5 s between task-status sweeps) last this long instead.
pub const PROXLB_LONG_SLEEP_S: f64 = 0.2;
/// The week starts Monday 2030-01-07 00:00 UTC on every copy (the clocks jump there first), so the
/// diurnal phase, the weekend and the seeded noise (keyed on simulated time) are the same on every
/// rerun.
pub const WEEK_START: f64 = 1_893_974_400.0;

/// The week's shape.
#[derive(Clone, Debug)]
pub struct WeekSpec {
    pub seed: u64,
    pub nodes: usize,
    pub guests: usize,
    /// Simulated hours.
    pub hours: usize,
    /// ProxLB runs every hour (as its `schedule: {interval: 1, format: hours}` would).
    pub proxlb_every_h: usize,
    /// Our CLI's schedule.
    pub ours_every_h: usize,
}

impl WeekSpec {
    pub fn new(quick: bool) -> WeekSpec {
        if quick {
            WeekSpec { seed: 71, nodes: 4, guests: 40, hours: 6, proxlb_every_h: 1, ours_every_h: 1 }
        } else {
            WeekSpec { seed: 71, nodes: 6, guests: 100, hours: 7 * 24, proxlb_every_h: 1, ours_every_h: 1 }
        }
    }
}

/// The week's cluster: `generate(seed, nodes, guests)` with equal nodes filled to ~68 % memory,
/// a diurnal curve (peak 14:00, ±3 h per guest) that memory follows by half, a quieter weekend,
/// smooth noise, random CPU bursts and a nightly batch job on every 12th guest that takes 95 %
/// of its memory for two hours.
pub fn scenario(spec: &WeekSpec) -> Scenario {
    let mut sc = pve_sim::generate(spec.seed, spec.nodes, spec.guests);
    let used: f64 = sc
        .guests
        .iter()
        .filter(|g| g.status == GuestStatus::Running)
        .map(|g| g.memory_used_gib.unwrap_or(g.memory_gib * g.memory_used.unwrap_or(0.6)))
        .sum();
    let per = used / 0.68 / sc.nodes.len() as f64;
    let size = (per / 8.0).ceil() * 8.0;
    for n in sc.nodes.iter_mut() {
        n.cpus = 32;
        n.memory_gib = size.max(16.0);
    }
    // Equal nodes with the generator's placement can start over capacity on one node; the
    // unbalanced baseline must still be a cluster PVE could run.
    crate::scenarios::fix_overflow(&mut sc);
    let bursts = sc
        .guests
        .iter()
        .filter(|g| g.vmid % 12 == 0)
        .map(|g| BurstSpec {
            vmid: Some(g.vmid),
            node: None,
            // hour of day 01:00–05:00 UTC once `align_bursts` has run
            start_s: 3600.0 * (1.0 + (g.vmid % 5) as f64),
            duration_s: 7200.0,
            every_s: Some(86400.0),
            cpu: 0.95,
            memory_used: Some(0.95),
        })
        .collect();
    sc.dynamics = Some(DynamicsSpec {
        diurnal_amplitude: 0.35,
        peak_hour: 14.0,
        phase_jitter_h: 3.0,
        weekend_factor: 0.7,
        noise: 0.1,
        noise_period_s: 1800.0,
        memory_follow: 0.5,
        random_bursts: Some(RandomBurstSpec { per_day: 0.5, duration_s: 1800.0, cpu: 0.95 }),
        bursts,
    });
    sc
}

/// One migration seen in a simulator (placement before and after a run).
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    /// Simulated seconds since the week began (the run's schedule point).
    pub at: f64,
    pub vmid: u32,
    pub from: String,
    pub to: String,
    /// Used memory of a running guest plus its local disk.
    pub gib: f64,
    /// A running container: stopped, moved, started.
    pub restart: bool,
}

/// What one side of the week produced.
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub runs: usize,
    /// Runs that did not exit 0, with their message (first few).
    pub failures: Vec<String>,
    pub failed_runs: usize,
    pub migrations: Vec<Migration>,
    /// Node-hours above [`HOT_PERCENT`]: memory, CPU.
    pub hot_mem_h: f64,
    pub hot_cpu_h: f64,
    /// Memory spread (max − min node percent) of every sample.
    pub spreads: Vec<f64>,
    /// |predicted − observed| memory percent per node touched by a plan, at the next sample.
    pub prediction_errors: Vec<f64>,
    /// Wall time spent in the tool's runs.
    pub wall: Duration,
    /// What the simulator's consistency check found after the week (e.g. memory over-committed).
    pub invariants: Vec<String>,
}

impl Side {
    pub fn gib(&self) -> f64 {
        self.migrations.iter().map(|m| m.gib).sum::<f64>() + 0.0
    }
    pub fn restarts(&self) -> usize {
        self.migrations.iter().filter(|m| m.restart).count()
    }
    /// Migrations that took a guest back to a node it had left less than 24 simulated hours before.
    pub fn reversals(&self) -> usize {
        reversals(&self.migrations, 86400.0)
    }
    pub fn mean_spread(&self) -> f64 {
        if self.spreads.is_empty() {
            return 0.0;
        }
        self.spreads.iter().sum::<f64>() / self.spreads.len() as f64
    }
    pub fn worst_spread(&self) -> f64 {
        self.spreads.iter().cloned().fold(0.0, f64::max)
    }
}

/// Counts migrations `m` for which an earlier migration of the same guest left `m.to` less than
/// `window` seconds before `m.at`.
pub fn reversals(moves: &[Migration], window: f64) -> usize {
    moves
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            moves[..*i]
                .iter()
                .any(|p| p.vmid == m.vmid && p.from == m.to && m.at - p.at < window && p.at < m.at)
        })
        .count()
}

/// The week's result.
#[derive(Clone, Debug)]
pub struct WeekResult {
    pub spec: WeekSpec,
    pub node_gib: f64,
    pub proxlb: Side,
    pub ours: Side,
    /// Both copies without any balancing, as a baseline (same samples).
    pub idle: Side,
    pub total: Duration,
}

/// Guest placement and what a move of each guest would cost.
struct GuestInfo {
    node: String,
    gib: f64,
    restart: bool,
}

fn placement(sim: &pve_sim::RunningSim) -> BTreeMap<u32, GuestInfo> {
    sim.with_cluster(|c| {
        c.guests
            .values()
            .map(|g| {
                let running = g.running();
                let disk = if c.guest_has_local_disk(g) { g.disk_used() as f64 } else { 0.0 };
                let mem = if running { g.mem() as f64 } else { 0.0 };
                let info = GuestInfo {
                    node: g.node.clone(),
                    gib: (mem + disk) / GIB,
                    restart: running && g.spec.kind == GuestType::Lxc,
                };
                (g.spec.vmid, info)
            })
            .collect()
    })
}

fn diff(before: &BTreeMap<u32, GuestInfo>, after: &BTreeMap<u32, GuestInfo>, at: f64) -> Vec<Migration> {
    before
        .iter()
        .filter_map(|(id, b)| {
            let a = after.get(id)?;
            (a.node != b.node).then(|| Migration {
                at,
                vmid: *id,
                from: b.node.clone(),
                to: a.node.clone(),
                gib: b.gib,
                restart: b.restart,
            })
        })
        .collect()
}

/// Memory and CPU percent per node at simulated time `t` (current placement), averaged over the
/// sample interval before `t`.
fn node_percents(sim: &pve_sim::RunningSim, t: f64, step: f64) -> BTreeMap<String, (f64, f64)> {
    sim.with_cluster(|c| {
        c.nodes
            .iter()
            .filter(|(_, n)| n.online)
            .filter_map(|(name, n)| {
                let (cpu, mem) = c.node_load_at(name, t, step, false)?;
                Some((name.clone(), (100.0 * mem / (n.spec.memory_gib * GIB), 100.0 * cpu)))
            })
            .collect()
    })
}

/// Samples the hour after `start` (simulated) into `side`; with `predicted`, the first sample is
/// compared with the plan's predicted memory percent for the nodes the plan changed.
fn sample_hour(sim: &pve_sim::RunningSim, start: f64, side: &mut Side, predicted: Option<&Plan>) {
    let step = 3600.0 / SAMPLES_PER_HOUR as f64;
    for k in 1..=SAMPLES_PER_HOUR {
        let p = node_percents(sim, start + step * k as f64, step);
        let h = 1.0 / SAMPLES_PER_HOUR as f64;
        side.hot_mem_h += h * p.values().filter(|(m, _)| *m > HOT_PERCENT).count() as f64;
        side.hot_cpu_h += h * p.values().filter(|(_, c)| *c > HOT_PERCENT).count() as f64;
        let mems: Vec<f64> = p.values().map(|(m, _)| *m).collect();
        let max = mems.iter().cloned().fold(f64::MIN, f64::max);
        let min = mems.iter().cloned().fold(f64::MAX, f64::min);
        side.spreads.push(if mems.is_empty() { 0.0 } else { max - min });
        if let (1, Some(plan)) = (k, predicted) {
            for a in &plan.after {
                let changed = plan.steps.iter().any(|s| s.from == a.node || s.to == a.node);
                if let (true, Some((m, _))) = (changed, p.get(&a.node)) {
                    side.prediction_errors.push((a.percent - m).abs());
                }
            }
        }
    }
}

/// Moves a simulator's clock forward to `t` (never backwards).
fn advance_to(sim: &pve_sim::RunningSim, t: f64) {
    let now = sim.now();
    if t > now {
        sim.advance_clock(t - now);
    }
}

/// The configuration for both tools (ProxLB's keys; ours adds `rebalancer:` paths for its
/// journal and lock).
fn proxlb_config(port: u16) -> String {
    crate::proxlb::config(port, "", false)
}

fn ours_config(port: u16, state: &Path) -> String {
    format!(
        "{}rebalancer:\n  journal: {}\n  lock_dir: {}\n",
        proxlb_config(port),
        state.join("journal.sqlite").display(),
        state.join("lock").display()
    )
}

/// The command line our side runs each time (`-j` prints the plan it then executes).
pub fn ours_args(cfg: &Path) -> Vec<String> {
    vec!["-c".into(), cfg.display().to_string(), "-j".into()]
}

/// Runs our CLI once (executing); returns the printed plan.
async fn run_ours(bin: &Path, cfg: &Path, timeout: Duration) -> Result<Plan, String> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(ours_args(cfg)).env("RUST_LOG", "warn").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run {}: {e}", bin.display())),
        Err(_) => return Err(format!("timed out after {} s (killed)", timeout.as_secs())),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(2).collect();
        return Err(format!("exit {:?}: {}", out.status.code(), tail.join(" / ")));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("plan JSON: {e}"))
}

async fn start(sc: &Scenario) -> anyhow::Result<pve_sim::RunningSim> {
    let mut cfg = pve_sim::SimConfig::new(sc.clone());
    cfg.time_scale = 1000.0;
    cfg.clock_rate = CLOCK_RATE;
    let sim = pve_sim::start(cfg).await?;
    // Burst starts count from the simulator's start (wall clock); shift them so they fall on the
    // same hours of the day whenever the harness runs.
    sim.with_cluster(|c| {
        let since_midnight = c.started_at.rem_euclid(86400) as f64;
        if let Some(d) = c.dynamics.as_mut() {
            for b in d.bursts.iter_mut() {
                b.start_s -= since_midnight;
            }
        }
    });
    advance_to(&sim, WEEK_START);
    Ok(sim)
}

/// Runs the week; progress on stderr.
pub async fn run(spec: &WeekSpec, cli: &Path, timeout: Duration) -> anyhow::Result<WeekResult> {
    let t = Instant::now();
    let sc = scenario(spec);
    let node_gib = sc.nodes.first().map_or(0.0, |n| n.memory_gib);
    let a = start(&sc).await?;
    let b = start(&sc).await?;
    let idle = start(&sc).await?;
    let state = crate::temp_dir("week-ours");
    let _ = std::fs::create_dir_all(state.join("lock"));
    let cfg_b = state.join("proxlb.yaml");
    std::fs::write(&cfg_b, ours_config(b.addr.port(), &state))?;
    let cfg_a = proxlb_config(a.addr.port());
    let (a0, b0, i0) = (WEEK_START, WEEK_START, WEEK_START);
    let (mut pa, mut pb, mut pi) = (Side::default(), Side::default(), Side::default());
    for h in 0..spec.hours {
        let off = 3600.0 * h as f64;
        advance_to(&a, a0 + off);
        advance_to(&b, b0 + off);
        advance_to(&idle, i0 + off);
        let before_a = placement(&a);
        let before_b = placement(&b);
        let run_a = h % spec.proxlb_every_h.max(1) == 0;
        let run_b = h % spec.ours_every_h.max(1) == 0;
        let w = Instant::now();
        let fa = async {
            if run_a {
                let r =
                    crate::proxlb::run_capped(&cfg_a, false, true, Some(PROXLB_LONG_SLEEP_S), timeout).await;
                Some((r, w.elapsed()))
            } else {
                None
            }
        };
        let fb = async {
            if run_b {
                Some((run_ours(cli, &cfg_b, timeout).await, w.elapsed()))
            } else {
                None
            }
        };
        let (ra, rb) = tokio::join!(fa, fb);
        if let Some((r, wall)) = ra {
            pa.runs += 1;
            pa.wall += wall;
            if !r.ok {
                pa.failed_runs += 1;
                if pa.failures.len() < 3 {
                    pa.failures.push(format!("hour {h}: {}", r.error.unwrap_or_default()));
                }
            }
        }
        let mut plan_b = None;
        if let Some((r, wall)) = rb {
            pb.runs += 1;
            pb.wall += wall;
            match r {
                Ok(p) => plan_b = Some(p),
                Err(e) => {
                    pb.failed_runs += 1;
                    if pb.failures.len() < 3 {
                        pb.failures.push(format!("hour {h}: {e}"));
                    }
                }
            }
        }
        pa.migrations.extend(diff(&before_a, &placement(&a), off));
        pb.migrations.extend(diff(&before_b, &placement(&b), off));
        sample_hour(&a, a0 + off, &mut pa, None);
        let executed = plan_b.filter(|p| !p.steps.is_empty());
        sample_hour(&b, b0 + off, &mut pb, executed.as_ref());
        sample_hour(&idle, i0 + off, &mut pi, None);
        if h % 24 == 23 || h + 1 == spec.hours {
            eprintln!(
                "week [{:>6.1} s]: day {} done; migrations ProxLB {} / ours {}",
                t.elapsed().as_secs_f64(),
                h / 24 + 1,
                pa.migrations.len(),
                pb.migrations.len()
            );
        }
    }
    for (s, side) in [(&a, &mut pa), (&b, &mut pb), (&idle, &mut pi)] {
        if let Err(v) = s.check_invariants() {
            side.invariants = v;
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    idle.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(WeekResult { spec: spec.clone(), node_gib, proxlb: pa, ours: pb, idle: pi, total: t.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(at_h: f64, vmid: u32, from: &str, to: &str) -> Migration {
        Migration { at: at_h * 3600.0, vmid, from: from.into(), to: to.into(), gib: 1.0, restart: false }
    }

    #[test]
    fn a_return_within_a_day_is_a_reversal_later_or_elsewhere_is_not() {
        let moves = vec![
            m(0.0, 1, "a", "b"),
            m(5.0, 1, "b", "a"), // back to a within 24 h: reversal
            m(1.0, 2, "a", "b"),
            m(30.0, 2, "b", "a"), // after 29 h: not
            m(2.0, 3, "a", "b"),
            m(3.0, 3, "b", "c"), // onwards, not back
        ];
        assert_eq!(reversals(&moves, 86400.0), 1);
    }

    #[test]
    fn week_scenario_is_deterministic_and_valid() {
        let s = WeekSpec::new(false);
        let a = scenario(&s);
        assert_eq!(a, scenario(&s));
        a.validate().unwrap();
        assert!(a.dynamics.as_ref().is_some_and(|d| !d.bursts.is_empty()));
        // The unbalanced start is still a cluster PVE could run: no node over its memory.
        for (n, used) in a.nodes.iter().zip(crate::scenarios::loads(&a)) {
            assert!(used <= n.memory_gib, "{} starts at {used:.0} of {} GiB", n.name, n.memory_gib);
        }
    }
}
