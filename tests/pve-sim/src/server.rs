//! HTTPS server: shared simulator state, the `/api2` handler, and the `/_sim` admin endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api::{self, ApiError, Ctx, Format};
use crate::auth::Signer;
use crate::faults::Faults;
use crate::scenario::FaultSpec;
use crate::schema::Schema;
use crate::state::Cluster;

/// Mutable simulator state, behind one lock.
pub struct World {
    pub cluster: Cluster,
    pub faults: Faults,
    /// Seconds added to the wall clock (`/_sim/clock`).
    pub clock_offset: f64,
    /// The simulated clock.
    pub clock: Clock,
}

impl World {
    /// Simulated time at wall time `wall`.
    fn now_at(&self, wall: f64) -> f64 {
        self.clock.at(wall) + self.clock_offset
    }
}

/// The simulated clock: `now = base_sim + (wall − base_wall) × rate + clock_offset`.
/// Rate 1 is real time, > 1 runs faster (a week in minutes), 0 stands still (stepped via
/// `/_sim/clock` `advance`). Tickets and CSRF tokens use the unscaled `wall + clock_offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    pub rate: f64,
    pub base_wall: f64,
    pub base_sim: f64,
}

impl Clock {
    pub fn new(rate: f64, wall: f64) -> Self {
        Clock { rate, base_wall: wall, base_sim: wall }
    }
    /// Simulated time without the offset.
    pub fn at(&self, wall: f64) -> f64 {
        self.base_sim + (wall - self.base_wall) * self.rate
    }
    /// Changes the rate without a jump.
    pub fn set_rate(&mut self, rate: f64, wall: f64) {
        self.base_sim = self.at(wall);
        self.base_wall = wall;
        self.rate = rate;
    }
    /// `"real"`, `"scaled"` or `"stepped"`.
    pub fn mode(&self) -> &'static str {
        if self.rate == 0.0 {
            "stepped"
        } else if self.rate == 1.0 {
            "real"
        } else {
            "scaled"
        }
    }
}

/// Everything shared by the request handlers.
pub struct Sim {
    pub world: Mutex<World>,
    pub signer: Signer,
    pub time_scale: f64,
    pub fingerprint: String,
    pub requests: AtomicU64,
    pub stats: Mutex<BTreeMap<String, u64>>,
    pub schema: Option<Arc<Schema>>,
}

fn wall() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Sim {
    pub fn new(cluster: Cluster, time_scale: f64, fingerprint: String, schema: Option<Arc<Schema>>) -> Self {
        Self::with_clock(cluster, time_scale, 1.0, fingerprint, schema)
    }

    /// Like [`Sim::new`] with a clock rate (see [`Clock`]).
    pub fn with_clock(
        cluster: Cluster,
        time_scale: f64,
        clock_rate: f64,
        fingerprint: String,
        schema: Option<Arc<Schema>>,
    ) -> Self {
        let clock = Clock::new(clock_rate, wall());
        Sim {
            world: Mutex::new(World { cluster, faults: Faults::default(), clock_offset: 0.0, clock }),
            signer: Signer::new(),
            time_scale,
            fingerprint,
            requests: AtomicU64::new(0),
            stats: Mutex::new(BTreeMap::new()),
            schema,
        }
    }

    /// Simulated time now, without letting tasks advance (for stamping answers).
    pub fn clock_now(&self) -> f64 {
        self.world.lock().unwrap_or_else(|e| e.into_inner()).now_at(wall())
    }

    /// Locks the world and lets due tasks finish first. Returns the guard and the simulated time.
    pub fn lock(&self) -> (MutexGuard<'_, World>, f64) {
        let mut w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let wl = wall();
        let now = w.now_at(wl);
        let div = self.task_divisor(&w);
        w.cluster.auth_now = (wl + w.clock_offset).floor() as i64;
        let World { cluster, faults, .. } = &mut *w;
        cluster.advance(now, div, faults);
        (w, now)
    }

    /// Task durations on the simulated clock are `simulated seconds / divisor`: with a real-time
    /// clock that is `time_scale` (tasks run `time_scale`× faster than real), with a faster clock
    /// tasks take their simulated duration (unless `time_scale` is even higher), with a stepped
    /// clock exactly their simulated duration.
    pub fn task_divisor(&self, w: &World) -> f64 {
        let r = w.clock.rate;
        if r <= 0.0 {
            1.0
        } else if r <= 1.0 {
            self.time_scale
        } else {
            self.time_scale.max(r) / r
        }
    }
}

/// Collapses an API path to its endpoint template for statistics (`/nodes/{node}/qemu/{vmid}/config`).
pub fn endpoint_template(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::with_capacity(segs.len());
    for (i, s) in segs.iter().enumerate() {
        let prev = if i > 0 { segs[i - 1] } else { "" };
        let prev2 = if i > 1 { segs[i - 2] } else { "" };
        let t = match prev {
            "nodes" if prev2.is_empty() => "{node}",
            "qemu" | "lxc" if !prev2.is_empty() && segs.first() == Some(&"nodes") && i >= 3 => "{vmid}",
            "tasks" if prev2 != "cluster" => "{upid}",
            "pools" if i == 1 => "{poolid}",
            "storage" if i == 3 && segs.first() == Some(&"nodes") => "{storage}",
            "resources" if prev2 == "ha" => "{sid}",
            "rules" if prev2 == "ha" => "{rule}",
            _ => s,
        };
        out.push(t);
    }
    format!("/{}", out.join("/"))
}

