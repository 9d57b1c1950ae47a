//! The handlers: one trapped call in, one [`Reply`] out. Opens are performed here and the
//! descriptor injected; stat, access and readlink are performed here and their results
//! written into the tracee. What is not the capsule's is `CONTINUE`d.
//!
//! Handlers take the tracee as a [`TraceeMemory`] and the materialiser as a [`Materialise`],
//! so the tests drive them with in-memory implementations of both.
#![allow(unsafe_code)] // fstatat/statx/readlinkat/faccessat on our own buffers

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::memory::TraceeMemory;
use super::notify::Reply;
pub(super) use super::place::{Sup, place};
use super::table::Family;
use crate::boundary::Place;
use crate::boundary::effect::{self, At};
use crate::resolve::Intent;
use crate::resolve::path::PathBuffer;
use crate::view::View;

/// The materialiser, as the handlers need it: run one operation on a tree path (no leading
/// '/'), returning 0 or an errno.
pub trait Materialise {
    /// Run materialiser operation `op` (`run::OP_*`) on `rel`.
    fn op(&mut self, op: u8, rel: &[u8]) -> i32;
}

/// What a run's supervisor knows.
pub struct Context<'v, 'm> {
    /// The run's view.
    pub view: View<'v>,
    /// The sandbox tree, open (`O_PATH`).
    pub tree: BorrowedFd<'v>,
    /// The materialiser.
    pub mat: &'m mut dyn Materialise,
    /// The run's host name, if it has its own.
    pub hostname: Option<&'m str>,
    /// The run's domain name, if it has its own.
    pub domain: Option<&'m str>,
    /// The capsule's address (`--ip`, outside `--netns`).
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// The interface that shows the capsule's address and MAC (outside `--netns`).
    pub iface: Option<crate::ifreq::Iface<'m>>,
    /// That interface's index (0: unknown), as route netlink names it.
    pub ifindex: u32,
    /// The calling thread.
    pub pid: u32,
}

