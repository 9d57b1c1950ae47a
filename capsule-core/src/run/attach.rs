//! The launcher's half of a run the `capsule` front end started from its plan
//! (capsule-cli/src/front): the front end bound the materialiser's socket, forked the program
//! and executed `capsule-cli run-attached`, handing over the socket, a pipe that reports a
//! failed exec, the program's pid and the signal mask it started with.
#![allow(unsafe_code)] // adopting inherited descriptors, waitpid(2), sigprocmask(2)

use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// Take descriptor `fd`, inherited from the front end, if it is open and is what `want`
/// says (`libc::S_IFSOCK` for the listener, `libc::S_IFIFO` for the status pipe).
fn adopt(fd: RawFd, want: libc::mode_t) -> io::Result<OwnedFd> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("descriptor {fd} is not the one handed over"));
    if fd < 3 {
        return Err(bad());
    }
    // SAFETY: fstat writes a `struct stat` into `st`, which is ours and large enough.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a closed `fd` fails with EBADF and nothing is taken.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != want {
        return Err(bad());
    }
    // SAFETY: `fd` is open (fstat succeeded), of the expected kind, and nothing else in this
    // process owns it: it was inherited across exec and is named once on the command line.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Close it in anything this process starts from now on.
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    Ok(owned)
}

/// The materialiser's listening socket.
pub fn listener(fd: RawFd) -> io::Result<UnixListener> {
    adopt(fd, libc::S_IFSOCK).map(UnixListener::from)
}

/// The guard's socket the front end made (`run-attached --guard-fd`).
pub fn guard(fd: RawFd) -> io::Result<crate::supervisor::launch::Armed> {
    adopt(fd, libc::S_IFSOCK).map(crate::supervisor::launch::Armed::from_fd)
}

/// Set in the number the front end's child writes to the status pipe when it could not add
/// a grant of the plan to the program's Landlock ruleset (the errno in the low bits), rather
/// than failing to start the program; the grant's path follows it.
pub const CONFINE_FAILED: i32 = 1 << 30;

/// Why the program did not start, as the launch's child wrote it to the status pipe.
#[derive(Debug, PartialEq, Eq)]
pub enum StartError {
    /// Its exec, or a step before it, failed with this errno.
    Exec(i32),
    /// A Landlock grant on this path (or on an entry of this directory) was refused with this
    /// errno.
    Confine(i32, std::path::PathBuf),
}

/// Why the program did not start, or `None` once it has (the pipe closed on exec).
pub fn exec_error(fd: RawFd) -> io::Result<Option<StartError>> {
    use std::os::unix::ffi::OsStringExt;
    let mut pipe = std::fs::File::from(adopt(fd, libc::S_IFIFO)?);
    let mut b = Vec::new();
    // The child writes once and exits (or execs): the end of the pipe comes right after.
    (&mut pipe).take(8192).read_to_end(&mut b)?;
    let Some((n, rest)) = b.split_first_chunk::<4>() else { return Ok(None) };
    let n = i32::from_ne_bytes(*n);
    Ok(Some(if n & CONFINE_FAILED != 0 {
        StartError::Confine(n & !CONFINE_FAILED, std::ffi::OsString::from_vec(rest.to_vec()).into())
    } else {
        StartError::Exec(n)
    }))
}

/// Set this thread's signal mask to `mask` (the bits of signals 1..=64, as the front end
/// passes it).
pub fn set_mask(mask: u64) {
    let mut set = nix::sys::signal::SigSet::empty();
    for sig in nix::sys::signal::Signal::iterator() {
        if mask & (1 << (sig as i32 - 1)) != 0 {
            set.add(sig);
        }
    }
    let _ = set.thread_set_mask();
}

/// Whether child `pid` has exited: its status if so. Reaps it.
pub fn try_wait(pid: i32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    // SAFETY: waitpid writes one int into `status`, which is ours.
    match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
        0 => Ok(None),
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(Some(ExitStatus::from_raw(status))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// What the launch's child wrote to the status pipe, as `run-attached` reads it.
    fn status(written: &[u8]) -> Option<StartError> {
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w, written).unwrap();
        drop(w);
        exec_error(r.into_raw_fd()).unwrap()
    }

    #[test]
    fn the_status_pipe_tells_a_start_from_a_failed_exec_and_a_refused_grant() {
        assert_eq!(status(b""), None);
        assert_eq!(status(&13i32.to_ne_bytes()), Some(StartError::Exec(13)));
        let mut refused = (CONFINE_FAILED | 77).to_ne_bytes().to_vec();
        refused.extend_from_slice(b"/home/u");
        assert_eq!(status(&refused), Some(StartError::Confine(77, "/home/u".into())));
        // A short write (the child killed mid-way) is no start error.
        assert_eq!(status(&[1, 2]), None);
    }
}
