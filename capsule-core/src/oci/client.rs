//! [`Client`]: the OCI distribution API for one repository, over ureq.
//!
//! Plain HTTP for loopback hosts (or when asked), else HTTPS with rustls and the system's CA
//! store (`native-certs`). Every request goes through [`Client::send`], which on a 401 answers
//! the registry's challenge once ([`super::auth`]) and retries; the `Authorization` it earned
//! is kept for the next requests. Bodies are streamed; small ones (manifests, maps, tokens) are
//! read with a cap. Redirects (a registry may send blob GETs to a storage host) are followed
//! without the `Authorization` header, ureq's default.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use super::auth::{self, Challenge, Credentials};
use super::layout::{MEDIA_OCI_MANIFEST, Sha256};
use super::{OciError, Reference};

/// How much of an error body goes into a message.
const DETAIL: u64 = 300;

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
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .user_agent(concat!("capsule/", env!("CARGO_PKG_VERSION")))
            .build();
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

    /// Answer a 401's challenge: the `Authorization` value to retry with.
    fn authenticate(&self, resp: &ureq::Response) -> Result<String, OciError> {
        let registry = &self.reference.registry;
        let header = resp.header("www-authenticate").unwrap_or_default();
        let value = match auth::parse_challenge(header) {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic(),
                None => {
                    return Err(OciError::Auth {
                        registry: registry.clone(),
                        reason: "it asks for a password and none is configured (CAPSULE_REGISTRY_USER/\
                                 CAPSULE_REGISTRY_PASSWORD or ~/.docker/config.json)"
                            .into(),
                    });
                }
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                auth::fetch_token(&self.agent, registry, &realm, service.as_deref(), &self.scope, self.creds.as_ref())?
            }
            None => {
                return Err(OciError::Auth {
                    registry: registry.clone(),
                    reason: format!("401 with an unsupported challenge {header:?}"),
                });
            }
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(value.clone());
        }
        Ok(value)
    }

    /// Send `method url` with `headers` and `body`; a 401 is answered once. Returns the response
    /// whatever its status (callers decide which ones are fine).
    pub fn send(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        mut body: Option<Body<'_>>,
    ) -> Result<ureq::Response, OciError> {
        // Credentials go only to the registry itself, never to another host named in a
        // Location header.
        let same_origin = url.starts_with(&format!("{}/", self.origin));
        let mut auth = if same_origin { self.current_auth() } else { None };
        for attempt in 0..2 {
            let mut req = self.agent.request(method, url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(a) = &auth {
                req = req.set("Authorization", a);
            }
            let result = match body.as_mut() {
                Some(open) => {
                    let reader = open().map_err(|source| OciError::Read {
                        what: format!("the body of {method} {url}"),
                        reference: self.reference.to_string(),
                        source,
                    })?;
                    req.send(reader)
                }
                None => req.call(),
            };
            let resp = match result {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(ureq::Error::Transport(t)) => {
                    return Err(OciError::Transport { method, url: url.to_owned(), source: Box::new(t) });
                }
            };
            if resp.status() == 401 && attempt == 0 && same_origin {
                auth = Some(self.authenticate(&resp)?);
                continue;
            }
            return Ok(resp);
        }
        Err(OciError::Auth { registry: self.reference.registry.clone(), reason: format!("{method} {url}: 401 again") })
    }

    /// The error for an unexpected response.
    pub fn status_error(method: &'static str, url: &str, resp: ureq::Response) -> OciError {
        let status = resp.status();
        let mut detail = String::new();
        let _ = resp.into_reader().take(DETAIL).read_to_string(&mut detail);
        OciError::Status { method, url: url.to_owned(), status, detail: detail.trim().to_owned() }
    }

    /// Whether the repository has blob `digest`.
    pub fn has_blob(&self, digest: &Sha256) -> Result<bool, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send("HEAD", &url, &[], None)?;
        match resp.status() {
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
        let location = resp.header("location").unwrap_or_default().to_owned();
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

    /// A reader over blob `digest` (unchecked: the caller hashes what it reads).
    pub fn get_blob(&self, digest: &Sha256) -> Result<Box<dyn Read + Send>, OciError> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.send("GET", &url, &[], None)?;
        if resp.status() != 200 {
            return Err(Self::status_error("GET", &url, resp));
        }
        Ok(resp.into_reader())
    }

    /// Read a whole body of at most `limit` bytes; more is an error, not a truncation.
    fn read_capped(&self, resp: ureq::Response, what: &str, limit: u64) -> Result<Vec<u8>, OciError> {
        let mut out = Vec::new();
        resp.into_reader().take(limit + 1).read_to_end(&mut out).map_err(|source| OciError::Read {
            what: what.to_owned(),
            reference: self.reference.to_string(),
            source,
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
