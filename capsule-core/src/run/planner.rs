//! Writing a prepared run's launch plan ([`crate::plan`]): which inputs the preparation
//! consulted, and what the program is started with.
//!
//! Inputs, each checked by the front end with one `stat`:
//! - the ref (for a version named by digest: its manifest blob, and its name's `refs/` and
//!   `untagged/` directories), and the sandbox's own files (skeleton stamp, whiteouts, linked directories,
//!   registry layer, projected files): identity taken before [`super::prepare`] and again
//!   after; a change in between (a commit racing the run) means no plan;
//! - the tree path of every whiteout (a path made again is no longer whited out);
//! - for every capsule directory, whether the host has it (the view's host-directory flag),
//!   below host directories only (under a missing one nothing can exist);
//! - the view file, the program (and the scripts and interpreter that decided it,
//!   `run::exec`), the library directories, the shim and the launcher itself (an upgrade of
//!   capsule starts over);
//! - for a run as root, `/dev` (its disks are granted nothing, by name: `run::confine::grant_rules`).
//!
//! A run only gets a plan when nothing else went into it ([`Prepared::plannable`]): no shared
//! capsules, no registry edits of files, no identity.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Prepared, RunError, materialize};
use crate::manifest::EntryKind;
use crate::plan::{self, Plan, Sig};
use crate::store::{CapsuleRef, Store};

/// A file's identity now (`lstat` when `nofollow`), `None` if it does not exist.
pub fn sig_of(path: &Path, nofollow: bool) -> Option<Sig> {
    let md = if nofollow { fs::symlink_metadata(path) } else { fs::metadata(path) }.ok()?;
    Some(Sig::new(md.ino(), md.size(), (md.mtime(), md.mtime_nsec()), (md.ctime(), md.ctime_nsec()), md.mode()))
}

/// The identities of the ref and the sandbox's files, taken before preparing.
#[derive(Debug, Clone)]
pub struct Before {
    files: Vec<(PathBuf, Option<Sig>)>,
}

impl Before {
    /// Take them for capsule `r` in sandbox `sandbox`.
    pub fn take(store: &Store, r: &CapsuleRef, sandbox: &str) -> Before {
        let dir = store.root().join("sandboxes").join(sandbox);
        let mut paths = store.ref_files(r);
        for f in ["skeleton", "whiteouts", "linked", "projected"] {
            paths.push(dir.join(f));
        }
        paths.push(crate::registry::sandbox_file(store.root(), &r.name));
        Before { files: paths.into_iter().map(|p| (p.clone(), sig_of(&p, true))).collect() }
    }
}

/// What the program is started with, besides what [`Prepared`] holds.
pub struct Launch<'a> {
    /// The run's key ([`plan::key_parts`]) and its hash.
    pub key: (Vec<u8>, u64),
    /// Where the program's arguments start in capsule's argv.
    pub args_from: u32,
    /// The program: what is executed, its argv[0], the arguments before the command line's
    /// and the files read to decide.
    pub program: &'a super::exec::Program,
    /// Environment the launcher sets (besides the per-run socket and descriptors).
    pub env: &'a [(String, std::ffi::OsString)],
    /// The launcher (`capsule-cli`) and the shim.
    pub launcher: &'a Path,
    /// The shim.
    pub shim: &'a Path,
    /// The Landlock grants the program is confined with (none: unconfined).
    pub grants: &'a [super::confine::Grant],
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The plan is written.
    Yes,
    /// The run cannot have one (see [`Prepared::plannable`]), or an input cannot be recorded.
    NotPlannable,
    /// An input changed while the run was prepared: by the preparation itself (a first run
    /// builds its sandbox's skeleton) or by something else (a commit, another run of the
    /// sandbox). Preparing once more, between a new [`Before`] and the write, tells which.
    InputsMoved,
}

