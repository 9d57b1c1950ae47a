//! chroot(2), emulated in the view. The run's filter refuses the kernel's chroot (a capsule's
//! view is the launcher's to make), which stopped every server that jails a process of its
//! own after dropping privileges: sshd's privilege-separated child (`chroot("/run/sshd")`),
//! haproxy with Debian's configuration (`chroot /var/lib/haproxy`), vsftpd. Here a process with
//! CAP_SYS_CHROOT that chroots into a directory of its view gets a *jail*: from then on every
//! absolute path it names is placed below that directory (`..` stops at it, as the kernel's
//! would), as fakechroot does, and so are paths relative to a directory inside it; `getcwd`
//! names the working directory from the jail's root. A symlink's absolute target still
//! resolves from the view's own root. The jail is the process's (and its forks'): an exec inside it
//! is refused (EPERM) rather than start a program that would see the whole view again. A
//! second chroot is refused too. Raw system calls are not jailed: this keeps the programs
//! working, it is not a boundary (docs/security.md).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_char, c_int, c_long};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::{Route, Shim, route_slow};
use crate::preload::guard::HookGuard;
use crate::preload::sys::{self, ret, set_errno};
use crate::preload::{State, state};
use capsule_core::boundary::{Caller, place};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

const CAP: usize = 4096;

/// The jail's directory (a normal absolute path of the view), written once before [`LEN`]
/// publishes it.
struct Root(UnsafeCell<[u8; CAP]>);

// SAFETY: written by one thread before LEN is stored (Release), read only after LEN is loaded
// (Acquire) non-zero; never written again.
unsafe impl Sync for Root {}

static ROOT: Root = Root(UnsafeCell::new([0; CAP]));
/// The length of [`ROOT`]; 0: not jailed.
static LEN: AtomicUsize = AtomicUsize::new(0);

/// The jail's directory, when this process chrooted.
#[inline(always)]
pub fn root() -> Option<&'static [u8]> {
    let n = LEN.load(Ordering::Acquire);
    if n == 0 {
        return None;
    }
    // SAFETY: LEN is non-zero only once ROOT holds `n` bytes that are never written again.
    unsafe { (*ROOT.0.get()).get(..n) }
}

/// [`super::route`] inside the jail `root`: an absolute path below it.
pub fn route<'b>(
    st: &'static State,
    dirfd: c_int,
    bytes: &[u8],
    root: &[u8],
    buf: &'b mut PathBuffer,
    intent: Intent,
) -> Route<'b> {
    let mut joined = PathBuffer::new();
    if bytes.first() != Some(&b'/') {
        // Relative to a directory inside the jail: joined to its path in the view, and `..`
        // stops at the jail's root as well. From a directory outside it (no chdir after the
        // chroot, or a descriptor opened before), as before.
        let mut base = PathBuffer::new();
        let got = if dirfd == libc::AT_FDCWD { Shim(st).cwd(&mut base) } else { Shim(st).fd_path(dirfd, &mut base) };
        let virt = match got {
            Ok(()) => capsule_core::resolve::untree(st.view.tree(), base.as_bytes()).unwrap_or(base.as_bytes()),
            Err(_) => return route_slow(st, dirfd, bytes, buf, intent),
        };
        let inside = virt.strip_prefix(root).is_some_and(|r| r.is_empty() || r.first() == Some(&b'/'));
        if !inside || bytes.is_empty() {
            return route_slow(st, dirfd, bytes, buf, intent);
        }
        if joined.push(virt).is_err() || push_clamped(&mut joined, bytes, root.len()).is_err() {
            return Route::Deny(libc::ENAMETOOLONG);
        }
        return place(&st.view, &Shim(st), libc::AT_FDCWD, joined.as_bytes(), intent, buf);
    }
    if joined.push(root).is_err() || push_clamped(&mut joined, bytes, root.len()).is_err() {
        return Route::Deny(libc::ENAMETOOLONG);
    }
    place(&st.view, &Shim(st), libc::AT_FDCWD, joined.as_bytes(), intent, buf)
}

/// `virt`, a path of the view, as the jail names it: below its root, or `None` outside.
pub fn inside<'a>(root: &[u8], virt: &'a [u8]) -> Option<&'a [u8]> {
    match virt.strip_prefix(root) {
        Some(b"") => Some(b"/"),
        Some(r) if r.first() == Some(&b'/') => Some(r),
        _ => None,
    }
}

/// Append path `path`'s components to `out`, `.` left out and `..` taking back nothing of
/// its first `floor` bytes (the jail's root).
fn push_clamped(out: &mut PathBuffer, path: &[u8], floor: usize) -> Result<(), i32> {
    let base = floor;
    for comp in path.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                let now = out.as_bytes();
                if now.len() > base {
                    let cut = now.iter().rposition(|&c| c == b'/').unwrap_or(base).max(base);
                    out.set_len(cut);
                }
            }
            c => {
                out.push(b"/")?;
                out.push(c)?;
            }
        }
    }
    if out.as_bytes().is_empty() {
        out.push(b"/")?;
    }
    Ok(())
}

