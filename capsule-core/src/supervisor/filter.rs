//! The seccomp filter the launcher installs in the program before exec.
//!
//! Checks the architecture first (anything but x86-64, and the x32 ABI, is let through: capsule
//! virtualises, it does not sandbox), then sends only the path syscalls we virtualise to the
//! supervisor — unless the call carries this run's cookie in its sixth argument register,
//! which the shim's own raw syscalls do (none of these syscalls uses a sixth argument), so a
//! dynamically linked program pays the supervisor's round trip only for calls the preload tier
//! could not see. Everything else is allowed.
//!
//! The filter is built per run ([`Traps`]): `recvmsg` is trapped only for a static program of a
//! run with an address or MAC identity (glibc's getifaddrs reads netlink with it: see
//! `supervisor::netlink`). A dynamic program gets getifaddrs from the shim, and glibc's own
//! `recvmsg` carries no cookie, so trapping it there would cost every receive a round trip; the
//! one case that pays anyway is a dynamic program exec'd by such a static one (the filter is
//! inherited as it was built): each of its `recvmsg` calls is a round trip, `CONTINUE`d unless
//! it reads a route netlink socket.

use libc::sock_filter;

use super::table::{self, When};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
// Offsets in struct seccomp_data.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG5_LO: u32 = 16 + 5 * 8;
const ARG5_HI: u32 = ARG5_LO + 4;

fn stmt(code: u32, k: u32) -> sock_filter {
    // BPF opcodes fit in 16 bits by definition.
    #[allow(clippy::cast_possible_truncation)]
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    #[allow(clippy::cast_possible_truncation)]
    sock_filter { code: code as u16, jt, jf, k }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE_K: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;

/// `fstat` spelled as a path call: glibc's fstat is `newfstatat(fd, "", AT_EMPTY_PATH)` (and
/// statx likewise). With AT_EMPTY_PATH these act on a descriptor, so the filter lets them
/// through without a round trip (syscall, argument index of its flags).
const EMPTY_PATH_FLAGS: &[(i64, u32)] = &[(libc::SYS_newfstatat, 3), (libc::SYS_statx, 2)];

/// What a run traps besides the path calls, mutations and interface ioctls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traps {
    /// Record mode: the execs too ([`When::Record`]).
    pub record: bool,
    /// `recvmsg` ([`When::Netlink`]): the run has an address or MAC identity and its program
    /// is static.
    pub netlink: bool,
    /// `getdents64` and the working directory ([`When::NoShim`]): the program
    /// has no shim (static or Go), so the supervisor merges the listings of the directories
    /// it injected (`listing`), names a cwd inside the tree by its virtual path and answers
    /// `chdir` (`handlers::dir`). A program with the shim lists through its `readdir`, which
    /// merges, and has the shim's `getcwd` and `chdir`; trapping them would only cost it a
    /// round trip each (the shim's `getcwd` is libc's, without the cookie).
    pub listings: bool,
}

impl Traps {
    /// Whether this run traps calls trapped `when`. [`When::ByArgument`] calls are checked
    /// by argument in a block of their own (the interface ioctls).
    pub fn wants(self, when: When) -> bool {
        match when {
            When::Always => true,
            When::ByArgument => false,
            When::Record => self.record,
            When::Netlink => self.netlink,
            When::NoShim => self.listings,
        }
    }
}

/// The program for cookie `cookie` (non-zero).
pub fn program(cookie: u64) -> Vec<sock_filter> {
    program_for(cookie, Traps::default())
}

/// The program for record mode: what every run traps, and the execs.
pub fn recording_program(cookie: u64) -> Vec<sock_filter> {
    program_for(cookie, Traps { record: true, ..Traps::default() })
}

/// The program for cookie `cookie` (non-zero) that also traps what `traps` asks for.
pub fn program_for(cookie: u64, traps: Traps) -> Vec<sock_filter> {
    let trapped: Vec<i64> = table::CALLS.iter().filter(|c| traps.wants(c.when)).map(|c| c.nr).collect();
    build(cookie, &trapped)
}

