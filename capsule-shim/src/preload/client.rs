//! The materialiser client: asks `capsule run` (over the abstract socket the view names) to
//! link a capsule file into the tree, copy it up, record a whiteout, or open a tree file for
//! writing (the program's Landlock domain may not: [`open`]). One short connection
//! per request, built from raw syscalls on the stack: usable from any thread, after fork, and
//! in processes that closed every inherited descriptor.
//!
//! Signals are blocked for the length of a request. The materialiser serves one connection
//! at a time, so a signal handler that opened a capsule file in the middle of a request (after
//! connect, before the request was written) would wait for a server that is waiting for this
//! very thread: a deadlock. Blocked, the handler runs when the request is done.

use core::ffi::{c_int, c_long};

use super::state;
use super::sys::{close, raw, read, write};

pub use capsule_core::boundary::effect::{HOST_EXTRA, OP_COPY_UP, OP_HOST, OP_LINK, OP_LINK_DIR, OP_OPEN, OP_WHITEOUT};

/// Send `op` for capsule path `path` (no leading '/'); the server's errno (0 = done).
pub fn request(op: u8, path: &[u8]) -> i32 {
    session(op, &[], path, None)
}

/// Have the materialiser open tree path `path` (no leading '/') with `flags` and `mode`
/// ([`OP_OPEN`]): the descriptor it passes back (close-on-exec as `flags` ask), or -errno.
pub fn open(path: &[u8], flags: c_int, mode: u32) -> c_long {
    let mut how = [0u8; 8];
    how[..4].copy_from_slice(&flags.to_le_bytes());
    how[4..].copy_from_slice(&mode.to_le_bytes());
    let mut fd: c_int = -1;
    match session(OP_OPEN, &how, path, Some((&mut fd, flags & libc::O_CLOEXEC != 0))) {
        0 if fd >= 0 => c_long::from(fd),
        0 => -c_long::from(libc::EIO),
        e => -c_long::from(e),
    }
}

/// Have the broker make host call `call` (`host_call::*`) with `flags` and `mode` on absolute
/// host path `path` (and `other`, the second path of a symlink, rename or link), where the
/// program's Landlock domain refused it ([`OP_HOST`]): 0, the descriptor of an open
/// (close-on-exec as `flags` ask), or -errno.
pub fn host(call: u8, flags: c_int, mode: u32, path: &[u8], other: Option<&[u8]>) -> c_long {
    host_with(call, flags, mode, path, other, None)
}

/// [`host`] for a call on the program's descriptor `fd` (bind: the broker binds the very
/// socket, passed with the request).
pub fn host_with(call: u8, flags: c_int, mode: u32, path: &[u8], other: Option<&[u8]>, fd: Option<c_int>) -> c_long {
    let mut extra = [0u8; HOST_EXTRA];
    extra[0] = call;
    extra[4..8].copy_from_slice(&flags.to_le_bytes());
    extra[8..12].copy_from_slice(&mode.to_le_bytes());
    let mut both = [0u8; 2 * capsule_core::resolve::path::PATH_CAP + 1];
    let len = path.len() + other.map_or(0, |o| o.len() + 1);
    let Some(buf) = both.get_mut(..len) else { return -c_long::from(libc::ENAMETOOLONG) };
    let (first, rest) = buf.split_at_mut(path.len());
    first.copy_from_slice(path);
    if let (Some(o), Some((nul, second))) = (other, rest.split_first_mut()) {
        *nul = 0;
        second.copy_from_slice(o);
    }
    if call != capsule_core::boundary::effect::host_call::OPEN {
        return -c_long::from(session_with(OP_HOST, &extra, buf, None, fd));
    }
    let mut fd: c_int = -1;
    match session(OP_HOST, &extra, buf, Some((&mut fd, flags & libc::O_CLOEXEC != 0))) {
        0 if fd >= 0 => c_long::from(fd),
        0 => -c_long::from(libc::EIO),
        e => -c_long::from(e),
    }
}

