//! Exec in the capsule's view, for the exec hooks: what the kernel's binfmt handlers would
//! look up on the host — a `#!` script's interpreter, an ELF program's loader (`PT_INTERP`) —
//! is looked up through the view first, as `capsule_core::run::exec` does for the launcher's
//! first exec. The parsing is `capsule_core::exec`'s.
//!
//! [`Scratch::plan`] decides what to `execve`:
//! - a script whose interpreter (or the script itself) is in the capsule: the interpreter's
//!   tree or host path, with argv as the kernel builds it (`[interp, arg, script, args…]`,
//!   nested up to [`MAX_DEPTH`] levels) but naming every script by its *virtual* path, which
//!   the interpreter opens through the shim: `$0` is `/usr/bin/phar`, and a launcher that execs
//!   `$(dirname "$0")/sibling` reaches the capsule's sibling;
//! - a capsule program whose loader the capsule carries, when the launcher said the run uses
//!   it (`CAPSULE_LOADER`, [`State::loader`]): `ld.so --argv0 ARGV0 PROGRAM ARGS`;
//! - anything else: the routed path with the caller's argv, as before.
//!
//! What is about to run is materialised first, and every file of a capsule file's directory
//! with it (`OP_LINK_DIR`, once per sandbox), for what finds its siblings without the shim
//! (the loader's `$ORIGIN`).
//!
//! Fixed storage: the scripts' first lines, three path buffers and 64 argv slots live in
//! [`Scratch`] on the caller's stack; a longer argv is built in an anonymous mapping (a
//! syscall, not the heap; unmapped on drop, so left behind only by a `vfork` child whose
//! exec succeeded, as [`super::exec`]'s environment is).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{CStr, c_char, c_int, c_long, c_void};

use capsule_core::exec::{self, HEAD, INTERP_CAP, MAX_DEPTH};
use capsule_core::resolve::Intent;
use capsule_core::resolve::path::PathBuffer;
use capsule_core::view::Kind;

use super::{Route, in_tree, route};
use crate::preload::State;
use crate::preload::client::{self, OP_LINK_DIR};
use crate::preload::sys;

/// An argv or envp array.
pub type Argv = *const *const c_char;

/// `State::loader`: the run does not use the capsule's loader.
pub const LOADER_NONE: u8 = 0;
/// `State::loader`: `ld.so PROGRAM ARGS` (a loader without `--argv0`).
pub const LOADER_PLAIN: u8 = 1;
/// `State::loader`: `ld.so --argv0 ARGV0 PROGRAM ARGS`.
pub const LOADER_ARGV0: u8 = 2;

/// argv slots on the stack.
const ARGV_STACK: usize = 64;

/// What to execute.
pub enum Plan {
    /// `execve(path, argv)`. `original`: `path` is the caller's own (for `execveat`, relative
    /// to the caller's directory descriptor).
    Exec { path: *const c_char, argv: Argv, original: bool },
    /// Fail with this errno.
    Deny(c_int),
}

/// What one file of the chain turned out to be.
#[derive(Clone, Copy)]
struct Found {
    /// Where to execute it: the caller's pointer or one into a [`Scratch`] buffer.
    exe: *const c_char,
    /// The capsule's (its tree path).
    in_tree: bool,
    /// Not the caller's path as written (the tree's, or a rewritten host path).
    rewritten: bool,
    /// Bytes of its head read.
    n: usize,
    /// An ELF program.
    elf: bool,
    /// With `PT_INTERP` and not set-ID: the shim will be loaded into it.
    shim: bool,
    /// Length of its `PT_INTERP` path copied to `Scratch::ld` (0: none).
    ld_len: usize,
}

/// Storage for one exec decision; see the module docs.
pub struct Scratch {
    /// Each file's first bytes: the scripts' `#!` lines (names NUL-terminated in place), then
    /// the final program's header.
    lines: [[u8; HEAD]; MAX_DEPTH + 1],
    /// Where each level's interpreter name and argument start in its line.
    interp: [usize; MAX_DEPTH],
    arg: [Option<usize>; MAX_DEPTH],
    route: PathBuffer,
    first: PathBuffer,
    other: PathBuffer,
    /// The final program's `PT_INTERP`, NUL-terminated.
    ld: [u8; INTERP_CAP + 1],
    argv: [*const c_char; ARGV_STACK],
    map: Option<(*mut c_void, usize)>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some((p, len)) = self.map {
            // SAFETY: unmapping exactly the anonymous mapping `argv_slots` created.
            unsafe { libc::munmap(p, len) };
        }
    }
}

