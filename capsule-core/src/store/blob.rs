//! Blob I/O: content-addressed, zstd-compressed files under `blobs/xx/<digest>`.
//!
//! Invariant: a file under a blob's real name is a complete zstd stream whose decompressed
//! content hashes to that name. Writers never break it: they compress into a temporary file
//! under `tmp/` ([`StagedBlob`]), make its data durable, `rename` it into place and `fsync`
//! the directory ([`super::BlobBatch`] does this for many blobs at once), so a crash leaves at
//! worst a stray temporary file (removed by `gc`), never a half blob. Readers re-hash whenever
//! they hand out whole content, so a blob damaged on disk is reported by digest.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempPath};

use super::{BlobBatch, Store, StoreError};
use crate::digest::{Digest, HashingWriter};

/// zstd level for blobs: fast to write and read; captures are bound by hashing and I/O.
const LEVEL: i32 = 3;

/// A blob written to a temporary file (closed: a capture may stage hundreds of thousands),
/// not yet durable nor under its real name. Dropping it deletes the temporary file.
#[derive(Debug)]
pub struct StagedBlob {
    /// Digest of the uncompressed content.
    pub digest: Digest,
    /// Uncompressed size.
    pub size: u64,
    pub(super) path: TempPath,
}

/// Copies every byte read through it into `copy`.
struct TeeReader<R: Read, W: Write> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl Store {
    /// Where blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    /// Whether blob `digest` is present (not whether it is intact).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn temp_file(&self) -> Result<NamedTempFile, StoreError> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(StoreError::io("failed to create a temporary file in", dir))
    }

    /// Compress everything `reader` yields into a staged blob.
    pub fn stage_reader(&self, reader: &mut impl Read, source: &Path) -> Result<StagedBlob, StoreError> {
        self.stage_sized(reader, source, None)
    }

    /// As [`stage_reader`](Self::stage_reader); with `size` (exactly what `reader` yields) the
    /// frame records its content size, so a reader of the whole blob decodes it in one call
    /// into a buffer of that size, without a streaming window (the run path's manifest read).
    fn stage_sized(&self, reader: &mut impl Read, source: &Path, size: Option<u64>) -> Result<StagedBlob, StoreError> {
        let tmp = self.temp_file()?;
        let tmp_path = tmp.path().to_owned();
        let mut enc = zstd::Encoder::new(tmp.as_file(), LEVEL)
            .map_err(StoreError::io("failed to start compressing", &tmp_path))?;
        if size.is_some() {
            enc.set_pledged_src_size(size).map_err(StoreError::io("failed to start compressing", &tmp_path))?;
            enc.include_contentsize(true).map_err(StoreError::io("failed to start compressing", &tmp_path))?;
        }
        let mut w = HashingWriter::new(enc);
        io::copy(reader, &mut w).map_err(StoreError::io("failed to read", source))?;
        let (digest, size) = w.digest();
        w.inner.finish().map_err(StoreError::io("failed to write", &tmp_path))?;
        Ok(StagedBlob { digest, size, path: tmp.into_temp_path() })
    }

    /// Stage a blob that arrives already compressed (an export record): the frame is kept as
    /// it is, and decompressed once to check that it hashes to `expected`.
    pub fn stage_compressed(&self, frame: &mut impl Read, expected: &Digest) -> Result<StagedBlob, StoreError> {
        let tmp = self.temp_file()?;
        let tmp_path = tmp.path().to_owned();
        let undecodable = |e: io::Error| StoreError::Undecodable { digest: *expected, reason: e.to_string() };
        let mut tee = TeeReader { inner: frame, copy: tmp.as_file() };
        let mut hashed = HashingWriter::new(io::sink());
        // Decode to the end of the record: bytes after the first frame must be further valid
        // frames, or decoding fails, so the staged file is always wholly decodable.
        let mut dec = zstd::Decoder::new(&mut tee).map_err(undecodable)?;
        io::copy(&mut dec, &mut hashed).map_err(undecodable)?;
        drop(dec);
        // The decoder stops at end of data; anything it did not pull is copied too, so it is
        // checked by the next decode rather than silently dropped.
        io::copy(&mut tee, &mut io::sink()).map_err(StoreError::io("failed to write", &tmp_path))?;
        let (actual, size) = hashed.digest();
        if actual != *expected {
            return Err(StoreError::Corrupt { digest: *expected, actual });
        }
        Ok(StagedBlob { digest: actual, size, path: tmp.into_temp_path() })
    }

    /// Move one staged blob under its real name, durably (see [`BlobBatch`] for many).
    pub fn commit_blob(&self, staged: StagedBlob) -> Result<Digest, StoreError> {
        let digest = staged.digest;
        let mut batch = BlobBatch::new(self);
        batch.push(staged);
        batch.commit()?;
        Ok(digest)
    }

    /// Stage the content of host file `path`.
    pub fn stage_file(&self, path: &Path) -> Result<StagedBlob, StoreError> {
        let f = File::open(path).map_err(StoreError::io("failed to open", path))?;
        self.stage_reader(&mut BufReader::with_capacity(256 << 10, f), path)
    }

    /// Store the content read from `reader` (named `source` in errors).
    pub fn put_reader(&self, reader: &mut impl Read, source: &Path) -> Result<(Digest, u64), StoreError> {
        let staged = self.stage_reader(reader, source)?;
        let size = staged.size;
        Ok((self.commit_blob(staged)?, size))
    }

    /// Store the content of host file `path`. The size is what was read, which may differ from
    /// an earlier `stat` if the file is being written.
    pub fn put_file(&self, path: &Path) -> Result<(Digest, u64), StoreError> {
        let staged = self.stage_file(path)?;
        let size = staged.size;
        Ok((self.commit_blob(staged)?, size))
    }

    /// Store `bytes`.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut r = bytes;
        let staged = self.stage_sized(&mut r, Path::new("(memory)"), Some(bytes.len() as u64))?;
        self.commit_blob(staged)
    }

    /// The compressed file of blob `digest` and its path; a missing one is `MissingBlob`.
    fn blob_file(&self, digest: &Digest) -> Result<(File, std::path::PathBuf), StoreError> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::MissingBlob { digest: *digest }),
            Err(e) => Err(StoreError::Io { action: "failed to open", path, source: e }),
        }
    }

    /// Open blob `digest` for streaming decompression. The content is not re-hashed: use
    /// [`read_blob`](Self::read_blob) or [`verify_blob`](Self::verify_blob) where it must be.
    pub fn open_blob(&self, digest: &Digest) -> Result<impl Read + use<>, StoreError> {
        let (f, _) = self.blob_file(digest)?;
        let undecodable = |e: io::Error| StoreError::Undecodable { digest: *digest, reason: e.to_string() };
        zstd::Decoder::new(f).map_err(undecodable)
    }

    /// The whole content of blob `digest`, at most `limit` bytes, checked against its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64, what: &'static str) -> Result<Vec<u8>, StoreError> {
        let (f, path) = self.blob_file(digest)?;
        // Whole-blob reads are small records (manifests): read the frame into memory and
        // decode from the slice, without the stream decoder's 128 KiB read buffer. zstd never
        // stores more than a few bytes per block beyond the raw size, so `limit` plus 1/64 of
        // it bounds any valid frame.
        let mut compressed = Vec::new();
        let bound = limit + limit / 64 + 4096;
        f.take(bound).read_to_end(&mut compressed).map_err(|e| StoreError::Io {
            action: "failed to read",
            path,
            source: e,
        })?;
        let undecodable = |e: io::Error| StoreError::Undecodable { digest: *digest, reason: e.to_string() };
        // A single frame that records its size (what `put_bytes` writes) decodes in one call;
        // anything else (older blobs, several frames) streams.
        let known = zstd::zstd_safe::get_frame_content_size(&compressed).ok().flatten().filter(|&n| {
            n <= limit && zstd::zstd_safe::find_frame_compressed_size(&compressed) == Ok(compressed.len())
        });
        let out = match known.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => zstd::bulk::decompress(&compressed, n).map_err(undecodable)?,
            None => {
                let mut out = Vec::new();
                zstd::Decoder::with_buffer(&compressed[..])
                    .map_err(undecodable)?
                    .take(limit + 1)
                    .read_to_end(&mut out)
                    .map_err(undecodable)?;
                out
            }
        };
        if out.len() as u64 > limit {
            return Err(StoreError::BlobTooLarge { digest: *digest, what, limit });
        }
        let actual = Digest::of(&out);
        if actual != *digest {
            return Err(StoreError::Corrupt { digest: *digest, actual });
        }
        Ok(out)
    }

    /// Decompress and re-hash blob `digest`; its uncompressed size if intact.
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64, StoreError> {
        let mut w = HashingWriter::new(io::sink());
        let undecodable = |e: io::Error| StoreError::Undecodable { digest: *digest, reason: e.to_string() };
        io::copy(&mut self.open_blob(digest)?, &mut w).map_err(undecodable)?;
        let (actual, size) = w.digest();
        if actual != *digest {
            return Err(StoreError::Corrupt { digest: *digest, actual });
        }
        Ok(size)
    }

    /// The compressed size of blob `digest` on disk.
    pub fn blob_stored_size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        Ok(fs::metadata(&path).map_err(StoreError::io("failed to stat", path))?.len())
    }

    /// Every blob in the store, by walking `blobs/` (names that are not digests are skipped).
    pub fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        let top = self.root.join("blobs");
        let mut out = Vec::new();
        for sub in fs::read_dir(&top).map_err(StoreError::io("failed to list", &top))? {
            let sub = sub.map_err(StoreError::io("failed to list", &top))?.path();
            let Ok(rd) = fs::read_dir(&sub) else { continue };
            for e in rd.flatten() {
                if let Some(d) = e.file_name().to_str().and_then(|s| s.parse::<Digest>().ok()) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove blob `digest` (gc only).
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        fs::remove_file(&path).map_err(StoreError::io("failed to remove", path))
    }
}

