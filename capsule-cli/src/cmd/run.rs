//! `run NAME [--entry PATH] [--isolation RULE]... [--seccomp MODE] [--stats] [-- ARGS...]`:
//! the launcher.
//!
//! Resolves the capsule through its ref (no index, no store lock), prepares the sandbox and
//! the view, and starts the program once (one exec) with `LD_PRELOAD` = the shim and
//! `CAPSULE_VIEW` = the view; with tier 2 on, the program installs the seccomp filter just
//! before exec and sends its listener back, and `CAPSULE_COOKIE` lets the shim's own calls
//! past it. The launcher stays as the parent, serving the materialiser (and the supervisor)
//! on one thread, and returns the program's exit status (128 + signal if killed);
//! 125 when capsule itself failed, 126 when the entry is not executable, 127 when there is no
//! such entry, 2 when no program was named and the capsule has no default (its programs are
//! listed).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use capsule_core::run::{self, Prepared, Server};
use capsule_core::store::Store;
use capsule_core::supervisor::{self, Supervisor, auto};

use super::{any_ref, capsule_ref};
use crate::cli::Output;
use crate::cli::args::{Run, RunAttached, Seccomp};

/// Exit code: capsule itself failed.
const FAILED: u8 = 125;
/// Exit code: the entry is not executable.
const NOT_EXECUTABLE: u8 = 126;
/// Exit code: no such entry.
const NOT_FOUND: u8 = 127;
/// Exit code: no program named and no default (the programs are listed), as for a usage error.
const NO_DEFAULT: u8 = 2;

/// `run`.
pub fn run(store: &Store, _out: Output, r: Run) -> Result<ExitCode> {
    match launch(store, &r) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("capsule: error: {e:#}");
            Ok(ExitCode::from(FAILED))
        }
    }
}

/// The shim next to the capsule binary (a build tree keeps it in deps/), or `$CAPSULE_SHIM`.
pub(crate) fn find_shim() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAPSULE_SHIM") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("cannot find the capsule executable")?;
    let dir = exe.parent().map(Path::to_owned).unwrap_or_default();
    for cand in [
        dir.join("libcapsule_shim.so"),
        dir.join("deps/libcapsule_shim.so"),
        dir.join("../lib/capsule/libcapsule_shim.so"),
    ] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!(
        "libcapsule_shim.so not found next to {} (build it: cargo build -p capsule-shim), or set CAPSULE_SHIM",
        exe.display()
    )
}

fn launch(store: &Store, r: &Run) -> Result<ExitCode> {
    if r.user.is_some() && !run::user::is_root() {
        eprintln!("capsule: error: --user needs root: only root may start a program as another user");
        return Ok(ExitCode::from(FAILED));
    }
    // A version by digest is resolved once, to its full digest: the plan records the manifest
    // blob as what the reference names, and the run's sandbox is that version's own.
    let cref = any_ref(&r.name)?;
    let cref = store.resolve(&cref).with_context(|| format!("cannot run capsule {cref}"))?;
    let rules = r.isolation.iter().map(|s| run::parse_isolation(s)).collect::<Result<Vec<_>, _>>()?;
    let ident = capsule_core::manifest::Identity {
        hostname: r.hostname.clone(),
        domain: r.domain.clone(),
        machine_id: r.machine_id.clone(),
        // In a network namespace the address is real: no bind rewriting, no host check.
        ipv4: if r.netns { None } else { r.ip },
        mac: r.mac.as_deref().map(run::identity::parse_mac).transpose()?,
        ..Default::default()
    };
    let netns = match (r.netns, r.ip, &r.netns_peer) {
        (false, _, _) | (true, None, _) => None,
        (true, Some(ip), Some(p)) if !run::userns::needed() => Some(NetnsMode::Root(ip, run::netns::parse_peer(p)?)),
        (true, Some(_), None) if !run::userns::needed() => {
            anyhow::bail!("--netns as root needs --netns-peer [NETNS:]ADDR/PREFIX (where the veth's other end goes)")
        }
        (true, Some(ip), None) => Some(NetnsMode::Rootless(ip)),
        (true, Some(_), Some(_)) => anyhow::bail!(
            "--netns-peer needs root (a veth end outside the capsule's namespace); without root, --netns \
             gives the capsule a namespace of its own that only its own processes reach"
        ),
    };
    if let Some(s) = &r.sandbox {
        sandbox_name_ok(s)?;
    }
    let with = r.with.iter().map(|w| capsule_ref(w)).collect::<Result<Vec<_>>>()?;
    let run_opts = run::RunOptions { rules, ident, with };
    let sandbox_name = r.sandbox.clone().unwrap_or_else(|| cref.sandbox_name());
    let before = run::planner::Before::take(store, &cref, &sandbox_name);
    let prepared = run::prepare(store, &cref, &run_opts, r.sandbox.as_deref())
        .with_context(|| format!("cannot prepare capsule {cref}"))?;
    let Some(chosen) = choose(&prepared.manifest, r.entry.as_deref(), &r.args) else {
        list_programs(&cref, &prepared.manifest, r.args.first());
        return Ok(ExitCode::from(NO_DEFAULT));
    };
    let entry = chosen.entry;
    let args_owned: Vec<String>;
    let mut args = &r.args[chosen.skip..];
    if !chosen.args.is_empty() {
        args_owned = chosen.args.iter().chain(args).cloned().collect();
        args = &args_owned;
    }
    // `--user`: resolved in the files the program will read (root only: checked above).
    let user = match &r.user {
        None => None,
        Some(spec) => {
            Some(run::user::resolve(store, prepared.sandbox.tree(), &prepared.manifest, &cref.to_string(), spec)?)
        }
    };
    let loader = run::exec::loader(store, &prepared).context("cannot read the capsule's loader")?;
    let Some(program) = run::exec::program(store, &prepared, &entry, loader)? else {
        eprintln!("capsule: error: {entry} is not a program in capsule {cref} or on the host");
        return Ok(ExitCode::from(NOT_FOUND));
    };
    // Pre-flight of the program about to start, on this (the full launcher's) path only: a plan
    // is written only after a run that started. What it needs that neither the capsule nor
    // the host has is said as `capsule check` says it, instead of the loader's error.
    let t0 = std::time::Instant::now();
    let missing = super::check::program_missing(store, &prepared, &entry);
    tracing::debug!(elapsed_us = t0.elapsed().as_micros(), missing = missing.len(), "pre-flight of {entry}");
    if !missing.is_empty() {
        for n in &missing {
            eprintln!("capsule: error: {n}");
        }
        eprintln!(
            "capsule: error: {entry} of capsule {cref} cannot start on this host (`capsule check {cref}` lists all \
             the capsule lacks)"
        );
        return Ok(ExitCode::from(NOT_FOUND));
    }
    let plan = PlanFor::this_run(store, args).map(|(key, args_from)| PlanFor {
        before,
        cref,
        sandbox_name,
        sandbox: r.sandbox.clone(),
        run_opts,
        key,
        args_from,
    });
    let opts = Start {
        seccomp: r.seccomp,
        stats: r.stats,
        no_cookie: r.no_cookie,
        unconfined: r.unconfined,
        record: None,
        netns,
        // A run started from a plan has the default stop timeout (`run-attached`).
        plan: plan.filter(|_| r.stop_timeout == 10),
        loader,
        stop_timeout: std::time::Duration::from_secs(u64::from(r.stop_timeout)),
        user,
    };
    start(store, &prepared, &program, args, opts)
}

