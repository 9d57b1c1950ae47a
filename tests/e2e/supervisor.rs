//! Tier 2, the seccomp supervisor (issue 4): static programs and glibc's internal opens see
//! the capsule; a multithreaded static program that forks and execs finishes under it.

use std::path::Path;

use crate::require;
use crate::shim::Diff;
use crate::support::{Env, run_capsule};

pub const BUSYBOX: &str = "/bin/busybox";

/// Debian's busybox-static (the busybox package is dynamic and has no static binary).
pub fn static_busybox() -> bool {
    std::fs::read(BUSYBOX).is_ok_and(|b| {
        capsule_core::supervisor::auto::linkage_of(&b[..b.len().min(65536)])
            == capsule_core::supervisor::auto::Linkage::Static
    })
}

#[test]
fn a_static_program_reads_and_lists_capsule_only_files() {
    require!(static_busybox(), "{BUSYBOX} from busybox-static (apt-get install busybox-static)");
    let env = Env::new();
    env.small_capsule(
        "tools",
        &[("opt/captools/conf/app.conf", b"answer = 42\n"), ("opt/captools/conf/extra.d/x.conf", b"x\n")],
    );
    assert!(!Path::new("/opt/captools").exists(), "/opt/captools exists on this host");
    let (code, out, err) =
        run_capsule(&env, &["run", "tools", "--entry", BUSYBOX, "--stats", "--", "cat", "/opt/captools/conf/app.conf"]);
    assert_eq!((code, out.as_str()), (0, "answer = 42\n"), "stderr: {err}");
    assert!(err.contains("tier 2 (supervisor): ") && !err.contains("(off)"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "tools", "--entry", BUSYBOX, "--", "ls", "/opt/captools/conf"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["app.conf", "extra.d"]);
    let (code, out, _) = run_capsule(
        &env,
        &["run", "tools", "--entry", BUSYBOX, "--", "sh", "-c", "test -d /opt/captools/conf/extra.d && echo dir"],
    );
    assert_eq!((code, out.as_str()), (0, "dir\n"));
    // Without the supervisor the static program would run unvirtualised: refused instead.
    let (code, _, err) = run_capsule(
        &env,
        &["run", "tools", "--entry", BUSYBOX, "--seccomp", "never", "--", "cat", "/opt/captools/conf/app.conf"],
    );
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("statically linked") && err.contains("--seccomp never"), "{err}");
}

