//! [`Error`]: the umbrella over every module's error type.

/// Any error from capsule-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// From a manifest.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// From a capture.
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    /// From export or import.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    /// From push, pull or lazy fetch.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
}
