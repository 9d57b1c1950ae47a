//! Path calls with no `*at` system call, or one the libc spelling does not reach: statfs,
//! statfs64, statvfs, statvfs64, pathconf, inotify_add_watch, name_to_handle_at. glibc's
//! statvfs and pathconf call its internal `__statfs`, which no hook sees, so a capsule path
//! would be looked up on the host (ENOENT, or the wrong filesystem).
//!
//! Each goes through [`routed`] like the stat family. On the host side (`AT_FDCWD` and the
//! application's or a host path) the call is made as asked; on the tree side (the tree
//! descriptor and a relative path) it is made on an `O_PATH` descriptor of the tree file
//! (`fstatfs`, `fstatvfs`, `fpathconf` accept one), or, for calls that only take a path
//! (`inotify_add_watch`), on the tree's absolute path ([`anywhere`]).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int, c_long, c_void};

use super::real::Real;
use super::stat::routed;
use crate::preload::state;
use crate::preload::sys::{self, set_errno};
use capsule_core::resolve::path::PathBuffer;

/// `p`, relative to `d`, as a path the kernel resolves from anywhere: `p` itself when `d` is
/// `AT_FDCWD` or `p` is absolute; `/proc/self/fd/D/p` otherwise, the tree descriptor's too (a
/// program run as another user than the store's, `run --user`, cannot walk the store's own
/// path: every xattr call of its files failed with EACCES), except for the tree itself (`.`:
/// the descriptor's link would be the final component, not followed under `IN_DONT_FOLLOW`),
/// which is the tree's path. The joined forms are built in `out`. `Err(-errno)`: too long.
///
/// # Safety
/// `p` is NUL-terminated and lives for the call.
pub(crate) unsafe fn anywhere(d: c_int, p: *const c_char, out: &mut PathBuffer) -> Result<*const c_char, c_long> {
    // SAFETY: NUL-terminated (caller).
    let rel = unsafe { CStr::from_ptr(p) }.to_bytes();
    if d == libc::AT_FDCWD || rel.first() == Some(&b'/') {
        return Ok(p);
    }
    out.clear();
    let pushed = match state() {
        Some(st) if st.tree_fd == d && matches!(rel, b"" | b".") => out.push(st.tree),
        _ => {
            let mut digits = [0u8; 12];
            out.push(b"/proc/self/fd/").and_then(|()| out.push(decimal(d, &mut digits)))
        }
    };
    pushed.and_then(|()| out.push(b"/")).and_then(|()| out.push(rel)).map_err(|_| -c_long::from(libc::ENAMETOOLONG))?;
    Ok(out.as_cstr().as_ptr())
}

/// Decimal digits of a descriptor number (negative ones as 0: never a valid directory).
fn decimal(v: c_int, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = u32::try_from(v).unwrap_or(0);
    let mut i = buf.len();
    while let Some(slot) = i.checked_sub(1).and_then(|j| buf.get_mut(j)) {
        // Truncation intended: one decimal digit.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        *slot = b'0' + digit;
        i -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Run `f` on an `O_PATH` descriptor of (`d`, `p`), closed afterwards: `f`'s result, or the
/// open's `-errno`.
fn on_fd(d: c_int, p: *const c_char, mut f: impl FnMut(c_int) -> c_long) -> c_long {
    // SAFETY: `p` is the NUL-terminated path `routed` hands its call.
    let fd = unsafe { sys::openat(d, p, libc::O_PATH | libc::O_CLOEXEC, 0) };
    let Ok(fd) = c_int::try_from(fd) else { return -c_long::from(libc::EMFILE) };
    if fd < 0 {
        return c_long::from(fd);
    }
    let r = f(fd);
    sys::close(fd);
    r
}

/// A libc function's result in the kernel convention (`-1` plus errno to `-errno`).
fn kernel(r: c_int) -> c_long {
    if r == -1 { -c_long::from(sys::errno()) } else { c_long::from(r) }
}

/// statfs(2), and statfs64 (the same structure on x86-64).
///
/// # Safety
/// `path` null or NUL-terminated; `buf` a writable `struct statfs`.
unsafe fn statfs_at(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    // SAFETY: each call gets a NUL-terminated path and the caller's buffer.
    unsafe {
        routed(libc::AT_FDCWD, path, true, |d, p| {
            if d == libc::AT_FDCWD {
                sys::raw(libc::SYS_statfs, p as c_long, buf as c_long, 0, 0, 0, 0)
            } else {
                on_fd(d, p, |fd| sys::raw(libc::SYS_fstatfs, fd.into(), buf as c_long, 0, 0, 0, 0))
            }
        })
    }
}

/// statfs(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    // SAFETY: forwarded.
    unsafe { statfs_at(path, buf) }
}

/// statfs64.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statfs64(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    // SAFETY: forwarded.
    unsafe { statfs_at(path, buf) }
}

