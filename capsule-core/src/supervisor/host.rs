//! The broker: host calls made for a program outside its Landlock domain, where the domain
//! refuses what the run's isolation rules allow.
//!
//! Landlock rights only add up down a hierarchy. Where a writable prefix holds a narrower one
//! (the default `$HOME`, merged, holding the store, which no program may write:
//! `run::protect_store`), the writable prefix is expanded (`run::confine`): its entries are
//! granted one by one, except the branch leading to the narrower prefix, and the directory
//! itself has no right to make or remove an entry; nor has an entry made there during the run
//! (a rule holds on the inode it was given for). So `echo > ~/.lesshst`, `mkdir ~/.npm` and
//! what the program then writes below it are refused by the kernel though the rules say
//! `$HOME` is merged. The shim, refused (EACCES) a write of a host path, asks the
//! materialiser ([`crate::boundary::effect::OP_HOST`]), which makes the call here with the
//! caller's credentials and umask; tier 2's supervisor calls [`perform`] itself.
//!
//! What it does is what the kernel would let the program do if Landlock could grant a prefix
//! with a hole in it, and no more ([`allowed`]): the canonical location of every name it
//! makes, removes or opens for writing (its parent directory opened as the caller, then named
//! by the kernel) must be governed by a merged or passed-through rule that was expanded (so
//! not the store, not a write-copy system directory, not `/proc`, `/sys` or `/dev`), and must
//! not be on the way to a narrower prefix (`rm -r ~/.local` would take the store with it).
//! The final name is never followed: a symlink met there is resolved once, its target checked
//! the same way, and opened through its descriptor. Device nodes are neither opened nor made.

#![allow(unsafe_code)] // *at system calls on our own descriptors and buffers

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::view::{Kind, Mode, View};

pub use crate::boundary::effect::host_call;

/// One call the broker makes.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// open(2) with these flags and mode: the descriptor.
    Open {
        /// open flags.
        flags: i32,
        /// Mode of a new file.
        mode: u32,
    },
    /// mkdir(2).
    Mkdir {
        /// Mode.
        mode: u32,
    },
    /// mknod(2) of a regular file, FIFO or socket.
    Mknod {
        /// Type and mode.
        mode: u32,
    },
    /// symlink(2): the new link points at `target`.
    Symlink {
        /// The link's content.
        target: &'a CStr,
    },
    /// unlinkat(2) (`AT_REMOVEDIR` in flags for rmdir).
    Unlink {
        /// unlinkat flags.
        flags: i32,
    },
    /// renameat2(2) to `to`.
    Rename {
        /// The new name (absolute).
        to: &'a CStr,
        /// renameat2 flags.
        flags: u32,
    },
    /// linkat(2): a new name `to` for the file (never following a symlink).
    Link {
        /// The new name (absolute).
        to: &'a CStr,
    },
    /// bind(2) of the program's unix socket (a descriptor of ours for it) to the path.
    Bind {
        /// The socket.
        socket: std::os::fd::RawFd,
    },
}

impl<'a> Call<'a> {
    /// The call a request names: `call` (a [`host_call`] value), its flags and mode, and the
    /// second path (`other`: a symlink's target, a rename's or link's new name).
    /// `socket`: the descriptor that came with the request (a bind's).
    pub fn decode(
        call: u8,
        flags: i32,
        mode: u32,
        other: Option<&'a CStr>,
        socket: Option<std::os::fd::RawFd>,
    ) -> Option<Call<'a>> {
        Some(match call {
            host_call::OPEN => Call::Open { flags, mode },
            host_call::MKDIR => Call::Mkdir { mode },
            host_call::MKNOD => Call::Mknod { mode },
            host_call::SYMLINK => Call::Symlink { target: other? },
            host_call::UNLINK => Call::Unlink { flags },
            host_call::RENAME => Call::Rename { to: other?, flags: flags.cast_unsigned() },
            host_call::LINK => Call::Link { to: other? },
            host_call::BIND => Call::Bind { socket: socket? },
            _ => return None,
        })
    }
}

