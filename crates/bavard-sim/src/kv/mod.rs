//! The replicated-store experiment: bavard's replica core (`bavard-replica`: quorum writes with
//! hinted handoff, quorum reads with read repair, anti-entropy over digest trees) and its SWIM
//! membership, on N simulated nodes under partitions, crashes and clock skew, judged by the
//! history checker of `bavard-tests` (Jepsen-style: record every client operation, then check
//! the history against the final state).
//!
//! **Cluster.** `nodes` [`KvNode`]s (`node.rs`) on the latency plane of [`LatencyModel`], each
//! with its own clock offset drawn in `[-skew, skew]`. The membership starts converged (every
//! node is handed the full member list, as a seed's push-pull answer would); every node places
//! keys over its own view (alive and suspect members), each key on the `replication` closest
//! (Dynamo's preference list, [`bavard_replica::Placement`]). Placements and leaf maps are
//! shared between nodes whose views agree (`views.rs`).
//!
//! **Clients.** `clients` clients each run one operation at a time through a random live node
//! (the coordinator; the client sits next to it), with 1–10 ms between operations, until
//! `ops` operations were issued (`workload.rs`: puts, deletes and gets at every consistency
//! level, unique values). An operation ends `ok`; `fail` (a get too few replicas answered);
//! or `unknown`: a put or delete too few replicas acknowledged (the coordinator's quorum error
//! is no refusal: the replicas that stored the record keep it and hints and anti-entropy spread
//! it, so the write may well take effect; it is recorded with the version it tried to write), or
//! an operation that got no answer within `client_timeout` (its coordinator crashed).
//!
//! **Faults** (`schedule.rs`): `partitions` partitions into two random halves for
//! `partition_for`, and `kills` crashes of one node for `down_for`, restarted with its store,
//! hints and clock (durable), spread over the workload; at most one replica set's worth of
//! replicas down at a time, and partitions apart from crashes.
//!
//! **End.** Once every operation ended, the partition (if any) heals and every crashed node
//! restarts; then the run waits (virtual time, checked every second, at most `converge_cap`)
//! until every replica of every key written holds the newest version any node holds (in its
//! store or as a hint): `converged`, `convergence_s` from the heal. Then every key is read
//! once more at quorum (the final reads), and the history is judged:
//!
//! - [`check`]: lost writes (an acknowledged write whose value is gone and not superseded) and
//!   phantom reads (a value nobody wrote);
//! - [`stale_reads`]: a read that returned a version older than a write acknowledged before it
//!   started, counting only the pairs R + W > N covers: writes and deletes at quorum or all, and
//!   reads at quorum or all (with N = 3 each is at least a quorum, so any such pair overlaps).
//!
//! A run is a pure function of its configuration: everything but `wall_s`, `peak_rss_mb` and `bytes_per_node`
//! replays exactly from the seed.

mod cas;
mod node;
mod schedule;
mod views;
mod workload;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_gossip::membership::{MemberState, Membership, MembershipConfig, Update};
use bavard_replica::{HandoffPolicy, LeafMap, Placement, SyncConfig};
use bavard_routing::Key;
use bavard_store::{RecordStore as _, Version};
use bavard_tests::{FinalRead, Op, OpKind, Outcome, check, stale_reads};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use self::cas::CasReport;
use self::cas::{CasClients, InFlight};
pub use self::node::{Broken, Consistency};
use self::node::{ClientOp, KvNode, OpResult, Out, Shared};
use self::schedule::{FaultKind, Schedule, halves};
use self::views::{Views, node_key};
use crate::NodeId;
use crate::engine::SimTime;
use crate::error::SimError;
use crate::harness::{Fault, Harness, Network, Partition, Restart, Skew, Step};
use crate::latency::{LatencyConfig, LatencyModel};
use crate::rng::{seeded, stream};

/// How often faults and convergence are checked.
const TICK: Duration = Duration::from_secs(1);

