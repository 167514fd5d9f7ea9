//! The maintenance and best-node routes (logic in `maintenance`, types in `shared::api`).
//!
//! - `GET /api/v1/maintenance` → `[NodeMaintenance]`, every node (`Sys.Audit` on `/`).
//! - `GET /api/v1/maintenance/{node}` → `NodeMaintenance` (`Sys.Audit` on `/`).
//! - `POST /api/v1/maintenance/{node}/enter` `MaintenanceRequest` → `MaintenanceAnswer`
//!   (`Sys.Modify` on `/nodes/{node}`, and `VM.Migrate` on every guest the plan moves unless
//!   `preview`); 202 when a job started, 200 otherwise.
//! - `POST /api/v1/maintenance/{node}/exit` `ExitRequest` → `MaintenanceAnswer` (same privileges).
//! - `POST /api/v1/best-node` `BestNodeRequest` → `BestNodeAnswer` (`Sys.Audit` on `/`).
//!
//! Unknown node 404 (`field: node`), already/not in maintenance or a job running 409, bad JSON
//! 400; errors change nothing.

use super::error::HttpError;
use super::extract::{Body, PathParam};
use crate::app::AppState;
use crate::auth::{AuthError, User};
use crate::maintenance::MaintError;
use crate::unix_now;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use shared::api::ApiError;
use shared::api::{
    BestNodeAnswer, BestNodeRequest, ExitRequest, MaintenanceAnswer, MaintenanceRequest, NodeMaintenance,
};
use shared::Plan;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The maintenance and best-node routes (authenticated).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(enter))
        .routes(routes!(exit))
        .routes(routes!(best_node))
}

#[utoipa::path(get, path = "/api/v1/maintenance", responses(
    (status = 200, body = Vec<NodeMaintenance>),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError),
))]
async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<Vec<NodeMaintenance>>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    Ok(Json(state.maintenance.status(&state.pve, &snapshot, state.jobs.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/maintenance/{node}", params(("node" = String, Path)), responses(
    (status = 200, body = NodeMaintenance),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
))]
async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(node): PathParam<String>,
) -> Result<Json<NodeMaintenance>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    let all = state.maintenance.status(&state.pve, &snapshot, state.jobs.as_deref()).await?;
    let found = all.into_iter().find(|m| m.node == node);
    Ok(Json(found.ok_or(MaintError::UnknownNode(node))?))
}

/// `VM.Migrate` on every guest the plan moves.
fn migrate_rights(user: &User) -> impl Fn(&Plan) -> Result<(), AuthError> + Sync + '_ {
    move |plan: &Plan| {
        for s in &plan.steps {
            user.require(&format!("/vms/{}", s.vmid), "VM.Migrate")?;
        }
        Ok(())
    }
}

fn caller<'a>(
    user: &'a User,
    rights: &'a (dyn Fn(&Plan) -> Result<(), AuthError> + Sync),
) -> crate::maintenance::Caller<'a> {
    crate::maintenance::Caller { userid: &user.userid, authorize: rights }
}

/// 202 when a job started, else 200; a change that is not a preview goes into the history as
/// `action` on `node/<node>`, `what` followed by the plan's step count.
fn answer(
    state: &AppState,
    user: &User,
    node: &str,
    (action, what): (&str, String),
    a: MaintenanceAnswer,
) -> (StatusCode, Json<MaintenanceAnswer>) {
    if !a.preview {
        let detail = format!("{what}{} steps", a.plan.steps.len());
        state.audit(&user.userid, action, &format!("node/{node}"), &detail, a.job_id);
    }
    let status = if a.job_id.is_some() { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, Json(a))
}

#[utoipa::path(post, path = "/api/v1/maintenance/{node}/enter", params(("node" = String, Path)),
    request_body = MaintenanceRequest, responses(
    (status = 200, body = MaintenanceAnswer, description = "preview, or nothing to move"),
    (status = 202, body = MaintenanceAnswer, description = "the evacuation job started"),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError), (status = 503, body = ApiError),
))]
async fn enter(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(node): PathParam<String>,
    Body(req): Body<MaintenanceRequest>,
) -> Result<(StatusCode, Json<MaintenanceAnswer>), HttpError> {
    user.require(&format!("/nodes/{node}"), "Sys.Modify")?;
    let rights = migrate_rights(&user);
    let a = state
        .maintenance
        .enter(
            &state.pve,
            state.jobs.as_ref(),
            &node,
            &req,
            &state.plan_request().await?,
            caller(&user, &rights),
        )
        .await?;
    let ha = if req.ha { "PVE HA maintenance, " } else { "" };
    Ok(answer(&state, &user, &node, ("maintenance.enter", format!("evacuation: {ha}")), a))
}

#[utoipa::path(post, path = "/api/v1/maintenance/{node}/exit", params(("node" = String, Path)),
    request_body = ExitRequest, responses(
    (status = 200, body = MaintenanceAnswer, description = "preview, or the mark is cleared"),
    (status = 202, body = MaintenanceAnswer, description = "the return-home job started"),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError), (status = 503, body = ApiError),
))]
async fn exit(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    PathParam(node): PathParam<String>,
    Body(req): Body<ExitRequest>,
) -> Result<(StatusCode, Json<MaintenanceAnswer>), HttpError> {
    user.require(&format!("/nodes/{node}"), "Sys.Modify")?;
    let rights = migrate_rights(&user);
    let a = state
        .maintenance
        .exit(
            &state.pve,
            state.jobs.as_ref(),
            &node,
            &req,
            &state.plan_request().await?,
            caller(&user, &rights),
        )
        .await?;
    let home = if req.return_home { "return home: " } else { "no return home: " };
    Ok(answer(&state, &user, &node, ("maintenance.exit", home.to_owned()), a))
}

#[utoipa::path(post, path = "/api/v1/best-node", request_body = BestNodeRequest, responses(
    (status = 200, body = BestNodeAnswer),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
))]
async fn best_node(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(req): Body<BestNodeRequest>,
) -> Result<Json<BestNodeAnswer>, HttpError> {
    user.require("/", "Sys.Audit")?;
    if req.guest.is_some() == req.vmid.is_some() {
        return Err(HttpError::bad_input(
            None,
            "give either `guest` ({cpus, mem_bytes, tags, pool, …}) or `vmid` of an existing guest, not both",
        ));
    }
    if let Some(g) = &req.guest {
        if !(g.cpus.is_finite() && g.cpus >= 0.0) {
            return Err(HttpError::bad_input(
                Some("guest.cpus"),
                format!("{} is not a number of vCPUs ≥ 0", g.cpus),
            ));
        }
    }
    let mut snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    state.maintenance.apply_marks(&mut snapshot).await?;
    let request = state.plan_request().await?;
    let ranks = crate::maintenance::best_node(&mut snapshot, &req, &request).map_err(|vmid| {
        HttpError::not_found("no such guest", format!("no guest {vmid} in the cluster"), "vmid")
    })?;
    let best = ranks.iter().find(|r| r.fits).map(|r| r.node.clone());
    Ok(Json(BestNodeAnswer { best, ranks, request: Some(request) }))
}