/// Whether a mode lets the program write the host.
fn writable(m: Mode) -> bool {
    matches!(m, Mode::Merged | Mode::Passthrough)
}

/// Whether the run's rules (`view`'s) let the broker change host path `abs` (absolute,
/// canonical) for the program: it is governed by a writable rule that has a narrower rule
/// below it (one Landlock cannot express, so the kernel may have refused for nothing); it is
/// not on the way to a narrower rule (nor one itself); and it is not in a kernel filesystem
/// (`/proc`, `/sys`, `/dev`: the broker runs in the host's mount namespace, where they are
/// writable, and the program's grants there hold as they are).
pub fn allowed(view: &View<'_>, abs: &[u8]) -> bool {
    let Some(rel) = abs.strip_prefix(b"/") else { return false };
    if [&b"proc"[..], b"sys", b"dev"]
        .iter()
        .any(|k| rel.starts_with(k) && matches!(rel.get(k.len()), None | Some(b'/')))
    {
        return false;
    }
    if rel.split(|&c| c == b'/').any(|c| c.is_empty() || c == b"." || c == b"..") && !rel.is_empty() {
        return false;
    }
    let Some((prefix, mode)) = view.rule_of(rel).and_then(|i| view.rule(i)) else { return false };
    if !writable(mode) {
        return false;
    }
    let below = |outer: &[u8], inner: &[u8]| {
        outer.is_empty() || (inner.starts_with(outer) && inner.get(outer.len()) == Some(&b'/'))
    };
    let narrower = (0..view.rule_count()).filter_map(|i| view.rule(i)).filter(|(_, m)| !writable(*m));
    let mut expanded = false;
    for (n, _) in narrower {
        // `abs` is the narrower prefix or on its way: moving or removing it would move the
        // narrower prefix.
        if n == rel || below(rel, n) {
            return false;
        }
        expanded |= below(prefix, n);
    }
    expanded
}

/// Whether the run's rules let the program change the file or directory the supervisor holds
/// as `fd` (one it opened for the program, following the program's path): its canonical
/// location is governed by a merged or passed-through rule, or lies below a linked capsule's
/// shared state (a redirect). The supervisor walks host paths itself, outside the domain, and a
/// symlink on the host (one the program made in `$HOME`, say, to a file of the store) would
/// otherwise carry a change it makes for the program (an open for writing, a chmod) where the
/// program may not make it. Not a path (a pipe, a socket): yes. The refusal is EROFS where a
/// read-only rule governs (the store), as a read-only mount answers, else EACCES.
pub fn lands_writable(view: &View<'_>, fd: &OwnedFd) -> Result<(), i32> {
    let Ok(at) = fd_path(fd) else { return Err(libc::EACCES) };
    writable_at(view, &at)
}

/// [`lands_writable`] for name `name` in directory `dir` (one the supervisor opened): its
/// location is the directory's canonical one joined with the name.
pub fn lands_writable_in(view: &View<'_>, dir: &OwnedFd, name: &[u8]) -> Result<(), i32> {
    let Ok(at) = fd_path(dir) else { return Err(libc::EACCES) };
    writable_at(view, &joined(&at, name))
}

/// Whether the run's rules let the program change what is at canonical host location `at`
/// (the refusal's errno otherwise).
fn writable_at(view: &View<'_>, at: &[u8]) -> Result<(), i32> {
    let Some(rel) = at.strip_prefix(b"/") else { return Ok(()) };
    let mode = view.rule_of(rel).and_then(|i| view.rule(i)).map(|(_, m)| m);
    let redirected = || {
        (0..view.len()).filter_map(|i| view.entry(i)).any(|e| {
            e.kind == Kind::Redirect && at.starts_with(e.target) && matches!(at.get(e.target.len()), None | Some(b'/'))
        })
    };
    if mode.is_none_or(writable) || redirected() {
        Ok(())
    } else if mode == Some(Mode::ReadOnly) {
        Err(libc::EROFS)
    } else {
        Err(libc::EACCES)
    }
}

