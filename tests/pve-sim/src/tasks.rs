//! Worker tasks (UPIDs): migrations, HA migrations; their lazy progress on the simulated clock.

use crate::scenario::{GuestStatus, GuestType, GIB};
use crate::state::{Cluster, Migration};

/// What a task does when it finishes.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskAction {
    /// `qmigrate` / `vzmigrate`: move the guest from `from` to `to`.
    Migrate { vmid: u32, from: String, to: String, online: bool, restart: bool },
    /// `hamigrate`: queue an HA migration; on success starts a child `qmigrate`/`vzmigrate`.
    HaMigrate { vmid: u32, from: String, to: String },
    /// `migrateall` / `bulk-migrate`: runs child migrations to `target`, `workers` at a time.
    Bulk(Box<Bulk>),
}

/// One guest queued by a bulk task.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    pub vmid: u32,
    /// Node the guest is expected on when its turn comes.
    pub from: String,
    /// Live migration (running VM).
    pub online: bool,
    /// Restart mode (running CT).
    pub restart: bool,
}

/// State of a `migrateall` / `bulk-migrate` task.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    pub target: String,
    pub workers: usize,
    pub queue: std::collections::VecDeque<BulkItem>,
    /// UPIDs of running children.
    pub running: Vec<String>,
    /// Guests whose migration failed or could not start.
    pub failed: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    /// Task type: qmigrate, vzmigrate, hamigrate.
    pub kind: String,
    pub id: String,
    /// User id or token id (`u@r!tok`).
    pub user: String,
    pub log: Vec<String>,
    pub endtime: Option<i64>,
    pub exitstatus: Option<String>,
    /// Simulated-clock time (seconds, fractional) at which the task finishes; infinite = hangs.
    pub finish_at: f64,
    /// Planned failure message, if a fault was armed.
    pub fail: Option<String>,
    pub action: TaskAction,
    /// UPID of the bulk task that started this one.
    pub parent: Option<String>,
}

impl Task {
    pub fn running(&self) -> bool {
        self.endtime.is_none()
    }
    pub fn vmid(&self) -> Option<u32> {
        match &self.action {
            TaskAction::Migrate { vmid, .. } | TaskAction::HaMigrate { vmid, .. } => Some(*vmid),
            TaskAction::Bulk(_) => None,
        }
    }
    pub fn kind_is_migration(&self) -> bool {
        matches!(self.action, TaskAction::Migrate { .. })
    }
    /// Row for task lists.
    pub fn list_row(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.kind, "id": self.id, "user": self.user,
        });
        if let Some(e) = self.endtime {
            v["endtime"] = e.into();
            v["status"] = self.exitstatus.clone().unwrap_or_default().into();
        }
        v
    }
}

#[derive(Debug, Default)]
pub struct TaskTable {
    tasks: Vec<Task>,
    next_pid: u32,
}

/// Decoded UPID parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    pub kind: String,
    pub id: String,
    pub user: String,
}

impl Upid {
    /// Parses `UPID:<node>:<pid8>:<pstart8-9>:<start8>:<type>:<id>:<user>:`.
    pub fn parse(s: &str) -> Option<Upid> {
        let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
        let p: Vec<&str> = rest.split(':').collect();
        if p.len() != 7 {
            return None;
        }
        let hex = |x: &str, lens: &[usize]| -> Option<u64> {
            if !lens.contains(&x.len()) {
                return None;
            }
            u64::from_str_radix(x, 16).ok()
        };
        if !crate::scenario::valid_node_name(p[0]) || p[4].is_empty() || p[6].is_empty() {
            return None;
        }
        Some(Upid {
            node: p[0].into(),
            pid: hex(p[1], &[8])? as u32,
            pstart: hex(p[2], &[8, 9])?,
            starttime: hex(p[3], &[8])? as i64,
            kind: p[4].into(),
            id: p[5].into(),
            user: p[6].into(),
        })
    }
}

impl TaskTable {
    /// Records a migration that finished OK before the simulator started (scenario
    /// `past_migrations`), so `/cluster/tasks` and the RRD history show it.
    pub fn record_past_migration(
        &mut self,
        vmid: u32,
        kind: &str,
        from: &str,
        to: &str,
        start: i64,
        end: i64,
    ) {
        let upid = self.spawn(
            from,
            kind,
            &vmid.to_string(),
            "root@pam",
            start as f64,
            0.0,
            None,
            TaskAction::Migrate {
                vmid,
                from: from.into(),
                to: to.into(),
                online: kind == "qmigrate",
                restart: kind == "vzmigrate",
            },
        );
        let t = self.get_mut(&upid).expect("just spawned");
        t.endtime = Some(end);
        t.exitstatus = Some("OK".into());
        t.log = vec![format!("{} migration finished successfully", ts(end as f64)), "TASK OK".into()];
    }

