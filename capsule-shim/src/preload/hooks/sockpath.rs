//! Unix socket paths (`bind` and `connect` of an AF_UNIX socket named by a path): the path is
//! placed like any other (a server binding `/run/mysqld/mysqld.sock` under write-copy makes its
//! socket in the sandbox tree, and a client of the capsule connecting to that path reaches
//! it there). A tree path goes to the kernel as `/proc/self/fd/TREE_FD/REL`: `sun_path` holds
//! 107 bytes, which the store's own path often exceeds, and a program started as another user
//! (`run --user`) reaches the tree only through that descriptor. Abstract names and autobind
//! pass through. Tier 2's supervisor places a static program's the same way
//! (`capsule_core::supervisor::net`).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_long};

use super::{Effects, check, route};
use crate::preload::client;
use crate::preload::guard::HookGuard;
use crate::preload::sys::{self, ret, set_errno};
use crate::preload::{State, state};
use capsule_core::boundary::effect::{self, At, host_call};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

/// `sun_path`'s size.
const SUN_PATH: usize = 108;
/// Where `sun_path` starts in a `sockaddr_un`.
const PATH_AT: usize = 2;

/// The path of an AF_UNIX `addr` of `len` bytes, NUL-terminated into `out`, when it names one
/// (not abstract, not autobind).
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
unsafe fn unix_path(addr: *const libc::sockaddr, len: libc::socklen_t, out: &mut [u8; SUN_PATH + 1]) -> bool {
    let len = len as usize;
    if addr.is_null() || len <= PATH_AT || len > PATH_AT + SUN_PATH {
        return false;
    }
    // SAFETY: non-null with at least two readable bytes (checked above); the family is first.
    if c_int::from(unsafe { (*addr).sa_family }) != libc::AF_UNIX {
        return false;
    }
    // SAFETY: `len` readable bytes (caller), of which those after the family are the path.
    let bytes = unsafe { core::slice::from_raw_parts(addr.cast::<u8>().add(PATH_AT), len - PATH_AT) };
    let path = bytes.split(|&b| b == 0).next().unwrap_or_default();
    if path.is_empty() {
        return false;
    }
    out.fill(0);
    match out.get_mut(..path.len()) {
        Some(d) => d.copy_from_slice(path),
        None => return false,
    }
    true
}

/// A `sockaddr_un` naming `path` (`Err(ENAMETOOLONG)` when it does not fit).
fn sockaddr(path: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t), c_int> {
    // SAFETY: plain data; all zeroes is a valid (empty) address.
    let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    sa.sun_family = libc::sa_family_t::try_from(libc::AF_UNIX).unwrap_or(1);
    let slot = sa.sun_path.get_mut(..path.len()).filter(|_| path.len() < SUN_PATH).ok_or(libc::ENAMETOOLONG)?;
    for (d, &s) in slot.iter_mut().zip(path) {
        *d = s.cast_signed();
    }
    let len = libc::socklen_t::try_from(PATH_AT + path.len() + 1).map_err(|_| libc::ENAMETOOLONG)?;
    Ok((sa, len))
}

/// `/proc/self/fd/TREE_FD/REL` into `out`.
fn via_tree(st: &State, rel: &[u8], out: &mut PathBuffer) -> Result<(), c_int> {
    out.clear();
    out.push(b"/proc/self/fd/")?;
    let mut digits = [0u8; 20];
    out.push(sys::decimal(u64::from(st.tree_fd.unsigned_abs()), &mut digits))?;
    out.push(b"/")?;
    out.push(rel)
}

/// The kernel's `nr` (bind or connect) on `fd` with `target` as the path.
fn raw_with(nr: c_long, fd: c_int, target: &[u8]) -> Result<(), c_int> {
    let (sa, sa_len) = sockaddr(target)?;
    // SAFETY: the caller's socket and our sockaddr_un of `sa_len` bytes.
    check(unsafe { sys::raw(nr, fd.into(), (&raw const sa) as c_long, c_long::from(sa_len), 0, 0, 0) }).map(drop)
}

