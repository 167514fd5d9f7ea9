use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
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

/// How the client reaches PVE beyond one URL: more hosts, certificate pinning, retries.
/// `PveClient::new` uses the defaults (one host, CA/system roots, 3 attempts per GET).
#[derive(Clone, Debug)]
pub struct Connection {
    /// More `https://host:8006` URLs of the same cluster, tried in order when the current one
    /// cannot be reached. The client stays on the host that answered.
    pub fallback_urls: Vec<String>,
    /// SHA-256 fingerprint of the PVE certificate (`AA:BB:…`, as `pvenode cert info` and the
    /// node's Certificates panel show it). When set, the certificate is accepted if and only if
    /// it has this fingerprint (whatever signed it): the way to trust a self-signed node
    /// without turning verification off.
    pub fingerprint: Option<String>,
    /// Attempts per GET (idempotent) on a transport error or a 502/503/504; POST and DELETE are
    /// sent once (a migration must never be submitted twice).
    pub get_attempts: u32,
    /// Wait before the second attempt; doubled for each further one, capped at 5 s.
    pub backoff: Duration,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            fallback_urls: Vec::new(),
            fingerprint: None,
            get_attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
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
    /// `https://host:8006/api2/json` per host, in failover order.
    bases: Vec<String>,
    /// Index into `bases` of the host that answered last.
    current: AtomicUsize,
    credentials: Credentials,
    ticket: Mutex<Option<Ticket>>,
    get_attempts: u32,
    backoff: Duration,
    /// Requests sent as the service, and how many of them failed (for `/metrics`).
    calls: AtomicU64,
    errors: AtomicU64,
    /// PVE's clock minus ours in seconds, from the last answer's `Date` header
    /// ([`NO_SKEW_SEEN`] before any).
    skew: AtomicI64,
}

impl PveClient {
    pub fn new(opts: PveOptions) -> Result<PveClient, PveError> {
        PveClient::with_connection(opts, Connection::default())
    }

    /// A client with failover hosts, a pinned certificate fingerprint or other retry settings.
    pub fn with_connection(opts: PveOptions, conn: Connection) -> Result<PveClient, PveError> {
        let mut builder = reqwest::Client::builder().timeout(opts.timeout);
        if opts.insecure {
            builder = builder.use_rustls_tls().danger_accept_invalid_certs(true);
        } else if let Some(fp) = &conn.fingerprint {
            builder = builder.use_preconfigured_tls(pin::client_config(pin::parse(fp)?)?);
        } else {
            builder = builder.use_rustls_tls();
            if let Some(pem) = &opts.ca_pem {
                let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| PveError::Setup(format!("CA certificate is not valid PEM: {e}")))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| PveError::Setup(e.to_string()))?;
        let bases = std::iter::once(&opts.base_url)
            .chain(&conn.fallback_urls)
            .map(|u| format!("{}/api2/json", u.trim_end_matches('/')))
            .collect();
        Ok(PveClient {
            http,
            bases,
            current: AtomicUsize::new(0),
            credentials: opts.credentials,
            ticket: Mutex::new(None),
            get_attempts: conn.get_attempts.max(1),
            backoff: conn.backoff,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skew: AtomicI64::new(NO_SKEW_SEEN),
        })
    }

    /// The host in use now (`https://host:8006`): the first one, or the last that answered.
    pub fn current_url(&self) -> &str {
        self.base().trim_end_matches("/api2/json")
    }

    fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
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

