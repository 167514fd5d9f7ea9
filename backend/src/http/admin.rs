//! Administration routes: cluster-wide settings, the audit history, Prometheus metrics.
//!
//! - `GET /api/v1/settings` → `SettingsView` (`Sys.Audit` on `/`); `writable` says whether the
//!   caller holds `Sys.Modify` on `/`.
//! - `PUT /api/v1/settings` `{field: value, …}` (absent fields keep their value) → `SettingsView`
//!   (`Sys.Modify` on `/`). Bad input: 400 naming the field, nothing written. The change is
//!   recorded in the audit log with the old → new values.
//! - `DELETE /api/v1/settings/{field}` → `SettingsView`: the stored value of one field is
//!   removed, so the file's value or the default applies again (`Sys.Modify` on `/`; audited).
//! - `GET /api/v1/history?limit=&user=&action=` → `[AuditEntry]`, newest first (`Sys.Audit`).
//! - `GET /metrics` → Prometheus text (`Sys.Audit`; scrapers send an API token).

use super::error::HttpError;
use super::extract::{Body, PathParam, QueryParams};
use crate::app::AppState;
use crate::auth::User;
use crate::execute::AuditFilter;
use crate::unix_now;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use shared::api::ApiError;
use shared::api::{AuditEntry, SettingsView};
use shared::policy::PolicyLayer;
use std::time::Instant;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The administration routes (authenticated).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(reset_setting))
        .routes(routes!(history))
        .routes(routes!(metrics))
}

/// The settings in force (file < stored), their sources, and who stored them last.
async fn view(state: &AppState, user: &User) -> Result<SettingsView, HttpError> {
    let policy = state.policy.clone();
    let (view, stored) = tokio::task::spawn_blocking(move || {
        let stored = policy.stored()?;
        Ok::<_, crate::settings::SettingsFailure>((policy.view_of(&stored, &PolicyLayer::default())?, stored))
    })
    .await
    .map_err(|e| HttpError::internal("internal error", e))??;
    let writable = user.permissions.has("/", "Sys.Modify");
    Ok(SettingsView {
        settings: view.settings,
        sources: view.sources,
        writable,
        missing_privilege: (!writable).then(|| "Sys.Modify on /".to_owned()),
        updated_by: stored.updated_by,
        updated_at: stored.updated_at,
    })
}

#[utoipa::path(get, path = "/api/v1/settings", responses(
    (status = 200, body = SettingsView),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
))]
async fn get_settings(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<SettingsView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    Ok(Json(view(&state, &user).await?))
}

/// `PUT /api/v1/settings` `PolicyLayer`: the fields given are stored (over the file's values);
/// a bad or unknown field is refused by name and nothing is written.
#[utoipa::path(put, path = "/api/v1/settings",
    request_body(content = shared::policy::PolicyLayer, description = "the settings to store; the others keep their value"),
    responses(
    (status = 200, body = SettingsView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 500, body = ApiError),
))]
async fn put_settings(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(changes): Body<PolicyLayer>,
) -> Result<Json<SettingsView>, HttpError> {
    user.require("/", "Sys.Modify")?;
    let (policy, who) = (state.policy.clone(), user.userid.clone());
    let (old, _) = tokio::task::spawn_blocking(move || policy.store(&changes, &who, unix_now()))
        .await
        .map_err(|e| HttpError::internal("internal error", e))??;
    audited_view(&state, &user, &old, "settings.update", "").await
}

/// The settings after a write, with the write in the audit log as `old → new` per field.
async fn audited_view(
    state: &AppState,
    user: &User,
    old: &shared::api::Settings,
    action: &str,
    what: &str,
) -> Result<Json<SettingsView>, HttpError> {
    let new = view(state, user).await?;
    let diff = crate::settings::diff(old, &new.settings);
    let detail = format!("{what}{}", if diff.is_empty() { "no change" } else { &diff });
    state.audit(&user.userid, action, "settings", &detail, None);
    Ok(Json(new))
}

/// `DELETE /api/v1/settings/{field}`: forget the stored value of one field (PVE's `delete`
/// of a set option); an unknown field is refused by name with the closest known one.
#[utoipa::path(delete, path = "/api/v1/settings/{field}",
    params(("field" = String, Path, description = "a settings field, e.g. `min_gain`")),
    responses(
    (status = 200, body = SettingsView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 500, body = ApiError),
))]
async fn reset_setting(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(field): PathParam<String>,
) -> Result<Json<SettingsView>, HttpError> {
    user.require("/", "Sys.Modify")?;
    let Some(field) = PolicyLayer::FIELDS.iter().copied().find(|f| *f == field) else {
        let hint = crate::config::schema::closest(&field, PolicyLayer::FIELDS.iter().copied())
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        return Err(HttpError::bad_input(Some("field"), format!("`{field}` is not a settings field{hint}")));
    };
    let (policy, who) = (state.policy.clone(), user.userid.clone());
    let old = tokio::task::spawn_blocking(move || policy.reset(field, &who, unix_now()))
        .await
        .map_err(|e| HttpError::internal("internal error", e))??;
    let what = format!("{field} reset to the file's value or the default: ");
    audited_view(&state, &user, &old, "settings.reset", &what).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
    user: Option<String>,
    action: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/history", params(
        ("limit" = Option<usize>, Query, description = "1–1000, default 100"),
        ("user" = Option<String>, Query, description = "only this user's entries"),
        ("action" = Option<String>, Query, description = "only this action (plan.execute, job.cancel, …)"),
    ),
    responses(
    (status = 200, body = Vec<AuditEntry>),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
async fn history(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> Result<Json<Vec<AuditEntry>>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(HttpError::bad_input(Some("limit"), format!("{limit} is outside 1–1000")));
    }
    let Some(ex) = &state.jobs else {
        return Err(HttpError::unavailable(
            "the history is not available",
            "this service runs without a journal (see its log)",
        ));
    };
    let filter =
        AuditFilter { user: q.user.filter(|u| !u.is_empty()), action: q.action.filter(|a| !a.is_empty()) };
    Ok(Json(ex.journal().audit(limit, &filter)?))
}

#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError),
))]
async fn metrics(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, HttpError> {
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
