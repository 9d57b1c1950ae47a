//! [`Usage`]: what the store's capsules take on disk (`capsule df`).
//!
//! Per capsule: its *logical* bytes ([`Manifest::size`]: the sizes of its regular files; a
//! hardlink is a second name with no size of its own, so it counts once; two files with the
//! same content count twice, since that is what deduplication saves), and the *stored* bytes of
//! the blobs it uses (compressed, as on disk), its manifest blob included. A blob another
//! capsule also uses is *shared*; a capsule's stored bytes count it in full, the store's total
//! counts it once. A blob the manifest names but the store lacks (a capsule pulled lazily) is
//! *not fetched*: its logical size is known from the manifest, its stored size is not.
//!
//! Built from the refs and the manifests only (no index), so it also works while the index is
//! stale; a missing file blob never makes it fail.

use std::collections::BTreeMap;
use std::io;

use super::{CapsuleRef, Store, StoreError};
use crate::digest::Digest;
use crate::manifest::EntryKind;

/// One capsule's share of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsuleUsage {
    /// `name:tag`.
    pub capsule: CapsuleRef,
    /// Its manifest digest.
    pub digest: Digest,
    /// Sum of its regular files' sizes.
    pub logical: u64,
    /// Distinct blobs it uses, its manifest included.
    pub blobs: u64,
    /// Stored bytes of those blobs that are present.
    pub stored: u64,
    /// How many of its blobs another capsule uses too.
    pub shared_blobs: u64,
    /// Stored bytes of those.
    pub shared_stored: u64,
    /// How many of its blobs are not in the store.
    pub not_fetched_blobs: u64,
    /// Logical bytes of its files whose blob is not in the store.
    pub not_fetched: u64,
}

/// One kept minimal root (`roots/CODENAME/`, its capsule named by `roots/CODENAME.manifest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootUsage {
    /// The release's codename.
    pub release: String,
    /// Its capsule's manifest digest (`None`: not made yet).
    pub digest: Option<Digest>,
    /// Bytes the root directory takes on disk (allocated blocks).
    pub dir_bytes: u64,
    /// Distinct blobs its capsule uses, its manifest included.
    pub blobs: u64,
    /// Stored bytes of those.
    pub stored: u64,
}

/// The whole store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Every capsule, sorted by name and tag.
    pub capsules: Vec<CapsuleUsage>,
    /// Sum of the capsules' logical bytes.
    pub logical: u64,
    /// Distinct blobs that capsules use and the store holds.
    pub blobs: u64,
    /// Their stored bytes, each blob once.
    pub stored: u64,
    /// Distinct blobs that capsules use and the store lacks.
    pub not_fetched_blobs: u64,
    /// Their logical bytes, each blob once.
    pub not_fetched: u64,
    /// The kept minimal roots of `capture install --root minimal`: their directories and
    /// their capsules' blobs (counted in the totals as used, not as capsules).
    pub roots: Vec<RootUsage>,
    /// Blobs only the kept roots use.
    pub root_only_blobs: u64,
    /// Their stored bytes.
    pub root_only: u64,
    /// Blobs no capsule or kept root uses (snapshots in progress, garbage for `gc`).
    pub unused_blobs: u64,
    /// Their stored bytes.
    pub unused: u64,
}

impl Usage {
    /// Every blob file's bytes: `stored + root_only + unused`.
    pub fn on_disk(&self) -> u64 {
        self.stored + self.root_only + self.unused
    }

    /// Logical bytes of the content held locally over the stored bytes that hold it; `None`
    /// for an empty store. Not-fetched content is left out of both sides.
    pub fn dedup_ratio(&self) -> Option<f64> {
        let local: u64 = self.capsules.iter().map(|c| c.logical - c.not_fetched).sum();
        #[allow(clippy::cast_precision_loss)] // a ratio for display
        (self.stored > 0).then(|| local as f64 / self.stored as f64)
    }
}

/// A blob some capsule uses.
struct BlobUse {
    users: u64,
    /// `None`: not in the store.
    stored: Option<u64>,
    /// Uncompressed size, from the manifest (0 for a manifest blob).
    logical: u64,
}

