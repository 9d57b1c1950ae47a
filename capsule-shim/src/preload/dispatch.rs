//! Tier 2's glibc-internal opens answered in-process: Syscall User Dispatch windows.
//!
//! glibc opens files inside some of its functions without going through a symbol we can
//! interpose (`setlocale` reads the locale archive, `localtime` the zone file, NSS
//! `/etc/passwd`, `dlopen`'s loader the library): under tier 2 each of those calls is a round
//! trip to the supervisor. Around the libc entry points that do this ([`window`], used by
//! `hooks::internal` and the dlopen hook) this thread's Syscall User Dispatch selector is
//! set to BLOCK: every system call made outside the shim's own text then raises SIGSYS
//! instead, and [`on_sigsys`] performs it from the shim's text — a path call through the same
//! hook as the application's own, anything else re-issued unchanged (so a call the filter
//! traps, a mkdir say, still goes to the supervisor). Outside windows nothing changes.
//!
//! What must hold, and how:
//! - A window is opened only under tier 2 (the run has a cookie), with our SIGSYS handler
//!   installed, and SIGSYS not blocked on the thread: SIGSYS raised while blocked kills the
//!   process. Handlers the program installs with `sigaction` get SIGSYS taken out of their
//!   mask (hooks::internal), since one may run inside a window; a program that installs its
//!   own SIGSYS handler turns windows off for good.
//! - The handler sets the selector to ALLOW while it runs (anything it calls, or a signal
//!   handler that interrupts it, runs normally) and back to BLOCK when it returns; it returns
//!   through our own `rt_sigreturn`, in the shim's text, since glibc's restorer would trap.
//! - Calls whose re-issue from inside a signal handler would go wrong (rt_sigreturn of a
//!   program's handler that ran inside the window, rt_sigprocmask, which the handler's return
//!   would undo, clone, fork, vfork and exec) are not performed: the selector stays ALLOW
//!   for the rest of the window and the call is restarted where it was made, as outside a
//!   window (the supervisor sees what it traps).
//! - Dispatch is per thread and not inherited by children, so each window turns it on for
//!   its thread (one `prctl`); with the selector at ALLOW it costs nothing.

use core::cell::Cell;
use core::ffi::{c_int, c_long, c_void};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering, compiler_fence};

use super::hooks::syscall;
use super::sys::{self, raw, raw_exact};

const PR_SET_SYSCALL_USER_DISPATCH: c_long = 59;
const PR_SYS_DISPATCH_ON: c_long = 1;
const ALLOW: u8 = 0;
const BLOCK: u8 = 1;
/// `si_code` of a dispatched call.
const SYS_USER_DISPATCH: c_int = 2;
/// The kernel's flag for a caller-supplied signal return (not in libc's constants).
const SA_RESTORER: u64 = 0x0400_0000;

thread_local! {
    // const-initialised, no Drop: a plain TLS slot, at a fixed address for the thread's life.
    static SELECTOR: Cell<u8> = const { Cell::new(ALLOW) };
}

/// 0: not tried yet; 1: our SIGSYS handler is installed; 2: no windows (no dispatch in this
/// kernel, no text region, or the program handles SIGSYS itself).
static HANDLER: AtomicU8 = AtomicU8::new(0);
static TEXT_START: AtomicUsize = AtomicUsize::new(0);
static TEXT_LEN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    /// The linker's name for this module's ELF header (mapped: our first PT_LOAD starts at
    /// file offset 0).
    static __ehdr_start: u8;
    /// Our signal return (below): `rt_sigreturn` from the shim's text.
    fn capsule_sigreturn();
}

core::arch::global_asm!(
    ".pushsection .text.capsule_sigreturn,\"ax\",@progbits",
    ".globl capsule_sigreturn",
    ".hidden capsule_sigreturn",
    ".type capsule_sigreturn,@function",
    "capsule_sigreturn:",
    "mov eax, 15", // SYS_rt_sigreturn
    "syscall",
    "ud2",
    ".size capsule_sigreturn, .-capsule_sigreturn",
    ".popsection",
);

