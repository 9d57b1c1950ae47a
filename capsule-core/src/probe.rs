//! What this machine's kernel offers capsule, asked of the kernel itself (`capsule doctor`):
//! each probe makes the one system call the feature needs, harmlessly, and reports what came
//! back. Nothing here changes the machine.
#![allow(unsafe_code)] // the probes are raw system calls on our own memory

use std::io;

/// One probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Short name ("seccomp user notification").
    pub name: &'static str,
    /// Whether the feature is there.
    pub ok: bool,
    /// What was found (a version, an errno).
    pub detail: String,
    /// What capsule uses it for, or loses without it.
    pub needed_for: &'static str,
}

fn errno_text(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// seccomp: the USER_NOTIF action (tier 2).
fn user_notif() -> Probe {
    let action: u32 = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 we own.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_GET_ACTION_AVAIL, 0, &raw const action) };
    let e = last_errno();
    Probe {
        name: "seccomp user notification",
        ok: r == 0,
        detail: if r == 0 { "available".into() } else { errno_text(e) },
        needed_for: "tier 2: static and Go programs, glibc's own opens (without it they run unvirtualised or are refused)",
    }
}

/// pidfd_getfd (Linux 5.6): the supervisor's bind and interface answers.
fn pidfd_getfd() -> Probe {
    // SAFETY: pidfd_open on our own pid; the descriptor is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    let (ok, detail) = match i32::try_from(pidfd) {
        Ok(fd) if fd >= 0 => {
            // SAFETY: duplicate our own stdin-or-whatever descriptor 0 through our own pidfd.
            let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, fd, 0, 0) };
            let e = last_errno();
            // SAFETY: closing descriptors we own.
            unsafe {
                if let Ok(d) = i32::try_from(dup)
                    && d >= 0
                {
                    libc::close(d);
                }
                libc::close(fd);
            }
            // EBADF: no descriptor 0 here, but the call exists.
            (
                dup >= 0 || e == libc::EBADF,
                if dup >= 0 || e == libc::EBADF { "available".into() } else { errno_text(e) },
            )
        }
        _ => (false, errno_text(last_errno())),
    };
    Probe { name: "pidfd_getfd", ok, detail, needed_for: "tier 2: bind and interface queries of static programs" }
}

/// Unprivileged user namespaces (rootless `--netns`), tried in a child that exits at once.
fn user_namespaces() -> Probe {
    // SAFETY: fork in a single-threaded caller (`capsule doctor` probes before any thread); the
    // child only calls unshare and _exit.
    let pid = unsafe { libc::fork() };
    let (ok, detail) = if pid == 0 {
        // SAFETY: in the child: async-signal-safe calls only.
        unsafe {
            let r = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET);
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
    } else if pid > 0 {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        (ok, if ok { "a user and network namespace can be made".into() } else { "refused by the kernel".into() })
    } else {
        (false, errno_text(last_errno()))
    };
    Probe {
        name: "user namespaces",
        ok,
        detail,
        needed_for: "`run --netns` without root (as root, `ip netns` is used instead)",
    }
}

/// Landlock's ABI version (0 when absent).
fn landlock() -> Probe {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: the version query takes no ruleset and size 0.
    let v = unsafe {
        libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0, LANDLOCK_CREATE_RULESET_VERSION)
    };
    let e = last_errno();
    Probe {
        name: "landlock",
        ok: v > 0,
        detail: if v > 0 { format!("ABI {v}") } else { errno_text(e) },
        needed_for: "kernel confinement of every run (without it `run` warns, and `--isolation full` needs `--unconfined`)",
    }
}

/// getxattrat/listxattrat (Linux 6.13): the shim's xattr hooks on capsule files.
fn xattrat() -> Probe {
    const SYS_LISTXATTRAT: libc::c_long = 465;
    // SAFETY: a bad descriptor and no buffers: the kernel answers EBADF if the call exists.
    let r = unsafe { libc::syscall(SYS_LISTXATTRAT, -1, c"".as_ptr(), 0, std::ptr::null::<u8>(), 0) };
    let e = last_errno();
    let ok = r >= 0 || e != libc::ENOSYS;
    Probe {
        name: "listxattrat/getxattrat",
        ok,
        detail: if ok { "available".into() } else { errno_text(e) },
        needed_for: "`ls -l` and other xattr readers on capsule files (without it they read no attributes)",
    }
}

/// Every probe.
pub fn all() -> Vec<Probe> {
    vec![user_notif(), pidfd_getfd(), user_namespaces(), xattrat(), landlock()]
}
