//! Tier 2's merged listings. A program without the shim (static, Go) lists a directory with
//! `getdents64` on a descriptor. For a capsule directory that the host has too, the
//! descriptor the supervisor injected is the tree's, which holds the capsule's side only.
//! So the supervisor remembers each such descriptor it injected — by process (thread group)
//! and number, with a duplicate of its own to tell that open file from a number reused since
//! (`kcmp`) — and answers `getdents64` on it from a merged listing, as the shim's `readdir`
//! merges: `.` and `..`, the host's entries the tree does not shadow, then the tree's.
//!
//! Limits: the listing is taken at the first `getdents64` and served from there (a file
//! created meanwhile shows from the next open); `lseek` (rewinddir) is not trapped, so a
//! rewound descriptor reads on from where it was; a descriptor inherited across `fork` is
//! the child's under another process, and lists the tree only.
#![allow(unsafe_code)] // fcntl, fstatat and kcmp on descriptors we own

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::memory::TraceeMemory;
use super::notify::Reply;
use crate::resolve::untree;
use crate::view::View;
use crate::view::live::{self, Live};

/// Remembered descriptors beyond which those whose process or file is gone are dropped.
const PRUNE_AT: usize = 256;

/// The merged directories the supervisor injected, and where each listing stands.
#[derive(Default)]
pub struct Listings {
    open: HashMap<(i32, i32), Listing>,
    /// Thread → thread group, as `/proc/TID/status` says (a stale entry, a thread number
    /// reused since, only costs a miss: `kcmp` checks the calling thread's own descriptor).
    groups: HashMap<u32, i32>,
}

/// A merged directory about to be injected: our duplicate of the descriptor, the host
/// directory of the same path, and where the tree's side is listed from.
pub struct Candidate {
    ours: OwnedFd,
    host: PathBuf,
    tree: TreeSide,
}

/// Where a merged listing's tree side comes from.
enum TreeSide {
    /// The injected descriptor is the tree's directory.
    Ours,
    /// The injected descriptor is the host's (a write-copy directory the tree had no copy of
    /// when it was opened): the tree's copy at this path, if one was made since.
    At(PathBuf),
}

struct Listing {
    ours: OwnedFd,
    host: PathBuf,
    tree: TreeSide,
    entries: Option<Vec<Dirent>>,
    next: usize,
}

/// One entry of a merged listing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dirent {
    ino: u64,
    kind: u8,
    name: Vec<u8>,
}

impl Listings {
    /// Whether `fd`, which the supervisor opened and is about to inject, is listed merged:
    /// a tree directory the host has too ([`crate::boundary::merged_listing`]), or, where the
    /// sandbox records deletions, a write-copy host directory.
    pub fn candidate(view: &View<'_>, fd: BorrowedFd<'_>) -> Option<Candidate> {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let path = path.as_os_str().as_bytes();
        let (abs, tree) = match untree(view.tree(), path) {
            Some(abs) => (abs, TreeSide::Ours),
            None if view.live().is_some() => {
                let mut t = view.tree().to_vec();
                t.extend_from_slice(path);
                (path, TreeSide::At(PathBuf::from(OsStr::from_bytes(&t))))
            }
            None => return None,
        };
        if !crate::boundary::merged_listing(view, abs) {
            return None;
        }
        // SAFETY: duplicating a descriptor we hold open; the kernel returns a new one or -1.
        let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        // SAFETY: `dup` was just made and is owned by nobody else.
        let ours = unsafe { OwnedFd::from_raw_fd(dup) };
        Some(Candidate { ours, host: Path::new(OsStr::from_bytes(abs)).to_owned(), tree })
    }

    /// `c` was injected into thread `tid` as descriptor `number`.
    pub fn injected(&mut self, tid: u32, number: i32, c: Candidate) {
        let Some(group) = self.group(tid) else { return };
        if self.open.len() >= PRUNE_AT {
            self.open.retain(|&(g, fd), l| same_file(g, fd, &l.ours));
            self.groups.clear();
        }
        let listing = Listing { ours: c.ours, host: c.host, tree: c.tree, entries: None, next: 0 };
        self.open.insert((group, number), listing);
    }

