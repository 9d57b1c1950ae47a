//! The seccomp filters: the one the launcher (or the shim, `CAPSULE_ARM`) installs in the
//! program for tier 2, and the notify-free one every run gets ([`refusals`]).
//!
//! Both check the architecture first: an i386 entry (`int 0x80`) or an x32 call fails with
//! ENOSYS (neither tier sees those numbers); then what every run refuses
//! ([`table::REFUSED`]: io_uring, `open_by_handle_at`, the mount API, ...), whatever the
//! cookie. The tier-2 filter then sends the calls the table traps to the supervisor: the
//! credential changes and changes of metadata always (kernel confinement does not cover
//! those, and the cookie is readable by the program), the path calls unless they carry this
//! run's cookie in their sixth argument register, which the shim's own raw syscalls do (none of
//! these syscalls uses a sixth argument), so a dynamically linked program pays the
//! supervisor's round trip only for calls the preload tier could not see. Everything else is
//! allowed.
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
#[cfg(test)]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
// Offsets in struct seccomp_data.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG5_LO: u32 = 16 + 5 * 8;
const ARG5_HI: u32 = ARG5_LO + 4;

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE_K: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const JGT_K: u32 = libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K;
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
    /// `getdents64`, the working directory and `connect` ([`When::NoShim`]): the program
    /// has no shim (static or Go), so the supervisor merges the listings of the directories
    /// it injected (`listing`), names a cwd inside the tree by its virtual path, answers
    /// `chdir` (`handlers::dir`) and places a unix socket's path (`net::connect`). A program with the shim lists through its `readdir`, which
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
    let wanted = || table::CALLS.iter().filter(move |c| traps.wants(c.when));
    let always: Vec<i64> = wanted().filter(|c| !c.cookie).map(|c| c.nr).collect();
    let trapped: Vec<i64> = wanted().filter(|c| c.cookie).map(|c| c.nr).collect();
    build(cookie, &always, &trapped)
}

/// The filter of a run without tier 2 (installed by the shim, `CAPSULE_ARM`, or before exec):
/// the architecture check, [`table::REFUSED`], and the calls of [`table::CALLS`] no cookie lets past — the changes of
/// metadata (modes, owners, times, xattrs), which kernel confinement (Landlock) does not
/// cover, and the credential changes — sent to a supervisor that serves only those; every
/// other call allowed, at no cost. Built at compile time: the front end writes it as it is.
pub static GUARD: [sock_filter; GUARD_LEN] = guard_program();

/// How many calls [`GUARD`] sends to the supervisor.
const GUARDED: usize = guarded_count();

/// Instructions of [`GUARD`]: the architecture check (4), a block per truncating open
/// ([`TRUNC_BLOCK`]), the lookup of the refused and guarded numbers ([`LOOKUP`] compares and
/// one range test per [`BUCKET`]), then allow, notify, ENOSYS, EPERM.
pub const GUARD_LEN: usize = 4 + TRUNC_BLOCK * table::TRUNCATING_OPENS.len() + LOOKUP + BUCKETS + 4;

/// Instructions of a truncating open's block ([`table::TRUNCATING_OPENS`]): the number, its
/// flags loaded, `O_TRUNC` tested, then the access mode (bits 0 and 1: 1 and 2 ask for
/// writing, which Landlock checks; 0 and 3 do not).
const TRUNC_BLOCK: usize = 6;

/// The numbers [`GUARD`] looks up: every refusal and every guarded call.
const LOOKUP: usize = table::REFUSED.len() + GUARDED;

/// Numbers per bucket of the guard's lookup: sorted, in buckets that each start with one test
/// of the bucket's largest number, so a number is compared with at most [`BUCKETS`] bounds and
/// one bucket's numbers (~17 instructions, not ~70). The kernel runs the filter once per
/// system call number when it is installed, to cache what is always allowed
/// (`seccomp_cache_prepare`, ~1 µs per instruction on the way of a number), at every start.
const BUCKET: usize = 8;
const BUCKETS: usize = LOOKUP.div_ceil(BUCKET);

