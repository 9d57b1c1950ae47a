//! Closure at capture (`--base`): what a snapshot or install capture needs from its source
//! beyond the base the capsule is declared to run on, added to the capsule.
//!
//! A snapshot or install capture holds what the capture changed. Its programs still need what
//! the capture host had before: libraries, `#!` interpreters, the packages its packages depend
//! on. [`complete`] adds them, measured against a [`BaseKind`]:
//!
//! - `minimal`: the source's `Priority: required` and `Essential: yes` packages with their
//!   dependency closure (glibc among them): what `mmdebstrap --variant=minbase` installs, less
//!   what one Debian release's minbase has and the next one's lacks ([`NOT_PORTABLE`]). Files
//!   of those packages are not copied, nor is a dependency on them followed.
//! - `none`: nothing is assumed; the loader, glibc and `/bin/sh` go in too.
//! - `host`: nothing is added (the capsule runs on machines like the capture host).
//!
//! What is added, in rounds until nothing new turns up:
//!
//! 1. every file of the captured packages (a snapshot of an upgrade holds only the files that
//!    changed; the rest are the old host's);
//! 2. the dpkg dependency closure (`Pre-Depends`, `Depends`; the first installed alternative,
//!    directly or through `Provides`) of the captured and added packages, less the base (but
//!    a base package a dependency names at one exact version comes along: `perl` needs
//!    `perl-base (= …)`, and another release's perl finds none of its modules), and every
//!    file of those packages;
//! 3. what [`needs::capsule_needs`] finds the capsule's programs, libraries, scripts and entry
//!    points met with outside the capsule ([`needs::Report::used`]), by path as found (the
//!    symlinks on the way go in too) and by the package owning it, unless that package is the
//!    base's. A `NAME-minimal` package brings `NAME` when the source has it (`python3-minimal`
//!    holds the interpreter, `python3` its standard library).
//!
//! Files come from the source root ([`Source::root`]), packages from its dpkg database (the
//! install's sandbox tree first: [`Source::db`]). A source root that is not `/` and has no
//! dpkg database is a staging tree of this host: the host's `/` is the source then. Added entries are recorded under a capture
//! step of their own ([`CaptureStep::Closure`]), so `inspect` tells them apart and the capture
//! reports their size. A path the capture deleted is not brought back.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::builder::Builder;
use super::dpkg::{self, Record};
use super::elf::{Bytes, Sysroot, resolve_in_root};
use super::needs::{self, CapsuleTree};
use super::scan::{S_IFDIR, Stat, host_path};
use super::{CaptureError, Progress};
use crate::manifest::{Base, BaseKind, CaptureStep, EntryKind, Manifest, RelPath};

/// Where a capture's files and package database are.
pub struct Source<'a> {
    /// The directory standing for `/` behind the capture: the host's `/`, or the root of
    /// `capture install --root`. Added files are read from it.
    pub root: &'a Path,
    /// Where dpkg's database is read first: the install's sandbox tree (the installer wrote
    /// its status and file lists there), else [`root`](Self::root). `root`'s is read after it.
    pub db: &'a Path,
}