/// The kernel's `nr` (bind or connect) on `fd` with a path of the view in place of `addr`'s, or
/// `None` when `addr` names no path or there is nothing to place (the caller's own call then).
///
/// # Safety
/// `addr` is null or points to `len` readable bytes.
pub unsafe fn call(nr: c_long, fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<c_int> {
    let mut path = [0u8; SUN_PATH + 1];
    // SAFETY: the caller's address (contract above).
    if !unsafe { unix_path(addr, len, &mut path) } {
        return None;
    }
    let guard = HookGuard::enter()?;
    let st = state().filter(|st| st.tree_fd >= 0)?;
    let create = nr == libc::SYS_bind;
    let mut buf = PathBuffer::new();
    let mut tree = PathBuffer::new();
    let intent = Intent { follow: !create, create };
    // SAFETY: `path` is NUL-terminated (one byte more than sun_path, zeroed).
    let placed = unsafe { route(st, libc::AT_FDCWD, path.as_ptr().cast::<c_char>(), &mut buf, intent) };
    let mut at_tree = |rel: &core::ffi::CStr| {
        via_tree(st, rel.to_bytes(), &mut tree).and_then(|()| raw_with(nr, fd, tree.as_bytes()))
    };
    let r = if create {
        let host = super::on_host(&placed);
        // A new name, as mknod makes one: the host's directories above it mirrored into the
        // tree under write-copy.
        let made = effect::mutate(&mut Effects(st), &placed, effect::Op::Create, |at| match at {
            At::Tree(rel) => at_tree(rel),
            At::Host(abs) => raw_with(nr, fd, abs.to_bytes()),
        });
        let r = match made {
            Some(r) => r,
            None => raw_with(nr, fd, path.split(|&c| c == 0).next().unwrap_or_default()),
        };
        // Directly beside the store (a merged prefix Landlock expanded): the broker binds
        // this very socket there.
        match r {
            Err(libc::EACCES) if host && buf.as_bytes().first() == Some(&b'/') => {
                let b = client::host_with(host_call::BIND, 0, 0, buf.as_bytes(), None, Some(fd));
                check(b).map(drop)
            }
            r => r,
        }
    } else {
        // Used as a read is (tier 2's `connect` too): a socket the sandbox made wins over the
        // host's name.
        effect::read(&mut Effects(st), &placed, |at| match at {
            At::Tree(rel) => at_tree(rel),
            At::Host(abs) => raw_with(nr, fd, abs.to_bytes()),
        })?
    };
    Some(match r {
        Ok(()) => {
            guard.restore_errno();
            0
        }
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

/// connect(2): an AF_UNIX path is placed (module docs); anything else is the kernel's.
///
/// # Safety
/// C ABI: `addr` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int {
    // SAFETY: the caller's address.
    if let Some(r) = unsafe { call(libc::SYS_connect, fd, addr, len) } {
        return r;
    }
    // SAFETY: the caller's socket and address, unchanged.
    ret(unsafe { sys::raw(libc::SYS_connect, fd.into(), addr as c_long, c_long::from(len), 0, 0, 0) })
}

/// The path a name the kernel holds for a socket (`name`, `sun_path` bytes up to the first
/// NUL) stands for in the view (`capsule_core::boundary::unplaced_socket`: `/REL` for
/// `/proc/self/fd/TREE_FD/REL`, how [`call`] names a tree path to the kernel, or another
/// process's spelling of a socket the tree holds), written into `out`; `None` for any other.
fn unplaced<'o>(st: &State, name: &[u8], out: &'o mut [u8; SUN_PATH + 1]) -> Option<&'o [u8]> {
    let tree_socket = |rel: &[u8]| {
        let mut p = PathBuffer::new();
        // SAFETY: plain struct, filled by the kernel.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `p` NUL-terminated, relative to our tree descriptor; `sb` writable.
        p.push(rel).is_ok()
            && unsafe { sys::newfstatat(st.tree_fd, p.as_cstr().as_ptr(), &mut sb, libc::AT_SYMLINK_NOFOLLOW) } == 0
            && sb.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    let rest = capsule_core::boundary::unplaced_socket(name, i64::from(st.tree_fd), tree_socket)?;
    let dst = out.get_mut(..rest.len())?;
    dst.copy_from_slice(rest);
    out.get(..rest.len())
}

/// getsockname(2) or getpeername(2) (`nr`): the kernel's answer, with a socket path named
/// through the tree ([`call`]) given back as the program named it (`/run/app.sock`, not
/// `/proc/self/fd/N/run/app.sock`). The address is fetched whole into a buffer of our own,
/// then copied into the caller's as the kernel would: truncated to the size it offered, with
/// `*len` set to the full size.
///
/// # Safety
/// `addr` points to `*len` writable bytes, `len` to a writable length (or either is invalid,
/// as the kernel reports: EFAULT).
unsafe fn name_of(nr: c_long, fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    if addr.is_null() || len.is_null() {
        // SAFETY: the caller's arguments, unchanged: the kernel answers EFAULT or EINVAL.
        return ret(unsafe { sys::raw(nr, fd.into(), addr as c_long, len as c_long, 0, 0, 0) });
    }
    // SAFETY: plain data, zeroed.
    let mut sa: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    let mut sa_len = libc::socklen_t::try_from(core::mem::size_of::<libc::sockaddr_storage>()).unwrap_or(128);
    // SAFETY: our buffer of `sa_len` bytes and its length.
    let r = unsafe { sys::raw(nr, fd.into(), (&raw mut sa) as c_long, (&raw mut sa_len) as c_long, 0, 0, 0) };
    if r < 0 {
        return ret(r);
    }
    let full = (sa_len as usize).min(core::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `sa` is ours and holds `full` initialised bytes.
    let bytes = unsafe { core::slice::from_raw_parts((&raw const sa).cast::<u8>(), full) };
    let mut out = [0u8; SUN_PATH + 1];
    let placed = match (c_int::from(sa.ss_family) == libc::AF_UNIX, state().filter(|st| st.tree_fd >= 0)) {
        (true, Some(st)) => {
            let name = bytes.get(PATH_AT..).unwrap_or_default();
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            unplaced(st, name, &mut out).and_then(|p| sockaddr(p).ok())
        }
        _ => None,
    };
    let (src, size): (&[u8], usize) = match &placed {
        Some((un, l)) => {
            let l = (*l as usize).min(core::mem::size_of::<libc::sockaddr_un>());
            // SAFETY: a sockaddr_un of ours, alive for this scope; `l` is within its size.
            (unsafe { core::slice::from_raw_parts((un as *const libc::sockaddr_un).cast::<u8>(), l) }, l)
        }
        None => (bytes, sa_len as usize),
    };
    // SAFETY: `len` is the caller's, readable and writable (checked non-null; EFAULT otherwise
    // was the kernel's above, which wrote through it).
    let offered = unsafe { *len } as usize;
    let n = offered.min(src.len());
    // SAFETY: the caller offered `offered` writable bytes at `addr`; `n` is no more.
    unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), addr.cast::<u8>(), n) };
    // SAFETY: as above.
    unsafe { *len = libc::socklen_t::try_from(size).unwrap_or(libc::socklen_t::MAX) };
    0
}

/// getsockname(2): a socket bound at a tree path reports the path the program bound.
///
/// # Safety
/// C ABI: `addr` points to `*len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    // SAFETY: the caller's arguments (contract above).
    unsafe { name_of(libc::SYS_getsockname, fd, addr, len) }
}

/// getpeername(2): a socket connected to one bound at a tree path reports that path as the
/// program named it.
///
/// # Safety
/// C ABI: `addr` points to `*len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    // SAFETY: the caller's arguments (contract above).
    unsafe { name_of(libc::SYS_getpeername, fd, addr, len) }
}
