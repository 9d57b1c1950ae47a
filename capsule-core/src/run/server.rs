//! [`Server`]: the materialiser `capsule run` serves while the application runs.
//!
//! The shim cannot decompress (zstd is kept out of applications), so on the first open of a
//! capsule file it asks over an abstract unix socket, named in the view. One request per
//! connection: `op: u8 · len: u16 LE · path bytes` (no leading '/'); the reply is an errno as
//! `i32 LE` (0 = done). Ops: 1 link (materialise), 2 copy-up (make private for writing),
//! 3 whiteout (record a deletion), 4 link every file of a directory (before a listing).
//! Requests are served one at a time, which also serialises concurrent first opens.
//!
//! With tier 2 on, a second thread answers the seccomp supervisor's notifications
//! ([`crate::supervisor`]); one [`Materialiser`] serves both tiers, so a file materialised for
//! one is there for the other.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;

use std::sync::{Arc, Mutex};

use super::sandbox::Sandbox;
use super::{RunError, materialize};
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::store::Store;
use crate::supervisor::Supervisor;
use crate::supervisor::handlers::Materialise;

pub use crate::boundary::effect::{OP_COPY_UP, OP_LINK, OP_LINK_DIR, OP_WHITEOUT, OP_WHITEOUT_DIR};

/// Requests served in this process (both tiers), for `capsule run --stats`: a launcher serves
/// one program.
static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many materialiser requests this process has served.
pub fn requests_served() -> u64 {
    REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The materialiser of one run: the tree operations both tiers ask for. Requests are served
/// concurrently; what changes the tree (linking, copy-up, whiteouts) happens one at a time
/// under `tree_lock`, while the slow part of a first open — extracting a blob into the cache,
/// or fetching it from a registry after a lazy pull — runs outside it, so one download does
/// not hold up every other first open.
pub struct Materialiser {
    /// Serialises changes to the tree, and holds what this run did to it.
    tree_lock: Mutex<TreeState>,
    store: Store,
    manifest: Manifest,
    sandbox: Sandbox,
    /// The sandbox's table of deletions, which every process of its runs reads
    /// ([`crate::view::live`]).
    live: Option<crate::view::live::Mapping>,
}

/// What one run did to the tree, under [`Materialiser`]'s lock.
struct TreeState {
    /// Paths deleted (at the start: the sandbox's whiteouts), never materialised again; a later
    /// create starts empty.
    deleted: HashSet<RelPath>,
    /// Directories whose files this run linked: a second request (a listing by path, then by
    /// descriptor; every listing of the run, since the view marks them only from the next run
    /// on) is answered at once, and `linked` gets one line.
    linked: HashSet<RelPath>,
}

/// The materialiser's socket, served by `capsule run` while the program runs.
pub struct Server {
    listener: UnixListener,
    mat: Shared,
}

impl Server {
    /// Listen on abstract socket `name`.
    pub fn bind(name: &str, store: Store, manifest: Manifest, sandbox: Sandbox) -> Result<Server, RunError> {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(RunError::io("bad socket name", PathBuf::from(name)))?;
        let listener = UnixListener::bind_addr(&addr)
            .map_err(RunError::io("failed to listen on abstract socket", PathBuf::from(name)))?;
        Server::on(listener, store, manifest, sandbox)
    }

    /// Serve on a socket already listening (made in the program's network namespace).
    pub fn on(listener: UnixListener, store: Store, manifest: Manifest, sandbox: Sandbox) -> Result<Server, RunError> {
        // Deletions of earlier runs count too: a listing must not bring them back.
        let deleted = sandbox.whiteouts()?.into_iter().collect();
        let state = TreeState { deleted, linked: HashSet::new() };
        let live = sandbox.deletions();
        let mat = Materialiser { tree_lock: Mutex::new(state), store, manifest, sandbox, live };
        Ok(Server { listener, mat: Shared(Arc::new(mat)) })
    }

    /// Serve until the process exits; with `sup`, its notifications too, on a thread of its
    /// own blocked in `NOTIF_RECV` (a tracee's call then wakes it on the tracee's CPU, with
    /// SYNC_WAKE_UP, rather than through a poll and a second system call). Both share the
    /// materialiser, locked per operation.
    pub fn serve(self, sup: Option<Supervisor>) {
        if let Some(mut sup) = sup {
            let mut mat = Shared(Arc::clone(&self.mat.0));
            std::thread::spawn(move || {
                super::signals::keep_off_this_thread();
                loop {
                    match sup.serve_one(&mut mat) {
                        Ok(true) => {}
                        Ok(false) if sup.finished() => break,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "supervisor stopped");
                            break;
                        }
                    }
                }
            });
        }
        for conn in self.listener.incoming() {
            let Ok(conn) = conn else { continue };
            self.answer(conn);
        }
    }

    /// Make the socket non-blocking, to be served from the caller's poll loop: poll
    /// [`Server::fd`], then call [`Server::accept_waiting`].
    pub fn polled(self) -> Result<Server, RunError> {
        self.listener
            .set_nonblocking(true)
            .map_err(RunError::io("cannot poll", PathBuf::from("materialiser socket")))?;
        Ok(self)
    }

    /// The listening socket.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.listener.as_fd()
    }

    /// Answer every connection waiting on a [`Server::polled`] socket, without blocking.
    pub fn accept_waiting(&self) {
        while let Ok((conn, _)) = self.listener.accept() {
            self.answer(conn);
        }
    }

    /// One thread per request: each is a first open (or a copy-up), and a slow one (a blob
    /// fetched from a registry) must not hold up the others. (Accepted sockets block, whatever
    /// the listener: Linux does not pass O_NONBLOCK on.)
    fn answer(&self, mut conn: UnixStream) {
        let mat = Shared(Arc::clone(&self.mat.0));
        std::thread::spawn(move || {
            super::signals::keep_off_this_thread();
            let errno = mat.request(&mut conn).unwrap_or(libc::EIO);
            let _ = conn.write_all(&errno.to_le_bytes());
        });
    }
}

