//! Pull: the OCI manifest, the capsule manifest and the blob map, checked; then every blob the
//! store lacks (or none, with `lazy`), each checked against its sha256 as it downloads and its
//! blake3 after decompression, staged in `tmp/`; only when all of that passed are the blobs
//! renamed into place and the capsule committed.

use std::collections::BTreeSet;
use std::io::{self, Read};

use sha2::Digest as _;

use super::client::Client;
use super::layout::{
    ARTIFACT_TYPE, BlobMap, MAX_BLOB_MAP, MAX_OCI_MANIFEST, MEDIA_BLOB, MEDIA_BLOB_MAP, MEDIA_CONFIG,
    MEDIA_OCI_MANIFEST, MapEntry, OciManifest, Sha256,
};
use super::reference::Target;
use super::{OciError, Reference, lazy};
use crate::capture::Progress;
use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::store::{BlobBatch, CapsuleRef, StagedBlob, Store, StoreError, StoreLock};

/// How to pull.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullOptions {
    /// HTTP even for a host that is not loopback.
    pub plain_http: bool,
    /// Record the manifest only; `run` fetches blobs on first open.
    pub lazy: bool,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullSummary {
    /// Where it came from.
    pub reference: String,
    /// The name it was stored under.
    pub capsule: CapsuleRef,
    /// The capsule's manifest digest (blake3).
    pub manifest_digest: Digest,
    /// The OCI manifest's digest.
    pub oci_digest: Sha256,
    /// File blobs downloaded.
    pub blobs_downloaded: u64,
    /// File blobs the store had already.
    pub blobs_present: u64,
    /// File blobs left for a lazy run or `capsule fetch`.
    pub blobs_deferred: u64,
    /// Every byte downloaded (manifests, map, blobs).
    pub bytes_downloaded: u64,
    /// The version `capsule` named before, when it named another (it stays in the store,
    /// reachable by digest).
    pub replaced: Option<Digest>,
}

/// The checked metadata of one pulled capsule.
struct Remote {
    oci_digest: Sha256,
    manifest: Manifest,
    manifest_digest: Digest,
    map: BlobMap,
    bytes: u64,
}

