//! End-to-end tests: the real `capsule` binary on real programs and real Debian packages.
//!
//! One test binary (fewer links on 2 cores). Tests that need something the machine may lack
//! (root, apt, gcc, a package) print `SKIP <why>` and return, unless `CAPSULE_REQUIRE_ALL=1`
//! (set by .ci/run), which turns every such skip into a failure. Tests that install or purge
//! host packages hold [`support::dpkg_lock`] so they never run dpkg at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod apps;
mod archive;
mod capture;
mod check;
mod compat;
mod config;
mod confine;
mod demo;
mod df;
mod entrypoints;
mod escape;
mod exec;
mod gc;
mod hostile;
mod identity;
mod install;
mod lifecycle;
mod netns;
mod oci;
mod oci_tls;
mod ownership;
mod plan;
mod portable;
mod programs;
mod redis;
mod reinstall;
mod root;
mod run;
mod sbom;
mod shared;
mod shim;
mod store;
mod supervisor;
mod transfer;
mod user;
mod writecopy;
