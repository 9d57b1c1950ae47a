//! Issue 18: `capture install --root DIR|minimal`, a clean capture source. The installer runs
//! over a root directory's files (the host hidden) and the capsule holds what it wrote
//! relative to that root, so a package the host already has is captured in full, and the host
//! is untouched. `minimal` is the host release's Debian minbase, bootstrapped once into the
//! store with mmdebstrap and kept there.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, require_or_skip, run_capsule};

#[test]
fn a_root_that_is_missing_or_not_debian_is_refused_by_name() {
    let env = Env::new();
    let missing = env.path("no-such-root");
    let (code, out, err) =
        run_capsule(&env, &["capture", "install", "--root", missing.to_str().unwrap(), "x", "--", "true"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains(&format!("--root {}", missing.display())) && err.contains("cannot open"), "{err}");
    // A directory, but no dpkg database in it.
    let plain = env.path("plain");
    fs::create_dir_all(plain.join("bin")).unwrap();
    let (code, _, err) =
        run_capsule(&env, &["capture", "install", "--root", plain.to_str().unwrap(), "x", "--", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&plain.display().to_string()) && err.contains("not a Debian root"), "{err}");
    // A file.
    let file = env.path("file");
    fs::write(&file, b"x").unwrap();
    let (code, _, err) =
        run_capsule(&env, &["capture", "install", "--root", file.to_str().unwrap(), "x", "--", "true"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&file.display().to_string()) && err.contains("not a directory"), "{err}");
    assert!(!env.store().join("refs/x").exists(), "a capsule was stored");
}

/// Metadata (kind, mode, owner, size, mtime, inode) of every entry below `roots` on the host.
fn host_state(roots: &[&str]) -> BTreeMap<PathBuf, (u32, u32, u32, u64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        let size = if m.is_dir() { 0 } else { m.size() };
        let mtime = if m.is_dir() { 0 } else { m.mtime() };
        out.insert(p.clone(), (m.mode(), m.uid(), m.gid(), size, mtime, m.ino()));
        if m.is_dir() {
            stack.extend(fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
        }
    }
    out
}

fn paths(m: &serde_json::Value) -> Vec<String> {
    m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect()
}

fn packages(m: &serde_json::Value) -> BTreeMap<String, String> {
    m["inventory"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["version"].as_str().unwrap().to_owned()))
        .collect()
}

