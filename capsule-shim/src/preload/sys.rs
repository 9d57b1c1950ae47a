//! The only raw-syscall wrappers. Each returns the kernel's result: `>= 0`, or `-errno`.
//! Hooks call these rather than libc so that the real operation never re-enters a hook and
//! works before our constructor ran.

use core::ffi::{c_char, c_int, c_long};
use core::sync::atomic::{AtomicU64, Ordering};

/// This run's supervisor cookie (`CAPSULE_COOKIE`, hex), 0 without one. The seccomp filter
/// lets a trapped path syscall through when its sixth argument is the cookie; none of those
/// syscalls uses a sixth argument, and for the others the kernel ignores it.
static COOKIE: AtomicU64 = AtomicU64::new(0);

/// Set the cookie from its hex digits (ignored unless 1 to 16 hex digits).
pub fn set_cookie(hex: &[u8]) {
    let mut v: u64 = 0;
    if hex.is_empty() || hex.len() > 16 {
        return;
    }
    for &c in hex {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return,
        };
        v = (v << 4) | u64::from(d);
    }
    COOKIE.store(v, Ordering::Relaxed);
}

/// This run's cookie, 0 without one (tier 1 alone).
pub fn cookie() -> u64 {
    COOKIE.load(Ordering::Relaxed)
}

/// # Safety
/// `path` must be NUL-terminated and live for the call.
pub unsafe fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_long {
    // SAFETY: openat(2) reads `path` up to its NUL, which the caller guarantees.
    unsafe { raw(libc::SYS_openat, dirfd as c_long, path as c_long, flags as c_long, mode as c_long, 0, 0) }
}

/// # Safety
/// `path` NUL-terminated; `buf` points to writable `struct stat`.
pub unsafe fn newfstatat(dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_long {
    // SAFETY: the kernel writes one `struct stat` to `buf` and reads `path`, both guaranteed by the caller.
    unsafe { raw(libc::SYS_newfstatat, dirfd as c_long, path as c_long, buf as c_long, flags as c_long, 0, 0) }
}

/// # Safety
/// `path` NUL-terminated; `buf` points to writable `struct statx`.
pub unsafe fn statx(dirfd: c_int, path: *const c_char, flags: c_int, mask: u32, buf: *mut libc::statx) -> c_long {
    // SAFETY: as for newfstatat.
    unsafe { raw(libc::SYS_statx, dirfd as c_long, path as c_long, flags as c_long, mask as c_long, buf as c_long, 0) }
}

/// # Safety
/// `path` NUL-terminated.
pub unsafe fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_long {
    // SAFETY: faccessat2(2) only reads `path`.
    unsafe { raw(libc::SYS_faccessat2, dirfd as c_long, path as c_long, mode as c_long, flags as c_long, 0, 0) }
}

/// # Safety
/// `path` NUL-terminated; `buf` writable for `len` bytes.
pub unsafe fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, len: usize) -> c_long {
    // SAFETY: the kernel writes at most `len` bytes to `buf`.
    unsafe { raw(libc::SYS_readlinkat, dirfd as c_long, path as c_long, buf as c_long, len as c_long, 0, 0) }
}

/// # Safety
/// `buf` writable for `len` bytes.
pub unsafe fn getcwd(buf: *mut u8, len: usize) -> c_long {
    // SAFETY: the kernel writes at most `len` bytes to `buf`.
    unsafe { raw(libc::SYS_getcwd, buf as c_long, len as c_long, 0, 0, 0, 0) }
}

/// A fresh anonymous private read-write mapping of `len` bytes (scratch memory a hook may
/// not take from the heap), or `None`.
pub fn map_anon(len: usize) -> Option<*mut core::ffi::c_void> {
    // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p)
}

/// close(2).
pub fn close(fd: c_int) {
    // SAFETY: closing a descriptor we opened ourselves; no memory is involved.
    let _ = unsafe { raw(libc::SYS_close, fd as c_long, 0, 0, 0, 0, 0) };
}

/// # Safety
/// `buf` readable for `len` bytes.
pub unsafe fn write(fd: c_int, buf: *const u8, len: usize) -> c_long {
    // SAFETY: the kernel reads at most `len` bytes from `buf`.
    unsafe { raw(libc::SYS_write, fd as c_long, buf as c_long, len as c_long, 0, 0, 0) }
}

/// # Safety
/// `buf` writable for `len` bytes.
pub unsafe fn read(fd: c_int, buf: *mut u8, len: usize) -> c_long {
    // SAFETY: the kernel writes at most `len` bytes to `buf`.
    unsafe { raw(libc::SYS_read, fd as c_long, buf as c_long, len as c_long, 0, 0, 0) }
}

/// # Safety
/// Arguments as for the syscall `nr`.
#[inline]
pub unsafe fn raw(nr: c_long, a: c_long, b: c_long, c: c_long, d: c_long, e: c_long, f: c_long) -> c_long {
    #[allow(clippy::cast_possible_wrap)] // the cookie's bits, as the register holds them
    let f = if f == 0 { COOKIE.load(Ordering::Relaxed) as c_long } else { f };
    // SAFETY: the caller's contract.
    unsafe { raw_exact(nr, a, b, c, d, e, f) }
}

/// [`raw`] with the sixth register as given: no cookie added, so a call the filter traps
/// goes to the supervisor (a call re-issued for glibc, `dispatch`).
///
/// # Safety
/// Arguments as for the syscall `nr`.
#[inline]
pub unsafe fn raw_exact(nr: c_long, a: c_long, b: c_long, c: c_long, d: c_long, e: c_long, f: c_long) -> c_long {
    let r: c_long;
    // SAFETY: the x86-64 system call convention (number in rax, arguments in rdi, rsi, rdx,
    // r10, r8, r9; the kernel clobbers rcx and r11 and returns in rax); the caller upholds the
    // syscall's own contract. A sixth argument the syscall does not use is ignored by the
    // kernel. Inline rather than libc's variadic `syscall()`: no wrapper call, no errno
    // round trip (the result is the kernel's `-errno` already), on the hot path of every hook.
    unsafe {
        // r9 is zeroed after the call: the kernel preserves it, and a cookie left there
        // would ride along on the next system call glibc makes with fewer than six arguments
        // (lckpwdf's internal open right after a hook's faccessat2 went past the filter).
        core::arch::asm!(
            "syscall",
            "xor r9d, r9d",
            inlateout("rax") nr => r,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            in("r8") e,
            inlateout("r9") f => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    r
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

/// Set the calling thread's errno.
pub fn set_errno(v: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = v }
}

/// Turn a `-errno` result into the C convention: set errno, return -1.
pub fn ret(r: c_long) -> c_int {
    if r < 0 {
        // Truncation intended: errno values fit in an int.
        #[allow(clippy::cast_possible_truncation)]
        set_errno((-r) as c_int);
        -1
    } else {
        // Results of the calls we wrap (fds, 0) fit in an int.
        #[allow(clippy::cast_possible_truncation)]
        let v = r as c_int;
        v
    }
}

/// `n` in decimal, written at the end of `buf`: the digits (no allocation, no libc).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut v = n;
    loop {
        at -= 1;
        if let Some(d) = buf.get_mut(at) {
            // Truncation intended: a digit.
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    buf.get(at..).unwrap_or_default()
}
