//! [`Server`]: the materialiser `capsule run` serves while the application runs.
//!
//! The shim cannot decompress (zstd is kept out of applications), so on the first open of a
//! capsule file it asks over an abstract unix socket, named in the view. One request per
//! connection: `op: u8 · len: u16 LE · path bytes` (no leading '/'); the reply is an errno as
//! `i32 LE` (0 = done). Ops: 1 link (materialise), 2 copy-up (make private for writing),
//! 3 whiteout (record a deletion), 4 link every file of a directory (before a listing),
//! 5 whiteout of a host directory, 6 open for writing (`flags · mode` before the path; the
//! descriptor comes back with the reply: [`Materialiser::open_for`]).
//!
//! Only the run's own processes are served ([`super::peer`]: the peer must descend from the
//! launcher); any other connection is closed unanswered. Accepted connections go to a bounded
//! pool of worker threads through a bounded queue, each with read and write timeouts, so a
//! flood of idle connections neither starts a thread each nor holds the run up: a connection
//! that finds the queue full is refused (closed), a worker that cannot be started is done
//! without (the accepting thread answers itself), and `accept` failing for want of
//! descriptors waits a moment and goes on.
//!
//! With tier 2 on, a second thread answers the seccomp supervisor's notifications
//! ([`crate::supervisor`]); one [`Materialiser`] serves both tiers, so a file materialised for
//! one is there for the other.
#![allow(unsafe_code)] // getsockopt(SO_PEERCRED) and faccessat2 for a deletion's permission check

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::sandbox::Sandbox;
use super::{RunError, materialize};
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::store::Store;
use crate::supervisor::Supervisor;
use crate::supervisor::handlers::Materialise;

pub use crate::boundary::effect::{
    HOST_EXTRA, OP_COPY_UP, OP_HOST, OP_LINK, OP_LINK_DIR, OP_OPEN, OP_WHITEOUT, OP_WHITEOUT_DIR,
};

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
    /// The tree, opened at the first [`Materialiser::open_for`].
    tree_fd: std::sync::OnceLock<std::fs::File>,
    /// The run's view file (its isolation rules bound what [`OP_HOST`] does), read at the
    /// first such request.
    view_path: PathBuf,
    view: std::sync::OnceLock<Vec<u8>>,
}

/// Answer `sup`'s notifications until no tracee is left.
fn notifications(sup: &mut Supervisor, mat: &mut dyn Materialise) {
    loop {
        match sup.serve_one(mat) {
            Ok(true) => {}
            Ok(false) if sup.finished() => break,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "supervisor stopped");
                break;
            }
        }
    }
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

/// Worker threads at most: requests are first opens and copy-ups, a few of them slow (a blob
/// fetched from a registry); more workers than this would only contend for the tree lock.
const MAX_WORKERS: usize = 8;

/// Accepted connections waiting for a worker at most; past this, new ones are refused.
const QUEUE: usize = 1024;

/// How long a connection may take to send its request, or to take its reply. A client writes
/// its request right after `connect`; one that does not is stopped or hostile.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The materialiser's socket, served by `capsule run` while the program runs.
pub struct Server {
    listener: UnixListener,
    mat: Shared,
    pool: Pool,
    /// This process: peers must descend from it.
    launcher: u32,
    /// The peers found of the run (the server is used from one thread).
    known: std::cell::RefCell<super::peer::Known>,
}

/// The worker threads and their queue.
struct Pool {
    tx: SyncSender<UnixStream>,
    rx: Arc<Mutex<Receiver<UnixStream>>>,
    /// Workers started (the server is used from one thread).
    started: std::cell::Cell<usize>,
    /// Workers serving a connection right now.
    busy: Arc<AtomicUsize>,
}

impl Server {
    /// Listen on abstract socket `name`.
    pub fn bind(
        name: &str,
        store: Store,
        manifest: Manifest,
        sandbox: Sandbox,
        view: &Path,
    ) -> Result<Server, RunError> {
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(RunError::io("bad socket name", PathBuf::from(name)))?;
        let listener = UnixListener::bind_addr(&addr)
            .map_err(RunError::io("failed to listen on abstract socket", PathBuf::from(name)))?;
        Server::on(listener, store, manifest, sandbox, view)
    }

