//! Export and import: one self-contained file holding a capsule's manifest and its blobs,
//! optionally signed.
//!
//! ```text
//! header  "CAPSULEX" · u16 version (2; 1 is still read) · 6 zero bytes     16 bytes
//! record  u8 tag · u64 length (LE) · payload
//!   1 MANIFEST   zstd frame of the encoded manifest            (first, exactly once)
//!   2 BLOB       32-byte digest · zstd frame of the content    (one per blob, sorted)
//!   3 SIGNATURE  32-byte ed25519 public key · 64-byte signature (v2 only, optional, last
//!                before END): see [`crate::sign`] for what is signed
//!   255 END      blake3 of every byte before this record · u64 record count
//! ```
//! Blob frames are copied from the store as they are (no recompression), and checked on import
//! by decompressing and hashing. Import trusts nothing: every length is checked against a limit
//! before anything is read or allocated, the manifest is validated (no `..`, no escaping
//! symlinks), every blob must hash to its digest and be one the manifest uses, a signature must
//! verify for the manifest's digest (and come from a trusted key, when the caller names any),
//! and the END checksum must match. Blobs are staged in `tmp/` and nothing is moved into the
//! store until all of that passed, so a truncated, damaged or untrusted file leaves the store
//! exactly as it was.

mod reader;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub use reader::import;

use crate::capture::Progress;
use crate::digest::{Digest, HashingWriter};
use crate::manifest::{MAX_MANIFEST_BYTES, ManifestError};
use crate::sign::{PublicKey, SIGNATURE_LEN, SecretKey};
use crate::store::{CapsuleRef, Store, StoreError};

const MAGIC: &[u8; 8] = b"CAPSULEX";
/// The version written. Version 1 is version 2 without the SIGNATURE record.
const VERSION: u16 = 2;
const TAG_MANIFEST: u8 = 1;
const TAG_BLOB: u8 = 2;
const TAG_SIGNATURE: u8 = 3;
/// Public key and signature.
const SIGNATURE_RECORD: u64 = 32 + SIGNATURE_LEN as u64;
const TAG_END: u8 = 255;
/// Largest compressed manifest record.
const MAX_MANIFEST_RECORD: u64 = MAX_MANIFEST_BYTES;
/// Largest blob record (a 64 GiB file compresses to at most about this).
const MAX_BLOB_RECORD: u64 = 64 << 30;

