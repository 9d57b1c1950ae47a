//! The extended-attribute reads: getxattr, lgetxattr, listxattr, llistxattr. `ls -l` asks
//! them of every file (for ACLs and security labels); unrouted, a capsule file would be looked
//! up on the host and fail with ENOENT. Each reduces to one routed `getxattrat`/`listxattrat`
//! (Linux 6.13); on an older kernel a capsule path answers ENOTSUP ("no attributes here"),
//! which is what callers expect of a filesystem without xattrs.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_long, c_void};

use super::stat::routed;
use crate::preload::sys;

const SYS_GETXATTRAT: c_long = 464;
const SYS_LISTXATTRAT: c_long = 465;

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

fn enosys_is_enotsup(r: c_long) -> c_long {
    if r == -c_long::from(libc::ENOSYS) { -c_long::from(libc::ENOTSUP) } else { r }
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
            enosys_is_enotsup(sys::raw(
                SYS_GETXATTRAT,
                d.into(),
                p as c_long,
                at_flags(follow),
                name as c_long,
                args_ptr,
                core::mem::size_of::<XattrArgs>() as c_long,
            ))
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
            enosys_is_enotsup(sys::raw(
                SYS_LISTXATTRAT,
                d.into(),
                p as c_long,
                at_flags(follow),
                out as c_long,
                size as c_long,
                0,
            ))
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
