//! Record mode (`capture trace`): the absolute path each trapped call names, as the program
//! would resolve it (relative paths joined to its working directory or directory descriptor).

use super::memory::{TraceeMemory, read_path};

/// The absolute path call `nr` names, if it names one we can read.
pub fn path_of(mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Vec<u8>> {
    #[allow(clippy::cast_possible_truncation)] // int arguments travel in 64-bit registers
    let int = |v: u64| v as i32;
    let (dirfd, addr) = match nr {
        libc::SYS_open
        | libc::SYS_creat
        | libc::SYS_getxattr
        | libc::SYS_lgetxattr
        | libc::SYS_listxattr
        | libc::SYS_llistxattr
        | libc::SYS_stat
        | libc::SYS_lstat
        | libc::SYS_access
        | libc::SYS_readlink
        | libc::SYS_execve => (libc::AT_FDCWD, a[0]),
        libc::SYS_openat
        | libc::SYS_openat2
        | libc::SYS_newfstatat
        | libc::SYS_statx
        | libc::SYS_faccessat
        | libc::SYS_faccessat2
        | libc::SYS_readlinkat
        | libc::SYS_execveat => (int(a[0]), a[1]),
        _ => return None,
    };
    let path = read_path(mem, addr).ok()?;
    if path.is_empty() {
        return None; // AT_EMPTY_PATH: a descriptor, opened (and recorded) earlier
    }
    if path.first() == Some(&b'/') {
        return Some(path);
    }
    let mut base = if dirfd == libc::AT_FDCWD { mem.cwd() } else { mem.fd_path(dirfd) }.ok()?;
    if base.last() != Some(&b'/') {
        base.push(b'/');
    }
    base.extend_from_slice(&path);
    Some(base)
}