/// What [`complete`] added.
#[derive(Debug, Default)]
pub struct Added {
    /// The packages added whole (not the captured ones), in the order found.
    pub packages: Vec<Record>,
    /// Files, symlinks and hardlinks added.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Packages of bookworm's minbase (required, or pulled in by a required package) that
/// trixie's no longer installs: `apt` moved from GnuTLS to OpenSSL and `sqv` (taking libgnutls,
/// libffi, libp11-kit, libtasn1, libidn2, libunistring with it), `e2fsprogs` left `required`
/// (libext2fs, libcom-err, libss), and systemd's library `dlopen`s libgcrypt now. They are not
/// part of the `minimal` base, so a capsule that needs them carries them and runs on both.
const NOT_PORTABLE: &[&str] = &["apt", "e2fsprogs", "libgcrypt20", "libgpg-error0"];

/// More rounds than any real dependency chain needs; a capture that still finds new needs
/// after them stops adding and says so.
const MAX_ROUNDS: usize = 40;

/// Add to `b` what its capsule needs beyond `base` (module docs). `captured` are the packages
/// the capture installed or changed (its inventory so far). Sets the manifest's base.
pub fn complete(
    b: &mut Builder<'_>,
    base: BaseKind,
    src: &Source<'_>,
    captured: &[Record],
    progress: &dyn Progress,
) -> Result<Added, CaptureError> {
    // A source root without a package database is a staging tree of this host (`snapshot
    // begin --root DIR` of a `make install DESTDIR=DIR`): what its programs need is the host's.
    let staged;
    let src =
        if src.root != Path::new("/") && !src.db.join(dpkg::STATUS).exists() && !src.root.join(dpkg::STATUS).exists() {
            staged = Source { root: Path::new("/"), db: Path::new("/") };
            &staged
        } else {
            src
        };
    let distro = dpkg::os_release(src.db).or_else(|| dpkg::os_release(src.root));
    b.manifest_mut().base = Some(Base { kind: base, distro, unmet: Vec::new() });
    if base == BaseKind::Host {
        return Ok(Added::default());
    }
    let what = format!("base {}", base.name());
    b.begin_origin(Builder::origin(CaptureStep::Closure, what));
    let origin = b.current_origin();
    progress.start("closure", None);
    let db = Db::read(src)?;
    let base_set = match base {
        BaseKind::Minimal => {
            let portable = |i: &usize| !NOT_PORTABLE.contains(&db.records[*i].package.as_str());
            let seeds: Vec<usize> = (0..db.records.len())
                .filter(|&i| db.records[i].priority == "required" || db.records[i].essential)
                .filter(portable)
                .collect();
            let mut have = BTreeSet::new();
            have.extend(seeds.iter().copied());
            db.close(&seeds, &mut have, &BTreeSet::new(), &mut BTreeSet::new());
            have.retain(portable);
            have
        }
        BaseKind::None | BaseKind::Host => BTreeSet::new(),
    };
    let owners = db.owners(src.root);
    let mut have: BTreeSet<usize> = base_set.clone();
    let captured_idx: Vec<usize> = captured.iter().filter_map(|r| db.index(r)).collect();
    have.extend(captured_idx.iter().copied());
    let mut added: Vec<usize> = Vec::new();
    let mut queue = captured_idx;
    let mut complete = false;
    let mut unmet = Vec::new();
    let mut pinned = BTreeSet::new();
    for _ in 0..MAX_ROUNDS {
        let mut new = db.close(&queue, &mut have, &base_set, &mut pinned);
        let mut i = 0;
        while let Some(&p) = new.get(i) {
            i += 1;
            if let Some(full) = db.records[p].package.strip_suffix("-minimal")
                && let Some(q) = db.named(full)
                && have.insert(q)
            {
                new.push(q);
                new.extend(db.close(&[q], &mut have, &base_set, &mut pinned));
            }
        }
        added.extend(new.iter().copied());
        let files: Vec<usize> = queue.iter().chain(&new).copied().collect();
        add_package_files(b, &db, &files, src.root)?;
        // What the capsule, as it now is, meets outside itself.
        let mut m = b.manifest_mut().clone();
        m.normalize();
        let (used, missing) = used_files(&m, b.base(), src.root);
        unmet = missing;
        let mut more = Vec::new();
        let mut loose = Vec::new();
        for (as_found, canonical) in used {
            match owners.get(&canonical).copied() {
                Some(o) if base_set.contains(&o) && !pinned.contains(&o) => continue,
                Some(o) if pinned.contains(&o) => {}
                Some(o) if have.insert(o) => {
                    more.push(o);
                    added.push(o);
                }
                _ => {}
            }
            loose.push(as_found);
        }
        let before = b.manifest_mut().entries.len();
        for path in &loose {
            b.with_base(src.root, |b| b.add_resolved(path))?;
        }
        let grew = b.manifest_mut().entries.len() > before;
        if more.is_empty() && !grew {
            complete = true;
            break;
        }
        queue = more;
    }
    progress.finish();
    if !complete {
        tracing::warn!("the closure still grew after {MAX_ROUNDS} rounds; the capsule may lack some of what it needs");
    }
    let m = b.manifest_mut();
    if let Some(b) = m.base.as_mut() {
        b.unmet = unmet;
    }
    let mut out = Added { packages: added.iter().map(|&i| db.records[i].clone()).collect(), ..Added::default() };
    for e in m.entries.iter().filter(|e| e.origin == origin) {
        match e.kind {
            EntryKind::File { size, .. } => {
                out.files += 1;
                out.bytes += size;
            }
            EntryKind::Symlink { .. } | EntryKind::Hardlink { .. } => out.files += 1,
            EntryKind::Dir => {}
        }
    }
    if let Some(o) = m.origins.get_mut(origin as usize) {
        o.detail = format!(
            "base {}: {} packages{}",
            base.name(),
            out.packages.len(),
            if out.packages.is_empty() { String::new() } else { format!(" ({})", names(&out.packages)) }
        );
    }
    Ok(out)
}

/// Package names, the first few of them.
fn names(records: &[Record]) -> String {
    const SHOWN: usize = 12;
    let mut s: Vec<&str> = records.iter().take(SHOWN).map(|r| r.package.as_str()).collect();
    let more = records.len().saturating_sub(SHOWN);
    let extra = format!("{more} more");
    if more > 0 {
        s.push(&extra);
    }
    s.join(", ")
}

/// Add every file and symlink the file lists of packages `pkgs` name (canonical in `root`),
/// but those the capsule has or deleted.
fn add_package_files(b: &mut Builder<'_>, db: &Db, pkgs: &[usize], root: &Path) -> Result<(), CaptureError> {
    let deleted: BTreeSet<RelPath> = b.manifest_mut().deletions.iter().cloned().collect();
    let gone = |r: &RelPath| deleted.contains(r) || r.ancestors().any(|a| deleted.contains(&a));
    let mut canon = Canon::new(root);
    let mut chosen: Vec<(RelPath, Stat)> = Vec::new();
    let mut seen = BTreeSet::new();
    for &p in pkgs {
        for path in db.list(p) {
            let Some(rel) = canon.of(path) else { continue };
            if b.contains(&rel) || gone(&rel) || !seen.insert(rel.clone()) {
                continue;
            }
            // A listed file the root no longer has (diverted, removed by hand) is skipped.
            let Ok(st) = Stat::lstat(&host_path(root, rel.as_bytes())) else { continue };
            if st.kind() != S_IFDIR {
                chosen.push((rel, st));
            }
        }
    }
    let nodes: Vec<(RelPath, &Stat)> = chosen.iter().map(|(r, s)| (r.clone(), s)).collect();
    b.with_base(root, |b| b.add_all(&nodes))
}

/// The files outside capsule `m` that its needs are met with, as found and canonical (in the
/// tree of `m` over `root`), and the keys of the needs nothing meets ([`needs::Need::key`]).
/// Capsule files are read below `own` (the builder's directory), else below `root`.
fn used_files(m: &Manifest, own: &Path, root: &Path) -> (Vec<(PathBuf, RelPath)>, Vec<String>) {
    let (own, lower) = (own.to_owned(), root.to_owned());
    let content = move |e: &crate::manifest::Entry, _: &crate::digest::Digest, limit: Option<u64>| {
        let file = fs::File::open(host_path(&own, e.path.as_bytes()))
            .or_else(|_| fs::File::open(host_path(&lower, e.path.as_bytes())))?;
        match limit {
            Some(n) => {
                let mut out = Vec::new();
                file.take(n).read_to_end(&mut out)?;
                Ok(Bytes::Owned(out))
            }
            None => Bytes::map(&file),
        }
    };
    let tree = CapsuleTree::new(m, Box::new(content)).over(root);
    let report = needs::capsule_needs(&tree, &needs::library_path(m), &needs::search_path(m, None));
    let mut out = Vec::new();
    for path in report.used {
        let Ok(real) = resolve_in_root(&tree, &path) else { continue };
        if let Ok(rel) = RelPath::from_host(real.as_os_str().as_bytes()) {
            out.push((path, rel));
        }
    }
    let mut unmet: Vec<String> = report.missing.iter().map(needs::Need::key).collect();
    unmet.sort();
    unmet.dedup();
    (out, unmet)
}

/// Canonical capsule paths of listed paths in a root: the parent directory resolved in the
/// root (cached), the last component kept (a listed symlink stays the symlink).
struct Canon<'a> {
    root: &'a Path,
    dirs: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Canon<'a> {
    fn new(root: &'a Path) -> Self {
        Canon { root, dirs: HashMap::new() }
    }

