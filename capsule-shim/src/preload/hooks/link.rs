//! The mutation family: unlink, unlinkat, rmdir, remove, mkdir, mkdirat, rename, renameat,
//! renameat2, link, linkat, symlink, symlinkat, chmod, fchmodat, lchmod, chown, lchown,
//! fchownat, utimensat, utimes, lutimes, futimesat, utime, truncate, truncate64, mknod, mknodat,
//! `__xmknod`, `__xmknodat`, mkfifo, mkfifoat.
//!
//! In the tree, a capsule file is first made private (copy-up) before anything changes its
//! inode (mode, owner, times, size, a new name), since a pristine file is a hardlink shared
//! with the cache. Deleting a capsule path records a whiteout with the materialiser, so it
//! stays deleted (in later runs too, and not re-materialised). A rename or link between the
//! tree and the host answers EXDEV, as between two filesystems, so `mv` copies.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int, c_long, c_uint};

use crate::preload::client;
pub(crate) use capsule_core::boundary::effect::Op;
use capsule_core::boundary::effect::{self, At, CopySys, Side, Step, host_call};

use super::{Effects, Route, at_fd, check, route, unchecked};
use crate::preload::guard::HookGuard;
use crate::preload::state;
use crate::preload::sys::{self, ret};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

/// Route one single-path mutation; `call(dirfd, path)` performs it. Shared with the other
/// families' mutations (`xattr`'s writes, `syscall`'s numbers without a libc spelling here).
///
/// # Safety
/// `path` null or NUL-terminated.
pub(crate) unsafe fn mutate(
    dirfd: c_int,
    path: *const c_char,
    op: Op,
    follow: bool,
    call: impl FnMut(c_int, *const c_char) -> c_long,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { mutate_with(dirfd, path, op, follow, None, call) }
}

/// What the broker makes of a mutation the kernel refused on the host ([`super::brokered`]):
/// the `host_call`, its flags and mode, and the second path (a symlink's target, or null).
#[derive(Clone, Copy)]
pub(crate) struct Broker {
    call: u8,
    flags: c_int,
    mode: u32,
    other: *const c_char,
}

impl Broker {
    fn new(call: u8, flags: c_int, mode: u32) -> Option<Broker> {
        Some(Broker { call, flags, mode, other: core::ptr::null() })
    }

    fn unlink(flags: c_int) -> Option<Broker> {
        Broker::new(host_call::UNLINK, flags, 0)
    }

    fn mkdir(mode: libc::mode_t) -> Option<Broker> {
        Broker::new(host_call::MKDIR, 0, mode)
    }

    fn mknod(mode: libc::mode_t) -> Option<Broker> {
        Broker::new(host_call::MKNOD, 0, mode)
    }
}

/// [`mutate`], and where the call is the host's and the kernel refused it, the broker's
/// answer (`broker`: a mutation that makes or removes a name).
///
/// # Safety
/// `path` null or NUL-terminated; `broker`'s second path null or NUL-terminated.
unsafe fn mutate_with(
    dirfd: c_int,
    path: *const c_char,
    op: Op,
    follow: bool,
    broker: Option<Broker>,
    mut call: impl FnMut(c_int, *const c_char) -> c_long,
) -> c_int {
    let Some(guard) = HookGuard::enter() else { return ret(call(dirfd, path)) };
    let (Some(st), false) = (state(), path.is_null()) else {
        guard.restore_errno();
        return ret(call(dirfd, path));
    };
    let mut buf = PathBuffer::new();
    // SAFETY: non-null, NUL-terminated (caller).
    let placed = unsafe { route(st, dirfd, path, &mut buf, op.intent(follow)) };
    let host = super::on_host(&placed);
    let r = match effect::mutate(&mut Effects(st), &placed, op, |at| {
        let (d, p) = at_fd(st, at);
        check(call(d, p.as_ptr())).map(drop)
    }) {
        None => {
            guard.restore_errno();
            call(dirfd, path)
        }
        Some(r) => unchecked(r.map(|()| 0)),
    };
    match broker {
        Some(b) if host => {
            // SAFETY: null or NUL-terminated (caller).
            let other = (!b.other.is_null()).then(|| unsafe { CStr::from_ptr(b.other) }.to_bytes());
            ret(super::brokered(r, &buf, |p| client::host(b.call, b.flags, b.mode, p, other)))
        }
        _ => ret(r),
    }
}

