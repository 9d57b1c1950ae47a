//! The directory family: opendir, fdopendir, readdir, readdir64, rewinddir, closedir, scandir.
//!
//! A capsule directory lives in the tree; before it is listed its files are linked there
//! (`OP_LINK_DIR`), so the listing is complete. A capsule directory that also exists on the
//! host (`/usr/lib/python3/dist-packages`) is listed merged: the application gets the host's
//! `DIR`, and [`MERGED`] pairs it with the tree's. `readdir` returns the host entries first,
//! skipping names the tree also has, then the tree's entries. The table is a fixed array of
//! atomics (no allocation, no lock); when it is full a merged directory degrades to the
//! capsule's entries only. `fdopendir` over a descriptor of such a directory is merged the
//! same way; raw getdents is not.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

use capsule_core::view::{FLAG_HOST_DIR, Kind, live};

use super::{Route, real, route};
use crate::preload::client::{self, OP_LINK_DIR};
use crate::preload::guard::{HookGuard, call_out};
use crate::preload::sys::{self, set_errno};
use crate::preload::{State, state};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

/// One merged listing in progress.
pub struct Slot {
    busy: AtomicBool,
    host: AtomicPtr<libc::DIR>,
    tree: AtomicPtr<libc::DIR>,
    phase: AtomicU8,
    /// The directory's hash prefix in the sandbox's table of deletions (`live::dir_hash`).
    prefix: AtomicU64,
}

const SLOTS: usize = 64;
#[allow(clippy::declare_interior_mutable_const)] // used only to initialise the array
const EMPTY: Slot = Slot {
    busy: AtomicBool::new(false),
    host: AtomicPtr::new(core::ptr::null_mut()),
    tree: AtomicPtr::new(core::ptr::null_mut()),
    phase: AtomicU8::new(0),
    prefix: AtomicU64::new(0),
};
/// Merged listings, keyed by the host `DIR` handed to the application.
pub static MERGED: [Slot; SLOTS] = [EMPTY; SLOTS];

fn find(dirp: *mut libc::DIR) -> Option<&'static Slot> {
    if dirp.is_null() {
        return None;
    }
    MERGED.iter().find(|s| s.host.load(Ordering::Acquire) == dirp)
}

fn register(host: *mut libc::DIR, tree: *mut libc::DIR, prefix: u64) -> bool {
    for s in &MERGED {
        if s.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            s.tree.store(tree, Ordering::Relaxed);
            s.phase.store(0, Ordering::Relaxed);
            s.prefix.store(prefix, Ordering::Relaxed);
            s.host.store(host, Ordering::Release);
            return true;
        }
    }
    false
}

/// A `DIR` over tree directory `rel`.
fn open_tree_dir(tree_fd: c_int, rel: &CStr) -> *mut libc::DIR {
    open_dir_at(tree_fd, rel.as_ptr())
}

/// A `DIR` over (`dirfd`, `path`): our own raw openat, which carries the supervisor's cookie
/// (libc's opendir would open without it and cost a tier-2 round trip), then fdopendir.
fn open_dir_at(dirfd: c_int, path: *const c_char) -> *mut libc::DIR {
    let Some(fdopendir) = real::fdopendir() else { return core::ptr::null_mut() };
    // SAFETY: NUL-terminated path (callers).
    let fd = unsafe { sys::openat(dirfd, path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) };
    let Ok(fd) = c_int::try_from(fd) else { return core::ptr::null_mut() };
    if fd < 0 {
        set_errno(-fd);
        return core::ptr::null_mut();
    }
    // SAFETY: a directory descriptor we own, handed to the stream.
    let d = call_out(|| unsafe { fdopendir(fd) });
    if d.is_null() {
        sys::close(fd);
    }
    d
}

