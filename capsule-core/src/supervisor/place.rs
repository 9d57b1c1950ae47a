//! Tier 2's side of the boundary layer ([`crate::boundary`]): the tracee as a [`Caller`]
//! (its cwd, descriptors and `/proc` links read through `/proc/PID`, the tree probed from the
//! supervisor), and the supervisor as the effects' [`Tier`] ([`Sup`]).
#![allow(unsafe_code)] // openat2/readlinkat on our own buffers

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::handlers::Materialise;
use super::memory::{TraceeMemory, read_path};
use crate::boundary::effect::Tier;
use crate::boundary::{self, Caller, Place};
use crate::resolve::Intent;
use crate::resolve::path::PathBuffer;
use crate::view::View;

/// The tracee, as the layer asks about it.
struct Tracee<'a, M> {
    mem: &'a M,
    tree: BorrowedFd<'a>,
}

fn fill(out: &mut PathBuffer, r: std::io::Result<Vec<u8>>) -> Result<(), i32> {
    let bytes = r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    out.clear();
    out.push(&bytes)
}

impl<M: TraceeMemory> Caller for Tracee<'_, M> {
    fn cwd(&self, out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.mem.cwd())
    }

    fn fd_path(&self, fd: i32, out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.mem.fd_path(fd))
    }

    fn proc_link(&self, proc: &[u8], link: &[u8], out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.mem.proc_link(proc, link))
    }

    fn probe_tree(&self, rel: &CStr, follow: bool) -> Result<(), i32> {
        probe(self.tree.as_raw_fd(), rel, follow, libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS)
    }

    fn readlink_tree(&self, rel: &CStr, out: &mut PathBuffer) -> Result<(), i32> {
        readlink(self.tree.as_raw_fd(), rel, out)
    }

    fn probe_host(&self, abs: &CStr, follow: bool) -> Result<(), i32> {
        probe(libc::AT_FDCWD, abs, follow, libc::RESOLVE_NO_SYMLINKS)
    }

    fn readlink_host(&self, abs: &CStr, out: &mut PathBuffer) -> Result<(), i32> {
        readlink(libc::AT_FDCWD, abs, out)
    }
}

/// Open (`dirfd`, `path`) `O_PATH` (`O_NOFOLLOW` unless `follow`) with `resolve` flags, and
/// close it: the kernel's verdict on the walk.
fn probe(dirfd: i32, path: &CStr, follow: bool, resolve: u64) -> Result<(), i32> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let mut how: libc::open_how = unsafe_zeroed();
    #[allow(clippy::cast_sign_loss)] // flag bits
    {
        how.flags = (libc::O_PATH | libc::O_CLOEXEC | nofollow) as u64;
    }
    how.resolve = resolve;
    // SAFETY: `path` is NUL-terminated; `how` is a live struct of the size passed.
    let r =
        unsafe { libc::syscall(libc::SYS_openat2, dirfd, path.as_ptr(), &raw const how, size_of::<libc::open_how>()) };
    if r < 0 {
        return Err(super::handlers::errno());
    }
    #[allow(clippy::cast_possible_truncation)] // a descriptor
    // SAFETY: a descriptor we just opened and own.
    unsafe {
        libc::close(r as i32)
    };
    Ok(())
}