static STATVFS: Real = Real::new(c"statvfs");
static FSTATVFS: Real = Real::new(c"fstatvfs");
static PATHCONF: Real = Real::new(c"pathconf");
static FPATHCONF: Real = Real::new(c"fpathconf");

/// statvfs(3): glibc's own, by path on the host side and on a descriptor in the tree.
///
/// # Safety
/// `path` null or NUL-terminated; `buf` a writable `struct statvfs`.
unsafe fn statvfs_at(path: *const c_char, buf: *mut libc::statvfs) -> c_int {
    let (by_path, by_fd) = (STATVFS.get(), FSTATVFS.get());
    if by_path.is_null() || by_fd.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    type ByPath = unsafe extern "C" fn(*const c_char, *mut libc::statvfs) -> c_int;
    type ByFd = unsafe extern "C" fn(c_int, *mut libc::statvfs) -> c_int;
    // SAFETY: libc's statvfs and fstatvfs have these signatures.
    let (by_path, by_fd) = unsafe {
        (core::mem::transmute::<*mut c_void, ByPath>(by_path), core::mem::transmute::<*mut c_void, ByFd>(by_fd))
    };
    // SAFETY: each call gets a NUL-terminated path or our descriptor, and the caller's buffer.
    unsafe {
        routed(libc::AT_FDCWD, path, true, |d, p| {
            if d == libc::AT_FDCWD { kernel(by_path(p, buf)) } else { on_fd(d, p, |fd| kernel(by_fd(fd, buf))) }
        })
    }
}

/// statvfs(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statvfs(path: *const c_char, buf: *mut libc::statvfs) -> c_int {
    // SAFETY: forwarded.
    unsafe { statvfs_at(path, buf) }
}

/// statvfs64 (the same structure on x86-64).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statvfs64(path: *const c_char, buf: *mut libc::statvfs) -> c_int {
    // SAFETY: forwarded.
    unsafe { statvfs_at(path, buf) }
}

/// pathconf(3). Its result is a limit, or -1 with errno unchanged for "no limit", so the
/// value travels beside [`routed`]'s status.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pathconf(path: *const c_char, name: c_int) -> c_long {
    let (by_path, by_fd) = (PATHCONF.get(), FPATHCONF.get());
    if by_path.is_null() || by_fd.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    type ByPath = unsafe extern "C" fn(*const c_char, c_int) -> c_long;
    type ByFd = unsafe extern "C" fn(c_int, c_int) -> c_long;
    // SAFETY: libc's pathconf and fpathconf have these signatures.
    let (by_path, by_fd) = unsafe {
        (core::mem::transmute::<*mut c_void, ByPath>(by_path), core::mem::transmute::<*mut c_void, ByFd>(by_fd))
    };
    let mut value: c_long = -1;
    // SAFETY: each call gets a NUL-terminated path or our descriptor.
    let r = unsafe {
        routed(libc::AT_FDCWD, path, true, |d, p| {
            if d == libc::AT_FDCWD {
                value = by_path(p, name);
                // A failed lookup on the tree side is retried on the host by `routed`.
                if value == -1 && sys::errno() == libc::ENOENT { -c_long::from(libc::ENOENT) } else { 0 }
            } else {
                on_fd(d, p, |fd| {
                    value = by_fd(fd, name);
                    0
                })
            }
        })
    };
    if r < 0 { -1 } else { value }
}

/// inotify_add_watch(2): a capsule path is watched in the tree (by its absolute tree path:
/// the call takes no directory descriptor, and `/proc/self/fd/N` would be the watched link
/// itself under `IN_DONT_FOLLOW`).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    let follow = mask & libc::IN_DONT_FOLLOW == 0;
    // SAFETY: each call gets a NUL-terminated path; `fd` and `mask` are the caller's.
    unsafe {
        routed(libc::AT_FDCWD, path, follow, |d, p| {
            let mut out = PathBuffer::new();
            match anywhere(d, p, &mut out) {
                Ok(q) => sys::raw(libc::SYS_inotify_add_watch, fd.into(), q as c_long, mask.into(), 0, 0, 0),
                Err(e) => e,
            }
        })
    }
}

/// name_to_handle_at(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn name_to_handle_at(
    dirfd: c_int,
    path: *const c_char,
    handle: *mut c_void,
    mount_id: *mut c_int,
    flags: c_int,
) -> c_int {
    let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
    // SAFETY: each call gets a NUL-terminated path and the caller's buffers.
    unsafe {
        routed(dirfd, path, follow, |d, p| {
            sys::raw(
                libc::SYS_name_to_handle_at,
                d.into(),
                p as c_long,
                handle as c_long,
                mount_id as c_long,
                flags.into(),
                0,
            )
        })
    }
}
