//! Shared helpers: a temporary store per test, running `capsule`, skips, the dpkg lock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Skip (or, under `CAPSULE_REQUIRE_ALL=1`, fail) when `cond` is false.
#[macro_export]
macro_rules! require {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            let why = format!($($why)+);
            if $crate::support::required() {
                panic!("required by CAPSULE_REQUIRE_ALL=1 but missing: {why}");
            }
            $crate::support::skip(&why);
            return;
        }
    };
}

/// Print a skip where a person sees it: straight to fd 2, past the test harness's capture.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIP {why}");
}

/// A skip in the middle of a test (the rest of it still runs), or a failure under
/// `CAPSULE_REQUIRE_ALL=1`.
pub fn require_or_skip(why: &str) {
    assert!(!required(), "required by CAPSULE_REQUIRE_ALL=1 but missing: {why}");
    skip(why);
}

/// Whether skips are failures.
pub fn required() -> bool {
    std::env::var("CAPSULE_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Whether we are root (apt, dpkg).
pub fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    // /proc/self/status avoids an unsafe getuid() in a forbid(unsafe) crate.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// Whether `prog` is on PATH.
pub fn has(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether dpkg reports `pkg` installed on the host.
pub fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Serialises tests that run dpkg or apt (dpkg has one lock) or that need packages to stay
/// put while they read them: machine-wide (one dpkg per machine), the same file the
/// compatibility corpus (tests/compat/run.sh) and other checkouts' tests take.
pub fn dpkg_lock() -> File {
    let path = Path::new("/tmp/apt.lock");
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(path).expect("open dpkg lock");
    f.lock().expect("take dpkg lock");
    f
}

/// A temporary store and a scratch directory, removed when dropped.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::Builder::new().prefix("capsule-e2e-").tempdir().expect("tempdir") }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `capsule --store STORE ARGS...`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_capsule"));
        c.arg("--store").arg(self.store()).args(args);
        c.env_remove("CAPSULE_DEBUG_INDEX_HOLD_MS");
        c
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args).output().expect("run capsule");
        assert!(o.status.success(), "capsule {args:?} failed ({}):\n{}", o.status, String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8 stdout")
    }

    /// Run and require failure; returns the output.
    pub fn fails(&self, args: &[&str]) -> Output {
        let o = self.cmd(args).output().expect("run capsule");
        assert!(!o.status.success(), "capsule {args:?} should have failed:\n{}", String::from_utf8_lossy(&o.stdout));
        o
    }

    /// Parsed `--json` output of a successful run.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("json output")
    }

    /// `list --json` and `verify --json` and the set of blob files: the store's observable state.
    pub fn state(&self) -> (serde_json::Value, serde_json::Value, Vec<PathBuf>) {
        let list = self.json(&["list"]);
        let o = self.cmd(&["--json", "verify"]).output().expect("verify");
        let verify: serde_json::Value = serde_json::from_slice(&o.stdout).expect("verify json");
        let mut blobs: Vec<PathBuf> = walk(&self.store().join("blobs"));
        blobs.sort();
        (list, verify, blobs)
    }

    /// A small application tree under `host/` captured as capsule `name` by snapshot diff
    /// with `--base`, so it needs neither root nor packages.
    pub fn small_capsule(&self, name: &str, files: &[(&str, &[u8])]) {
        let host = self.path(&format!("host-{name}"));
        std::fs::create_dir_all(&host).unwrap();
        let base = host.to_str().unwrap();
        self.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/usr,/etc,/opt"]);
        for (rel, content) in files {
            let p = host.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        self.ok(&["-q", "capture", "snapshot", "end", name]);
    }
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// blake3 of a host file, as hex.
pub fn b3(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))).to_hex().to_string()
}

/// Run `cmd` with `input` on its stdin; its output.
pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Run `capsule ARGS...` and return (exit code, stdout, stderr).
pub fn run_capsule(env: &Env, args: &[&str]) -> (i32, String, String) {
    let o = env.cmd(args).output().expect("run capsule");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Stop a `capsule run` child by its PID: SIGTERM (which `capsule run` forwards to the
/// program), up to 10 s for it to exit, then SIGKILL; reaped either way.
pub fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.wait();
}
