//! `export` (optionally signed) and `import` (optionally only from trusted keys).

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::archive;
use capsule_core::oci::lazy;
use capsule_core::sign::{PublicKey, SecretKey};
use capsule_core::store::Store;
use serde_json::json;

use super::any_ref;
use crate::cli::args::{Export, Import};
use crate::cli::progress::Bars;
use crate::cli::{Output, human_bytes};

fn print(out: Output, verb: &str, s: &archive::Summary) -> Result<()> {
    if out.json {
        out.print_json(&json!({
            "capsule": s.capsule.to_string(), "digest": s.digest.to_hex(),
            "blobs_moved": s.blobs_moved, "blobs_present": s.blobs_present, "bytes": s.bytes,
            "signer": s.signer.map(|k| k.to_hex()),
            "replaced": s.replaced.map(|d| d.to_hex()),
        }))?;
    } else {
        let signed = s.signer.map(|k| format!(", signed by key {}", k.fingerprint())).unwrap_or_default();
        out.info(format!(
            "{verb} {} {} ({} blobs, {} present already, {}{signed})",
            s.capsule,
            s.digest.short(),
            s.blobs_moved,
            s.blobs_present,
            human_bytes(s.bytes)
        ));
    }
    Ok(())
}

/// `export NAME -o FILE [--sign KEY]`.
pub fn export(store: &Store, out: Output, e: Export) -> Result<ExitCode> {
    let r = any_ref(&e.name)?;
    let key = match &e.sign {
        Some(path) => {
            let loaded = SecretKey::load(path).context("cannot sign the export")?;
            if let Some(mode) = loaded.loose_mode {
                eprintln!(
                    "capsule: warning: secret key file {} has mode {mode:04o}: others can read it (chmod 600 it)",
                    path.display()
                );
            }
            Some(loaded.key)
        }
        None => None,
    };
    // A lazily pulled capsule is refused rather than fetched behind the user's back: export
    // must work offline and say what it needs.
    let (digest, manifest) = store.load(&r).with_context(|| format!("cannot export capsule {r}"))?;
    let missing = lazy::unfetched(store, &digest, &manifest)?;
    if !missing.is_empty() {
        anyhow::bail!(
            "cannot export capsule {r}: it was pulled lazily and {} of its blobs are not fetched; run `capsule fetch {r}` first",
            missing.len()
        );
    }
    let s = archive::export(store, &r, &e.output, key.as_ref(), &Bars::new(out.bars()))
        .with_context(|| format!("cannot export capsule {r} to {}", e.output.display()))?;
    print(out, "exported", &s)?;
    Ok(ExitCode::SUCCESS)
}

/// `import FILE [--trust PUBKEY]...`.
pub fn import(store: &Store, out: Output, i: Import) -> Result<ExitCode> {
    let trusted = i
        .trust
        .iter()
        .map(|t| PublicKey::from_arg(t).with_context(|| format!("invalid --trust {t}")))
        .collect::<Result<Vec<_>>>()?;
    let s = archive::import(store, &i.file, &trusted, &Bars::new(out.bars()))
        .with_context(|| format!("import of {} refused; the store is unchanged", i.file.display()))?;
    super::note_replaced(&s.capsule, s.replaced.as_ref(), &s.digest, "import");
    print(out, "imported", &s)?;
    Ok(ExitCode::SUCCESS)
}