/// Answer one trapped call `nr` with `args`: its family from the table ([`super::table`]),
/// then the family's handler.
pub fn handle(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Reply {
    dispatch(cx, mem, nr, a).unwrap_or(Reply::Continue)
}

/// [`handle`]; `None` when no family handler knows `nr` (the table test checks there is none).
pub(crate) fn dispatch(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    match super::table::family(nr)? {
        Family::Open => open_family(cx, mem, nr, a),
        Family::Stat => stat_family(cx, mem, nr, a),
        Family::Xattr => xattr::handle(cx, mem, nr, a),
        Family::Link => super::link::handle(cx, mem, nr, a),
        Family::Dir => dir::handle(cx, mem, nr, a),
        Family::Net => super::net::handle(cx, mem, nr, a),
        // uname; sethostname and setdomainname are the supervisor's (`supervisor::rename`).
        Family::Uts => Some(if nr == libc::SYS_uname { uname(cx, mem, a[0]) } else { Reply::Continue }),
        // Recorded in record mode (`supervisor::record`), then the kernel's.
        Family::Exec => Some(Reply::Continue),
        // Noted by the supervisor (`supervisor::creds`), then the kernel's.
        Family::Cred => Some(Reply::Continue),
    }
}

#[allow(clippy::cast_possible_truncation)] // int arguments travel in 64-bit registers
pub(super) fn int(v: u64) -> i32 {
    v as i32
}

/// The open family.
fn open_family(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    Some(match nr {
        libc::SYS_open => open(cx, mem, libc::AT_FDCWD, a[0], int(a[1]), a[2]),
        libc::SYS_openat => open(cx, mem, int(a[0]), a[1], int(a[2]), a[3]),
        // creat(2) is open(2) with these flags (x86-64 glibc's creat makes this call).
        libc::SYS_creat => open(cx, mem, libc::AT_FDCWD, a[0], libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, a[1]),
        libc::SYS_openat2 => openat2(cx, mem, int(a[0]), a[1], a[2], a[3]),
        _ => return None,
    })
}

/// The stat family: metadata, access and readlink.
fn stat_family(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    Some(match nr {
        libc::SYS_stat => stat(cx, mem, libc::AT_FDCWD, a[0], a[1], 0),
        libc::SYS_lstat => stat(cx, mem, libc::AT_FDCWD, a[0], a[1], libc::AT_SYMLINK_NOFOLLOW),
        libc::SYS_newfstatat => stat(cx, mem, int(a[0]), a[1], a[2], int(a[3])),
        libc::SYS_statx => statx(cx, mem, int(a[0]), a[1], int(a[2]), int(a[3]), a[4]),
        libc::SYS_access => access(cx, mem, libc::AT_FDCWD, a[0], int(a[1]), 0),
        libc::SYS_faccessat => access(cx, mem, int(a[0]), a[1], int(a[2]), 0),
        libc::SYS_faccessat2 => access(cx, mem, int(a[0]), a[1], int(a[2]), int(a[3])),
        libc::SYS_readlink => readlink(cx, mem, libc::AT_FDCWD, a[0], a[1], a[2]),
        libc::SYS_readlinkat => readlink(cx, mem, int(a[0]), a[1], a[2], a[3]),
        libc::SYS_statfs => statfs(cx, mem, a[0], a[1]),
        libc::SYS_name_to_handle_at => handle_of(cx, mem, int(a[0]), a[1], a[2], a[3], int(a[4])),
        libc::SYS_inotify_add_watch => watch(cx, mem, int(a[0]), a[1], a[2]),
        _ => return None,
    })
}

/// uname(2) with the run's host and domain names.
fn uname(cx: &Context<'_, '_>, mem: &impl TraceeMemory, out: u64) -> Reply {
    if cx.hostname.is_none() && cx.domain.is_none() {
        return Reply::Continue;
    }
    // SAFETY: a plain struct the kernel fills.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable.
    if unsafe { libc::uname(&raw mut u) } != 0 {
        return Reply::Error(errno());
    }
    let put = |field: &mut [libc::c_char; 65], v: &str| {
        field.fill(0);
        for (d, s) in field.iter_mut().zip(v.bytes().take(64)) {
            *d = s.cast_signed();
        }
    };
    if let Some(h) = cx.hostname {
        put(&mut u.nodename, h);
    }
    if let Some(d) = cx.domain {
        put(&mut u.domainname, d);
    }
    write_struct(mem, out, &u)
}

pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

impl Context<'_, '_> {
    /// The supervisor as the effects' tier.
    pub(super) fn tier(&mut self) -> Sup<'_, '_> {
        Sup { mat: &mut *self.mat, tree: self.tree }
    }
}

/// The descriptor an [`At`] names a path relative to, and the path, as the supervisor must
/// walk it for thread `pid`. The place is the tracee's but the walk is the supervisor's, so a
/// host path through the kernel's links to "this process" (`/proc/self`, `/proc/thread-self`,
/// `/dev/fd`, `/dev/std{in,out,err}`), which the kernel would take as the launcher's, is
/// spelled as the tracee's own (`/proc/TGID`, `/proc/TGID/task/TID`, as the kernel's links
/// say); and a host path into `/proc/PID` of any other process (its thread group and the
/// thread itself are the caller's) is refused (EACCES). The supervisor is root and confined
/// by nothing: a symlink the program put in its tree to `/proc/self/mem`,
/// `/proc/self/root/...` or `/proc/1/...` would otherwise reach through it the launcher's
/// memory or descriptors, the host's mount namespace or init, none of which the program
/// reaches itself (Landlock's ptrace rule).
pub(super) fn at_fd<'b>(
    tree: BorrowedFd<'_>,
    at: At<'b>,
    pid: u32,
) -> Result<(RawFd, std::borrow::Cow<'b, CStr>), i32> {
    use std::borrow::Cow;
    const OWN: [(&[u8], &str); 6] = [
        (b"/proc/self", ""),
        (b"/proc/thread-self", "/task/"),
        (b"/dev/fd", "/fd"),
        (b"/dev/stdin", "/fd/0"),
        (b"/dev/stdout", "/fd/1"),
        (b"/dev/stderr", "/fd/2"),
    ];
    let abs = match at {
        At::Tree(rel) => return Ok((tree.as_raw_fd(), Cow::Borrowed(rel))),
        At::Host(abs) => abs,
    };
    let below = |b: &'b [u8], p: &[u8]| b.strip_prefix(p).filter(|r| r.is_empty() || r.first() == Some(&b'/'));
    let b = abs.to_bytes();
    for (link, sub) in OWN {
        if let Some(rest) = below(b, link) {
            // The thread is stopped in its call, so it and its group are there to be named.
            let tgid = tgid_of(pid).ok_or(libc::ESRCH)?;
            let mut v = format!("/proc/{tgid}{sub}").into_bytes();
            if sub == "/task/" {
                v.extend_from_slice(pid.to_string().as_bytes());
            }
            v.extend_from_slice(rest);
            return std::ffi::CString::new(v).map(|c| (libc::AT_FDCWD, Cow::Owned(c))).map_err(|_| libc::EINVAL);
        }
    }
    if let Some(n) = below(b, b"/proc").and_then(|r| r.get(1..)).and_then(|r| r.split(|&c| c == b'/').next())
        && !n.is_empty()
        && n.iter().all(u8::is_ascii_digit)
        && n != pid.to_string().as_bytes()
        && tgid_of(pid).is_none_or(|g| n != g.to_string().as_bytes())
    {
        return Err(libc::EACCES);
    }
    Ok((libc::AT_FDCWD, Cow::Borrowed(abs)))
}

