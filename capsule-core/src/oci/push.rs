//! Push: a capsule's blobs, blob map and manifest to a registry, uploading only what the
//! registry lacks (a HEAD per blob first). Order: file blobs, the blob map, the config (the
//! capsule manifest), and last the OCI manifest under the tag, so a registry never holds a
//! manifest whose blobs it lacks.

use std::fs::File;
use std::io::{self, BufReader, Read};

use sha2::Digest as _;

use super::client::Client;
use super::layout::{
    ANNOTATION_CAPSULE, ANNOTATION_DIGEST, ARTIFACT_TYPE, BlobMap, Descriptor, MAX_OCI_MANIFEST, MEDIA_BLOB,
    MEDIA_BLOB_MAP, MEDIA_CONFIG, MEDIA_OCI_MANIFEST, MapEntry, OciManifest, Sha256,
};
use super::reference::Target;
use super::{OciError, Reference, lazy};
use crate::capture::Progress;
use crate::digest::Digest;
use crate::manifest::{EntryKind, MAX_MANIFEST_BYTES};
use crate::store::{CapsuleRef, Store, StoreError};

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushSummary {
    /// Where it went.
    pub reference: String,
    /// The capsule.
    pub capsule: CapsuleRef,
    /// Its manifest digest (blake3).
    pub manifest_digest: Digest,
    /// The OCI manifest's digest.
    pub oci_digest: Sha256,
    /// File blobs uploaded.
    pub blobs_uploaded: u64,
    /// File blobs the registry had already.
    pub blobs_present: u64,
    /// Of the capsule manifest and the blob map, how many were uploaded (0 to 2).
    pub records_uploaded: u64,
    /// Every byte uploaded: blobs, records and the OCI manifest.
    pub bytes_uploaded: u64,
}

/// Everything a push sends, computed from the store.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The capsule.
    pub capsule: CapsuleRef,
    /// Its manifest digest.
    pub manifest_digest: Digest,
    /// The encoded capsule manifest (the config blob).
    pub config: Vec<u8>,
    /// The blob map.
    pub map: BlobMap,
    /// The blob map's encoding (the first layer).
    pub map_bytes: Vec<u8>,
    /// The OCI manifest's JSON.
    pub oci: Vec<u8>,
}

/// sha256 and length of blob `d`'s frame as stored.
fn frame_sha256(store: &Store, d: &Digest) -> Result<(Sha256, u64), StoreError> {
    let path = store.blob_path(d);
    let f = File::open(&path).map_err(|_| StoreError::MissingBlob { digest: *d })?;
    let mut r = BufReader::with_capacity(256 << 10, f);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).map_err(StoreError::io("failed to read", &path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((Sha256(h.finalize().into()), n))
}

/// Compute what pushing capsule `r` sends.
pub fn plan(store: &Store, r: &CapsuleRef, progress: &dyn Progress) -> Result<Plan, OciError> {
    let (manifest_digest, manifest) = store.load(r)?;
    let missing = lazy::unfetched(store, &manifest_digest, &manifest)?;
    if !missing.is_empty() {
        return Err(OciError::NotFetched { capsule: r.to_string(), missing: missing.len() });
    }
    let config = store.read_blob(&manifest_digest, MAX_MANIFEST_BYTES, "manifest")?;
    let sizes: std::collections::BTreeMap<Digest, u64> = manifest
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { digest, size } => Some((digest, size)),
            _ => None,
        })
        .collect();
    progress.start("hashing", Some(sizes.len() as u64));
    let mut entries = Vec::with_capacity(sizes.len());
    for (d, size) in &sizes {
        let (sha256, stored) = frame_sha256(store, d)?;
        entries.push(MapEntry { blake3: *d, sha256, stored, size: *size });
        progress.inc(1);
    }
    progress.finish();
    let map = BlobMap { entries };
    let map_bytes = map.encode();
    let desc = |media: &str, digest: Sha256, size: u64| Descriptor {
        media_type: media.to_owned(),
        digest: digest.to_string(),
        size,
    };
    let mut layers = vec![desc(MEDIA_BLOB_MAP, Sha256::of(&map_bytes), map_bytes.len() as u64)];
    layers.extend(map.entries.iter().map(|e| desc(MEDIA_BLOB, e.sha256, e.stored)));
    let oci = OciManifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
        artifact_type: Some(ARTIFACT_TYPE.to_owned()),
        config: desc(MEDIA_CONFIG, Sha256::of(&config), config.len() as u64),
        layers,
        annotations: [
            // The capsule's NAME:TAG; for a version pushed by digest, the one it was made as
            // (the artifact is then the same as when pushed by that tag).
            (
                ANNOTATION_CAPSULE.to_owned(),
                match r.digest {
                    None => r.to_string(),
                    Some(_) => CapsuleRef::new(&manifest.name, &manifest.tag).to_string(),
                },
            ),
            (ANNOTATION_DIGEST.to_owned(), manifest_digest.to_hex()),
        ]
        .into(),
    };
    let oci = serde_json::to_vec(&oci).map_err(|e| OciError::invalid_plan(r, e))?;
    if oci.len() as u64 > MAX_OCI_MANIFEST {
        return Err(OciError::invalid_plan(
            r,
            format!(
                "its OCI manifest would be {} bytes ({} blobs), over the registry limit of {MAX_OCI_MANIFEST}",
                oci.len(),
                map.entries.len()
            ),
        ));
    }
    Ok(Plan { capsule: r.clone(), manifest_digest, config, map, map_bytes, oci })
}

