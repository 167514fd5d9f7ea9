//! The OpenAPI 3.1 document of `/api/v1`, served at `GET /api/v1/openapi.json`.
//!
//! Schemas come from the API types themselves (`shared`'s `openapi` feature derives
//! `utoipa::ToSchema`), so a field added to a type is in the document without anyone editing it.
//! The routes are declared here rather than on the handlers: the handlers stay free of
//! documentation macros, and `tests/e2e/tests/openapi.rs` fails when a route in the router is
//! missing here (it discovers the routes from the source, as the security tests do).
//!
//! Every response status a route can give is declared with its body (`ApiError` for errors), so
//! a schema-driven fuzzer (schemathesis, `tests/e2e/tests/schemathesis.rs`) can check answers.

// The `#[utoipa::path]` items below are declarations only: their bodies never run.
#![allow(dead_code)]

use crate::auth::User;
use axum::{Extension, Json};
use shared::api::{ApiError, ClusterView, ExecuteRequest, ExecuteResponse, JobSummary, JobView};
use shared::api::{AuditEntry, HistoryView, Settings, SettingsView};
use shared::api::{
    BestNodeAnswer, BestNodeRequest, ExitRequest, MaintenanceAnswer, MaintenanceRequest, NodeMaintenance,
};
use shared::plan::{Plan, PlanRequest};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pve-rebalancer",
        description = "Load balancing and maintenance evacuation for Proxmox VE clusters. \
                       Authentication is the caller's own PVE ticket (cookie PVEAuthCookie plus the \
                       CSRFPreventionToken header on writes) or PVE API token; privileges are PVE's.",
    ),
    paths(
        health, login, logout, openapi_json, cluster, plan, execute, jobs, job, job_events, job_cancel,
        maintenance_list, maintenance_node, maintenance_enter, maintenance_exit, best_node, settings_get,
        settings_put, audit_history, metrics, cluster_history, pb_health, pb_analyze, pb_recommendations,
        pb_refresh, pb_migrate
    ),
    components(schemas(
        ApiError, ClusterView, PlanRequest, Plan, ExecuteRequest, ExecuteResponse, JobSummary, JobView, Login,
        LoginAnswer, Health, NodeMaintenance, MaintenanceRequest, ExitRequest, MaintenanceAnswer,
        BestNodeRequest, BestNodeAnswer, Settings, SettingsView, AuditEntry, HistoryView, PbMigrate
    )),
    modifiers(&Auth),
    security(("pve_ticket" = []), ("pve_token" = [])),
)]
struct ApiDoc;

/// One server-sent event of `GET /api/v1/jobs/{id}/events` as an SSE client parses it: `event`
/// is `step` (`data`: a StepView as JSON) or `end` (`data`: a JobSummary as JSON, the last one).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the route writes the events with axum's `Event`
struct JobEvent {
    #[schema(pattern = "^(step|end)$")]
    event: String,
    data: String,
}

/// PVE's two ways to authenticate: the ticket cookie and the API token header.
struct Auth;

impl Modify for Auth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "pve_ticket",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "PVEAuthCookie",
                "The caller's PVE ticket; writes also need the CSRFPreventionToken header",
            ))),
        );
        c.add_security_scheme(
            "pve_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "PVEAPIToken=user@realm!tokenid=secret",
            ))),
        );
    }
}

/// The document, built once per call (cheap: it is a few hundred objects).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`. Anyone who may see the cluster may read how to call us.
pub async fn serve(Extension(user): Extension<User>) -> Result<Json<utoipa::openapi::OpenApi>, ApiFailure> {
    user.require("/", "Sys.Audit").map_err(ApiFailure)?;
    Ok(Json(document()))
}

/// An auth failure of the document route, answered as every other route answers it.
pub struct ApiFailure(crate::auth::AuthError);

impl axum::response::IntoResponse for ApiFailure {
    fn into_response(self) -> axum::response::Response {
        let (status, body) = self.0.parts();
        (status, Json(body)).into_response()
    }
}

// ------------------------------------------------------------------------ bodies without a type

/// `POST /api/v1/login`.
#[derive(utoipa::ToSchema)]
struct Login {
    username: String,
    password: String,
}

/// Answer to a login; the ticket itself is only in the HttpOnly `PVEAuthCookie`.
#[derive(utoipa::ToSchema)]
struct LoginAnswer {
    username: Option<String>,
    #[schema(rename = "CSRFPreventionToken")]
    csrf_prevention_token: Option<String>,
    /// PVE's capability map, as PVE returns it at login.
    cap: Option<serde_json::Value>,
}

#[derive(utoipa::ToSchema)]
struct Health {
    status: String,
    version: String,
}

// ------------------------------------------------------------------------------------- routes
//
// Status codes: 400 bad input (with `field`), 401 not logged in, 403 missing privilege, 404 no
// such job, 409 conflict (lock held, job not running), 500 journal failure, 502 PVE failed,
// 503 execution not enabled.

#[utoipa::path(get, path = "/api/v1/health", security(()), responses((status = 200, body = Health)))]
fn health() {}

#[utoipa::path(post, path = "/api/v1/login", security(()), request_body = Login, responses(
    (status = 200, body = LoginAnswer, description = "logged in; sets the PVEAuthCookie cookie"),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 502, body = ApiError),
))]
fn login() {}

#[utoipa::path(post, path = "/api/v1/logout", security(()), responses(
    (status = 204, description = "the cookie is cleared"),
))]
fn logout() {}

#[utoipa::path(get, path = "/api/v1/openapi.json", responses(
    (status = 200, description = "this document", content_type = "application/json"),
    (status = 401, body = ApiError), (status = 403, body = ApiError),
))]
fn openapi_json() {}