    /// `getdents64(fd, addr, count)` from thread `tid`: served from the merged listing when
    /// `fd` is one we injected and still the same open file, else the kernel's.
    /// Host names deleted in the sandbox (`live`) are left out.
    pub fn getdents(
        &mut self,
        mem: &impl TraceeMemory,
        live: Option<Live<'_>>,
        tid: u32,
        fd: i32,
        addr: u64,
        count: u64,
    ) -> Reply {
        if self.open.is_empty() {
            return Reply::Continue;
        }
        let Some(group) = self.group(tid) else { return Reply::Continue };
        let Some(l) = self.open.get_mut(&(group, fd)) else { return Reply::Continue };
        if !same_file(i32::try_from(tid).unwrap_or(-1), fd, &l.ours) {
            self.open.remove(&(group, fd));
            return Reply::Continue;
        }
        let entries = l.entries.get_or_insert_with(|| merged(&l.ours, &l.tree, &l.host, live));
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let mut buf = Vec::new();
        let mut next = l.next;
        while let Some(e) = entries.get(next) {
            let rec = record(e, next + 1);
            if buf.len() + rec.len() > count {
                break;
            }
            buf.extend_from_slice(&rec);
            next += 1;
        }
        if buf.is_empty() && next < entries.len() {
            return Reply::Error(libc::EINVAL); // not even one entry fits, as the kernel says
        }
        if !buf.is_empty() && (mem.write(addr, &buf).is_err() || !mem.still_valid()) {
            return Reply::Error(libc::EFAULT);
        }
        l.next = next;
        Reply::Value(i64::try_from(buf.len()).unwrap_or(i64::MAX))
    }

    fn group(&mut self, tid: u32) -> Option<i32> {
        if let Some(&g) = self.groups.get(&tid) {
            return Some(g);
        }
        let g = super::handlers::tgid_of(tid)?.cast_signed();
        self.groups.insert(tid, g);
        Some(g)
    }
}

/// Whether descriptor `fd` of process (or thread) `pid` is the open file `ours` is a duplicate of.
fn same_file(pid: i32, fd: i32, ours: &OwnedFd) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: kcmp only compares kernel objects; both descriptors are plain integers here.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(std::process::id().cast_signed()),
            libc::c_long::from(pid),
            KCMP_FILE,
            libc::c_long::from(ours.as_raw_fd()),
            libc::c_long::from(fd),
        )
    };
    r == 0
}

/// `.`, `..`, the host's entries that the tree does not have and the sandbox did not delete,
/// then the tree's (without the materialiser's `.capsule-` scratch names).
fn merged(ours: &OwnedFd, tree: &TreeSide, host: &Path, live: Option<Live<'_>>) -> Vec<Dirent> {
    let ino_at = |name: &std::ffi::CStr| {
        // SAFETY: a plain struct the kernel fills; `name` NUL-terminated; `ours` open.
        let mut sb: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe { libc::fstatat(ours.as_raw_fd(), name.as_ptr(), &raw mut sb, 0) };
        if r == 0 { sb.st_ino } else { 0 }
    };
    let mut out = vec![
        Dirent { ino: ino_at(c"."), kind: libc::DT_DIR, name: b".".to_vec() },
        Dirent { ino: ino_at(c".."), kind: libc::DT_DIR, name: b"..".to_vec() },
    ];
    let tree_entries = match tree {
        TreeSide::Ours => entries(Path::new(&format!("/proc/self/fd/{}", ours.as_raw_fd()))),
        TreeSide::At(p) => entries(p),
    };
    let in_tree: std::collections::HashSet<&[u8]> = tree_entries.iter().map(|e| e.name.as_slice()).collect();
    let prefix = live::dir_hash(host.as_os_str().as_bytes());
    let deleted = |name: &[u8]| live.is_some_and(|l| l.contains_hash(live::hash_more(prefix, name)));
    out.extend(entries(host).into_iter().filter(|e| !in_tree.contains(e.name.as_slice()) && !deleted(&e.name)));
    out.extend(tree_entries.iter().filter(|e| !e.name.starts_with(b".capsule-")).cloned());
    out
}

