//! Large values (issue 15): a KV value above `[store] inline_value_limit` (16 KiB by default)
//! is stored as a content-addressed blob (see [`crate::blobs`]) held by each of the key's
//! replicas, and the record carries the blob's hash and size ([`Value::Blob`], a typed field
//! of the record and of the `/bavard/kv/1` wire format, `Record.blob`) instead of the bytes.
//!
//! # Why blobs
//!
//! A record travels in one replica-protocol message (bounded by `[limits] max_message_size`)
//! and sits in the record store's B-tree, so records must stay small. The blob machinery
//! already moves large content with verified streaming, from several providers, resumably,
//! under a quota, and stores it durably: a large value reuses it, and the record stays a few
//! dozen bytes, so replication, anti-entropy and hints handle it as any other record.
//!
//! # The invariant: no record without its blob
//!
//! A node stores a record that references a blob only once it holds the blob **complete,
//! durable and pinned** ([`Replica::commit_records`]). Every path that moves records goes
//! through that check:
//!
//! - **Write.** The coordinator spools the body into its blob store (streamed, never whole in
//!   memory; pinned; announced as a provider), then writes the reference through the normal
//!   replication path. A replica that lacks the blob fetches it (the sender first, through a
//!   local provider record naming it, then the DHT's providers), checks its size against the
//!   record, pins it, and only then commits and answers. So W acknowledgements mean W nodes
//!   hold the blob durably (a complete blob is fsynced by the blob store).
//! - **Hinted handoff.** A fallback node fetches and pins the blob before it keeps the hint,
//!   and holds it until the hint is delivered; the owner fetches it from the hint holder.
//! - **Read repair and anti-entropy.** Both store through the same check; a record whose blob
//!   cannot be fetched is not stored (the read repair is lost, anti-entropy retries next round)
//!   and counted in `bavard_kv_blob_fetch_failures`.
//!
//! Replicas also give the store requests of large records more time (one second per MiB
//! beyond the request timeout, [`transfer_allowance`]): the answer waits for the fetch.
//!
//! # Collection
//!
//! A blob is pinned while a record on this node references it. [`BlobRefs`] counts, per blob,
//! the keys whose stored record references it (built by a scan at start, kept up to date by
//! every commit through [`Replica::commit_records`]), the hints that do, and the stores in
//! progress. When an overwrite or a delete (a tombstone) supersedes the last reference, the
//! blob is unpinned, and the blob store's quota may evict it. One blob can back several keys
//! (same content): it stays pinned until the last one goes. Pins and unpins are serialized so a
//! store in progress never loses its pin to a concurrent release.
//!
//! Known gaps: a record that expires (TTL) or is replaced through a compare-and-set round,
//! and a hint that expires undelivered, leave their blob pinned (an expired or CAS-replaced
//! record's blob is released by the next plain write or delete of the same key, before a
//! restart). The counts of hints are not rebuilt at
//! start: after a restart, a hint's blob may be unpinned while the hint waits (it stays on disk
//! unless the quota evicts it; the owner can also fetch it from the other holders). A blob
//! pinned by hand (`PUT /v1/blobs/{hash}/pin`) that a KV value also uses is unpinned with the
//! value's last record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bavard_blobs::BlobHash;
use bavard_store::{PutOutcome, Record, RecordStore, StoreError};
use libp2p::PeerId;

use super::commit::Priority;
use super::service::Replica;
use crate::util::unix_ms;

/// The slowest transfer a large value is given time for, in bytes per second.
const MIN_TRANSFER_BYTES_PER_SEC: u64 = 1 << 20;

/// The time a transfer of `size` bytes is given beyond a request's timeout.
pub(crate) fn transfer_allowance(size: u64) -> Duration {
    Duration::from_secs(size / MIN_TRANSFER_BYTES_PER_SEC)
}

