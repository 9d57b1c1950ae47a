//! `df`: what the store's capsules take on disk ([`capsule_core::store::Usage`]).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::store::{Store, Usage};
use serde_json::{Value, json};

use crate::cli::{Output, human_bytes};

/// `df`.
pub fn run(store: &Store, out: Output) -> Result<ExitCode> {
    let u = store.usage().with_context(|| format!("cannot measure the store at {}", store.root().display()))?;
    if out.json {
        out.print_json(&to_json(&u))?;
    } else {
        print_text(&u)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON document; its field names are documented in docs/format.md.
fn to_json(u: &Usage) -> Value {
    let capsules: Vec<Value> = u
        .capsules
        .iter()
        .map(|c| {
            json!({
                "name": c.capsule.name, "tag": c.capsule.tag, "digest": c.digest.to_hex(),
                "logical": c.logical, "blobs": c.blobs, "stored": c.stored,
                "shared_blobs": c.shared_blobs, "shared_stored": c.shared_stored,
                "not_fetched_blobs": c.not_fetched_blobs, "not_fetched": c.not_fetched,
            })
        })
        .collect();
    let roots: Vec<Value> = u
        .roots
        .iter()
        .map(|r| {
            json!({
                "release": r.release, "digest": r.digest.map(|d| d.to_hex()), "dir_bytes": r.dir_bytes,
                "blobs": r.blobs, "stored": r.stored,
            })
        })
        .collect();
    json!({
        "capsules": capsules,
        "roots": roots,
        "total": {
            "logical": u.logical, "blobs": u.blobs, "stored": u.stored,
            "not_fetched_blobs": u.not_fetched_blobs, "not_fetched": u.not_fetched,
            "root_only_blobs": u.root_only_blobs, "root_only": u.root_only,
            "unused_blobs": u.unused_blobs, "unused": u.unused,
            "on_disk": u.on_disk(), "dedup_ratio": u.dedup_ratio(),
        },
    })
}

fn print_text(u: &Usage) -> Result<()> {
    let mut w = std::io::stdout().lock();
    writeln!(
        w,
        "{:<32} {:>10} {:>10} {:>6} {:>16} {:>12}",
        "CAPSULE", "LOGICAL", "STORED", "BLOBS", "SHARED", "NOT FETCHED"
    )?;
    for c in &u.capsules {
        let shared = format!("{} ({})", c.shared_blobs, human_bytes(c.shared_stored));
        let missing = if c.not_fetched_blobs == 0 { "-".to_owned() } else { human_bytes(c.not_fetched) };
        writeln!(
            w,
            "{:<32} {:>10} {:>10} {:>6} {:>16} {:>12}",
            c.capsule.to_string(),
            human_bytes(c.logical),
            human_bytes(c.stored),
            c.blobs,
            shared,
            missing
        )?;
    }
    let ratio = u.dedup_ratio().map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".to_owned());
    writeln!(
        w,
        "total: {} logical in {} capsules, {} stored in {} blobs (each once), dedup ratio {ratio}",
        human_bytes(u.logical),
        u.capsules.len(),
        human_bytes(u.stored),
        u.blobs
    )?;
    for r in &u.roots {
        writeln!(
            w,
            "minimal root {}: {} on disk in roots/{}, its capsule {} in {} blobs (`capture install --root minimal`; gc keeps it)",
            r.release,
            human_bytes(r.dir_bytes),
            r.release,
            human_bytes(r.stored),
            r.blobs
        )?;
    }
    if u.not_fetched_blobs > 0 {
        writeln!(w, "not fetched: {} blobs, {} logical", u.not_fetched_blobs, human_bytes(u.not_fetched))?;
    }
    if u.unused_blobs > 0 {
        writeln!(
            w,
            "unused: {} blobs, {} that no capsule uses (`capsule gc` removes them, but for a pending snapshot)",
            u.unused_blobs,
            human_bytes(u.unused)
        )?;
    }
    Ok(())
}
