//! The differential fixtures built `-static` (issue 15, done-when 7): no shim can load into a
//! static program, so under `capsule run` (`--seccomp auto` picks tier 2 for it) every capsule
//! path it names is answered by the seccomp supervisor. Same staging tree, same capsule, same
//! canonicalisation as the dynamic builds ([`Diff`]); the output must match the native run's.

use super::{Diff, require_gcc};
use crate::require;

/// The fixtures built `-static` too. Not `early_ctor`: it is about the preloaded shim's
/// constructor running after a DT_NEEDED library's, and a static program has neither a
/// shared library nor the shim. Not the fortified build: in a static program `__open_2` is
/// libc's own call to `open`, which the supervisor sees exactly as the plain build's.
pub const FIXTURES: [&str; 6] = ["open", "stat", "dir", "exec", "threads", "windows"];

/// How many calls the supervisor served, from `--stats` on the capsule run's stderr.
fn served(stderr: &str) -> u64 {
    stderr
        .split("tier 2 (supervisor): ")
        .nth(1)
        .and_then(|s| s.split_once(" served")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no tier 2 stats in:\n{stderr}"))
}

/// Compare `NAME-static` under the default `--seccomp auto`, with tier 2's known `gaps`
/// ([`Diff::compare_gaps`]); the supervisor must have served it.
fn compare_static(d: &Diff, name: &str, options: &[&str], gaps: &[(&str, &str)]) -> String {
    let mut opts = vec!["--stats"];
    opts.extend_from_slice(options);
    let (out, err) = d.compare_gaps(&format!("{name}-static"), &opts, gaps);
    assert!(served(&err) > 0, "{name}-static: the supervisor served nothing:\n{err}");
    out
}

/// Tier 2's gap in dir.c: `chdir` into a capsule-only directory by its virtual path. The
/// supervisor cannot change another process's working directory, so it fails with
/// EOPNOTSUPP; the fixture then moves there with `fchdir` on a descriptor the supervisor
/// opened, and every relative call, `getcwd` and `realpath(".")` after it must match.
const CHDIR_GAP: [(&str, &str); 2] = [
    ("chdir data: ok", "chdir data: EOPNOTSUPP, fchdir instead: ok"),
    ("chdir dirlink: ok", "chdir dirlink: EOPNOTSUPP, fchdir instead: ok"),
];

/// Tier 2's gap in exec.c: `execve` of a capsule path from a program without the shim. The
/// kernel looks the path up on the host (ENOENT), and the supervisor cannot hand it another
/// one (`CONTINUE` runs the call as made). Host programs it execs (cat, env, sh, system())
/// get the shim and run capsule programs, whose `/proc/self/exe` the supervisor names by
/// the virtual path: those lines must match.
const EXEC_GAP: [(&str, &str); 5] = [
    ("vfork+execve:\n  child vfork: *\nvfork+execve: exit 7", "vfork+execve:\nvfork+execve: exit 127"),
    ("posix_spawn self:\n  child spawn: *\nposix_spawn self: exit 7", "posix_spawn self:\nposix_spawn self: ENOENT"),
    ("execvp self:\n  child execvp: *\nexecvp self: exit 7", "execvp self:\nexecvp self: exit 127"),
    ("script:\n  tool: arg1\nalpha\nscript: exit 0", "script:\n  script exec: ENOENT\nscript: exit 127"),
    ("execve empty env:\n  child env-i: *\nexecve empty env: exit 7", "execve empty env:\nexecve empty env: exit 127"),
];

#[test]
fn open_family_static() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = compare_static(&Diff::new(), "open", &[], &[]);
    assert!(out.contains("open via-link: ok reached through a link|"), "{out}");
}

#[test]
fn open_family_static_seccomp_always() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    compare_static(&Diff::new(), "open", &["--seccomp", "always"], &[]);
}

#[test]
fn stat_family_static() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = compare_static(&Diff::new(), "stat", &[], &[]);
    for line in [
        "stat hello.txt/: ENOTDIR",
        "stat dirlink/../numbers.dat: file 0644 size 11",
        "readlink link-to-hello: hello.txt",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
}

#[test]
fn dir_family_static() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = compare_static(&Diff::new(), "dir", &[], &CHDIR_GAP);
    for line in [
        "list dirlink: a.txt:f b.txt:f deep:d",
        "getcwd: $ROOT/data/nested\nrelative open: ok alpha|",
        "chdir file: ENOTDIR",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }
}

#[test]
fn exec_family_static() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = compare_static(&Diff::with_exec("exec-static"), "exec", &[], &EXEC_GAP);
    assert!(out.contains("  child env(1): env 0, exe $ROOT/bin/exec, hello ok hello capsule|"), "{out}");
}

#[test]
fn threads_and_signal_handlers_static() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = compare_static(&Diff::new(), "threads", &[], &[]);
    assert!(out.contains("handler ran: yes\nhandler failures: 0 (first: none)"), "{out}");
}

#[test]
fn glibc_internal_opens_static() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = compare_static(&Diff::new(), "windows", &[], &[]);
    assert!(out.contains("getpwnam: 2000 of 2000\n"), "{out}");
}