async fn api_handler(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = uri.path();
    let (fmt, path) = if let Some(p) = full.strip_prefix("/api2/json") {
        (Format::Json, p)
    } else if let Some(p) = full.strip_prefix("/api2/extjs") {
        (Format::ExtJs, p)
    } else {
        return (StatusCode::NOT_IMPLEMENTED, format!("no such file '{full}'")).into_response();
    };
    let path = if path.is_empty() { "/" } else { path };
    sim.requests.fetch_add(1, Ordering::Relaxed);
    {
        let mut st = sim.stats.lock().unwrap_or_else(|e| e.into_inner());
        *st.entry(format!("{} {}", method, endpoint_template(path))).or_default() += 1;
    }
    let latency = {
        let (w, _) = sim.lock();
        w.faults.latency_ms(path)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let res = handle(&sim, &method, path, uri.query(), &headers, &body);
    let mut resp = api::render(fmt, res);
    // pveproxy stamps every answer with its clock; ours is the simulated one, so clients that
    // measure task ages on PVE's clock see the simulated week, not the wall clock.
    let now = sim.clock_now().max(0.0);
    let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs_f64(now));
    if let Ok(v) = axum::http::HeaderValue::from_str(&date) {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    resp
}

fn handle(
    sim: &Sim,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> api::ApiResult {
    let (mut w, now) = sim.lock();
    if let Some(status) = w.faults.take_burst(path) {
        return Err(ApiError::new(status, format!("simulated failure (HTTP {status})")));
    }
    let params = api::parse_params(query, headers, body)?;
    let auth_now = w.cluster.auth_now;
    let ident = api::authenticate(sim, &w, method, path, headers, auth_now)?;
    let time_scale = sim.task_divisor(&w);
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    if let Some(schema) = &sim.schema {
        schema.validate_request(method.as_str(), &segs, &params, &w.cluster.version)?;
    }
    let Some(ident) = ident else {
        if method == Method::POST && path == "/access/ticket" {
            return api::access::login(sim, &w, &params, auth_now);
        }
        return api::dispatch(
            sim,
            &mut w,
            &Ctx {
                method,
                path,
                segs,
                params,
                ident: crate::auth::Identity {
                    userid: "anonymous@pam".into(),
                    tokenid: None,
                    by_ticket: false,
                },
                now,
                time_scale,
                fingerprint: &sim.fingerprint,
            },
        );
    };
    if method == Method::POST && path == "/access/ticket" {
        return api::access::login(sim, &w, &params, auth_now);
    }
    let cx = Ctx { method, path, segs, params, ident, now, time_scale, fingerprint: &sim.fingerprint };
    api::dispatch(sim, &mut w, &cx)
}

// ---- /_sim admin endpoints (loopback only) -------------------------------------------------------

fn loopback(peer: &SocketAddr) -> Result<(), Box<Response>> {
    if peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(Box::new((StatusCode::FORBIDDEN, "admin endpoints are loopback-only").into_response()))
    }
}

async fn sim_invariants(State(sim): State<Arc<Sim>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if let Err(r) = loopback(&peer) {
        return *r;
    }
    let (w, _) = sim.lock();
    match w.cluster.check_invariants() {
        Ok(()) => Json(json!({"ok": true, "violations": []})).into_response(),
        Err(v) => Json(json!({"ok": false, "violations": v})).into_response(),
    }
}

async fn sim_stats(State(sim): State<Arc<Sim>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if let Err(r) = loopback(&peer) {
        return *r;
    }
    let st = sim.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let guests = sim.world.lock().unwrap_or_else(|e| e.into_inner()).cluster.guests.len();
    Json(json!({"total": sim.requests.load(Ordering::Relaxed), "by_endpoint": st,
                "rss_bytes": rss_bytes(), "guests": guests}))
    .into_response()
}

async fn sim_clock(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    body: Bytes,
) -> Response {
    if let Err(r) = loopback(&peer) {
        return *r;
    }
    if method == Method::POST {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let advance = v.get("advance").and_then(Value::as_f64);
        let rate = match (v.get("rate").and_then(Value::as_f64), v.get("mode").and_then(Value::as_str)) {
            (Some(r), _) => Some(r),
            (None, Some("real")) => Some(1.0),
            (None, Some("stepped")) => Some(0.0),
            (None, Some(_)) => {
                return (StatusCode::BAD_REQUEST, "mode must be real or stepped (or give rate)")
                    .into_response()
            }
            (None, None) => None,
        };
        if advance.is_none() && rate.is_none() {
            return (StatusCode::BAD_REQUEST, "body must be {\"advance\": <seconds>} and/or {\"rate\": <x>} / {\"mode\": \"real\"|\"stepped\"}").into_response();
        }
        if let Some(r) = rate {
            if !(r.is_finite() && (0.0..=1_000_000.0).contains(&r)) {
                return (StatusCode::BAD_REQUEST, "rate must be 0..1000000").into_response();
            }
            set_clock_rate(&sim, r);
        }
        if let Some(secs) = advance {
            if !(0.0..=10.0 * 366.0 * 86400.0).contains(&secs) {
                return (StatusCode::BAD_REQUEST, "advance must be 0..10 years in seconds").into_response();
            }
            advance_clock(&sim, secs);
        }
    }
    let (w, now) = sim.lock();
    Json(json!({"now": now, "offset": w.clock_offset, "time_scale": sim.time_scale,
                "rate": w.clock.rate, "mode": w.clock.mode(), "task_divisor": sim.task_divisor(&w)}))
    .into_response()
}

/// Sets the simulated clock's rate (1 real time, > 1 faster, 0 stepped) without a jump.
pub fn set_clock_rate(sim: &Sim, rate: f64) {
    let (mut w, _) = sim.lock();
    w.clock.set_rate(rate.max(0.0), wall());
}

pub fn advance_clock(sim: &Sim, secs: f64) {
    {
        let mut w = sim.world.lock().unwrap_or_else(|e| e.into_inner());
        w.clock_offset += secs.max(0.0);
    }
    // let tasks due by now finish (and the load follow) right away
    drop(sim.lock());
}

/// Resident set size of this process in bytes (`VmRSS` in /proc/self/status), if readable.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn sim_maintenance(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    body: Bytes,
) -> Response {
    if let Err(r) = loopback(&peer) {
        return *r;
    }
    let mut moves = Value::Null;
    if method == Method::POST {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (Some(node), Some(enable)) =
            (v.get("node").and_then(Value::as_str), v.get("enable").and_then(Value::as_bool))
        else {
            return (StatusCode::BAD_REQUEST, "body must be {\"node\": \"<node>\", \"enable\": true|false}")
                .into_response();
        };
        match set_ha_maintenance(&sim, node, enable) {
            Ok(m) => moves = json!(m),
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    } else if method != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET or POST").into_response();
    }
    let (w, _) = sim.lock();
    let nodes: BTreeMap<&str, bool> =
        w.cluster.nodes.iter().map(|(n, s)| (n.as_str(), s.maintenance)).collect();
    Json(json!({"maintenance": nodes, "moves": moves})).into_response()
}

