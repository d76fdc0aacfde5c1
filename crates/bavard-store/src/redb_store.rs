//! [`RedbStore`]: the persistent backend, on redb.
//!
//! Three tables, all `&[u8] → &[u8]`:
//!
//! - `records`: key → record row ([`crate::codec`] format v1), so scans are in key order;
//! - `providers`: `u32 len ‖ key ‖ provider` → provider row, so one key's providers are one
//!   range;
//! - `provided`: key → empty, the keys the local peer provides (an index for republishing and
//!   for `max_provided_keys`);
//! - `digest`: `SHA-256(key) ‖ key` → entry hash, expiry and version, one row per record, written
//!   in the same transaction as the record (see [`crate::digest`]). The leaf digests are
//!   computed from it at open and then kept in memory. A file without the table (written by an
//!   older version), or whose index does not count as many rows as `records`, has its index
//!   rebuilt at open;
//! - `paxos`: key → consensus row (opaque to the store: `bavard_replica::paxos`'s acceptor
//!   state), written in the same transaction as the record a commit applies
//!   ([`RecordStore::paxos_write`]). Created empty in a file from an older version.
//!
//! Every write method is one redb write transaction committed with `Durability::Immediate`;
//! read methods use read transactions (MVCC snapshots that never block the writer).

use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use redb::{
    Database, Durability, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use crate::codec::{
    self, decode_provider, decode_record, encode_provider, encode_record, provider_key,
    provider_prefix,
};
use crate::config::StoreConfig;
use crate::digest::{
    Change, DigestEntry, IndexRow, LeafDigest, Leaves, index_key, key_of_index, leaf_of_hash,
    leaf_start,
};
use crate::error::StoreError;
use crate::merge::plan_batch;
use crate::provider::ProviderRecord;
use crate::record::Record;
use crate::store::{ExpireStats, PaxosRow, PutOutcome, RecordStore, StoreStats};
use crate::version::Version;

const RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("records");
const PROVIDERS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("providers");
const PROVIDED: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("provided");
const DIGEST: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("digest");
const PAXOS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("paxos");

/// A persistent [`RecordStore`] in one redb file.
///
/// # Durability
///
/// A write (`put`, `put_batch`, `remove`, `add_provider`, `remove_provider`, `expire`,
/// `paxos_write`) is one
/// redb transaction committed with [`Durability::Immediate`]: when it returns `Ok`, its data
/// and the new commit slot have been `fsync`ed, so the write survives a process kill or an OS
/// crash and is found by [`RedbStore::open`] afterwards. When it returns `Err`, or when the
/// process dies before it returns, the transaction is either fully applied or not at all (redb's
/// 1-phase commit with checksums: after a crash, a half-written commit fails its checksum and
/// the previous commit is used). Limits of the guarantee: a disk or controller that
/// acknowledges `fsync` before data reaches stable storage can lose acknowledged writes on
/// power loss, and redb documents that an attacker who controls both the data written and the
/// timing of crashes could defeat the non-cryptographic checksum (2-phase commit closes that, at
/// the cost of a second fsync per commit; not enabled here).
///
/// Only one process (and one `RedbStore`) may open a file at a time: redb locks it.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    config: StoreConfig,
    leaves: Mutex<Leaves>,
}

fn storage<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::storage(operation, e.into())
}

