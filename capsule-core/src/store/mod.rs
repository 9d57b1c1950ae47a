//! [`Store`]: one directory holding capsules.
//!
//! ```text
//! blobs/xx/<digest>   content-addressed, zstd (see `blob`)     the truth for content
//! refs/<name>/<tag>   one line: a manifest digest (see `refs`)  the truth for names
//! snapshots/<id>      one line: a snapshot blob digest          pending `capture snapshot`
//! remotes/<digest>    where a lazily pulled capsule's blobs are  (see `oci::lazy`)
//! index/              sled: names, tags, reverse refs           a cache, rebuilt from the above
//! tmp/                temporary files of writers in progress
//! lock                flock: writers share it, gc takes it exclusively
//! ```
//! The run path reads only `refs/` and blobs: no database, no store lock. The index is opened
//! only for short transactions (see [`index`]) and can always be rebuilt from refs and blobs.

mod batch;
mod blob;
mod error;
pub mod index;
mod lock;
mod refs;
mod usage;

use std::fs;
use std::path::{Path, PathBuf};

pub use batch::BlobBatch;
pub use blob::StagedBlob;
pub use error::StoreError;
pub use lock::StoreLock;
pub use refs::CapsuleRef;
pub use usage::{CapsuleUsage, Usage};

use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};

/// A capsule store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating its layout if needed.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["blobs", "refs", "snapshots", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(StoreError::io("failed to create store directory", &p))?;
        }
        Ok(Store { root: root.to_owned() })
    }

    /// The default store: `$CAPSULE_HOME`, else `$XDG_DATA_HOME/capsule`, else
    /// `$HOME/.local/share/capsule`.
    pub fn default_root() -> PathBuf {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(p) = env("CAPSULE_HOME") {
            return p;
        }
        if let Some(p) = env("XDG_DATA_HOME") {
            return p.join("capsule");
        }
        env("HOME").unwrap_or_else(|| PathBuf::from("/")).join(".local/share/capsule")
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Load and validate manifest `digest`.
    pub fn load_manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let bytes = self.read_blob(digest, MAX_MANIFEST_BYTES, "manifest")?;
        Manifest::decode(&bytes).map_err(|source| StoreError::Manifest { digest: *digest, source })
    }

    /// Load the manifest that `r` names.
    pub fn load(&self, r: &CapsuleRef) -> Result<(Digest, Manifest), StoreError> {
        let digest = self.get_ref(r)?;
        Ok((digest, self.load_manifest(&digest)?))
    }

    /// Make `manifest` a capsule: store it as a blob, point its ref at it (the commit point),
    /// then record it in the index. Its file blobs must already be in the store. The caller
    /// holds a [`StoreLock::shared`] from before it wrote the first blob, so `gc` cannot take
    /// them away in between.
    pub fn commit_capsule(&self, manifest: &Manifest) -> Result<Digest, StoreError> {
        let r = CapsuleRef { name: manifest.name.clone(), tag: manifest.tag.clone() };
        self.commit_capsule_as(manifest, &r, &|_| false)
    }

    /// [`commit_capsule`](Self::commit_capsule) under ref `r` (a pull may store a capsule under
    /// another name). A blob may be missing only where `remote(blob)` says a remote record
    /// covers it (a lazy pull, see `oci::lazy`), which the caller wrote before.
    pub fn commit_capsule_as(
        &self,
        manifest: &Manifest,
        r: &CapsuleRef,
        remote: &dyn Fn(&Digest) -> bool,
    ) -> Result<Digest, StoreError> {
        for d in manifest.blobs() {
            if !self.has_blob(&d) && !remote(&d) {
                return Err(StoreError::MissingBlob { digest: d });
            }
        }
        let digest = self.put_bytes(&manifest.encode())?;
        self.set_ref(r, &digest)?;
        // The ref is the truth; an index left behind by a crash here is reconciled on next use.
        index::Index::with(self, |idx| idx.record(r, &digest, manifest))?;
        tracing::info!(capsule = %r, %digest, files = manifest.entries.len(), "committed");
        Ok(digest)
    }
}
