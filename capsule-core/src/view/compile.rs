//! [`compile`]: a capsule's manifest and run options into view bytes (see the module docs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    ENTRY, FLAG_HOST_DIR, FLAG_HOST_LINK, FLAG_HOST_ONLY, FLAG_LINKED, FLAG_TARGET_OUTSIDE, HEADER, Kind, MAGIC, Mode,
    PROBE, PROBE_AT, RULE, hash,
};
use crate::manifest::{EntryKind, Manifest, RelPath, symlink_destination};

/// What a run adds to the manifest.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// The sandbox tree (absolute host path).
    pub tree: PathBuf,
    /// Isolation of the capsule's own paths.
    pub capsule_mode: Mode,
    /// Prefix rules for host paths ("/" allowed), any order.
    pub rules: Vec<(String, Mode)>,
    /// Paths whited out in the sandbox (deleted during earlier runs).
    pub whiteouts: Vec<RelPath>,
    /// Files the run itself put in the tree, which the program must see there (configuration
    /// files edited through the registry), even where the capsule has no such file.
    pub files: Vec<RelPath>,
    /// Shared state: each prefix, and everything below it, is the host directory given
    /// (absolute). The capsule's own entries and whiteouts below a prefix give way to it.
    pub redirects: Vec<(RelPath, PathBuf)>,
    /// Capsule directories whose files are all linked in the tree already
    /// ([`crate::run::sandbox::Sandbox::linked_dirs`]): marked [`FLAG_LINKED`].
    pub linked: Vec<RelPath>,
}

struct Strings(Vec<u8>);

impl Strings {
    fn add(&mut self, s: &[u8]) -> (u32, u32) {
        let off = self.0.len();
        self.0.extend_from_slice(s);
        (u32::try_from(off).unwrap_or(u32::MAX), u32::try_from(s.len()).unwrap_or(u32::MAX))
    }
}

fn put32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The entries a view holds: the manifest's tree, its deletions and the sandbox's whiteouts
/// (which win), with flags computed against the host.
fn collect(m: &Manifest, opts: &ViewOptions) -> BTreeMap<Vec<u8>, (Kind, u8, u32, Vec<u8>)> {
    let mut map = BTreeMap::new();
    let linked: std::collections::HashSet<&RelPath> = opts.linked.iter().collect();
    for e in &m.entries {
        let (kind, target) = match &e.kind {
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => (Kind::File, Vec::new()),
            EntryKind::Dir => (Kind::Dir, Vec::new()),
            EntryKind::Symlink { target } => (Kind::Symlink, target.clone()),
        };
        let mut flags = 0;
        if kind == Kind::Dir && e.path.to_absolute().is_dir() {
            flags |= FLAG_HOST_DIR;
        }
        if kind == Kind::Dir && linked.contains(&e.path) {
            flags |= FLAG_LINKED;
        }
        if kind == Kind::Symlink {
            let inside = symlink_destination(&e.path, &target).is_some_and(|d| m.resolve(&d).is_some());
            if !inside {
                flags |= FLAG_TARGET_OUTSIDE;
            }
        }
        map.insert(e.path.as_bytes().to_vec(), (kind, flags, e.mode, target));
    }
    for f in &opts.files {
        map.insert(f.as_bytes().to_vec(), (Kind::File, 0, 0o644, Vec::new()));
    }
    for d in m.deletions.iter().chain(&opts.whiteouts) {
        map.insert(d.as_bytes().to_vec(), (Kind::Whiteout, 0, 0, Vec::new()));
    }
    host_links(&mut map, opts);
    for (prefix, dir) in &opts.redirects {
        let p = prefix.as_bytes();
        map.retain(|k, _| !(k.starts_with(p) && (k.len() == p.len() || k.get(p.len()) == Some(&b'/'))));
        // Every ancestor of a view path is in the view (the resolver's walk stops at the first
        // miss), as a directory the host may also have.
        let mut anc = prefix.parent();
        while let Some(a) = anc {
            let key = a.as_bytes().to_vec();
            let host = a.to_absolute().is_dir();
            let e = map.entry(key).or_insert((Kind::Dir, 0, 0o755, Vec::new()));
            if e.0 != Kind::Dir {
                // A capsule symlink or file on the way: the redirect wins, as a directory.
                *e = (Kind::Dir, 0, 0o755, Vec::new());
            }
            if host {
                e.1 |= FLAG_HOST_DIR;
            }
            anc = a.parent();
        }
        map.insert(p.to_vec(), (Kind::Redirect, 0, 0o755, dir.as_os_str().as_encoded_bytes().to_vec()));
    }
    map
}

/// Where host paths go, coarsely: the host (merged or passed through), write-copy, full, or
/// the host read-only.
fn class(rules: &[(String, Mode)], path: &[u8]) -> u8 {
    let mode = rules
        .iter()
        .map(|(p, m)| (p.trim_matches('/').as_bytes(), *m))
        .filter(|(p, _)| {
            p.is_empty() || (path.starts_with(p) && (path.len() == p.len() || path.get(p.len()) == Some(&b'/')))
        })
        .max_by_key(|(p, _)| p.len())
        .map_or(Mode::Merged, |(_, m)| m);
    match mode {
        Mode::Merged | Mode::Passthrough => 0,
        Mode::WriteCopy => 1,
        Mode::Full => 2,
        Mode::ReadOnly => 3,
    }
}

