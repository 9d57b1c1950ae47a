//! `capture install --root DIR|minimal`: the capture's *source root*, the directory whose
//! files stand behind the installer's sandbox instead of the live host.
//!
//! The root runs as a capsule of its own: every file of the directory is an entry
//! ([`capsule`], a [`Builder`] over the directory as `/`, never given a name), and the
//! installer runs over it with the host hidden (`isolation full`), so apt and dpkg see the
//! root's package database and programs, and what they write lands in the sandbox. The
//! capture then compares the sandbox with the directory, not with `/`
//! (`install::from_sandbox`'s `lower`).
//!
//! `minimal` is a Debian minbase root of the host's own release ([`minimal`]), bootstrapped
//! once with mmdebstrap (or debootstrap) from the apt sources the host uses, and kept in the
//! store as `roots/CODENAME/`, its capsule's manifest digest in `roots/CODENAME.manifest`
//! (`gc` keeps that capsule's blobs; `df` counts both). Concurrent first uses take
//! `roots/CODENAME.lock`; the root is built in `roots/.CODENAME.PID` and renamed into place.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::builder::Builder;
use super::noise::Noise;
use super::scan::scan;
use super::{CaptureError, Progress};
use crate::digest::Digest;
use crate::manifest::{CaptureStep, Manifest, RelPath};
use crate::store::Store;

/// The store directory that holds the minimal roots.
pub const ROOTS: &str = "roots";

/// What a root's capsule leaves out: the host's kernel filesystems and devices are passed
/// through to the installer, and what scratch directories hold is the run's (the
/// directories themselves stay: new files in them land in the sandbox).
const LEFT_OUT: &[&str] = &["/proc", "/sys", "/dev", "/run/*", "/tmp/*", "/var/tmp/*"];

/// A capture's source root, ready to run an installer over.
#[derive(Debug)]
pub struct Source {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// How errors and messages name it (`DIR`, or `the minimal bookworm root`).
    pub label: String,
    /// Its capsule's manifest digest.
    pub digest: Digest,
    /// Its capsule.
    pub manifest: Manifest,
}

/// Errors of a source root.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// `--root DIR` that cannot be used.
    #[error("--root {}: {why}", dir.display())]
    NotARoot {
        /// The directory as given.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The host's release is not one a minimal root can be made of.
    #[error("--root minimal: {0}")]
    Release(String),
    /// The bootstrap failed.
    #[error(
        "bootstrapping the minimal {codename} root with {tool} failed (it downloads packages from Debian's \
         archive, so this machine must reach the network; nothing was kept): {why}"
    )]
    Bootstrap {
        /// The release.
        codename: String,
        /// mmdebstrap or debootstrap.
        tool: &'static str,
        /// Its exit status and the end of its error output.
        why: String,
    },
}

/// `--root DIR`: DIR must be a directory with a dpkg database and a shell (a Debian root).
/// Its capsule is made now (file contents already in the store are only read).
pub fn from_dir(store: &Store, dir: &Path, progress: &dyn Progress) -> Result<Source, CaptureError> {
    let abs = check(dir)?;
    let (digest, manifest) = capsule(store, &abs, progress)?;
    Ok(Source { label: abs.display().to_string(), dir: abs, digest, manifest })
}

/// Whether `dir` is a Debian root; its absolute, canonical path.
pub fn check(dir: &Path) -> Result<PathBuf, CaptureError> {
    let bad = |why: String| CaptureError::Root(RootError::NotARoot { dir: dir.to_owned(), why });
    let abs = fs::canonicalize(dir).map_err(|e| bad(format!("cannot open it: {e}")))?;
    if !abs.is_dir() {
        return Err(bad("not a directory".to_owned()));
    }
    if abs == Path::new("/") {
        return Err(bad("the host's own root: leave --root out to capture against the host".to_owned()));
    }
    for need in [super::dpkg::STATUS, "bin/sh"] {
        if !abs.join(need).exists() {
            return Err(bad(format!("not a Debian root: it has no /{need}")));
        }
    }
    Ok(abs)
}

/// The host's release codename (`VERSION_CODENAME` of `/etc/os-release`), for a Debian host.
pub fn host_codename() -> Result<String, CaptureError> {
    let d = super::dpkg::os_release(Path::new("/"))
        .ok_or_else(|| RootError::Release("this host has no readable /etc/os-release".to_owned()))?;
    if d.id != "debian" || d.codename.is_empty() {
        return Err(RootError::Release(format!(
            "a minimal root is a Debian release's minbase, and this host is {} {} (no Debian codename)",
            d.id, d.version_id
        ))
        .into());
    }
    Ok(d.codename)
}

