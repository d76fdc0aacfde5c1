//! Lookups over an in-memory network whose nodes hold proper Kademlia routing tables built with
//! `RoutingTable` from global knowledge. Each round, every request sent is answered (or not, for
//! dead nodes) after a fixed virtual latency.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bavard_routing::{
    Key, Lookup, LookupAction, LookupConfig, LookupResult, RoutingTable, TableConfig, Termination,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

const K: usize = 20;
const LATENCY: Duration = Duration::from_millis(50);

struct Network {
    keys: Vec<Key>,
    tables: Vec<RoutingTable<u64>>,
}

fn key_of(id: u64) -> Key {
    Key::hash(&id.to_le_bytes())
}

fn network(n: u64, seed: u64) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<Key> = (0..n).map(key_of).collect();
    let now = Instant::now();
    let tables = (0..n)
        .map(|me| {
            let mut table = RoutingTable::new(keys[me as usize], TableConfig::default()).unwrap();
            let mut others: Vec<u64> = (0..n).filter(|&o| o != me).collect();
            others.shuffle(&mut rng);
            for o in others {
                // A full bucket asks for a ping; with everyone alive the oldest stays.
                table.insert(now, o, keys[o as usize], ());
            }
            table
        })
        .collect();
    Network { keys, tables }
}

/// What a driver saw: each request's peer and the path it belonged to, and who told whom.
#[derive(Default)]
struct Trace {
    sent: Vec<(u64, usize)>,
    answers: Vec<(u64, Vec<u64>)>,
    rounds: u32,
}

fn run(
    net: &Network,
    me: u64,
    target: Key,
    config: LookupConfig,
    dead: &HashSet<u64>,
) -> (LookupResult<u64>, Trace) {
    let t0 = Instant::now();
    let seeds = net.tables[me as usize]
        .closest(&target, config.k)
        .into_iter()
        .map(|e| (e.peer, e.key))
        .collect();
    let mut lookup = Lookup::new(t0, target, seeds, config).unwrap();
    lookup.ignore_peer(me);
    let mut trace = Trace::default();
    let mut now = t0;
    loop {
        let mut sent = Vec::new();
        let wait = loop {
            match lookup.poll(now) {
                LookupAction::Send { peer } => {
                    trace.sent.push((peer, lookup.path_of(&peer).unwrap()));
                    sent.push(peer);
                }
                LookupAction::Wait { until } => break Some(until),
                LookupAction::Done => break None,
            }
        };
        let Some(until) = wait else { break };
        if sent.is_empty() {
            now = until;
            continue;
        }
        trace.rounds += 1;
        now += LATENCY;
        for peer in sent {
            if dead.contains(&peer) {
                continue; // never answers: times out
            }
            let closer: Vec<(u64, Key)> = net.tables[peer as usize]
                .closest(&target, K)
                .into_iter()
                .map(|e| (e.peer, e.key))
                .collect();
            trace
                .answers
                .push((peer, closer.iter().map(|c| c.0).collect()));
            lookup.on_success(now, &peer, closer);
        }
    }
    (lookup.result(), trace)
}

/// The true k closest live nodes to `target`, the querier excluded.
fn truth(net: &Network, me: u64, target: &Key, dead: &HashSet<u64>) -> Vec<u64> {
    let mut all: Vec<u64> = (0..net.keys.len() as u64)
        .filter(|&i| i != me && !dead.contains(&i))
        .collect();
    all.sort_by_key(|&i| target.distance(&net.keys[i as usize]));
    all.truncate(K);
    all
}

