//! The link family (mutations) for programs without the shim (static, Go): mkdir, unlink,
//! rename, link, symlink, chmod, chown, truncate, utimensat, mknod — the twin of tier 1's
//! `preload/hooks/link.rs`, both executing the boundary layer's `effect::mutate` and
//! `effect::two`: write-copy and capsule paths change the sandbox (copy-up first, whiteouts
//! for deletions), merged host paths change the host, one side in the tree and one on the
//! host is EXDEV.
#![allow(unsafe_code)] // the *at syscalls on our own buffers

use std::ffi::{CStr, CString};

use super::handlers::{Context, at_fd, place};
use super::host;
use super::memory::{TraceeMemory, read_path};
use super::notify::Reply;
use crate::boundary::effect::{self, Op, Side, Step};
use crate::resolve::Intent;
use crate::resolve::path::PathBuffer;

/// The link family (the mutations): answer `nr`, or `None` when it is not one.
pub fn handle(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    #[allow(clippy::cast_possible_truncation)] // int arguments travel in 64-bit registers
    let int = |v: u64| v as i32;
    #[allow(clippy::cast_possible_wrap)] // the register's bits, handed back to the kernel
    let reg = |v: u64| v as libc::c_long;
    let cwd = libc::AT_FDCWD;
    // `nr(dirfd, path, a2, a3, a4)` at the placed path.
    let sys2 = |nr: libc::c_long, a2: libc::c_long, a3: libc::c_long, a4: libc::c_long| {
        move |d: i32, p: &CStr| {
            check(unsafe_syscall(nr, libc::c_long::from(d), p.as_ptr() as libc::c_long, a2, a3, a4, 0))
        }
    };
    Some(match nr {
        libc::SYS_mkdir => {
            let b = host::Call::Mkdir { mode: mode(a[1]) };
            made(cx, mem, (cwd, a[0]), Op::Create, false, Some(b), sys2(libc::SYS_mkdirat, reg(a[1]), 0, 0))
        }
        libc::SYS_mkdirat => {
            let b = host::Call::Mkdir { mode: mode(a[2]) };
            made(cx, mem, (int(a[0]), a[1]), Op::Create, false, Some(b), sys2(libc::SYS_mkdirat, reg(a[2]), 0, 0))
        }
        libc::SYS_mknod => {
            let b = host::Call::Mknod { mode: mode(a[1]) };
            made(cx, mem, (cwd, a[0]), Op::Create, false, Some(b), sys2(libc::SYS_mknodat, reg(a[1]), reg(a[2]), 0))
        }
        libc::SYS_mknodat => {
            let b = host::Call::Mknod { mode: mode(a[2]) };
            let sys = sys2(libc::SYS_mknodat, reg(a[2]), reg(a[3]), 0);
            made(cx, mem, (int(a[0]), a[1]), Op::Create, false, Some(b), sys)
        }
        libc::SYS_unlink => {
            let b = host::Call::Unlink { flags: 0 };
            made(cx, mem, (cwd, a[0]), Op::Remove, false, Some(b), sys2(libc::SYS_unlinkat, 0, 0, 0))
        }
        libc::SYS_rmdir => {
            let flag = libc::c_long::from(libc::AT_REMOVEDIR);
            let b = host::Call::Unlink { flags: libc::AT_REMOVEDIR };
            made(cx, mem, (cwd, a[0]), Op::RemoveDir, false, Some(b), sys2(libc::SYS_unlinkat, flag, 0, 0))
        }
        libc::SYS_unlinkat => {
            let b = host::Call::Unlink { flags: int(a[2]) };
            let sys = sys2(libc::SYS_unlinkat, reg(a[2]), 0, 0);
            made(cx, mem, (int(a[0]), a[1]), Op::unlinkat(int(a[2])), false, Some(b), sys)
        }
        libc::SYS_chmod => single(cx, mem, cwd, a[0], Op::Modify, true, sys2(libc::SYS_fchmodat, reg(a[1]), 0, 0)),
        libc::SYS_fchmodat => {
            single(cx, mem, int(a[0]), a[1], Op::Modify, true, sys2(libc::SYS_fchmodat, reg(a[2]), 0, 0))
        }
        libc::SYS_fchmodat2 if empty_path(mem, a[1], a[3]) => descriptor(cx, int(a[0]), |fd| {
            check(unsafe_syscall(
                libc::SYS_fchmodat2,
                fd.into(),
                c"".as_ptr() as libc::c_long,
                reg(a[2]),
                reg(a[3]),
                0,
                0,
            ))
        }),
        libc::SYS_fchmodat2 => {
            let follow = int(a[3]) & libc::AT_SYMLINK_NOFOLLOW == 0;
            single(cx, mem, int(a[0]), a[1], Op::Modify, follow, sys2(libc::SYS_fchmodat2, reg(a[2]), reg(a[3]), 0))
        }
        libc::SYS_fchownat if empty_path(mem, a[1], a[4]) => descriptor(cx, int(a[0]), |fd| {
            let p = c"".as_ptr() as libc::c_long;
            check(unsafe_syscall(libc::SYS_fchownat, fd.into(), p, reg(a[2]), reg(a[3]), reg(a[4]), 0))
        }),
        // The changes by descriptor: refused on a host file the view keeps, or a cache file.
        libc::SYS_fchmod | libc::SYS_fchown | libc::SYS_fsetxattr | libc::SYS_fremovexattr
            if int(a[0]) == libc::AT_FDCWD =>
        {
            Reply::Error(libc::EBADF)
        }
        libc::SYS_fchmod => descriptor(cx, int(a[0]), |fd| check(unsafe_syscall(nr, fd.into(), reg(a[1]), 0, 0, 0, 0))),
        libc::SYS_fchown => {
            descriptor(cx, int(a[0]), |fd| check(unsafe_syscall(nr, fd.into(), reg(a[1]), reg(a[2]), 0, 0, 0)))
        }
        libc::SYS_fsetxattr | libc::SYS_fremovexattr => {
            let set = nr == libc::SYS_fsetxattr;
            let (name, value) = match xattr_args(mem, a[1], set.then_some((a[2], a[3]))) {
                Ok(v) => v,
                Err(e) => return Some(Reply::Error(e)),
            };
            descriptor(cx, int(a[0]), |fd| {
                let n = name.as_ptr() as libc::c_long;
                #[allow(clippy::cast_possible_wrap)] // a length below XATTR_SIZE_MAX
                let (v, len) = (value.as_ptr() as libc::c_long, value.len() as libc::c_long);
                check(if set {
                    unsafe_syscall(nr, fd.into(), n, v, len, reg(a[4]), 0)
                } else {
                    unsafe_syscall(nr, fd.into(), n, 0, 0, 0, 0)
                })
            })
        }
        libc::SYS_utime | libc::SYS_utimes | libc::SYS_futimesat => {
            let (dirfd, path, t) = if nr == libc::SYS_futimesat { (int(a[0]), a[1], a[2]) } else { (cwd, a[0], a[1]) };
            let Ok(times) = old_times(mem, t, nr == libc::SYS_utime) else { return Some(Reply::Error(libc::EFAULT)) };
            single(cx, mem, dirfd, path, Op::Modify, true, move |d, p| set_times(d, p, times.as_ref(), 0))
        }
        libc::SYS_setxattr | libc::SYS_lsetxattr | libc::SYS_removexattr | libc::SYS_lremovexattr => {
            let set = matches!(nr, libc::SYS_setxattr | libc::SYS_lsetxattr);
            let follow = matches!(nr, libc::SYS_setxattr | libc::SYS_removexattr);
            let (name, value) = match xattr_args(mem, a[1], set.then_some((a[2], a[3]))) {
                Ok(v) => v,
                Err(e) => return Some(Reply::Error(e)),
            };
            single(cx, mem, cwd, a[0], Op::Modify, follow, move |d, p| {
                let target = through(d, p);
                let Ok(target) = target else { return Err(libc::ENAMETOOLONG) };
                let (t, n) = (target.as_ptr() as libc::c_long, name.as_ptr() as libc::c_long);
                #[allow(clippy::cast_possible_wrap)] // a length below XATTR_SIZE_MAX
                let r = match (set, follow) {
                    (true, true) => unsafe_syscall(
                        libc::SYS_setxattr,
                        t,
                        n,
                        value.as_ptr() as libc::c_long,
                        value.len() as libc::c_long,
                        reg(a[4]),
                        0,
                    ),
                    (true, false) => unsafe_syscall(
                        libc::SYS_lsetxattr,
                        t,
                        n,
                        value.as_ptr() as libc::c_long,
                        value.len() as libc::c_long,
                        reg(a[4]),
                        0,
                    ),
                    (false, true) => unsafe_syscall(libc::SYS_removexattr, t, n, 0, 0, 0, 0),
                    (false, false) => unsafe_syscall(libc::SYS_lremovexattr, t, n, 0, 0, 0, 0),
                };
                check(r)
            })
        }
        libc::SYS_chown => {
            single(cx, mem, cwd, a[0], Op::Modify, true, sys2(libc::SYS_fchownat, reg(a[1]), reg(a[2]), 0))
        }
        libc::SYS_lchown => {
            let nofollow = libc::c_long::from(libc::AT_SYMLINK_NOFOLLOW);
            single(cx, mem, cwd, a[0], Op::Modify, false, sys2(libc::SYS_fchownat, reg(a[1]), reg(a[2]), nofollow))
        }
        libc::SYS_fchownat => {
            let follow = int(a[4]) & libc::AT_SYMLINK_NOFOLLOW == 0;
            single(
                cx,
                mem,
                int(a[0]),
                a[1],
                Op::Modify,
                follow,
                sys2(libc::SYS_fchownat, reg(a[2]), reg(a[3]), reg(a[4])),
            )
        }
        libc::SYS_truncate => single(cx, mem, cwd, a[0], Op::Modify, true, |d, p| truncate_at(d, p, reg(a[1]))),
        // utimensat(fd, NULL, ...) is futimens: a descriptor, not a path.
        // utimensat(AT_FDCWD, NULL, ...) names nothing.
        libc::SYS_utimensat if a[1] == 0 && int(a[0]) == libc::AT_FDCWD => Reply::Error(libc::EFAULT),
        libc::SYS_utimensat if a[1] == 0 || empty_path(mem, a[1], a[3]) => {
            let Ok(times) = times(mem, a[2]) else { return Some(Reply::Error(libc::EFAULT)) };
            descriptor(cx, int(a[0]), |fd| {
                let t = times.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
                // NULL as the program passed it (with flags: EINVAL, as the kernel), else "".
                let path = if a[1] == 0 { 0 } else { c"".as_ptr() as libc::c_long };
                check(unsafe_syscall(libc::SYS_utimensat, fd.into(), path, t as libc::c_long, reg(a[3]), 0, 0))
            })
        }
        libc::SYS_utimensat => {
            let follow = int(a[3]) & libc::AT_SYMLINK_NOFOLLOW == 0;
            let times = times(mem, a[2]);
            let Ok(times) = times else { return Some(Reply::Error(libc::EFAULT)) };
            single(cx, mem, int(a[0]), a[1], Op::Modify, follow, move |d, p| set_times(d, p, times.as_ref(), reg(a[3])))
        }
        libc::SYS_rename => two(cx, mem, (cwd, a[0]), (cwd, a[1]), true, 0),
        libc::SYS_renameat => two(cx, mem, (int(a[0]), a[1]), (int(a[2]), a[3]), true, 0),
        libc::SYS_renameat2 => two(cx, mem, (int(a[0]), a[1]), (int(a[2]), a[3]), true, reg(a[4])),
        libc::SYS_link => two(cx, mem, (cwd, a[0]), (cwd, a[1]), false, 0),
        libc::SYS_linkat => two(cx, mem, (int(a[0]), a[1]), (int(a[2]), a[3]), false, reg(a[4])),
        libc::SYS_symlink | libc::SYS_symlinkat => {
            let (target, dirfd, addr) =
                if nr == libc::SYS_symlink { (a[0], cwd, a[1]) } else { (a[0], int(a[1]), a[2]) };
            let Ok(target) = read_path(mem, target).map(|t| CString::new(t).unwrap_or_default()) else {
                return Some(Reply::Error(libc::EFAULT));
            };
            let made_target = target.clone();
            let b = host::Call::Symlink { target: &made_target };
            made(cx, mem, (dirfd, addr), Op::Create, false, Some(b), move |d, p| {
                check(unsafe_syscall(
                    libc::SYS_symlinkat,
                    target.as_ptr() as libc::c_long,
                    d.into(),
                    p.as_ptr() as libc::c_long,
                    0,
                    0,
                    0,
                ))
            })
        }
        _ => return None,
    })
}

