//! The LD_PRELOAD tier: exported hooks and their runtime.
//!
//! Initialisation reads `CAPSULE_VIEW`, maps the view read-only, opens the sandbox tree as a
//! directory descriptor and publishes all of it once, as a `&'static` [`State`] in static
//! storage, before setting [`READY`]. Hooks never change it, so they need no lock. It runs in
//! our constructor, or earlier, on the first hooked call, when another library's constructor
//! calls in before ours ran (ld.so initialises a program's DT_NEEDED libraries before the
//! preloaded shim). It allocates nothing, so it is safe wherever a hook is. Without a view
//! every hook passes through.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod client;
pub mod guard;
pub mod hooks;
pub mod sys;
mod virt;

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_int};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use capsule_core::view::View;

pub use virt::{Virtual, virtualize};

use capsule_core::resolve::path::{PATH_CAP, PathBuffer};

/// Set once [`State`] is published.
pub static READY: AtomicBool = AtomicBool::new(false);
/// Set by the one thread that initialises (successfully or not).
static STARTED: AtomicBool = AtomicBool::new(false);
static STATE: AtomicPtr<State> = AtomicPtr::new(core::ptr::null_mut());

/// Everything the hooks read; immutable after initialisation.
pub struct State {
    /// The mapped view.
    pub view: View<'static>,
    /// `O_PATH` descriptor of the sandbox tree; hooks refuse to let the application close it.
    pub tree_fd: c_int,
    /// The tree's host path.
    pub tree: &'static [u8],
    /// The materialiser's abstract socket name (`CAPSULE_SOCKET`). Kept out of the view so
    /// that runs with the same inputs reuse the same view file.
    pub socket: &'static [u8],
    /// `LD_PRELOAD=...`, `CAPSULE_VIEW=...`, `CAPSULE_SOCKET=...` and `CAPSULE_COOKIE=...`
    /// as found at start, NUL-terminated, re-added to the environment of programs started
    /// with a cleared one.
    pub env: [&'static CStr; 4],
}

/// Room for one `NAME=value` environment entry and its NUL.
const ENV_CAP: usize = PATH_CAP + 16;

/// Static storage for the state and copies of our four environment entries (copied, so that a
/// later setenv or putenv cannot change them under us). Written only by the thread that won
/// [`STARTED`], before it publishes [`STATE`]; read-only afterwards.
struct Storage {
    state: UnsafeCell<MaybeUninit<State>>,
    env: [UnsafeCell<[u8; ENV_CAP]>; 4],
}

// SAFETY: see `Storage`: one writer (the winner of STARTED), before a Release store that every
// reader Acquires; no writes after that.
unsafe impl Sync for Storage {}

static STORAGE: Storage = Storage {
    state: UnsafeCell::new(MaybeUninit::uninit()),
    env: [
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
    ],
};

/// The published state, if initialisation succeeded (initialising first, see [`ready`]).
pub fn state() -> Option<&'static State> {
    if !ready() {
        return None;
    }
    // SAFETY: STATE is either null or points to the State in STORAGE, fully written before
    // the Release store that published the pointer, and never written again.
    unsafe { STATE.load(Ordering::Acquire).as_ref() }
}

/// Whether the hooks are live: initialises first if nobody has yet (a library constructor
/// calling in before ours). A thread that finds initialisation under way elsewhere sees
/// `false` and passes through.
#[inline]
pub fn ready() -> bool {
    if READY.load(Ordering::Acquire) {
        return true;
    }
    if !STARTED.load(Ordering::Relaxed)
        && STARTED.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    {
        init();
    }
    READY.load(Ordering::Acquire)
}

