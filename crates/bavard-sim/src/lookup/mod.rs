//! The lookup experiment: how fast and how well bavard's Kademlia lookup finds the k closest
//! nodes of a large network, against the classic stopping rule.
//!
//! **Network.** `nodes` routing tables ([`RoutingTable`](bavard_routing::RoutingTable), k-buckets of size k), node `i` having the
//! key `Key::hash(i as big-endian u32)`, placed on the latency plane of [`LatencyModel`].
//!
//! **Join** (Kademlia §2.3, libp2p's bootstrap): node 0 is the bootstrap. Node `i ≥ 1` starts
//! joining at `i × join_interval` of virtual time, so joins overlap (batches run concurrently): it
//! inserts node 0, looks up its own key through the network, then looks up one random key in every
//! bucket that [`RoutingTable::buckets_due_for_refresh`](bavard_routing::RoutingTable::buckets_due_for_refresh) lists. Every peer that answers a request
//! is inserted into the asker's table, and, as a server-mode libp2p node does, every node inserts
//! the peers that send it requests. A full bucket asks to ping its oldest entry; tables only change
//! during the join, when every node is up, so the node answers it as alive at once, without a
//! message. With `fast_join` the tables are
//! instead filled from global knowledge (up to k random members of every bucket), which is what a
//! long-running network converges to; use it for 50,000+ nodes.
//!
//! **Measurement.** Optionally a `churn` share of the nodes is killed (they keep their place in
//! other tables, so requests to them time out). Then the tables are frozen (no more insertions), so
//! every strategy runs on exactly the same network: `lookups` lookups for random keys from random
//! live nodes, all started together. A FIND_NODE travels the one-way link latency, is answered
//! with the receiver's `closest(target, k)`, and the answer travels back; with `loss` each message
//! is dropped with that probability (by a hash of lookup number, sender, receiver and direction,
//! so both strategies lose the same messages when they send the same ones) and the request
//! times out after `request_timeout`.
//!
//! **Strategies.** [`Strategy::Ours`]: the routing core's default termination
//! (`LookupConfig::default().termination`) with the configured α and k. [`Strategy::Baseline`]:
//! the classic rule as libp2p-kad runs it, α = 3, stop when the k closest known have answered.
//!
//! **Figures** ([`StrategyReport`]): a lookup succeeds if its result contains the true closest
//! live node other than its origin (a node never returns itself; for the local node "is it me?"
//! is not a network question); recall is the share of the true k closest (same rule, from a
//! [`KeyIndex`] of live keys) in its result; hops, messages, timeouts and virtual latency come from the lookup's own
//! [`LookupStats`](bavard_routing::LookupStats). `link_rtt_ms_mean` is the mean RTT of the links
//! the strategy's requests actually used (origin → queried peer).
//!
//! **Adversaries** (S/Kademlia's threat model): with `adversary = f`, a share `f` of the nodes,
//! chosen after the join (their tables and their places in others' tables are those of honest
//! nodes), turns hostile for the measurement and colludes ([`Attack`]): `drop` answers nothing,
//! `misroute` answers with the adversaries closest to the target, `eclipse` answers with k
//! fabricated identities closer to the target than any real node, at addresses that answer
//! nothing (the addresses of one adversary's fabrications lie in its own IP group). Lookups start
//! at honest nodes, and success and recall are measured against the honest live nodes.
//! **Defences** (on unless `defences = false`): `disjoint` paths, `attempts` requests per peer
//! (a lost request is retried), and at most 3 candidates per IP group in one lookup (the node's
//! `[kad] max_peers_per_ip_group`); honest nodes each have their own group. Off: one path, one
//! attempt, no group cap.
//!
//! **Memory** (issue 18): a node keeps its table in compact form (the first 64 bits of each key,
//! millisecond times: 16-byte entries) and shares the keys and the lookup parameters with every
//! other node (see `node.rs`), and its lookups and queues exist only while it runs one; tables
//! built by the fast join hold no slack. The figures stay those of tables of full keys. The report
//! gives the peak resident set (`peak_rss_mb`, `bytes_per_node`) and the nodes' computed state
//! (`state_bytes_per_node`, `table_entries_mean`) once the tables are built.
//!
//! The nodes run on the [harness](crate::harness) (datagram transport: a request to a dead node
//! times out); each is a [`RoutingTable`](bavard_routing::RoutingTable) plus the lookups it runs
//! (`node.rs`).

