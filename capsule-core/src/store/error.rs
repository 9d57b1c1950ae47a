//! [`StoreError`]: everything that can go wrong reading or writing a store.

use std::path::PathBuf;

use crate::codec::CodecError;
use crate::digest::Digest;
use crate::manifest::ManifestError;

/// Errors from the store: blobs, refs, snapshots and the index.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation on a store path failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("failed to write", …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blob the caller needs is not in the store.
    #[error("blob {digest} is missing from the store")]
    MissingBlob {
        /// Its digest.
        digest: Digest,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    Corrupt {
        /// The name.
        digest: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// A blob could not be decompressed.
    #[error("blob {digest} is corrupt: {reason}")]
    Undecodable {
        /// The name.
        digest: Digest,
        /// zstd's reason.
        reason: String,
    },
    /// A blob is bigger than the caller allows.
    #[error("blob {digest} is over the {limit}-byte limit for a {what}")]
    BlobTooLarge {
        /// The name.
        digest: Digest,
        /// What it was read as.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// No capsule of that name and tag.
    #[error("no capsule named {name}:{tag}")]
    NoSuchCapsule {
        /// The name.
        name: String,
        /// The tag.
        tag: String,
    },
    /// No version of that name has a digest starting so.
    #[error(
        "no capsule {name}@{digest}: no tag and no untagged version of {name} has that digest (`capsule list` shows them)"
    )]
    NoSuchDigest {
        /// The name.
        name: String,
        /// The digest (or its first hex digits) asked for.
        digest: String,
    },
    /// More than one version of that name has a digest starting so.
    #[error("capsule reference {name}@{digest} is ambiguous: it matches {matches}; give more digits")]
    AmbiguousDigest {
        /// The name.
        name: String,
        /// The hex digits given.
        digest: String,
        /// The short digests it matches.
        matches: String,
    },
    /// A reference by digest where only `NAME:TAG` will do (writing or removing a ref).
    #[error("{reference} names a version by digest; a tag is needed here (NAME[:TAG])")]
    NotATag {
        /// The reference.
        reference: String,
    },
    /// A ref file that does not hold a digest.
    #[error("ref file {} is damaged (expected a digest)", path.display())]
    BadRef {
        /// The file.
        path: PathBuf,
    },
    /// A manifest blob that does not decode.
    #[error("manifest {digest} is invalid")]
    Manifest {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A snapshot blob that does not decode.
    #[error("snapshot {digest} is invalid")]
    Snapshot {
        /// Its digest.
        digest: Digest,
        /// Why.
        #[source]
        source: CodecError,
    },
    /// The sled index is damaged.
    #[error("the index at {} is damaged ({reason}); run `capsule verify --repair` to rebuild it", path.display())]
    IndexDamaged {
        /// The index directory.
        path: PathBuf,
        /// What sled or the decoder said.
        reason: String,
    },
    /// Another process held the index for longer than we wait.
    #[error("the index at {} stayed locked by another capsule process for {waited_ms} ms", path.display())]
    IndexBusy {
        /// The index directory.
        path: PathBuf,
        /// How long we tried.
        waited_ms: u64,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }
}
