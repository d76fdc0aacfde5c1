//! Invariants of the routing table under random sequences of inserts, removals and ping results.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bavard_routing::{InsertOutcome, Key, RoutingTable, TableConfig};
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
