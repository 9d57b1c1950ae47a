//! Installing a seccomp filter that has a listener, and handing the listener over a socket
//! (`SCM_RIGHTS`): what the launcher's child does before exec (`supervisor::launch`) and what
//! the shim does after the loader (`CAPSULE_ARM`). Outside the `store` feature, since the shim
//! builds core without it. Async-signal-safe and allocation-free: only system calls on stack
//! memory.
#![allow(unsafe_code)] // seccomp(2), prctl(2), sendmsg(2) with SCM_RIGHTS

use std::io;
use std::os::fd::RawFd;

/// Install `prog` in this process with `flags` (which must ask for a listener), send the
/// listener over `sock` and close it. Async-signal-safe, allocation-free: the launcher's child
/// runs it before exec, the shim (`CAPSULE_ARM`) in its initialisation.
pub fn install_and_send(prog: &[libc::sock_filter], flags: libc::c_ulong, sock: RawFd) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: prog.as_ptr().cast_mut(),
    };
    let set = || {
        // SAFETY: `fprog` points to `prog`, alive for the call; the kernel copies it.
        unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &raw const fprog) }
    };
    let mut fd = set();
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
        // Without CAP_SYS_ADMIN the kernel wants no_new_privs (setuid programs then run
        // without their privileges inside the capsule: docs/security.md).
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        fd = set();
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::last_os_error())?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let r = send_fd(sock, fd);
    // SAFETY: closing the listener we just got; the receiver has its own copy now.
    unsafe { libc::close(fd) };
    r
}

/// sendmsg(2) one byte with `fd` as SCM_RIGHTS, on stack memory only.
fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    #[repr(C)]
    union Cmsg {
        buf: [u8; 64],
        _align: libc::cmsghdr,
    }
    const FD_LEN: u32 = 4; // size_of::<RawFd>()
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cbuf = Cmsg { buf: [0; 64] };
    // SAFETY: a zeroed msghdr is valid; we fill the fields below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(FD_LEN) } as usize;
    msg.msg_control = (&raw mut cbuf).cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points to `space` (<= 64) aligned bytes, so CMSG_FIRSTHDR is
    // non-null and the header and its one-fd payload fit.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(FD_LEN) as usize;
        libc::CMSG_DATA(c).cast::<RawFd>().write_unaligned(fd);
    }
    // SAFETY: `msg` and everything it points to live across the call.
    if unsafe { libc::sendmsg(sock, &raw const msg, 0) } == 1 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
