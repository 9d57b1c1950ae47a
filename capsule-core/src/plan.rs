//! Launch plans: what `capsule run` prepared for one command line, kept so that the next
//! identical run starts its program without preparing again.
//!
//! A run's preparation (resolve the ref, decode the manifest, build the skeleton, compile the
//! view, link the libraries) gives the same result while its inputs are unchanged, and the
//! process that does it pays glibc's start-up (on a VM, ~70 trapped `cpuid`s: most of a
//! millisecond). So the full launcher writes down, beside the result, every input it consulted
//! (a file's identity, or whether a host directory exists), and the `capsule` front end
//! (capsule-cli/src/front), which starts without glibc, checks those inputs with one `stat`
//! each and starts the program from the plan; anything else goes to the full launcher.
//!
//! This module is the format, shared by both sides: the writer ([`Plan::encode`]) and a reader
//! that allocates nothing ([`records`], [`shape`], [`key_parts`]), for the front end.
//!
//! A plan file is `MAGIC`, then records `tag: u8 · len: u32 LE · payload`; string payloads end
//! with a NUL (the front end hands them to execve as they are). It lives at
//! `STORE/plans/HASH.plan`, where HASH is [`fnv1a`] of the run's key ([`key_parts`]: the working
//! directory, the arguments after the program name, and `$CAPSULE_SHIM`), and holds that key
//! whole: a hash collision is a miss.

/// The first bytes of a plan file (the digit is the format version).
pub const MAGIC: &[u8; 8] = b"CAPPLAN1";
/// Largest plan file either side accepts.
pub const MAX_SIZE: usize = 1 << 20;

/// Record tags.
pub mod tag {
    /// The run's key, exactly ([`super::key_parts`]).
    pub const KEY: u8 = 1;
    /// An input file: `flags: u8 · [Sig; 56 bytes if present] · path NUL`; flags: bit 0
    /// present, bit 1 not following a final symlink (`lstat`).
    pub const FILE: u8 = 2;
    /// A host directory's existence: `is_dir: u8 · path NUL`.
    pub const DIR: u8 = 3;
    /// The program to execute (a host path) NUL.
    pub const PROGRAM: u8 = 4;
    /// Its argv[0] NUL.
    pub const ARGV0: u8 = 5;
    /// `u32 LE`: the index in capsule's own argv where the program's arguments start.
    pub const ARGS_FROM: u8 = 6;
    /// `KEY=VALUE` NUL, set in the program's environment (over an inherited one).
    pub const ENV: u8 = 7;
    /// The view file NUL (inherited as a descriptor too).
    pub const VIEW: u8 = 8;
    /// The sandbox tree NUL (inherited as a descriptor too).
    pub const TREE: u8 = 9;
    /// Directories put before an inherited `LD_LIBRARY_PATH`, ':'-separated, NUL.
    pub const LIBRARY_PATH: u8 = 10;
    /// The capsule's manifest digest (hex) NUL, for the materialiser.
    pub const DIGEST: u8 = 11;
    /// The sandbox's name NUL, for the materialiser.
    pub const SANDBOX: u8 = 12;
    /// The full launcher (`capsule-cli`) NUL: it serves the materialiser and waits.
    pub const LAUNCHER: u8 = 13;
    /// An argument NUL put between argv[0] and the command line's arguments (a script's
    /// interpreter argument and path, the capsule loader's options), in order; repeated.
    pub const ARG: u8 = 14;
    /// A Landlock grant (`crate::confine::record`): `rights: u64 LE · path NUL`; repeated.
    /// A plan with any is confined: a front end that cannot confine the program leaves the
    /// run to the full launcher.
    pub const LANDLOCK: u8 = 15;
}

/// Most Landlock grants a plan may carry (the front end keeps them in a fixed array).
pub const MAX_GRANTS: usize = 128;

/// A file's identity as `stat` reports it: inode, size, modification and change times, mode.
/// Every write to a file the launcher reads either replaces it (a new inode) or changes its
/// size or times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u64; 7]);

