//! The same behavioural suite, run against every `RecordStore` backend.

use bavard_store::{
    HlcTimestamp, LEAF_COUNT, LeafDigest, MemoryStore, ProviderRecord, PutOutcome, Record,
    RecordStore, RedbStore, StoreConfig, StoreError, StoreLimits, Value, Version, digest,
};
use tempfile::TempDir;

const LOCAL: &[u8] = b"local-peer";

/// A store and whatever must outlive it (the redb store's directory).
struct Fixture {
    store: Box<dyn RecordStore>,
    _dir: Option<TempDir>,
}

type Make = fn(StoreConfig) -> Fixture;

fn memory(config: StoreConfig) -> Fixture {
    Fixture {
        store: Box::new(MemoryStore::new(config)),
        _dir: None,
    }
}

fn redb(config: StoreConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path().join("store.redb"), config).expect("open redb");
    Fixture {
        store: Box::new(store),
        _dir: Some(dir),
    }
}

fn config() -> StoreConfig {
    StoreConfig::new(LOCAL)
}

fn version(hlc_ms: u64, writer: &[u8]) -> Version {
    Version::new(HlcTimestamp::new(hlc_ms, 0), writer.to_vec())
}

fn data(key: &[u8], value: &[u8], hlc_ms: u64, writer: &[u8]) -> Record {
    Record::new(key.to_vec(), value.to_vec(), version(hlc_ms, writer))
}

fn provider(key: &[u8], peer: &[u8], expires_at_ms: u64) -> ProviderRecord {
    ProviderRecord::new(
        key.to_vec(),
        peer.to_vec(),
        vec![b"/ip4/1".to_vec()],
        expires_at_ms,
    )
}

mod cases {
    use super::*;

    pub(super) fn get_returns_what_put_stored(make: Make) {
        let f = make(config());
        let r = data(b"k", b"v", 10, b"a").with_publisher(b"p".to_vec());
        assert_eq!(f.store.put(r.clone(), 0).unwrap(), PutOutcome::Stored);
        assert_eq!(f.store.get(b"k", 0).unwrap(), Some(r));
        assert_eq!(f.store.get(b"missing", 0).unwrap(), None);
        assert_eq!(f.store.len().unwrap(), 1);
        assert!(!f.store.is_empty().unwrap());
    }

