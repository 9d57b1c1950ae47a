//! The exec family: execve, execv, execvp, execvpe, execveat, posix_spawn, posix_spawnp.
//!
//! What to execute is decided in the capsule's view ([`binfmt`]): a program the capsule holds
//! runs from the tree (by its absolute tree path, not `execveat(tree_fd, rel)`: for a script
//! the kernel would hand the interpreter "/dev/fd/N/rel", which our close-on-exec descriptor
//! makes unreachable), after materialising it; a `#!` script's interpreter and an ELF
//! program's loader are looked up in the capsule before the host. The environment keeps
//! `LD_PRELOAD` and `CAPSULE_VIEW` even when the caller cleared it (`env -i`), as Bear does:
//! the new array lives in an anonymous mapping (a syscall, not the heap), released if the
//! exec fails. No thread-local state is set around
//! the exec, so a vfork parent sharing ours is left as it was.
//! `execl`, `execlp` and `execle` are C-variadic; src/c/trampolines.c collects their arguments
//! and calls `execve`/`execvpe` here.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int, c_long};

use super::{binfmt, real};
use crate::preload::guard::HookGuard;
use crate::preload::sys::{self, ret, set_errno};
use crate::preload::{State, state};
use capsule_core::resolve::path::PathBuffer;

type Env = *const *const c_char;

/// An environment with our variables present; unmaps on drop.
struct FixedEnv {
    ptr: Env,
    map: Option<(*mut libc::c_void, usize)>,
}

impl Drop for FixedEnv {
    fn drop(&mut self) {
        if let Some((p, len)) = self.map {
            // SAFETY: unmapping exactly the anonymous mapping we created.
            unsafe { libc::munmap(p, len) };
        }
    }
}

fn has(envp: Env, var: &CStr) -> bool {
    let prefix = var.to_bytes();
    let name = prefix.split(|&c| c == b'=').next().unwrap_or_default();
    let mut i = 0;
    loop {
        // SAFETY: envp is a NULL-terminated array of C strings (execve's contract).
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            return false;
        }
        // SAFETY: each entry is a NUL-terminated string.
        if sets(unsafe { CStr::from_ptr(p) }.to_bytes(), name) {
            return true;
        }
        i += 1;
    }
}

/// The names of the variables that carry a renamed host and domain name.
const RENAMED: [&[u8]; 2] = [b"CAPSULE_HOSTNAME", b"CAPSULE_DOMAIN"];

/// Whether entry `e` (`NAME=value`) sets variable `name`.
pub(super) fn sets(e: &[u8], name: &[u8]) -> bool {
    e.len() > name.len() && e.starts_with(name) && e.get(name.len()) == Some(&b'=')
}

/// `envp` plus whichever of our variables it lacks, with the capsule's host and domain names
/// as this process renamed them (sethostname), if it did.
fn fix_env(st: &State, envp: Env) -> FixedEnv {
    let renamed = super::misc::renamed();
    let any_renamed = renamed.iter().any(Option::is_some);
    if envp.is_null() || (!any_renamed && st.env.iter().all(|v| has(envp, v))) {
        return FixedEnv { ptr: envp, map: None };
    }
    let mut n = 0;
    // SAFETY: NULL-terminated array (execve's contract); we only count.
    while !unsafe { *envp.add(n) }.is_null() {
        n += 1;
    }
    // Pointers, then room for the two renamed entries ("CAPSULE_HOSTNAME=" + 64 + NUL each).
    let ptrs = (n + st.env.len() + RENAMED.len() + 1) * core::mem::size_of::<*const c_char>();
    let len = ptrs + RENAMED.len() * 96;
    let Some(p) = crate::preload::sys::map_anon(len) else { return FixedEnv { ptr: envp, map: None } };
    let arr = p.cast::<*const c_char>();
    let is_renamed = |e: &[u8]| RENAMED.iter().zip(&renamed).any(|(name, r)| r.is_some() && sets(e, name));
    let mut k = 0;
    // SAFETY: `arr` has room for n + extras + 2 + 1 pointers and the strings live past them,
    // inside the mapping (`ptrs` bytes in); we copy, append, terminate.
    unsafe {
        for i in 0..n {
            let e = *envp.add(i);
            if !is_renamed(CStr::from_ptr(e).to_bytes()) {
                *arr.add(k) = e;
                k += 1;
            }
        }
        for v in st.env {
            if !has(envp, v) && !is_renamed(v.to_bytes()) {
                *arr.add(k) = v.as_ptr();
                k += 1;
            }
        }
        let mut at = p.cast::<u8>().add(ptrs);
        for (name, r) in RENAMED.iter().zip(&renamed) {
            let Some((bytes, blen)) = r else { continue };
            let start = at;
            for &c in name.iter().chain(b"=").chain(bytes.iter().take(*blen)).chain(b"\0") {
                *at = c;
                at = at.add(1);
            }
            *arr.add(k) = start.cast::<c_char>().cast_const();
            k += 1;
        }
        *arr.add(k) = core::ptr::null();
    }
    FixedEnv { ptr: arr.cast_const(), map: Some((p, len)) }
}

