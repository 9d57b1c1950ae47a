//! `list`: the capsules in the store, from the index (reconciled with the refs first), then
//! the untagged versions (tag `<none>`; run, inspect or export them as `NAME@DIGEST`).

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::store::Store;
use capsule_core::store::index::Index;
use serde_json::json;

use crate::cli::{Output, human_bytes};

/// `list`.
pub fn run(store: &Store, out: Output) -> Result<ExitCode> {
    let rows = Index::with(store, |idx| {
        idx.sync(store)?;
        idx.capsules()
    })?;
    // Untagged versions are few: their manifests are read here, not indexed.
    let mut untagged = Vec::new();
    for u in store.list_untagged()? {
        let m = store
            .load_manifest(&u.digest)
            .with_context(|| format!("cannot read untagged capsule {}@{}", u.name, u.digest.short()))?;
        untagged.push((u, m));
    }
    if out.json {
        let mut v: Vec<_> = rows
            .iter()
            .map(|(r, rec)| json!({ "name": r.name, "tag": r.tag, "digest": rec.digest.to_hex(), "created": rec.created, "entries": rec.entries, "size": rec.size, "blobs": rec.blobs }))
            .collect();
        v.extend(untagged.iter().map(|(u, m)| json!({ "name": u.name, "tag": null, "former_tag": u.former_tag, "digest": u.digest.to_hex(), "created": m.created, "entries": m.entries.len(), "size": m.size(), "blobs": m.blobs().len() })));
        out.print_json(&json!(v))?;
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write;
    let mut w = std::io::stdout().lock();
    writeln!(w, "{:<24} {:<12} {:<12} {:>8} {:>10}", "NAME", "TAG", "DIGEST", "ENTRIES", "SIZE")?;
    for (r, rec) in rows {
        writeln!(
            w,
            "{:<24} {:<12} {:<12} {:>8} {:>10}",
            r.name,
            r.tag,
            rec.digest.short(),
            rec.entries,
            human_bytes(rec.size)
        )?;
    }
    for (u, m) in untagged {
        writeln!(
            w,
            "{:<24} {:<12} {:<12} {:>8} {:>10}",
            u.name,
            "<none>",
            u.digest.short(),
            m.entries.len(),
            human_bytes(m.size())
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
