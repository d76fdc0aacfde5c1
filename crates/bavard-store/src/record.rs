//! Value records: a key, a value or a tombstone, an optional expiry, and a version.

use serde::{Deserialize, Serialize};

use crate::version::Version;

/// The payload of a record: data, a reference to a blob holding the data, or a tombstone
/// marking a logical delete.
///
/// A delete is a write like any other (it carries a newer [`Version`]) so that it replicates and
/// wins over older values under LWW. Tombstones are purged by [`crate::RecordStore::expire`] once
/// older than the grace period ([`crate::StoreConfig::tombstone_grace_ms`]); a replica that was
/// partitioned for longer than that may resurrect the deleted value (Cassandra's
/// `gc_grace_seconds` trade-off).
///
/// The derived order (data before tombstones, then bytes) only breaks ties between two different
/// records carrying the same version, which a correct writer never produces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// The value's bytes.
    Data(Vec<u8>),
    /// A value too large to keep inline: its bytes are a content-addressed blob (BLAKE3 hash
    /// of the bytes) that every replica of the key holds beside the record. The store only
    /// keeps the reference; the node keeps the blob (see `bavard-node`'s large values).
    Blob {
        /// The BLAKE3 hash of the value's bytes.
        hash: [u8; 32],
        /// The value's size in bytes.
        size: u64,
    },
    /// A logical delete.
    Tombstone {
        /// When the delete happened, unix ms (wall clock); starts the purge grace period.
        deleted_at_ms: u64,
    },
}

/// A value record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The key (arbitrary bytes; the DHT distance is computed on its SHA-256 elsewhere).
    pub key: Vec<u8>,
    /// The value, or a tombstone.
    pub value: Value,
    /// The original publisher's peer id, if known.
    pub publisher: Option<Vec<u8>>,
    /// Wall-clock expiry in unix ms; `None` never expires. A record is expired, hence absent,
    /// when `now_ms >= expires_at_ms`.
    pub expires_at_ms: Option<u64>,
    /// The LWW version.
    pub version: Version,
}

impl Record {
    /// A data record with no publisher and no expiry.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, version: Version) -> Self {
        Self {
            key: key.into(),
            value: Value::Data(value.into()),
            publisher: None,
            expires_at_ms: None,
            version,
        }
    }

    /// A tombstone for `key`, deleted at `deleted_at_ms`, with no expiry.
    pub fn tombstone(key: impl Into<Vec<u8>>, deleted_at_ms: u64, version: Version) -> Self {
        Self {
            key: key.into(),
            value: Value::Tombstone { deleted_at_ms },
            publisher: None,
            expires_at_ms: None,
            version,
        }
    }

    /// Sets the expiry (unix ms).
    #[must_use]
    pub fn with_expiry(mut self, expires_at_ms: u64) -> Self {
        self.expires_at_ms = Some(expires_at_ms);
        self
    }

    /// Sets the publisher.
    #[must_use]
    pub fn with_publisher(mut self, publisher: impl Into<Vec<u8>>) -> Self {
        self.publisher = Some(publisher.into());
        self
    }

    /// Whether the record has expired at `now_ms` (unix ms).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// Whether this record is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.value, Value::Tombstone { .. })
    }

    /// The inline data bytes, or `None` for a tombstone or a blob reference.
    pub fn data(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Data(bytes) => Some(bytes),
            Value::Tombstone { .. } | Value::Blob { .. } => None,
        }
    }

    /// The blob a large value lives in (its hash and size), or `None` for an inline value or
    /// a tombstone.
    pub fn blob(&self) -> Option<([u8; 32], u64)> {
        match self.value {
            Value::Blob { hash, size } => Some((hash, size)),
            Value::Data(_) | Value::Tombstone { .. } => None,
        }
    }

    /// A record whose value is the blob `hash` of `size` bytes, with no publisher and no
    /// expiry.
    pub fn blob_ref(key: impl Into<Vec<u8>>, hash: [u8; 32], size: u64, version: Version) -> Self {
        Self {
            key: key.into(),
            value: Value::Blob { hash, size },
            publisher: None,
            expires_at_ms: None,
            version,
        }
    }

    /// Whether this is a tombstone whose grace period `grace_ms` is over at `now_ms`.
    pub fn is_purgeable_tombstone(&self, now_ms: u64, grace_ms: u64) -> bool {
        match self.value {
            Value::Tombstone { deleted_at_ms } => now_ms >= deleted_at_ms.saturating_add(grace_ms),
            Value::Data(_) | Value::Blob { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::HlcTimestamp;

    fn version() -> Version {
        Version::new(HlcTimestamp::new(1, 0), b"w".to_vec())
    }

    #[test]
    fn record_is_expired_from_its_expiry_instant_on() {
        let r = Record::new(b"k".to_vec(), b"v".to_vec(), version()).with_expiry(100);
        assert!(!r.is_expired(99));
        assert!(r.is_expired(100));
        assert!(!Record::new(b"k".to_vec(), b"v".to_vec(), version()).is_expired(u64::MAX));
    }

    #[test]
    fn tombstone_is_purgeable_after_grace_and_data_never() {
        let t = Record::tombstone(b"k".to_vec(), 1_000, version());
        assert!(t.is_tombstone());
        assert_eq!(t.data(), None);
        assert!(!t.is_purgeable_tombstone(1_999, 1_000));
        assert!(t.is_purgeable_tombstone(2_000, 1_000));
        // A huge grace saturates instead of overflowing.
        assert!(!t.is_purgeable_tombstone(u64::MAX - 1, u64::MAX));
        let d = Record::new(b"k".to_vec(), b"v".to_vec(), version());
        assert!(!d.is_purgeable_tombstone(u64::MAX, 0));
        assert_eq!(d.data(), Some(&b"v"[..]));
        assert_eq!(d.blob(), None);
    }

    #[test]
    fn a_blob_reference_is_live_data_without_inline_bytes() {
        let b = Record::blob_ref(b"k".to_vec(), [7; 32], 1 << 20, version());
        assert!(!b.is_tombstone());
        assert_eq!(b.data(), None);
        assert_eq!(b.blob(), Some(([7; 32], 1 << 20)));
        assert!(!b.is_purgeable_tombstone(u64::MAX, 0));
    }
}
