//! Anti-entropy rounds between in-memory replicas: convergence, byte bounds, bad answers.

use std::sync::Arc;

use bavard_replica::sync::{entry_size, record_size};
use bavard_replica::{
    Initiator, LeafSet, Placement, Request, Response, Step, StoreOutcome, SyncConfig, SyncError,
    SyncStats, answer,
};
use bavard_routing::Key;
use bavard_store::digest::key_hash;
use bavard_store::{HlcTimestamp, MemoryStore, Record, RecordStore, StoreConfig, Version};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

const NOW: u64 = 1_000;

fn store(id: u64) -> MemoryStore {
    MemoryStore::new(StoreConfig::new(id.to_be_bytes().to_vec()))
}

fn placement(members: u64, n: usize) -> Arc<Placement<u64>> {
    Arc::new(Placement::new(
        (0..members).map(|i| (i, Key::hash(&i.to_be_bytes()))),
        n,
    ))
}

fn record(key: &[u8], hlc: u64, value_len: usize) -> Record {
    Record::new(
        key.to_vec(),
        vec![7u8; value_len],
        Version::new(HlcTimestamp::new(hlc, 0), b"writer".to_vec()),
    )
}

fn target(key: &[u8]) -> Key {
    Key::from_raw(key_hash(key))
}

/// Estimated size of a request, as the initiator accounts it.
fn request_size(req: &Request<u64>) -> usize {
    match req {
        Request::Tree { .. } => 8192 + 256 * 9,
        Request::Leaves { hashes } => hashes.len() * 16,
        Request::Entries { leaves, after } => {
            16 + leaves.len() * 4 + after.as_ref().map_or(0, Vec::len)
        }
        Request::Fetch { keys } => keys.iter().map(|k| 8 + k.len()).sum(),
        Request::Store { records, .. } => records.iter().map(record_size).sum(),
    }
}

fn response_size(resp: &Response) -> usize {
    match resp {
        Response::Tree { differing } => differing.len() * 2,
        Response::Leaves { differing } => differing.len() * 3,
        Response::Entries { entries, .. } => entries.iter().map(entry_size).sum(),
        Response::Fetch { records, .. } => records.iter().map(record_size).sum(),
        Response::Store { results } => results.len() * 4,
    }
}

/// Runs a whole round of `local` with `peer`; asserts every message after the first stays
/// within the byte budget.
fn round(
    placement: &Arc<Placement<u64>>,
    stores: &[MemoryStore],
    local: u64,
    peer: u64,
    config: &SyncConfig,
) -> SyncStats {
    let mut init = Initiator::new(placement.clone(), local, peer, config.clone());
    let (mine, theirs) = (&stores[local as usize], &stores[peer as usize]);
    for _ in 0..100_000 {
        match init.next(mine, NOW).unwrap() {
            Step::Send(req) => {
                if !matches!(req, Request::Tree { .. }) {
                    assert!(
                        request_size(&req) <= config.max_batch_bytes,
                        "request of {} bytes over the budget",
                        request_size(&req)
                    );
                }
                let resp = serve(req, theirs, config);
                assert!(response_size(&resp) <= config.max_batch_bytes);
                init.handle_response(resp).unwrap();
            }
            Step::Apply(records) => {
                let n = records.len();
                mine.put_batch(records, NOW).unwrap();
                init.applied(n);
            }
            Step::Done(stats) => return stats,
        }
    }
    panic!("the round did not end");
}

/// The responder: stores pushed records, answers the rest from its store.
fn serve(req: Request<u64>, store: &MemoryStore, config: &SyncConfig) -> Response {
    match req {
        Request::Store { records, .. } => Response::Store {
            results: store
                .put_batch(records, NOW)
                .unwrap()
                .into_iter()
                .map(|_| StoreOutcome::Stored)
                .collect(),
        },
        req => answer(req, store, config, NOW).unwrap(),
    }
}

