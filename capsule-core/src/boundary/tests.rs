//! The layer against a fake caller: a tree with run-time symlinks, a cwd, /proc links.

use std::collections::BTreeMap;

use super::*;
use crate::digest::Digest;
use crate::manifest::{EntryKind, Manifest};
use crate::resolve::Intent;
use crate::view::{Mode, View, ViewOptions, compile};

const TREE: &str = "/store/sandboxes/t/root";

fn view_bytes(root: Mode) -> Vec<u8> {
    let f = || EntryKind::File { size: 1, digest: Digest::of(b"x") };
    let m = Manifest::for_tests(
        vec![
            ("opt", EntryKind::Dir),
            ("opt/app", EntryKind::Dir),
            ("opt/app/data", f()),
            ("opt/app/lib", EntryKind::Symlink { target: b"/opt/app/real".to_vec() }),
            ("opt/app/real", EntryKind::Dir),
            ("opt/app/real/x", f()),
        ],
        0o755,
    );
    let opts = ViewOptions {
        tree: TREE.into(),
        capsule_mode: Mode::WriteCopy,
        rules: vec![
            ("/".into(), root),
            ("/proc".into(), Mode::Passthrough),
            ("/run".into(), Mode::WriteCopy),
            ("/store".into(), Mode::ReadOnly),
        ],
        whiteouts: vec![],
        files: vec![],
        redirects: vec![],
        linked: vec![],
    };
    compile(&m, &opts)
}

/// Symlinks the tree holds (tree-relative path → target), the host's (absolute path →
/// target) and the caller's links.
#[derive(Default)]
struct Fake {
    links: BTreeMap<&'static str, &'static str>,
    host_links: BTreeMap<&'static str, &'static str>,
    cwd: &'static str,
    fds: BTreeMap<i32, &'static str>,
}

fn fill(out: &mut PathBuffer, s: &str) -> Result<(), i32> {
    out.clear();
    out.push(s.as_bytes())
}

impl Caller for Fake {
    fn cwd(&self, out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.cwd)
    }
    fn fd_path(&self, fd: i32, out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.fds.get(&fd).ok_or(libc::EBADF)?)
    }
    fn proc_link(&self, proc: &[u8], link: &[u8], out: &mut PathBuffer) -> Result<(), i32> {
        assert_eq!(proc, b"self");
        match link {
            b"cwd" => self.cwd(out),
            l => {
                let n: i32 = std::str::from_utf8(l.strip_prefix(b"fd/").unwrap()).unwrap().parse().unwrap();
                self.fd_path(n, out)
            }
        }
    }
    fn probe_tree(&self, rel: &CStr, follow: bool) -> Result<(), i32> {
        let rel = rel.to_str().unwrap().trim_end_matches('/');
        let comps: Vec<&str> = rel.split('/').collect();
        for i in 1..=comps.len() {
            let prefix = comps[..i].join("/");
            if self.links.contains_key(prefix.as_str()) && (i < comps.len() || follow) {
                return Err(libc::ELOOP);
            }
        }
        Ok(())
    }
    fn readlink_tree(&self, rel: &CStr, out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.links.get(rel.to_str().unwrap()).ok_or(libc::EINVAL)?)
    }
    fn probe_host(&self, abs: &CStr, follow: bool) -> Result<(), i32> {
        let abs = abs.to_str().unwrap();
        let hit = self
            .host_links
            .keys()
            .any(|l| abs.strip_prefix(l).is_some_and(|r| r.starts_with('/') || (r.is_empty() && follow)));
        if hit { Err(libc::ELOOP) } else { Ok(()) }
    }
    fn readlink_host(&self, abs: &CStr, out: &mut PathBuffer) -> Result<(), i32> {
        fill(out, self.host_links.get(abs.to_str().unwrap()).ok_or(libc::EINVAL)?)
    }
}

fn placed(root: Mode, fake: &Fake, dirfd: i32, path: &str, follow: bool, create: bool) -> String {
    let bytes = view_bytes(root);
    let v = View::new(&bytes).unwrap();
    let mut buf = PathBuffer::new();
    let s = |c: &CStr| c.to_str().unwrap().to_owned();
    match place(&v, fake, dirfd, path.as_bytes(), Intent { follow, create }, &mut buf) {
        Place::Original => "original".into(),
        Place::Host(p) => format!("host {}", s(p)),
        Place::Tree(p, e) => format!("tree {}{}", s(p), if e.is_some() { " (entry)" } else { "" }),
        Place::TreeThenHost(r, a) => format!("tree-then-host {} {}", s(r), s(a)),
        Place::ReadOnly(p) => format!("read-only {}", s(p)),
        Place::Deny(e) => format!("deny {e}"),
    }
}

