//! Issue 17, `run --user NAME|UID[:GROUP]`: root starts a capsule's program as a user of the
//! capsule's own /etc/passwd; the sandbox's directories and materialised files take the
//! manifest's owners, so the program writes where its package said it may and nowhere else;
//! only root may ask; PostgreSQL's `initdb` and server run as their own user from a capsule.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::require;
use crate::support::{Env, has, is_root, run_capsule, stop};

/// A capsule `app` (snapshot of a staging root) whose `/opt/app/data` and the file
/// `/opt/app/data/seed` belong to uid/gid 65534 (nobody), and whose `/opt/app` is root's.
fn nobody_capsule(env: &Env) {
    let host = env.path("host-app");
    std::fs::create_dir_all(&host).unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", host.to_str().unwrap(), "--roots", "/opt"]);
    let data = host.join("opt/app/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(host.join("opt/app/readme"), "root's\n").unwrap();
    std::fs::write(data.join("seed"), "seed\n").unwrap();
    std::fs::write(data.join("other"), "other\n").unwrap();
    for p in [&data, &data.join("seed"), &data.join("other")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    env.ok(&["-q", "capture", "snapshot", "end", "app"]);
}

/// `--user nobody`: the program runs as nobody (uid, gid, groups, HOME/USER/LOGNAME from the
/// passwd entry: the capsule has none, so the host's), writes a new file and appends to a
/// capsule file in the directory the manifest gives nobody, both then nobody's in the tree;
/// it cannot write in root's capsule directory. The store stays private to root.
#[test]
fn nobody_writes_where_the_manifest_lets_it() {
    require!(is_root(), "root (--user is root's)");
    let env = Env::new();
    nobody_capsule(&env);
    let script = "id -u; id -g; id -G; echo \"$HOME $USER $LOGNAME\"; \
                  echo new > /opt/app/data/new && cat /opt/app/data/new; \
                  echo more >> /opt/app/data/seed && cat /opt/app/data/seed; \
                  if echo x > /opt/app/intruder; then echo wrote-root-dir; else echo refused; fi; \
                  if rm /opt/app/readme; then echo deleted-root-file; else echo kept; fi; \
                  rm /opt/app/data/other && echo deleted-own; ls /opt/app/data; \
                  ls -l /usr/bin/ls /opt/app/readme >/dev/null && \
                  python3 -c 'import os; os.listxattr(\"/opt/app/readme\")' && echo listed; \
                  if kill -9 $PPID 2>/dev/null; then echo killed-keeper; else echo keeper-kept; fi";
    let o = env
        .cmd(&["run", "app", "--user", "nobody", "--entry", "/bin/sh", "--", "-c", script])
        .current_dir("/")
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    let home = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("nobody:").map(|r| r.split(':').nth(4).unwrap_or("").to_owned()))
        .unwrap();
    assert_eq!(
        out,
        // The run's keeper (the program's parent) is root's: nobody cannot take the run out
        // of its reach.
        format!(
            "65534\n65534\n65534\n{home} nobody nobody\nnew\nseed\nmore\nrefused\nkept\ndeleted-own\nnew\nseed\nlisted\nkeeper-kept\n"
        ),
        "stderr:\n{err}"
    );
    let tree = env.store().join("sandboxes/app/root/opt/app");
    for f in ["data", "data/new", "data/seed"] {
        let m = std::fs::symlink_metadata(tree.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "owner of {f} in the sandbox");
    }
    let m = std::fs::symlink_metadata(&tree).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "owner of /opt/app in the sandbox");
    assert!(!tree.join("intruder").exists());
    // A raw request to the materialiser (what a hostile program of the run could send): the
    // deletion of root's file is refused with nobody's EACCES, not done with root's rights.
    if has("perl") {
        let script = r#"
use Socket;
my ($name, $op, $path, $flags) = @ARGV;
socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!";
connect($s, pack_sockaddr_un("\0" . $name)) or die "connect: $!";
my $how = $op == 6 ? pack("l< L<", $flags, 0) : "";
syswrite($s, pack("C v", $op, length($path)) . $how . $path) or die "write: $!";
my $n = sysread($s, my $buf, 4);
print((defined $n && $n == 4) ? "reply " . unpack("l<", $buf) . "\n" : "no reply\n");
"#;
        // And an open of it for writing (6, O_WRONLY): refused with nobody's EACCES, no
        // descriptor passed.
        let o = env
            .cmd(&[
                "run",
                "app",
                "--user",
                "nobody",
                "--entry",
                "/bin/sh",
                "--",
                "-c",
                "perl -e \"$0\" \"$CAPSULE_SOCKET\" 3 opt/app/readme; perl -e \"$0\" \"$CAPSULE_SOCKET\" 6 opt/app/readme 1",
                script,
            ])
            .current_dir("/")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "reply 13\nreply 13\n",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    } else {
        crate::support::require_or_skip("perl (a raw materialiser request)");
    }
    // A host file in a host directory nobody may write, below the write-copy /opt: nobody
    // deletes it, and the same process sees it gone (the sandbox's table of deletions, which
    // it cannot open by path, is inherited); the host keeps it.
    let hostdir = std::path::PathBuf::from(format!("/opt/capsule-user-{}", std::process::id()));
    std::fs::create_dir_all(&hostdir).unwrap();
    std::fs::write(hostdir.join("f"), "host\n").unwrap();
    std::os::unix::fs::chown(&hostdir, Some(65534), Some(65534)).unwrap();
    let script =
        format!("rm {d}/f && if [ -e {d}/f ]; then echo still-there; else echo gone; fi", d = hostdir.display());
    let (code, out, err) =
        run_capsule(&env, &["run", "app", "--user", "nobody", "--entry", "/bin/sh", "--", "-c", &script]);
    let kept = std::fs::read_to_string(hostdir.join("f"));
    let _ = std::fs::remove_dir_all(&hostdir);
    assert_eq!((code, out.as_str()), (0, "gone\n"), "{err}");
    assert_eq!(kept.unwrap(), "host\n", "the host's file changed");
    // Root's file is still there; nobody's deletion of its own file holds.
    let (code, out, err) =
        run_capsule(&env, &["run", "app", "--entry", "/bin/sh", "--", "-c", "cat /opt/app/readme; ls /opt/app/data"]);
    assert_eq!((code, out.as_str()), (0, "root's\nnew\nseed\n"), "{err}");
    // The store is root's alone still (tests/e2e/ownership.rs).
    assert_eq!(std::fs::metadata(env.store()).unwrap().permissions().mode() & 0o777, 0o700);
    // Unknown names fail before anything runs, naming the capsule and the name.
    let (code, _, err) = run_capsule(&env, &["run", "app", "--user", "nosuchuser", "--entry", "/bin/true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("app") && err.contains("nosuchuser") && err.contains("/etc/passwd"), "{err}");
    // A shim the user cannot read (in a directory private to root) is refused before the
    // run, rather than leave the program unvirtualised.
    let shim = Path::new(env!("CARGO_BIN_EXE_capsule")).with_file_name("libcapsule_shim.so");
    let private = env.path("private-shim/libcapsule_shim.so");
    std::fs::create_dir_all(private.parent().unwrap()).unwrap();
    std::fs::set_permissions(private.parent().unwrap(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(&shim, &private).unwrap();
    let o = env
        .cmd(&["run", "app", "--user", "nobody", "--entry", "/bin/true"])
        .env("CAPSULE_SHIM", &private)
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("cannot read the preload shim") && err.contains("private-shim"), "{err}");
    // A numeric user needs no entry; without a group, its group is the same number.
    let (code, out, err) =
        run_capsule(&env, &["run", "app", "--user", "4242", "--entry", "/bin/sh", "--", "-c", "id -u; id -g"]);
    assert_eq!((code, out.as_str()), (0, "4242\n4242\n"), "{err}");
}

/// Only root may use `--user`: the same user (nobody, owning its own store) runs the capsule
/// without it, and is refused with it, with exit 125 and a message saying why.
#[test]
fn only_root_may_use_user() {
    require!(is_root() && has("setpriv"), "root and setpriv (the runner becomes nobody)");
    let env = Env::new();
    nobody_capsule(&env);
    let exe = env!("CARGO_BIN_EXE_capsule");
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", exe, "--store"])
            .arg(env.store())
            .args(args)
            .current_dir("/")
            .output()
            .unwrap()
    };
    let o = nobody(&["--version"]);
    require!(o.status.success(), "nobody can execute {exe}");
    // Nobody's own store: the root of the scratch directory is 0700 root's.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("chown").args(["-R", "65534:65534"]).arg(env.store()).status().unwrap();
    assert!(st.success());
    let o = nobody(&["run", "app", "--entry", "/bin/cat", "--", "/opt/app/readme"]);
    assert!(o.status.success(), "nobody's run failed: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "root's\n");
    let o = nobody(&["run", "app", "--user", "nobody", "--entry", "/bin/cat", "--", "/opt/app/readme"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("--user needs root"), "{err}");
    assert!(o.stdout.is_empty(), "the program ran: {}", String::from_utf8_lossy(&o.stdout));
}

/// The PostgreSQL major version installed on the host (its server binaries), if any.
fn host_postgresql() -> Option<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter(|e| e.path().join("bin/initdb").is_file() && e.path().join("bin/postgres").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    versions.pop()
}

/// A capsule `pg` of the host's PostgreSQL server package (every file `dpkg -L` lists, but the
/// JIT bitcode), captured by snapshot from a staging root that also holds the capsule's own
/// `/etc/passwd` and `/etc/group` — user `postgres` is uid 7432 there, whatever the host has
/// — and `/var/lib/postgresql` owned by it, as the package's postinst makes it.
fn postgresql_capsule(env: &Env, version: &str) {
    let host = env.path("host-pg");
    std::fs::create_dir_all(&host).unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", host.to_str().unwrap(), "--roots", "/usr,/etc,/var/lib"]);
    let list = Command::new("dpkg").args(["-L", &format!("postgresql-{version}")]).output().unwrap();
    assert!(list.status.success(), "dpkg -L postgresql-{version}");
    let files: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|p| !p.contains("/bitcode") && Path::new(p).symlink_metadata().is_ok_and(|m| !m.is_dir()))
        .map(str::to_owned)
        .collect();
    assert!(files.len() > 100, "dpkg -L postgresql-{version} lists {} files", files.len());
    // From `/`, with relative names: `cp -a --parents` sets the parents' modes by the names
    // as given, relative to its working directory.
    let mut cp = Command::new("cp");
    cp.current_dir("/").args(["-a", "--parents"]).args(files.iter().map(|f| f.trim_start_matches('/'))).arg(&host);
    assert!(cp.status().unwrap().success(), "cp --parents of the package's files");
    std::fs::create_dir_all(host.join("etc")).unwrap();
    std::fs::write(
        host.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
         postgres:x:7432:7432:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(host.join("etc/group"), "root:x:0:\nnogroup:x:65534:\npostgres:x:7432:\nssl-cert:x:7433:postgres\n")
        .unwrap();
    let state = host.join("var/lib/postgresql");
    std::fs::create_dir_all(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(7432), Some(7432)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["-q", "capture", "snapshot", "end", "pg"]);
}

/// PostgreSQL from its capsule, as its own user: `initdb` (which refuses root) initialises a
/// cluster in the capsule's `/var/lib/postgresql`, owned by the capsule's postgres (uid 7432,
/// known only to the capsule's /etc/passwd); the server started with `--user postgres`
/// answers psql from the host over a socket in /tmp, and psql from the capsule as postgres
/// too; a table made there is in the sandbox, and nothing reached the host's /var/lib.
/// Stopped by the launcher's PID (SIGTERM forwarded: a smart shutdown).
#[test]
fn postgresql_initdb_and_server_run_as_postgres() {
    require!(is_root(), "root (--user is root's)");
    let Some(version) = host_postgresql() else {
        require!(false, "PostgreSQL's server on the host (.ci/run installs postgresql)");
        return;
    };
    require!(has("dpkg"), "dpkg (the package's file list)");
    let taken = Command::new("getent").args(["passwd", "7432"]).output().unwrap();
    require!(!taken.status.success(), "uid 7432 free on the host (the capsule's postgres)");
    let env = Env::new();
    postgresql_capsule(&env, &version);
    let bin = format!("/usr/lib/postgresql/{version}/bin");
    assert!(!Path::new("/var/lib/postgresql/capsule-data").exists());
    let data = "/var/lib/postgresql/capsule-data";

    // As root, initdb refuses (what the issue saw); as postgres it initialises.
    let (code, _, err) = run_capsule(&env, &["run", "pg", "--entry", &format!("{bin}/initdb"), "--", "-D", data]);
    assert_ne!(code, 0, "initdb ran as root");
    assert!(err.contains("cannot be run as root"), "{err}");
    let o = env
        .cmd(&["run", "pg", "--user", "postgres", "--entry", &format!("{bin}/initdb"), "--", "-D", data, "-A", "trust"])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "initdb:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let tree_data = env.store().join("sandboxes/pg/root").join(data.trim_start_matches('/'));
    let m = std::fs::metadata(tree_data.join("PG_VERSION")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7432, 7432), "PG_VERSION's owner");
    assert!(!Path::new(data).exists(), "initdb wrote the host's {data}");

    // The server, in the foreground of its run, on a socket directory in /tmp (merged).
    let sock = std::path::PathBuf::from(format!("/tmp/capsule-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&sock);
    std::fs::create_dir(&sock).unwrap();
    std::os::unix::fs::chown(&sock, Some(7432), Some(7432)).unwrap();
    let mut server = env
        .cmd(&[
            "run",
            "pg",
            "--user",
            "postgres",
            "--entry",
            &format!("{bin}/postgres"),
            "--",
            "-D",
            data,
            "-k",
            sock.to_str().unwrap(),
            "-c",
            "listen_addresses=",
        ])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let psql = |sql: &str| {
        Command::new(format!("{bin}/psql"))
            .args(["-h", sock.to_str().unwrap(), "-U", "postgres", "-d", "postgres", "-qAtc", sql])
            .current_dir("/")
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let up = loop {
        let o = psql("select 1");
        if o.status.success() && String::from_utf8_lossy(&o.stdout) == "1\n" {
            break true;
        }
        last = String::from_utf8_lossy(&o.stderr).into_owned();
        if Instant::now() > deadline || server.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !up {
        stop(&mut server);
        let mut err = String::new();
        std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut err).unwrap();
        let _ = std::fs::remove_dir_all(&sock);
        panic!("the server did not answer: {last}\nserver stderr:\n{err}");
    }
    let o = psql(
        "create table capsule_t(x int); insert into capsule_t values (42); select current_user, sum(x) from capsule_t",
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "postgres|42\n", "{}", String::from_utf8_lossy(&o.stderr));
    // psql from the capsule's own side, as postgres (the client package is the host's).
    let (code, out, err) = run_capsule(
        &env,
        &[
            "run",
            "pg",
            "--user",
            "postgres",
            "--entry",
            &format!("{bin}/psql"),
            "--",
            "-h",
            sock.to_str().unwrap(),
            "-Atc",
            "select current_user, count(*) from capsule_t",
        ],
    );
    let server_pid = std::fs::read_to_string(tree_data.join("postmaster.pid")).unwrap_or_default();
    let pid = server_pid.lines().next().unwrap_or("").trim().to_owned();
    // The postmaster runs as the capsule's postgres.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or("").split_whitespace().collect::<Vec<_>>();
    stop(&mut server);
    let _ = std::fs::remove_dir_all(&sock);
    assert_eq!((code, out.as_str()), (0, "postgres|1\n"), "{err}");
    assert!(!pid.is_empty(), "no postmaster.pid in the sandbox");
    assert_eq!(uids, ["7432"; 4], "the postmaster's uids");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the server outlived its run");
    // The smart shutdown removed the pid file, as postgres does.
    assert!(!tree_data.join("postmaster.pid").exists(), "the server did not shut down cleanly");
    assert!(!Path::new(data).exists(), "the cluster reached the host's {data}");
}

/// A server of capsule `pg` (run options `run`), as the capsule's postgres, with `args` after
/// `-D data`, once the host's psql reaches it through `reach` (its connection arguments); with
/// an empty message, or stopped with what went wrong when it did not answer within a minute.
fn pg_server(env: &Env, bin: &str, run: &[&str], args: &[&str], reach: &[&str]) -> (std::process::Child, String) {
    let mut a = vec!["run", "pg"];
    a.extend_from_slice(run);
    let postgres = format!("{bin}/postgres");
    a.extend_from_slice(&["--user", "postgres", "--entry", &postgres, "--", "-D", "/var/lib/postgresql/data"]);
    a.extend_from_slice(args);
    let mut server = env.cmd(&a).current_dir("/").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = pg_sql(bin, reach, "select 1");
        if o.0 && o.1 == "1\n" {
            return (server, String::new());
        }
        if Instant::now() > deadline || server.try_wait().unwrap().is_some() {
            stop(&mut server);
            let mut err = String::new();
            std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut err).unwrap();
            return (server, format!("psql: {}\nserver:\n{err}", o.2));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host's psql with `reach` (connection arguments) running `sql`: success, stdout, stderr.
fn pg_sql(bin: &str, reach: &[&str], sql: &str) -> (bool, String, String) {
    let o = Command::new(format!("{bin}/psql"))
        .args(reach)
        .args(["-U", "postgres", "-d", "postgres", "-qAtc", sql])
        .current_dir("/")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Issue 17, done-when 2: two PostgreSQL runs of one capsule on port 5432, each initialised
/// with `initdb` and started with `--ip 127.0.0.2X --hostname pgX --user postgres` in a
/// sandbox of its own; psql from the host reaches each; a table made in one is absent from the
/// other; `inet_server_addr()` answers each run's address.
#[test]
fn two_postgresql_servers_on_5432_as_postgres() {
    require!(is_root(), "root (--user is root's)");
    let Some(version) = host_postgresql() else {
        require!(false, "PostgreSQL's server on the host (.ci/run installs postgresql)");
        return;
    };
    require!(has("dpkg"), "dpkg (the package's file list)");
    let taken = Command::new("getent").args(["passwd", "7432"]).output().unwrap();
    require!(!taken.status.success(), "uid 7432 free on the host (the capsule's postgres)");
    let busy = |ip: &str| std::net::TcpStream::connect((ip, 5432)).is_ok();
    require!(!busy("127.0.0.21") && !busy("127.0.0.22"), "127.0.0.21:5432 and 127.0.0.22:5432 free");
    let env = Env::new();
    postgresql_capsule(&env, &version);
    let bin = format!("/usr/lib/postgresql/{version}/bin");
    let initdb = format!("{bin}/initdb");
    let mut servers = Vec::new();
    for (n, ip) in [(1, "127.0.0.21"), (2, "127.0.0.22")] {
        let sandbox = format!("pg{n}");
        let o = env
            .cmd(&[
                "run",
                "pg",
                "--sandbox",
                &sandbox,
                "--user",
                "postgres",
                "--entry",
                &initdb,
                "--",
                "-D",
                "/var/lib/postgresql/data",
                "-A",
                "trust",
            ])
            .current_dir("/")
            .output()
            .unwrap();
        assert!(o.status.success(), "initdb {sandbox}: {}", String::from_utf8_lossy(&o.stderr));
        let reach = ["-h", ip, "-p", "5432"];
        let (server, failed) = pg_server(
            &env,
            &bin,
            &["--sandbox", &sandbox, "--ip", ip, "--hostname", &sandbox],
            &["-c", "listen_addresses=*", "-c", "unix_socket_directories="],
            &reach,
        );
        servers.push(server);
        if !failed.is_empty() {
            for s in &mut servers {
                stop(s);
            }
            panic!("{sandbox} on {ip}:5432 did not answer: {failed}");
        }
    }
    let one = ["-h", "127.0.0.21", "-p", "5432"];
    let two = ["-h", "127.0.0.22", "-p", "5432"];
    let made = pg_sql(&bin, &one, "create table only_in_pg1(x int)");
    let addr1 = pg_sql(&bin, &one, "select inet_server_addr(), current_user");
    let addr2 = pg_sql(&bin, &two, "select inet_server_addr(), current_user");
    let in1 = pg_sql(&bin, &one, "select count(*) from pg_tables where tablename = 'only_in_pg1'");
    let in2 = pg_sql(&bin, &two, "select count(*) from pg_tables where tablename = 'only_in_pg1'");
    for s in &mut servers {
        stop(s);
    }
    assert!(made.0, "{}", made.2);
    assert_eq!(addr1.1, "127.0.0.21|postgres\n", "{}", addr1.2);
    assert_eq!(addr2.1, "127.0.0.22|postgres\n", "{}", addr2.2);
    assert_eq!((in1.1.as_str(), in2.1.as_str()), ("1\n", "0\n"), "{} {}", in1.2, in2.2);
}