/// The interface queries trapped (ioctl's second argument): `crate::ifreq` edits their answers.
const IOCTLS: [u64; 3] = [crate::ifreq::SIOCGIFCONF, crate::ifreq::SIOCGIFADDR, crate::ifreq::SIOCGIFHWADDR];

fn build(cookie: u64, trapped: &[i64]) -> Vec<sock_filter> {
    let n = trapped.len();
    let e = EMPTY_PATH_FLAGS.len();
    // Layout: [0] ld arch, [1] jeq x86-64, [2] ld nr, [3] jge x32,
    //         per EMPTY_PATH_FLAGS (4 each): jeq nr, ld flags, jset AT_EMPTY_PATH, ld nr;
    //         ioctl (5): jeq ioctl, ld request, jeq SIOCGIF* (3, the last falls to allow);
    //         [t..t+n] jeq nr_i, [t+n] ret allow, [t+n+1] ld lo, jeq lo, ld hi, jeq hi,
    //         ret allow, ret notify
    let io = 4 + 4 * e;
    let t = io + 2 + IOCTLS.len();
    let allow_at = t + n;
    let check_at = allow_at + 1;
    let mut p = Vec::with_capacity(check_at + 6);
    let off = |from: usize, to: usize| u8::try_from(to - from - 1).unwrap_or(u8::MAX);
    p.push(stmt(LD_W_ABS, ARCH));
    p.push(jump(JEQ_K, AUDIT_ARCH_X86_64, 0, off(1, allow_at)));
    p.push(stmt(LD_W_ABS, NR));
    p.push(jump(JGE_K, X32_SYSCALL_BIT, off(3, allow_at), 0));
    for (i, (nr, arg)) in EMPTY_PATH_FLAGS.iter().enumerate() {
        let at = 4 + 4 * i;
        p.push(jump(JEQ_K, u32::try_from(*nr).unwrap_or(u32::MAX), 0, 3));
        p.push(stmt(LD_W_ABS, 16 + arg * 8));
        #[allow(clippy::cast_sign_loss)] // a flag bit
        p.push(jump(JSET_K, libc::AT_EMPTY_PATH as u32, off(at + 2, allow_at), 0));
        p.push(stmt(LD_W_ABS, NR));
    }
    p.push(jump(JEQ_K, u32::try_from(libc::SYS_ioctl).unwrap_or(u32::MAX), 0, off(io, t)));
    p.push(stmt(LD_W_ABS, 16 + 8));
    for (i, req) in IOCTLS.iter().enumerate() {
        let at = io + 2 + i;
        let miss = if i + 1 == IOCTLS.len() { off(at, allow_at) } else { 0 };
        p.push(jump(JEQ_K, u32::try_from(*req).unwrap_or(u32::MAX), off(at, check_at), miss));
    }
    for (i, nr) in trapped.iter().enumerate() {
        p.push(jump(JEQ_K, u32::try_from(*nr).unwrap_or(u32::MAX), off(t + i, check_at), 0));
    }
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    // Truncations intended: the two 32-bit halves of the cookie.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (cookie as u32, (cookie >> 32) as u32);
    p.push(stmt(LD_W_ABS, ARG5_LO));
    p.push(jump(JEQ_K, lo, 0, 3));
    p.push(stmt(LD_W_ABS, ARG5_HI));
    p.push(jump(JEQ_K, hi, 0, 1));
    p.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    p.push(stmt(RET_K, libc::SECCOMP_RET_USER_NOTIF));
    p
}

