//! Write-copy across the boundary (issue 15): a file made on the host side (`/tmp` is passed
//! through) and renamed or linked into a write-copy directory lands in the sandbox as a copy,
//! where a rename between two filesystems would fail with EXDEV and a program that does not
//! fall back (Python's `os.rename`, `sed -i` with its temporary file elsewhere) would stop
//! (the shim copies; the supervisor answers EXDEV, which static busybox's `mv` handles);
//! renaming a host file away hides its old name at once; rmdir of a non-empty
//! host directory fails. Python (the shim) and static busybox (the supervisor).

use std::path::Path;

use crate::require;
use crate::supervisor::{BUSYBOX, static_busybox};
use crate::support::{Env, run_capsule};

const PY: &str = r#"
import os, sys
tag = sys.argv[1]
src, dst = f"/tmp/capsule-wc-{tag}", f"/etc/capsule-wc-{tag}"
open(src, "w").write("moved\n"); os.chmod(src, 0o640)
os.rename(src, dst)
print(open(dst).read().strip(), oct(os.stat(dst).st_mode & 0o777), os.path.exists(src))
open(src, "w").write("linked\n"); os.link(src, dst + ".ln"); os.unlink(src)
print(open(dst + ".ln").read().strip())
try:
    os.rename(dst, src)
except OSError as e:
    print("back", e.errno)
try:
    os.rmdir("/etc/apt")
except OSError as e:
    print("rmdir", e.errno)
"#;