/// Parameters of [`run_kv_sim`].
#[derive(Debug, Clone, PartialEq)]
pub struct KvSimConfig {
    /// Number of nodes (at least 2). Default 1,000.
    pub nodes: u32,
    /// Concurrent clients (at least 1). Default 50.
    pub clients: u32,
    /// Operations issued in all. Default 100,000.
    pub ops: u64,
    /// Distinct keys the clients use. Default 1,000.
    pub keys: u32,
    /// Network partitions during the workload. Default 0.
    pub partitions: u32,
    /// How long each partition lasts. Default 5 s (shorter than the failure detector takes to
    /// declare a member dead, see the docs of `bavard-sim kv`).
    pub partition_for: Duration,
    /// Node crashes (each followed by a restart with the state kept). Default 0.
    pub kills: u32,
    /// How long a crashed node stays down. Default 20 s (long enough to be declared dead).
    pub down_for: Duration,
    /// The least time between a node's restart or a heal and the next fault that may touch the
    /// same keys. Default 10 s.
    pub fault_gap: Duration,
    /// Largest clock offset of a node, either way. Default 0.
    pub skew: Duration,
    /// The seed every random choice derives from. Default 0.
    pub seed: u64,
    /// Replicas per key (N). Default 3.
    pub replication: usize,
    /// Fallbacks a write may hand hints to, beyond the preference list. Default 6.
    pub fallbacks: usize,
    /// Replica request timeout. Default 2 s.
    pub request_timeout: Duration,
    /// How long a client waits for its coordinator before the outcome is unknown. Default 10 s.
    pub client_timeout: Duration,
    /// Anti-entropy: a round with the next partner this often. Default 10 s (the node's).
    pub anti_entropy_interval: Duration,
    /// Hint delivery period. Default 5 s (the node's).
    pub hint_interval: Duration,
    /// Time between the (converged) start and the first client operation. Default 5 s.
    pub warmup: Duration,
    /// How long convergence is waited for after the heal. Default 600 s.
    pub converge_cap: Duration,
    /// The membership core's parameters. Default: the LAN profile.
    pub membership: MembershipConfig,
    /// The latency model.
    pub latency: LatencyConfig,
    /// Deliberately broken variants (tests only). Default: none.
    pub broken: Broken,
    /// The compare-and-set experiment instead of the mixed workload: clients increment
    /// counters on the `keys` hot keys by serial read then compare-and-set (see `cas.rs`), and
    /// the history goes to the linearizability checker. Default: off.
    pub cas: bool,
}

impl Default for KvSimConfig {
    fn default() -> Self {
        Self {
            nodes: 1_000,
            clients: 50,
            ops: 100_000,
            keys: 1_000,
            partitions: 0,
            partition_for: Duration::from_secs(5),
            kills: 0,
            down_for: Duration::from_secs(20),
            fault_gap: Duration::from_secs(10),
            skew: Duration::ZERO,
            seed: 0,
            replication: 3,
            fallbacks: 6,
            request_timeout: Duration::from_secs(2),
            client_timeout: Duration::from_secs(10),
            anti_entropy_interval: Duration::from_secs(10),
            hint_interval: Duration::from_secs(5),
            warmup: Duration::from_secs(5),
            converge_cap: Duration::from_secs(600),
            membership: MembershipConfig::lan(),
            latency: LatencyConfig::default(),
            broken: Broken::default(),
            cas: false,
        }
    }
}

impl KvSimConfig {
    /// Checks that the configuration can run.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::TooFewNodes(self.nodes));
        }
        if self.clients == 0 {
            return Err(SimError::NoClients);
        }
        if self.replication == 0 || self.replication > self.nodes as usize {
            return Err(SimError::BadReplication {
                n: self.replication,
                nodes: self.nodes,
            });
        }
        if self.skew > Skew::MAX {
            return Err(SimError::SkewTooLarge(self.skew));
        }
        Ok(())
    }
}

/// Operations that ended `ok` per kind and consistency level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LevelCounts {
    /// At consistency one.
    pub one: u64,
    /// At quorum.
    pub quorum: u64,
    /// At all.
    pub all: u64,
}

impl LevelCounts {
    fn add(&mut self, level: Consistency) {
        match level {
            Consistency::One => self.one += 1,
            Consistency::Quorum => self.quorum += 1,
            Consistency::All => self.all += 1,
        }
    }
}