fn recall(got: &[(u64, Key)], want: &[u64]) -> f64 {
    let got: HashSet<u64> = got.iter().map(|p| p.0).collect();
    want.iter().filter(|w| got.contains(w)).count() as f64 / want.len() as f64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lookup_finds_the_true_closest_node_and_the_k_closest(seed in any::<u64>(), beta in prop::bool::ANY) {
        let net = network(300, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let termination = if beta { Termination::Beta(3) } else { Termination::Classic };
        let config = LookupConfig { termination, ..LookupConfig::default() };
        let none = HashSet::new();
        for _ in 0..10 {
            let me = rand::Rng::random_range(&mut rng, 0..300u64);
            let target = Key::random(&mut rng);
            let (result, _) = run(&net, me, target, config.clone(), &none);
            let want = truth(&net, me, &target, &none);
            prop_assert_eq!(result.peers[0].0, want[0]);
            prop_assert!(recall(&result.peers, &want) >= 0.95, "recall {}", recall(&result.peers, &want));
            let sorted = result.peers.windows(2).all(|w| target.distance(&w[0].1) < target.distance(&w[1].1));
            prop_assert!(sorted);
        }
    }

    #[test]
    fn disjoint_paths_share_no_peer(seed in any::<u64>(), paths in 2usize..=4) {
        let net = network(200, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd15);
        let config = LookupConfig { disjoint_paths: paths, ..LookupConfig::default() };
        for _ in 0..5 {
            let me = rand::Rng::random_range(&mut rng, 0..200u64);
            let target = Key::random(&mut rng);
            let seeds: Vec<u64> = net.tables[me as usize].closest(&target, K).iter().map(|e| e.peer).collect();
            let (result, trace) = run(&net, me, target, config.clone(), &HashSet::new());
            // Each peer queried once, by one path.
            let mut path_of = HashMap::new();
            for &(peer, path) in &trace.sent {
                prop_assert!(path_of.insert(peer, path).is_none(), "peer {} queried twice", peer);
            }
            // A path only queries its seeds and peers its own members told it about.
            let mut learned: Vec<HashSet<u64>> = vec![HashSet::new(); paths];
            for (from, told) in &trace.answers {
                learned[path_of[from]].extend(told.iter().copied());
            }
            for &(peer, path) in &trace.sent {
                prop_assert!(seeds.contains(&peer) || learned[path].contains(&peer));
            }
            prop_assert!(!result.peers.is_empty());
        }
    }
}

#[test]
fn beta_termination_takes_fewer_rounds_than_classic_with_the_same_recall() {
    let net = network(300, 42);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let none = HashSet::new();
    let (mut rounds, mut recalls, mut msgs) = ([0u32; 2], [0f64; 2], [0u32; 2]);
    let lookups = 20;
    for _ in 0..lookups {
        let me = rand::Rng::random_range(&mut rng, 0..300u64);
        let target = Key::random(&mut rng);
        let want = truth(&net, me, &target, &none);
        for (i, termination) in [Termination::Classic, Termination::Beta(3)]
            .into_iter()
            .enumerate()
        {
            let config = LookupConfig {
                termination,
                ..LookupConfig::default()
            };
            let (result, trace) = run(&net, me, target, config, &none);
            rounds[i] += trace.rounds;
            recalls[i] += recall(&result.peers, &want);
            msgs[i] += result.stats.messages_sent;
        }
    }
    println!("classic: rounds {rounds:?} msgs {msgs:?} recall {recalls:?} over {lookups} lookups");
    assert!(
        rounds[1] < rounds[0],
        "beta {} vs classic {} rounds",
        rounds[1],
        rounds[0]
    );
    assert!(recalls[1] >= recalls[0] - 1e-9);
}

#[test]
fn lookup_survives_dead_nodes_and_returns_only_live_ones() {
    let net = network(300, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut ids: Vec<u64> = (0..300).collect();
    ids.shuffle(&mut rng);
    let dead: HashSet<u64> = ids[..60].iter().copied().collect();
    let me = ids[100];
    let mut total_recall = 0.0;
    for _ in 0..10 {
        let target = Key::random(&mut rng);
        let config = LookupConfig::default();
        let quorum = config.burst_quorum.min(K);
        let (result, _) = run(&net, me, target, config, &dead);
        assert!(result.peers.iter().all(|p| !dead.contains(&p.0)));
        // The quorum rule does not wait for dead peers to time out once enough answered.
        assert!(result.peers.len() >= quorum, "{} peers", result.peers.len());
        total_recall += recall(&result.peers, &truth(&net, me, &target, &dead));
    }
    // With 20% dead peers, the quorum (16 of 20) ends the lookup before the dead among the k
    // closest time out, so their live successors are not all queried: 0.875 at this seed, 1.0
    // with `burst_quorum = K`.
    assert!(
        total_recall / 10.0 >= 0.85,
        "mean recall {}",
        total_recall / 10.0
    );
}