/// Route a two-path operation (rename, link). `call(olddirfd, old, newdirfd, new)`.
///
/// # Safety
/// Paths null or NUL-terminated.
unsafe fn two_paths(
    od: c_int,
    old: *const c_char,
    nd: c_int,
    new: *const c_char,
    is_rename: bool,
    broker: Option<(u8, c_int)>,
    mut call: impl FnMut(c_int, *const c_char, c_int, *const c_char) -> c_long,
) -> c_int {
    let Some(_guard) = HookGuard::enter() else { return ret(call(od, old, nd, new)) };
    let (Some(st), false, false) = (state(), old.is_null(), new.is_null()) else { return ret(call(od, old, nd, new)) };
    let (mut b1, mut b2) = (PathBuffer::new(), PathBuffer::new());
    // SAFETY: both non-null and NUL-terminated.
    let (p1, p2) = unsafe {
        (
            route(st, od, old, &mut b1, Intent { follow: false, create: false }),
            route(st, nd, new, &mut b2, Intent { follow: false, create: true }),
        )
    };
    let host = super::on_host(&p1) && super::on_host(&p2);
    // The old name the program's own call names on the host, for the broker should the kernel
    // refuse to remove it after a copy into the tree (it is directly beside the store).
    let mut named = PathBuffer::new();
    let p1 = match p1 {
        Route::Original => {
            if named.push(b1.as_bytes()).is_err() {
                named.clear();
            }
            Route::Original
        }
        p => p,
    };
    let arg = |s: Side<'_>, fd: c_int, p: *const c_char| match s {
        Side::Orig => (fd, p),
        Side::At(at) => {
            let (d, p) = at_fd(st, at);
            (d, p.as_ptr())
        }
    };
    let r = effect::two(&mut Effects(st), &p1, &p2, is_rename, |step| match step {
        Step::Call(a, b) => {
            let ((d1, a), (d2, b)) = (arg(a, od, old), arg(b, nd, new));
            check(call(d1, a, d2, b)).map(drop)
        }
        Step::Copy(from, to) => {
            let (d, from) = arg(from, od, old);
            // SAFETY: `from` is the program's NUL-terminated argument or a placed path.
            effect::copy_file(&mut Raw, (d, unsafe { CStr::from_ptr(from) }), (st.tree_fd, to))
        }
        Step::Unlink(side) => {
            let (d, from) = arg(side, od, old);
            // SAFETY: as above.
            let r = Raw.unlinkat(d, unsafe { CStr::from_ptr(from) });
            let abs = match side {
                Side::At(At::Host(p)) => p.to_bytes(),
                _ => named.as_bytes(),
            };
            match r {
                Err(libc::EACCES) if abs.first() == Some(&b'/') => {
                    check(client::host(host_call::UNLINK, 0, 0, abs, None)).map(drop)
                }
                r => r,
            }
        }
        Step::Discard(to) => Raw.unlinkat(st.tree_fd, to),
    });
    let r = match r {
        None => call(od, old, nd, new),
        Some(r) => unchecked(r.map(|()| 0)),
    };
    // Landlock refuses a rename or link out of or into a directory without `REFER` with EXDEV
    // (so `mv` copies), and one within such a directory with EACCES: the broker's, both.
    let (a, b) = (b1.as_bytes(), b2.as_bytes());
    match broker {
        Some((call, flags))
            if host
                && (r == -c_long::from(libc::EACCES) || r == -c_long::from(libc::EXDEV))
                && a.first() == Some(&b'/')
                && b.first() == Some(&b'/') =>
        {
            let brokered = client::host(call, flags, 0, a, Some(b));
            // Not the broker's to make either (another filesystem, a prefix it does not
            // widen): the kernel's answer stands.
            ret(if brokered == -c_long::from(libc::EACCES) { r } else { brokered })
        }
        _ => ret(r),
    }
}

/// The shim's raw system calls (with the run's cookie), for [`effect::copy_file`].
struct Raw;

/// A raw call's result as a `Result`.
fn res(r: c_long) -> Result<c_long, c_int> {
    check(r)
}

impl CopySys for Raw {
    fn openat(&mut self, dirfd: c_int, path: &CStr, flags: c_int, mode: u32) -> Result<c_int, c_int> {
        // SAFETY: `path` NUL-terminated; the kernel (or the materialiser, for the tree)
        // returns a descriptor or -errno.
        let fd = res(unsafe { open_placed(dirfd, path, flags, mode) })?;
        c_int::try_from(fd).map_err(|_| libc::EBADF)
    }

