//! Package inventory and `capsule sbom` (issue 18, "Package inventory"): a capture keeps the
//! packages it installed (or, for `capture elf`, the host packages owning its files) with the
//! versions dpkg and apt give; `inspect` lists them; `sbom` writes SPDX 2.3 and CycloneDX 1.5
//! documents that validators this project did not write accept (the `spdx-tools` and
//! `cyclonedx-python-lib` Python packages, in the python `CAPSULE_SBOM_PYTHON` names: `.ci/run`
//! makes one); a capsule made before inventories still imports and runs, and `sbom` says it
//! has none.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, run_capsule};

/// The python with both validators, or `None` (the caller skips).
fn validator_python() -> Option<String> {
    let p = std::env::var("CAPSULE_SBOM_PYTHON").unwrap_or_default();
    (!p.is_empty()).then_some(p)
}

/// Validate `file` with pyspdxtools (`spdx`) or cyclonedx-python-lib's strict JSON validator
/// for schema 1.5 (`cyclonedx`): `Ok` or the validator's complaint.
fn validate(python: &str, format: &str, file: &Path) -> Result<(), String> {
    let script = match format {
        "spdx" => {
            "import sys\n\
                   from spdx_tools.spdx.parser.parse_anything import parse_file\n\
                   from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document\n\
                   doc = parse_file(sys.argv[1])\n\
                   errors = validate_full_spdx_document(doc, 'SPDX-2.3')\n\
                   for e in errors: print(e.validation_message)\n\
                   sys.exit(1 if errors else 0)\n"
        }
        _ => {
            "import sys\n\
              from cyclonedx.validation.json import JsonStrictValidator\n\
              from cyclonedx.schema import SchemaVersion\n\
              errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
              if errors: print(errors)\n\
              sys.exit(1 if errors else 0)\n"
        }
    };
    let o = Command::new(python).args(["-c", script]).arg(file).output().expect("run the validator");
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }
}

/// (name, version) of every package of an SPDX document but the capsule itself.
fn spdx_packages(doc: &Value) -> BTreeSet<(String, String)> {
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Capsule")
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["versionInfo"].as_str().unwrap().to_owned()))
        .collect()
}

/// (name, version) of every component of a CycloneDX document.
fn cdx_packages(doc: &Value) -> BTreeSet<(String, String)> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["version"].as_str().unwrap().to_owned()))
        .collect()
}

/// (name, version) of every package `inspect --json` lists.
fn inspected(env: &Env, name: &str) -> BTreeSet<(String, String)> {
    let m = env.json(&["inspect", name]);
    m["inventory"]["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no inventory in inspect: {}", m["inventory"]))
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["version"].as_str().unwrap().to_owned()))
        .collect()
}

/// Write both documents of capsule `name`, check each with its validator, and return them.
fn both_documents(env: &Env, python: &str, name: &str) -> (Value, Value) {
    let (spdx, cdx) = (env.path(&format!("{name}.spdx.json")), env.path(&format!("{name}.cdx.json")));
    env.ok(&["-q", "sbom", name, "-o", spdx.to_str().unwrap()]);
    env.ok(&["-q", "sbom", name, "--format", "cyclonedx", "-o", cdx.to_str().unwrap()]);
    validate(python, "spdx", &spdx).unwrap_or_else(|e| panic!("pyspdxtools rejects the SPDX document: {e}"));
    validate(python, "cyclonedx", &cdx).unwrap_or_else(|e| panic!("cyclonedx rejects the CycloneDX document: {e}"));
    let read = |p: &Path| serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap();
    (read(&spdx), read(&cdx))
}