mod node;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_routing::{Key, LookupConfig, LookupResult, TableConfig, Termination};
use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use self::node::{Adversary, Kind, LookupNode, Out, Shared};
use crate::NodeId;
use crate::engine::SimTime;
use crate::error::SimError;
use crate::harness::{Fault, Harness, Network, Step};
use crate::keyspace::KeyIndex;
use crate::latency::{LatencyConfig, LatencyModel};
use crate::loss::Loss;
use crate::rng::{hash_words, seeded, stream};
use crate::stats::Samples;

/// Parameters of [`run_lookup_sim`].
#[derive(Debug, Clone, PartialEq)]
pub struct LookupSimConfig {
    /// Number of nodes (at least 2). Default 1,000.
    pub nodes: u32,
    /// Number of measured lookups per strategy (at least 1). Default 1,000.
    pub lookups: u32,
    /// The seed every random choice derives from. Default 0.
    pub seed: u64,
    /// α of our strategy (the baseline always uses 3). Default 3.
    pub alpha: usize,
    /// Bucket size and lookup result size. Default 20.
    pub k: usize,
    /// Probability that a message is lost, in `[0, 1)`. Default 0.
    pub loss: f64,
    /// Also run the classic baseline. Default false.
    pub baseline: bool,
    /// Fill tables from global knowledge instead of joining with lookups. Default false.
    pub fast_join: bool,
    /// Seed every measured lookup with the k closest live nodes, as a node whose gossip
    /// membership has converged knows them (the lookup then starts at the true closest nodes and
    /// should end after one round of requests). Default false.
    pub membership: bool,
    /// Share of nodes killed after the join, before measuring, in `[0, 1)`. Default 0.
    pub churn: f64,
    /// A request unanswered after this fails. Default 1 s (every link RTT is ≤ 300 ms).
    pub request_timeout: Duration,
    /// Virtual time between two joins. Default 10 ms.
    pub join_interval: Duration,
    /// The latency model.
    pub latency: LatencyConfig,
    /// Share of the nodes that turn adversarial after the join, in `[0, 1)`. Default 0.
    pub adversary: f64,
    /// What the adversaries do. Default [`Attack::Drop`].
    pub attack: Attack,
    /// Disjoint lookup paths of our strategy (with defences on). Default 1.
    pub disjoint: usize,
    /// Requests per peer of our strategy (with defences on): a timed-out request is retried.
    /// Default 2.
    pub attempts: u32,
    /// Disjoint paths, retries and the per-lookup IP-group cap; off, our strategy runs one path
    /// and one attempt with no cap. Default true.
    pub defences: bool,
}

/// What adversarial nodes do with the FIND_NODE requests they receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attack {
    /// Answer nothing (the request times out).
    Drop,
    /// Answer with the adversaries closest to the target, steering the lookup among them.
    Misroute,
    /// Answer with fabricated identities closer to the target than any real node, at addresses
    /// that answer nothing (address poisoning).
    Eclipse,
}

impl Attack {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Attack::Drop => "drop",
            Attack::Misroute => "misroute",
            Attack::Eclipse => "eclipse",
        }
    }
}

/// The cap on candidates per IP group in one lookup when defences are on (the node's default
/// `[kad] max_peers_per_ip_group`).
const GROUP_CAP: usize = 3;

impl Default for LookupSimConfig {
    fn default() -> Self {
        Self {
            nodes: 1_000,
            lookups: 1_000,
            seed: 0,
            alpha: 3,
            k: 20,
            loss: 0.0,
            baseline: false,
            fast_join: false,
            membership: false,
            churn: 0.0,
            request_timeout: Duration::from_secs(1),
            join_interval: Duration::from_millis(10),
            latency: LatencyConfig::default(),
            adversary: 0.0,
            attack: Attack::Drop,
            disjoint: 1,
            attempts: 2,
            defences: true,
        }
    }
}

