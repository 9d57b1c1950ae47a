//! Paths that come back out, and the rest: readlink, readlinkat, realpath, getcwd,
//! get_current_dir_name, chdir, dlopen, and close/close_range/closefrom (which must
//! not close the tree descriptor).
//!
//! Results that name a place in the tree (`/proc/self/exe` of a program run from the
//! capsule, the cwd after a chdir into a capsule directory) are translated back to the path
//! the application knows, so programs that find their data from their own path keep working.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int, c_long, c_uint, c_void};

use super::{Route, in_tree, real, route};
use crate::preload::guard::{HookGuard, call_out};
use crate::preload::sys::{self, ret, set_errno};
use crate::preload::{State, state};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

/// If `buf[..len]` starts with the tree path, remove it in place; the new length.
fn untree_in_place(st: &State, buf: *mut u8, len: usize, nul: bool) -> usize {
    let t = st.tree;
    if len < t.len() || buf.is_null() {
        return len;
    }
    // SAFETY: `buf` holds at least `len` initialised bytes (the callee just wrote them).
    let s = unsafe { core::slice::from_raw_parts_mut(buf, len + usize::from(nul)) };
    let (Some(head), next) = (s.get(..t.len()), s.get(t.len()).copied()) else { return len };
    if head != t || !(next == Some(b'/') || (len == t.len())) {
        return len;
    }
    if len == t.len() {
        if let Some(first) = s.first_mut() {
            *first = b'/';
        }
        if nul && let Some(z) = s.get_mut(1) {
            *z = 0;
        }
        return 1;
    }
    s.copy_within(t.len().., 0);
    len - t.len()
}

/// readlinkat(2): capsule symlinks are read from the tree; any answer naming the tree is
/// translated back.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, len: usize) -> isize {
    let call = |d: c_int, p: *const c_char| {
        // SAFETY: the caller's buffer and a NUL-terminated path.
        unsafe { sys::readlinkat(d, p, buf, len) }
    };
    let Some(guard) = HookGuard::enter() else { return ret_size(call(dirfd, path)) };
    let (Some(st), false) = (state(), path.is_null()) else {
        guard.restore_errno();
        return ret_size(call(dirfd, path));
    };
    let mut pb = PathBuffer::new();
    // SAFETY: non-null NUL-terminated.
    let r = match unsafe { route(st, dirfd, path, &mut pb, Intent { follow: false, create: false }) } {
        Route::Original => {
            guard.restore_errno();
            call(dirfd, path)
        }
        Route::Host(p) | Route::ReadOnly(p) => call(libc::AT_FDCWD, p.as_ptr()),
        Route::Tree(rel, _) => call(st.tree_fd, rel.as_ptr()),
        Route::TreeThenHost(rel, abs) => {
            let r = call(st.tree_fd, rel.as_ptr());
            if r == -c_long::from(libc::ENOENT) { call(libc::AT_FDCWD, abs.as_ptr()) } else { r }
        }
        Route::Deny(e) => -c_long::from(e),
    };
    if r > 0 {
        let n = usize::try_from(r).unwrap_or(0);
        return isize::try_from(untree_in_place(st, buf.cast(), n, false)).unwrap_or(-1);
    }
    ret_size(r)
}

fn ret_size(r: c_long) -> isize {
    if r < 0 {
        set_errno(i32::try_from(-r).unwrap_or(libc::EIO));
        -1
    } else {
        isize::try_from(r).unwrap_or(isize::MAX)
    }
}

/// readlink(2).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, len: usize) -> isize {
    // SAFETY: forwarded.
    unsafe { readlinkat(libc::AT_FDCWD, path, buf, len) }
}