/// What a run starts ([`choose`]).
struct Chosen {
    /// The program: a virtual path (or a host program's path).
    entry: String,
    /// The entry point's own arguments, before the command line's.
    args: Vec<String>,
    /// How many words of the command line named the program.
    skip: usize,
}

/// The program of `run NAME [--entry E] [WORD ARGS...]`, docker-style: `--entry` (a path, or
/// an entry point's name); else WORD when it names a program of the capsule (an entry point
/// by name or path, a program in one of the capsule's PATH directories, or the absolute path
/// of one of its programs), which then takes the arguments after it; else the capsule's
/// default entry point with every argument. `None`: none of these (the caller lists the
/// programs), never a guess.
fn choose(m: &capsule_core::manifest::Manifest, entry: Option<&str>, args: &[String]) -> Option<Chosen> {
    use capsule_core::capture::programs::{PATH_DIRS, is_program};
    use capsule_core::manifest::RelPath;
    let of = |ep: &capsule_core::manifest::EntryPoint, skip| Chosen {
        entry: ep.path.display(),
        args: ep.args.clone(),
        skip,
    };
    if let Some(e) = entry {
        return Some(match m.entry_point(e).filter(|_| !e.contains('/')) {
            Some(ep) => of(ep, 0),
            None => Chosen { entry: e.to_owned(), args: Vec::new(), skip: 0 },
        });
    }
    if let Some(word) = args.first() {
        if let Some(ep) = m.entry_point(word) {
            return Some(of(ep, 1));
        }
        let program = |p: String| RelPath::new(p.into_bytes()).ok().filter(|p| is_program(m, p));
        let found = match word.strip_prefix('/') {
            Some(abs) => program(abs.to_owned()),
            None if !word.is_empty() && !word.contains('/') => {
                PATH_DIRS.iter().find_map(|d| program(format!("{d}/{word}")))
            }
            None => None,
        };
        if let Some(p) = found {
            return Some(Chosen { entry: p.display(), args: Vec::new(), skip: 1 });
        }
    }
    m.default_entry_point().map(|ep| of(ep, 0))
}

/// No program named and no default: say so, and list the capsule's programs (stderr).
fn list_programs(cref: &capsule_core::store::CapsuleRef, m: &capsule_core::manifest::Manifest, word: Option<&String>) {
    let why = match word {
        Some(w) => format!("{w:?} is not a program of capsule {cref}, and it has no default program"),
        None => format!("capsule {cref} has no default program"),
    };
    if m.entry_points.is_empty() {
        eprintln!("capsule: error: {why} and no entry points; run one with --entry PATH");
        return;
    }
    eprintln!("capsule: error: {why}; name one: capsule run {} PROGRAM [ARGS...]", cref.name);
    eprintln!("programs:");
    let width = m.entry_points.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &m.entry_points {
        let args = if e.args.is_empty() { String::new() } else { format!(" {}", e.args.join(" ")) };
        eprintln!("  {:width$}  {}{args}", e.name, e.path);
    }
}

