//! Build-script helper shared by the shim and the CLI: link gcc's static unwinder instead of
//! `libgcc_s.so`.
//!
//! Rust's std asks the linker for `-lgcc_s` (its unwinder). As a shared library that costs
//! every process one more library load, and libgcc_s's constructor runs a burst of `cpuid`s,
//! which trap to the hypervisor on a VM: about 0.15 ms per exec on the benchmark machine, paid
//! by `capsule run` and by every program started inside a capsule (the shim is preloaded into
//! each). gcc ships the same unwinder as `libgcc_eh.a` for `gcc -static-libgcc`; OUT_DIR gets
//! a copy named `libgcc_s.a`, and a search path ahead of the system's, so `-lgcc_s` resolves to
//! it. A cdylib's version script keeps its symbols local. Without `libgcc_eh.a` the shared
//! libgcc_s is used as before, with a build warning.

use std::path::{Path, PathBuf};

/// Put the static unwinder first on the linker's search path for `-lgcc_s`.
pub fn link() {
    let Ok(out) = std::env::var("OUT_DIR") else { return };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let found = std::process::Command::new(cc).arg("-print-file-name=libgcc_eh.a").output();
    let eh = found.map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())).unwrap_or_default();
    if !eh.is_absolute() || !eh.is_file() {
        println!("cargo:warning=libgcc_eh.a not found: linking the shared libgcc_s");
        return;
    }
    let dir = Path::new(&out).join("static-unwinder");
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::copy(&eh, dir.join("libgcc_s.a")).is_ok() {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
}