    pub(super) fn older_version_never_replaces_newer(make: Make) {
        let f = make(config());
        f.store.put(data(b"k", b"new", 20, b"a"), 0).unwrap();
        let outcome = f.store.put(data(b"k", b"old", 10, b"z"), 0).unwrap();
        assert_eq!(
            outcome,
            PutOutcome::Stale {
                current: version(20, b"a")
            }
        );
        assert_eq!(
            f.store.get(b"k", 0).unwrap().unwrap().data(),
            Some(&b"new"[..])
        );
        assert_eq!(
            f.store.put(data(b"k", b"newer", 30, b"a"), 0).unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(
            f.store.get(b"k", 0).unwrap().unwrap().data(),
            Some(&b"newer"[..])
        );
    }

    pub(super) fn equal_hlc_is_won_by_the_greater_writer(make: Make) {
        let f = make(config());
        f.store.put(data(b"k", b"from-b", 10, b"b"), 0).unwrap();
        assert!(matches!(
            f.store.put(data(b"k", b"from-a", 10, b"a"), 0).unwrap(),
            PutOutcome::Stale { .. }
        ));
        assert_eq!(
            f.store.put(data(b"k", b"from-c", 10, b"c"), 0).unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(
            f.store.get(b"k", 0).unwrap().unwrap().data(),
            Some(&b"from-c"[..])
        );
    }

    pub(super) fn same_version_is_unchanged_but_refreshes_expiry(make: Make) {
        let f = make(config());
        f.store
            .put(data(b"k", b"v", 10, b"a").with_expiry(1_000), 0)
            .unwrap();
        assert_eq!(
            f.store
                .put(data(b"k", b"v", 10, b"a").with_expiry(5_000), 0)
                .unwrap(),
            PutOutcome::Unchanged
        );
        assert!(
            f.store.get(b"k", 2_000).unwrap().is_some(),
            "expiry was extended"
        );
        assert_eq!(
            f.store
                .put(data(b"k", b"v", 10, b"a").with_expiry(10), 0)
                .unwrap(),
            PutOutcome::Unchanged
        );
        assert_eq!(
            f.store.get(b"k", 0).unwrap().unwrap().expires_at_ms,
            Some(5_000),
            "an earlier expiry never shortens the record's life"
        );
    }

    pub(super) fn tombstone_hides_older_writes_and_yields_to_newer(make: Make) {
        let f = make(config());
        f.store.put(data(b"k", b"v", 10, b"a"), 0).unwrap();
        let tomb = Record::tombstone(b"k".to_vec(), 500, version(20, b"a"));
        assert_eq!(f.store.put(tomb.clone(), 0).unwrap(), PutOutcome::Stored);
        let got = f.store.get(b"k", 0).unwrap().unwrap();
        assert!(got.is_tombstone());
        assert!(matches!(
            f.store.put(data(b"k", b"late", 15, b"z"), 0).unwrap(),
            PutOutcome::Stale { .. }
        ));
        assert_eq!(f.store.get(b"k", 0).unwrap(), Some(tomb));
        assert_eq!(
            f.store.put(data(b"k", b"reborn", 30, b"a"), 0).unwrap(),
            PutOutcome::Stored
        );
        assert!(!f.store.get(b"k", 0).unwrap().unwrap().is_tombstone());
    }

    pub(super) fn expired_records_are_absent_and_expire_removes_them(make: Make) {
        let f = make(config());
        f.store
            .put(data(b"a", b"v", 1, b"w").with_expiry(100), 0)
            .unwrap();
        f.store.put(data(b"b", b"v", 1, b"w"), 0).unwrap();
        assert!(f.store.get(b"a", 99).unwrap().is_some());
        assert_eq!(f.store.get(b"a", 100).unwrap(), None);
        assert_eq!(f.store.scan(None, 10, 100).unwrap().len(), 1);
        assert_eq!(f.store.len().unwrap(), 2, "still stored until expire runs");
        let stats = f.store.expire(100).unwrap();
        assert_eq!(stats.records_expired, 1);
        assert_eq!(f.store.len().unwrap(), 1);
        // A put over an expired record stores even an older version.
        f.store
            .put(data(b"c", b"new", 50, b"w").with_expiry(200), 0)
            .unwrap();
        assert_eq!(
            f.store.put(data(b"c", b"old", 40, b"w"), 300).unwrap(),
            PutOutcome::Stored
        );
    }

    pub(super) fn already_expired_put_is_dropped(make: Make) {
        let f = make(config());
        assert_eq!(
            f.store
                .put(data(b"k", b"v", 1, b"w").with_expiry(10), 10)
                .unwrap(),
            PutOutcome::Expired
        );
        assert_eq!(f.store.len().unwrap(), 0);
    }

    pub(super) fn expire_purges_tombstones_only_after_grace(make: Make) {
        let f = make(config().with_tombstone_grace_ms(1_000));
        f.store
            .put(Record::tombstone(b"t".to_vec(), 5_000, version(1, b"w")), 0)
            .unwrap();
        f.store.put(data(b"d", b"v", 1, b"w"), 0).unwrap();
        assert_eq!(f.store.expire(5_999).unwrap().tombstones_purged, 0);
        assert!(f.store.get(b"t", 5_999).unwrap().is_some());
        let stats = f.store.expire(6_000).unwrap();
        assert_eq!(stats.tombstones_purged, 1);
        assert_eq!(stats.records_expired, 0);
        assert_eq!(f.store.get(b"t", 6_000).unwrap(), None);
        assert!(
            f.store.get(b"d", 6_000).unwrap().is_some(),
            "data is never purged by grace"
        );
    }

    pub(super) fn size_limits_are_typed_errors_that_write_nothing(make: Make) {
        let limits = StoreLimits {
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_id_bytes: 3,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits));
        let err = f.store.put(data(b"12345", b"v", 1, b"w"), 0).unwrap_err();
        assert!(
            matches!(err, StoreError::KeyTooLarge { len: 5, max: 4 }),
            "{err}"
        );
        let err = f
            .store
            .put(data(b"k", b"123456789", 1, b"w"), 0)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ValueTooLarge { len: 9, max: 8 }),
            "{err}"
        );
        let err = f.store.put(data(b"k", b"v", 1, b"wxyz"), 0).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::IdTooLarge {
                    what: "writer",
                    len: 4,
                    max: 3
                }
            ),
            "{err}"
        );
        let err = f
            .store
            .put(
                data(b"k", b"v", 1, b"w").with_publisher(b"pppp".to_vec()),
                0,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::IdTooLarge {
                    what: "publisher",
                    ..
                }
            ),
            "{err}"
        );
        // A value of exactly the limit fits; a tombstone has no value size.
        assert_eq!(
            f.store.put(data(b"k", b"12345678", 1, b"w"), 0).unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(f.store.len().unwrap(), 1);
    }

    pub(super) fn full_store_refuses_new_keys_but_updates_existing(make: Make) {
        let limits = StoreLimits {
            max_records: 2,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits));
        f.store.put(data(b"a", b"v", 1, b"w"), 0).unwrap();
        f.store.put(data(b"b", b"v", 1, b"w"), 0).unwrap();
        let err = f.store.put(data(b"c", b"v", 1, b"w"), 0).unwrap_err();
        assert!(
            matches!(err, StoreError::TooManyRecords { max: 2 }),
            "{err}"
        );
        assert_eq!(
            f.store.put(data(b"a", b"v2", 2, b"w"), 0).unwrap(),
            PutOutcome::Stored
        );
        f.store.remove(b"b").unwrap();
        assert_eq!(
            f.store.put(data(b"c", b"v", 1, b"w"), 0).unwrap(),
            PutOutcome::Stored
        );
    }

    pub(super) fn failing_batch_writes_nothing(make: Make) {
        let limits = StoreLimits {
            max_records: 2,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits));
        let err = f
            .store
            .put_batch(
                vec![
                    data(b"a", b"v", 1, b"w"),
                    data(b"b", b"v", 1, b"w"),
                    data(b"c", b"v", 1, b"w"),
                ],
                0,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::TooManyRecords { max: 2 }));
        assert_eq!(f.store.len().unwrap(), 0);
        let outcomes = f
            .store
            .put_batch(
                vec![
                    data(b"a", b"v1", 1, b"w"),
                    data(b"a", b"v0", 0, b"w"),
                    data(b"b", b"v", 1, b"w"),
                ],
                0,
            )
            .unwrap();
        assert_eq!(
            outcomes,
            vec![
                PutOutcome::Stored,
                PutOutcome::Stale {
                    current: version(1, b"w")
                },
                PutOutcome::Stored
            ]
        );
        assert_eq!(
            f.store.get(b"a", 0).unwrap().unwrap().data(),
            Some(&b"v1"[..])
        );
    }

    pub(super) fn scan_pages_in_key_order_without_gaps(make: Make) {
        let f = make(config());
        let keys: Vec<Vec<u8>> = (0u8..25).map(|i| vec![b'k', i]).collect();
        // Insert out of order, with one expired record that scans must skip.
        let batch = keys
            .iter()
            .rev()
            .map(|k| data(k, b"v", 1, b"w"))
            .chain([data(b"k\x05x", b"v", 1, b"w").with_expiry(10)])
            .collect();
        f.store.put_batch(batch, 0).unwrap();
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = f.store.scan(after.as_deref(), 7, 10).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 7);
            after = page.last().map(|r| r.key.clone());
            seen.extend(page.into_iter().map(|r| r.key));
        }
        assert_eq!(seen, keys);
        assert!(f.store.scan(None, 0, 10).unwrap().is_empty());
    }

    pub(super) fn remove_deletes_physically(make: Make) {
        let f = make(config());
        f.store.put(data(b"k", b"v", 10, b"w"), 0).unwrap();
        assert!(f.store.remove(b"k").unwrap());
        assert!(!f.store.remove(b"k").unwrap());
        assert_eq!(f.store.get(b"k", 0).unwrap(), None);
        // Without a tombstone, an older version is accepted again.
        assert_eq!(
            f.store.put(data(b"k", b"old", 1, b"w"), 0).unwrap(),
            PutOutcome::Stored
        );
    }

    pub(super) fn remove_unchanged_removes_only_the_versions_it_names(make: Make) {
        let f = make(config());
        f.store.put(data(b"same", b"v", 10, b"w"), 0).unwrap();
        f.store.put(data(b"newer", b"v", 10, b"w"), 0).unwrap();
        f.store.put(data(b"deleted", b"v", 10, b"w"), 0).unwrap();
        // Since the copies were sent: one key got a newer write, another a tombstone.
        f.store.put(data(b"newer", b"v2", 20, b"w"), 0).unwrap();
        f.store
            .put(
                Record::tombstone(b"deleted".to_vec(), 0, version(20, b"w")),
                0,
            )
            .unwrap();
        let sent = [
            (b"same".to_vec(), version(10, b"w")),
            (b"newer".to_vec(), version(10, b"w")),
            (b"deleted".to_vec(), version(10, b"w")),
            (b"absent".to_vec(), version(10, b"w")),
        ];
        assert_eq!(f.store.remove_unchanged(&sent).unwrap(), 1);
        assert_eq!(f.store.get(b"same", 0).unwrap(), None);
        assert_eq!(
            f.store.get(b"newer", 0).unwrap().unwrap().value,
            Value::Data(b"v2".to_vec())
        );
        assert!(f.store.get(b"deleted", 0).unwrap().unwrap().is_tombstone());
        assert_eq!(f.store.len().unwrap(), 2);
        assert_eq!(
            f.store.leaf_digests().unwrap(),
            digests_from_records(&*f.store)
        );
        assert_eq!(
            f.store.remove_unchanged(&sent).unwrap(),
            0,
            "nothing left to remove"
        );
    }

    pub(super) fn providers_are_capped_per_key_and_known_ones_refresh(make: Make) {
        let limits = StoreLimits {
            max_providers_per_key: 2,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits));
        f.store.add_provider(provider(b"k", b"p1", 100), 0).unwrap();
        f.store.add_provider(provider(b"k", b"p2", 100), 0).unwrap();
        let err = f
            .store
            .add_provider(provider(b"k", b"p3", 100), 0)
            .unwrap_err();
        match err {
            StoreError::TooManyProviders { key, max } => {
                assert_eq!((key.as_slice(), max), (&b"k"[..], 2));
            }
            other => panic!("expected TooManyProviders, got {other}"),
        }
        // A known provider re-announces: refreshed even though the key is full.
        let mut refreshed = provider(b"k", b"p1", 500);
        refreshed.addrs = vec![b"/ip4/2".to_vec()];
        f.store.add_provider(refreshed.clone(), 0).unwrap();
        let list = f.store.providers(b"k", 200).unwrap();
        assert_eq!(list, vec![refreshed]);
        // p2 expired: a new provider now takes its slot.
        f.store
            .add_provider(provider(b"k", b"p3", 900), 200)
            .unwrap();
        let ids: Vec<_> = f
            .store
            .providers(b"k", 200)
            .unwrap()
            .into_iter()
            .map(|p| p.provider)
            .collect();
        assert_eq!(ids, vec![b"p1".to_vec(), b"p3".to_vec()]);
        // Other keys are unaffected.
        assert!(f.store.providers(b"other", 0).unwrap().is_empty());
        assert!(f.store.remove_provider(b"k", b"p1").unwrap());
        assert!(!f.store.remove_provider(b"k", b"p1").unwrap());
        assert_eq!(f.store.providers(b"k", 200).unwrap().len(), 1);
    }

    pub(super) fn provider_record_limits_are_typed_errors(make: Make) {
        let limits = StoreLimits {
            max_provider_records: 2,
            max_addrs_per_provider: 1,
            max_addr_bytes: 6,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits));
        let mut p = provider(b"k", b"p", 100);
        p.addrs = vec![vec![0; 1], vec![0; 1]];
        assert!(matches!(
            f.store.add_provider(p.clone(), 0).unwrap_err(),
            StoreError::TooManyAddrs { len: 2, max: 1 }
        ));
        p.addrs = vec![vec![0; 7]];
        assert!(matches!(
            f.store.add_provider(p, 0).unwrap_err(),
            StoreError::AddrTooLarge { len: 7, max: 6 }
        ));
        f.store.add_provider(provider(b"a", b"p", 100), 0).unwrap();
        f.store.add_provider(provider(b"b", b"p", 100), 0).unwrap();
        assert!(matches!(
            f.store
                .add_provider(provider(b"c", b"p", 100), 0)
                .unwrap_err(),
            StoreError::TooManyProviderRecords { max: 2 }
        ));
        assert_eq!(f.store.stats().unwrap().provider_records, 2);
    }

    pub(super) fn provided_lists_local_records_and_is_capped(make: Make) {
        let limits = StoreLimits {
            max_provided_keys: 2,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits));
        f.store.add_provider(provider(b"b", LOCAL, 100), 0).unwrap();
        f.store.add_provider(provider(b"a", LOCAL, 50), 0).unwrap();
        f.store
            .add_provider(provider(b"c", b"remote", 1_000), 0)
            .unwrap();
        let keys: Vec<_> = f
            .store
            .provided(0)
            .unwrap()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(matches!(
            f.store
                .add_provider(provider(b"d", LOCAL, 100), 0)
                .unwrap_err(),
            StoreError::TooManyProvidedKeys { max: 2 }
        ));
        // Re-announcing a provided key is a refresh, not a new key.
        f.store.add_provider(provider(b"a", LOCAL, 150), 0).unwrap();
        assert_eq!(f.store.provided(60).unwrap().len(), 2);
        let stats = f.store.expire(120).unwrap();
        assert_eq!(stats.providers_expired, 1, "b expired");
        assert_eq!(f.store.stats().unwrap().provided_keys, 1);
        f.store
            .add_provider(provider(b"d", LOCAL, 300), 120)
            .unwrap();
        assert!(f.store.remove_provider(b"a", LOCAL).unwrap());
        let keys: Vec<_> = f
            .store
            .provided(120)
            .unwrap()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, vec![b"d".to_vec()]);
    }

    pub(super) fn stats_count_records_tombstones_and_providers(make: Make) {
        let f = make(config());
        f.store.put(data(b"a", b"1234", 1, b"w"), 0).unwrap();
        f.store
            .put(Record::tombstone(b"b".to_vec(), 0, version(1, b"w")), 0)
            .unwrap();
        f.store.add_provider(provider(b"a", LOCAL, 100), 0).unwrap();
        f.store.add_provider(provider(b"a", b"x", 100), 0).unwrap();
        let stats = f.store.stats().unwrap();
        assert_eq!(stats.records, 2);
        assert_eq!(stats.tombstones, 1);
        assert_eq!(stats.value_bytes, 4);
        assert_eq!(stats.provider_records, 2);
        assert_eq!(stats.provided_keys, 1);
    }

    /// The leaf digests recomputed from the records themselves.
    fn digests_from_records(store: &dyn RecordStore) -> Vec<LeafDigest> {
        let mut leaves = vec![LeafDigest::default(); LEAF_COUNT];
        for r in store.scan(None, usize::MAX, 0).unwrap() {
            let leaf = usize::from(digest::leaf_of(&r.key));
            leaves[leaf].hash ^= digest::entry_hash(&r.key, &r.version);
            leaves[leaf].count += 1;
        }
        leaves
    }

    pub(super) fn leaf_digests_follow_every_write_remove_and_expiry(make: Make) {
        let f = make(config());
        for i in 0..40u32 {
            f.store
                .put(data(&i.to_be_bytes(), b"v", 1, b"w"), 0)
                .unwrap();
        }
        assert_eq!(
            f.store.leaf_digests().unwrap(),
            digests_from_records(&*f.store)
        );
        // Overwrites, stale puts, tombstones, removals and expiry all keep the index exact.
        f.store
            .put(data(&3u32.to_be_bytes(), b"new", 2, b"w"), 0)
            .unwrap();
        f.store
            .put(data(&4u32.to_be_bytes(), b"old", 0, b"w"), 0)
            .unwrap();
        f.store
            .put(
                Record::tombstone(5u32.to_be_bytes().to_vec(), 0, version(3, b"w")),
                0,
            )
            .unwrap();
        f.store.remove(&6u32.to_be_bytes()).unwrap();
        assert_eq!(
            f.store
                .remove_batch(&[8u32.to_be_bytes().to_vec(), b"absent".to_vec()])
                .unwrap(),
            1
        );
        f.store
            .put(data(&8u32.to_be_bytes(), b"back", 1, b"w"), 0)
            .unwrap();
        f.store
            .put(
                data(&7u32.to_be_bytes(), b"short", 4, b"w").with_expiry(100),
                0,
            )
            .unwrap();
        assert_eq!(
            f.store.leaf_digests().unwrap(),
            digests_from_records(&*f.store)
        );
        f.store.expire(200).unwrap();
        assert_eq!(f.store.len().unwrap(), 38);
        assert_eq!(
            f.store.leaf_digests().unwrap(),
            digests_from_records(&*f.store)
        );
        let total: u32 = f
            .store
            .leaf_digests()
            .unwrap()
            .iter()
            .map(|l| l.count)
            .sum();
        assert_eq!(total, 38);
    }

    pub(super) fn same_records_give_the_same_digests_whatever_the_order(make: Make) {
        let a = make(config());
        let b = make(config());
        let records: Vec<Record> = (0..30u8)
            .map(|i| data(&[i], &[i], u64::from(i % 4) + 1, b"w"))
            .collect();
        a.store.put_batch(records.clone(), 0).unwrap();
        for r in records.iter().rev() {
            b.store.put(r.clone(), 0).unwrap();
        }
        assert_eq!(
            a.store.leaf_digests().unwrap(),
            b.store.leaf_digests().unwrap()
        );
        b.store.put(data(&[7], b"x", 9, b"w"), 0).unwrap();
        let (da, db) = (
            a.store.leaf_digests().unwrap(),
            b.store.leaf_digests().unwrap(),
        );
        let differing: Vec<usize> = (0..LEAF_COUNT).filter(|&i| da[i] != db[i]).collect();
        assert_eq!(differing, vec![usize::from(digest::leaf_of(&[7]))]);
    }

    pub(super) fn leaf_entries_list_one_leaf_in_pages_without_expired_ones(make: Make) {
        let f = make(config());
        // Keys whose hashes fall in one leaf.
        let target = digest::leaf_of(b"k0");
        let mut keys: Vec<Vec<u8>> = (0u32..2_000_000)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|k| digest::leaf_of(k) == target)
            .take(5)
            .collect();
        assert_eq!(keys.len(), 5);
        for (i, k) in keys.iter().enumerate() {
            let mut r = data(k, b"v", i as u64 + 1, b"w");
            if i == 2 {
                r = r.with_expiry(50);
            }
            f.store.put(r, 0).unwrap();
        }
        f.store.put(data(b"elsewhere", b"v", 1, b"w"), 0).unwrap();
        keys.sort_by_key(|k| digest::key_hash(k));
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = f
                .store
                .leaf_entries(target, after.as_deref(), 2, 60)
                .unwrap();
            let done = page.len() < 2;
            after = page.last().map(|e| e.key.clone());
            seen.extend(page);
            if done {
                break;
            }
        }
        let expired = digest::key_hash(&{
            let mut k = keys.clone();
            k.retain(|k| f.store.get(k, 60).unwrap().is_none());
            k[0].clone()
        });
        let want: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| digest::key_hash(k) != expired)
            .cloned()
            .collect();
        assert_eq!(seen.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), want);
        assert!(
            seen.iter()
                .all(|e| f.store.get(&e.key, 0).unwrap().unwrap().version == e.version)
        );
        // Before the expiry, all five are listed.
        assert_eq!(f.store.leaf_entries(target, None, 10, 0).unwrap().len(), 5);
        // A cursor from a lower leaf starts at the leaf's first entry.
        let other = (0u32..)
            .map(|i| format!("o{i}").into_bytes())
            .find(|k| digest::leaf_of(k) < target)
            .unwrap();
        assert_eq!(
            f.store
                .leaf_entries(target, Some(&other), 10, 0)
                .unwrap()
                .len(),
            5
        );
    }

    pub(super) fn a_consensus_row_and_its_record_are_written_together(make: Make) {
        let f = make(config());
        assert_eq!(f.store.paxos_row(b"k").unwrap(), None);
        // A promise: the row alone.
        assert_eq!(
            f.store
                .paxos_write(b"k", Some(b"promised"), None, 0)
                .unwrap(),
            None
        );
        assert_eq!(f.store.paxos_row(b"k").unwrap().unwrap(), b"promised");
        assert_eq!(f.store.get(b"k", 0).unwrap(), None);
        // A commit: the row and the record, applied under last-writer-wins.
        let r = data(b"k", b"v1", 20, b"a");
        assert_eq!(
            f.store
                .paxos_write(b"k", Some(b"committed"), Some(r.clone()), 0)
                .unwrap(),
            Some(PutOutcome::Stored)
        );
        assert_eq!(f.store.paxos_row(b"k").unwrap().unwrap(), b"committed");
        assert_eq!(f.store.get(b"k", 0).unwrap(), Some(r.clone()));
        // A late commit of an older value keeps the newer record but still writes the row.
        let old = data(b"k", b"v0", 10, b"a");
        assert_eq!(
            f.store
                .paxos_write(b"k", Some(b"late"), Some(old), 0)
                .unwrap(),
            Some(PutOutcome::Stale {
                current: version(20, b"a")
            })
        );
        assert_eq!(f.store.paxos_row(b"k").unwrap().unwrap(), b"late");
        assert_eq!(f.store.get(b"k", 0).unwrap(), Some(r));
        // The record is indexed like any other.
        assert_eq!(
            f.store
                .leaf_entries(digest::leaf_of(b"k"), None, 10, 0)
                .unwrap()
                .len(),
            1
        );
        // Nothing to write is no write.
        assert_eq!(f.store.paxos_write(b"k", None, None, 0).unwrap(), None);
        assert_eq!(f.store.paxos_row(b"k").unwrap().unwrap(), b"late");
    }

    pub(super) fn a_refused_consensus_write_writes_neither_row_nor_record(make: Make) {
        let limits = StoreLimits {
            max_value_bytes: 8,
            max_records: 1,
            ..StoreLimits::default()
        };
        let f = make(config().with_limits(limits.clone()));
        f.store.put(data(b"full", b"x", 1, b"a"), 0).unwrap();
        let big = vec![0u8; limits.max_paxos_row_bytes() + 1];
        assert!(matches!(
            f.store.paxos_write(b"k", Some(&big), None, 0),
            Err(StoreError::PaxosRowTooLarge { .. })
        ));
        let long_key = vec![b'k'; limits.max_key_bytes + 1];
        assert!(matches!(
            f.store.paxos_write(&long_key, Some(b"row"), None, 0),
            Err(StoreError::KeyTooLarge { .. })
        ));
        // The record is refused (the store is full): the row is not written either.
        assert!(matches!(
            f.store
                .paxos_write(b"k", Some(b"row"), Some(data(b"k", b"v", 2, b"a")), 0),
            Err(StoreError::TooManyRecords { .. })
        ));
        assert!(matches!(
            f.store.paxos_write(
                b"k",
                Some(b"row"),
                Some(data(b"k", b"too large", 2, b"a")),
                0
            ),
            Err(StoreError::ValueTooLarge { .. })
        ));
        assert_eq!(f.store.paxos_row(b"k").unwrap(), None);
        assert_eq!(f.store.get(b"k", 0).unwrap(), None);
        assert_eq!(f.store.paxos_rows(None, 10).unwrap(), vec![]);
    }

    pub(super) fn consensus_rows_page_in_key_order(make: Make) {
        let f = make(config());
        for k in [b"c", b"a", b"b"] {
            f.store.paxos_write(k, Some(k), None, 0).unwrap();
        }
        let first = f.store.paxos_rows(None, 2).unwrap();
        assert_eq!(
            first,
            vec![
                (b"a".to_vec(), b"a".to_vec()),
                (b"b".to_vec(), b"b".to_vec())
            ]
        );
        let rest = f.store.paxos_rows(Some(b"b"), 2).unwrap();
        assert_eq!(rest, vec![(b"c".to_vec(), b"c".to_vec())]);
        assert!(f.store.paxos_rows(Some(b"c"), 2).unwrap().is_empty());
        assert!(f.store.paxos_rows(None, 0).unwrap().is_empty());
        // Consensus rows are not records.
        assert_eq!(f.store.len().unwrap(), 0);
    }
}

