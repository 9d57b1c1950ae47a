//! The one place bytes become values: bincode 1.3 with fixed-width integers, a size limit on
//! every decode, and trailing bytes rejected.
//!
//! Every structure the store keeps (manifests, snapshots) is wrapped in an [`envelope`]: an
//! 8-byte magic naming the kind and a little-endian `u16` format version, so a file of the
//! wrong kind or from a newer capsule fails with a clear error instead of a garbage decode.
//! bincode 1.3 is used deliberately (the "3" release on crates.io is an empty placeholder).

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input is larger than the caller allows for this kind of record.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The kind of record.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The magic does not name the expected kind.
    #[error("{what}: bad magic (not a capsule {what}, or damaged)")]
    BadMagic {
        /// The kind of record expected.
        what: &'static str,
    },
    /// The record was written by a newer capsule.
    #[error("{what}: format version {found} is not supported (this capsule reads up to {supported})")]
    Version {
        /// The kind of record.
        what: &'static str,
        /// The version in the record.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// bincode rejected the bytes (truncated, corrupt, or an allocation over the limit).
    #[error("{what}: malformed encoding")]
    Malformed {
        /// The kind of record.
        what: &'static str,
        /// bincode's reason.
        #[source]
        source: bincode::Error,
    },
}

fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().with_limit(limit).reject_trailing_bytes()
}

/// Encode `value` with the store's bincode options. Encoding an in-memory value cannot exceed
/// the limit in practice; the limit is `u64::MAX` here and enforced on decode.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs into a Vec cannot fail: every type we encode has
    // only derive(Serialize) fields with no custom error paths.
    match options(u64::MAX).serialize(value) {
        Ok(v) => v,
        Err(e) => unreachable!("bincode serialisation of a plain struct failed: {e}"),
    }
}

/// Decode `bytes` as `T`, refusing input over `limit` bytes and any allocation bincode would
/// make beyond it.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8], limit: u64) -> Result<T, CodecError> {
    let size = bytes.len() as u64;
    if size > limit {
        return Err(CodecError::TooLarge { what, size, limit });
    }
    options(limit).deserialize(bytes).map_err(|source| CodecError::Malformed { what, source })
}

/// Encode `value` behind `magic` and `version`.
pub fn envelope<T: Serialize>(magic: &[u8; 8], version: u16, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&encode(value));
    out
}

/// Check `magic` and a version no newer than `supported`, then decode the body. Returns the
/// version found, for callers that migrate old formats.
pub fn open_envelope<T: DeserializeOwned>(
    what: &'static str,
    magic: &[u8; 8],
    supported: u16,
    bytes: &[u8],
    limit: u64,
) -> Result<(u16, T), CodecError> {
    let Some((head, body)) = bytes.split_at_checked(10) else {
        return Err(CodecError::BadMagic { what });
    };
    if &head[..8] != magic {
        return Err(CodecError::BadMagic { what });
    }
    let found = u16::from_le_bytes([head[8], head[9]]);
    if found == 0 || found > supported {
        return Err(CodecError::Version { what, found, supported });
    }
    Ok((found, decode(what, body, limit)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let v: Vec<String> = vec!["a".into(), "bc".into()];
        let bytes = envelope(b"TESTTEST", 1, &v);
        let (ver, back): (u16, Vec<String>) = open_envelope("t", b"TESTTEST", 1, &bytes, 1 << 20).unwrap();
        assert_eq!((ver, back), (1, v));
        assert!(matches!(
            open_envelope::<Vec<String>>("t", b"OTHERXXX", 1, &bytes, 1 << 20),
            Err(CodecError::BadMagic { .. })
        ));
        assert!(matches!(
            open_envelope::<Vec<String>>("t", b"TESTTEST", 0, &bytes, 1 << 20),
            Err(CodecError::Version { .. })
        ));
        assert!(matches!(
            open_envelope::<Vec<String>>("t", b"TESTTEST", 1, &bytes, 4),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            open_envelope::<Vec<String>>("t", b"TESTTEST", 1, &bytes[..bytes.len() - 1], 1 << 20),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> whose length prefix claims 2^60 elements must fail, not allocate.
        let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert!(decode::<Vec<u8>>("t", &bytes, 1 << 20).is_err());
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        assert!(decode::<u32>("t", &bytes, 1 << 20).is_err());
    }
}
