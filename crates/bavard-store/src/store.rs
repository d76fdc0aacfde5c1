//! The [`RecordStore`] trait: what a node needs from record storage.
//!
//! The trait is fallible and takes `&self` everywhere, so a persistent backend (with its own
//! transactions and I/O errors) fits as well as an in-memory map; it is object safe, so a node
//! can hold an `Arc<dyn RecordStore>`. This is the shape rust-libp2p users asked for in
//! libp2p issue 4817 (its `RecordStore` is infallible, `&mut self` and in-memory in practice).
//!
//! Time is a parameter: every method whose answer depends on the time takes `now_ms`, the
//! caller's wall clock in unix milliseconds, and no method reads a clock.

use serde::{Deserialize, Serialize};

use crate::digest::{DigestEntry, LeafDigest};
use crate::error::StoreError;
use crate::provider::ProviderRecord;
use crate::record::Record;
use crate::version::Version;

/// What a [`RecordStore::put`] did.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PutOutcome {
    /// The record was stored: the key was absent (or expired), or the record's version is newer
    /// than the stored one.
    Stored,
    /// The store holds a newer version; nothing was written. The caller may send `current` back
    /// to the writer (read repair / entry correction).
    Stale {
        /// The stored version.
        current: Version,
    },
    /// The store already holds this version with this content; at most its expiry was extended
    /// to the put's later one (a republish refreshes the lifetime).
    Unchanged,
    /// The record had already expired at `now_ms`; nothing was written.
    Expired,
}

/// What a [`RecordStore::expire`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireStats {
    /// Expired value records (data or tombstones) removed.
    pub records_expired: usize,
    /// Tombstones removed because their grace period was over.
    pub tombstones_purged: usize,
    /// Expired provider records removed.
    pub providers_expired: usize,
    /// Rows that could not be decoded and were left in place (see [`StoreError::Corrupt`]).
    pub corrupt_rows_skipped: usize,
}

/// A snapshot of a store's contents, counting every stored row, expired or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Value records, tombstones included.
    pub records: usize,
    /// Tombstones among them.
    pub tombstones: usize,
    /// Total bytes of data values.
    pub value_bytes: usize,
    /// Provider records.
    pub provider_records: usize,
    /// Keys provided by the local peer.
    pub provided_keys: usize,
}

/// A consensus row as [`RecordStore::paxos_rows`] lists it: the key, then the row's bytes.
pub type PaxosRow = (Vec<u8>, Vec<u8>);

/// Record storage: value records under LWW, provider records, expiry.
///
/// All methods are atomic: on `Err`, nothing was written. Writes are durable when they return
/// `Ok` to the extent the backend promises (see [`crate::RedbStore`]; [`crate::MemoryStore`]
/// is not durable at all).
pub trait RecordStore: Send + Sync {
    /// The record under `key`, tombstones included (so that deletes replicate); `None` when
    /// absent or expired at `now_ms`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::Storage`].
    fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Record>, StoreError>;

    /// Stores `record` if it wins over the stored one under last-writer-wins (see the
    /// [crate docs](crate#last-writer-wins)).
    ///
    /// # Errors
    ///
    /// A size limit ([`StoreError::KeyTooLarge`], [`StoreError::ValueTooLarge`],
    /// [`StoreError::IdTooLarge`]), [`StoreError::TooManyRecords`] for a new key in a full
    /// store, [`StoreError::Corrupt`] if the stored row is unreadable, or
    /// [`StoreError::Storage`].
    fn put(&self, record: Record, now_ms: u64) -> Result<PutOutcome, StoreError>;

    /// Puts every record, in order, in one atomic, durable commit (group commit: one fsync for
    /// the batch). Returns one outcome per record. A later record in the batch sees the earlier
    /// ones.
    ///
    /// # Errors
    ///
    /// As [`RecordStore::put`]; one failing record fails the whole batch and nothing is written.
    fn put_batch(&self, records: Vec<Record>, now_ms: u64) -> Result<Vec<PutOutcome>, StoreError>;

    /// Physically removes the record under `key` without decoding it (so it also clears a
    /// corrupt row). Returns whether a row existed. A logical delete is a tombstone put instead.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn remove(&self, key: &[u8]) -> Result<bool, StoreError>;

    /// Physically removes the records under `keys` in one commit (one fsync), as
    /// [`RecordStore::remove`] does for one. Returns how many rows existed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`]; nothing was removed.
    fn remove_batch(&self, keys: &[Vec<u8>]) -> Result<usize, StoreError>;

    /// Physically removes, in one commit, each key of `expected` whose stored record still has
    /// exactly that version: a copy a node no longer needs once other nodes hold it. A key
    /// whose record changed since (a newer write or a tombstone arrived), is gone, or whose row
    /// does not decode is left alone. Returns how many records were removed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`]; nothing was removed.
    fn remove_unchanged(&self, expected: &[(Vec<u8>, Version)]) -> Result<usize, StoreError>;

