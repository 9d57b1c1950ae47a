//! The fortified (`_FORTIFY_SOURCE`) and other second spellings of path calls whose glibc
//! body calls glibc's internal function, out of the hooks' sight: `__realpath_chk`,
//! `__readlink_chk`, `__readlinkat_chk`, `__getcwd_chk`, `__getwd_chk`, getwd,
//! canonicalize_file_name, and the identity pair `__gethostname_chk`/`__getdomainname_chk`.
//!
//! Each checks the caller's buffer size as glibc does (`debug/*_chk.c` in glibc 2.36) and, on
//! an overflow, calls glibc's `__chk_fail` (which reports "buffer overflow detected" and
//! aborts; a plain abort if it cannot be found), then does what the unfortified hook does.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_void};

use super::misc;
use super::real::Real;
use crate::preload::guard::call_out;
use crate::preload::sys::{errno, set_errno};
use capsule_core::resolve::path::{PATH_CAP, PathBuffer};

/// glibc's PATH_MAX, the size `realpath` and `getwd` assume of the caller's buffer.
const PATH_MAX: usize = 4096;

static CHK_FAIL: Real = Real::new(c"__chk_fail");

/// A fortify check failed: glibc's report and abort. Never returns.
fn chk_fail() -> ! {
    let p = CHK_FAIL.get();
    if !p.is_null() {
        // SAFETY: glibc's `__chk_fail` takes nothing and does not return.
        let f = unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> !>(p) };
        // SAFETY: no arguments.
        unsafe { f() }
    }
    // SAFETY: abort(3) is async-signal-safe and takes nothing.
    unsafe { libc::abort() }
}

/// `__realpath_chk`: `resolved` must hold PATH_MAX bytes.
///
/// # Safety
/// C ABI of realpath(3), `resolved` writable for `resolvedlen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __realpath_chk(path: *const c_char, resolved: *mut c_char, resolvedlen: usize) -> *mut c_char {
    if resolvedlen < PATH_MAX {
        chk_fail();
    }
    // SAFETY: forwarded.
    unsafe { misc::realpath(path, resolved) }
}

/// canonicalize_file_name(3): realpath with a buffer it allocates.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    // SAFETY: forwarded; a null `resolved` makes realpath allocate, as glibc's does here.
    unsafe { misc::realpath(path, core::ptr::null_mut()) }
}

/// `__readlink_chk`: `len` must not exceed the buffer's size.
///
/// # Safety
/// C ABI of readlink(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlink_chk(path: *const c_char, buf: *mut c_char, len: usize, buflen: usize) -> isize {
    if len > buflen {
        chk_fail();
    }
    // SAFETY: forwarded.
    unsafe { misc::readlink(path, buf, len) }
}

/// `__readlinkat_chk`.
///
/// # Safety
/// C ABI of readlinkat(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __readlinkat_chk(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    len: usize,
    buflen: usize,
) -> isize {
    if len > buflen {
        chk_fail();
    }
    // SAFETY: forwarded.
    unsafe { misc::readlinkat(dirfd, path, buf, len) }
}

/// `__getcwd_chk`: `size` must not exceed the buffer's size.
///
/// # Safety
/// C ABI of getcwd(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __getcwd_chk(buf: *mut c_char, size: usize, buflen: usize) -> *mut c_char {
    if size > buflen {
        chk_fail();
    }
    // SAFETY: forwarded.
    unsafe { misc::getcwd(buf, size) }
}

/// `__getwd_chk`: getcwd into the caller's buffer of `buflen` bytes; a working directory
/// longer than that is an overflow.
///
/// # Safety
/// `buf` writable for `buflen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __getwd_chk(buf: *mut c_char, buflen: usize) -> *mut c_char {
    // SAFETY: the caller's buffer and its size.
    let r = unsafe { misc::getcwd(buf, buflen) };
    if r.is_null() && errno() == libc::ERANGE {
        chk_fail();
    }
    r
}

/// getwd(3): the working directory into the caller's PATH_MAX buffer, or glibc's message for
/// the error there (and null).
///
/// # Safety
/// `buf` null or writable for PATH_MAX bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getwd(buf: *mut c_char) -> *mut c_char {
    if buf.is_null() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    let mut tmp = PathBuffer::new();
    let (ptr, cap) = tmp.storage();
    // SAFETY: our buffer of `cap` bytes (PATH_CAP, which is PATH_MAX).
    let r = unsafe { misc::getcwd(ptr.cast(), cap.min(PATH_MAX)) };
    if r.is_null() {
        let e = errno();
        // glibc writes strerror's text into the caller's buffer (1024 bytes, as it assumes);
        // a call-out, since a translated message may load a catalogue.
        // SAFETY: `buf` holds PATH_MAX bytes (getwd's contract).
        let _ = call_out(|| unsafe { libc::strerror_r(e, buf, 1024) });
        set_errno(e);
        return core::ptr::null_mut();
    }
    // SAFETY: `r` is our NUL-terminated buffer (at most PATH_MAX bytes with its NUL), `buf`
    // holds PATH_MAX bytes.
    unsafe {
        let len = libc::strlen(r);
        core::ptr::copy_nonoverlapping(r, buf, (len + 1).min(PATH_CAP).min(PATH_MAX));
    }
    buf
}

/// `__gethostname_chk`: glibc's calls its internal gethostname, past the identity hook.
///
/// # Safety
/// C ABI of gethostname(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __gethostname_chk(name: *mut c_char, len: usize, buflen: usize) -> c_int {
    if buflen < len {
        chk_fail();
    }
    // SAFETY: forwarded.
    unsafe { misc::gethostname(name, len) }
}

/// `__getdomainname_chk`.
///
/// # Safety
/// C ABI of getdomainname(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __getdomainname_chk(name: *mut c_char, len: usize, buflen: usize) -> c_int {
    if buflen < len {
        chk_fail();
    }
    // SAFETY: forwarded.
    unsafe { misc::getdomainname(name, len) }
}