/// Hashes (sha256) and counts what is read through it.
struct Sha256Reader<R: Read> {
    inner: R,
    hasher: sha2::Sha256,
    count: u64,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Download blob `digest`, which must be `size` bytes (at most `limit`), into memory.
fn get_small(client: &Client, what: &'static str, digest: &Sha256, size: u64, limit: u64) -> Result<Vec<u8>, OciError> {
    let r = client.reference();
    if size > limit {
        return Err(OciError::invalid(r, what, digest, format!("its size {size} is over the {limit}-byte limit")));
    }
    let mut out = Vec::new();
    client.get_blob(digest)?.take(size + 1).read_to_end(&mut out).map_err(|source| OciError::Read {
        what: format!("{what} {digest}"),
        reference: r.to_string(),
        source,
    })?;
    if out.len() as u64 != size || Sha256::of(&out) != *digest {
        return Err(OciError::invalid(r, what, digest, "its content does not match its digest"));
    }
    Ok(out)
}

fn sha(r: &Reference, what: &'static str, s: &str) -> Result<Sha256, OciError> {
    s.parse().map_err(|()| OciError::invalid(r, what, s, "not a sha256 digest"))
}

/// Check the OCI manifest's shape; the config and map digests and sizes.
fn check_oci(r: &Reference, oci: &OciManifest, digest: &Sha256) -> Result<(), OciError> {
    let bad = |reason: &str| Err(OciError::invalid(r, "OCI manifest", digest, reason));
    if oci.schema_version != 2 || oci.media_type.as_deref().is_some_and(|m| m != MEDIA_OCI_MANIFEST) {
        return bad("not an OCI image manifest (schemaVersion 2)");
    }
    if oci.artifact_type.as_deref() != Some(ARTIFACT_TYPE) || oci.config.media_type != MEDIA_CONFIG {
        return bad("not a capsule (artifactType or config media type)");
    }
    match oci.layers.first() {
        Some(l) if l.media_type == MEDIA_BLOB_MAP => {}
        _ => return bad("its first layer is not a capsule blob map"),
    }
    if oci.layers.iter().skip(1).any(|l| l.media_type != MEDIA_BLOB) {
        return bad("a layer is not a capsule blob");
    }
    Ok(())
}

/// Check the blob map against the capsule manifest and the layers: it lists exactly the
/// manifest's blobs, each a layer of the same size.
fn check_map(r: &Reference, map: &BlobMap, m: &Manifest, oci: &OciManifest, map_sha: &Sha256) -> Result<(), OciError> {
    let bad = |reason: String| Err(OciError::invalid(r, "blob map", map_sha, reason));
    let blobs = m.blobs();
    if let Some(d) = blobs.iter().find(|d| map.get(d).is_none()) {
        return bad(format!("it lacks blob {d}, which the capsule uses"));
    }
    if map.entries.len() != blobs.len() {
        return bad("it lists blobs the capsule does not use".into());
    }
    let mut layers = BTreeSet::new();
    for l in oci.layers.iter().skip(1) {
        layers.insert((sha(r, "layer", &l.digest)?, l.size));
    }
    if let Some(e) = map.entries.iter().find(|e| !layers.contains(&(e.sha256, e.stored))) {
        return bad(format!("blob {} ({}) is not a layer of that size", e.blake3, e.sha256));
    }
    if layers.len() != map.entries.len() {
        return bad("the manifest has layers the map does not list".into());
    }
    Ok(())
}

/// Fetch and check the OCI manifest, the capsule manifest and the blob map.
fn fetch_meta(client: &Client) -> Result<Remote, OciError> {
    let r = client.reference();
    let body = client.get_manifest(r.target_str(), MAX_OCI_MANIFEST)?;
    let oci_digest = Sha256::of(&body);
    if let Target::Digest(d) = &r.target
        && *d != oci_digest.to_string()
    {
        return Err(OciError::invalid(r, "OCI manifest", d, format!("the registry sent {oci_digest}")));
    }
    let oci: OciManifest = serde_json::from_slice(&body)
        .map_err(|e| OciError::invalid(r, "OCI manifest", oci_digest, format!("not valid JSON: {e}")))?;
    check_oci(r, &oci, &oci_digest)?;
    let config_sha = sha(r, "config", &oci.config.digest)?;
    let config = get_small(client, "capsule manifest", &config_sha, oci.config.size, MAX_MANIFEST_BYTES)?;
    let manifest = Manifest::decode(&config).map_err(|source| OciError::Capsule {
        reference: r.to_string(),
        digest: config_sha.to_string(),
        source,
    })?;
    if manifest.encode() != config {
        return Err(OciError::invalid(r, "capsule manifest", config_sha, "not in canonical encoding"));
    }
    let map_desc = oci.layers.first().map(|l| (l.digest.clone(), l.size)).unwrap_or_default();
    let map_sha = sha(r, "blob map", &map_desc.0)?;
    let map_bytes = get_small(client, "blob map", &map_sha, map_desc.1, MAX_BLOB_MAP)?;
    let map = BlobMap::decode(&map_bytes).map_err(|reason| OciError::invalid(r, "blob map", map_sha, reason))?;
    check_map(r, &map, &manifest, &oci, &map_sha)?;
    let bytes = (body.len() + config.len() + map_bytes.len()) as u64;
    Ok(Remote { oci_digest, manifest_digest: Digest::of(&config), manifest, map, bytes })
}

/// Download one blob into a staged file, checked against its sha256 and its blake3.
pub(crate) fn stage_blob(store: &Store, client: &Client, e: &MapEntry) -> Result<StagedBlob, OciError> {
    let r = client.reference();
    let body = client.get_blob(&e.sha256)?;
    let mut reader = Sha256Reader { inner: body.take(e.stored + 1), hasher: sha2::Sha256::new(), count: 0 };
    let staged = store.stage_compressed(&mut reader, &e.blake3).map_err(|source| match source {
        StoreError::Io { .. } => OciError::Store(source),
        source => {
            OciError::BadBlob { reference: r.to_string(), sha256: e.sha256.to_string(), blake3: e.blake3, source }
        }
    })?;
    let actual = Sha256(reader.hasher.finalize().into());
    if reader.count != e.stored || actual != e.sha256 {
        return Err(OciError::invalid(
            r,
            "blob",
            e.sha256,
            format!("the registry sent {} bytes hashing to {actual}, expected {}", reader.count, e.stored),
        ));
    }
    if staged.size != e.size {
        return Err(OciError::invalid(r, "blob", e.sha256, "its uncompressed size is not the one the map gives"));
    }
    Ok(staged)
}

/// Pull `reference` into `store`, as `name` or the capsule's own `name:tag`.
pub fn pull(
    store: &Store,
    reference: &Reference,
    name: Option<&CapsuleRef>,
    opts: PullOptions,
    progress: &dyn Progress,
) -> Result<PullSummary, OciError> {
    let _op = super::deadline::Operation::start();
    let client = Client::new(reference, opts.plain_http, false);
    let remote = fetch_meta(&client)?;
    let capsule = name.cloned().unwrap_or_else(|| CapsuleRef::new(&remote.manifest.name, &remote.manifest.tag));
    let _lock = StoreLock::shared(store)?;
    let wanted: Vec<MapEntry> = remote.map.entries.iter().filter(|e| !store.has_blob(&e.blake3)).copied().collect();
    let present = (remote.map.entries.len() - wanted.len()) as u64;
    let mut batch = BlobBatch::new(store);
    let mut bytes = remote.bytes;
    if !opts.lazy {
        progress.start("pulling", Some(wanted.iter().map(|e| e.stored).sum()));
        for e in &wanted {
            batch.push(stage_blob(store, &client, e)?);
            bytes += e.stored;
            progress.inc(e.stored);
        }
    }
    // Everything checked: now, and only now, change the store.
    let downloaded = batch.commit()? as u64;
    let replaced = if opts.lazy && !wanted.is_empty() {
        let rec = lazy::RemoteRecord { reference: reference.to_string(), plain_http: opts.plain_http, map: remote.map };
        lazy::write_record(store, &remote.manifest_digest, &rec)?;
        let covered = |d: &Digest| rec.map.get(d).is_some();
        store.commit_capsule_keeping(&remote.manifest, &capsule, &covered)?.1
    } else {
        let replaced = store.commit_capsule_keeping(&remote.manifest, &capsule, &|_| false)?.1;
        lazy::remove_record(store, &remote.manifest_digest)?;
        replaced
    };
    progress.finish();
    Ok(PullSummary {
        reference: reference.to_string(),
        capsule,
        manifest_digest: remote.manifest_digest,
        oci_digest: remote.oci_digest,
        blobs_downloaded: downloaded,
        blobs_present: present,
        blobs_deferred: if opts.lazy { wanted.len() as u64 } else { 0 },
        bytes_downloaded: bytes,
        replaced,
    })
}