/// The figures and the verdict of one run. Every field but `wall_s`, `peak_rss_mb` and `bytes_per_node` is a
/// pure function of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvReport {
    /// Nodes.
    pub nodes: u32,
    /// Clients.
    pub clients: u32,
    /// Seed.
    pub seed: u64,
    /// Operations issued.
    pub ops: u64,
    /// Operations acknowledged (`ok`).
    pub ops_ok: u64,
    /// Operations refused (`fail`: too few replicas answered).
    pub ops_fail: u64,
    /// Operations whose outcome the client could not tell (`unknown`).
    pub ops_unknown: u64,
    /// Acknowledged puts per consistency level.
    pub puts_ok: LevelCounts,
    /// Acknowledged deletes per consistency level.
    pub deletes_ok: LevelCounts,
    /// Successful gets per consistency level.
    pub gets_ok: LevelCounts,
    /// Acknowledged writes the final state lost.
    pub lost_writes: usize,
    /// Reads of values nobody wrote.
    pub phantom_reads: usize,
    /// Quorum reads older than a quorum write acknowledged before they started.
    pub stale_reads: usize,
    /// Whether every replica of every key held its newest version before the cap.
    pub converged: bool,
    /// Virtual seconds from the heal to convergence (or to the cap).
    pub convergence_s: f64,
    /// Replica-protocol messages (coordination, read repair, hints, anti-entropy, requests and
    /// answers) per client operation, until the heal.
    pub msgs_per_op: f64,
    /// Membership messages per node per virtual second, until the heal.
    pub swim_msgs_per_node_s: f64,
    /// Hints fallbacks accepted for replicas that did not answer a write.
    pub hints_handed: u64,
    /// Hints handed over to their owners.
    pub hints_delivered: u64,
    /// Hints still queued at the end.
    pub hints_left: u64,
    /// Replicas that accepted a read repair.
    pub read_repairs: u64,
    /// Anti-entropy rounds completed.
    pub ae_rounds: u64,
    /// Anti-entropy rounds abandoned (a peer that did not answer, …).
    pub ae_failed: u64,
    /// Keys pulled or pushed by anti-entropy.
    pub ae_keys_moved: u64,
    /// Versions refused because they were too far ahead of the receiver's clock.
    pub clock_refusals: u64,
    /// Partitions that happened during the workload.
    pub partitions_run: u32,
    /// Crashes that happened during the workload.
    pub kills_run: u32,
    /// Faults still waiting for their turn when the workload ended (not run).
    pub faults_skipped: usize,
    /// Distinct member sets placements were built for.
    pub placements_built: u64,
    /// Leaf maps built (one per member set some node ran anti-entropy over).
    pub leaf_maps_built: u64,
    /// Messages the cores rejected (should be 0).
    pub rejected: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// The first problems the checker found (at most 5 of each kind).
    pub examples: Vec<String>,
    /// The compare-and-set run's figures and verdict (`--cas` only; its fields appear at the
    /// top level of the JSON).
    #[serde(flatten)]
    pub cas: Option<CasReport>,
    /// Peak resident memory of the process, MiB (Linux; 0 elsewhere): see [`crate::memory`].
    pub peak_rss_mb: u64,
    /// The peak resident memory divided by the nodes, in bytes.
    pub bytes_per_node: u64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
}

impl KvReport {
    /// Whether the checker found nothing and the replicas converged.
    pub fn is_valid(&self) -> bool {
        self.lost_writes == 0
            && self.phantom_reads == 0
            && self.stale_reads == 0
            && self.converged
            && self.cas.as_ref().is_none_or(CasReport::is_valid)
    }
}

/// Runs the replicated-store experiment.
pub fn run_kv_sim(config: &KvSimConfig) -> Result<KvReport, SimError> {
    config.validate()?;
    let wall = Instant::now();
    let (mut h, shared) = cluster(config);
    let mut sim = Sim::new(config, shared);
    sim.run(&mut h);
    Ok(sim.report(&h, wall))
}

/// The experiment's own events.
#[derive(Debug)]
enum Event {
    /// Faults and convergence are checked.
    Tick,
    /// Client `c` issues its next operation.
    ClientNext(usize),
    /// Client `c` gives up waiting for operation `op`.
    ClientTimeout(usize, u64),
    /// A crashed node comes back.
    Restart(NodeId),
    /// The partition heals.
    Heal,
}

