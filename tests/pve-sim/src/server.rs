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
        Sim {
            world: Mutex::new(World { cluster, faults: Faults::default(), clock_offset: 0.0 }),
            signer: Signer::new(),
            time_scale,
            fingerprint,
            requests: AtomicU64::new(0),
            stats: Mutex::new(BTreeMap::new()),
            schema,
        }
    }

    /// Locks the world and lets due tasks finish first. Returns the guard and the simulated time.
    pub fn lock(&self) -> (MutexGuard<'_, World>, f64) {
        let mut w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let now = wall() + w.clock_offset;
        let World { cluster, faults, .. } = &mut *w;
        cluster.advance(now, self.time_scale, faults);
        (w, now)
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
    api::render(fmt, res)
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
    let ident = api::authenticate(sim, &w, method, path, headers, now.floor() as i64)?;
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
            return api::access::login(sim, &w, &params, now.floor() as i64);
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
                time_scale: sim.time_scale,
                fingerprint: &sim.fingerprint,
            },
        );
    };
    if method == Method::POST && path == "/access/ticket" {
        return api::access::login(sim, &w, &params, now.floor() as i64);
    }
    let cx = Ctx {
        method,
        path,
        segs,
        params,
        ident,
        now,
        time_scale: sim.time_scale,
        fingerprint: &sim.fingerprint,
    };
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
    Json(json!({"total": sim.requests.load(Ordering::Relaxed), "by_endpoint": st})).into_response()
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
        let Some(secs) = v.get("advance").and_then(Value::as_f64) else {
            return (StatusCode::BAD_REQUEST, "body must be {\"advance\": <seconds>}").into_response();
        };
        advance_clock(&sim, secs);
    }
    let (w, now) = sim.lock();
    Json(json!({"now": now, "offset": w.clock_offset, "time_scale": sim.time_scale})).into_response()
}

pub fn advance_clock(sim: &Sim, secs: f64) {
    let mut w = sim.world.lock().unwrap_or_else(|e| e.into_inner());
    w.clock_offset += secs.max(0.0);
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
        .fallback(api_handler)
        .with_state(sim)
}
