//! `run --netns`: a real network namespace for the capsule, joined to a peer namespace (or the
//! host's) by a veth pair, so peers see the capsule's address on the wire; and a UTS namespace
//! carrying its host name. Needs CAP_NET_ADMIN and CAP_SYS_ADMIN (root). The namespace is named
//! `capsule-<pid>` (iproute2's /run/netns), configured with `ip`, and deleted by [`Netns`]'s
//! drop, which also removes the veth pair.
#![allow(unsafe_code)] // pre_exec: setns, unshare, sethostname in the child

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Where the veth's other end goes, and its address.
#[derive(Debug, Clone)]
pub struct Peer {
    /// A named network namespace (`ip netns`), or `None` for the launcher's own.
    pub netns: Option<String>,
    /// Its address with prefix length, e.g. "10.200.0.1/24".
    pub addr: String,
}

/// Errors setting up the namespace, naming the command that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Ip {
        /// Its arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// Opening the namespace.
    #[error("cannot open network namespace {0}: {1}")]
    Open(String, io::Error),
    /// A bad `--netns-peer` value.
    #[error("invalid --netns-peer {0:?}: NETNS:ADDR/PREFIX or ADDR/PREFIX")]
    Peer(String),
}

/// A capsule's network namespace; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    fd: OwnedFd,
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetnsError::Ip { args: args.join(" "), stderr: e.to_string() })?;
    if o.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Ip { args: args.join(" "), stderr: String::from_utf8_lossy(&o.stderr).trim().to_owned() })
    }
}

/// Parse `--netns-peer`: `NETNS:ADDR/PREFIX` or `ADDR/PREFIX`.
pub fn parse_peer(s: &str) -> Result<Peer, NetnsError> {
    let (ns, addr) = match s.rsplit_once(':') {
        Some((ns, a)) => (Some(ns.to_owned()), a),
        None => (None, s),
    };
    let ok = addr
        .split_once('/')
        .is_some_and(|(a, p)| a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32));
    if !ok || ns.as_deref().is_some_and(str::is_empty) {
        return Err(NetnsError::Peer(s.to_owned()));
    }
    Ok(Peer { netns: ns, addr: addr.to_owned() })
}

impl Netns {
    /// Create `capsule-<pid>` with loopback up and a veth pair: the capsule's end carries
    /// `addr/prefix` (and `mac`), the other end goes to `peer` with its address.
    pub fn create(
        addr: std::net::Ipv4Addr,
        prefix: u8,
        mac: Option<[u8; 6]>,
        peer: &Peer,
    ) -> Result<Netns, NetnsError> {
        let pid = std::process::id();
        let name = format!("capsule-{pid}");
        let (inner, outer) = (format!("cap{pid}c"), format!("cap{pid}h"));
        ip(&["netns", "add", &name])?;
        // From here on, drop deletes the namespace (and the veth with it) whatever fails next.
        let fd =
            std::fs::File::open(format!("/run/netns/{name}")).map_err(|e| NetnsError::Open(name.clone(), e))?.into();
        let ns = Netns { name, fd };
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner])?;
        ip(&["link", "set", &inner, "netns", &ns.name])?;
        let cidr = format!("{addr}/{prefix}");
        ip(&["-n", &ns.name, "addr", "add", &cidr, "dev", &inner])?;
        if let Some(m) = mac {
            let m = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            ip(&["-n", &ns.name, "link", "set", "dev", &inner, "address", &m])?;
        }
        ip(&["-n", &ns.name, "link", "set", "dev", &inner, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "dev", "lo", "up"])?;
        match &peer.netns {
            Some(p) => {
                ip(&["link", "set", &outer, "netns", p])?;
                ip(&["-n", p, "addr", "add", &peer.addr, "dev", &outer])?;
                ip(&["-n", p, "link", "set", "dev", &outer, "up"])?;
            }
            None => {
                ip(&["addr", "add", &peer.addr, "dev", &outer])?;
                ip(&["link", "set", "dev", &outer, "up"])?;
            }
        }
        Ok(ns)
    }

    /// Run `f` on a thread that joined the namespace (sockets it creates belong there), and
    /// return its result; this thread stays where it is.
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let fd = self.fd.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a namespace descriptor we own, for this thread only.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))?
        })
    }

    /// Make `cmd`'s child join the namespace, with its own UTS namespace named `hostname`.
    pub fn enter(&self, cmd: &mut Command, hostname: Option<&str>) {
        let fd = self.fd.as_raw_fd();
        let host = hostname.and_then(|h| CString::new(h).ok());
        // SAFETY: the closure runs in the forked child before exec and makes only system calls
        // (setns, unshare, sethostname) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 || libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(h) = &host
                    && libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys the capsule's veth end, and with it the pair.
        let _ = ip(&["netns", "del", &self.name]);
    }
}
