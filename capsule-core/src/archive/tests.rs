use std::fs;

use super::*;
use crate::capture::NoProgress;
use crate::manifest::{CaptureStep, Entry, EntryKind, Manifest, Origin, RelPath};
use crate::sign::{PublicKey, SecretKey};

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
    let s = export(&store, &r, &file, None, &NoProgress).unwrap();
    assert_eq!(s.blobs_moved, 2);
    let other = fresh(&dir, "other");
    let got = import(&other, &file, &[], &NoProgress).unwrap();
    assert_eq!((got.digest, got.blobs_moved), (s.digest, 2));
    assert_eq!(other.load(&r).unwrap().0, s.digest);
    // Again: everything is present already.
    let again = import(&other, &file, &[], &NoProgress).unwrap();
    assert_eq!((again.blobs_moved, again.blobs_present), (0, 2));
}

fn expect_refused(bytes: &[u8], check: impl Fn(&ArchiveError) -> bool) {
    expect_refused_trusting(bytes, &[], check);
}

/// Import `bytes` trusting `trusted`; require a refusal `check` accepts, naming the file, and
/// an untouched store.
fn expect_refused_trusting(bytes: &[u8], trusted: &[PublicKey], check: impl Fn(&ArchiveError) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.capsule");
    fs::write(&file, bytes).unwrap();
    let store = fresh(&dir, "s");
    let err = import(&store, &file, trusted, &NoProgress).unwrap_err();
    assert!(check(&err), "unexpected error: {err:?}");
    assert!(err.to_string().contains("bad.capsule"), "{err}");
    assert!(store.list_refs().unwrap().is_empty());
    assert!(store.list_blobs().unwrap().is_empty());
}

#[test]
fn every_truncation_is_refused() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, None, &NoProgress).unwrap();
    let bytes = fs::read(&file).unwrap();
    let step = (bytes.len() / 150).max(1);
    for cut in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        expect_refused(&bytes[..cut], |_| true);
    }
}

#[test]
fn every_flipped_byte_is_refused() {
    let key = SecretKey::from_seed(&[3; 32]);
    for signer in [None, Some(&key)] {
        let (dir, store, r) = sample_store();
        let file = dir.path().join("app.capsule");
        export(&store, &r, &file, signer, &NoProgress).unwrap();
        let bytes = fs::read(&file).unwrap();
        let step = (bytes.len() / 150).max(1);
        // The signature record (the last 96 + 9 bytes before END) is covered as densely.
        let sig = (bytes.len() - 49 - 105..bytes.len() - 49).step_by(7);
        for at in (0..bytes.len()).step_by(step).chain(sig.filter(|_| signer.is_some())) {
            let mut b = bytes.clone();
            b[at] ^= 0x20;
            expect_refused(&b, |_| true);
        }
    }
}

#[test]
fn oversize_and_trailing() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, None, &NoProgress).unwrap();
    let bytes = fs::read(&file).unwrap();
    let mut b = bytes.clone();
    b[17..25].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_refused(&b, |e| matches!(e, ArchiveError::Oversize { what: "manifest", .. }));
    let mut b = bytes.clone();
    b.push(0);
    expect_refused(&b, |e| matches!(e, ArchiveError::Trailing { .. }));
}

fn signed_export(key: &SecretKey) -> Vec<u8> {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    let s = export(&store, &r, &file, Some(key), &NoProgress).unwrap();
    assert_eq!(s.signer, Some(key.public()));
    fs::read(&file).unwrap()
}

/// The version and the records (tag, payload) of an export file, END left out.
fn records(bytes: &[u8]) -> (u16, Vec<(u8, Vec<u8>)>) {
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let mut out = Vec::new();
    let mut at = 16;
    while bytes[at] != TAG_END {
        let len = usize::try_from(u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap())).unwrap();
        out.push((bytes[at], bytes[at + 9..at + 9 + len].to_vec()));
        at += 9 + len;
    }
    (version, out)
}

/// An export file of `version` holding `records`, with a correct END record: whatever is
/// wrong with it is what the test put in.
fn assemble(version: u16, records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    for (tag, payload) in records {
        out.push(*tag);
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(payload);
    }
    let sum = *blake3::hash(&out).as_bytes();
    out.push(TAG_END);
    out.extend_from_slice(&40u64.to_le_bytes());
    out.extend_from_slice(&sum);
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    out
}

fn import_bytes(bytes: &[u8], trusted: &[PublicKey]) -> Result<Summary, ArchiveError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.capsule");
    fs::write(&file, bytes).unwrap();
    import(&fresh(&dir, "s"), &file, trusted, &NoProgress)
}

