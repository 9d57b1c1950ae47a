//! The view: what the shim reads at run time. One immutable file compiled from a capsule and
//! its run options ([`compile`](fn@compile), with the `store` feature), mmap'd read-only by every
//! process of a run and read through [`View`], which allocates nothing, takes no lock and never
//! panics (every read is bounds-checked; a damaged view reads as "no entry").
//!
//! ```text
//! header   128 bytes: magic "CAPVIEW\x04", counts, section offsets, tree path, hash probe
//! slots    u32 × n_slots (power of two): entry index + 1, 0 = empty; [`hash`], linear probing
//! entries  24 bytes each: path (off, len), target (off, len), kind, flags, mode; the target
//!          is a symlink's (relative) or a redirect's (absolute host directory)
//! rules    12 bytes each: prefix (off, len), isolation mode; longest prefix first
//! strings  paths (without the leading '/'), symlink targets, the tree path
//! ```
//! Nothing specific to one run (the materialiser's socket, identities of a process) goes in
//! a view: runs with the same capsule, sandbox state and options share one view file.
//! ```text
//! ```
//! This module has no dependencies beyond core, so the shim links it with capsule-core's
//! default features off.

#[cfg(feature = "store")]
mod compile;
pub mod live;
#[cfg(test)]
mod tests;

#[cfg(feature = "store")]
pub use compile::{ViewOptions, compile};

/// Magic of a view file.
pub const MAGIC: [u8; 8] = *b"CAPVIEW\x04";
/// Header size.
pub const HEADER: usize = 128;
/// Entry record size.
pub const ENTRY: usize = 24;
/// Rule record size.
pub const RULE: usize = 12;

/// Kind of a view entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file (or hardlink): materialised lazily into the tree.
    File,
    /// Directory: present in the tree from the start.
    Dir,
    /// Symbolic link: present in the tree from the start; `target` is relative.
    Symlink,
    /// Deleted by the capture or in the sandbox: reads as ENOENT.
    Whiteout,
    /// A shared capsule's state directory: this path and everything below it is the host
    /// directory `target` (absolute), as a bind mount would make it. Every linked app sees
    /// the same directory, so writes, `flock` and `fcntl` locks are shared.
    Redirect,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            3 => Some(Kind::Symlink),
            4 => Some(Kind::Whiteout),
            5 => Some(Kind::Redirect),
            _ => None,
        }
    }

    /// The byte stored in the file.
    pub fn to_u8(self) -> u8 {
        match self {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
            Kind::Whiteout => 4,
            Kind::Redirect => 5,
        }
    }
}

/// Entry flag: the host has a directory at the same path, so listings must merge.
pub const FLAG_HOST_DIR: u8 = 1;
/// Entry flag: a symlink whose target lies outside the capsule.
pub const FLAG_TARGET_OUTSIDE: u8 = 2;
/// Entry flag: a directory whose every capsule file was already linked into the tree when the
/// view was made, so a listing needs no materialiser request first.
pub const FLAG_LINKED: u8 = 4;
/// Entry flag: a symlink of the host's, not the capsule's, at a place where isolation changes
/// (`/var/run` → `/run`: merged → write-copy). The resolver follows it in the view, so the
/// isolation of where it leads applies (a program's `mkdir /var/run/x` is write-copy like
/// `/run/x`); not followed, the link is the host's own.
pub const FLAG_HOST_LINK: u8 = 8;
/// Entry flag: a directory the view holds only as the way to a [`FLAG_HOST_LINK`] below it
/// (every ancestor of a view path is in the view): the host's directory, not the capsule's.
pub const FLAG_HOST_ONLY: u8 = 16;

/// Isolation mode of a path prefix, as stored in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Writes outside the capsule go to the host; no sandbox lookup for host paths.
    Merged,
    /// Host visible; writes land in the sandbox; host paths are looked up in the sandbox first.
    WriteCopy,
    /// Host invisible below the prefix.
    Full,
    /// Not virtualised at all (/dev, /proc, /sys by default).
    Passthrough,
    /// Host visible, and nothing below the prefix changes: a call that would change a name,
    /// a file's content or its metadata fails with EROFS, as on a read-only mount, in both
    /// tiers (nothing is copied into the sandbox). The store, seen by its programs, is this:
    /// a recursive change from `/` must not copy the store into its own sandbox.
    ReadOnly,
}

impl Mode {
    fn from_u32(v: u32) -> Mode {
        match v {
            1 => Mode::WriteCopy,
            2 => Mode::Full,
            3 => Mode::Passthrough,
            4 => Mode::ReadOnly,
            _ => Mode::Merged,
        }
    }

    /// The value stored in the file.
    pub fn to_u32(self) -> u32 {
        match self {
            Mode::Merged => 0,
            Mode::WriteCopy => 1,
            Mode::Full => 2,
            Mode::Passthrough => 3,
            Mode::ReadOnly => 4,
        }
    }
}

