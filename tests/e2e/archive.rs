//! Done-when 4: bad export files are refused with an error naming the problem, and the store
//! (`list`, `verify`, its blob files) is exactly as before. Signed exports: `keygen`,
//! `export --sign`, `import --trust`.

use std::fs;

use capsule_core::digest::Digest;
use capsule_core::manifest::{CaptureStep, Entry, EntryKind, Manifest, Origin, RelPath};

use crate::support::Env;

/// A store with one capsule, an export of another capsule from a second store, and the
/// receiving store's state before any import.
struct Setup {
    env: Env,
    file: std::path::PathBuf,
}

fn setup() -> Setup {
    let env = Env::new();
    env.small_capsule("resident", &[("usr/bin/tool", b"#!/bin/sh\necho resident\n")]);
    let source = Env::new();
    let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    source.small_capsule(
        "app",
        &[("usr/bin/app", b"#!/bin/sh\necho app\n"), ("usr/share/app/data.bin", &big), ("etc/app.conf", b"k = v\n")],
    );
    let file = env.path("app.capsule");
    source.ok(&["-q", "export", "app", "-o", file.to_str().unwrap()]);
    Setup { env, file }
}

/// Import `bytes` and require refusal with a message containing every one of `needles`.
fn refused(s: &Setup, name: &str, bytes: &[u8], needles: &[&str]) {
    refused_with(s, name, bytes, &[], needles);
}

/// As [`refused`], with more arguments for `import` (`--trust ...`).
fn refused_with(s: &Setup, name: &str, bytes: &[u8], extra: &[&str], needles: &[&str]) {
    let before = s.env.state();
    let path = s.env.path(name);
    fs::write(&path, bytes).unwrap();
    let mut args = vec!["import", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = s.env.fails(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(name), "error does not name the file {name}: {err}");
    for n in needles {
        assert!(err.contains(n), "error for {name} lacks {n:?}: {err}");
    }
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(s.env.state(), before, "the store changed after refusing {name}");
}

#[test]
fn good_export_imports_and_runs_verify_clean() {
    let s = setup();
    s.env.ok(&["-q", "import", s.file.to_str().unwrap()]);
    let list = s.env.json(&["list"]);
    let names: Vec<_> = list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["app", "resident"]);
    assert_eq!(s.env.json(&["verify"])["ok"], true);
}

#[test]
fn truncated_export_is_refused() {
    let s = setup();
    let bytes = fs::read(&s.file).unwrap();
    for (i, cut) in [bytes.len() - 1, bytes.len() - 41, bytes.len() / 2, 30, 20].into_iter().enumerate() {
        refused(&s, &format!("cut{i}.capsule"), &bytes[..cut], &["truncated"]);
    }
}