/// The store, read-only to its programs whatever the rule above it: read and changed (EROFS)
/// on the host, never copied into the sandbox; the program's tree in it is its own; a symlink
/// of the store's leads where it points.
#[test]
fn a_read_only_prefix_is_the_hosts_and_only_its_trees_paths_are_the_programs() {
    let fake = Fake { host_links: [("/store/l", "/run")].into(), ..Fake::default() };
    for root in [Mode::Merged, Mode::WriteCopy] {
        assert_eq!(placed(root, &fake, -100, "/store/cache/ab", true, false), "read-only /store/cache/ab");
        assert_eq!(
            placed(root, &fake, -100, "/store/sandboxes/other/x", false, true),
            "read-only /store/sandboxes/other/x"
        );
        assert_eq!(
            placed(root, &fake, -100, "/store/sandboxes/t/root/opt/app/data", true, false),
            "tree opt/app/data (entry)"
        );
        assert_eq!(placed(root, &fake, -100, "/store/l/x", true, true), "tree-then-host run/x /run/x");
        // Not followed: the link itself, in the store.
        assert_eq!(placed(root, &fake, -100, "/store/l", false, false), "read-only /store/l");
        // The directory holding the tree is an empty one (the tree's host path is `/`).
        assert_eq!(placed(root, &fake, -100, "/store/sandboxes/t", true, false), "read-only /store/sandboxes/t/empty");
        // The tree's `..` is the view's root, not the sandbox directory.
        let up = placed(root, &fake, -100, "/store/sandboxes/t/root/..", true, false);
        assert!(up == "host /" || up == "tree-then-host . /", "{up}");
        let up = placed(root, &fake, -100, "/store/sandboxes/t/root/opt/../../../x", true, false);
        assert!(up == "host /x" || up == "tree-then-host x /x", "{up}");
        assert_eq!(placed(root, &fake, -100, "/store/sandboxes/t/root", true, false), "tree .");
    }
}

#[test]
fn a_symlink_made_at_run_time_resolves_in_the_view() {
    // apt: /tmp/x/1.deb -> /var/cache/apt/archives/1.deb, made in the tree under write-copy.
    let fake = Fake { links: [("tmp/x/1.deb", "/var/cache/a.deb")].into(), ..Fake::default() };
    assert_eq!(
        placed(Mode::WriteCopy, &fake, -100, "/tmp/x/1.deb", true, false),
        "tree-then-host var/cache/a.deb /var/cache/a.deb"
    );
    // Not followed when the call does not follow.
    assert_eq!(
        placed(Mode::WriteCopy, &fake, -100, "/tmp/x/1.deb", false, false),
        "tree-then-host tmp/x/1.deb /tmp/x/1.deb"
    );
}

#[test]
fn a_symlink_to_a_host_directory_does_not_lead_to_the_host() {
    // symlink("/srv/data", "/opt/app/l") in a capsule directory; then a write below it.
    let fake = Fake { links: [("opt/app/l", "/srv/data")].into(), ..Fake::default() };
    assert_eq!(
        placed(Mode::WriteCopy, &fake, -100, "/opt/app/l/x", true, true),
        "tree-then-host srv/data/x /srv/data/x"
    );
    assert_eq!(placed(Mode::Full, &fake, -100, "/opt/app/l/x", true, true), "tree srv/data/x");
    // Merged: the host's /srv/data, as the link says (the host is writable there anyway).
    assert_eq!(placed(Mode::Merged, &fake, -100, "/opt/app/l/x", true, true), "host /srv/data/x");
    // A relative target, and a link to a capsule directory.
    let fake = Fake { links: [("opt/app/l", "real")].into(), ..Fake::default() };
    assert_eq!(placed(Mode::Full, &fake, -100, "/opt/app/l/x", true, false), "tree opt/app/real/x (entry)");
    let fake = Fake { links: [("opt/app/l", "l")].into(), ..Fake::default() };
    assert_eq!(placed(Mode::Full, &fake, -100, "/opt/app/l/x", true, false), format!("deny {}", libc::ELOOP));
}

