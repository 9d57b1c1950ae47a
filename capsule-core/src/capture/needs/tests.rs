use std::collections::HashMap;
use std::fs;
use std::process::Command;

use super::*;

const DIR: &str = "opt/capsule-needs-test";

fn rel(s: &str) -> RelPath {
    RelPath::new(s.as_bytes()).unwrap()
}

fn entry(path: &str, kind: EntryKind, mode: u32) -> Entry {
    Entry { path: rel(path), kind, mode, uid: 0, gid: 0, mtime: 1, mtime_nsec: 0, origin: 0 }
}

/// A capsule of `files` (path, content, mode) with their parent directories and `extra`
/// entries; the content map its files are read from.
fn capsule(files: &[(&str, Vec<u8>, u32)], extra: Vec<Entry>) -> (Manifest, HashMap<Digest, Vec<u8>>) {
    let mut m = Manifest::new("t", "latest", 1);
    let mut blobs = HashMap::new();
    let mut dirs = BTreeSet::new();
    for (path, content, mode) in files {
        let d = Digest::of(content);
        blobs.insert(d, content.clone());
        m.entries.push(entry(path, EntryKind::File { size: content.len() as u64, digest: d }, *mode));
        dirs.extend(rel(path).ancestors());
    }
    for e in &extra {
        dirs.extend(e.path.ancestors());
    }
    m.entries.extend(dirs.into_iter().map(|d| Entry { path: d, ..entry("x", EntryKind::Dir, 0o755) }));
    m.entries.extend(extra);
    m.entries.sort_by(|a, b| a.path.cmp(&b.path));
    (m, blobs)
}

fn tree<'a>(m: &'a Manifest, blobs: &'a HashMap<Digest, Vec<u8>>) -> CapsuleTree<'a> {
    CapsuleTree::new(
        m,
        Box::new(move |_: &Entry, d: &Digest, limit: Option<u64>| {
            let all = blobs.get(d).ok_or_else(absent)?;
            let n = limit.map_or(all.len(), |l| all.len().min(usize::try_from(l).unwrap()));
            Ok(Bytes::Owned(all[..n].to_vec()))
        }),
    )
}

fn gcc(dir: &Path, out: &str, src: &str, args: &[&str]) -> Vec<u8> {
    let c = dir.join(format!("{out}.c"));
    fs::write(&c, src).unwrap();
    let o = dir.join(out);
    let st = Command::new("gcc").arg("-o").arg(&o).arg(&c).args(args).current_dir(dir).status().unwrap();
    assert!(st.success(), "gcc {out}");
    fs::read(o).unwrap()
}

/// app (needs libfix.so) and libfix.so, built in a temporary directory.
fn app_and_lib() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let lib = gcc(tmp.path(), "libfix.so", "int fix(void) { return 42; }\n", &["-shared", "-fPIC"]);
    let main = "int fix(void);\nint main(void) { return fix() == 42 ? 0 : 1; }\n";
    let app = gcc(tmp.path(), "app", main, &["-L.", "-lfix"]);
    // A plugin no program loads, needing a library found nowhere.
    let gone = gcc(tmp.path(), "libgone.so", "int gone(void) { return 1; }\n", &["-shared", "-fPIC"]);
    let src = "int gone(void);\nint plug(void) { return gone(); }\n";
    let plugin = gcc(tmp.path(), "plugin.so", src, &["-shared", "-fPIC", "-L.", "-lgone"]);
    drop(gone);
    (app, lib, plugin)
}

#[test]
fn overlay_capsule_over_host() {
    let link = entry(&format!("{DIR}/sh"), EntryKind::Symlink { target: b"/bin/sh".to_vec() }, 0o777);
    let (mut m, blobs) = capsule(&[(&format!("{DIR}/f"), b"x".to_vec(), 0o644)], vec![link]);
    m.deletions.push(rel("etc/hostname"));
    let t = tree(&m, &blobs);
    assert_eq!(t.lstat(Path::new("/")).unwrap(), Node::Dir);
    assert_eq!(t.lstat(&Path::new("/").join(DIR)).unwrap(), Node::Dir, "the capsule's directory");
    assert_eq!(t.lstat(&Path::new("/").join(DIR).join("f")).unwrap(), Node::File);
    assert_eq!(&*t.read(&Path::new("/").join(DIR).join("f")).unwrap().0, b"x");
    assert!(t.is_file(&Path::new("/").join(DIR).join("sh")), "a capsule symlink to a host program");
    assert!(t.lstat(Path::new("/etc/hostname")).is_err(), "deleted by the capsule");
    assert!(t.is_file(Path::new("/etc/passwd")), "the host's");
    assert!(!t.is_file(&Path::new("/").join(DIR).join("nothing")));
}

