//! The handlers against an in-memory tracee and a recording materialiser (HOUSE-STYLE §4):
//! no seccomp, no second process; the tree is a temporary directory.

use std::cell::RefCell;
use std::io::{self, Read};
use std::os::fd::AsFd;

use super::*;
use crate::digest::Digest;
use crate::manifest::{EntryKind, Manifest};
use crate::run::{OP_LINK, OP_LINK_DIR, OP_WHITEOUT};
use crate::view::{Mode, ViewOptions, compile};

const BASE: u64 = 0x10_0000;
const PATH_AT: u64 = BASE;
const OUT_AT: u64 = BASE + 0x1000;

/// A tracee whose memory is one vector mapped at `BASE`.
struct Fake {
    mem: RefCell<Vec<u8>>,
    cwd: Vec<u8>,
    valid: bool,
}

impl Fake {
    fn with_path(p: &str) -> Fake {
        let mut mem = vec![0xAAu8; 0x3000];
        mem[..p.len()].copy_from_slice(p.as_bytes());
        mem[p.len()] = 0;
        Fake { mem: RefCell::new(mem), cwd: b"/".to_vec(), valid: true }
    }
    fn out(&self, n: usize) -> Vec<u8> {
        let at = usize::try_from(OUT_AT - BASE).unwrap();
        self.mem.borrow()[at..at + n].to_vec()
    }
}

impl TraceeMemory for Fake {
    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        let m = self.mem.borrow();
        let at = addr.checked_sub(BASE).and_then(|a| usize::try_from(a).ok()).filter(|&a| a < m.len());
        let Some(at) = at else { return Err(io::Error::from_raw_os_error(libc::EFAULT)) };
        let n = buf.len().min(m.len() - at);
        buf[..n].copy_from_slice(&m[at..at + n]);
        Ok(n)
    }
    fn write(&self, addr: u64, data: &[u8]) -> io::Result<()> {
        let mut m = self.mem.borrow_mut();
        let Some(at) = addr.checked_sub(BASE).and_then(|a| usize::try_from(a).ok()) else {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        };
        m.get_mut(at..at + data.len()).ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?.copy_from_slice(data);
        Ok(())
    }
    fn still_valid(&self) -> bool {
        self.valid
    }
    fn cwd(&self) -> io::Result<Vec<u8>> {
        Ok(self.cwd.clone())
    }
    fn fd_path(&self, _fd: i32) -> io::Result<Vec<u8>> {
        Err(io::Error::from_raw_os_error(libc::EBADF))
    }
    fn proc_link(&self, _proc: &[u8], link: &[u8]) -> io::Result<Vec<u8>> {
        if link == b"cwd" { Ok(self.cwd.clone()) } else { Err(io::Error::from_raw_os_error(libc::ENOENT)) }
    }
}

/// Records operations; OP_LINK of the capsule file writes its content into the tree.
struct Mat {
    tree: std::path::PathBuf,
    ops: Vec<(u8, String)>,
}

