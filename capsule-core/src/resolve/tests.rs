use crate::digest::Digest;
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::view::{Mode, View, ViewOptions, compile};

use super::path::normalize_abs_into;
use super::*;

fn view_bytes() -> Vec<u8> {
    let f = || EntryKind::File { size: 1, digest: Digest::of(b"x") };
    let mut m = Manifest::for_tests(
        vec![
            ("capsule-only", EntryKind::Dir),
            ("capsule-only/f", f()),
            ("lib", EntryKind::Symlink { target: b"usr/lib".to_vec() }),
            ("loop", EntryKind::Symlink { target: b"loop".to_vec() }),
            ("usr", EntryKind::Dir),
            ("usr/bin", EntryKind::Dir),
            ("usr/bin/app", f()),
            ("usr/bin/sh-link", EntryKind::Symlink { target: b"../../bin/sh".to_vec() }),
            ("usr/lib", EntryKind::Dir),
            ("usr/lib/libx.so", f()),
            ("capsule-only/shared", EntryKind::Dir),
            ("capsule-only/shared/hidden", f()),
        ],
        0o755,
    );
    m.deletions.push(RelPath::new("etc/gone").unwrap());
    m.deletions.push(RelPath::new("srv/state/gone").unwrap());
    let opts = ViewOptions {
        tree: "/store/sandboxes/t/root".into(),
        capsule_mode: Mode::WriteCopy,
        rules: vec![
            ("/".into(), Mode::Merged),
            ("/tmp".into(), Mode::Passthrough),
            ("/opt/full".into(), Mode::Full),
            ("/var/wc".into(), Mode::WriteCopy),
            ("/var/wc/ro".into(), Mode::ReadOnly),
            ("/store".into(), Mode::ReadOnly),
        ],
        whiteouts: vec![],
        files: vec![],
        redirects: vec![
            (RelPath::new("srv/state").unwrap(), "/store/sandboxes/db/state/srv/state".into()),
            (RelPath::new("capsule-only/shared").unwrap(), "/elsewhere".into()),
        ],
        linked: vec![],
    };
    compile(&m, &opts)
}

fn run(path: &str, follow: bool, create: bool) -> (Decision, String) {
    let bytes = view_bytes();
    let v = View::new(&bytes).unwrap();
    let mut abs = PathBuffer::new();
    normalize_abs_into(b"", path.as_bytes(), &mut abs).unwrap();
    let d = resolve(&v, &mut abs, Intent { follow, create }, false);
    (d, String::from_utf8(abs.as_bytes().to_vec()).unwrap())
}

#[test]
fn capsule_paths_go_to_the_tree() {
    assert!(matches!(run("/usr/bin/app", true, false).0, Decision::Tree { entry: Some(_) }));
    assert!(matches!(run("/usr/bin", true, false).0, Decision::Tree { entry: Some(_) }));
    // Through the capsule's /lib -> usr/lib symlink.
    let (d, p) = run("/lib/libx.so", true, false);
    assert!(matches!(d, Decision::Tree { entry: Some(_) }));
    assert_eq!(p, "/usr/lib/libx.so");
}

#[test]
fn host_paths_pass_through() {
    assert_eq!(run("/usr/bin/python3", true, false).0, Decision::Passthrough);
    assert_eq!(run("/etc/passwd", true, false).0, Decision::Passthrough);
    assert_eq!(run("/tmp/x", true, true).0, Decision::Passthrough);
    assert_eq!(run("/usr/lib/python3/x.py", true, false).0, Decision::Passthrough);
    // Through a capsule directory symlink to a host path: rewritten, so Host.
    let (d, p) = run("/lib/python3/x.py", true, false);
    assert_eq!((d, p.as_str()), (Decision::Host, "/usr/lib/python3/x.py"));
}

#[test]
fn final_symlink_pointing_outside_is_followed_virtually() {
    let (d, p) = run("/usr/bin/sh-link", true, false);
    assert_eq!((d, p.as_str()), (Decision::Host, "/bin/sh"));
    assert!(matches!(run("/usr/bin/sh-link", false, false).0, Decision::Tree { entry: Some(_) }));
}

#[test]
fn isolation_modes() {
    assert_eq!(run("/etc/gone", true, false).0, Decision::Deny(libc::ENOENT));
    assert_eq!(run("/etc/gone", true, true).0, Decision::Tree { entry: None });
    assert_eq!(run("/capsule-only/new", true, true).0, Decision::Tree { entry: None });
    // Deeper too: a directory the application made below a capsule-only one, and its files.
    assert_eq!(run("/capsule-only/newdir/f", true, true).0, Decision::Tree { entry: None });
    assert_eq!(run("/capsule-only/newdir/sub/g", true, false).0, Decision::Tree { entry: None });
    assert_eq!(run("/opt/full/x", true, false).0, Decision::Tree { entry: None });
    assert_eq!(run("/var/wc/x", true, false).0, Decision::TreeThenHost);
    assert_eq!(run("/var/wc/ro", true, false).0, Decision::ReadOnly);
    assert_eq!(run("/var/wc/ro/x", true, true).0, Decision::ReadOnly);
    // The run's own sandbox directory (its tree's parent) is an empty directory to the
    // program, and what is in it is not there; other sandboxes are read-only as the rest of
    // the store.
    assert_eq!(run("/store/sandboxes/t", true, false), (Decision::ReadOnly, "/store/sandboxes/t/empty".into()));
    assert_eq!(
        run("/store/sandboxes/t/deleted", true, false),
        (Decision::ReadOnly, "/store/sandboxes/t/empty/deleted".into())
    );
    assert_eq!(run("/store/sandboxes/tt", true, false).0, Decision::ReadOnly);
    assert_eq!(run("/store/sandboxes", true, false).0, Decision::ReadOnly);
}

