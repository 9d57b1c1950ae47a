//! `capture snapshot begin|end`, `capture elf` and `capture install`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::capture::{elf_capture, snapshot};
use capsule_core::store::Store;
use serde_json::json;

use super::capsule_ref;
use crate::cli::Output;
use crate::cli::args::{CaptureElf, CaptureInstall, CaptureTrace, Seccomp, Snapshot};
use crate::cli::progress::Bars;

/// `capture snapshot begin|end`.
pub fn snapshot(store: &Store, out: Output, s: Snapshot) -> Result<ExitCode> {
    let bars = Bars::new(out.bars());
    match s {
        Snapshot::Begin(b) => {
            let digest =
                snapshot::begin(store, &b.base, &b.roots, &b.exclude, &bars).context("snapshot begin failed")?;
            let files = snapshot::pending(store).map(|(_, s)| s.entries.len()).unwrap_or(0);
            if out.json {
                out.print_json(&json!({ "snapshot": digest.to_hex(), "files": files, "roots": b.roots }))?;
            } else {
                out.info(format!(
                    "snapshot {} taken of {} ({files} entries); install, then run `capsule capture snapshot end NAME`",
                    digest.short(),
                    b.roots.join(",")
                ));
            }
        }
        Snapshot::End(e) => {
            let r = capsule_ref(&e.name)?;
            let digest = snapshot::end(store, &r.name, &r.tag, e.entry.as_deref(), &bars)
                .with_context(|| format!("snapshot end for capsule {r} failed"))?;
            report_capsule(store, out, &r, &digest)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `capture elf NAME PATH...`.
pub fn elf(store: &Store, out: Output, e: CaptureElf) -> Result<ExitCode> {
    let r = capsule_ref(&e.name)?;
    let bars = Bars::new(out.bars());
    let digest = elf_capture(store, &r.name, &r.tag, &e.paths, &bars)
        .with_context(|| format!("capture elf for capsule {r} failed"))?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

/// `capture install NAME [--entry PATH] -- CMD...`: run the installer in a fresh sandbox
/// with write-copy over `/` (and over /tmp and /run, which runs normally pass through), both
/// tiers on, then make a capsule of the sandbox. The sandbox is removed either way.
pub fn install(store: &Store, out: Output, i: CaptureInstall) -> Result<ExitCode> {
    use capsule_core::capture::builder::Builder;
    use capsule_core::capture::install;
    use capsule_core::manifest::{CaptureStep, Manifest};
    use capsule_core::run::{self, sandbox::Sandbox};

    let r = capsule_ref(&i.name)?;
    let command = i.command.join(" ");
    let program = which(&i.command[0]).with_context(|| format!("{} is not a program on PATH", i.command[0]))?;
    let scratch = format!(".install-{}-{}", r.name, std::process::id());
    let sandbox = Sandbox::open(store, &scratch)?;
    let dir = store.root().join("sandboxes").join(&scratch);
    let _cleanup = RemoveOnDrop(dir);
    let mut empty = Manifest::new(&r.name, &r.tag, 0);
    empty.origins.push(Builder::origin(CaptureStep::Install, command.clone()));
    let digest = capsule_core::digest::Digest::of(&empty.encode());
    let rules: Vec<_> = ["/=writecopy", "/tmp=writecopy", "/var/tmp=writecopy", "/run=writecopy"]
        .iter()
        .map(|s| run::parse_isolation(s))
        .collect::<Result<_, _>>()?;
    let tree = sandbox.tree().to_owned();
    let prepared = run::prepare_with(store, digest, empty, sandbox.clone(), &rules, &Default::default())?;
    let opts =
        super::run::Start { seccomp: Seccomp::Always, stats: false, no_cookie: false, record: None, netns: None };
    let code = super::run::start(store, &prepared, &program, &i.command[0], &i.command[1..], opts)?;
    if code != ExitCode::SUCCESS {
        eprintln!("capsule: error: the installer ({command}) failed; nothing was captured and the host is unchanged");
        return Ok(code);
    }
    let bars = Bars::new(out.bars());
    let whiteouts = sandbox.whiteouts()?;
    let digest = install::from_sandbox(store, &tree, &whiteouts, &r.name, &r.tag, i.entry.as_deref(), &command, &bars)
        .with_context(|| format!("capture install for capsule {r} failed"))?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

/// `capture trace NAME -- CMD...`: run CMD over an empty capsule (host paths merged, as a
/// normal run sees them) with the supervisor in record mode, then pack what it named.
pub fn trace(store: &Store, out: Output, t: CaptureTrace) -> Result<ExitCode> {
    use capsule_core::capture::builder::Builder;
    use capsule_core::capture::trace;
    use capsule_core::manifest::{CaptureStep, Manifest};
    use capsule_core::run::{self, sandbox::Sandbox};

    let r = capsule_ref(&t.name)?;
    let command = t.command.join(" ");
    let program = which(&t.command[0]).with_context(|| format!("{} is not a program on PATH", t.command[0]))?;
    let program = std::path::absolute(&program).unwrap_or(program);
    let scratch = format!(".trace-{}-{}", r.name, std::process::id());
    let sandbox = Sandbox::open(store, &scratch)?;
    let _cleanup = RemoveOnDrop(store.root().join("sandboxes").join(&scratch));
    let mut empty = Manifest::new(&r.name, &r.tag, 0);
    empty.origins.push(Builder::origin(CaptureStep::Trace, command.clone()));
    let digest = capsule_core::digest::Digest::of(&empty.encode());
    let tree = sandbox.tree().to_owned();
    let prepared = run::prepare_with(store, digest, empty, sandbox, &[], &Default::default())?;
    let rec = capsule_core::supervisor::Recorder::default();
    let opts = super::run::Start {
        seccomp: Seccomp::Always,
        stats: false,
        no_cookie: true,
        record: Some(rec.clone()),
        netns: None,
    };
    let code = super::run::start(store, &prepared, &program, &t.command[0], &t.command[1..], opts)?;
    if code != ExitCode::SUCCESS {
        eprintln!("capsule: error: the traced program ({command}) failed; nothing was captured");
        return Ok(code);
    }
    let paths: Vec<Vec<u8>> = rec.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
    let bars = Bars::new(out.bars());
    let entry = program.to_string_lossy().into_owned();
    let digest = trace::from_paths(store, &paths, &tree, &r.name, &r.tag, &entry, &command, &bars)
        .with_context(|| format!("capture trace for capsule {r} failed"))?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

/// `prog` as the shell would find it on PATH.
fn which(prog: &str) -> Option<std::path::PathBuf> {
    if prog.contains('/') {
        return Some(prog.into());
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// Removes a scratch directory when dropped (success, failure or error).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn report_capsule(
    store: &Store,
    out: Output,
    r: &capsule_core::store::CapsuleRef,
    digest: &capsule_core::digest::Digest,
) -> Result<()> {
    let m = store.load_manifest(digest)?;
    if out.json {
        out.print_json(&json!({ "capsule": r.to_string(), "digest": digest.to_hex(), "entries": m.entries.len(), "deletions": m.deletions.len(), "size": m.size() }))?;
    } else if !out.quiet {
        println!(
            "{r} {} ({} entries, {} deletions, {})",
            digest.short(),
            m.entries.len(),
            m.deletions.len(),
            crate::cli::human_bytes(m.size())
        );
    }
    Ok(())
}
