//! `run --netns` without root, where the kernel allows unprivileged user namespaces: the program
//! starts in a user namespace of its own (its user and group mapped to themselves, so it runs
//! as the same user, not as a namespace root), a network namespace with loopback and a veth
//! pair `cap0`/`cap0p` whose `cap0` carries the capsule's address and MAC, and a UTS namespace
//! with its host name. Nothing outside changes and nothing needs cleaning up: the namespaces
//! end with the last process in them. There is no way out of the namespace (a veth end on the
//! host needs root), so peers are the capsule's own processes.
//!
//! Everything happens in the forked child before exec, where only system calls on memory made
//! before the fork are allowed: the netlink messages, map lines and socket address are built by
//! [`Plan::new`]. The capability the child holds in its new user namespace is enough for
//! every step and is gone at exec (a non-root user keeps no capabilities across execve).
//! The materialiser's abstract socket belongs to a network namespace, so the child creates and
//! binds it inside and hands the listening socket back over an inherited socketpair.
#![allow(unsafe_code)] // pre_exec: unshare, /proc/self maps, netlink, ioctl, SCM_RIGHTS

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::Command;

const CAP: &[u8] = b"cap0";
const PEER: &[u8] = b"cap0p";
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
/// `size_of::<RawFd>()`, as the CMSG macros take it.
const FD_LEN: u32 = 4;

/// Whether this process needs the unprivileged path (it is not root).
pub fn needed() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() != 0 }
}

/// Everything the child needs, built before the fork.
pub struct Plan {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    hostname: Option<Vec<u8>>,
    veth: Vec<u8>,
    addr: Vec<u8>,
    /// Offset of the interface index in `addr`, filled in by the child.
    addr_index_at: usize,
    socket: libc::sockaddr_un,
    socket_len: libc::socklen_t,
    /// The child's end of the socketpair the listener goes back over.
    child_end: OwnedFd,
    /// The launcher's end.
    parent_end: UnixStream,
}

fn align4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// Append a netlink attribute.
fn attr(v: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    v.extend_from_slice(&len.to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(payload);
    align4(v);
}

/// Open a nested attribute; [`close_nested`] writes its length.
fn open_nested(v: &mut Vec<u8>, kind: u16) -> usize {
    let at = v.len();
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn close_nested(v: &mut [u8], at: usize) {
    let len = u16::try_from(v.len() - at).unwrap_or(u16::MAX);
    v[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

fn cstr(name: &[u8]) -> Vec<u8> {
    let mut v = name.to_vec();
    v.push(0);
    v
}

/// A netlink request: header, then `body`.
fn request(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + body.len());
    let len = u32::try_from(16 + body.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&len.to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    let f = u16::try_from(libc::NLM_F_REQUEST | libc::NLM_F_ACK).unwrap_or(0) | flags;
    v.extend_from_slice(&f.to_ne_bytes());
    v.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    v.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    v.extend_from_slice(body);
    v
}

/// `struct ifinfomsg` for a new link.
fn ifinfomsg() -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = u8::try_from(libc::AF_UNSPEC).unwrap_or(0);
    m
}

impl Plan {
    /// The plan for a capsule with `ip/prefix`, `mac`, `hostname`, whose materialiser listens
    /// on abstract socket `socket_name`.
    pub fn new(
        ip: std::net::Ipv4Addr,
        prefix: u8,
        mac: Option<[u8; 6]>,
        hostname: Option<&str>,
        socket_name: &str,
    ) -> io::Result<Plan> {
        // SAFETY: getuid/getgid have no arguments and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        // RTM_NEWLINK: cap0 (with the MAC) and its veth peer cap0p.
        let mut body = ifinfomsg().to_vec();
        attr(&mut body, libc::IFLA_IFNAME, &cstr(CAP));
        if let Some(m) = mac {
            attr(&mut body, libc::IFLA_ADDRESS, &m);
        }
        let linkinfo = open_nested(&mut body, libc::IFLA_LINKINFO);
        attr(&mut body, IFLA_INFO_KIND, b"veth");
        let data = open_nested(&mut body, IFLA_INFO_DATA);
        let peer = open_nested(&mut body, VETH_INFO_PEER);
        body.extend_from_slice(&ifinfomsg());
        attr(&mut body, libc::IFLA_IFNAME, &cstr(PEER));
        close_nested(&mut body, peer);
        close_nested(&mut body, data);
        close_nested(&mut body, linkinfo);
        let create = u16::try_from(libc::NLM_F_CREATE | libc::NLM_F_EXCL).unwrap_or(0);
        let veth = request(libc::RTM_NEWLINK, create, &body);
        // RTM_NEWADDR: ip/prefix on cap0 (its index is known only in the child).
        let mut body = vec![u8::try_from(libc::AF_INET).unwrap_or(2), prefix, 0, 0];
        let index_at = 16 + body.len();
        body.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut body, libc::IFA_LOCAL, &ip.octets());
        attr(&mut body, libc::IFA_ADDRESS, &ip.octets());
        let addr = request(libc::RTM_NEWADDR, create, &body);
        let mut socket = libc::sockaddr_un {
            sun_family: libc::sa_family_t::try_from(libc::AF_UNIX).unwrap_or(1),
            sun_path: [0; 108],
        };
        let name = socket_name.as_bytes();
        if name.len() + 1 >= socket.sun_path.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket name too long"));
        }
        for (d, s) in socket.sun_path.iter_mut().skip(1).zip(name) {
            *d = s.cast_signed();
        }
        let socket_len = libc::socklen_t::try_from(size_of::<libc::sa_family_t>() + 1 + name.len()).unwrap_or(0);
        let (parent_end, child) = UnixStream::pair()?;
        Ok(Plan {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            hostname: hostname.map(|h| h.as_bytes().to_vec()),
            veth,
            addr,
            addr_index_at: index_at,
            socket,
            socket_len,
            child_end: child.into(),
            parent_end,
        })
    }

    /// Make `cmd`'s child set the namespaces up before exec; returns the launcher's end, from
    /// which [`listener`] takes the materialiser's listening socket once the child started.
    pub fn enter(self, cmd: &mut Command) -> UnixStream {
        let Plan {
            uid_map,
            gid_map,
            hostname,
            veth,
            mut addr,
            addr_index_at,
            socket,
            socket_len,
            child_end,
            parent_end,
        } = self;
        let child_fd = child_end.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and makes only system calls
        // on memory prepared before the fork (its own copy of it).
        unsafe {
            cmd.pre_exec(move || {
                let _keep = &child_end;
                check(libc::unshare(libc::CLONE_NEWUSER))?;
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &uid_map)?;
                write_file(c"/proc/self/gid_map", &gid_map)?;
                check(libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWUTS))?;
                if let Some(h) = &hostname {
                    check(libc::sethostname(h.as_ptr().cast(), h.len()))?;
                }
                netlink(&veth)?;
                let index = if_index(CAP)?;
                addr[addr_index_at..addr_index_at + 4].copy_from_slice(&index.to_ne_bytes());
                netlink(&addr)?;
                for name in [&b"lo"[..], CAP, PEER] {
                    up(name)?;
                }
                send_listener(child_fd, &socket, socket_len)
            });
        }
        parent_end
    }
}

