//! A Kademlia node as the lookup experiment drives it: a [`RoutingTable`] that answers
//! FIND_NODE, and the [`Lookup`]s the node runs, each waiting for its own deadline. An
//! adversarial node answers as its [`Attack`] says instead.
//!
//! **Compact state.** A million of these live in one process, so a node keeps only what is its
//! own. Its table is a [`RoutingTable`] of `u64` keys (the first 64 bits of each node's key, see
//! [`short`]) stamped with [`Millis`] (4 bytes) instead of 256-bit keys and 16-byte `Instant`s: an
//! entry takes 16 bytes instead of 56, and the table answers exactly as a table of full keys
//! would, because no two nodes' keys share their first 64 bits (checked by [`Shared::new`]). The
//! full keys, the lookup parameters and the time origin live once, in [`Shared`]; the lookups,
//! the outbox and the event queue exist only while the node has something running.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_routing::{
    InsertOutcome, Key, Lookup, LookupAction, LookupConfig, LookupResult, RoutingTable,
    TableConfig, Timestamp,
};

use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use super::Attack;
use crate::NodeId;
use crate::harness::SimNode;
use crate::keyspace::KeyIndex;
use crate::rng::hash_words;

/// What an adversarial node knows and does.
pub(super) struct Adversary {
    pub(super) attack: Attack,
    /// Every adversary's key (they collude): a misrouting node answers with the adversaries
    /// closest to the target.
    pub(super) accomplices: Rc<KeyIndex>,
}

/// The first 64 bits of a key: what the nodes' tables hold (see the module docs).
pub(super) fn short(key: &Key) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

/// A full key's bucket `b` is bucket `b - SHORT_SHIFT` of a 64-bit key (bucket 255, the first
/// bit, is bit 63 of the short key).
const SHORT_SHIFT: u8 = 192;

/// Virtual milliseconds since the start of the run: the timestamps of the nodes' tables.
///
/// Cutting `Instant`s to the millisecond changes no figure: the lookup experiment never evicts
/// (a full bucket's ping is answered alive, so the order of `last_seen` never decides a
/// promotion), and a node asks which buckets are due for a refresh once, at the end of its
/// self-lookup, before any of its buckets was looked up. A `u32` lasts 49 days of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Millis(u32);

impl Timestamp for Millis {
    fn saturating_duration_since(&self, earlier: Self) -> Duration {
        Duration::from_millis(u64::from(self.0.saturating_sub(earlier.0)))
    }
}

/// The routing table of a simulated node: `u64` keys, [`Millis`] timestamps.
pub(super) type Table = RoutingTable<NodeId, (), u64, Millis>;

/// What every node reads and none owns: one copy for the whole network.
pub(super) struct Shared {
    /// Every node's key (node `i` has `Key::hash(i as big-endian u32)`).
    pub(super) keys: Box<[Key]>,
    table: TableConfig,
    /// The parameters of the lookups nodes start (the strategy under test).
    config: RefCell<LookupConfig>,
    /// At most this many candidates per IP group in one lookup (the node's diversity rule).
    group_cap: Cell<Option<usize>>,
    /// The `Instant` of virtual time zero, as the first node built was given it (no node's clock
    /// is skewed in this experiment).
    epoch: OnceCell<Instant>,
}

impl Shared {
    /// The shared state of `nodes` nodes.
    ///
    /// # Panics
    ///
    /// If two nodes' keys share their first 64 bits, where tables of short keys could answer
    /// differently from tables of full keys (a chance of about `nodes² / 2^65`: none up to
    /// millions of nodes, and the keys are fixed by the node count).
    pub(super) fn new(nodes: u32, table: TableConfig, config: LookupConfig) -> Self {
        let keys: Box<[Key]> = (0..nodes).map(|i| Key::hash(&i.to_be_bytes())).collect();
        let mut shorts: Vec<u64> = keys.iter().map(short).collect();
        shorts.sort_unstable();
        assert!(
            shorts.windows(2).all(|w| w[0] != w[1]),
            "two of {nodes} node keys share their first 64 bits: the short-key tables would be inexact"
        );
        Self {
            keys,
            table,
            config: RefCell::new(config),
            group_cap: Cell::new(None),
            epoch: OnceCell::new(),
        }
    }

    /// Runs later lookups with `config` and at most `group_cap` candidates per IP group.
    pub(super) fn set_strategy(&self, config: LookupConfig, group_cap: Option<usize>) {
        *self.config.borrow_mut() = config;
        self.group_cap.set(group_cap);
    }

    fn k(&self) -> usize {
        self.config.borrow().k
    }

    fn node_count(&self) -> u32 {
        u32::try_from(self.keys.len()).expect("node ids are u32")
    }

