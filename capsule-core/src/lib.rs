//! capsule-core: the store, the capsule manifest, capture and the view format.
//!
//! Principal types: [`store::Store`] (content-addressed blobs plus the sled index that caches
//! what they say), [`manifest::Manifest`] (one capsule: its file tree, entry points, env,
//! isolation rules, registry, identity and links), [`capture`] (snapshot diff and ELF closure)
//! [`archive`] (the self-contained export file), [`sign`] (its ed25519 keys) and [`oci`] (push
//! and pull through OCI registries, and lazy fetch).
//!
//! Invariants: blobs are the truth and are immutable once renamed into place; every decode of
//! bytes that came from disk or the network goes through [`codec`] with a size limit; paths in a
//! manifest are validated ([`manifest::RelPath`]) so that no entry can name a place outside the
//! capsule root.
//!
//! The `store` feature (on by default) carries every heavy dependency. With it off only the
//! dependency-free parts remain, which is what the shim links.
#![deny(missing_docs)]
#![deny(unsafe_code)]
// allowed per module, at the FFI boundary only: resolve::path (the uninitialised
// path buffer) and the supervisor's syscalls
// Errors carry the failing path and digest by value; they are built on cold paths only, so
// their size costs nothing measurable and boxing them would only obscure the types.
#![allow(clippy::result_large_err)]

#[cfg(feature = "store")]
pub mod archive;
pub mod bindaddr;
pub mod boundary;
#[cfg(feature = "store")]
pub mod capture;
#[cfg(feature = "store")]
pub mod codec;
pub mod confine;
#[cfg(feature = "store")]
pub mod digest;
#[cfg(feature = "store")]
mod error;
pub mod exec;
pub mod ifreq;
pub mod launch;
pub mod listener;
#[cfg(feature = "store")]
pub mod manifest;
#[cfg(feature = "store")]
pub mod oci;
pub mod plan;
#[cfg(feature = "store")]
pub mod probe;
#[cfg(feature = "store")]
pub mod registry;
pub mod resolve;
pub mod rtnl;
#[cfg(feature = "store")]
pub mod run;
#[cfg(feature = "store")]
pub mod sign;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "store")]
pub mod supervisor;
pub mod view;

#[cfg(feature = "store")]
pub use error::Error;