#[utoipa::path(get, path = "/api/v1/cluster", responses(
    (status = 200, body = ClusterView),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 502, body = ApiError),
))]
fn cluster() {}

#[utoipa::path(post, path = "/api/v1/plan", request_body = PlanRequest, responses(
    (status = 200, body = Plan),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 502, body = ApiError),
))]
fn plan() {}

#[utoipa::path(post, path = "/api/v1/plan/execute", request_body = ExecuteRequest, responses(
    (status = 202, body = ExecuteResponse),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 409, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
    (status = 503, body = ApiError),
))]
fn execute() {}

#[utoipa::path(get, path = "/api/v1/jobs", params(("limit" = Option<usize>, Query, description = "1–1000, default 50")),
    responses(
    (status = 200, body = Vec<JobSummary>),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
fn jobs() {}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = u64, Path)), responses(
    (status = 200, body = JobView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
fn job() {}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", params(("id" = u64, Path)), responses(
    (status = 200, description = "server-sent events: `step` (a StepView) per change, `end` (a JobSummary) last",
        content_type = "text/event-stream", body = JobEvent),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 503, body = ApiError),
))]
fn job_events() {}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = u64, Path)), responses(
    (status = 202, body = JobView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError),
    (status = 503, body = ApiError),
))]
fn job_cancel() {}

// Maintenance and best node (`backend/src/http_maint.rs`): 404 unknown node or guest, 409 node
// already/not in maintenance or a job running, 502 PVE or `ha-manager` failed.

#[utoipa::path(get, path = "/api/v1/maintenance", responses(
    (status = 200, body = Vec<NodeMaintenance>),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError),
))]
fn maintenance_list() {}

#[utoipa::path(get, path = "/api/v1/maintenance/{node}", params(("node" = String, Path)), responses(
    (status = 200, body = NodeMaintenance),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
))]
fn maintenance_node() {}

#[utoipa::path(post, path = "/api/v1/maintenance/{node}/enter", params(("node" = String, Path)),
    request_body = MaintenanceRequest, responses(
    (status = 200, body = MaintenanceAnswer, description = "preview, or nothing to move"),
    (status = 202, body = MaintenanceAnswer, description = "the evacuation job started"),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError), (status = 503, body = ApiError),
))]
fn maintenance_enter() {}

#[utoipa::path(post, path = "/api/v1/maintenance/{node}/exit", params(("node" = String, Path)),
    request_body = ExitRequest, responses(
    (status = 200, body = MaintenanceAnswer, description = "preview, or the mark is cleared"),
    (status = 202, body = MaintenanceAnswer, description = "the return-home job started"),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError), (status = 503, body = ApiError),
))]
fn maintenance_exit() {}

#[utoipa::path(post, path = "/api/v1/best-node", request_body = BestNodeRequest, responses(
    (status = 200, body = BestNodeAnswer),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 404, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
))]
fn best_node() {}

// Settings, audit history, metrics (`backend/src/http_admin.rs`), usage history
// (`http_history.rs`): 500 the journal or settings file failed, 503 no journal / no sampler.

#[utoipa::path(get, path = "/api/v1/settings", responses(
    (status = 200, body = SettingsView),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
))]
fn settings_get() {}

#[utoipa::path(put, path = "/api/v1/settings",
    request_body(content = Object, description = "the fields of Settings to change; the others keep their value"),
    responses(
    (status = 200, body = SettingsView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 500, body = ApiError),
))]
fn settings_put() {}

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
fn audit_history() {}

#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError),
))]
fn metrics() {}

#[utoipa::path(get, path = "/api/v1/cluster/history",
    params(("minutes" = Option<u32>, Query, description = "window, 1–10080, default 60")),
    responses(
    (status = 200, body = HistoryView),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 503, body = ApiError),
))]
fn cluster_history() {}

// ProxBalance-compatible aliases (`backend/src/proxbalance.rs`): ProxBalance's `{success, …}`
// envelope, our auth and errors.

#[utoipa::path(get, path = "/api/health", security(()), responses((status = 200, body = Health)))]
fn pb_health() {}

#[utoipa::path(get, path = "/api/analyze", responses(
    (status = 200, description = "`{success: true, data: ClusterView}`", body = Object),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 502, body = ApiError),
))]
fn pb_analyze() {}

#[utoipa::path(get, path = "/api/recommendations", responses(
    (status = 200, description = "`{success, count, recommendations: [{vmid, name, type, source_node, target_node, reason}], spread_before, spread_after, plan}`", body = Object),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 500, body = ApiError),
    (status = 502, body = ApiError),
))]
fn pb_recommendations() {}

#[utoipa::path(post, path = "/api/refresh", responses(
    (status = 200, description = "`{success, collected_at, nodes, guests}`", body = Object),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 502, body = ApiError),
))]
fn pb_refresh() {}

/// `POST /api/migrate` (ProxBalance's body).
#[derive(utoipa::ToSchema)]
struct PbMigrate {
    vmid: u32,
    target_node: String,
    source_node: Option<String>,
}

#[utoipa::path(post, path = "/api/migrate", request_body = PbMigrate, responses(
    (status = 202, description = "`{success: true, job_id}`", body = Object),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 409, body = ApiError), (status = 500, body = ApiError), (status = 502, body = ApiError),
    (status = 503, body = ApiError),
))]
fn pb_migrate() {}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_a_route_refers_to_is_defined() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut rest = text.as_str();
        let mut refs = 0;
        while let Some(at) = rest.find("#/components/schemas/") {
            let after = &rest[at + "#/components/schemas/".len()..];
            let name = &after[..after.find('"').unwrap()];
            assert!(schemas.contains_key(name), "{name} is referred to but not defined");
            refs += 1;
            rest = after;
        }
        assert!(refs > 20, "only {refs} references: the document lost its schemas");
    }
}
