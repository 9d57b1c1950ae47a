//! The capsule's address and MAC in the kernel's route netlink answers (`RTM_NEWLINK`,
//! `RTM_NEWADDR`), which is what glibc's getifaddrs reads: the supervisor receives a static
//! program's `recvmsg` on a `NETLINK_ROUTE` socket itself and edits the bytes with [`patch`]
//! before writing them into the program. Dependency-free, allocation-free, panic-free, on raw
//! bytes: a truncated or malformed record is left as it is, never read past.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDRLEN: usize = 16;
/// `RTM_NEWLINK`: one interface (`struct ifinfomsg`, then `IFLA_*` attributes).
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_NEWADDR`: one address (`struct ifaddrmsg`, then `IFA_*` attributes).
pub const RTM_NEWADDR: u16 = 20;
/// `struct ifinfomsg`: family u8, pad u8, type u16, index i32, flags u32, change u32.
const IFINFOMSG_LEN: usize = 16;
/// `struct ifaddrmsg`: family u8, prefixlen u8, flags u8, scope u8, index u32.
const IFADDRMSG_LEN: usize = 8;
/// `struct rtattr`: len u16, type u16.
const RTA_HDRLEN: usize = 4;
/// The attribute type without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
const RTA_TYPE_MASK: u16 = 0x3fff;
const IFLA_ADDRESS: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `AF_INET` as `ifa_family` carries it.
const AF_INET: u8 = 2;

/// The capsule's interface as the answers should show it.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// Its index (`if_nametoindex`); 0 matches nothing.
    pub index: u32,
    /// Its IPv4 address, if the capsule has one.
    pub ipv4: Option<[u8; 4]>,
    /// Its MAC, if the capsule has one.
    pub mac: Option<[u8; 6]>,
}

/// Netlink's 4-byte alignment; `None` on overflow.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Edit every record of a route netlink datagram (`buf`: the bytes received, possibly cut
/// short) that describes the capsule's interface: `RTM_NEWADDR` of family `AF_INET` →
/// `IFA_ADDRESS` and `IFA_LOCAL` become the capsule's address; `RTM_NEWLINK` → `IFLA_ADDRESS`
/// becomes its MAC (`IFLA_BROADCAST` and the rest stay). Returns how many attributes changed.
pub fn patch(buf: &mut [u8], id: &Identity) -> usize {
    let mut edits = 0;
    let mut at = 0usize;
    while let (Some(len), Some(kind)) = (u32_at(buf, at), u16_at(buf, at.saturating_add(4))) {
        let Ok(len) = usize::try_from(len) else { break };
        if len < NLMSG_HDRLEN {
            break; // malformed: the kernel never sends it, and the walk could not advance
        }
        // A record cut short by the receiver's buffer: edit what arrived of it.
        let end = at.saturating_add(len).min(buf.len());
        if let Some(body) = buf.get_mut(at.saturating_add(NLMSG_HDRLEN)..end) {
            edits += match kind {
                RTM_NEWLINK => link(body, id),
                RTM_NEWADDR => addr(body, id),
                _ => 0,
            };
        }
        match align4(len).and_then(|l| at.checked_add(l)) {
            Some(next) => at = next,
            None => break,
        }
    }
    edits
}

/// An `RTM_NEWLINK` body.
fn link(body: &mut [u8], id: &Identity) -> usize {
    let Some(mac) = id.mac else { return 0 };
    if id.index == 0 || u32_at(body, 4) != Some(id.index) {
        return 0;
    }
    let Some(attrs) = body.get_mut(IFINFOMSG_LEN..) else { return 0 };
    rewrite(attrs, |kind| (kind == IFLA_ADDRESS).then_some(&mac[..]))
}

/// An `RTM_NEWADDR` body.
fn addr(body: &mut [u8], id: &Identity) -> usize {
    let Some(ip) = id.ipv4 else { return 0 };
    if id.index == 0 || body.first() != Some(&AF_INET) || u32_at(body, 4) != Some(id.index) {
        return 0;
    }
    let Some(attrs) = body.get_mut(IFADDRMSG_LEN..) else { return 0 };
    rewrite(attrs, |kind| matches!(kind, IFA_ADDRESS | IFA_LOCAL).then_some(&ip[..]))
}

/// Walk the `rtattr`s of `attrs`; an attribute for which `value` has bytes of exactly its
/// payload's length gets them. Returns how many changed.
fn rewrite<'a>(attrs: &mut [u8], value: impl Fn(u16) -> Option<&'a [u8]>) -> usize {
    let mut edits = 0;
    let mut at = 0usize;
    while let (Some(len), Some(kind)) = (u16_at(attrs, at), u16_at(attrs, at.saturating_add(2))) {
        let len = usize::from(len);
        if len < RTA_HDRLEN {
            break;
        }
        if let Some(v) = value(kind & RTA_TYPE_MASK)
            && let Some(payload) = attrs.get_mut(at.saturating_add(RTA_HDRLEN)..at.saturating_add(len))
            && payload.len() == v.len()
        {
            payload.copy_from_slice(v);
            edits += 1;
        }
        match align4(len).and_then(|l| at.checked_add(l)) {
            Some(next) => at = next,
            None => break,
        }
    }
    edits
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    const ID: Identity = Identity { index: 2, ipv4: Some([127, 0, 0, 9]), mac: Some([2, 0x42, 0xac, 0x11, 0, 9]) };
    const HOST_IP: [u8; 4] = [10, 0, 0, 5];
    const HOST_MAC: [u8; 6] = [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    const BCAST_MAC: [u8; 6] = [0xff; 6];

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&u16::try_from(RTA_HDRLEN + payload.len()).unwrap().to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()).unwrap(), 0);
        a
    }

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(NLMSG_HDRLEN + body.len()).unwrap().to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, pid
        m.extend_from_slice(body);
        m.resize(align4(m.len()).unwrap(), 0);
        m
    }

    fn newlink(index: u32) -> Vec<u8> {
        let mut b = vec![0u8; IFINFOMSG_LEN];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b.extend(attr(3, b"eth0\0")); // IFLA_IFNAME
        b.extend(attr(IFLA_ADDRESS, &HOST_MAC));
        b.extend(attr(2, &BCAST_MAC)); // IFLA_BROADCAST
        msg(RTM_NEWLINK, &b)
    }

    fn newaddr(family: u8, index: u32) -> Vec<u8> {
        let mut b = vec![family, 24, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend(attr(IFA_ADDRESS, &HOST_IP));
        b.extend(attr(IFA_LOCAL, &HOST_IP));
        b.extend(attr(4, &[10, 0, 0, 255])); // IFA_BROADCAST
        b.extend(attr(3, b"eth0\0")); // IFA_LABEL
        msg(RTM_NEWADDR, &b)
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn the_capsule_interface_shows_its_address_and_mac() {
        let mut buf = [newlink(1), newlink(2), newaddr(AF_INET, 1), newaddr(AF_INET, 2), msg(3, &[0; 4])].concat();
        let before = buf.clone();
        assert_eq!(patch(&mut buf, &ID), 3);
        assert_eq!(count(&buf, &ID.mac.unwrap()), 1);
        assert_eq!(count(&buf, &HOST_MAC), 1); // interface 1 keeps its MAC
        assert_eq!(count(&buf, &BCAST_MAC), 2); // IFLA_BROADCAST stays
        assert_eq!(count(&buf, &ID.ipv4.unwrap()), 2); // IFA_ADDRESS and IFA_LOCAL of interface 2
        assert_eq!(count(&buf, &[10, 0, 0, 255]), 2);
        assert_eq!(buf.len(), before.len());
    }

    #[test]
    fn other_families_and_missing_parts_are_left_alone() {
        let mut v6 = newaddr(10, 2); // AF_INET6 with a 4-byte payload (malformed) stays anyway
        assert_eq!(patch(&mut v6, &ID), 0);
        let mut buf = [newlink(2), newaddr(AF_INET, 2)].concat();
        assert_eq!(patch(&mut buf, &Identity { index: 2, ipv4: None, mac: None }), 0);
        assert_eq!(patch(&mut buf, &Identity { index: 0, ..ID }), 0);
        assert_eq!(patch(&mut buf, &Identity { ipv4: None, ..ID }), 1);
    }

    #[test]
    fn truncated_and_malformed_records_neither_panic_nor_overrun() {
        let whole = [newlink(2), newaddr(AF_INET, 2)].concat();
        for cut in 0..=whole.len() {
            let mut b = whole[..cut].to_vec();
            let n = patch(&mut b, &ID);
            assert!(n <= 3, "cut at {cut}");
            assert_eq!(b.len(), cut);
        }
        // A record whose length claims more than the buffer, one that claims less than a
        // header, one of length u32::MAX, attributes of length 0 and 0xffff.
        let mut long = newlink(2);
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(patch(&mut long, &ID), 1);
        let mut short = newlink(2);
        short[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(patch(&mut short, &ID), 0);
        let mut huge = newaddr(AF_INET, 2);
        huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(patch(&mut huge, &ID), 2);
        let mut zero_attr = newaddr(AF_INET, 2);
        zero_attr[NLMSG_HDRLEN + IFADDRMSG_LEN..][..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(patch(&mut zero_attr, &ID), 0);
        let mut wide_attr = newaddr(AF_INET, 2);
        wide_attr[NLMSG_HDRLEN + IFADDRMSG_LEN..][..2].copy_from_slice(&0xffffu16.to_ne_bytes());
        assert_eq!(patch(&mut wide_attr, &ID), 0);
        // A wrong-sized IFLA_ADDRESS (an InfiniBand address, say) is not touched.
        let mut b = vec![0u8; IFINFOMSG_LEN];
        b[4..8].copy_from_slice(&2u32.to_ne_bytes());
        b.extend(attr(IFLA_ADDRESS, &[1; 20]));
        let mut ib = msg(RTM_NEWLINK, &b);
        assert_eq!(patch(&mut ib, &ID), 0);
        for junk in [&[][..], &[0xff; 3], &[0xff; 40], &[0; 40]] {
            let mut j = junk.to_vec();
            assert_eq!(patch(&mut j, &ID), 0);
        }
    }
}
