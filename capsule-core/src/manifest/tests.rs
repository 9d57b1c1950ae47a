use super::*;

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes()).unwrap()
}

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry { path: p(path), kind, mode: 0o755, uid: 0, gid: 0, mtime: 1, mtime_nsec: 0, origin: 0 }
}

fn sample() -> Manifest {
    let mut m = Manifest::new("jq", "latest", 1);
    m.origins.push(Origin { step: CaptureStep::ElfClosure, detail: "/usr/bin/jq".into(), at: 1 });
    let d = Digest::of(b"jq");
    m.entries = vec![
        entry("lib", EntryKind::Symlink { target: b"usr/lib".to_vec() }),
        entry("usr", EntryKind::Dir),
        entry("usr/bin", EntryKind::Dir),
        entry("usr/bin/jq", EntryKind::File { size: 2, digest: d }),
        entry("usr/bin/jq2", EntryKind::Hardlink { target: p("usr/bin/jq") }),
        entry("usr/lib", EntryKind::Dir),
        entry("usr/lib/libx.so", EntryKind::File { size: 2, digest: d }),
        entry("usr/lib/libx.so.1", EntryKind::Symlink { target: b"libx.so".to_vec() }),
    ];
    m
}

#[test]
fn round_trip() {
    let m = sample();
    let bytes = m.encode();
    assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    assert_eq!(m.blobs().len(), 1);
}

#[test]
fn resolve_follows_links() {
    let m = sample();
    let (path, e) = m.resolve(&p("lib/libx.so.1")).unwrap();
    assert_eq!(path, p("usr/lib/libx.so"));
    assert!(matches!(e.kind, EntryKind::File { .. }));
    assert!(m.resolve(&p("lib/missing")).is_none());
}

#[test]
fn rejects_escapes_and_disorder() {
    let mut m = sample();
    m.entries[7].kind = EntryKind::Symlink { target: b"../../../etc/shadow".to_vec() };
    assert!(matches!(m.validate(), Err(ManifestError::Path { .. })));
    let mut m = sample();
    m.entries[7].kind = EntryKind::Symlink { target: b"/etc/shadow".to_vec() };
    assert!(matches!(m.validate(), Err(ManifestError::Path { source: PathError::AbsoluteTarget { .. }, .. })));
    let mut m = sample();
    m.entries.swap(1, 2);
    assert!(matches!(m.validate(), Err(ManifestError::Order { .. })));
    let mut m = sample();
    m.entries[4].kind = EntryKind::Hardlink { target: p("usr/bin") };
    assert!(matches!(m.validate(), Err(ManifestError::Hardlink { .. })));
    let mut m = sample();
    m.entries[0].origin = 3;
    assert!(matches!(m.validate(), Err(ManifestError::Origin { .. })));
    let mut m = sample();
    m.name = "../x".into();
    assert!(matches!(m.validate(), Err(ManifestError::Name { .. })));
}

#[test]
fn decode_rejects_dotdot_smuggled_past_the_type() {
    // RelPath is serde(transparent): a hostile encoder can put any bytes there.
    let mut m = sample();
    m.entries.push(entry("zz", EntryKind::Dir));
    let mut bytes = m.encode();
    let at = bytes.windows(2).rposition(|w| w == b"zz").unwrap();
    bytes[at..at + 2].copy_from_slice(b"..");
    assert!(matches!(Manifest::decode(&bytes), Err(ManifestError::Path { .. })));
}

#[test]
fn normalize_sorts_and_dedups() {
    let mut m = sample();
    m.entries.reverse();
    m.entries.push(entry("usr", EntryKind::Dir));
    m.normalize();
    m.validate().unwrap();
    assert_eq!(m.entries.len(), 8);
}

proptest::proptest! {
    /// Arbitrary bytes never make the decoder panic or allocate without bound.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = Manifest::decode(&bytes);
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&VERSION.to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = Manifest::decode(&framed);
    }

    /// Any single-byte change to a valid encoding is either rejected or decodes to a manifest
    /// that still passes validation.
    #[test]
    fn mutated_manifests_stay_valid_or_fail(at in 0usize..4096, bit in 0u8..8) {
        let bytes = sample().encode();
        let mut b = bytes.clone();
        let i = at % b.len();
        b[i] ^= 1 << bit;
        if let Ok(m) = Manifest::decode(&b) {
            proptest::prop_assert!(m.validate().is_ok());
        }
    }
}

