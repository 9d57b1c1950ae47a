//! Issue 17: `capture install` is honest about what the host already had. apt installs
//! nothing of a requested package the host has, so such a capture is refused, naming the
//! package, with nothing stored; with `--reinstall` the package is reinstalled inside the
//! capture and every file of it goes into the capsule.

use std::path::Path;

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, run_capsule};

#[test]
fn a_package_the_host_has_is_refused_or_reinstalled_in_full() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    let _lock = dpkg_lock();
    require!(installed("jq") && Path::new("/usr/bin/jq").is_file(), "jq installed on the host (.ci/run installs it)");
    let status = std::fs::read("/var/lib/dpkg/status").unwrap();
    let env = Env::new();
    let (code, out, err) = run_capsule(&env, &["capture", "install", "jqc", "--", "apt-get", "install", "-y", "jq"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("the host already has jq installed") && err.contains("--reinstall"), "{err}");
    assert!(!out.contains("Reading package lists"), "the installer ran: {out}");
    assert!(env.cmd(&["inspect", "jqc"]).output().unwrap().status.code() == Some(1), "a capsule was stored");
    assert!(!env.store().join("refs/jqc").exists(), "a ref was written");
    let (code, out, err) =
        run_capsule(&env, &["capture", "install", "jqc", "--reinstall", "--", "apt-get", "install", "-y", "jq"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("already has jq"), "{err}");
    assert_eq!(std::fs::read("/var/lib/dpkg/status").unwrap(), status, "dpkg's status file changed on the host");
    let m = env.json(&["inspect", "jqc"]);
    let paths: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    for want in ["/usr/bin/jq", "/usr/share/doc/jq/copyright", "/usr/share/man/man1/jq.1.gz"] {
        assert!(paths.contains(&want), "{want} not captured: {paths:?}");
    }
    assert_eq!(m["default_entry"], "jq", "{m}");
    assert_eq!(m["entry_points"][0]["source"], "package jq", "{m}");
    // The capsule's jq runs, from the capsule, with the host's jq hidden.
    let (code, out, err) = run_capsule(&env, &["run", "jqc", "--isolation", "/usr/bin=full", "--", "-n", "6*7"]);
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");
}
