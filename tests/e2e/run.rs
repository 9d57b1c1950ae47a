//! Issue 3: running capsules through the LD_PRELOAD shim — the demo, a Python package that
//! exists only in its capsule, and where writes land under each isolation mode.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::require;
use crate::support::{Env, dpkg_lock, has, is_root, run_capsule};

#[test]
fn demo_runs_from_its_capsule() {
    require!(has("cc") || has("gcc"), "no C compiler to build the demo application");
    let env = Env::new();
    env.ok(&["-q", "demo"]);
    let (code, out, err) = run_capsule(&env, &["run", "capsule-demo"]);
    assert_eq!(code, 0, "{err}");
    // /etc/capsule-demo.conf, the data directory and the library exist only in the capsule.
    assert!(!Path::new("/etc/capsule-demo.conf").exists());
    for line in [
        "config.color: teal",
        "data: readme.txt 127",
        "library: libcapsuledemo 1.0",
        "exe: /usr/bin/capsule-demo",
        "\nok",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // Exit codes: the program's own, or docker's for capsule's failures.
    let (code, _, _) = run_capsule(&env, &["run", "capsule-demo", "--", "--bogus-flag"]);
    assert_eq!(code, 2, "the demo exits 2 on bad arguments");
    let (code, _, err) = run_capsule(&env, &["run", "capsule-demo", "--entry", "/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    let (code, _, _) = run_capsule(&env, &["run", "no-such-capsule"]);
    assert_eq!(code, 125);
}

/// A capsule of a small tree under /opt/app (which the host does not have).
fn app_capsule(env: &Env) {
    env.small_capsule("app", &[("opt/app/data.txt", b"original\n"), ("opt/app/sub/keep.txt", b"keep\n")]);
}

fn sh(env: &Env, extra: &[&str], script: &str) -> String {
    let mut args = vec!["run", "app"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--entry", "/bin/sh", "--", "-c", script]);
    let (code, out, err) = run_capsule(env, &args);
    assert_eq!(code, 0, "sh -c {script:?} failed: {err}");
    out
}

#[test]
fn capsule_files_are_write_copy_and_the_sandbox_persists() {
    let env = Env::new();
    app_capsule(&env);
    assert!(!Path::new("/opt/app").exists(), "the host must not have /opt/app for this test");
    let out = sh(
        &env,
        &[],
        "cat /opt/app/data.txt; echo changed > /opt/app/data.txt; echo new > /opt/app/new.txt; rm /opt/app/sub/keep.txt; ls /opt/app /opt/app/sub",
    );
    assert_eq!(out, "original\n/opt/app:\ndata.txt\nnew.txt\nsub\n\n/opt/app/sub:\n");
    assert!(!Path::new("/opt/app").exists(), "a capsule write reached the host");
    // A second run sees the sandbox.
    assert_eq!(sh(&env, &[], "cat /opt/app/data.txt /opt/app/new.txt; ls /opt/app/sub"), "changed\nnew\n");
    let diff = env.json(&["sandbox", "app", "diff"]);
    assert_eq!(diff["modified"], serde_json::json!(["/opt/app/data.txt"]));
    assert_eq!(diff["added"], serde_json::json!(["/opt/app/new.txt"]));
    assert_eq!(diff["deleted"], serde_json::json!(["/opt/app/sub/keep.txt"]));
    // The cache the capsule shares with others was not written through.
    assert_eq!(env.json(&["verify"])["ok"], true);
    // `sandbox commit`: a new capsule of the capsule, its changes and its registry layer.
    env.ok(&["config", "app", "set", "user/env/COMMITTED", "yes"]);
    env.ok(&["config", "app", "set", "machine/identity/hostname", "committed-host"]);
    let committed = env.json(&["sandbox", "app", "commit", "app2:v1"]);
    assert_eq!(committed["capsule"], "app2:v1");
    let files: Vec<String> = env.json(&["inspect", "app2:v1"])["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "file")
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files, ["/opt/app/data.txt", "/opt/app/new.txt"], "kept, changed and added files; not the deleted one");
    let script = "cat /opt/app/data.txt /opt/app/new.txt; ls /opt/app/sub; echo $COMMITTED; hostname";
    let (code, out, err) = run_capsule(&env, &["run", "app2:v1", "--entry", "/bin/sh", "--", "-c", script]);
    assert_eq!((code, out.as_str()), (0, "changed\nnew\nyes\ncommitted-host\n"), "{err}");
    env.ok(&["-q", "sandbox", "app", "reset"]);
    assert_eq!(sh(&env, &[], "cat /opt/app/data.txt; ls /opt/app/sub"), "original\nkeep.txt\n");
}

#[test]
fn merged_writecopy_and_full_on_a_host_directory() {
    let env = Env::new();
    app_capsule(&env);
    let host = env.path("hostside");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("existing.txt"), "host\n").unwrap();
    let h = host.to_str().unwrap();

    // merged: writes outside the capsule go to the host.
    let merged = format!("{h}=merged");
    sh(&env, &["--isolation", &merged], &format!("echo merged > {h}/merged.txt"));
    assert_eq!(std::fs::read_to_string(host.join("merged.txt")).unwrap(), "merged\n");

    // writecopy: the host stays as it was; the capsule sees its own version, across runs.
    let wc = format!("{h}=writecopy");
    let out = sh(
        &env,
        &["--isolation", &wc],
        &format!("cat {h}/existing.txt; echo copy > {h}/existing.txt; echo fresh > {h}/wc.txt; cat {h}/existing.txt"),
    );
    assert_eq!(out, "host\ncopy\n");
    assert_eq!(std::fs::read_to_string(host.join("existing.txt")).unwrap(), "host\n");
    assert!(!host.join("wc.txt").exists());
    assert_eq!(sh(&env, &["--isolation", &wc], &format!("cat {h}/existing.txt {h}/wc.txt")), "copy\nfresh\n");
    env.ok(&["-q", "sandbox", "app", "reset"]);
    assert_eq!(sh(&env, &["--isolation", &wc], &format!("cat {h}/existing.txt")), "host\n");

    // full: the host is invisible below the prefix.
    let full = format!("{h}=full");
    let out = sh(
        &env,
        &["--isolation", &full],
        &format!(
            "ls -A {h}; cat {h}/existing.txt 2>/dev/null || echo hidden; echo mine > {h}/only-here.txt; ls -A {h}"
        ),
    );
    assert_eq!(out, "hidden\nonly-here.txt\n");
    assert!(!host.join("only-here.txt").exists());
}

/// A directory both the capsule and the host have is listed merged (the host's entries, the
/// capsule's, the sandbox's) whichever way a program lists it: `ls` (opendir), `find` (gnulib
/// fts: openat, then fdopendir), Python's `os.listdir` of a descriptor (fdopendir) and
/// `os.scandir` (opendir).
#[test]
fn listings_of_a_directory_the_host_has_too_are_merged() {
    let env = Env::new();
    let dir = "/usr/share/doc";
    assert!(!Path::new(dir).join("capsule-merge-test").exists());
    env.small_capsule("m", &[("usr/share/doc/capsule-merge-test/readme", b"r\n")]);
    let mut want: BTreeSet<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    want.insert("capsule-merge-test".into());
    want.insert("zz-capsule-sandbox-file".into());
    let script = format!(
        "touch {dir}/zz-capsule-sandbox-file && ls -A {dir} && echo -- && find {dir} -mindepth 1 -maxdepth 1 -printf '%f\\n' \\
         && echo -- && /usr/bin/python3 -c 'import os; print(*os.listdir(os.open(\"{dir}\", os.O_RDONLY)), sep=\"\\n\"); \\
         print(\"--\"); print(*(e.name for e in os.scandir(\"{dir}\")), sep=\"\\n\")'"
    );
    // /usr is merged by default (a new name there would go to the host): write-copy here.
    let args = ["run", "m", "--isolation", "/usr=writecopy", "--entry", "/bin/sh", "--", "-c", &script];
    let (code, out, err) = run_capsule(&env, &args);
    assert_eq!(code, 0, "{err}");
    let sections: Vec<BTreeSet<String>> = out.split("--\n").map(|s| s.lines().map(str::to_owned).collect()).collect();
    assert_eq!(sections.len(), 4, "{out}");
    for (how, got) in ["ls", "find", "os.listdir(fd)", "os.scandir"].iter().zip(&sections) {
        assert_eq!(
            got,
            &want,
            "{how}: missing {:?}, extra {:?}",
            want.difference(got).collect::<Vec<_>>(),
            got.difference(&want).collect::<Vec<_>>()
        );
    }
    assert!(!Path::new(dir).join("zz-capsule-sandbox-file").exists(), "the new file reached the host");
    // A capsule-only directory opened without O_DIRECTORY, then listed by descriptor, in a
    // fresh sandbox (nothing linked yet): its files are linked before the listing.
    let py = "import os; print(os.listdir(os.open('/usr/share/doc/capsule-merge-test', os.O_RDONLY)))";
    let args = ["run", "m", "--sandbox", "fresh", "--entry", "/usr/bin/python3", "--", "-c", py];
    let (code, out, err) = run_capsule(&env, &args);
    assert_eq!((code, out.as_str()), (0, "['readme']\n"), "{err}");
}

/// Packages installed by `apt-get install PKG` here: what it would install, from a simulation.
fn would_install(pkg: &str) -> Vec<String> {
    let o = Command::new("apt-get").args(["-s", "install", "--no-install-recommends", pkg]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Inst ")?.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn apt(args: &[&str]) -> std::process::Output {
    Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").output().expect("apt-get")
}

/// Purges `pkgs` on drop (they were not installed before the test).
struct Purge(Vec<String>);

impl Drop for Purge {
    fn drop(&mut self) {
        let mut args = vec!["purge", "-y"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = apt(&args);
    }
}

#[test]
fn python_package_imports_from_its_capsule_only() {
    require!(
        is_root() && has("apt-get") && Path::new("/usr/bin/python3").exists(),
        "needs root, apt-get and /usr/bin/python3"
    );
    let _lock = dpkg_lock();
    let installed = String::from_utf8_lossy(
        &Command::new("dpkg-query").args(["-W", "-f", "${Status}", "python3-requests"]).output().unwrap().stdout,
    )
    .contains("ok installed");
    require!(!installed, "python3-requests is installed on the host already; the test needs a host without it");
    let pkgs = would_install("python3-requests");
    require!(pkgs.iter().any(|p| p == "python3-requests"), "apt cannot install python3-requests (no package lists?)");
    let env = Env::new();
    env.ok(&["-q", "capture", "snapshot", "begin", "--roots", "/usr"]);
    let _purge = Purge(pkgs.clone());
    let o = apt(&["install", "-y", "--no-install-recommends", "python3-requests"]);
    assert!(o.status.success(), "install failed: {}", String::from_utf8_lossy(&o.stderr));
    env.ok(&["-q", "capture", "snapshot", "end", "requests"]);
    let mut args = vec!["purge", "-y"];
    args.extend(pkgs.iter().map(String::as_str));
    assert!(apt(&args).status.success());

    let host = Command::new("/usr/bin/python3").args(["-c", "import requests"]).output().unwrap();
    assert!(!host.status.success(), "the host still imports requests");
    let script = "import requests, urllib3, idna; print(requests.__version__, requests.__file__)";
    let (code, out, err) = run_capsule(&env, &["run", "requests", "--entry", "/usr/bin/python3", "--", "-c", script]);
    assert_eq!(code, 0, "import inside the capsule failed: {err}");
    assert!(out.contains("/usr/lib/python3/dist-packages/requests/__init__.py"), "{out}");
    let files: BTreeSet<String> = env.json(&["inspect", "requests"])["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert!(files.contains("/usr/lib/python3/dist-packages/requests/__init__.py"));
}

#[test]
fn sigterm_to_capsule_run_reaches_the_program() {
    let env = Env::new();
    env.small_capsule("sig", &[("opt/sig/x", b"x\n")]);
    let mut child = env
        .cmd(&[
            "run",
            "sig",
            "--entry",
            "/bin/sh",
            "--",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap(); // "ready\n": the trap is set
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(7), "got TERM\n"));
}

/// A program that neither handles nor unblocks SIGTERM (`sleep`) starts with no signal
/// blocked, whatever capsule itself does with signals while it waits, and a `kill` of
/// `capsule run` ends it: capsule returns 128 + 15.
#[test]
fn a_program_starts_with_no_signal_blocked_and_dies_of_a_forwarded_term() {
    let env = Env::new();
    env.small_capsule("sig2", &[("opt/sig/x", b"x\n")]);
    let (code, out, err) =
        run_capsule(&env, &["run", "sig2", "--entry", "/bin/grep", "--", "^SigBlk", "/proc/self/status"]);
    assert_eq!((code, out.as_str()), (0, "SigBlk:\t0000000000000000\n"), "{err}");
    let mut child = env.cmd(&["run", "sig2", "--entry", "/bin/sleep", "--", "30"]).spawn().unwrap();
    // Bounded wait until sleep runs (a child of the run's keeper, capsule's child, whose name
    // is sleep).
    let children = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let started = std::time::Instant::now();
    let running = loop {
        let keepers = children(&child.id().to_string());
        let pids: Vec<String> = keepers
            .split_whitespace()
            .flat_map(|k| children(k).split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let is_sleep = |p: &String| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n");
        if pids.iter().any(is_sleep) {
            break true;
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(running, "sleep did not start within 20 s");
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
}

/// The materialiser requests a run made, from `--stats`.
fn requests(stderr: &str) -> u64 {
    let n = stderr.split("materialiser: ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("no materialiser count in {stderr:?}"))
}

/// A capsule directory listed once is complete in the sandbox: later runs list it without a
/// materialiser request (the view marks it), a file deleted since stays deleted, and after
/// `sandbox reset` the first listing asks again and is complete again.
#[test]
fn a_listed_directory_needs_no_materialiser_request_in_later_runs() {
    let env = Env::new();
    env.small_capsule("lst", &[("opt/lst/a", b"a\n"), ("opt/lst/b", b"b\n"), ("opt/lst/sub/c", b"c\n")]);
    let ls = ["run", "lst", "--stats", "--entry", "/bin/ls", "--", "/opt/lst"];
    let (code, out, err) = run_capsule(&env, &ls);
    assert_eq!((code, out.as_str()), (0, "a\nb\nsub\n"), "{err}");
    assert!(requests(&err) >= 1, "{err}");
    let (code, out, err) = run_capsule(&env, &ls);
    assert_eq!((code, out.as_str(), requests(&err)), (0, "a\nb\nsub\n", 0), "{err}");
    let (code, _, err) = run_capsule(&env, &["run", "lst", "--entry", "/bin/rm", "--", "/opt/lst/a"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_capsule(&env, &ls);
    assert_eq!((code, out.as_str(), requests(&err)), (0, "b\nsub\n", 0), "{err}");
    env.ok(&["-q", "sandbox", "lst", "reset"]);
    let (code, out, err) = run_capsule(&env, &ls);
    assert_eq!((code, out.as_str()), (0, "a\nb\nsub\n"), "{err}");
    assert!(requests(&err) >= 1, "{err}");
}

/// Issue 16, done-when 5: 50 first runs of a fresh capsule at once all succeed, 20 rounds in a
/// row (the sandbox skeleton, its symlinks and its stamp are built once, under a lock; before,
/// a run failed with EEXIST or dropped another run's links).
#[test]
fn fifty_first_runs_at_once_all_succeed() {
    for round in 0..20 {
        let env = Env::new();
        let host = env.path("host");
        std::fs::create_dir_all(host.join("opt/many")).unwrap();
        let base = host.to_str().unwrap();
        env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/opt"]);
        std::fs::write(host.join("opt/many/data"), "d\n").unwrap();
        for i in 0..40 {
            std::os::unix::fs::symlink("data", host.join(format!("opt/many/link{i}"))).unwrap();
        }
        env.ok(&["-q", "capture", "snapshot", "end", "many"]);
        let runs: Vec<_> = (0..50)
            .map(|_| {
                env.cmd(&["run", "many", "--entry", "/bin/cat", "--", "/opt/many/link39"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in runs {
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success() && o.stdout == b"d\n",
                "round {round}: {:?} {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}
