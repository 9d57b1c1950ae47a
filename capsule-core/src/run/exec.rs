//! The launcher's first exec, resolved in the capsule's view as the shim's exec hooks resolve
//! every later one: a `#!` interpreter is looked up in the capsule before the host, the
//! script is handed to it by its virtual path (`$0` is `/usr/bin/phar`, not the tree's
//! copy), and a capsule program whose loader the capsule carries is started with that loader
//! (`ld.so --argv0 ARGV0 PROGRAM ARGS`), so a capsule with its own glibc runs on any host
//! glibc. What is about to run is materialised first, with every file of its directory (a
//! launcher that execs a sibling of `$0` finds it).
//!
//! The parsing is [`crate::exec`]'s, shared with the shim; this module only locates files
//! (the manifest, then the host) and reads them.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Prepared, RunError, materialize};
use crate::exec::{self, HEAD, INTERP_CAP, MAX_DEPTH};
use crate::manifest::{EntryKind, Followed, RelPath};
use crate::store::Store;

/// The environment variable telling the shim that the capsule carries a loader of its own,
/// to start the capsule's programs with: [`Loader::value`].
pub const LOADER_VAR: &str = "CAPSULE_LOADER";

/// The x86-64 loader's path, the `PT_INTERP` of every x86-64 glibc program.
const LDSO: &[u8] = b"/lib64/ld-linux-x86-64.so.2";

/// How the capsule's own loader is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// `ld.so --argv0 ARGV0 PROGRAM ARGS` (glibc ≥ 2.33): the program keeps its argv[0].
    Argv0,
    /// `ld.so PROGRAM ARGS`: an older loader; the program's argv[0] is its tree path.
    Plain,
}

impl Loader {
    /// [`LOADER_VAR`]'s value.
    pub fn value(self) -> &'static str {
        match self {
            Loader::Argv0 => "argv0",
            Loader::Plain => "plain",
        }
    }
}

/// The program to start and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// What to execve: a tree or host path (the interpreter, or the capsule's loader).
    pub path: PathBuf,
    /// argv[0].
    pub argv0: OsString,
    /// Arguments before the command line's (the interpreter's argument and the script's
    /// virtual path; the loader's options and the program).
    pub prefix: Vec<OsString>,
    /// The ELF program that will run (the interpreter, or the program the loader loads):
    /// what decides the tier.
    pub elf: PathBuf,
    /// Files read to decide (scripts, interpreters): a launch plan must see them unchanged.
    pub inputs: Vec<PathBuf>,
}

impl Program {
    /// `path` as it is, with argv[0] `argv0`: the kernel's exec.
    pub fn plain(path: PathBuf, argv0: OsString) -> Program {
        Program { elf: path.clone(), path, argv0, prefix: Vec::new(), inputs: Vec::new() }
    }
}

/// A file located for exec: its host path (in the tree or on the host), and whether the
/// capsule holds it.
struct Located {
    host: PathBuf,
    in_tree: bool,
}

/// Find `name` (a virtual path as an exec would name it) in the capsule, materialising it
/// (and, with `dir`, every file of its directory), or on the host. A capsule symlink that
/// leads out of the capsule (`/usr/bin/redis-server` → `redis-check-rdb`, which the host
/// has) is followed, as the view's resolver follows it. `None`: neither has a regular file
/// there.
fn locate(store: &Store, p: &Prepared, name: &[u8], dir: bool) -> Result<Option<Located>, RunError> {
    let mut target = name.to_vec();
    if let Ok(rel) = RelPath::from_host(name) {
        match p.manifest.follow(&rel) {
            Some(Followed::Capsule(resolved, e)) => {
                if !matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
                    return Ok(None);
                }
                materialize::link_entry(store, p.sandbox.tree(), &p.manifest, &resolved)?;
                if let Some(d) = resolved.parent().filter(|_| dir) {
                    link_dir(store, p, &d)?;
                }
                let host = p.sandbox.tree().join(std::ffi::OsStr::from_bytes(resolved.as_bytes()));
                return Ok(Some(Located { host, in_tree: true }));
            }
            Some(Followed::Host(out)) => target = [b"/", out.as_bytes()].concat(),
            None => return Ok(None),
        }
    }
    // A program the sandbox holds (an earlier run installed it: write-copy put it in the
    // tree), which the view finds before the host's.
    if let Ok(rel) = RelPath::from_host(&target) {
        let tree = p.sandbox.tree().join(std::ffi::OsStr::from_bytes(rel.as_bytes()));
        if std::fs::symlink_metadata(&tree).is_ok_and(|m| m.is_file()) {
            return Ok(Some(Located { host: tree, in_tree: true }));
        }
    }
    let host = PathBuf::from(std::ffi::OsStr::from_bytes(&target));
    Ok(host.is_file().then_some(Located { host, in_tree: false }))
}

/// Link every capsule file of `dir` into the tree (those the sandbox deleted excepted), as
/// the materialiser does before a listing, once per sandbox.
fn link_dir(store: &Store, p: &Prepared, dir: &RelPath) -> Result<(), RunError> {
    if p.sandbox.linked_dirs()?.contains(dir) {
        return Ok(());
    }
    let deleted = p.sandbox.whiteouts()?;
    for e in p.manifest.children(dir) {
        if !deleted.contains(&e.path) && matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
            materialize::link_entry(store, p.sandbox.tree(), &p.manifest, &e.path)?;
        }
    }
    p.sandbox.mark_linked(dir)
}

/// The first [`HEAD`] bytes of `path` (fewer for a shorter file); empty when unreadable.
fn head(path: &Path) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD);
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(HEAD as u64).read_to_end(&mut out);
    }
    out
}