/// getcwd(3): the cwd as the application knows it.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getcwd(buf: *mut c_char, size: usize) -> *mut c_char {
    let Some(real_fn) = real::getcwd() else {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    // SAFETY: the caller's arguments, unchanged.
    let r = unsafe { real_fn(buf, size) };
    // SAFETY: getcwd returns null or a NUL-terminated string it owns or the caller does.
    let r = unsafe { untree_cstr(r) };
    if let (false, Some(root)) = (r.is_null(), super::jail::root()) {
        // SAFETY: non-null, NUL-terminated and writable (getcwd's result).
        let s = unsafe { core::slice::from_raw_parts_mut(r.cast::<u8>(), CStr::from_ptr(r).to_bytes().len() + 1) };
        let len = s.len() - 1;
        // Inside a jail: named from its root (a shorter suffix of the same string).
        if let Some(rest) = s.get(..len).and_then(|v| super::jail::inside(root, v)).map(<[u8]>::len) {
            if rest == 1 && len == root.len() {
                s[0] = b'/';
                s[1] = 0;
            } else {
                s.copy_within(len - rest.., 0);
            }
        }
    }
    r
}

/// Translate a NUL-terminated result naming a place in the tree back, in place (the string
/// only gets shorter, and the NUL moves with it). Returns `s`.
///
/// # Safety
/// `s` is null or a writable NUL-terminated string.
unsafe fn untree_cstr(s: *mut c_char) -> *mut c_char {
    if let (false, Some(st)) = (s.is_null(), state()) {
        // SAFETY: non-null and NUL-terminated (caller).
        let len = unsafe { CStr::from_ptr(s) }.to_bytes().len();
        untree_in_place(st, s.cast(), len, true);
    }
    s
}

/// get_current_dir_name(3): glibc answers from `$PWD` or its internal getcwd, which the
/// getcwd hook never sees; translated back the same way.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn get_current_dir_name() -> *mut c_char {
    let Some(real_fn) = real::get_current_dir_name() else {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    // SAFETY: no arguments; the result is null or a malloc'd NUL-terminated string.
    unsafe { untree_cstr(real_fn()) }
}

/// chdir(2): into the tree for capsule directories.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    let chdir_raw = |p: *const c_char| {
        // SAFETY: NUL-terminated path.
        ret(unsafe { sys::raw(libc::SYS_chdir, p as c_long, 0, 0, 0, 0, 0) })
    };
    let Some(guard) = HookGuard::enter() else { return chdir_raw(path) };
    let (Some(st), false) = (state(), path.is_null()) else { return chdir_raw(path) };
    let mut buf = PathBuffer::new();
    // SAFETY: non-null NUL-terminated.
    match unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) } {
        Route::Original => {
            guard.restore_errno();
            chdir_raw(path)
        }
        Route::Host(p) | Route::ReadOnly(p) => chdir_raw(p.as_ptr()),
        Route::Tree(rel, _) => ret(chdir_tree(st, rel)),
        // Write-copy: the tree's copy of the directory if it has one, else the host's.
        Route::TreeThenHost(rel, abs) => match chdir_tree(st, rel) {
            r if r == -c_long::from(libc::ENOENT) => chdir_raw(abs.as_ptr()),
            r => ret(r),
        },
        Route::Deny(e) => {
            set_errno(e);
            -1
        }
    }
}