impl Materialise for Mat {
    fn op(&mut self, op: u8, rel: &[u8]) -> i32 {
        let rel = String::from_utf8(rel.to_vec()).unwrap();
        if op == OP_LINK && rel == "opt/capp/data.txt" {
            std::fs::write(self.tree.join(&rel), b"capsule data").unwrap();
        }
        self.ops.push((op, rel));
        0
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    tree: std::path::PathBuf,
    view: Vec<u8>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("root");
    std::fs::create_dir_all(tree.join("opt/capp")).unwrap();
    std::os::unix::fs::symlink("data.txt", tree.join("opt/capp/link")).unwrap();
    let m = Manifest::for_tests(
        vec![
            ("opt", EntryKind::Dir),
            ("opt/capp", EntryKind::Dir),
            ("opt/capp/data.txt", EntryKind::File { size: 12, digest: Digest::of(b"capsule data") }),
            ("opt/capp/link", EntryKind::Symlink { target: b"data.txt".to_vec() }),
        ],
        0o644,
    );
    let opts = ViewOptions {
        tree: tree.clone(),
        capsule_mode: Mode::WriteCopy,
        rules: vec![("/".into(), Mode::Merged), ("/tmp".into(), Mode::Passthrough)],
        whiteouts: vec![],
        files: vec![],
        redirects: vec![],
        linked: Vec::new(),
    };
    Setup { view: compile(&m, &opts), tree, _dir: dir }
}

fn call(s: &Setup, t: &Fake, nr: i64, args: [u64; 6]) -> (Reply, Vec<(u8, String)>) {
    with_context(s, |cx| handle(cx, t, nr, &args))
}

/// Run `f` with a context over `s`; what it returned, and the materialiser's requests.
fn with_context<R>(s: &Setup, f: impl FnOnce(&mut Context<'_, '_>) -> R) -> (R, Vec<(u8, String)>) {
    let tree_dir = std::fs::File::open(&s.tree).unwrap();
    let mut mat = Mat { tree: s.tree.clone(), ops: Vec::new() };
    let mut cx = Context {
        view: View::new(&s.view).unwrap(),
        tree: tree_dir.as_fd(),
        mat: &mut mat,
        hostname: Some("capsulehost"),
        domain: None,
        ipv4: None,
        iface: None,
        ifindex: 0,
        pid: std::process::id(),
    };
    let r = f(&mut cx);
    (r, mat.ops)
}

#[allow(clippy::cast_sign_loss)] // the register holds the int's bits
const AT_FDCWD: u64 = libc::AT_FDCWD as u64;

#[test]
fn open_of_a_capsule_file_materialises_it_and_injects_a_descriptor() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/data.txt");
    let (r, ops) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, libc::O_RDONLY as u64, 0, 0, 0]);
    let Reply::Fd { fd, cloexec: false } = r else { panic!("{r:?}") };
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).unwrap();
    assert_eq!(text, "capsule data");
    assert_eq!(ops, vec![(OP_LINK, "opt/capp/data.txt".to_owned())]);
}

#[test]
fn relative_paths_resolve_against_the_tracee_cwd() {
    let s = setup();
    let mut t = Fake::with_path("data.txt");
    t.cwd = b"/opt/capp".to_vec();
    let (r, _) = call(&s, &t, libc::SYS_open, [PATH_AT, (libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Fd { cloexec: true, .. }), "{r:?}");
}

#[test]
fn host_paths_and_tree_paths_continue() {
    let s = setup();
    for p in ["/etc/hostname", "/tmp/x"] {
        let t = Fake::with_path(p);
        let (r, ops) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, 0, 0, 0, 0]);
        assert!(matches!(r, Reply::Continue), "{p}: {r:?}");
        assert!(ops.is_empty());
    }
    // Any other tree path is the tree's, opened by the supervisor as by its virtual path
    // (an open for writing is not the program's to make: its domain may not write the tree).
    let t = Fake::with_path(&format!("{}/opt/capp/other", s.tree.display()));
    let (r, ops) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENOENT)), "{r:?}");
    assert!(ops.is_empty());
    // A tree path naming a capsule file (found from a library's own, tree-named path) is
    // materialised first, as by its virtual path.
    let t = Fake::with_path(&format!("{}/opt/capp/data.txt", s.tree.display()));
    let (r, ops) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Fd { .. }), "{r:?}");
    assert_eq!(ops, vec![(OP_LINK, "opt/capp/data.txt".to_owned())]);
}

#[test]
fn a_stale_notification_or_bad_pointer_is_left_to_the_kernel() {
    let s = setup();
    let mut t = Fake::with_path("/opt/capp/data.txt");
    t.valid = false;
    let (r, ops) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Continue) && ops.is_empty(), "{r:?}");
    let t = Fake::with_path("/opt/capp/data.txt");
    let (r, _) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, 0, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Continue), "{r:?}");
}