const fn guarded_count() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < table::CALLS.len() {
        if !table::CALLS[i].cookie && matches!(table::CALLS[i].when, When::Always) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// What the guard does with a number it looks up.
#[derive(Clone, Copy)]
enum Guarded {
    Notify,
    Enosys,
    Eperm,
}

/// The numbers [`GUARD`] looks up, sorted, with what it does with each.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // system call numbers
const fn lookup() -> [(u32, Guarded); LOOKUP] {
    let mut out = [(0u32, Guarded::Notify); LOOKUP];
    let mut k = 0;
    let mut i = 0;
    while i < table::REFUSED.len() {
        let r = table::REFUSED[i];
        out[k] = match r.errno {
            libc::ENOSYS => (r.nr as u32, Guarded::Enosys),
            libc::EPERM => (r.nr as u32, Guarded::Eperm),
            _ => panic!("GUARD answers ENOSYS or EPERM only"),
        };
        k += 1;
        i += 1;
    }
    let mut c = 0;
    while c < table::CALLS.len() {
        let call = table::CALLS[c];
        if !call.cookie && matches!(call.when, When::Always) {
            out[k] = (call.nr as u32, Guarded::Notify);
            k += 1;
        }
        c += 1;
    }
    // Insertion sort: a few dozen numbers, at compile time.
    let mut i = 1;
    while i < LOOKUP {
        let mut j = i;
        while j > 0 && out[j - 1].0 > out[j].0 {
            let t = out[j - 1];
            out[j - 1] = out[j];
            out[j] = t;
            j -= 1;
        }
        i += 1;
    }
    out
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // opcodes, small numbers and offsets
const fn guard_program() -> [sock_filter; GUARD_LEN] {
    const fn ins(code: u32, jt: usize, jf: usize, k: u32) -> sock_filter {
        sock_filter { code: code as u16, jt: jt as u8, jf: jf as u8, k }
    }
    let last = GUARD_LEN - 4;
    let (allow, notify, enosys, eperm) = (last, last + 1, last + 2, last + 3);
    let mut p = [ins(0, 0, 0, 0); GUARD_LEN];
    p[0] = ins(LD_W_ABS, 0, 0, ARCH);
    p[1] = ins(JEQ_K, 0, enosys - 2, AUDIT_ARCH_X86_64);
    p[2] = ins(LD_W_ABS, 0, 0, NR);
    p[3] = ins(JGE_K, enosys - 4, 0, X32_SYSCALL_BIT);
    let t = TRUNC_BLOCK * table::TRUNCATING_OPENS.len();
    let mut b = 0;
    while b < table::TRUNCATING_OPENS.len() {
        // Only a truncating open is the supervisor's; any other open is allowed at once.
        let (nr, arg) = table::TRUNCATING_OPENS[b];
        let at = 4 + TRUNC_BLOCK * b;
        p[at] = ins(JEQ_K, 0, TRUNC_BLOCK - 1, nr as u32);
        p[at + 1] = ins(LD_W_ABS, 0, 0, 16 + arg * 8);
        p[at + 2] = ins(JSET_K, 0, allow - (at + 2) - 1, libc::O_TRUNC as u32);
        p[at + 3] = ins(JSET_K, 0, 1, 1);
        p[at + 4] = ins(JSET_K, notify - (at + 4) - 1, allow - (at + 4) - 1, 2);
        p[at + 5] = ins(JSET_K, allow - (at + 5) - 1, notify - (at + 5) - 1, 2);
        b += 1;
    }
    // The lookup: per bucket, "above its largest number: the next bucket" (the last: allow),
    // then its numbers; a number of none of them is allowed.
    let table = lookup();
    let mut at = 4 + t;
    let mut lo = 0;
    while lo < LOOKUP {
        let hi = if lo + BUCKET < LOOKUP { lo + BUCKET } else { LOOKUP };
        let above = if hi == LOOKUP { allow - at - 1 } else { hi - lo };
        p[at] = ins(JGT_K, above, 0, table[hi - 1].0);
        at += 1;
        let mut j = lo;
        while j < hi {
            let to = match table[j].1 {
                Guarded::Notify => notify,
                Guarded::Enosys => enosys,
                Guarded::Eperm => eperm,
            };
            let miss = if j + 1 == hi { allow - at - 1 } else { 0 };
            p[at] = ins(JEQ_K, to - at - 1, miss, table[j].0);
            at += 1;
            j += 1;
        }
        lo = hi;
    }
    p[allow] = ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW);
    p[notify] = ins(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF);
    p[enosys] = ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    p[eperm] = ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
    p
}

/// The interface queries trapped (ioctl's second argument): `crate::ifreq` edits their answers.
const IOCTLS: [u64; 3] = [crate::ifreq::SIOCGIFCONF, crate::ifreq::SIOCGIFADDR, crate::ifreq::SIOCGIFHWADDR];

/// A jump target of [`Asm`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum L {
    Next,
    /// Past this many instructions.
    Skip(u8),
    Allow,
    Check,
    Notify,
    Errno(i32),
}

