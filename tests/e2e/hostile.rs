//! A hostile program (issue 16, done-when 1): `fixtures/c/hostile.c` tries every route it
//! knows around the view on a host directory under test — raw system calls (open, openat,
//! creat, truncate, mkdirat, mknodat, symlinkat, linkat, renameat2, unlinkat, fchmodat,
//! fchmodat2, fchownat, utimensat, utimes, utime, setxattr, removexattr, setxattrat), libc's
//! creat/utimes/setxattr/chmod, openat2, changes by descriptor of a file opened for reading,
//! io_uring (`IORING_OP_OPENAT`/`UNLINKAT`/`RENAMEAT`), i386 entry (`int 0x80`), file handles,
//! `/proc/self/root` and `/proc/self/cwd`, a symlink it makes in `/tmp`, the supervisor's
//! cookie read from its environment, opens that truncate without asking for writing
//! (`O_RDONLY|O_TRUNC`, access mode 3, by open, openat and openat2, with and without the
//! cookie), and races (a second thread rewriting the path of a chmod, chown, truncate,
//! utimensat or setxattr, or swapping the descriptor of an fchmod, fchown or fsetxattr,
//! between a file of its own and the host's) — and then drops to uid 65534 and opens
//! `/etc/shadow`.
//! It runs from a capsule as root under `--isolation full` and `writecopy`: dynamic with
//! tier 1 alone and with both tiers, and static. After every run the host directory is
//! byte-for-byte as before (content, modes, owners, mtimes, xattrs: with tier 1 alone, the
//! kernel keeps names and content, and the guard's supervisor the metadata) and nothing the
//! program read hashes as `/etc/shadow` does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::escape::snapshot;
use crate::require;
use crate::shim::{fixture_dir, gcc};
use crate::support::{Env, has, is_root};

/// FNV-1a, as the fixture hashes what it read.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3))
}

/// The host directory under test: `keep` (mode 0644, an old mtime, an xattr) and `victim`.
fn host_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(format!("/srv/capsule-hostile-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("keep"), "original\n").unwrap();
    fs::write(d.join("victim"), "victim\n").unwrap();
    let py =
        "import os, sys; os.setxattr(sys.argv[1], 'user.host', b'1'); os.utime(sys.argv[1], (1000000000, 1000000000))";
    let o = Command::new("python3").args(["-c", py]).arg(d.join("keep")).output().unwrap();
    assert!(o.status.success(), "xattr on {}: {}", d.display(), String::from_utf8_lossy(&o.stderr));
    d
}

/// Capsule `hostile`: the fixture, dynamic and static, at /opt/hostile/.
fn capsule(env: &Env, dynamic: &Path, fixed: &Path) {
    let host = env.path("host-hostile");
    fs::create_dir_all(host.join("opt")).unwrap();
    let base = host.to_str().unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/opt"]);
    fs::create_dir_all(host.join("opt/hostile")).unwrap();
    fs::copy(dynamic, host.join("opt/hostile/hostile")).unwrap();
    fs::copy(fixed, host.join("opt/hostile/hostile-static")).unwrap();
    env.ok(&["-q", "capture", "snapshot", "end", "hostile"]);
}

#[test]
fn a_hostile_program_changes_nothing_on_the_host() {
    require!(is_root(), "root (the fixture attacks as root, where nothing but capsule stops it)");
    require!(has("gcc") && has("python3"), "gcc and python3");
    let dir = fixture_dir();
    fs::create_dir_all(&dir).unwrap();
    let (dynamic, fixed) = (dir.join("hostile"), dir.join("hostile-static"));
    gcc(&dynamic, &["-O0", "-pthread", "hostile.c"]).unwrap();
    gcc(&fixed, &["-O0", "-static", "-pthread", "hostile.c"]).unwrap();
    let shadow = fs::read("/etc/shadow").unwrap();
    let shadow_hash = format!("fnv {:016x}", fnv(&shadow[..shadow.len().min(1 << 16)]));
    let env = Env::new();
    capsule(&env, &dynamic, &fixed);
    let mut failures = Vec::new();
    for mode in ["writecopy", "full"] {
        for (kind, entry, seccomp) in [
            ("tier1", "/opt/hostile/hostile", "never"),
            ("tiers", "/opt/hostile/hostile", "always"),
            ("static", "/opt/hostile/hostile-static", "auto"),
        ] {
            let tag = format!("{mode}-{kind}");
            let host = host_dir(&tag);
            let link = format!("/tmp/capsule-hostile-{}-{tag}", std::process::id());
            let before = snapshot(&host);
            let o = env
                .cmd(&[
                    "run",
                    "hostile",
                    "--sandbox",
                    &tag,
                    "--isolation",
                    mode,
                    "--seccomp",
                    seccomp,
                    "--entry",
                    entry,
                ])
                .arg("--")
                .arg(&host)
                .arg(&link)
                .output()
                .unwrap();
            let after = snapshot(&host);
            let _ = fs::remove_dir_all(&host);
            let _ = fs::remove_file(&link);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let ctx = format!("{tag} (exit {:?}):\n{out}{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
            if o.status.code() != Some(0) || !out.contains("\nsetuid 0 ok\n") {
                failures.push(format!("did not run to the end: {ctx}"));
            }
            if before != after {
                failures.push(format!("the host directory changed:\nbefore:\n{before}after:\n{after}{ctx}"));
            }
            if out.contains(&shadow_hash) {
                failures.push(format!("/etc/shadow was read after setuid(65534): {ctx}"));
            }
            // The routes only the filter closes answer as the filter does, whatever the tier.
            for want in ["io_uring_setup -1 ENOSYS", "open_by_handle_at -1 EPERM", "int80_open -1 ENOSYS"] {
                if !out.lines().any(|l| l == want) {
                    failures.push(format!("missing {want:?}: {ctx}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n----\n"));
}