impl LookupSimConfig {
    /// Checks that the configuration can run.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::TooFewNodes(self.nodes));
        }
        if self.lookups == 0 {
            return Err(SimError::NoLookups);
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(SimError::LossOutOfRange(self.loss));
        }
        let killed = (self.churn * f64::from(self.nodes)).round();
        if !(0.0..1.0).contains(&self.churn) || killed >= f64::from(self.nodes) {
            return Err(SimError::ChurnOutOfRange(self.churn));
        }
        let hostile = (self.adversary * f64::from(self.nodes)).round();
        if !(0.0..1.0).contains(&self.adversary) || killed + hostile >= f64::from(self.nodes) {
            return Err(SimError::AdversaryOutOfRange(self.adversary));
        }
        self.table_config().validate()?;
        for s in [Strategy::Ours, Strategy::Baseline] {
            self.lookup_config(s).validate()?;
        }
        Ok(())
    }

    fn table_config(&self) -> TableConfig {
        TableConfig {
            k: self.k,
            ..TableConfig::default()
        }
    }

    /// The lookup parameters a strategy runs with.
    pub fn lookup_config(&self, strategy: Strategy) -> LookupConfig {
        let base = LookupConfig {
            k: self.k,
            request_timeout: self.request_timeout,
            max_candidates: LookupConfig::default().max_candidates.max(4 * self.k),
            ..LookupConfig::default()
        };
        match strategy {
            Strategy::Ours if self.defences => LookupConfig {
                alpha: self.alpha,
                disjoint_paths: self.disjoint,
                attempts: self.attempts,
                ..base
            },
            Strategy::Ours => LookupConfig {
                alpha: self.alpha,
                attempts: 1,
                ..base
            },
            Strategy::Baseline => LookupConfig {
                alpha: 3,
                termination: Termination::Classic,
                attempts: 1,
                ..base
            },
        }
    }
}

/// A lookup strategy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The routing core's default termination with the configured α.
    Ours,
    /// libp2p-kad's classic rule: α = 3, stop when the k closest known have answered.
    Baseline,
}

impl Strategy {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Ours => "ours",
            Strategy::Baseline => "baseline",
        }
    }
}

