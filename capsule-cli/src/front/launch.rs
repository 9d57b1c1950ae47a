//! Starting a run from its plan: find the plan, check every input it lists, then bind the
//! materialiser's socket, fork the program and become `capsule-cli run-attached`. Returns
//! (to the full command) whenever anything does not match or fails before the fork.

use capsule_core::plan::{self, Input, Sig, tag};

use crate::Proc;
use crate::sys::{self, sys1, sys2, sys3, sys4};

/// A byte buffer filled front to back (no allocation: a fixed array).
struct Buf<const N: usize> {
    b: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    fn new() -> Self {
        Buf { b: [0; N], len: 0 }
    }
    /// Append; false when it does not fit.
    fn push(&mut self, s: &[u8]) -> bool {
        let Some(dst) = self.b.get_mut(self.len..self.len + s.len()) else { return false };
        dst.copy_from_slice(s);
        self.len += s.len();
        true
    }
    fn push_num(&mut self, mut v: u64, radix: u64) -> bool {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            if let Some(slot) = tmp.get_mut(i) {
                *slot = b"0123456789abcdef".get((v % radix) as usize).copied().unwrap_or(b'0');
            }
            v /= radix;
            if v == 0 || i == 0 {
                break;
            }
        }
        self.push(tmp.get(i..).unwrap_or_default())
    }
    fn bytes(&self) -> &[u8] {
        self.b.get(..self.len).unwrap_or_default()
    }
}

/// Arguments a plan may put before the command line's: a chain of scripts' interpreters
/// (two per level, `capsule_core::exec::MAX_DEPTH` levels) and the capsule loader's options.
const MAX_PRE: usize = 16;

