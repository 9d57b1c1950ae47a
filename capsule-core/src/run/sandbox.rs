//! [`Sandbox`]: `sandboxes/NAME/` — the tree the application sees its capsule through, and
//! the writes it made, kept across runs.
//!
//! ```text
//! sandboxes/NAME/root/        the tree: capsule dirs and symlinks (skeleton), lazily linked
//!                             capsule files (hardlinks into cache/, nlink > 1), and the
//!                             application's own files and copies (private, nlink == 1)
//! sandboxes/NAME/whiteouts    one path per line: files the application deleted
//! sandboxes/NAME/skeleton     the manifest digest the skeleton was built for
//! sandboxes/NAME/linked       one path per line: capsule directories whose files are all
//!                             linked in the tree (listings skip the materialiser)
//! ```
//! A pristine capsule file is a hardlink to its cache inode, which is why every write goes
//! through a copy-up first: writing through the link would change the cache for every capsule.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::RunError;
use crate::digest::Digest;
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::store::Store;

/// One capsule's sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
    tree: PathBuf,
}

/// What `sandbox diff` reports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Paths the application created (not in the capsule).
    pub added: Vec<String>,
    /// Capsule files the application changed.
    pub modified: Vec<String>,
    /// Paths the application deleted.
    pub deleted: Vec<String>,
}

fn rel_host(tree: &Path, rel: &RelPath) -> PathBuf {
    tree.join(std::ffi::OsStr::new(&*String::from_utf8_lossy(rel.as_bytes())))
}

impl Sandbox {
    /// The sandbox of capsule `name` (created if missing).
    pub fn open(store: &Store, name: &str) -> Result<Sandbox, RunError> {
        let dir = store.root().join("sandboxes").join(name);
        let tree = dir.join("root");
        // The sandbox's own directory is private; the tree mirrors the host's root (0755) for
        // the run's processes that change user, which reach it through an inherited descriptor.
        if !tree.is_dir() {
            crate::store::private_dir(&dir).map_err(RunError::io("failed to create sandbox", &dir))?;
            match fs::create_dir(&tree) {
                // 0755 whatever the umask: a program of the run started as another user
                // (`run --user`) enters it through its inherited descriptor.
                Ok(()) => fs::set_permissions(&tree, fs::Permissions::from_mode(0o755))
                    .map_err(RunError::io("failed to set mode of", &tree))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(RunError::Io { action: "failed to create sandbox", path: tree, source: e }),
            }
        }
        Ok(Sandbox { dir, tree })
    }

    /// The sandbox's own directory (tree, whiteouts, registry layer).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tree's host path.
    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// The store's cache of materialised files (`STORE/cache`, beside `sandboxes/`).
    fn cache_dir(&self) -> PathBuf {
        self.dir.parent().and_then(Path::parent).map_or_else(PathBuf::new, |store| store.join("cache"))
    }

