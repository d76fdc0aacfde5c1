//! Linearizable compare-and-set per key: the IO shell of the replica core's Paxos
//! ([`bavard_replica::paxos`]), which holds the algorithm, its guarantees and the shell's
//! duties. This module does those duties and nothing more:
//!
//! - **Acceptor** ([`acceptor`]): serves `Prepare`, `Propose` and `Commit` from admitted peers
//!   (and from this node's own proposer, without the network). It refuses a ballot that is not
//!   the sender's or that is beyond the clock drift bound, takes the key's lock (one acceptor
//!   step at a time per key: [`KeyLocks`]), loads the key's acceptor row from the record store's
//!   `paxos` table, runs the core's rule and writes the new row and the record a commit applies
//!   in **one** fsync'd transaction ([`bavard_store::RecordStore::paxos_write`]) before
//!   answering. A row that does not decode refuses the key's requests: it is never read as
//!   empty, which would forget a promise.
//! - **Proposer** ([`proposer`]): drives a [`bavard_replica::paxos::Proposer`] against the
//!   key's N preferred replicas (never fallbacks: majorities must intersect), with ballots from
//!   the node's hybrid logical clock under its durable lease (never reused, across restarts),
//!   backoff seeds from the node's RNG, the core's per-request timeout and the node's request
//!   deadline around the whole operation: when it passes, the operation ends `unknown` if a
//!   proposal of it may have been accepted, `not_applied` otherwise. Proposals are sent at most
//!   once (a retried proposal could hide an acceptance behind a later refusal); prepares and
//!   commits, which repeat harmlessly, ride the replica client's retry of broken streams.
//! - **Clock**: at start the node's clock goes above the highest ballot in its acceptor table
//!   ([`highest_ballot`]), which the lease does not cover (promised ballots are other nodes').
//! - **Metrics** ([`CasMetrics`]): `bavard_cas_rounds_total{outcome}`,
//!   `bavard_cas_attempts_total`, `bavard_cas_contention_retries_total`,
//!   `bavard_cas_round_trips`.
//!
//! What reaches it: `PUT`/`DELETE /v1/kv/{key}` with `if_version` or `if_absent` (a CAS),
//! with `consistency=serial` (a CAS without a condition), and `GET /v1/kv/{key}
//! ?consistency=serial` (a serial read); see `docs/OPERATIONS.md` for the guarantees and how
//! they mix with plain last-writer-wins writes on the same key.

mod acceptor;
mod metrics;
mod proposer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bavard_replica::paxos::Acceptor;
use bavard_store::{HlcTimestamp, RecordStore};

pub use metrics::CasMetrics;

/// One lock per key, so that the acceptor steps of a key never run concurrently (each is a
/// read-modify-write of the key's row). Entries are dropped when no one holds or waits for
/// them.
#[derive(Default)]
pub(crate) struct KeyLocks(Arc<Mutex<LockMap>>);

type LockMap = HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>;

/// Above this many keys, entries nobody holds are purged when one is added (an entry can be
/// left behind by a waiter that gave up).
const LOCKS_PURGE_ABOVE: usize = 1024;

/// The lock of one key, held until dropped (it can move into a blocking task, so that a
/// request abandoned half-way still holds the key until its step is written).
pub(crate) struct KeyGuard {
    map: Arc<Mutex<LockMap>>,
    key: Vec<u8>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits for the lock of `key`.
    pub(crate) async fn lock(&self, key: Vec<u8>) -> KeyGuard {
        let mutex = {
            let mut map = self.0.lock().expect("key locks");
            if map.len() > LOCKS_PURGE_ABOVE && !map.contains_key(&key) {
                map.retain(|_, m| Arc::strong_count(m) > 1);
            }
            map.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            map: self.0.clone(),
            key,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("key locks").len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        // Release first: the guard holds a reference to the mutex.
        self.guard.take();
        let mut map = self.map.lock().expect("key locks");
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// The highest timestamp in any acceptor row of `store` (promises, acceptances, commits, the
/// versions of accepted proposals); zero when there are none. Rows that do not decode are
/// skipped (their keys refuse requests until repaired), and a storage error ends the scan with
/// what was read: the clock floor only spares this node's first ballots a refusal.
pub(crate) fn highest_ballot(store: &dyn RecordStore) -> HlcTimestamp {
    let mut highest = HlcTimestamp::ZERO;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = match store.paxos_rows(after.as_deref(), 1024) {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!("cannot read the acceptor table: {e}");
                return highest;
            }
        };
        let Some((last, _)) = page.last() else {
            return highest;
        };
        after = Some(last.clone());
        for (key, row) in &page {
            match Acceptor::decode(key, row) {
                Ok(state) => {
                    // The promise is at least every ballot accepted or committed.
                    let ballots = state
                        .promised()
                        .map(|b| b.timestamp())
                        .into_iter()
                        .chain(state.accepted().map(|a| a.proposal.version.timestamp()));
                    highest = ballots.fold(highest, HlcTimestamp::max);
                }
                Err(e) => tracing::warn!(
                    key = %String::from_utf8_lossy(key),
                    "undecodable acceptor row skipped: {e}"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bavard_replica::paxos::Ballot;
    use bavard_store::{MemoryStore, StoreConfig};

    use super::*;

    #[tokio::test]
    async fn a_key_lock_is_held_by_one_step_at_a_time_and_forgotten_when_free() {
        let locks = KeyLocks::default();
        let held = locks.lock(b"k".to_vec()).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), locks.lock(b"k".to_vec()));
        assert!(waiting.await.is_err(), "a second step on the key waits");
        let other = tokio::time::timeout(Duration::from_secs(5), locks.lock(b"j".to_vec()));
        drop(other.await.expect("another key is not held up"));
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), locks.lock(b"k".to_vec()));
        drop(again.await.expect("a released key is handed on"));
        assert_eq!(locks.len(), 0, "free keys are forgotten");
    }

    #[test]
    fn the_clock_floor_is_the_highest_ballot_of_the_acceptor_table() {
        let store = MemoryStore::new(StoreConfig::new(b"me".to_vec()));
        assert_eq!(highest_ballot(&store), HlcTimestamp::ZERO);
        for (key, t) in [(b"a", 50u64), (b"b", 70), (b"c", 60)] {
            let ballot = Ballot::new(HlcTimestamp::new(t, 0), b"n".to_vec());
            let step = Acceptor::default().prepare(ballot, None);
            let row = step.persist.unwrap().encode();
            store.paxos_write(key, Some(&row), None, 0).unwrap();
        }
        store.paxos_write(b"d", Some(b"junk"), None, 0).unwrap();
        assert_eq!(highest_ballot(&store), HlcTimestamp::new(70, 0));
    }
}
