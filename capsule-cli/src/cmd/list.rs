//! `list`: the capsules in the store, from the index (reconciled with the refs first).

use std::process::ExitCode;

use anyhow::Result;
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
    if out.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(r, rec)| json!({ "name": r.name, "tag": r.tag, "digest": rec.digest.to_hex(), "created": rec.created, "entries": rec.entries, "size": rec.size, "blobs": rec.blobs }))
            .collect();
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
    Ok(ExitCode::SUCCESS)
}
