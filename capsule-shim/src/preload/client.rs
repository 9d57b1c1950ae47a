//! The materialiser client: asks `capsule run` (over the abstract socket the view names) to
//! link a capsule file into the tree, copy it up, or record a whiteout. One short connection
//! per request, built from raw syscalls on the stack: usable from any thread, after fork, and
//! in processes that closed every inherited descriptor.
//!
//! Signals are blocked for the length of a request. The materialiser serves one connection
//! at a time, so a signal handler that opened a capsule file in the middle of a request (after
//! connect, before the request was written) would wait for a server that is waiting for this
//! very thread: a deadlock. Blocked, the handler runs when the request is done.

use core::ffi::c_long;

use super::state;
use super::sys::{close, raw, read, write};

pub use capsule_core::boundary::effect::{OP_COPY_UP, OP_LINK, OP_LINK_DIR, OP_WHITEOUT};

/// Send `op` for capsule path `path` (no leading '/'); the server's errno (0 = done).
pub fn request(op: u8, path: &[u8]) -> i32 {
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
    let r = connect_and_exchange(&addr, addr_len, op, path);
    if masked {
        // SAFETY: rt_sigprocmask reads `old`, an 8-byte sigset on our stack (the thread's
        // own mask, put back).
        let _ = unsafe {
            raw(libc::SYS_rt_sigprocmask, c_long::from(libc::SIG_SETMASK), &old as *const u64 as c_long, 0, 8, 0, 0)
        };
    }
    r
}

/// One connection: socket, connect, request, reply.
fn connect_and_exchange(addr: &libc::sockaddr_un, addr_len: usize, op: u8, path: &[u8]) -> i32 {
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
    let r = exchange(fd, addr, addr_len, op, path);
    close(fd);
    r
}

fn exchange(fd: i32, addr: &libc::sockaddr_un, addr_len: usize, op: u8, path: &[u8]) -> i32 {
    // SAFETY: `addr` is a valid sockaddr_un of at least `addr_len` bytes for the call.
    let c =
        unsafe { raw(libc::SYS_connect, c_long::from(fd), addr as *const _ as c_long, addr_len as c_long, 0, 0, 0) };
    if c < 0 {
        return libc::EIO;
    }
    // Truncation impossible: checked against u16::MAX by the caller.
    #[allow(clippy::cast_possible_truncation)]
    let len = (path.len() as u16).to_le_bytes();
    let head = [op, len[0], len[1]];
    for part in [&head[..], path] {
        // SAFETY: `part` is readable for its length.
        if unsafe { write(fd, part.as_ptr(), part.len()) } != part.len() as c_long {
            return libc::EIO;
        }
    }
    let mut reply = [0u8; 4];
    // SAFETY: `reply` is writable for 4 bytes.
    if unsafe { read(fd, reply.as_mut_ptr(), 4) } != 4 {
        return libc::EIO;
    }
    i32::from_le_bytes(reply)
}