    /// Serve on a socket already listening (made in the program's network namespace), for a
    /// run of view `view`.
    pub fn on(
        listener: UnixListener,
        store: Store,
        manifest: Manifest,
        sandbox: Sandbox,
        view: &Path,
    ) -> Result<Server, RunError> {
        // Deletions of earlier runs count too: a listing must not bring them back.
        let deleted = sandbox.whiteouts()?.into_iter().collect();
        let state = TreeState { deleted, linked: HashSet::new() };
        let live = sandbox.deletions();
        let mat = Materialiser {
            tree_lock: Mutex::new(state),
            store,
            manifest,
            sandbox,
            live,
            tree_fd: std::sync::OnceLock::new(),
            view_path: view.to_path_buf(),
            view: std::sync::OnceLock::new(),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let pool = Pool {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            started: std::cell::Cell::new(0),
            busy: Arc::new(AtomicUsize::new(0)),
        };
        let known = std::cell::RefCell::new(super::peer::Known::default());
        Ok(Server { listener, mat: Shared(Arc::new(mat)), pool, launcher: std::process::id(), known })
    }

    /// Serve until the process exits; with `sup`, its notifications too, on a thread of its
    /// own blocked in `NOTIF_RECV` (a tracee's call then wakes it on the tracee's CPU, with
    /// SYNC_WAKE_UP, rather than through a poll and a second system call). Both share the
    /// materialiser, locked per operation.
    pub fn serve(self, sup: Option<Supervisor>) {
        if let Some(mut sup) = sup {
            let mut mat = Shared(Arc::clone(&self.mat.0));
            let spawned = std::thread::Builder::new().name("capsule-supervisor".into()).spawn(move || {
                super::signals::keep_off_this_thread();
                notifications(&mut sup, &mut mat);
            });
            if let Err(e) = spawned {
                // The program's trapped calls then fail (ENOSYS once the listener closes); the
                // materialiser still serves tier 1.
                eprintln!("capsule: error: cannot start the seccomp supervisor's thread: {e}");
            }
        }
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => self.dispatch(conn),
                Err(e) => backoff(&e),
            }
        }
    }

    /// Supervise a run without tier 2 ([`crate::supervisor::filter::GUARD`]: the changes of
    /// metadata, the credential changes) on a thread of its own, once the program sent its
    /// listener over `armed`, sharing this materialiser. A program that never sends one (it
    /// died first) leaves the thread waiting for nothing, which costs nothing.
    pub fn supervise(&self, armed: crate::supervisor::launch::Armed, view: PathBuf, tree: PathBuf, as_callers: bool) {
        let mut mat = self.handle().0;
        let spawned = std::thread::Builder::new().name("capsule-guard".into()).spawn(move || {
            super::signals::keep_off_this_thread();
            guard(armed, &view, &tree, as_callers, &mut mat);
        });
        if let Err(e) = spawned {
            // The program's changes of metadata then fail (ENOSYS once the listener closes).
            eprintln!("capsule: error: cannot start the supervisor's thread: {e}");
        }
    }

    /// This server's materialiser, to share with a supervisor ([`supervise_deferred`]).
    pub fn handle(&self) -> Handle {
        Handle(Shared(Arc::clone(&self.mat.0)))
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
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => self.dispatch(conn),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ECONNABORTED)) => {}
                Err(e) => {
                    // Out of descriptors or memory: the connections wait in the backlog.
                    backoff(&e);
                    return;
                }
            }
        }
    }

    /// One accepted connection: refused unless its peer is of this run, else queued for a
    /// worker (one more is started when none is idle, up to [`MAX_WORKERS`]). Accepted sockets
    /// block, whatever the listener: Linux does not pass O_NONBLOCK on.
    fn dispatch(&self, conn: UnixStream) {
        if !super::peer::of_this_run_with(&conn, self.launcher, &mut self.known.borrow_mut()) {
            tracing::debug!("materialiser: refused a connection from outside the run");
            return;
        }
        if conn.set_read_timeout(Some(TIMEOUT)).is_err() || conn.set_write_timeout(Some(TIMEOUT)).is_err() {
            return;
        }
        // An open for writing whose request is here already (the client writes it whole right
        // after connect) is answered at once, on this thread: it does no slow work (no blob is
        // extracted; a FIFO is opened without blocking), and a handoff to a worker is one more
        // wake-up of another thread on every write-open of the tree.
        if matches!(waiting_op(&conn), Some(OP_OPEN | OP_HOST)) {
            answer(&self.mat, conn);
            return;
        }
        let pool = &self.pool;
        let started = pool.started.get();
        if started < MAX_WORKERS && pool.busy.load(Ordering::Relaxed) >= started {
            let (rx, busy, mat) = (Arc::clone(&pool.rx), Arc::clone(&pool.busy), Shared(Arc::clone(&self.mat.0)));
            let spawned =
                std::thread::Builder::new().name("capsule-materialiser".into()).spawn(move || work(&rx, &busy, &mat));
            match spawned {
                Ok(_) => pool.started.set(started + 1),
                Err(e) => tracing::debug!(error = %e, workers = started, "no new materialiser worker"),
            }
        }
        if pool.started.get() == 0 {
            // No worker could be started at all: answer here, bounded by the timeouts.
            answer(&self.mat, conn);
            return;
        }
        match pool.tx.try_send(conn) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                tracing::warn!("materialiser: {QUEUE} requests waiting; a connection was refused");
            }
        }
    }
}