/// Whether every replica of every key holds the newest version any node has.
fn converged(placement: &Placement<u64>, stores: &[MemoryStore]) -> bool {
    let mut keys = std::collections::BTreeSet::new();
    for s in stores {
        for r in s.scan(None, usize::MAX, NOW).unwrap() {
            keys.insert(r.key);
        }
    }
    keys.iter().all(|k| {
        let newest = stores
            .iter()
            .filter_map(|s| s.get(k, NOW).unwrap())
            .map(|r| r.version)
            .max();
        placement
            .preference_list(&target(k))
            .iter()
            .all(|&r| stores[r as usize].get(k, NOW).unwrap().map(|r| r.version) == newest)
    })
}

#[test]
fn identical_replicas_exchange_one_request() {
    let p = placement(2, 3);
    let stores = [store(0), store(1)];
    for i in 0..500u32 {
        let r = record(&i.to_be_bytes(), 5, 10);
        stores[0].put(r.clone(), NOW).unwrap();
        stores[1].put(r, NOW).unwrap();
    }
    let stats = round(&p, &stores, 0, 1, &SyncConfig::default());
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.subtrees_differing, 0);
    assert_eq!(stats.keys_pulled + stats.keys_pushed, 0);
}

#[test]
fn a_replica_that_missed_everything_catches_up_in_one_round() {
    let p = placement(2, 3);
    let stores = [store(0), store(1)];
    // 3,000 records of 1 KiB: 3 MB, far above one frame.
    for i in 0..3_000u32 {
        stores[1]
            .put(record(format!("k{i}").as_bytes(), 9, 1024), NOW)
            .unwrap();
    }
    let stats = round(&p, &stores, 0, 1, &SyncConfig::default());
    assert_eq!(stats.keys_pulled, 3_000);
    assert_eq!(stores[0].len().unwrap(), 3_000);
    assert!(
        stats.requests > 30,
        "paginated: {} requests",
        stats.requests
    );
    // And the other way: the peer lost everything, the initiator pushes.
    let fresh = [store(0), store(1)];
    for i in 0..3_000u32 {
        fresh[0]
            .put(record(format!("k{i}").as_bytes(), 9, 1024), NOW)
            .unwrap();
    }
    let stats = round(&p, &fresh, 0, 1, &SyncConfig::default());
    assert_eq!(stats.keys_pushed, 3_000);
    assert_eq!(fresh[1].len().unwrap(), 3_000);
}

#[test]
fn rounds_between_all_pairs_converge_and_exchange_only_shared_keys() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let members = 6u64;
    let p = placement(members, 3);
    let stores: Vec<MemoryStore> = (0..members).map(store).collect();
    // Each write reaches a random subset of its replicas, with versions racing.
    for i in 0..2_000u32 {
        let key = format!("key-{i}");
        let replicas = p.preference_list(&target(key.as_bytes()));
        for r in replicas {
            if rng.random_bool(0.6) {
                let hlc = rng.random_range(1..5);
                stores[r as usize]
                    .put(record(key.as_bytes(), hlc, rng.random_range(0..300)), NOW)
                    .unwrap();
            }
        }
    }
    assert!(!converged(&p, &stores));
    let config = SyncConfig::default();
    for a in 0..members {
        for b in 0..members {
            if a != b {
                round(&p, &stores, a, b, &config);
            }
        }
    }
    assert!(converged(&p, &stores));
    // Nothing went to a node that does not replicate the key.
    for (i, s) in stores.iter().enumerate() {
        for r in s.scan(None, usize::MAX, NOW).unwrap() {
            assert!(p.is_replica(&target(&r.key), &(i as u64)));
        }
    }
    // A second pass finds nothing.
    for a in 0..members {
        for b in 0..members {
            if a != b {
                let stats = round(&p, &stores, a, b, &config);
                assert_eq!(stats.keys_pulled + stats.keys_pushed, 0);
                assert_eq!(stats.requests, 1);
            }
        }
    }
}

#[test]
fn tiny_budgets_still_converge_with_every_message_within_bounds() {
    let p = placement(3, 3);
    let stores = [store(0), store(1), store(2)];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for i in 0..400u32 {
        let key = format!("small-{i}");
        let s = rng.random_range(0..3);
        stores[s]
            .put(record(key.as_bytes(), 3, rng.random_range(0..200)), NOW)
            .unwrap();
    }
    let config = SyncConfig {
        max_batch_bytes: 1024,
        max_batch_records: 3,
        max_entries: 5,
        max_leaves_per_request: 2,
    };
    for (a, b) in [(0, 1), (1, 2), (2, 0), (0, 1)] {
        round(&p, &stores, a, b, &config);
    }
    assert!(converged(&p, &stores));
}

