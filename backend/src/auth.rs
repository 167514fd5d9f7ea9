//! Who is calling, and may they? Authentication and privileges the way PVE does them.
//!
//! The panel sends the user's own PVE credentials: the `PVEAuthCookie` ticket (and the
//! `CSRFPreventionToken` header on writes), or an `Authorization: PVEAPIToken=...` header for
//! automation. We never judge a ticket ourselves: we ask PVE, as that user,
//! `GET /access/permissions`, which fails for a bad or expired ticket and otherwise lists the
//! user's privileges per ACL path. Answers are cached for [`CACHE_TTL`] per credential.
//!
//! The CSRF token of a ticket write is checked as pveproxy checks it ([`CsrfKey`]): signed with
//! the key PVE derives from `/etc/pve/priv/pve-www.key` (we run on the node as root), for the
//! ticket's user, issued within PVE's window. API-token callers need none, as with PVE.
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
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
    /// Checks the CSRF tokens of ticket writes (PVE's key, `DEFAULT_CSRF_KEY` unless set).
    pub csrf: CsrfKey,
}

impl Authenticator {
    pub fn new(pve: Arc<PveClient>) -> Authenticator {
        Authenticator { pve, cache: Mutex::new(HashMap::new()), csrf: CsrfKey::new(DEFAULT_CSRF_KEY) }
    }

    /// CSRF tokens checked with the key file at `path` instead of PVE's default.
    pub fn with_csrf_key(mut self, path: impl Into<PathBuf>) -> Authenticator {
        self.csrf = CsrfKey::new(path);
        self
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

/// Where PVE keeps the key its CSRF tokens derive from (pmxcfs, root only).
pub const DEFAULT_CSRF_KEY: &str = "/etc/pve/priv/pve-www.key";
/// PVE's window for a CSRF token's age in seconds, both ends exclusive: issued at most 5 min
/// ahead of our clock (skew), at most the ticket lifetime (2 h) ago.
pub const CSRF_MIN_AGE: i64 = -300;
pub const CSRF_MAX_AGE: i64 = 7200;

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(data)
}

/// The HMAC key PVE signs CSRF tokens with, from the contents of `pve-www.key`: the file's
/// HMAC-SHA256 of nothing keyed with the file's bytes (Perl's `hmac_sha256_base64($input)`: the
/// last argument is the key), in base64 without padding, whose text is the key.
pub fn csrf_key_of(www_key: &[u8]) -> ring::hmac::Key {
    use ring::hmac;
    let secret = b64(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, www_key), b"").as_ref());
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// PVE's check of a `CSRFPreventionToken` (`<8 hex digits of the issue time>:<base64 HMAC-SHA256
/// of "<time>:<userid>">`) for `userid` at `now`. Pure; `Err` says why it is refused.
pub fn check_csrf(key: &ring::hmac::Key, token: &str, userid: &str, now: i64) -> Result<(), String> {
    let Some((time, sig)) = token.split_once(':') else {
        return Err("malformed CSRFPreventionToken (want <8 hex digits>:<signature>)".into());
    };
    if time.len() != 8 || !time.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
        return Err("malformed CSRFPreventionToken (want <8 hex digits>:<signature>)".into());
    }
    // ring's verify compares in constant time; a signature that is not base64 matches nothing.
    let data = format!("{time}:{userid}");
    let matches = decode_b64(sig).is_some_and(|mac| ring::hmac::verify(key, data.as_bytes(), &mac).is_ok());
    if !matches {
        return Err(format!("CSRFPreventionToken is not PVE's signature for {userid}: log in again"));
    }
    let issued =
        i64::from_str_radix(time, 16).map_err(|_| "malformed CSRFPreventionToken time".to_owned())?;
    let age = now - issued;
    if age <= CSRF_MIN_AGE {
        return Err(format!("CSRFPreventionToken issued {} s in the future: check the node's clock", -age));
    }
    if age >= CSRF_MAX_AGE {
        return Err(format!(
            "CSRFPreventionToken expired (issued {age} s ago; PVE accepts {CSRF_MAX_AGE} s): log in again"
        ));
    }
    Ok(())
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(s).ok()
}

