//! The JSON API under `/api/v1` (and the panel's static files when serving standalone).
//!
//! Handlers are thin: parse and validate, call `collect` / `shared`, answer. Every error is an
//! `ApiError` body `{error, detail, field?}` with a fitting status; bad input changes nothing.

use crate::auth::{require_user, AuthError, Authenticator, User};
use crate::collect;
use crate::pve::{PveClient, PveError};
use crate::unix_now;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use shared::api::{ApiError, ClusterView};
use shared::{ClusterSnapshot, Plan, PlanRequest};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    /// The service's own PVE session (collection, execution).
    pub pve: Arc<PveClient>,
    /// Checks callers' own PVE credentials.
    pub auth: Arc<Authenticator>,
    /// Runs plans; `None` disables the job routes (503). See `http_jobs`.
    pub jobs: Option<Arc<crate::execute::Executor>>,
    /// Cluster-wide maintenance marks (see `maintenance`, `http_maint`).
    pub maintenance: Arc<crate::maintenance::Maintenance>,
    /// Cluster-wide settings (see `settings`, `http_admin`).
    pub admin: Arc<crate::http_admin::Admin>,
    /// The usage history (see `sampler`, `http_history`); `None`: history routes answer 503.
    pub sampler: Option<Arc<crate::sampler::Sampler>>,
    /// Shared snapshot for `GET /api/v1/cluster` (see `snapshot_cache`); no sharing by default.
    pub snapshots: Arc<crate::snapshot_cache::SnapshotCache>,
    /// The configuration's plan request; `GET /api/v1/cluster` reports its memory reserve per
    /// node (the panel draws it and plans with it). Defaults: no reserve.
    pub plan_defaults: Arc<shared::PlanRequest>,
}

impl AppState {
    pub fn new(pve: Arc<PveClient>) -> AppState {
        AppState {
            auth: Arc::new(Authenticator::new(pve.clone())),
            pve,
            jobs: None,
            maintenance: Default::default(),
            admin: Default::default(),
            sampler: None,
            snapshots: Default::default(),
            plan_defaults: Default::default(),
        }
    }

    /// The configuration's plan request (`proxlb.yaml`), for the reserve `GET /api/v1/cluster`
    /// reports.
    pub fn with_plan_defaults(mut self, request: shared::PlanRequest) -> AppState {
        self.plan_defaults = Arc::new(request);
        self
    }

    /// CSRF tokens of ticket writes checked with the key file at `path` (default: PVE's
    /// `/etc/pve/priv/pve-www.key`; tests give the simulator's).
    pub fn with_csrf_key(mut self, path: impl Into<PathBuf>) -> AppState {
        self.auth = Arc::new(Authenticator::new(self.pve.clone()).with_csrf_key(path));
        self
    }

    /// `GET /api/v1/cluster` answers from a snapshot at most `ttl` old (one collection per `ttl`).
    pub fn with_cluster_cache(mut self, ttl: std::time::Duration) -> AppState {
        self.snapshots = Arc::new(crate::snapshot_cache::SnapshotCache::new(ttl));
        self
    }
}

/// Routes anyone may call: health, and login/logout for the standalone panel.
fn public_routes() -> Router<AppState> {
    let routes = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout));
    crate::proxbalance::add_public_routes(routes)
}

/// Routes that need valid PVE credentials; each handler checks its privileges on top.
fn protected_routes() -> Router<AppState> {
    let routes = Router::new().route("/api/v1/cluster", get(cluster)).route("/api/v1/plan", post(plan));
    let routes = routes.route("/api/v1/openapi.json", get(crate::openapi::serve));
    let routes = crate::http_maint::add_routes(routes);
    let routes = crate::http_history::add_routes(routes);
    let routes = crate::proxbalance::add_routes(crate::http_admin::add_routes(routes));
    crate::http_jobs::add_routes(routes)
}

/// The service's router. `panel_dir`, when given, is served at `/` (the standalone panel).
pub fn router(state: AppState, panel_dir: Option<PathBuf>) -> Router {
    let protected = protected_routes()
        .route_layer(axum::middleware::from_fn_with_state(state.auth.clone(), require_user));
    let api = public_routes().merge(protected).with_state(state);
    let api = match panel_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => api,
    };
    api.layer(pve_ui_cors()).layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Inside the PVE UI the panel calls us from the UI's origin (`https://<node>:8006`) with the
/// user's cookie: allow exactly such origins, with credentials; no other origin gets CORS.
fn pve_ui_cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|origin: &HeaderValue, _| is_pve_ui_origin(origin)))
        .allow_credentials(true)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            axum::http::HeaderName::from_static("csrfpreventiontoken"),
        ])
}

