//! [`LdCache`]: a reader for glibc's `/etc/ld.so.cache`, the soname → path table that ld.so(8)
//! consults after DT_RPATH, LD_LIBRARY_PATH and DT_RUNPATH and before its default directories.
//!
//! Format (glibc `sysdeps/generic/dl-cache.h`, written by `elf/cache.c`): an optional old-format
//! part (`"ld.so-1.7.0"`, a `u32` count and 12-byte entries) followed, at the next 8-byte
//! boundary, by the new-format part (`"glibc-ld.so.cache1.1"`, a 48-byte header and 24-byte
//! entries `{flags: i32, key: u32, value: u32, osversion: u32, hwcap: u64}`). String offsets in
//! new-format entries are relative to the start of the new-format header. Debian bookworm writes
//! the new format only; a file with only the old format is read through its old entries, as
//! glibc's `_dl_load_cache_lookup` does.
//!
//! Invariants: parsing never panics and never indexes out of range, whatever the bytes; every
//! offset is bounds-checked and a cache that does not hold together is an [`LdCacheError`].
//! Entries keep their flags and hwcap words and their file order, so [`LdCache::lookup`] can
//! choose among them as ld.so does.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entry type bits of a libc6 ELF library (`FLAG_ELF_LIBC6`).
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
/// Required-arch bits of an x86-64 library (`FLAG_X8664_LIB64`).
pub const FLAG_X8664_LIB64: i32 = 0x0300;
/// Plain `FLAG_ELF`: an entry of unknown libc that glibc accepts for any class.
const FLAG_ELF: i32 = 0x0001;
/// `_DL_CACHE_DEFAULT_ID` of a 64-bit x86-64 ld.so.
const DEFAULT_ID_64: i32 = FLAG_ELF_LIBC6 | FLAG_X8664_LIB64;
/// `_DL_CACHE_DEFAULT_ID` of a 32-bit i386 ld.so.
const DEFAULT_ID_32: i32 = FLAG_ELF_LIBC6;

const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// `sizeof (struct cache_file)`: magic, padding to 4, `nlibs`.
const OLD_HEADER_LEN: usize = 16;
const OLD_ENTRY_LEN: usize = 12;
/// `sizeof (struct cache_file_new)`.
const NEW_HEADER_LEN: usize = 48;
const NEW_ENTRY_LEN: usize = 24;
/// Offset of the endianness byte in the new header (`cache_file_new.flags`).
const NEW_FLAGS_OFFSET: usize = 28;
/// `cache_file_new_flags_endian_big`: a cache written for a big-endian machine.
const ENDIAN_BIG: u8 = 3;

/// One cache entry for a soname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The entry's flags word: type bits (`FLAG_ELF_LIBC6`) | arch bits (`FLAG_X8664_LIB64`).
    pub flags: i32,
    /// The hwcap word (0 for a library in a plain directory).
    pub hwcap: u64,
    /// The library's path as ldconfig recorded it.
    pub path: PathBuf,
}

/// A parsed `ld.so.cache`: soname → entries, in file order.
#[derive(Debug, Clone, Default)]
pub struct LdCache {
    entries: HashMap<String, Vec<CacheEntry>>,
    len: usize,
}

