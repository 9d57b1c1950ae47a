//! Issue 16, transfers: registry operations end within their deadline
//! (`CAPSULE_REGISTRY_TIMEOUT`) against a registry that sends one byte every 5 s, with an error
//! naming the registry and the reference (`pull`, and a lazy `run` whose first open fetches);
//! transient answers (503) are retried; a pull or an import over an existing name:tag says which
//! version it replaced, which stays runnable by digest (`NAME@DIGEST`) until `gc --untagged`. The registry is a fake one in the test, on 127.0.0.1, serving the distribution
//! API from memory; it is stopped when the test ends.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::app;
use crate::support::{Env, run_capsule};

/// Serve normally.
const NORMAL: u8 = 0;
/// Send every response one byte every 5 s.
const TRICKLE_ALL: u8 = 1;
/// Trickle blob downloads only (manifests come at once).
const TRICKLE_BLOBS: u8 = 2;

#[derive(Default)]
struct Shared {
    /// Blobs by digest, manifests by "manifest:TAG" (with their content type).
    objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
    mode: AtomicU8,
    /// Answer this many next requests with 503.
    fail_next: AtomicU32,
    /// Requests seen.
    requests: AtomicU32,
    stop: AtomicBool,
}

/// A registry for repository `team/app` on 127.0.0.1; stopped on drop.
struct FakeRegistry {
    addr: String,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(conn, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeRegistry { addr, shared, accept: Some(accept) }
    }

