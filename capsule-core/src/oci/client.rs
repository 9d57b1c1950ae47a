//! [`Client`]: the OCI distribution API for one repository, over ureq.
//!
//! Plain HTTP for loopback hosts (or when asked), else HTTPS with rustls and the system's CA
//! store (read once per process with rustls-native-certs, which honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`). Every request goes through [`Client::send`], which on a 401 answers
//! the registry's challenge once ([`super::auth`]) and retries; the `Authorization` it earned
//! is kept for the next requests. Bodies are streamed; small ones (manifests, maps, tokens) are
//! read with a cap. Redirects (a registry may send blob GETs to a storage host) are followed
//! without the `Authorization` header, ureq's default.

use std::io::Read;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::auth::{self, Challenge, Credentials};
use super::deadline;
use super::layout::{MEDIA_OCI_MANIFEST, Sha256};
use super::{OciError, Reference};

/// How much of an error body goes into a message.
const DETAIL: u64 = 300;

/// A response, whatever its status.
pub type Response = ureq::http::Response<ureq::Body>;

/// The system's CA certificates (`/etc/ssl/certs`, or what `SSL_CERT_FILE`/`SSL_CERT_DIR`
/// name), read once. Certificates that do not load are left out, as rustls-native-certs does;
/// none at all leaves every HTTPS registry refused with the hint naming the store.
fn system_roots() -> RootCerts {
    static ROOTS: OnceLock<RootCerts> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system CA certificate was not loaded");
            }
            let certs: Vec<Certificate<'static>> =
                found.certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
            RootCerts::new_with_certs(&certs)
        })
        .clone()
}

/// One repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    /// `scheme://host[:port]`.
    origin: String,
    reference: Reference,
    creds: Option<Credentials>,
    /// `repository:REPO:pull` or `…:pull,push`.
    scope: String,
    authorization: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({}/{})", self.origin, self.reference.repository)
    }
}

/// A request body: opened anew for each attempt (a retry after a 401 sends it again).
pub type Body<'a> = &'a mut dyn FnMut() -> std::io::Result<Box<dyn Read + Send>>;

