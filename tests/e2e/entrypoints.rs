//! The kernel's other ways in (issue 15, in part): path calls made by number through glibc's
//! `syscall()` (libuv's statx: every Node.js program), the fortified `*_chk` spellings and the
//! glibc functions that call its internal path functions (realpath, remove, statvfs, …), and
//! the extended-attribute writes. All under tier 1 alone (`--seccomp auto`, the default, with
//! a dynamic program and a capsule without glibc's own files).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::require;
use crate::shim::{Diff, fixtures};
use crate::support::{Env, has, run_capsule};

/// A fixture that calls statx, openat, openat2, newfstatat, … by number on capsule-only
/// files prints what it prints natively.
#[test]
fn path_calls_by_number_are_routed_under_tier_one() {
    require!(has("gcc"), "no gcc to build fixtures/c");
    let out = Diff::new().compare("syscall");
    for line in [
        "statx numbers: ok size 11\n",
        "statx missing: -1 ENOENT\n",
        "openat hello: ok hello capsule|\n",
        "openat2 b: ok bravo|\n",
        "newfstatat tool: ok mode 0755\n",
        "readlinkat dirlink: ok data/nested\n",
        "stat seed: ok mode 0640\n",
        "getcwd: ok $ROOT/data/nested length ok\n",
        "open relative a: ok alpha|\n",
        "close -1: -1 EBADF\n",
    ] {
        assert!(out.contains(line), "syscall: no {line:?} in\n{out}");
    }
}

/// The fortified spellings (built with -D_FORTIFY_SOURCE=2 and sizes only known at run
/// time) and glibc's functions over its internal path calls print what they print natively.
#[test]
fn fortified_and_internal_path_calls_are_routed() {
    require!(has("gcc"), "no gcc to build fixtures/c");
    let bin = fixtures().join("fortify");
    let nm = Command::new("nm").arg("-D").arg(&bin).output().expect("nm -D");
    let syms = String::from_utf8_lossy(&nm.stdout);
    for sym in ["__realpath_chk", "__readlink_chk", "__readlinkat_chk", "__getcwd_chk", "__getwd_chk"] {
        assert!(
            syms.lines().any(|l| l.split_whitespace().any(|w| w.split('@').next() == Some(sym))),
            "fortify does not import {sym}:\n{syms}"
        );
    }
    let out = Diff::new().compare("fortify");
    for line in [
        "realpath dirlink/a.txt: $ROOT/data/nested/a.txt\n",
        "canonicalize_file_name leaf: $ROOT/data/nested/deep/leaf.txt\n",
        "readlink link-to-hello: 9 hello.txt\n",
        "getcwd: $ROOT/data/nested\n",
        "getwd: $ROOT/data/nested\n",
        "statvfs leaf: ok\n",
        "pathconf data NAME_MAX: positive\n",
        "remove capsule file: ok\naccess removed: ENOENT\n",
        "lchmod link: EOPNOTSUPP\n",
        "mkstemp: ok named\nrename over a capsule file: ok\nread it: ok temp|\n",
        "mkostemps: ok suffix kept\nit exists: yes\n",
        "mkdtemp: ok\nit is a directory: yes\n",
        "mkstemp bad template: EINVAL\nmkstemp in a missing directory: ENOENT\n",
    ] {
        assert!(out.contains(line), "fortify: no {line:?} in\n{out}");
    }
}

/// `node /opt/app/main.js` from a capsule, default options: the module beside it is found
/// (libuv stats it with statx by number) and a capsule data file is read with
/// `fs.promises.readFile`.
#[test]
fn node_runs_a_capsule_program_that_requires_its_modules() {
    require!(has("node"), "no node (Debian's nodejs) on PATH");
    let env = Env::new();
    let main = br#"const lib = require('./lib.js');
const fs = require('fs');
(async () => {
  const data = await fs.promises.readFile('/opt/app/data/msg.txt', 'utf8');
  console.log(lib.greet(data.trim()));
  console.log('exists', fs.existsSync('/opt/app/lib.js'), (await fs.promises.stat('/opt/app/data')).isDirectory());
})();
"#;
    env.small_capsule(
        "nodeapp",
        &[
            ("opt/app/main.js", main),
            ("opt/app/lib.js", b"exports.greet = (s) => 'lib: ' + s;\n"),
            ("opt/app/data/msg.txt", b"hello from the capsule\n"),
        ],
    );
    assert!(!Path::new("/opt/app/main.js").exists(), "/opt/app/main.js exists on this host");
    let (code, out, err) =
        run_capsule(&env, &["run", "nodeapp", "--entry", "/bin/sh", "--", "-c", "node /opt/app/main.js"]);
    assert_eq!((code, out.as_str()), (0, "lib: hello from the capsule\nexists true true\n"), "stderr:\n{err}");
}