/// execve (or, with `dirfd` other than AT_FDCWD or `flags`, execveat) through the capsule:
/// the path, a `#!` interpreter and the ELF loader resolved in the view ([`binfmt`]).
/// Returns only on failure (kernel convention, -errno).
///
/// # Safety
/// execveat's contract for `dirfd`, `path`, `argv`, `envp`, `flags`.
unsafe fn exec_routed(dirfd: c_int, path: *const c_char, argv: Env, envp: Env, flags: c_int) -> c_long {
    let raw_exec = |d: c_int, p: *const c_char, a: Env, e: Env, f: c_int| {
        if d == libc::AT_FDCWD && f == 0 {
            // SAFETY: execve with a path, argv and environment valid for the call.
            unsafe { sys::raw(libc::SYS_execve, p as c_long, a as c_long, e as c_long, 0, 0, 0) }
        } else {
            // SAFETY: as above, relative to the caller's descriptor with the caller's flags.
            unsafe { sys::raw(libc::SYS_execveat, d.into(), p as c_long, a as c_long, e as c_long, f.into(), 0) }
        }
    };
    let Some(guard) = HookGuard::enter() else { return raw_exec(dirfd, path, argv, envp, flags) };
    let (Some(st), false) = (state(), path.is_null()) else { return raw_exec(dirfd, path, argv, envp, flags) };
    // SAFETY: non-null (checked), NUL-terminated (execve's contract).
    let empty = unsafe { *path } == 0;
    if empty && flags & libc::AT_EMPTY_PATH != 0 {
        // fexecve: the descriptor is the program; nothing to resolve.
        drop(guard);
        return raw_exec(dirfd, path, argv, envp, flags);
    }
    let env = fix_env(st, envp);
    let mut scratch = binfmt::Scratch::new();
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    // SAFETY: execve's contract for `path` and `argv`.
    let plan = unsafe { scratch.plan(st, dirfd, path, argv, follow) };
    // Leave the hook before the exec: a vfork parent shares this thread's state (HOUSE-STYLE §3.5).
    drop(guard);
    let r = match plan {
        binfmt::Plan::Exec { path: p, argv: a, original: true } => raw_exec(dirfd, p, a, env.ptr, flags),
        // A resolved path is absolute, or the caller's own relative to the working directory.
        binfmt::Plan::Exec { path: p, argv: a, original: false } => raw_exec(libc::AT_FDCWD, p, a, env.ptr, 0),
        binfmt::Plan::Deny(e) => -c_long::from(e),
    };
    drop((env, scratch));
    r
}

/// execve(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Env, envp: Env) -> c_int {
    // SAFETY: forwarded.
    ret(unsafe { exec_routed(libc::AT_FDCWD, path, argv, envp, 0) })
}

/// execveat(2) (glibc ≥ 2.34).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(dirfd: c_int, path: *const c_char, argv: Env, envp: Env, flags: c_int) -> c_int {
    // SAFETY: forwarded.
    ret(unsafe { exec_routed(dirfd, path, argv, envp, flags) })
}

/// execv(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Env) -> c_int {
    // SAFETY: `environ` is the process environment, a valid NULL-terminated array.
    ret(unsafe { exec_routed(libc::AT_FDCWD, path, argv, environ.cast_const(), 0) })
}

unsafe extern "C" {
    static environ: *mut *const c_char;
}