/// The thread group (process) thread `tid` belongs to.
pub(super) fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:"))?.trim().parse().ok()
}

fn open(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, dirfd: i32, addr: u64, flags: i32, mode: u64) -> Reply {
    #[allow(clippy::cast_possible_truncation)] // mode_t is 32 bits
    let mode = mode as libc::mode_t;
    let mut buf = PathBuffer::new();
    let view = cx.view;
    let placed = place(&view, cx.tree, mem, dirfd, addr, effect::open_intent(flags), &mut buf);
    let original = matches!(placed, Place::Original);
    let r = match open_placed(cx, &placed, flags, mode) {
        // An open for writing of a path that names a directory: EISDIR for one, else the
        // walk's error, as the kernel answers, and nothing opened (the broker and
        // `open_truncating` would drop the trailing '/').
        None if original
            && effect::opens_to_write(flags)
            && super::memory::read_path(mem, addr).is_ok_and(|p| crate::resolve::names_dir(&p)) =>
        {
            Some(match at_fd(cx.tree, At::Host(buf.as_cstr()), cx.pid) {
                Ok((_, p)) => match super::host::open_path(&p, libc::O_PATH | libc::O_DIRECTORY) {
                    Ok(_) => Err(libc::EISDIR),
                    Err(libc::ENOENT) if flags & libc::O_CREAT != 0 => Err(libc::EISDIR),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            })
        }
        None if original && effect::opens_to_write(flags) => {
            match brokered(&view, &buf, super::host::Call::Open { flags, mode }).map(|r| r?.ok_or(libc::EIO)) {
                // Landlock sees a read: made here, never `CONTINUE`d (`host::open_truncating`).
                #[allow(clippy::cast_sign_loss)] // the flag bits
                None if super::table::truncates_unasked(u64::from(flags as u32)) => {
                    Some(at_fd(cx.tree, At::Host(buf.as_cstr()), cx.pid).and_then(|(_, p)| {
                        if p.to_bytes().first() == Some(&b'/') {
                            super::host::open_truncating(&view, &p, flags, mode)
                        } else {
                            Err(libc::ENAMETOOLONG)
                        }
                    }))
                }
                r => r,
            }
        }
        r => r,
    };
    match r.map(|r| r.and_then(|fd| injectable(fd, flags))) {
        None => Reply::Continue,
        Some(Ok(fd)) => Reply::Fd { fd, cloexec: flags & libc::O_CLOEXEC != 0 },
        Some(Err(e)) => Reply::Error(e),
    }
}

/// A host call as the program named it (`Place::Original`, whose host path `buf` holds) that
/// changes a name or opens a file for writing, where the path is governed by a writable prefix
/// Landlock had to expand (`supervisor::host::allowed`): the broker's, made here, since the
/// kernel would refuse it for nothing. `None` (`CONTINUE`: the kernel and Landlock decide)
/// elsewhere, and where the broker refuses (a symlink out of the prefix: the kernel's walk is
/// the one that counts).
pub(super) fn brokered(
    view: &View<'_>,
    buf: &PathBuffer,
    call: super::host::Call<'_>,
) -> Option<Result<Option<OwnedFd>, i32>> {
    if !super::host::may(view, buf.as_bytes(), &call) {
        return None;
    }
    match super::host::perform(view, buf.as_cstr(), call) {
        Err(libc::EACCES) => None,
        r => Some(r),
    }
}

/// Open a placed path in the supervisor, with the layer's open effects. `None`: not ours. A
/// tree file opened to be written that has another name (a link the program made) is copied
/// up and opened again: never written through to an inode it shares.
fn open_placed(
    cx: &mut Context<'_, '_>,
    placed: &Place<'_, '_>,
    flags: i32,
    mode: libc::mode_t,
) -> Option<Result<OwnedFd, i32>> {
    let r = open_placed_once(cx, placed, flags, mode);
    let rel = match *placed {
        Place::Tree(rel, _) | Place::TreeThenHost(rel, _) => rel,
        _ => return r,
    };
    match r {
        Some(Err(libc::EMLINK)) if effect::Tier::materialise(&mut cx.tier(), effect::OP_COPY_UP, rel) == 0 => {
            Some(open_placed_once(cx, placed, flags, mode)?.map_err(|e| if e == libc::EMLINK { libc::EIO } else { e }))
        }
        Some(Err(libc::EMLINK)) => Some(Err(libc::EIO)),
        r => r,
    }
}

fn open_placed_once(
    cx: &mut Context<'_, '_>,
    placed: &Place<'_, '_>,
    flags: i32,
    mode: libc::mode_t,
) -> Option<Result<OwnedFd, i32>> {
    let (tree, pid, view) = (cx.tree, cx.pid, cx.view);
    effect::open(&mut cx.tier(), placed, flags, |at, flags| {
        let (d, p) = at_fd(tree, at, pid)?;
        // A tree file opened to be written is never one with another name (the cache's).
        let fd = if matches!(at, At::Tree(_)) && effect::opens_to_write(flags) {
            super::place::open_unshared(d, &p, flags, mode, 0)?
        } else {
            open_at(d, &p, flags, mode)?
        };
        if matches!(at, At::Host(_)) && launcher_is_root() && is_block_device(&fd) {
            // A run as root: the host's disks are granted nothing (`run::confine::grant_rules`),
            // and neither are they opened on the program's behalf, whatever symlink led here.
            return Err(libc::EACCES);
        }
        if matches!(at, At::Host(_)) && effect::opens_to_write(flags) {
            // A host symlink led the supervisor's walk where the program may not write.
            super::host::lands_writable(&view, &fd)?;
        }
        Ok(fd)
    })
}

/// Whether this process (the launcher) runs as root: asked once.
pub(super) fn launcher_is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| nix::unistd::geteuid().is_root())
}

