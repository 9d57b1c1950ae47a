//! OCI over HTTPS with basic auth, as against a real registry: Debian's docker-registry with a
//! certificate from a throwaway CA (made with the `openssl` CLI, subjectAltName = the IP the
//! client dials) and a bcrypt htpasswd file, listening on a non-loopback address inside a
//! network namespace of the test's own, so the client speaks HTTPS (no `--plain-http`). The
//! client finds the CA the way it finds any root, through rustls-native-certs, which reads
//! `SSL_CERT_FILE` instead of the system store when it is set; nothing is installed on the
//! machine. Every `capsule` runs with a scratch `HOME` and without inherited registry
//! variables, so only what a case gives it counts.

use std::path::Path;
use std::process::{Command, Output};

use crate::oci::{Ns, Registry, app, ip};
use crate::require;
use crate::support::{Env, has, is_root};

/// The registry's address: on `lo` of the test's namespace, not 127.0.0.0/8, so HTTPS.
const HOST: &str = "10.231.98.1";
const REGISTRY: &str = "10.231.98.1:5443";
const USER: &str = "capsule-tester";
const PASSWORD: &str = "correct horse battery staple";

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// A CA (`ca.pem`) and a server certificate for IP `HOST` signed by it (`server.pem`,
/// `server.key`), in `dir`.
fn make_pki(dir: &Path) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ca\n[dn]\nCN = capsule test CA\n\
         [ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(dir.join("server.cnf"), format!("[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = {HOST}\n"))
        .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = IP:{HOST}\nauthorityKeyIdentifier = keyid\n"
        ),
    )
    .unwrap();
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[&["req", "-x509", "-config", "ca.cnf", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem"], &ec[..]]
            .concat(),
    );
    openssl(
        &[&["req", "-new", "-config", "server.cnf", "-keyout", "server.key", "-out", "server.csr"], &ec[..]].concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// A bcrypt htpasswd file (what docker-registry accepts) and a docker `config.json` for
/// `REGISTRY`, both written by python3 (`crypt` with glibc's bcrypt, cost 4 to stay fast).
fn make_credentials(htpasswd: &Path, docker_config: &Path) {
    let script = "import base64, crypt, json, sys\n\
                  user, password, registry, htpasswd, config = sys.argv[1:]\n\
                  salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)\n\
                  open(htpasswd, 'w').write(f'{user}:{crypt.crypt(password, salt)}\\n')\n\
                  auth = base64.b64encode(f'{user}:{password}'.encode()).decode()\n\
                  json.dump({'auths': {registry: {'auth': auth}}}, open(config, 'w'))\n";
    std::fs::create_dir_all(docker_config.parent().unwrap()).unwrap();
    run(Command::new("python3")
        .args(["-W", "ignore", "-c", script, USER, PASSWORD, REGISTRY])
        .arg(htpasswd)
        .arg(docker_config));
}

/// `capsule --store STORE [--json] ARGS...` inside `ns`, with `HOME=home`, the environment
/// variables `vars`, and no inherited CA or registry settings.
fn capsule_in(ns: &str, store: &Path, home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_capsule"), "--store"]).arg(store).args(args);
    for k in ["SSL_CERT_FILE", "SSL_CERT_DIR", "DOCKER_CONFIG", "CAPSULE_REGISTRY_USER", "CAPSULE_REGISTRY_PASSWORD"] {
        c.env_remove(k);
    }
    c.env("HOME", home).envs(vars.iter().copied());
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn https_registry_with_basic_auth_and_a_private_ca() {
    require!(
        is_root() && has("ip") && has("docker-registry") && has("openssl") && has("python3"),
        "root, ip (iproute2), docker-registry, openssl and python3"
    );
    let env = Env::new();
    let dir = env.dir.path();
    let ns = Ns::new(format!("capocitls-{}", std::process::id()));
    ip(&["-n", &ns.0, "addr", "add", &format!("{HOST}/32"), "dev", "lo"]);
    make_pki(dir);
    let (htpasswd, nobody, home) = (env.path("htpasswd"), env.path("home-nobody"), env.path("home"));
    std::fs::create_dir_all(&nobody).unwrap();
    make_credentials(&htpasswd, &home.join(".docker/config.json"));
    let storage = env.path("registry-storage");
    let extra = format!(
        "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: capsule-test\n    path: {}\n",
        env.path("server.pem").display(),
        env.path("server.key").display(),
        htpasswd.display()
    );
    let reg = Registry::start(&storage, REGISTRY, Some(&ns.0), dir, &extra);
    app(&env, "hello over tls\n");
    let store = env.store();
    let to = format!("{}/team/app:v1", reg.addr);
    let ca = env.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let creds = [("CAPSULE_REGISTRY_USER", USER), ("CAPSULE_REGISTRY_PASSWORD", PASSWORD)];

    // Without the CA the certificate is refused, even with the right password.
    let o = capsule_in(&ns.0, &store, &nobody, &creds, &["push", "app", &to]);
    let err = stderr(&o);
    assert!(!o.status.success(), "pushed without trusting the CA");
    assert!(
        err.contains(&format!("https://{REGISTRY}/v2/team/app/"))
            && err.contains("UnknownIssuer")
            && err.contains("SSL_CERT_FILE"),
        "{err}"
    );

    // Trusting the CA but without credentials: the 401 is reported, naming the registry.
    let o = capsule_in(&ns.0, &store, &nobody, &[("SSL_CERT_FILE", ca)], &["push", "app", &to]);
    let err = stderr(&o);
    assert!(!o.status.success(), "pushed without credentials");
    assert!(
        err.contains(&format!("registry {REGISTRY} refused authentication"))
            && err.contains("401")
            && err.contains("CAPSULE_REGISTRY_USER"),
        "{err}"
    );

    // A wrong password: refused, naming the user and where the credentials came from.
    let wrong = [("SSL_CERT_FILE", ca), ("CAPSULE_REGISTRY_USER", USER), ("CAPSULE_REGISTRY_PASSWORD", "wrong")];
    let o = capsule_in(&ns.0, &store, &nobody, &wrong, &["push", "app", &to]);
    let err = stderr(&o);
    assert!(!o.status.success(), "pushed with a wrong password");
    assert!(
        err.contains(&format!("registry {REGISTRY} refused authentication"))
            && err.contains(&format!("user \"{USER}\" (from CAPSULE_REGISTRY_USER"))
            && err.contains("401"),
        "{err}"
    );
    // None of the refused pushes left anything in the registry.
    assert!(!storage.join("docker/registry/v2/repositories").exists());

    // The right password from the environment: pushed.
    let trusted = [("SSL_CERT_FILE", ca), creds[0], creds[1]];
    let pushed = json(&capsule_in(&ns.0, &store, &nobody, &trusted, &["--json", "push", "app", &to]));
    assert_eq!((pushed["blobs_uploaded"].as_u64(), pushed["blobs_present"].as_u64()), (Some(2), Some(0)), "{pushed}");
    assert!(storage.join("docker/registry/v2/repositories/team/app/_manifests/tags/v1").is_dir());

    // A second store pulls with the credentials of a docker config.json in its HOME, and runs.
    let ca_only = [("SSL_CERT_FILE", ca)];
    let s2 = env.path("second-store");
    let pulled = json(&capsule_in(&ns.0, &s2, &home, &ca_only, &["--json", "pull", &to]));
    assert_eq!(pulled["manifest_digest"], pushed["manifest_digest"]);
    assert_eq!(pulled["blobs_downloaded"], 2, "{pulled}");
    let greeting = ["run", "app", "--entry", "/usr/bin/cat", "--", "/opt/app/greeting"];
    let o = capsule_in(&ns.0, &s2, &home, &[], &greeting);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello over tls\n");

    // Lazy: the blobs come at run time, over the same TLS and with the same credentials; without
    // the credentials the run fails naming the registry and the blob stays unfetched.
    let s3 = env.path("lazy-store");
    let lazy = json(&capsule_in(&ns.0, &s3, &home, &ca_only, &["--json", "pull", "--lazy", &to]));
    assert_eq!(lazy["blobs_deferred"], 2, "{lazy}");
    let o = capsule_in(&ns.0, &s3, &nobody, &ca_only, &greeting);
    assert!(!o.status.success() && stderr(&o).contains(&format!("registry {REGISTRY}")), "{}", stderr(&o));
    let o = capsule_in(&ns.0, &s3, &home, &ca_only, &greeting);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello over tls\n");
    let verify = json(&capsule_in(&ns.0, &s3, &home, &[], &["--json", "verify"]));
    assert_eq!((verify["ok"].as_bool(), verify["not_fetched"].as_u64()), (Some(true), Some(0)), "{verify}");
    drop(reg);
    drop(ns);
}
