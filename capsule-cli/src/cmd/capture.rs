//! `capture snapshot begin|end`, `capture elf` and `capture install`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::capture::{elf_capture, snapshot};
use capsule_core::store::Store;
use serde_json::json;

use super::capsule_ref;
use crate::cli::Output;
use crate::cli::args::{CaptureElf, CaptureInstall, CaptureShared, CaptureTrace, Declare, Seccomp, Snapshot};
use crate::cli::progress::Bars;

/// `capture snapshot begin|end`.
pub fn snapshot(store: &Store, out: Output, s: Snapshot) -> Result<ExitCode> {
    let bars = Bars::new(out.bars());
    match s {
        Snapshot::Begin(b) => {
            let digest =
                snapshot::begin(store, &b.root, &b.roots, &b.exclude, &bars).context("snapshot begin failed")?;
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
            let digest = snapshot::end(store, &r.name, &r.tag, e.entry.as_deref(), e.base.base.into(), &bars)
                .with_context(|| format!("snapshot end for capsule {r} failed"))?;
            let digest = declare(store, &r, &e.declare, digest)?;
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
    let digest = declare(store, &r, &e.declare, digest)?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

/// What `capture install` and `capture trace` share: CMD run like `capsule run` over an
/// *empty* capsule, or over a source root's capsule (`capture install --root`), in a scratch
/// sandbox (`sandboxes/.KIND-NAME-PID`, removed on drop; `gc` removes one a killed capture
/// left), with both tiers on.
struct Scratch {
    sandbox: capsule_core::run::sandbox::Sandbox,
    program: std::path::PathBuf,
    code: ExitCode,
    _cleanup: RemoveOnDrop,
}

/// The scratch sandbox of one capture, and the capsule its runs see.
struct ScratchSandbox<'a> {
    sandbox: capsule_core::run::sandbox::Sandbox,
    digest: capsule_core::digest::Digest,
    manifest: capsule_core::manifest::Manifest,
    source: Option<&'a capsule_core::capture::root::Source>,
    rules: Vec<(String, capsule_core::view::Mode)>,
    cleanup: RemoveOnDrop,
}

impl<'a> ScratchSandbox<'a> {
    fn new(
        store: &Store,
        r: &capsule_core::store::CapsuleRef,
        step: capsule_core::manifest::CaptureStep,
        command: &[String],
        rules: &[String],
        source: Option<&'a capsule_core::capture::root::Source>,
    ) -> Result<Self> {
        use capsule_core::capture::builder::Builder;
        use capsule_core::manifest::{CaptureStep, Manifest};
        use capsule_core::run::{self, sandbox::Sandbox};

        let kind = if step == CaptureStep::Trace { "trace" } else { "install" };
        let scratch = format!(".{kind}-{}-{}", r.name, std::process::id());
        let sandbox = Sandbox::open(store, &scratch)?;
        let cleanup = RemoveOnDrop(store.root().join("sandboxes").join(&scratch));
        let (digest, manifest) = match source {
            Some(s) => (s.digest, s.manifest.clone()),
            None => {
                let mut empty = Manifest::new(&r.name, &r.tag, 0);
                empty.origins.push(Builder::origin(step, command.join(" ")));
                (capsule_core::digest::Digest::of(&empty.encode()), empty)
            }
        };
        let rules = rules.iter().map(|s| run::parse_isolation(s)).collect::<Result<Vec<_>, _>>()?;
        Ok(ScratchSandbox { sandbox, digest, manifest, source, rules, cleanup })
    }

    /// Run `command` in the sandbox; its exit code.
    fn run(
        &self,
        store: &Store,
        command: &[String],
        record: Option<capsule_core::supervisor::Recorder>,
    ) -> Result<(ExitCode, std::path::PathBuf)> {
        use capsule_core::run;

        let opts = run::RunOptions { rules: self.rules.clone(), ..Default::default() };
        let prepared = run::prepare_with(store, self.digest, self.manifest.clone(), self.sandbox.clone(), &opts)?;
        let (start, program, loader) = match self.source {
            // A host program over an empty capsule: the kernel's exec (the shim resolves what
            // the installer execs later).
            None => {
                let program = which(&command[0]).with_context(|| format!("{} is not a program on PATH", command[0]))?;
                let program = std::path::absolute(&program).unwrap_or(program);
                (run::exec::Program::plain(program.clone(), command[0].clone().into()), program, None)
            }
            // The root's own program, started as `capsule run` starts a capsule's.
            Some(s) => {
                let entry = in_root(&s.manifest, &command[0])
                    .with_context(|| format!("{} is not a program in {}", command[0], s.label))?;
                let loader = run::exec::loader(store, &prepared).context("cannot read the root's loader")?;
                let start = run::exec::program(store, &prepared, &entry, loader)?
                    .with_context(|| format!("{entry} is not a program in {}", s.label))?;
                (start, std::path::PathBuf::from(entry), loader)
            }
        };
        // Record mode leaves the shim without the cookie, so the supervisor sees every path call.
        let opts = super::run::Start {
            seccomp: Seccomp::Always,
            stats: false,
            no_cookie: record.is_some(),
            unconfined: false,
            record,
            netns: None,
            plan: None,
            loader,
            stop_timeout: capsule_core::run::signals::STOP_TIMEOUT,
            user: None,
        };
        let code = super::run::start(store, &prepared, &start, &command[1..], opts)?;
        Ok((code, program))
    }
}

/// Run CMD once in a fresh scratch sandbox.
fn run_scratch(
    store: &Store,
    r: &capsule_core::store::CapsuleRef,
    step: capsule_core::manifest::CaptureStep,
    command: &[String],
    rules: &[String],
    record: Option<capsule_core::supervisor::Recorder>,
) -> Result<Scratch> {
    let s = ScratchSandbox::new(store, r, step, command, rules, None)?;
    let (code, program) = s.run(store, command, record)?;
    Ok(Scratch { sandbox: s.sandbox, program, code, _cleanup: s.cleanup })
}

/// `prog` as the root's PATH finds it: its virtual path.
fn in_root(m: &capsule_core::manifest::Manifest, prog: &str) -> Option<String> {
    use capsule_core::capture::programs::{PATH_DIRS, is_program};
    use capsule_core::manifest::RelPath;
    let program = |p: String| RelPath::new(p.into_bytes()).ok().filter(|p| is_program(m, p));
    match prog.strip_prefix('/') {
        Some(abs) => program(abs.to_owned()).map(|p| p.display()),
        None if !prog.is_empty() && !prog.contains('/') => {
            PATH_DIRS.iter().find_map(|d| program(format!("{d}/{prog}"))).map(|p| p.display())
        }
        None => None,
    }
}

/// `capture install NAME [--entry PATH] [--root DIR|minimal] -- CMD...`: run the installer with
/// write-copy over `/` (and over every prefix the defaults merge: $HOME, /tmp, /var/tmp…), or
/// over a source root with the host hidden, then make a capsule of what it wrote. The host is
/// not changed.
pub fn install(store: &Store, out: Output, i: CaptureInstall) -> Result<ExitCode> {
    use capsule_core::capture::root;
    use capsule_core::manifest::CaptureStep;

    let r = capsule_ref(&i.name)?;
    let bars = Bars::new(out.bars());
    // A source root's capsule has no name: `gc` must not take its blobs while the installer
    // runs over it (the kept minimal root's record is written under this lock too).
    let _keep = match i.root {
        Some(_) => Some(capsule_core::store::StoreLock::shared(store)?),
        None => None,
    };
    let source = match i.root.as_deref() {
        None => None,
        Some("minimal") => Some(
            root::minimal(store, &mut |m| eprintln!("capsule: {m}"), &bars)
                .with_context(|| format!("capture install for capsule {r} failed"))?,
        ),
        Some(dir) => Some(
            root::from_dir(store, std::path::Path::new(dir), &bars)
                .with_context(|| format!("capture install for capsule {r} failed"))?,
        ),
    };
    let lower = source.as_ref().map_or(std::path::Path::new("/"), |s| s.dir.as_path());
    let whose = source.as_ref().map_or_else(|| "the host".to_owned(), |s| s.label.clone());
    // apt installs nothing of a package the host (or the root) already has: the capsule would
    // not hold it.
    let requested = capsule_core::capture::install::requested(&i.command);
    let had = capsule_core::capture::install::already_installed(lower, &requested)?;
    let mut packages = capsule_core::capture::install::Packages { requested, reinstalled: Vec::new() };
    let command_words = if had.is_empty() {
        i.command.clone()
    } else if i.reinstall {
        let words = capsule_core::capture::install::with_reinstall(&i.command)
            .context("--reinstall works with apt-get and apt; aptitude has no such option (use its reinstall verb)")?;
        eprintln!(
            "capsule: {whose} already has {}: reinstalling in the capture, so all their files go into capsule {r}",
            had.join(", ")
        );
        packages.reinstalled = had;
        words
    } else {
        let them = if had.len() == 1 { "it" } else { "them" };
        eprintln!(
            "capsule: error: {whose} already has {} installed, so the installer would install nothing of \
             {them} and capsule {r} would not hold {them}; nothing was captured. Pass --reinstall to capture \
             {them} in full, or --root minimal to install into a clean root, or leave {them} out",
            had.join(", "),
        );
        return Ok(ExitCode::from(1));
    };
    let command_words = if source.is_some() { root::apt_as_root(&command_words) } else { command_words };
    let command = command_words.join(" ");
    let rules = match &source {
        // Write-copy everywhere the defaults would let a write through to the host.
        None => {
            let mut rules: Vec<String> = capsule_core::run::default_rules()
                .into_iter()
                .filter(|(_, m)| *m == capsule_core::view::Mode::Merged)
                .map(|(p, _)| format!("{p}=writecopy"))
                .collect();
            rules.extend(["/=writecopy".to_owned(), "/run=writecopy".to_owned()]);
            rules
        }
        // The host hidden everywhere but /dev, /proc and /sys (passed through by default); its
        // resolver configuration let through (read-only) so the installer reaches the archive.
        Some(_) => root_rules(store),
    };
    let scratch = ScratchSandbox::new(store, &r, CaptureStep::Install, &command_words, &rules, source.as_ref())?;
    // A kept root's package lists are stale or gone (mmdebstrap removes them): an apt install
    // over a root first refreshes them in the same sandbox (the lists are not captured).
    if source.is_some() && !packages.requested.is_empty() {
        let update = root::apt_as_root(&["apt-get".to_owned(), "-q".to_owned(), "update".to_owned()]);
        let (code, _) = scratch.run(store, &update, None)?;
        if code != ExitCode::SUCCESS {
            eprintln!(
                "capsule: error: apt-get update in {whose} failed (it needs the network to reach the archive); \
                 nothing was captured and the host is unchanged"
            );
            return Ok(code);
        }
    }
    let (code, _) = scratch.run(store, &command_words, None)?;
    if code != ExitCode::SUCCESS {
        eprintln!("capsule: error: the installer ({command}) failed; nothing was captured and the host is unchanged");
        return Ok(code);
    }
    let whiteouts = scratch.sandbox.whiteouts()?;
    let tree = scratch.sandbox.tree();
    if let Some(s) = &source {
        root::unlink_pristine(store, tree, &s.manifest)
            .with_context(|| format!("capture install for capsule {r}: cannot clear the sandbox of {}", s.label))?;
    }
    let digest = capsule_core::capture::install::from_sandbox(
        store,
        tree,
        lower,
        &whiteouts,
        &r.name,
        &r.tag,
        i.entry.as_deref(),
        &command,
        &packages,
        i.base.base.into(),
        &bars,
    )
    .with_context(|| format!("capture install for capsule {r} failed"))?;
    let digest = declare(store, &r, &i.declare, digest)?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

/// The isolation rules of an installer run over a source root: `/` and `/run` `full` (the
/// host's system hidden: the root's files stand in its place), `/dev`, `/proc` and `/sys`
/// passed through (the defaults), and write-copy (the host's read, writes in the sandbox) for
/// the user's data the defaults merge (`$HOME`, `/tmp`, `/var/tmp`, `/media`, `/mnt`), the
/// host's `/etc/resolv.conf` and `/etc/hosts` (unless the root has its own), the store and the
/// shim: a path into the sandbox tree (glibc's `realpath` of a tree path walks it component by
/// component) and the loader's open of the shim reach the supervisor under tier 2, which would
/// place them below the hidden `/`.
fn root_rules(store: &Store) -> Vec<String> {
    let mut rules: Vec<String> = capsule_core::run::default_rules()
        .into_iter()
        .filter_map(|(p, m)| match m {
            capsule_core::view::Mode::WriteCopy => Some(format!("{p}=full")),
            capsule_core::view::Mode::Merged => Some(format!("{p}=writecopy")),
            _ => None,
        })
        .collect();
    rules.extend(["/etc/resolv.conf=writecopy".to_owned(), "/etc/hosts=writecopy".to_owned()]);
    // glibc's `system` and `popen` start `/bin/sh` through an internal `posix_spawn` that no
    // hook sees, so the kernel executes the host's shell (which then runs with the shim, over
    // the root): the file `/bin/sh` leads to is let through, read-only.
    if let Ok(sh) = std::fs::canonicalize("/bin/sh") {
        rules.push(format!("{}=writecopy", sh.display()));
    }
    let home = std::path::absolute(store.root()).unwrap_or_else(|_| store.root().to_owned());
    rules.push(format!("{}=writecopy", home.display()));
    // The shim, which the loader of every program the installer starts opens with a raw
    // system call: under tier 2 that open reaches the supervisor, which would place it below
    // the hidden `/`.
    if let Ok(shim) = super::run::find_shim() {
        let shim = std::path::absolute(&shim).unwrap_or(shim);
        rules.push(format!("{}=writecopy", shim.display()));
    }
    rules
}

/// `capture trace NAME -- CMD...`: run CMD (host paths merged, as a normal run sees them)
/// with the supervisor in record mode, then pack what it named.
pub fn trace(store: &Store, out: Output, t: CaptureTrace) -> Result<ExitCode> {
    use capsule_core::manifest::CaptureStep;

    let r = capsule_ref(&t.name)?;
    let command = t.command.join(" ");
    let rec = capsule_core::supervisor::Recorder::default();
    let run = run_scratch(store, &r, CaptureStep::Trace, &t.command, &["/=merged".to_owned()], Some(rec.clone()))?;
    if run.code != ExitCode::SUCCESS {
        eprintln!("capsule: error: the traced program ({command}) failed; nothing was captured");
        return Ok(run.code);
    }
    let mut paths: Vec<Vec<u8>> = rec.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
    // The loader opened capsule's own shim (LD_PRELOAD): not part of the application.
    if let Ok(shim) = super::run::find_shim() {
        let own: Vec<Vec<u8>> = [shim.canonicalize().ok(), Some(shim)]
            .into_iter()
            .flatten()
            .map(|p| p.into_os_string().into_encoded_bytes())
            .collect();
        paths.retain(|p| !own.contains(p));
    }
    let bars = Bars::new(out.bars());
    let entry = run.program.to_string_lossy().into_owned();
    let digest = capsule_core::capture::trace::from_paths(
        store,
        &paths,
        run.sandbox.tree(),
        &r.name,
        &r.tag,
        &entry,
        &command,
        &bars,
    )
    .with_context(|| format!("capture trace for capsule {r} failed"))?;
    let digest = declare(store, &r, &t.declare, digest)?;
    report_capsule(store, out, &r, &digest)?;
    Ok(ExitCode::SUCCESS)
}

fn declarations(d: &Declare) -> capsule_core::capture::declare::Declarations {
    capsule_core::capture::declare::Declarations { state: d.state.clone(), links: d.link.clone() }
}

/// Add `--state`/`--link` to capsule `r`, just committed as `digest`.
fn declare(
    store: &Store,
    r: &capsule_core::store::CapsuleRef,
    d: &Declare,
    digest: capsule_core::digest::Digest,
) -> Result<capsule_core::digest::Digest> {
    let d = declarations(d);
    if d.is_empty() {
        return Ok(digest);
    }
    capsule_core::capture::declare::redeclare(store, r, &d)
        .with_context(|| format!("cannot declare state or links of {r}"))
}

/// `capture shared NAME --state PATH... [--link SHARED]...`.
pub fn shared(store: &Store, out: Output, c: CaptureShared) -> Result<ExitCode> {
    let r = capsule_ref(&c.name)?;
    if c.declare.state.is_empty() {
        anyhow::bail!("capture shared {r}: give at least one --state PATH");
    }
    let digest = capsule_core::capture::declare::shared(store, &r, &declarations(&c.declare))
        .with_context(|| format!("capture shared for capsule {r} failed"))?;
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
    let closure = closure_size(&m);
    if out.json {
        let base = m.base.as_ref().map(|b| {
            json!({ "base": b.kind.name(), "packages": closure.0, "files": closure.1, "size": closure.2, "unmet": b.unmet })
        });
        out.print_json(&json!({ "capsule": r.to_string(), "digest": digest.to_hex(), "entries": m.entries.len(), "deletions": m.deletions.len(), "size": m.size(), "closure": base }))?;
    } else if !out.quiet {
        println!(
            "{r} {} ({} entries, {} deletions, {})",
            digest.short(),
            m.entries.len(),
            m.deletions.len(),
            crate::cli::human_bytes(m.size())
        );
        if let Some(b) = &m.base {
            let (packages, files, bytes) = closure;
            let added = match b.kind {
                capsule_core::manifest::BaseKind::Host => {
                    "nothing added (it runs on machines like this one)".to_owned()
                }
                _ => format!("{packages} packages and {files} files added, {}", crate::cli::human_bytes(bytes)),
            };
            println!("  base {}: {added}", b.kind.name());
            match b.unmet.len() {
                0 => {}
                1 => println!("  1 need this host did not meet either (`capsule inspect {r}` shows it)"),
                n => println!("  {n} needs this host did not meet either (`capsule inspect {r}` lists them)"),
            }
        }
    }
    Ok(())
}

/// What the closure step of capsule `m` added: packages, files, bytes.
fn closure_size(m: &capsule_core::manifest::Manifest) -> (usize, u64, u64) {
    use capsule_core::manifest::{CaptureStep, EntryKind};
    let Some(i) = m.origins.iter().position(|o| o.step == CaptureStep::Closure) else { return (0, 0, 0) };
    let (mut files, mut bytes) = (0, 0);
    for e in m.entries.iter().filter(|e| e.origin as usize == i) {
        match e.kind {
            EntryKind::File { size, .. } => {
                files += 1;
                bytes += size;
            }
            EntryKind::Symlink { .. } | EntryKind::Hardlink { .. } => files += 1,
            EntryKind::Dir => {}
        }
    }
    let packages = m.origins.get(i).and_then(|o| o.detail.split(": ").nth(1)).and_then(|d| d.split(' ').next());
    (packages.and_then(|p| p.parse().ok()).unwrap_or(0), files, bytes)
}
