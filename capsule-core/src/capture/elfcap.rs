//! `capture elf`: pack binaries with their loader and library closure ([`super::elf`]), each
//! reached the way the loader reaches it, so every symlink on the way (`/lib64` →
//! `usr/lib64`, `libjq.so.1` → `libjq.so.1.0.4`) is in the capsule too.

use std::path::{Path, PathBuf};

use super::builder::Builder;
use super::snapshot::set_entry;
use super::{CaptureError, Progress, elf};
use crate::digest::Digest;
use crate::manifest::CaptureStep;
use crate::store::{Store, StoreLock};

/// Capture `binaries` (absolute host paths) and everything the loader needs for them into
/// capsule `name:tag`. The first binary becomes the entry point. A library that cannot be
/// found is an error naming it: the capsule would not run.
pub fn elf_capture(
    store: &Store,
    name: &str,
    tag: &str,
    binaries: &[PathBuf],
    progress: &dyn Progress,
) -> Result<Digest, CaptureError> {
    let absolute: Vec<PathBuf> = binaries
        .iter()
        .map(|b| std::path::absolute(b).map_err(CaptureError::io("failed to resolve", b)))
        .collect::<Result<_, _>>()?;
    let closure = elf::closure(&absolute)?;
    if let Some((needed_by, soname)) = closure.missing.first() {
        return Err(CaptureError::MissingLibrary { needed_by: needed_by.clone(), soname: soname.clone() });
    }
    let _lock = StoreLock::shared(store)?;
    let detail = absolute.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ");
    let origin = Builder::origin(CaptureStep::ElfClosure, detail);
    let mut b = Builder::new(store, Path::new("/"), name, tag, origin, progress);
    progress.start("packing", Some(closure.files.len() as u64));
    for f in &closure.files {
        b.add_resolved(f)?;
    }
    progress.finish();
    for bin in absolute.iter().rev() {
        set_entry(b.manifest_mut(), &bin.to_string_lossy())?;
    }
    let inventory = super::dpkg::host_inventory(b.manifest_mut())?;
    b.manifest_mut().inventory = Some(inventory);
    b.commit()
}
