//! `capsule`: the front end. It starts without glibc's start-up (its own `_start`, raw
//! system calls), and either starts a run from its launch plan (capsule_core::plan) or
//! executes the full command, `capsule-cli`, with the same arguments.
//!
//! Why: every glibc process here pays ~70 `cpuid` instructions in its start-up, each a trap to
//! the hypervisor on a VM (~10 µs), and `capsule run` is two processes; this one costs 0.2 ms
//! where a glibc one costs 1 ms. With a valid plan the program starts at once: the front end
//! binds the materialiser's socket, forks the program, and becomes `capsule-cli run-attached`,
//! which serves the socket and waits for the program as `capsule run` always does (same
//! exit status, same signal forwarding). A plan is valid while every input it lists is as it
//! was (one `stat` each); anything unexpected — another verb, an option, a changed input, a
//! failed call — goes to the full command, which prepares and writes a new plan.
//!
//! No allocation, no libc, no panics on purpose (fixed buffers: a run that does not fit them
//! goes to the full command).
#![no_main]
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// System call arguments and results are machine words, converted where they are passed.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]

mod launch;
mod mem;
mod sys;

// The kernel starts us with the stack pointer at argc. Keep it, align, and call in.
core::arch::global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call capsule_front",
    "ud2"
);

/// Most arguments and environment variables handled without the full command.
const MAX_ARGS: usize = 512;

/// The process's arguments and environment, as the kernel laid them out.
pub struct Proc<'a> {
    /// argv, without the NULs.
    pub argv: &'a [&'a [u8]],
    /// argv as the kernel gave it (NUL-terminated strings).
    pub argv_raw: *const *const u8,
    /// envp.
    pub envp: *const *const u8,
}

impl Proc<'_> {
    /// `$name`, if set.
    pub fn env(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut p = self.envp;
        loop {
            // SAFETY: envp is the kernel's NULL-terminated array; `p` stops at the NULL.
            let s = unsafe { *p };
            if s.is_null() {
                return None;
            }
            // SAFETY: each entry is a NUL-terminated string that lives as long as the process.
            let e = unsafe { cstr(s) };
            if let Some(v) = e.strip_prefix(name).and_then(|r| r.strip_prefix(b"=")) {
                return Some(v);
            }
            // SAFETY: not yet at the NULL, so the next slot exists.
            p = unsafe { p.add(1) };
        }
    }
}

/// The bytes of a NUL-terminated string, without the NUL.
///
/// # Safety
/// `s` points to a NUL-terminated string that lives for the rest of the process.
pub unsafe fn cstr(s: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated, so every byte up to the NUL is readable. (Read
    // volatile: a plain loop becomes a call to glibc's strlen, which is not resolved here.)
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    // SAFETY: the n bytes before the NUL, alive for the process.
    unsafe { core::slice::from_raw_parts(s, n) }
}

/// Entry, from `_start`.
///
/// # Safety
/// `sp` is the initial stack pointer: argc, argv[argc] and NULL, envp and NULL.
#[unsafe(no_mangle)]
unsafe extern "C" fn capsule_front(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack layout.
    let argc = unsafe { *sp };
    // SAFETY: argv starts right after argc.
    let argv_raw = unsafe { sp.add(1) }.cast::<*const u8>();
    // SAFETY: argv has argc entries and a NULL; envp follows.
    let envp = unsafe { argv_raw.add(argc + 1) };
    let mut args: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
    let n = argc.min(MAX_ARGS);
    for (i, slot) in args.iter_mut().enumerate().take(n) {
        // SAFETY: i < argc: a NUL-terminated string alive for the process.
        *slot = unsafe { cstr(*argv_raw.add(i)) };
    }
    let p = Proc { argv: args.get(..n).unwrap_or_default(), argv_raw, envp };
    if argc <= MAX_ARGS {
        launch::from_plan(&p);
    }
    full(&p)
}

/// Execute `capsule-cli`, next to this executable, with our arguments and environment.
fn full(p: &Proc<'_>) -> ! {
    let mut path = [0u8; 4096];
    let n = sys::sys3(sys::READLINK, c"/proc/self/exe".as_ptr() as usize, path.as_mut_ptr() as usize, path.len() - 16);
    let Some(len) = usize::try_from(n).ok().filter(|&l| l > 0) else {
        sys::eprint(b"capsule: error: cannot find the capsule executable (/proc/self/exe)\n");
        sys::exit(125)
    };
    let dir = path.get(..len).and_then(|p| p.iter().rposition(|&c| c == b'/')).unwrap_or(0);
    let tail = b"/capsule-cli\0";
    if let Some(dst) = path.get_mut(dir..dir + tail.len()) {
        dst.copy_from_slice(tail);
    }
    sys::sys3(sys::EXECVE, path.as_ptr() as usize, p.argv_raw as usize, p.envp as usize);
    sys::eprint(b"capsule: error: cannot execute capsule-cli next to the capsule executable\n");
    sys::exit(125)
}
