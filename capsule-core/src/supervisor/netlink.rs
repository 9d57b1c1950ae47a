//! `recvmsg` on a route netlink socket, for static programs of a run with an address or MAC
//! identity (the filter traps it only then: `filter::Traps::netlink`): glibc's getifaddrs
//! sends `RTM_GETLINK` and `RTM_GETADDR` dumps and reads the answers with `recvmsg`. The
//! supervisor receives on a duplicate of the tracee's socket (the socket is shared, so the
//! datagram is consumed as the tracee's own call would), edits the records of the capsule's
//! interface ([`crate::rtnl::patch`]) and writes the bytes, the sender's address and the flags
//! into the tracee's `struct msghdr`.
//!
//! Anything else is `CONTINUE`d before a byte is received, which is safe: the kernel then
//! performs the call as the program made it. That covers other sockets, control data asked for
//! (netlink's `NETLINK_PKTINFO` and credentials are not edited, so not dropped either), the
//! error queue, more than [`MAX_IOV`] iovecs or [`MAX_BYTES`] bytes, an unreadable `msghdr`,
//! and a read that would block (the supervisor receives with `MSG_DONTWAIT`: it serves every
//! tracee from one thread; a monitor waiting for link events gets them unedited).
//!
//! A datagram is consumed before the reply: if the tracee is interrupted by a signal in that
//! window, the notification is gone and so is that datagram (glibc's getifaddrs then fails
//! the way it does for a lost reply). The cost is on every `recvmsg` of the run's program —
//! `pidfd_getfd` and two `getsockopt` before a `CONTINUE` for the other sockets.
#![allow(unsafe_code)] // getsockopt and recvmsg on our own duplicate and buffers

use std::os::fd::AsRawFd;

use super::memory::TraceeMemory;
use super::net::tracee_fd;
use super::notify::Reply;
use crate::rtnl;

/// The most iovecs handled (glibc's getifaddrs uses one).
pub const MAX_IOV: usize = 64;
/// The most bytes handled in one call (glibc's getifaddrs reads a page at a time).
pub const MAX_BYTES: usize = 1 << 20;

/// `struct msghdr` on x86-64: name, namelen (u32 + pad), iov, iovlen, control, controllen,
/// flags (i32 + pad).
const MSGHDR_LEN: usize = 56;
const NAMELEN_AT: u64 = 8;
const CONTROLLEN_AT: u64 = 40;
const FLAGS_AT: u64 = 48;
/// `struct iovec`: base, len.
const IOVEC_LEN: usize = 16;
/// `sizeof(struct sockaddr_storage)`: room for any sender address.
const NAME_MAX: usize = 128;

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The tracee's `struct msghdr`, as far as this handler uses it.
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: Vec<(u64, usize)>,
}

/// Read the `msghdr` at `addr` and its iovecs; `None` for anything this handler leaves to the
/// kernel (unreadable, control data, too many iovecs or bytes).
fn read_msghdr(mem: &impl TraceeMemory, addr: u64) -> Option<MsgHdr> {
    let mut h = [0u8; MSGHDR_LEN];
    if mem.read(addr, &mut h).ok()? < h.len() {
        return None;
    }
    let name = u64_at(&h, 0)?;
    let namelen = u32::try_from(u64_at(&h, 8)? & 0xffff_ffff).ok()?;
    let (iov_at, iovlen) = (u64_at(&h, 16)?, usize::try_from(u64_at(&h, 24)?).ok()?);
    let (control, controllen) = (u64_at(&h, 32)?, u64_at(&h, 40)?);
    if (control != 0 && controllen != 0) || iovlen > MAX_IOV {
        return None;
    }
    let mut raw = vec![0u8; iovlen * IOVEC_LEN];
    if iovlen > 0 && mem.read(iov_at, &mut raw).ok()? < raw.len() {
        return None;
    }
    let mut iov = Vec::with_capacity(iovlen);
    let mut total = 0usize;
    for v in raw.chunks_exact(IOVEC_LEN) {
        let (base, len) = (u64_at(v, 0)?, usize::try_from(u64_at(v, 8)?).ok()?);
        total = total.checked_add(len).filter(|&t| t <= MAX_BYTES)?;
        iov.push((base, len));
    }
    Some(MsgHdr { name, namelen, iov })
}

/// Whether `fd` (ours) is a `NETLINK_ROUTE` socket.
fn route_socket(fd: i32) -> bool {
    let opt = |name: libc::c_int| {
        let mut v: libc::c_int = -1;
        let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
        // SAFETY: `fd` is our duplicate; `v` and `len` are ours and sized for an int option.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut v).cast(), &mut len) };
        (r == 0).then_some(v)
    };
    opt(libc::SO_DOMAIN) == Some(libc::AF_NETLINK) && opt(libc::SO_PROTOCOL) == Some(libc::NETLINK_ROUTE)
}

