//! Who is calling, and may they? Authentication and privileges the way PVE does them.
//!
//! The panel sends the user's own PVE credentials: the `PVEAuthCookie` ticket (and the
//! `CSRFPreventionToken` header on writes), or an `Authorization: PVEAPIToken=...` header for
//! automation. We never judge a ticket ourselves: we ask PVE, as that user,
//! `GET /access/permissions`, which fails for a bad or expired ticket and otherwise lists the
//! user's privileges per ACL path. Answers are cached for [`CACHE_TTL`] per credential.
//!
//! Privileges required (PVE's names; see docs/ for the table):
//! - reading the cluster and computing plans: `Sys.Audit` on `/`
//! - executing a step: `VM.Migrate` on `/vms/<vmid>` of that guest
//! - maintenance of a node: `Sys.Modify` on `/nodes/<node>`

use crate::pve::{PveClient, PveError, UserCredential};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::api::ApiError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// The user's effective privileges: ACL path → privilege → propagates to sub-paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Permissions(pub BTreeMap<String, BTreeMap<String, bool>>);

impl Permissions {
    /// Does the user hold `privilege` on `path`, directly or through a propagating parent?
    pub fn has(&self, path: &str, privilege: &str) -> bool {
        let mut at = path.trim_end_matches('/').to_owned();
        let mut exact = true;
        loop {
            let key = if at.is_empty() { "/" } else { at.as_str() };
            if let Some(&propagate) = self.0.get(key).and_then(|p| p.get(privilege)) {
                if exact || propagate {
                    return true;
                }
            }
            if at.is_empty() {
                return false;
            }
            at.truncate(at.rfind('/').unwrap_or(0));
            exact = false;
        }
    }

    fn from_pve(value: &serde_json::Value) -> Permissions {
        let mut out = BTreeMap::new();
        if let Some(paths) = value.as_object() {
            for (path, privs) in paths {
                let privs = privs
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0) != 0)).collect())
                    .unwrap_or_default();
                out.insert(path.clone(), privs);
            }
        }
        Permissions(out)
    }
}

/// An authenticated caller, put into the request's extensions by [`require_user`].
#[derive(Clone, Debug)]
pub struct User {
    /// As PVE names it, e.g. `root@pam` or `root@pam!automation`.
    pub userid: String,
    pub permissions: Permissions,
}

impl User {
    /// `Ok` if the user holds `privilege` on `path`, else a 403 naming both, like PVE's own.
    pub fn require(&self, path: &str, privilege: &str) -> Result<(), AuthError> {
        if self.permissions.has(path, privilege) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!("Permission check failed ({path}, {privilege})")))
        }
    }
}

#[derive(Debug)]
pub enum AuthError {
    Unauthenticated(String),
    Forbidden(String),
    Upstream(String),
}

impl AuthError {
    pub fn parts(self) -> (StatusCode, ApiError) {
        let (status, error, detail) = match self {
            AuthError::Unauthenticated(d) => (StatusCode::UNAUTHORIZED, "not logged in", d),
            AuthError::Forbidden(d) => (StatusCode::FORBIDDEN, "permission denied", d),
            AuthError::Upstream(d) => {
                (StatusCode::BAD_GATEWAY, "could not check the credentials with PVE", d)
            }
        };
        (status, ApiError { error: error.into(), detail, field: None })
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        (status, Json(body)).into_response()
    }
}

/// Verifies credentials with PVE and remembers the answer briefly.
pub struct Authenticator {
    pve: Arc<PveClient>,
    cache: Mutex<HashMap<UserCredential, (Instant, User)>>,
}

impl Authenticator {
    pub fn new(pve: Arc<PveClient>) -> Authenticator {
        Authenticator { pve, cache: Mutex::new(HashMap::new()) }
    }

