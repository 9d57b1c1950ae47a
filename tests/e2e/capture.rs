//! Done-when 2 and 3: capture of real Debian packages by snapshot diff, and of /usr/bin/jq by
//! ELF closure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use capsule_core::capture::noise::Noise;
use serde_json::Value;

use crate::require;
use crate::support::{Env, b3, dpkg_lock, has, is_root};

const PACKAGES: [&str; 3] = ["jq", "libjq1", "libonig5"];

/// `apt-get ARGS` (callers hold the machine's dpkg lock, `support::dpkg_lock`: a `flock` of
/// the same file here would wait for ever).
fn apt(args: &[&str]) -> std::process::Output {
    Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").output().expect("run apt-get")
}

/// Files (by capsule path) of an `inspect --json`.
fn files(inspect: &Value) -> BTreeMap<String, Value> {
    inspect["files"].as_array().unwrap().iter().map(|f| (f["path"].as_str().unwrap().to_owned(), f.clone())).collect()
}

/// Packages purged for the test beyond jq's own (installed packages that depend on jq, such
/// as yq on some images); reinstalled on drop, so a failing test leaves the host as it was.
struct Restore(Vec<String>);

impl Drop for Restore {
    fn drop(&mut self) {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(PACKAGES);
        args.extend(self.0.iter().map(String::as_str));
        let o = apt(&args);
        if !o.status.success() {
            crate::support::skip(&format!("could not reinstall {args:?}: {}", String::from_utf8_lossy(&o.stderr)));
        }
    }
}

