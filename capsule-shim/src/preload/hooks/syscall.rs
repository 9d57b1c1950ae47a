//! glibc's `syscall(2)`, and the table from system call numbers to hooks.
//!
//! Programs that make a path call by number (libuv, in every Node.js program, calls `statx`
//! through `syscall()`; Rust's std and others do the same for calls glibc lacks) would reach the
//! kernel past every other hook. `syscall` is exported here: [`hooked`] sends the numbers of
//! the calls the shim virtualises to the hook of their libc spelling (or the internal routine
//! of its family, for a number without one), so they are routed by the very same rules; every
//! other number goes to glibc's `syscall` with its registers as they came. Both keep glibc's
//! convention: -1 and errno on failure.
//!
//! `syscall` is C-variadic, which stable Rust cannot define: the export is a naked tail jump
//! to the C body in src/c/trampolines.c (so every argument register, and the seventh argument
//! on the stack, arrive untouched), which takes the six arguments with `va_arg` and calls
//! [`capsule_syscall_routed`]. The same table serves tier 2's dispatch windows
//! (`preload::dispatch`), which perform glibc's own path calls from the shim's text.
//!
//! A call that passes a bad pointer through `syscall()` faults in the hook (as with the libc
//! spellings), where the kernel would answer EFAULT.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_char, c_int, c_long, c_uint, c_void};

use super::link::{Op, mutate};
use super::real::Real;
use super::{exec, link, misc, open, query, stat, xattr};
use crate::preload::sys::{self, raw_exact};

const SYS_FCHMODAT2: c_long = 452;
const SYS_SETXATTRAT: c_long = 463;
const SYS_GETXATTRAT: c_long = 464;
const SYS_LISTXATTRAT: c_long = 465;
const SYS_REMOVEXATTRAT: c_long = 466;