/// Errors from export and import. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing the export file failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file ends early.
    #[error("export file {} is truncated: it ends inside the {what} at byte {offset}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: &'static str,
        /// Where.
        offset: u64,
    },
    /// Not an export file.
    #[error("{} is not a capsule export file (bad magic)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// Written by a newer capsule.
    #[error("export file {} has format version {found}; this capsule reads versions 1 to {VERSION}", path.display())]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u16,
    },
    /// A record of a kind this version does not know, or out of place.
    #[error("export file {} is corrupt: unexpected record tag {tag} at byte {offset}", path.display())]
    UnexpectedRecord {
        /// The file.
        path: PathBuf,
        /// The tag.
        tag: u8,
        /// Where.
        offset: u64,
    },
    /// A record longer than its kind allows.
    #[error("export file {} has an oversize {what} record at byte {offset}: {len} bytes, limit {limit}", path.display())]
    Oversize {
        /// The file.
        path: PathBuf,
        /// The record kind.
        what: &'static str,
        /// Its claimed length.
        len: u64,
        /// The limit.
        limit: u64,
        /// Where.
        offset: u64,
    },
    /// The manifest is not acceptable.
    #[error("export file {} holds an invalid manifest", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A blob the manifest does not use, or a second copy of one.
    #[error("export file {} is corrupt: blob {digest} is not used by its manifest or appears twice", path.display())]
    UnexpectedBlob {
        /// The file.
        path: PathBuf,
        /// The blob.
        digest: Digest,
    },
    /// A blob that does not decompress or hash to its digest.
    #[error("export file {} is corrupt: blob {digest} is damaged", path.display())]
    BadBlob {
        /// The file.
        path: PathBuf,
        /// The blob.
        digest: Digest,
        /// What the store found.
        #[source]
        source: StoreError,
    },
    /// A blob the manifest uses is neither in the file nor in the store.
    #[error("export file {} lacks blob {digest}, which its manifest uses", path.display())]
    MissingBlob {
        /// The file.
        path: PathBuf,
        /// The blob.
        digest: Digest,
    },
    /// The END checksum does not match.
    #[error("export file {} is corrupt: its checksum does not match its content", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
    },
    /// A SIGNATURE record whose length is not that of a key and a signature.
    #[error("export file {} is corrupt: the signature record at byte {offset} is {len} bytes, not {SIGNATURE_RECORD}", path.display())]
    SignatureLength {
        /// The file.
        path: PathBuf,
        /// Its claimed length.
        len: u64,
        /// Where.
        offset: u64,
    },
    /// A SIGNATURE record whose 32 key bytes are not an ed25519 public key.
    #[error("export file {} is corrupt: the signature record at byte {offset} holds an invalid public key", path.display())]
    SignatureKey {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
    },
    /// A signature that does not verify: the file was changed after signing, or forged.
    #[error("export file {} is refused: its signature by key {key} does not verify for manifest {digest}", path.display())]
    BadSignature {
        /// The file.
        path: PathBuf,
        /// The key the record names.
        key: PublicKey,
        /// The manifest digest the signature should cover.
        digest: Digest,
    },
    /// Trusted keys were given and the file carries no signature.
    #[error("export file {} is not signed; only files signed by a trusted key are accepted (trusted: {})", path.display(), key_list(trusted))]
    NotSigned {
        /// The file.
        path: PathBuf,
        /// The keys the caller trusts.
        trusted: Vec<PublicKey>,
    },
    /// A valid signature by a key the caller does not trust.
    #[error("export file {} is signed by key {key}, which is not trusted (trusted: {})", path.display(), key_list(trusted))]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// The signer.
        key: PublicKey,
        /// The keys the caller trusts.
        trusted: Vec<PublicKey>,
    },
    /// Bytes after the END record.
    #[error("export file {} is corrupt: data follows the end record", path.display())]
    Trailing {
        /// The file.
        path: PathBuf,
    },
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import or export did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The capsule.
    pub capsule: CapsuleRef,
    /// Its manifest digest.
    pub digest: Digest,
    /// Blobs written to the file, or added to the store.
    pub blobs_moved: u64,
    /// Blobs the store already had (import only).
    pub blobs_present: u64,
    /// Bytes of the export file.
    pub bytes: u64,
    /// The key that signed the file (export: with `--sign`; import: a verified signature).
    pub signer: Option<PublicKey>,
    /// Import: the version the capsule's `name:tag` named before, when it named another (it
    /// stays in the store, reachable by digest).
    pub replaced: Option<Digest>,
}

fn key_list(keys: &[PublicKey]) -> String {
    keys.iter().map(PublicKey::to_hex).collect::<Vec<_>>().join(", ")
}

fn record_header(w: &mut impl Write, tag: u8, len: u64) -> io::Result<()> {
    w.write_all(&[tag])?;
    w.write_all(&len.to_le_bytes())
}

