//! The single path-resolution core: given the view and a normalised absolute virtual path,
//! decide where the operation goes. Pure (no syscalls), allocation-free, panic-free; used by
//! every hook (and, with issue 4, by the supervisor).
//!
//! The path buffer holds "/a/b" (leading '/'); view keys are "a/b". Resolution may rewrite the
//! buffer when it follows a capsule symlink (a directory symlink anywhere in the path, or the
//! final component when it must be followed), so the decision names the symlink's destination
//! and a capsule file reached through a symlink is materialised like any other.
//!
//! [`normalize`] turns an argument into that buffer the way the kernel would walk it through
//! the capsule: ".." after a capsule symlink pops from the destination, not lexically.
//!
//! A path inside the sandbox tree is never a capsule path (the tree lives in the store, which
//! no capsule holds): both tiers take it out of the tree ([`untree`]) before resolving it; the
//! store's read-only rule refuses it otherwise.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod path;

use crate::view::{Entry, FLAG_HOST_DIR, FLAG_HOST_LINK, FLAG_HOST_ONLY, Kind, Mode, View};

use path::{PATH_CAP, PathBuffer};

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
    /// A read-only host path (the buffer's, rewritten or not): read on the host, and EROFS to
    /// anything that would change it.
    ReadOnly,
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
fn substitute(view: &View<'_>, buf: &mut PathBuffer, plen: usize, link: &Entry<'_>) -> Result<(), i32> {
    let mut tmp = PathBuffer::new();
    let parent =
        link.path.iter().rposition(|&c| c == b'/').map_or(&b""[..], |i| link.path.get(..i).unwrap_or_default());
    // An absolute target is taken against the view's root, a relative one from the link's
    // directory.
    if link.target.first() != Some(&b'/') {
        tmp.push(b"/")?;
        tmp.push(parent)?;
        tmp.push(b"/")?;
    }
    tmp.push(link.target)?;
    tmp.push(buf.as_bytes().get(plen..).unwrap_or_default())?;
    normalize(view, b"", tmp.as_bytes(), buf).map(|_| ())
}

/// Replace `buf`'s prefix of `plen` bytes (a redirect's path, with its leading '/') by the
/// redirect's host directory.
fn redirect(buf: &mut PathBuffer, plen: usize, dir: &[u8]) -> Result<(), i32> {
    let mut tmp = PathBuffer::new();
    tmp.push(dir)?;
    tmp.push(buf.as_bytes().get(plen..).unwrap_or_default())?;
    buf.clear();
    buf.push(tmp.as_bytes())
}

/// What [`normalize`] learnt about an argument besides its normalised form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walk {
    /// A capsule symlink followed by ".." was replaced by its destination: the result no
    /// longer names the place the argument's text names lexically.
    pub substituted: bool,
    /// The argument can only name a directory: it ends in '/', "/." or "/..". The kernel
    /// then also follows a symlink in the final component.
    pub must_be_dir: bool,
}

/// The components still to walk: a window `start..end` of a fixed buffer, to which a symlink's
/// destination can be prepended in place.
struct Pending {
    bytes: [u8; PATH_CAP],
    start: usize,
    end: usize,
}

impl Pending {
    fn push(&mut self, s: &[u8]) -> Result<(), i32> {
        let end = self.end.checked_add(s.len()).filter(|&e| e <= PATH_CAP).ok_or(libc::ENAMETOOLONG)?;
        self.bytes.get_mut(self.end..end).ok_or(libc::ENAMETOOLONG)?.copy_from_slice(s);
        self.end = end;
        Ok(())
    }

    /// Put `s` in front of what is pending.
    fn prepend(&mut self, s: &[u8]) -> Result<(), i32> {
        if s.len() > self.start {
            let shift = s.len() - self.start;
            let end = self.end.checked_add(shift).filter(|&e| e <= PATH_CAP).ok_or(libc::ENAMETOOLONG)?;
            self.bytes.copy_within(self.start..self.end, self.start + shift);
            self.start += shift;
            self.end = end;
        }
        self.start -= s.len();
        self.bytes.get_mut(self.start..self.start + s.len()).ok_or(libc::ENAMETOOLONG)?.copy_from_slice(s);
        Ok(())
    }

    /// The next component's range (possibly empty, for "//"), or `None` at the end.
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.start >= self.end {
            return None;
        }
        let rest = self.bytes.get(self.start..self.end)?;
        let len = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
        let comp = (self.start, self.start + len);
        self.start = (self.start + len + 1).min(self.end);
        Some(comp)
    }
}

