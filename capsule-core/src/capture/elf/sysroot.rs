//! The file tree a closure is resolved in ([`Tree`]): a host directory as `/` ([`Sysroot`]), or
//! anything else that answers lstat, readlink and read for absolute paths (a capsule's entries
//! over the host: `capture::needs`). [`resolve_in_root`] is realpath(3) confined to a tree, so
//! that a fake tree's absolute symlinks (bookworm's `/usr/lib64/ld-linux-x86-64.so.2` →
//! `/lib/x86_64-linux-gnu/...`) point back into the tree instead of out to the host.
//!
//! Files are mapped rather than read ([`Bytes`]): a parse touches a few pages of each.
//!
//! Invariant: every result is an absolute capsule path (without the sysroot prefix); `..` never
//! climbs above the root, and more than 40 symlinks in one resolution is `ELOOP`, as in Linux.
#![allow(unsafe_code)] // mmap and munmap of files this module opens (Bytes::map)

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// What an lstat of a tree path found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A regular file.
    File,
    /// Anything else (a device, a socket, a FIFO).
    Other,
}

/// A file's content: read into memory, or mapped read-only ([`Bytes::map`]).
pub enum Bytes {
    /// Read.
    Owned(Vec<u8>),
    /// Mapped.
    Mapped(Mapped),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m.as_slice(),
        }
    }
}

impl Bytes {
    /// The whole of `file`, mapped read-only and private: only the pages a parse touches are
    /// read (an ELF file's headers and dynamic section, not its code).
    pub fn map(file: &fs::File) -> io::Result<Bytes> {
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(Bytes::Owned(Vec::new()));
        }
        // SAFETY: a fresh mapping (no address given) of `len` bytes of a descriptor we own,
        // read-only and private; the result is checked against MAP_FAILED before use.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Bytes::Mapped(Mapped { addr, len }))
    }
}

/// A read-only private mapping of a whole file, unmapped when dropped.
pub struct Mapped {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `addr` is a live mapping of `len` readable bytes (made in `Bytes::map`,
        // unmapped only in `drop`). A file truncated while mapped would fault on access: the
        // files mapped are libraries and programs, which dpkg and the store replace by rename,
        // never rewrite in place (ld.so maps the same files on the same assumption).
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Bytes::map`, unmapped once, here; no slice of it
        // outlives `self` (`as_slice` borrows it).
        unsafe {
            libc::munmap(self.addr, self.len);
        }
    }
}

/// A file tree addressed by absolute paths, read without following a final symlink (the
/// resolver follows them itself, so that absolute targets stay inside the tree).
pub trait Tree {
    /// lstat(2) of `path`.
    fn lstat(&self, path: &Path) -> io::Result<Node>;
    /// readlink(2) of the symlink at `path`.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// The content of the regular file at `path` (no symlink on the way), and an identity
    /// that two names of one file share (the host's `(st_dev, st_ino)`).
    fn read(&self, path: &Path) -> io::Result<(Bytes, (u64, u64))>;
}

/// A host directory seen as `/`.
#[derive(Debug, Clone, Copy)]
pub struct Sysroot<'a>(pub &'a Path);

impl Tree for Sysroot<'_> {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        let ft = fs::symlink_metadata(under(self.0, path))?.file_type();
        Ok(if ft.is_symlink() {
            Node::Symlink
        } else if ft.is_dir() {
            Node::Dir
        } else if ft.is_file() {
            Node::File
        } else {
            Node::Other
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(under(self.0, path))
    }

    fn read(&self, path: &Path) -> io::Result<(Bytes, (u64, u64))> {
        let f = fs::File::open(under(self.0, path))?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok((Bytes::map(&f)?, (meta.dev(), meta.ino())))
    }
}

/// `root` joined with absolute capsule path `path`.
pub(super) fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// realpath(3) of absolute capsule path `path` inside `root`: symlinks are followed, absolute
/// targets taken relative to `root`. The result is a capsule path.
pub fn resolve_in_root(root: &dyn Tree, path: &Path) -> io::Result<PathBuf> {
    const MAX_SYMLINKS: u32 = 40; // Linux's MAXSYMLINKS
    let mut done = PathBuf::from("/");
    let mut todo = Vec::new();
    push_parts(&mut todo, path);
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        let node = root.lstat(&next)?;
        if node != Node::Symlink {
            // Like the kernel, refuse to walk on (even with "..") from a non-directory.
            if !todo.is_empty() && node != Node::Dir {
                return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
            }
            done = next;
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = root.read_link(&next)?;
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        push_parts(&mut todo, &target);
    }
    Ok(done)
}

/// `path` without `.` or `..` components, naming the same file. ld.so's own paths keep the
/// `..` of `$ORIGIN/../lib`, which a capsule manifest cannot hold; the kernel resolves
/// everything before a `..` physically, so that part is resolved here too (inside `root`) and
/// the part after the last `..` is kept as is, its symlinks for the caller to record. If the
/// prefix cannot be resolved, the `..` are dropped lexically.
pub(super) fn without_dots(root: &dyn Tree, path: &Path) -> PathBuf {
    let parts: Vec<Component<'_>> = path.components().collect();
    let Some(last) = parts.iter().rposition(|c| *c == Component::ParentDir) else {
        return parts.iter().collect();
    };
    let (prefix, rest) = parts.split_at(last + 1);
    let prefix: PathBuf = prefix.iter().collect();
    let base = resolve_in_root(root, &prefix).unwrap_or_else(|_| {
        let mut lexical = PathBuf::from("/");
        for c in prefix.components() {
            match c {
                Component::ParentDir => drop(lexical.pop()),
                Component::Normal(n) => lexical.push(n),
                _ => {}
            }
        }
        lexical
    });
    rest.iter().fold(base, |acc, c| acc.join(c))
}

/// Pushes the components of `path` onto the stack `todo`, first component on top.
fn push_parts(todo: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_in_root_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let tree = Sysroot(root);
        fs::create_dir_all(root.join("real/dir")).unwrap();
        fs::write(root.join("real/dir/f"), "x").unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../real/dir", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let r = |p: &str| resolve_in_root(&tree, Path::new(p)).ok();
        assert_eq!(r("/abs/dir/f"), Some(PathBuf::from("/real/dir/f")));
        assert_eq!(r("/real/up/../dir/./f"), Some(PathBuf::from("/real/dir/f")));
        assert_eq!(r("/../../real/dir"), Some(PathBuf::from("/real/dir")));
        assert_eq!(r("/loop"), None);
        assert_eq!(r("/real/dir/f/x"), None);
        assert_eq!(r("/real/dir/f/.."), None);
    }

    #[test]
    fn without_dots_resolves_only_before_the_last_dotdot() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("srv/app/bin")).unwrap();
        fs::create_dir_all(root.join("srv/app/lib")).unwrap();
        fs::create_dir_all(root.join("opt")).unwrap();
        std::os::unix::fs::symlink("/srv/app", root.join("opt/app")).unwrap();
        std::os::unix::fs::symlink("libx.so.1.0", root.join("srv/app/lib/libx.so.1")).unwrap();
        let d = |p: &str| without_dots(&Sysroot(root), Path::new(p));
        // The symlinked prefix is resolved (that is what ".." does), the final symlink is kept.
        assert_eq!(d("/opt/app/bin/../lib/libx.so.1"), PathBuf::from("/srv/app/lib/libx.so.1"));
        assert_eq!(d("/opt/./app/lib/libx.so.1"), PathBuf::from("/opt/app/lib/libx.so.1"));
        assert_eq!(d("/nonexistent/a/../b"), PathBuf::from("/nonexistent/b"));
    }
}
