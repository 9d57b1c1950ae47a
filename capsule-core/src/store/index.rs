//! [`Index`]: the sled database that caches names, tags and reverse refs (which capsules use
//! a blob).
//!
//! It is never the truth: refs and blobs are. It is opened only inside [`Index::with`] for a
//! short transaction and closed again, because sled allows one process at a time. Callers wait
//! their turn on `index.lock` (flock, exponential backoff up to [`WAIT`]), so ten `capsule
//! list` processes started while a capture commits all succeed, one after another. A running
//! application never opens it. Deleting or damaging it loses nothing: [`Index::sync`]
//! reconciles it with the refs on every use, and `capsule verify --repair` rebuilds it.
//!
//! Trees: `capsules` (`name:tag` → [`CapsuleRecord`]), `users` (blob digest ‖ manifest digest
//! → empty), `meta`.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{CapsuleRef, Store, StoreError};
use crate::codec;
use crate::digest::Digest;
use crate::manifest::Manifest;

/// How long to wait for another process's transaction.
pub const WAIT: Duration = Duration::from_secs(60);

/// What the index keeps per capsule, enough for `list` without loading manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapsuleRecord {
    /// Manifest digest.
    pub digest: Digest,
    /// Creation time (seconds since the epoch).
    pub created: u64,
    /// Number of tree entries.
    pub entries: u64,
    /// Logical size in bytes.
    pub size: u64,
    /// Distinct blobs.
    pub blobs: u64,
}

/// An open index; only exists inside [`Index::with`].
pub struct Index {
    capsules: sled::Tree,
    users: sled::Tree,
    db: sled::Db,
    path: PathBuf,
}

fn damaged(path: &std::path::Path) -> impl Fn(sled::Error) -> StoreError + '_ {
    move |e| StoreError::IndexDamaged { path: path.to_owned(), reason: e.to_string() }
}

/// Take `index.lock`, waiting with exponential backoff.
fn wait_for_lock(store: &Store) -> Result<File, StoreError> {
    let path = store.root().join("index.lock");
    let file = super::lock::open_lock_file(&path)?;
    let start = Instant::now();
    let mut delay = Duration::from_millis(2);
    while file.try_lock().is_err() {
        if start.elapsed() > WAIT {
            let waited_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
            return Err(StoreError::IndexBusy { path: store.root().join("index"), waited_ms });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
    Ok(file)
}

/// Open sled at `path`. sled's own exclusive file lock can outlive the previous holder's
/// `Db` for a moment (its background threads release the file last), so "could not acquire
/// lock" while we hold `index.lock` is retried with backoff, not reported as damage.
fn open_sled(path: &std::path::Path) -> Result<sled::Db, StoreError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        match sled::Config::new().path(path).cache_capacity(4 << 20).flush_every_ms(None).open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") && start.elapsed() < WAIT => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(damaged(path)(e)),
        }
    }
}

impl Index {
    /// Open the index (waiting for other processes), run `f`, flush and close it.
    pub fn with<T>(store: &Store, f: impl FnOnce(&Index) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _lock = wait_for_lock(store)?;
        let path = store.root().join("index");
        // No background flusher: we flush once at the end of the transaction, and a flusher
        // thread would keep the database (and its file lock) alive after we drop it.
        let db = open_sled(&path)?;
        let idx = Index {
            capsules: db.open_tree("capsules").map_err(damaged(&path))?,
            users: db.open_tree("users").map_err(damaged(&path))?,
            db,
            path,
        };
        if let Some(ms) = std::env::var("CAPSULE_DEBUG_INDEX_HOLD_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
            // Test hook: hold the index to provoke contention (the e2e test of `list` during
            // a commit). Bounded, and read only by the process it is set for.
            std::thread::sleep(Duration::from_millis(ms.min(10_000)));
        }
        let out = f(&idx)?;
        idx.db.flush().map_err(damaged(&idx.path))?;
        Ok(out)
    }

    /// Record capsule `r` → manifest `digest`.
    pub fn record(&self, r: &CapsuleRef, digest: &Digest, m: &Manifest) -> Result<(), StoreError> {
        let blobs = m.blobs();
        let rec = CapsuleRecord {
            digest: *digest,
            created: m.created,
            entries: m.entries.len() as u64,
            size: m.size(),
            blobs: blobs.len() as u64,
        };
        let mut batch = sled::Batch::default();
        for b in blobs.iter().chain(std::iter::once(digest)) {
            batch.insert(user_key(b, digest).as_slice(), &[]);
        }
        self.users.apply_batch(batch).map_err(damaged(&self.path))?;
        self.capsules.insert(r.to_string(), codec::encode(&rec)).map_err(damaged(&self.path))?;
        Ok(())
    }