/// What the plan says, once checked.
struct Checked<'a> {
    program: &'a [u8],
    argv0: &'a [u8],
    /// Arguments before the command line's (`tag::ARG`), NUL-terminated.
    pre: [&'a [u8]; MAX_PRE],
    n_pre: usize,
    args_from: usize,
    env: [&'a [u8]; 64],
    n_env: usize,
    view: &'a [u8],
    tree: &'a [u8],
    library_path: &'a [u8],
    digest: &'a [u8],
    sandbox: &'a [u8],
    launcher: &'a [u8],
    /// Landlock grants (`tag::LANDLOCK` payloads).
    grants: [&'a [u8]; plan::MAX_GRANTS],
    n_grants: usize,
}

/// Start the run from its plan, or return.
pub fn from_plan(p: &Proc<'_>) {
    let args = p.argv.get(1..).unwrap_or_default();
    let Some(root) = plan::shape(args, |k| p.env(k)) else { return };
    let mut cwd = [0u8; 4096];
    let n = sys2(sys::GETCWD, cwd.as_mut_ptr() as usize, cwd.len());
    // getcwd(2) returns the length with the NUL.
    let Some(cwd) = usize::try_from(n).ok().and_then(|n| cwd.get(..n.checked_sub(1)?)) else { return };
    let shim = p.env(b"CAPSULE_SHIM");
    let mut h = plan::FNV_START;
    plan::key_parts(cwd, args, shim, |part| h = plan::fnv1a(h, part));
    let mut path = Buf::<4200>::new();
    let store_ok = path.push(root.base) && path.push(root.suffix);
    let store_len = path.len;
    if !(store_ok && path.push(b"/plans/") && path.push(&plan::file_name(h)) && path.push(b"\0")) {
        return;
    }
    let Some(bytes) = map(path.bytes()) else { return };
    let Some(c) = check(bytes, cwd, args, shim) else { return };
    let mut store = Buf::<4200>::new();
    if !(store.push(path.bytes().get(..store_len).unwrap_or_default()) && store.push(b"\0")) {
        return;
    }
    start(p, &c, store.bytes(), h);
}

/// Map the plan file at `path` (NUL-terminated) read-only; it stays mapped for the process.
fn map(path: &[u8]) -> Option<&'static [u8]> {
    let fd = sys4(sys::OPENAT, sys::AT_FDCWD, path.as_ptr() as usize, sys::O_RDONLY | sys::O_CLOEXEC, 0);
    let fd = usize::try_from(fd).ok()?;
    let mut st = sys::Stat::default();
    let ok = sys2(sys::FSTAT, fd, (&raw mut st) as usize) == 0;
    let size = usize::try_from(st.size).ok().filter(|&s| ok && s > 0 && s <= plan::MAX_SIZE);
    let addr = size.map(|s| sys::call(sys::MMAP, [0, s, 1 /* PROT_READ */, 2 /* MAP_PRIVATE */, fd, 0]));
    sys1(sys::CLOSE, fd);
    let (size, addr) = (size?, usize::try_from(addr?).ok()?);
    // SAFETY: a private read-only mapping of `size` bytes at `addr`, never unmapped.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, size) })
}

/// Check the plan's key and inputs; what it says, if every one matches.
fn check<'a>(bytes: &'a [u8], cwd: &[u8], args: &[&[u8]], shim: Option<&[u8]>) -> Option<Checked<'a>> {
    let mut recs = plan::records(bytes)?;
    let (t, key) = recs.next()?;
    if t != tag::KEY || !same_key(key, cwd, args, shim) {
        return None;
    }
    let mut c = Checked {
        program: &[],
        argv0: &[],
        pre: [&[]; MAX_PRE],
        n_pre: 0,
        args_from: 0,
        env: [&[]; 64],
        n_env: 0,
        view: &[],
        tree: &[],
        library_path: &[],
        digest: &[],
        sandbox: &[],
        launcher: &[],
        grants: [&[]; plan::MAX_GRANTS],
        n_grants: 0,
    };
    for (t, payload) in recs.by_ref() {
        let s = || plan::c_str(payload);
        match t {
            tag::FILE | tag::DIR => match plan::input(t, payload)?? {
                Input::File { path, nofollow, want } => {
                    if sys::stat(path, nofollow).map(|st| sig(&st)) != want {
                        return None;
                    }
                }
                Input::Dir { path, was_dir } => {
                    let is_dir = sys::stat(path, false).is_some_and(|st| st.mode & 0o170_000 == 0o040_000);
                    if is_dir != was_dir {
                        return None;
                    }
                }
            },
            tag::PROGRAM => c.program = s()?,
            tag::ARGV0 => c.argv0 = s()?,
            tag::ARG => {
                s()?;
                *c.pre.get_mut(c.n_pre)? = payload;
                c.n_pre += 1;
            }
            tag::ARGS_FROM => c.args_from = u32::from_le_bytes(*payload.first_chunk::<4>()?) as usize,
            tag::ENV => {
                s()?;
                *c.env.get_mut(c.n_env)? = payload;
                c.n_env += 1;
            }
            tag::VIEW => c.view = s()?,
            tag::TREE => c.tree = s()?,
            tag::LIBRARY_PATH => c.library_path = s()?,
            tag::DIGEST => c.digest = s()?,
            tag::SANDBOX => c.sandbox = s()?,
            tag::LAUNCHER => c.launcher = s()?,
            tag::LANDLOCK => {
                capsule_core::confine::record(payload)?;
                *c.grants.get_mut(c.n_grants)? = payload;
                c.n_grants += 1;
            }
            _ => return None,
        }
    }
    let complete = !recs.bad() && (1..=args.len() + 1).contains(&c.args_from);
    let set = [c.program, c.argv0, c.view, c.tree, c.digest, c.sandbox, c.launcher].iter().all(|s| !s.is_empty());
    (complete && set).then_some(c)
}

fn sig(st: &sys::Stat) -> Sig {
    Sig::new(st.ino, st.size as u64, (st.mtime, st.mtime_ns), (st.ctime, st.ctime_ns), st.mode)
}

/// Whether `key` is exactly this run's key.
fn same_key(key: &[u8], cwd: &[u8], args: &[&[u8]], shim: Option<&[u8]>) -> bool {
    let mut rest = key;
    let mut same = true;
    plan::key_parts(cwd, args, shim, |part| match rest.strip_prefix(part) {
        Some(r) if same => rest = r,
        _ => same = false,
    });
    same && rest.is_empty()
}

/// Signals `capsule run` forwards, and SIGCHLD: blocked from before the fork until
/// `run-attached` has its handlers (then the ones that came are delivered).
const HELD: u64 = bit(1 /* SIGHUP */)
    | bit(2 /* SIGINT */)
    | bit(10 /* SIGUSR1 */)
    | bit(12 /* SIGUSR2 */)
    | bit(15 /* SIGTERM */)
    | bit(17 /* SIGCHLD */);

