//! [`HookGuard`]: entry to a hook, and one flag per thread that says "inside a call into libc
//! made by a hook" ([`call_out`]), so that if that libc code calls a hooked function (through
//! another interposer, say) the inner call passes straight through instead of recursing.
//!
//! The flag covers only those call-outs (the real opendir, realpath, dlsym), not whole hooks:
//! everything else a hook does is raw syscalls on stack buffers over immutable state, which is
//! reentrant, so a signal handler that interrupts a hook and opens a file is routed like any
//! other call. Only a handler interrupting one of the call-outs passes through untranslated.

use core::cell::Cell;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::ready;
use super::sys::{errno, set_errno};

thread_local! {
    // const-initialised, no Drop: a plain TLS slot, no lazy registration, no allocation.
    static IN_CALL_OUT: Cell<bool> = const { Cell::new(false) };
    // Debug builds only: hooks entered and not yet left on this thread, for the allocation
    // check (alloc_check.rs). Exec hooks drop their guard before the exec, so a vfork parent
    // sharing this slot is not left counted.
    static HOOK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Call-outs in progress in the whole process. Zero (almost always): no thread can be inside
/// one, and a hook skips the thread-local check, which in a shared library costs a
/// `__tls_get_addr` call on every hooked call.
static CALL_OUTS: AtomicUsize = AtomicUsize::new(0);

/// Whether this thread is inside one of our call-outs.
#[inline]
fn in_call_out() -> bool {
    CALL_OUTS.load(Ordering::Relaxed) != 0 && this_thread_in_call_out()
}

/// The thread-local half, out of line so that the compiler cannot hoist the TLS address
/// computation (a `__tls_get_addr` call) above the cheap check.
#[cold]
#[inline(never)]
fn this_thread_in_call_out() -> bool {
    IN_CALL_OUT.try_with(Cell::get).unwrap_or(true)
}

/// Whether this thread is inside a hook (for the debug allocation check).
pub fn in_hook() -> bool {
    HOOK_DEPTH.try_with(Cell::get).unwrap_or(0) > 0
}

/// Proof that this call is handled by the shim (initialised, and not made from inside one of
/// our own calls into libc); it keeps the application's errno.
#[must_use]
pub struct HookGuard {
    saved_errno: i32,
}

impl HookGuard {
    /// `None`: pass straight through (no view, or re-entered from one of our call-outs).
    /// Initialises the shim if a library constructor calls in before ours ran.
    #[inline]
    pub fn enter() -> Option<HookGuard> {
        if in_call_out() || !ready() {
            return None;
        }
        if cfg!(debug_assertions) {
            let _ = HOOK_DEPTH.try_with(|d| d.set(d.get().saturating_add(1)));
        }
        Some(HookGuard { saved_errno: errno() })
    }

    /// Put back the application's errno before a pass-through that may succeed.
    pub fn restore_errno(&self) {
        set_errno(self.saved_errno)
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            let _ = HOOK_DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
}

/// Run `f`, a call into libc that might call hooked functions, with this thread's hooks
/// passing through until it returns.
pub fn call_out<R>(f: impl FnOnce() -> R) -> R {
    // Counted before the flag is set, uncounted after it is cleared: a thread whose flag is
    // set always sees a non-zero count (its own).
    CALL_OUTS.fetch_add(1, Ordering::SeqCst);
    let prev = IN_CALL_OUT.try_with(|c| c.replace(true)).unwrap_or(true);
    let r = f();
    let _ = IN_CALL_OUT.try_with(|c| c.set(prev));
    CALL_OUTS.fetch_sub(1, Ordering::SeqCst);
    r
}
