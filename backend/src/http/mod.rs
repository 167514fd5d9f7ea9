//! The JSON API under `/api/v1` (and the panel's static files when serving standalone).
//!
//! The API tree mirrors the URL: one module per subtree (`admin`: settings, history, metrics;
//! `jobs`: execution; `maint`: maintenance and best node; `history`: usage samples;
//! `proxbalance`: the aliases). Handlers are thin: extract (`extract`: strict bodies, one 400),
//! check the privilege, call `app`, answer; every failure is an [`error::HttpError`].
//!
//! Layer rule: `http` uses `app` and the services below it, never the CLI modules.

pub mod admin;
pub mod cors;
pub mod error;
pub mod extract;
pub mod history;
pub mod jobs;
pub mod maint;
pub mod openapi;
pub mod proxbalance;
pub mod serve;

pub use crate::app::AppState;
pub use error::HttpError;

use crate::auth::{require_user, AuthError, User};
use crate::pve::PveError;
use crate::unix_now;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use extract::Body;
use shared::api::ClusterView;
use shared::policy::{PolicyLayer, PolicyView};
use shared::{ClusterSnapshot, Plan};
use std::path::PathBuf;

/// Routes anyone may call: health, and login/logout for the standalone panel.
fn public_routes() -> Router<AppState> {
    let routes = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout));
    proxbalance::add_public_routes(routes)
}

/// Routes that need valid PVE credentials; each handler checks its privileges on top.
fn protected_routes() -> Router<AppState> {
    let routes = Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/plan", post(plan))
        .route("/api/v1/policy", get(policy));
    let routes = routes.route("/api/v1/openapi.json", get(openapi::serve));
    let routes = maint::add_routes(routes);
    let routes = history::add_routes(routes);
    let routes = proxbalance::add_routes(admin::add_routes(routes));
    jobs::add_routes(routes)
}

/// The service's router. `panel_dir`, when given, is served at `/` (the standalone panel).
pub fn router(state: AppState, panel_dir: Option<PathBuf>) -> Router {
    let protected = protected_routes()
        .route_layer(axum::middleware::from_fn_with_state(state.auth.clone(), require_user));
    let cors = cors::layer(state.origins.clone());
    let api = public_routes().merge(protected).with_state(state);
    let api = match panel_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => api,
    };
    api.layer(cors).layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

/// Standalone panel login: PVE checks the password and issues a ticket, which we hand to the
/// browser as PVE's own cookie (so the same ticket also works in the PVE UI, and vice versa).
async fn login(State(state): State<AppState>, Body(login): Body<Login>) -> Response {
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
        Err(e) => HttpError::from(e).into_response(),
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
) -> Result<Json<ClusterView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let mut snapshot = ClusterSnapshot::clone(&*state.snapshots.get(&state.pve, unix_now()).await?);
    // Nodes in our maintenance show as such (PVE HA maintenance is in the snapshot already).
    state.maintenance.apply_marks(&mut snapshot)?;
    let request = state.plan_request().await?;
    Ok(Json(ClusterView::of(snapshot).with_memory_reserve(&request)))
}

/// `POST /api/v1/plan` `PolicyLayer`: a plan with the policy in force and these overrides.
async fn plan(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(overrides): Body<PolicyLayer>,
) -> Result<Json<Plan>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let policy = state.policy_with(overrides).await?;
    Ok(Json(state.plan_now(&policy.request, unix_now()).await?))
}

/// `GET /api/v1/policy`: the policy in force, each value's source, and the engine request it
/// makes; the panel's what-if plans in the browser with exactly this.
async fn policy(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<PolicyView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    Ok(Json(state.policy_with(PolicyLayer::default()).await?))
}
