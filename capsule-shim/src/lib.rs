//! capsule-shim: the interposition layer that runs capsules.
//!
//! Built as `libcapsule_shim.so` (cdylib, loaded with LD_PRELOAD: tier 1). It links only
//! capsule-core's dependency-free view format (`default-features = false`), so sled, zstd and
//! goblin never load into an application.
//!
//! - [`resolve`]: the single path-resolution core: (view, virtual path) → where to go.
//! - `preload/`: the exported hooks, one module per syscall family, and their runtime
//!   (constructor, reentrancy guard, raw syscalls, the materialiser client).
//!
//! - `supervisor/`: tier 2, the seccomp user-notification supervisor (issue 4; the filter so far).
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("capsule-shim's hooks rely on the x86-64 SysV calling convention (see preload/hooks/open.rs)");

#[cfg(debug_assertions)]
mod alloc_check;
pub mod path;
pub mod preload;
pub mod resolve;
pub mod supervisor;
