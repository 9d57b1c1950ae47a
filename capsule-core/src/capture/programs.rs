//! The programs a capture installed, as named entry points, and the default among them.
//!
//! Three sources, in this order of precedence when two give the same name:
//! - the `Exec=` line of every desktop entry the capsule holds
//!   (`usr/share/applications/*.desktop`, `usr/local/share/applications/*.desktop`);
//! - the file lists of the Debian packages the capture holds files of
//!   (`var/lib/dpkg/info/PKG.list` under the capture's root): every program in a `bin`, `sbin`
//!   or `games` directory, PATH directories first (`/usr/bin/psql` before
//!   `/usr/lib/postgresql/15/bin/psql`);
//! - every new program in a PATH directory (`usr/bin`, `usr/sbin`, `usr/local/bin`, …).
//!
//! A program is a capsule file with an execute bit, or a capsule symlink that leads, through
//! the capsule's symlinks, to one (or out of the capsule to an executable host file: Debian's
//! `/usr/bin/redis-server` → `redis-check-rdb` when the host has `redis-tools`).
//!
//! The default ([`Manifest::default_entry`]): the capture's `--entry` (set by the caller), else
//! the only program, else the main desktop application of the requested packages (the only
//! one, or the one named like a requested package). Otherwise there is none, and a run that
//! names no program lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::manifest::{EntryKind, EntryPoint, EntrySource, Followed, Manifest, RelPath};

/// PATH directories, in the order a shell's PATH searches them.
pub const PATH_DIRS: &[&str] = &["usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin", "usr/games"];

/// Directories of desktop entries.
const DESKTOP_DIRS: &[&str] = &["usr/share/applications", "usr/local/share/applications"];

/// Record in `m` the programs the capture installed and, unless it has one, its default.
/// `root` is where the captured files are on the host (the install's sandbox tree, or the
/// snapshot's base); `requested` the packages the installer was asked for (may be empty);
/// `new_in_path`: whether a new program in a PATH directory counts without a package
/// naming it. Entry points already in `m` (declared) stay first and keep their names.
pub fn record(m: &mut Manifest, root: &Path, requested: &[String], new_in_path: bool) {
    let packages = packages(m, root);
    let owner = |rel: &RelPath| packages.iter().find(|(_, files)| files.contains(rel)).map(|(p, _)| p.clone());
    let mut found: Vec<EntryPoint> = Vec::new();
    // Desktop applications, with whether they are shown and their package.
    let mut apps: Vec<(EntryPoint, String)> = Vec::new();
    for e in &m.entries {
        let Some(name) = desktop_file(&e.path) else { continue };
        if !matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
            continue;
        }
        let Ok(text) = fs::read(root.join(std::ffi::OsStr::from_bytes(e.path.as_bytes()))) else { continue };
        let Some(d) = Desktop::parse(&String::from_utf8_lossy(&text)) else { continue };
        let Some(path) = find_program(m, &d.program) else { continue };
        let base =
            String::from_utf8_lossy(path.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default()).into_owned();
        let ep_name = if d.args.is_empty() { base } else { name.clone() };
        let ep = EntryPoint {
            name: ep_name,
            path,
            args: d.args,
            source: EntrySource::Desktop(e.path.display()[1..].to_owned()),
        };
        if d.shown {
            apps.push((ep.clone(), owner(&e.path).unwrap_or_else(|| name.clone())));
        }
        found.push(ep);
    }
    // Programs of the captured packages: PATH directories first, then other bin directories.
    let mut listed: Vec<(usize, RelPath, String)> = Vec::new();
    for (pkg, files) in &packages {
        for f in files {
            let Some(parent) = f.parent() else { continue };
            let rank = PATH_DIRS.iter().position(|d| parent.as_bytes() == d.as_bytes());
            let in_bin = parent
                .as_bytes()
                .rsplit(|&c| c == b'/')
                .next()
                .is_some_and(|c| matches!(c, b"bin" | b"sbin" | b"games"));
            if (rank.is_some() || in_bin) && is_program(m, f) {
                listed.push((rank.unwrap_or(PATH_DIRS.len()), f.clone(), pkg.clone()));
            }
        }
    }
    listed.sort();
    found.extend(listed.into_iter().map(|(_, f, pkg)| EntryPoint::new(base_name(&f), f, EntrySource::Package(pkg))));
    if new_in_path {
        for e in &m.entries {
            let in_path = e.path.parent().is_some_and(|p| PATH_DIRS.iter().any(|d| p.as_bytes() == d.as_bytes()));
            if in_path && !matches!(e.kind, EntryKind::Dir) && is_program(m, &e.path) {
                found.push(EntryPoint::new(base_name(&e.path), e.path.clone(), EntrySource::Program));
            }
        }
    }
    let mut names: BTreeSet<String> = m.entry_points.iter().map(|e| e.name.clone()).collect();
    let mut new: Vec<EntryPoint> = found.into_iter().filter(|e| names.insert(e.name.clone())).collect();
    new.sort_by(|a, b| a.name.cmp(&b.name));
    m.entry_points.extend(new);
    if m.default_entry.is_some() {
        return;
    }
    m.default_entry = match m.entry_points.as_slice() {
        [only] => Some(only.name.clone()),
        _ => main_app(&apps, requested).filter(|n| m.entry_points.iter().any(|e| &e.name == n)),
    };
}