/// A mode argument (32 bits in a 64-bit register).
#[allow(clippy::cast_possible_truncation)]
fn mode(v: u64) -> u32 {
    v as u32
}

/// XATTR_SIZE_MAX: no value is longer.
const XATTR_SIZE_MAX: usize = 65536;

/// (`d`, `p`) as one path the xattr calls (which take no directory descriptor) can name: `p`
/// itself when absolute, else through `/proc/self/fd/D`.
fn through(d: i32, p: &CStr) -> Result<CString, ()> {
    if d == libc::AT_FDCWD || p.to_bytes().first() == Some(&b'/') {
        return Ok(p.to_owned());
    }
    let mut s = format!("/proc/self/fd/{d}/").into_bytes();
    s.extend_from_slice(p.to_bytes());
    CString::new(s).map_err(|_| ())
}

/// An xattr call's name (at `name`) and, for a set, its value (`value`: address and length),
/// read from the tracee.
fn xattr_args(mem: &impl TraceeMemory, name: u64, value: Option<(u64, u64)>) -> Result<(CString, Vec<u8>), i32> {
    let name = read_path(mem, name).map(|n| CString::new(n).unwrap_or_default()).map_err(|_| libc::EFAULT)?;
    let Some((addr, len)) = value else { return Ok((name, Vec::new())) };
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > XATTR_SIZE_MAX {
        return Err(libc::E2BIG);
    }
    let mut v = vec![0u8; len];
    if len > 0 && mem.read(addr, &mut v).map_or(true, |n| n < len) {
        return Err(libc::EFAULT);
    }
    Ok((name, v))
}