/// Why a cache file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    /// The file could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The cache file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a cache glibc would accept.
    #[error("malformed ld.so cache: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The file at `path` is not a cache glibc would accept.
    #[error("malformed ld.so cache {}: {reason}", path.display())]
    MalformedFile {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn malformed(reason: impl Into<String>) -> LdCacheError {
    LdCacheError::Malformed { reason: reason.into() }
}

/// Where the entries are and how to read them.
struct Layout {
    entries_at: usize,
    count: usize,
    entry_len: usize,
    /// The offset string offsets are relative to.
    strings_at: usize,
}

impl LdCache {
    /// Reads and parses the cache at `path`. A missing file is an error here; whether that
    /// means "no cache" (as it does to ld.so) is the caller's decision.
    pub fn load(path: &Path) -> Result<LdCache, LdCacheError> {
        let bytes = std::fs::read(path).map_err(|source| LdCacheError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&bytes).map_err(|e| match e {
            LdCacheError::Malformed { reason } => LdCacheError::MalformedFile { path: path.to_path_buf(), reason },
            other => other,
        })
    }

    /// Parses cache bytes. Errors on anything truncated, out of range or of the wrong byte order.
    pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
        let layout = locate(bytes)?;
        let mut cache = LdCache::default();
        for index in 0..layout.count {
            let at = index
                .checked_mul(layout.entry_len)
                .and_then(|o| o.checked_add(layout.entries_at))
                .ok_or_else(|| malformed("entry table overflows"))?;
            let entry = bytes
                .get(at..)
                .and_then(|b| b.get(..layout.entry_len))
                .ok_or_else(|| malformed(format!("entry {index} is truncated")))?;
            let flags = i32::from_le_bytes(array(entry, 0)?);
            let key = u32::from_le_bytes(array(entry, 4)?);
            let value = u32::from_le_bytes(array(entry, 8)?);
            let hwcap = if layout.entry_len == NEW_ENTRY_LEN { u64::from_le_bytes(array(entry, 16)?) } else { 0 };
            let soname = string_at(bytes, layout.strings_at, key)?;
            let path = string_at(bytes, layout.strings_at, value)?;
            // A soname that is not UTF-8 can never be asked for by `lookup`; skip it.
            let Ok(soname) = std::str::from_utf8(soname) else {
                continue;
            };
            let path = PathBuf::from(OsStr::from_bytes(path));
            cache.entries.entry(soname.to_owned()).or_default().push(CacheEntry { flags, hwcap, path });
            cache.len += 1;
        }
        Ok(cache)
    }

    /// The path ld.so would take from the cache for `soname`, for a 64-bit (x86-64) or 32-bit
    /// (i386) process.
    ///
    /// Mirrors glibc's `search_cache`: an entry whose flags are exactly the loader's
    /// `_DL_CACHE_DEFAULT_ID` wins at once; a plain `FLAG_ELF` entry is kept unless an exact one
    /// follows. Entries with a hwcap word (glibc-hwcaps or legacy hwcap subdirectories) are
    /// skipped: which of them ld.so picks depends on the CPU, and a capsule must not be tied to
    /// the capturing machine's CPU, so the baseline library is the one that is packed.
    pub fn lookup(&self, soname: &str, is_64: bool) -> Option<&Path> {
        let wanted = if is_64 { DEFAULT_ID_64 } else { DEFAULT_ID_32 };
        let mut best = None;
        for entry in self.entries.get(soname)?.iter().filter(|e| e.hwcap == 0) {
            if entry.flags == wanted {
                return Some(&entry.path);
            }
            if entry.flags == FLAG_ELF && best.is_none() {
                best = Some(entry.path.as_path());
            }
        }
        best
    }

    /// All entries for `soname`, in file order (empty if none).
    pub fn entries(&self, soname: &str) -> &[CacheEntry] {
        self.entries.get(soname).map_or(&[], Vec::as_slice)
    }

    /// How many entries the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Finds the entry table: the new-format part if there is one (after an optional old part),
/// otherwise the old-format entries. Checks that the whole table lies inside `bytes`.
fn locate(bytes: &[u8]) -> Result<Layout, LdCacheError> {
    let layout = if bytes.starts_with(NEW_MAGIC) {
        new_layout(bytes, 0)?
    } else if bytes.starts_with(OLD_MAGIC) {
        let nlibs = usize_at(bytes, OLD_MAGIC.len() + 1)?;
        let old_end = nlibs
            .checked_mul(OLD_ENTRY_LEN)
            .and_then(|n| n.checked_add(OLD_HEADER_LEN))
            .ok_or_else(|| malformed("old entry count overflows"))?;
        // glibc's ALIGN_CACHE: the new part starts at the next multiple of
        // __alignof__ (struct cache_file_new), which is 8.
        let new_at = old_end.checked_next_multiple_of(8).ok_or_else(|| malformed("old entry count overflows"))?;
        match bytes.get(new_at..) {
            Some(rest) if rest.starts_with(NEW_MAGIC) => new_layout(bytes, new_at)?,
            // An old-format-only cache: strings follow the old entries.
            _ => Layout { entries_at: OLD_HEADER_LEN, count: nlibs, entry_len: OLD_ENTRY_LEN, strings_at: old_end },
        }
    } else {
        return Err(malformed("no ld.so cache magic"));
    };
    let end = layout
        .count
        .checked_mul(layout.entry_len)
        .and_then(|n| n.checked_add(layout.entries_at))
        .ok_or_else(|| malformed("entry count overflows"))?;
    if end > bytes.len() {
        return Err(malformed(format!("{} entries need {end} bytes, the file has {}", layout.count, bytes.len())));
    }
    Ok(layout)
}

/// The layout of a new-format part whose header starts at `at`.
fn new_layout(bytes: &[u8], at: usize) -> Result<Layout, LdCacheError> {
    let header = bytes
        .get(at..)
        .and_then(|b| b.get(..NEW_HEADER_LEN))
        .ok_or_else(|| malformed("new-format header is truncated"))?;
    // Only the byte order of the machine we read for (x86, little-endian) is usable.
    if header.get(NEW_FLAGS_OFFSET).copied().unwrap_or(0) & 3 == ENDIAN_BIG {
        return Err(malformed("cache is big-endian"));
    }
    let count = usize_at(header, NEW_MAGIC.len())?;
    let entries_at = at.checked_add(NEW_HEADER_LEN).ok_or_else(|| malformed("header offset overflows"))?;
    Ok(Layout { entries_at, count, entry_len: NEW_ENTRY_LEN, strings_at: at })
}

/// `N` bytes at `at` of `bytes`.
fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], LdCacheError> {
    bytes
        .get(at..)
        .and_then(|b| b.get(..N))
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| malformed(format!("field at {at} is truncated")))
}

