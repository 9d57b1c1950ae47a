//! The LD_PRELOAD tier: exported hooks and their runtime.
//!
//! The constructor reads `CAPSULE_VIEW`, maps the view read-only, opens the sandbox tree as a
//! directory descriptor and publishes all of it once, as a `&'static` [`State`], before setting
//! [`READY`]. Hooks never change it, so they need no lock. Until `READY` (calls from other
//! libraries' constructors, or a process without a view) every hook passes through.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod client;
pub mod guard;
pub mod hooks;
pub mod sys;
mod virt;

use core::ffi::{CStr, c_int};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use capsule_core::view::View;

pub use virt::{Virtual, virtualize};

/// Set once the constructor published [`State`].
pub static READY: AtomicBool = AtomicBool::new(false);
static STATE: AtomicPtr<State> = AtomicPtr::new(core::ptr::null_mut());

/// Everything the hooks read; immutable after the constructor.
pub struct State {
    /// The mapped view.
    pub view: View<'static>,
    /// `O_PATH` descriptor of the sandbox tree; hooks refuse to let the application close it.
    pub tree_fd: c_int,
    /// The tree's host path.
    pub tree: &'static [u8],
    /// `LD_PRELOAD=...` and `CAPSULE_VIEW=...` as found at start, NUL-terminated, re-added
    /// to the environment of programs started with a cleared one.
    pub env: [&'static CStr; 2],
}

/// The published state, if the constructor ran.
pub fn state() -> Option<&'static State> {
    // SAFETY: STATE is either null or a pointer to a leaked, never-freed, never-mutated State.
    unsafe { STATE.load(Ordering::Acquire).as_ref() }
}

/// `getenv(name)` as bytes, at constructor time only.
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv returns a pointer into the environment, NUL-terminated, which lives as
    // long as the process unless someone calls setenv on that name; we copy it right away.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated, per getenv(3).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Some(Box::leak(bytes.to_vec().into_boxed_slice()))
}

fn leak_cstr(prefix: &[u8], value: &[u8]) -> &'static CStr {
    let mut v = prefix.to_vec();
    v.extend_from_slice(value);
    v.push(0);
    let leaked: &'static [u8] = Box::leak(v.into_boxed_slice());
    CStr::from_bytes_until_nul(leaked).unwrap_or(c"")
}

/// Map the view file at `path` read-only for the life of the process.
fn map_view(path: &[u8]) -> Option<&'static [u8]> {
    let mut c = path.to_vec();
    c.push(0);
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let fd = unsafe { libc::open(c.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `st` is a plain struct the kernel fills.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    let len = usize::try_from(st.st_size).unwrap_or(0);
    if !ok || len == 0 {
        sys::close(fd);
        return None;
    }
    // SAFETY: a fresh private read-only mapping of `len` bytes of an open file.
    let p = unsafe { libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) };
    sys::close(fd);
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is `len` readable bytes and is never unmapped. View files are
    // immutable once renamed into place (written temp → rename), so no SIGBUS from truncation.
    Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
}

fn init() {
    let Some(view_path) = env(c"CAPSULE_VIEW") else { return };
    let Some(bytes) = map_view(view_path) else { return };
    let Ok(view) = View::new(bytes) else { return };
    let tree = view.tree();
    let mut c = tree.to_vec();
    c.push(0);
    // SAFETY: NUL-terminated path; the descriptor is ours for the life of the process.
    let tree_fd = unsafe { libc::open(c.as_ptr().cast(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if tree_fd < 0 {
        return;
    }
    let preload = env(c"LD_PRELOAD").unwrap_or_default();
    let st = State {
        view,
        tree_fd,
        tree,
        env: [leak_cstr(b"LD_PRELOAD=", preload), leak_cstr(b"CAPSULE_VIEW=", view_path)],
    };
    STATE.store(Box::leak(Box::new(st)), Ordering::Release);
    READY.store(true, Ordering::Release);
}

extern "C" fn constructor() {
    init();
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;
