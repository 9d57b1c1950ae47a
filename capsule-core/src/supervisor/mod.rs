//! Tier 2: the seccomp user-notification supervisor.
//!
//! The launcher installs [`filter::program`] in the program before exec ([`launch`]); the
//! filter sends the virtualised path calls here unless they carry the run's cookie (the
//! shim's own calls). [`Supervisor::serve_one`] receives one notification, reads the path
//! from the tracee ([`memory`]), checks that the notification is still valid, places it with
//! the same resolver as the shim ([`place`]) and answers ([`handlers`]): opens are performed
//! here and the descriptor injected (`ADDFD` + `SEND`); stat, access and readlink are
//! performed here and their results written into the tracee; anything not the capsule's is
//! `CONTINUE`d. It serves the whole process tree: children inherit the filter.
//!
//! `CONTINUE` is not a security boundary (the kernel re-reads the tracee's memory after our
//! check): capsule virtualises, it does not sandbox. See docs/security.md.

pub mod auto;
pub mod creds;
pub mod filter;
pub mod handlers;
pub mod host;
pub mod launch;
pub mod link;
pub mod listing;
pub mod memory;
mod net;
mod netlink;
pub mod notify;
pub mod place;
pub mod record;
pub mod table;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use handlers::{Context, Materialise};
use memory::Process;
use notify::{Listener, Reply};

use crate::view::View;

/// How many calls each answer took (for `capsule run --stats`), readable from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls the supervisor performed itself (opens injected, stats emulated, errors).
    pub served: AtomicU64,
    /// Calls let through unchanged (not the capsule's).
    pub continued: AtomicU64,
}

/// One run's supervisor.
pub struct Supervisor {
    listener: Listener,
    view: Vec<u8>,
    tree: OwnedFd,
    stats: Arc<Stats>,
    record: Option<Recorder>,
    hostname: Option<String>,
    domain: Option<String>,
    ipv4: Option<std::net::Ipv4Addr>,
    iface: Vec<u8>,
    ifindex: u32,
    mac: Option<[u8; 6]>,
    /// Merged listings, for a program whose `getdents64` is trapped ([`Supervisor::merge_listings`]).
    listings: Option<listing::Listings>,
    /// The sandbox's deletions since the view was made ([`crate::view::live`]).
    live: Option<crate::view::live::Mapping>,
    /// The supervisor thread's credentials ([`creds`]), read when it starts serving.
    own: Option<creds::Own>,
    /// A thread of the run changed its credentials: from then on each call is made with the
    /// calling thread's.
    creds_changed: bool,
    /// Until then, the credentials the program started with, read at the first call: the
    /// launcher's ids, and for a run as root fewer capabilities than the launcher's (the
    /// bounding set `launch` leaves it), which the supervisor must not exceed for it (a
    /// `trusted.*` xattr set, a chown of a file not the program's to give).
    started: Option<creds::Creds>,
    /// This thread is in the run's mount namespace ([`Supervisor::enter_mount_ns`]).
    in_run_ns: bool,
}

/// Record mode's log: every absolute path a traced program named in a trapped call.
pub type Recorder = Arc<std::sync::Mutex<std::collections::BTreeSet<Vec<u8>>>>;

impl Supervisor {
    /// Serve `listener` for the run whose view file is `view` and sandbox tree `tree`.
    pub fn new(listener: OwnedFd, view: &Path, tree: &Path) -> io::Result<Supervisor> {
        let bytes = std::fs::read(view)?;
        View::new(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e:?}", view.display())))?;
        let live = tree.parent().and_then(|dir| {
            use std::os::unix::ffi::OsStrExt;
            let file = std::ffi::CString::new(dir.join(crate::view::live::FILE).as_os_str().as_bytes()).ok()?;
            crate::view::live::Mapping::open(&file, false)
        });
        let tree = std::fs::File::open(tree)?.into();
        Ok(Supervisor {
            live,
            listener: Listener::new(listener)?,
            view: bytes,
            tree,
            stats: Arc::default(),
            record: None,
            hostname: None,
            domain: None,
            ipv4: None,
            iface: Vec::new(),
            ifindex: 0,
            mac: None,
            listings: None,
            own: None,
            creds_changed: false,
            started: None,
            in_run_ns: false,
        })
    }

    /// Answer `uname` with this identity's host and domain names, and the interface queries
    /// (ioctls, route netlink) with its address and MAC.
    #[must_use]
    pub fn with_identity(mut self, id: &crate::manifest::Identity) -> Supervisor {
        self.hostname.clone_from(&id.hostname);
        self.domain.clone_from(&id.domain);
        self.ipv4 = id.ipv4;
        self.mac = id.mac;
        if id.ipv4.is_some() || id.mac.is_some() {
            self.iface = crate::run::identity::primary_interface().map(String::into_bytes).unwrap_or_default();
            // Once, here: route netlink answers name interfaces by index.
            self.ifindex = std::ffi::CString::new(self.iface.clone())
                .ok()
                .and_then(|n| nix::net::if_::if_nametoindex(n.as_c_str()).ok())
                .unwrap_or(0);
        }
        self
    }

