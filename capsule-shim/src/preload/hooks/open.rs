//! The open family: open, open64, openat, openat64, the fortify `__open_2` spellings, creat,
//! creat64, fopen, fopen64, freopen, freopen64.
//!
//! `open` and `openat` are C-variadic. Stable Rust cannot define a variadic function, so they
//! are defined with a fixed `mode` parameter: on x86-64 SysV, variadic integer arguments are
//! passed in the same registers as fixed ones, so `mode` is read from where the caller put it
//! (and is garbage, never read, unless O_CREAT or O_TMPFILE is set, exactly as in C). The
//! crate refuses to build for other architectures.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int};

use super::{Effects, Route, at_fd, check, ensure_private, real, route, unchecked};
use crate::preload::client;
use crate::preload::guard::HookGuard;
use crate::preload::state;
use crate::preload::sys::{self, ret, set_errno};
use capsule_core::boundary::effect::{self, host_call};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;
use capsule_core::view::Kind;

/// openat(2) through the capsule. Returns the kernel convention (fd or -errno).
///
/// # Safety
/// `path` is null or NUL-terminated.
unsafe fn open_at(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    let passthrough = || {
        // SAFETY: the application's arguments, unchanged.
        ret(unsafe { sys::openat(dirfd, path, flags, mode) })
    };
    let Some(guard) = HookGuard::enter() else { return passthrough() };
    let Some(st) = state() else { return passthrough() };
    if path.is_null() {
        guard.restore_errno();
        return passthrough();
    }
    let mut buf = PathBuffer::new();
    // SAFETY: non-null and NUL-terminated (caller).
    let placed = unsafe { route(st, dirfd, path, &mut buf, effect::open_intent(flags)) };
    let host = super::on_host(&placed);
    let opened = effect::open(&mut Effects(st), &placed, flags, |at, flags| {
        let (d, p) = at_fd(st, at);
        // SAFETY: the placed path is NUL-terminated and outlives the call.
        check(unsafe { super::openat_placed(st, d, p, flags, mode) })
    });
    let r = match opened {
        None => {
            guard.restore_errno();
            // SAFETY: the application's arguments, unchanged.
            unsafe { sys::openat(dirfd, path, flags, mode) }
        }
        Some(r) => unchecked(r),
    };
    if host && effect::opens_to_write(flags) {
        // Mode bits only: a variadic caller's garbage is ignored without O_CREAT anyway.
        let m = mode & 0o7777;
        return ret(super::brokered(r, &buf, |p| client::host(host_call::OPEN, flags, m, p, None)));
    }
    ret(r)
}

/// open(2).
///
/// # Safety
/// C ABI: `path` NUL-terminated; `mode` meaningful only with O_CREAT/O_TMPFILE.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded from our caller.
    unsafe { open_at(libc::AT_FDCWD, path, flags, mode) }
}

/// open64: the same call on 64-bit.
///
/// # Safety
/// As [`open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(libc::AT_FDCWD, path, flags, mode) }
}

/// openat(2).
///
/// # Safety
/// As [`open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(dirfd, path, flags, mode) }
}

/// openat64.
///
/// # Safety
/// As [`open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(dirfd, path, flags, mode) }
}

/// `__open_2`: the fortify spelling (no mode: O_CREAT is not allowed through it).
///
/// # Safety
/// `path` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(libc::AT_FDCWD, path, flags, 0) }
}

/// `__open64_2`.
///
/// # Safety
/// As [`__open_2`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(libc::AT_FDCWD, path, flags, 0) }
}

/// `__openat_2`.
///
/// # Safety
/// As [`__open_2`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(dirfd, path, flags, 0) }
}

/// `__openat64_2`.
///
/// # Safety
/// As [`__open_2`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(dirfd, path, flags, 0) }
}

/// creat(2).
///
/// # Safety
/// `path` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat(path: *const c_char, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode) }
}

/// creat64.
///
/// # Safety
/// As [`creat`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_at(libc::AT_FDCWD, path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode) }
}

