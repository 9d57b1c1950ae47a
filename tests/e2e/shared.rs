//! Issue 6, done-when 1: shared capsules. A sqlite3 database kept in a shared capsule is
//! written by one app capsule (Debian's sqlite3) and read by another (python3's sqlite3
//! module); two app capsules append to one file under flock(1) at the same time and lose no
//! line; concurrent sqlite writers in two capsules share fcntl locks; the state outlives the
//! removal and the upgrade of an app; a shared capsule in use is not removed unless forced.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::require;
use crate::support::{Env, has, run_capsule};

const STATE: &str = "/srv/capsule-e2e-appdata";

fn sqlite_apps(env: &Env) {
    env.ok(&["-q", "capture", "shared", "appdata", "--state", STATE]);
    // The writer declares its link in its manifest; the reader is linked per run (--with).
    env.ok(&["-q", "capture", "elf", "writer", "/usr/bin/sqlite3", "--link", "appdata"]);
    env.ok(&["-q", "capture", "elf", "reader", "/usr/bin/python3"]);
}

fn read_rows(env: &Env) -> (i32, String, String) {
    let script = format!(
        "import sqlite3; c = sqlite3.connect('{STATE}/app.db', timeout=30); \
         print(c.execute('select count(*), min(x) from t').fetchone())"
    );
    run_capsule(env, &["run", "reader", "--with", "appdata", "--", "-c", &script])
}

#[test]
fn a_sqlite_database_in_a_shared_capsule_is_written_by_one_app_and_read_by_another() {
    require!(has("sqlite3") && has("python3"), "needs Debian's sqlite3 and python3");
    require!(!Path::new(STATE).exists(), "{STATE} exists on this machine");
    let env = Env::new();
    sqlite_apps(&env);
    let db = format!("{STATE}/app.db");
    let (code, out, err) = run_capsule(
        &env,
        &["run", "writer", "--", &db, "create table t(x text); insert into t values ('from-writer');"],
    );
    assert_eq!(code, 0, "writer: {out}{err}");
    assert!(!Path::new(STATE).exists(), "the state must not land on the host");
    let state = env.store().join("sandboxes/appdata/state").join(STATE.trim_start_matches('/'));
    assert!(state.join("app.db").is_file(), "the database lives in the shared capsule's sandbox");
    let (code, out, err) = read_rows(&env);
    assert_eq!((code, out.trim()), (0, "(1, 'from-writer')"), "{err}");

    // Concurrent writers in two capsules: sqlite's fcntl locks are shared (same inodes), so
    // with a busy timeout every insert lands.
    let inserts: String = (0..100).map(|i| format!("insert into t values ('w{i}');\n")).collect();
    let py = format!(
        "import sqlite3\nc = sqlite3.connect('{db}', timeout=60, isolation_level=None)\n\
         for i in range(100):\n    c.execute(\"insert into t values ('p%d')\" % i)\n"
    );
    let mut w = env.cmd(&["run", "writer", "--", "-cmd", ".timeout 60000", &db]);
    let mut w = w.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let p = env.cmd(&["run", "reader", "--with", "appdata", "--", "-c", &py]).output().unwrap();
    use std::io::Write;
    w.stdin.take().unwrap().write_all(inserts.as_bytes()).unwrap();
    let wo = w.wait_with_output().unwrap();
    assert!(
        wo.status.success() && p.status.success(),
        "{}{}",
        String::from_utf8_lossy(&wo.stderr),
        String::from_utf8_lossy(&p.stderr)
    );
    let (code, out, err) = read_rows(&env);
    assert_eq!((code, out.trim()), (0, "(201, 'from-writer')"), "{err}");

    // Who uses it; it cannot go while they do.
    let info = env.json(&["inspect", "appdata"]);
    let users: Vec<(String, String)> = info["used_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["capsule"].as_str().unwrap().to_owned(), u["how"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(users, [("writer:latest".to_owned(), "link".to_owned()), ("reader".to_owned(), "with".to_owned())]);
    assert_eq!(env.json(&["inspect", "writer"])["links"][0]["name"], "appdata");
    let o = env.fails(&["rm", "appdata"]);
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(msg.contains("appdata") && msg.contains("writer") && msg.contains("--force"), "{msg}");

    // Removing one app and upgrading the other loses nothing (App-V's failure).
    env.ok(&["-q", "rm", "writer"]);
    env.ok(&["-q", "gc"]);
    env.ok(&["-q", "capture", "elf", "reader:v2", "/usr/bin/python3", "/usr/bin/sqlite3", "--link", "appdata"]);
    let (code, out, err) =
        run_capsule(&env, &["run", "reader:v2", "--entry", "/usr/bin/sqlite3", "--", &db, "select count(*) from t"]);
    assert_eq!((code, out.trim()), (0, "201"), "{err}");
    env.ok(&["-q", "rm", "appdata", "--force"]);
    assert!(state.join("app.db").is_file(), "rm --force keeps the state");
}

#[test]
fn two_capsules_appending_under_flock_lose_no_line() {
    require!(has("flock") && has("dash"), "needs util-linux's flock and dash");
    let env = Env::new();
    let state = "/srv/capsule-e2e-logs";
    require!(!Path::new(state).exists(), "{state} exists on this machine");
    env.ok(&["-q", "capture", "shared", "logs", "--state", state]);
    for app in ["app-a", "app-b"] {
        env.ok(&["-q", "capture", "elf", app, "/bin/dash", "/usr/bin/flock", "/usr/bin/wc", "--link", "logs"]);
    }
    // The shared capsule's registry reaches the apps linked to it: the log's path is a key of
    // `logs`, seen by both apps as an environment variable (layered capsule < shared < sandbox).
    let log = format!("{state}/log.txt");
    env.ok(&["config", "logs", "set", "machine/env/SHARED_LOG", &log]);
    assert_eq!(env.ok(&["config", "app-a", "get", "machine/env/SHARED_LOG"]).trim(), format!("{log:?}"));
    // Each line carries the number of lines before it, read and appended under the lock: two
    // writers that overlapped would write the same number twice.
    const N: usize = 60;
    let script = |who: &str| {
        format!(
            ": >> \"$SHARED_LOG\"; i=0; while [ $i -lt {N} ]; do \
             flock \"$SHARED_LOG\" dash -c 'n=$(wc -l < \"$SHARED_LOG\"); echo \"$n {who}\" >> \"$SHARED_LOG\"' || exit 1; \
             i=$((i+1)); done"
        )
    };
    let spawn = |app: &str, who: &str| {
        let mut c: Command = env.cmd(&["run", app, "--", "-c", &script(who)]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn("app-a", "A"), spawn("app-b", "B"));
    for (who, child) in [("A", a), ("B", b)] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{who}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text =
        std::fs::read_to_string(env.store().join("sandboxes/logs/state").join(log.trim_start_matches('/'))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * N, "{text}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{i} ")), "line {i} is {l:?}: two writers held the lock at once\n{text}");
    }
    let count = |w: &str| lines.iter().filter(|l| l.ends_with(w)).count();
    assert_eq!((count(" A"), count(" B")), (N, N));
    assert!(!Path::new(state).exists());
}
