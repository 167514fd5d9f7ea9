use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;

/// How the service authenticates to PVE.
#[derive(Clone)]
pub enum Credentials {
    /// `user@realm` + password: ticket login, renewed before it expires.
    Password { user: String, password: String },
    /// API token `user@realm!tokenid` + secret: no ticket, no CSRF token.
    Token { token_id: String, secret: String },
}

impl std::fmt::Debug for Credentials {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => write!(f, "Password {{ user: {user:?}, password: *** }}"),
            Credentials::Token { token_id, .. } => {
                write!(f, "Token {{ token_id: {token_id:?}, secret: *** }}")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct PveOptions {
    /// `https://host:8006`
    pub base_url: String,
    pub credentials: Credentials,
    /// PEM of a CA (or the self-signed certificate) to trust besides the system roots.
    pub ca_pem: Option<String>,
    /// Skip TLS verification (discouraged; for lab clusters with self-signed certs and no CA file).
    pub insecure: bool,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PveError {
    /// PVE answered with an error status; `message` is PVE's own text.
    #[error("PVE {method} {path}: HTTP {status}: {message}")]
    Api { method: &'static str, path: String, status: u16, message: String },
    #[error("PVE {method} {path}: {source}")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("PVE {path}: unexpected answer: {detail}")]
    Decode { path: String, detail: String },
    #[error("PVE client set-up: {0}")]
    Setup(String),
}

struct Ticket {
    cookie: String,
    csrf: String,
    issued: std::time::Instant,
}

/// Renew the service's ticket after this long (PVE's tickets are valid for 2 h).
const TICKET_RENEW_AFTER: Duration = Duration::from_secs(60 * 60);

/// A PVE API client. Cheap to share behind an `Arc`; logs in lazily and once.
pub struct PveClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    ticket: Mutex<Option<Ticket>>,
}

impl PveClient {
    pub fn new(opts: PveOptions) -> Result<PveClient, PveError> {
        let mut builder = reqwest::Client::builder().timeout(opts.timeout).use_rustls_tls();
        if let Some(pem) = &opts.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| PveError::Setup(format!("CA certificate is not valid PEM: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        if opts.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| PveError::Setup(e.to_string()))?;
        Ok(PveClient {
            http,
            base: format!("{}/api2/json", opts.base_url.trim_end_matches('/')),
            credentials: opts.credentials,
            ticket: Mutex::new(None),
        })
    }

    /// `GET path` and decode its `data`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PveError> {
        let data = self.call(reqwest::Method::GET, "GET", path, &[]).await?;
        serde_json::from_value(data)
            .map_err(|e| PveError::Decode { path: path.into(), detail: e.to_string() })
    }

    /// `POST path` with form parameters (as PVE clients send them); returns `data`.
    pub async fn post(&self, path: &str, form: &[(&str, String)]) -> Result<Value, PveError> {
        self.call(reqwest::Method::POST, "POST", path, form).await
    }

    /// `DELETE path` (e.g. stopping a task); returns `data`.
    pub async fn delete(&self, path: &str) -> Result<Value, PveError> {
        self.call(reqwest::Method::DELETE, "DELETE", path, &[]).await
    }

    /// `GET path?query` with the query parameters percent-encoded; decodes `data`.
    pub async fn get_with_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, PveError> {
        let mut full = path.to_owned();
        for (i, (k, v)) in query.iter().enumerate() {
            full.push(if i == 0 { '?' } else { '&' });
            full.push_str(&format!("{}={}", escape_cookie(k), escape_cookie(v)));
        }
        self.get(&full).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        name: &'static str,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let first = self.call_once(method.clone(), name, path, form).await;
        // A ticket PVE no longer accepts (expired, or the cluster's key rotated) gets one fresh
        // login and one retry; a second 401 is the real answer.
        if let (Err(PveError::Api { status: 401, .. }), Credentials::Password { .. }) =
            (&first, &self.credentials)
        {
            tracing::info!(path, "PVE refused the ticket; logging in again");
            self.ticket.lock().await.take();
            return self.call_once(method, name, path, form).await;
        }
        first
    }

    async fn call_once(
        &self,
        method: reqwest::Method,
        name: &'static str,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        match &self.credentials {
            Credentials::Token { token_id, secret } => {
                req = req.header("Authorization", format!("PVEAPIToken={token_id}={secret}"));
            }
            Credentials::Password { .. } => {
                let mut guard = self.ticket.lock().await;
                // PVE tickets live 2 h; renew well before that rather than wait for a refusal.
                if guard.as_ref().is_none_or(|t| t.issued.elapsed() > TICKET_RENEW_AFTER) {
                    *guard = Some(self.login().await?);
                }
                let t = guard.as_ref().expect("ticket set above");
                req = req.header("Cookie", format!("PVEAuthCookie={}", t.cookie));
                if method != reqwest::Method::GET {
                    req = req.header("CSRFPreventionToken", &t.csrf);
                }
            }
        }
        if !form.is_empty() {
            req = req.form(form);
        }
        let resp = req.send().await.map_err(|source| PveError::Transport {
            method: name,
            path: path.into(),
            source,
        })?;
        decode(name, path, resp).await
    }

    async fn login(&self) -> Result<Ticket, PveError> {
        let Credentials::Password { user, password } = &self.credentials else {
            return Err(PveError::Setup("login needs a password".into()));
        };
        let path = "/access/ticket";
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&[("username", user.as_str()), ("password", password.as_str())])
            .send()
            .await
            .map_err(|source| PveError::Transport { method: "POST", path: path.into(), source })?;
        let data = decode("POST", path, resp).await?;
        let field = |k: &str| {
            data.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| PveError::Decode {
                path: path.into(),
                detail: format!("login answer lacks `{k}`"),
            })
        };
        // The ticket goes into a cookie; PVE expects it URI-escaped there (it contains ':' and '=').
        let ticket = field("ticket")?;
        Ok(Ticket {
            cookie: escape_cookie(&ticket),
            csrf: field("CSRFPreventionToken")?,
            issued: std::time::Instant::now(),
        })
    }
}

/// A PVE user's own credentials, as the panel sends them: checked by asking PVE as that user.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum UserCredential {
    /// The `PVEAuthCookie` ticket (not escaped).
    Ticket(String),
    /// `user@realm!tokenid=secret`, from an `Authorization: PVEAPIToken=...` header.
    Token(String),
}

