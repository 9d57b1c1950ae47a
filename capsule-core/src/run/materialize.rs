//! Materialisation: a capsule file becomes a real file the kernel can open.
//!
//! `cache/xx/<digest>-<mode>-<mtime>` holds the decompressed content once per digest, mode and
//! mtime (the mode and mtime live in the inode, and hardlinks share it), written temp → rename
//! so concurrent first opens from several processes are safe. A tree file is a hardlink to it
//! (`link_entry`) until the application writes, when `copy_up` replaces the link with a private
//! copy.

use std::fs::{self, File, FileTimes};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::RunError;
use crate::digest::{Digest, HashingWriter};
use crate::manifest::{Entry, EntryKind, Manifest, RelPath};
use crate::store::{Store, StoreError};

/// The permission bits capsule gives a file it materialises (cache files, copy-ups, seeded
/// state, edited configuration files): no set-uid, set-gid or sticky bit, and never
/// writable by others, whatever the capsule or the host file says. A capsule run by root
/// leaves no set-id file, and no cache file another process could change.
pub fn file_mode(mode: u32) -> u32 {
    mode & 0o775
}

/// The permission bits capsule gives a directory it makes in a sandbox tree or state
/// directory (the skeleton, the host's directories mirrored): no set-id bits, and writable
/// by others only with the sticky bit (`/tmp`'s 1777), which the store's 0700 root keeps to
/// the run's own processes (those that changed user reach the tree through an inherited
/// descriptor, and need it as on the host).
pub fn dir_mode(mode: u32) -> u32 {
    let m = mode & 0o1777;
    if m & 0o1000 != 0 { m } else { m & !0o002 }
}

/// Whether materialised files and directories take the manifest's owners: when the run is
/// by root (only root may give a file away); otherwise they are the runner's.
pub fn owners_kept() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The owner entry `e` gives a materialised file: its manifest's, or `None` (the runner's).
fn owner_of(e: &Entry) -> Option<(u32, u32)> {
    (owners_kept() && (e.uid, e.gid) != (0, 0)).then_some((e.uid, e.gid))
}

/// Give `path` (not followed) the owner of manifest entry `e`, when the run is by root
/// ([`owners_kept`]); otherwise leave it the runner's.
pub fn own(path: &Path, e: &Entry) -> io::Result<()> {
    match owner_of(e) {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        // Root's already (made by root), or the runner's.
        None => Ok(()),
    }
}

/// The cache file for content `digest` with permission bits `mode` and mtime `e`, and the
/// owner when it is not root's (`-UID.GID`: hardlinks share the inode, so each owner has its
/// own cache file).
pub fn cache_path(store: &Store, digest: &Digest, e: &Entry) -> PathBuf {
    let hex = digest.to_hex();
    let owner = owner_of(e).map(|(u, g)| format!("-{u}.{g}")).unwrap_or_default();
    store.root().join("cache").join(&hex[..2]).join(format!("{hex}-{:o}-{}.{}{owner}", e.mode, e.mtime, e.mtime_nsec))
}

/// Decompress blob `digest` into the cache (once), checking its digest on the way. A blob
/// not in the store is fetched first from the registry a lazy pull recorded
/// ([`crate::oci::lazy::fetch_missing`]): this is the one place both tiers' first opens reach.
pub fn ensure_cache(store: &Store, digest: &Digest, e: &Entry) -> Result<PathBuf, RunError> {
    let path = cache_path(store, digest, e);
    if path.exists() {
        return Ok(path);
    }
    if !store.has_blob(digest) {
        crate::oci::lazy::fetch_missing(store, digest)?;
    }
    let dir = path.parent().map(Path::to_owned).unwrap_or_default();
    crate::store::private_dir(&dir).map_err(RunError::io("failed to create", &dir))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(RunError::io("failed to create a file in", &dir))?;
    let mut w = HashingWriter::new(BufWriter::new(tmp.as_file()));
    let undecodable = |e: io::Error| StoreError::Undecodable { digest: *digest, reason: e.to_string() };
    // No more than the entry's size (and one byte to tell): a small blob that decompresses to
    // far more than its entry says is refused before it fills the disk.
    let limit = match e.kind {
        EntryKind::File { size, .. } => size.saturating_add(1),
        _ => u64::MAX,
    };
    let copied = io::copy(&mut io::Read::take(store.open_blob(digest)?, limit), &mut w).map_err(undecodable)?;
    if copied == limit && limit != u64::MAX {
        let reason = format!("decompresses to more than the {} bytes its entry says", limit - 1);
        return Err(StoreError::Undecodable { digest: *digest, reason }.into());
    }
    w.flush().map_err(RunError::io("failed to write", tmp.path()))?;
    let (actual, _) = w.digest();
    drop(w);
    if actual != *digest {
        return Err(StoreError::Corrupt { digest: *digest, actual }.into());
    }
    set_meta(tmp.as_file(), e).map_err(RunError::io("failed to set metadata of", tmp.path()))?;
    // Never over an existing cache file: another first open may be linking that inode right
    // now, and an inode replaced by a rename can no longer be linked (ENOENT). The same
    // content is there already, so ours is dropped.
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(path),
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => Ok(path),
        Err(err) => Err(RunError::Io { action: "failed to write", path: path.clone(), source: err.error }),
    }
}

