//! HTTP calls to the backend. Errors come back as plain words with the backend's detail (which
//! carries PVE's own message where PVE failed), plus the status so views can ask for a login.

use crate::PanelOptions;
use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use shared::api::{ApiError, ClusterView};
use shared::{Plan, PlanRequest};
use std::cell::RefCell;

/// A failed call: the words to show, and the HTTP status when the backend answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub status: Option<u16>,
    pub message: String,
}

impl Failure {
    pub fn needs_login(&self) -> bool {
        self.status == Some(401)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

thread_local! {
    /// The CSRF token from a login made in this panel (standalone mode).
    static LOGIN_CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The CSRF token to send: inside the PVE UI the page's current one (PVE renews it with the
/// ticket, so it is read at each call), else the one from our own login, else the mount option.
fn csrf_token(opts: &PanelOptions) -> Option<String> {
    let from_page = js_sys::Reflect::get(&js_sys::global(), &"Proxmox".into())
        .ok()
        .filter(|p| p.is_object())
        .and_then(|p| js_sys::Reflect::get(&p, &"CSRFPreventionToken".into()).ok())
        .and_then(|t| t.as_string());
    from_page.or_else(|| LOGIN_CSRF.with(|c| c.borrow().clone())).or_else(|| opts.csrf_token.clone())
}

fn with_auth(builder: RequestBuilder, opts: &PanelOptions) -> RequestBuilder {
    // Cross-origin inside the PVE UI: send the PVEAuthCookie along.
    let builder = builder.credentials(web_sys::RequestCredentials::Include);
    match csrf_token(opts) {
        Some(token) => builder.header("CSRFPreventionToken", &token),
        None => builder,
    }
}

async fn decode<T: DeserializeOwned>(resp: Result<Response, gloo_net::Error>) -> Result<T, Failure> {
    let resp = resp.map_err(|e| Failure {
        status: None,
        message: format!("The rebalancer service could not be reached: {e}"),
    })?;
    let status = resp.status();
    if resp.ok() {
        return resp.json::<T>().await.map_err(|e| Failure {
            status: Some(status),
            message: format!("The rebalancer service sent an unexpected answer: {e}"),
        });
    }
    let message = match resp.json::<ApiError>().await {
        Ok(e) => crate::format::api_error(status, &e),
        Err(_) => format!("The rebalancer service answered HTTP {status}."),
    };
    Err(Failure { status: Some(status), message })
}

pub async fn cluster(opts: &PanelOptions) -> Result<ClusterView, Failure> {
    let url = format!("{}/api/v1/cluster", opts.api_base);
    decode(with_auth(Request::get(&url), opts).send().await).await
}

pub async fn plan(opts: &PanelOptions, request: &PlanRequest) -> Result<Plan, Failure> {
    let url = format!("{}/api/v1/plan", opts.api_base);
    let req = with_auth(Request::post(&url), opts)
        .json(request)
        .map_err(|e| Failure { status: None, message: e.to_string() })?;
    decode(req.send().await).await
}

#[derive(serde::Deserialize)]
struct LoginAnswer {
    #[serde(rename = "CSRFPreventionToken")]
    csrf: Option<String>,
}

/// Logs in with PVE credentials through the backend, which sets PVE's ticket cookie.
pub async fn login(opts: &PanelOptions, username: &str, password: &str) -> Result<(), Failure> {
    let url = format!("{}/api/v1/login", opts.api_base);
    let body = serde_json::json!({ "username": username, "password": password });
    let req = Request::post(&url)
        .credentials(web_sys::RequestCredentials::Include)
        .json(&body)
        .map_err(|e| Failure { status: None, message: e.to_string() })?;
    let answer: LoginAnswer = decode(req.send().await).await?;
    LOGIN_CSRF.with(|c| *c.borrow_mut() = answer.csrf);
    Ok(())
}
