//! Kernel-enforced confinement with Landlock: whatever route a program's call takes (a raw
//! system call, io_uring, a static binary, `/proc` links), the kernel refuses what the run's
//! isolation rules forbid on the host. The shim and the supervisor decide *where* a call goes;
//! this decides what the program may touch at all.
//!
//! Dependency-free and allocation-free, outside the `store` feature: the full launcher
//! (`capsule-cli run`) and the no-libc front end (starting a run from its plan) both apply it,
//! each with its own way of making a system call ([`Sys`]). The rules themselves are computed
//! once, by `run::confine` (which paths, with which rights), and travel in the launch plan as
//! [`crate::plan::tag::LANDLOCK`] records.
//!
//! The ruleset is built in the launcher before the fork (opening each path, adding its rule);
//! the child only calls [`restrict`] (no_new_privs when it lacks CAP_SYS_ADMIN, then
//! `landlock_restrict_self`) just before exec.
#![allow(unsafe_code)] // the landlock system calls take pointers to stack structures

/// Landlock's filesystem access rights (`LANDLOCK_ACCESS_FS_*`).
pub mod access {
    /// Execute a file.
    pub const EXECUTE: u64 = 1 << 0;
    /// Open a file for writing.
    pub const WRITE_FILE: u64 = 1 << 1;
    /// Open a file for reading.
    pub const READ_FILE: u64 = 1 << 2;
    /// List a directory.
    pub const READ_DIR: u64 = 1 << 3;
    /// Remove a directory.
    pub const REMOVE_DIR: u64 = 1 << 4;
    /// Remove (unlink, rename away) a file.
    pub const REMOVE_FILE: u64 = 1 << 5;
    /// Create a character device.
    pub const MAKE_CHAR: u64 = 1 << 6;
    /// Create a directory.
    pub const MAKE_DIR: u64 = 1 << 7;
    /// Create a regular file.
    pub const MAKE_REG: u64 = 1 << 8;
    /// Create a unix socket.
    pub const MAKE_SOCK: u64 = 1 << 9;
    /// Create a fifo.
    pub const MAKE_FIFO: u64 = 1 << 10;
    /// Create a block device.
    pub const MAKE_BLOCK: u64 = 1 << 11;
    /// Create a symlink.
    pub const MAKE_SYM: u64 = 1 << 12;
    /// Link or rename a file into another directory (ABI 2).
    pub const REFER: u64 = 1 << 13;
    /// Truncate a file (ABI 3).
    pub const TRUNCATE: u64 = 1 << 14;
}

/// What reading a hierarchy needs: open files for reading, list directories, execute.
pub const READ: u64 = access::EXECUTE | access::READ_FILE | access::READ_DIR;
/// What writing a hierarchy needs: everything else this module handles.
pub const WRITE: u64 = access::WRITE_FILE
    | access::REMOVE_DIR
    | access::REMOVE_FILE
    | access::MAKE_CHAR
    | access::MAKE_DIR
    | access::MAKE_REG
    | access::MAKE_SOCK
    | access::MAKE_FIFO
    | access::MAKE_BLOCK
    | access::MAKE_SYM
    | access::REFER
    | access::TRUNCATE;
/// The rights a rule on a file (not a directory) may carry.
pub const FILE_RIGHTS: u64 = access::EXECUTE | access::WRITE_FILE | access::READ_FILE | access::TRUNCATE;

/// The rights a kernel of Landlock ABI `abi` handles (and so refuses unless a rule grants
/// them). Device ioctls (ABI 5), networking (ABI 4) and scoping (ABI 6) are not handled: a
/// capsule shares the host's network and terminals, and its materialiser is an abstract socket.
pub const fn handled(abi: i32) -> u64 {
    match abi {
        i32::MIN..=0 => 0,
        1 => READ | WRITE & !(access::REFER | access::TRUNCATE),
        2 => READ | WRITE & !access::TRUNCATE,
        _ => READ | WRITE,
    }
}