fn cluster(config: &KvSimConfig) -> (Harness<KvNode, Event>, Rc<Shared>) {
    let n = config.nodes;
    let latency =
        LatencyModel::random(n, config.latency, &mut seeded(config.seed, stream::LATENCY));
    let shared = Rc::new(Shared {
        nodes: n,
        n: config.replication,
        fallbacks: config.fallbacks,
        request_timeout: config.request_timeout,
        // Decided as it stands a second before the client gives up (the node decides at 90%
        // of its request deadline, for the same reason: the client hears a known outcome).
        cas_deadline: config
            .client_timeout
            .saturating_sub(Duration::from_secs(1))
            .max(config.request_timeout),
        ae_check: Duration::from_secs(1).min(config.anti_entropy_interval),
        ae_interval: config.anti_entropy_interval,
        hint_interval: config.hint_interval,
        sync: SyncConfig::default(),
        handoff: HandoffPolicy {
            ttl_ms: 3 * 3600 * 1000,
            max_records: SyncConfig::default().max_batch_records,
            max_bytes: SyncConfig::default().max_batch_bytes,
        },
        broken: config.broken.clone(),
        views: RefCell::new(Views::new(n, config.replication)),
    });
    let mut network = Network::new(n, latency);
    let mut skews = vec![Skew::NONE; n as usize];
    if !config.skew.is_zero() {
        let mut rng = seeded(config.seed, stream::SKEW);
        let max = config.skew.as_micros() as i64;
        for (i, s) in skews.iter_mut().enumerate() {
            let us = rng.random_range(-max..=max);
            *s = if us >= 0 {
                Skew::ahead(Duration::from_micros(us as u64))
            } else {
                Skew::behind(Duration::from_micros(us.unsigned_abs()))
            };
            network = network.with_skew(i as NodeId, *s);
        }
    }
    let (seed, membership, ae_interval) = (
        config.seed,
        config.membership.clone(),
        config.anti_entropy_interval,
    );
    let for_nodes = shared.clone();
    let h = network.build(move |id, now| {
        let mut rng = seeded(seed, stream::NODES + u64::from(id));
        let phase = ae_interval.mul_f64(rng.random::<f64>());
        let swim = Membership::new(id, id.to_be_bytes().to_vec(), membership.clone(), rng, now);
        let epoch = skews[id as usize].remove(now);
        KvNode::new(id, for_nodes.clone(), swim, now, epoch, phase)
    });
    (h, shared)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Workload,
    Converging,
    FinalReads,
    Done,
}

struct Pending {
    op: u64,
    client: usize,
    what: ClientOp,
    level: Consistency,
    invoked: SimTime,
    /// The compare-and-set run's view of the operation.
    cas: Option<InFlight>,
}

/// What the experiment tracks; the harness holds the cluster.
struct Sim<'a> {
    config: &'a KvSimConfig,
    shared: Rc<Shared>,
    phase: Phase,
    client_rngs: Vec<ChaCha8Rng>,
    client_seq: Vec<u64>,
    client_done: Vec<bool>,
    pick: ChaCha8Rng,
    faults_rng: ChaCha8Rng,
    issued: u64,
    next_op: u64,
    pending: BTreeMap<u64, Pending>,
    history: Vec<Op>,
    levels: HashMap<(usize, u64), Consistency>,
    counts: (LevelCounts, LevelCounts, LevelCounts),
    schedule: Schedule,
    /// The full membership's placement and leaf map: the ground truth for replicas and for
    /// which nodes share keys.
    full: Placement<NodeId>,
    full_map: LeafMap,
    down: BTreeMap<NodeId, SimTime>,
    /// Nodes back up, and when.
    back: Vec<(NodeId, SimTime)>,
    partition_until: Option<SimTime>,
    last_heal: Option<SimTime>,
    partitions_run: u32,
    kills_run: u32,
    heal_at: Option<SimTime>,
    converged_at: Option<SimTime>,
    at_heal: (u64, u64),
    finals: Vec<FinalRead>,
    final_pending: BTreeMap<u64, String>,
    /// The compare-and-set clients (`--cas`).
    cas: Option<CasClients>,
    /// Final serial reads in flight: op → key, invoked.
    cas_finals: BTreeMap<u64, (String, SimTime)>,
}

impl<'a> Sim<'a> {
    fn new(config: &'a KvSimConfig, shared: Rc<Shared>) -> Self {
        let clients = config.clients as usize;
        let full = Placement::new(
            (0..config.nodes).map(|i| (i, node_key(i))),
            config.replication,
        );
        let full_map = LeafMap::new(&full);
        let mut faults_rng = seeded(config.seed, stream::CHURN);
        let schedule = Schedule::new(
            config.partitions,
            config.kills,
            config.ops,
            config.fault_gap,
            &mut faults_rng,
        );
        Self {
            config,
            shared,
            phase: Phase::Workload,
            client_rngs: (0..clients)
                .map(|c| seeded(config.seed, stream::CLIENTS + c as u64))
                .collect(),
            client_seq: vec![0; clients],
            client_done: vec![false; clients],
            pick: seeded(config.seed, stream::WORKLOAD),
            faults_rng,
            issued: 0,
            next_op: 0,
            pending: BTreeMap::new(),
            history: Vec::new(),
            levels: HashMap::new(),
            counts: Default::default(),
            schedule,
            full,
            full_map,
            down: BTreeMap::new(),
            back: Vec::new(),
            partition_until: None,
            last_heal: None,
            partitions_run: 0,
            kills_run: 0,
            heal_at: None,
            converged_at: None,
            at_heal: (0, 0),
            finals: Vec::new(),
            final_pending: BTreeMap::new(),
            cas: config.cas.then(|| CasClients::new(clients, config.keys)),
            cas_finals: BTreeMap::new(),
        }
    }

