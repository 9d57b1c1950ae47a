//! Issue 18, pre-flight: `capsule check NAME` says what a capsule expects of this host that
//! the host lacks (libraries, `#!` interpreters, entry points' programs), and `run` says the
//! same instead of the loader's error. Fixtures are built here with gcc and captured by
//! snapshot diff into a staging root, so the host is never changed.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use crate::require;
use crate::support::{Env, has, run_capsule};

const NOWHERE: &str = "not in the capsule, not on this host";

/// Compile `src` with gcc and `args` (run in `dir`) into `out`.
fn gcc(dir: &Path, out: &Path, src: &str, args: &[&str]) {
    let c = dir.join(format!("{}.c", out.file_name().unwrap().to_string_lossy()));
    fs::write(&c, src).unwrap();
    let o = Command::new("gcc").arg("-o").arg(out).arg(&c).args(args).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "gcc {}: {}", out.display(), String::from_utf8_lossy(&o.stderr));
}

fn write_exec(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Snapshot-capture what `fill` adds to staging root `stage` (which `before` filled before
/// the pre-scan) as capsule `name` with entry `entry`.
fn capture_staged(env: &Env, name: &str, entry: &str, before: impl FnOnce(&Path), fill: impl FnOnce(&Path)) {
    capture_staged_with(env, name, entry, &[], before, fill);
}

/// [`capture_staged`] with more arguments for `snapshot end` (`--base host`).
fn capture_staged_with(
    env: &Env,
    name: &str,
    entry: &str,
    end: &[&str],
    before: impl FnOnce(&Path),
    fill: impl FnOnce(&Path),
) {
    let stage = env.path(&format!("stage-{name}"));
    fs::create_dir_all(&stage).unwrap();
    before(&stage);
    let base = stage.to_str().unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/usr,/etc,/opt"]);
    fill(&stage);
    env.ok(&[&["-q", "capture", "snapshot", "end", name, "--entry", entry][..], end].concat());
}

/// `capsule check ARGS`: (exit code, stdout, stderr).
fn check(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    run_capsule(env, &a)
}

#[test]
fn an_elf_capture_of_a_host_binary_checks_clean() {
    let env = Env::new();
    env.ok(&["-q", "capture", "elf", "ls", "/bin/ls"]);
    let (code, out, err) = check(&env, &["ls"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("capsule ls:latest: nothing missing on this host"), "{out}");
    let doc = env.json(&["check", "ls"]);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["missing"].as_array().map(Vec::len), Some(0), "{doc}");
    // ls, its loader, libc and the libraries ls needs were all loaded.
    assert!(doc["checked"]["elf"].as_u64().unwrap() >= 3, "{doc}");
    assert_eq!(doc["checked"]["entry_points"], 1, "{doc}");
    // The kernel features of the run options: `full` isolation needs Landlock, which this
    // kernel is made to lack (`CAPSULE_DEBUG_LANDLOCK=off`, as `run` sees it).
    let no_landlock = |args: &[&str]| {
        let o = env.cmd(args).env("CAPSULE_DEBUG_LANDLOCK", "off").output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, out) = no_landlock(&["check", "ls", "--isolation", "full"]);
    assert_eq!(code, Some(1), "{out}");
    let line =
        "isolation full for / needs Landlock: this kernel has no Landlock (run it with --unconfined to go without)";
    assert!(out.lines().any(|l| l == line), "{out}");
    assert_eq!(no_landlock(&["check", "ls", "--isolation", "full", "--unconfined"]).0, Some(0));
    assert_eq!(no_landlock(&["check", "ls"]).0, Some(0), "the default rules need no Landlock");
    // A blob the store lacks (as after a lazy pull) is a file whose needs are unknown, said so.
    let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
    let hex = crate::support::b3(libc);
    fs::remove_file(env.store().join("blobs").join(&hex[..2]).join(&hex)).unwrap();
    let (code, out, err) = check(&env, &["ls"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("; 1 files not read, their needs unknown"), "{out}");
    assert!(err.contains("/usr/lib/x86_64-linux-gnu/libc.so.6 of capsule ls:latest could not be read"), "{err}");
}

/// A program needing `libcheckfix.so`, built in `dir`; the library too, at `lib`.
fn program_and_library(dir: &Path, app: &Path, lib: &Path) {
    fs::create_dir_all(lib.parent().unwrap()).unwrap();
    fs::create_dir_all(app.parent().unwrap()).unwrap();
    gcc(dir, lib, "#include <stdio.h>\nvoid fix(void) { puts(\"fixed\"); }\n", &["-shared", "-fPIC"]);
    let libdir = format!("-L{}", lib.parent().unwrap().display());
    gcc(dir, app, "void fix(void);\nint main(void) { fix(); return 0; }\n", &[&libdir, "-lcheckfix"]);
}

#[test]
fn a_library_the_capsule_lacks_is_reported_by_check_and_by_run() {
    require!(has("gcc"), "no C compiler for the fixture");
    assert!(!Path::new("/opt/checkapp").exists(), "the host must not have /opt/checkapp for this test");
    let env = Env::new();
    let build = env.path("build");
    fs::create_dir_all(&build).unwrap();
    // With its library the capsule checks clean and runs.
    capture_staged(
        &env,
        "whole",
        "/opt/checkapp/bin/app",
        |_| {},
        |stage| {
            let (app, lib) = (stage.join("opt/checkapp/bin/app"), stage.join("opt/checkapp/lib/libcheckfix.so"));
            program_and_library(&build, &app, &lib);
        },
    );
    let (code, out, err) = check(&env, &["whole"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_capsule(&env, &["run", "whole"]);
    assert_eq!((code, out.as_str()), (0, "fixed\n"), "{err}");
    // The program alone: its library stays in the build directory.
    capture_staged(
        &env,
        "alone",
        "/opt/checkapp/bin/app",
        |_| {},
        |stage| {
            let app = stage.join("opt/checkapp/bin/app");
            program_and_library(&build, &app, &build.join("lib/libcheckfix.so"));
        },
    );
    let line = format!("/opt/checkapp/bin/app needs libcheckfix.so: {NOWHERE}");
    let (code, out, err) = check(&env, &["alone"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.lines().any(|l| l == line), "{out}");
    assert!(out.contains("capsule alone:latest: 1 missing on this host"), "{out}");
    let doc = env.cmd(&["--json", "check", "alone"]).output().unwrap();
    assert_eq!(doc.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&doc.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["missing"][0]["by"], "/opt/checkapp/bin/app", "{doc}");
    assert_eq!(doc["missing"][0]["kind"], "library", "{doc}");
    assert_eq!(doc["missing"][0]["name"], "libcheckfix.so", "{doc}");
    // `run` says the same instead of the loader's error, and exits 127.
    let (code, out, err) = run_capsule(&env, &["run", "alone"]);
    assert_eq!(code, 127, "{out}{err}");
    assert!(err.lines().any(|l| l == format!("capsule: error: {line}")), "{err}");
    assert!(!err.contains("error while loading shared libraries"), "not the loader's error: {err}");
    assert!(out.is_empty(), "the program did not start: {out}");
}

#[test]
fn a_script_whose_interpreter_is_missing_is_reported() {
    assert!(!Path::new("/opt/nowhere").exists(), "the host must not have /opt/nowhere for this test");
    let env = Env::new();
    capture_staged(
        &env,
        "script",
        "/opt/checkapp/bin/tool",
        |_| {},
        |stage| {
            write_exec(&stage.join("opt/checkapp/bin/tool"), "#!/opt/nowhere/interp -x\nhello\n");
            write_exec(&stage.join("opt/checkapp/bin/ok"), "#!/bin/sh\necho ok\n");
            write_exec(&stage.join("opt/checkapp/bin/envtool"), "#!/usr/bin/env capsule-no-such-command\n");
        },
    );
    let (code, out, err) = check(&env, &["script"]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    // The entry point's interpreter counts; envtool's command, which the capture host lacked
    // too and no entry point needs, is shown apart (the base's `unmet`).
    let want = [
        format!("/opt/checkapp/bin/tool needs its #! interpreter /opt/nowhere/interp: {NOWHERE}"),
        "/opt/checkapp/bin/envtool needs capsule-no-such-command (#!/usr/bin/env capsule-no-such-command): missing \
         where it was captured too (not counted)"
            .to_owned(),
    ];
    assert_eq!(lines.get(..2), Some(&want[..]), "{out}");
    assert!(
        out.contains("1 missing on this host (checked 0 ELF programs and libraries, 3 scripts, 1 entry points)"),
        "{out}"
    );
    // `run` of the script names its interpreter, not the kernel's "No such file or directory".
    let (code, _, err) = run_capsule(&env, &["run", "script"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.lines().any(|l| l == format!("capsule: error: {}", want[0])), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "script", "--entry", "/opt/checkapp/bin/ok"]);
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
}

#[test]
fn an_entry_point_naming_a_missing_host_program_is_reported() {
    assert!(!Path::new("/opt/checkhost").exists(), "the host must not have /opt/checkhost for this test");
    let env = Env::new();
    // The capture host has /opt/checkhost/prog (before the pre-scan: not captured); the
    // capsule's entry point is a symlink to it. This host has no such program.
    let before = |stage: &Path| write_exec(&stage.join("opt/checkhost/prog"), "#!/bin/sh\necho host\n");
    capture_staged(&env, "hostprog", "/opt/checkapp/bin/prog", before, |stage| {
        fs::create_dir_all(stage.join("opt/checkapp/bin")).unwrap();
        symlink("/opt/checkhost/prog", stage.join("opt/checkapp/bin/prog")).unwrap();
    });
    let (code, out, err) = check(&env, &["hostprog"]);
    assert_eq!(code, 1, "{out}{err}");
    let line = format!("entry point prog needs /opt/checkhost/prog: {NOWHERE}");
    assert!(out.lines().any(|l| l == line), "{out}");
    assert!(out.contains("1 missing on this host"), "{out}");
}

/// The case, on another machine: a snapshot capsule of a program that needs
/// `libatomic.so.1`, which this (the capture) host has and a minimal trixie root lacks,
/// captured with `--base host` (only what the capture changed). Here it checks clean and runs;
/// in the root (entered with chroot in a mount namespace of its own), `check` names the
/// library and exits 1, and `run` says the same and exits 127. The same capture with the
/// default base (`minimal`) carries libatomic and runs there.
#[test]
fn check_on_a_machine_that_lacks_a_host_library() {
    use crate::support::is_root;
    require!(is_root() && has("unshare") && has("chroot"), "needs root, unshare and chroot");
    require!(has("mmdebstrap"), "mmdebstrap is not installed (apt-get install mmdebstrap)");
    require!(has("gcc"), "no C compiler for the fixture");
    require!(Path::new("/usr/lib/x86_64-linux-gnu/libatomic.so.1").exists(), "this host has no libatomic.so.1");
    let root = match crate::exec::trixie_root() {
        Ok(r) => r,
        Err(why) => {
            crate::support::require_or_skip(&why);
            return;
        }
    };
    assert!(!root.join("usr/lib/x86_64-linux-gnu/libatomic.so.1").exists(), "minbase trixie has no libatomic1");
    let env = Env::new();
    let build = env.path("build");
    fs::create_dir_all(&build).unwrap();
    for (name, base) in [("atomic", "host"), ("atomicmin", "minimal")] {
        capture_staged_with(
            &env,
            name,
            "/opt/checkapp/bin/atomic",
            &["--base", base],
            |_| {},
            |stage| {
                let app = stage.join("opt/checkapp/bin/atomic");
                fs::create_dir_all(app.parent().unwrap()).unwrap();
                let src = "#include <stdio.h>\nint main(void) { puts(\"atomic\"); return 0; }\n";
                gcc(&build, &app, src, &["-Wl,--no-as-needed", "-latomic"]);
            },
        );
    }
    let (code, out, err) = check(&env, &["atomic"]);
    assert_eq!(code, 0, "on the capture host: {out}{err}");
    let (code, out, err) = run_capsule(&env, &["run", "atomic"]);
    assert_eq!((code, out.as_str()), (0, "atomic\n"), "{err}");

    let (inside, _cleanup) = crate::exec::stage_in_root(&env, &root, "capsule-e2e-check", "atomic");
    let in_root = |script: &str| {
        let o = crate::exec::in_root(&root, script).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let cap = format!("{inside}/capsule --store {inside}/store");
    let (code, _, err) = in_root(&format!("{cap} -q import {inside}/atomic.capsule"));
    assert_eq!(code, Some(0), "import: {err}");
    let line = format!("/opt/checkapp/bin/atomic needs libatomic.so.1: {NOWHERE}");
    let (code, out, err) = in_root(&format!("{cap} check atomic"));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.lines().any(|l| l == line), "{out}");
    let (code, out, err) = in_root(&format!("{cap} run atomic"));
    assert_eq!(code, Some(127), "{out}{err}");
    assert!(err.lines().any(|l| l == format!("capsule: error: {line}")), "{err}");
    assert!(out.is_empty(), "{out}");
    // Against the minimal base, the capture took libatomic along.
    let (inside, _cleanup) = crate::exec::stage_in_root(&env, &root, "capsule-e2e-checkmin", "atomicmin");
    let cap = format!("{inside}/capsule --store {inside}/store");
    let (code, out, err) =
        in_root(&format!("{cap} -q import {inside}/atomicmin.capsule && {cap} check atomicmin && {cap} run atomicmin"));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("capsule atomicmin:latest: nothing missing on this host"), "{out}{err}");
    assert!(out.ends_with("\natomic\n"), "{out}{err}");
}