impl OciError {
    fn invalid_plan(r: &CapsuleRef, reason: impl ToString) -> OciError {
        OciError::Invalid {
            reference: r.to_string(),
            what: "capsule",
            digest: String::new(),
            reason: reason.to_string(),
        }
    }
}

/// Upload `bytes` as blob `digest` unless the registry has it; whether it was uploaded.
fn put_small(client: &Client, bytes: &[u8]) -> Result<bool, OciError> {
    let digest = Sha256::of(bytes);
    if client.has_blob(&digest)? {
        return Ok(false);
    }
    let owned = bytes.to_vec();
    let mut open = || Ok(Box::new(io::Cursor::new(owned.clone())) as Box<dyn Read + Send>);
    client.upload_blob(&digest, bytes.len() as u64, &mut open)?;
    Ok(true)
}

/// Push capsule `r` to `reference` (which must name a tag).
pub fn push(
    store: &Store,
    r: &CapsuleRef,
    reference: &Reference,
    plain_http: bool,
    progress: &dyn Progress,
) -> Result<PushSummary, OciError> {
    let Target::Tag(tag) = &reference.target else {
        return Err(OciError::PushByDigest { reference: reference.to_string() });
    };
    let plan = plan(store, r, progress)?;
    let _op = super::deadline::Operation::start();
    let client = Client::new(reference, plain_http, true);
    let total: u64 = plan.map.entries.iter().map(|e| e.stored).sum();
    progress.start("pushing", Some(total));
    let (mut uploaded, mut present, mut bytes) = (0u64, 0u64, 0u64);
    for e in &plan.map.entries {
        if client.has_blob(&e.sha256)? {
            present += 1;
        } else {
            let path = store.blob_path(&e.blake3);
            let mut open = || File::open(&path).map(|f| Box::new(BufReader::new(f)) as Box<dyn Read + Send>);
            client.upload_blob(&e.sha256, e.stored, &mut open)?;
            tracing::debug!(blob = %e.blake3, oci = %e.sha256, "uploaded");
            uploaded += 1;
            bytes += e.stored;
        }
        progress.inc(e.stored);
    }
    let mut records = 0;
    for rec in [&plan.map_bytes, &plan.config] {
        if put_small(&client, rec)? {
            records += 1;
            bytes += rec.len() as u64;
        }
    }
    client.put_manifest(tag, &plan.oci)?;
    bytes += plan.oci.len() as u64;
    progress.finish();
    Ok(PushSummary {
        reference: reference.to_string(),
        capsule: plan.capsule,
        manifest_digest: plan.manifest_digest,
        oci_digest: Sha256::of(&plan.oci),
        blobs_uploaded: uploaded,
        blobs_present: present,
        records_uploaded: records,
        bytes_uploaded: bytes,
    })
}