/// Whether a call with AT_EMPTY_PATH in `flags` names an empty path (its descriptor).
fn empty_path(mem: &impl TraceeMemory, addr: u64, flags: u64) -> bool {
    #[allow(clippy::cast_sign_loss)] // a flag bit
    let empty = libc::AT_EMPTY_PATH as u64;
    flags & empty != 0 && read_path(mem, addr).is_ok_and(|p| p.is_empty())
}

/// A change of metadata by descriptor (fchmod, fchown, fsetxattr, fremovexattr, futimens, and
/// the `AT_EMPTY_PATH` forms), made here by `act` on a duplicate of the program's descriptor
/// (`pidfd_getfd`: the same open file, which another thread of the program cannot swap for
/// another between the check and the change, as it could the number's before a `CONTINUE`):
/// made where the file is the program's own to change (a merged or passed-through host file,
/// a file of the sandbox's own, anything that is not a named file); EROFS for a host file the
/// view keeps (a write-copy or full path opened for reading: its change belongs in the tree,
/// which a descriptor of the host's file cannot reach), EIO for a file shared with the cache
/// (never written through).
/// An `AT_EMPTY_PATH` form's `AT_FDCWD` is the calling thread's working directory (opened
/// `O_PATH` from `/proc/TID/cwd`); any other negative descriptor is EBADF.
fn descriptor(cx: &mut Context<'_, '_>, fd: i32, act: impl FnOnce(i32) -> Result<(), i32>) -> Reply {
    use std::os::fd::AsRawFd;
    let dup = if fd == libc::AT_FDCWD {
        let cwd = CString::new(format!("/proc/{}/cwd", cx.pid)).unwrap_or_default();
        host::open_path(&cwd, libc::O_PATH | libc::O_DIRECTORY)
    } else if fd < 0 {
        Err(libc::EBADF)
    } else {
        super::net::tracee_fd(cx.pid, fd)
    };
    let dup = match dup {
        Ok(d) => d,
        Err(e) => return Reply::Error(e),
    };
    let own = format!("/proc/self/fd/{}", dup.as_raw_fd());
    let target = std::fs::read_link(&own)
        .map(|p| std::os::unix::ffi::OsStringExt::into_vec(p.into_os_string()))
        .unwrap_or_default();
    if target.first() != Some(&b'/') {
        return reply(act(dup.as_raw_fd())); // a pipe, socket or anonymous inode
    }
    // The file behind the descriptor, and the one its path names now: the same file, or the
    // path is stale (deleted, renamed, a memfd) and says nothing about it.
    let Some(open) = stat(&own) else { return Reply::Error(libc::EBADF) };
    // A run as root has `/dev`'s own mount read-only (`launch::READ_ONLY`): the modes and
    // owners of the host's device nodes stay as they are. A descriptor the program inherited
    // from outside its mount namespace (its stdin, `/dev/null`) is on the host's mount, which
    // is writable: refused as the namespace would refuse it.
    if super::handlers::launcher_is_root() && stat("/dev").is_some_and(|d| d.st_dev == open.st_dev) {
        return Reply::Error(libc::EROFS);
    }
    let named = CString::new(target.clone()).ok().and_then(|p| lstat(&p));
    if !named.is_some_and(|n| n.st_dev == open.st_dev && n.st_ino == open.st_ino) {
        return reply(act(dup.as_raw_fd()));
    }
    if crate::resolve::untree(cx.view.tree(), &target).is_some() {
        let shared = open.st_mode & libc::S_IFMT == libc::S_IFREG && open.st_nlink > 1;
        return if shared { Reply::Error(libc::EIO) } else { reply(act(dup.as_raw_fd())) };
    }
    let mut buf = PathBuffer::new();
    let caller = NoCaller;
    match crate::boundary::place(
        &cx.view,
        &caller,
        libc::AT_FDCWD,
        &target,
        Intent { follow: false, create: false },
        &mut buf,
    ) {
        crate::boundary::Place::Original | crate::boundary::Place::Host(_) => reply(act(dup.as_raw_fd())),
        _ => Reply::Error(libc::EROFS),
    }
}