/// chdir into tree directory `rel`: the kernel's result (0 or -errno).
fn chdir_tree(st: &State, rel: &CStr) -> c_long {
    // SAFETY: NUL-terminated relative path; O_PATH descriptor closed right after use.
    let fd = unsafe { sys::openat(st.tree_fd, rel.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return fd;
    }
    // SAFETY: fchdir on a descriptor we own.
    let r = unsafe { sys::raw(libc::SYS_fchdir, fd, 0, 0, 0, 0, 0) };
    sys::close(i32::try_from(fd).unwrap_or(-1));
    r
}

/// realpath(3): resolved inside the tree for capsule paths, then translated back.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    let Some(real_fn) = real::realpath() else {
        set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    let Some(guard) = HookGuard::enter() else {
        // SAFETY: unchanged arguments.
        return unsafe { real_fn(path, resolved) };
    };
    let (Some(st), false) = (state(), path.is_null()) else {
        // SAFETY: unchanged arguments.
        return unsafe { real_fn(path, resolved) };
    };
    let mut buf = PathBuffer::new();
    let mut abs = PathBuffer::new();
    // SAFETY: non-null NUL-terminated.
    let target = match unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) } {
        Route::Original => path,
        Route::Host(p) | Route::ReadOnly(p) => p.as_ptr(),
        Route::Tree(rel, entry) => {
            // SAFETY: NUL-terminated relative path.
            let _ = in_tree(entry, rel, || unsafe { sys::faccessat(st.tree_fd, rel.as_ptr(), libc::F_OK, 0) });
            if abs.push(st.tree).and_then(|()| abs.push(b"/")).and_then(|()| abs.push(rel.to_bytes())).is_err() {
                set_errno(libc::ENAMETOOLONG);
                return core::ptr::null_mut();
            }
            abs.as_cstr().as_ptr()
        }
        Route::TreeThenHost(_, abs) => abs.as_ptr(),
        Route::Deny(e) => {
            set_errno(e);
            return core::ptr::null_mut();
        }
    };
    guard.restore_errno();
    // SAFETY: a NUL-terminated path and the caller's buffer (or null: realpath allocates).
    let r = call_out(|| unsafe { real_fn(target, resolved) });
    if !r.is_null() {
        // SAFETY: realpath returned a NUL-terminated string.
        let len = unsafe { CStr::from_ptr(r) }.to_bytes().len();
        let n = untree_in_place(st, r.cast(), len, true);
        // SAFETY: n <= len, inside the same string.
        unsafe { *r.add(n) = 0 };
    }
    r
}

/// dlopen(3): a library the capsule holds is loaded from the tree (materialised first).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void {
    let Some(real_fn) = real::dlopen() else { return core::ptr::null_mut() };
    // The loader's own opens (the library's dependencies too) in a dispatch window.
    let plain = || {
        // SAFETY: unchanged arguments.
        crate::preload::dispatch::window(|| unsafe { real_fn(path, flags) })
    };
    // A bare name is searched by the loader (LD_LIBRARY_PATH includes the tree's library dirs).
    // SAFETY: checked non-null first; NUL-terminated per dlopen's contract.
    if path.is_null() || !unsafe { CStr::from_ptr(path) }.to_bytes().contains(&b'/') {
        return plain();
    }
    let Some(guard) = HookGuard::enter() else { return plain() };
    let Some(st) = state() else { return plain() };
    let mut buf = PathBuffer::new();
    let mut abs = PathBuffer::new();
    // SAFETY: non-null NUL-terminated.
    let target = match unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) } {
        Route::Tree(rel, entry) => {
            // SAFETY: NUL-terminated relative path.
            let _ = in_tree(entry, rel, || unsafe { sys::faccessat(st.tree_fd, rel.as_ptr(), libc::F_OK, 0) });
            // Through the tree's descriptor when this process cannot reach the store by path
            // (`run --user`): PostgreSQL as postgres dlopens its dictionaries by full path.
            if super::binfmt::tree_path(st, rel, &mut abs).is_err() {
                return plain();
            }
            abs.as_cstr().as_ptr()
        }
        Route::Host(p) | Route::ReadOnly(p) => p.as_ptr(),
        _ => path,
    };
    guard.restore_errno();
    // SAFETY: NUL-terminated path living across the call.
    crate::preload::dispatch::window(|| unsafe { real_fn(target, flags) })
}

/// close(2): our descriptors (the tree, the inherited view) stay open (daemons close "all"
/// descriptors).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if state().is_some_and(|st| st.tree_fd == fd || st.view_fd == fd) {
        return 0;
    }
    // SAFETY: closing the application's descriptor, as asked.
    ret(unsafe { sys::raw(libc::SYS_close, c_long::from(fd), 0, 0, 0, 0, 0) })
}

/// close_range(2), skipping our descriptors.
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let raw = |a: c_uint, b: c_uint| {
        // SAFETY: integer arguments only.
        unsafe { sys::raw(libc::SYS_close_range, c_long::from(a), c_long::from(b), c_long::from(flags), 0, 0, 0) }
    };
    let Some(st) = state() else { return ret(raw(first, last)) };
    let (a, b) = (st.tree_fd.min(st.view_fd), st.tree_fd.max(st.view_fd));
    // The kept descriptors inside [first, last], ascending.
    let keep = [a, b].map(|k| c_uint::try_from(k).ok().filter(|&k| first <= k && k <= last));
    let mut from = Some(first); // None: past c_uint::MAX
    let mut r = 0;
    for k in keep.into_iter().flatten() {
        if let Some(f) = from
            && r == 0
            && k > f
        {
            r = raw(f, k - 1);
        }
        from = k.checked_add(1);
    }
    if let Some(f) = from
        && r == 0
        && f <= last
    {
        r = raw(f, last);
    }
    ret(r)
}

