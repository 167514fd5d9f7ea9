//! The `/api2/{json,extjs}` front: parameter parsing, authentication, dispatch, PVE wire format.

pub mod access;
pub mod bulk;
pub mod cluster;
pub mod guests;
pub mod ha;
pub mod node_admin;
pub mod nodes;
pub mod tasks;

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::{cookie_ticket, parse_token_header, Acl, Identity};
use crate::server::{Sim, World};

/// A PVE API error: HTTP status, message (newline-terminated on the wire), per-parameter errors.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<BTreeMap<String, String>>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), errors: None }
    }
    /// 400 "Parameter verification failed." with one error per parameter.
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        ApiError { status: 400, message: "Parameter verification failed.".into(), errors: Some(errors) }
    }
    pub fn param(name: &str, msg: impl Into<String>) -> Self {
        Self::params(BTreeMap::from([(name.to_string(), msg.into())]))
    }
    pub fn forbidden(path: &str, privilege: &str) -> Self {
        Self::new(403, format!("Permission check failed ({path}, {privilege})"))
    }
    /// A `die` inside an API handler: HTTP 500 with the message.
    pub fn die(msg: impl Into<String>) -> Self {
        Self::new(500, msg)
    }
    pub fn not_implemented(method: &str, path: &str) -> Self {
        Self::new(501, format!("Method '{method} {path}' not implemented"))
    }
}

pub type ApiResult = Result<Reply, ApiError>;

/// A successful answer: `data`, plus `total` for some lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub data: Value,
    pub total: Option<u64>,
}

impl From<Value> for Reply {
    fn from(data: Value) -> Self {
        Reply { data, total: None }
    }
}

pub fn ok(v: Value) -> ApiResult {
    Ok(Reply::from(v))
}

/// Request parameters (query string merged with the form or JSON body).
#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, Value>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k)
    }
    /// A parameter as a string (numbers and booleans converted).
    pub fn str(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
            Value::Null => None,
            v => Some(v.to_string()),
        }
    }
    /// A PVE boolean: `0`/`1` (and JSON true/false); anything else is a parameter error.
    pub fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => match v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()).as_str() {
                "1" => Ok(Some(true)),
                "0" => Ok(Some(false)),
                other => Err(ApiError::param(k, format!("type check ('boolean') failed - got '{other}'"))),
            },
        }
    }
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(v) => {
                let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                s.parse::<i64>()
                    .map(Some)
                    .map_err(|_| ApiError::param(k, format!("type check ('integer') failed - got '{s}'")))
            }
        }
    }
    pub fn required(&self, k: &str) -> Result<String, ApiError> {
        self.str(k).ok_or_else(|| ApiError::param(k, "property is missing and it is not optional"))
    }
}

/// Everything a handler needs about the request.
pub struct Ctx<'a> {
    pub method: &'a Method,
    /// API path without the `/api2/<fmt>` prefix, e.g. `/nodes/pve1/qemu`.
    pub path: &'a str,
    pub segs: Vec<String>,
    pub params: Params,
    pub ident: Identity,
    /// Simulated clock, fractional Unix seconds.
    pub now: f64,
    pub time_scale: f64,
    pub fingerprint: &'a str,
}

impl Ctx<'_> {
    pub fn now_i(&self) -> i64 {
        self.now.floor() as i64
    }
    pub fn acl<'w>(&self, w: &'w World) -> Acl<'w> {
        Acl { users: &w.cluster.users, acls: &w.cluster.acls }
    }
    pub fn has(&self, w: &World, path: &str, privilege: &str) -> bool {
        self.acl(w).has(&self.ident, path, privilege)
    }
    pub fn require(&self, w: &World, path: &str, privilege: &str) -> Result<(), ApiError> {
        if self.has(w, path, privilege) {
            Ok(())
        } else {
            Err(ApiError::forbidden(path, privilege))
        }
    }
}

/// Output format chosen by the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    ExtJs,
}

pub fn render(fmt: Format, res: ApiResult) -> Response {
    let (status, body) = match (fmt, res) {
        (Format::Json, Ok(r)) => {
            let mut b = json!({ "data": r.data });
            if let Some(t) = r.total {
                b["total"] = t.into();
            }
            (200, b)
        }
        (Format::Json, Err(e)) => {
            let mut b = json!({ "data": null, "message": format!("{}\n", e.message) });
            if let Some(errs) = e.errors {
                b["errors"] = json!(errs);
            }
            (e.status, b)
        }
        (Format::ExtJs, Ok(r)) => {
            let mut b = json!({ "data": r.data, "success": 1, "status": 200 });
            if let Some(t) = r.total {
                b["total"] = t.into();
            }
            (200, b)
        }
        (Format::ExtJs, Err(e)) => {
            let mut b = json!({ "data": null, "success": 0, "status": e.status, "message": format!("{}\n", e.message) });
            if let Some(errs) = e.errors {
                b["errors"] = json!(errs);
            }
            (200, b)
        }
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp =
        (code, [("content-type", "application/json;charset=UTF-8")], body.to_string()).into_response();
    if status != 200 {
        // PVE puts the message into the HTTP reason phrase; hyper can't, so expose it as a header
        if let Ok(v) =
            axum::http::HeaderValue::from_str(&body["message"].as_str().unwrap_or("").replace('\n', " "))
        {
            resp.headers_mut().insert("x-pve-message", v);
        }
    }
    resp
}

/// Parses query string and body into parameters.
pub fn parse_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
    let mut m = BTreeMap::new();
    if let Some(q) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::new(400, format!("bad query string: {e}")))?;
        for (k, v) in pairs {
            insert_repeated(&mut m, k, v);
        }
    }
    if !body.is_empty() {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        if ct.starts_with("application/json") {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(400, format!("malformed JSON: {e}")))?;
            match v {
                Value::Object(o) => m.extend(o),
                Value::Null => {}
                _ => return Err(ApiError::new(400, "JSON body must be an object")),
            }
        } else {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ApiError::new(400, format!("bad form body: {e}")))?;
            for (k, v) in pairs {
                insert_repeated(&mut m, k, v);
            }
        }
    }
    Ok(Params(m))
}