/// The validators are not pushovers: a document with a broken field fails each.
fn validators_refuse_broken_documents(env: &Env, python: &str, spdx: &Value, cdx: &Value) {
    let mut bad = spdx.clone();
    bad["packages"][1]["SPDXID"] = Value::from("not an spdx id");
    let f = env.path("bad.spdx.json");
    std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(validate(python, "spdx", &f).is_err(), "pyspdxtools accepted a bad SPDXID");
    let mut bad = cdx.clone();
    bad["components"][0]["type"] = Value::from("no-such-type");
    let f = env.path("bad.cdx.json");
    std::fs::write(&f, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(validate(python, "cyclonedx", &f).is_err(), "cyclonedx accepted a bad component type");
}

/// What `apt-get install` would install for `pkg` on this host: (name, version) of each
/// `Inst` line of a simulation (nothing changes).
fn apt_would_install(pkg: &str) -> BTreeSet<(String, String)> {
    // The caller holds the machine's dpkg lock (support::dpkg_lock).
    let o = Command::new("apt-get").args(["install", "-s", "-y", pkg]).env("LC_ALL", "C").output().expect("apt-get -s");
    assert!(o.status.success(), "apt-get -s install {pkg}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| {
            let (name, rest) = l.split_once(' ').unwrap();
            let version = rest.trim_start_matches('(').split_whitespace().next().unwrap();
            (name.to_owned(), version.to_owned())
        })
        .collect()
}

#[test]
fn a_captured_install_lists_its_packages_in_valid_sboms() {
    require!(is_root() && has("apt-get") && has("flock"), "root, apt-get and flock (capture install runs apt-get)");
    let Some(python) = validator_python() else {
        require!(false, "CAPSULE_SBOM_PYTHON (a python3 with spdx-tools and cyclonedx-python-lib; .ci/run makes one)");
        return;
    };
    let _lock = dpkg_lock();
    require!(!installed("toilet"), "toilet not installed on the host (it is)");
    let expected = apt_would_install("toilet");
    // toilet, and what the host lacks of its dependencies (libcaca0, toilet-fonts).
    assert!(expected.iter().any(|(n, _)| n == "toilet"), "apt would not install toilet: {expected:?}");
    require!(expected.len() > 1, "a host that lacks some of toilet's dependencies (it has them all)");
    let env = Env::new();
    // Under the machine's dpkg lock (held above): nothing changes apt's lists while the
    // installer reads them.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capsule"));
    cmd.arg("--store").arg(env.store());
    cmd.args([
        "-q",
        "capture",
        "install",
        "toilet",
        "--",
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "toilet",
    ]);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "capture install toilet: {}", String::from_utf8_lossy(&o.stderr));
    assert!(!installed("toilet"), "the capture installed toilet on the host");
    let (code, out, err) = run_capsule(&env, &["run", "toilet", "--", "toilet", "-f", "future", "hi"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() >= 2 && out.trim().len() > 6, "toilet printed no banner: {out}");
    // Every package apt installed, with its version; and the packages of the closure (what
    // they need from the host beyond the minimal base) with the host's versions.
    let all = inspected(&env, "toilet");
    assert!(expected.is_subset(&all), "the inventory lacks what apt installed: {expected:?} vs {all:?}");
    for (name, version) in all.difference(&expected) {
        let host = Command::new("dpkg-query").args(["-W", "-f", "${Version}", name]).output().unwrap();
        assert_eq!(&String::from_utf8_lossy(&host.stdout), version, "{name} in the closure is not the host's");
    }
    assert!(all.iter().all(|(n, _)| n != "libc6"), "glibc is the base's: {all:?}");
    let text = env.ok(&["inspect", "toilet"]);
    for (name, version) in &all {
        assert!(
            text.contains(&format!("package   {name} {version} ")),
            "inspect does not list {name} {version}:\n{text}"
        );
    }
    let (spdx, cdx) = both_documents(&env, &python, "toilet");
    assert_eq!(spdx_packages(&spdx), all);
    assert_eq!(cdx_packages(&cdx), all);
    let (fv, toilet) = (&expected.iter().find(|(n, _)| n == "toilet").unwrap().1, &spdx["packages"]);
    let toilet = toilet.as_array().unwrap().iter().find(|p| p["name"] == "toilet" && p["SPDXID"] != "SPDXRef-Capsule");
    let toilet = toilet.expect("the toilet package (not the capsule called toilet)");
    let purl = toilet["externalRefs"][0]["referenceLocator"].as_str().unwrap();
    let encoded = fv.replace('%', "%25").replace('+', "%2B").replace(':', "%3A");
    assert!(purl.starts_with(&format!("pkg:deb/debian/toilet@{encoded}?arch=")), "{purl}");
    // The capsule is what the document describes, and it contains every package.
    let contains =
        spdx["relationships"].as_array().unwrap().iter().filter(|r| r["relationshipType"] == "CONTAINS").count();
    assert_eq!(contains, all.len());
    let digest = env.json(&["inspect", "toilet"])["digest"].as_str().unwrap().to_owned();
    assert_eq!(cdx["metadata"]["component"]["hashes"][0]["content"], Value::from(digest));
    // Dependencies between captured packages: toilet depends on each of the others.
    let deps = cdx["dependencies"].as_array().unwrap();
    let of_toilet = deps.iter().find(|d| d["ref"].as_str().unwrap().starts_with("pkg:deb/debian/toilet@")).unwrap();
    assert_eq!(of_toilet["dependsOn"].as_array().unwrap().len(), expected.len() - 1, "{of_toilet}");
    validators_refuse_broken_documents(&env, &python, &spdx, &cdx);
    // The same capsule, the same document, but for the creation time.
    let again = |format: &str| {
        let mut c = env.cmd(&["sbom", "toilet", "--format", format]);
        c.env("SOURCE_DATE_EPOCH", "1700000000");
        let o = c.output().unwrap();
        assert!(o.status.success());
        o.stdout
    };
    assert_eq!(again("spdx"), again("spdx"));
    assert!(String::from_utf8_lossy(&again("cyclonedx")).contains("\"2023-11-14T22:13:20Z\""));
}

