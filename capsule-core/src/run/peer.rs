//! Who is at the other end of a materialiser connection: a process of this run, or not.
//!
//! The materialiser's socket is an abstract unix socket (a descriptor the program inherits
//! would not survive a daemon that closes every descriptor), so anyone in the network
//! namespace can connect to it. The launcher is a child subreaper
//! ([`super::lifetime::become_subreaper`]): every process the program starts stays its descendant, even when
//! its own parent exits (a daemon's double fork). A connection is served only when its peer,
//! as the kernel recorded it at `connect` (`SO_PEERPIDFD`, else `SO_PEERCRED`), is that:
//! the chain of parents from the peer reaches the launcher. The user does not matter (a
//! server of the run may drop to `www-data`); ancestry does.
//!
//! Pid reuse: the peer is held by a pidfd taken from the socket (`SO_PEERPIDFD`, Linux 6.5)
//! and checked alive after the walk, so a peer that exited and whose pid a process of the
//! run took since cannot pass for it. Without `SO_PEERPIDFD` the pidfd is opened from the
//! pid, a window of one system call.
#![allow(unsafe_code)] // getsockopt(2), pidfd_open(2), pidfd_send_signal(2)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// How many parents a walk follows before it gives up (a process tree deeper than this is
/// not a run's).
const MAX_DEPTH: usize = 4096;

/// Whether the peer of `conn` is process `launcher` or one of its descendants, alive.
pub fn of_this_run(conn: &UnixStream, launcher: u32) -> bool {
    of_this_run_with(conn, launcher, &mut Known::default())
}

/// The processes already found to be of the run, by their pidfs inode: a number the kernel
/// gives one process for the life of the system (Linux 6.9), so a process found once is not
/// walked again (its ancestry cannot leave the run: an orphan is reparented to the run's
/// keeper, a subreaper). Each walk reads `/proc/PID/stat` once per ancestor, ~10 µs each here,
/// on every open for writing of a tree file. Kept small: cleared when full.
#[derive(Default)]
pub struct Known(std::collections::HashSet<u64>);

/// Entries of [`Known`] at most.
const KNOWN: usize = 4096;

/// [`of_this_run`], remembering in `known` the peers found of the run.
pub fn of_this_run_with(conn: &UnixStream, launcher: u32, known: &mut Known) -> bool {
    let Some((pid, pidfd)) = peer(conn) else { return false };
    let ino = pidfs_inode(&pidfd);
    if ino.is_some_and(|i| known.0.contains(&i)) {
        return alive(&pidfd);
    }
    let ours = descends(pid, launcher) && alive(&pidfd);
    if let (true, Some(i)) = (ours, ino) {
        if known.0.len() >= KNOWN {
            known.0.clear();
        }
        known.0.insert(i);
    }
    ours
}

/// The inode of `pidfd` when it is a pidfs one (unique to its process), else `None` (before
/// Linux 6.9 every pidfd shares one anonymous inode).
fn pidfs_inode(pidfd: &OwnedFd) -> Option<u64> {
    const PID_FS_MAGIC: i64 = 0x5049_4446;
    // SAFETY: plain structs the kernel fills, for a descriptor we own.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatfs(pidfd.as_raw_fd(), &raw mut fs) } != 0 || fs.f_type != PID_FS_MAGIC {
        return None;
    }
    // SAFETY: as above.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(pidfd.as_raw_fd(), &raw mut sb) } == 0).then_some(sb.st_ino)
}

/// The peer's pid and a pidfd for it.
fn peer(conn: &UnixStream) -> Option<(u32, OwnedFd)> {
    let fd = conn.as_raw_fd();
    // SAFETY: ucred is plain data the kernel fills; the length is its size.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).ok()?;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is ours.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &raw mut len) };
    let pid = u32::try_from(cred.pid).ok().filter(|&p| r == 0 && p > 0)?;
    let mut pidfd: libc::c_int = -1;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).ok()?;
    // SAFETY: getsockopt writes at most `len` bytes into `pidfd`, which is ours.
    let r =
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERPIDFD, (&raw mut pidfd).cast(), &raw mut len) };
    let raw = if r == 0 && pidfd >= 0 {
        pidfd
    } else {
        // SAFETY: pidfd_open with integer arguments; returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(cred.pid), 0) };
        libc::c_int::try_from(fd).ok().filter(|&f| f >= 0)?
    };
    // SAFETY: the kernel just installed `raw` in this process; nobody else owns it.
    Some((pid, unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// Whether `pid`'s chain of parents reaches `launcher` (`pid` itself counts).
fn descends(mut pid: u32, launcher: u32) -> bool {
    for _ in 0..MAX_DEPTH {
        if pid == launcher {
            return true;
        }
        match parent_of(pid) {
            Some(p) if p > 0 && p != pid => pid = p,
            _ => return false,
        }
    }
    false
}

/// The parent of `pid`, from `/proc/PID/stat` (field 4, after the command name, which may
/// hold anything but ends at the last ')').
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat.get(close + 1..)?.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let _state = fields.next()?;
    std::str::from_utf8(fields.next()?).ok()?.parse().ok()
}

/// Whether the process behind `pidfd` is still running (not reaped, not a zombie's pid taken
/// by another).
fn alive(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 (a check, nothing sent) on a descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            libc::c_long::from(pidfd.as_raw_fd()),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    // EPERM: it exists, and signalling it is not ours (a peer of another user).
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process is its own run; a process outside (our parent) is not of it.
    #[test]
    fn a_peer_is_of_the_run_by_ancestry() {
        let me = std::process::id();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let c = UnixStream::connect(&path).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(of_this_run(&s, me), "ourselves");
        let parent = parent_of(me).unwrap();
        assert!(!of_this_run(&s, parent + 1_000_000), "not a descendant of an unrelated pid");
        assert!(descends(me, parent), "we descend from our parent");
        // Remembered: the second look needs no walk, and a peer not of the run is not let in
        // by one that was.
        let mut known = Known::default();
        assert!(of_this_run_with(&s, me, &mut known));
        let remembered = known.0.len();
        assert!(of_this_run_with(&s, me, &mut known), "remembered");
        assert!(
            !of_this_run_with(&s, parent + 1_000_000, &mut known) || remembered == 1,
            "by process, not by launcher"
        );
        assert!(!descends(parent, me), "our parent does not descend from us");
        drop(c);
    }
}
