//! One module per verb: argument glue around capsule-core, and output.

mod capture;
mod check;
mod config;
mod demo;
mod df;
mod doctor;
mod inspect;
mod keygen;
mod list;
mod manage;
mod oci;
mod run;
mod sandbox;
mod sbom;
mod transfer;
mod verify;

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::store::{CapsuleRef, Store};

use crate::cli::args::{Capture, Verb};
use crate::cli::{Cli, Output};

/// Run the verb `cli` names.
pub fn dispatch(cli: Cli, out: Output) -> Result<ExitCode> {
    // keygen needs no store: do not create one as a side effect.
    if let Verb::Keygen(k) = &cli.verb {
        return keygen::run(out, k);
    }
    let root = cli.globals.store.clone().unwrap_or_else(Store::default_root);
    // Absolute: `run` hands paths under the store (the view, the sandbox tree) to programs
    // that may change directory, and the shim compares the tree path with absolute ones.
    let root = std::path::absolute(&root).unwrap_or(root);
    let store = Store::open(&root).with_context(|| format!("cannot open the store at {}", root.display()))?;
    match cli.verb {
        Verb::Capture(Capture::Snapshot(s)) => capture::snapshot(&store, out, s),
        Verb::Capture(Capture::Elf(e)) => capture::elf(&store, out, e),
        Verb::Capture(Capture::Install(i)) => capture::install(&store, out, i),
        Verb::Capture(Capture::Trace(t)) => capture::trace(&store, out, t),
        Verb::Capture(Capture::Shared(c)) => capture::shared(&store, out, c),
        Verb::List => list::run(&store, out),
        Verb::Inspect(i) => inspect::run(&store, out, &i.name),
        Verb::Sbom(s) => sbom::run(&store, out, &s),
        Verb::Check(c) => check::run(&store, out, &c),
        Verb::Rm(r) => manage::rm(&store, out, &r.name, r.force),
        Verb::Gc(g) => manage::gc(&store, out, g.untagged),
        Verb::Verify(v) => verify::run(&store, out, v),
        Verb::Export(e) => transfer::export(&store, out, e),
        Verb::Import(i) => transfer::import(&store, out, i),
        Verb::Keygen(k) => keygen::run(out, &k),
        Verb::Df => df::run(&store, out),
        Verb::Push(p) => oci::push(&store, out, p),
        Verb::Pull(p) => oci::pull(&store, out, p),
        Verb::Fetch(f) => oci::fetch(&store, out, f),
        Verb::Run(r) => run::run(&store, out, r),
        Verb::RunAttached(a) => run::attached(&store, &a),
        Verb::Sandbox(s) => sandbox::run(&store, out, s),
        Verb::Config(c) => config::run(&store, out, c),
        Verb::Demo => demo::run(&store, out),
        Verb::Doctor => doctor::run(&store, out),
    }
}

/// After an import or pull that committed `digest` as `capsule`: when `capsule` named another
/// version before (`replaced`), say so in one line, naming both digests and how to reach the
/// old one, rather than replace it silently.
pub fn note_replaced(
    capsule: &CapsuleRef,
    replaced: Option<&capsule_core::digest::Digest>,
    digest: &capsule_core::digest::Digest,
    verb: &str,
) {
    if let Some(old) = replaced {
        let by_digest = format!("{}@{}", capsule.name, old.short());
        eprintln!(
            "capsule: this {verb} moved {capsule} from {} to {}; the old version stays in the store as {by_digest} \
             (`capsule run {by_digest}`; `capsule gc --untagged` removes it)",
            old.short(),
            digest.short(),
        );
    }
}

/// Parse `NAME[:TAG]` (what names a capsule to write) with an error that names it.
pub fn capsule_ref(name: &str) -> Result<CapsuleRef> {
    name.parse::<CapsuleRef>().with_context(|| format!("invalid capsule reference {name:?}"))
}

/// Parse `NAME[:TAG]` or `NAME@HEX` (a version by its manifest digest, 12 to 64 hex digits):
/// what names a capsule to read.
pub fn any_ref(name: &str) -> Result<CapsuleRef> {
    CapsuleRef::parse_any(name).with_context(|| format!("invalid capsule reference {name:?}"))
}
