//! `capsule df`: two ELF captures that share libc; shared blobs count once in the total, and
//! a blob missing from the store (as after a lazy pull) is reported, not fatal.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::require;
use crate::support::{Env, walk};

/// Blob digest of every regular file in `inspect --json`, by path.
fn digests(inspect: &Value) -> BTreeMap<String, String> {
    inspect["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?.to_owned(), f["digest"].as_str()?.to_owned())))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn df_counts_shared_libraries_once() {
    let (a, b) = ("/usr/bin/cat", "/usr/bin/ls");
    require!(Path::new(a).exists() && Path::new(b).exists(), "needs {a} and {b}");
    let env = Env::new();
    env.ok(&["-q", "capture", "elf", "cat", a]);
    env.ok(&["-q", "capture", "elf", "ls", b]);
    let (cat, ls) = (digests(&env.json(&["inspect", "cat"])), digests(&env.json(&["inspect", "ls"])));
    let shared: Vec<_> = cat.iter().filter(|(p, d)| ls.get(*p) == Some(d)).map(|(p, _)| p.clone()).collect();
    require!(shared.iter().any(|p| p.contains("libc.so")), "cat and ls share no libc here: {shared:?}");

    let df = env.json(&["df"]);
    let total = &df["total"];
    let capsules = df["capsules"].as_array().unwrap();
    let names: Vec<_> = capsules.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cat", "ls"]);
    // Every blob file on disk, each once, is what the total says is stored.
    let on_disk: u64 = walk(&env.store().join("blobs")).iter().map(|p| p.metadata().unwrap().len()).sum();
    assert_eq!((u(&total["on_disk"]), u(&total["stored"]), u(&total["unused_blobs"])), (on_disk, on_disk, 0));
    // Shared blobs count in each capsule's stored bytes, once in the total.
    let per_capsule: u64 = capsules.iter().map(|c| u(&c["stored"])).sum();
    let shared_stored: u64 = u(&capsules[0]["shared_stored"]);
    assert_eq!(per_capsule - shared_stored, u(&total["stored"]));
    for c in capsules {
        assert_eq!(u(&c["shared_blobs"]), shared.len() as u64, "{c}");
        assert!(u(&c["stored"]) < u(&c["logical"]), "{c}");
        assert_eq!(u(&c["not_fetched_blobs"]), 0);
    }
    assert!(u(&total["stored"]) < u(&total["logical"]));
    assert!(total["dedup_ratio"].as_f64().unwrap() > 1.0);
    let text = env.ok(&["df"]);
    assert!(text.contains("cat:latest") && text.contains("ls:latest") && text.contains("dedup ratio"), "{text}");

    // The cat binary's blob goes missing (a lazily pulled capsule): reported, not fatal.
    let own = &cat[a];
    let blob = env.store().join("blobs").join(&own[..2]).join(own);
    std::fs::remove_file(&blob).unwrap();
    let df = env.json(&["df"]);
    let size = Path::new(a).metadata().unwrap().len();
    assert_eq!((u(&df["capsules"][0]["not_fetched_blobs"]), u(&df["capsules"][0]["not_fetched"])), (1, size));
    assert_eq!((u(&df["total"]["not_fetched_blobs"]), u(&df["total"]["not_fetched"])), (1, size));
    assert!(env.ok(&["df"]).contains("not fetched"));
}