/// closefrom(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(low: c_int) {
    // SAFETY: forwarded.
    let _ = unsafe { close_range(c_uint::try_from(low).unwrap_or(0), c_uint::MAX, 0) };
}

/// Copy `v` into the `utsname` field `field` (65 bytes), NUL-terminated.
fn put_field(field: &mut [core::ffi::c_char; 65], v: &[u8]) {
    for (i, d) in field.iter_mut().enumerate() {
        *d = v.get(i).filter(|_| i < 64).map_or(0, |&c| c.cast_signed());
    }
}

/// A name set inside the capsule (sethostname, setdomainname): this process's, lock-free
/// (a racing reader may see a mix of two names, as with the kernel's own uname).
struct Renamed {
    bytes: [core::sync::atomic::AtomicU8; 65],
    /// Length + 1; 0 while unset.
    len: core::sync::atomic::AtomicUsize,
}

impl Renamed {
    const fn new() -> Self {
        Renamed {
            bytes: [const { core::sync::atomic::AtomicU8::new(0) }; 65],
            len: core::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn set(&self, v: &[u8]) {
        use core::sync::atomic::Ordering;
        for (d, s) in self.bytes.iter().zip(v.iter().chain(core::iter::repeat(&0))) {
            d.store(*s, Ordering::Relaxed);
        }
        self.len.store(v.len().min(64) + 1, Ordering::Release);
    }

    /// Copy into a utsname field if set; whether it was.
    fn put(&self, field: &mut [core::ffi::c_char; 65]) -> bool {
        use core::sync::atomic::Ordering;
        let n = self.len.load(Ordering::Acquire);
        if n == 0 {
            return false;
        }
        for (i, (d, s)) in field.iter_mut().zip(&self.bytes).enumerate() {
            *d = if i + 1 < n { s.load(Ordering::Relaxed).cast_signed() } else { 0 };
        }
        true
    }
}

static HOSTNAME: Renamed = Renamed::new();
static DOMAIN: Renamed = Renamed::new();

impl Renamed {
    /// The name set, if any: (bytes, length).
    fn get(&self) -> Option<([u8; 64], usize)> {
        use core::sync::atomic::Ordering;
        let n = self.len.load(Ordering::Acquire).checked_sub(1)?;
        let mut out = [0u8; 64];
        for (d, s) in out.iter_mut().zip(&self.bytes).take(n) {
            *d = s.load(Ordering::Relaxed);
        }
        Some((out, n))
    }
}

unsafe extern "C" {
    /// The process's environment (glibc's `environ`).
    static mut environ: *mut *mut c_char;
}

/// `NAME=value` entries for the renamed names, which `environ` points to once set.
static HOST_ENTRY: [core::sync::atomic::AtomicU8; 96] = [const { core::sync::atomic::AtomicU8::new(0) }; 96];
static DOMAIN_ENTRY: [core::sync::atomic::AtomicU8; 96] = [const { core::sync::atomic::AtomicU8::new(0) }; 96];

/// Point the process's `NAME=` environment entry at `NAME=value` in `slot`, so that programs
/// this one starts by any route (glibc's `system` spawns internally, past our hooks) inherit
/// the new name. In place: no allocation, no lock; only an entry that exists is replaced (ours
/// always does: the capsule's name came in it).
fn publish(slot: &'static [core::sync::atomic::AtomicU8; 96], name: &[u8], value: &[u8]) {
    use core::sync::atomic::Ordering;
    let mut bytes = name.iter().chain(b"=").chain(value.iter().take(64)).chain(core::iter::repeat(&0u8));
    for d in slot {
        d.store(*bytes.next().unwrap_or(&0), Ordering::Relaxed);
    }
    // SAFETY: `environ` is glibc's NULL-terminated array of NUL-terminated strings; we read
    // it and swap one pointer for one to a static NUL-terminated string of the same form
    // (AtomicU8 has u8's layout), which lives for the whole process.
    unsafe {
        let env = environ;
        if env.is_null() {
            return;
        }
        let mut i = 0;
        loop {
            let e = *env.add(i);
            if e.is_null() {
                return;
            }
            if super::exec::sets(core::ffi::CStr::from_ptr(e).to_bytes(), name) {
                *env.add(i) = slot.as_ptr().cast::<c_char>().cast_mut();
                return;
            }
            i += 1;
        }
    }
}

/// The capsule's host and domain names as renamed in this process (sethostname,
/// setdomainname), for the exec hooks to hand on to children.
pub fn renamed() -> [Option<([u8; 64], usize)>; 2] {
    [HOSTNAME.get(), DOMAIN.get()]
}

/// sethostname/setdomainname inside a capsule with its own name: the capsule is renamed (this
/// process, and the programs it executes from now on: the exec hooks pass the new name on in
/// `CAPSULE_HOSTNAME`/`CAPSULE_DOMAIN`), never the machine. Without a capsule name the
/// call is the kernel's, as outside.
fn rename(which: &'static Renamed, own: bool, nr: c_long, name: *const c_char, len: usize) -> c_int {
    if !own {
        // SAFETY: the caller's arguments, unchanged.
        return ret(unsafe { sys::raw(nr, name as c_long, len as c_long, 0, 0, 0, 0) });
    }
    if len > 64 || (name.is_null() && len > 0) {
        set_errno(if len > 64 { libc::EINVAL } else { libc::EFAULT });
        return -1;
    }
    // SAFETY: `len` readable bytes at `name` (C contract), non-null when len > 0.
    let v = if len == 0 { &[][..] } else { unsafe { core::slice::from_raw_parts(name.cast::<u8>(), len) } };
    which.set(v);
    if core::ptr::eq(which, &HOSTNAME) {
        publish(&HOST_ENTRY, b"CAPSULE_HOSTNAME", v);
    } else {
        publish(&DOMAIN_ENTRY, b"CAPSULE_DOMAIN", v);
    }
    0
}

/// sethostname(2).
///
/// # Safety
/// C ABI: `name` readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sethostname(name: *const c_char, len: usize) -> c_int {
    let own = state().is_some_and(|st| !st.hostname.is_empty());
    rename(&HOSTNAME, own, libc::SYS_sethostname, name, len)
}

/// setdomainname(2).
///
/// # Safety
/// C ABI: `name` readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setdomainname(name: *const c_char, len: usize) -> c_int {
    let own = state().is_some_and(|st| !st.hostname.is_empty() || !st.domain.is_empty());
    rename(&DOMAIN, own, libc::SYS_setdomainname, name, len)
}

