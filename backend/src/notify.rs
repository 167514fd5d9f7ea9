//! Notifications: webhook messages when a job ends, a migration fails, a maintenance evacuation
//! is done, or a node stays above a usage threshold.
//!
//! Targets come from `rebalancer.notify` in the configuration (kinds: generic JSON, Gotify, ntfy,
//! Telegram, Slack-compatible). Sending never blocks or fails a job: the notifier follows the
//! executor's event stream on its own task, each message is sent on a task of its own with a
//! bounded timeout, and a failure is logged and dropped. Tokens and URLs (a Telegram URL holds
//! the bot token) are never logged: a target is named by its index and kind.

pub use crate::config::notify::{Alert, Kind, NotifyConfig, Target};
use crate::execute::{ClusterLock, DirLock, ExecEvent, Executor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::api::{JobState, JobSummary, StepState, StepView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One thing worth telling people.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    JobEnded(JobSummary),
    MigrationFailed { job_id: u64, step: StepView },
    MaintenanceDone { node: String, job: JobSummary },
    Threshold { node: String, resource: String, percent: f64, minutes: f64 },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::JobEnded(_) => "job_ended",
            Event::MigrationFailed { .. } => "migration_failed",
            Event::MaintenanceDone { .. } => "maintenance_done",
            Event::Threshold { .. } => "threshold",
        }
    }

    pub fn title(&self) -> String {
        match self {
            Event::JobEnded(j) => format!("pve-rebalancer: job {} {}", j.id, j.state.as_str()),
            Event::MigrationFailed { step, .. } => {
                format!("pve-rebalancer: migration of {} failed", step.vmid)
            }
            Event::MaintenanceDone { node, .. } => format!("pve-rebalancer: {node} evacuated"),
            Event::Threshold { node, resource, .. } => format!("pve-rebalancer: {node} {resource} high"),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Event::JobEnded(j) => {
                let c = &j.counts;
                format!(
                    "Job {} started by {} ended {}: {} done, {} failed, {} skipped, {} cancelled, {} unknown.{}",
                    j.id,
                    j.started_by,
                    j.state.as_str(),
                    c.done,
                    c.failed,
                    c.skipped,
                    c.cancelled,
                    c.unknown,
                    j.message.as_deref().map(|m| format!(" {m}")).unwrap_or_default()
                )
            }
            Event::MigrationFailed { job_id, step } => format!(
                "Job {job_id}: {} {} ({}) {} → {} {}: {}",
                step.kind_name(),
                step.vmid,
                step.name,
                step.from,
                step.to,
                step.state.as_str(),
                step.message.as_deref().unwrap_or("no message from PVE")
            ),
            Event::MaintenanceDone { node, job } => format!(
                "Node {node}: evacuation job {} ended {} ({} moved, {} failed). The node may be serviced when nothing failed.",
                job.id,
                job.state.as_str(),
                job.counts.done,
                job.counts.failed + job.counts.unknown
            ),
            Event::Threshold { node, resource, percent, minutes } => {
                format!("Node {node}: {resource} above {percent}% for {minutes} minutes.")
            }
        }
    }

    fn job_id(&self) -> Option<u64> {
        match self {
            Event::JobEnded(j) | Event::MaintenanceDone { job: j, .. } => Some(j.id),
            Event::MigrationFailed { job_id, .. } => Some(*job_id),
            Event::Threshold { .. } => None,
        }
    }

    fn node(&self) -> Option<&str> {
        match self {
            Event::MaintenanceDone { node, .. } | Event::Threshold { node, .. } => Some(node),
            _ => None,
        }
    }
}

trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for StepView {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            shared::GuestKind::Qemu => "VM",
            shared::GuestKind::Lxc => "CT",
        }
    }
}

