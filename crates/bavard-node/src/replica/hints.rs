//! Hinted handoff: records kept for a replica that was down when they were written.
//!
//! A hint is the record itself, stored durably in a separate store (`hints.redb`) under the key
//! `len(owner) ‖ owner ‖ created_ms ‖ key`, so hints for one owner are contiguous and their age is
//! known without touching the record (whose own expiry travels unchanged). Hints are bounded in
//! count (`max_hints`, a full store refuses new hints: the write then simply gets one ack fewer)
//! and in age (`hint_ttl`, older ones are dropped: anti-entropy repairs what they would have).
//! Delivery is [`super::handoff`]'s.

use std::path::Path;
use std::sync::Arc;

use bavard_replica::HandoffPolicy;
use bavard_store::{MemoryStore, Record, RecordStore, RedbStore, StoreConfig, StoreLimits};
use libp2p::PeerId;

/// The hint store.
pub(crate) struct Hints {
    store: crate::closable::Closable,
    max_key: usize,
    /// The file and settings, to reopen after a storage failure (`None`: in memory).
    file: Option<(std::path::PathBuf, StoreConfig)>,
}

fn hint_key(owner: &PeerId, created_ms: u64, key: &[u8]) -> Vec<u8> {
    let mut out = owner_prefix(owner);
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
    ) -> Result<Self, bavard_store::StoreError> {
        let limits = StoreLimits {
            max_key_bytes: max_key + 128,
            max_value_bytes: max_value,
            max_records: max_hints,
            ..StoreLimits::default()
        };
        let config = StoreConfig::new(local.to_bytes()).with_limits(limits);
        let store: Arc<dyn RecordStore> = match path {
            Some(p) => Arc::new(RedbStore::open(p, config.clone())?),
            None => Arc::new(MemoryStore::new(config.clone())),
        };
        Ok(Self {
            store: crate::closable::Closable::new(store),
            max_key,
            file: path.map(|p| (p.to_path_buf(), config)),
        })
    }

    /// Reopens the hint store's file (after a storage failure).
    pub(crate) fn reopen(&self) -> Result<(), bavard_store::StoreError> {
        if let Some((path, config)) = &self.file {
            self.store.close();
            self.store
                .replace(Arc::new(RedbStore::open(path, config.clone())?));
        }
        Ok(())
    }

    /// Keeps `records` for `owner`, durably, in one commit.
    pub(crate) fn add_many(
        &self,
        owner: PeerId,
        records: Vec<Record>,
        now: u64,
    ) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records
            .into_iter()
            .map(|mut r| {
                r.key = hint_key(&owner, now, &r.key);
                r
            })
            .collect();
        self.store
            .put_batch(records, now)
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

    /// The owners that have hints queued, in key order (one short read per owner).
    pub(crate) fn owners(&self, now: u64) -> Vec<PeerId> {
        let mut owners = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = match self.store.scan(after.as_deref(), 1, now) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("cannot scan hints: {e}");
                    return owners;
                }
            };
            let Some(first) = page.into_iter().next() else {
                return owners;
            };
            match parse_hint_key(&first.key) {
                Some((owner, _, _)) => {
                    // Past every key of this owner: the prefix, then more 0xff bytes than any
                    // created-time and key can hold.
                    let mut next = owner_prefix(&owner);
                    next.resize(next.len() + 8 + self.max_key + 2, 0xff);
                    after = Some(next);
                    owners.push(owner);
                }
                None => {
                    // A malformed row: drop it and go on.
                    let _ = self.store.remove(&first.key);
                    after = Some(first.key);
                }
            }
        }
    }

    /// The next hints of `owner` after stored key `after`, one delivery batch of `policy`,
    /// dropping those it says have expired; and whether more remain.
    pub(crate) fn pending_for(
        &self,
        owner: &PeerId,
        after: Option<&[u8]>,
        policy: &HandoffPolicy,
        now: u64,
    ) -> (Vec<Hint>, bool) {
        let prefix = owner_prefix(owner);
        let mut cursor = after.map(<[u8]>::to_vec).unwrap_or_else(|| prefix.clone());
        let page_len = policy.max_records.max(1);
        let mut batch = policy.batch();
        let mut stored_keys = Vec::new();
        let mut expired = Vec::new();
        let more = 'scan: loop {
            let page = match self.store.scan(Some(&cursor), page_len, now) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("cannot scan hints: {e}");
                    break false;
                }
            };
            let full = page.len() == page_len;
            for mut record in page {
                if !record.key.starts_with(&prefix) {
                    break 'scan false;
                }
                cursor = record.key.clone();
                let Some((_, created, key)) = parse_hint_key(&record.key) else {
                    expired.push(record.key);
                    continue;
                };
                if policy.expired(created, now) {
                    expired.push(record.key);
                    continue;
                }
                let stored_key = std::mem::replace(&mut record.key, key);
                if batch.offer(record).is_err() {
                    break 'scan true;
                }
                stored_keys.push(stored_key);
            }
            if !full {
                break false;
            }
        };
        if !expired.is_empty() {
            let _ = self.store.remove_batch(&expired);
        }
        let hints = stored_keys
            .into_iter()
            .zip(batch.into_records())
            .map(|(stored_key, record)| Hint { stored_key, record })
            .collect();
        (hints, more)
    }

    /// Forgets delivered hints, in one commit.
    pub(crate) fn remove_many(&self, stored_keys: &[Vec<u8>]) {
        if let Err(e) = self.store.remove_batch(stored_keys) {
            tracing::warn!("cannot remove delivered hints: {e}");
        }
    }
}

