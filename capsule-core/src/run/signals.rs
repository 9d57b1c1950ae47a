//! Signals while `capsule run` waits for its program: the ones a service manager or a user
//! sends to the process it started (`kill PID`) are passed on, and the wait ends when the last
//! process of the run has exited.
//!
//! - **Stop signals** (SIGTERM, and SIGINT sent with `kill`) stop the run as a unit, as
//!   systemd's `KillMode=control-group` and `docker stop` do: the signal goes to every process
//!   of the run (the launcher's descendants: orphans stay its own, `run::lifetime`), and those
//!   still there after the stop timeout (`run --stop-timeout`, 10 s by default) get SIGKILL.
//!   A SIGINT from the terminal (Ctrl-C) already reached the whole foreground process group,
//!   program included: it is not passed on, and it stops nothing by force (an interactive
//!   shell in the capsule ignores it and goes on).
//! - **SIGHUP, SIGUSR1, SIGUSR2** (reload, log rotation) go to the program, or once it has
//!   exited, to what is left of the run.
//!
//! The signals are caught, not blocked: a handler writes each one's number to a pipe (the
//! self-pipe trick) that the waiting thread polls beside the materialiser's socket. Blocking
//! them (for a signalfd) would block them in the program too: std's `Command` hands the
//! parent's signal mask on to the child (so that `nohup` works), and a program started with
//! SIGTERM blocked ignores `kill`. A caught signal, by contrast, is back to its default
//! action in the program (posix_spawn resets handled signals; exec does in any case), and the
//! mask the program starts with is the one capsule was given. The launcher's other threads
//! block them ([`keep_off_this_thread`]), so the main thread, which spawned the program with
//! nothing blocked, is the one that runs the handler.
#![allow(unsafe_code)] // sigaction(2), and write(2) in the handler

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

/// Passed on to the program (or the run). SIGQUIT is not: the terminal sends it to the whole
/// foreground process group, program included.
const FORWARDED: &[Signal] = &[Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2];

/// How long a run has after a stop signal before SIGKILL, unless told otherwise.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Set in a signal's byte in the pipe when the kernel sent it (a terminal's Ctrl-C), not a
/// process (`kill`).
const FROM_KERNEL: u8 = 0x80;

/// The pipe's write end, for the handler (-1 until [`Caught::install`]).
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: errno is this thread's; it is restored below so that the interrupted code's
    // errno survives the write.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: SA_SIGINFO: the kernel passes a valid siginfo_t (or null, checked).
    let code = if info.is_null() { 0 } else { unsafe { (*info).si_code } };
    let byte = u8::try_from(sig).unwrap_or(0) | if code == libc::SI_KERNEL { FROM_KERNEL } else { 0 };
    let fd = PIPE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; `byte` lives across the call; a full pipe
    // (O_NONBLOCK) drops the byte, and a dropped SIGCHLD is recovered by the wait loop's
    // `try_wait` on any other wake-up.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The forwarded signals and SIGCHLD, caught into a pipe.
pub struct Caught {
    read: OwnedFd,
    _write: OwnedFd,
    /// Wait for every child, not only the program (off in unit tests, whose process has the
    /// children of other tests).
    whole_run: bool,
    /// How long the run has after a stop signal before SIGKILL.
    stop_timeout: Duration,
}

