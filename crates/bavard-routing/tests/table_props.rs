//! Invariants of the routing table under random sequences of inserts, removals and ping results.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bavard_routing::{Entry, InsertOutcome, Key, RoutingTable, TableConfig, Timestamp};
use proptest::prelude::*;

const K: usize = 3;
const CACHE: usize = 2;
/// Peer 0 has the local key.
const LOCAL_ID: u64 = 0;

fn key_of(id: u64) -> Key {
    Key::hash(&id.to_le_bytes())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    Remove(u64),
    Ping(u64, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..40u64).prop_map(Op::Insert),
        1 => (0..40u64).prop_map(Op::Remove),
        2 => (0..40u64, any::<bool>()).prop_map(|(id, alive)| Op::Ping(id, alive)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn table_never_exceeds_k_per_bucket_nor_holds_the_local_key(ops in prop::collection::vec(op(), 1..200)) {
        let config = TableConfig { k: K, replacement_cache: CACHE, ..TableConfig::default() };
        let mut table: RoutingTable<u64> = RoutingTable::new(key_of(LOCAL_ID), config).unwrap();
        let t0 = Instant::now();
        for (step, op) in ops.into_iter().enumerate() {
            let now = t0 + Duration::from_millis(step as u64);
            match op {
                Op::Insert(id) => {
                    let out = table.insert(now, id, key_of(id), ());
                    if let InsertOutcome::PingOldest { oldest } = out {
                        prop_assert!(table.contains(&oldest));
                    }
                }
                Op::Remove(id) => {
                    table.remove(&id);
                    prop_assert!(!table.contains(&id));
                }
                Op::Ping(id, alive) => {
                    table.ping_result(now, &id, alive);
                    prop_assert_eq!(table.contains(&id), alive && table.contains(&id));
                }
            }
            prop_assert!(!table.contains(&LOCAL_ID));
            let mut seen = HashSet::new();
            for index in 0..=255u8 {
                let bucket = table.bucket(index);
                prop_assert!(bucket.entries.len() <= K);
                prop_assert!(bucket.replacements.len() <= CACHE);
                for e in bucket.entries {
                    prop_assert!(seen.insert(e.peer), "peer {} twice", e.peer);
                    prop_assert_eq!(table.bucket_index(&e.key), Some(index));
                    prop_assert!(bucket.replacements.iter().all(|r| r.peer != e.peer));
                }
                // Entries are in least-recently-seen order.
                prop_assert!(bucket.entries.windows(2).all(|w| w[0].last_seen <= w[1].last_seen));
            }
            prop_assert_eq!(seen.len(), table.len());
            prop_assert_eq!(table.iter().count(), table.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn closest_matches_a_full_sort_of_the_table(
        local in any::<[u8; 32]>(),
        target in any::<[u8; 32]>(),
        ids in prop::collection::hash_set(any::<u64>(), 0..300),
        n in 0usize..40,
    ) {
        let local = Key::from_raw(local);
        let target = Key::from_raw(target);
        let mut table: RoutingTable<u64> = RoutingTable::new(local, TableConfig::default()).unwrap();
        let now = Instant::now();
        for id in ids {
            table.insert(now, id, key_of(id), ());
        }
        let mut all: Vec<(u64, Key)> = table.iter().map(|e| (e.peer, e.key)).collect();
        all.sort_by_key(|(_, k)| target.distance(k));
        all.truncate(n);
        let got: Vec<(u64, Key)> = table.closest(&target, n).into_iter().map(|e| (e.peer, e.key)).collect();
        prop_assert_eq!(got, all);
    }
}

/// The first 64 bits of a key: the compact key space a simulator keeps.
fn short(key: &Key) -> u64 {
    u64::from_be_bytes(key.as_bytes()[..8].try_into().unwrap())
}

/// Whole milliseconds since the start of a test: a 4-byte timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ms(u32);

impl Timestamp for Ms {
    fn saturating_duration_since(&self, earlier: Self) -> Duration {
        Duration::from_millis(u64::from(self.0.saturating_sub(earlier.0)))
    }
}

/// A table of `u32` peers, `u64` keys and `Ms` timestamps.
type Compact = RoutingTable<u32, (), u64, Ms>;

/// 256-bit keys cut to 64 bits sit in bucket `b - 192` instead of `b`.
const SHIFT: u8 = 192;

#[test]
fn a_compact_entry_takes_16_bytes_instead_of_56() {
    assert_eq!(size_of::<Entry<u32, (), u64, Ms>>(), 16);
    assert_eq!(size_of::<Entry<u32, ()>>(), 56);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Peers whose keys differ in their first 64 bits (all of them here, as in the simulator) are
    /// ordered and bucketed alike by full and by cut keys: a compact table given the same
    /// operations answers exactly as a full one, whole milliseconds being the times.
    #[test]
    fn a_table_of_64_bit_keys_and_millisecond_times_answers_as_a_full_one(
        ops in prop::collection::vec(op(), 1..200),
        targets in prop::collection::vec(any::<[u8; 32]>(), 1..8),
        n in 1usize..10,
    ) {
        let config = TableConfig {
            k: K,
            replacement_cache: CACHE,
            refresh_interval: Duration::from_millis(50),
            ..TableConfig::default()
        };
        let mut full: RoutingTable<u64> = RoutingTable::new(key_of(LOCAL_ID), config.clone()).unwrap();
        let mut compact: Compact = RoutingTable::new(short(&key_of(LOCAL_ID)), config).unwrap();
        let t0 = Instant::now();
        for (step, op) in ops.into_iter().enumerate() {
            let ms = step as u32 * 7;
            let now = t0 + Duration::from_millis(u64::from(ms));
            match op {
                Op::Insert(id) => {
                    let a = full.insert(now, id, key_of(id), ());
                    let b = compact.insert(Ms(ms), id as u32, short(&key_of(id)), ());
                    prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                }
                Op::Remove(id) => {
                    let a = full.remove(&id).map(|r| (r.entry.peer, r.promoted));
                    let b = compact.remove(&(id as u32)).map(|r| (u64::from(r.entry.peer), r.promoted.map(u64::from)));
                    prop_assert_eq!(a, b);
                }
                Op::Ping(id, alive) => {
                    let a = full.ping_result(now, &id, alive);
                    let b = compact.ping_result(Ms(ms), &(id as u32), alive);
                    prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                }
            }
            if step % 5 == 0 {
                let target = key_of(1000 + step as u64);
                full.mark_looked_up(now, &target);
                compact.mark_looked_up(Ms(ms), &short(&target));
            }
            let shifted: Vec<u8> = compact.buckets_due_for_refresh(Ms(ms)).into_iter().map(|b| b + SHIFT).collect();
            prop_assert_eq!(full.buckets_due_for_refresh(now), shifted);
            prop_assert_eq!(full.len(), compact.len());
        }
        let fill: Vec<(u8, usize)> = compact.bucket_fill().into_iter().map(|(b, n)| (b + SHIFT, n)).collect();
        prop_assert_eq!(full.bucket_fill(), fill);
        for target in targets {
            let target = Key::from_raw(target);
            let a: Vec<u64> = full.closest(&target, n).into_iter().map(|e| e.peer).collect();
            let b: Vec<u64> = compact.closest(&short(&target), n).into_iter().map(|e| u64::from(e.peer)).collect();
            prop_assert_eq!(a, b);
        }
        compact.shrink_to_fit();
        prop_assert!(compact.heap_bytes() <= full.heap_bytes());
    }
}
