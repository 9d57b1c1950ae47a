//! Issue 15, exec resolves in the view: a `#!` interpreter only the capsule has (a C fixture
//! and php's `phar`), run by path, by name and from a shell inside the capsule; a launcher
//! that execs a sibling of `$0`; and a capsule carrying its own loader and glibc (`capture
//! elf` of jq) run inside a newer Debian (trixie) than the one it was captured on.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require;
use crate::support::{Env, dpkg_lock, has, is_root, run_capsule, with_stdin};

/// Snapshot-capture what `fill` puts into a fresh staging root as capsule `name`.
fn capture_staged(env: &Env, name: &str, entry: &str, fill: impl FnOnce(&Path)) {
    let stage = env.path(&format!("stage-{name}"));
    fs::create_dir_all(&stage).unwrap();
    let base = stage.to_str().unwrap();
    env.ok(&["-q", "capture", "snapshot", "begin", "--root", base, "--roots", "/usr,/etc,/opt"]);
    fill(&stage);
    env.ok(&["-q", "capture", "snapshot", "end", name, "--entry", entry]);
}

fn write_exec(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// What the fixture interpreter prints for argv `args` reading a script whose lines are
/// `script`.
fn interp_output(args: &[&str], script: &[&str]) -> String {
    let mut out: String = args.iter().enumerate().map(|(i, a)| format!("argv[{i}]={a}\n")).collect();
    out.extend(script.iter().map(|l| format!("| {l}\n")));
    out
}

const SCRIPT: [&str; 2] = ["#!/opt/interp/bin/myinterp -x", "hello from script"];

#[test]
fn interpreter_only_in_the_capsule_runs_scripts_by_path_by_name_and_from_a_shell() {
    require!(has("gcc"), "no C compiler for the interpreter fixture");
    assert!(!Path::new("/opt/interp").exists(), "the host must not have /opt/interp for this test");
    let env = Env::new();
    capture_staged(&env, "interp", "/opt/interp/bin/script", |stage| {
        let bin = stage.join("opt/interp/bin");
        fs::create_dir_all(&bin).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/c/interp.c");
        let o = Command::new("gcc").arg("-O").arg(&src).arg("-o").arg(bin.join("myinterp")).output().unwrap();
        assert!(o.status.success(), "gcc: {}", String::from_utf8_lossy(&o.stderr));
        write_exec(&bin.join("script"), &format!("{}\n", SCRIPT.join("\n")));
        write_exec(&bin.join("envscript"), "#!/usr/bin/env myinterp\nenv script\n");
        // A script whose interpreter is a script.
        write_exec(&bin.join("nested"), "#!/opt/interp/bin/script nested-arg\nnested\n");
    });
    let direct = interp_output(&["/opt/interp/bin/myinterp", "-x", "/opt/interp/bin/script", "a", "b"], &SCRIPT);
    // The launcher's first exec, twice: the second run starts from its launch plan.
    for _ in 0..2 {
        let (code, out, err) = run_capsule(&env, &["run", "interp", "--", "a", "b"]);
        assert_eq!((code, out.as_str()), (0, direct.as_str()), "{err}");
    }
    // Exec inside the run: from a shell, by path and by name, through env(1), nested.
    let sh = |script: &str| {
        let (code, out, err) = run_capsule(&env, &["run", "interp", "--entry", "/bin/sh", "--", "-c", script]);
        assert_eq!(code, 0, "sh -c {script:?}: {err}");
        out
    };
    assert_eq!(sh("/opt/interp/bin/script a b"), direct);
    assert_eq!(sh("PATH=/opt/interp/bin:$PATH; script a b"), direct);
    assert_eq!(sh("cd /opt/interp/bin && ./script a b"), direct.replace("=/opt/interp/bin/script\n", "=./script\n"));
    let by_env =
        interp_output(&["myinterp", "/opt/interp/bin/envscript", "e"], &["#!/usr/bin/env myinterp", "env script"]);
    assert_eq!(sh("PATH=/opt/interp/bin:$PATH; envscript e"), by_env);
    let nested = interp_output(
        &["/opt/interp/bin/myinterp", "-x", "/opt/interp/bin/script", "nested-arg", "/opt/interp/bin/nested", "n"],
        &SCRIPT,
    );
    assert_eq!(sh("/opt/interp/bin/nested n"), nested);
    // execvp(3) from a host program (env's PATH search).
    let (code, out, err) = run_capsule(
        &env,
        &["run", "interp", "--entry", "/usr/bin/env", "--", "PATH=/opt/interp/bin:/usr/bin:/bin", "script", "a", "b"],
    );
    assert_eq!((code, out.as_str()), (0, direct.as_str()), "{err}");
    assert!(!Path::new("/opt/interp").exists(), "a run reached the host");
}

#[test]
fn a_launcher_execs_a_sibling_of_its_dollar0_on_a_fresh_sandbox() {
    let env = Env::new();
    capture_staged(&env, "launch", "/opt/app/bin/launcher", |stage| {
        let bin = stage.join("opt/app/bin");
        write_exec(
            &bin.join("launcher"),
            "#!/bin/sh\necho \"launcher $0\"\nexec \"$(dirname \"$0\")/sibling\" \"$@\"\n",
        );
        write_exec(&bin.join("sibling"), "#!/bin/sh\necho \"sibling $0 $*\"\n");
    });
    assert!(!Path::new("/opt/app").exists(), "the host must not have /opt/app for this test");
    let (code, out, err) = run_capsule(&env, &["run", "launch", "--", "x", "y"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "launcher /opt/app/bin/launcher\nsibling /opt/app/bin/sibling x y\n"),
        "{err}"
    );
    // The directory was materialised with it, for what finds siblings without the shim.
    let tree = env.store().join("sandboxes/launch/root/opt/app/bin");
    assert!(tree.join("sibling").is_file(), "the sibling is not in the tree");
}

/// Packages `apt-get install php-cli` would add here, downloaded into `dir`; `None` when php
/// is installed already or apt cannot tell or download.
fn download_php(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let _lock = dpkg_lock();
    let sim = Command::new("apt-get").args(["install", "-s", "--no-install-recommends", "php-cli"]).output();
    let sim = sim.map_err(|e| format!("apt-get: {e}"))?;
    let pkgs: Vec<String> = String::from_utf8_lossy(&sim.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("Inst ")?.split_whitespace().next().map(str::to_owned))
        .collect();
    if !sim.status.success() || !pkgs.iter().any(|p| p.starts_with("php") && p.ends_with("-cli")) {
        return Err(format!("apt-get cannot install php-cli here: {}", String::from_utf8_lossy(&sim.stderr)));
    }
    let o = Command::new("apt-get").arg("download").args(&pkgs).current_dir(dir).output().unwrap();
    if !o.status.success() {
        return Err(format!("apt-get download {pkgs:?}: {}", String::from_utf8_lossy(&o.stderr)));
    }
    let mut debs: Vec<PathBuf> =
        crate::support::walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "deb")).collect();
    debs.sort();
    Ok(debs)
}