impl Caught {
    /// Install the handlers (once per process: `capsule run` starts one program). Call before
    /// the program starts, so that a `kill` from then on reaches it.
    pub fn install() -> io::Result<Caught> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        // SA_RESTART: a thread interrupted in a blocking call (a materialiser request, the
        // supervisor's NOTIF_RECV) resumes it.
        let action = SigAction::new(
            SigHandler::SigAction(on_signal),
            SaFlags::SA_RESTART | SaFlags::SA_SIGINFO,
            SigSet::empty(),
        );
        for sig in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
            // SAFETY: the handler only makes async-signal-safe calls (write, errno) on a
            // descriptor that stays open for the life of the process (`Caught` is kept until
            // the program has exited, and the process ends soon after).
            unsafe { nix::sys::signal::sigaction(*sig, &action) }?;
        }
        Ok(Caught { read, _write: write, whole_run: true, stop_timeout: STOP_TIMEOUT })
    }

    /// Give the run `t` after a stop signal before SIGKILL.
    #[must_use]
    pub fn stop_timeout(mut self, t: Duration) -> Caught {
        self.stop_timeout = t;
        self
    }

    /// Wait on this thread for `child` to exit, and then for every other child of this process
    /// (the run's orphans, which the launcher adopts as a subreaper: `run::lifetime`), passing
    /// forwarded signals to the program (once it has exited, to those children); meanwhile `on_ready` runs whenever `socket` (a non-blocking listening socket) has
    /// connections waiting. No thread of its own, and none for the socket until a request
    /// comes.
    pub fn wait(
        &self,
        child: &mut Child,
        socket: Option<(BorrowedFd<'_>, &mut dyn FnMut())>,
    ) -> io::Result<ExitStatus> {
        let pid = i32::try_from(child.id()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.wait_with(pid, &mut || child.try_wait(), socket)
    }

    /// As [`Caught::wait`], for a child known by its pid (a program the front end forked
    /// before this process was executed).
    pub fn wait_pid(&self, pid: i32, socket: Option<(BorrowedFd<'_>, &mut dyn FnMut())>) -> io::Result<ExitStatus> {
        self.wait_with(pid, &mut || super::attach::try_wait(pid), socket)
    }

    fn wait_with(
        &self,
        pid: i32,
        try_wait: &mut dyn FnMut() -> io::Result<Option<ExitStatus>>,
        mut socket: Option<(BorrowedFd<'_>, &mut dyn FnMut())>,
    ) -> io::Result<ExitStatus> {
        let mut status = None;
        // Once a stop signal came: when what is left of the run gets SIGKILL.
        let mut kill_at: Option<Instant> = None;
        loop {
            // A SIGCHLD after these checks is in the pipe and wakes the poll.
            if status.is_none() {
                status = try_wait()?;
            }
            // The run ends with its last process, not with the program (the launcher is a
            // subreaper, run::lifetime): a daemon it started keeps its materialiser.
            let others = self.whole_run && super::lifetime::reap_others(pid)?;
            if let Some(status) = status
                && !others
            {
                return Ok(status);
            }
            if let Some(at) = kill_at
                && Instant::now() >= at
            {
                // Past the stop timeout: whatever is left is killed (again on each wake-up
                // until the wait ends: a process forked meanwhile is killed too).
                self.signal_run(pid, Signal::SIGKILL);
                kill_at = Some(Instant::now() + Duration::from_millis(100));
            }
            let mut fds = vec![PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
            if let Some((fd, _)) = &socket {
                fds.push(PollFd::new(*fd, PollFlags::POLLIN));
            }
            let timeout = match kill_at {
                None => PollTimeout::NONE,
                Some(at) => {
                    let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                    PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
                }
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let socket_ready = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = nix::unistd::read(&self.read, &mut buf) {
                for &b in &buf[..n] {
                    let from_terminal = b & FROM_KERNEL != 0;
                    let Ok(sig) = Signal::try_from(i32::from(b & !FROM_KERNEL)) else { continue };
                    match sig {
                        // Ctrl-C: the terminal sent it to the foreground group, program included.
                        Signal::SIGINT if from_terminal => {}
                        Signal::SIGTERM | Signal::SIGINT => {
                            self.signal_run(pid, sig);
                            kill_at.get_or_insert_with(|| Instant::now() + self.stop_timeout);
                        }
                        s if FORWARDED.contains(&s) => {
                            // To the program, or once it has exited, to what is left of the run.
                            let targets = if status.is_none() { vec![pid] } else { super::lifetime::children() };
                            for p in targets {
                                let _ = nix::sys::signal::kill(Pid::from_raw(p), s);
                            }
                        }
                        _ => {}
                    }
                }
            }
            if socket_ready && let Some((_, on_ready)) = &mut socket {
                on_ready();
            }
        }
    }

    /// Send `sig` to every process of the run: the program `pid` and, when the whole run is
    /// waited for, every descendant of this process. When `pid` is the run's keeper
    /// (`crate::launch`), it is left out of the whole run's signals: it ignores SIGTERM and
    /// SIGINT (the program has them from here), and it must outlive a SIGKILL of the others to
    /// report how the program ended.
    fn signal_run(&self, pid: i32, sig: Signal) {
        let mut targets = if self.whole_run { super::lifetime::descendants() } else { Vec::new() };
        if targets.len() > 1 && super::lifetime::is_keeper(pid) {
            targets.retain(|&p| p != pid);
        } else if !targets.contains(&pid) {
            targets.push(pid);
        }
        for p in targets {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), sig);
        }
    }
}

/// Keep the caught signals off the calling thread (a thread the launcher starts: the supervisor,
/// a materialiser request), so that the waiting main thread is the one that takes them and no
/// blocking call elsewhere is cut short by the handler. Best effort: the handler is harmless on
/// any thread.
pub fn keep_off_this_thread() {
    let mut set = SigSet::empty();
    for sig in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        set.add(*sig);
    }
    let _ = set.thread_block();
}

impl Drop for Caught {
    fn drop(&mut self) {
        PIPE.store(-1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The program starts with the caller's mask (nothing blocked here), a forwarded signal
    /// reaches it and ends it with that signal's default action, and the wait returns.
    #[test]
    fn a_forwarded_term_ends_a_program_that_does_not_handle_it() {
        let mut caught = Caught::install().unwrap();
        caught.whole_run = false;
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let status = std::process::Command::new("grep")
            .args(["-E", "^SigBlk", &format!("/proc/{}/status", child.id())])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&status.stdout).contains("0000000000000000"), "{status:?}");
        nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGTERM).unwrap();
        let st = caught.wait(&mut child, None).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGTERM));
    }
}