/// Signal `sig`'s bit in a kernel signal mask.
const fn bit(sig: u32) -> u64 {
    1 << (sig - 1)
}

/// Start the program and become the launcher. Returns only if nothing was started.
fn start(p: &Proc<'_>, c: &Checked<'_>, store: &[u8], hash: u64) {
    let view_fd = inherit(c.view, sys::O_RDONLY);
    let tree_fd = inherit(c.tree, sys::O_PATH | sys::O_DIRECTORY);
    let pid = sys1(sys::GETPID, 0);
    let mut ts = [0i64; 2];
    sys2(sys::CLOCK_GETTIME, 0, ts.as_mut_ptr() as usize);
    let mut name = Buf::<64>::new();
    name.push(b"capsule-");
    name.push_num(pid as u64, 10);
    name.push(b"-");
    name.push_num(ts[1] as u64, 16);
    let listener = listen(name.bytes());
    // The program's environment: ours, less what the plan sets, then the plan's.
    let mut extra = Buf::<16384>::new();
    let mut starts = [0usize; 8];
    let mut n_extra = 0;
    let mut add = |parts: &[&[u8]], extra: &mut Buf<16384>| {
        let at = extra.len;
        let ok = parts.iter().all(|s| extra.push(s)) && extra.push(b"\0");
        // A variable with no slot left would be dropped: that is a failure too.
        let slot = starts.get_mut(n_extra);
        let fits = slot.is_some();
        if ok && let Some(slot) = slot {
            *slot = at;
            n_extra += 1;
        }
        ok && fits
    };
    let mut ok = add(&[b"CAPSULE_SOCKET=", name.bytes()], &mut extra);
    // Which plan started the program (its file under STORE/plans): for whoever debugs a run.
    let file = plan::file_name(hash);
    ok &= add(&[b"CAPSULE_PLAN=", file.get(..16).unwrap_or_default()], &mut extra);
    // The guard (supervisor::filter::GUARD), armed by the program's shim after the loader:
    // it reads the filter from its end and sends the listener back on ours, which
    // `run-attached` serves.
    let guard = guard();
    if let Some((_, theirs)) = guard {
        let (mut a, mut b) = (Buf::<24>::new(), Buf::<24>::new());
        a.push_num(theirs as u64, 10);
        b.push_num(pid as u64, 10);
        ok &= add(&[b"CAPSULE_ARM=", a.bytes(), b":", b.bytes()], &mut extra);
    }
    let (guard_ours, guard_theirs) = (guard.map(|g| g.0), guard.map(|g| g.1));
    if let (Some(v), Some(t)) = (view_fd, tree_fd) {
        let (mut a, mut b) = (Buf::<24>::new(), Buf::<24>::new());
        a.push_num(v as u64, 10);
        b.push_num(t as u64, 10);
        ok &= add(&[b"CAPSULE_VIEW_FD=", a.bytes()], &mut extra);
        ok &= add(&[b"CAPSULE_TREE_FD=", b.bytes()], &mut extra);
    }
    if !c.library_path.is_empty() {
        ok &= match p.env(b"LD_LIBRARY_PATH") {
            Some(old) => add(&[b"LD_LIBRARY_PATH=", c.library_path, b":", old], &mut extra),
            None => add(&[b"LD_LIBRARY_PATH=", c.library_path], &mut extra),
        };
    }
    let Some(listener) = listener.filter(|_| ok && guard.is_some()) else {
        close_all(&[view_fd, tree_fd, listener, guard_ours, guard_theirs]);
        return;
    };
    let mut envp = [core::ptr::null::<u8>(); 1024];
    let mut n = 0;
    let mut put = |ptr: *const u8, n: &mut usize| {
        let slot = envp.get_mut(*n);
        let fits = slot.is_some();
        if let Some(s) = slot {
            *s = ptr;
            *n += 1;
        }
        fits
    };
    let ours = |e: &[u8]| {
        let name = e.split(|&b| b == b'=').next().unwrap_or_default();
        let set_by_plan =
            c.env.iter().take(c.n_env).any(|pe| pe.starts_with(name) && pe.get(name.len()) == Some(&b'='));
        let set_here = starts.iter().take(n_extra).any(|&at| {
            let s = extra.b.get(at..).unwrap_or_default();
            s.starts_with(name) && s.get(name.len()) == Some(&b'=')
        });
        set_by_plan || set_here
    };
    let mut fits = true;
    let mut e = p.envp;
    loop {
        // SAFETY: the kernel's NULL-terminated envp; stops at the NULL.
        let s = unsafe { *e };
        if s.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated string alive for the process.
        if !ours(unsafe { crate::cstr(s) }) {
            fits &= put(s, &mut n);
        }
        // SAFETY: not at the NULL yet.
        e = unsafe { e.add(1) };
    }
    for pe in c.env.iter().take(c.n_env) {
        fits &= put(pe.as_ptr(), &mut n);
    }
    for &at in starts.iter().take(n_extra) {
        fits &= put(extra.b.get(at..).unwrap_or_default().as_ptr(), &mut n);
    }
    // The program's argv: the plan's argv[0] and arguments, then ours from ARGS_FROM.
    let mut argv = [core::ptr::null::<u8>(); crate::MAX_ARGS + MAX_PRE + 1];
    let mut na = 0;
    for s in core::iter::once(&c.argv0).chain(c.pre.iter().take(c.n_pre)) {
        if let Some(slot) = argv.get_mut(na) {
            *slot = s.as_ptr();
            na += 1;
        }
    }
    for i in c.args_from..p.argv.len() {
        // SAFETY: i < argc.
        let a = unsafe { *p.argv_raw.add(i) };
        if let Some(s) = argv.get_mut(na) {
            *s = a;
            na += 1;
        }
    }
    // The program's confinement: the ruleset made here, its grants added by the child (in
    // parallel with our exec of `run-attached`: a run as root expands `/dev` into a rule per
    // node, ~300 system calls), entered just before exec. A kernel without Landlock leaves the
    // run to the full launcher, which says so or refuses; a grant the kernel refuses stops
    // the start ([`capsule_core::run::attach::CONFINE_FAILED`]).
    let ruleset = if c.n_grants == 0 { None } else { ruleset(p, c) };
    if c.n_grants > 0 && ruleset.is_none() {
        close_all(&[view_fd, tree_fd, Some(listener), guard_ours, guard_theirs]);
        return;
    }
    let mut pipe = [0i32; 2];
    if !fits || n >= envp.len() || sys2(sys::PIPE2, pipe.as_mut_ptr() as usize, sys::O_CLOEXEC) != 0 {
        close_all(&[view_fd, tree_fd, Some(listener), ruleset.map(|r| r.fd), guard_ours, guard_theirs]);
        return;
    }
    let [status_r, status_w] = pipe.map(|f| f as usize);
    let mut old_mask = 0u64;
    let held = HELD;
    sys4(sys::RT_SIGPROCMASK, 0 /* SIG_BLOCK */, (&raw const held) as usize, (&raw mut old_mask) as usize, 8);
    // The run's lifetime (capsule_core::run::lifetime): orphans come to us, and the program
    // dies with us.
    sys2(sys::PRCTL, PR_SET_CHILD_SUBREAPER, 1);
    let child = sys1(sys::FORK, 0);
    if child == 0 {
        sys1(sys::CLOSE, listener);
        sys1(sys::CLOSE, status_r);
        // The program's side of the launch, as the full launcher's (capsule_core::launch):
        // starts with the mask we were given, dies with us, confined (a run with `--user` has no
        // plan: the user is the full launcher's step).
        let child = capsule_core::launch::Child {
            launcher: pid as usize,
            mask: Some(old_mask),
            creds: None,
            ruleset: ruleset.map(|r| r.fd),
            read_only_system: c.n_grants > 0,
            tree_fd,
        };
        let granted = ruleset.map_or(Ok(()), |r| grant(c, r));
        let errno = match granted {
            Err((e, path)) => {
                // The errno, then the grant's path (up to its first NUL: an expanded
                // directory's own), for `run-attached` to name.
                let mut msg = Buf::<4100>::new();
                msg.push(&(capsule_core::run::attach::CONFINE_FAILED | (-e) as i32).to_ne_bytes());
                msg.push(path.split(|&b| b == 0).next().unwrap_or_default());
                sys3(sys::WRITE, status_w, msg.bytes().as_ptr() as usize, msg.len);
                sys::exit(127);
            }
            Ok(()) => {
                let err = match capsule_core::launch::child(sys::call, &child) {
                    Err(e) => e,
                    Ok(()) => {
                        sys3(sys::EXECVE, c.program.as_ptr() as usize, argv.as_ptr() as usize, envp.as_ptr() as usize)
                    }
                };
                (-err) as i32
            }
        };
        sys3(sys::WRITE, status_w, (&raw const errno) as usize, 4);
        sys::exit(127);
    }
    sys1(sys::CLOSE, status_w);
    close_all(&[view_fd, tree_fd, ruleset.map(|r| r.fd), guard_theirs]);
    let Some(guard) = guard_ours.filter(|_| child >= 0) else {
        sys4(sys::RT_SIGPROCMASK, 2, (&raw const old_mask) as usize, 0, 8);
        close_all(&[Some(listener), Some(status_r), guard_ours]);
        return;
    };
    attach(p, c, store, Attach { child: child as u64, listener, status: status_r, mask: old_mask, guard });
}

