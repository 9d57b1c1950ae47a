//! Snapshot capture (ThinApp's pre-scan / post-scan).
//!
//! [`begin`] scans the watched roots (metadata only) into a [`Snapshot`] blob and points
//! `snapshots/pending` at it. [`end`] rescans, [`diff`]s the two sorted scans in one merge
//! pass, hashes only added and changed files, and commits a capsule holding them, their parent
//! directories, the deletions (as whiteouts) and, for everything under /etc, registry entries
//! (`machine/files/etc/...`). The pending pointer is removed only after the commit, so a crash
//! or a failed `end` can simply be retried.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::builder::Builder;
use super::noise::Noise;
use super::scan::{S_IFDIR, ScanEntry, scan};
use super::{CaptureError, Progress};
use crate::codec;
use crate::digest::Digest;
use crate::manifest::{CaptureStep, EntryKind, RegValue, RelPath};
use crate::store::{Store, StoreError, StoreLock};

const MAGIC: &[u8; 8] = b"CAPSSNAP";
/// Version 2 added [`Snapshot::dpkg`]; a version-1 pending snapshot is still ended.
const VERSION: u16 = 2;
/// The largest snapshot accepted (tens of millions of files).
const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;
/// The default watched roots.
pub const DEFAULT_ROOTS: &[&str] = &["/usr", "/etc", "/opt", "/var/lib", "/srv"];

/// A pre-scan, kept as a blob until `end`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Host directory standing for `/` (normally `/`).
    pub base: PathBuf,
    /// Watched roots.
    pub roots: Vec<String>,
    /// Noise patterns in force (defaults included).
    pub noise: Vec<String>,
    /// When it was taken.
    pub taken: u64,
    /// What was seen, sorted by path.
    pub entries: Vec<ScanEntry>,
    /// The packages dpkg had installed under `base` (name, architecture, version), to tell
    /// at `end` which ones the install added or changed; `None` from a version-1 snapshot.
    pub dpkg: Option<Vec<(String, String, String)>>,
}

/// A version-1 pending snapshot (taken by an older build), field for field.
#[derive(Deserialize)]
struct SnapshotV1 {
    base: PathBuf,
    roots: Vec<String>,
    noise: Vec<String>,
    taken: u64,
    entries: Vec<ScanEntry>,
}

/// What changed between two scans.
#[derive(Debug, Default)]
pub struct Diff {
    /// New paths, and paths whose content or metadata changed.
    pub changed: Vec<ScanEntry>,
    /// Paths that are gone.
    pub deleted: Vec<Vec<u8>>,
}