#[test]
fn a_leaf_listed_over_several_pages_is_compared_once_complete() {
    let p = placement(2, 3);
    let stores = [store(0), store(1)];
    // Many keys in one leaf, more than a page.
    let leaf = bavard_store::digest::leaf_of(b"seed");
    let keys: Vec<Vec<u8>> = (0u32..)
        .map(|i| format!("s{i}").into_bytes())
        .filter(|k| bavard_store::digest::leaf_of(k) == leaf)
        .take(12)
        .collect();
    for (i, k) in keys.iter().enumerate() {
        // The initiator holds the same, older or newer versions: both directions in one leaf.
        stores[1].put(record(k, 5, 10), NOW).unwrap();
        let mine = [4, 5, 6][i % 3];
        stores[0].put(record(k, mine, 10), NOW).unwrap();
    }
    let config = SyncConfig {
        max_entries: 5,
        ..SyncConfig::default()
    };
    let stats = round(&p, &stores, 0, 1, &config);
    assert_eq!(stats.leaves_differing, 1);
    assert_eq!(stats.keys_pulled, 4);
    assert_eq!(stats.keys_pushed, 4);
    for k in &keys {
        assert_eq!(
            stores[0].get(k, NOW).unwrap().unwrap().version,
            stores[1].get(k, NOW).unwrap().unwrap().version
        );
    }
}

#[test]
fn an_answer_with_keys_nobody_asked_for_stops_the_round() {
    let p = placement(2, 3);
    let mine = store(0);
    let theirs = store(1);
    theirs.put(record(b"asked", 5, 1), NOW).unwrap();
    let config = SyncConfig::default();
    let mut init = Initiator::new(p, 0, 1, config.clone());
    loop {
        match init.next(&mine, NOW).unwrap() {
            Step::Send(Request::Fetch { keys }) => {
                assert_eq!(keys, vec![b"asked".to_vec()]);
                let forged = Response::Fetch {
                    records: vec![record(b"asked", 5, 1), record(b"planted", 99, 1)],
                    covered: 1,
                };
                let err = init.handle_response(forged).unwrap_err();
                assert!(matches!(err, SyncError::Protocol(_)), "{err}");
                return;
            }
            Step::Send(req) => {
                let resp = serve(req, &theirs, &config);
                init.handle_response(resp).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn out_of_order_entries_and_wrong_answers_are_protocol_errors() {
    let p = placement(2, 3);
    let mine = store(0);
    let mut init = Initiator::new(p, 0, 1, SyncConfig::default());
    let Step::Send(Request::Tree { .. }) = init.next(&mine, NOW).unwrap() else {
        panic!("a round starts with the tree");
    };
    // Answering a tree request with a fetch answer.
    let err = init
        .handle_response(Response::Fetch {
            records: Vec::new(),
            covered: 0,
        })
        .unwrap_err();
    assert!(matches!(err, SyncError::Protocol(_)));
    assert!(matches!(init.next(&mine, NOW), Err(SyncError::Outstanding)));
}

#[test]
fn malformed_requests_are_refused_without_touching_the_store() {
    let s = store(0);
    let config = SyncConfig::default();
    let bad: [Request<u64>; 6] = [
        Request::Tree {
            leaves: LeafSet::full(),
            hashes: vec![0; 3],
        },
        Request::Entries {
            leaves: vec![5, 2],
            after: None,
        },
        Request::Entries {
            leaves: (0..2000).collect(),
            after: None,
        },
        Request::Fetch {
            keys: vec![b"k".to_vec(); 300],
        },
        Request::Leaves {
            hashes: vec![(0, 0); 100_000],
        },
        Request::Store {
            records: vec![record(b"k", 1, 1)],
            hint_for: None,
        },
    ];
    for req in bad {
        let err = answer(req, &s, &config, NOW).unwrap_err();
        assert!(matches!(err, SyncError::BadRequest(_)), "{err}");
    }
    assert_eq!(s.len().unwrap(), 0);
}