/// Enables/disables HA maintenance of a node; returns the CRM moves started.
pub fn set_ha_maintenance(
    sim: &Sim,
    node: &str,
    enable: bool,
) -> Result<Vec<crate::maintenance::CrmMove>, String> {
    let (mut w, now) = sim.lock();
    let div = sim.task_divisor(&w);
    w.cluster.set_ha_maintenance(node, enable, now, div)
}

async fn sim_faults(
    State(sim): State<Arc<Sim>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    body: Bytes,
) -> Response {
    if let Err(r) = loopback(&peer) {
        return *r;
    }
    let (mut w, now) = sim.lock();
    match method {
        Method::POST => {
            let f: FaultSpec = match serde_json::from_slice(&body) {
                Ok(f) => f,
                Err(e) => return (StatusCode::BAD_REQUEST, format!("bad fault: {e}")).into_response(),
            };
            let World { cluster, faults, .. } = &mut *w;
            if let Err(e) = faults.arm(&f, cluster, now.floor() as i64) {
                return (StatusCode::BAD_REQUEST, e).into_response();
            }
        }
        Method::DELETE => w.faults.clear(),
        _ => {}
    }
    Json(w.faults.summary()).into_response()
}

async fn sim_state(State(sim): State<Arc<Sim>>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if let Err(r) = loopback(&peer) {
        return *r;
    }
    let (w, _) = sim.lock();
    Json(state_summary(&w.cluster)).into_response()
}

/// Placement and usage overview (`GET /_sim/state`).
pub fn state_summary(c: &Cluster) -> Value {
    let usage = c.usage_map();
    let nodes: BTreeMap<&str, Value> = c
        .nodes
        .iter()
        .map(|(n, node)| {
            let u = usage[n];
            (
                n.as_str(),
                json!({"online": node.online, "cpu": u.cpu, "mem": u.mem, "maxmem": u.maxmem,
                       "mem_ratio": u.mem as f64 / u.maxmem.max(1) as f64}),
            )
        })
        .collect();
    let guests: BTreeMap<String, Value> = c
        .guests
        .iter()
        .map(|(id, g)| {
            (
                id.to_string(),
                json!({"node": g.node, "status": g.status.as_str(), "lock": g.lock,
                                     "migrating_to": g.migration.as_ref().map(|m| m.target.clone())}),
            )
        })
        .collect();
    json!({"nodes": nodes, "guests": guests, "running_tasks": c.tasks.running().count()})
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/_sim/invariants", get(sim_invariants))
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/clock", any(sim_clock))
        .route("/_sim/faults", any(sim_faults))
        .route("/_sim/state", get(sim_state))
        .route("/_sim/ha-maintenance", any(sim_maintenance))
        .fallback(api_handler)
        .with_state(sim)
}
