//! OCI push and pull: capsules travel through any OCI distribution registry.
//!
//! - [`reference`]: `HOST[:PORT]/REPO[:TAG|@sha256:…]`, parsed and validated.
//! - [`layout`]: media types, the OCI image manifest, [`layout::BlobMap`] (blake3 ↔ sha256).
//! - [`auth`]: credentials (environment, `~/.docker/config.json`) and the token flow.
//! - [`client`]: the distribution API over HTTP(S) (ureq, rustls, the system's CA store).
//! - [`push`]: upload what the registry lacks (HEAD first), then the manifest.
//! - [`pull`]: download what the store lacks, checking every byte, commit only at the end.
//! - [`lazy`]: `pull --lazy` records where the blobs are (`remotes/<manifest digest>`), and
//!   `run` fetches each blob on first open through `run::materialize::ensure_cache`.
//!
//! Invariants, as for import: nothing read from the network is trusted. Bodies are read with a
//! cap; the OCI manifest, the capsule manifest and the blob map are validated; every blob is
//! checked against its sha256 while it downloads and against its blake3 after decompression;
//! pull stages everything before committing, so an interrupted or tampered pull leaves the
//! store as it was. Every error names the reference and the digest concerned.

pub mod auth;
pub mod client;
pub mod deadline;
pub mod layout;
pub mod lazy;
pub mod pull;
pub mod push;
pub mod reference;

use crate::digest::Digest;
use crate::manifest::ManifestError;
use crate::store::StoreError;

pub use layout::Sha256;
pub use pull::{PullOptions, PullSummary, pull};
pub use push::{PushSummary, push};
pub use reference::Reference;

/// Errors from push, pull and lazy fetch.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A reference that does not follow the grammar.
    #[error("invalid registry reference {input:?}: {reason}")]
    Reference {
        /// What was given.
        input: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The connection failed (DNS, TCP, TLS, timeout).
    #[error("{method} {url} failed{hint}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// What to check, for the TLS failures a user can fix ("" otherwise).
        hint: &'static str,
        /// ureq's reason.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: the registry answered {status} {detail}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the registry's error body.
        detail: String,
    },
    /// A registry operation did not finish within its deadline ([`deadline`]).
    #[error(
        "registry {registry} did not complete {method} {url} for {reference} within the deadline of {secs} s \
         (CAPSULE_REGISTRY_TIMEOUT sets it)"
    )]
    Deadline {
        /// `host[:port]`.
        registry: String,
        /// The reference.
        reference: String,
        /// The request under way.
        method: &'static str,
        /// Its URL.
        url: String,
        /// The limit, in seconds.
        secs: u64,
    },
    /// Authentication was refused or the token service failed.
    #[error("registry {registry} refused authentication: {reason}")]
    Auth {
        /// `host[:port]`.
        registry: String,
        /// Why.
        reason: String,
    },
    /// Reading a response body failed.
    #[error("failed to read {what} from {reference}")]
    Read {
        /// What was being read.
        what: String,
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A manifest, map or blob that is not what it claims to be.
    #[error("{reference}: {what} {digest} is invalid: {reason}")]
    Invalid {
        /// The reference.
        reference: String,
        /// "OCI manifest", "blob map", "blob", …
        what: &'static str,
        /// Its digest (sha256, or blake3 where that is the name).
        digest: String,
        /// Why.
        reason: String,
    },
    /// The capsule manifest (the config blob) does not validate.
    #[error("{reference}: capsule manifest {digest} is invalid")]
    Capsule {
        /// The reference.
        reference: String,
        /// Its sha256.
        digest: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A downloaded blob that does not decompress or hash to its blake3 digest.
    #[error("{reference}: blob {sha256} (store digest {blake3}) is damaged")]
    BadBlob {
        /// The reference.
        reference: String,
        /// The OCI digest.
        sha256: String,
        /// The store digest.
        blake3: Digest,
        /// What the store found.
        #[source]
        source: StoreError,
    },
    /// The capsule has blobs a lazy pull did not fetch yet.
    #[error(
        "capsule {capsule} was pulled lazily and {missing} of its blobs are not fetched; run `capsule fetch {capsule}`"
    )]
    NotFetched {
        /// `name:tag`.
        capsule: String,
        /// How many blobs are missing.
        missing: usize,
    },
    /// A push by digest (push needs a tag).
    #[error("cannot push to {reference}: push needs a tag, not a digest")]
    PushByDigest {
        /// The reference.
        reference: String,
    },
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OciError {
    /// A transport failure of `method url`, with a hint when TLS failed in a way a user can fix.
    pub(crate) fn transport(method: &'static str, url: &str, source: ureq::Error) -> Self {
        // A TLS failure comes as rustls' error, or as an I/O error that carries it.
        let text = format!("{source} {source:?}");
        let hint = if text.contains("invalid peer certificate") {
            ": the registry's TLS certificate is not valid for this host or not signed by a CA in the \
             system's store (/etc/ssl/certs, or the file SSL_CERT_FILE names)"
        } else if text.contains("corrupt message") {
            ": the registry did not answer TLS; if it serves plain HTTP on a private address, use --plain-http"
        } else {
            ""
        };
        OciError::Transport { method, url: url.to_owned(), hint, source: Box::new(source) }
    }

    pub(crate) fn invalid(
        reference: &Reference,
        what: &'static str,
        digest: impl ToString,
        reason: impl ToString,
    ) -> Self {
        OciError::Invalid {
            reference: reference.to_string(),
            what,
            digest: digest.to_string(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