impl Sig {
    /// Its encoding (7 × u64 LE).
    pub fn bytes(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        for (chunk, v) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decode 56 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Sig> {
        if b.len() != 56 {
            return None;
        }
        let mut v = [0u64; 7];
        for (slot, chunk) in v.iter_mut().zip(b.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            *slot = u64::from_le_bytes(a);
        }
        Some(Sig(v))
    }

    /// From `stat` fields (both sides build it through here).
    #[allow(clippy::cast_sign_loss)] // times before 1970 compare as well as bit patterns
    pub fn new(ino: u64, size: u64, mtime: (i64, i64), ctime: (i64, i64), mode: u32) -> Sig {
        Sig([ino, size, mtime.0 as u64, mtime.1 as u64, ctime.0 as u64, ctime.1 as u64, u64::from(mode)])
    }
}

/// The records of a plan file, in order; `None` at the first malformed one (the caller treats
/// the whole file as a miss). Checks the magic and the size first.
pub fn records(buf: &[u8]) -> Option<Records<'_>> {
    if buf.len() > MAX_SIZE {
        return None;
    }
    let rest = buf.strip_prefix(MAGIC.as_slice())?;
    Some(Records { rest, bad: false })
}

/// Iterator over records (see [`records`]); [`Records::bad`] tells a truncated file apart
/// from a finished one.
pub struct Records<'a> {
    rest: &'a [u8],
    bad: bool,
}

impl Records<'_> {
    /// Whether iteration stopped at a malformed record.
    pub fn bad(&self) -> bool {
        self.bad
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&t, rest) = self.rest.split_first()?;
        let Some((len, rest)) = rest.split_first_chunk::<4>() else {
            self.bad = true;
            return None;
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((payload, rest)) = rest.split_at_checked(len) else {
            self.bad = true;
            return None;
        };
        self.rest = rest;
        Some((t, payload))
    }
}

/// An input a plan was written against: a [`tag::FILE`] or [`tag::DIR`] record, as the front
/// end checks it before starting from the plan and `gc` checks it before keeping the plan.
/// Paths keep their NUL (the front end hands them to `stat` as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A file.
    File {
        /// Its path, NUL-terminated.
        path: &'a [u8],
        /// Looked at with `lstat` (else `stat`).
        nofollow: bool,
        /// Its identity then; `None`: it did not exist.
        want: Option<Sig>,
    },
    /// A host path.
    Dir {
        /// Its path, NUL-terminated.
        path: &'a [u8],
        /// Whether it was a directory then.
        was_dir: bool,
    },
}

/// The input record `t` holds: `Some(None)` for a record of another kind, `None` for a
/// malformed one.
pub fn input(t: u8, payload: &[u8]) -> Option<Option<Input<'_>>> {
    match t {
        tag::FILE => {
            let (&flags, rest) = payload.split_first()?;
            let (want, path) = if flags & 1 == 1 {
                let (sig, path) = rest.split_at_checked(56)?;
                (Some(Sig::from_bytes(sig)?), path)
            } else {
                (None, rest)
            };
            c_str(path)?;
            Some(Some(Input::File { path, nofollow: flags & 2 != 0, want }))
        }
        tag::DIR => {
            let (&was, path) = payload.split_first()?;
            c_str(path)?;
            Some(Some(Input::Dir { path, was_dir: was == 1 }))
        }
        _ => Some(None),
    }
}

/// A NUL-terminated payload without its NUL (`None` if it has none or holds another).
pub fn c_str(payload: &[u8]) -> Option<&[u8]> {
    let s = payload.strip_suffix(b"\0")?;
    (!s.contains(&0)).then_some(s)
}

/// Where a command line's store is: an explicit `--store DIR`, or `$VAR` plus a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRoot<'a> {
    /// The directory, or the environment's base for it.
    pub base: &'a [u8],
    /// Appended to `base` ("" for `--store` and `$CAPSULE_HOME`).
    pub suffix: &'a [u8],
}

/// A command line the front end may start from a plan: `capsule [--store DIR] run ...`,
/// without `CAPSULE_LOG` (a run asked to log prepares in full). `args` excludes argv[0];
/// `env(NAME)` looks up a variable. The store follows `Store::default_root`.
pub fn shape<'a>(args: &[&'a [u8]], env: impl Fn(&[u8]) -> Option<&'a [u8]>) -> Option<StoreRoot<'a>> {
    if env(b"CAPSULE_LOG").is_some() {
        return None;
    }
    let set = |k: &[u8]| env(k).filter(|v| !v.is_empty());
    let (store, verb) = match args {
        [flag, dir, verb, ..] if *flag == b"--store" => (Some(*dir), *verb),
        [flag, verb, ..] if flag.starts_with(b"--store=") => (flag.get(8..), *verb),
        [verb, ..] => (None, *verb),
        [] => return None,
    };
    if verb != b"run" {
        return None;
    }
    Some(match store {
        Some(dir) if !dir.is_empty() => StoreRoot { base: dir, suffix: b"" },
        Some(_) => return None,
        None => match (set(b"CAPSULE_HOME"), set(b"XDG_DATA_HOME"), set(b"HOME")) {
            (Some(h), _, _) => StoreRoot { base: h, suffix: b"" },
            (None, Some(x), _) => StoreRoot { base: x, suffix: b"/capsule" },
            (None, None, Some(h)) => StoreRoot { base: h, suffix: b"/.local/share/capsule" },
            (None, None, None) => StoreRoot { base: b"/", suffix: b".local/share/capsule" },
        },
    })
}

