//! Pull against an in-process fake registry (GET and HEAD over a TcpListener on 127.0.0.1):
//! good content is committed; a blob whose bytes do not match its digest is refused naming the
//! digest and the reference, and the store stays as it was, for a full pull and a lazy fetch.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::layout::Sha256;
use super::push::{Plan, plan};
use super::{OciError, PullOptions, Reference, lazy, pull};
use crate::capture::NoProgress;
use crate::digest::Digest;
use crate::manifest::{EntryKind, Manifest};
use crate::store::{CapsuleRef, Store};

type Content = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Serve `content` (URL path → body) for at most 100 connections; returns the port.
fn fake_registry(content: Content) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100) {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let body = content.lock().unwrap().get(&path).cloned();
            let head = match &body {
                Some(b) => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len()),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
            };
            let _ = conn.write_all(head.as_bytes());
            if method == "GET"
                && let Some(b) = body
            {
                let _ = conn.write_all(&b);
            }
        }
    });
    port
}

/// A source store with one capsule of two files, its push plan, and a fake registry serving it.
fn setup() -> (tempfile::TempDir, Plan, Content, Reference) {
    let dir = tempfile::tempdir().unwrap();
    let src = Store::open(&dir.path().join("src")).unwrap();
    let big: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let a = src.put_bytes(b"alpha\n").unwrap();
    let b = src.put_bytes(&big).unwrap();
    let mut m = Manifest::for_tests(
        vec![
            ("opt/a", EntryKind::File { size: 6, digest: a }),
            ("opt/big", EntryKind::File { size: big.len() as u64, digest: b }),
        ],
        0o644,
    );
    m.name = "app".into();
    src.commit_capsule(&m).unwrap();
    let r = CapsuleRef::new("app", "latest");
    let plan = plan(&src, &r, &NoProgress).unwrap();
    let mut content = HashMap::new();
    let blob = |d: Sha256| format!("/v2/team/app/blobs/{d}");
    content.insert("/v2/team/app/manifests/v1".to_owned(), plan.oci.clone());
    content.insert(blob(Sha256::of(&plan.config)), plan.config.clone());
    content.insert(blob(Sha256::of(&plan.map_bytes)), plan.map_bytes.clone());
    for e in &plan.map.entries {
        content.insert(blob(e.sha256), std::fs::read(src.blob_path(&e.blake3)).unwrap());
    }
    let content = Arc::new(Mutex::new(content));
    let port = fake_registry(Arc::clone(&content));
    let reference: Reference = format!("127.0.0.1:{port}/team/app:v1").parse().unwrap();
    (dir, plan, content, reference)
}

/// Replace the bytes served for the big blob by another valid zstd frame.
fn tamper(plan: &Plan, content: &Content) -> (Sha256, Digest) {
    let e = plan.map.entries.iter().max_by_key(|e| e.size).unwrap();
    let other = zstd::encode_all(&vec![9u8; usize::try_from(e.size).unwrap()][..], 3).unwrap();
    content.lock().unwrap().insert(format!("/v2/team/app/blobs/{}", e.sha256), other);
    (e.sha256, e.blake3)
}

fn store_state(s: &Store) -> (usize, usize) {
    (s.list_refs().unwrap().len(), s.list_blobs().unwrap().len())
}

#[test]
fn pull_commits_checked_content() {
    let (dir, plan, _content, reference) = setup();
    let dst = Store::open(&dir.path().join("dst")).unwrap();
    let s = pull(&dst, &reference, None, PullOptions::default(), &NoProgress).unwrap();
    assert_eq!((s.blobs_downloaded, s.blobs_present), (2, 0));
    assert_eq!(s.manifest_digest, plan.manifest_digest);
    for e in &plan.map.entries {
        dst.verify_blob(&e.blake3).unwrap();
    }
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_the_store_unchanged() {
    let (dir, plan, content, reference) = setup();
    let (sha, blake) = tamper(&plan, &content);
    let dst = Store::open(&dir.path().join("dst")).unwrap();
    let err = pull(&dst, &reference, None, PullOptions::default(), &NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OciError::BadBlob { .. }), "{err:?}");
    assert!(msg.contains(&sha.to_string()) && msg.contains(&blake.to_hex()), "{msg}");
    assert!(msg.contains(&reference.to_string()), "{msg}");
    assert_eq!(store_state(&dst), (0, 0));
    assert_eq!(std::fs::read_dir(dst.root().join("tmp")).unwrap().count(), 0, "staged files left behind");
}

#[test]
fn a_lazy_fetch_of_a_tampered_blob_is_refused() {
    let (dir, plan, content, reference) = setup();
    let dst = Store::open(&dir.path().join("dst")).unwrap();
    let s = pull(&dst, &reference, None, PullOptions { lazy: true, plain_http: false }, &NoProgress).unwrap();
    assert_eq!((s.blobs_downloaded, s.blobs_deferred), (0, 2));
    let (m_digest, m) = dst.load(&s.capsule).unwrap();
    assert_eq!(lazy::unfetched(&dst, &m_digest, &m).unwrap().len(), 2);
    let (_, blake) = tamper(&plan, &content);
    let err = lazy::fetch_missing(&dst, &blake).unwrap_err();
    assert!(err.to_string().contains(&blake.to_hex()), "{err}");
    assert!(!dst.has_blob(&blake));
    // The other blob is fine and arrives.
    let small = plan.map.entries.iter().find(|e| e.blake3 != blake).unwrap();
    lazy::fetch_missing(&dst, &small.blake3).unwrap();
    dst.verify_blob(&small.blake3).unwrap();
    // A lie in the OCI manifest (a digest reference that does not match) is refused too.
    let wrong: Reference =
        format!("{}/{}@sha256:{}", reference.registry, reference.repository, "0".repeat(64)).parse().unwrap();
    assert!(pull(&dst, &wrong, None, PullOptions::default(), &NoProgress).is_err());
}