/// Whether `fd` is a block device.
fn is_block_device(fd: &OwnedFd) -> bool {
    // SAFETY: `sb` is a plain struct the kernel fills; `fd` is open.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::fstat(fd.as_raw_fd(), &raw mut sb) };
    r == 0 && sb.st_mode & libc::S_IFMT == libc::S_IFBLK
}

/// openat2(2): `struct open_how` at `how` (`size` bytes). Without RESOLVE_* flags it is
/// openat. With them, a path that is not the capsule's is the kernel's; a capsule path is
/// ENOSYS, as on a kernel without openat2, so the program falls back to openat (which is
/// served): the RESOLVE_* rules are about the host kernel's walk, which a capsule path never
/// takes, and honouring them in the view is not done (docs/architecture.md, tier 2 gaps).
fn openat2(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, dirfd: i32, addr: u64, how: u64, size: u64) -> Reply {
    const VER0: usize = 24; // OPEN_HOW_SIZE_VER0: flags, mode, resolve
    if usize::try_from(size).is_ok_and(|s| s < VER0) {
        return Reply::Error(libc::EINVAL);
    }
    let mut raw = [0u8; VER0];
    if mem.read(how, &mut raw).map_or(true, |n| n < VER0) {
        return Reply::Error(libc::EFAULT);
    }
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let (flags, mode, resolve) = (word(0), word(1), word(2));
    let Ok(flags) = i32::try_from(flags) else { return Reply::Error(libc::EINVAL) };
    if resolve == 0 {
        return open(cx, mem, dirfd, addr, flags, mode);
    }
    let mut buf = PathBuffer::new();
    let view = cx.view;
    match place(&view, cx.tree, mem, dirfd, addr, Intent { follow: true, create: false }, &mut buf) {
        Place::Original => Reply::Continue,
        _ => Reply::Error(libc::ENOSYS),
    }
}

