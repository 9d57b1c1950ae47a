//! Which host paths a run's program may touch, and how: the run's isolation rules turned into
//! Landlock grants (`capsule_core::confine` applies them).
//!
//! Each isolation prefix grants on the host what its mode lets the program do there:
//! `merged` and `passthrough` read and write, `writecopy` read (writes land in the sandbox
//! tree), `full` nothing (the host is invisible). The sandbox tree, the state directories of
//! linked shared capsules and the sandbox's own files are granted besides, and the shim and
//! the view are readable.
//!
//! Landlock grants are a union down the hierarchy: a right granted on a directory holds below
//! it, and nothing can take it back. So where a prefix grants less than the prefix above it
//! (`/=merged` with `/usr=writecopy`), the upper prefix is not granted itself: its entries are,
//! one by one, except the branch leading to the narrower prefix, which is expanded again. The
//! expanded directory keeps only the rights every prefix below it has (so nothing can be
//! created or removed directly in it), and its listing where the narrower prefixes below it are
//! files; its symlinks are not followed.

#![allow(unsafe_code)] // adopting the descriptor landlock_create_ruleset returns

use std::path::{Path, PathBuf};

use crate::confine::{READ, WRITE};
use crate::view::Mode;

/// One Landlock rule: rights beneath a host path, or beneath each entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The host path (a directory, or a file).
    pub path: PathBuf,
    /// `confine::access` rights.
    pub rights: u64,
    /// `Some(names)`: the rights are not the directory's but each of its entries', except
    /// symlinks and these names (the way to a narrower prefix), listed when the ruleset is
    /// built, at every launch (`confine::EXPAND`).
    pub entries_but: Option<Vec<Vec<u8>>>,
}

impl Grant {
    /// `rights` beneath `path`.
    pub fn on(path: impl Into<PathBuf>, rights: u64) -> Grant {
        Grant { path: path.into(), rights, entries_but: None }
    }

    /// The grant as a launch plan's Landlock record holds it (`confine::record`, without the
    /// final NUL the plan adds): its rights ([`crate::confine::EXPAND`] set for a grant on
    /// entries) and its path, then each excepted name NUL-terminated.
    pub fn record(&self) -> (u64, Vec<u8>) {
        use std::os::unix::ffi::OsStrExt;
        let mut path = self.path.as_os_str().as_bytes().to_vec();
        match &self.entries_but {
            None => (self.rights, path),
            Some(names) => {
                for n in names {
                    path.push(0);
                    path.extend_from_slice(n);
                }
                (self.rights | crate::confine::EXPAND, path)
            }
        }
    }
}

/// What a mode lets the program do on the host below its prefix.
pub fn host_rights(mode: Mode) -> u64 {
    match mode {
        Mode::Merged | Mode::Passthrough => READ | WRITE,
        Mode::WriteCopy | Mode::ReadOnly => READ,
        Mode::Full => 0,
    }
}

/// The grants for `rules` (the run's effective isolation rules, prefix and mode), followed
/// by `extra` (granted as they are: the tree, the view, the shim…).
pub fn grants(rules: &[(String, Mode)], extra: &[Grant]) -> Vec<Grant> {
    let mut prefixes: Vec<(PathBuf, u64)> =
        rules.iter().map(|(p, m)| (normal(p), host_rights(*m))).filter(|(p, _)| p.is_absolute()).collect();
    prefixes.sort();
    prefixes.dedup_by(|a, b| a.0 == b.0);
    let root_rights = prefixes.iter().find(|(p, _)| p == Path::new("/")).map_or(0, |(_, r)| *r);
    let below: Vec<(PathBuf, u64)> = prefixes.into_iter().filter(|(p, _)| p != Path::new("/")).collect();
    let mut out = Vec::new();
    emit(Path::new("/"), root_rights, &below, &mut out);
    out.extend(extra.iter().filter(|g| g.rights != 0).cloned());
    // A file's rule carries file rights only (the kernel refuses others on a file).
    for g in out.iter_mut().filter(|g| g.entries_but.is_none()) {
        if std::fs::metadata(&g.path).is_ok_and(|m| !m.is_dir()) {
            g.rights &= crate::confine::FILE_RIGHTS;
        }
    }
    // A grant an ancestor's covers is left out: each costs the front end system calls at every
    // start. Only for paths without a symlink on the way (a rule holds on the target's inode).
    // (Looked up by ancestor: path comparisons of every pair cost the full launcher
    // milliseconds.) A grant on a directory's entries covers nothing by its path.
    let mut by_path: std::collections::HashMap<&Path, Vec<u64>> = std::collections::HashMap::new();
    for h in out.iter().filter(|g| g.entries_but.is_none()) {
        by_path.entry(h.path.as_path()).or_default().push(h.rights);
    }
    let covered = |g: &Grant| {
        g.entries_but.is_none()
            && g.path
                .ancestors()
                .skip(1)
                .any(|a| by_path.get(a).is_some_and(|rs| rs.iter().any(|r| r & g.rights == g.rights)))
            && std::fs::canonicalize(&g.path).is_ok_and(|c| c == g.path)
    };
    let keep: Vec<bool> = out.iter().map(|g| !covered(g)).collect();
    let mut keep = keep.into_iter();
    out.retain(|_| keep.next().unwrap_or(true));
    out.dedup();
    out
}

