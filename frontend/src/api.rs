//! HTTP calls to the backend. Errors come back as plain words with the backend's detail (which
//! carries PVE's own message where PVE failed), plus the status so views can ask for a login.

use crate::PanelOptions;
use gloo_net::http::{Request, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use shared::api::BacktestState;
use shared::api::{
    ApiError, AuditEntry, BestNodeAnswer, BestNodeRequest, ClusterView, ExecuteResponse, ExitRequest,
    HistoryView, JobSummary, JobView, MaintenanceAnswer, MaintenanceRequest, NodeMaintenance, SettingsView,
};
use shared::backtest::RunKind;
use shared::policy::{PolicyLayer, PolicyView};
use shared::Plan;
use std::cell::RefCell;

/// A failed call: the words to show, and the HTTP status when the backend answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub status: Option<u16>,
    pub message: String,
}

impl Failure {
    pub fn needs_login(&self) -> bool {
        self.status == Some(401)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

thread_local! {
    /// The CSRF token from a login made in this panel (standalone mode).
    static LOGIN_CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The CSRF token to send: inside the PVE UI the page's current one (PVE renews it with the
/// ticket, so it is read at each call), else the one from our own login, else the mount option.
fn csrf_token(opts: &PanelOptions) -> Option<String> {
    let from_page = js_sys::Reflect::get(&js_sys::global(), &"Proxmox".into())
        .ok()
        .filter(|p| p.is_object())
        .and_then(|p| js_sys::Reflect::get(&p, &"CSRFPreventionToken".into()).ok())
        .and_then(|t| t.as_string());
    from_page
        .or_else(|| LOGIN_CSRF.with(|c| c.borrow().clone()))
        .or_else(|| session_storage().and_then(|s| s.get_item(CSRF_KEY).ok().flatten()))
        .or_else(|| opts.csrf_token.clone())
}

/// Standalone, the token survives a page reload in sessionStorage (the ticket cookie does too;
/// without the token every write after a reload would be refused).
const CSRF_KEY: &str = "pvrb-csrf";

const CAPS_KEY: &str = "pvrb-caps";

/// The privileges from this tab's last standalone login, if any.
pub fn stored_caps() -> Option<crate::caps::Caps> {
    let raw = session_storage()?.get_item(CAPS_KEY).ok().flatten()?;
    serde_json::from_str(&raw).ok()
}

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

fn with_auth(builder: RequestBuilder, opts: &PanelOptions) -> RequestBuilder {
    // Cross-origin inside the PVE UI: send the PVEAuthCookie along.
    let builder = builder.credentials(web_sys::RequestCredentials::Include);
    match csrf_token(opts) {
        Some(token) => builder.header("CSRFPreventionToken", &token),
        None => builder,
    }
}

/// One call's answer: the body of a 2xx with its status, else the failure in words. Not generic:
/// each API type then costs the size-budgeted module only its deserializer, not a copy of this
/// future and the request code (docs/BENCHMARKS.md, Panel).
async fn fetch(req: Result<Request, gloo_net::Error>) -> Result<(u16, String), Failure> {
    let req = req.map_err(|e| Failure { status: None, message: e.to_string() })?;
    let resp = req.send().await.map_err(|e| Failure {
        status: None,
        message: format!("The rebalancer service could not be reached: {e}"),
    })?;
    let status = resp.status();
    if resp.ok() {
        let text = resp.text().await.map_err(|e| unexpected(status, e))?;
        return Ok((status, text));
    }
    let message = match resp.json::<ApiError>().await {
        Ok(e) => crate::format::api_error(status, &e),
        Err(_) => format!("The rebalancer service answered HTTP {status}."),
    };
    Err(Failure { status: Some(status), message })
}

fn unexpected(status: u16, e: impl std::fmt::Display) -> Failure {
    Failure {
        status: Some(status),
        message: format!("The rebalancer service sent an unexpected answer: {e}"),
    }
}

fn parse<T: DeserializeOwned>((status, text): (u16, String)) -> Result<T, Failure> {
    serde_json::from_str(&text).map_err(|e| unexpected(status, e))
}

/// `method` (`Request::get`, `post`, `put`, `delete`) on the service's `path`, authenticated, with a JSON
/// body when there is one.
async fn call(
    opts: &PanelOptions,
    method: fn(&str) -> RequestBuilder,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), Failure> {
    let builder = with_auth(method(&format!("{}{path}", opts.api_base)), opts);
    fetch(match body {
        Some(json) => builder.header("Content-Type", "application/json").body(json),
        None => builder.build(),
    })
    .await
}

fn json_body<B: serde::Serialize>(body: &B) -> Result<Option<String>, Failure> {
    serde_json::to_string(body).map(Some).map_err(|e| Failure { status: None, message: e.to_string() })
}

/// The cluster, and its JSON text as received (for the what-if worker, `crate::whatif`).
pub async fn cluster(opts: &PanelOptions) -> Result<(ClusterView, String), Failure> {
    get_with_text(opts, "/api/v1/cluster").await
}

/// A plan by the service on a fresh snapshot, with the policy in force and `overrides` (only the
/// fields the user changed in the plan form) on top.
///
/// With the plan's JSON text as received: executing it sends that text back, not a re-encoding
/// (the panel then needs no `Plan` encoder, and the service gets its own numbers bit for bit).
pub async fn plan(opts: &PanelOptions, overrides: &PolicyLayer) -> Result<(Plan, String), Failure> {
    parse_keeping_text(call(opts, Request::post, "/api/v1/plan", json_body(overrides)?).await?)
}

/// The policy in force (file < stored settings) and the engine request it makes; the what-if
/// plans with exactly this, so the browser and the service plan alike.
/// With its JSON text as received (for the what-if worker).
pub async fn policy(opts: &PanelOptions) -> Result<(PolicyView, String), Failure> {
    get_with_text(opts, "/api/v1/policy").await
}

async fn post<B: serde::Serialize, T: DeserializeOwned>(
    opts: &PanelOptions,
    path: &str,
    body: &B,
) -> Result<T, Failure> {
    parse(call(opts, Request::post, path, json_body(body)?).await?)
}

/// Node names travel in the path; PVE node names are `[a-zA-Z0-9-]`, but encode anyway so a
/// stray character cannot change the route.
fn node_path(node: &str) -> String {
    String::from(js_sys::encode_uri_component(node))
}

pub async fn maintenance(opts: &PanelOptions, node: &str) -> Result<NodeMaintenance, Failure> {
    get(opts, &format!("/api/v1/maintenance/{}", node_path(node))).await
}

/// Enter maintenance (`preview`: only the evacuation plan, nothing marked or moved).
pub async fn enter(
    opts: &PanelOptions,
    node: &str,
    req: &MaintenanceRequest,
) -> Result<MaintenanceAnswer, Failure> {
    post(opts, &format!("/api/v1/maintenance/{}/enter", node_path(node)), req).await
}

/// Leave maintenance (`preview`: only the return-home plan).
pub async fn exit(opts: &PanelOptions, node: &str, req: &ExitRequest) -> Result<MaintenanceAnswer, Failure> {
    post(opts, &format!("/api/v1/maintenance/{}/exit", node_path(node)), req).await
}

pub async fn settings(opts: &PanelOptions) -> Result<SettingsView, Failure> {
    get(opts, "/api/v1/settings").await
}

/// Stores the fields `changed` sets (only those: a field another admin changed meanwhile and
/// this one did not touch keeps their value).
pub async fn save_settings(opts: &PanelOptions, changed: &PolicyLayer) -> Result<SettingsView, Failure> {
    store_settings(opts, json_body(changed)?).await
}

/// [`save_settings`] with the layer as the JSON object the settings view edits field by field.
pub async fn save_settings_object(
    opts: &PanelOptions,
    changed: &serde_json::Map<String, serde_json::Value>,
) -> Result<SettingsView, Failure> {
    store_settings(opts, Some(serde_json::Value::Object(changed.clone()).to_string())).await
}

async fn store_settings(opts: &PanelOptions, body: Option<String>) -> Result<SettingsView, Failure> {
    parse(call(opts, Request::put, "/api/v1/settings", body).await?)
}

/// Forgets the stored value of `field`: the configuration file's value or the default applies.
pub async fn reset_setting(opts: &PanelOptions, field: &str) -> Result<SettingsView, Failure> {
    let path = format!("/api/v1/settings/{}", node_path(field));
    parse(call(opts, Request::delete, &path, None).await?)
}

/// The audit log of writes, newest first.
pub async fn audit(opts: &PanelOptions, limit: usize) -> Result<Vec<AuditEntry>, Failure> {
    get(opts, &format!("/api/v1/history?limit={limit}")).await
}

/// The service's samples of node usage over the last `minutes`.
pub async fn cluster_history(opts: &PanelOptions, minutes: u32) -> Result<HistoryView, Failure> {
    get(opts, &format!("/api/v1/cluster/history?minutes={minutes}")).await
}

/// What the back-test view reads of `shared::api::BacktestStatus` (`POST`/`GET /api/v1/backtest`): the
/// same JSON, decoded without the fields the view does not show (each run's moves, the time grid),
/// whose decoders would cost the size-budgeted module (docs/BENCHMARKS.md, Panel).
#[derive(Clone, Deserialize)]
pub struct BacktestStatus {
    pub state: BacktestState,
    pub done: usize,
    pub total: usize,
    pub from_cache: usize,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub report: Option<BacktestReport>,
}

impl BacktestStatus {
    pub fn running(&self) -> bool {
        matches!(self.state, BacktestState::Importing | BacktestState::Replaying)
    }
}

/// `shared::backtest::BacktestReport` as shown: the runs.
#[derive(Clone, Deserialize)]
pub struct BacktestReport {
    pub runs: Vec<RunReport>,
}

/// `shared::backtest::RunReport` as shown: the figures and the spread series.
#[derive(Clone, Deserialize)]
pub struct RunReport {
    pub name: String,
    pub kind: RunKind,
    pub migrations_per_day: f64,
    pub gib_moved: f64,
    pub node_hours_over_memory: f64,
    pub node_hours_over_cpu: f64,
    pub spread_mean: f64,
    pub spread_worst: f64,
    pub reversals_24h: usize,
    pub ct_restarts: usize,
    pub hard_violations: usize,
    pub spread: Vec<f64>,
}

/// Starts the back-test (`POST /api/v1/backtest`).
pub async fn backtest_start(
    opts: &PanelOptions,
    start: &shared::api::BacktestStart,
) -> Result<BacktestStatus, Failure> {
    post(opts, "/api/v1/backtest", start).await
}

/// The back-test's progress, then its report.
pub async fn backtest_status(opts: &PanelOptions) -> Result<BacktestStatus, Failure> {
    get(opts, "/api/v1/backtest").await
}

async fn get<T: DeserializeOwned>(opts: &PanelOptions, path: &str) -> Result<T, Failure> {
    parse(call(opts, Request::get, path, None).await?)
}

/// [`get`], and the answer's text as received.
async fn get_with_text<T: DeserializeOwned>(opts: &PanelOptions, path: &str) -> Result<(T, String), Failure> {
    parse_keeping_text(call(opts, Request::get, path, None).await?)
}

fn parse_keeping_text<T: DeserializeOwned>((status, text): (u16, String)) -> Result<(T, String), Failure> {
    let value = serde_json::from_str(&text).map_err(|e| unexpected(status, e))?;
    Ok((value, text))
}

/// Starts a job; `plan` = the shown plan's JSON text as received (from the service or the
/// what-if worker), `steps` = the vmids to run, `None` for all. The body is `ExecuteRequest`.
pub async fn execute(opts: &PanelOptions, plan: &str, steps: Option<Vec<u32>>) -> Result<u64, Failure> {
    let answer: ExecuteResponse = parse(
        call(opts, Request::post, "/api/v1/plan/execute", Some(execute_body(plan, steps.as_deref()))).await?,
    )?;
    Ok(answer.job_id)
}

/// `ExecuteRequest`'s JSON with `plan` as it is.
fn execute_body(plan: &str, steps: Option<&[u32]>) -> String {
    let steps = steps.map(|v| {
        let list: Vec<String> = v.iter().map(u32::to_string).collect();
        format!(",\"steps\":[{}]", list.join(","))
    });
    format!("{{\"plan\":{plan}{}}}", steps.unwrap_or_default())
}

pub async fn jobs(opts: &PanelOptions, limit: usize) -> Result<Vec<JobSummary>, Failure> {
    get(opts, &format!("/api/v1/jobs?limit={limit}")).await
}

pub async fn job(opts: &PanelOptions, id: u64) -> Result<JobView, Failure> {
    get(opts, &format!("/api/v1/jobs/{id}")).await
}

pub async fn cancel(opts: &PanelOptions, id: u64) -> Result<JobView, Failure> {
    post(opts, &format!("/api/v1/jobs/{id}/cancel"), &serde_json::json!({})).await
}

/// The event stream of a job (`EventSource` needs the absolute URL).
pub fn events_url(opts: &PanelOptions, id: u64) -> String {
    format!("{}/api/v1/jobs/{id}/events", opts.api_base)
}

#[derive(serde::Deserialize)]
struct LoginAnswer {
    #[serde(rename = "CSRFPreventionToken")]
    csrf: Option<String>,
    #[serde(default)]
    cap: Option<crate::caps::Caps>,
}

/// Logs in with PVE credentials through the backend, which sets PVE's ticket cookie. Answers the
/// user's privileges (PVE's `cap`).
pub async fn login(
    opts: &PanelOptions,
    username: &str,
    password: &str,
) -> Result<Option<crate::caps::Caps>, Failure> {
    let url = format!("{}/api/v1/login", opts.api_base);
    let body = serde_json::json!({ "username": username, "password": password });
    let req = Request::post(&url).credentials(web_sys::RequestCredentials::Include).json(&body);
    let answer: LoginAnswer = parse(fetch(req).await?)?;
    if let (Some(storage), Some(token)) = (session_storage(), answer.csrf.as_deref()) {
        let _ = storage.set_item(CSRF_KEY, token);
        if let Some(cap) = answer.cap.as_ref().and_then(|c| serde_json::to_string(c).ok()) {
            let _ = storage.set_item(CAPS_KEY, &cap);
        }
    }
    LOGIN_CSRF.with(|c| *c.borrow_mut() = answer.csrf);
    Ok(answer.cap)
}

/// The nodes ranked for a guest (an existing one by `vmid`, or a new one), best first, with why.
pub async fn best_node(opts: &PanelOptions, req: &BestNodeRequest) -> Result<BestNodeAnswer, Failure> {
    post(opts, "/api/v1/best-node", req).await
}

#[derive(serde::Deserialize)]
struct MigrateAnswer {
    job_id: u64,
}

/// Moves one guest as a one-step job (ProxBalance's `POST /api/migrate`): the service plans it so
/// rules and capacity hold, checks `VM.Migrate` and runs the preflight like any plan step.
pub async fn migrate(opts: &PanelOptions, vmid: u32, from: &str, to: &str) -> Result<u64, Failure> {
    let body = serde_json::json!({ "vmid": vmid, "source_node": from, "target_node": to });
    let answer: MigrateAnswer = post(opts, "/api/migrate", &body).await?;
    Ok(answer.job_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::backtest::{Move, Resource};

    #[test]
    fn the_execute_body_is_the_request_with_the_plan_as_received() {
        let plan = shared::planner::plan(&shared::testkit::cluster(3, 4, 30), &Default::default());
        let text = serde_json::to_string(&plan).unwrap();
        for steps in [None, Some(vec![101, 7])] {
            let body = execute_body(&text, steps.as_deref());
            let read: shared::api::ExecuteRequest = serde_json::from_str(&body).unwrap();
            assert_eq!((read.plan.steps.len(), read.steps), (plan.steps.len(), steps.clone()));
            let expected = shared::api::ExecuteRequest { plan: plan.clone(), steps };
            assert_eq!(body, serde_json::to_string(&expected).unwrap(), "what encoding the plan would send");
        }
    }

    #[test]
    fn the_backtest_view_reads_the_service_answer() {
        let run = shared::backtest::RunReport {
            name: "edited".into(),
            kind: RunKind::Policy,
            migrations: 14,
            migrations_per_day: 2.0,
            gib_moved: 30.5,
            node_hours_over_memory: 1.5,
            node_hours_over_cpu: 0.5,
            spread_mean: 12.25,
            spread_worst: 40.0,
            reversals_24h: 1,
            ct_restarts: 2,
            hard_violations: 3,
            spread: vec![40.0, 12.0, 9.5],
            moves: vec![Move {
                at: 60,
                vmid: 101,
                from: "pve1".into(),
                to: "pve2".into(),
                bytes: 1 << 30,
                restart: false,
            }],
        };
        let answer = shared::api::BacktestStatus {
            state: BacktestState::Done,
            done: 9,
            total: 9,
            from_cache: 4,
            error: None,
            report: Some(shared::backtest::BacktestReport {
                times: vec![0, 3600, 7200],
                interval_secs: 3600,
                days: 7.0,
                spread_on: Resource::Memory,
                runs: vec![run],
            }),
        };
        let read: BacktestStatus = parse((200, serde_json::to_string(&answer).unwrap())).unwrap();
        assert!(!read.running());
        assert_eq!((read.done, read.total, read.from_cache), (9, 9, 4));
        let run = &read.report.expect("the report").runs[0];
        assert_eq!(
            (run.name.as_str(), run.kind, run.reversals_24h, run.ct_restarts),
            ("edited", RunKind::Policy, 1, 2)
        );
        assert_eq!((run.gib_moved, run.spread_mean, run.hard_violations), (30.5, 12.25, 3));
        assert_eq!(run.spread, vec![40.0, 12.0, 9.5]);
        let failed = r#"{"state":"failed","done":1,"total":9,"from_cache":0,"error":"PVE said no"}"#;
        let read: BacktestStatus = parse((200, failed.into())).unwrap();
        assert_eq!(
            (read.state, read.error.as_deref(), read.report.is_none()),
            (BacktestState::Failed, Some("PVE said no"), true)
        );
    }
}