impl Store {
    /// Compute [`Usage`] from the refs, the manifests and the blob files' sizes.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let mut capsules = Vec::new();
        let mut blobs: BTreeMap<Digest, BlobUse> = BTreeMap::new();
        // Per capsule: each blob it uses, with the logical bytes of its entries that use it.
        let mut uses: Vec<BTreeMap<Digest, u64>> = Vec::new();
        for (r, digest) in self.list_refs()? {
            let m = self.load_manifest(&digest)?;
            let mut mine = BTreeMap::from([(digest, 0u64)]);
            for e in &m.entries {
                if let EntryKind::File { size, digest } = e.kind {
                    *mine.entry(digest).or_insert(0) += size;
                    blobs.entry(digest).or_insert(BlobUse { users: 0, stored: None, logical: size });
                }
            }
            blobs.entry(digest).or_insert(BlobUse { users: 0, stored: None, logical: 0 });
            for d in mine.keys() {
                if let Some(b) = blobs.get_mut(d) {
                    b.users += 1;
                }
            }
            capsules.push(CapsuleUsage {
                capsule: r,
                digest,
                logical: m.size(),
                blobs: mine.len() as u64,
                stored: 0,
                shared_blobs: 0,
                shared_stored: 0,
                not_fetched_blobs: 0,
                not_fetched: 0,
            });
            uses.push(mine);
        }
        let mut roots = Vec::new();
        let mut root_uses: Vec<Vec<Digest>> = Vec::new();
        for (release, dir, digest) in self.kept_roots() {
            let mut mine = Vec::new();
            if let Some(m) = digest.and_then(|d| self.load_manifest(&d).ok()) {
                mine = m.blobs().into_iter().chain(digest).collect();
                mine.sort();
                mine.dedup();
            }
            roots.push(RootUsage { release, digest, dir_bytes: disk_usage(&dir), blobs: mine.len() as u64, stored: 0 });
            root_uses.push(mine);
        }
        for (d, b) in &mut blobs {
            b.stored = self.stored_size_if_present(d)?;
        }
        for (r, mine) in roots.iter_mut().zip(&root_uses) {
            for d in mine {
                r.stored += self.stored_size_if_present(d)?.unwrap_or(0);
            }
        }
        let root_blobs: std::collections::BTreeSet<Digest> = root_uses.into_iter().flatten().collect();
        for (c, mine) in capsules.iter_mut().zip(&uses) {
            for (d, entry_bytes) in mine {
                let Some(b) = blobs.get(d) else { continue };
                match b.stored {
                    Some(s) => {
                        c.stored += s;
                        if b.users > 1 {
                            c.shared_blobs += 1;
                            c.shared_stored += s;
                        }
                    }
                    None => {
                        c.not_fetched_blobs += 1;
                        c.not_fetched += entry_bytes;
                    }
                }
            }
        }
        self.totals(capsules, roots, &blobs, &root_blobs)
    }

    fn totals(
        &self,
        capsules: Vec<CapsuleUsage>,
        roots: Vec<RootUsage>,
        blobs: &BTreeMap<Digest, BlobUse>,
        root_blobs: &std::collections::BTreeSet<Digest>,
    ) -> Result<Usage, StoreError> {
        let mut u = Usage {
            logical: capsules.iter().map(|c| c.logical).sum(),
            capsules,
            roots,
            blobs: 0,
            stored: 0,
            not_fetched_blobs: 0,
            not_fetched: 0,
            root_only_blobs: 0,
            root_only: 0,
            unused_blobs: 0,
            unused: 0,
        };
        for b in blobs.values() {
            match b.stored {
                Some(s) => {
                    u.blobs += 1;
                    u.stored += s;
                }
                None => {
                    u.not_fetched_blobs += 1;
                    u.not_fetched += b.logical;
                }
            }
        }
        for d in self.list_blobs()? {
            if !blobs.contains_key(&d) {
                // Raced with gc: gone is gone, not an error.
                if let Some(s) = self.stored_size_if_present(&d)? {
                    if root_blobs.contains(&d) {
                        u.root_only_blobs += 1;
                        u.root_only += s;
                    } else {
                        u.unused_blobs += 1;
                        u.unused += s;
                    }
                }
            }
        }
        Ok(u)
    }

    /// The stored size of blob `d`, or `None` when the store does not have it.
    fn stored_size_if_present(&self, d: &Digest) -> Result<Option<u64>, StoreError> {
        match self.blob_stored_size(d) {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Bytes `dir` takes on disk (allocated blocks of everything below it, symlinks not
/// followed, each inode once).
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    /// Commit capsule `name` holding `files` (path, content), with `hardlink` naming the first.
    fn capsule(store: &Store, name: &str, files: &[(&str, &[u8])], hardlink: bool) -> Digest {
        let mut entries = Vec::new();
        for (p, content) in files {
            let digest = store.put_bytes(content).unwrap();
            entries.push((*p, EntryKind::File { size: content.len() as u64, digest }));
        }
        if hardlink {
            let target = crate::manifest::RelPath::new(files[0].0).unwrap();
            entries.push(("zz-link", EntryKind::Hardlink { target }));
        }
        let mut m = Manifest::for_tests(entries, 0o644);
        m.name = name.to_owned();
        m.normalize();
        store.commit_capsule(&m).unwrap()
    }

    #[test]
    fn shared_blobs_count_once_in_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lib = vec![5u8; 50_000];
        let a = capsule(&s, "a", &[("lib", &lib), ("a", b"only a"), ("copy", &lib)], true);
        let b = capsule(&s, "b", &[("lib", &lib), ("b", b"only b")], false);
        let u = s.usage().unwrap();
        let size = |d: &Digest| s.blob_stored_size(d).unwrap();
        let (lib_d, a_d, b_d) = (Digest::of(&lib), Digest::of(b"only a"), Digest::of(b"only b"));
        let ca = &u.capsules[0];
        assert_eq!((ca.capsule.name.as_str(), ca.digest), ("a", a));
        // Two files with the same content count twice, the hardlink not at all.
        assert_eq!(ca.logical, 100_000 + 6);
        assert_eq!(ca.blobs, 3);
        assert_eq!(ca.stored, size(&lib_d) + size(&a_d) + size(&a));
        assert_eq!((ca.shared_blobs, ca.shared_stored), (1, size(&lib_d)));
        assert_eq!(u.capsules[1].stored, size(&lib_d) + size(&b_d) + size(&b));
        assert_eq!(u.logical, 100_006 + 50_006);
        assert_eq!(u.blobs, 5);
        assert_eq!(u.stored, [lib_d, a_d, b_d, a, b].iter().map(size).sum::<u64>());
        assert!(u.stored < u.capsules.iter().map(|c| c.stored).sum::<u64>());
        assert_eq!((u.unused_blobs, u.not_fetched_blobs), (0, 0));
        assert!(u.dedup_ratio().unwrap() > 1.0);
    }

    #[test]
    fn missing_blobs_are_not_fetched_and_unused_ones_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        capsule(&s, "lazy", &[("big", &[1u8; 4000]), ("small", b"here")], false);
        std::fs::remove_file(s.blob_path(&Digest::of(&[1u8; 4000]))).unwrap();
        let stray = s.put_bytes(b"no capsule uses this").unwrap();
        let u = s.usage().unwrap();
        let c = &u.capsules[0];
        assert_eq!((c.not_fetched_blobs, c.not_fetched, c.blobs), (1, 4000, 3));
        assert_eq!((u.not_fetched_blobs, u.not_fetched), (1, 4000));
        assert_eq!((u.unused_blobs, u.unused), (1, s.blob_stored_size(&stray).unwrap()));
        let on_disk: u64 = s.list_blobs().unwrap().iter().map(|d| s.blob_stored_size(d).unwrap()).sum();
        assert_eq!(u.on_disk(), on_disk);
    }

    #[test]
    fn empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let u = Store::open(dir.path()).unwrap().usage().unwrap();
        assert!(u.capsules.is_empty());
        assert_eq!((u.logical, u.stored, u.on_disk(), u.dedup_ratio()), (0, 0, 0, None));
    }
}
