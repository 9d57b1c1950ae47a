//! dpkg's database, read: the status file (`var/lib/dpkg/status`) parsed into [`Record`]s,
//! relation fields (`Depends`, `Pre-Depends`, `Provides`) into [`Relation`]s, and the package
//! inventory a capture keeps ([`Inventory`]): the packages it installed or changed
//! ([`changed`]), or those owning the files it packed ([`owning`]).
//!
//! The parser follows deb822 as dpkg writes it and tolerates what it does not: paragraphs are
//! separated by blank lines (spaces and tabs count as blank), field names are case-insensitive,
//! a line starting with a space or tab continues the previous field (`Description`,
//! `Conffiles`), `#` comment lines and lines without a colon are skipped, CRLF is read as LF.
//! Multiarch packages are keyed by name and architecture (`libc6:amd64`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use super::CaptureError;
use crate::manifest::{Distro, EntryKind, Inventory, Manifest, Package};

/// Where the status file is under a root.
pub const STATUS: &str = "var/lib/dpkg/status";

/// One paragraph of the status file, the fields a capture or a closure needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// `Package`.
    pub package: String,
    /// `Status`: want, error flag and state ("install ok installed").
    pub status: String,
    /// `Version` (empty when not installed).
    pub version: String,
    /// `Architecture` (empty when dpkg recorded none).
    pub architecture: String,
    /// `Multi-Arch` ("same", "foreign", "allowed" or empty).
    pub multi_arch: String,
    /// `Source`, as written: `NAME` or `NAME (VERSION)`; empty when the same as the package.
    pub source: String,
    /// `Maintainer`.
    pub maintainer: String,
    /// `Depends`, as written.
    pub depends: String,
    /// `Pre-Depends`, as written.
    pub pre_depends: String,
    /// `Provides`, as written.
    pub provides: String,
    /// `Priority` ("required", "important", "optional"…).
    pub priority: String,
    /// `Essential: yes`.
    pub essential: bool,
}

impl Record {
    /// Whether dpkg's state is "installed" (not config-files, half-installed, unpacked…).
    pub fn installed(&self) -> bool {
        self.status.split_whitespace().nth(2) == Some("installed")
    }

    /// The source package's name: `Source`'s first word, else the package's own name.
    pub fn source_name(&self) -> &str {
        self.source.split_whitespace().next().unwrap_or(&self.package)
    }

    /// The source package's version: `Source: NAME (VERSION)`'s version, else the package's.
    pub fn source_version(&self) -> &str {
        let v = self.source.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(v, _)| v.trim());
        v.filter(|v| !v.is_empty()).unwrap_or(&self.version)
    }

    /// `Pre-Depends` then `Depends`, parsed.
    pub fn dependencies(&self) -> Vec<Vec<Relation>> {
        let mut out = relations(&self.pre_depends);
        out.extend(relations(&self.depends));
        out
    }

    /// The manifest's record of this package.
    pub fn to_package(&self) -> Package {
        let sv = self.source_version();
        Package {
            name: self.package.clone(),
            version: self.version.clone(),
            architecture: self.architecture.clone(),
            source: self.source_name().to_owned(),
            source_version: (sv != self.version).then(|| sv.to_owned()),
            maintainer: self.maintainer.clone(),
            depends: Vec::new(),
        }
    }
}

/// One package a relation field names: `NAME[:ARCH] [(OP VERSION)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The package (or virtual package) name.
    pub name: String,
    /// `:ARCH` (`any`, `native`, or an architecture), if given.
    pub arch: Option<String>,
    /// `(OP VERSION)`, if given: the operator (`<<`, `<=`, `=`, `>=`, `>>`) and version.
    pub version: Option<(String, String)>,
}