    fn millis(&self, now: Instant) -> Millis {
        let epoch = *self.epoch.get().expect("set when the first node was built");
        let ms = now.saturating_duration_since(epoch).as_millis();
        Millis(u32::try_from(ms).expect("runs last less than 49 days of virtual time"))
    }
}

/// Fabricated identities (eclipse) are ids past the real nodes: `nodes + adversary × k + slot`.
/// Nothing answers them, and all of an adversary's fabrications share its IP group (the
/// addresses it poisons point into its own range).
fn group_of(peer: NodeId, real_nodes: u32, k: usize) -> u32 {
    if peer < real_nodes {
        peer
    } else {
        (peer - real_nodes) / u32::try_from(k).expect("k fits a u32")
    }
}

/// The tag of measured lookup `i` is `MEASURE_TAG | i`, whatever the strategy, so that both
/// strategies' messages meet the same fate (see [`SimNode::loss_key`]).
const MEASURE_TAG: u64 = 1 << 62;

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The join's lookup of the node's own key.
    JoinSelf,
    /// The join's lookup of a random key in a bucket due for a refresh.
    JoinRefresh,
    /// Measured lookup number `i`.
    Measure(u32),
}

/// FIND_NODE and its answer. `serial` identifies the origin's lookup, `tag` names it for the
/// loss decision.
pub(super) enum Msg {
    Request {
        serial: u64,
        tag: u64,
        /// 1 for the first request to this peer, 2 for its retry, …: a retry meets its own fate.
        attempt: u32,
        target: Key,
    },
    Response {
        serial: u64,
        tag: u64,
        attempt: u32,
        peers: Vec<(NodeId, Key)>,
    },
}

/// What a node reports to the experiment.
pub(super) enum Out {
    /// A request of a measured lookup went to `peer`.
    Queried { peer: NodeId },
    /// `from` answered measured lookup `lookup` while it ran.
    Answered { lookup: u32, from: NodeId },
    /// Measured lookup `lookup` ended.
    Finished {
        lookup: u32,
        result: LookupResult<NodeId>,
    },
    /// The join's self-lookup ended; these buckets are due for a refresh.
    JoinedSelf { due: Vec<u8> },
}

struct Query {
    serial: u64,
    tag: u64,
    kind: Kind,
    lookup: Lookup<NodeId>,
    /// Candidates admitted per IP group (when the group cap is on).
    groups: HashMap<u32, usize>,
    /// When to poll it again: the earliest deadline a `Wait` gave, kept until it passes even if
    /// later `Wait`s give later ones (an early poll is harmless; moving the node's deadline at
    /// every answer would cost a timer event each).
    timer_at: Option<Instant>,
}

/// One node: its table, its lookups, its outputs.
pub(super) struct LookupNode {
    id: NodeId,
    shared: Rc<Shared>,
    table: Table,
    /// No more insertions: the measurement runs every strategy on the same tables.
    frozen: bool,
    /// Set when this node is adversarial (boxed: few are).
    adversary: Option<Box<Adversary>>,
    /// The lookups running, oldest first (a handful at most).
    queries: Vec<Query>,
    next_serial: u64,
    outbox: VecDeque<(NodeId, Msg)>,
    events: VecDeque<Out>,
}

