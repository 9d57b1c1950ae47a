//! How long a run lasts: the launcher stays until the last process of the run has exited,
//! and the program does not outlive the launcher.
//!
//! - The launcher is a child subreaper ([`become_subreaper`]): a process of the run whose
//!   parent exits (a daemon's double fork) is reparented to the launcher, not to init. So the
//!   run's processes stay its descendants (which is how the materialiser knows them,
//!   [`super::peer`]), and the launcher, which waits for every child of its own
//!   ([`reap_others`]), keeps serving a daemonised server its materialiser.
//! - Between the launcher and the program sits the run's keeper (`crate::launch::keep`, made
//!   by `crate::launch::child`, which [`before_exec`] registers and the front end calls after
//!   its fork): a subreaper of its own, to which the run's orphans are reparented, and which
//!   kills every process below it when the launcher dies, even by `kill -9`. The program is
//!   started with `PR_SET_PDEATHSIG(SIGKILL)` against the keeper. Where the keeper could not
//!   fork, the program dies with the launcher, and the preload shim sets the same death signal
//!   in every process whose parent is the launcher when it starts (an orphan adopted by the
//!   launcher that then executes a program).
#![allow(unsafe_code)] // prctl(2), getppid(2), waitid(2), waitpid(2), kill(2) in a pre_exec hook

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make this process a child subreaper: orphans among its descendants are reparented to it
/// rather than to init, so they stay the run's and it can wait for them.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Register the program's side of the launch ([`crate::launch::child`], the routine the front
/// end runs too) as `cmd`'s last `pre_exec` step: it leaves the run's keeper behind (whose
/// child the program is, and which dies, killing the run, when this process dies), takes
/// `user`'s credentials (`--user`), as root makes the system's settings read-only unless
/// `read_only_system` is false (`--unconfined`), and is restricted to `ruleset` (Landlock) just before exec. Register it after the
/// namespace steps, and spawn from the thread that lives as long as the process (the main
/// thread): the kernel sends the death signal when the *thread* that forked the child exits.
pub fn before_exec(
    cmd: &mut Command,
    user: Option<&super::user::User>,
    ruleset: Option<&std::os::fd::OwnedFd>,
    read_only_system: bool,
    tree_fd: Option<i32>,
) {
    use std::os::fd::AsRawFd;
    let launcher = std::process::id() as usize;
    let ruleset = ruleset.map(|fd| fd.as_raw_fd().cast_unsigned() as usize);
    let tree_fd = tree_fd.and_then(|fd| usize::try_from(fd).ok());
    let user = user.map(|u| (u.uid, u.gid, u.groups.clone()));
    let step = move || {
        let creds = user.as_ref().map(|(uid, gid, groups)| crate::launch::Creds { uid: *uid, gid: *gid, groups });
        let child = crate::launch::Child { launcher, mask: None, creds, ruleset, read_only_system, tree_fd };
        crate::launch::child(crate::confine::raw, &child)
            .map_err(|e| io::Error::from_raw_os_error(i32::try_from(-e).unwrap_or(libc::EINVAL)))
    };
    // SAFETY: the closure runs in the forked child before exec and only makes system calls on
    // integers, its own stack and the groups allocated before the fork and only read here
    // (async-signal-safe, no allocation: `launch::child`); the ruleset stays open in the parent
    // until the spawn returned (the caller holds it), so the child's copy is valid.
    unsafe { cmd.pre_exec(step) };
}

/// Reap every child of this process that has exited, except `main` (whose status its own
/// wait takes). Whether children remain (`main` included).
pub fn reap_others(main: i32) -> io::Result<bool> {
    loop {
        // SAFETY: siginfo_t is plain data the kernel fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes one siginfo_t into `info`, which is ours; WNOWAIT leaves the
        // child waitable, so `main`'s status stays for its own wait.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &raw mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if r == -1 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ECHILD) => return Ok(false),
                Some(libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
        // SAFETY: waitid filled `info` (si_pid is 0 when no child has exited).
        let pid = unsafe { info.si_pid() };
        if pid == 0 || pid == main {
            return Ok(true);
        }
        let mut status = 0;
        // SAFETY: waitpid writes one int into `status`, which is ours.
        unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
    }
}

/// The processes whose parent is this process (orphans of the run it adopted), from `/proc`.
pub fn children() -> Vec<i32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| super::peer::parent_of(pid) == Some(me))
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// Every descendant of this process (the run: its program, what that started, and the
/// orphans it adopted), from one scan of `/proc`. A process forked after the scan is not in
/// it; callers that must reach every process repeat.
pub fn descendants() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pairs: Vec<(u32, u32)> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, super::peer::parent_of(pid)?)))
        .collect();
    let mut found = vec![std::process::id()];
    let mut i = 0;
    while let Some(&parent) = found.get(i) {
        found.extend(pairs.iter().filter(|&&(_, pp)| pp == parent).map(|&(p, _)| p));
        i += 1;
    }
    found.into_iter().skip(1).filter_map(|p| i32::try_from(p).ok()).collect()
}

/// Whether `pid` is a run's keeper (`crate::launch`: the launcher's child, which names itself
/// `capsule-keeper`), not the program itself (a launch whose keeper could not fork).
pub fn is_keeper(pid: i32) -> bool {
    let name = crate::launch::KEEPER_NAME.to_bytes();
    std::fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c.strip_suffix(b"\n") == Some(name))
}