    fn reference(&self) -> String {
        format!("{}/team/app:v1", self.addr)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One request on `conn`; the answer, sent whole or one byte every 5 s (for at most a minute,
/// or until the test ends or the client hangs up).
fn serve(conn: TcpStream, s: &Shared) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let (mut len, mut ctype) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "content-type" => ctype = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let path = target.strip_prefix("/v2/team/app/").unwrap_or("");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut objects = s.objects.lock().unwrap();
    let (status, headers, out): (&str, String, Vec<u8>) = if s.fail_next.load(Ordering::SeqCst) > 0 {
        s.fail_next.fetch_sub(1, Ordering::SeqCst);
        ("503 Service Unavailable", String::new(), b"busy".to_vec())
    } else {
        match (method.as_str(), path) {
            ("POST", "blobs/uploads/") => {
                ("202 Accepted", "Location: /v2/team/app/blobs/uploads/u1\r\n".to_owned(), Vec::new())
            }
            ("PUT", "blobs/uploads/u1") => {
                let digest = query.strip_prefix("digest=").unwrap_or("").replace("%3A", ":");
                objects.insert(digest, (body, "application/octet-stream".to_owned()));
                ("201 Created", String::new(), Vec::new())
            }
            ("PUT", p) if p.starts_with("manifests/") => {
                objects.insert(format!("manifest:{}", &p[10..]), (body, ctype));
                ("201 Created", String::new(), Vec::new())
            }
            ("HEAD", p) if p.starts_with("blobs/") => match objects.get(&p[6..]) {
                Some((b, _)) => ("200 OK", format!("X-Size: {}\r\n", b.len()), Vec::new()),
                None => ("404 Not Found", String::new(), Vec::new()),
            },
            ("GET", p) => {
                let key = p
                    .strip_prefix("manifests/")
                    .map_or_else(|| p[6.min(p.len())..].to_owned(), |t| format!("manifest:{t}"));
                match objects.get(&key) {
                    Some((b, t)) => ("200 OK", format!("Content-Type: {t}\r\n"), b.clone()),
                    None => ("404 Not Found", String::new(), Vec::new()),
                }
            }
            _ => ("404 Not Found", String::new(), Vec::new()),
        }
    };
    drop(objects);
    let mut answer =
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", out.len())
            .into_bytes();
    if method != "HEAD" {
        answer.extend_from_slice(&out);
    }
    let mode = s.mode.load(Ordering::SeqCst);
    let trickle = mode == TRICKLE_ALL || (mode == TRICKLE_BLOBS && method == "GET" && path.starts_with("blobs/"));
    let mut conn = conn;
    if !trickle {
        let _ = conn.write_all(&answer);
        return;
    }
    let start = Instant::now();
    for b in answer {
        if conn.write_all(&[b]).is_err() || start.elapsed() > Duration::from_secs(60) {
            return;
        }
        // One byte every 5 s, waking often to notice the end of the test.
        for _ in 0..50 {
            if s.stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `capsule ARGS` in `env` with a 3 s registry deadline: (status, stderr, seconds taken).
fn timed(env: &Env, args: &[&str]) -> (Option<i32>, String, f64) {
    let start = Instant::now();
    let o = env.cmd(args).env("CAPSULE_REGISTRY_TIMEOUT", "3").output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), start.elapsed().as_secs_f64())
}

#[test]
fn a_trickling_registry_ends_pull_and_lazy_run_within_the_deadline() {
    let reg = FakeRegistry::start();
    let source = Env::new();
    app(&source, "hello\n");
    source.ok(&["-q", "push", "app", &reg.reference()]);

    // pull: the OCI manifest itself comes one byte every 5 s.
    reg.shared.mode.store(TRICKLE_ALL, Ordering::SeqCst);
    let env = Env::new();
    let before = env.state();
    let (code, err, secs) = timed(&env, &["pull", &reg.reference()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(secs < 15.0, "pull took {secs:.1} s with a 3 s deadline: {err}");
    for needle in [reg.addr.as_str(), "team/app:v1", "deadline of 3 s", "CAPSULE_REGISTRY_TIMEOUT"] {
        assert!(err.contains(needle), "pull error lacks {needle:?}: {err}");
    }
    assert_eq!(env.state(), before, "a pull past its deadline changed the store");

    // A lazy pull (metadata at full speed), then a run whose first open downloads a blob that
    // trickles.
    reg.shared.mode.store(NORMAL, Ordering::SeqCst);
    env.ok(&["-q", "pull", "--lazy", &reg.reference(), "app"]);
    reg.shared.mode.store(TRICKLE_BLOBS, Ordering::SeqCst);
    let start = Instant::now();
    let mut cmd = env.cmd(&["run", "app", "--entry", "/usr/bin/cat", "--", "/opt/app/greeting"]);
    let o = cmd.env("CAPSULE_REGISTRY_TIMEOUT", "3").output().unwrap();
    let (secs, err) = (start.elapsed().as_secs_f64(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(!o.status.success(), "the run succeeded: {err}");
    assert!(secs < 20.0, "the lazy run took {secs:.1} s with a 3 s deadline: {err}");
    for needle in [reg.addr.as_str(), "team/app:v1", "CAPSULE_REGISTRY_TIMEOUT"] {
        assert!(err.contains(needle), "lazy run error lacks {needle:?}: {err}");
    }

    // At full speed the same run works: the deadline, not the capsule, stopped it.
    reg.shared.mode.store(NORMAL, Ordering::SeqCst);
    let (code, out, err) = run_capsule(&env, &["run", "app", "--entry", "/usr/bin/cat", "--", "/opt/app/greeting"]);
    assert_eq!((code, out.as_str()), (0, "hello\n"), "{err}");
}

#[test]
fn transient_answers_are_retried_and_a_pull_over_a_name_says_so() {
    let reg = FakeRegistry::start();
    let source = Env::new();
    app(&source, "one\n");
    source.ok(&["-q", "push", "app", &reg.reference()]);
    let env = Env::new();
    // Three 503s in a row: the pull retries (0.25 + 0.5 + 1 s) and succeeds.
    reg.shared.fail_next.store(3, Ordering::SeqCst);
    let seen = reg.shared.requests.load(Ordering::SeqCst);
    let first = env.json(&["pull", &reg.reference(), "app"]);
    assert!(reg.shared.requests.load(Ordering::SeqCst) - seen >= 4 + 3, "the 503s were not retried");
    let o = env.cmd(&["pull", &reg.reference(), "app"]).output().unwrap();
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("before this pull"));

    // A new version under the same tag: pulling it over app:latest says what it named.
    app(&source, "two\n");
    source.ok(&["-q", "push", "app", &reg.reference()]);
    let o = env.cmd(&["--json", "pull", &reg.reference(), "app"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let old = &first["manifest_digest"].as_str().unwrap()[..12];
    let new = &second["manifest_digest"].as_str().unwrap()[..12];
    assert_eq!(second["replaced"], first["manifest_digest"], "{second}");
    let said =
        format!("this pull moved app:latest from {old} to {new}; the old version stays in the store as app@{old}");
    assert!(err.contains(&said), "{err}");
    // Both versions run: the old one by digest, the new one by its tag.
    let cat = |r: &str| run_capsule(&env, &["run", r, "--entry", "/usr/bin/cat", "--", "/opt/app/greeting"]);
    let by_digest = format!("app@{old}");
    assert_eq!(cat(&by_digest), (0, "one\n".into(), String::new()));
    assert_eq!(cat("app"), (0, "two\n".into(), String::new()));

    // A registry that keeps failing: the error is the registry's answer, after the retries.
    reg.shared.fail_next.store(100, Ordering::SeqCst);
    let (code, err, secs) = timed(&env, &["pull", &reg.reference(), "app"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("503") && secs < 15.0, "{secs:.1} s: {err}");
    reg.shared.fail_next.store(0, Ordering::SeqCst);
}

/// `capsule run REF --entry /usr/bin/cat -- /opt/app/greeting` in `env`: (status, stdout, stderr).
fn greeting(env: &Env, r: &str) -> (i32, String, String) {
    run_capsule(env, &["run", r, "--entry", "/usr/bin/cat", "--", "/opt/app/greeting"])
}

#[test]
fn an_import_over_a_name_keeps_the_old_version_runnable_by_digest() {
    let source = Env::new();
    let (v1, v2) = (source.path("v1.capsule"), source.path("v2.capsule"));
    let (v1, v2) = (v1.to_str().unwrap(), v2.to_str().unwrap());
    app(&source, "one\n");
    source.ok(&["-q", "export", "app", "-o", v1]);
    app(&source, "two\n");
    source.ok(&["-q", "export", "app", "-o", v2]);

    let env = Env::new();
    let first = env.json(&["import", v1]);
    assert_eq!(first["replaced"], serde_json::Value::Null, "{first}");
    assert_eq!(greeting(&env, "app"), (0, "one\n".into(), String::new()));
    let o = env.cmd(&["--json", "import", v2]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let second: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (d1, d2) = (first["digest"].as_str().unwrap(), second["digest"].as_str().unwrap());
    let (old, new) = (&d1[..12], &d2[..12]);
    assert_ne!(old, new);
    assert_eq!(second["replaced"].as_str(), Some(d1), "{second}");
    let said =
        format!("this import moved app:latest from {old} to {new}; the old version stays in the store as app@{old}");
    assert!(err.contains(&said) && err.contains("gc --untagged"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, not more: {err}");

    // The tag runs the new version; the old one runs by digest (short or whole, with or
    // without `blake3:`), in a sandbox of its own.
    let by_digest = format!("app@{old}");
    assert_eq!(greeting(&env, "app"), (0, "two\n".into(), String::new()));
    for r in [by_digest.clone(), format!("app@{d1}"), format!("app@blake3:{}", &d1[..20])] {
        assert_eq!(greeting(&env, &r), (0, "one\n".into(), String::new()), "run {r}");
    }
    let sandboxes = env.store().join("sandboxes");
    let stamp = |s: &str| std::fs::read_to_string(sandboxes.join(s).join("skeleton")).unwrap().trim().to_owned();
    assert_eq!((stamp("app"), stamp(&by_digest)), (d2.to_owned(), d1.to_owned()));
    // A repeated run by digest starts from its launch plan (the no-libc front end), in the same
    // sandbox and version.
    let script = "echo plan=${CAPSULE_PLAN:-none}; cat /opt/app/greeting";
    let planned = |env: &Env| run_capsule(env, &["run", &by_digest, "--entry", "/bin/sh", "--", "-c", script]);
    assert_eq!(planned(&env), (0, "plan=none\none\n".into(), String::new()));
    let (code, out, err) = planned(&env);
    assert!(
        code == 0 && out.starts_with("plan=") && !out.starts_with("plan=none") && out.ends_with("\none\n"),
        "{out}{err}"
    );
    // A digest that no version has, or that is too short, is refused with the reference.
    let (code, _, err) = greeting(&env, "app@000000000000");
    assert!(code != 0 && err.contains("app@000000000000"), "{code}: {err}");
    let (code, _, err) = greeting(&env, "app@0123");
    assert!(code != 0 && err.contains("12 to 64 hex digits"), "{code}: {err}");

    // list shows it untagged; inspect and export reach it by digest.
    let list = env.json(&["list"]);
    let rows = list.as_array().unwrap();
    assert!(rows.iter().any(|r| r["tag"] == "latest" && r["digest"] == d2), "{list}");
    assert!(rows.iter().any(|r| r["tag"].is_null() && r["digest"] == d1 && r["former_tag"] == "latest"), "{list}");
    let text = env.ok(&["list"]);
    assert!(text.lines().any(|l| l.starts_with("app ") && l.contains("<none>") && l.contains(old)), "{text}");
    assert_eq!(env.json(&["inspect", &by_digest])["digest"], d1);
    let again = env.path("again.capsule");
    env.ok(&["-q", "export", &by_digest, "-o", again.to_str().unwrap()]);
    let other = Env::new();
    assert_eq!(other.json(&["import", again.to_str().unwrap()])["digest"], d1);
    assert_eq!(greeting(&other, "app"), (0, "one\n".into(), String::new()));

    // gc keeps untagged versions; a tagged one is not removed by digest.
    env.ok(&["-q", "gc"]);
    assert_eq!(greeting(&env, &by_digest), (0, "one\n".into(), String::new()));
    let o = env.fails(&["rm", &format!("app@{new}")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("tag app:latest names it"), "{o:?}");
    env.ok(&["-q", "verify"]);

    // Importing v1 again moves the tag back: v2 is then the untagged one.
    let o = env.cmd(&["import", v1]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains(&format!("moved app:latest from {new} to {old}")), "{err}");
    let list = env.json(&["list"]);
    let untagged: Vec<_> = list.as_array().unwrap().iter().filter(|r| r["tag"].is_null()).collect();
    assert_eq!(untagged.len(), 1, "{list}");
    assert_eq!(untagged[0]["digest"], d2, "{list}");
    // rm NAME@DIGEST drops an untagged version.
    let said = env.cmd(&["rm", &format!("app@{new}")]).output().unwrap();
    assert!(String::from_utf8_lossy(&said.stderr).contains(&format!("removed untagged app@{new}")), "{said:?}");
    assert!(env.json(&["list"]).as_array().unwrap().iter().all(|r| !r["tag"].is_null()));
    env.ok(&["-q", "import", v2]);

    // gc --untagged drops it, its blobs and its sandbox; the tagged version stays whole.
    let json = env.json(&["gc", "--untagged"]);
    assert_eq!(json["untagged_removed"], serde_json::json!([by_digest]), "{json}");
    assert!(json["removed"].as_u64().unwrap() >= 2, "the old manifest and greeting stayed: {json}");
    assert!(!sandboxes.join(&by_digest).exists(), "the old version's sandbox stayed");
    let (code, _, err) = greeting(&env, &by_digest);
    assert!(code != 0 && err.contains(&format!("no capsule {by_digest}")), "{code}: {err}");
    let (code, out, err) = planned(&env);
    assert!(code != 0 && out.is_empty(), "its launch plan still ran it: {out}{err}");
    assert_eq!(greeting(&env, "app"), (0, "two\n".into(), String::new()));
    assert!(env.json(&["list"]).as_array().unwrap().iter().all(|r| !r["tag"].is_null()));
}