#[test]
fn children_are_the_entries_directly_below() {
    let mut m = sample();
    let d = Digest::of(b"x");
    // Names that sort next to a directory's range: '-' and '.' before '/', '0' after it.
    for extra in ["usr-x", "usr.d", "usr.d/f", "usr0", "usr/bin-extra", "usr/bin/sub", "usr/bin/sub/deep"] {
        m.entries.push(entry(extra, EntryKind::File { size: 1, digest: d }));
    }
    m.normalize();
    let names = |dir: &str| -> Vec<String> {
        m.children(&p(dir)).map(|e| String::from_utf8_lossy(e.path.as_bytes()).into_owned()).collect()
    };
    assert_eq!(names("usr/bin"), ["usr/bin/jq", "usr/bin/jq2", "usr/bin/sub"]);
    assert_eq!(names("usr"), ["usr/bin", "usr/bin-extra", "usr/lib"]);
    assert_eq!(names("usr/bin/sub"), ["usr/bin/sub/deep"]);
    assert!(names("usr/bin/jq").is_empty());
    // Every directory agrees with the plain scan.
    for dir in m.entries.iter().map(|e| e.path.clone()) {
        let scan: Vec<&Entry> = m.entries.iter().filter(|e| e.path.parent().as_ref() == Some(&dir)).collect();
        assert_eq!(m.children(&dir).collect::<Vec<_>>(), scan, "{dir}");
    }
}

/// A version-1 manifest (entry points of a name and a path, the first the default) still
/// decodes: the first stays the default, except for an install capture's list of programs.
#[test]
fn version_1_manifests_decode() {
    let v1 = |m: &Manifest, eps: Vec<(String, RelPath)>| {
        let body = (
            &m.name,
            &m.tag,
            m.created,
            &m.entries,
            &m.deletions,
            eps,
            &m.env,
            &m.isolation,
            &m.registry,
            &m.identity,
            &m.links,
            &m.origins,
        );
        codec::envelope(MAGIC, 1, &body)
    };
    let m = sample();
    let eps = vec![("jq".to_owned(), p("usr/bin/jq")), ("jq2".to_owned(), p("usr/bin/jq2"))];
    let back = Manifest::decode(&v1(&m, eps.clone())).unwrap();
    assert_eq!(back.entries, m.entries);
    let names: Vec<&str> = back.entry_points.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["jq", "jq2"]);
    assert!(back.entry_points.iter().all(|e| e.source == EntrySource::Unknown && e.args.is_empty()));
    assert_eq!(back.default_entry.as_deref(), Some("jq"), "an elf capture's first binary stays the default");
    let mut inst = sample();
    inst.origins[0].step = CaptureStep::Install;
    assert_eq!(Manifest::decode(&v1(&inst, eps.clone())).unwrap().default_entry, None);
    assert_eq!(Manifest::decode(&v1(&inst, eps[..1].to_vec())).unwrap().default_entry.as_deref(), Some("jq"));
    // This build writes version 4.
    assert_eq!(&m.encode()[8..10], &4u16.to_le_bytes());
}

/// `m`'s fields as a version-2 manifest encodes them, in order.
fn v2_body(m: &Manifest) -> impl serde::Serialize + '_ {
    (
        &m.name,
        &m.tag,
        m.created,
        &m.entries,
        &m.deletions,
        &m.entry_points,
        &m.default_entry,
        &m.env,
        &m.isolation,
        &m.registry,
        &m.identity,
        &m.links,
        &m.origins,
    )
}

/// A version-2 manifest (no package inventory) still decodes, with no inventory.
#[test]
fn version_2_manifests_decode() {
    let mut m = sample();
    m.default_entry = m.entry_points.first().map(|e| e.name.clone());
    let back = Manifest::decode(&codec::envelope(MAGIC, 2, &v2_body(&m))).unwrap();
    assert_eq!(back.inventory, None);
    assert_eq!(back, m);
}

/// A version-3 manifest (no base) still decodes, with its inventory and no base; a base
/// round-trips through version 4.
#[test]
fn version_3_manifests_decode_and_bases_round_trip() {
    let mut m = sample();
    m.inventory = Some(Inventory { distro: None, packages: vec![package("jq", "1.6-2.1")] });
    // Version 3 is version 2's fields, then the inventory (a tuple encodes as its fields in order).
    let back = Manifest::decode(&codec::envelope(MAGIC, 3, &(v2_body(&m), &m.inventory))).unwrap();
    assert_eq!(back.base, None);
    assert_eq!(back, m);
    let distro = Some(Distro { id: "debian".into(), version_id: "12".into(), codename: "bookworm".into() });
    m.base = Some(Base { kind: BaseKind::Minimal, distro, unmet: vec!["/x needs libq.so.1".into()] });
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    // A base's distribution is checked as an inventory's is.
    if let Some(b) = m.base.as_mut() {
        b.distro = Some(Distro { id: "deb ian\n".into(), version_id: String::new(), codename: String::new() });
    }
    let err = Manifest::decode(&m.encode()).unwrap_err().to_string();
    assert!(err.contains("base distribution"), "{err}");
}

