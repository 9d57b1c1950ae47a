//! The registry's projection into a run ([`crate::registry`]): environment variables, and
//! configuration files edited key by key. An edited file is written into the sandbox tree
//! (from the capsule's pristine copy, or the host's file) on every run, so the program reads the
//! edited content while the host's file and the shared cache stay as they are; files edited by
//! an earlier run and no longer are removed again (`sandboxes/NAME/projected` lists them).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::sandbox::Sandbox;
use super::{RunError, materialize};
use crate::manifest::{EntryKind, Manifest, RelPath};
use crate::registry;
use crate::store::Store;

/// What the registry adds to a run.
#[derive(Debug, Default)]
pub struct Projected {
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Files written into the tree (the view must route them there).
    pub files: Vec<RelPath>,
    /// Identity defaults from `*/identity/…` keys (unchecked: `identity::effective` checks).
    pub identity: crate::manifest::Identity,
}

/// The identity the registry's `identity/…` values describe; a value that does not parse is
/// an error naming its key.
fn identity_of(values: &BTreeMap<String, String>) -> Result<crate::manifest::Identity, RunError> {
    let bad = |key: &str, v: &str, why| RunError::Registry { key: format!("identity/{key}"), value: v.to_owned(), why };
    let mut id = crate::manifest::Identity::default();
    for (k, v) in values {
        match k.as_str() {
            "hostname" => id.hostname = Some(v.clone()),
            "domain" => id.domain = Some(v.clone()),
            "machine-id" => id.machine_id = Some(v.clone()),
            "ip" => id.ipv4 = Some(v.parse().map_err(|_| bad(k, v, "an IPv4 address"))?),
            "mac" => id.mac = Some(super::identity::parse_mac(v).map_err(|_| bad(k, v, "a MAC address"))?),
            _ => {}
        }
    }
    Ok(id)
}

/// Project the effective registry of `m`, with the registries of the shared capsules it links
/// to (`shared`, in order) layered over its own, in `sandbox` (see the module docs).
pub fn project(store: &Store, sandbox: &Sandbox, m: &Manifest, shared: &[&Manifest]) -> Result<Projected, RunError> {
    // The capsule's layer (`capsule config NAME`), whichever sandbox this run uses.
    let layer_path = registry::sandbox_file(store.root(), &m.name);
    let layer = registry::load_layer(&layer_path).map_err(|e| RunError::Io {
        action: "failed to read the registry",
        path: layer_path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    let shared = shared
        .iter()
        .map(|s| {
            registry::shared_layer(store.root(), s).map_err(|e| RunError::Io {
                action: "failed to read the registry of shared capsule",
                path: registry::sandbox_file(store.root(), &s.name),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let p = registry::project(&registry::merged(m, &shared, &layer));
    let list = sandbox.dir().join("projected");
    let before: Vec<String> = fs::read_to_string(&list).unwrap_or_default().lines().map(str::to_owned).collect();
    let mut files = Vec::new();
    for (abs, sets) in &p.edits {
        let Ok(rel) = RelPath::from_host(abs.as_bytes()) else { continue };
        let dest = sandbox.tree().join(Path::new(&String::from_utf8_lossy(rel.as_bytes()).into_owned()));
        let (source, mode) = match m.get(&rel) {
            Some(e @ crate::manifest::Entry { kind: EntryKind::File { digest, .. }, .. }) => {
                (materialize::ensure_cache(store, digest, e)?, materialize::file_mode(e.mode))
            }
            _ => {
                let host = Path::new(abs);
                let mode =
                    fs::metadata(host).map(|md| materialize::file_mode(md.permissions().mode())).unwrap_or(0o644);
                (host.to_owned(), mode)
            }
        };
        let base = fs::read_to_string(&source).unwrap_or_default();
        let edited = registry::edit(&base, sets);
        materialize::mirror_dirs(sandbox.tree(), rel.parent().as_ref().map_or(&b""[..], RelPath::as_bytes))?;
        materialize::write_atomic(&dest, edited.as_bytes(), Some(mode))?;
        files.push(rel);
    }
    // Edits withdrawn since the last run: the file goes back to the capsule's or the host's.
    for old in before.iter().filter(|o| !p.edits.contains_key(*o)) {
        let _ = fs::remove_file(sandbox.tree().join(old.trim_start_matches('/')));
    }
    let now: String = p.edits.keys().map(|k| format!("{k}\n")).collect();
    if now.is_empty() {
        let _ = fs::remove_file(&list);
    } else {
        fs::write(&list, now).map_err(RunError::io("failed to write", &list))?;
    }
    Ok(Projected { env: p.env, files, identity: identity_of(&p.identity)? })
}
