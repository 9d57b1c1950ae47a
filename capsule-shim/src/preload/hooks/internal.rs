//! The libc functions that open files internally (locales, time zones, NSS, iconv), each
//! run in a dispatch window (`preload::dispatch`) so that under tier 2 those opens are
//! answered here rather than by the supervisor; and `sigaction`/`signal`, which keep SIGSYS
//! deliverable inside such a window.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_void};

use super::real::Real;
use crate::preload::dispatch::{give_up, window};

/// Export `name` calling the next definition inside a window.
macro_rules! windowed {
    ($($name:ident: $sym:literal ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
        /// The libc function of this name, its internal file access in a dispatch window.
        ///
        /// # Safety
        /// C ABI.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            static R: Real = Real::new($sym);
            let p = R.get();
            if p.is_null() {
                // SAFETY: all-zero is a valid value of each return type here (null, 0, ()).
                return unsafe { core::mem::zeroed() };
            }
            // SAFETY: the symbol named `$sym` in libc has exactly this C signature.
            let f = unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($ty),*) -> $ret>(p) };
            // SAFETY: the caller's arguments, unchanged.
            window(|| unsafe { f($($arg),*) })
        }
    )*};
}

type Size = usize;

windowed! {
    setlocale: c"setlocale" (category: c_int, locale: *const c_char) -> *mut c_char;
    newlocale: c"newlocale" (mask: c_int, locale: *const c_char, base: *mut c_void) -> *mut c_void;
    tzset: c"tzset" () -> ();
    localtime: c"localtime" (t: *const libc::time_t) -> *mut libc::tm;
    localtime_r: c"localtime_r" (t: *const libc::time_t, out: *mut libc::tm) -> *mut libc::tm;
    mktime: c"mktime" (tm: *mut libc::tm) -> libc::time_t;
    ctime: c"ctime" (t: *const libc::time_t) -> *mut c_char;
    ctime_r: c"ctime_r" (t: *const libc::time_t, buf: *mut c_char) -> *mut c_char;
    getpwnam: c"getpwnam" (name: *const c_char) -> *mut c_void;
    getpwuid: c"getpwuid" (uid: libc::uid_t) -> *mut c_void;
    getpwnam_r: c"getpwnam_r" (name: *const c_char, pw: *mut c_void, buf: *mut c_char, len: Size, out: *mut *mut c_void) -> c_int;
    getpwuid_r: c"getpwuid_r" (uid: libc::uid_t, pw: *mut c_void, buf: *mut c_char, len: Size, out: *mut *mut c_void) -> c_int;
    getpwent: c"getpwent" () -> *mut c_void;
    getgrnam: c"getgrnam" (name: *const c_char) -> *mut c_void;
    getgrgid: c"getgrgid" (gid: libc::gid_t) -> *mut c_void;
    getgrnam_r: c"getgrnam_r" (name: *const c_char, gr: *mut c_void, buf: *mut c_char, len: Size, out: *mut *mut c_void) -> c_int;
    getgrgid_r: c"getgrgid_r" (gid: libc::gid_t, gr: *mut c_void, buf: *mut c_char, len: Size, out: *mut *mut c_void) -> c_int;
    getgrent: c"getgrent" () -> *mut c_void;
    getgrouplist: c"getgrouplist" (user: *const c_char, group: libc::gid_t, groups: *mut libc::gid_t, n: *mut c_int) -> c_int;
    initgroups: c"initgroups" (user: *const c_char, group: libc::gid_t) -> c_int;
    getspnam: c"getspnam" (name: *const c_char) -> *mut c_void;
    getaddrinfo: c"getaddrinfo" (node: *const c_char, service: *const c_char, hints: *const c_void, res: *mut *mut c_void) -> c_int;
    getnameinfo: c"getnameinfo" (sa: *const c_void, salen: libc::socklen_t, host: *mut c_char, hostlen: libc::socklen_t, serv: *mut c_char, servlen: libc::socklen_t, flags: c_int) -> c_int;
    gethostbyname: c"gethostbyname" (name: *const c_char) -> *mut c_void;
    gethostbyname2: c"gethostbyname2" (name: *const c_char, af: c_int) -> *mut c_void;
    gethostbyaddr: c"gethostbyaddr" (addr: *const c_void, len: libc::socklen_t, ty: c_int) -> *mut c_void;
    gethostbyname_r: c"gethostbyname_r" (name: *const c_char, ret: *mut c_void, buf: *mut c_char, len: Size, result: *mut *mut c_void, err: *mut c_int) -> c_int;
    gethostbyname2_r: c"gethostbyname2_r" (name: *const c_char, af: c_int, ret: *mut c_void, buf: *mut c_char, len: Size, result: *mut *mut c_void, err: *mut c_int) -> c_int;
    getservbyname: c"getservbyname" (name: *const c_char, proto: *const c_char) -> *mut c_void;
    getservbyport: c"getservbyport" (port: c_int, proto: *const c_char) -> *mut c_void;
    getprotobyname: c"getprotobyname" (name: *const c_char) -> *mut c_void;
    iconv_open: c"iconv_open" (to: *const c_char, from: *const c_char) -> *mut c_void;
}

static SIGACTION: Real = Real::new(c"sigaction");
static SIGNAL: Real = Real::new(c"signal");

/// sigaction(2): a handler's mask never holds SIGSYS (a handler may run inside a dispatch
/// window, where SIGSYS raised while blocked would kill the process); a program that
/// handles SIGSYS itself turns windows off.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let p = SIGACTION.get();
    if p.is_null() {
        crate::preload::sys::set_errno(libc::ENOSYS);
        return -1;
    }
    type F = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
    // SAFETY: libc's sigaction has this signature.
    let f = unsafe { core::mem::transmute::<*mut c_void, F>(p) };
    if act.is_null() {
        // SAFETY: unchanged arguments.
        return unsafe { f(sig, act, old) };
    }
    if sig == libc::SIGSYS {
        give_up();
        // SAFETY: unchanged arguments.
        return unsafe { f(sig, act, old) };
    }
    // SAFETY: `act` is non-null and points to a `struct sigaction` (the caller's contract);
    // we change a copy on our stack.
    let mut copy = unsafe { act.read() };
    // SAFETY: `copy.sa_mask` is an initialised sigset.
    unsafe { libc::sigdelset(&raw mut copy.sa_mask, libc::SIGSYS) };
    // SAFETY: our copy lives across the call.
    unsafe { f(sig, &raw const copy, old) }
}

/// signal(3): a program that handles SIGSYS itself turns dispatch windows off.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    let p = SIGNAL.get();
    if p.is_null() {
        return libc::SIG_ERR;
    }
    if sig == libc::SIGSYS {
        give_up();
    }
    type F = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
    // SAFETY: libc's signal has this signature.
    let f = unsafe { core::mem::transmute::<*mut c_void, F>(p) };
    // SAFETY: unchanged arguments.
    unsafe { f(sig, handler) }
}