/// Whether host directory `dir` has an entry not deleted in the sandbox.
fn host_dir_busy(dir: &RelPath, deleted: &HashSet<RelPath>) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let host = std::path::Path::new("/").join(std::ffi::OsStr::from_bytes(dir.as_bytes()));
    std::fs::read_dir(host).is_ok_and(|rd| {
        rd.flatten().any(|e| dir.join(e.file_name().as_bytes()).map_or(true, |child| !deleted.contains(&child)))
    })
}

/// The materialiser shared by the socket's request threads and the supervisor thread.
struct Shared(Arc<Materialiser>);

impl Shared {
    fn request(&self, conn: &mut UnixStream) -> std::io::Result<i32> {
        let mut head = [0u8; 3];
        conn.read_exact(&mut head)?;
        let len = usize::from(u16::from_le_bytes([head[1], head[2]]));
        let mut path = vec![0u8; len];
        conn.read_exact(&mut path)?;
        let Ok(path) = RelPath::new(path) else { return Ok(libc::EINVAL) };
        Ok(self.0.run(head[0], &path))
    }
}

impl Materialise for Shared {
    fn op(&mut self, op: u8, rel: &[u8]) -> i32 {
        match RelPath::new(rel.to_vec()) {
            Ok(path) => self.0.run(op, &path),
            Err(_) => libc::EINVAL,
        }
    }
}

impl Materialiser {
    /// Run operation `op` on `path`: 0, or an errno.
    fn run(&self, op: u8, path: &RelPath) -> i32 {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The slow part of a first open, outside the lock: the blob into the cache (from the
        // store, or from the registry after a lazy pull). Failures surface below.
        if op == OP_LINK
            && let Some((e, digest)) = materialize::content(&self.manifest, path)
        {
            let _ = materialize::ensure_cache(&self.store, &digest, &e);
        }
        let Ok(mut state) = self.tree_lock.lock() else { return libc::EIO };
        let TreeState { deleted, linked } = &mut *state;
        let tree = self.sandbox.tree();
        let is_deleted = deleted.contains(path);
        let r = match op {
            OP_LINK if is_deleted => Ok(false),
            OP_LINK => materialize::link_entry(&self.store, tree, &self.manifest, path),
            OP_COPY_UP if is_deleted => {
                // Re-created after a deletion: it starts empty, like any new file, in the
                // host's directories mirrored into the tree (`rm F` then `open(F, O_CREAT)`
                // under write-copy: apt's log files).
                deleted.remove(path);
                self.set_live(path, false);
                let parent = path.parent();
                materialize::mirror_dirs(tree, parent.as_ref().map_or(&b""[..], RelPath::as_bytes)).map(|()| true)
            }
            OP_COPY_UP => materialize::copy_up(&self.store, tree, &self.manifest, path),
            // rmdir of a host directory: only when every entry it has on the host is deleted
            // already (the tree's copy, if any, was removed by the caller: it was empty).
            OP_WHITEOUT_DIR if host_dir_busy(path, deleted) => return libc::ENOTEMPTY,
            OP_WHITEOUT | OP_WHITEOUT_DIR => {
                deleted.insert(path.clone());
                self.set_live(path, true);
                if self.manifest.get(path).is_some_and(|e| matches!(e.kind, EntryKind::Dir))
                    && let Some(live) = self.live.as_ref().and_then(crate::view::live::Mapping::live)
                {
                    live.mark_dirs_replaced();
                }
                self.sandbox.add_whiteout(path).map(|()| true)
            }
            OP_LINK_DIR if linked.contains(path) => Ok(true),
            OP_LINK_DIR => self.link_dir(path, deleted).inspect(|_| {
                linked.insert(path.clone());
            }),
            _ => return libc::EINVAL,
        };
        match r {
            Ok(true) => 0,
            Ok(false) => libc::ENOENT,
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "materialise failed");
                libc::EIO
            }
        }
    }

    /// Mark `path` deleted (or re-created) in the table every process of the sandbox reads.
    fn set_live(&self, path: &RelPath, deleted: bool) {
        if let Some(live) = self.live.as_ref().and_then(crate::view::live::Mapping::live)
            && !live.set(path.as_bytes(), deleted)
        {
            tracing::debug!(path = %path, "the table of deletions is full: seen from the next run");
        }
    }

    /// Link every capsule file of `dir` into the tree (not those deleted), and record it.
    fn link_dir(&self, dir: &RelPath, deleted: &HashSet<RelPath>) -> Result<bool, super::RunError> {
        let tree = self.sandbox.tree();
        for e in self.manifest.children(dir) {
            if !deleted.contains(&e.path) && matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
                materialize::link_entry(&self.store, tree, &self.manifest, &e.path)?;
            }
        }
        self.sandbox.mark_linked(dir)?;
        Ok(true)
    }
}