#[test]
fn stat_is_emulated_into_tracee_memory() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/data.txt");
    let (r, _) = call(&s, &t, libc::SYS_newfstatat, [AT_FDCWD, PATH_AT, OUT_AT, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(0)), "{r:?}");
    let bytes = t.out(size_of::<libc::stat>());
    // SAFETY: test: reinterpret the written bytes as the struct they were written from.
    let sb: libc::stat = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    assert_eq!(sb.st_size, 12);
    assert_eq!(sb.st_mode & libc::S_IFMT, libc::S_IFREG);
}

#[test]
fn statx_and_lstat_see_the_symlink_or_its_target() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/link");
    let (r, _) = call(&s, &t, libc::SYS_lstat, [PATH_AT, OUT_AT, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(0)), "{r:?}");
    // SAFETY: as above.
    let sb: libc::stat = unsafe { std::ptr::read_unaligned(t.out(size_of::<libc::stat>()).as_ptr().cast()) };
    assert_eq!(sb.st_mode & libc::S_IFMT, libc::S_IFLNK);
    let (r, _) = call(&s, &t, libc::SYS_statx, [AT_FDCWD, PATH_AT, 0, u64::from(libc::STATX_BASIC_STATS), OUT_AT, 0]);
    assert!(matches!(r, Reply::Value(0)), "{r:?}");
    // SAFETY: as above.
    let sx: libc::statx = unsafe { std::ptr::read_unaligned(t.out(size_of::<libc::statx>()).as_ptr().cast()) };
    assert_eq!(sx.stx_size, 12);
}

#[test]
fn readlink_and_access() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/link");
    let (r, _) = call(&s, &t, libc::SYS_readlink, [PATH_AT, OUT_AT, 100, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(8)), "{r:?}");
    assert_eq!(t.out(8), b"data.txt");
    let t = Fake::with_path("/opt/capp/missing");
    let (r, _) = call(&s, &t, libc::SYS_access, [PATH_AT, libc::F_OK as u64, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENOENT)), "{r:?}");
    let t = Fake::with_path("/opt/capp/data.txt/x");
    let (r, _) = call(&s, &t, libc::SYS_faccessat, [AT_FDCWD, PATH_AT, libc::F_OK as u64, 0, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENOTDIR)), "{r:?}");
}

#[test]
fn opening_a_capsule_directory_links_its_files_first() {
    let s = setup();
    let t = Fake::with_path("/opt/capp");
    let flags = (libc::O_RDONLY | libc::O_DIRECTORY) as u64;
    let (r, ops) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, flags, 0, 0, 0]);
    assert!(matches!(r, Reply::Fd { .. }), "{r:?}");
    assert_eq!(ops, vec![(OP_LINK_DIR, "opt/capp".to_owned())]);
}

#[test]
fn untrapped_calls_continue() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/data.txt");
    let (r, _) = call(&s, &t, libc::SYS_getpid, [0; 6]);
    assert!(matches!(r, Reply::Continue));
}

#[test]
fn mutations_land_in_the_tree_and_deletions_are_whiteouts() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/newdir");
    let (r, _) = call(&s, &t, libc::SYS_mkdir, [PATH_AT, 0o755, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(0)), "{r:?}");
    assert!(s.tree.join("opt/capp/newdir").is_dir());
    let t = Fake::with_path("/opt/capp/data.txt");
    let (r, ops) = call(&s, &t, libc::SYS_unlinkat, [AT_FDCWD, PATH_AT, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(0)), "{r:?}");
    assert_eq!(ops, vec![(OP_WHITEOUT, "opt/capp/data.txt".to_owned())]);
    // A host path under the default merged rule is the kernel's.
    let t = Fake::with_path("/var/tmp/not-ours");
    let (r, ops) = call(&s, &t, libc::SYS_mkdir, [PATH_AT, 0o755, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Continue) && ops.is_empty(), "{r:?}");
}