/// The main desktop application among `apps` (entry point, package): of the requested
/// packages' applications (all of them when none was requested), the only one, or the one
/// named like a requested package (its desktop file or its program).
fn main_app(apps: &[(EntryPoint, String)], requested: &[String]) -> Option<String> {
    let mine: Vec<&EntryPoint> =
        apps.iter().filter(|(_, pkg)| requested.is_empty() || requested.contains(pkg)).map(|(e, _)| e).collect();
    if let [only] = mine.as_slice() {
        return Some(only.name.clone());
    }
    let named: Vec<&&EntryPoint> = mine
        .iter()
        .filter(|e| {
            let stem = match &e.source {
                EntrySource::Desktop(d) => RelPath::new(d.as_bytes()).ok().and_then(|p| desktop_file(&p)),
                _ => None,
            };
            requested.iter().any(|r| *r == e.name || Some(r) == stem.as_ref() || *r == base_name(&e.path))
        })
        .collect();
    match named.as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    }
}

/// The desktop id of a desktop entry file (`usr/share/applications/gimp.desktop` → `gimp`).
fn desktop_file(path: &RelPath) -> Option<String> {
    let parent = path.parent()?;
    if !DESKTOP_DIRS.iter().any(|d| parent.as_bytes() == d.as_bytes()) {
        return None;
    }
    let name = path.as_bytes().rsplit(|&c| c == b'/').next()?;
    let stem = name.strip_suffix(b".desktop").filter(|s| !s.is_empty())?;
    Some(String::from_utf8_lossy(stem).into_owned())
}

fn base_name(p: &RelPath) -> String {
    String::from_utf8_lossy(p.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default()).into_owned()
}

/// Whether `path` is a program: a capsule file with an execute bit, or a capsule symlink that
/// leads to one, or (the capsule's symlink named `path` itself) out of the capsule to an
/// executable host file.
pub fn is_program(m: &Manifest, path: &RelPath) -> bool {
    match m.follow(path) {
        Some(Followed::Capsule(_, e)) => match &e.kind {
            EntryKind::File { .. } => e.mode & 0o111 != 0,
            EntryKind::Hardlink { target } => m.get(target).is_some_and(|t| t.mode & 0o111 != 0),
            _ => false,
        },
        // The capsule's own symlink by that name (a directory symlink on the way, such as
        // `/bin` → `usr/bin`, does not make every host program one of the capsule's).
        Some(Followed::Host(p))
            if &p != path && m.get(path).is_some_and(|e| matches!(e.kind, EntryKind::Symlink { .. })) =>
        {
            let host = Path::new("/").join(std::ffi::OsStr::from_bytes(p.as_bytes()));
            fs::metadata(host).is_ok_and(|md| md.is_file() && md.permissions().mode() & 0o111 != 0)
        }
        _ => false,
    }
}

/// The capsule program an `Exec=` line names: an absolute path, or a name looked up in the
/// capsule's PATH directories.
fn find_program(m: &Manifest, program: &str) -> Option<RelPath> {
    if let Some(abs) = program.strip_prefix('/') {
        return RelPath::new(abs.as_bytes()).ok().filter(|p| is_program(m, p));
    }
    if program.contains('/') {
        return None;
    }
    PATH_DIRS.iter().filter_map(|d| RelPath::new(format!("{d}/{program}").into_bytes()).ok()).find(|p| is_program(m, p))
}

