use std::fs;

use super::*;
use crate::manifest::{Isolation, IsolationRule, Link};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// A shared capsule `name` with state at /srv/data, seeded with one file and one symlink.
fn shared_capsule(store: &Store, name: &str) -> Manifest {
    let digest = store.put_bytes(b"seed\n").unwrap();
    let mut m = Manifest::for_tests(
        vec![
            ("srv", EntryKind::Dir),
            ("srv/data", EntryKind::Dir),
            ("srv/data/init.txt", EntryKind::File { size: 5, digest }),
            ("srv/data/link", EntryKind::Symlink { target: b"init.txt".to_vec() }),
            ("srv/data/sub", EntryKind::Dir),
        ],
        0o750,
    );
    m.name = name.to_owned();
    m.isolation.push(IsolationRule { prefix: "/srv/data".into(), mode: Isolation::State });
    m.validate().unwrap();
    m
}

#[test]
fn state_is_seeded_once_and_kept() {
    let (_d, store) = store();
    let db = shared_capsule(&store, "db");
    let mut app = Manifest::for_tests(vec![], 0o755);
    app.name = "app".into();
    let links = vec![Linked { digest: db.digest(), manifest: db.clone() }];
    let dirs = state_dirs(&store, &app, "app", &links).unwrap();
    assert_eq!(dirs.len(), 1);
    let s = &dirs[0];
    assert_eq!((s.prefix.display(), s.owner.as_str()), ("/srv/data".to_owned(), "db"));
    assert!(s.dir.ends_with("sandboxes/db/state/srv/data"));
    assert_eq!(fs::read_to_string(s.dir.join("init.txt")).unwrap(), "seed\n");
    assert_eq!(fs::read_link(s.dir.join("link")).unwrap().to_str(), Some("init.txt"));
    assert!(s.dir.join("sub").is_dir());
    // A private copy, not a link to the cache.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(s.dir.join("init.txt")).unwrap().nlink(), 1);
    // The state is the apps' from now on: a later run (or an upgrade) does not re-seed it.
    fs::write(s.dir.join("init.txt"), "changed\n").unwrap();
    fs::remove_file(s.dir.join("link")).unwrap();
    let again = state_dirs(&store, &app, "app", &links).unwrap();
    assert_eq!(again, dirs);
    assert_eq!(fs::read_to_string(s.dir.join("init.txt")).unwrap(), "changed\n");
    assert!(!s.dir.join("link").exists());
    // No seed directory left behind.
    let root = s.dir.parent().unwrap().parent().unwrap();
    assert_eq!(fs::read_dir(root).unwrap().count(), 1, "{:?}", fs::read_dir(root).unwrap().collect::<Vec<_>>());
}

#[test]
fn own_state_lives_in_the_runs_sandbox() {
    let (_d, store) = store();
    let db = shared_capsule(&store, "db");
    let dirs = state_dirs(&store, &db, "db-2", &[]).unwrap();
    assert!(dirs[0].dir.ends_with("sandboxes/db-2/state/srv/data"));
}

#[test]
fn overlapping_state_of_two_capsules_is_refused() {
    let (_d, store) = store();
    let a = shared_capsule(&store, "a");
    let mut b = shared_capsule(&store, "b");
    b.isolation = vec![IsolationRule { prefix: "/srv/data/inner".into(), mode: Isolation::State }];
    let app = Manifest::for_tests(vec![], 0o755);
    let links = vec![Linked { digest: a.digest(), manifest: a }, Linked { digest: b.digest(), manifest: b }];
    let err = state_dirs(&store, &app, "t", &links).unwrap_err().to_string();
    assert!(err.contains("a and b") && err.contains("/srv/data/inner"), "{err}");
}

#[test]
fn links_resolve_by_name_and_missing_ones_are_named() {
    let (_d, store) = store();
    let db = shared_capsule(&store, "db");
    store.commit_capsule(&db).unwrap();
    let mut app = Manifest::for_tests(vec![], 0o755);
    app.name = "app".into();
    app.links.push(Link { name: "db".into(), digest: None });
    // Declared and --with: one link; the app itself is never linked.
    let with = ["db".parse().unwrap(), "app".parse().unwrap()];
    let l = linked(&store, &app, &with).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].manifest.name, "db");
    let err = linked(&store, &app, &["nosuch".parse().unwrap()]).unwrap_err().to_string();
    assert_eq!(err, "capsule app links to shared capsule nosuch:latest, which is not in the store");
}

#[test]
fn users_are_recorded_once() {
    let (_d, store) = store();
    record_user(&store, "db", "app1").unwrap();
    record_user(&store, "db", "app1").unwrap();
    record_user(&store, "db", "app2").unwrap();
    assert_eq!(users(&store, "db").into_iter().collect::<Vec<_>>(), ["app1", "app2"]);
}