/// How to start a prepared program.
#[derive(Clone)]
pub struct Start {
    /// `--seccomp`.
    pub seccomp: Seccomp,
    /// `--stats`.
    pub stats: bool,
    /// `--no-cookie`.
    pub no_cookie: bool,
    /// `--unconfined`: no Landlock.
    pub unconfined: bool,
    /// Record mode (`capture trace`): every path the program names goes here; implies tier 2
    /// without the cookie, so the shim's own calls are seen too.
    pub record: Option<supervisor::Recorder>,
    /// `--netns`.
    pub netns: Option<NetnsMode>,
    /// Write a launch plan for this command line, if the run qualifies.
    pub plan: Option<PlanFor>,
    /// The capsule's own loader, for the shim to start the capsule's programs with
    /// (`run::exec::loader`).
    pub loader: Option<run::exec::Loader>,
    /// `--stop-timeout`.
    pub stop_timeout: std::time::Duration,
    /// `--user`: the program starts as this user (`run::user`).
    pub user: Option<run::user::User>,
}

/// What a launch plan needs besides the prepared run (capsule_core::plan).
#[derive(Clone)]
pub struct PlanFor {
    before: run::planner::Before,
    cref: capsule_core::store::CapsuleRef,
    sandbox_name: String,
    /// `--sandbox` and the run's options, to prepare once more when the inputs moved.
    sandbox: Option<String>,
    run_opts: run::RunOptions,
    key: (Vec<u8>, u64),
    args_from: u32,
}

impl PlanFor {
    /// This process's key and where the program's arguments (`args`, the last of ours)
    /// start, if its command line is one the front end reads (`plan::shape`) and names
    /// `store`.
    fn this_run(store: &Store, args: &[String]) -> Option<((Vec<u8>, u64), u32)> {
        use capsule_core::plan;
        use std::os::unix::ffi::OsStrExt;
        let argv: Vec<OsString> = std::env::args_os().collect();
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let lookup = |k: &[u8]| vars.iter().find(|(n, _)| n.as_bytes() == k).map(|(_, v)| v.as_bytes());
        let root = plan::shape(argv.get(1..)?, lookup)?;
        let root = PathBuf::from(std::ffi::OsStr::from_bytes(&[root.base, root.suffix].concat()));
        if std::path::absolute(&root).ok()? != store.root() {
            return None;
        }
        let from = argv.len().checked_sub(args.len())?;
        let tail = argv.get(from..)?;
        if !tail.iter().zip(args).all(|(a, b)| *a == b.as_bytes()) || from < 3 {
            return None;
        }
        let cwd = std::env::current_dir().ok()?;
        let mut key = Vec::new();
        let shim = lookup(b"CAPSULE_SHIM");
        plan::key_parts(cwd.as_os_str().as_bytes(), argv.get(1..)?, shim, |p| key.extend_from_slice(p));
        let hash = plan::fnv1a(plan::FNV_START, &key);
        Some(((key, hash), u32::try_from(from).ok()?))
    }
}

/// How `--netns` is made.
#[derive(Clone)]
pub enum NetnsMode {
    /// As root: a named namespace and a veth pair to a peer (`run::netns`).
    Root(std::net::Ipv4Addr, run::netns::Peer),
    /// Without root: user, network and UTS namespaces of the program's own (`run::userns`).
    Rootless(std::net::Ipv4Addr),
}

/// The materialiser's listening socket: bound now, or (rootless `--netns`) made by the child
/// inside its namespace and handed back over this stream.
enum Listening {
    Now(Box<Server>),
    FromChild(
        std::os::unix::net::UnixStream,
        Box<dyn FnOnce(std::os::unix::net::UnixListener) -> Result<Server> + Send>,
    ),
}

impl Listening {
    fn server(self) -> Result<Server> {
        match self {
            Listening::Now(s) => Ok(*s),
            Listening::FromChild(end, make) => make(run::userns::listener(&end)?),
        }
    }
}