#[test]
fn elf_and_trace_captures_list_the_host_packages_owning_their_files() {
    require!(has("jq") && has("dpkg-query"), "jq and dpkg-query on the host");
    let Some(python) = validator_python() else {
        require!(false, "CAPSULE_SBOM_PYTHON (a python3 with spdx-tools and cyclonedx-python-lib; .ci/run makes one)");
        return;
    };
    let _lock = dpkg_lock();
    let version = |pkg: &str| {
        let o = Command::new("dpkg-query").args(["-W", "-f=${Version}", pkg]).output().unwrap();
        String::from_utf8(o.stdout).unwrap()
    };
    let owner = Command::new("dpkg-query").args(["-S", "/usr/bin/jq"]).output().unwrap();
    require!(owner.status.success(), "/usr/bin/jq from a Debian package");
    let env = Env::new();
    env.ok(&["-q", "capture", "elf", "jq", "/usr/bin/jq"]);
    let got = inspected(&env, "jq");
    for pkg in ["jq", "libjq1", "libc6"] {
        assert!(got.contains(&(pkg.to_owned(), version(pkg))), "{pkg} {} not in {got:?}", version(pkg));
    }
    // A traced run of jq holds the same packages' files, and so the same packages.
    let (code, out, err) = run_capsule(&env, &["-q", "capture", "trace", "jqt", "--", "/usr/bin/jq", "-n", "6*7"]);
    assert_eq!((code, out.as_str()), (0, "42\n"), "{err}");
    let traced = inspected(&env, "jqt");
    for pkg in ["jq", "libjq1", "libc6"] {
        assert!(traced.contains(&(pkg.to_owned(), version(pkg))), "{pkg} {} not in {traced:?}", version(pkg));
    }
    let (spdx, _) = both_documents(&env, &python, "jq");
    assert_eq!(spdx_packages(&spdx), got);
    // jq depends on libjq1, which the document says.
    let id = |name: &str| {
        let packages = spdx["packages"].as_array().unwrap();
        let p = packages.iter().find(|p| p["name"] == name && p["SPDXID"] != "SPDXRef-Capsule").unwrap();
        p["SPDXID"].as_str().unwrap().to_owned()
    };
    assert!(
        spdx["relationships"].as_array().unwrap().iter().any(|r| r["spdxElementId"] == id("jq").as_str()
            && r["relationshipType"] == "DEPENDS_ON"
            && r["relatedSpdxElement"] == id("libjq1").as_str()),
        "no jq DEPENDS_ON libjq1: {}",
        spdx["relationships"]
    );
}