/// PVE's CSRF key, read from its file (re-read when the file changes).
pub struct CsrfKey {
    path: PathBuf,
    cached: std::sync::Mutex<Option<(SystemTime, ring::hmac::Key)>>,
}

impl CsrfKey {
    pub fn new(path: impl Into<PathBuf>) -> CsrfKey {
        CsrfKey { path: path.into(), cached: Default::default() }
    }

    fn key(&self) -> Result<ring::hmac::Key, String> {
        let unreadable = |e: std::io::Error| {
            format!(
                "cannot verify the CSRFPreventionToken: PVE's key {} cannot be read ({e}); the service \
                 must run as root on a PVE node, or be given the key with --csrf-key",
                self.path.display()
            )
        };
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).map_err(unreadable)?;
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, key)) = cached.as_ref().filter(|(at, _)| *at == mtime) {
            return Ok(key.clone());
        }
        let key = csrf_key_of(&std::fs::read(&self.path).map_err(unreadable)?);
        *cached = Some((mtime, key.clone()));
        Ok(key)
    }

    /// The token of a ticket write by `userid`, checked now.
    pub fn verify(&self, token: Option<&str>, userid: &str) -> Result<(), AuthError> {
        let token = token.ok_or_else(|| {
            AuthError::Forbidden(
                "write without a CSRFPreventionToken header: send the token PVE gave at login".into(),
            )
        })?;
        let key = self.key().map_err(AuthError::Forbidden)?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        check_csrf(&key, token, userid, now).map_err(AuthError::Forbidden)
    }
}

/// Middleware: refuses requests without valid PVE credentials (401), and ticket-authenticated
/// writes whose CSRF token is absent or not PVE's valid one for the ticket's user (403); passes
/// the `User` on to the handler.
pub async fn require_user(State(auth): State<Arc<Authenticator>>, mut req: Request, next: Next) -> Response {
    let Some(cred) = credential_of(&req) else {
        return AuthError::Unauthenticated("no PVE ticket or API token in the request: log in first".into())
            .into_response();
    };
    let user = match auth.verify(&cred).await {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    if matches!(cred, UserCredential::Ticket(_)) && !matches!(*req.method(), Method::GET | Method::HEAD) {
        let token = req.headers().get("CSRFPreventionToken").and_then(|v| v.to_str().ok());
        if let Err(e) = auth.csrf.verify(token, &user.userid) {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(user);
    next.run(req).await
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

    #[test]
    fn csrf_tokens_are_checked_as_pve_checks_them() {
        // Made with Perl's Digest::SHA as PVE makes them, for the key file "KEYFILE\n".
        let key = csrf_key_of(b"KEYFILE\n");
        let token = "6B000000:ddhVHTusr2kJQpBMY3lenCEbYwuca7xtcL8zd4T+jP0";
        let issued = 0x6B00_0000;
        assert_eq!(check_csrf(&key, token, "root@pam", issued + 60), Ok(()));
        let refused = |t: &str, user: &str, now: i64| check_csrf(&key, t, user, now).unwrap_err();
        assert!(refused(token, "other@pve", issued).contains("not PVE's signature for other@pve"));
        assert!(refused(token, "root@pam", issued + CSRF_MAX_AGE).contains("expired"));
        assert!(refused(token, "root@pam", issued + CSRF_MIN_AGE).contains("future"));
        assert_eq!(check_csrf(&key, token, "root@pam", issued + CSRF_MAX_AGE - 1), Ok(()));
        // Another key, a changed time, a made-up signature, malformed tokens.
        assert!(check_csrf(&csrf_key_of(b"OTHER\n"), token, "root@pam", issued).is_err());
        assert!(refused(&token.replace("6B000000", "6B000001"), "root@pam", issued).contains("signature"));
        assert!(refused("6B000000:abcdefghijklmnopqrstuvwxyz", "root@pam", issued).contains("signature"));
        for bad in ["", "x", "6b000000:abc", "6B00000:abc", "6B000000"] {
            assert!(refused(bad, "root@pam", issued).contains("malformed"), "{bad}");
        }
    }
}