/// A repeated key (`vms=100&vms=101`, how form-encoded arrays arrive) becomes an array.
fn insert_repeated(m: &mut BTreeMap<String, Value>, k: String, v: String) {
    match m.get_mut(&k) {
        Some(Value::Array(a)) => a.push(Value::String(v)),
        Some(old) => {
            let prev = std::mem::take(old);
            *old = Value::Array(vec![prev, Value::String(v)]);
        }
        None => {
            m.insert(k, Value::String(v));
        }
    }
}

/// Authenticates a request. `Ok(None)` for endpoints that need no authentication.
pub fn authenticate(
    sim: &Sim,
    w: &World,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<Identity>, ApiError> {
    if (method == Method::POST && path == "/access/ticket")
        || (method == Method::GET && path == "/access/domains")
    {
        return Ok(None);
    }
    let acl = Acl { users: &w.cluster.users, acls: &w.cluster.acls };
    let auth_header = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Some(h) = auth_header {
        if h.trim_start().starts_with("PVEAPIToken") {
            let (user, tok, secret) =
                parse_token_header(h).ok_or_else(|| ApiError::new(401, "authentication failure"))?;
            return acl
                .check_token(&user, &tok, &secret)
                .map(Some)
                .ok_or_else(|| ApiError::new(401, "authentication failure"));
        }
    }
    let ticket = auth_header
        .and_then(|h| h.trim().strip_prefix("PVEAuthCookie="))
        .map(|t| percent_encoding::percent_decode_str(t).decode_utf8_lossy().into_owned())
        .or_else(|| headers.get_all("cookie").iter().filter_map(|v| v.to_str().ok()).find_map(cookie_ticket));
    let Some(ticket) = ticket else { return Err(ApiError::new(401, "No ticket")) };
    let userid =
        check_ticket(sim, w, &ticket, now).ok_or_else(|| ApiError::new(401, "authentication failure"))?;
    if method != Method::GET {
        let csrf = headers.get("csrfpreventiontoken").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !sim.signer.verify_csrf(csrf, &userid, now, w.cluster.auth.ticket_lifetime_s as i64) {
            return Err(ApiError::new(401, "Permission denied - invalid csrf token"));
        }
    }
    Ok(Some(Identity { userid, tokenid: None, by_ticket: true }))
}

/// Valid, unexpired ticket of an enabled user → user id.
pub fn check_ticket(sim: &Sim, w: &World, ticket: &str, now: i64) -> Option<String> {
    let (userid, t) = sim.signer.verify_ticket(ticket)?;
    let age = now - t;
    let life = w.cluster.auth.ticket_lifetime_s as i64;
    if !(-300..life).contains(&age) || t < w.cluster.tickets_valid_after {
        return None;
    }
    Acl { users: &w.cluster.users, acls: &w.cluster.acls }.user(&userid)?;
    Some(userid)
}

/// Routes an authenticated request to its handler.
pub fn dispatch(sim: &Sim, w: &mut World, cx: &Ctx) -> ApiResult {
    let segs: Vec<&str> = cx.segs.iter().map(String::as_str).collect();
    let m = cx.method.as_str();
    match (m, segs.as_slice()) {
        ("GET", []) => ok(json!([
            {"subdir": "version"}, {"subdir": "cluster"}, {"subdir": "nodes"},
            {"subdir": "storage"}, {"subdir": "access"}, {"subdir": "pools"}
        ])),
        ("GET", ["version"]) => access::version(w),
        ("GET", ["access", "permissions"]) => access::permissions(w, cx),
        ("GET", ["access", "domains"]) => ok(json!([
            {"realm": "pam", "type": "pam", "comment": "Linux PAM standard authentication"},
            {"realm": "pve", "type": "pve", "comment": "Proxmox VE authentication server"}
        ])),
        ("GET", ["cluster", rest @ ..]) => cluster::get(w, cx, rest),
        ("GET", ["storage"]) => cluster::storage_config(w, cx),
        ("GET", ["pools"]) => cluster::pools(w, cx),
        ("GET", ["pools", id]) => cluster::pool(w, cx, id),
        ("GET", ["nodes"]) => nodes::list(sim, w, cx),
        (_, ["nodes", node, rest @ ..]) => nodes::dispatch(sim, w, cx, node, rest),
        ("POST", ["cluster", "ha", "resources", sid, "migrate"]) => ha::migrate(w, cx, sid, false),
        ("POST", ["cluster", "ha", "resources", sid, "relocate"]) => ha::migrate(w, cx, sid, true),
        ("POST", ["cluster", "bulk-action", "guest", "migrate"]) => bulk::bulk_migrate(w, cx),
        _ => Err(ApiError::not_implemented(m, cx.path)),
    }
}