/// [`lands_writable`] for host path `abs` as a call reaches it: the file itself (its final
/// symlink followed when `follow`), or for a call that makes or removes the name (`parent`),
/// the directory that holds it. A path that does not resolve is the kernel's to refuse: yes.
pub fn reaches_writable(view: &View<'_>, abs: &CStr, follow: bool, parent: bool) -> Result<(), i32> {
    let fd = if parent {
        let mut b = abs.to_bytes();
        while b.len() > 1 && b.ends_with(b"/") {
            b = &b[..b.len() - 1];
        }
        let Some(cut) = b.iter().rposition(|&c| c == b'/') else { return Ok(()) };
        let Ok(dir) = CString::new(&b[..cut.max(1)]) else { return Ok(()) };
        open(libc::AT_FDCWD, &dir, libc::O_PATH | libc::O_DIRECTORY, 0)
    } else {
        open(libc::AT_FDCWD, abs, libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW }, 0)
    };
    fd.map_or(Ok(()), |fd| lands_writable(view, &fd))
}

/// Whether the broker may make a new name in directory `dir` (absolute, canonical): as for
/// any name there that is not on the way to a narrower rule ([`allowed`]).
fn allowed_in(view: &View<'_>, dir: &[u8]) -> bool {
    let mut probe = dir.to_vec();
    if probe != b"/" {
        probe.push(b'/');
    }
    // No rule names this: a name of the directory's own, not on any rule's way.
    probe.push(1);
    allowed(view, &probe)
}

/// Whether `call` on host path `abs` (as the program named it) is one the broker may make:
/// [`allowed`], or for an `O_TMPFILE` open, whose path is the directory the unnamed file is
/// made in, [`allowed_in`] that directory. What tier 2 asks before it brokers a call rather
/// than let the kernel refuse it; [`perform`] checks the canonical location again.
pub fn may(view: &View<'_>, abs: &[u8], call: &Call<'_>) -> bool {
    match call {
        Call::Open { flags, .. } if flags & libc::O_TMPFILE == libc::O_TMPFILE => allowed_in(view, abs),
        _ => allowed(view, abs),
    }
}

/// An open `O_PATH` directory and the kernel's name for it.
struct Dir {
    fd: OwnedFd,
    path: Vec<u8>,
}

