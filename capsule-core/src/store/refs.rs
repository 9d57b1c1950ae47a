//! Refs: `refs/<name>/<tag>` files, one manifest digest each. They are the truth for which
//! capsules exist; the index caches them. Each is replaced atomically (temp file, fsync,
//! rename, fsync of the directory), so a reader sees the old or the new digest, never a torn
//! line, and a crash leaves no half-written ref.
//!
//! Untagged capsules: `untagged/<name>/<64 hex>`, one file per version an import or a pull
//! moved a tag away from (holding the tag it had). They keep that version in the store and
//! reachable by digest (`NAME@HEX`, [`CapsuleRef::parse_any`]) until `rm NAME@HEX` or
//! `gc --untagged` drops them.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use super::blob::sync_dir;
use super::{Store, StoreError};
use crate::digest::Digest;
use crate::manifest::{ManifestError, check_name};

/// `NAME[:TAG]`, validated (the tag defaults to "latest"), or, from
/// [`parse_any`](Self::parse_any), `NAME@HEX`: the version of NAME whose manifest digest
/// starts with HEX.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapsuleRef {
    /// Name.
    pub name: String,
    /// Tag (empty in a reference by digest).
    pub tag: String,
    /// A reference by digest: 12 to 64 lower-case hex digits of the manifest digest. Only
    /// reads resolve it; a ref is never written or removed through it.
    pub digest: Option<String>,
}

/// The fewest hex digits a reference by digest may give.
pub const MIN_DIGEST_PREFIX: usize = 12;

impl FromStr for CapsuleRef {
    type Err = ManifestError;

    /// `NAME[:TAG]` only: what names a capsule to write.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, tag) = s.split_once(':').unwrap_or((s, "latest"));
        check_name("name", name)?;
        check_name("tag", tag)?;
        Ok(CapsuleRef::new(name, tag))
    }
}

impl CapsuleRef {
    /// `name:tag`, both already valid.
    pub fn new(name: &str, tag: &str) -> CapsuleRef {
        CapsuleRef { name: name.to_owned(), tag: tag.to_owned(), digest: None }
    }

    /// `NAME[:TAG]`, or `NAME@HEX` / `NAME@blake3:HEX` with 12 to 64 hex digits of a manifest
    /// digest: what names a capsule to read (run, inspect, export, rm of an untagged version).
    pub fn parse_any(s: &str) -> Result<Self, ManifestError> {
        let Some((name, hex)) = s.split_once('@') else { return s.parse() };
        check_name("name", name)?;
        let hex = hex.strip_prefix("blake3:").unwrap_or(hex).to_ascii_lowercase();
        if !(MIN_DIGEST_PREFIX..=64).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ManifestError::DigestRef { value: hex });
        }
        Ok(CapsuleRef { name: name.to_owned(), tag: String::new(), digest: Some(hex) })
    }

    /// The sandbox a run of this reference uses unless told otherwise: the capsule's name, or
    /// for a reference by digest `NAME@` and the digest's first 12 hex digits, so that an old
    /// version run by digest never shares (and rebuilds) the sandbox of the tagged one.
    pub fn sandbox_name(&self) -> String {
        match &self.digest {
            Some(hex) => format!("{}@{}", self.name, &hex[..MIN_DIGEST_PREFIX.min(hex.len())]),
            None => self.name.clone(),
        }
    }

    /// This reference by the full digest `d` (what [`Store::resolve`] returns).
    fn by_digest(&self, d: &Digest) -> CapsuleRef {
        CapsuleRef { name: self.name.clone(), tag: String::new(), digest: Some(d.to_hex()) }
    }
}

impl fmt::Display for CapsuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.digest {
            Some(hex) => write!(f, "{}@{hex}", self.name),
            None => write!(f, "{}:{}", self.name, self.tag),
        }
    }
}

/// A version kept after an import or a pull moved its tag to another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Untagged {
    /// The name it was stored under.
    pub name: String,
    /// Its manifest digest.
    pub digest: Digest,
    /// The tag that named it before.
    pub former_tag: String,
}

impl Store {
    fn ref_path(&self, r: &CapsuleRef) -> std::path::PathBuf {
        self.root.join("refs").join(&r.name).join(&r.tag)
    }

