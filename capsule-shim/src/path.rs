//! [`PathBuffer`]: one fixed 4 KiB buffer per call, where hooks build NUL-terminated paths
//! without allocating; and lexical normalisation of absolute paths.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::CStr;

/// PATH_MAX, including the NUL.
pub const PATH_CAP: usize = 4096;

/// A path under construction. Invariant: `len < PATH_CAP` and `bytes[len] == 0` after every
/// successful operation.
pub struct PathBuffer {
    bytes: [u8; PATH_CAP],
    len: usize,
}

impl Default for PathBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl PathBuffer {
    /// Empty.
    pub const fn new() -> Self {
        PathBuffer { bytes: [0; PATH_CAP], len: 0 }
    }

    /// The bytes so far, without the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// As a C string (the NUL is always there).
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(self.bytes.get(..=self.len).unwrap_or(b"\0")).unwrap_or(c"")
    }

    /// The path without its leading '/', as a C string ("." for the root): the form used
    /// relative to the tree descriptor.
    pub fn rel_cstr(&self) -> &CStr {
        match self.bytes.get(1..=self.len) {
            Some(b) if self.len > 1 => CStr::from_bytes_until_nul(b).unwrap_or(c"."),
            _ => c".",
        }
    }

    /// Clear.
    pub fn clear(&mut self) {
        self.len = 0;
        self.bytes[0] = 0;
    }

    /// Append `s`; `Err(ENAMETOOLONG)` if it does not fit.
    pub fn push(&mut self, s: &[u8]) -> Result<(), i32> {
        let end = self.len.checked_add(s.len()).filter(|&e| e < PATH_CAP).ok_or(libc::ENAMETOOLONG)?;
        self.bytes.get_mut(self.len..end).ok_or(libc::ENAMETOOLONG)?.copy_from_slice(s);
        self.len = end;
        self.bytes[end] = 0;
        Ok(())
    }

    /// Drop the last `n` bytes.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            self.bytes[len] = 0;
        }
    }

    /// Insert a leading '/' in place (no second buffer on the stack).
    pub fn prepend_slash(&mut self) -> Result<(), i32> {
        if self.len + 1 >= PATH_CAP {
            return Err(libc::ENAMETOOLONG);
        }
        self.bytes.copy_within(0..self.len, 1);
        self.bytes[0] = b'/';
        self.set_len(self.len + 1);
        Ok(())
    }

    /// The raw storage, for syscalls that fill it (getcwd, readlink); call [`set_len`] after.
    pub fn storage(&mut self) -> &mut [u8; PATH_CAP] {
        &mut self.bytes
    }

    /// Declare `len` bytes filled; a NUL is written after them.
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(PATH_CAP - 1);
        self.bytes[self.len] = 0;
    }
}

/// Build the normalised absolute form of `base` + `/` + `rel` (or of `rel` alone when it is
/// absolute) into `out`, without the leading '/': "." dropped, ".." pops (clamped at the root),
/// repeated '/' folded. Lexical, like the capsule's manifest paths.
pub fn normalize_into(base: &[u8], rel: &[u8], out: &mut PathBuffer) -> Result<(), i32> {
    out.clear();
    let parts: [&[u8]; 2] = if rel.first() == Some(&b'/') { [b"", rel] } else { [base, rel] };
    for part in parts {
        for comp in part.split(|&c| c == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    let cut = out.as_bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
                    out.truncate(cut);
                }
                c => {
                    if out.len > 0 {
                        out.push(b"/")?;
                    }
                    out.push(c)?;
                }
            }
        }
    }
    Ok(())
}

/// [`normalize_into`], with the leading '/' kept: "/a/b", or "/" for the root.
pub fn normalize_abs_into(base: &[u8], rel: &[u8], out: &mut PathBuffer) -> Result<(), i32> {
    normalize_into(base, rel, out)?;
    out.prepend_slash()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(base: &str, rel: &str) -> String {
        let mut b = PathBuffer::new();
        normalize_into(base.as_bytes(), rel.as_bytes(), &mut b).unwrap();
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("", "/usr//bin/./jq"), "usr/bin/jq");
        assert_eq!(norm("usr/share", "../lib/x"), "usr/lib/x");
        assert_eq!(norm("usr", "../../../etc"), "etc");
        assert_eq!(norm("usr", "/etc/x"), "etc/x");
        assert_eq!(norm("", "/"), "");
        let mut b = PathBuffer::new();
        assert_eq!(normalize_into(b"", &vec![b'a'; 5000], &mut b), Err(libc::ENAMETOOLONG));
        assert_eq!(b.as_cstr().to_bytes().len(), b.as_bytes().len());
    }
}
