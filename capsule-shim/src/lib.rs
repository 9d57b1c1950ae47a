//! capsule-shim: the interposition layer that runs capsules.
//!
//! Built as `libcapsule_shim.so` (cdylib, loaded with LD_PRELOAD: tier 1). It links only
//! capsule-core's dependency-free view format (`default-features = false`), so sled, zstd and
//! goblin never load into an application.
//!
//! - `preload/`: the exported hooks, one module per syscall family, and their runtime
//!   (constructor, reentrancy guard, raw syscalls, the materialiser client).
//!
//! Path resolution (`capsule_core::resolve`) and tier 2 (`capsule_core::supervisor`, the
//! seccomp user-notification supervisor) live in capsule-core: both tiers call the same
//! resolver, and the supervisor runs in `capsule run`, which must not link this crate's
//! exported libc symbols into itself.
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("capsule-shim's hooks rely on the x86-64 SysV calling convention (see preload/hooks/open.rs)");

#[cfg(debug_assertions)]
mod alloc_check;
pub mod preload;