/// Copy environment entry `name=value` into `slot` ("name=value\0"); the whole entry and the
/// value's offset in it. `None` if unset or too long.
fn env_entry(name: &CStr, slot: usize) -> Option<(&'static CStr, usize)> {
    // SAFETY: getenv returns null or a pointer into the environment, NUL-terminated; we copy
    // it right away.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated, per getenv(3).
    let value = unsafe { CStr::from_ptr(p) }.to_bytes();
    let name = name.to_bytes();
    let len = name.len() + 1 + value.len();
    if len >= ENV_CAP {
        return None;
    }
    let cell = STORAGE.env.get(slot)?;
    // SAFETY: only the initialising thread (the winner of STARTED) gets here, once per slot,
    // and nothing reads the slot before STATE is published.
    let buf = unsafe { &mut *cell.get() };
    buf.get_mut(..name.len())?.copy_from_slice(name);
    *buf.get_mut(name.len())? = b'=';
    buf.get_mut(name.len() + 1..len)?.copy_from_slice(value);
    *buf.get_mut(len)? = 0;
    // SAFETY: from here on the slot is never written again, so a 'static shared view is sound.
    let done: &'static [u8; ENV_CAP] = unsafe { &*cell.get() };
    let entry = CStr::from_bytes_until_nul(done.get(..=len)?).ok()?;
    Some((entry, name.len() + 1))
}

/// Map the view file at `path` read-only for the life of the process.
fn map_view(path: &CStr) -> Option<&'static [u8]> {
    // SAFETY: NUL-terminated path; a raw syscall, so no hook sees it.
    let fd = unsafe { sys::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    let fd = c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `st` is a plain struct the kernel fills.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open, the path is empty with AT_EMPTY_PATH, and `st` is writable.
    let ok = unsafe { sys::newfstatat(fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) } == 0;
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

/// Say once, on stderr, that CAPSULE_VIEW was set but cannot be used: the program then runs
/// unvirtualised, which must not go unnoticed (a stale shim beside a newer capsule, say).
fn complain(why: &[u8]) {
    for part in [&b"capsule-shim: "[..], why, b"; this program runs without its capsule\n"] {
        // SAFETY: writing a readable buffer to stderr.
        let _ = unsafe { sys::write(2, part.as_ptr(), part.len()) };
    }
}

/// Called once, by the winner of [`STARTED`].
fn init() {
    // The supervisor's cookie (tier 2) first: from here on our raw syscalls carry it past the
    // filter, the view's and the tree's opens included.
    let cookie_entry = match env_entry(c"CAPSULE_COOKIE", 3) {
        Some((e, at)) => {
            sys::set_cookie(e.to_bytes().get(at..).unwrap_or_default());
            e
        }
        None => c"CAPSULE_COOKIE=",
    };
    let Some((view_entry, at)) = env_entry(c"CAPSULE_VIEW", 1) else { return };
    let Some(view_path) = view_entry.to_bytes_with_nul().get(at..).and_then(|b| CStr::from_bytes_with_nul(b).ok())
    else {
        return;
    };
    let Some(bytes) = map_view(view_path) else { return complain(b"cannot map the view") };
    let Ok(view) = View::new(bytes) else { return complain(b"the view is damaged or from another capsule version") };
    let tree = view.tree();
    let mut c = PathBuffer::new();
    if c.push(tree).is_err() {
        return;
    }
    // SAFETY: NUL-terminated path; the descriptor is ours for the life of the process.
    let fd = unsafe {
        sys::openat(libc::AT_FDCWD, c.as_cstr().as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
    };
    let Some(tree_fd) = c_int::try_from(fd).ok().filter(|&fd| fd >= 0) else { return };
    let preload = env_entry(c"LD_PRELOAD", 0).map_or(c"LD_PRELOAD=", |(e, _)| e);
    let (socket_entry, socket) = match env_entry(c"CAPSULE_SOCKET", 2) {
        Some((e, at)) => (e, e.to_bytes().get(at..).unwrap_or_default()),
        None => (c"CAPSULE_SOCKET=", &b""[..]),
    };
    let st = State { view, tree_fd, tree, socket, env: [preload, view_entry, socket_entry, cookie_entry] };
    // SAFETY: the winner of STARTED is the only writer, and nothing reads the slot before the
    // Release store below.
    let slot = unsafe { &mut *STORAGE.state.get() };
    let published: *mut State = slot.write(st);
    STATE.store(published, Ordering::Release);
    READY.store(true, Ordering::Release);
}

extern "C" fn constructor() {
    let _ = ready();
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;
