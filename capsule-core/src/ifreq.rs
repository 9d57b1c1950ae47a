//! The capsule's address and MAC in the kernel's interface answers (SIOCGIFADDR,
//! SIOCGIFHWADDR, SIOCGIFCONF), for both tiers: the shim edits the caller's `struct ifreq`
//! after the real ioctl, the supervisor edits its own copy before writing it into the tracee.
//! Dependency-free, allocation-free, panic-free, on raw bytes.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

/// ioctl: the interface list.
pub const SIOCGIFCONF: u64 = 0x8912;
/// ioctl: one interface's IPv4 address.
pub const SIOCGIFADDR: u64 = 0x8915;
/// ioctl: one interface's hardware address.
pub const SIOCGIFHWADDR: u64 = 0x8927;
/// `sizeof(struct ifreq)` on x86-64.
pub const IFREQ_LEN: usize = 40;

/// The capsule's interface as the answers should show it.
#[derive(Debug, Clone, Copy)]
pub struct Iface<'a> {
    /// Its name (no NUL).
    pub name: &'a [u8],
    /// Its IPv4 address, if the capsule has one.
    pub ipv4: Option<[u8; 4]>,
    /// Its MAC, if the capsule has one.
    pub mac: Option<[u8; 6]>,
}

/// Whether `request` is one of the three this module edits.
pub fn edited(request: u64) -> bool {
    matches!(request, SIOCGIFCONF | SIOCGIFADDR | SIOCGIFHWADDR)
}

fn named(rec: &[u8], name: &[u8]) -> bool {
    let field = rec.get(..16).unwrap_or_default();
    let len = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    !name.is_empty() && field.get(..len) == Some(name)
}

/// Edit one `struct ifreq` (`rec`, [`IFREQ_LEN`] bytes) as the kernel answered `request`
/// (SIOCGIFADDR or SIOCGIFHWADDR, or a SIOCGIFCONF record).
pub fn patch_ifreq(request: u64, rec: &mut [u8], ifc: &Iface<'_>) {
    if rec.len() < IFREQ_LEN || !named(rec, ifc.name) {
        return;
    }
    let family =
        rec.get(16..18).and_then(|f| <[u8; 2]>::try_from(f).ok()).map_or(0, |b| i32::from(u16::from_ne_bytes(b)));
    match (request, ifc.ipv4, ifc.mac) {
        (SIOCGIFADDR | SIOCGIFCONF, Some(ip), _) if family == libc::AF_INET => {
            if let Some(a) = rec.get_mut(20..24) {
                a.copy_from_slice(&ip);
            }
        }
        (SIOCGIFHWADDR, _, Some(mac)) => {
            if let Some(a) = rec.get_mut(18..24) {
                a.copy_from_slice(&mac);
            }
        }
        _ => {}
    }
}

/// Edit every record of a SIOCGIFCONF answer (`buf`: the `ifc_len` bytes the kernel wrote).
pub fn patch_ifconf(buf: &mut [u8], ifc: &Iface<'_>) {
    for rec in buf.chunks_exact_mut(IFREQ_LEN) {
        patch_ifreq(SIOCGIFCONF, rec, ifc);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(name: &[u8], family: i32, tail: &[u8]) -> [u8; IFREQ_LEN] {
        let mut r = [0u8; IFREQ_LEN];
        r[..name.len()].copy_from_slice(name);
        r[16..18].copy_from_slice(&u16::try_from(family).unwrap().to_ne_bytes());
        r[18..18 + tail.len()].copy_from_slice(tail);
        r
    }

    const IFC: Iface<'static> =
        Iface { name: b"eth0", ipv4: Some([127, 0, 0, 9]), mac: Some([2, 0xca, 0x95, 0, 0, 1]) };

    #[test]
    fn only_the_capsule_interface_changes() {
        let mut r = rec(b"eth0", libc::AF_INET, &[0, 0, 10, 0, 0, 5]);
        patch_ifreq(SIOCGIFADDR, &mut r, &IFC);
        assert_eq!(r[20..24], [127, 0, 0, 9]);
        let mut hw = rec(b"eth0", 1, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        patch_ifreq(SIOCGIFHWADDR, &mut hw, &IFC);
        assert_eq!(hw[18..24], [2, 0xca, 0x95, 0, 0, 1]);
        let mut other = rec(b"eth00", libc::AF_INET, &[0, 0, 10, 0, 0, 5]);
        patch_ifreq(SIOCGIFADDR, &mut other, &IFC);
        assert_eq!(other[20..24], [10, 0, 0, 5]);
        let mut buf =
            [rec(b"lo", libc::AF_INET, &[0, 0, 127, 0, 0, 1]), rec(b"eth0", libc::AF_INET, &[0, 0, 10, 0, 0, 5])]
                .concat();
        patch_ifconf(&mut buf, &IFC);
        assert_eq!((buf[20..24].to_vec(), buf[60..64].to_vec()), (vec![127, 0, 0, 1], vec![127, 0, 0, 9]));
    }
}
