//! Lazy pull: a capsule whose blobs stay in the registry until first use.
//!
//! `pull --lazy` commits the capsule without its file blobs and writes a remote record,
//! `remotes/<manifest digest>`: where the blobs are (the reference, plain HTTP or not) and the
//! blob map (blake3 → sha256, sizes). [`fetch_missing`] is what `run` calls, through
//! `run::materialize::ensure_cache`, when a blob is not in the store: it finds a record that
//! covers the blob, downloads it with the same checks as pull (sha256 while reading, blake3
//! after decompression), and renames it into `blobs/` (temp → fsync → rename), so two processes
//! opening the same file first may both download it and the store stays consistent. The run
//! path opens no database: records are plain files, cached per process. [`fetch`] completes a
//! capsule for offline use and then drops its record. `gc` keeps the records of live capsules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::client::Client;
use super::layout::BlobMap;
use super::{OciError, Reference, pull};
use crate::capture::Progress;
use crate::codec;
use crate::digest::Digest;
use crate::manifest::{MAX_ENTRIES, Manifest};
use crate::store::{BlobBatch, CapsuleRef, Store, StoreError, StoreLock};

const MAGIC: &[u8; 8] = b"CAPSRMTE";
const VERSION: u16 = 1;
const MAX_RECORD: u64 = MAX_ENTRIES as u64 * 80 + 64 * 1024;

/// Where a lazily pulled capsule's blobs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    /// The reference it was pulled from.
    pub reference: String,
    /// Whether HTTP was forced for a host that is not loopback.
    pub plain_http: bool,
    /// Every blob of the capsule (as pushed).
    pub map: BlobMap,
}

fn dir(store: &Store) -> PathBuf {
    store.root().join("remotes")
}

fn record_path(store: &Store, manifest: &Digest) -> PathBuf {
    dir(store).join(manifest.to_hex())
}

/// Write the record for capsule manifest `manifest`, atomically and durably.
pub fn write_record(store: &Store, manifest: &Digest, rec: &RemoteRecord) -> Result<(), OciError> {
    let d = dir(store);
    crate::store::private_dir(&d).map_err(StoreError::io("failed to create", &d))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".remote-")
        .tempfile_in(&d)
        .map_err(StoreError::io("failed to create a temporary file in", &d))?;
    tmp.write_all(&codec::envelope(MAGIC, VERSION, rec)).map_err(StoreError::io("failed to write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(StoreError::io("failed to sync", tmp.path()))?;
    let path = record_path(store, manifest);
    tmp.persist(&path).map_err(|e| StoreError::Io { action: "failed to write", path, source: e.error })?;
    File::open(&d).and_then(|f| f.sync_all()).map_err(StoreError::io("failed to sync", &d))?;
    Ok(())
}

/// The record for `manifest`, if it was pulled lazily.
pub fn read_record(store: &Store, manifest: &Digest) -> Result<Option<RemoteRecord>, OciError> {
    read_path(&record_path(store, manifest))
}

fn read_path(path: &Path) -> Result<Option<RemoteRecord>, OciError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Io { action: "failed to read", path: path.to_owned(), source: e }.into()),
    };
    let (_, rec): (u16, RemoteRecord) = codec::open_envelope("remote record", MAGIC, VERSION, &bytes, MAX_RECORD)
        .map_err(|e| OciError::Invalid {
            reference: path.display().to_string(),
            what: "remote record",
            digest: String::new(),
            reason: e.to_string(),
        })?;
    Ok(Some(rec))
}

/// Drop the record for `manifest` (no error if there is none).
pub fn remove_record(store: &Store, manifest: &Digest) -> Result<(), OciError> {
    let path = record_path(store, manifest);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io { action: "failed to remove", path, source: e }.into()),
    }
}

/// The manifest digests that have records (for `gc`).
pub fn records(store: &Store) -> Vec<Digest> {
    let Ok(rd) = fs::read_dir(dir(store)) else { return Vec::new() };
    rd.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect()
}

/// Blobs of `manifest` that are not in the store but a remote record covers: "not fetched".
pub fn unfetched(store: &Store, digest: &Digest, manifest: &Manifest) -> Result<BTreeSet<Digest>, OciError> {
    let Some(rec) = read_record(store, digest)? else { return Ok(BTreeSet::new()) };
    Ok(manifest.blobs().into_iter().filter(|d| !store.has_blob(d) && rec.map.get(d).is_some()).collect())
}

