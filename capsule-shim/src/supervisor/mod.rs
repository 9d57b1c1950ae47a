//! Tier 2: the seccomp user-notification supervisor (issue 4), for what LD_PRELOAD cannot
//! see. So far only [`filter`], the BPF program the launcher will install; the notification
//! loop, the handlers (which call the same [`crate::resolve`]) and the launcher integration
//! are next (see docs/architecture.md, "Tier 2").

pub mod filter;
