//! Registry credentials and the token flow.
//!
//! Credentials, first found wins: the environment (`CAPSULE_REGISTRY_USER` and
//! `CAPSULE_REGISTRY_PASSWORD`, both set), then docker's `config.json`
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): the `auths` entry for the
//! registry's `host[:port]` (also matched as `https://host[:port]` or with a `/v1/`-style path),
//! whose `auth` is base64 of `user:password`. Credential helpers (`credsStore`) are not run.
//!
//! On a 401 the client reads `WWW-Authenticate`: `Basic` → it retries with the credentials;
//! `Bearer realm=…,service=…,scope=…` → it asks the realm for a token (with the credentials
//! as basic auth when it has them, anonymously otherwise) and retries with
//! `Authorization: Bearer <token>`.

use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::OciError;

/// The largest token response read.
const MAX_TOKEN_BODY: u64 = 1 << 20;

/// A user name and password (or token) for one registry.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password or access token.
    pub password: String,
    /// Where they came from (the environment, or a config.json path), for error messages.
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

impl Credentials {
    /// `Basic base64(user:password)`.
    pub fn basic(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.user, self.password)))
    }
}

/// The credentials for `registry` (`host[:port]`), per the module docs.
pub fn credentials(registry: &str) -> Option<Credentials> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(user), Some(password)) = (env("CAPSULE_REGISTRY_USER"), env("CAPSULE_REGISTRY_PASSWORD")) {
        return Some(Credentials {
            user,
            password,
            origin: "CAPSULE_REGISTRY_USER/CAPSULE_REGISTRY_PASSWORD".to_owned(),
        });
    }
    let path = match env("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => PathBuf::from(env("HOME")?).join(".docker/config.json"),
    };
    let text = std::fs::File::open(&path).ok()?;
    let mut body = String::new();
    text.take(MAX_TOKEN_BODY).read_to_string(&mut body).ok()?;
    from_docker_config(&body, registry).map(|c| Credentials { origin: path.display().to_string(), ..c })
}

/// The entry for `registry` in a docker `config.json`.
fn from_docker_config(json: &str, registry: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(k, v)| {
        let host = k.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        (host == registry).then_some(v)
    })?;
    let raw = STANDARD.decode(entry.get("auth")?.as_str()?).ok()?;
    let (user, password) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some(Credentials { user: user.to_owned(), password: password.to_owned(), origin: "config.json".to_owned() })
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// `service`, if given.
        service: Option<String>,
        /// `scope`, if given.
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value (one challenge; quoted or bare parameter values).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service, mut scope) = (None, None, None);
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, a)| (v, a)),
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            "scope" => scope = Some(value.to_owned()),
            _ => {}
        }
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(Challenge::Bearer { realm: realm?, service, scope })
}

/// Ask a token service for a bearer token.
pub fn fetch_token(
    agent: &ureq::Agent,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<String, OciError> {
    let fail = |reason: String| OciError::Auth { registry: registry.to_owned(), reason };
    let left = super::deadline::left(super::deadline::deadline());
    if left.is_zero() {
        return Err(fail(format!("token service {realm}: the operation's deadline has passed")));
    }
    let mut req = agent.get(realm).query("scope", scope).config().timeout_global(Some(left)).build();
    if let Some(s) = service {
        req = req.query("service", s);
    }
    if let Some(c) = creds {
        req = req.header("Authorization", &c.basic());
    }
    let resp = req.call().map_err(|e| fail(format!("token service {realm}: {e}")))?;
    let code = resp.status().as_u16();
    if code != 200 {
        let to = creds.map_or_else(
            || "an anonymous request".to_owned(),
            |c| format!("the credentials of user {:?} (from {})", c.user, c.origin),
        );
        return Err(fail(format!("token service {realm} answered {code} to {to}")));
    }
    let mut body = String::new();
    resp.into_body()
        .into_reader()
        .take(MAX_TOKEN_BODY)
        .read_to_string(&mut body)
        .map_err(|e| fail(format!("reading the token from {realm}: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| fail(format!("token service {realm} sent invalid JSON: {e}")))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(|t| format!("Bearer {t}"))
        .ok_or_else(|| fail(format!("token service {realm} sent no token")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        let c = parse_challenge(
            "Bearer realm=\"https://auth.example/token\",service=\"reg.example\",scope=\"repository:a/b:pull,push\"",
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://t/x"),
            Some(Challenge::Bearer { realm: "https://t/x".into(), service: None, scope: None })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config() {
        let cfg = r#"{"auths": {"https://reg.example:5000": {"auth": "dXNlcjpwYTpzcw=="}, "other": {}}}"#;
        let c = from_docker_config(cfg, "reg.example:5000").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("user", "pa:ss"));
        assert!(from_docker_config(cfg, "reg.example").is_none());
        assert_eq!(c.basic(), "Basic dXNlcjpwYTpzcw==");
    }
}
