//! The program's side of a launch: what its process does between the fork and the exec. One
//! routine, [`child`], on both launch paths: the full launcher (`capsule-cli run`) registers it
//! as the last `pre_exec` step (`run::launch`), after the namespaces are entered; the no-libc
//! front end, starting a run from its plan, calls it in its forked child. Each passes its own
//! way of making a system call ([`Sys`]), and nothing here allocates or takes a lock (it runs
//! between fork and exec).
//!
//! The order is the point:
//! 1. **The signal mask** the program starts with, when the launcher changed its own around
//!    the fork (the front end holds the forwarded signals until `run-attached` catches them).
//! 2. **Root's reach beyond files** (a child running as root, `--user` or not): the
//!    capabilities in [`DROPPED_CAPS`] leave the bounding set (kernel modules, raw I/O, reboot,
//!    the clock, device nodes, immutable flags…), which Landlock does not cover; and unless the
//!    run is unconfined, a mount namespace of the run's own in which the kernel's and the
//!    devices' settings are read-only ([`READ_ONLY`]: `/proc/sys`, `/sys`, and `/dev`'s nodes).
//! 3. **Die with the launcher** (`PR_SET_PDEATHSIG(SIGKILL)`), and at once if it already died
//!    since the fork (the parent is then no longer the launcher).
//! 4. **The keeper** (`keep`): the child forks once more. The parent stays as the run's
//!    keeper, a child subreaper that takes no program code: every process of the run below it
//!    that loses its parent is reparented to it, and when the launcher dies (even by `kill -9`)
//!    it kills all of them, so the whole process tree ends with the launcher, not only the
//!    program. It passes on the signals the launcher sends it alone, and exits as the program
//!    did once the last of them has. It is made before the change of user, so a program run as
//!    another user cannot kill it. The other process goes on to become the program.
//! 5. **The user** (`run --user`, root only): groups, group and user, after what needs root
//!    (the namespaces, the keeper) and before confinement and the filter, which it then enters
//!    without privileges (`no_new_privs`, as a non-root run does); then
//!    `PR_SET_PDEATHSIG(SIGKILL)` against the keeper (the change of user clears it), checked
//!    as in step 3.
//! 6. **Confinement** (`confine::restrict`): after the rest, so that nothing the steps before it
//!    need is refused; the kernel then enforces the run's isolation on everything the program
//!    does.
//!
//! What the child does not do here: namespaces are entered by their own `pre_exec` steps
//! before this one; the seccomp filter (tier 2's, or the guard) is armed by the shim after the
//! loader, or for a program without the shim by `supervisor::launch`'s step after this one.

pub use crate::confine::Sys;

/// The credentials a program starts with (`run --user`).
#[derive(Clone, Copy, Debug)]
pub struct Creds<'a> {
    /// The user id (real, effective and saved).
    pub uid: u32,
    /// The group id (real, effective and saved).
    pub gid: u32,
    /// The supplementary groups.
    pub groups: &'a [u32],
}

/// What the child does before exec.
#[derive(Clone, Copy, Debug)]
pub struct Child<'a> {
    /// The launcher's pid.
    pub launcher: usize,
    /// The signal mask to start the program with (kernel bits of signals 1..=64), when the
    /// launcher's differs.
    pub mask: Option<u64>,
    /// The user to start the program as.
    pub creds: Option<Creds<'a>>,
    /// The Landlock ruleset (a descriptor) to restrict the program to.
    pub ruleset: Option<usize>,
    /// As root: the kernel's and the devices' settings read-only ([`READ_ONLY`], in a mount
    /// namespace of the run's own). Off for `--unconfined`.
    pub read_only_system: bool,
    /// The sandbox tree's inherited descriptor (a directory), opened again by its path once
    /// the run has its own mount namespace: opened by the launcher, it names a mount of the
    /// host's, and a `fchdir` through it would leave the program's working directory outside
    /// its namespace (`getcwd` then says "(unreachable)").
    pub tree_fd: Option<usize>,
}