/// The number of entries of a NULL-terminated array (0 for a null array: Linux treats it as
/// empty).
///
/// # Safety
/// `a` is null or a NULL-terminated array.
unsafe fn count(a: Argv) -> usize {
    let mut n = 0;
    // SAFETY: NULL-terminated (caller); we stop at the NULL.
    while !a.is_null() && !unsafe { *a.add(n) }.is_null() {
        n += 1;
    }
    n
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// Empty.
    pub fn new() -> Scratch {
        Scratch {
            lines: [[0; HEAD]; MAX_DEPTH + 1],
            interp: [0; MAX_DEPTH],
            arg: [None; MAX_DEPTH],
            route: PathBuffer::new(),
            first: PathBuffer::new(),
            other: PathBuffer::new(),
            ld: [0; INTERP_CAP + 1],
            argv: [core::ptr::null(); ARGV_STACK],
            map: None,
        }
    }

    /// Decide how to execute `path` (relative to `dirfd`; a final symlink followed unless
    /// `!follow`) with `argv`.
    ///
    /// # Safety
    /// `path` NUL-terminated; `argv` null or NULL-terminated, its strings valid for the exec.
    pub unsafe fn plan(
        &mut self,
        st: &'static State,
        dirfd: c_int,
        path: *const c_char,
        argv: Argv,
        follow: bool,
    ) -> Plan {
        // A jailed process (`jail`) starts no program: it would see the whole view again.
        if super::jail::root().is_some() {
            return Plan::Deny(libc::EPERM);
        }
        // SAFETY: the caller's contract.
        let first = match unsafe { self.examine(st, 0, dirfd, path, follow) } {
            Ok(f) => f,
            Err(e) => return Plan::Deny(e),
        };
        let unchanged = Plan::Exec { path: first.exe, argv, original: !first.rewritten };
        // A path relative to another directory cannot be handed to an interpreter.
        // SAFETY: NUL-terminated (caller).
        let relative = unsafe { *path } != b'/' as c_char;
        let mut found = first;
        let mut levels = 0;
        let mut virtualised = first.rewritten;
        while let Some(sb) = exec::shebang(self.lines.get(levels).and_then(|l| l.get(..found.n)).unwrap_or_default()) {
            if levels == MAX_DEPTH || (relative && dirfd != libc::AT_FDCWD) {
                return unchanged;
            }
            let Some(line) = self.lines.get_mut(levels) else { return unchanged };
            // In bounds: `shebang` ranges end before HEAD - 1.
            if let Some(z) = line.get_mut(sb.interp.end) {
                *z = 0;
            }
            if let Some(z) = sb.arg.as_ref().and_then(|a| line.get_mut(a.end)) {
                *z = 0;
            }
            if let (Some(i), Some(a)) = (self.interp.get_mut(levels), self.arg.get_mut(levels)) {
                *i = sb.interp.start;
                *a = sb.arg.map(|r| r.start);
            }
            let name = line.as_ptr().wrapping_add(sb.interp.start).cast::<c_char>();
            levels += 1;
            // SAFETY: `name` is NUL-terminated inside `line`, which is not written again.
            found = match unsafe { self.examine(st, levels, libc::AT_FDCWD, name, true) } {
                Ok(f) => f,
                Err(e) => return Plan::Deny(e),
            };
            virtualised |= found.rewritten;
        }
        if levels > 0 && (!virtualised || !found.elf || (!found.shim && !found.in_tree)) {
            // Host scripts and interpreter: the kernel's business. An interpreter of another
            // format, or a static one from the host (it could not open a virtual path): the
            // kernel's exec, as before.
            return unchanged;
        }
        let ld = self.loader(st, levels, &found);
        if levels == 0 && ld.is_none() {
            return unchanged;
        }
        // SAFETY: the caller's contract.
        unsafe { self.rewrite(st, path, argv, levels, &found, ld) }
    }

    /// Build argv for `levels` scripts ending in `found` (and the loader `ld`: its name and
    /// tree path, if any) and the plan that executes it.
    ///
    /// # Safety
    /// As for [`Scratch::plan`].
    unsafe fn rewrite(
        &mut self,
        st: &State,
        path: *const c_char,
        argv: Argv,
        levels: usize,
        found: &Found,
        ld: Option<(*const c_char, *const c_char)>,
    ) -> Plan {
        // SAFETY: caller.
        let argc = unsafe { count(argv) };
        // Per level an argument and a script; the loader's name, option, argv[0] and program.
        let Some(slots) = self.argv_slots(argc + 2 * MAX_DEPTH + 4 + 1) else { return Plan::Deny(libc::ENOMEM) };
        let line_at = |s: &Scratch, level: usize, at: usize| {
            s.lines.get(level).map_or(core::ptr::null(), |l| l.as_ptr().wrapping_add(at).cast::<c_char>())
        };
        let name_of = |s: &Scratch, level: usize| line_at(s, level, s.interp.get(level).copied().unwrap_or(0));
        let mut n = 0;
        let mut put = |p: *const c_char| {
            // SAFETY: `slots` has room for every entry put (counted above) and the NULL.
            unsafe { *slots.add(n) = p };
            n += 1;
        };
        // argv[0] of what runs: the last interpreter as its script names it, or the caller's.
        let argv0 = match levels.checked_sub(1) {
            Some(last) => name_of(self, last),
            // SAFETY: argv has argc ≥ 1 entries.
            None if argc > 0 => unsafe { *argv },
            None => path,
        };
        match ld {
            Some((name, _)) => {
                put(name);
                if st.loader == LOADER_ARGV0 {
                    put(c"--argv0".as_ptr());
                    put(argv0);
                }
                put(found.exe);
            }
            None => put(argv0),
        }
        // Each level inwards: its interpreter's argument, then the script (the caller's path
        // for the first), named as the caller or the script above named it.
        for level in (0..levels).rev() {
            if let Some(a) = self.arg.get(level).copied().flatten() {
                put(line_at(self, level, a));
            }
            put(if level == 0 { path } else { name_of(self, level - 1) });
        }
        for i in 1..argc {
            // SAFETY: i < argc.
            put(unsafe { *argv.add(i) });
        }
        put(core::ptr::null());
        let exe = ld.map_or(found.exe, |(_, exe)| exe);
        Plan::Exec { path: exe, argv: slots.cast_const(), original: false }
    }

    /// Room for `n` argv entries: on the stack, or in an anonymous mapping (kept until drop).
    fn argv_slots(&mut self, n: usize) -> Option<*mut *const c_char> {
        if n <= ARGV_STACK {
            return Some(self.argv.as_mut_ptr());
        }
        let len = n.checked_mul(core::mem::size_of::<*const c_char>())?;
        let p = crate::preload::sys::map_anon(len)?;
        self.map = Some((p, len));
        Some(p.cast())
    }

    /// The capsule's loader for `found` (the final program of `levels` scripts), when the
    /// run uses it and the capsule has the program's `PT_INTERP`: its name (as the program
    /// names it) and its tree path, built in the buffer the plan no longer needs.
    fn loader(&mut self, st: &'static State, levels: usize, found: &Found) -> Option<(*const c_char, *const c_char)> {
        if st.loader == LOADER_NONE || !found.in_tree || !found.shim || found.ld_len == 0 {
            return None;
        }
        let Scratch { route: rbuf, first, other, ld, .. } = self;
        let name = ld.as_ptr().cast::<c_char>();
        // SAFETY: `ld` holds `ld_len` bytes and a NUL (`read_head`).
        let Route::Tree(rel, Some(e)) = (unsafe { route(st, libc::AT_FDCWD, name, rbuf, FOLLOW) }) else { return None };
        if e.kind != Kind::File {
            return None;
        }
        // SAFETY: NUL-terminated relative path; X_OK only.
        let ok = in_tree(Some(e), rel, || unsafe { sys::faccessat(st.tree_fd, rel.as_ptr(), libc::X_OK, 0) }) == 0;
        // The final program's path is in `first` when it is the caller's file, else in `other`
        // (and `first`, the caller's file, is not executed then).
        let out = if levels == 0 { other } else { first };
        (ok && tree_path(st, rel, out).is_ok()).then(|| (name, out.as_cstr().as_ptr()))
    }

    /// Locate the file named `name` (relative to `dirfd`) for level `level` of the chain:
    /// route it, materialise it (and its directory), and read its head into `lines[level]`.
    ///
    /// # Safety
    /// `name` NUL-terminated.
    unsafe fn examine(
        &mut self,
        st: &'static State,
        level: usize,
        dirfd: c_int,
        name: *const c_char,
        follow: bool,
    ) -> Result<Found, c_int> {
        let Scratch { lines, route: rbuf, first, other, ld, .. } = self;
        let head = lines.get_mut(level).ok_or(libc::ELOOP)?;
        let out = if level == 0 { first } else { other };
        let intent = Intent { follow, create: false };
        let host = |out: &mut PathBuffer, p: &CStr| -> Result<(*const c_char, c_long), c_int> {
            out.clear();
            out.push(p.to_bytes())?;
            let ptr = out.as_cstr().as_ptr();
            // SAFETY: NUL-terminated buffer; opened read-only for its head.
            Ok((ptr, unsafe { sys::openat(libc::AT_FDCWD, ptr, READ, 0) }))
        };
        // SAFETY: NUL-terminated (caller).
        let (exe, fd, in_tree_, rewritten) = match unsafe { route(st, dirfd, name, rbuf, intent) } {
            // SAFETY: NUL-terminated (caller); opened read-only for its head.
            Route::Original => (name, unsafe { sys::openat(dirfd, name, READ, 0) }, false, false),
            Route::Host(p) | Route::ReadOnly(p) => {
                let (ptr, fd) = host(out, p)?;
                (ptr, fd, false, true)
            }
            // SAFETY: NUL-terminated relative path; F_OK only.
            Route::TreeThenHost(rel, abs) => match unsafe { sys::faccessat(st.tree_fd, rel.as_ptr(), libc::F_OK, 0) } {
                0 => {
                    tree_path(st, rel, out)?;
                    // SAFETY: NUL-terminated relative path.
                    (out.as_cstr().as_ptr(), unsafe { sys::openat(st.tree_fd, rel.as_ptr(), READ, 0) }, true, true)
                }
                _ => {
                    let (ptr, fd) = host(out, abs)?;
                    (ptr, fd, false, true)
                }
            },
            Route::Tree(rel, entry) => {
                link_dir(st, rel.to_bytes());
                // SAFETY: NUL-terminated relative path.
                let fd = in_tree(entry, rel, || unsafe { sys::openat(st.tree_fd, rel.as_ptr(), READ, 0) });
                tree_path(st, rel, out)?;
                (out.as_cstr().as_ptr(), fd, true, true)
            }
            Route::Deny(e) => return Err(e),
        };
        let mut f = Found { exe, in_tree: in_tree_, rewritten, n: 0, elf: false, shim: false, ld_len: 0 };
        if let Ok(fd) = c_int::try_from(fd)
            && fd >= 0
        {
            // The loader's path is read only when it may be used.
            read_head(fd, head, ld, in_tree_ && st.loader != LOADER_NONE, &mut f);
            sys::close(fd);
        }
        Ok(f)
    }
}