/// The largest blob the records of a replica-protocol request reference (0 when none does, or
/// when it is not a store).
pub(crate) fn largest_blob(request: Option<&bavard_proto::store::request::Kind>) -> u64 {
    match request {
        Some(bavard_proto::store::request::Kind::Store(store)) => store
            .records
            .iter()
            .filter_map(|r| r.blob.as_ref().map(|b| b.size))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// How long a provider record naming the sender of a large record is kept (the fetch it
/// serves is much shorter).
const SENDER_HINT_MS: u64 = 3_600_000;

/// Which blobs the records and hints of this node reference (see the [module docs](self)).
#[derive(Default)]
pub(crate) struct BlobRefs {
    state: Mutex<RefState>,
    /// Serializes pins and unpins (see [`Replica::release_blobs`]).
    ops: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct RefState {
    /// The blob each stored record references, by key.
    by_key: HashMap<Vec<u8>, [u8; 32]>,
    /// Keys referencing each blob.
    keys: HashMap<[u8; 32], usize>,
    /// Stores in progress that pinned each blob.
    pending: HashMap<[u8; 32], usize>,
    /// Hints referencing each blob.
    hints: HashMap<[u8; 32], usize>,
}

fn inc(map: &mut HashMap<[u8; 32], usize>, hash: [u8; 32]) {
    *map.entry(hash).or_default() += 1;
}

fn dec(map: &mut HashMap<[u8; 32], usize>, hash: [u8; 32]) {
    if let Some(n) = map.get_mut(&hash) {
        *n -= 1;
        if *n == 0 {
            map.remove(&hash);
        }
    }
}

impl RefState {
    fn referenced(&self, hash: &[u8; 32]) -> bool {
        self.keys.contains_key(hash)
            || self.pending.contains_key(hash)
            || self.hints.contains_key(hash)
    }

    /// Records that `key` now references `blob` (or none); returns the blob it referenced
    /// before, if that is another one.
    fn set(&mut self, key: &[u8], blob: Option<[u8; 32]>) -> Option<[u8; 32]> {
        let old = match blob {
            Some(hash) => self.by_key.insert(key.to_vec(), hash),
            None => self.by_key.remove(key),
        };
        if old == blob {
            return None;
        }
        if let Some(hash) = blob {
            inc(&mut self.keys, hash);
        }
        if let Some(old) = old {
            dec(&mut self.keys, old);
        }
        old
    }
}

impl BlobRefs {
    /// The references of the records in `store` (a scan, at start).
    pub(crate) fn scan(store: &dyn RecordStore) -> Result<Self, StoreError> {
        let mut state = RefState::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = match store.scan(after.as_deref(), 1024, unix_ms()) {
                Ok(page) => page,
                // A corrupt row is skipped (anti-entropy rewrites it).
                Err(StoreError::Corrupt { key, .. }) => {
                    after = Some(key);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for record in &page {
                if let Some((hash, _)) = record.blob() {
                    state.set(&record.key, Some(hash));
                }
            }
        }
        Ok(Self {
            state: Mutex::new(state),
            ops: tokio::sync::Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RefState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Replica {
    /// Commits `records` (their clocks already checked) through the group committer, each
    /// only once this node holds the blob it references (fetched from `from`, the sender, or
    /// the DHT's providers). One result per record, in order: a record whose blob could not
    /// be held is an error and is not stored. Blobs superseded by a stored record are
    /// released (see the [module docs](self)).
    pub(crate) async fn commit_records(
        &self,
        records: Vec<Record>,
        from: Option<PeerId>,
        priority: Priority,
    ) -> Vec<Result<PutOutcome, String>> {
        let held = self.hold_all(&records, from).await;
        let mut results: Vec<Option<Result<PutOutcome, String>>> = Vec::new();
        let mut commit = Vec::new();
        let mut blobs = Vec::new();
        for (record, held) in records.into_iter().zip(held) {
            match held {
                Ok(blob) => {
                    results.push(None);
                    blobs.push((record.key.clone(), blob));
                    commit.push(record);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let outcomes = if commit.is_empty() {
            Vec::new()
        } else {
            self.storage.committer.put_many(commit, priority).await
        };
        let mut release = Vec::new();
        {
            let mut state = self.refs.lock();
            for ((key, blob), outcome) in blobs.iter().zip(&outcomes) {
                if let Ok(PutOutcome::Stored) = outcome
                    && let Some(old) = state.set(key, *blob)
                {
                    release.push(old);
                }
                if let Some(hash) = blob {
                    dec(&mut state.pending, *hash);
                    release.push(*hash);
                }
            }
        }
        self.release_blobs(release).await;
        let mut outcomes = outcomes.into_iter();
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| match outcomes.next() {
                    Some(o) => o.map_err(|e| e.to_string()),
                    None => Err("internal error: no commit outcome".into()),
                })
            })
            .collect()
    }

    /// Holds the blobs of `records` that reference one (see [`Replica::hold_blob`]),
    /// concurrently. One result per record: `Ok(Some(hash))` for a blob now held, with a
    /// pending reference the caller settles; `Ok(None)` for a record without a blob.
    pub(crate) async fn hold_all(
        &self,
        records: &[Record],
        from: Option<PeerId>,
    ) -> Vec<Result<Option<[u8; 32]>, String>> {
        let holds = records.iter().map(|record| async move {
            match record.blob() {
                None => Ok(None),
                Some((hash, size)) => self.hold_blob(hash, size, from).await.map(|()| Some(hash)),
            }
        });
        futures::future::join_all(holds).await
    }

    /// Makes sure the blob `hash` of `size` bytes is complete (hence durable) and pinned
    /// here, fetching it when it is not; counts a pending reference to it (settled by the
    /// caller). A failure is counted in `bavard_kv_blob_fetch_failures`.
    async fn hold_blob(
        &self,
        hash: [u8; 32],
        size: u64,
        from: Option<PeerId>,
    ) -> Result<(), String> {
        let held = self.hold_blob_inner(hash, size, from).await;
        if let Err(e) = &held {
            self.ctx.metrics.kv_blob_fetch_failures.inc();
            tracing::info!(blob = %BlobHash::from_bytes(hash), "cannot hold a large value's blob: {e}");
        }
        held
    }

    async fn hold_blob_inner(
        &self,
        hash: [u8; 32],
        size: u64,
        from: Option<PeerId>,
    ) -> Result<(), String> {
        let max = self.ctx.config.store.max_large_value_size;
        if size > max {
            return Err(format!(
                "the value's blob is {size} bytes, over [store] max_large_value_size ({max})"
            ));
        }
        let blob = BlobHash::from_bytes(hash);
        let here = match self.blobs.status(blob).await {
            Ok(status) if status.complete => status.size,
            _ => None,
        };
        let got = match here {
            Some(got) => got,
            None => {
                if let Some(peer) = from {
                    self.name_provider(blob, peer);
                }
                self.ctx.metrics.kv_blob_fetches.inc();
                self.blobs
                    .fetch(blob)
                    .await
                    .map_err(|e| format!("cannot fetch the value's blob {blob}: {e}"))?
            }
        };
        if got != size {
            return Err(format!(
                "the record says its blob {blob} is {size} bytes, but it is {got}"
            ));
        }
        let _ops = self.refs.ops.lock().await;
        inc(&mut self.refs.lock().pending, hash);
        if let Err(e) = self.blobs.pin(blob).await {
            // Evicted between the fetch and the pin (the quota is tight): the sender retries.
            dec(&mut self.refs.lock().pending, hash);
            return Err(format!("cannot pin the value's blob {blob}: {e}"));
        }
        Ok(())
    }

    /// Names `peer` as a provider of `blob` in the local provider records, so the fetch asks
    /// it first (it sent a record referencing the blob: it holds it) before the DHT answers.
    pub(crate) fn name_provider(&self, blob: BlobHash, peer: PeerId) {
        if peer == self.ctx.peer_id {
            return;
        }
        let now = unix_ms();
        let record = bavard_store::ProviderRecord::new(
            blob.as_bytes().to_vec(),
            peer.to_bytes(),
            Vec::new(),
            now.saturating_add(SENDER_HINT_MS),
        );
        if let Err(e) = self.storage.store.add_provider(record, now) {
            tracing::debug!(%blob, %peer, "cannot note the sender as a provider: {e}");
        }
    }

    /// Counts the hints now kept for `blobs` (held by [`Replica::hold_all`]) and settles
    /// their pending references; with `kept` false (the hint write failed), only settles.
    pub(crate) async fn settle_hints(&self, blobs: &[Option<[u8; 32]>], kept: bool) {
        let mut release = Vec::new();
        {
            let mut state = self.refs.lock();
            for hash in blobs.iter().flatten() {
                if kept {
                    inc(&mut state.hints, *hash);
                }
                dec(&mut state.pending, *hash);
                release.push(*hash);
            }
        }
        self.release_blobs(release).await;
    }

    /// Forgets the hints delivered for `records` and releases their blobs.
    pub(crate) async fn hints_delivered(&self, records: &[&Record]) {
        let mut release = Vec::new();
        {
            let mut state = self.refs.lock();
            for (hash, _) in records.iter().filter_map(|r| r.blob()) {
                dec(&mut state.hints, hash);
                release.push(hash);
            }
        }
        self.release_blobs(release).await;
    }

    /// Unpins each of `blobs` that no record, hint or store in progress references here any
    /// more: the blob store may then evict it. Serialized with the pins of
    /// [`Replica::hold_blob`], so a store in progress keeps its pin.
    pub(crate) async fn release_blobs(&self, mut blobs: Vec<[u8; 32]>) {
        blobs.sort_unstable();
        blobs.dedup();
        for hash in blobs {
            let _ops = self.refs.ops.lock().await;
            if self.refs.lock().referenced(&hash) {
                continue;
            }
            let blob = BlobHash::from_bytes(hash);
            match self.blobs.unpin(blob).await {
                Ok(()) => {
                    self.ctx.metrics.kv_blobs_released.inc();
                    tracing::debug!(%blob, "a large value's blob is no longer referenced: unpinned");
                }
                Err(crate::blobs::BlobError::NotHere(_)) => {}
                Err(e) => tracing::warn!(%blob, "cannot unpin a released blob: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_stays_referenced_until_its_last_key_and_hint_go() {
        let (a, b) = ([1; 32], [2; 32]);
        let mut s = RefState::default();
        assert_eq!(s.set(b"k1", Some(a)), None);
        assert_eq!(s.set(b"k2", Some(a)), None, "two keys share one blob");
        assert_eq!(
            s.set(b"k1", Some(a)),
            None,
            "the same blob again changes nothing"
        );
        assert_eq!(s.set(b"k1", Some(b)), Some(a), "k1 overwritten");
        assert!(s.referenced(&a), "k2 still uses it");
        assert_eq!(s.set(b"k2", None), Some(a), "k2 deleted");
        assert!(!s.referenced(&a));
        inc(&mut s.hints, a);
        assert!(s.referenced(&a), "a hint holds it");
        dec(&mut s.hints, a);
        inc(&mut s.pending, a);
        assert!(s.referenced(&a), "a store in progress holds it");
        dec(&mut s.pending, a);
        assert!(!s.referenced(&a));
        assert_eq!(
            s.set(b"gone", None),
            None,
            "deleting an inline key releases nothing"
        );
        assert!(s.referenced(&b));
    }

    #[test]
    fn transfers_get_a_second_per_mebibyte() {
        assert_eq!(transfer_allowance(0), Duration::ZERO);
        assert_eq!(transfer_allowance(1 << 30), Duration::from_secs(1024));
    }
}
