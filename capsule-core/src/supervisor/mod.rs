//! Tier 2: the seccomp user-notification supervisor.
pub mod filter;
