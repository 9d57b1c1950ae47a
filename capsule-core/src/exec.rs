//! What execve(2) does with a file, worked out before the kernel sees it: the `#!` line
//! (fs/binfmt_script.c) and the ELF program interpreter (`PT_INTERP`, fs/binfmt_elf.c).
//!
//! The kernel looks an interpreter up on the host; capsule looks it up in the capsule's view
//! first, so a script whose interpreter only the capsule has runs, and a capsule program that
//! carries its own loader runs with it. Both the launcher's first exec (`run::exec`) and the
//! shim's exec hooks read a file's first bytes into a fixed buffer and ask this module what
//! they are. Pure, dependency-free and allocation-free, so the shim links it.
//!
//! Invariant: [`shebang`] parses exactly as the kernel does (6.x): a line that the kernel
//! would refuse with ENOEXEC is `None` here, so the caller falls back to the kernel's exec
//! and gets the kernel's error.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use core::ops::Range;

/// Bytes the kernel reads to decide (`BINPRM_BUF_SIZE`); the `#!` line is parsed within them.
pub const HEAD: usize = 256;

/// Interpreters followed (a script whose interpreter is a script, …). The kernel stops at 5
/// levels (ELOOP); a chain longer than this is left to the kernel.
pub const MAX_DEPTH: usize = 4;

/// `PT_INTERP` paths longer than this are left to the kernel (real ones are ~30 bytes).
pub const INTERP_CAP: usize = 256;

/// A `#!` line: where the interpreter's name and its optional argument lie in the head. The
/// byte at each range's end is a terminator the caller may overwrite with NUL (it is inside
/// the head, as in the kernel, which writes its NULs into its own buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter's path, as written.
    pub interp: Range<usize>,
    /// The optional argument: everything after the name up to the end of the line, trimmed
    /// of spaces and tabs at both ends, as one argument.
    pub arg: Option<Range<usize>>,
}

