//! [`PathBuffer`]: one fixed 4 KiB buffer per call, where hooks build NUL-terminated paths
//! without allocating; and lexical normalisation of absolute paths.
//!
//! The buffer is deliberately *not* zeroed: a hook creates one or two per call, and a 4 KiB
//! memset each time would cost more than the whole redirect. Invariant: the first `len + 1`
//! bytes are initialised, `bytes[len] == 0`, and no byte before `len` is 0 (pushes are NUL-free
//! by their callers' contract; a kernel fill through [`PathBuffer::storage`] is checked by
//! `as_cstr`); only those bytes are read.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(unsafe_code)] // MaybeUninit storage, see the invariant above

use core::ffi::CStr;
use core::mem::MaybeUninit;

/// PATH_MAX, including the NUL.
pub const PATH_CAP: usize = 4096;

/// A path under construction. See the module docs for the invariant.
pub struct PathBuffer {
    bytes: [MaybeUninit<u8>; PATH_CAP],
    len: usize,
}

impl Default for PathBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl PathBuffer {
    /// Empty.
    #[inline]
    pub const fn new() -> Self {
        let mut bytes = [MaybeUninit::uninit(); PATH_CAP];
        bytes[0] = MaybeUninit::new(0);
        PathBuffer { bytes, len: 0 }
    }

    /// The bytes so far, without the NUL.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (module invariant), len < PATH_CAP.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), self.len) }
    }

    /// The bytes with the NUL.
    fn with_nul(&self) -> &[u8] {
        // SAFETY: the first `len + 1` bytes are initialised (module invariant).
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), self.len + 1) }
    }

    /// As a C string (the NUL is always there).
    pub fn as_cstr(&self) -> &CStr {
        if self.as_bytes().contains(&0) {
            return c"";
        }
        // SAFETY: `with_nul` ends in the NUL at `len` and the check above found no other.
        unsafe { CStr::from_bytes_with_nul_unchecked(self.with_nul()) }
    }

    /// The path without its leading '/', as a C string ("." for the root): the form used
    /// relative to the tree descriptor. O(1): hooks call it on every routed call, and the
    /// bytes came from C strings or from pushes checked in [`push`](Self::push).
    pub fn rel_cstr(&self) -> &CStr {
        match self.with_nul().get(1..) {
            // SAFETY: the slice ends in the NUL at `len`, and `push` never stores a NUL
            // (invariant), so there is no interior one.
            Some(b) if self.len > 1 => unsafe { CStr::from_bytes_with_nul_unchecked(b) },
            _ => c".",
        }
    }

    /// Clear.
    #[inline]
    pub fn clear(&mut self) {
        self.set_len_unchecked(0);
    }

    fn set_len_unchecked(&mut self, len: usize) {
        self.len = len;
        if let Some(b) = self.bytes.get_mut(len) {
            *b = MaybeUninit::new(0);
        }
    }

    /// Append `s`; `Err(ENAMETOOLONG)` if it does not fit. Callers push only NUL-free bytes:
    /// pieces of C strings, and view strings (manifest paths and symlink targets, which
    /// validation keeps NUL-free), so the buffer never holds an interior NUL (see
    /// [`rel_cstr`](Self::rel_cstr)).
    #[inline]
    pub fn push(&mut self, s: &[u8]) -> Result<(), i32> {
        let end = self.len.checked_add(s.len()).filter(|&e| e < PATH_CAP).ok_or(libc::ENAMETOOLONG)?;
        let dst = self.bytes.get_mut(self.len..end).ok_or(libc::ENAMETOOLONG)?;
        // SAFETY: `dst` is exactly `s.len()` elements of the buffer (checked above), and a
        // `MaybeUninit<u8>` has the layout of a `u8`; source and destination cannot overlap
        // (`s` is never borrowed from `self`, which is borrowed mutably here).
        unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), dst.as_mut_ptr().cast::<u8>(), s.len()) };
        self.set_len_unchecked(end);
        Ok(())
    }

    /// Keep the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.set_len_unchecked(len);
        }
    }

    /// Raw storage for a syscall that fills it (getcwd, readlink): pointer and capacity.
    /// Call [`set_len`](Self::set_len) with what the kernel wrote.
    pub fn storage(&mut self) -> (*mut u8, usize) {
        (self.bytes.as_mut_ptr().cast::<u8>(), PATH_CAP)
    }

    /// Declare the first `len` bytes filled by the kernel; a NUL is written after them.
    pub fn set_len(&mut self, len: usize) {
        self.set_len_unchecked(len.min(PATH_CAP - 1));
    }
}

/// Build the normalised absolute form of `base` + `/` + `rel` (or of `rel` alone when it is
/// absolute) into `out`: "/a/b", or "/" for the root. "." dropped, ".." pops (clamped at the
/// root), repeated '/' folded. Lexical, like the capsule's manifest paths.
pub fn normalize_abs_into(base: &[u8], rel: &[u8], out: &mut PathBuffer) -> Result<(), i32> {
    out.clear();
    out.push(b"/")?;
    let parts: [&[u8]; 2] = if rel.first() == Some(&b'/') { [b"", rel] } else { [base, rel] };
    for part in parts {
        for comp in part.split(|&c| c == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    let cut = out.as_bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
                    out.truncate(cut.max(1));
                }
                c => {
                    if out.len > 1 {
                        out.push(b"/")?;
                    }
                    out.push(c)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(base: &str, rel: &str) -> String {
        let mut b = PathBuffer::new();
        normalize_abs_into(base.as_bytes(), rel.as_bytes(), &mut b).unwrap();
        assert_eq!(b.as_cstr().to_bytes(), b.as_bytes());
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("", "/usr//bin/./jq"), "/usr/bin/jq");
        assert_eq!(norm("/usr/share", "../lib/x"), "/usr/lib/x");
        assert_eq!(norm("/usr", "../../../etc"), "/etc");
        assert_eq!(norm("/usr", "/etc/x"), "/etc/x");
        assert_eq!(norm("", "/"), "/");
        assert_eq!(norm("/a", ".."), "/");
        let mut b = PathBuffer::new();
        assert_eq!(normalize_abs_into(b"", &vec![b'a'; 5000], &mut b), Err(libc::ENAMETOOLONG));
    }

    #[test]
    fn rel_forms() {
        let mut b = PathBuffer::new();
        normalize_abs_into(b"", b"/usr/bin", &mut b).unwrap();
        assert_eq!(b.rel_cstr().to_bytes(), b"usr/bin");
        normalize_abs_into(b"", b"/", &mut b).unwrap();
        assert_eq!(b.rel_cstr().to_bytes(), b".");
    }
}