/// Split absolute `abs` into its parent directory (opened as the caller: `O_PATH`, following
/// symlinks as the program's own call would) and its last name (trailing slashes dropped).
fn parent_of(abs: &CStr) -> Result<(Dir, CString), i32> {
    let mut b = abs.to_bytes();
    while b.len() > 1 && b.ends_with(b"/") {
        b = &b[..b.len() - 1];
    }
    let cut = b.iter().rposition(|&c| c == b'/').ok_or(libc::EINVAL)?;
    let (dir, name) = (&b[..cut.max(1)], &b[cut + 1..]);
    if name.is_empty() || name == b"." || name == b".." || !b.starts_with(b"/") {
        return Err(libc::EACCES);
    }
    let dir = CString::new(dir).map_err(|_| libc::EINVAL)?;
    let fd = open(libc::AT_FDCWD, &dir, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let path = fd_path(&fd)?;
    Ok((Dir { fd, path }, CString::new(name).map_err(|_| libc::EINVAL)?))
}

/// The kernel's name for our descriptor `fd`.
fn fd_path(fd: &OwnedFd) -> Result<Vec<u8>, i32> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Directory path `dir` joined with `name`.
fn joined(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut full = dir.to_vec();
    if full.last() != Some(&b'/') {
        full.push(b'/');
    }
    full.extend_from_slice(name);
    full
}

/// `dir`/`name`, checked with [`allowed`]: EACCES (as the kernel's refusal) when not.
fn check(view: &View<'_>, dir: &Dir, name: &CStr) -> Result<(), i32> {
    if allowed(view, &joined(&dir.path, name.to_bytes())) { Ok(()) } else { Err(libc::EACCES) }
}

/// The result of a libc call returning 0 or -1.
fn done(r: libc::c_int) -> Result<(), i32> {
    if r == 0 { Ok(()) } else { Err(super::handlers::errno()) }
}

/// openat(2), close-on-exec, as an owned descriptor.
fn open(dirfd: i32, path: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    // SAFETY: `path` is NUL-terminated; the kernel returns a new descriptor or -1.
    let r = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if r < 0 {
        return Err(super::handlers::errno());
    }
    // SAFETY: a descriptor openat just returned, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Open absolute `path` (close-on-exec, following symlinks as a call that follows them would)
/// with `flags`: `O_PATH` for a descriptor to check and act through.
pub fn open_path(path: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    open(libc::AT_FDCWD, path, flags, 0)
}

/// An open of host path `abs` (absolute, as the program named it) that truncates without
/// asking for writing (`O_RDONLY|O_TRUNC`, access mode 3: `table::truncates_unasked`), made
/// here: Landlock sees a read, so a `CONTINUE` would let the kernel truncate whatever the path
/// names when it reads it again. The file is opened without `O_TRUNC` (following symlinks, as
/// the call would), checked where it landed ([`lands_writable`]), and only then truncated
/// through a second descriptor open for writing (with the caller's permissions). With
/// `O_CREAT`, a name that does not exist is made in its directory, checked first, never
/// through a symlink. A block device is not opened (EACCES), as for any open made here.
pub fn open_truncating(view: &View<'_>, abs: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let (dir, name) = parent_of(abs)?;
    let plain = flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL);
    let probe = open(dir.fd.as_raw_fd(), &name, libc::O_PATH | (plain & libc::O_NOFOLLOW), 0);
    let probe = match probe {
        Err(libc::ENOENT) if flags & libc::O_CREAT != 0 => {
            check_writable(view, &dir, &name)?;
            // A new file: nothing to truncate.
            return open(dir.fd.as_raw_fd(), &name, plain | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, mode);
        }
        r => r?,
    };
    if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
        return Err(libc::EEXIST);
    }
    lands_writable(view, &probe)?;
    let kind = kind_of(&probe)?;
    match kind {
        libc::S_IFBLK => return Err(libc::EACCES),
        libc::S_IFDIR => return Err(libc::EISDIR),
        libc::S_IFLNK => return Err(libc::ELOOP), // O_NOFOLLOW on a symlink
        _ => {}
    }
    // The very file checked, opened as asked (through `/proc/self/fd`); a FIFO without
    // waiting for a writer (this thread serves the whole run), as the program asked after.
    let own = CString::new(format!("/proc/self/fd/{}", probe.as_raw_fd())).map_err(|_| libc::EINVAL)?;
    let fifo = kind == libc::S_IFIFO && plain & libc::O_NONBLOCK == 0;
    let fd = open(libc::AT_FDCWD, &own, (plain & !libc::O_NOFOLLOW) | if fifo { libc::O_NONBLOCK } else { 0 }, 0)?;
    if fifo {
        // SAFETY: fcntl on a descriptor we own.
        done(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, plain & !libc::O_NONBLOCK & !libc::O_ACCMODE) })?;
    }
    if kind == libc::S_IFREG {
        let w = open(libc::AT_FDCWD, &own, libc::O_WRONLY, 0)?;
        // SAFETY: ftruncate on a descriptor we own.
        done(unsafe { libc::ftruncate(w.as_raw_fd(), 0) })?;
    }
    Ok(fd)
}

/// `dir`/`name` is where the run's rules let the program write ([`lands_writable`]'s rule):
/// EACCES when not.
fn check_writable(view: &View<'_>, dir: &Dir, name: &CStr) -> Result<(), i32> {
    writable_at(view, &joined(&dir.path, name.to_bytes()))
}

/// The file type (`S_IFMT` bits) of `fd`.
fn kind_of(fd: &OwnedFd) -> Result<u32, i32> {
    // SAFETY: plain struct the kernel fills, for our own descriptor.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `sb` is writable.
    done(unsafe { libc::fstat(fd.as_raw_fd(), &raw mut sb) })?;
    Ok(sb.st_mode & libc::S_IFMT)
}

