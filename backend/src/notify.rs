//! Notifications: webhook messages when a job ends, a migration fails, a maintenance evacuation
//! is done, or a node stays above a usage threshold.
//!
//! Targets come from `rebalancer.notify` in the configuration (kinds: generic JSON, Gotify, ntfy,
//! Telegram, Slack-compatible). Sending never blocks or fails a job: the notifier follows the
//! executor's event stream on its own task, each message is sent on a task of its own with a
//! bounded timeout, and a failure is logged and dropped. Tokens and URLs (a Telegram URL holds
//! the bot token) are never logged: a target is named by its index and kind.

use crate::execute::{ExecEvent, Executor};
use serde::Deserialize;
use serde_json::json;
use shared::api::{JobState, JobSummary, StepState, StepView};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Where messages go (`rebalancer.notify.targets[]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// POST of `{event, title, message, at, job_id?, node?}`.
    Json,
    /// Gotify: POST `URL/message` with `X-Gotify-Key: token`.
    Gotify,
    /// ntfy: POST of the text to the topic URL, `Title` header, bearer token if set.
    Ntfy,
    /// Telegram: POST `URL/bot<token>/sendMessage` `{chat_id, text}` (URL default
    /// `https://api.telegram.org`).
    Telegram,
    /// Slack and compatible incoming webhooks (Mattermost, Rocket.Chat, Discord's `/slack`):
    /// POST `{text}`.
    Slack,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Gotify => "gotify",
            Kind::Ntfy => "ntfy",
            Kind::Telegram => "telegram",
            Kind::Slack => "slack",
        }
    }
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: Kind,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub token: Option<crate::config::Secret>,
    /// Telegram's chat.
    #[serde(default)]
    pub chat_id: Option<String>,
}

impl std::fmt::Debug for Target {
    // The URL may hold a secret too (Telegram's bot token, a webhook's path): never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Target {
    /// What is wrong with this target, for the configuration check.
    pub fn problem(&self) -> Option<String> {
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        match (&self.kind, &self.url) {
            (Kind::Telegram, _) if self.token.is_none() || self.chat_id.is_none() => {
                Some("telegram needs `token` (the bot token) and `chat_id`".into())
            }
            (Kind::Telegram, None) => None,
            (_, None) => Some("needs `url` (http:// or https://)".into()),
            (_, Some(u)) if !url_ok(u) => Some("`url` must start with http:// or https://".into()),
            _ => None,
        }
    }
}

/// "Node above X % for Y minutes" (`rebalancer.notify.alert`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Alert {
    /// Usage percent (0–100) that counts as high.
    pub percent: f64,
    /// For this many minutes in a row before one alert is sent (re-armed when it drops below).
    pub minutes: f64,
    /// `memory` or `cpu`.
    pub resource: String,
    /// Seconds between the collections the alert is evaluated on.
    pub check_interval_secs: u64,
}

impl Default for Alert {
    fn default() -> Self {
        Alert { percent: 90.0, minutes: 10.0, resource: "memory".into(), check_interval_secs: 60 }
    }
}

/// `rebalancer.notify`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    pub targets: Vec<Target>,
    /// Threshold alerts; off when absent.
    pub alert: Option<Alert>,
    /// Seconds one message may take (default 5).
    pub timeout_secs: Option<u64>,
}

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
    /// above the limit long enough.
    pub fn watch_thresholds(
        self: Arc<Self>,
        pve: Arc<crate::pve::PveClient>,
        alert: Alert,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tracker = ThresholdTracker::new(alert.clone());
            let mut tick = tokio::time::interval(Duration::from_secs(alert.check_interval_secs.max(5)));
            loop {
                tick.tick().await;
                let now = crate::unix_now();
                match crate::collect::snapshot(&pve, now).await {
                    Ok(snap) => {
                        for event in tracker.observe(&shared::api::ClusterView::of(snap), now) {
                            self.send(event);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "threshold check: collection failed"),
                }
            }
        })
    }
}

/// The node whose maintenance evacuation was job `job_id`, if any.
fn evacuated_node(m: &crate::maintenance::Maintenance, job_id: u64) -> Option<String> {
    let marks = m.marks().ok()?;
    marks.into_values().find(|n| n.job_id == Some(job_id)).map(|n| n.node)
}

/// Per node: since when it has been above the threshold, and whether that spell was reported.
pub struct ThresholdTracker {
    alert: Alert,
    above_since: BTreeMap<String, (u64, bool)>,
}

impl ThresholdTracker {
    pub fn new(alert: Alert) -> ThresholdTracker {
        ThresholdTracker { alert, above_since: BTreeMap::new() }
    }

    /// One collection at `now`: the alerts it triggers (at most one per spell above the limit).
    pub fn observe(&mut self, view: &shared::api::ClusterView, now: u64) -> Vec<Event> {
        let loads = if self.alert.resource == "cpu" { &view.cpu } else { &view.memory };
        let mut out = Vec::new();
        for l in loads {
            if l.percent < self.alert.percent {
                self.above_since.remove(&l.node);
                continue;
            }
            let (since, sent) = self.above_since.entry(l.node.clone()).or_insert((now, false));
            if !*sent && now.saturating_sub(*since) as f64 >= self.alert.minutes * 60.0 {
                *sent = true;
                out.push(Event::Threshold {
                    node: l.node.clone(),
                    resource: self.alert.resource.clone(),
                    percent: self.alert.percent,
                    minutes: self.alert.minutes,
                });
            }
        }
        out
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
    fn config_problems_are_named() {
        let parse = |y: &str| serde_norway::from_str::<NotifyConfig>(y);
        let c =
            parse("targets: [{kind: ntfy, url: 'https://ntfy.sh/t'}, {kind: telegram, token: x}]").unwrap();
        assert_eq!(c.targets[0].problem(), None);
        assert!(c.targets[1].problem().unwrap().contains("chat_id"));
        let c = parse("targets: [{kind: slack, url: 'ftp://x'}, {kind: gotify}]").unwrap();
        assert!(c.targets[0].problem().unwrap().contains("http://"));
        assert!(c.targets[1].problem().unwrap().contains("needs `url`"));
        assert!(parse("targets: [{kind: email, url: 'http://x'}]").is_err(), "unknown kind");
        assert!(parse("targets: [{kind: json, uri: 'http://x'}]").is_err(), "unknown key");
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
        assert!(t.observe(&snap(85.0), 0).is_empty());
        assert!(t.observe(&snap(85.0), 60).is_empty());
        assert_eq!(t.observe(&snap(90.0), 120).len(), 1);
        assert!(t.observe(&snap(90.0), 180).is_empty(), "one alert per spell");
        assert!(t.observe(&snap(50.0), 240).is_empty());
        assert!(t.observe(&snap(85.0), 300).is_empty(), "re-armed, the clock starts again");
        assert_eq!(t.observe(&snap(85.0), 420).len(), 1);
    }
}
