//! The OpenAPI 3.1 document of `/api/v1`, served at `GET /api/v1/openapi.json`.
//!
//! Derived from the router: each handler carries its own `#[utoipa::path]` (method, path,
//! body, every status it can answer) and is routed through utoipa-axum's `routes!`, so the
//! document and the router cannot disagree. Schemas come from the API types themselves
//! (`shared`'s `openapi` feature derives `utoipa::ToSchema`).
//!
//! Every response status a route can give is declared with its body (`ApiError` for errors), so
//! a schema-driven fuzzer (schemathesis, `tests/e2e/tests/schemathesis.rs`) can check answers.

use super::error::HttpError;
use crate::auth::User;
use axum::{Extension, Json};
use shared::api::{ApiError, ClusterView, ExecuteRequest, ExecuteResponse, JobSummary, JobView};
use shared::api::{AuditEntry, HistoryView, Settings, SettingsView};
use shared::api::{
    BestNodeAnswer, BestNodeRequest, ExitRequest, MaintenanceAnswer, MaintenanceRequest, NodeMaintenance,
};
use shared::plan::Plan;
use shared::policy::{PolicyLayer, PolicyView};
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
    components(schemas(
        ApiError, ClusterView, PolicyLayer, PolicyView, Plan, ExecuteRequest, ExecuteResponse, JobSummary, JobView,
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
pub(crate) struct JobEvent {
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

/// What the router does not say: title, security schemes, schemas of untyped bodies.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The whole document, as the router declares it (built once).
pub fn document() -> utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| super::api_routes().split_for_parts().1).clone()
}

/// `GET /api/v1/openapi.json`. Anyone who may see the cluster may read how to call us.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses(
    (status = 200, description = "this document", content_type = "application/json"),
    (status = 401, body = ApiError), (status = 403, body = ApiError),
))]
pub async fn serve(Extension(user): Extension<User>) -> Result<Json<utoipa::openapi::OpenApi>, HttpError> {
    user.require("/", "Sys.Audit")?;
    Ok(Json(document()))
}

// ------------------------------------------------------------------------ bodies without a type
// (dead to the compiler: schemas only, the handlers read and write JSON values)

/// Answer to a login; the ticket itself is only in the HttpOnly `PVEAuthCookie`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct LoginAnswer {
    username: Option<String>,
    #[schema(rename = "CSRFPreventionToken")]
    csrf_prevention_token: Option<String>,
    /// PVE's capability map, as PVE returns it at login.
    cap: Option<serde_json::Value>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Health {
    status: String,
    version: String,
}

// Maintenance and best node (`backend/src/http_maint.rs`): 404 unknown node or guest, 409 node
// already/not in maintenance or a job running, 502 PVE or `ha-manager` failed.

// Settings, audit history, metrics (`backend/src/http_admin.rs`), usage history
// (`http_history.rs`): 500 the journal or settings file failed, 503 no journal / no sampler.

// ProxBalance-compatible aliases (`backend/src/proxbalance.rs`): ProxBalance's `{success, …}`
// envelope, our auth and errors.

/// `POST /api/migrate` (ProxBalance's body).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct PbMigrate {
    vmid: u32,
    target_node: String,
    source_node: Option<String>,
}

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