/// A caller for an absolute host path already resolved by the kernel (a descriptor's): no
/// directory, `/proc` link or tree probe is needed to place it.
struct NoCaller;

impl crate::boundary::Caller for NoCaller {
    fn cwd(&self, _: &mut PathBuffer) -> Result<(), i32> {
        Err(libc::ENOENT)
    }
    fn fd_path(&self, _: i32, _: &mut PathBuffer) -> Result<(), i32> {
        Err(libc::EBADF)
    }
    fn proc_link(&self, _: &[u8], _: &[u8], _: &mut PathBuffer) -> Result<(), i32> {
        Err(libc::ENOENT)
    }
    fn probe_tree(&self, _: &CStr, _: bool) -> Result<(), i32> {
        Ok(())
    }
    fn readlink_tree(&self, _: &CStr, _: &mut PathBuffer) -> Result<(), i32> {
        Err(libc::EINVAL)
    }
    fn probe_host(&self, _: &CStr, _: bool) -> Result<(), i32> {
        Ok(())
    }
    fn readlink_host(&self, _: &CStr, _: &mut PathBuffer) -> Result<(), i32> {
        Err(libc::EINVAL)
    }
}

fn stat(path: &str) -> Option<libc::stat> {
    let p = CString::new(path).ok()?;
    // SAFETY: plain struct the kernel fills; `p` NUL-terminated.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::stat(p.as_ptr(), &raw mut sb) } == 0).then_some(sb)
}

