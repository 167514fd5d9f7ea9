//! Administration routes: cluster-wide settings, the audit history, Prometheus metrics.
//!
//! - `GET /api/v1/settings` → `SettingsView` (`Sys.Audit` on `/`); `writable` says whether the
//!   caller holds `Sys.Modify` on `/`.
//! - `PUT /api/v1/settings` `{field: value, …}` (absent fields keep their value) → `SettingsView`
//!   (`Sys.Modify` on `/`). Bad input: 400 naming the field, nothing written. The change is
//!   recorded in the audit log with the old → new values.
//! - `GET /api/v1/history?limit=&user=&action=` → `[AuditEntry]`, newest first (`Sys.Audit`).
//! - `GET /metrics` → Prometheus text (`Sys.Audit`; scrapers send an API token).

use crate::auth::{AuthError, User};
use crate::execute::{AuditFilter, AuditRecord, JournalError};
use crate::http::AppState;
use crate::settings::{SettingsStore, SettingsStoreError};
use crate::unix_now;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use shared::api::{ApiError, AuditEntry, Settings, SettingsView};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The administration state the routes share (one per service).
pub struct Admin {
    pub settings: SettingsStore,
}

impl Admin {
    pub fn new(state_dir: &Path, base: Settings) -> Admin {
        Admin { settings: SettingsStore::new(state_dir, base) }
    }
}

impl Default for Admin {
    fn default() -> Self {
        Admin::new(Path::new(crate::settings::DEFAULT_STATE_DIR), Settings::default())
    }
}

impl AppState {
    /// Uses this settings store (state directory and configuration-file values).
    pub fn with_admin(mut self, admin: Admin) -> AppState {
        self.admin = Arc::new(admin);
        self
    }
}

/// Adds the administration routes (to the authenticated part of the router).
pub fn add_routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/v1/settings", get(get_settings).put(put_settings))
        .route("/api/v1/history", get(history))
        .route("/metrics", get(metrics))
}

#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    body: ApiError,
}

impl AdminError {
    pub(crate) fn new(
        status: StatusCode,
        error: &str,
        detail: impl Into<String>,
        field: Option<&str>,
    ) -> Self {
        AdminError {
            status,
            body: ApiError { error: error.into(), detail: detail.into(), field: field.map(str::to_owned) },
        }
    }

    pub(crate) fn bad_input(field: Option<&str>, detail: impl Into<String>) -> Self {
        AdminError::new(StatusCode::BAD_REQUEST, "invalid request", detail, field)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Failures the service API maps already (PVE, auth, planning) mean the same here: one mapping.
impl From<crate::http::AppError> for AdminError {
    fn from(e: crate::http::AppError) -> Self {
        AdminError { status: e.status, body: e.body }
    }
}

impl From<AuthError> for AdminError {
    fn from(e: AuthError) -> Self {
        crate::http::AppError::from(e).into()
    }
}

impl From<JournalError> for AdminError {
    fn from(e: JournalError) -> Self {
        tracing::error!(error = %e, "journal failed");
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "the journal failed", e.to_string(), None)
    }
}

impl From<SettingsStoreError> for AdminError {
    fn from(e: SettingsStoreError) -> Self {
        match e {
            SettingsStoreError::Invalid(i) => AdminError::bad_input(Some(i.field), i.detail),
            other => {
                tracing::error!(error = %other, "settings store failed");
                AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the settings store failed",
                    other.to_string(),
                    None,
                )
            }
        }
    }
}

impl From<crate::pve::PveError> for AdminError {
    fn from(e: crate::pve::PveError) -> Self {
        crate::http::AppError::from(e).into()
    }
}

impl From<crate::http::PlanNowError> for AdminError {
    fn from(e: crate::http::PlanNowError) -> Self {
        crate::http::AppError::from(e).into()
    }
}

/// Records one write in the audit log, when there is a journal. A failed audit write is logged
/// and does not undo the write it describes (that already happened).
pub fn record(state: &AppState, user: &str, action: &str, target: &str, detail: &str, job_id: Option<u64>) {
    let Some(ex) = &state.jobs else {
        tracing::warn!(%user, %action, %target, "no journal: audit entry not recorded");
        return;
    };
    let rec = AuditRecord { user, action, target, detail, job_id };
    if let Err(e) = ex.journal().record_audit(unix_now(), &rec) {
        tracing::error!(error = %e, %user, %action, "audit write failed");
    }
}

fn view(user: &User, stored: crate::settings::Stored) -> SettingsView {
    let writable = user.permissions.has("/", "Sys.Modify");
    SettingsView {
        settings: stored.settings,
        writable,
        missing_privilege: (!writable).then(|| "Sys.Modify on /".to_owned()),
        updated_by: stored.updated_by,
        updated_at: stored.updated_at,
    }
}

async fn get_settings(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<SettingsView>, AdminError> {
    user.require("/", "Sys.Audit")?;
    let admin = state.admin.clone();
    let stored = tokio::task::spawn_blocking(move || admin.settings.load()).await.map_err(|e| {
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string(), None)
    })??;
    Ok(Json(view(&user, stored)))
}

async fn put_settings(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<SettingsView>, AdminError> {
    user.require("/", "Sys.Modify")?;
    let Json(changes) = body.map_err(|e| AdminError::bad_input(Some("settings"), e.body_text()))?;
    let admin = state.admin.clone();
    let who = user.userid.clone();
    let (old, new) = tokio::task::spawn_blocking(move || admin.settings.update(&changes, &who, unix_now()))
        .await
        .map_err(|e| {
            AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", e.to_string(), None)
        })??;
    let diff = crate::settings::diff(&old, &new.settings);
    let detail = if diff.is_empty() { "no change".to_owned() } else { diff };
    record(&state, &user.userid, "settings.update", "settings", &detail, None);
    Ok(Json(view(&user, new)))
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
    user: Option<String>,
    action: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, AdminError> {
    user.require("/", "Sys.Audit")?;
    let Query(q) = query.map_err(|e| AdminError::bad_input(Some("limit"), e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::bad_input(Some("limit"), format!("{limit} is outside 1–1000")));
    }
    let Some(ex) = &state.jobs else {
        return Err(AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the history is not available",
            "this service runs without a journal (see its log)",
            None,
        ));
    };
    let filter =
        AuditFilter { user: q.user.filter(|u| !u.is_empty()), action: q.action.filter(|a| !a.is_empty()) };
    Ok(Json(ex.journal().audit(limit, &filter)?))
}

async fn metrics(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, AdminError> {
    user.require("/", "Sys.Audit")?;
    let started = Instant::now();
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    let collection_seconds = started.elapsed().as_secs_f64();
    let (jobs, steps) = match &state.jobs {
        Some(ex) => ex.journal().totals()?,
        None => (vec![], vec![]),
    };
    let extra = crate::metrics::Extra {
        jobs,
        steps,
        collection_seconds,
        executor: state.jobs.is_some(),
        pve_calls: state.pve.call_counts(),
    };
    let body = crate::metrics::render(&shared::api::ClusterView::of(snapshot), &extra);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}
