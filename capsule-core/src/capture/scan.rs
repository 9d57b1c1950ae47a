//! [`scan`]: a metadata-only walk of the watched roots ([`ScanEntry`] per node, no content
//! read), the pre-scan and post-scan of a snapshot capture.
//!
//! Symlinks are recorded, never followed, and the walk stays inside each root. A directory
//! matched by the [`Noise`] rules is not entered. Entries come back sorted by path bytes, the
//! order [`super::snapshot::diff`] merges in. A file that vanishes between `readdir` and
//! `lstat` (a live system) is skipped, not an error.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::noise::Noise;
use super::{CaptureError, Progress};

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170_000;
/// Directory.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;

/// What `lstat` says about a node, and what the diff compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// `st_mode` (type and permissions).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Modification time.
    pub mtime: i64,
    /// Its nanoseconds.
    pub mtime_nsec: u32,
    /// Status-change time: catches a rewrite that restored the mtime.
    pub ctime: i64,
    /// Its nanoseconds.
    pub ctime_nsec: u32,
    /// Inode: catches a replace-by-rename with identical times.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// Link count (hardlink detection).
    pub nlink: u64,
}

impl Stat {
    /// From std's metadata.
    pub fn from_metadata(m: &Metadata) -> Stat {
        // Nanosecond fields are always in 0..1e9, so the narrowing is lossless.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Stat {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
        }
    }

    /// `lstat(path)`.
    pub fn lstat(path: &Path) -> io::Result<Stat> {
        fs::symlink_metadata(path).map(|m| Stat::from_metadata(&m))
    }

    /// The file type bits.
    pub fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }
}

/// One node seen by a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEntry {
    /// Path without the leading `/`, relative to the scan's base.
    pub path: Vec<u8>,
    /// Its metadata.
    pub stat: Stat,
}

/// Host path of capsule path `rel` under `base`.
pub fn host_path(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(rel))
}

/// Check a watched root ("/usr") and return it without the leading `/` ("usr"; "" for "/").
pub fn root_rel(root: &str) -> Result<Vec<u8>, CaptureError> {
    let bad = || CaptureError::BadRoot { root: root.to_owned() };
    if !root.starts_with('/') {
        return Err(bad());
    }
    let comps: Vec<&str> = root.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if comps.contains(&"..") {
        return Err(bad());
    }
    Ok(comps.join("/").into_bytes())
}

/// Walk `roots` (absolute capsule paths) under host directory `base`.
pub fn scan(
    base: &Path,
    roots: &[String],
    noise: &Noise,
    progress: &dyn Progress,
) -> Result<Vec<ScanEntry>, CaptureError> {
    progress.start("scanning", None);
    let mut out = Vec::new();
    for root in roots {
        let rel = root_rel(root)?;
        let host = host_path(base, &rel);
        let abs = [b"/".as_slice(), &rel].concat();
        if noise.covers(&abs) {
            continue;
        }
        let stat = match Stat::lstat(&host) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CaptureError::Io { action: "failed to stat watched root", path: host, source: e }),
        };
        let is_dir = stat.kind() == S_IFDIR;
        if !rel.is_empty() {
            out.push(ScanEntry { path: rel.clone(), stat });
        }
        if is_dir {
            walk(&host, &rel, noise, &mut out, progress)?;
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path); // overlapping roots
    progress.finish();
    Ok(out)
}

/// Depth-first walk below `dir` (host) = `rel` (capsule), iterative so deep trees cannot
/// overflow the stack.
fn walk(
    dir: &Path,
    rel: &[u8],
    noise: &Noise,
    out: &mut Vec<ScanEntry>,
    progress: &dyn Progress,
) -> Result<(), CaptureError> {
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(dir.to_owned(), rel.to_vec())];
    while let Some((host, rel)) = stack.pop() {
        let rd = match fs::read_dir(&host) {
            Ok(rd) => rd,
            // Vanished or unreadable directory: record what we could see of it, go on.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied) => continue,
            Err(e) => return Err(CaptureError::Io { action: "failed to list", path: host, source: e }),
        };
        let mut n = 0;
        for ent in rd {
            let Ok(ent) = ent else { continue };
            let name = ent.file_name();
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let abs = [b"/".as_slice(), &child].concat();
            if noise.is_noise(&abs) {
                continue;
            }
            let Ok(meta) = ent.metadata() else { continue }; // lstat semantics
            let stat = Stat::from_metadata(&meta);
            if stat.kind() == S_IFDIR {
                stack.push((ent.path(), child.clone()));
            }
            out.push(ScanEntry { path: child, stat });
            n += 1;
        }
        progress.inc(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::NoProgress;

    #[test]
    fn scan_sorted_with_noise() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        fs::create_dir_all(b.join("usr/bin")).unwrap();
        fs::create_dir_all(b.join("var/cache/apt")).unwrap();
        fs::write(b.join("usr/bin/a"), b"a").unwrap();
        fs::write(b.join("var/cache/apt/x"), b"x").unwrap();
        std::os::unix::fs::symlink("bin", b.join("usr/sbin")).unwrap();
        let noise = Noise::with_defaults(&[]).unwrap();
        let got = scan(b, &["/usr".into(), "/var".into(), "/missing".into()], &noise, &NoProgress).unwrap();
        let paths: Vec<_> = got.iter().map(|e| String::from_utf8(e.path.clone()).unwrap()).collect();
        assert_eq!(paths, ["usr", "usr/bin", "usr/bin/a", "usr/sbin", "var"]);
        assert_eq!(got[3].stat.kind(), S_IFLNK);
        assert!(root_rel("usr").is_err());
        assert!(root_rel("/usr/../etc").is_err());
        assert_eq!(root_rel("/").unwrap(), b"");
    }
}