/// Directories whose host symlinks are looked at (with `/` itself): the system directories
/// where distributions keep compatibility links (`/var/run`, `/var/lock`, `/etc/mtab`,
/// `/etc/resolv.conf`, `/bin` …). Deeper links are the kernel's.
const LINK_DIRS: &[&str] = &["", "etc", "usr", "var", "opt", "srv"];

/// Add the host's symlinks that lead from one isolation to another (`/var/run` → `/run`,
/// merged → write-copy), or within write-copy (`/bin` → `usr/bin`), as [`FLAG_HOST_LINK`] symlinks, so that isolation is matched on the
/// resolved path, with their ancestors as [`FLAG_HOST_ONLY`] directories. The capsule's own
/// entries win.
fn host_links(map: &mut BTreeMap<Vec<u8>, (Kind, u8, u32, Vec<u8>)>, opts: &ViewOptions) {
    use std::os::unix::ffi::OsStrExt;
    for dir in LINK_DIRS {
        let Ok(rd) = std::fs::read_dir(Path::new("/").join(dir)) else { continue };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let Ok(target) = std::fs::read_link(e.path()) else { continue };
            let name = e.file_name();
            let mut link = dir.as_bytes().to_vec();
            if !link.is_empty() {
                link.push(b'/');
            }
            link.extend_from_slice(name.as_bytes());
            let Ok(rel) = RelPath::new(link.clone()) else { continue };
            let target = target.as_os_str().as_bytes().to_vec();
            let Some(dest) = symlink_destination(&rel, &target) else { continue };
            // Between two isolations the resolved path decides; within write-copy too, since
            // the path is placed in the tree, which does not have the host's link.
            let (from, to) = (class(&opts.rules, &link), class(&opts.rules, dest.as_bytes()));
            if map.contains_key(&link) || (from == to && from != 1) {
                continue;
            }
            map.insert(link, (Kind::Symlink, FLAG_HOST_LINK | FLAG_TARGET_OUTSIDE, 0o777, target));
            if !dir.is_empty() {
                map.entry(dir.as_bytes().to_vec()).or_insert((
                    Kind::Dir,
                    FLAG_HOST_DIR | FLAG_HOST_ONLY,
                    0o755,
                    Vec::new(),
                ));
            }
        }
    }
}

/// Compile `m` with `opts` into the bytes of a view file.
pub fn compile(m: &Manifest, opts: &ViewOptions) -> Vec<u8> {
    let map = collect(m, opts);
    let n = map.len();
    let n_slots = (n * 2).next_power_of_two().max(16);
    let mut strings = Strings(Vec::new());
    let tree = strings.add(opts.tree.as_os_str().as_encoded_bytes());
    let mut entries = vec![0u8; n * ENTRY];
    let mut slots = vec![0u32; n_slots];
    for (i, (path, (kind, flags, mode, target))) in map.iter().enumerate() {
        let p = strings.add(path);
        let t = strings.add(target);
        let r = &mut entries[i * ENTRY..(i + 1) * ENTRY];
        for (k, v) in [p.0, p.1, t.0, t.1].into_iter().enumerate() {
            put32(r, k * 4, v);
        }
        r[16] = kind.to_u8();
        r[17] = *flags;
        put32(r, 20, *mode);
        // Truncation intended: only the low bits select the slot.
        #[allow(clippy::cast_possible_truncation)]
        let mut s = hash(path) as usize & (n_slots - 1);
        while slots[s] != 0 {
            s = (s + 1) & (n_slots - 1);
        }
        slots[s] = u32::try_from(i + 1).unwrap_or(0);
    }
    let mut rules: Vec<(Vec<u8>, Mode)> =
        opts.rules.iter().map(|(p, m)| (p.trim_matches('/').as_bytes().to_vec(), *m)).collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    let mut rule_bytes = vec![0u8; rules.len() * RULE];
    for (i, (prefix, mode)) in rules.iter().enumerate() {
        let (o, l) = strings.add(prefix);
        put32(&mut rule_bytes, i * RULE, o);
        put32(&mut rule_bytes, i * RULE + 4, l);
        put32(&mut rule_bytes, i * RULE + 8, mode.to_u32());
    }
    let slots_off = HEADER;
    let entries_off = slots_off + n_slots * 4;
    let rules_off = entries_off + entries.len();
    let strings_off = rules_off + rule_bytes.len();
    let mut out = vec![0u8; strings_off];
    out[..8].copy_from_slice(&MAGIC);
    put32(&mut out, 8, 1);
    let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    put32(&mut out, 12, c(n));
    put32(&mut out, 16, c(n_slots));
    put32(&mut out, 20, c(rules.len()));
    for (at, v) in [(24, slots_off), (32, entries_off), (40, rules_off), (48, strings_off), (56, strings.0.len())] {
        put64(&mut out, at, v as u64);
    }
    put32(&mut out, 64, tree.0);
    put32(&mut out, 68, tree.1);
    put32(&mut out, 80, opts.capsule_mode.to_u32());
    put64(&mut out, PROBE_AT, hash(PROBE));
    for (i, s) in slots.iter().enumerate() {
        put32(&mut out, slots_off + i * 4, *s);
    }
    out[entries_off..rules_off].copy_from_slice(&entries);
    out[rules_off..strings_off].copy_from_slice(&rule_bytes);
    out.extend_from_slice(&strings.0);
    out
}