#[test]
fn signed_export_imports_with_and_without_trust() {
    let key = SecretKey::from_seed(&[3; 32]);
    let bytes = signed_export(&key);
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), VERSION);
    let other = SecretKey::from_seed(&[4; 32]).public();
    for trusted in [vec![], vec![key.public()], vec![other, key.public()]] {
        assert_eq!(import_bytes(&bytes, &trusted).unwrap().signer, Some(key.public()));
    }
}

#[test]
fn trust_refuses_other_keys_and_unsigned_files() {
    let (key, other) = (SecretKey::from_seed(&[3; 32]), SecretKey::from_seed(&[4; 32]));
    let bytes = signed_export(&other);
    expect_refused_trusting(&bytes, &[key.public()], |e| {
        let msg = e.to_string();
        matches!(e, ArchiveError::Untrusted { .. })
            && msg.contains(&other.public().to_hex())
            && msg.contains(&key.public().to_hex())
    });
    let (version, mut recs) = records(&bytes);
    recs.retain(|(tag, _)| *tag != TAG_SIGNATURE);
    expect_refused_trusting(&assemble(version, &recs), &[key.public()], |e| {
        matches!(e, ArchiveError::NotSigned { .. }) && e.to_string().contains(&key.public().to_hex())
    });
}

#[test]
fn a_signature_that_does_not_verify_is_refused_even_untrusted() {
    let key = SecretKey::from_seed(&[3; 32]);
    let bytes = signed_export(&key);
    let (version, recs) = records(&bytes);
    let sig_at = recs.iter().position(|(tag, _)| *tag == TAG_SIGNATURE).unwrap();
    let mut flipped = recs.clone();
    flipped[sig_at].1[40] ^= 1;
    let digest = Digest::of(&zstd::decode_all(&recs[0].1[..]).unwrap());
    expect_refused(&assemble(version, &flipped), |e| {
        matches!(e, ArchiveError::BadSignature { .. })
            && e.to_string().contains(&key.public().to_hex())
            && e.to_string().contains(&digest.to_hex())
    });
    // A valid signature lifted from another capsule's file does not cover this manifest.
    let mut other = recs.clone();
    other[sig_at].1[32..].copy_from_slice(&key.sign(&Digest::of(b"another manifest")));
    expect_refused(&assemble(version, &other), |e| matches!(e, ArchiveError::BadSignature { .. }));
}

#[test]
fn malformed_signature_records_are_refused() {
    let key = SecretKey::from_seed(&[3; 32]);
    let bytes = signed_export(&key);
    let (version, recs) = records(&bytes);
    let sig_at = recs.iter().position(|(tag, _)| *tag == TAG_SIGNATURE).unwrap();
    for len in [0, 95, 97] {
        let mut r = recs.clone();
        r[sig_at].1.resize(len, 0);
        expect_refused(
            &assemble(version, &r),
            |e| matches!(e, ArchiveError::SignatureLength { len: l, .. } if *l == len as u64),
        );
    }
    // The file ends inside the signature record.
    let end_at = bytes.len() - 49;
    for cut in [end_at - 1, end_at - 60, end_at - 96] {
        expect_refused(&bytes[..cut], |e| matches!(e, ArchiveError::Truncated { what: "signature", .. }));
    }
    // 32 bytes that are no curve point.
    let bad_key = (0u8..=255).map(|i| [i; 32]).find(|k| PublicKey::from_bytes(k).is_none()).unwrap();
    let mut r = recs.clone();
    r[sig_at].1[..32].copy_from_slice(&bad_key);
    expect_refused(&assemble(version, &r), |e| matches!(e, ArchiveError::SignatureKey { .. }));
    // Twice, before a blob, or in a version-1 file: out of place.
    let unexpected =
        |e: &ArchiveError| matches!(e, ArchiveError::UnexpectedRecord { tag: TAG_SIGNATURE | TAG_BLOB, .. });
    let mut twice = recs.clone();
    twice.push(recs[sig_at].clone());
    expect_refused(&assemble(version, &twice), unexpected);
    let mut early = recs.clone();
    early.swap(sig_at, sig_at - 1);
    expect_refused(&assemble(version, &early), unexpected);
    expect_refused(&assemble(1, &recs), unexpected);
    expect_refused(
        &assemble(VERSION + 1, &recs),
        |e| matches!(e, ArchiveError::Version { found, .. } if *found == VERSION + 1),
    );
}

