//! capsule-shim: the interposition layer that runs capsules.
//!
//! Built as `libcapsule_shim.so` (cdylib, loaded with LD_PRELOAD: tier 1) and as an rlib (the
//! seccomp user-notification supervisor, tier 2, runs in the launcher). It depends only on
//! capsule-core's dependency-free view format (`default-features = false`), so sled, zstd and
//! goblin never load into an application.
//!
//! Status: the hooks (`preload/`), the path resolver (`resolve`) and the supervisor
//! (`supervisor/`) arrive with issues 3 and 4; until then this library exports nothing and
//! `capsule` does not run capsules.
#![deny(unsafe_op_in_unsafe_fn)]
