//! `rm` and `gc`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::digest::Digest;
use capsule_core::oci::lazy;
use capsule_core::store::index::Index;
use capsule_core::store::{Store, StoreLock};
use serde_json::json;

use super::any_ref;
use crate::cli::{Output, human_bytes};

/// `rm NAME`: drop the ref (the truth), then the index record. `rm NAME@DIGEST`: drop an
/// untagged version (a tagged one is removed by its tag).
pub fn rm(store: &Store, out: Output, name: &str, force: bool) -> Result<ExitCode> {
    let r = any_ref(name)?;
    if r.digest.is_some() {
        let d = store.get_ref(&r).with_context(|| format!("cannot remove capsule {r}"))?;
        if let Some((t, _)) = store.list_refs()?.into_iter().find(|(x, dd)| x.name == r.name && *dd == d) {
            anyhow::bail!(
                "cannot remove capsule {}@{}: tag {t} names it; remove the tag (`capsule rm {t}`)",
                r.name,
                d.short()
            );
        }
        if !store.remove_untagged(&r.name, &d)? {
            anyhow::bail!(
                "cannot remove capsule {}@{}: it is not an untagged version of {}",
                r.name,
                d.short(),
                r.name
            );
        }
        out.info(format!("removed untagged {}@{}; run `capsule gc` to free its blobs", r.name, d.short()));
        return Ok(ExitCode::SUCCESS);
    }
    // A shared capsule still in use keeps its version: its users need it to run. (Its state,
    // in its sandbox, is kept in any case.)
    let users = capsule_core::run::shared::linked_by(store, &r.name)?;
    let last_version = store.list_refs()?.iter().filter(|(x, _)| x.name == r.name).count() <= 1;
    if !users.is_empty() && last_version && !force {
        let list: Vec<String> = users.iter().map(|(c, how)| format!("{c} ({how})")).collect();
        anyhow::bail!(
            "capsule {r} is a shared capsule still used by {}; pass --force to remove it anyway",
            list.join(", ")
        );
    }
    store.remove_ref(&r).with_context(|| format!("cannot remove capsule {r}"))?;
    Index::with(store, |idx| idx.forget(&r, store))?;
    out.info(format!("removed {r}; run `capsule gc` to free its blobs"));
    Ok(ExitCode::SUCCESS)
}