/// The figures of one strategy. Every field but `wall_s`, `peak_rss_mb` and `bytes_per_node` is
/// a pure function of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    /// `"ours"` or `"baseline"`.
    pub strategy: String,
    /// Nodes in the network.
    pub nodes: u32,
    /// Nodes alive during the measurement.
    pub live_nodes: u32,
    /// Lookups measured.
    pub lookups: u32,
    /// How tables were built: `"lookups"` (real joins) or `"fast (global knowledge)"`.
    pub join: String,
    /// α and k of this strategy.
    pub alpha: usize,
    /// Result size k.
    pub k: usize,
    /// Message loss probability.
    pub loss: f64,
    /// Share of the nodes that were adversarial.
    pub adversary_fraction: f64,
    /// What they did (`null` without adversaries).
    pub attack: Option<Attack>,
    /// Whether the defences were on (disjoint paths, retries, group cap).
    pub defences: bool,
    /// Disjoint paths and requests per peer this strategy used.
    pub disjoint_paths: usize,
    /// Requests per peer.
    pub attempts: u32,
    /// Share of lookups whose result holds the true closest live node.
    pub success_rate: f64,
    /// Mean share of the true k closest live nodes found.
    pub recall_k_mean: f64,
    /// Median of the lookups' hop counts.
    pub hops_p50: f64,
    /// 99th percentile of the hop counts.
    pub hops_p99: f64,
    /// log2(N) / (1 + log2 k): the hops Kademlia's analysis predicts.
    pub hops_theory: f64,
    /// Mean FIND_NODE requests sent per lookup.
    pub messages_mean: f64,
    /// Mean requests per lookup that hit the request timeout.
    pub timeouts_mean: f64,
    /// Median virtual duration of a lookup, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile of the virtual durations.
    pub latency_ms_p99: f64,
    /// Median time from the start of a lookup to the answer of the true closest node (lookups
    /// that heard from it): how soon the result was in hand, whatever the stopping rule waits for.
    pub closest_answered_ms_p50: f64,
    /// Mean RTT of the links the requests used (origin → queried peer), in milliseconds.
    pub link_rtt_ms_mean: f64,
    /// Mean entries per routing table once the tables are built.
    pub table_entries_mean: f64,
    /// Messages sent per node while the tables were built (requests and answers of the joins'
    /// self-lookups and bucket refreshes; 0 with the fast join).
    pub join_messages_per_node: f64,
    /// Virtual seconds from the first join to the last join's end (0 with the fast join).
    pub join_virtual_s: f64,
    /// Wall-clock seconds the table building took.
    pub join_wall_s: f64,
    /// The nodes' own state once the tables are built, per node, in bytes: each node's struct
    /// and the heap it owns (its table's buckets and entries at their capacities), plus its share
    /// of what the nodes share (every node's key). Not counted: the allocator's overhead, the
    /// harness' per-node bookkeeping (~60 bytes) and the lookups in flight. A pure function of the
    /// configuration, unlike `bytes_per_node`: the regression check of
    /// `baseline/bytes_per_node.json` watches it.
    pub state_bytes_per_node: u64,
    /// Peak resident memory of the process, MiB (Linux; 0 elsewhere): see [`crate::memory`].
    pub peak_rss_mb: u64,
    /// The peak resident memory divided by the nodes, in bytes.
    pub bytes_per_node: u64,
    /// Wall-clock seconds from the start of the run (join included) to the end of this strategy.
    pub wall_s: f64,
}

/// Runs the lookup experiment: one report for [`Strategy::Ours`], then one for
/// [`Strategy::Baseline`] if `config.baseline`.
pub fn run_lookup_sim(config: &LookupSimConfig) -> Result<Vec<StrategyReport>, SimError> {
    config.validate()?;
    let wall = Instant::now();
    let mut sim = Sim::new(config);
    if config.fast_join {
        sim.fast_join();
    } else {
        sim.join_all();
    }
    sim.join_messages = sim.h.traffic().sent;
    sim.join_virtual_s = sim.h.now().as_micros() as f64 / 1e6;
    sim.join_wall_s = wall.elapsed().as_secs_f64();
    sim.churn();
    sim.turn_adversaries();
    for i in 0..config.nodes {
        sim.h.node_mut(i).freeze();
    }
    sim.measure_state();

    // Lookups start at honest nodes and are judged against honest ones.
    let live: Vec<NodeId> = (0..config.nodes)
        .filter(|&n| sim.h.is_up(n) && !sim.h.node(n).is_adversary())
        .collect();
    let index = KeyIndex::new(
        live.iter()
            .map(|&n| (sim.shared.keys[n as usize], n))
            .collect(),
    );
    let mut rng = seeded(config.seed, stream::WORKLOAD);
    let workload: Vec<(NodeId, Key)> = (0..config.lookups)
        .map(|_| {
            let origin = live[rng.random_range(0..live.len())];
            (origin, Key::random(&mut rng))
        })
        .collect();

    // The origin never returns itself: the truth is the k closest other live nodes.
    let truths: Vec<Vec<NodeId>> = workload
        .iter()
        .map(|(origin, target)| {
            let mut truth = index.closest(target, config.k + 1);
            truth.retain(|n| n != origin);
            truth.truncate(config.k);
            truth
        })
        .collect();
    sim.truth_first = truths.iter().map(|t| t.first().copied()).collect();
    if config.membership {
        sim.membership_seeds = truths
            .iter()
            .map(|t| {
                t.iter()
                    .map(|&n| (n, sim.shared.keys[n as usize]))
                    .collect()
            })
            .collect();
    }

    let mut strategies = vec![Strategy::Ours];
    if config.baseline {
        strategies.push(Strategy::Baseline);
    }
    let mut reports = Vec::new();
    for strategy in strategies {
        let results = sim.measure(strategy, &workload);
        reports.push(sim.report(strategy, &truths, &results, wall));
    }
    Ok(reports)
}

