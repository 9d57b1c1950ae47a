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

mod arm;
pub mod client;
pub mod dispatch;
pub mod guard;
pub mod hooks;
pub mod sys;
pub(crate) mod virt;

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_int, c_long};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use capsule_core::view::{View, live};

pub use virt::Shim;

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
    /// Whether the program's Landlock domain lets it open the tree's files for writing itself
    /// (`CAPSULE_TREE_LOCAL=1`: the store is below a writable prefix, or the run is not
    /// confined); else the materialiser opens them (`hooks::openat_placed`).
    pub tree_local: bool,
    /// The inherited view descriptor (`CAPSULE_VIEW_FD`), kept open for our children; -1.
    pub view_fd: c_int,
    /// The run's host name (`CAPSULE_HOSTNAME`), empty when the machine's is kept.
    pub hostname: &'static [u8],
    /// The run's domain name (`CAPSULE_DOMAIN`), empty when the machine's is kept.
    pub domain: &'static [u8],
    /// The capsule's IPv4 address in network byte order (`CAPSULE_IP`), 0 without one.
    pub ipv4: u32,
    /// The interface that shows the capsule's address and MAC (`CAPSULE_IFACE` = "NAME/HEX"),
    /// empty without one.
    pub iface: &'static [u8],
    /// The capsule's MAC, if it has one.
    pub mac: Option<[u8; 6]>,
    /// The materialiser's abstract socket name (`CAPSULE_SOCKET`). Kept out of the view so
    /// that runs with the same inputs reuse the same view file.
    pub socket: &'static [u8],
    /// Whether the capsule's programs are started with the capsule's own loader
    /// (`CAPSULE_LOADER`: `hooks::binfmt::LOADER_*`).
    pub loader: u8,
    /// `LD_PRELOAD=...`, `CAPSULE_VIEW=...`, `CAPSULE_SOCKET=...`, `CAPSULE_COOKIE=...`,
    /// `CAPSULE_VIEW_FD=...`, `CAPSULE_TREE_FD=...`, `CAPSULE_HOSTNAME=...`,
    /// `CAPSULE_DOMAIN=...`, `CAPSULE_IP=...`, `CAPSULE_IFACE=...`, `CAPSULE_LOADER=...` and
    /// `CAPSULE_LIVE_FD=...`, `CAPSULE_TREE_LOCAL=...` as found at start, NUL-terminated, re-added to the environment of programs started
    /// with a cleared one.
    pub env: [&'static CStr; ENV_SLOTS],
}

/// Our environment entries ([`State::env`]).
const ENV_SLOTS: usize = 13;

/// Room for one `NAME=value` environment entry and its NUL.
const ENV_CAP: usize = PATH_CAP + 16;

/// Static storage for the state and copies of our environment entries (copied, so that a
/// later setenv or putenv cannot change them under us). Written only by the thread that won
/// [`STARTED`], before it publishes [`STATE`]; read-only afterwards.
struct Storage {
    state: UnsafeCell<MaybeUninit<State>>,
    env: [UnsafeCell<[u8; ENV_CAP]>; ENV_SLOTS],
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
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
        UnsafeCell::new([0; ENV_CAP]),
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

/// An inherited descriptor named by environment variable `name` (decimal), with its entry
/// (copied into slot `slot`); -1 when absent, malformed or not open.
fn inherited(name: &CStr, slot: usize) -> (&'static CStr, c_int) {
    let Some((entry, at)) = env_entry(name, slot) else { return (c"CAPSULE_UNSET=", -1) };
    let digits = entry.to_bytes().get(at..).unwrap_or_default();
    let mut v: c_int = 0;
    for &d in digits {
        if !d.is_ascii_digit() || v > 1 << 20 {
            return (entry, -1);
        }
        v = v * 10 + c_int::from(d - b'0');
    }
    // SAFETY: F_GETFD on an integer; fails with EBADF when the descriptor is not open.
    let open = unsafe { sys::raw(libc::SYS_fcntl, v.into(), libc::F_GETFD.into(), 0, 0, 0, 0) } >= 0;
    (entry, if digits.is_empty() || !open { -1 } else { v })
}

/// Twelve hex digits as a MAC address.
fn parse_mac_hex(s: &[u8]) -> Option<[u8; 6]> {
    if s.len() != 12 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 6];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(*s.get(2 * i)?)? << 4 | digit(*s.get(2 * i + 1)?)?;
    }
    Some(out)
}

/// "a.b.c.d" as a host-order u32, without allocating.
fn parse_ipv4(s: &[u8]) -> Option<u32> {
    let mut out: u32 = 0;
    let mut parts = 0;
    for part in s.split(|&c| c == b'.') {
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = part.iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'));
        if v > 255 {
            return None;
        }
        out = (out << 8) | v;
        parts += 1;
    }
    (parts == 4).then_some(out)
}