#[test]
fn idempotent() {
    // A resolved path (in the tree, in the store) is not a capsule path: under the store's
    // rule (every run's) it is refused, never taken as the host's; the tiers take such a path
    // out of the tree before they resolve it (`untree`, the boundary's tests).
    assert_eq!(run("/store/sandboxes/t/root/usr/bin/app", true, false).0, Decision::Deny(libc::EACCES));
    assert_eq!(untree(b"/store/sandboxes/t/root", b"/store/sandboxes/t/root/usr/bin/app"), Some(&b"/usr/bin/app"[..]));
}

fn norm(path: &str) -> Result<(String, Walk), i32> {
    let bytes = view_bytes();
    let v = View::new(&bytes).unwrap();
    let mut out = PathBuffer::new();
    let w = normalize(&v, b"/usr/share", path.as_bytes(), &mut out)?;
    Ok((String::from_utf8(out.as_bytes().to_vec()).unwrap(), w))
}

#[test]
fn normalize_walks_dotdot_through_capsule_symlinks() {
    let plain = Walk { substituted: false, must_be_dir: false };
    assert_eq!(norm("/usr//bin/./app"), Ok(("/usr/bin/app".into(), plain)));
    assert_eq!(norm("../bin/app"), Ok(("/usr/bin/app".into(), plain)));
    assert_eq!(norm("/../../etc"), Ok(("/etc".into(), plain)));
    assert_eq!(norm("/"), Ok(("/".into(), Walk { must_be_dir: true, ..plain })));
    // /lib -> usr/lib: "/lib/.." is /usr, not /.
    assert_eq!(norm("/lib/../bin/app"), Ok(("/usr/bin/app".into(), Walk { substituted: true, ..plain })));
    // A host path stays lexical.
    assert_eq!(norm("/opt/x/../y"), Ok(("/opt/y".into(), plain)));
    assert_eq!(norm("/loop/.."), Err(libc::ELOOP));
}

#[test]
fn normalize_refuses_a_capsule_file_as_a_directory() {
    assert_eq!(norm("/usr/bin/app/.."), Err(libc::ENOTDIR));
    assert_eq!(norm("/usr/bin/app/."), Err(libc::ENOTDIR));
    assert_eq!(run("/usr/bin/app/x", true, false).0, Decision::Deny(libc::ENOTDIR));
    assert_eq!(run("/usr/bin/app/x", true, true).0, Decision::Deny(libc::ENOTDIR));
}

#[test]
fn normalize_notes_a_trailing_slash() {
    for p in ["/usr/bin/", "/usr/bin/.", "/usr/bin/..", "bin/"] {
        assert!(norm(p).unwrap().1.must_be_dir, "{p}");
    }
    for p in ["/usr/bin", "/usr/bin/.x", "bin/..x"] {
        assert!(!norm(p).unwrap().1.must_be_dir, "{p}");
    }
}

#[test]
fn final_symlink_inside_the_capsule_is_followed_virtually() {
    // So that its destination is the entry (and gets materialised).
    let (d, p) = run("/lib", true, false);
    assert!(matches!(d, Decision::Tree { entry: Some(_) }));
    assert_eq!(p, "/usr/lib");
    assert!(matches!(run("/lib", false, false), (Decision::Tree { entry: Some(_) }, ref p) if p == "/lib"));
}

#[test]
fn literal_agrees_with_the_general_path() {
    let bytes = view_bytes();
    let v = View::new(&bytes).unwrap();
    // Taken: capsule files and directories written exactly as their keys; the general path
    // must give the same decision.
    for p in ["/usr/bin/app", "/usr/bin", "/usr/lib/libx.so", "/capsule-only/f"] {
        let e = super::literal(&v, p.as_bytes()).unwrap_or_else(|| panic!("{p} not taken"));
        assert_eq!(run(p, true, false).0, Decision::Tree { entry: Some(e.index) }, "{p}");
    }
    // Left to the general path: symlinks, whiteouts, host paths, unnormalised spellings.
    for p in [
        "/lib/libx.so",
        "/usr/bin/sh-link",
        "/lib",
        "/etc/gone",
        "/etc/passwd",
        "/usr//bin/app",
        "/usr/bin/",
        "/",
        "usr/bin/app",
    ] {
        assert!(super::literal(&v, p.as_bytes()).is_none(), "{p} taken");
    }
}

#[test]
fn shared_state_goes_to_its_host_directory() {
    // The prefix itself, and any depth below it, whatever the prefix's parent is.
    assert_eq!(run("/srv/state", true, false), (Decision::Host, "/store/sandboxes/db/state/srv/state".into()));
    assert_eq!(
        run("/srv/state/db/x.sqlite", false, true),
        (Decision::Host, "/store/sandboxes/db/state/srv/state/db/x.sqlite".into())
    );
    // The capsule's own entries and deletions below the prefix give way to the redirect.
    assert_eq!(
        run("/srv/state/gone", true, false),
        (Decision::Host, "/store/sandboxes/db/state/srv/state/gone".into())
    );
    assert_eq!(run("/capsule-only/shared/hidden", true, false), (Decision::Host, "/elsewhere/hidden".into()));
    // A sibling name is not below the prefix.
    assert_eq!(run("/srv/statefile", true, false).0, Decision::Passthrough);
    // The capsule-only parent still goes to the tree.
    assert!(matches!(run("/capsule-only/f", true, false).0, Decision::Tree { entry: Some(_) }));
    // Not a literal capsule path (the fast path must not send it to the tree).
    let bytes = view_bytes();
    let v = View::new(&bytes).unwrap();
    assert!(literal(&v, b"/srv/state").is_none());
}
