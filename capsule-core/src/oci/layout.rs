//! How a capsule looks in an OCI registry: the media types, the OCI image manifest that
//! carries it, [`Sha256`] digests, and the [`BlobMap`] layer that ties each blob's OCI digest
//! to its store digest.
//!
//! ```text
//! OCI image manifest (application/vnd.oci.image.manifest.v1+json, schemaVersion 2)
//!   artifactType  application/vnd.capsule.v1
//!   config        application/vnd.capsule.manifest.v1   the encoded capsule manifest, as stored
//!   layers[0]     application/vnd.capsule.blobmap.v1    the blob map (below)
//!   layers[1..]   application/vnd.capsule.blob.v1+zstd  each store blob's zstd frame, as stored
//! ```
//! A blob's frame is pushed byte for byte as the store keeps it, so an unchanged file has the
//! same OCI digest in every version and every push, and the registry already has it. The blob
//! map is what makes pull trust nothing: each entry says which blake3 digest (the store's name,
//! of the uncompressed content) a sha256 layer must decompress to, so pull checks both.
//! Descriptors carry no annotations: distribution caps a manifest body at 4 MiB, and a bare
//! descriptor (about 150 bytes) keeps room for some 25 000 blobs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::codec::{self, CodecError};
use crate::digest::Digest;
use crate::manifest::MAX_ENTRIES;

/// The OCI image manifest media type (the artifact manifest type of OCI 1.1's drafts was
/// withdrawn, and distribution 2.8 refuses it).
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.capsule.v1";
/// The config blob: the capsule manifest's encoded bytes.
pub const MEDIA_CONFIG: &str = "application/vnd.capsule.manifest.v1";
/// The first layer: the [`BlobMap`].
pub const MEDIA_BLOB_MAP: &str = "application/vnd.capsule.blobmap.v1";
/// Every other layer: one store blob's zstd frame.
pub const MEDIA_BLOB: &str = "application/vnd.capsule.blob.v1+zstd";
/// Annotation on the OCI manifest: the capsule's `name:tag`.
pub const ANNOTATION_CAPSULE: &str = "dev.capsule.capsule";
/// Annotation on the OCI manifest: the capsule's manifest digest (blake3).
pub const ANNOTATION_DIGEST: &str = "dev.capsule.digest";
/// The largest OCI manifest body read or written (distribution's own limit).
pub const MAX_OCI_MANIFEST: u64 = 4 << 20;
/// Bytes per blob-map entry in its encoding.
const MAP_ENTRY_BYTES: u64 = 32 + 32 + 8 + 8;
/// The largest blob map accepted: one entry per possible manifest blob.
pub const MAX_BLOB_MAP: u64 = MAX_ENTRIES as u64 * MAP_ENTRY_BYTES + 64;

const MAP_MAGIC: &[u8; 8] = b"CAPSBMAP";
const MAP_VERSION: u16 = 1;

/// A sha256 digest: the OCI name of a blob. Displayed as `sha256:` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(sha2::Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Sha256 {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let hex = s.strip_prefix("sha256:").ok_or(())?;
        if hex.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| ())?;
        Ok(Sha256(out))
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// An OCI image manifest (only the fields capsule writes and reads; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciManifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_OCI_MANIFEST`].
    #[serde(default)]
    pub media_type: Option<String>,
    /// [`ARTIFACT_TYPE`].
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The capsule manifest.
    pub config: Descriptor,
    /// The blob map, then the blobs.
    pub layers: Vec<Descriptor>,
    /// Capsule name and digest, for people browsing the registry.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// One blob of a capsule as pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// The store's digest: blake3 of the uncompressed content.
    pub blake3: Digest,
    /// The OCI digest: sha256 of the zstd frame.
    pub sha256: Sha256,
    /// Size of the frame (the OCI blob).
    pub stored: u64,
    /// Size of the uncompressed content.
    pub size: u64,
}

/// The blob map layer: every blob of the capsule, sorted by blake3, no duplicates. Encoded in
/// a codec envelope (`CAPSBMAP`, version 1), like every other capsule record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMap {
    /// The entries.
    pub entries: Vec<MapEntry>,
}

impl BlobMap {
    /// Encode.
    pub fn encode(&self) -> Vec<u8> {
        codec::envelope(MAP_MAGIC, MAP_VERSION, self)
    }

    /// Decode untrusted bytes; entries must be sorted by blake3 and unique. The error is the
    /// reason, for the caller to wrap with the reference and digest.
    pub fn decode(bytes: &[u8]) -> Result<BlobMap, String> {
        let (_, m): (u16, BlobMap) = codec::open_envelope("blob map", MAP_MAGIC, MAP_VERSION, bytes, MAX_BLOB_MAP)
            .map_err(|e: CodecError| e.to_string())?;
        if m.entries.windows(2).any(|w| w[0].blake3 >= w[1].blake3) {
            return Err("entries unsorted or duplicated".into());
        }
        Ok(m)
    }

    /// The entry for store digest `d`.
    pub fn get(&self, d: &Digest) -> Option<&MapEntry> {
        self.entries.binary_search_by(|e| e.blake3.cmp(d)).ok().and_then(|i| self.entries.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_round_trip_and_map_order() {
        let s = Sha256::of(b"abc");
        assert_eq!(s.to_string(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(s.to_string().parse::<Sha256>(), Ok(s));
        assert!("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD".parse::<Sha256>().is_err());
        let e = |b: &[u8]| MapEntry { blake3: Digest::of(b), sha256: s, stored: 1, size: 1 };
        let mut entries = vec![e(b"a"), e(b"b")];
        entries.sort_by_key(|e| e.blake3);
        let map = BlobMap { entries: entries.clone() };
        assert_eq!(BlobMap::decode(&map.encode()).unwrap(), map);
        assert!(map.get(&Digest::of(b"a")).is_some());
        entries.reverse();
        assert!(BlobMap::decode(&BlobMap { entries }.encode()).is_err());
    }
}