/// One request: `op`, `extra` bytes, `path`; the errno replied, and into `fd` the descriptor
/// that came with it.
fn session(op: u8, extra: &[u8], path: &[u8], fd: Option<(&mut c_int, bool)>) -> i32 {
    session_with(op, extra, path, fd, None)
}

/// [`session`], passing descriptor `fd_in` with the request.
fn session_with(op: u8, extra: &[u8], path: &[u8], fd: Option<(&mut c_int, bool)>, fd_in: Option<c_int>) -> i32 {
    let Some(st) = state() else { return libc::ENOSYS };
    let name = st.socket;
    // AF_UNIX is 1: the narrowing to sa_family_t is lossless.
    #[allow(clippy::cast_possible_truncation)]
    let mut addr: libc::sockaddr_un =
        libc::sockaddr_un { sun_family: libc::AF_UNIX as libc::sa_family_t, sun_path: [0; 108] };
    // Abstract address: a leading NUL, then the name (not NUL-terminated).
    if name.is_empty() || name.len() >= addr.sun_path.len() || path.len() > usize::from(u16::MAX) {
        return libc::ENAMETOOLONG;
    }
    for (d, s) in addr.sun_path.iter_mut().skip(1).zip(name) {
        *d = *s as libc::c_char;
    }
    let addr_len = core::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // The kernel's sigset is 64 bits on x86-64; it ignores the SIGKILL and SIGSTOP bits.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both 8-byte sigsets on our stack.
    let masked = unsafe {
        raw(
            libc::SYS_rt_sigprocmask,
            c_long::from(libc::SIG_BLOCK),
            &all as *const u64 as c_long,
            &mut old as *mut u64 as c_long,
            8,
            0,
            0,
        )
    } == 0;
    let r = connect_and_exchange(&addr, addr_len, Request { op, extra, path, fd_out: fd, fd_in });
    if masked {
        // SAFETY: rt_sigprocmask reads `old`, an 8-byte sigset on our stack (the thread's
        // own mask, put back).
        let _ = unsafe {
            raw(libc::SYS_rt_sigprocmask, c_long::from(libc::SIG_SETMASK), &old as *const u64 as c_long, 0, 8, 0, 0)
        };
    }
    r
}

/// One request: `op`, `extra` bytes, `path`; where the descriptor a reply carries goes, and
/// whether it is close-on-exec.
struct Request<'a> {
    op: u8,
    extra: &'a [u8],
    path: &'a [u8],
    fd_out: Option<(&'a mut c_int, bool)>,
    /// A descriptor sent with the request (SCM_RIGHTS).
    fd_in: Option<c_int>,
}

/// One connection: socket, connect, request, reply.
fn connect_and_exchange(addr: &libc::sockaddr_un, addr_len: usize, req: Request<'_>) -> i32 {
    // SAFETY: plain integer arguments, no memory.
    let fd = unsafe {
        raw(
            libc::SYS_socket,
            c_long::from(libc::AF_UNIX),
            c_long::from(libc::SOCK_STREAM | libc::SOCK_CLOEXEC),
            0,
            0,
            0,
            0,
        )
    };
    if fd < 0 {
        return libc::EIO;
    }
    // Truncation intended: socket(2) returns a small descriptor.
    #[allow(clippy::cast_possible_truncation)]
    let fd = fd as i32;
    let r = exchange(fd, addr, addr_len, req);
    close(fd);
    r
}