impl Client {
    /// A client for `reference`'s repository; `push` asks for push rights when authenticating.
    pub fn new(reference: &Reference, plain_http: bool, push: bool) -> Client {
        // Every status is a response (callers decide); redirects are followed without the
        // `Authorization` header (ureq's default); each request gets the operation's time
        // left as its overall timeout (`send`). The system's roots even for a plain-HTTP
        // registry: it may redirect a download to an HTTPS storage host, which must be trusted
        // the same way (ureq's own default would be a bundled list).
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .timeout_per_write(Some(Duration::from_secs(120)))
            .user_agent(concat!("capsule/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(system_roots()).build());
        let agent = ureq::Agent::new_with_config(config.build());
        let actions = if push { "pull,push" } else { "pull" };
        Client {
            agent,
            origin: format!("{}://{}", reference.scheme(plain_http), reference.registry),
            scope: format!("repository:{}:{actions}", reference.repository),
            creds: auth::credentials(&reference.registry),
            reference: reference.clone(),
            authorization: Mutex::new(None),
        }
    }

    /// The reference this client was made for.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.origin, self.reference.repository)
    }

    fn current_auth(&self) -> Option<String> {
        self.authorization.lock().ok().and_then(|a| a.clone())
    }

    /// Answer the 401 that `method url` got: the `Authorization` value to retry with.
    fn authenticate(&self, method: &'static str, url: &str, resp: &Response) -> Result<String, OciError> {
        let registry = &self.reference.registry;
        let fail = |reason: String| OciError::Auth { registry: registry.clone(), reason };
        let header = header(resp, "www-authenticate").unwrap_or_default();
        let value = match auth::parse_challenge(header) {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic(),
                None => {
                    return Err(fail(format!(
                        "{method} {url} answered 401 (it asks for a user name and password) and no credentials \
                         are configured: set CAPSULE_REGISTRY_USER and CAPSULE_REGISTRY_PASSWORD, or add an \
                         `auths` entry for {registry} to ~/.docker/config.json"
                    )));
                }
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                auth::fetch_token(&self.agent, registry, &realm, service.as_deref(), &self.scope, self.creds.as_ref())?
            }
            None => return Err(fail(format!("{method} {url} answered 401 with an unsupported challenge {header:?}"))),
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value.clone());
        }
        Ok(value)
    }

    fn deadline_error(&self, method: &'static str, url: &str) -> OciError {
        OciError::Deadline {
            registry: self.reference.registry.clone(),
            reference: self.reference.to_string(),
            method,
            url: url.to_owned(),
            secs: deadline::limit().as_secs(),
        }
    }

    /// Wait `delay` before a retry if the deadline leaves room for it and another attempt.
    fn wait_to_retry(deadline: Instant, delay: Duration) -> bool {
        if deadline::left(deadline) <= delay + Duration::from_millis(100) {
            return false;
        }
        std::thread::sleep(delay);
        true
    }

    /// The error for a 401 that the answer to the challenge got too.
    fn refused(&self, method: &'static str, url: &str) -> OciError {
        let reason = match &self.creds {
            Some(c) => format!(
                "{method} {url} answered 401 to the credentials of user {:?} (from {}): wrong user name or password?",
                c.user, c.origin
            ),
            None => format!("{method} {url} answered 401 to an anonymous token: credentials are needed"),
        };
        OciError::Auth { registry: self.reference.registry.clone(), reason }
    }

    /// Send `method url` with `headers` and `body`; a 401 is answered once, and a second one is
    /// an [`OciError::Auth`] naming the credentials. Transient failures (a connection refused,
    /// reset or timed out; 429, 500, 502, 503, 504) are retried with exponential backoff
    /// ([`deadline::backoff`], or the registry's `Retry-After`), up to [`deadline::ATTEMPTS`]
    /// sends, within the operation's deadline, past which the request fails with
    /// [`OciError::Deadline`]. Returns any other response whatever its status (callers decide
    /// which ones are fine).
    pub fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        mut body: Option<Body<'_>>,
    ) -> Result<Response, OciError> {
        // Credentials go only to the registry itself, never to another host named in a
        // Location header.
        let same_origin = url.starts_with(&format!("{}/", self.origin));
        let mut auth = if same_origin { self.current_auth() } else { None };
        let mut answered = false;
        let deadline = deadline::deadline();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = deadline::left(deadline);
            if left.is_zero() {
                return Err(self.deadline_error(method, url));
            }
            let mut req = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(a) = &auth {
                req = req.header("Authorization", a.as_str());
            }
            let send_body = match body.as_mut() {
                Some(open) => {
                    let reader = open().map_err(|source| OciError::Read {
                        what: format!("the body of {method} {url}"),
                        reference: self.reference.to_string(),
                        source,
                    })?;
                    ureq::SendBody::from_owned_reader(reader)
                }
                None => ureq::SendBody::none(),
            };
            let result = req
                .body(send_body)
                .map_err(ureq::Error::from)
                .and_then(|r| self.agent.run(self.agent.configure_request(r).timeout_global(Some(left)).build()));
            let resp = match result {
                Ok(r) => r,
                Err(t) => {
                    if deadline::left(deadline).is_zero() {
                        return Err(self.deadline_error(method, url));
                    }
                    let transient =
                        matches!(t, ureq::Error::ConnectionFailed | ureq::Error::Io(_) | ureq::Error::Timeout(_));
                    let err = OciError::transport(method, url, t);
                    let transient = transient && matches!(&err, OciError::Transport { hint, .. } if hint.is_empty());
                    if transient
                        && attempt < deadline::ATTEMPTS
                        && Self::wait_to_retry(deadline, deadline::backoff(attempt))
                    {
                        tracing::debug!(method, url, attempt, error = %err, "retrying");
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status().as_u16();
            if matches!(status, 429 | 500 | 502 | 503 | 504) && attempt < deadline::ATTEMPTS {
                let asked = header(&resp, "retry-after").and_then(|s| s.trim().parse::<u64>().ok());
                let delay = asked.map_or_else(
                    || deadline::backoff(attempt),
                    |s| Duration::from_secs(s).min(deadline::MAX_RETRY_AFTER),
                );
                if Self::wait_to_retry(deadline, delay) {
                    tracing::debug!(method, url, attempt, status, "retrying");
                    continue;
                }
            }
            if status == 401 && same_origin {
                if answered {
                    return Err(self.refused(method, url));
                }
                auth = Some(self.authenticate(method, url, &resp)?);
                answered = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The error for an unexpected response.
    pub fn status_error(method: &'static str, url: &str, resp: Response) -> OciError {
        let status = resp.status().as_u16();
        let mut detail = String::new();
        let _ = resp.into_body().into_reader().take(DETAIL).read_to_string(&mut detail);
        OciError::Status { method, url: url.to_owned(), status, detail: detail.trim().to_owned() }
    }

    /// Whether the repository has blob `digest`.
    pub fn has_blob(&self, digest: &Sha256) -> Result<bool, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send("HEAD", &url, &[], None)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Self::status_error("HEAD", &url, resp)),
        }
    }

    /// Upload blob `digest` of `size` bytes monolithically (POST, then PUT with the digest).
    pub fn upload_blob(&self, digest: &Sha256, size: u64, body: Body<'_>) -> Result<(), OciError> {
        let url = self.url("blobs/uploads/");
        let resp = self.send("POST", &url, &[("Content-Length", "0")], None)?;
        if resp.status() != 202 {
            return Err(Self::status_error("POST", &url, resp));
        }
        let location = header(&resp, "location").unwrap_or_default().to_owned();
        let mut put = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin)
        } else {
            return Err(Self::status_error("POST", &url, resp));
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={digest}"));
        let len = size.to_string();
        let headers = [("Content-Type", "application/octet-stream"), ("Content-Length", len.as_str())];
        let resp = self.send("PUT", &put, &headers, Some(body))?;
        if resp.status() != 201 {
            return Err(Self::status_error("PUT", &put, resp));
        }
        Ok(())
    }

    /// Put the OCI manifest `bytes` under `tag`.
    pub fn put_manifest(&self, tag: &str, bytes: &[u8]) -> Result<(), OciError> {
        let url = self.url(&format!("manifests/{tag}"));
        let len = bytes.len().to_string();
        let headers = [("Content-Type", MEDIA_OCI_MANIFEST), ("Content-Length", len.as_str())];
        let owned = bytes.to_vec();
        let mut open = || Ok(Box::new(std::io::Cursor::new(owned.clone())) as Box<dyn Read + Send>);
        let resp = self.send("PUT", &url, &headers, Some(&mut open))?;
        if resp.status() != 201 {
            return Err(Self::status_error("PUT", &url, resp));
        }
        Ok(())
    }

    /// The manifest `target` (tag or digest) names, at most `limit` bytes.
    pub fn get_manifest(&self, target: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let url = self.url(&format!("manifests/{target}"));
        let resp = self.send("GET", &url, &[("Accept", MEDIA_OCI_MANIFEST)], None)?;
        if resp.status() != 200 {
            return Err(Self::status_error("GET", &url, resp));
        }
        self.read_capped(resp, "the OCI manifest", limit)
    }

    /// A reader over blob `digest` (unchecked: the caller hashes what it reads), which fails
    /// once the operation's deadline has passed.
    pub fn get_blob(&self, digest: &Sha256) -> Result<Box<dyn Read + Send>, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send("GET", &url, &[], None)?;
        if resp.status() != 200 {
            return Err(Self::status_error("GET", &url, resp));
        }
        Ok(Box::new(self.bounded(resp.into_body().into_reader())))
    }

    /// `inner`, failing past the operation's deadline with an error naming the registry.
    fn bounded<R: Read>(&self, inner: R) -> deadline::Reader<R> {
        deadline::Reader {
            inner,
            deadline: deadline::deadline(),
            registry: self.reference.registry.clone(),
            reference: self.reference.to_string(),
        }
    }

    /// Read a whole body of at most `limit` bytes; more is an error, not a truncation.
    fn read_capped(&self, resp: Response, what: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let mut out = Vec::new();
        self.bounded(resp.into_body().into_reader()).take(limit + 1).read_to_end(&mut out).map_err(|source| {
            OciError::Read { what: what.to_owned(), reference: self.reference.to_string(), source }
        })?;
        if out.len() as u64 > limit {
            return Err(OciError::invalid(
                &self.reference,
                "OCI manifest",
                self.reference.target_str(),
                format!("over the {limit}-byte limit"),
            ));
        }
        Ok(out)
    }
}