    /// Create the capsule's directories and symlinks in the tree, once per manifest digest.
    /// When the capsule changed, pristine links of the old version are dropped first; the
    /// application's own files stay.
    pub fn build_skeleton(&self, digest: &Digest, m: &Manifest) -> Result<(), RunError> {
        // The table of deletions exists before the program starts, so that its shim maps it.
        if fs::symlink_metadata(self.dir.join(crate::view::live::FILE)).is_err() {
            let _ = self.deletions();
        }
        // What the program sees of this directory (`resolve::EMPTY_DIR`): empty, read-only.
        let empty = self.dir.join(crate::resolve::EMPTY_DIR);
        if fs::symlink_metadata(&empty).is_err() {
            match fs::create_dir(&empty) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(RunError::Io { action: "failed to create", path: empty, source: e });
                }
                _ => fs::set_permissions(&empty, fs::Permissions::from_mode(0o555))
                    .map_err(RunError::io("failed to set mode of", &empty))?,
            }
        }
        let stamp = self.dir.join("skeleton");
        let current = |stamp: &Path| fs::read_to_string(stamp).ok().map(|s| s.trim() == digest.to_hex());
        if current(&stamp) == Some(true) {
            return Ok(());
        }
        // Two first runs of one sandbox at once: one builds, the other waits for it and then
        // finds the stamp written (a check-then-create without the lock failed with EEXIST,
        // and a half-written stamp read as another version dropped the first run's links).
        let lock_path = self.dir.join("skeleton.lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(RunError::io("failed to open", &lock_path))?;
        lock.lock().map_err(RunError::io("failed to lock", &lock_path))?;
        match current(&stamp) {
            Some(true) => return Ok(()),
            Some(false) => drop_pristine(&self.tree, &self.cache_dir())?,
            None => {}
        }
        // Another manifest (or none recorded): no directory is known to be complete.
        let linked = self.dir.join("linked");
        match fs::remove_file(&linked) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(RunError::Io { action: "failed to remove", path: linked, source: e });
            }
            _ => {}
        }
        for e in &m.entries {
            let host = rel_host(&self.tree, &e.path);
            match &e.kind {
                EntryKind::Dir => {
                    fs::create_dir_all(&host).map_err(RunError::io("failed to create", &host))?;
                    // The owner must be able to add files (lazy links, copy-ups).
                    let perm = fs::Permissions::from_mode(super::materialize::dir_mode(e.mode) | 0o700);
                    // The manifest's owner, when we may give it (as root): a daemon that
                    // drops to its own user writes its packaged state directories.
                    super::materialize::own(&host, e).map_err(RunError::io("failed to set the owner of", &host))?;
                    fs::set_permissions(&host, perm).map_err(RunError::io("failed to set mode of", &host))?;
                }
                EntryKind::Symlink { target } => {
                    if fs::symlink_metadata(&host).is_err() {
                        let t = std::ffi::OsStr::new(&*String::from_utf8_lossy(target)).to_owned();
                        if let Some(p) = host.parent() {
                            fs::create_dir_all(p).map_err(RunError::io("failed to create", p))?;
                        }
                        match symlink(&t, &host) {
                            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                                return Err(RunError::Io { action: "failed to create symlink", path: host, source: e });
                            }
                            Err(_) => {}
                            Ok(()) => super::materialize::own(&host, e)
                                .map_err(RunError::io("failed to set the owner of", &host))?,
                        }
                    }
                }
                EntryKind::File { .. } | EntryKind::Hardlink { .. } => {}
            }
        }
        // Replaced whole: a reader never sees it half written.
        super::materialize::write_atomic(&stamp, digest.to_hex().as_bytes(), Some(0o644))
    }

    /// The sandbox's table of deletions ([`crate::view::live`]), mapped writable (created if
    /// need be); `None` if it cannot be.
    pub fn deletions(&self) -> Option<crate::view::live::Mapping> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.join(crate::view::live::FILE).as_os_str().as_bytes()).ok()?;
        crate::view::live::Mapping::open(&path, true)
    }

    /// Paths deleted in earlier runs.
    pub fn whiteouts(&self) -> Result<Vec<RelPath>, RunError> {
        let path = self.dir.join("whiteouts");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RunError::Io { action: "failed to read", path, source: e }),
        };
        let set: BTreeSet<RelPath> = text.lines().filter_map(|l| RelPath::new(l.as_bytes()).ok()).collect();
        // A path re-created after its deletion is no longer whited out.
        Ok(set.into_iter().filter(|p| fs::symlink_metadata(rel_host(&self.tree, p)).is_err()).collect())
    }

    /// Record that `path` was deleted.
    pub fn add_whiteout(&self, path: &RelPath) -> Result<(), RunError> {
        self.append("whiteouts", path)
    }

    /// Capsule directories whose every file is linked in the tree (recorded by
    /// [`Sandbox::mark_linked`] for this skeleton's manifest).
    pub fn linked_dirs(&self) -> Result<Vec<RelPath>, RunError> {
        let path = self.dir.join("linked");
        match fs::read_to_string(&path) {
            Ok(t) => Ok(t.lines().filter_map(|l| RelPath::new(l.as_bytes()).ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RunError::Io { action: "failed to read", path, source: e }),
        }
    }

    /// Record that every capsule file of `dir` is linked in the tree. (One `write` of one
    /// line with O_APPEND: concurrent runs of the sandbox do not interleave lines.)
    pub fn mark_linked(&self, dir: &RelPath) -> Result<(), RunError> {
        self.append("linked", dir)
    }

    fn append(&self, name: &str, path: &RelPath) -> Result<(), RunError> {
        use std::io::Write;
        let file = self.dir.join(name);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .map_err(RunError::io("failed to open", &file))?;
        let line = format!("{}\n", String::from_utf8_lossy(path.as_bytes()));
        f.write_all(line.as_bytes()).map_err(RunError::io("failed to write", &file))
    }

    /// What the application changed relative to capsule `m`.
    pub fn diff(&self, m: &Manifest) -> Result<Changes, RunError> {
        let mut c = Changes::default();
        walk(&self.tree, &self.tree, &mut |rel, meta| {
            let Ok(path) = RelPath::from_host(rel.as_os_str().as_encoded_bytes()) else { return };
            let in_capsule = m.get(&path).is_some();
            if meta.is_file() && meta.nlink() > 1 && in_capsule {
                return; // a pristine link
            }
            if meta.is_dir() && in_capsule {
                return;
            }
            if meta.is_symlink() && in_capsule {
                return;
            }
            let list = if in_capsule { &mut c.modified } else { &mut c.added };
            list.push(path.display());
        })?;
        c.deleted = self.whiteouts()?.iter().map(RelPath::display).collect();
        c.added.sort();
        c.modified.sort();
        Ok(c)
    }

    /// Discard everything the application did.
    pub fn reset(&self) -> Result<(), RunError> {
        if self.dir.exists() {
            make_writable(&self.dir);
            fs::remove_dir_all(&self.dir).map_err(RunError::io("failed to remove", &self.dir))?;
        }
        Ok(())
    }
}