const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_GETPID: usize = 39;
const SYS_KILL: usize = 62;
const SYS_GETPPID: usize = 110;
const SYS_PRCTL: usize = 157;
const SYS_SETRESUID: usize = 117;
const SYS_SETRESGID: usize = 119;
const SYS_SETGROUPS: usize = 116;
const SYS_RT_SIGACTION: usize = 13;
const SYS_CLONE: usize = 56;
const SYS_WAIT4: usize = 61;
const SYS_RT_SIGTIMEDWAIT: usize = 128;
const SYS_EXIT_GROUP: usize = 231;
const SYS_CLOSE_RANGE: usize = 436;
const SYS_CLOSE: usize = 3;
const PR_SET_PDEATHSIG: usize = 1;
const PR_SET_DUMPABLE: usize = 4;
const PR_SET_CHILD_SUBREAPER: usize = 36;
const PR_SET_NAME: usize = 15;
const SIG_UNBLOCK: usize = 1;
const SIG_SETMASK: usize = 2;
const SIGINT: usize = 2;
const SIGKILL: usize = 9;
const SIGTERM: usize = 15;
const SIGCHLD: usize = 17;
const WNOHANG: usize = 1;
const WALL: usize = 0x4000_0000;
const ECHILD: isize = 10;
const EINTR: isize = 4;
const SYS_GETEUID: usize = 107;
const PR_CAPBSET_DROP: usize = 24;
/// What a run as root may not do, whatever it runs: the capabilities that change the machine
/// rather than files (taken out of the bounding set, so that the program's exec does not get
/// them): the host's network configuration (12, `CAP_NET_ADMIN`: interfaces, routes, packet
/// filters), immutable and append-only flags (9, `CAP_LINUX_IMMUTABLE`), kernel modules (16,
/// `CAP_SYS_MODULE`), raw I/O (17, `CAP_SYS_RAWIO`: ports, `/dev/mem`), process accounting
/// (20, `CAP_SYS_PACCT`), the system administration that `CAP_SYS_ADMIN` (21) gates (BPF and
/// system-wide perf without the two below, namespaces, keyrings, the host's name, a device's
/// administration ioctls), reboot and kexec (22, `CAP_SYS_BOOT`), the clock (25,
/// `CAP_SYS_TIME`), device nodes (27, `CAP_MKNOD`), audit rules (30, `CAP_AUDIT_CONTROL`), MAC
/// policy (32 and 33, `CAP_MAC_OVERRIDE`, `CAP_MAC_ADMIN`), the kernel's log (34,
/// `CAP_SYSLOG`), system-wide performance monitoring (38, `CAP_PERFMON`) and BPF programs (39,
/// `CAP_BPF`: a tracing program can write any process's memory). Landlock does not cover
/// them. What a Docker container keeps, a root run keeps (files of any owner, set-uid changes,
/// raw sockets, low ports, chroot, kill).
pub const DROPPED_CAPS: [usize; 15] = [9, 12, 16, 17, 20, 21, 22, 25, 27, 30, 32, 33, 34, 38, 39];
/// The keeper's name (`/proc/PID/comm`), by which the launcher knows it.
pub const KEEPER_NAME: &core::ffi::CStr = c"capsule-keeper";
/// `si_code` of a signal a process sent with kill(2).
const SI_USER: i32 = 0;

