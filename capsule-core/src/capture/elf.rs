//! ELF closure, "Exodus-style": [`closure`] / [`closure_in`] find every file the dynamic loader
//! needs to run some host binaries — each binary, its PT_INTERP loader and the transitive
//! DT_NEEDED closure — and return them as a [`Closure`]; failures are [`ElfError`]s.
//!
//! Resolution follows glibc 2.36's ld.so(8) on Debian bookworm x86-64 (`elf/dl-load.c`):
//! for a DT_NEEDED name without a slash, the DT_RPATH of the needing object (ignored when that
//! object has DT_RUNPATH) and of every object up its loader chain, then that object's own
//! DT_RUNPATH, then `/etc/ld.so.cache` ([`super::ldcache::LdCache`]), then the default
//! directories. LD_LIBRARY_PATH is deliberately not consulted at capture: a capsule must not
//! depend on the capturing shell's environment. A [`Resolver`] is given the one a run sets
//! instead (the capsule's library directories: `capture::needs`), searched where ld.so searches
//! LD_LIBRARY_PATH, after DT_RPATH and before DT_RUNPATH.
//!
//! Files are read through a [`Tree`]: the host, a directory as `/` ([`Sysroot`]), or a
//! capsule's entries over the host (`capture::needs::CapsuleTree`).
//!
//! Invariants:
//! - every input is resolved as its own process (its own loaded set and loader chain), because
//!   that is how each will run; the results are merged afterwards;
//! - paths in a [`Closure`] are absolute capsule paths as ld.so would open them, without the
//!   sysroot prefix, not canonicalized (a symlink found stays the symlink) but without `.` or
//!   `..` components (`$ORIGIN/../lib/x.so` has its `..` resolved as the kernel would), and no
//!   path appears twice;
//! - every read from the filesystem goes through the sysroot, symlinks included, so a fake tree
//!   is never escaped by an absolute symlink;
//! - a candidate whose ELF class, byte order or machine differ from the needing object is
//!   skipped, as ld.so's `open_verify` does; untrusted bytes are only read through bounds checks.

mod object;
mod sysroot;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use goblin::elf::header::ELFCLASS64;

use self::object::{ElfInfo, abi, parse_elf};
use self::sysroot::without_dots;
pub use self::sysroot::{Bytes, Mapped, Node, Sysroot, Tree, resolve_in_root};
use super::ldcache::LdCache;

/// What the loader needs for `binaries`.
#[derive(Debug, Clone)]
pub struct Closure {
    /// Every file to pack, as absolute host paths exactly as found (not canonicalized: symlinks
    /// like /lib/x86_64-linux-gnu/libjq.so.1 stay as such — the caller records the symlink
    /// chain), except that no path has `.` or `..` components: in ld.so's `/opt/a/bin/../lib/x.so`
    /// the part up to the last `..` is resolved, giving `/opt/a/lib/x.so`. Inputs first, then the
    /// interpreter(s), then libraries in discovery order. No duplicates.
    pub files: Vec<PathBuf>,
    /// PT_INTERP of each input that has one (deduped), e.g. /lib64/ld-linux-x86-64.so.2. An
    /// interpreter that does not exist is listed here and in `missing`, but not in `files`.
    pub interpreters: Vec<PathBuf>,
    /// (needed-by file, soname) pairs that could not be found anywhere.
    pub missing: Vec<(PathBuf, String)>,
}