fn lstat(p: &CStr) -> Option<libc::stat> {
    // SAFETY: plain struct the kernel fills; `p` NUL-terminated.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::lstat(p.as_ptr(), &raw mut sb) } == 0).then_some(sb)
}

/// utimensat(2) on (`d`, `p`) with `times` (None: now) and `flags`, as the tracee asked.
fn set_times(d: i32, p: &std::ffi::CStr, times: Option<&[libc::timespec; 2]>, flags: libc::c_long) -> Result<(), i32> {
    let t = times.map_or(std::ptr::null(), |t| t.as_ptr());
    check(unsafe_syscall(libc::SYS_utimensat, d.into(), p.as_ptr() as libc::c_long, t as libc::c_long, flags, 0, 0))
}

/// utime's `struct utimbuf` (`short`) or utimes' two `struct timeval` at `addr` as two
/// timespecs (null: now).
fn old_times(mem: &impl TraceeMemory, addr: u64, short: bool) -> Result<Option<[libc::timespec; 2]>, ()> {
    if addr == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 32];
    let want = if short { 16 } else { 32 };
    if mem.read(addr, &mut b[..want]).map_err(|_| ())? != want {
        return Err(());
    }
    let word = |i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let ts = |sec: i64, usec: i64| libc::timespec { tv_sec: sec, tv_nsec: usec.saturating_mul(1000) };
    Ok(Some(if short { [ts(word(0), 0), ts(word(1), 0)] } else { [ts(word(0), word(1)), ts(word(2), word(3))] }))
}

