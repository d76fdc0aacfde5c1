//! The last-writer-wins merge rule shared by every backend.
//!
//! A store is a map of LWW registers. [`merge`] decides what a put does given the stored record:
//!
//! 1. an incoming record already expired at `now` is dropped ([`PutOutcome::Expired`]);
//! 2. no stored record, or an expired one: the incoming record is stored;
//! 3. the greater [`Version`](crate::Version) wins; the stored one is kept on a stale put;
//! 4. equal versions (a republish, a replica re-sending, anti-entropy): the stored content is
//!    kept ([`PutOutcome::Unchanged`]) but a later expiry is adopted, so republishing refreshes
//!    a record's lifetime on every replica. If two *different* contents carry the same version
//!    (only a buggy writer reuses a version), the greater `(value, publisher)` wins so that
//!    replicas still converge whatever the delivery order.
//!
//! Rules 2–4 make the merge commutative, associative and idempotent on unexpired records: every
//! replica that received the same set of puts holds the same record.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::limits::StoreLimits;
use crate::record::Record;
use crate::store::PutOutcome;

/// What a put does.
#[derive(Debug)]
pub(crate) enum Merge {
    /// Write this record; `new_key` when no row existed for the key (the count grows).
    Write {
        record: Record,
        outcome: PutOutcome,
        new_key: bool,
    },
    /// Write nothing.
    Keep(PutOutcome),
}

/// Decides the effect of putting `incoming` over `current` (the stored row, expired or not).
pub(crate) fn merge(current: Option<&Record>, incoming: Record, now_ms: u64) -> Merge {
    if incoming.is_expired(now_ms) {
        return Merge::Keep(PutOutcome::Expired);
    }
    let current = match current {
        None => {
            return Merge::Write {
                record: incoming,
                outcome: PutOutcome::Stored,
                new_key: true,
            };
        }
        Some(current) if current.is_expired(now_ms) => {
            return Merge::Write {
                record: incoming,
                outcome: PutOutcome::Stored,
                new_key: false,
            };
        }
        Some(current) => current,
    };
    let stale = || PutOutcome::Stale {
        current: current.version.clone(),
    };
    let order = incoming.version.cmp(&current.version).then_with(|| {
        (&incoming.value, &incoming.publisher).cmp(&(&current.value, &current.publisher))
    });
    match order {
        Ordering::Greater => Merge::Write {
            record: incoming,
            outcome: PutOutcome::Stored,
            new_key: false,
        },
        Ordering::Less => Merge::Keep(stale()),
        Ordering::Equal => {
            let expiry = later_expiry(current.expires_at_ms, incoming.expires_at_ms);
            if expiry == current.expires_at_ms {
                Merge::Keep(PutOutcome::Unchanged)
            } else {
                Merge::Write {
                    record: Record {
                        expires_at_ms: expiry,
                        ..incoming
                    },
                    outcome: PutOutcome::Unchanged,
                    new_key: false,
                }
            }
        }
    }
}

/// The later of two expiries, `None` (never) being the latest.
fn later_expiry(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// The writes a batch of puts makes, computed against a read view of the store.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan {
    /// One outcome per record, in order.
    pub(crate) outcomes: Vec<PutOutcome>,
    /// The records to write, one per key (the last winner).
    pub(crate) writes: BTreeMap<Vec<u8>, Record>,
}

/// Plans a batch of puts: checks sizes, merges each record against the stored one (or an earlier
/// one in the batch), and enforces `max_records` on new keys. Writes nothing; on `Err` the caller
/// writes nothing either, so a batch is all-or-nothing.
pub(crate) fn plan_batch(
    records: Vec<Record>,
    now_ms: u64,
    limits: &StoreLimits,
    stored_len: usize,
    mut stored: impl FnMut(&[u8]) -> Result<Option<Record>, StoreError>,
) -> Result<BatchPlan, StoreError> {
    for record in &records {
        limits.check_record(record)?;
    }
    let mut plan = BatchPlan {
        outcomes: Vec::with_capacity(records.len()),
        writes: BTreeMap::new(),
    };
    let mut new_keys = 0usize;
    for record in records {
        let from_store;
        let current = match plan.writes.get(&record.key) {
            Some(staged) => Some(staged),
            None => {
                from_store = stored(&record.key)?;
                from_store.as_ref()
            }
        };
        match merge(current, record, now_ms) {
            Merge::Keep(outcome) => plan.outcomes.push(outcome),
            Merge::Write {
                record,
                outcome,
                new_key,
            } => {
                if new_key {
                    if stored_len.saturating_add(new_keys) >= limits.max_records {
                        return Err(StoreError::TooManyRecords {
                            max: limits.max_records,
                        });
                    }
                    new_keys += 1;
                }
                plan.outcomes.push(outcome);
                plan.writes.insert(record.key.clone(), record);
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::HlcTimestamp;
    use crate::version::Version;

    fn rec(value: &[u8], hlc: u64, writer: &[u8]) -> Record {
        Record::new(
            b"k".to_vec(),
            value.to_vec(),
            Version::new(HlcTimestamp::new(hlc, 0), writer.to_vec()),
        )
    }

    #[test]
    fn equal_version_adopts_later_expiry_only() {
        let stored = rec(b"v", 1, b"w").with_expiry(100);
        match merge(Some(&stored), rec(b"v", 1, b"w").with_expiry(200), 0) {
            Merge::Write {
                record, outcome, ..
            } => {
                assert_eq!(outcome, PutOutcome::Unchanged);
                assert_eq!(record.expires_at_ms, Some(200));
            }
            other => panic!("expected a refresh, got {other:?}"),
        }
        assert!(matches!(
            merge(Some(&stored), rec(b"v", 1, b"w").with_expiry(50), 0),
            Merge::Keep(PutOutcome::Unchanged)
        ));
    }

    #[test]
    fn equal_version_with_different_content_converges_on_the_greater_content() {
        let a = rec(b"a", 1, b"w");
        let b = rec(b"b", 1, b"w");
        assert!(matches!(
            merge(Some(&a), b.clone(), 0),
            Merge::Write {
                outcome: PutOutcome::Stored,
                ..
            }
        ));
        assert!(matches!(
            merge(Some(&b), a, 0),
            Merge::Keep(PutOutcome::Stale { .. })
        ));
    }

    #[test]
    fn batch_counts_a_key_repeated_in_the_batch_once() {
        let limits = StoreLimits {
            max_records: 1,
            ..StoreLimits::default()
        };
        let plan = plan_batch(
            vec![rec(b"a", 1, b"w"), rec(b"b", 2, b"w")],
            0,
            &limits,
            0,
            |_| Ok(None),
        )
        .expect("one key fits");
        assert_eq!(plan.outcomes, vec![PutOutcome::Stored, PutOutcome::Stored]);
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.writes[&b"k"[..]].data(), Some(&b"b"[..]));
    }
}