/// Write the plan of `p` (prepared for capsule `r` in sandbox `sandbox`) under `store/plans`,
/// unless an input changed while it was prepared. Plans are a cache: at most `KEEP` are
/// kept, the oldest dropped first.
pub fn write(
    store: &Store,
    before: &Before,
    r: &CapsuleRef,
    sandbox: &str,
    p: &Prepared,
    launch: &Launch<'_>,
) -> Result<Written, RunError> {
    const KEEP: usize = 256;
    if !p.plannable || p.manifest.name != r.name {
        return Ok(Written::NotPlannable);
    }
    let after = Before::take(store, r, sandbox);
    if after.files != before.files {
        return Ok(Written::InputsMoved);
    }
    let bytes = |p: &Path| p.as_os_str().as_bytes().to_vec();
    let mut files: Vec<(Vec<u8>, bool, Option<Sig>)> =
        before.files.iter().map(|(path, sig)| (bytes(path), true, *sig)).collect();
    let whiteouts = fs::read_to_string(p.sandbox.dir().join("whiteouts")).unwrap_or_default();
    for w in whiteouts.lines() {
        let path = p.sandbox.tree().join(w.trim_start_matches('/'));
        files.push((bytes(&path), true, sig_of(&path, true)));
    }
    // A run as root grants the host's disks nothing, by name (`confine::grant_rules`): a disk
    // that appears in /dev changes the grants. (The entries of an expanded directory are
    // listed at every launch: `confine::EXPAND`.)
    if !launch.grants.is_empty() && super::confine::grant_rules(&p.rules).len() > p.rules.len() {
        let dev = Path::new("/dev");
        files.push((bytes(dev), true, sig_of(dev, true)));
    }
    let mut follow =
        vec![p.view.clone(), launch.program.path.clone(), launch.launcher.to_owned(), launch.shim.to_owned()];
    follow.extend(launch.program.inputs.iter().cloned());
    follow.extend(p.lib_dirs.iter().cloned());
    for path in follow {
        let sig = sig_of(&path, false);
        if sig.is_none() {
            return Ok(Written::NotPlannable);
        }
        files.push((bytes(&path), false, sig));
    }
    let plan = Plan {
        key: launch.key.0.clone(),
        files,
        dirs: host_dirs(p),
        program: bytes(&launch.program.path),
        argv0: launch.program.argv0.as_bytes().to_vec(),
        args: launch.program.prefix.iter().map(|a| a.as_bytes().to_vec()).collect(),
        args_from: launch.args_from,
        env: launch.env.iter().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect(),
        view: bytes(&p.view),
        tree: bytes(p.sandbox.tree()),
        library_path: p.lib_dirs.iter().map(|d| bytes(d)).collect::<Vec<_>>().join(&b':'),
        digest: p.digest.to_hex().into_bytes(),
        sandbox: sandbox.as_bytes().to_vec(),
        launcher: bytes(launch.launcher),
        landlock: launch.grants.iter().map(super::confine::Grant::record).collect(),
    };
    if plan.has_nul() || launch.env.iter().any(|(k, _)| k.contains('=')) {
        return Ok(Written::NotPlannable);
    }
    let dir = store.root().join("plans");
    crate::store::private_dir(&dir).map_err(RunError::io("failed to create", &dir))?;
    prune(&dir, KEEP);
    let name = plan::file_name(launch.key.1);
    let path = dir.join(std::ffi::OsStr::from_bytes(&name));
    materialize::write_atomic(&path, &plan.encode(), Some(0o600))?;
    Ok(Written::Yes)
}

/// Keep at most `keep - 1` plans in `dir` (the oldest go), making room for one more.
fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut plans: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.file_name().as_bytes().ends_with(b".plan"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if plans.len() < keep {
        return;
    }
    plans.sort();
    for (_, p) in plans.iter().take(plans.len() + 1 - keep) {
        let _ = fs::remove_file(p);
    }
}

/// Whether the host has each capsule directory, for those whose parent the host has (the
/// view flags host directories; below a missing one nothing can appear without its parent
/// appearing first).
fn host_dirs(p: &Prepared) -> Vec<(Vec<u8>, bool)> {
    let mut out: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut missing: Vec<Vec<u8>> = Vec::new();
    for e in &p.manifest.entries {
        if !matches!(e.kind, EntryKind::Dir) {
            continue;
        }
        let abs = e.path.to_absolute();
        let abs = abs.as_os_str().as_bytes();
        let below_missing = missing.iter().any(|m| abs.starts_with(m) && abs.get(m.len()) == Some(&b'/'));
        if below_missing {
            continue;
        }
        let is_dir = Path::new(std::ffi::OsStr::from_bytes(abs)).is_dir();
        if !is_dir {
            missing.push(abs.to_vec());
        }
        out.push((abs.to_vec(), is_dir));
    }
    out
}

/// Remove the plans in `store/plans` that the front end would no longer start from: damaged,
/// or written against an input that has changed since (a new or deleted capsule version, a
/// reset or changed sandbox, an upgraded capsule, a whiteout made again). `gc` calls it;
/// returns how many went. A plan written meanwhile is written whole (renamed into place) and
/// matches its inputs, so it stays.
pub fn remove_stale(store: &Store) -> usize {
    let dir = store.root().join("plans");
    let Ok(rd) = fs::read_dir(&dir) else { return 0 };
    let mut removed = 0;
    for e in rd.flatten() {
        if !e.file_name().as_bytes().ends_with(b".plan") {
            continue;
        }
        let path = e.path();
        let fresh = fs::read(&path).is_ok_and(|b| inputs_unchanged(&b));
        if !fresh && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether plan file `bytes` is whole and every input it records is as it was.
fn inputs_unchanged(bytes: &[u8]) -> bool {
    let os = |p: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(p.strip_suffix(b"\0").unwrap_or(p)));
    let Some(mut recs) = plan::records(bytes) else { return false };
    for (t, payload) in recs.by_ref() {
        let unchanged = match plan::input(t, payload) {
            None => false,
            Some(None) => true,
            Some(Some(plan::Input::File { path, nofollow, want })) => sig_of(&os(path), nofollow) == want,
            Some(Some(plan::Input::Dir { path, was_dir })) => os(path).is_dir() == was_dir,
        };
        if !unchanged {
            return false;
        }
    }
    !recs.bad()
}