/// A final symlink followed.
const FOLLOW: Intent = Intent { follow: true, create: false };

/// How a file about to be executed is opened to read its head: never blocking (a FIFO), never
/// becoming a controlling terminal.
const READ: c_int = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;

/// `st.tree/rel` into `out`; `/proc/self/fd/TREE_FD/rel` when this process cannot reach the
/// tree by its path (it runs as another user than the store's owner, whose root is private:
/// `run --user`, or a daemon that dropped privileges) — the inherited tree descriptor is how
/// it reaches the tree, the loader and an interpreter after the exec too.
pub(crate) fn tree_path(st: &State, rel: &CStr, out: &mut PathBuffer) -> Result<(), c_int> {
    out.clear();
    out.push(st.tree)?;
    // SAFETY: NUL-terminated buffer; faccessat2 only reads it.
    let reachable =
        unsafe { sys::faccessat(libc::AT_FDCWD, out.as_cstr().as_ptr(), libc::X_OK, libc::AT_EACCESS) } == 0;
    if !reachable && st.tree_fd >= 0 {
        out.clear();
        out.push(b"/proc/self/fd/")?;
        push_decimal(out, st.tree_fd)?;
    }
    out.push(b"/")?;
    out.push(rel.to_bytes())
}

/// Append `n` (≥ 0) in decimal to `out`.
fn push_decimal(out: &mut PathBuffer, n: c_int) -> Result<(), c_int> {
    let mut digits = [0u8; 20];
    out.push(crate::preload::sys::decimal(u64::from(n.unsigned_abs()), &mut digits))
}

