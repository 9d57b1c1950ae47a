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
//!
//! The programs it installed become named entry points ([`super::programs`]). An installer
//! that is `apt-get`/`apt`/`aptitude install PKG…` names the packages it was asked for
//! ([`requested`]); those the host already has ([`already_installed`]) would be installed
//! by nobody, so the capture either refuses or reinstalls them ([`with_reinstall`]) and keeps
//! every file of their file lists, identical to the host's or not.

use std::collections::BTreeSet;
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
use crate::manifest::{CaptureStep, RelPath};
use crate::store::{Store, StoreLock};

/// Directories that never hold anything a capsule should carry, not even empty.
const NEVER: &[&str] = &["/tmp", "/var/tmp", "/proc", "/sys", "/dev", "/run", "/var/run", "/var/lock"];

/// What the installer was asked for.
#[derive(Debug, Default, Clone)]
pub struct Packages {
    /// The packages the command names ([`requested`]).
    pub requested: Vec<String>,
    /// Those of them reinstalled because the host had them: every file of their file lists
    /// goes into the capsule, even where it is the host's.
    pub reinstalled: Vec<String>,
}

/// Make capsule `name:tag` of install sandbox `tree` (with deletions `whiteouts`) against
/// `lower`, the directory whose files stood behind the sandbox: the host's `/`, or the source
/// root of `capture install --root` ([`super::root`]). `entry` is the default program; with it or without, the programs the install
/// wrote become named entry points ([`super::programs::record`]). `command` is recorded in
/// the capsule's origin.
#[allow(clippy::too_many_arguments)] // one capture, described once
pub fn from_sandbox(
    store: &Store,
    tree: &Path,
    lower: &Path,
    whiteouts: &[RelPath],
    name: &str,
    tag: &str,
    entry: Option<&str>,
    command: &str,
    packages: &Packages,
    base: crate::manifest::BaseKind,
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    let noise = Noise::with_defaults(&[])?;
    let never = Noise::new(NEVER.iter().map(|s| (*s).to_owned()).collect())?;
    let everything = Noise::new(Vec::new())?;
    let entries = scan(tree, &["/".to_owned()], &everything, progress)?;
    let _lock = StoreLock::shared(store)?;
    let origin = Builder::origin(CaptureStep::Install, command.to_owned());
    let mut b = Builder::new(store, tree, name, tag, origin, progress);
    let forced = reinstalled_files(tree, lower, &packages.reinstalled);
    let mut chosen: Vec<(RelPath, &ScanEntry)> = Vec::new();
    for e in &entries {
        let abs = [b"/", &e.path[..]].concat();
        if e.path.is_empty() || never.covers(&abs) {
            continue;
        }
        let is_dir = e.stat.kind() == S_IFDIR;
        let rel = RelPath::new(e.path.clone()).map_err(|source| CaptureError::Path { path: e.path_buf(), source })?;
        if (!is_dir && noise.covers(&abs)) || (!forced.contains(&rel) && same_as_host(lower, tree, e)) {
            continue;
        }
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
    if let Some(p) = entry {
        set_entry(m, p)?;
    }
    super::programs::record(m, tree, &packages.requested, true);
    super::snapshot::record_etc(m);
    let captured = captured_packages(tree, lower, &packages.reinstalled)?;
    let db = if tree.join(super::dpkg::STATUS).exists() { tree } else { lower };
    let src = super::closure::Source { root: lower, db };
    let added = super::closure::complete(&mut b, base, &src, &captured, progress)?;
    let all: Vec<_> = captured.into_iter().chain(added.packages).collect();
    let distro = super::dpkg::os_release(tree).or_else(|| super::dpkg::os_release(lower));
    b.manifest_mut().inventory = Some(super::dpkg::inventory(&all, distro));
    b.commit()
}

/// The packages the install put in the tree: those dpkg's status in the tree (written by the
/// installer) has installed that `lower`'s (the host's, or the source root's) does not have at
/// the same version, and the reinstalled ones. No status file in the tree: the installer
/// installed no package.
fn captured_packages(
    tree: &Path,
    lower: &Path,
    reinstalled: &[String],
) -> Result<Vec<super::dpkg::Record>, CaptureError> {
    use super::dpkg;
    if !tree.join(dpkg::STATUS).exists() {
        return Ok(Vec::new());
    }
    let all = dpkg::read(tree)?;
    Ok(dpkg::changed(&dpkg::read(lower)?, &all, reinstalled))
}

/// The files (not directories) the file lists of `pkgs` name, as the install left them: the
/// sandbox's list when dpkg rewrote it, else `lower`'s.
fn reinstalled_files(tree: &Path, lower: &Path, pkgs: &[String]) -> BTreeSet<RelPath> {
    let mut out = BTreeSet::new();
    if pkgs.is_empty() {
        return out;
    }
    let (in_tree, on_host) = (super::programs::lists(tree), super::programs::lists(lower));
    for pkg in pkgs {
        let list = |l: &[(String, Vec<RelPath>)]| l.iter().find(|(p, _)| p == pkg).map(|(_, paths)| paths.clone());
        let paths = list(&in_tree).or_else(|| list(&on_host)).unwrap_or_default();
        out.extend(
            paths
                .into_iter()
                .filter(|p| Stat::lstat(&host_path(tree, p.as_bytes())).is_ok_and(|s| s.kind() != S_IFDIR)),
        );
    }
    out
}

/// The packages an installer command asks for: `apt-get`, `apt` or `aptitude` (by any path)
/// with the verb `install`, then its words that are not options (an option's value skipped:
/// `-o`, `-t`, `-c` and their long forms), without `=VERSION`, `/RELEASE` or `:ARCH`.
/// Local `.deb` files and removals (`pkg-`) are not packages the host could have. Empty for
/// any other command.
pub fn requested(command: &[String]) -> Vec<String> {
    let Some((prog, rest)) = command.split_first() else { return Vec::new() };
    let base = prog.rsplit('/').next().unwrap_or_default();
    if !matches!(base, "apt-get" | "apt" | "aptitude") {
        return Vec::new();
    }
    const VALUED: &[&str] = &["-o", "-t", "-c", "--option", "--target-release", "--default-release", "--config-file"];
    let mut words = Vec::new();
    let mut skip = false;
    for w in rest {
        if std::mem::take(&mut skip) {
            continue;
        }
        if w.starts_with('-') {
            skip = VALUED.contains(&w.as_str());
            continue;
        }
        words.push(w.as_str());
    }
    let Some(("install", pkgs)) = words.split_first().map(|(v, r)| (*v, r)) else { return Vec::new() };
    pkgs.iter()
        .filter(|w| !w.ends_with(".deb") && !w.starts_with('.') && !w.starts_with('/') && !w.ends_with('-'))
        .map(|w| {
            let w = w.split(['=', '/']).next().unwrap_or_default();
            let w = w.split(':').next().unwrap_or_default();
            w.trim_end_matches('+').to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Which of `pkgs` the dpkg database (`var/lib/dpkg/status`) under `lower` (the host's `/`, or
/// a source root) has installed.
pub fn already_installed(lower: &Path, pkgs: &[String]) -> Result<Vec<String>, CaptureError> {
    Ok(super::dpkg::installed_names(&super::dpkg::read(lower)?, pkgs))
}

/// `command` (a [`requested`] one) with `--reinstall` after its `install` verb; `None` for
/// `aptitude`, which has no such option.
pub fn with_reinstall(command: &[String]) -> Option<Vec<String>> {
    let prog = command.first()?.rsplit('/').next().unwrap_or_default();
    if !matches!(prog, "apt-get" | "apt") {
        return None;
    }
    let mut out = command.to_vec();
    let i = out.iter().skip(1).position(|w| w == "install")?;
    out.insert(i + 2, "--reinstall".to_owned());
    Some(out)
}

/// Whether `lower` (the host's `/`, or a source root) has this node as the tree has it (the
/// installer copied it up and left it, or a run materialised it from the source root).
fn same_as_host(lower: &Path, tree: &Path, e: &ScanEntry) -> bool {
    let host = host_path(lower, &e.path);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn requested_packages() {
        let got = requested(&words(
            "/usr/bin/apt-get -q install -y --no-install-recommends -o Dpkg::Options=x ruby php-cli=2:8.2 redis/bookworm libc6:amd64 ./x.deb nano-",
        ));
        assert_eq!(got, ["ruby", "php-cli", "redis", "libc6"]);
        assert!(requested(&words("apt-get update")).is_empty());
        assert!(requested(&words("sh -c apt-get install ruby")).is_empty());
        assert_eq!(with_reinstall(&words("apt-get -y install jq")), Some(words("apt-get -y install --reinstall jq")));
        assert_eq!(with_reinstall(&words("aptitude install jq")), None);
    }
}