/// Debian packages the capsule holds files of: each `var/lib/dpkg/info/PKG[:ARCH].list` under
/// `root` that names a file or symlink of `m`, with the capsule's files it names.
pub fn packages(m: &Manifest, root: &Path) -> BTreeMap<String, Vec<RelPath>> {
    let mut out = BTreeMap::new();
    for (pkg, paths) in lists(root) {
        let mut files: Vec<RelPath> = paths.into_iter().filter_map(|p| in_capsule(m, p)).collect();
        files.sort();
        files.dedup();
        if !files.is_empty() {
            out.entry(pkg).or_insert_with(Vec::new).extend(files);
        }
    }
    out
}

/// The capsule's file or symlink a dpkg list line names: the path itself, or on a merged-usr
/// system (`/bin` → `usr/bin`, and `sbin`, `lib*` alike) the same name below `usr`, where the
/// file is: bookworm's packages list `/bin/ed`, `/bin/mksh`, `/bin/busybox` (which were then
/// no entry points, and `mksh` was dietlibc's static `/usr/lib/diet/bin/mksh`).
fn in_capsule(m: &Manifest, p: RelPath) -> Option<RelPath> {
    let file = |q: &RelPath| m.get(q).is_some_and(|e| !matches!(e.kind, EntryKind::Dir));
    if file(&p) {
        return Some(p);
    }
    let top = p.as_bytes().split(|&c| c == b'/').next().unwrap_or_default();
    if !matches!(top, b"bin" | b"sbin" | b"lib" | b"lib32" | b"lib64" | b"libx32") {
        return None;
    }
    RelPath::new([&b"usr/"[..], p.as_bytes()].concat()).ok().filter(file)
}

/// Every dpkg file list under `root`: package name (without `:ARCH`) and the paths it lists.
pub fn lists(root: &Path) -> Vec<(String, Vec<RelPath>)> {
    lists_by_arch(root).into_iter().map(|(pkg, _, paths)| (pkg, paths)).collect()
}

/// Every dpkg file list under `root` (`var/lib/dpkg/info/NAME[:ARCH].list`): package name,
/// the architecture its file name gives (multiarch `same` packages), and the paths it lists;
/// sorted by name.
pub fn lists_by_arch(root: &Path) -> Vec<(String, Option<String>, Vec<RelPath>)> {
    let Ok(dir) = fs::read_dir(root.join("var/lib/dpkg/info")) else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let file = e.file_name();
        let Some(stem) = file.as_bytes().strip_suffix(b".list") else { continue };
        let mut parts = stem.splitn(2, |&c| c == b':');
        let pkg = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let arch = parts.next().map(|a| String::from_utf8_lossy(a).into_owned());
        out.push((pkg, arch, read_list(&e.path())));
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// The paths of one dpkg file list (absolute lines; `/.` and bad lines skipped).
pub fn read_list(path: &Path) -> Vec<RelPath> {
    let Ok(text) = fs::read(path) else { return Vec::new() };
    text.split(|&c| c == b'\n')
        .filter_map(|l| l.strip_prefix(b"/"))
        .filter_map(|l| RelPath::new(l.to_vec()).ok())
        .collect()
}

/// What a desktop entry's `[Desktop Entry]` group says about its program.
#[derive(Debug, PartialEq)]
struct Desktop {
    program: String,
    args: Vec<String>,
    /// Neither `NoDisplay=true` nor `Hidden=true`.
    shown: bool,
}

impl Desktop {
    /// `None`: not an application, or no usable `Exec=` (empty, or a `%` code in the program).
    fn parse(text: &str) -> Option<Desktop> {
        let mut in_group = false;
        let (mut exec, mut app, mut shown) = (None, false, true);
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_group = line == "[Desktop Entry]";
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| in_group) else { continue };
            match (k.trim(), v.trim()) {
                ("Exec", v) => exec = Some(v.to_owned()),
                ("Type", v) => app = v == "Application",
                ("NoDisplay" | "Hidden", "true") => shown = false,
                _ => {}
            }
        }
        let mut words = exec_words(&exec?).into_iter();
        let program = words.next().filter(|p| app && !p.is_empty() && !p.contains('%'))?;
        Some(Desktop { program, args: words.collect(), shown })
    }
}

