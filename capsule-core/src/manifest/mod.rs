//! [`Manifest`]: everything a capsule is, in one versioned, bounded, validated record.
//!
//! A manifest is stored as a blob like any file (so its digest is the capsule's identity) in a
//! [`codec`](crate::codec) envelope (`CAPSMANI`, version [`VERSION`]). [`Manifest::decode`]
//! never trusts its input: it checks the size limit, then [`Manifest::validate`] checks every
//! path, symlink, hardlink, origin index and name, so code after it can rely on them.
//!
//! Invariants of a valid manifest: `entries` is sorted by path with no duplicates; every
//! symlink target is relative and stays inside the root; every hardlink names a regular file of
//! the same manifest; every `origin` indexes `origins`.

mod path;
mod types;
mod v1;
mod v2;
mod v3;

use std::collections::BTreeSet;

pub use path::{MAX_COMPONENT, MAX_PATH, PathError, RelPath, check_symlink, relativize_symlink, symlink_destination};
pub use types::{
    Base, BaseKind, CaptureStep, Distro, Entry, EntryKind, EntryPoint, EntrySource, Identity, Inventory, Isolation,
    IsolationRule, Link, Origin, Package, RegValue,
};

use crate::codec::{self, CodecError};
use crate::digest::Digest;

/// Magic of an encoded manifest.
pub const MAGIC: &[u8; 8] = b"CAPSMANI";
/// The manifest format version this build writes and the newest it reads. Version 1 (entry
/// points without arguments, source or a declared default), version 2 (no package
/// inventory) and version 3 (no base) are still read.
pub const VERSION: u16 = 4;
/// The largest encoded manifest accepted (about two million files).
pub const MAX_MANIFEST_BYTES: u64 = 512 << 20;
/// The most entries one manifest may hold.
pub const MAX_ENTRIES: usize = 4_000_000;
/// The longest name, tag, env value, registry key or string field accepted.
pub const MAX_STRING: usize = 64 << 10;
/// The most packages an inventory may list (a whole distribution has about 65,000).
pub const MAX_PACKAGES: usize = 100_000;
/// The most needs a base may record as unmet at capture.
pub const MAX_UNMET: usize = 100_000;
/// The most dependencies one package of an inventory may list.
pub const MAX_DEPENDS: usize = 4096;

/// A manifest that is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes could not be decoded.
    #[error("manifest could not be decoded")]
    Codec(#[from] CodecError),
    /// An entry's path or symlink target is not acceptable.
    #[error("manifest entry {index}: {source}")]
    Path {
        /// The entry's position.
        index: usize,
        /// What is wrong.
        #[source]
        source: PathError,
    },
    /// Entries out of order or duplicated.
    #[error("manifest entry {path} is duplicated or out of order")]
    Order {
        /// The path.
        path: String,
    },
    /// A hardlink to something that is not a regular file of this manifest.
    #[error("hardlink {path} points to {target}, which is not a regular file in the capsule")]
    Hardlink {
        /// The link.
        path: String,
        /// What it names.
        target: String,
    },
    /// A field over its limit.
    #[error("manifest field {field} is oversize ({size}, limit {limit})")]
    Oversize {
        /// Which field.
        field: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An entry field outside what a file system can hold (a hostile or damaged manifest).
    #[error("manifest entry {path}: {field} {value} is out of range ({allowed})")]
    Field {
        /// The entry.
        path: String,
        /// Which field ("mtime", "mtime_nsec", "mode").
        field: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// A value outside an entry (an entry point, a registry key or value, an environment
    /// variable) that no capture makes and a run must not act on.
    #[error("manifest {what}: {field} {value:?} {why}")]
    Value {
        /// What holds it ("entry point jq", "registry key \"machine/…\"", "env").
        what: String,
        /// Which field ("path", "key", "mode", "name", "value").
        field: &'static str,
        /// Its value, as text.
        value: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// An entry's origin index is out of range.
    #[error("manifest entry {path} names origin {origin}, but there are only {count}")]
    Origin {
        /// The entry.
        path: String,
        /// The index it names.
        origin: u32,
        /// How many origins there are.
        count: usize,
    },
    /// An isolation rule whose prefix is not an absolute, normal path (or `/` for state).
    #[error(
        "isolation rule {prefix:?} ({mode:?}) is not acceptable: use an absolute path without '.', '..' or '//' (state cannot be '/')"
    )]
    Rule {
        /// The prefix.
        prefix: String,
        /// The mode.
        mode: Isolation,
    },
    /// A capsule name or tag that is not acceptable.
    #[error("invalid capsule {what} {value:?}: use 1-128 of a-z A-Z 0-9 . _ - (names start with a letter or digit)")]
    Name {
        /// "name" or "tag".
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A reference by digest (`NAME@HEX`) whose digest part is not 12 to 64 hex digits.
    #[error(
        "invalid digest {value:?} in a capsule reference: use NAME@HEX with 12 to 64 hex digits of a manifest digest (`capsule list` shows them)"
    )]
    DigestRef {
        /// The digest part.
        value: String,
    },
}

