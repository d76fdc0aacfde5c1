//! [`MemoryStore`]: the in-memory backend (a `BTreeMap` behind a `Mutex`).
//!
//! For tests, simulations and nodes that need no persistence. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::config::StoreConfig;
use crate::digest::{
    DigestEntry, IndexRow, LeafDigest, Leaves, index_key, key_of_index, leaf_of_hash, leaf_start,
};
use crate::error::StoreError;
use crate::merge::plan_batch;
use crate::provider::ProviderRecord;
use crate::record::Record;
use crate::store::{ExpireStats, PaxosRow, PutOutcome, RecordStore, StoreStats};
use crate::version::Version;

/// An in-memory [`RecordStore`]. Same semantics and limits as [`crate::RedbStore`], no
/// durability.
#[derive(Debug)]
pub struct MemoryStore {
    config: StoreConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<Vec<u8>, Record>,
    /// key → provider → record.
    providers: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, ProviderRecord>>,
    provider_count: usize,
    /// Keys with a provider record whose provider is the local peer.
    provided: BTreeSet<Vec<u8>>,
    /// The digest index: `SHA-256(key) ‖ key` → entry hash, version, expiry.
    index: BTreeMap<Vec<u8>, IndexRow>,
    leaves: Leaves,
    /// Consensus rows (see [`RecordStore::paxos_write`]).
    paxos: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation validates first and cannot panic half-way, so the map is consistent
        // even if another thread panicked while holding the lock.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Writes `record` and its index row, replacing the key's previous ones.
    fn insert_record(&mut self, key: Vec<u8>, record: Record) {
        let ik = index_key(&key);
        let leaf = leaf_of_hash(ik[..32].try_into().expect("32-byte hash"));
        let row = IndexRow::of(&record);
        self.leaves.add(leaf, row.hash);
        if let Some(old) = self.index.insert(ik, row) {
            self.leaves.remove(leaf, old.hash);
        }
        self.records.insert(key, record);
    }

    /// Removes the record under `key` and its index row; whether it existed.
    fn remove_record(&mut self, key: &[u8]) -> bool {
        let ik = index_key(key);
        if let Some(old) = self.index.remove(&ik) {
            let leaf = leaf_of_hash(ik[..32].try_into().expect("32-byte hash"));
            self.leaves.remove(leaf, old.hash);
        }
        self.records.remove(key).is_some()
    }

    fn remove_provider(&mut self, key: &[u8], provider: &[u8], local: &[u8]) -> bool {
        let Some(per_key) = self.providers.get_mut(key) else {
            return false;
        };
        let removed = per_key.remove(provider).is_some();
        if per_key.is_empty() {
            self.providers.remove(key);
        }
        if removed {
            self.provider_count -= 1;
            if provider == local {
                self.provided.remove(key);
            }
        }
        removed
    }
}

impl RecordStore for MemoryStore {
    fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Record>, StoreError> {
        Ok(self
            .lock()
            .records
            .get(key)
            .filter(|r| !r.is_expired(now_ms))
            .cloned())
    }

    fn put(&self, record: Record, now_ms: u64) -> Result<PutOutcome, StoreError> {
        let mut outcomes = self.put_batch(vec![record], now_ms)?;
        Ok(outcomes.pop().unwrap_or(PutOutcome::Unchanged))
    }