/// Whether file type `k` is a device node.
fn is_device(k: u32) -> bool {
    k == libc::S_IFBLK || k == libc::S_IFCHR
}

/// Make `call` on absolute host path `path` for the program, if the run's rules let it
/// ([`allowed`]; EACCES when not): the descriptor of an open. The caller has taken the
/// program's credentials and umask (and, for tier 2, its mount namespace and root).
pub fn perform(view: &View<'_>, path: &CStr, call: Call<'_>) -> Result<Option<OwnedFd>, i32> {
    if let Call::Open { flags, mode } = call
        && flags & libc::O_TMPFILE == libc::O_TMPFILE
    {
        // An unnamed file in the directory `path` names (as the caller reaches it).
        let dir = open(libc::AT_FDCWD, path, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        if !allowed_in(view, &fd_path(&dir)?) {
            return Err(libc::EACCES);
        }
        return open(dir.as_raw_fd(), c".", flags, mode).map(Some);
    }
    let (dir, name) = parent_of(path)?;
    check(view, &dir, &name)?;
    let d = dir.fd.as_raw_fd();
    let name = name.as_c_str();
    match call {
        Call::Open { flags, mode } => open_entry(view, &dir, name, flags, mode).map(Some),
        Call::Mkdir { mode } => {
            // SAFETY: NUL-terminated name relative to our directory descriptor.
            done(unsafe { libc::mkdirat(d, name.as_ptr(), mode) }).map(|()| None)
        }
        Call::Mknod { mode } => {
            if !matches!(mode & libc::S_IFMT, 0 | libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK) {
                return Err(libc::EPERM);
            }
            // SAFETY: as above.
            done(unsafe { libc::mknodat(d, name.as_ptr(), mode, 0) }).map(|()| None)
        }
        Call::Symlink { target } => {
            // SAFETY: both NUL-terminated.
            done(unsafe { libc::symlinkat(target.as_ptr(), d, name.as_ptr()) }).map(|()| None)
        }
        Call::Unlink { flags } => {
            // SAFETY: as above.
            done(unsafe { libc::unlinkat(d, name.as_ptr(), flags & libc::AT_REMOVEDIR) }).map(|()| None)
        }
        Call::Rename { to, flags } => {
            let (dir2, name2) = parent_of(to)?;
            check(view, &dir2, &name2)?;
            // SAFETY: NUL-terminated names relative to our directory descriptors.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_renameat2,
                    d,
                    name.as_ptr(),
                    dir2.fd.as_raw_fd(),
                    name2.as_ptr(),
                    libc::c_ulong::from(flags),
                )
            };
            done(i32::from(r != 0).wrapping_neg()).map(|()| None)
        }
        Call::Link { to } => {
            let (dir2, name2) = parent_of(to)?;
            check(view, &dir2, &name2)?;
            // SAFETY: as above; no AT_SYMLINK_FOLLOW: the name's own inode.
            done(unsafe { libc::linkat(d, name.as_ptr(), dir2.fd.as_raw_fd(), name2.as_ptr(), 0) }).map(|()| None)
        }
        Call::Bind { socket } => bind(&dir, name, socket).map(|()| None),
    }
}