/// Why a closure could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// An input could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The input.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An input is not an ELF file (a `#!` script, for instance).
    #[error("{} is not an ELF file", path.display())]
    NotElf {
        /// The input.
        path: PathBuf,
    },
    /// An input is an ELF file whose headers or dynamic section do not hold together.
    #[error("failed to parse ELF file {}: {reason}", path.display())]
    Parse {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Resolve against the real filesystem root "/" and /etc/ld.so.cache.
pub fn closure(binaries: &[PathBuf]) -> Result<Closure, ElfError> {
    closure_in(Path::new("/"), binaries)
}

/// Same, but every absolute path (interpreter, search dirs, ld.so.cache) is looked up under
/// `sysroot` (so tests can build a fake tree); paths in the result are still absolute *capsule*
/// paths (without the sysroot prefix).
pub fn closure_in(sysroot: &Path, binaries: &[PathBuf]) -> Result<Closure, ElfError> {
    closure_over(&Sysroot(sysroot), &[], binaries)
}

/// Same, in any [`Tree`], with `library_path` searched as ld.so searches LD_LIBRARY_PATH.
pub fn closure_over(tree: &dyn Tree, library_path: &[PathBuf], binaries: &[PathBuf]) -> Result<Closure, ElfError> {
    let mut resolver = Resolver::new(tree, library_path.to_vec());
    let (mut inputs, mut interpreters, mut present, mut libs) = (vec![], vec![], vec![], vec![]);
    let mut missing = Vec::new();
    for binary in binaries {
        let path = std::path::absolute(binary).map_err(|source| ElfError::Read { path: binary.clone(), source })?;
        let found = resolver.program(&path)?;
        inputs.push(without_dots(tree, &path));
        if let Some((interp, exists)) = found.interpreter {
            if exists {
                present.push(interp.clone());
            }
            if !interpreters.contains(&interp) {
                interpreters.push(interp);
            }
        }
        libs.extend(found.libs);
        for pair in found.missing {
            if !missing.contains(&pair) {
                missing.push(pair);
            }
        }
    }
    let mut seen = HashSet::new();
    let files = inputs.into_iter().chain(present).chain(libs).filter(|p| seen.insert(p.clone())).collect();
    Ok(Closure { files, interpreters, missing })
}

/// One loaded object of a simulated process (glibc's `struct link_map`).
struct Obj {
    path: PathBuf,
    info: Rc<ElfInfo>,
    /// `$ORIGIN`: the executable's real directory (ld.so reads /proc/self/exe), otherwise the
    /// directory of the path the object was found at.
    origin: PathBuf,
    /// The object whose DT_NEEDED first brought this one in (`l_loader`).
    loader: Option<usize>,
    /// Names it answers to: the DT_NEEDED names that found it and its DT_SONAME.
    names: Vec<String>,
}

/// The outcome of resolving one input as a process.
#[derive(Debug, Default)]
pub struct Found {
    /// Its PT_INTERP, and whether that exists.
    pub interpreter: Option<(PathBuf, bool)>,
    /// The libraries loaded, in the order ld.so maps them, as found.
    pub libs: Vec<PathBuf>,
    /// (needed-by file, soname or interpreter path) pairs found nowhere.
    pub missing: Vec<(PathBuf, String)>,
}

/// Resolves inputs one at a time in one [`Tree`], parsing each file once: what `closure_over`
/// does, input by input, for callers that decide per input (`capture::needs`).
pub struct Resolver<'a> {
    world: World<'a>,
}

impl<'a> Resolver<'a> {
    /// A resolver over `tree`, its ld.so.cache (`/etc/ld.so.cache` in it), and `library_path`
    /// searched as LD_LIBRARY_PATH.
    pub fn new(tree: &'a dyn Tree, library_path: Vec<PathBuf>) -> Self {
        Resolver { world: World::new(tree, library_path) }
    }

    /// Loads absolute path `path` as its own process, as [`closure_over`] does each input;
    /// paths in the result have no `.` or `..` components.
    pub fn program(&mut self, path: &Path) -> Result<Found, ElfError> {
        let tree = self.world.tree;
        let tidy = |p: PathBuf| without_dots(tree, &p);
        let found = self.world.process(path)?;
        Ok(Found {
            interpreter: found.interpreter.map(|(i, e)| (tidy(i), e)),
            libs: found.libs.into_iter().map(tidy).collect(),
            missing: found.missing.into_iter().map(|(by, name)| (tidy(by), name)).collect(),
        })
    }

    /// `path` with every symlink resolved in the tree; `None` if it does not resolve.
    pub fn canonical(&self, path: &Path) -> Option<PathBuf> {
        resolve_in_root(self.world.tree, path).ok()
    }
}

/// How a DT_NEEDED entry was satisfied.
enum Hit {
    /// By an object already loaded; `Some(path)` if ld.so opened it under a new path first.
    Loaded(usize, Option<PathBuf>),
    /// By a new object.
    New(PathBuf, Rc<ElfInfo>),
}

/// The tree, its ld.so.cache, the LD_LIBRARY_PATH a run sets, and a cache of parsed files.
struct World<'a> {
    tree: &'a dyn Tree,
    ldcache: LdCache,
    library_path: Vec<PathBuf>,
    probed: HashMap<PathBuf, Option<Rc<ElfInfo>>>,
}

impl<'a> World<'a> {
    fn new(tree: &'a dyn Tree, library_path: Vec<PathBuf>) -> Self {
        let mut world = World { tree, ldcache: LdCache::default(), library_path, probed: HashMap::new() };
        let path = Path::new("/etc/ld.so.cache");
        // ld.so silently goes without a cache that is missing or that it cannot use.
        match resolve_in_root(tree, path).and_then(|p| tree.read(&p)) {
            Ok((bytes, _)) => match LdCache::parse(&bytes) {
                Ok(cache) => world.ldcache = cache,
                Err(e) => tracing::warn!("ignoring ld.so cache {}: {e}", path.display()),
            },
            Err(e) => tracing::debug!("no ld.so cache: {e}"),
        }
        world
    }