/// Run the steps of `c` in the forked child. `Err(-errno)` when the program must not start
/// (the user could not be taken, or confinement entered): the caller reports it and exits.
pub fn child(sys: Sys, c: &Child<'_>) -> Result<(), isize> {
    if let Some(mask) = c.mask {
        sys(SYS_RT_SIGPROCMASK, [SIG_SETMASK, (&raw const mask) as usize, 0, 8, 0, 0]);
    }
    if sys(SYS_GETEUID, [0; 6]) == 0 {
        for cap in DROPPED_CAPS {
            sys(SYS_PRCTL, [PR_CAPBSET_DROP, cap, 0, 0, 0, 0]);
        }
        if c.read_only_system {
            // The tree's path as the launcher names it, read before the namespace changes
            // what its descriptor's path looks like from inside (under a chroot, the host's).
            let mut path = [0u8; 4096];
            let tree = c.tree_fd.filter(|&fd| fd_path(sys, fd, &mut path));
            if read_only_system(sys)?
                && let Some(fd) = tree
            {
                reopen(sys, fd, &path);
            }
        }
    }
    die_with(sys, c.launcher);
    // The keeper before the change of user: a program run as another user cannot kill it.
    let parent = split_keeper(sys, c.launcher).unwrap_or(c.launcher);
    if let Some(u) = c.creds {
        let ok = |r: isize| if r < 0 { Err(r) } else { Ok(()) };
        ok(sys(SYS_SETGROUPS, [u.groups.len(), u.groups.as_ptr() as usize, 0, 0, 0, 0]))?;
        ok(sys(SYS_SETRESGID, [u.gid as usize, u.gid as usize, u.gid as usize, 0, 0, 0]))?;
        ok(sys(SYS_SETRESUID, [u.uid as usize, u.uid as usize, u.uid as usize, 0, 0, 0]))?;
    }
    // After the change of user, which clears the death signal.
    die_with(sys, parent);
    if let Some(rs) = c.ruleset {
        crate::confine::restrict(sys, rs)?;
    }
    Ok(())
}

const SYS_UNSHARE: usize = 272;
const SYS_MOUNT: usize = 165;
const SYS_MOUNT_SETATTR: usize = 442;
const CLONE_NEWNS: usize = 0x2_0000;
const MS_RDONLY: usize = 1;
const MS_REMOUNT: usize = 32;
const MS_BIND: usize = 0x1000;
const MS_REC: usize = 0x4000;
const MS_SLAVE: usize = 1 << 19;
const AT_FDCWD: isize = -100;
const AT_RECURSIVE: usize = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 1;
const SYS_OPENAT: usize = 257;
const O_DIRECTORY_CLOEXEC: usize = 0o200_000 | 0o2_000_000;
const EPERM: isize = 1;
const ENOENT: isize = 2;
const EINVAL: isize = 22;
const ENOSYS: isize = 38;

/// What a run as root finds read-only: the kernel's settings (`/proc/sys`: `core_pattern`,
/// which would run a program of its choosing as the host's root, the host name, the network
/// stack's settings), the magic SysRq key, and `/sys` (devices, drivers, firmware settings),
/// each with what is mounted below it; `/dev`'s own mount is made read-only too (the nodes'
/// modes and owners: [`read_only_system`]). Landlock cannot make them read-only without refusing
/// writes to `/proc/self`, which programs need (an Electron sandbox writes its `uid_map`).
pub const READ_ONLY: [&core::ffi::CStr; 3] = [c"/proc/sys", c"/proc/sysrq-trigger", c"/sys"];