/// Feed the run's key to `f`, part by part: `cwd` NUL, each of `args` NUL, then `SHIM=` and
/// `$CAPSULE_SHIM` (when set) NUL.
pub fn key_parts(cwd: &[u8], args: &[&[u8]], shim: Option<&[u8]>, mut f: impl FnMut(&[u8])) {
    f(cwd);
    f(b"\0");
    for a in args {
        f(a);
        f(b"\0");
    }
    f(b"SHIM=");
    f(shim.unwrap_or_default());
    f(b"\0");
}

/// FNV-1a, 64 bits, continued from `h` (start from [`FNV_START`]): names a plan file.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a's offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The plan file's name for a key hash: 16 hex digits and `.plan`.
pub fn file_name(hash: u64) -> [u8; 21] {
    let mut out = *b"0000000000000000.plan";
    for (i, slot) in out.iter_mut().take(16).enumerate() {
        let nibble = (hash >> (60 - 4 * i)) & 0xf;
        *slot = b"0123456789abcdef"[nibble as usize];
    }
    out
}

/// A plan, as the full launcher writes it.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// The key ([`key_parts`]).
    pub key: Vec<u8>,
    /// Input files: path, whether a final symlink is not followed, and identity (`None`:
    /// absent).
    pub files: Vec<(Vec<u8>, bool, Option<Sig>)>,
    /// Host directories and whether each was one.
    pub dirs: Vec<(Vec<u8>, bool)>,
    /// The program.
    pub program: Vec<u8>,
    /// Its argv[0].
    pub argv0: Vec<u8>,
    /// Arguments before the command line's.
    pub args: Vec<Vec<u8>>,
    /// Where its arguments start in capsule's argv.
    pub args_from: u32,
    /// Environment to set (`KEY=VALUE`).
    pub env: Vec<Vec<u8>>,
    /// The view file.
    pub view: Vec<u8>,
    /// The sandbox tree.
    pub tree: Vec<u8>,
    /// Library directories (':'-joined), empty for none.
    pub library_path: Vec<u8>,
    /// Manifest digest (hex).
    pub digest: Vec<u8>,
    /// Sandbox name.
    pub sandbox: Vec<u8>,
    /// The full launcher.
    pub launcher: Vec<u8>,
    /// Landlock grants (rights, path); empty for an unconfined run.
    pub landlock: Vec<(u64, Vec<u8>)>,
}