/// A raw system call: number and six arguments; the result, or `-errno`. The full launcher
/// passes [`raw`]; the no-libc front end its own.
pub type Sys = fn(usize, [usize; 6]) -> isize;

const SYS_CLOSE: usize = 3;
const SYS_PRCTL: usize = 157;
const SYS_OPENAT: usize = 257;
const SYS_NEWFSTATAT: usize = 262;
const SYS_GETDENTS64: usize = 217;
const O_DIRECTORY: usize = 0o200_000;
const O_NOFOLLOW: usize = 0o400_000;
const DT_DIR: u8 = 4;
const DT_LNK: u8 = 10;
const SYS_LANDLOCK_CREATE_RULESET: usize = 444;
const SYS_LANDLOCK_ADD_RULE: usize = 445;
const SYS_LANDLOCK_RESTRICT_SELF: usize = 446;
const PR_SET_NO_NEW_PRIVS: usize = 38;
const LANDLOCK_CREATE_RULESET_VERSION: usize = 1;
const LANDLOCK_RULE_PATH_BENEATH: usize = 1;
const AT_FDCWD: isize = -100;
const O_PATH: usize = 0o10_000_000;
const O_CLOEXEC: usize = 0o2_000_000;
const AT_EMPTY_PATH: usize = 0x1000;
const EPERM: isize = 1;
const ENOENT: isize = 2;
const ENOTDIR: isize = 20;
const EACCES: isize = 13;
const ELOOP: isize = 40;