macro_rules! suite {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    super::cases::$case(super::$backend);
                }
            )*
        }
    };
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        suite!(memory: $($case),*);
        suite!(redb: $($case),*);
    };
}

both!(
    get_returns_what_put_stored,
    older_version_never_replaces_newer,
    equal_hlc_is_won_by_the_greater_writer,
    same_version_is_unchanged_but_refreshes_expiry,
    tombstone_hides_older_writes_and_yields_to_newer,
    expired_records_are_absent_and_expire_removes_them,
    already_expired_put_is_dropped,
    expire_purges_tombstones_only_after_grace,
    size_limits_are_typed_errors_that_write_nothing,
    full_store_refuses_new_keys_but_updates_existing,
    failing_batch_writes_nothing,
    scan_pages_in_key_order_without_gaps,
    remove_deletes_physically,
    remove_unchanged_removes_only_the_versions_it_names,
    providers_are_capped_per_key_and_known_ones_refresh,
    provider_record_limits_are_typed_errors,
    provided_lists_local_records_and_is_capped,
    stats_count_records_tombstones_and_providers,
    leaf_digests_follow_every_write_remove_and_expiry,
    same_records_give_the_same_digests_whatever_the_order,
    leaf_entries_list_one_leaf_in_pages_without_expired_ones,
    a_consensus_row_and_its_record_are_written_together,
    a_refused_consensus_write_writes_neither_row_nor_record,
    consensus_rows_page_in_key_order,
);

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Puts on a few keys with small hlc and writer ranges, so ties and stale puts are common.
    fn puts() -> impl Strategy<Value = Vec<(u8, u64, u8, u8)>> {
        proptest::collection::vec((0u8..4, 0u64..6, 0u8..3, any::<u8>()), 1..24)
    }

    fn record((key, hlc, writer, value): (u8, u64, u8, u8)) -> Record {
        data(&[key], &[value], hlc, &[writer])
    }

    fn stored_version_is_the_max_version_put(make: Make, puts: Vec<(u8, u64, u8, u8)>) {
        let f = make(config());
        let mut max: BTreeMap<Vec<u8>, Version> = BTreeMap::new();
        for put in puts {
            let r = record(put);
            let entry = max.entry(r.key.clone()).or_default();
            *entry = entry.clone().max(r.version.clone());
            f.store.put(r, 0).unwrap();
        }
        for (key, version) in max {
            assert_eq!(f.store.get(&key, 0).unwrap().unwrap().version, version);
        }
    }

    fn order_of_puts_does_not_change_the_result(make: Make, puts: Vec<(u8, u64, u8, u8)>) {
        let forward = make(config());
        let backward = make(config());
        for put in &puts {
            forward.store.put(record(*put), 0).unwrap();
        }
        for put in puts.iter().rev() {
            backward.store.put(record(*put), 0).unwrap();
        }
        assert_eq!(
            forward.store.scan(None, usize::MAX, 0).unwrap(),
            backward.store.scan(None, usize::MAX, 0).unwrap()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn memory_store_keeps_the_max_version_per_key(puts in puts()) {
            stored_version_is_the_max_version_put(memory, puts);
        }

        #[test]
        fn memory_store_converges_whatever_the_put_order(puts in puts()) {
            order_of_puts_does_not_change_the_result(memory, puts);
        }
    }

    proptest! {
        // Every redb put is an fsync'd commit: fewer cases keep the suite fast.
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn redb_store_keeps_the_max_version_per_key(puts in puts()) {
            stored_version_is_the_max_version_put(redb, puts);
        }

        #[test]
        fn redb_store_converges_whatever_the_put_order(puts in puts()) {
            order_of_puts_does_not_change_the_result(redb, puts);
        }
    }
}