#[test]
fn phar_from_a_php_capsule_runs_by_name_on_a_host_without_php() {
    require!(has("apt-get") && has("dpkg"), "needs apt-get and dpkg");
    require!(!Path::new("/usr/bin/php").exists(), "php is installed on the host");
    let env = Env::new();
    let debs = env.path("debs");
    fs::create_dir_all(&debs).unwrap();
    let debs = match download_php(&debs) {
        Ok(d) => d,
        Err(why) => {
            crate::support::require_or_skip(&why);
            return;
        }
    };
    capture_staged(&env, "php", "/usr/bin/phar", |stage| {
        for deb in &debs {
            let o = Command::new("dpkg").arg("-x").arg(deb).arg(stage).output().unwrap();
            assert!(o.status.success(), "dpkg -x {}: {}", deb.display(), String::from_utf8_lossy(&o.stderr));
        }
        // What the maintainer scripts would have made: the alternatives' names and the phar
        // extension's configuration.
        let bin = stage.join("usr/bin");
        let php = fs::read_dir(&bin)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .find(|n| n.strip_prefix("php").is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())))
            .expect("php binary in the packages");
        let version = php.strip_prefix("php").unwrap().to_owned();
        symlink(&php, bin.join("php")).unwrap();
        symlink(format!("phar{version}"), bin.join("phar")).unwrap();
        let etc = stage.join(format!("etc/php/{version}"));
        fs::create_dir_all(etc.join("mods-available")).unwrap();
        fs::create_dir_all(etc.join("cli/conf.d")).unwrap();
        let ini = stage.join(format!("usr/share/php{version}-common/common/phar.ini"));
        fs::copy(&ini, etc.join("mods-available/phar.ini")).unwrap();
        symlink("../../mods-available/phar.ini", etc.join("cli/conf.d/20-phar.ini")).unwrap();
    });
    // `phar` is a `#!/usr/bin/phpX.Y` script: by name as the capsule's entry point, and from a
    // shell inside the capsule through PATH.
    let (code, out, err) = run_capsule(&env, &["run", "php", "--", "phar", "version"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Phar EXT version"), "{out}");
    let (code, out, err) = run_capsule(&env, &["run", "php", "--entry", "/bin/sh", "--", "-c", "phar version"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Phar EXT version"), "{out}");
    assert!(!Path::new("/usr/bin/phar").exists(), "a run reached the host");
}

/// The trixie root under target/, built once (and again only if it is gone).
pub(crate) fn trixie_root() -> Result<PathBuf, String> {
    minimal_root("trixie")
}

/// A Debian `suite` minbase root made once per machine with mmdebstrap (under the target
/// directory, locked, built aside and renamed into place).
pub(crate) fn minimal_root(suite: &str) -> Result<PathBuf, String> {
    let roots = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("roots");
    let root = roots.join(suite);
    fs::create_dir_all(&roots).map_err(|e| e.to_string())?;
    let lock = fs::File::create(roots.join(format!("{suite}.lock"))).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if root.join("usr/bin/dpkg").exists() {
        return Ok(root);
    }
    let tmp = roots.join(format!("{suite}.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let o = Command::new("mmdebstrap").args(["--variant=minbase", "--quiet", suite]).arg(&tmp).output();
    let o = o.map_err(|e| format!("mmdebstrap: {e}"))?;
    if !o.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!("mmdebstrap {suite} failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    fs::rename(&tmp, &root).map_err(|e| e.to_string())?;
    Ok(root)
}

/// capsule's binaries and capsule `name` (exported as `name.capsule`) in a fresh directory
/// `/opt/PREFIX-PID` inside `root`: its path inside the root, and what removes it.
pub(crate) fn stage_in_root(env: &Env, root: &Path, prefix: &str, name: &str) -> (String, RemoveDir) {
    let inside = format!("/opt/{prefix}-{}", std::process::id());
    let dir = root.join(inside.trim_start_matches('/'));
    let cleanup = RemoveDir(dir.clone());
    fs::create_dir_all(&dir).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_capsule")).parent().unwrap();
    for f in ["capsule", "capsule-cli", "libcapsule_shim.so"] {
        fs::copy(bin.join(f), dir.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    env.ok(&["-q", "export", name, "-o", dir.join(format!("{name}.capsule")).to_str().unwrap()]);
    (inside, cleanup)
}

/// `sh -c SCRIPT` chrooted into `root`, in a private mount namespace of its own (/proc and /dev
/// for the chroot go away with it), with a clean environment.
pub(crate) fn in_root(root: &Path, script: &str) -> Command {
    let r = root.to_str().unwrap();
    let outer =
        format!("mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && exec chroot {r} /bin/sh -c \"$1\"");
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &outer, "sh", script]);
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    c
}

/// Removes a directory inside the trixie root when dropped.
pub(crate) struct RemoveDir(pub(crate) PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn elf_capsule_with_its_own_glibc_runs_in_a_trixie_root() {
    require!(is_root() && has("unshare") && has("chroot"), "needs root, unshare and chroot");
    require!(has("mmdebstrap"), "mmdebstrap is not installed (apt-get install mmdebstrap)");
    let root = match trixie_root() {
        Ok(r) => r,
        Err(why) => {
            crate::support::require_or_skip(&why);
            return;
        }
    };
    let env = Env::new();
    {
        // jq stays put while it is captured (another test purges and reinstalls it).
        let _lock = dpkg_lock();
        if !Path::new("/usr/bin/jq").exists() {
            let o = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "jq"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .unwrap();
            require!(o.status.success(), "cannot install jq: {}", String::from_utf8_lossy(&o.stderr));
        }
        env.ok(&["-q", "capture", "elf", "jq", "/usr/bin/jq"]);
    }
    // capsule's binaries and the capsule, inside the root.
    let (inside, _cleanup) = stage_in_root(&env, &root, "capsule-e2e", "jq");
    let in_root = |script: &str| with_stdin(&mut in_root(&root, script), b"{\"a\":1}");
    let store = format!("{inside}/store");
    let o = in_root(&format!("{inside}/capsule --store {store} -q import {inside}/jq.capsule && ldd --version"));
    assert!(o.status.success(), "import: {}", String::from_utf8_lossy(&o.stderr));
    let ldd = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!ldd.contains("2.36"), "the root's glibc should be newer than the capsule's: {ldd}");
    // The capsule's glibc under the root's loader (what `capsule run` did before) dies.
    let tree = format!("{store}/sandboxes/jq/root");
    let o = in_root(&format!(
        "{inside}/capsule --store {store} run jq -- -n 1 >/dev/null; LD_LIBRARY_PATH={tree}/usr/lib/x86_64-linux-gnu {tree}/usr/bin/jq .a"
    ));
    assert!(!o.status.success(), "the host's loader ran the capsule's glibc: {}", String::from_utf8_lossy(&o.stdout));
    // With the capsule's own loader it runs, on the full path and from its launch plan.
    for _ in 0..2 {
        let o = in_root(&format!("{inside}/capsule --store {store} run jq -- .a"));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n", "{}", String::from_utf8_lossy(&o.stderr));
    }
}