/// The exported capsule `fixtures/NAME`, checked to hold a manifest of format `version`:
/// its first record (after the 16-byte header, a kind byte and a 64-bit length) is a zstd
/// frame holding "CAPSMANI" and the version.
fn old_fixture(name: &str, version: u8) -> std::path::PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(name);
    let bytes = std::fs::read(&fixture).unwrap();
    let len = usize::try_from(u64::from_le_bytes(bytes[17..25].try_into().unwrap())).unwrap();
    let manifest = zstd::stream::decode_all(&bytes[25..25 + len]).unwrap_or_default();
    let want = [&b"CAPSMANI"[..], &[version, 0]].concat();
    assert_eq!(manifest.get(..10), Some(&want[..]), "{name} is not a version-{version} manifest");
    fixture
}

/// A capsule exported by a build before bases (manifest version 3, the fixture
/// `fixtures/manifest-v3/v3cap.capsule`: a shell script `hello-v3`, made by a snapshot
/// capture) imports and runs; it keeps its (empty) inventory, `inspect` says it records no
/// base, `check` and `sbom` work on it.
#[test]
fn a_capsule_without_a_base_imports_runs_and_checks() {
    let env = Env::new();
    env.ok(&["-q", "import", old_fixture("manifest-v3/v3cap.capsule", 3).to_str().unwrap()]);
    let (code, out, err) = run_capsule(&env, &["run", "v3cap", "--", "world"]);
    assert_eq!((code, out.as_str()), (0, "hello from a manifest v3 capsule: world\n"), "{err}");
    let doc = env.json(&["inspect", "v3cap"]);
    assert_eq!(doc["base"], Value::Null, "{doc}");
    assert_eq!(doc["inventory"]["packages"], serde_json::json!([]), "{doc}");
    assert!(env.ok(&["inspect", "v3cap"]).contains("base      (none recorded"));
    let (code, out, err) = run_capsule(&env, &["check", "v3cap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("capsule v3cap:latest: nothing missing on this host"), "{out}");
    assert!(env.ok(&["sbom", "v3cap"]).contains("SPDX-2.3"));
}

/// A capsule exported by a build before inventories (manifest version 2, the fixture
/// `fixtures/manifest-v2/oldcap.capsule`: a shell script `hello-v2`) imports and runs;
/// `inspect` says it has no inventory, and `sbom` says so rather than failing obscurely.
#[test]
fn a_capsule_without_an_inventory_imports_runs_and_says_so() {
    let env = Env::new();
    env.ok(&["-q", "import", old_fixture("manifest-v2/oldcap.capsule", 2).to_str().unwrap()]);
    let (code, out, err) = run_capsule(&env, &["run", "oldcap", "--", "world"]);
    assert_eq!((code, out.as_str()), (0, "hello from a manifest v2 capsule: world\n"), "{err}");
    assert_eq!(env.json(&["inspect", "oldcap"])["inventory"], Value::Null);
    assert!(env.ok(&["inspect", "oldcap"]).contains("packages  (no inventory"));
    let o = env.fails(&["sbom", "oldcap"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("capsule oldcap:latest") && err.contains("has no package inventory"), "{err}");
    assert!(o.stdout.is_empty());
    // A capture of this build keeps one, empty when no package was involved.
    env.small_capsule("fresh", &[("usr/bin/fresh", b"#!/bin/sh\n")]);
    assert_eq!(env.json(&["inspect", "fresh"])["inventory"]["packages"], serde_json::json!([]));
}
