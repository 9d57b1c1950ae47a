//! The exported hooks, one module per family. Each follows HOUSE-STYLE §3: enter through
//! [`HookGuard`], keep errno, no allocation, no lock, no panic; all path logic is in
//! [`route`] and [`capsule_core::resolve`].

pub mod binfmt;
pub mod dir;
pub mod exec;
pub mod glob;
pub mod internal;
pub mod link;
pub mod misc;
pub mod net;
pub mod open;
pub mod real;
pub mod stat;
pub mod xattr;

use core::ffi::{CStr, c_char, c_int};

use capsule_core::view::{Entry, Kind};

use super::client::{self, OP_COPY_UP, OP_LINK};
use super::sys;
use super::{State, virtualize};
use capsule_core::resolve::path::PathBuffer;
use capsule_core::resolve::{Decision, Intent, decide};

/// Where one call goes, borrowing the caller's [`PathBuffer`].
pub enum Route<'b> {
    /// Call the real function with the application's own arguments.
    Original,
    /// Call it with this absolute host path (AT_FDCWD).
    Host(&'b CStr),
    /// Call it relative to the tree descriptor, with this relative path.
    Tree(&'b CStr, Option<Entry<'static>>),
    /// Relative to the tree first; if absent there, this absolute host path.
    TreeThenHost(&'b CStr, &'b CStr),
    /// Fail with this errno.
    Deny(c_int),
}

/// Route (`dirfd`, `path`) for `intent`. `path` must be non-null and NUL-terminated.
///
/// Inlined into every hook: the hot case (an absolute capsule path, spelled as the view spells
/// it) then builds no [`Route`] in memory; everything else is [`route_slow`].
///
/// # Safety
/// `path` points to a NUL-terminated string valid for the call.
#[inline(always)]
pub unsafe fn route<'b>(
    st: &'static State,
    dirfd: c_int,
    path: *const c_char,
    buf: &'b mut PathBuffer,
    intent: Intent,
) -> Route<'b> {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    // The resolver's fast path (the hot case); the relative form is then the argument itself
    // minus its leading '/': no copy.
    if let Some(e) = capsule_core::resolve::literal(&st.view, bytes) {
        // SAFETY: `path` holds `bytes` (at least one byte, '/') and then a NUL, so the
        // `bytes.len()` bytes from `path + 1` are the rest and its NUL, living as long as the
        // argument, i.e. for this call. (No second strlen.)
        return Route::Tree(
            unsafe {
                CStr::from_bytes_with_nul_unchecked(core::slice::from_raw_parts(path.add(1).cast(), bytes.len()))
            },
            Some(e),
        );
    }
    route_slow(st, dirfd, bytes, buf, intent)
}

/// [`route`] for a path the view does not hold literally: normalise, resolve, decide.
#[inline(never)]
fn route_slow<'b>(
    st: &'static State,
    dirfd: c_int,
    bytes: &[u8],
    buf: &'b mut PathBuffer,
    intent: Intent,
) -> Route<'b> {
    let v = match virtualize(st, dirfd, bytes, buf) {
        None => return Route::Original,
        Some(Err(e)) => return Route::Deny(e),
        Some(Ok(v)) => v,
    };
    let decision = decide(&st.view, buf, intent, v.rewritten, v.must_be_dir);
    match decision {
        Decision::Passthrough => Route::Original,
        Decision::Host => Route::Host(buf.as_cstr()),
        Decision::Tree { entry } => Route::Tree(buf.rel_cstr(), entry.and_then(|i| st.view.entry(i))),
        Decision::TreeThenHost => Route::TreeThenHost(buf.rel_cstr(), buf.as_cstr()),
        Decision::Deny(e) => Route::Deny(e),
    }
}

/// Whether open flags may modify the file.
pub fn writes(flags: c_int) -> bool {
    flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC | libc::O_APPEND) != 0
}

/// Make tree file `rel` private before a write: a pristine link (shared with the cache) or a
/// file not materialised yet is copied up by the materialiser.
pub fn ensure_private(st: &State, rel: &CStr) {
    // SAFETY: plain struct, filled by the kernel.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `rel` NUL-terminated, `sb` writable.
    let r = unsafe { sys::newfstatat(st.tree_fd, rel.as_ptr(), &mut sb, libc::AT_SYMLINK_NOFOLLOW) };
    let private = r == 0 && (sb.st_mode & libc::S_IFMT) == libc::S_IFREG && sb.st_nlink == 1;
    if !private {
        let _ = client::request(OP_COPY_UP, rel.to_bytes());
    }
}

/// Run `op` against the tree; when it fails with ENOENT on a capsule file not materialised
/// yet, materialise it and run `op` once more.
pub fn in_tree(entry: Option<Entry<'_>>, rel: &CStr, mut op: impl FnMut() -> core::ffi::c_long) -> core::ffi::c_long {
    let r = op();
    if r == -core::ffi::c_long::from(libc::ENOENT)
        && entry.is_some_and(|e| e.kind == Kind::File)
        && client::request(OP_LINK, rel.to_bytes()) == 0
    {
        return op();
    }
    r
}