#[test]
fn redb_store_finds_everything_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let cfg = config().with_tombstone_grace_ms(1_000);
    {
        let store = RedbStore::open(&path, cfg.clone()).unwrap();
        store
            .put(data(b"a", b"1", 10, b"w").with_publisher(b"p".to_vec()), 0)
            .unwrap();
        store
            .put_batch(
                vec![
                    data(b"b", b"2", 10, b"w").with_expiry(5_000),
                    Record::tombstone(b"c".to_vec(), 100, version(11, b"w")),
                ],
                0,
            )
            .unwrap();
        store.add_provider(provider(b"a", LOCAL, 9_000), 0).unwrap();
        store
            .add_provider(provider(b"a", b"remote", 9_000), 0)
            .unwrap();
    }
    let store = RedbStore::open(&path, cfg).unwrap();
    assert_eq!(store.len().unwrap(), 3);
    assert_eq!(
        store.get(b"a", 0).unwrap(),
        Some(data(b"a", b"1", 10, b"w").with_publisher(b"p".to_vec()))
    );
    assert_eq!(
        store.get(b"b", 0).unwrap().unwrap().expires_at_ms,
        Some(5_000)
    );
    assert!(store.get(b"c", 0).unwrap().unwrap().is_tombstone());
    assert_eq!(store.providers(b"a", 0).unwrap().len(), 2);
    assert_eq!(
        store.provided(0).unwrap(),
        vec![provider(b"a", LOCAL, 9_000)]
    );
    // LWW state survived too: an older write is still stale.
    assert!(matches!(
        store.put(data(b"c", b"old", 5, b"w"), 0).unwrap(),
        PutOutcome::Stale { .. }
    ));
}