/// Start `program` (then `args`) in `prepared`, serve it, and return its exit status as ours.
pub fn start(
    store: &Store,
    prepared: &Prepared,
    program: &run::exec::Program,
    args: &[String],
    opts: Start,
) -> Result<ExitCode> {
    let entry = program.argv0.to_string_lossy();
    let entry = entry.as_ref();
    let path = program.path.as_path();
    // Before the program starts: `kill <capsule pid>` reaches it (docker's behaviour).
    let caught =
        run::signals::Caught::install().context("cannot set up signal forwarding")?.stop_timeout(opts.stop_timeout);
    // The run's orphans come to us, and we wait for them (run::lifetime).
    if let Err(e) = run::lifetime::become_subreaper() {
        tracing::warn!(error = %e, "not a subreaper: orphans of the run are not waited for");
    }
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let socket = format!("capsule-{}-{nanos:x}", std::process::id());
    // The program that runs decides the tier: the interpreter of a script, the program the
    // capsule's loader loads.
    let (linkage, shim_arms) = auto::examine(&program.elf).unwrap_or((auto::Linkage::Dynamic, false));
    let tier2 = match opts.seccomp {
        _ if opts.record.is_some() => true,
        Seccomp::Always => true,
        Seccomp::Never if linkage != auto::Linkage::Dynamic => {
            eprintln!(
                "capsule: error: {entry} is {}: the preload shim cannot virtualise it and --seccomp never \
                 refuses to run it unvirtualised (use --seccomp auto)",
                if linkage == auto::Linkage::Go { "a Go binary" } else { "statically linked" }
            );
            return Ok(ExitCode::from(FAILED));
        }
        Seccomp::Never => false,
        // A run with its own host name has its own /etc/hosts, which glibc reads internally.
        Seccomp::Auto if prepared.identity.hostname.is_some() => true,
        Seccomp::Auto => {
            auto::reason(linkage, &prepared.manifest).inspect(|why| tracing::info!(%why, "seccomp on")).is_some()
        }
    };
    // The namespace lives until the program has exited (dropped at the end of this function).
    let netns = match &opts.netns {
        Some(NetnsMode::Root(ip, peer)) => {
            let prefix = peer.addr.rsplit_once('/').and_then(|(_, p)| p.parse().ok()).unwrap_or(24);
            let ns = run::netns::Netns::create(*ip, prefix, prepared.identity.mac, peer)
                .context("cannot set up the capsule's network namespace")?;
            Some(ns)
        }
        _ => None,
    };
    // The materialiser's abstract socket belongs to a network namespace: bind it in the
    // program's.
    let bind =
        || Server::bind(&socket, store.clone(), prepared.manifest.clone(), prepared.sandbox.clone(), &prepared.view);
    // The view and the tree as inherited descriptors too, for processes that change user.
    // Optional: under a descriptor limit of 1000 or less they are skipped (paths still work).
    let view_fd = supervisor::launch::inheritable(&prepared.view, false);
    let tree_fd = supervisor::launch::inheritable(prepared.sandbox.tree(), true);
    // A program started as another user reaches the tree only through its descriptor (the
    // store is private to its owner): the program and the library directories are named
    // through it.
    let tree_fd_no = match (&opts.user, &tree_fd) {
        (None, _) => None,
        (Some(_), Ok(t)) => Some(std::os::fd::AsRawFd::as_raw_fd(t)),
        (Some(_), Err(e)) => anyhow::bail!("--user needs the sandbox tree as an inherited descriptor: {e}"),
    };
    let reach = |p: &Path| match tree_fd_no {
        Some(fd) => run::user::via_descriptor(p, prepared.sandbox.tree(), fd),
        None => p.to_owned(),
    };
    let mut cmd = Command::new(reach(path));
    let prefix: Vec<OsString> = match tree_fd_no {
        Some(_) => program.prefix.iter().map(|a| reach(Path::new(a)).into_os_string()).collect(),
        None => program.prefix.clone(),
    };
    cmd.arg0(&program.argv0).args(&prefix).args(args);
    let server = match (&netns, &opts.netns) {
        (Some(ns), _) => {
            ns.enter(&mut cmd, prepared.identity.hostname.as_deref());
            Listening::Now(Box::new(ns.inside(bind).context("cannot enter the capsule's network namespace")??))
        }
        (None, Some(NetnsMode::Rootless(ip))) => {
            let plan =
                run::userns::Plan::new(*ip, 24, prepared.identity.mac, prepared.identity.hostname.as_deref(), &socket)
                    .context("cannot prepare the capsule's namespaces")?;
            let end = plan.enter(&mut cmd);
            let (st, m, sb, v) =
                (store.clone(), prepared.manifest.clone(), prepared.sandbox.clone(), prepared.view.clone());
            Listening::FromChild(end, Box::new(move |l| Ok(Server::on(l, st, m, sb, &v)?)))
        }
        _ => Listening::Now(Box::new(bind()?)),
    };
    // The environment a plan repeats (not the per-run socket, descriptors and library path).
    let mut env: Vec<(String, OsString)> = prepared.env.iter().map(|(k, v)| (k.clone(), OsString::from(v))).collect(); // the registry's env keys
    if let Some(h) = &prepared.identity.hostname {
        env.push(("CAPSULE_HOSTNAME".into(), h.into()));
    }
    if let Some(d) = &prepared.identity.domain {
        env.push(("CAPSULE_DOMAIN".into(), d.into()));
    }
    if let Some(ip) = &prepared.identity.ipv4 {
        env.push(("CAPSULE_IP".into(), ip.to_string().into()));
    }
    // The interface the address and MAC are shown on (getifaddrs, SIOCGIF*), outside --netns.
    if opts.netns.is_none()
        && (prepared.identity.ipv4.is_some() || prepared.identity.mac.is_some())
        && let Some(ifname) = run::identity::primary_interface()
    {
        let mac = prepared.identity.mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<String>());
        env.push(("CAPSULE_IFACE".into(), format!("{ifname}/{}", mac.unwrap_or_default()).into()));
    }
    if let Some(l) = opts.loader {
        env.push((run::exec::LOADER_VAR.into(), l.value().into()));
    }
    let shim = find_shim()?;
    if let Some(u) = &opts.user {
        run::user::may_read(u, &shim).with_context(|| {
            format!(
                "--user: uid {} cannot read the preload shim {} (its program would run unvirtualised)",
                u.uid,
                shim.display()
            )
        })?;
    }
    env.push(("LD_PRELOAD".into(), shim.clone().into()));
    env.push(("CAPSULE_VIEW".into(), prepared.view.clone().into()));
    // The tree writable through a prefix above it: the shim opens its files for writing itself.
    if opts.unconfined || run::confine::tree_writable(&prepared.rules, prepared.sandbox.tree()) {
        env.push(("CAPSULE_TREE_LOCAL".into(), "1".into()));
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v))).env("CAPSULE_SOCKET", &socket);
    // Set by the front end for a program started from a plan (this one is not).
    cmd.env_remove("CAPSULE_PLAN");
    if !prepared.lib_dirs.is_empty() {
        let mut lp: Vec<u8> = Vec::new();
        for d in &prepared.lib_dirs {
            lp.extend_from_slice(reach(d).as_os_str().as_encoded_bytes());
            lp.push(b':');
        }
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            lp.extend_from_slice(old.as_encoded_bytes());
        } else {
            lp.pop();
        }
        cmd.env("LD_LIBRARY_PATH", OsString::from_vec(lp));
    }
    // A program of another user cannot open the sandbox's table of deletions by its path:
    // it inherits it too (read-only).
    let live_fd = match &opts.user {
        Some(_) => {
            let table = prepared.sandbox.dir().join(capsule_core::view::live::FILE);
            let fd = supervisor::launch::inheritable(&table, false)
                .with_context(|| format!("cannot open the sandbox's table of deletions {}", table.display()))?;
            cmd.env("CAPSULE_LIVE_FD", std::os::fd::AsRawFd::as_raw_fd(&fd).to_string());
            Some(fd)
        }
        None => None,
    };
    match (&view_fd, &tree_fd) {
        (Ok(v), Ok(t)) => {
            use std::os::fd::AsRawFd;
            cmd.env("CAPSULE_VIEW_FD", v.as_raw_fd().to_string());
            cmd.env("CAPSULE_TREE_FD", t.as_raw_fd().to_string());
        }
        (Err(e), _) | (_, Err(e)) => tracing::info!(error = %e, "no inherited view and tree descriptors"),
    }
    // `--user`: the child takes the user's credentials in its last step before exec (below),
    // after entering the namespaces (root's business) and before confinement and the filter
    // (then installed as that user).
    if let Some(u) = &opts.user {
        for (k, v) in run::user::env(u) {
            cmd.env(k, v);
        }
    }
    // Kernel confinement: the ruleset is built here, the child restricts itself before exec.
    let grants = run::confine::for_run(prepared, &shim, path);
    let confinement = run::confine::prepare(&grants, &prepared.rules, opts.unconfined)?;
    let confinement_kind = matches!(confinement, run::confine::Confinement::Landlock(_)).then(run::confine::kernel_abi);
    // The program's side of the launch, as the front end's (capsule_core::launch): the user,
    // killed with us even by SIGKILL, confined; the last step before exec, after the namespaces.
    let ruleset = match &confinement {
        run::confine::Confinement::Landlock(fd) => Some(fd),
        _ => None,
    };
    let tree_fd_raw = tree_fd.as_ref().ok().map(std::os::fd::AsRawFd::as_raw_fd);
    run::lifetime::before_exec(&mut cmd, opts.user.as_ref(), ruleset, !opts.unconfined, tree_fd_raw);
    match &confinement {
        run::confine::Confinement::Landlock(_) => {}
        run::confine::Confinement::Unavailable => eprintln!(
            "capsule: warning: this kernel has no Landlock: {entry} is not confined by the kernel, only by \
             interposition (docs/security.md)"
        ),
        run::confine::Confinement::OptedOut => {}
    }
    // Without tier 2 the guard (below) is armed by the shim where it can be, as the front end
    // arms it: only such runs get a plan.
    let guard_in_shim = shim_arms && linkage == auto::Linkage::Dynamic && !supervisor::launch::already_filtered();
    let plain = !tier2
        && guard_in_shim
        && opts.netns.is_none()
        && !opts.stats
        && opts.record.is_none()
        && opts.user.is_none()
        && view_fd.is_ok()
        && tree_fd.is_ok();
    let planned_grants = if matches!(confinement, run::confine::Confinement::OptedOut) { Vec::new() } else { grants };
    let replan = opts
        .plan
        .as_ref()
        .filter(|_| plain)
        .and_then(|pf| write_plan(store, prepared, pf, program, &env, &shim, &planned_grants));
    let mut arm_end = None;
    // A program without the shim lists directories with getdents64 itself: the supervisor
    // merges the listings of those it opened (filter::Traps::listings).
    let listings = linkage != auto::Linkage::Dynamic;
    let armed = if tier2 {
        let cookie = cookie()?;
        if !opts.no_cookie && opts.record.is_none() {
            cmd.env("CAPSULE_COOKIE", format!("{cookie:x}"));
        }
        // A static program's getifaddrs reads netlink with recvmsg: trapped for it alone (a
        // dynamic program has the shim's getifaddrs; filter::Traps), and outside --netns only
        // (there the interfaces are the namespace's, and so are their indexes).
        let netlink = linkage == auto::Linkage::Static
            && opts.netns.is_none()
            && opts.record.is_none()
            && (prepared.identity.ipv4.is_some() || prepared.identity.mac.is_some());
        let traps = supervisor::filter::Traps { record: opts.record.is_some(), netlink, listings };
        // A dynamic program's shim installs the filter itself, after the loader: its library
        // search (an open and a stat per directory per library) is then not a round trip
        // each. Record mode wants exactly those calls, and a launcher already under a filter
        // (a container's) cannot tell the shim's "not yet filtered" apart.
        let filtered = supervisor::launch::already_filtered();
        if traps == supervisor::filter::Traps::default() && !filtered && shim_arms {
            let (armed, end) = supervisor::launch::arm_in_shim(&mut cmd, cookie, traps)?;
            arm_end = Some(end);
            Some(armed)
        } else {
            Some(supervisor::launch::arm(&mut cmd, cookie, traps)?)
        }
    } else {
        None
    };
    // Without tier 2, a guard: the kernel refuses the routes around both tiers, and the
    // changes of metadata Landlock does not cover go to a supervisor that serves only them
    // (supervisor::filter::GUARD), armed by the shim after the loader where it can be.
    let guard = if tier2 {
        None
    } else if guard_in_shim {
        let (armed, end) = supervisor::launch::arm_in_shim_with(&mut cmd, &supervisor::filter::GUARD)?;
        arm_end = Some(end);
        Some(armed)
    } else {
        Some(supervisor::launch::arm_with(&mut cmd, supervisor::filter::GUARD.to_vec())?)
    };
    // With tier 2, the supervisor starts on its own thread as soon as the child sends its
    // listener, before exec: the child's calls from then on (its own execve in record mode,
    // the loader's opens) wait for it, so it must not wait for `spawn` to return.
    let (stats_tx, stats_rx) = std::sync::mpsc::channel();
    // No listener: the program ended before it armed the filter (its loader failed, say), or
    // ran without it. Which one, the program's status tells (below).
    let (unarmed_tx, unarmed_rx) = std::sync::mpsc::channel::<std::io::Error>();
    let mut server = Some(server);
    if let Some(a) = armed {
        let (view, tree, record) = (prepared.view.clone(), prepared.sandbox.tree().to_owned(), opts.record.clone());
        let identity = prepared.identity.clone();
        let as_callers = opts.user.is_some();
        let server = server.take();
        let thread = std::thread::Builder::new().name("capsule-supervisor".into());
        thread
            .spawn(move || {
                run::signals::keep_off_this_thread();
                let listener = match a.listener() {
                    Ok(l) => l,
                    Err(e) => return drop(unarmed_tx.send(e)),
                };
                let sup = Supervisor::new(listener, &view, &tree);
                let sup = sup.map(|s| s.with_identity(&identity).merge_listings(listings).as_callers(as_callers));
                let mut sup = match sup {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("capsule: error: cannot start the seccomp supervisor: {e}");
                        return;
                    }
                };
                if let Some(rec) = record {
                    sup.record_into(rec);
                }
                let _ = stats_tx.send(sup.stats());
                match server.map(Listening::server) {
                    Some(Ok(server)) => server.serve(Some(sup)),
                    Some(Err(e)) => eprintln!("capsule: error: no materialiser: {e:#}"),
                    None => {}
                }
            })
            .context("cannot start the supervisor's thread")?;
    }
    let spawned = cmd.spawn();
    drop(cmd); // closes our copy of the child's end of the listener socket
    drop((view_fd, tree_fd, live_fd, arm_end, confinement));
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("capsule: error: {entry} is not executable: {e}");
            return Ok(ExitCode::from(NOT_EXECUTABLE));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot start {entry}")),
    };
    // A plan left for later: prepared again beside the program, not before it.
    let replan = replan.and_then(|job| std::thread::Builder::new().spawn(job).ok());
    // Without tier 2, this thread serves the materialiser's socket while it waits: early
    // connections wait in the socket's backlog, and a run that needs nothing materialised
    // starts no thread at all.
    let server = server.map(|s| s.server().and_then(|s| Ok(s.polled()?))).transpose();
    let server = server.context("cannot serve the capsule's namespace")?;
    if let (Some(s), Some(g)) = (&server, guard) {
        s.supervise(g, prepared.view.clone(), prepared.sandbox.tree().to_owned(), opts.user.is_some());
    }
    let stats = if tier2 { stats_rx.recv().ok() } else { None };
    let status = match &server {
        Some(s) => {
            let mut accept = || s.accept_waiting();
            caught.wait(&mut child, Some((s.fd(), &mut accept)))
        }
        None => caught.wait(&mut child, None),
    };
    let status = status.context("cannot wait for the program")?;
    // Errors say the first cause only: a program that failed before it armed tier 2 (the
    // loader's "symbol lookup error"; a missing library the pre-flight said) said why itself; the closed socket
    // is its consequence. One that succeeded without arming it ran unsupervised.
    if let Ok(e) = unarmed_rx.try_recv() {
        if status.success() {
            eprintln!("capsule: error: {entry} ran without the seccomp supervisor: {e}");
        } else {
            tracing::debug!(error = %e, "the program ended before it armed tier 2");
        }
    }
    if opts.stats {
        let rules: Vec<String> = prepared.rules.iter().map(|(p, m)| format!("{p}={}", run::mode_name(*m))).collect();
        eprintln!(
            "capsule: stats: isolation {}; confinement: {}",
            rules.join(" "),
            match &confinement_kind {
                Some(abi) => format!("Landlock ABI {abi}"),
                None => "none".to_owned(),
            }
        );
        let (served, continued) = stats.map_or((0, 0), |s| {
            (
                s.served.load(std::sync::atomic::Ordering::Relaxed),
                s.continued.load(std::sync::atomic::Ordering::Relaxed),
            )
        });
        eprintln!(
            "capsule: stats: tier 2 (supervisor): {served} served, {continued} passed through{}; materialiser: {} requests",
            if tier2 { "" } else { " (off)" },
            run::requests_served()
        );
    }
    drop(netns);
    if let Some(job) = replan {
        let _ = job.join();
    }
    Ok(exit_code(status))
}

