//! What a capsule needs from the host that it does not carry, and which of that this host
//! lacks (`capsule check`, and `capsule run` before it starts a program).
//!
//! The capsule is seen as a run sees it: its entries over the host ([`CapsuleTree`]: a capsule
//! entry wins, a path the capsule deleted is absent, anything else is the host's), with the
//! run's LD_LIBRARY_PATH (the capsule's library directories, [`library_path`]) searched as
//! ld.so searches it. In that tree:
//!
//! - every ELF program and library of the capsule is loaded as [`super::elf`] loads a program
//!   (PT_INTERP, DT_NEEDED as ld.so resolves them): programs first, then the libraries no
//!   program of the capsule loaded, each as its own process (a plugin that is `dlopen`ed);
//! - every executable `#!` script's interpreter is looked up (not below `/usr/share/doc`: examples
//!   are read, not run), and for `/usr/bin/env NAME`,
//!   NAME in the run's PATH;
//! - every entry point's program is looked up;
//! - [`kernel_needs`] says which kernel features the run options need.
//!
//! A need is missing when the tree has nothing there: not in the capsule, not on this host.
//! The same code answers "what does this capsule need from the host" (the needs the capsule's
//! own entries do not satisfy), which a capture can use to decide what to add.
//!
//! Invariant: nothing is written; capsule files are read from their blobs (or, in a run, the
//! cache files the run has already made), never materialised.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::elf::{Bytes, ElfError, Node, Resolver, Sysroot, Tree, resolve_in_root};
use crate::digest::Digest;
use crate::manifest::{Entry, EntryKind, Followed, Manifest, RelPath};
use crate::store::Store;
use crate::view::Mode;

/// Reads the content of a capsule file: the first `limit` bytes, or all of it.
pub type Content<'a> = dyn Fn(&Entry, &Digest, Option<u64>) -> io::Result<Bytes> + 'a;

/// A capsule's entries over the host's `/`, as a run sees them.
pub struct CapsuleTree<'a> {
    manifest: &'a Manifest,
    deleted: BTreeSet<RelPath>,
    content: Box<Content<'a>>,
    /// The directory standing for `/` below the capsule: the host's `/`, or a capture's
    /// source root (`capture install --root`).
    lower: PathBuf,
}

/// The largest capsule file read whole (an ELF file; the biggest real libraries are a few
/// hundred MiB): a capsule is untrusted, and its declared sizes may be up to 1 TiB.
pub const MAX_READ: u64 = 1 << 30;

/// The `st_dev` given to capsule files: ld.so tells files apart by `(st_dev, st_ino)`, and a
/// run links every file of one digest to one cache inode, so the digest stands for the inode.
const CAPSULE_DEV: u64 = u64::MAX;

impl<'a> CapsuleTree<'a> {
    /// `manifest` over the host, its files read by `content`.
    pub fn new(manifest: &'a Manifest, content: Box<Content<'a>>) -> Self {
        CapsuleTree {
            manifest,
            deleted: manifest.deletions.iter().cloned().collect(),
            content,
            lower: PathBuf::from("/"),
        }
    }

    /// The same capsule over directory `root` instead of the host's `/`.
    pub fn over(mut self, root: &Path) -> Self {
        root.clone_into(&mut self.lower);
        self
    }

    /// Whether absolute `path` (no symlink followed) is the capsule's, not the lower tree's.
    pub fn in_capsule(&self, path: &Path) -> bool {
        matches!(self.entry(path), Ok(Some(_)))
    }

    /// `manifest` over the host, its files read from their blobs in `store` (a blob the store
    /// does not have, as after a lazy pull, is a file that cannot be read).
    pub fn from_store(store: &'a Store, manifest: &'a Manifest) -> Self {
        let content = move |_: &Entry, digest: &Digest, limit: Option<u64>| {
            let mut blob = store.open_blob(digest).map_err(|e| io::Error::other(e.to_string()))?;
            let mut out = Vec::new();
            match limit {
                Some(n) => blob.take(n).read_to_end(&mut out)?,
                None => blob.read_to_end(&mut out)?,
            };
            Ok(Bytes::Owned(out))
        };
        CapsuleTree::new(manifest, Box::new(content))
    }