/// The HTTP request a target gets for an event: URL, headers, body. Pure, so each kind's shape is
/// unit-tested.
pub fn request_for(target: &Target, event: &Event, now: u64) -> (String, Vec<(String, String)>, Vec<u8>) {
    let (title, text) = (event.title(), event.message());
    let token = target.token.as_ref().map(|t| t.expose().to_owned());
    let url = target.url.clone().unwrap_or_default();
    let json_ct = ("Content-Type".to_owned(), "application/json".to_owned());
    let body = |v: serde_json::Value| serde_json::to_vec(&v).unwrap_or_default();
    match target.kind {
        Kind::Json => {
            let mut headers = vec![json_ct];
            if let Some(t) = token {
                headers.push(("Authorization".into(), format!("Bearer {t}")));
            }
            let v = json!({
                "event": event.name(), "title": title, "message": text, "at": now,
                "job_id": event.job_id(), "node": event.node(),
            });
            (url, headers, body(v))
        }
        Kind::Gotify => {
            let mut headers = vec![json_ct];
            if let Some(t) = token {
                headers.push(("X-Gotify-Key".into(), t));
            }
            let priority =
                if matches!(event, Event::JobEnded(j) if j.state == JobState::Done) { 4 } else { 8 };
            let v = json!({"title": title, "message": text, "priority": priority});
            (format!("{}/message", url.trim_end_matches('/')), headers, body(v))
        }
        Kind::Ntfy => {
            let mut headers = vec![
                ("Title".to_owned(), title),
                ("Content-Type".into(), "text/plain; charset=utf-8".into()),
            ];
            if let Some(t) = token {
                headers.push(("Authorization".into(), format!("Bearer {t}")));
            }
            (url, headers, text.into_bytes())
        }
        Kind::Telegram => {
            let base = if url.is_empty() { "https://api.telegram.org".to_owned() } else { url };
            let v = json!({"chat_id": target.chat_id, "text": format!("{title}\n{text}")});
            let url = format!("{}/bot{}/sendMessage", base.trim_end_matches('/'), token.unwrap_or_default());
            (url, vec![json_ct], body(v))
        }
        Kind::Slack => (url, vec![json_ct], body(json!({"text": format!("*{title}*\n{text}")}))),
    }
}

/// Sends events to the configured targets.
pub struct Notifier {
    targets: Vec<Target>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(config: &NotifyConfig) -> Notifier {
        let timeout = Duration::from_secs(config.timeout_secs.unwrap_or(5).clamp(1, 60));
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Notifier { targets: config.targets.clone(), client }
    }

    /// Sends `event` to every target, each on its own task; returns at once. Failures are logged.
    pub fn send(self: &Arc<Self>, event: Event) {
        let now = crate::unix_now();
        for (i, target) in self.targets.iter().enumerate() {
            let (url, headers, body) = request_for(target, &event, now);
            let (client, kind, name) = (self.client.clone(), target.kind.as_str(), event.name());
            tokio::spawn(async move {
                let mut req = client.post(&url).body(body);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        tracing::debug!(target_index = i, kind, event = name, "notification sent")
                    }
                    Ok(r) => {
                        tracing::warn!(target_index = i, kind, event = name, status = %r.status(), "notification refused")
                    }
                    // `without_url`: the URL may carry a token.
                    Err(e) => {
                        tracing::warn!(target_index = i, kind, event = name, error = %e.without_url(), "notification failed")
                    }
                }
            });
        }
    }

    /// Follows the executor's events until the executor goes away: one message per ended job
    /// (plus one "maintenance done" when the job was a node's evacuation) and one per failed
    /// step. Runs on its own task, so a slow target never holds up a job.
    pub fn follow(
        self: Arc<Self>,
        executor: &Arc<Executor>,
        maintenance: Option<Arc<crate::maintenance::Maintenance>>,
    ) -> tokio::task::JoinHandle<()> {
        let mut events = executor.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ExecEvent::Step { job_id, step }) => {
                        // Finished only: an `unknown` still being verified may yet be done.
                        if matches!(step.state, StepState::Failed | StepState::Unknown)
                            && step.finished_at.is_some()
                        {
                            self.send(Event::MigrationFailed { job_id, step });
                        }
                    }
                    Ok(ExecEvent::End { job }) => {
                        if let Some(node) = maintenance.as_ref().and_then(|m| evacuated_node(m, job.id)) {
                            self.send(Event::MaintenanceDone { node, job: job.clone() });
                        }
                        self.send(Event::JobEnded(job));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "notifier fell behind the executor's events");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// Collects every `alert.check_interval_secs` and sends a threshold alert per node that stayed
    /// above the limit long enough, once per spell cluster-wide: every node's service watches,
    /// the one that records the spell in `<state_dir>/alerts.json` first sends it, and the first
    /// to see the node below the limit again marks the spell ended there.
    pub fn watch_thresholds(
        self: Arc<Self>,
        pve: Arc<crate::pve::PveClient>,
        alert: Alert,
        state_dir: &Path,
    ) -> tokio::task::JoinHandle<()> {
        let claims = Arc::new(AlertClaims::new(state_dir));
        tokio::spawn(async move {
            let mut tracker = ThresholdTracker::new(alert.clone());
            let mut tick = tokio::time::interval(Duration::from_secs(alert.check_interval_secs.max(5)));
            loop {
                tick.tick().await;
                let now = crate::unix_now();
                match crate::collect::snapshot(&pve, now).await {
                    Ok(snap) => {
                        let view = shared::api::ClusterView::of(snap);
                        let (c, below, resource) =
                            (claims.clone(), tracker.below(&view), alert.resource.clone());
                        // File system work (pmxcfs in production) stays off the async threads.
                        let _ =
                            tokio::task::spawn_blocking(move || c.mark_ended(&below, &resource, now)).await;
                        for spell in tracker.observe(&view, now) {
                            self.announce(&claims, &mut tracker, spell, now).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "threshold check: collection failed"),
                }
            }
        })
    }

    /// Sends `spell`'s alert if this service is the first to record it; settles it in `tracker`
    /// unless the claim could not be decided (then the next check tries again).
    async fn announce(
        self: &Arc<Self>,
        claims: &Arc<AlertClaims>,
        tracker: &mut ThresholdTracker,
        spell: Spell,
        now: u64,
    ) {
        let (c, s) = (claims.clone(), spell.clone());
        let claim = tokio::task::spawn_blocking(move || c.claim(&s, now)).await.unwrap_or(Claim::Busy);
        match claim {
            Claim::Mine => {
                tracker.settle(&spell);
                self.send(tracker.event(&spell));
            }
            Claim::Theirs => {
                tracing::debug!(node = %spell.node, "threshold alert already sent by another node");
                tracker.settle(&spell);
            }
            Claim::Busy => tracing::debug!(node = %spell.node, "alert lock busy; trying at the next check"),
        }
    }
}

