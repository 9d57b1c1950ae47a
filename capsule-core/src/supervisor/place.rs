//! From a trapped call's (dirfd, path pointer) to where the operation goes: the tracee-side
//! twin of the shim's `route`, over the same resolver ([`crate::resolve`]).
//!
//! A relative path is joined to the tracee's working directory or to the directory behind
//! its descriptor (`/proc/PID/...`), translated back to the virtual namespace when that
//! directory is inside the sandbox tree. Paths already inside the tree are the kernel's.

use std::ffi::CString;

use super::memory::{TraceeMemory, read_path};
use crate::resolve::path::PathBuffer;
use crate::resolve::{Decision, Intent, decide, normalize, untree};
use crate::view::{Entry, View};

/// Where a call goes.
#[derive(Debug)]
pub enum Place<'v> {
    /// Not ours: let the kernel run the call as made.
    Original,
    /// This absolute host path instead of the argument.
    Host(CString),
    /// This path relative to the tree, and the view entry when the capsule holds it.
    Tree(CString, Option<Entry<'v>>),
    /// The tree path if it exists there, else the absolute host path.
    TreeThenHost(CString, CString),
    /// Fail with this errno.
    Deny(i32),
}

/// Place the tracee's (`dirfd`, path at `addr`) for `intent`. An unreadable path, or a
/// notification that went stale while reading, is left to the kernel (which then fails or
/// finds nobody to answer).
pub fn place<'v>(view: &View<'v>, mem: &impl TraceeMemory, dirfd: i32, addr: u64, intent: Intent) -> Place<'v> {
    let Ok(path) = read_path(mem, addr) else { return Place::Original };
    if !mem.still_valid() || path.is_empty() {
        return Place::Original;
    }
    let tree = view.tree();
    let mut buf = PathBuffer::new();
    let walked = if path.first() == Some(&b'/') {
        if untree(tree, &path).is_some() {
            return Place::Original;
        }
        normalize(view, b"", &path, &mut buf).map(|w| (w, false))
    } else {
        let base = if dirfd == libc::AT_FDCWD { mem.cwd() } else { mem.fd_path(dirfd) };
        let Ok(base) = base else { return Place::Original };
        match untree(tree, &base) {
            Some(v) => normalize(view, v, &path, &mut buf).map(|w| (w, true)),
            None => normalize(view, &base, &path, &mut buf).map(|w| (w, false)),
        }
    };
    let (walk, in_tree) = match walked {
        Ok(v) => v,
        Err(libc::ENAMETOOLONG) => return Place::Original,
        Err(e) => return Place::Deny(e),
    };
    match decide(view, &mut buf, intent, in_tree || walk.substituted, walk.must_be_dir) {
        Decision::Passthrough => Place::Original,
        Decision::Host => Place::Host(buf.as_cstr().to_owned()),
        Decision::Tree { entry } => Place::Tree(buf.rel_cstr().to_owned(), entry.and_then(|i| view.entry(i))),
        Decision::TreeThenHost => Place::TreeThenHost(buf.rel_cstr().to_owned(), buf.as_cstr().to_owned()),
        Decision::Deny(e) => Place::Deny(e),
    }
}