/// A small assembler: instructions with symbolic targets, resolved by [`Asm::finish`].
#[derive(Default)]
struct Asm {
    ins: Vec<(u32, L, L, u32)>,
}

impl Asm {
    fn stmt(&mut self, code: u32, k: u32) {
        self.ins.push((code, L::Next, L::Next, k));
    }

    fn jump(&mut self, code: u32, k: u32, jt: L, jf: L) {
        self.ins.push((code, jt, jf, k));
    }

    /// `if nr == n goto to`.
    fn on(&mut self, n: i64, to: L) {
        self.jump(JEQ_K, u32::try_from(n).unwrap_or(u32::MAX), to, L::Next);
    }

    /// Append the targets' instructions and resolve every jump. Programs are far below the
    /// 256 instructions a jump can span (a test checks the largest).
    fn finish(mut self, cookie: u64) -> Vec<sock_filter> {
        let mut at: Vec<(L, usize)> = vec![(L::Allow, self.ins.len())];
        self.stmt(RET_K, libc::SECCOMP_RET_ALLOW);
        {
            // Truncations intended: the two 32-bit halves of the cookie.
            #[allow(clippy::cast_possible_truncation)]
            let (lo, hi) = (cookie as u32, (cookie >> 32) as u32);
            at.push((L::Check, self.ins.len()));
            self.stmt(LD_W_ABS, ARG5_LO);
            self.jump(JEQ_K, lo, L::Next, L::Notify);
            self.stmt(LD_W_ABS, ARG5_HI);
            self.jump(JEQ_K, hi, L::Next, L::Skip(1));
            self.stmt(RET_K, libc::SECCOMP_RET_ALLOW);
            at.push((L::Notify, self.ins.len()));
            self.stmt(RET_K, libc::SECCOMP_RET_USER_NOTIF);
        }
        let mut errnos: Vec<i32> = self
            .ins
            .iter()
            .flat_map(|i| [i.1, i.2])
            .filter_map(|l| match l {
                L::Errno(e) => Some(e),
                _ => None,
            })
            .collect();
        errnos.sort_unstable();
        errnos.dedup();
        for e in errnos {
            at.push((L::Errno(e), self.ins.len()));
            #[allow(clippy::cast_sign_loss)] // a positive errno
            self.stmt(RET_K, libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA));
        }
        let target = |from: usize, l: L| -> u8 {
            match l {
                L::Next => return 0,
                L::Skip(n) => return n,
                _ => {}
            }
            let to = at.iter().find(|(t, _)| *t == l).map_or(from + 1, |(_, i)| *i);
            u8::try_from(to - from - 1).unwrap_or(u8::MAX)
        };
        self.ins
            .iter()
            .enumerate()
            .map(|(i, &(code, jt, jf, k))| {
                // BPF opcodes fit in 16 bits by definition.
                #[allow(clippy::cast_possible_truncation)]
                let code = code as u16;
                sock_filter { code, jt: target(i, jt), jf: target(i, jf), k }
            })
            .collect()
    }
}

