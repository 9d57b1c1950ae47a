//! `sandbox NAME [--sandbox SANDBOX] diff|reset|commit NEWNAME`: what a capsule's programs
//! wrote, kept across runs.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::run::sandbox::Sandbox;
use capsule_core::store::Store;
use serde_json::json;

use super::{any_ref, capsule_ref};
use crate::cli::Output;
use crate::cli::args::{SandboxAction, SandboxArgs};

/// `sandbox`.
pub fn run(store: &Store, out: Output, s: SandboxArgs) -> Result<ExitCode> {
    // `NAME@HEX`: the sandbox a run of that version by digest uses.
    let r = any_ref(&s.name)?;
    // `--sandbox NAME`: the one a `run --sandbox NAME` of this capsule used.
    let name = match &s.sandbox {
        Some(n) => {
            super::run::sandbox_name_ok(n)?;
            n.clone()
        }
        None => r.sandbox_name(),
    };
    if !store.root().join("sandboxes").join(&name).is_dir() && s.sandbox.is_some() {
        anyhow::bail!("no sandbox named {name} in {}", store.root().display());
    }
    let sandbox = Sandbox::open(store, &name)?;
    match s.action {
        SandboxAction::Diff => {
            let (_, m) = store.load(&r).with_context(|| format!("cannot read capsule {r}"))?;
            let c = sandbox.diff(&m)?;
            if out.json {
                out.print_json(&json!({ "added": c.added, "modified": c.modified, "deleted": c.deleted }))?;
            } else {
                for (mark, list) in [("A", &c.added), ("M", &c.modified), ("D", &c.deleted)] {
                    for p in list {
                        println!("{mark} {p}");
                    }
                }
            }
        }
        SandboxAction::Reset => {
            sandbox.reset()?;
            out.info(format!("sandbox {name} discarded"));
        }
        SandboxAction::Commit { new } => {
            let new = capsule_ref(&new)?;
            let (_, m) = store.load(&r).with_context(|| format!("cannot read capsule {r}"))?;
            let whiteouts = sandbox.whiteouts()?;
            let bars = crate::cli::progress::Bars::new(out.bars());
            let digest = capsule_core::capture::commit::from_sandbox_changes(
                store,
                &m,
                sandbox.dir(),
                sandbox.tree(),
                &whiteouts,
                &new,
                &bars,
            )
            .with_context(|| format!("cannot commit the sandbox of {r} as {new}"))?;
            if out.json {
                out.print_json(
                    &json!({ "capsule": new.to_string(), "digest": digest.to_hex(), "from": r.to_string() }),
                )?;
            } else {
                out.info(format!("committed the sandbox of {r} as {new} {}", digest.short()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