    /// The capsule's entry at absolute path `path` (no symlink followed), if it is not the
    /// host's: `Err(())` when the capsule deleted it.
    fn entry(&self, path: &Path) -> Result<Option<&'a Entry>, ()> {
        let Ok(rel) = RelPath::from_host(path.as_os_str().as_bytes()) else { return Ok(None) };
        // ld.so reads the host's cache: it opens it before any hook is armed.
        if rel.as_bytes() == b"etc/ld.so.cache" {
            return Ok(None);
        }
        if let Some(e) = self.manifest.get(&rel) {
            return Ok(Some(e));
        }
        let gone = self.deleted.contains(&rel) || rel.ancestors().any(|a| self.deleted.contains(&a));
        if gone { Err(()) } else { Ok(None) }
    }

    /// The regular file entry holding the content of `e` (a hardlink's first name).
    fn file_of(&self, e: &'a Entry) -> Option<(&'a Entry, Digest)> {
        match &e.kind {
            EntryKind::File { digest, .. } => Some((e, *digest)),
            EntryKind::Hardlink { target } => match self.manifest.get(target) {
                Some(t @ Entry { kind: EntryKind::File { digest, .. }, .. }) => Some((t, *digest)),
                _ => None,
            },
            _ => None,
        }
    }

    /// The first `n` bytes of capsule file `e`.
    fn head(&self, e: &'a Entry, n: u64) -> io::Result<Bytes> {
        let (file, digest) = self.file_of(e).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        (self.content)(file, &digest, Some(n))
    }

    /// Whether `path` leads to a regular file here (in the capsule or on the host).
    pub fn is_file(&self, path: &Path) -> bool {
        resolve_in_root(self, path).is_ok_and(|p| self.lstat(&p).is_ok_and(|n| n == Node::File))
    }
}

fn absent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

impl Tree for CapsuleTree<'_> {
    fn lstat(&self, path: &Path) -> io::Result<Node> {
        if path == Path::new("/") {
            return Ok(Node::Dir);
        }
        match self.entry(path) {
            Ok(Some(e)) => Ok(match e.kind {
                EntryKind::Dir => Node::Dir,
                EntryKind::Symlink { .. } => Node::Symlink,
                EntryKind::File { .. } | EntryKind::Hardlink { .. } => Node::File,
            }),
            Ok(None) => Sysroot(&self.lower).lstat(path),
            Err(()) => Err(absent()),
        }
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        match self.entry(path) {
            Ok(Some(Entry { kind: EntryKind::Symlink { target }, .. })) => Ok(PathBuf::from(OsStr::from_bytes(target))),
            Ok(Some(_)) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
            Ok(None) => Sysroot(&self.lower).read_link(path),
            Err(()) => Err(absent()),
        }
    }

    fn read(&self, path: &Path) -> io::Result<(Bytes, (u64, u64))> {
        match self.entry(path) {
            Ok(Some(e)) => {
                let (file, digest) = self.file_of(e).ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
                if let EntryKind::File { size, .. } = file.kind
                    && size > MAX_READ
                {
                    return Err(io::Error::other(format!("{size} bytes: larger than the {MAX_READ} examined")));
                }
                let mut ino = [0u8; 8];
                ino.copy_from_slice(digest.0.get(..8).unwrap_or(&[0; 8]));
                Ok(((self.content)(file, &digest, None)?, (CAPSULE_DEV, u64::from_le_bytes(ino))))
            }
            Ok(None) => Sysroot(&self.lower).read(path),
            Err(()) => Err(absent()),
        }
    }
}

/// What is needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Want {
    /// A shared library (a DT_NEEDED name, or a path).
    Library(String),
    /// The ELF interpreter (PT_INTERP).
    Loader(String),
    /// A `#!` interpreter.
    Interpreter(String),
    /// A command `/usr/bin/env` looks up in PATH.
    Command(String),
    /// The program an entry point names.
    Program(String),
    /// A kernel feature.
    Kernel(String),
}

/// One thing the capsule needs that is missing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Need {
    /// Who needs it: a path (in the capsule, or the host's), `entry point NAME`, or a run option.
    pub by: String,
    /// What.
    #[serde(flatten)]
    pub want: Want,
    /// Why it is missing.
    pub why: String,
}

/// Why a file is missing.
pub const NOWHERE: &str = "not in the capsule, not on this host";

impl Need {
    fn file(by: impl Into<String>, want: Want) -> Need {
        Need { by: by.into(), want, why: NOWHERE.to_owned() }
    }
}

