use super::*;
use crate::manifest::{EntryKind, Manifest, RelPath};

fn manifest() -> Manifest {
    let mut m = Manifest::for_tests(
        vec![
            ("lib", EntryKind::Symlink { target: b"usr/lib".to_vec() }),
            ("usr", EntryKind::Dir),
            ("usr/bin", EntryKind::Dir),
            ("usr/bin/app", EntryKind::File { size: 1, digest: crate::digest::Digest::of(b"x") }),
            ("usr/bin/py", EntryKind::Symlink { target: b"python3.11".to_vec() }),
            ("usr/lib", EntryKind::Dir),
        ],
        0o755,
    );
    m.deletions.push(RelPath::new("etc/gone").unwrap());
    m
}

fn opts() -> ViewOptions {
    ViewOptions {
        tree: "/s/root".into(),
        capsule_mode: Mode::WriteCopy,
        rules: vec![("/".into(), Mode::Merged), ("/tmp".into(), Mode::Passthrough), ("/opt/app".into(), Mode::Full)],
        whiteouts: vec![RelPath::new("usr/bin/deleted").unwrap()],
        files: vec![],
        redirects: vec![],
        linked: Vec::new(),
    }
}

#[test]
fn lookups() {
    let bytes = compile(&manifest(), &opts());
    let v = View::new(&bytes).unwrap();
    assert_eq!(v.tree(), b"/s/root");
    assert_eq!(v.capsule_mode(), Mode::WriteCopy);
    assert_eq!(v.len(), 8);
    assert_eq!(v.lookup(b"usr/bin/app").unwrap().kind, Kind::File);
    assert_eq!(v.lookup(b"usr").unwrap().flags & FLAG_HOST_DIR, FLAG_HOST_DIR);
    let l = v.lookup(b"lib").unwrap();
    assert_eq!((l.kind, l.target, l.flags & FLAG_TARGET_OUTSIDE), (Kind::Symlink, &b"usr/lib"[..], 0));
    assert_eq!(v.lookup(b"usr/bin/py").unwrap().flags & FLAG_TARGET_OUTSIDE, FLAG_TARGET_OUTSIDE);
    assert_eq!(v.lookup(b"etc/gone").unwrap().kind, Kind::Whiteout);
    assert_eq!(v.lookup(b"usr/bin/deleted").unwrap().kind, Kind::Whiteout);
    assert!(v.lookup(b"usr/bin/ap").is_none());
    assert!(v.lookup(b"").is_none());
    assert_eq!(v.mode_of(b"tmp/x"), Mode::Passthrough);
    assert_eq!(v.mode_of(b"tmpx"), Mode::Merged);
    assert_eq!(v.mode_of(b"opt/app/y"), Mode::Full);
    assert_eq!(v.mode_of(b"opt/application"), Mode::Merged);
}

#[test]
fn damaged_views_never_panic() {
    let bytes = compile(&manifest(), &opts());
    for cut in 0..bytes.len() {
        if let Ok(v) = View::new(&bytes[..cut]) {
            let _ = v.lookup(b"usr/bin/app");
            let _ = v.mode_of(b"tmp");
        }
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        if let Ok(v) = View::new(&b) {
            for p in [&b"usr/bin/app"[..], b"lib", b"nope", b"etc/gone"] {
                let _ = v.lookup(p);
            }
            let _ = (v.tree(), v.mode_of(b"opt/app"));
        }
    }
}

#[test]
fn a_view_from_another_hash_is_refused() {
    let mut bytes = compile(&manifest(), &opts());
    bytes[PROBE_AT] ^= 1;
    assert_eq!(View::new(&bytes).err(), Some(ViewError::BadMagic));
}
