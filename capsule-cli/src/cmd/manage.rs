//! `rm` and `gc`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::digest::Digest;
use capsule_core::oci::lazy;
use capsule_core::store::index::Index;
use capsule_core::store::{Store, StoreLock};
use serde_json::json;

use super::capsule_ref;
use crate::cli::{Output, human_bytes};

/// `rm NAME`: drop the ref (the truth), then the index record.
pub fn rm(store: &Store, out: Output, name: &str, force: bool) -> Result<ExitCode> {
    let r = capsule_ref(name)?;
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
/// commit), remove every blob that no capsule, and no pending snapshot, uses; empty tmp/;
/// remove the scratch sandboxes of captures whose process died; remove the remote records
/// (lazy pulls) of capsules no ref names any more (those of live capsules stay); and remove
/// the cache files no run needs ([`gc_cache`]).
pub fn gc(store: &Store, out: Output) -> Result<ExitCode> {
    let _lock = StoreLock::exclusive(store)?;
    let mut live: BTreeSet<Digest> = BTreeSet::new();
    for (r, digest) in store.list_refs()? {
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
    let tmp = store.root().join("tmp");
    for e in std::fs::read_dir(&tmp).with_context(|| format!("cannot list {}", tmp.display()))?.flatten() {
        let _ = std::fs::remove_file(e.path()).or_else(|_| std::fs::remove_dir_all(e.path()));
    }
    // Launch plans of capsules, versions and sandboxes that are gone or changed.
    let plans = capsule_core::run::planner::remove_stale(store);
    let (cached, cache_freed) = gc_cache(store, &live);
    if out.json {
        out.print_json(&json!({
            "removed": removed,
            "freed": freed,
            "kept": live.len(),
            "plans_removed": plans,
            "cache_removed": cached,
            "cache_freed": cache_freed,
        }))?;
    } else {
        out.info(format!(
            "removed {removed} blobs, freed {}; {plans} stale launch plans; {cached} cache files ({})",
            human_bytes(freed),
            human_bytes(cache_freed)
        ));
    }
    Ok(ExitCode::SUCCESS)
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
