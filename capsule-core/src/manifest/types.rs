//! The plain data types a [`Manifest`](super::Manifest) is made of.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::RelPath;
use crate::digest::Digest;

/// One node of the capsule's file tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Where it sits in the capsule.
    pub path: RelPath,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Index into [`Manifest::origins`](super::Manifest::origins): the capture step that added it.
    pub origin: u32,
}

/// The kind of a tree node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file whose content is blob `digest`.
    File {
        /// Size in bytes.
        size: u64,
        /// Digest of the content.
        digest: Digest,
    },
    /// A directory.
    Dir,
    /// A symbolic link with a relative target that stays inside the capsule.
    Symlink {
        /// The target, as bytes.
        target: Vec<u8>,
    },
    /// A second name of the regular file at `target` (same inode on the host).
    Hardlink {
        /// The first name of the file.
        target: RelPath,
    },
}

impl EntryKind {
    /// A short name for listings: "file", "dir", "symlink", "hardlink".
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File { .. } => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::Hardlink { .. } => "hardlink",
        }
    }
}

/// A program the capsule offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    /// Short name ("jq"), unique in the capsule: `capsule run NAME PROGRAM` picks it by this.
    pub name: String,
    /// Where it is in the capsule: a program of the capsule, or a capsule symlink that leads
    /// to a program on the host.
    pub path: RelPath,
    /// Arguments put before the command line's (a desktop entry's `Exec=` arguments, field
    /// codes removed).
    pub args: Vec<String>,
    /// How the capture found it.
    pub source: EntrySource,
}

impl EntryPoint {
    /// An entry point without arguments.
    pub fn new(name: impl Into<String>, path: RelPath, source: EntrySource) -> EntryPoint {
        EntryPoint { name: name.into(), path, args: Vec::new(), source }
    }
}

/// How a capture found an entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntrySource {
    /// Named at capture: `--entry`, `capture elf`'s binaries, `capture trace`'s command.
    Declared,
    /// A program in the file list of this Debian package (`/var/lib/dpkg/info/PKG.list`).
    Package(String),
    /// The `Exec=` line of this desktop entry (its capsule path).
    Desktop(String),
    /// A new program in a bin or sbin directory.
    Program,
    /// Recorded by a version-1 manifest, which did not say.
    Unknown,
}

impl EntrySource {
    /// How `inspect` shows it.
    pub fn describe(&self) -> String {
        match self {
            EntrySource::Declared => "declared".to_owned(),
            EntrySource::Package(p) => format!("package {p}"),
            EntrySource::Desktop(d) => format!("desktop /{d}"),
            EntrySource::Program => "new program".to_owned(),
            EntrySource::Unknown => "recorded".to_owned(),
        }
    }
}

/// ThinApp's isolation modes, per path prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    /// Capsule over host; writes outside the capsule go to the host.
    Merged,
    /// Host visible; every write lands in the sandbox.
    WriteCopy,
    /// Host invisible below the prefix.
    Full,
    /// State of a shared capsule: the prefix is one real directory in this capsule's sandbox
    /// (seeded from the capsule's files below it on first use), and every capsule that links
    /// to this one sees that same directory there. (Appended last: manifests written before
    /// it decode unchanged.)
    State,
}

/// One isolation rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationRule {
    /// Absolute path prefix, as the application sees it ("/" allowed).
    pub prefix: String,
    /// The mode below it.
    pub mode: Isolation,
}

/// A registry value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegValue {
    /// Text.
    String(String),
    /// A number.
    Int(i64),
    /// The content of a configuration file, as a blob (capture records /etc this way).
    File {
        /// Digest of the content.
        digest: Digest,
        /// Permission bits.
        mode: u32,
    },
    /// The key's file was deleted by the captured install.
    Deleted,
}

/// Identity defaults for runs of this capsule (issue 5 applies them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Host name.
    pub hostname: Option<String>,
    /// NIS/DNS domain.
    pub domain: Option<String>,
    /// IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// 32 hex digits.
    pub machine_id: Option<String>,
    /// gethostid(3) value.
    pub hostid: Option<u32>,
}

