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

use crate::auth::{AuthError, User};
use crate::http::AppState;
use crate::maintenance::{MaintError, Maintenance};
use crate::unix_now;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use shared::api::{
    ApiError, BestNodeAnswer, BestNodeRequest, ExitRequest, MaintenanceAnswer, MaintenanceRequest,
    NodeMaintenance,
};
use shared::{Plan, PlanRequest};
use std::sync::Arc;

impl AppState {
    /// Keeps the maintenance marks in this store (default: `/etc/pve/pve-rebalancer`).
    pub fn with_maintenance(mut self, maintenance: Arc<Maintenance>) -> AppState {
        self.maintenance = maintenance;
        self
    }
}

/// Adds the maintenance and best-node routes (to the authenticated part of the router).
pub fn add_routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/api/v1/maintenance", get(list))
        .route("/api/v1/maintenance/{node}", get(show))
        .route("/api/v1/maintenance/{node}/enter", post(enter))
        .route("/api/v1/maintenance/{node}/exit", post(exit))
        .route("/api/v1/best-node", post(best_node))
}

#[derive(Debug)]
pub struct MaintHttpError {
    status: StatusCode,
    body: ApiError,
}

impl MaintHttpError {
    fn new(status: StatusCode, error: &str, detail: impl Into<String>, field: Option<&str>) -> Self {
        MaintHttpError {
            status,
            body: ApiError { error: error.into(), detail: detail.into(), field: field.map(str::to_owned) },
        }
    }

    fn bad_input(field: Option<&str>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid request", detail, field)
    }
}

impl IntoResponse for MaintHttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<AuthError> for MaintHttpError {
    fn from(e: AuthError) -> Self {
        let (status, body) = e.parts();
        MaintHttpError { status, body }
    }
}

impl From<crate::pve::PveError> for MaintHttpError {
    fn from(e: crate::pve::PveError) -> Self {
        MaintError::Pve(e).into()
    }
}

impl From<MaintError> for MaintHttpError {
    fn from(e: MaintError) -> Self {
        use crate::execute::StartError;
        let detail = e.to_string();
        match e {
            MaintError::UnknownNode(_) => {
                Self::new(StatusCode::NOT_FOUND, "no such node", detail, Some("node"))
            }
            MaintError::BadNode(_) => Self::bad_input(Some("node"), detail),
            MaintError::Conflict(_) => Self::new(StatusCode::CONFLICT, "maintenance conflict", detail, None),
            MaintError::Pve(_) => Self::new(StatusCode::BAD_GATEWAY, "the PVE API call failed", detail, None),
            MaintError::HaManager(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "PVE HA maintenance could not be changed", detail, None)
            }
            MaintError::State { .. } => {
                tracing::error!(error = %detail, "maintenance state");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the maintenance state failed", detail, None)
            }
            MaintError::NoExecutor => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "execution is not available", detail, None)
            }
            MaintError::Forbidden(a) => a.into(),
            MaintError::Start(StartError::Invalid { field, .. }) => Self::bad_input(Some(field), detail),
            MaintError::Start(StartError::Journal(_)) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the execution journal failed", detail, None)
            }
            MaintError::Start(_) => Self::new(StatusCode::CONFLICT, "cannot start a job now", detail, None),
        }
    }
}

fn node_of(path: Result<Path<String>, PathRejection>) -> Result<String, MaintHttpError> {
    path.map(|Path(n)| n).map_err(|e| MaintHttpError::bad_input(Some("node"), e.body_text()))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<Vec<NodeMaintenance>>, MaintHttpError> {
    user.require("/", "Sys.Audit")?;
    let snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    Ok(Json(state.maintenance.status(&state.pve, &snapshot, state.jobs.as_deref()).await?))
}

async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NodeMaintenance>, MaintHttpError> {
    user.require("/", "Sys.Audit")?;
    let node = node_of(path)?;
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

/// The cluster-wide settings as a plan request.
fn stored_request(state: &AppState) -> Result<PlanRequest, MaintHttpError> {
    state.admin.settings.plan_request().map_err(|e| {
        MaintHttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the stored settings are unreadable",
            e.to_string(),
            None,
        )
    })
}

fn answer(a: MaintenanceAnswer) -> (StatusCode, Json<MaintenanceAnswer>) {
    let status = if a.job_id.is_some() { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, Json(a))
}

async fn enter(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<MaintenanceRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<MaintenanceAnswer>), MaintHttpError> {
    let node = node_of(path)?;
    let Json(req) = body.map_err(|e| MaintHttpError::bad_input(None, e.body_text()))?;
    user.require(&format!("/nodes/{node}"), "Sys.Modify")?;
    let rights = migrate_rights(&user);
    let a = state
        .maintenance
        .enter(&state.pve, state.jobs.as_ref(), &node, &req, &stored_request(&state)?, caller(&user, &rights))
        .await?;
    if !a.preview {
        let ha = if req.ha { ", PVE HA maintenance" } else { "" };
        let detail = format!("evacuation: {} steps{ha}", a.plan.steps.len());
        let target = format!("node/{node}");
        crate::http_admin::record(&state, &user.userid, "maintenance.enter", &target, &detail, a.job_id);
    }
    Ok(answer(a))
}

async fn exit(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ExitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<MaintenanceAnswer>), MaintHttpError> {
    let node = node_of(path)?;
    let Json(req) = body.map_err(|e| MaintHttpError::bad_input(None, e.body_text()))?;
    user.require(&format!("/nodes/{node}"), "Sys.Modify")?;
    let rights = migrate_rights(&user);
    let a = state
        .maintenance
        .exit(&state.pve, state.jobs.as_ref(), &node, &req, &stored_request(&state)?, caller(&user, &rights))
        .await?;
    if !a.preview {
        let home = if req.return_home { "return home" } else { "no return home" };
        let detail = format!("{home}: {} steps", a.plan.steps.len());
        let target = format!("node/{node}");
        crate::http_admin::record(&state, &user.userid, "maintenance.exit", &target, &detail, a.job_id);
    }
    Ok(answer(a))
}

async fn best_node(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    body: Result<Json<BestNodeRequest>, JsonRejection>,
) -> Result<Json<BestNodeAnswer>, MaintHttpError> {
    user.require("/", "Sys.Audit")?;
    let Json(req) = body.map_err(|e| MaintHttpError::bad_input(None, e.body_text()))?;
    if req.guest.is_some() == req.vmid.is_some() {
        return Err(MaintHttpError::bad_input(
            None,
            "give either `guest` ({cpus, mem_bytes, tags, pool, …}) or `vmid` of an existing guest, not both",
        ));
    }
    if let Some(g) = &req.guest {
        if !(g.cpus.is_finite() && g.cpus >= 0.0) {
            return Err(MaintHttpError::bad_input(
                Some("guest.cpus"),
                format!("{} is not a number of vCPUs ≥ 0", g.cpus),
            ));
        }
    }
    let mut snapshot = crate::collect::snapshot(&state.pve, unix_now()).await?;
    state.maintenance.apply_marks(&mut snapshot)?;
    let ranks =
        crate::maintenance::best_node(&mut snapshot, &req, &stored_request(&state)?).map_err(|vmid| {
            MaintHttpError::new(
                StatusCode::NOT_FOUND,
                "no such guest",
                format!("no guest {vmid} in the cluster"),
                Some("vmid"),
            )
        })?;
    let best = ranks.iter().find(|r| r.fits).map(|r| r.node.clone());
    Ok(Json(BestNodeAnswer { best, ranks }))
}
