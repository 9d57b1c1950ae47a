//! Capture: turning what is on a host into a capsule.
//!
//! - [`snapshot`]: ThinApp's pre-scan / post-scan. [`scan`] walks the watched roots recording
//!   metadata only; the diff of two scans says what an install added, changed and deleted, and
//!   only those files are hashed.
//! - [`elf`] + [`ldcache`]: Exodus-style closure of binaries, their loader and libraries
//!   ([`elf_capture`](fn@elf_capture) packs them).
//! - [`builder`]: the one place host files become manifest entries (hashing into the store,
//!   hardlinks, symlink rewriting, parent directories), used by every capture kind.
//! - [`noise`]: the exclusion rules (caches, logs, /tmp, the store itself).
//! - [`dpkg`]: dpkg's status database and the package inventory a capture keeps.

pub mod builder;
pub mod closure;
pub mod commit;
pub mod declare;
pub mod dpkg;
pub mod elf;
mod elfcap;
pub mod install;
pub mod ldcache;
pub mod needs;
pub mod noise;
pub mod programs;
pub mod root;
pub mod scan;
pub mod snapshot;
pub mod trace;

use std::path::PathBuf;

pub use elfcap::elf_capture;

use crate::manifest::{ManifestError, PathError};
use crate::store::StoreError;

/// Reports progress of long steps; the CLI draws bars, tests pass [`NoProgress`].
pub trait Progress: Sync {
    /// A new phase ("scanning", "hashing") of `len` units, if known.
    fn start(&self, phase: &str, len: Option<u64>);
    /// `n` more units done.
    fn inc(&self, n: u64);
    /// The phase is over.
    fn finish(&self);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

/// Errors from capturing.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Reading the host failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The host path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The capsule would be invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A host path that cannot be put in a capsule.
    #[error("cannot capture {}", path.display())]
    Path {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: PathError,
    },
    /// A noise rule that is not a valid glob.
    #[error("invalid exclude pattern {pattern:?}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        #[source]
        source: globset::Error,
    },
    /// `snapshot end` without `snapshot begin`.
    #[error("no snapshot is pending in the store at {}; run `capsule capture snapshot begin` first", store.display())]
    NoPendingSnapshot {
        /// The store.
        store: PathBuf,
    },
    /// Nothing changed under the watched roots.
    #[error("nothing changed under {roots} since the snapshot was taken; no capsule made")]
    NoChanges {
        /// The roots.
        roots: String,
    },
    /// A watched root that is not absolute or climbs with `..`.
    #[error("watched root {root:?} must be an absolute path without '..'")]
    BadRoot {
        /// The root.
        root: String,
    },
    /// ELF closure failed.
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    /// Libraries a captured binary needs were not found.
    #[error("{} needs {soname}, which was not found in its RPATH/RUNPATH, ld.so.cache or the default directories", needed_by.display())]
    MissingLibrary {
        /// The binary or library.
        needed_by: PathBuf,
        /// The DT_NEEDED name.
        soname: String,
    },
    /// A capture's source root (`capture install --root`) that cannot be used or made.
    #[error(transparent)]
    Root(#[from] root::RootError),
}

impl CaptureError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CaptureError {
        let path = path.into();
        move |source| CaptureError::Io { action, path, source }
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