/// The architecture check, the refusals, then (with a cookie) the calls `always` sent to the
/// supervisor and the calls `trapped` sent unless they carry the cookie.
fn build(cookie: u64, always: &[i64], trapped: &[i64]) -> Vec<sock_filter> {
    let mut a = Asm::default();
    let enosys = L::Errno(libc::ENOSYS);
    a.stmt(LD_W_ABS, ARCH);
    a.jump(JEQ_K, AUDIT_ARCH_X86_64, L::Next, enosys);
    a.stmt(LD_W_ABS, NR);
    a.jump(JGE_K, X32_SYSCALL_BIT, enosys, L::Next);
    for r in table::REFUSED {
        a.on(r.nr, L::Errno(r.errno));
    }
    for (nr, arg) in table::TRUNCATING_OPENS {
        // A truncating open goes to the supervisor, whatever the cookie; any other goes on to
        // the cookie's check below. Other calls skip the block.
        a.jump(JEQ_K, u32::try_from(*nr).unwrap_or(u32::MAX), L::Next, L::Skip(6));
        a.stmt(LD_W_ABS, 16 + arg * 8);
        #[allow(clippy::cast_sign_loss)] // a flag bit
        a.jump(JSET_K, libc::O_TRUNC as u32, L::Next, L::Skip(3));
        a.jump(JSET_K, 1, L::Next, L::Skip(1));
        a.jump(JSET_K, 2, L::Notify, L::Skip(1));
        a.jump(JSET_K, 2, L::Next, L::Notify);
        a.stmt(LD_W_ABS, NR);
    }
    for nr in always {
        a.on(*nr, L::Notify);
    }
    for (nr, arg) in EMPTY_PATH_FLAGS {
        // This call with AT_EMPTY_PATH acts on a descriptor: allowed. Other calls skip the block.
        a.jump(JEQ_K, u32::try_from(*nr).unwrap_or(u32::MAX), L::Next, L::Skip(3));
        a.stmt(LD_W_ABS, 16 + arg * 8);
        #[allow(clippy::cast_sign_loss)] // a flag bit
        a.jump(JSET_K, libc::AT_EMPTY_PATH as u32, L::Allow, L::Next);
        a.stmt(LD_W_ABS, NR);
    }
    // ioctl: the interface queries go to the supervisor, other requests are allowed.
    let n = u8::try_from(IOCTLS.len()).unwrap_or(u8::MAX);
    a.jump(JEQ_K, u32::try_from(libc::SYS_ioctl).unwrap_or(u32::MAX), L::Next, L::Skip(1 + n));
    a.stmt(LD_W_ABS, 16 + 8);
    for (i, req) in IOCTLS.iter().enumerate() {
        let miss = if i + 1 == IOCTLS.len() { L::Allow } else { L::Next };
        a.jump(JEQ_K, u32::try_from(*req).unwrap_or(u32::MAX), L::Check, miss);
    }
    for nr in trapped {
        a.on(*nr, L::Check);
    }
    a.finish(cookie)
}
/// Interpret `prog` on one `seccomp_data` (nr, arch, args): the tests' model of the kernel.
#[cfg(test)]
pub fn run(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    run_counted(prog, nr, arch, args).0
}