/// Whether the filesystem holding `dir` takes `user.` extended attributes (tmpfs does since
/// Linux 6.6, ext4 and xfs do).
fn user_xattrs_work(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    fs::write(&probe, "").unwrap();
    let py = format!("import os; os.setxattr({:?}, 'user.probe', b'1')", probe.to_str().unwrap());
    let ok = Command::new("python3").args(["-c", &py]).status().is_ok_and(|s| s.success());
    let _ = fs::remove_file(probe);
    ok
}

/// `user.*` attributes of `path` as "name=value" lines, sorted (python3 natively).
fn xattrs(path: &Path) -> String {
    let py = "import os, sys\nfor n in sorted(os.listxattr(sys.argv[1])):\n    \
              print(n + '=' + os.getxattr(sys.argv[1], n).decode())";
    let o = Command::new("python3").args(["-c", py, path.to_str().unwrap()]).output().expect("python3");
    assert!(o.status.success(), "listxattr {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().filter(|l| l.starts_with("user.")).map(|l| format!("{l}\n")).collect()
}

/// setxattr and removexattr on a capsule file land on the sandbox tree's private copy (never
/// the store's cache, shared by every run, nor the host); on a write-copy host file, on its
/// copy in the tree; on a merged host file, on the host's.
#[test]
fn xattr_writes_land_in_the_sandbox_tree() {
    require!(has("python3"), "no python3");
    let env = Env::new();
    fs::create_dir_all(env.dir.path()).unwrap();
    if !user_xattrs_work(env.dir.path()) {
        crate::support::require_or_skip("the test directory's filesystem refuses user. xattrs");
        return;
    }
    env.small_capsule("xa", &[("opt/xa/file.txt", b"capsule file\n")]);
    let host = env.path("hostside");
    fs::create_dir_all(&host).unwrap();
    fs::create_dir_all(host.join("wc")).unwrap();
    fs::create_dir_all(host.join("merged")).unwrap();
    fs::write(host.join("wc/f.txt"), "host, write-copy\n").unwrap();
    fs::write(host.join("merged/f.txt"), "host, merged\n").unwrap();
    let h = host.to_str().unwrap();
    let py = format!(
        "import os\n\
         os.setxattr('/opt/xa/file.txt', 'user.a', b'1')\n\
         os.setxattr('/opt/xa/file.txt', 'user.b', b'2')\n\
         os.removexattr('/opt/xa/file.txt', 'user.b')\n\
         print(sorted(os.listxattr('/opt/xa/file.txt')), os.getxattr('/opt/xa/file.txt', 'user.a'))\n\
         os.setxattr('{h}/wc/f.txt', 'user.w', b'tree')\n\
         print(os.getxattr('{h}/wc/f.txt', 'user.w'))\n\
         os.setxattr('{h}/merged/f.txt', 'user.m', b'host')\n"
    );
    let (wc, merged) = (format!("{h}/wc=writecopy"), format!("{h}/merged=merged"));
    let args =
        ["run", "xa", "--isolation", &wc, "--isolation", &merged, "--entry", "/usr/bin/python3", "--", "-c", &py];
    let (code, out, err) = run_capsule(&env, &args);
    assert_eq!((code, out.as_str()), (0, "['user.a'] b'1'\nb'tree'\n"), "stderr:\n{err}");

    let tree = env.store().join("sandboxes/xa/root");
    assert_eq!(xattrs(&tree.join("opt/xa/file.txt")), "user.a=1\n", "the tree's copy");
    assert_eq!(fs::read_to_string(tree.join("opt/xa/file.txt")).unwrap(), "capsule file\n");
    for f in crate::support::walk(&env.store().join("cache")) {
        assert_eq!(xattrs(&f), "", "the cache file {} got the attribute", f.display());
    }
    assert_eq!(xattrs(&env.path("host-xa/opt/xa/file.txt")), "", "the staging tree");
    let tree_wc = tree.join(host.strip_prefix("/").unwrap()).join("wc/f.txt");
    assert_eq!(xattrs(&tree_wc), "user.w=tree\n", "the write-copy file's copy in the tree");
    assert_eq!(xattrs(&host.join("wc/f.txt")), "", "the write-copy host file");
    assert_eq!(xattrs(&host.join("merged/f.txt")), "user.m=host\n", "the merged host file");
}
