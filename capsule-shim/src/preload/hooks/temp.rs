//! Temporary names: mkstemp, mkostemp, mkstemps, mkostemps (and their 64 spellings), mkdtemp,
//! mktemp. glibc's create the file with its internal open, mkdir and lstat, past the hooks,
//! so a temporary file beside a capsule file (an editor's or `sed -i`'s, renamed over the
//! original afterwards) would be created on the host, or fail there. These are glibc's
//! `__gen_tempname` (misc/tempname.c) over our own hooks: the template's six `X` replaced with
//! random letters and digits (getrandom), then the exclusive create, retried while the name
//! exists. No allocation; the template is the caller's.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_long};

use super::{link, open, stat};
use crate::preload::sys::{self, errno, set_errno};

/// What the name is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    /// Only a name that does not exist (mktemp).
    Name,
}

/// glibc's number of attempts (62 cubed) before EEXIST.
const ATTEMPTS: u32 = 62 * 62 * 62;
const LETTERS: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// 64 random bits: getrandom without blocking, else the clock and a counter.
fn random(seed: &mut u64) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: the kernel writes at most 8 bytes into `v`.
    let r = unsafe { sys::raw(libc::SYS_getrandom, (&raw mut v) as c_long, 8, libc::GRND_NONBLOCK.into(), 0, 0, 0) };
    if r != 8 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: the kernel writes one timespec.
        let _ = unsafe {
            sys::raw(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC.into(), (&raw mut ts) as c_long, 0, 0, 0, 0)
        };
        v = ts.tv_nsec.cast_unsigned() ^ ts.tv_sec.cast_unsigned().rotate_left(32);
    }
    // A splitmix step, so a failing getrandom still gives a new name each attempt.
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ v;
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// glibc's `__gen_tempname`: the file descriptor (File), 0 (Dir, Name), or -1 and errno.
///
/// # Safety
/// `tmpl` null or a writable NUL-terminated string.
unsafe fn tempname(tmpl: *mut c_char, suffixlen: c_int, flags: c_int, kind: Kind) -> c_int {
    let saved = errno();
    let Ok(suffix) = usize::try_from(suffixlen) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    if tmpl.is_null() {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: NUL-terminated (caller).
    let len = unsafe { libc::strlen(tmpl) };
    let Some(start) = len.checked_sub(6 + suffix) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    // SAFETY: `start + 6 <= len`: inside the string, which the caller lets us write.
    let xs = unsafe { core::slice::from_raw_parts_mut(tmpl.add(start).cast::<u8>(), 6) };
    if xs != b"XXXXXX" {
        set_errno(libc::EINVAL);
        return -1;
    }
    let mut seed = tmpl as u64;
    for _ in 0..ATTEMPTS {
        let mut v = random(&mut seed);
        for x in xs.iter_mut() {
            // In range: the remainder of a division by 62.
            *x = LETTERS.get(usize::try_from(v % 62).unwrap_or(0)).copied().unwrap_or(b'a');
            v /= 62;
        }
        // SAFETY: `tmpl` is a NUL-terminated path; the hooks' C contracts.
        let r = unsafe {
            match kind {
                Kind::File => open::openat(
                    libc::AT_FDCWD,
                    tmpl,
                    (flags & !libc::O_ACCMODE) | libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                ),
                Kind::Dir => link::mkdir(tmpl, 0o700),
                Kind::Name => {
                    let mut sb: libc::stat = core::mem::zeroed();
                    match stat::lstat(tmpl, &mut sb) {
                        0 => {
                            set_errno(libc::EEXIST);
                            -1
                        }
                        _ if errno() == libc::ENOENT => 0,
                        _ => -1,
                    }
                }
            }
        };
        if r >= 0 {
            set_errno(saved);
            return r;
        }
        if errno() != libc::EEXIST {
            return -1;
        }
    }
    set_errno(libc::EEXIST);
    -1
}

macro_rules! file_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*) => $suffix:expr, $flags:expr;)*) => {$(
        /// A mkstemp(3) spelling, creating the file through the open hook.
        ///
        /// # Safety
        /// C ABI: `tmpl` a writable NUL-terminated template.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(tmpl: *mut c_char $(, $arg: $ty)*) -> c_int {
            // SAFETY: forwarded from the C caller.
            unsafe { tempname(tmpl, $suffix, $flags, Kind::File) }
        }
    )*};
}

file_hooks! {
    mkstemp() => 0, 0;
    mkstemp64() => 0, 0;
    mkostemp(flags: c_int) => 0, flags;
    mkostemp64(flags: c_int) => 0, flags;
    mkstemps(suffixlen: c_int) => suffixlen, 0;
    mkstemps64(suffixlen: c_int) => suffixlen, 0;
    mkostemps(suffixlen: c_int, flags: c_int) => suffixlen, flags;
    mkostemps64(suffixlen: c_int, flags: c_int) => suffixlen, flags;
}

/// mkdtemp(3): the directory through the mkdir hook.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mkdtemp(tmpl: *mut c_char) -> *mut c_char {
    // SAFETY: forwarded.
    if unsafe { tempname(tmpl, 0, 0, Kind::Dir) } == 0 { tmpl } else { core::ptr::null_mut() }
}

/// mktemp(3): a name that does not exist (in the capsule's view); on failure the template
/// becomes the empty string, as glibc's.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mktemp(tmpl: *mut c_char) -> *mut c_char {
    // SAFETY: forwarded; on failure the first byte of the (non-null) template is written.
    unsafe {
        if tempname(tmpl, 0, 0, Kind::Name) < 0 && !tmpl.is_null() {
            *tmpl = 0;
        }
    }
    tmpl
}
