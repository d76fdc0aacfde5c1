//! The digest index: what anti-entropy compares, maintained on every write.
//!
//! Replicas find out what they disagree on without reading their records (Dynamo §4.7 keeps a
//! Merkle tree per key range; Cassandra and Riak keep hash trees on disk; Garage one tree per
//! partition). The key-hash space (SHA-256 of the key, the DHT's metric) is cut into
//! [`LEAF_COUNT`] leaves by its first [`LEAF_BITS`] bits. Each stored record contributes an
//! [`entry_hash`] of its key and version to its leaf, and a leaf's [`LeafDigest`] is the XOR of
//! its entries' hashes and their count. XOR makes the digest incremental (a write XORs the old
//! entry out and the new one in, in the same transaction as the record) and lets any set of
//! leaves be summarised by XORing theirs, so a caller builds the upper levels of its tree over
//! whichever leaves it shares with a peer (see `bavard-replica`).
//!
//! Every backend keeps, beside the records, an index row per record under
//! `SHA-256(key) ‖ key` (so one leaf's entries are one ordered range) holding its entry hash,
//! version and expiry, and the [`LEAF_COUNT`] leaf digests in memory. The expiry is kept so a
//! leaf listing can leave out records that have expired but are not purged yet; the entry hash
//! ignores it (a republish that only extends a record's lifetime changes no digest).
//!
//! Cost: one index row written per record written, 12 bytes × 65,536 of memory, and a listing
//! of one leaf reads only that leaf's index rows.

use sha2::{Digest as _, Sha256};

use crate::record::Record;
use crate::version::Version;

/// Bits of the key hash that name a leaf.
pub const LEAF_BITS: u32 = 16;

/// Leaves in the digest: `2^LEAF_BITS`.
pub const LEAF_COUNT: usize = 1 << LEAF_BITS;

/// SHA-256 of a key: its place in the DHT's keyspace, as libp2p computes it.
pub fn key_hash(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// The leaf of a key hash: its first [`LEAF_BITS`] bits.
pub fn leaf_of_hash(hash: &[u8; 32]) -> u16 {
    u16::from_be_bytes([hash[0], hash[1]])
}

/// The leaf of a key.
pub fn leaf_of(key: &[u8]) -> u16 {
    leaf_of_hash(&key_hash(key))
}

/// The 64-bit hash an entry contributes to its leaf: SHA-256 over the length-prefixed key and
/// the version, truncated. Length-prefixing keeps `("ab", writer "c")` apart from
/// `("a", writer "bc")`.
pub fn entry_hash(key: &[u8], version: &Version) -> u64 {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(version.hlc.to_be_bytes());
    h.update(&version.writer);
    let out = h.finalize();
    u64::from_be_bytes([
        out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7],
    ])
}

/// The digest of one leaf: the XOR of its entries' hashes, and how many entries it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeafDigest {
    /// XOR of [`entry_hash`] over the leaf's records.
    pub hash: u64,
    /// Records in the leaf.
    pub count: u32,
}

impl LeafDigest {
    /// Adds or removes an entry hash. Wrapping arithmetic keeps additions and removals a
    /// commutative group, so the changes of concurrent commits give the same digest in any order.
    fn toggle(&mut self, hash: u64, add: bool) {
        self.hash ^= hash;
        self.count = if add {
            self.count.wrapping_add(1)
        } else {
            self.count.wrapping_sub(1)
        };
    }
}

/// One record as the digest index sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DigestEntry {
    /// The record's key.
    pub key: Vec<u8>,
    /// Its version.
    pub version: Version,
}

/// The in-memory leaf digests of a store.
#[derive(Clone, Debug)]
pub(crate) struct Leaves(Vec<LeafDigest>);

impl Default for Leaves {
    fn default() -> Self {
        Self(vec![LeafDigest::default(); LEAF_COUNT])
    }
}

impl Leaves {
    pub(crate) fn add(&mut self, leaf: u16, hash: u64) {
        self.0[usize::from(leaf)].toggle(hash, true);
    }

    pub(crate) fn remove(&mut self, leaf: u16, hash: u64) {
        self.0[usize::from(leaf)].toggle(hash, false);
    }

    pub(crate) fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Add { leaf, hash } => self.add(*leaf, *hash),
                Change::Remove { leaf, hash } => self.remove(*leaf, *hash),
            }
        }
    }

    pub(crate) fn to_vec(&self) -> Vec<LeafDigest> {
        self.0.clone()
    }
}