fn exchange(fd: i32, addr: &libc::sockaddr_un, addr_len: usize, req: Request<'_>) -> i32 {
    let Request { op, extra, path, fd_out, fd_in } = req;
    // SAFETY: `addr` is a valid sockaddr_un of at least `addr_len` bytes for the call.
    let c =
        unsafe { raw(libc::SYS_connect, c_long::from(fd), addr as *const _ as c_long, addr_len as c_long, 0, 0, 0) };
    if c < 0 {
        return libc::EIO;
    }
    // Truncation impossible: checked against u16::MAX by the caller.
    #[allow(clippy::cast_possible_truncation)]
    let len = (path.len() as u16).to_le_bytes();
    // The request whole, in one write where it fits (the server answers an open at once when
    // it finds the request waiting).
    let mut whole = [0u8; 3 + HOST_EXTRA + 4096];
    let total = 3 + extra.len() + path.len();
    let parts: [&[u8]; 3] = [&[op, len[0], len[1]], extra, path];
    if let Some(buf) = whole.get_mut(..total) {
        let mut at = 0;
        for part in parts {
            if let Some(d) = buf.get_mut(at..at + part.len()) {
                d.copy_from_slice(part);
            }
            at += part.len();
        }
        if let Some(give) = fd_in {
            if send_with_fd(fd, buf, give) != buf.len() as c_long {
                return libc::EIO;
            }
        // SAFETY: `buf` is readable for its length.
        } else if unsafe { write(fd, buf.as_ptr(), buf.len()) } != buf.len() as c_long {
            return libc::EIO;
        }
    } else if fd_in.is_some() {
        return libc::ENAMETOOLONG;
    } else {
        for part in parts {
            if part.is_empty() {
                continue;
            }
            // SAFETY: `part` is readable for its length.
            if unsafe { write(fd, part.as_ptr(), part.len()) } != part.len() as c_long {
                return libc::EIO;
            }
        }
    }
    let mut reply = [0u8; 4];
    let Some((out, cloexec)) = fd_out else {
        // SAFETY: `reply` is writable for 4 bytes.
        if unsafe { read(fd, reply.as_mut_ptr(), 4) } != 4 {
            return libc::EIO;
        }
        return i32::from_le_bytes(reply);
    };
    // The reply and, when it is 0, one descriptor (SCM_RIGHTS) in a control buffer on the
    // stack, aligned as cmsghdr needs.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec { iov_base: reply.as_mut_ptr().cast(), iov_len: 4 };
    // SAFETY: msghdr is plain data; every field the kernel reads is set below.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    let flags = if cloexec { libc::MSG_CMSG_CLOEXEC } else { 0 };
    // SAFETY: `msg` points at `iov` (4 writable bytes) and `control` (64 writable bytes), all
    // alive across the call.
    let n = unsafe { raw(libc::SYS_recvmsg, c_long::from(fd), &raw mut msg as c_long, c_long::from(flags), 0, 0, 0) };
    if n != 4 {
        return libc::EIO;
    }
    let errno = i32::from_le_bytes(reply);
    // SAFETY: CMSG_FIRSTHDR reads the msghdr the kernel filled; the header it returns, if any,
    // lies within `control`, and its data holds the descriptor when it is SCM_RIGHTS.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
            let got = libc::CMSG_DATA(c).cast::<c_int>().read_unaligned();
            if errno == 0 {
                *out = got;
            } else {
                close(got);
            }
        }
    }
    errno
}

/// sendmsg(2) of `buf` on socket `sock` with descriptor `give` (SCM_RIGHTS): the bytes sent,
/// or -errno.
fn send_with_fd(sock: c_int, buf: &[u8], give: c_int) -> c_long {
    // The size of one descriptor (4: the narrowing is lossless).
    #[allow(clippy::cast_possible_truncation)]
    const INT: u32 = core::mem::size_of::<c_int>() as u32;
    #[repr(C, align(8))]
    struct Control([u8; 24]);
    let mut control = Control([0; 24]);
    let mut iov = libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; every field the kernel reads is set below.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic on a constant size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(INT) } as usize;
    // SAFETY: the control buffer holds one cmsghdr and an int (CMSG_SPACE above, 24 bytes);
    // CMSG_FIRSTHDR and CMSG_DATA point inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        if c.is_null() {
            return -c_long::from(libc::EIO);
        }
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(INT) as usize;
        libc::CMSG_DATA(c).cast::<c_int>().write_unaligned(give);
    }
    // SAFETY: `msg` points at `iov` (`buf`, readable) and `control`, alive across the call.
    unsafe {
        raw(libc::SYS_sendmsg, c_long::from(sock), &raw const msg as c_long, c_long::from(libc::MSG_NOSIGNAL), 0, 0, 0)
    }
}
