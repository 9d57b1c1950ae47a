//! The supervisor acts with the calling thread's credentials.
//!
//! The supervisor opens, stats and changes files on a program's behalf. Started by root, it
//! would otherwise do so as root for a program that dropped to another user (`setuid(65534)`
//! then `open("/etc/shadow")`). Until a thread of the run changes its credentials, every
//! thread has the launcher's (the filter traps the credential changes whatever the cookie:
//! `table::Family::Cred`), so nothing is read per call. From the first change on, each
//! notification reads the calling thread's `/proc/TID/status` (fs uid and gid, supplementary
//! groups, effective capabilities) and, where they differ from the supervisor's, switches the
//! handling thread to them with raw `setgroups`/`setfsgid`/`setfsuid`/`capset` (raw: glibc's
//! wrappers change every thread of the process), and back after the answer. The materialiser,
//! which writes the store, runs with the launcher's own ([`as_launcher`]).
//!
//! Left out: an `execve` of a file set-id to another user, which changes credentials without a
//! trapped call, in a run whose program has not changed them otherwise (a root launcher
//! only: without privileges the filter needs `no_new_privs`, under which exec changes nothing).
#![allow(unsafe_code)] // setfsuid/setfsgid/setgroups/capget/capset on this thread

use std::cell::RefCell;
use std::io;

/// A thread's file-access credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// The fs user id.
    pub fsuid: u32,
    /// The fs group id.
    pub fsgid: u32,
    /// The supplementary groups.
    pub groups: Vec<u32>,
    /// The effective capabilities.
    pub cap_eff: u64,
}

/// `CAP_SYS_PTRACE`: kept while switched, for the supervisor's reads of `/proc/PID` and the
/// tracee's memory (a program that changed its user is no longer dumpable). It grants no
/// access to files.
const CAP_SYS_PTRACE: u64 = 1 << 19;
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The supervisor thread's own credentials, to switch back to.
#[derive(Debug, Clone)]
pub struct Own {
    creds: Creds,
    caps: [CapData; 2],
}

impl Own {
    /// This thread's credentials.
    pub fn current() -> io::Result<Own> {
        let status = std::fs::read("/proc/thread-self/status")?;
        let creds = parse(&status).ok_or_else(|| io::Error::other("cannot read /proc/thread-self/status"))?;
        let mut caps = [CapData::default(); 2];
        let mut h = CapHeader { version: CAP_V3, pid: 0 };
        // SAFETY: capget writes two CapData (version 3) for this thread.
        if unsafe { libc::syscall(libc::SYS_capget, &raw mut h, caps.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Own { creds, caps })
    }

    /// Whether a thread with `c` opens files as this one does: the same fs ids and groups,
    /// and the same of the capabilities an open checks (CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH,
    /// FOWNER, FSETID). A root program's smaller bounding set needs no switch for an open.
    pub fn opens_as(&self, c: &Creds) -> bool {
        const OPEN_CAPS: u64 = 0x1f;
        self.creds.fsuid == c.fsuid
            && self.creds.fsgid == c.fsgid
            && self.creds.groups == c.groups
            && (self.creds.cap_eff ^ c.cap_eff) & OPEN_CAPS == 0
    }

    /// Whether a thread with `c` accesses files as this one does.
    pub fn same(&self, c: &Creds) -> bool {
        self.creds.fsuid == c.fsuid
            && self.creds.fsgid == c.fsgid
            && self.creds.groups == c.groups
            && self.creds.cap_eff == c.cap_eff
    }
}

/// The credentials of thread `tid` (as the supervisor's pid namespace numbers it).
pub fn of(tid: u32) -> io::Result<Creds> {
    let status = std::fs::read(format!("/proc/{tid}/status"))?;
    parse(&status).ok_or_else(|| io::Error::other(format!("cannot parse /proc/{tid}/status")))
}

/// The credentials of process (or thread) `pid`, and its umask (what a file it makes gets).
pub fn with_umask_of(pid: u32) -> io::Result<(Creds, u32)> {
    let status = std::fs::read(format!("/proc/{pid}/status"))?;
    let bad = || io::Error::other(format!("cannot parse /proc/{pid}/status"));
    let creds = parse(&status).ok_or_else(bad)?;
    let text = std::str::from_utf8(&status).map_err(|_| bad())?;
    let umask = text.lines().find_map(|l| l.strip_prefix("Umask:")).ok_or_else(bad)?;
    Ok((creds, u32::from_str_radix(umask.trim(), 8).map_err(|_| bad())?))
}

/// The fields of a `/proc/.../status` file that decide file access.
fn parse(status: &[u8]) -> Option<Creds> {
    let text = std::str::from_utf8(status).ok()?;
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let nth = |name: &str, i: usize| field(name)?.split_whitespace().nth(i)?.parse::<u32>().ok();
    let mut groups: Vec<u32> = field("Groups:")?.split_whitespace().filter_map(|g| g.parse().ok()).collect();
    groups.sort_unstable();
    Some(Creds {
        fsuid: nth("Uid:", 3)?,
        fsgid: nth("Gid:", 3)?,
        groups,
        cap_eff: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
    })
}

thread_local! {
    /// The credentials this thread is switched to, with its own: for [`as_launcher`].
    static SWITCHED: RefCell<Option<(Own, Creds)>> = const { RefCell::new(None) };
}

/// While alive, this thread acts with another thread's credentials; dropping it switches back.
#[derive(Debug)]
pub struct Switched(());

impl Drop for Switched {
    fn drop(&mut self) {
        if let Some((own, _)) = SWITCHED.with(|s| s.borrow_mut().take()) {
            apply_own(&own);
        }
    }
}

/// Switch this thread to `to` (the calling thread's credentials); `Ok(None)` when they are
/// this thread's own. An error leaves this thread as it was: the caller must refuse the call,
/// never make it with its own credentials.
pub fn switch(own: &Own, to: &Creds) -> Result<Option<Switched>, i32> {
    if own.same(to) {
        return Ok(None);
    }
    let guard = Switched(());
    SWITCHED.with(|s| *s.borrow_mut() = Some((own.clone(), to.clone())));
    apply(own, to)?; // on error the guard switches back
    Ok(Some(guard))
}

/// Run `f` with the launcher's own credentials (the materialiser writes the store), switched
/// back to the calling thread's after.
pub fn as_launcher<T>(f: impl FnOnce() -> T) -> T {
    let Some((own, to)) = SWITCHED.with(|s| s.borrow().clone()) else { return f() };
    apply_own(&own);
    let r = f();
    if apply(&own, &to).is_err() {
        // Not back to the caller's: stay our own and let the next call switch again.
        SWITCHED.with(|s| *s.borrow_mut() = None);
        apply_own(&own);
    }
    r
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM)
}