/// opendir(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
    let Some(real_open) = real::opendir() else { return core::ptr::null_mut() };
    let Some(guard) = HookGuard::enter() else {
        // SAFETY: the application's argument, unchanged (a re-entered hook).
        return call_out(|| unsafe { real_open(path) });
    };
    let plain = |p: *const c_char| open_dir_at(libc::AT_FDCWD, p);
    let (Some(st), false) = (state(), path.is_null()) else { return plain(path) };
    let mut buf = PathBuffer::new();
    // SAFETY: non-null NUL-terminated.
    match unsafe { route(st, libc::AT_FDCWD, path, &mut buf, Intent { follow: true, create: false }) } {
        Route::Original => {
            guard.restore_errno();
            plain(path)
        }
        Route::Host(p) | Route::ReadOnly(p) => plain(p.as_ptr()),
        Route::Tree(rel, entry) => {
            let Some(e) = entry.filter(|e| e.kind == Kind::Dir) else { return open_tree_dir(st.tree_fd, rel) };
            if e.needs_linking() {
                let _ = client::request(OP_LINK_DIR, rel.to_bytes());
            }
            let tree = open_tree_dir(st.tree_fd, rel);
            if e.flags & FLAG_HOST_DIR == 0 || tree.is_null() {
                return tree;
            }
            // SAFETY: `rel` points one byte into "/a/b" (the buffer's, or the argument itself
            // on the literal fast path), so one byte back is the absolute virtual path,
            // NUL-terminated.
            merge(tree, unsafe { rel.as_ptr().sub(1) })
        }
        // A write-copy directory the tree has too (copied up, or made by the program): both
        // sides, merged.
        Route::TreeThenHost(rel, abs) => {
            let t = open_tree_dir(st.tree_fd, rel);
            if t.is_null() && st.view.live().is_none() { plain(abs.as_ptr()) } else { merge(t, abs.as_ptr()) }
        }
        Route::Deny(e) => {
            set_errno(e);
            core::ptr::null_mut()
        }
    }
}

/// The stream to hand the application for directory `abs` (absolute, NUL-terminated) that
/// the host has too, given its tree stream (null: a write-copy host directory the tree has no
/// copy of, listed for the sandbox's deletions alone): the host's stream, paired with the
/// tree's in [`MERGED`]; the tree's alone if the host's cannot be opened; unmerged if the
/// table is full.
fn merge(tree: *mut libc::DIR, abs: *const c_char) -> *mut libc::DIR {
    let host = open_dir_at(libc::AT_FDCWD, abs);
    // SAFETY: `abs` is NUL-terminated (callers).
    let prefix = live::dir_hash(unsafe { CStr::from_ptr(abs) }.to_bytes());
    if host.is_null() || register(host, tree, prefix) {
        return if host.is_null() { tree } else { host };
    }
    if tree.is_null() {
        return host;
    }
    if let Some(close) = real::closedir() {
        // SAFETY: closing the stream we just opened, which nobody else has seen.
        unsafe { close(host) };
    }
    tree
}

/// fdopendir(3): a descriptor of a capsule directory (opened through the open hook, so in
/// the tree) that the host has too is listed merged, as [`opendir`] lists it; `find`, `rm -r`
/// and `du` (gnulib's fts: openat, then fdopendir) and Python's `os.listdir(fd)` list this
/// way. The stream over `fd` is the tree's: closing the merged stream closes `fd`, and the
/// caller's `fd` still names the directory it opened (fts compares its identity).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut libc::DIR {
    let Some(real_fn) = real::fdopendir() else { return core::ptr::null_mut() };
    // SAFETY: the application's descriptor, as given.
    let plain = || call_out(|| unsafe { real_fn(fd) });
    let Some(_guard) = HookGuard::enter() else { return plain() };
    let Some(st) = state() else { return plain() };
    let mut buf = PathBuffer::new();
    if crate::preload::virt::fd_path(fd, &mut buf).is_none() {
        return plain();
    }
    let Some(abs) = capsule_core::resolve::untree(st.tree, buf.as_bytes()) else { return host_dir(st, plain, &buf) };
    let entry = st.view.lookup(abs.get(1..).unwrap_or_default());
    // Opened without O_DIRECTORY, its files may not be linked yet (with it, the open hook
    // asked, and the materialiser answers this second request at once).
    if let Some(e) = entry.filter(|e| e.kind == Kind::Dir && e.needs_linking()) {
        let _ = client::request(OP_LINK_DIR, e.path);
    }
    if !capsule_core::boundary::merged_listing(&st.view, abs) {
        return plain();
    }
    // `abs` is the end of the buffer's path: its NUL follows.
    merge(plain(), abs.as_ptr().cast())
}

/// [`fdopendir`] of a host directory (the tree had no copy of it when it was opened): a
/// write-copy one is listed with the tree's copy made since, if any, and without the
/// sandbox's deletions; any other is the host's.
fn host_dir(st: &State, plain: impl Fn() -> *mut libc::DIR, abs: &PathBuffer) -> *mut libc::DIR {
    if st.view.live().is_none() || !capsule_core::boundary::merged_listing(&st.view, abs.as_bytes()) {
        return plain();
    }
    let host = plain();
    if host.is_null() {
        return host;
    }
    let tree = open_tree_dir(st.tree_fd, abs.rel_cstr());
    if !register(host, tree, live::dir_hash(abs.as_bytes()))
        && !tree.is_null()
        && let Some(close) = real::closedir()
    {
        // SAFETY: closing the stream we just opened, which nobody else has seen.
        unsafe { close(tree) };
    }
    host
}