/// Run `f` (a call into libc) in a window, if one can be opened on this thread.
///
/// The window ends with `f`, always at ALLOW: a window nested in another (a library
/// constructor run by dlopen calling setlocale) ends the outer one early, whose rest then goes
/// to the supervisor; and a thread whose signal handler jumped out of a window (siglongjmp
/// out of getaddrinfo on a timeout) is back to normal at the end of its next one.
#[inline]
pub fn window<R>(f: impl FnOnce() -> R) -> R {
    let Some(sel) = open_window() else { return f() };
    // SAFETY: `sel` is this thread's selector slot, valid for the thread's life.
    unsafe { (*sel).set(BLOCK) };
    compiler_fence(Ordering::SeqCst);
    let r = f();
    compiler_fence(Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { (*sel).set(ALLOW) };
    r
}

/// The program installed its own SIGSYS handler: no more windows.
pub fn give_up() {
    HANDLER.store(2, Ordering::Release);
}

fn selector() -> *const Cell<u8> {
    SELECTOR.with(|c| c as *const Cell<u8>)
}

/// Check the conditions (module docs) and turn dispatch on for this thread; its selector.
fn open_window() -> Option<*const Cell<u8>> {
    if sys::cookie() == 0 || super::state().is_none() || !handler_installed() {
        return None;
    }
    let mut mask: u64 = 0;
    // SAFETY: rt_sigprocmask with no new set writes the thread's mask (8 bytes) to `mask`.
    let r = unsafe { raw(libc::SYS_rt_sigprocmask, 0, 0, (&raw mut mask) as c_long, 8, 0, 0) };
    if r != 0 || mask & (1 << (libc::SIGSYS - 1)) != 0 {
        return None;
    }
    let sel = selector();
    let (start, len) = (TEXT_START.load(Ordering::Relaxed), TEXT_LEN.load(Ordering::Relaxed));
    // SAFETY: the kernel records the region and the selector's address (this thread's slot,
    // alive as long as the thread, which is as long as the setting lasts).
    let on = unsafe {
        raw(
            libc::SYS_prctl,
            PR_SET_SYSCALL_USER_DISPATCH,
            PR_SYS_DISPATCH_ON,
            start as c_long,
            len as c_long,
            sel as c_long,
            0,
        )
    };
    if on != 0 {
        give_up();
        return None;
    }
    Some(sel)
}

/// Install [`on_sigsys`] once per process (handlers survive fork, not exec).
fn handler_installed() -> bool {
    match HANDLER.load(Ordering::Acquire) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let Some((start, len)) = text() else {
        give_up();
        return false;
    };
    TEXT_START.store(start, Ordering::Relaxed);
    TEXT_LEN.store(len, Ordering::Relaxed);
    /// The kernel's `struct sigaction` on x86-64.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    #[allow(clippy::cast_sign_loss)] // flag bits
    let act = KernelSigaction {
        handler: on_sigsys as *const () as usize,
        flags: libc::SA_SIGINFO as u64 | SA_RESTORER,
        restorer: capsule_sigreturn as *const () as usize,
        mask: !0, // every signal: see on_sigsys
    };
    // SAFETY: the kernel reads one `KernelSigaction` (8-byte mask) from our stack.
    let r = unsafe { raw(libc::SYS_rt_sigaction, libc::SIGSYS.into(), (&raw const act) as c_long, 0, 8, 0, 0) };
    if r != 0 {
        give_up();
        return false;
    }
    // A racing give_up (the program's sigaction) wins.
    let _ = HANDLER.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    HANDLER.load(Ordering::Acquire) == 1
}

/// Our executable segment: (start, length), from our own program headers.
fn text() -> Option<(usize, usize)> {
    let base = (&raw const __ehdr_start) as usize;
    // SAFETY: the ELF header and the program headers it points to are mapped for the life of
    // the process (both in the first PT_LOAD); unaligned reads of plain integers.
    unsafe {
        let at = |off: usize| base + off;
        let phoff = usize::try_from(((at(32)) as *const u64).read_unaligned()).ok()?;
        let phentsize = usize::from(((at(54)) as *const u16).read_unaligned());
        let phnum = usize::from(((at(56)) as *const u16).read_unaligned());
        for i in 0..phnum {
            let ph = at(phoff + i * phentsize);
            let p_type = (ph as *const u32).read_unaligned();
            let p_flags = ((ph + 4) as *const u32).read_unaligned();
            if p_type == 1 && p_flags & 1 != 0 {
                // PT_LOAD, PF_X
                let vaddr = usize::try_from(((ph + 16) as *const u64).read_unaligned()).ok()?;
                let memsz = usize::try_from(((ph + 40) as *const u64).read_unaligned()).ok()?;
                return Some((base + vaddr, memsz));
            }
        }
    }
    None
}

/// The SIGSYS handler: perform the dispatched call from our text (module docs).
extern "C" fn on_sigsys(_sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let sel = selector();
    // SAFETY: this thread's slot.
    unsafe { (*sel).set(ALLOW) };
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
    let (code, uc) = unsafe { ((*info).si_code, &mut *ctx.cast::<libc::ucontext_t>()) };
    if code != SYS_USER_DISPATCH {
        return; // a SIGSYS sent to us: nothing to perform; the window stays closed
    }
    let g = &mut uc.uc_mcontext.gregs;
    let reg = |r: c_int| usize::try_from(r).ok().and_then(|i| g.get(i).copied()).unwrap_or(0);
    let nr = reg(libc::REG_RAX);
    let a = [
        reg(libc::REG_RDI),
        reg(libc::REG_RSI),
        reg(libc::REG_RDX),
        reg(libc::REG_R10),
        reg(libc::REG_R8),
        reg(libc::REG_R9),
    ];
    let saved = sys::errno();
    // Our handler runs with every signal blocked: a handler of the program's that ran on top
    // of ours (before it set ALLOW, or after it set BLOCK again) would run with SIGSYS
    // blocked inside the window. A call that may wait runs with the program's own mask, so
    // that signals interrupt it as they would have (their handlers then run with ALLOW).
    let waits = may_wait(nr);
    let thread_mask = (&raw const uc.uc_sigmask) as c_long;
    if waits {
        // SAFETY: rt_sigprocmask reads 8 bytes of the interrupted context's mask.
        let _ = unsafe { raw(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK.into(), thread_mask, 0, 8, 0, 0) };
    }
    let result = perform(nr, a);
    if waits {
        let all: u64 = !0;
        // SAFETY: rt_sigprocmask reads an 8-byte mask on our stack.
        let _ =
            unsafe { raw(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK.into(), (&raw const all) as c_long, 0, 8, 0, 0) };
    }
    sys::set_errno(saved);
    match result {
        Some(r) => {
            if let Some(rax) = usize::try_from(libc::REG_RAX).ok().and_then(|i| g.get_mut(i)) {
                *rax = r;
            }
            // SAFETY: this thread's slot; the window goes on.
            unsafe { (*sel).set(BLOCK) };
        }
        None => {
            // Restart the call where it was made (`syscall` is two bytes), outside the window.
            if let Some(rip) = usize::try_from(libc::REG_RIP).ok().and_then(|i| g.get_mut(i)) {
                *rip -= 2;
            }
        }
    }
}

/// Calls that may wait for a long time (for another process, the network, a lock).
fn may_wait(nr: i64) -> bool {
    matches!(
        nr,
        libc::SYS_read
            | libc::SYS_readv
            | libc::SYS_pread64
            | libc::SYS_write
            | libc::SYS_writev
            | libc::SYS_recvfrom
            | libc::SYS_recvmsg
            | libc::SYS_sendto
            | libc::SYS_sendmsg
            | libc::SYS_connect
            | libc::SYS_accept
            | libc::SYS_accept4
            | libc::SYS_poll
            | libc::SYS_ppoll
            | libc::SYS_select
            | libc::SYS_pselect6
            | libc::SYS_epoll_wait
            | libc::SYS_epoll_pwait
            | libc::SYS_futex
            | libc::SYS_nanosleep
            | libc::SYS_clock_nanosleep
            | libc::SYS_wait4
            | libc::SYS_waitid
            | libc::SYS_flock
            | libc::SYS_fcntl
            | libc::SYS_ioctl
    )
}

/// Perform system call `nr` with arguments `a`: the kernel's result, or `None` to restart it
/// outside the window. The lookups glibc's internal functions make (opens, stats, access,
/// readlink) and `uname` go through their hooks, by `hooks::syscall`'s table (the one glibc's
/// `syscall()` uses too); anything else is re-issued unchanged, so a trapped mutation still
/// reaches the supervisor, and the calls that are neither (reads, closes) cost no table walk.
fn perform(nr: i64, a: [i64; 6]) -> Option<i64> {
    match nr {
        libc::SYS_rt_sigreturn
        | libc::SYS_rt_sigprocmask
        | libc::SYS_clone
        | libc::SYS_clone3
        | libc::SYS_fork
        | libc::SYS_vfork
        | libc::SYS_execve
        | libc::SYS_execveat => return None,
        libc::SYS_open
        | libc::SYS_openat
        | libc::SYS_stat
        | libc::SYS_lstat
        | libc::SYS_newfstatat
        | libc::SYS_statx
        | libc::SYS_access
        | libc::SYS_faccessat
        | libc::SYS_faccessat2
        | libc::SYS_readlink
        | libc::SYS_readlinkat
        | libc::SYS_uname => {
            // SAFETY: the arguments are those of the call glibc made, passed on to the same
            // call through our hook; their validity is glibc's contract.
            if let Some(r) = unsafe { syscall::hooked(nr, a) } {
                return Some(if r == -1 { -i64::from(sys::errno()) } else { r });
            }
        }
        _ => {}
    }
    // SAFETY: the call glibc made, re-issued unchanged from our text.
    Some(unsafe { raw_exact(nr, a[0], a[1], a[2], a[3], a[4], a[5]) })
}