    /// Reads and parses `path`; the errors are those of an input.
    fn load(&self, path: &Path) -> Result<ElfInfo, ElfError> {
        let read_err = |source| ElfError::Read { path: path.to_path_buf(), source };
        let canonical = resolve_in_root(self.tree, path).map_err(read_err)?;
        let (bytes, id) = self.tree.read(&canonical).map_err(read_err)?;
        parse_elf(path, &bytes, canonical, id)
    }

    /// A candidate library: `None` if it is absent or unusable (ld.so moves on to the next).
    fn probe(&mut self, path: &Path) -> Option<Rc<ElfInfo>> {
        if let Some(known) = self.probed.get(path) {
            return known.clone();
        }
        let info = match self.load(path) {
            Ok(info) => Some(Rc::new(info)),
            Err(ElfError::Read { source, .. }) => {
                tracing::trace!("no {}: {source}", path.display());
                None
            }
            Err(e) => {
                tracing::warn!("skipping library candidate: {e}");
                None
            }
        };
        self.probed.insert(path.to_path_buf(), info.clone());
        info
    }

    /// Simulates loading `path` as a program: its interpreter, then DT_NEEDED breadth-first,
    /// in the order `_dl_map_object_deps` maps them.
    fn process(&mut self, path: &Path) -> Result<Found, ElfError> {
        let info = Rc::new(self.load(path)?);
        // ld.so takes the executable's $ORIGIN from /proc/self/exe, i.e. symlinks resolved.
        let origin = if info.interp.is_some() { &info.canonical } else { path };
        let origin = origin.parent().unwrap_or(Path::new("/")).to_path_buf();
        let names = info.soname.iter().cloned().collect();
        let mut objs = vec![Obj { path: path.to_path_buf(), info: info.clone(), origin, loader: None, names }];
        let mut found = Found::default();
        if let Some(interp) = &info.interp {
            let interp = std::path::absolute(interp).unwrap_or_else(|_| interp.clone());
            let obj = self.probe(&interp).map(|i| interpreter_obj(&interp, i));
            found.interpreter = Some((interp.clone(), obj.is_some()));
            match obj {
                Some(obj) => objs.push(obj),
                None => found.missing.push((path.to_path_buf(), interp.display().to_string())),
            }
        }
        // The interpreter's own dependencies are not walked: ld.so is self-contained.
        let mut queue = VecDeque::from([0]);
        while let Some(idx) = queue.pop_front() {
            let Some(needed) = objs.get(idx).map(|o| o.info.needed.clone()) else {
                continue;
            };
            for name in needed {
                match self.find(&objs, idx, &name) {
                    Some(Hit::Loaded(j, new_path)) => {
                        found.libs.extend(new_path);
                        if let Some(obj) = objs.get_mut(j).filter(|o| !o.names.contains(&name)) {
                            obj.names.push(name);
                        }
                    }
                    Some(Hit::New(lib, info)) => {
                        tracing::debug!("{name} => {}", lib.display());
                        found.libs.push(lib.clone());
                        queue.push_back(objs.len());
                        objs.push(library_obj(lib, info, idx, name));
                    }
                    None => found.missing.push((objs_path(&objs, idx), name)),
                }
            }
        }
        Ok(found)
    }

    /// `_dl_map_object` for DT_NEEDED `name` of object `idx`.
    fn find(&mut self, objs: &[Obj], idx: usize, name: &str) -> Option<Hit> {
        let needer = objs.get(idx)?;
        if name.contains('/') {
            // A path: DSTs are expanded, no search happens (ld.so(8)).
            let path = PathBuf::from(expand(name, needer)?);
            let path = std::path::absolute(&path).unwrap_or(path);
            return self.candidate(objs, needer, path);
        }
        if let Some(j) = objs.iter().position(|o| o.names.iter().any(|n| n == name)) {
            return Some(Hit::Loaded(j, None));
        }
        let candidates = self.candidates(objs, idx, name);
        candidates.into_iter().find_map(|path| self.candidate(objs, needer, path))
    }

    /// Opens one candidate as ld.so's `open_verify` + the inode check in `_dl_map_object_from_fd`.
    fn candidate(&mut self, objs: &[Obj], needer: &Obj, path: PathBuf) -> Option<Hit> {
        if let Some(j) = objs.iter().position(|o| o.path == path) {
            return Some(Hit::Loaded(j, None));
        }
        let info = self.probe(&path)?;
        let (want, got) = (&needer.info, &info);
        if (want.class, want.data, want.machine) != (got.class, got.data, got.machine) {
            tracing::debug!("skipping {}: wrong ELF class or machine", path.display());
            return None;
        }
        match objs.iter().position(|o| o.info.id == info.id) {
            Some(j) => Some(Hit::Loaded(j, Some(path))),
            None => Some(Hit::New(path, info)),
        }
    }