    fn fstat(&mut self, fd: c_int) -> Result<(u32, u32, u32), c_int> {
        // SAFETY: a plain struct the kernel fills.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: an empty path with AT_EMPTY_PATH names `fd`; `sb` writable.
        res(unsafe { sys::newfstatat(fd, c"".as_ptr(), &mut sb, libc::AT_EMPTY_PATH) })?;
        Ok((sb.st_mode, sb.st_uid, sb.st_gid))
    }

    fn sendfile(&mut self, to: c_int, from: c_int, count: usize) -> Result<usize, c_int> {
        #[allow(clippy::cast_possible_wrap)] // at most 1 GiB
        // SAFETY: two descriptors; a null offset uses (and moves) `from`'s.
        let n = res(unsafe { sys::raw(libc::SYS_sendfile, to.into(), from.into(), 0, count as c_long, 0, 0) })?;
        usize::try_from(n).map_err(|_| libc::EIO)
    }

    fn fchmod(&mut self, fd: c_int, mode: u32) -> Result<(), c_int> {
        // SAFETY: a descriptor; no memory is involved.
        res(unsafe { sys::raw(libc::SYS_fchmod, fd.into(), mode.into(), 0, 0, 0, 0) }).map(drop)
    }

    fn fchown(&mut self, fd: c_int, uid: u32, gid: u32) -> Result<(), c_int> {
        // SAFETY: a descriptor; no memory is involved.
        res(unsafe { sys::raw(libc::SYS_fchown, fd.into(), uid.into(), gid.into(), 0, 0, 0) }).map(drop)
    }

    fn readlinkat(&mut self, dirfd: c_int, path: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
        let (ptr, cap) = out.storage();
        // SAFETY: `path` NUL-terminated; `ptr` writable for `cap - 1` bytes (room for the NUL).
        let n = res(unsafe { sys::readlinkat(dirfd, path.as_ptr(), ptr.cast(), cap - 1) })?;
        out.set_len(usize::try_from(n).map_err(|_| libc::EIO)?);
        Ok(())
    }

    fn symlinkat(&mut self, target: &CStr, dirfd: c_int, path: &CStr) -> Result<(), c_int> {
        // SAFETY: both NUL-terminated.
        res(unsafe {
            sys::raw(libc::SYS_symlinkat, target.as_ptr() as c_long, dirfd.into(), path.as_ptr() as c_long, 0, 0, 0)
        })
        .map(drop)
    }

    fn unlinkat(&mut self, dirfd: c_int, path: &CStr) -> Result<(), c_int> {
        // SAFETY: `path` NUL-terminated.
        res(unsafe { sys::raw(libc::SYS_unlinkat, dirfd.into(), path.as_ptr() as c_long, 0, 0, 0, 0) }).map(drop)
    }

    fn close(&mut self, fd: c_int) {
        sys::close(fd);
    }
}

macro_rules! at_hook {
    ($(#[$doc:meta] $name:ident($($arg:ident: $ty:ty),*) -> $dirfd:expr, $path:expr, $op:expr, $follow:expr, $broker:expr, |$d:ident, $p:ident| $body:expr;)*) => {$(
        #[$doc]
        ///
        /// # Safety
        /// C ABI.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            // SAFETY: forwarded; each call gets a NUL-terminated path.
            unsafe { mutate_with($dirfd, $path, $op, $follow, $broker, |$d, $p| $body) }
        }
    )*};
}

fn sc(nr: c_long, a: c_long, b: c_long, c: c_long, d: c_long) -> c_long {
    // SAFETY: the argument values come straight from the application's call, with the path
    // argument replaced by a NUL-terminated routed path; the syscall validates the rest.
    unsafe { sys::raw(nr, a, b, c, d, 0, 0) }
}