/// `fd` as the kernel will inject it. `ADDFD` refuses an `O_PATH` descriptor (EBADF: it takes
/// its source with `fget`), so an `O_PATH` open, resolved and checked as asked, is reopened
/// read-only (non-blocking: a FIFO must not wait for a writer) through `/proc/self/fd`. The
/// program can use it everywhere it could use the `O_PATH` one (a directory for the `*at`
/// calls, `fchdir`, `fstat`); it differs in `F_GETFL`, in that `read` works, and in what
/// cannot be opened for reading: a file without read permission (EACCES) and a symlink
/// opened `O_PATH | O_NOFOLLOW` (ELOOP). Those stay tier-2 gaps (docs/architecture.md).
fn injectable(fd: OwnedFd, flags: i32) -> Result<OwnedFd, i32> {
    if flags & libc::O_PATH == 0 {
        return Ok(fd);
    }
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|_| libc::EINVAL)?;
    let keep = flags & libc::O_DIRECTORY;
    open_at(libc::AT_FDCWD, &path, libc::O_RDONLY | libc::O_NONBLOCK | keep, 0)
}

/// Open in the supervisor, always close-on-exec here (the tracee's own flag travels with
/// the injection).
fn open_at(dirfd: RawFd, path: &CStr, flags: i32, mode: libc::mode_t) -> Result<OwnedFd, i32> {
    // SAFETY: `path` is NUL-terminated; the kernel returns a new descriptor or -1.
    let fd = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A tree file the sandbox owns alone (not a link to the shared cache).
pub(crate) fn private(tree: BorrowedFd<'_>, rel: &CStr) -> bool {
    // SAFETY: `rel` NUL-terminated; `sb` is a plain struct the kernel fills.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::fstatat(tree.as_raw_fd(), rel.as_ptr(), &raw mut sb, libc::AT_SYMLINK_NOFOLLOW) };
    r == 0 && sb.st_mode & libc::S_IFMT == libc::S_IFREG && sb.st_nlink == 1
}

/// Run a read-family call at the tracee's placed path: `op(dirfd, path)`. `None`: not ours.
fn at<T>(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    dirfd: i32,
    addr: u64,
    intent: Intent,
    mut op: impl FnMut(RawFd, &CStr) -> Result<T, i32>,
) -> Option<Result<T, i32>> {
    let mut buf = PathBuffer::new();
    let tree = cx.tree;
    let view = cx.view;
    let placed = place(&view, tree, mem, dirfd, addr, intent, &mut buf);
    let pid = cx.pid;
    effect::read(&mut cx.tier(), &placed, |at| {
        let (d, p) = at_fd(tree, at, pid)?;
        op(d, &p)
    })
}

/// Write `v`'s bytes at `addr` in the tracee and answer 0.
fn write_struct<T: Copy>(mem: &impl TraceeMemory, addr: u64, v: &T) -> Reply {
    // SAFETY: `T` is a plain C struct (stat, statx) fully initialised by the kernel; viewing
    // it as bytes reads exactly size_of::<T>() initialised bytes.
    let bytes = unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<T>()) };
    match mem.write(addr, bytes) {
        Ok(()) => Reply::Value(0),
        Err(_) => Reply::Error(libc::EFAULT),
    }
}

fn stat(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, dirfd: i32, addr: u64, out: u64, flags: i32) -> Reply {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let r = at(cx, mem, dirfd, addr, Intent { follow, create: false }, |d, p| {
        // SAFETY: plain struct, filled by the kernel on success.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `p` NUL-terminated, `sb` writable.
        let r = unsafe { libc::fstatat(d, p.as_ptr(), &raw mut sb, flags & libc::AT_SYMLINK_NOFOLLOW) };
        if r == 0 { Ok(sb) } else { Err(errno()) }
    });
    match r {
        None => Reply::Continue,
        Some(Ok(sb)) => write_struct(mem, out, &sb),
        Some(Err(e)) => Reply::Error(e),
    }
}

fn statx(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    dirfd: i32,
    addr: u64,
    flags: i32,
    mask: i32,
    out: u64,
) -> Reply {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    #[allow(clippy::cast_sign_loss)] // a bit mask
    let mask = mask as u32;
    let r = at(cx, mem, dirfd, addr, Intent { follow, create: false }, |d, p| {
        // SAFETY: plain struct, filled by the kernel on success.
        let mut sx: libc::statx = unsafe { std::mem::zeroed() };
        let keep = flags & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_TYPE | libc::AT_NO_AUTOMOUNT);
        // SAFETY: `p` NUL-terminated, `sx` writable.
        let r = unsafe { libc::statx(d, p.as_ptr(), keep, mask, &raw mut sx) };
        if r == 0 { Ok(sx) } else { Err(errno()) }
    });
    match r {
        None => Reply::Continue,
        Some(Ok(sx)) => write_struct(mem, out, &sx),
        Some(Err(e)) => Reply::Error(e),
    }
}