/// Where a capsule path leads ([`Manifest::follow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed<'a> {
    /// To this entry of the capsule, at this path.
    Capsule(RelPath, &'a Entry),
    /// Out of the capsule: this path is the host's.
    Host(RelPath),
}

/// One capsule. See the module docs for the invariants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Capsule name.
    pub name: String,
    /// Tag ("latest" unless given).
    pub tag: String,
    /// Seconds since the epoch when the capsule was made.
    pub created: u64,
    /// The file tree, sorted by path.
    pub entries: Vec<Entry>,
    /// Paths the capture saw deleted from the host: whiteouts in the application's view.
    pub deletions: Vec<RelPath>,
    /// Programs the capsule offers, with unique names.
    pub entry_points: Vec<EntryPoint>,
    /// The name of the entry point `capsule run NAME` starts when no program is named; `None`
    /// when the capture could not tell (a run then lists the programs).
    pub default_entry: Option<String>,
    /// Environment set for the application.
    pub env: Vec<(String, String)>,
    /// Isolation per path prefix (longest prefix wins).
    pub isolation: Vec<IsolationRule>,
    /// The capsule's registry (`machine/…` keys), sorted by key.
    pub registry: Vec<(String, RegValue)>,
    /// Identity defaults for runs.
    pub identity: Identity,
    /// Shared capsules this one links to.
    pub links: Vec<Link>,
    /// Capture steps; each entry's `origin` indexes this list.
    pub origins: Vec<Origin>,
    /// The packages the capsule holds, as the capture found them in dpkg's database; `None`
    /// for a capsule made before inventories (manifest versions 1 and 2) or by a capture that
    /// keeps none (`capture shared`).
    pub inventory: Option<Inventory>,
    /// What the capture assumed target machines have, and so left out (`--base`); `None` for
    /// a capsule made before bases (manifest versions 1 to 3) or by a capture that does not
    /// compute a closure (`capture elf` carries its whole ELF closure, `capture trace` what
    /// the program opened, `capture shared` state only).
    pub base: Option<Base>,
}

/// Seconds either side of the epoch a valid mtime may be: far beyond any file, well inside
/// what `SystemTime` and the kernel's timestamps hold.
const MTIME_LIMIT: i64 = 1 << 40;

/// The largest file size an entry may declare (1 TiB): beyond any application's file, and
/// small enough that the sizes of [`MAX_ENTRIES`] entries add up without overflow.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// The longest registry key a manifest may hold (as `registry::check_key` allows).
const MAX_KEY: usize = 4096;

/// An entry's numeric fields: an mtime a file system can hold, nanoseconds below a second,
/// mode bits that are permission bits only, a file size below [`MAX_FILE_SIZE`].
fn check_fields(e: &Entry) -> Result<(), ManifestError> {
    let bad = |field: &'static str, value: String, allowed: &'static str| {
        Err(ManifestError::Field { path: e.path.display(), field, value, allowed })
    };
    if !(-MTIME_LIMIT..=MTIME_LIMIT).contains(&e.mtime) {
        return bad("mtime", e.mtime.to_string(), "within 2^40 seconds of the epoch");
    }
    if e.mtime_nsec >= 1_000_000_000 {
        return bad("mtime_nsec", e.mtime_nsec.to_string(), "below 1000000000");
    }
    if e.mode & !0o7777 != 0 {
        return bad("mode", format!("{:o}", e.mode), "permission bits, 0 to 7777 octal");
    }
    if let EntryKind::File { size, .. } = e.kind
        && size > MAX_FILE_SIZE
    {
        return bad("size", size.to_string(), "at most 1 TiB");
    }
    Ok(())
}