fn set_meta(f: &File, e: &Entry) -> io::Result<()> {
    // The manifest's owner when run by root (before the mode: chown clears set-id bits).
    if let Some((uid, gid)) = owner_of(e) {
        std::os::unix::fs::fchown(f, Some(uid), Some(gid))?;
    }
    // Never set-id: a capsule's set-uid-root file materialised by root would be one on the
    // host (issue 16).
    f.set_permissions(fs::Permissions::from_mode(file_mode(e.mode)))?;
    // Any mtime a valid manifest may hold: out of range is the epoch, never a panic.
    let secs = u64::try_from(e.mtime).unwrap_or(0);
    let t = UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(e.mtime_nsec.min(999_999_999)))))
        .unwrap_or(UNIX_EPOCH);
    f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
}

/// The manifest entry holding the content of `path` (hardlinks followed), and its digest.
pub(crate) fn content(m: &Manifest, path: &RelPath) -> Option<(Entry, Digest)> {
    let e = m.get(path)?;
    match &e.kind {
        EntryKind::File { digest, .. } => Some((e.clone(), *digest)),
        EntryKind::Hardlink { target } => match m.get(target)?.kind {
            EntryKind::File { digest, .. } => Some((e.clone(), digest)),
            _ => None,
        },
        _ => None,
    }
}

fn tree_path(tree: &Path, path: &RelPath) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    tree.join(std::ffi::OsStr::from_bytes(path.as_bytes()))
}

/// Write `content` to `dest` atomically (a temporary file beside it, then rename), with
/// permission bits `mode` if given: a reader sees the old file or the new one, never a part.
pub fn write_atomic(dest: &Path, content: &[u8], mode: Option<u32>) -> Result<(), RunError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(RunError::io("failed to create a file in", dir))?;
    fs::write(tmp.path(), content).map_err(RunError::io("failed to write", tmp.path()))?;
    if let Some(m) = mode {
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(m))
            .map_err(RunError::io("failed to set mode of", tmp.path()))?;
    }
    tmp.persist(dest).map_err(|e| RunError::Io {
        action: "failed to write",
        path: dest.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// Create the directories `dir` (relative, "a/b") and its ancestors in `tree` where missing,
/// each with the mode and owner of the host directory of the same path when there is one (a
/// program that drops privileges, like apt's `_apt` downloader, must find the permissions it
/// would find on the host), else 0755. Ownership is copied only where the kernel lets us
/// (as root); otherwise the directory is ours, as everything in the sandbox.
pub fn mirror_dirs(tree: &Path, dir: &[u8]) -> Result<(), RunError> {
    use std::os::unix::ffi::OsStrExt;
    let mut end = 0;
    while end < dir.len() {
        end = dir[end..].iter().position(|&c| c == b'/').map_or(dir.len(), |i| end + i);
        let rel = std::ffi::OsStr::from_bytes(&dir[..end]);
        let dest = tree.join(rel);
        end += 1;
        if fs::symlink_metadata(&dest).is_ok() {
            continue;
        }
        match fs::create_dir(&dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(RunError::Io { action: "failed to create", path: dest, source: e }),
        }
        if let Ok(host) = fs::metadata(Path::new("/").join(rel))
            && host.is_dir()
        {
            let _ = fs::set_permissions(&dest, fs::Permissions::from_mode(dir_mode(host.mode())));
            let _ = std::os::unix::fs::lchown(&dest, Some(host.uid()), Some(host.gid()));
        }
    }
    Ok(())
}

/// Whether each directory of `dir` (relative, '/'-separated) is in `tree` or on the host.
fn dirs_exist(tree: &Path, dir: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut end = 0;
    while end < dir.len() {
        end = dir[end..].iter().position(|&c| c == b'/').map_or(dir.len(), |i| end + i);
        let rel = std::ffi::OsStr::from_bytes(&dir[..end]);
        end += 1;
        if fs::symlink_metadata(tree.join(rel)).is_err()
            && !fs::metadata(Path::new("/").join(rel)).is_ok_and(|m| m.is_dir())
        {
            return false;
        }
    }
    true
}

/// Link capsule file `path` into `tree` (no-op if something is there already).
/// `Ok(false)` when `path` is not a regular file of the capsule.
pub fn link_entry(store: &Store, tree: &Path, m: &Manifest, path: &RelPath) -> Result<bool, RunError> {
    let Some((e, digest)) = content(m, path) else { return Ok(false) };
    let dest = tree_path(tree, path);
    if fs::symlink_metadata(&dest).is_ok() {
        return Ok(true);
    }
    let cache = ensure_cache(store, &digest, &e)?;
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p).map_err(RunError::io("failed to create", p))?;
    }
    match fs::hard_link(&cache, &dest) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(true),
        Err(err) => Err(RunError::Io { action: "failed to link", path: dest, source: err }),
    }
}