/// Interpret `prog` on one `seccomp_data` (nr, arch, args): the tests' model of the kernel.
#[cfg(test)]
pub fn run(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + i * 8..24 + i * 8].copy_from_slice(&a.to_le_bytes());
    }
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let ins = prog[pc];
        let code = u32::from(ins.code);
        match code {
            LD_W_ABS => {
                let k = ins.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                pc += 1;
            }
            JEQ_K => pc += 1 + usize::from(if acc == ins.k { ins.jt } else { ins.jf }),
            JGE_K => pc += 1 + usize::from(if acc >= ins.k { ins.jt } else { ins.jf }),
            JSET_K => pc += 1 + usize::from(if acc & ins.k != 0 { ins.jt } else { ins.jf }),
            RET_K => return ins.k,
            _ => panic!("unexpected opcode {code:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_only_virtualised_calls_without_the_cookie() {
        let cookie = 0x1234_5678_9abc_def0;
        let p = program(cookie);
        let x86 = AUDIT_ARCH_X86_64;
        let nr = |n: i64| u32::try_from(n).unwrap();
        assert_eq!(run(&p, nr(libc::SYS_openat), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, nr(libc::SYS_openat), x86, [0, 0, 0, 0, 0, cookie]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&p, nr(libc::SYS_openat), x86, [0, 0, 0, 0, 0, cookie & 0xffff_ffff]),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(run(&p, nr(libc::SYS_readlink), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, nr(libc::SYS_read), x86, [0; 6]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, nr(libc::SYS_openat) | X32_SYSCALL_BIT, x86, [0; 6]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, nr(libc::SYS_openat), 0x4000_0003, [0; 6]), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn record_mode_also_traps_execs() {
        let nr = |n: i64| u32::try_from(n).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        assert_eq!(run(&program(7), nr(libc::SYS_execve), x86, [0; 6]), libc::SECCOMP_RET_ALLOW);
        let rec = recording_program(7);
        assert_eq!(run(&rec, nr(libc::SYS_execve), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&rec, nr(libc::SYS_openat), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&rec, nr(libc::SYS_read), x86, [0; 6]), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn descriptor_stats_pass_path_stats_trap() {
        let p = program(7);
        let x86 = AUDIT_ARCH_X86_64;
        let nr = |n: i64| u32::try_from(n).unwrap();
        let empty = u64::try_from(libc::AT_EMPTY_PATH).unwrap();
        let nofollow = u64::try_from(libc::AT_SYMLINK_NOFOLLOW).unwrap();
        assert_eq!(run(&p, nr(libc::SYS_newfstatat), x86, [3, 0, 0, empty, 0, 0]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, nr(libc::SYS_newfstatat), x86, [3, 0, 0, nofollow, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, nr(libc::SYS_statx), x86, [3, 0, empty, 0, 0, 0]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, nr(libc::SYS_statx), x86, [3, 0, 0, empty, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        // AT_EMPTY_PATH in another syscall's argument means nothing.
        assert_eq!(run(&p, nr(libc::SYS_openat), x86, [0, 0, 0, empty, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, nr(libc::SYS_stat), x86, [0, 0, 0, 0, 0, 7]), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn interface_queries_trap_other_ioctls_pass() {
        let p = program(7);
        let x86 = AUDIT_ARCH_X86_64;
        let io = u32::try_from(libc::SYS_ioctl).unwrap();
        for req in IOCTLS {
            assert_eq!(run(&p, io, x86, [3, req, 0, 0, 0, 0]), libc::SECCOMP_RET_USER_NOTIF, "{req:#x}");
            assert_eq!(run(&p, io, x86, [3, req, 0, 0, 0, 7]), libc::SECCOMP_RET_ALLOW, "{req:#x} with the cookie");
        }
        assert_eq!(run(&p, io, x86, [1, libc::TCGETS, 0, 0, 0, 0]), libc::SECCOMP_RET_ALLOW);
        // The block does not disturb what follows it.
        assert_eq!(run(&p, u32::try_from(libc::SYS_openat).unwrap(), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, u32::try_from(libc::SYS_write).unwrap(), x86, [0; 6]), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn recvmsg_traps_only_when_enabled() {
        let x86 = AUDIT_ARCH_X86_64;
        let nr = |n: i64| u32::try_from(n).unwrap();
        let off = program(7);
        let on = program_for(7, Traps { netlink: true, ..Traps::default() });
        assert_eq!(run(&off, nr(libc::SYS_recvmsg), x86, [3, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&on, nr(libc::SYS_recvmsg), x86, [3, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&on, nr(libc::SYS_recvmsg), x86, [3, 0, 0, 0, 0, 7]), libc::SECCOMP_RET_ALLOW, "cookie");
        // Other syscalls are as without it, the other receives and the other path calls too.
        for (n, args) in [
            (libc::SYS_recvfrom, [0; 6]),
            (libc::SYS_recvmmsg, [0; 6]),
            (libc::SYS_read, [0; 6]),
            (libc::SYS_sendmsg, [0; 6]),
            (libc::SYS_openat, [0; 6]),
            (libc::SYS_openat, [0, 0, 0, 0, 0, 7]),
            (libc::SYS_execve, [0; 6]),
            (libc::SYS_ioctl, [3, crate::ifreq::SIOCGIFADDR, 0, 0, 0, 0]),
            (libc::SYS_ioctl, [1, libc::TCGETS, 0, 0, 0, 0]),
            (libc::SYS_newfstatat, [3, 0, 0, u64::try_from(libc::AT_EMPTY_PATH).unwrap(), 0, 0]),
        ] {
            assert_eq!(run(&on, nr(n), x86, args), run(&off, nr(n), x86, args), "syscall {n}");
        }
        assert_eq!(run(&on, nr(libc::SYS_recvmsg) | X32_SYSCALL_BIT, x86, [0; 6]), libc::SECCOMP_RET_ALLOW);
        let both = program_for(7, Traps { record: true, netlink: true, listings: false });
        assert_eq!(run(&both, nr(libc::SYS_recvmsg), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&both, nr(libc::SYS_execve), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        let words = |p: Vec<sock_filter>| p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect::<Vec<_>>();
        assert_eq!(words(recording_program(7)), words(program_for(7, Traps { record: true, ..Traps::default() })));
    }

    #[test]
    fn getdents64_traps_only_for_programs_without_the_shim() {
        let x86 = AUDIT_ARCH_X86_64;
        let nr = u32::try_from(libc::SYS_getdents64).unwrap();
        let on = program_for(7, Traps { listings: true, ..Traps::default() });
        assert_eq!(run(&program(7), nr, x86, [3, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(&on, nr, x86, [3, 0, 0, 0, 0, 0]), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&on, u32::try_from(libc::SYS_openat).unwrap(), x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF);
        for n in [libc::SYS_getcwd, libc::SYS_chdir] {
            let n = u32::try_from(n).unwrap();
            assert_eq!(run(&program(7), n, x86, [0; 6]), libc::SECCOMP_RET_ALLOW, "{n}");
            assert_eq!(run(&on, n, x86, [0; 6]), libc::SECCOMP_RET_USER_NOTIF, "{n}");
        }
    }

    /// Every x86-64 system call number, with every combination of what a run traps: the
    /// filter notifies exactly for the table's calls the run wants (ioctl for the interface
    /// queries only), and the supervisor's dispatch knows the family of each.
    #[test]
    fn the_table_is_the_filter() {
        let x86 = AUDIT_ARCH_X86_64;
        for bits in 0..8u8 {
            let traps = Traps { record: bits & 1 != 0, netlink: bits & 2 != 0, listings: bits & 4 != 0 };
            let p = program_for(7, traps);
            for nr in 0..=512i64 {
                let n = u32::try_from(nr).unwrap();
                let call = table::CALLS.iter().find(|c| c.nr == nr);
                let want = call.is_some_and(|c| traps.wants(c.when));
                let args = if nr == libc::SYS_ioctl { [3, crate::ifreq::SIOCGIFADDR, 0, 0, 0, 0] } else { [0; 6] };
                let trapped = run(&p, n, x86, args) == libc::SECCOMP_RET_USER_NOTIF;
                assert_eq!(trapped, want || nr == libc::SYS_ioctl, "nr {nr}, {traps:?}");
                assert_eq!(table::family(nr).is_some(), call.is_some(), "nr {nr}");
            }
        }
        let mut nrs: Vec<i64> = table::CALLS.iter().map(|c| c.nr).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), table::CALLS.len(), "a call is in the table twice");
    }
}
