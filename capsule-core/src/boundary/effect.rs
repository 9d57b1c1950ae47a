//! Each call family's effects at a [`Place`], once for both tiers: what happens to the tree
//! before and after the call (materialise on first use, copy-up before a change, whiteouts for
//! deletions, the tree's copy before the host's under write-copy, EXDEV between the two).
//!
//! A tier supplies the materialiser and two probes ([`Tier`]) and performs the call itself
//! at the [`At`] it is given: the shim with raw syscalls against its tree descriptor, the
//! supervisor with its own syscalls for a tracee. `None` from a function here means "not
//! ours": the tier makes the call with the program's own arguments (the shim), or lets the
//! kernel do it (`CONTINUE`, the supervisor). Nothing here allocates or panics.

use core::ffi::CStr;

use super::Place;
use crate::resolve::Intent;
use crate::view::{Entry, Kind};

/// Materialiser request: link a capsule file into the tree.
pub const OP_LINK: u8 = 1;
/// Materialiser request: replace a pristine link (or a host file under write-copy) by a
/// private copy in the tree, mirroring its directories.
pub const OP_COPY_UP: u8 = 2;
/// Materialiser request: record a deletion.
pub const OP_WHITEOUT: u8 = 3;
/// Materialiser request: link every capsule file of a directory (before a listing).
pub const OP_LINK_DIR: u8 = 4;
/// Materialiser request: record the deletion of a host directory, if every entry it has on the
/// host is deleted already (else ENOTEMPTY).
pub const OP_WHITEOUT_DIR: u8 = 5;
/// Materialiser request: open a tree path for writing (or creating) on the caller's behalf,
/// with the caller's credentials and umask, and pass the descriptor back. The program's
/// Landlock domain has no right to open a file of the tree for writing (so a raw `open` of a
/// pristine link, whose inode is the shared cache's, is refused by the kernel): under tier 1
/// every write-open of the tree goes through here. The request carries `flags: i32 LE ·
/// mode: u32 LE` between the header and the path; the reply is the errno, with the
/// descriptor (SCM_RIGHTS) when it is 0.
pub const OP_OPEN: u8 = 6;
/// Materialiser request: make a host call the program's Landlock domain refused where the
/// run's isolation rules allow it (the broker, `supervisor::host`: a name made, removed or
/// opened for writing in a writable prefix expanded around a narrower one, such as `$HOME`
/// around the store). The request carries `call: u8 · 0 · 0 · 0 · flags: i32 LE · mode: u32
/// LE` ([`HOST_EXTRA`] bytes) between the header and the path; after the path, a NUL and the
/// second path of the calls that have one (a symlink's target, a rename's or link's new name).
/// The reply is the errno, with the descriptor of an open when it is 0.
pub const OP_HOST: u8 = 7;
/// Bytes of an [`OP_HOST`] request between the header and the path.
pub const HOST_EXTRA: usize = 12;

/// The calls of an [`OP_HOST`] request.
pub mod host_call {
    /// open(2): flags and mode.
    pub const OPEN: u8 = 1;
    /// mkdir(2): mode.
    pub const MKDIR: u8 = 2;
    /// mknod(2) of a regular file, FIFO or socket: mode (with the type).
    pub const MKNOD: u8 = 3;
    /// symlink(2): the second path is the target.
    pub const SYMLINK: u8 = 4;
    /// unlinkat(2): flags (`AT_REMOVEDIR`).
    pub const UNLINK: u8 = 5;
    /// renameat2(2): flags; the second path is the new name.
    pub const RENAME: u8 = 6;
    /// linkat(2) without following a symlink: the second path is the new name.
    pub const LINK: u8 = 7;
    /// bind(2) of the unix socket sent with the request (SCM_RIGHTS) to the path.
    pub const BIND: u8 = 8;
}

/// Whether an open with `flags` needs the right to write the file it opens (or makes one).
#[inline]
pub fn opens_to_write(flags: i32) -> bool {
    writes(flags) || flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE
}