/// The minimal root of the host's release, bootstrapped on first use (`announce` is told
/// then, before the download starts) and kept in the store; its capsule made once too.
pub fn minimal(store: &Store, announce: &mut dyn FnMut(&str), progress: &dyn Progress) -> Result<Source, CaptureError> {
    let codename = host_codename()?;
    let roots = store.root().join(ROOTS);
    crate::store::private_dir(&roots).map_err(CaptureError::io("failed to create", &roots))?;
    let lock_path = roots.join(format!("{codename}.lock"));
    let lock = fs::File::create(&lock_path).map_err(CaptureError::io("failed to create", &lock_path))?;
    lock.lock().map_err(CaptureError::io("failed to lock", &lock_path))?;
    let dir = roots.join(&codename);
    if !dir.join(super::dpkg::STATUS).exists() {
        announce(&format!("bootstrapping minimal {codename} root in {} (once)", dir.display()));
        bootstrap(&codename, &roots, &dir)?;
    }
    let label = format!("the minimal {codename} root");
    let record = roots.join(format!("{codename}.manifest"));
    if let Some((digest, manifest)) = recorded(store, &record) {
        return Ok(Source { dir, label, digest, manifest });
    }
    let (digest, manifest) = capsule(store, &dir, progress)?;
    write_atomic(&record, digest.to_hex().as_bytes())?;
    Ok(Source { dir, label, digest, manifest })
}

/// The capsule `record` names, if it and all its blobs are in the store.
fn recorded(store: &Store, record: &Path) -> Option<(Digest, Manifest)> {
    let hex = fs::read_to_string(record).ok()?;
    let digest = hex.trim().parse::<Digest>().ok()?;
    let m = store.load_manifest(&digest).ok()?;
    m.blobs().iter().all(|b| store.has_blob(b)).then_some((digest, m))
}

/// The manifest digests of the kept minimal roots' capsules: `gc` keeps them and their blobs.
pub fn kept(store: &Store) -> Vec<Digest> {
    store.kept_roots().into_iter().filter_map(|(_, _, d)| d).collect()
}

/// Bootstrap `codename`'s minbase into `dir` (absent) through a temporary sibling.
fn bootstrap(codename: &str, roots: &Path, dir: &Path) -> Result<(), CaptureError> {
    let tmp = roots.join(format!(".{codename}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let have = |tool: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()))
            .any(|d| d.join(tool).is_file())
    };
    let fail =
        |tool, why: String| CaptureError::Root(RootError::Bootstrap { codename: codename.to_owned(), tool, why });
    let (tool, mut cmd) = if have("mmdebstrap") {
        let mut c = Command::new("mmdebstrap");
        c.args(["--variant=minbase", "--quiet", codename]).arg(&tmp);
        // The archive the host uses (its apt sources, one-line or deb822), else mmdebstrap's default.
        c.args(host_sources());
        ("mmdebstrap", c)
    } else if have("debootstrap") {
        let mut c = Command::new("debootstrap");
        c.args(["--variant=minbase", codename]).arg(&tmp);
        ("debootstrap", c)
    } else {
        return Err(fail("mmdebstrap", "neither mmdebstrap nor debootstrap is installed".to_owned()));
    };
    let out = cmd.stdin(std::process::Stdio::null()).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return Err(fail(tool, e.to_string())),
    };
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(tool, format!("{}: {}", out.status, tail.join("\n"))));
    }
    // The host's name-service files are let through to the installer live (a kept copy goes
    // stale); none of the root's own.
    for f in ["etc/resolv.conf", "etc/hostname"] {
        let _ = fs::remove_file(tmp.join(f));
    }
    fs::rename(&tmp, dir).map_err(CaptureError::io("failed to rename into place", dir))?;
    let _ = fs::File::open(roots).and_then(|d| d.sync_all());
    Ok(())
}

/// The host's apt source files, as mmdebstrap takes them.
fn host_sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let list = Path::new("/etc/apt/sources.list");
    if fs::read_to_string(list).is_ok_and(|t| t.lines().any(|l| l.trim_start().starts_with("deb"))) {
        out.push(list.to_owned());
    }
    let mut parts: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    parts.sort();
    out.extend(parts);
    out
}

