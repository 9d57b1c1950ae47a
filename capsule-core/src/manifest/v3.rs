//! Version 3 of the manifest format, read and converted: everything version 4 has but the
//! base, which such a capsule does not record ([`Manifest::base`] `None`).

use serde::Deserialize;

use super::{Entry, EntryPoint, Identity, Inventory, IsolationRule, Link, Manifest, Origin, RegValue, RelPath};

/// A version-3 manifest, field for field in encoding order.
#[derive(Deserialize)]
pub(super) struct ManifestV3 {
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
    inventory: Option<Inventory>,
}

impl From<ManifestV3> for Manifest {
    fn from(m: ManifestV3) -> Manifest {
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
            inventory: m.inventory,
            base: None,
        }
    }
}
