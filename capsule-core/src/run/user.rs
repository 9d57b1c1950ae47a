//! `run --user NAME|UID[:GROUP]`: the user a run's program starts as.
//!
//! Names are resolved in the files the program itself would read: the sandbox tree's
//! `/etc/passwd` and `/etc/group` when a run put them there (a `useradd` inside the capsule),
//! else the capsule's, else the host's. The supplementary groups are those of that group file
//! that list the user by name, and the primary group. A numeric UID (or GID) needs no entry:
//! without one, the group is the number of the uid, `HOME` is `/`.
//!
//! The launcher's child switches (setgroups, setresgid, setresuid, in `crate::launch::child`,
//! the step both launch paths run) after what needs root (entering a network namespace) and
//! before kernel confinement and the seccomp filter, which it then installs without privileges
//! (`no_new_privs`, as a non-root run does). Changing the uid clears the parent-death signal,
//! so that is set after it.
#![allow(unsafe_code)] // faccessat2(2) on a thread with the user's credentials

use std::fs;
use std::path::Path;

use super::RunError;
use crate::manifest::{Manifest, RelPath};
use crate::store::Store;

/// The user a program runs as, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Every group id the process holds (the primary one included), sorted, unique.
    pub groups: Vec<u32>,
    /// The login name, when the passwd file has one for the uid.
    pub name: Option<String>,
    /// The home directory (`/` without a passwd entry).
    pub home: String,
    /// The login shell, when the passwd entry names one.
    pub shell: Option<String>,
}

/// Where a name was looked up, for errors.
fn origin(from_capsule: bool) -> &'static str {
    if from_capsule { "the capsule's" } else { "the host's" }
}

/// The content of `/etc/NAME` as the program sees it, and whether it is the capsule's (tree or
/// capsule entry) rather than the host's.
fn etc_file(store: &Store, tree: &Path, m: &Manifest, name: &str) -> Result<(String, bool), RunError> {
    let rel = format!("etc/{name}");
    let in_tree = tree.join(&rel);
    if let Ok(text) = fs::read_to_string(&in_tree) {
        return Ok((text, true));
    }
    if let Ok(path) = RelPath::new(rel.as_bytes())
        && let Some((e, digest)) = super::materialize::content(m, &path)
    {
        let cache = super::materialize::ensure_cache(store, &digest, &e)?;
        let text = fs::read_to_string(&cache).map_err(RunError::io("failed to read", &cache))?;
        return Ok((text, true));
    }
    let host = Path::new("/etc").join(name);
    match fs::read_to_string(&host) {
        Ok(t) => Ok((t, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((String::new(), false)),
        Err(e) => Err(RunError::Io { action: "failed to read", path: host, source: e }),
    }
}

/// The fields of each line of a colon-separated database (comments and short lines skipped).
fn records(text: &str, min: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min)
}

/// Resolve `spec` (`NAME|UID[:GROUP|GID]`) for a run of capsule `capsule` (manifest `m`,
/// sandbox tree `tree`).
pub fn resolve(store: &Store, tree: &Path, m: &Manifest, capsule: &str, spec: &str) -> Result<User, RunError> {
    let bad = |why: String| RunError::User { capsule: capsule.to_owned(), why };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(bad(format!("--user {spec:?}: use NAME|UID[:GROUP|GID]")));
    }
    let (passwd, passwd_capsule) = etc_file(store, tree, m, "passwd")?;
    let entry = match user.parse::<u32>() {
        Ok(uid) => records(&passwd, 7).find(|f| f[2].parse() == Ok(uid)),
        Err(_) => Some(
            records(&passwd, 7)
                .find(|f| f[0] == user)
                .ok_or_else(|| bad(format!("no user {user:?} in {} /etc/passwd", origin(passwd_capsule))))?,
        ),
    };
    let uid = match &entry {
        Some(f) => f[2].parse::<u32>().map_err(|_| bad(format!("user {user:?} has no valid uid in /etc/passwd")))?,
        None => user.parse::<u32>().map_err(|_| bad(format!("no user {user:?}")))?,
    };
    let (group_text, group_capsule) = etc_file(store, tree, m, "group")?;
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => records(&group_text, 3)
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| bad(format!("no group {g:?} in {} /etc/group", origin(group_capsule))))?,
        },
        None => match &entry {
            Some(f) => {
                f[3].parse::<u32>().map_err(|_| bad(format!("user {user:?} has no valid gid in /etc/passwd")))?
            }
            None => uid,
        },
    };
    let name = entry.as_ref().map(|f| f[0].to_owned());
    let mut groups = vec![gid];
    if let Some(n) = &name {
        for f in records(&group_text, 4) {
            if f[3].split(',').any(|member| member == n)
                && let Ok(g) = f[2].parse::<u32>()
            {
                groups.push(g);
            }
        }
    }
    groups.sort_unstable();
    groups.dedup();
    let home = entry.as_ref().map(|f| f[5]).filter(|h| h.starts_with('/')).unwrap_or("/").to_owned();
    let shell = entry.as_ref().map(|f| f[6].to_owned()).filter(|s| !s.is_empty());
    Ok(User { uid, gid, groups, name, home, shell })
}