/// Whether `name` should be skipped in a merged listing's host phase (the tree has it too).
fn shadowed(tree: *mut libc::DIR, name: *const c_char) -> bool {
    let Some(dirfd) = real::dirfd() else { return false };
    if tree.is_null() {
        return false;
    }
    // SAFETY: `tree` is a live stream owned by the slot.
    let fd = unsafe { dirfd(tree) };
    // SAFETY: plain struct, filled by the kernel.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is a NUL-terminated d_name; `sb` writable.
    unsafe { sys::newfstatat(fd, name, &mut sb, libc::AT_SYMLINK_NOFOLLOW) == 0 }
}

/// Whether the host entry `name` of a merged listing was deleted in the sandbox since the
/// view was made (the sandbox's table of deletions).
fn deleted(slot: &Slot, name: *const c_char) -> bool {
    let Some(live) = state().and_then(|st| st.view.live()) else { return false };
    // SAFETY: `name` is a NUL-terminated d_name.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    live.contains_hash(live::hash_more(slot.prefix.load(Ordering::Relaxed), name))
}

fn hidden(name: &[u8]) -> bool {
    name == b"." || name == b".." || name.starts_with(b".capsule-")
}

/// The merged readdir over either dirent layout (identical on x86-64).
fn merged_next<T>(
    slot: &Slot,
    next: unsafe extern "C" fn(*mut libc::DIR) -> *mut T,
    name_of: fn(*mut T) -> *const c_char,
) -> *mut T {
    let host = slot.host.load(Ordering::Acquire);
    let tree = slot.tree.load(Ordering::Acquire);
    if slot.phase.load(Ordering::Relaxed) == 0 {
        loop {
            // SAFETY: the application's live host stream.
            let e = unsafe { next(host) };
            if e.is_null() {
                slot.phase.store(1, Ordering::Relaxed);
                break;
            }
            if !shadowed(tree, name_of(e)) && !deleted(slot, name_of(e)) {
                return e;
            }
        }
    }
    // A write-copy host directory the tree has no copy of: the host's side alone.
    if tree.is_null() {
        return core::ptr::null_mut();
    }
    loop {
        // SAFETY: the slot's live tree stream.
        let e = unsafe { next(tree) };
        if e.is_null() {
            return e;
        }
        // SAFETY: d_name is NUL-terminated.
        if !hidden(unsafe { CStr::from_ptr(name_of(e)) }.to_bytes()) {
            return e;
        }
    }
}

/// readdir(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(dirp: *mut libc::DIR) -> *mut libc::dirent {
    let Some(real_fn) = real::readdir() else { return core::ptr::null_mut() };
    match find(dirp) {
        // SAFETY: `e` is a dirent returned by readdir, valid until the next call.
        Some(slot) => merged_next(slot, real_fn, |e| unsafe { (*e).d_name.as_ptr() }),
        // SAFETY: the application's stream.
        None => unsafe { real_fn(dirp) },
    }
}

/// readdir64(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(dirp: *mut libc::DIR) -> *mut libc::dirent64 {
    let Some(real_fn) = real::readdir64() else { return core::ptr::null_mut() };
    match find(dirp) {
        // SAFETY: as in readdir.
        Some(slot) => merged_next(slot, real_fn, |e| unsafe { (*e).d_name.as_ptr() }),
        // SAFETY: the application's stream.
        None => unsafe { real_fn(dirp) },
    }
}

/// rewinddir(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rewinddir(dirp: *mut libc::DIR) {
    let Some(real_fn) = real::rewinddir() else { return };
    if let Some(slot) = find(dirp) {
        slot.phase.store(0, Ordering::Relaxed);
        let tree = slot.tree.load(Ordering::Acquire);
        if !tree.is_null() {
            // SAFETY: the slot's live tree stream.
            unsafe { real_fn(tree) };
        }
    }
    // SAFETY: the application's stream.
    unsafe { real_fn(dirp) }
}

/// closedir(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closedir(dirp: *mut libc::DIR) -> c_int {
    let Some(real_fn) = real::closedir() else { return -1 };
    if let Some(slot) = find(dirp) {
        let tree = slot.tree.swap(core::ptr::null_mut(), Ordering::AcqRel);
        slot.host.store(core::ptr::null_mut(), Ordering::Release);
        slot.busy.store(false, Ordering::Release);
        if !tree.is_null() {
            // SAFETY: the slot owned this stream; no one else can reach it now.
            unsafe { real_fn(tree) };
        }
    }
    // SAFETY: the application's stream.
    unsafe { real_fn(dirp) }
}

