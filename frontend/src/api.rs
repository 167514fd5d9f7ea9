//! HTTP calls to the backend. Errors come back as plain words with the backend's detail (which
//! carries PVE's own message where PVE failed).

use crate::PanelOptions;
use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use shared::api::{ApiError, ClusterView};
use shared::{Plan, PlanRequest};

fn with_auth(builder: RequestBuilder, opts: &PanelOptions) -> RequestBuilder {
    // Cross-origin inside the PVE UI: send the PVEAuthCookie along.
    let builder = builder.credentials(web_sys::RequestCredentials::Include);
    match &opts.csrf_token {
        Some(token) => builder.header("CSRFPreventionToken", token),
        None => builder,
    }
}

async fn decode<T: DeserializeOwned>(resp: Result<Response, gloo_net::Error>) -> Result<T, String> {
    let resp = resp.map_err(|e| format!("The rebalancer service could not be reached: {e}"))?;
    if resp.ok() {
        return resp
            .json::<T>()
            .await
            .map_err(|e| format!("The rebalancer service sent an unexpected answer: {e}"));
    }
    let status = resp.status();
    match resp.json::<ApiError>().await {
        Ok(e) => Err(crate::format::api_error(status, &e)),
        Err(_) => Err(format!("The rebalancer service answered HTTP {status}.")),
    }
}

pub async fn cluster(opts: &PanelOptions) -> Result<ClusterView, String> {
    let url = format!("{}/api/v1/cluster", opts.api_base);
    decode(with_auth(Request::get(&url), opts).send().await).await
}

pub async fn plan(opts: &PanelOptions, request: &PlanRequest) -> Result<Plan, String> {
    let url = format!("{}/api/v1/plan", opts.api_base);
    let req = with_auth(Request::post(&url), opts).json(request).map_err(|e| e.to_string())?;
    decode(req.send().await).await
}
