//! The exec family: execve, execv, execvp, execvpe, posix_spawn, posix_spawnp.
//!
//! A program the capsule holds is executed from the tree (by its absolute tree path), after
//! materialising it. The environment keeps `LD_PRELOAD` and `CAPSULE_VIEW` even when the
//! caller cleared it (`env -i`), as Bear does: the new array lives in an anonymous mapping
//! (a syscall, not the heap), released if the exec fails. No thread-local state is set around
//! the exec, so a vfork parent sharing ours is left as it was.
//! `execl`, `execlp` and `execle` are C-variadic; src/c/trampolines.c collects their arguments
//! and calls `execve`/`execvpe` here.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int, c_long};

use super::{Route, in_tree, real, route};
use crate::preload::guard::HookGuard;
use crate::preload::sys::{self, ret, set_errno};
use crate::preload::{State, state};
use capsule_core::resolve::Intent;
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
    // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return FixedEnv { ptr: envp, map: None };
    }
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

/// execve through the capsule; returns only on failure (kernel convention, -errno).
///
/// # Safety
/// execve's contract for `path`, `argv`, `envp`.
unsafe fn exec_routed(path: *const c_char, argv: Env, envp: Env) -> c_long {
    let raw_execve = |p: *const c_char, e: Env| {
        // SAFETY: execve with the caller's argv and a valid environment array.
        unsafe { sys::raw(libc::SYS_execve, p as c_long, argv as c_long, e as c_long, 0, 0, 0) }
    };
    let Some(guard) = HookGuard::enter() else { return raw_execve(path, envp) };
    let (Some(st), false) = (state(), path.is_null()) else { return raw_execve(path, envp) };
    let env = fix_env(st, envp);
    let mut buf = PathBuffer::new();
    // SAFETY: non-null, NUL-terminated.
    let route = unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) };
    // Leave the hook before the exec: a vfork parent shares this thread's state (HOUSE-STYLE §3.5).
    drop(guard);
    let r = match route {
        Route::Original => raw_execve(path, env.ptr),
        Route::TreeThenHost(rel, abs) => {
            let mut t = PathBuffer::new();
            raw_execve(tree_or_host(st, rel, abs, &mut t), env.ptr)
        }
        Route::Host(p) => raw_execve(p.as_ptr(), env.ptr),
        Route::Tree(rel, entry) => {
            // By absolute path, not execveat(tree_fd, rel): for a script the kernel would hand
            // the interpreter "/dev/fd/N/rel", which our close-on-exec descriptor makes
            // unreachable (ENOENT).
            let mut abs = PathBuffer::new();
            if abs.push(st.tree).and_then(|()| abs.push(b"/")).and_then(|()| abs.push(rel.to_bytes())).is_err() {
                return -c_long::from(libc::ENAMETOOLONG);
            }
            in_tree(entry, rel, || raw_execve(abs.as_cstr().as_ptr(), env.ptr))
        }
        Route::Deny(e) => -c_long::from(e),
    };
    drop(env);
    r
}

/// execve(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Env, envp: Env) -> c_int {
    // SAFETY: forwarded.
    ret(unsafe { exec_routed(path, argv, envp) })
}

/// execv(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Env) -> c_int {
    // SAFETY: `environ` is the process environment, a valid NULL-terminated array.
    ret(unsafe { exec_routed(path, argv, environ.cast_const()) })
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
    ret(unsafe { search_path(file, |p| exec_routed(p, argv, envp)) })
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

/// posix_spawn of one candidate path, routed: a capsule program is spawned by its absolute
/// tree path (materialised first). Returns 0 or an errno (posix_spawn's convention).
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
    let call = |p: *const c_char, e: Env| {
        // SAFETY: the caller's arguments with a routed path and a valid environment.
        unsafe { real_fn(pid, p, fa, at, argv, e.cast()) }
    };
    let Some(_guard) = HookGuard::enter() else { return call(path, envp.cast()) };
    let Some(st) = state() else { return call(path, envp.cast()) };
    let env = fix_env(st, envp.cast());
    let mut buf = PathBuffer::new();
    let mut abs = PathBuffer::new();
    // SAFETY: NUL-terminated (posix_spawn's contract).
    let target = match unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) } {
        Route::Original => path,
        Route::TreeThenHost(rel, host) => tree_or_host(st, rel, host, &mut abs),
        Route::Host(p) => p.as_ptr(),
        Route::Tree(rel, entry) => {
            // SAFETY: NUL-terminated relative path.
            let r = in_tree(entry, rel, || unsafe { sys::faccessat(st.tree_fd, rel.as_ptr(), libc::X_OK, 0) });
            if r < 0 {
                return i32::try_from(-r).unwrap_or(libc::EIO);
            }
            if abs.push(st.tree).and_then(|()| abs.push(b"/")).and_then(|()| abs.push(rel.to_bytes())).is_err() {
                return libc::ENAMETOOLONG;
            }
            abs.as_cstr().as_ptr()
        }
        Route::Deny(e) => return e,
    };
    call(target, env.ptr)
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

/// Write-copy: the tree's copy of a program when there is one (a file the application wrote,
/// such as dpkg's maintainer scripts), else the host's. The tree path is built in `out`.
fn tree_or_host(st: &crate::preload::State, rel: &CStr, host: &CStr, out: &mut PathBuffer) -> *const c_char {
    // SAFETY: NUL-terminated relative path; F_OK only.
    let in_tree = unsafe { sys::faccessat(st.tree_fd, rel.as_ptr(), libc::F_OK, 0) } == 0;
    if in_tree && out.push(st.tree).and_then(|()| out.push(b"/")).and_then(|()| out.push(rel.to_bytes())).is_ok() {
        return out.as_cstr().as_ptr();
    }
    host.as_ptr()
}