/// The experiment's own events.
enum Event {
    /// Node `i` joins through the bootstrap node 0.
    StartJoin(NodeId),
}

/// What the experiment tracks; the harness holds the nodes.
struct Sim<'a> {
    config: &'a LookupSimConfig,
    h: Harness<LookupNode, Event>,
    /// The keys and the lookup parameters, which every node reads.
    shared: Rc<Shared>,
    /// For the RTT of the links the requests use (the harness has its own copy).
    latency: LatencyModel,
    /// Refresh keys and fast-join tables.
    rng: ChaCha8Rng,
    results: Vec<Option<LookupResult<NodeId>>>,
    /// Per measured lookup: the true closest node, and when its answer reached the origin.
    truth_first: Vec<Option<NodeId>>,
    /// Extra seeds per measured lookup (the converged membership view), when enabled.
    membership_seeds: Vec<Vec<(NodeId, Key)>>,
    closest_answered: Vec<Option<SimTime>>,
    measure_start: SimTime,
    rtt_sum_ms: f64,
    rtt_count: u64,
    /// `(entries, bytes)` per node once the tables are built: see [`StrategyReport`].
    table_entries_mean: f64,
    join_messages: u64,
    join_virtual_s: f64,
    join_wall_s: f64,
    state_bytes_per_node: u64,
}

impl<'a> Sim<'a> {
    fn new(config: &'a LookupSimConfig) -> Self {
        let latency = LatencyModel::random(
            config.nodes,
            config.latency,
            &mut seeded(config.seed, stream::LATENCY),
        );
        let shared = Rc::new(Shared::new(
            config.nodes,
            config.table_config(),
            config.lookup_config(Strategy::Ours),
        ));
        let for_nodes = shared.clone();
        let h = Network::new(config.nodes, latency.clone())
            .with_loss(Loss::new(config.loss, hash_words(&[config.seed, 0x1055])))
            .build(move |id, now| LookupNode::new(id, for_nodes.clone(), now));
        Self {
            config,
            h,
            shared,
            latency,
            rng: seeded(config.seed, stream::JOIN),
            results: Vec::new(),
            truth_first: Vec::new(),
            membership_seeds: Vec::new(),
            closest_answered: Vec::new(),
            measure_start: SimTime::ZERO,
            rtt_sum_ms: 0.0,
            rtt_count: 0,
            table_entries_mean: 0.0,
            join_messages: 0,
            join_virtual_s: 0.0,
            join_wall_s: 0.0,
            state_bytes_per_node: 0,
        }
    }

    /// Measures the built tables: mean entries and state bytes per node.
    fn measure_state(&mut self) {
        let n = self.config.nodes;
        let (mut entries, mut bytes) = (0usize, size_of_val(&*self.shared.keys));
        for i in 0..n {
            let node = self.h.node(i);
            entries += node.table_len();
            bytes += node.state_bytes();
        }
        self.table_entries_mean = entries as f64 / f64::from(n);
        self.state_bytes_per_node = (bytes / n as usize) as u64;
    }

    fn join_all(&mut self) {
        for node in 1..self.config.nodes {
            let at = SimTime::ZERO.after(self.config.join_interval * node);
            self.h.schedule(at, Event::StartJoin(node));
        }
        self.run();
    }