    /// Each guest's successful migrations as (end time, source node), oldest first: where a guest
    /// was at a past time is the source of its first migration that ended after it.
    pub fn placement_history(&self) -> std::collections::BTreeMap<u32, Vec<(i64, String)>> {
        let mut out: std::collections::BTreeMap<u32, Vec<(i64, String)>> = Default::default();
        for t in &self.tasks {
            let (TaskAction::Migrate { vmid, from, .. }, Some(end), Some("OK")) =
                (&t.action, t.endtime, t.exitstatus.as_deref())
            else {
                continue;
            };
            out.entry(*vmid).or_default().push((end, from.clone()));
        }
        for v in out.values_mut() {
            v.sort();
        }
        out
    }

    pub fn get(&self, upid: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.upid == upid)
    }
    pub fn get_mut(&mut self, upid: &str) -> Option<&mut Task> {
        self.tasks.iter_mut().find(|t| t.upid == upid)
    }
    pub fn all(&self) -> &[Task] {
        &self.tasks
    }
    pub fn running(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter().filter(|t| t.running())
    }
    pub fn is_running(&self, upid: &str) -> bool {
        self.get(upid).is_some_and(|t| t.running())
    }
    pub fn running_for_vmid(&self, vmid: u32) -> Option<&Task> {
        self.running().find(|t| t.vmid() == Some(vmid))
    }

    /// Creates and registers a task; returns its UPID.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &mut self,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        now: f64,
        duration: f64,
        fail: Option<String>,
        action: TaskAction,
    ) -> String {
        self.next_pid += 1;
        let pid = 0x1000 + self.next_pid;
        let pstart = 0x100_0000 + (self.next_pid as u64) * 7;
        let start = now.floor() as i64;
        let upid = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{kind}:{id}:{user}:");
        self.tasks.push(Task {
            upid: upid.clone(),
            node: node.into(),
            pid,
            pstart,
            starttime: start,
            kind: kind.into(),
            id: id.into(),
            user: user.into(),
            log: Vec::new(),
            endtime: None,
            exitstatus: None,
            finish_at: now + duration,
            fail,
            action,
            parent: None,
        });
        upid
    }
}

