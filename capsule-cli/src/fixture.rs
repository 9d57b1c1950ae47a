//! The bundled demo application: `capsule-demo` and its library `libcapsuledemo`.
//!
//! The C sources, config file and data files under `fixtures/demo/` are embedded
//! in this binary at compile time. [`install_demo`] compiles them with the host C
//! compiler and installs the result into a staging root, DESTDIR-style:
//!
//! ```text
//! ROOT/usr/bin/capsule-demo                                  0755  the program
//! ROOT/usr/lib/capsule-demo/libcapsuledemo.so.1.0            0755  the library
//! ROOT/usr/lib/capsule-demo/libcapsuledemo.so.1 -> libcapsuledemo.so.1.0
//! ROOT/etc/capsule-demo.conf                                 0644
//! ROOT/usr/share/capsule-demo/data/{numbers,readme}.txt      0644
//! ```
//!
//! The program has a RUNPATH of `$ORIGIN/../lib/capsule-demo`, so the tree
//! works wherever it sits (in a staging root, in a capsule, or at `/`).
//!
//! Invariants:
//! - Nothing is written under the root unless both compiler runs succeeded.
//! - Every file is written to a temporary sibling and renamed into place, so a
//!   re-install never leaves a half-written file and works over a running binary.
//! - Nothing is written through a symlinked directory below the root, so an
//!   absolute symlink in the staging tree cannot redirect writes onto the host.
//! - The temporary build directory is removed on success and on error.

use anyhow::{Context, Result, bail};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the demo application's files land, relative to the staging root.
pub const DEMO_BINARY: &str = "usr/bin/capsule-demo";
/// The demo library as the program's loader looks it up (a symlink to the real file).
pub const DEMO_LIBRARY: &str = "usr/lib/capsule-demo/libcapsuledemo.so.1";
/// The demo program's configuration file, relative to the staging root.
pub const DEMO_CONFIG: &str = "etc/capsule-demo.conf";
/// The directory of the demo program's data files, relative to the staging root.
pub const DEMO_DATA_DIR: &str = "usr/share/capsule-demo/data";

/// The real file name of the library; [`DEMO_LIBRARY`] links to it.
const LIBRARY_REAL_NAME: &str = "libcapsuledemo.so.1.0";
/// The library's soname, recorded as DT_NEEDED in the program.
const LIBRARY_SONAME: &str = "libcapsuledemo.so.1";
/// The library's real file, relative to the staging root.
const LIBRARY_FILE: &str = "usr/lib/capsule-demo/libcapsuledemo.so.1.0";
/// The program's RUNPATH; `$ORIGIN` is literal, for the dynamic loader.
const RUNPATH_FLAG: &str = "-Wl,-rpath,$ORIGIN/../lib/capsule-demo";

const PROGRAM_SOURCE: &str = include_str!("../../fixtures/demo/capsule-demo.c");
const LIBRARY_SOURCE: &str = include_str!("../../fixtures/demo/libcapsuledemo.c");
const LIBRARY_HEADER: &str = include_str!("../../fixtures/demo/libcapsuledemo.h");
const CONFIG: &[u8] = include_bytes!("../../fixtures/demo/capsule-demo.conf");
const DATA_FILES: &[(&str, &[u8])] = &[
    ("numbers.txt", include_bytes!("../../fixtures/demo/data/numbers.txt")),
    ("readme.txt", include_bytes!("../../fixtures/demo/data/readme.txt")),
];

/// Flags for both compiler runs.
const CFLAGS: &[&str] = &["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"];

/// A C compiler command: the program and any leading arguments (from `CC`).
#[derive(Debug, Clone)]
struct Compiler {
    program: OsString,
    args: Vec<OsString>,
}

/// Compile the bundled demo (needs `cc` or `gcc` on PATH; honour env CC if set) in a temporary build dir and install it under `root`,
/// creating directories as needed. Returns the installed paths (absolute host paths under root).
///
/// The paths are, in order: the program, the library file, the library's
/// soname symlink, the config file, then the data files.
pub fn install_demo(root: &Path) -> Result<Vec<PathBuf>> {
    let compiler = find_compiler()?;
    install_demo_with(&compiler, root)
}

/// [`install_demo`] with an explicit compiler.
fn install_demo_with(compiler: &Compiler, root: &Path) -> Result<Vec<PathBuf>> {
    let root = std::path::absolute(root).with_context(|| format!("resolving the staging root {}", root.display()))?;
    let build = TempDir::create("capsule-demo-build")?;
    let (binary, library) = build_demo(compiler, build.path())?;
    install_tree(&root, &binary, &library)
        .with_context(|| format!("installing the demo application under {}", root.display()))
}

