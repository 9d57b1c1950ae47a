//! Differential tests of the shim (issue 3, done-when 1): each program of fixtures/c/ is built
//! with gcc, run natively on a staging tree (`STAGE/opt/difftest`) and under `capsule run` on
//! a capsule captured from that same tree (where `/opt/difftest` exists only in the capsule),
//! and must print the same thing, with the root shown as `$ROOT`, and exit the same way.
//!
//! Every test has its own store and staging tree, captured before the native run (the native
//! run writes into the staging tree; the capsule run into its sandbox). The fixture binaries
//! are host files (`--entry HOST_PATH`); the exec fixture is also copied into the capsule
//! as `/opt/difftest/bin/exec`, so its children run from the capsule.
//!
//! Needs the shim built next to the capsule binary (`cargo build -p capsule-shim`; .ci/run
//! and `cargo test --workspace` do it).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::require;
use crate::support::{Env, b3, has, walk};

mod statics;

/// The capsule's root, as the program sees it under `capsule run`.
const VROOT: &str = "/opt/difftest";
/// Far longer than any fixture needs (threads takes about a second; a deadlock is forever).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where the fixture binaries are built: target/capsule-fixtures/.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("capsule-fixtures")
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/c")
}

/// gcc `args`, output `out` written under a temporary name then renamed (test binaries and
/// threads may build at the same time).
pub fn gcc(out: &Path, args: &[&str]) -> Result<(), String> {
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let o = Command::new("gcc")
        .current_dir(source_dir())
        .args(["-std=gnu11", "-Wall", "-Wextra", "-g"])
        .args(args)
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !o.status.success() {
        return Err(format!("gcc {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr)));
    }
    fs::rename(&tmp, out).map_err(|e| format!("rename {}: {e}", out.display()))
}

/// Build every fixture, once per test process.
pub(crate) fn fixtures() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = BUILT.get_or_init(|| {
        let dir = fixture_dir();
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for name in ["open", "stat", "dir", "exec", "threads", "windows", "syscall"] {
            gcc(&dir.join(name), &["-O0", &format!("{name}.c"), "-pthread"])?;
        }
        gcc(&dir.join("open-fortify"), &["-O2", "-D_FORTIFY_SOURCE=2", "open.c"])?;
        gcc(&dir.join("fortify"), &["-O2", "-D_FORTIFY_SOURCE=2", "fortify.c"])?;
        // The same programs -static: no shim can load, the supervisor serves them (statics.rs).
        for name in statics::FIXTURES {
            gcc(&dir.join(format!("{name}-static")), &["-O0", "-static", &format!("{name}.c"), "-pthread"])?;
        }
        // Static: no shim can load, the seccomp supervisor serves it (tests/e2e/supervisor.rs).
        gcc(&dir.join("static_fork"), &["-O0", "-static", "static_fork.c", "-pthread"])?;
        gcc(&dir.join("libearly.so"), &["-shared", "-fPIC", "early_ctor_lib.c"])?;
        let lib = dir.to_str().ok_or("non-UTF-8 target dir")?;
        gcc(&dir.join("early_ctor"), &["early_ctor.c", "-L", lib, "-learly", "-Wl,-rpath,$ORIGIN"])?;
        Ok(dir)
    });
    match r {
        Ok(p) => p,
        Err(e) => panic!("building the fixtures: {e}"),
    }
}

/// How one run ended.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run `cmd` in its own process group with stdout/stderr in files under `scratch`; kill the
/// whole group after [`TIMEOUT`].
fn run(mut cmd: Command, scratch: &Path, tag: &str) -> Outcome {
    let out = scratch.join(format!("{tag}.stdout"));
    let err = scratch.join(format!("{tag}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!("{tag}: {cmd:?} did not finish within {TIMEOUT:?}:\n{}", fs::read_to_string(&out).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code: status.code(),
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    }
}

/// One staging tree and the capsule captured from it.
pub struct Diff {
    env: Env,
    /// STAGE/opt/difftest, canonical (what realpath prints natively).
    root: PathBuf,
    /// A host working directory for both runs, deliberately longer than the sandbox tree's path.
    cwd: PathBuf,
}

impl Diff {
    pub fn new() -> Diff {
        Diff::with_exec("exec")
    }

    /// [`Diff::new`] with fixture `exec` (a build of exec.c) as the capsule's `bin/exec`.
    pub fn with_exec(exec: &str) -> Diff {
        let fx = fixtures();
        let env = Env::new();
        let stage = env.path("stage");
        fs::create_dir_all(stage.join("opt")).unwrap();
        let stage = stage.canonicalize().unwrap();
        env.ok(&["-q", "capture", "snapshot", "begin", "--root", stage.to_str().unwrap(), "--roots", "/opt"]);
        let root = stage.join("opt/difftest");
        let files: &[(&str, &str, u32)] = &[
            ("hello.txt", "hello capsule\n", 0o644),
            ("data/numbers.dat", "0123456789\n", 0o644),
            ("data/only-via-link.txt", "reached through a link\n", 0o644),
            ("data/nested/a.txt", "alpha\n", 0o644),
            ("data/nested/b.txt", "bravo\n", 0o644),
            ("data/nested/deep/leaf.txt", "leaf\n", 0o644),
            ("data/t0.txt", "thread file 0\n", 0o644),
            ("data/t1.txt", "thread file 1\n", 0o644),
            ("data/t2.txt", "thread file 2\n", 0o644),
            ("data/t3.txt", "thread file 3\n", 0o644),
            ("writable/seed.txt", "seed\n", 0o644),
            ("bin/tool.sh", "#!/bin/sh\necho \"  tool: $1\"\ncat \"$2\"\n", 0o755),
        ];
        for (rel, content, mode) in files {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
        }
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::create_dir_all(root.join("data/many")).unwrap();
        for i in 0..1024 {
            fs::write(root.join(format!("data/many/f{i:03}")), format!("many {i:03}\n")).unwrap();
        }
        fs::copy(fx.join(exec), root.join("bin/exec")).unwrap();
        for (link, target) in [
            ("link-to-hello", "hello.txt"),
            ("dirlink", "data/nested"),
            ("dangling", "missing.txt"),
            ("via-link", "data/only-via-link.txt"),
        ] {
            symlink(target, root.join(link)).unwrap();
        }
        env.ok(&["-q", "capture", "snapshot", "end", "difftest"]);
        let cwd = env.path("cwd/a/rather/long/working/directory/that/is/longer/than/the/sandbox/tree/path");
        fs::create_dir_all(&cwd).unwrap();
        assert!(!Path::new(VROOT).exists(), "{VROOT} exists on this host: the capsule would not be needed");
        Diff { env, root, cwd }
    }

    fn native(&self, bin: &Path) -> Outcome {
        let mut c = Command::new(bin);
        c.arg(&self.root).current_dir(&self.cwd);
        run(c, self.env.dir.path(), "native")
    }

    fn capsule(&self, bin: &Path, options: &[&str]) -> Outcome {
        let mut args = vec!["run", "difftest"];
        args.extend_from_slice(options);
        args.extend_from_slice(&["--entry", bin.to_str().unwrap(), "--", VROOT]);
        let mut c = self.env.cmd(&args);
        c.current_dir(&self.cwd);
        run(c, self.env.dir.path(), "capsule")
    }

    /// The output with the root (and the working directory) shown symbolically.
    fn canon(&self, out: &str, root: &str) -> String {
        out.replace(self.cwd.to_str().unwrap(), "$CWD").replace(root, "$ROOT")
    }

    /// Run `fixture` both ways; assert the same output and exit code. Returns the output.
    pub fn compare(&self, fixture: &str) -> String {
        self.compare_with(fixture, &[]).0
    }

    /// [`Diff::compare`] with `capsule run` options; the output and the capsule run's stderr.
    pub fn compare_with(&self, fixture: &str, options: &[&str]) -> (String, String) {
        self.compare_gaps(fixture, options, &[])
    }

    /// [`Diff::compare_with`] for a tier with known gaps: each `(native, capsule)` pair is a
    /// run of lines the native output must contain (a line ending in `*` matches any line
    /// starting with what precedes it) and the lines the capsule run prints in their place.
    /// Everything else must match as usual.
    pub fn compare_gaps(&self, fixture: &str, options: &[&str], gaps: &[(&str, &str)]) -> (String, String) {
        let bin = fixtures().join(fixture);
        let shim = Path::new(env!("CARGO_BIN_EXE_capsule")).with_file_name("libcapsule_shim.so");
        let shim_dep = shim.parent().unwrap().join("deps/libcapsule_shim.so");
        assert!(shim.is_file() || shim_dep.is_file(), "no {}: run `cargo build -p capsule-shim` first", shim.display());
        let n = self.native(&bin);
        let c = self.capsule(&bin, options);
        let (nout, cout) = (self.canon(&n.stdout, self.root.to_str().unwrap()), self.canon(&c.stdout, VROOT));
        let expected = gaps.iter().fold(nout.clone(), |out, (from, to)| {
            with_gap(&out, from, to).unwrap_or_else(|| panic!("{fixture}: no {from:?} natively:\n{nout}"))
        });
        assert_same(fixture, &expected, &cout, &n, &c);
        self.assert_cache_intact(fixture);
        // The fixture itself must have worked natively: otherwise equal outputs prove nothing.
        assert_eq!(n.code, Some(0), "{fixture} failed natively:\n{nout}\nstderr:\n{}", n.stderr);
        assert!(nout.ends_with("done\n"), "{fixture} did not finish natively:\n{nout}\nstderr:\n{}", n.stderr);
        (nout, c.stderr)
    }
}

impl Diff {
    /// Every decompressed file in the store's cache still has its digest's content: the
    /// program's writes went to private copies, never through a tree link into the cache
    /// (which would change the file for every later run and capsule).
    fn assert_cache_intact(&self, what: &str) {
        let files = walk(&self.env.store().join("cache"));
        assert!(!files.is_empty(), "{what}: nothing was materialised");
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let digest = name.split('-').next().unwrap();
            assert_eq!(b3(&f), digest, "{what}: the cache file {} was written through", f.display());
        }
    }
}

/// `out` with the first run of lines matching `from` (see [`Diff::compare_gaps`]) replaced
/// by `to`; `None` when no run matches.
fn with_gap(out: &str, from: &str, to: &str) -> Option<String> {
    let lines: Vec<&str> = out.lines().collect();
    let pattern: Vec<&str> = from.lines().collect();
    let matches = |l: &str, p: &str| p.strip_suffix('*').map_or(l == p, |prefix| l.starts_with(prefix));
    let at = (0..=lines.len().checked_sub(pattern.len())?)
        .find(|&i| pattern.iter().zip(&lines[i..]).all(|(p, l)| matches(l, p)))?;
    let mut result: Vec<&str> = lines[..at].to_vec();
    result.extend(to.lines());
    result.extend(&lines[at + pattern.len()..]);
    Some(result.iter().map(|l| format!("{l}\n")).collect())
}

/// Assert equal outputs and exit codes, showing a line diff and both sides in full.
fn assert_same(what: &str, native: &str, capsule: &str, n: &Outcome, c: &Outcome) {
    if native == capsule && n.code == c.code {
        return;
    }
    panic!(
        "{what}: native and capsule runs differ\nexit: native {:?}, capsule {:?}\n\
         ---- diff (- native, + capsule) ----\n{}\
         ---- native stdout ----\n{native}---- capsule stdout ----\n{capsule}\
         ---- native stderr ----\n{}---- capsule stderr ----\n{}",
        n.code,
        c.code,
        line_diff(native, capsule),
        n.stderr,
        c.stderr
    );
}

/// The differing lines of `a` and `b` ("- " only in a, "+ " only in b), by longest common
/// subsequence: outputs are a few hundred lines at most.
fn line_diff(a: &str, b: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", a[i]);
            i += 1;
        }
    }
    out
}

