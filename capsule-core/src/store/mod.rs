//! [`Store`]: one directory holding capsules.
//!
//! ```text
//! blobs/xx/<digest>   content-addressed, zstd (see `blob`)     the truth for content
//! refs/<name>/<tag>   one line: a manifest digest (see `refs`)  the truth for names
//! snapshots/<id>      one line: a snapshot blob digest          pending `capture snapshot`
//! remotes/<digest>    where a lazily pulled capsule's blobs are  (see `oci::lazy`)
//! untagged/<name>/<digest>  versions an import or pull moved a tag from (see `refs`)
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
pub use refs::{CapsuleRef, MIN_DIGEST_PREFIX, Untagged};
pub use usage::{CapsuleUsage, RootUsage, Usage};

use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};

/// Create directory `path` and its missing parents with mode 0700: what capsule makes in its
/// store is the runner's alone.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// A capsule store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating its layout if needed. The store is its owner's
    /// alone: the root is made 0700 (an existing one of ours with group or other bits is
    /// tightened), and so is every directory capsule makes in it ([`private_dir`]) but the
    /// sandbox trees, which mirror the host's modes for the run's processes.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(StoreError::io("failed to create store directory", parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = fs::metadata(root).map_err(StoreError::io("failed to stat store directory", root))?;
                if meta.mode() & 0o077 != 0 && meta.uid() == nix::unistd::geteuid().as_raw() {
                    fs::set_permissions(root, fs::Permissions::from_mode(0o700))
                        .map_err(StoreError::io("failed to make private the store directory", root))?;
                }
            }
            Err(e) => return Err(StoreError::io("failed to create store directory", root)(e)),
        }
        for sub in ["blobs", "refs", "snapshots", "tmp"] {
            let p = root.join(sub);
            private_dir(&p).map_err(StoreError::io("failed to create store directory", &p))?;
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
        let r = CapsuleRef::new(&manifest.name, &manifest.tag);
        self.commit_capsule_as(manifest, &r, &|_| false)
    }

    /// The minimal roots kept in `roots/` (`capture install --root minimal`): each release's
    /// codename, its directory, and the manifest digest of its capsule (`roots/CODENAME.manifest`;
    /// `None` before it is made). Sorted by codename.
    pub fn kept_roots(&self) -> Vec<(String, PathBuf, Option<Digest>)> {
        let dir = self.root().join("roots");
        let mut out: Vec<(String, PathBuf, Option<Digest>)> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok().filter(|n| !n.starts_with('.'))?;
                let digest = fs::read_to_string(dir.join(format!("{name}.manifest")))
                    .ok()
                    .and_then(|h| h.trim().parse::<Digest>().ok());
                Some((name, e.path(), digest))
            })
            .collect();
        out.sort();
        out
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
        Ok(self.commit(manifest, r, remote, false)?.0)
    }

    /// [`commit_capsule_as`](Self::commit_capsule_as) for an import or a pull: when `r` named
    /// another version that no other tag of its name names, that version stays in the store
    /// as an untagged capsule, reachable as `NAME@DIGEST` (see [`refs`]; a version another
    /// tag still names is reachable so too). Returns the new digest and the one `r` moved
    /// from, if it moved.
    pub fn commit_capsule_keeping(
        &self,
        manifest: &Manifest,
        r: &CapsuleRef,
        remote: &dyn Fn(&Digest) -> bool,
    ) -> Result<(Digest, Option<Digest>), StoreError> {
        self.commit(manifest, r, remote, true)
    }

    fn commit(
        &self,
        manifest: &Manifest,
        r: &CapsuleRef,
        remote: &dyn Fn(&Digest) -> bool,
        keep: bool,
    ) -> Result<(Digest, Option<Digest>), StoreError> {
        for d in manifest.blobs() {
            if !self.has_blob(&d) && !remote(&d) {
                return Err(StoreError::MissingBlob { digest: d });
            }
        }
        let digest = self.put_bytes(&manifest.encode())?;
        let old = match self.get_ref(r) {
            Ok(d) if d != digest => Some(d),
            Ok(_) | Err(StoreError::NoSuchCapsule { .. }) => None,
            Err(e) => return Err(e),
        };
        // Kept before the ref moves: a crash in between leaves a version both tagged and
        // untagged (harmless), never one neither names.
        if let Some(o) = old
            && keep
            && !self.list_refs()?.iter().any(|(x, d)| x != r && x.name == r.name && *d == o)
        {
            self.keep_untagged(&r.name, &o, &r.tag)?;
        }
        self.set_ref(r, &digest)?;
        // A version tagged again is no longer untagged.
        self.remove_untagged(&r.name, &digest)?;
        // The ref is the truth; an index left behind by a crash here is reconciled on next use.
        index::Index::with(self, |idx| idx.record(r, &digest, manifest))?;
        tracing::info!(capsule = %r, %digest, files = manifest.entries.len(), "committed");
        Ok((digest, old))
    }
}