    fn run(&mut self, h: &mut Harness<KvNode, Event>) {
        self.bootstrap(h);
        let start = SimTime::ZERO.after(self.config.warmup);
        for c in 0..self.config.clients as usize {
            h.schedule(
                start.after(Duration::from_millis(c as u64)),
                Event::ClientNext(c),
            );
        }
        h.schedule(SimTime::ZERO.after(TICK), Event::Tick);
        while self.phase != Phase::Done {
            let Some(step) = h.step() else { break };
            match step {
                Step::External { at, event } => self.on_event(h, at, event),
                Step::Output { at, events, .. } => {
                    for Out::Done { op, result } in events {
                        self.on_done(h, at, op, result);
                    }
                }
            }
        }
    }

    /// Every node learns every member, alive, as from a seed's push-pull answer.
    fn bootstrap(&mut self, h: &mut Harness<KvNode, Event>) {
        let states: Vec<Update<NodeId>> = (0..self.config.nodes)
            .map(|id| Update {
                member: id,
                incarnation: 0,
                state: MemberState::Alive,
                meta: id.to_be_bytes().to_vec(),
                from: id,
                signature: Vec::new(),
            })
            .collect();
        for id in 0..self.config.nodes {
            let from = if id == 0 { 1 } else { 0 };
            h.act(id, |n, now| n.bootstrap(now, from, states.clone()));
        }
    }

    fn on_event(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime, event: Event) {
        match event {
            Event::Tick => self.tick(h, at),
            Event::ClientNext(c) => self.issue(h, at, c),
            Event::ClientTimeout(c, op) => {
                if self.pending.get(&op).is_some_and(|p| p.client == c) {
                    let p = self.pending.remove(&op).expect("checked");
                    if p.cas.is_some() {
                        self.record_cas(h, at, p, None);
                    } else {
                        self.record(h, at, p, Outcome::Unknown, None, None);
                    }
                }
            }
            Event::Restart(id) => {
                h.inject(Fault::Restart(id, Restart::StateKept));
                self.down.remove(&id);
                self.back.push((id, at));
            }
            Event::Heal => {
                h.inject(Fault::Heal);
                self.partition_until = None;
                self.last_heal = Some(at);
            }
        }
    }

    fn tick(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime) {
        match self.phase {
            Phase::Workload => {
                self.start_faults(h, at);
                if self.client_done.iter().all(|d| *d) && self.pending.is_empty() {
                    self.heal(h, at);
                }
            }
            Phase::Converging => {
                if self.is_converged(h) || at >= self.cap() {
                    if self.is_converged(h) {
                        self.converged_at = Some(at);
                    }
                    self.final_reads(h, at);
                }
            }
            Phase::FinalReads | Phase::Done => {}
        }
        if self.phase != Phase::Done {
            h.schedule(at.after(TICK), Event::Tick);
        }
    }

    fn cap(&self) -> SimTime {
        self.heal_at
            .unwrap_or(SimTime::ZERO)
            .after(self.config.converge_cap)
    }

    /// Starts the faults that are due and allowed (see `schedule.rs`).
    fn start_faults(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime) {
        let gap = self.schedule.gap;
        let recent = |t: SimTime| at < t.after(gap);
        self.back.retain(|(_, t)| recent(*t));
        while let Some(kind) = self.schedule.due(self.issued) {
            if self.partition_until.is_some() || self.last_heal.is_some_and(recent) {
                return;
            }
            match kind {
                FaultKind::Partition => {
                    if !self.down.is_empty() || !self.back.is_empty() {
                        return;
                    }
                    let side = halves(self.config.nodes, &mut self.faults_rng);
                    h.inject(Fault::Partition(Partition::between([side])));
                    let until = at.after(self.config.partition_for);
                    self.partition_until = Some(until);
                    h.schedule(until, Event::Heal);
                    self.partitions_run += 1;
                }
                FaultKind::Kill => {
                    let Some(victim) = self.victim(h) else { return };
                    h.inject(Fault::Crash(victim));
                    let until = at.after(self.config.down_for);
                    self.down.insert(victim, until);
                    h.schedule(until, Event::Restart(victim));
                    self.kills_run += 1;
                }
            }
            self.schedule.started();
        }
    }