    /// Adds or refreshes the provider record for `(record.key, record.provider)`.
    ///
    /// A re-announcement by a known provider always replaces its record, even when the key is
    /// full; a new provider is refused once the key has `max_providers_per_key` unexpired ones
    /// (expired ones are dropped first).
    ///
    /// # Errors
    ///
    /// A size limit ([`StoreError::KeyTooLarge`], [`StoreError::IdTooLarge`],
    /// [`StoreError::TooManyAddrs`], [`StoreError::AddrTooLarge`]),
    /// [`StoreError::TooManyProviders`], [`StoreError::TooManyProviderRecords`],
    /// [`StoreError::TooManyProvidedKeys`] (when the provider is the local peer),
    /// [`StoreError::Corrupt`] or [`StoreError::Storage`].
    fn add_provider(&self, record: ProviderRecord, now_ms: u64) -> Result<(), StoreError>;

    /// The unexpired providers of `key`, ordered by provider id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::Storage`].
    fn providers(&self, key: &[u8], now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError>;

    /// Removes the provider record of `provider` for `key`. Returns whether it existed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn remove_provider(&self, key: &[u8], provider: &[u8]) -> Result<bool, StoreError>;

    /// The unexpired provider records whose provider is the local peer
    /// ([`crate::StoreConfig::local_peer`]), ordered by key: what the node must republish.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::Storage`].
    fn provided(&self, now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError>;

    /// Up to `limit` unexpired records (tombstones included) with keys strictly after `after`
    /// (from the first key when `None`), in key order. Page through the store by passing the
    /// last key returned; an empty page is the end.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] (carrying the row's key, so a caller can skip past it) or
    /// [`StoreError::Storage`].
    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Record>, StoreError>;

    /// Removes the records and provider records expired at `now_ms`, and the tombstones whose
    /// grace period is over, in one commit. Corrupt rows are skipped and counted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn expire(&self, now_ms: u64) -> Result<ExpireStats, StoreError>;

    /// Number of stored value records, tombstones and not yet expired-away rows included
    /// (what counts against `max_records`). O(1).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn len(&self) -> Result<usize, StoreError>;

    /// Whether [`RecordStore::len`] is zero.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// The digest of every leaf of the key-hash space ([`crate::digest`]), indexed by leaf:
    /// [`crate::LEAF_COUNT`] entries covering every stored record (expired rows not yet purged
    /// included). O(1) in the store's size: the digests are kept up to date by every write.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn leaf_digests(&self) -> Result<Vec<LeafDigest>, StoreError>;

    /// Up to `limit` entries of `leaf` (key and version, no value), unexpired at `now_ms`, in
    /// index order (key hash, then key), starting strictly after the entry of key `after`
    /// (from the leaf's first entry when `None`). Reads only the leaf's index rows. Page through
    /// a leaf by passing the last key returned; a page shorter than `limit` is the end.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] (an index row that cannot be decoded) or [`StoreError::Storage`].
    fn leaf_entries(
        &self,
        leaf: u16,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<DigestEntry>, StoreError>;

    /// The consensus row of `key`: the per-key state of a compare-and-set protocol
    /// (`bavard_replica::paxos`'s acceptor), opaque bytes to the store. `None` when none was
    /// written.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn paxos_row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes the consensus row of `key` (when `row` is `Some`) and puts `record` under
    /// last-writer-wins (when `Some`; its key need not be `key`'s, but is in practice), in
    /// **one** atomic, durable commit (one fsync, as [`RecordStore::put_batch`]): a replica that
    /// crashes never keeps a record without the consensus state that applied it, or the
    /// reverse. Returns the record's outcome (`None` without a record).
    ///
    /// # Errors
    ///
    /// [`StoreError::KeyTooLarge`] or [`StoreError::PaxosRowTooLarge`] for the row, what
    /// [`RecordStore::put`] refuses for the record, [`StoreError::Storage`]. Nothing was
    /// written.
    fn paxos_write(
        &self,
        key: &[u8],
        row: Option<&[u8]>,
        record: Option<Record>,
        now_ms: u64,
    ) -> Result<Option<PutOutcome>, StoreError>;

    /// Up to `limit` consensus rows `(key, row)` with keys strictly after `after` (from the
    /// first when `None`), in key order; an empty page is the end. A node reads them at start to
    /// put its clock above every ballot it promised.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`].
    fn paxos_rows(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<PaxosRow>, StoreError>;

    /// Counts of stored rows. May scan the whole store (O(n)).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::Storage`].
    fn stats(&self) -> Result<StoreStats, StoreError>;
}