fn capture(env: &Env, args: &[&str]) -> (i32, String, String) {
    let o = env.cmd(args).env("DEBIAN_FRONTEND", "noninteractive").output().expect("run capsule");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn minimal_root_captures_packages_the_host_has_in_full_and_leaves_the_host_alone() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    require!(has("mmdebstrap"), "mmdebstrap is not installed (apt-get install mmdebstrap)");
    let codename = fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(|v| v.trim_matches('"').to_owned()))
        .unwrap_or_default();
    require!(codename == "bookworm", "a bookworm host (PostgreSQL 15 is bookworm's): this one is {codename:?}");
    // The host has what the captures install (.ci/run installs both), and it stays put.
    let _lock = dpkg_lock();
    if !installed("postgresql-15") || !installed("jq") {
        let o = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "jq", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap();
        require!(o.status.success(), "cannot install jq and postgresql: {}", String::from_utf8_lossy(&o.stderr));
    }
    let watched =
        ["/usr/lib/postgresql", "/usr/bin/jq", "/var/lib/dpkg/status", "/etc/passwd", "/etc/group", "/etc/postgresql"];
    let before = host_state(&watched);
    let pg_status = fs::read("/var/lib/dpkg/status").unwrap();
    let env = Env::new();

    // First use, by two captures at once: the root is bootstrapped once (the other waits for
    // it), which one of them says on stderr.
    let other = env
        .cmd(&["capture", "install", "--root", "minimal", "early", "--", "sh", "-c", "echo early > /opt/early"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, out, err) =
        capture(&env, &["capture", "install", "--root", "minimal", "jqm", "--", "apt-get", "install", "-y", "jq"]);
    let early = other.wait_with_output().unwrap();
    let early_err = String::from_utf8_lossy(&early.stderr).into_owned();
    if code != 0 && (err.contains("must reach the network") || early_err.contains("must reach the network")) {
        require_or_skip(&format!("the minimal root could not be bootstrapped: {err}{early_err}"));
        return;
    }
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(early.status.success(), "{early_err}");
    let bootstrap = format!("bootstrapping minimal {codename} root");
    assert_eq!(err.matches(&bootstrap).count() + early_err.matches(&bootstrap).count(), 1, "{err}\n{early_err}");
    assert!(err.contains("(once)") || early_err.contains("(once)"), "{err}");
    assert_eq!(paths(&env.json(&["inspect", "early"])), ["/opt", "/opt/early"]);
    let leftovers: Vec<_> = fs::read_dir(env.store().join("roots")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(
        !leftovers.iter().any(|n| n.to_string_lossy().starts_with('.')),
        "a temporary root was left: {leftovers:?}"
    );
    let root = env.store().join("roots").join(&codename);
    assert!(
        root.join("var/lib/dpkg/status").is_file() && root.join("usr/bin/apt-get").is_file(),
        "no root in the store"
    );
    assert!(!root.join("usr/bin/jq").exists(), "the installer wrote into the kept root");
    let m = env.json(&["inspect", "jqm"]);
    let files = paths(&m);
    for want in ["/usr/bin/jq", "/usr/share/doc/jq/copyright"] {
        assert!(files.contains(&want.to_owned()), "{want} not captured: {files:?}");
    }
    // jq's library, which minbase lacks, came with it; the root's own files did not.
    assert!(files.iter().any(|f| f.starts_with("/usr/lib/x86_64-linux-gnu/libjq.so.1")), "{files:?}");
    assert!(!files.iter().any(|f| f.contains("libc.so.6") || f == "/usr/bin/dpkg"), "the root was captured: {files:?}");
    let pkgs = packages(&m);
    assert!(pkgs.contains_key("jq") && pkgs.contains_key("libjq1"), "{pkgs:?}");
    let (code, out, err) = run_capsule(&env, &["run", "jqm", "--isolation", "/usr/bin=full", "--", "-n", "6*7"]);
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");

    // Second use: the kept root (and its capsule) again, no bootstrap. The host has
    // PostgreSQL; the capsule holds the whole server all the same.
    let (code, out, err) = capture(
        &env,
        &["capture", "install", "--root", "minimal", "pg", "--", "apt-get", "install", "-y", "postgresql"],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains(&bootstrap), "bootstrapped twice: {err}");
    let m = env.json(&["inspect", "pg"]);
    let files = paths(&m);
    for want in
        ["/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/15/bin/initdb", "/usr/bin/pg_createcluster"]
    {
        assert!(files.contains(&want.to_owned()), "{want} not captured");
    }
    // The postinst made the default cluster (pg_createcluster runs initdb, whose `popen` of
    // `postgres -V` starts /bin/sh through glibc's internal spawn).
    assert!(files.contains(&"/var/lib/postgresql/15/main/PG_VERSION".to_owned()), "no default cluster captured");
    // Its libraries that minbase lacks: libpq5, libicu72, libssl3 (and LLVM's, if present).
    for lib in ["libpq.so.5", "libicuuc.so.72", "libssl.so.3"] {
        assert!(files.iter().any(|f| f.starts_with(&format!("/usr/lib/x86_64-linux-gnu/{lib}"))), "{lib} not captured");
    }
    let pkgs = packages(&m);
    for p in ["postgresql", "postgresql-15", "postgresql-common", "libpq5", "libicu72", "libssl3"] {
        assert!(pkgs.get(p).is_some_and(|v| !v.is_empty()), "{p} not in the inventory: {pkgs:?}");
    }
    // initdb from the capsule, as the capsule's postgres user, into its sandbox.
    let (code, out, err) = run_capsule(
        &env,
        &[
            "run",
            "pg",
            "--user",
            "postgres",
            "--sandbox",
            "pg1",
            "--",
            "/usr/lib/postgresql/15/bin/initdb",
            "-D",
            "/var/lib/postgresql/e2e",
        ],
    );
    assert_eq!(code, 0, "initdb failed:\nstdout:\n{out}\nstderr:\n{err}");
    let version = env.store().join("sandboxes/pg1/root/var/lib/postgresql/e2e/PG_VERSION");
    assert_eq!(fs::read_to_string(&version).unwrap_or_default().trim(), "15", "{}", version.display());
    assert!(!Path::new("/var/lib/postgresql/e2e").exists(), "initdb wrote on the host");

    // Exported, the server runs in bookworm and trixie minbase roots (no PostgreSQL; in
    // trixie, trixie's libraries and glibc, not bookworm's): `check` finds nothing missing,
    // initdb makes a cluster as postgres, the server starts on a port of its own and answers.
    let port = 5500 + std::process::id() % 400;
    for suite in ["bookworm", "trixie"] {
        let root = match crate::exec::minimal_root(suite) {
            Err(why) => {
                require_or_skip(&why);
                continue;
            }
            Ok(r) => r,
        };
        let (inside, _cleanup) = crate::exec::stage_in_root(&env, &root, "capsule-e2e-pgroot", "pg");
        let bin = "/usr/lib/postgresql/15/bin";
        let script = format!(
            "set -e; test ! -e /usr/lib/postgresql; C='{inside}/capsule --store {inside}/store'
             $C -q import {inside}/pg.capsule
             $C check pg
             $C run pg --user postgres -- {bin}/initdb -D /var/lib/postgresql/{suite} >/dev/null
             $C run pg --user postgres -- {bin}/postgres -D /var/lib/postgresql/{suite} -k /tmp -p {port} \
                -c listen_addresses=127.0.0.1 >{inside}/pg.log 2>&1 & p=$!
             for i in $(seq 150); do $C run pg --user postgres -- {bin}/pg_isready -q -h 127.0.0.1 -p {port} && break; sleep 0.2; done
             $C run pg --user postgres -- {bin}/psql -h 127.0.0.1 -p {port} -d postgres -Atc 'select 40 + 2'
             kill $p; wait $p || true"
        );
        let o = crate::exec::in_root(&root, &script).output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let log = fs::read_to_string(root.join(inside.trim_start_matches('/')).join("pg.log")).unwrap_or_default();
        assert!(o.status.success(), "in the {suite} root:\nstdout:\n{out}\nstderr:\n{err}\nserver:\n{log}");
        assert!(out.contains("nothing missing on this host"), "{suite}: {out}");
        assert!(out.trim_end().ends_with("42"), "{suite}: the server did not answer:\n{out}\n{err}\n{log}");
    }

    // The host: not one file changed.
    assert_eq!(fs::read("/var/lib/dpkg/status").unwrap(), pg_status, "dpkg's status changed on the host");
    let after = host_state(&watched);
    let changed: Vec<&PathBuf> = before
        .iter()
        .filter(|(p, s)| after.get(*p) != Some(*s))
        .map(|(p, _)| p)
        .chain(after.keys().filter(|p| !before.contains_key(*p)))
        .collect();
    assert!(changed.is_empty(), "the captures changed the host: {changed:?}");

    // `df` counts the kept root, `gc` keeps it (and its capsule), and a capture after `gc`
    // reuses both; `--root DIR` takes the same directory as a plain root.
    let df = env.json(&["df"]);
    let roots = df["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{df}");
    assert_eq!(roots[0]["release"], codename.as_str(), "{df}");
    assert!(roots[0]["dir_bytes"].as_u64().unwrap() > 50 << 20, "{df}");
    let root_blobs = roots[0]["blobs"].as_u64().unwrap();
    assert!(root_blobs > 1000, "{df}");
    env.ok(&["rm", "jqm"]);
    env.ok(&["gc"]);
    let df = env.json(&["df"]);
    assert_eq!(df["roots"][0]["blobs"].as_u64(), Some(root_blobs), "{df}");
    assert_eq!(df["roots"][0]["stored"], roots[0]["stored"], "gc removed blobs of the kept root: {df}");
    let (code, out, err) =
        capture(&env, &["capture", "install", "--root", "minimal", "opt", "--", "sh", "-c", "echo hi > /opt/hi"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains(&bootstrap), "bootstrapped again after gc: {err}");
    assert_eq!(paths(&env.json(&["inspect", "opt"])), ["/opt", "/opt/hi"]);
    let dir = root.to_str().unwrap();
    let (code, out, err) =
        capture(&env, &["capture", "install", "--root", dir, "opt2", "--", "sh", "-c", "echo hi > /opt/hi2"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(paths(&env.json(&["inspect", "opt2"])), ["/opt", "/opt/hi2"]);
    assert!(!Path::new("/opt/hi").exists() && !Path::new("/opt/hi2").exists(), "the installer wrote on the host");
}

#[test]
fn a_failed_bootstrap_says_it_needs_the_network_and_keeps_nothing() {
    let debian = fs::read_to_string("/etc/os-release").is_ok_and(|t| t.lines().any(|l| l == "ID=debian"));
    require!(debian, "a Debian host (a minimal root is the host release's Debian minbase)");
    let env = Env::new();
    // An mmdebstrap that cannot reach the archive, first on PATH.
    let bin = env.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("mmdebstrap");
    fs::write(&fake, "#!/bin/sh\necho 'E: Temporary failure resolving the archive' >&2\nmkdir -p \"$4\"/usr\nexit 1\n")
        .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let o =
        env.cmd(&["capture", "install", "--root", "minimal", "x", "--", "true"]).env("PATH", &path).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("with mmdebstrap failed") && err.contains("must reach the network"), "{err}");
    assert!(err.contains("Temporary failure resolving the archive"), "mmdebstrap's own error is not shown: {err}");
    let left: Vec<_> = fs::read_dir(env.store().join("roots")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.iter().all(|n| n.to_string_lossy().ends_with(".lock")), "a failed bootstrap left {left:?}");
    assert!(!env.store().join("refs/x").exists(), "a capsule was stored");
    // What a killed bootstrap leaves, `gc` removes; a live one's it keeps.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = env.store().join(format!("roots/.bookworm.{dead}"));
    let live = env.store().join(format!("roots/.bookworm.{}", std::process::id()));
    for d in [&stale, &live] {
        fs::create_dir_all(d.join("usr/bin")).unwrap();
    }
    env.ok(&["gc"]);
    assert!(!stale.exists() && live.exists(), "gc: stale {}, live {}", stale.exists(), live.exists());
    fs::remove_dir_all(&live).unwrap();
}