#[test]
fn snapshot_diff_of_an_apt_install_holds_every_packaged_file() {
    require!(is_root() && has("apt-get") && has("dpkg"), "needs root and apt-get to install jq");
    let _lock = dpkg_lock();
    // Purging jq also removes what depends on it; allow a few such packages, never many.
    let sim = String::from_utf8_lossy(&apt(&["-s", "purge", "jq", "libjq1", "libonig5"]).stdout).into_owned();
    let purged: BTreeSet<String> =
        sim.lines().filter_map(|l| l.strip_prefix("Purg ")?.split_whitespace().next().map(str::to_owned)).collect();
    let extra: Vec<String> = purged.iter().filter(|p| !PACKAGES.contains(&p.as_str())).cloned().collect();
    require!(extra.len() <= 3, "purging jq would also remove {extra:?}");
    let _restore = Restore(extra.clone());
    let mut args = vec!["purge", "-y", "jq", "libjq1", "libonig5"];
    args.extend(extra.iter().map(String::as_str));
    let o = apt(&args);
    assert!(o.status.success(), "purge failed: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!Path::new("/usr/bin/jq").exists());

    let env = Env::new();
    env.ok(&["-q", "capture", "snapshot", "begin"]);
    let o = apt(&["install", "-y", "--no-install-recommends", "jq"]);
    require!(
        o.status.success(),
        "apt-get install jq failed (no package lists? run apt-get update): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    env.ok(&["-q", "capture", "snapshot", "end", "jq", "--entry", "/usr/bin/jq"]);

    let inspect = env.json(&["inspect", "jq"]);
    let held = files(&inspect);
    let listed = Command::new("dpkg").arg("-L").args(PACKAGES).output().unwrap();
    let mut checked = 0;
    for path in String::from_utf8_lossy(&listed.stdout).lines() {
        let meta = std::fs::symlink_metadata(path);
        if !meta.is_ok_and(|m| m.file_type().is_file()) {
            continue;
        }
        let f = held.get(path).unwrap_or_else(|| panic!("capsule lacks {path}, which dpkg -L lists"));
        assert_eq!(f["origin"], "snapshot-diff", "{path}");
        let digest =
            f["digest"].as_str().or_else(|| held.get(f["target"].as_str().unwrap_or(""))?.get("digest")?.as_str());
        assert_eq!(digest, Some(b3(Path::new(path)).as_str()), "content of {path}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} regular files checked");
    let noise = Noise::with_defaults(&[]).unwrap();
    for p in held.keys() {
        assert!(!noise.covers(p.as_bytes()), "capsule holds noise: {p}");
    }
    assert_eq!(inspect["entry_points"][0]["path"], "/usr/bin/jq");
    // Issue 18: the inventory is the packages the install added, with the versions dpkg reports.
    let dpkg = Command::new("dpkg-query").args(["-W", "-f=${Package} ${Version}\n"]).args(PACKAGES).output().unwrap();
    let want: BTreeSet<String> = String::from_utf8_lossy(&dpkg.stdout).lines().map(str::to_owned).collect();
    let got: BTreeSet<String> = inspect["inventory"]["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no inventory: {}", inspect["inventory"]))
        .iter()
        .map(|p| format!("{} {}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect();
    assert_eq!(got, want);

    // Issue 3: the captured jq runs from its capsule once the host no longer has it.
    let o = apt(&["purge", "-y", "jq", "libjq1", "libonig5"]);
    assert!(o.status.success(), "purge failed: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!Path::new("/usr/bin/jq").exists() && !Path::new("/usr/lib/x86_64-linux-gnu/libjq.so.1").exists());
    let mut run = env.cmd(&["run", "jq", "--", "-c", ".a | map(. * 2)"]);
    let out = crate::support::with_stdin(&mut run, b"{\"a\": [1, 2, 3]}");
    assert!(out.status.success(), "jq from its capsule failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[2,4,6]");
}

/// Follow symlinks inside the capsule's file list, as the kernel would in a root holding it.
fn resolve<'a>(held: &'a BTreeMap<String, Value>, path: &str) -> Option<&'a Value> {
    let mut cur = path.to_owned();
    'hops: for _ in 0..40 {
        let comps: Vec<&str> = cur.trim_start_matches('/').split('/').collect();
        for i in 0..comps.len() {
            let prefix = format!("/{}", comps[..=i].join("/"));
            let f = held.get(&prefix)?;
            if f["kind"] == "symlink" {
                let mut base: Vec<&str> = comps[..i].to_vec();
                for t in f["target"].as_str()?.split('/') {
                    match t {
                        "" | "." => {}
                        ".." => drop(base.pop()),
                        t => base.push(t),
                    }
                }
                base.extend_from_slice(&comps[i + 1..]);
                cur = format!("/{}", base.join("/"));
                continue 'hops;
            }
        }
        return held.get(&cur);
    }
    None
}

#[test]
fn elf_closure_of_jq_holds_loader_and_every_ldd_library() {
    require!(Path::new("/usr/bin/jq").exists() || is_root(), "jq is not installed");
    let _lock = dpkg_lock();
    if !Path::new("/usr/bin/jq").exists() {
        let o = apt(&["install", "-y", "--no-install-recommends", "jq"]);
        require!(o.status.success(), "cannot install jq: {}", String::from_utf8_lossy(&o.stderr));
    }
    let env = Env::new();
    env.ok(&["-q", "capture", "elf", "jq", "/usr/bin/jq"]);
    let inspect = env.json(&["inspect", "jq"]);
    let held = files(&inspect);
    let ldd = String::from_utf8(Command::new("ldd").arg("/usr/bin/jq").output().unwrap().stdout).unwrap();
    let mut wanted = vec!["/usr/bin/jq".to_owned()];
    for line in ldd.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        wanted.extend(path.filter(|p| p.starts_with('/')).map(str::to_owned));
    }
    assert!(wanted.iter().any(|p| p.contains("ld-linux")), "ldd named no loader: {ldd}");
    assert!(wanted.len() >= 5, "{wanted:?}");
    for p in &wanted {
        let f = resolve(&held, p).unwrap_or_else(|| panic!("capsule does not resolve {p}"));
        assert_eq!(f["kind"], "file", "{p}");
        let real = std::fs::canonicalize(p).unwrap();
        assert_eq!(f["digest"].as_str(), Some(b3(&real).as_str()), "content of {p}");
        assert_eq!(f["origin"], "elf-closure");
    }
    assert_eq!(inspect["entry_points"][0]["path"], "/usr/bin/jq");
    // A script is not an ELF binary: a clear error naming it.
    let script = env.path("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let o = env.fails(&["capture", "elf", "bad", script.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("script.sh"));
}