/// fopen(3) mode string → open(2) flags, as glibc parses it.
///
/// # Safety
/// `mode` NUL-terminated.
unsafe fn fopen_flags(mode: *const c_char) -> Option<c_int> {
    // SAFETY: caller guarantees a C string.
    let m = unsafe { core::ffi::CStr::from_ptr(mode) }.to_bytes();
    let mut flags = match m.first()? {
        b'r' => libc::O_RDONLY,
        b'w' => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        b'a' => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        _ => return None,
    };
    for c in m.iter().skip(1) {
        match c {
            b'+' => flags = (flags & !libc::O_WRONLY) | libc::O_RDWR,
            b'e' => flags |= libc::O_CLOEXEC,
            b'x' => flags |= libc::O_EXCL,
            _ => {}
        }
    }
    Some(flags)
}

/// fopen through the capsule: the descriptor comes from our openat, the stream from fdopen.
///
/// # Safety
/// `path`, `mode` NUL-terminated (or null, which the real function reports).
unsafe fn fopen_common(
    path: *const c_char,
    mode: *const c_char,
    real_fn: Option<unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE>,
) -> *mut libc::FILE {
    let (Some(real_fn), Some(fdopen)) = (real_fn, real::fdopen()) else {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    // SAFETY: `mode` checked non-null first.
    let flags = if mode.is_null() { None } else { unsafe { fopen_flags(mode) } };
    let (Some(flags), false, Some(_)) = (flags, path.is_null(), state()) else {
        // SAFETY: unchanged arguments.
        return unsafe { real_fn(path, mode) };
    };
    // SAFETY: non-null NUL-terminated path; 0o666 as fopen(3) creates files.
    let fd = unsafe { open_at(libc::AT_FDCWD, path, flags, 0o666) };
    if fd < 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: `fd` is ours to hand over; `mode` is the application's valid mode string.
    let f = unsafe { fdopen(fd, mode) };
    if f.is_null() {
        sys::close(fd);
    }
    f
}

/// fopen(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: forwarded.
    unsafe { fopen_common(path, mode, real::fopen()) }
}

/// fopen64(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: forwarded.
    unsafe { fopen_common(path, mode, real::fopen64()) }
}

/// freopen(3): reopen `stream` on the routed path. With a null path (mode change only) the
/// real function is used as it is.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen(path: *const c_char, mode: *const c_char, stream: *mut libc::FILE) -> *mut libc::FILE {
    // SAFETY: forwarded.
    unsafe { freopen_common(path, mode, stream, real::freopen()) }
}

/// freopen64(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: forwarded.
    unsafe { freopen_common(path, mode, stream, real::freopen64()) }
}

type Freopen = unsafe extern "C" fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;

/// # Safety
/// C ABI of freopen.
unsafe fn freopen_common(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
    real_fn: Option<Freopen>,
) -> *mut libc::FILE {
    let Some(real_fn) = real_fn else {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    let (Some(guard), Some(st), false) = (HookGuard::enter(), state(), path.is_null()) else {
        // SAFETY: unchanged arguments.
        return unsafe { real_fn(path, mode, stream) };
    };
    let mut buf = PathBuffer::new();
    let mut tree = PathBuffer::new();
    // SAFETY: `mode` is freopen's NUL-terminated mode string (or null).
    let writes =
        mode.is_null() || unsafe { core::ffi::CStr::from_ptr(mode) }.to_bytes().iter().any(|c| b"wa+".contains(c));
    // SAFETY: non-null, NUL-terminated.
    let target = match unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: true }) } {
        Route::Original => path,
        Route::Host(p) => p.as_ptr(),
        Route::ReadOnly(_) if writes => {
            set_errno(libc::EROFS);
            return core::ptr::null_mut();
        }
        Route::ReadOnly(p) => p.as_ptr(),
        Route::Tree(rel, entry) if tree.push(st.tree).is_ok() => {
            if entry.is_some_and(|e| e.kind == Kind::File)
                && let Err(e) = ensure_private(st, rel)
                && writes
            {
                set_errno(e);
                return core::ptr::null_mut();
            }
            let _ = (tree.push(b"/"), tree.push(rel.to_bytes()));
            tree.as_cstr().as_ptr()
        }
        Route::Deny(e) => {
            set_errno(e);
            return core::ptr::null_mut();
        }
        Route::TreeThenHost(_, abs) => abs.as_ptr(),
        Route::Tree(..) => path,
    };
    guard.restore_errno();
    // SAFETY: `target` is a NUL-terminated path living until the call returns.
    unsafe { real_fn(target, mode, stream) }
}
