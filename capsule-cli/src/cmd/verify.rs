//! `verify [NAME] [--repair]`: re-hash blobs, check manifests, reconcile the index.
//!
//! A damaged blob is reported by digest with the capsules that use it, found through the
//! index's reverse refs. `--repair` rebuilds the index from refs and manifests, and moves
//! damaged blobs aside (into tmp/, which gc empties) so that a re-import or capture of the
//! same content can put a good copy back. Exit 1 while any capsule stays damaged. Blobs of a
//! lazily pulled capsule that are still in the registry are "not fetched", not damage: they
//! are counted (`not_fetched`) and not checked.
//!
//! Without NAME the cache is checked too: every `cache/xx/<digest>-<mode>-<mtime>` file must
//! hash to its digest and keep the mode it was materialised with. `--repair` removes a
//! damaged cache file and every sandbox's link to it (the next open materialises it again).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::Result;
use capsule_core::capture::Progress;
use capsule_core::digest::Digest;
use capsule_core::oci::lazy;
use capsule_core::store::index::Index;
use capsule_core::store::{CapsuleRef, Store, StoreError};
use serde_json::json;

use crate::cli::Output;
use crate::cli::args::Verify;
use crate::cli::progress::Bars;

/// One thing wrong.
struct Problem {
    what: String,
    digest: Option<Digest>,
    used_by: Vec<String>,
}

/// `verify`.
pub fn run(store: &Store, out: Output, v: Verify) -> Result<ExitCode> {
    let mut problems = Vec::new();
    let mut repaired = Vec::new();
    if v.repair {
        let n = Index::rebuild(store)?;
        repaired.push(format!("index rebuilt ({n} capsules)"));
    } else if let Err(e) = Index::with(store, |idx| idx.sync(store)) {
        problems.push(Problem { what: e.to_string(), digest: None, used_by: vec![] });
    }
    let refs: Vec<(CapsuleRef, Digest)> = match &v.name {
        Some(n) => {
            let r = super::any_ref(n)?;
            let d = store.get_ref(&r)?;
            vec![(r, d)]
        }
        // Untagged versions too: they are kept, and runnable by digest.
        None => {
            let mut all = store.list_refs()?;
            for u in store.list_untagged()? {
                all.push((super::any_ref(&format!("{}@{}", u.name, u.digest.to_hex()))?, u.digest));
            }
            all
        }
    };
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut names: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let mut not_fetched: BTreeSet<Digest> = BTreeSet::new();
    for (r, d) in &refs {
        names.entry(*d).or_default().push(r.to_string());
        match store.load_manifest(d) {
            Ok(m) => {
                match lazy::unfetched(store, d, &m) {
                    Ok(missing) => not_fetched.extend(missing),
                    Err(e) => problems.push(Problem {
                        what: format!("capsule {r}: {e}"),
                        digest: Some(*d),
                        used_by: vec![r.to_string()],
                    }),
                }
                blobs.extend(m.blobs());
            }
            Err(e) => problems.push(Problem {
                what: format!("capsule {r}: {e}"),
                digest: Some(*d),
                used_by: vec![r.to_string()],
            }),
        }
    }
    if v.name.is_none() {
        blobs.extend(store.list_blobs()?);
    }
    blobs.retain(|b| !not_fetched.contains(b));
    let bad = check_blobs(store, out, &blobs);
    for (digest, err) in bad {
        let used_by = users(store, &digest, &names);
        if v.repair {
            quarantine(store, &digest, &mut repaired);
        }
        problems.push(Problem { what: err.to_string(), digest: Some(digest), used_by });
    }
    let mut cache_files = 0;
    if v.name.is_none() {
        let (damaged, checked) = capsule_core::run::materialize::check_cache(store)?;
        cache_files = checked;
        for d in &damaged {
            let used_by = users(store, &d.digest, &names);
            problems.push(Problem {
                what: format!("cache file {}: {}", d.path.display(), d.why),
                digest: Some(d.digest),
                used_by,
            });
        }
        if v.repair && !damaged.is_empty() {
            let n = capsule_core::run::materialize::remove_damaged(store, &damaged)?;
            repaired.push(format!(
                "removed {} damaged cache files and their sandbox links ({n} names); the next open materialises them again",
                damaged.len()
            ));
            // Removed, so no longer damage.
            problems.retain(|p| !p.what.starts_with("cache file "));
        }
    }
    report(
        out,
        &problems,
        &repaired,
        Counts { capsules: refs.len(), blobs: blobs.len(), cache_files, not_fetched: not_fetched.len() },
    )?;
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn check_blobs(store: &Store, out: Output, blobs: &BTreeSet<Digest>) -> Vec<(Digest, StoreError)> {
    let bars = Bars::new(out.bars());
    bars.start("verifying", Some(blobs.len() as u64));
    let mut bad = Vec::new();
    for d in blobs {
        if let Err(e) = store.verify_blob(d) {
            bad.push((*d, e));
        }
        bars.inc(1);
    }
    bars.finish();
    bad
}

/// Capsules using `blob`, through the index's reverse refs (or, if the index cannot be
/// opened, nothing: the report then says so).
fn users(store: &Store, blob: &Digest, names: &BTreeMap<Digest, Vec<String>>) -> Vec<String> {
    match Index::with(store, |idx| idx.users_of(blob)) {
        Ok(ms) => {
            let mut v: Vec<String> = ms.iter().flat_map(|m| names.get(m).cloned().unwrap_or_default()).collect();
            v.sort();
            v
        }
        Err(e) => vec![format!("(unknown: {e})")],
    }
}

fn quarantine(store: &Store, digest: &Digest, repaired: &mut Vec<String>) {
    let to = store.root().join("tmp").join(format!("damaged-{digest}"));
    if std::fs::rename(store.blob_path(digest), &to).is_ok() {
        repaired.push(format!("moved damaged blob {digest} aside; re-import or re-capture to restore it"));
    }
}

/// What was checked.
struct Counts {
    capsules: usize,
    blobs: usize,
    cache_files: usize,
    not_fetched: usize,
}

fn report(out: Output, problems: &[Problem], repaired: &[String], counts: Counts) -> Result<()> {
    let Counts { capsules, blobs, cache_files, not_fetched } = counts;
    if out.json {
        let p: Vec<_> = problems
            .iter()
            .map(|p| json!({ "problem": p.what, "digest": p.digest.map(|d| d.to_hex()), "used_by": p.used_by }))
            .collect();
        return out.print_json(&json!({ "ok": problems.is_empty(), "capsules": capsules, "blobs": blobs, "cache_files": cache_files, "problems": p, "repaired": repaired, "not_fetched": not_fetched }));
    }
    for r in repaired {
        eprintln!("repaired: {r}");
    }
    for p in problems {
        let users = if p.used_by.is_empty() { "no capsule".to_owned() } else { p.used_by.join(", ") };
        eprintln!("damaged: {} (used by {users})", p.what);
    }
    if problems.is_empty() {
        out.info(format!("ok: {capsules} capsules, {blobs} blobs, {cache_files} cache files verified"));
    }
    if not_fetched > 0 {
        out.info(format!("{not_fetched} blobs of lazily pulled capsules are not fetched yet (`capsule fetch NAME`)"));
    }
    Ok(())
}
