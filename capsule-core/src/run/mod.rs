//! Running a capsule, the store side: everything `capsule run` prepares before the program
//! starts, and the materialiser it serves while the program runs.
//!
//! - [`sandbox`]: the per-user, per-capsule writable tree (`sandboxes/NAME/root`). It starts
//!   as a skeleton of the capsule's directories and symlinks; files appear in it lazily as
//!   hardlinks to the decompressed cache, and the application's own writes land in it as
//!   private copies, so it persists across runs and `sandbox diff/reset` work on it.
//! - [`materialize`]: decompress a blob once into `cache/` (one inode per digest, mode and
//!   mtime) and link it into a tree; copy-up for writes.
//! - [`prepare`]: resolve the capsule through its ref (no index, no lock), compile or reuse the
//!   view, build the skeleton, and link the capsule's shared libraries eagerly (the dynamic
//!   loader opens them without libc, so no hook can materialise them on demand).

pub mod attach;
pub mod config;
pub mod confine;
pub mod exec;
pub mod identity;
pub mod lifetime;
pub mod materialize;
pub mod netns;
pub mod peer;
pub mod planner;
pub mod sandbox;
mod server;
pub mod shared;
pub mod signals;
pub mod user;
pub mod userns;

use std::fs;
use std::path::{Path, PathBuf};

pub use server::{Handle, OP_COPY_UP, OP_LINK, OP_LINK_DIR, OP_WHITEOUT, Server, requests_served, supervise_deferred};

use crate::digest::Digest;
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::store::{CapsuleRef, Store, StoreError};
use crate::view::{self, Mode, ViewOptions};

/// Errors preparing or serving a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A lazily pulled blob could not be fetched (boxed: it is large and rare, and every
    /// `RunError` would otherwise carry its size).
    #[error(transparent)]
    Oci(Box<crate::oci::OciError>),
    /// A filesystem step on a sandbox, cache or view path.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A bad identity value.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// An `--isolation` value that is not `MODE` or `PREFIX=MODE`.
    #[error("invalid isolation rule {0:?}: use merged|writecopy|full|readonly|passthrough, or /PREFIX=MODE")]
    Isolation(String),
    /// `full` isolation on a kernel without Landlock.
    #[error(
        "isolation full for {0} needs kernel confinement, and this kernel has no Landlock: the program could \
         reach the host with a raw system call (pass --unconfined to run it anyway)"
    )]
    Unconfined(String),
    /// A registry value a run cannot use.
    #[error("registry key {key} = {value:?} is not valid: {why}")]
    Registry {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What it should be.
        why: &'static str,
    },
    /// A link to a shared capsule that cannot be followed.
    #[error(transparent)]
    Link(#[from] shared::LinkError),
    /// A `--user` value that names no user or group of the capsule.
    #[error("capsule {capsule}: {why}")]
    User {
        /// The capsule.
        capsule: String,
        /// What is wrong (naming the user or group and the file looked in).
        why: String,
    },
}

impl From<crate::oci::OciError> for RunError {
    fn from(e: crate::oci::OciError) -> Self {
        RunError::Oci(Box::new(e))
    }
}

impl RunError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RunError {
        let path = path.into();
        move |source| RunError::Io { action, path, source }
    }
}

/// Parse one `--isolation` value: `MODE` (for "/") or `/PREFIX=MODE`.
pub fn parse_isolation(s: &str) -> Result<(String, Mode), RunError> {
    let (prefix, mode) = s.rsplit_once('=').unwrap_or(("/", s));
    let mode = match mode {
        "merged" => Mode::Merged,
        "writecopy" => Mode::WriteCopy,
        "full" => Mode::Full,
        "passthrough" => Mode::Passthrough,
        "readonly" => Mode::ReadOnly,
        _ => return Err(RunError::Isolation(s.to_owned())),
    };
    if !prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
        return Err(RunError::Isolation(s.to_owned()));
    }
    Ok((prefix.to_owned(), mode))
}