impl PveClient {
    /// `GET path` as the user behind `cred` (for permission checks), not as the service.
    pub async fn get_as_user<T: DeserializeOwned>(
        &self,
        path: &str,
        cred: &UserCredential,
    ) -> Result<T, PveError> {
        let req = self.http.get(format!("{}{path}", self.base));
        let req = match cred {
            UserCredential::Ticket(t) => req.header("Cookie", format!("PVEAuthCookie={}", escape_cookie(t))),
            UserCredential::Token(t) => req.header("Authorization", format!("PVEAPIToken={t}")),
        };
        let resp = req.send().await.map_err(|source| PveError::Transport {
            method: "GET",
            path: path.into(),
            source,
        })?;
        let data = decode("GET", path, resp).await?;
        serde_json::from_value(data)
            .map_err(|e| PveError::Decode { path: path.into(), detail: e.to_string() })
    }

    /// Logs a user in at PVE (`POST /access/ticket`) and returns PVE's answer (`ticket`,
    /// `CSRFPreventionToken`, `username`, `cap`).
    pub async fn login_user(&self, username: &str, password: &str) -> Result<Value, PveError> {
        let path = "/access/ticket";
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .map_err(|source| PveError::Transport { method: "POST", path: path.into(), source })?;
        decode("POST", path, resp).await
    }
}

/// URI-escapes a ticket for the `PVEAuthCookie` cookie (it contains ':' and '=').
pub fn escape_cookie(ticket: &str) -> String {
    ticket
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn decode(method: &'static str, path: &str, resp: reqwest::Response) -> Result<Value, PveError> {
    let status = resp.status();
    let body =
        resp.bytes().await.map_err(|source| PveError::Transport { method, path: path.into(), source })?;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    if !status.is_success() {
        // PVE puts its message in `message` (json format); fall back to the raw body.
        let mut message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(|m| m.trim_end().to_owned())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        if let Some(errors) = parsed.as_ref().and_then(|v| v.get("errors")).filter(|e| !e.is_null()) {
            message = format!("{message} {errors}");
        }
        return Err(PveError::Api { method, path: path.into(), status: status.as_u16(), message });
    }
    match parsed {
        Some(Value::Object(mut o)) if o.contains_key("data") => Ok(o.remove("data").unwrap_or(Value::Null)),
        _ => Err(PveError::Decode {
            path: path.into(),
            detail: "body is not a JSON object with `data`".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_uri_escaped_for_the_cookie() {
        assert_eq!(
            escape_cookie("PVE:root@pam:4EEC61E2::a+b/c="),
            "PVE%3Aroot%40pam%3A4EEC61E2%3A%3Aa%2Bb%2Fc%3D"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Credentials::Token { token_id: "root@pam!x".into(), secret: "s3cret".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = Credentials::Password { user: "root@pam".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