/// A relation field: comma-separated groups of `|`-separated alternatives. Architecture
/// restrictions (`[amd64]`) and build profiles (`<!nocheck>`) are dropped with what they
/// qualify kept; empty alternatives are skipped.
pub fn relations(field: &str) -> Vec<Vec<Relation>> {
    let mut out = Vec::new();
    for group in field.split(',') {
        let mut alts = Vec::new();
        for alt in group.split('|') {
            let alt = strip_brackets(alt);
            let (head, version) = match alt.split_once('(') {
                Some((h, rest)) => {
                    let inner = rest.split(')').next().unwrap_or_default().trim();
                    let op_len = inner.find(|c: char| !matches!(c, '<' | '>' | '=')).unwrap_or(inner.len());
                    let (op, v) = inner.split_at(op_len);
                    (h, Some((op.trim().to_owned(), v.trim().to_owned())))
                }
                None => (alt.as_str(), None),
            };
            let head = head.trim();
            if head.is_empty() {
                continue;
            }
            let (name, arch) = match head.split_once(':') {
                Some((n, a)) => (n.trim(), Some(a.trim().to_owned())),
                None => (head, None),
            };
            alts.push(Relation { name: name.to_owned(), arch, version });
        }
        if !alts.is_empty() {
            out.push(alts);
        }
    }
    out
}

/// `s` without `[…]` and `<…>` parts.
fn strip_brackets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '[' | '<' if !out.trim_end().ends_with('(') && depth == 0 && !in_version(&out) => depth = 1,
            ']' | '>' if depth == 1 => depth = 0,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether `prefix` ends inside an unclosed `(`: a `<` or `>` there is a version operator.
fn in_version(prefix: &str) -> bool {
    prefix.rfind('(').is_some_and(|o| prefix.rfind(')').is_none_or(|c| c < o))
}

/// Parse the text of a status file.
pub fn parse(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cur = Record::default();
    let mut field: Option<String> = None;
    let mut any = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if any && !cur.package.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur = Record::default();
            (field, any) = (None, false);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation: only the relation fields' matter here (dpkg folds none of them,
            // but a hand-written file may).
            if let Some(f) = field.as_deref() {
                let v = line.trim();
                if let Some(slot) = slot(&mut cur, f) {
                    if !slot.is_empty() {
                        slot.push(' ');
                    }
                    slot.push_str(v);
                }
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        any = true;
        if k == "essential" {
            cur.essential = v.eq_ignore_ascii_case("yes");
        } else if let Some(slot) = slot(&mut cur, &k) {
            v.clone_into(slot);
        }
        field = Some(k);
    }
    if any && !cur.package.is_empty() {
        out.push(cur);
    }
    out
}

fn slot<'r>(r: &'r mut Record, field: &str) -> Option<&'r mut String> {
    Some(match field {
        "package" => &mut r.package,
        "status" => &mut r.status,
        "version" => &mut r.version,
        "architecture" => &mut r.architecture,
        "multi-arch" => &mut r.multi_arch,
        "source" => &mut r.source,
        "maintainer" => &mut r.maintainer,
        "depends" => &mut r.depends,
        "pre-depends" => &mut r.pre_depends,
        "provides" => &mut r.provides,
        "priority" => &mut r.priority,
        _ => return None,
    })
}

/// The status file under `root` (`/` for the host), parsed; empty when there is none.
pub fn read(root: &Path) -> Result<Vec<Record>, CaptureError> {
    let path = root.join(STATUS);
    match fs::read(&path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CaptureError::Io { action: "cannot read dpkg's status file", path, source }),
    }
}

/// Which of `pkgs` (names, without architecture) `records` lists as installed, each once.
pub fn installed_names(records: &[Record], pkgs: &[String]) -> Vec<String> {
    let have: BTreeSet<&str> = records.iter().filter(|r| r.installed()).map(|r| r.package.as_str()).collect();
    let mut out: Vec<String> = pkgs.iter().filter(|p| have.contains(p.as_str())).cloned().collect();
    out.dedup();
    out
}

/// A package's key in a database: `NAME:ARCH`.
fn key(r: &Record) -> (String, String) {
    (r.package.clone(), r.architecture.clone())
}