/// A mount namespace of the run's own (as Docker makes one) in which each path of
/// [`READ_ONLY`] is read-only (its mount, or a bind of itself where it is none: [`read_only`]),
/// and `/dev`'s own mount read-only: the modes and
/// owners of the host's device nodes cannot be changed (EROFS), whoever asks from inside the
/// namespace — the program, or tier 2's supervisor and the guard on its behalf, which enter it
/// (`supervisor::Supervisor`), through a symlink the program made. The disks themselves are
/// closed by Landlock's grants (`run::confine::grant_rules`) and by the supervisor, which opens
/// no block device for a run as root. Mounts stay slaves of the host's, so what the
/// host mounts later (a USB disk under `/media`) still shows; nothing of the run's reaches
/// the host's. The filter refuses the program every call that mounts or unmounts
/// (`supervisor::table::REFUSED`), and Landlock's ptrace rule keeps it from entering the host's
/// namespace through `/proc/PID/ns/mnt` of a process outside the run. Where the kernel refuses
/// the namespace (no CAP_SYS_ADMIN after all: root of a user namespace without it) the run goes
/// on without it; under a chroot only what needs no bind outside the chroot's `/proc` is
/// done; a path the host does not have is skipped; any other failure stops the start.
///
/// Whether the namespace was made.
fn read_only_system(sys: Sys) -> Result<bool, isize> {
    let r = sys(SYS_UNSHARE, [CLONE_NEWNS, 0, 0, 0, 0, 0]);
    if matches!(-r, EPERM | EINVAL | ENOSYS) {
        return Ok(false);
    }
    let ok = |r: isize| if r < 0 { Err(r) } else { Ok(()) };
    ok(r)?;
    // A bind made below a mount of the host's that is shared would show in the host's
    // namespace too: the mounts are made slaves first. Under a chroot `/` is no mount of its
    // own (EINVAL) and cannot be; its `/proc` (a mount of the chroot's own) can, so only there
    // is a bind made: `/sys` and `/dev`, when they are mounts, change flags without one.
    let slave = |p: &core::ffi::CStr| sys(SYS_MOUNT, [0, p.as_ptr() as usize, 0, MS_SLAVE | MS_REC, 0, 0]);
    let all = slave(c"/");
    if all != -EINVAL {
        ok(all)?;
    }
    let proc_binds = all == 0 || slave(c"/proc") == 0;
    for path in READ_ONLY {
        let may_bind = all == 0 || (proc_binds && path.to_bytes().starts_with(b"/proc/"));
        read_only(sys, path, true, may_bind)?;
    }
    // `/dev` itself: the modes and owners of its nodes (a root program's `chmod 0666 /dev/mem`
    // through the guard), not what is mounted below it (`/dev/shm`, `/dev/pts` stay writable,
    // and a device node opens for writing on a read-only mount).
    read_only(sys, c"/dev", false, all == 0)?;
    Ok(true)
}

/// Make `path` read-only in this namespace (with what is mounted below it when `below`): the
/// mount it is the root of, or else (`/proc/sys`, a directory of procfs) a bind of itself
/// when `may_bind`, so that nothing else of the mount it is in changes. A path the host does not have is
/// skipped. Binding a mount root again would copy it and its submounts (`/sys` has a dozen),
/// which the namespace would then make and tear down at every start.
fn read_only(sys: Sys, path: &core::ffi::CStr, below: bool, may_bind: bool) -> Result<(), isize> {
    const SYS_STATX: usize = 332;
    const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
    const AT_SYMLINK_NOFOLLOW: usize = 0x100;
    let p = path.as_ptr() as usize;
    let rec = if below { AT_RECURSIVE } else { 0 };
    let ok = |r: isize| if r < 0 { Err(r) } else { Ok(()) };
    // struct statx: stx_attributes at byte 8, stx_attributes_mask at byte 56.
    let mut stx = [0u64; 32];
    let s = sys(SYS_STATX, [AT_FDCWD.cast_unsigned(), p, AT_SYMLINK_NOFOLLOW, 0, stx.as_mut_ptr() as usize, 0]);
    if s == -ENOENT {
        return Ok(());
    }
    let root = s == 0 && stx[7] & STATX_ATTR_MOUNT_ROOT != 0 && stx[1] & STATX_ATTR_MOUNT_ROOT != 0;
    if !root {
        if !may_bind {
            return Ok(());
        }
        let b = sys(SYS_MOUNT, [p, p, 0, MS_BIND | if below { MS_REC } else { 0 }, 0, 0]);
        if b == -ENOENT {
            return Ok(());
        }
        ok(b)?;
    }
    // struct mount_attr { attr_set, attr_clr, propagation, userns_fd }.
    let attr: [u64; 4] = [MOUNT_ATTR_RDONLY, 0, 0, 0];
    let r = sys(SYS_MOUNT_SETATTR, [AT_FDCWD.cast_unsigned(), p, rec, (&raw const attr) as usize, 32, 0]);
    if r == -ENOSYS {
        // Before Linux 5.12 (no mount_setattr; statx's mount-root attribute is 5.8): that
        // mount alone.
        return ok(sys(SYS_MOUNT, [0, p, 0, MS_BIND | MS_REMOUNT | MS_RDONLY, 0, 0]));
    }
    ok(r)
}

const SYS_FCNTL: usize = 72;
const F_GETFD: usize = 1;
const F_GETFL: usize = 3;