/// `bytes` with one bit flipped inside data.bin's blob frame; and data.bin's digest.
fn flip_in_data_blob(bytes: &[u8]) -> (Vec<u8>, String) {
    let data_digest =
        blake3::hash(&(0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()).to_hex().to_string();
    let raw = hex_to_bytes(&data_digest);
    // The digest also appears in the manifest; the blob record is the last occurrence.
    let at = bytes.windows(32).rposition(|w| w == raw).expect("blob record of data.bin");
    let mut b = bytes.to_vec();
    b[at + 32 + 200] ^= 0x01;
    (b, data_digest)
}

#[test]
fn flipped_byte_in_a_blob_is_refused_naming_the_digest() {
    let s = setup();
    let bytes = fs::read(&s.file).unwrap();
    // The largest blob record is data.bin's; flip a byte in the middle of its frame.
    let (b, data_digest) = flip_in_data_blob(&bytes);
    refused(&s, "flipped.capsule", &b, &[&data_digest]);
    // A flip anywhere else is refused too (checksum, manifest, header).
    for at in [3, 18, 30, bytes.len() - 20] {
        let mut b = bytes.clone();
        b[at] ^= 0x40;
        refused(&s, &format!("flip{at}.capsule"), &b, &["refused"]);
    }
}

#[test]
fn dotdot_path_in_manifest_is_refused() {
    let s = setup();
    let m = manifest_with(vec![file_entry("usr/xx/passwd")]);
    let mut enc = m.encode();
    let at = enc.windows(6).position(|w| w == b"usr/xx").unwrap();
    enc[at + 4..at + 6].copy_from_slice(b"..");
    refused(&s, "dotdot.capsule", &forge(&enc, &[b"secret"]), &["usr/../passwd", "not normalised"]);
}

#[test]
fn escaping_symlinks_are_refused() {
    let s = setup();
    let mut m = manifest_with(vec![file_entry("usr/bin/a")]);
    let link = |t: &[u8]| Entry {
        path: RelPath::new("usr/bin/b").unwrap(),
        kind: EntryKind::Symlink { target: t.to_vec() },
        mode: 0o777,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        origin: 0,
    };
    m.entries.push(link(b"../../../etc/shadow"));
    refused(&s, "escape.capsule", &forge(&m.encode(), &[b"secret"]), &["points outside the capsule", "/usr/bin/b"]);
    m.entries[1] = link(b"/etc/shadow");
    refused(&s, "absolute.capsule", &forge(&m.encode(), &[b"secret"]), &["absolute target", "/etc/shadow"]);
}

#[test]
fn oversize_records_are_refused() {
    let s = setup();
    let bytes = fs::read(&s.file).unwrap();
    let mut b = bytes.clone();
    b[17..25].copy_from_slice(&(1u64 << 40).to_le_bytes()); // manifest record length
    refused(&s, "oversize.capsule", &b, &["oversize manifest record", "limit"]);
    // A path longer than PATH_MAX inside an otherwise well-formed manifest.
    let m = manifest_with(vec![file_entry("x")]);
    let mut enc = m.encode();
    let long = "a/".repeat(2100) + "z";
    // Re-encode with the long path by hand: u64 length prefix + bytes, in place of "x".
    let at = enc.windows(9).position(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, b'x']).unwrap();
    let mut patched = enc[..at].to_vec();
    patched.extend_from_slice(&(long.len() as u64).to_le_bytes());
    patched.extend_from_slice(long.as_bytes());
    patched.extend_from_slice(&enc[at + 9..]);
    enc = patched;
    refused(&s, "longpath.capsule", &forge(&enc, &[b"secret"]), &["too long"]);
}

