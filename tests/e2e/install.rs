//! `capture install` and `capture trace` (issue 4, done-when 3 and 4): an installer runs with
//! write-copy over `/`, the host is not changed, what it wrote becomes the capsule; a traced
//! program's files become a capsule that runs with the host hidden.

use std::path::Path;
use std::process::Command;

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, run_capsule};

#[test]
fn a_script_installer_becomes_a_capsule_and_the_host_is_untouched() {
    let env = Env::new();
    assert!(!Path::new("/opt/capinst").exists(), "/opt/capinst exists on this host");
    let script = "mkdir -p /opt/capinst && echo payload > /opt/capinst/data && \
                  printf '#!/bin/sh\\ncat /opt/capinst/data\\n' > /usr/local/bin/capinst-show && \
                  chmod 755 /usr/local/bin/capinst-show && echo scratch > /tmp/capinst-scratch";
    let (code, _, err) = run_capsule(&env, &["capture", "install", "capinst", "--", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    for p in ["/opt/capinst", "/usr/local/bin/capinst-show", "/tmp/capinst-scratch"] {
        assert!(!Path::new(p).exists(), "{p} reached the host");
    }
    let m = env.json(&["inspect", "capinst"]);
    let paths: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/opt/capinst/data") && paths.contains(&"/usr/local/bin/capinst-show"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/tmp")), "/tmp is not part of a capsule: {paths:?}");
    // The new program is an entry point, and `run NAME -- PROGRAM` picks it by name.
    let (code, out, err) = run_capsule(&env, &["run", "capinst", "--", "capinst-show"]);
    assert_eq!((code, out.as_str()), (0, "payload\n"), "{err}");
    // The install sandbox is gone.
    let left: Vec<_> = std::fs::read_dir(env.store().join("sandboxes"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| !n.starts_with(".install-")), "{left:?}");
}