fn corrupt(table: &'static str, key: &[u8]) -> impl FnOnce(codec::DecodeError) -> StoreError {
    let key = key.to_vec();
    move |source| StoreError::Corrupt { table, key, source }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file (not its directory) if missing.
    ///
    /// After an unclean shutdown redb repairs the file on open (it walks the whole database
    /// to verify checksums, so this takes time proportional to its size).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the file cannot be created or opened (missing directory,
    /// permissions, already open by another process or store, not a redb file).
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(storage("open"))?;
        let txn = db.begin_write().map_err(storage("open"))?;
        for table in [RECORDS, PROVIDERS, PROVIDED, DIGEST, PAXOS] {
            txn.open_table(table).map_err(storage("open"))?;
        }
        txn.commit().map_err(storage("open"))?;
        let leaves = load_digest(&db)?;
        Ok(Self {
            db,
            config,
            leaves: Mutex::new(leaves),
        })
    }

    fn apply(&self, changes: &[Change]) {
        if !changes.is_empty() {
            self.leaves
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(changes);
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn begin_write(&self, operation: &'static str) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(storage(operation))?;
        // Immediate is redb's default, restated because the durability promise depends on it.
        txn.set_durability(if self.config.fsync {
            Durability::Immediate
        } else {
            Durability::None
        });
        Ok(txn)
    }
}

/// Rebuilds the digest index when it does not match the records (a file from an older version,
/// or an index that lost rows), then computes the leaf digests from it.
fn load_digest(db: &Database) -> Result<Leaves, StoreError> {
    let txn = db.begin_read().map_err(storage("open"))?;
    let records = len_of(&txn.open_table(RECORDS).map_err(storage("open"))?, "open")?;
    let indexed = len_of(&txn.open_table(DIGEST).map_err(storage("open"))?, "open")?;
    drop(txn);
    if records != indexed {
        let txn = db.begin_write().map_err(storage("open"))?;
        txn.delete_table(DIGEST).map_err(storage("open"))?;
        {
            let records = txn.open_table(RECORDS).map_err(storage("open"))?;
            let mut digest = txn.open_table(DIGEST).map_err(storage("open"))?;
            for entry in records.iter().map_err(storage("open"))? {
                let (k, v) = entry.map_err(storage("open"))?;
                // A corrupt row is left out of the index; reads report it where it is used.
                if let Ok(record) = decode_record(k.value(), v.value()) {
                    digest
                        .insert(
                            index_key(k.value()).as_slice(),
                            IndexRow::of(&record).encode().as_slice(),
                        )
                        .map_err(storage("open"))?;
                }
            }
        }
        txn.commit().map_err(storage("open"))?;
    }
    let txn = db.begin_read().map_err(storage("open"))?;
    let digest = txn.open_table(DIGEST).map_err(storage("open"))?;
    let mut leaves = Leaves::default();
    for entry in digest.iter().map_err(storage("open"))? {
        let (k, v) = entry.map_err(storage("open"))?;
        if let (Some(hash), Some(row)) = (k.value().get(..32), IndexRow::decode(v.value())) {
            leaves.add(leaf_of_hash(hash.try_into().expect("32 bytes")), row.hash);
        }
    }
    Ok(leaves)
}

/// Writes the index row of `record`, replacing the previous one; records the digest changes.
fn index_put(
    digest: &mut Table<'_, &'static [u8], &'static [u8]>,
    record: &Record,
    changes: &mut Vec<Change>,
    operation: &'static str,
) -> Result<(), StoreError> {
    let ik = index_key(&record.key);
    let leaf = leaf_of_hash(ik[..32].try_into().expect("32-byte hash"));
    let row = IndexRow::of(record);
    changes.push(Change::Add {
        leaf,
        hash: row.hash,
    });
    let old = digest
        .insert(ik.as_slice(), row.encode().as_slice())
        .map_err(storage(operation))?;
    if let Some(old) = old.and_then(|o| IndexRow::decode(o.value())) {
        changes.push(Change::Remove {
            leaf,
            hash: old.hash,
        });
    }
    Ok(())
}

/// Removes the index row of `key`; records the digest change.
fn index_remove(
    digest: &mut Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    changes: &mut Vec<Change>,
    operation: &'static str,
) -> Result<(), StoreError> {
    let ik = index_key(key);
    let old = digest.remove(ik.as_slice()).map_err(storage(operation))?;
    if let Some(old) = old.and_then(|o| IndexRow::decode(o.value())) {
        changes.push(Change::Remove {
            leaf: leaf_of_hash(ik[..32].try_into().expect("32-byte hash")),
            hash: old.hash,
        });
    }
    Ok(())
}

fn get_record(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Record>, StoreError> {
    match table.get(key).map_err(storage("get"))? {
        None => Ok(None),
        Some(row) => decode_record(key, row.value())
            .map(Some)
            .map_err(corrupt("records", key)),
    }
}

fn get_provider(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    table_key: &[u8],
) -> Result<Option<ProviderRecord>, StoreError> {
    match table.get(table_key).map_err(storage("providers"))? {
        None => Ok(None),
        Some(row) => decode_provider(table_key, row.value())
            .map(Some)
            .map_err(corrupt("providers", table_key)),
    }
}

/// All of `key`'s provider rows, decoded.
fn key_providers(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Vec<ProviderRecord>, StoreError> {
    let prefix = provider_prefix(key);
    let mut out = Vec::new();
    for entry in table
        .range::<&[u8]>(prefix.as_slice()..)
        .map_err(storage("providers"))?
    {
        let (k, v) = entry.map_err(storage("providers"))?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        out.push(decode_provider(k.value(), v.value()).map_err(corrupt("providers", k.value()))?);
    }
    Ok(out)
}

fn remove_provider_row(
    providers: &mut Table<'_, &'static [u8], &'static [u8]>,
    provided: &mut Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    provider: &[u8],
    local: &[u8],
) -> Result<bool, StoreError> {
    let removed = providers
        .remove(provider_key(key, provider).as_slice())
        .map_err(storage("remove_provider"))?
        .is_some();
    if removed && provider == local {
        provided.remove(key).map_err(storage("remove_provider"))?;
    }
    Ok(removed)
}

fn len_of(
    table: &impl ReadableTableMetadata,
    operation: &'static str,
) -> Result<usize, StoreError> {
    let len = table.len().map_err(storage(operation))?;
    Ok(usize::try_from(len).unwrap_or(usize::MAX))
}

impl RecordStore for RedbStore {
    fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("get"))?;
        let table = txn.open_table(RECORDS).map_err(storage("get"))?;
        Ok(get_record(&table, key)?.filter(|r| !r.is_expired(now_ms)))
    }

    fn put(&self, record: Record, now_ms: u64) -> Result<PutOutcome, StoreError> {
        let mut outcomes = self.put_batch(vec![record], now_ms)?;
        Ok(outcomes.pop().unwrap_or(PutOutcome::Unchanged))
    }

    fn put_batch(&self, records: Vec<Record>, now_ms: u64) -> Result<Vec<PutOutcome>, StoreError> {
        // Check sizes before taking the (exclusive) write transaction.
        for record in &records {
            self.config.limits.check_record(record)?;
        }
        let txn = self.begin_write("put")?;
        let mut changes = Vec::new();
        let outcomes = {
            let mut table = txn.open_table(RECORDS).map_err(storage("put"))?;
            let mut digest = txn.open_table(DIGEST).map_err(storage("put"))?;
            let len = len_of(&table, "put")?;
            // On error the transaction is dropped, which aborts it: nothing is written.
            let plan = plan_batch(records, now_ms, &self.config.limits, len, |key| {
                get_record(&table, key)
            })?;
            if plan.writes.is_empty() {
                drop((table, digest));
                txn.abort().map_err(storage("put"))?;
                return Ok(plan.outcomes);
            }
            for (key, record) in &plan.writes {
                table
                    .insert(key.as_slice(), encode_record(record).as_slice())
                    .map_err(storage("put"))?;
                index_put(&mut digest, record, &mut changes, "put")?;
            }
            plan.outcomes
        };
        txn.commit().map_err(storage("put"))?;
        self.apply(&changes);
        Ok(outcomes)
    }

    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.remove_batch(&[key.to_vec()])? == 1)
    }

    fn remove_batch(&self, keys: &[Vec<u8>]) -> Result<usize, StoreError> {
        let txn = self.begin_write("remove")?;
        let mut changes = Vec::new();
        let mut removed = 0;
        {
            let mut table = txn.open_table(RECORDS).map_err(storage("remove"))?;
            let mut digest = txn.open_table(DIGEST).map_err(storage("remove"))?;
            for key in keys {
                index_remove(&mut digest, key, &mut changes, "remove")?;
                if table
                    .remove(key.as_slice())
                    .map_err(storage("remove"))?
                    .is_some()
                {
                    removed += 1;
                }
            }
        }
        txn.commit().map_err(storage("remove"))?;
        self.apply(&changes);
        Ok(removed)
    }

    fn remove_unchanged(&self, expected: &[(Vec<u8>, Version)]) -> Result<usize, StoreError> {
        let txn = self.begin_write("remove_unchanged")?;
        let mut changes = Vec::new();
        let mut removed = 0;
        {
            let mut table = txn
                .open_table(RECORDS)
                .map_err(storage("remove_unchanged"))?;
            let mut digest = txn
                .open_table(DIGEST)
                .map_err(storage("remove_unchanged"))?;
            for (key, version) in expected {
                let unchanged = match get_record(&table, key) {
                    Ok(record) => record.is_some_and(|r| r.version == *version),
                    // A row that does not decode is not known to be unchanged: it stays.
                    Err(StoreError::Corrupt { .. }) => false,
                    Err(e) => return Err(e),
                };
                if unchanged {
                    index_remove(&mut digest, key, &mut changes, "remove_unchanged")?;
                    table
                        .remove(key.as_slice())
                        .map_err(storage("remove_unchanged"))?;
                    removed += 1;
                }
            }
        }
        if removed == 0 {
            txn.abort().map_err(storage("remove_unchanged"))?;
            return Ok(0);
        }
        txn.commit().map_err(storage("remove_unchanged"))?;
        self.apply(&changes);
        Ok(removed)
    }

    fn paxos_row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("paxos_row"))?;
        let table = txn.open_table(PAXOS).map_err(storage("paxos_row"))?;
        Ok(table
            .get(key)
            .map_err(storage("paxos_row"))?
            .map(|row| row.value().to_vec()))
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
        if row.is_none() && record.is_none() {
            return Ok(None);
        }
        let txn = self.begin_write("paxos_write")?;
        let mut changes = Vec::new();
        let outcome = {
            let mut table = txn.open_table(RECORDS).map_err(storage("paxos_write"))?;
            let mut digest = txn.open_table(DIGEST).map_err(storage("paxos_write"))?;
            let mut paxos = txn.open_table(PAXOS).map_err(storage("paxos_write"))?;
            let outcome = match record {
                None => None,
                Some(record) => {
                    let len = len_of(&table, "paxos_write")?;
                    // On error the transaction is dropped, which aborts it: nothing is written,
                    // the row included.
                    let plan = plan_batch(vec![record], now_ms, limits, len, |key| {
                        get_record(&table, key)
                    })?;
                    for (key, record) in &plan.writes {
                        table
                            .insert(key.as_slice(), encode_record(record).as_slice())
                            .map_err(storage("paxos_write"))?;
                        index_put(&mut digest, record, &mut changes, "paxos_write")?;
                    }
                    plan.outcomes.into_iter().next()
                }
            };
            if let Some(row) = row {
                paxos.insert(key, row).map_err(storage("paxos_write"))?;
            }
            outcome
        };
        txn.commit().map_err(storage("paxos_write"))?;
        self.apply(&changes);
        Ok(outcome)
    }

    fn paxos_rows(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<PaxosRow>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("paxos_rows"))?;
        let table = txn.open_table(PAXOS).map_err(storage("paxos_rows"))?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for entry in table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(storage("paxos_rows"))?
        {
            let (k, v) = entry.map_err(storage("paxos_rows"))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn add_provider(&self, record: ProviderRecord, now_ms: u64) -> Result<(), StoreError> {
        let limits = &self.config.limits;
        limits.check_provider(&record)?;
        let local = self.config.local_peer.as_slice();
        let is_local = record.provider == local;
        let txn = self.begin_write("add_provider")?;
        {
            let mut providers = txn.open_table(PROVIDERS).map_err(storage("add_provider"))?;
            let mut provided = txn.open_table(PROVIDED).map_err(storage("add_provider"))?;
            let table_key = provider_key(&record.key, &record.provider);
            let known = providers
                .get(table_key.as_slice())
                .map_err(storage("add_provider"))?
                .is_some();
            if !known {
                let existing = key_providers(&providers, &record.key)?;
                let (expired, live): (Vec<_>, Vec<_>) =
                    existing.into_iter().partition(|p| p.is_expired(now_ms));
                if live.len() >= limits.max_providers_per_key {
                    return Err(StoreError::TooManyProviders {
                        key: record.key,
                        max: limits.max_providers_per_key,
                    });
                }
                let total = len_of(&providers, "add_provider")? - expired.len();
                if total >= limits.max_provider_records {
                    return Err(StoreError::TooManyProviderRecords {
                        max: limits.max_provider_records,
                    });
                }
                if is_local && len_of(&provided, "add_provider")? >= limits.max_provided_keys {
                    return Err(StoreError::TooManyProvidedKeys {
                        max: limits.max_provided_keys,
                    });
                }
                for p in expired {
                    remove_provider_row(&mut providers, &mut provided, &p.key, &p.provider, local)?;
                }
            }
            providers
                .insert(table_key.as_slice(), encode_provider(&record).as_slice())
                .map_err(storage("add_provider"))?;
            if is_local {
                provided
                    .insert(record.key.as_slice(), &[][..])
                    .map_err(storage("add_provider"))?;
            }
        }
        txn.commit().map_err(storage("add_provider"))?;
        Ok(())
    }

    fn providers(&self, key: &[u8], now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("providers"))?;
        let table = txn.open_table(PROVIDERS).map_err(storage("providers"))?;
        let mut providers = key_providers(&table, key)?;
        providers.retain(|p| !p.is_expired(now_ms));
        Ok(providers)
    }

    fn remove_provider(&self, key: &[u8], provider: &[u8]) -> Result<bool, StoreError> {
        let txn = self.begin_write("remove_provider")?;
        let removed = {
            let mut providers = txn
                .open_table(PROVIDERS)
                .map_err(storage("remove_provider"))?;
            let mut provided = txn
                .open_table(PROVIDED)
                .map_err(storage("remove_provider"))?;
            remove_provider_row(
                &mut providers,
                &mut provided,
                key,
                provider,
                &self.config.local_peer,
            )?
        };
        txn.commit().map_err(storage("remove_provider"))?;
        Ok(removed)
    }

    fn provided(&self, now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("provided"))?;
        let provided = txn.open_table(PROVIDED).map_err(storage("provided"))?;
        let providers = txn.open_table(PROVIDERS).map_err(storage("provided"))?;
        let mut out = Vec::new();
        for entry in provided.iter().map_err(storage("provided"))? {
            let (key, _) = entry.map_err(storage("provided"))?;
            let table_key = provider_key(key.value(), &self.config.local_peer);
            if let Some(p) = get_provider(&providers, &table_key)?
                && !p.is_expired(now_ms)
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("scan"))?;
        let table = txn.open_table(RECORDS).map_err(storage("scan"))?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for entry in table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(storage("scan"))?
        {
            let (k, v) = entry.map_err(storage("scan"))?;
            let record =
                decode_record(k.value(), v.value()).map_err(corrupt("records", k.value()))?;
            if !record.is_expired(now_ms) {
                out.push(record);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn expire(&self, now_ms: u64) -> Result<ExpireStats, StoreError> {
        let grace = self.config.tombstone_grace_ms;
        let local = self.config.local_peer.as_slice();
        let mut stats = ExpireStats::default();
        let txn = self.begin_write("expire")?;
        let mut changes = Vec::new();
        {
            let mut records = txn.open_table(RECORDS).map_err(storage("expire"))?;
            let mut digest = txn.open_table(DIGEST).map_err(storage("expire"))?;
            let mut doomed = Vec::new();
            for entry in records.iter().map_err(storage("expire"))? {
                let (k, v) = entry.map_err(storage("expire"))?;
                match decode_record(k.value(), v.value()) {
                    Err(_) => stats.corrupt_rows_skipped += 1,
                    Ok(r) if r.is_expired(now_ms) => {
                        stats.records_expired += 1;
                        doomed.push(r.key);
                    }
                    Ok(r) if r.is_purgeable_tombstone(now_ms, grace) => {
                        stats.tombstones_purged += 1;
                        doomed.push(r.key);
                    }
                    Ok(_) => {}
                }
            }
            for key in doomed {
                records.remove(key.as_slice()).map_err(storage("expire"))?;
                index_remove(&mut digest, &key, &mut changes, "expire")?;
            }

            let mut providers = txn.open_table(PROVIDERS).map_err(storage("expire"))?;
            let mut provided = txn.open_table(PROVIDED).map_err(storage("expire"))?;
            let mut doomed = Vec::new();
            for entry in providers.iter().map_err(storage("expire"))? {
                let (k, v) = entry.map_err(storage("expire"))?;
                match decode_provider(k.value(), v.value()) {
                    Err(_) => stats.corrupt_rows_skipped += 1,
                    Ok(p) if p.is_expired(now_ms) => doomed.push(p),
                    Ok(_) => {}
                }
            }
            for p in doomed {
                if remove_provider_row(&mut providers, &mut provided, &p.key, &p.provider, local)? {
                    stats.providers_expired += 1;
                }
            }
        }
        if stats.records_expired + stats.tombstones_purged + stats.providers_expired == 0 {
            txn.abort().map_err(storage("expire"))?;
        } else {
            txn.commit().map_err(storage("expire"))?;
            self.apply(&changes);
        }
        Ok(stats)
    }

    fn len(&self) -> Result<usize, StoreError> {
        let txn = self.db.begin_read().map_err(storage("len"))?;
        let table = txn.open_table(RECORDS).map_err(storage("len"))?;
        len_of(&table, "len")
    }

    fn leaf_digests(&self) -> Result<Vec<LeafDigest>, StoreError> {
        Ok(self
            .leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .to_vec())
    }

    fn leaf_entries(
        &self,
        leaf: u16,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<DigestEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(storage("leaf_entries"))?;
        let digest = txn.open_table(DIGEST).map_err(storage("leaf_entries"))?;
        let first = leaf_start(leaf);
        let after = after.map(index_key).filter(|ik| ik[..2] >= first[..]);
        let start = match &after {
            Some(ik) => Bound::Excluded(ik.as_slice()),
            None => Bound::Included(first.as_slice()),
        };
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for entry in digest
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(storage("leaf_entries"))?
        {
            let (k, v) = entry.map_err(storage("leaf_entries"))?;
            let ik = k.value();
            if ik.get(..2) != Some(first.as_slice()) {
                break;
            }
            // A corrupt index row is left out (as if its record were absent) rather than stopping
            // every listing of the leaf: anti-entropy then repairs the record from a peer.
            let (Some(key), Some(row)) = (key_of_index(ik), IndexRow::decode(v.value())) else {
                continue;
            };
            if !row.is_expired(now_ms) {
                out.push(DigestEntry {
                    key: key.to_vec(),
                    version: row.version,
                });
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read().map_err(storage("stats"))?;
        let records = txn.open_table(RECORDS).map_err(storage("stats"))?;
        let providers = txn.open_table(PROVIDERS).map_err(storage("stats"))?;
        let provided = txn.open_table(PROVIDED).map_err(storage("stats"))?;
        let mut stats = StoreStats {
            records: len_of(&records, "stats")?,
            provider_records: len_of(&providers, "stats")?,
            provided_keys: len_of(&provided, "stats")?,
            ..StoreStats::default()
        };
        for entry in records.iter().map_err(storage("stats"))? {
            let (k, v) = entry.map_err(storage("stats"))?;
            let record =
                decode_record(k.value(), v.value()).map_err(corrupt("records", k.value()))?;
            match &record.value {
                crate::Value::Data(bytes) => stats.value_bytes += bytes.len(),
                // The blob's bytes are the blob store's, not this store's.
                crate::Value::Blob { .. } => {}
                crate::Value::Tombstone { .. } => stats.tombstones += 1,
            }
        }
        Ok(stats)
    }
}