/// Open `path` with `flags` (inheritable) at the number environment entry `entry`
/// ("NAME=N") names, if that number is free; the descriptor, or -1.
fn reopen_at(entry: &CStr, path: &CStr, flags: c_int) -> c_int {
    let digits = entry.to_bytes().rsplit(|&c| c == b'=').next().unwrap_or_default();
    let mut n: c_int = 0;
    for &d in digits {
        if !d.is_ascii_digit() || n > 1 << 20 {
            return -1;
        }
        n = n * 10 + c_int::from(d - b'0');
    }
    if digits.is_empty() || n < 3 {
        return -1;
    }
    // SAFETY: NUL-terminated path; a raw syscall.
    let fd = unsafe { sys::openat(libc::AT_FDCWD, path.as_ptr(), flags, 0) };
    let Some(fd) = c_int::try_from(fd).ok().filter(|&fd| fd >= 0) else { return -1 };
    if fd == n {
        return n;
    }
    // SAFETY: integer arguments; `n` is free (the caller found it closed).
    let r = unsafe { sys::raw(libc::SYS_dup3, fd.into(), n.into(), 0, 0, 0, 0) };
    sys::close(fd);
    if r == c_long::from(n) { n } else { -1 }
}

/// Map the view file at `path` read-only for the life of the process.
fn map_view(path: &CStr) -> Option<&'static [u8]> {
    // SAFETY: NUL-terminated path; a raw syscall, so no hook sees it.
    let fd = unsafe { sys::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    let fd = c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    let r = map_fd(fd);
    sys::close(fd);
    r
}