/// A raw syscall in the supervisor: its result or -errno.
fn unsafe_syscall(
    nr: libc::c_long,
    a: libc::c_long,
    b: libc::c_long,
    c: libc::c_long,
    d: libc::c_long,
    e: libc::c_long,
    f: libc::c_long,
) -> libc::c_long {
    // SAFETY: every caller passes NUL-terminated paths it owns and integer arguments taken
    // from the tracee's registers, which the kernel validates.
    unsafe { libc::syscall(nr, a, b, c, d, e, f) }
}

fn check(r: libc::c_long) -> Result<(), i32> {
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)) }
}

fn truncate_at(d: i32, p: &CStr, len: libc::c_long) -> Result<(), i32> {
    // SAFETY: NUL-terminated path.
    let fd = unsafe { libc::openat(d, p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    // SAFETY: `fd` was just opened by us.
    let r = unsafe { libc::ftruncate(fd, len) };
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    check(libc::c_long::from(r))
}

/// The two timespecs at `addr` (null: now).
fn times(mem: &impl TraceeMemory, addr: u64) -> Result<Option<[libc::timespec; 2]>, ()> {
    if addr == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 2 * size_of::<libc::timespec>()];
    if mem.read(addr, &mut b).map_err(|_| ())? != b.len() {
        return Err(());
    }
    // SAFETY: 32 initialised bytes read as two plain timespecs (unaligned read).
    Ok(Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<[libc::timespec; 2]>()) }))
}

fn reply(r: Result<(), i32>) -> Reply {
    match r {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Error(e),
    }
}

/// One path: the layer's [`effect::mutate`], performed here.
fn single(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    dirfd: i32,
    addr: u64,
    op: Op,
    follow: bool,
    call: impl FnMut(i32, &CStr) -> Result<(), i32>,
) -> Reply {
    made(cx, mem, (dirfd, addr), op, follow, None, call)
}