/// fsync a directory, so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("failed to sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_verify() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_bytes(b"hello world").unwrap();
        assert_eq!(d, Digest::of(b"hello world"));
        assert_eq!(s.read_blob(&d, 100, "test").unwrap(), b"hello world");
        assert!(matches!(s.read_blob(&d, 3, "test"), Err(StoreError::BlobTooLarge { .. })));
        assert_eq!(s.verify_blob(&d).unwrap(), 11);
        assert_eq!(s.list_blobs().unwrap(), vec![d]);
        // Put twice: one blob.
        s.put_bytes(b"hello world").unwrap();
        assert_eq!(s.list_blobs().unwrap().len(), 1);
    }

    #[test]
    fn corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_bytes(&vec![7u8; 10000]).unwrap();
        let other = s.put_bytes(b"other").unwrap();
        // Swap in another blob's valid frame: decodes fine, hashes wrong.
        fs::copy(s.blob_path(&other), s.blob_path(&d)).unwrap();
        match s.verify_blob(&d) {
            Err(StoreError::Corrupt { digest, actual }) => assert_eq!((digest, actual), (d, other)),
            r => panic!("{r:?}"),
        }
        fs::write(s.blob_path(&d), b"garbage").unwrap();
        assert!(matches!(s.verify_blob(&d), Err(StoreError::Undecodable { .. })));
        let missing = Digest::of(b"nope");
        assert!(matches!(s.verify_blob(&missing), Err(StoreError::MissingBlob { .. })));
    }

    #[test]
    fn stage_compressed_checks_digest_and_trailing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let frame = zstd::encode_all(&b"content"[..], 3).unwrap();
        let good = Digest::of(b"content");
        let staged = s.stage_compressed(&mut &frame[..], &good).unwrap();
        assert_eq!(staged.size, 7);
        assert!(matches!(s.stage_compressed(&mut &frame[..], &Digest::of(b"x")), Err(StoreError::Corrupt { .. })));
        let mut long = frame.clone();
        long.extend_from_slice(b"junk");
        assert!(matches!(s.stage_compressed(&mut &long[..], &good), Err(StoreError::Undecodable { .. })));
        s.commit_blob(staged).unwrap();
        assert_eq!(s.read_blob(&good, 100, "t").unwrap(), b"content");
    }
}