/// Bind unix socket `socket` to `name` in `dir`, by the directory's canonical path, so that
/// the socket's name (`getsockname`, what a peer sees) is the path the program asked for when
/// it named no symlink. The directory is checked before; should it have been swapped for a
/// symlink in between (by the program, racing), the node is not found in it after, and is
/// removed again (EACCES). A name too long for `sun_path` is bound through the directory's
/// descriptor (and keeps that name).
fn bind(dir: &Dir, name: &CStr, socket: std::os::fd::RawFd) -> Result<(), i32> {
    let mut path = dir.path.clone();
    if path != b"/" {
        path.push(b'/');
    }
    path.extend_from_slice(name.to_bytes());
    // SAFETY: a plain struct; every field the kernel reads is set below.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::sa_family_t::try_from(libc::AF_UNIX).map_err(|_| libc::EINVAL)?;
    let by_name = path.len() < sa.sun_path.len();
    if !by_name {
        path = format!("/proc/self/fd/{}/", dir.fd.as_raw_fd()).into_bytes();
        path.extend_from_slice(name.to_bytes());
        if path.len() >= sa.sun_path.len() {
            return Err(libc::ENAMETOOLONG);
        }
    }
    for (dst, src) in sa.sun_path.iter_mut().zip(&path) {
        *dst = src.cast_signed();
    }
    let len = libc::socklen_t::try_from(size_of::<libc::sa_family_t>() + path.len() + 1).map_err(|_| libc::EINVAL)?;
    // SAFETY: `socket` is a descriptor we hold; `sa` is a sockaddr_un of `len` bytes.
    done(unsafe { libc::bind(socket, (&raw const sa).cast(), len) })?;
    if by_name {
        // SAFETY: plain struct the kernel fills; NUL-terminated name.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `sb` is writable.
        let here = unsafe { libc::fstatat(dir.fd.as_raw_fd(), name.as_ptr(), &raw mut sb, libc::AT_SYMLINK_NOFOLLOW) };
        if here != 0 || sb.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            let gone = CString::new(path).map_err(|_| libc::EINVAL)?;
            // SAFETY: NUL-terminated path.
            unsafe { libc::unlink(gone.as_ptr()) };
            return Err(libc::EACCES);
        }
    }
    Ok(())
}

/// Open `name` in `dir` for the program: never following it there. A symlink the program's
/// open would follow is resolved once (`O_PATH`), its target checked with [`allowed`] and
/// opened through the descriptor; one that dangles is refused (its target would be made
/// wherever it points). A FIFO is opened without waiting for a reader; a device is refused.
fn open_entry(view: &View<'_>, dir: &Dir, name: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let d = dir.fd.as_raw_fd();
    let follow =
        flags & libc::O_NOFOLLOW == 0 && flags & (libc::O_CREAT | libc::O_EXCL) != libc::O_CREAT | libc::O_EXCL;
    // SAFETY: plain struct the kernel fills; NUL-terminated name.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `sb` is writable.
    let kind = (unsafe { libc::fstatat(d, name.as_ptr(), &raw mut sb, libc::AT_SYMLINK_NOFOLLOW) } == 0)
        .then_some(sb.st_mode & libc::S_IFMT);
    if kind.is_some_and(is_device) {
        return Err(libc::EACCES);
    }
    let fd = if kind == Some(libc::S_IFLNK) && follow {
        let target = open(d, name, libc::O_PATH, 0).map_err(|e| if e == libc::ENOENT { libc::EACCES } else { e })?;
        let at = fd_path(&target)?;
        if !allowed(view, &at) || is_device(kind_of(&target)?) {
            return Err(libc::EACCES);
        }
        let fifo = kind_of(&target)? == libc::S_IFIFO;
        let again = CString::new(format!("/proc/self/fd/{}", target.as_raw_fd())).map_err(|_| libc::EINVAL)?;
        let nb = if fifo { libc::O_NONBLOCK } else { 0 };
        let fd = open(libc::AT_FDCWD, &again, (flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW)) | nb, 0)?;
        if fifo {
            blocking_again(&fd, flags);
        }
        fd
    } else {
        let nb = if kind == Some(libc::S_IFIFO) { libc::O_NONBLOCK } else { 0 };
        let fd = open(d, name, flags | libc::O_NOFOLLOW | nb, mode)?;
        if nb != 0 {
            blocking_again(&fd, flags);
        }
        fd
    };
    if is_device(kind_of(&fd)?) {
        return Err(libc::EACCES);
    }
    Ok(fd)
}

