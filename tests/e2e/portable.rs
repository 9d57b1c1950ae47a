//! Portable capsules: captured on this host with the default base (`minimal`), exported, and
//! run in minimal Debian roots (bookworm and trixie minbase, made with mmdebstrap and entered
//! with chroot in a mount namespace of the test's own) that lack what this host had: a
//! python3 app captured by snapshot diff while python3 stays on the host, redis-server
//! captured by `capture install` on a host that has its libraries, and jq by snapshot diff.
//! `check` finds nothing missing for them there, and names the library a `--base host`
//! capsule lacks.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::exec::{in_root, minimal_root, stage_in_root};
use crate::support::{Env, dpkg_lock, has, installed, is_root};

/// The roots, built once per machine; `None` (after a skip) when they cannot be.
fn roots() -> Option<Vec<(&'static str, PathBuf)>> {
    if !(is_root() && has("unshare") && has("chroot") && has("mmdebstrap")) {
        crate::support::require_or_skip("needs root, unshare, chroot and mmdebstrap (apt-get install mmdebstrap)");
        return None;
    }
    let mut out = Vec::new();
    for suite in ["bookworm", "trixie"] {
        match minimal_root(suite) {
            Ok(r) => out.push((suite, r)),
            Err(why) => {
                crate::support::require_or_skip(&why);
                return None;
            }
        }
    }
    Some(out)
}