/// The plan's Landlock ruleset, made but without its grants ([`grant`] adds them), or None
/// when the kernel cannot make it (`CAPSULE_DEBUG_LANDLOCK=off` pretends so, for tests).
#[derive(Clone, Copy)]
struct Ruleset {
    fd: usize,
    /// What it handles.
    handled: u64,
}

fn ruleset(p: &Proc<'_>, c: &Checked<'_>) -> Option<Ruleset> {
    use capsule_core::confine;
    if p.env(b"CAPSULE_DEBUG_LANDLOCK").is_some() {
        return None;
    }
    let abi = confine::abi(sys::call);
    // The first record's rights are the ruleset's mask (an empty path).
    let (mask, _) = c.grants.first().and_then(|g| confine::record(g)).filter(|(_, p)| *p == b"\0")?;
    let fd = confine::ruleset(sys::call, abi, mask).ok().filter(|_| abi > 0)?;
    Some(Ruleset { fd, handled: confine::handled(abi) & mask })
}

/// Add the plan's grants to `r` (in the forked child): `Err((-errno, path))` of the first
/// the kernel refuses, or of a record that is not one.
fn grant<'a>(c: &Checked<'a>, r: Ruleset) -> Result<(), (isize, &'a [u8])> {
    use capsule_core::confine;
    for g in c.grants.iter().take(c.n_grants).skip(1) {
        let (rights, path) = confine::record(g).ok_or((-22isize, &b""[..]))?;
        confine::apply(sys::call, r.fd, r.handled, path, rights).map_err(|e| (e, path))?;
    }
    Ok(())
}

