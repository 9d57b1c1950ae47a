//! [`HookGuard`]: one flag per thread that says "inside a capsule hook", so a hook that calls
//! into libc (fopen, opendir, dlopen) and re-enters another hook passes straight through.
//! A signal handler interrupting a hook sees the flag set and also passes through, untranslated:
//! rare, safe, and documented.

use core::cell::Cell;
use core::sync::atomic::Ordering;

use super::READY;
use super::sys::{errno, set_errno};

thread_local! {
    // const-initialised, no Drop: a plain TLS slot, no lazy registration, no allocation.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside a hook (for the debug allocation check).
pub fn in_hook() -> bool {
    IN_HOOK.try_with(Cell::get).unwrap_or(false)
}

/// Proof that this thread is inside a capsule hook; dropping it leaves the hook.
#[must_use]
pub struct HookGuard {
    saved_errno: i32,
}

impl HookGuard {
    /// `None`: pass straight through (not initialised yet, or re-entered from our own call).
    #[inline]
    pub fn enter() -> Option<HookGuard> {
        if !READY.load(Ordering::Acquire) {
            return None;
        }
        let entered = IN_HOOK.try_with(|f| !f.replace(true)).unwrap_or(false);
        entered.then(|| HookGuard { saved_errno: errno() })
    }

    /// Put back the application's errno before a pass-through that may succeed.
    pub fn restore_errno(&self) {
        set_errno(self.saved_errno)
    }
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|f| f.set(false));
    }
}
