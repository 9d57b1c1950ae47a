//! `--seccomp auto`: which runs need tier 2. The preload shim cannot load into a static
//! binary, and Go programs make raw syscalls even when dynamically linked; a capsule that
//! carries its own account, host or resolver files, or its own libc, needs glibc's internal
//! opens (NSS) redirected, which only the supervisor sees.

use std::io::Read;
use std::path::Path;

use goblin::container::Ctx;
use goblin::elf::Elf;
use goblin::elf::program_header::{PT_INTERP, PT_NOTE, ProgramHeader};

use crate::manifest::Manifest;

/// Files whose reads happen inside glibc (NSS, the resolver), out of the shim's sight.
const GLIBC_INTERNAL: &[&str] = &[
    "etc/passwd",
    "etc/group",
    "etc/shadow",
    "etc/hosts",
    "etc/nsswitch.conf",
    "etc/resolv.conf",
    "etc/services",
    "etc/protocols",
];

/// How a program file is linked, as far as interposition cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// Dynamically linked C/C++ (or a script, or not ELF): the shim loads.
    Dynamic,
    /// No PT_INTERP: LD_PRELOAD is never read.
    Static,
    /// A Go binary: raw syscalls bypass libc.
    Go,
}

/// Read `program`'s ELF headers (the first 64 KiB hold them in practice).
pub fn linkage(program: &Path) -> std::io::Result<Linkage> {
    examine(program).map(|(l, _)| l)
}

/// [`linkage`], and whether the shim will load into `program` and can install the filter
/// itself (tier 2 armed from the shim's constructor, after the loader has mapped the
/// libraries): a 64-bit x86-64 ELF with an interpreter, not Go, not setuid or setgid (the
/// loader ignores LD_PRELOAD in secure mode). Scripts and everything else are armed before
/// exec. One read of the file.
pub fn examine(program: &Path) -> std::io::Result<(Linkage, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let f = std::fs::File::open(program)?;
    let setid = f.metadata()?.permissions().mode() & 0o6000 != 0;
    let mut head = Vec::with_capacity(65536);
    f.take(65536).read_to_end(&mut head)?;
    let linkage = linkage_of(&head);
    let x86_64 = Elf::parse_header(&head)
        .is_ok_and(|h| h.e_machine == goblin::elf::header::EM_X86_64 && h.container().is_ok_and(|c| c.is_big()));
    Ok((linkage, linkage == Linkage::Dynamic && head.starts_with(b"\x7fELF") && x86_64 && !setid))
}

/// [`linkage`] of the file's first bytes.
pub fn linkage_of(head: &[u8]) -> Linkage {
    if !head.starts_with(b"\x7fELF") {
        return Linkage::Dynamic;
    }
    let Ok(h) = Elf::parse_header(head) else { return Linkage::Dynamic };
    let Ok(container) = h.container() else { return Linkage::Dynamic };
    let Ok(endian) = h.endianness() else { return Linkage::Dynamic };
    let ctx = Ctx::new(container, endian);
    let Ok(off) = usize::try_from(h.e_phoff) else { return Linkage::Dynamic };
    let Ok(phs) = ProgramHeader::parse(head, off, usize::from(h.e_phnum), ctx) else { return Linkage::Dynamic };
    let go = phs.iter().filter(|p| p.p_type == PT_NOTE).any(|p| {
        let (Ok(at), Ok(n)) = (usize::try_from(p.p_offset), usize::try_from(p.p_filesz)) else { return false };
        head.get(at..at.saturating_add(n)).is_some_and(has_go_note)
    });
    if go {
        Linkage::Go
    } else if phs.iter().any(|p| p.p_type == PT_INTERP) {
        Linkage::Dynamic
    } else {
        Linkage::Static
    }
}

/// The ELF interpreter (PT_INTERP) named in the file's first bytes, if any.
pub fn interpreter_of(head: &[u8]) -> Option<Vec<u8>> {
    if !head.starts_with(b"\x7fELF") {
        return None;
    }
    let h = Elf::parse_header(head).ok()?;
    let ctx = Ctx::new(h.container().ok()?, h.endianness().ok()?);
    let phs = ProgramHeader::parse(head, usize::try_from(h.e_phoff).ok()?, usize::from(h.e_phnum), ctx).ok()?;
    let p = phs.iter().find(|p| p.p_type == PT_INTERP)?;
    let at = usize::try_from(p.p_offset).ok()?;
    let n = usize::try_from(p.p_filesz).ok()?;
    let raw = head.get(at..at.checked_add(n)?)?;
    Some(raw.split(|&c| c == 0).next().unwrap_or_default().to_vec())
}

/// A note named "Go" (the Go build ID note, type 4).
fn has_go_note(notes: &[u8]) -> bool {
    notes
        .windows(16)
        .any(|w| w[0..4] == 3u32.to_le_bytes() && w[8..12] == 4u32.to_le_bytes() && &w[12..16] == b"Go\0\0")
}

/// Why a run of `program` from capsule `m` needs the supervisor, if it does.
pub fn reason(linkage: Linkage, m: &Manifest) -> Option<String> {
    match linkage {
        Linkage::Static => return Some("the program is statically linked".to_owned()),
        Linkage::Go => return Some("the program is a Go binary".to_owned()),
        Linkage::Dynamic => {}
    }
    for e in &m.entries {
        let p = e.path.as_bytes();
        if let Some(f) = GLIBC_INTERNAL.iter().find(|f| f.as_bytes() == p) {
            return Some(format!("the capsule carries /{f}"));
        }
        let name = p.rsplit(|&c| c == b'/').next().unwrap_or_default();
        if name == b"libc.so.6" {
            return Some("the capsule carries its own libc".to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_programs() {
        assert_eq!(linkage(Path::new("/bin/sh")).unwrap(), Linkage::Dynamic);
        assert_eq!(linkage_of(b"#!/bin/sh\necho hi\n"), Linkage::Dynamic);
        assert_eq!(examine(Path::new("/bin/sh")).unwrap(), (Linkage::Dynamic, true));
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(examine(&script).unwrap(), (Linkage::Dynamic, false), "a script is armed before exec");
        let setuid = dir.path().join("sh-setuid");
        std::fs::copy("/bin/sh", &setuid).unwrap();
        std::fs::set_permissions(&setuid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        assert_eq!(examine(&setuid).unwrap(), (Linkage::Dynamic, false), "the loader ignores LD_PRELOAD");
        assert!(has_go_note(&[3, 0, 0, 0, 20, 0, 0, 0, 4, 0, 0, 0, b'G', b'o', 0, 0]));
    }
}