/// Whether `path` can only name a directory: it ends in '/' or its last component is "." or
/// "..". The supervisor asks it of a path it acts on itself (`supervisor::link::made`).
pub fn names_dir(path: &[u8]) -> bool {
    path.last() == Some(&b'/') || matches!(path.rsplit(|&c| c == b'/').next(), Some(b"." | b".."))
}

/// Build the normalised absolute virtual path ("/a/b", "/" for the root) of `rel` relative to
/// the absolute directory `base` (ignored when `rel` is absolute) into `out`, the way the
/// kernel walks it where the capsule is concerned: "." and repeated '/' are dropped and ".."
/// pops a component, but a ".." after a capsule symlink pops from the symlink's destination
/// (`dirlink/..` is the parent of where `dirlink` points, not the directory holding it), and
/// "." or ".." after a capsule file fails with ENOTDIR. Host paths stay lexical (their
/// symlinks are the kernel's business when the call passes through).
pub fn normalize(view: &View<'_>, base: &[u8], rel: &[u8], out: &mut PathBuffer) -> Result<Walk, i32> {
    // Fast path, the common case: an absolute path that is normal already ("/a/b": no empty,
    // "." or ".." component, no trailing '/') normalises to itself. One copy, no walk, and
    // none of the slow path's 4 KiB working buffer.
    if is_normal_abs(rel) {
        out.clear();
        out.push(rel)?;
        return Ok(Walk::default());
    }
    let mut walk = Walk { substituted: false, must_be_dir: names_dir(rel) };
    let mut p = Pending { bytes: [0; PATH_CAP], start: 0, end: 0 };
    if rel.first() != Some(&b'/') {
        p.push(base)?;
        p.push(b"/")?;
    }
    p.push(rel)?;
    out.clear();
    out.push(b"/")?;
    let mut hops = 0;
    while let Some((s, e)) = p.next() {
        match p.bytes.get(s..e).unwrap_or_default() {
            b"" => {}
            dots @ (b"." | b"..") => {
                let up = dots == b"..";
                match view.lookup(out.as_bytes().get(1..).unwrap_or_default()) {
                    Some(en) if en.kind == Kind::File => return Err(libc::ENOTDIR),
                    Some(en) if en.kind == Kind::Whiteout => return Err(libc::ENOENT),
                    Some(en) if en.kind == Kind::Symlink && up => {
                        hops += 1;
                        if hops > 40 {
                            return Err(libc::ELOOP);
                        }
                        // Walk the destination, then this ".." again.
                        p.start = s;
                        p.prepend(b"/")?;
                        p.prepend(en.target)?;
                        if en.target.first() == Some(&b'/') {
                            out.truncate(1);
                        } else {
                            pop(out);
                        }
                        walk.substituted = true;
                    }
                    _ if up => pop(out),
                    _ => {}
                }
            }
            name => {
                if out.as_bytes().len() > 1 {
                    out.push(b"/")?;
                }
                out.push(name)?;
            }
        }
    }
    Ok(walk)
}

/// Whether `p` is "/a/b" with no empty, "." or ".." component and no trailing '/' (the root,
/// which names a directory, takes the general path).
pub fn is_normal_abs(p: &[u8]) -> bool {
    // One pass: at each '/', the component that ended must be non-empty and not "." or "..".
    // (A split iterator spent more than the lookup did.)
    if p.len() < 2 || p.first() != Some(&b'/') || p.last() == Some(&b'/') {
        return false;
    }
    let mut comp_start = 1;
    for (i, &c) in p.iter().enumerate().skip(1) {
        if c == b'/' {
            if matches!(i - comp_start, 0..=2) && bad_component(p.get(comp_start..i).unwrap_or_default()) {
                return false;
            }
            comp_start = i + 1;
        }
    }
    !bad_component(p.get(comp_start..).unwrap_or_default())
}

fn bad_component(c: &[u8]) -> bool {
    c.is_empty() || c == b"." || c == b".."
}

/// Drop the last component of "/a/b" (the root stays "/").
fn pop(out: &mut PathBuffer) {
    let cut = out.as_bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
    out.truncate(cut.max(1));
}

