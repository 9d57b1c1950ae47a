//! The single path-resolution core: given the view and a normalised absolute virtual path,
//! decide where the operation goes. Pure (no syscalls), allocation-free, panic-free; used by
//! every hook (and, with issue 4, by the supervisor).
//!
//! The path buffer holds "/a/b" (leading '/'); view keys are "a/b". Resolution may rewrite the
//! buffer when it follows a capsule symlink (a directory symlink anywhere in the path, or the
//! final component when it must be followed and points outside the capsule).
//!
//! Idempotence: a path inside the sandbox tree is never a capsule path (the tree lives in the
//! store, which no capsule holds), so resolving an already-resolved path passes through.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use capsule_core::view::{Entry, FLAG_HOST_DIR, FLAG_TARGET_OUTSIDE, Kind, Mode, View};

use crate::path::PathBuffer;

/// Where an operation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not ours: use the application's arguments unchanged.
    Passthrough,
    /// A host path, but the buffer (now rewritten) must be used instead of the arguments.
    Host,
    /// In the tree, at the buffer's path without its leading '/'; `entry` is the view entry
    /// index when the capsule holds the path.
    Tree {
        /// The capsule entry, if any.
        entry: Option<u32>,
    },
    /// Write-copy host path: the tree first (an earlier copy-up), then the host.
    TreeThenHost,
    /// Fail with this errno.
    Deny(i32),
}

/// What the caller is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// Follow a symlink in the final component.
    pub follow: bool,
    /// May create the final component.
    pub create: bool,
}

/// Replace `buf`'s prefix of `plen` bytes (a capsule symlink's path, with its leading '/') by
/// the symlink's destination.
fn substitute(buf: &mut PathBuffer, plen: usize, link: &Entry<'_>) -> Result<(), i32> {
    let mut tmp = PathBuffer::new();
    let parent =
        link.path.iter().rposition(|&c| c == b'/').map_or(&b""[..], |i| link.path.get(..i).unwrap_or_default());
    tmp.push(b"/")?;
    tmp.push(parent)?;
    tmp.push(b"/")?;
    tmp.push(link.target)?;
    tmp.push(buf.as_bytes().get(plen..).unwrap_or_default())?;
    crate::path::normalize_abs_into(b"", tmp.as_bytes(), buf)
}

/// Resolve `buf` ("/a/b", normalised) through `view`. `rewritten` says whether `buf` already
/// differs from the application's argument.
pub fn resolve(view: &View<'_>, buf: &mut PathBuffer, intent: Intent, mut rewritten: bool) -> Decision {
    for _ in 0..40 {
        let rel = buf.as_bytes().get(1..).unwrap_or_default();
        let host = if rewritten { Decision::Host } else { Decision::Passthrough };
        if let Some(e) = view.lookup(rel) {
            return match e.kind {
                Kind::File | Kind::Dir => Decision::Tree { entry: Some(e.index) },
                Kind::Whiteout if intent.create => Decision::Tree { entry: None },
                Kind::Whiteout => Decision::Deny(libc::ENOENT),
                Kind::Symlink if intent.follow && e.flags & FLAG_TARGET_OUTSIDE != 0 => {
                    let plen = buf.as_bytes().len();
                    if let Err(err) = substitute(buf, plen, &e) {
                        return Decision::Deny(err);
                    }
                    rewritten = true;
                    continue;
                }
                Kind::Symlink => Decision::Tree { entry: Some(e.index) },
            };
        }
        // Not a capsule path itself: look for a capsule directory symlink on the way, and
        // remember the deepest capsule directory (every ancestor of a capsule path is in the
        // view, so the first miss ends the search).
        let mut parent: Option<Entry<'_>> = None;
        let mut link: Option<(usize, Entry<'_>)> = None;
        for (i, _) in rel.iter().enumerate().filter(|&(_, &c)| c == b'/') {
            match view.lookup(rel.get(..i).unwrap_or_default()) {
                Some(e) if e.kind == Kind::Dir => parent = Some(e),
                Some(e) if e.kind == Kind::Symlink => {
                    link = Some((i + 1, e));
                    break;
                }
                Some(e) if e.kind == Kind::Whiteout => return Decision::Deny(libc::ENOENT),
                _ => {
                    parent = None;
                    break;
                }
            }
        }
        if rel.iter().all(|&c| c != b'/') && !rel.is_empty() {
            parent = None;
        }
        if let Some((plen, e)) = link {
            if let Err(err) = substitute(buf, plen, &e) {
                return Decision::Deny(err);
            }
            rewritten = true;
            continue;
        }
        // A new name in a directory only the capsule has lives in the tree.
        if let Some(p) = parent {
            let is_direct_parent =
                rel.len() > p.path.len() && !rel.get(p.path.len() + 1..).unwrap_or_default().contains(&b'/');
            if is_direct_parent && p.flags & FLAG_HOST_DIR == 0 {
                return Decision::Tree { entry: None };
            }
        }
        return match view.mode_of(rel) {
            Mode::Merged | Mode::Passthrough => host,
            Mode::WriteCopy => Decision::TreeThenHost,
            Mode::Full => Decision::Tree { entry: None },
        };
    }
    Decision::Deny(libc::ELOOP)
}

#[cfg(test)]
mod tests;