/// Where a tier performs one step of a call.
#[derive(Debug, Clone, Copy)]
pub enum At<'b> {
    /// Relative to the tree descriptor.
    Tree(&'b CStr),
    /// This absolute host path.
    Host(&'b CStr),
}

/// One side of a two-path call ([`two`]).
#[derive(Debug, Clone, Copy)]
pub enum Side<'b> {
    /// The program's own argument (the host's, unchanged).
    Orig,
    /// This place.
    At(At<'b>),
}

/// What a tier provides to the effects.
pub trait Tier {
    /// Ask the materialiser for `op` (`OP_*`) on tree path `rel`: 0 or an errno.
    fn materialise(&mut self, op: u8, rel: &CStr) -> i32;
    /// Whether tree file `rel` is the sandbox's own: a regular file with one link (a pristine
    /// capsule file is a hardlink shared with the cache).
    fn private(&mut self, rel: &CStr) -> bool;
    /// The file type (`S_IFMT` bits) of host path `abs` (lstat), if the host has it.
    fn host_kind(&mut self, abs: &CStr) -> Option<u32>;
}

/// Make tree file `rel` private (copy it up) unless it is already: `Err(EIO)` when that
/// cannot be done (the materialiser failed, or is gone with its launcher), so that a call
/// about to change the file never goes on to a pristine one, whose inode is the shared
/// cache's.
#[inline]
pub fn make_private(t: &mut impl Tier, rel: &CStr) -> Result<(), i32> {
    if t.private(rel) || t.materialise(OP_COPY_UP, rel) == 0 || t.private(rel) { Ok(()) } else { Err(libc::EIO) }
}

/// Copy write-copy host path `rel` (`abs` on the host) into the tree (or mirror its
/// directories, for a new name): `Err(EIO)` when the materialiser cannot and the host has the
/// path (the call would otherwise make an empty or missing copy of it). A name only the tree
/// has (a directory the program made) needs nothing copied: the call goes on.
#[inline]
fn copy_in(t: &mut impl Tier, rel: &CStr, abs: &CStr) -> Result<(), i32> {
    match t.materialise(OP_COPY_UP, rel) {
        0 => Ok(()),
        _ if t.host_kind(abs).is_none() => Ok(()),
        _ => Err(libc::EIO),
    }
}

/// Whether open flags may modify the file.
#[inline]
pub fn writes(flags: i32) -> bool {
    flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC | libc::O_APPEND) != 0
}

/// The placement intent of an open with `flags`: O_CREAT|O_EXCL never follows a final
/// symlink (EEXIST even when it dangles), nor does O_NOFOLLOW.
#[inline]
pub fn open_intent(flags: i32) -> Intent {
    let excl = flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL;
    Intent { follow: flags & libc::O_NOFOLLOW == 0 && !excl, create: flags & libc::O_CREAT != 0 }
}

/// Run `call` on tree path `rel`; when it fails with ENOENT on a capsule file not
/// materialised yet, materialise it and run `call` once more.
#[inline]
pub fn in_tree<T>(
    t: &mut impl Tier,
    entry: Option<Entry<'_>>,
    rel: &CStr,
    mut call: impl FnMut() -> Result<T, i32>,
) -> Result<T, i32> {
    match call() {
        Err(libc::ENOENT) if entry.is_some_and(|e| e.kind == Kind::File) && t.materialise(OP_LINK, rel) == 0 => call(),
        r => r,
    }
}

