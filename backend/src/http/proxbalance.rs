//! ProxBalance-compatible aliases, so scripts written against ProxBalance's Flask API keep working.
//!
//! Same auth as `/api/v1` (PVE ticket + CSRF on writes, or an API token); ProxBalance itself has
//! no per-user checks, we keep ours. Answers follow ProxBalance's `{"success": true, …}` envelope
//! (errors stay our `ApiError` with the right status). The fields inside are ours and are listed
//! in `docs/API.md` (ProxBalance's own shapes are not published as a schema).
//!
//! - `GET /api/health` (public) → `{"status":"ok","version"}`.
//! - `GET /api/analyze` → `{"success":true,"data": ClusterView}` (a fresh collection).
//! - `GET /api/recommendations` → `{"success":true,"recommendations":[{vmid,name,type,
//!   source_node,target_node,reason}],"count","spread_before","spread_after","plan": Plan}`,
//!   planned with the cluster-wide settings (`/api/v1/settings`).
//! - `POST /api/refresh` → `{"success":true,"collected_at","nodes","guests"}`.
//! - `POST /api/migrate` `{"vmid", "target_node", "source_node"?}` → 202
//!   `{"success":true,"job_id"}`; needs `VM.Migrate` on `/vms/{vmid}`; planned so rules and
//!   capacity hold, else 409 with the planner's reason.

use super::error::HttpError;
use super::extract::Body;
use super::openapi::{Health, PbMigrate};
use crate::app::AppState;
use crate::auth::User;
use crate::unix_now;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use shared::api::ApiError;
use shared::api::ClusterView;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The public alias (health).
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// The authenticated aliases.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(analyze))
        .routes(routes!(recommendations))
        .routes(routes!(refresh))
        .routes(routes!(migrate))
}

#[utoipa::path(get, path = "/api/health", security(()), responses((status = 200, body = Health)))]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[utoipa::path(get, path = "/api/analyze", responses(
    (status = 200, description = "`{success: true, data: ClusterView}`", body = Object),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 502, body = ApiError),
))]
async fn analyze(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<Value>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    Ok(Json(json!({ "success": true, "data": ClusterView::of(snapshot) })))
}

#[utoipa::path(get, path = "/api/recommendations", responses(
    (status = 200, description = "`{success, count, recommendations: [{vmid, name, type, source_node, target_node, reason}], spread_before, spread_after, plan}`", body = Object),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError),
))]
async fn recommendations(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<Value>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let request = state.plan_request().await?;
    // The same plan the panel's Balance shows (cooldowns, maintenance marks, migrate check).
    let plan = state.plan_now(&request, unix_now()).await?;
    let recs: Vec<Value> = plan
        .steps
        .iter()
        .map(|s| {
            json!({
                "vmid": s.vmid,
                "name": s.name,
                "type": s.kind,
                "source_node": s.from,
                "target_node": s.to,
                "reason": s.reason,
            })
        })
        .collect();
    Ok(Json(json!({
        "success": true,
        "count": recs.len(),
        "recommendations": recs,
        "spread_before": plan.spread_before,
        "spread_after": plan.spread_after,
        "plan": plan,
    })))
}

#[utoipa::path(post, path = "/api/refresh", responses(
    (status = 200, description = "`{success, collected_at, nodes, guests}`", body = Object),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 502, body = ApiError),
))]
async fn refresh(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<Value>, HttpError> {
    user.require("/", "Sys.Audit")?;
    // We keep no cache to refresh: every answer is collected fresh, so this just collects.
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    Ok(Json(json!({
        "success": true,
        "collected_at": snapshot.collected_at,
        "nodes": snapshot.nodes.len(),
        "guests": snapshot.guests.len(),
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    vmid: u32,
    target_node: String,
    #[serde(default)]
    source_node: Option<String>,
}

#[utoipa::path(post, path = "/api/migrate", request_body = PbMigrate, responses(
    (status = 202, description = "`{success: true, job_id}`", body = Object),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 409, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
    (status = 503, body = ApiError),
))]
async fn migrate(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(b): Body<MigrateBody>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    user.require(&format!("/vms/{}", b.vmid), "VM.Migrate")?;
    let Some(ex) = state.jobs.clone() else {
        return Err(HttpError::no_executor());
    };
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    let Some(guest) = snapshot.guests.iter().find(|g| g.vmid == b.vmid) else {
        return Err(HttpError::bad_input(Some("vmid"), format!("guest {} is not in the cluster", b.vmid)));
    };
    if snapshot.node(&b.target_node).is_none() {
        return Err(HttpError::bad_input(
            Some("target_node"),
            format!("node `{}` is not in the cluster", b.target_node),
        ));
    }
    if let Some(src) = b.source_node.as_deref().filter(|s| *s != guest.node) {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "the guest is elsewhere",
            format!("guest {} runs on {}, not {src}", b.vmid, guest.node),
            Some("source_node"),
        ));
    }
    if guest.node == b.target_node {
        return Err(HttpError::bad_input(
            Some("target_node"),
            format!("guest {} already runs on {}", b.vmid, b.target_node),
        ));
    }
    // Planned as a "return home" to the target so capacity and hard rules are checked exactly as
    // for any other move, instead of sending PVE a migration our planner would refuse.
    let request = state.plan_request().await?;
    let home = shared::evacuate::GuestHome { vmid: b.vmid, node: b.target_node.clone() };
    let plan = shared::evacuate::return_home(&snapshot, &[home], &request);
    if plan.steps.iter().all(|s| s.vmid != b.vmid) {
        let why = plan
            .why_not
            .iter()
            .find(|w| w.vmid == b.vmid)
            .map(|w| w.reason.clone())
            .or_else(|| plan.notes.first().cloned())
            .unwrap_or_else(|| "the planner found no valid move".into());
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "the move is not possible",
            why,
            Some("target_node"),
        ));
    }
    let job_id = ex.start(&plan, None, &user.userid)?;
    let detail = format!("1 step: {} {} → {} (ProxBalance /api/migrate)", b.vmid, guest.node, b.target_node);
    state.audit(&user.userid, "plan.execute", &format!("job/{job_id}"), &detail, Some(job_id));
    Ok((StatusCode::ACCEPTED, Json(json!({ "success": true, "job_id": job_id }))))
}