fn access(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, dirfd: i32, addr: u64, mode: i32, flags: i32) -> Reply {
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let r = at(cx, mem, dirfd, addr, Intent { follow, create: false }, |d, p| {
        // SAFETY: `p` NUL-terminated; faccessat2 only reads it.
        let r = unsafe { libc::syscall(libc::SYS_faccessat2, d, p.as_ptr(), mode, flags) };
        if r == 0 { Ok(()) } else { Err(errno()) }
    });
    match r {
        None => Reply::Continue,
        Some(Ok(())) => Reply::Value(0),
        Some(Err(e)) => Reply::Error(e),
    }
}

fn readlink(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, dirfd: i32, addr: u64, out: u64, size: u64) -> Reply {
    let cap = usize::try_from(size).unwrap_or(usize::MAX).min(super::memory::PATH_MAX);
    let view = cx.view;
    let r = at(cx, mem, dirfd, addr, Intent { follow: false, create: false }, |d, p| {
        let mut buf = vec![0u8; cap];
        // SAFETY: `p` NUL-terminated; the kernel writes at most `cap` bytes to `buf`.
        let n = unsafe { libc::readlinkat(d, p.as_ptr(), buf.as_mut_ptr().cast(), cap) };
        let n = usize::try_from(n).map_err(|_| errno())?;
        buf.truncate(n);
        Ok(buf)
    });
    match r {
        None => proc_readlink(&view, mem, addr, out, cap),
        Some(Ok(_)) if size == 0 => Reply::Error(libc::EINVAL),
        Some(Ok(target)) => match mem.write(out, &target) {
            Ok(()) => Reply::Value(i64::try_from(target.len()).unwrap_or(0)),
            Err(_) => Reply::Error(libc::EFAULT),
        },
        Some(Err(e)) => Reply::Error(e),
    }
}

/// statfs(2) of the placed path.
fn statfs(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, addr: u64, out: u64) -> Reply {
    let r = at(cx, mem, libc::AT_FDCWD, addr, Intent { follow: true, create: false }, |d, p| {
        let fd = open_at(d, p, libc::O_PATH, 0)?;
        // SAFETY: plain struct, filled by the kernel on success.
        let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open, `sf` writable.
        if unsafe { libc::fstatfs(fd.as_raw_fd(), &raw mut sf) } == 0 { Ok(sf) } else { Err(errno()) }
    });
    match r {
        None => Reply::Continue,
        Some(Ok(sf)) => write_struct(mem, out, &sf),
        Some(Err(e)) => Reply::Error(e),
    }
}

/// name_to_handle_at(2) of the placed path: the handle (`struct file_handle` at `handle`,
/// whose `handle_bytes` the caller set) and the mount id written back.
fn handle_of(
    cx: &mut Context<'_, '_>,
    mem: &impl TraceeMemory,
    dirfd: i32,
    addr: u64,
    handle: u64,
    mount_id: u64,
    flags: i32,
) -> Reply {
    const MAX_HANDLE_SZ: usize = 128;
    let mut head = [0u8; 4];
    if mem.read(handle, &mut head).map_or(true, |n| n < 4) {
        return Reply::Error(libc::EFAULT);
    }
    let asked = u32::from_ne_bytes(head);
    let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
    let r = at(cx, mem, dirfd, addr, Intent { follow, create: false }, |d, p| {
        let mut buf = vec![0u8; 8 + MAX_HANDLE_SZ];
        buf[..4].copy_from_slice(&asked.min(128).to_ne_bytes());
        let mut mnt: libc::c_int = 0;
        let keep = flags & !libc::AT_EMPTY_PATH;
        // SAFETY: `p` NUL-terminated; `buf` holds a file_handle header and MAX_HANDLE_SZ bytes.
        let r =
            unsafe { libc::syscall(libc::SYS_name_to_handle_at, d, p.as_ptr(), buf.as_mut_ptr(), &raw mut mnt, keep) };
        let e = if r == 0 { 0 } else { errno() };
        if r == 0 || e == libc::EOVERFLOW { Ok((e, buf, mnt)) } else { Err(e) }
    });
    match r {
        None => Reply::Continue,
        Some(Err(e)) => Reply::Error(e),
        Some(Ok((e, buf, mnt))) => {
            let bytes = u32::from_ne_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
            let n = if e == 0 { 8 + bytes.min(128) } else { 4 };
            if mem.write(handle, &buf[..n]).is_err() || (e == 0 && mem.write(mount_id, &mnt.to_ne_bytes()).is_err()) {
                return Reply::Error(libc::EFAULT);
            }
            if e == 0 { Reply::Value(0) } else { Reply::Error(e) }
        }
    }
}

