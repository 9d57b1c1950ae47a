//! `capture snapshot begin|end` and `capture elf`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::capture::{elf_capture, snapshot};
use capsule_core::store::Store;
use serde_json::json;

use super::capsule_ref;
use crate::cli::Output;
use crate::cli::args::{CaptureElf, Snapshot};
use crate::cli::progress::Bars;

/// `capture snapshot begin|end`.
pub fn snapshot(store: &Store, out: Output, s: Snapshot) -> Result<ExitCode> {
    let bars = Bars::new(out.bars());
    match s {
        Snapshot::Begin(b) => {
            let digest =
                snapshot::begin(store, &b.base, &b.roots, &b.exclude, &bars).context("snapshot begin failed")?;
            let files = snapshot::pending(store).map(|(_, s)| s.entries.len()).unwrap_or(0);
            if out.json {
                out.print_json(&json!({ "snapshot": digest.to_hex(), "files": files, "roots": b.roots }))?;
            } else {
                out.info(format!(
                    "snapshot {} taken of {} ({files} entries); install, then run `capsule capture snapshot end NAME`",
                    digest.short(),
                    b.roots.join(",")
                ));
            }
        }
        Snapshot::End(e) => {
            let r = capsule_ref(&e.name)?;
            let digest = snapshot::end(store, &r.name, &r.tag, e.entry.as_deref(), &bars)
                .with_context(|| format!("snapshot end for capsule {r} failed"))?;
            report_capsule(store, out, &r, &digest)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `capture elf NAME PATH...`.
pub fn elf(store: &Store, out: Output, e: CaptureElf) -> Result<ExitCode> {
    let r = capsule_ref(&e.name)?;
    let bars = Bars::new(out.bars());
    let digest = elf_capture(store, &r.name, &r.tag, &e.paths, &bars)
        .with_context(|| format!("capture elf for capsule {r} failed"))?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

fn report_capsule(
    store: &Store,
    out: Output,
    r: &capsule_core::store::CapsuleRef,
    digest: &capsule_core::digest::Digest,
) -> Result<()> {
    let m = store.load_manifest(digest)?;
    if out.json {
        out.print_json(&json!({ "capsule": r.to_string(), "digest": digest.to_hex(), "entries": m.entries.len(), "deletions": m.deletions.len(), "size": m.size() }))?;
    } else if !out.quiet {
        println!(
            "{r} {} ({} entries, {} deletions, {})",
            digest.short(),
            m.entries.len(),
            m.deletions.len(),
            crate::cli::human_bytes(m.size())
        );
    }
    Ok(())
}
