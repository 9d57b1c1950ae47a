//! `capsule config` (issue 5, done-when 5): the registry's text form round-trips, and a key
//! changes what a captured program reads from its /etc config file, never the host's file.

use std::path::Path;

use crate::support::{Env, run_capsule};

#[test]
fn a_registry_key_edits_what_the_program_reads() {
    let env = Env::new();
    env.small_capsule("capapp", &[("etc/capapp.conf", b"# capapp settings\ngreeting = hello\nport: 80\n")]);
    assert!(!Path::new("/etc/capapp.conf").exists(), "/etc/capapp.conf exists on this host");
    let cat = |env: &Env| run_capsule(env, &["run", "capapp", "--entry", "/bin/cat", "--", "/etc/capapp.conf"]);
    let (code, out, err) = cat(&env);
    assert_eq!((code, out.as_str()), (0, "# capapp settings\ngreeting = hello\nport: 80\n"), "{err}");
    env.ok(&["config", "capapp", "set", "user/files/etc/capapp.conf#greeting", "bonjour"]);
    env.ok(&["config", "capapp", "set", "user/files/etc/capapp.conf#port", "int:8080"]);
    env.ok(&["config", "capapp", "set", "user/files/etc/capapp.conf#added", "yes"]);
    env.ok(&["config", "capapp", "set", "user/env/CAPAPP_MODE", "sandboxed"]);
    let (code, out, err) = cat(&env);
    assert_eq!(code, 0, "{err}");
    // Each line keeps its own separator; a key the file lacks is appended.
    assert_eq!(out, "# capapp settings\ngreeting = bonjour\nport: 8080\nadded = yes\n");
    let (code, out, _) = run_capsule(&env, &["run", "capapp", "--entry", "/bin/sh", "--", "-c", "echo $CAPAPP_MODE"]);
    assert_eq!((code, out.as_str()), (0, "sandboxed\n"));
    assert!(!Path::new("/etc/capapp.conf").exists(), "the edit reached the host");
    // The capsule's own copy (in the shared cache) is unchanged: unsetting restores it.
    env.ok(&["config", "capapp", "unset", "user/files/etc/capapp.conf#greeting"]);
    env.ok(&["config", "capapp", "unset", "user/files/etc/capapp.conf#added"]);
    assert_eq!(cat(&env).1, "# capapp settings\ngreeting = hello\nport: 8080\n");
    env.ok(&["config", "capapp", "unset", "user/files/etc/capapp.conf#port"]);
    assert_eq!(cat(&env).1, "# capapp settings\ngreeting = hello\nport: 80\n");
}

#[test]
fn set_get_export_import_round_trip() {
    let env = Env::new();
    env.small_capsule("a", &[("etc/a.conf", b"x = 1\n")]);
    env.small_capsule("b", &[("opt/b/file", b"b\n")]);
    env.ok(&["config", "a", "set", "user/app/colour", "blue \"sky\" ünïcode"]);
    env.ok(&["config", "a", "set", "user/app/count", "int:-42"]);
    env.ok(&["config", "a", "set", "machine/env/LANG_HINT", "C.UTF-8"]);
    assert_eq!(env.ok(&["config", "a", "get", "user/app/count"]), "int:-42\n");
    assert_eq!(env.ok(&["config", "a", "get", "user/app/colour"]), "\"blue \\\"sky\\\" ünïcode\"\n");
    // The capture's /etc record is there too, as a file value.
    let list = env.ok(&["config", "a", "list", "machine/files"]);
    assert!(list.starts_with("machine/files/etc/a.conf = file:"), "{list}");
    let exported = env.path("a.reg");
    env.ok(&["config", "a", "export", "-o", exported.to_str().unwrap()]);
    env.ok(&["-q", "config", "b", "import", exported.to_str().unwrap()]);
    let again = env.path("b.reg");
    env.ok(&["config", "b", "export", "-o", again.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), std::fs::read_to_string(&again).unwrap());
    // A bad line: refused with file and line, nothing imported.
    let bad = env.path("bad.reg");
    std::fs::write(&bad, "user/ok = \"fine\"\nuser/broken \"no equals\"\n").unwrap();
    let o = env.fails(&["config", "b", "import", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.reg:2") && err.contains("expected KEY = VALUE"), "{err}");
    assert_eq!(env.fails(&["config", "b", "get", "user/ok"]).status.code(), Some(1));
    // Bad keys are refused by name.
    let o = env.fails(&["config", "b", "set", "system/x", "1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid registry key \"system/x\""));
}

/// Identity defaults kept in the registry (`machine/identity/…`, `user/identity/…`) reach the
/// program; `run`'s options win over them; a value that does not parse is refused naming its
/// key.
#[test]
fn identity_keys_in_the_registry_are_the_capsules_defaults() {
    let env = Env::new();
    env.small_capsule("idapp", &[("opt/idapp/x", b"x\n")]);
    env.ok(&["config", "idapp", "set", "machine/identity/hostname", "from-registry"]);
    env.ok(&["config", "idapp", "set", "machine/identity/machine-id", "0123456789abcdef0123456789abcdef"]);
    let script = "hostname; cat /etc/machine-id";
    let (code, out, err) = run_capsule(&env, &["run", "idapp", "--entry", "/bin/sh", "--", "-c", script]);
    assert_eq!((code, out.as_str()), (0, "from-registry\n0123456789abcdef0123456789abcdef\n"), "{err}");
    // The user's layer over the machine's, the command line over both.
    env.ok(&["config", "idapp", "set", "user/identity/hostname", "users-name"]);
    let (_, out, _) = run_capsule(&env, &["run", "idapp", "--entry", "/bin/hostname"]);
    assert_eq!(out, "users-name\n");
    let (_, out, _) = run_capsule(&env, &["run", "idapp", "--hostname", "flag-name", "--entry", "/bin/hostname"]);
    assert_eq!(out, "flag-name\n");
    env.ok(&["config", "idapp", "set", "machine/identity/ip", "not-an-address"]);
    let (code, _, err) = run_capsule(&env, &["run", "idapp", "--entry", "/bin/true"]);
    assert_eq!(code, 125);
    assert!(err.contains("identity/ip") && err.contains("not-an-address"), "{err}");
}