#[test]
fn a_name_made_through_a_host_symlink_takes_the_isolation_it_lands_in() {
    // ln -s /run /tmp/l (on the host: /tmp is passed through), then a write below it: /run is
    // write-copy, so the name is made in the sandbox.
    let fake = Fake { host_links: [("/tmp/l", "/run")].into(), ..Fake::default() };
    assert_eq!(placed(Mode::Merged, &fake, -100, "/tmp/l/x", true, true), "tree-then-host run/x /run/x");
    // Reads through it are the kernel's; kernel filesystems are never probed.
    assert_eq!(placed(Mode::Merged, &fake, -100, "/tmp/l/x", true, false), "original");
    let fake = Fake { host_links: [("/proc/self/fd/1", "/run/x")].into(), ..Fake::default() };
    assert_eq!(placed(Mode::Merged, &fake, -100, "/proc/self/fd/1", true, true), "original");
}

#[test]
fn proc_links_name_the_view() {
    let fake = Fake { cwd: "/store/sandboxes/t/root/opt/app", fds: [(7, "/srv")].into(), ..Fake::default() };
    assert_eq!(
        placed(Mode::WriteCopy, &fake, -100, "/proc/self/root/opt/app/data", true, false),
        "tree opt/app/data (entry)"
    );
    assert_eq!(
        placed(Mode::WriteCopy, &fake, -100, "/proc/self/root/etc/x", true, true),
        "tree-then-host etc/x /etc/x"
    );
    assert_eq!(placed(Mode::Full, &fake, -100, "/proc/self/cwd/data", true, false), "tree opt/app/data (entry)");
    assert_eq!(placed(Mode::Full, &fake, -100, "/proc/self/fd/7/y", true, true), "tree srv/y");
    // The links themselves and other /proc files are the kernel's.
    assert_eq!(placed(Mode::Full, &fake, -100, "/proc/self/fd/7", true, false), "original");
    assert_eq!(placed(Mode::Full, &fake, -100, "/proc/self/cwd", false, false), "original", "readlink, lstat");
    assert_eq!(placed(Mode::Full, &fake, -100, "/proc/self/cwd", true, false), "tree opt/app (entry)");
    assert_eq!(placed(Mode::Full, &fake, -100, "/proc/self/status", true, false), "original");
}

#[test]
fn relative_paths_join_the_callers_directory() {
    let fake = Fake { cwd: "/store/sandboxes/t/root/opt/app", fds: [(5, "/etc")].into(), ..Fake::default() };
    assert_eq!(placed(Mode::Merged, &fake, -100, "data", true, false), "tree opt/app/data (entry)");
    assert_eq!(placed(Mode::Merged, &fake, -100, "lib/x", true, false), "tree opt/app/real/x (entry)");
    assert_eq!(placed(Mode::Merged, &fake, 5, "passwd", true, false), "original");
    assert_eq!(placed(Mode::WriteCopy, &fake, 5, "passwd", true, false), "tree-then-host etc/passwd /etc/passwd");
    assert_eq!(placed(Mode::Merged, &fake, -100, "", true, false), "original");
}

mod effects {
    use std::ffi::CString;

    use super::super::Place;
    use super::super::effect::{self, At, OP_COPY_UP, OP_WHITEOUT, OP_WHITEOUT_DIR, Op, Tier};

    /// A tier whose host holds `dirs` and `files`, whose materialiser answers `answer` and
    /// records requests.
    #[derive(Default)]
    struct FakeTier {
        dirs: Vec<&'static str>,
        files: Vec<&'static str>,
        answer: i32,
        asked: Vec<(u8, String)>,
    }

    impl Tier for FakeTier {
        fn materialise(&mut self, op: u8, rel: &std::ffi::CStr) -> i32 {
            self.asked.push((op, rel.to_str().unwrap().to_owned()));
            self.answer
        }
        fn private(&mut self, _: &std::ffi::CStr) -> bool {
            false
        }
        fn host_kind(&mut self, abs: &std::ffi::CStr) -> Option<u32> {
            let a = abs.to_str().unwrap();
            if self.dirs.contains(&a) { Some(libc::S_IFDIR) } else { self.files.contains(&a).then_some(libc::S_IFREG) }
        }
    }

    fn wc(rel: &str) -> (CString, CString) {
        (CString::new(rel).unwrap(), CString::new(format!("/{rel}")).unwrap())
    }