/// The packages `after` has installed that `before` did not have installed at the same
/// version (new, upgraded, downgraded, or reinstalled from a half-installed state), plus
/// those named in `also` (reinstalled: the same version, captured in full).
pub fn changed(before: &[Record], after: &[Record], also: &[String]) -> Vec<Record> {
    let old: BTreeMap<(String, String), &str> =
        before.iter().filter(|r| r.installed()).map(|r| (key(r), r.version.as_str())).collect();
    after
        .iter()
        .filter(|r| r.installed())
        .filter(|r| old.get(&key(r)) != Some(&r.version.as_str()) || also.contains(&r.package))
        .cloned()
        .collect()
}

/// The installed packages of `records` whose dpkg file list under `root`
/// (`var/lib/dpkg/info/NAME[:ARCH].list`) names a file or symlink of `m`, followed through
/// the capsule's symlinks (`/lib/x86_64-linux-gnu/libc.so.6` of a capsule whose `lib` is a
/// link to `usr/lib`): what `dpkg -S` would answer for the capsule's files.
pub fn owning(m: &Manifest, root: &Path, records: &[Record]) -> Vec<Record> {
    // A builder's manifest is sorted only at its commit; lookups need the order.
    let sorted;
    let m = if m.entries.windows(2).all(|w| w[0].path < w[1].path) {
        m
    } else {
        let mut c = m.clone();
        c.normalize();
        sorted = c;
        &sorted
    };
    let mut owners: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    for (name, arch, paths) in super::programs::lists_by_arch(root) {
        let holds = |p: &crate::manifest::RelPath| m.resolve(p).is_some_and(|(_, e)| !matches!(e.kind, EntryKind::Dir));
        if paths.iter().any(holds) {
            owners.insert((name, arch));
        }
    }
    records
        .iter()
        .filter(|r| r.installed())
        .filter(|r| {
            owners.contains(&(r.package.clone(), Some(r.architecture.clone())))
                || owners.contains(&(r.package.clone(), None))
        })
        .cloned()
        .collect()
}

/// The inventory of a capture that packed host files (`capture elf`, `capture trace`): the
/// host's installed packages owning files of `m` ([`owning`]).
pub fn host_inventory(m: &Manifest) -> Result<Inventory, CaptureError> {
    let host = Path::new("/");
    Ok(inventory(&owning(m, host, &read(host)?), os_release(host)))
}

/// The inventory of `packages` (records of one database, `all` the whole of it, for the
/// virtual packages a dependency may name): each with the packages of the set it depends on,
/// sorted by name and architecture; `distro` from [`os_release`].
pub fn inventory(packages: &[Record], distro: Option<Distro>) -> Inventory {
    let mut recs: Vec<&Record> = packages
        .iter()
        .filter(|r| {
            let pkg = r.to_package();
            let mut probe = Manifest::new("p", "latest", 0);
            probe.inventory = Some(Inventory { distro: None, packages: vec![pkg] });
            // A record the manifest would refuse (a hand-edited database) is left out.
            let ok = probe.validate().is_ok();
            if !ok {
                tracing::warn!(package = %r.package, "left out of the inventory: not a valid Debian package record");
            }
            ok
        })
        .collect();
    recs.sort_by_key(|r| key(r));
    recs.dedup_by(|a, b| key(a) == key(b));
    // Each name a dependency may use: the packages' own, and the virtual ones they provide.
    let mut provided: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &recs {
        provided.entry(r.package.clone()).or_default().insert(r.package.clone());
        for a in relations(&r.provides).into_iter().flatten() {
            provided.entry(a.name).or_default().insert(r.package.clone());
        }
    }
    let packages = recs
        .iter()
        .map(|r| {
            let mut p = r.to_package();
            let deps: BTreeSet<String> = r
                .dependencies()
                .iter()
                .flatten()
                .filter_map(|rel| provided.get(&rel.name))
                .flatten()
                .filter(|d| **d != r.package)
                .cloned()
                .collect();
            p.depends = deps.into_iter().collect();
            p
        })
        .collect();
    Inventory { distro, packages }
}