/// Take `O_NONBLOCK` (added to open a FIFO without waiting) off `fd` unless `flags` asked.
fn blocking_again(fd: &OwnedFd, flags: i32) {
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: fcntl on our own descriptor, integer arguments.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::view::{ViewOptions, compile};

    fn view_of(rules: &[(&str, Mode)]) -> Vec<u8> {
        let m = Manifest::new("t", "latest", 0);
        let opts = ViewOptions {
            tree: "/nonexistent/tree".into(),
            capsule_mode: Mode::WriteCopy,
            rules: rules.iter().map(|(p, m)| ((*p).to_owned(), *m)).collect(),
            whiteouts: Vec::new(),
            files: Vec::new(),
            redirects: Vec::new(),
            linked: Vec::new(),
        };
        compile(&m, &opts)
    }

    #[test]
    fn only_what_an_expanded_writable_prefix_governs_and_never_the_way_to_a_narrower_one() {
        let b = view_of(&[
            ("/", Mode::WriteCopy),
            ("/home/u", Mode::Merged),
            ("/home/u/.local/share/capsule", Mode::WriteCopy),
            ("/tmp", Mode::Merged),
            ("/proc", Mode::Passthrough),
        ]);
        let v = View::new(&b).unwrap();
        // In `$HOME`, expanded around the store.
        assert!(allowed(&v, b"/home/u/x"));
        assert!(allowed(&v, b"/home/u/.npm/_cacache/x"));
        assert!(allowed(&v, b"/home/u/.local/share/other"));
        // The store, and the way to it.
        assert!(!allowed(&v, b"/home/u/.local/share/capsule"));
        assert!(!allowed(&v, b"/home/u/.local/share/capsule/cache/ab"));
        assert!(!allowed(&v, b"/home/u/.local/share"));
        assert!(!allowed(&v, b"/home/u/.local"));
        assert!(!allowed(&v, b"/home/u"));
        // Writable but not expanded: Landlock's own grant decides (the broker is not asked).
        assert!(!allowed(&v, b"/tmp/x"));
        // Write-copy, kernel filesystems, odd spellings.
        assert!(!allowed(&v, b"/etc/passwd"));
        assert!(!allowed(&v, b"/proc/sys/kernel/core_pattern"));
        assert!(!allowed(&v, b"/home/u/../../etc/x"));
        assert!(!allowed(&v, b"home/u/x"));
    }

    /// A truncating read-open is made only where the file lands writable: a merged file is
    /// truncated, a write-copy one (by its name, or through a symlink in the merged directory)
    /// is refused and left whole; a directory is EISDIR; `O_CREAT` makes a new file.
    #[test]
    fn a_truncating_read_open_truncates_only_where_the_file_lands_writable() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let (open_dir, kept) = (top.join("open"), top.join("kept"));
        std::fs::create_dir_all(&open_dir).unwrap();
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::write(open_dir.join("mine"), b"mine").unwrap();
        std::fs::write(kept.join("theirs"), b"theirs").unwrap();
        std::os::unix::fs::symlink(kept.join("theirs"), open_dir.join("link")).unwrap();
        let (o, k) = (open_dir.to_str().unwrap(), kept.to_str().unwrap());
        let b = view_of(&[("/", Mode::WriteCopy), (o, Mode::Merged), (k, Mode::WriteCopy)]);
        let v = View::new(&b).unwrap();
        let c = |p: &std::path::Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let rdtrunc = libc::O_RDONLY | libc::O_TRUNC;
        assert!(open_truncating(&v, &c(&open_dir.join("mine")), rdtrunc, 0).is_ok());
        assert_eq!(std::fs::read(open_dir.join("mine")).unwrap(), b"");
        assert_eq!(open_truncating(&v, &c(&kept.join("theirs")), rdtrunc, 0).err(), Some(libc::EACCES));
        assert_eq!(open_truncating(&v, &c(&open_dir.join("link")), rdtrunc, 0).err(), Some(libc::EACCES));
        assert_eq!(
            open_truncating(&v, &c(&open_dir.join("link")), rdtrunc | libc::O_NOFOLLOW, 0).err(),
            Some(libc::ELOOP)
        );
        assert_eq!(std::fs::read(kept.join("theirs")).unwrap(), b"theirs");
        assert_eq!(open_truncating(&v, &c(&open_dir), rdtrunc, 0).err(), Some(libc::EISDIR));
        assert!(open_truncating(&v, &c(&open_dir.join("new")), rdtrunc | libc::O_CREAT, 0o600).is_ok());
        assert!(open_dir.join("new").exists());
        assert_eq!(
            open_truncating(&v, &c(&kept.join("new")), rdtrunc | libc::O_CREAT, 0o600).err(),
            Some(libc::EACCES)
        );
        assert!(!kept.join("new").exists());
    }

    #[test]
    fn a_name_in_an_expanded_directory_is_made_opened_and_removed_but_not_through_a_symlink_out() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let home = top.join("home");
        let store = home.join("store");
        std::fs::create_dir_all(store.join("cache")).unwrap();
        std::fs::write(store.join("cache/blob"), b"shared").unwrap();
        let (h, s) = (home.to_str().unwrap(), store.to_str().unwrap());
        let b = view_of(&[("/", Mode::WriteCopy), (h, Mode::Merged), (s, Mode::WriteCopy)]);
        let v = View::new(&b).unwrap();
        let c = |p: &std::path::Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let fd = perform(&v, &c(&home.join("new")), Call::Open { flags: libc::O_WRONLY | libc::O_CREAT, mode: 0o600 })
            .unwrap()
            .unwrap();
        drop(fd);
        assert!(home.join("new").is_file());
        perform(&v, &c(&home.join("d")), Call::Mkdir { mode: 0o755 }).unwrap();
        perform(&v, &c(&home.join("new")), Call::Rename { to: &c(&home.join("d/moved")), flags: 0 }).unwrap();
        assert!(home.join("d/moved").is_file());
        // A symlink to the store: made, but neither opened for writing nor renamed over.
        perform(&v, &c(&home.join("l")), Call::Symlink { target: &c(&store.join("cache/blob")) }).unwrap();
        let e = perform(&v, &c(&home.join("l")), Call::Open { flags: libc::O_WRONLY | libc::O_TRUNC, mode: 0 });
        assert_eq!(e.err(), Some(libc::EACCES));
        let e = perform(&v, &c(&home.join("d/moved")), Call::Rename { to: &c(&store.join("cache/blob")), flags: 0 });
        assert_eq!(e.err(), Some(libc::EACCES));
        let e = perform(&v, &c(&store.join("cache/blob")), Call::Link { to: &c(&home.join("hard")) });
        assert_eq!(e.err(), Some(libc::EACCES));
        let e = perform(&v, &c(&store), Call::Unlink { flags: libc::AT_REMOVEDIR });
        assert_eq!(e.err(), Some(libc::EACCES));
        assert_eq!(std::fs::read(store.join("cache/blob")).unwrap(), b"shared");
        // Through a symlink to a name it may write: followed once.
        perform(&v, &c(&home.join("l2")), Call::Symlink { target: c"d/moved" }).unwrap();
        let fd = perform(&v, &c(&home.join("l2")), Call::Open { flags: libc::O_WRONLY | libc::O_APPEND, mode: 0 })
            .unwrap()
            .unwrap();
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, b"via link").unwrap();
        assert_eq!(std::fs::read(home.join("d/moved")).unwrap(), b"via link");
        perform(&v, &c(&home.join("l2")), Call::Unlink { flags: 0 }).unwrap();
        assert!(!home.join("l2").exists() && home.join("d/moved").exists());
        // No device nodes.
        let e = perform(&v, &c(&home.join("disk")), Call::Mknod { mode: libc::S_IFBLK | 0o600 });
        assert_eq!(e.err(), Some(libc::EPERM));
        // An unnamed file in the expanded directory itself, none in the store.
        let tmp = Call::Open { flags: libc::O_TMPFILE | libc::O_WRONLY, mode: 0o600 };
        assert!(may(&v, home.as_os_str().as_bytes(), &tmp));
        assert!(perform(&v, &c(&home), tmp).unwrap().is_some());
        assert!(!may(&v, store.as_os_str().as_bytes(), &tmp));
        assert_eq!(perform(&v, &c(&store), tmp).err(), Some(libc::EACCES));
    }
}
