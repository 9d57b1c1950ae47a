//! Issue 16: `gc` removes the sandboxes of removed capsules and the views nothing uses, and
//! says what it removed; a sandbox a running program still uses, the sandboxes of existing
//! capsules (by name or by `--sandbox`) and the views of their fresh launch plans stay.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::support::{Env, run_capsule};

fn views(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.store().join("views"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".view"))
        .collect();
    v.sort();
    v
}

/// Make every view look two hours old (gc leaves views written in the last hour).
fn age_views(env: &Env) {
    let then = SystemTime::now() - Duration::from_secs(7200);
    for v in views(env) {
        let f = std::fs::File::options().write(true).open(env.store().join("views").join(v)).unwrap();
        f.set_modified(then).unwrap();
    }
}

fn cat_greeting(env: &Env, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--entry", "/usr/bin/cat", "--", "/opt/app/greeting"]);
    let (code, out, err) = run_capsule(env, &args);
    assert_eq!(code, 0, "run {name}: {err}");
    out
}

#[test]
fn gc_removes_the_sandboxes_of_removed_capsules_and_unused_views() {
    let env = Env::new();
    let sandboxes = env.store().join("sandboxes");
    // Three capsules: "app" stays, "gone" is removed, "busy" is removed while its program runs.
    for name in ["app", "gone", "busy"] {
        env.small_capsule(name, &[("opt/app/greeting", b"hello\n")]);
    }
    // Runs make sandboxes and views (twice each: the second run of a command line writes its plan).
    for _ in 0..2 {
        assert_eq!(cat_greeting(&env, "app", &[]), "hello\n");
        assert_eq!(cat_greeting(&env, "app", &["--sandbox", "work"]), "hello\n");
        assert_eq!(cat_greeting(&env, "gone", &[]), "hello\n");
    }
    std::fs::write(sandboxes.join("gone/root/opt/mine"), "data").unwrap();
    let mut busy = env
        .cmd(&["run", "busy", "--entry", "/usr/bin/cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Its program is up once its sandbox's skeleton is built and something holds it.
    for _ in 0..100 {
        if sandboxes.join("busy/skeleton").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["-q", "rm", "gone"]);
    env.ok(&["-q", "rm", "busy"]);
    let before = views(&env);
    assert!(before.len() >= 2, "{before:?}");
    age_views(&env);

    let v = env.json(&["gc"]);
    assert_eq!(v["sandboxes_removed"], serde_json::json!(["gone"]), "{v}");
    assert_eq!(v["sandboxes_in_use"], serde_json::json!(["busy"]), "{v}");
    assert!(!sandboxes.join("gone").exists(), "the removed capsule's sandbox is still there");
    for kept in ["app", "work", "busy"] {
        assert!(sandboxes.join(kept).join("root").is_dir(), "sandbox {kept} was removed");
    }
    let after = views(&env);
    assert!(v["views_removed"].as_u64().unwrap() >= 1 && after.len() < before.len(), "{v}: {before:?} -> {after:?}");
    // The running program still has its view (it maps it), and finishes normally.
    let busy_pid = busy.id();
    let children = std::fs::read_to_string(format!("/proc/{busy_pid}/task/{busy_pid}/children")).unwrap_or_default();
    for pid in children.split_whitespace() {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        for line in maps.lines().filter(|l| l.contains("/views/")) {
            let path = &line[line.find('/').unwrap()..];
            assert!(Path::new(path).exists(), "gc removed view {path} that a running program maps");
        }
    }
    drop(busy.stdin.take());
    assert!(busy.wait().unwrap().success());

    // With its program gone, the busy sandbox goes too; the live capsule still runs, in both
    // its sandboxes.
    let v = env.json(&["gc"]);
    assert_eq!(v["sandboxes_removed"], serde_json::json!(["busy"]), "{v}");
    assert!(!sandboxes.join("busy").exists());
    assert_eq!(cat_greeting(&env, "app", &[]), "hello\n");
    assert_eq!(cat_greeting(&env, "app", &["--sandbox", "work"]), "hello\n");
}