    /// Every path ld.so would try for `name` needed by object `idx`, in order.
    fn candidates(&self, objs: &[Obj], idx: usize, name: &str) -> Vec<PathBuf> {
        let Some(needer) = objs.get(idx) else {
            return Vec::new();
        };
        let mut dirs = Vec::new();
        // ld.so(8): DT_RPATH applies only if the needing object has no DT_RUNPATH; then the
        // RPATHs of the objects that loaded it apply too, up to the executable.
        if needer.info.runpath.is_none() {
            let mut at = Some(idx);
            while let Some(obj) = at.and_then(|i| objs.get(i)) {
                dirs.extend(obj.info.rpath.iter().flat_map(|r| search_list(r, obj)));
                at = obj.loader;
            }
        }
        // LD_LIBRARY_PATH (the run's), then DT_RUNPATH, the needing object's own and not
        // inherited.
        dirs.extend(self.library_path.iter().cloned());
        dirs.extend(needer.info.runpath.iter().flat_map(|r| search_list(r, needer)));
        let mut paths: Vec<PathBuf> = dirs.into_iter().map(|d| d.join(name)).collect();
        let abi = abi(&needer.info);
        let in_system_dir = |p: &Path| abi.dirs.iter().any(|d| p.starts_with(d));
        if let Some(cached) = self.ldcache.lookup(name, needer.info.class == ELFCLASS64) {
            // DF_1_NODEFLIB rejects cache entries that live in the system dirs.
            if !(needer.info.nodeflib && in_system_dir(cached)) {
                paths.push(cached.to_path_buf());
            }
        }
        if !needer.info.nodeflib {
            paths.extend(abi.dirs.iter().map(|d| Path::new(d).join(name)));
        }
        paths
    }
}

fn objs_path(objs: &[Obj], idx: usize) -> PathBuf {
    objs.get(idx).map(|o| o.path.clone()).unwrap_or_default()
}

fn interpreter_obj(path: &Path, info: Rc<ElfInfo>) -> Obj {
    // rtld.c names the loader both by its PT_INTERP path and by its DT_SONAME, so libc's
    // DT_NEEDED "ld-linux-x86-64.so.2" is satisfied by it without a search.
    let names = std::iter::once(path.display().to_string()).chain(info.soname.clone()).collect();
    let origin = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    Obj { path: path.to_path_buf(), info, origin, loader: None, names }
}

fn library_obj(path: PathBuf, info: Rc<ElfInfo>, loader: usize, name: String) -> Obj {
    let origin = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let names = std::iter::once(name).chain(info.soname.clone()).collect();
    Obj { path, info, origin, loader: Some(loader), names }
}

