//! `capture trace` (CDE/ReproZip-style): a capsule of every host path a traced run named in a
//! trapped call (opened, executed, mapped via an open, listed, stat'ed, read as a link),
//! with the symlinks on the way and the ELF interpreter of every program executed. The result
//! runs with `--isolation full` over `/`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::builder::Builder;
use super::snapshot::set_entry;
use super::{CaptureError, Progress};
use crate::digest::Digest;
use crate::manifest::CaptureStep;
use crate::store::{Store, StoreLock};
use crate::supervisor::auto::interpreter_of;

/// Kernel and scratch filesystems: never captured.
const SKIP: &[&str] = &["/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp"];

/// Make capsule `name:tag` of the recorded `paths`; a path under `tree` (the run's sandbox
/// tree) stands for the same path under `/`. `entry` is the traced program.
#[allow(clippy::too_many_arguments)] // one capture, described once
pub fn from_paths(
    store: &Store,
    paths: &[Vec<u8>],
    tree: &Path,
    name: &str,
    tag: &str,
    entry: &str,
    command: &str,
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    use std::os::unix::ffi::OsStrExt;
    let tree = tree.as_os_str().as_bytes();
    let store_root = store.root().as_os_str().as_bytes().to_vec();
    let mut wanted: Vec<PathBuf> = Vec::new();
    for p in paths {
        let p = match p.strip_prefix(tree) {
            Some(rest) if rest.is_empty() || rest.starts_with(b"/") => rest.to_vec(),
            _ => p.clone(),
        };
        let Some(p) = normalize(&p) else { continue };
        let skip = SKIP.iter().any(|s| under(&p, s.as_bytes())) || under(&p, &store_root) || p == b"/";
        let host = PathBuf::from(std::ffi::OsStr::from_bytes(&p));
        if skip || std::fs::symlink_metadata(&host).is_err() {
            continue;
        }
        if let Some(interp) = interpreter(&host) {
            wanted.push(PathBuf::from(std::ffi::OsStr::from_bytes(&interp)));
        }
        wanted.push(host);
    }
    wanted.sort();
    wanted.dedup();
    let _lock = StoreLock::shared(store)?;
    let origin = Builder::origin(CaptureStep::Trace, command.to_owned());
    let mut b = Builder::new(store, Path::new("/"), name, tag, origin, progress);
    progress.start("packing", Some(wanted.len() as u64));
    for p in &wanted {
        // A path that vanished since the run, or a loop, is left out rather than failing.
        if let Err(e) = b.add_resolved(p) {
            tracing::debug!(path = %p.display(), error = %e, "not captured");
        }
    }
    progress.finish();
    set_entry(b.manifest_mut(), entry)?;
    let inventory = super::dpkg::host_inventory(b.manifest_mut())?;
    b.manifest_mut().inventory = Some(inventory);
    b.commit()
}

fn under(p: &[u8], prefix: &[u8]) -> bool {
    p.strip_prefix(prefix).is_some_and(|r| r.is_empty() || r.starts_with(b"/"))
}

/// Lexical normalisation of an absolute path ("." and ".." components, repeated slashes).
fn normalize(p: &[u8]) -> Option<Vec<u8>> {
    if p.first() != Some(&b'/') {
        return None;
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.split(|&c| c == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::with_capacity(p.len());
    for c in parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(out)
}

/// The ELF interpreter of a regular file, if it is a dynamic executable.
fn interpreter(p: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(p).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(p).ok()?.take(4096).read_to_end(&mut head).ok()?;
    interpreter_of(&head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_lexically() {
        assert_eq!(normalize(b"/usr//lib/./x/../y").unwrap(), b"/usr/lib/y");
        assert_eq!(normalize(b"/..").unwrap(), b"/");
        assert!(normalize(b"rel").is_none());
        assert!(interpreter(Path::new("/bin/sh")).is_some_and(|i| i.starts_with(b"/lib")));
    }
}
