//! Routes from a capsule path to the host (issue 15, done-when 5): `fixtures/c/escape.c`
//! makes a symlink to a host directory and writes through it, writes through
//! `/proc/self/root/…`, `/proc/PID/root/…` and `/proc/self/cwd/…`, and through a symlink it
//! makes in the passed-through `/tmp`, makes `/var/run/NAME`
//! (the host's `/var/run` is a symlink to `/run`, write-copy by default), reads a capsule
//! symlink with an absolute target, and replaces a capsule directory by a symlink to the host
//! directory before writing the capsule's file name below it. Run as root under `writecopy` and `full`, built dynamic
//! (the shim) and `-static` (the supervisor): the host directory under test is unchanged —
//! content, modes, owners, mtimes and xattrs — no `/run/NAME` appears, and the program reads
//! back what it wrote.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require;
use crate::shim::{fixture_dir, gcc};
use crate::support::{Env, is_root};

/// Build the fixture dynamic and static (once per test process is not needed: one test).
fn build() -> (PathBuf, PathBuf) {
    let dir = fixture_dir();
    fs::create_dir_all(&dir).unwrap();
    let (dynamic, fixed) = (dir.join("escape"), dir.join("escape-static"));
    gcc(&dynamic, &["-O0", "escape.c"]).unwrap();
    gcc(&fixed, &["-O0", "-static", "escape.c"]).unwrap();
    (dynamic, fixed)
}

/// Every entry below `dir` with its type, mode, owner, size, mtime, content digest, symlink
/// target and xattrs, one line each (python3: std has no xattr calls).
pub(crate) fn snapshot(dir: &Path) -> String {
    const SCRIPT: &str = r#"
import hashlib, os, sys
root = sys.argv[1]
for base, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(base, name)
        st = os.lstat(p)
        line = [os.path.relpath(p, root), oct(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns]
        if os.path.islink(p):
            line.append(os.readlink(p))
        elif os.path.isfile(p):
            line.append(hashlib.sha256(open(p, 'rb').read()).hexdigest())
        line.append(sorted((k, os.getxattr(p, k, follow_symlinks=False)) for k in os.listxattr(p, follow_symlinks=False)))
        print(line)
st = os.lstat(root)
print(oct(st.st_mode), st.st_mtime_ns)
"#;
    let o = Command::new("python3").args(["-c", SCRIPT]).arg(dir).output().expect("python3");
    assert!(o.status.success(), "snapshot: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// A fresh host directory for one run: `keep` (with an xattr where the filesystem has them)
/// and `victim`.
fn host_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(format!("/srv/capsule-escape-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("keep"), "original\n").unwrap();
    fs::write(d.join("victim"), "victim\n").unwrap();
    let _ = Command::new("python3")
        .args(["-c", "import os, sys; os.setxattr(sys.argv[1], 'user.host', b'1')"])
        .arg(d.join("keep"))
        .status();
    d
}

/// The capsule: /opt/esc/data/file and /opt/esc/abs -> /opt/esc/data/file.
fn capsule(env: &Env) {
    let host = env.path("host-esc");
    fs::create_dir_all(host.join("opt/esc/data")).unwrap();
    let base = host.to_str().unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/opt"]);
    fs::write(host.join("opt/esc/data/file"), "capsule-data\n").unwrap();
    std::os::unix::fs::symlink("/opt/esc/data/file", host.join("opt/esc/abs")).unwrap();
    env.ok(&["-q", "capture", "snapshot", "end", "esc"]);
}

#[test]
fn no_route_from_a_capsule_path_reaches_the_host() {
    require!(is_root(), "root (the fixture writes as root, where nothing but capsule stops it)");
    let (dynamic, fixed) = build();
    let env = Env::new();
    capsule(&env);
    for mode in ["writecopy", "full"] {
        for (kind, bin) in [("dynamic", &dynamic), ("static", &fixed)] {
            let tag = format!("{mode}-{kind}");
            let dir = host_dir(&tag);
            let run_name = format!("capsule-escape-{}-{tag}", std::process::id());
            let before = snapshot(&dir);
            let o = env
                .cmd(&["run", "esc", "--sandbox", &tag, "--isolation", mode, "--entry", bin.to_str().unwrap(), "--"])
                .arg(&dir)
                .arg(&run_name)
                // Started in the host directory: relative writes are placed from there.
                .current_dir(&dir)
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let ctx = format!("{tag}:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
            let after = snapshot(&dir);
            let run_dir = Path::new("/run").join(&run_name);
            let reached_run = run_dir.exists();
            let _ = fs::remove_dir_all(&dir);
            let _ = fs::remove_dir(&run_dir);
            assert_eq!(o.status.code(), Some(0), "{ctx}");
            assert_eq!(before, after, "the host directory changed ({ctx})");
            assert!(!reached_run, "/var/run/NAME reached the host's /run ({ctx})");
            // Under write-copy the host directory is visible and every write lands in the
            // sandbox's copy, read back from there; under full it does not exist in the view.
            let seen: &[&str] = if mode == "writecopy" {
                &[
                    "write-through-link 0 ok",
                    "read-back-link 0 ok via link",
                    "read-keep-link 0 ok changed",
                    "read-proc-root 0 ok via root",
                    "write-proc-cwd 0 ok",
                    "read-relative 0 ok relative",
                    "write-through-tmp-link 0 ok",
                    "write-through-replaced-dir 0 ok",
                ]
            } else {
                // Under full the host directory is not in the view: the program cannot enter
                // it, and what it makes relative to it (its cwd from the start) fails too.
                &[
                    "write-through-link -1 ENOENT",
                    "write-proc-root -1 ENOENT",
                    "chdir -1 ENOENT",
                    "write-relative -1 ENOENT",
                ]
            };
            let always = [
                "symlink 0 ok",
                "mkdir-var-run 0 ok",
                "stat-run 0 ok",
                "read-absolute-capsule-link 0 ok capsule-data",
                "rmdir-capsule-dir 0 ok",
                "symlink-over-capsule-dir 0 ok",
            ];
            for want in seen.iter().chain(&always) {
                assert!(out.lines().any(|l| l == *want), "missing {want:?} ({ctx})");
            }
        }
    }
}