/// `struct open_how` of openat2(2).
#[repr(C)]
#[derive(Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Perform system call `nr` with arguments `a` through the shim's hook for it, if it has one:
/// `Some(result)` in libc's convention (-1 and errno), `None` for a number the shim does not
/// virtualise (or a form of it the hook does not cover), which the caller makes itself.
///
/// # Safety
/// The arguments are those of a system call `nr` the application made: pointers valid as the
/// kernel would require them.
pub unsafe fn hooked(nr: c_long, a: [c_long; 6]) -> Option<c_long> {
    // Registers to C arguments: truncations intended (the kernel reads the low 32 bits of int
    // arguments too).
    #[allow(clippy::cast_possible_truncation)]
    let int = |v: c_long| v as c_int;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let uint = |v: c_long| v as c_uint;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let size = |v: c_long| v as usize;
    let ptr = |v: c_long| v as *const c_char;
    let out = |v: c_long| v as *mut c_char;
    let empty_path = |flags: c_long| int(flags) & libc::AT_EMPTY_PATH != 0;
    let follow = |flags: c_long| int(flags) & libc::AT_SYMLINK_NOFOLLOW == 0;
    let [a0, a1, a2, a3, a4, a5] = a;
    // SAFETY: (every arm) the application's arguments of system call `nr`, passed to the hook
    // of the same call, whose C contract is the system call's; the mutations that have no libc
    // spelling here perform the same system call with the routed (dirfd, path).
    let r: c_long = unsafe {
        match nr {
            libc::SYS_open => open::open(ptr(a0), int(a1), uint(a2)).into(),
            libc::SYS_creat => open::creat(ptr(a0), uint(a1)).into(),
            libc::SYS_openat => open::openat(int(a0), ptr(a1), int(a2), uint(a3)).into(),
            libc::SYS_openat2 => openat2(int(a0), ptr(a1), a2 as *const OpenHow, size(a3))?,
            libc::SYS_stat => stat::stat(ptr(a0), a1 as *mut libc::stat).into(),
            libc::SYS_lstat => stat::lstat(ptr(a0), a1 as *mut libc::stat).into(),
            libc::SYS_newfstatat if !empty_path(a3) => {
                stat::fstatat(int(a0), ptr(a1), a2 as *mut libc::stat, int(a3)).into()
            }
            libc::SYS_statx if !empty_path(a2) => stat::statx(int(a0), ptr(a1), int(a2), uint(a3), a4 as _).into(),
            libc::SYS_access => stat::access(ptr(a0), int(a1)).into(),
            libc::SYS_faccessat => stat::faccessat(int(a0), ptr(a1), int(a2), 0).into(),
            libc::SYS_faccessat2 => stat::faccessat(int(a0), ptr(a1), int(a2), int(a3)).into(),
            libc::SYS_readlink => misc::readlink(ptr(a0), out(a1), size(a2)) as c_long,
            libc::SYS_readlinkat => misc::readlinkat(int(a0), ptr(a1), out(a2), size(a3)) as c_long,
            libc::SYS_getcwd => getcwd(out(a0), size(a1))?,
            libc::SYS_chdir => misc::chdir(ptr(a0)).into(),
            libc::SYS_statfs => query::statfs(ptr(a0), a1 as *mut libc::statfs).into(),
            libc::SYS_inotify_add_watch => query::inotify_add_watch(int(a0), ptr(a1), uint(a2)).into(),
            libc::SYS_name_to_handle_at => {
                query::name_to_handle_at(int(a0), ptr(a1), a2 as *mut c_void, a3 as *mut c_int, int(a4)).into()
            }
            libc::SYS_mkdir => link::mkdir(ptr(a0), uint(a1)).into(),
            libc::SYS_mkdirat => link::mkdirat(int(a0), ptr(a1), uint(a2)).into(),
            libc::SYS_mknod => link::mknod(ptr(a0), uint(a1), a2.cast_unsigned()).into(),
            libc::SYS_mknodat => link::mknodat(int(a0), ptr(a1), uint(a2), a3.cast_unsigned()).into(),
            libc::SYS_unlink => link::unlink(ptr(a0)).into(),
            libc::SYS_unlinkat => link::unlinkat(int(a0), ptr(a1), int(a2)).into(),
            libc::SYS_rmdir => link::rmdir(ptr(a0)).into(),
            libc::SYS_rename => link::rename(ptr(a0), ptr(a1)).into(),
            libc::SYS_renameat => link::renameat(int(a0), ptr(a1), int(a2), ptr(a3)).into(),
            libc::SYS_renameat2 => link::renameat2(int(a0), ptr(a1), int(a2), ptr(a3), uint(a4)).into(),
            libc::SYS_link => link::link(ptr(a0), ptr(a1)).into(),
            libc::SYS_linkat => link::linkat(int(a0), ptr(a1), int(a2), ptr(a3), int(a4)).into(),
            libc::SYS_symlink => link::symlink(ptr(a0), ptr(a1)).into(),
            libc::SYS_symlinkat => link::symlinkat(ptr(a0), int(a1), ptr(a2)).into(),
            libc::SYS_chmod => link::chmod(ptr(a0), uint(a1)).into(),
            libc::SYS_fchmodat => link::fchmodat(int(a0), ptr(a1), uint(a2), 0).into(),
            SYS_FCHMODAT2 => link::fchmodat(int(a0), ptr(a1), uint(a2), int(a3)).into(),
            libc::SYS_chown => link::chown(ptr(a0), uint(a1), uint(a2)).into(),
            libc::SYS_lchown => link::lchown(ptr(a0), uint(a1), uint(a2)).into(),
            libc::SYS_fchownat => link::fchownat(int(a0), ptr(a1), uint(a2), uint(a3), int(a4)).into(),
            libc::SYS_truncate => link::truncate(ptr(a0), a1).into(),
            libc::SYS_utime => link::utime(ptr(a0), a1 as *const libc::utimbuf).into(),
            libc::SYS_utimes => link::utimes(ptr(a0), a1 as *const libc::timeval).into(),
            libc::SYS_futimesat => link::futimesat(int(a0), ptr(a1), a2 as *const libc::timeval).into(),
            libc::SYS_utimensat => link::utimensat(int(a0), ptr(a1), a2 as *const libc::timespec, int(a3)).into(),
            libc::SYS_getxattr => xattr::getxattr(ptr(a0), ptr(a1), a2 as *mut c_void, size(a3)) as c_long,
            libc::SYS_lgetxattr => xattr::lgetxattr(ptr(a0), ptr(a1), a2 as *mut c_void, size(a3)) as c_long,
            libc::SYS_listxattr => xattr::listxattr(ptr(a0), out(a1), size(a2)) as c_long,
            libc::SYS_llistxattr => xattr::llistxattr(ptr(a0), out(a1), size(a2)) as c_long,
            libc::SYS_setxattr => xattr::setxattr(ptr(a0), ptr(a1), a2 as *const c_void, size(a3), int(a4)).into(),
            libc::SYS_lsetxattr => xattr::lsetxattr(ptr(a0), ptr(a1), a2 as *const c_void, size(a3), int(a4)).into(),
            libc::SYS_removexattr => xattr::removexattr(ptr(a0), ptr(a1)).into(),
            libc::SYS_lremovexattr => xattr::lremovexattr(ptr(a0), ptr(a1)).into(),
            // The `*xattrat` calls (Linux 6.13): the family's routing with the call as made.
            SYS_GETXATTRAT | SYS_LISTXATTRAT if !empty_path(a2) => {
                stat::routed(int(a0), ptr(a1), follow(a2), |d, p| sys::raw(nr, d.into(), p as c_long, a2, a3, a4, a5))
                    .into()
            }
            SYS_SETXATTRAT | SYS_REMOVEXATTRAT if !empty_path(a2) => {
                mutate(int(a0), ptr(a1), Op::Modify, follow(a2), |d, p| {
                    sys::raw(nr, d.into(), p as c_long, a2, a3, a4, a5)
                })
                .into()
            }
            libc::SYS_execve => exec::execve(ptr(a0), a1 as _, a2 as _).into(),
            libc::SYS_uname => misc::uname(a0 as *mut libc::utsname).into(),
            _ => return None,
        }
    };
    Some(r)
}

