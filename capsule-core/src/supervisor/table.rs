//! The one table of what tier 2 traps: each system call with its family (the shim's family
//! names: `open`, `stat`, `link`, `xattr`, `dir`, `exec`, `net`, `uts`), when a run traps
//! it and whether the run's cookie lets it past; what every run refuses ([`REFUSED`]); and the
//! path calls deliberately left to the kernel, each with its reason ([`KERNEL`]). The seccomp
//! filters are built from it ([`super::filter::program_for`], [`super::filter::refusals`])
//! and the supervisor dispatches by it ([`super::handlers::handle`] takes the family from
//! here, then the family's handler reads its arguments), so a call cannot be trapped and not
//! answered, or answered and never trapped; a test walks every x86-64 number through both, and
//! checks every x86-64 system call that takes a path against this table: each is emulated,
//! refused or left to the kernel for a stated reason, none by omission. (Firecracker's
//! seccompiler keeps its policy as data the same way.)

/// A family of calls, named as the shim's hook modules are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// open, openat, openat2, creat: performed here, the descriptor injected.
    Open,
    /// stat, lstat, newfstatat, statx, access, faccessat(2), readlink(at).
    Stat,
    /// The mutations: mkdir, mknod, unlink, rmdir, chmod, chown, truncate, utimensat, rename,
    /// link, symlink (`supervisor::link`).
    Link,
    /// getxattr, lgetxattr, listxattr, llistxattr (`handlers::xattr`).
    Xattr,
    /// getdents64 (`supervisor::listing`), getcwd and chdir (`handlers::dir`).
    Dir,
    /// execve, execveat: recorded in record mode, otherwise the kernel's.
    Exec,
    /// bind, connect, getsockname, getpeername, the interface ioctls, route netlink reads
    /// (`supervisor::net`, `supervisor::netlink`).
    Net,
    /// uname, sethostname, setdomainname: the run's names.
    Uts,
    /// The credential changes (setuid, setgroups, capset, ...): let through, after noting
    /// that the run's threads may no longer all act with the launcher's credentials
    /// (`supervisor::creds`).
    Cred,
}

/// When a run traps a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every run under tier 2.
    Always,
    /// Every run, but only for the argument values the filter checks (ioctl: the interface
    /// queries in `filter::IOCTLS`).
    ByArgument,
    /// Record mode (`capture trace`).
    Record,
    /// A static program of a run with an address or MAC identity (glibc's getifaddrs).
    Netlink,
    /// A program without the shim (static, Go): what the shim answers in-process otherwise.
    NoShim,
}

/// One trapped call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// The x86-64 system call number.
    pub nr: i64,
    /// Its family.
    pub family: Family,
    /// When it is trapped.
    pub when: When,
    /// Whether the run's cookie lets it past the filter (the shim's own calls). Not for the
    /// changes of metadata, which kernel confinement (Landlock) does not cover: a program can
    /// read the cookie (docs/security.md), so those always reach the supervisor.
    pub cookie: bool,
}

const fn c(nr: i64, family: Family, when: When) -> Call {
    Call { nr, family, when, cookie: true }
}

/// A call the cookie does not let past.
const fn always(nr: i64, family: Family) -> Call {
    Call { nr, family, when: When::Always, cookie: false }
}

/// System calls newer than the libc crate's table.
pub mod nr {
    /// setxattrat(2), Linux 6.13.
    pub const SETXATTRAT: i64 = 463;
    /// getxattrat(2), Linux 6.13.
    pub const GETXATTRAT: i64 = 464;
    /// listxattrat(2), Linux 6.13.
    pub const LISTXATTRAT: i64 = 465;
    /// removexattrat(2), Linux 6.13.
    pub const REMOVEXATTRAT: i64 = 466;
    /// open_tree_attr(2), Linux 6.15.
    pub const OPEN_TREE_ATTR: i64 = 467;
    /// file_getattr(2), Linux 6.17.
    pub const FILE_GETATTR: i64 = 468;
    /// file_setattr(2), Linux 6.17.
    pub const FILE_SETATTR: i64 = 469;
}

use Family::{Cred, Dir, Exec, Link, Net, Open, Stat, Uts, Xattr};
use When::{Always, ByArgument, Netlink, NoShim, Record};