/// A record and its client, loaded once per process.
struct Loaded {
    record: RemoteRecord,
    client: Client,
}

/// Records loaded by this process, by path: a record is immutable (named by the digest of the
/// manifest it serves), so caching it is safe.
static LOADED: Mutex<BTreeMap<PathBuf, Arc<Loaded>>> = Mutex::new(BTreeMap::new());

fn load(path: &Path) -> Result<Option<Arc<Loaded>>, OciError> {
    if let Some(l) = LOADED.lock().ok().and_then(|m| m.get(path).cloned()) {
        return Ok(Some(l));
    }
    let Some(record) = read_path(path)? else { return Ok(None) };
    let reference: Reference = record.reference.parse()?;
    let loaded = Arc::new(Loaded { client: Client::new(&reference, record.plain_http, false), record });
    if let Ok(mut m) = LOADED.lock() {
        m.insert(path.to_owned(), Arc::clone(&loaded));
    }
    Ok(Some(loaded))
}

/// Bring blob `digest` into the store from the remote that a record says has it. The caller
/// found it missing. `MissingBlob` when no record covers it.
pub fn fetch_missing(store: &Store, digest: &Digest) -> Result<(), OciError> {
    let _op = super::deadline::Operation::start();
    let Ok(rd) = fs::read_dir(dir(store)) else {
        return Err(StoreError::MissingBlob { digest: *digest }.into());
    };
    for e in rd.flatten() {
        if e.file_name().to_str().is_none_or(|s| s.parse::<Digest>().is_err()) {
            continue;
        }
        let Some(loaded) = load(&e.path())? else { continue };
        let Some(entry) = loaded.record.map.get(digest) else { continue };
        // gc must not empty tmp/ under the download, nor run between it and the rename.
        let _lock = StoreLock::shared(store)?;
        if store.has_blob(digest) {
            return Ok(()); // another process was quicker
        }
        let staged = pull::stage_blob(store, &loaded.client, entry)?;
        store.commit_blob(staged)?;
        tracing::debug!(blob = %digest, oci = %entry.sha256, reference = %loaded.record.reference, "fetched lazily");
        return Ok(());
    }
    Err(StoreError::MissingBlob { digest: *digest }.into())
}

/// What `capsule fetch` did.
#[derive(Debug, Clone)]
pub struct FetchSummary {
    /// The capsule.
    pub capsule: CapsuleRef,
    /// Its manifest digest.
    pub manifest_digest: Digest,
    /// Blobs downloaded now.
    pub blobs_downloaded: u64,
    /// Blobs that were there already.
    pub blobs_present: u64,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
}

/// Download every blob of capsule `r` that is not in the store yet, then drop its record: the
/// capsule is then complete and works offline. Nothing is committed unless all arrive.
pub fn fetch(store: &Store, r: &CapsuleRef, progress: &dyn Progress) -> Result<FetchSummary, OciError> {
    let (digest, manifest) = store.load(r)?;
    let blobs = manifest.blobs();
    let Some(rec) = read_record(store, &digest)? else {
        return Ok(FetchSummary {
            capsule: r.clone(),
            manifest_digest: digest,
            blobs_downloaded: 0,
            blobs_present: blobs.len() as u64,
            bytes_downloaded: 0,
        });
    };
    let reference: Reference = rec.reference.parse()?;
    let _op = super::deadline::Operation::start();
    let client = Client::new(&reference, rec.plain_http, false);
    let _lock = StoreLock::shared(store)?;
    let wanted: Vec<_> = blobs.iter().filter(|d| !store.has_blob(d)).collect();
    let entries = wanted
        .iter()
        .map(|d| rec.map.get(d).ok_or(StoreError::MissingBlob { digest: **d }))
        .collect::<Result<Vec<_>, _>>()?;
    progress.start("fetching", Some(entries.iter().map(|e| e.stored).sum()));
    let mut batch = BlobBatch::new(store);
    let mut bytes = 0;
    for e in entries {
        batch.push(pull::stage_blob(store, &client, e)?);
        bytes += e.stored;
        progress.inc(e.stored);
    }
    // Another process may have fetched some meanwhile: the batch counts what is new.
    let downloaded = batch.commit()? as u64;
    remove_record(store, &digest)?;
    progress.finish();
    Ok(FetchSummary {
        capsule: r.clone(),
        manifest_digest: digest,
        blobs_downloaded: downloaded,
        blobs_present: blobs.len() as u64 - downloaded,
        bytes_downloaded: bytes,
    })
}
