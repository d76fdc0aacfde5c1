//! Lookups over a simulated network whose nodes hold proper Kademlia routing tables built with
//! `RoutingTable` from global knowledge, run on the harness: every request is answered (or not,
//! for dead nodes) after a fixed round trip of 50 ms.
//!
//! The querier polls its lookup once all the answers due at an instant are in (a timer at that
//! instant runs after them), so a lookup advances in rounds: what was sent together is answered
//! together.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use bavard_routing::{
    Key, Lookup, LookupAction, LookupConfig, LookupResult, RoutingTable, TableConfig, Termination,
};
use bavard_sim::NodeId;
use bavard_sim::harness::{Fault, Harness, Network, SimNode, Step};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

const K: usize = 20;
/// One way: a request and its answer take 50 ms.
const LATENCY: Duration = Duration::from_millis(25);

fn key_of(id: NodeId) -> Key {
    Key::hash(&u64::from(id).to_le_bytes())
}

enum Msg {
    FindNode(Key),
    Closer(Vec<(NodeId, Key)>),
}

/// What the querier reports.
enum Ev {
    /// A request went to `peer`, on disjoint path `path`.
    Sent {
        peer: NodeId,
        path: usize,
    },
    /// `from` answered with these peers.
    Answer {
        from: NodeId,
        told: Vec<NodeId>,
    },
    /// A poll that sent at least one request: one round trip.
    Round,
    Done(LookupResult<NodeId>),
}

/// A node: a frozen table that answers FIND_NODE, and at most one running lookup.
struct Peer {
    table: RoutingTable<NodeId>,
    lookup: Option<Lookup<NodeId>>,
    /// Answers arrived at this instant: poll once they are all in.
    poll_at: Option<Instant>,
    wait_until: Option<Instant>,
    outbox: VecDeque<(NodeId, Msg)>,
    events: VecDeque<Ev>,
}

impl Peer {
    fn start(&mut self, now: Instant, me: NodeId, target: Key, config: LookupConfig) {
        let seeds = self
            .table
            .closest(&target, config.k)
            .into_iter()
            .map(|e| (e.peer, e.key))
            .collect();
        let mut lookup = Lookup::new(now, target, seeds, config).unwrap();
        lookup.ignore_peer(me);
        self.lookup = Some(lookup);
        self.poll(now);
    }

    fn poll(&mut self, now: Instant) {
        let Some(lookup) = &mut self.lookup else {
            return;
        };
        let target = *lookup.target();
        let mut sent = false;
        loop {
            match lookup.poll(now) {
                LookupAction::Send { peer } => {
                    let path = lookup.path_of(&peer).unwrap();
                    self.events.push_back(Ev::Sent { peer, path });
                    self.outbox.push_back((peer, Msg::FindNode(target)));
                    sent = true;
                }
                LookupAction::Wait { until } => {
                    self.wait_until = Some(until);
                    break;
                }
                LookupAction::Done => {
                    self.wait_until = None;
                    let result = self.lookup.take().unwrap().result();
                    self.events.push_back(Ev::Done(result));
                    break;
                }
            }
        }
        if sent {
            self.events.push_back(Ev::Round);
        }
    }
}

impl SimNode for Peer {
    type Message = Msg;
    type Event = Ev;
    type Error = Infallible;

    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Msg) -> Result<(), Infallible> {
        match msg {
            Msg::FindNode(target) => {
                let closer = self
                    .table
                    .closest(&target, K)
                    .into_iter()
                    .map(|e| (e.peer, e.key))
                    .collect();
                self.outbox.push_back((from, Msg::Closer(closer)));
            }
            Msg::Closer(closer) => {
                if let Some(lookup) = &mut self.lookup {
                    let told = closer.iter().map(|c| c.0).collect();
                    self.events.push_back(Ev::Answer { from, told });
                    lookup.on_success(now, &from, closer);
                    self.poll_at = Some(now);
                }
            }
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.poll_at = None;
        self.poll(now);
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Msg)> {
        self.outbox.pop_front()
    }

    fn poll_event(&mut self) -> Option<Ev> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.lookup.as_ref()?;
        self.poll_at.or(self.wait_until)
    }

    fn message_len(_: &Msg) -> usize {
        0
    }
}