/// recvmsg(2) of thread `pid` on its descriptor `fd` with the `msghdr` at `msg`: on a route
/// netlink socket, received here and edited for the capsule's interface `id`; otherwise
/// `CONTINUE`.
pub fn recvmsg(pid: u32, id: &rtnl::Identity, mem: &impl TraceeMemory, fd: i32, msg: u64, flags: i32) -> Reply {
    if id.index == 0 || (id.ipv4.is_none() && id.mac.is_none()) || flags & libc::MSG_ERRQUEUE != 0 {
        return Reply::Continue;
    }
    let Ok(dup) = tracee_fd(pid, fd) else { return Reply::Continue };
    if !route_socket(dup.as_raw_fd()) {
        return Reply::Continue;
    }
    let Some(hdr) = read_msghdr(mem, msg) else { return Reply::Continue };
    if !mem.still_valid() {
        return Reply::Continue;
    }
    let total: usize = hdr.iov.iter().map(|&(_, len)| len).sum();
    let mut buf = vec![0u8; total];
    let mut name = [0u8; NAME_MAX];
    let mut local_iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: a zeroed msghdr is valid (no name, no control); the fields are set below.
    let mut local: libc::msghdr = unsafe { std::mem::zeroed() };
    local.msg_iov = &raw mut local_iov;
    local.msg_iovlen = 1;
    if hdr.name != 0 {
        local.msg_name = name.as_mut_ptr().cast();
        local.msg_namelen = libc::socklen_t::try_from(NAME_MAX).unwrap_or(0);
    }
    // SAFETY: `dup` is our duplicate; `local` describes `buf` and `name`, ours, alive across
    // the call, with no control buffer.
    let r = unsafe { libc::recvmsg(dup.as_raw_fd(), &raw mut local, flags | libc::MSG_DONTWAIT) };
    let Ok(n) = usize::try_from(r) else {
        let e = super::handlers::errno();
        // Would block (or the tracee's own MSG_DONTWAIT/O_NONBLOCK says so): the kernel's call.
        return if e == libc::EAGAIN { Reply::Continue } else { Reply::Error(e) };
    };
    let got = n.min(total); // MSG_TRUNC: `n` may be the datagram's whole length
    if let Some(bytes) = buf.get_mut(..got) {
        rtnl::patch(bytes, id);
    }
    let mut at = 0usize;
    for &(base, len) in &hdr.iov {
        let Some(chunk) = buf.get(at..got.min(at.saturating_add(len))) else { break };
        if chunk.is_empty() {
            break;
        }
        if mem.write(base, chunk).is_err() {
            return Reply::Error(libc::EFAULT);
        }
        at += chunk.len();
    }
    let mut ok = true;
    if hdr.name != 0 {
        let actual = usize::try_from(local.msg_namelen).unwrap_or(0).min(NAME_MAX);
        let shown = actual.min(usize::try_from(hdr.namelen).unwrap_or(0));
        ok &= name.get(..shown).is_some_and(|b| mem.write(hdr.name, b).is_ok());
        ok &= mem.write(msg + NAMELEN_AT, &local.msg_namelen.to_ne_bytes()).is_ok();
    }
    ok &= mem.write(msg + CONTROLLEN_AT, &0u64.to_ne_bytes()).is_ok();
    ok &= mem.write(msg + FLAGS_AT, &local.msg_flags.to_ne_bytes()).is_ok();
    if ok { Reply::Value(i64::try_from(n).unwrap_or(i64::MAX)) } else { Reply::Error(libc::EFAULT) }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io;

    use super::*;

    const BASE: u64 = 0x10_0000;
    const IOV_AT: u64 = BASE + 0x100;
    const NAME_AT: u64 = BASE + 0x200;
    const BUF_AT: u64 = BASE + 0x1000;
    const BUF_LEN: usize = 0x8000;

    /// The tracee: one vector mapped at `BASE`, holding a msghdr at `BASE` with one iovec.
    struct Fake(RefCell<Vec<u8>>);

    impl Fake {
        fn new(buf_len: usize, control: bool) -> Fake {
            let mut m = vec![0u8; 0x1000 + BUF_LEN];
            let mut put = |at: u64, v: u64| {
                let at = usize::try_from(at - BASE).unwrap();
                m[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            };
            put(BASE, NAME_AT);
            put(BASE + 8, 12); // sizeof(struct sockaddr_nl)
            put(BASE + 16, IOV_AT);
            put(BASE + 24, 1);
            put(BASE + 32, if control { NAME_AT } else { 0 });
            put(BASE + 40, if control { 64 } else { 0 });
            put(IOV_AT, BUF_AT);
            put(IOV_AT + 8, buf_len as u64);
            Fake(RefCell::new(m))
        }
        fn at(&self, addr: u64, n: usize) -> Vec<u8> {
            let at = usize::try_from(addr - BASE).unwrap();
            self.0.borrow()[at..at + n].to_vec()
        }
    }

    impl TraceeMemory for Fake {
        fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
            let m = self.0.borrow();
            let at = usize::try_from(addr - BASE).unwrap();
            let n = buf.len().min(m.len() - at);
            buf[..n].copy_from_slice(&m[at..at + n]);
            Ok(n)
        }
        fn write(&self, addr: u64, data: &[u8]) -> io::Result<()> {
            let at = usize::try_from(addr - BASE).unwrap();
            self.0.borrow_mut()[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn still_valid(&self) -> bool {
            true
        }
        fn cwd(&self) -> io::Result<Vec<u8>> {
            Ok(b"/".to_vec())
        }
        fn fd_path(&self, _fd: i32) -> io::Result<Vec<u8>> {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }

    /// A route netlink socket of this process with a dump request of `kind` sent.
    fn dump(kind: u16) -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) with integer arguments.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        assert!(fd >= 0);
        // SAFETY: just created, owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut req = Vec::new();
        req.extend_from_slice(&20u32.to_ne_bytes()); // nlmsghdr + rtgenmsg (1 byte, padded)
        req.extend_from_slice(&kind.to_ne_bytes());
        req.extend_from_slice(&u16::try_from(libc::NLM_F_REQUEST | libc::NLM_F_DUMP).unwrap().to_ne_bytes());
        req.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]); // seq 1, pid 0
        req.extend_from_slice(&[u8::try_from(libc::AF_UNSPEC).unwrap(), 0, 0, 0]);
        // SAFETY: `req` is ours; a netlink socket sends to the kernel without an address.
        let r = unsafe { libc::send(std::os::fd::AsRawFd::as_raw_fd(&fd), req.as_ptr().cast(), req.len(), 0) };
        assert_eq!(r, 20);
        fd
    }

    fn recv(fd: &std::os::fd::OwnedFd, t: &Fake, id: &rtnl::Identity, flags: i32) -> Reply {
        recvmsg(std::process::id(), id, t, std::os::fd::AsRawFd::as_raw_fd(fd), BASE, flags)
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    const MAC: [u8; 6] = [2, 0x42, 0xac, 0x11, 0, 9];
    const IP: [u8; 4] = [127, 0, 0, 9];

    fn lo() -> rtnl::Identity {
        let index = nix::net::if_::if_nametoindex("lo").unwrap();
        rtnl::Identity { index, ipv4: Some(IP), mac: Some(MAC) }
    }

    #[test]
    fn loopback_links_and_addresses_come_back_edited() {
        let t = Fake::new(BUF_LEN, false);
        let link = dump(libc::RTM_GETLINK);
        let Reply::Value(n) = recv(&link, &t, &lo(), 0) else { panic!("not served") };
        let n = usize::try_from(n).unwrap();
        assert!(n > 16 && n <= BUF_LEN);
        assert!(contains(&t.at(BUF_AT, n), &MAC), "lo's IFLA_ADDRESS edited");
        assert_eq!(t.at(BASE + 8, 4), 12u32.to_ne_bytes(), "msg_namelen");
        assert_eq!(t.at(NAME_AT, 2), u16::try_from(libc::AF_NETLINK).unwrap().to_ne_bytes());
        assert_eq!(t.at(NAME_AT + 4, 4), [0; 4], "nl_pid: the kernel");
        let t = Fake::new(BUF_LEN, false);
        let addr = dump(libc::RTM_GETADDR);
        let Reply::Value(n) = recv(&addr, &t, &lo(), 0) else { panic!("not served") };
        let got = t.at(BUF_AT, usize::try_from(n).unwrap());
        assert!(contains(&got, &IP) && !contains(&got, &[127, 0, 0, 1]), "lo's 127.0.0.1 edited");
    }

    #[test]
    fn peek_and_trunc_pass_through() {
        let link = dump(libc::RTM_GETLINK);
        let t = Fake::new(0, false);
        let Reply::Value(whole) = recv(&link, &t, &lo(), libc::MSG_PEEK | libc::MSG_TRUNC) else { panic!() };
        assert!(whole > 0, "MSG_TRUNC: the datagram's length");
        assert_eq!(t.at(BASE + FLAGS_AT, 4), libc::MSG_TRUNC.to_ne_bytes());
        let t = Fake::new(BUF_LEN, false);
        assert!(matches!(recv(&link, &t, &lo(), 0), Reply::Value(n) if n == whole), "the peeked datagram");
    }

    #[test]
    fn other_sockets_and_unusual_calls_are_the_kernels() {
        let t = Fake::new(BUF_LEN, false);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::OwnedFd::from(udp);
        assert!(matches!(recv(&fd, &t, &lo(), 0), Reply::Continue));
        let link = dump(libc::RTM_GETLINK);
        assert!(matches!(recv(&link, &Fake::new(BUF_LEN, true), &lo(), 0), Reply::Continue), "control data");
        assert!(matches!(recv(&link, &t, &lo(), libc::MSG_ERRQUEUE), Reply::Continue));
        assert!(matches!(recv(&link, &t, &rtnl::Identity { index: 0, ..lo() }, 0), Reply::Continue));
        assert!(matches!(recv(&link, &Fake::new(MAX_BYTES + 1, false), &lo(), 0), Reply::Continue), "too big");
        // Nothing queued: not a blocked supervisor but the kernel's (here non-blocking) call.
        let empty = dump(libc::RTM_GETLINK);
        while let Reply::Value(_) = recv(&empty, &Fake::new(BUF_LEN, false), &lo(), 0) {}
        assert!(matches!(recv(&empty, &t, &lo(), 0), Reply::Continue));
    }
}
