//! Values that parse but cannot be meant, each with the fix; and settings we read but do not
//! apply (warned, so nobody relies on them silently).

use super::map::parse_host;
use super::types::ProxlbConfig;

/// (dotted key path, what is wrong and how to fix it).
pub(super) type Issue = (String, String);

pub(super) fn check(c: &ProxlbConfig) -> Vec<Issue> {
    let mut out: Vec<Issue> = Vec::new();
    let mut bad = |path: &str, msg: String| out.push((path.to_owned(), msg));
    let api = &c.proxmox_api;

    if api.hosts.is_empty() {
        bad("proxmox_api.hosts", "no PVE host given; add e.g. `hosts: ['pve1.example.com:8006']`".into());
    }
    for h in &api.hosts {
        if let Err(e) = parse_host(h) {
            bad("proxmox_api.hosts", e);
        }
    }
    if let Some(t) = &api.token_id {
        if t.contains('@') || t.contains('!') {
            bad(
                "proxmox_api.token_id",
                format!(
                    "`{t}` must be only the token's name (the part after `!`); put the user in \
                     proxmox_api.user and write e.g. `token_id: {}`",
                    t.rsplit('!').next().unwrap_or(t).rsplit('@').next().unwrap_or(t)
                ),
            );
        }
    }
    if api.pass.is_some() && (api.token_id.is_some() || api.token_secret.is_some()) {
        bad(
            "proxmox_api.pass",
            "give either pass or token_id + token_secret, not both; remove one of them".into(),
        );
    }
    if api.token_id.is_some() != api.token_secret.is_some() {
        let missing = if api.token_id.is_some() { "token_secret" } else { "token_id" };
        bad("proxmox_api.token_id", format!("token_id and token_secret go together; add {missing}"));
    }
    if (api.pass.is_some() || api.token_id.is_some()) && api.user.is_none() {
        bad("proxmox_api.user", "missing; add e.g. `user: root@pam`".into());
    }
    if let Some(u) = &api.user {
        if !u.contains('@') {
            bad("proxmox_api.user", format!("`{u}` lacks a realm; write e.g. `{u}@pam` or `{u}@pve`"));
        }
    }
    if !positive(api.timeout) {
        bad("proxmox_api.timeout", format!("{} must be more than 0 seconds", api.timeout));
    }
    if api.wait_time < 0.0 {
        bad("proxmox_api.wait_time", format!("{} must be 0 or more seconds", api.wait_time));
    }

    let b = &c.balancing;
    if !non_negative(b.balanciness) {
        bad("balancing.balanciness", format!("{} must be 0 or more (percentage points)", b.balanciness));
    }
    if b.parallel_jobs == 0 {
        bad("balancing.parallel_jobs", "must be at least 1 (set `parallel: false` for one at a time)".into());
    }
    if b.max_job_validation == 0 {
        bad("balancing.max_job_validation", "must be at least 1".into());
    }
    for (key, v) in [
        ("balancing.memory_threshold", b.memory_threshold),
        ("balancing.cpu_threshold", b.cpu_threshold),
        ("balancing.disk_threshold", b.disk_threshold),
    ] {
        if let Some(v) = v {
            if !(0.0..=100.0).contains(&v) {
                bad(key, format!("{v} must be a percentage between 0 and 100"));
            }
        }
    }
    if let Some(o) = b.cpu_overcommit {
        if !positive(o) {
            bad("balancing.cpu_overcommit", format!("{o} must be more than 0 (1.0 = no overcommit)"));
        }
    }
    for (node, r) in b.node_resource_reserve.iter().flatten() {
        if r.memory.is_some_and(|m| !non_negative(m)) {
            bad(&format!("balancing.node_resource_reserve.{node}.memory"), "must be 0 or more GB".into());
        }
    }
    for (name, p) in b.pools.iter().flatten() {
        if p.kind.is_none() && p.pin.is_empty() {
            bad(
                &format!("balancing.pools.{name}"),
                "needs `type: affinity|anti-affinity` or a `pin` list".into(),
            );
        }
    }

    let s = &c.service;
    if s.daemon && !positive(s.schedule.interval) {
        bad("service.schedule.interval", format!("{} must be more than 0", s.schedule.interval));
    }
    if s.delay.enable && !non_negative(s.delay.time) {
        bad("service.delay.time", format!("{} must be 0 or more", s.delay.time));
    }

    let r = &c.rebalancer;
    if let Some(l) = r.level {
        if !(1..=5).contains(&l) {
            bad("rebalancer.level", format!("{l} is not one of 1, 2, 3, 4, 5"));
        }
    }
    if r.listen.parse::<std::net::SocketAddr>().is_err() {
        bad("rebalancer.listen", format!("`{}` is not an address:port such as 127.0.0.1:8017", r.listen));
    }
    if r.max_per_node == 0 {
        bad("rebalancer.max_per_node", "must be at least 1".into());
    }
    if r.migration_bandwidth_mib_s.is_some_and(|b| !(b >= 1.0 && b.is_finite())) {
        bad(
            "rebalancer.migration_bandwidth_mib_s",
            "must be at least 1 MiB/s (leave it out to measure it from past migrations)".into(),
        );
    }
    if r.max_gib.is_some_and(|g| !positive(g)) {
        bad("rebalancer.max_gib", "must be more than 0 GiB (leave it out for no limit)".into());
    }
    if let Err((i, e)) = crate::windows::parse_all(&r.windows) {
        bad(&format!("rebalancer.windows[{i}]"), format!("`{}`: {e}", r.windows[i]));
    }
    for (i, t) in r.notify.targets.iter().enumerate() {
        if let Some(p) = t.problem() {
            bad(&format!("rebalancer.notify.targets[{i}]"), format!("{}: {p}", t.kind.as_str()));
        }
    }
    if let Some(a) = &r.notify.alert {
        if !(0.0..=100.0).contains(&a.percent) {
            bad("rebalancer.notify.alert.percent", format!("{} is outside 0–100", a.percent));
        }
        if !non_negative(a.minutes) {
            bad("rebalancer.notify.alert.minutes", format!("{} must be 0 or more", a.minutes));
        }
        if a.resource != "memory" && a.resource != "cpu" {
            bad("rebalancer.notify.alert.resource", format!("`{}` is not one of memory, cpu", a.resource));
        }
    }
    out
}