    /// A random live node sharing no key with a node down or just back, if one is found.
    fn victim(&mut self, h: &Harness<KvNode, Event>) -> Option<NodeId> {
        let busy: BTreeSet<NodeId> = self
            .down
            .keys()
            .copied()
            .chain(self.back.iter().map(|(id, _)| *id))
            .collect();
        let mut touching = busy.clone();
        for &b in &busy {
            touching.extend(
                self.full_map
                    .partners(b as usize)
                    .into_iter()
                    .map(|i| i as NodeId),
            );
        }
        for _ in 0..100 {
            let id = self.faults_rng.random_range(0..self.config.nodes);
            if h.is_up(id) && !touching.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    fn random_live(&mut self, h: &Harness<KvNode, Event>) -> NodeId {
        loop {
            let id = self.pick.random_range(0..self.config.nodes);
            if h.is_up(id) {
                return id;
            }
        }
    }

    fn issue(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime, c: usize) {
        if self.issued >= self.config.ops {
            self.client_done[c] = true;
            return;
        }
        self.issued += 1;
        let seq = self.client_seq[c];
        self.client_seq[c] += 1;
        let (what, level, cas) = match self.cas.as_mut() {
            Some(clients) => {
                let (what, flight) = clients.next_op(c, &mut self.client_rngs[c], at.as_micros());
                (what, Consistency::Quorum, Some(flight))
            }
            None => {
                let (what, level) =
                    workload::next_op(&mut self.client_rngs[c], c, seq, self.config.keys);
                (what, level, None)
            }
        };
        let node = self.random_live(h);
        let op = self.next_op;
        self.next_op += 1;
        self.pending.insert(
            op,
            Pending {
                op,
                client: c,
                what: what.clone(),
                level,
                invoked: at,
                cas,
            },
        );
        h.schedule(
            at.after(self.config.client_timeout),
            Event::ClientTimeout(c, op),
        );
        h.act(node, |n, now| n.client(now, op, what, level));
    }

    fn on_done(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime, op: u64, result: OpResult) {
        if let Some((key, invoked)) = self.cas_finals.remove(&op) {
            if let (Some(clients), OpResult::Paxos(done)) = (self.cas.as_mut(), &result) {
                let client = self.config.clients as usize;
                clients.final_read(client, key, invoked.as_micros(), at.as_micros(), Some(done));
            } else if let Some(clients) = self.cas.as_mut() {
                clients.final_read(0, key, invoked.as_micros(), at.as_micros(), None);
            }
            if self.cas_finals.is_empty() {
                self.phase = Phase::Done;
            }
            return;
        }
        if let OpResult::Paxos(done) = result {
            if let Some(p) = self.pending.remove(&op) {
                self.record_cas(h, at, p, Some(&done));
            }
            return;
        }
        if let Some(key) = self.final_pending.remove(&op) {
            let (value, version) = match result {
                OpResult::Read(Some(r)) => match r.data() {
                    Some(v) => (
                        Some(String::from_utf8_lossy(v).into_owned()),
                        Some(r.version.hlc),
                    ),
                    None => (None, None),
                },
                _ => (None, None),
            };
            self.finals.push(FinalRead {
                key,
                value,
                version,
            });
            if self.final_pending.is_empty() {
                self.phase = Phase::Done;
            }
            return;
        }
        let Some(p) = self.pending.remove(&op) else {
            return;
        };
        match result {
            OpResult::Written(version) => {
                self.record(h, at, p, Outcome::Ok, None, Some(version));
            }
            OpResult::Read(found) => {
                let (value, version) = match found.as_ref().and_then(|r| r.data().map(|v| (r, v))) {
                    Some((r, v)) => (
                        Some(String::from_utf8_lossy(v).into_owned()),
                        Some(r.version.hlc),
                    ),
                    None => (None, None),
                };
                self.record(h, at, p, Outcome::Ok, value, version);
            }
            // The write may still reach every replica: its outcome is unknown, not a refusal,
            // and the checker holds it to the version it tried.
            OpResult::Unacknowledged(version) => {
                self.record(h, at, p, Outcome::Unknown, None, Some(version));
            }
            OpResult::Failed => self.record(h, at, p, Outcome::Fail, None, None),
            OpResult::Paxos(_) => {}
        }
    }

    /// Records a compare-and-set run's operation that ended (`None`: the client gave up), and
    /// lets its client go on after 10–100 ms.
    fn record_cas(
        &mut self,
        h: &mut Harness<KvNode, Event>,
        at: SimTime,
        p: Pending,
        done: Option<&bavard_replica::paxos::Completion>,
    ) {
        if let (Some(clients), Some(flight)) = (self.cas.as_mut(), p.cas) {
            clients.done(flight, at.as_micros(), done);
        }
        let think = Duration::from_millis(self.client_rngs[p.client].random_range(10..=100));
        h.schedule(at.after(think), Event::ClientNext(p.client));
    }

    /// Records an operation that ended, and lets its client go on.
    fn record(
        &mut self,
        h: &mut Harness<KvNode, Event>,
        at: SimTime,
        p: Pending,
        outcome: Outcome,
        read: Option<String>,
        version: Option<u64>,
    ) {
        let (kind, key, value) = match p.what {
            ClientOp::Put { key, value } => (OpKind::Write, key, Some(value)),
            ClientOp::Delete { key } => (OpKind::Delete, key, None),
            ClientOp::Get { key } | ClientOp::SerialRead { key } => (OpKind::Read, key, read),
            ClientOp::Cas { key, value, .. } => (OpKind::Write, key, Some(value)),
        };
        if outcome == Outcome::Ok {
            match kind {
                OpKind::Write => self.counts.0.add(p.level),
                OpKind::Delete => self.counts.1.add(p.level),
                OpKind::Read => self.counts.2.add(p.level),
            }
        }
        let invoked_ms = p.invoked.as_micros() / 1000;
        self.levels.insert((p.client, invoked_ms), p.level);
        self.history.push(Op {
            client: p.client,
            key,
            kind,
            outcome,
            value,
            version,
            invoked_ms,
            completed_ms: at.as_micros() / 1000,
        });
        let _ = p.op;
        // 1–10 ms before the next operation: a client's operations never start in the same
        // millisecond, so (client, invoked_ms) names an operation.
        let think = Duration::from_millis(self.client_rngs[p.client].random_range(1..=10));
        h.schedule(at.after(think), Event::ClientNext(p.client));
    }

    /// The workload is over: heal everything and wait for convergence.
    fn heal(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime) {
        if self.partition_until.take().is_some() {
            h.inject(Fault::Heal);
        }
        for id in std::mem::take(&mut self.down).into_keys() {
            h.inject(Fault::Restart(id, Restart::StateKept));
        }
        self.heal_at = Some(at);
        let swim: u64 = (0..h.len()).map(|i| h.node(i).stats.swim_msgs).sum();
        self.at_heal = (h.traffic().sent, swim);
        self.phase = Phase::Converging;
    }

    /// Whether every replica of every key holds the newest version any node holds.
    fn is_converged(&self, h: &Harness<KvNode, Event>) -> bool {
        let mut newest: BTreeMap<Vec<u8>, Version> = BTreeMap::new();
        let mut offer = |key: &[u8], v: &Version| match newest.get(key) {
            Some(old) if old >= v => {}
            _ => {
                newest.insert(key.to_vec(), v.clone());
            }
        };
        for i in 0..h.len() {
            let node = h.node(i);
            for r in node.store.scan(None, usize::MAX, 0).unwrap_or_default() {
                offer(&r.key, &r.version);
            }
            for ((_, _, key), r) in &node.hints {
                offer(key, &r.version);
            }
        }
        newest.iter().all(|(key, v)| {
            self.full
                .preference_list(&Key::hash(key))
                .into_iter()
                .all(|r| {
                    h.node(r)
                        .store
                        .get(key, 0)
                        .ok()
                        .flatten()
                        .is_some_and(|rec| rec.version == *v)
                })
        })
    }

    /// Reads every key written once more, at quorum, through random nodes.
    fn final_reads(&mut self, h: &mut Harness<KvNode, Event>, at: SimTime) {
        self.phase = Phase::FinalReads;
        if let Some(clients) = &self.cas {
            for key in clients.hot_keys() {
                let op = self.next_op;
                self.next_op += 1;
                self.cas_finals.insert(op, (key.clone(), at));
                let node = self.random_live(h);
                h.act(node, |n, now| {
                    n.client(now, op, ClientOp::SerialRead { key }, Consistency::Quorum)
                });
            }
            return;
        }
        let keys: BTreeSet<String> = self
            .history
            .iter()
            .filter(|o| o.kind != OpKind::Read)
            .map(|o| o.key.clone())
            .collect();
        if keys.is_empty() {
            self.phase = Phase::Done;
            return;
        }
        for key in keys {
            let op = self.next_op;
            self.next_op += 1;
            self.final_pending.insert(op, key.clone());
            let node = self.random_live(h);
            h.act(node, |n, now| {
                n.client(now, op, ClientOp::Get { key }, Consistency::Quorum)
            });
        }
    }

    fn report(&self, h: &Harness<KvNode, Event>, wall: Instant) -> KvReport {
        let verdict = check(&self.history, &self.finals);
        let counted = |o: &Op| {
            self.levels
                .get(&(o.client, o.invoked_ms))
                .is_some_and(|l| *l != Consistency::One)
        };
        let stale = stale_reads(&self.history, counted);
        let mut examples: Vec<String> = verdict
            .lost_writes
            .iter()
            .take(5)
            .map(|o| {
                format!(
                    "lost: client {} wrote {:?} to {} (version {:?}) at {} ms",
                    o.client, o.value, o.key, o.version, o.invoked_ms
                )
            })
            .collect();
        examples.extend(verdict.phantom_reads.iter().take(5).cloned());
        examples.extend(stale.iter().take(5).cloned());
        let cas = self.cas.as_ref().map(|clients| {
            let (report, problems) = clients.report();
            examples.extend(problems.into_iter().take(5));
            report
        });
        let mut stats = node::NodeStats::default();
        let mut hints_left = 0u64;
        for i in 0..h.len() {
            let s = h.node(i).stats;
            stats.hints_handed += s.hints_handed;
            stats.hints_delivered += s.hints_delivered;
            stats.read_repairs += s.read_repairs;
            stats.ae_rounds += s.ae_rounds;
            stats.ae_failed += s.ae_failed;
            stats.ae_keys_moved += s.ae_keys_moved;
            stats.clock_refusals += s.clock_refusals;
            hints_left += h.node(i).hints.len() as u64;
        }
        let count = |o: Outcome| self.history.iter().filter(|op| op.outcome == o).count() as u64;
        let heal = self.heal_at.unwrap_or(h.now());
        let heal_s = heal.as_micros() as f64 / 1e6;
        let (sent, swim) = self.at_heal;
        let views = self.shared.views.borrow();
        // The compare-and-set run keeps its history apart: count what was issued.
        let ops = if self.cas.is_some() {
            self.issued
        } else {
            self.history.len() as u64
        };
        KvReport {
            nodes: self.config.nodes,
            clients: self.config.clients,
            seed: self.config.seed,
            ops,
            ops_ok: count(Outcome::Ok),
            ops_fail: count(Outcome::Fail),
            ops_unknown: count(Outcome::Unknown),
            puts_ok: self.counts.0,
            deletes_ok: self.counts.1,
            gets_ok: self.counts.2,
            lost_writes: verdict.lost_writes.len(),
            phantom_reads: verdict.phantom_reads.len(),
            stale_reads: stale.len(),
            converged: self.converged_at.is_some(),
            convergence_s: secs_between(heal, self.converged_at.unwrap_or(self.cap())),
            msgs_per_op: (sent - swim) as f64 / ops.max(1) as f64,
            swim_msgs_per_node_s: swim as f64 / (f64::from(self.config.nodes) * heal_s.max(1e-9)),
            hints_handed: stats.hints_handed,
            hints_delivered: stats.hints_delivered,
            hints_left,
            read_repairs: stats.read_repairs,
            ae_rounds: stats.ae_rounds,
            ae_failed: stats.ae_failed,
            ae_keys_moved: stats.ae_keys_moved,
            clock_refusals: stats.clock_refusals,
            partitions_run: self.partitions_run,
            kills_run: self.kills_run,
            faults_skipped: self.schedule.remaining(),
            placements_built: views.placements_built,
            leaf_maps_built: views.leaf_maps_built.get(),
            rejected: h.traffic().rejected,
            virtual_s: h.now().as_micros() as f64 / 1e6,
            examples,
            cas,
            peak_rss_mb: crate::memory::peak_rss_mb(),
            bytes_per_node: crate::memory::bytes_per_node(self.config.nodes),
            wall_s: wall.elapsed().as_secs_f64(),
        }
    }
}

fn secs_between(a: SimTime, b: SimTime) -> f64 {
    b.as_micros().saturating_sub(a.as_micros()) as f64 / 1e6
}
