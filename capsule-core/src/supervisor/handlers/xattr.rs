//! The extended-attribute reads of a program without the shim — getxattr, lgetxattr,
//! listxattr, llistxattr (`ls -l` asks them of every file) — performed at the placed path
//! with `getxattrat`/`listxattrat` (Linux 6.13), as the shim's hooks do; on an older kernel a
//! capsule path answers ENOTSUP ("no attributes here"), which callers expect of a filesystem
//! without xattrs. Unplaced, a capsule path would be looked up on the host: ENOENT.
#![allow(unsafe_code)] // getxattrat/listxattrat on our own buffers

use super::{Context, at, errno};
use crate::resolve::Intent;
use crate::supervisor::memory::{TraceeMemory, read_path};
use crate::supervisor::notify::Reply;

const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
/// XATTR_SIZE_MAX and XATTR_LIST_MAX: no value or list is longer.
const XATTR_MAX: usize = 65536;

/// `struct xattr_args` of getxattrat(2).
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

fn at_flags(follow: bool) -> libc::c_long {
    if follow { 0 } else { libc::c_long::from(libc::AT_SYMLINK_NOFOLLOW) }
}

/// The result of a raw call: its value, or the errno (ENOSYS read as ENOTSUP).
fn result(r: libc::c_long) -> Result<usize, i32> {
    usize::try_from(r).map_err(|_| match errno() {
        libc::ENOSYS => libc::ENOTSUP,
        e => e,
    })
}

/// Write the first `n` bytes of `buf` to `out` (nothing when the caller asked for the size).
fn answer(mem: &impl TraceeMemory, out: u64, size: u64, r: Option<Result<(usize, Vec<u8>), i32>>) -> Reply {
    match r {
        None => Reply::Continue,
        Some(Err(e)) => Reply::Error(e),
        Some(Ok((n, buf))) => {
            if size != 0 && (mem.write(out, &buf[..n.min(buf.len())]).is_err() || !mem.still_valid()) {
                return Reply::Error(libc::EFAULT);
            }
            Reply::Value(i64::try_from(n).unwrap_or(i64::MAX))
        }
    }
}

/// The xattr family's reads (the writes are the shim's: a static program's are the kernel's).
pub(super) fn handle(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    Some(match nr {
        libc::SYS_getxattr => get(cx, mem, a[0], a[1], a[2], a[3], true),
        libc::SYS_lgetxattr => get(cx, mem, a[0], a[1], a[2], a[3], false),
        libc::SYS_listxattr => list(cx, mem, a[0], a[1], a[2], true),
        libc::SYS_llistxattr => list(cx, mem, a[0], a[1], a[2], false),
        _ => return None,
    })
}

/// getxattr(2) (`follow`) or lgetxattr(2): attribute `name` of the path at `addr` into
/// `value` (`size` bytes; 0 asks for the size).
fn get(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    addr: u64,
    name: u64,
    value: u64,
    size: u64,
    follow: bool,
) -> Reply {
    let Ok(name) = read_path(mem, name).map(|n| std::ffi::CString::new(n).unwrap_or_default()) else {
        return Reply::Error(libc::EFAULT);
    };
    let cap = usize::try_from(size).unwrap_or(XATTR_MAX).min(XATTR_MAX);
    let r = at(cx, mem, libc::AT_FDCWD, addr, Intent { follow, create: false }, |d, p| {
        let mut buf = vec![0u8; cap];
        #[allow(clippy::cast_possible_truncation)] // at most XATTR_MAX
        let mut args = XattrArgs { value: buf.as_mut_ptr() as u64, size: cap as u32, flags: 0 };
        // SAFETY: `p` and `name` NUL-terminated; the kernel writes at most `cap` bytes to
        // `buf`, which `args` describes and which both live across the call.
        let r = unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                d,
                p.as_ptr(),
                at_flags(follow),
                name.as_ptr(),
                &raw mut args,
                size_of::<XattrArgs>(),
            )
        };
        result(r).map(|n| (n, buf))
    });
    answer(mem, value, size, r)
}

/// listxattr(2) (`follow`) or llistxattr(2): the attribute names of the path at `addr` into
/// `list` (`size` bytes; 0 asks for the size).
fn list(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, addr: u64, out: u64, size: u64, follow: bool) -> Reply {
    let cap = usize::try_from(size).unwrap_or(XATTR_MAX).min(XATTR_MAX);
    let r = at(cx, mem, libc::AT_FDCWD, addr, Intent { follow, create: false }, |d, p| {
        let mut buf = vec![0u8; cap];
        // SAFETY: `p` NUL-terminated; the kernel writes at most `cap` bytes to `buf`.
        let r = unsafe { libc::syscall(SYS_LISTXATTRAT, d, p.as_ptr(), at_flags(follow), buf.as_mut_ptr(), cap) };
        result(r).map(|n| (n, buf))
    });
    answer(mem, out, size, r)
}
