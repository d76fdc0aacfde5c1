//! Hinted handoff: records kept for a replica that was down when they were written.
//!
//! A hint is the record itself, stored durably in a separate store (`hints.redb`) under the key
//! `len(owner) ‖ owner ‖ created_ms ‖ key`, so hints for one owner are contiguous and their age is
//! known without touching the record (whose own expiry travels unchanged). Hints are bounded in
//! count (`max_hints`, a full store refuses new hints: the write then simply gets one ack fewer)
//! and in age (`hint_ttl`, older ones are dropped: anti-entropy repairs what they would have).
//! The delivery job sends each owner its hints in batches once it answers, and deletes them only
//! after the owner acknowledged them durably.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bavard_proto::store as pb;
use bavard_store::{MemoryStore, Record, RecordStore, RedbStore, StoreConfig, StoreLimits};
use libp2p::PeerId;

use super::wire::record_to_pb;
use crate::node::Node;
use crate::util::unix_ms;

/// The hint store.
pub(crate) struct Hints {
    store: crate::closable::Closable,
    ttl_ms: u64,
}

fn hint_key(owner: &PeerId, created_ms: u64, key: &[u8]) -> Vec<u8> {
    let owner = owner.to_bytes();
    let mut out = Vec::with_capacity(1 + owner.len() + 8 + key.len());
    out.push(owner.len() as u8);
    out.extend_from_slice(&owner);
    out.extend_from_slice(&created_ms.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits a hint key into (owner, created_ms, key); `None` for a malformed one.
fn parse_hint_key(raw: &[u8]) -> Option<(PeerId, u64, Vec<u8>)> {
    let (&len, rest) = raw.split_first()?;
    let len = usize::from(len);
    if rest.len() < len + 8 {
        return None;
    }
    let owner = PeerId::from_bytes(&rest[..len]).ok()?;
    let created = u64::from_be_bytes(rest[len..len + 8].try_into().ok()?);
    Some((owner, created, rest[len + 8..].to_vec()))
}

/// A hint ready for delivery.
pub(crate) struct Hint {
    pub(crate) owner: PeerId,
    pub(crate) stored_key: Vec<u8>,
    pub(crate) record: Record,
}

impl Hints {
    /// Opens the hint store (`None` path: in memory).
    pub(crate) fn open(
        path: Option<&Path>,
        local: &PeerId,
        max_hints: usize,
        max_key: usize,
        max_value: usize,
        ttl_ms: u64,
    ) -> Result<Self, bavard_store::StoreError> {
        let limits = StoreLimits {
            max_key_bytes: max_key + 128,
            max_value_bytes: max_value,
            max_records: max_hints,
            ..StoreLimits::default()
        };
        let config = StoreConfig::new(local.to_bytes()).with_limits(limits);
        let store: Arc<dyn RecordStore> = match path {
            Some(p) => Arc::new(RedbStore::open(p, config)?),
            None => Arc::new(MemoryStore::new(config)),
        };
        Ok(Self {
            store: crate::closable::Closable::new(store),
            ttl_ms,
        })
    }

    /// Keeps `record` for `owner`, durably.
    pub(crate) fn add(&self, owner: PeerId, mut record: Record, now: u64) -> Result<(), String> {
        record.key = hint_key(&owner, now, &record.key);
        self.store
            .put(record, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Releases the hint store's engine (at shutdown).
    pub(crate) fn close(&self) {
        self.store.close();
    }

    /// Hints queued.
    pub(crate) fn len(&self) -> usize {
        self.store.len().unwrap_or(0)
    }

    /// Up to `limit` hints, dropping those older than the hint TTL and malformed ones.
    pub(crate) fn pending(&self, limit: usize, now: u64) -> Vec<Hint> {
        let page = match self.store.scan(None, limit, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot scan hints: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for mut record in page {
            let stored_key = record.key.clone();
            match parse_hint_key(&stored_key) {
                Some((owner, created, key)) if now.saturating_sub(created) <= self.ttl_ms => {
                    record.key = key;
                    out.push(Hint {
                        owner,
                        stored_key,
                        record,
                    });
                }
                _ => {
                    let _ = self.store.remove(&stored_key);
                }
            }
        }
        out
    }

    /// Forgets a delivered hint.
    pub(crate) fn remove(&self, stored_key: &[u8]) {
        let _ = self.store.remove(stored_key);
    }
}

/// Hands queued hints to their owners; returns how many were delivered.
pub(crate) async fn deliver(node: &Node) -> usize {
    let hints = node.inner.hints.pending(1024, unix_ms());
    let mut by_owner: BTreeMap<PeerId, Vec<Hint>> = BTreeMap::new();
    for h in hints {
        by_owner.entry(h.owner).or_default().push(h);
    }
    let mut delivered = 0;
    let max = node.inner.config.replication.max_batch_records.max(1);
    for (owner, hints) in by_owner {
        for chunk in hints.chunks(max) {
            let req = pb::request::Kind::Store(pb::StoreRequest {
                records: chunk.iter().map(|h| record_to_pb(&h.record)).collect(),
                hint_for: Vec::new(),
            });
            match node.kv_request(owner, req).await {
                Ok(pb::response::Kind::Store(resp)) if resp.results.len() == chunk.len() => {
                    for (h, r) in chunk.iter().zip(resp.results) {
                        // Stored, unchanged or stale: the owner has this version or a newer one.
                        if r.outcome != pb::Outcome::Rejected as i32 {
                            node.inner.hints.remove(&h.stored_key);
                            delivered += 1;
                        }
                    }
                }
                // The owner is still unreachable: try again next round.
                _ => break,
            }
        }
    }
    if delivered > 0 {
        node.inner.metrics.hints_delivered.inc_by(delivered as u64);
    }
    node.inner
        .metrics
        .hints_queued
        .set(node.inner.hints.len() as i64);
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_keys_roundtrip_and_garbage_is_rejected() {
        let owner = PeerId::random();
        let raw = hint_key(&owner, 42, b"key");
        assert_eq!(parse_hint_key(&raw), Some((owner, 42, b"key".to_vec())));
        assert_eq!(parse_hint_key(&[200, 1, 2]), None);
        assert_eq!(parse_hint_key(&[]), None);
    }
}
