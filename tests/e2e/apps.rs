//! Real Debian applications installed straight into capsules with `apt-get` (issue 15,
//! done-when 1 and 2): LibreOffice (51 packages, whose install links its .debs with absolute
//! symlinks made in the sandbox tree and runs triggers that rebuild directories from their
//! listings) and apache2 (whose packaged `envvars` puts its run directory under `/var/run`,
//! a host symlink to the write-copy `/run`). The host's dpkg database is unchanged, no deletion
//! of a host file is recorded, and each application runs from its capsule with default options.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::require;
use crate::support::{Env, dpkg_lock, has, installed, is_root, run_capsule};

/// `capture install NAME -- apt-get install -y --no-install-recommends PKG` on a host without
/// `PKG`; checks the host's dpkg status and the recorded deletions.
fn capture(env: &Env, name: &str, pkg: &str) {
    let _lock = dpkg_lock();
    let status = std::fs::read("/var/lib/dpkg/status").unwrap();
    let (code, out, err) = run_capsule(
        env,
        &["capture", "install", name, "--", "apt-get", "install", "-y", "--no-install-recommends", pkg],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(std::fs::read("/var/lib/dpkg/status").unwrap(), status, "dpkg's status file changed on the host");
    assert!(!installed(pkg), "{pkg} reached the host");
    let m = env.json(&["inspect", name]);
    assert_eq!(m["deletions"].as_array().map(Vec::len), Some(0), "deletions recorded: {}", m["deletions"]);
}

#[test]
fn libreoffice_captured_with_apt_converts_a_text_file_to_pdf() {
    require!(is_root() && has("apt-get"), "root and apt-get (capture install runs apt-get install)");
    require!(has("pdftotext"), "pdftotext (apt-get install poppler-utils)");
    require!(!installed("libreoffice-core-nogui") && !installed("libreoffice-core"), "no LibreOffice on the host");
    let env = Env::new();
    capture(&env, "lo", "libreoffice-writer-nogui");
    let text = "A capsule converts this line.\n";
    std::fs::write(env.path("note.txt"), text).unwrap();
    let out = env.path("out");
    std::fs::create_dir(&out).unwrap();
    let (code, stdout, err) = run_capsule(
        &env,
        &[
            "run",
            "lo",
            "--",
            "soffice",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            out.to_str().unwrap(),
            env.path("note.txt").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{err}");
    let pdf = Command::new("pdftotext").arg(out.join("note.pdf")).arg("-").output().unwrap();
    assert!(pdf.status.success(), "{}", String::from_utf8_lossy(&pdf.stderr));
    assert_eq!(String::from_utf8_lossy(&pdf.stdout).trim(), text.trim());
}

#[test]
fn apache2_captured_with_apt_serves_with_its_packaged_envvars() {
    require!(is_root() && has("apt-get") && has("curl"), "root, apt-get and curl");
    require!(!installed("apache2"), "apache2 not installed on the host");
    let env = Env::new();
    capture(&env, "apache2", "apache2");
    // The packaged envvars, unchanged: its run directory is under /var/run.
    let (code, envvars, err) =
        run_capsule(&env, &["run", "apache2", "--entry", "/bin/cat", "--", "/etc/apache2/envvars"]);
    assert_eq!(code, 0, "{err}");
    assert!(envvars.contains("APACHE_RUN_DIR=/var/run/apache2$SUFFIX"), "{envvars}");
    for p in ["/run/apache2", "/var/run/apache2", "/var/log/apache2"] {
        assert!(!Path::new(p).exists(), "{p} exists on the host before the run");
    }
    let ip = "127.0.0.8";
    // Its own process group, so that the test stops every apache2 process it started.
    let mut server = env
        .cmd(&["run", "apache2", "--ip", ip, "--", "apache2ctl", "-D", "FOREGROUND"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let page = get(ip);
    let group = server.id();
    let _ = Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).status();
    crate::support::stop(&mut server);
    assert!(page.contains("Apache2 Debian Default Page"), "{page}");
    for p in ["/run/apache2", "/var/run/apache2", "/var/log/apache2"] {
        assert!(!Path::new(p).exists(), "apache2 wrote {p} on the host");
    }
}

/// The page at http://IP/, waiting up to 30 s for the server.
fn get(ip: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("curl").args(["-s", "--max-time", "2", &format!("http://{ip}/")]).output().unwrap();
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "apache2 did not answer on {ip}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
