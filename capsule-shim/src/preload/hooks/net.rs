//! Network identity (`run --ip --mac`, outside `--netns`): the capsule's address and MAC as
//! interface queries report them, on one interface (`State::iface`, the machine's `eth0` or
//! first non-loopback one): getifaddrs, and the SIOCGIFADDR, SIOCGIFHWADDR and SIOCGIFCONF
//! ioctls. The kernel answers first; its answer is edited in place (no allocation: getifaddrs'
//! list is libc's own).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::ffi::{c_int, c_long, c_ulong, c_void};

use capsule_core::ifreq;

use super::real;
use crate::preload::guard::call_out;
use crate::preload::sys::{self, ret};
use crate::preload::{State, state};

/// Whether the NUL-terminated interface name `name` is the capsule's interface.
fn ours(st: &State, name: &[core::ffi::c_char]) -> bool {
    !st.iface.is_empty()
        && name.iter().take_while(|&&c| c != 0).map(|&c| c.cast_unsigned()).eq(st.iface.iter().copied())
}

/// Put the capsule's address into a `sockaddr` (an AF_INET one only).
///
/// # Safety
/// `sa` is null or points to a sockaddr of its family's size, writable.
unsafe fn patch_inet(st: &State, sa: *mut libc::sockaddr) {
    // SAFETY: non-null checked; the family is the first field of every sockaddr.
    if st.ipv4 == 0 || sa.is_null() || c_int::from(unsafe { (*sa).sa_family }) != libc::AF_INET {
        return;
    }
    // SAFETY: an AF_INET sockaddr is a sockaddr_in (caller).
    unsafe { (*sa.cast::<libc::sockaddr_in>()).sin_addr.s_addr = st.ipv4 };
}

/// getifaddrs(3), with the capsule's address and MAC on its interface.
///
/// # Safety
/// C ABI: `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getifaddrs(out: *mut *mut libc::ifaddrs) -> c_int {
    let Some(real_fn) = real::getifaddrs() else { return -1 };
    // SAFETY: forwarded; libc allocates the list.
    let r = call_out(|| unsafe { real_fn(out) });
    let Some(st) = state().filter(|st| !st.iface.is_empty()) else { return r };
    if r != 0 || out.is_null() {
        return r;
    }
    // SAFETY: on success `*out` is the head of libc's list, valid until freeifaddrs.
    let mut cur = unsafe { *out };
    while !cur.is_null() {
        // SAFETY: a node of the list.
        let ifa = unsafe { &mut *cur };
        // SAFETY: ifa_name is a NUL-terminated name (IFNAMSIZ at most).
        let name = unsafe { core::slice::from_raw_parts(ifa.ifa_name, libc::IFNAMSIZ) };
        if ours(st, name) && !ifa.ifa_addr.is_null() {
            // SAFETY: the family field of a non-null sockaddr.
            let family = c_int::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address of the list.
                unsafe { patch_inet(st, ifa.ifa_addr) };
            } else if family == libc::AF_PACKET
                && let Some(m) = st.mac
            {
                // SAFETY: an AF_PACKET address is a sockaddr_ll.
                let ll = unsafe { &mut *ifa.ifa_addr.cast::<libc::sockaddr_ll>() };
                ll.sll_addr[..6].copy_from_slice(&m);
                ll.sll_halen = 6;
            }
        }
        cur = ifa.ifa_next;
    }
    r
}

/// ioctl(2) (three-argument form, as every caller on x86-64 passes it): the kernel's answer,
/// then SIOCGIFADDR/SIOCGIFHWADDR/SIOCGIFCONF edited for the capsule's interface
/// (`capsule_core::ifreq`, shared with the supervisor).
///
/// # Safety
/// C ABI: `arg` as the request requires.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    #[allow(clippy::cast_possible_wrap)] // the request's bits, as the register holds them
    // SAFETY: forwarded unchanged.
    let r = ret(unsafe { sys::raw(libc::SYS_ioctl, fd.into(), request as c_long, arg as c_long, 0, 0, 0) });
    if r < 0 || arg.is_null() || !ifreq::edited(request) {
        return r;
    }
    let Some(st) = state().filter(|st| !st.iface.is_empty()) else { return r };
    let ifc = ifreq::Iface { name: st.iface, ipv4: (st.ipv4 != 0).then(|| st.ipv4.to_ne_bytes()), mac: st.mac };
    if request == ifreq::SIOCGIFCONF {
        // SAFETY: SIOCGIFCONF's argument is a struct ifconf whose buffer the kernel filled
        // with ifc_len bytes of ifreq records.
        let ifc_arg = unsafe { &mut *arg.cast::<libc::ifconf>() };
        // SAFETY: the union holds ifc_buf for a filled buffer.
        let base = unsafe { ifc_arg.ifc_ifcu.ifcu_buf };
        let len = usize::try_from(ifc_arg.ifc_len).unwrap_or(0);
        if !base.is_null() {
            // SAFETY: the kernel wrote `len` bytes there.
            ifreq::patch_ifconf(unsafe { core::slice::from_raw_parts_mut(base.cast::<u8>(), len) }, &ifc);
        }
    } else {
        // SAFETY: these requests' argument is a struct ifreq, just filled by the kernel.
        let rec = unsafe { core::slice::from_raw_parts_mut(arg.cast::<u8>(), ifreq::IFREQ_LEN) };
        ifreq::patch_ifreq(request, rec, &ifc);
    }
    r
}