/// A capsule of every file of `dir` as `/` (devices, `/proc`, `/sys`, `/dev`, `/run` and
/// `/tmp` left out): its blobs made durable and its manifest stored, with no name.
pub fn capsule(store: &Store, dir: &Path, progress: &dyn Progress) -> Result<(Digest, Manifest), CaptureError> {
    let noise = Noise::new(LEFT_OUT.iter().map(|s| (*s).to_owned()).collect())?;
    let entries = scan(dir, &["/".to_owned()], &noise, progress)?;
    let _lock = crate::store::StoreLock::shared(store)?;
    let origin = Builder::origin(CaptureStep::Install, format!("source root {}", dir.display()));
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| crate::manifest::check_name("name", n).is_ok())
        .unwrap_or("root");
    let mut b = Builder::new(store, dir, name, "root", origin, progress);
    let nodes: Vec<(RelPath, &super::scan::Stat)> = entries
        .iter()
        .filter(|e| !e.path.is_empty())
        .filter_map(|e| Some((RelPath::new(e.path.clone()).ok()?, &e.stat)))
        .collect();
    b.add_all(&nodes)?;
    b.commit_unnamed()
}

/// Write `content` to `dest` through a temporary sibling and a rename.
fn write_atomic(dest: &Path, content: &[u8]) -> Result<(), CaptureError> {
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(CaptureError::io("failed to create", &tmp))?;
    f.write_all(content).and_then(|()| f.sync_all()).map_err(CaptureError::io("failed to write", &tmp))?;
    fs::rename(&tmp, dest).map_err(CaptureError::io("failed to rename into place", dest))
}

/// Remove from sandbox tree `tree` what runs over source root capsule `m` put there and the
/// installer left alone: links to the cache of the root's files (materialised, never written:
/// their cache file drops set-id bits, so they would not compare equal to the root's) and
/// the skeleton's symlinks as the manifest has them (relative, where the root's may be
/// absolute). What stays is what the installer wrote, to compare with the root.
pub fn unlink_pristine(store: &Store, tree: &Path, m: &Manifest) -> Result<usize, CaptureError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    use crate::manifest::EntryKind;
    let mut removed = 0;
    for e in &m.entries {
        let at = tree.join(std::ffi::OsStr::from_bytes(e.path.as_bytes()));
        let Ok(meta) = fs::symlink_metadata(&at) else { continue };
        let pristine = match &e.kind {
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => {
                meta.is_file()
                    && meta.nlink() > 1
                    && crate::run::materialize::content(m, &e.path).is_some_and(|(entry, digest)| {
                        let cache = crate::run::materialize::cache_path(store, &digest, &entry);
                        fs::metadata(cache).is_ok_and(|c| (c.dev(), c.ino()) == (meta.dev(), meta.ino()))
                    })
            }
            EntryKind::Symlink { target } => {
                meta.file_type().is_symlink()
                    && fs::read_link(&at).is_ok_and(|t| t.as_os_str().as_bytes() == &target[..])
            }
            _ => false,
        };
        if pristine {
            fs::remove_file(&at).map_err(CaptureError::io("failed to remove", &at))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `command` with `-o APT::Sandbox::User=root` after the program when it is `apt-get`, `apt`
/// or `aptitude`: apt runs its download and verification methods as `_apt`, closing the
/// descriptors of the capsule's view and tree on the way, and `_apt` cannot reopen them by
/// path (the store is its owner's only), so the methods and what they start (`apt-key`,
/// `gpgv`) would run without the view, where the hidden host refuses them. Over a source root
/// they run as root, still in the sandbox.
pub fn apt_as_root(command: &[String]) -> Vec<String> {
    let mut out = command.to_vec();
    let prog = command.first().map(|p| p.rsplit('/').next().unwrap_or_default());
    if matches!(prog, Some("apt-get" | "apt" | "aptitude")) {
        out.splice(1..1, ["-o".to_owned(), "APT::Sandbox::User=root".to_owned()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn apt_runs_its_methods_as_root() {
        assert_eq!(
            apt_as_root(&words("apt-get install -y jq")),
            words("apt-get -o APT::Sandbox::User=root install -y jq")
        );
        assert_eq!(apt_as_root(&words("/usr/bin/apt update")), words("/usr/bin/apt -o APT::Sandbox::User=root update"));
        assert_eq!(apt_as_root(&words("sh -c x")), words("sh -c x"));
    }

    #[test]
    fn a_directory_without_dpkg_is_not_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let err = check(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()) && err.contains("not a Debian root"), "{err}");
        let missing = dir.path().join("nope");
        let err = check(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()) && err.contains("cannot open"), "{err}");
    }
}