/// A system call through libc's `syscall` (for processes glibc started), as [`Sys`] wants it.
pub fn raw(nr: usize, a: [usize; 6]) -> isize {
    // SAFETY: the callers in this module pass pointers to live stack memory of the sizes the
    // kernel reads or writes for each call; the other arguments are integers.
    let r = unsafe { libc::syscall(nr as libc::c_long, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        // SAFETY: errno is this thread's; read right after the call that set it.
        -(unsafe { *libc::__errno_location() } as isize)
    } else {
        isize::try_from(r).unwrap_or(isize::MAX)
    }
}

/// The kernel's Landlock ABI version, 0 without Landlock (or with it disabled at boot).
pub fn abi(sys: Sys) -> i32 {
    let v = sys(SYS_LANDLOCK_CREATE_RULESET, [0, 0, LANDLOCK_CREATE_RULESET_VERSION, 0, 0, 0]);
    i32::try_from(v.max(0)).unwrap_or(0)
}

/// What a run's ruleset handles (`mask` for [`ruleset`]): the rights that change the
/// filesystem, and the rights to read and execute only when some of the host must be
/// invisible (`reads`: a `full` rule). `TRUNCATE` is left out: handled, the kernel walks up
/// for a rule at every open, reads too, to note whether the file may be truncated (~150 ns an
/// open here); a truncation needs a descriptor open for writing (`WRITE_FILE`, handled) or
/// `truncate(2)`, which the guard sends to the supervisor. Without the read rights, an open
/// for reading costs the kernel no walk at all.
pub const fn mask(reads: bool) -> u64 {
    let w = WRITE & !access::TRUNCATE;
    if reads { w | READ } else { w }
}

/// `LANDLOCK_SCOPE_SIGNAL` (ABI 6): a process of the domain may signal only processes of the
/// same domain or of one nested in it.
pub const SCOPE_SIGNAL: u64 = 1 << 1;

/// What a ruleset of a kernel of ABI `abi` scopes: signals from ABI 6 on. The program can then
/// signal its own processes, but not the run's keeper and launcher (which would take processes
/// out of the run's reach: `launch`), nor any other process of the host, its user's included.
/// Signals the kernel sends (a child's SIGCHLD, a terminal's SIGINT, a death signal) are not
/// affected. Abstract unix sockets are not scoped: the host's (an X server, D-Bus) stay
/// reachable, as a capsule shares the host's desktop.
pub const fn scoped(abi: i32) -> u64 {
    if abi >= 6 { SCOPE_SIGNAL } else { 0 }
}

/// A new ruleset handling [`handled`]`(abi) & mask` and scoping [`scoped`]`(abi)`: its
/// descriptor (close-on-exec), or `-errno`.
pub fn ruleset(sys: Sys, abi: i32, mask: u64) -> Result<usize, isize> {
    // struct landlock_ruleset_attr { handled_access_fs, handled_access_net, scoped }: the
    // kernel takes a prefix of it, so an older one gets only what it knows (8 bytes).
    let attr: [u64; 3] = [handled(abi) & mask, 0, scoped(abi)];
    let size = if attr[2] == 0 { 8 } else { 24 };
    let fd = sys(SYS_LANDLOCK_CREATE_RULESET, [attr.as_ptr() as usize, size, 0, 0, 0, 0]);
    if fd < 0 { Err(fd) } else { Ok(fd.cast_unsigned()) }
}

/// Rights flag of a grant made not on its directory but on each of its entries, at every
/// launch (`run::confine`: a writable prefix expanded around a narrower one): the directory's
/// entries, but symlinks and the names listed after the path, get the rights; the directory
/// itself nothing. Read when the ruleset is built, so an entry made since the last run is
/// granted too (a launch plan holds the record, not the listing).
pub const EXPAND: u64 = 1 << 63;

/// With [`EXPAND`]: only the directory's subdirectories get the rights; its other entries
/// (files, sockets) only what the directory's own grant gives them. Set where that loses no
/// right to read (the broker makes a write there: `supervisor::host`): a `/tmp` holding the
/// store may hold hundreds of files, and each rule costs every start ~2 µs.
pub const EXPAND_DIRS: u64 = 1 << 62;

/// Add one grant to `ruleset` (of rights `handled`): `rights` beneath `path` ([`add`]), or,
/// with [`EXPAND`], beneath each entry of the directory `path` names up to its first NUL, but
/// symlinks and the NUL-terminated names after it ([`add_entries`]).
pub fn apply(sys: Sys, ruleset: usize, handled: u64, path: &[u8], rights: u64) -> Result<(), isize> {
    if rights & EXPAND == 0 {
        return add(sys, ruleset, handled, path, rights);
    }
    let Some(end) = path.iter().position(|&c| c == 0) else { return Err(-22) };
    let (dir, except) = path.split_at(end + 1);
    add_entries(sys, ruleset, handled, dir, rights & !EXPAND, except)
}

/// Add a rule granting `rights` (masked to what the ruleset `handled`, and to [`FILE_RIGHTS`] when
/// `path` is not a directory, which the launcher usually did already) beneath `path`
/// (NUL-terminated) to `ruleset`. A path that does
/// not exist, or that this user cannot reach, grants nothing and is not an error.
pub fn add(sys: Sys, ruleset: usize, handled: u64, path: &[u8], rights: u64) -> Result<(), isize> {
    if path.last() != Some(&0) {
        return Err(-22);
    }
    let fd = sys(SYS_OPENAT, [AT_FDCWD.cast_unsigned(), path.as_ptr() as usize, O_PATH | O_CLOEXEC, 0, 0, 0]);
    if fd < 0 {
        return match -fd {
            ENOENT | ENOTDIR | EACCES | ELOOP => Ok(()),
            _ => Err(fd),
        };
    }
    let fd = fd.cast_unsigned();
    let result = add_fd(sys, ruleset, fd, rights & handled, None);
    sys(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
    result
}

/// The rule for `O_PATH` descriptor `fd`: `allowed`, masked to [`FILE_RIGHTS`] when it is not
/// a directory (`dir`: whether it is, when the caller knows; else asked when the kernel
/// refuses directory rights on it).
fn add_fd(sys: Sys, ruleset: usize, fd: usize, allowed: u64, dir: Option<bool>) -> Result<(), isize> {
    let rule = |allowed: u64| {
        // struct landlock_path_beneath_attr { u64 allowed_access; s32 parent_fd; } packed.
        let mut attr = [0u8; 12];
        attr[..8].copy_from_slice(&allowed.to_ne_bytes());
        attr[8..].copy_from_slice(&i32::try_from(fd).unwrap_or(-1).to_ne_bytes());
        sys(SYS_LANDLOCK_ADD_RULE, [ruleset, LANDLOCK_RULE_PATH_BENEATH, attr.as_ptr() as usize, 0, 0, 0])
    };
    let allowed = if dir == Some(false) { allowed & FILE_RIGHTS } else { allowed };
    // The launcher masks the rights of a file's rule already (`run::confine`): one call. A
    // path that is no longer what it was (EINVAL: directory rights on a file) is looked at.
    let mut r = if allowed == 0 { 0 } else { rule(allowed) };
    if r == -22 {
        r = match st_mode(sys, fd) {
            Err(e) => e,
            Ok(m) => {
                let masked = if m & 0o170_000 == 0o040_000 { allowed } else { allowed & FILE_RIGHTS };
                if masked == 0 { 0 } else { rule(masked) }
            }
        };
    }
    if r < 0 { Err(r) } else { Ok(()) }
}

/// Grant `rights` (masked to `handled`) beneath each entry of directory `dir` (NUL-terminated)
/// but `.`, `..`, symlinks (a rule holds on the inode it names: the target's) and the names in
/// `except` (each NUL-terminated): [`EXPAND`]. A directory that is not there grants nothing.
pub fn add_entries(
    sys: Sys,
    ruleset: usize,
    handled: u64,
    dir: &[u8],
    rights: u64,
    except: &[u8],
) -> Result<(), isize> {
    const O_RDONLY: usize = 0;
    if dir.last() != Some(&0) {
        return Err(-22);
    }
    let allowed = rights & handled;
    let dirs_only = rights & EXPAND_DIRS != 0;
    let d =
        sys(SYS_OPENAT, [AT_FDCWD.cast_unsigned(), dir.as_ptr() as usize, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, 0, 0]);
    if d < 0 {
        return match -d {
            ENOENT | ENOTDIR | EACCES | ELOOP => Ok(()),
            _ => Err(d),
        };
    }
    let d = d.cast_unsigned();
    // struct linux_dirent64 records, 8-byte aligned.
    #[repr(C, align(8))]
    struct Buf([u8; 4096]);
    let mut buf = Buf([0; 4096]);
    let mut result = Ok(());
    'read: loop {
        let n = sys(SYS_GETDENTS64, [d, buf.0.as_mut_ptr() as usize, buf.0.len(), 0, 0, 0]);
        if n <= 0 {
            if n < 0 {
                result = Err(n);
            }
            break;
        }
        let mut at = 0usize;
        let end = usize::try_from(n).unwrap_or(0).min(buf.0.len());
        while at + 19 < end {
            // d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name NUL-terminated.
            let Some(rec) = buf.0.get(at..end) else { break };
            let reclen = usize::from(u16::from_ne_bytes([rec[16], rec[17]]));
            if reclen < 20 || reclen > rec.len() {
                break;
            }
            let (kind, name) = (rec[18], &rec[19..reclen]);
            at += reclen;
            let Some(len) = name.iter().position(|&c| c == 0) else { continue };
            let name = &name[..=len];
            let skip = kind == DT_LNK || (dirs_only && kind != DT_DIR && kind != 0);
            if name == b".\0" || name == b"..\0" || skip || excluded(except, name) || allowed == 0 {
                continue;
            }
            let fd = sys(SYS_OPENAT, [d, name.as_ptr() as usize, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, 0, 0]);
            if fd < 0 {
                continue; // gone since the listing, or not ours to reach
            }
            let fd = fd.cast_unsigned();
            // DT_UNKNOWN (0): the kernel's refusal of directory rights tells (add_fd).
            let dir = match kind {
                0 => None,
                DT_DIR => Some(true),
                _ => Some(false),
            };
            let r = if dirs_only && dir.is_none() && !is_dir(sys, fd) {
                Ok(())
            } else {
                add_fd(sys, ruleset, fd, allowed, dir)
            };
            sys(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
            if let Err(e) = r {
                // A symlink the listing did not say was one (DT_UNKNOWN): not granted.
                if e != -22 {
                    result = Err(e);
                    break 'read;
                }
            }
        }
    }
    sys(SYS_CLOSE, [d, 0, 0, 0, 0, 0]);
    result
}

/// The `st_mode` of (`O_PATH`) descriptor `fd`, or -errno.
fn st_mode(sys: Sys, fd: usize) -> Result<u64, isize> {
    // struct stat is 144 bytes on x86-64; st_mode is the u32 at offset 24.
    let mut st = [0u64; 18];
    let s = sys(SYS_NEWFSTATAT, [fd, c"".as_ptr() as usize, st.as_mut_ptr() as usize, AT_EMPTY_PATH, 0, 0]);
    if s == 0 { Ok(st[3] & 0xffff_ffff) } else { Err(s) }
}

/// Whether `O_PATH` descriptor `fd` is a directory.
fn is_dir(sys: Sys, fd: usize) -> bool {
    st_mode(sys, fd).is_ok_and(|m| m & 0o170_000 == 0o040_000)
}

/// Whether NUL-terminated `name` is one of the NUL-terminated names of `list`.
fn excluded(list: &[u8], name: &[u8]) -> bool {
    list.split_inclusive(|&c| c == 0).any(|n| n == name)
}

/// Restrict this process (and what it executes) to `ruleset`: the launcher's child calls it
/// just before exec. Without CAP_SYS_ADMIN the kernel wants no_new_privs first, and it is set
/// only then (set-uid programs inside a run by a non-root user then run without their
/// privileges, as under tier 2). Async-signal-safe: two or three system calls, no allocation.
pub fn restrict(sys: Sys, ruleset: usize) -> Result<(), isize> {
    let mut r = sys(SYS_LANDLOCK_RESTRICT_SELF, [ruleset, 0, 0, 0, 0, 0]);
    if r == -EPERM {
        let p = sys(SYS_PRCTL, [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0]);
        if p < 0 {
            return Err(p);
        }
        r = sys(SYS_LANDLOCK_RESTRICT_SELF, [ruleset, 0, 0, 0, 0, 0]);
    }
    if r < 0 { Err(r) } else { Ok(()) }
}

/// Close a ruleset descriptor.
pub fn close(sys: Sys, fd: usize) {
    sys(SYS_CLOSE, [fd, 0, 0, 0, 0, 0]);
}

/// A launch plan's Landlock record (`rights: u64 LE · path NUL`): its parts. The first
/// record has an empty path: its rights are the ruleset's [`mask`].
pub fn record(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (rights, path) = payload.split_at_checked(8)?;
    let rights = u64::from_le_bytes(rights.try_into().ok()?);
    (path.last() == Some(&0)).then_some((rights, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_abi_handles_what_it_knows() {
        assert_eq!(handled(0), 0);
        assert_eq!(handled(1) & (access::REFER | access::TRUNCATE), 0);
        assert_eq!(handled(2) & access::TRUNCATE, 0);
        assert_ne!(handled(2) & access::REFER, 0);
        assert_eq!(handled(7), READ | WRITE);
        assert_eq!(handled(1) & 0x1fff, 0x1fff);
    }

    #[test]
    fn signals_are_scoped_from_abi_6() {
        assert_eq!(scoped(5), 0);
        assert_eq!(scoped(6), SCOPE_SIGNAL);
        assert_eq!(scoped(7), SCOPE_SIGNAL);
    }

    #[test]
    fn records_round_trip() {
        let mut p = 0x1234u64.to_le_bytes().to_vec();
        p.extend_from_slice(b"/usr\0");
        assert_eq!(record(&p), Some((0x1234, &b"/usr\0"[..])));
        assert_eq!(record(b"short"), None);
        assert_eq!(record(b"12345678/usr"), None);
    }
}
