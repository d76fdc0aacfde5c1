//! A store that can be closed (and reopened) while handles to it are still alive, and that
//! notices when its engine fails.
//!
//! Background tasks (lookups, read repairs, the committer thread) hold the node's store for a
//! while after [`crate::Node::shutdown`]; redb refuses a second open of the same file while the
//! first is alive, so a restart on the same data dir in the same process would fail. Closing drops
//! the engine at once; later calls get a storage error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bavard_store::{
    DigestEntry, ExpireStats, LeafDigest, PaxosRow, ProviderRecord, PutOutcome, Record,
    RecordStore, StoreError, StoreStats,
};

/// A [`RecordStore`] whose backend [`Closable::close`] releases.
///
/// Every call's result is watched: a storage-engine error (an I/O error: a full or failing
/// disk) marks the store failed ([`Closable::failure`]) and wakes [`Closable::failed`], so the
/// node can stop taking writes and recover; redb fails every later call after an I/O error, so
/// recovering means reopening ([`Closable::replace`]).
pub(crate) struct Closable {
    inner: RwLock<Option<Arc<dyn RecordStore>>>,
    failed: AtomicBool,
    error: std::sync::Mutex<Option<String>>,
    wake: tokio::sync::Notify,
}

impl Closable {
    pub(crate) fn new(store: Arc<dyn RecordStore>) -> Self {
        Self {
            inner: RwLock::new(Some(store)),
            failed: AtomicBool::new(false),
            error: std::sync::Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Drops the backend; every later call fails with a storage error.
    pub(crate) fn close(&self) {
        self.inner.write().expect("store lock").take();
    }

    /// Installs a new backend (after [`Closable::close`]) and clears the failure.
    pub(crate) fn replace(&self, store: Arc<dyn RecordStore>) {
        *self.inner.write().expect("store lock") = Some(store);
        *self.error.lock().expect("error lock") = None;
        self.failed.store(false, Ordering::SeqCst);
    }

    /// The storage error that failed the store, if it failed.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.failed.load(Ordering::SeqCst) {
            self.error.lock().expect("error lock").clone()
        } else {
            None
        }
    }

    /// Resolves once the store has failed.
    pub(crate) async fn failed(&self) {
        loop {
            let notified = self.wake.notified();
            if self.failed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&dyn RecordStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.inner.read().expect("store lock");
        let result = match guard.as_deref() {
            Some(store) => f(store),
            None => {
                return Err(StoreError::storage(
                    "closed",
                    std::io::Error::other("the store is closed"),
                ));
            }
        };
        if let Err(e @ StoreError::Storage { .. }) = &result {
            *self.error.lock().expect("error lock") = Some(e.to_string());
            if !self.failed.swap(true, Ordering::SeqCst) {
                self.wake.notify_waiters();
            }
        }
        result
    }
}

impl RecordStore for Closable {
    fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<Record>, StoreError> {
        self.with(|s| s.get(key, now_ms))
    }
    fn put(&self, record: Record, now_ms: u64) -> Result<PutOutcome, StoreError> {
        self.with(|s| s.put(record, now_ms))
    }
    fn put_batch(&self, records: Vec<Record>, now_ms: u64) -> Result<Vec<PutOutcome>, StoreError> {
        self.with(|s| s.put_batch(records, now_ms))
    }
    fn remove(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.with(|s| s.remove(key))
    }
    fn remove_batch(&self, keys: &[Vec<u8>]) -> Result<usize, StoreError> {
        self.with(|s| s.remove_batch(keys))
    }
    fn remove_unchanged(
        &self,
        expected: &[(Vec<u8>, bavard_store::Version)],
    ) -> Result<usize, StoreError> {
        self.with(|s| s.remove_unchanged(expected))
    }
    fn leaf_digests(&self) -> Result<Vec<LeafDigest>, StoreError> {
        self.with(|s| s.leaf_digests())
    }
    fn leaf_entries(
        &self,
        leaf: u16,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<DigestEntry>, StoreError> {
        self.with(|s| s.leaf_entries(leaf, after, limit, now_ms))
    }
    fn add_provider(&self, record: ProviderRecord, now_ms: u64) -> Result<(), StoreError> {
        self.with(|s| s.add_provider(record, now_ms))
    }
    fn providers(&self, key: &[u8], now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        self.with(|s| s.providers(key, now_ms))
    }
    fn remove_provider(&self, key: &[u8], provider: &[u8]) -> Result<bool, StoreError> {
        self.with(|s| s.remove_provider(key, provider))
    }
    fn provided(&self, now_ms: u64) -> Result<Vec<ProviderRecord>, StoreError> {
        self.with(|s| s.provided(now_ms))
    }
    fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Record>, StoreError> {
        self.with(|s| s.scan(after, limit, now_ms))
    }
    fn expire(&self, now_ms: u64) -> Result<ExpireStats, StoreError> {
        self.with(|s| s.expire(now_ms))
    }
    fn len(&self) -> Result<usize, StoreError> {
        self.with(|s| s.len())
    }
    fn stats(&self) -> Result<StoreStats, StoreError> {
        self.with(|s| s.stats())
    }
    fn paxos_row(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|s| s.paxos_row(key))
    }
    fn paxos_write(
        &self,
        key: &[u8],
        row: Option<&[u8]>,
        record: Option<Record>,
        now_ms: u64,
    ) -> Result<Option<PutOutcome>, StoreError> {
        self.with(|s| s.paxos_write(key, row, record, now_ms))
    }
    fn paxos_rows(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<PaxosRow>, StoreError> {
        self.with(|s| s.paxos_rows(after, limit))
    }
}
