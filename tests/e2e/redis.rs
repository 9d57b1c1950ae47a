//! Two copies of one server on one machine (issue 5, done-when 1): Debian's redis-server,
//! installed into a capsule, runs twice on port 6379 with its own address, host name and
//! sandbox; data and dump files stay apart.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, run_capsule};

/// A `capsule run` child (its output in a file), stopped with SIGTERM (forwarded to redis)
/// and reaped on drop.
struct Server(Child, std::path::PathBuf);

impl Server {
    /// Why it is not answering: whether it exited, and what it printed.
    fn why(&mut self) -> String {
        let status = self.0.try_wait().ok().flatten();
        let log = std::fs::read_to_string(&self.1).unwrap_or_default();
        format!("capsule run exited: {status:?}; its output:\n{log}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        crate::support::stop(&mut self.0);
    }
}

fn cli(env: &Env, args: &[&str]) -> String {
    // Docker-style: the first word after the capsule names its program.
    let mut a = vec!["run", "redis", "redis-cli"];
    a.extend(args);
    let (_, out, _) = run_capsule(env, &a);
    out
}

#[test]
fn two_redis_servers_with_their_own_addresses() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    let env = Env::new();
    {
        let _lock = dpkg_lock();
        require!(!installed("redis-server"), "redis-server not installed on the host (it is)");
        let (code, out, err) =
            run_capsule(&env, &["capture", "install", "redis", "--", "apt-get", "install", "-y", "redis-server"]);
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert!(!installed("redis-server") && !Path::new("/etc/redis").exists(), "the install reached the host");
    }
    // Issue 17: the capture recorded redis's programs by name, from their packages, and no
    // default among them: a bare run lists them (exit 2) rather than start the first.
    let m = env.json(&["inspect", "redis"]);
    let eps = m["entry_points"].as_array().unwrap();
    let server = eps.iter().find(|e| e["name"] == "redis-server").unwrap_or_else(|| panic!("{m}"));
    assert_eq!((&server["path"], &server["source"]), (&"/usr/bin/redis-server".into(), &"package redis-server".into()));
    assert!(eps.iter().any(|e| e["name"] == "redis-cli") && m["default_entry"].is_null(), "{m}");
    let (code, out, err) = run_capsule(&env, &["run", "redis"]);
    assert_eq!(code, 2, "stdout {out}\nstderr {err}");
    assert!(err.contains("redis-server") && err.contains("redis-benchmark"), "{err}");
    let start = |n: u8| {
        let ip = format!("127.0.0.{}", n + 1);
        let (host, sandbox) = (format!("db{n}"), format!("db{n}"));
        let log = env.path(&format!("redis-db{n}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = env
            .cmd(&[
                "run",
                "redis",
                "--ip",
                &ip,
                "--hostname",
                &host,
                "--sandbox",
                &sandbox,
                "redis-server",
                "/etc/redis/redis.conf",
                "--daemonize",
                "no",
                "--logfile",
                "",
                "--loglevel",
                "warning",
            ])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Server(child, log)
    };
    let mut servers = [start(1), start(2)];
    for (ip, server) in ["127.0.0.2", "127.0.0.3"].into_iter().zip(&mut servers) {
        // Generous: under CI every test runs at once on two cores.
        let deadline = Instant::now() + Duration::from_secs(60);
        while cli(&env, &["-h", ip, "PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis at {ip} did not come up; {}", server.why());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(cli(&env, &["-h", "127.0.0.2", "SET", "k", "v"]).trim(), "OK");
    assert_eq!(cli(&env, &["-h", "127.0.0.3", "GET", "k"]).trim(), "", "the key leaked to the other instance");
    assert_eq!(cli(&env, &["-h", "127.0.0.2", "GET", "k"]).trim(), "v");
    let info = |ip: &str| cli(&env, &["-h", ip, "INFO", "server"]);
    let (i2, i3) = (info("127.0.0.2"), info("127.0.0.3"));
    let field = |i: &str, f: &str| i.lines().find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_owned()));
    assert_eq!(field(&i2, "tcp_port:").as_deref(), Some("6379"));
    assert_eq!(field(&i3, "tcp_port:").as_deref(), Some("6379"));
    assert_ne!(field(&i2, "run_id:"), field(&i3, "run_id:"), "one server answered both addresses");
    for ip in ["127.0.0.2", "127.0.0.3"] {
        assert_eq!(cli(&env, &["-h", ip, "SAVE"]).trim(), "OK");
    }
    for n in ["db1", "db2"] {
        let dump = env.store().join(format!("sandboxes/{n}/root/var/lib/redis/dump.rdb"));
        assert!(dump.is_file(), "{} missing", dump.display());
    }
    assert!(!Path::new("/var/lib/redis/dump.rdb").exists(), "a dump reached the host");
}