/// A link to a shared capsule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The shared capsule's name.
    pub name: String,
    /// Pinned manifest digest, if any.
    pub digest: Option<Digest>,
}

/// How files came into a capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureStep {
    /// `capture snapshot begin/end`.
    SnapshotDiff,
    /// `capture elf`.
    ElfClosure,
    /// `capture install`.
    Install,
    /// `capture trace`.
    Trace,
    /// `capture shared`, or `--state`/`--link` on another capture: declarations, no files.
    /// (Appended last: manifests written before it decode unchanged.)
    Declared,
    /// `sandbox NAME commit NEWNAME`: a capsule and what its programs changed.
    Commit,
    /// What a snapshot or install capture needs beyond its base (`--base`): the host packages
    /// and files its programs, libraries, interpreters and packages need. (Appended last.)
    Closure,
}

impl CaptureStep {
    /// The name shown by `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            CaptureStep::SnapshotDiff => "snapshot-diff",
            CaptureStep::ElfClosure => "elf-closure",
            CaptureStep::Install => "install",
            CaptureStep::Trace => "trace",
            CaptureStep::Declared => "declared",
            CaptureStep::Commit => "sandbox-commit",
            CaptureStep::Closure => "closure",
        }
    }
}

/// One capture step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Which kind of step.
    pub step: CaptureStep,
    /// What it was given (snapshot digest, binaries, command).
    pub detail: String,
    /// Seconds since the epoch.
    pub at: u64,
}

/// What a capture knows of the packages the capsule holds (manifest version 3): the Debian
/// packages the capture installed or changed (`capture install`, `capture snapshot`), or that
/// own the files it packed (`capture elf`, `capture trace`), as dpkg recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The distribution of the capture's root (its `os-release`), if it says.
    pub distro: Option<Distro>,
    /// The packages, sorted by name and architecture, each (name, architecture) once.
    pub packages: Vec<Package>,
}

/// A distribution as `os-release` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distro {
    /// `ID` ("debian").
    pub id: String,
    /// `VERSION_ID` ("12"); empty when the release has none (sid).
    pub version_id: String,
    /// `VERSION_CODENAME` ("bookworm"); may be empty.
    pub codename: String,
}

/// One Debian package, as dpkg's status database records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Architecture` (`amd64`, `all`).
    pub architecture: String,
    /// The source package (`Source`, else the package's own name).
    pub source: String,
    /// The source package's version when it differs from [`version`](Self::version)
    /// (`Source: NAME (VERSION)`, binNMUs).
    pub source_version: Option<String>,
    /// `Maintainer` (the supplier an SBOM names); may be empty.
    pub maintainer: String,
    /// The packages of this inventory it depends on (`Depends`, `Pre-Depends`: any
    /// alternative, or a package of the inventory providing it), sorted, each once.
    pub depends: Vec<String>,
}

/// What a capture assumed the machines that run the capsule have (`--base`), and so left
/// out of its closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BaseKind {
    /// Debian's `Priority: required` and `Essential: yes` packages with what they depend on
    /// (glibc among them): a minbase root. The capsule carries everything else it needs.
    Minimal,
    /// Nothing but a kernel: the capsule carries its loader, glibc and every interpreter.
    None,
    /// The capture host itself: the capsule holds only what the capture changed.
    Host,
}

impl BaseKind {
    /// The name `--base` and `inspect` use.
    pub fn name(self) -> &'static str {
        match self {
            BaseKind::Minimal => "minimal",
            BaseKind::None => "none",
            BaseKind::Host => "host",
        }
    }
}

/// The base a capsule was captured against ([`BaseKind`]), and the distribution it is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Which base.
    pub kind: BaseKind,
    /// The distribution of the capture's source root (`minimal` of Debian 12 is bookworm's
    /// minbase); `None` when its `os-release` does not say.
    pub distro: Option<Distro>,
    /// Needs of the capsule that the capture's source did not meet either (`WHO needs WHAT`,
    /// as `capsule check` prints them without the reason: Debian's `cgi.py` names
    /// `#!/usr/local/bin/python`), sorted: `check` shows them apart and does not fail for them.
    pub unmet: Vec<String>,
}