at_hook! {
    /// unlink(2).
    unlink(path: *const c_char) -> libc::AT_FDCWD, path, Op::Remove, false, Broker::unlink(0), |d, p| sc(libc::SYS_unlinkat, d.into(), p as c_long, 0, 0);
    /// unlinkat(2).
    unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> dirfd, path, Op::unlinkat(flags), false, Broker::unlink(flags), |d, p| sc(libc::SYS_unlinkat, d.into(), p as c_long, flags.into(), 0);
    /// rmdir(2).
    rmdir(path: *const c_char) -> libc::AT_FDCWD, path, Op::RemoveDir, false, Broker::unlink(libc::AT_REMOVEDIR), |d, p| sc(libc::SYS_unlinkat, d.into(), p as c_long, libc::AT_REMOVEDIR.into(), 0);
    /// mkdir(2).
    mkdir(path: *const c_char, mode: libc::mode_t) -> libc::AT_FDCWD, path, Op::Create, false, Broker::mkdir(mode), |d, p| sc(libc::SYS_mkdirat, d.into(), p as c_long, mode.into(), 0);
    /// mkdirat(2).
    mkdirat(dirfd: c_int, path: *const c_char, mode: libc::mode_t) -> dirfd, path, Op::Create, false, Broker::mkdir(mode), |d, p| sc(libc::SYS_mkdirat, d.into(), p as c_long, mode.into(), 0);
    /// chmod(2).
    chmod(path: *const c_char, mode: libc::mode_t) -> libc::AT_FDCWD, path, Op::Modify, true, None, |d, p| sc(libc::SYS_fchmodat, d.into(), p as c_long, mode.into(), 0);
    /// fchmodat(2); with AT_SYMLINK_NOFOLLOW a symlink is not followed (EOPNOTSUPP, as glibc).
    fchmodat(dirfd: c_int, path: *const c_char, mode: libc::mode_t, flags: c_int) -> dirfd, path, Op::Modify, flags & libc::AT_SYMLINK_NOFOLLOW == 0, None, |d, p| fchmodat_at(d, p, mode, flags);
    /// lchmod(3).
    lchmod(path: *const c_char, mode: libc::mode_t) -> libc::AT_FDCWD, path, Op::Modify, false, None, |d, p| fchmodat_at(d, p, mode, libc::AT_SYMLINK_NOFOLLOW);
    /// chown(2).
    chown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> libc::AT_FDCWD, path, Op::Modify, true, None, |d, p| sc(libc::SYS_fchownat, d.into(), p as c_long, uid.into(), gid.into());
    /// lchown(2).
    lchown(path: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> libc::AT_FDCWD, path, Op::Modify, false, None, |d, p| lchown_at(d, p, uid, gid);
    /// truncate(2).
    truncate(path: *const c_char, len: libc::off_t) -> libc::AT_FDCWD, path, Op::Modify, true, None, |d, p| truncate_at(d, p, len);
    /// truncate64.
    truncate64(path: *const c_char, len: libc::off_t) -> libc::AT_FDCWD, path, Op::Modify, true, None, |d, p| truncate_at(d, p, len);
    /// mknodat(2).
    mknodat(dirfd: c_int, path: *const c_char, mode: libc::mode_t, dev: libc::dev_t) -> dirfd, path, Op::Create, false, Broker::mknod(mode), |d, p| sc(libc::SYS_mknodat, d.into(), p as c_long, mode.into(), dev as c_long);
    /// mknod(2).
    mknod(path: *const c_char, mode: libc::mode_t, dev: libc::dev_t) -> libc::AT_FDCWD, path, Op::Create, false, Broker::mknod(mode), |d, p| sc(libc::SYS_mknodat, d.into(), p as c_long, mode.into(), dev as c_long);
    /// `__xmknod`: mknod as programs built against glibc before 2.33 call it.
    __xmknod(_ver: c_int, path: *const c_char, mode: libc::mode_t, dev: *const libc::dev_t) -> libc::AT_FDCWD, path, Op::Create, false, Broker::mknod(mode), |d, p| xmknod_at(d, p, mode, dev);
    /// `__xmknodat`.
    __xmknodat(_ver: c_int, dirfd: c_int, path: *const c_char, mode: libc::mode_t, dev: *const libc::dev_t) -> dirfd, path, Op::Create, false, Broker::mknod(mode), |d, p| xmknod_at(d, p, mode, dev);
    /// mkfifo(3).
    mkfifo(path: *const c_char, mode: libc::mode_t) -> libc::AT_FDCWD, path, Op::Create, false, Broker::mknod(mode | libc::S_IFIFO), |d, p| sc(libc::SYS_mknodat, d.into(), p as c_long, (mode | libc::S_IFIFO).into(), 0);
    /// mkfifoat(3).
    mkfifoat(dirfd: c_int, path: *const c_char, mode: libc::mode_t) -> dirfd, path, Op::Create, false, Broker::mknod(mode | libc::S_IFIFO), |d, p| sc(libc::SYS_mknodat, d.into(), p as c_long, (mode | libc::S_IFIFO).into(), 0);
    /// utimes(2): glibc implements it with the utimensat syscall, not through utimensat(3).
    utimes(path: *const c_char, tv: *const libc::timeval) -> libc::AT_FDCWD, path, Op::Modify, true, None, |d, p| utimes_at(d, p, tv, 0);
    /// lutimes(3).
    lutimes(path: *const c_char, tv: *const libc::timeval) -> libc::AT_FDCWD, path, Op::Modify, false, None, |d, p| utimes_at(d, p, tv, libc::AT_SYMLINK_NOFOLLOW);
    /// futimesat(2).
    futimesat(dirfd: c_int, path: *const c_char, tv: *const libc::timeval) -> dirfd, path, Op::Modify, true, None, |d, p| utimes_at(d, p, tv, 0);
    /// utime(2).
    utime(path: *const c_char, times: *const libc::utimbuf) -> libc::AT_FDCWD, path, Op::Modify, true, None, |d, p| utime_at(d, p, times);
}

/// fchmodat2 (Linux 6.6), which honours AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH (the
/// descriptor's own file); before it, glibc's answer: EOPNOTSUPP for a symlink, fchmodat for
/// anything else.
fn fchmodat_at(d: c_int, p: *const c_char, mode: libc::mode_t, flags: c_int) -> c_long {
    const SYS_FCHMODAT2: c_long = 452;
    if flags & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) == 0 {
        return sc(libc::SYS_fchmodat, d.into(), p as c_long, mode.into(), 0);
    }
    let r = sc(SYS_FCHMODAT2, d.into(), p as c_long, mode.into(), flags.into());
    if r != -c_long::from(libc::ENOSYS) {
        return r;
    }
    // SAFETY: plain struct, filled by the kernel.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: NUL-terminated path from the router; `sb` writable.
    let r = unsafe { sys::newfstatat(d, p, &mut sb, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        return r;
    }
    if sb.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return -c_long::from(libc::EOPNOTSUPP);
    }
    sc(libc::SYS_fchmodat, d.into(), p as c_long, mode.into(), 0)
}