    /// Answer `getdents64` on the capsule directories the host has too that this supervisor
    /// injected, merged (`listing`): for a filter with `Traps::listings`.
    #[must_use]
    pub fn merge_listings(mut self, on: bool) -> Supervisor {
        self.listings = on.then(listing::Listings::default);
        self
    }

    /// Serve every call with the calling thread's credentials from the start, not only once a
    /// thread changed its own: for a run whose program starts as another user than the
    /// launcher (`run --user`, [`crate::run::user`]).
    #[must_use]
    pub fn as_callers(mut self, on: bool) -> Supervisor {
        self.creds_changed |= on;
        self
    }

    /// Record mode: log every path named in a trapped call into `rec` (the filter must be
    /// [`filter::recording_program`], and the shim must not have the cookie).
    pub fn record_into(&mut self, rec: Recorder) {
        self.record = Some(rec);
    }

    /// The counters, shared.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// The descriptor to poll: readable when a call waits, hung up when no tracee is left.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Receive and answer one notification. `Ok(false)`: nothing was received (interrupted,
    /// or the calling thread died meanwhile).
    pub fn serve_one(&mut self, mat: &mut dyn Materialise) -> io::Result<bool> {
        let Some(n) = self.listener.recv()? else { return Ok(false) };
        if table::family(n.nr) == Some(table::Family::Cred) {
            self.creds_changed = true;
            self.stats.continued.fetch_add(1, Ordering::Relaxed);
            self.listener.reply(n.id, Reply::Continue)?;
            return Ok(true);
        }
        // In the run's mount namespace, before anything is done on its behalf; a call whose
        // namespace cannot be told is refused.
        if !self.in_run_ns
            && let Err(e) = self.enter_mount_ns(n.pid, n.id)
        {
            self.stats.served.fetch_add(1, Ordering::Relaxed);
            self.listener.reply(n.id, Reply::Error(e))?;
            return Ok(true);
        }
        // As the calling thread, once any thread of the run changed its credentials; a thread
        // whose credentials cannot be read or taken is refused, never served as the launcher.
        let _switched = match self.as_caller(n.pid, n.id) {
            Ok(s) => s,
            Err(e) => {
                self.stats.served.fetch_add(1, Ordering::Relaxed);
                self.listener.reply(n.id, Reply::Error(e))?;
                return Ok(true);
            }
        };
        let view = View::new(&self.view).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
        let view = view.with_live(self.live.as_ref().and_then(crate::view::live::Mapping::live));
        let listener = &self.listener;
        let valid = || listener.id_valid(n.id);
        let mem = Process { pid: n.pid, valid: &valid };
        if let Some(rec) = &self.record
            && let Some(p) = record::path_of(&mem, n.nr, &n.args)
            && let Ok(mut set) = rec.lock()
        {
            set.insert(p);
        }
        if let Some(reply) = rename(&mut self.hostname, &mut self.domain, &mem, n.nr, &n.args) {
            self.stats.served.fetch_add(1, Ordering::Relaxed);
            self.listener.reply(n.id, reply)?;
            return Ok(true);
        }
        if n.nr == libc::SYS_getdents64 {
            #[allow(clippy::cast_possible_truncation)] // an int argument in a 64-bit register
            let fd = n.args[0] as i32;
            let reply = match &mut self.listings {
                Some(l) => {
                    let live = self.live.as_ref().and_then(crate::view::live::Mapping::live);
                    l.getdents(&mem, live, n.pid, fd, n.args[1], n.args[2])
                }
                None => Reply::Continue,
            };
            let counter = if matches!(reply, Reply::Continue) { &self.stats.continued } else { &self.stats.served };
            counter.fetch_add(1, Ordering::Relaxed);
            self.listener.reply(n.id, reply)?;
            return Ok(true);
        }
        let mut cx = Context {
            view,
            tree: self.tree.as_fd(),
            mat,
            hostname: self.hostname.as_deref(),
            domain: self.domain.as_deref(),
            ipv4: self.ipv4,
            iface: (!self.iface.is_empty()).then(|| crate::ifreq::Iface {
                name: &self.iface,
                ipv4: self.ipv4.map(|a| a.octets()),
                mac: self.mac,
            }),
            ifindex: self.ifindex,
            pid: n.pid,
        };
        let reply = handlers::handle(&mut cx, &mem, n.nr, &n.args);
        // An injected directory the host has too: its getdents64 is answered merged.
        let merged = match &reply {
            Reply::Fd { fd, .. } if self.listings.is_some() => listing::Listings::candidate(&view, fd.as_fd()),
            _ => None,
        };
        if matches!(reply, Reply::Continue) {
            self.stats.continued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.served.fetch_add(1, Ordering::Relaxed);
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            let path = record::path_of(&mem, n.nr, &n.args);
            tracing::trace!(nr = n.nr, pid = n.pid, ?path, ?reply, "supervisor");
        }
        if let (Some(number), Some(c), Some(l)) = (self.listener.reply(n.id, reply)?, merged, &mut self.listings) {
            l.injected(n.pid, number, c);
        }
        Ok(true)
    }