impl Need {
    /// Who needs what, without why: the same need found on two machines has the same key
    /// ([`crate::manifest::Base::unmet`]).
    pub fn key(&self) -> String {
        let full = self.to_string();
        let suffix = format!(": {}", self.why);
        full.strip_suffix(&suffix).map(str::to_owned).unwrap_or(full)
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = &self.by;
        match &self.want {
            Want::Library(n) => write!(f, "{by} needs {n}")?,
            Want::Loader(p) => write!(f, "{by} needs its ELF interpreter {p}")?,
            Want::Interpreter(p) => write!(f, "{by} needs its #! interpreter {p}")?,
            Want::Command(n) => write!(f, "{by} needs {n} (#!/usr/bin/env {n})")?,
            Want::Program(p) => write!(f, "{by} needs {p}")?,
            Want::Kernel(k) => write!(f, "{by} needs {k}")?,
        }
        write!(f, ": {}", self.why)
    }
}

/// What [`capsule_needs`] looked at and found missing.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The missing needs, sorted, without duplicates.
    pub missing: Vec<Need>,
    /// ELF programs and libraries of the capsule whose needs were resolved (each program as a
    /// process, each library in a program's process or as its own).
    pub elf: usize,
    /// `#!` scripts of the capsule whose interpreter was looked up.
    pub scripts: usize,
    /// Entry points looked up.
    pub entry_points: usize,
    /// Capsule files that could not be read or parsed (path, why): their needs are unknown.
    pub unreadable: Vec<(String, String)>,
    /// The files outside the capsule that its needs were met with (libraries, loaders, `#!`
    /// interpreters, `env` commands, entry points' host programs), as they were found (a
    /// library's symlink stays the symlink): what a capture adds for a closure.
    #[serde(skip)]
    pub used: BTreeSet<PathBuf>,
}

/// The directories a run puts in LD_LIBRARY_PATH: those holding the capsule's shared
/// libraries (`run::prepare` links them into the tree), as capsule paths.
pub fn library_dirs(m: &Manifest) -> Vec<RelPath> {
    let mut dirs: Vec<RelPath> = Vec::new();
    for e in m.entries.iter().filter(|e| is_library(e)) {
        if let Some(parent) = e.path.parent()
            && !dirs.contains(&parent)
        {
            dirs.push(parent);
        }
    }
    dirs
}

/// Whether a run links `e` eagerly as a shared library: a `lib*.so*` file, hardlink or symlink.
pub fn is_library(e: &Entry) -> bool {
    let name = e.path.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default();
    name.starts_with(b"lib")
        && name.windows(3).any(|w| w == b".so")
        && matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. } | EntryKind::Symlink { .. })
}

/// [`library_dirs`] as absolute paths, for a [`Resolver`].
pub fn library_path(m: &Manifest) -> Vec<PathBuf> {
    library_dirs(m).iter().map(RelPath::to_absolute).collect()
}