/// `apt-get ARGS` on the host, non-interactive; the caller holds [`dpkg_lock`].
fn apt(args: &[&str]) -> Output {
    let o = Command::new("apt-get")
        .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("apt-get");
    assert!(o.status.success(), "apt-get {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Import capsule `name` (exported from `env`) inside `root`, then run `script` there with
/// `$C` the capsule command on the root's own store: stdout, stderr, success.
fn in_minimal_root(env: &Env, root: &Path, name: &str, script: &str) -> (String, String, bool) {
    let (inside, _cleanup) = stage_in_root(env, root, &format!("portable-{name}"), name);
    let c = format!("{inside}/capsule --store {inside}/store");
    let script = format!("C='{c}'; $C -q import {inside}/{name}.capsule || exit 97\n{script}");
    let o = in_root(root, &script).output().expect("chroot");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (text(&o.stdout), text(&o.stderr), o.status.success())
}

#[test]
fn python_app_captured_by_snapshot_runs_in_minimal_roots() {
    let Some(roots) = roots() else { return };
    let env = Env::new();
    let app = format!("/usr/local/bin/capsule-e2e-reqapp-{}", std::process::id());
    let out = {
        // The snapshot sees every package change on the host: nobody else's apt in between.
        let _lock = dpkg_lock();
        if !installed("python3") {
            apt(&["install", "--no-install-recommends", "python3"]);
        }
        let had = installed("python3-requests");
        if had {
            apt(&["purge", "python3-requests"]);
        }
        env.ok(&["-q", "capture", "snapshot", "begin"]);
        apt(&["install", "--no-install-recommends", "python3-requests"]);
        let script = "#!/usr/bin/python3\nimport json, requests, sys\nprint('requests', requests.__version__, json.dumps({'ok': True}), sys.version_info[0])\n";
        fs::write(&app, script).unwrap();
        fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
        let out = env.cmd(&["capture", "snapshot", "end", "pyapp", "--entry", &app]).output().unwrap();
        let _ = fs::remove_file(&app);
        if !had {
            apt(&["purge", "python3-requests"]);
        }
        out
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "snapshot end: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("base minimal:") && text.contains("packages and"), "no closure reported: {text}");
    // python3 itself came in with the closure: it was on the host, not in the snapshot.
    let inv = env.json(&["inspect", "pyapp"]);
    let pkgs: Vec<&str> =
        inv["inventory"]["packages"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    for p in ["python3-requests", "python3", "python3.11", "libpython3.11-stdlib"] {
        assert!(pkgs.contains(&p), "{p} is not in the inventory: {pkgs:?}");
    }
    assert!(!pkgs.contains(&"libc6"), "glibc is the base's, not the capsule's: {pkgs:?}");
    assert_eq!(inv["base"]["kind"], "minimal");
    for (suite, root) in &roots {
        let (stdout, stderr, ok) = in_minimal_root(&env, root, "pyapp", "$C check pyapp && $C run pyapp");
        assert!(ok, "{suite}: {stdout}{stderr}");
        assert!(stdout.contains("nothing missing"), "{suite}: {stdout}");
        assert!(stdout.contains("requests 2.") && stdout.contains("{\"ok\": true} 3"), "{suite}: {stdout}{stderr}");
        // The root has no python3 of its own: the capsule brought it.
        assert!(!root.join("usr/bin/python3").exists(), "{suite} root has python3");
    }
}

#[test]
fn redis_captured_by_install_runs_in_minimal_roots_and_a_host_base_capsule_is_checked() {
    let Some(roots) = roots() else { return };
    let env = Env::new();
    let install = ["--", "apt-get", "install", "-y", "--no-install-recommends", "redis-server"];
    {
        let _lock = dpkg_lock();
        let had: Vec<&str> = ["redis-server", "redis-tools"].into_iter().filter(|p| installed(p)).collect();
        if !had.is_empty() {
            apt(&[&["purge"][..], &had].concat());
        }
        // The host has redis's libraries (libatomic1 is what a minbase root lacks).
        let libs = ["libatomic1", "libjemalloc2", "liblzf1"];
        let added: Vec<&str> = libs.into_iter().filter(|p| !installed(p)).collect();
        apt(&[&["install", "--no-install-recommends"][..], &libs].concat());
        for (name, base) in [("redis", "minimal"), ("redishost", "host"), ("redisnone", "none")] {
            let args = [&["-q", "capture", "install", name, "--base", base][..], &install].concat();
            let o = env.cmd(&args).output().unwrap();
            assert!(o.status.success(), "capture --base {base}: {}", String::from_utf8_lossy(&o.stderr));
        }
        if !had.is_empty() {
            apt(&[&["install", "--no-install-recommends"][..], &had].concat());
        }
        if !added.is_empty() {
            apt(&[&["purge"][..], &added].concat());
        }
    }
    let port = 6300 + std::process::id() % 600;
    let serve = format!(
        "$C run CAP redis-server --bind 127.0.0.1 --port {port} --save '' >/dev/null & p=$!
         for i in $(seq 50); do $C run CAP redis-cli -p {port} ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
         $C run CAP redis-cli -p {port} set k portable >/dev/null; $C run CAP redis-cli -p {port} get k
         kill $p; wait $p"
    );
    for (suite, root) in &roots {
        for cap in ["redis", "redisnone"] {
            let script = format!("$C check {cap} && {}", serve.replace("CAP", cap));
            let (stdout, stderr, ok) = in_minimal_root(&env, root, cap, &script);
            assert!(ok, "{suite} {cap}: {stdout}{stderr}");
            assert!(stdout.contains("nothing missing"), "{suite} {cap}: {stdout}");
            assert!(stdout.contains("portable"), "{suite} {cap}: redis did not answer: {stdout}{stderr}");
        }
        // Captured against this host, it lacks what the root lacks, and check says which.
        let (stdout, stderr, ok) = in_minimal_root(&env, root, "redishost", "$C check redishost");
        assert!(!ok, "{suite}: check passed a --base host capsule: {stdout}");
        assert!(stdout.contains("needs libatomic.so.1"), "{suite}: {stdout}{stderr}");
    }
    // Sizes: the host base holds the least, none the most.
    let size = |n: &str| env.json(&["inspect", n])["size"].as_u64().unwrap_or(0);
    assert!(size("redishost") < size("redis") && size("redis") < size("redisnone"), "sizes out of order");
}

#[test]
fn jq_captured_by_snapshot_after_a_purge_runs_in_minimal_roots() {
    let Some(roots) = roots() else { return };
    let env = Env::new();
    {
        let _lock = dpkg_lock();
        let had = installed("jq");
        apt(&["purge", "jq", "libjq1", "libonig5"]);
        env.ok(&["-q", "capture", "snapshot", "begin"]);
        apt(&["install", "--no-install-recommends", "jq"]);
        let o = env.cmd(&["-q", "capture", "snapshot", "end", "jqsnap", "--entry", "/usr/bin/jq"]).output().unwrap();
        if !had {
            apt(&["purge", "jq", "libjq1", "libonig5"]);
        }
        assert!(o.status.success(), "snapshot end: {}", String::from_utf8_lossy(&o.stderr));
    }
    for (suite, root) in &roots {
        let (stdout, stderr, ok) = in_minimal_root(
            &env,
            root,
            "jqsnap",
            "$C check jqsnap && echo '{\"a\":[1,2]}' | $C run jqsnap -- -c '.a|add'",
        );
        assert!(ok, "{suite}: {stdout}{stderr}");
        assert!(stdout.contains("nothing missing") && stdout.ends_with("3\n"), "{suite}: {stdout}{stderr}");
    }
}

/// A perl program (cowsay) captured by `capture install`: its `#!/usr/bin/perl` is perl-base,
/// a base package, but `perl` depends on that exact version, so the capsule carries it; in
/// trixie (perl 5.40, whose @INC has no 5.36 modules) it runs with its own perl.
#[test]
fn a_perl_program_runs_with_the_perl_its_modules_were_built_for() {
    let Some(roots) = roots() else { return };
    let env = Env::new();
    {
        let _lock = dpkg_lock();
        let had = installed("cowsay");
        if had {
            apt(&["purge", "cowsay"]);
        }
        let args =
            ["-q", "capture", "install", "cow", "--", "apt-get", "install", "-y", "--no-install-recommends", "cowsay"];
        let o = env.cmd(&args).output().unwrap();
        if had {
            apt(&["install", "--no-install-recommends", "cowsay"]);
        }
        assert!(o.status.success(), "capture install cowsay: {}", String::from_utf8_lossy(&o.stderr));
    }
    let inv = env.json(&["inspect", "cow"]);
    let pkgs: Vec<&str> =
        inv["inventory"]["packages"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(pkgs.contains(&"perl-base") && pkgs.contains(&"perl"), "{pkgs:?}");
    for (suite, root) in &roots {
        let (stdout, stderr, ok) = in_minimal_root(&env, root, "cow", "$C check cow && $C run cow cowsay moo");
        assert!(ok, "{suite}: {stdout}{stderr}");
        assert!(stdout.contains("< moo >") && stdout.contains("(oo)"), "{suite}: {stdout}{stderr}");
    }
}
