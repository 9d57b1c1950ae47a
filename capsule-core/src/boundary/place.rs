//! [`place`]: (dirfd, path) → [`Place`], for both tiers.

use core::ffi::CStr;

use super::Caller;
use crate::resolve::path::PathBuffer;
use crate::resolve::{Decision, Intent, decide, normalize, untree};
use crate::view::{Entry, View};

/// Where a call goes. Paths borrow the caller's [`PathBuffer`].
#[derive(Debug)]
pub enum Place<'b, 'v> {
    /// Not ours: the kernel runs the call as made. The caller's buffer then holds the host
    /// path the call names, normalised (absolute), or is empty when the layer could not name it
    /// (an empty path, a directory it cannot name, a path too long): what a tier asks the
    /// broker for when Landlock refuses a write the isolation rules allow
    /// ([`crate::supervisor::host`]).
    Original,
    /// This absolute host path instead of the argument.
    Host(&'b CStr),
    /// This path relative to the tree, and the view entry when the capsule holds it.
    Tree(&'b CStr, Option<Entry<'v>>),
    /// The tree path (relative) if it exists there, else the absolute host path.
    TreeThenHost(&'b CStr, &'b CStr),
    /// This absolute host path, read-only: a change fails with EROFS (the effects say which
    /// calls change), a read goes to the host.
    ReadOnly(&'b CStr),
    /// Fail with this errno.
    Deny(i32),
}

/// Symlinks followed (in the view, in the tree, through `/proc`) before ELOOP, as the kernel.
const MAX_HOPS: usize = 40;

/// Place (`dirfd`, `path`) for `intent`: normalise it through the view (relative paths joined
/// to the caller's directory, taken out of the tree when it is inside), resolve `/proc` links,
/// decide, and resolve in the view any symlink the tree holds on the way (module docs).
/// An empty path, a path already inside the tree, or a directory the caller cannot name, is
/// left to the kernel.
pub fn place<'b, 'v>(
    view: &View<'v>,
    caller: &impl Caller,
    dirfd: i32,
    path: &[u8],
    intent: Intent,
    buf: &'b mut PathBuffer,
) -> Place<'b, 'v> {
    if path.is_empty() {
        buf.clear();
        return Place::Original;
    }
    let tree = view.tree();
    let walked = if path.first() == Some(&b'/') {
        match untree(tree, path) {
            // A tree path as written, or the tree itself.
            Some(v) if v == b"/" || crate::resolve::is_normal_abs(v) => return tree_path(view, v, buf),
            // With "..", "." or "//" in it: the virtual path it spells, walked as one (the
            // tree's `..` is the view's root, never the sandbox directory that holds the tree).
            Some(v) => normalize(view, b"", v, buf).map(|w| (w, true)),
            None => normalize(view, b"", path, buf).map(|w| (w, false)),
        }
    } else {
        let mut base = PathBuffer::new();
        let got = if dirfd == libc::AT_FDCWD { caller.cwd(&mut base) } else { caller.fd_path(dirfd, &mut base) };
        if got.is_err() {
            buf.clear();
            return Place::Original;
        }
        match untree(tree, base.as_bytes()) {
            Some(v) => normalize(view, v, path, buf).map(|w| (w, true)),
            None => normalize(view, base.as_bytes(), path, buf).map(|w| (w, false)),
        }
    };
    let (walk, in_tree) = match walked {
        Ok(v) => v,
        Err(libc::ENAMETOOLONG) => {
            buf.clear();
            return Place::Original;
        }
        Err(e) => return Place::Deny(e),
    };
    let mut rewritten = in_tree || walk.substituted;
    match proc_link(view, caller, buf, intent.follow || walk.must_be_dir) {
        Ok(true) => rewritten = true,
        Ok(false) => {}
        Err(e) => return Place::Deny(e),
    }
    let follow = intent.follow || walk.must_be_dir;
    for _ in 0..MAX_HOPS {
        let decision = decide(view, buf, intent, rewritten, walk.must_be_dir);
        let side = match decision {
            Decision::Tree { entry: None } | Decision::TreeThenHost
                if caller.probe_tree(buf.rel_cstr(), follow) == Err(libc::ELOOP) =>
            {
                Some(Side::Tree)
            }
            // A capsule entry's directories are the capsule's, unless one was deleted in the
            // sandbox (and perhaps replaced by a symlink to a host directory).
            Decision::Tree { entry: Some(_) }
                if view.dirs_replaced() && caller.probe_tree(buf.rel_cstr(), follow) == Err(libc::ELOOP) =>
            {
                Some(Side::Tree)
            }
            // A name made on the host through a host symlink may land under another isolation
            // (`ln -s /etc /tmp/l; echo x > /tmp/l/f`: /tmp is passed through, /etc write-copy).
            Decision::Passthrough | Decision::Host
                if intent.create
                    && !kernel_fs(buf.as_bytes())
                    && caller.probe_host(buf.as_cstr(), follow) == Err(libc::ELOOP) =>
            {
                Some(Side::Host)
            }
            // A read-only path refuses a change only where the file is: a symlink of the
            // read-only prefix may lead out of it (rare: the store's own paths).
            Decision::ReadOnly if caller.probe_host(buf.as_cstr(), follow) == Err(libc::ELOOP) => Some(Side::Host),
            _ => None,
        };
        if let Some(side) = side {
            match link_on_the_way(view, caller, buf, follow, side) {
                Ok(true) => {
                    rewritten = true;
                    continue;
                }
                Ok(false) => {}
                Err(e) => return Place::Deny(e),
            }
        }
        return into_place(view, decision, buf);
    }
    Place::Deny(libc::ELOOP)
}

/// A path already inside the tree (a program that found its files from its own loaded path,
/// which the loader names in the tree: graphviz's plugin configuration, which `dot -c` writes
/// next to the plugins): the tree's, relative to its descriptor as any tree path, so that an
/// open for writing goes where the tier opens tree files (the program's Landlock domain may
/// not); a capsule file not materialised yet is materialised first, as by its virtual path.
fn tree_path<'b, 'v>(view: &View<'v>, virt: &[u8], buf: &'b mut PathBuffer) -> Place<'b, 'v> {
    let e = view.lookup(virt.get(1..).unwrap_or_default()).filter(|e| e.kind == crate::view::Kind::File);
    buf.clear();
    if buf.push(virt).is_err() {
        buf.clear();
        return Place::Original;
    }
    Place::Tree(buf.rel_cstr(), e)
}

fn into_place<'b, 'v>(view: &View<'v>, decision: Decision, buf: &'b PathBuffer) -> Place<'b, 'v> {
    match decision {
        Decision::Passthrough => Place::Original,
        Decision::Host => Place::Host(buf.as_cstr()),
        Decision::Tree { entry } => Place::Tree(buf.rel_cstr(), entry.and_then(|i| view.entry(i))),
        Decision::TreeThenHost => Place::TreeThenHost(buf.rel_cstr(), buf.as_cstr()),
        Decision::ReadOnly => Place::ReadOnly(buf.as_cstr()),
        Decision::Deny(e) => Place::Deny(e),
    }
}

/// Which side a symlink on a path's way was found on.
#[derive(Clone, Copy)]
enum Side {
    Tree,
    Host,
}

/// `/proc`, `/sys` and `/dev`: the kernel's own links (`/dev/stdout`, `/proc/self/fd/N`),
/// never followed by capsule.
fn kernel_fs(abs: &[u8]) -> bool {
    [&b"/proc"[..], b"/sys", b"/dev"].iter().any(|k| abs.strip_prefix(*k).is_some_and(|r| r.is_empty() || r[0] == b'/'))
}

/// Find the first symlink on `buf`'s way (the final component only when `follow`), in the
/// tree or on the host, and put its target in its place, absolute targets against the view's
/// root; `buf` is normalised again. `Ok(false)`: none found (it changed under us).
fn link_on_the_way(
    view: &View<'_>,
    caller: &impl Caller,
    buf: &mut PathBuffer,
    follow: bool,
    side: Side,
) -> Result<bool, i32> {
    let mut src = PathBuffer::new();
    src.push(buf.as_bytes())?;
    let rel = src.as_bytes().get(1..).unwrap_or_default();
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    let mut prefix = PathBuffer::new();
    let mut target = PathBuffer::new();
    let ends = rel.iter().enumerate().filter(|&(_, &c)| c == b'/').map(|(i, _)| i).chain(follow.then_some(rel.len()));
    for end in ends {
        let Some(comp) = rel.get(..end) else { break };
        prefix.clear();
        let read = match side {
            Side::Tree => prefix.push(comp).map(|()| caller.readlink_tree(prefix.as_cstr(), &mut target)),
            Side::Host => prefix
                .push(b"/")
                .and_then(|()| prefix.push(comp))
                .map(|()| caller.readlink_host(prefix.as_cstr(), &mut target)),
        }?;
        match read {
            Ok(()) => {
                let mut next = PathBuffer::new();
                if target.as_bytes().first() != Some(&b'/') {
                    next.push(b"/")?;
                    if let Some(cut) = comp.iter().rposition(|&c| c == b'/') {
                        next.push(comp.get(..cut).unwrap_or_default())?;
                        next.push(b"/")?;
                    }
                }
                next.push(target.as_bytes())?;
                next.push(rel.get(end..).unwrap_or_default())?;
                normalize(view, b"", next.as_bytes(), buf)?;
                return Ok(true);
            }
            Err(libc::EINVAL) => {}
            Err(_) => break,
        }
    }
    Ok(false)
}

/// Rewrite `/proc/{self,thread-self,PID}/{root,cwd,fd/N}/…` in `buf` into the virtual path
/// it names (module docs). `Ok(true)`: rewritten. The link itself, not followed (`readlink`,
/// `lstat` of `/proc/self/cwd`), is left as it is: it names the link, not its directory.
fn proc_link(view: &View<'_>, caller: &impl Caller, buf: &mut PathBuffer, follow: bool) -> Result<bool, i32> {
    if !buf.as_bytes().starts_with(b"/proc/") {
        return Ok(false);
    }
    let mut src = PathBuffer::new();
    src.push(buf.as_bytes())?;
    let rest = src.as_bytes().get(b"/proc/".len()..).unwrap_or_default();
    let mut parts = rest.splitn(3, |&c| c == b'/');
    let (Some(proc), Some(link)) = (parts.next(), parts.next()) else { return Ok(false) };
    let after = parts.next().unwrap_or_default();
    if after.is_empty() && !follow {
        return Ok(false);
    }
    let is_proc =
        proc == b"self" || proc == b"thread-self" || (!proc.is_empty() && proc.iter().all(u8::is_ascii_digit));
    if !is_proc {
        return Ok(false);
    }
    let mut dir = PathBuffer::new();
    let tail = match link {
        b"root" => {
            dir.push(b"/")?;
            after
        }
        b"cwd" => {
            if caller.proc_link(proc, b"cwd", &mut dir).is_err() {
                return Ok(false);
            }
            after
        }
        // `fd/N` itself may be any file (a pipe, a socket): only a path below it is placed.
        b"fd" => {
            let mut fp = after.splitn(2, |&c| c == b'/');
            let (Some(n), Some(tail)) = (fp.next(), fp.next()) else { return Ok(false) };
            let mut name = PathBuffer::new();
            name.push(b"fd/")?;
            name.push(n)?;
            if caller.proc_link(proc, name.as_bytes(), &mut dir).is_err() {
                return Ok(false);
            }
            tail
        }
        _ => return Ok(false),
    };
    if dir.as_bytes().first() != Some(&b'/') {
        return Ok(false);
    }
    let mut next = PathBuffer::new();
    next.push(untree(view.tree(), dir.as_bytes()).unwrap_or(dir.as_bytes()))?;
    next.push(b"/")?;
    next.push(tail)?;
    normalize(view, b"", next.as_bytes(), buf)?;
    Ok(true)
}
