//! Issue 17: entry points that mean something. A capture records the programs it installed
//! by name (dpkg file lists, desktop entries, new programs in bin directories); `capsule run
//! NAME PROGRAM ARGS` runs one docker-style; `capsule run NAME` runs the declared default or
//! lists the programs and exits 2, never a guess; `inspect` lists them; an entry point may
//! be a capsule symlink to a host program. And errors say the first cause only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, run_capsule};

/// Capture `files` (path, content, mode) under `host-NAME/` as capsule `name` by snapshot
/// diff with `--base`, with `extra` options for `snapshot end`.
fn capsule_of(env: &Env, name: &str, files: &[(&str, &[u8], u32)], extra: &[&str]) {
    let host = env.path(&format!("host-{name}"));
    std::fs::create_dir_all(&host).unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", host.to_str().unwrap(), "--roots", "/usr,/etc,/opt"]);
    for (rel, content, mode) in files {
        let p = host.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let mut args = vec!["-q", "capture", "snapshot", "end", name];
    args.extend(extra);
    env.ok(&args);
}

/// Two programs and no default: `run NAME` lists them and exits 2 (with or without words
/// that name no program), `run NAME PROG ARGS` and `run NAME -- PROG ARGS` run PROG with
/// ARGS, and `inspect` lists both, with no default.
#[test]
fn several_programs_without_a_default_are_listed_and_named_ones_run() {
    let env = Env::new();
    let files: &[(&str, &[u8], u32)] = &[
        ("usr/bin/alpha", b"#!/bin/sh\necho \"alpha $*\"\n", 0o755),
        ("usr/bin/beta", b"#!/bin/sh\necho \"beta $*\"\n", 0o755),
        ("usr/share/alpha/data", b"not a program\n", 0o644),
    ];
    capsule_of(&env, "two", files, &[]);
    for args in [&["run", "two"][..], &["run", "two", "--", "gamma"], &["run", "two", "gamma", "-x"]] {
        let (code, out, err) = run_capsule(&env, args);
        assert_eq!(code, 2, "{args:?}: stdout {out}\nstderr {err}");
        assert!(out.is_empty(), "{args:?} ran something: {out}");
        assert!(err.contains("no default program") && err.contains("capsule run two PROGRAM"), "{err}");
        for p in ["alpha  /usr/bin/alpha", "beta   /usr/bin/beta"] {
            assert!(err.contains(p), "{args:?}: {p:?} not listed:\n{err}");
        }
    }
    let (code, out, err) = run_capsule(&env, &["run", "two", "beta", "one", "--two"]);
    assert_eq!((code, out.as_str()), (0, "beta one --two\n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "two", "--", "alpha", "x"]);
    assert_eq!((code, out.as_str()), (0, "alpha x\n"), "{err}");
    // By virtual path, and through --entry by name.
    let (code, out, err) = run_capsule(&env, &["run", "two", "/usr/bin/beta", "p"]);
    assert_eq!((code, out.as_str()), (0, "beta p\n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "two", "--entry", "alpha", "--", "q"]);
    assert_eq!((code, out.as_str()), (0, "alpha q\n"), "{err}");
    let m = env.json(&["inspect", "two"]);
    let eps = m["entry_points"].as_array().unwrap();
    let names: Vec<&str> = eps.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"], "{m}");
    assert!(m["default_entry"].is_null() && eps.iter().all(|e| e["default"] == false), "{m}");
    assert_eq!(eps[0]["source"], "new program");
    let text = env.ok(&["inspect", "two"]);
    assert!(text.contains("entry     alpha (/usr/bin/alpha; new program)"), "{text}");
    assert!(text.contains("no default"), "{text}");
}

/// The only program is the default; `--entry` at capture declares one among several, and a
/// first word that names no program goes to it as an argument.
#[test]
fn the_only_program_or_the_declared_one_is_the_default() {
    let env = Env::new();
    capsule_of(&env, "one", &[("usr/bin/solo", b"#!/bin/sh\necho \"solo $*\"\n", 0o755)], &[]);
    let (code, out, err) = run_capsule(&env, &["run", "one", "--", "hello"]);
    assert_eq!((code, out.as_str()), (0, "solo hello\n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "one", "hello", "-n"]);
    assert_eq!((code, out.as_str()), (0, "solo hello -n\n"), "{err}");
    let files: &[(&str, &[u8], u32)] = &[
        ("usr/bin/aaa", b"#!/bin/sh\necho \"aaa $*\"\n", 0o755),
        ("usr/sbin/zzz", b"#!/bin/sh\necho \"zzz $*\"\n", 0o755),
    ];
    capsule_of(&env, "decl", files, &["--entry", "/usr/sbin/zzz"]);
    let (code, out, err) = run_capsule(&env, &["run", "decl"]);
    assert_eq!((code, out.as_str()), (0, "zzz \n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "decl", "--", "word"]);
    assert_eq!((code, out.as_str()), (0, "zzz word\n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "decl", "aaa", "word"]);
    assert_eq!((code, out.as_str()), (0, "aaa word\n"), "{err}");
    let m = env.json(&["inspect", "decl"]);
    assert_eq!(m["default_entry"], "zzz", "{m}");
    assert_eq!(m["entry_points"][0]["source"], "declared", "{m}");
}

/// A desktop application is an entry point (its `Exec=` program; named after the desktop
/// file when the line has arguments, which it keeps) and, being the only one shown, the
/// default among several programs.
#[test]
fn the_main_desktop_application_is_the_default() {
    let env = Env::new();
    let files: &[(&str, &[u8], u32)] = &[
        ("usr/bin/viewer", b"#!/bin/sh\necho \"viewer $*\"\n", 0o755),
        ("usr/bin/helper", b"#!/bin/sh\necho \"helper $*\"\n", 0o755),
        (
            "usr/share/applications/viewer.desktop",
            b"[Desktop Entry]\nType=Application\nName=Viewer\nExec=viewer --fit %F\n",
            0o644,
        ),
        (
            "usr/share/applications/helper.desktop",
            b"[Desktop Entry]\nType=Application\nExec=helper\nNoDisplay=true\n",
            0o644,
        ),
    ];
    capsule_of(&env, "gui", files, &[]);
    let m = env.json(&["inspect", "gui"]);
    assert_eq!(m["default_entry"], "viewer", "{m}");
    let eps = m["entry_points"].as_array().unwrap();
    let viewer = eps.iter().find(|e| e["name"] == "viewer").unwrap_or_else(|| panic!("{m}"));
    assert_eq!(viewer["args"], serde_json::json!(["--fit"]), "{m}");
    assert_eq!(viewer["source"], "desktop /usr/share/applications/viewer.desktop", "{m}");
    let (code, out, err) = run_capsule(&env, &["run", "gui", "--", "pic.png"]);
    assert_eq!((code, out.as_str()), (0, "viewer --fit pic.png\n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "gui", "helper", "-v"]);
    assert_eq!((code, out.as_str()), (0, "helper -v\n"), "{err}");
}

/// A capsule symlink that leads to a program on the host is an entry point: by `--entry`
/// with its capsule path, by name, and as a first word. The program sees the capsule's path
/// as argv[0] (busybox-style multi-call programs, Debian's redis-server → redis-check-rdb).
#[test]
fn an_entry_point_may_be_a_capsule_symlink_to_a_host_program() {
    require!(Path::new("/usr/bin/printf").is_file(), "the host's /usr/bin/printf");
    let env = Env::new();
    let host = env.path("host-link");
    std::fs::create_dir_all(host.join("usr/bin")).unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", host.to_str().unwrap(), "--roots", "/usr"]);
    std::os::unix::fs::symlink("printf", host.join("usr/bin/say")).unwrap();
    std::fs::create_dir_all(host.join("usr/share/say")).unwrap();
    std::fs::write(host.join("usr/share/say/x"), "x").unwrap();
    env.ok(&["-q", "capture", "snapshot", "end", "link", "--entry", "/usr/bin/say"]);
    let m = env.json(&["inspect", "link"]);
    assert_eq!(m["entry_points"][0]["path"], "/usr/bin/say", "{m}");
    assert!(!m["files"].as_array().unwrap().iter().any(|f| f["path"] == "/usr/bin/printf"), "printf was captured");
    let (code, out, err) = run_capsule(&env, &["run", "link", "--entry", "/usr/bin/say", "--", "%s-%s", "a", "b"]);
    assert_eq!((code, out.as_str()), (0, "a-b"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "link", "say", "%s", "c"]);
    assert_eq!((code, out.as_str()), (0, "c"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "link", "--", "[%s]", "d"]);
    assert_eq!((code, out.as_str()), (0, "[d]"), "{err}");
}

/// When the dynamic loader fails before the shim arms tier 2 (a library of the capsule that
/// lacks a symbol the program binds at load: a missing library is said by `run`'s pre-flight
/// before anything starts, `check::a_library_the_capsule_lacks_is_reported_by_check_and_by_run`),
/// the user sees the loader's error and the program's status, and no supervisor error after
/// it: with tier 2 on by `--seccomp auto` (the capsule carries /etc/passwd) and `always`,
/// and under tier 1.
#[test]
fn a_loader_error_is_the_only_error() {
    require!(has("gcc"), "gcc (to build a program whose library is missing)");
    let env = Env::new();
    let dir = env.path("build");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("foo.c"), "int foo(void) { return 7; }\n").unwrap();
    std::fs::write(dir.join("main.c"), "int foo(void);\nint main(void) { return foo(); }\n").unwrap();
    let gcc = |args: &[&str]| {
        let o = Command::new("gcc").current_dir(&dir).args(args).output().unwrap();
        assert!(o.status.success(), "gcc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    gcc(&["-shared", "-fPIC", "-o", "libcapsulefoo.so", "foo.c"]);
    // Bound at load (`-z now`): the loader fails before any constructor, the shim's included.
    gcc(&["-o", "needsfoo", "main.c", "-L.", "-lcapsulefoo", "-Wl,-z,now"]);
    let prog = std::fs::read(dir.join("needsfoo")).unwrap();
    std::fs::write(dir.join("nofoo.c"), "int bar(void) { return 1; }\n").unwrap();
    gcc(&["-shared", "-fPIC", "-o", "nofoo.so", "nofoo.c"]);
    let nofoo = std::fs::read(dir.join("nofoo.so")).unwrap();
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let lib = "usr/lib/libcapsulefoo.so";
    capsule_of(
        &env,
        "t2",
        &[("usr/bin/needsfoo", &prog, 0o755), (lib, &nofoo, 0o755), ("etc/passwd", passwd, 0o644)],
        &[],
    );
    capsule_of(&env, "t1", &[("usr/bin/needsfoo", &prog, 0o755), (lib, &nofoo, 0o755)], &[]);
    for args in [&["run", "t2"][..], &["run", "t2", "--seccomp", "always"], &["run", "t1"], &["run", "t1"]] {
        let (code, _, err) = run_capsule(&env, args);
        assert_eq!(code, 127, "{args:?}: {err}");
        assert!(err.contains("symbol lookup error") && err.contains("undefined symbol: foo"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: more than the first cause:\n{err}");
    }
    // The same capsule with the library works: the test is about the error, not the run.
    capsule_of(
        &env,
        "ok",
        &[
            ("usr/bin/needsfoo", &prog, 0o755),
            ("usr/lib/libcapsulefoo.so", &std::fs::read(dir.join("libcapsulefoo.so")).unwrap(), 0o755),
            ("etc/passwd", passwd, 0o644),
        ],
        &[],
    );
    let (code, _, err) = run_capsule(&env, &["run", "ok"]);
    assert_eq!(code, 7, "{err}");
}

/// Real packages: `capture install` of ruby records its programs by name (ruby, irb, gem,
/// bundle…) with the package each came from; with several programs and no desktop
/// application there is no default, so a bare `capsule run ruby` lists them and exits 2
/// instead of starting `bundle3.1`; `capsule run ruby ruby -e …` runs ruby.
#[test]
fn ruby_installed_into_a_capsule_runs_by_program_name() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    let env = Env::new();
    {
        let _lock = dpkg_lock();
        require!(!installed("ruby3.1"), "ruby3.1 not installed on the host (it is)");
        let (code, out, err) = run_capsule(
            &env,
            &["capture", "install", "ruby", "--", "apt-get", "install", "-y", "--no-install-recommends", "ruby"],
        );
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert!(!installed("ruby3.1"), "the install reached the host");
    }
    let m = env.json(&["inspect", "ruby"]);
    let eps = m["entry_points"].as_array().unwrap();
    let find = |n: &str| eps.iter().find(|e| e["name"] == n).unwrap_or_else(|| panic!("no entry point {n}: {m}"));
    assert_eq!(find("ruby3.1")["source"], "package ruby3.1", "{m}");
    assert_eq!(find("ruby")["path"], "/usr/bin/ruby", "{m}");
    find("irb");
    find("bundle3.1");
    assert!(m["default_entry"].is_null(), "{m}");
    let (code, out, err) = run_capsule(&env, &["run", "ruby"]);
    assert_eq!(code, 2, "stdout {out}\nstderr {err}");
    assert!(out.is_empty() && err.contains("bundle3.1") && err.contains("irb"), "stdout {out}\nstderr {err}");
    let (code, out, err) = run_capsule(&env, &["run", "ruby", "ruby", "-e", "puts [RUBY_VERSION[0,3], 6*7].join(' ')"]);
    assert_eq!((code, out.as_str()), (0, "3.1 42\n"), "{err}");
    let (code, out, err) = run_capsule(&env, &["run", "ruby", "--", "erb", "--version"]);
    assert_eq!(code, 0, "{out}{err}");
    let text = env.ok(&["inspect", "ruby"]);
    assert!(text.contains("entry     ruby (/usr/bin/ruby; package ruby)"), "{text}");
}