/// The node whose maintenance evacuation was job `job_id`, if any.
fn evacuated_node(m: &crate::maintenance::Maintenance, job_id: u64) -> Option<String> {
    let marks = m.marks().ok()?;
    marks.into_values().find(|n| n.job_id == Some(job_id)).map(|n| n.node)
}

/// One node above the alert limit, continuously since `started_at` as this service saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Spell {
    pub node: String,
    pub resource: String,
    pub started_at: u64,
}

/// Per node: since when it has been above the threshold, and whether that spell was settled
/// (announced here or by another node).
pub struct ThresholdTracker {
    alert: Alert,
    above_since: BTreeMap<String, (u64, bool)>,
}

impl ThresholdTracker {
    pub fn new(alert: Alert) -> ThresholdTracker {
        ThresholdTracker { alert, above_since: BTreeMap::new() }
    }

    /// One collection at `now`: the spells long enough to announce and not settled yet.
    pub fn observe(&mut self, view: &shared::api::ClusterView, now: u64) -> Vec<Spell> {
        let loads = if self.alert.resource == "cpu" { &view.cpu } else { &view.memory };
        let mut out = Vec::new();
        for l in loads {
            if l.percent < self.alert.percent {
                self.above_since.remove(&l.node);
                continue;
            }
            let (since, settled) = *self.above_since.entry(l.node.clone()).or_insert((now, false));
            if !settled && now.saturating_sub(since) as f64 >= self.alert.minutes * 60.0 {
                out.push(Spell {
                    node: l.node.clone(),
                    resource: self.alert.resource.clone(),
                    started_at: since,
                });
            }
        }
        out
    }

    /// Nodes below the limit in `view`: where an announced spell has ended.
    pub fn below(&self, view: &shared::api::ClusterView) -> Vec<String> {
        let loads = if self.alert.resource == "cpu" { &view.cpu } else { &view.memory };
        loads.iter().filter(|l| l.percent < self.alert.percent).map(|l| l.node.clone()).collect()
    }

    /// `spell` was announced (here or elsewhere): no more alerts until it ends.
    pub fn settle(&mut self, spell: &Spell) {
        if let Some((since, settled)) = self.above_since.get_mut(&spell.node) {
            if *since == spell.started_at {
                *settled = true;
            }
        }
    }

    pub fn event(&self, spell: &Spell) -> Event {
        Event::Threshold {
            node: spell.node.clone(),
            resource: spell.resource.clone(),
            percent: self.alert.percent,
            minutes: self.alert.minutes,
        }
    }
}

/// Where the cluster records announced alert spells (in `--state-dir`, pmxcfs by default).
pub const ALERTS_FILE: &str = "alerts.json";
const ALERTS_LOCK: &str = "alerts";
/// The lock covers a read and a write of a small file: a holder older than this is dead.
const ALERTS_LOCK_TTL: Duration = Duration::from_secs(30);

