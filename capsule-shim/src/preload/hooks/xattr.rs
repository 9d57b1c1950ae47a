//! The extended-attribute reads: getxattr, lgetxattr, listxattr, llistxattr. `ls -l` asks
//! them of every file (for ACLs and security labels); unrouted, a capsule file would be looked
//! up on the host and fail with ENOENT. Each reduces to one routed `getxattrat`/`listxattrat`
//! (Linux 6.13); on an older kernel the tree side is asked by its absolute path instead.
//!
//! The writes: setxattr, lsetxattr, removexattr, lremovexattr. They change the inode, so they
//! are mutations ([`mutate`], `Op::Modify`, as chmod): a capsule file is copied up first, a
//! write-copy host path is copied into the tree, a merged host path is the host's. The tree
//! side is written with `setxattrat`/`removexattrat` (Linux 6.13), or by its absolute path.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_long, c_void};

use super::link::{Op, mutate};
use super::query::anywhere;
use super::stat::routed;
use crate::preload::sys;
use capsule_core::resolve::path::PathBuffer;

const SYS_SETXATTRAT: c_long = 463;
const SYS_GETXATTRAT: c_long = 464;
const SYS_LISTXATTRAT: c_long = 465;
const SYS_REMOVEXATTRAT: c_long = 466;

/// `struct xattr_args` of getxattrat(2).
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

fn at_flags(follow: bool) -> c_long {
    if follow { 0 } else { c_long::from(libc::AT_SYMLINK_NOFOLLOW) }
}

/// Make an xattr call on (`d`, `p`): `at` (the `*xattrat` system call, `d` and `p` as given),
/// or, where the application's call had no directory (`d` is `AT_FDCWD`) or the kernel lacks
/// the `*at` call, `by_path` with a path that needs none ([`anywhere`]).
fn xattr_call(
    d: c_int,
    p: *const c_char,
    at: impl Fn() -> c_long,
    by_path: impl Fn(*const c_char) -> c_long,
) -> c_long {
    if d == libc::AT_FDCWD {
        return by_path(p);
    }
    let r = at();
    if r != -c_long::from(libc::ENOSYS) {
        return r;
    }
    let mut out = PathBuffer::new();
    // SAFETY: `p` is the NUL-terminated path `routed`/`mutate` hand their call.
    match unsafe { anywhere(d, p, &mut out) } {
        Ok(q) => by_path(q),
        Err(e) => e,
    }
}

/// The path system call for a read or write, with or without following a final symlink.
fn by_path_nr(follow: bool, followed: c_long, not_followed: c_long) -> c_long {
    if follow { followed } else { not_followed }
}

/// # Safety
/// C ABI of getxattr(2).
unsafe fn get(path: *const c_char, name: *const c_char, value: *mut c_void, size: usize, follow: bool) -> isize {
    let mut args = XattrArgs { value: value as u64, size: u32::try_from(size).unwrap_or(u32::MAX), flags: 0 };
    let args_ptr = (&raw mut args) as c_long;
    // SAFETY: the caller's NUL-terminated path and name, its buffer of `size` bytes (described
    // by `args`, which lives across the call).
    let r = unsafe {
        routed(libc::AT_FDCWD, path, follow, |d, p| {
            xattr_call(
                d,
                p,
                || {
                    sys::raw(
                        SYS_GETXATTRAT,
                        d.into(),
                        p as c_long,
                        at_flags(follow),
                        name as c_long,
                        args_ptr,
                        core::mem::size_of::<XattrArgs>() as c_long,
                    )
                },
                |q| {
                    let nr = by_path_nr(follow, libc::SYS_getxattr, libc::SYS_lgetxattr);
                    sys::raw(nr, q as c_long, name as c_long, value as c_long, size as c_long, 0, 0)
                },
            )
        })
    };
    r as isize
}