/// The default rules, ThinApp's: the system is write-copy (`/`, so `/usr`, `/etc`, `/opt`,
/// `/var`, `/srv`, `/boot`, `/bin`, `/lib*` and `/run`: a program's writes there land in its
/// sandbox, never on the host; the host's sockets in `/run` stay reachable, `connect` is not
/// redirected); the user's data is merged (`$HOME`, `/tmp`, `/var/tmp`, `/media`, `/mnt`,
/// `/run/user/UID`); `/dev`, `/proc` and `/sys` are passed through. The capsule's own paths
/// are write-copy (`ViewOptions::capsule_mode`).
pub fn default_rules() -> Vec<(String, Mode)> {
    let mut r = vec![("/".to_owned(), Mode::WriteCopy)];
    for p in ["/dev", "/proc", "/sys"] {
        r.push((p.to_owned(), Mode::Passthrough));
    }
    // Under `--isolation full` too, a pid file or a lock in /run lands in the sandbox while the
    // host's sockets there stay reachable.
    r.push(("/run".to_owned(), Mode::WriteCopy));
    for p in ["/tmp", "/var/tmp", "/media", "/mnt"] {
        r.push((p.to_owned(), Mode::Merged));
    }
    let uid = nix::unistd::getuid();
    r.push((format!("/run/user/{uid}"), Mode::Merged));
    if let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok())
        && home.starts_with('/')
        && !home.trim_end_matches('/').is_empty()
        && !home.split('/').any(|c| c == "..")
    {
        r.push((home.trim_end_matches('/').to_owned(), Mode::Merged));
    }
    r
}

/// The isolation rules a run of `manifest` with `--isolation` rules `run` follows: the
/// defaults, the capsule's over them, the run's over those (one per prefix, the later
/// winning), longest prefix first.
pub fn effective_rules(manifest: &Manifest, run: &[(String, Mode)]) -> Vec<(String, Mode)> {
    let mut all = default_rules();
    all.extend(manifest.isolation.iter().filter_map(|r| Some((r.prefix.clone(), mode_of(r.mode)?))));
    all.extend(run.iter().cloned());
    all.reverse(); // a later rule for the same prefix wins
    let mut seen = std::collections::HashSet::new();
    all.retain(|(p, _)| seen.insert(p.trim_end_matches('/').to_owned()));
    all.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    all
}

/// The rules a run of `manifest` in store `store` follows: [`effective_rules`], and the store
/// read-only ([`protect_store`]).
pub fn run_rules(store: &Path, manifest: &Manifest, run: &[(String, Mode)]) -> Vec<(String, Mode)> {
    let mut rules = effective_rules(manifest, run);
    protect_store(&mut rules, store);
    rules
}

/// `rules` with the store read-only wherever a rule lets the program see it (merged, passed
/// through or write-copy: the default store is in `$HOME`): no program writes the cache, the
/// capsules or another sandbox by its host path, and nothing of the store is copied into a
/// sandbox (a recursive `chown` from `/` under write-copy copied the store into its own
/// sandbox, level after level, until paths grew too long). A change there fails with EROFS in
/// both tiers (`resolve`); Landlock then expands a writable prefix around the store
/// (`run::confine`), and the broker makes what the kernel refuses there for nothing
/// (`supervisor::host`). The program's own tree, inside the store, is reached by its virtual
/// paths, and by its host path as one of them (`resolve::untree`). By the store's path as
/// given and by its canonical one (a rule holds on the inode the path names). Rules stay
/// longest prefix first.
pub fn protect_store(rules: &mut Vec<(String, Mode)>, store: &Path) {
    let mut paths = vec![store.to_path_buf()];
    if let Ok(c) = store.canonicalize()
        && c != store
    {
        paths.push(c);
    }
    for p in paths {
        let Some(s) = p.to_str().map(|s| s.trim_end_matches('/').to_owned()) else { continue };
        if !s.starts_with('/') || s.is_empty() {
            continue;
        }
        let governing = rules
            .iter()
            .filter(|(q, _)| {
                let q = q.trim_end_matches('/');
                q.is_empty() || s == q || s.strip_prefix(q).is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(q, _)| q.trim_end_matches('/').len())
            .map(|(_, m)| *m);
        if matches!(governing, Some(Mode::Merged | Mode::Passthrough | Mode::WriteCopy)) {
            rules.retain(|(q, _)| q.trim_end_matches('/') != s);
            rules.push((s, Mode::ReadOnly));
        }
    }
    rules.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
}

/// A mode's name as `--isolation` spells it.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Merged => "merged",
        Mode::WriteCopy => "writecopy",
        Mode::Full => "full",
        Mode::Passthrough => "passthrough",
        Mode::ReadOnly => "readonly",
    }
}

