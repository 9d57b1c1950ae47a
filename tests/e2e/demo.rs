//! `capsule demo` captures the bundled application and runs it with its own host name,
//! address, MAC and machine-id, which it sees.

use crate::require;
use crate::support::{Env, has};

#[test]
fn demo_captures_the_fixture_application() {
    require!(has("cc") || has("gcc"), "no C compiler to build the demo application");
    let env = Env::new();
    let out = env.ok(&["demo"]);
    for needle in [
        "/usr/bin/capsule-demo",
        "/etc/capsule-demo.conf",
        "/usr/lib/capsule-demo/libcapsuledemo.so.1.0",
        "color = teal",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle}:\n{out}");
    }
    let m = env.json(&["inspect", "capsule-demo"]);
    assert_eq!(m["entry_points"][0]["path"], "/usr/bin/capsule-demo");
    let files = m["files"].as_array().unwrap();
    let conf = files.iter().find(|f| f["path"] == "/etc/capsule-demo.conf").unwrap();
    assert_eq!(conf["origin"], "snapshot-diff");
    let key = m["registry"].as_array().unwrap().iter().find(|r| r["key"] == "machine/files/etc/capsule-demo.conf");
    assert_eq!(key.unwrap()["value"]["file"], conf["digest"]);
    assert_eq!(env.json(&["verify"])["ok"], true);
    // It runs with an identity of its own, and sees it.
    for line in [
        "hostname: demo-host",
        "uname.nodename: demo-host",
        "domain: capsule.test",
        "machine-id: c0ffee00c0ffee00c0ffee00c0ffee00",
        "resolve.self: 127.0.0.42",
        "ok",
    ] {
        assert!(out.lines().any(|l| l == line), "demo output lacks {line:?}:\n{out}");
    }
    if let Some(iface) = capsule_core::run::identity::primary_interface() {
        for line in [format!("address: {iface} inet 127.0.0.42"), format!("mac: {iface} 02:ca:95:00:00:01")] {
            assert!(out.lines().any(|l| l == line), "demo output lacks {line:?}:\n{out}");
        }
    }
}
