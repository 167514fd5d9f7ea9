//! The JSON API under `/api/v1` (and the panel's static files when serving standalone).
//!
//! The API tree mirrors the URL: one module per subtree (`admin`: settings, history, metrics;
//! `jobs`: execution; `maint`: maintenance and best node; `history`: usage samples;
//! `proxbalance`: the aliases). Handlers are thin: extract (`extract`: strict bodies, one 400),
//! check the privilege, call `app`, answer; every failure is an [`error::HttpError`].
//!
//! Layer rule: `http` uses `app` and the services below it, never the CLI modules.

pub mod admin;
pub mod backtest;
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
use axum::{Extension, Json, Router};
use extract::Body;
use openapi::{Health, LoginAnswer};
use shared::api::ApiError;
use shared::api::ClusterView;
use shared::policy::{PolicyLayer, PolicyView};
use shared::{ClusterSnapshot, Plan};
use std::path::PathBuf;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Routes anyone may call: health, and login/logout for the standalone panel.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(login))
        .routes(routes!(logout))
        .merge(proxbalance::public_routes())
}

/// Routes that need valid PVE credentials; each handler checks its privileges on top.
fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster))
        .routes(routes!(plan))
        .routes(routes!(policy))
        .routes(routes!(openapi::serve))
        .merge(maint::routes())
        .merge(history::routes())
        .merge(backtest::routes())
        .merge(admin::routes())
        .merge(proxbalance::routes())
        .merge(jobs::routes())
}

/// Every API route with its documentation (auth is added by [`router`]).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base()).merge(public_routes()).merge(protected_routes())
}

/// The service's router. `panel_dir`, when given, is served at `/` (the standalone panel).
pub fn router(state: AppState, panel_dir: Option<PathBuf>) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.auth.clone(), require_user);
    let (protected, _) = protected_routes().route_layer(auth).split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    let cors = cors::layer(state.origins.clone());
    let api = public.merge(protected).with_state(state);
    let api = match panel_dir {
        Some(dir) => api.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => api,
    };
    api.layer(cors).layer(tower_http::trace::TraceLayer::new_for_http())
}

#[utoipa::path(get, path = "/api/v1/health", security(()), responses((status = 200, body = Health)))]
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// `POST /api/v1/login`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Login {
    /// `user@realm`, as PVE's login form takes it (PVE allows at most 64 characters).
    #[schema(max_length = 64)]
    username: String,
    password: String,
}

/// Standalone panel login: PVE checks the password and issues a ticket, which we hand to the
/// browser as PVE's own cookie (so the same ticket also works in the PVE UI, and vice versa).
#[utoipa::path(post, path = "/api/v1/login", security(()), request_body = Login, responses(
    (status = 200, body = LoginAnswer, description = "logged in; sets the PVEAuthCookie cookie"),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 502, body = ApiError),
))]
async fn login(State(state): State<AppState>, Body(login): Body<Login>) -> Response {
    if login.username.chars().count() > 64 {
        let detail = "a PVE user name is at most 64 characters (user@realm, e.g. root@pam)";
        return HttpError::bad_input(Some("username"), detail).into_response();
    }
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
        // PVE's parameter check refused what was typed: the caller's input, not a PVE failure.
        Err(PveError::Api { status: 400, message, .. }) => {
            HttpError::bad_input(None, message).into_response()
        }
        Err(e) => HttpError::from(e).into_response(),
    }
}

#[utoipa::path(post, path = "/api/v1/logout", security(()), responses(
    (status = 204, description = "the cookie is cleared"),
))]
async fn logout() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("PVEAuthCookie=; Path=/; Max-Age=0; SameSite=Lax"),
    );
    resp
}

#[utoipa::path(get, path = "/api/v1/cluster", responses(
    (status = 200, body = ClusterView),
    (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 502, body = ApiError),
))]
async fn cluster(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<ClusterView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let mut snapshot = ClusterSnapshot::clone(&*state.snapshots.get(&state.pve, unix_now()).await?);
    // Nodes in our maintenance show as such (PVE HA maintenance is in the snapshot already).
    state.maintenance.apply_marks(&mut snapshot).await?;
    let request = state.plan_request().await?;
    Ok(Json(ClusterView::of(snapshot).with_memory_reserve(&request)))
}

/// `POST /api/v1/plan` `PolicyLayer`: a plan with the policy in force and these overrides.
#[utoipa::path(post, path = "/api/v1/plan", request_body = shared::policy::PolicyLayer, responses(
    (status = 200, body = Plan),
    (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
    (status = 502, body = ApiError),
))]
async fn plan(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Body(overrides): Body<PolicyLayer>,
) -> Result<Json<Plan>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let policy = state.policy_with(overrides).await?;
    Ok(Json(state.plan_now(&policy.request, unix_now()).await?))
}