    fn of(&mut self, path: &RelPath) -> Option<RelPath> {
        let bytes = path.as_bytes();
        let (parent, name) = match bytes.iter().rposition(|&c| c == b'/') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b""[..], bytes),
        };
        let root = self.root;
        let dir = self
            .dirs
            .entry(parent.to_vec())
            .or_insert_with(|| {
                let abs = PathBuf::from(std::ffi::OsStr::from_bytes(&[b"/", parent].concat()));
                let real = resolve_in_root(&Sysroot(root), &abs).ok()?;
                Some(real.as_os_str().as_bytes().strip_prefix(b"/").unwrap_or_default().to_vec())
            })
            .clone()?;
        let joined = if dir.is_empty() { name.to_vec() } else { [&dir[..], b"/", name].concat() };
        RelPath::new(joined).ok()
    }
}

/// The installed packages of a source, with their file lists.
struct Db {
    records: Vec<Record>,
    by_name: HashMap<String, Vec<usize>>,
    providers: HashMap<String, Vec<usize>>,
    lists: HashMap<(String, Option<String>), Vec<RelPath>>,
}

impl Db {
    /// `src.db`'s status and file lists, over `src.root`'s.
    fn read(src: &Source<'_>) -> Result<Db, CaptureError> {
        let mut records = dpkg::read(src.db)?;
        if records.is_empty() && src.db != src.root {
            records = dpkg::read(src.root)?;
        }
        records.retain(Record::installed);
        // The native architecture's records first, so a name's first candidate is native.
        let native = records.iter().find(|r| r.package == "dpkg").map(|r| r.architecture.clone()).unwrap_or_default();
        records.sort_by_key(|r| !(r.architecture == native || r.architecture == "all"));
        let mut lists = HashMap::new();
        for dir in [src.root, src.db] {
            for (name, arch, paths) in super::programs::lists_by_arch(dir) {
                lists.insert((name, arch), paths);
            }
        }
        Ok(Db::new(records, lists))
    }