/// [`single`] for a call that makes or removes a name: where the kernel would refuse it for
/// nothing (a writable prefix Landlock expanded), the broker's `broker` ([`super::handlers::brokered`]).
fn made(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    (dirfd, addr): (i32, u64),
    op: Op,
    follow: bool,
    broker: Option<host::Call<'_>>,
    mut call: impl FnMut(i32, &CStr) -> Result<(), i32>,
) -> Reply {
    let mut buf = PathBuffer::new();
    let tree = cx.tree;
    let view = cx.view;
    let placed = place(&view, tree, mem, dirfd, addr, op.intent(follow), &mut buf);
    let original = matches!(placed, crate::boundary::Place::Original);
    // The host path the program's own call names (the broker's, and the check below).
    let mut named = PathBuffer::new();
    let placed = match placed {
        crate::boundary::Place::Original => {
            if named.push(buf.as_bytes()).is_err() {
                named.clear();
            }
            crate::boundary::Place::Original
        }
        p => p,
    };
    // A host path the view led to, which the supervisor walks itself: not where a symlink
    // carries the change out of what the rules let the program change (the store). (A path as
    // the program named it is checked where it is acted on: a change of metadata by
    // `on_the_host`, a name made or removed by the broker's checks or, `CONTINUE`d, by the
    // kernel under the program's Landlock domain; checked here, `mkdir -p`'s `mkdir("/tmp/")`
    // was refused for its write-copy parent rather than answered EEXIST.)
    if let crate::boundary::Place::Host(p) = placed
        && let Err(e) = host::reaches_writable(&view, p, follow, op != Op::Modify)
    {
        return Reply::Error(e);
    }
    // A path that names a directory (a trailing '/', '.' or '..'): the kernel follows its last
    // symlink and wants a directory there.
    let spelled = read_path(mem, addr).unwrap_or_default();
    let must_dir = crate::resolve::names_dir(&spelled);
    if op == Op::Modify && original && spelled.is_empty() {
        return Reply::Error(libc::ENOENT); // an empty path (AT_EMPTY_PATH's are by descriptor)
    }
    let pid = cx.pid;
    match effect::mutate(&mut cx.tier(), &placed, op, |at| {
        let (d, p) = at_fd(tree, at, pid)?;
        call(d, &p)
    }) {
        None => match broker.filter(|_| original).and_then(|b| super::handlers::brokered(&view, &named, b)) {
            Some(r) => reply(r.map(drop)),
            // A change of metadata (or a truncation) on the host: Landlock does not cover it,
            // so it is made here rather than left to the kernel, which would read the path
            // again (another thread may have rewritten it since) and walk it again (a symlink
            // may have been swapped in since).
            None if op == Op::Modify && original => {
                reply(on_the_host(cx, named.as_cstr(), follow || must_dir, must_dir, &mut call))
            }
            None => Reply::Continue,
        },
        Some(r) => reply(r),
    }
}

/// `call` on host path `named` (absolute, normalized: what the program named, as the
/// supervisor read it once), made so that it lands where it was checked: with `follow`, the
/// file is opened `O_PATH` (following, as the call would), its canonical location checked
/// against the rules ([`host::lands_writable`]) and `call` made on `/proc/self/fd/N`, which
/// reaches that very file; without, the directory holding the name is opened and checked with
/// the name, and `call` made on the name in it (which the call does not follow). EACCES where
/// the rules keep the file from the program; ENAMETOOLONG for a path the layer could not hold.
/// `must_dir` (the program's path ended in '/', '.' or '..'): the file must be a directory
/// (ENOTDIR), its last symlink followed, as the kernel's walk of such a path.
fn on_the_host(
    cx: &Context<'_, '_>,
    named: &CStr,
    follow: bool,
    must_dir: bool,
    call: &mut impl FnMut(i32, &CStr) -> Result<(), i32>,
) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    if named.to_bytes().first() != Some(&b'/') {
        return Err(libc::ENAMETOOLONG);
    }
    let (_, p) = at_fd(cx.tree, crate::boundary::effect::At::Host(named), cx.pid)?;
    let b = p.to_bytes();
    let cut = b.iter().rposition(|&c| c == b'/').unwrap_or(0);
    let name = b.get(cut + 1..).unwrap_or_default();
    if follow || name.is_empty() || name == b"." || name == b".." {
        let fd = host::open_path(&p, libc::O_PATH | if must_dir { libc::O_DIRECTORY } else { 0 })?;
        host::lands_writable(&cx.view, &fd)?;
        // A directory named by '/', '.' or '..' is reached through its "." (a call that does
        // not follow its last symlink acts on the directory, not on the /proc link).
        let dot = if must_dir { "/." } else { "" };
        let own = CString::new(format!("/proc/self/fd/{}{dot}", fd.as_raw_fd())).map_err(|_| libc::EINVAL)?;
        return call(libc::AT_FDCWD, &own);
    }
    let dir = CString::new(if cut == 0 { &b"/"[..] } else { &b[..cut] }).map_err(|_| libc::EINVAL)?;
    let dir = host::open_path(&dir, libc::O_PATH | libc::O_DIRECTORY)?;
    let name = CString::new(name).map_err(|_| libc::EINVAL)?;
    host::lands_writable_in(&cx.view, &dir, name.to_bytes())?;
    call(dir.as_raw_fd(), &name)
}