const PR_SET_CHILD_SUBREAPER: usize = 36;

/// The guard's socket pair: our end (close-on-exec until `attach` hands it on) and the
/// program's (≥ 1000, inherited), with [`capsule_core::supervisor::filter::GUARD`] written
/// into it as the shim reads a filter (`CAPSULE_ARM`): a little-endian u32 count, then each
/// instruction's code (u16), jt, jf and k (u32).
fn guard() -> Option<(usize, usize)> {
    use capsule_core::supervisor::filter::{GUARD, GUARD_LEN};
    let mut msg = Buf::<{ 4 + GUARD_LEN * 8 }>::new();
    let mut ok = msg.push(&(GUARD_LEN as u32).to_le_bytes());
    for i in &GUARD {
        ok &= msg.push(&i.code.to_le_bytes()) && msg.push(&[i.jt, i.jf]) && msg.push(&i.k.to_le_bytes());
    }
    let mut fds = [0i32; 2];
    // AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC.
    if !ok || sys4(sys::SOCKETPAIR, 1, 1 | sys::O_CLOEXEC, 0, fds.as_mut_ptr() as usize) != 0 {
        return None;
    }
    let [ours, theirs] = fds.map(|f| f as usize);
    let sent = sys3(sys::WRITE, ours, msg.bytes().as_ptr() as usize, msg.len) == msg.len as isize;
    let high = sys3(sys::FCNTL, theirs, sys::F_DUPFD, 1000);
    sys1(sys::CLOSE, theirs);
    match usize::try_from(high) {
        Ok(high) if sent => Some((ours, high)),
        Ok(high) => {
            close_all(&[Some(ours), Some(high)]);
            None
        }
        Err(_) => {
            sys1(sys::CLOSE, ours);
            None
        }
    }
}

/// What `run-attached` is told.
struct Attach {
    child: u64,
    listener: usize,
    status: usize,
    mask: u64,
    /// Our end of the guard's socket.
    guard: usize,
}