/// `gc`: with the store lock held exclusively (no writer between its first blob and its
/// commit), with `untagged` drop the untagged versions (but those whose sandbox a process
/// holds); remove the sandboxes of removed capsules ([`gc_sandboxes`]); every blob that no
/// capsule (tagged, or untagged and kept), no pending snapshot and no kept minimal root
/// (`roots/CODENAME.manifest`, `capture install --root minimal`) uses; empty tmp/; remove the scratch sandboxes of
/// captures and the temporary roots of bootstraps whose process died; remove the remote records (lazy pulls) of capsules no ref
/// names any more (those of live capsules stay); stale launch plans; the views no plan names
/// and no process holds ([`gc_views`]); and the cache files no run needs ([`gc_cache`]).
pub fn gc(store: &Store, out: Output, untagged: bool) -> Result<ExitCode> {
    let _lock = StoreLock::exclusive(store)?;
    let held = held_paths(store);
    let sandboxes = store.root().join("sandboxes");
    let sandboxes = std::fs::canonicalize(&sandboxes).unwrap_or(sandboxes);
    let mut untagged_removed = Vec::new();
    if untagged {
        for u in store.list_untagged()? {
            let by_digest = format!("{}@{}", u.name, u.digest.short());
            if !held.iter().any(|p| p.starts_with(sandboxes.join(&by_digest))) {
                store.remove_untagged(&u.name, &u.digest)?;
                untagged_removed.push(by_digest);
            }
        }
    }
    let mut versions = store.list_refs()?;
    for u in store.list_untagged()? {
        versions.push((any_ref(&format!("{}@{}", u.name, u.digest.to_hex()))?, u.digest));
    }
    let reachable: BTreeSet<Digest> = versions.iter().map(|(_, d)| *d).collect();
    // Before any blob goes: a sandbox's capsule is known by the manifest its skeleton names.
    let (sandboxes_removed, sandboxes_in_use, mut live) = gc_sandboxes(store, &held, &reachable)?;
    for (r, digest) in versions {
        // A manifest we cannot read could use any blob: refuse rather than guess.
        let m = store
            .load_manifest(&digest)
            .with_context(|| format!("gc refused: capsule {r} cannot be read; run `capsule verify`"))?;
        live.insert(digest);
        live.extend(m.blobs());
        // A link pinned to a version keeps that version's manifest (and so its blobs, below).
        for d in m.links.iter().filter_map(|l| l.digest) {
            if let Ok(linked) = store.load_manifest(&d) {
                live.insert(d);
                live.extend(linked.blobs());
            }
        }
    }
    if let Ok((snap, _)) = capsule_core::capture::snapshot::pending(store) {
        live.insert(snap);
    }
    // The kept minimal roots' capsules (`capture install --root minimal`).
    for d in capsule_core::capture::root::kept(store) {
        if let Ok(m) = store.load_manifest(&d) {
            live.insert(d);
            live.extend(m.blobs());
        }
    }
    for d in lazy::records(store) {
        if !live.contains(&d) {
            lazy::remove_record(store, &d).with_context(|| format!("cannot remove the remote record of {d}"))?;
        }
    }
    let (mut removed, mut freed) = (0u64, 0u64);
    for d in store.list_blobs()? {
        if !live.contains(&d) {
            freed += store.blob_stored_size(&d).unwrap_or(0);
            store.remove_blob(&d)?;
            removed += 1;
        }
    }
    // Scratch sandboxes of `capture install/trace` whose capsule process is gone (killed).
    let sandboxes = store.root().join("sandboxes");
    for e in std::fs::read_dir(&sandboxes).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let scratch = name.strip_prefix(".install-").or_else(|| name.strip_prefix(".trace-"));
        let pid = scratch.and_then(|s| s.rsplit_once('-')).map(|(_, pid)| pid.to_owned());
        if let Some(pid) = pid
            && !std::path::Path::new("/proc").join(&pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    // Temporary roots of `capture install --root minimal` bootstraps whose process is gone.
    for e in std::fs::read_dir(store.root().join(capsule_core::capture::root::ROOTS)).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix('.').and_then(|n| n.rsplit_once('.')).map(|(_, pid)| pid.to_owned());
        if let Some(pid) = pid.filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && !std::path::Path::new("/proc").join(&pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let tmp = store.root().join("tmp");
    for e in std::fs::read_dir(&tmp).with_context(|| format!("cannot list {}", tmp.display()))?.flatten() {
        let _ = std::fs::remove_file(e.path()).or_else(|_| std::fs::remove_dir_all(e.path()));
    }
    // Launch plans of capsules, versions and sandboxes that are gone or changed.
    let plans = capsule_core::run::planner::remove_stale(store);
    let views = gc_views(store, &held);
    let (cached, cache_freed) = gc_cache(store, &live);
    if out.json {
        out.print_json(&json!({
            "removed": removed,
            "freed": freed,
            "kept": live.len(),
            "plans_removed": plans,
            "views_removed": views,
            "sandboxes_removed": sandboxes_removed,
            "sandboxes_in_use": sandboxes_in_use,
            "cache_removed": cached,
            "cache_freed": cache_freed,
            "untagged_removed": untagged_removed,
        }))?;
    } else {
        let sandboxes = if sandboxes_removed.is_empty() {
            String::new()
        } else {
            format!("; the sandboxes of removed capsules: {}", sandboxes_removed.join(", "))
        };
        let untagged = if untagged_removed.is_empty() {
            String::new()
        } else {
            format!("; untagged versions: {}", untagged_removed.join(", "))
        };
        out.info(format!(
            "removed {removed} blobs, freed {}; {plans} stale launch plans; {views} unused views; {cached} cache files ({}){sandboxes}{untagged}",
            human_bytes(freed),
            human_bytes(cache_freed)
        ));
        if !sandboxes_in_use.is_empty() {
            out.info(format!(
                "kept the sandboxes of removed capsules that running programs still use: {}",
                sandboxes_in_use.join(", ")
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every path below the store that a process this user can see holds: its open descriptors
/// (a run's programs inherit the view and the tree), working directory, root and mapped files
/// (the shim maps the view and the table of deletions). That is what "in use by a run" means
/// to gc; a run's launcher holds its sandbox's tree from before its program starts.
fn held_paths(store: &Store) -> Vec<std::path::PathBuf> {
    use std::path::PathBuf;
    let root = std::fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_owned());
    let mut out = Vec::new();
    let mut keep = |p: PathBuf| {
        if p.starts_with(&root) {
            out.push(p);
        }
    };
    for proc in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !proc.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = proc.path();
        for link in ["cwd", "root"] {
            if let Ok(p) = std::fs::read_link(dir.join(link)) {
                keep(p);
            }
        }
        for fd in std::fs::read_dir(dir.join("fd")).into_iter().flatten().flatten() {
            if let Ok(p) = std::fs::read_link(fd.path()) {
                keep(p);
            }
        }
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            for line in maps.lines() {
                if let Some(i) = line.find('/') {
                    keep(PathBuf::from(line[i..].trim_end_matches(" (deleted)")));
                }
            }
        }
    }
    out
}

/// Remove the sandboxes of capsules that no longer exist: a sandbox whose skeleton was last
/// built for a manifest whose capsule no ref names any more and that is not a kept version
/// (`reachable`: tagged or untagged), and which is not itself named like a capsule that
/// exists. The sandbox `NAME@HEX12` of runs of a version by digest goes with that version.
/// Kept: the sandbox of any existing capsule (by its name, or a `--sandbox` one last used by
/// an existing capsule), one holding a shared capsule's state,
/// one whose manifest cannot be read (nothing says whose it is), scratch sandboxes (handled
/// apart), and any that a running process holds ([`held_paths`]). Each goes by a rename
/// first, so a run starting meanwhile makes a new one rather than losing files mid-way.
/// Returns the names removed, the names kept because they are in use, and the blobs those
/// runs still need (their manifest and its files: a later gc judges the sandbox by it, and
/// the run may still open files it has not materialised yet).
fn gc_sandboxes(
    store: &Store,
    held: &[std::path::PathBuf],
    reachable: &BTreeSet<Digest>,
) -> Result<(Vec<String>, Vec<String>, BTreeSet<Digest>)> {
    let names: BTreeSet<String> = store.list_refs()?.into_iter().map(|(r, _)| r.name).collect();
    let dir = store.root().join("sandboxes");
    let root = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let (mut removed, mut in_use, mut needed) = (Vec::new(), Vec::new(), BTreeSet::new());
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || names.contains(&name) || !e.path().is_dir() || e.path().join("state").exists() {
            continue;
        }
        let stamp = std::fs::read_to_string(e.path().join("skeleton")).unwrap_or_default();
        let Ok(digest) = stamp.trim().parse::<Digest>() else { continue };
        let Ok(m) = store.load_manifest(&digest) else { continue };
        let by_digest = name.contains('@');
        if reachable.contains(&digest) || (!by_digest && names.contains(&m.name)) {
            continue;
        }
        if held.iter().any(|p| p.starts_with(root.join(&name))) {
            in_use.push(name);
            needed.insert(digest);
            needed.extend(m.blobs());
            continue;
        }
        let aside = dir.join(format!(".gc-{name}-{}", std::process::id()));
        std::fs::rename(e.path(), &aside).with_context(|| format!("cannot remove sandbox {}", e.path().display()))?;
        std::fs::remove_dir_all(&aside).with_context(|| format!("cannot remove {}", aside.display()))?;
        removed.push(name);
    }
    Ok((removed, in_use, needed))
}

/// Remove the compiled views (`views/*.view`) no launch plan names and no process holds (a
/// view is compiled again, by its digest, by the next run that needs it). Views written in
/// the last hour stay: a launcher between compiling its view and opening it holds nothing
/// yet. How many.
fn gc_views(store: &Store, held: &[std::path::PathBuf]) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let mut named: BTreeSet<Vec<u8>> = BTreeSet::new();
    for e in std::fs::read_dir(store.root().join("plans")).into_iter().flatten().flatten() {
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        let Some(records) = capsule_core::plan::records(&bytes) else { continue };
        for (t, payload) in records {
            if t == capsule_core::plan::tag::VIEW
                && let Some(p) = capsule_core::plan::c_str(payload)
                && let Some(file) = std::path::Path::new(std::ffi::OsStr::from_bytes(p)).file_name()
            {
                named.insert(file.as_bytes().to_vec());
            }
        }
    }
    let held_names: BTreeSet<Vec<u8>> = held
        .iter()
        .filter(|p| p.parent().and_then(|d| d.file_name()).is_some_and(|d| d == "views"))
        .filter_map(|p| p.file_name().map(|f| f.as_bytes().to_vec()))
        .collect();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut n = 0;
    for e in std::fs::read_dir(store.root().join("views")).into_iter().flatten().flatten() {
        let file = e.file_name().as_bytes().to_vec();
        let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < hour_ago);
        if file.ends_with(b".view")
            && old
            && !named.contains(&file)
            && !held_names.contains(&file)
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Cache files no run needs: those of content no capsule uses any more, and those no sandbox
/// tree links (one link) whose inode has not changed for an hour (ctime: made, linked or
/// unlinked; a first open links its file within moments of making it, and the mtime is the
/// capsule's). A later first open makes them again from the blob. How many, and
/// their bytes.
fn gc_cache(store: &Store, live: &BTreeSet<Digest>) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let live_hex: BTreeSet<String> = live.iter().map(Digest::to_hex).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let cutoff = i64::try_from(now).unwrap_or(i64::MAX).saturating_sub(3600);
    let (mut n, mut bytes) = (0u64, 0u64);
    let cache = store.root().join("cache");
    for dir in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let Ok(meta) = f.metadata() else { continue };
            let name = f.file_name().to_string_lossy().into_owned();
            let digest = name.split('-').next().unwrap_or_default();
            let unused = !live_hex.contains(digest);
            let unlinked = meta.nlink() == 1 && meta.ctime() < cutoff;
            if meta.is_file() && (unused || unlinked) && std::fs::remove_file(f.path()).is_ok() {
                n += 1;
                bytes += meta.len();
            }
        }
    }
    (n, bytes)
}
