//! Kernel confinement and safe defaults (issue 16, done-when 4; docs/security.md, "Running
//! capsules"). `fixtures/c/confine.c` writes with fopen (the shim places it) and with inline
//! `syscall` instructions (nothing but the kernel sees them), run from a capsule with tier 1
//! alone, on the full launcher's path and from a launch plan (the no-libc front end).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require;
use crate::shim::{fixture_dir, gcc};
use crate::support::{Env, is_root};

/// The fixture, built once per test process (the tests here run in parallel threads).
fn build() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = fixture_dir();
            fs::create_dir_all(&dir).unwrap();
            let bin = dir.join("confine");
            gcc(&bin, &["-O1", "confine.c"]).unwrap();
            bin
        })
        .clone()
}

/// The fixture, a store with capsule `conf` (/opt/conf/readme) and a `$HOME` for the runs.
fn setup() -> (PathBuf, Env, PathBuf) {
    let bin = build();
    let env = Env::new();
    env.small_capsule("conf", &[("opt/conf/readme", b"r\n")]);
    let home = env.path("home");
    fs::create_dir_all(&home).unwrap();
    (bin, env, home)
}

/// `capsule run conf --seccomp never --entry BIN ARGS…` with `HOME=home`, and extra options;
/// (exit code, stdout, stderr).
fn run(env: &Env, bin: &Path, home: &Path, opts: &[&str], args: &[String]) -> (i32, String, String) {
    let mut c: Command = env.cmd(&["run", "conf", "--seccomp", "never"]);
    c.args(opts).arg("--entry").arg(bin).arg("--").args(args).env("HOME", home);
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn raw_writes_to_the_system_are_refused_by_the_kernel_and_user_data_is_merged() {
    require!(is_root(), "root (as root, nothing but capsule stops a write to /etc or /usr)");
    let (bin, env, home) = setup();
    let id = std::process::id();
    let system: Vec<String> =
        ["/etc", "/opt", "/usr/bin", "/srv"].iter().map(|d| format!("{d}/capsule-confine-{id}")).collect();
    let mine = home.join("raw");
    // In a directory of `/tmp` that is there when the run starts: `/tmp` itself holds the
    // test's store, so Landlock grants it entry by entry (below).
    let tmp_dir = format!("/tmp/capsule-confine-{id}");
    fs::create_dir_all(&tmp_dir).unwrap();
    let tmp = format!("{tmp_dir}/raw");
    // Directly in `/tmp`, beside the store: a raw creation is refused by the kernel, one
    // through libc is made by the broker.
    let beside = format!("/tmp/capsule-confine-beside-{id}");
    let brokered = format!("/tmp/capsule-confine-w-{id}");
    // A host file whose mode a raw fchmodat tries to change: the guard's supervisor changes
    // the sandbox's copy instead (Landlock has no right for modes).
    let meta = PathBuf::from(format!("/srv/capsule-confine-meta-{id}"));
    fs::write(&meta, "host\n").unwrap();
    fs::set_permissions(&meta, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut args: Vec<String> = system.iter().map(|p| format!("asm:{p}")).collect();
    args.push(format!("chmod:{}", meta.display()));
    args.push(format!("asm:{}", mine.display()));
    args.push(format!("asm:{tmp}"));
    args.push(format!("asm:{beside}"));
    args.push(format!("w:{brokered}"));
    args.push("env:CAPSULE_PLAN".to_owned());
    // Twice: the first from the full launcher, which writes a plan; the second from the plan.
    let mut plans = Vec::new();
    for round in 0..2 {
        let (code, out, err) = run(&env, &bin, &home, &[], &args);
        let ctx = format!("round {round}:\n{out}\n{err}");
        assert_eq!(code, 0, "{ctx}");
        for p in &system {
            assert!(out.contains(&format!("asm {p} Permission denied")), "{ctx}");
            assert!(!Path::new(p).exists(), "{p} reached the host ({ctx})");
        }
        assert!(out.contains(&format!("asm {} ok", mine.display())), "{ctx}");
        assert!(out.contains(&format!("asm {tmp} ok")), "{ctx}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&meta).unwrap().permissions());
        assert_eq!(mode & 0o7777, 0o644, "a raw chmod reached the host ({ctx})");
        assert!(out.contains(&format!("chmod {} ok", meta.display())), "{ctx}");
        assert_eq!(fs::read_to_string(&mine).unwrap(), "raw\n");
        assert_eq!(fs::read_to_string(&tmp).unwrap(), "raw\n");
        let _ = fs::remove_file(&tmp);
        if env.store().starts_with("/tmp") {
            assert!(out.contains(&format!("asm {beside} Permission denied")), "{ctx}");
            assert!(!Path::new(&beside).exists(), "{ctx}");
        }
        assert!(out.contains(&format!("w {brokered} ok")), "{ctx}");
        assert_eq!(fs::read_to_string(&brokered).unwrap(), "capsule\n", "{ctx}");
        let _ = fs::remove_file(&brokered);
        plans.push(out.lines().find(|l| l.starts_with("env CAPSULE_PLAN")).unwrap_or_default().to_owned());
    }
    let _ = fs::remove_file(&meta);
    let _ = fs::remove_dir(&tmp_dir);
    assert_eq!(plans[0], "env CAPSULE_PLAN -", "the first run is the full launcher's");
    assert_ne!(plans[1], "env CAPSULE_PLAN -", "the second run starts from its plan: {plans:?}");
    // `--isolation merged` lets the same raw write through (the rules decide, not a blanket
    // refusal); `/srv` only, where nothing lives.
    let srv = &system[3];
    let (code, out, err) = run(&env, &bin, &home, &["--isolation", "/srv=merged"], &[format!("asm:{srv}")]);
    let reached = Path::new(srv).exists();
    let _ = fs::remove_file(srv);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("asm {srv} ok")) && reached, "{out}");
}

#[test]
fn by_default_the_system_is_write_copy_and_home_is_merged() {
    require!(is_root(), "root (as root, nothing but capsule stops a write to /etc or /usr)");
    let (bin, env, home) = setup();
    let id = std::process::id();
    let system: Vec<String> =
        ["/usr/bin", "/etc", "/opt", "/var/run"].iter().map(|d| format!("{d}/capsule-defaults-{id}")).collect();
    let mine = home.join("x");
    let mut paths = system.clone();
    paths.push(mine.display().to_string());
    let writes: Vec<String> = paths.iter().map(|p| format!("w:{p}")).collect();
    let (code, out, err) = run(&env, &bin, &home, &[], &writes);
    assert_eq!(code, 0, "{err}");
    for p in &paths {
        assert!(out.contains(&format!("w {p} ok")), "{out}\n{err}");
    }
    for p in &system {
        assert!(!Path::new(p).exists(), "{p} reached the host");
    }
    // /var/run is /run on the host: nothing there either.
    assert!(!Path::new(&format!("/run/capsule-defaults-{id}")).exists());
    assert_eq!(fs::read_to_string(&mine).unwrap(), "capsule\n", "$HOME is merged");
    // The next run sees its files.
    let reads: Vec<String> = paths.iter().map(|p| format!("r:{p}")).collect();
    let (code, out, err) = run(&env, &bin, &home, &[], &reads);
    assert_eq!(code, 0, "{err}");
    for p in &paths {
        assert!(out.contains(&format!("r {p} capsule")), "{out}\n{err}");
    }
    // A new name in a directory that is nowhere: ENOENT, as natively, and nothing made in the
    // sandbox for it; a host file renamed there stays where it was.
    let nowhere = format!("/capsule-nowhere-{id}");
    let moved = home.join("stays");
    fs::write(&moved, "host\n").unwrap();
    let args = vec![
        format!("w:{nowhere}/x"),
        format!("mkdir:{nowhere}/d"),
        format!("mv:{}|{nowhere}/n", moved.display()),
        format!("w:/opt/{}/x", &nowhere[1..]),
    ];
    let (code, out, err) = run(&env, &bin, &home, &[], &args);
    assert_eq!(code, 0, "{err}");
    for a in &args {
        let (op, path) = a.split_once(':').unwrap();
        assert!(out.contains(&format!("{op} {path} No such file or directory")), "{a}: {out}");
    }
    assert_eq!(fs::read_to_string(&moved).unwrap(), "host\n", "the host file was taken away");
    let diff = env.ok(&["sandbox", "conf", "diff"]);
    assert!(!diff.contains("capsule-nowhere"), "{diff}");
    // `inspect` shows the effective rules.
    let shown = env.ok(&["inspect", "conf"]);
    assert!(shown.contains("effective / writecopy"), "{shown}");
    assert!(shown.contains("effective /tmp merged"), "{shown}");
    assert!(shown.contains("effective /proc passthrough"), "{shown}");
    // And the store, in the merged /tmp here: read-only.
    let store = env.store().canonicalize().unwrap();
    assert!(shown.contains(&format!("effective {} readonly", store.display())), "{shown}");
}

#[test]
fn without_landlock_a_run_says_so_and_full_needs_unconfined() {
    let (bin, env, home) = setup();
    let read = vec!["r:/opt/conf/readme".to_owned()];
    let no_landlock = |opts: &[&str]| {
        let mut c = env.cmd(&["run", "conf", "--seccomp", "never"]);
        c.args(opts).arg("--entry").arg(&bin).arg("--").args(&read).env("HOME", &home);
        c.env("CAPSULE_DEBUG_LANDLOCK", "off").output().unwrap()
    };
    let o = no_landlock(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no Landlock") && err.contains("not confined"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "r /opt/conf/readme r\n");
    let o = no_landlock(&["--isolation", "full"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("full") && err.contains("--unconfined"), "{err}");
    let o = no_landlock(&["--isolation", "full", "--unconfined"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // With Landlock, `run --stats` names the confinement.
    let (code, _, err) = run(&env, &bin, &home, &["--stats"], &read);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("confinement: Landlock ABI"), "{err}");
}

/// A prefix Landlock cannot take a rule for (a namespace's file: EBADFD) stops the run before
/// its program starts, and the error names it; the next try is no different (no plan).
#[test]
fn a_grant_the_kernel_refuses_stops_the_run_and_is_named() {
    let (bin, env, home) = setup();
    let read = vec!["r:/opt/conf/readme".to_owned()];
    for _ in 0..2 {
        let (code, out, err) = run(&env, &bin, &home, &["--isolation", "/proc/self/ns/net=merged"], &read);
        assert_eq!((code, out.as_str()), (125, ""), "{err}");
        assert!(err.contains("cannot grant Landlock access to /proc/self/ns/net"), "{err}");
    }
}

#[test]
fn a_program_an_earlier_run_installed_runs_from_the_sandbox() {
    require!(is_root(), "root (the program is installed into the write-copy /usr/local/bin)");
    let (_, env, home) = setup();
    let id = std::process::id();
    let prog = format!("/usr/local/bin/capsule-installed-{id}");
    let install = format!("printf '#!/bin/sh\\necho installed \"$@\"\\n' > {prog} && chmod 755 {prog}");
    let o = env.cmd(&["run", "conf", "--entry", "/bin/sh", "--", "-c", &install]).env("HOME", &home).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!Path::new(&prog).exists(), "the install reached the host");
    let o = env.cmd(&["run", "conf", "--entry", &prog, "--", "here"]).env("HOME", &home).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "installed here\n");
}

#[test]
fn groupadd_locks_and_writes_the_sandbox_password_files_under_tier_1() {
    require!(is_root(), "root (groupadd)");
    require!(Path::new("/usr/sbin/groupadd").exists(), "groupadd (passwd)");
    let (_, env, home) = setup();
    let name = format!("capsgrp{}", std::process::id() % 100_000);
    let host = fs::read("/etc/group").unwrap();
    let o = env
        .cmd(&["run", "conf", "--seccomp", "never", "--entry", "/usr/sbin/groupadd", "--", &name])
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read("/etc/group").unwrap(), host, "groupadd changed the host's /etc/group");
    let tree = fs::read_to_string(env.store().join("sandboxes/conf/root/etc/group")).unwrap();
    assert!(tree.lines().any(|l| l.starts_with(&format!("{name}:"))), "{tree}");
}

/// As root, what changes the machine rather than files is not the program's (Landlock does
/// not cover it): the capabilities for kernel modules, raw I/O, reboot, the clock, device
/// nodes, immutable flags, accounting, audit, MAC policy, the network's configuration, system
/// administration (BPF, the host's name), the kernel's log and system-wide perf are out of its
/// bounding set (the host's name and `lo` cannot be set), so a
/// block device node cannot be made (in the merged /tmp, where Landlock lets it create files)
/// to reach a disk through; what root needs for files (chown, reading anything) it keeps.
#[test]
fn a_root_program_cannot_load_modules_or_make_device_nodes() {
    require!(is_root(), "root (only root has the capabilities to take away)");
    let env = Env::new();
    env.small_capsule("caps", &[("opt/caps/readme", b"r\n")]);
    let node = format!("/tmp/capsule-caps-node-{}", std::process::id());
    let script = format!(
        "grep -E '^Cap(Bnd|Eff)' /proc/self/status; mknod {node} b 7 0 2>&1; echo mknod=$?; \
         chown 1:1 /opt/caps/readme && echo chown=ok; head -c1 /etc/shadow >/dev/null && echo shadow=read; \
         hostname \"$(hostname)\" 2>/dev/null; echo sethostname=$?; \
         ip link set lo mtu \"$(cat /sys/class/net/lo/mtu)\" 2>/dev/null; echo netadmin=$?"
    );
    let (code, out, err) =
        crate::support::run_capsule(&env, &["run", "caps", "--entry", "/bin/sh", "--", "-c", &script]);
    let _ = fs::remove_file(&node);
    assert_eq!(code, 0, "{out}{err}");
    let mask = |which: &str| {
        let line = out.lines().find(|l| l.starts_with(which)).unwrap_or_else(|| panic!("no {which} in {out}"));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    for (name, bit) in [
        ("LINUX_IMMUTABLE", 9),
        ("NET_ADMIN", 12),
        ("SYS_MODULE", 16),
        ("SYS_RAWIO", 17),
        ("SYS_PACCT", 20),
        ("SYS_ADMIN", 21),
        ("SYS_BOOT", 22),
        ("SYS_TIME", 25),
        ("MKNOD", 27),
        ("AUDIT_CONTROL", 30),
        ("MAC_OVERRIDE", 32),
        ("MAC_ADMIN", 33),
        ("SYSLOG", 34),
        ("PERFMON", 38),
        ("BPF", 39),
    ] {
        assert_eq!(mask("CapBnd:") & (1 << bit), 0, "CAP_{name} in the bounding set: {out}");
        assert_eq!(mask("CapEff:") & (1 << bit), 0, "CAP_{name} effective: {out}");
    }
    // CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_SETUID (7), CAP_NET_BIND_SERVICE (10) and
    // CAP_NET_RAW (13) stay.
    for bit in [0, 1, 7, 10, 13] {
        assert_ne!(mask("CapEff:") & (1 << bit), 0, "capability {bit} taken: {out}");
    }
    assert!(out.contains("Operation not permitted") && !out.contains("mknod=0"), "{out}");
    assert!(out.contains("chown=ok") && out.contains("shadow=read"), "{out}{err}");
    // The host's name and network configuration (set to what they are: nothing changes even
    // where the call would be let through).
    assert!(out.contains("sethostname=") && !out.contains("sethostname=0"), "{out}{err}");
    assert!(out.contains("netadmin=") && !out.contains("netadmin=0"), "{out}{err}");
    assert!(!Path::new(&node).exists(), "a device node reached the host's /tmp");

    // The host's disks: as root, no block device of /dev opens for writing (Landlock: /dev
    // is expanded, a disk granted nothing), while /dev/null and /dev/shm stay the program's.
    use std::os::unix::fs::FileTypeExt;
    let disk = fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.path());
    let Some(disk) = disk else {
        require!(false, "a block device in /dev (the host's disks)");
        return;
    };
    // Natively, root opens it for writing (nothing is written).
    assert!(fs::OpenOptions::new().write(true).open(&disk).is_ok(), "{} does not open natively", disk.display());
    let py = "import os, sys\n\
              try:\n    os.close(os.open(sys.argv[1], os.O_WRONLY)); print('disk opened')\n\
              except OSError as e: print('disk', e.strerror)\n\
              os.close(os.open('/dev/null', os.O_WRONLY)); print('null ok')\n\
              p = '/dev/shm/capsule-caps-%d' % os.getpid(); open(p, 'w').write('x'); os.unlink(p); print('shm ok')\n";
    let (code, out, err) = crate::support::run_capsule(
        &env,
        &["run", "caps", "--entry", "/usr/bin/python3", "--", "-c", py, disk.to_str().unwrap()],
    );
    assert_eq!((code, out.as_str()), (0, "disk Permission denied\nnull ok\nshm ok\n"), "{err}");

    // What needs a capability the program lacks, the supervisor does not do for it either: a
    // `trusted.*` xattr (CAP_SYS_ADMIN) on a file of merged /tmp, which the guard (tier 1) and
    // tier 2 make on the program's behalf. (It did: the supervisor is the launcher, root with
    // every capability.)
    let file = format!("/tmp/capsule-caps-xattr-{}", std::process::id());
    fs::write(&file, "x").unwrap();
    let py = "import os, sys\n\
              try:\n    os.setxattr(sys.argv[1], 'trusted.capsule', b'1'); print('trusted set')\n\
              except OSError as e: print('trusted', e.strerror)\n\
              os.setxattr(sys.argv[1], 'user.capsule', b'1'); print('user set')\n";
    for seccomp in ["never", "always"] {
        let (code, out, err) = crate::support::run_capsule(
            &env,
            &["run", "caps", "--seccomp", seccomp, "--entry", "/usr/bin/python3", "--", "-c", py, &file],
        );
        assert_eq!(
            (code, out.as_str()),
            (0, "trusted Operation not permitted\nuser set\n"),
            "--seccomp {seccomp}: {err}"
        );
        let check = "import os, sys; os.getxattr(sys.argv[1], 'trusted.capsule')";
        let host = Command::new("python3").args(["-c", check, &file]).output().unwrap();
        assert!(!host.status.success(), "trusted.capsule reached the host file (--seccomp {seccomp})");
    }
    let _ = fs::remove_file(&file);
}

/// A program signals only its own run (Landlock's signal scope, ABI 6): not the run's keeper
/// (its parent, which would take the run's processes out of the launcher's reach), not another
/// process of the same user; its own children it can. On both launch paths: the full launcher,
/// then from the plan it wrote.
#[test]
fn a_program_cannot_signal_outside_its_run() {
    let env = Env::new();
    env.small_capsule("sig", &[("opt/sig/readme", b"r\n")]);
    let (_, _, err) = crate::support::run_capsule(&env, &["run", "--stats", "sig", "--entry", "/bin/true"]);
    let abi = err
        .split("Landlock ABI ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    require!(abi >= 6, "Landlock ABI 6 or later (signal scoping)");
    let mut host = Command::new("sleep").arg("60").spawn().unwrap();
    let script = format!(
        "echo plan=${{CAPSULE_PLAN:--}}; \
         if kill -9 $PPID 2>/dev/null; then echo keeper-killed; else echo keeper-kept; fi; \
         if kill -9 {} 2>/dev/null; then echo host-killed; else echo host-kept; fi; \
         sleep 30 & if kill -9 $!; then echo own-killed; fi; wait",
        host.id()
    );
    let mut plans = Vec::new();
    for round in 0..2 {
        let (code, out, err) =
            crate::support::run_capsule(&env, &["run", "sig", "--entry", "/bin/sh", "--", "-c", &script]);
        let ctx = format!("round {round}:\n{out}\n{err}");
        assert_eq!(code, 0, "{ctx}");
        let mut lines = out.lines();
        plans.push(lines.next().unwrap_or_default().to_owned());
        assert_eq!(lines.collect::<Vec<_>>(), ["keeper-kept", "host-kept", "own-killed"], "{ctx}");
        assert!(host.try_wait().unwrap().is_none(), "the host's process was killed ({ctx})");
    }
    let _ = host.kill();
    let _ = host.wait();
    assert_eq!(plans[0], "plan=-", "the first run is the full launcher's");
    assert_ne!(plans[1], "plan=-", "the second run starts from its plan: {plans:?}");
}

/// As root, the system's settings and the host's disks stay out of reach whichever tier makes
/// the call (docs/security.md, "A run as root"): `/proc/sys` and `/sys` are read-only and every
/// block device of `/dev` is sealed (`nodev`, read-only) in the run's own mount namespace, so
/// neither a raw open by the program, nor one that tier 2's supervisor makes on its behalf
/// through a symlink the program put in its tree, nor a change of mode the guard makes, reaches
/// them. On both launch paths (the full launcher, then its plan) and with both tiers.
#[test]
fn as_root_the_system_settings_and_disks_stay_out_of_reach_through_every_tier() {
    require!(is_root(), "root (only root could write them)");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let Some(disk) = fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.path())
    else {
        require!(false, "a block device in /dev (the host's disks)");
        return;
    };
    let disk_mode = fs::metadata(&disk).unwrap().permissions().mode();
    let domain = fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let (bin, env, home) = setup();
    let (disk, sp) = (disk.to_str().unwrap().to_owned(), "/proc/sys/kernel/domainname");
    // And through the kernel's links to "this process", which tier 2's supervisor must read
    // as the program's, not its own (the launcher's root, memory and descriptors).
    let ln = format!(
        "ln -s {sp} /opt/conf/sp && ln -s {disk} /opt/conf/disk && \
         ln -s /proc/self/root{sp} /opt/conf/selfroot && ln -s /proc/self/comm /opt/conf/comm && \
         ln -s /proc/1/environ /opt/conf/init"
    );
    let (code, _, err) = crate::support::run_capsule(&env, &["run", "conf", "--entry", "/bin/sh", "--", "-c", &ln]);
    assert_eq!(code, 0, "{err}");
    let args: Vec<String> = [
        "env:CAPSULE_PLAN".to_owned(),
        format!("wo:{sp}"),
        "wo:/opt/conf/sp".to_owned(),
        "wo:/sys/class/net/lo/mtu".to_owned(),
        format!("wo:{disk}"),
        "wo:/opt/conf/disk".to_owned(),
        format!("chmod:{disk}"),
        "chmod:/opt/conf/disk".to_owned(),
        "chmod:/dev/null".to_owned(),
        // Its stdin, /dev/null opened by this test on the host's /dev (a change by descriptor
        // the supervisor makes on a duplicate, outside the run's read-only /dev).
        "fchmod:0".to_owned(),
        "wo:/opt/conf/selfroot".to_owned(),
        "r:/opt/conf/comm".to_owned(),
        "wo:/opt/conf/init".to_owned(),
        "tpid:/opt/conf/pidcomm".to_owned(),
    ]
    .into();
    let mut outs = Vec::new();
    for seccomp in ["never", "never", "always"] {
        let mut c = env.cmd(&["run", "conf", "--seccomp", seccomp, "--entry"]);
        let o = c.arg(&bin).arg("--").args(&args).env("HOME", &home).output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let ctx = format!("--seccomp {seccomp}:\n{out}\n{err}");
        let now = fs::metadata(&disk).unwrap().permissions().mode();
        if now != disk_mode {
            fs::set_permissions(&disk, fs::Permissions::from_mode(disk_mode)).unwrap();
        }
        let null = fs::metadata("/dev/null").unwrap().permissions().mode();
        if null & 0o777 != 0o666 {
            fs::set_permissions("/dev/null", fs::Permissions::from_mode(0o666)).unwrap();
        }
        assert_eq!(null & 0o777, 0o666, "the mode of /dev/null changed ({ctx})");
        assert_eq!(o.status.code(), Some(0), "{ctx}");
        assert_eq!(now, disk_mode, "the mode of {disk} changed ({ctx})");
        assert_eq!(fs::read_to_string(sp).unwrap(), domain, "{ctx}");
        assert!(!out.contains("opened") && !out.contains(" ok\n"), "{ctx}");
        assert!(out.contains(&format!("wo {sp} Read-only file system")), "{ctx}");
        assert!(out.contains("wo /sys/class/net/lo/mtu Read-only file system"), "{ctx}");
        assert!(out.contains(&format!("wo {disk} Permission denied")), "{ctx}");
        assert!(out.contains(&format!("chmod {disk} Read-only file system")), "{ctx}");
        assert!(out.contains("chmod /opt/conf/disk Read-only file system"), "{ctx}");
        assert!(out.contains("chmod /dev/null Read-only file system"), "{ctx}");
        assert!(out.contains("fchmod 0 Read-only file system"), "{ctx}");
        if seccomp == "always" {
            // Served by the supervisor, which follows the tree's symlinks to the host.
            assert!(out.contains("wo /opt/conf/sp Read-only file system"), "{ctx}");
            assert!(out.contains("wo /opt/conf/disk Permission denied"), "{ctx}");
            assert!(out.contains("wo /opt/conf/selfroot Read-only file system"), "{ctx}");
            assert!(out.contains("r /opt/conf/comm confine"), "the program's own /proc/self ({ctx})");
            assert!(out.contains("wo /opt/conf/init Permission denied"), "{ctx}");
            // Its own process by number, from a thread that is not the main one.
            assert!(out.contains("tpid /opt/conf/pidcomm confine"), "{ctx}");
        }
        outs.push(out.lines().next().unwrap_or_default().to_owned());
    }
    assert_eq!(outs[0], "env CAPSULE_PLAN -", "the first run is the full launcher's");
    assert_ne!(outs[1], "env CAPSULE_PLAN -", "the second run starts from its plan: {outs:?}");
}

/// The tree's pristine files are hardlinks to the shared cache: a raw open of one for writing,
/// by its path in the store (which a program can find in its own `/proc/self/maps`), would
/// change that content for every capsule holding it. The program's Landlock domain has no
/// right to open a file of the tree for writing; the shim has the materialiser do it (after a
/// copy-up). With the store outside every writable prefix (here `/tmp` write-copy), the raw
/// opens are refused, the shim's write lands in a private copy, and the cache is intact. On
/// both launch paths (the full launcher, then its plan).
#[test]
fn a_raw_write_to_a_pristine_file_of_the_tree_is_refused_and_the_cache_stays_intact() {
    let (bin, env, home) = setup();
    let file = env.store().join("sandboxes/conf/root/opt/conf/readme");
    let f = file.to_str().unwrap().to_owned();
    let args: Vec<String> = vec![
        "env:CAPSULE_PLAN".into(),
        "r:/opt/conf/readme".into(),
        format!("wo:{f}"),
        format!("asm:{f}"),
        format!("r:{f}"),
    ];
    let mut plans = Vec::new();
    for _ in 0..2 {
        let (code, out, err) = run(&env, &bin, &home, &[], &args);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("r /opt/conf/readme r\n"), "{out}");
        assert!(out.contains(&format!("wo {f} Permission denied")), "the raw open for writing: {out}");
        assert!(out.contains(&format!("asm {f} Permission denied")), "the raw write: {out}");
        assert!(out.contains(&format!("r {f} r\n")), "{out}");
        plans.push(out.lines().next().unwrap_or_default().to_owned());
        // Still the cache's inode, and its content.
        use std::os::unix::fs::MetadataExt;
        assert!(fs::metadata(&file).unwrap().nlink() > 1, "a pristine link");
    }
    assert_eq!(plans[0], "env CAPSULE_PLAN -", "the first run is the full launcher's");
    assert_ne!(plans[1], "env CAPSULE_PLAN -", "the second run starts from its plan: {plans:?}");
    // Through the shim, the same file is written: copied up first, by the materialiser.
    let (code, out, err) = run(&env, &bin, &home, &[], &["w:/opt/conf/readme".into(), format!("r:{f}")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("w /opt/conf/readme ok") && out.contains(&format!("r {f} capsule")), "{out}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&file).unwrap().nlink(), 1, "a private copy");
    assert_eq!(env.json(&["verify"])["ok"], true, "the cache files match their digests");
    let (code, out, _) = run(
        &env,
        &bin,
        &home,
        &["--sandbox", "fresh"],
        &["r:/opt/conf/readme".into(), "w:/opt/conf/fresh-only".into()],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "r /opt/conf/readme r\nw /opt/conf/fresh-only ok\n"),
        "another sandbox reads the capsule's content"
    );
    // `sandbox NAME --sandbox S` looks at the sandbox `run --sandbox S` used.
    let diff = env.ok(&["sandbox", "conf", "--sandbox", "fresh", "diff"]);
    assert!(diff.lines().any(|l| l == "A /opt/conf/fresh-only"), "{diff}");
    assert!(!env.ok(&["sandbox", "conf", "diff"]).contains("fresh-only"));
    let o = env.fails(&["sandbox", "conf", "--sandbox", "nosuch", "diff"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sandbox named nosuch"), "{o:?}");
}

/// chroot in a capsule (sshd's privilege-separated child, haproxy's `chroot`): a process with
/// CAP_SYS_CHROOT gets a jail in the view (absolute paths below the directory, `..` stopping
/// there, no exec); one without is refused, as by the kernel.
#[test]
fn a_root_program_chroots_into_a_directory_of_its_view() {
    require!(is_root(), "root (chroot needs CAP_SYS_CHROOT)");
    let (bin, env, home) = setup();
    let (code, _, err) = crate::support::run_capsule(
        &env,
        &["run", "conf", "--entry", "/bin/sh", "--", "-c", "mkdir -p /run/capjail/x && echo in > /run/capjail/inside"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!Path::new("/run/capjail").exists(), "written to the host");
    let (code, out, err) = run(&env, &bin, &home, &[], &["jail:/run/capjail".into()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "jail /run/capjail entries=2 passwd=0 cwd=/ inside=in exec=Operation not permitted\n", "{err}");
    let (code, out, err) = run(&env, &bin, &home, &["--user", "nobody"], &["jail:/run/capjail".into()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "jail /run/capjail Operation not permitted\n", "{err}");
}

/// The store is out of the program's reach by its host path even where it lies in a merged
/// prefix (the default store is in `$HOME`; the tests' is in `/tmp`): the rules make it
/// read-only, so Landlock grants the merged prefix around it entry by entry, and the names
/// made, renamed and removed directly beside the store, or in a directory made there during the
/// run, are made by the broker (the materialiser for tier 1, the supervisor for tier 2), as the
/// merged prefix promises. Tier 1 from the full launcher and from its plan, and tier 2.
#[test]
fn beside_the_store_names_are_made_as_merged_and_the_store_is_out_of_reach() {
    let (bin, env, home) = setup();
    // The directory holding the store: expanded around it.
    let e = env.store().parent().unwrap().to_path_buf();
    let store = env.store();
    // The same arguments twice (a plan is the same command's), then tier 2, then a write to
    // the store's path through libc.
    // A file of the shared cache, and its mode (the hostile part: a symlink to it beside the
    // store, and one in the tree to that, through which the supervisor must not change it).
    env.ok(&["run", "conf", "--entry", "/bin/cat", "--", "/opt/conf/readme"]);
    let cached = crate::support::walk(&store.join("cache")).into_iter().find(|p| p.is_file()).expect("a cache file");
    let mode_of = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).unwrap().permissions());
    let cached_mode = mode_of(&cached);
    let rounds = [("never", false), ("never", false), ("always", false), ("never", true)];
    for (round, (seccomp, store_write)) in rounds.into_iter().enumerate() {
        let at = |n: &str| e.join(format!("confine-{n}")).display().to_string();
        let (f1, f3, d, l, raw, sock) = (at("f1"), at("f3"), at("d"), at("l"), at("raw"), at("s"));
        let in_d = format!("{d}/f2");
        let evil = store.join("evil").display().to_string();
        let mut args: Vec<String> = vec![
            format!("w:{f1}"),
            format!("mkdir:{d}"),
            format!("w:{in_d}"),
            format!("mv:{f1}|{f3}"),
            format!("ln:{f3}|{l}"),
            format!("r:{l}"),
            format!("rm:{l}"),
            format!("rm:{in_d}"),
            format!("rmdir:{d}"),
            format!("asm:{raw}"),
            format!("sock:{sock}"),
            format!("rm:{sock}"),
            format!("trunc:{f3}"),
            format!("tmpf:{}", e.display()),
            format!("asm:{evil}"),
            format!("mv:{}|{}", store.display(), at("stolen")),
            format!("ln:{}|{}", cached.display(), at("tocache")),
            format!("ln:{}|/opt/conf/tocache", at("tocache")),
            format!("chmod:{}", at("tocache")),
            "chmod:/opt/conf/tocache".into(),
            "wo:/opt/conf/tocache".into(),
            format!("rm:{}", at("tocache")),
            "rm:/opt/conf/tocache".into(),
            // The cache file's directory by a symlink beside the store, reached through a
            // tree symlink: the file may not be renamed out of the cache.
            format!("ln:{}|{}", cached.parent().unwrap().display(), at("tocachedir")),
            format!("ln:{}|/opt/conf/tocachedir", at("tocachedir")),
            format!("mv:/opt/conf/tocachedir/{}|{}", cached.file_name().unwrap().to_str().unwrap(), at("stolen2")),
            format!("rawmv:/opt/conf/tocachedir/{}|{}", cached.file_name().unwrap().to_str().unwrap(), at("stolen2")),
            format!("rm:{}", at("tocachedir")),
            "rm:/opt/conf/tocachedir".into(),
            "env:CAPSULE_PLAN".into(),
        ];
        if store_write {
            args.push(format!("w:{evil}"));
        }
        let mut c: Command = env.cmd(&["run", "conf", "--seccomp", seccomp, "--entry"]);
        c.arg(&bin).arg("--").args(&args).env("HOME", &home);
        let o = c.output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let ctx = format!("round {round} (--seccomp {seccomp}):\n{out}\n{err}");
        assert_eq!(o.status.code(), Some(0), "{ctx}");
        for line in [
            format!("w {f1} ok"),
            format!("mkdir {d} ok"),
            format!("w {in_d} ok"),
            format!("mv {f1}|{f3} ok"),
            format!("ln {f3}|{l} ok"),
            format!("r {l} capsule"),
            format!("rm {l} ok"),
            format!("rm {in_d} ok"),
            format!("rmdir {d} ok"),
            format!("rm {sock} ok"),
            format!("trunc {f3} ok"),
            format!("tmpf {} ok", e.display()),
            // A unix socket bound beside the store: the broker binds the program's socket.
            format!("sock {sock} ok {sock}"),
            // Through libc, the store's path is read-only.
            if store_write { format!("w {evil} Read-only file system") } else { format!("rmdir {d} ok") },
        ] {
            assert!(out.lines().any(|o| o == line), "{line:?} missing: {ctx}");
        }
        assert_eq!(fs::read_to_string(&f3).unwrap(), "c", "written, renamed, then truncated: {ctx}");
        assert!(!Path::new(&f1).exists() && !Path::new(&d).exists() && !Path::new(&l).exists(), "{ctx}");
        if seccomp == "never" {
            // A raw creation beside the store is the kernel's to refuse (no broker sees it);
            // one in the store too.
            assert!(out.contains(&format!("asm {raw} Permission denied")), "{ctx}");
            assert!(out.contains(&format!("asm {evil} Permission denied")), "{ctx}");
            let plan = out.lines().find(|l| l.starts_with("env CAPSULE_PLAN")).unwrap_or_default();
            if round < 2 {
                assert_eq!(plan == "env CAPSULE_PLAN -", round == 0, "full launcher, then the plan: {ctx}");
            }
        } else {
            // Tier 2 sees every call: the raw one is made by the broker, and the store's path
            // is read-only.
            assert!(out.contains(&format!("asm {raw} ok")), "{ctx}");
            assert!(out.contains(&format!("asm {evil} Read-only file system")), "{ctx}");
            let _ = fs::remove_file(&raw);
        }
        assert!(!Path::new(&evil).exists(), "the store was written: {ctx}");
        // Through a symlink to the cache: no change of mode (the guard's or tier 2's
        // supervisor would make it outside the domain), no open for writing.
        let tocache = at("tocache");
        for line in
            [format!("chmod {tocache} Read-only file system"), "chmod /opt/conf/tocache Read-only file system".into()]
        {
            assert!(out.lines().any(|o| o == line), "{line:?} missing: {ctx}");
        }
        assert!(!out.contains("wo /opt/conf/tocache opened"), "{ctx}");
        assert!(cached.is_file() && !Path::new(&at("stolen2")).exists(), "a cache file was moved out: {ctx}");
        assert_eq!(mode_of(&cached), cached_mode, "a cache file's mode changed: {ctx}");
        assert!(!out.contains(&format!("mv {}|{} ok", store.display(), at("stolen"))), "{ctx}");
        assert!(store.join("blobs").is_dir() && !Path::new(&at("stolen")).exists(), "{ctx}");
        let _ = fs::remove_file(&f3);
    }
    assert_eq!(env.json(&["verify"])["ok"], true, "the cache files match their digests");
}

/// The store is read-only to its programs whatever the rule above it (merged `/tmp` here, or
/// write-copy): every change of it fails with EROFS in both tiers and nothing of it is copied
/// into the sandbox, and the run's own sandbox directory is an empty one to it (its tree's host
/// path is the program's `/`). A recursive `chmod` and `chown` of the directory holding the
/// store (the incident: a `chown -R` from `/` copied the write-copy store into its own sandbox,
/// level after level) change what the rules let them change and nothing of the store.
#[test]
fn the_store_is_read_only_to_its_programs_and_a_recursive_change_leaves_it_alone() {
    require!(crate::support::has("python3"), "python3 (the snapshot of the store)");
    let (_bin, env, home) = setup();
    env.ok(&["run", "conf", "--entry", "/bin/cat", "--", "/opt/conf/readme"]);
    let store = env.store();
    let top = env.dir.path().to_path_buf();
    let s = store.display().to_string();
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), "data\n").unwrap();
    let parts = ["blobs", "cache", "refs"];
    let snap = || parts.iter().map(|p| crate::escape::snapshot(&store.join(p))).collect::<Vec<_>>();
    let names = || {
        let mut n: Vec<String> =
            fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        n.sort();
        n
    };
    let cached = crate::support::walk(&store.join("cache")).into_iter().find(|p| p.is_file()).expect("a cache file");
    let script = format!(
        "touch {s}/new; echo touch $?
         mkdir {s}/d; echo mkdir $?
         ln -s x {s}/l; echo ln $?
         chmod 777 {c}; echo chmod $?
         echo x >> {c}; echo append $?
         mv {s}/cache {s}/cache2; echo mv $?
         rm -rf {s}/blobs; echo rm $?
         cat {c} >/dev/null; echo read $?
         ls -A {s}/sandboxes/conf; echo list $?
         find {t} -name nothing-here; echo find $?
         tar cf /dev/null -C {t} .; echo tar $?
         readlink -f {s}/sandboxes/conf/root/opt/conf/readme >/dev/null; echo realpath $?
         cat {s}/sandboxes/conf/root/opt/conf/readme; echo tree $?
         chmod -R g-w {t}; echo chmod-R $?
         chown -R -h 0:0 {t}; echo chown-R $?",
        c = cached.display(),
        t = top.display()
    );
    let (before, names_before) = (snap(), names());
    for (seccomp, iso) in
        [("never", "/tmp=merged"), ("always", "/tmp=merged"), ("never", "/tmp=writecopy"), ("always", "/tmp=writecopy")]
    {
        let mut c: Command = env.cmd(&[
            "run",
            "conf",
            "--seccomp",
            seccomp,
            "--isolation",
            iso,
            "--entry",
            "/bin/sh",
            "--",
            "-c",
            &script,
        ]);
        let o = c.env("HOME", &home).output().unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let ctx = format!("--seccomp {seccomp} --isolation {iso}:\n{out}\n{err}");
        for op in ["touch", "mkdir", "ln", "chmod", "append", "mv", "rm", "chmod-R", "chown-R"] {
            assert!(
                out.lines().any(|l| l.strip_prefix(op).is_some_and(|r| r.starts_with(' ') && r != " 0")),
                "{op} succeeded: {ctx}"
            );
        }
        assert!(out.contains("read 0"), "the store is readable: {ctx}");
        // The tree by its host path is the program's view (a program that found its files by
        // their loaded path), and every component of that path can be resolved.
        assert!(out.contains("realpath 0") && out.contains("r\ntree 0"), "{ctx}");
        for what in [
            format!("{s}/new"),
            format!("{s}/d"),
            format!("{s}/l"),
            cached.display().to_string(),
            format!("{s}/cache"),
            format!("{s}/blobs/"),
        ] {
            assert!(err.lines().any(|l| l.contains(&what) && l.ends_with("Read-only file system")), "{what}: {ctx}");
        }
        // The run's own sandbox directory is an empty one: walks of the directory holding
        // the store go through without an error (a backup of `$HOME` from a capsule).
        assert!(out.contains("list 0\nfind 0\n"), "{ctx}");
        assert!(out.lines().any(|l| l == "tar 0" || l == "tar 1"), "{ctx}");
        assert!(!err.contains("Permission denied"), "{ctx}");
        assert!(!err.contains("fts_read"), "the walk went astray: {ctx}");
        assert_eq!((snap(), names()), (before.clone(), names_before.clone()), "the store changed: {ctx}");
        // Nothing of the store in the sandbox (nor the capsule's /opt walked as the tree's).
        let diff = env.ok(&["sandbox", "conf", "diff"]);
        let walked_astray = |l: &str| l.contains(&s) || l.split_once(' ').is_some_and(|(_, p)| p.starts_with("/opt"));
        assert!(!diff.lines().any(walked_astray), "{ctx}\n{diff}");
        assert!(!store.join("sandboxes/conf/root").join(store.strip_prefix("/").unwrap()).exists(), "{ctx}");
        // What the rules let the walk change: the merged data on the host, the write-copy
        // data in the sandbox.
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(data.join("f")).unwrap().permissions());
        assert_eq!(mode & 0o020 == 0, iso.ends_with("merged"), "{ctx}");
        if iso.ends_with("writecopy") {
            assert!(diff.contains(&data.join("f").display().to_string()), "{ctx}\n{diff}");
        }
        env.ok(&["sandbox", "conf", "reset"]);
        let _ = Command::new("chmod").arg("g+w").arg(data.join("f")).status();
    }
    assert_eq!(env.json(&["verify"])["ok"], true, "the cache files match their digests");
    // The mode is the user's too: `readonly` for any prefix.
    let f = data.join("f").display().to_string();
    let rule = format!("{}=readonly", data.display());
    for seccomp in ["never", "always"] {
        let script = format!("cat {f}; echo y >> {f}; echo append $?; rm {f}; echo rm $?");
        let o = env
            .cmd(&[
                "run",
                "conf",
                "--seccomp",
                seccomp,
                "--isolation",
                &rule,
                "--entry",
                "/bin/sh",
                "--",
                "-c",
                &script,
            ])
            .output()
            .unwrap();
        let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(out, "data\nappend 2\nrm 1\n", "--seccomp {seccomp}: {err}");
        assert_eq!(err.matches("Read-only file system").count(), 2, "--seccomp {seccomp}: {err}");
        assert_eq!(fs::read_to_string(data.join("f")).unwrap(), "data\n");
    }
    assert_eq!(env.ok(&["sandbox", "conf", "diff"]).trim(), "", "nothing was copied into the sandbox");
}

/// The changes of metadata the supervisor now makes itself (not `CONTINUE`d: Landlock does not
/// judge them) answer as the kernel does, on a merged directory, under tier 1 (the guard) and
/// tier 2: a trailing '/' or '.' (ENOTDIR on a file, the directory a symlink names followed),
/// calls that do not follow a symlink, truncating read-opens, the AT_EMPTY_PATH forms, and
/// `mkdir("/tmp/")` (EEXIST, which `mkdir -p` needs: a static busybox's failed with EACCES).
#[test]
fn metadata_calls_on_a_merged_directory_answer_as_natively() {
    require!(crate::support::has("python3"), "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/metadata_calls.py");
    let env = Env::new();
    env.small_capsule("meta", &[("opt/meta/readme", b"r\n")]);
    let dir = |tag: &str| format!("/tmp/capsule-meta-{}-{tag}", std::process::id());
    let native = Command::new("python3").arg(&script).arg(dir("native")).output().unwrap();
    assert!(native.status.success(), "{}", String::from_utf8_lossy(&native.stderr));
    let native = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.contains("chmod f/ Not a directory") && native.contains("mkdir /tmp/ File exists"), "{native}");
    for seccomp in ["never", "always"] {
        let (code, out, err) = crate::support::run_capsule(
            &env,
            &[
                "run",
                "meta",
                "--seccomp",
                seccomp,
                "--entry",
                "/usr/bin/python3",
                "--",
                script.to_str().unwrap(),
                &dir(seccomp),
            ],
        );
        let _ = fs::remove_dir_all(dir(seccomp));
        assert_eq!((code, out.as_str()), (0, native.as_str()), "--seccomp {seccomp}: {err}");
    }
    let _ = fs::remove_dir_all(dir("native"));

    // A static program (tier 2 serves its mkdir): `mkdir -p` walks from "/tmp/".
    require!(crate::supervisor::static_busybox(), "{} from busybox-static", crate::supervisor::BUSYBOX);
    let deep = format!("{}/a/b", dir("busybox"));
    let (code, out, err) = crate::support::run_capsule(
        &env,
        &[
            "run",
            "meta",
            "--entry",
            crate::supervisor::BUSYBOX,
            "--",
            "sh",
            "-c",
            &format!("mkdir -p {deep} && echo made"),
        ],
    );
    assert_eq!((code, out.as_str()), (0, "made\n"), "{err}");
    assert!(Path::new(&deep).is_dir(), "{deep} not made on the host (/tmp is merged)");
    let _ = fs::remove_dir_all(dir("busybox"));
}
