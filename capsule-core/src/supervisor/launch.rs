//! Installing the filter in the program: [`arm`] a `Command` before spawning it, then take
//! the listener from [`Armed::listener`] once it has started.
//!
//! Between fork and exec the child only makes async-signal-safe calls on memory prepared
//! before the fork: `prctl`, `seccomp`, `sendmsg`, `close`. A failure there is returned
//! as an `io::Error`, which std carries to the parent (its exec-error pipe): `spawn` fails
//! with the child's errno instead of a program running unsupervised.
#![allow(unsafe_code)] // pre_exec, seccomp(2), sendmsg(2)/recvmsg(2) with SCM_RIGHTS

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use super::filter;

/// A command whose child will install the filter and send back its listener.
#[derive(Debug)]
pub struct Armed {
    parent: UnixStream,
}

/// Make `cmd`'s child install the supervisor filter for `cookie` just before exec, trapping
/// what `traps` adds (record mode's execs, route netlink reads).
/// Drop `cmd` after spawning it (its copy of the child's socket end must close, so that a
/// child that died before sending is an error, not a hang).
pub fn arm(cmd: &mut Command, cookie: u64, traps: filter::Traps) -> io::Result<Armed> {
    arm_with(cmd, filter::program_for(cookie, traps))
}

/// [`arm`] with filter program `prog`.
pub fn arm_with(cmd: &mut Command, prog: Vec<libc::sock_filter>) -> io::Result<Armed> {
    let (parent, child) = UnixStream::pair()?;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions on memory allocated before the fork (`prog`, `child`).
    unsafe {
        cmd.pre_exec(move || install(&prog, child.as_raw_fd()));
    }
    Ok(Armed { parent })
}

/// Make `cmd`'s program install the filter itself, from the preload shim's constructor: the
/// loader's opens of the program's libraries happen before it, unsupervised (tier 1's library
/// path finds the capsule's), and its later calls are supervised as with [`arm`]. For
/// programs the shim is known to load into ([`super::auto::examine`]) only.
///
/// The filter goes into the socket now; the program's end is inherited at a high number and
/// named, with our pid, in `CAPSULE_ARM` (the shim checks both, so that neither its children
/// nor a later image of the process arm again). Keep the returned descriptor until `spawn`
/// has returned, then drop it, as [`arm`]'s `cmd`.
pub fn arm_in_shim(cmd: &mut Command, cookie: u64, traps: filter::Traps) -> io::Result<(Armed, OwnedFd)> {
    arm_in_shim_with(cmd, &filter::program_for(cookie, traps))
}

/// [`arm_in_shim`] with filter program `prog` ([`filter::GUARD`] for a run without tier 2).
pub fn arm_in_shim_with(cmd: &mut Command, prog: &[libc::sock_filter]) -> io::Result<(Armed, OwnedFd)> {
    use std::io::Write;
    let (parent, child) = UnixStream::pair()?;
    let mut msg = Vec::with_capacity(4 + prog.len() * 8);
    msg.extend_from_slice(
        &u32::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?.to_le_bytes(),
    );
    for i in prog {
        msg.extend_from_slice(&i.code.to_le_bytes());
        msg.extend_from_slice(&[i.jt, i.jf]);
        msg.extend_from_slice(&i.k.to_le_bytes());
    }
    (&parent).write_all(&msg)?;
    let high = nix::fcntl::fcntl(&child, nix::fcntl::FcntlArg::F_DUPFD(1000))?;
    // SAFETY: F_DUPFD just returned this new descriptor (inheritable); nobody else owns it.
    let high = unsafe { OwnedFd::from_raw_fd(high) };
    cmd.env("CAPSULE_ARM", format!("{}:{}", high.as_raw_fd(), std::process::id()));
    Ok((Armed { parent }, high))
}

/// Whether this process already runs under a seccomp filter (a container's, say).
pub fn already_filtered() -> bool {
    // SAFETY: prctl(PR_GET_SECCOMP) takes no pointers; it reads this thread's mode.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP) != 0 }
}

impl Armed {
    /// The launcher's end of a socket the front end made (`run-attached --arm-fd`): the
    /// program's shim sends its listener there.
    pub fn from_fd(fd: OwnedFd) -> Armed {
        Armed { parent: UnixStream::from(fd) }
    }

    /// The listener the child sent. Call after `spawn` returned (the child has exec'd).
    pub fn listener(self) -> io::Result<OwnedFd> {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!(RawFd);
        let msg = recvmsg::<()>(self.parent.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c
                && let Some(&fd) = fds.first()
            {
                // SAFETY: SCM_RIGHTS just installed `fd` in this process; nobody else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the program did not send its seccomp listener"))
    }
}

/// Open `path` (a directory with `O_PATH`) for the program to inherit: a descriptor without
/// close-on-exec, numbered 1000 or above, out of the way of the numbers programs pick
/// themselves. The shim uses it (`CAPSULE_VIEW_FD`, `CAPSULE_TREE_FD`) where a process that
/// changed its user (apt's `_apt`, man-db's `man`, a server's worker) could not open the
/// store's paths. Close it after spawning.
pub fn inheritable(path: &std::path::Path, dir: bool) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = if dir { libc::O_PATH | libc::O_DIRECTORY } else { 0 };
    let f = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path)?;
    let high = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_DUPFD(1000))?;
    // SAFETY: F_DUPFD just returned this new descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// In the child: install the filter with a listener and send the listener over `sock`. The
/// signal mask is emptied first: std's fork path (taken with `pre_exec`) leaves the launcher's
/// mask as it was.
fn install(prog: &[libc::sock_filter], sock: RawFd) -> io::Result<()> {
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, which fills it; both calls
    // are async-signal-safe and touch only this stack variable.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
    }
    crate::listener::install_and_send(prog, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, sock)
}