/// Settings that load but do not change what we do, each with why (`present`: the file's keys).
pub(super) fn not_applied(c: &ProxlbConfig, present: &std::collections::BTreeSet<String>) -> Vec<Issue> {
    let mut out = Vec::new();
    for (key, on) in [
        ("balancing.enforce_affinity", c.balancing.enforce_affinity),
        ("balancing.enforce_pinning", c.balancing.enforce_pinning),
    ] {
        if present.contains(key) && !on {
            out.push((
                key.into(),
                "accepted by ProxLB, not supported here: affinity, anti-affinity and strict pins are \
                 always enforced as hard rules (a plan never breaks them)"
                    .into(),
            ));
        }
    }
    if c.service.enable_ha {
        out.push((
            "service.enable_ha".into(),
            "has no effect here: HA-managed guests always migrate through PVE's HA stack (hamigrate)".into(),
        ));
    }
    if c.solver.enable {
        out.push((
            "solver.enable".into(),
            "ignored: pve-rebalancer's planner already optimises globally; no separate solver runs".into(),
        ));
    }
    if c.proxmox_cluster.maintenance_nodes_schedule.as_ref().is_some_and(|s| !s.schedules.is_empty()) {
        out.push((
            "proxmox_cluster.maintenance_nodes_schedule".into(),
            "not applied yet: list the nodes in maintenance_nodes (or use the panel's Maintenance button)"
                .into(),
        ));
    }
    if c.balancing.psi.is_some() {
        out.push((
            "balancing.psi".into(),
            "only nodes.<method>.pressure_some is used (as the node pressure threshold of mode: psi)".into(),
        ));
    }
    out
}

// Written as positive checks so NaN (YAML `.nan`) is rejected too.
fn positive(x: f64) -> bool {
    x > 0.0
}

fn non_negative(x: f64) -> bool {
    x >= 0.0
}
