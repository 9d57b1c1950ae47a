//! The one table of what tier 2 traps: each system call with its family (the shim's family
//! names: `open`, `stat`, `link`, `xattr`, `dir`, `exec`, `net`, `uts`) and when a run traps
//! it. The seccomp filter is built from it ([`super::filter::program_for`]) and the supervisor
//! dispatches by it ([`super::handlers::handle`] takes the family from here, then the family's
//! handler reads its arguments), so a call cannot be trapped and not answered, or answered and
//! never trapped; a test walks every x86-64 number through both. (Firecracker's seccompiler
//! keeps its policy as data the same way.)

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
    /// bind, the interface ioctls, route netlink reads (`supervisor::net`, `supervisor::netlink`).
    Net,
    /// uname, sethostname, setdomainname: the run's names.
    Uts,
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
}

const fn c(nr: i64, family: Family, when: When) -> Call {
    Call { nr, family, when }
}

use Family::{Dir, Exec, Link, Net, Open, Stat, Uts, Xattr};
use When::{Always, ByArgument, Netlink, NoShim, Record};

/// Every call tier 2 traps.
pub const CALLS: &[Call] = &[
    c(libc::SYS_open, Open, Always),
    c(libc::SYS_creat, Open, Always),
    c(libc::SYS_openat, Open, Always),
    c(libc::SYS_openat2, Open, Always),
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
    c(libc::SYS_chmod, Link, Always),
    c(libc::SYS_fchmodat, Link, Always),
    c(libc::SYS_chown, Link, Always),
    c(libc::SYS_lchown, Link, Always),
    c(libc::SYS_fchownat, Link, Always),
    c(libc::SYS_truncate, Link, Always),
    c(libc::SYS_utimensat, Link, Always),
    c(libc::SYS_rename, Link, Always),
    c(libc::SYS_renameat, Link, Always),
    c(libc::SYS_renameat2, Link, Always),
    c(libc::SYS_link, Link, Always),
    c(libc::SYS_linkat, Link, Always),
    c(libc::SYS_symlink, Link, Always),
    c(libc::SYS_symlinkat, Link, Always),
    c(libc::SYS_getdents64, Dir, NoShim),
    c(libc::SYS_getcwd, Dir, NoShim),
    c(libc::SYS_chdir, Dir, NoShim),
    c(libc::SYS_execve, Exec, Record),
    c(libc::SYS_execveat, Exec, Record),
    c(libc::SYS_bind, Net, Always),
    c(libc::SYS_ioctl, Net, ByArgument),
    c(libc::SYS_recvmsg, Net, Netlink),
    c(libc::SYS_uname, Uts, Always),
    c(libc::SYS_sethostname, Uts, Always),
    c(libc::SYS_setdomainname, Uts, Always),
];

/// The family of trapped call `nr`, if it is one.
pub fn family(nr: i64) -> Option<Family> {
    CALLS.iter().find(|c| c.nr == nr).map(|c| c.family)
}