#[test]
fn redb_store_keeps_consensus_rows_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = RedbStore::open(&path, config()).unwrap();
        store
            .paxos_write(b"k", Some(b"state"), Some(data(b"k", b"v", 5, b"a")), 0)
            .unwrap();
    }
    let store = RedbStore::open(&path, config()).unwrap();
    assert_eq!(store.paxos_row(b"k").unwrap().unwrap(), b"state");
    assert_eq!(store.get(b"k", 0).unwrap().unwrap().data(), Some(&b"v"[..]));
    assert_eq!(store.paxos_rows(None, 10).unwrap().len(), 1);
}

#[test]
fn redb_store_rebuilds_a_missing_digest_index_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let before = {
        let store = RedbStore::open(&path, config()).unwrap();
        for i in 0..50u8 {
            store.put(data(&[i], b"v", 1, b"w"), 0).unwrap();
        }
        store.leaf_digests().unwrap()
    };
    {
        // As a file written before the index existed: drop the table.
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let table: ::redb::TableDefinition<&[u8], &[u8]> = ::redb::TableDefinition::new("digest");
        txn.delete_table(table).unwrap();
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path, config()).unwrap();
    assert_eq!(store.leaf_digests().unwrap(), before);
    let leaf = digest::leaf_of(&[9]);
    assert!(
        store
            .leaf_entries(leaf, None, 10, 0)
            .unwrap()
            .iter()
            .any(|e| e.key == [9])
    );
}