fn package(name: &str, version: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        architecture: "amd64".into(),
        source: name.into(),
        source_version: None,
        maintainer: "A Person <a@example.org>".into(),
        depends: Vec::new(),
    }
}

/// An inventory round-trips; hostile values (characters a purl or a document would carry
/// through, sizes, order, dependencies on nothing listed) are refused.
#[test]
fn inventories_are_checked() {
    let mut m = sample();
    let mut libc = package("libc6", "2.36-9+deb12u10");
    libc.source = "glibc".into();
    let mut app = package("app", "1:2.0~rc1-1+b1");
    app.source_version = Some("1:2.0~rc1-1".into());
    app.depends = vec!["libc6".into()];
    let distro = Distro { id: "debian".into(), version_id: "12".into(), codename: "bookworm".into() };
    m.inventory = Some(Inventory { distro: Some(distro), packages: vec![app, libc] });
    m.validate().unwrap();
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    let bad = |f: &dyn Fn(&mut Inventory)| {
        let mut b = m.clone();
        f(b.inventory.as_mut().unwrap());
        assert!(Manifest::decode(&b.encode()).is_err(), "{:?}", b.inventory);
    };
    bad(&|i| i.packages[0].name = "App".into());
    bad(&|i| i.packages[0].name = "a/../b".into());
    bad(&|i| i.packages[0].name = String::new());
    bad(&|i| i.packages[0].name = "a".repeat(129));
    bad(&|i| i.packages[0].version = "1.0?x=y".into());
    bad(&|i| i.packages[0].version = "1".repeat(257));
    bad(&|i| i.packages[0].architecture = "amd64&distro=x".into());
    bad(&|i| i.packages[0].source = "Src Name".into());
    bad(&|i| i.packages[0].source_version = Some(String::new()));
    bad(&|i| i.packages[0].maintainer = "x\ny".into());
    bad(&|i| i.packages[0].maintainer = "m".repeat(1025));
    bad(&|i| i.packages[0].depends = vec!["nothing".into()]);
    bad(&|i| i.packages[0].depends = vec!["libc6".into(), "libc6".into()]);
    bad(&|i| i.packages.swap(0, 1));
    bad(&|i| i.packages.push(i.packages[1].clone()));
    bad(&|i| i.distro.as_mut().unwrap().id = String::new());
    bad(&|i| i.distro.as_mut().unwrap().codename = "a b".into());
    bad(&|i| i.packages = (0..=MAX_PACKAGES).map(|n| package(&format!("p{n:06}"), "1")).collect());
}

#[test]
fn entry_points_are_checked() {
    let mut m = sample();
    m.entries.insert(5, entry("usr/bin/zz", EntryKind::Symlink { target: b"../../opt/host-tool".to_vec() }));
    // A capsule symlink that leads out of the capsule is an entry point (the host's program).
    m.entry_points.push(EntryPoint::new("zz", p("usr/bin/zz"), EntrySource::Program));
    m.validate().unwrap();
    // A path the capsule does not hold at all is not.
    let mut bad = m.clone();
    bad.entry_points.push(EntryPoint::new("sh", p("usr/bin/sh"), EntrySource::Program));
    assert!(matches!(bad.validate(), Err(ManifestError::Value { .. })));
    let mut bad = m.clone();
    bad.entry_points.push(EntryPoint::new("zz", p("usr/bin/jq"), EntrySource::Program));
    assert!(matches!(bad.validate(), Err(ManifestError::Value { field: "name", .. })), "a name given twice");
    let mut bad = m.clone();
    bad.default_entry = Some("nope".into());
    assert!(matches!(bad.validate(), Err(ManifestError::Value { .. })));
    m.default_entry = Some("zz".into());
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    assert_eq!(m.entry_point("/usr/bin/zz").map(|e| e.name.as_str()), Some("zz"));
    assert_eq!(m.default_entry_point().map(|e| e.name.as_str()), Some("zz"));
}
