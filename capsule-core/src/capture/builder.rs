//! [`Builder`]: the one place host files become manifest entries, for every capture kind.
//!
//! It hashes regular files into the store (content-addressed, so a file already there costs
//! only its read), records a second name of an inode already captured as a hardlink, rewrites
//! symlink targets into the relative form a manifest requires, and adds parent directories
//! with their host metadata so the capsule's tree is complete. Device nodes, FIFOs and
//! sockets are skipped: a capsule carries files, not devices.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::scan::{S_IFDIR, S_IFLNK, S_IFREG, Stat, host_path};
use super::{CaptureError, Progress};
use crate::digest::Digest;
use crate::manifest::{
    CaptureStep, Entry, EntryKind, Manifest, Origin, RelPath, relativize_symlink, symlink_destination,
};
use crate::store::{BlobBatch, StagedBlob, Store, StoreError};

/// Builds one capsule's manifest from host files under `base` (the host directory that stands
/// for the capsule's `/`).
pub struct Builder<'s> {
    store: &'s Store,
    /// File contents, made durable together at [`Builder::commit`].
    batch: BlobBatch<'s>,
    base: PathBuf,
    manifest: Manifest,
    origin: u32,
    /// Contents hashed ahead of `add` by [`Builder::prestage`], taken by `add`.
    prestaged: HashMap<RelPath, StagedBlob>,
    /// Path → position in `manifest.entries` (unsorted until `commit`).
    seen: HashMap<RelPath, usize>,
    inodes: HashMap<(u64, u64), RelPath>,
    progress: &'s dyn Progress,
}

impl<'s> Builder<'s> {
    /// A builder for capsule `name:tag` whose files come from one capture step.
    pub fn new(
        store: &'s Store,
        base: &Path,
        name: &str,
        tag: &str,
        origin: Origin,
        progress: &'s dyn Progress,
    ) -> Self {
        let mut manifest = Manifest::new(name, tag, origin.at);
        manifest.origins.push(origin);
        Builder {
            store,
            batch: BlobBatch::new(store),
            prestaged: HashMap::new(),
            base: base.to_owned(),
            manifest,
            origin: 0,
            seen: HashMap::new(),
            inodes: HashMap::new(),
            progress,
        }
    }

    /// An origin record for `step` made now.
    pub fn origin(step: CaptureStep, detail: String) -> Origin {
        Origin { step, detail, at: super::now() }
    }

    /// The manifest so far, for fields a capture kind sets itself (entry points, registry).
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// Record the entries added from now on as coming from a new capture step `origin`.
    pub fn begin_origin(&mut self, origin: Origin) {
        self.origin = u32::try_from(self.manifest.origins.len()).unwrap_or(u32::MAX);
        self.manifest.origins.push(origin);
    }

    /// The index of the capture step entries are recorded under now.
    pub fn current_origin(&self) -> u32 {
        self.origin
    }

    /// Run `f` with host files read from `base` instead of the builder's own directory (a
    /// closure's files come from the capture's source root, not the install's sandbox tree).
    pub fn with_base<R>(&mut self, base: &Path, f: impl FnOnce(&mut Self) -> R) -> R {
        let own = std::mem::replace(&mut self.base, base.to_owned());
        let out = f(self);
        self.base = own;
        out
    }

    /// The directory host files are read from.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Whether `rel` is already recorded.
    pub fn contains(&self, rel: &RelPath) -> bool {
        self.seen.contains_key(rel)
    }

    /// Record host node `rel` (whose `lstat` is `stat`). Returns the entry, or `None` for a
    /// node kind capsules do not carry.
    pub fn add(&mut self, rel: &RelPath, stat: &Stat) -> Result<Option<&Entry>, CaptureError> {
        if let Some(&i) = self.seen.get(rel) {
            return Ok(self.manifest.entries.get(i));
        }
        let host = host_path(&self.base, rel.as_bytes());
        let kind = match stat.kind() {
            S_IFDIR => EntryKind::Dir,
            S_IFREG => self.file_kind(rel, stat, &host)?,
            S_IFLNK => {
                let target = fs::read_link(&host).map_err(CaptureError::io("failed to read symlink", &host))?;
                EntryKind::Symlink { target: relativize_symlink(rel, target.as_os_str().as_bytes()) }
            }
            _ => {
                tracing::debug!(path = %rel, "skipping device, fifo or socket");
                return Ok(None);
            }
        };
        self.seen.insert(rel.clone(), self.manifest.entries.len());
        self.manifest.entries.push(Entry {
            path: rel.clone(),
            kind,
            mode: stat.mode & 0o7777,
            uid: stat.uid,
            gid: stat.gid,
            mtime: stat.mtime,
            mtime_nsec: stat.mtime_nsec,
            origin: self.origin,
        });
        Ok(self.manifest.entries.last())
    }

    fn file_kind(&mut self, rel: &RelPath, stat: &Stat, host: &Path) -> Result<EntryKind, CaptureError> {
        if stat.nlink > 1 {
            if let Some(first) = self.inodes.get(&(stat.dev, stat.ino)) {
                return Ok(EntryKind::Hardlink { target: first.clone() });
            }
            self.inodes.insert((stat.dev, stat.ino), rel.clone());
        }
        let (digest, size) = match self.prestaged.remove(rel) {
            Some(s) => {
                let out = (s.digest, s.size);
                self.batch.push(s);
                out
            }
            None => {
                self.progress.inc(1);
                self.batch.put_file(host)?
            }
        };
        Ok(EntryKind::File { size, digest })
    }

