//! Conversions between the `/bavard/kv/1` wire structs and the store's domain types.
//!
//! Every malformed field is a [`WireError`]; nothing here panics on hostile input.

use bavard_proto::store as pb;
use bavard_store::{Record, Value, Version};

/// Why a record from the network was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The record carried no version.
    #[error("record without a version")]
    MissingVersion,
    /// The key was empty.
    #[error("record with an empty key")]
    EmptyKey,
    /// A tombstone carried a value.
    #[error("tombstone with a value")]
    TombstoneWithValue,
}

/// A domain version on the wire.
pub fn version_to_pb(v: &Version) -> pb::Version {
    pb::Version {
        hlc: v.hlc,
        writer: v.writer.clone(),
    }
}

/// A wire version as a domain version.
pub fn version_from_pb(v: pb::Version) -> Version {
    Version {
        hlc: v.hlc,
        writer: v.writer,
    }
}

/// A domain record on the wire.
pub fn record_to_pb(r: &Record) -> pb::Record {
    let (value, tombstone, deleted_at_ms) = match &r.value {
        Value::Data(v) => (v.clone(), false, 0),
        Value::Tombstone { deleted_at_ms } => (Vec::new(), true, *deleted_at_ms),
    };
    pb::Record {
        key: r.key.clone(),
        value,
        tombstone,
        deleted_at_ms,
        version: Some(version_to_pb(&r.version)),
        publisher: r.publisher.clone().unwrap_or_default(),
        expires_at_ms: r.expires_at_ms.unwrap_or(0),
    }
}

/// A wire record as a domain record; every malformed field is a [`WireError`].
pub fn record_from_pb(r: pb::Record) -> Result<Record, WireError> {
    {
        if r.key.is_empty() {
            return Err(WireError::EmptyKey);
        }
        let version = version_from_pb(r.version.ok_or(WireError::MissingVersion)?);
        let value = if r.tombstone {
            if !r.value.is_empty() {
                return Err(WireError::TombstoneWithValue);
            }
            Value::Tombstone {
                deleted_at_ms: r.deleted_at_ms,
            }
        } else {
            Value::Data(r.value)
        };
        Ok(Record {
            key: r.key,
            value,
            publisher: (!r.publisher.is_empty()).then_some(r.publisher),
            expires_at_ms: (r.expires_at_ms != 0).then_some(r.expires_at_ms),
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_store::HlcTimestamp;

    #[test]
    fn records_and_tombstones_roundtrip() {
        let v = Version::new(HlcTimestamp::new(1000, 3), b"w".to_vec());
        let data = Record::new(b"k".to_vec(), b"v".to_vec(), v.clone()).with_expiry(5000);
        let tomb = Record::tombstone(b"k".to_vec(), 77, v);
        for r in [data, tomb] {
            assert_eq!(record_from_pb(record_to_pb(&r)).unwrap(), r);
        }
    }

    #[test]
    fn malformed_records_are_typed_errors() {
        let mut r = record_to_pb(&Record::new(
            b"k".to_vec(),
            b"v".to_vec(),
            Version::default(),
        ));
        r.version = None;
        assert!(matches!(
            record_from_pb(r.clone()),
            Err(WireError::MissingVersion)
        ));
        r.version = Some(pb::Version::default());
        r.tombstone = true;
        assert!(matches!(
            record_from_pb(r.clone()),
            Err(WireError::TombstoneWithValue)
        ));
        r.key.clear();
        assert!(matches!(record_from_pb(r), Err(WireError::EmptyKey)));
    }
}