/// Ask the materialiser to link every file of the directory holding tree file `rel`, unless
/// the view says it is linked already (or it is the root).
fn link_dir(st: &State, rel: &[u8]) {
    let Some(cut) = rel.iter().rposition(|&c| c == b'/') else { return };
    let dir = rel.get(..cut).unwrap_or_default();
    if st.view.lookup(dir).is_some_and(|e| e.needs_linking()) {
        let _ = client::request(OP_LINK_DIR, dir);
    }
}

/// Read the head of regular file `fd` into `head` and, for an ELF program, what its program
/// headers say (into `f`), with its `PT_INTERP` path into `ld` when `want_ld`.
fn read_head(fd: c_int, head: &mut [u8; HEAD], ld: &mut [u8; INTERP_CAP + 1], want_ld: bool, f: &mut Found) {
    // SAFETY: a plain struct the kernel fills.
    let mut sb: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open, the path empty with AT_EMPTY_PATH, `sb` writable.
    let ok = unsafe { sys::newfstatat(fd, c"".as_ptr(), &mut sb, libc::AT_EMPTY_PATH) } == 0;
    if !ok || sb.st_mode & libc::S_IFMT != libc::S_IFREG {
        return;
    }
    // SAFETY: `head` is writable for HEAD bytes.
    let n = unsafe { sys::read(fd, head.as_mut_ptr(), HEAD) };
    f.n = usize::try_from(n).unwrap_or(0);
    let got = head.get(..f.n).unwrap_or_default();
    let Some(e) = exec::elf(got) else { return };
    f.elf = true;
    let Some((off, size)) = exec::interp_segment(&e, |off, buf| pread(fd, got, off, buf)) else { return };
    f.shim = sb.st_mode & 0o6000 == 0;
    let Some(size) = usize::try_from(size).ok().filter(|&s| want_ld && s <= INTERP_CAP) else { return };
    let Some(seg) = ld.get_mut(..size) else { return };
    if pread(fd, &[], off, seg) != size {
        return;
    }
    let len = exec::interp_path(seg).map_or(0, <[u8]>::len);
    if let Some(z) = ld.get_mut(len) {
        *z = 0;
        f.ld_len = len;
    }
}

/// `buf.len()` bytes of `fd` at `off`: from `head` (the file's first bytes) when they are
/// there, else with pread(2). The bytes read.
fn pread(fd: c_int, head: &[u8], off: u64, buf: &mut [u8]) -> usize {
    let start = usize::try_from(off).unwrap_or(usize::MAX);
    if let Some(src) = start.checked_add(buf.len()).and_then(|end| head.get(start..end)) {
        buf.copy_from_slice(src);
        return buf.len();
    }
    let (Ok(off), Ok(len)) = (c_long::try_from(off), c_long::try_from(buf.len())) else { return 0 };
    // SAFETY: `buf` is writable for `len` bytes.
    let r = unsafe { sys::raw(libc::SYS_pread64, fd.into(), buf.as_mut_ptr() as c_long, len, off, 0, 0) };
    usize::try_from(r).unwrap_or(0)
}