/// Merge two sorted scans. A directory counts as changed only if it is new or its type,
/// mode or owner changed: its mtime moves whenever a child is added, which says nothing.
pub fn diff(old: &[ScanEntry], new: &[ScanEntry]) -> Diff {
    let mut d = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.path == n.path => {
                let (a, b) = (&o.stat, &n.stat);
                let meta = a.mode != b.mode || a.uid != b.uid || a.gid != b.gid;
                let content = (a.size, a.mtime, a.mtime_nsec, a.ctime, a.ctime_nsec, a.ino)
                    != (b.size, b.mtime, b.mtime_nsec, b.ctime, b.ctime_nsec, b.ino);
                if meta || (content && b.kind() != S_IFDIR) {
                    d.changed.push(n.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.path < n.path => {
                d.deleted.push(o.path.clone());
                i += 1;
            }
            (Some(o), None) => {
                d.deleted.push(o.path.clone());
                i += 1;
            }
            (_, Some(n)) => {
                d.changed.push(n.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    // Below a deleted directory, only the directory itself needs a whiteout.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for p in d.deleted {
        let covered = kept.last().is_some_and(|k| p.starts_with(k) && p.get(k.len()) == Some(&b'/'));
        if !covered {
            kept.push(p);
        }
    }
    d.deleted = kept;
    d
}

fn pending_path(store: &Store) -> PathBuf {
    store.root().join("snapshots").join("pending")
}

/// Scan `roots` under `base` and make the result the pending snapshot. Returns its digest.
pub fn begin(
    store: &Store,
    base: &Path,
    roots: &[String],
    extra_noise: &[String],
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    let mut patterns = extra_noise.to_vec();
    patterns.extend(store_noise(store, base));
    patterns.extend(user_noise(store)?);
    let noise = Noise::with_defaults(&patterns)?;
    let entries = scan(base, roots, &noise, progress)?;
    let snap = Snapshot {
        base: base.to_owned(),
        roots: roots.to_vec(),
        noise: noise.patterns().to_vec(),
        taken: super::now(),
        entries,
        dpkg: Some(
            super::dpkg::read(base)?
                .into_iter()
                .filter(super::dpkg::Record::installed)
                .map(|r| (r.package, r.architecture, r.version))
                .collect(),
        ),
    };
    let _lock = StoreLock::shared(store)?;
    let digest = store.put_bytes(&codec::envelope(MAGIC, VERSION, &snap))?;
    let path = pending_path(store);
    let mut tmp = tempfile::NamedTempFile::new_in(store.root().join("snapshots"))
        .map_err(StoreError::io("failed to write", &path))?;
    writeln!(tmp, "{digest}").map_err(StoreError::io("failed to write", &path))?;
    tmp.as_file().sync_all().map_err(StoreError::io("failed to sync", &path))?;
    tmp.persist(&path).map_err(|e| StoreError::Io {
        action: "failed to write",
        path: path.clone(),
        source: e.error,
    })?;
    tracing::info!(%digest, files = snap.entries.len(), "snapshot taken");
    Ok(digest)
}

/// The store's `excludes` file: one glob per line, `#` comments; the user's lasting
/// additions to the default noise rules.
fn user_noise(store: &Store) -> Result<Vec<String>, CaptureError> {
    let path = store.root().join("excludes");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CaptureError::Io { action: "failed to read", path, source: e }),
    }
}

/// The store itself is noise when it lies under a watched root.
fn store_noise(store: &Store, base: &Path) -> Vec<String> {
    let root = fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_owned());
    let base = fs::canonicalize(base).unwrap_or_else(|_| base.to_owned());
    match root.strip_prefix(&base) {
        Ok(rel) => vec![format!("/{}", rel.display())],
        Err(_) => Vec::new(),
    }
}

/// The pending snapshot's digest and content.
pub fn pending(store: &Store) -> Result<(Digest, Snapshot), CaptureError> {
    let path = pending_path(store);
    let text =
        fs::read_to_string(&path).map_err(|_| CaptureError::NoPendingSnapshot { store: store.root().to_owned() })?;
    let digest: Digest = text.trim().parse().map_err(|_| StoreError::BadRef { path })?;
    let bytes = store.read_blob(&digest, MAX_SNAPSHOT_BYTES, "snapshot")?;
    let snap = if bytes.get(8..10) == Some(&1u16.to_le_bytes()[..]) {
        let (_, old): (u16, SnapshotV1) = codec::open_envelope("snapshot", MAGIC, 1, &bytes, MAX_SNAPSHOT_BYTES)
            .map_err(|source| StoreError::Snapshot { digest, source })?;
        let SnapshotV1 { base, roots, noise, taken, entries } = old;
        Snapshot { base, roots, noise, taken, entries, dpkg: None }
    } else {
        codec::open_envelope("snapshot", MAGIC, VERSION, &bytes, MAX_SNAPSHOT_BYTES)
            .map_err(|source| StoreError::Snapshot { digest, source })?
            .1
    };
    Ok((digest, snap))
}

/// Rescan, diff against the pending snapshot and commit capsule `name:tag`. `entry` names
/// the default program. Returns the manifest digest.
pub fn end(
    store: &Store,
    name: &str,
    tag: &str,
    entry: Option<&str>,
    base: crate::manifest::BaseKind,
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    let (snap_digest, snap) = pending(store)?;
    let noise = Noise::new(snap.noise.clone())?;
    let now = scan(&snap.base, &snap.roots, &noise, progress)?;
    let d = diff(&snap.entries, &now);
    if d.changed.is_empty() && d.deleted.is_empty() {
        return Err(CaptureError::NoChanges { roots: snap.roots.join(",") });
    }
    let _lock = StoreLock::shared(store)?;
    let origin =
        Builder::origin(CaptureStep::SnapshotDiff, format!("snapshot {snap_digest} of {}", snap.roots.join(",")));
    let mut b = Builder::new(store, &snap.base, name, tag, origin, progress);
    let mut nodes = Vec::with_capacity(d.changed.len());
    for e in &d.changed {
        let rel = RelPath::new(e.path.clone()).map_err(|source| CaptureError::Path { path: e.path_buf(), source })?;
        nodes.push((rel, &e.stat));
    }
    b.add_all(&nodes)?;
    let m = b.manifest_mut();
    for p in &d.deleted {
        m.deletions.push(RelPath::new(p.clone()).map_err(|source| CaptureError::Path {
            path: PathBuf::from(String::from_utf8_lossy(p).into_owned()),
            source,
        })?);
    }
    record_etc(m);
    if let Some(entry) = entry {
        set_entry(m, entry)?;
    }
    super::programs::record(m, &snap.base, &[], true);
    let captured = captured_packages(m, &snap)?;
    let src = super::closure::Source { root: &snap.base, db: &snap.base };
    let added = super::closure::complete(&mut b, base, &src, &captured, progress)?;
    let all: Vec<_> = captured.into_iter().chain(added.packages).collect();
    b.manifest_mut().inventory = Some(super::dpkg::inventory(&all, super::dpkg::os_release(&snap.base)));
    let digest = b.commit()?;
    let _ = fs::remove_file(pending_path(store));
    Ok(digest)
}

/// The packages dpkg has installed under the snapshot's base now that it did not have at the
/// same version when the snapshot was taken. A version-1 snapshot recorded none: then the
/// installed packages owning files of the capsule.
fn captured_packages(m: &crate::manifest::Manifest, snap: &Snapshot) -> Result<Vec<super::dpkg::Record>, CaptureError> {
    use super::dpkg;
    let now = dpkg::read(&snap.base)?;
    let changed = match &snap.dpkg {
        Some(before) => {
            let before: Vec<dpkg::Record> = before
                .iter()
                .map(|(package, architecture, version)| dpkg::Record {
                    package: package.clone(),
                    architecture: architecture.clone(),
                    version: version.clone(),
                    status: "install ok installed".to_owned(),
                    ..dpkg::Record::default()
                })
                .collect();
            dpkg::changed(&before, &now, &[])
        }
        None => dpkg::owning(m, &snap.base, &now),
    };
    Ok(changed)
}

/// Every /etc file the capture added, changed or deleted becomes a registry entry.
pub(crate) fn record_etc(m: &mut crate::manifest::Manifest) {
    for e in &m.entries {
        if let (true, EntryKind::File { digest, .. }) = (e.path.as_bytes().starts_with(b"etc/"), &e.kind) {
            m.registry.push((format!("machine/files{}", e.path), RegValue::File { digest: *digest, mode: e.mode }));
        }
    }
    for d in &m.deletions {
        if d.as_bytes().starts_with(b"etc/") {
            m.registry.push((format!("machine/files{d}"), RegValue::Deleted));
        }
    }
}

/// Make `path` the capsule's first entry point and its default (declared at capture).
pub fn set_entry(m: &mut crate::manifest::Manifest, path: &str) -> Result<(), CaptureError> {
    let rel = RelPath::from_host(path.as_bytes()).map_err(|source| CaptureError::Path { path: path.into(), source })?;
    let name = rel.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default();
    let name = String::from_utf8_lossy(name).into_owned();
    m.entry_points.retain(|e| e.path != rel && e.name != name);
    m.entry_points
        .insert(0, crate::manifest::EntryPoint::new(name.clone(), rel, crate::manifest::EntrySource::Declared));
    m.default_entry = Some(name);
    Ok(())
}

impl ScanEntry {
    /// The path for error messages.
    pub fn path_buf(&self) -> PathBuf {
        PathBuf::from(format!("/{}", String::from_utf8_lossy(&self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::NoProgress;
    use crate::capture::scan::{S_IFREG, Stat};
    use crate::manifest::BaseKind;

    fn e(p: &str, mode: u32, size: u64) -> ScanEntry {
        let stat = Stat {
            mode,
            uid: 0,
            gid: 0,
            size,
            mtime: 1,
            mtime_nsec: 0,
            ctime: 1,
            ctime_nsec: 0,
            ino: 1,
            dev: 1,
            nlink: 1,
        };
        ScanEntry { path: p.as_bytes().to_vec(), stat }
    }

    #[test]
    fn diff_cases() {
        let old = vec![
            e("a", S_IFDIR, 0),
            e("a/gone", S_IFDIR, 0),
            e("a/gone/x", S_IFREG, 1),
            e("a/grow", S_IFREG, 1),
            e("a/same", S_IFREG, 1),
        ];
        let mut dir = e("a", S_IFDIR, 0);
        dir.stat.mtime = 9; // a child was added: not a change by itself
        let new = vec![dir, e("a/grow", S_IFREG, 2), e("a/new", S_IFREG, 1), e("a/same", S_IFREG, 1)];
        let d = diff(&old, &new);
        let changed: Vec<_> = d.changed.iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect();
        assert_eq!(changed, ["a/grow", "a/new"]);
        assert_eq!(d.deleted, vec![b"a/gone".to_vec()]);
    }

    #[test]
    fn begin_end_on_a_tree() {
        let host = tempfile::tempdir().unwrap();
        let st = tempfile::tempdir().unwrap();
        let store = Store::open(st.path()).unwrap();
        let b = host.path();
        fs::create_dir_all(b.join("usr/bin")).unwrap();
        fs::create_dir_all(b.join("etc")).unwrap();
        fs::write(b.join("usr/bin/old"), b"old").unwrap();
        fs::write(b.join("etc/gone.conf"), b"x").unwrap();
        let roots = vec!["/usr".to_string(), "/etc".to_string()];
        fs::write(st.path().join("excludes"), "# user rules\n/usr/share/app/*.log\n").unwrap();
        fs::create_dir_all(b.join("var/lib/dpkg")).unwrap();
        let pkg = |name: &str, version: &str| {
            format!("Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n")
        };
        fs::write(b.join("var/lib/dpkg/status"), pkg("kept", "1") + &pkg("upgraded", "1")).unwrap();
        begin(&store, b, &roots, &["/etc/skip.conf".into()], &NoProgress).unwrap();
        assert!(matches!(
            end(&store, "t", "latest", None, BaseKind::Host, &NoProgress),
            Err(CaptureError::NoChanges { .. })
        ));
        fs::create_dir_all(b.join("usr/share/app")).unwrap();
        fs::write(b.join("usr/share/app/data"), b"data").unwrap();
        fs::hard_link(b.join("usr/share/app/data"), b.join("usr/share/app/data2")).unwrap();
        fs::write(b.join("etc/app.conf"), b"k = v\n").unwrap();
        fs::write(b.join("etc/skip.conf"), b"excluded by --exclude\n").unwrap();
        fs::write(b.join("usr/share/app/run.log"), b"excluded by the excludes file\n").unwrap();
        fs::remove_file(b.join("etc/gone.conf")).unwrap();
        std::os::unix::fs::symlink("/usr/share/app/data", b.join("usr/bin/app")).unwrap();
        let status = pkg("app", "2:1.0-1") + &pkg("kept", "1") + &pkg("upgraded", "2");
        fs::write(b.join("var/lib/dpkg/status"), status).unwrap();
        let digest = end(&store, "t", "latest", Some("/usr/bin/app"), BaseKind::Host, &NoProgress).unwrap();
        let m = store.load_manifest(&digest).unwrap();
        let paths: Vec<_> = m.entries.iter().map(|e| e.path.display()).collect();
        assert_eq!(
            paths,
            [
                "/etc",
                "/etc/app.conf",
                "/usr",
                "/usr/bin",
                "/usr/bin/app",
                "/usr/share",
                "/usr/share/app",
                "/usr/share/app/data",
                "/usr/share/app/data2"
            ]
        );
        let kinds: Vec<_> = m.entries.iter().map(|e| e.kind.name()).collect();
        assert_eq!(kinds[8], "hardlink");
        assert_eq!(
            m.get(&RelPath::new("usr/bin/app").unwrap()).unwrap().kind,
            EntryKind::Symlink { target: b"../share/app/data".to_vec() }
        );
        assert_eq!(m.deletions, vec![RelPath::new("etc/gone.conf").unwrap()]);
        let keys: Vec<_> = m.registry.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["machine/files/etc/app.conf", "machine/files/etc/gone.conf"]);
        assert_eq!(m.entry_points[0].name, "app");
        // The packages the install added or changed, not those it left alone.
        let inv = m.inventory.as_ref().unwrap();
        let pkgs: Vec<(&str, &str)> = inv.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
        assert_eq!(pkgs, [("app", "2:1.0-1"), ("upgraded", "2")]);
        // The pending snapshot is consumed.
        assert!(matches!(
            end(&store, "t", "latest", None, BaseKind::Host, &NoProgress),
            Err(CaptureError::NoPendingSnapshot { .. })
        ));
    }
}
