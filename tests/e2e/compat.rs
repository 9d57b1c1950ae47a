//! The compatibility corpus (issue 17, tests/compat/): its fast subset, run by the corpus's own
//! runner against this build's `capsule`, and a check that the runner reports a case whose
//! output differs as failed.

use crate::require;
use crate::support::{Env, has, is_root};
use std::path::Path;
use std::process::{Command, Output};

fn runner(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/compat/run.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .env("CAPSULE_BIN", env!("CARGO_BIN_EXE_capsule"))
        .output()
        .expect("run tests/compat/run.sh")
}

fn ready() -> bool {
    is_root() && has("apt-get") && has("flock") && has("dpkg-query")
}

/// The cases marked `fast: yes` (jq, sqlite3, tar/xz/zstd by ELF closure, figlet by
/// `capture install`, units by snapshot diff) pass with default options.
#[test]
fn the_fast_subset_of_the_corpus_passes() {
    require!(ready(), "root, apt-get and flock (the corpus installs and purges packages)");
    // No dpkg lock held here: the runner takes /tmp/apt.lock (support::dpkg_lock's file) itself
    // around every package change and capture, and would wait for us forever.
    let out = runner(&["--fast", "--no-doc"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for case in ["jq", "sqlite3", "tar-xz-zstd", "figlet", "units"] {
        let line = stdout.lines().find(|l| l.split_whitespace().next() == Some(case));
        assert!(line.is_some_and(|l| l.contains(" PASS ")), "{case}: {line:?}\n{stdout}");
    }
}

/// A case whose expected output is not what the program prints fails, with the reason, and the
/// runner exits 1; a case that names no capture method is refused.
#[test]
fn the_runner_reports_a_wrong_output_as_a_failure() {
    require!(ready() && has("jq"), "root, apt-get, flock and jq");
    let env = Env::new();
    let dir = env.path("cases");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("wrong.case"),
        "app: jq\npackages: jq\nmethod: elf\nname: jq\nelf: /usr/bin/jq\nrun: capsule run jq -- -n '1+1'\nexpect: 3\n",
    )
    .unwrap();
    std::fs::write(dir.join("nomethod.case"), "app: jq\nrun: true\n").unwrap();
    let out = runner(&["--no-doc", "--cases", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let wrong = stdout.lines().find(|l| l.starts_with("wrong")).unwrap_or_default();
    assert!(wrong.contains("FAIL") && wrong.contains("expected '3'"), "{stdout}");
    let nomethod = stdout.lines().find(|l| l.starts_with("nomethod")).unwrap_or_default();
    assert!(nomethod.contains("FAIL"), "{stdout}");
}