/// Directories copied from capsule modes may lack the owner's write bit inside; restore it so
/// the tree can be removed.
fn make_writable(dir: &Path) {
    let _ = walk(dir, dir, &mut |_, _| {});
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
                make_writable(&e.path());
            }
        }
    }
}

fn walk(top: &Path, dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<(), RunError> {
    let rd = fs::read_dir(dir).map_err(RunError::io("failed to list", dir))?;
    for e in rd.flatten() {
        let p = e.path();
        let Ok(meta) = fs::symlink_metadata(&p) else { continue };
        if let Ok(rel) = p.strip_prefix(top) {
            f(rel, &meta);
        }
        if meta.is_dir() {
            walk(top, &p, f)?;
        }
    }
    Ok(())
}

/// Remove every pristine link (a hardlink into the cache) from the tree.
fn drop_pristine(tree: &Path, cache: &Path) -> Result<(), RunError> {
    // Only links into the shared cache are the capsule's pristine files; the program's own
    // hard links (`ln a b` in the tree) have more than one link too and are its data.
    let mut cached = std::collections::HashSet::new();
    if cache.is_dir() {
        walk(cache, cache, &mut |_, meta| {
            if meta.is_file() {
                cached.insert((meta.dev(), meta.ino()));
            }
        })?;
    }
    let mut victims = Vec::new();
    walk(tree, tree, &mut |rel, meta| {
        if meta.is_file() && meta.nlink() > 1 && cached.contains(&(meta.dev(), meta.ino())) {
            victims.push(tree.join(rel));
        }
    })?;
    for v in victims {
        fs::remove_file(&v).map_err(RunError::io("failed to remove", &v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directories recorded as linked are forgotten when the skeleton is rebuilt for another
    /// manifest (an upgrade may add files to them), and kept while it is the same one.
    #[test]
    fn linked_directories_last_as_long_as_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let sb = Sandbox::open(&store, "t").unwrap();
        let m = Manifest::for_tests(vec![("opt", EntryKind::Dir), ("opt/d", EntryKind::Dir)], 0o755);
        let (v1, v2) = (Digest::of(b"v1"), Digest::of(b"v2"));
        sb.build_skeleton(&v1, &m).unwrap();
        let d = RelPath::new("opt/d").unwrap();
        sb.mark_linked(&d).unwrap();
        sb.build_skeleton(&v1, &m).unwrap();
        assert_eq!(sb.linked_dirs().unwrap(), vec![d.clone()]);
        sb.build_skeleton(&v2, &m).unwrap();
        assert_eq!(sb.linked_dirs().unwrap(), Vec::<RelPath>::new());
    }

    /// A new capsule version drops the tree's links into the cache (pristine capsule files)
    /// and nothing else: the program's own hard links stay.
    #[test]
    fn a_new_version_drops_only_links_into_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let sb = Sandbox::open(&store, "t").unwrap();
        let m = Manifest::for_tests(vec![("opt", EntryKind::Dir)], 0o755);
        sb.build_skeleton(&Digest::of(b"v1"), &m).unwrap();
        let cache = store.root().join("cache/ab");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("abcd-644-0.0"), "pristine").unwrap();
        fs::hard_link(cache.join("abcd-644-0.0"), sb.tree().join("opt/pristine")).unwrap();
        fs::write(sb.tree().join("opt/mine"), "mine").unwrap();
        fs::hard_link(sb.tree().join("opt/mine"), sb.tree().join("opt/mine-too")).unwrap();
        sb.build_skeleton(&Digest::of(b"v2"), &m).unwrap();
        assert!(!sb.tree().join("opt/pristine").exists());
        assert_eq!(fs::read_to_string(sb.tree().join("opt/mine")).unwrap(), "mine");
        assert_eq!(fs::read_to_string(sb.tree().join("opt/mine-too")).unwrap(), "mine");
        assert!(cache.join("abcd-644-0.0").exists());
    }

    /// Run by root, the skeleton's directories and the materialised files take the manifest's
    /// owners (each owner its own cache file); root's entries stay root's.
    #[test]
    fn root_gives_the_manifest_owners() {
        use std::os::unix::fs::MetadataExt;
        if !super::super::materialize::owners_kept() {
            assert!(std::env::var_os("CAPSULE_REQUIRE_ALL").is_none(), "needs root");
            eprintln!("skipped: root_gives_the_manifest_owners needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let digest = store.put_bytes(b"conf\n").unwrap();
        let file = EntryKind::File { size: 5, digest };
        let mut m = Manifest::for_tests(
            vec![
                ("var", EntryKind::Dir),
                ("var/pg", EntryKind::Dir),
                ("var/pg/conf", file.clone()),
                ("var/root", file),
            ],
            0o750,
        );
        for e in &mut m.entries {
            if e.path.as_bytes().starts_with(b"var/pg") {
                (e.uid, e.gid) = (7432, 7433);
            }
        }
        let sb = Sandbox::open(&store, "t").unwrap();
        sb.build_skeleton(&Digest::of(b"v1"), &m).unwrap();
        for rel in ["var/pg", "var/pg/conf", "var/root", "var"] {
            let p = RelPath::new(rel).unwrap();
            if matches!(m.get(&p).unwrap().kind, EntryKind::File { .. }) {
                assert!(super::super::materialize::link_entry(&store, sb.tree(), &m, &p).unwrap());
            }
        }
        let owner = |rel: &str| {
            let md = fs::symlink_metadata(sb.tree().join(rel)).unwrap();
            (md.uid(), md.gid())
        };
        assert_eq!((owner("var/pg"), owner("var/pg/conf")), ((7432, 7433), (7432, 7433)));
        assert_eq!((owner("var"), owner("var/root")), ((0, 0), (0, 0)));
        // The same content, two owners: two cache files.
        let cached: Vec<_> = walk_files(&store.root().join("cache"));
        assert_eq!(cached.len(), 2, "{cached:?}");
        assert!(cached.iter().any(|n| n.ends_with("-7432.7433")), "{cached:?}");
    }

    fn walk_files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        walk(dir, dir, &mut |rel, meta| {
            if meta.is_file() {
                out.push(rel.to_string_lossy().into_owned());
            }
        })
        .unwrap();
        out
    }

    /// Concurrent first runs of one sandbox build its skeleton once, and none fails.
    #[test]
    fn concurrent_first_runs_build_the_skeleton_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let mut entries = vec![("opt", EntryKind::Dir)];
        let names: Vec<String> = (0..300).map(|i| format!("opt/l{i}")).collect();
        entries.extend(names.iter().map(|n| (n.as_str(), EntryKind::Symlink { target: b"x".to_vec() })));
        let m = Manifest::for_tests(entries, 0o755);
        let digest = Digest::of(b"v1");
        std::thread::scope(|scope| {
            let runs: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| Sandbox::open(&store, "t").and_then(|sb| sb.build_skeleton(&digest, &m))))
                .collect();
            for r in runs {
                r.join().unwrap().unwrap();
            }
        });
        let sb = Sandbox::open(&store, "t").unwrap();
        assert_eq!(fs::read_link(sb.tree().join("opt/l299")).unwrap(), Path::new("x"));
    }
}