pub(crate) fn owner_prefix(owner: &PeerId) -> Vec<u8> {
    let owner = owner.to_bytes();
    let mut out = Vec::with_capacity(1 + owner.len());
    out.push(owner.len() as u8);
    out.extend_from_slice(&owner);
    out
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

    fn hints() -> Hints {
        Hints::open(None, &PeerId::random(), 1000, 64, 4096).unwrap()
    }

    fn record(key: &str, len: usize) -> Record {
        Record::new(
            key.as_bytes().to_vec(),
            vec![0; len],
            bavard_store::Version::default(),
        )
    }

    #[test]
    fn every_owner_is_listed_once_whatever_its_backlog() {
        let h = hints();
        let mut owners: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for (i, o) in owners.iter().enumerate() {
            let records = (0..(i + 1) * 30)
                .map(|j| record(&format!("k{j}"), 10))
                .collect();
            h.add_many(*o, records, 100).unwrap();
        }
        owners.sort_by_key(owner_prefix);
        assert_eq!(h.owners(100), owners);
        assert_eq!(h.len(), 30 + 60 + 90 + 120 + 150);
    }

    #[test]
    fn pending_hints_come_in_byte_bounded_pages_and_old_ones_expire() {
        let h = hints();
        let owner = PeerId::random();
        let other = PeerId::random();
        h.add_many(
            owner,
            (0..10).map(|j| record(&format!("old{j}"), 100)).collect(),
            0,
        )
        .unwrap();
        h.add_many(
            owner,
            (0..40).map(|j| record(&format!("new{j}"), 1000)).collect(),
            20_000,
        )
        .unwrap();
        h.add_many(other, vec![record("theirs", 10)], 20_000)
            .unwrap();
        let now = 20_001; // the first ten are older than the 10 s TTL
        let mut after: Option<Vec<u8>> = None;
        let mut seen = 0;
        loop {
            let policy = HandoffPolicy {
                ttl_ms: 10_000,
                max_records: 100,
                max_bytes: 5_000,
            };
            let (page, more) = h.pending_for(&owner, after.as_deref(), &policy, now);
            let bytes: usize = page
                .iter()
                .map(|p| bavard_replica::sync::record_size(&p.record))
                .sum();
            assert!(bytes <= 5_000 && !page.is_empty(), "{bytes}");
            assert!(page.iter().all(|p| p.record.key.starts_with(b"new")));
            seen += page.len();
            after = page.last().map(|p| p.stored_key.clone());
            if !more {
                break;
            }
        }
        assert_eq!(seen, 40);
        assert_eq!(
            h.len(),
            41,
            "the expired hints are gone, the other owner's kept"
        );
        let everything = HandoffPolicy {
            ttl_ms: 10_000,
            max_records: 100,
            max_bytes: usize::MAX,
        };
        let (page, _) = h.pending_for(&owner, None, &everything, now);
        h.remove_many(
            &page
                .iter()
                .map(|p| p.stored_key.clone())
                .collect::<Vec<_>>(),
        );
        assert_eq!(h.owners(now), vec![other]);
    }
}
