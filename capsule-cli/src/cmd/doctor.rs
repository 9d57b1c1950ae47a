//! `doctor`: what capsule can do on this machine. The store (opened, its index readable), the
//! preload shim (found where `run` looks for it), the tools `--netns` uses as root, and the
//! kernel features each tier needs (`capsule_core::probe`). Exit status 1 when something `run`
//! cannot do without is missing; optional features only print what is lost.

use std::process::ExitCode;

use anyhow::Result;
use capsule_core::store::{Store, index::Index};
use serde_json::json;

use crate::cli::Output;

struct Check {
    name: String,
    ok: bool,
    required: bool,
    detail: String,
    needed_for: String,
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// `doctor`.
pub fn run(store: &Store, out: Output) -> Result<ExitCode> {
    let mut checks = Vec::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let index = Index::with(store, |idx| idx.capsules().map(|c| c.len()));
    checks.push(Check {
        name: "store".into(),
        ok: index.is_ok(),
        required: true,
        detail: match &index {
            Ok(n) => format!("{} ({n} capsules)", store.root().display()),
            Err(e) => format!("{}: {e}", store.root().display()),
        },
        needed_for: "every verb".into(),
    });
    let shim = super::run::find_shim();
    checks.push(Check {
        name: "preload shim".into(),
        ok: shim.as_ref().is_ok_and(|p| p.is_file()),
        required: true,
        detail: match &shim {
            Ok(p) if p.is_file() => p.display().to_string(),
            Ok(p) => format!("{} does not exist", p.display()),
            Err(e) => e.to_string(),
        },
        needed_for: "`run` (tier 1)".into(),
    });
    checks.push(Check {
        name: "ip (iproute2)".into(),
        ok: on_path("ip"),
        required: false,
        detail: if on_path("ip") { "on PATH".into() } else { "not on PATH".into() },
        needed_for: "`run --netns` as root".into(),
    });
    for p in capsule_core::probe::all() {
        checks.push(Check {
            name: p.name.into(),
            ok: p.ok,
            required: false,
            detail: p.detail,
            needed_for: p.needed_for.into(),
        });
    }
    let failed = checks.iter().any(|c| c.required && !c.ok);
    if out.json {
        let items: Vec<_> = checks
            .iter()
            .map(|c| json!({ "name": c.name, "ok": c.ok, "required": c.required, "detail": c.detail, "needed_for": c.needed_for }))
            .collect();
        out.print_json(&json!({ "kernel": kernel, "ok": !failed, "checks": items }))?;
    } else {
        println!("kernel {kernel}");
        for c in &checks {
            let mark = match (c.ok, c.required) {
                (true, _) => "ok     ",
                (false, true) => "MISSING",
                (false, false) => "absent ",
            };
            println!("{mark} {:<26} {}", c.name, c.detail);
            if !c.ok {
                println!("        {:<26} needed for: {}", "", c.needed_for);
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