/// The path descriptor `fd` names (`/proc/self/fd/FD`), NUL-terminated in `out`: whether it
/// is one (absolute, and fits).
fn fd_path(sys: Sys, fd: usize, out: &mut [u8; 4096]) -> bool {
    const SYS_READLINK: usize = 89;
    let mut link = [0u8; 40];
    let prefix = b"/proc/self/fd/";
    link[..prefix.len()].copy_from_slice(prefix);
    let (mut digits, mut n, mut len) = ([0u8; 20], fd, 0);
    while len < digits.len() {
        digits[len] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        link[prefix.len() + i] = *d;
    }
    let got = sys(SYS_READLINK, [link.as_ptr() as usize, out.as_mut_ptr() as usize, out.len() - 1, 0, 0, 0]);
    match usize::try_from(got) {
        Ok(got @ 1..) if out[0] == b'/' => {
            out[got] = 0;
            true
        }
        _ => false,
    }
}

/// Open directory descriptor `fd` again by `path` (NUL-terminated), in its place (same
/// number, same close-on-exec flag, same `O_PATH`-ness). Left as it is where that cannot be
/// done.
fn reopen(sys: Sys, fd: usize, path: &[u8; 4096]) {
    const SYS_DUP3: usize = 292;
    const O_PATH: isize = 0o10_000_000;
    const O_ACCMODE: isize = 3;
    const O_CLOEXEC: usize = 0o2_000_000;
    let (fl, fdfl) = (sys(SYS_FCNTL, [fd, F_GETFL, 0, 0, 0, 0]), sys(SYS_FCNTL, [fd, F_GETFD, 0, 0, 0, 0]));
    if fl < 0 || fdfl < 0 {
        return;
    }
    let flags = (fl & (O_PATH | O_ACCMODE)).cast_unsigned() | O_DIRECTORY_CLOEXEC;
    let new = sys(SYS_OPENAT, [AT_FDCWD.cast_unsigned(), path.as_ptr() as usize, flags, 0, 0, 0]);
    let Ok(new) = usize::try_from(new) else { return };
    sys(SYS_DUP3, [new, fd, if fdfl & 1 != 0 { O_CLOEXEC } else { 0 }, 0, 0, 0]);
    sys(SYS_CLOSE, [new, 0, 0, 0, 0, 0]);
}

/// `PR_SET_PDEATHSIG(SIGKILL)`, and SIGKILL at once when the parent is no longer `parent`
/// (it died before the prctl: nobody would send the signal).
fn die_with(sys: Sys, parent: usize) {
    sys(SYS_PRCTL, [PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0]);
    if sys(SYS_GETPPID, [0; 6]).cast_unsigned() != parent {
        let me = sys(SYS_GETPID, [0; 6]).cast_unsigned();
        sys(SYS_KILL, [me, SIGKILL, 0, 0, 0, 0]);
    }
}

/// The keeper's step: fork; the parent becomes the keeper (`keep`, never returns), the child
/// returns the keeper's pid, to become the program with the signal mask it was to start with
/// (the caller then makes it die with the keeper). Every signal is blocked across the fork,
/// so that none sent to the keeper before it waits for them takes its default action. Where
/// the fork fails (`None`) the run goes on without a keeper, as before it had one (the program
/// dies with the launcher; its descendants may not).
fn split_keeper(sys: Sys, launcher: usize) -> Option<usize> {
    let all: u64 = !0;
    let mut mask: u64 = 0;
    sys(SYS_RT_SIGPROCMASK, [SIG_SETMASK, (&raw const all) as usize, (&raw mut mask) as usize, 8, 0, 0]);
    let keeper = sys(SYS_GETPID, [0; 6]).cast_unsigned();
    // clone(SIGCHLD): a plain fork.
    let r = sys(SYS_CLONE, [SIGCHLD, 0, 0, 0, 0, 0]);
    if r > 0 {
        // The keeper's own death signal: any that wakes its wait, which then finds the
        // launcher gone (the kernel reparents before it signals).
        sys(SYS_PRCTL, [PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0, 0]);
        keep(sys, launcher, r.cast_unsigned());
    }
    sys(SYS_RT_SIGPROCMASK, [SIG_SETMASK, (&raw const mask) as usize, 0, 8, 0, 0]);
    (r == 0).then_some(keeper)
}