/// mknodat with the device number behind a pointer (`__xmknod`'s spelling).
fn xmknod_at(d: c_int, p: *const c_char, mode: libc::mode_t, dev: *const libc::dev_t) -> c_long {
    let dev = if dev.is_null() {
        0
    } else {
        // SAFETY: `__xmknod`'s contract: a non-null `dev` points to one dev_t.
        unsafe { *dev }
    };
    sc(libc::SYS_mknodat, d.into(), p as c_long, mode.into(), dev as c_long)
}

/// remove(3): glibc's calls its internal unlink and rmdir, past these hooks. unlink, and rmdir
/// when the path is a directory.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    // SAFETY: forwarded.
    if unsafe { unlink(path) } == 0 {
        return 0;
    }
    if sys::errno() != libc::EISDIR {
        return -1;
    }
    // SAFETY: forwarded.
    unsafe { rmdir(path) }
}

/// The utimensat syscall with `timeval` times (null: now).
fn utimes_at(d: c_int, p: *const c_char, tv: *const libc::timeval, flags: c_int) -> c_long {
    let mut ts = [libc::timespec { tv_sec: 0, tv_nsec: 0 }; 2];
    let times = if tv.is_null() {
        core::ptr::null()
    } else {
        for (i, t) in ts.iter_mut().enumerate() {
            // SAFETY: utimes' contract: a non-null `tv` points to two timevals.
            let v = unsafe { *tv.add(i) };
            *t = libc::timespec { tv_sec: v.tv_sec, tv_nsec: v.tv_usec * 1000 };
        }
        ts.as_ptr()
    };
    sc(libc::SYS_utimensat, d.into(), p as c_long, times as c_long, flags.into())
}

/// The utimensat syscall with `utimbuf` times (null: now).
fn utime_at(d: c_int, p: *const c_char, times: *const libc::utimbuf) -> c_long {
    let mut ts = [libc::timespec { tv_sec: 0, tv_nsec: 0 }; 2];
    let t = if times.is_null() {
        core::ptr::null()
    } else {
        // SAFETY: utime's contract: a non-null `times` points to one utimbuf.
        let u = unsafe { *times };
        ts[0].tv_sec = u.actime;
        ts[1].tv_sec = u.modtime;
        ts.as_ptr()
    };
    sc(libc::SYS_utimensat, d.into(), p as c_long, t as c_long, 0)
}

/// fchownat with AT_SYMLINK_NOFOLLOW.
fn lchown_at(d: c_int, p: *const c_char, uid: libc::uid_t, gid: libc::gid_t) -> c_long {
    // SAFETY: NUL-terminated path from the router; integer arguments.
    unsafe {
        sys::raw(libc::SYS_fchownat, d.into(), p as c_long, uid.into(), gid.into(), libc::AT_SYMLINK_NOFOLLOW.into(), 0)
    }
}

