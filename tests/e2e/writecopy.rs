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