#[test]
fn rename_and_link_from_the_host_into_write_copy_directories() {
    let env = Env::new();
    env.small_capsule("wc", &[("opt/wc/readme", b"r\n")]);
    let tag = format!("{}", std::process::id());
    let (code, out, err) = run_capsule(
        &env,
        &["run", "wc", "--isolation", "writecopy", "--entry", "/usr/bin/python3", "--", "-c", PY, &tag],
    );
    assert_eq!(code, 0, "{err}");
    // EXDEV (18) out of the tree, ENOTEMPTY (39) for a non-empty host directory.
    assert_eq!(out, "moved 0o640 False\nlinked\nback 18\nrmdir 39\n");
    assert!(!Path::new(&format!("/etc/capsule-wc-{tag}")).exists(), "the rename reached the host's /etc");
    assert!(!Path::new(&format!("/tmp/capsule-wc-{tag}")).exists());
    // Static busybox: the supervisor answers the rename EXDEV and `mv` copies as the program;
    // `rmdir` of a non-empty host directory fails there too.
    require!(static_busybox(), "{BUSYBOX} from busybox-static (apt-get install busybox-static)");
    let script = format!(
        "echo static > /tmp/capsule-wcs-{tag} && mv /tmp/capsule-wcs-{tag} /etc/capsule-wcs-{tag} && \
         cat /etc/capsule-wcs-{tag} && ls /tmp/capsule-wcs-{tag} 2>/dev/null; rmdir /etc/apt; echo rmdir=$?"
    );
    let (code, out, err) =
        run_capsule(&env, &["run", "wc", "--isolation", "writecopy", "--entry", BUSYBOX, "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "static\nrmdir=1\n", "{err}");
    assert!(!Path::new(&format!("/etc/capsule-wcs-{tag}")).exists(), "the rename reached the host's /etc");
}

/// A host file deleted under write-copy is gone at once, for every process of the run and in
/// every listing (the sandbox's table of deletions), and stays gone in the next run; a file
/// made again under that name is the new one. The shim (sh, ls, find, python3) and the
/// supervisor (static busybox).
#[test]
fn a_deletion_is_seen_at_once_by_lookups_and_listings() {
    let env = Env::new();
    env.small_capsule("del", &[("opt/del/readme", b"r\n")]);
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    require!(!host.is_empty(), "/etc/hostname on the host");
    let check = "test -e /etc/hostname && echo lookup; ls /etc | grep -x hostname; \
                 find /etc -maxdepth 1 -name hostname; echo done";
    let py = "import os; print('hostname' in os.listdir('/etc'), os.path.exists('/etc/hostname'))";
    let script = format!("rm /etc/hostname && {check} && python3 -c \"{py}\"");
    let (code, out, err) = run_capsule(
        &env,
        &["run", "del", "--sandbox", "d1", "--isolation", "writecopy", "--entry", "/bin/sh", "--", "-c", &script],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "done\nFalse False\n", "{err}");
    // The next run (from the view now), and a name made again.
    let again = format!("{check}; echo new > /etc/hostname && cat /etc/hostname && ls /etc | grep -cx hostname");
    let (code, out, err) = run_capsule(
        &env,
        &["run", "del", "--sandbox", "d1", "--isolation", "writecopy", "--entry", "/bin/sh", "--", "-c", &again],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "done\nnew\n1\n", "{err}");
    assert_eq!(std::fs::read_to_string("/etc/hostname").unwrap_or_default(), host, "the host's file changed");
    require!(static_busybox(), "{BUSYBOX} from busybox-static (apt-get install busybox-static)");
    let script = format!("rm /etc/hostname && {check}");
    let (code, out, err) = run_capsule(
        &env,
        &["run", "del", "--sandbox", "d2", "--isolation", "writecopy", "--entry", BUSYBOX, "--", "sh", "-c", &script],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "done\n", "{err}");
    assert_eq!(std::fs::read_to_string("/etc/hostname").unwrap_or_default(), host, "the host's file changed");
}

/// A host symlink in a write-copy directory is its own entry (dpkg renames a new symlink over
/// `/usr/lib/x86_64-linux-gnu/perl/5.36`, a host link to a directory, when a capsule carries
/// a newer perl): a rename over it replaces the link in the sandbox, where it was EISDIR (the
/// link was copied up as the directory it points to); removing it removes the link, not the
/// target. The host keeps both. Both tiers.
#[test]
fn a_host_symlink_is_replaced_or_removed_as_a_link() {
    let env = Env::new();
    env.small_capsule("wcl", &[("opt/wcl/readme", b"r\n")]);
    let host = std::path::PathBuf::from(format!("/var/lib/capsule-wcl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(host.join("real.0")).unwrap();
    std::fs::write(host.join("real.0/mod.pm"), b"1;\n").unwrap();
    std::fs::write(host.join("file.0"), b"content\n").unwrap();
    std::os::unix::fs::symlink("real.0", host.join("real")).unwrap();
    std::os::unix::fs::symlink("file.0", host.join("file")).unwrap();
    let before = crate::escape::snapshot(&host);
    let d = host.display();
    for seccomp in ["never", "always"] {
        let script = format!(
            "cd {d} && ln -s real.0 real.new && mv -T real.new real && readlink real && cat real/mod.pm && \
             rm file && ls; echo rc=$?"
        );
        let sandbox = format!("wcl-{seccomp}");
        let (code, out, err) = run_capsule(
            &env,
            &["run", "--seccomp", seccomp, "--sandbox", &sandbox, "wcl", "--entry", "/bin/sh", "--", "-c", &script],
        );
        assert_eq!((code, out.as_str()), (0, "real.0\n1;\nfile.0\nreal\nreal.0\nrc=0\n"), "--seccomp {seccomp}: {err}");
    }
    let after = crate::escape::snapshot(&host);
    let _ = std::fs::remove_dir_all(&host);
    assert_eq!(before, after, "the host directory changed");
}

/// A directory named relative to the working directory is the same directory as its absolute
/// spelling: after a host directory in write-copy is deleted and made again in the sandbox,
/// `mkdir(".")` there answers EEXIST (it was EIO: tar's extraction of `./` in dpkg-deb stopped
/// on it), and listing `.` leaves out what the sandbox deleted. Both tiers.
#[test]
fn the_working_directory_is_its_absolute_path() {
    let env = Env::new();
    env.small_capsule("wcd", &[("opt/wcd/readme", b"r\n")]);
    let host = std::path::PathBuf::from(format!("/var/lib/capsule-wcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(host.join("re")).unwrap();
    std::fs::write(host.join("gone"), b"g\n").unwrap();
    std::fs::write(host.join("kept"), b"k\n").unwrap();
    let before = crate::escape::snapshot(&host);
    let d = host.display();
    let py = "import os, sys\n\
              os.chmod('.', 0o755)\n\
              try:\n    os.mkdir('.')\nexcept OSError as e:\n    print('mkdir', e.errno)\n\
              os.unlink(sys.argv[1] + '/gone')\n\
              os.chdir(sys.argv[1])\n\
              print(sorted(os.listdir('.')), sorted(os.listdir(sys.argv[1])))\n";
    for seccomp in ["never", "always"] {
        let script = format!("rm -rf {d}/re && mkdir {d}/re && cd {d}/re && python3 -c \"$0\" {d}");
        let sandbox = format!("wcd-{seccomp}");
        let (code, out, err) = run_capsule(
            &env,
            &["run", "--seccomp", seccomp, "--sandbox", &sandbox, "wcd", "--entry", "/bin/sh", "--", "-c", &script, py],
        );
        assert_eq!(
            (code, out.as_str()),
            (0, "mkdir 17\n['kept', 're'] ['kept', 're']\n"),
            "--seccomp {seccomp}: {err}"
        );
    }
    let after = crate::escape::snapshot(&host);
    let _ = std::fs::remove_dir_all(&host);
    assert_eq!(before, after, "the host directory changed");
}

/// A Unix socket bound at a path under write-copy (`/run/mysqld/mysqld.sock`, PostgreSQL's
/// socket directory) is made in the sandbox, where the capsule's clients connect to it; the
/// host gets nothing. (It failed with ENOENT or EACCES: the kernel looked on the host.)
#[test]
fn a_unix_socket_bound_under_write_copy_lives_in_the_sandbox() {
    let env = Env::new();
    env.small_capsule("wcs", &[("opt/wcs/readme", b"r\n")]);
    let dir = format!("/run/capsule-wcs-{}", std::process::id());
    let py = "import socket, os, sys, threading\n\
              d = sys.argv[1]; os.makedirs(d); p = d + '/s.sock'\n\
              srv = socket.socket(socket.AF_UNIX); srv.bind(p); srv.listen(1)\n\
              def serve():\n    c, _ = srv.accept(); c.sendall(b'hello over unix'); c.close()\n\
              t = threading.Thread(target=serve); t.start()\n\
              cl = socket.socket(socket.AF_UNIX); cl.connect(p); print(cl.recv(100).decode()); t.join()\n\
              print(os.path.exists(p))\n\
              print(srv.getsockname() == p, cl.getpeername() == p, srv.getsockname())\n";
    let (code, out, err) = run_capsule(&env, &["run", "wcs", "--entry", "/usr/bin/python3", "--", "-c", py, &dir]);
    // getsockname and getpeername give the path the program bound, not the one capsule
    // handed the kernel.
    let expected = format!("hello over unix\nTrue\nTrue True {dir}/s.sock\n");
    assert_eq!((code, out.as_str()), (0, expected.as_str()), "{err}");
    assert!(!Path::new(&dir).exists(), "the socket's directory reached the host's /run");
}

/// The same for a static program (tier 2's supervisor places its `bind` and, for a program
/// without the shim, its `connect`): a server binding under write-copy `/run` makes its socket
/// in the sandbox, and another process of the run connecting to that path reaches it. (Before,
/// the supervisor left both to the kernel: the bind failed with EACCES, Landlock refusing a
/// socket in write-copy `/run`.)
#[test]
fn a_static_server_and_client_meet_at_a_unix_socket_under_write_copy() {
    require!(crate::support::has("gcc"), "gcc");
    let dir = crate::shim::fixture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("unixsock-static");
    crate::shim::gcc(&bin, &["-O1", "-static", "unixsock.c"]).unwrap();
    let env = Env::new();
    env.ok(&["-q", "capture", "elf", "usock", bin.to_str().unwrap()]);
    let run = format!("/run/capsule-usock-{}", std::process::id());
    for _ in 0..2 {
        let (code, out, err) = run_capsule(&env, &["run", "usock", "--", &run]);
        // Named as the program bound it, to both ends (not as the kernel holds it, through the
        // supervisor's tree descriptor).
        let want = format!("peer {run}/s.sock 1\nhello over unix\nname {run}/s.sock\nexists socket\n");
        assert_eq!((code, out.as_str()), (0, want.as_str()), "{err}");
        assert!(!Path::new(&run).exists(), "the socket's directory reached the host's /run");
    }
}
