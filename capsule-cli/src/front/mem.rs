//! The memory functions the compiler may call on its own (copies, fills, comparisons).
//! glibc's are IFUNCs, resolved only by its start-up, which the front end never runs, so these
//! take their place in this binary (the linker prefers them to libc.a's). `rep movsb`/`stosb`
//! and a byte loop: the front end copies a few KiB in all.
#![allow(unsafe_code)]

use core::arch::asm;

/// SAFETY (callers'): `d` and `s` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    // SAFETY: as the C contract above; `rep movsb` copies forwards with DF clear (the ABI
    // guarantees DF is clear on function entry).
    unsafe {
        asm!("rep movsb", inout("rdi") d => _, inout("rsi") s => _, inout("rcx") n => _, options(nostack, preserves_flags))
    };
    d
}

/// SAFETY (callers'): `d` and `s` are valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8 {
    if (d as usize).wrapping_sub(s as usize) >= n {
        // SAFETY: the destination starts before the source or after its end: a forward copy
        // reads every byte before overwriting it.
        return unsafe { memcpy(d, s, n) };
    }
    // SAFETY: backwards with DF set (restored before returning), from the last byte.
    unsafe {
        asm!("std", "rep movsb", "cld", inout("rdi") d.add(n - 1) => _, inout("rsi") s.add(n - 1) => _,
             inout("rcx") n => _, options(nostack));
    }
    d
}

/// SAFETY (callers'): `d` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: as the C contract above.
    unsafe {
        asm!("rep stosb", inout("rdi") d => _, inout("rcx") n => _, in("al") c as u8, options(nostack, preserves_flags))
    };
    d
}

/// SAFETY (callers'): `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n, within both buffers; volatile keeps the compiler from turning the
        // loop back into a call to this very function.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// SAFETY (callers'): as [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract.
    unsafe { memcmp(a, b, n) }
}
