//! [`Reference`]: `HOST[:PORT]/REPO[:TAG|@sha256:HEX]`, validated against the grammar of the
//! OCI distribution spec (and docker's reference grammar for the host part).
//!
//! The host is never implied: there is no default registry, so a reference always says where
//! the bytes go. Loopback hosts (`localhost`, 127.0.0.0/8, `[::1]`) are spoken to over plain
//! HTTP; every other host over HTTPS unless the caller asks for plain HTTP (as `oras
//! --plain-http` does).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use super::OciError;

/// The longest `HOST/REPO` accepted (the distribution spec's limit on repository names).
const MAX_NAME: usize = 255;

/// What a reference points at inside the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tag (`latest` when none is given).
    Tag(String),
    /// A manifest digest, `sha256:` and 64 lower-case hex digits.
    Digest(String),
}

/// A parsed, validated registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (IPv6 in brackets).
    pub registry: String,
    /// The repository path, e.g. `team/app`.
    pub repository: String,
    /// Tag or digest.
    pub target: Target,
}

fn bad(input: &str, reason: &'static str) -> OciError {
    OciError::Reference { input: input.to_owned(), reason }
}

/// `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
fn domain_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+", followed by an alphanumeric (the last byte is
        // one, checked above).
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
fn valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_host(input: &str, host: &str) -> Result<(), OciError> {
    let port = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(|| bad(input, "unclosed '[' in the host"))?;
        ip.parse::<Ipv6Addr>().map_err(|_| bad(input, "invalid IPv6 address in the host"))?;
        match after {
            "" => None,
            a => Some(a.strip_prefix(':').ok_or_else(|| bad(input, "expected ':PORT' after ']'"))?),
        }
    } else {
        let (name, port) = host.split_once(':').map_or((host, None), |(n, p)| (n, Some(p)));
        if !name.split('.').all(domain_label) {
            return Err(bad(input, "the host must be a domain name or an IP address"));
        }
        port
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(bad(input, "the port must be a number from 1 to 65535"));
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = OciError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (host, rest) =
            input.split_once('/').ok_or_else(|| bad(input, "expected HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]"))?;
        valid_host(input, host)?;
        let (repo, target) = if let Some((repo, digest)) = rest.split_once('@') {
            let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad(input, "only sha256 digests are supported"))?;
            if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
                return Err(bad(input, "a sha256 digest is 64 lower-case hex digits"));
            }
            (repo, Target::Digest(digest.to_owned()))
        } else {
            let last = rest.rfind('/').map_or(0, |i| i + 1);
            match rest[last..].split_once(':') {
                Some((_, tag)) => {
                    if !valid_tag(tag) {
                        return Err(bad(
                            input,
                            "a tag is 1-128 of a-z A-Z 0-9 _ . - and starts with a letter, digit or _",
                        ));
                    }
                    (&rest[..last + rest[last..].len() - tag.len() - 1], Target::Tag(tag.to_owned()))
                }
                None => (rest, Target::Tag("latest".to_owned())),
            }
        };
        if repo.is_empty() || !repo.split('/').all(path_component) {
            return Err(bad(
                input,
                "a repository is lower-case path components (a-z 0-9, separated by '.', '_', '__' or '-')",
            ));
        }
        if host.len() + 1 + repo.len() > MAX_NAME {
            return Err(bad(input, "HOST/REPO is longer than 255 characters"));
        }
        Ok(Reference { registry: host.to_owned(), repository: repo.to_owned(), target })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(t) => write!(f, "{}/{}:{t}", self.registry, self.repository),
            Target::Digest(d) => write!(f, "{}/{}@{d}", self.registry, self.repository),
        }
    }
}

impl Reference {
    /// The host without the port (IPv6 without brackets).
    pub fn host(&self) -> &str {
        if let Some(rest) = self.registry.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(h, _)| h);
        }
        self.registry.split_once(':').map_or(&self.registry, |(h, _)| h)
    }

    /// Whether the host is this machine's loopback (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        let h = self.host();
        h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// `http` for loopback hosts or when `plain_http`, else `https`.
    pub fn scheme(&self, plain_http: bool) -> &'static str {
        if plain_http || self.is_loopback() { "http" } else { "https" }
    }

    /// The tag or digest, as it goes into a `/manifests/` URL.
    pub fn target_str(&self) -> &str {
        match &self.target {
            Target::Tag(t) | Target::Digest(t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        let r: Reference = "127.0.0.1:5000/team/app:v1".parse().unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "team/app"));
        assert_eq!(r.target, Target::Tag("v1".into()));
        assert!(r.is_loopback());
        assert_eq!(r.scheme(false), "http");
        let r: Reference = "registry.example.org/a.b/c__d/e-f".parse().unwrap();
        assert_eq!(r.target, Target::Tag("latest".into()));
        assert_eq!(r.scheme(false), "https");
        assert_eq!(r.scheme(true), "http");
        assert_eq!(r.to_string(), "registry.example.org/a.b/c__d/e-f:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r: Reference = format!("[::1]:5000/x@{d}").parse().unwrap();
        assert_eq!(r.target, Target::Digest(d));
        assert_eq!(r.host(), "::1");
        assert!(r.is_loopback());
        assert!("localhost/x:y".parse::<Reference>().unwrap().is_loopback());
        assert!(!"10.231.97.1:5000/x".parse::<Reference>().unwrap().is_loopback());
    }

    #[test]
    fn refuses_with_a_reason() {
        for bad in [
            "app",
            "host/App",
            "host/a//b",
            "host/a..b",
            "host/-a",
            "host/a:",
            "host/a:-x",
            "host:0/a",
            "host:99999/a",
            "ho_st/a",
            "[::1/a",
            "host/a@sha1:00",
            "host/a@sha256:ABC",
        ] {
            match bad.parse::<Reference>() {
                Err(OciError::Reference { input, .. }) => assert_eq!(input, bad),
                r => panic!("{bad}: {r:?}"),
            }
        }
        let long = format!("h/{}", "a".repeat(300));
        assert!(long.parse::<Reference>().is_err());
    }
}