/// The distribution `root/etc/os-release` (else `root/usr/lib/os-release`) names: `ID`,
/// `VERSION_ID`, `VERSION_CODENAME`. `None` without an acceptable `ID`.
pub fn os_release(root: &Path) -> Option<Distro> {
    let text = fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| fs::read_to_string(root.join("usr/lib/os-release")))
        .ok()?;
    let mut d = Distro::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim().trim_matches(['"', '\'']).to_owned();
        match k.trim() {
            "ID" => d.id = v,
            "VERSION_ID" => d.version_id = v,
            "VERSION_CODENAME" => d.codename = v,
            _ => {}
        }
    }
    let ok =
        |s: &str| s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'));
    if d.id.is_empty() || !ok(&d.id) {
        return None;
    }
    if !ok(&d.version_id) {
        d.version_id.clear();
    }
    if !ok(&d.codename) {
        d.codename.clear();
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_TEXT: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Maintainer: GNU Libc Maintainers <libc@lists.example.org>
Version: 2.36-9+deb12u10
Source: glibc
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries.
 .
 More.

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14+deb12u1
Provides: libgcc1 (= 1:12.2.0-14+deb12u1)
Depends: gcc-12-base (= 12.2.0-14+deb12u1), libc6 (>= 2.35)
\t
Package: figlet
status: install ok installed
Architecture: amd64
Version: 2.2.5-3+b1
Source: figlet (2.2.5-3)
Pre-Depends: dpkg (>= 1.15.7.2)
Depends: libc6 (>= 2.34) [amd64], libgcc1 | libfoo:any,
 libmissing <!nocheck>
Essential: yes

Package: old
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
";

    #[test]
    fn status_paragraphs() {
        let r = parse(&STATUS_TEXT.replace('\n', "\r\n"));
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].package, "libc6");
        assert_eq!((r[0].source_name(), r[0].source_version()), ("glibc", "2.36-9+deb12u10"));
        assert_eq!((r[1].source_name(), r[1].source_version()), ("gcc-12", "12.2.0-14"));
        assert_eq!(r[1].to_package().source_version.as_deref(), Some("12.2.0-14"));
        assert_eq!(r[0].to_package().source_version, None);
        // Lower-case field names, a continuation line, Essential.
        assert!(r[2].installed() && r[2].essential);
        assert_eq!(r[2].depends, "libc6 (>= 2.34) [amd64], libgcc1 | libfoo:any, libmissing <!nocheck>");
        assert!(!r[3].installed());
        assert_eq!(installed_names(&r, &["old".into(), "figlet".into(), "nope".into()]), ["figlet"]);
    }

    #[test]
    fn relation_fields() {
        let rel = relations("libc6 (>= 2.34) [amd64], libgcc1 | libfoo:any, libmissing <!nocheck>, ,");
        let names: Vec<Vec<&str>> = rel.iter().map(|g| g.iter().map(|a| a.name.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["libc6"], vec!["libgcc1", "libfoo"], vec!["libmissing"]]);
        assert_eq!(rel[0][0].version, Some((">=".to_owned(), "2.34".to_owned())));
        assert_eq!(rel[1][1].arch.as_deref(), Some("any"));
        assert_eq!(relations("a (<< 2)")[0][0].version, Some(("<<".to_owned(), "2".to_owned())));
    }

    #[test]
    fn changes_and_inventory() {
        let after = parse(STATUS_TEXT);
        let before: Vec<Record> = after.iter().filter(|r| r.package != "figlet").cloned().collect();
        let got: Vec<String> = changed(&before, &after, &[]).into_iter().map(|r| r.package).collect();
        assert_eq!(got, ["figlet"]);
        let got: Vec<String> = changed(&before, &after, &["libc6".into()]).into_iter().map(|r| r.package).collect();
        assert_eq!(got, ["libc6", "figlet"]);
        let inv = inventory(&changed(&[], &after, &[]), None);
        let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["figlet", "libc6", "libgcc-s1"]);
        // figlet depends on libc6, and on libgcc1 through the package that provides it.
        assert_eq!(inv.packages[0].depends, ["libc6", "libgcc-s1"]);
        assert_eq!(inv.packages[1].depends, ["libgcc-s1"]);
        let mut m = Manifest::new("t", "latest", 0);
        m.inventory = Some(inv);
        m.validate().unwrap();
    }
}