/// setgroups, setfsgid, setfsuid, then the effective capabilities: those of `to` this thread
/// has (and CAP_SYS_PTRACE). setfsuid and setfsgid report no error: each is checked by asking
/// again.
fn apply(own: &Own, to: &Creds) -> Result<(), i32> {
    // SAFETY: setgroups reads `len` gids from the vector, alive across the call.
    if unsafe { libc::syscall(libc::SYS_setgroups, to.groups.len(), to.groups.as_ptr()) } != 0 {
        return Err(errno());
    }
    // SAFETY: setfsgid/setfsuid take integers; an invalid id (-1) only returns the current one.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, to.fsgid);
        libc::syscall(libc::SYS_setfsuid, to.fsuid);
        if libc::syscall(libc::SYS_setfsgid, u32::MAX) != i64::from(to.fsgid)
            || libc::syscall(libc::SYS_setfsuid, u32::MAX) != i64::from(to.fsuid)
        {
            return Err(libc::EPERM);
        }
    }
    let want = (own.caps_eff() & (to.cap_eff | CAP_SYS_PTRACE)).to_le_bytes();
    let mut caps = own.caps;
    caps[0].effective = u32::from_le_bytes([want[0], want[1], want[2], want[3]]);
    caps[1].effective = u32::from_le_bytes([want[4], want[5], want[6], want[7]]);
    let mut h = CapHeader { version: CAP_V3, pid: 0 };
    // SAFETY: capset reads two CapData (version 3) for this thread.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut h, caps.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

impl Own {
    fn caps_eff(&self) -> u64 {
        u64::from(self.caps[0].effective) | (u64::from(self.caps[1].effective) << 32)
    }
}

/// Back to this thread's own credentials. A failure here cannot be answered: the thread would
/// act with another's credentials, fewer than its own, so calls fail rather than leak.
fn apply_own(own: &Own) {
    // SAFETY: as in `apply`: integers, and vectors and structs alive across each call.
    unsafe {
        libc::syscall(libc::SYS_setgroups, own.creds.groups.len(), own.creds.groups.as_ptr());
        libc::syscall(libc::SYS_setfsgid, own.creds.fsgid);
        libc::syscall(libc::SYS_setfsuid, own.creds.fsuid);
        let mut h = CapHeader { version: CAP_V3, pid: 0 };
        libc::syscall(libc::SYS_capset, &raw mut h, own.caps.as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = b"Name:\tx\nUid:\t0\t65534\t0\t65534\nGid:\t0\t65534\t0\t65533\nGroups:\t27 4 \nCapEff:\t000001ffffffffff\n";
        let c = parse(s).unwrap();
        assert_eq!(c, Creds { fsuid: 65534, fsgid: 65533, groups: vec![4, 27], cap_eff: 0x1ff_ffff_ffff });
        assert!(parse(b"Uid:\t0\n").is_none());
    }

    /// As root: a thread switched to nobody cannot read a root-only file, other threads can,
    /// and it reads it again once switched back.
    #[test]
    fn switch_is_per_thread() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CAPSULE_REQUIRE_ALL").is_none(), "needs root");
            eprintln!("skipped: switch_is_per_thread needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let own = Own::current().unwrap();
        let nobody = Creds { fsuid: 65534, fsgid: 65534, groups: vec![], cap_eff: 0 };
        // A thread started before the switch (a new one would copy this thread's credentials).
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let other = {
            let f = f.clone();
            std::thread::spawn(move || wait.recv().map(|()| std::fs::read(&f).is_ok()))
        };
        let g = switch(&own, &nobody).unwrap().expect("a switch");
        assert_eq!(std::fs::read(&f).unwrap_err().raw_os_error(), Some(libc::EACCES));
        go.send(()).unwrap();
        assert!(other.join().unwrap().unwrap(), "another thread keeps its credentials");
        assert!(as_launcher(|| std::fs::read(&f).is_ok()), "the materialiser's own credentials");
        assert!(std::fs::read(&f).is_err(), "switched again after as_launcher");
        drop(g);
        assert_eq!(std::fs::read(&f).unwrap(), b"x");
        assert!(switch(&own, &own.creds).unwrap().is_none(), "no switch to one's own");
    }
}