impl LookupNode {
    /// Node `id`, built at `now` (virtual time zero).
    pub(super) fn new(id: NodeId, shared: Rc<Shared>, now: Instant) -> Self {
        shared.epoch.get_or_init(|| now);
        let local = short(&shared.keys[id as usize]);
        let table = RoutingTable::new(local, shared.table.clone()).expect("validated");
        Self {
            id,
            shared,
            table,
            frozen: false,
            adversary: None,
            queries: Vec::new(),
            next_serial: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Turns this node adversarial.
    pub(super) fn turn(&mut self, adversary: Adversary) {
        self.adversary = Some(Box::new(adversary));
    }

    /// The number of entries in the table.
    pub(super) fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Gives back the slack of the table's buffers (for a table that stopped changing).
    pub(super) fn shrink(&mut self) {
        self.table.shrink_to_fit();
    }

    /// The bytes this node holds: its own struct and the heap it owns (table, lookups, queues),
    /// allocator overhead excluded. A pure function of the run, unlike the RSS.
    pub(super) fn state_bytes(&self) -> usize {
        size_of::<Self>()
            + self.table.heap_bytes()
            + self
                .adversary
                .as_ref()
                .map_or(0, |_| size_of::<Adversary>())
            + self.queries.capacity() * size_of::<Query>()
            + self.outbox.capacity() * size_of::<(NodeId, Msg)>()
            + self.events.capacity() * size_of::<Out>()
    }

    /// Whether this node is adversarial.
    pub(super) fn is_adversary(&self) -> bool {
        self.adversary.is_some()
    }

    fn real_nodes(&self) -> u32 {
        self.shared.node_count()
    }

    /// What an adversary answers to FIND_NODE `target`; `None`: it does not answer.
    fn adversarial_answer(&self, tag: u64, target: &Key) -> Option<Vec<(NodeId, Key)>> {
        let adversary = self.adversary.as_ref()?;
        let k = self.shared.k();
        match adversary.attack {
            Attack::Drop => None,
            Attack::Misroute => Some(
                adversary
                    .accomplices
                    .closest(target, k)
                    .into_iter()
                    .map(|n| (n, self.shared.keys[n as usize]))
                    .collect(),
            ),
            Attack::Eclipse => {
                // k identities "closer" than any real node (ids are cheap to mint near a
                // target), at addresses that answer nothing.
                let mut rng = ChaCha8Rng::seed_from_u64(hash_words(&[tag, u64::from(self.id)]));
                let base = self.real_nodes() + self.id * u32::try_from(k).expect("k fits a u32");
                Some(
                    (0..k)
                        .map(|slot| {
                            let id = base + u32::try_from(slot).expect("k fits a u32");
                            (id, target.random_in_bucket(200, &mut rng))
                        })
                        .collect(),
                )
            }
        }
    }

    /// Stops inserting into the table.
    pub(super) fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Inserts `peer` into the table (as libp2p does for every peer that answers or asks).
    pub(super) fn learn(&mut self, now: Instant, peer: NodeId) {
        if self.frozen || peer == self.id || peer >= self.real_nodes() {
            return;
        }
        let (now, key) = (
            self.shared.millis(now),
            short(&self.shared.keys[peer as usize]),
        );
        if let InsertOutcome::PingOldest { oldest } = self.table.insert(now, peer, key, ()) {
            // Tables only change during the join, when every node is up: the ping succeeds, and
            // answering it at once costs no message.
            self.table.ping_result(now, &oldest, true);
        }
    }

    /// Inserts `peer` as the fast join does, from global knowledge.
    pub(super) fn insert(&mut self, now: Instant, peer: NodeId) {
        let (now, key) = (
            self.shared.millis(now),
            short(&self.shared.keys[peer as usize]),
        );
        self.table.insert(now, peer, key, ());
    }

    /// The table's `k` closest peers to `target`, with their full keys.
    fn closest(&self, target: &Key) -> Vec<(NodeId, Key)> {
        self.table
            .closest(&short(target), self.shared.k())
            .into_iter()
            .map(|e| (e.peer, self.shared.keys[e.peer as usize]))
            .collect()
    }

    /// Starts a lookup of `target`, seeded with the table's closest and `extra` seeds.
    pub(super) fn start(&mut self, now: Instant, target: Key, kind: Kind, extra: &[(NodeId, Key)]) {
        let mut seeds = self.closest(&target);
        for seed in extra {
            if !seeds.iter().any(|(p, _)| *p == seed.0) {
                seeds.push(*seed);
            }
        }
        let config = self.shared.config.borrow().clone();
        let mut lookup = Lookup::new(now, target, seeds, config).expect("validated");
        lookup.ignore_peer(self.id);
        let serial = self.next_serial;
        self.next_serial += 1;
        let tag = match kind {
            Kind::Measure(i) => MEASURE_TAG | u64::from(i),
            Kind::JoinSelf | Kind::JoinRefresh => u64::from(self.id) << 32 | serial,
        };
        self.queries.push(Query {
            serial,
            tag,
            kind,
            lookup,
            groups: HashMap::new(),
            timer_at: None,
        });
        self.drive(self.queries.len() - 1, now);
    }

    fn position(&self, serial: u64) -> Option<usize> {
        self.queries.iter().position(|q| q.serial == serial)
    }

    /// Polls the lookup at `index` until it waits or ends, queueing its requests.
    fn drive(&mut self, index: usize, now: Instant) {
        let real_nodes = self.real_nodes();
        let q = &mut self.queries[index];
        let serial = q.serial;
        loop {
            match q.lookup.poll(now) {
                LookupAction::Send { peer } => {
                    if peer >= real_nodes {
                        // A fabricated identity: the request goes nowhere and times out.
                        continue;
                    }
                    if matches!(q.kind, Kind::Measure(_)) {
                        self.events.push_back(Out::Queried { peer });
                    }
                    let (tag, target) = (q.tag, *q.lookup.target());
                    let attempt = q.lookup.attempts_of(&peer);
                    self.outbox.push_back((
                        peer,
                        Msg::Request {
                            serial,
                            tag,
                            attempt,
                            target,
                        },
                    ));
                }
                LookupAction::Wait { until } => {
                    if q.timer_at.is_none_or(|t| until < t) {
                        q.timer_at = Some(until);
                    }
                    return;
                }
                LookupAction::Done => break,
            }
        }
        let q = self.queries.remove(index);
        if self.queries.is_empty() {
            // Most nodes are idle most of the run: keep no buffer for them.
            self.queries = Vec::new();
        }
        let target = *q.lookup.target();
        match q.kind {
            Kind::JoinSelf => {
                let due: Vec<u8> = self
                    .table
                    .buckets_due_for_refresh(self.shared.millis(now))
                    .into_iter()
                    .map(|b| b + SHORT_SHIFT)
                    .collect();
                if !due.is_empty() {
                    self.events.push_back(Out::JoinedSelf { due });
                }
            }
            Kind::JoinRefresh => {
                if !self.frozen {
                    let now = self.shared.millis(now);
                    self.table.mark_looked_up(now, &short(&target));
                }
            }
            Kind::Measure(lookup) => self.events.push_back(Out::Finished {
                lookup,
                result: q.lookup.result(),
            }),
        }
    }
}

/// Kademlia requests are datagram-like: a request to a dead node times out.
impl SimNode for LookupNode {
    type Message = Msg;
    type Event = Out;
    type Error = Infallible;

    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Msg) -> Result<(), Infallible> {
        match msg {
            Msg::Request {
                serial,
                tag,
                attempt,
                target,
            } => {
                self.learn(now, from);
                let peers = if self.adversary.is_some() {
                    match self.adversarial_answer(tag, &target) {
                        Some(peers) => peers,
                        None => return Ok(()),
                    }
                } else {
                    self.closest(&target)
                };
                self.outbox.push_back((
                    from,
                    Msg::Response {
                        serial,
                        tag,
                        attempt,
                        peers,
                    },
                ));
            }
            Msg::Response {
                serial, mut peers, ..
            } => {
                let Some(index) = self.position(serial) else {
                    // The lookup already ended.
                    return Ok(());
                };
                if let Kind::Measure(lookup) = self.queries[index].kind {
                    self.events.push_back(Out::Answered { lookup, from });
                }
                self.learn(now, from);
                if let Some(cap) = self.shared.group_cap.get() {
                    let (real_nodes, k) = (self.real_nodes(), self.shared.k());
                    let q = &mut self.queries[index];
                    peers.retain(|(peer, _)| {
                        if q.lookup.path_of(peer).is_some() {
                            return true; // already a candidate: counted when admitted
                        }
                        let n = q.groups.entry(group_of(*peer, real_nodes, k)).or_default();
                        *n += 1;
                        *n <= cap
                    });
                }
                self.queries[index].lookup.on_success(now, &from, peers);
                self.drive(index, now);
            }
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .queries
            .iter()
            .filter(|q| q.timer_at.is_some_and(|t| t <= now))
            .map(|q| q.serial)
            .collect();
        for serial in due {
            let index = self.position(serial).expect("due lookups are live");
            self.queries[index].timer_at = None;
            self.drive(index, now);
        }
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Msg)> {
        let next = self.outbox.pop_front();
        if next.is_none() && self.outbox.capacity() > 0 {
            // A burst of requests is over: give its buffer back (10,000 idle nodes add up).
            self.outbox = VecDeque::new();
        }
        next
    }

    fn poll_event(&mut self) -> Option<Out> {
        let next = self.events.pop_front();
        if next.is_none() && self.events.capacity() > 0 {
            // The experiment took them all: the buffer waits for the next event freed.
            self.events = VecDeque::new();
        }
        next
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.queries.iter().filter_map(|q| q.timer_at).min()
    }

    /// Keys and ids only, no framing: requests carry one key, answers a key and an id per peer.
    fn message_len(msg: &Msg) -> usize {
        match msg {
            Msg::Request { .. } => 32,
            Msg::Response { peers, .. } => 36 * peers.len(),
        }
    }

    /// A request and its answer are named by their lookup's tag, not by send order.
    fn loss_key(msg: &Msg) -> Option<u64> {
        // A first request keeps the key it had before retries existed (same fates, same figures).
        Some(match msg {
            Msg::Request { tag, attempt, .. } if *attempt <= 1 => hash_words(&[*tag, 0]),
            Msg::Response { tag, attempt, .. } if *attempt <= 1 => hash_words(&[*tag, 1]),
            Msg::Request { tag, attempt, .. } => hash_words(&[*tag, 0, u64::from(*attempt)]),
            Msg::Response { tag, attempt, .. } => hash_words(&[*tag, 1, u64::from(*attempt)]),
        })
    }
}