/// A little-endian u32 at `at`, as usize.
fn usize_at(bytes: &[u8], at: usize) -> Result<usize, LdCacheError> {
    let n = u32::from_le_bytes(array(bytes, at)?);
    usize::try_from(n).map_err(|_| malformed("count does not fit in usize"))
}

/// The NUL-terminated string at `base + offset`; it must end inside `bytes`.
fn string_at(bytes: &[u8], base: usize, offset: u32) -> Result<&[u8], LdCacheError> {
    let start = usize::try_from(offset)
        .ok()
        .and_then(|o| o.checked_add(base))
        .ok_or_else(|| malformed("string offset overflows"))?;
    let rest = bytes.get(start..).ok_or_else(|| malformed(format!("string offset {start} is past the end")))?;
    let len =
        rest.iter().position(|&b| b == 0).ok_or_else(|| malformed(format!("string at {start} is not terminated")))?;
    rest.get(..len).ok_or_else(|| malformed("string is truncated"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format part: `(flags, soname, path, hwcap)` entries, little-endian.
    fn new_part(entries: &[(i32, &str, &str, u64)]) -> Vec<u8> {
        let strings_at = NEW_HEADER_LEN + entries.len() * NEW_ENTRY_LEN;
        let mut strings = Vec::new();
        let mut table = Vec::new();
        for &(flags, key, value, hwcap) in entries {
            let k = u32::try_from(strings_at + strings.len()).unwrap();
            strings.extend_from_slice(key.as_bytes());
            strings.push(0);
            let v = u32::try_from(strings_at + strings.len()).unwrap();
            strings.extend_from_slice(value.as_bytes());
            strings.push(0);
            table.extend_from_slice(&flags.to_le_bytes());
            table.extend_from_slice(&k.to_le_bytes());
            table.extend_from_slice(&v.to_le_bytes());
            table.extend_from_slice(&0u32.to_le_bytes());
            table.extend_from_slice(&hwcap.to_le_bytes());
        }
        let mut out = NEW_MAGIC.to_vec();
        out.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&u32::try_from(strings.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&[2, 0, 0, 0]); // little-endian
        out.extend_from_slice(&[0; 16]); // extension offset, unused
        assert_eq!(out.len(), NEW_HEADER_LEN);
        out.extend(table);
        out.extend(strings);
        out
    }

    /// An old-format part of `n` entries whose strings follow them, padded so a new part can
    /// follow at the 8-byte boundary glibc expects.
    fn old_part(entries: &[(i32, &str, &str)], pad: bool) -> Vec<u8> {
        let mut out = OLD_MAGIC.to_vec();
        out.push(0);
        out.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_le_bytes());
        let mut strings = Vec::new();
        for &(flags, key, value) in entries {
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&u32::try_from(strings.len()).unwrap().to_le_bytes());
            strings.extend_from_slice(key.as_bytes());
            strings.push(0);
            out.extend_from_slice(&u32::try_from(strings.len()).unwrap().to_le_bytes());
            strings.extend_from_slice(value.as_bytes());
            strings.push(0);
        }
        if pad {
            out.resize(out.len().next_multiple_of(8), 0);
        } else {
            out.extend(strings);
        }
        out
    }

    const X64: i32 = FLAG_ELF_LIBC6 | FLAG_X8664_LIB64;

    fn sample() -> Vec<u8> {
        new_part(&[
            (X64, "libv.so.1", "/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libv.so.1", (1 << 62) | 1),
            (X64, "libv.so.1", "/lib/x86_64-linux-gnu/libv.so.1", 0),
            (FLAG_ELF_LIBC6, "libz.so.1", "/lib/i386-linux-gnu/libz.so.1", 0),
            (X64, "libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", 0),
            (FLAG_ELF, "libold.so", "/usr/lib/libold.so", 0),
            (0x0803, "libx32.so", "/libx32/libx32.so", 0),
        ])
    }

    #[test]
    fn lookup_by_class_and_flags() {
        let cache = LdCache::parse(&sample()).unwrap();
        assert_eq!(cache.len(), 6);
        assert_eq!(cache.lookup("libz.so.1", true), Some(Path::new("/lib/x86_64-linux-gnu/libz.so.1")));
        assert_eq!(cache.lookup("libz.so.1", false), Some(Path::new("/lib/i386-linux-gnu/libz.so.1")));
        assert_eq!(cache.lookup("libv.so.1", true), Some(Path::new("/lib/x86_64-linux-gnu/libv.so.1")));
        assert_eq!(cache.lookup("libold.so", true), Some(Path::new("/usr/lib/libold.so")));
        assert_eq!(cache.lookup("libold.so", false), Some(Path::new("/usr/lib/libold.so")));
        assert_eq!(cache.lookup("libx32.so", true), None);
        assert_eq!(cache.lookup("libnope.so", true), None);
        assert_eq!(cache.entries("libv.so.1").len(), 2);
    }

    #[test]
    fn old_part_is_skipped() {
        let mut bytes = old_part(&[(FLAG_ELF_LIBC6, "libstale.so", "/stale")], true);
        bytes.extend(sample());
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(cache.lookup("libz.so.1", true), Some(Path::new("/lib/x86_64-linux-gnu/libz.so.1")));
        assert_eq!(cache.lookup("libstale.so", false), None);
    }

    #[test]
    fn old_format_only() {
        let bytes = old_part(&[(FLAG_ELF_LIBC6, "libold.so.1", "/lib/libold.so.1")], false);
        let cache = LdCache::parse(&bytes).unwrap();
        assert_eq!(cache.lookup("libold.so.1", false), Some(Path::new("/lib/libold.so.1")));
    }

    #[test]
    fn hostile_caches_are_errors() {
        assert!(LdCache::parse(b"").is_err());
        assert!(LdCache::parse(b"not a cache at all").is_err());
        let mut huge = sample();
        huge.splice(20..24, u32::MAX.to_le_bytes());
        assert!(LdCache::parse(&huge).is_err());
        let mut bad_string = sample();
        bad_string.splice(52..56, u32::MAX.to_le_bytes()); // first entry's key
        assert!(LdCache::parse(&bad_string).is_err());
        let mut unterminated = sample();
        let len = unterminated.len();
        unterminated.truncate(len - 1);
        assert!(LdCache::parse(&unterminated).is_err());
        let mut big_endian = sample();
        big_endian.splice(28..29, [3]);
        assert!(LdCache::parse(&big_endian).is_err());
        let mut old = old_part(&[], true);
        old.splice(12..16, u32::MAX.to_le_bytes());
        assert!(LdCache::parse(&old).is_err());
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        let real = std::fs::read("/etc/ld.so.cache").unwrap_or_default();
        for bytes in [sample(), real] {
            let step = (bytes.len() / 97).max(1);
            for len in (0..bytes.len()).step_by(step).chain(0..bytes.len().min(200)) {
                let _ = LdCache::parse(bytes.get(..len).unwrap());
            }
            // Deterministic byte corruption (an LCG), one byte at a time.
            let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..2000 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let mut copy = bytes.clone();
                let at = usize::try_from(state >> 33).unwrap() % copy.len();
                copy[at] = copy[at].wrapping_add(u8::try_from(state >> 56).unwrap() | 1);
                let _ = LdCache::parse(&copy);
            }
        }
    }

    #[test]
    fn real_cache_finds_libc() {
        let path = Path::new("/etc/ld.so.cache");
        if !path.exists() {
            println!("SKIP no /etc/ld.so.cache");
            return;
        }
        let cache = LdCache::load(path).unwrap();
        let libc = cache.lookup("libc.so.6", true).unwrap();
        assert!(libc.ends_with("libc.so.6"), "{}", libc.display());
        assert!(!cache.is_empty());
    }

    #[test]
    fn real_cache_agrees_with_ldconfig() {
        let Ok(out) = std::process::Command::new("ldconfig").arg("-p").output() else {
            println!("SKIP no ldconfig");
            return;
        };
        let cache = LdCache::load(Path::new("/etc/ld.so.cache")).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut checked = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
            let Some((left, path)) = line.trim().split_once(" => ") else {
                continue;
            };
            let Some((soname, kind)) = left.split_once(' ') else {
                continue;
            };
            if kind == "(libc6,x86-64)" && seen.insert(soname.to_string()) {
                assert_eq!(cache.lookup(soname, true), Some(Path::new(path)), "{soname}");
                checked += 1;
            }
        }
        assert!(checked > 0);
    }

    #[test]
    fn load_errors_name_the_file() {
        let missing = Path::new("/nonexistent/ld.so.cache");
        let err = LdCache::load(missing).unwrap_err();
        assert!(matches!(err, LdCacheError::Read { .. }));
        assert_eq!(err.to_string(), "failed to read /nonexistent/ld.so.cache");
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), b"glibc-ld.so.cache1.1").unwrap();
        let err = LdCache::load(tmp.path()).unwrap_err();
        assert!(matches!(err, LdCacheError::MalformedFile { .. }), "{err}");
    }
}
