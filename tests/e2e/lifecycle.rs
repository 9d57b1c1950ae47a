//! The run is a unit (issue 17): a stop signal to `capsule run` (SIGTERM, or SIGINT sent with
//! `kill`) reaches every process of the run, orphans and new sessions included; what is left
//! after `--stop-timeout` is killed; `capsule run` returns with the program's status once the
//! last of them is gone. (The wait for a daemonised process is in ownership.rs.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::Env;

/// Whether `pid` still runs (a zombie does not).
fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 1..].split_whitespace().next().map(str::to_owned))
        .is_some_and(|state| state != "Z")
}

/// Start `capsule run` with `args`; the script prints the pids of what it starts, one per line,
/// then `ready`. Returns the launcher and those pids.
fn start(env: &Env, args: &[&str]) -> (Child, Vec<u32>) {
    let mut child = env.cmd(args).stdout(Stdio::piped()).spawn().unwrap();
    let mut pids = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        // Bounded: the script prints `ready` at once, and an early exit ends the output.
        let Some(Ok(line)) = lines.next() else { panic!("the program ended before `ready`; pids so far {pids:?}") };
        if line == "ready" {
            break;
        }
        pids.push(line.trim().parse().unwrap_or_else(|_| panic!("not a pid: {line:?}")));
    }
    (child, pids)
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Wait for `child` at most `limit`; its exit code (128 + signal for a signal) and how long.
fn finish(child: &mut Child, limit: Duration) -> (i32, Duration) {
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return (st.code().or(st.signal().map(|s| 128 + s)).unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("capsule run did not return within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM to `capsule run` stops a server-like run whole: the shell (its program), a
/// background child, and an orphan in a session of its own (`setsid`, which a service's
/// double fork makes), under the full launcher and from the run's plan.
#[test]
fn sigterm_stops_every_process_of_the_run() {
    let env = Env::new();
    env.small_capsule("unit", &[("opt/unit/x", b"x\n")]);
    let script = "(setsid sleep 317 </dev/null >/dev/null 2>&1 & echo $!); \
                  sleep 318 </dev/null >/dev/null 2>&1 & echo $!; echo ready; wait";
    for round in ["full launcher", "plan"] {
        let (mut child, pids) = start(&env, &["run", "unit", "--entry", "/bin/sh", "--", "-c", script]);
        assert_eq!(pids.len(), 2, "{round}: {pids:?}");
        assert!(pids.iter().all(|&p| runs(p)), "{round}: the run's processes did not start: {pids:?}");
        signal(child.id(), "TERM");
        let (code, took) = finish(&mut child, Duration::from_secs(8));
        assert_eq!(code, 128 + 15, "{round}: the program's status (killed by SIGTERM) is the run's");
        assert!(took < Duration::from_secs(5), "{round}: SIGTERM should end this run at once ({took:?})");
        for p in pids {
            assert!(!runs(p), "{round}: process {p} of the run outlived capsule run");
        }
    }
}

/// What ignores SIGTERM is killed once the stop timeout has passed; the run's status is its
/// program's (here killed by SIGKILL).
#[test]
fn what_ignores_sigterm_is_killed_after_the_stop_timeout() {
    let env = Env::new();
    env.small_capsule("unit2", &[("opt/unit/x", b"x\n")]);
    let script = "trap '' TERM; sleep 319 </dev/null >/dev/null 2>&1 & echo $!; echo ready; wait";
    let (mut child, pids) =
        start(&env, &["run", "--stop-timeout", "1", "unit2", "--entry", "/bin/sh", "--", "-c", script]);
    signal(child.id(), "TERM");
    let (code, took) = finish(&mut child, Duration::from_secs(15));
    assert_eq!(code, 128 + 9, "killed after the timeout");
    assert!(took >= Duration::from_millis(900), "killed before the stop timeout ({took:?})");
    assert!(took < Duration::from_secs(8), "the stop timeout of 1 s took {took:?}");
    assert!(!runs(pids[0]), "process {} outlived capsule run", pids[0]);
}

/// SIGINT sent with `kill` (not a terminal's Ctrl-C, which the whole foreground group gets)
/// stops the run too: the shell dies of it; its background job, which a non-interactive shell
/// starts with SIGINT ignored, is killed after the stop timeout.
#[test]
fn a_sigint_sent_with_kill_stops_the_run() {
    let env = Env::new();
    env.small_capsule("unit3", &[("opt/unit/x", b"x\n")]);
    let script = "sleep 321 </dev/null >/dev/null 2>&1 & echo $!; echo ready; wait";
    let (mut child, pids) =
        start(&env, &["run", "--stop-timeout", "1", "unit3", "--entry", "/bin/sh", "--", "-c", script]);
    signal(child.id(), "INT");
    let (code, took) = finish(&mut child, Duration::from_secs(15));
    assert_eq!(code, 128 + 2, "the shell's status: killed by SIGINT");
    assert!(took >= Duration::from_millis(900), "returned before the background job was gone ({took:?})");
    assert!(!runs(pids[0]), "the background job {} outlived capsule run", pids[0]);
}
