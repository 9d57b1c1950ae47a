//! Import: the validating reader of export files (see the module docs of [`super`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::{
    ArchiveError, MAGIC, MAX_BLOB_RECORD, MAX_MANIFEST_RECORD, SIGNATURE_RECORD, Summary, TAG_BLOB, TAG_END,
    TAG_MANIFEST, TAG_SIGNATURE, VERSION, read_exact_or_truncated,
};
use crate::capture::Progress;
use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::sign::{PublicKey, SIGNATURE_LEN};
use crate::store::{BlobBatch, CapsuleRef, StagedBlob, Store, StoreLock};

/// Hashes and counts what the parser consumes (it sits above the BufReader, so read-ahead is
/// not counted).
struct Tracked<R: Read> {
    inner: R,
    hasher: blake3::Hasher,
    offset: u64,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}

/// The state of one import, between opening the file and committing.
struct Import<'a> {
    store: &'a Store,
    path: &'a Path,
    size: u64,
    r: Tracked<BufReader<File>>,
    progress: &'a dyn Progress,
}

impl Import<'_> {
    fn header(&mut self, what: &'static str) -> Result<(u8, u64, u64), ArchiveError> {
        let at = self.r.offset;
        let mut h = [0u8; 9];
        read_exact_or_truncated(&mut self.r, &mut h, self.path, what, at)?;
        let len = u64::from_le_bytes([h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]]);
        Ok((h[0], len, at))
    }

    /// Refuse a length over `limit`, or one that runs past the end of the file.
    fn check_len(&self, what: &'static str, len: u64, limit: u64, at: u64) -> Result<(), ArchiveError> {
        if len > limit {
            return Err(ArchiveError::Oversize { path: self.path.to_owned(), what, len, limit, offset: at });
        }
        if self.r.offset.saturating_add(len) > self.size {
            return Err(ArchiveError::Truncated { path: self.path.to_owned(), what, offset: self.size });
        }
        Ok(())
    }

    /// The manifest and the digest of its encoded bytes (what a signature covers).
    fn manifest(&mut self) -> Result<(Manifest, Digest), ArchiveError> {
        let (tag, len, at) = self.header("manifest record")?;
        if tag != TAG_MANIFEST {
            return Err(ArchiveError::UnexpectedRecord { path: self.path.to_owned(), tag, offset: at });
        }
        self.check_len("manifest", len, MAX_MANIFEST_RECORD, at)?;
        let mut frame = Vec::new();
        (&mut self.r).take(len).read_to_end(&mut frame).map_err(|source| ArchiveError::Io {
            action: "failed to read",
            path: self.path.to_owned(),
            source,
        })?;
        let bad = |source| ArchiveError::Manifest { path: self.path.to_owned(), source };
        let mut bytes = Vec::new();
        zstd::Decoder::new(&frame[..]).and_then(|d| d.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes)).map_err(
            |e| {
                bad(crate::codec::CodecError::Malformed {
                    what: "manifest",
                    source: Box::new(bincode::ErrorKind::Io(e)),
                }
                .into())
            },
        )?;
        Ok((Manifest::decode(&bytes).map_err(bad)?, Digest::of(&bytes)))
    }

    /// Stage one blob record (or skip it when the store has the blob already).
    fn blob(&mut self, len: u64, at: u64, wanted: &mut BTreeSet<Digest>) -> Result<Option<StagedBlob>, ArchiveError> {
        self.check_len("blob", len, MAX_BLOB_RECORD, at)?;
        if len < 32 {
            return Err(ArchiveError::Truncated { path: self.path.to_owned(), what: "blob digest", offset: at });
        }
        let mut d = [0u8; 32];
        read_exact_or_truncated(&mut self.r, &mut d, self.path, "blob digest", at)?;
        let digest = Digest(d);
        if !wanted.remove(&digest) {
            return Err(ArchiveError::UnexpectedBlob { path: self.path.to_owned(), digest });
        }
        let mut frame = (&mut self.r).take(len - 32);
        let staged = if self.store.has_blob(&digest) {
            io::copy(&mut frame, &mut io::sink()).map_err(|source| ArchiveError::Io {
                action: "failed to read",
                path: self.path.to_owned(),
                source,
            })?;
            None
        } else {
            let s = self.store.stage_compressed(&mut frame, &digest).map_err(|source| ArchiveError::BadBlob {
                path: self.path.to_owned(),
                digest,
                source,
            })?;
            Some(s)
        };
        self.progress.inc(len + 9);
        Ok(staged)
    }

    /// Read a SIGNATURE record and verify it for manifest `digest`; the signer.
    fn signature(&mut self, len: u64, at: u64, digest: &Digest) -> Result<PublicKey, ArchiveError> {
        if len != SIGNATURE_RECORD {
            return Err(ArchiveError::SignatureLength { path: self.path.to_owned(), len, offset: at });
        }
        self.check_len("signature", len, SIGNATURE_RECORD, at)?;
        let mut key = [0u8; 32];
        let mut sig = [0u8; SIGNATURE_LEN];
        read_exact_or_truncated(&mut self.r, &mut key, self.path, "signature record", at)?;
        read_exact_or_truncated(&mut self.r, &mut sig, self.path, "signature record", at)?;
        let key = PublicKey::from_bytes(&key)
            .ok_or_else(|| ArchiveError::SignatureKey { path: self.path.to_owned(), offset: at })?;
        if !key.verifies(digest, &sig) {
            return Err(ArchiveError::BadSignature { path: self.path.to_owned(), key, digest: *digest });
        }
        Ok(key)
    }

    /// With `trusted` keys given, the file must be signed by one of them.
    fn check_trust(&self, signer: Option<PublicKey>, trusted: &[PublicKey]) -> Result<(), ArchiveError> {
        if trusted.is_empty() {
            return Ok(());
        }
        let trusted = trusted.to_vec();
        match signer {
            None => Err(ArchiveError::NotSigned { path: self.path.to_owned(), trusted }),
            Some(key) if !trusted.contains(&key) => {
                Err(ArchiveError::Untrusted { path: self.path.to_owned(), key, trusted })
            }
            Some(_) => Ok(()),
        }
    }

    /// Check the END record against everything read before it, and that nothing follows.
    fn end(&mut self, before: blake3::Hash, len: u64, at: u64, records: u64) -> Result<(), ArchiveError> {
        if len != 40 {
            return Err(ArchiveError::Oversize { path: self.path.to_owned(), what: "end", len, limit: 40, offset: at });
        }
        let mut body = [0u8; 40];
        read_exact_or_truncated(&mut self.r, &mut body, self.path, "end record", at)?;
        let count =
            u64::from_le_bytes([body[32], body[33], body[34], body[35], body[36], body[37], body[38], body[39]]);
        if body[..32] != *before.as_bytes() || count != records {
            return Err(ArchiveError::Checksum { path: self.path.to_owned() });
        }
        let mut extra = [0u8; 1];
        match self.r.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(_) => Err(ArchiveError::Trailing { path: self.path.to_owned() }),
            Err(source) => Err(ArchiveError::Io { action: "failed to read", path: self.path.to_owned(), source }),
        }
    }
}