/// Every call tier 2 traps.
pub const CALLS: &[Call] = &[
    c(libc::SYS_open, Open, Always),
    c(libc::SYS_creat, Open, Always),
    c(libc::SYS_openat, Open, Always),
    // Always, whatever the cookie: its flags are in memory, where the filter cannot see an
    // `O_TRUNC` ([`TRUNCATING_OPENS`]). The shim makes none of its own.
    always(libc::SYS_openat2, Open),
    c(libc::SYS_stat, Stat, Always),
    c(libc::SYS_lstat, Stat, Always),
    c(libc::SYS_newfstatat, Stat, Always),
    c(libc::SYS_statx, Stat, Always),
    c(libc::SYS_access, Stat, Always),
    c(libc::SYS_faccessat, Stat, Always),
    c(libc::SYS_faccessat2, Stat, Always),
    c(libc::SYS_readlink, Stat, Always),
    c(libc::SYS_readlinkat, Stat, Always),
    c(libc::SYS_getxattr, Xattr, Always),
    c(libc::SYS_lgetxattr, Xattr, Always),
    c(libc::SYS_listxattr, Xattr, Always),
    c(libc::SYS_llistxattr, Xattr, Always),
    c(libc::SYS_mkdir, Link, Always),
    c(libc::SYS_mkdirat, Link, Always),
    c(libc::SYS_mknod, Link, Always),
    c(libc::SYS_mknodat, Link, Always),
    c(libc::SYS_unlink, Link, Always),
    c(libc::SYS_unlinkat, Link, Always),
    c(libc::SYS_rmdir, Link, Always),
    always(libc::SYS_chmod, Link),
    always(libc::SYS_fchmodat, Link),
    always(libc::SYS_fchmodat2, Link),
    always(libc::SYS_chown, Link),
    always(libc::SYS_lchown, Link),
    always(libc::SYS_fchownat, Link),
    always(libc::SYS_truncate, Link),
    always(libc::SYS_utimensat, Link),
    always(libc::SYS_utime, Link),
    always(libc::SYS_utimes, Link),
    always(libc::SYS_futimesat, Link),
    always(libc::SYS_setxattr, Link),
    always(libc::SYS_lsetxattr, Link),
    always(libc::SYS_removexattr, Link),
    always(libc::SYS_lremovexattr, Link),
    // The same changes on a descriptor: refused when it names a host file the view keeps
    // (a write-copy or full path opened for reading), or a file shared with the cache.
    always(libc::SYS_fchmod, Link),
    always(libc::SYS_fchown, Link),
    always(libc::SYS_fsetxattr, Link),
    always(libc::SYS_fremovexattr, Link),
    c(libc::SYS_rename, Link, Always),
    c(libc::SYS_renameat, Link, Always),
    c(libc::SYS_renameat2, Link, Always),
    c(libc::SYS_link, Link, Always),
    c(libc::SYS_linkat, Link, Always),
    c(libc::SYS_symlink, Link, Always),
    c(libc::SYS_symlinkat, Link, Always),
    c(libc::SYS_statfs, Stat, Always),
    c(libc::SYS_name_to_handle_at, Stat, Always),
    c(libc::SYS_inotify_add_watch, Stat, Always),
    c(libc::SYS_getdents64, Dir, NoShim),
    c(libc::SYS_getcwd, Dir, NoShim),
    c(libc::SYS_chdir, Dir, NoShim),
    c(libc::SYS_execve, Exec, Record),
    c(libc::SYS_execveat, Exec, Record),
    c(libc::SYS_bind, Net, Always),
    c(libc::SYS_connect, Net, NoShim),
    c(libc::SYS_getsockname, Net, NoShim),
    c(libc::SYS_getpeername, Net, NoShim),
    c(libc::SYS_ioctl, Net, ByArgument),
    c(libc::SYS_recvmsg, Net, Netlink),
    c(libc::SYS_uname, Uts, Always),
    c(libc::SYS_sethostname, Uts, Always),
    c(libc::SYS_setdomainname, Uts, Always),
    always(libc::SYS_setuid, Cred),
    always(libc::SYS_setgid, Cred),
    always(libc::SYS_setreuid, Cred),
    always(libc::SYS_setregid, Cred),
    always(libc::SYS_setresuid, Cred),
    always(libc::SYS_setresgid, Cred),
    always(libc::SYS_setfsuid, Cred),
    always(libc::SYS_setfsgid, Cred),
    always(libc::SYS_setgroups, Cred),
    always(libc::SYS_capset, Cred),
];

/// The opens that truncate without asking for write access, by their flags argument (system
/// call, index of the flags argument): `O_TRUNC` with an access mode of `O_RDONLY` (or 3, the
/// mode that asks for neither): the kernel truncates the file, and Landlock sees a read-open
/// (its `TRUNCATE` right is not handled: `confine::mask`). Every run's filter sends these to
/// the supervisor, whatever the cookie, which opens them in the view as tier 2 opens anything.
/// `creat` asks for writing; `openat2` is trapped whole.
pub const TRUNCATING_OPENS: &[(i64, u32)] = &[(libc::SYS_open, 1), (libc::SYS_openat, 2)];

/// Whether open flags `flags` truncate without asking for write access ([`TRUNCATING_OPENS`]).
/// Not with `O_PATH`, which drops `O_TRUNC` (the filter sends those too; they are opened as any).
#[allow(clippy::cast_sign_loss)] // flag bits
pub const fn truncates_unasked(flags: u64) -> bool {
    let mode = flags & libc::O_ACCMODE as u64;
    flags & libc::O_TRUNC as u64 != 0
        && flags & libc::O_PATH as u64 == 0
        && mode != libc::O_WRONLY as u64
        && mode != libc::O_RDWR as u64
}

