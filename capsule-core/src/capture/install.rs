//! `capture install`: an installer ran with `writecopy` over `/`, so everything it wrote is in
//! a fresh sandbox tree and the host is untouched; [`from_sandbox`] makes a capsule of that
//! tree.
//!
//! What goes in: every file and symlink of the tree that the host does not have, or has with
//! other content, target, mode or owner; directories the host lacks (with parents, as always);
//! and, as deletions, what the installer removed from the host's view (the sandbox's
//! whiteouts). Copies the installer only opened for writing but left as they were (lock files,
//! a config rewritten identically) are left out. Noise rules apply to files as for a snapshot
//! capture (package databases, caches, logs), but directories a package created under them are
//! kept empty: programs expect their log and cache directories to exist (`/var/log/nginx`).

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::builder::Builder;
use super::noise::Noise;
use super::scan::{S_IFDIR, S_IFLNK, S_IFREG, ScanEntry, Stat, host_path, scan};
use super::snapshot::set_entry;
use super::{CaptureError, Progress};
use crate::digest::Digest;
use crate::manifest::{CaptureStep, EntryPoint, RelPath};
use crate::store::{Store, StoreLock};

/// Directories that never hold anything a capsule should carry, not even empty.
const NEVER: &[&str] = &["/tmp", "/var/tmp", "/proc", "/sys", "/dev", "/run", "/var/run", "/var/lock"];

/// Make capsule `name:tag` of install sandbox `tree` (with deletions `whiteouts`) against the
/// host's `/`. `entry` is the default program; without it, every new executable in a bin or
/// sbin directory becomes an entry point. `command` is recorded in the capsule's origin.
#[allow(clippy::too_many_arguments)] // one capture, described once
pub fn from_sandbox(
    store: &Store,
    tree: &Path,
    whiteouts: &[RelPath],
    name: &str,
    tag: &str,
    entry: Option<&str>,
    command: &str,
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    let noise = Noise::with_defaults(&[])?;
    let never = Noise::new(NEVER.iter().map(|s| (*s).to_owned()).collect())?;
    let everything = Noise::new(Vec::new())?;
    let entries = scan(tree, &["/".to_owned()], &everything, progress)?;
    let _lock = StoreLock::shared(store)?;
    let origin = Builder::origin(CaptureStep::Install, command.to_owned());
    let mut b = Builder::new(store, tree, name, tag, origin, progress);
    let mut chosen: Vec<(RelPath, &ScanEntry)> = Vec::new();
    for e in &entries {
        let abs = [b"/", &e.path[..]].concat();
        if e.path.is_empty() || never.covers(&abs) {
            continue;
        }
        let is_dir = e.stat.kind() == S_IFDIR;
        if (!is_dir && noise.covers(&abs)) || same_as_host(tree, e) {
            continue;
        }
        let rel = RelPath::new(e.path.clone()).map_err(|source| CaptureError::Path { path: e.path_buf(), source })?;
        chosen.push((rel, e));
    }
    if chosen.is_empty() && whiteouts.is_empty() {
        return Err(CaptureError::NoChanges { roots: "/".to_owned() });
    }
    let nodes: Vec<(RelPath, &Stat)> = chosen.iter().map(|(r, e)| (r.clone(), &e.stat)).collect();
    b.add_all(&nodes)?;
    let m = b.manifest_mut();
    for w in whiteouts {
        if !noise.covers(&[b"/", w.as_bytes()].concat()) {
            m.deletions.push(w.clone());
        }
    }
    match entry {
        Some(p) => set_entry(m, p)?,
        None => m.entry_points = programs(m),
    }
    super::snapshot::record_etc(m);
    b.commit()
}

/// New executables in the usual program directories, as entry points named after them.
fn programs(m: &crate::manifest::Manifest) -> Vec<EntryPoint> {
    const DIRS: &[&[u8]] = &[b"usr/sbin/", b"usr/bin/", b"sbin/", b"bin/", b"usr/local/bin/", b"usr/local/sbin/"];
    let mut out: Vec<EntryPoint> = m
        .entries
        .iter()
        // Programs, and symlinks to programs (Debian's /usr/bin/redis-server -> redis-check-rdb).
        .filter(|e| match &e.kind {
            crate::manifest::EntryKind::File { .. } => e.mode & 0o111 != 0,
            crate::manifest::EntryKind::Symlink { .. } => m
                .resolve(&e.path)
                .is_some_and(|(_, t)| t.mode & 0o111 != 0 && matches!(t.kind, crate::manifest::EntryKind::File { .. })),
            _ => false,
        })
        .filter(|e| DIRS.iter().any(|d| e.path.as_bytes().strip_prefix(*d).is_some_and(|n| !n.contains(&b'/'))))
        .map(|e| EntryPoint {
            name: String::from_utf8_lossy(e.path.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default())
                .into_owned(),
            path: e.path.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether the host has this node as the tree has it (the installer copied it up and left it).
fn same_as_host(tree: &Path, e: &ScanEntry) -> bool {
    let host = host_path(Path::new("/"), &e.path);
    let Ok(h) = Stat::lstat(&host) else { return false };
    if h.kind() != e.stat.kind() {
        return false;
    }
    let owner_mode = h.mode & 0o7777 == e.stat.mode & 0o7777 && h.uid == e.stat.uid && h.gid == e.stat.gid;
    match e.stat.kind() {
        S_IFDIR => true, // an existing directory is a parent, not news; its metadata is the host's
        S_IFLNK => fs::read_link(&host).ok() == fs::read_link(host_path(tree, &e.path)).ok(),
        S_IFREG => owner_mode && h.size == e.stat.size && same_content(&host, &host_path(tree, &e.path)),
        _ => true,
    }
}

fn same_content(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else { return false };
    if fa.metadata().map(|m| (m.dev(), m.ino())).ok() == fb.metadata().map(|m| (m.dev(), m.ino())).ok() {
        return true;
    }
    let (mut ba, mut bb) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        let (Ok(na), Ok(nb)) = (read_full(&mut fa, &mut ba), read_full(&mut fb, &mut bb)) else { return false };
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
