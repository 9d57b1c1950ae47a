//! Version 2 of the manifest format, read and converted: everything version 3 has but the
//! package inventory, which such a capsule does not have ([`Manifest::inventory`] `None`).

use serde::Deserialize;

use super::{Entry, EntryPoint, Identity, IsolationRule, Link, Manifest, Origin, RegValue, RelPath};

/// A version-2 manifest, field for field in encoding order.
#[derive(Deserialize)]
pub(super) struct ManifestV2 {
    name: String,
    tag: String,
    created: u64,
    entries: Vec<Entry>,
    deletions: Vec<RelPath>,
    entry_points: Vec<EntryPoint>,
    default_entry: Option<String>,
    env: Vec<(String, String)>,
    isolation: Vec<IsolationRule>,
    registry: Vec<(String, RegValue)>,
    identity: Identity,
    links: Vec<Link>,
    origins: Vec<Origin>,
}

impl From<ManifestV2> for Manifest {
    fn from(m: ManifestV2) -> Manifest {
        Manifest {
            name: m.name,
            tag: m.tag,
            created: m.created,
            entries: m.entries,
            deletions: m.deletions,
            entry_points: m.entry_points,
            default_entry: m.default_entry,
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
