//! The `capsule` command line (clap derive): one struct per verb, as in youki's liboci-cli.
//! The verbs and flags follow the CLI contract in DESIGN.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Application virtualization for Linux: capture applications into capsules and run them.
#[derive(Debug, Parser)]
#[command(name = "capsule", version, about)]
pub struct Cli {
    /// Options every verb takes.
    #[command(flatten)]
    pub globals: Globals,
    /// The verb.
    #[command(subcommand)]
    pub verb: Verb,
}

/// Options every verb takes.
#[derive(Debug, Args)]
pub struct Globals {
    /// The store directory (default: $CAPSULE_HOME, else $XDG_DATA_HOME/capsule).
    #[arg(long, global = true, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Machine-readable output on stdout (and no progress bars).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or informational messages.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// `capsule run` alone: the start-up path of every run builds this small parser instead of
/// every verb's (a third of a millisecond on this machine kind). Anything it does not accept
/// (help, a mistake) goes to the full [`Cli`], which gives the real message.
#[derive(Debug, Parser)]
#[command(name = "capsule", disable_help_flag = true, disable_version_flag = true)]
pub struct RunCli {
    /// As [`Cli`]'s.
    #[command(flatten)]
    pub globals: Globals,
    /// Only `run`.
    #[command(subcommand)]
    pub verb: RunOnly,
}

/// The one verb [`RunCli`] knows.
#[derive(Debug, Subcommand)]
pub enum RunOnly {
    /// As [`Verb::Run`].
    #[command(disable_help_flag = true)]
    Run(Run),
    /// As [`Verb::RunAttached`].
    RunAttached(RunAttached),
}

impl Cli {
    /// Parse the process's arguments: the small `run` parser when it accepts them, else this.
    pub fn parse_args() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.iter().any(|a| a == "run" || a == "run-attached")
            && let Ok(RunCli { globals, verb }) = RunCli::try_parse_from(&args)
        {
            let verb = match verb {
                RunOnly::Run(r) => Verb::Run(r),
                RunOnly::RunAttached(a) => Verb::RunAttached(a),
            };
            return Cli { globals, verb };
        }
        Cli::parse_from(args)
    }
}

/// Every verb.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Make a capsule from what is on this machine.
    #[command(subcommand)]
    Capture(Capture),
    /// List the capsules in the store.
    List,
    /// Show what a capsule holds.
    Inspect(Inspect),
    /// Write a capsule's package inventory as an SPDX 2.3 or CycloneDX 1.5 JSON document.
    Sbom(Sbom),
    /// Pre-flight: what a capsule expects of this host that it lacks (libraries, interpreters,
    /// programs its entry points name, kernel features its run options need); exit status 1
    /// if anything is missing. Reads only.
    Check(Check),
    /// Remove a capsule (its blobs stay until `gc`).
    Rm(Rm),
    /// Remove blobs no capsule uses (untagged versions stay unless --untagged).
    Gc(Gc),
    /// Check blobs against their digests and the index against the refs.
    Verify(Verify),
    /// Write a capsule and its blobs to one self-contained file.
    Export(Export),
    /// Read a file written by `export`.
    Import(Import),
    /// Make an ed25519 key pair for `export --sign` and `import --trust`.
    Keygen(Keygen),
    /// Disk usage: each capsule's logical and stored bytes, what they share, the dedup ratio.
    Df,
    /// Upload a capsule to an OCI registry (only the blobs it lacks).
    Push(Push),
    /// Download a capsule from an OCI registry (only the blobs the store lacks).
    Pull(Pull),
    /// Download every blob a lazy pull left in the registry (for offline use).
    Fetch(Fetch),
    /// Run a capsule's program: `run NAME [PROGRAM] [ARGS...]` (exit status: the program's;
    /// 125/126/127 as docker; 2 when no program is named and the capsule has no default).
    Run(Run),
    /// Internal: the launcher's half of a run the `capsule` front end started from its plan.
    #[command(hide = true)]
    RunAttached(RunAttached),
    /// Look at or discard what a capsule's programs changed.
    Sandbox(SandboxArgs),
    /// A capsule's registry: get, set, unset, list, export, import.
    Config(ConfigArgs),
    /// Capture the bundled demo application, run it from its capsule, show what it sees.
    Demo,
    /// What capsule can do on this machine: the store, the shim, the kernel's features.
    Doctor,
}