#[utoipa::path(get, path = "/api/v1/policy", responses(
    (status = 200, body = PolicyView),
    (status = 401, body = shared::api::ApiError), (status = 403, body = shared::api::ApiError),
    (status = 500, body = shared::api::ApiError),
))]
/// `GET /api/v1/policy`: the policy in force, each value's source, and the engine request it
/// makes; the panel's what-if plans in the browser with exactly this.
async fn policy(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<PolicyView>, HttpError> {
    user.require("/", "Sys.Audit")?;
    let mut view = state.policy_with(PolicyLayer::default()).await?;
    // The bandwidth may be measured from the cluster's past migrations: say which figure plans
    // use now. Without the cluster the rest of the policy still answers.
    match state.snapshots.get(&state.pve, unix_now()).await {
        Ok(snapshot) => view.bandwidth = Some(shared::engine::problem::bandwidth(&snapshot, &view.request)),
        Err(e) => tracing::warn!(error = %e, "GET /api/v1/policy: no cluster, bandwidth source not shown"),
    }
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn state() -> AppState {
        let opts = crate::pve::PveOptions {
            base_url: "https://127.0.0.1:9".into(),
            credentials: crate::pve::Credentials::Token { token_id: "u@pve!t".into(), secret: "s".into() },
            ca_pem: None,
            insecure: true,
            timeout: std::time::Duration::from_millis(200),
        };
        AppState::new(std::sync::Arc::new(crate::pve::PveClient::new(opts).unwrap()))
    }

    #[test]
    fn the_document_lists_every_routed_path_from_the_handlers_themselves() {
        let doc = openapi::document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/api/v1/plan",
            "/api/v1/policy",
            "/api/v1/settings",
            "/api/v1/jobs/{id}/events",
            "/api/v1/maintenance/{node}/enter",
            "/api/migrate",
            "/metrics",
            "/api/v1/health",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let settings = serde_json::to_value(&doc.paths.paths["/api/v1/settings"]).unwrap();
        assert!(settings.get("get").is_some() && settings.get("put").is_some(), "{settings}");
    }

    #[tokio::test]
    async fn each_documented_path_is_routed_and_guarded() {
        let doc = openapi::document();
        let app = router(state(), None);
        for (path, item) in &doc.paths.paths {
            let item = serde_json::to_value(item).unwrap();
            let public =
                ["/api/v1/health", "/api/v1/login", "/api/v1/logout", "/api/health"].contains(&path.as_str());
            for method in ["get", "post", "put", "delete"].into_iter().filter(|m| item.get(*m).is_some()) {
                let uri = path.replace("{id}", "1").replace("{node}", "pve1");
                let req = axum::http::Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let status = app.clone().oneshot(req).await.unwrap().status();
                assert_ne!(status, StatusCode::NOT_FOUND, "{method} {uri} is documented but not routed");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
                if !public {
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {uri} answers without credentials"
                    );
                }
            }
        }
    }

    fn preflight(origin: &str, method: &str, uri: &str) -> axum::http::Request<axum::body::Body> {
        axum::http::Request::builder()
            .method("OPTIONS")
            .uri(uri)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type,csrfpreventiontoken")
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_node_s_ui_may_preflight_every_call_and_a_look_alike_none() {
        let state = state();
        state.origins.set_nodes(&[serde_json::json!({"type": "node", "name": "pve1", "ip": "192.0.2.1"})]);
        let app = router(state, None);
        let doc = openapi::document();
        for (path, item) in &doc.paths.paths {
            let item = serde_json::to_value(item).unwrap();
            for method in
                ["GET", "POST", "PUT", "DELETE"].into_iter().filter(|m| item.get(m.to_lowercase()).is_some())
            {
                let uri = path.replace("{id}", "1").replace("{node}", "pve1");
                let resp = app.clone().oneshot(preflight("https://pve1:8006", method, &uri)).await.unwrap();
                let h = resp.headers();
                let allowed = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                assert_eq!(allowed("access-control-allow-origin"), "https://pve1:8006", "{method} {uri}");
                assert_eq!(allowed("access-control-allow-credentials"), "true", "{method} {uri}");
                assert!(allowed("access-control-allow-methods").contains(method), "{method} {uri}");
                assert!(allowed("access-control-allow-headers")
                    .to_lowercase()
                    .contains("csrfpreventiontoken"));
                for evil in [
                    "https://evil.example:8006",
                    "https://pve1:8006.evil.example",
                    "null",
                    "http://pve1:8006",
                ] {
                    let resp = app.clone().oneshot(preflight(evil, method, &uri)).await.unwrap();
                    assert!(
                        resp.headers().get("access-control-allow-origin").is_none(),
                        "{evil} {method} {uri}"
                    );
                }
            }
        }
        // The credentialed request itself: the node's UI may read the answer, a look-alike may not.
        for (origin, readable) in [("https://192.0.2.1:8006", true), ("https://evil.example:8006", false)] {
            let req = axum::http::Request::builder()
                .uri("/api/v1/health")
                .header("origin", origin)
                .header("cookie", "PVEAuthCookie=x")
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let acao =
                resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(acao, readable.then(|| origin.to_owned()), "{origin}");
        }
    }
}