/// A static program lists a directory that the capsule and the host both have with
/// getdents64 on the descriptor the supervisor injected: it sees both sides, merged.
#[test]
fn a_static_program_lists_a_directory_the_host_has_too_merged() {
    require!(static_busybox(), "{BUSYBOX} from busybox-static (apt-get install busybox-static)");
    let env = Env::new();
    let dir = "/usr/share/doc";
    assert!(!Path::new(dir).join("capsule-static-merge").exists());
    env.small_capsule("m", &[("usr/share/doc/capsule-static-merge/readme", b"r\n")]);
    let mut want: std::collections::BTreeSet<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    want.insert("capsule-static-merge".into());
    // `ls -a` also shows the . and .. the listing starts with; find prints paths.
    let script =
        format!("ls -a {dir}; echo --; find {dir} -maxdepth 1 -mindepth 1; echo --; ls {dir}/capsule-static-merge");
    let (code, out, err) = run_capsule(&env, &["run", "m", "--entry", BUSYBOX, "--stats", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{err}");
    let sections: Vec<&str> = out.split("--\n").collect();
    assert_eq!(sections.len(), 3, "{out}");
    let ls: std::collections::BTreeSet<String> = sections[0].split_whitespace().map(str::to_owned).collect();
    let mut with_dots = want.clone();
    with_dots.extend([".".to_owned(), "..".to_owned()]);
    assert_eq!(ls, with_dots, "ls -a: missing {:?}", with_dots.difference(&ls).collect::<Vec<_>>());
    let found: std::collections::BTreeSet<String> =
        sections[1].lines().map(|l| l.strip_prefix(&format!("{dir}/")).unwrap_or(l).to_owned()).collect();
    assert_eq!(found, want, "find: missing {:?}", want.difference(&found).collect::<Vec<_>>());
    assert_eq!(sections[2], "readme\n", "a capsule-only directory lists as before");
    assert!(err.contains("tier 2 (supervisor): ") && !err.contains("(off)"), "{err}");
}

#[test]
fn a_static_program_changes_the_sandbox_not_the_host() {
    require!(static_busybox(), "{BUSYBOX} from busybox-static (apt-get install busybox-static)");
    let env = Env::new();
    env.small_capsule("mut", &[("opt/capmut/data.txt", b"data\n"), ("opt/capmut/sub/b", b"b\n")]);
    // busybox's `mkdir -p` starts with `mkdir("/")` (which the supervisor once answered EIO).
    let script = "mkdir /opt/capmut/newdir && mkdir -p /opt/capmut/newdir/p/q && echo new > /opt/capmut/newdir/f && rm /opt/capmut/sub/b && \
                  mv /opt/capmut/data.txt /opt/capmut/moved.txt && chmod 600 /opt/capmut/moved.txt && \
                  ln -s moved.txt /opt/capmut/sl && cat /opt/capmut/newdir/f /opt/capmut/sl && ls /opt/capmut";
    let (code, out, err) = run_capsule(&env, &["run", "mut", "--entry", BUSYBOX, "--", "sh", "-c", script]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "new\ndata\nmoved.txt\nnewdir\nsl\nsub\n");
    assert!(!Path::new("/opt/capmut").exists(), "a write reached the host");
    let diff = env.ok(&["sandbox", "mut", "diff"]);
    for want in [
        "A /opt/capmut/moved.txt",
        "A /opt/capmut/newdir/f",
        "A /opt/capmut/sl",
        "D /opt/capmut/data.txt",
        "D /opt/capmut/sub/b",
    ] {
        assert!(diff.lines().any(|l| l == want), "{want} missing from:\n{diff}");
    }
    // The changes persist into the next run, which sees them through the supervisor again.
    let (code, out, err) = run_capsule(
        &env,
        &["run", "mut", "--entry", BUSYBOX, "--", "sh", "-c", "ls -l /opt/capmut/moved.txt; ls /opt/capmut/sub"],
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.starts_with("-rw-------"), "{out}");
    // Write-copy over a host directory: the host file is not created.
    let (code, out, err) = run_capsule(
        &env,
        &[
            "run",
            "mut",
            "--entry",
            BUSYBOX,
            "--isolation",
            "/var/tmp=writecopy",
            "--",
            "sh",
            "-c",
            "echo hi > /var/tmp/capsule-static-wc && cat /var/tmp/capsule-static-wc",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    assert!(!Path::new("/var/tmp/capsule-static-wc").exists(), "a write-copy write reached the host");
}

#[test]
fn getent_answers_from_the_capsule_passwd_and_hosts() {
    require!(Path::new("/usr/bin/getent").exists(), "getent (libc-bin)");
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(!host_passwd.contains("capsuleuser"), "the host already has capsuleuser");
    let passwd = format!("{host_passwd}capsuleuser:x:4242:4242:Capsule User:/home/capsuleuser:/bin/sh\n");
    let hosts = format!("{host_hosts}10.99.0.7 capsulehost.example capsulehost\n");
    let env = Env::new();
    env.small_capsule("ident", &[("etc/passwd", passwd.as_bytes()), ("etc/hosts", hosts.as_bytes())]);
    let host = std::process::Command::new("getent").args(["passwd", "capsuleuser"]).output().unwrap();
    assert_eq!(host.status.code(), Some(2), "the host resolves capsuleuser");
    let (code, out, err) =
        run_capsule(&env, &["run", "ident", "--stats", "--entry", "/usr/bin/getent", "--", "passwd", "capsuleuser"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out, "capsuleuser:x:4242:4242:Capsule User:/home/capsuleuser:/bin/sh\n");
    // Tier 2 is on, yet nothing reached the supervisor: the shim armed the filter after the
    // loader, and answered NSS's opens itself, in a dispatch window around getpwnam.
    assert!(err.contains("tier 2 (supervisor): 0 served, 0 passed through;"), "{err}");
    let (code, out, err) =
        run_capsule(&env, &["run", "ident", "--entry", "/usr/bin/getent", "--", "hosts", "capsulehost"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["10.99.0.7", "capsulehost.example", "capsulehost"]);
    // The shim alone cannot see glibc's own opens: with tier 2 off the capsule's user is
    // unknown, which is why `auto` turns the supervisor on for this capsule.
    let (code, _, _) = run_capsule(
        &env,
        &["run", "ident", "--seccomp", "never", "--entry", "/usr/bin/getent", "--", "passwd", "capsuleuser"],
    );
    assert_eq!(code, 2);
}

#[test]
fn glibc_internal_opens_are_answered_in_process_even_under_signals() {
    let d = Diff::new();
    let (out, err) = d.compare_with("windows", &["--seccomp", "always", "--stats"]);
    assert!(out.contains("getpwnam: 2000 of 2000\n"), "{out}");
    assert!(out.contains("thread with SIGSYS blocked, getpwnam: 50 of 50\n"), "{out}");
    assert!(out.contains("handler ran, 0 bad reads\n"), "{out}");
    // Windows close early when a signal handler returns inside one (the rest of that call goes
    // to the supervisor) and never open on the thread with SIGSYS blocked, so some calls do
    // reach it; but far fewer than the ~20 path calls per round the loop makes in libc.
    let served = err
        .split("tier 2 (supervisor): ")
        .nth(1)
        .and_then(|s| s.split_once(" served, "))
        .and_then(|(a, b)| Some(a.parse::<u64>().ok()? + b.split_once(' ')?.0.parse::<u64>().ok()?));
    let served = served.unwrap_or_else(|| panic!("no stats in: {err}"));
    assert!(served < 2000, "{served} calls reached the supervisor:\n{err}");
}

#[test]
fn a_multithreaded_static_program_forks_and_execs_under_the_supervisor() {
    require!(Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists(), "libc.a (libc6-dev) for a static fixture");
    let d = Diff::new();
    let out = d.compare("static_fork");
    assert!(out.contains("threads: 800 rounds, 0 bad"), "{out}");
    assert!(out.contains("listed a.txt\nlisted b.txt\nlisted deep\n"), "{out}");
}
