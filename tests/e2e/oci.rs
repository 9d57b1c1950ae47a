//! OCI push and pull (issue 6) against Debian's docker-registry: push over loopback, pull on a
//! second "machine" (a store in network namespace B, the registry in namespace A, joined by a
//! veth pair whose addresses exist only in those namespaces), run there, push a one-file
//! update and count what moved, lazy pull (the first open from a dynamic program, tier 1, and
//! from static busybox under the seccomp supervisor, tier 2) + fetch, and a client this
//! project did not write (the `oras` Python package) reading the artifact. Registries are stopped by PID and the
//! namespaces deleted on drop, also when an assertion fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::require;
use crate::supervisor::{BUSYBOX, static_busybox};
use crate::support::{Env, has, is_root, require_or_skip};

/// A docker-registry process with its own config file; killed by PID on drop.
pub(crate) struct Registry {
    child: Child,
    log: PathBuf,
    pub(crate) addr: String,
}

impl Registry {
    /// Serve filesystem storage `storage` on `addr`, inside network namespace `netns` if given;
    /// `extra` is appended to the YAML config (which ends inside its `http:` section).
    pub(crate) fn start(storage: &Path, addr: &str, netns: Option<&str>, scratch: &Path, extra: &str) -> Registry {
        let tag = addr.replace([':', '.'], "-");
        let config = scratch.join(format!("registry-{tag}.yml"));
        let log = scratch.join(format!("registry-{tag}.log"));
        let yaml = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: capsule-test\n",
            storage.display()
        ) + extra;
        std::fs::write(&config, yaml).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "docker-registry"]);
                c
            }
            None => Command::new("docker-registry"),
        };
        let out = std::fs::File::create(&log).unwrap();
        // `ip netns exec` execs the registry, so the PID we hold is the registry's.
        let child = cmd.arg("serve").arg(&config).stdout(out.try_clone().unwrap()).stderr(out).spawn().unwrap();
        let mut reg = Registry { child, log, addr: addr.to_owned() };
        for _ in 0..150 {
            if std::fs::read_to_string(&reg.log).unwrap_or_default().contains("listening on") {
                return reg;
            }
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", std::fs::read_to_string(&reg.log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docker-registry did not start on {addr}: {}", std::fs::read_to_string(&reg.log).unwrap_or_default());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A named network namespace, deleted on drop (with the veth end inside it).
pub(crate) struct Ns(pub(crate) String);

