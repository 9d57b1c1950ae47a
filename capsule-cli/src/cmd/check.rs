//! `check NAME`: what the capsule expects of this host that the host lacks (pre-flight).
//! Reads the capsule's manifest and blobs and this host's files; writes nothing (no sandbox,
//! no cache file). One line per missing need, then a summary; exit status 1 when anything
//! is missing. `run` prints the same lines for the program it is about to start
//! ([`program_missing`]) instead of the loader's error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::capture::elf::Bytes;
use capsule_core::capture::needs::{self, CapsuleTree, Kernel, Need, RunNeeds};
use capsule_core::manifest::Manifest;
use capsule_core::run::{self, Prepared};
use capsule_core::store::Store;
use serde_json::json;

use super::any_ref;
use crate::cli::Output;
use crate::cli::args::{Check, Seccomp};

/// LD_LIBRARY_PATH a run gives the program: the capsule's library directories, then the
/// caller's own.
fn library_path(m: &Manifest) -> Vec<PathBuf> {
    let mut lp = needs::library_path(m);
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        lp.extend(std::env::split_paths(&old).filter(|p| p.is_absolute()));
    }
    lp
}

/// `check`.
pub fn run(store: &Store, out: Output, c: &Check) -> Result<ExitCode> {
    let cref = any_ref(&c.name)?;
    let (digest, m) = store.load(&cref).with_context(|| format!("cannot check capsule {cref}"))?;
    let tree = CapsuleTree::from_store(store, &m);
    let path = needs::search_path(&m, std::env::var_os("PATH").as_deref());
    let mut report = needs::capsule_needs(&tree, &library_path(&m), &path);
    let rules = c.isolation.iter().map(|s| run::parse_isolation(s)).collect::<Result<Vec<_>, _>>()?;
    let tier2 = match c.seccomp {
        Seccomp::Always => Some("--seccomp always".to_owned()),
        Seccomp::Never => None,
        Seccomp::Auto => needs::tier2_reason(&tree, &m),
    };
    let run_needs = RunNeeds {
        rules: run::effective_rules(&m, &rules),
        unconfined: c.unconfined,
        tier2,
        rootless_netns: c.netns && run::userns::needed(),
    };
    report.missing.extend(needs::kernel_needs(&run_needs, &Kernel::probe()));
    // What the capture's source lacked too is the capsule's as it was made, not this host's,
    // unless a program the capsule offers needs it (then that program cannot start here).
    let unmet = m.base.as_ref().map(|b| b.unmet.as_slice()).unwrap_or_default();
    let mut offered: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    if !unmet.is_empty() {
        for ep in &m.entry_points {
            let needs = needs::program_needs(&tree, &library_path(&m), &path, &ep.path.to_absolute());
            offered.extend(needs.iter().map(Need::key));
        }
    }
    let (as_captured, missing): (Vec<Need>, Vec<Need>) = report.missing.into_iter().partition(|n| {
        let key = n.key();
        unmet.binary_search(&key).is_ok() && !offered.contains(&key) && !matches!(n.want, needs::Want::Program(_))
    });
    report.missing = missing;
    let failed = !report.missing.is_empty();
    if out.json {
        let doc = json!({
            "capsule": cref.to_string(),
            "digest": digest.to_hex(),
            "ok": !failed,
            "missing": report.missing,
            "unmet_at_capture": as_captured,
            "checked": { "elf": report.elf, "scripts": report.scripts, "entry_points": report.entry_points },
            "unreadable": report.unreadable.iter().map(|(p, why)| json!({"path": p, "why": why})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for n in &report.missing {
            println!("{n}");
        }
        for n in &as_captured {
            println!("{}: missing where it was captured too (not counted)", n.key());
        }
        // A lazily pulled capsule lacks blobs until they are fetched (`capsule fetch NAME`).
        const SHOWN: usize = 5;
        for (p, why) in report.unreadable.iter().take(SHOWN) {
            eprintln!("capsule: warning: {p} of capsule {cref} could not be read, its needs are unknown: {why}");
        }
        if report.unreadable.len() > SHOWN {
            eprintln!("capsule: warning: and {} more files of capsule {cref}", report.unreadable.len() - SHOWN);
        }
        let mut what = format!(
            "{} ELF programs and libraries, {} scripts, {} entry points",
            report.elf, report.scripts, report.entry_points
        );
        if !report.unreadable.is_empty() {
            what = format!("{what}; {} files not read, their needs unknown", report.unreadable.len());
        }
        match report.missing.len() {
            0 => println!("capsule {cref}: nothing missing on this host (checked {what})"),
            n => println!("capsule {cref}: {n} missing on this host (checked {what})"),
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What the program `entry` (the virtual path `run` is about to start) needs that neither the
/// capsule nor this host has: its `#!` interpreters, its ELF interpreter and libraries.
/// Capsule files are read from the cache files a run makes of them anyway.
pub fn program_missing(store: &Store, p: &Prepared, entry: &str) -> Vec<Need> {
    let content = move |e: &capsule_core::manifest::Entry, d: &capsule_core::digest::Digest, limit: Option<u64>| {
        let cache = run::materialize::ensure_cache(store, d, e).map_err(std::io::Error::other)?;
        let f = std::fs::File::open(cache)?;
        let Some(n) = limit else { return Bytes::map(&f) };
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, n), &mut buf)?;
        Ok(Bytes::Owned(buf))
    };
    let tree = CapsuleTree::new(&p.manifest, Box::new(content));
    let path = needs::search_path(&p.manifest, std::env::var_os("PATH").as_deref());
    let program = std::path::Path::new(entry);
    if !program.is_absolute() {
        return Vec::new();
    }
    needs::program_needs(&tree, &library_path(&p.manifest), &path, program)
}
