//! Version 1 of the manifest format, read and converted: its entry points were a name and a
//! path, the first of them the default.

use serde::Deserialize;

use super::{
    CaptureStep, Entry, EntryPoint, EntrySource, Identity, IsolationRule, Link, Manifest, Origin, RegValue, RelPath,
};

/// A version-1 manifest, field for field in encoding order.
#[derive(Deserialize)]
pub(super) struct ManifestV1 {
    name: String,
    tag: String,
    created: u64,
    entries: Vec<Entry>,
    deletions: Vec<RelPath>,
    entry_points: Vec<EntryPointV1>,
    env: Vec<(String, String)>,
    isolation: Vec<IsolationRule>,
    registry: Vec<(String, RegValue)>,
    identity: Identity,
    links: Vec<Link>,
    origins: Vec<Origin>,
}

#[derive(Deserialize)]
struct EntryPointV1 {
    name: String,
    path: RelPath,
}

impl From<ManifestV1> for Manifest {
    /// The first entry point stays the default where version 1 meant it: a capsule with one
    /// program, or one a capture named (`capture elf`, `trace`, `--entry`). A `capture
    /// install` without `--entry` recorded every new program in a bin directory in
    /// alphabetical order, the first of them no choice at all: no default. A name given twice
    /// keeps its first entry point.
    fn from(m: ManifestV1) -> Manifest {
        let listed = m.entry_points.len() > 1 && m.origins.iter().any(|o| o.step == CaptureStep::Install);
        let mut entry_points: Vec<EntryPoint> = Vec::with_capacity(m.entry_points.len());
        for ep in m.entry_points {
            if !entry_points.iter().any(|e| e.name == ep.name) {
                entry_points.push(EntryPoint::new(ep.name, ep.path, EntrySource::Unknown));
            }
        }
        let default_entry = if listed { None } else { entry_points.first().map(|e| e.name.clone()) };
        Manifest {
            name: m.name,
            tag: m.tag,
            created: m.created,
            entries: m.entries,
            deletions: m.deletions,
            entry_points,
            default_entry,
            env: m.env,
            isolation: m.isolation,
            registry: m.registry,
            identity: m.identity,
            links: m.links,
            origins: m.origins,
            inventory: None,
            base: None,
        }
    }
}