    /// `records` (installed, the native architecture's first) indexed by name and by what
    /// they provide, with their file lists.
    fn new(records: Vec<Record>, lists: HashMap<(String, Option<String>), Vec<RelPath>>) -> Db {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            by_name.entry(r.package.clone()).or_default().push(i);
            for group in dpkg::relations(&r.provides) {
                for p in group {
                    providers.entry(p.name).or_default().push(i);
                }
            }
        }
        Db { records, by_name, providers, lists }
    }

    /// The installed record of `r`'s package and architecture.
    fn index(&self, r: &Record) -> Option<usize> {
        let all = self.by_name.get(&r.package)?;
        all.iter().copied().find(|&i| self.records[i].architecture == r.architecture).or_else(|| all.first().copied())
    }

    /// The first installed record of package `name`.
    fn named(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).and_then(|v| v.first().copied())
    }

    /// The records that satisfy a relation on `name`: the package itself, then its providers.
    fn candidates(&self, name: &str) -> impl Iterator<Item = usize> + '_ {
        let direct = self.by_name.get(name).into_iter().flatten();
        direct.chain(self.providers.get(name).into_iter().flatten()).copied()
    }

    /// Follow the dependencies of `seeds`: a group any of whose alternatives `have` satisfies
    /// is met; otherwise its first installed alternative joins `have`. Returns the joiners.
    /// A base package (in `base`) that a dependency names at one exact version (`perl` on
    /// `perl-base (= 5.36.0-7)`) joins too, once (`pinned`): the target's base has its own
    /// version of it, which the capsule's packages do not work with.
    fn close(
        &self,
        seeds: &[usize],
        have: &mut BTreeSet<usize>,
        base: &BTreeSet<usize>,
        pinned: &mut BTreeSet<usize>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        let mut queue: Vec<usize> = seeds.to_vec();
        while let Some(p) = queue.pop() {
            for group in self.records[p].dependencies() {
                let exact =
                    group.iter().filter(|alt| alt.version.as_ref().is_some_and(|(op, _)| op == "=")).find_map(|alt| {
                        self.by_name.get(&alt.name).into_iter().flatten().copied().find(|c| base.contains(c))
                    });
                if let Some(c) = exact {
                    if pinned.insert(c) {
                        out.push(c);
                        queue.push(c);
                    }
                    continue;
                }
                if group.iter().any(|alt| self.candidates(&alt.name).any(|c| have.contains(&c))) {
                    continue;
                }
                let Some(c) = group.iter().find_map(|alt| self.candidates(&alt.name).next()) else { continue };
                if have.insert(c) {
                    out.push(c);
                    queue.push(c);
                }
            }
        }
        out
    }

    /// The paths record `p`'s file list names.
    fn list(&self, p: usize) -> &[RelPath] {
        let r = &self.records[p];
        let key = (r.package.clone(), Some(r.architecture.clone()));
        self.lists
            .get(&key)
            .or_else(|| self.lists.get(&(r.package.clone(), None)))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Canonical path (in `root`) → the record whose file list names it. Directories are not
    /// owned: many packages list them.
    fn owners(&self, root: &Path) -> HashMap<RelPath, usize> {
        let mut canon = Canon::new(root);
        let mut out = HashMap::new();
        for p in 0..self.records.len() {
            for path in self.list(p) {
                if let Some(rel) = canon.of(path)
                    && !Stat::lstat(&host_path(root, rel.as_bytes())).is_ok_and(|s| s.kind() == S_IFDIR)
                {
                    out.entry(rel).or_insert(p);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_closure_takes_first_installed_alternative_and_providers() {
        let rec = |name: &str, depends: &str, provides: &str| Record {
            package: name.to_owned(),
            status: "install ok installed".to_owned(),
            version: "1".to_owned(),
            architecture: "amd64".to_owned(),
            depends: depends.to_owned(),
            provides: provides.to_owned(),
            ..Record::default()
        };
        let records = vec![
            rec("app", "libfoo (>= 1), mta | exim4, awk", ""),
            rec("libfoo", "libc6", ""),
            rec("libc6", "", ""),
            rec("postfix", "", "mta"),
            rec("mawk", "", "awk"),
        ];
        let db = Db::new(records, HashMap::new());
        // libc6 and mawk are the base: not followed, not added.
        let mut have: BTreeSet<usize> = [0, 2, 4].into_iter().collect();
        let mut got: Vec<&str> = db
            .close(&[0], &mut have, &[2, 4].into_iter().collect(), &mut BTreeSet::new())
            .into_iter()
            .map(|i| db.records[i].package.as_str())
            .collect();
        got.sort_unstable();
        assert_eq!(got, ["libfoo", "postfix"]);
    }

    #[test]
    fn an_exact_version_dependency_on_a_base_package_brings_it_along_once() {
        let rec = |name: &str, depends: &str| Record {
            package: name.to_owned(),
            status: "install ok installed".to_owned(),
            version: "5.36.0-7".to_owned(),
            architecture: "amd64".to_owned(),
            depends: depends.to_owned(),
            ..Record::default()
        };
        let records = vec![
            rec("perl", "perl-base (= 5.36.0-7), perl-modules-5.36 (>= 5.36.0-7)"),
            rec("perl-modules-5.36", "perl-base (>= 5.36.0-1)"),
            rec("perl-base", "dpkg (>= 1.17.17)"),
            rec("dpkg", ""),
        ];
        let db = Db::new(records, HashMap::new());
        let base: BTreeSet<usize> = [2, 3].into_iter().collect();
        let (mut have, mut pinned) = (base.clone(), BTreeSet::new());
        let names = |v: Vec<usize>| {
            let mut n: Vec<&str> = v.into_iter().map(|i| db.records[i].package.as_str()).collect();
            n.sort_unstable();
            n
        };
        // perl-base comes for perl's `=`; perl-modules' `>=` alone would leave it to the base.
        assert_eq!(names(db.close(&[0], &mut have, &base, &mut pinned)), ["perl-base", "perl-modules-5.36"]);
        assert!(names(db.close(&[1, 0], &mut have, &base, &mut pinned)).is_empty());
    }
}
