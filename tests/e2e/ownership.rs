//! Issue 16, "a run belongs to its user" (done-when 2 and 3): another local user cannot use
//! a root run's materialiser or reach root's store; a capsule's set-id and world-writable
//! modes are never materialised; a flood of connections leaves the run working; `kill -9` of
//! the launcher takes its program with it, a process that outlives it cannot write through
//! the shared cache, and `verify` checks the cache (and catches damage to it).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::require;
use crate::support::{Env, has, is_root, stop};

/// A capsule `app` captured from a tree with set-uid, set-gid and world-writable modes.
fn hostile_modes_capsule(env: &Env) {
    let host = env.path("host-app");
    std::fs::create_dir_all(&host).unwrap();
    let base = host.to_str().unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/usr,/etc,/opt"]);
    let files: &[(&str, &[u8], u32)] = &[
        ("opt/app/data.txt", b"original\n", 0o644),
        ("opt/app/late.txt", b"late content\n", 0o644),
        ("opt/app/other.txt", b"other\n", 0o644),
        ("opt/app/suid", b"#!/bin/sh\necho suid\n", 0o4755),
        ("opt/app/sgid", b"#!/bin/sh\necho sgid\n", 0o2755),
        ("opt/app/open.txt", b"anyone\n", 0o666),
    ];
    for (rel, content, mode) in files {
        let p = host.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let open_dir = host.join("opt/app/shared");
    std::fs::create_dir_all(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    env.ok(&["-q", "capture", "snapshot", "end", "app"]);
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        if after.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The program `capsule run` (`launcher`) started, once it runs, and its environment. A
/// launcher that exits first fails the test with what it printed.
fn program_of(launcher: &mut std::process::Child) -> (u32, String) {
    let pid = launcher.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The launcher's child is the run's keeper; the program is the keeper's child.
        for p in children_of(pid).into_iter().flat_map(|k| std::iter::once(k).chain(children_of(k))) {
            if let Ok(env) = std::fs::read(format!("/proc/{p}/environ"))
                && let Some(sock) = env
                    .split(|&b| b == 0)
                    .find_map(|v| v.strip_prefix(b"CAPSULE_SOCKET=").map(|s| String::from_utf8_lossy(s).into_owned()))
            {
                return (p, sock);
            }
        }
        if let Ok(Some(status)) = launcher.try_wait() {
            let mut out = String::new();
            if let Some(mut o) = launcher.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            if let Some(mut e) = launcher.stderr.take() {
                let _ = e.read_to_string(&mut out);
            }
            panic!("capsule run {pid} exited ({status}) before its program started:\n{out}");
        }
        assert!(
            Instant::now() < deadline,
            "the program of capsule run {pid} did not start within 30 s (children {:?})",
            children_of(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what}: {} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        // A zombie (reaped later by init) no longer runs.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s[s.rfind(')')? + 1..].split_whitespace().next().map(str::to_owned));
        if state.as_deref().is_none_or(|s| s == "Z") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cmd ARGS` as nobody (no groups): exit status and stdout+stderr.
fn as_nobody(args: &[&str]) -> (bool, String) {
    let o = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("setpriv");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// A materialiser request (`op`, `path`) on abstract socket `name`, made by perl as nobody:
/// what came back ("reply N", "no reply", or "connect failed").
fn request_as_nobody(name: &str, op: u8, path: &str) -> String {
    let script = r#"
use Socket;
$SIG{PIPE} = "IGNORE";
my ($name, $op, $path) = @ARGV;
socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
connect($s, pack_sockaddr_un("\0" . $name)) or do { print "connect failed: $!\n"; exit 0 };
my $req = pack("C v", $op, length($path)) . $path;
syswrite($s, $req) or do { print "no reply (write: $!)\n"; exit 0 };
my $n = sysread($s, my $buf, 4);
if (defined $n && $n == 4) { print "reply " . unpack("l<", $buf) . "\n" } else { print "no reply\n" }
"#;
    let (_, out) = as_nobody(&["perl", "-e", script, name, &op.to_string(), path]);
    out.trim().to_owned()
}

/// Done-when 2. While root runs a capsule, `nobody` cannot use its materialiser (a copy-up of
/// /etc/shadow and a whiteout are refused unanswered, and nothing lands in the sandbox), cannot
/// list, read or execute anything in root's store; the capsule's set-uid, set-gid and
/// world-writable modes are not in the store; 3000 connections leave the run working and the
/// launcher without a thread each.
#[test]
fn another_user_cannot_reach_a_root_run() {
    require!(is_root() && has("setpriv") && has("perl"), "root, setpriv and perl (a client running as nobody)");
    let env = Env::new();
    // The store's own mode is what keeps others out, not the test's private scratch directory.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    hostile_modes_capsule(&env);
    let store = env.store();
    let tag = std::process::id();
    let go = PathBuf::from(format!("/tmp/capsule-own-reach-go-{tag}"));
    let _ = std::fs::remove_file(&go);
    // Reads (materialises) the capsule's files, then waits, then materialises one more.
    let script = format!(
        "cat /opt/app/data.txt /opt/app/suid /opt/app/sgid /opt/app/open.txt >/dev/null; \
         while [ ! -e {go} ]; do sleep 0.05; done; cat /opt/app/late.txt",
        go = go.display()
    );
    let mut child = env
        .cmd(&["run", "app", "--entry", "/bin/sh", "--", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let launcher = child.id();
    let (_program, socket) = program_of(&mut child);
    // The early reads are done once the set-id files are in the tree.
    wait_for(&store.join("sandboxes/app/root/opt/app/sgid"), "the program's first reads");

    // The channel: refused, unanswered, nothing changed.
    let reply = request_as_nobody(&socket, 2, "etc/shadow");
    // Unanswered, or (with the backlog full under load) not even connected: not served.
    let refused = |r: &str| r.starts_with("no reply") || r.starts_with("connect failed");
    assert!(refused(&reply), "nobody's copy-up of etc/shadow was answered: {reply}");
    let reply = request_as_nobody(&socket, 3, "opt/app/data.txt");
    assert!(refused(&reply), "nobody's whiteout was answered: {reply}");
    assert!(!store.join("sandboxes/app/root/etc/shadow").exists(), "/etc/shadow was copied into the sandbox");
    let whiteouts = std::fs::read_to_string(store.join("sandboxes/app/whiteouts")).unwrap_or_default();
    assert!(!whiteouts.contains("opt/app/data.txt"), "nobody's whiteout was recorded: {whiteouts}");

    // The store: not listed, read or executed by nobody.
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the store's mode");
    let cache_file = crate::support::walk(&store.join("cache")).into_iter().next().expect("a cache file");
    let ref_file = crate::support::walk(&store.join("refs")).into_iter().next().expect("a ref file");
    let tree_file = store.join("sandboxes/app/root/opt/app/data.txt");
    for args in [
        vec!["ls", store.to_str().unwrap()],
        vec!["cat", ref_file.to_str().unwrap()],
        vec!["cat", cache_file.to_str().unwrap()],
        vec!["cat", tree_file.to_str().unwrap()],
        vec!["sh", "-c", "exec \"$0\"", store.join("sandboxes/app/root/opt/app/suid").to_str().unwrap()],
    ] {
        let (ok, out) = as_nobody(&args);
        assert!(!ok, "nobody ran {args:?}: {out}");
    }

    // Modes: no set-id file, no world-writable file or non-sticky directory in the store.
    let found = Command::new("find")
        .arg(&store)
        .args(["(", "-perm", "/6000", "-o", "-perm", "-0002", "!", "-type", "l", "!", "-perm", "-1000", ")", "-print"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&found.stdout);
    assert!(found.trim().is_empty(), "set-id or world-writable modes in the store:\n{found}");
    // (They were materialised: the check is not vacuous.)
    let suid = std::fs::metadata(store.join("sandboxes/app/root/opt/app/suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o755);
    let open = std::fs::metadata(store.join("sandboxes/app/root/opt/app/open.txt")).unwrap();
    assert_eq!(open.permissions().mode() & 0o7777, 0o664);

    // 3000 connections, up to 500 held open at once, from this (root, outside the run) process.
    let flood = std::thread::spawn({
        let socket = socket.clone();
        move || {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket.as_bytes()).unwrap();
            let mut refused = 0;
            for _ in 0..6 {
                let mut held = Vec::new();
                for _ in 0..500 {
                    match std::os::unix::net::UnixStream::connect_addr(&addr) {
                        Ok(s) => held.push(s),
                        Err(_) => refused += 1,
                    }
                }
                // Each is closed by the launcher without a reply.
                for mut s in held.drain(..10) {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut b = [0u8; 4];
                    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "a connection from outside the run was answered");
                }
            }
            refused
        }
    });
    let refused = flood.join().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{launcher}/status")).unwrap();
    let threads: u32 = status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap();
    assert!(threads <= 12, "the launcher runs {threads} threads after 3000 connections ({refused} refused)");

    // The run goes on: its program materialises a file it had not opened, and exits 0.
    std::fs::write(&go, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            stop(&mut child);
            let _ = std::fs::remove_file(&go);
            panic!("the run did not finish after the flood");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&go);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late content\n");
}

/// Done-when 3. `kill -9` of the launcher while its program writes to a capsule file in a
/// loop: the program and its child are gone within seconds (the run's keeper kills what is
/// left); a process of the run that escapes that and outlives the launcher (a child of the
/// program's, after the keeper was killed first) cannot write through the pristine file it had opened before,
/// whose inode is the shared cache's (EIO); `verify` reports the cache intact. And `verify`
/// does catch a damaged cache file, which `--repair` removes (the next run materialises the
/// content again).
#[test]
fn a_killed_launcher_takes_its_program_and_leaves_the_cache_intact() {
    let env = Env::new();
    env.small_capsule("app", &[("opt/app/data.txt", b"original\n"), ("opt/app/other.txt", b"other\n")]);
    let tag = std::process::id();
    // In a directory there before the run: one made directly in /tmp, beside the test's
    // store, would be the broker's (the launcher's) to make, and the orphan outlives it.
    let dir = PathBuf::from(format!("/tmp/capsule-own-kill-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = |what: &str| dir.join(what);
    let (ready, go, pidfile, err) = (tmp("ready"), tmp("go"), tmp("pid"), tmp("err"));
    let orphan_script = tmp("orphan.sh");
    for p in [&ready, &go, &pidfile, &err] {
        let _ = std::fs::remove_file(p);
    }
    // The orphan-to-be: a child of the program's (not the launcher's), which reads other.txt
    // (a pristine link into the cache), then, once told, appends to it.
    std::fs::write(
        &orphan_script,
        format!(
            "echo $$ > {pid}\ncat /opt/app/other.txt > /dev/null\ntouch {ready}\n\
             while [ ! -e {go} ]; do sleep 0.05; done\n\
             for i in 1 2 3; do echo tampered >> /opt/app/other.txt; done 2>> {err}\necho done >> {err}\n",
            pid = pidfile.display(),
            ready = ready.display(),
            go = go.display(),
            err = err.display()
        ),
    )
    .unwrap();
    let script = format!("sh {} & while :; do echo x >> /opt/app/data.txt; done", orphan_script.display());
    let data = env.store().join("sandboxes/app/root/opt/app/data.txt");
    // Starts the run; once the orphan-to-be has read and the program writes: the launcher, its
    // child (the run's keeper), the program and the orphan-to-be.
    let start = || {
        for p in [&ready, &pidfile] {
            let _ = std::fs::remove_file(p);
        }
        let mut child = env
            .cmd(&["run", "app", "--entry", "/bin/sh", "--", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (program, _) = program_of(&mut child);
        wait_for(&ready, "the orphan-to-be's first read");
        let orphan: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        wait_for(&data, "the program's first write");
        std::thread::sleep(Duration::from_millis(200));
        let keeper = children_of(child.id()).into_iter().next().expect("the launcher's child");
        (child, keeper, program, orphan)
    };

    // The launcher killed: its whole process tree ends, the orphan-to-be too.
    let (mut child, _, program, orphan) = start();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (program_gone, orphan_gone) = (gone(program, Duration::from_secs(10)), gone(orphan, Duration::from_secs(10)));
    let _ =
        Command::new("kill").args(["-KILL", &orphan.to_string(), &program.to_string()]).stderr(Stdio::null()).status();
    assert!(program_gone, "the program {program} outlived its launcher");
    assert!(orphan_gone, "the program's child {orphan} outlived the launcher");

    // A process that escapes the keeper (here: the keeper killed first, as `kill -9` of the
    // whole group might) and outlives the launcher cannot write through the shared cache.
    let (mut child, keeper, program, orphan) = start();
    let _ = Command::new("kill").args(["-KILL", &keeper.to_string()]).status();
    assert!(gone(program, Duration::from_secs(10)), "the program {program} outlived its keeper");
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphan, now init's, tries to append to the pristine file it read.
    std::fs::write(&go, b"").unwrap();
    wait_for(&err, "the orphan's writes");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&err).unwrap_or_default().contains("done") {
        assert!(Instant::now() < deadline, "the orphan did not finish its writes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let orphan_err = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = Command::new("kill").args(["-KILL", &orphan.to_string()]).status();
    for p in [&ready, &go, &pidfile, &err, &orphan_script] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir(&dir);
    let tree_other = env.store().join("sandboxes/app/root/opt/app/other.txt");
    assert!(
        orphan_err.contains("Input/output error"),
        "the orphan's writes did not fail with EIO:\n{orphan_err}\n(tree file: {:?} links, {:?})",
        std::fs::metadata(&tree_other).map(|m| std::os::unix::fs::MetadataExt::nlink(&m)),
        std::fs::read_to_string(&tree_other)
    );

    // The cache holds what the capsule says.
    let v = env.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["cache_files"].as_u64().unwrap() >= 2, "{v}");
    let other = std::fs::read(env.store().join("sandboxes/app/root/opt/app/other.txt")).unwrap();
    assert_eq!(other, b"other\n", "the orphan wrote through the cache");

    // And verify catches a damaged one.
    let cache = crate::support::walk(&env.store().join("cache"))
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|c| c == b"other\n"))
        .expect("other.txt's cache file");
    std::fs::OpenOptions::new().append(true).open(&cache).unwrap().write_all(b"tampered\n").unwrap();
    let o = env.cmd(&["--json", "verify"]).output().unwrap();
    assert!(!o.status.success(), "verify passed a damaged cache file");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = v["problems"].to_string();
    assert!(problems.contains(cache.file_name().unwrap().to_str().unwrap()), "{v}");
    assert!(problems.contains("app:latest"), "the capsule using it is named: {v}");
    env.ok(&["-q", "verify", "--repair"]);
    assert!(!cache.exists(), "repair left the damaged cache file");
    let v = env.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let (code, out, err) =
        crate::support::run_capsule(&env, &["run", "app", "--entry", "/bin/cat", "--", "/opt/app/other.txt"]);
    assert_eq!((code, out.as_str()), (0, "other\n"), "{err}");
}

/// A launcher stays until the last process of the run has exited: a program that daemonises
/// (its parent exits at once) keeps its materialiser, and `capsule run` returns once the
/// daemon is done. Both ways a run starts: the full launcher, then (the second time) the
/// front end from the run's plan.
#[test]
fn the_launcher_waits_for_a_daemonised_process() {
    let env = Env::new();
    env.small_capsule("app", &[("opt/app/data.txt", b"original\n"), ("opt/app/late.txt", b"late\n")]);
    let tag = std::process::id();
    let out = PathBuf::from(format!("/tmp/capsule-own-daemon-{tag}"));
    // The daemon: in the background, detached from the program, which exits at once.
    let script = format!(
        "(sleep 1; cat /opt/app/late.txt > {out}; echo \"plan=$CAPSULE_PLAN\" >> {out}) </dev/null >/dev/null 2>&1 & exit 3",
        out = out.display()
    );
    for round in ["full launcher", "plan"] {
        let _ = std::fs::remove_file(&out);
        let started = Instant::now();
        let (code, _, err) =
            crate::support::run_capsule(&env, &["run", "app", "--entry", "/bin/sh", "--", "-c", &script]);
        let took = started.elapsed();
        let got = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        assert_eq!(code, 3, "{round}: the program's status is the run's: {err}");
        assert!(took >= Duration::from_millis(900), "{round}: capsule run returned before the daemon ended ({took:?})");
        assert!(got.starts_with("late\n"), "{round}: the daemon could not materialise a capsule file: {got:?}");
        assert_eq!(got.contains("plan=\n"), round == "full launcher", "{round}: {got:?}");
    }
}
