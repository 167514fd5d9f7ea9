//! The JSON API under `/api/v1` (and the panel's static files when serving standalone).
//!
//! Handlers are thin: parse and validate, call `collect` / `shared`, answer. Every error is an
//! `ApiError` body `{error, detail, field?}` with a fitting status; bad input changes nothing.

use crate::collect;
use crate::pve::{PveClient, PveError};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use shared::api::{ApiError, ClusterView};
use shared::{Plan, PlanRequest};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct AppState {
    pub pve: Arc<PveClient>,
}

/// The service's router. `panel_dir`, when given, is served at `/` (the standalone panel).
pub fn router(state: AppState, panel_dir: Option<PathBuf>) -> Router {
    let api = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/plan", post(plan))
        .with_state(state);
    let api = match panel_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => api,
    };
    api.layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn cluster(State(state): State<AppState>) -> Result<Json<ClusterView>, AppError> {
    let snapshot = collect::snapshot(&state.pve, unix_now()).await?;
    Ok(Json(ClusterView::of(snapshot)))
}

async fn plan(
    State(state): State<AppState>,
    body: Result<Json<PlanRequest>, JsonRejection>,
) -> Result<Json<Plan>, AppError> {
    let Json(request) = body.map_err(|e| AppError::bad_input(None, e.body_text()))?;
    validate(&request)?;
    let snapshot = collect::snapshot(&state.pve, unix_now()).await?;
    Ok(Json(shared::planner::plan(&snapshot, &request)))
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

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    body: ApiError,
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

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