/// The resolver's fast path, for both tiers: an absolute argument that is, exactly as written,
/// the path of a capsule file or directory goes to the tree as it is. View keys are normal (no
/// "//", ".", "..", trailing '/'), so such an argument needs no normalising, and it resolves to
/// exactly what [`normalize`] + [`resolve`] would give (`Decision::Tree` with this entry).
/// `None`: take the general path.
#[inline(always)]
pub fn literal<'v>(view: &View<'v>, arg: &[u8]) -> Option<Entry<'v>> {
    let e = view.lookup(arg.strip_prefix(b"/")?)?;
    // A capsule directory deleted (and perhaps replaced by a symlink): the general path,
    // which probes.
    (e.in_tree() && !view.dirs_replaced()).then_some(e)
}

/// `p` without the tree prefix ("/" for the tree itself), when `p` is inside the sandbox tree:
/// how both tiers recognise a path the shim already resolved, or a directory of the tree.
pub fn untree<'a>(tree: &[u8], p: &'a [u8]) -> Option<&'a [u8]> {
    let rest = p.strip_prefix(tree)?;
    if rest.is_empty() { Some(b"/") } else { rest.first().filter(|&&c| c == b'/').map(|_| rest) }
}

/// The decision for a normalised `buf`, as both tiers take it: [`resolve`], then what a
/// trailing '/' (`must_be_dir`, from [`normalize`]) demands — a final symlink is followed, a
/// capsule file is ENOTDIR (it may not be materialised yet, so the kernel cannot say so), and
/// where the kernel will walk the path itself the '/' is put back on the buffer.
pub fn decide(view: &View<'_>, buf: &mut PathBuffer, intent: Intent, rewritten: bool, must_be_dir: bool) -> Decision {
    let intent = Intent { follow: intent.follow || must_be_dir, ..intent };
    let decision = resolve(view, buf, intent, rewritten);
    if must_be_dir {
        if let Decision::Tree { entry: Some(i) } = decision
            && view.entry(i).is_some_and(|e| e.kind != Kind::Dir)
        {
            return Decision::Deny(libc::ENOTDIR);
        }
        let kernel_decides = matches!(
            decision,
            Decision::Tree { entry: None } | Decision::Host | Decision::TreeThenHost | Decision::ReadOnly
        );
        if kernel_decides && buf.as_bytes().len() > 1 && buf.push(b"/").is_err() {
            return Decision::Deny(libc::ENAMETOOLONG);
        }
    }
    decision
}