/// The kernel's `struct sigaction` for `rt_sigaction` (handler 0: SIG_DFL).
#[repr(C)]
struct KSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The keeper of a run whose program is `program` (its child): a child subreaper holding no
/// descriptor, with every signal blocked and taken with `rt_sigtimedwait`. It reaps what
/// exits; it passes a signal on to the program (or, once the program has exited, to its
/// remaining children) when the launcher sent it, except SIGTERM and SIGINT, which the
/// launcher sends to every process of the run itself (`run::signals`); it ignores the rest (a
/// terminal's signals reach the program's process group anyway). When its parent is no longer
/// `launcher`, it kills its children with SIGKILL, again every 20 ms until none is left (each
/// one's own children are then its). When it has no child left, it ends as the program did:
/// the same exit code, or the same signal (with core dumps off).
fn keep(sys: Sys, launcher: usize, program: usize) -> ! {
    // No descriptor: a pipe the launcher's spawn reads to its end, the terminal, the caller's
    // pipes must not stay open because of the keeper. close_range is Linux 5.9; before it,
    // the descriptors a run usually has.
    if sys(SYS_CLOSE_RANGE, [0, u32::MAX as usize, 0, 0, 0, 0]) < 0 {
        for fd in 0..4096 {
            sys(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
        }
    }
    sys(SYS_PRCTL, [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0]);
    sys(SYS_PRCTL, [PR_SET_DUMPABLE, 0, 0, 0, 0, 0]);
    // Its name in ps and top (its command line stays the launcher's).
    sys(SYS_PRCTL, [PR_SET_NAME, KEEPER_NAME.as_ptr() as usize, 0, 0, 0, 0]);
    // SIGCHLD may have been ignored by the launcher: then exits are not signalled at all.
    let dfl = KSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    sys(SYS_RT_SIGACTION, [SIGCHLD, (&raw const dfl) as usize, 0, 8, 0, 0]);
    let all: u64 = !0;
    let mut status: Option<i32> = None;
    let mut orphaned = false;
    loop {
        loop {
            let mut st: i32 = 0;
            let r = sys(SYS_WAIT4, [usize::MAX, (&raw mut st) as usize, WNOHANG | WALL, 0, 0, 0]);
            if r == -ECHILD {
                finish(sys, status);
            }
            if r == -EINTR {
                continue;
            }
            if r <= 0 {
                break;
            }
            if r.cast_unsigned() == program {
                status = Some(st);
            }
        }
        if !orphaned && sys(SYS_GETPPID, [0; 6]).cast_unsigned() != launcher {
            orphaned = true;
        }
        if orphaned {
            signal_children(sys, SIGKILL);
        }
        // siginfo_t: si_signo, si_errno, si_code, a pad, then si_pid and si_uid (32 bits each).
        let mut info = [0u32; 32];
        let tick: [i64; 2] = [0, 20_000_000];
        let wait = if orphaned { (&raw const tick) as usize } else { 0 };
        let sig = sys(SYS_RT_SIGTIMEDWAIT, [(&raw const all) as usize, (&raw mut info) as usize, wait, 8, 0, 0]);
        let Ok(sig) = usize::try_from(sig) else { continue };
        let code = info.get(2).map_or(-1, |c| c.cast_signed());
        let from = info.get(4).copied().unwrap_or(0) as usize;
        if sig == SIGCHLD || sig == SIGTERM || sig == SIGINT || code != SI_USER || from != launcher {
            continue;
        }
        if status.is_none() {
            sys(SYS_KILL, [program, sig, 0, 0, 0, 0]);
        } else {
            signal_children(sys, sig);
        }
    }
}

/// Send `sig` to every child of this (single-threaded) process, as `/proc/thread-self/children`
/// lists them.
fn signal_children(sys: Sys, sig: usize) {
    const SYS_READ: usize = 0;
    const SYS_OPEN: usize = 2;
    const O_RDONLY_CLOEXEC: usize = 0o2_000_000;
    let fd = sys(SYS_OPEN, [c"/proc/thread-self/children".as_ptr() as usize, O_RDONLY_CLOEXEC, 0, 0, 0, 0]);
    let Ok(fd) = usize::try_from(fd) else { return };
    let mut buf = [0u8; 512];
    let mut pid = 0usize;
    loop {
        let n = sys(SYS_READ, [fd, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0]);
        let Ok(n @ 1..) = usize::try_from(n) else { break };
        for &b in buf.get(..n).unwrap_or_default() {
            if b.is_ascii_digit() {
                pid = pid.saturating_mul(10).saturating_add(usize::from(b - b'0'));
            } else {
                if pid > 1 {
                    sys(SYS_KILL, [pid, sig, 0, 0, 0, 0]);
                }
                pid = 0;
            }
        }
    }
    if pid > 1 {
        sys(SYS_KILL, [pid, sig, 0, 0, 0, 0]);
    }
    sys(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
}

/// End the keeper as the program ended (`status`, a wait status): its exit code, or its
/// signal raised against itself (default action restored, unblocked); 128 + the signal where
/// that does not end the process, 127 when the program's status was never taken.
fn finish(sys: Sys, status: Option<i32>) -> ! {
    let code = match status {
        Some(st) if st & 0x7f == 0 => (st >> 8) & 0xff,
        Some(st) => {
            let sig = (st & 0x7f).cast_unsigned() as usize;
            let dfl = KSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
            sys(SYS_RT_SIGACTION, [sig, (&raw const dfl) as usize, 0, 8, 0, 0]);
            let bit: u64 = 1u64.checked_shl(u32::try_from(sig.saturating_sub(1)).unwrap_or(64)).unwrap_or(0);
            let me = sys(SYS_GETPID, [0; 6]).cast_unsigned();
            sys(SYS_KILL, [me, sig, 0, 0, 0, 0]);
            sys(SYS_RT_SIGPROCMASK, [SIG_UNBLOCK, (&raw const bit) as usize, 0, 8, 0, 0]);
            128 + (st & 0x7f)
        }
        None => 127,
    };
    loop {
        sys(SYS_EXIT_GROUP, [code.cast_unsigned() as usize, 0, 0, 0, 0, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls, in order, with what each was given (a fake kernel).
    fn traced(c: &Child, ppid: usize, restrict: isize) -> (Result<(), isize>, Vec<(usize, usize)>) {
        use std::cell::RefCell;
        thread_local! {
            static CALLS: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
            static ANSWERS: RefCell<(usize, isize)> = const { RefCell::new((0, 0)) };
        }
        fn fake(nr: usize, a: [usize; 6]) -> isize {
            CALLS.with(|c| c.borrow_mut().push((nr, a[0])));
            let (ppid, restrict) = ANSWERS.with(|a| *a.borrow());
            // After the fork (the child's side: 0), the parent is the keeper, 4242.
            let forked = CALLS.with(|c| c.borrow().iter().any(|c| c.0 == SYS_CLONE));
            match nr {
                SYS_GETPPID if forked => 4242,
                SYS_GETPPID => ppid.cast_signed(),
                SYS_GETPID => 4242,
                446 => restrict,
                _ => 0,
            }
        }
        CALLS.with(|c| c.borrow_mut().clear());
        ANSWERS.with(|a| *a.borrow_mut() = (ppid, restrict));
        let r = child(fake, c);
        (r, CALLS.with(|c| c.borrow().clone()))
    }

    #[test]
    fn mask_then_keeper_then_user_then_death_signal_then_confinement() {
        let groups = [5, 6];
        let creds = Creds { uid: 7432, gid: 7433, groups: &groups };
        let c = Child {
            launcher: 100,
            mask: Some(0),
            creds: Some(creds),
            ruleset: Some(7),
            read_only_system: false,
            tree_fd: None,
        };
        let (r, calls) = traced(&c, 100, 0);
        assert_eq!(r, Ok(()));
        let nrs: Vec<usize> = calls.iter().map(|c| c.0).collect();
        let drops = DROPPED_CAPS.len();
        assert_eq!(&nrs[1..2 + drops], &[[SYS_GETEUID].as_slice(), &[SYS_PRCTL; 15]].concat(), "as root: {calls:?}");
        assert!(calls[2..2 + drops].iter().all(|c| c.1 == PR_CAPBSET_DROP));
        let nrs: Vec<usize> = [&nrs[..1], &nrs[2 + drops..]].concat();
        let calls: Vec<(usize, usize)> = [&calls[..1], &calls[2 + drops..]].concat();
        assert_eq!(
            nrs,
            [
                SYS_RT_SIGPROCMASK,
                SYS_PRCTL,
                SYS_GETPPID,
                // The keeper, before the change of user: every signal blocked across the
                // fork, the program's mask back in the child.
                SYS_RT_SIGPROCMASK,
                SYS_GETPID,
                SYS_CLONE,
                SYS_RT_SIGPROCMASK,
                SYS_SETGROUPS,
                SYS_SETRESGID,
                SYS_SETRESUID,
                // Dies with the keeper, set after the change of user (which clears it).
                SYS_PRCTL,
                SYS_GETPPID,
                446
            ],
            "the keeper before the change of user, the death signal after it, confinement last"
        );
        assert_eq!(calls[5].1, SIGCHLD, "a plain fork");
        assert_eq!((calls[7].1, calls[8].1, calls[9].1), (2, 7433, 7432));
        assert!(!calls.iter().any(|c| c.0 == SYS_KILL), "{calls:?}");
        assert_eq!(calls[12].1, 7, "restricts to the ruleset given");
    }

    #[test]
    fn as_root_the_system_settings_are_bound_read_only_in_a_namespace_of_the_run() {
        let c = Child { launcher: 100, mask: None, creds: None, ruleset: None, read_only_system: true, tree_fd: None };
        let (r, calls) = traced(&c, 100, 0);
        assert_eq!(r, Ok(()));
        let at = calls.iter().position(|c| c.0 == SYS_UNSHARE).expect("unshare");
        assert_eq!(calls[at].1, CLONE_NEWNS);
        assert_eq!(calls[at + 1].0, SYS_MOUNT, "the host's mounts propagate in, ours not out");
        // Each path: is it a mount's root (statx)? Not here (the fake kernel says no), so a bind
        // of itself, made read-only; /dev last, its top alone.
        let n = READ_ONLY.len() + 1;
        let steps: Vec<usize> = calls[at + 2..at + 2 + 3 * n].iter().map(|c| c.0).collect();
        assert!(steps.chunks(3).all(|p| p == [332, SYS_MOUNT, SYS_MOUNT_SETATTR]), "{calls:?}");
        let bound: Vec<usize> =
            calls[at + 2..at + 2 + 3 * n].iter().filter(|c| c.0 == SYS_MOUNT).map(|c| c.1).collect();
        assert_eq!(bound[..READ_ONLY.len()], READ_ONLY.map(|p| p.as_ptr() as usize), "{calls:?}");
        assert!(calls[..at].iter().any(|c| c.0 == SYS_PRCTL && c.1 == PR_CAPBSET_DROP), "after the capabilities");
        assert!(calls[at..].iter().any(|c| c.0 == SYS_CLONE), "before the keeper");
        let off = Child { read_only_system: false, ..c };
        assert!(!traced(&off, 100, 0).1.iter().any(|c| c.0 == SYS_UNSHARE), "unconfined: no namespace");
    }

    #[test]
    fn kills_itself_when_the_launcher_is_already_gone() {
        let c = Child { launcher: 100, mask: None, creds: None, ruleset: None, read_only_system: false, tree_fd: None };
        let (_, calls) = traced(&c, 1, 0);
        assert!(calls.contains(&(SYS_KILL, 4242)), "{calls:?}");
    }

    #[test]
    fn a_refused_restriction_stops_the_start() {
        let c =
            Child { launcher: 100, mask: None, creds: None, ruleset: Some(7), read_only_system: false, tree_fd: None };
        // EINVAL from landlock_restrict_self (not EPERM: no retry with no_new_privs).
        let (r, _) = traced(&c, 100, -22);
        assert_eq!(r, Err(-22));
    }
}