fn refuse(what: String, field: &'static str, value: impl Into<String>, why: &'static str) -> ManifestError {
    ManifestError::Value { what, field, value: value.into(), why }
}

/// A registry key a run may act on: `machine/…` or `user/…`, at most [`MAX_KEY`] bytes, no
/// control character (a newline would forge a line of the sandbox's list of projected files),
/// and no empty, `.` or `..` component in its path (before a `files/` key's `#KEY`).
fn check_registry(key: &str, value: &RegValue) -> Result<(), ManifestError> {
    let what = || format!("registry key {:?}", key.chars().take(200).collect::<String>());
    let shown = || key.chars().take(200).collect::<String>();
    if key.len() > MAX_KEY {
        return Err(refuse(what(), "key", shown(), "is longer than 4096 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(refuse(what(), "key", shown(), "holds a control character"));
    }
    let Some(rest) = key.strip_prefix("machine/").or_else(|| key.strip_prefix("user/")) else {
        return Err(refuse(what(), "key", shown(), "is not under machine/ or user/"));
    };
    let path = rest.split_once('#').map_or(rest, |(p, _)| p);
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(refuse(what(), "key", shown(), "has an empty, '.' or '..' component"));
    }
    match value {
        RegValue::File { mode, .. } if mode & !0o7777 != 0 => {
            Err(refuse(what(), "mode", format!("{mode:o}"), "is not permission bits (0 to 7777 octal)"))
        }
        RegValue::String(s) if s.len() > MAX_STRING => {
            Err(refuse(what(), "value", format!("{} bytes", s.len()), "is longer than 64 KiB"))
        }
        _ => Ok(()),
    }
}

/// A distribution's fields: 0-64 of `A-Z a-z 0-9 . _ ~ -`, the id not empty.
fn check_distro(what: &str, d: &Distro) -> Result<(), ManifestError> {
    let distro_ok =
        |s: &str| s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'));
    for (field, v) in [("id", &d.id), ("version_id", &d.version_id), ("codename", &d.codename)] {
        if !distro_ok(v) || (field == "id" && v.is_empty()) {
            let shown = v.chars().take(200).collect::<String>();
            return Err(refuse(what.to_owned(), field, shown, "is not an os-release word"));
        }
    }
    Ok(())
}

/// A package inventory an SBOM and a purl can carry as it is: at most [`MAX_PACKAGES`]
/// packages, sorted by (name, architecture) without duplicates; names, architectures and
/// versions of the characters Debian allows (names and sources 1-128 of `a-z 0-9 + - .`
/// starting with a letter or digit, architectures 1-64 of `a-z 0-9 -`, versions 1-256 of
/// `A-Z a-z 0-9 . + ~ : -`); a maintainer of at most 1024 bytes without control characters;
/// at most [`MAX_DEPENDS`] dependencies each, every one a package of the inventory; a
/// distribution's fields 0-64 of `A-Z a-z 0-9 . _ ~ -` (the id not empty).
fn check_inventory(inv: &Inventory) -> Result<(), ManifestError> {
    fn word(s: &str, max: usize, first_alnum: bool, ok: impl Fn(char) -> bool) -> bool {
        !s.is_empty()
            && s.len() <= max
            && s.chars().all(ok)
            && (!first_alnum || s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()))
    }
    let name_ok = |s: &str| word(s, 128, true, |c| matches!(c, 'a'..='z' | '0'..='9' | '+' | '-' | '.'));
    let arch_ok = |s: &str| word(s, 64, true, |c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
    let version_ok =
        |s: &str| word(s, 256, false, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'));
    let shown = |s: &str| s.chars().take(200).collect::<String>();
    if inv.packages.len() > MAX_PACKAGES {
        return Err(ManifestError::Oversize { field: "packages", size: inv.packages.len(), limit: MAX_PACKAGES });
    }
    if let Some(d) = &inv.distro {
        check_distro("inventory distribution", d)?;
    }
    let names: BTreeSet<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    let mut prev: Option<(&str, &str)> = None;
    for p in &inv.packages {
        let what = || format!("package {:?}", shown(&p.name));
        if !name_ok(&p.name) {
            return Err(refuse(what(), "name", shown(&p.name), "is not a Debian package name"));
        }
        if !arch_ok(&p.architecture) {
            return Err(refuse(what(), "architecture", shown(&p.architecture), "is not a Debian architecture"));
        }
        if !version_ok(&p.version) {
            return Err(refuse(what(), "version", shown(&p.version), "is not a Debian version"));
        }
        if !name_ok(&p.source) {
            return Err(refuse(what(), "source", shown(&p.source), "is not a Debian package name"));
        }
        if let Some(v) = p.source_version.as_deref().filter(|v| !version_ok(v)) {
            return Err(refuse(what(), "source_version", shown(v), "is not a Debian version"));
        }
        if p.maintainer.len() > 1024 || p.maintainer.chars().any(char::is_control) {
            return Err(refuse(
                what(),
                "maintainer",
                shown(&p.maintainer),
                "is over 1024 bytes or holds a control character",
            ));
        }
        if p.depends.len() > MAX_DEPENDS {
            return Err(ManifestError::Oversize {
                field: "package depends",
                size: p.depends.len(),
                limit: MAX_DEPENDS,
            });
        }
        if let Some(d) = p.depends.iter().find(|d| !names.contains(d.as_str())) {
            return Err(refuse(what(), "depends", shown(d), "names no package of the inventory"));
        }
        if p.depends.windows(2).any(|w| w[0] >= w[1]) {
            return Err(refuse(
                what(),
                "depends",
                p.depends.join(",").chars().take(200).collect::<String>(),
                "is not sorted without duplicates",
            ));
        }
        let key = (p.name.as_str(), p.architecture.as_str());
        if prev.is_some_and(|q| q >= key) {
            return Err(refuse(what(), "name", shown(&p.name), "is duplicated or out of order"));
        }
        prev = Some(key);
    }
    Ok(())
}

/// Check a capsule name (`what` = "name") or tag (`what` = "tag").
pub fn check_name(what: &'static str, value: &str) -> Result<(), ManifestError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if value.is_empty() || value.len() > 128 || !first_ok || !value.chars().all(ok_char) {
        return Err(ManifestError::Name { what, value: value.to_owned() });
    }
    Ok(())
}

impl Manifest {
    /// An empty manifest named `name:tag`.
    pub fn new(name: &str, tag: &str, created: u64) -> Self {
        Manifest {
            name: name.to_owned(),
            tag: tag.to_owned(),
            created,
            entries: Vec::new(),
            deletions: Vec::new(),
            entry_points: Vec::new(),
            default_entry: None,
            env: Vec::new(),
            isolation: Vec::new(),
            registry: Vec::new(),
            identity: Identity::default(),
            links: Vec::new(),
            origins: Vec::new(),
            inventory: None,
            base: None,
        }
    }

    /// Encode into the store's envelope. The digest of these bytes is the capsule's identity.
    pub fn encode(&self) -> Vec<u8> {
        codec::envelope(MAGIC, VERSION, self)
    }

    /// Decode and [`validate`](Self::validate) untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m = if bytes.get(8..10) == Some(&1u16.to_le_bytes()[..]) {
            let (_, old): (u16, v1::ManifestV1) =
                codec::open_envelope("manifest", MAGIC, 1, bytes, MAX_MANIFEST_BYTES)?;
            Manifest::from(old)
        } else if bytes.get(8..10) == Some(&2u16.to_le_bytes()[..]) {
            let (_, old): (u16, v2::ManifestV2) =
                codec::open_envelope("manifest", MAGIC, 2, bytes, MAX_MANIFEST_BYTES)?;
            Manifest::from(old)
        } else if bytes.get(8..10) == Some(&3u16.to_le_bytes()[..]) {
            let (_, old): (u16, v3::ManifestV3) =
                codec::open_envelope("manifest", MAGIC, 3, bytes, MAX_MANIFEST_BYTES)?;
            Manifest::from(old)
        } else {
            codec::open_envelope::<Manifest>("manifest", MAGIC, VERSION, bytes, MAX_MANIFEST_BYTES)?.1
        };
        m.validate()?;
        Ok(m)
    }

    /// The default entry point, if the capsule declares one.
    pub fn default_entry_point(&self) -> Option<&EntryPoint> {
        let name = self.default_entry.as_deref()?;
        self.entry_points.iter().find(|e| e.name == name)
    }

    /// The entry point called `name`, or at virtual path `name` (`/usr/bin/jq`).
    pub fn entry_point(&self, name: &str) -> Option<&EntryPoint> {
        let by_path = |e: &&EntryPoint| name.strip_prefix('/').is_some_and(|p| e.path.as_bytes() == p.as_bytes());
        self.entry_points.iter().find(|e| e.name == name).or_else(|| self.entry_points.iter().find(by_path))
    }

    /// Check every invariant named in the module docs.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_name("name", &self.name)?;
        check_name("tag", &self.tag)?;
        if self.entries.len() > MAX_ENTRIES {
            return Err(ManifestError::Oversize { field: "entries", size: self.entries.len(), limit: MAX_ENTRIES });
        }
        let mut prev: Option<&RelPath> = None;
        for (index, e) in self.entries.iter().enumerate() {
            e.path.check().map_err(|source| ManifestError::Path { index, source })?;
            if prev.is_some_and(|p| p >= &e.path) {
                return Err(ManifestError::Order { path: e.path.display() });
            }
            prev = Some(&e.path);
            if e.origin as usize >= self.origins.len() {
                return Err(ManifestError::Origin {
                    path: e.path.display(),
                    origin: e.origin,
                    count: self.origins.len(),
                });
            }
            check_fields(e)?;
            match &e.kind {
                EntryKind::Symlink { target } => {
                    check_symlink(&e.path, target).map_err(|source| ManifestError::Path { index, source })?;
                }
                EntryKind::Hardlink { target } => {
                    target.check().map_err(|source| ManifestError::Path { index, source })?;
                    if !matches!(self.get(target).map(|t| &t.kind), Some(EntryKind::File { .. })) {
                        return Err(ManifestError::Hardlink { path: e.path.display(), target: target.display() });
                    }
                }
                EntryKind::File { .. } | EntryKind::Dir => {}
            }
        }
        for (index, d) in self.deletions.iter().enumerate() {
            d.check().map_err(|source| ManifestError::Path { index, source })?;
        }
        for r in &self.isolation {
            let root_ok = r.prefix == "/" && r.mode != Isolation::State;
            if !root_ok && (!r.prefix.starts_with('/') || RelPath::from_host(r.prefix.as_bytes()).is_err()) {
                return Err(ManifestError::Rule { prefix: r.prefix.clone(), mode: r.mode });
            }
        }
        for l in &self.links {
            check_name("name", &l.name)?;
        }
        self.check_entry_points()?;
        for (key, value) in &self.registry {
            check_registry(key, value)?;
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(refuse(format!("env {k:?}"), "name", k.clone(), "is empty or holds '=' or NUL"));
            }
        }
        if let Some(inv) = &self.inventory {
            check_inventory(inv)?;
        }
        if let Some(base) = &self.base {
            if let Some(d) = &base.distro {
                check_distro("base distribution", d)?;
            }
            if base.unmet.len() > MAX_UNMET {
                return Err(ManifestError::Oversize { field: "base unmet", size: base.unmet.len(), limit: MAX_UNMET });
            }
        }
        self.check_strings()
    }

    /// Every entry point names a program of the capsule: a capsule path (relative, normal:
    /// not `/bin/sh`, which a run would take from the host) that resolves, through the
    /// capsule's own symlinks, to one of its regular files, or to a host path through at least
    /// one capsule symlink (Debian's `/usr/bin/redis-server` → `redis-check-rdb`, which the
    /// host may have). Names are unique, arguments hold no NUL, and the default names one.
    fn check_entry_points(&self) -> Result<(), ManifestError> {
        let mut names = BTreeSet::new();
        for ep in &self.entry_points {
            let what = || format!("entry point {:?}", ep.name.chars().take(200).collect::<String>());
            if ep.name.is_empty() || ep.name.len() > MAX_COMPONENT || ep.name.contains(['/', '\0']) {
                return Err(refuse(
                    what(),
                    "name",
                    ep.name.chars().take(200).collect::<String>(),
                    "is not a file name",
                ));
            }
            if ep.path.check().is_err() {
                let shown: String = String::from_utf8_lossy(ep.path.as_bytes()).chars().take(200).collect();
                return Err(refuse(what(), "path", shown, "is not a capsule path (relative, normalised)"));
            }
            let ok = match self.follow(&ep.path) {
                Some(Followed::Capsule(_, e)) => matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }),
                Some(Followed::Host(p)) => p != ep.path,
                None => false,
            };
            if !ok {
                return Err(refuse(what(), "path", ep.path.display(), "names no file of the capsule"));
            }
            if !names.insert(ep.name.as_str()) {
                return Err(refuse(what(), "name", ep.name.clone(), "names two entry points"));
            }
            if let Some(a) = ep.args.iter().find(|a| a.contains('\0')) {
                return Err(refuse(what(), "args", a.replace('\0', "\\0"), "holds a NUL"));
            }
        }
        if let Some(d) = &self.default_entry
            && !names.contains(d.as_str())
        {
            let shown: String = d.chars().take(200).collect();
            return Err(refuse("default entry point".to_owned(), "name", shown, "names no entry point"));
        }
        Ok(())
    }

    fn check_strings(&self) -> Result<(), ManifestError> {
        let over = |field: &'static str, size: usize| {
            (size > MAX_STRING).then_some(ManifestError::Oversize { field, size, limit: MAX_STRING })
        };
        let checks = self
            .env
            .iter()
            .flat_map(|(k, v)| [over("env", k.len()), over("env", v.len())])
            .chain(self.registry.iter().map(|(k, _)| over("registry key", k.len())))
            .chain(self.entry_points.iter().map(|e| over("entry point", e.name.len())))
            .chain(
                self.entry_points.iter().map(|e| over("entry point arguments", e.args.iter().map(String::len).sum())),
            )
            .chain(self.default_entry.iter().map(|d| over("default entry point", d.len())))
            .chain(self.origins.iter().map(|o| over("origin", o.detail.len())))
            .chain(self.links.iter().map(|l| over("link", l.name.len())))
            .chain(self.base.iter().flat_map(|b| b.unmet.iter().map(|u| over("base unmet", u.len()))));
        match checks.flatten().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The prefixes this capsule declares as shared state ([`Isolation::State`]).
    pub fn state_prefixes(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.isolation
            .iter()
            .filter(|r| r.mode == Isolation::State)
            .filter_map(|r| RelPath::from_host(r.prefix.as_bytes()).ok())
    }

    /// The digest of the encoded manifest: the capsule's identity.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.encode())
    }

    /// The entry at `path` (no symlinks followed).
    pub fn get(&self, path: &RelPath) -> Option<&Entry> {
        self.entries.binary_search_by(|e| e.path.cmp(path)).ok().map(|i| &self.entries[i])
    }

    /// The entries directly in directory `dir` ("" for the root), in order: a binary search
    /// for the range of paths below `dir` (entries are sorted by path, and every path below
    /// "d" sorts between "d/" and "d0"), then those without a further '/'.
    pub fn children<'a>(&'a self, dir: &RelPath) -> impl Iterator<Item = &'a Entry> + 'a {
        let prefix: Vec<u8> = if dir.as_bytes().is_empty() { Vec::new() } else { [dir.as_bytes(), b"/"].concat() };
        let start = self.entries.partition_point(|e| e.path.as_bytes() < prefix.as_slice());
        let below = self.entries[start..].iter().take_while(move |e| e.path.as_bytes().starts_with(&prefix));
        let skip = if dir.as_bytes().is_empty() { 0 } else { dir.as_bytes().len() + 1 };
        below.filter(move |e| !e.path.as_bytes()[skip..].contains(&b'/'))
    }

    /// Follow symlinks inside the capsule (in `path`'s directories and at its end), as the
    /// kernel would inside a root holding only this capsule. `None` when a component is
    /// missing, or after 40 links (ELOOP).
    pub fn resolve(&self, path: &RelPath) -> Option<(RelPath, &Entry)> {
        let mut cur = path.clone();
        'hops: for _ in 0..40 {
            let prefixes: Vec<RelPath> = cur.ancestors().chain(std::iter::once(cur.clone())).collect();
            for prefix in prefixes {
                let e = self.get(&prefix)?;
                if let EntryKind::Symlink { target } = &e.kind {
                    let dest = symlink_destination(&prefix, target)?;
                    let rest = &cur.as_bytes()[prefix.as_bytes().len()..];
                    let mut joined = dest.as_bytes().to_vec();
                    joined.extend_from_slice(rest);
                    cur = RelPath::new(joined).ok()?;
                    continue 'hops;
                }
            }
            let e = self.get(&cur)?;
            return Some((cur, e));
        }
        None
    }

    /// Where `path` leads: like [`resolve`](Self::resolve), but a path that leaves the
    /// capsule (a missing component, reached through the capsule's symlinks or not) is the
    /// host's path at that point, with the rest of the path below it. `None` after 40 links.
    pub fn follow(&self, path: &RelPath) -> Option<Followed<'_>> {
        let mut cur = path.clone();
        'hops: for _ in 0..40 {
            let prefixes: Vec<RelPath> = cur.ancestors().chain(std::iter::once(cur.clone())).collect();
            for prefix in prefixes {
                let Some(e) = self.get(&prefix) else { return Some(Followed::Host(cur)) };
                if let EntryKind::Symlink { target } = &e.kind {
                    let dest = symlink_destination(&prefix, target)?;
                    let rest = &cur.as_bytes()[prefix.as_bytes().len()..];
                    let mut joined = dest.as_bytes().to_vec();
                    joined.extend_from_slice(rest);
                    cur = RelPath::new(joined).ok()?;
                    continue 'hops;
                }
            }
            let e = self.get(&cur)?;
            return Some(Followed::Capsule(cur, e));
        }
        None
    }

    /// Every distinct blob this manifest refers to (file contents only).
    pub fn blobs(&self) -> BTreeSet<Digest> {
        self.entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { digest, .. } => Some(digest),
                _ => None,
            })
            .collect()
    }

    /// Logical size: the sum of regular file sizes (hardlinks counted once).
    pub fn size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    /// Sort entries by path and drop exact duplicates (the last one wins), as builders need
    /// before [`validate`](Self::validate).
    pub fn normalize(&mut self) {
        self.entries.reverse();
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.entries.dedup_by(|later, earlier| later.path == earlier.path);
        self.deletions.sort();
        self.deletions.dedup();
        self.registry.sort_by(|a, b| a.0.cmp(&b.0));
        self.registry.dedup_by(|a, b| a.0 == b.0);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
impl Manifest {
    /// A manifest for unit tests: capsule `t:latest`, one snapshot origin, and `entries`
    /// (path, kind), root-owned with permission bits `mode`.
    pub(crate) fn for_tests(entries: Vec<(&str, EntryKind)>, mode: u32) -> Manifest {
        let mut m = Manifest::new("t", "latest", 0);
        m.origins.push(Origin { step: CaptureStep::SnapshotDiff, detail: String::new(), at: 0 });
        m.entries = entries
            .into_iter()
            .map(|(p, kind)| Entry {
                path: RelPath::new(p).unwrap_or_else(|e| panic!("test path {p}: {e}")),
                kind,
                mode,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_nsec: 0,
                origin: 0,
            })
            .collect();
        m
    }
}