/// One entry, borrowed from the view.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Index in the entry table.
    pub index: u32,
    /// Path without the leading '/'.
    pub path: &'a [u8],
    /// Symlink target (relative), empty otherwise.
    pub target: &'a [u8],
    /// Kind.
    pub kind: Kind,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Permission bits.
    pub mode: u32,
}

impl Entry<'_> {
    /// A capsule directory whose files may not all be in the tree yet: before listing it, both
    /// tiers ask the materialiser to link them (`OP_LINK_DIR`).
    pub fn needs_linking(&self) -> bool {
        self.kind == Kind::Dir && self.flags & (FLAG_LINKED | FLAG_HOST_ONLY) == 0
    }

    /// A capsule file or directory, in the tree (not a host directory on the way to a host
    /// link).
    #[inline]
    pub fn in_tree(&self) -> bool {
        matches!(self.kind, Kind::File | Kind::Dir) && self.flags & FLAG_HOST_ONLY == 0
    }
}

/// A view over the bytes of a view file.
#[derive(Clone, Copy)]
pub struct View<'a> {
    b: &'a [u8],
    n_entries: u32,
    n_slots: u32,
    n_rules: u32,
    /// The sections, cut out once by [`View::new`] so that every access is one `get` on a
    /// section rather than offset arithmetic on the whole file (this is the shim's hot path).
    slots: &'a [u8],
    entries: &'a [u8],
    rules: &'a [u8],
    strings: &'a [u8],
    /// Deletions made in the sandbox since the view was compiled ([`live`]).
    live: Option<live::Live<'a>>,
}