fn spacetab(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Parse the `#!` line of a file whose first `head.len()` bytes (at most [`HEAD`] are looked
/// at) are `head`; `None` when it is not a script the kernel would run. The caller's buffer
/// must have room for one byte past the returned ranges (a `[u8; HEAD]` does: every range
/// ends before `HEAD - 1`).
pub fn shebang(head: &[u8]) -> Option<Shebang> {
    // The kernel's buffer is BINPRM_BUF_SIZE bytes, zero beyond what the file had; its last
    // byte is kept for a NUL.
    let n = head.len().min(HEAD);
    let at = |i: usize| if i < n { head.get(i).copied().unwrap_or(0) } else { 0 };
    if at(0) != b'#' || at(1) != b'!' {
        return None;
    }
    let buf_end = HEAD - 1;
    let mut end = match (0..HEAD).find(|&i| at(i) == b'\n') {
        Some(i) => i,
        None => {
            let first = (2..buf_end).find(|&i| !spacetab(at(i)))?;
            // No later space, tab or NUL: the interpreter's path may be cut short.
            (first..buf_end).find(|&i| matches!(at(i), b' ' | b'\t' | 0))?;
            buf_end
        }
    };
    while end > 2 && spacetab(at(end - 1)) {
        end -= 1;
    }
    let name = (2..end).find(|&i| !spacetab(at(i)))?;
    let sep = (name..end).find(|&i| matches!(at(i), b' ' | b'\t' | 0));
    let name_end = sep.unwrap_or(end);
    let arg = match sep {
        Some(s) if at(s) != 0 => (s..end).find(|&i| !spacetab(at(i))).map(|a| {
            // The argument is a C string: an embedded NUL ends it.
            let stop = (a..end).find(|&i| at(i) == 0).unwrap_or(end);
            a..stop
        }),
        _ => None,
    };
    // Ranges must lie within what the caller read (a NUL past it is implied, not stored).
    if name_end > n || arg.as_ref().is_some_and(|r| r.end > n) {
        return None;
    }
    Some(Shebang { interp: name..name_end, arg })
}

/// What the ELF header says about program headers, for a 64-bit little-endian executable
/// or shared object (what the shim is loaded into); `None` for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elf {
    /// `e_phoff`.
    pub phoff: u64,
    /// `e_phentsize`.
    pub phentsize: u16,
    /// `e_phnum`.
    pub phnum: u16,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// The ELF header of `head` (the file's first bytes, at least 64).
pub fn elf(head: &[u8]) -> Option<Elf> {
    if head.get(..4)? != b"\x7fELF" || head.get(4) != Some(&2) || head.get(5) != Some(&1) {
        return None;
    }
    // ET_EXEC or ET_DYN.
    if !matches!(u16_at(head, 16)?, 2 | 3) {
        return None;
    }
    let e = Elf { phoff: u64_at(head, 32)?, phentsize: u16_at(head, 54)?, phnum: u16_at(head, 56)? };
    (e.phentsize >= 56).then_some(e)
}

/// `PT_INTERP`.
const PT_INTERP: u32 = 3;

/// The interpreter segment (file offset and size, its NUL included) among the program
/// headers, read one at a time through `read_at(offset, buf)` (bytes read). `None`: no
/// interpreter (a static program), or the headers could not be read.
pub fn interp_segment(e: &Elf, mut read_at: impl FnMut(u64, &mut [u8]) -> usize) -> Option<(u64, u64)> {
    let mut ph = [0u8; 56];
    for i in 0..u64::from(e.phnum) {
        let off = e.phoff.checked_add(i.checked_mul(u64::from(e.phentsize))?)?;
        if read_at(off, &mut ph) != ph.len() {
            return None;
        }
        if u32_at(&ph, 0)? == PT_INTERP {
            return Some((u64_at(&ph, 8)?, u64_at(&ph, 32)?));
        }
    }
    None
}

/// The interpreter path in `seg` (the segment's bytes): up to its NUL, non-empty and
/// absolute, else `None`.
pub fn interp_path(seg: &[u8]) -> Option<&[u8]> {
    let end = seg.iter().position(|&c| c == 0).unwrap_or(seg.len());
    seg.get(..end).filter(|p| p.first() == Some(&b'/'))
}

/// Whether the loader at hand understands `--argv0` (glibc's ld.so since 2.33), told from
/// its bytes: the option's name is in its usage text and its parser. The launcher asks once
/// per run, of the capsule's loader.
pub fn loader_has_argv0(bytes: &[u8]) -> bool {
    bytes.windows(b"--argv0".len()).any(|w| w == b"--argv0")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse(line: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let s = shebang(line)?;
        Some((line[s.interp].to_vec(), s.arg.map(|r| line[r].to_vec())))
    }

    #[test]
    fn shebang_lines_as_the_kernel_reads_them() {
        assert_eq!(parse(b"#!/bin/sh\necho"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(parse(b"#! /opt/i -x \n"), Some((b"/opt/i".to_vec(), Some(b"-x".to_vec()))));
        assert_eq!(parse(b"#!/usr/bin/env php\n"), Some((b"/usr/bin/env".to_vec(), Some(b"php".to_vec()))));
        // One argument, inner spaces kept.
        assert_eq!(parse(b"#!/i a  b\t\n"), Some((b"/i".to_vec(), Some(b"a  b".to_vec()))));
        // No newline: a short file ends the name (the kernel's buffer is zero beyond it).
        assert_eq!(parse(b"#!/bin/sh"), Some((b"/bin/sh".to_vec(), None)));
        // ... and the kernel's quirk with it: a tab there and no newline is an empty argument.
        assert_eq!(parse(b"#!\t/bin/sh\t"), Some((b"/bin/sh".to_vec(), Some(Vec::new()))));
        for bad in [&b"#!\n"[..], b"#!   \n", b"# !/bin/sh\n", b"\x7fELF", b"", b"#"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        // A name longer than the buffer with no terminator: possibly cut short, refused.
        let mut long = b"#!/".to_vec();
        long.resize(300, b'a');
        assert_eq!(parse(&long), None);
        // A long argument is cut at the buffer's end.
        let mut long_arg = b"#!/i ".to_vec();
        long_arg.resize(300, b'a');
        let (name, arg) = parse(&long_arg).unwrap();
        assert_eq!((name.as_slice(), arg.map(|a| a.len())), (&b"/i"[..], Some(HEAD - 1 - 5)));
        // Every range leaves room for the caller's NUL inside a HEAD-byte buffer.
        let s = shebang(&long_arg).unwrap();
        assert!(s.arg.unwrap().end < HEAD);
    }

    #[test]
    fn elf_headers_and_interpreter() {
        let mut f = vec![0u8; 64 + 2 * 56 + 32];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[16] = 3;
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54] = 56;
        f[56] = 2;
        // phdr 0: PT_LOAD; phdr 1: PT_INTERP at 176, 12 bytes.
        f[64] = 1;
        f[120] = 3;
        f[128..136].copy_from_slice(&176u64.to_le_bytes());
        f[152..160].copy_from_slice(&12u64.to_le_bytes());
        f[176..188].copy_from_slice(b"/lib/ld.so\0\0");
        let e = elf(&f).unwrap();
        fn reader(f: &[u8]) -> impl FnMut(u64, &mut [u8]) -> usize + '_ {
            move |off, buf| {
                let off = usize::try_from(off).unwrap();
                let n = buf.len().min(f.len().saturating_sub(off));
                buf[..n].copy_from_slice(&f[off..off + n]);
                n
            }
        }
        let (off, size) = interp_segment(&e, reader(&f)).unwrap();
        assert_eq!((off, size), (176, 12));
        assert_eq!(interp_path(&f[176..188]), Some(&b"/lib/ld.so"[..]));
        assert_eq!(interp_path(b"lib\0"), None);
        // A static program: no PT_INTERP.
        f[120] = 1;
        assert_eq!(interp_segment(&elf(&f).unwrap(), reader(&f)), None);
        // 32-bit, big-endian, relocatable: not ours.
        for (i, v) in [(4, 1u8), (5, 2), (16, 1)] {
            let mut g = f.clone();
            g[i] = v;
            assert_eq!(elf(&g), None);
        }
        assert!(loader_has_argv0(b"xx --argv0 STRING yy"));
        assert!(!loader_has_argv0(b"--argv"));
    }
}
