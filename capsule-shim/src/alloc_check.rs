//! Debug builds only: a global allocator that aborts, with a fixed message, when the calling
//! thread is inside a hook. Hooks must not allocate (they run in signal handlers, in vfork
//! children and after fork in threaded programs); this turns any slip into a crash that every
//! end-to-end test would see, rather than a rare deadlock in production.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::preload::guard::in_hook;

/// Delegates to [`System`], refusing inside hooks.
pub struct Checked;

fn refuse() -> ! {
    const MSG: &[u8] = b"capsule-shim: a hook allocated memory; aborting (debug allocation check)\n";
    // SAFETY: writing a static buffer to stderr, then aborting: both async-signal-safe.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::abort()
    }
}

// SAFETY: every method forwards to System with the same arguments, or aborts.
unsafe impl GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_hook() {
            refuse();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_hook() {
            refuse();
        }
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if in_hook() {
            refuse();
        }
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_hook() {
            refuse();
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Checked = Checked;

#[cfg(test)]
mod tests {
    use core::sync::atomic::Ordering;

    use crate::preload::READY;
    use crate::preload::guard::HookGuard;

    /// In a forked child: allocating inside a hook aborts; outside, it does not.
    #[test]
    fn allocation_inside_a_hook_aborts() {
        // SAFETY: the child only touches its own memory and exits or aborts; it never returns
        // into the test harness.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            READY.store(true, Ordering::Release);
            let g = HookGuard::enter();
            let v = std::hint::black_box(vec![1u8; 64]);
            drop((g, v));
            // SAFETY: leaving the child without running the harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT, "status {status:#x}");
    }
}