    /// Hash and compress the regular files `files` on every core, ahead of the `add` calls that
    /// will record them. Hashing and zstd are CPU-bound per file, so this scales with cores;
    /// the manifest is still built in one thread, in order.
    pub fn prestage(&mut self, files: &[RelPath]) -> Result<(), CaptureError> {
        let workers = std::thread::available_parallelism().map_or(1, usize::from).min(files.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (store, base, progress) = (self.store, &self.base, self.progress);
        let results: Vec<Vec<(usize, Result<StagedBlob, StoreError>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(rel) = files.get(i) else { break };
                            out.push((i, store.stage_file(&host_path(base, rel.as_bytes()))));
                            progress.inc(1);
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        for (i, r) in results.into_iter().flatten() {
            if let Some(rel) = files.get(i) {
                self.prestaged.insert(rel.clone(), r?);
            }
        }
        Ok(())
    }

    /// Record host nodes `nodes` (capsule path, `lstat`) with their parents: the regular files
    /// hashed on every core first ([`prestage`](Self::prestage)), then each recorded in order.
    /// What every capture kind that picked its nodes from a scan does.
    pub fn add_all(&mut self, nodes: &[(RelPath, &Stat)]) -> Result<(), CaptureError> {
        let files: Vec<RelPath> = nodes.iter().filter(|(_, st)| st.kind() == S_IFREG).map(|(r, _)| r.clone()).collect();
        self.progress.start("hashing", Some(files.len() as u64));
        self.prestage(&files)?;
        for (rel, st) in nodes {
            self.add_parents(rel)?;
            self.add(rel, st)?;
        }
        self.progress.finish();
        Ok(())
    }

    /// Record every ancestor directory of `rel` not recorded yet, with its host metadata.
    pub fn add_parents(&mut self, rel: &RelPath) -> Result<(), CaptureError> {
        for dir in rel.ancestors() {
            if self.seen.contains_key(&dir) {
                continue;
            }
            let host = host_path(&self.base, dir.as_bytes());
            let stat = Stat::lstat(&host).map_err(CaptureError::io("failed to stat", &host))?;
            self.add(&dir, &stat)?;
        }
        Ok(())
    }

    /// Record absolute host path `abs` the way the kernel reaches it: every directory on the
    /// way, and every symlink met (in a directory component or at the end) together with what
    /// it points to. Returns the capsule path of the final, non-symlink node.
    pub fn add_resolved(&mut self, abs: &Path) -> Result<RelPath, CaptureError> {
        let bad = |source| CaptureError::Path { path: abs.to_owned(), source };
        let mut pending = RelPath::from_host(abs.as_os_str().as_bytes()).map_err(bad)?;
        'hops: for _ in 0..40 {
            let bytes = pending.as_bytes().to_vec();
            let comps: Vec<&[u8]> = bytes.split(|&c| c == b'/').collect();
            let mut cur = Vec::new();
            for (i, comp) in comps.iter().enumerate() {
                if i > 0 {
                    cur.push(b'/');
                }
                cur.extend_from_slice(comp);
                let rel = RelPath::new(cur.clone()).map_err(bad)?;
                let host = host_path(&self.base, &cur);
                let stat = Stat::lstat(&host).map_err(CaptureError::io("failed to stat", &host))?;
                let entry = self.add(&rel, &stat)?;
                if let Some(Entry { kind: EntryKind::Symlink { target }, .. }) = entry {
                    let dest = symlink_destination(&rel, target);
                    let mut next = dest.map(|d| d.as_bytes().to_vec()).unwrap_or_default();
                    for rest in &comps[i + 1..] {
                        if !next.is_empty() {
                            next.push(b'/');
                        }
                        next.extend_from_slice(rest);
                    }
                    pending = RelPath::new(next).map_err(bad)?;
                    continue 'hops;
                }
            }
            return Ok(pending);
        }
        Err(CaptureError::Io {
            action: "too many levels of symbolic links in",
            path: abs.to_owned(),
            source: std::io::Error::from_raw_os_error(libc::ELOOP),
        })
    }

    /// Sort and validate the manifest, make the file blobs durable, and commit the capsule.
    /// The caller holds a shared [`crate::store::StoreLock`] from before the first `add`.
    pub fn commit(mut self) -> Result<Digest, CaptureError> {
        self.manifest.normalize();
        self.manifest.validate()?;
        self.batch.commit()?;
        Ok(self.store.commit_capsule(&self.manifest)?)
    }

    /// [`commit`](Self::commit) without a name: the blobs and the manifest are made durable,
    /// no ref names the capsule (`capture install --root` runs its installer over it; the
    /// caller keeps it from `gc`). Returns the manifest's digest and the manifest.
    pub fn commit_unnamed(mut self) -> Result<(Digest, Manifest), CaptureError> {
        self.manifest.normalize();
        self.manifest.validate()?;
        self.batch.commit()?;
        let digest = self.store.put_bytes(&self.manifest.encode())?;
        Ok((digest, self.manifest))
    }
}