/// Open tree path `rel` (relative to `tree`) with `flags` for the program, never on an inode
/// that has another name (a pristine link is the shared cache's inode): the file is opened
/// without `O_TRUNC`, refused (EMLINK, which callers turn into a copy-up or EIO) when it is a
/// regular file with more than one link, and only then truncated. The caller made it private first; this closes the race with a
/// program that renames a pristine link over the name in between (an `O_TRUNC` open would
/// have emptied the cache's file before any check). `resolve`: openat2's RESOLVE_* flags.
/// Both the materialiser (`OP_OPEN`) and tier 2's supervisor open tree files through it.
pub(crate) fn open_unshared(
    tree: i32,
    rel: &CStr,
    flags: i32,
    mode: libc::mode_t,
    resolve: u64,
) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let trunc = flags & libc::O_TRUNC != 0;
    // A mode only for a new file (openat2 refuses one otherwise, where open ignores the
    // garbage a variadic caller leaves in it).
    let tmpfile = flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let creates = flags & libc::O_CREAT != 0 || tmpfile;
    let open = |flags: i32| -> Result<OwnedFd, i32> {
        let mut how = unsafe_zeroed();
        #[allow(clippy::cast_sign_loss)] // flag bits
        {
            how.flags = ((flags & !libc::O_TRUNC) | libc::O_CLOEXEC) as u64;
        }
        how.mode = if creates { u64::from(mode & 0o7777) } else { 0 };
        how.resolve = resolve;
        // SAFETY: `rel` is NUL-terminated; `how` is a live struct of the size passed.
        let r = unsafe {
            libc::syscall(libc::SYS_openat2, tree, rel.as_ptr(), &raw const how, size_of::<libc::open_how>())
        };
        let fd = i32::try_from(r).ok().filter(|&fd| fd >= 0).ok_or_else(super::handlers::errno)?;
        // SAFETY: openat2 returned a new descriptor, ours alone.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // A file this open makes is not truncated after: as the kernel's own O_CREAT|O_TRUNC, which
    // truncates only a file that was there. (A truncation to 0 on ext4 also has the file's
    // data written out at its close, `auto_da_alloc`: a disk write for every `echo x > new`.)
    let mut made = false;
    let fd = if trunc && flags & libc::O_CREAT != 0 && flags & libc::O_EXCL == 0 && !tmpfile {
        match open(flags | libc::O_EXCL) {
            Ok(fd) => {
                made = true;
                fd
            }
            // There already (or a symlink is: followed below, as the call asked).
            Err(libc::EEXIST) => open(flags)?,
            Err(e) => return Err(e),
        }
    } else {
        open(flags)?
    };
    // SAFETY: a plain struct the kernel fills, for our own descriptor.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `sb` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut sb) } != 0 {
        return Err(libc::EIO);
    }
    let regular = sb.st_mode & libc::S_IFMT == libc::S_IFREG;
    if regular && sb.st_nlink > 1 {
        return Err(libc::EMLINK);
    }
    if trunc && regular && !made {
        // Through a descriptor open for writing: ours, or one more on the same file.
        // (Access mode 3, "neither", opens for ioctls only: no writing either.)
        let writer = if !matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR) {
            let own = format!("/proc/self/fd/{}\0", fd.as_raw_fd());
            // SAFETY: a NUL-terminated path to our own descriptor's file.
            let w = unsafe { libc::open(own.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if w < 0 {
                return Err(super::handlers::errno());
            }
            // SAFETY: a new descriptor, ours alone.
            Some(unsafe { OwnedFd::from_raw_fd(w) })
        } else {
            None
        };
        let t = writer.as_ref().unwrap_or(&fd);
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(t.as_raw_fd(), 0) } != 0 {
            return Err(super::handlers::errno());
        }
    }
    Ok(fd)
}

/// readlinkat(`dirfd`, `path`) into `out`.
fn readlink(dirfd: i32, path: &CStr, out: &mut PathBuffer) -> Result<(), i32> {
    let (ptr, cap) = out.storage();
    // SAFETY: `path` NUL-terminated; `ptr` writable for `cap - 1` bytes (room for the NUL).
    let r = unsafe { libc::readlinkat(dirfd, path.as_ptr(), ptr.cast(), cap - 1) };
    let n = usize::try_from(r).map_err(|_| super::handlers::errno())?;
    out.set_len(n);
    Ok(())
}