/// Map the view open on `fd` read-only for the life of the process (`fd` stays open).
fn map_fd(fd: c_int) -> Option<&'static [u8]> {
    // SAFETY: `st` is a plain struct the kernel fills.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open, the path is empty with AT_EMPTY_PATH, and `st` is writable.
    let ok = unsafe { sys::newfstatat(fd, c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) } == 0;
    let len = usize::try_from(st.st_size).unwrap_or(0);
    if !ok || len == 0 {
        return None;
    }
    // SAFETY: a fresh private read-only mapping of `len` bytes of an open file.
    let p = unsafe { libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0) };
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
    // Tier 2 armed here, after the loader, when the launcher left it to us.
    arm::arm_if_asked();
    let Some((view_entry, at)) = env_entry(c"CAPSULE_VIEW", 1) else { return };
    let Some(view_path) = view_entry.to_bytes_with_nul().get(at..).and_then(|b| CStr::from_bytes_with_nul(b).ok())
    else {
        return;
    };
    // Inherited descriptors first: they work after the program changed its user.
    let (view_fd_entry, view_fd) = inherited(c"CAPSULE_VIEW_FD", 4);
    let (tree_fd_entry, inherited_tree) = inherited(c"CAPSULE_TREE_FD", 5);
    let (live_fd_entry, live_fd) = inherited(c"CAPSULE_LIVE_FD", 11);
    let mapped = if view_fd >= 0 { map_fd(view_fd) } else { None };
    let Some(bytes) = mapped.or_else(|| map_view(view_path)) else { return complain(b"cannot map the view") };
    // A parent closed or marked close-on-exec what it inherited (apt marks every descriptor
    // before it execs dpkg): put them back at the same numbers, while we still can open the
    // paths, so that our own children that change user inherit them.
    let view_fd = if view_fd < 0 { reopen_at(view_fd_entry, view_path, libc::O_RDONLY) } else { view_fd };
    let Ok(view) = View::new(bytes) else { return complain(b"the view is damaged or from another capsule version") };
    // The sandbox's deletions since the view was made (none if it cannot be mapped).
    let mut table = PathBuffer::new();
    let live = live::file_of(view.tree(), &mut table).and_then(|()| {
        // Our own raw open: it carries the run's cookie, so tier 2 is not asked (libc's open
        // would be a supervisor round trip at every process start).
        // SAFETY: NUL-terminated path; the descriptor is closed right after mapping.
        let fd = unsafe { sys::openat(libc::AT_FDCWD, table.as_cstr().as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
        match c_int::try_from(fd).ok().filter(|&fd| fd >= 0) {
            Some(fd) => {
                let m = live::Mapping::from_fd(fd, false);
                sys::close(fd);
                m
            }
            // Not ours to open by path (a program of another user, `run --user`): the
            // descriptor it inherited, kept open for its children.
            None if live_fd >= 0 => live::Mapping::from_fd(live_fd, false),
            None => None,
        }
    });
    let view = view.with_live(live.and_then(live::Mapping::leak));
    let tree = view.tree();
    let mut c = PathBuffer::new();
    if c.push(tree).is_err() {
        return;
    }
    let inherited_tree = if inherited_tree < 0 {
        reopen_at(tree_fd_entry, c.as_cstr(), libc::O_PATH | libc::O_DIRECTORY)
    } else {
        inherited_tree
    };
    let tree_fd = if inherited_tree >= 0 {
        inherited_tree
    } else {
        // SAFETY: NUL-terminated path; the descriptor is ours for the life of the process.
        let fd = unsafe {
            sys::openat(libc::AT_FDCWD, c.as_cstr().as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
        };
        let Some(low) = c_int::try_from(fd).ok().filter(|&fd| fd >= 0) else { return };
        out_of_the_way(low)
    };
    let preload = env_entry(c"LD_PRELOAD", 0).map_or(c"LD_PRELOAD=", |(e, _)| e);
    let (socket_entry, socket) = match env_entry(c"CAPSULE_SOCKET", 2) {
        Some((e, at)) => (e, e.to_bytes().get(at..).unwrap_or_default()),
        None => (c"CAPSULE_SOCKET=", &b""[..]),
    };
    die_with_launcher(socket);
    let value = |name: &CStr, slot: usize, unset: &'static CStr| match env_entry(name, slot) {
        Some((e, at)) => (e, e.to_bytes().get(at..).unwrap_or_default()),
        None => (unset, &b""[..]),
    };
    let (host_entry, hostname) = value(c"CAPSULE_HOSTNAME", 6, c"CAPSULE_HOSTNAME=");
    let (domain_entry, domain) = value(c"CAPSULE_DOMAIN", 7, c"CAPSULE_DOMAIN=");
    let (ip_entry, ip) = value(c"CAPSULE_IP", 8, c"CAPSULE_IP=");
    let ipv4 = parse_ipv4(ip).map_or(0, u32::to_be);
    let (iface_entry, iface_value) = value(c"CAPSULE_IFACE", 9, c"CAPSULE_IFACE=");
    let (iface, mac_hex) = match iface_value.iter().position(|&c| c == b'/') {
        Some(i) => (iface_value.get(..i).unwrap_or_default(), iface_value.get(i + 1..).unwrap_or_default()),
        None => (iface_value, &b""[..]),
    };
    let mac = parse_mac_hex(mac_hex);
    let (loader_entry, loader) = value(c"CAPSULE_LOADER", 10, c"CAPSULE_LOADER=");
    let loader = match loader {
        b"argv0" => hooks::binfmt::LOADER_ARGV0,
        b"plain" => hooks::binfmt::LOADER_PLAIN,
        _ => hooks::binfmt::LOADER_NONE,
    };
    let (local_entry, local) = value(c"CAPSULE_TREE_LOCAL", 12, c"CAPSULE_TREE_LOCAL=");
    let tree_local = local == b"1";
    let env = [
        preload,
        view_entry,
        socket_entry,
        cookie_entry,
        view_fd_entry,
        tree_fd_entry,
        host_entry,
        domain_entry,
        ip_entry,
        iface_entry,
        loader_entry,
        live_fd_entry,
        local_entry,
    ];
    let st =
        State { view, tree_fd, tree, tree_local, view_fd, hostname, domain, ipv4, iface, mac, socket, loader, env };
    // SAFETY: the winner of STARTED is the only writer, and nothing reads the slot before the
    // Release store below.
    let slot = unsafe { &mut *STORAGE.state.get() };
    let published: *mut State = slot.write(st);
    STATE.store(published, Ordering::Release);
    READY.store(true, Ordering::Release);
}

/// A process whose parent is the run's launcher (the program, or an orphan the launcher
/// adopted that then executed a program) dies with it: `PR_SET_PDEATHSIG(SIGKILL)`, as the
/// launcher sets for the program it starts (capsule_core::run::lifetime). The launcher's pid
/// is the one in the materialiser's socket name, `capsule-PID-…`.
fn die_with_launcher(socket: &[u8]) {
    let Some(digits) = socket.strip_prefix(b"capsule-") else { return };
    let mut launcher: c_long = 0;
    for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
        launcher = launcher.saturating_mul(10).saturating_add(c_long::from(d - b'0'));
    }
    // SAFETY: getppid takes no arguments.
    let parent = || unsafe { sys::raw(libc::SYS_getppid, 0, 0, 0, 0, 0, 0) };
    if launcher <= 1 || parent() != launcher {
        return;
    }
    // SAFETY: prctl with integer arguments.
    unsafe { sys::raw(libc::SYS_prctl, libc::PR_SET_PDEATHSIG.into(), libc::SIGKILL.into(), 0, 0, 0, 0) };
    if parent() != launcher {
        // The launcher died before the prctl: nobody will signal us.
        // SAFETY: integer arguments; getpid takes none.
        unsafe {
            let me = sys::raw(libc::SYS_getpid, 0, 0, 0, 0, 0, 0);
            sys::raw(libc::SYS_kill, me, libc::SIGKILL.into(), 0, 0, 0, 0);
        }
    }
}

/// Where the tree descriptor lives: the lowest free number from [`HIGH_FD`], away from the
/// small numbers programs pick themselves (a shell's `exec 3<file`, debconf's fd 3 in
/// maintainer scripts) with dup2, which would silently replace it. Falls back to `fd` when the
/// descriptor limit is lower.
const HIGH_FD: c_int = 1000;

fn out_of_the_way(fd: c_int) -> c_int {
    // SAFETY: fcntl on a descriptor we own; integer arguments only.
    let high = unsafe { sys::raw(libc::SYS_fcntl, fd.into(), libc::F_DUPFD_CLOEXEC.into(), HIGH_FD.into(), 0, 0, 0) };
    match c_int::try_from(high) {
        Ok(h) if h >= 0 => {
            sys::close(fd);
            h
        }
        _ => fd,
    }
}

extern "C" fn constructor() {
    let _ = ready();
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;