    /// Nothing at a read-only place changes, and nothing is asked of the materialiser: every
    /// call that would change it fails with EROFS before it is made; reads go to the host.
    #[test]
    fn a_read_only_place_refuses_every_change_and_reads_the_host() {
        let (_, abs) = wc("store/cache/ab");
        let place = Place::ReadOnly(&abs);
        let mut t = FakeTier { files: vec!["/store/cache/ab"], ..FakeTier::default() };
        let mut made = Vec::new();
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDONLY | libc::O_TRUNC,
            libc::O_WRONLY | libc::O_APPEND,
            libc::O_TMPFILE | libc::O_RDWR,
        ] {
            let r = effect::open(&mut t, &place, flags, |_, f| {
                made.push(f);
                Ok(3)
            });
            assert_eq!(r, Some(Err(libc::EROFS)), "open with flags {flags:#o}");
        }
        // O_CREAT of a file that is there opens it (O_EXCL: EEXIST); of one that is not: EROFS.
        let r = effect::open(&mut t, &place, libc::O_RDONLY | libc::O_CREAT, |at, f| {
            assert!(matches!(at, At::Host(_)) && f & libc::O_CREAT == 0);
            Ok(4)
        });
        assert_eq!(r, Some(Ok(4)));
        let r = effect::open(&mut t, &place, libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL, |_, _| Ok(4));
        assert_eq!(r, Some(Err(libc::EEXIST)));
        let (_, new) = wc("store/cache/new");
        let r = effect::open(&mut t, &Place::ReadOnly(&new), libc::O_RDONLY | libc::O_CREAT, |_, _| Ok(4));
        assert_eq!(r, Some(Err(libc::EROFS)));
        for op in [Op::Modify, Op::Create, Op::Remove, Op::RemoveDir] {
            let r = effect::mutate(&mut t, &place, op, |_| {
                made.push(-1);
                Ok(())
            });
            assert_eq!(r, Some(Err(libc::EROFS)), "{op:?}");
        }
        let (to, _) = wc("opt/app/other");
        let tree = Place::Tree(&to, None);
        for is_rename in [true, false] {
            for (a, b) in [(&place, &tree), (&tree, &place)] {
                let r = effect::two(&mut t, a, b, is_rename, |_| {
                    made.push(-2);
                    Ok(())
                });
                assert_eq!(r, Some(Err(libc::EROFS)), "rename: {is_rename}");
            }
        }
        assert!(made.is_empty(), "a change was made: {made:?}");
        assert!(t.asked.is_empty(), "the materialiser was asked: {:?}", t.asked);
        let r = effect::open(&mut t, &place, libc::O_RDONLY, |at, _| {
            assert!(matches!(at, At::Host(p) if p.to_bytes() == b"/store/cache/ab"));
            Ok(5)
        });
        assert_eq!(r, Some(Ok(5)));
        assert_eq!(effect::read(&mut t, &place, |at| Ok(matches!(at, At::Host(_)))), Some(Ok(true)));
        assert!(t.asked.is_empty());
    }

    #[test]
    fn removing_a_write_copy_host_name_checks_what_the_host_has() {
        let (rel, abs) = wc("etc/d");
        let place = Place::TreeThenHost(&rel, &abs);
        let absent = |_: At<'_>| Err(libc::ENOENT);
        // rmdir of a host directory: the materialiser decides (ENOTEMPTY when it has entries).
        let mut t = FakeTier { dirs: vec!["/etc/d"], answer: libc::ENOTEMPTY, ..FakeTier::default() };
        assert_eq!(effect::mutate(&mut t, &place, Op::RemoveDir, absent), Some(Err(libc::ENOTEMPTY)));
        assert_eq!(t.asked, vec![(OP_WHITEOUT_DIR, "etc/d".to_owned())]);
        let mut t = FakeTier { dirs: vec!["/etc/d"], ..FakeTier::default() };
        assert_eq!(effect::mutate(&mut t, &place, Op::RemoveDir, absent), Some(Ok(())));
        // unlink of a directory, rmdir of a file: the kernel's errors, nothing recorded.
        assert_eq!(effect::mutate(&mut t, &place, Op::Remove, absent), Some(Err(libc::EISDIR)));
        let mut t = FakeTier { files: vec!["/etc/d"], ..FakeTier::default() };
        assert_eq!(effect::mutate(&mut t, &place, Op::RemoveDir, absent), Some(Err(libc::ENOTDIR)));
        assert!(t.asked.is_empty());
        assert_eq!(effect::mutate(&mut t, &place, Op::Remove, absent), Some(Ok(())));
        assert_eq!(t.asked, vec![(OP_WHITEOUT, "etc/d".to_owned())]);
        // Neither side has it: the tree's answer.
        let mut t = FakeTier::default();
        assert_eq!(effect::mutate(&mut t, &place, Op::Remove, absent), Some(Err(libc::ENOENT)));
    }

    #[test]
    fn a_write_copy_name_neither_side_has_is_created_in_the_tree() {
        let (rel, abs) = wc("etc/new");
        let place = Place::TreeThenHost(&rel, &abs);
        let mut t = FakeTier::default();
        let mut seen = Vec::new();
        let r = effect::open(&mut t, &place, libc::O_RDONLY | libc::O_CREAT, |at, flags| {
            seen.push((matches!(at, At::Tree(_)), flags & libc::O_CREAT != 0));
            if flags & libc::O_CREAT != 0 { Ok(3) } else { Err(libc::ENOENT) }
        });
        assert_eq!(r, Some(Ok(3)));
        assert_eq!(seen, vec![(true, false), (true, true)]);
        assert_eq!(t.asked, vec![(OP_COPY_UP, "etc/new".to_owned())]);
        // A host file is read from the host.
        let mut t = FakeTier { files: vec!["/etc/new"], ..FakeTier::default() };
        let r = effect::open(&mut t, &place, libc::O_RDONLY | libc::O_CREAT, |at, _| match at {
            At::Tree(_) => Err(libc::ENOENT),
            At::Host(_) => Ok(4),
        });
        assert_eq!(r, Some(Ok(4)));
    }

    /// A pristine capsule file shares the cache's inode: when the materialiser cannot copy it
    /// up (it failed, or died with its launcher), every call that would change the file fails
    /// with EIO and is never made on it.
    #[test]
    fn a_capsule_file_that_cannot_be_copied_up_is_never_changed() {
        use crate::view::{Entry, Kind};
        let rel = CString::new("opt/app/data").unwrap();
        let entry = Entry { index: 0, path: b"opt/app/data", target: b"", kind: Kind::File, flags: 0, mode: 0o644 };
        let place = Place::Tree(&rel, Some(entry));
        let gone = || FakeTier { answer: libc::EIO, ..FakeTier::default() };
        let mut made = 0;
        for flags in [libc::O_WRONLY, libc::O_RDWR | libc::O_APPEND, libc::O_RDONLY | libc::O_TRUNC, libc::O_CREAT] {
            let r = effect::open(&mut gone(), &place, flags, |_, _| {
                made += 1;
                Ok(3)
            });
            assert_eq!(r, Some(Err(libc::EIO)), "open with flags {flags:#o}");
        }
        let r = effect::mutate(&mut gone(), &place, Op::Modify, |_| {
            made += 1;
            Ok(())
        });
        assert_eq!(r, Some(Err(libc::EIO)), "chmod, chown, truncate, utimensat, setxattr");
        let (to, _) = wc("opt/app/other");
        let new = Place::Tree(&to, None);
        for is_rename in [true, false] {
            let r = effect::two(&mut gone(), &place, &new, is_rename, |_| {
                made += 1;
                Ok(())
            });
            assert_eq!(r, Some(Err(libc::EIO)), "rename: {is_rename}");
        }
        assert_eq!(made, 0, "a call went on to the pristine file");
        // A read still works (and asks nothing but a link).
        let mut t = gone();
        let r = effect::open(&mut t, &place, libc::O_RDONLY, |_, _| Ok(3));
        assert_eq!(r, Some(Ok(3)));
        assert!(t.asked.is_empty());
        // With the materialiser there, the write goes on after the copy-up.
        let mut t = FakeTier::default();
        let r = effect::open(&mut t, &place, libc::O_WRONLY, |_, _| Ok(3));
        assert_eq!((r, t.asked), (Some(Ok(3)), vec![(OP_COPY_UP, "opt/app/data".to_owned())]));
    }
}

/// A socket name of the tiers' spelling is given back as the program bound it: its own tree
/// descriptor's always, another process's only where the tree holds a socket there.
#[test]
fn a_tree_sockets_name_is_given_back_as_bound() {
    let name = b"/proc/self/fd/7/run/app.sock";
    assert_eq!(unplaced_socket(name, 7, |_| panic!("not asked for our own")), Some(&b"/run/app.sock"[..]));
    assert_eq!(unplaced_socket(name, 5, |rel| rel == b"run/app.sock"), Some(&b"/run/app.sock"[..]));
    assert_eq!(unplaced_socket(name, 5, |_| false), None);
    for other in [&b"/run/app.sock"[..], b"/proc/self/fd/x/run", b"/proc/self/fd/7", b"/proc/self/fd/7/"] {
        assert_eq!(unplaced_socket(other, 7, |_| true), None, "{}", String::from_utf8_lossy(other));
    }
}