#[test]
fn version_1_files_still_import() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    let s = export(&store, &r, &file, None, &NoProgress).unwrap();
    let (_, recs) = records(&fs::read(&file).unwrap());
    let v1 = assemble(1, &recs);
    let got = import_bytes(&v1, &[]).unwrap();
    assert_eq!((got.digest, got.blobs_moved, got.signer), (s.digest, 2, None));
    // Unsigned by construction: refused when a key is required.
    expect_refused_trusting(&v1, &[SecretKey::from_seed(&[3; 32]).public()], |e| {
        matches!(e, ArchiveError::NotSigned { .. })
    });
}

/// Hostile entry values in a well-formed export (issue 16): each is refused at import,
/// naming the entry and the field, and nothing enters the store.
#[test]
fn hostile_entry_values_are_refused_naming_entry_and_field() {
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, None, &NoProgress).unwrap();
    let (version, recs) = records(&fs::read(&file).unwrap());
    let (_, m) = store.load(&r).unwrap();
    type Edit = fn(&mut Entry);
    let edits: [(&str, Edit); 4] = [
        ("mtime", |e| e.mtime = i64::MAX),
        ("mtime", |e| e.mtime = i64::MIN),
        ("mtime_nsec", |e| e.mtime_nsec = 1_000_000_000),
        ("mode", |e| e.mode = 0o100_644),
    ];
    for (field, edit) in edits {
        let mut bad = m.clone();
        edit(&mut bad.entries[1]);
        let frame = zstd::encode_all(&bad.encode()[..], 3).unwrap();
        let recs: Vec<_> =
            recs.iter().map(|(t, p)| if *t == TAG_MANIFEST { (*t, frame.clone()) } else { (*t, p.clone()) }).collect();
        let dir2 = tempfile::tempdir().unwrap();
        let path = dir2.path().join("bad.capsule");
        fs::write(&path, assemble(version, &recs)).unwrap();
        let target = fresh(&dir2, "s");
        let err = import(&target, &path, &[], &NoProgress).unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
        assert!(text.contains("f1") && text.contains(field), "{field}: {text}");
        assert!(
            target.list_refs().unwrap().is_empty() && target.list_blobs().unwrap().is_empty(),
            "{field}: the store changed"
        );
    }
}

/// An export file whose manifest carries a hostile package inventory (a version that would
/// inject a purl qualifier, a dependency on nothing listed) is refused, naming the package and
/// the field, and the store is untouched; a sound inventory imports.
#[test]
fn hostile_inventories_are_refused_naming_package_and_field() {
    use crate::manifest::{Inventory, Package};
    let (dir, store, r) = sample_store();
    let file = dir.path().join("app.capsule");
    export(&store, &r, &file, None, &NoProgress).unwrap();
    let (version, recs) = records(&fs::read(&file).unwrap());
    let (_, m) = store.load(&r).unwrap();
    let pkg = |name: &str, version: &str, depends: &[&str]| Package {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        source: name.into(),
        depends: depends.iter().map(|d| (*d).to_owned()).collect(),
        ..Package::default()
    };
    let cases = [
        (vec![pkg("app", "1.0", &["lib"]), pkg("lib", "2", &[])], None),
        (vec![pkg("app", "1.0?arch=evil", &[])], Some("version")),
        (vec![pkg("app", "1.0", &["ghost"])], Some("depends")),
    ];
    for (packages, field) in cases {
        let mut m = m.clone();
        m.inventory = Some(Inventory { distro: None, packages });
        let frame = zstd::encode_all(&m.encode()[..], 3).unwrap();
        let recs: Vec<_> =
            recs.iter().map(|(t, p)| if *t == TAG_MANIFEST { (*t, frame.clone()) } else { (*t, p.clone()) }).collect();
        let dir2 = tempfile::tempdir().unwrap();
        let path = dir2.path().join("f.capsule");
        fs::write(&path, assemble(version, &recs)).unwrap();
        let target = fresh(&dir2, "s");
        match (import(&target, &path, &[], &NoProgress), field) {
            (Ok(_), None) => assert_eq!(target.load(&r).unwrap().1.inventory, m.inventory),
            (Err(err), Some(field)) => {
                let text =
                    format!("{err}: {}", std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default());
                assert!(text.contains("package \"app\"") && text.contains(field), "{field}: {text}");
                assert!(target.list_refs().unwrap().is_empty() && target.list_blobs().unwrap().is_empty());
            }
            (got, want) => panic!("{want:?}: {got:?}"),
        }
    }
}