/// uname(2): the run's host and domain names (issue 5's identity), the kernel's the rest.
///
/// # Safety
/// C ABI: `buf` points to a writable `struct utsname`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn uname(buf: *mut libc::utsname) -> c_int {
    // SAFETY: the caller's buffer, filled by the kernel.
    let r = ret(unsafe { sys::raw(libc::SYS_uname, buf as c_long, 0, 0, 0, 0, 0) });
    if r == 0
        && !buf.is_null()
        && let Some(st) = state()
    {
        // SAFETY: non-null and writable (the kernel just wrote it).
        let u = unsafe { &mut *buf };
        if !HOSTNAME.put(&mut u.nodename) && !st.hostname.is_empty() {
            put_field(&mut u.nodename, st.hostname);
        }
        if !DOMAIN.put(&mut u.domainname) && !st.domain.is_empty() {
            put_field(&mut u.domainname, st.domain);
        }
    }
    r
}

/// Copy the name `pick` chooses from our `uname` into `name` (`len` bytes), as glibc's
/// gethostname/getdomainname do: ENAMETOOLONG when it does not fit with its NUL.
fn name_into(name: *mut c_char, len: usize, pick: impl Fn(&libc::utsname) -> &[core::ffi::c_char; 65]) -> c_int {
    // SAFETY: a plain struct, filled by our uname.
    let mut u: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: `u` is writable.
    if unsafe { uname(&mut u) } != 0 {
        return -1;
    }
    let field = pick(&u);
    let n = field.iter().position(|&c| c == 0).unwrap_or(64);
    if name.is_null() || len <= n {
        set_errno(libc::ENAMETOOLONG);
        return -1;
    }
    for (i, &c) in field.iter().take(n + 1).enumerate() {
        // SAFETY: `i <= n < len`, inside the caller's buffer.
        unsafe { *name.add(i) = c };
    }
    0
}

