//! `lckpwdf`/`ulckpwdf`: glibc opens `/etc/.pwd.lock` internally, where no hook sees it, so
//! under tier 1 alone the lock went to the host's `/etc` (refused there by kernel confinement:
//! `groupadd` and `useradd` then failed with "cannot lock /etc/group"). Done here as glibc
//! does it, through the shim's own `open`: the lock file is the view's (write-copy: the
//! sandbox's), and a write lock on it is waited for up to 15 seconds.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, Ordering};

/// The descriptor holding the lock, -1 when none.
static HELD: AtomicI32 = AtomicI32::new(-1);

/// How long glibc waits for the lock.
const WAIT_TENTHS: u32 = 150;

/// Take the password files' lock.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lckpwdf() -> c_int {
    if HELD.load(Ordering::Relaxed) >= 0 {
        return -1;
    }
    // SAFETY: a NUL-terminated literal; our own open hook places it in the view.
    let fd = unsafe {
        super::open::open(c"/etc/.pwd.lock".as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC, 0o600)
    };
    if fd < 0 {
        return -1;
    }
    // SAFETY: all-zero is a valid struct flock; the fields that matter are set below.
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    // F_WRLCK (1) and SEEK_SET (0) fit a short.
    fl.l_type = libc::c_short::try_from(libc::F_WRLCK).unwrap_or(1);
    fl.l_whence = libc::c_short::try_from(libc::SEEK_SET).unwrap_or(0);
    for _ in 0..WAIT_TENTHS {
        // SAFETY: fcntl reads `fl`, which lives on our stack.
        if unsafe { libc::fcntl(fd, libc::F_SETLK, &raw const fl) } == 0 {
            HELD.store(fd, Ordering::Relaxed);
            return 0;
        }
        let e = crate::preload::sys::errno();
        if e != libc::EAGAIN && e != libc::EACCES && e != libc::EINTR {
            break;
        }
        let tenth = libc::timespec { tv_sec: 0, tv_nsec: 100_000_000 };
        // SAFETY: nanosleep reads `tenth` on our stack; no remainder wanted.
        unsafe { libc::nanosleep(&raw const tenth, core::ptr::null_mut()) };
    }
    // SAFETY: our descriptor, through our close hook.
    unsafe { super::misc::close(fd) };
    -1
}

/// Release it.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ulckpwdf() -> c_int {
    let fd = HELD.swap(-1, Ordering::Relaxed);
    if fd < 0 {
        return -1;
    }
    // SAFETY: the descriptor `lckpwdf` kept; closing it drops the lock.
    unsafe { super::misc::close(fd) }
}