/// The directories of a ':'-separated DT_RPATH/DT_RUNPATH of `obj`, DSTs expanded. Empty
/// entries (the current directory to ld.so) and other relative ones are dropped: the working
/// directory at capture says nothing about the one at run time.
fn search_list(list: &str, obj: &Obj) -> Vec<PathBuf> {
    list.split(':')
        .filter(|e| !e.is_empty())
        .filter_map(|e| expand(e, obj))
        .filter(|e| e.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Expands `$ORIGIN`, `$LIB` and `$PLATFORM` (bare or braced) as glibc's `_dl_dst_substitute`
/// does. `None` when a known token has no value, which makes ld.so drop the entry; an unknown
/// `$NAME` is kept literally.
fn expand(entry: &str, obj: &Obj) -> Option<String> {
    let abi = abi(&obj.info);
    let mut out = String::with_capacity(entry.len());
    let mut rest = entry;
    while let Some(at) = rest.find('$') {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let after = tail.get(1..).unwrap_or("");
        let token = [("ORIGIN", obj.origin.to_str()), ("LIB", Some(abi.lib)), ("PLATFORM", Some(abi.platform))]
            .into_iter()
            .find_map(|(name, value)| dst_len(after, name).map(|len| (len, value)));
        match token {
            Some((len, value)) => {
                out.push_str(value.filter(|v| !v.is_empty())?);
                rest = after.get(len..).unwrap_or("");
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// glibc's `is_dst`: the length of `name` or `{name}` at the start of `input`, if the bare form
/// is not followed by more identifier characters.
fn dst_len(input: &str, name: &str) -> Option<usize> {
    if let Some(braced) = input.strip_prefix('{') {
        return braced.strip_prefix(name)?.starts_with('}').then_some(name.len() + 2);
    }
    let tail = input.strip_prefix(name)?;
    match tail.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => None,
        _ => Some(name.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::ffi::OsStr;
    use std::fs;

    use goblin::elf::header::EM_X86_64;
    use std::process::Command;

    const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";

    fn run(cmd: &mut Command) {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Compiles `src` with gcc and `args` into `out`.
    fn gcc(dir: &Path, out: &Path, src: &str, args: &[&str]) {
        let c = dir.join(format!("{}.c", out.file_name().unwrap().to_string_lossy()));
        fs::write(&c, src).unwrap();
        run(Command::new("gcc").arg("-o").arg(out).arg(&c).args(args));
    }

    fn shared_lib(dir: &Path, out: &Path, src: &str, args: &[&str]) {
        let mut all = vec!["-shared", "-fPIC"];
        all.extend_from_slice(args);
        gcc(dir, out, src, &all);
    }

    const FIX_C: &str = "int fix(void) { return 42; }\n";
    const MAIN_FIX_C: &str = "int fix(void);\nint main(void) { return fix() == 42 ? 0 : 1; }\n";

    fn canon(paths: impl IntoIterator<Item = PathBuf>) -> BTreeSet<PathBuf> {
        paths.into_iter().map(|p| fs::canonicalize(&p).unwrap_or(p)).collect()
    }

    /// What `ldd` says: (files found, canonicalized, plus `binary`; names not found).
    fn ldd(binary: &Path) -> (BTreeSet<PathBuf>, BTreeSet<String>) {
        let out = Command::new("ldd").arg(binary).output().unwrap();
        assert!(out.status.success(), "ldd {}: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
        let (mut found, mut missing) = (vec![binary.to_path_buf()], BTreeSet::new());
        for line in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            if line.starts_with("linux-vdso") || line.is_empty() {
                continue;
            }
            let (name, rest) = line.split_once(" => ").unwrap_or(("", line));
            if rest.starts_with("not found") {
                missing.insert(name.to_string());
            } else {
                found.push(PathBuf::from(rest.split(" (").next().unwrap()));
            }
        }
        (canon(found), missing)
    }

    fn assert_matches_ldd(binary: &Path) -> Closure {
        let closure = closure(&[binary.to_path_buf()]).unwrap();
        let (found, missing) = ldd(binary);
        assert_eq!(canon(closure.files.clone()), found, "closure {closure:#?}");
        let ours: BTreeSet<String> = closure.missing.iter().map(|(_, n)| n.clone()).collect();
        assert_eq!(ours, missing);
        let unique: HashSet<&PathBuf> = closure.files.iter().collect();
        assert_eq!(unique.len(), closure.files.len(), "duplicates in {:?}", closure.files);
        closure
    }

    #[test]
    fn jq_matches_ldd() {
        let jq = Path::new("/usr/bin/jq");
        if !jq.exists() {
            println!("SKIP jq not installed");
            return;
        }
        let closure = assert_matches_ldd(jq);
        assert_eq!(closure.files.first().map(PathBuf::as_path), Some(jq));
        assert_eq!(closure.files.get(1).map(PathBuf::as_path), Some(Path::new(LD_SO)));
        assert_eq!(closure.interpreters, vec![PathBuf::from(LD_SO)]);
        assert!(closure.missing.is_empty());
        // Found as ld.so finds it, through the cache: the symlink, not its target.
        assert!(closure.files.contains(&PathBuf::from("/lib/x86_64-linux-gnu/libjq.so.1")));
    }

    /// <tmp>/lib/libfix.so and <tmp>/bin/app linked with `$ORIGIN/../lib` under `dtags`.
    fn origin_fixture(dtags: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let (lib, bin) = (tmp.path().join("lib"), tmp.path().join("bin"));
        fs::create_dir_all(&lib).unwrap();
        fs::create_dir_all(&bin).unwrap();
        let so = lib.join("libfix.so");
        shared_lib(tmp.path(), &so, FIX_C, &[]);
        let app = bin.join("app");
        let libdir = format!("-L{}", lib.display());
        gcc(tmp.path(), &app, MAIN_FIX_C, &[&libdir, "-lfix", "-Wl,-rpath,$ORIGIN/../lib", dtags]);
        (tmp, app, lib.join("libfix.so"))
    }

    #[test]
    fn runpath_origin_fixture() {
        let (_tmp, app, expected) = origin_fixture("-Wl,--enable-new-dtags");
        let closure = assert_matches_ldd(&app);
        assert_eq!(closure.files.first(), Some(&app));
        assert_eq!(closure.files.get(2), Some(&expected), "libfix.so is found first, `..` resolved");
        assert_eq!(closure.interpreters, vec![PathBuf::from(LD_SO)]);
    }

    #[test]
    fn rpath_origin_fixture() {
        let (_tmp, app, expected) = origin_fixture("-Wl,--disable-new-dtags");
        let closure = assert_matches_ldd(&app);
        assert!(closure.files.contains(&expected));
    }

    /// app → libouter.so → libinner.so, all of them in <tmp>/lib, only app has a search path.
    fn chain_fixture(dtags: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib");
        fs::create_dir_all(&lib).unwrap();
        let libdir = format!("-L{}", lib.display());
        shared_lib(tmp.path(), &lib.join("libinner.so"), "int inner(void) { return 7; }\n", &[]);
        let outer = "int inner(void);\nint outer(void) { return inner() + 1; }\n";
        shared_lib(tmp.path(), &lib.join("libouter.so"), outer, &[&libdir, "-linner"]);
        let app = tmp.path().join("app");
        let main = "int outer(void);\nint main(void) { return outer() == 8 ? 0 : 1; }\n";
        let link = format!("-Wl,-rpath-link,{}", lib.display());
        gcc(tmp.path(), &app, main, &[&libdir, "-louter", &link, "-Wl,-rpath,$ORIGIN/lib", dtags]);
        (tmp, app)
    }

    #[test]
    fn rpath_is_inherited_by_dependencies() {
        let (tmp, app) = chain_fixture("-Wl,--disable-new-dtags");
        let closure = assert_matches_ldd(&app);
        assert!(closure.files.contains(&tmp.path().join("lib/libinner.so")));
        assert!(closure.missing.is_empty());
    }

    #[test]
    fn runpath_is_not_inherited() {
        let (tmp, app) = chain_fixture("-Wl,--enable-new-dtags");
        let closure = assert_matches_ldd(&app);
        let outer = tmp.path().join("lib/libouter.so");
        assert_eq!(closure.missing, vec![(outer, "libinner.so".to_string())]);
    }

    #[test]
    fn wrong_machine_candidate_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let (wrong, right) = (tmp.path().join("wrong"), tmp.path().join("right"));
        fs::create_dir_all(&wrong).unwrap();
        fs::create_dir_all(&right).unwrap();
        shared_lib(tmp.path(), &right.join("libfix.so"), FIX_C, &[]);
        // The same library claiming to be aarch64 (e_machine at offset 18) comes first.
        let mut bytes = fs::read(right.join("libfix.so")).unwrap();
        bytes.splice(18..20, 183u16.to_le_bytes());
        fs::write(wrong.join("libfix.so"), bytes).unwrap();
        let app = tmp.path().join("app");
        let libdir = format!("-L{}", right.display());
        let rpath = "-Wl,-rpath,$ORIGIN/wrong:$ORIGIN/right";
        gcc(tmp.path(), &app, MAIN_FIX_C, &[&libdir, "-lfix", rpath, "-Wl,--enable-new-dtags"]);
        let closure = assert_matches_ldd(&app);
        assert!(closure.files.contains(&right.join("libfix.so")));
        assert!(!closure.files.contains(&wrong.join("libfix.so")));
    }

    #[test]
    fn static_binary_is_its_own_closure() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("static");
        gcc(tmp.path(), &app, "int main(void) { return 0; }\n", &["-static"]);
        let closure = closure(std::slice::from_ref(&app)).unwrap();
        assert_eq!(closure.files, vec![app]);
        assert!(closure.interpreters.is_empty());
        assert!(closure.missing.is_empty());
    }

    #[test]
    fn shared_library_input() {
        let tmp = tempfile::tempdir().unwrap();
        let so = tmp.path().join("libfix.so");
        shared_lib(tmp.path(), &so, "#include <stdio.h>\nvoid fix(void) { puts(\"x\"); }\n", &[]);
        let closure = closure(std::slice::from_ref(&so)).unwrap();
        assert!(closure.interpreters.is_empty());
        assert_eq!(closure.files.first(), Some(&so));
        let names: BTreeSet<_> = closure.files.iter().filter_map(|p| p.file_name()).collect();
        assert!(names.contains(OsStr::new("libc.so.6")), "{closure:?}");
        // libc's DT_NEEDED on the loader is searched for, as nothing loaded it first.
        assert!(names.contains(OsStr::new("ld-linux-x86-64.so.2")), "{closure:?}");
    }

    #[test]
    fn several_inputs_are_merged_without_duplicates() {
        let (_tmp, app, lib) = origin_fixture("-Wl,--enable-new-dtags");
        let (_tmp2, app2, _) = origin_fixture("-Wl,--disable-new-dtags");
        let closure = closure(&[app.clone(), app2.clone(), app.clone()]).unwrap();
        assert_eq!(closure.files.get(..3), Some(&[app, app2, PathBuf::from(LD_SO)][..]));
        assert_eq!(closure.files.get(3), Some(&lib));
        assert_eq!(closure.interpreters.len(), 1);
        let unique: HashSet<&PathBuf> = closure.files.iter().collect();
        assert_eq!(unique.len(), closure.files.len());
    }

    #[test]
    fn nodeflib_skips_system_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("libnd.so");
        let src = "double nd(double x);\ndouble nd(double x) { return x; }\n";
        shared_lib(tmp.path(), &lib, src, &["-Wl,-z,nodefaultlib", "-Wl,--no-as-needed", "-lm"]);
        let app = tmp.path().join("app");
        let libdir = format!("-L{}", tmp.path().display());
        let main = "double nd(double);\nint main(void) { return nd(1.0) == 1.0 ? 0 : 1; }\n";
        gcc(tmp.path(), &app, main, &[&libdir, "-lnd", "-Wl,-rpath,$ORIGIN"]);
        // libnd's libm comes from neither the cache (a system dir) nor the default dirs; libc
        // is found because the executable, which needs it too, has no DF_1_NODEFLIB.
        let closure = assert_matches_ldd(&app);
        assert_eq!(closure.missing, vec![(lib, "libm.so.6".to_string())]);
    }

    #[test]
    fn executable_origin_is_its_real_directory() {
        // ld.so takes the executable's $ORIGIN from /proc/self/exe, so a symlinked program
        // finds $ORIGIN/../lib next to its target. (ldd disagrees: it runs the program through
        // ld.so, which then uses the path as given.)
        let tmp = tempfile::tempdir().unwrap();
        let (real, link) = (tmp.path().join("real"), tmp.path().join("link/bin"));
        fs::create_dir_all(real.join("lib")).unwrap();
        fs::create_dir_all(real.join("bin")).unwrap();
        fs::create_dir_all(&link).unwrap();
        shared_lib(tmp.path(), &real.join("lib/libfix.so"), FIX_C, &[]);
        let libdir = format!("-L{}", real.join("lib").display());
        gcc(tmp.path(), &real.join("bin/app"), MAIN_FIX_C, &[&libdir, "-lfix", "-Wl,-rpath,$ORIGIN/../lib"]);
        std::os::unix::fs::symlink("../../real/bin/app", link.join("app")).unwrap();
        let app = link.join("app");
        assert!(Command::new(&app).status().unwrap().success(), "the fixture runs");
        let closure = closure(std::slice::from_ref(&app)).unwrap();
        assert!(closure.files.contains(&real.join("lib/libfix.so")), "{closure:?}");
        assert_eq!(closure.files.first(), Some(&app));
        assert!(closure.missing.is_empty());
    }

    #[test]
    fn script_is_not_elf() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("run.sh");
        fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        match closure(std::slice::from_ref(&script)) {
            Err(ElfError::NotElf { path }) => assert_eq!(path, script),
            other => panic!("expected NotElf, got {other:?}"),
        }
        let err = closure(std::slice::from_ref(&script)).unwrap_err().to_string();
        assert_eq!(err, format!("{} is not an ELF file", script.display()));
    }

    #[test]
    fn unreadable_input_is_an_error() {
        let missing = PathBuf::from("/nonexistent/capsule-test-binary");
        assert!(matches!(closure(&[missing]), Err(ElfError::Read { .. })));
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad");
        fs::write(&bad, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(matches!(closure(&[bad]), Err(ElfError::Parse { .. })));
    }

    /// Copies the host's real loader and libc into `root` at Debian's locations, with
    /// bookworm's merged-/usr symlinks; the loader link's absolute target exists only in `root`.
    fn fake_debian_root(root: &Path) {
        let multiarch = root.join("usr/lib/x86_64-linux-gnu");
        fs::create_dir_all(&multiarch).unwrap();
        fs::create_dir_all(root.join("usr/lib64")).unwrap();
        fs::create_dir_all(root.join("fakeld")).unwrap();
        fs::copy(fs::canonicalize(LD_SO).unwrap(), root.join("fakeld/ld.so")).unwrap();
        fs::copy("/lib/x86_64-linux-gnu/libc.so.6", multiarch.join("libc.so.6")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
        std::os::unix::fs::symlink("/fakeld/ld.so", root.join("usr/lib64/ld-linux-x86-64.so.2")).unwrap();
    }

    #[test]
    fn closure_in_fake_sysroot() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fake_debian_root(&root);
        let so = root.join("usr/lib/x86_64-linux-gnu/libfix.so");
        shared_lib(tmp.path(), &so, FIX_C, &[]);
        fs::create_dir_all(root.join("bin")).unwrap();
        let libdir = format!("-L{}", so.parent().unwrap().display());
        // libm exists on the host but not in the fake root.
        let args = [libdir.as_str(), "-lfix", "-Wl,--no-as-needed", "-lm"];
        gcc(tmp.path(), &root.join("bin/app"), MAIN_FIX_C, &args);
        let closure = closure_in(&root, &[PathBuf::from("/bin/app")]).unwrap();
        let expected: Vec<PathBuf> =
            ["/bin/app", LD_SO, "/lib/x86_64-linux-gnu/libfix.so", "/lib/x86_64-linux-gnu/libc.so.6"]
                .into_iter()
                .map(PathBuf::from)
                .collect();
        assert_eq!(closure.files, expected);
        assert_eq!(closure.interpreters, vec![PathBuf::from(LD_SO)]);
        assert_eq!(closure.missing, vec![(PathBuf::from("/bin/app"), "libm.so.6".to_string())]);
    }

    #[test]
    fn closure_in_reports_a_missing_interpreter() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        gcc(tmp.path(), &root.join("bin/app"), "int main(void) { return 0; }\n", &[]);
        let closure = closure_in(&root, &[PathBuf::from("/bin/app")]).unwrap();
        assert_eq!(closure.files, vec![PathBuf::from("/bin/app")]);
        assert_eq!(closure.interpreters, vec![PathBuf::from(LD_SO)]);
        let app = PathBuf::from("/bin/app");
        assert_eq!(closure.missing, vec![(app.clone(), LD_SO.to_string()), (app, "libc.so.6".to_string())]);
    }

    #[test]
    fn closure_in_uses_the_sysroot_ld_so_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fake_debian_root(&root);
        let fixdir = root.join("opt/fix");
        fs::create_dir_all(&fixdir).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/ld.so.conf"), "/opt/fix\n").unwrap();
        shared_lib(tmp.path(), &fixdir.join("libfixc.so.1"), FIX_C, &["-Wl,-soname,libfixc.so.1"]);
        let out = Command::new("ldconfig").arg("-r").arg(&root).output().unwrap();
        if !out.status.success() || !root.join("etc/ld.so.cache").exists() {
            println!("SKIP ldconfig -r failed: {}", String::from_utf8_lossy(&out.stderr));
            return;
        }
        fs::create_dir_all(root.join("bin")).unwrap();
        let libdir = format!("-L{}", fixdir.display());
        gcc(tmp.path(), &root.join("bin/app"), MAIN_FIX_C, &[&libdir, "-l:libfixc.so.1"]);
        let closure = closure_in(&root, &[PathBuf::from("/bin/app")]).unwrap();
        assert!(closure.files.contains(&PathBuf::from("/opt/fix/libfixc.so.1")), "{closure:?}");
        assert!(closure.missing.is_empty(), "{closure:?}");
    }

    fn obj(origin: &str) -> Obj {
        let info = ElfInfo {
            class: ELFCLASS64,
            data: 1,
            machine: EM_X86_64,
            interp: None,
            needed: vec![],
            soname: None,
            rpath: None,
            runpath: None,
            nodeflib: false,
            canonical: PathBuf::new(),
            id: (0, 0),
        };
        Obj {
            path: PathBuf::from(origin).join("x"),
            info: Rc::new(info),
            origin: origin.into(),
            loader: None,
            names: vec![],
        }
    }

    #[test]
    fn dynamic_string_tokens() {
        let o = obj("/opt/app/bin");
        let e = |s: &str| expand(s, &o);
        assert_eq!(e("$ORIGIN/../lib").as_deref(), Some("/opt/app/bin/../lib"));
        assert_eq!(e("${ORIGIN}/x:").as_deref(), Some("/opt/app/bin/x:"));
        assert_eq!(e("/usr/$LIB/${PLATFORM}").as_deref(), Some("/usr/lib/x86_64-linux-gnu/x86_64"));
        assert_eq!(e("/a/$ORIGINAL").as_deref(), Some("/a/$ORIGINAL"), "not a DST: kept literally");
        assert_eq!(e("/a/$FOO/b$").as_deref(), Some("/a/$FOO/b$"));
        assert_eq!(e("/a/${ORIGIN").as_deref(), Some("/a/${ORIGIN"));
        assert_eq!(e("$ORIGIN.d").as_deref(), Some("/opt/app/bin.d"));
        let dirs = search_list(":$ORIGIN/lib::relative:/abs/", &o);
        assert_eq!(dirs, vec![PathBuf::from("/opt/app/bin/lib"), PathBuf::from("/abs/")]);
    }
}