/// The words of an `Exec=` value (desktop entry specification): double quotes group, a
/// backslash escapes inside them, `%%` is `%`, and field codes (`%f`, `%U`…) are dropped.
fn exec_words(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut any) = (String::new(), false, false);
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            // `%%` is a `%`; any other field code is dropped.
            '%' => {
                if chars.next() == Some('%') {
                    cur.push('%');
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_lines() {
        assert_eq!(exec_words("libreoffice --writer %U"), vec!["libreoffice", "--writer"]);
        assert_eq!(
            exec_words(r#""/opt/my app/run" -x "a \"b\"" 100%%"#),
            vec!["/opt/my app/run", "-x", "a \"b\"", "100%"]
        );
        let d = Desktop::parse(
            "[Desktop Entry]\nType=Application\nExec=xeyes -fg red %F\nNoDisplay=true\n[Action x]\nExec=no\n",
        );
        assert_eq!(d, Some(Desktop { program: "xeyes".into(), args: vec!["-fg".into(), "red".into()], shown: false }));
        assert_eq!(Desktop::parse("[Desktop Entry]\nType=Link\nExec=x\n"), None);
    }

    #[test]
    fn defaults_and_names() {
        use crate::digest::Digest;
        let d = Digest::of(b"x");
        let file = EntryKind::File { size: 1, digest: d };
        let mut m = Manifest::for_tests(
            vec![
                ("usr", EntryKind::Dir),
                ("usr/bin", EntryKind::Dir),
                ("usr/bin/bundle", file.clone()),
                ("usr/bin/ruby", EntryKind::Symlink { target: b"ruby3.1".to_vec() }),
                ("usr/bin/ruby3.1", file.clone()),
                ("usr/bin/shell", EntryKind::Symlink { target: b"sh".to_vec() }),
                ("usr/bin/x", EntryKind::Symlink { target: b"missing".to_vec() }),
            ],
            0o755,
        );
        let root = tempfile::tempdir().unwrap();
        record(&mut m, root.path(), &["ruby".into()], true);
        let names: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
        // usr/bin/shell leads out of the capsule to the host's /usr/bin/sh; x to nothing.
        assert!(Path::new("/usr/bin/sh").is_file(), "this test needs the host's /usr/bin/sh");
        assert_eq!(names, ["bundle", "ruby", "ruby3.1", "shell"]);
        // Several programs, no desktop application: no default.
        assert_eq!(m.default_entry, None);
        m.validate().unwrap();
    }

    /// A package that lists `/bin/mksh` (merged-usr: the file is `usr/bin/mksh`) and a second
    /// build in a `bin` directory outside PATH: the entry point is the PATH one, by its
    /// package; `/bin/ed` alone gives `ed`.
    #[test]
    fn merged_usr_list_lines_name_the_files_below_usr() {
        use crate::digest::Digest;
        let file = EntryKind::File { size: 1, digest: Digest::of(b"x") };
        let mut m = Manifest::for_tests(
            vec![
                ("usr", EntryKind::Dir),
                ("usr/bin", EntryKind::Dir),
                ("usr/bin/ed", file.clone()),
                ("usr/bin/mksh", file.clone()),
                ("usr/lib", EntryKind::Dir),
                ("usr/lib/diet", EntryKind::Dir),
                ("usr/lib/diet/bin", EntryKind::Dir),
                ("usr/lib/diet/bin/mksh", file.clone()),
            ],
            0o755,
        );
        let root = tempfile::tempdir().unwrap();
        let info = root.path().join("var/lib/dpkg/info");
        fs::create_dir_all(&info).unwrap();
        fs::write(info.join("mksh.list"), "/.\n/bin\n/bin/mksh\n/usr/lib/diet/bin/mksh\n").unwrap();
        fs::write(info.join("ed.list"), "/.\n/bin/ed\n").unwrap();
        record(&mut m, root.path(), &[], false);
        let got: Vec<(&str, &[u8], &EntrySource)> =
            m.entry_points.iter().map(|e| (e.name.as_str(), e.path.as_bytes(), &e.source)).collect();
        assert_eq!(
            got,
            [
                ("ed", &b"usr/bin/ed"[..], &EntrySource::Package("ed".into())),
                ("mksh", &b"usr/bin/mksh"[..], &EntrySource::Package("mksh".into())),
            ]
        );
    }
}