/// gethostname(2): glibc's calls uname internally, out of our hook's sight.
///
/// # Safety
/// C ABI: `name` writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gethostname(name: *mut c_char, len: usize) -> c_int {
    name_into(name, len, |u| &u.nodename)
}

/// getdomainname(2).
///
/// # Safety
/// C ABI: `name` writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getdomainname(name: *mut c_char, len: usize) -> c_int {
    name_into(name, len, |u| &u.domainname)
}

/// gethostid(3): with a capsule address, what glibc derives when there is no /etc/hostid —
/// the address of the host's own name with its 16-bit halves swapped — from the capsule's
/// address (glibc looks up the name through its internal uname, which no hook sees).
#[unsafe(no_mangle)]
pub extern "C" fn gethostid() -> c_long {
    if let Some(st) = state().filter(|st| st.ipv4 != 0) {
        let a = st.ipv4; // s_addr, as glibc holds it
        return c_long::from(a.rotate_left(16).cast_signed());
    }
    match real::gethostid() {
        // SAFETY: no arguments.
        Some(f) => unsafe { f() },
        None => 0,
    }
}

/// bind(2): a Unix socket's path is placed in the view (`hooks::sockpath`); with a capsule
/// address (`--ip`), wildcard and loopback binds land on it (rules in
/// `capsule_core::bindaddr`, shared with the supervisor), so two copies of one server share a
/// machine; getsockname then reports it (the kernel's own answer).
///
/// # Safety
/// C ABI: `addr` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int {
    // A Unix socket's path is placed like any other (hooks::sockpath).
    // SAFETY: the caller's address.
    if let Some(r) = unsafe { super::sockpath::call(libc::SYS_bind, fd, addr, len) } {
        return r;
    }
    let raw = |a: *const libc::sockaddr| {
        // SAFETY: the caller's socket and a sockaddr of `len` readable bytes.
        ret(unsafe { sys::raw(libc::SYS_bind, fd.into(), a as c_long, c_long::from(len), 0, 0, 0) })
    };
    let Some(st) = state().filter(|st| st.ipv4 != 0) else { return raw(addr) };
    if addr.is_null() {
        return raw(addr);
    }
    let mut sa = [0u8; capsule_core::bindaddr::IN6_LEN];
    let n = (len as usize).min(sa.len());
    // SAFETY: `addr` is non-null with `len` readable bytes (caller); we copy at most `len`.
    unsafe { core::ptr::copy_nonoverlapping(addr.cast::<u8>(), sa.as_mut_ptr(), n) };
    let v6only = || {
        let mut v: c_int = 0;
        let mut vlen: libc::socklen_t = 4; // size_of::<c_int>()
        // SAFETY: the caller's socket; `v` and `vlen` are ours and sized.
        let r = unsafe {
            sys::raw(
                libc::SYS_getsockopt,
                fd.into(),
                libc::IPPROTO_IPV6.into(),
                libc::IPV6_V6ONLY.into(),
                (&raw mut v) as c_long,
                (&raw mut vlen) as c_long,
                0,
            )
        };
        r == 0 && v != 0
    };
    match capsule_core::bindaddr::rewrite(&mut sa, n, st.ipv4.to_ne_bytes(), v6only) {
        Ok(true) => raw(sa.as_ptr().cast()),
        Ok(false) => raw(addr),
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}