/// The program's status as ours: its exit code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(i32::from(FAILED));
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(FAILED))
}

/// Write the launch plan of a plain run (tier 1, no namespace, no stats): the next identical
/// command line starts from it (capsule-cli/src/front). A plan that cannot be written is
/// only a slower next start.
///
/// When an input moved while the run was prepared — most often by that preparation itself: a
/// new sandbox's skeleton — the plan is left to the returned job, which the caller runs once
/// the program has started: it takes the inputs again and prepares once more; if the result
/// is the same run, that is the plan (anything else that moved an input moves it again or
/// changes the result: no plan).
fn write_plan(
    store: &Store,
    prepared: &Prepared,
    pf: &PlanFor,
    program: &run::exec::Program,
    env: &[(String, OsString)],
    shim: &Path,
    grants: &[run::confine::Grant],
) -> Option<impl FnOnce() + Send + 'static> {
    use run::planner::{Before, Launch, Written, write};
    let launcher = std::env::current_exe().ok()?;
    let launch =
        Launch { key: pf.key.clone(), args_from: pf.args_from, program, env, launcher: &launcher, shim, grants };
    match write(store, &pf.before, &pf.cref, &pf.sandbox_name, prepared, &launch) {
        Ok(Written::InputsMoved) => {}
        Ok(written) => {
            tracing::debug!(?written, "launch plan");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "no launch plan");
            return None;
        }
    }
    let (store, pf, first) = (store.clone(), pf.clone(), RunShape::of(prepared));
    let (program, env, shim, grants) = (program.clone(), env.to_vec(), shim.to_owned(), grants.to_vec());
    Some(move || {
        run::signals::keep_off_this_thread();
        let launch = Launch {
            key: pf.key.clone(),
            args_from: pf.args_from,
            program: &program,
            env: &env,
            launcher: &launcher,
            shim: &shim,
            grants: &grants,
        };
        let before = Before::take(&store, &pf.cref, &pf.sandbox_name);
        let written = match run::prepare(&store, &pf.cref, &pf.run_opts, pf.sandbox.as_deref()) {
            Ok(again) if RunShape::of(&again) == first => {
                write(&store, &before, &pf.cref, &pf.sandbox_name, &again, &launch)
            }
            Ok(_) => Ok(Written::InputsMoved),
            Err(e) => Err(e),
        };
        match written {
            Ok(written) => tracing::debug!(?written, "launch plan, prepared again"),
            Err(e) => tracing::warn!(error = %e, "no launch plan"),
        }
    })
}