#[test]
fn a_failing_installer_captures_nothing() {
    let env = Env::new();
    let (code, _, err) =
        run_capsule(&env, &["capture", "install", "broken", "--", "sh", "-c", "mkdir -p /opt/capbroken; exit 3"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("failed; nothing was captured"), "{err}");
    assert!(!Path::new("/opt/capbroken").exists());
    assert!(env.fails(&["inspect", "broken"]).status.code() == Some(1));
}

#[test]
fn apt_get_install_nginx_light_into_a_capsule() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    let _lock = dpkg_lock();
    require!(!installed("nginx-light"), "nginx-light not installed on the host (it is)");
    let env = Env::new();
    let (code, out, err) =
        run_capsule(&env, &["capture", "install", "nginx", "--", "apt-get", "install", "-y", "nginx-light"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // The host did not change at all.
    assert!(!installed("nginx-light"), "dpkg on the host reports nginx-light installed");
    assert!(!Path::new("/etc/nginx").exists(), "/etc/nginx appeared on the host");
    assert!(!Path::new("/usr/sbin/nginx").exists(), "/usr/sbin/nginx appeared on the host");
    // Inside, nginx finds its configuration, modules and directories.
    let (code, out, err) = run_capsule(&env, &["run", "nginx", "--", "nginx", "-t"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("test is successful"), "{err}");
    // nginx -t creates its (empty) pid file: /run is write-copy, so it is in the sandbox.
    assert!(!Path::new("/run/nginx.pid").exists(), "nginx -t wrote /run/nginx.pid on the host");
    serve_own_hostname(&env);
}

/// Issue 5, done-when 2: with `--hostname web1 --ip 127.0.0.4`, the captured nginx answers
/// on that address with a page showing `$hostname`. The site is written from inside the
/// capsule (into its sandbox); nginx is stopped through `capsule run`'s PID (SIGTERM forwarded).
fn serve_own_hostname(env: &Env) {
    require!(has("curl"), "curl");
    let site = "printf 'server {\\n listen 80;\\n location / { return 200 \"hostname=$hostname\"; }\\n}\\n' \
                > /etc/nginx/sites-enabled/host.conf && rm /etc/nginx/sites-enabled/default";
    let (code, _, err) =
        run_capsule(env, &["run", "nginx", "--sandbox", "web1", "--entry", "/bin/sh", "--", "-c", site]);
    assert_eq!(code, 0, "{err}");
    assert!(!Path::new("/etc/nginx").exists(), "the site reached the host");
    let server = Nginx::start(env, "web1", "127.0.0.4");
    assert_eq!(server.get("127.0.0.4"), "hostname=web1");
    drop(server);
    assert!(!Path::new("/run/nginx.pid").exists(), "nginx wrote /run/nginx.pid on the host");
    // Two more copies with Debian's default site, which listens on 80 and on [::]:80 (an
    // IPv6-only wildcard socket): both run at once, each answering on its own address.
    let a = Nginx::start(env, "web2", "127.0.0.5");
    let b = Nginx::start(env, "web3", "127.0.0.6");
    for (server, ip) in [(&a, "127.0.0.5"), (&b, "127.0.0.6")] {
        let page = server.get(ip);
        assert!(page.contains("Welcome to nginx"), "{ip}: {page}");
    }
}

/// `capsule run nginx` in the foreground, stopped by SIGTERM to its PID when dropped.
struct Nginx(std::process::Child);

impl Nginx {
    fn start(env: &Env, sandbox: &str, ip: &str) -> Nginx {
        let args = [
            "run",
            "nginx",
            "--sandbox",
            sandbox,
            "--hostname",
            sandbox,
            "--ip",
            ip,
            "--",
            "nginx",
            "-g",
            "daemon off;",
        ];
        Nginx(env.cmd(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap())
    }

    /// The page at http://IP/, waiting up to 20 s for the server.
    fn get(&self, ip: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let o = Command::new("curl").args(["-s", "--max-time", "2", &format!("http://{ip}/")]).output().unwrap();
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout).into_owned();
            }
            assert!(std::time::Instant::now() < deadline, "nginx did not answer on {ip}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        crate::support::stop(&mut self.0);
    }
}

#[test]
fn a_traced_python_runs_with_full_isolation() {
    require!(Path::new("/usr/bin/python3").exists(), "Debian's python3");
    let env = Env::new();
    let script = "import json, sqlite3; print(json.dumps({'sqlite': sqlite3.connect(':memory:').execute('select 6*7').fetchone()[0]}))";
    let (code, out, err) = run_capsule(&env, &["capture", "trace", "py", "--", "/usr/bin/python3", "-c", script]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let m = env.json(&["inspect", "py"]);
    let paths: Vec<&str> = m["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    for want in ["/usr/bin/python3", "/usr/lib/python3.11/json/__init__.py", "/etc/ld.so.cache"] {
        assert!(paths.iter().any(|p| p.starts_with(want)), "{want} not traced: {paths:?}");
    }
    assert!(paths.iter().any(|p| p.contains("_sqlite3")), "the sqlite3 extension was not traced: {paths:?}");
    assert!(paths.iter().any(|p| p.contains("ld-linux")), "the ELF interpreter was not packed: {paths:?}");
    assert!(!paths.iter().any(|p| p.contains("libcapsule_shim")), "capsule's own shim was packed: {paths:?}");
    // With the host hidden below /, the traced program still runs...
    let (code, out, err) = run_capsule(&env, &["run", "py", "--isolation", "full", "--", "-c", script]);
    assert_eq!((code, out.as_str()), (0, "{\"sqlite\": 42}\n"), "{err}");
    // ...and a module it never touched is not there (the host's copy is hidden).
    let (code, _, err) = run_capsule(&env, &["run", "py", "--isolation", "full", "--", "-c", "import csv"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No module named 'csv'"), "{err}");
}

#[test]
fn gc_removes_the_scratch_sandbox_of_a_killed_capture() {
    let env = Env::new();
    env.small_capsule("keep", &[("opt/keep/x", b"x\n")]);
    // What a capture killed with -9 leaves: a scratch sandbox named after a dead process,
    // next to a live one (this test's own pid) that must stay.
    let dead = env.store().join("sandboxes/.install-app-999999999");
    let live = env.store().join(format!("sandboxes/.trace-app-{}", std::process::id()));
    for d in [&dead, &live] {
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
    }
    env.ok(&["-q", "gc"]);
    assert!(!dead.exists(), "the dead capture's sandbox is still there");
    assert!(live.exists(), "a running capture's sandbox was removed");
    assert!(env.store().join("sandboxes").exists());
}

/// Issue 15: apt links the .debs of an install of five or more packages into a scratch
/// directory with absolute symlinks (`/tmp/apt-dpkg-install-*/N-pkg.deb` →
/// `/var/cache/apt/archives/pkg.deb`) made in the sandbox tree; they resolve in the capsule's
/// view, not on the host. Nine packages (figlet, toilet and its fonts, cowsay and its perl
/// module, fortune-mod, sl, libcaca, librecode): the capture succeeds, dpkg's database on the
/// host is unchanged, the capsule records no deletion, and the programs find their data in it.
#[test]
fn apt_get_install_of_nine_packages_into_a_capsule() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    let _lock = dpkg_lock();
    let pkgs = ["fortune-mod", "toilet", "figlet", "sl", "cowsay"];
    require!(pkgs.iter().all(|p| !installed(p)), "none of {pkgs:?} installed on the host");
    let status = std::fs::read("/var/lib/dpkg/status").unwrap();
    let env = Env::new();
    let mut args = vec!["capture", "install", "fun", "--", "apt-get", "install", "-y", "--no-install-recommends"];
    args.extend(pkgs);
    let (code, out, err) = run_capsule(&env, &args);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("Unpacking toilet-fonts"), "{out}");
    assert_eq!(std::fs::read("/var/lib/dpkg/status").unwrap(), status, "dpkg's status file changed on the host");
    assert!(pkgs.iter().all(|p| !installed(p)), "a package reached the host");
    let m = env.json(&["inspect", "fun"]);
    assert_eq!(m["deletions"].as_array().map(Vec::len), Some(0), "{}", m["deletions"]);
    let run = |entry: &str, args: &[&str]| {
        let mut a = vec!["run", "fun", "--entry", entry, "--"];
        a.extend(args);
        let (code, out, err) = run_capsule(&env, &a);
        assert_eq!(code, 0, "{entry}: {err}");
        out
    };
    assert!(run("/usr/bin/figlet", &["hi"]).contains("| '_ \\| |"));
    // toilet reads its font from the capsule's /usr/share/figlet.
    assert!(run("/usr/bin/toilet", &["-f", "mono9", "ok"]).contains("█"));
    // cowsay is a perl script (the host's perl) that reads its cow from the capsule.
    assert!(run("/usr/games/cowsay", &["moo"]).contains("< moo >"));
}