/// The materialiser's listening socket, made inside the namespace by the started child.
pub fn listener(parent_end: &UnixStream) -> io::Result<UnixListener> {
    let mut byte = [0u8; 1];
    let mut space = [0u8; 64];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: a zeroed msghdr is valid; its pointers are set to our buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = space.len();
    // SAFETY: recvmsg into our buffers, described by `msg`.
    if unsafe { libc::recvmsg(parent_end.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) } < 1 {
        return Err(io::Error::other("the capsule's network namespace did not hand back the materialiser socket"));
    }
    // SAFETY: CMSG_FIRSTHDR/CMSG_DATA on the control buffer recvmsg filled.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("no descriptor came back from the capsule's network namespace"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
        Ok(UnixListener::from_raw_fd(fd))
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Write `data` to the NUL-terminated `path` (a /proc/self file).
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; `data` is ours.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// Send one netlink request and wait for its acknowledgement.
fn netlink(req: &[u8]) -> io::Result<()> {
    // SAFETY: socket/send/recv/close on our own descriptor and buffers.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        check(fd)?;
        let mut ack = [0u8; 512];
        let sent = libc::send(fd, req.as_ptr().cast(), req.len(), 0);
        let got = if sent < 0 { -1 } else { libc::recv(fd, ack.as_mut_ptr().cast(), ack.len(), 0) };
        let err = io::Error::last_os_error();
        libc::close(fd);
        if got < 20 {
            return Err(if sent < 0 || got < 0 { err } else { io::Error::other("short netlink answer") });
        }
        // NLMSG_ERROR: the error code (0 = acknowledged) follows the 16-byte header.
        let code = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
        if code != 0 { Err(io::Error::from_raw_os_error(-code)) } else { Ok(()) }
    }
}

fn ifreq(name: &[u8]) -> libc::ifreq {
    // SAFETY: a zeroed ifreq is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name) {
        *d = s.cast_signed();
    }
    r
}

fn if_index(name: &[u8]) -> io::Result<u32> {
    let mut r = ifreq(name);
    // SAFETY: a datagram socket of ours, ioctl on our ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let res = libc::ioctl(fd, libc::SIOCGIFINDEX, &raw mut r);
        libc::close(fd);
        check(res)?;
        Ok(u32::try_from(r.ifr_ifru.ifru_ifindex).unwrap_or(0))
    }
}

/// Bring interface `name` up.
fn up(name: &[u8]) -> io::Result<()> {
    let mut r = ifreq(name);
    // SAFETY: as in if_index.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let mut res = libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut r);
        if res == 0 {
            r.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
            res = libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw mut r);
        }
        libc::close(fd);
        check(res)
    }
}

/// Create the materialiser's listening socket here (inside the namespace) and send it over
/// `to`.
fn send_listener(to: RawFd, addr: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<()> {
    // SAFETY: socket/bind/listen/sendmsg/close on our own descriptors and buffers.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        check(libc::bind(fd, std::ptr::from_ref(addr).cast(), len))?;
        check(libc::listen(fd, 128))?;
        let mut byte = [1u8];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
        let mut space = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(FD_LEN) as usize;
        let c = libc::CMSG_FIRSTHDR(&raw const msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(FD_LEN) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        let r = libc::sendmsg(to, &raw const msg, 0);
        libc::close(fd);
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}