/// What makes two preparations start the program alike: the capsule, the view (named by its
/// digest), the library directories, the environment and the identity.
#[derive(PartialEq)]
struct RunShape(
    capsule_core::digest::Digest,
    PathBuf,
    Vec<PathBuf>,
    std::collections::BTreeMap<String, String>,
    capsule_core::manifest::Identity,
);

impl RunShape {
    fn of(p: &Prepared) -> RunShape {
        RunShape(p.digest, p.view.clone(), p.lib_dirs.clone(), p.env.clone(), p.identity.clone())
    }
}

/// `run-attached`: the launcher's half of a run the front end started from its plan. The
/// program is already running (our child); serve the materialiser once something asks (the
/// capsule is loaded then), pass signals on, and return its status as `run` does.
pub fn attached(store: &Store, a: &RunAttached) -> Result<ExitCode> {
    let caught = run::signals::Caught::install().context("cannot set up signal forwarding")?;
    // The front end made this process a subreaper before its fork; a second time is harmless.
    if let Err(e) = run::lifetime::become_subreaper() {
        tracing::warn!(error = %e, "not a subreaper: orphans of the run are not waited for");
    }
    // Signals that came since the fork were held (blocked); they are delivered now.
    run::attach::set_mask(a.mask);
    let listener = run::attach::listener(a.listen_fd).context("no materialiser socket from the front end");
    match run::attach::exec_error(a.status_fd) {
        Ok(None) => {}
        Ok(Some(run::attach::StartError::Confine(errno, path))) => {
            let _ = caught.wait_pid(a.pid, None);
            // As `run::confine::prepare` reports it.
            let e = std::io::Error::from_raw_os_error(errno);
            eprintln!("capsule: error: cannot grant Landlock access to {}: {e} (starting {})", path.display(), a.entry);
            return Ok(ExitCode::from(FAILED));
        }
        Ok(Some(run::attach::StartError::Exec(errno))) => {
            let _ = caught.wait_pid(a.pid, None);
            // As `start` reports a failed spawn.
            let e = std::io::Error::from_raw_os_error(errno);
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                eprintln!("capsule: error: {} is not executable: {e}", a.entry);
                return Ok(ExitCode::from(NOT_EXECUTABLE));
            }
            eprintln!("capsule: error: cannot start {}: {e}", a.entry);
            return Ok(ExitCode::from(FAILED));
        }
        Err(e) => eprintln!("capsule: error: cannot tell whether {} started: {e}", a.entry),
    }
    let listener = match listener.and_then(|l| l.set_nonblocking(true).map(|()| l).map_err(Into::into)) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("capsule: error: {e:#}");
            None
        }
    };
    // The materialiser starts on the first request, or with the guard's supervisor (which
    // shares it), on a thread of its own: not before the wait.
    let server: std::sync::Arc<std::sync::Mutex<Option<Server>>> = std::sync::Arc::default();
    if let (Some(fd), Some(view), Some(l)) = (a.guard_fd, a.view.clone(), &listener) {
        let (store, a, slot) = (store.clone(), a.clone(), std::sync::Arc::clone(&server));
        let l = l.try_clone().context("cannot share the materialiser socket")?;
        // The guard's supervisor, on a thread of its own; the materialiser it shares with the
        // main thread is made when either first needs it (not at every start: it loads the
        // capsule's manifest).
        let start = move || {
            run::signals::keep_off_this_thread();
            let guard = match run::attach::guard(fd) {
                Ok(g) => g,
                Err(e) => return eprintln!("capsule: error: no supervisor for {}: {e}", a.entry),
            };
            let tree = match run::sandbox::Sandbox::open(&store, &a.sandbox) {
                Ok(sb) => sb.tree().to_owned(),
                Err(e) => return eprintln!("capsule: error: no supervisor for {}: {e}", a.entry),
            };
            let make = || {
                let mut s = lock(&slot);
                if s.is_none() {
                    *s = serve_attached(&store, &a, &l)
                        .map_err(|e| eprintln!("capsule: error: no materialiser: {e:#}"))
                        .ok();
                }
                s.as_ref().map(Server::handle)
            };
            run::supervise_deferred(guard, &view, &tree, false, make);
        };
        std::thread::Builder::new().name("capsule-guard".into()).spawn(start).context("cannot start a thread")?;
    }
    let status = match &listener {
        Some(l) => {
            use std::os::fd::AsFd;
            let mut accept = || {
                let mut s = lock(&server);
                if s.is_none() {
                    *s = serve_attached(store, a, l)
                        .map_err(|e| eprintln!("capsule: error: no materialiser: {e:#}"))
                        .ok();
                }
                match s.as_ref() {
                    Some(srv) => srv.accept_waiting(),
                    // Refuse what waits, rather than leave it hanging.
                    None => while l.accept().is_ok() {},
                }
            };
            caught.wait_pid(a.pid, Some((l.as_fd(), &mut accept)))
        }
        None => caught.wait_pid(a.pid, None),
    };
    let status = status.context("cannot wait for the program")?;
    Ok(exit_code(status))
}

