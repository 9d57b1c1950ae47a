//! [`ElfInfo`]: what one ELF file says about loading it — class, byte order and machine,
//! PT_INTERP, and the DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH and DF_1_NODEFLIB entries of
//! its dynamic section — and [`Abi`], the loader constants that go with its class.
//!
//! Invariant: only the parts ld.so reads are parsed, every offset from the file goes through a
//! bounds check, and a file that does not hold together is an [`ElfError`], never a panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::container::Ctx;
use goblin::elf::Elf;
use goblin::elf::dynamic::{DF_1_NODEFLIB, DT_FLAGS_1, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, Dynamic};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, EM_386, EM_X86_64};
use goblin::elf::program_header::{PT_INTERP, ProgramHeader};

use super::ElfError;

/// What one ELF file says about loading it, parsed once per path.
#[derive(Debug)]
pub(super) struct ElfInfo {
    pub(super) class: u8,
    pub(super) data: u8,
    pub(super) machine: u16,
    pub(super) interp: Option<PathBuf>,
    pub(super) needed: Vec<String>,
    pub(super) soname: Option<String>,
    /// DT_RPATH, already dropped when DT_RUNPATH is present (glibc `get-dynamic-info.h`).
    pub(super) rpath: Option<String>,
    pub(super) runpath: Option<String>,
    /// DF_1_NODEFLIB: this object's dependencies skip the cache's system dirs and the defaults.
    pub(super) nodeflib: bool,
    /// The path with every symlink resolved, inside the sysroot.
    pub(super) canonical: PathBuf,
    /// (st_dev, st_ino): ld.so recognises an already-loaded file by this, whatever its name.
    pub(super) id: (u64, u64),
}

/// Per-class constants of the loader that would run an object.
pub(super) struct Abi {
    pub(super) lib: &'static str,
    pub(super) platform: &'static str,
    pub(super) dirs: &'static [&'static str],
}

/// `$LIB`, `$PLATFORM` and the system search path. The x86-64 dirs are what bookworm's
/// `ld.so --help` prints; `$PLATFORM` is fixed rather than glibc's CPU-dependent value
/// (e.g. "haswell") so that a capsule does not depend on the capturing CPU.
pub(super) fn abi(info: &ElfInfo) -> Abi {
    match (info.class == ELFCLASS64, info.machine) {
        (true, EM_X86_64) => Abi {
            lib: "lib/x86_64-linux-gnu",
            platform: "x86_64",
            dirs: &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"],
        },
        (false, EM_386) => Abi {
            lib: "lib/i386-linux-gnu",
            platform: "i686",
            dirs: &["/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu", "/lib", "/usr/lib"],
        },
        _ => Abi { lib: "lib", platform: "", dirs: &["/lib", "/usr/lib"] },
    }
}

/// Parses what loading needs: header, PT_INTERP and the dynamic section. Deliberately not
/// `Elf::parse`, which also insists on sane section headers, symbols and relocations that
/// ld.so never looks at.
pub(super) fn parse_elf(path: &Path, bytes: &[u8], canonical: PathBuf, id: (u64, u64)) -> Result<ElfInfo, ElfError> {
    if !bytes.starts_with(b"\x7fELF") {
        return Err(ElfError::NotElf { path: path.to_path_buf() });
    }
    let fail = |reason: String| ElfError::Parse { path: path.to_path_buf(), reason };
    let header = Elf::parse_header(bytes).map_err(|e| fail(e.to_string()))?;
    let container = header.container().map_err(|e| fail(e.to_string()))?;
    let endian = header.endianness().map_err(|e| fail(e.to_string()))?;
    let ctx = Ctx::new(container, endian);
    let phoff = usize::try_from(header.e_phoff).map_err(|e| fail(e.to_string()))?;
    let phdrs =
        ProgramHeader::parse(bytes, phoff, usize::from(header.e_phnum), ctx).map_err(|e| fail(e.to_string()))?;
    let interp = match phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        Some(ph) => {
            let raw = range(bytes, ph.p_offset, ph.p_filesz).ok_or_else(|| fail("PT_INTERP out of range".into()))?;
            let raw = raw.split(|&b| b == 0).next().unwrap_or(raw);
            Some(PathBuf::from(OsStr::from_bytes(raw)))
        }
        None => None,
    };
    let mut info = ElfInfo {
        class: header.e_ident[EI_CLASS],
        data: header.e_ident[EI_DATA],
        machine: header.e_machine,
        interp,
        needed: Vec::new(),
        soname: None,
        rpath: None,
        runpath: None,
        nodeflib: false,
        canonical,
        id,
    };
    if let Some(dynamic) = Dynamic::parse(bytes, &phdrs, ctx).map_err(|e| fail(e.to_string()))? {
        read_dynamic(&mut info, bytes, &dynamic).map_err(fail)?;
    }
    Ok(info)
}