/// # Safety
/// C ABI of listxattr(2).
unsafe fn list(path: *const c_char, out: *mut c_char, size: usize, follow: bool) -> isize {
    // SAFETY: the caller's NUL-terminated path and its buffer of `size` bytes.
    let r = unsafe {
        routed(libc::AT_FDCWD, path, follow, |d, p| {
            xattr_call(
                d,
                p,
                || sys::raw(SYS_LISTXATTRAT, d.into(), p as c_long, at_flags(follow), out as c_long, size as c_long, 0),
                |q| {
                    let nr = by_path_nr(follow, libc::SYS_listxattr, libc::SYS_llistxattr);
                    sys::raw(nr, q as c_long, out as c_long, size as c_long, 0, 0, 0)
                },
            )
        })
    };
    r as isize
}

/// getxattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: usize) -> isize {
    // SAFETY: forwarded from the C caller.
    unsafe { get(path, name, value, size, true) }
}

/// lgetxattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lgetxattr(path: *const c_char, name: *const c_char, value: *mut c_void, size: usize) -> isize {
    // SAFETY: forwarded from the C caller.
    unsafe { get(path, name, value, size, false) }
}

/// listxattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listxattr(path: *const c_char, list_out: *mut c_char, size: usize) -> isize {
    // SAFETY: forwarded from the C caller.
    unsafe { list(path, list_out, size, true) }
}

/// llistxattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llistxattr(path: *const c_char, list_out: *mut c_char, size: usize) -> isize {
    // SAFETY: forwarded from the C caller.
    unsafe { list(path, list_out, size, false) }
}

/// # Safety
/// C ABI of setxattr(2).
unsafe fn set(
    path: *const c_char,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
    follow: bool,
) -> c_int {
    let mut args = XattrArgs {
        value: value as u64,
        size: u32::try_from(size).unwrap_or(u32::MAX),
        flags: u32::try_from(flags).unwrap_or(u32::MAX),
    };
    let args_ptr = (&raw mut args) as c_long;
    // SAFETY: the caller's NUL-terminated path and name, its value of `size` bytes (described
    // by `args`, which lives across the call).
    unsafe {
        mutate(libc::AT_FDCWD, path, Op::Modify, follow, |d, p| {
            xattr_call(
                d,
                p,
                || {
                    sys::raw(
                        SYS_SETXATTRAT,
                        d.into(),
                        p as c_long,
                        at_flags(follow),
                        name as c_long,
                        args_ptr,
                        core::mem::size_of::<XattrArgs>() as c_long,
                    )
                },
                |q| {
                    let nr = by_path_nr(follow, libc::SYS_setxattr, libc::SYS_lsetxattr);
                    sys::raw(nr, q as c_long, name as c_long, value as c_long, size as c_long, flags.into(), 0)
                },
            )
        })
    }
}

/// # Safety
/// C ABI of removexattr(2).
unsafe fn remove(path: *const c_char, name: *const c_char, follow: bool) -> c_int {
    // SAFETY: the caller's NUL-terminated path and name.
    unsafe {
        mutate(libc::AT_FDCWD, path, Op::Modify, follow, |d, p| {
            xattr_call(
                d,
                p,
                || sys::raw(SYS_REMOVEXATTRAT, d.into(), p as c_long, at_flags(follow), name as c_long, 0, 0),
                |q| {
                    let nr = by_path_nr(follow, libc::SYS_removexattr, libc::SYS_lremovexattr);
                    sys::raw(nr, q as c_long, name as c_long, 0, 0, 0, 0)
                },
            )
        })
    }
}

/// setxattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setxattr(
    path: *const c_char,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded from the C caller.
    unsafe { set(path, name, value, size, flags, true) }
}

/// lsetxattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lsetxattr(
    path: *const c_char,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded from the C caller.
    unsafe { set(path, name, value, size, flags, false) }
}

/// removexattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn removexattr(path: *const c_char, name: *const c_char) -> c_int {
    // SAFETY: forwarded from the C caller.
    unsafe { remove(path, name, true) }
}

/// lremovexattr(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int {
    // SAFETY: forwarded from the C caller.
    unsafe { remove(path, name, false) }
}
