//! Tier 1's [`Caller`]: what the boundary layer ([`capsule_core::boundary`]) asks the kernel
//! about this process, with raw syscalls: its cwd, its descriptors' paths and `/proc/self`
//! links, and probes of the sandbox tree. Allocation-free, like every hook.

use core::ffi::{CStr, c_int};

use super::{State, sys};
use capsule_core::boundary::Caller;
use capsule_core::resolve::path::PathBuffer;

/// This process, as the layer sees it.
pub struct Shim<'a>(pub &'a State);

impl Caller for Shim<'_> {
    fn cwd(&self, out: &mut PathBuffer) -> Result<(), c_int> {
        let (ptr, cap) = out.storage();
        // SAFETY: `ptr` is writable for `cap` bytes.
        let r = unsafe { sys::getcwd(ptr, cap) };
        // The kernel counts the NUL.
        let n = usize::try_from(r).ok().and_then(|n| n.checked_sub(1)).ok_or(libc::ENOENT)?;
        out.set_len(n);
        Ok(())
    }

    fn fd_path(&self, fd: c_int, out: &mut PathBuffer) -> Result<(), c_int> {
        fd_path(fd, out).ok_or(libc::EBADF)
    }

    fn proc_link(&self, proc: &[u8], link: &[u8], out: &mut PathBuffer) -> Result<(), c_int> {
        let mut name = PathBuffer::new();
        name.push(b"/proc/")?;
        name.push(proc)?;
        name.push(b"/")?;
        name.push(link)?;
        readlink(libc::AT_FDCWD, name.as_cstr(), out)
    }

    fn probe_tree(&self, rel: &CStr, follow: bool) -> Result<(), c_int> {
        probe(self.0.tree_fd, rel.to_bytes(), follow)
    }

    fn readlink_tree(&self, rel: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
        readlink(self.0.tree_fd, rel, out)
    }

    fn probe_host(&self, abs: &CStr, follow: bool) -> Result<(), c_int> {
        probe(libc::AT_FDCWD, abs.to_bytes(), follow)
    }

    fn readlink_host(&self, abs: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
        readlink(libc::AT_FDCWD, abs, out)
    }
}

/// Whether a symlink is on the way to (`dirfd`, `path`) (`path` normalized: no `.`, `..` or
/// `//`; its final component followed when `follow`): `Err(ELOOP)` when one is, else the
/// walk's own error (ENOENT where a component is missing), as openat2(2) with
/// `RESOLVE_NO_SYMLINKS` answers. Without openat2: every run's filter sends openat2 to the
/// supervisor (its flags are in memory, where a seccomp filter cannot see an `O_TRUNC`), so a
/// probe by openat2 would cost a round trip. Each component is looked at unfollowed
/// (`newfstatat`, `AT_SYMLINK_NOFOLLOW`) from the first: a path the tree does not hold (the
/// common case: a host file under write-copy) costs one call.
fn probe(dirfd: c_int, path: &[u8], follow: bool) -> Result<(), c_int> {
    let mut prefix = PathBuffer::new();
    let mut at = 0;
    loop {
        // The next component's end: the next '/' after a non-empty component, or the end.
        let start = if path.get(at) == Some(&b'/') { at + 1 } else { at };
        let end = path.get(start..).and_then(|r| r.iter().position(|&c| c == b'/')).map_or(path.len(), |i| start + i);
        if end == start {
            return Ok(()); // "/" or a trailing '/': nothing more to look at
        }
        prefix.clear();
        prefix.push(path.get(..end).unwrap_or_default())?;
        // SAFETY: plain struct the kernel fills.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `prefix` is NUL-terminated; `sb` is writable.
        let r = unsafe { sys::newfstatat(dirfd, prefix.as_cstr().as_ptr(), &mut sb, libc::AT_SYMLINK_NOFOLLOW) };
        if r < 0 {
            return Err(c_int::try_from(-r).unwrap_or(libc::EIO));
        }
        let last = end == path.len();
        if sb.st_mode & libc::S_IFMT == libc::S_IFLNK && (!last || follow) {
            return Err(libc::ELOOP);
        }
        if last {
            return Ok(());
        }
        at = end;
    }
}

/// readlinkat(`dirfd`, `path`) into `out`.
fn readlink(dirfd: c_int, path: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
    let (ptr, cap) = out.storage();
    // SAFETY: `path` NUL-terminated; `ptr` writable for `cap - 1` bytes (room for the NUL).
    let r = unsafe { sys::readlinkat(dirfd, path.as_ptr(), ptr.cast(), cap - 1) };
    let n = usize::try_from(r).map_err(|_| c_int::try_from(-r).unwrap_or(libc::EIO))?;
    out.set_len(n);
    Ok(())
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