impl Plan {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        fn rec(out: &mut Vec<u8>, t: u8, parts: &[&[u8]]) {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            out.push(t);
            out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
            for p in parts {
                out.extend_from_slice(p);
            }
        }
        let mut out = MAGIC.to_vec();
        rec(&mut out, tag::KEY, &[&self.key]);
        for (path, nofollow, sig) in &self.files {
            let flags = u8::from(*nofollow) << 1;
            match sig {
                Some(s) => rec(&mut out, tag::FILE, &[&[flags | 1], &s.bytes(), path, b"\0"]),
                None => rec(&mut out, tag::FILE, &[&[flags], path, b"\0"]),
            }
        }
        for (path, is_dir) in &self.dirs {
            rec(&mut out, tag::DIR, &[&[u8::from(*is_dir)], path, b"\0"]);
        }
        rec(&mut out, tag::PROGRAM, &[&self.program, b"\0"]);
        rec(&mut out, tag::ARGV0, &[&self.argv0, b"\0"]);
        for a in &self.args {
            rec(&mut out, tag::ARG, &[a, b"\0"]);
        }
        rec(&mut out, tag::ARGS_FROM, &[&self.args_from.to_le_bytes()]);
        for e in &self.env {
            rec(&mut out, tag::ENV, &[e, b"\0"]);
        }
        rec(&mut out, tag::VIEW, &[&self.view, b"\0"]);
        rec(&mut out, tag::TREE, &[&self.tree, b"\0"]);
        rec(&mut out, tag::LIBRARY_PATH, &[&self.library_path, b"\0"]);
        rec(&mut out, tag::DIGEST, &[&self.digest, b"\0"]);
        rec(&mut out, tag::SANDBOX, &[&self.sandbox, b"\0"]);
        rec(&mut out, tag::LAUNCHER, &[&self.launcher, b"\0"]);
        for (rights, path) in &self.landlock {
            rec(&mut out, tag::LANDLOCK, &[&rights.to_le_bytes(), path, b"\0"]);
        }
        out
    }

    /// Whether any string holds a NUL (such a plan cannot be written: the front end reads
    /// strings up to their NUL).
    pub fn has_nul(&self) -> bool {
        let strings = [&self.program, &self.argv0, &self.view, &self.tree, &self.library_path, &self.launcher];
        strings.iter().any(|s| s.contains(&0))
            || self.landlock.iter().any(|(r, p)| p.contains(&0) && r & crate::confine::EXPAND == 0)
            || self.landlock.len() > MAX_GRANTS
            || self.env.iter().any(|e| e.contains(&0))
            || self.args.iter().any(|a| a.contains(&0))
            || self.files.iter().any(|(p, _, _)| p.contains(&0))
            || self.dirs.iter().any(|(p, _)| p.contains(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_bad() {
        let p = Plan {
            key: b"/w\0run\0x\0SHIM=\0".to_vec(),
            files: vec![(b"/a".to_vec(), false, Some(Sig([1, 2, 3, 4, 5, 6, 7]))), (b"/b".to_vec(), true, None)],
            dirs: vec![(b"/opt".to_vec(), true)],
            program: b"/bin/true".to_vec(),
            args_from: 3,
            ..Plan::default()
        };
        let bytes = p.encode();
        let recs: Vec<_> = records(&bytes).unwrap().collect();
        assert_eq!(recs[0], (tag::KEY, &p.key[..]));
        assert_eq!(recs[1].0, tag::FILE);
        assert_eq!(Sig::from_bytes(&recs[1].1[1..57]), Some(Sig([1, 2, 3, 4, 5, 6, 7])));
        assert_eq!(c_str(&recs[1].1[57..]), Some(&b"/a"[..]));
        assert_eq!(recs[2].1, b"\x02/b\0");
        assert!(recs.iter().any(|r| r == &(tag::PROGRAM, &b"/bin/true\0"[..])));
        // The inputs as both checkers read them.
        let inputs: Vec<_> = recs.iter().map(|&(t, p)| input(t, p)).collect();
        let a = Input::File { path: b"/a\0", nofollow: false, want: Some(Sig([1, 2, 3, 4, 5, 6, 7])) };
        assert_eq!(inputs[1], Some(Some(a)));
        assert_eq!(inputs[2], Some(Some(Input::File { path: b"/b\0", nofollow: true, want: None })));
        assert_eq!(inputs[3], Some(Some(Input::Dir { path: b"/opt\0", was_dir: true })));
        assert_eq!(inputs[0], Some(None));
        for bad in [&b""[..], b"\x01/a\0", b"\x00/a", b"\x00/a\0b\0"] {
            assert_eq!(input(tag::FILE, bad), None, "{bad:?}");
        }
        assert_eq!(input(tag::DIR, b""), None);
        for cut in [9, 12, bytes.len() - 1] {
            let mut it = records(&bytes[..cut]).unwrap();
            while it.next().is_some() {}
            assert!(it.bad(), "cut at {cut}");
        }
        assert!(records(b"CAPPLAN0").is_none());
    }

    #[test]
    fn shape_finds_the_store_as_the_full_launcher_does() {
        let none = |_: &[u8]| None;
        let run: &[&[u8]] = &[b"--store", b"/s", b"run", b"x"];
        assert_eq!(shape(run, none), Some(StoreRoot { base: b"/s", suffix: b"" }));
        assert_eq!(shape(&[b"--store=/t", b"run"], none), Some(StoreRoot { base: b"/t", suffix: b"" }));
        assert_eq!(shape(&[b"list"], none), None);
        assert_eq!(shape(&[b"-q", b"run", b"x"], none), None);
        let home = |k: &[u8]| (k == b"HOME").then_some(&b"/h"[..]);
        assert_eq!(shape(&[b"run", b"x"], home), Some(StoreRoot { base: b"/h", suffix: b"/.local/share/capsule" }));
        let logged = |k: &[u8]| (k == b"CAPSULE_LOG").then_some(&b"debug"[..]);
        assert_eq!(shape(run, logged), None);
    }

    #[test]
    fn file_names_are_the_hash_in_hex() {
        assert_eq!(&file_name(0x0123_4567_89ab_cdef), b"0123456789abcdef.plan");
        let mut h = FNV_START;
        key_parts(b"/w", &[b"run"], None, |p| h = fnv1a(h, p));
        assert_eq!(h, fnv1a(FNV_START, b"/w\0run\0SHIM=\0"));
    }
}