impl Ns {
    pub(crate) fn new(name: String) -> Ns {
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = Ns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub(crate) fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A capsule "app" holding a copy of /usr/bin/cat (mode 0755) and /opt/app/greeting,
/// captured by snapshot diff of a scratch root (no root needed, nothing installed).
pub(crate) fn app(env: &Env, greeting: &str) {
    use std::os::unix::fs::PermissionsExt;
    let host = env.path("host-app");
    std::fs::create_dir_all(host.join("usr/bin")).unwrap();
    std::fs::create_dir_all(host.join("opt/app")).unwrap();
    let base = host.to_str().unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/usr,/opt"]);
    std::fs::copy("/usr/bin/cat", host.join("usr/bin/cat")).unwrap();
    std::fs::set_permissions(host.join("usr/bin/cat"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(host.join("opt/app/greeting"), greeting).unwrap();
    env.ok(&["-q", "capture", "snapshot", "end", "app"]);
}

/// `capsule --store STORE --json ARGS...` inside namespace `ns`; its parsed output.
fn json_in(ns: &str, store: &Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_capsule"), "--store"])
        .arg(store)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "capsule {args:?} in {ns}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `capsule run NAME --entry /usr/bin/cat -- /opt/app/greeting` in `ns`: what it printed.
fn greeting_in(ns: &str, store: &Path, name: &str) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_capsule"), "--store"])
        .arg(store)
        .args(["run", name, "--entry", "/usr/bin/cat", "--", "/opt/app/greeting"])
        .output()
        .unwrap();
    assert!(o.status.success(), "run {name} in {ns}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn push_pull_and_run_on_a_second_machine_and_push_only_what_changed() {
    require!(is_root() && has("ip") && has("docker-registry"), "root, ip (iproute2) and docker-registry");
    let pid = std::process::id();
    // Declared first, dropped last: after the registry inside A is stopped.
    let ns_a = Ns::new(format!("capoci-a-{pid}"));
    let ns_b = Ns::new(format!("capoci-b-{pid}"));
    let (va, vb) = (format!("coa{}", pid % 100_000), format!("cob{}", pid % 100_000));
    ip(&["link", "add", &va, "netns", &ns_a.0, "type", "veth", "peer", "name", &vb, "netns", &ns_b.0]);
    for (ns, dev, addr) in [(&ns_a.0, &va, "10.231.97.1/24"), (&ns_b.0, &vb, "10.231.97.2/24")] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }

    let v1 = Env::new();
    app(&v1, "hello v1\n");
    let storage = v1.path("registry-storage");
    let local = Registry::start(&storage, &format!("127.0.0.1:{}", free_port()), None, v1.dir.path(), "");
    let to = |tag: &str| format!("{}/team/app:{tag}", local.addr);
    let first = v1.json(&["push", "app", &to("v1")]);
    assert_eq!((first["blobs_uploaded"].as_u64(), first["blobs_present"].as_u64()), (Some(2), Some(0)), "{first}");
    assert_eq!(first["records_uploaded"], 2);
    let again = v1.json(&["push", "app", &to("v1")]);
    assert_eq!((again["blobs_uploaded"].as_u64(), again["blobs_present"].as_u64()), (Some(0), Some(2)), "{again}");
    assert_eq!(again["records_uploaded"], 0);
    assert_eq!(again["oci_digest"], first["oci_digest"]);
    // A version by its digest pushes the same artifact (nothing new to upload).
    let by_digest = format!("app@{}", first["manifest_digest"].as_str().unwrap());
    let third = v1.json(&["push", &by_digest, &to("bydigest")]);
    assert_eq!(
        (third["blobs_uploaded"].as_u64(), third["oci_digest"].clone()),
        (Some(0), first["oci_digest"].clone()),
        "{third}"
    );

    // Version 2, captured on another store: one file differs, so one blob moves, plus the
    // capsule manifest, the blob map and the OCI manifest.
    let v2 = Env::new();
    app(&v2, "hello v2\n");
    let second = v2.json(&["push", "app", &to("v2")]);
    assert_eq!((second["blobs_uploaded"].as_u64(), second["blobs_present"].as_u64()), (Some(1), Some(1)), "{second}");
    assert_eq!(second["records_uploaded"], 2);
    let cat_frame = first["bytes_uploaded"].as_u64().unwrap() - second["bytes_uploaded"].as_u64().unwrap();
    assert!(second["bytes_uploaded"].as_u64().unwrap() < 8_000 && cat_frame > 10_000, "{first} {second}");

    // The second machine: the registry in A serves the same storage; a store in B pulls.
    let remote = Registry::start(&storage, "10.231.97.1:5000", Some(&ns_a.0), v1.dir.path(), "");
    let from = |tag: &str| format!("{}/team/app:{tag}", remote.addr);
    let s2 = v1.path("machine-b-store");
    let pulled = json_in(&ns_b.0, &s2, &["pull", "--plain-http", &from("v1")]);
    assert_eq!((pulled["blobs_downloaded"].as_u64(), pulled["blobs_present"].as_u64()), (Some(2), Some(0)));
    assert_eq!(pulled["manifest_digest"], first["manifest_digest"]);
    assert_eq!(greeting_in(&ns_b.0, &s2, "app"), "hello v1\n");
    // Without --plain-http a non-loopback host is spoken to over HTTPS, which this registry
    // does not serve: refused, store unchanged.
    let o = Command::new("ip")
        .args(["netns", "exec", &ns_b.0, env!("CARGO_BIN_EXE_capsule"), "--store"])
        .arg(&s2)
        .args(["pull", &from("v2"), "v2app"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("https://10.231.97.1:5000") && err.contains("--plain-http"), "{err}");

    // Lazy: v2 into the same store needs only the changed blob, fetched when the file opens.
    let lazy = json_in(&ns_b.0, &s2, &["pull", "--lazy", "--plain-http", &from("v2"), "app2"]);
    assert_eq!((lazy["blobs_downloaded"].as_u64(), lazy["blobs_present"].as_u64()), (Some(0), Some(1)), "{lazy}");
    assert_eq!(lazy["blobs_deferred"], 1);
    let verify = json_in(&ns_b.0, &s2, &["verify"]);
    assert_eq!((verify["ok"].as_bool(), verify["not_fetched"].as_u64()), (Some(true), Some(1)), "{verify}");
    assert_eq!(greeting_in(&ns_b.0, &s2, "app2"), "hello v2\n");
    assert_eq!(json_in(&ns_b.0, &s2, &["verify"])["not_fetched"], 0);

    // Lazy into an empty store: export is refused until `fetch` completes it.
    let s3 = v1.path("machine-b-lazy");
    let lazy = json_in(&ns_b.0, &s3, &["pull", "--lazy", "--plain-http", &from("v1")]);
    assert_eq!(lazy["blobs_deferred"], 2);
    let o = Command::new(env!("CARGO_BIN_EXE_capsule"))
        .arg("--store")
        .arg(&s3)
        .args(["export", "app", "-o"])
        .arg(v1.path("x.capsule"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("capsule fetch app:latest"));
    // Tier 2: the first open of the greeting comes from a static program under the seccomp
    // supervisor, which fetches that blob (and only it) through the same ensure_cache.
    if static_busybox() {
        let greeting = blake3::hash(b"hello v1\n").to_hex().to_string();
        let has_greeting = || s3.join("blobs").join(&greeting[..2]).join(&greeting).is_file();
        assert!(!has_greeting());
        assert_eq!(json_in(&ns_b.0, &s3, &["verify"])["not_fetched"], 2);
        let o = Command::new("ip")
            .args(["netns", "exec", &ns_b.0, env!("CARGO_BIN_EXE_capsule"), "--store"])
            .arg(&s3)
            .args([
                "run",
                "app",
                "--seccomp",
                "always",
                "--stats",
                "--entry",
                BUSYBOX,
                "--",
                "cat",
                "/opt/app/greeting",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hello v1\n");
        assert!(err.contains("tier 2 (supervisor): ") && !err.contains("(off)"), "{err}");
        assert!(has_greeting());
        assert_eq!(json_in(&ns_b.0, &s3, &["verify"])["not_fetched"], 1, "the cat blob is still deferred");
    } else {
        require_or_skip(&format!("{BUSYBOX} from busybox-static: the lazy tier 2 case"));
    }
    let fetched = json_in(&ns_b.0, &s3, &["fetch", "app"]);
    let want = if static_busybox() { (Some(1), Some(1)) } else { (Some(2), Some(0)) };
    assert_eq!((fetched["blobs_downloaded"].as_u64(), fetched["blobs_present"].as_u64()), want, "{fetched}");
    let verify = json_in(&ns_b.0, &s3, &["verify"]);
    assert_eq!((verify["ok"].as_bool(), verify["not_fetched"].as_u64()), (Some(true), Some(0)), "{verify}");
    drop(remote);
    drop(local);
    drop(ns_b);
    drop(ns_a);
}

#[test]
fn oras_lists_the_tag_and_reads_the_capsule_manifest() {
    require!(has("docker-registry"), "docker-registry");
    let python = std::env::var("CAPSULE_ORAS_PYTHON").unwrap_or_default();
    require!(!python.is_empty(), "CAPSULE_ORAS_PYTHON (a python3 with the oras package; .ci/run makes one)");
    let env = Env::new();
    app(&env, "hello oras\n");
    let reg = Registry::start(&env.path("storage"), &format!("127.0.0.1:{}", free_port()), None, env.dir.path(), "");
    let pushed = env.json(&["push", "app", &format!("{}/team/app:v1", reg.addr)]);
    let script = "import json, sys, oras.client\n\
                  host = sys.argv[1]\n\
                  c = oras.client.OrasClient(hostname=host, insecure=True)\n\
                  tags = c.get_tags(host + '/team/app')\n\
                  m = c.get_manifest(host + '/team/app:v1')\n\
                  print(json.dumps({'tags': tags, 'manifest': m}))\n";
    let o = Command::new(&python).args(["-c", script, &reg.addr]).output().unwrap();
    assert!(o.status.success(), "oras: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    let m = &v["manifest"];
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], "application/vnd.capsule.v1");
    assert_eq!(m["config"]["mediaType"], "application/vnd.capsule.manifest.v1");
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.capsule.blobmap.v1");
    assert_eq!(m["layers"].as_array().unwrap().len(), 3, "the map and two blobs");
    assert_eq!(m["annotations"]["dev.capsule.digest"], pushed["manifest_digest"]);
}