/// The grants of a prepared run whose program `program` loads `shim`: its isolation rules,
/// then the sandbox tree and the shared capsules' state directories (read and write), the
/// sandbox's own files (its table of deletions, which the shim maps), the view and the shim
/// (read). Where a `full` rule hides part of the host, the files the loader needs to start
/// the program (the ELF closure of the shim, and of the program when it is the host's: the
/// one the user asked to run) stay readable, each by a rule on that file alone.
pub fn for_run(p: &super::Prepared, shim: &Path, program: &Path) -> Vec<Grant> {
    let rw = READ | WRITE;
    let tree = TREE;
    let mut extra = vec![
        Grant::on(p.sandbox.tree().to_owned(), tree),
        Grant::on(p.sandbox.dir().to_owned(), READ),
        Grant::on(p.view.clone(), READ),
        Grant::on(shim.to_owned(), READ),
        // The kernel starts a dynamic program with the loader its PT_INTERP names, from the
        // host, unless the capsule's own loader differs from it (`run::exec::loader`): the
        // same bytes the capsule carries, readable even under `full`.
        Grant::on(PathBuf::from(HOST_LOADER), READ),
    ];
    extra.extend(p.state_dirs.iter().map(|d| Grant::on(d.clone(), rw)));
    let mut out = grants_for(p, shim, program, extra);
    // First, what the ruleset handles (an empty path): reads only where a rule hides the host.
    let reads = p.rules.iter().any(|(_, m)| *m == Mode::Full);
    let mask = crate::confine::mask(reads);
    // A grant of nothing the ruleset handles (a read, when reads are not confined) is none.
    out.retain(|g| g.rights & mask != 0);
    out.insert(0, Grant::on(PathBuf::new(), mask));
    // The tree's own grant, even where an ancestor's covers it: the kernel looks for a rule
    // from the opened file upwards at every open, and stops at the first that grants enough
    // (~20 ns a level here; the store is often several levels below `$HOME` or `/tmp`).
    if !out.iter().any(|g| g.path == p.sandbox.tree()) {
        out.push(Grant::on(p.sandbox.tree().to_owned(), tree & mask));
    }
    out
}

/// Whether the program may open files of `tree` for writing itself under `rules` anyway: the
/// longest prefix that holds the tree lets it write the host there (`merged`, `passthrough`),
/// and Landlock rights add up down a hierarchy. The shim then opens them itself
/// (`CAPSULE_TREE_LOCAL`), rather than through the materialiser, which would protect nothing.
pub fn tree_writable(rules: &[(String, Mode)], tree: &Path) -> bool {
    rules
        .iter()
        .map(|(p, m)| (normal(p), *m))
        .filter(|(p, _)| tree.starts_with(p))
        .max_by_key(|(p, _)| p.components().count())
        .is_some_and(|(_, m)| host_rights(m) & crate::confine::access::WRITE_FILE != 0)
}