/// Resolve `buf` ("/a/b", normalised) through `view`. `rewritten` says whether `buf` already
/// differs from the application's argument.
pub fn resolve(view: &View<'_>, buf: &mut PathBuffer, intent: Intent, mut rewritten: bool) -> Decision {
    for _ in 0..40 {
        let rel = buf.as_bytes().get(1..).unwrap_or_default();
        let host = if rewritten { Decision::Host } else { Decision::Passthrough };
        if let Some(e) = view.lookup(rel).filter(|e| e.flags & FLAG_HOST_ONLY == 0) {
            return match e.kind {
                Kind::File | Kind::Dir => Decision::Tree { entry: Some(e.index) },
                Kind::Redirect => {
                    let plen = buf.as_bytes().len();
                    match redirect(buf, plen, e.target) {
                        Ok(()) => Decision::Host,
                        Err(err) => Decision::Deny(err),
                    }
                }
                // Made again since the view (the sandbox's table of deletions says so): the
                // tree's new file. Made now: in the tree, its host directories mirrored first
                // (the materialiser's copy-up of a deleted name) where it is a host name.
                Kind::Whiteout if view.recreated(rel) => Decision::TreeThenHost,
                Kind::Whiteout if intent.create && view.mode_of(rel) == Mode::WriteCopy => Decision::TreeThenHost,
                Kind::Whiteout if intent.create && view.mode_of(rel) == Mode::ReadOnly => Decision::Deny(libc::EROFS),
                Kind::Whiteout if intent.create => Decision::Tree { entry: None },
                Kind::Whiteout => Decision::Deny(libc::ENOENT),
                // Followed virtually, wherever it points: a destination inside the capsule
                // must be materialised before the kernel can follow the tree's symlink.
                Kind::Symlink if intent.follow => {
                    let plen = buf.as_bytes().len();
                    if let Err(err) = substitute(view, buf, plen, &e) {
                        return Decision::Deny(err);
                    }
                    rewritten = true;
                    continue;
                }
                // The host's own link, where the call does not follow it.
                Kind::Symlink if e.flags & FLAG_HOST_LINK != 0 => host,
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
                // Below shared state: the host directory it stands for, whatever the mode.
                Some(e) if e.kind == Kind::Redirect => {
                    return match redirect(buf, i + 1, e.target) {
                        Ok(()) => Decision::Host,
                        Err(err) => Decision::Deny(err),
                    };
                }
                // A capsule file used as a directory.
                Some(e) if e.kind == Kind::File => return Decision::Deny(libc::ENOTDIR),
                // The first miss ends the search; `parent` stays the deepest capsule directory.
                _ => break,
            }
        }
        if rel.iter().all(|&c| c != b'/') && !rel.is_empty() {
            parent = None;
        }
        if let Some((plen, e)) = link {
            if let Err(err) = substitute(view, buf, plen, &e) {
                return Decision::Deny(err);
            }
            rewritten = true;
            continue;
        }
        // Below a directory only the capsule has, nothing can be on the host: a new name (or
        // a directory the application made there, and what it put in it) lives in the tree.
        if let Some(p) = parent
            && p.flags & FLAG_HOST_DIR == 0
        {
            return Decision::Tree { entry: None };
        }
        return match view.mode_of(rel) {
            Mode::Merged | Mode::Passthrough => host,
            // Deleted in the sandbox during this run (or another since the view was made).
            Mode::WriteCopy if !intent.create && view.deleted(rel) => Decision::Deny(libc::ENOENT),
            Mode::WriteCopy => Decision::TreeThenHost,
            Mode::Full => Decision::Tree { entry: None },
            // The run's own sandbox directory, which holds its tree, is an empty directory to
            // the program ([`EMPTY_DIR`] in it stands for it and everything in it): a walk into
            // it by its host path would reach the tree, whose host path is the program's view
            // of `/` (`untree`), and walk that too (`chmod -R` of a directory holding the
            // store changed `/opt` in the sandbox, and the walk's `..` led elsewhere). Empty
            // rather than refused, a backup of `$HOME` from inside a capsule succeeds; its
            // metadata is a directory's, as glibc's `realpath` of a tree path reads every
            // component's. The tree's own paths are taken out of the tree before they get here;
            // a path that was not (one a symlink led to) is refused.
            Mode::ReadOnly => match in_sandbox(view.tree(), rel) {
                InSandbox::No => Decision::ReadOnly,
                InSandbox::Tree => Decision::Deny(libc::EACCES),
                InSandbox::Dir(n) => match emptied(buf, n) {
                    Ok(()) => Decision::ReadOnly,
                    Err(e) => Decision::Deny(e),
                },
            },
        };
    }
    Decision::Deny(libc::ELOOP)
}

/// The directory in the run's sandbox directory (the tree's parent) that stands for it to the
/// program: made empty and read-only by `run::sandbox`, never written.
pub const EMPTY_DIR: &str = "empty";

/// Where a path is with respect to the run's sandbox directory.
enum InSandbox {
    /// Elsewhere.
    No,
    /// In the tree.
    Tree,
    /// The sandbox directory itself (or a path below it, not in the tree): its first `n` bytes
    /// name the sandbox directory.
    Dir(usize),
}

/// Where `rel` (a path without its leading '/') is with respect to the directory holding the
/// tree `tree` (absolute).
fn in_sandbox(tree: &[u8], rel: &[u8]) -> InSandbox {
    let Some(cut) = tree.iter().rposition(|&c| c == b'/').filter(|&c| c > 0) else { return InSandbox::No };
    let dir = tree.get(1..cut).unwrap_or_default();
    match rel.strip_prefix(dir) {
        Some(rest) if rest.is_empty() || rest.first() == Some(&b'/') => {
            if untree(tree.get(1..).unwrap_or_default(), rel).is_some() {
                InSandbox::Tree
            } else {
                InSandbox::Dir(dir.len())
            }
        }
        _ => InSandbox::No,
    }
}

/// `buf` ("/" + a path whose first `n` bytes after the '/' name the sandbox directory) with
/// [`EMPTY_DIR`] put after the sandbox directory.
fn emptied(buf: &mut PathBuffer, n: usize) -> Result<(), i32> {
    let mut tmp = PathBuffer::new();
    let b = buf.as_bytes();
    tmp.push(b.get(..n + 1).unwrap_or_default())?;
    tmp.push(b"/")?;
    tmp.push(EMPTY_DIR.as_bytes())?;
    tmp.push(b.get(n + 1..).unwrap_or_default())?;
    buf.clear();
    buf.push(tmp.as_bytes())
}

#[cfg(test)]
mod tests;