/// Header `name` of `resp`, if it is there and text.
pub(crate) fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A registry on 127.0.0.1 that wants a bearer token from its own `/token` realm, which hands
    /// out `tok` for `Basic u:p` only; every manifest is `{}`. Returns the port and the requests
    /// seen (path, Authorization).
    fn bearer_registry() -> (u16, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(20) {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        auth = v.trim().to_owned();
                    }
                }
                let basic = Credentials { user: "u".into(), password: "p".into(), origin: String::new() }.basic();
                let (status, extra, body) = if path.starts_with("/token?") {
                    if auth == basic {
                        ("200 OK", String::new(), r#"{"token":"tok"}"#)
                    } else {
                        ("401 No", String::new(), "")
                    }
                } else if auth == "Bearer tok" {
                    ("200 OK", String::new(), "{}")
                } else {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\"\r\n"
                    );
                    ("401 Unauthorized", challenge, "")
                };
                log.lock().unwrap().push((path, auth));
                let head =
                    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body.as_bytes()));
            }
        });
        (port, seen)
    }

    #[test]
    fn the_bearer_flow_gets_a_token_once_and_a_refused_password_is_an_auth_error() {
        let (port, seen) = bearer_registry();
        let r: Reference = format!("127.0.0.1:{port}/team/app:v1").parse().unwrap();
        let mut c = Client::new(&r, false, false);
        c.creds = Some(Credentials { user: "u".into(), password: "p".into(), origin: "test".into() });
        assert_eq!(c.get_manifest("v1", 100).unwrap(), b"{}");
        assert_eq!(c.get_manifest("v1", 100).unwrap(), b"{}");
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[0], ("/v2/team/app/manifests/v1".to_owned(), String::new()));
        assert!(seen[1].0.starts_with("/token?") && seen[1].0.contains("service=fake"), "{seen:?}");
        assert!(seen[1].0.contains("scope=repository") && seen[1].0.contains("pull"), "{seen:?}");
        assert_eq!(seen[1].1, "Basic dTpw");
        // The token is kept for the next request.
        for s in &seen[2..] {
            assert_eq!(s, &("/v2/team/app/manifests/v1".to_owned(), "Bearer tok".to_owned()));
        }

        c = Client::new(&r, false, false);
        c.creds = Some(Credentials { user: "u".into(), password: "wrong".into(), origin: "test".into() });
        match c.get_manifest("v1", 100) {
            Err(OciError::Auth { registry, reason }) => {
                assert_eq!(registry, format!("127.0.0.1:{port}"));
                assert!(
                    reason.contains("token service") && reason.contains("401 to the credentials of user \"u\""),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
