//! `inspect NAME`: what a capsule holds, with the capture step each file came from.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use capsule_core::digest::Digest;
use capsule_core::manifest::{Entry, EntryKind, Manifest, RegValue};
use capsule_core::store::Store;
use serde_json::{Value, json};

use super::any_ref;
use crate::cli::{Output, human_bytes};

/// `inspect`.
pub fn run(store: &Store, out: Output, name: &str) -> Result<ExitCode> {
    let r = any_ref(name)?;
    let (digest, m) = store.load(&r).with_context(|| format!("cannot inspect capsule {r}"))?;
    let used_by = capsule_core::run::shared::linked_by(store, &r.name)?;
    if out.json {
        let mut v = to_json(&digest, &m, store.root());
        v["used_by"] = used_by.iter().map(|(c, how)| json!({ "capsule": c, "how": how })).collect();
        out.print_json(&v)?;
    } else {
        print_text(&digest, &m, &used_by, store.root())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_json(m: &Manifest, e: &Entry) -> Value {
    let mut v = json!({
        "path": e.path.display(),
        "kind": e.kind.name(),
        "mode": format!("{:04o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "mtime": e.mtime,
        "origin": m.origins.get(e.origin as usize).map(|o| o.step.name()).unwrap_or("?"),
    });
    match &e.kind {
        EntryKind::File { size, digest } => {
            v["size"] = json!(size);
            v["digest"] = json!(digest.to_hex());
        }
        EntryKind::Symlink { target } => v["target"] = json!(String::from_utf8_lossy(target)),
        EntryKind::Hardlink { target } => v["target"] = json!(target.display()),
        EntryKind::Dir => {}
    }
    v
}

fn reg_json(v: &RegValue) -> Value {
    match v {
        RegValue::String(s) => json!({ "string": s }),
        RegValue::Int(i) => json!({ "int": i }),
        RegValue::File { digest, mode } => json!({ "file": digest.to_hex(), "mode": format!("{mode:04o}") }),
        RegValue::Deleted => json!("deleted"),
    }
}

/// The whole manifest as JSON.
pub fn to_json(digest: &Digest, m: &Manifest, store: &std::path::Path) -> Value {
    json!({
        "name": m.name,
        "tag": m.tag,
        "digest": digest.to_hex(),
        "created": m.created,
        "size": m.size(),
        "entry_points": m.entry_points.iter().map(|e| json!({
            "name": e.name, "path": e.path.display(), "args": e.args, "source": e.source.describe(),
            "default": m.default_entry.as_deref() == Some(e.name.as_str()),
        })).collect::<Vec<_>>(),
        "default_entry": m.default_entry,
        "env": m.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "isolation": m.isolation.iter().map(|r| json!({ "prefix": r.prefix, "mode": format!("{:?}", r.mode).to_lowercase() })).collect::<Vec<_>>(),
        "effective_isolation": capsule_core::run::run_rules(store, m, &[]).iter().map(|(p, mode)| json!({ "prefix": p, "mode": capsule_core::run::mode_name(*mode) })).collect::<Vec<_>>(),
        "identity": {
            "hostname": m.identity.hostname, "domain": m.identity.domain,
            "ipv4": m.identity.ipv4.map(|a| a.to_string()), "ipv6": m.identity.ipv6.map(|a| a.to_string()),
            "machine_id": m.identity.machine_id,
        },
        "links": m.links.iter().map(|l| json!({ "name": l.name, "digest": l.digest.map(|d| d.to_hex()) })).collect::<Vec<_>>(),
        "origins": m.origins.iter().map(|o| json!({ "step": o.step.name(), "detail": o.detail, "at": o.at })).collect::<Vec<_>>(),
        "files": m.entries.iter().map(|e| entry_json(m, e)).collect::<Vec<_>>(),
        "deletions": m.deletions.iter().map(|d| d.display()).collect::<Vec<_>>(),
        "registry": m.registry.iter().map(|(k, v)| json!({ "key": k, "value": reg_json(v) })).collect::<Vec<_>>(),
        "base": m.base.as_ref().map(|b| json!({
            "kind": b.kind.name(),
            "distro": b.distro.as_ref().map(|d| json!({ "id": d.id, "version_id": d.version_id, "codename": d.codename })),
            "unmet": b.unmet,
        })),
        "inventory": m.inventory.as_ref().map(|inv| json!({
            "distro": inv.distro.as_ref().map(|d| json!({ "id": d.id, "version_id": d.version_id, "codename": d.codename })),
            "packages": inv.packages.iter().map(|p| json!({
                "name": p.name, "version": p.version, "architecture": p.architecture, "source": p.source,
                "source_version": p.source_version.as_deref().unwrap_or(&p.version), "maintainer": p.maintainer,
                "depends": p.depends, "purl": super::sbom::purl(p, inv.distro.as_ref()),
            })).collect::<Vec<_>>(),
        })),
    })
}

fn print_text(digest: &Digest, m: &Manifest, used_by: &[(String, &str)], store: &std::path::Path) -> Result<()> {
    let mut w = std::io::stdout().lock();
    writeln!(w, "capsule   {}:{}", m.name, m.tag)?;
    writeln!(w, "digest    {digest}")?;
    writeln!(w, "size      {} in {} entries, {} deletions", human_bytes(m.size()), m.entries.len(), m.deletions.len())?;
    for o in &m.origins {
        writeln!(w, "origin    {}: {}", o.step.name(), o.detail)?;
    }
    match &m.base {
        None => writeln!(w, "base      (none recorded: made before bases, or by an elf, trace or shared capture)")?,
        Some(b) => {
            let of = b.distro.as_ref().map(|d| format!(" ({} {} {})", d.id, d.version_id, d.codename));
            writeln!(w, "base      {}{}", b.kind.name(), of.unwrap_or_default().replace("  ", " "))?;
            for u in &b.unmet {
                writeln!(w, "unmet     {u} (where it was captured too)")?;
            }
        }
    }
    for e in &m.entry_points {
        let args = if e.args.is_empty() { String::new() } else { format!(" {}", e.args.join(" ")) };
        let default = if m.default_entry.as_deref() == Some(e.name.as_str()) { ", default" } else { "" };
        writeln!(w, "entry     {} ({}{args}; {}{default})", e.name, e.path, e.source.describe())?;
    }
    if m.default_entry.is_none() && !m.entry_points.is_empty() {
        writeln!(w, "entry     (no default: `capsule run {} PROGRAM` names one)", m.name)?;
    }
    for (k, v) in &m.registry {
        writeln!(w, "registry  {k} = {}", reg_json(v))?;
    }
    for i in &m.isolation {
        writeln!(w, "isolation {} {}", i.prefix, format!("{:?}", i.mode).to_lowercase())?;
    }
    // What a run follows: the defaults with the capsule's rules over them, and the store
    // write-copy.
    for (prefix, mode) in capsule_core::run::run_rules(store, m, &[]) {
        writeln!(w, "effective {prefix} {}", capsule_core::run::mode_name(mode))?;
    }
    for l in &m.links {
        let pin = l.digest.map(|d| format!(" @{}", d.short())).unwrap_or_default();
        writeln!(w, "links-to  {}{pin}", l.name)?;
    }
    match &m.inventory {
        None => writeln!(w, "packages  (no inventory: made before capsules kept one, or by `capture shared`)")?,
        Some(inv) if inv.packages.is_empty() => writeln!(w, "packages  (none from dpkg)")?,
        Some(inv) => {
            for p in &inv.packages {
                let source = match (&p.source, &p.source_version) {
                    (s, None) if *s == p.name => String::new(),
                    (s, v) => format!(" (source {s} {})", v.as_deref().unwrap_or(&p.version)),
                };
                writeln!(w, "package   {} {} {}{source}", p.name, p.version, p.architecture)?;
            }
        }
    }
    for (c, how) in used_by {
        let how = if *how == "link" { "links to it" } else { "ran with --with" };
        writeln!(w, "used-by   {c} ({how})")?;
    }
    writeln!(w)?;
    for e in &m.entries {
        let detail = match &e.kind {
            EntryKind::File { size, digest } => format!("{:>10}  {}", human_bytes(*size), digest.short()),
            EntryKind::Symlink { target } => format!("-> {}", String::from_utf8_lossy(target)),
            EntryKind::Hardlink { target } => format!("=> {target}"),
            EntryKind::Dir => String::new(),
        };
        writeln!(w, "{:<8} {:04o} {}  {detail}", e.kind.name(), e.mode, e.path)?;
    }
    for d in &m.deletions {
        writeln!(w, "deleted       {d}")?;
    }
    Ok(())
}