    /// One logical call: GETs are retried on transient failures with exponential backoff; every
    /// attempt goes to the current host and on to the next ones if it cannot be reached.
    async fn call(
        &self,
        method: reqwest::Method,
        name: &'static str,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let idempotent = method == reqwest::Method::GET;
        let attempts = if idempotent { self.get_attempts } else { 1 };
        let mut attempt = 1;
        loop {
            match self.call_hosts(method.clone(), name, path, form).await {
                Err(e) if attempt < attempts && transient(&e) => {
                    let wait = backoff(self.backoff, attempt);
                    tracing::info!(path, attempt, "PVE call failed ({e}); retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Tries the current host, then the others in order, while the failure means the host could
    /// not be reached. A request that reached PVE is never sent to another host; a POST only
    /// moves on when the connection was never made (so PVE cannot have received it).
    async fn call_hosts(
        &self,
        method: reqwest::Method,
        name: &'static str,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let n = self.bases.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut k = 0;
        loop {
            let i = (start + k) % n;
            let result = self.call_authed(&self.bases[i], method.clone(), name, path, form).await;
            match result {
                Err(e) if k + 1 < n && unreachable(&e, method == reqwest::Method::GET) => {
                    tracing::warn!("{}: {e}; trying the next host", self.bases[i]);
                    k += 1;
                }
                other => {
                    if k > 0 && other.is_ok() {
                        tracing::info!("PVE now answers at {}", self.bases[i]);
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return other;
                }
            }
        }
    }

    async fn call_authed(
        &self,
        base: &str,
        method: reqwest::Method,
        name: &'static str,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let first = self.call_once(base, method.clone(), name, path, form).await;
        // A ticket PVE no longer accepts (expired, or the cluster's key rotated) gets one fresh
        // login and one retry; a second 401 is the real answer.
        if let (Err(PveError::Api { status: 401, .. }), Credentials::Password { .. }) =
            (&first, &self.credentials)
        {
            tracing::info!(path, "PVE refused the ticket; logging in again");
            self.ticket.lock().await.take();
            return self.call_once(base, method, name, path, form).await;
        }
        first
    }

    async fn call_once(
        &self,
        base: &str,
        method: reqwest::Method,
        name: &'static str,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PveError> {
        let url = format!("{base}{path}");
        let mut req = self.http.request(method.clone(), &url);
        match &self.credentials {
            Credentials::Token { token_id, secret } => {
                req = req.header("Authorization", format!("PVEAPIToken={token_id}={secret}"));
            }
            Credentials::Password { .. } => {
                let mut guard = self.ticket.lock().await;
                // PVE tickets live 2 h; renew well before that rather than wait for a refusal.
                if guard.as_ref().is_none_or(|t| t.issued.elapsed() > TICKET_RENEW_AFTER) {
                    *guard = Some(self.login(base).await?);
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
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = match req.send().await {
            Ok(resp) => {
                self.note_server_clock(resp.headers());
                decode(name, path, resp).await
            }
            Err(source) => Err(PveError::Transport { method: name, path: path.into(), source }),
        };
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Keeps PVE's clock from an answer's `Date` header (seconds; absent or unreadable: unchanged).
    fn note_server_clock(&self, headers: &reqwest::header::HeaderMap) {
        let server = headers
            .get(reqwest::header::DATE)
            .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        if let Some(server) = server {
            self.skew.store(server.as_secs() as i64 - crate::unix_now() as i64, Ordering::Relaxed);
        }
    }

    /// PVE's clock now (Unix seconds), from the `Date` header pveproxy puts on every answer and
    /// our clock since; `None` before the first answer or if PVE sent no `Date`. Task times in
    /// PVE's answers are on this clock, which may differ from ours (skew, or a simulator).
    pub fn server_now(&self) -> Option<u64> {
        let skew = self.skew.load(Ordering::Relaxed);
        (skew != NO_SKEW_SEEN).then(|| crate::unix_now().saturating_add_signed(skew))
    }

    /// Requests this client sent as the service (each attempt counts), and how many failed
    /// (transport errors and PVE refusals alike).
    pub fn call_counts(&self) -> (u64, u64) {
        (self.calls.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }

    async fn login(&self, base: &str) -> Result<Ticket, PveError> {
        let Credentials::Password { user, password } = &self.credentials else {
            return Err(PveError::Setup("login needs a password".into()));
        };
        let path = "/access/ticket";
        let resp = self
            .http
            .post(format!("{base}{path}"))
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
        let req = self.http.get(format!("{}{path}", self.base()));
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
            .post(format!("{}{path}", self.base()))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .map_err(|source| PveError::Transport { method: "POST", path: path.into(), source })?;
        decode("POST", path, resp).await
    }
}

/// [`PveClient::skew`] before PVE has answered.
const NO_SKEW_SEEN: i64 = i64::MIN;

/// Worth another attempt of an idempotent call: the network failed, or a proxy in front of PVE
/// (or pveproxy itself, restarting) answered 502/503/504. PVE's own refusals (4xx, 500 with its
/// message, 595 node unreachable) are answers, not retried.
fn transient(e: &PveError) -> bool {
    match e {
        PveError::Transport { .. } => true,
        PveError::Api { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

/// The host could not be reached: the connection was never made, or (GET only) it timed out.
fn unreachable(e: &PveError, idempotent: bool) -> bool {
    match e {
        PveError::Transport { source, .. } => source.is_connect() || (idempotent && source.is_timeout()),
        _ => false,
    }
}

/// `base`, doubled per attempt after the first, capped at 5 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(5))
}

/// Certificate pinning: accept exactly one server certificate, by its SHA-256.
mod pin {
    use super::PveError;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use std::sync::Arc;

    /// `AA:BB:…` or plain hex, any case → 32 bytes.
    pub fn parse(text: &str) -> Result<Vec<u8>, PveError> {
        let hex: String = text.chars().filter(|c| *c != ':').collect();
        let bytes: Option<Vec<u8>> = (hex.len() == 64 && hex.is_ascii())
            .then(|| (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect())
            .flatten();
        bytes.ok_or_else(|| {
            PveError::Setup(format!(
                "certificate fingerprint '{text}' is not a SHA-256 fingerprint: expected 32 hex bytes \
                 like AA:BB:…:FF (see `pvenode cert info` on the node)"
            ))
        })
    }

    pub fn show(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    pub fn client_config(sha256: Vec<u8>) -> Result<rustls::ClientConfig, PveError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Pinned { sha256, provider: provider.clone() };
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PveError::Setup(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    #[derive(Debug)]
    struct Pinned {
        sha256: Vec<u8>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let got = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
            if got.as_ref() == self.sha256.as_slice() {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(format!(
                    "server certificate fingerprint {} is not the pinned {}",
                    show(got.as_ref()),
                    show(&self.sha256)
                )))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
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
    fn fingerprints_parse_with_or_without_colons_and_bad_ones_say_what_is_expected() {
        let fp = "aa:BB:".repeat(15) + "01:02";
        assert_eq!(pin::parse(&fp).unwrap().len(), 32);
        assert_eq!(pin::show(&pin::parse(&fp.replace(':', "")).unwrap()), fp.to_uppercase());
        let err = pin::parse("AA:BB").unwrap_err().to_string();
        assert!(err.contains("'AA:BB'") && err.contains("32 hex bytes"), "{err}");
        assert!(pin::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(200);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 3), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), Duration::from_secs(5));
    }

    #[test]
    fn only_gateway_errors_and_network_failures_are_retried() {
        let api = |status| PveError::Api { method: "GET", path: "/x".into(), status, message: String::new() };
        assert!(transient(&api(503)) && transient(&api(502)) && transient(&api(504)));
        assert!(!transient(&api(500)) && !transient(&api(403)) && !transient(&api(595)));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Credentials::Token { token_id: "root@pam!x".into(), secret: "s3cret".into() };
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = Credentials::Password { user: "root@pam".into(), password: "hunter2".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
