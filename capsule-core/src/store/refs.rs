//! Refs: `refs/<name>/<tag>` files, one manifest digest each. They are the truth for which
//! capsules exist; the index caches them. Each is replaced atomically (temp file, fsync,
//! rename, fsync of the directory), so a reader sees the old or the new digest, never a torn
//! line, and a crash leaves no half-written ref.

use std::fmt;
use std::fs;
use std::io::Write;
use std::str::FromStr;

use super::blob::sync_dir;
use super::{Store, StoreError};
use crate::digest::Digest;
use crate::manifest::{ManifestError, check_name};

/// `NAME[:TAG]`, validated (the tag defaults to "latest").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapsuleRef {
    /// Name.
    pub name: String,
    /// Tag.
    pub tag: String,
}

impl FromStr for CapsuleRef {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, tag) = s.split_once(':').unwrap_or((s, "latest"));
        check_name("name", name)?;
        check_name("tag", tag)?;
        Ok(CapsuleRef { name: name.to_owned(), tag: tag.to_owned() })
    }
}

impl fmt::Display for CapsuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl Store {
    fn ref_path(&self, r: &CapsuleRef) -> std::path::PathBuf {
        self.root.join("refs").join(&r.name).join(&r.tag)
    }

    /// The manifest digest `r` names.
    pub fn get_ref(&self, r: &CapsuleRef) -> Result<Digest, StoreError> {
        let path = self.ref_path(r);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchCapsule { name: r.name.clone(), tag: r.tag.clone() });
            }
            Err(e) => return Err(StoreError::Io { action: "failed to read", path, source: e }),
        };
        text.trim().parse().map_err(|_| StoreError::BadRef { path })
    }

    /// Point `r` at `digest`, atomically and durably.
    pub fn set_ref(&self, r: &CapsuleRef, digest: &Digest) -> Result<(), StoreError> {
        let path = self.ref_path(r);
        let dir = self.root.join("refs").join(&r.name);
        super::private_dir(&dir).map_err(StoreError::io("failed to create", &dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".ref-")
            .tempfile_in(&dir)
            .map_err(StoreError::io("failed to create a temporary file in", &dir))?;
        writeln!(tmp, "{digest}").map_err(StoreError::io("failed to write", tmp.path()))?;
        tmp.as_file().sync_all().map_err(StoreError::io("failed to sync", tmp.path()))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            action: "failed to write",
            path: path.clone(),
            source: e.error,
        })?;
        sync_dir(&dir)
    }

    /// Remove `r`. The manifest and its blobs stay until `gc`.
    pub fn remove_ref(&self, r: &CapsuleRef) -> Result<(), StoreError> {
        let path = self.ref_path(r);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchCapsule { name: r.name.clone(), tag: r.tag.clone() });
            }
            Err(e) => return Err(StoreError::Io { action: "failed to remove", path, source: e }),
        }
        let dir = self.root.join("refs").join(&r.name);
        let _ = fs::remove_dir(&dir); // only succeeds once the last tag is gone
        sync_dir(&self.root.join("refs"))
    }

    /// Every ref, sorted. A damaged ref file is an error naming it.
    pub fn list_refs(&self) -> Result<Vec<(CapsuleRef, Digest)>, StoreError> {
        let top = self.root.join("refs");
        let mut out = Vec::new();
        for name in fs::read_dir(&top).map_err(StoreError::io("failed to list", &top))? {
            let name = name.map_err(StoreError::io("failed to list", &top))?;
            let Some(n) = name.file_name().to_str().map(str::to_owned) else { continue };
            let Ok(tags) = fs::read_dir(name.path()) else { continue };
            for tag in tags.flatten() {
                let Some(t) = tag.file_name().to_str().map(str::to_owned) else { continue };
                if t.starts_with('.') {
                    continue; // a writer's temporary file
                }
                let r = CapsuleRef { name: n.clone(), tag: t };
                let d = self.get_ref(&r)?;
                out.push((r, d));
            }
        }
        out.sort();
        Ok(out)
    }
}