/// `capture ...`
#[derive(Debug, Subcommand)]
pub enum Capture {
    /// ThinApp-style pre-scan / post-scan around an install.
    #[command(subcommand)]
    Snapshot(Snapshot),
    /// Pack binaries with their loader and library closure.
    Elf(CaptureElf),
    /// Run an installer with write-copy over `/` and make a capsule of what it wrote; the
    /// host is not changed.
    Install(CaptureInstall),
    /// Run a program and pack every file it touched (CDE/ReproZip-style); the capsule runs
    /// with `--isolation full`.
    Trace(CaptureTrace),
    /// A shared capsule holding state only: the paths given with `--state` become one real
    /// directory each in its sandbox, seen by every capsule that links to it (`run --with`).
    Shared(CaptureShared),
}

/// What any capture may declare besides its files.
#[derive(Debug, Args, Default)]
pub struct Declare {
    /// An absolute path the capsule keeps as shared state (repeatable): one directory in its
    /// sandbox, seeded from the capsule's files there, seen by every capsule linked to it.
    #[arg(long, value_name = "PATH")]
    pub state: Vec<String>,
    /// A shared capsule this one links to (repeatable): its state and registry are this
    /// capsule's at every run.
    #[arg(long, value_name = "SHARED")]
    pub link: Vec<String>,
}

/// `capture shared NAME --state PATH...`
#[derive(Debug, Args)]
pub struct CaptureShared {
    /// NAME[:TAG] of the new capsule.
    pub name: String,
    /// What it declares (at least one `--state`).
    #[command(flatten)]
    pub declare: Declare,
}

