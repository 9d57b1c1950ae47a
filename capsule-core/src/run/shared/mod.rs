//! Shared capsules (Trigence AE's shared capsules, App-V's connection groups): state that
//! several application capsules use, owned by neither of them.
//!
//! A capsule declares prefixes as its *state* ([`Isolation::State`](crate::manifest::Isolation)).
//! Each is one real directory in that capsule's sandbox:
//!
//! ```text
//! sandboxes/SHARED/state/<prefix>   the state itself, seeded once from SHARED's files below
//!                                   the prefix (never again: an upgrade keeps the data)
//! sandboxes/SHARED/users            one line per app capsule that ran with `--with SHARED`
//! ```
//! A run of a capsule that links to SHARED (its manifest's `links`, or `run --with SHARED`)
//! sees each prefix as that directory (a view redirect, as a bind mount would: no copy-up, no
//! per-app layer), so concurrent runs of different apps see each other's writes at once and
//! `flock`/`fcntl` locks are shared: they are the same inodes. The state belongs to the shared
//! capsule: removing or upgrading an app capsule touches none of it. The shared capsule's
//! registry is layered between the app's and the sandbox's.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::{RunError, materialize};
use crate::digest::Digest;
use crate::manifest::{Entry, EntryKind, Manifest, RelPath};
use crate::store::{CapsuleRef, Store};

/// A shared capsule a run links to.
#[derive(Debug, Clone)]
pub struct Linked {
    /// Its manifest digest.
    pub digest: Digest,
    /// Its manifest.
    pub manifest: Manifest,
}

/// One prefix of shared state, and the host directory that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    /// The path the application sees.
    pub prefix: RelPath,
    /// The directory in the owner's sandbox.
    pub dir: PathBuf,
    /// The owning capsule's name.
    pub owner: String,
}

/// Errors specific to links.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A linked capsule is not in the store.
    #[error("capsule {app} links to shared capsule {shared}, which is not in the store")]
    Missing {
        /// The app.
        app: String,
        /// The missing link.
        shared: String,
    },
    /// Two capsules declare overlapping state.
    #[error("shared capsules {a} and {b} both declare state at {prefix} (or one inside the other)")]
    Conflict {
        /// One owner.
        a: String,
        /// The other.
        b: String,
        /// The prefix.
        prefix: String,
    },
}

/// The shared capsules a run of `app` links to: its manifest's links (pinned digests kept),
/// then `with`; each once, and never `app` itself.
pub fn linked(store: &Store, app: &Manifest, with: &[CapsuleRef]) -> Result<Vec<Linked>, RunError> {
    let mut out: Vec<Linked> = Vec::new();
    let declared = app.links.iter().map(|l| (CapsuleRef::new(&l.name, "latest"), l.digest));
    let extra = with.iter().map(|r| (r.clone(), None));
    for (r, pinned) in declared.chain(extra) {
        if r.name == app.name || out.iter().any(|l| l.manifest.name == r.name) {
            continue;
        }
        let missing = |_| LinkError::Missing { app: app.name.clone(), shared: r.to_string() };
        let (digest, manifest) = match pinned {
            Some(d) => (d, store.load_manifest(&d).map_err(missing)?),
            None => store.load(&r).map_err(missing)?,
        };
        out.push(Linked { digest, manifest });
    }
    Ok(out)
}

fn state_root(store: &Store, owner: &str) -> PathBuf {
    store.root().join("sandboxes").join(owner).join("state")
}

fn host(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(std::ffi::OsStr::new(&*String::from_utf8_lossy(rel)))
}

/// The state directories of a run: `own` (the running capsule's state, in its run's sandbox
/// `own_sandbox`) and every linked capsule's, each seeded on first use.
pub fn state_dirs(
    store: &Store,
    own: &Manifest,
    own_sandbox: &str,
    links: &[Linked],
) -> Result<Vec<StateDir>, RunError> {
    let mut out: Vec<StateDir> = Vec::new();
    let owners =
        std::iter::once((own, own_sandbox)).chain(links.iter().map(|l| (&l.manifest, l.manifest.name.as_str())));
    for (m, sandbox) in owners {
        for prefix in m.state_prefixes() {
            let inside = |a: &RelPath, b: &RelPath| {
                let (a, b) = (a.as_bytes(), b.as_bytes());
                a == b || (a.starts_with(b) && a.get(b.len()) == Some(&b'/'))
            };
            if let Some(other) = out.iter().find(|s| inside(&s.prefix, &prefix) || inside(&prefix, &s.prefix)) {
                if other.owner != m.name {
                    return Err(LinkError::Conflict {
                        a: other.owner.clone(),
                        b: m.name.clone(),
                        prefix: prefix.display(),
                    }
                    .into());
                }
                continue;
            }
            let dir = seed(store, m, &state_root(store, sandbox), &prefix)?;
            out.push(StateDir { prefix, dir, owner: m.name.clone() });
        }
    }
    Ok(out)
}