    /// Switch this thread to the credentials of thread `tid` (notification `id`), if any thread
    /// of the run changed its own.
    fn as_caller(&mut self, tid: u32, id: u64) -> Result<Option<creds::Switched>, i32> {
        if self.own.is_none() {
            self.own = Some(creds::Own::current().map_err(|_| libc::EPERM)?);
        }
        if !self.creds_changed {
            // Every thread has the credentials the program started with: read once.
            if self.started.is_none() {
                let theirs = creds::of(tid).map_err(|_| libc::EPERM)?;
                if !self.listener.id_valid(id) {
                    return Err(libc::EPERM);
                }
                self.started = Some(theirs);
            }
            return match (&self.own, &self.started) {
                (Some(own), Some(started)) => creds::switch(own, started),
                _ => Err(libc::EPERM),
            };
        }
        let theirs = creds::of(tid).map_err(|_| libc::EPERM)?;
        // The thread that made the call, not another that took its number since.
        if !self.listener.id_valid(id) {
            return Err(libc::EPERM);
        }
        match &self.own {
            Some(own) => creds::switch(own, &theirs),
            None => Err(libc::EPERM),
        }
    }

    /// Enter the mount namespace of thread `tid` (notification `id`) if it is not this
    /// thread's: a run as root has one of its own, in which the system's settings are
    /// read-only (`launch::READ_ONLY`), and what the supervisor opens or changes on the
    /// program's behalf (a path reached through a symlink the program made) must be what the
    /// program would reach itself. Only this thread moves (`unshare(CLONE_FS)` first: a thread
    /// sharing its filesystem attributes cannot change namespace), and it takes the program's
    /// root again (setns leaves it at the namespace's, outside a chroot the launcher ran in);
    /// the launcher's other threads stay in the host's. Checked at the first call served, and until it could be told.
    #[allow(unsafe_code)] // unshare(2), setns(2), fchdir(2), chroot(2)
    fn enter_mount_ns(&mut self, tid: u32, id: u64) -> Result<(), i32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let path = format!("/proc/{tid}/ns/mnt");
        let (theirs, ours) = match (std::fs::metadata(&path), std::fs::metadata("/proc/thread-self/ns/mnt")) {
            (Ok(t), Ok(o)) => (t, o),
            _ => return Err(libc::EPERM),
        };
        let ns = std::fs::File::open(&path).map_err(|_| libc::EPERM)?;
        // Its root (a launcher under a chroot: setns puts this thread at the namespace's own
        // root, outside it), and our working directory, to come back to (a relative store).
        let dir = |p: &str| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(p)
        };
        let root = dir(&format!("/proc/{tid}/root")).map_err(|_| libc::EPERM)?;
        let cwd = dir(".").ok();
        // The thread that made the call, not another that took its number since.
        if !self.listener.id_valid(id) {
            return Err(libc::EPERM);
        }
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            // SAFETY: unshare, setns, fchdir and chroot take integers and a NUL-terminated
            // string; the descriptors are open for the calls, and change only this thread's
            // filesystem attributes (its own after unshare(CLONE_FS)).
            let r = unsafe {
                if libc::unshare(libc::CLONE_FS) == 0
                    && libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) == 0
                    && libc::fchdir(root.as_raw_fd()) == 0
                    && libc::chroot(c".".as_ptr()) == 0
                {
                    if let Some(c) = &cwd {
                        libc::fchdir(c.as_raw_fd());
                    }
                    0
                } else {
                    -1
                }
            };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!(error = %e, tid, "cannot enter the run's mount namespace");
                return Err(libc::EPERM);
            }
        }
        self.in_run_ns = true;
        Ok(())
    }

    /// Every tracee is gone (the listener hangs up): nothing more will come.
    pub fn finished(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).is_ok()
            && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP) && !r.contains(PollFlags::POLLIN))
    }
}

/// sethostname/setdomainname in a capsule with its own name: the capsule is renamed (every
/// later uname the supervisor answers), never the machine. `None`: not ours (the kernel's call).
fn rename(
    hostname: &mut Option<String>,
    domain: &mut Option<String>,
    mem: &impl memory::TraceeMemory,
    nr: i64,
    a: &[u64; 6],
) -> Option<Reply> {
    let own = hostname.is_some();
    let slot = match nr {
        libc::SYS_sethostname if own => hostname,
        libc::SYS_setdomainname if own || domain.is_some() => domain,
        _ => return None,
    };
    let len = usize::try_from(a[1]).unwrap_or(usize::MAX);
    if len > 64 {
        return Some(Reply::Error(libc::EINVAL));
    }
    let mut buf = vec![0u8; len];
    if mem.read(a[0], &mut buf).map_or(true, |n| n < len) || !mem.still_valid() {
        return Some(Reply::Error(libc::EFAULT));
    }
    *slot = Some(String::from_utf8_lossy(&buf).into_owned());
    Some(Reply::Value(0))
}