/// The PATH a run's `/usr/bin/env` searches: the capsule's `PATH`, else `host_path`, else
/// the usual default.
pub fn search_path(m: &Manifest, host_path: Option<&OsStr>) -> Vec<PathBuf> {
    let own = m.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| OsStr::new(v.as_str()));
    let path = own.or(host_path).unwrap_or(OsStr::new("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    std::env::split_paths(path).filter(|p| p.is_absolute()).collect()
}

/// Bytes read of a file to classify it: the `#!` line, or the ELF header and program headers.
const HEAD: u64 = 4096;

/// Everything `manifest` needs that `tree` (the capsule over this host) lacks.
pub fn capsule_needs(tree: &CapsuleTree<'_>, library_path: &[PathBuf], path: &[PathBuf]) -> Report {
    let m = tree.manifest;
    let mut report = Report::default();
    let (mut programs, mut libraries, mut scripts) = (Vec::new(), Vec::new(), Vec::new());
    for e in &m.entries {
        let exec = e.mode & 0o111 != 0;
        let name = e.path.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default();
        let maybe_lib = name.windows(3).any(|w| w == b".so");
        if !(exec || maybe_lib) || !matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
            continue;
        }
        // Documentation is read, not run: Debian ships examples there with whatever `#!`
        // their authors had (`debian/rules` naming make, a Ruby script in redis-tools).
        if e.path.as_bytes().starts_with(b"usr/share/doc/") {
            continue;
        }
        let head = match tree.head(e, HEAD) {
            Ok(h) => h,
            Err(err) => {
                report.unreadable.push((e.path.display(), err.to_string()));
                continue;
            }
        };
        if head.starts_with(b"\x7fELF") {
            if has_interp(&head) {
                programs.push(e.path.to_absolute());
            } else {
                libraries.push(e.path.to_absolute());
            }
        } else if exec && crate::exec::shebang(&head).is_some() {
            scripts.push((e.path.to_absolute(), head));
        }
    }
    let mut resolver = Resolver::new(tree, library_path.to_vec());
    let mut missing = BTreeSet::new();
    let mut loaded: HashSet<PathBuf> = HashSet::new();
    let mut load =
        |path: &Path, report: &mut Report, loaded: &mut HashSet<PathBuf>, missing: &mut BTreeSet<Need>| match resolver
            .program(path)
        {
            Ok(found) => {
                report.elf += 1;
                let interp = found.interpreter.iter().filter(|(_, exists)| *exists).map(|(i, _)| i);
                for l in found.libs.iter().chain(interp) {
                    let Some(canonical) = resolver.canonical(l) else { continue };
                    if !tree.in_capsule(&canonical) {
                        report.used.insert(l.clone());
                    }
                    loaded.insert(canonical);
                }
                missing.extend(elf_missing(found.interpreter.as_ref(), found.missing));
            }
            Err(e) => report.unreadable.push((path.display().to_string(), elf_error(&e))),
        };
    for p in &programs {
        load(p, &mut report, &mut loaded, &mut missing);
    }
    // A library no program loaded is loaded as its own process (dlopen): its own needs.
    for l in &libraries {
        let canonical = resolve_in_root(tree, l).unwrap_or_else(|_| l.clone());
        if loaded.contains(&canonical) {
            report.elf += 1;
        } else {
            load(l, &mut report, &mut loaded, &mut missing);
        }
    }
    for (p, head) in &scripts {
        report.scripts += 1;
        missing.extend(script_missing(tree, p, head, path));
        report.used.extend(script_used(tree, head, path));
    }
    for ep in &m.entry_points {
        report.entry_points += 1;
        let p = ep.path.to_absolute();
        if let Ok(real) = resolve_in_root(tree, &p)
            && !tree.in_capsule(&real)
            && tree.is_file(&real)
        {
            report.used.insert(p.clone());
        }
        if !tree.is_file(&p) {
            // A capsule symlink out of the capsule: the host file it names is what is missing.
            let shown = match m.follow(&ep.path) {
                Some(Followed::Host(h)) => h.to_absolute(),
                _ => p,
            };
            let want = Want::Program(shown.display().to_string());
            missing.insert(Need::file(format!("entry point {}", ep.name), want));
        }
    }
    // A library the capsule has but that could not be read (a blob a lazy pull left in the
    // registry) is not missing: its needs are unknown, which `unreadable` says.
    if !report.unreadable.is_empty() {
        let unread: HashSet<PathBuf> = report.unreadable.iter().map(|(p, _)| PathBuf::from(p)).collect();
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        for e in &m.entries {
            let p = e.path.to_absolute();
            if resolve_in_root(tree, &p).is_ok_and(|r| unread.contains(&r)) {
                names.insert(e.path.as_bytes().rsplit(|&c| c == b'/').next().unwrap_or_default().to_vec());
            }
        }
        missing.retain(|n| !matches!(&n.want, Want::Library(l) if names.contains(l.as_bytes())));
    }
    report.missing = missing.into_iter().collect();
    report
}

/// What starting `program` (an absolute path as the run names it: a capsule program, a script,
/// or a host program) needs that `tree` lacks: its `#!` interpreters, then the ELF program's
/// loader and libraries. Only this program's own closure: cheap enough for every run.
pub fn program_needs(tree: &CapsuleTree<'_>, library_path: &[PathBuf], path: &[PathBuf], program: &Path) -> Vec<Need> {
    let mut cur = program.to_path_buf();
    for _ in 0..crate::exec::MAX_DEPTH {
        let Some(head) = head_of(tree, &cur) else { return Vec::new() };
        if head.starts_with(b"\x7fELF") {
            let mut resolver = Resolver::new(tree, library_path.to_vec());
            return match resolver.program(&cur) {
                Ok(found) => elf_missing(found.interpreter.as_ref(), found.missing).collect(),
                Err(_) => Vec::new(), // the kernel's exec says what is wrong with it
            };
        }
        let missing = script_missing(tree, &cur, &head, path);
        if !missing.is_empty() {
            return missing;
        }
        match interpreter(&head) {
            Some(i) => cur = i,
            None => return Vec::new(),
        }
    }
    Vec::new()
}