/// openat2(2) through the open hook when `how` asks for nothing openat cannot do: no
/// `resolve` restrictions (RESOLVE_BENEATH, RESOLVE_IN_ROOT, … are the kernel's walk, which
/// the hook does not reproduce), flags and mode that openat2 itself accepts. `None`
/// otherwise: the kernel's answer, unrouted.
///
/// # Safety
/// `how` null or readable for `size` bytes; `path` as for openat.
unsafe fn openat2(dirfd: c_int, path: *const c_char, how: *const OpenHow, size: usize) -> Option<c_long> {
    if how.is_null() || size != core::mem::size_of::<OpenHow>() {
        return None;
    }
    // SAFETY: non-null and readable for `size` bytes, the size of `OpenHow` (caller).
    let how = unsafe { how.read_unaligned() };
    let flags = c_int::try_from(how.flags).ok()?;
    let mode = libc::mode_t::try_from(how.mode).ok().filter(|&m| m & !0o7777 == 0)?;
    // openat2 refuses a mode without O_CREAT or O_TMPFILE (EINVAL), where openat ignores it.
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    if how.resolve != 0 || (mode != 0 && !creates) {
        return None;
    }
    // SAFETY: forwarded.
    Some(unsafe { open::openat(dirfd, path, flags, mode) }.into())
}

/// The getcwd system call (the length written, its NUL included), through the getcwd hook.
/// `None` for a null buffer or a zero size (glibc's getcwd would allocate or answer
/// differently from the kernel).
///
/// # Safety
/// `buf` writable for `size` bytes.
unsafe fn getcwd(buf: *mut c_char, size: usize) -> Option<c_long> {
    if buf.is_null() || size == 0 {
        return None;
    }
    // SAFETY: the caller's buffer of `size` bytes.
    let r = unsafe { misc::getcwd(buf, size) };
    if r.is_null() {
        return Some(-1);
    }
    // SAFETY: getcwd wrote a NUL-terminated string into `buf`.
    let len = unsafe { libc::strlen(buf) };
    Some(c_long::try_from(len + 1).unwrap_or(c_long::MAX))
}

static SYSCALL: Real = Real::new(c"syscall");

/// The body of `syscall(2)`, called by the C trampoline with the number and six arguments.
///
/// # Safety
/// C ABI of syscall(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capsule_syscall_routed(
    nr: c_long,
    a: c_long,
    b: c_long,
    c: c_long,
    d: c_long,
    e: c_long,
    f: c_long,
) -> c_long {
    // SAFETY: the application's system call, as made.
    if let Some(r) = unsafe { hooked(nr, [a, b, c, d, e, f]) } {
        return r;
    }
    let p = SYSCALL.get();
    if p.is_null() {
        // No glibc `syscall` after ours (cannot happen in a glibc program): the same call,
        // in the same convention.
        // SAFETY: the application's system call, as made.
        let r = unsafe { raw_exact(nr, a, b, c, d, e, f) };
        if (-4095..0).contains(&r) {
            return c_long::from(sys::ret(r));
        }
        return r;
    }
    type Syscall = unsafe extern "C" fn(c_long, ...) -> c_long;
    // SAFETY: glibc's `syscall` has this signature.
    let real = unsafe { core::mem::transmute::<*mut c_void, Syscall>(p) };
    // SAFETY: the application's call, passed on unchanged.
    unsafe { real(nr, a, b, c, d, e, f) }
}

unsafe extern "C" {
    fn capsule_syscall();
}

/// syscall(2): a tail jump to the C body (variadic), which calls [`capsule_syscall_routed`].
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn syscall() {
    core::arch::naked_asm!("jmp {}", sym capsule_syscall)
}