fn require_gcc() -> bool {
    has("gcc")
}

#[test]
fn open_family() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = Diff::new().compare("open");
    for line in
        ["open via-link: ok reached through a link|", "openat dirfd link: ok bravo|", "read seed: ok seed|more|"]
    {
        assert!(out.contains(line), "open: no {line:?} in\n{out}");
    }
}

#[test]
fn open_family_fortified() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let bin = fixtures().join("open-fortify");
    let nm = Command::new("nm").arg("-D").arg(&bin).output().expect("nm -D");
    let syms = String::from_utf8_lossy(&nm.stdout);
    for sym in ["__open_2", "__open64_2", "__openat_2"] {
        assert!(
            syms.lines().any(|l| l.split_whitespace().any(|w| w.split('@').next() == Some(sym))),
            "open-fortify does not import {sym}:\n{syms}"
        );
    }
    let fortified = Diff::new().compare("open-fortify");
    // The same program, so the same output as the plain build.
    let d = Diff::new();
    let plain = d.canon(&d.native(&fixtures().join("open")).stdout, d.root.to_str().unwrap());
    assert_eq!(fortified, plain, "the fortified build prints differently from the plain one");
}

#[test]
fn open_family_with_relative_store() {
    // `--store store` relative to the cwd: the shim must still recognise tree paths (it
    // compares them with the absolute paths /proc/self/fd gives for directory descriptors).
    require!(require_gcc(), "no gcc to build fixtures/c");
    let d = Diff::new();
    let bin = fixtures().join("open");
    let n = d.native(&bin);
    let mut c = Command::new(env!("CARGO_BIN_EXE_capsule"));
    c.current_dir(d.env.dir.path()).args([
        "--store",
        "store",
        "run",
        "difftest",
        "--entry",
        bin.to_str().unwrap(),
        "--",
        VROOT,
    ]);
    let c = run(c, d.env.dir.path(), "capsule-relative");
    assert_same(
        "open (relative --store)",
        &d.canon(&n.stdout, d.root.to_str().unwrap()),
        &d.canon(&c.stdout, VROOT),
        &n,
        &c,
    );
}