/// Become `capsule-cli run-attached`; if that cannot start, wait for the program here.
fn attach(p: &Proc<'_>, c: &Checked<'_>, store: &[u8], a: Attach) -> ! {
    sys3(sys::FCNTL, a.listener, sys::F_SETFD, 0);
    sys3(sys::FCNTL, a.status, sys::F_SETFD, 0);
    sys3(sys::FCNTL, a.guard, sys::F_SETFD, 0);
    let mut nums = Buf::<128>::new();
    let mut at = [0usize; 5];
    for (i, (v, radix)) in
        [(a.child, 10), (a.listener as u64, 10), (a.status as u64, 10), (a.mask, 16), (a.guard as u64, 10)]
            .into_iter()
            .enumerate()
    {
        if let Some(slot) = at.get_mut(i) {
            *slot = nums.len;
        }
        nums.push_num(v, radix);
        nums.push(b"\0");
    }
    let num = |i: usize| nums.b.get(at.get(i).copied().unwrap_or(0)..).unwrap_or_default().as_ptr();
    let full: [*const u8; 23] = [
        c"capsule".as_ptr().cast(),
        c"--store".as_ptr().cast(),
        store.as_ptr(),
        c"run-attached".as_ptr().cast(),
        c"--pid".as_ptr().cast(),
        num(0),
        c"--listen-fd".as_ptr().cast(),
        num(1),
        c"--status-fd".as_ptr().cast(),
        num(2),
        c"--mask".as_ptr().cast(),
        num(3),
        c"--digest".as_ptr().cast(),
        c.digest.as_ptr(),
        c"--sandbox".as_ptr().cast(),
        c.sandbox.as_ptr(),
        c"--entry".as_ptr().cast(),
        c.argv0.as_ptr(),
        c"--guard-fd".as_ptr().cast(),
        num(4),
        c"--view".as_ptr().cast(),
        c.view.as_ptr(),
        core::ptr::null(),
    ];
    sys3(sys::EXECVE, c.launcher.as_ptr() as usize, full.as_ptr() as usize, p.envp as usize);
    sys::eprint(b"capsule: error: cannot execute the launcher named in the run's plan; the program runs unserved\n");
    sys4(sys::RT_SIGPROCMASK, 2, (&raw const a.mask) as usize, 0, 8);
    let mut status = 0i32;
    loop {
        let r = sys4(sys::WAIT4, a.child as usize, (&raw mut status) as usize, 0, 0);
        if r == a.child as isize {
            break;
        }
        if r != -4 {
            sys::exit(125);
        }
    }
    let code = if status & 0x7f == 0 { (status >> 8) & 0xff } else { 128 + (status & 0x7f) };
    sys::exit(code)
}

/// Open `path` (NUL-terminated) and move it to a descriptor ≥ 1000 the program inherits.
fn inherit(path: &[u8], flags: usize) -> Option<usize> {
    let fd =
        usize::try_from(sys4(sys::OPENAT, sys::AT_FDCWD, path.as_ptr() as usize, flags | sys::O_CLOEXEC, 0)).ok()?;
    let high = sys3(sys::FCNTL, fd, sys::F_DUPFD, 1000);
    sys1(sys::CLOSE, fd);
    usize::try_from(high).ok()
}

/// A listening abstract unix socket named `name`.
fn listen(name: &[u8]) -> Option<usize> {
    const SOCK_STREAM: usize = 1;
    let fd = usize::try_from(sys3(sys::SOCKET, 1 /* AF_UNIX */, SOCK_STREAM | sys::O_CLOEXEC, 0)).ok()?;
    let mut addr = [0u8; 110];
    if let Some(family) = addr.get_mut(..2) {
        family.copy_from_slice(&1u16.to_ne_bytes());
    }
    // sun_path[0] = 0: abstract; the name follows.
    let Some(dst) = addr.get_mut(3..3 + name.len()) else {
        sys1(sys::CLOSE, fd);
        return None;
    };
    dst.copy_from_slice(name);
    let len = 3 + name.len();
    if sys3(sys::BIND, fd, addr.as_ptr() as usize, len) != 0 || sys2(sys::LISTEN, fd, 4096) != 0 {
        sys1(sys::CLOSE, fd);
        return None;
    }
    Some(fd)
}

fn close_all(fds: &[Option<usize>]) {
    for fd in fds.iter().flatten() {
        sys1(sys::CLOSE, *fd);
    }
}
