//! The network calls the supervisor answers for programs without the shim, by the same rules
//! as the shim's hooks: `bind` (`crate::bindaddr`; a unix socket's path placed in the view),
//! `connect` of a unix socket's path, and the interface ioctls (`crate::ifreq`). Both act on a duplicate of the tracee's socket (`pidfd_getfd`): the
//! socket itself is shared, so binding or querying the duplicate is binding or querying it.
#![allow(unsafe_code)] // pidfd_open/pidfd_getfd, bind, getsockopt, ioctl on our own duplicate

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::handlers::{Context, errno};
use super::memory::TraceeMemory;
use super::notify::Reply;
use crate::ifreq;

/// The net family: bind, the interface ioctls, route netlink reads.
pub fn handle(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    use super::handlers::int;
    Some(match nr {
        libc::SYS_bind => bind(cx, mem, int(a[0]), a[1], a[2]),
        libc::SYS_connect => connect(cx, mem, int(a[0]), a[1], a[2]),
        libc::SYS_getsockname | libc::SYS_getpeername => sock_name(cx, mem, nr, int(a[0]), a[1], a[2]),
        libc::SYS_ioctl => ioctl(cx, mem, int(a[0]), a[1], a[2]),
        libc::SYS_recvmsg => match cx.iface {
            Some(i) => {
                let id = crate::rtnl::Identity { index: cx.ifindex, ipv4: i.ipv4, mac: i.mac };
                super::netlink::recvmsg(cx.pid, &id, mem, int(a[0]), a[1], int(a[2]))
            }
            None => Reply::Continue,
        },
        _ => return None,
    })
}

/// bind(2) for programs without the shim, by the shim's rules (`crate::bindaddr`). The
/// supervisor binds a duplicate of the tracee's socket (`pidfd_getfd`): the socket is shared.
pub fn bind(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, fd: i32, addr: u64, len: u64) -> Reply {
    let mut family = [0u8; 2];
    if mem.read(addr, &mut family).is_ok_and(|n| n == 2) && i32::from(u16::from_ne_bytes(family)) == libc::AF_UNIX {
        return unix_bind(cx, mem, fd, addr, len);
    }
    let Some(ip) = cx.ipv4 else { return Reply::Continue };
    let mut sa = [0u8; crate::bindaddr::IN6_LEN];
    let n = usize::try_from(len).unwrap_or(0).min(sa.len());
    if n < 2 || mem.read(addr, &mut sa[..n]).map_or(true, |r| r < n) || !mem.still_valid() {
        return Reply::Continue;
    }
    let Ok(dup) = tracee_fd(cx.pid, fd) else { return Reply::Continue };
    let v6only = || {
        let mut v: libc::c_int = 0;
        let mut vlen = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
        // SAFETY: our duplicate of the socket; `v` and `vlen` are ours and sized.
        let r = unsafe {
            libc::getsockopt(dup.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, (&raw mut v).cast(), &mut vlen)
        };
        r == 0 && v != 0
    };
    match crate::bindaddr::rewrite(&mut sa, n, ip.octets(), v6only) {
        Ok(false) => Reply::Continue,
        Err(e) => Reply::Error(e),
        Ok(true) => {
            let slen = libc::socklen_t::try_from(n).unwrap_or(16);
            // SAFETY: `sa` holds `n` bytes of a socket address; `dup` is ours.
            let r = unsafe { libc::bind(dup.as_raw_fd(), sa.as_ptr().cast(), slen) };
            if r == 0 { Reply::Value(0) } else { Reply::Error(errno()) }
        }
    }
}

/// A duplicate of the tracee's descriptor `fd` (`pidfd_open` + `pidfd_getfd`), ours to close:
/// thread `tid`'s (`PIDFD_THREAD`, Linux 6.9), else its thread group's. EBADF when the
/// tracee has no such descriptor.
pub(super) fn tracee_fd(tid: u32, fd: i32) -> Result<OwnedFd, i32> {
    const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: pidfd_open with integer arguments; returns a new descriptor or -1.
    let mut pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(tid), PIDFD_THREAD) };
    if pidfd < 0 {
        let tgid = super::handlers::tgid_of(tid).ok_or(libc::ESRCH)?;
        // SAFETY: as above.
        pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(tgid), 0) };
    }
    let pidfd = i32::try_from(pidfd).ok().filter(|&p| p >= 0).ok_or_else(errno)?;
    // SAFETY: a descriptor pidfd_open just returned, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // SAFETY: pidfd_getfd with integer arguments; returns a new descriptor or -1.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    let dup = i32::try_from(dup).ok().filter(|&d| d >= 0).ok_or_else(errno)?;
    // SAFETY: as above, from pidfd_getfd.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// The path of the AF_UNIX address at `addr` (`len` bytes) in the tracee, without its NUL:
/// `None` for another family, an abstract name or autobind.
fn unix_path(mem: &impl TraceeMemory, addr: u64, len: u64) -> Option<Vec<u8>> {
    const SUN_PATH: usize = 108;
    let mut sa = [0u8; 2 + SUN_PATH];
    let n = usize::try_from(len).unwrap_or(0).min(sa.len());
    if n <= 2 || mem.read(addr, &mut sa[..n]).map_or(true, |r| r < n) || !mem.still_valid() {
        return None;
    }
    if i32::from(u16::from_ne_bytes([sa[0], sa[1]])) != libc::AF_UNIX {
        return None;
    }
    let path = &sa[2..n];
    let path = &path[..path.iter().position(|&c| c == 0).unwrap_or(path.len())];
    (!path.is_empty()).then(|| path.to_vec())
}

/// The kernel's `nr` (bind or connect) on socket `sock` (our duplicate of the tracee's) with
/// the path (`d`, `p`) as the supervisor walks it: a path relative to a descriptor of ours (the
/// tree's) through `/proc/self/fd/D/`, as the shim names a tree path (`sun_path` holds 107
/// bytes, which the store's own path often exceeds). ENAMETOOLONG when it does not fit.
fn unix_call(nr: libc::c_long, sock: &OwnedFd, d: i32, p: &std::ffi::CStr) -> Result<(), i32> {
    let mut path = if d == libc::AT_FDCWD { Vec::new() } else { format!("/proc/self/fd/{d}/").into_bytes() };
    path.extend_from_slice(p.to_bytes());
    // SAFETY: a plain struct of bytes; all-zero is a valid (unnamed) address.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if path.len() >= sa.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    #[allow(clippy::cast_possible_truncation)] // AF_UNIX fits sa_family_t
    {
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    }
    for (d, s) in sa.sun_path.iter_mut().zip(&path) {
        *d = s.cast_signed();
    }
    let len = libc::socklen_t::try_from(2 + path.len() + 1).unwrap_or(110);
    // SAFETY: `sa` is a sockaddr_un of ours, `len` bytes of it used; `sock` is ours.
    let r = unsafe { libc::syscall(nr, sock.as_raw_fd(), (&raw const sa).cast::<libc::sockaddr>(), len) };
    if r == 0 { Ok(()) } else { Err(errno()) }
}

/// The AF_UNIX path at `addr` (`len` bytes) in the tracee placed in the view for `intent`,
/// into `buf`; `None` for no path (another family, an abstract name, autobind).
fn placed_unix<'b, 'v>(
    cx: &Context<'v, '_>,
    mem: &impl TraceeMemory,
    (addr, len): (u64, u64),
    intent: crate::resolve::Intent,
    buf: &'b mut crate::resolve::path::PathBuffer,
) -> Option<crate::boundary::Place<'b, 'v>> {
    let path = unix_path(mem, addr, len)?;
    Some(super::place::place_bytes(&cx.view, cx.tree, mem, &path, intent, buf))
}