/// Make `path` in `tree` a private file the application may write: a pristine link (or a
/// capsule file not linked yet) is replaced by a copy; a host file (write-copy isolation) is
/// copied in; for a new file, its parent directories are created in the tree.
pub fn copy_up(store: &Store, tree: &Path, m: &Manifest, path: &RelPath) -> Result<bool, RunError> {
    let dest = tree_path(tree, path);
    let source = match fs::symlink_metadata(&dest) {
        Ok(meta) if meta.is_file() && meta.nlink() == 1 => return Ok(true),
        Ok(meta) if meta.is_file() => dest.clone(),
        Ok(_) => return Ok(true),
        Err(_) => match content(m, path) {
            Some((e, digest)) => ensure_cache(store, &digest, &e)?,
            None => {
                let host = Path::new("/").join(tree_path(Path::new(""), path));
                let parents = path.parent();
                let parents = parents.as_ref().map_or(&b""[..], RelPath::as_bytes);
                // The host entry itself, not what a symlink points to: a symlink is copied as
                // a symlink (a rename or an unlink replaces or removes the link, and `chown -h`
                // changes it, never its target: dpkg renames a new link over
                // `/usr/lib/x86_64-linux-gnu/perl/5.36`, a host link to a directory).
                let meta = fs::symlink_metadata(&host);
                if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
                    mirror_dirs(tree, parents)?;
                    copy_link(&host, &dest)?;
                    return Ok(true);
                }
                // A host directory is mirrored (chmod, chown and new entries then act on the
                // tree's copy); for a new name, its parents are.
                if meta.as_ref().is_ok_and(fs::Metadata::is_dir) {
                    mirror_dirs(tree, path.as_bytes())?;
                    return Ok(true);
                }
                if !meta.as_ref().is_ok_and(fs::Metadata::is_file) {
                    // A new name: only in a directory there is (ENOENT otherwise, as the
                    // kernel's, and no directory is made for it: `open("/nonexistent/x", "w")`
                    // made `/nonexistent` in the sandbox, and a rename into it took a host file
                    // away).
                    if meta.is_err() && !dirs_exist(tree, parents) {
                        return Ok(false);
                    }
                    mirror_dirs(tree, parents)?;
                    return Ok(true);
                }
                host
            }
        },
    };
    let dir = dest.parent().map(Path::to_owned).unwrap_or_default();
    mirror_dirs(tree, path.parent().as_ref().map_or(&b""[..], RelPath::as_bytes))?;
    let tmp = tempfile::Builder::new()
        .prefix(".capsule-copy-")
        .tempfile_in(&dir)
        .map_err(RunError::io("failed to create a file in", &dir))?;
    fs::copy(&source, tmp.path()).map_err(RunError::io("failed to copy", &source))?;
    match content(m, path) {
        Some((e, _)) => set_meta(tmp.as_file(), &e).map_err(RunError::io("failed to set metadata of", tmp.path()))?,
        None => {
            let meta = fs::metadata(&source).map_err(RunError::io("failed to stat", &source))?;
            // The host file's owner where we may (as root), as for directories; before the
            // mode, since chown clears set-id bits.
            let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()));
            // Set-id and others' write bits dropped, as for capsule files.
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(file_mode(meta.mode())))
                .map_err(RunError::io("failed to set mode of", tmp.path()))?;
        }
    }
    tmp.persist(&dest).map_err(|err| RunError::Io {
        action: "failed to write",
        path: dest.clone(),
        source: err.error,
    })?;
    Ok(true)
}

