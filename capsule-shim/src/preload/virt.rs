//! From the application's (dirfd, path) to a normalised absolute virtual path.
//!
//! Absolute paths are normalised ([`capsule_core::resolve::normalize`]: lexically, except that ".."
//! after a capsule symlink pops from its destination, as the kernel would). A relative path is
//! joined to the directory it is relative to (the cwd, or a directory descriptor via
//! /proc/self/fd), translated back from the tree to the virtual namespace when that directory
//! is inside the tree. Paths that point into the tree already are left alone (idempotence).

use core::ffi::c_int;

use super::{State, sys};
use capsule_core::resolve::path::PathBuffer;
use capsule_core::resolve::{normalize, untree};

/// The virtual form of an argument.
pub struct Virtual {
    /// The buffer differs from the argument (relative, or inside the tree, or through a capsule
    /// symlink): a pass-through must use the buffer, not the argument.
    pub rewritten: bool,
    /// The argument ends in '/' (or "/.", "/.."): only a directory will do, and a final
    /// symlink is followed.
    pub must_be_dir: bool,
}

/// Build the virtual path of (`dirfd`, `path`) into `out` ("/a/b"). `None`: leave the call
/// alone (an empty path, a path already inside the tree, or one we cannot place).
/// `Some(Err(errno))`: the walk through the capsule fails (a capsule file used as a
/// directory, a symlink loop).
pub fn virtualize(st: &State, dirfd: c_int, path: &[u8], out: &mut PathBuffer) -> Option<Result<Virtual, c_int>> {
    // "" is ENOENT, or the descriptor itself with AT_EMPTY_PATH: the kernel's business.
    if path.is_empty() {
        return None;
    }
    if path.first() == Some(&b'/') {
        if untree(st.tree, path).is_some() {
            return None;
        }
        return walk(st, b"", path, out, false);
    }
    let mut base = PathBuffer::new();
    let n = if dirfd == libc::AT_FDCWD {
        let (ptr, cap) = base.storage();
        // SAFETY: `ptr` is writable for `cap` bytes.
        let r = unsafe { sys::getcwd(ptr, cap) };
        usize::try_from(r).ok()?.checked_sub(1)? // the kernel counts the NUL
    } else {
        fd_path(dirfd, &mut base)?;
        base.as_bytes().len()
    };
    base.set_len(n);
    let (dir, in_tree) = match untree(st.tree, base.as_bytes()) {
        Some(v) => (v, true),
        None => (base.as_bytes(), false),
    };
    walk(st, dir, path, out, in_tree || dirfd != libc::AT_FDCWD)
}

/// The path descriptor `fd` was opened with, as `/proc/self/fd/FD` names it, into `out`
/// (NUL-terminated). `None`: not a descriptor, or a path too long.
pub fn fd_path(fd: c_int, out: &mut PathBuffer) -> Option<()> {
    let mut link = PathBuffer::new();
    link.push(b"/proc/self/fd/").ok()?;
    let mut digits = [0u8; 12];
    link.push(itoa(fd, &mut digits)).ok()?;
    let (ptr, cap) = out.storage();
    // SAFETY: `link` is NUL-terminated; `ptr` writable for `cap - 1` bytes (room for the NUL).
    let r = unsafe { sys::readlinkat(libc::AT_FDCWD, link.as_cstr().as_ptr(), ptr.cast(), cap - 1) };
    out.set_len(usize::try_from(r).ok()?);
    Some(())
}

/// Normalise through the view; a path too long to normalise is left to the kernel.
fn walk(st: &State, base: &[u8], path: &[u8], out: &mut PathBuffer, rewritten: bool) -> Option<Result<Virtual, c_int>> {
    match normalize(&st.view, base, path, out) {
        Ok(w) => Some(Ok(Virtual { rewritten: rewritten || w.substituted, must_be_dir: w.must_be_dir })),
        Err(libc::ENAMETOOLONG) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Decimal digits of a non-negative `v` into `buf`.
fn itoa(v: c_int, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = u32::try_from(v).unwrap_or(0);
    let mut i = buf.len();
    loop {
        i -= 1;
        // Truncation intended: a single decimal digit.
        #[allow(clippy::cast_possible_truncation)]
        let d = (n % 10) as u8;
        buf[i] = b'0' + d;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}