/// Whether this service sends a spell's alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Recorded here first: send.
    Mine,
    /// Another service recorded this spell: do not send.
    Theirs,
    /// The lock stayed taken: decide at the next check.
    Busy,
}

/// `alerts.json`: the latest announced spell per node and resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertsState {
    pub announced: Vec<Announced>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announced {
    pub node: String,
    pub resource: String,
    /// When the announcing service saw the spell start (Unix seconds).
    pub started_at: u64,
    pub announced_at: u64,
    /// Host of the service that sent it.
    pub by: String,
    /// When a service first saw the node below the limit again; `None` while the spell lasts.
    #[serde(default)]
    pub ended_at: Option<u64>,
}

impl AlertsState {
    /// Someone announced `spell` already: the node's announcement was made while this service
    /// has seen the node above the limit without a break, or its spell has not been seen to end
    /// (this service started during it, e.g. restarted by a package upgrade). Each service dates
    /// a spell by its own first sight of it, so start times differ between nodes; the
    /// announcement and the end are what they share.
    pub fn covers(&self, spell: &Spell) -> bool {
        self.announced.iter().any(|a| {
            a.node == spell.node
                && a.resource == spell.resource
                && (a.announced_at >= spell.started_at || a.ended_at.is_none())
        })
    }

    /// Records `spell` as announced at `now` by `host`, replacing the node's older record.
    pub fn record(&mut self, spell: &Spell, now: u64, host: &str) {
        self.announced.retain(|a| !(a.node == spell.node && a.resource == spell.resource));
        self.announced.push(Announced {
            node: spell.node.clone(),
            resource: spell.resource.clone(),
            started_at: spell.started_at,
            announced_at: now,
            by: host.to_owned(),
            ended_at: None,
        });
    }

    /// Announced spells of `resource` on `below` nodes not yet marked ended: ended at `now`.
    /// Whether anything changed.
    pub fn end(&mut self, below: &[String], resource: &str, now: u64) -> bool {
        let mut changed = false;
        for a in &mut self.announced {
            if a.ended_at.is_none() && a.resource == resource && below.contains(&a.node) {
                a.ended_at = Some(now);
                changed = true;
            }
        }
        changed
    }
}

/// Why `alerts.json` could not be updated.
enum Unsettled {
    /// Another service holds the lock.
    Busy,
    /// Logged: the lock cannot be taken, or the file read or parsed.
    Broken,
}

/// The cluster-wide claim on alert spells: `<state_dir>/alerts.json`, read and written under a
/// `mkdir` lock in `<state_dir>/lock` (as the scheduler claims runs). Blocking (file system,
/// short waits for the lock): call off the async threads.
pub struct AlertClaims {
    state_dir: PathBuf,
    lock: DirLock,
    host: String,
}

impl AlertClaims {
    pub fn new(state_dir: &Path) -> AlertClaims {
        AlertClaims {
            state_dir: state_dir.to_owned(),
            lock: DirLock::new(state_dir.join("lock")),
            host: crate::this_host(),
        }
    }

    /// Records `spell` at `now` unless another service did. A lock that cannot be taken
    /// although nobody holds it, or a state file that cannot be read, is logged and the alert
    /// sent anyway: a duplicate is better than a silent alert.
    pub fn claim(&self, spell: &Spell, now: u64) -> Claim {
        let decided = self.update(|state| {
            if state.covers(spell) {
                return (Claim::Theirs, false);
            }
            state.record(spell, now, &self.host);
            (Claim::Mine, true)
        });
        match decided {
            Ok(claim) => claim,
            Err(Unsettled::Busy) => Claim::Busy,
            Err(Unsettled::Broken) => Claim::Mine,
        }
    }

    /// Marks the announced spells of the `below` nodes ended (the next spell there is new).
    /// Reads without the lock first: nothing to do is the common case.
    pub fn mark_ended(&self, below: &[String], resource: &str, now: u64) {
        let open = self.read().ok().is_some_and(|mut s| s.end(below, resource, now));
        if open {
            // Busy: another service is writing, and the next check looks again.
            let _ = self.update(|state| ((), state.end(below, resource, now)));
        }
    }

    fn path(&self) -> PathBuf {
        self.state_dir.join(ALERTS_FILE)
    }