/// Whether this thread has CAP_SYS_CHROOT in its effective set.
fn may_chroot() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const CAP_SYS_CHROOT: u32 = 18;
    let mut h = Header { version: 0x2008_0522, pid: 0 };
    let mut d = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget writes two Data (version 3) into `d`, reads `h`; both on our stack.
    let r = unsafe { sys::raw(libc::SYS_capget, &raw mut h as c_long, d.as_mut_ptr() as c_long, 0, 0, 0, 0) };
    r == 0 && d[0].effective & (1 << CAP_SYS_CHROOT) != 0
}

/// chroot(2).
///
/// # Safety
/// C ABI: `path` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chroot(path: *const c_char) -> c_int {
    let raw = |p: *const c_char| {
        // SAFETY: NUL-terminated path.
        ret(unsafe { sys::raw(libc::SYS_chroot, p as c_long, 0, 0, 0, 0, 0) })
    };
    let Some(_guard) = HookGuard::enter() else { return raw(path) };
    let (Some(st), false) = (state(), path.is_null()) else { return raw(path) };
    let fail = |e: c_int| {
        set_errno(e);
        -1
    };
    if !may_chroot() || root().is_some() {
        return fail(libc::EPERM);
    }
    // SAFETY: non-null, NUL-terminated (caller).
    let arg = unsafe { CStr::from_ptr(path) }.to_bytes();
    let mut buf = PathBuffer::new();
    // SAFETY: as above.
    let placed = unsafe { super::route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) };
    // The directory's path in the view, and whether it is one.
    let mut cwd = PathBuffer::new();
    let (virt, kind): (&[u8], c_long) = match placed {
        Route::Deny(e) => return fail(e),
        Route::Tree(rel, _) => (rel.to_bytes(), stat_dir(st.tree_fd, rel)),
        Route::Host(abs) | Route::ReadOnly(abs) => (abs.to_bytes(), stat_dir(libc::AT_FDCWD, abs)),
        Route::TreeThenHost(rel, abs) => match stat_dir(st.tree_fd, rel) {
            r if r == -c_long::from(libc::ENOENT) => (abs.to_bytes(), stat_dir(libc::AT_FDCWD, abs)),
            r => (abs.to_bytes(), r),
        },
        Route::Original => {
            // SAFETY: NUL-terminated.
            let r = stat_dir(libc::AT_FDCWD, unsafe { CStr::from_ptr(path) });
            if arg.first() == Some(&b'/') {
                (arg, r)
            } else {
                let (p, cap) = cwd.storage();
                // SAFETY: getcwd writes at most `cap` bytes into the buffer.
                let n = unsafe { sys::raw(libc::SYS_getcwd, p as c_long, cap as c_long, 0, 0, 0, 0) };
                if n <= 0 {
                    return fail(libc::ENOENT);
                }
                cwd.set_len(usize::try_from(n).unwrap_or(1).saturating_sub(1));
                if cwd.push(b"/").is_err() || cwd.push(arg).is_err() {
                    return fail(libc::ENAMETOOLONG);
                }
                (cwd.as_bytes(), r)
            }
        }
    };
    if kind < 0 {
        return fail(c_int::try_from(-kind).unwrap_or(libc::EIO));
    }
    // A tree path names the view's `/REL`.
    let mut src = PathBuffer::new();
    let mut root = PathBuffer::new();
    let pushed = src.push(b"/").and_then(|()| src.push(virt)).and_then(|()| push_clamped(&mut root, src.as_bytes(), 0));
    if pushed.is_err() {
        return fail(libc::ENAMETOOLONG);
    }
    let dir = root.as_bytes();
    if dir == b"/" {
        return 0; // chroot("/"): nothing changes
    }
    // SAFETY: the only writer (a second chroot is refused above; a race of two first ones is
    // a program's own, and both write a valid path), before LEN publishes it.
    let slot = unsafe { &mut *ROOT.0.get() };
    let Some(dst) = slot.get_mut(..dir.len()) else { return fail(libc::ENAMETOOLONG) };
    dst.copy_from_slice(dir);
    LEN.store(dir.len(), Ordering::Release);
    0
}

/// 0 when (`d`, `p`) is a directory (following symlinks), else -errno (ENOTDIR for another
/// kind of file).
fn stat_dir(d: c_int, p: &CStr) -> c_long {
    // SAFETY: a plain struct the kernel fills.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: NUL-terminated path; `sb` writable.
    let r = unsafe { sys::newfstatat(d, p.as_ptr(), &mut sb, 0) };
    if r < 0 {
        r
    } else if sb.st_mode & libc::S_IFMT == libc::S_IFDIR {
        0
    } else {
        -c_long::from(libc::ENOTDIR)
    }
}