/// `s`, locked, even if a thread panicked while holding it.
fn lock(s: &std::sync::Mutex<Option<Server>>) -> std::sync::MutexGuard<'_, Option<Server>> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The materialiser for `a`'s capsule, on a copy of the listening socket.
fn serve_attached(store: &Store, a: &RunAttached, l: &std::os::unix::net::UnixListener) -> Result<Server> {
    let digest: capsule_core::digest::Digest =
        a.digest.parse().with_context(|| format!("invalid digest {:?} in the run's plan", a.digest))?;
    let manifest = store.load_manifest(&digest).with_context(|| format!("cannot load capsule {digest}"))?;
    sandbox_name_ok(&a.sandbox)?;
    let sandbox = run::sandbox::Sandbox::open(store, &a.sandbox)?;
    let listener = l.try_clone().context("cannot share the materialiser socket")?;
    let view = a.view.as_deref().context("the run's plan names no view")?;
    Ok(Server::on(listener, store.clone(), manifest, sandbox, view)?.polled()?)
}

/// A sandbox name: a capsule's name, or `NAME@HEX12` (a version run by digest).
pub(crate) fn sandbox_name_ok(s: &str) -> Result<()> {
    let r = any_ref(s).with_context(|| format!("invalid sandbox name {s:?}"))?;
    if r.sandbox_name() != s {
        anyhow::bail!("invalid sandbox name {s:?}: a capsule name, or NAME@ and 12 hex digits");
    }
    Ok(())
}

/// A per-run cookie for the filter: 64 random bits, never 0.
fn cookie() -> Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("cannot read /dev/urandom")?;
    Ok(u64::from_le_bytes(b) | 1)
}