fn is_pve_ui_origin(origin: &HeaderValue) -> bool {
    origin.to_str().ok().and_then(|o| o.strip_prefix("https://")).is_some_and(|host| {
        host.strip_suffix(":8006").is_some_and(|h| !h.is_empty() && !h.contains(['/', '@', ' ']))
    })
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(serde::Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// Standalone panel login: PVE checks the password and issues a ticket, which we hand to the
/// browser as PVE's own cookie (so the same ticket also works in the PVE UI, and vice versa).
async fn login(State(state): State<AppState>, body: Result<Json<Login>, JsonRejection>) -> Response {
    let Json(login) = match body {
        Ok(b) => b,
        Err(e) => return AppError::bad_input(None, e.body_text()).into_response(),
    };
    match state.pve.login_user(&login.username, &login.password).await {
        Ok(answer) => {
            let ticket = answer.get("ticket").and_then(|t| t.as_str()).unwrap_or_default();
            let cookie = format!(
                "PVEAuthCookie={}; Path=/; SameSite=Lax; HttpOnly",
                crate::pve::escape_cookie(ticket)
            );
            let body = serde_json::json!({
                "username": answer.get("username"),
                "CSRFPreventionToken": answer.get("CSRFPreventionToken"),
                "cap": answer.get("cap"),
            });
            let mut resp = Json(body).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(PveError::Api { status: 401, .. }) => {
            AuthError::Unauthenticated("PVE refused the user name or password".into()).into_response()
        }
        Err(e) => AppError::from(e).into_response(),
    }
}

async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("PVEAuthCookie=; Path=/; Max-Age=0; SameSite=Lax"),
    );
    resp
}

async fn cluster(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<ClusterView>, AppError> {
    user.require("/", "Sys.Audit")?;
    let mut snapshot = ClusterSnapshot::clone(&*state.snapshots.get(&state.pve, unix_now()).await?);
    // Nodes in our maintenance show as such (PVE HA maintenance is in the snapshot already).
    state.maintenance.apply_marks(&mut snapshot).map_err(PlanNowError::from)?;
    Ok(Json(ClusterView::of(snapshot).with_memory_reserve(&state.plan_defaults)))
}

async fn plan(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    body: Result<Json<PlanRequest>, JsonRejection>,
) -> Result<Json<Plan>, AppError> {
    user.require("/", "Sys.Audit")?;
    let Json(request) = body.map_err(|e| AppError::bad_input(None, e.body_text()))?;
    validate(&request)?;
    Ok(Json(state.plan_now(&request, unix_now()).await?))
}

/// Why [`AppState::plan_now`] made no plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanNowError {
    #[error("{0}")]
    Pve(#[from] PveError),
    #[error("the maintenance state failed: {0}")]
    Maintenance(#[from] crate::maintenance::MaintError),
}

impl From<PlanNowError> for AppError {
    fn from(e: PlanNowError) -> AppError {
        match e {
            PlanNowError::Pve(e) => e.into(),
            PlanNowError::Maintenance(e) => AppError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: ApiError {
                    error: "the maintenance state failed".into(),
                    detail: e.to_string(),
                    field: None,
                },
            },
        }
    }
}

impl AppState {
    /// A balance plan on a fresh snapshot, as every service path makes one (`/plan`, the
    /// scheduler): recent migrations for the cooldown rules, our own usage samples for the
    /// percentile mode (not per-guest RRD calls), our maintenance marks (PVE HA maintenance is in
    /// the snapshot already), and PVE's migrate check.
    pub async fn plan_now(&self, request: &PlanRequest, now: u64) -> Result<Plan, PlanNowError> {
        let mut snapshot = collect::snapshot(&self.pve, now).await?;
        crate::recent::fill(&self.pve, &mut snapshot, request.cooldown_secs.max(request.no_return_secs))
            .await;
        if let Some(sampler) = &self.sampler {
            sampler.fill_percentiles(&mut snapshot);
        }
        self.maintenance.apply_marks(&mut snapshot)?;
        Ok(crate::preflight::plan(&self.pve, &mut snapshot, |s| shared::planner::plan(s, request)).await)
    }
}

fn validate(r: &PlanRequest) -> Result<(), AppError> {
    if !(0.0..=100.0).contains(&r.balanciness) {
        return Err(AppError::bad_input(
            Some("balanciness"),
            format!("{} is outside 0–100 (percentage points of max − min node usage)", r.balanciness),
        ));
    }
    if !(0.0..=100.0).contains(&r.min_gain) {
        return Err(AppError::bad_input(Some("min_gain"), format!("{} is outside 0–100 points", r.min_gain)));
    }
    if r.max_moves > 10_000 {
        return Err(AppError::bad_input(
            Some("max_moves"),
            format!("{} is above the limit of 10000", r.max_moves),
        ));
    }
    Ok(())
}

#[derive(Debug)]
pub struct AppError {
    pub(crate) status: StatusCode,
    pub(crate) body: ApiError,
}

impl AppError {
    fn bad_input(field: Option<&str>, detail: String) -> AppError {
        AppError {
            status: StatusCode::BAD_REQUEST,
            body: ApiError { error: "invalid request".into(), detail, field: field.map(str::to_owned) },
        }
    }
}

impl From<PveError> for AppError {
    fn from(e: PveError) -> AppError {
        tracing::warn!(error = %e, "PVE call failed");
        // The PVE API is our upstream: its failures are a bad gateway, with PVE's own words.
        AppError {
            status: StatusCode::BAD_GATEWAY,
            body: ApiError { error: "the PVE API call failed".into(), detail: e.to_string(), field: None },
        }
    }
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> AppError {
        let (status, body) = e.parts();
        AppError { status, body }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