/// What the program may do in its sandbox tree itself: everything but open a file for writing.
/// Its pristine files are hardlinks to the shared cache, which a raw `open` of one for writing
/// would change for every capsule holding that content; the shim has the materialiser open a
/// tree file for writing (`OP_OPEN`: it copies up such a link first), tier 2's supervisor opens
/// it itself, both outside the domain. A descriptor they pass keeps its rights.
pub const TREE: u64 = (READ | WRITE) & !crate::confine::access::WRITE_FILE;

/// The rules the grants follow: `rules`, and for a run as root (whom the modes of the host's
/// disks do not stop) every block device directly in `/dev` as a `full` prefix when `/dev`
/// itself is passed through or merged. `/dev` is then expanded (module docs): its other
/// entries get what it had, a disk nothing, so the program can neither write a disk of the host
/// through its node nor, where reads are confined, read one. The view is not changed (only
/// the grants follow these rules), and neither is what the ruleset handles.
pub fn grant_rules(rules: &[(String, Mode)]) -> Vec<(String, Mode)> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = rules.to_vec();
    if !nix::unistd::geteuid().is_root() {
        return out;
    }
    let dev = rules
        .iter()
        .filter(|(p, _)| Path::new("/dev").starts_with(normal(p)))
        .max_by_key(|(p, _)| normal(p).components().count())
        .map(|(_, m)| *m);
    if !matches!(dev, Some(Mode::Merged | Mode::Passthrough)) {
        return out;
    }
    let Ok(entries) = std::fs::read_dir("/dev") else { return out };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_block_device())
            && let Some(path) = e.path().to_str()
            && !rules.iter().any(|(p, _)| normal(p) == Path::new(path))
        {
            out.push((path.to_owned(), Mode::Full));
        }
    }
    out
}

fn grants_for(p: &super::Prepared, shim: &Path, program: &Path, mut extra: Vec<Grant>) -> Vec<Grant> {
    if p.rules.iter().any(|(_, m)| *m == Mode::Full) {
        let mut start = vec![shim.to_owned()];
        if !program.starts_with(p.sandbox.tree()) {
            start.push(program.to_owned());
        }
        // A program that is not ELF (a script) or cannot be parsed grants nothing more.
        for bin in start {
            if let Ok(c) = crate::capture::elf::closure(std::slice::from_ref(&bin)) {
                extra.extend(c.files.into_iter().map(|path| Grant::on(path, READ)));
            }
        }
    }
    grants(&grant_rules(&p.rules), &extra)
}

/// Build the ruleset of `grants` for a kernel of Landlock ABI `abi`: its descriptor, for
/// the child to [`crate::confine::restrict`] itself to before exec. An error names the grant
/// the kernel refused.
pub fn ruleset(grants: &[Grant], abi: i32) -> Result<std::os::fd::OwnedFd, super::RunError> {
    use crate::confine;
    use std::os::fd::FromRawFd;
    let mask = grants.first().filter(|g| g.path.as_os_str().is_empty()).map_or(READ | WRITE, |g| g.rights);
    let made = confine::ruleset(confine::raw, abi, mask)
        .map_err(errno)
        .and_then(|fd| i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF)));
    let fd = made.map_err(|source| super::RunError::Io {
        action: "failed to build the Landlock ruleset for a kernel of Landlock ABI",
        path: PathBuf::from(abi.to_string()),
        source,
    })?;
    // SAFETY: landlock_create_ruleset just returned this descriptor; nobody else owns it.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    for g in grants.iter().filter(|g| !g.path.as_os_str().is_empty()) {
        let (rights, mut path) = g.record();
        path.push(0);
        confine::apply(confine::raw, fd.cast_unsigned() as usize, confine::handled(abi) & mask, &path, rights)
            .map_err(|e| super::RunError::Io {
                action: "cannot grant Landlock access to",
                path: g.path.clone(),
                source: errno(e),
            })?;
    }
    Ok(owned)
}

/// The x86-64 dynamic loader, as programs name it.
const HOST_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// How a run is confined: the kernel's Landlock ABI and the ruleset, or why not.
pub enum Confinement {
    /// A ruleset to restrict the program to.
    Landlock(std::os::fd::OwnedFd),
    /// `--unconfined`.
    OptedOut,
    /// The kernel has no Landlock (or it is disabled at boot, or `CAPSULE_DEBUG_LANDLOCK=off`
    /// says to behave so, for tests).
    Unavailable,
}