/// openat through [`super::openat_placed`] (the tree's write-opens are the materialiser's).
///
/// # Safety
/// `p` NUL-terminated.
unsafe fn open_placed(d: c_int, p: &CStr, flags: c_int, mode: libc::mode_t) -> c_long {
    match state() {
        // SAFETY: forwarded.
        Some(st) => unsafe { super::openat_placed(st, d, p, flags, mode) },
        // SAFETY: forwarded.
        None => unsafe { sys::openat(d, p.as_ptr(), flags, mode) },
    }
}

/// truncate relative to a directory: open for writing, ftruncate, close.
fn truncate_at(d: c_int, p: *const c_char, len: libc::off_t) -> c_long {
    const HOW: c_int = libc::O_WRONLY | libc::O_CLOEXEC;
    // SAFETY: NUL-terminated path from the router.
    let path = unsafe { CStr::from_ptr(p) };
    // SAFETY: as above.
    let mut fd = unsafe { open_placed(d, path, HOW, 0) };
    // Refused on the host beside the store (Landlock): the broker's open, as `open` has it.
    if fd == -c_long::from(libc::EACCES)
        && let Some(st) = state()
    {
        let mut abs = PathBuffer::new();
        if super::absolute(st, d, path, &mut abs).is_ok() {
            fd = client::host(host_call::OPEN, HOW, 0, abs.as_bytes(), None);
        }
    }
    if fd < 0 {
        return fd;
    }
    let r = sc(libc::SYS_ftruncate, fd, len, 0, 0);
    sys::close(i32::try_from(fd).unwrap_or(-1));
    r
}

/// fchownat(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fchownat(
    dirfd: c_int,
    path: *const c_char,
    uid: libc::uid_t,
    gid: libc::gid_t,
    flags: c_int,
) -> c_int {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: forwarded.
    unsafe {
        mutate(dirfd, path, Op::Modify, follow, |d, p| {
            sys::raw(libc::SYS_fchownat, d.into(), p as c_long, uid.into(), gid.into(), flags.into(), 0)
        })
    }
}

/// utimensat(2). A null path means "the descriptor itself" and is not ours.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn utimensat(
    dirfd: c_int,
    path: *const c_char,
    times: *const libc::timespec,
    flags: c_int,
) -> c_int {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: forwarded.
    unsafe {
        mutate(dirfd, path, Op::Modify, follow, |d, p| {
            sc(libc::SYS_utimensat, d.into(), p as c_long, times as c_long, flags.into())
        })
    }
}

/// symlinkat(2): `path` is the new link.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int {
    // SAFETY: forwarded.
    let broker = (!target.is_null()).then_some(Broker { call: host_call::SYMLINK, flags: 0, mode: 0, other: target });
    // SAFETY: forwarded; `target` checked non-null for the broker.
    unsafe {
        mutate_with(dirfd, path, Op::Create, false, broker, |d, p| {
            sc(libc::SYS_symlinkat, target as c_long, d.into(), p as c_long, 0)
        })
    }
}

/// symlink(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    // SAFETY: forwarded.
    unsafe { symlinkat(target, libc::AT_FDCWD, path) }
}

/// renameat2(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat2(
    od: c_int,
    old: *const c_char,
    nd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        two_paths(od, old, nd, new, true, Some((host_call::RENAME, flags.cast_signed())), |a, b, c, d| {
            sys::raw(libc::SYS_renameat2, a.into(), b as c_long, c.into(), d as c_long, flags.into(), 0)
        })
    }
}

/// renameat(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn renameat(od: c_int, old: *const c_char, nd: c_int, new: *const c_char) -> c_int {
    // SAFETY: forwarded.
    unsafe { renameat2(od, old, nd, new, 0) }
}

/// rename(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: forwarded.
    unsafe { renameat2(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0) }
}

/// linkat(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn linkat(od: c_int, old: *const c_char, nd: c_int, new: *const c_char, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    unsafe {
        let broker = (flags & libc::AT_SYMLINK_FOLLOW == 0).then_some((host_call::LINK, 0));
        two_paths(od, old, nd, new, false, broker, |a, b, c, d| {
            sys::raw(libc::SYS_linkat, a.into(), b as c_long, c.into(), d as c_long, flags.into(), 0)
        })
    }
}

/// link(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
    // SAFETY: forwarded.
    unsafe { linkat(libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0) }
}
