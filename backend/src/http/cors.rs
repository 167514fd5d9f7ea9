//! CORS for the panel inside the PVE web UI: the UI's origin (`https://<node>:8006`, exact, see
//! `app::origins`) may call every method the panel uses, with the user's cookie and CSRF header;
//! no other origin gets CORS headers at all.

use crate::app::origins::Origins;
use axum::http::{header, HeaderName, HeaderValue, Method};
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Every method a panel call uses (`PUT` saves settings; keep in step with `frontend/src/api.rs`).
pub const PANEL_METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];

pub fn layer(origins: Arc<Origins>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| origins.allows(o))
        }))
        .allow_credentials(true)
        .allow_methods(PANEL_METHODS)
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("csrfpreventiontoken"),
        ])
}