/// Two paths (rename, link): the layer's [`effect::two`], performed here.
fn two(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    old: (i32, u64),
    new: (i32, u64),
    is_rename: bool,
    flags: libc::c_long,
) -> Reply {
    let (mut b1, mut b2) = (PathBuffer::new(), PathBuffer::new());
    let tree = cx.tree;
    let view = cx.view;
    let p1 = place(&view, tree, mem, old.0, old.1, Intent { follow: false, create: false }, &mut b1);
    let p2 = place(&view, tree, mem, new.0, new.1, Intent { follow: false, create: true }, &mut b2);
    // A host path the view led to is walked here, outside the domain: not through a symlink
    // into what the rules keep from the program (the store), on either side.
    for p in [&p1, &p2] {
        if let crate::boundary::Place::Host(h) = p
            && let Err(e) = host::reaches_writable(&view, h, false, true)
        {
            return Reply::Error(e);
        }
    }
    let nr = if is_rename { libc::SYS_renameat2 } else { libc::SYS_linkat };
    let pid = cx.pid;
    // A side that is the host's own is performed here with its absolute path.
    let abs = |s: Side<'_>, arg: (i32, u64)| match s {
        Side::At(at) => at_fd(tree, at, pid).ok().map(|(d, p)| (d, p.into_owned())),
        Side::Orig => read_abs(mem, arg).map(|p| (libc::AT_FDCWD, p)),
    };
    let r = effect::two(&mut cx.tier(), &p1, &p2, is_rename, |step| match step {
        Step::Call(a, b) => {
            let (Some((d1, a)), Some((d2, b))) = (abs(a, old), abs(b, new)) else { return Err(libc::EFAULT) };
            check(unsafe_syscall(
                nr,
                d1.into(),
                a.as_ptr() as libc::c_long,
                d2.into(),
                b.as_ptr() as libc::c_long,
                flags,
                0,
            ))
        }
        // A copy from the host and the removal of the host's name would be made with the
        // supervisor's credentials, not the program's (a program that dropped root could move
        // /etc/shadow into its tree): EXDEV, as between filesystems, until the supervisor
        // acts as the calling thread; `mv` then copies as the program. The shim copies in the
        // program itself.
        Step::Copy(..) | Step::Unlink(_) | Step::Discard(_) => Err(libc::EXDEV),
    });
    let both_original = matches!((&p1, &p2), (crate::boundary::Place::Original, crate::boundary::Place::Original));
    match r {
        None if both_original => {
            let to = b2.as_cstr();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // the flags' bits
            let b = if is_rename {
                host::Call::Rename { to, flags: flags as u32 }
            } else if flags & libc::c_long::from(libc::AT_SYMLINK_FOLLOW) == 0 {
                host::Call::Link { to }
            } else {
                return Reply::Continue;
            };
            match super::handlers::brokered(&view, &b1, b) {
                Some(r) => reply(r.map(drop)),
                None => Reply::Continue,
            }
        }
        None => Reply::Continue,
        Some(r) => reply(r),
    }
}

/// The argument as an absolute path (joined to the tracee's cwd or directory descriptor), for
/// a side that is the host's own.
fn read_abs(mem: &impl TraceeMemory, (dirfd, addr): (i32, u64)) -> Option<CString> {
    let p = read_path(mem, addr).ok()?;
    if p.first() == Some(&b'/') {
        return CString::new(p).ok();
    }
    let mut base = if dirfd == libc::AT_FDCWD { mem.cwd() } else { mem.fd_path(dirfd) }.ok()?;
    base.push(b'/');
    base.extend_from_slice(&p);
    CString::new(base).ok()
}