/// A worker: take connections from the queue and answer them, for the life of the process
/// (workers never exit, so no child of the launcher sees its parent thread end).
fn work(rx: &Mutex<Receiver<UnixStream>>, busy: &AtomicUsize, mat: &Shared) {
    super::signals::keep_off_this_thread();
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(conn) = next else { return };
        busy.fetch_add(1, Ordering::Relaxed);
        answer(mat, conn);
        busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The op byte of a request already in `conn`'s receive queue (peeked, not read).
fn waiting_op(conn: &UnixStream) -> Option<u8> {
    use std::os::fd::AsRawFd;
    let mut op = 0u8;
    // SAFETY: recv writes at most one byte into `op`, which is ours.
    let n = unsafe { libc::recv(conn.as_raw_fd(), (&raw mut op).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    (n == 1).then_some(op)
}

/// Read one request from `conn`, run it, reply (with the descriptor an open made).
fn answer(mat: &Shared, mut conn: UnixStream) {
    match mat.request(&mut conn) {
        Ok((0, Some(fd))) => send_fd(&conn, &fd),
        Ok((errno, _)) => {
            let _ = conn.write_all(&errno.to_le_bytes());
        }
        Err(_) => {
            let _ = conn.write_all(&libc::EIO.to_le_bytes());
        }
    }
}

/// Reply 0 with descriptor `fd` attached (SCM_RIGHTS). Not received (the client is gone),
/// it is closed with our copy.
fn send_fd(conn: &UnixStream, fd: &std::os::fd::OwnedFd) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let zero = 0i32.to_le_bytes();
    let iov = [std::io::IoSlice::new(&zero)];
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let _ = sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None);
}

/// After `accept` failed: a short pause unless it was only interrupted (out of descriptors or
/// memory, the listener stays readable, and retrying at once would spin).
fn backoff(e: &std::io::Error) {
    if !matches!(e.raw_os_error(), Some(libc::EINTR | libc::ECONNABORTED | libc::EAGAIN)) {
        tracing::warn!(error = %e, "materialiser: cannot accept a connection now");
        std::thread::sleep(Duration::from_millis(10));
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

/// A [`Server`]'s materialiser, shared with a supervisor ([`Server::handle`]).
pub struct Handle(Shared);

/// Supervise a run without tier 2, as [`Server::supervise`] does, on this thread (until the
/// program's listener closes), with a materialiser `make` gives when a call first needs one:
/// most programs make no change of metadata that needs a copy-up, so a run started from its
/// plan does not load its capsule's manifest for the guard at every start (`make` builds the
/// server the main thread shares; `None`: the calls that needed it fail with EIO).
pub fn supervise_deferred(
    armed: crate::supervisor::launch::Armed,
    view: &Path,
    tree: &Path,
    as_callers: bool,
    make: impl FnMut() -> Option<Handle>,
) {
    let mut mat = Deferred { make, mat: None };
    guard(armed, view, tree, as_callers, &mut mat);
}

/// The guard's supervisor: the program's listener from `armed`, then its notifications.
fn guard(
    armed: crate::supervisor::launch::Armed,
    view: &Path,
    tree: &Path,
    as_callers: bool,
    mat: &mut dyn Materialise,
) {
    match armed.listener().and_then(|l| Supervisor::new(l, view, tree)) {
        Ok(sup) => notifications(&mut sup.as_callers(as_callers), mat),
        Err(e) => tracing::info!(error = %e, "no guard supervisor"),
    }
}

/// A materialiser made on first use ([`supervise_deferred`]).
struct Deferred<F> {
    make: F,
    mat: Option<Shared>,
}

impl<F: FnMut() -> Option<Handle>> Materialise for Deferred<F> {
    fn op(&mut self, op: u8, rel: &[u8]) -> i32 {
        if self.mat.is_none() {
            self.mat = (self.make)().map(|h| h.0);
        }
        match &mut self.mat {
            Some(m) => m.op(op, rel),
            None => libc::EIO,
        }
    }
}

impl Shared {
    fn request(&self, conn: &mut UnixStream) -> std::io::Result<(i32, Option<std::os::fd::OwnedFd>)> {
        let mut head = [0u8; 3];
        // A descriptor comes with the request's first bytes (a socket for the broker to bind).
        let given = read_head(conn, &mut head)?;
        let len = usize::from(u16::from_le_bytes([head[1], head[2]]));
        let mut how = [0u8; 8];
        if head[0] == OP_OPEN {
            conn.read_exact(&mut how)?;
        }
        if head[0] == OP_HOST {
            let mut extra = [0u8; HOST_EXTRA];
            conn.read_exact(&mut extra)?;
            let mut paths = vec![0u8; len];
            conn.read_exact(&mut paths)?;
            return Ok(match self.0.host_for(conn, &extra, &paths, given) {
                Ok(fd) => (0, fd),
                Err(e) => (e, None),
            });
        }
        let mut path = vec![0u8; len];
        conn.read_exact(&mut path)?;
        let Some(path) = request_path(&path) else { return Ok((libc::EINVAL, None)) };
        if head[0] == OP_OPEN {
            let flags = i32::from_le_bytes([how[0], how[1], how[2], how[3]]);
            let mode = u32::from_le_bytes([how[4], how[5], how[6], how[7]]);
            return Ok(match self.0.open_for(conn, &path, flags, mode) {
                Ok(fd) => (0, Some(fd)),
                Err(e) => (e, None),
            });
        }
        if matches!(head[0], OP_WHITEOUT | OP_WHITEOUT_DIR)
            && let Err(errno) = self.0.may_delete(conn, &path)
        {
            return Ok((errno, None));
        }
        Ok((self.0.run(head[0], &path), None))
    }
}

thread_local! {
    /// Whether this thread has its own umask (`unshare(CLONE_FS)`), set per open for the
    /// caller's.
    static OWN_FS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This thread's own credentials, to switch back to after an open.
    static OWN: std::cell::RefCell<Option<crate::supervisor::creds::Own>> = const { std::cell::RefCell::new(None) };
}

/// Read a request's first `head.len()` bytes from `conn`, and the descriptor that came with
/// them, if one did (SCM_RIGHTS; more than one: the rest closed).
fn read_head(conn: &UnixStream, head: &mut [u8]) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut got = 0;
    let mut given: Option<OwnedFd> = None;
    while got < head.len() {
        let mut control = Control([0; 64]);
        let rest = &mut head[got..];
        let mut iov = libc::iovec { iov_base: rest.as_mut_ptr().cast(), iov_len: rest.len() };
        // SAFETY: msghdr is plain data; every field the kernel reads is set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        // SAFETY: `msg` points at `iov` (the unread part of `head`) and `control`, both alive
        // and writable across the call.
        let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel filled `control` for `msg_controllen` bytes; CMSG_FIRSTHDR and
        // CMSG_NXTHDR stay within it, and an SCM_RIGHTS message's data holds descriptors,
        // now ours.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                    let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<libc::c_int>();
                    for i in 0..count {
                        let fd = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                        given.get_or_insert(fd);
                    }
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += usize::try_from(n).unwrap_or(0);
    }
    Ok(given)
}

/// Run `f` with the credentials and umask of process `pid` (the peer of a request) on this
/// thread, and take this thread's own back after. No switch when the caller's credentials
/// open files as ours would.
fn as_caller<T>(pid: u32, f: impl FnOnce() -> T) -> Result<T, i32> {
    use crate::supervisor::creds;
    let own = match OWN.with(|o| o.borrow().clone()) {
        Some(o) => o,
        None => {
            let o = creds::Own::current().map_err(|_| libc::EPERM)?;
            OWN.with(|c| *c.borrow_mut() = Some(o.clone()));
            o
        }
    };
    let (theirs, umask) = creds::with_umask_of(pid).map_err(|_| libc::EPERM)?;
    if !OWN_FS.get() {
        // SAFETY: unshare(CLONE_FS) gives this thread its own umask, cwd and root (copies).
        if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
            return Err(libc::EIO);
        }
        OWN_FS.set(true);
    }
    let _switched = if own.opens_as(&theirs) { None } else { creds::switch(&own, &theirs)? };
    // SAFETY: umask only sets this thread's mask (its own fs, above).
    let ours = unsafe { libc::umask(umask) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::umask(ours) };
    Ok(r)
}

/// A request's tree path. A directory may come spelled with a trailing slash (`mkdir(".")`
/// in a directory: the boundary keeps the slash for the kernel to insist on a directory).
fn request_path(rel: &[u8]) -> Option<RelPath> {
    let mut rel = rel;
    while let Some(r) = rel.strip_suffix(b"/") {
        rel = r;
    }
    RelPath::new(rel.to_vec()).ok()
}

/// The pid and effective uid of `conn`'s peer (at connect time).
fn peer_of(conn: &UnixStream) -> Option<(u32, u32)> {
    use std::os::fd::AsRawFd;
    // SAFETY: ucred is plain data the kernel fills; the length is its size.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).ok()?;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is ours.
    let r = unsafe {
        libc::getsockopt(conn.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &raw mut len)
    };
    (r == 0).then_some((u32::try_from(cred.pid).ok()?, cred.uid))
}

impl Materialise for Shared {
    fn op(&mut self, op: u8, rel: &[u8]) -> i32 {
        match request_path(rel) {
            Some(path) => self.0.run(op, &path),
            None => libc::EINVAL,
        }
    }
}

impl Materialiser {
    /// Whether the process at the other end of `conn` may delete `path`: a process of another
    /// user than the launcher's (`run --user`, a daemon that dropped privileges) must be able
    /// to write and search the directory holding it as the program sees it (the tree's, else
    /// the host's), with its own credentials (`supervisor::creds`); the launcher's user is
    /// not asked (the kernel decides its own calls). Sticky directories are not told apart.
    fn may_delete(&self, conn: &UnixStream, path: &RelPath) -> Result<(), i32> {
        use crate::supervisor::creds;
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let (pid, uid) = peer_of(conn).ok_or(libc::EPERM)?;
        if uid == nix::unistd::geteuid().as_raw() {
            return Ok(());
        }
        let parent = path.parent();
        let parent = parent.as_ref().map_or(&b"."[..], RelPath::as_bytes);
        // Opened as the launcher: the store is not the caller's to walk.
        let tree = std::fs::File::open(self.sandbox.tree()).map_err(|_| libc::EIO)?;
        let here = std::ffi::CString::new(parent).map_err(|_| libc::EINVAL)?;
        let in_tree = std::fs::symlink_metadata(self.sandbox.tree().join(std::ffi::OsStr::from_bytes(parent))).is_ok();
        let host = std::ffi::CString::new([&b"/"[..], parent].concat()).map_err(|_| libc::EINVAL)?;
        let own = creds::Own::current().map_err(|_| libc::EPERM)?;
        let theirs = creds::of(pid).map_err(|_| libc::EPERM)?;
        let _switched = if own.opens_as(&theirs) { None } else { creds::switch(&own, &theirs)? };
        let (dirfd, at) = if in_tree { (tree.as_raw_fd(), &here) } else { (libc::AT_FDCWD, &host) };
        // SAFETY: faccessat2 reads a NUL-terminated path relative to an open directory.
        let r = unsafe {
            libc::syscall(libc::SYS_faccessat2, dirfd, at.as_ptr(), libc::W_OK | libc::X_OK, libc::AT_EACCESS)
        };
        if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EACCES)) }
    }

    /// Open tree path `path` with `flags` (and `mode`, for a new file) for the process at the
    /// other end of `conn`, with its credentials and umask ([`OP_OPEN`]). Never a descriptor
    /// open for writing on an inode that has another name: a capsule file's pristine link is
    /// the shared cache's inode, and the program could have given one a name of its own with a
    /// raw `link`; such a file is copied up first (its other names keep the old content). The
    /// walk stays in the tree (`RESOLVE_BENEATH`, no `/proc` links): the placed path has no
    /// symlink the view did not resolve, and one planted since is refused. A FIFO is opened
    /// without blocking (ENXIO when it has no reader yet: a worker must not wait for one);
    /// device nodes are refused.
    fn open_for(&self, conn: &UnixStream, path: &RelPath, flags: i32, mode: u32) -> Result<std::os::fd::OwnedFd, i32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let (pid, _) = peer_of(conn).ok_or(libc::EPERM)?;
        let tree = self.sandbox.tree();
        let full = tree.join(std::ffi::OsStr::from_bytes(path.as_bytes()));
        let mut extra = 0;
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_file() && m.nlink() > 1 => {
                let r = self.run(OP_COPY_UP, path);
                if r != 0 {
                    return Err(r);
                }
            }
            Ok(m) if m.file_type().is_fifo() => extra = libc::O_NONBLOCK,
            Ok(m) if m.file_type().is_block_device() || m.file_type().is_char_device() => return Err(libc::EACCES),
            _ => {}
        }
        let dir = match self.tree_fd.get() {
            Some(d) => d,
            None => {
                let d = std::fs::File::open(tree).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
                self.tree_fd.get_or_init(|| d)
            }
        };
        let name = std::ffi::CString::new(path.as_bytes()).map_err(|_| libc::EINVAL)?;
        let opened = as_caller(pid, || {
            crate::supervisor::place::open_unshared(
                dir.as_raw_fd(),
                &name,
                flags | extra,
                mode,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            )
        })?;
        // A name given to the file since the copy-up (a race with a raw `link`): refused.
        let fd = opened.map_err(|e| if e == libc::EMLINK { libc::EIO } else { e })?;
        if extra != 0 && flags & libc::O_NONBLOCK == 0 {
            // SAFETY: fcntl on our own descriptor, integer arguments.
            unsafe {
                let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
        Ok(fd)
    }

    /// Make the host call an [`OP_HOST`] request names (`extra`: its call, flags and mode;
    /// `paths`: the path, then a NUL and the second path if it has one) for the process at the
    /// other end of `conn`, with its credentials and umask, as far as the run's isolation rules
    /// allow (`supervisor::host`): the descriptor of an open.
    fn host_for(
        &self,
        conn: &UnixStream,
        extra: &[u8; HOST_EXTRA],
        paths: &[u8],
        given: Option<std::os::fd::OwnedFd>,
    ) -> Result<Option<std::os::fd::OwnedFd>, i32> {
        use crate::supervisor::host;
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let (pid, _) = peer_of(conn).ok_or(libc::EPERM)?;
        let bytes = self.view.get_or_init(|| std::fs::read(&self.view_path).unwrap_or_default());
        let view = crate::view::View::new(bytes).map_err(|_| libc::EACCES)?;
        let flags = i32::from_le_bytes([extra[4], extra[5], extra[6], extra[7]]);
        let mode = u32::from_le_bytes([extra[8], extra[9], extra[10], extra[11]]);
        let mut parts = paths.splitn(2, |&c| c == 0);
        let path = std::ffi::CString::new(parts.next().unwrap_or_default()).map_err(|_| libc::EINVAL)?;
        let other = parts.next().map(std::ffi::CString::new).transpose().map_err(|_| libc::EINVAL)?;
        let socket = given.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let call = host::Call::decode(extra[0], flags, mode, other.as_deref(), socket).ok_or(libc::EINVAL)?;
        as_caller(pid, || host::perform(&view, &path, call))?
    }

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