    fn put_batch(&self, records: Vec<Record>, now_ms: u64) -> Result<Vec<PutOutcome>, StoreError> {
        let mut inner = self.lock();
        let len = inner.records.len();
        let plan = plan_batch(records, now_ms, &self.config.limits, len, |key| {
            Ok(inner.records.get(key).cloned())
        })?;
        for (key, record) in plan.writes {
            inner.insert_record(key, record);
        }
        Ok(plan.outcomes)
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.lock().remove_record(key))
    }

    fn remove_batch(&self, keys: &[Vec<u8>]) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        Ok(keys.iter().filter(|k| inner.remove_record(k)).count())
    }

    fn remove_unchanged(&self, expected: &[(Vec<u8>, Version)]) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        Ok(expected
            .iter()
            .filter(|(key, version)| {
                inner
                    .records
                    .get(key)
                    .is_some_and(|r| r.version == *version)
                    && inner.remove_record(key)
            })
            .count())
    }

    fn paxos_row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().paxos.get(key).cloned())
    }

    fn paxos_write(
        &self,
        key: &[u8],
        row: Option<&[u8]>,
        record: Option<Record>,
        now_ms: u64,
    ) -> Result<Option<PutOutcome>, StoreError> {
        let limits = &self.config.limits;
        if let Some(row) = row {
            limits.check_paxos_row(key, row)?;
        }
        if let Some(record) = &record {
            limits.check_record(record)?;
        }
        let mut inner = self.lock();
        // Plan first: a refused record writes nothing, the row included.
        let outcome = match record {
            None => None,
            Some(record) => {
                let len = inner.records.len();
                let plan = plan_batch(vec![record], now_ms, limits, len, |key| {
                    Ok(inner.records.get(key).cloned())
                })?;
                for (key, record) in plan.writes {
                    inner.insert_record(key, record);
                }
                plan.outcomes.into_iter().next()
            }
        };
        if let Some(row) = row {
            inner.paxos.insert(key.to_vec(), row.to_vec());
        }
        Ok(outcome)
    }

    fn paxos_rows(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<PaxosRow>, StoreError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .lock()
            .paxos
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn add_provider(&self, record: ProviderRecord, now_ms: u64) -> Result<(), StoreError> {
        let limits = &self.config.limits;
        limits.check_provider(&record)?;
        let local = self.config.local_peer.as_slice();
        let mut inner = self.lock();
        let per_key = inner.providers.get(&record.key);
        let known = per_key.is_some_and(|p| p.contains_key(&record.provider));
        if !known {
            let expired: Vec<Vec<u8>> = per_key
                .into_iter()
                .flat_map(|p| p.values())
                .filter(|p| p.is_expired(now_ms))
                .map(|p| p.provider.clone())
                .collect();
            let live = per_key.map_or(0, BTreeMap::len) - expired.len();
            if live >= limits.max_providers_per_key {
                return Err(StoreError::TooManyProviders {
                    key: record.key,
                    max: limits.max_providers_per_key,
                });
            }
            if inner.provider_count - expired.len() >= limits.max_provider_records {
                return Err(StoreError::TooManyProviderRecords {
                    max: limits.max_provider_records,
                });
            }
            if record.provider == local && inner.provided.len() >= limits.max_provided_keys {
                return Err(StoreError::TooManyProvidedKeys {
                    max: limits.max_provided_keys,
                });
            }
            for provider in expired {
                inner.remove_provider(&record.key, &provider, local);
            }
            inner.provider_count += 1;
        }
        if record.provider == local {
            inner.provided.insert(record.key.clone());
        }
        inner
            .providers
            .entry(record.key.clone())
            .or_default()
            .insert(record.provider.clone(), record);
        Ok(())
    }

    fn providers(&self, key: &[u8], now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        Ok(self
            .lock()
            .providers
            .get(key)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|p| !p.is_expired(now_ms))
            .cloned()
            .collect())
    }

    fn remove_provider(&self, key: &[u8], provider: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .remove_provider(key, provider, &self.config.local_peer))
    }

    fn provided(&self, now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        let inner = self.lock();
        let local = &self.config.local_peer;
        Ok(inner
            .provided
            .iter()
            .filter_map(|key| inner.providers.get(key)?.get(local))
            .filter(|p| !p.is_expired(now_ms))
            .cloned()
            .collect())
    }

    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let inner = self.lock();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(inner
            .records
            .range::<[u8], _>((start, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| !r.is_expired(now_ms))
            .take(limit)
            .cloned()
            .collect())
    }

    fn expire(&self, now_ms: u64) -> Result<ExpireStats, StoreError> {
        let grace = self.config.tombstone_grace_ms;
        let local = self.config.local_peer.as_slice();
        let mut stats = ExpireStats::default();
        let mut inner = self.lock();
        let mut doomed = Vec::new();
        for r in inner.records.values() {
            if r.is_expired(now_ms) {
                stats.records_expired += 1;
                doomed.push(r.key.clone());
            } else if r.is_purgeable_tombstone(now_ms, grace) {
                stats.tombstones_purged += 1;
                doomed.push(r.key.clone());
            }
        }
        for key in doomed {
            inner.remove_record(&key);
        }
        let expired: Vec<(Vec<u8>, Vec<u8>)> = inner
            .providers
            .values()
            .flat_map(BTreeMap::values)
            .filter(|p| p.is_expired(now_ms))
            .map(|p| (p.key.clone(), p.provider.clone()))
            .collect();
        for (key, provider) in expired {
            inner.remove_provider(&key, &provider, local);
            stats.providers_expired += 1;
        }
        Ok(stats)
    }

    fn len(&self) -> Result<usize, StoreError> {
        Ok(self.lock().records.len())
    }

    fn leaf_digests(&self) -> Result<Vec<LeafDigest>, StoreError> {
        Ok(self.lock().leaves.to_vec())
    }

    fn leaf_entries(
        &self,
        leaf: u16,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<DigestEntry>, StoreError> {
        let inner = self.lock();
        let start = match after.map(index_key) {
            Some(ik) if ik[..2] >= leaf.to_be_bytes()[..] => Bound::Excluded(ik),
            _ => Bound::Included(leaf_start(leaf)),
        };
        Ok(inner
            .index
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k[..2] == leaf.to_be_bytes())
            .filter(|(_, row)| !row.is_expired(now_ms))
            .take(limit)
            .map(|(k, row)| DigestEntry {
                key: key_of_index(k).unwrap_or_default().to_vec(),
                version: row.version.clone(),
            })
            .collect())
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.lock();
        let mut stats = StoreStats {
            records: inner.records.len(),
            provider_records: inner.provider_count,
            provided_keys: inner.provided.len(),
            ..StoreStats::default()
        };
        for record in inner.records.values() {
            match record.data() {
                Some(bytes) => stats.value_bytes += bytes.len(),
                None if record.is_tombstone() => stats.tombstones += 1,
                // A blob reference: the bytes are the blob store's.
                None => {}
            }
        }
        Ok(stats)
    }
}