/// `len` bytes of `b` from `at`, if they are all there.
fn section(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

/// Little-endian u32 at `at` of a slice.
#[inline]
fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian u32 at constant offset `at` of an entry record.
#[inline]
#[allow(clippy::indexing_slicing)] // constant offsets into a fixed-size array: checked at compile time
fn field(r: &[u8; ENTRY], at: usize) -> u32 {
    u32::from_le_bytes([r[at], r[at + 1], r[at + 2], r[at + 3]])
}

/// Why bytes are not a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewError {
    /// Wrong magic or too short.
    BadMagic,
    /// A section lies outside the file, or the slot count is not a power of two.
    BadLayout,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Header offset of the hash probe: [`hash`] of [`PROBE`] as the writer computed it. A reader
/// whose `hash` differs (a shim and a `capsule` from different builds) refuses the view instead
/// of silently missing every lookup.
pub const PROBE_AT: usize = 88;
/// The string the probe hashes.
pub const PROBE: &[u8] = b"capsule view hash probe: /usr/lib/x86_64-linux-gnu";

/// The slot hash of a path: eight bytes per step (a byte-serial FNV-1a spent most of a
/// lookup waiting on one multiply per byte), multiply-xorshift mixing, the length folded in.
/// Changing it changes the view format: bump [`MAGIC`].
#[inline]
pub fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    let mut mix = |w: u64| {
        h = (h ^ w).wrapping_mul(K);
        h ^= h >> 29;
    };
    for c in &mut chunks {
        mix(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(rest) {
            *d = *s;
        }
        mix(u64::from_le_bytes(w));
    }
    h ^ (h >> 32)
}

impl<'a> View<'a> {
    /// Check the header and section bounds of `b`.
    pub fn new(b: &'a [u8]) -> Result<View<'a>, ViewError> {
        if b.get(..8) != Some(&MAGIC[..]) || b.len() < HEADER {
            return Err(ViewError::BadMagic);
        }
        let field = |at| u32_at(b, at).ok_or(ViewError::BadLayout);
        let off = |at| u64_at(b, at).and_then(|v| usize::try_from(v).ok()).ok_or(ViewError::BadLayout);
        let (n_entries, n_slots, n_rules) = (field(12)?, field(16)?, field(20)?);
        if u64_at(b, PROBE_AT) != Some(hash(PROBE)) {
            return Err(ViewError::BadMagic);
        }
        if !n_slots.is_power_of_two() {
            return Err(ViewError::BadLayout);
        }
        let cut = |at: usize, count: u32, size: usize| {
            (count as usize).checked_mul(size).and_then(|n| section(b, at, n)).ok_or(ViewError::BadLayout)
        };
        Ok(View {
            b,
            n_entries,
            n_slots,
            n_rules,
            slots: cut(off(24)?, n_slots, 4)?,
            entries: cut(off(32)?, n_entries, ENTRY)?,
            rules: cut(off(40)?, n_rules, RULE)?,
            strings: section(b, off(48)?, off(56)?).ok_or(ViewError::BadLayout)?,
            live: None,
        })
    }

    /// This view with the sandbox's table of deletions made since it was compiled.
    pub fn with_live(self, live: Option<live::Live<'a>>) -> View<'a> {
        View { live, ..self }
    }

    /// Whether the host name at `rel` (no leading '/') was deleted in the sandbox since the
    /// view was compiled.
    #[inline]
    pub fn deleted(&self, rel: &[u8]) -> bool {
        self.live.is_some_and(|l| l.contains(rel))
    }

    /// Whether `rel`, deleted when the view was made, was made again in the sandbox since.
    #[inline]
    pub fn recreated(&self, rel: &[u8]) -> bool {
        self.live.is_some_and(|l| l.state(rel) == Some(false))
    }

    /// Whether a capsule directory was deleted in the sandbox, so that a capsule path may
    /// lead through a symlink the program made in its place ([`live`]).
    #[inline]
    pub fn dirs_replaced(&self) -> bool {
        self.live.is_some_and(|l| l.dirs_replaced())
    }

    /// The table of deletions, if the run has one.
    pub fn live(&self) -> Option<live::Live<'a>> {
        self.live
    }

    #[inline]
    fn string(&self, off: u32, len: u32) -> Option<&'a [u8]> {
        section(self.strings, off as usize, len as usize)
    }

    fn header_string(&self, at: usize) -> &'a [u8] {
        match (u32_at(self.b, at), u32_at(self.b, at + 4)) {
            (Some(o), Some(l)) => self.string(o, l).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Absolute host path of the sandbox tree (no trailing '/').
    pub fn tree(&self) -> &'a [u8] {
        self.header_string(64)
    }

    /// Isolation of paths the capsule holds.
    pub fn capsule_mode(&self) -> Mode {
        Mode::from_u32(u32_at(self.b, 80).unwrap_or(1))
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.n_entries
    }

    /// Whether the view has no entries.
    pub fn is_empty(&self) -> bool {
        self.n_entries == 0
    }

    /// Entry number `i`.
    pub fn entry(&self, i: u32) -> Option<Entry<'a>> {
        self.decode(i, self.record(i)?)
    }

    /// The record of entry `i`, as a fixed-size array (field reads need no bounds checks).
    #[inline]
    fn record(&self, i: u32) -> Option<&'a [u8; ENTRY]> {
        self.entries.get((i as usize).checked_mul(ENTRY)?..)?.first_chunk::<ENTRY>()
    }

    /// Entry `i` from its record `r`.
    #[inline(always)]
    fn decode(&self, i: u32, r: &'a [u8; ENTRY]) -> Option<Entry<'a>> {
        Some(Entry {
            index: i,
            path: self.string(field(r, 0), field(r, 4))?,
            target: self.string(field(r, 8), field(r, 12))?,
            kind: Kind::from_u8(r[16])?,
            flags: r[17],
            mode: field(r, 20),
        })
    }

    /// The entry at `path` (no leading '/', normalised), by one hash probe sequence. Each
    /// probe compares the stored path's length, then its bytes, before decoding anything else
    /// of the record: most probes end at the length.
    #[inline(always)]
    pub fn lookup(&self, path: &[u8]) -> Option<Entry<'a>> {
        let mask = self.n_slots.wrapping_sub(1) as usize;
        // Truncation intended: the slot index only needs the low bits of the hash.
        #[allow(clippy::cast_possible_truncation)]
        let mut i = hash(path) as usize & mask;
        for _ in 0..self.n_slots {
            let slot = le32(self.slots, i * 4)?;
            if slot == 0 {
                return None;
            }
            let rec = self.record(slot - 1)?;
            let len = field(rec, 4);
            if len as usize == path.len() && self.string(field(rec, 0), len)? == path {
                return self.decode(slot - 1, rec);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The number of isolation rules.
    pub fn rule_count(&self) -> usize {
        self.n_rules as usize
    }

    /// Isolation rule `i` (longest prefix first): its prefix (no leading '/', empty for `/`)
    /// and mode.
    pub fn rule(&self, i: usize) -> Option<(&'a [u8], Mode)> {
        let at = i.checked_mul(RULE)?;
        let (o, l, m) = (le32(self.rules, at)?, le32(self.rules, at + 4)?, le32(self.rules, at + 8)?);
        Some((self.string(o, l)?, Mode::from_u32(m)))
    }

    /// The isolation rule that governs host path `path` (no leading '/'): the longest whose
    /// prefix holds it, as its index.
    pub fn rule_of(&self, path: &[u8]) -> Option<usize> {
        (0..self.rule_count()).find(|&i| {
            self.rule(i).is_some_and(|(prefix, _)| {
                prefix.is_empty()
                    || (path.starts_with(prefix)
                        && (path.len() == prefix.len() || path.get(prefix.len()) == Some(&b'/')))
            })
        })
    }

    /// The isolation mode of host path `path` (no leading '/'): the longest matching rule, or
    /// `Merged`.
    pub fn mode_of(&self, path: &[u8]) -> Mode {
        self.rule_of(path).and_then(|i| self.rule(i)).map_or(Mode::Merged, |(_, m)| m)
    }
}
