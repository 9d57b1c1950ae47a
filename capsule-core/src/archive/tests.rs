use std::fs;

use super::*;
use crate::capture::NoProgress;
use crate::manifest::{CaptureStep, Entry, EntryKind, Manifest, Origin, RelPath};

fn sample_store() -> (tempfile::TempDir, Store, CapsuleRef) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut m = Manifest::new("app", "v1", 1);
    m.origins.push(Origin { step: CaptureStep::SnapshotDiff, detail: String::new(), at: 1 });
    for (i, content) in [&b"one"[..], &vec![9u8; 100_000][..]].iter().enumerate() {
        let digest = store.put_bytes(content).unwrap();
        let path = RelPath::new(format!("f{i}")).unwrap();
        m.entries.push(Entry {
            path,
            kind: EntryKind::File { size: content.len() as u64, digest },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            origin: 0,
        });
    }
    store.commit_capsule(&m).unwrap();
    (dir, store, "app:v1".parse().unwrap())
}

fn fresh(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(&dir.path().join(name)).unwrap()
}

#[test]
fn round_trip_into_an_empty_store() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    let s = export(&store, &r, &file, &NoProgress).unwrap();
    assert_eq!(s.blobs_moved, 2);
    let other = fresh(&dir, "other");
    let got = import(&other, &file, &NoProgress).unwrap();
    assert_eq!((got.digest, got.blobs_moved), (s.digest, 2));
    assert_eq!(other.load(&r).unwrap().0, s.digest);
    // Again: everything is present already.
    let again = import(&other, &file, &NoProgress).unwrap();
    assert_eq!((again.blobs_moved, again.blobs_present), (0, 2));
}

fn expect_refused(bytes: &[u8], check: impl Fn(&ArchiveError) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.capsule");
    fs::write(&file, bytes).unwrap();
    let store = fresh(&dir, "s");
    let err = import(&store, &file, &NoProgress).unwrap_err();
    assert!(check(&err), "unexpected error: {err:?}");
    assert!(err.to_string().contains("bad.capsule"), "{err}");
    assert!(store.list_refs().unwrap().is_empty());
    assert!(store.list_blobs().unwrap().is_empty());
}

#[test]
fn every_truncation_is_refused() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, &NoProgress).unwrap();
    let bytes = fs::read(&file).unwrap();
    let step = (bytes.len() / 150).max(1);
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        expect_refused(&bytes[..cut], |_| true);
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, &NoProgress).unwrap();
    let bytes = fs::read(&file).unwrap();
    let step = (bytes.len() / 150).max(1);
    for at in (0..bytes.len()).step_by(step) {
        let mut b = bytes.clone();
        b[at] ^= 0x20;
        expect_refused(&b, |_| true);
    }
}

#[test]
fn oversize_and_trailing() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, &NoProgress).unwrap();
    let bytes = fs::read(&file).unwrap();
    let mut b = bytes.clone();
    b[17..25].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_refused(&b, |e| matches!(e, ArchiveError::Oversize { what: "manifest", .. }));
    let mut b = bytes.clone();
    b.push(0);
    expect_refused(&b, |e| matches!(e, ArchiveError::Trailing { .. }));
}
