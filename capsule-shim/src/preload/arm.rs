//! Tier 2 armed from inside: the launcher of a dynamically linked program does not install
//! the seccomp filter before exec but leaves it to us (`CAPSULE_ARM=FD:PID`), so that the
//! loader's library search, before any constructor runs, is not sent to the supervisor call
//! by call. Tier 1's library path finds the capsule's libraries without it.
//!
//! `FD` is our end of a socket pair whose other end the launcher (`PID`) holds, with the
//! filter program already written into it: a little-endian u32 instruction count, then the
//! `struct sock_filter`s. We install it for every thread and send the listener back as
//! `SCM_RIGHTS`, which the launcher's supervisor takes from there, as from a filter armed
//! before exec. Once: a process already under a filter (ours, inherited by every child and
//! kept across exec) does nothing, and neither does one whose `FD` is not a socket to `PID`.
//! Failing to install, the program must not run unsupervised: it exits with 127.

use core::ffi::{c_int, c_long};

use super::sys::{close, raw, read, write};

/// The most instructions we accept (the launcher's programs have well under a hundred).
const MAX_INSNS: usize = 1024;

/// Install the filter if `CAPSULE_ARM` asks us to. Called once, from initialisation.
pub fn arm_if_asked() {
    // SAFETY: getenv returns null or a NUL-terminated string in the environment, read at once.
    let p = unsafe { libc::getenv(c"CAPSULE_ARM".as_ptr()) };
    if p.is_null() {
        return;
    }
    // SAFETY: non-null and NUL-terminated, per getenv(3).
    let value = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
    let mut parts = value.splitn(2, |&c| c == b':');
    let (Some(fd), Some(pid)) = (parts.next().and_then(number), parts.next().and_then(number)) else { return };
    // SAFETY: integer arguments only.
    if unsafe { raw(libc::SYS_prctl, libc::PR_GET_SECCOMP.into(), 0, 0, 0, 0, 0) } != 0 || peer_pid(fd) != Some(pid) {
        return;
    }
    let r = install_and_send(fd);
    close(fd);
    if let Err(errno) = r {
        fail(errno);
    }
}

/// A decimal number below 2^22.
fn number(s: &[u8]) -> Option<c_int> {
    if s.is_empty() || s.len() > 7 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |v, &d| v * 10 + c_int::from(d - b'0')))
}

/// The pid of the process at the other end of socket `fd`, if it is one.
fn peer_pid(fd: c_int) -> Option<c_int> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = libc::socklen_t::try_from(core::mem::size_of::<libc::ucred>()).unwrap_or(0);
    // SAFETY: getsockopt writes at most `len` bytes to `cred` and updates `len`, both on our stack.
    let r = unsafe {
        raw(
            libc::SYS_getsockopt,
            fd.into(),
            libc::SOL_SOCKET.into(),
            libc::SO_PEERCRED.into(),
            (&raw mut cred) as c_long,
            (&raw mut len) as c_long,
            0,
        )
    };
    (r == 0).then_some(cred.pid)
}

/// Read exactly `buf.len()` bytes from `fd`.
fn read_exact(fd: c_int, buf: &mut [u8]) -> Result<(), c_long> {
    let mut at = 0;
    while at < buf.len() {
        let rest = buf.get_mut(at..).unwrap_or_default();
        // SAFETY: `rest` is writable for its length.
        let n = unsafe { read(fd, rest.as_mut_ptr(), rest.len()) };
        if n == -c_long::from(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return Err(if n == 0 { c_long::from(libc::EPROTO) } else { -n });
        }
        at += usize::try_from(n).unwrap_or(0);
    }
    Ok(())
}

fn install_and_send(fd: c_int) -> Result<(), c_long> {
    let mut head = [0u8; 4];
    read_exact(fd, &mut head)?;
    let n = usize::try_from(u32::from_le_bytes(head)).unwrap_or(usize::MAX);
    if n == 0 || n > MAX_INSNS {
        return Err(c_long::from(libc::E2BIG));
    }
    let mut prog = [libc::sock_filter { code: 0, jt: 0, jf: 0, k: 0 }; MAX_INSNS];
    let insns = prog.get_mut(..n).ok_or(c_long::from(libc::E2BIG))?;
    // SAFETY: `sock_filter` is plain data (u16, u8, u8, u32; no padding), so its storage may
    // be filled as bytes; the launcher wrote them in this machine's layout.
    let bytes = unsafe { core::slice::from_raw_parts_mut(insns.as_mut_ptr().cast::<u8>(), n * 8) };
    read_exact(fd, bytes)?;
    // Every thread (a library constructor may have started one); with a listener, TSYNC
    // must report a thread it cannot synchronise as ESRCH rather than by its id.
    let flags = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        | libc::SECCOMP_FILTER_FLAG_TSYNC
        | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    capsule_core::listener::install_and_send(insns, flags, fd)
        .map_err(|e| c_long::from(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Say why on stderr and end the process: it must not run without the supervisor it was
/// started for.
fn fail(errno: c_long) -> ! {
    let mut digits = [0u8; 20];
    let digits = crate::preload::sys::decimal(errno.unsigned_abs(), &mut digits);
    let msg: [&[u8]; 3] = [b"capsule-shim: cannot install the seccomp filter (errno ", digits, b")\n"];
    for part in msg {
        // SAFETY: writing a readable buffer to stderr.
        let _ = unsafe { write(2, part.as_ptr(), part.len()) };
    }
    // SAFETY: _exit takes an integer and does not return.
    unsafe { libc::_exit(127) }
}