/// bind(2) of a unix socket to a path, placed as the shim places it (`hooks::sockpath`): a
/// name under write-copy is made in the sandbox tree (a static server binding
/// `/run/app.sock`), a merged one on the host; where the kernel would refuse it for nothing
/// (directly beside the store, in a merged prefix Landlock expanded around it), the broker
/// binds it there. The supervisor binds the tracee's socket (a duplicate of it: the socket is
/// shared); the kernel's (`CONTINUE`, Landlock judging) for a path the view leaves as named.
/// The name the kernel then holds for a socket bound in the tree is the supervisor's spelling
/// (`/proc/self/fd/D/run/app.sock`), which `getsockname` and `getpeername` give back as the
/// program bound it ([`sock_name`]).
fn unix_bind(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, fd: i32, addr: u64, len: u64) -> Reply {
    let mut buf = crate::resolve::path::PathBuffer::new();
    let intent = crate::resolve::Intent { follow: false, create: true };
    let Some(placed) = placed_unix(cx, mem, (addr, len), intent, &mut buf) else { return Reply::Continue };
    let Ok(dup) = tracee_fd(cx.pid, fd) else { return Reply::Continue };
    if matches!(placed, crate::boundary::Place::Original) {
        let call = super::host::Call::Bind { socket: dup.as_raw_fd() };
        let view = cx.view;
        return match super::handlers::brokered(&view, &buf, call) {
            Some(Ok(_)) => Reply::Value(0),
            Some(Err(e)) => Reply::Error(e),
            None => Reply::Continue,
        };
    }
    let (tree, pid) = (cx.tree, cx.pid);
    let made = crate::boundary::effect::mutate(&mut cx.tier(), &placed, crate::boundary::effect::Op::Create, |at| {
        let (d, p) = super::handlers::at_fd(tree, at, pid)?;
        unix_call(libc::SYS_bind, &dup, d, &p)
    });
    match made {
        None => Reply::Continue,
        Some(Ok(())) => Reply::Value(0),
        Some(Err(e)) => Reply::Error(e),
    }
}