/// Fills the DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH and DF_1_NODEFLIB parts of `info`.
fn read_dynamic(info: &mut ElfInfo, bytes: &[u8], dynamic: &Dynamic) -> Result<(), String> {
    let strtab = bytes
        .get(dynamic.info.strtab..)
        .and_then(|b| b.get(..dynamic.info.strsz))
        .ok_or("dynamic string table out of range")?;
    for entry in &dynamic.dyns {
        let string = || dyn_str(strtab, entry.d_val);
        match entry.d_tag {
            DT_NEEDED => info.needed.push(string()?),
            DT_SONAME => info.soname = Some(string()?),
            // glibc keeps the last entry of each tag (`info[d_tag] = dyn`).
            DT_RPATH => info.rpath = Some(string()?),
            DT_RUNPATH => info.runpath = Some(string()?),
            DT_FLAGS_1 => info.nodeflib = entry.d_val & DF_1_NODEFLIB != 0,
            _ => {}
        }
    }
    // get-dynamic-info.h: "If both RUNPATH and RPATH are given, the latter is ignored."
    if info.runpath.is_some() {
        info.rpath = None;
    }
    Ok(())
}

/// The NUL-terminated UTF-8 string at `offset` of the dynamic string table.
fn dyn_str(strtab: &[u8], offset: u64) -> Result<String, String> {
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|o| strtab.get(o..))
        .ok_or_else(|| format!("dynamic string offset {offset} out of range"))?;
    let len = rest.iter().position(|&b| b == 0).ok_or("unterminated dynamic string")?;
    let raw = rest.get(..len).unwrap_or_default();
    String::from_utf8(raw.to_vec()).map_err(|_| format!("dynamic string at {offset} is not UTF-8"))
}

/// `len` bytes at file offset `offset`, if they are all inside `bytes`.
fn range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..)?.get(..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<ElfInfo, ElfError> {
        parse_elf(Path::new("/x"), bytes, PathBuf::from("/x"), (0, 0))
    }

    #[test]
    fn reads_what_the_loader_reads() {
        let Ok(bytes) = std::fs::read("/bin/sh") else {
            println!("SKIP no /bin/sh");
            return;
        };
        let info = parse(&bytes).unwrap();
        assert_eq!(info.interp.as_deref(), Some(Path::new("/lib64/ld-linux-x86-64.so.2")));
        assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{info:?}");
        assert_eq!((info.class, info.machine), (ELFCLASS64, EM_X86_64));
    }

    #[test]
    fn truncated_and_corrupted_elf_never_panics() {
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Headers and the dynamic section live in the first pages; corrupt there densely.
        let head = bytes.len().min(64 * 1024);
        for len in (0..head).step_by(7).chain((head..bytes.len()).step_by(bytes.len() / 97 + 1)) {
            let _ = parse(bytes.get(..len).unwrap());
        }
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..3000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1442695040888963407);
            let mut copy = bytes.get(..head).unwrap().to_vec();
            let at = usize::try_from(state >> 33).unwrap() % copy.len().min(if state & 1 == 0 { 128 } else { head });
            copy[at] = u8::try_from(state >> 56).unwrap();
            let _ = parse(&copy);
        }
    }

    #[test]
    fn not_elf_and_garbage() {
        assert!(matches!(parse(b"#!/bin/sh\n"), Err(ElfError::NotElf { .. })));
        assert!(matches!(parse(b""), Err(ElfError::NotElf { .. })));
        assert!(matches!(parse(b"\x7fELF\x09\x01\x01"), Err(ElfError::Parse { .. })));
    }
}