/// `root/prefix`, made from `m`'s files below `prefix` if it does not exist yet. Built aside
/// and renamed into place, so concurrent first runs agree on one seed and a crash leaves none.
fn seed(store: &Store, m: &Manifest, root: &Path, prefix: &RelPath) -> Result<PathBuf, RunError> {
    let dest = host(root, prefix.as_bytes());
    if dest.is_dir() {
        return Ok(dest);
    }
    crate::store::private_dir(root).map_err(RunError::io("failed to create", root))?;
    let tmp = tempfile::Builder::new()
        .prefix(".seed-")
        .tempdir_in(root)
        .map_err(RunError::io("failed to create a directory in", root))?;
    let top = tmp.path().join("state");
    let mode = m.get(prefix).map_or(0o755, |e| materialize::dir_mode(e.mode));
    fs::create_dir(&top).map_err(RunError::io("failed to create", &top))?;
    fs::set_permissions(&top, fs::Permissions::from_mode(mode))
        .map_err(RunError::io("failed to set the mode of", &top))?;
    let below =
        |e: &&Entry| e.path.as_bytes().strip_prefix(prefix.as_bytes()).is_some_and(|r| r.first() == Some(&b'/'));
    for e in m.entries.iter().filter(below) {
        let rest = &e.path.as_bytes()[prefix.as_bytes().len() + 1..];
        let dst = host(&top, rest);
        let file = match &e.kind {
            EntryKind::Dir => {
                fs::create_dir(&dst).map_err(RunError::io("failed to create", &dst))?;
                None
            }
            EntryKind::Symlink { target } => {
                symlink(std::ffi::OsStr::new(&*String::from_utf8_lossy(target)), &dst)
                    .map_err(RunError::io("failed to create", &dst))?;
                continue;
            }
            EntryKind::File { digest, .. } => Some((*digest, e)),
            EntryKind::Hardlink { target } => match m.get(target) {
                Some(t @ Entry { kind: EntryKind::File { digest, .. }, .. }) => Some((*digest, t)),
                _ => continue,
            },
        };
        // A private copy: the state is written in place, the cache must never be.
        if let Some((digest, src)) = file {
            let cache = materialize::ensure_cache(store, &digest, src)?;
            fs::copy(&cache, &dst).map_err(RunError::io("failed to copy into", &dst))?;
        }
        let mode = if file.is_some() { materialize::file_mode(e.mode) } else { materialize::dir_mode(e.mode) };
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
            .map_err(RunError::io("failed to set the mode of", &dst))?;
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(RunError::io("failed to create", parent))?;
    }
    match fs::rename(&top, &dest) {
        Ok(()) => Ok(dest),
        // Another first run won the race: its seed is as good as ours.
        Err(_) if dest.is_dir() => Ok(dest),
        Err(e) => Err(RunError::Io { action: "failed to move the seeded state to", path: dest, source: e }),
    }
}

fn users_file(store: &Store, shared: &str) -> PathBuf {
    store.root().join("sandboxes").join(shared).join("users")
}

/// Remember that capsule `app` ran with `--with shared` (for `inspect` and `rm`).
pub fn record_user(store: &Store, shared: &str, app: &str) -> Result<(), RunError> {
    if users(store, shared).contains(app) {
        return Ok(());
    }
    let path = users_file(store, shared);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(RunError::io("failed to create", dir))?;
    }
    let mut f =
        fs::OpenOptions::new().create(true).append(true).open(&path).map_err(RunError::io("failed to open", &path))?;
    // One short write with O_APPEND: concurrent recorders never interleave within a line.
    f.write_all(format!("{app}\n").as_bytes()).map_err(RunError::io("failed to write", &path))
}

/// The app capsules recorded as having run with `--with shared`.
pub fn users(store: &Store, shared: &str) -> BTreeSet<String> {
    fs::read_to_string(users_file(store, shared))
        .unwrap_or_default()
        .lines()
        .filter(|l| crate::manifest::check_name("name", l).is_ok())
        .map(str::to_owned)
        .collect()
}

/// Who uses shared capsule `shared`: `(capsule, how)` for every capsule in the store whose
/// manifest links to it ("link") and every recorded `--with` user still in the store
/// ("with"). A manifest that cannot be read is skipped (`verify` reports it).
pub fn linked_by(store: &Store, shared: &str) -> Result<Vec<(String, &'static str)>, RunError> {
    let refs = store.list_refs()?;
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for (r, digest) in &refs {
        let Ok(m) = store.load_manifest(digest) else { continue };
        if r.name != shared && m.links.iter().any(|l| l.name == shared) {
            out.push((r.to_string(), "link"));
        }
    }
    for app in users(store, shared) {
        if refs.iter().any(|(r, _)| r.name == app) && !out.iter().any(|(c, _)| c.split(':').next() == Some(&app)) {
            out.push((app, "with"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