/// The first [`HEAD`] bytes of the file `path` leads to, in the capsule or on the host.
fn head_of(tree: &CapsuleTree<'_>, path: &Path) -> Option<Bytes> {
    let real = resolve_in_root(tree, path).ok()?;
    match tree.entry(&real) {
        Ok(Some(e)) => tree.head(e, HEAD).ok(),
        Ok(None) => {
            let rel = real.strip_prefix("/").unwrap_or(&real);
            let f = std::fs::File::open(tree.lower.join(rel)).ok()?;
            let mut out = Vec::new();
            f.take(HEAD).read_to_end(&mut out).ok()?;
            Some(Bytes::Owned(out))
        }
        Err(()) => None,
    }
}

/// Whether the ELF file whose first bytes are `head` has a PT_INTERP (is a program to ld.so).
fn has_interp(head: &[u8]) -> bool {
    let Some(e) = crate::exec::elf(head) else { return false };
    crate::exec::interp_segment(&e, |off, buf| {
        let from = usize::try_from(off).unwrap_or(usize::MAX);
        let avail = head.get(from..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(avail.get(..n).unwrap_or_default());
        n
    })
    .is_some()
}

/// The `#!` interpreter of a script whose head is `head`.
fn interpreter(head: &[u8]) -> Option<PathBuf> {
    let sb = crate::exec::shebang(head)?;
    Some(PathBuf::from(OsStr::from_bytes(head.get(sb.interp)?)))
}

/// The needs of an ELF program [`Resolver::program`] reported missing.
fn elf_missing(interp: Option<&(PathBuf, bool)>, missing: Vec<(PathBuf, String)>) -> impl Iterator<Item = Need> {
    let loader = interp.map(|(p, _)| p.display().to_string());
    missing.into_iter().map(move |(by, name)| {
        let want = if Some(&name) == loader.as_ref() { Want::Loader(name) } else { Want::Library(name) };
        Need::file(by.display().to_string(), want)
    })
}

/// What the `#!` line of script `script` (its first bytes `head`) names that is missing: the
/// interpreter, or the command `/usr/bin/env` would look for in `path`.
fn script_missing(tree: &CapsuleTree<'_>, script: &Path, head: &[u8], path: &[PathBuf]) -> Vec<Need> {
    let Some(sb) = crate::exec::shebang(head) else { return Vec::new() };
    let Some(interp) = head.get(sb.interp.clone()) else { return Vec::new() };
    let by = script.display().to_string();
    let interp_path = PathBuf::from(OsStr::from_bytes(interp));
    if !tree.is_file(&interp_path) {
        return vec![Need::file(by, Want::Interpreter(interp_path.display().to_string()))];
    }
    if interp_path.file_name() != Some(OsStr::new("env")) {
        return Vec::new();
    }
    // env's words: options (`-S` splits the rest) and NAME=VALUE are skipped; the first other
    // word is the command.
    let arg = sb.arg.and_then(|r| head.get(r)).unwrap_or_default();
    let words = arg.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty());
    let Some(cmd) = words.into_iter().find(|w| !w.starts_with(b"-") && !w.contains(&b'=')) else {
        return Vec::new();
    };
    let cmd = Path::new(OsStr::from_bytes(cmd));
    let found = if cmd.as_os_str().as_bytes().contains(&b'/') {
        tree.is_file(cmd)
    } else {
        path.iter().any(|d| tree.is_file(&d.join(cmd)))
    };
    if found {
        return Vec::new();
    }
    let why = "not in the capsule's or this host's PATH".to_owned();
    vec![Need { by, want: Want::Command(cmd.display().to_string()), why }]
}

