//! Launch plans: the second identical `capsule run` starts from the plan the first wrote (the
//! first builds a new sandbox, so its inputs change under it: it prepares once more and
//! writes the plan then), behaves as a prepared run does, and a changed input sends the run
//! back through preparation.

use crate::support::{Env, run_capsule};

/// The script every run here executes: prints the capsule file `$FILE` (default `data`), the
/// plan it was started from, writes `/opt/p/out`, and exits 3; with `$LLP` set, it first
/// prints its library path.
const SCRIPT: &str = "[ -n \"$LLP\" ] && echo \"llp=$LD_LIBRARY_PATH\"; cat /opt/p/${FILE:-data}; \
                      echo \"plan=${CAPSULE_PLAN:-none}\"; echo w > /opt/p/out; exit 3";

fn run(env: &Env, file: Option<&str>) -> (i32, String, String) {
    let mut c = env.cmd(&["run", "p", "--entry", "/bin/sh", "--", "-c", SCRIPT]);
    if let Some(f) = file {
        c.env("FILE", f);
    }
    let o = c.output().expect("run capsule");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn plan_of(out: &str) -> &str {
    out.lines().find_map(|l| l.strip_prefix("plan=")).unwrap_or("?")
}

#[test]
fn a_repeated_run_starts_from_its_plan_and_serves_what_it_opens() {
    let env = Env::new();
    // libfake.so.1: a library only by its name, so that the run has a library directory.
    env.small_capsule("p", &[("opt/p/data", b"one\n"), ("opt/p/late", b"late\n"), ("usr/lib/libfake.so.1", b"x")]);
    let (c1, o1, e1) = run(&env, None);
    let (c2, o2, _) = run(&env, None);
    let (c3, o3, e3) = run(&env, None);
    assert_eq!((c1, c2, c3), (3, 3, 3), "{e1}{e3}");
    assert_eq!(plan_of(&o1), "none");
    let plan = plan_of(&o2);
    assert_eq!(plan.len(), 16, "second run not from a plan: {o2} {e1}");
    assert_eq!(plan_of(&o3), plan, "{e3}");
    assert!(env.store().join("plans").join(format!("{plan}.plan")).is_file());
    assert!(o3.starts_with("one\n"), "{o3}");
    // A file never opened before: the materialiser, started by `run-attached` on first use.
    let tree = env.store().join("sandboxes/p/root/opt/p");
    assert!(!tree.join("late").exists());
    let (c4, o4, e4) = run(&env, Some("late"));
    assert_eq!((c4, o4.as_str()), (3, format!("late\nplan={plan}\n").as_str()), "{e4}");
    // The library path: the capsule's library directory before an inherited one, as prepared.
    // (`-q` before the verb: a command line the front end leaves to capsule-cli, which prepares.)
    let with_llp = |first: &[&str]| {
        let args = [first, &["run", "p", "--entry", "/bin/sh", "--", "-c", SCRIPT]].concat();
        let o = env.cmd(&args).env("LLP", "1").env("LD_LIBRARY_PATH", "/inherited").output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (out.lines().next().unwrap_or_default().to_owned(), plan_of(&out).len())
    };
    let (from_plan, planned) = with_llp(&[]);
    let (prepared, not_planned) = with_llp(&["-q"]);
    let want = format!("llp={}:/inherited", env.store().join("sandboxes/p/root/usr/lib").display());
    assert_eq!((planned, not_planned), (16, 4));
    assert_eq!((from_plan.as_str(), prepared.as_str()), (want.as_str(), want.as_str()));
    // The program's write went to the sandbox, not the host.
    assert_eq!(std::fs::read_to_string(tree.join("out")).unwrap(), "w\n");
    assert!(!std::path::Path::new("/opt/p/out").exists());
}

#[test]
fn a_changed_input_sends_the_run_back_through_preparation() {
    let env = Env::new();
    env.small_capsule("p", &[("opt/p/data", b"one\n")]);
    for _ in 0..3 {
        run(&env, None);
    }
    let (_, o, _) = run(&env, None);
    assert_eq!(plan_of(&o).len(), 16, "{o}");
    // A new version of the capsule: its ref changes.
    env.small_capsule("p", &[("opt/p/data", b"two\n")]);
    let (c, o, e) = run(&env, None);
    assert_eq!((c, o.as_str()), (3, "two\nplan=none\n"), "{e}");
    run(&env, None);
    let (_, o, _) = run(&env, None);
    assert_eq!((o.lines().next(), plan_of(&o).len()), (Some("two"), 16), "{o}");
    // A deletion in a run from the plan: the whiteout list changes, and the next run (prepared
    // again) does not show the file.
    let (c, _, e) = run_capsule(&env, &["run", "p", "--entry", "/bin/rm", "--", "/opt/p/data"]);
    assert_eq!(c, 0, "{e}");
    let (_, o, e) = run(&env, None);
    assert!(o.contains("plan=none") && e.contains("No such file"), "{o}{e}");
    // `sandbox reset`: the sandbox's files are gone, so is every plan's footing.
    for _ in 0..2 {
        run(&env, None);
    }
    assert_eq!(plan_of(&run(&env, None).1).len(), 16);
    env.ok(&["sandbox", "p", "reset"]);
    let (c, o, e) = run(&env, None);
    assert_eq!((c, o.as_str()), (3, "two\nplan=none\n"), "{e}");
    // A damaged plan file is a miss, not an error.
    run(&env, None);
    let plans: Vec<_> = std::fs::read_dir(env.store().join("plans")).unwrap().flatten().map(|e| e.path()).collect();
    for p in &plans {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    }
    let (c, o, e) = run(&env, None);
    assert_eq!((c, o.as_str()), (3, "two\nplan=none\n"), "{e}");
}

/// `kill <capsule pid>` reaches a program started from a plan, and capsule returns its status.
#[test]
fn sigterm_reaches_a_program_started_from_a_plan() {
    let env = Env::new();
    env.small_capsule("sig", &[("opt/sig/x", b"x\n")]);
    let script = "[ -n \"$QUICK\" ] && exit 0; trap 'echo got TERM; exit 7' TERM; echo \"ready ${CAPSULE_PLAN:-none}\"; \
                  i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done";
    let args = ["run", "sig", "--entry", "/bin/sh", "--", "-c", script];
    for _ in 0..2 {
        assert!(env.cmd(&args).env("QUICK", "1").status().unwrap().success());
    }
    let mut child = env.cmd(&args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let plan = line.trim_end().strip_prefix("ready ").unwrap_or("?").to_owned();
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!((status.code(), rest.as_str(), plan.len()), (Some(7), "got TERM\n", 16), "{line}");
}

/// `gc` removes the plans the front end would no longer start from (a replaced capsule
/// version, a damaged file) and keeps the ones that still match.
#[test]
fn gc_removes_plans_that_no_longer_match() {
    let env = Env::new();
    env.small_capsule("p", &[("opt/p/data", b"one\n")]);
    let other = ["run", "p", "--entry", "/bin/true"];
    for _ in 0..2 {
        run(&env, None);
        assert_eq!(run_capsule(&env, &other).0, 0);
    }
    let plans = || {
        let mut v: Vec<_> = std::fs::read_dir(env.store().join("plans")).unwrap().flatten().map(|e| e.path()).collect();
        v.sort();
        v
    };
    assert_eq!(plans().len(), 2);
    assert_eq!(env.json(&["gc"])["plans_removed"], 0);
    assert_eq!(plans().len(), 2);
    // A new version: both plans are stale; the script's run writes its plan again.
    env.small_capsule("p", &[("opt/p/data", b"two\n")]);
    let (_, o, _) = run(&env, None);
    assert_eq!(plan_of(&o), "none");
    let damaged = env.store().join("plans").join("00000000000000ff.plan");
    std::fs::write(&damaged, b"CAPPLAN1\x02\xff").unwrap();
    assert_eq!(env.json(&["gc"])["plans_removed"], 2, "the /bin/true plan and the damaged one");
    let left = plans();
    assert_eq!(left.len(), 1, "{left:?}");
    let (c, o, e) = run(&env, None);
    assert_eq!(
        (c, o.as_str()),
        (3, format!("two\nplan={}\n", left[0].file_stem().unwrap().to_string_lossy()).as_str()),
        "{e}"
    );
}

/// A change of metadata from a run started from its plan, on a capsule file never changed
/// before: the guard's supervisor has the materialiser copy the file up, the materialiser made
/// when the call first needs it (`run::supervise_deferred`), not at every start.
#[test]
fn a_change_of_metadata_from_a_plan_copies_the_file_up_when_first_needed() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.small_capsule("p", &[("opt/p/a", b"a\n"), ("opt/p/b", b"b\n"), ("opt/p/c", b"c\n")]);
    let script = "chmod 600 /opt/p/$F && stat -c %a /opt/p/$F && echo \"plan=${CAPSULE_PLAN:-none}\"";
    let mut last = String::new();
    for f in ["a", "b", "c"] {
        let o = env.cmd(&["run", "p", "--entry", "/bin/sh", "--", "-c", script]).env("F", f).output().unwrap();
        last = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{f}: {last}{}", String::from_utf8_lossy(&o.stderr));
        assert!(last.starts_with("600\n"), "{f}: {last}");
    }
    assert_eq!(plan_of(&last).len(), 16, "the third run not from a plan: {last}");
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).map(|m| m.permissions().mode() & 0o777).unwrap();
    assert_eq!(mode(env.store().join("sandboxes/p/root/opt/p/c")), 0o600);
    // The shared cache's copies are as they were.
    let cache = env.store().join("cache");
    let files: Vec<_> = walk(&cache).into_iter().filter(|p| p.is_file()).collect();
    assert!(!files.is_empty(), "no cache files under {}", cache.display());
    let changed: Vec<_> = files.into_iter().filter(|p| mode(p.clone()) == 0o600).collect();
    assert!(changed.is_empty(), "cache files changed: {changed:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
