//! The kernel side of seccomp user notification: the listener descriptor, one notification,
//! and the replies (`CONTINUE`, a value or an errno, an injected descriptor).
//!
//! Struct sizes come from `SECCOMP_GET_NOTIF_SIZES`: the receive buffer is at least what the
//! running kernel writes, so a newer kernel with a larger `seccomp_notif` cannot overrun it.
#![allow(unsafe_code)] // the seccomp(2) and ioctl(2) calls, each with its invariant

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6): wake the supervisor on the tracee's CPU.
const FD_SYNC_WAKE_UP: u64 = 1;

/// One trapped system call.
#[derive(Debug, Clone, Copy)]
pub struct Notif {
    /// The notification's cookie (kernel id), for the reply and validity checks.
    pub id: u64,
    /// The calling thread (a tid in the supervisor's pid namespace).
    pub pid: u32,
    /// The system call number.
    pub nr: i64,
    /// Its six arguments.
    pub args: [u64; 6],
}

/// What the supervisor answers.
#[derive(Debug)]
pub enum Reply {
    /// Let the kernel run the call as the program made it.
    Continue,
    /// Return this (non-negative) value without running the call.
    Value(i64),
    /// Fail with this errno.
    Error(i32),
    /// Install this descriptor in the program and return its number (`ADDFD` with `SEND`).
    Fd {
        /// The descriptor, opened by the supervisor.
        fd: OwnedFd,
        /// Whether the program asked for `O_CLOEXEC`.
        cloexec: bool,
    },
}

/// The listener the filter's installation returned, with the kernel's struct sizes.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    notif_size: usize,
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Listener {
    /// Wrap listener `fd`; asks the kernel for its struct sizes and for synchronous wake-ups
    /// (where the kernel has them: a supervisor woken on the tracee's CPU answers ~10× sooner).
    pub fn new(fd: OwnedFd) -> io::Result<Listener> {
        let mut sizes = libc::seccomp_notif_sizes { seccomp_notif: 0, seccomp_notif_resp: 0, seccomp_data: 0 };
        // SAFETY: SECCOMP_GET_NOTIF_SIZES writes one seccomp_notif_sizes to the pointer.
        let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_GET_NOTIF_SIZES, 0, &raw mut sizes) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let notif_size = usize::from(sizes.seccomp_notif).max(size_of::<libc::seccomp_notif>());
        // SAFETY: SET_FLAGS takes its flags by value; an old kernel says EINVAL, which is fine.
        let _ = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS, FD_SYNC_WAKE_UP) };
        Ok(Listener { fd, notif_size })
    }

    /// Receive one notification (blocks). `None`: interrupted, or the tracee died in between
    /// (ENOENT); try again.
    pub fn recv(&self) -> io::Result<Option<Notif>> {
        // A u64 buffer keeps the struct aligned; the kernel zero-checks nothing on RECV but
        // older kernels want it zeroed.
        let mut buf = vec![0u64; self.notif_size.div_ceil(8)];
        // SAFETY: `buf` is at least the kernel's seccomp_notif size and suitably aligned.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, buf.as_mut_ptr()) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR | libc::ENOENT) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: the kernel filled a seccomp_notif at the start of the aligned buffer.
        let n = unsafe { &*buf.as_ptr().cast::<libc::seccomp_notif>() };
        Ok(Some(Notif { id: n.id, pid: n.pid, nr: i64::from(n.data.nr), args: n.data.args }))
    }

    /// Whether notification `id` is still pending (its thread did not die or get a signal).
    /// Checked after every read of the tracee's memory, before acting on what was read.
    pub fn id_valid(&self, id: u64) -> bool {
        // SAFETY: ID_VALID reads one u64 through the pointer.
        unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &raw const id) == 0 }
    }

    /// Answer notification `id`; for [`Reply::Fd`], the descriptor's number in the program
    /// (`None` otherwise). An error for a notification whose thread is gone is ignored: there
    /// is nobody left to answer.
    pub fn reply(&self, id: u64, reply: Reply) -> io::Result<Option<i32>> {
        let (val, error, flags) = match reply {
            Reply::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE),
            Reply::Value(v) => (v, 0, 0),
            Reply::Error(e) => (0, -e, 0),
            Reply::Fd { fd, cloexec } => return self.add_fd(id, &fd, cloexec),
        };
        #[allow(clippy::cast_possible_truncation)] // the flag is 1
        let mut resp = libc::seccomp_notif_resp { id, val, error, flags: flags as u32 };
        // SAFETY: SEND reads one seccomp_notif_resp through the pointer.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &raw mut resp) };
        gone_is_ok(r).map(|()| None)
    }

    /// `ADDFD` with `SEND`: install `fd` in the tracee and complete the call with its number,
    /// which is returned (`None`: the thread was gone, or the call failed instead).
    ///
    /// A descriptor the kernel will not install fails the call rather than the supervisor:
    /// EBADF for an `O_PATH` one (ADDFD takes its source with `fget`, which refuses them),
    /// EMFILE when the program is at its descriptor limit. ESRCH means the thread was
    /// interrupted (a signal) before it took the descriptor: the call is restarted, or was
    /// abandoned, and is not ours to answer any more; EINPROGRESS, that it was answered.
    fn add_fd(&self, id: u64, fd: &OwnedFd, cloexec: bool) -> io::Result<Option<i32>> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // flag values
        let mut add = libc::seccomp_notif_addfd {
            id,
            flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
            srcfd: fd.as_raw_fd() as u32,
            newfd: 0,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: ADDFD reads one seccomp_notif_addfd; `srcfd` is open for the call.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &raw mut add) };
        if r >= 0 {
            return Ok(Some(r));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::ESRCH | libc::EINPROGRESS) => Ok(None),
            Some(errno @ (libc::EBADF | libc::EMFILE | libc::EINVAL)) => self.reply(id, Reply::Error(errno)),
            _ => Err(e),
        }
    }
}

fn gone_is_ok(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(e) }
}
