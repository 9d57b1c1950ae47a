//! `sandbox NAME commit NEWNAME`: a new capsule made of capsule NAME and what its programs
//! changed in its sandbox, ThinApp's "rebuild with the sandbox": files they added or changed
//! (hashed from the tree; pristine links to the cache are the capsule's own and stay as they
//! are), files they deleted (whiteouts become deletions), and the sandbox's registry layer
//! (`config set`) merged into the capsule's registry. The old capsule and the sandbox are left
//! as they were.
//!
//! Left out: what a run derives rather than the application writes — the identity files
//! (`/etc/hostname`, `/etc/machine-id`, `/var/lib/dbus/machine-id`, `/etc/hosts` as the run
//! wrote them; the identity itself goes into the registry with `config set
//! machine/identity/…`), configuration files edited through the registry (the registry goes
//! in instead, so the edit is not applied twice), and kernel and scratch trees (/proc, /sys,
//! /dev, /run, /tmp, /var/tmp).

use std::collections::BTreeSet;
use std::path::Path;

use super::builder::Builder;
use super::noise::Noise;
use super::scan::{ScanEntry, Stat, scan};
use super::{CaptureError, Progress};
use crate::digest::Digest;
use crate::manifest::{CaptureStep, EntryKind, Manifest, RelPath};
use crate::registry;
use crate::store::{CapsuleRef, Store, StoreLock};

const NEVER: &[&str] = &["/proc", "/sys", "/dev", "/run", "/var/run", "/tmp", "/var/tmp"];
const DERIVED: &[&str] = &["/etc/hostname", "/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/hosts"];

/// Commit sandbox `tree` (directory `sandbox_dir`, deletions `whiteouts`) of capsule `base` as
/// capsule `new`.
pub fn from_sandbox_changes(
    store: &Store,
    base: &Manifest,
    sandbox_dir: &Path,
    tree: &Path,
    whiteouts: &[RelPath],
    new: &CapsuleRef,
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    let never = Noise::new(NEVER.iter().chain(DERIVED).map(|s| (*s).to_owned()).collect())?;
    // Configuration files the registry edited: the keys go in, not the edited copies.
    let projected: BTreeSet<String> =
        std::fs::read_to_string(sandbox_dir.join("projected")).unwrap_or_default().lines().map(str::to_owned).collect();
    let entries = scan(tree, &["/".to_owned()], &Noise::new(Vec::new())?, progress)?;
    let _lock = StoreLock::shared(store)?;
    let origin = Builder::origin(CaptureStep::Commit, format!("sandbox of {}:{}", base.name, base.tag));
    let mut b = Builder::new(store, tree, &new.name, &new.tag, origin, progress);
    let mut chosen: Vec<(RelPath, &ScanEntry)> = Vec::new();
    for e in &entries {
        let abs = [b"/", &e.path[..]].concat();
        if e.path.is_empty() || never.covers(&abs) || projected.contains(&*String::from_utf8_lossy(&abs)) {
            continue;
        }
        let rel = RelPath::new(e.path.clone()).map_err(|source| CaptureError::Path { path: e.path_buf(), source })?;
        if !changed(base, &rel, e) {
            continue;
        }
        chosen.push((rel, e));
    }
    let nodes: Vec<(RelPath, &Stat)> = chosen.iter().map(|(r, e)| (r.clone(), &e.stat)).collect();
    b.add_all(&nodes)?;
    let deleted: BTreeSet<&RelPath> = whiteouts.iter().collect();
    let gone = |p: &RelPath| deleted.contains(p) || p.ancestors().any(|a| deleted.contains(&a));
    let kept: Vec<_> = base.entries.iter().filter(|e| !b.contains(&e.path) && !gone(&e.path)).cloned().collect();
    let layer = registry::load_layer(&sandbox_dir.join("registry")).map_err(|e| CaptureError::Io {
        action: "failed to read the registry of",
        path: sandbox_dir.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    let m = b.manifest_mut();
    // The base's origins follow the commit's own (index 0).
    let shift = u32::try_from(m.origins.len()).unwrap_or(u32::MAX);
    m.origins.extend(base.origins.iter().cloned());
    for mut e in kept {
        e.origin = e.origin.saturating_add(shift);
        m.entries.push(e);
    }
    // A hardlink whose first name was deleted has nothing left to name.
    let files_now: BTreeSet<RelPath> =
        m.entries.iter().filter(|e| matches!(e.kind, EntryKind::File { .. })).map(|e| e.path.clone()).collect();
    m.entries.retain(|e| !matches!(&e.kind, EntryKind::Hardlink { target } if !files_now.contains(target)));
    m.deletions = base.deletions.iter().chain(whiteouts).filter(|d| !files_now.contains(*d)).cloned().collect();
    // An entry point whose program the application deleted has nothing left to run.
    m.entry_points = base
        .entry_points
        .iter()
        .filter(|ep| match m.follow(&ep.path) {
            Some(crate::manifest::Followed::Capsule(_, e)) => {
                matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. })
            }
            Some(crate::manifest::Followed::Host(p)) => p != ep.path,
            None => false,
        })
        .cloned()
        .collect();
    m.default_entry = base.default_entry.clone().filter(|d| m.entry_points.iter().any(|e| &e.name == d));
    m.env.clone_from(&base.env);
    m.isolation.clone_from(&base.isolation);
    m.identity.clone_from(&base.identity);
    m.links.clone_from(&base.links);
    // The packages are the base's: what its programs changed is no package dpkg installed.
    m.inventory.clone_from(&base.inventory);
    m.registry = registry::merged(base, &[], &layer).into_iter().collect();
    b.commit()
}

/// Whether tree node `e` at `rel` differs from what capsule `m` holds there.
fn changed(m: &Manifest, rel: &RelPath, e: &ScanEntry) -> bool {
    let Some(entry) = m.get(rel) else { return true };
    match (&entry.kind, e.stat.kind()) {
        // More than one link: a pristine link into the cache, the capsule's own file.
        (EntryKind::File { .. } | EntryKind::Hardlink { .. }, super::scan::S_IFREG) => e.stat.nlink <= 1,
        (EntryKind::Dir, super::scan::S_IFDIR) => false,
        (EntryKind::Symlink { .. }, super::scan::S_IFLNK) => false,
        _ => true,
    }
}