/// The compiler from `CC` (split on whitespace, like make does), else `cc` or `gcc` on PATH.
fn find_compiler() -> Result<Compiler> {
    if let Some(cc) = std::env::var_os("CC").filter(|cc| !cc.is_empty()) {
        let mut words: Vec<OsString> = match cc.to_str() {
            Some(text) => text.split_whitespace().map(OsString::from).collect(),
            None => vec![cc.clone()],
        };
        if !words.is_empty() {
            let program = words.remove(0);
            return Ok(Compiler { program, args: words });
        }
    }
    ["cc", "gcc"]
        .into_iter()
        .find_map(find_in_path)
        .map(|program| Compiler { program: program.into_os_string(), args: Vec::new() })
        .context("no C compiler found (install gcc) to build the demo application")
}

/// The first executable regular file called `name` in a directory of PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).filter(|dir| !dir.as_os_str().is_empty()).map(|dir| dir.join(name)).find(|candidate| {
        fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Write the sources into `dir`, compile the library and then the program.
/// Returns the paths of the built program and library.
fn build_demo(compiler: &Compiler, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    for (name, text) in
        [("capsule-demo.c", PROGRAM_SOURCE), ("libcapsuledemo.c", LIBRARY_SOURCE), ("libcapsuledemo.h", LIBRARY_HEADER)]
    {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let library = dir.join(LIBRARY_REAL_NAME);
    let mut args = os_args(CFLAGS);
    args.extend(os_args(&["-shared", "-fPIC", "-fvisibility=hidden"]));
    args.push(format!("-Wl,-soname,{LIBRARY_SONAME}").into());
    args.extend(["-o".into(), library.clone().into()]);
    args.push(dir.join("libcapsuledemo.c").into());
    run_compiler(compiler, "compiling the demo library", &args)?;

    let binary = dir.join("capsule-demo");
    let mut args = os_args(CFLAGS);
    args.extend(["-o".into(), binary.clone().into()]);
    args.push(dir.join("capsule-demo.c").into());
    // Linking the library by path records its soname as DT_NEEDED.
    args.push(library.clone().into());
    args.extend(os_args(&[RUNPATH_FLAG, "-Wl,--enable-new-dtags"]));
    run_compiler(compiler, "compiling the demo program", &args)?;
    Ok((binary, library))
}

/// `&str`s as `OsString`s.
fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Run the compiler with `args` (no shell); on failure, the error names `step`,
/// the command line and the compiler's output.
fn run_compiler(compiler: &Compiler, step: &str, args: &[OsString]) -> Result<()> {
    let shown = command_line(&compiler.program, compiler.args.iter().chain(args));
    let output = Command::new(&compiler.program)
        .args(&compiler.args)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{step}: could not run `{shown}`"))?;
    if !output.status.success() {
        let mut message = String::from_utf8_lossy(&output.stderr).trim_end().to_owned();
        if message.is_empty() {
            message = String::from_utf8_lossy(&output.stdout).trim_end().to_owned();
        }
        bail!("{step}: `{shown}` failed ({}):\n{message}", output.status);
    }
    Ok(())
}

/// A command line for messages, with arguments shell-quoted where needed.
fn command_line<'a>(program: &'a OsStr, args: impl Iterator<Item = &'a OsString>) -> String {
    std::iter::once(program)
        .chain(args.map(OsString::as_os_str))
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,=+:@%".contains(c));
            if plain { word.into_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Install the built files and the embedded config and data under `root`.
fn install_tree(root: &Path, binary: &Path, library: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
    let mut installed = vec![
        install_file(root, DEMO_BINARY, &read(binary)?, 0o755)?,
        install_file(root, LIBRARY_FILE, &read(library)?, 0o755)?,
        install_symlink(root, DEMO_LIBRARY, LIBRARY_REAL_NAME)?,
        install_file(root, DEMO_CONFIG, CONFIG, 0o644)?,
    ];
    for (name, contents) in DATA_FILES {
        let relative = format!("{DEMO_DATA_DIR}/{name}");
        installed.push(install_file(root, &relative, contents, 0o644)?);
    }
    Ok(installed)
}

/// Write `contents` with `mode` to `root/relative`, atomically by rename.
fn install_file(root: &Path, relative: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
    let (dest, temp) = prepare_destination(root, relative)?;
    let result = fs::write(&temp, contents)
        .and_then(|()| fs::set_permissions(&temp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&temp, &dest));
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(err).with_context(|| format!("installing {}", dest.display()));
    }
    Ok(dest)
}

/// Make `root/relative` a symlink to `target`, atomically by rename.
fn install_symlink(root: &Path, relative: &str, target: &str) -> Result<PathBuf> {
    let (dest, temp) = prepare_destination(root, relative)?;
    let result = symlink(target, &temp).and_then(|()| fs::rename(&temp, &dest));
    if let Err(err) = result {
        let _ = fs::remove_file(&temp);
        return Err(err).with_context(|| format!("linking {} -> {target}", dest.display()));
    }
    Ok(dest)
}

/// Create the parent directories of `root/relative` (refusing symlinks on the
/// way) and return the destination and a free temporary sibling of it.
fn prepare_destination(root: &Path, relative: &str) -> Result<(PathBuf, PathBuf)> {
    let relative = Path::new(relative);
    let mut dir = root.to_path_buf();
    for component in relative.parent().into_iter().flat_map(Path::components) {
        let Component::Normal(name) = component else {
            bail!("invalid install path {}", relative.display());
        };
        dir.push(name);
        ensure_real_dir(&dir)?;
    }
    let file_name = relative.file_name().with_context(|| format!("invalid install path {}", relative.display()))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".capsule-tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    if temp.symlink_metadata().is_ok() {
        fs::remove_file(&temp).with_context(|| format!("removing stale {}", temp.display()))?;
    }
    Ok((dir.join(file_name), temp))
}

