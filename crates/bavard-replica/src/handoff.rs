//! Hinted handoff policy (Dynamo §4.6): when a preferred replica does not answer a write, a
//! fallback member keeps the record as a *hint* for it and hands it over later. This module
//! decides which hints are offered to whom, in what batches, and when they expire; the node
//! stores them and sends them.
//!
//! - **Whom.** Hints go to owners the membership does not hold for dead or departed: sending to
//!   a dead owner only waits for its timeout.
//! - **Order.** Each owner's hints oldest first (the order they were kept in); owners are served
//!   independently, so one owner's backlog never holds another's back.
//! - **Batches.** At most `max_records` records and about `max_bytes` bytes (at least one
//!   record), below the peers' frame limit.
//! - **Expiry.** A hint older than `ttl_ms` is dropped: anti-entropy repairs what it carried
//!   (Cassandra keeps hints 3 hours, as the default here).

use bavard_store::Record;

use crate::sync::record_size;

/// The handoff limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffPolicy {
    /// Hints older than this are dropped.
    pub ttl_ms: u64,
    /// Most records in one delivery.
    pub max_records: usize,
    /// Bytes (estimated, encoded) of one delivery.
    pub max_bytes: usize,
}

impl HandoffPolicy {
    /// Whether a hint kept at `created_ms` has expired at `now_ms`.
    pub fn expired(&self, created_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(created_ms) > self.ttl_ms
    }

    /// Whether an owner's hints are offered now, given whether the membership holds it for dead
    /// or departed.
    pub fn deliverable(&self, owner_down: bool) -> bool {
        !owner_down
    }

    /// An empty delivery batch.
    pub fn batch(&self) -> HintBatch {
        HintBatch {
            policy: *self,
            records: Vec::new(),
            bytes: 0,
        }
    }
}

/// One delivery being filled, oldest hints first.
#[derive(Debug)]
pub struct HintBatch {
    policy: HandoffPolicy,
    records: Vec<Record>,
    bytes: usize,
}

impl HintBatch {
    /// Adds `record` if the batch has room; gives it back when the batch is full.
    ///
    /// # Errors
    ///
    /// The record itself when the batch is full (nothing changed).
    // The "error" hands the caller's record back for the next batch, the common case of a
    // full batch: boxing it would allocate on every refusal to save a move of 144 bytes.
    #[allow(clippy::result_large_err)]
    pub fn offer(&mut self, record: Record) -> Result<(), Record> {
        let cost = record_size(&record);
        let full = self.records.len() >= self.policy.max_records.max(1)
            || (!self.records.is_empty() && self.bytes + cost > self.policy.max_bytes);
        if full {
            return Err(record);
        }
        self.bytes += cost;
        self.records.push(record);
        Ok(())
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The estimated bytes of the batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The records, oldest first.
    pub fn into_records(self) -> Vec<Record> {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_store::Version;

    fn policy() -> HandoffPolicy {
        HandoffPolicy {
            ttl_ms: 1_000,
            max_records: 3,
            max_bytes: 2_000,
        }
    }

    fn record(len: usize) -> Record {
        Record::new(b"k".to_vec(), vec![0; len], Version::default())
    }

    #[test]
    fn hints_expire_after_the_ttl_and_dead_owners_wait() {
        let p = policy();
        assert!(!p.expired(5_000, 6_000));
        assert!(p.expired(5_000, 6_001));
        assert!(!p.expired(7_000, 6_000), "a clock set back expires nothing");
        assert!(p.deliverable(false));
        assert!(!p.deliverable(true));
    }

    #[test]
    fn a_batch_stops_at_its_record_or_byte_limit_but_takes_one_oversized_record() {
        let p = policy();
        let mut b = p.batch();
        for _ in 0..3 {
            b.offer(record(10)).unwrap();
        }
        assert!(b.offer(record(10)).is_err(), "three records at most");
        let mut b = p.batch();
        b.offer(record(1_500)).unwrap();
        assert!(b.offer(record(1_500)).is_err(), "over 2,000 bytes");
        let mut b = p.batch();
        b.offer(record(5_000)).unwrap();
        assert_eq!(
            b.len(),
            1,
            "a record larger than the budget still goes, alone"
        );
        assert!(b.bytes() > 5_000);
        assert_eq!(b.into_records().len(), 1);
    }
}