/// The kernel's Landlock ABI, as this process should use it (0: none).
pub fn kernel_abi() -> i32 {
    if std::env::var_os("CAPSULE_DEBUG_LANDLOCK").is_some_and(|v| v == "off") {
        return 0;
    }
    crate::confine::abi(crate::confine::raw)
}

/// The confinement of a run with `grants`: `Unavailable` when the kernel lacks Landlock and
/// no rule is `full` (the caller says so on stderr); an error when one is and the user did not
/// opt out, since `full` promises the host is out of reach.
pub fn prepare(grants: &[Grant], rules: &[(String, Mode)], opted_out: bool) -> Result<Confinement, super::RunError> {
    if opted_out {
        return Ok(Confinement::OptedOut);
    }
    let abi = kernel_abi();
    if abi <= 0 {
        if let Some((prefix, _)) = rules.iter().find(|(_, m)| *m == Mode::Full) {
            return Err(super::RunError::Unconfined(prefix.clone()));
        }
        return Ok(Confinement::Unavailable);
    }
    Ok(Confinement::Landlock(ruleset(grants, abi)?))
}

/// An `io::Error` of a `-errno` result.
fn errno(e: isize) -> std::io::Error {
    std::io::Error::from_raw_os_error(i32::try_from(-e).unwrap_or(libc::EINVAL))
}

/// `p` without `.` components and trailing slashes.
fn normal(p: &str) -> PathBuf {
    Path::new(p).components().collect()
}

/// Grant `rights` beneath `dir`, given the prefixes strictly below it (`below`). Where a
/// prefix below has fewer rights, `dir` is expanded: its own grant keeps what every prefix
/// below it has, its entries get `rights` (a grant on entries, listed at each launch:
/// `confine::EXPAND`) but the ways to the prefixes below, which are granted the same way in
/// turn.
fn emit(dir: &Path, rights: u64, below: &[(PathBuf, u64)], out: &mut Vec<Grant>) {
    let lacking = below.iter().any(|(_, r)| rights & !r != 0);
    if !lacking {
        if rights != 0 {
            out.push(Grant::on(dir, rights));
        }
        for (p, r) in top_most(below) {
            let under: Vec<_> = below.iter().filter(|(q, _)| q != p && q.starts_with(p)).cloned().collect();
            emit(p, *r, &under, out);
        }
        return;
    }
    // Listing the directory shows a file's name, not the file (its own rule decides that): a
    // prefix below that is a file (a block device of `grant_rules`) does not take the listing
    // away from the directory.
    let listing = |p: &Path| {
        if std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) { crate::confine::access::READ_DIR } else { 0 }
    };
    let common = below.iter().fold(rights, |acc, (p, r)| acc & (r | listing(p)));
    if common != 0 {
        out.push(Grant::on(dir, common));
    }
    // The entries of `dir` on the way to a prefix below, each once.
    let mut ways: Vec<PathBuf> = Vec::new();
    for (q, _) in below {
        if let Ok(rest) = q.strip_prefix(dir)
            && let Some(first) = rest.components().next()
        {
            let way = dir.join(first);
            if !ways.contains(&way) {
                ways.push(way);
            }
        }
    }
    if rights != 0 {
        use std::os::unix::ffi::OsStrExt;
        let names = ways.iter().filter_map(|w| w.file_name()).map(|n| n.as_bytes().to_vec()).collect();
        // Files directly in the directory: only its own grant, where that keeps their reads
        // (their writes are the broker's); each rule costs every start.
        let dirs_only = if rights & !common & READ == 0 { crate::confine::EXPAND_DIRS } else { 0 };
        out.push(Grant { path: dir.to_owned(), rights: rights | dirs_only, entries_but: Some(names) });
    }
    for way in ways {
        let under: Vec<_> = below.iter().filter(|(q, _)| q != &way && q.starts_with(&way)).cloned().collect();
        match below.iter().find(|(q, _)| q == &way) {
            Some((_, r)) => emit(&way, *r, &under, out),
            None => emit(&way, rights, &under, out),
        }
    }
}