    /// Drop capsule `r`, and the reverse refs of its manifest unless another ref still uses it.
    pub fn forget(&self, r: &CapsuleRef, store: &Store) -> Result<(), StoreError> {
        let Some(old) = self.capsules.remove(r.to_string()).map_err(damaged(&self.path))? else {
            return Ok(());
        };
        let old = self.decode_record(&old)?;
        if self.capsules()?.iter().any(|(_, rec)| rec.digest == old.digest) {
            return Ok(());
        }
        let blobs = match store.load_manifest(&old.digest) {
            Ok(m) => m.blobs(),
            Err(_) => self.blobs_of_unknown(&old.digest)?,
        };
        for b in blobs.iter().chain(std::iter::once(&old.digest)) {
            self.users.remove(user_key(b, &old.digest)).map_err(damaged(&self.path))?;
        }
        Ok(())
    }

    /// Fallback when a manifest is unreadable: scan the reverse refs for it.
    fn blobs_of_unknown(&self, manifest: &Digest) -> Result<BTreeSet<Digest>, StoreError> {
        let mut out = BTreeSet::new();
        for kv in self.users.iter() {
            let (k, _) = kv.map_err(damaged(&self.path))?;
            if k.get(32..) == Some(&manifest.0[..]) {
                out.insert(Digest(k.get(..32).and_then(|s| s.try_into().ok()).unwrap_or([0; 32])));
            }
        }
        Ok(out)
    }

    fn decode_record(&self, bytes: &[u8]) -> Result<CapsuleRecord, StoreError> {
        codec::decode("index record", bytes, 4096)
            .map_err(|e| StoreError::IndexDamaged { path: self.path.clone(), reason: e.to_string() })
    }

    /// Every capsule the index knows, sorted by `name:tag`.
    pub fn capsules(&self) -> Result<Vec<(CapsuleRef, CapsuleRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.capsules.iter() {
            let (k, v) = kv.map_err(damaged(&self.path))?;
            let name = std::str::from_utf8(&k).ok().and_then(|s| s.parse::<CapsuleRef>().ok());
            let Some(r) = name else {
                return Err(StoreError::IndexDamaged { path: self.path.clone(), reason: "bad capsule key".into() });
            };
            out.push((r, self.decode_record(&v)?));
        }
        Ok(out)
    }

    /// Manifests (by digest) that use blob `blob`.
    pub fn users_of(&self, blob: &Digest) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for kv in self.users.scan_prefix(blob.0) {
            let (k, _) = kv.map_err(damaged(&self.path))?;
            if let Some(m) = k.get(32..64).and_then(|s| <[u8; 32]>::try_from(s).ok()) {
                out.push(Digest(m));
            }
        }
        Ok(out)
    }

    /// Bring the index in line with the refs: add what a crash or a deleted index left out,
    /// drop what no ref names. Loads only manifests whose refs changed. Returns how many
    /// records changed.
    pub fn sync(&self, store: &Store) -> Result<usize, StoreError> {
        let refs = store.list_refs()?;
        let known = self.capsules()?;
        let mut changed = 0;
        for (r, rec) in &known {
            if !refs.iter().any(|(rr, d)| rr == r && *d == rec.digest) {
                self.forget(r, store)?;
                changed += 1;
            }
        }
        for (r, d) in &refs {
            if !known.iter().any(|(kr, rec)| kr == r && rec.digest == *d) {
                let m = store.load_manifest(d)?;
                self.record(r, d, &m)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Throw the index away and build it again from the refs and manifests.
    pub fn rebuild(store: &Store) -> Result<usize, StoreError> {
        let _lock = wait_for_lock(store)?;
        let path = store.root().join("index");
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(StoreError::io("failed to remove", &path))?;
        }
        drop(_lock);
        Index::with(store, |idx| idx.sync(store))
    }
}

fn user_key(blob: &Digest, manifest: &Digest) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&blob.0);
    k[32..].copy_from_slice(&manifest.0);
    k
}
