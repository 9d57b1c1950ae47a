//! The working directory of a program without the shim: `getcwd` names the view's directory,
//! and `chdir` is answered where it can be (the kernel's own walk lands where the view says).
//!
//! The gap: the supervisor cannot change another process's working directory (no system
//! call does; `fchdir` acts on the caller's). So `chdir` into a directory the kernel would
//! not find by the same path — a capsule-only directory named by its virtual path — fails
//! with EOPNOTSUPP rather than ENOENT, so the failure says what it is; `fchdir` on a
//! descriptor the supervisor opened works (the cwd is then the tree's directory, which
//! `getcwd` and relative calls translate back). Rejected: answering `chdir` with success
//! and keeping a virtual cwd per process in the supervisor — the kernel's cwd would then be
//! wrong for every call the filter lets through (and for the shim of a dynamic child), and
//! the supervisor would have to follow `fork`s and `CLONE_FS` threads to keep it.
#![allow(unsafe_code)] // fstat and faccessat2 on our own descriptors

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{Context, errno, open_at, open_placed, place};
use crate::boundary::Place;
use crate::resolve::path::PathBuffer;
use crate::resolve::{Intent, untree};
use crate::supervisor::memory::{TraceeMemory, read_path};
use crate::supervisor::notify::Reply;

/// The dir family's working-directory calls (getdents64 is `supervisor::listing`'s, answered
/// before dispatch: it keeps state across calls).
pub(super) fn handle(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, nr: i64, a: &[u64; 6]) -> Option<Reply> {
    Some(match nr {
        libc::SYS_getcwd => getcwd(cx, mem, a[0], a[1]),
        libc::SYS_chdir => chdir(cx, mem, a[0]),
        libc::SYS_getdents64 => Reply::Continue,
        _ => return None,
    })
}

/// getcwd(2) into `buf` (`size` bytes): a working directory inside the tree is named by its
/// virtual path; any other is the kernel's answer.
fn getcwd(cx: &Context<'_, '_>, mem: &impl TraceeMemory, buf: u64, size: u64) -> Reply {
    let Ok(cwd) = mem.cwd() else { return Reply::Continue };
    let Some(virt) = untree(cx.view.tree(), &cwd) else { return Reply::Continue };
    let mut out = virt.to_vec();
    out.push(0);
    if usize::try_from(size).is_ok_and(|s| s < out.len()) {
        return Reply::Error(libc::ERANGE);
    }
    if mem.write(buf, &out).is_err() || !mem.still_valid() {
        return Reply::Error(libc::EFAULT);
    }
    Reply::Value(i64::try_from(out.len()).unwrap_or(i64::MAX))
}

/// chdir(2): the directory the view names is opened here (materialised as an open of it
/// would be) for its errors — ENOENT, ENOTDIR, EACCES without search permission. The call
/// is the kernel's when the kernel, walking the argument from the program's cwd, reaches
/// a directory of that virtual name: the tree's (a relative step inside the tree) or the
/// host's (a host directory, write-copy's too: relative calls from there are placed as
/// from the virtual path, which it is). Otherwise it is the gap in the module docs:
/// EOPNOTSUPP.
fn chdir(cx: &mut Context<'_, '_>, mem: &impl TraceeMemory, addr: u64) -> Reply {
    let view = cx.view;
    let mut buf = PathBuffer::new();
    let placed = place(&view, cx.tree, mem, libc::AT_FDCWD, addr, Intent { follow: true, create: false }, &mut buf);
    let host = match placed {
        Place::Host(p) | Place::ReadOnly(p) | Place::TreeThenHost(_, p) => Some(p.to_owned()),
        // A capsule directory the host has too (`/etc`, `/usr/bin`): the host's directory of
        // the same name will do, since calls relative to it are placed by that name.
        Place::Tree(rel, Some(e)) if e.flags & crate::view::FLAG_HOST_DIR != 0 => {
            let mut abs = b"/".to_vec();
            abs.extend_from_slice(rel.to_bytes());
            std::ffi::CString::new(abs).ok()
        }
        _ => None,
    };
    let want = match open_placed(cx, &placed, libc::O_PATH | libc::O_DIRECTORY, 0) {
        None => return Reply::Continue,
        Some(Err(e)) => return Reply::Error(e),
        Some(Ok(fd)) => fd,
    };
    // SAFETY: an empty path with AT_EMPTY_PATH names `want` itself; faccessat2 only checks.
    let r =
        unsafe { libc::syscall(libc::SYS_faccessat2, want.as_raw_fd(), c"".as_ptr(), libc::X_OK, libc::AT_EMPTY_PATH) };
    if r != 0 {
        return Reply::Error(errno());
    }
    let Ok(arg) = read_path(mem, addr) else { return Reply::Continue };
    let Some(got) = kernel_walk(cx.pid, &arg) else { return gap(&arg) };
    let on_host = || host.and_then(|h| open_at(libc::AT_FDCWD, &h, libc::O_PATH | libc::O_DIRECTORY, 0).ok());
    if same_inode(&got, &want) || on_host().is_some_and(|h| same_inode(&got, &h)) {
        return Reply::Continue;
    }
    gap(&arg)
}

fn gap(arg: &[u8]) -> Reply {
    tracing::debug!(path = %String::from_utf8_lossy(arg), "chdir into a capsule directory: not possible in tier 2");
    Reply::Error(libc::EOPNOTSUPP)
}

/// The directory the kernel's own chdir(`arg`) would reach for process `pid`, opened.
fn kernel_walk(pid: u32, arg: &[u8]) -> Option<OwnedFd> {
    let arg = CString::new(arg).ok()?;
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    if arg.as_bytes().first() == Some(&b'/') {
        return open_at(libc::AT_FDCWD, &arg, flags, 0).ok();
    }
    let cwd = CString::new(format!("/proc/{pid}/cwd")).ok()?;
    let cwd = open_at(libc::AT_FDCWD, &cwd, flags, 0).ok()?;
    open_at(cwd.as_raw_fd(), &arg, flags, 0).ok()
}

fn same_inode(a: &OwnedFd, b: &OwnedFd) -> bool {
    let id = |fd: &OwnedFd| {
        // SAFETY: plain struct the kernel fills; `fd` is open.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        (unsafe { libc::fstat(fd.as_raw_fd(), &raw mut sb) } == 0).then_some((sb.st_dev, sb.st_ino))
    };
    id(a).is_some() && id(a) == id(b)
}