/// `capture trace NAME -- CMD...`
#[derive(Debug, Args)]
pub struct CaptureTrace {
    /// NAME[:TAG] of the new capsule.
    pub name: String,
    /// Shared state and links.
    #[command(flatten)]
    pub declare: Declare,
    /// The program and its arguments; the program becomes the capsule's entry point.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `capture install NAME [--entry PATH] [--root DIR|minimal] -- CMD...`
#[derive(Debug, Args)]
pub struct CaptureInstall {
    /// NAME[:TAG] of the new capsule.
    pub name: String,
    /// Shared state and links.
    #[command(flatten)]
    pub declare: Declare,
    /// The capsule's default program (absolute path inside the capsule). Every program the
    /// install wrote (its packages' bin and sbin files, desktop entries, new programs in bin
    /// directories) becomes a named entry point either way; without `--entry` the default is
    /// the only program, or the requested package's main desktop application, or none.
    #[arg(long, value_name = "PATH")]
    pub entry: Option<String>,
    /// When `apt-get|apt install` names packages the host already has (apt would install
    /// nothing of them): reinstall them in the capture, so that all their files go into the
    /// capsule. Without it, such a capture is refused, naming them.
    #[arg(long)]
    pub reinstall: bool,
    /// Run the installer over a root directory instead of the live host, and capture what it
    /// wrote relative to that root: `minimal` (the host release's Debian minbase, bootstrapped
    /// once with mmdebstrap and kept in the store) or a directory holding a Debian root. The
    /// host's system stays hidden from the installer (its /dev, /proc and /sys pass through;
    /// the user's data, /etc/resolv.conf, /etc/hosts and /bin/sh are visible read-only), so a
    /// package the host has is captured in full.
    #[arg(long, value_name = "DIR|minimal")]
    pub root: Option<String>,
    /// The base the capsule is captured against.
    #[command(flatten)]
    pub base: Base,
    /// The installer and its arguments (`apt-get install -y PKG`, `make install`, a script).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `capture snapshot begin|end`
#[derive(Debug, Subcommand)]
pub enum Snapshot {
    /// Scan the watched roots (metadata only) before the install.
    Begin(SnapshotBegin),
    /// Rescan and make a capsule of what changed.
    End(SnapshotEnd),
}

/// `capture snapshot begin`
#[derive(Debug, Args)]
pub struct SnapshotBegin {
    /// Watched roots.
    #[arg(long, value_delimiter = ',', default_value = "/usr,/etc,/opt,/var/lib,/srv")]
    pub roots: Vec<String>,
    /// More paths to ignore (globs over absolute paths; repeatable). Added to the defaults.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Treat this host directory as `/` (capture an install made into a staging root); its
    /// packages and files are also what `end` completes the closure from. (`--base DIR` is
    /// the old spelling.)
    #[arg(long = "root", alias = "base", value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// `capture snapshot end`
#[derive(Debug, Args)]
pub struct SnapshotEnd {
    /// NAME[:TAG] of the new capsule.
    pub name: String,
    /// Shared state and links.
    #[command(flatten)]
    pub declare: Declare,
    /// The capsule's default program (absolute path inside the capsule).
    #[arg(long, value_name = "PATH")]
    pub entry: Option<String>,
    /// The base the capsule is captured against.
    #[command(flatten)]
    pub base: Base,
}

/// `capture elf`
#[derive(Debug, Args)]
pub struct CaptureElf {
    /// NAME[:TAG] of the new capsule.
    pub name: String,
    /// Shared state and links.
    #[command(flatten)]
    pub declare: Declare,
    /// The binaries; the first is the entry point.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `inspect`
#[derive(Debug, Args)]
pub struct Inspect {
    /// NAME[:TAG], or NAME@DIGEST: a version by the first 12 to 64 hex digits of its manifest
    /// digest (`list` shows them; an import or pull that moves a tag keeps the old version so)
    pub name: String,
}

/// `sbom`
#[derive(Debug, Args)]
pub struct Sbom {
    /// NAME[:TAG], or NAME@DIGEST: a version by the first 12 to 64 hex digits of its manifest
    /// digest (`list` shows them; an import or pull that moves a tag keeps the old version so)
    pub name: String,
    /// The document's format.
    #[arg(long, value_enum, default_value_t = SbomFormat::Spdx)]
    pub format: SbomFormat,
    /// Write the document to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The formats `sbom` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3, JSON.
    Spdx,
    /// CycloneDX 1.5, JSON.
    Cyclonedx,
}

/// `check`
#[derive(Debug, Args)]
pub struct Check {
    /// NAME[:TAG], or NAME@DIGEST: a version by the first 12 to 64 hex digits of its manifest
    /// digest
    pub name: String,
    /// As `run --isolation`: the run whose kernel needs are checked (`full` needs Landlock).
    #[arg(long, value_name = "RULE")]
    pub isolation: Vec<String>,
    /// As `run --seccomp`: tier 2 needs seccomp user notification.
    #[arg(long, value_enum, default_value_t = Seccomp::Auto)]
    pub seccomp: Seccomp,
    /// As `run --netns`: without root, it needs unprivileged user namespaces.
    #[arg(long)]
    pub netns: bool,
    /// As `run --unconfined`: no Landlock needed.
    #[arg(long)]
    pub unconfined: bool,
}

/// `rm`
#[derive(Debug, Args)]
pub struct Rm {
    /// NAME[:TAG], or NAME@DIGEST: a version by the first 12 to 64 hex digits of its manifest
    /// digest (`list` shows them; an import or pull that moves a tag keeps the old version so)
    pub name: String,
    /// Remove a shared capsule even though capsules still link to it (its state stays in its
    /// sandbox).
    #[arg(long)]
    pub force: bool,
}

/// `gc`
#[derive(Debug, Args)]
pub struct Gc {
    /// Also remove the untagged versions (those an import or pull moved a tag away from, listed
    /// with tag `<none>`), but any whose sandbox a running program uses.
    #[arg(long)]
    pub untagged: bool,
}

/// `verify`
#[derive(Debug, Args)]
pub struct Verify {
    /// Only this capsule (default: the whole store).
    pub name: Option<String>,
    /// Rebuild the index, and move damaged blobs aside so an import or capture can restore them.
    #[arg(long)]
    pub repair: bool,
}

/// `export`
#[derive(Debug, Args)]
pub struct Export {
    /// NAME[:TAG], or NAME@DIGEST: a version by the first 12 to 64 hex digits of its manifest
    /// digest (`list` shows them; an import or pull that moves a tag keeps the old version so)
    pub name: String,
    /// The file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Sign the file with this secret key file (made by `capsule keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
}

/// `import`
#[derive(Debug, Args)]
pub struct Import {
    /// The file to read.
    pub file: PathBuf,
    /// Accept the file only if signed by this key: a `.pub` file or 64 hex digits
    /// (repeatable: any one of them).
    #[arg(long, value_name = "PUBKEY")]
    pub trust: Vec<String>,
}

/// `keygen`
#[derive(Debug, Args)]
pub struct Keygen {
    /// Write PREFIX.key (secret, mode 0600) and PREFIX.pub; existing files are never replaced.
    #[arg(short, long, value_name = "PREFIX", default_value = "capsule-signing")]
    pub output: PathBuf,
}

/// `push NAME HOST[:PORT]/REPO:TAG`
#[derive(Debug, Args)]
pub struct Push {
    /// NAME[:TAG] of the capsule, or NAME@DIGEST (a version by its manifest digest).
    pub name: String,
    /// Where: HOST[:PORT]/REPO:TAG (loopback hosts are spoken to over HTTP, others HTTPS).
    pub reference: String,
    /// HTTP even for a host that is not loopback (a test registry; never for real ones).
    #[arg(long)]
    pub plain_http: bool,
}

/// `pull HOST[:PORT]/REPO[:TAG|@sha256:…] [NAME]`
#[derive(Debug, Args)]
pub struct Pull {
    /// HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]
    pub reference: String,
    /// NAME[:TAG] to store it under (default: the capsule's own name and tag).
    pub name: Option<String>,
    /// Record the manifest only: `run` fetches each blob on first open, `fetch` the rest.
    #[arg(long)]
    pub lazy: bool,
    /// HTTP even for a host that is not loopback.
    #[arg(long)]
    pub plain_http: bool,
}

/// `run-attached` (internal; capsule-cli/src/front starts it): serve the materialiser for a
/// program the front end forked, and wait for it as `run` does.
#[derive(Debug, Clone, Args)]
pub struct RunAttached {
    /// The program's pid (our child).
    #[arg(long)]
    pub pid: i32,
    /// The materialiser's listening socket.
    #[arg(long)]
    pub listen_fd: i32,
    /// The pipe that reports a failed exec (errno, 4 bytes; closed on success).
    #[arg(long)]
    pub status_fd: i32,
    /// The signal mask the program started with (hex bits of signals 1..=64).
    #[arg(long, value_parser = parse_hex)]
    pub mask: u64,
    /// The capsule's manifest digest.
    #[arg(long)]
    pub digest: String,
    /// The sandbox.
    #[arg(long)]
    pub sandbox: String,
    /// The entry, for messages.
    #[arg(long)]
    pub entry: String,
    /// Our end of the guard's socket: the program's shim sends the listener of
    /// `supervisor::filter::GUARD` there.
    #[arg(long)]
    pub guard_fd: Option<i32>,
    /// The run's view (for the guard's supervisor).
    #[arg(long)]
    pub view: Option<std::path::PathBuf>,
}

fn parse_hex(s: &str) -> Result<u64, std::num::ParseIntError> {
    u64::from_str_radix(s, 16)
}

/// `fetch NAME`
#[derive(Debug, Args)]
pub struct Fetch {
    /// NAME[:TAG] or NAME@DIGEST of a capsule pulled with `--lazy`.
    pub name: String,
}

/// `run`
#[derive(Debug, Args)]
pub struct Run {
    /// NAME[:TAG], or NAME@DIGEST: a version by the first 12 to 64 hex digits of its manifest
    /// digest (`list` shows them; an import or pull that moves a tag keeps the old version so)
    pub name: String,
    /// The program to run (absolute path inside the capsule, its sandbox, or on the host, or
    /// an entry point's name); default: a program named by the first word of ARGS, else the
    /// capsule's default program (`capsule inspect` lists them).
    #[arg(long, value_name = "PATH")]
    pub entry: Option<String>,
    /// Isolation: `merged|writecopy|full` for `/`, or `/PREFIX=MODE` (repeatable; also
    /// `passthrough`, and `readonly`: the host's, every change refused with EROFS; the store
    /// is always read-only). Default: the system write-copy, /run write-copy, $HOME, /tmp, /var/tmp,
    /// /media, /mnt and /run/user/UID merged, /dev, /proc and /sys passed through; `MODE`
    /// replaces the rule for `/` only (`capsule inspect` shows the effective rules).
    #[arg(long, value_name = "RULE")]
    pub isolation: Vec<String>,
    /// Tier 2, the seccomp supervisor: `auto` turns it on for static and Go programs and for
    /// capsules that carry /etc/passwd, /etc/hosts (and friends) or their own libc.
    #[arg(long, value_enum, default_value_t = Seccomp::Auto)]
    pub seccomp: Seccomp,
    /// Print, on exit, how many calls each tier served.
    #[arg(long)]
    pub stats: bool,
    /// The host name the program sees (uname, gethostname, /etc/hostname); default: the
    /// capsule's, else the machine's.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// The NIS/DNS domain name the program sees.
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
    /// The machine-id the program sees (/etc/machine-id, /var/lib/dbus/machine-id).
    #[arg(long, value_name = "32HEX")]
    pub machine_id: Option<String>,
    /// The capsule's IPv4 address: binds to 0.0.0.0 or 127.0.0.1 land on it, and its host
    /// name resolves to it. A loopback address (127.0.0.0/8) or one of this machine's.
    #[arg(long, value_name = "ADDR")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The capsule's MAC address (getifaddrs, SIOCGIFHWADDR, /sys/class/net/IF/address, or its
    /// veth with `--netns`), e.g. 02:42:ac:11:00:02.
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// A network namespace of the capsule's own: `--ip` (and `--mac`) on one end of a veth
    /// pair, a UTS namespace with `--hostname`. As root, the other end goes per `--netns-peer`;
    /// without root (an unprivileged user namespace), both ends stay inside and only the
    /// capsule's own processes reach the address.
    #[arg(long, requires = "ip")]
    pub netns: bool,
    /// With `--netns` as root: where the veth's other end goes and its address:
    /// `NETNS:ADDR/PREFIX` (a namespace made with `ip netns add`) or `ADDR/PREFIX` (this
    /// machine's namespace).
    #[arg(long, value_name = "[NETNS:]ADDR/PREFIX", requires = "netns")]
    pub netns_peer: Option<String>,
    /// Link shared capsule NAME[:TAG] for this run (repeatable), besides the capsule's own
    /// links: the paths it declares as state are its sandbox's, for every app that links it.
    #[arg(long, value_name = "SHARED")]
    pub with: Vec<String>,
    /// The sandbox to use (default: the capsule's name; for NAME@DIGEST, NAME@ and the
    /// digest's first 12 hex digits): two instances of one server each keep their own files.
    #[arg(long, value_name = "NAME")]
    pub sandbox: Option<String>,
    /// Run the program as this user (root only): a name or uid of the capsule's /etc/passwd
    /// (the host's when the capsule has none), optionally with a group of its /etc/group;
    /// supplementary groups from the capsule's /etc/group; HOME, USER, LOGNAME and SHELL from
    /// the passwd entry, as `runuser -u` sets them.
    #[arg(long, value_name = "NAME|UID[:GROUP]")]
    pub user: Option<String>,
    /// Do not confine the program with Landlock: the isolation rules are then kept by
    /// interposition alone, which a program can step around (docs/security.md). Needed for
    /// `--isolation full` on a kernel without Landlock.
    #[arg(long)]
    pub unconfined: bool,
    /// Seconds the run has after SIGTERM (or a SIGINT sent with `kill`), which goes to every
    /// process of the run, before what is left of it gets SIGKILL.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub stop_timeout: u32,
    /// Benchmarks only: do not give the shim the supervisor's cookie, so that every path call
    /// goes through tier 2 (docs/bench/tier2.sh measures what the cookie saves).
    #[arg(long, hide = true)]
    pub no_cookie: bool,
    /// `[PROGRAM] [ARGS...]`: a first word that names a program of the capsule (an entry
    /// point, or a program in its bin directories) runs it with the rest; otherwise every word
    /// goes to the default program. `run` options come before it: every word from the first
    /// one that is not an option (or after `--`) on is the program's.
    #[arg(trailing_var_arg = true, value_name = "PROGRAM_AND_ARGS")]
    pub args: Vec<String>,
}

/// `--seccomp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Seccomp {
    /// When the program or the capsule needs it.
    Auto,
    /// Always.
    Always,
    /// Never; a program the preload shim cannot load into is refused.
    Never,
}

/// `config NAME get|set|unset|list|export|import`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// NAME[:TAG] (the writable layer is per capsule name, in its sandbox)
    pub name: String,
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// Registry actions. Values: "text" (or bare text for `set`), int:N, file:DIGEST:MODE, deleted.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print one key's effective value.
    Get {
        /// machine/… or user/…
        key: String,
    },
    /// Set a key in the sandbox's layer (over the capsule's value, if any).
    Set {
        /// machine/… or user/…
        key: String,
        /// The value.
        value: String,
    },
    /// Remove a key from the sandbox's layer.
    Unset {
        /// machine/… or user/…
        key: String,
    },
    /// Every effective key (under PREFIX), `KEY = VALUE`.
    List {
        /// Only keys starting with this.
        prefix: Option<String>,
    },
    /// The effective registry as text, on stdout or into a file.
    Export {
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Merge a text registry into the sandbox's layer (all or nothing).
    Import {
        /// The file (`export`'s format).
        file: PathBuf,
    },
}

/// `sandbox NAME diff|reset`
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// NAME[:TAG] (the sandbox is per capsule name), or NAME@DIGEST (the sandbox of runs of that
    /// version by digest)
    pub name: String,
    /// The sandbox a `run --sandbox NAME` used (default: the capsule's own, as for `run`)
    #[arg(long, value_name = "NAME")]
    pub sandbox: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub action: SandboxAction,
}

/// Sandbox actions.
#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// List what the capsule's programs added, modified and deleted.
    Diff,
    /// Discard it all.
    Reset,
    /// Make a new capsule of this one and what its programs changed (files, deletions, the
    /// sandbox's registry layer); this capsule and its sandbox stay as they are.
    Commit {
        /// NAME[:TAG] of the new capsule.
        new: String,
    },
}

/// `--base` of a snapshot or install capture.
#[derive(Debug, Args)]
pub struct Base {
    /// What the machines that run the capsule are assumed to have, and so is left out:
    /// `minimal` (Debian's required packages with glibc: a minbase root), `none` (only a
    /// kernel: the loader, glibc and interpreters go in too) or `host` (machines like this
    /// one: only what the capture changed). Everything else the captured programs, scripts
    /// and packages need is added from the capture's source (this host, or the root the
    /// capture ran over).
    #[arg(long, value_enum, default_value_t = BaseArg::Minimal, value_name = "BASE")]
    pub base: BaseArg,
}

/// The values of `--base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaseArg {
    /// Debian's required packages with glibc (a minbase root).
    Minimal,
    /// Nothing but a kernel.
    None,
    /// Machines like the capture host.
    Host,
}

impl From<BaseArg> for capsule_core::manifest::BaseKind {
    fn from(b: BaseArg) -> Self {
        match b {
            BaseArg::Minimal => capsule_core::manifest::BaseKind::Minimal,
            BaseArg::None => capsule_core::manifest::BaseKind::None,
            BaseArg::Host => capsule_core::manifest::BaseKind::Host,
        }
    }
}
