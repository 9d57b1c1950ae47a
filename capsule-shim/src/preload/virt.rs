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
        // The kernel's name for the tree (its path may hold a symlink: a store under a
        // symlinked $HOME), then the name each probed file must have.
        let mut want = PathBuffer::new();
        fd_path(self.0.tree_fd, &mut want).ok_or(libc::EIO)?;
        if !rel.to_bytes().is_empty() {
            want.push(b"/")?;
            want.push(rel.to_bytes())?;
        }
        probe(self.0.tree_fd, rel, follow, &mut want)
    }

    fn readlink_tree(&self, rel: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
        readlink(self.0.tree_fd, rel, out)
    }

    fn probe_host(&self, abs: &CStr, follow: bool) -> Result<(), c_int> {
        let mut want = PathBuffer::new();
        want.push(abs.to_bytes())?;
        probe(libc::AT_FDCWD, abs, follow, &mut want)
    }

    fn readlink_host(&self, abs: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
        readlink(libc::AT_FDCWD, abs, out)
    }
}

/// Whether a symlink is on the way to (`dirfd`, `path`) (`path` normalized: no `.`, `..` or
/// `//`; its final component followed when `follow`): `Err(ELOOP)` when one is, as
/// openat2(2) with `RESOLVE_NO_SYMLINKS` answers. `want` is the kernel's name the file has
/// when none is (the directory's own name joined with `path`). Without openat2: the filters
/// send every openat2 to the supervisor (its flags are in memory, where a seccomp filter
/// cannot see an `O_TRUNC`), so a probe by openat2 would cost a round trip.
///
/// The deepest component that exists is opened `O_PATH` (by `openat`, following symlinks on
/// the way) and named by `/proc/self/fd`: a name other than `want`'s (cut to the same
/// component) means a symlink was followed. A final component that opens only unfollowed is
/// a dangling symlink, which `follow` would have followed: ELOOP too.
fn probe(dirfd: c_int, path: &CStr, follow: bool, want: &mut PathBuffer) -> Result<(), c_int> {
    let mut p = PathBuffer::new();
    p.push(path.to_bytes())?;
    let mut follow = follow;
    loop {
        let name = if p.as_bytes().is_empty() { c"." } else { p.as_cstr() };
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        // SAFETY: `name` is NUL-terminated and lives for the call.
        let r = unsafe { sys::openat(dirfd, name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | nofollow, 0) };
        let fd = match c_int::try_from(r) {
            Ok(fd) if fd >= 0 => fd,
            _ => {
                let e = c_int::try_from(-r).unwrap_or(libc::EIO);
                if e != libc::ENOENT && e != libc::ENOTDIR {
                    return Err(e);
                }
                if follow {
                    // A dangling symlink opens unfollowed.
                    // SAFETY: as above.
                    let r = unsafe {
                        sys::openat(dirfd, name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0)
                    };
                    if let Ok(fd) = c_int::try_from(r)
                        && fd >= 0
                    {
                        sys::close(fd);
                        return Err(libc::ELOOP);
                    }
                }
                // The parent, then: every component before the last is followed.
                let old = p.as_bytes().len();
                let Some(new) = parent_len(p.as_bytes()) else { return Err(e) };
                let relative = p.as_bytes().first() != Some(&b'/');
                let sep = usize::from(relative && new == 0);
                p.truncate(new);
                want.truncate((want.as_bytes().len() + new).saturating_sub(old + sep));
                follow = true;
                continue;
            }
        };
        let mut got = PathBuffer::new();
        let named = fd_path(fd, &mut got);
        sys::close(fd);
        return match named {
            Some(()) if got.as_bytes() == want.as_bytes() => Ok(()),
            Some(()) => Err(libc::ELOOP),
            // No /proc: the kernel's own check, at a supervisor round trip under tier 2.
            None => {
                let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
                let resolve = libc::RESOLVE_NO_SYMLINKS;
                // SAFETY: as above.
                let r =
                    unsafe { sys::openat2(dirfd, name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | nofollow, resolve) };
                match c_int::try_from(r) {
                    Ok(fd) if fd >= 0 => {
                        sys::close(fd);
                        Ok(())
                    }
                    _ => Err(c_int::try_from(-r).unwrap_or(libc::EIO)),
                }
            }
        };
    }
}

/// The length of `p`'s parent: "a/b" → "a", "a" → "" (the directory itself), "/a" → "/";
/// `None` for "" and "/".
fn parent_len(p: &[u8]) -> Option<usize> {
    if p.is_empty() || p == b"/" {
        return None;
    }
    Some(match p.iter().rposition(|&c| c == b'/') {
        None => 0,
        Some(0) => 1,
        Some(i) => i,
    })
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