/// The `PT_INTERP` path of the ELF program at `path`, if it has one.
fn interp_of(path: &Path, head: &[u8]) -> Option<Vec<u8>> {
    let e = exec::elf(head)?;
    let f = std::fs::File::open(path).ok()?;
    let (off, size) = exec::interp_segment(&e, |off, buf| f.read_at(buf, off).unwrap_or(0))?;
    let size = usize::try_from(size).ok().filter(|&s| s <= INTERP_CAP)?;
    let mut seg = vec![0u8; size];
    f.read_exact_at(&mut seg, off).ok()?;
    exec::interp_path(&seg).map(<[u8]>::to_vec)
}

/// Whether the ELF program at `path` gets the shim: dynamic, and not set-user/group-ID.
fn takes_shim(path: &Path, head: &[u8]) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let setid = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0);
    !setid && interp_of(path, head).is_some()
}

/// The loader the capsule carries, if it differs from the host's (the same file on both
/// sides changes nothing, and the program keeps its `/proc/self/exe`): how to start it.
pub fn loader(store: &Store, p: &Prepared) -> Result<Option<Loader>, RunError> {
    let Ok(rel) = RelPath::from_host(LDSO) else { return Ok(None) };
    let Some((resolved, _)) = p.manifest.resolve(&rel) else { return Ok(None) };
    let Some((_, digest)) = materialize::content(&p.manifest, &resolved) else { return Ok(None) };
    let host = std::fs::read(std::ffi::OsStr::from_bytes(LDSO)).ok();
    if host.is_some_and(|h| crate::digest::Digest::of(&h) == digest) {
        return Ok(None);
    }
    materialize::link_entry(store, p.sandbox.tree(), &p.manifest, &resolved)?;
    let path = p.sandbox.tree().join(std::ffi::OsStr::from_bytes(resolved.as_bytes()));
    let bytes = std::fs::read(&path).map_err(RunError::io("failed to read", &path))?;
    Ok(Some(if exec::loader_has_argv0(&bytes) { Loader::Argv0 } else { Loader::Plain }))
}

/// How to start `entry` (a virtual path, or a host program) in `p`: `None` when it is not a
/// program in the capsule or on the host. `loader`: [`loader`]'s answer.
pub fn program(store: &Store, p: &Prepared, entry: &str, loader: Option<Loader>) -> Result<Option<Program>, RunError> {
    let Some(first) = locate(store, p, entry.as_bytes(), true)? else { return Ok(None) };
    let plain = Program::plain(first.host.clone(), entry.into());
    // Follow the `#!` chain: (interpreter, its argument) per level, the script's name as
    // named, and where each file is.
    let mut names: Vec<Vec<u8>> = vec![entry.as_bytes().to_vec()];
    let mut args: Vec<Option<Vec<u8>>> = Vec::new();
    let mut cur = first;
    let mut virtualised = cur.in_tree;
    let mut inputs = Vec::new();
    let mut h = head(&cur.host);
    while let Some(sb) = exec::shebang(&h) {
        if args.len() == MAX_DEPTH {
            return Ok(Some(plain));
        }
        let interp = h.get(sb.interp.clone()).unwrap_or_default().to_vec();
        args.push(sb.arg.and_then(|r| h.get(r)).map(<[u8]>::to_vec));
        inputs.push(cur.host.clone());
        let Some(next) = locate(store, p, &interp, true)? else { return Ok(Some(plain)) };
        virtualised |= next.in_tree;
        names.push(interp);
        cur = next;
        h = head(&cur.host);
    }
    let elf = exec::elf(&h).is_some();
    let final_name = names.last().cloned().unwrap_or_default();
    // Scripts named by their virtual paths need an interpreter with the shim; a static one
    // from the host gets the kernel's exec, as before.
    let shim = elf && takes_shim(&cur.host, &h);
    let unchanged = if args.is_empty() {
        // Not a script: only the loader can change.
        !(cur.in_tree && shim && loader.is_some())
    } else {
        // Host script and interpreter: the kernel's business. An interpreter of another
        // format (binfmt_misc), or a static one from the host (without the shim it could not
        // open a virtual path): the kernel's exec, as before.
        !virtualised || !elf || (!shim && !cur.in_tree)
    };
    if unchanged {
        return Ok(Some(plain));
    }
    // argv as the kernel builds it for a chain of scripts: the last interpreter, then for
    // each level inwards its argument and the script it runs.
    let mut argv: Vec<OsString> = vec![OsString::from_vec(final_name)];
    for level in (0..args.len()).rev() {
        if let Some(a) = args.get(level).cloned().flatten() {
            argv.push(OsString::from_vec(a));
        }
        argv.push(OsString::from_vec(names.get(level).cloned().unwrap_or_default()));
    }
    if args.is_empty() {
        argv = vec![entry.into()];
    }
    inputs.push(cur.host.clone());
    let mut path = cur.host.clone();
    let ld = if cur.in_tree && shim { loader.and_then(|l| Some((l, interp_of(&cur.host, &h)?))) } else { None };
    if let Some((mode, ld_name)) = ld
        && let Some(ld) = locate(store, p, &ld_name, false)?.filter(|l| l.in_tree)
    {
        let mut with_ld: Vec<OsString> = vec![OsString::from_vec(ld_name)];
        let mut rest = argv.into_iter();
        let argv0 = rest.next().unwrap_or_default();
        if mode == Loader::Argv0 {
            with_ld.push("--argv0".into());
            with_ld.push(argv0);
        }
        with_ld.push(cur.host.clone().into_os_string());
        with_ld.extend(rest);
        argv = with_ld;
        inputs.push(ld.host.clone());
        path = ld.host;
    }
    let mut argv = argv.into_iter();
    Ok(Some(Program { path, argv0: argv.next().unwrap_or_default(), prefix: argv.collect(), elf: cur.host, inputs }))
}