/// A call every run refuses, whatever the tier and the cookie: the filter answers `errno`.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// The x86-64 system call number.
    pub nr: i64,
    /// The error it fails with.
    pub errno: i32,
}

const fn refuse(nr: i64, errno: i32) -> Refused {
    Refused { nr, errno }
}

/// What every run refuses (besides any i386 or x32 entry, which fails with ENOSYS): routes
/// around both tiers that no program needs inside a capsule.
///
/// - io_uring: its operations (`IORING_OP_OPENAT`, `UNLINKAT`, `RENAMEAT`, ...) are made by
///   the kernel, seen by neither tier. ENOSYS, as on a kernel without it: libraries (liburing
///   users, libuv, glib) fall back to the plain calls.
/// - `open_by_handle_at`: opens a file by its handle, past any path check (EPERM, as without
///   CAP_DAC_READ_SEARCH).
/// - the mount API, `chroot`, `pivot_root`, swap, quotas and accounting: a capsule's view is
///   the launcher's to make (EPERM, as without the capability).
/// - `fanotify_mark`: watches of host filesystems (EPERM).
/// - `setns`: entering another process's namespaces, the host's mount namespace among them,
///   which a run as root leaves for one of its own (`launch::READ_ONLY`) (EPERM).
/// - `uselib`: an a.out library by path (ENOSYS, as on kernels built without it).
/// - the `*xattrat` calls and `file_getattr`/`file_setattr`: ENOSYS, as before Linux 6.13 and
///   6.17; callers fall back on the plain calls, which are emulated (the shim does too).
pub const REFUSED: &[Refused] = &[
    refuse(libc::SYS_io_uring_setup, libc::ENOSYS),
    refuse(libc::SYS_io_uring_enter, libc::ENOSYS),
    refuse(libc::SYS_io_uring_register, libc::ENOSYS),
    refuse(libc::SYS_open_by_handle_at, libc::EPERM),
    refuse(libc::SYS_uselib, libc::ENOSYS),
    refuse(libc::SYS_mount, libc::EPERM),
    refuse(libc::SYS_umount2, libc::EPERM),
    refuse(libc::SYS_pivot_root, libc::EPERM),
    refuse(libc::SYS_chroot, libc::EPERM),
    refuse(libc::SYS_open_tree, libc::EPERM),
    refuse(libc::SYS_move_mount, libc::EPERM),
    refuse(libc::SYS_fsopen, libc::EPERM),
    refuse(libc::SYS_fsconfig, libc::EPERM),
    refuse(libc::SYS_fsmount, libc::EPERM),
    refuse(libc::SYS_fspick, libc::EPERM),
    refuse(libc::SYS_mount_setattr, libc::EPERM),
    refuse(nr::OPEN_TREE_ATTR, libc::EPERM),
    refuse(libc::SYS_swapon, libc::EPERM),
    refuse(libc::SYS_swapoff, libc::EPERM),
    refuse(libc::SYS_quotactl, libc::EPERM),
    refuse(libc::SYS_acct, libc::EPERM),
    refuse(libc::SYS_fanotify_mark, libc::EPERM),
    refuse(libc::SYS_setns, libc::EPERM),
    refuse(nr::SETXATTRAT, libc::ENOSYS),
    refuse(nr::GETXATTRAT, libc::ENOSYS),
    refuse(nr::LISTXATTRAT, libc::ENOSYS),
    refuse(nr::REMOVEXATTRAT, libc::ENOSYS),
    refuse(nr::FILE_GETATTR, libc::ENOSYS),
    refuse(nr::FILE_SETATTR, libc::ENOSYS),
];

/// The path calls left to the kernel on purpose (unless a run traps them, `When`), and why.
pub const KERNEL: &[(i64, &str)] = &[
    (
        libc::SYS_execve,
        "the kernel runs the file: a dynamic program's execs are resolved in the view by the shim's \
         exec hooks, and kernel confinement (Landlock's execute right) bounds what any exec runs",
    ),
    (libc::SYS_execveat, "as execve"),
    (
        libc::SYS_chdir,
        "a working directory is no route to content: every relative path is placed from it (read \
         from /proc/PID/cwd, taken out of the tree); trapped for programs without the shim",
    ),
];

/// The errno every run answers `nr` with, if it refuses it.
pub fn refused(nr: i64) -> Option<i32> {
    REFUSED.iter().find(|r| r.nr == nr).map(|r| r.errno)
}

/// The family of trapped call `nr`, if it is one.
pub fn family(nr: i64) -> Option<Family> {
    CALLS.iter().find(|c| c.nr == nr).map(|c| c.family)
}
