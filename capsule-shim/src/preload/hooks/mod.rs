//! The exported hooks, one module per family. Each follows HOUSE-STYLE §3: enter through
//! [`HookGuard`], keep errno, no allocation, no lock, no panic; all path logic is in
//! [`route`] and [`capsule_core::resolve`].

pub mod binfmt;
pub mod dir;
pub mod exec;
pub mod fortify;
pub mod glob;
pub mod internal;
pub mod jail;
pub mod link;
pub mod misc;
pub mod net;
pub mod open;
pub mod pwlock;
pub mod query;
pub mod real;
pub mod sockpath;
pub mod stat;
pub mod syscall;
pub mod temp;
pub mod xattr;

use core::ffi::{CStr, c_char, c_int, c_long};

use capsule_core::boundary::effect::{self, At, Tier};
use capsule_core::boundary::{Place, place};
use capsule_core::view::Entry;

use super::client;
use super::sys;
use super::{Shim, State};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;

/// Where one call goes, borrowing the caller's [`PathBuffer`]: the boundary layer's
/// [`Place`] (tier 1 calls it a route).
pub type Route<'b> = Place<'b, 'static>;

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
    if let Some(root) = jail::root() {
        return jail::route(st, dirfd, bytes, root, buf, intent);
    }
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

/// [`route`] for a path the view does not hold literally: the boundary layer's [`place`].
#[inline(never)]
pub(crate) fn route_slow<'b>(
    st: &'static State,
    dirfd: c_int,
    bytes: &[u8],
    buf: &'b mut PathBuffer,
    intent: Intent,
) -> Route<'b> {
    place(&st.view, &Shim(st), dirfd, bytes, intent, buf)
}

/// Whether open flags may modify the file.
pub use capsule_core::boundary::effect::writes;

/// This process as the effects' [`Tier`]: the materialiser client and probes of the tree and
/// the host.
pub struct Effects<'a>(pub &'a State);

impl Tier for Effects<'_> {
    fn materialise(&mut self, op: u8, rel: &CStr) -> i32 {
        client::request(op, rel.to_bytes())
    }

    fn private(&mut self, rel: &CStr) -> bool {
        // SAFETY: plain struct, filled by the kernel.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `rel` NUL-terminated, `sb` writable.
        let r = unsafe { sys::newfstatat(self.0.tree_fd, rel.as_ptr(), &mut sb, libc::AT_SYMLINK_NOFOLLOW) };
        r == 0 && (sb.st_mode & libc::S_IFMT) == libc::S_IFREG && sb.st_nlink == 1
    }

    fn host_kind(&mut self, abs: &CStr) -> Option<u32> {
        // SAFETY: plain struct; `abs` NUL-terminated.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let found = unsafe { sys::newfstatat(libc::AT_FDCWD, abs.as_ptr(), &mut sb, libc::AT_SYMLINK_NOFOLLOW) == 0 };
        found.then_some(sb.st_mode & libc::S_IFMT)
    }
}

/// The kernel convention (a value, or -errno) as a `Result`.
pub fn check(r: c_long) -> Result<c_long, c_int> {
    if r < 0 { Err(c_int::try_from(-r).unwrap_or(libc::EIO)) } else { Ok(r) }
}

/// A `Result` back in the kernel convention.
pub fn unchecked(r: Result<c_long, c_int>) -> c_long {
    r.unwrap_or_else(|e| -c_long::from(e))
}

/// Whether a call placed at `placed` is made on the host as the program named it, or at a
/// host path: then, when the kernel refuses it (EACCES), the caller's buffer names the host
/// path (`Place::Original`'s docs) for [`brokered`].
pub fn on_host(placed: &Route<'_>) -> bool {
    matches!(placed, Route::Original | Route::Host(_))
}

/// `r`, the kernel's answer to a host call that changes a name or opens a file for writing:
/// when it is EACCES, the broker's answer instead (`call(path)`, path from `buf`): Landlock
/// refuses, for nothing, names made directly in a writable prefix that holds a narrower one
/// (`$HOME` around the store), and in directories made there during the run; the broker (the
/// materialiser, outside the domain) makes the call where the run's isolation rules allow it
/// (`capsule_core::supervisor::host`), else answers EACCES too.
pub fn brokered(r: c_long, buf: &PathBuffer, call: impl FnOnce(&[u8]) -> c_long) -> c_long {
    let path = buf.as_bytes();
    if r == -c_long::from(libc::EACCES) && path.first() == Some(&b'/') { call(path) } else { r }
}

/// (`dirfd`, `path`) as one absolute path, lexically (the broker's argument for a call made
/// below the hooks' routing, such as `truncate`'s own open).
pub fn absolute(st: &'static State, dirfd: c_int, path: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
    use capsule_core::boundary::Caller;
    out.clear();
    let p = path.to_bytes();
    if p.first() != Some(&b'/') {
        if dirfd == libc::AT_FDCWD {
            Shim(st).cwd(out)?
        } else {
            Shim(st).fd_path(dirfd, out)?
        }
        out.push(b"/")?;
    }
    out.push(p)
}

/// The descriptor an [`At`] is relative to, and its path.
pub fn at_fd<'b>(st: &State, at: At<'b>) -> (c_int, &'b CStr) {
    match at {
        At::Tree(rel) => (st.tree_fd, rel),
        At::Host(abs) => (libc::AT_FDCWD, abs),
    }
}

/// openat(2) of a placed path, in the kernel convention: a write-open (or a creation) in the
/// tree is the materialiser's (`client::open`): the program's Landlock domain has no right
/// to open a file of the tree for writing, so that a raw `open` of a pristine link (the
/// shared cache's inode) is the kernel's to refuse. Unless the domain lets the program write
/// the tree anyway (`State::tree_local`: the store is below a writable prefix), where the
/// round trip would protect nothing.
///
/// # Safety
/// `p` NUL-terminated.
pub unsafe fn openat_placed(st: &State, d: c_int, p: &CStr, flags: c_int, mode: libc::mode_t) -> c_long {
    if d == st.tree_fd && !st.tree_local && effect::opens_to_write(flags) {
        return crate::preload::client::open(p.to_bytes(), flags, mode);
    }
    // SAFETY: NUL-terminated path (caller).
    unsafe { sys::openat(d, p.as_ptr(), flags, mode) }
}

/// Make tree file `rel` private before a write: a pristine link (shared with the cache) or a
/// file not materialised yet is copied up by the materialiser; `Err(EIO)` when it cannot be.
pub fn ensure_private(st: &State, rel: &CStr) -> Result<(), c_int> {
    effect::make_private(&mut Effects(st), rel)
}

/// Run `op` against the tree; when it fails with ENOENT on a capsule file not materialised
/// yet, materialise it and run `op` once more.
pub fn in_tree(entry: Option<Entry<'_>>, rel: &CStr, mut op: impl FnMut() -> c_long) -> c_long {
    let Some(st) = super::state() else { return op() };
    unchecked(effect::in_tree(&mut Effects(st), entry, rel, || check(op())))
}