/// Import the export file at `path` into `store`. Nothing in the store changes unless the
/// whole file is valid, any signature in it verifies, and, when `trusted` is not empty, it is
/// signed by one of those keys.
pub fn import(
    store: &Store,
    path: &Path,
    trusted: &[PublicKey],
    progress: &dyn Progress,
) -> Result<Summary, ArchiveError> {
    let io_err = |action| move |source| ArchiveError::Io { action, path: path.to_owned(), source };
    // "-" is standard input. A stream (a pipe, a fifo) has no size to check lengths against
    // first: a length past its end shows up as a truncation when it is read.
    let opened = if path == Path::new("-") { Path::new("/dev/stdin") } else { path };
    let file = File::open(opened).map_err(io_err("failed to open"))?;
    let meta = file.metadata().map_err(io_err("failed to stat"))?;
    let size = if meta.is_file() { meta.len() } else { u64::MAX };
    let _lock = StoreLock::shared(store)?;
    let r = Tracked { inner: BufReader::with_capacity(1 << 20, file), hasher: blake3::Hasher::new(), offset: 0 };
    let mut im = Import { store, path, size, r, progress };
    progress.start("importing", meta.is_file().then_some(size));
    let mut head = [0u8; 16];
    read_exact_or_truncated(&mut im.r, &mut head, path, "header", 0).map_err(|e| match e {
        ArchiveError::Truncated { .. } => ArchiveError::BadMagic { path: path.to_owned() },
        e => e,
    })?;
    if &head[..8] != MAGIC {
        return Err(ArchiveError::BadMagic { path: path.to_owned() });
    }
    let found = u16::from_le_bytes([head[8], head[9]]);
    if !(1..=VERSION).contains(&found) {
        return Err(ArchiveError::Version { path: path.to_owned(), found });
    }
    let (manifest, manifest_digest) = im.manifest()?;
    let needed = manifest.blobs();
    let mut wanted = needed.clone();
    let mut staged = BlobBatch::new(store);
    let mut records = 1u64;
    let mut signer = None;
    loop {
        let before = im.r.hasher.finalize();
        let (tag, len, at) = im.header("record header")?;
        match tag {
            // Blobs come before the signature; one signature, in version 2 only.
            TAG_BLOB if signer.is_none() => {
                if let Some(s) = im.blob(len, at, &mut wanted)? {
                    staged.push(s);
                }
                records += 1;
            }
            TAG_SIGNATURE if found >= 2 && signer.is_none() => {
                signer = Some(im.signature(len, at, &manifest_digest)?);
                records += 1;
            }
            TAG_END => {
                im.end(before, len, at, records)?;
                break;
            }
            _ => return Err(ArchiveError::UnexpectedRecord { path: path.to_owned(), tag, offset: at }),
        }
    }
    im.check_trust(signer, trusted)?;
    if let Some(digest) = wanted.into_iter().find(|d| !store.has_blob(d)) {
        return Err(ArchiveError::MissingBlob { path: path.to_owned(), digest });
    }
    // Everything checked: now, and only now, change the store.
    let blobs_moved = staged.commit()? as u64;
    let capsule = CapsuleRef::new(&manifest.name, &manifest.tag);
    let (digest, replaced) = store.commit_capsule_keeping(&manifest, &capsule, &|_| false)?;
    progress.finish();
    Ok(Summary {
        capsule,
        digest,
        blobs_moved,
        blobs_present: needed.len() as u64 - blobs_moved,
        bytes: im.r.offset,
        signer,
        replaced,
    })
}