/// `capsule keygen -o DIR/NAME` in `env`'s scratch directory; (secret file, public file, hex key).
fn keygen(env: &Env, name: &str) -> (String, String, String) {
    let prefix = env.path(name);
    let v = env.json(&["keygen", "-o", prefix.to_str().unwrap()]);
    let key = v["public_key"].as_str().unwrap().to_owned();
    assert_eq!(v["fingerprint"].as_str().unwrap(), &key[..16]);
    (v["secret_key_file"].as_str().unwrap().to_owned(), v["public_key_file"].as_str().unwrap().to_owned(), key)
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let (secret, public, key) = keygen(&env, "me");
    assert_eq!(fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(&public).unwrap(), format!("capsule-ed25519 {key}\n"));
    assert!(fs::read_to_string(&secret).unwrap().starts_with("capsule-ed25519-secret "));
    let before = fs::read(&secret).unwrap();
    let o = env.fails(&["keygen", "-o", env.path("me").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("me.key"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(&secret).unwrap(), before);
    // keygen needs no store and makes none.
    assert!(!env.store().exists());
}

#[test]
fn signed_and_trusted_imports_and_inspects() {
    let s = setup();
    let source = Env::new();
    source.small_capsule("app", &[("usr/bin/app", b"#!/bin/sh\necho app\n")]);
    let (secret, public, key) = keygen(&source, "signer");
    let file = source.path("signed.capsule");
    let o = source.cmd(&["--json", "export", "app", "-o", file.to_str().unwrap(), "--sign", &secret]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exported: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(exported["signer"], key.as_str());
    // No warning for a 0600 key.
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"));
    let got = s.env.json(&["import", file.to_str().unwrap(), "--trust", &public]);
    assert_eq!(got["signer"], key.as_str());
    let inspect = s.env.json(&["inspect", "app"]);
    assert_eq!(inspect["digest"], exported["digest"]);
    assert_eq!(s.env.json(&["verify"])["ok"], true);
    // The bare hex form of --trust, and no --trust at all, accept it too.
    let other = Env::new();
    other.ok(&["-q", "import", file.to_str().unwrap(), "--trust", &key]);
    let third = Env::new();
    third.ok(&["-q", "import", file.to_str().unwrap()]);
}

#[test]
fn wrong_key_unsigned_and_tampered_files_are_refused_with_trust() {
    let s = setup();
    let (secret, _, signer) = keygen(&s.env, "signer");
    let (_, trusted_pub, trusted) = keygen(&s.env, "trusted");
    let source = Env::new();
    source.small_capsule("app", &[("usr/bin/app", b"#!/bin/sh\necho app\n")]);
    let signed = source.path("signed.capsule");
    source.ok(&["-q", "export", "app", "-o", signed.to_str().unwrap(), "--sign", &secret]);
    let bytes = fs::read(&signed).unwrap();
    let trust = ["--trust", trusted_pub.as_str()];
    refused_with(&s, "other-key.capsule", &bytes, &trust, &["signed by key", &signer, "not trusted", &trusted]);
    // Unsigned (the setup's export) with --trust.
    let unsigned = fs::read(&s.file).unwrap();
    refused_with(&s, "unsigned.capsule", &unsigned, &trust, &["not signed", &trusted]);
    // A signed file with one byte changed inside a blob: the blob check names the digest
    // first, with or without --trust.
    let (sec2, _, _) = keygen(&s.env, "big");
    let big = Env::new();
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    big.small_capsule("app", &[("usr/share/app/data.bin", &data)]);
    let big_file = big.path("big.capsule");
    big.ok(&["-q", "export", "app", "-o", big_file.to_str().unwrap(), "--sign", &sec2]);
    let (b, digest) = flip_in_data_blob(&fs::read(&big_file).unwrap());
    refused_with(&s, "tampered.capsule", &b, &trust, &[&digest]);
    refused(&s, "tampered2.capsule", &b, &[&digest]);
    // The signature itself changed: refused even without --trust, naming key and manifest.
    let mut b = bytes.clone();
    let sig_at = b.len() - 49 - 64 + 10;
    b[sig_at] ^= 0x01;
    refused(&s, "badsig.capsule", &b, &["does not verify", &signer, "manifest"]);
}

#[test]
fn export_sign_names_a_bad_key_file_and_warns_when_it_is_readable() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.small_capsule("app", &[("usr/bin/app", b"#!/bin/sh\necho app\n")]);
    let out = env.path("x.capsule");
    let missing = env.path("nope.key");
    let o = env.fails(&["export", "app", "-o", out.to_str().unwrap(), "--sign", missing.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.key"));
    let (secret, public, _) = keygen(&env, "k");
    let o = env.fails(&["export", "app", "-o", out.to_str().unwrap(), "--sign", &public]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("k.pub") && err.contains("not a capsule secret key"), "{err}");
    assert!(!out.exists());
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.cmd(&["-q", "export", "app", "-o", out.to_str().unwrap(), "--sign", &secret]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning") && err.contains("k.key") && err.contains("0644"), "{err}");
}

fn hex_to_bytes(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

fn file_entry(path: &str) -> Entry {
    Entry {
        path: RelPath::new(path).unwrap(),
        kind: EntryKind::File { size: 6, digest: Digest::of(b"secret") },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        mtime_nsec: 0,
        origin: 0,
    }
}

fn manifest_with(entries: Vec<Entry>) -> Manifest {
    let mut m = Manifest::new("evil", "latest", 0);
    m.origins.push(Origin { step: CaptureStep::SnapshotDiff, detail: String::new(), at: 0 });
    m.entries = entries;
    m
}

/// Build an export file by hand around raw manifest bytes, with a correct checksum, so the
/// only thing wrong with it is what the test put in the manifest.
fn forge(manifest: &[u8], blobs: &[&[u8]]) -> Vec<u8> {
    let mut out = b"CAPSULEX".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    let frame = zstd::encode_all(manifest, 3).unwrap();
    out.push(1);
    out.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    out.extend_from_slice(&frame);
    for b in blobs {
        let frame = zstd::encode_all(*b, 3).unwrap();
        out.push(2);
        out.extend_from_slice(&(32 + frame.len() as u64).to_le_bytes());
        out.extend_from_slice(blake3::hash(b).as_bytes());
        out.extend_from_slice(&frame);
    }
    let sum = *blake3::hash(&out).as_bytes();
    out.push(255);
    out.extend_from_slice(&40u64.to_le_bytes());
    out.extend_from_slice(&sum);
    out.extend_from_slice(&(1 + blobs.len() as u64).to_le_bytes());
    out
}

/// `export -o -` and `-o /dev/stdout` stream the file to standard output: the same bytes as
/// an export to a file, and `/dev/stdout` stays the kernel's link (renaming a temporary file
/// over it replaced it with a regular file, as root).
#[test]
fn export_to_standard_output_streams_and_leaves_dev_stdout_alone() {
    let s = setup();
    s.env.ok(&["-q", "import", s.file.to_str().unwrap()]);
    let link = fs::read_link("/dev/stdout").ok();
    for out in ["-", "/dev/stdout"] {
        let o = s.env.cmd(&["-q", "export", "app", "-o", out]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, fs::read(&s.file).unwrap(), "export -o {out}");
        assert_eq!(fs::read_link("/dev/stdout").ok(), link, "/dev/stdout changed");
    }
}

/// Importing over an existing name:tag says which version it named before (and how to reach
/// it: transfer::an_import_over_a_name_keeps_the_old_version_runnable_by_digest); importing the
/// same version again says nothing.
#[test]
fn import_over_an_existing_name_says_so() {
    let source = Env::new();
    let (v1, v2) = (source.path("v1.capsule"), source.path("v2.capsule"));
    source.small_capsule("app", &[("opt/app/f", b"1\n")]);
    source.ok(&["-q", "export", "app", "-o", v1.to_str().unwrap()]);
    source.small_capsule("app", &[("opt/app/f", b"2\n")]);
    source.ok(&["-q", "export", "app", "-o", v2.to_str().unwrap()]);
    let env = Env::new();
    for _ in 0..2 {
        let quiet = env.cmd(&["import", v1.to_str().unwrap()]).output().unwrap();
        assert!(quiet.status.success() && !String::from_utf8_lossy(&quiet.stderr).contains("moved"));
    }
    let o = env.cmd(&["import", v2.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("this import moved app:latest from "), "{err}");
}

/// Issue 16, done-when 6: every hostile value a well-formed manifest can carry is refused at
/// import with a message naming the entry (or entry point, or registry key) and the field, and
/// the store (`list`, `verify`, its blob files) is unchanged. Each manifest is otherwise valid:
/// the same one without the edit imports.
#[test]
fn hostile_manifest_values_are_refused_naming_the_entry_and_field() {
    use capsule_core::manifest::{EntryPoint, EntrySource, RegValue};
    let s = setup();
    let base = || {
        let dir = |p: &str| Entry { kind: EntryKind::Dir, mode: 0o755, ..file_entry(p) };
        let mut m = manifest_with(vec![dir("usr"), dir("usr/bin"), file_entry("usr/bin/app")]);
        m.entry_points.push(EntryPoint::new("app", RelPath::new("usr/bin/app").unwrap(), EntrySource::Declared));
        m.registry.push(("machine/files/etc/app.conf#port".into(), RegValue::Int(80)));
        m
    };
    // The control: unedited, it imports (into a store of its own, to leave `s` as it was).
    let control = Env::new();
    let path = control.path("control.capsule");
    fs::write(&path, forge(&base().encode(), &[b"secret"])).unwrap();
    control.ok(&["-q", "import", path.to_str().unwrap()]);

    // A path with a leading '/' cannot be built as a RelPath; decoding one is what a forger does.
    let raw_path = |p: &str| -> RelPath { serde_json::from_value(serde_json::json!(p.as_bytes())).unwrap() };
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let long_key = format!("machine/{}", "k".repeat(5000));
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        ("mtime.capsule", Box::new(|m| m.entries[2].mtime = i64::MAX), vec!["/usr/bin/app", "mtime"]),
        ("nsec.capsule", Box::new(|m| m.entries[2].mtime_nsec = 2_000_000_000), vec!["/usr/bin/app", "mtime_nsec"]),
        ("setuid-type.capsule", Box::new(|m| m.entries[2].mode = 0o104_755), vec!["/usr/bin/app", "mode"]),
        (
            "size.capsule",
            Box::new(|m| m.entries[2].kind = EntryKind::File { size: u64::MAX, digest: Digest::of(b"secret") }),
            vec!["/usr/bin/app", "size", "18446744073709551615"],
        ),
        (
            "host-entry.capsule",
            Box::new(move |m| m.entry_points[0].path = raw_path("/bin/sh")),
            vec!["entry point \"app\"", "path", "/bin/sh", "not a capsule path"],
        ),
        (
            "missing-entry.capsule",
            Box::new(|m| m.entry_points[0].path = RelPath::new("usr/bin/sh").unwrap()),
            vec!["entry point \"app\"", "path", "/usr/bin/sh", "names no file of the capsule"],
        ),
        (
            "dir-entry.capsule",
            Box::new(|m| m.entry_points[0].path = RelPath::new("usr/bin").unwrap()),
            vec!["entry point \"app\"", "/usr/bin", "names no file"],
        ),
        (
            "newline-key.capsule",
            Box::new(|m| m.registry[0].0 = "machine/files/etc/a#k\n../../../../etc/shadow".into()),
            vec!["registry key", "machine/files/etc/a#k", "key", "control character"],
        ),
        (
            "dotdot-key.capsule",
            Box::new(|m| m.registry[0].0 = "machine/files/../../etc/passwd#root".into()),
            vec!["registry key", "machine/files/../../etc/passwd#root", "'..' component"],
        ),
        (
            "long-key.capsule",
            Box::new(move |m| m.registry[0].0 = long_key.clone()),
            vec!["registry key", "longer than 4096 bytes"],
        ),
        (
            "key-root.capsule",
            Box::new(|m| m.registry[0].0 = "system/x".into()),
            vec!["registry key \"system/x\"", "not under machine/ or user/"],
        ),
        (
            "file-mode.capsule",
            Box::new(|m| m.registry[0].1 = RegValue::File { digest: Digest::of(b"secret"), mode: 0o104_755 }),
            vec!["registry key \"machine/files/etc/app.conf#port\"", "mode", "104755"],
        ),
        ("env.capsule", Box::new(|m| m.env.push(("A=B".into(), "x".into()))), vec!["env \"A=B\"", "name", "'='"]),
    ];
    for (name, edit, needles) in cases {
        let mut m = base();
        edit(&mut m);
        refused(&s, name, &forge(&m.encode(), &[b"secret"]), &needles);
    }
}

/// An export never replaces what is not a regular file: a fifo gets the stream (read by a
/// reader at its other end), a symlink to a device stays that symlink, a symlink to a regular
/// file stays a symlink while its target receives the file, and a dangling symlink is refused.
#[test]
fn export_writes_into_fifos_and_through_symlinks_without_replacing_them() {
    use std::os::unix::fs::{FileTypeExt, symlink};
    let s = setup();
    s.env.ok(&["-q", "import", s.file.to_str().unwrap()]);
    let want = fs::read(&s.file).unwrap();

    let fifo = s.env.path("out.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    s.env.ok(&["-q", "export", "app", "-o", fifo.to_str().unwrap()]);
    assert_eq!(reader.join().unwrap(), want, "the bytes through the fifo");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the fifo was replaced");

    let to_null = s.env.path("null-link");
    symlink("/dev/null", &to_null).unwrap();
    s.env.ok(&["-q", "export", "app", "-o", to_null.to_str().unwrap()]);
    assert_eq!(fs::read_link(&to_null).unwrap(), std::path::Path::new("/dev/null"));
    assert!(fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null changed");

    let target = s.env.path("real.capsule");
    fs::write(&target, b"old").unwrap();
    let to_file = s.env.path("file-link");
    symlink(&target, &to_file).unwrap();
    s.env.ok(&["-q", "export", "app", "-o", to_file.to_str().unwrap()]);
    assert_eq!(fs::read_link(&to_file).unwrap(), target, "the symlink was replaced");
    assert_eq!(fs::read(&target).unwrap(), want);

    let dangling = s.env.path("dangling-link");
    symlink(s.env.path("nowhere/x"), &dangling).unwrap();
    let o = s.env.fails(&["export", "app", "-o", dangling.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("dangling symlink"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fs::symlink_metadata(&dangling).unwrap().is_symlink() && !s.env.path("nowhere").exists());
}

/// `import -` reads the file from standard input as a stream (a pipe has no size to check
/// against first): the whole file imports, and a cut one is refused with the store unchanged.
#[test]
fn import_from_standard_input_streams() {
    let s = setup();
    let bytes = fs::read(&s.file).unwrap();
    let before = s.env.state();
    let o = crate::support::with_stdin(&mut s.env.cmd(&["import", "-"]), &bytes[..bytes.len() / 2]);
    assert_eq!(o.status.code(), Some(1));
    // (Cut inside a blob's frame, the stream ends as an incomplete frame: the blob is named.)
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.env.state(), before, "a cut stream changed the store");
    let o = crate::support::with_stdin(&mut s.env.cmd(&["--json", "import", "-"]), &bytes);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["capsule"].as_str(), v["bytes"].as_u64()), (Some("app:latest"), Some(bytes.len() as u64)));
    assert_eq!(s.env.json(&["verify"])["ok"], true);
}