    /// The files whose identities say what `r` names (a launch plan records them): its ref
    /// file; for a reference by a full digest, the manifest blob and the directories of its
    /// name's tags and untagged versions (any change there may make the version unreachable).
    pub fn ref_files(&self, r: &CapsuleRef) -> Vec<std::path::PathBuf> {
        match r.digest.as_deref().and_then(|h| h.parse::<Digest>().ok()) {
            Some(d) => {
                vec![self.blob_path(&d), self.root.join("refs").join(&r.name), self.root.join("untagged").join(&r.name)]
            }
            None => vec![self.ref_path(r)],
        }
    }

    /// `r` with a reference by digest resolved to its full digest (see [`get_ref`](Self::get_ref));
    /// a `NAME:TAG` reference as it is.
    pub fn resolve(&self, r: &CapsuleRef) -> Result<CapsuleRef, StoreError> {
        if r.digest.is_none() {
            return Ok(r.clone());
        }
        Ok(r.by_digest(&self.get_ref(r)?))
    }

    /// The manifest digest `r` names. A reference by digest names a version of its name that a
    /// tag or an untagged record holds, and must be one of them only; a full digest may also
    /// name any manifest of that name in the store (a version a link pins).
    pub fn get_ref(&self, r: &CapsuleRef) -> Result<Digest, StoreError> {
        if let Some(hex) = &r.digest {
            return self.get_by_digest(&r.name, hex);
        }
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

    fn get_by_digest(&self, name: &str, hex: &str) -> Result<Digest, StoreError> {
        let mut found: Vec<Digest> = self
            .list_refs()?
            .into_iter()
            .filter(|(r, _)| r.name == name)
            .map(|(_, d)| d)
            .chain(self.list_untagged()?.into_iter().filter(|u| u.name == name).map(|u| u.digest))
            .filter(|d| d.to_hex().starts_with(hex))
            .collect();
        found.sort();
        found.dedup();
        match found.as_slice() {
            [d] => Ok(*d),
            [] => match hex.parse::<Digest>() {
                Ok(d) if self.load_manifest(&d).is_ok_and(|m| m.name == name) => Ok(d),
                _ => Err(StoreError::NoSuchDigest { name: name.to_owned(), digest: hex.to_owned() }),
            },
            many => Err(StoreError::AmbiguousDigest {
                name: name.to_owned(),
                digest: hex.to_owned(),
                matches: many.iter().map(Digest::short).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Point `r` at `digest`, atomically and durably.
    pub fn set_ref(&self, r: &CapsuleRef, digest: &Digest) -> Result<(), StoreError> {
        if r.digest.is_some() {
            return Err(StoreError::NotATag { reference: r.to_string() });
        }
        let path = self.ref_path(r);
        let dir = self.root.join("refs").join(&r.name);
        super::private_dir(&dir).map_err(StoreError::io("failed to create", &dir))?;
        write_line(&dir, ".ref-", &path, &digest.to_string())
    }

    /// Remove `r`. The manifest and its blobs stay until `gc`.
    pub fn remove_ref(&self, r: &CapsuleRef) -> Result<(), StoreError> {
        if r.digest.is_some() {
            return Err(StoreError::NotATag { reference: r.to_string() });
        }
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
                let r = CapsuleRef::new(&n, &t);
                let d = self.get_ref(&r)?;
                out.push((r, d));
            }
        }
        out.sort();
        Ok(out)
    }
}

impl Store {
    fn untagged_path(&self, name: &str, digest: &Digest) -> std::path::PathBuf {
        self.root.join("untagged").join(name).join(digest.to_hex())
    }

    /// Keep version `digest` of `name`, which `former_tag` named until now, as an untagged
    /// capsule (durably, like a ref).
    pub fn keep_untagged(&self, name: &str, digest: &Digest, former_tag: &str) -> Result<(), StoreError> {
        let dir = self.root.join("untagged").join(name);
        super::private_dir(&dir).map_err(StoreError::io("failed to create", &dir))?;
        let path = self.untagged_path(name, digest);
        write_line(&dir, ".untagged-", &path, former_tag)
    }

    /// Drop the untagged record of version `digest` of `name`; whether there was one.
    pub fn remove_untagged(&self, name: &str, digest: &Digest) -> Result<bool, StoreError> {
        let path = self.untagged_path(name, digest);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::Io { action: "failed to remove", path, source: e }),
        }
        let dir = self.root.join("untagged").join(name);
        let _ = fs::remove_dir(&dir); // only succeeds once the last one is gone
        sync_dir(&self.root.join("untagged"))?;
        Ok(true)
    }

    /// Every untagged capsule, sorted. A file not named by a digest is skipped (a writer's
    /// temporary file, or not ours).
    pub fn list_untagged(&self) -> Result<Vec<Untagged>, StoreError> {
        let top = self.root.join("untagged");
        let mut out = Vec::new();
        let names = match fs::read_dir(&top) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::Io { action: "failed to list", path: top, source: e }),
        };
        for name in names {
            let name = name.map_err(StoreError::io("failed to list", &top))?;
            let Some(n) = name.file_name().to_str().map(str::to_owned) else { continue };
            let Ok(files) = fs::read_dir(name.path()) else { continue };
            for f in files.flatten() {
                let Some(digest) = f.file_name().to_str().and_then(|h| h.parse::<Digest>().ok()) else { continue };
                let former_tag = fs::read_to_string(f.path()).unwrap_or_default().trim().to_owned();
                out.push(Untagged { name: n.clone(), digest, former_tag });
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Make `path` (in `dir`) hold `line` durably: a temporary file named `prefix…` in `dir`,
/// written, synced and renamed over it, then the directory synced.
fn write_line(dir: &Path, prefix: &str, path: &Path, line: &str) -> Result<(), StoreError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(StoreError::io("failed to create a temporary file in", dir))?;
    writeln!(tmp, "{line}").map_err(StoreError::io("failed to write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(StoreError::io("failed to sync", tmp.path()))?;
    tmp.persist(path).map_err(|e| StoreError::Io {
        action: "failed to write",
        path: path.to_owned(),
        source: e.error,
    })?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_by_digest_parse_and_name_their_sandbox() {
        let hex = "0123456789abcdef".repeat(4);
        let r = CapsuleRef::parse_any(&format!("app@{hex}")).unwrap();
        assert_eq!((r.name.as_str(), r.digest.as_deref()), ("app", Some(hex.as_str())));
        assert_eq!(r.to_string(), format!("app@{hex}"));
        assert_eq!(r.sandbox_name(), "app@0123456789ab");
        let short = CapsuleRef::parse_any("app@blake3:0123456789AB").unwrap();
        assert_eq!(short.digest.as_deref(), Some("0123456789ab"));
        assert_eq!(CapsuleRef::parse_any("app:v2").unwrap(), CapsuleRef::new("app", "v2"));
        for bad in ["app@0123", "app@0123456789abxyz", &format!("app@{hex}0"), "@0123456789ab", "app@"] {
            assert!(CapsuleRef::parse_any(bad).is_err(), "{bad} parsed");
        }
        // What names a capsule to write never takes a digest.
        assert!(format!("app@{hex}").parse::<CapsuleRef>().is_err());
    }

    #[test]
    fn a_digest_reference_resolves_among_its_names_versions_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        store.set_ref(&CapsuleRef::new("app", "latest"), &a).unwrap();
        store.keep_untagged("app", &b, "latest").unwrap();
        let by = |s: &str| store.get_ref(&CapsuleRef::parse_any(s).unwrap());
        assert_eq!(by(&format!("app@{}", a.short())).unwrap(), a);
        assert_eq!(by(&format!("app@{}", b.to_hex())).unwrap(), b);
        assert!(matches!(by(&format!("other@{}", b.short())), Err(StoreError::NoSuchDigest { .. })));
        let listed = store.list_untagged().unwrap();
        assert_eq!(listed, vec![Untagged { name: "app".into(), digest: b, former_tag: "latest".into() }]);
        assert!(store.set_ref(&CapsuleRef::parse_any(&format!("app@{}", a.short())).unwrap(), &b).is_err());
        assert!(store.remove_untagged("app", &b).unwrap());
        assert!(!store.remove_untagged("app", &b).unwrap());
        assert!(store.list_untagged().unwrap().is_empty());
        assert!(matches!(by(&format!("app@{}", b.short())), Err(StoreError::NoSuchDigest { .. })));
    }
}