#[test]
fn uname_reports_the_capsule_hostname() {
    let s = setup();
    let t = Fake::with_path("");
    let (r, _) = call(&s, &t, libc::SYS_uname, [OUT_AT, 0, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(0)), "{r:?}");
    // SAFETY: test: the bytes were written from a utsname.
    let u: libc::utsname = unsafe { std::ptr::read_unaligned(t.out(size_of::<libc::utsname>()).as_ptr().cast()) };
    let node: Vec<u8> = u.nodename.iter().take_while(|&&c| c != 0).map(|&c| c.cast_unsigned()).collect();
    assert_eq!(node, b"capsulehost");
    assert!(u.sysname.iter().take_while(|&&c| c != 0).count() > 0, "the rest comes from the kernel");
}

#[test]
fn creat_and_openat2_without_resolve_flags_are_opens() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/new.txt");
    let (r, _) = call(&s, &t, libc::SYS_creat, [PATH_AT, 0o600, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Fd { cloexec: false, .. }), "{r:?}");
    assert!(s.tree.join("opt/capp/new.txt").is_file(), "creat did not create in the tree");
    // struct open_how at OUT_AT: flags, mode, resolve.
    let how = |flags: i32, resolve: u64| {
        let mut b = Vec::new();
        b.extend_from_slice(&u64::try_from(flags).unwrap().to_ne_bytes());
        b.extend_from_slice(&0u64.to_ne_bytes());
        b.extend_from_slice(&resolve.to_ne_bytes());
        b
    };
    let t = Fake::with_path("/opt/capp/data.txt");
    t.write(OUT_AT, &how(libc::O_RDONLY | libc::O_CLOEXEC, 0)).unwrap();
    let (r, _) = call(&s, &t, libc::SYS_openat2, [AT_FDCWD, PATH_AT, OUT_AT, 24, 0, 0]);
    assert!(matches!(r, Reply::Fd { cloexec: true, .. }), "{r:?}");
    let (r, _) = call(&s, &t, libc::SYS_openat2, [AT_FDCWD, PATH_AT, OUT_AT, 16, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::EINVAL)), "{r:?}");
    t.write(OUT_AT, &how(libc::O_RDONLY, libc::RESOLVE_BENEATH)).unwrap();
    let (r, _) = call(&s, &t, libc::SYS_openat2, [AT_FDCWD, PATH_AT, OUT_AT, 24, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENOSYS)), "{r:?}");
    let t = Fake::with_path("/tmp/x");
    t.write(OUT_AT, &how(libc::O_RDONLY, libc::RESOLVE_BENEATH)).unwrap();
    let (r, _) = call(&s, &t, libc::SYS_openat2, [AT_FDCWD, PATH_AT, OUT_AT, 24, 0, 0]);
    assert!(matches!(r, Reply::Continue), "{r:?}");
}

#[test]
fn an_o_path_open_is_injected_as_a_readable_descriptor() {
    let s = setup();
    let t = Fake::with_path("/opt/capp");
    let flags = u64::try_from(libc::O_PATH | libc::O_DIRECTORY).unwrap();
    let (r, _) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, flags, 0, 0, 0]);
    let Reply::Fd { fd, .. } = r else { panic!("{r:?}") };
    // SAFETY: F_GETFL on a descriptor we own.
    let fl = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::F_GETFL) };
    assert_eq!(fl & libc::O_PATH, 0, "ADDFD refuses O_PATH descriptors");
    let t = Fake::with_path("/opt/capp/missing");
    let (r, _) = call(&s, &t, libc::SYS_openat, [AT_FDCWD, PATH_AT, flags, 0, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENOENT)), "{r:?}");
}