/// [`run`], and how many instructions it took.
#[cfg(test)]
fn run_counted(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + i * 8..24 + i * 8].copy_from_slice(&a.to_le_bytes());
    }
    let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
    loop {
        let ins = prog[pc];
        let code = u32::from(ins.code);
        steps += 1;
        match code {
            LD_W_ABS => {
                let k = ins.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                pc += 1;
            }
            JEQ_K => pc += 1 + usize::from(if acc == ins.k { ins.jt } else { ins.jf }),
            JGE_K => pc += 1 + usize::from(if acc >= ins.k { ins.jt } else { ins.jf }),
            JSET_K => pc += 1 + usize::from(if acc & ins.k != 0 { ins.jt } else { ins.jf }),
            JGT_K => pc += 1 + usize::from(if acc > ins.k { ins.jt } else { ins.jf }),
            RET_K => return (ins.k, steps),
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
        let enosys = libc::SECCOMP_RET_ERRNO | 38;
        assert_eq!(run(&p, nr(libc::SYS_openat) | X32_SYSCALL_BIT, x86, [0; 6]), enosys);
        assert_eq!(run(&p, nr(libc::SYS_openat), AUDIT_ARCH_I386, [0; 6]), enosys);
        assert_eq!(run(&p, 5, AUDIT_ARCH_I386, [0, 0, 0, 0, 0, cookie]), enosys, "i386 open, with the cookie");
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
        assert_eq!(run(&on, nr(libc::SYS_recvmsg) | X32_SYSCALL_BIT, x86, [0; 6]), libc::SECCOMP_RET_ERRNO | 38);
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

    /// What the kernel answers `nr` (x86-64, no argument but `args`) under the tier-2 filter
    /// for `traps`, from the table alone.
    fn expected(traps: Traps, nr: i64, args: [u64; 6]) -> u32 {
        if let Some(e) = table::refused(nr) {
            return libc::SECCOMP_RET_ERRNO | u32::try_from(e).unwrap();
        }
        let with_cookie = args[5] == 7;
        match table::CALLS.iter().find(|c| c.nr == nr) {
            Some(c) if c.when == When::ByArgument => {
                if with_cookie {
                    libc::SECCOMP_RET_ALLOW
                } else {
                    libc::SECCOMP_RET_USER_NOTIF
                }
            }
            Some(c) if traps.wants(c.when) && (!c.cookie || !with_cookie) => libc::SECCOMP_RET_USER_NOTIF,
            _ => libc::SECCOMP_RET_ALLOW,
        }
    }

    /// Every x86-64 system call number, with every combination of what a run traps, with and
    /// without the cookie: the filter refuses exactly the table's refusals, notifies exactly
    /// for the table's calls the run wants (ioctl for the interface queries only), the cookie
    /// letting past only the calls the table says; the supervisor's dispatch knows the family
    /// of each; every i386 and x32 number fails with ENOSYS.
    #[test]
    fn the_table_is_the_filter() {
        let x86 = AUDIT_ARCH_X86_64;
        for bits in 0..8u8 {
            let traps = Traps { record: bits & 1 != 0, netlink: bits & 2 != 0, listings: bits & 4 != 0 };
            let p = program_for(7, traps);
            assert!(p.len() < 256, "{} instructions: a jump cannot span them", p.len());
            for nr in 0..=1024i64 {
                let n = u32::try_from(nr).unwrap();
                let call = table::CALLS.iter().find(|c| c.nr == nr);
                for cookie in [0, 7] {
                    let mut args =
                        if nr == libc::SYS_ioctl { [3, crate::ifreq::SIOCGIFADDR, 0, 0, 0, 0] } else { [0; 6] };
                    args[5] = cookie;
                    assert_eq!(run(&p, n, x86, args), expected(traps, nr, args), "nr {nr}, cookie {cookie}, {traps:?}");
                    let enosys = libc::SECCOMP_RET_ERRNO | 38;
                    assert_eq!(run(&p, n | X32_SYSCALL_BIT, x86, args), enosys, "x32 {nr}");
                    assert_eq!(run(&p, n, AUDIT_ARCH_I386, args), enosys, "i386 {nr}");
                }
                assert_eq!(table::family(nr).is_some(), call.is_some(), "nr {nr}");
                assert!(!(call.is_some() && table::refused(nr).is_some()), "nr {nr} is trapped and refused");
            }
        }
        let mut nrs: Vec<i64> = table::CALLS.iter().map(|c| c.nr).chain(table::REFUSED.iter().map(|r| r.nr)).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), table::CALLS.len() + table::REFUSED.len(), "a call is in the table twice");
    }

    /// The guard, for every number: the refusals, the architecture check, the calls no cookie
    /// lets past sent to the supervisor, and nothing else.
    #[test]
    fn the_guard_for_every_number() {
        let enosys = libc::SECCOMP_RET_ERRNO | 38;
        for nr in 0..=1024i64 {
            let n = u32::try_from(nr).unwrap();
            let guarded = table::CALLS.iter().any(|c| c.nr == nr && !c.cookie && c.when == When::Always);
            let want = match table::refused(nr) {
                Some(e) => libc::SECCOMP_RET_ERRNO | u32::try_from(e).unwrap(),
                None if guarded => libc::SECCOMP_RET_USER_NOTIF,
                None => libc::SECCOMP_RET_ALLOW,
            };
            assert_eq!(run(&GUARD, n, AUDIT_ARCH_X86_64, [0; 6]), want, "nr {nr}");
            assert_eq!(run(&GUARD, n, AUDIT_ARCH_I386, [0; 6]), enosys, "i386 {nr}");
            assert_eq!(run(&GUARD, n | X32_SYSCALL_BIT, AUDIT_ARCH_X86_64, [0; 6]), enosys, "x32 {nr}");
        }
        let eperm = libc::SECCOMP_RET_ERRNO | 1;
        let nr = |n: i64| u32::try_from(n).unwrap();
        // The kernel runs the guard for every number when it is installed (at every start):
        // the lookup is in sorted buckets, so no number takes the whole list's way.
        let longest = (0..=1024).map(|n| run_counted(&GUARD, n, AUDIT_ARCH_X86_64, [0; 6]).1).max().unwrap();
        assert!(longest <= 6 + 2 + BUCKETS + BUCKET, "{longest} instructions for some number");
        const { assert!(LOOKUP > 3 * BUCKET, "the lookup is long enough to be bucketed") };
        assert_eq!(run(&GUARD, nr(libc::SYS_io_uring_setup), AUDIT_ARCH_X86_64, [0; 6]), enosys);
        assert_eq!(run(&GUARD, nr(libc::SYS_open_by_handle_at), AUDIT_ARCH_X86_64, [0; 6]), eperm);
    }

    /// An open that truncates without asking for write access (`O_RDONLY|O_TRUNC`, or access
    /// mode 3) goes to the supervisor on every run, the cookie or not: Landlock sees it as a
    /// read. Other opens are as before: allowed by the guard, the cookie's under tier 2.
    #[test]
    fn truncating_opens_reach_the_supervisor_whatever_the_cookie() {
        let x86 = AUDIT_ARCH_X86_64;
        let (notify, allow) = (libc::SECCOMP_RET_USER_NOTIF, libc::SECCOMP_RET_ALLOW);
        let t = u64::try_from(libc::O_TRUNC).unwrap();
        let tier2 = program(7);
        for (nr, arg) in table::TRUNCATING_OPENS {
            let n = u32::try_from(*nr).unwrap();
            let with = |flags: u64, cookie: u64| {
                let mut a = [0u64; 6];
                a[*arg as usize] = flags;
                a[5] = cookie;
                a
            };
            for mode in [0, 1, 2, 3] {
                for extra in [0, u64::try_from(libc::O_CREAT | libc::O_CLOEXEC).unwrap()] {
                    let flags = mode | t | extra;
                    let unasked = table::truncates_unasked(flags);
                    assert_eq!(unasked, mode == 0 || mode == 3, "{flags:#o}");
                    let guard = if unasked { notify } else { allow };
                    assert_eq!(run(&GUARD, n, x86, with(flags, 0)), guard, "guard, nr {nr}, {flags:#o}");
                    assert_eq!(run(&tier2, n, x86, with(flags, 0)), notify, "tier 2, nr {nr}, {flags:#o}");
                    assert_eq!(run(&tier2, n, x86, with(flags, 7)), guard, "tier 2 + cookie, nr {nr}, {flags:#o}");
                    // Without O_TRUNC: as any open.
                    assert_eq!(run(&GUARD, n, x86, with(mode | extra, 0)), allow, "guard, nr {nr}, {mode}");
                    assert_eq!(run(&tier2, n, x86, with(mode | extra, 7)), allow, "cookie, nr {nr}, {mode}");
                }
            }
        }
        let two = u32::try_from(libc::SYS_openat2).unwrap();
        assert_eq!(run(&GUARD, two, x86, [0; 6]), notify);
        assert_eq!(run(&tier2, two, x86, [0, 0, 0, 0, 0, 7]), notify, "openat2 with the cookie");
    }

    /// Every x86-64 system call that takes a path (its number, as the kernel's syscall table
    /// of Linux 6.18 has it): each is emulated by tier 2 on every run, refused on every run, or
    /// left to the kernel for a reason the table states. None by omission.
    #[test]
    fn every_path_call_is_decided() {
        const PATH_CALLS: &[(i64, &str)] = &[
            (2, "open"),
            (4, "stat"),
            (6, "lstat"),
            (21, "access"),
            (59, "execve"),
            (76, "truncate"),
            (80, "chdir"),
            (82, "rename"),
            (83, "mkdir"),
            (84, "rmdir"),
            (85, "creat"),
            (86, "link"),
            (87, "unlink"),
            (88, "symlink"),
            (89, "readlink"),
            (90, "chmod"),
            (92, "chown"),
            (94, "lchown"),
            (132, "utime"),
            (133, "mknod"),
            (134, "uselib"),
            (137, "statfs"),
            (155, "pivot_root"),
            (161, "chroot"),
            (163, "acct"),
            (165, "mount"),
            (166, "umount2"),
            (167, "swapon"),
            (168, "swapoff"),
            (179, "quotactl"),
            (188, "setxattr"),
            (189, "lsetxattr"),
            (191, "getxattr"),
            (192, "lgetxattr"),
            (194, "listxattr"),
            (195, "llistxattr"),
            (197, "removexattr"),
            (198, "lremovexattr"),
            (235, "utimes"),
            (254, "inotify_add_watch"),
            (257, "openat"),
            (258, "mkdirat"),
            (259, "mknodat"),
            (260, "fchownat"),
            (261, "futimesat"),
            (262, "newfstatat"),
            (263, "unlinkat"),
            (264, "renameat"),
            (265, "linkat"),
            (266, "symlinkat"),
            (267, "readlinkat"),
            (268, "fchmodat"),
            (269, "faccessat"),
            (280, "utimensat"),
            (301, "fanotify_mark"),
            (303, "name_to_handle_at"),
            (304, "open_by_handle_at"),
            (316, "renameat2"),
            (322, "execveat"),
            (332, "statx"),
            (428, "open_tree"),
            (429, "move_mount"),
            (431, "fsconfig"),
            (433, "fspick"),
            (437, "openat2"),
            (439, "faccessat2"),
            (442, "mount_setattr"),
            (452, "fchmodat2"),
            (463, "setxattrat"),
            (464, "getxattrat"),
            (465, "listxattrat"),
            (466, "removexattrat"),
            (467, "open_tree_attr"),
            (468, "file_getattr"),
            (469, "file_setattr"),
        ];
        // A change of metadata by descriptor, which kernel confinement does not cover either.
        const BY_DESCRIPTOR: &[(i64, &str)] =
            &[(91, "fchmod"), (93, "fchown"), (190, "fsetxattr"), (199, "fremovexattr")];
        for (nr, name) in PATH_CALLS.iter().chain(BY_DESCRIPTOR) {
            let emulated = table::CALLS.iter().any(|c| c.nr == *nr && c.when == When::Always);
            let refused = table::refused(*nr).is_some();
            let kernel = table::KERNEL.iter().any(|(n, why)| n == nr && !why.is_empty());
            assert!(
                [emulated, refused, kernel].iter().filter(|b| **b).count() == 1,
                "{name} ({nr}): emulated {emulated}, refused {refused}, left to the kernel {kernel}"
            );
        }
        // Metadata changes are never let past by the cookie.
        for name in [
            "chmod",
            "fchmodat",
            "fchmodat2",
            "chown",
            "lchown",
            "fchownat",
            "utimensat",
            "utime",
            "utimes",
            "futimesat",
            "setxattr",
            "lsetxattr",
            "removexattr",
            "lremovexattr",
            "fchmod",
            "fchown",
            "fsetxattr",
            "fremovexattr",
        ] {
            let (nr, _) = PATH_CALLS.iter().chain(BY_DESCRIPTOR).find(|(_, n)| *n == name).unwrap();
            assert!(table::CALLS.iter().any(|c| c.nr == *nr && !c.cookie), "{name}");
        }
    }
}