/// Write capsule `r` with every blob it uses to `out`, signed by `signer` if given, atomically
/// (a temporary file next to it, renamed at the end), so a failed export never leaves a partial
/// file under that name.
pub fn export(
    store: &Store,
    r: &CapsuleRef,
    out: &Path,
    signer: Option<&SecretKey>,
    progress: &dyn Progress,
) -> Result<Summary, ArchiveError> {
    let (digest, manifest) = store.load(r)?;
    let blobs: BTreeSet<Digest> = manifest.blobs();
    let io_err = |action: &'static str| move |source| ArchiveError::Io { action, path: out.to_owned(), source };
    // A destination that is not a regular file (`-o /dev/stdout`, a pipe, a fifo, a terminal,
    // a symlink to any of them) is written in place: renaming a temporary file over it would
    // replace the device's name (as root, /dev/stdout became a regular file). A symlink to a
    // regular file stays a symlink: its target is what is replaced. "-" is standard output.
    let named = if out == Path::new("-") { Path::new("/dev/stdout") } else { out };
    let resolved;
    let out = if std::fs::symlink_metadata(named).is_ok_and(|m| m.is_symlink())
        && std::fs::metadata(named).is_ok_and(|m| m.is_file())
    {
        resolved = std::fs::canonicalize(named).map_err(io_err("failed to resolve"))?;
        resolved.as_path()
    } else {
        named
    };
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.is_symlink()) && std::fs::metadata(out).is_err() {
        // A dangling symlink: creating through it would make a file wherever it points.
        return Err(io_err("refused to write through the dangling symlink")(io::ErrorKind::NotFound.into()));
    }
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let (tmp, direct) = if std::fs::metadata(out).is_ok_and(|m| !m.is_file()) {
        (None, Some(File::create(out).map_err(io_err("failed to open"))?))
    } else {
        let t =
            tempfile::Builder::new().prefix(".capsule-export-").tempfile_in(dir).map_err(io_err("failed to create"))?;
        (Some(t), None)
    };
    let file = match (&tmp, &direct) {
        (Some(t), _) => t.as_file(),
        (None, Some(f)) => f,
        (None, None) => return Err(io_err("failed to open")(io::ErrorKind::NotFound.into())),
    };
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let total: u64 = blobs.iter().map(|d| store.blob_stored_size(d).unwrap_or(0)).sum();
    progress.start("exporting", Some(total));
    let encoded = manifest.encode();
    // What the importer hashes: the manifest bytes in the file (the same as the stored ones).
    let signed_digest = Digest::of(&encoded);
    (|| -> io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&[0; 6])?;
        let frame = zstd::encode_all(&encoded[..], 3)?;
        record_header(&mut w, TAG_MANIFEST, frame.len() as u64)?;
        w.write_all(&frame)
    })()
    .map_err(io_err("failed to write"))?;
    for d in &blobs {
        let path = store.blob_path(d);
        let mut f = File::open(&path).map_err(|_| StoreError::MissingBlob { digest: *d })?;
        let len = f.metadata().map_err(StoreError::io("failed to stat", &path))?.len();
        record_header(&mut w, TAG_BLOB, 32 + len).map_err(io_err("failed to write"))?;
        w.write_all(&d.0).map_err(io_err("failed to write"))?;
        let copied = io::copy(&mut f, &mut w).map_err(io_err("failed to write"))?;
        if copied != len {
            return Err(
                StoreError::Undecodable { digest: *d, reason: "blob changed size while exported".into() }.into()
            );
        }
        progress.inc(len);
    }
    let mut records = 1 + blobs.len() as u64;
    if let Some(key) = signer {
        (|| -> io::Result<()> {
            record_header(&mut w, TAG_SIGNATURE, SIGNATURE_RECORD)?;
            w.write_all(&key.public().to_bytes())?;
            w.write_all(&key.sign(&signed_digest))
        })()
        .map_err(io_err("failed to write"))?;
        records += 1;
    }
    let sum = w.digest().0.0;
    (|| -> io::Result<()> {
        record_header(&mut w, TAG_END, 40)?;
        w.write_all(&sum)?;
        w.write_all(&records.to_le_bytes())?;
        w.flush()
    })()
    .map_err(io_err("failed to write"))?;
    let bytes = w.digest().1;
    drop(w);
    if let Some(tmp) = tmp {
        tmp.as_file().sync_all().map_err(io_err("failed to sync"))?;
        tmp.persist(out).map_err(|e| ArchiveError::Io {
            action: "failed to write",
            path: out.to_owned(),
            source: e.error,
        })?;
    }
    progress.finish();
    let signer = signer.map(SecretKey::public);
    Ok(Summary {
        capsule: r.clone(),
        digest,
        blobs_moved: blobs.len() as u64,
        blobs_present: 0,
        bytes,
        signer,
        replaced: None,
    })
}

/// Read exactly `len` bytes of the current record, reporting EOF as truncation.
fn read_exact_or_truncated(
    r: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    what: &'static str,
    offset: u64,
) -> Result<(), ArchiveError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ArchiveError::Truncated { path: path.to_owned(), what, offset },
        _ => ArchiveError::Io { action: "failed to read", path: path.to_owned(), source: e },
    })
}

#[cfg(test)]
mod tests;