/// getsockname(2) or getpeername(2) (`nr`) for a program without the shim: a unix socket
/// bound in the tree is named as the program bound it (`/run/app.sock`), not as the kernel
/// holds it (`/proc/self/fd/D/run/app.sock`, [`crate::boundary::tree_socket_name`]); the shim
/// answers the same in-process. Go's listener takes its address, and the path it unlinks at
/// `Close`, from `getsockname`. A name of this supervisor's spelling (its tree descriptor),
/// or of another process's (a shim's) naming a socket the tree holds, is given back; anything
/// else is the kernel's answer (`CONTINUE`).
fn sock_name(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, fd: i32, addr: u64, lenp: u64) -> Reply {
    let Ok(dup) = tracee_fd(cx.pid, fd) else { return Reply::Continue };
    // SAFETY: plain data; all zeroes is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sockaddr_storage>();
    let mut sl = libc::socklen_t::try_from(size).unwrap_or(128);
    // SAFETY: our buffer of `sl` bytes and its length; `dup` is ours.
    let r = unsafe { libc::syscall(nr, dup.as_raw_fd(), (&raw mut ss).cast::<libc::sockaddr>(), &raw mut sl) };
    if r != 0 || i32::from(ss.ss_family) != libc::AF_UNIX {
        return Reply::Continue;
    }
    // SAFETY: `ss` is ours, `size` bytes long.
    let bytes = unsafe { std::slice::from_raw_parts((&raw const ss).cast::<u8>(), size) };
    let name = bytes.get(2..(sl as usize).min(size)).unwrap_or_default();
    let name = name.split(|&c| c == 0).next().unwrap_or_default();
    let tree = cx.tree.as_raw_fd();
    let tree_socket = |rel: &[u8]| {
        let Ok(p) = std::ffi::CString::new(rel) else { return false };
        // SAFETY: plain struct the kernel fills; `p` NUL-terminated, relative to the tree.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe { libc::fstatat(tree, p.as_ptr(), &raw mut sb, libc::AT_SYMLINK_NOFOLLOW) };
        r == 0 && sb.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    let Some(rel) = crate::boundary::unplaced_socket(name, i64::from(tree), tree_socket) else {
        return Reply::Continue;
    };
    let mut out = Vec::with_capacity(2 + rel.len() + 1);
    out.extend_from_slice(&ss.ss_family.to_ne_bytes());
    out.extend_from_slice(rel);
    out.push(0);
    let mut len = [0u8; 4];
    if mem.read(lenp, &mut len).map_or(true, |n| n < 4) {
        return Reply::Error(libc::EFAULT);
    }
    let Ok(offered) = usize::try_from(i32::from_ne_bytes(len)) else { return Reply::Error(libc::EINVAL) };
    let give = out.get(..offered.min(out.len())).unwrap_or_default();
    let full = u32::try_from(out.len()).unwrap_or(u32::MAX).to_ne_bytes();
    if mem.write(addr, give).is_err() || mem.write(lenp, &full).is_err() || !mem.still_valid() {
        return Reply::Error(libc::EFAULT);
    }
    Reply::Value(0)
}

/// connect(2) of a unix socket to a path, for a program without the shim (`When::NoShim`),
/// placed as the shim places it and used as a read is (`effect::read`): a socket a capsule's
/// server made in the sandbox tree is reached there (`/run/app.sock` under write-copy), else
/// the host's. The supervisor connects a duplicate of the tracee's socket (the socket is
/// shared; a non-blocking one stays so). Anything else is the kernel's (`CONTINUE`).
fn connect(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, fd: i32, addr: u64, len: u64) -> Reply {
    let mut buf = crate::resolve::path::PathBuffer::new();
    let intent = crate::resolve::Intent { follow: true, create: false };
    let Some(placed) = placed_unix(cx, mem, (addr, len), intent, &mut buf) else { return Reply::Continue };
    if matches!(placed, crate::boundary::Place::Original) {
        return Reply::Continue;
    }
    let Ok(dup) = tracee_fd(cx.pid, fd) else { return Reply::Continue };
    let (tree, pid) = (cx.tree, cx.pid);
    let r = crate::boundary::effect::read(&mut cx.tier(), &placed, |at| {
        let (d, p) = super::handlers::at_fd(tree, at, pid)?;
        unix_call(libc::SYS_connect, &dup, d, &p)
    });
    match r {
        None => Reply::Continue,
        Some(Ok(())) => Reply::Value(0),
        Some(Err(e)) => Reply::Error(e),
    }
}

/// ioctl(2) SIOCGIFADDR/SIOCGIFHWADDR/SIOCGIFCONF (the only ioctls the filter traps): the
/// kernel's answer for the tracee's socket, edited for the capsule's interface, written back.
pub fn ioctl(cx: &Context<'_, '_>, mem: &impl TraceeMemory, fd: i32, request: u64, arg: u64) -> Reply {
    let Some(ifc) = cx.iface else { return Reply::Continue };
    if arg == 0 || !ifreq::edited(request) {
        return Reply::Continue;
    }
    let Ok(dup) = tracee_fd(cx.pid, fd) else { return Reply::Continue };
    if request != ifreq::SIOCGIFCONF {
        let mut rec = [0u8; ifreq::IFREQ_LEN];
        if mem.read(arg, &mut rec).map_or(true, |n| n < rec.len()) || !mem.still_valid() {
            return Reply::Error(libc::EFAULT);
        }
        // SAFETY: `rec` is a struct ifreq of ours, as these requests take.
        if unsafe { libc::ioctl(dup.as_raw_fd(), request, rec.as_mut_ptr()) } < 0 {
            return Reply::Error(errno());
        }
        ifreq::patch_ifreq(request, &mut rec, &ifc);
        return if mem.write(arg, &rec).is_ok() { Reply::Value(0) } else { Reply::Error(libc::EFAULT) };
    }
    // struct ifconf: int ifc_len, (padding), char *ifc_buf.
    let mut conf = [0u8; 16];
    if mem.read(arg, &mut conf).map_or(true, |n| n < conf.len()) || !mem.still_valid() {
        return Reply::Error(libc::EFAULT);
    }
    let len = i32::from_ne_bytes([conf[0], conf[1], conf[2], conf[3]]);
    let buf_addr = u64::from_ne_bytes([conf[8], conf[9], conf[10], conf[11], conf[12], conf[13], conf[14], conf[15]]);
    if buf_addr == 0 {
        return Reply::Continue; // the length query: nothing to edit
    }
    // At most 64 KiB of records (1638 interfaces): the tracee's length is not trusted.
    let len = usize::try_from(len).unwrap_or(0).min(64 << 10);
    let mut buf = vec![0u8; len];
    let mut local = libc::ifconf {
        ifc_len: i32::try_from(len).unwrap_or(0),
        ifc_ifcu: libc::__c_anonymous_ifc_ifcu { ifcu_buf: buf.as_mut_ptr().cast() },
    };
    // SAFETY: `local` describes `buf`, ours, of `len` bytes.
    if unsafe { libc::ioctl(dup.as_raw_fd(), request, &raw mut local) } < 0 {
        return Reply::Error(errno());
    }
    let n = usize::try_from(local.ifc_len).unwrap_or(0).min(len);
    ifreq::patch_ifconf(&mut buf[..n], &ifc);
    let ok = mem.write(buf_addr, &buf[..n]).is_ok() && mem.write(arg, &local.ifc_len.to_ne_bytes()).is_ok();
    if ok { Reply::Value(0) } else { Reply::Error(libc::EFAULT) }
}