#[test]
fn redb_store_open_in_a_missing_directory_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = RedbStore::open(dir.path().join("no/such/dir/store.redb"), config()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Storage {
                operation: "open",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn redb_store_cannot_be_opened_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = RedbStore::open(&path, config()).unwrap();
    assert!(matches!(
        RedbStore::open(&path, config()).unwrap_err(),
        StoreError::Storage { .. }
    ));
}

#[test]
fn corrupt_row_written_through_redb_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = RedbStore::open(&path, config()).unwrap();
        store.put(data(b"good", b"v", 1, b"w"), 0).unwrap();
    }
    {
        // The table name is part of the on-disk format documented in RedbStore's module.
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: ::redb::TableDefinition<&[u8], &[u8]> =
                ::redb::TableDefinition::new("records");
            let mut table = txn.open_table(table).unwrap();
            table.insert(&b"bad"[..], &b"\x01garbage"[..]).unwrap();
            table.insert(&b"future"[..], &b"\x09"[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path, config()).unwrap();
    let err = store.get(b"bad", 0).unwrap_err();
    match &err {
        StoreError::Corrupt { table, key, .. } => {
            assert_eq!((*table, key.as_slice()), ("records", &b"bad"[..]));
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(matches!(
        store.get(b"future", 0).unwrap_err(),
        StoreError::Corrupt {
            source: bavard_store::DecodeError::UnknownFormat(9),
            ..
        }
    ));
    assert!(matches!(
        store.put(data(b"bad", b"v", 1, b"w"), 0).unwrap_err(),
        StoreError::Corrupt { .. }
    ));
    assert!(matches!(
        store.scan(None, 10, 0).unwrap_err(),
        StoreError::Corrupt { .. }
    ));
    // A version-conditional remove leaves a row it cannot decode, and a record of another
    // version; it is not an error.
    let expected = [
        (b"bad".to_vec(), version(1, b"w")),
        (b"good".to_vec(), version(2, b"w")),
    ];
    assert_eq!(store.remove_unchanged(&expected).unwrap(), 0);
    assert!(store.get(b"bad", 0).is_err(), "the corrupt row stays");
    // The good row is still readable, and expire skips the bad rows instead of failing.
    assert!(store.get(b"good", 0).unwrap().is_some());
    assert_eq!(store.expire(0).unwrap().corrupt_rows_skipped, 2);
    // remove clears a corrupt row without decoding it.
    assert!(store.remove(b"bad").unwrap());
    assert!(store.remove(b"future").unwrap());
    assert_eq!(store.scan(None, 10, 0).unwrap().len(), 1);
    assert_eq!(
        store.put(data(b"bad", b"v", 1, b"w"), 0).unwrap(),
        PutOutcome::Stored
    );
}

#[test]
fn corrupt_provider_row_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    drop(RedbStore::open(&path, config()).unwrap());
    {
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: ::redb::TableDefinition<&[u8], &[u8]> =
                ::redb::TableDefinition::new("providers");
            let mut table = txn.open_table(table).unwrap();
            // A well-formed table key for (key "k", provider "p") with a truncated row.
            table
                .insert(&b"\x00\x00\x00\x01kp"[..], &b"\x01\x00"[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path, config()).unwrap();
    assert!(matches!(
        store.providers(b"k", 0).unwrap_err(),
        StoreError::Corrupt {
            table: "providers",
            ..
        }
    ));
    assert_eq!(store.expire(0).unwrap().corrupt_rows_skipped, 1);
    assert!(store.remove_provider(b"k", b"p").unwrap());
    assert!(store.providers(b"k", 0).unwrap().is_empty());
}