/// What `capsule run` needs to start the program.
#[derive(Debug)]
pub struct Prepared {
    /// The capsule's manifest digest.
    pub digest: Digest,
    /// Its manifest.
    pub manifest: Manifest,
    /// The compiled view file.
    pub view: PathBuf,
    /// The sandbox.
    pub sandbox: sandbox::Sandbox,
    /// Tree directories holding the capsule's shared libraries (for the loader's search path).
    pub lib_dirs: Vec<PathBuf>,
    /// Environment variables from the registry (`machine/env/…`, `user/env/…`).
    pub env: std::collections::BTreeMap<String, String>,
    /// The run's identity (checked).
    pub identity: crate::manifest::Identity,
    /// The effective isolation rules (defaults, the capsule's, the run's; one per prefix).
    pub rules: Vec<(String, Mode)>,
    /// State directories of linked shared capsules (read and written by the program).
    pub state_dirs: Vec<PathBuf>,
    /// Whether nothing but the inputs [`planner`] checks went into this preparation (no
    /// shared capsules, no registry edits of files, no identity), so a launch plan may stand
    /// for it.
    pub plannable: bool,
}

/// What a run asks for besides the capsule.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Isolation rules (over the defaults and the capsule's own; a later rule wins).
    pub rules: Vec<(String, Mode)>,
    /// Identity overrides.
    pub ident: crate::manifest::Identity,
    /// Shared capsules linked for this run (`--with`), besides the manifest's links.
    pub with: Vec<CapsuleRef>,
}

/// Prepare capsule `r` for a run in sandbox `sandbox_name` (default: the capsule's name, or
/// `NAME@HEX12` for a version named by digest: [`CapsuleRef::sandbox_name`]).
pub fn prepare(
    store: &Store,
    r: &CapsuleRef,
    opts: &RunOptions,
    sandbox_name: Option<&str>,
) -> Result<Prepared, RunError> {
    let (digest, manifest) = store.load(r)?;
    let default = r.sandbox_name();
    let sandbox = sandbox::Sandbox::open(store, sandbox_name.unwrap_or(&default))?;
    prepare_with(store, digest, manifest, sandbox, opts)
}

fn mode_of(i: crate::manifest::Isolation) -> Option<Mode> {
    use crate::manifest::Isolation;
    match i {
        Isolation::Merged => Some(Mode::Merged),
        Isolation::WriteCopy => Some(Mode::WriteCopy),
        Isolation::Full => Some(Mode::Full),
        Isolation::State => None,
    }
}