/// The prefixes of `below` with no other prefix of `below` above them.
fn top_most(below: &[(PathBuf, u64)]) -> impl Iterator<Item = &(PathBuf, u64)> {
    below.iter().filter(|(p, _)| !below.iter().any(|(q, _)| q != p && p.starts_with(q)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// The grant on `p` itself (not one on its entries).
    fn rights_of(g: &[Grant], p: &str) -> Option<u64> {
        g.iter().find(|g| g.path == Path::new(p) && g.entries_but.is_none()).map(|g| g.rights)
    }

    /// The rights `g` gives `p` (a path without symlinks), as the kernel would: the grants on
    /// `p` and its ancestors, and the grants on the entries of an ancestor, but the names they
    /// except and symlinks.
    fn effective(g: &[Grant], p: &str) -> u64 {
        let p = Path::new(p);
        g.iter()
            .filter(|g| !g.path.as_os_str().is_empty())
            .map(|g| match &g.entries_but {
                None if p.starts_with(&g.path) => g.rights,
                None => 0,
                Some(but) => match p.strip_prefix(&g.path).ok().and_then(|r| r.components().next()) {
                    Some(first)
                        if !but.iter().any(|n| n.as_slice() == first.as_os_str().as_bytes())
                            && !std::fs::symlink_metadata(g.path.join(first)).is_ok_and(|m| m.is_symlink())
                            && (g.rights & crate::confine::EXPAND_DIRS == 0
                                || std::fs::symlink_metadata(g.path.join(first)).is_ok_and(|m| m.is_dir())) =>
                    {
                        g.rights & !crate::confine::EXPAND_DIRS
                    }
                    _ => 0,
                },
            })
            .fold(0, |a, r| a | r)
            & if std::fs::metadata(p).is_ok_and(|m| !m.is_dir()) { crate::confine::FILE_RIGHTS } else { !0 }
    }

    #[test]
    fn wider_rules_below_narrower_ones_are_granted_as_they_are() {
        let rules = vec![
            ("/".to_owned(), Mode::WriteCopy),
            ("/tmp".to_owned(), Mode::Merged),
            ("/dev".to_owned(), Mode::Passthrough),
            ("/opt/".to_owned(), Mode::Full),
        ];
        let g = grants(&rules, &[Grant::on("/srv/tree", READ | WRITE)]);
        // `/opt` full under a readable `/`: `/` is expanded (and keeps no right of its own),
        // `/opt` gets nothing.
        assert_eq!(rights_of(&g, "/"), None);
        assert_eq!(effective(&g, "/usr/lib"), READ);
        if std::fs::symlink_metadata("/bin").is_ok_and(|m| m.is_symlink()) {
            assert_eq!(effective(&g, "/bin"), 0, "a symlink on merged /usr systems");
        }
        assert_eq!(rights_of(&g, "/tmp"), Some(READ | WRITE));
        assert_eq!(rights_of(&g, "/dev"), Some(READ | WRITE));
        assert_eq!(rights_of(&g, "/srv/tree"), Some(READ | WRITE));
        // Covered by `/tmp`'s grant: left out.
        let inside = tempfile::tempdir_in("/tmp").unwrap();
        let inside = inside.path().canonicalize().unwrap();
        let g2 = grants(&rules, &[Grant::on(inside.clone(), READ)]);
        assert_eq!(rights_of(&g2, inside.to_str().unwrap()), None);
        assert_eq!(effective(&g, "/opt/x"), 0);
    }

    #[test]
    fn a_narrower_rule_below_a_wider_one_expands_the_wider_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["usr/lib", "etc", "home/u"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("file"), b"x").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        let top = root.to_str().unwrap().to_owned();
        // `/` full: nothing above `top` covers what it is granted.
        let rules =
            vec![("/".to_owned(), Mode::Full), (top.clone(), Mode::Merged), (format!("{top}/usr"), Mode::WriteCopy)];
        let g = grants(&rules, &[]);
        assert_eq!(rights_of(&g, &top), Some(READ), "the expanded directory keeps what all below it have");
        // `usr` may be read and no more: what `top`'s own grant gives it, so it has none itself.
        assert_eq!(rights_of(&g, &format!("{top}/usr")), None);
        assert_eq!(effective(&g, &format!("{top}/usr/lib")), READ);
        assert_eq!(effective(&g, &format!("{top}/etc")), READ | WRITE);
        assert_eq!(effective(&g, &format!("{top}/home/u")), READ | WRITE);
        // A file directly in it: what the directory's own grant gives (its writes are the
        // broker's).
        assert_eq!(effective(&g, &format!("{top}/file")), READ & crate::confine::FILE_RIGHTS);
        assert_eq!(effective(&g, &format!("{top}/lib")), READ, "a symlink would grant its target");
        // The entries are a grant of their own, listed at launch: not in the grants, and so
        // neither in a launch plan, and an entry made since is granted.
        let on_entries: Vec<_> = g.iter().filter(|g| g.entries_but.is_some()).collect();
        assert_eq!(on_entries.len(), 1, "{g:?}");
        assert_eq!(on_entries[0].path, root);
        assert_eq!(on_entries[0].entries_but, Some(vec![b"usr".to_vec()]));
        let (rights, record) = on_entries[0].record();
        assert_eq!(rights, READ | WRITE | crate::confine::EXPAND | crate::confine::EXPAND_DIRS);
        assert_eq!(record, [root.as_os_str().as_bytes(), b"\0usr"].concat());
        assert!(!g.iter().any(|g| g.path.starts_with(root.join("etc"))), "{g:?}");
    }

    #[test]
    fn a_file_given_nothing_below_a_passed_through_directory_leaves_its_listing() {
        // As `grant_rules` does for a disk in /dev: the file gets nothing, its siblings what
        // the directory had, and the directory may still be listed (nothing created in it).
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(dev.join("shm")).unwrap();
        for f in ["disk", "null"] {
            std::fs::write(dev.join(f), b"").unwrap();
        }
        let d = dev.to_str().unwrap().to_owned();
        let rules =
            vec![("/".to_owned(), Mode::Full), (d.clone(), Mode::Passthrough), (format!("{d}/disk"), Mode::Full)];
        let g = grants(&rules, &[]);
        assert_eq!(rights_of(&g, &d), Some(crate::confine::access::READ_DIR));
        assert_eq!(effective(&g, &format!("{d}/disk")), 0);
        assert_eq!(effective(&g, &format!("{d}/null")), (READ | WRITE) & crate::confine::FILE_RIGHTS);
        assert_eq!(effective(&g, &format!("{d}/shm/x")), READ | WRITE);
    }

    /// The kernel's verdict on a ruleset with a grant on entries (`confine::add_entries`), in a
    /// thread of its own (Landlock restricts the calling thread).
    #[test]
    fn the_kernel_grants_each_entry_listed_at_launch_but_the_way_to_the_narrower_prefix() {
        if kernel_abi() < 1 {
            eprintln!("SKIP: the kernel has no Landlock");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        for d in ["open/sub", "store/cache"] {
            std::fs::create_dir_all(top.join(d)).unwrap();
        }
        std::fs::write(top.join("file"), b"x").unwrap();
        std::fs::write(top.join("store/cache/blob"), b"shared").unwrap();
        std::os::unix::fs::symlink(top.join("store"), top.join("link")).unwrap();
        let t = top.to_str().unwrap().to_owned();
        let rules = vec![("/".to_owned(), Mode::Merged), (format!("{t}/store"), Mode::WriteCopy)];
        let g = grants(&rules, &[]);
        let top2 = top.clone();
        let verdicts = std::thread::spawn(move || {
            let fd = ruleset(&g, kernel_abi()).unwrap();
            crate::confine::restrict(
                crate::confine::raw,
                std::os::fd::AsRawFd::as_raw_fd(&fd).cast_unsigned() as usize,
            )
            .unwrap();
            let w = |p: &str| std::fs::OpenOptions::new().append(true).open(top2.join(p)).is_ok();
            let mk = |p: &str| std::fs::write(top2.join(p), b"new").is_ok();
            [w("file"), mk("open/sub/new"), w("store/cache/blob"), mk("store/x"), w("link/cache/blob"), mk("beside")]
        })
        .join()
        .unwrap();
        // A file directly beside the store is the broker's to write; one in a directory there
        // the program's own.
        assert_eq!(verdicts, [false, true, false, false, false, false], "{top:?}");
        assert_eq!(std::fs::read(top.join("store/cache/blob")).unwrap(), b"shared");
    }
}
