//! Deletions of host names in a sandbox, seen at once by every process of every run of it.
//!
//! The view is immutable for a run: a host file deleted under write-copy (a whiteout) reaches
//! it only at the next run's compile. Until then, lookups would still find the host's file and
//! listings would show it. So the materialiser, which records each deletion, also sets it in
//! this table, a file beside the sandbox tree (`sandboxes/NAME/deleted`) that every process of
//! the sandbox's runs maps shared: the resolver asks it before it sends a write-copy path to
//! the host, and merged listings skip the names it holds. A name re-created in the tree is
//! cleared.
//!
//! Layout: one u64 of flags (bit 0: a capsule directory was deleted in the sandbox, so a tree
//! path of the capsule's may now lead through a symlink the program put in its place: the
//! resolver's literal fast path is off and capsule entries are probed like any tree path),
//! then [`SLOTS`] little-endian u64 slots, open addressing with linear probing, keyed by a
//! 64-bit FNV-1a hash of the tree-relative path: 0 is empty, otherwise the hash with bit 0
//! replaced by "deleted". Slots are only ever claimed, never freed (a cleared name keeps its
//! slot with bit 0 off), so a lookup stops at the first empty slot. Writers (materialisers,
//! possibly of two runs) claim slots with compare-and-swap; readers (the shim on its hook
//! path, the supervisor) load with acquire ordering: no lock, no allocation. A hash collision
//! (2^-63 per pair) would hide a name; a full table stops recording, and the view takes over
//! from the next run.
#![allow(unsafe_code)] // mapping the file, and its bytes seen as atomics: see `Mapping::words`

use core::sync::atomic::{AtomicU64, Ordering};

/// Slots in the table (a power of two): 512 KiB of file, sparse until used.
pub const SLOTS: usize = 1 << 16;
/// Words in the file: the flags, then the slots.
pub const WORDS: usize = SLOTS + 1;
/// Size of the file.
pub const BYTES: usize = WORDS * 8;
/// The file's name, in the sandbox directory.
pub const FILE: &str = "deleted";

/// FNV-1a, continued from `state` over `bytes`.
#[inline]
pub fn hash_more(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(0x0000_0100_0000_01b3);
    }
    state
}

/// FNV-1a's starting state.
pub const HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The hash state of directory `abs` (absolute, "/" for the root) followed by '/': each
/// entry's name continues it ([`hash_more`]) to the entry's key.
pub fn dir_hash(abs: &[u8]) -> u64 {
    // "/a/b/" (a directory spelled with its trailing slash) is "/a/b".
    let mut abs = abs;
    while let Some(a) = abs.strip_suffix(b"/").filter(|a| !a.is_empty()) {
        abs = a;
    }
    match abs.strip_prefix(b"/").unwrap_or(abs) {
        b"" => HASH_START,
        rel => hash_more(hash_more(HASH_START, rel), b"/"),
    }
}

/// The key of a finished hash: bit 0 is the "deleted" flag, and 0 means empty.
#[inline]
fn key(h: u64) -> u64 {
    match h & !1 {
        0 => 2,
        k => k,
    }
}

/// The table over a mapping of the file.
#[derive(Clone, Copy)]
pub struct Live<'a> {
    flags: &'a AtomicU64,
    slots: &'a [AtomicU64],
}