/// Search `PATH` for `file` as execvp does, calling `attempt` with each candidate until one
/// does not fail with ENOENT, ENOTDIR or EACCES. Returns the last failure.
///
/// # Safety
/// `file` NUL-terminated.
unsafe fn search_path(file: *const c_char, mut attempt: impl FnMut(*const c_char) -> c_long) -> c_long {
    // SAFETY: caller guarantees a C string.
    let name = unsafe { CStr::from_ptr(file) }.to_bytes();
    if name.is_empty() {
        return -c_long::from(libc::ENOENT);
    }
    if name.contains(&b'/') {
        return attempt(file);
    }
    // SAFETY: getenv reads the environment; the result is used before any setenv can run here.
    let path_var = unsafe { libc::getenv(c"PATH".as_ptr()) };
    let dirs: &[u8] = if path_var.is_null() {
        b"/bin:/usr/bin"
    } else {
        // SAFETY: non-null NUL-terminated.
        unsafe { CStr::from_ptr(path_var) }.to_bytes()
    };
    let mut last = -c_long::from(libc::ENOENT);
    let mut saw_eacces = false;
    for dir in dirs.split(|&c| c == b':') {
        let mut cand = PathBuffer::new();
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        if cand.push(dir).and_then(|()| cand.push(b"/")).and_then(|()| cand.push(name)).is_err() {
            continue;
        }
        let r = attempt(cand.as_cstr().as_ptr());
        match i32::try_from(-r).unwrap_or(0) {
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            libc::EACCES => saw_eacces = true,
            _ => return r,
        }
        last = r;
    }
    if saw_eacces { -c_long::from(libc::EACCES) } else { last }
}

/// execvpe(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Env, envp: Env) -> c_int {
    if file.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: forwarded; each candidate is a NUL-terminated path.
    ret(unsafe { search_path(file, |p| exec_routed(libc::AT_FDCWD, p, argv, envp, 0)) })
}

/// execvp(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Env) -> c_int {
    // SAFETY: `environ` is the process environment.
    unsafe { execvpe(file, argv, environ.cast_const()) }
}

unsafe extern "C" {
    fn capsule_execl();
    fn capsule_execlp();
    fn capsule_execle();
}

/// execl(3): a tail jump to the C body (variadic), which calls [`execve`].
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn execl() {
    core::arch::naked_asm!("jmp {}", sym capsule_execl)
}

/// execlp(3): a tail jump to the C body, which calls [`execvpe`].
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn execlp() {
    core::arch::naked_asm!("jmp {}", sym capsule_execlp)
}

/// execle(3): a tail jump to the C body, which calls [`execve`].
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn execle() {
    core::arch::naked_asm!("jmp {}", sym capsule_execle)
}

type Spawn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const c_char,
    *const libc::posix_spawn_file_actions_t,
    *const libc::posix_spawnattr_t,
    *const *mut c_char,
    *const *mut c_char,
) -> c_int;

/// posix_spawn of one candidate path, routed as an exec is ([`binfmt`]): a capsule program is
/// spawned by its absolute tree path (materialised first), a script whose interpreter the
/// capsule has through that interpreter. Returns 0 or an errno (posix_spawn's convention).
///
/// # Safety
/// posix_spawn's contract.
unsafe fn spawn_one(
    real_fn: Spawn,
    pid: *mut libc::pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    at: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let call = |p: *const c_char, a: Env, e: Env| {
        // SAFETY: the caller's arguments with a routed path, an argv and an environment valid
        // for the call.
        unsafe { real_fn(pid, p, fa, at, a.cast(), e.cast()) }
    };
    let Some(guard) = HookGuard::enter() else { return call(path, argv.cast(), envp.cast()) };
    let (Some(st), false) = (state(), path.is_null()) else { return call(path, argv.cast(), envp.cast()) };
    let env = fix_env(st, envp.cast());
    let mut scratch = binfmt::Scratch::new();
    // SAFETY: NUL-terminated path and NULL-terminated argv (posix_spawn's contract).
    match unsafe { scratch.plan(st, libc::AT_FDCWD, path, argv.cast(), true) } {
        binfmt::Plan::Exec { path: p, argv: a, .. } => {
            // The child execs without our hooks (glibc calls its internal execve): whatever
            // it needs is in place now.
            drop(guard);
            call(p, a, env.ptr)
        }
        binfmt::Plan::Deny(e) => e,
    }
}

/// posix_spawn(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    at: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(real_fn) = real::posix_spawn() else { return libc::ENOSYS };
    // SAFETY: forwarded.
    unsafe { spawn_one(real_fn, pid, path, fa, at, argv, envp) }
}

/// posix_spawnp(3): PATH search with each candidate routed.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    at: *const libc::posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    let Some(real_fn) = real::posix_spawn() else { return libc::ENOSYS };
    if file.is_null() {
        return libc::EFAULT;
    }
    // SAFETY: forwarded; candidates are NUL-terminated.
    let r = unsafe { search_path(file, |p| -c_long::from(spawn_one(real_fn, pid, p, fa, at, argv, envp))) };
    i32::try_from(-r).unwrap_or(libc::EIO)
}