    fn fast_join(&mut self) {
        let index = KeyIndex::new(self.shared.keys.iter().copied().zip(0..).collect());
        let k = self.config.k;
        for node in 0..self.config.nodes {
            let now = self.h.local_time(node);
            let local = self.shared.keys[node as usize];
            for bucket in (0..=255u8).rev() {
                let p = 255 - u32::from(bucket);
                // Nodes sharing p + 1 leading bits with us: only us left means every deeper
                // bucket is empty too.
                if index.prefix_range(&local, p + 1).len() <= 1 {
                    break;
                }
                let range = index.bucket_range(&local, bucket);
                let members = &index.entries()[range];
                let chosen: Vec<usize> = if members.len() <= k {
                    (0..members.len()).collect()
                } else {
                    sample(&mut self.rng, members.len(), k).into_vec()
                };
                for i in chosen {
                    self.h.node_mut(node).insert(now, members[i].1);
                }
            }
            // The table is complete: no slack in its buffers.
            self.h.node_mut(node).shrink();
        }
    }

    fn churn(&mut self) {
        let n = self.config.nodes;
        let killed = (self.config.churn * f64::from(n)).round() as usize;
        if killed == 0 {
            return;
        }
        let mut rng = seeded(self.config.seed, stream::CHURN);
        for i in sample(&mut rng, n as usize, killed) {
            self.h.inject(Fault::Crash(i as NodeId));
        }
    }

    /// Turns `adversary × nodes` live nodes hostile (none if 0).
    fn turn_adversaries(&mut self) {
        let n = self.config.nodes;
        let count = (self.config.adversary * f64::from(n)).round() as usize;
        if count == 0 {
            return;
        }
        let live: Vec<NodeId> = (0..n).filter(|&i| self.h.is_up(i)).collect();
        let mut rng = seeded(self.config.seed, stream::ADVERSARY);
        let chosen: Vec<NodeId> = sample(&mut rng, live.len(), count.min(live.len()))
            .into_iter()
            .map(|i| live[i])
            .collect();
        let accomplices = Rc::new(KeyIndex::new(
            chosen
                .iter()
                .map(|&a| (self.shared.keys[a as usize], a))
                .collect(),
        ));
        for a in chosen {
            self.h.node_mut(a).turn(Adversary {
                attack: self.config.attack,
                accomplices: accomplices.clone(),
            });
        }
    }

    /// Runs every lookup of the workload with `strategy`, all started now; returns their results.
    fn measure(
        &mut self,
        strategy: Strategy,
        workload: &[(NodeId, Key)],
    ) -> Vec<LookupResult<NodeId>> {
        let lookup_config = self.config.lookup_config(strategy);
        let group_cap = (strategy == Strategy::Ours && self.config.defences).then_some(GROUP_CAP);
        self.shared.set_strategy(lookup_config, group_cap);
        self.results = vec![None; workload.len()];
        self.closest_answered = vec![None; workload.len()];
        self.measure_start = self.h.now();
        self.rtt_sum_ms = 0.0;
        self.rtt_count = 0;
        for (i, &(origin, target)) in workload.iter().enumerate() {
            let extra = self.membership_seeds.get(i).map_or(&[][..], Vec::as_slice);
            let i = u32::try_from(i).expect("lookups is a u32");
            self.h
                .act(origin, |node, now| {
                    node.start(now, target, Kind::Measure(i), extra);
                })
                .expect("origins are alive");
        }
        self.run();
        std::mem::take(&mut self.results)
            .into_iter()
            .map(|r| r.expect("every lookup ends: the queue ran dry"))
            .collect()
    }

    /// Runs until nothing is left to run.
    fn run(&mut self) {
        while let Some(step) = self.h.step() {
            match step {
                Step::External {
                    event: Event::StartJoin(node),
                    ..
                } => {
                    let target = self.shared.keys[node as usize];
                    self.h.act(node, |n, now| {
                        n.learn(now, 0);
                        n.start(now, target, Kind::JoinSelf, &[]);
                    });
                }
                Step::Output { at, node, events } => {
                    for event in events {
                        self.observe(at, node, event);
                    }
                }
            }
        }
    }