/// The read family (stat, statx, access, readlink, getxattr, listxattr, exec's lookup): the
/// tree, materialising a capsule file on first use; a write-copy host path in the tree if the
/// program changed it there, else on the host.
#[inline]
pub fn read<T>(
    t: &mut impl Tier,
    place: &Place<'_, '_>,
    mut call: impl FnMut(At<'_>) -> Result<T, i32>,
) -> Option<Result<T, i32>> {
    Some(match *place {
        Place::Original => return None,
        Place::Deny(e) => Err(e),
        Place::Host(p) | Place::ReadOnly(p) => call(At::Host(p)),
        Place::Tree(rel, entry) => in_tree(t, entry, rel, || call(At::Tree(rel))),
        Place::TreeThenHost(rel, abs) => match call(At::Tree(rel)) {
            Err(libc::ENOENT) => call(At::Host(abs)),
            r => r,
        },
    })
}

/// Prepare tree path `rel` (capsule entry `entry`) for an open with `flags`: a capsule file
/// opened to change it (or with O_CREAT) is made private first (EIO if it cannot be); a
/// capsule directory opened to be listed gets its files linked first, so the listing is
/// complete.
#[inline]
pub fn before_open(t: &mut impl Tier, rel: &CStr, entry: Option<Entry<'_>>, flags: i32) -> Result<(), i32> {
    match entry {
        Some(e) if e.kind == Kind::File && (writes(flags) || flags & libc::O_CREAT != 0) => make_private(t, rel),
        // Not for O_PATH (nothing is listed through it), which `*at` walks open by the dozen.
        Some(e) if e.needs_linking() && !writes(flags) && flags & (libc::O_CREAT | libc::O_PATH) == 0 => {
            let _ = t.materialise(OP_LINK_DIR, rel);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The open family: `call(at, flags)` opens. A write to a write-copy host path copies it up
/// (or mirrors its directories for a new name) and opens the tree's copy; a read takes the
/// tree's copy if there is one, else the host's.
#[inline]
pub fn open<T>(
    t: &mut impl Tier,
    place: &Place<'_, '_>,
    flags: i32,
    mut call: impl FnMut(At<'_>, i32) -> Result<T, i32>,
) -> Option<Result<T, i32>> {
    Some(match *place {
        Place::Original => return None,
        Place::Deny(e) => Err(e),
        Place::Host(p) => call(At::Host(p), flags),
        // As on a read-only mount: O_CREAT opens a file that is there (EEXIST with O_EXCL).
        Place::ReadOnly(_) if writes(flags) || flags & libc::O_TMPFILE == libc::O_TMPFILE => Err(libc::EROFS),
        Place::ReadOnly(p) if flags & libc::O_CREAT != 0 => match t.host_kind(p) {
            None => Err(libc::EROFS),
            Some(_) if flags & libc::O_EXCL != 0 => Err(libc::EEXIST),
            Some(_) => call(At::Host(p), flags & !libc::O_CREAT),
        },
        Place::ReadOnly(p) => call(At::Host(p), flags),
        Place::Tree(rel, entry) => match before_open(t, rel, entry, flags) {
            Ok(()) => in_tree(t, entry, rel, || call(At::Tree(rel), flags)),
            Err(e) => Err(e),
        },
        Place::TreeThenHost(rel, abs) if writes(flags) => {
            copy_in(t, rel, abs).and_then(|()| call(At::Tree(rel), flags))
        }
        Place::TreeThenHost(rel, abs) => match call(At::Tree(rel), flags & !libc::O_CREAT) {
            Err(libc::ENOENT) => {
                // O_CREAT of a name neither side has: a new file, in the tree.
                if flags & libc::O_CREAT != 0 && t.host_kind(abs).is_none() {
                    copy_in(t, rel, abs).and_then(|()| call(At::Tree(rel), flags))
                } else {
                    call(At::Host(abs), flags)
                }
            }
            r => r,
        },
    })
}

/// What a single-path mutation does to its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Changes an existing node (chmod, chown, truncate, times, xattrs): copy-up first.
    Modify,
    /// Creates the name (mkdir, mknod, symlink's link path): the host's directories mirrored
    /// into the tree first under write-copy.
    Create,
    /// Removes a name that is not a directory (unlink): a whiteout after.
    Remove,
    /// Removes a directory (rmdir, unlinkat with AT_REMOVEDIR): a whiteout after, when it is
    /// empty in the view.
    RemoveDir,
}

impl Op {
    /// `Remove` or `RemoveDir`, as unlinkat's `flags` say.
    pub fn unlinkat(flags: i32) -> Op {
        if flags & libc::AT_REMOVEDIR != 0 { Op::RemoveDir } else { Op::Remove }
    }

    fn removes(self) -> bool {
        matches!(self, Op::Remove | Op::RemoveDir)
    }

    /// The placement intent of this mutation.
    pub fn intent(self, follow: bool) -> Intent {
        Intent { follow, create: self == Op::Create }
    }
}

/// A single-path mutation: `call(at)` performs it. In the tree, a capsule file is made private
/// before anything changes its inode, and deleting a capsule path records a whiteout (a capsule
/// file never materialised is deleted by the whiteout alone). Under write-copy the host's copy
/// (or its directories, for a new name) comes into the tree first; deleting a name the host
/// has records a whiteout.
pub fn mutate(
    t: &mut impl Tier,
    place: &Place<'_, '_>,
    op: Op,
    mut call: impl FnMut(At<'_>) -> Result<(), i32>,
) -> Option<Result<(), i32>> {
    Some(match *place {
        Place::Original => return None,
        Place::Deny(e) => Err(e),
        Place::Host(p) => call(At::Host(p)),
        Place::ReadOnly(_) => Err(libc::EROFS),
        Place::Tree(rel, entry) => {
            let is_file = entry.is_some_and(|e| e.kind == Kind::File);
            if op == Op::Modify
                && is_file
                && let Err(e) = make_private(t, rel)
            {
                return Some(Err(e));
            }
            let mut r = call(At::Tree(rel));
            if op.removes() && entry.is_some() {
                if r == Err(libc::ENOENT) && is_file {
                    r = Ok(());
                }
                if r.is_ok() {
                    let _ = t.materialise(OP_WHITEOUT, rel);
                }
            }
            r
        }
        // `/` is there whatever the sandbox holds, and has no name to copy in (busybox's
        // `mkdir -p` starts with `mkdir("/")`; the materialiser refused the copy: EIO).
        Place::TreeThenHost(rel, _) if op == Op::Create && rel == c"." => Err(libc::EEXIST),
        Place::TreeThenHost(rel, abs) if !op.removes() => copy_in(t, rel, abs).and_then(|()| call(At::Tree(rel))),
        Place::TreeThenHost(rel, abs) => {
            let r = call(At::Tree(rel));
            let dir = t.host_kind(abs).map(|k| k == libc::S_IFDIR);
            match (dir, op) {
                // Only a host name needs hiding; one the program made in the tree is gone.
                (None, _) => r,
                // The tree's copy was not empty, or not a directory.
                (Some(_), _) if r.is_err() && r != Err(libc::ENOENT) => r,
                (Some(true), Op::Remove) => Err(libc::EISDIR),
                (Some(false), Op::RemoveDir) => Err(libc::ENOTDIR),
                (Some(true), _) => match t.materialise(OP_WHITEOUT_DIR, rel) {
                    0 => Ok(()),
                    e => Err(e),
                },
                (Some(false), _) => {
                    let _ = t.materialise(OP_WHITEOUT, rel);
                    Ok(())
                }
            }
        }
    })
}

/// One step of a two-path call ([`two`]), performed by the tier.
#[derive(Debug, Clone, Copy)]
pub enum Step<'b> {
    /// The call itself (rename or link) with these sides.
    Call(Side<'b>, Side<'b>),
    /// Copy the host file at `from` to tree path `to`: a regular file with its mode, or a
    /// symlink; anything else is EXDEV (`mv` copies a directory itself).
    Copy(Side<'b>, &'b CStr),
    /// Remove `from`: the host name of a rename whose file was copied into the tree.
    Unlink(Side<'b>),
    /// Remove tree path `to`: a copy whose rename could not remove its old name.
    Discard(&'b CStr),
}

/// A two-path call (rename, link): `step` performs each step. Both in the tree: a capsule
/// file given a new name is made private first (it must not share the cache's inode), and a
/// renamed capsule path, or write-copy host name, leaves a whiteout. From the host into the
/// tree (a file made in `/tmp` renamed into a write-copy `/etc`): the file is copied into the
/// tree, and for a rename its host name removed, as `mv` would across filesystems. From the
/// tree to the host: EXDEV, as between two filesystems (`mv` then copies). Host on both
/// sides: the host's call.
pub fn two(
    t: &mut impl Tier,
    old: &Place<'_, '_>,
    new: &Place<'_, '_>,
    is_rename: bool,
    mut step: impl FnMut(Step<'_>) -> Result<(), i32>,
) -> Option<Result<(), i32>> {
    // A host directory under write-copy: its tree copy holds only what the program changed,
    // so moving that alone would leave the rest behind. EXDEV: `mv` copies it in full.
    if let Place::TreeThenHost(_, abs) = *old
        && t.host_kind(abs) == Some(libc::S_IFDIR)
    {
        return Some(Err(libc::EXDEV));
    }
    let (s1, s2) = match (side(t, old), side(t, new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
    };
    Some(match (s1, s2) {
        ((Side::Orig, ..), (Side::Orig, ..)) => return None,
        ((Side::At(At::Tree(r1)), true, k1, host1), (s2, true, ..)) => {
            // A capsule file under a new name must not share the cache's inode.
            if k1 == Some(Kind::File) {
                if !is_rename {
                    let _ = t.materialise(OP_LINK, r1);
                }
                if let Err(e) = make_private(t, r1) {
                    return Some(Err(e));
                }
            }
            let r = step(Step::Call(Side::At(At::Tree(r1)), s2));
            let host_name = host1.is_some_and(|abs| t.host_kind(abs).is_some());
            if r.is_ok() && is_rename && (k1.is_some() || host_name) {
                let _ = t.materialise(OP_WHITEOUT, r1);
            }
            r
        }
        ((from, false, ..), (Side::At(At::Tree(to)), true, ..)) => {
            let r = step(Step::Copy(from, to));
            match r {
                Ok(()) if is_rename => step(Step::Unlink(from)).inspect_err(|_| {
                    let _ = step(Step::Discard(to));
                }),
                r => r,
            }
        }
        ((_, true, ..), _) | (_, (_, true, ..)) => Err(libc::EXDEV),
        ((a, ..), (b, ..)) => step(Step::Call(a, b)),
    })
}

/// One side of [`two`]: where it is, whether in the tree, the capsule entry's kind, and the
/// host name a write-copy side stands for.
type SideOf<'b> = (Side<'b>, bool, Option<Kind>, Option<&'b CStr>);

/// [`SideOf`] a place.
fn side<'b>(t: &mut impl Tier, p: &Place<'b, '_>) -> Result<SideOf<'b>, i32> {
    Ok(match *p {
        Place::Original => (Side::Orig, false, None, None),
        Place::Deny(e) => return Err(e),
        Place::ReadOnly(_) => return Err(libc::EROFS),
        Place::Host(h) => (Side::At(At::Host(h)), false, None, None),
        Place::Tree(rel, e) => (Side::At(At::Tree(rel)), true, e.map(|e| e.kind), None),
        Place::TreeThenHost(rel, abs) => {
            copy_in(t, rel, abs)?;
            (Side::At(At::Tree(rel)), true, None, Some(abs))
        }
    })
}

/// The system calls a copy across the boundary needs ([`copy_file`]), as a tier makes them
/// (the shim's carry the run's cookie past the filter; the supervisor's are its own). Errors
/// are errnos.
pub trait CopySys {
    /// openat(2); the new descriptor.
    fn openat(&mut self, dirfd: i32, path: &CStr, flags: i32, mode: u32) -> Result<i32, i32>;
    /// The mode, owner and group of open file `fd`.
    fn fstat(&mut self, fd: i32) -> Result<(u32, u32, u32), i32>;
    /// sendfile(2) of up to `count` bytes from `from` to `to`: how many were copied.
    fn sendfile(&mut self, to: i32, from: i32, count: usize) -> Result<usize, i32>;
    /// fchmod(2).
    fn fchmod(&mut self, fd: i32, mode: u32) -> Result<(), i32>;
    /// fchown(2).
    fn fchown(&mut self, fd: i32, uid: u32, gid: u32) -> Result<(), i32>;
    /// readlinkat(2) into `out`.
    fn readlinkat(&mut self, dirfd: i32, path: &CStr, out: &mut crate::resolve::path::PathBuffer) -> Result<(), i32>;
    /// symlinkat(2).
    fn symlinkat(&mut self, target: &CStr, dirfd: i32, path: &CStr) -> Result<(), i32>;
    /// unlinkat(2) without flags.
    fn unlinkat(&mut self, dirfd: i32, path: &CStr) -> Result<(), i32>;
    /// close(2).
    fn close(&mut self, fd: i32);
}

/// Copy the file at (`from`) to (`to`), replacing what `to` names: a regular file with its
/// content, mode (set-id bits dropped: capsule never makes set-id files) and, where the
/// caller may, owner; or a symlink with its target. Anything
/// else is EXDEV, the answer of a rename across filesystems, so the caller copies it itself.
/// A FIFO is never opened for reading (O_NONBLOCK, then refused by its type).
pub fn copy_file(sys: &mut impl CopySys, from: (i32, &CStr), to: (i32, &CStr)) -> Result<(), i32> {
    let src =
        match sys.openat(from.0, from.1, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC, 0) {
            Err(libc::ELOOP) => {
                let mut target = crate::resolve::path::PathBuffer::new();
                sys.readlinkat(from.0, from.1, &mut target)?;
                match sys.unlinkat(to.0, to.1) {
                    Ok(()) | Err(libc::ENOENT) => {}
                    Err(e) => return Err(e),
                }
                return sys.symlinkat(target.as_cstr(), to.0, to.1);
            }
            r => r?,
        };
    let r = copy_open(sys, src, to);
    sys.close(src);
    r
}

fn copy_open(sys: &mut impl CopySys, src: i32, to: (i32, &CStr)) -> Result<(), i32> {
    let (mode, uid, gid) = sys.fstat(src)?;
    if mode & libc::S_IFMT != libc::S_IFREG {
        return Err(libc::EXDEV);
    }
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let dst = sys.openat(to.0, to.1, flags, mode & 0o1777)?;
    let r = (|| {
        while sys.sendfile(dst, src, 1 << 30)? > 0 {}
        // The owner where the kernel lets us (as root), before the mode: chown clears set-id bits.
        let _ = sys.fchown(dst, uid, gid);
        sys.fchmod(dst, mode & 0o1777)
    })();
    sys.close(dst);
    r
}
