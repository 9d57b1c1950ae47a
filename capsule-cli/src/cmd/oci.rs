//! `push`, `pull` and `fetch`: capsules through OCI registries (capsule_core::oci).
//!
//! `--json` fields: push → `capsule`, `reference`, `manifest_digest` (blake3), `oci_digest`
//! (sha256 of the OCI manifest), `blobs_uploaded`, `blobs_present`, `records_uploaded` (of the
//! capsule manifest and the blob map), `bytes_uploaded`; pull → `capsule`, `reference`,
//! `manifest_digest`, `oci_digest`, `lazy`, `blobs_downloaded`, `blobs_present`,
//! `blobs_deferred`, `bytes_downloaded`; fetch → `capsule`, `manifest_digest`,
//! `blobs_downloaded`, `blobs_present`, `bytes_downloaded`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::oci::{self, PullOptions, Reference};
use capsule_core::store::Store;
use serde_json::json;

use super::{any_ref, capsule_ref};
use crate::cli::args::{Fetch, Pull, Push};
use crate::cli::progress::Bars;
use crate::cli::{Output, human_bytes};

fn reference(s: &str) -> Result<Reference> {
    s.parse::<Reference>().with_context(|| format!("invalid registry reference {s:?}"))
}

/// `push NAME[:TAG]|NAME@DIGEST REF`.
pub fn push(store: &Store, out: Output, p: Push) -> Result<ExitCode> {
    let r = super::any_ref(&p.name)?;
    let r = store.resolve(&r).with_context(|| format!("cannot push capsule {r}"))?;
    let to = reference(&p.reference)?;
    let s = oci::push(store, &r, &to, p.plain_http, &Bars::new(out.bars()))
        .with_context(|| format!("cannot push capsule {r} to {to}"))?;
    if out.json {
        out.print_json(&json!({
            "capsule": s.capsule.to_string(), "reference": s.reference,
            "manifest_digest": s.manifest_digest.to_hex(), "oci_digest": s.oci_digest.to_string(),
            "blobs_uploaded": s.blobs_uploaded, "blobs_present": s.blobs_present,
            "records_uploaded": s.records_uploaded, "bytes_uploaded": s.bytes_uploaded,
        }))?;
    } else {
        out.info(format!(
            "pushed {} to {} {} ({} blobs uploaded, {} present already, {})",
            s.capsule,
            s.reference,
            s.oci_digest,
            s.blobs_uploaded,
            s.blobs_present,
            human_bytes(s.bytes_uploaded)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pull REF [NAME]`.
pub fn pull(store: &Store, out: Output, p: Pull) -> Result<ExitCode> {
    let from = reference(&p.reference)?;
    let name = p.name.as_deref().map(capsule_ref).transpose()?;
    let opts = PullOptions { plain_http: p.plain_http, lazy: p.lazy };
    let s = oci::pull(store, &from, name.as_ref(), opts, &Bars::new(out.bars()))
        .with_context(|| format!("pull of {from} refused; the store is unchanged"))?;
    super::note_replaced(&s.capsule, s.replaced.as_ref(), &s.manifest_digest, "pull");
    if out.json {
        out.print_json(&json!({
            "capsule": s.capsule.to_string(), "reference": s.reference,
            "manifest_digest": s.manifest_digest.to_hex(), "oci_digest": s.oci_digest.to_string(),
            "lazy": p.lazy, "blobs_downloaded": s.blobs_downloaded, "blobs_present": s.blobs_present,
            "blobs_deferred": s.blobs_deferred, "bytes_downloaded": s.bytes_downloaded,
            "replaced": s.replaced.map(|d| d.to_hex()),
        }))?;
    } else {
        let deferred = if s.blobs_deferred > 0 {
            format!(", {} left in the registry until used", s.blobs_deferred)
        } else {
            String::new()
        };
        out.info(format!(
            "pulled {} as {} {} ({} blobs downloaded, {} present already{deferred}, {})",
            s.reference,
            s.capsule,
            s.manifest_digest.short(),
            s.blobs_downloaded,
            s.blobs_present,
            human_bytes(s.bytes_downloaded)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `fetch NAME`.
pub fn fetch(store: &Store, out: Output, f: Fetch) -> Result<ExitCode> {
    let r = any_ref(&f.name)?;
    let s = oci::lazy::fetch(store, &r, &Bars::new(out.bars()))
        .with_context(|| format!("cannot fetch the blobs of capsule {r}; the store is unchanged"))?;
    if out.json {
        out.print_json(&json!({
            "capsule": s.capsule.to_string(), "manifest_digest": s.manifest_digest.to_hex(),
            "blobs_downloaded": s.blobs_downloaded, "blobs_present": s.blobs_present,
            "bytes_downloaded": s.bytes_downloaded,
        }))?;
    } else {
        out.info(format!(
            "fetched {} ({} blobs downloaded, {} present already, {})",
            s.capsule,
            s.blobs_downloaded,
            s.blobs_present,
            human_bytes(s.bytes_downloaded)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