/// Prepare a run of `manifest` (digest `digest`, not necessarily in the store: `capture
/// install` runs its installer over an empty one) in `sandbox`.
pub fn prepare_with(
    store: &Store,
    digest: Digest,
    manifest: Manifest,
    sandbox: sandbox::Sandbox,
    run: &RunOptions,
) -> Result<Prepared, RunError> {
    sandbox.build_skeleton(&digest, &manifest)?;
    let links = shared::linked(store, &manifest, &run.with)?;
    let own_sandbox = sandbox.dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let state = shared::state_dirs(store, &manifest, &own_sandbox, &links)?;
    for l in &links {
        shared::record_user(store, &l.manifest.name, &manifest.name)?;
    }
    let all_rules = run_rules(store.root(), &manifest, &run.rules);
    let mut opts = ViewOptions {
        tree: sandbox.tree().to_owned(),
        capsule_mode: Mode::WriteCopy,
        rules: all_rules,
        whiteouts: sandbox.whiteouts()?,
        files: Vec::new(),
        redirects: state.iter().map(|s| (s.prefix.clone(), s.dir.clone())).collect(),
        linked: sandbox.linked_dirs()?,
    };
    // The prefix also exists in the tree, so that listings of its parent show it.
    for s in &state {
        let dir = sandbox.tree().join(std::ffi::OsStr::new(&*String::from_utf8_lossy(s.prefix.as_bytes())));
        fs::create_dir_all(&dir).map_err(RunError::io("failed to create", &dir))?;
    }
    let shared_layers: Vec<&Manifest> = links.iter().map(|l| &l.manifest).collect();
    let projected = config::project(store, &sandbox, &manifest, &shared_layers)?;
    // Identity: the manifest's defaults, the registry's identity keys over them, then the
    // run's options; every value checked.
    let identity = identity::effective_of(&[&manifest.identity, &projected.identity, &run.ident])?;
    opts.files.clone_from(&projected.files);
    let hosts = RelPath::new("etc/hosts").ok().and_then(|p| match manifest.get(&p) {
        Some(e @ crate::manifest::Entry { kind: EntryKind::File { digest, .. }, .. }) => {
            materialize::ensure_cache(store, digest, e).ok().and_then(|c| fs::read_to_string(c).ok())
        }
        _ => None,
    });
    opts.files.extend(identity::write_files(sandbox.tree(), &identity, hosts.as_deref())?);
    // Below a `full` prefix the host is invisible: the prefix itself exists, empty, in the tree.
    for (prefix, mode) in &opts.rules {
        if *mode == Mode::Full {
            let dir = sandbox.tree().join(prefix.trim_start_matches('/'));
            fs::create_dir_all(&dir).map_err(RunError::io("failed to create", &dir))?;
        }
    }
    let plannable = links.is_empty()
        && state.is_empty()
        && projected.files.is_empty()
        && opts.files.is_empty()
        && identity == crate::manifest::Identity::default();
    let bytes = view::compile(&manifest, &opts);
    let view = write_view(store, &bytes)?;
    let lib_dirs = link_libraries(store, &sandbox, &manifest)?;
    let (rules, state_dirs) = (opts.rules, state.iter().map(|s| s.dir.clone()).collect());
    Ok(Prepared {
        digest,
        manifest,
        view,
        sandbox,
        lib_dirs,
        env: projected.env,
        identity,
        rules,
        state_dirs,
        plannable,
    })
}

/// Write view bytes under their digest (reused when identical), atomically.
fn write_view(store: &Store, bytes: &[u8]) -> Result<PathBuf, RunError> {
    let dir = store.root().join("views");
    crate::store::private_dir(&dir).map_err(RunError::io("failed to create", &dir))?;
    let path = dir.join(format!("{}.view", Digest::of(bytes).to_hex()));
    if !path.exists() {
        materialize::write_atomic(&path, bytes, None)?;
    }
    Ok(path)
}

/// Shared libraries are linked into the tree before the program starts: ld.so opens them with
/// raw syscalls. Returns the directories that hold them.
fn link_libraries(store: &Store, sandbox: &sandbox::Sandbox, m: &Manifest) -> Result<Vec<PathBuf>, RunError> {
    let mut dirs = Vec::new();
    // The same entries, and so the same directories, as `capture::needs::library_dirs`.
    for e in m.entries.iter().filter(|e| crate::capture::needs::is_library(e)) {
        if !matches!(e.kind, EntryKind::Symlink { .. }) {
            materialize::link_entry(store, sandbox.tree(), m, &e.path)?;
        }
        if let Some(parent) = e.path.parent() {
            let d = sandbox
                .tree()
                .join(Path::new(std::ffi::OsStr::new(&String::from_utf8_lossy(parent.as_bytes()).into_owned())));
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    Ok(dirs)
}
