//! glob(3) and glob64(3). glibc's glob lists directories with its internal `__opendir`, which
//! no hook sees, so a pattern over a directory only the capsule has (nginx's `include
//! sites-enabled/*`) would match nothing. The hook hands glob our own directory and stat hooks
//! through `GLOB_ALTDIRFUNC`, glibc's documented way to substitute them; glob itself (and its
//! allocations of the result) stays glibc's.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_void};

use super::{dir, real, stat};
use crate::preload::state;
use crate::preload::sys::set_errno;

/// glibc's `GLOB_ALTDIRFUNC`.
const GLOB_ALTDIRFUNC: c_int = 1 << 9;

type ErrFunc = Option<unsafe extern "C" fn(*const c_char, c_int) -> c_int>;

/// glibc's `glob_t` (and `glob64_t`, the same on x86-64): the caller's, into which the
/// alternative directory functions go.
#[repr(C)]
struct GlobT {
    gl_pathc: usize,
    gl_pathv: *mut *mut c_char,
    gl_offs: usize,
    gl_flags: c_int,
    gl_closedir: unsafe extern "C" fn(*mut c_void),
    gl_readdir: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    gl_opendir: unsafe extern "C" fn(*const c_char) -> *mut c_void,
    gl_lstat: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int,
    gl_stat: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int,
}

unsafe extern "C" fn alt_closedir(d: *mut c_void) {
    // SAFETY: a stream our `alt_opendir` returned.
    unsafe { dir::closedir(d.cast()) };
}

unsafe extern "C" fn alt_readdir(d: *mut c_void) -> *mut c_void {
    // SAFETY: as above.
    unsafe { dir::readdir64(d.cast()) }.cast()
}

unsafe extern "C" fn alt_opendir(p: *const c_char) -> *mut c_void {
    // SAFETY: glob's NUL-terminated directory name.
    unsafe { dir::opendir(p) }.cast()
}

unsafe extern "C" fn alt_lstat(p: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glob's NUL-terminated path and its `struct stat` buffer.
    unsafe { stat::lstat(p, buf.cast()) }
}

unsafe extern "C" fn alt_stat(p: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: as above.
    unsafe { stat::stat(p, buf.cast()) }
}

/// The shared body of both spellings.
///
/// # Safety
/// C ABI of glob(3).
unsafe fn glob_via(
    real_fn: Option<unsafe extern "C" fn(*const c_char, c_int, ErrFunc, *mut c_void) -> c_int>,
    pattern: *const c_char,
    flags: c_int,
    errfunc: ErrFunc,
    pglob: *mut c_void,
) -> c_int {
    let Some(real_fn) = real_fn else {
        set_errno(libc::ENOSYS);
        return libc::GLOB_NOSPACE;
    };
    // A caller that brought its own directory functions keeps them.
    if state().is_none() || pglob.is_null() || flags & GLOB_ALTDIRFUNC != 0 {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real_fn(pattern, flags, errfunc, pglob) };
    }
    let g = pglob.cast::<GlobT>();
    // SAFETY: `pglob` is the caller's writable glob_t (C contract); only the five function
    // fields are written, which glob reads only under GLOB_ALTDIRFUNC.
    unsafe {
        (*g).gl_closedir = alt_closedir;
        (*g).gl_readdir = alt_readdir;
        (*g).gl_opendir = alt_opendir;
        (*g).gl_lstat = alt_lstat;
        (*g).gl_stat = alt_stat;
    }
    // SAFETY: as above, with the directory functions filled in.
    let r = unsafe { real_fn(pattern, flags | GLOB_ALTDIRFUNC, errfunc, pglob) };
    // SAFETY: glob set gl_flags; the caller did not ask for GLOB_ALTDIRFUNC, so it does not
    // see it (a later GLOB_APPEND call passes its own flags again).
    unsafe { (*g).gl_flags &= !GLOB_ALTDIRFUNC };
    r
}

/// glob(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glob(pattern: *const c_char, flags: c_int, errfunc: ErrFunc, pglob: *mut c_void) -> c_int {
    // SAFETY: forwarded from the C caller.
    unsafe { glob_via(real::glob(), pattern, flags, errfunc, pglob) }
}

/// glob64(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn glob64(pattern: *const c_char, flags: c_int, errfunc: ErrFunc, pglob: *mut c_void) -> c_int {
    // SAFETY: forwarded from the C caller.
    unsafe { glob_via(real::glob64(), pattern, flags, errfunc, pglob) }
}