/// Make `dest` (in the tree) a symlink with the target of host symlink `host`, and its owner
/// where we may (as root). A name already there (another run was first) is left.
fn copy_link(host: &Path, dest: &Path) -> Result<(), RunError> {
    let target = fs::read_link(host).map_err(RunError::io("failed to read the link", host))?;
    match std::os::unix::fs::symlink(&target, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(RunError::Io { action: "failed to create symlink", path: dest.to_owned(), source: e }),
    }
    if let Ok(meta) = fs::symlink_metadata(host) {
        let _ = std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// A cache file whose content or mode is not what its name says.
#[derive(Debug)]
pub struct DamagedCache {
    /// The cache file.
    pub path: PathBuf,
    /// The content it should hold.
    pub digest: Digest,
    /// What is wrong.
    pub why: String,
}

/// Check every file of the store's cache (`cache/xx/<digest>-<mode>-<mtime>.<nsec>`): its
/// content must hash to its digest and its permission bits be the ones materialisation gives
/// ([`file_mode`]). A program that wrote through a tree's hardlink (outside both tiers, or
/// outliving its launcher) changed every capsule with that content: this is how it shows.
/// Returns the damaged files and how many were checked.
pub fn check_cache(store: &Store) -> Result<(Vec<DamagedCache>, usize), RunError> {
    let cache = store.root().join("cache");
    let mut damaged = Vec::new();
    let mut checked = 0;
    let Ok(dirs) = fs::read_dir(&cache) else { return Ok((damaged, 0)) };
    for dir in dirs.flatten() {
        let Ok(files) = fs::read_dir(dir.path()) else { continue };
        for f in files.flatten() {
            let name = f.file_name();
            let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else { continue };
            let path = f.path();
            let mut parts = name.splitn(3, '-');
            let (Some(Ok(digest)), Some(Ok(mode))) =
                (parts.next().map(str::parse::<Digest>), parts.next().map(|m| u32::from_str_radix(m, 8)))
            else {
                continue;
            };
            checked += 1;
            let why = match fs::File::open(&path) {
                Err(e) => Some(format!("cannot be read: {e}")),
                Ok(mut file) => {
                    let mut w = HashingWriter::new(io::sink());
                    match io::copy(&mut file, &mut w) {
                        Err(e) => Some(format!("cannot be read: {e}")),
                        Ok(_) => {
                            let (actual, _) = w.digest();
                            let bits = file.metadata().map(|m| m.mode() & 0o7777).unwrap_or(0);
                            if actual != digest {
                                Some(format!("content changed (now {actual})"))
                            } else if bits != file_mode(mode) {
                                Some(format!("mode changed to {bits:o} (materialised {:o})", file_mode(mode)))
                            } else {
                                None
                            }
                        }
                    }
                }
            };
            if let Some(why) = why {
                damaged.push(DamagedCache { path, digest, why });
            }
        }
    }
    damaged.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((damaged, checked))
}

/// Remove damaged cache files, and every sandbox tree's link to them (a pristine file shares
/// the cache's inode): the next open materialises the content again from its blob. How many
/// names were removed.
pub fn remove_damaged(store: &Store, damaged: &[DamagedCache]) -> Result<usize, RunError> {
    let inodes: std::collections::HashSet<(u64, u64)> =
        damaged.iter().filter_map(|d| fs::symlink_metadata(&d.path).ok().map(|m| (m.dev(), m.ino()))).collect();
    let mut removed = 0;
    for d in damaged {
        fs::remove_file(&d.path).map_err(RunError::io("failed to remove", &d.path))?;
        removed += 1;
    }
    let Ok(sandboxes) = fs::read_dir(store.root().join("sandboxes")) else { return Ok(removed) };
    let mut stack: Vec<PathBuf> = sandboxes.flatten().map(|s| s.path().join("root")).collect();
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && inodes.contains(&(m.dev(), m.ino())) {
                fs::remove_file(e.path()).map_err(RunError::io("failed to remove", e.path()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::RelPath;

    fn entry(size: u64, digest: Digest, mode: u32, mtime: i64) -> Entry {
        Entry {
            path: RelPath::new("opt/x").unwrap(),
            kind: EntryKind::File { size, digest },
            mode,
            uid: 0,
            gid: 0,
            mtime,
            mtime_nsec: 999_999_999,
            origin: 0,
        }
    }

    /// Absurd but valid manifest values (issue 16): a far-future mtime is the epoch, not a
    /// panic; set-id bits are dropped; a blob that decompresses past its entry's size is
    /// refused, naming the digest, before it is written out.
    #[test]
    fn hostile_entries_are_materialised_safely_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let digest = store.put_bytes(&[b'x'; 4096]).unwrap();
        let path = ensure_cache(&store, &digest, &entry(4096, digest, 0o6755, i64::MAX)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        let open = ensure_cache(&store, &digest, &entry(4096, digest, 0o7777, 0)).unwrap();
        assert_eq!(fs::metadata(&open).unwrap().permissions().mode() & 0o7777, 0o775, "no set-id, sticky or o+w");
        assert_eq!((dir_mode(0o1777), dir_mode(0o0777), dir_mode(0o2775)), (0o1777, 0o775, 0o775));
        let bomb = ensure_cache(&store, &digest, &entry(7, digest, 0o644, 0)).unwrap_err().to_string();
        assert!(bomb.contains(&digest.to_hex()[..12]) && bomb.contains("more than the 7 bytes"), "{bomb}");
    }
}
