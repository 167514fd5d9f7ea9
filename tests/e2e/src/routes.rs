//! The backend's routes as the router serves them, and as `docs/API.md` lists them.
//!
//! Read from the router's own OpenAPI document, so a route added anywhere is checked by the
//! security, documentation and OpenAPI tests without anyone registering it in a list.

use crate::workspace_root;
use std::collections::BTreeSet;

/// Routes anyone may call.
pub const PUBLIC: [&str; 4] = ["/api/v1/health", "/api/v1/login", "/api/v1/logout", "/api/health"];

/// `(METHOD, path)` of every route the router serves: its OpenAPI document is derived from the
/// router itself (utoipa-axum), so this is the router's own list.
pub fn in_source() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(backend::http::openapi::document()).expect("the document as JSON");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "delete", "patch"] {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// `(METHOD, path)` of the routes docs/API.md lists (`` `GET /api/v1/...` ``).
pub fn in_docs() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("docs/API.md")).expect("docs/API.md");
    let mut out = BTreeSet::new();
    for piece in text.split('`') {
        let mut words = piece.split_whitespace();
        if let (Some(m), Some(p)) = (words.next(), words.next()) {
            if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m)
                && (p.starts_with("/api/") || p == "/metrics")
            {
                out.insert((m.to_owned(), p.to_owned()));
            }
        }
    }
    out
}

/// A route path with every `{param}` replaced by `1`, to call it.
pub fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') || seg.starts_with(':') { "1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}
