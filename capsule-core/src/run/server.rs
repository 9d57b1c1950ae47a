//! [`Server`]: the materialiser `capsule run` serves while the application runs.
//!
//! The shim cannot decompress (zstd is kept out of applications), so on the first open of a
//! capsule file it asks over an abstract unix socket, named in the view. One request per
//! connection: `op: u8 · len: u16 LE · path bytes` (no leading '/'); the reply is an errno as
//! `i32 LE` (0 = done). Ops: 1 link (materialise), 2 copy-up (make private for writing),
//! 3 whiteout (record a deletion), 4 link every file of a directory (before a listing).
//! Requests are served one at a time, which also serialises concurrent first opens.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;

use super::sandbox::Sandbox;
use super::{RunError, materialize};
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::store::Store;

/// Request codes.
pub const OP_LINK: u8 = 1;
/// Copy-up.
pub const OP_COPY_UP: u8 = 2;
/// Whiteout.
pub const OP_WHITEOUT: u8 = 3;
/// Link a directory's files.
pub const OP_LINK_DIR: u8 = 4;

/// The materialiser of one run.
pub struct Server {
    /// Paths deleted during this run: never materialised again (a later create starts empty).
    deleted: std::cell::RefCell<std::collections::HashSet<RelPath>>,
    listener: UnixListener,
    store: Store,
    manifest: Manifest,
    sandbox: Sandbox,
}

impl Server {
    /// Listen on abstract socket `name`.
    pub fn bind(name: &str, store: Store, manifest: Manifest, sandbox: Sandbox) -> Result<Server, RunError> {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(RunError::io("bad socket name", PathBuf::from(name)))?;
        let listener = UnixListener::bind_addr(&addr)
            .map_err(RunError::io("failed to listen on abstract socket", PathBuf::from(name)))?;
        // Deletions of earlier runs count too: a listing must not bring them back.
        let deleted = std::cell::RefCell::new(sandbox.whiteouts()?.into_iter().collect());
        Ok(Server { deleted, listener, store, manifest, sandbox })
    }

    /// Serve until the process exits.
    pub fn serve(self) {
        for conn in self.listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let errno = self.handle(&mut conn).unwrap_or(libc::EIO);
            let _ = conn.write_all(&errno.to_le_bytes());
        }
    }

    fn handle(&self, conn: &mut UnixStream) -> std::io::Result<i32> {
        let mut head = [0u8; 3];
        conn.read_exact(&mut head)?;
        let len = usize::from(u16::from_le_bytes([head[1], head[2]]));
        let mut path = vec![0u8; len];
        conn.read_exact(&mut path)?;
        let Ok(path) = RelPath::new(path) else { return Ok(libc::EINVAL) };
        let tree = self.sandbox.tree();
        let deleted = self.deleted.borrow().contains(&path);
        let r = match head[0] {
            OP_LINK if deleted => Ok(false),
            OP_LINK => materialize::link_entry(&self.store, tree, &self.manifest, &path),
            OP_COPY_UP if deleted => {
                // Re-created after a deletion: it starts empty, like any new file.
                self.deleted.borrow_mut().remove(&path);
                Ok(true)
            }
            OP_COPY_UP => materialize::copy_up(&self.store, tree, &self.manifest, &path),
            OP_WHITEOUT => {
                self.deleted.borrow_mut().insert(path.clone());
                self.sandbox.add_whiteout(&path).map(|()| true)
            }
            OP_LINK_DIR => self.link_dir(&path),
            _ => return Ok(libc::EINVAL),
        };
        Ok(match r {
            Ok(true) => 0,
            Ok(false) => libc::ENOENT,
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "materialise failed");
                libc::EIO
            }
        })
    }

    fn link_dir(&self, dir: &RelPath) -> Result<bool, super::RunError> {
        let tree = self.sandbox.tree();
        for e in &self.manifest.entries {
            if e.path.parent().as_ref() == Some(dir)
                && !self.deleted.borrow().contains(&e.path)
                && matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. })
            {
                materialize::link_entry(&self.store, tree, &self.manifest, &e.path)?;
            }
        }
        Ok(true)
    }
}