/// Create `dir` if missing; fail if it exists as anything but a real directory.
fn ensure_real_dir(dir: &Path) -> Result<()> {
    match dir.symlink_metadata() {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!("refusing to install through the symlink {}", dir.display())
        }
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o755).create(dir).with_context(|| format!("creating {}", dir.display()))
        }
        Err(err) => Err(err).with_context(|| format!("inspecting {}", dir.display())),
    }
}

/// A uniquely named directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// Create `TMPDIR/<prefix>-<pid>-<nanos>-<counter>`, mode 0700.
    fn create(prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{nanos}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating the build directory {}", path.display()))?;
        Ok(Self(path))
    }

    /// The directory's path.
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the installed demo with its config and data taken from `root`.
    fn run_demo(root: &Path, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(root.join(DEMO_BINARY))
            .args(args)
            .env("CAPSULE_DEMO_CONF", root.join(DEMO_CONFIG))
            .env("CAPSULE_DEMO_DATA", root.join(DEMO_DATA_DIR))
            .output()
            .expect("run capsule-demo");
        let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    }

    fn host_name() -> String {
        fs::read_to_string("/proc/sys/kernel/hostname").expect("read hostname").trim().to_owned()
    }

    #[test]
    fn installs_and_runs_natively() {
        let tmp = TempDir::create("capsule-demo-test").expect("temp dir");
        let root = tmp.path().join("root");
        let installed = install_demo(&root).expect("install demo");

        assert_eq!(installed.len(), 4 + DATA_FILES.len());
        assert!(installed.iter().all(|p| p.is_absolute() && p.starts_with(&root)));
        let mode = |rel: &str| {
            let meta = fs::metadata(root.join(rel)).expect("stat");
            meta.permissions().mode() & 0o7777
        };
        assert_eq!(mode(DEMO_BINARY), 0o755);
        assert_eq!(mode(LIBRARY_FILE), 0o755);
        assert_eq!(mode(DEMO_CONFIG), 0o644);
        assert_eq!(mode(&format!("{DEMO_DATA_DIR}/readme.txt")), 0o644);
        let link = fs::read_link(root.join(DEMO_LIBRARY)).expect("soname link");
        assert_eq!(link, Path::new(LIBRARY_REAL_NAME));

        let (ok, out, err) = run_demo(&root, &[]);
        assert!(ok, "capsule-demo failed:\n{out}\n{err}");
        let lines: Vec<&str> = out.lines().collect();
        let host = format!("hostname: {}", host_name());
        for expected in [host.as_str(), "config.color: teal", "config.port: 8080"] {
            assert!(lines.contains(&expected), "no `{expected}` in:\n{out}");
        }
        assert!(out.contains("\nlibrary: libcapsuledemo 1.0 (greeting from the capsule)\n"));
        assert!(out.contains("\nlibrary.constructor: ran\n"), "{out}");
        assert!(out.contains("\ndata: readme.txt "), "{out}");
        assert!(out.contains("\naddress: lo inet 127.0.0.1\n"), "{out}");
        assert_eq!(lines.last(), Some(&"ok"), "{out}");
        let exe = format!("exe: {}", root.join(DEMO_BINARY).display());
        assert!(lines.contains(&exe.as_str()), "{out}");
    }

    #[test]
    fn write_appends_and_relocated_tree_still_runs() {
        let tmp = TempDir::create("capsule-demo-test").expect("temp dir");
        install_demo(&tmp.path().join("root")).expect("install demo");
        // $ORIGIN in the RUNPATH: the tree works after it moves.
        let root = tmp.path().join("moved");
        fs::rename(tmp.path().join("root"), &root).expect("move tree");

        let target = root.join("tmp-written.txt");
        let target_arg = target.to_str().expect("utf-8 path");
        for text in ["first line", "second line"] {
            let (ok, out, err) = run_demo(&root, &["--write", target_arg, text]);
            assert!(ok, "capsule-demo --write failed:\n{out}\n{err}");
            assert!(out.contains(&format!("\nwrote: {target_arg}\n")), "{out}");
            assert!(out.contains("\nlibrary: "), "{out}");
            assert!(out.ends_with("\nok\n"), "{out}");
        }
        let written = fs::read_to_string(&target).expect("read written file");
        assert_eq!(written, "first line\nsecond line\n");
    }

    #[test]
    fn missing_config_and_data_are_reported_not_fatal() {
        let tmp = TempDir::create("capsule-demo-test").expect("temp dir");
        let root = tmp.path().join("root");
        install_demo(&root).expect("install demo");
        fs::remove_file(root.join(DEMO_CONFIG)).expect("remove config");
        fs::remove_dir_all(root.join(DEMO_DATA_DIR)).expect("remove data");

        let (ok, out, err) = run_demo(&root, &[]);
        assert!(ok, "capsule-demo failed:\n{out}\n{err}");
        let conf = format!("config: (missing {})", root.join(DEMO_CONFIG).display());
        let data = format!("data: (missing {})", root.join(DEMO_DATA_DIR).display());
        assert!(out.lines().any(|l| l == conf), "{out}");
        assert!(out.lines().any(|l| l == data), "{out}");
        assert!(out.ends_with("\nok\n"), "{out}");
    }

    #[test]
    fn compiler_failure_names_step_and_shows_stderr() {
        let tmp = TempDir::create("capsule-demo-test").expect("temp dir");
        let root = tmp.path().join("root");
        // `sh -c SCRIPT sh ARGS...` stands in for a compiler that fails loudly.
        let failing =
            Compiler { program: "sh".into(), args: os_args(&["-c", "echo 'boom: bad code' >&2; exit 3", "sh"]) };
        let err = install_demo_with(&failing, &root).expect_err("must fail");
        let message = format!("{err:#}");
        assert!(message.contains("compiling the demo library"), "{message}");
        assert!(message.contains("boom: bad code"), "{message}");
        assert!(message.contains("-Wl,-soname,libcapsuledemo.so.1"), "{message}");
        assert!(!root.exists(), "nothing may be installed after a failed build");
    }

    #[test]
    fn unrunnable_compiler_is_named() {
        let tmp = TempDir::create("capsule-demo-test").expect("temp dir");
        let missing = Compiler { program: "/nonexistent/bin/cc".into(), args: Vec::new() };
        let err = install_demo_with(&missing, &tmp.path().join("root")).expect_err("must fail");
        let message = format!("{err:#}");
        assert!(message.contains("could not run `/nonexistent/bin/cc "), "{message}");
    }

    #[test]
    fn refuses_to_write_through_symlinked_directories() {
        let tmp = TempDir::create("capsule-demo-test").expect("temp dir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root).expect("root");
        fs::create_dir_all(&outside).expect("outside");
        symlink(&outside, root.join("etc")).expect("symlink");
        let err = install_file(&root, DEMO_CONFIG, b"x", 0o644).expect_err("must refuse");
        assert!(format!("{err:#}").contains("symlink"), "{err:#}");
        assert!(fs::read_dir(&outside).expect("list").next().is_none());
    }

    #[test]
    fn command_line_quotes_special_arguments() {
        let args = os_args(&["-O2", RUNPATH_FLAG, "it's"]);
        let shown = command_line(OsStr::new("cc"), args.iter());
        assert_eq!(shown, r"cc -O2 '-Wl,-rpath,$ORIGIN/../lib/capsule-demo' 'it'\''s'");
    }
}