/// inotify_add_watch(2) of the placed path, on the program's own inotify instance (taken with
/// `pidfd_getfd`, so the watch is the program's).
fn watch(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, fd: i32, addr: u64, mask: u64) -> Reply {
    const IN_DONT_FOLLOW: u64 = 0x0200_0000;
    const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
    let pid = cx.pid;
    let r = at(cx, mem, libc::AT_FDCWD, addr, Intent { follow: mask & IN_DONT_FOLLOW == 0, create: false }, |d, p| {
        // SAFETY: pidfd_open and pidfd_getfd take integers; each returns a new descriptor.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), PIDFD_THREAD) };
        let pidfd = i32::try_from(pidfd).map_err(|_| errno())?;
        // SAFETY: `pidfd` was just opened and is ours.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        // SAFETY: as above.
        let theirs = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        let theirs = i32::try_from(theirs).map_err(|_| errno())?;
        // SAFETY: the duplicate was just installed here and is ours.
        let theirs = unsafe { OwnedFd::from_raw_fd(theirs) };
        let path = if d == libc::AT_FDCWD {
            p.to_owned()
        } else {
            let mut s = format!("/proc/self/fd/{d}/").into_bytes();
            s.extend_from_slice(p.to_bytes());
            std::ffi::CString::new(s).map_err(|_| libc::EINVAL)?
        };
        #[allow(clippy::cast_possible_truncation)] // a 32-bit mask in a 64-bit register
        // SAFETY: `path` NUL-terminated; `theirs` is an open descriptor.
        let w = unsafe { libc::inotify_add_watch(theirs.as_raw_fd(), path.as_ptr(), mask as u32) };
        if w >= 0 { Ok(w) } else { Err(errno()) }
    });
    match r {
        None => Reply::Continue,
        Some(Ok(w)) => Reply::Value(i64::from(w)),
        Some(Err(e)) => Reply::Error(e),
    }
}

mod dir;
/// readlink(2) of `/proc/{self,thread-self,PID}/{exe,cwd,fd/N}`, which the layer leaves to
/// the kernel: a target inside the tree (a capsule program exec'd by its tree path, a cwd or
/// descriptor the supervisor opened) is named by its virtual path, as the shim's readlink
/// does; any other target is the kernel's answer.
fn proc_readlink(view: &View<'_>, mem: &impl TraceeMemory, addr: u64, out: u64, cap: usize) -> Reply {
    let Ok(path) = super::memory::read_path(mem, addr) else { return Reply::Continue };
    let Some(rest) = path.strip_prefix(b"/proc/") else { return Reply::Continue };
    let Some(slash) = rest.iter().position(|&c| c == b'/') else { return Reply::Continue };
    let (proc, link) = (&rest[..slash], &rest[slash + 1..]);
    let pid_like = proc == b"self" || proc == b"thread-self" || proc.iter().all(u8::is_ascii_digit);
    let fd_link = link.strip_prefix(b"fd/").is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit));
    if !pid_like || proc.is_empty() || !(link == b"exe" || link == b"cwd" || fd_link) {
        return Reply::Continue;
    }
    let Ok(target) = mem.proc_link(proc, link) else { return Reply::Continue };
    let Some(virt) = crate::resolve::untree(view.tree(), &target) else { return Reply::Continue };
    if cap == 0 {
        return Reply::Error(libc::EINVAL);
    }
    let n = virt.len().min(cap);
    if mem.write(out, &virt[..n]).is_err() || !mem.still_valid() {
        return Reply::Error(libc::EFAULT);
    }
    Reply::Value(i64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests;
mod xattr;