type Filter<T> = Option<unsafe extern "C" fn(*const T) -> c_int>;
type Compar<T> = Option<unsafe extern "C" fn(*mut *const T, *mut *const T) -> c_int>;

/// scandir over our own opendir/readdir (glibc's calls its internal ones, which would list
/// only the host). The result is malloc'd, entry by entry, because scandir(3)'s caller frees it
/// with free(3): the one place a hook allocates, with libc's allocator, by contract.
///
/// # Safety
/// scandir(3)'s contract.
unsafe fn scan<T>(
    path: *const c_char,
    list: *mut *mut *mut T,
    filter: Filter<T>,
    compar: Compar<T>,
    next: unsafe fn(*mut libc::DIR) -> *mut T,
    reclen: fn(*mut T) -> usize,
) -> c_int {
    // SAFETY: our own opendir hook, with the caller's path.
    let d = unsafe { opendir(path) };
    if d.is_null() {
        return -1;
    }
    let mut arr: *mut *mut T = core::ptr::null_mut();
    let (mut n, mut cap) = (0usize, 0usize);
    let fail = |arr: *mut *mut T, n: usize| {
        for i in 0..n {
            // SAFETY: entries 0..n were malloc'd below.
            unsafe { libc::free((*arr.add(i)).cast()) };
        }
        // SAFETY: the array was malloc'd (or is null).
        unsafe { libc::free(arr.cast()) };
    };
    loop {
        // SAFETY: `d` is the stream opened above.
        let e = unsafe { next(d) };
        if e.is_null() {
            break;
        }
        if let Some(f) = filter {
            // SAFETY: the application's filter, called with a live entry as scandir(3) does.
            let keep = unsafe { f(e) };
            if keep == 0 {
                continue;
            }
        }
        if n == cap {
            cap = (cap * 2).max(16);
            // SAFETY: growing our own malloc'd array (or allocating it).
            let grown = unsafe { libc::realloc(arr.cast(), cap * core::mem::size_of::<*mut T>()) };
            if grown.is_null() {
                fail(arr, n);
                // SAFETY: closing the stream opened above.
                unsafe { closedir(d) };
                set_errno(libc::ENOMEM);
                return -1;
            }
            arr = grown.cast();
        }
        let len = reclen(e);
        // SAFETY: a fresh allocation of the entry's own record length.
        let copy = unsafe { libc::malloc(len) }.cast::<T>();
        if copy.is_null() {
            fail(arr, n);
            // SAFETY: as above.
            unsafe { closedir(d) };
            set_errno(libc::ENOMEM);
            return -1;
        }
        // SAFETY: `e` is valid for `len` bytes (its d_reclen); `copy` has room for them; `arr`
        // has room for n + 1 pointers.
        unsafe {
            core::ptr::copy_nonoverlapping(e.cast::<u8>(), copy.cast::<u8>(), len);
            *arr.add(n) = copy;
        }
        n += 1;
    }
    // SAFETY: closing the stream opened above.
    unsafe { closedir(d) };
    if let Some(c) = compar {
        // SAFETY: sorting n pointers with the application's comparator, as scandir(3) does; the
        // comparator's pointer type is the one qsort passes (pointers to elements).
        unsafe {
            libc::qsort(
                arr.cast(),
                n,
                core::mem::size_of::<*mut T>(),
                Some(core::mem::transmute::<
                    unsafe extern "C" fn(*mut *const T, *mut *const T) -> c_int,
                    unsafe extern "C" fn(*const libc::c_void, *const libc::c_void) -> c_int,
                >(c)),
            )
        };
    }
    // SAFETY: the caller's out-pointer.
    unsafe { *list = arr };
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

/// scandir(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandir(
    path: *const c_char,
    list: *mut *mut *mut libc::dirent,
    filter: Filter<libc::dirent>,
    compar: Compar<libc::dirent>,
) -> c_int {
    // SAFETY: forwarded; our readdir; d_reclen bounds each record.
    unsafe { scan(path, list, filter, compar, |d| readdir(d), |e| usize::from((*e).d_reclen)) }
}

/// scandir64(3).
///
/// # Safety
/// C ABI.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn scandir64(
    path: *const c_char,
    list: *mut *mut *mut libc::dirent64,
    filter: Filter<libc::dirent64>,
    compar: Compar<libc::dirent64>,
) -> c_int {
    // SAFETY: forwarded; our readdir64; d_reclen bounds each record.
    unsafe { scan(path, list, filter, compar, |d| readdir64(d), |e| usize::from((*e).d_reclen)) }
}