#[test]
fn getcwd_and_proc_links_name_the_tree_by_its_virtual_path() {
    let s = setup();
    let mut t = Fake::with_path("/proc/self/cwd");
    t.cwd = s.tree.join("opt/capp").into_os_string().into_encoded_bytes();
    let (r, _) = call(&s, &t, libc::SYS_getcwd, [OUT_AT, 100, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(10)), "{r:?}");
    assert_eq!(t.out(10), b"/opt/capp\0");
    let (r, _) = call(&s, &t, libc::SYS_getcwd, [OUT_AT, 5, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ERANGE)), "{r:?}");
    let (r, _) = call(&s, &t, libc::SYS_readlink, [PATH_AT, OUT_AT, 100, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(9)), "{r:?}");
    assert_eq!(t.out(9), b"/opt/capp");
    t.cwd = b"/var".to_vec();
    for (nr, args) in
        [(libc::SYS_getcwd, [OUT_AT, 100, 0, 0, 0, 0]), (libc::SYS_readlink, [PATH_AT, OUT_AT, 100, 0, 0, 0])]
    {
        let (r, _) = call(&s, &t, nr, args);
        assert!(matches!(r, Reply::Continue), "{nr}: {r:?}");
    }
}

#[test]
fn chdir_reports_errors_and_the_gap() {
    let s = setup();
    for (p, want) in [("/opt/capp/missing", libc::ENOENT), ("/opt/capp/data.txt", libc::ENOTDIR)] {
        let t = Fake::with_path(p);
        let (r, _) = call(&s, &t, libc::SYS_chdir, [PATH_AT, 0, 0, 0, 0, 0]);
        assert!(matches!(r, Reply::Error(e) if e == want), "{p}: {r:?}");
    }
    // A capsule-only directory: the kernel would not find it by that path.
    let t = Fake::with_path("/opt/capp");
    let (r, _) = call(&s, &t, libc::SYS_chdir, [PATH_AT, 0, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::EOPNOTSUPP)), "{r:?}");
    let t = Fake::with_path("/tmp");
    let (r, _) = call(&s, &t, libc::SYS_chdir, [PATH_AT, 0, 0, 0, 0, 0]);
    assert!(matches!(r, Reply::Continue), "{r:?}");
}

#[test]
fn xattr_reads_of_a_capsule_file_are_answered() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/data.txt");
    let (r, ops) = call(&s, &t, libc::SYS_listxattr, [PATH_AT, OUT_AT, 256, 0, 0, 0]);
    assert!(matches!(r, Reply::Value(_) | Reply::Error(libc::ENOTSUP)), "{r:?}");
    assert_eq!(ops, vec![(OP_LINK, "opt/capp/data.txt".to_owned())], "materialised first");
    let name = OUT_AT + 0x800;
    t.write(name, b"user.none\0").unwrap();
    let (r, _) = call(&s, &t, libc::SYS_lgetxattr, [PATH_AT, name, OUT_AT, 64, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENODATA | libc::ENOTSUP)), "{r:?}");
    let t = Fake::with_path("/opt/capp/missing");
    t.write(name, b"user.none\0").unwrap();
    let (r, _) = call(&s, &t, libc::SYS_getxattr, [PATH_AT, name, OUT_AT, 64, 0, 0]);
    assert!(matches!(r, Reply::Error(libc::ENOENT)), "{r:?}");
}

/// Every call the table traps has an answer in its family's handler (the filter side is
/// `filter::tests::the_table_is_the_filter`).
#[test]
fn every_trapped_call_is_dispatched() {
    let s = setup();
    let t = Fake::with_path("/opt/capp/data.txt");
    with_context(&s, |cx| {
        for c in crate::supervisor::table::CALLS {
            // Null pointers, and a first argument that is no descriptor and no address: each
            // handler answers (EFAULT, EBADF, or the kernel's), none panics. (Not descriptor 0:
            // the "tracee" is this process, and a change by descriptor is made on a duplicate
            // of the tracee's own, here this test's stdin: `fchmod(0, 0)` made /dev/null 0000.)
            assert!(dispatch(cx, &t, c.nr, &[u64::MAX, 0, 0, 0, 0, 0]).is_some(), "{c:?} has no handler");
        }
        assert!(dispatch(cx, &t, libc::SYS_read, &[0; 6]).is_none());
    });
}