#[test]
fn a_library_the_capsule_lacks_is_reported() {
    let (app, lib, plugin) = app_and_lib();
    let app_path = format!("{DIR}/bin/app");
    let files = [
        (app_path.as_str(), app.clone(), 0o755),
        (&format!("{DIR}/lib/libfix.so") as &str, lib, 0o644),
        (&format!("{DIR}/plugins/plugin.so") as &str, plugin, 0o644),
    ];
    let (m, blobs) = capsule(&files, vec![]);
    let t = tree(&m, &blobs);
    let lp = library_path(&m);
    assert_eq!(lp, vec![Path::new("/").join(DIR).join("lib")], "libfix.so's directory; plugin.so is not lib*");
    let r = capsule_needs(&t, &lp, &[]);
    // The program is loaded with libfix.so; the plugin on its own, and its libgone.so is missing.
    assert_eq!(r.elf, 3, "{r:?}");
    let plugin_path = format!("/{DIR}/plugins/plugin.so");
    assert_eq!(r.missing, vec![Need::file(plugin_path.clone(), Want::Library("libgone.so".into()))]);
    assert_eq!(r.missing[0].to_string(), format!("{plugin_path} needs libgone.so: {NOWHERE}"));

    // Without the library, the program misses it.
    let (m, blobs) = capsule(&[(app_path.as_str(), app, 0o755)], vec![]);
    let t = tree(&m, &blobs);
    let r = capsule_needs(&t, &library_path(&m), &[]);
    let line = format!("/{app_path} needs libfix.so: not in the capsule, not on this host");
    assert_eq!(r.missing.iter().map(ToString::to_string).collect::<Vec<_>>(), vec![line.clone()]);
    let one = program_needs(&t, &library_path(&m), &[], &Path::new("/").join(&app_path));
    assert_eq!(one.iter().map(ToString::to_string).collect::<Vec<_>>(), vec![line]);
}

#[test]
fn a_missing_elf_interpreter_is_the_loader() {
    let mut app = fs::read("/bin/true").unwrap();
    // Point PT_INTERP somewhere nothing is: same length as /lib64/ld-linux-x86-64.so.2.
    let at = app.windows(27).position(|w| w == b"/lib64/ld-linux-x86-64.so.2").expect("x86-64 /bin/true");
    app.splice(at..at + 27, b"/nonexistent/ld-capsul.so.2".iter().copied());
    let (m, blobs) = capsule(&[(&format!("{DIR}/true") as &str, app, 0o755)], vec![]);
    let t = tree(&m, &blobs);
    let r = capsule_needs(&t, &[], &[]);
    let want = Want::Loader("/nonexistent/ld-capsul.so.2".into());
    assert!(r.missing.iter().any(|n| n.want == want), "{r:?}");
    let line = r.missing.iter().find(|n| n.want == want).unwrap().to_string();
    assert_eq!(line, format!("/{DIR}/true needs its ELF interpreter /nonexistent/ld-capsul.so.2: {NOWHERE}"));
}

#[test]
fn scripts_and_entry_points() {
    let files = [
        (&format!("{DIR}/bad.sh") as &str, b"#!/nonexistent/shell -e\necho\n".to_vec(), 0o755),
        (&format!("{DIR}/good.sh") as &str, b"#!/bin/sh\necho\n".to_vec(), 0o755),
        (&format!("{DIR}/own.sh") as &str, format!("#!/{DIR}/bin/tool\n").into_bytes(), 0o755),
        (&format!("{DIR}/bin/tool") as &str, b"#!/bin/sh\n".to_vec(), 0o755),
        (&format!("{DIR}/env.sh") as &str, b"#!/usr/bin/env -S capsule-no-such-cmd -x\n".to_vec(), 0o755),
        (&format!("{DIR}/envok.sh") as &str, b"#!/usr/bin/env A=1 tool\n".to_vec(), 0o755),
        (&format!("{DIR}/notexec.sh") as &str, b"#!/nonexistent/shell\n".to_vec(), 0o644),
    ];
    let (mut m, blobs) = capsule(&files, vec![]);
    use crate::manifest::{EntryPoint, EntrySource};
    m.entry_points.push(EntryPoint::new("tool", rel(&format!("{DIR}/bin/tool")), EntrySource::Declared));
    m.entry_points.push(EntryPoint::new("gone", rel(&format!("{DIR}/bin/gone")), EntrySource::Declared));
    let t = tree(&m, &blobs);
    let path = vec![Path::new("/").join(DIR).join("bin"), PathBuf::from("/usr/bin")];
    let r = capsule_needs(&t, &[], &path);
    assert_eq!((r.scripts, r.entry_points), (6, 2), "{r:?}");
    let lines: Vec<String> = r.missing.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            format!("/{DIR}/bad.sh needs its #! interpreter /nonexistent/shell: {NOWHERE}"),
            format!(
                "/{DIR}/env.sh needs capsule-no-such-cmd (#!/usr/bin/env capsule-no-such-cmd): not in the capsule's or \
                 this host's PATH"
            ),
            format!("entry point gone needs /{DIR}/bin/gone: {NOWHERE}"),
        ]
    );
    // The run's check of one program follows its `#!` chain.
    let bad = program_needs(&t, &[], &path, &Path::new("/").join(DIR).join("bad.sh"));
    assert_eq!(bad.len(), 1);
    assert!(program_needs(&t, &[], &path, &Path::new("/").join(DIR).join("own.sh")).is_empty());
}

#[test]
fn kernel_features_of_the_run_options() {
    let none = Kernel { landlock_abi: 0, user_notif: false, user_namespaces: false };
    let all = Kernel { landlock_abi: 7, user_notif: true, user_namespaces: true };
    let full = RunNeeds {
        rules: vec![("/".into(), Mode::Full)],
        tier2: Some("the program is statically linked".into()),
        rootless_netns: true,
        ..RunNeeds::default()
    };
    assert!(kernel_needs(&full, &all).is_empty());
    let wants: Vec<Want> = kernel_needs(&full, &none).into_iter().map(|n| n.want).collect();
    assert_eq!(
        wants,
        ["Landlock", "seccomp user notification", "unprivileged user namespaces"].map(|k| Want::Kernel(k.into()))
    );
    let unconfined = RunNeeds { unconfined: true, ..full };
    assert_eq!(kernel_needs(&unconfined, &none).len(), 2, "--unconfined needs no Landlock");
    let merged = RunNeeds { rules: crate::run::default_rules(), ..RunNeeds::default() };
    assert!(kernel_needs(&merged, &none).is_empty(), "the default rules need nothing");
}