#[test]
fn stat_family() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = Diff::new().compare("stat");
    for line in [
        "stat via-link: file 0644 size 23",
        "stat hello.txt/: ENOTDIR",
        "stat dirlink/../numbers.dat: file 0644 size 11",
        "realpath dirlink/a.txt: $ROOT/data/nested/a.txt",
    ] {
        assert!(out.contains(line), "stat: no {line:?} in\n{out}");
    }
}

#[test]
fn dir_family() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = Diff::new().compare("dir");
    for line in [
        "list dirlink: a.txt:f b.txt:f deep:d",
        "get_current_dir_name: $ROOT/data/nested/deep",
        "initial getcwd: $CWD\n",
    ] {
        assert!(out.contains(line), "dir: no {line:?} in\n{out}");
    }
}

#[test]
fn exec_family() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = Diff::new().compare("exec");
    for line in [
        "  child vfork: env ",
        "parent after vfork: ok 0123456789|",
        "  child env-i: env 0, exe $ROOT/bin/exec, hello ok hello capsule|",
        "  child env(1): env 0, exe $ROOT/bin/exec, hello ok hello capsule|",
        "  tool: arg1\nalpha\nscript: exit 0",
    ] {
        assert!(out.contains(line), "exec: no {line:?} in\n{out}");
    }
}

#[test]
fn threads_and_signal_handlers() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = Diff::new().compare("threads");
    assert!(out.contains("handler ran: yes\nhandler failures: 0 (first: none)"), "threads:\n{out}");
}

/// A DT_NEEDED library's constructor runs before the preloaded shim's (ld.so initialises
/// dependencies first, and the shim is nobody's dependency), and opens a capsule file. The
/// shim initialises itself on that first call, so the output is the native one:
/// "constructor open: ok hello capsule", "constructor fopen: ok 0123456789" and
/// "constructor stat: dir". (Before, it passed the calls through to the host, where the root
/// does not exist: ENOENT.)
#[test]
fn library_constructor_before_the_shim() {
    require!(require_gcc(), "no gcc to build fixtures/c");
    let out = Diff::new().compare("early_ctor");
    let expect = "constructor open: ok hello capsule\nconstructor fopen: ok 0123456789\nconstructor stat: dir\n";
    assert!(out.starts_with(expect), "early_ctor:\n{out}");
}