/// The files outside the capsule the `#!` line of a script (its first bytes `head`) is met
/// with: the interpreter, and the command `/usr/bin/env` finds in `path`.
fn script_used(tree: &CapsuleTree<'_>, head: &[u8], path: &[PathBuf]) -> Vec<PathBuf> {
    let Some(sb) = crate::exec::shebang(head) else { return Vec::new() };
    let Some(interp) = head.get(sb.interp.clone()) else { return Vec::new() };
    let interp = PathBuf::from(OsStr::from_bytes(interp));
    let outside = |p: &Path| resolve_in_root(tree, p).is_ok_and(|r| !tree.in_capsule(&r) && tree.is_file(&r));
    let mut out = Vec::new();
    if outside(&interp) {
        out.push(interp.clone());
    }
    if interp.file_name() == Some(OsStr::new("env")) {
        let arg = sb.arg.and_then(|r| head.get(r)).unwrap_or_default();
        let mut words = arg.split(|c| *c == b' ' || *c == b'\t').filter(|w| !w.is_empty());
        if let Some(cmd) = words.find(|w| !w.starts_with(b"-") && !w.contains(&b'=')) {
            let cmd = Path::new(OsStr::from_bytes(cmd));
            let found = if cmd.is_absolute() {
                Some(cmd.to_path_buf())
            } else {
                path.iter().map(|d| d.join(cmd)).find(|p| tree.is_file(p))
            };
            out.extend(found.filter(|p| outside(p)));
        }
    }
    out
}

fn elf_error(e: &ElfError) -> String {
    match e {
        ElfError::Read { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// What this kernel offers the run options ([`Kernel::probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// Landlock's ABI (0: none).
    pub landlock_abi: i32,
    /// seccomp's USER_NOTIF action (tier 2).
    pub user_notif: bool,
    /// Unprivileged user namespaces (rootless `--netns`).
    pub user_namespaces: bool,
}

impl Kernel {
    /// Asks this kernel (the probes of `capsule doctor`).
    pub fn probe() -> Kernel {
        let probes = crate::probe::all();
        let ok = |name: &str| probes.iter().any(|p| p.name == name && p.ok);
        Kernel {
            landlock_abi: crate::run::confine::kernel_abi(),
            user_notif: ok("seccomp user notification"),
            user_namespaces: ok("user namespaces"),
        }
    }
}

/// What a run needs of the kernel.
#[derive(Debug, Clone, Default)]
pub struct RunNeeds {
    /// The effective isolation rules (`run::effective_rules`).
    pub rules: Vec<(String, Mode)>,
    /// `--unconfined`: no Landlock wanted.
    pub unconfined: bool,
    /// Why the run needs tier 2 (`supervisor::auto::reason`, `--seccomp always`), if it does.
    pub tier2: Option<String>,
    /// `--netns` without root.
    pub rootless_netns: bool,
}

/// The kernel features `run` needs that `kernel` lacks.
pub fn kernel_needs(run: &RunNeeds, kernel: &Kernel) -> Vec<Need> {
    let mut out = Vec::new();
    if !run.unconfined
        && kernel.landlock_abi <= 0
        && let Some((prefix, _)) = run.rules.iter().find(|(_, m)| *m == Mode::Full)
    {
        out.push(Need {
            by: format!("isolation full for {prefix}"),
            want: Want::Kernel("Landlock".to_owned()),
            why: "this kernel has no Landlock (run it with --unconfined to go without)".to_owned(),
        });
    }
    if let Some(why) = &run.tier2
        && !kernel.user_notif
    {
        out.push(Need {
            by: format!("the seccomp supervisor ({why})"),
            want: Want::Kernel("seccomp user notification".to_owned()),
            why: "this kernel does not offer SECCOMP_RET_USER_NOTIF".to_owned(),
        });
    }
    if run.rootless_netns && !kernel.user_namespaces {
        out.push(Need {
            by: "--netns without root".to_owned(),
            want: Want::Kernel("unprivileged user namespaces".to_owned()),
            why: "this kernel or its settings refuse them".to_owned(),
        });
    }
    out
}

/// Why running the entry points of `m` needs tier 2 when the shim alone cannot virtualise
/// them: the first static or Go entry program (read in `tree`), or what the capsule carries.
pub fn tier2_reason(tree: &CapsuleTree<'_>, m: &Manifest) -> Option<String> {
    use crate::supervisor::auto::{Linkage, linkage_of, reason};
    for ep in &m.entry_points {
        let Some(head) = head_of(tree, &ep.path.to_absolute()) else { continue };
        let linkage = linkage_of(&head);
        if linkage != Linkage::Dynamic {
            return reason(linkage, m).map(|r| format!("entry point {}: {r}", ep.name));
        }
    }
    reason(Linkage::Dynamic, m)
}

#[cfg(test)]
mod tests;