/// `n` nodes whose tables hold every other node, inserted in a random order drawn from `seed`.
fn network(n: u32, seed: u64) -> (Harness<Peer, ()>, Vec<Key>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<Key> = (0..n).map(key_of).collect();
    let table_keys = keys.clone();
    let harness = Network::new(n, LATENCY).build(move |me, now| {
        let mut table = RoutingTable::new(table_keys[me as usize], TableConfig::default()).unwrap();
        let mut others: Vec<u64> = (0..u64::from(n)).filter(|&o| o != u64::from(me)).collect();
        others.shuffle(&mut rng);
        for o in others {
            // A full bucket asks for a ping; with everyone alive the oldest stays.
            table.insert(now, o as NodeId, table_keys[o as usize], ());
        }
        Peer {
            table,
            lookup: None,
            poll_at: None,
            wait_until: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    });
    (harness, keys)
}

/// What a driver saw: each request's peer and the path it belonged to, and who told whom.
#[derive(Default)]
struct Trace {
    sent: Vec<(NodeId, usize)>,
    answers: Vec<(NodeId, Vec<NodeId>)>,
    rounds: u32,
}

/// Runs one lookup from `me` to its end (nodes crashed beforehand never answer: they time out).
fn run(
    h: &mut Harness<Peer, ()>,
    me: NodeId,
    target: Key,
    config: LookupConfig,
) -> (LookupResult<NodeId>, Trace) {
    h.act(me, |peer, now| peer.start(now, me, target, config))
        .expect("the querier is alive");
    let mut trace = Trace::default();
    while let Some(step) = h.step() {
        let Step::Output { node, events, .. } = step else {
            continue;
        };
        if node != me {
            continue;
        }
        for event in events {
            match event {
                Ev::Sent { peer, path } => trace.sent.push((peer, path)),
                Ev::Answer { from, told } => trace.answers.push((from, told)),
                Ev::Round => trace.rounds += 1,
                Ev::Done(result) => return (result, trace),
            }
        }
    }
    panic!("the lookup never ended");
}

/// The true k closest live nodes to `target`, the querier excluded.
fn truth(keys: &[Key], me: NodeId, target: &Key, dead: &HashSet<NodeId>) -> Vec<NodeId> {
    let mut all: Vec<NodeId> = (0..keys.len() as NodeId)
        .filter(|&i| i != me && !dead.contains(&i))
        .collect();
    all.sort_by_key(|&i| target.distance(&keys[i as usize]));
    all.truncate(K);
    all
}

fn recall(got: &[(NodeId, Key)], want: &[NodeId]) -> f64 {
    let got: HashSet<NodeId> = got.iter().map(|p| p.0).collect();
    want.iter().filter(|w| got.contains(w)).count() as f64 / want.len() as f64
}

/// A random node below `n`, drawn as the routing crate's tests drew it.
fn random_node(rng: &mut ChaCha8Rng, n: u64) -> NodeId {
    rand::Rng::random_range(rng, 0..n) as NodeId
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lookup_finds_the_true_closest_node_and_the_k_closest(seed in any::<u64>(), beta in prop::bool::ANY) {
        let (mut h, keys) = network(300, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let termination = if beta { Termination::Beta(3) } else { Termination::Classic };
        let config = LookupConfig { termination, ..LookupConfig::default() };
        let none = HashSet::new();
        for _ in 0..10 {
            let me = random_node(&mut rng, 300);
            let target = Key::random(&mut rng);
            let (result, _) = run(&mut h, me, target, config.clone());
            let want = truth(&keys, me, &target, &none);
            prop_assert_eq!(result.peers[0].0, want[0]);
            prop_assert!(recall(&result.peers, &want) >= 0.95, "recall {}", recall(&result.peers, &want));
            let sorted = result.peers.windows(2).all(|w| target.distance(&w[0].1) < target.distance(&w[1].1));
            prop_assert!(sorted);
        }
    }

    #[test]
    fn disjoint_paths_share_no_peer(seed in any::<u64>(), paths in 2usize..=4) {
        let (mut h, _) = network(200, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd15);
        let config = LookupConfig { disjoint_paths: paths, ..LookupConfig::default() };
        for _ in 0..5 {
            let me = random_node(&mut rng, 200);
            let target = Key::random(&mut rng);
            let seeds: Vec<NodeId> = h.node(me).table.closest(&target, K).iter().map(|e| e.peer).collect();
            let (result, trace) = run(&mut h, me, target, config.clone());
            // Each peer queried once, by one path.
            let mut path_of = HashMap::new();
            for &(peer, path) in &trace.sent {
                prop_assert!(path_of.insert(peer, path).is_none(), "peer {} queried twice", peer);
            }
            // A path only queries its seeds and peers its own members told it about.
            let mut learned: Vec<HashSet<NodeId>> = vec![HashSet::new(); paths];
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
    let (mut h, keys) = network(300, 42);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let none = HashSet::new();
    let (mut rounds, mut recalls, mut msgs) = ([0u32; 2], [0f64; 2], [0u32; 2]);
    let lookups = 20;
    for _ in 0..lookups {
        let me = random_node(&mut rng, 300);
        let target = Key::random(&mut rng);
        let want = truth(&keys, me, &target, &none);
        for (i, termination) in [Termination::Classic, Termination::Beta(3)]
            .into_iter()
            .enumerate()
        {
            let config = LookupConfig {
                termination,
                ..LookupConfig::default()
            };
            let (result, trace) = run(&mut h, me, target, config);
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
    let (mut h, keys) = network(300, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut ids: Vec<u64> = (0..300).collect();
    ids.shuffle(&mut rng);
    let dead: HashSet<NodeId> = ids[..60].iter().map(|&i| i as NodeId).collect();
    for &d in &dead {
        h.inject(Fault::Crash(d));
    }
    let me = ids[100] as NodeId;
    let mut total_recall = 0.0;
    for _ in 0..10 {
        let target = Key::random(&mut rng);
        let config = LookupConfig::default();
        let quorum = config.burst_quorum.min(K);
        let (result, _) = run(&mut h, me, target, config);
        assert!(result.peers.iter().all(|p| !dead.contains(&p.0)));
        // The quorum rule does not wait for dead peers to time out once enough answered.
        assert!(result.peers.len() >= quorum, "{} peers", result.peers.len());
        total_recall += recall(&result.peers, &truth(&keys, me, &target, &dead));
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