    fn observe(&mut self, at: SimTime, node: NodeId, event: Out) {
        match event {
            Out::JoinedSelf { due } => {
                let local = self.shared.keys[node as usize];
                let targets: Vec<Key> = due
                    .into_iter()
                    .map(|b| local.random_in_bucket(b, &mut self.rng))
                    .collect();
                self.h.act(node, |n, now| {
                    for target in targets {
                        n.start(now, target, Kind::JoinRefresh, &[]);
                    }
                });
            }
            Out::Queried { peer } => {
                self.rtt_sum_ms += self.latency.rtt(node, peer).as_secs_f64() * 1000.0;
                self.rtt_count += 1;
            }
            Out::Answered { lookup, from } => {
                if self.truth_first[lookup as usize] == Some(from) {
                    self.closest_answered[lookup as usize].get_or_insert(at);
                }
            }
            Out::Finished { lookup, result } => self.results[lookup as usize] = Some(result),
        }
    }

    fn report(
        &self,
        strategy: Strategy,
        truths: &[Vec<NodeId>],
        results: &[LookupResult<NodeId>],
        wall: Instant,
    ) -> StrategyReport {
        let k = self.config.k;
        let mut successes = 0u32;
        let mut recall = Samples::new();
        let mut hops = Samples::new();
        let mut messages = Samples::new();
        let mut timeouts = Samples::new();
        let mut latency = Samples::new();
        let mut closest_answered = Samples::new();
        for t in self.closest_answered.iter().flatten() {
            let since = t.as_micros() - self.measure_start.as_micros();
            closest_answered.push(since as f64 / 1000.0);
        }
        for (truth, result) in truths.iter().zip(results) {
            let found = |n: &NodeId| result.peers.iter().any(|(p, _)| p == n);
            if truth.first().is_some_and(found) {
                successes += 1;
            }
            let hits = truth.iter().filter(|n| found(n)).count();
            recall.push(hits as f64 / truth.len().max(1) as f64);
            hops.push(f64::from(result.stats.hops));
            messages.push(f64::from(result.stats.messages_sent));
            timeouts.push(f64::from(result.stats.timeouts));
            latency.push(result.stats.elapsed.as_secs_f64() * 1000.0);
        }
        let n = f64::from(self.config.nodes);
        let cfg = self.config.lookup_config(strategy);
        StrategyReport {
            strategy: strategy.name().to_owned(),
            nodes: self.config.nodes,
            live_nodes: self.h.up_count(),
            lookups: self.config.lookups,
            join: match (self.config.fast_join, self.config.membership) {
                (true, false) => "fast (global knowledge)".to_owned(),
                (false, false) => "lookups".to_owned(),
                (true, true) => "fast (global knowledge) + membership seeds".to_owned(),
                (false, true) => "lookups + membership seeds".to_owned(),
            },
            alpha: cfg.alpha,
            k,
            loss: self.config.loss,
            adversary_fraction: self.config.adversary,
            attack: (self.config.adversary > 0.0).then_some(self.config.attack),
            defences: strategy == Strategy::Ours && self.config.defences,
            disjoint_paths: cfg.disjoint_paths,
            attempts: cfg.attempts,
            success_rate: f64::from(successes) / f64::from(self.config.lookups),
            recall_k_mean: recall.mean(),
            hops_p50: hops.percentile(50.0),
            hops_p99: hops.percentile(99.0),
            hops_theory: n.log2() / (1.0 + (k as f64).log2()),
            messages_mean: messages.mean(),
            timeouts_mean: timeouts.mean(),
            latency_ms_p50: latency.percentile(50.0),
            latency_ms_p99: latency.percentile(99.0),
            closest_answered_ms_p50: closest_answered.percentile(50.0),
            link_rtt_ms_mean: if self.rtt_count == 0 {
                0.0
            } else {
                self.rtt_sum_ms / self.rtt_count as f64
            },
            table_entries_mean: self.table_entries_mean,
            join_messages_per_node: self.join_messages as f64 / n,
            join_virtual_s: self.join_virtual_s,
            join_wall_s: self.join_wall_s,
            state_bytes_per_node: self.state_bytes_per_node,
            peak_rss_mb: crate::memory::peak_rss_mb(),
            bytes_per_node: crate::memory::bytes_per_node(self.config.nodes),
            wall_s: wall.elapsed().as_secs_f64(),
        }
    }
}