/// A zeroed `open_how` (libc's is non-exhaustive, so no struct expression).
pub(crate) fn unsafe_zeroed() -> libc::open_how {
    // SAFETY: `open_how` is three u64 fields; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Place the tracee's (`dirfd`, path at `addr`) for `intent`, in `buf`. An unreadable path,
/// or a notification that went stale while reading, is left to the kernel (which then fails
/// or finds nobody to answer).
pub fn place<'b, 'v>(
    view: &View<'v>,
    tree: BorrowedFd<'_>,
    mem: &impl TraceeMemory,
    dirfd: i32,
    addr: u64,
    intent: Intent,
    buf: &'b mut PathBuffer,
) -> Place<'b, 'v> {
    buf.clear();
    let Ok(path) = read_path(mem, addr) else { return Place::Original };
    if !mem.still_valid() {
        return Place::Original;
    }
    boundary::place(view, &Tracee { mem, tree }, dirfd, &path, intent, buf)
}

/// [`place`] for a path already read from the tracee (a unix socket's `sun_path`, which
/// need not end with a NUL).
pub fn place_bytes<'b, 'v>(
    view: &View<'v>,
    tree: BorrowedFd<'_>,
    mem: &impl TraceeMemory,
    path: &[u8],
    intent: Intent,
    buf: &'b mut PathBuffer,
) -> Place<'b, 'v> {
    buf.clear();
    boundary::place(view, &Tracee { mem, tree }, libc::AT_FDCWD, path, intent, buf)
}

/// The supervisor as the layer's [`Tier`]: the materialiser it serves, and probes of the
/// tree and the host made from the supervisor.
pub struct Sup<'a, 'm> {
    /// The materialiser.
    pub mat: &'a mut dyn Materialise,
    /// The sandbox tree.
    pub tree: BorrowedFd<'m>,
}

impl Tier for Sup<'_, '_> {
    fn materialise(&mut self, op: u8, rel: &CStr) -> i32 {
        // The materialiser writes the store: as the launcher, whoever the caller is.
        super::creds::as_launcher(|| self.mat.op(op, rel.to_bytes()))
    }

    fn private(&mut self, rel: &CStr) -> bool {
        super::handlers::private(self.tree, rel)
    }

    fn host_kind(&mut self, abs: &CStr) -> Option<u32> {
        // SAFETY: plain struct the kernel fills; `abs` NUL-terminated.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let found = unsafe { libc::fstatat(libc::AT_FDCWD, abs.as_ptr(), &raw mut sb, libc::AT_SYMLINK_NOFOLLOW) == 0 };
        found.then_some(sb.st_mode & libc::S_IFMT)
    }
}

#[cfg(test)]
mod open_unshared_tests {
    use super::open_unshared;
    use std::os::fd::AsRawFd;

    /// A file with a second name (as a pristine link has the cache's) is never opened to be
    /// written, and `O_TRUNC` never empties it; a file of one name is truncated after the
    /// check, through a descriptor open for reading too.
    #[test]
    fn a_file_with_another_name_is_refused_and_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shared"), b"cache\n").unwrap();
        std::fs::hard_link(dir.path().join("shared"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("own"), b"mine\n").unwrap();
        std::fs::write(dir.path().join("own2"), b"mine\n").unwrap();
        let tree = std::fs::File::open(dir.path()).unwrap();
        let t = tree.as_raw_fd();
        let r = open_unshared(t, c"link", libc::O_WRONLY | libc::O_TRUNC, 0, libc::RESOLVE_BENEATH);
        assert_eq!(r.err(), Some(libc::EMLINK));
        assert_eq!(std::fs::read(dir.path().join("shared")).unwrap(), b"cache\n");
        let fd = open_unshared(t, c"own", libc::O_WRONLY | libc::O_TRUNC, 0, 0).unwrap();
        assert!(fd.as_raw_fd() >= 0);
        assert_eq!(std::fs::read(dir.path().join("own")).unwrap(), b"");
        let fd = open_unshared(t, c"own2", libc::O_RDONLY | libc::O_TRUNC, 0, 0).unwrap();
        // SAFETY: fcntl on our own descriptor.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } & libc::O_ACCMODE, libc::O_RDONLY);
        assert_eq!(std::fs::read(dir.path().join("own2")).unwrap(), b"");
        let fd = open_unshared(t, c"new", libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600, 0).unwrap();
        drop(fd);
        assert!(dir.path().join("new").is_file());
        let escape = open_unshared(t, c"../x", libc::O_WRONLY | libc::O_CREAT, 0o600, libc::RESOLVE_BENEATH);
        assert_eq!(escape.err(), Some(libc::EXDEV));
    }
}
