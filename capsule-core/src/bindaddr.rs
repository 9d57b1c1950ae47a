//! Where a capsule's `bind` lands, for both tiers (the shim's hook and the supervisor's
//! handler): dependency-free, allocation-free, panic-free, on the raw bytes of a socket
//! address.
//!
//! With a capsule address (`--ip A`):
//! - `0.0.0.0` and `127.0.0.1` (and their IPv4-mapped forms) become `A`: two copies of one
//!   server share a port;
//! - `::1` is *parked* (below): the capsule has no IPv6 address of its own, and a server that
//!   listens on both loopbacks (Debian's exim4: `127.0.0.1 ; ::1`) must start, while two
//!   copies of it must not collide on `[::1]:PORT` (it failed with EADDRNOTAVAIL, which exim
//!   retries and then gives up on);
//! - `::` on a dual-stack socket becomes `::ffff:A`: it serves `A` over IPv4, as the wildcard
//!   would have;
//! - `::` on an IPv6-only socket (nginx's default `listen [::]:80`, next to its `listen 80`) is
//!   parked too: bound to `::1` on a port the kernel picks, so the program starts and the socket
//!   works, but no second copy of the server collides with it and nothing is served on the
//!   host's IPv6 addresses in the capsule's name.
//!
//! Other addresses are the program's own business.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

/// Length of a `sockaddr_in`.
pub const IN_LEN: usize = 16;
/// Length of a `sockaddr_in6`.
pub const IN6_LEN: usize = 28;
const LOOPBACK6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Rewrite the socket address `sa` (its first `len` bytes are the caller's) in place for a
/// capsule whose IPv4 address is `ip` (octets). `v6only` is asked only for an IPv6 wildcard.
/// `Ok(true)`: bind `sa` instead; `Ok(false)`: bind the caller's address unchanged; `Err`:
/// fail the bind with that errno.
pub fn rewrite(sa: &mut [u8; IN6_LEN], len: usize, ip: [u8; 4], v6only: impl FnOnce() -> bool) -> Result<bool, i32> {
    let family = i32::from(u16::from_ne_bytes([sa[0], sa[1]]));
    let wildcard_or_loopback = |a: &[u8]| a == [0, 0, 0, 0] || a == [127, 0, 0, 1];
    if family == libc::AF_INET && len >= IN_LEN {
        let Some(addr) = sa.get_mut(4..8) else { return Ok(false) };
        if !wildcard_or_loopback(addr) {
            return Ok(false);
        }
        addr.copy_from_slice(&ip);
        return Ok(true);
    }
    if family != libc::AF_INET6 || len < IN6_LEN {
        return Ok(false);
    }
    let Some(addr) = sa.get_mut(8..24) else { return Ok(false) };
    let mapped = addr.get(..12) == Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff][..]);
    if *addr == LOOPBACK6 {
        if let Some(port) = sa.get_mut(2..4) {
            port.copy_from_slice(&[0, 0]);
        }
        return Ok(true);
    }
    if mapped && addr.get(12..).is_some_and(wildcard_or_loopback) {
        if let Some(a) = addr.get_mut(12..) {
            a.copy_from_slice(&ip);
        }
        return Ok(true);
    }
    if *addr != [0; 16] {
        return Ok(false);
    }
    if v6only() {
        addr.copy_from_slice(&LOOPBACK6);
        if let Some(port) = sa.get_mut(2..4) {
            port.copy_from_slice(&[0, 0]);
        }
    } else {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&ip);
        addr.copy_from_slice(&m);
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> [u8; IN6_LEN] {
        let mut sa = [0u8; IN6_LEN];
        sa[..2].copy_from_slice(&(libc::sa_family_t::try_from(libc::AF_INET).unwrap()).to_ne_bytes());
        sa[2..4].copy_from_slice(&port.to_be_bytes());
        sa[4..8].copy_from_slice(&a);
        sa
    }

    fn v6(a: [u8; 16], port: u16) -> [u8; IN6_LEN] {
        let mut sa = [0u8; IN6_LEN];
        sa[..2].copy_from_slice(&(libc::sa_family_t::try_from(libc::AF_INET6).unwrap()).to_ne_bytes());
        sa[2..4].copy_from_slice(&port.to_be_bytes());
        sa[8..24].copy_from_slice(&a);
        sa
    }

    const IP: [u8; 4] = [127, 0, 0, 4];

    #[test]
    fn ipv4_wildcard_and_loopback_land_on_the_capsule_address() {
        for a in [[0, 0, 0, 0], [127, 0, 0, 1]] {
            let mut sa = v4(a, 80);
            assert_eq!(rewrite(&mut sa, IN_LEN, IP, || unreachable!()), Ok(true));
            assert_eq!(sa, v4(IP, 80));
        }
        let mut sa = v4([10, 0, 0, 1], 80);
        assert_eq!(rewrite(&mut sa, IN_LEN, IP, || unreachable!()), Ok(false));
        // Too short to be a sockaddr_in: the kernel's business.
        assert_eq!(rewrite(&mut v4([0; 4], 80), 8, IP, || unreachable!()), Ok(false));
    }

    #[test]
    fn ipv6_wildcard_serves_the_capsule_address_or_is_parked() {
        let mut sa = v6([0; 16], 80);
        assert_eq!(rewrite(&mut sa, IN6_LEN, IP, || false), Ok(true));
        assert_eq!(sa, v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 4], 80));
        let mut sa = v6([0; 16], 80);
        assert_eq!(rewrite(&mut sa, IN6_LEN, IP, || true), Ok(true));
        assert_eq!(sa, v6(LOOPBACK6, 0));
        let mut sa = v6(LOOPBACK6, 80);
        assert_eq!(rewrite(&mut sa, IN6_LEN, IP, || unreachable!()), Ok(true), "::1 parked");
        assert_eq!(sa, v6(LOOPBACK6, 0));
        let mut sa = v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0], 80);
        assert_eq!(rewrite(&mut sa, IN6_LEN, IP, || unreachable!()), Ok(true));
        assert_eq!(sa, v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 4], 80));
        let mut other = [0u8; 16];
        other[0] = 0xfd;
        assert_eq!(rewrite(&mut v6(other, 80), IN6_LEN, IP, || unreachable!()), Ok(false));
    }
}
