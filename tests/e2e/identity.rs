//! Identity (issue 5, done-when 3 and the error cases): host name, domain and machine-id as
//! the program sees them, through the shim (dynamic programs) and the supervisor (static).

use std::path::Path;

use crate::require;
use crate::support::{Env, run_capsule};

const MID: &str = "0123456789abcdef0123456789abcdef";

/// fixtures/c/NAME.c built with gcc `flags` into the test's directory.
fn fixture(env: &Env, name: &str, flags: &[&str]) -> std::path::PathBuf {
    let bin = env.path(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../fixtures/c/{name}.c"));
    let o = std::process::Command::new("gcc").args(flags).arg("-o").arg(&bin).arg(&src).output().unwrap();
    assert!(o.status.success(), "gcc {name}.c: {}", String::from_utf8_lossy(&o.stderr));
    bin
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

#[test]
fn busybox_static_sees_the_capsule_hostname_and_machine_id() {
    require!(
        std::fs::read("/bin/busybox")
            .is_ok_and(|b| capsule_core::supervisor::auto::linkage_of(&b[..b.len().min(65536)])
                == capsule_core::supervisor::auto::Linkage::Static),
        "/bin/busybox from busybox-static"
    );
    assert_ne!(host_hostname(), "capsule-db1", "the host is called capsule-db1");
    let env = Env::new();
    env.small_capsule("ident", &[("opt/ident/x", b"x\n")]);
    let (code, out, err) = run_capsule(
        &env,
        &[
            "run",
            "ident",
            "--hostname",
            "capsule-db1",
            "--machine-id",
            MID,
            "--entry",
            "/bin/busybox",
            "--",
            "sh",
            "-c",
            "hostname; cat /etc/machine-id; uname -n; hostname capsule-db2 && hostname",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // sethostname inside the capsule renames the capsule, never the machine.
    assert_eq!(out, format!("capsule-db1\n{MID}\ncapsule-db1\ncapsule-db2\n"));
    assert_ne!(host_hostname(), "capsule-db2", "the machine was renamed");
    assert_ne!(
        std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
        MID,
        "the host's machine-id changed"
    );
}

#[test]
fn dynamic_programs_see_it_through_the_shim() {
    require!(Path::new("/usr/bin/python3").exists(), "python3");
    let env = Env::new();
    env.small_capsule("ident", &[("opt/ident/x", b"x\n")]);
    let (code, out, err) = run_capsule(
        &env,
        &[
            "run",
            "ident",
            "--hostname",
            "web1",
            "--domain",
            "example.org",
            "--machine-id",
            MID,
            "--entry",
            "/bin/sh",
            "--",
            "-c",
            "hostname; uname -n; cat /etc/hostname /proc/sys/kernel/hostname /var/lib/dbus/machine-id; \
           python3 -c 'import os, socket; print(socket.gethostname()); socket.sethostname(\"web9\"); print(socket.gethostname()); os.system(\"hostname\")'",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("web1\nweb1\nweb1\nweb1\n{MID}\nweb1\nweb9\nweb9\n"));
    assert_ne!(host_hostname(), "web9", "the machine was renamed");
    // Without options the machine's own name shows.
    let (_, out, _) = run_capsule(&env, &["run", "ident", "--entry", "/bin/hostname"]);
    assert_eq!(out.trim(), host_hostname());
}

#[test]
fn bad_identity_values_are_refused_before_the_program_starts() {
    let env = Env::new();
    env.small_capsule("ident", &[("opt/ident/x", b"x\n")]);
    let long = "h".repeat(65);
    for (args, want) in [
        (vec!["--hostname", long.as_str()], format!("invalid hostname {long:?}")),
        (vec!["--machine-id", "nothex"], "invalid machine-id \"nothex\"".to_owned()),
        (vec!["--domain", "bad domain"], "invalid domain \"bad domain\"".to_owned()),
    ] {
        let mut a = vec!["run", "ident"];
        a.extend(args);
        a.extend(["--entry", "/bin/sh", "--", "-c", "echo started"]);
        let (code, out, err) = run_capsule(&env, &a);
        assert_eq!(code, 125, "{err}");
        assert!(err.contains(&want), "{err}");
        assert!(out.is_empty(), "the program ran: {out}");
    }
}

#[test]
fn interface_queries_show_the_capsule_address_and_mac() {
    require!(crate::support::has("gcc"), "gcc");
    let iface = capsule_core::run::identity::primary_interface();
    require!(iface.is_some(), "a network interface other than lo");
    let iface = iface.unwrap();
    let env = Env::new();
    env.small_capsule("ident", &[("opt/ident/x", b"x\n")]);
    // PROGRAM ARGS... run in the capsule with the address and MAC; its output.
    let with_identity = |program: &str, args: &[&str]| {
        let mut a = vec!["run", "ident", "--ip", "127.0.0.9", "--mac", "02:42:ac:11:00:09", "--entry", program, "--"];
        a.extend_from_slice(args);
        let (code, out, err) = run_capsule(&env, &a);
        assert_eq!(code, 0, "{program}: {err}");
        out
    };
    let expect = |out: &str, wants: &[&str], what: &str| {
        for want in wants {
            assert!(out.lines().any(|l| l == *want), "{what}: {want} missing from:\n{out}");
        }
    };
    let seen = [
        "getifaddrs inet 127.0.0.9",
        "getifaddrs mac 02:42:ac:11:00:09",
        "SIOCGIFADDR 127.0.0.9",
        "SIOCGIFHWADDR 02:42:ac:11:00:09",
        "SIOCGIFCONF 127.0.0.9",
        "recvmsg unix ping",
    ];
    let bin = fixture(&env, "ifaddr", &[]);
    let out = with_identity(bin.to_str().unwrap(), &[&iface]);
    expect(&out, &seen, "dynamic");
    // glibc's derivation from 127.0.0.9 (s_addr 0x0900007f, 16-bit halves swapped).
    expect(&out, &["gethostid 007f0900"], "dynamic");
    // The same program linked statically (tier 2: the supervisor traps the three ioctls, and
    // recvmsg for its getifaddrs' netlink reads; a unix socket's recvmsg still works), and
    // busybox-static's ifconfig.
    if Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() {
        let bin = fixture(&env, "ifaddr", &["-static"]);
        expect(&with_identity(bin.to_str().unwrap(), &[&iface]), &seen, "static");
    } else {
        crate::support::require_or_skip("libc.a (libc6-dev) for the static interface fixture");
    }
    if crate::support::has("busybox") {
        let out = with_identity("/bin/busybox", &["ifconfig", &iface]);
        assert!(
            out.contains("inet addr:127.0.0.9 ") && out.to_lowercase().contains("hwaddr 02:42:ac:11:00:09"),
            "{out}"
        );
    } else {
        crate::support::require_or_skip("busybox (busybox-static) for ifconfig");
    }
    let sys = format!("/sys/class/net/{iface}/address");
    let (_, out, _) =
        run_capsule(&env, &["run", "ident", "--mac", "02:42:ac:11:00:09", "--entry", "/bin/cat", "--", &sys]);
    assert_eq!(out, "02:42:ac:11:00:09\n");
    let (code, _, err) = run_capsule(&env, &["run", "ident", "--mac", "02:42:zz", "--entry", "/bin/true"]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid MAC address \"02:42:zz\""), "{err}");
}

#[test]
fn a_static_program_binds_on_the_capsule_address() {
    require!(Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists(), "libc.a (libc6-dev) for a static fixture");
    let env = Env::new();
    env.small_capsule("ident", &[("opt/ident/x", b"x\n")]);
    let bin = fixture(&env, "bind", &["-static"]);
    let (code, out, err) = run_capsule(&env, &["run", "ident", "--ip", "127.0.0.7", "--entry", bin.to_str().unwrap()]);
    // ::1 is parked (bindaddr): bound, on a port the kernel picked, so two copies never collide.
    assert_eq!((code, out.as_str()), (0, "bound 127.0.0.7\nbind ::1 parked\n"), "{err}");
    let (_, out, _) = run_capsule(&env, &["run", "ident", "--entry", bin.to_str().unwrap()]);
    assert!(out.starts_with("bound 0.0.0.0\n"), "{out}");
}
