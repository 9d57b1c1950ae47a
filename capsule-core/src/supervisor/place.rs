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
    let Ok(path) = read_path(mem, addr) else { return Place::Original };
    if !mem.still_valid() {
        return Place::Original;
    }
    boundary::place(view, &Tracee { mem, tree }, dirfd, &path, intent, buf)
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