/// A change a transaction makes to the leaf digests, applied to the in-memory copy once the
/// transaction committed (XOR and counts commute, so concurrent commits may apply in any order).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change {
    Add { leaf: u16, hash: u64 },
    Remove { leaf: u16, hash: u64 },
}

/// The index key of a record: `SHA-256(key) ‖ key`.
pub(crate) fn index_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + key.len());
    out.extend_from_slice(&key_hash(key));
    out.extend_from_slice(key);
    out
}

/// The first index key of a leaf.
pub(crate) fn leaf_start(leaf: u16) -> Vec<u8> {
    leaf.to_be_bytes().to_vec()
}

/// An index row: the entry hash, the version and the expiry of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexRow {
    pub(crate) hash: u64,
    pub(crate) expires_at_ms: Option<u64>,
    pub(crate) version: Version,
}

impl IndexRow {
    pub(crate) fn of(record: &Record) -> Self {
        Self {
            hash: entry_hash(&record.key, &record.version),
            expires_at_ms: record.expires_at_ms,
            version: record.version.clone(),
        }
    }

    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| now_ms >= e)
    }

    /// `u64 hash ‖ u64 expiry (0 = none) ‖ u64 hlc ‖ writer`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.version.writer.len());
        out.extend_from_slice(&self.hash.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.version.hlc.to_be_bytes());
        out.extend_from_slice(&self.version.writer);
        out
    }

    /// `None` for a row too short to be one.
    pub(crate) fn decode(row: &[u8]) -> Option<Self> {
        if row.len() < 24 {
            return None;
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&row[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let expiry = u64_at(8);
        Some(Self {
            hash: u64_at(0),
            expires_at_ms: (expiry != 0).then_some(expiry),
            version: Version {
                hlc: u64_at(16),
                writer: row[24..].to_vec(),
            },
        })
    }
}

/// The key of an index key (`None` when it is shorter than the hash).
pub(crate) fn key_of_index(index_key: &[u8]) -> Option<&[u8]> {
    index_key.get(32..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_hash_depends_on_key_and_version() {
        let v1 = Version {
            hlc: 1,
            writer: b"a".to_vec(),
        };
        let v2 = Version {
            hlc: 2,
            writer: b"a".to_vec(),
        };
        assert_ne!(entry_hash(b"k", &v1), entry_hash(b"k", &v2));
        assert_ne!(entry_hash(b"k", &v1), entry_hash(b"j", &v1));
        let a = Version {
            hlc: 0,
            writer: b"c".to_vec(),
        };
        let b = Version {
            hlc: 0,
            writer: b"bc".to_vec(),
        };
        assert_ne!(entry_hash(b"ab", &a), entry_hash(b"a", &b));
    }

    #[test]
    fn index_rows_round_trip_and_short_rows_are_refused() {
        let row = IndexRow {
            hash: 7,
            expires_at_ms: Some(9),
            version: Version {
                hlc: 3,
                writer: b"w".to_vec(),
            },
        };
        assert_eq!(IndexRow::decode(&row.encode()), Some(row.clone()));
        let never = IndexRow {
            expires_at_ms: None,
            ..row
        };
        assert_eq!(IndexRow::decode(&never.encode()), Some(never));
        assert_eq!(IndexRow::decode(&[0; 23]), None);
    }

    #[test]
    fn a_leaf_digest_is_order_free_and_removal_undoes_addition() {
        let mut a = Leaves::default();
        let mut b = Leaves::default();
        a.add(3, 10);
        a.add(3, 20);
        b.add(3, 20);
        b.add(3, 10);
        assert_eq!(a.to_vec()[3], b.to_vec()[3]);
        assert_eq!(a.to_vec()[3].count, 2);
        a.remove(3, 10);
        a.remove(3, 20);
        assert_eq!(a.to_vec()[3], LeafDigest::default());
    }

    #[test]
    fn the_leaf_is_the_first_sixteen_bits_of_the_dht_key_hash() {
        let h = key_hash(b"hello");
        assert_eq!(leaf_of(b"hello"), u16::from(h[0]) << 8 | u16::from(h[1]));
        assert_eq!(leaf_start(0x1234), vec![0x12, 0x34]);
    }
}