/// The environment `runuser -u` gives: `HOME`, `SHELL`, `USER`, `LOGNAME`.
pub fn env(u: &User) -> Vec<(&'static str, String)> {
    let name = u.name.clone().unwrap_or_else(|| u.uid.to_string());
    let mut v = vec![("HOME", u.home.clone()), ("USER", name.clone()), ("LOGNAME", name)];
    if let Some(s) = &u.shell {
        v.push(("SHELL", s.clone()));
    }
    v
}

/// Whether this process is root (only root may start a program as another user).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether `u` may read `path` (every directory on the way searched): asked of the kernel
/// on a thread of its own that takes `u`'s file-access credentials (`supervisor::creds`), so
/// a shim `u` cannot load is refused before the run, not found out by a loader that runs the
/// program without it.
pub fn may_read(u: &User, path: &Path) -> std::io::Result<()> {
    use crate::supervisor::creds;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let to = creds::Creds { fsuid: u.uid, fsgid: u.gid, groups: u.groups.clone(), cap_eff: 0 };
    std::thread::scope(|s| {
        s.spawn(|| {
            let own = creds::Own::current()?;
            let _as = creds::switch(&own, &to).map_err(std::io::Error::from_raw_os_error)?;
            // SAFETY: faccessat2 reads a NUL-terminated path.
            let r = unsafe {
                libc::syscall(libc::SYS_faccessat2, libc::AT_FDCWD, c.as_ptr(), libc::R_OK, libc::AT_EACCESS)
            };
            if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the check's thread failed")))
    })
}

/// `/proc/self/fd/FD/REST` for a path below `tree` (`REST` relative to it), else `path`: how a
/// process that is not the store's owner reaches the tree, through the descriptor `fd` it
/// inherits (the store's root is private to its owner: docs/security.md).
pub fn via_descriptor(path: &Path, tree: &Path, fd: i32) -> std::path::PathBuf {
    match path.strip_prefix(tree) {
        Ok(rest) => Path::new("/proc/self/fd").join(fd.to_string()).join(rest),
        Err(_) => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntryKind;

    /// Names come from the tree's file first, then the capsule's, then the host's; numeric
    /// forms need no entry; unknown names are errors naming the capsule and the name.
    #[test]
    fn names_resolve_in_the_files_the_program_sees() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        let m = Manifest::for_tests(vec![("etc", EntryKind::Dir)], 0o755);
        fs::write(
            tree.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\npg:x:70:71:PostgreSQL:/var/lib/pg:/bin/sh\n",
        )
        .unwrap();
        fs::write(tree.join("etc/group"), "root:x:0:\npg:x:71:\nssl:x:72:pg,other\nwheel:x:73:other\n").unwrap();
        let u = resolve(&store, &tree, &m, "app", "pg").unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (70, 71, vec![71, 72]));
        assert_eq!((u.home.as_str(), u.name.as_deref()), ("/var/lib/pg", Some("pg")));
        assert!(env(&u).contains(&("LOGNAME", "pg".to_owned())));
        let u = resolve(&store, &tree, &m, "app", "pg:wheel").unwrap();
        assert_eq!((u.gid, u.groups), (73, vec![72, 73]));
        let u = resolve(&store, &tree, &m, "app", "4242:17").unwrap();
        assert_eq!((u.uid, u.gid, u.groups, u.home.as_str()), (4242, 17, vec![17], "/"));
        let u = resolve(&store, &tree, &m, "app", "70").unwrap();
        assert_eq!((u.uid, u.gid, u.name.as_deref()), (70, 71, Some("pg")));
        let e = resolve(&store, &tree, &m, "app", "nosuchuser").unwrap_err().to_string();
        assert!(e.contains("app") && e.contains("nosuchuser") && e.contains("capsule's /etc/passwd"), "{e}");
        let e = resolve(&store, &tree, &m, "app", "pg:nosuchgroup").unwrap_err().to_string();
        assert!(e.contains("nosuchgroup") && e.contains("/etc/group"), "{e}");
        assert!(resolve(&store, &tree, &m, "app", "pg:").is_err());
    }

    #[test]
    fn tree_paths_are_reached_through_the_descriptor() {
        let p = via_descriptor(Path::new("/s/sandboxes/a/root/usr/bin/x"), Path::new("/s/sandboxes/a/root"), 1001);
        assert_eq!(p, Path::new("/proc/self/fd/1001/usr/bin/x"));
        assert_eq!(via_descriptor(Path::new("/usr/bin/x"), Path::new("/s/root"), 3), Path::new("/usr/bin/x"));
    }
}