/// A directory's entries (without `.` and `..`), in the order the kernel lists them.
fn entries(dir: &Path) -> Vec<Dirent> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .map(|e| {
            let kind = e.file_type().map_or(libc::DT_UNKNOWN, |t| match () {
                () if t.is_dir() => libc::DT_DIR,
                () if t.is_file() => libc::DT_REG,
                () if t.is_symlink() => libc::DT_LNK,
                () if t.is_fifo() => libc::DT_FIFO,
                () if t.is_socket() => libc::DT_SOCK,
                () if t.is_char_device() => libc::DT_CHR,
                () if t.is_block_device() => libc::DT_BLK,
                () => libc::DT_UNKNOWN,
            });
            Dirent { ino: e.ino(), kind, name: e.file_name().as_bytes().to_vec() }
        })
        .collect()
}

/// One `linux_dirent64`: inode, offset (the next entry's position), record length (8-byte
/// aligned), type, NUL-terminated name.
fn record(e: &Dirent, off: usize) -> Vec<u8> {
    let len = (19 + e.name.len() + 1).next_multiple_of(8);
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&e.ino.to_le_bytes());
    r.extend_from_slice(&i64::try_from(off).unwrap_or(i64::MAX).to_le_bytes());
    r.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
    r.push(e.kind);
    r.extend_from_slice(&e.name);
    r.resize(len, 0);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_linux_dirent64() {
        let r = record(&Dirent { ino: 7, kind: libc::DT_REG, name: b"abcde".to_vec() }, 3);
        assert_eq!(r.len(), 32); // 19 + 5 + NUL = 25, aligned to 8
        assert_eq!(&r[..8], &7u64.to_le_bytes());
        assert_eq!(&r[8..16], &3i64.to_le_bytes());
        assert_eq!(&r[16..18], &32u16.to_le_bytes());
        assert_eq!(r[18], libc::DT_REG);
        assert_eq!(&r[19..25], b"abcde\0");
        assert_eq!(record(&Dirent { ino: 1, kind: 0, name: b"1234".to_vec() }, 1).len(), 24);
    }

    #[test]
    fn merged_lists_host_entries_not_in_the_tree_then_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let (tree, host) = (d.path().join("tree"), d.path().join("host"));
        for (dir, names) in [(&tree, &["both", "mine", ".capsule-tmp"][..]), (&host, &["both", "theirs"][..])] {
            std::fs::create_dir(dir).unwrap();
            for n in names {
                std::fs::write(dir.join(n), n).unwrap();
            }
        }
        let fd: OwnedFd = std::fs::File::open(&tree).unwrap().into();
        let names: Vec<String> =
            merged(&fd, &TreeSide::Ours, &host, None).into_iter().map(|e| String::from_utf8(e.name).unwrap()).collect();
        assert_eq!(&names[..2], [".", ".."]);
        let mut rest = names[2..].to_vec();
        assert_eq!(rest.remove(0), "theirs", "the host's first: {names:?}");
        rest.sort();
        assert_eq!(rest, ["both", "mine"]);
    }

    #[test]
    fn same_file_tells_a_duplicate_from_another_open() {
        let d = tempfile::tempdir().unwrap();
        let a: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        let again: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        let me = std::process::id().cast_signed();
        // SAFETY: duplicating a descriptor we hold open.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::fcntl(a.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0)) };
        assert!(same_file(me, a.as_raw_fd(), &dup));
        assert!(!same_file(me, again.as_raw_fd(), &dup));
    }
}
