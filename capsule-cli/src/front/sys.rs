//! Raw system calls for the front end: glibc is linked in but never initialised here (no TLS,
//! no IFUNC-resolved functions), so nothing of libc may be called.
#![allow(unsafe_code)]

use core::arch::asm;

pub const WRITE: usize = 1;
pub const CLOSE: usize = 3;
pub const STAT: usize = 4;
pub const FSTAT: usize = 5;
pub const LSTAT: usize = 6;
pub const MMAP: usize = 9;
pub const RT_SIGPROCMASK: usize = 14;
pub const GETPID: usize = 39;
pub const PRCTL: usize = 157;
pub const SOCKET: usize = 41;
pub const BIND: usize = 49;
pub const SOCKETPAIR: usize = 53;
pub const LISTEN: usize = 50;
pub const FORK: usize = 57;
pub const EXECVE: usize = 59;
pub const EXIT_GROUP: usize = 231;
pub const WAIT4: usize = 61;
pub const FCNTL: usize = 72;
pub const GETCWD: usize = 79;
pub const READLINK: usize = 89;
pub const CLOCK_GETTIME: usize = 228;
pub const OPENAT: usize = 257;
pub const PIPE2: usize = 293;

pub const AT_FDCWD: usize = -100isize as usize;
pub const O_RDONLY: usize = 0;
pub const O_CLOEXEC: usize = 0o2_000_000;
pub const O_DIRECTORY: usize = 0o200_000;
pub const O_PATH: usize = 0o10_000_000;
pub const F_DUPFD: usize = 0;
pub const F_SETFD: usize = 2;

/// A system call with up to six arguments; the kernel's return value (negative errno on
/// failure).
#[inline(always)]
pub fn call(nr: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 Linux system call convention; rcx and r11 are clobbered by
    // `syscall`. Pointer arguments are the callers' business: every caller in this module's
    // users passes pointers to live buffers of the length it names.
    unsafe {
        asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
             in("r10") a[3], in("r8") a[4], in("r9") a[5], lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    ret
}

/// Shorthands.
pub fn sys1(nr: usize, a: usize) -> isize {
    call(nr, [a, 0, 0, 0, 0, 0])
}
pub fn sys2(nr: usize, a: usize, b: usize) -> isize {
    call(nr, [a, b, 0, 0, 0, 0])
}
pub fn sys3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    call(nr, [a, b, c, 0, 0, 0])
}
pub fn sys4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    call(nr, [a, b, c, d, 0, 0])
}

/// End the process.
pub fn exit(code: i32) -> ! {
    loop {
        sys1(EXIT_GROUP, code as usize);
    }
}

/// Write all of `msg` to stderr (best effort).
pub fn eprint(msg: &[u8]) {
    let mut rest = msg;
    while !rest.is_empty() {
        let n = sys3(WRITE, 2, rest.as_ptr() as usize, rest.len());
        let Ok(n) = usize::try_from(n) else { return };
        rest = rest.get(n..).unwrap_or_default();
    }
}

/// The kernel's `struct stat` (x86-64).
#[repr(C)]
#[derive(Default)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pad0: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub atime: i64,
    pub atime_ns: i64,
    pub mtime: i64,
    pub mtime_ns: i64,
    pub ctime: i64,
    pub ctime_ns: i64,
    reserved: [i64; 3],
}

/// `stat` (or `lstat`) of the NUL-terminated `path`.
pub fn stat(path: &[u8], nofollow: bool) -> Option<Stat> {
    if path.last() != Some(&0) {
        return None;
    }
    let mut st = Stat::default();
    let nr = if nofollow { LSTAT } else { STAT };
    (sys2(nr, path.as_ptr() as usize, (&raw mut st) as usize) == 0).then_some(st)
}
