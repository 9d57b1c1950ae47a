//! Done-when 5 and 6: the index is a rebuildable cache; damage is reported by digest with the
//! capsules using it; concurrent `list` during a commit; kill -9 in the middle of an import.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::Env;

fn two_capsules() -> Env {
    let env = Env::new();
    env.small_capsule("one", &[("usr/bin/one", b"one\n"), ("usr/lib/shared.so", b"shared library bytes\n")]);
    env.small_capsule("two:v2", &[("usr/bin/two", b"two\n"), ("usr/lib/shared.so", b"shared library bytes\n")]);
    env
}

#[test]
fn deleted_index_is_rebuilt_by_verify_repair() {
    let env = two_capsules();
    let before = env.ok(&["list"]);
    assert!(before.contains("one") && before.contains("two") && before.contains("v2"), "{before}");
    std::fs::remove_dir_all(env.store().join("index")).unwrap();
    let out = env.cmd(&["verify", "--repair"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("index rebuilt (2 capsules)"));
    assert_eq!(env.ok(&["list"]), before);
}

#[test]
fn damaged_index_is_named_and_repaired() {
    let env = two_capsules();
    let before = env.ok(&["list"]);
    // Overwrite every file sled keeps with garbage.
    for f in crate::support::walk(&env.store().join("index")) {
        std::fs::write(&f, vec![0xa5u8; 4096]).unwrap();
    }
    let o = env.fails(&["list"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("index") && err.contains("verify --repair"), "{err}");
    env.ok(&["-q", "verify", "--repair"]);
    assert_eq!(env.ok(&["list"]), before);
}

#[test]
fn flipped_blob_byte_names_digest_and_users() {
    let env = two_capsules();
    let shared = blake3::hash(b"shared library bytes\n").to_hex().to_string();
    let path = env.store().join("blobs").join(&shared[..2]).join(&shared);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01; // inside the compressed content
    std::fs::write(&path, &bytes).unwrap();
    let o = env.fails(&["verify"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&shared), "verify does not name the blob: {err}");
    assert!(err.contains("one:latest") && err.contains("two:v2"), "verify does not name the users: {err}");
    // Checking only one capsule names it as well.
    let o = env.fails(&["verify", "one"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&shared));
    // The JSON report carries the same facts.
    let o = env.cmd(&["--json", "verify"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["digest"], shared.as_str());
    assert_eq!(v["problems"][0]["used_by"], serde_json::json!(["one:latest", "two:v2"]));
}

#[test]
fn ten_lists_during_a_commit_all_succeed() {
    let env = Env::new();
    let host = env.path("host");
    std::fs::create_dir_all(&host).unwrap();
    env.small_capsule("before", &[("usr/bin/x", b"x")]);
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", host.to_str().unwrap(), "--roots", "/usr"]);
    for i in 0..300 {
        let p = host.join(format!("usr/share/many/f{i}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("file {i}\n")).unwrap();
    }
    // The committing process holds the index for 1.5 s once it gets it.
    let mut capture = env.cmd(&["-q", "capture", "snapshot", "end", "busy"]);
    capture.env("CAPSULE_DEBUG_INDEX_HOLD_MS", "1500").stdout(Stdio::null());
    let mut capture = capture.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let lists: Vec<_> =
        (0..10).map(|_| env.cmd(&["list"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    assert!(
        capture.try_wait().unwrap().is_none(),
        "the capture finished before the lists started; the test proves nothing"
    );
    for l in lists {
        let o = l.wait_with_output().unwrap();
        assert!(o.status.success(), "a list failed: {}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("before"), "{text}");
    }
    assert!(capture.wait().unwrap().success());
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(env.ok(&["list"]).contains("busy"));
}

#[test]
fn kill_9_during_import_loses_nothing() {
    let source = Env::new();
    let big: Vec<u8> = (0..2_000_000u32).flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes()).collect();
    source.small_capsule("big", &[("usr/share/big.bin", &big), ("usr/bin/big", b"big\n")]);
    let env = two_capsules();
    let file = env.path("big.capsule");
    source.ok(&["-q", "export", "big", "-o", file.to_str().unwrap()]);
    env.ok(&["-q", "gc"]); // drop the consumed snapshots, so `before` is the minimal blob set
    let before = env.state();
    // Killed at the commit point (holding the index): blobs may be in, the ref may be set.
    let mut import = env.cmd(&["-q", "import", file.to_str().unwrap()]);
    import.env("CAPSULE_DEBUG_INDEX_HOLD_MS", "5000");
    let mut child = import.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Nothing that was there is lost, and the store is consistent.
    let v = env.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let list = env.ok(&["list"]);
    assert!(list.contains("one") && list.contains("two"), "{list}");
    // Importing again completes the job.
    env.ok(&["-q", "import", file.to_str().unwrap()]);
    assert!(env.ok(&["list"]).contains("big"));
    assert_eq!(env.json(&["verify"])["ok"], true);
    // And gc brings the blob set back to what the capsules need.
    env.ok(&["-q", "rm", "big"]);
    env.ok(&["-q", "gc"]);
    assert_eq!(env.state().2, before.2);
}

#[test]
fn kill_9_during_capture_leaves_the_snapshot_pending_and_retry_works() {
    let env = two_capsules();
    let host = env.path("host-k");
    std::fs::create_dir_all(&host).unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", host.to_str().unwrap(), "--roots", "/usr"]);
    let p = host.join("usr/bin/killed");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"payload\n").unwrap();
    let mut end = env.cmd(&["-q", "capture", "snapshot", "end", "k"]);
    end.env("CAPSULE_DEBUG_INDEX_HOLD_MS", "5000");
    let mut child = end.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(env.json(&["verify"])["ok"], true);
    // Killed after the ref was written: the capsule exists and is whole.
    let list = env.ok(&["list"]);
    assert!(list.contains("one") && list.contains("two"), "{list}");
    let names = env.json(&["list"]);
    if !names.as_array().unwrap().iter().any(|c| c["name"] == "k") {
        // Killed before the ref: the snapshot is still pending, so `end` can simply be rerun.
        env.ok(&["-q", "capture", "snapshot", "end", "k"]);
    }
    let m = env.json(&["inspect", "k"]);
    assert!(m["files"].as_array().unwrap().iter().any(|f| f["path"] == "/usr/bin/killed"));
}

#[test]
fn errors_name_what_is_wrong_with_documented_exit_codes() {
    let env = two_capsules();
    let o = env.fails(&["inspect", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no capsule named nope:latest"));
    let o = env.fails(&["rm", "../etc"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"../etc\""));
    let o = env.fails(&["capture", "snapshot", "end", "x"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no snapshot is pending"));
    let o = env.fails(&["capture", "snapshot", "begin", "--roots", "usr"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"usr\" must be an absolute path"));
    let o = env.fails(&["import", env.path("missing.capsule").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.capsule"));
    let o = env.fails(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    // rm then gc frees exactly the blobs only that capsule used; the shared one stays.
    env.ok(&["-q", "gc"]);
    let before = crate::support::walk(&env.store().join("blobs")).len();
    env.ok(&["-q", "rm", "one"]);
    assert!(!env.ok(&["list"]).contains("one "));
    let v = env.json(&["gc"]);
    assert_eq!(v["removed"], 2, "one's own file and its manifest: {v}");
    assert_eq!(crate::support::walk(&env.store().join("blobs")).len(), before - 2);
    assert_eq!(env.json(&["verify"])["ok"], true);
}

/// `doctor` (the CLI contract's verb): the store, the shim and the kernel's features, each
/// named; a missing shim makes it fail.
#[test]
fn doctor_names_what_this_machine_offers() {
    let env = Env::new();
    let report = env.json(&["doctor"]);
    assert_eq!(report["ok"], true, "{report}");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for want in ["store", "preload shim", "seccomp user notification", "pidfd_getfd", "user namespaces", "landlock"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // This machine kind has seccomp user notification (tier 2's tests need it too).
    let notif = checks.iter().find(|c| c["name"] == "seccomp user notification").unwrap();
    assert_eq!(notif["ok"], true, "{notif}");
    let o = env.cmd(&["doctor"]).env("CAPSULE_SHIM", env.path("no-such-shim.so")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("MISSING preload shim") && text.contains("no-such-shim.so does not exist"), "{text}");
}

/// `gc` removes the cache files of content no capsule uses any more; a live capsule's stay.
#[test]
fn gc_removes_cache_files_of_removed_capsules() {
    let env = Env::new();
    env.small_capsule("keep", &[("opt/keep/data", b"kept content\n")]);
    env.small_capsule("gone", &[("opt/gone/data", b"gone content\n")]);
    for (name, file) in [("keep", "/opt/keep/data"), ("gone", "/opt/gone/data")] {
        env.ok(&["run", name, "--entry", "/bin/cat", "--", file]);
    }
    let cache = |s: &str| {
        crate::support::walk(&env.store().join("cache"))
            .iter()
            .any(|p| std::fs::read(p).is_ok_and(|b| b == s.as_bytes()))
    };
    assert!(cache("kept content\n") && cache("gone content\n"));
    env.ok(&["rm", "gone"]);
    let report = env.json(&["gc"]);
    assert!(report["cache_removed"].as_u64() >= Some(1), "{report}");
    assert!(cache("kept content\n"), "a live capsule's cache file was removed");
    assert!(!cache("gone content\n"), "the removed capsule's cache file is still there");
    assert_eq!(env.ok(&["run", "keep", "--entry", "/bin/cat", "--", "/opt/keep/data"]), "kept content\n");
}