fn ts(t: f64) -> String {
    // PVE migration logs carry "YYYY-MM-DD HH:MM:SS"; we log seconds since the epoch, UTC.
    let secs = t.floor() as i64;
    let (d, s) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, dd) = civil_from_days(d);
    format!("{y:04}-{m:02}-{dd:02} {:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl Cluster {
    /// Simulated seconds a migration of `vmid` takes.
    pub fn migration_seconds(&self, vmid: u32, online: bool, restart: bool) -> f64 {
        let Some(g) = self.guests.get(&vmid) else { return 1.0 };
        let bw = self.migration.bandwidth_mib_s.max(1.0) * 1024.0 * 1024.0;
        let mut bytes = 0.0;
        if online && g.running() {
            // RAM is copied, plus ~10% dirtied pages re-sent
            bytes += g.mem() as f64 * 1.1;
        }
        if self.guest_has_local_disk(g) {
            bytes += g.disk_used() as f64;
        }
        let mut secs = self.migration.setup_seconds + bytes / bw;
        if restart && g.running() {
            secs += self.migration.restart_seconds;
        }
        secs
    }

    /// Starts a migration task (qmigrate/vzmigrate) and marks the guest `lock: migrate`.
    #[allow(clippy::too_many_arguments)]
    pub fn start_migration(
        &mut self,
        vmid: u32,
        to: &str,
        online: bool,
        restart: bool,
        user: &str,
        now: f64,
        time_scale: f64,
        fail: Option<String>,
        hang: bool,
    ) -> String {
        let g = &self.guests[&vmid];
        let from = g.node.clone();
        let kind = match g.spec.kind {
            GuestType::Qemu => "qmigrate",
            GuestType::Lxc => "vzmigrate",
        };
        let live = online && g.running() && g.spec.kind == GuestType::Qemu;
        let sim_secs = self.migration_seconds(vmid, live, restart);
        // the task's duration on the (wall-)clock is the simulated duration divided by time_scale
        let dur = if hang { f64::INFINITY } else { sim_secs / time_scale.max(1e-9) };
        let upid = self.tasks.spawn(
            &from,
            kind,
            &vmid.to_string(),
            user,
            now,
            dur,
            fail,
            TaskAction::Migrate { vmid, from: from.clone(), to: to.into(), online: live, restart },
        );
        let mem_gib = g.mem() as f64 / GIB;
        let t = self.tasks.get_mut(&upid).expect("just spawned");
        t.log.push(format!("{} starting migration of {} {vmid} to node '{to}'", ts(now), kind_word(kind)));
        if live {
            t.log.push(format!("{} starting online/live migration", ts(now)));
            t.log.push(format!("{} migration active, transferring {mem_gib:.1} GiB of VM-state", ts(now)));
        } else if restart {
            t.log.push(format!("{} shutdown CT {vmid}", ts(now)));
        }
        let g = self.guests.get_mut(&vmid).expect("exists");
        g.lock = Some("migrate".into());
        g.migration =
            Some(Migration { target: to.into(), upid: upid.clone(), online: live, relocate: false });
        upid
    }

    /// Starts an HA migration request (`hamigrate`), which later spawns the real migration.
    pub fn start_ha_migration(
        &mut self,
        vmid: u32,
        to: &str,
        user: &str,
        now: f64,
        time_scale: f64,
    ) -> String {
        let from = self.guests[&vmid].node.clone();
        let upid = self.tasks.spawn(
            &from,
            "hamigrate",
            &vmid.to_string(),
            user,
            now,
            1.0 / time_scale.max(1e-9),
            None,
            TaskAction::HaMigrate { vmid, from: from.clone(), to: to.into() },
        );
        let sid = self.guests[&vmid].sid();
        if let Some(t) = self.tasks.get_mut(&upid) {
            t.log.push(format!("Requesting HA migration for {sid} to node {to}"));
        }
        upid
    }

    /// Finishes every task whose time has come (called before each request is answered).
    /// `pending_faults` decides failures/hangs for child tasks spawned here.
    pub fn advance(&mut self, now: f64, time_scale: f64, faults: &mut crate::faults::Faults) {
        self.update_load(now);
        // bounded: every pass finishes at least one task, and children only start from finished ones
        for _ in 0..1_000_000 {
            let mut due: Vec<(f64, String)> = self
                .tasks
                .running()
                .filter(|t| t.finish_at <= now)
                .map(|t| (t.finish_at, t.upid.clone()))
                .collect();
            if due.is_empty() {
                break;
            }
            due.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, upid) in due {
                if self.tasks.is_running(&upid) {
                    self.finish_task(&upid, now, time_scale, faults);
                }
            }
        }
    }

    /// Starts a bulk task (`migrateall` on `node`, or `bulk-migrate`); `log` holds lines about
    /// guests skipped up front, `failed` the guests that count as failed already.
    #[allow(clippy::too_many_arguments)]
    pub fn start_bulk(
        &mut self,
        node: &str,
        kind: &str,
        user: &str,
        now: f64,
        time_scale: f64,
        bulk: Bulk,
        log: Vec<String>,
        faults: &mut crate::faults::Faults,
    ) -> String {
        let upid = self.tasks.spawn(
            node,
            kind,
            "",
            user,
            now,
            f64::INFINITY,
            None,
            TaskAction::Bulk(Box::new(bulk)),
        );
        if let Some(t) = self.tasks.get_mut(&upid) {
            t.log.extend(log);
        }
        self.pump_bulk(&upid, now, time_scale, faults);
        upid
    }

    /// Starts queued children of a bulk task while workers are free; finishes it when all are done.
    fn pump_bulk(&mut self, upid: &str, now: f64, time_scale: f64, faults: &mut crate::faults::Faults) {
        let Some(t) = self.tasks.get(upid) else { return };
        let TaskAction::Bulk(b) = &t.action else { return };
        if !t.running() {
            return;
        }
        let mut b = (**b).clone();
        let user = t.user.clone();
        let mut log = Vec::new();
        let mut children = Vec::new();
        while b.running.len() < b.workers.max(1) {
            let Some(it) = b.queue.pop_front() else { break };
            let word = |g: &crate::state::Guest| if g.spec.kind == GuestType::Qemu { "VM" } else { "CT" };
            let Some(g) = self.guests.get(&it.vmid) else {
                log.push(format!("guest {} no longer exists - skipped", it.vmid));
                b.failed.push(it.vmid);
                continue;
            };
            if g.node != it.from || g.migration.is_some() {
                log.push(format!("{} {} is no longer on node '{}' - skipped", word(g), it.vmid, it.from));
                b.failed.push(it.vmid);
                continue;
            }
            if let Some(l) = &g.lock {
                log.push(format!("{} {} is locked ({l}) - skipped", word(g), it.vmid));
                b.failed.push(it.vmid);
                continue;
            }
            let ha = g.spec.ha.as_ref().is_some_and(|h| h.state != "ignored");
            let w = word(g);
            let child = if ha {
                self.start_ha_migration(it.vmid, &b.target, &user, now, time_scale)
            } else {
                let (fail, hang) = faults.take_task_fault(it.vmid);
                self.start_migration(
                    it.vmid, &b.target, it.online, it.restart, &user, now, time_scale, fail, hang,
                )
            };
            log.push(format!(
                "{} starting migration of {w} {} to node '{}': {child}",
                ts(now),
                it.vmid,
                b.target
            ));
            children.push(child.clone());
            b.running.push(child);
        }
        for c in &children {
            if let Some(ct) = self.tasks.get_mut(c) {
                ct.parent = Some(upid.to_string());
            }
        }
        let done = b.running.is_empty() && b.queue.is_empty();
        let t = self.tasks.get_mut(upid).expect("exists");
        t.log.extend(log);
        t.finish_at = f64::INFINITY;
        if done {
            let end = now.ceil().max(t.starttime as f64) as i64;
            t.endtime = Some(end);
            t.finish_at = now;
            if b.failed.is_empty() {
                t.log.push("TASK OK".into());
                t.exitstatus = Some("OK".into());
            } else {
                let ids: Vec<String> = b.failed.iter().map(u32::to_string).collect();
                let msg = format!("{} guest(s) could not be migrated: {}", b.failed.len(), ids.join(", "));
                t.log.push(format!("TASK ERROR: {msg}"));
                t.exitstatus = Some(msg);
            }
        }
        t.action = TaskAction::Bulk(Box::new(b));
    }

    /// A child of a bulk task ended: free its worker slot and start the next guest.
    fn child_done(
        &mut self,
        parent: &str,
        child: &str,
        ok: bool,
        now: f64,
        ts_: f64,
        faults: &mut crate::faults::Faults,
    ) {
        let vmid = self.tasks.get(child).and_then(Task::vmid);
        if let Some(t) = self.tasks.get_mut(parent) {
            if let TaskAction::Bulk(b) = &mut t.action {
                b.running.retain(|u| u != child);
                if !ok {
                    if let Some(v) = vmid {
                        b.failed.push(v);
                    }
                }
            }
        }
        self.pump_bulk(parent, now, ts_, faults);
    }

    fn finish_task(&mut self, upid: &str, now: f64, time_scale: f64, faults: &mut crate::faults::Faults) {
        let Some(t) = self.tasks.get(upid) else { return };
        let action = t.action.clone();
        let fail = t.fail.clone();
        let end_f = t.finish_at.min(now);
        let user = t.user.clone();
        let mut log = Vec::new();
        let mut error = fail;
        match action {
            TaskAction::Migrate { vmid, from, to, online, restart } => {
                let target_ok = self.nodes.get(&to).is_some_and(|n| n.online);
                if error.is_none() && !target_ok {
                    error = Some(format!(
                        "migration problems: Can't connect to destination address using public key (target node '{to}' is offline)"
                    ));
                }
                if error.is_none() && !self.guests.contains_key(&vmid) {
                    error = Some(format!("migration aborted: guest {vmid} no longer exists"));
                }
                if let Some(g) = self.guests.get_mut(&vmid) {
                    if g.migration.as_ref().is_some_and(|m| m.upid == upid) {
                        g.migration = None;
                        if g.lock.as_deref() == Some("migrate") {
                            g.lock = None;
                        }
                    }
                    if error.is_none() && g.node == from {
                        g.node = to.clone();
                        if restart && g.status == GuestStatus::Running {
                            g.start_time = end_f.floor() as i64;
                        }
                    }
                }
                if error.is_none() {
                    if online {
                        log.push(format!("{} migration status: completed", ts(end_f)));
                    } else if restart {
                        log.push(format!("{} start container on target node", ts(end_f)));
                    }
                    log.push(format!("{} migration finished successfully", ts(end_f)));
                }
            }
            TaskAction::HaMigrate { vmid, from, to } => {
                let ok = self.guests.get(&vmid).is_some_and(|g| g.node == from && g.migration.is_none())
                    && self.nodes.get(&to).is_some_and(|n| n.online);
                if error.is_none() && !ok {
                    error = Some(format!("HA migration of {vmid} to {to} rejected"));
                }
                if error.is_none() {
                    let (cfail, hang) = faults.take_task_fault(vmid);
                    let running = self.guests[&vmid].running();
                    let is_ct = self.guests[&vmid].spec.kind == GuestType::Lxc;
                    // the LRM starts the real migration a moment later, as root@pam
                    let _child = self.start_migration(
                        vmid,
                        &to,
                        running && !is_ct,
                        running && is_ct,
                        "root@pam",
                        end_f + 0.001,
                        time_scale,
                        cfail,
                        hang,
                    );
                    let _ = user;
                }
            }
            TaskAction::Bulk(_) => {
                // bulk tasks end through pump_bulk; reaching here means finish_at was forced
                self.pump_bulk(upid, end_f, time_scale, faults);
                return;
            }
        }
        let t = self.tasks.get_mut(upid).expect("exists");
        t.log.extend(log);
        let end = end_f.ceil().max(t.starttime as f64) as i64;
        t.endtime = Some(end);
        match error {
            None => {
                t.log.push("TASK OK".into());
                t.exitstatus = Some("OK".into());
            }
            Some(msg) => {
                t.log.push(format!("{} ERROR: {msg}", ts(end_f)));
                t.log.push(format!("TASK ERROR: {msg}"));
                t.exitstatus = Some(msg);
            }
        }
        let ok = t.exitstatus.as_deref() == Some("OK");
        if let Some(p) = t.parent.clone() {
            self.child_done(&p, upid, ok, end_f, time_scale, faults);
        }
    }

    /// Stops a running task (`DELETE /nodes/{n}/tasks/{upid}`): the migration is aborted.
    pub fn stop_task(&mut self, upid: &str, now: f64) -> bool {
        let Some(t) = self.tasks.get_mut(upid) else { return false };
        if !t.running() {
            return true;
        }
        t.endtime = Some(now.ceil().max(t.starttime as f64) as i64);
        t.log.push("received interrupt".into());
        t.log.push("TASK ERROR: interrupted by signal".into());
        t.exitstatus = Some("interrupted by signal".into());
        let action = t.action.clone();
        let parent = t.parent.take();
        match action {
            TaskAction::Migrate { vmid, .. } => {
                if let Some(g) = self.guests.get_mut(&vmid) {
                    if g.migration.as_ref().is_some_and(|m| m.upid == upid) {
                        g.migration = None;
                        if g.lock.as_deref() == Some("migrate") {
                            g.lock = None;
                        }
                    }
                }
            }
            TaskAction::Bulk(b) => {
                // the running children are stopped with it; queued guests are dropped
                for c in &b.running {
                    if let Some(ct) = self.tasks.get_mut(c) {
                        ct.parent = None;
                    }
                    self.stop_task(c, now);
                }
            }
            TaskAction::HaMigrate { .. } => {}
        }
        if let Some(p) = parent {
            let vmid = self.tasks.get(upid).and_then(Task::vmid);
            if let Some(pt) = self.tasks.get_mut(&p) {
                if let TaskAction::Bulk(b) = &mut pt.action {
                    b.running.retain(|u| u != upid);
                    b.failed.extend(vmid);
                    // let the next advance() start the next guest (or finish the bulk task)
                    pt.finish_at = now;
                }
            }
        }
        true
    }
}

fn kind_word(kind: &str) -> &'static str {
    if kind == "vzmigrate" {
        "CT"
    } else {
        "VM"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_roundtrip() {
        let mut t = TaskTable::default();
        let u = t.spawn(
            "pve1",
            "qmigrate",
            "100",
            "root@pam!tok",
            1_700_000_000.0,
            1.0,
            None,
            TaskAction::Migrate {
                vmid: 100,
                from: "pve1".into(),
                to: "pve2".into(),
                online: true,
                restart: false,
            },
        );
        let p = Upid::parse(&u).expect("parses");
        assert_eq!(p.node, "pve1");
        assert_eq!(p.kind, "qmigrate");
        assert_eq!(p.id, "100");
        assert_eq!(p.user, "root@pam!tok");
        assert_eq!(p.starttime, 1_700_000_000);
        assert!(Upid::parse("UPID:pve1:1:2:3:x:y:z:").is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