impl<'a> Live<'a> {
    /// The table over `words` (the flags, then the slots): `None` unless there are
    /// [`WORDS`] of them.
    pub fn new(words: &'a [AtomicU64]) -> Option<Live<'a>> {
        let (flags, slots) = words.split_first()?;
        (slots.len() == SLOTS).then_some(Live { flags, slots })
    }

    /// Whether a capsule directory was deleted in the sandbox (module docs).
    #[inline]
    pub fn dirs_replaced(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & 1 != 0
    }

    /// Record that a capsule directory was deleted.
    pub fn mark_dirs_replaced(&self) {
        self.flags.fetch_or(1, Ordering::Release);
    }

    /// Whether tree-relative path `rel` is deleted.
    #[inline]
    pub fn contains(&self, rel: &[u8]) -> bool {
        self.contains_hash(hash_more(HASH_START, rel))
    }

    /// `Some(true)`: `rel` is deleted; `Some(false)`: it was deleted and made again; `None`:
    /// the table does not know it.
    pub fn state(&self, rel: &[u8]) -> Option<bool> {
        self.state_hash(hash_more(HASH_START, rel))
    }

    /// Whether the path whose FNV-1a hash is `h` is deleted ([`hash_more`] lets a listing
    /// hash a directory's prefix once and each name after it).
    pub fn contains_hash(&self, h: u64) -> bool {
        self.state_hash(h) == Some(true)
    }

    fn state_hash(&self, h: u64) -> Option<bool> {
        let k = key(h);
        let mask = SLOTS - 1;
        #[allow(clippy::cast_possible_truncation)] // only the low bits pick the slot
        let mut i = k as usize & mask;
        for _ in 0..SLOTS {
            let slot = self.slots.get(i)?;
            let v = slot.load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            if v & !1 == k {
                return Some(v & 1 == 1);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Mark `rel` deleted (or no longer deleted). `false`: the table is full.
    pub fn set(&self, rel: &[u8], deleted: bool) -> bool {
        let k = key(hash_more(HASH_START, rel));
        let v = k | u64::from(deleted);
        let mask = SLOTS - 1;
        #[allow(clippy::cast_possible_truncation)] // only the low bits pick the slot
        let mut i = k as usize & mask;
        for _ in 0..SLOTS {
            let Some(slot) = self.slots.get(i) else { return false };
            match slot.compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(cur) if cur & !1 == k => {
                    slot.store(v, Ordering::Release);
                    return true;
                }
                Err(_) => i = (i + 1) & mask,
            }
        }
        false
    }
}

/// A shared mapping of a sandbox's table file: writable (the materialiser, which creates the
/// file) or read-only (the shim, the supervisor).
pub struct Mapping {
    ptr: *mut libc::c_void,
}

// SAFETY: the mapping is only read through `Live`'s atomics, from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map the table at `path` (NUL-terminated): with `write`, created (mode 0644) and sized
    /// if need be; without, only an existing file of the right size. `None` on any failure
    /// (the run then goes without in-run deletions, as before them).
    pub fn open(path: &core::ffi::CStr, write: bool) -> Option<Mapping> {
        let flags = if write { libc::O_RDWR | libc::O_CREAT } else { libc::O_RDONLY };
        // SAFETY: `path` is NUL-terminated; the kernel returns a descriptor or -1.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0o644) };
        if fd < 0 {
            return None;
        }
        let mapping = Self::from_fd(fd, write);
        // SAFETY: our own descriptor; the mapping stays valid after it is closed.
        unsafe { libc::close(fd) };
        mapping
    }

    /// Map the table open at `fd` (left open), as [`Mapping::open`] does. For a caller that
    /// opens the file itself (the shim, with a call its run's filter lets through).
    pub fn from_fd(fd: i32, write: bool) -> Option<Mapping> {
        Self::map(fd, write).map(|ptr| Mapping { ptr })
    }

    fn map(fd: i32, write: bool) -> Option<*mut libc::c_void> {
        // SAFETY: a plain struct the kernel fills.
        let mut sb: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: `fd` is open; `sb` writable.
        if unsafe { libc::fstat(fd, &raw mut sb) } != 0 || sb.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let size = usize::try_from(sb.st_size).ok()?;
        #[allow(clippy::cast_possible_wrap)] // 512 KiB
        // SAFETY: growing our own regular file; a shorter one is extended with zeros (empty slots).
        if size != BYTES && !(write && size < BYTES && unsafe { libc::ftruncate(fd, BYTES as libc::off_t) } == 0) {
            return None;
        }
        let prot = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh shared mapping of BYTES bytes of a file that long; nothing else is
        // mapped at the address the kernel picks.
        let p = unsafe { libc::mmap(core::ptr::null_mut(), BYTES, prot, libc::MAP_SHARED, fd, 0) };
        (p != libc::MAP_FAILED).then_some(p)
    }

    /// The mapped words.
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` maps BYTES = WORDS * 8 bytes, page-aligned (so 8-aligned), for as
        // long as `self` lives (unmapped in Drop); `AtomicU64` has the size and alignment of
        // `u64`. Every process reaches the file's bytes only through atomic operations on
        // this type, so no non-atomic access races with them.
        unsafe { core::slice::from_raw_parts(self.ptr.cast::<AtomicU64>(), WORDS) }
    }

    /// The table.
    pub fn live(&self) -> Option<Live<'_>> {
        Live::new(self.words())
    }

    /// Keep the mapping for the life of the process (the shim's state is `'static`).
    pub fn leak(self) -> Option<Live<'static>> {
        let m = core::mem::ManuallyDrop::new(self);
        // SAFETY: as in `words`; never unmapped (ManuallyDrop), so the slots live for the
        // process.
        Live::new(unsafe { core::slice::from_raw_parts(m.ptr.cast::<AtomicU64>(), WORDS) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping of BYTES bytes, not used after this.
        unsafe { libc::munmap(self.ptr, BYTES) };
    }
}

/// The table file of the sandbox whose tree is `tree` (".../sandboxes/NAME/root"), into `out`
/// with its NUL; `None` when `tree` has no parent.
pub fn file_of(tree: &[u8], out: &mut crate::resolve::path::PathBuffer) -> Option<()> {
    let cut = tree.iter().rposition(|&c| c == b'/')?;
    out.clear();
    out.push(tree.get(..cut)?).ok()?;
    out.push(b"/").ok()?;
    out.push(FILE.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_and_probe() {
        let slots: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        let live = Live::new(&slots).unwrap();
        assert!(!live.contains(b"etc/hostname"));
        assert!(live.set(b"etc/hostname", true));
        assert!(live.contains(b"etc/hostname"));
        assert!(!live.contains(b"etc/hostnam"));
        let dir = hash_more(HASH_START, b"etc/");
        assert!(live.contains_hash(hash_more(dir, b"hostname")));
        assert!(live.set(b"etc/hostname", false));
        assert!(!live.contains(b"etc/hostname"));
        assert_eq!((live.state(b"etc/hostname"), live.state(b"etc/other")), (Some(false), None));
        for i in 0..1000 {
            assert!(live.set(format!("d/{i}").as_bytes(), true));
        }
        assert!((0..1000).all(|i| live.contains(format!("d/{i}").as_bytes())));
        assert!(Live::new(&slots[1..]).is_none());
        assert!(!live.dirs_replaced());
        live.mark_dirs_replaced();
        assert!(live.dirs_replaced() && live.contains(b"d/7"));
    }
}
