//! The executor's decisions as pure functions: which steps may start, whether a step's
//! preconditions still hold, which migrate call to make, what a task status means, what a
//! restart should conclude. No I/O here; `executor` feeds these with PVE's answers.

use crate::pve::wire;
use serde_json::Value;
use shared::api::{JobState, StepState, StepView};
use shared::GuestKind;
use std::collections::HashMap;
use std::time::Duration;

/// How many migrations may run at once, in all and per node (a node counts whether it gives
/// or takes the guest: both ends carry the copy traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub global: usize,
    pub per_node: usize,
}

/// Why a queued step can never start: a step it depends on ended without its guest landing.
pub fn blocked_reason(steps: &[StepView], pos: usize) -> Option<String> {
    let step = &steps[pos];
    for &dep in &step.depends_on {
        match steps.iter().find(|d| d.index == dep) {
            None => return Some(format!("depends on step {dep}, which is not part of this job")),
            Some(d) if d.state.is_terminal() && d.state != StepState::Done => {
                let why = d.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                return Some(format!(
                    "depends on step {} (vmid {} {} → {}), which ended {}{why}",
                    d.index,
                    d.vmid,
                    d.from,
                    d.to,
                    d.state.as_str()
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Positions of queued steps that may start now, in plan order, within the limits. A step
/// starts only when every step it depends on is done, and never while another step of the same
/// guest is in flight (a parking hop and its onward move).
pub fn startable(steps: &[StepView], limits: Limits) -> Vec<usize> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    let mut busy_guests: Vec<u32> = Vec::new();
    let mut running = 0;
    for s in steps.iter().filter(|s| s.state == StepState::Running) {
        running += 1;
        *per_node.entry(&s.from).or_default() += 1;
        *per_node.entry(&s.to).or_default() += 1;
        busy_guests.push(s.vmid);
    }
    let mut out = Vec::new();
    for (pos, s) in steps.iter().enumerate() {
        if running >= limits.global {
            break;
        }
        if s.state != StepState::Queued || busy_guests.contains(&s.vmid) {
            continue;
        }
        let deps_done =
            s.depends_on.iter().all(|d| steps.iter().any(|x| x.index == *d && x.state == StepState::Done));
        let load = |n: &str| per_node.get(n).copied().unwrap_or(0);
        if !deps_done || load(&s.from) >= limits.per_node || load(&s.to) >= limits.per_node {
            continue;
        }
        out.push(pos);
        running += 1;
        *per_node.entry(&s.from).or_default() += 1;
        *per_node.entry(&s.to).or_default() += 1;
        busy_guests.push(s.vmid);
    }
    out
}

/// The job's end state once no step is queued or running.
pub fn job_outcome(steps: &[StepView], cancelled: bool) -> JobState {
    if cancelled {
        JobState::Cancelled
    } else if steps.iter().any(|s| matches!(s.state, StepState::Failed | StepState::Unknown)) {
        JobState::Failed
    } else if steps.iter().all(|s| s.state == StepState::Done) {
        JobState::Done
    } else {
        JobState::Partial
    }
}

/// A guest as `/cluster/resources` shows it right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSeen {
    pub node: String,
    pub kind: GuestKind,
    pub running: bool,
    pub lock: Option<String>,
    /// Memory in use now, bytes (what a live migration must find free on the target).
    pub mem: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSeen {
    pub online: bool,
    pub maintenance: bool,
    /// `maxmem − mem` now, when PVE reported both.
    pub mem_free: Option<u64>,
}

/// What one `/cluster/resources` answer says about guests and nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub guests: HashMap<u32, GuestSeen>,
    pub nodes: HashMap<String, NodeSeen>,
}

/// Reads `/cluster/resources` rows leniently (a row without what we need is ignored).
pub fn observe(rows: &[Value]) -> Observed {
    let mut seen = Observed::default();
    for row in rows {
        match wire::text(row, "type") {
            Some("node") => {
                if let Some(name) = wire::text(row, "node") {
                    seen.nodes.insert(
                        name.to_owned(),
                        NodeSeen {
                            online: wire::text(row, "status") == Some("online"),
                            maintenance: wire::text(row, "hastate") == Some("maintenance"),
                            mem_free: wire::number(row, "maxmem")
                                .zip(wire::number(row, "mem"))
                                .map(|(max, used)| (max - used).max(0.0) as u64),
                        },
                    );
                }
            }
            Some(t @ ("qemu" | "lxc")) => {
                let vmid = wire::number(row, "vmid").filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX));
                if let (Some(vmid), Some(node)) = (vmid, wire::text(row, "node")) {
                    seen.guests.insert(
                        vmid as u32,
                        GuestSeen {
                            node: node.to_owned(),
                            kind: if t == "qemu" { GuestKind::Qemu } else { GuestKind::Lxc },
                            running: wire::text(row, "status") == Some("running"),
                            lock: wire::text(row, "lock").map(str::to_owned),
                            mem: wire::bytes(row, "mem"),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    seen
}

/// Outcome of the check right before a step is submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precheck {
    /// Submit; `running` decides online/restart (the guest's status now, not at planning).
    Go { running: bool },
    /// The guest is already on the target (moved outside this job): nothing to submit.
    AlreadyThere,
    /// Do not submit, for this reason.
    Skip(String),
}

/// Marks `names` as in maintenance (the service's own marks, on top of PVE's HA state).
pub fn close_targets(seen: &mut Observed, names: &[String]) {
    for name in names {
        if let Some(n) = seen.nodes.get_mut(name) {
            n.maintenance = true;
        }
    }
}

pub fn precheck(step: &StepView, seen: &Observed) -> Precheck {
    let Some(g) = seen.guests.get(&step.vmid) else {
        return Precheck::Skip(format!("guest {} no longer exists", step.vmid));
    };
    if g.kind != step.kind {
        return Precheck::Skip(format!(
            "vmid {} is a {} now, the plan has a {}",
            step.vmid,
            kind_word(g.kind),
            kind_word(step.kind)
        ));
    }
    if g.node == step.to {
        return Precheck::AlreadyThere;
    }
    if g.node != step.from {
        return Precheck::Skip(format!(
            "guest is on {} now, not on {} as planned (moved outside this job)",
            g.node, step.from
        ));
    }
    if let Some(lock) = &g.lock {
        return Precheck::Skip(format!("guest is locked ({lock})"));
    }
    match seen.nodes.get(&step.to) {
        None => Precheck::Skip(format!("target node {} is not in the cluster", step.to)),
        Some(n) if !n.online => Precheck::Skip(format!("target node {} is offline", step.to)),
        Some(n) if n.maintenance => Precheck::Skip(format!("target node {} is in maintenance", step.to)),
        // The cluster may have changed since planning: a running guest must still fit now.
        Some(NodeSeen { mem_free: Some(free), .. }) if g.running && g.mem > *free => Precheck::Skip(format!(
            "target node {} has {:.1} GiB of memory free now, the guest uses {:.1} GiB",
            step.to,
            *free as f64 / GIB,
            g.mem as f64 / GIB
        )),
        Some(_) => Precheck::Go { running: g.running },
    }
}

const GIB: f64 = (1u64 << 30) as f64;

fn kind_word(k: GuestKind) -> &'static str {
    match k {
        GuestKind::Qemu => "VM",
        GuestKind::Lxc => "container",
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("volid").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `GET /nodes/{n}/qemu/{id}/migrate`: `Ok(has_local_disks)`, or why the step must be
/// skipped (local devices, local disks not allowed, target not allowed).
pub fn qemu_precondition(answer: &Value, to: &str, allow_local_disks: bool) -> Result<bool, String> {
    let local_resources = strings(answer, "local_resources");
    if !local_resources.is_empty() {
        return Err(format!("uses local devices that pin it to its node: {}", local_resources.join(", ")));
    }
    let local_disks = strings(answer, "local_disks");
    if !local_disks.is_empty() && !allow_local_disks {
        return Err(format!(
            "has local disks ({}) and the plan does not allow copying them",
            local_disks.join(", ")
        ));
    }
    allowed(answer, "allowed_nodes", "not_allowed_nodes", to)?;
    Ok(!local_disks.is_empty())
}

/// Reads `GET /nodes/{n}/lxc/{id}/migrate` (PVE 9): whether the target is allowed.
pub fn lxc_precondition(answer: &Value, to: &str) -> Result<(), String> {
    allowed(answer, "allowed-nodes", "not-allowed-nodes", to)
}

fn allowed(answer: &Value, allowed_key: &str, not_allowed_key: &str, to: &str) -> Result<(), String> {
    // PVE 7.4 leaves the list out for running VMs: no list means no objection.
    if answer.get(allowed_key).and_then(Value::as_array).is_none() {
        return Ok(());
    }
    if strings(answer, allowed_key).iter().any(|n| n == to) {
        return Ok(());
    }
    let why =
        answer.get(not_allowed_key).and_then(|m| m.get(to)).map(|w| format!(": {w}")).unwrap_or_default();
    Err(format!("PVE does not allow {to} as a target{why}"))
}

/// The migrate call for a step: path and form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateCall {
    pub path: String,
    pub form: Vec<(&'static str, String)>,
}

/// `online=1` for running VMs (with `with-conntrack-state=1` when `conntrack` is asked for —
/// ProxLB's `with_conntrack_state` — and PVE is 9+, which knows it; PVE 8 refuses the key),
/// `with-local-disks=1` when it has local disks (the precondition already required them to be
/// allowed), `restart=1` + `timeout` for running containers.
pub fn migrate_call(
    step: &StepView,
    running: bool,
    local_disks: bool,
    pve_major: Option<u32>,
    ct_shutdown_timeout: u32,
    conntrack: bool,
) -> MigrateCall {
    let mut form = vec![("target", step.to.clone())];
    let path = match step.kind {
        GuestKind::Qemu => {
            if running {
                form.push(("online", "1".into()));
                if conntrack && pve_major.is_some_and(|m| m >= 9) {
                    form.push(("with-conntrack-state", "1".into()));
                }
            }
            if local_disks {
                form.push(("with-local-disks", "1".into()));
            }
            format!("/nodes/{}/qemu/{}/migrate", step.from, step.vmid)
        }
        GuestKind::Lxc => {
            if running {
                form.push(("restart", "1".into()));
                form.push(("timeout", ct_shutdown_timeout.to_string()));
            }
            format!("/nodes/{}/lxc/{}/migrate", step.from, step.vmid)
        }
    };
    MigrateCall { path, form }
}

/// `"9.1.2"` → 9.
pub fn pve_major(version: &str) -> Option<u32> {
    version.split('.').next()?.trim().parse().ok()
}

/// What `GET /nodes/{n}/tasks/{upid}/status` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    Running,
    /// `OK` or `WARNINGS: n`.
    Ok,
    /// PVE's exit status: its error text.
    Failed(String),
}

/// `None` when the answer is not a task status at all (counted as "unknown, ask again").
pub fn task_outcome(status: &Value) -> Option<TaskOutcome> {
    match wire::text(status, "status")? {
        "running" => Some(TaskOutcome::Running),
        "stopped" => Some(match wire::text(status, "exitstatus") {
            Some(s) if s == "OK" || s.starts_with("WARNINGS") => TaskOutcome::Ok,
            Some(s) => TaskOutcome::Failed(s.trim_end().to_owned()),
            None => TaskOutcome::Failed("task stopped without an exit status".into()),
        }),
        _ => None,
    }
}

/// Bounded exponential backoff between polls.
pub fn next_delay(prev: Duration, min: Duration, max: Duration) -> Duration {
    (prev * 2).clamp(min, max.max(min))
}

/// The migration the HA manager started for a `hamigrate` request: the earliest `qmigrate` /
/// `vzmigrate` of the guest that started at or after the request.
pub fn pick_child_task(rows: &[Value], vmid: u32, since: u64) -> Option<String> {
    pick_task(rows, vmid, since, &["qmigrate", "vzmigrate"])
}

/// The earliest task of one of `kinds` for `vmid` that started at or after `since` (from a
/// `/nodes/{n}/tasks` answer).
pub fn pick_task(rows: &[Value], vmid: u32, since: u64, kinds: &[&str]) -> Option<String> {
    rows.iter()
        .filter(|r| wire::text(r, "type").is_some_and(|t| kinds.contains(&t)))
        .filter(|r| wire::text(r, "id") == Some(vmid.to_string().as_str()))
        .filter_map(|r| {
            let start = wire::number(r, "starttime")?;
            (start >= since as f64).then_some((start, wire::text(r, "upid")?))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, upid)| upid.to_owned())
}

/// Where the guest is, for the final record of a step.
pub fn location_note(step: &StepView, seen: &Observed) -> String {
    match seen.guests.get(&step.vmid) {
        None => format!("guest {} not found in the cluster", step.vmid),
        Some(g) if g.node == step.from => format!("guest still on {}", g.node),
        Some(g) => format!("guest is on {}", g.node),
    }
}

/// After a restart: what to record for a step that was running, given its task's outcome (if a
/// task is known) and where the guest is now. Never "submit again".
pub fn reconcile(step: &StepView, task: Option<&TaskOutcome>, seen: &Observed) -> (StepState, String) {
    let guest = seen.guests.get(&step.vmid);
    let on_target = guest.is_some_and(|g| g.node == step.to);
    let where_ = location_note(step, seen);
    match task {
        Some(TaskOutcome::Ok) if on_target => {
            (StepState::Done, format!("finished while the service was down; guest on {}", step.to))
        }
        Some(TaskOutcome::Ok) => (StepState::Failed, format!("task ended OK but {where_}")),
        Some(TaskOutcome::Failed(msg)) if on_target => {
            (StepState::Done, format!("task reported `{msg}` but the guest is on {}", step.to))
        }
        Some(TaskOutcome::Failed(msg)) => (StepState::Failed, format!("{msg} ({where_})")),
        Some(TaskOutcome::Running) => {
            (StepState::Unknown, format!("task still running when the service gave up on it ({where_})"))
        }
        None if on_target => (StepState::Done, format!("no task found, but the guest is on {}", step.to)),
        None if guest.is_some_and(|g| g.node == step.from && g.lock.is_none()) => (
            StepState::Failed,
            format!("not submitted: the service stopped before PVE accepted the migration ({where_})"),
        ),
        None => (StepState::Unknown, format!("no task found and the step is unresolved ({where_})")),
    }
}

/// A node name safe to put into an API path (PVE node names are host names).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
}

/// The steps of a new job: the whole plan, or the steps of the selected vmids. Refuses a
/// selection that leaves out a step a selected one depends on (running it alone could break
/// the capacity the plan's order protects), and steps that could not be addressed in PVE.
/// `Err((field, detail))`.
pub fn job_steps(
    plan: &shared::Plan,
    selection: Option<&[u32]>,
) -> Result<Vec<StepView>, (&'static str, String)> {
    if plan.steps.is_empty() {
        return Err(("plan.steps", "the plan has no steps".into()));
    }
    let chosen: Vec<usize> = match selection {
        None => (0..plan.steps.len()).collect(),
        Some([]) => return Err(("steps", "select at least one vmid, or leave `steps` out for all".into())),
        Some(vmids) => {
            if let Some(v) = vmids.iter().find(|v| !plan.steps.iter().any(|s| s.vmid == **v)) {
                return Err(("steps", format!("vmid {v} has no step in the plan")));
            }
            (0..plan.steps.len()).filter(|i| vmids.contains(&plan.steps[*i].vmid)).collect()
        }
    };
    for &i in &chosen {
        let s = &plan.steps[i];
        if !(100..=999_999_999).contains(&s.vmid) {
            return Err(("plan.steps", format!("step {i}: vmid {} is outside 100–999999999", s.vmid)));
        }
        if !valid_node_name(&s.from) || !valid_node_name(&s.to) {
            return Err((
                "plan.steps",
                format!("step {i}: `{}` → `{}` is not a pair of node names", s.from, s.to),
            ));
        }
        if s.from == s.to {
            return Err(("plan.steps", format!("step {i}: vmid {} goes from {} to itself", s.vmid, s.from)));
        }
        for &d in &s.depends_on {
            let Some(dep) = plan.steps.get(d) else {
                return Err(("plan.steps", format!("step {i} depends on step {d}, which does not exist")));
            };
            if !chosen.contains(&d) {
                return Err((
                    "steps",
                    format!(
                        "step {i} (vmid {}) depends on step {d} (vmid {}), which is not selected",
                        s.vmid, dep.vmid
                    ),
                ));
            }
        }
    }
    Ok(chosen.into_iter().map(|i| StepView::queued(i, &plan.steps[i])).collect())
}

#[cfg(test)]
mod tests;
