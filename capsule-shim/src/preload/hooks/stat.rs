//! The metadata family: stat, stat64, lstat, lstat64, fstatat, fstatat64, the old `__xstat`
//! spellings, statx; and access, faccessat, eaccess, euidaccess. All reduce to one routed
//! `*at` call; `struct stat` is the kernel's on x86-64, so newfstatat fills it directly.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_long};

use super::{Effects, at_fd, check, route, unchecked};
use crate::preload::guard::HookGuard;
use crate::preload::state;
use crate::preload::sys::{self, ret};
use capsule_core::boundary::effect;
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

/// Route one path-taking call: `call(dirfd, path)` is made with the application's arguments,
/// a host path, or the tree descriptor and a relative path (materialising on ENOENT).
///
/// # Safety
/// `path` null or NUL-terminated.
pub unsafe fn routed(
    dirfd: c_int,
    path: *const c_char,
    follow: bool,
    mut call: impl FnMut(c_int, *const c_char) -> c_long,
) -> c_int {
    let Some(guard) = HookGuard::enter() else { return ret(call(dirfd, path)) };
    let (Some(st), false) = (state(), path.is_null()) else {
        guard.restore_errno();
        return ret(call(dirfd, path));
    };
    // SAFETY: non-null (checked), NUL-terminated (caller).
    if unsafe { *path } == 0 {
        guard.restore_errno();
        return ret(call(dirfd, path)); // AT_EMPTY_PATH on a descriptor: not a path
    }
    let mut buf = PathBuffer::new();
    // SAFETY: as above.
    let placed = unsafe { route(st, dirfd, path, &mut buf, Intent { follow, create: false }) };
    match effect::read(&mut Effects(st), &placed, |at| {
        let (d, p) = at_fd(st, at);
        check(call(d, p.as_ptr()))
    }) {
        None => {
            guard.restore_errno();
            ret(call(dirfd, path))
        }
        Some(r) => ret(unchecked(r)),
    }
}

/// # Safety
/// `path` NUL-terminated, `buf` writable.
unsafe fn stat_at(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: each call passes a NUL-terminated path and the caller's writable buffer.
    unsafe { routed(dirfd, path, follow, |d, p| sys::newfstatat(d, p, buf, flags)) }
}

macro_rules! stat_hooks {
    ($($name:ident($($pre:ident: $pty:ty),*) => $dirfd:expr, $flags:expr;)*) => {$(
        /// A stat(2) spelling, routed through the capsule.
        ///
        /// # Safety
        /// C ABI: `path` NUL-terminated, `buf` writable `struct stat`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($pre: $pty,)* path: *const c_char, buf: *mut libc::stat) -> c_int {
            // SAFETY: forwarded from the C caller.
            unsafe { stat_at($dirfd, path, buf, $flags) }
        }
    )*};
}

stat_hooks! {
    stat() => libc::AT_FDCWD, 0;
    stat64() => libc::AT_FDCWD, 0;
    lstat() => libc::AT_FDCWD, libc::AT_SYMLINK_NOFOLLOW;
    lstat64() => libc::AT_FDCWD, libc::AT_SYMLINK_NOFOLLOW;
    __xstat(_ver: c_int) => libc::AT_FDCWD, 0;
    __xstat64(_ver: c_int) => libc::AT_FDCWD, 0;
    __lxstat(_ver: c_int) => libc::AT_FDCWD, libc::AT_SYMLINK_NOFOLLOW;
    __lxstat64(_ver: c_int) => libc::AT_FDCWD, libc::AT_SYMLINK_NOFOLLOW;
}

macro_rules! statat_hooks {
    ($($name:ident($($ver:ident)?);)*) => {$(
        /// An fstatat(2) spelling, routed through the capsule.
        ///
        /// # Safety
        /// C ABI: `path` NUL-terminated, `buf` writable `struct stat`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($ver: c_int,)? dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int {
            $(let _ = $ver;)?
            // SAFETY: forwarded from the C caller.
            unsafe { stat_at(dirfd, path, buf, flags) }
        }
    )*};
}

statat_hooks! {
    fstatat();
    fstatat64();
    __fxstatat(ver);
    __fxstatat64(ver);
}

/// statx(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: u32,
    buf: *mut libc::statx,
) -> c_int {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: forwarded; each call passes a NUL-terminated path.
    unsafe { routed(dirfd, path, follow, |d, p| sys::statx(d, p, flags, mask, buf)) }
}

/// faccessat(2) (glibc's faccessat implements AT_EACCESS with faccessat2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: forwarded.
    unsafe { routed(dirfd, path, follow, |d, p| sys::faccessat(d, p, mode, flags)) }
}

/// access(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { faccessat(libc::AT_FDCWD, path, mode, 0) }
}

/// eaccess(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn eaccess(path: *const c_char, mode: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { faccessat(libc::AT_FDCWD, path, mode, libc::AT_EACCESS) }
}

/// euidaccess(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn euidaccess(path: *const c_char, mode: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { faccessat(libc::AT_FDCWD, path, mode, libc::AT_EACCESS) }
}