    fn read(&self) -> Result<AlertsState, String> {
        match std::fs::read(self.path()) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("not valid ({e}); fix or remove the file"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AlertsState::default()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs `change` on the state under the lock; writes it back when `change` says so. A file
    /// that cannot be read is left as it is.
    fn update<T>(&self, change: impl FnOnce(&mut AlertsState) -> (T, bool)) -> Result<T, Unsettled> {
        let path = self.path();
        // The lock is held for a read and a write: a few short waits get it, unless a holder died.
        let Some(_guard) = (0..20).find_map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(25));
            }
            self.lock.try_acquire(ALERTS_LOCK, ALERTS_LOCK_TTL)
        }) else {
            if self.state_dir.join("lock").join(ALERTS_LOCK).is_dir() {
                return Err(Unsettled::Busy);
            }
            // Nobody holds it, yet it cannot be taken (a read-only or broken state directory).
            tracing::warn!(dir = %self.state_dir.display(), "cannot take the alert lock; alerts go out unclaimed");
            return Err(Unsettled::Broken);
        };
        let mut state = self.read().map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "alert state unreadable; alerts go out unclaimed");
            Unsettled::Broken
        })?;
        let (out, write) = change(&mut state);
        if write {
            let written = serde_json::to_vec_pretty(&state)
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::state_file::write_atomically(&self.state_dir, ALERTS_FILE, &bytes));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the alert state; other nodes may send it too");
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::StepCounts;

    fn job(state: JobState) -> JobSummary {
        JobSummary {
            id: 7,
            state,
            started_by: "root@pam".into(),
            created_at: 1,
            finished_at: Some(2),
            message: None,
            counts: StepCounts { done: 2, failed: 1, ..Default::default() },
        }
    }

    fn target(kind: Kind) -> Target {
        Target {
            kind,
            url: Some("http://127.0.0.1:9/hook".into()),
            token: Some(crate::config::Secret::new("s3cr3t")),
            chat_id: Some("42".into()),
        }
    }

    #[test]
    fn each_kind_gets_its_shape() {
        let ev = Event::JobEnded(job(JobState::Failed));
        let (url, headers, body) = request_for(&target(Kind::Gotify), &ev, 5);
        assert_eq!(url, "http://127.0.0.1:9/hook/message");
        assert!(headers.contains(&("X-Gotify-Key".into(), "s3cr3t".into())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["title"].as_str(), v["priority"].as_u64()),
            (Some("pve-rebalancer: job 7 failed"), Some(8))
        );
        let (url, _, body) = request_for(&target(Kind::Telegram), &ev, 5);
        assert_eq!(url, "http://127.0.0.1:9/hook/bots3cr3t/sendMessage");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["chat_id"], "42");
        let (_, headers, body) = request_for(&target(Kind::Ntfy), &ev, 5);
        assert!(headers.contains(&("Title".into(), "pve-rebalancer: job 7 failed".into())));
        assert!(String::from_utf8(body).unwrap().contains("2 done, 1 failed"));
        let (_, _, body) = request_for(&target(Kind::Json), &ev, 5);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["job_id"].as_u64(), v["at"].as_u64()),
            (Some("job_ended"), Some(7), Some(5))
        );
        assert!(format!("{:?}", target(Kind::Telegram)).find("s3cr3t").is_none());
    }

    #[test]
    fn a_threshold_alerts_once_per_spell_after_the_duration() {
        let snap = |pct: f64| shared::api::ClusterView {
            snapshot: Default::default(),
            memory: vec![shared::NodeLoad { node: "a".into(), used: pct, total: 100.0, percent: pct }],
            cpu: vec![],
            disk: vec![],
            memory_spread: 0.0,
            cpu_spread: 0.0,
            dynamic_balancer: None,
            memory_reserve: Default::default(),
        };
        let mut t = ThresholdTracker::new(Alert { percent: 80.0, minutes: 2.0, ..Alert::default() });
        // Every due spell announced here (as if this service always won the claim).
        let mut alerts = |pct: f64, now: u64| {
            let due = t.observe(&snap(pct), now);
            due.iter().for_each(|s| t.settle(s));
            due
        };
        assert!(alerts(85.0, 0).is_empty());
        assert!(alerts(85.0, 60).is_empty());
        assert_eq!(alerts(90.0, 120), [Spell { node: "a".into(), resource: "memory".into(), started_at: 0 }]);
        assert!(alerts(90.0, 180).is_empty(), "one alert per spell");
        assert!(alerts(50.0, 240).is_empty());
        assert!(alerts(85.0, 300).is_empty(), "re-armed, the clock starts again");
        assert_eq!(alerts(85.0, 420).len(), 1);
    }

    #[test]
    fn a_spell_not_settled_is_offered_again_at_the_next_check() {
        let view = |pct: f64| shared::api::ClusterView {
            memory: vec![shared::NodeLoad { node: "a".into(), used: pct, total: 100.0, percent: pct }],
            ..shared::api::ClusterView::of(Default::default())
        };
        let mut t = ThresholdTracker::new(Alert { percent: 80.0, minutes: 0.0, ..Alert::default() });
        assert_eq!(t.observe(&view(90.0), 10).len(), 1);
        // The claim was busy: nothing settled, so the same spell comes back.
        let again = t.observe(&view(90.0), 70);
        assert_eq!(again, [Spell { node: "a".into(), resource: "memory".into(), started_at: 10 }]);
        t.settle(&again[0]);
        assert!(t.observe(&view(90.0), 130).is_empty());
    }

    fn spell(started_at: u64) -> Spell {
        Spell { node: "pve1".into(), resource: "memory".into(), started_at }
    }

    #[test]
    fn the_first_service_to_record_a_spell_sends_it_and_the_others_do_not() {
        let dir = std::env::temp_dir().join(format!("pvrb-alert-claims-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, b) = (AlertClaims::new(&dir), AlertClaims::new(&dir));
        let state = || -> AlertsState {
            serde_json::from_slice(&std::fs::read(dir.join(ALERTS_FILE)).unwrap()).unwrap()
        };
        assert_eq!(a.claim(&spell(100), 700), Claim::Mine);
        // b saw the spell start later (it checks on its own clock) and is due later: same spell.
        assert_eq!(b.claim(&spell(160), 760), Claim::Theirs);
        assert_eq!(a.claim(&spell(100), 700), Claim::Theirs, "a retry after a lost answer sends nothing");
        let s = state();
        assert_eq!(s.announced.len(), 1);
        assert_eq!(
            (s.announced[0].started_at, s.announced[0].announced_at, s.announced[0].ended_at),
            (100, 700, None)
        );
        // A service started during the spell (say, restarted by an upgrade) dates it from its
        // own start, after the announcement: the spell has not been seen to end, so it is known.
        let restarted = AlertClaims::new(&dir);
        assert_eq!(restarted.claim(&spell(900), 1500), Claim::Theirs);
        // The node dropped below at 1000 (b saw it) and rose again at 2000: a new spell, once.
        b.mark_ended(&["pve1".into()], "cpu", 1000);
        assert_eq!(state().announced[0].ended_at, None, "another resource's spell");
        b.mark_ended(&["pve1".into()], "memory", 1000);
        a.mark_ended(&["pve1".into()], "memory", 1010);
        assert_eq!(state().announced[0].ended_at, Some(1000), "the first sight of the end counts");
        assert_eq!(b.claim(&spell(2000), 2600), Claim::Mine);
        assert_eq!(a.claim(&spell(1990), 2610), Claim::Theirs);
        assert_eq!(state().announced[0].ended_at, None, "the new spell lasts");
        // Another node's spell is its own.
        let other = Spell { node: "pve2".into(), ..spell(2000) };
        assert_eq!(a.claim(&other, 2610), Claim::Mine);
        // A damaged file is not overwritten, and the alert still goes out.
        std::fs::write(dir.join(ALERTS_FILE), b"{not json").unwrap();
        assert_eq!(a.claim(&spell(5000), 5600), Claim::Mine);
        a.mark_ended(&["pve1".into()], "memory", 5700);
        assert_eq!(std::fs::read(dir.join(ALERTS_FILE)).unwrap(), b"{not json");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_held_lock_makes_the_claim_wait_for_the_next_check() {
        let dir = std::env::temp_dir().join(format!("pvrb-alert-busy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = DirLock::new(dir.join("lock")).try_acquire(ALERTS_LOCK, ALERTS_LOCK_TTL).unwrap();
        assert_eq!(AlertClaims::new(&dir).claim(&spell(0), 60), Claim::Busy);
        drop(held);
        assert_eq!(AlertClaims::new(&dir).claim(&spell(0), 60), Claim::Mine);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_dir_that_cannot_hold_the_lock_still_lets_the_alert_out() {
        let dir = std::env::temp_dir().join(format!("pvrb-alert-nolock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A file where the lock directory should be: mkdir under it fails for everyone.
        std::fs::write(dir.join("lock"), b"").unwrap();
        assert_eq!(AlertClaims::new(&dir).claim(&spell(0), 60), Claim::Mine);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
