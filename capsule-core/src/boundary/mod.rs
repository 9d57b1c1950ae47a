//! The boundary layer both tiers execute: from a call's (dirfd, path) to where it goes
//! ([`place`]), with every symlink met on a capsule path resolved in the capsule's view, never
//! by the host kernel.
//!
//! Tier 1 (the shim's hooks) and tier 2 (the supervisor's handlers) differ only in how they
//! ask the kernel: the shim for its own process with raw syscalls, the supervisor for a tracee
//! through `/proc/PID`. That difference is the [`Caller`] trait; the rules are here, once.
//! Everything is allocation-free and panic-free: the shim runs it on its hook path.
//!
//! Symlinks, and why the kernel never follows one on the tree side. The sandbox tree holds the
//! capsule's symlinks (which the resolver follows virtually from the view) and whatever the
//! program made at run time: apt links each .deb into a scratch directory with an absolute
//! symlink to `/var/cache/apt/archives/…`, which exists only in the tree. Given the tree path,
//! the kernel would follow such a link from the host's root, so a read finds nothing and a
//! write lands on the host. So before a tree path that is not a capsule entry is used, it is
//! probed for a symlink on the way ([`Caller::probe_tree`]: the shim stats it component by
//! component): when a symlink is on the way (ELOOP), the layer reads it from the tree and puts its target in its
//! place, an absolute target against the view's root, and places the result again, isolation
//! prefixes and all. A capsule entry needs no probe: its directories are the capsule's (the
//! literal fast path relies on that too). The probe is two syscalls (open, close) on paths the
//! capsule does not hold, never on the hot path.
//!
//! Host symlinks: a name *made* on the host side (merged or passed-through isolation) is
//! probed the same way without `RESOLVE_BENEATH`, so a link the program made there cannot
//! carry the write into another isolation (`ln -s /etc /tmp/l; echo x > /tmp/l/f` under
//! write-copy lands in the sandbox's `/etc`). Reads through host links are the kernel's.
//!
//! `/proc` links: `/proc/{self,thread-self,PID}/root/…` is the view's root, `…/cwd/…` and
//! `…/fd/N/…` the virtual path of that directory (read from the link and taken out of the
//! tree), so none of them is a way to the host.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod effect;
mod place;
#[cfg(test)]
mod tests;

pub use place::{Place, place};

use core::ffi::CStr;

use crate::resolve::path::PathBuffer;
use crate::resolve::{Decision, Intent, resolve};
use crate::view::{FLAG_HOST_DIR, Kind, View};

/// A unix socket's name as the kernel holds it (`sun_path` up to its first NUL) when a tier
/// bound or connected it at a tree path: `/proc/self/fd/N/REL`, N the binding process's tree
/// descriptor (how both tiers name a tree path to the kernel: `sun_path` holds 107 bytes,
/// which the store's path often exceeds), as `(N, "/REL")`. `None` for any other name. The
/// tiers give the program `/REL` back, the path it bound (`getsockname`, `getpeername`).
pub fn tree_socket_name(name: &[u8]) -> Option<(u32, &[u8])> {
    let rest = name.strip_prefix(b"/proc/self/fd/")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let n = rest.get(..digits)?.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0'));
    let rel = rest.get(digits..)?;
    (rel.len() > 1 && rel.first() == Some(&b'/')).then_some((n, rel))
}

/// The path a unix socket's name (as the kernel holds it) stands for in the view, for both
/// tiers' `getsockname` and `getpeername`: `/REL` for a [`tree_socket_name`] spelled with the
/// caller's own tree descriptor (`own_tree_fd`), or with another process's where the tree
/// holds a socket at `REL` (`tree_socket(REL)`, asked only then: a peer bound by the other
/// tier); `None` for any other name, which is given back as the kernel has it.
pub fn unplaced_socket(name: &[u8], own_tree_fd: i64, tree_socket: impl FnOnce(&[u8]) -> bool) -> Option<&[u8]> {
    let (n, rel) = tree_socket_name(name)?;
    (i64::from(n) == own_tree_fd || tree_socket(rel.get(1..)?)).then_some(rel)
}

/// The process whose call is placed, as the layer needs to ask the kernel about it.
/// Errors are errnos.
pub trait Caller {
    /// The caller's working directory, as the kernel names it.
    fn cwd(&self, out: &mut PathBuffer) -> Result<(), i32>;
    /// The path of the caller's descriptor `fd`, as `/proc/PID/fd/FD` names it.
    fn fd_path(&self, fd: i32, out: &mut PathBuffer) -> Result<(), i32>;
    /// The target of `/proc/PROC/LINK` as the caller would read it, where `PROC` is the
    /// caller's own spelling (`self`, `thread-self` or a pid) and `LINK` is `cwd` or `fd/N`.
    fn proc_link(&self, proc: &[u8], link: &[u8], out: &mut PathBuffer) -> Result<(), i32>;
    /// Probe tree path `rel` (relative to the tree, no leading '/'): open it `O_PATH` (with
    /// `O_NOFOLLOW` unless `follow`) beneath the tree without following any symlink, and close
    /// it. `Err(ELOOP)` when a symlink is on the way (or is the final component and `follow`).
    fn probe_tree(&self, rel: &CStr, follow: bool) -> Result<(), i32>;
    /// The target of the tree's symlink `rel`; `Err(EINVAL)` when `rel` is not a symlink.
    fn readlink_tree(&self, rel: &CStr, out: &mut PathBuffer) -> Result<(), i32>;
    /// Probe host path `abs` as [`Caller::probe_tree`] probes the tree (without the
    /// `RESOLVE_BENEATH`): `Err(ELOOP)` when a symlink is on the way.
    fn probe_host(&self, abs: &CStr, follow: bool) -> Result<(), i32>;
    /// The target of the host's symlink `abs`; `Err(EINVAL)` when it is not one.
    fn readlink_host(&self, abs: &CStr, out: &mut PathBuffer) -> Result<(), i32>;
}

/// Whether the tree directory at virtual path `abs` ("/a/b") is listed merged with the host's
/// directory of the same path, in both tiers: a capsule directory the host has too, or a
/// write-copy host directory the program copied up or made in the tree (under write-copy the
/// host's side stays visible: a listing of the tree's side alone would hide it, and a
/// program that rebuilds a directory from its listing, such as update-mime-database, would
/// then rewrite every host file in it).
pub fn merged_listing(view: &View<'_>, abs: &[u8]) -> bool {
    let rel = abs.get(1..).unwrap_or_default();
    if let Some(e) = view.lookup(rel) {
        return e.kind == Kind::Dir && e.flags & FLAG_HOST_DIR != 0;
    }
    let mut buf = PathBuffer::new();
    if buf.push(abs).is_err() {
        return false;
    }
    resolve(view, &mut buf, Intent { follow: true, create: false }, false) == Decision::TreeThenHost
}