    pub async fn verify(&self, cred: &UserCredential) -> Result<User, AuthError> {
        {
            let mut cache = self.cache.lock().await;
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if let Some((_, user)) = cache.get(cred) {
                return Ok(user.clone());
            }
        }
        let answer: serde_json::Value = match self.pve.get_as_user("/access/permissions", cred).await {
            Ok(v) => v,
            Err(PveError::Api { status: 401, message, .. }) => {
                return Err(AuthError::Unauthenticated(format!("PVE refused the credentials: {message}")))
            }
            Err(e) => return Err(AuthError::Upstream(e.to_string())),
        };
        let user = User { userid: userid_of(cred), permissions: Permissions::from_pve(&answer) };
        self.cache.lock().await.insert(cred.clone(), (Instant::now(), user.clone()));
        Ok(user)
    }
}

/// The user id a credential names: `PVE:<userid>:<time>::<sig>` for tickets, the token id for
/// tokens. Only used for display and audit, after PVE has accepted the credential.
fn userid_of(cred: &UserCredential) -> String {
    match cred {
        UserCredential::Ticket(t) => t.split(':').nth(1).unwrap_or("").to_owned(),
        UserCredential::Token(t) => t.split_once(['=', ' ']).map_or(t.as_str(), |(id, _)| id).to_owned(),
    }
}

/// The credential in a request: an API token header wins over the cookie.
pub fn credential_of(req: &Request) -> Option<UserCredential> {
    let headers = req.headers();
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(token) = auth.strip_prefix("PVEAPIToken=").or_else(|| auth.strip_prefix("PVEAPIToken ")) {
            return Some(UserCredential::Token(token.trim().to_owned()));
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix("PVEAuthCookie="))
        .map(|t| UserCredential::Ticket(percent_decode(t)))
        .next()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plausible `CSRFPreventionToken`: `<8 hex digits of time>:<signature>`. PVE signs it with a
/// key only PVE holds, so we cannot check the signature; requiring the header is what defeats
/// cross-site requests (a foreign page cannot set it), and the cookie is `SameSite=Lax` besides.
fn csrf_header_ok(req: &Request) -> bool {
    req.headers()
        .get("CSRFPreventionToken")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(':'))
        .is_some_and(|(time, sig)| {
            time.len() == 8 && time.bytes().all(|b| b.is_ascii_hexdigit()) && sig.len() >= 16
        })
}

/// Middleware: refuses requests without valid PVE credentials (401), and ticket-authenticated
/// writes without a CSRF token (401, as PVE answers); passes the `User` on to the handler.
pub async fn require_user(State(auth): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    let Some(cred) = credential_of(&req) else {
        return AuthError::Unauthenticated("no PVE ticket or API token in the request: log in first".into())
            .into_response();
    };
    if matches!(cred, UserCredential::Ticket(_)) && req.method() != Method::GET && !csrf_header_ok(&req) {
        return AuthError::Unauthenticated(
            "write without a CSRFPreventionToken header: send the token PVE gave at login".into(),
        )
        .into_response();
    }
    match auth.verify(&cred).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(entries: &[(&str, &str, bool)]) -> Permissions {
        let mut p = Permissions::default();
        for (path, privilege, propagate) in entries {
            p.0.entry(path.to_string()).or_default().insert(privilege.to_string(), *propagate);
        }
        p
    }

    #[test]
    fn privileges_propagate_only_when_marked() {
        let p = perms(&[
            ("/", "Sys.Audit", true),
            ("/vms", "VM.Migrate", false),
            ("/vms/100", "VM.Audit", false),
        ]);
        assert!(p.has("/", "Sys.Audit"));
        assert!(p.has("/nodes/pve1", "Sys.Audit"));
        assert!(p.has("/vms", "VM.Migrate"));
        assert!(!p.has("/vms/100", "VM.Migrate"), "not propagated");
        assert!(p.has("/vms/100", "VM.Audit"));
        assert!(!p.has("/vms/101", "VM.Audit"));
        assert!(!p.has("/", "Sys.Modify"));
    }

    #[test]
    fn user_ids_come_from_tickets_and_tokens() {
        assert_eq!(userid_of(&UserCredential::Ticket("PVE:root@pam:4EEC61E2::sig".into())), "root@pam");
        assert_eq!(userid_of(&UserCredential::Token("root@pam!auto=uuid".into())), "root@pam!auto");
        assert_eq!(percent_decode("PVE%3Aroot%40pam%3A1"), "PVE:root@pam:1");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
