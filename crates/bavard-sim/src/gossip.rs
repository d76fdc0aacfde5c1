//! The gossip experiment: how completely, how cheaply and how fast bavard's topic broadcast
//! (HyParView + Plumtree, [`bavard_gossip::broadcast`]) delivers messages to a whole network,
//! against a gossipsub-like mesh that pushes every payload to every mesh peer.
//!
//! **Overlay.** `nodes` [`Broadcast`] cores on the latency plane of [`LatencyModel`]. Node 0
//! starts the topic; node `i ≥ 1` joins it at `i × join_interval` through one random node that
//! joined before it (HyParView, Leitão et al. DSN 2007). The overlay then settles for `settle`
//! of virtual time, so that joins, shuffles and repairs quiesce.
//!
//! **Warm-up.** Plumtree (Leitão et al., SRDS 2007) builds its broadcast tree from the first
//! messages: the very first one floods every link and the duplicates prune the tree into shape.
//! `warmup_messages` messages from random nodes, `interval` apart, are therefore sent first and
//! reported apart (`warmup_*` fields); they are not in the measured figures.
//!
//! **Failures.** With `kill`, that share of the nodes dies at once after the warm-up, one
//! `interval` before the first measured message. A dead node drops everything it receives and
//! sends nothing. A live node learns that a peer is dead when it sends to it (a
//! connection-oriented transport sees a reset): the driver reports
//! [`Broadcast::peer_down`] at once and the message is not delivered. A node whose every active
//! neighbour died sends nothing, so with this rule alone it stays cut off until its next shuffle
//! (30–60 s); `conn_close_after` adds what a transport with keepalives reports: the connections
//! to crashed neighbours close that long after the crash.
//!
//! **Measurement.** `messages` messages from random live publishers, one every `interval`; the
//! run ends `drain` after the last. Every link has the plane's one-way latency and is FIFO; with
//! `loss` each message is dropped with that probability (decided by a hash of sender, receiver
//! and send number, see [`Network::is_lost`]).
//!
//! **Figures** ([`GossipReport`]), over the measured messages and the nodes alive during them:
//! - `delivery_ratio`: deliveries / (messages × (live nodes − 1)) (the publisher does not count);
//! - `rmr`, relative message redundancy (Plumtree §5): per message, payload copies sent to live
//!   nodes / (nodes that received it) − 1, averaged (0 means exactly one copy per receiver);
//! - `ldh_max`, last delivery hop: the largest hop count at which any node received a message;
//! - `latency_ms_p50`/`_p99`: virtual time from publication to each delivery.
//!
//! **Baseline** ([`GossipStrategy::Baseline`]): on the same latency plane, loss, kill set,
//! publishers and times, every node keeps about `D = 6` symmetric random mesh peers, and on the
//! first receipt of a message forwards the full payload to every mesh peer but the sender (no
//! `IHAVE`/`IWANT`), as gossipsub's mesh does. A send to a dead peer removes it from the mesh;
//! every second (gossipsub's heartbeat) a node with fewer than `D_lo = 4` mesh peers grafts random
//! live peers back up to `D`. Its RMR therefore sits near `D − 2`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, BroadcastEvent, Message, MessageBody, MessageId, TopicId,
};
use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::NodeId;
use crate::engine::{Clock, EventQueue, SimTime};
use crate::error::SimError;
use crate::latency::{LatencyConfig, LatencyModel};
use crate::network::Network;
use crate::rng::{hash_words, seeded, stream};
use crate::stats::Samples;

/// The topic every node joins.
const TOPIC: TopicId = TopicId([0x5e; 32]);
/// The first RNG stream of the per-node cores (node `i` uses `NODE_STREAMS + i`).
pub(crate) const NODE_STREAMS: u64 = 1 << 32;
/// gossipsub's mesh degree and its lower bound.
const MESH_D: usize = 6;
const MESH_D_LO: usize = 4;
/// gossipsub's heartbeat period.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Parameters of [`run_gossip_sim`].
#[derive(Debug, Clone, PartialEq)]
pub struct GossipSimConfig {
    /// Number of nodes (at least 2). Default 1,000.
    pub nodes: u32,
    /// Number of measured messages (at least 1). Default 100.
    pub messages: u32,
    /// The seed every random choice derives from. Default 0.
    pub seed: u64,
    /// Probability that a message is lost, in `[0, 1)`. Default 0.
    pub loss: f64,
    /// Share of the nodes killed after the warm-up, in `[0, 1)`, leaving at least 2. Default 0.
    pub kill: f64,
    /// Also run the gossipsub-like mesh. Default false.
    pub baseline: bool,
    /// Virtual time between two publications. Default 1 s.
    pub interval: Duration,
    /// Unmeasured messages sent before the measured ones, while the tree forms. Default 5.
    pub warmup_messages: u32,
    /// Virtual time between two joins. Default 20 ms.
    pub join_interval: Duration,
    /// Virtual time after the last join before the warm-up. Default 60 s: every node has shuffled once (its first shuffle comes 30–60 s after it joined), which fills the passive views of late joiners.
    pub settle: Duration,
    /// Virtual time the run goes on after the last publication. Default 10 s.
    pub drain: Duration,
    /// Application payload size in bytes (at least 8). Default 256.
    pub payload_len: usize,
    /// If set, this long after the crash every live node also learns that its connections to
    /// crashed active-view neighbours closed (a keepalive or idle timeout), as a transport with
    /// liveness checks reports it. `None` (default): peers are only found dead by sending to them.
    pub conn_close_after: Option<Duration>,
    /// The broadcast core's parameters.
    pub broadcast: BroadcastConfig,
    /// The latency model.
    pub latency: LatencyConfig,
}

impl Default for GossipSimConfig {
    fn default() -> Self {
        Self {
            nodes: 1_000,
            messages: 100,
            seed: 0,
            loss: 0.0,
            kill: 0.0,
            baseline: false,
            interval: Duration::from_secs(1),
            warmup_messages: 5,
            join_interval: Duration::from_millis(20),
            settle: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            payload_len: 256,
            conn_close_after: None,
            broadcast: BroadcastConfig::default(),
            latency: LatencyConfig::default(),
        }
    }
}

impl GossipSimConfig {
    /// Checks that the configuration can run.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::TooFewNodes(self.nodes));
        }
        if self.messages == 0 {
            return Err(SimError::NoMessages);
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(SimError::LossOutOfRange(self.loss));
        }
        if !(0.0..1.0).contains(&self.kill) || self.nodes - self.killed() < 2 {
            return Err(SimError::KillOutOfRange(self.kill));
        }
        if self.broadcast.hyparview.active_view_capacity == 0 {
            return Err(SimError::EmptyActiveView);
        }
        Ok(())
    }

    /// The number of nodes killed: `round(kill × nodes)`.
    pub fn killed(&self) -> u32 {
        ((self.kill * f64::from(self.nodes)).round() as u32).min(self.nodes)
    }

    fn payload_len(&self) -> usize {
        self.payload_len.max(8)
    }
}

/// A broadcast strategy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipStrategy {
    /// bavard's HyParView + Plumtree core.
    Ours,
    /// A gossipsub-like mesh: full payload to every mesh peer (D = 6), no lazy push.
    Baseline,
}

impl GossipStrategy {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            GossipStrategy::Ours => "ours",
            GossipStrategy::Baseline => "baseline",
        }
    }
}

/// The figures of one strategy. Every field but `wall_s` is a pure function of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GossipReport {
    /// `"ours"` (HyParView + Plumtree) or `"baseline"` (gossipsub-like mesh, D = 6).
    pub strategy: String,
    /// Nodes in the network.
    pub nodes: u32,
    /// Nodes alive during the measured messages.
    pub live_nodes: u32,
    /// Nodes killed before the measured messages.
    pub killed: u32,
    /// Milliseconds after the kill at which connections to killed neighbours closed (`None`:
    /// dead peers found by sending only).
    pub conn_close_ms: Option<u64>,
    /// Measured messages.
    pub messages: u32,
    /// Unmeasured warm-up messages sent before (0 for the baseline, which needs none).
    pub warmup_messages: u32,
    /// Virtual milliseconds between publications.
    pub interval_ms: u64,
    /// Message loss probability.
    pub loss: f64,
    /// Deliveries / (messages × (live nodes − 1)).
    pub delivery_ratio: f64,
    /// Share of the measured messages that reached every live node.
    pub complete_messages: f64,
    /// The worst delivery ratio of a single message.
    pub min_message_delivery_ratio: f64,
    /// Mean relative message redundancy: payload copies sent to live nodes / receivers − 1.
    pub rmr: f64,
    /// Largest hop count of a delivery (last delivery hop).
    pub ldh_max: u32,
    /// Mean over messages of their last delivery hop.
    pub ldh_mean: f64,
    /// Median virtual time from publication to delivery, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th percentile of the delivery latency, in milliseconds.
    pub latency_ms_p99: f64,
    /// Messages (payloads and control) sent per live node per measured message.
    pub msgs_per_node_per_message: f64,
    /// Estimated bytes sent per live node per measured message.
    pub bytes_per_node_per_message: f64,
    /// Delivery ratio of the warm-up messages (all nodes alive), if any were sent.
    pub warmup_delivery_ratio: Option<f64>,
    /// Mean RMR of the warm-up messages, if any were sent.
    pub warmup_rmr: Option<f64>,
    /// Messages the cores rejected (should be 0).
    pub rejected: u64,
    /// Wall-clock seconds this strategy's run took.
    pub wall_s: f64,
}

/// Runs the gossip experiment: one report for [`GossipStrategy::Ours`], then one for
/// [`GossipStrategy::Baseline`] if `config.baseline`.
pub fn run_gossip_sim(config: &GossipSimConfig) -> Result<Vec<GossipReport>, SimError> {
    config.validate()?;
    let plan = Plan::new(config);
    let mut reports = vec![run_ours(config, &plan)];
    if config.baseline {
        reports.push(run_baseline(config, &plan));
    }
    Ok(reports)
}

/// What both strategies share: the network, the kill set and the workload.
struct Plan {
    latency: LatencyModel,
    loss_seed: u64,
    killed: Vec<NodeId>,
    /// Publisher of each message: the warm-up ones first, then the measured ones.
    publishers: Vec<NodeId>,
}

impl Plan {
    fn new(config: &GossipSimConfig) -> Self {
        let n = config.nodes;
        let latency =
            LatencyModel::random(n, config.latency, &mut seeded(config.seed, stream::LATENCY));
        let mut churn = seeded(config.seed, stream::CHURN);
        let mut killed: Vec<NodeId> = sample(&mut churn, n as usize, config.killed() as usize)
            .into_iter()
            .map(|i| i as NodeId)
            .collect();
        killed.sort_unstable();
        let mut dead = vec![false; n as usize];
        for &k in &killed {
            dead[k as usize] = true;
        }
        let survivors: Vec<NodeId> = (0..n).filter(|&i| !dead[i as usize]).collect();
        let mut rng = seeded(config.seed, stream::WORKLOAD);
        let mut publishers: Vec<NodeId> = (0..config.warmup_messages)
            .map(|_| rng.random_range(0..n))
            .collect();
        publishers
            .extend((0..config.messages).map(|_| survivors[rng.random_range(0..survivors.len())]));
        Self {
            latency,
            loss_seed: hash_words(&[config.seed, 0x0060_551b]),
            killed,
            publishers,
        }
    }

    fn network(&self, loss: f64) -> Network {
        Network::new(self.latency.clone(), loss, self.loss_seed)
    }
}

/// The virtual time of a core's deadline, rounded *up* to the microsecond: rounding down would
/// wake the core just before its deadline, where it has nothing to do, forever.
pub(crate) fn deadline_time(clock: &Clock, at: Instant) -> SimTime {
    let t = clock.sim_time(at);
    if clock.instant(t) < at {
        SimTime::from_micros(t.as_micros() + 1)
    } else {
        t
    }
}

/// Per-message bookkeeping.
struct Tracked {
    published: SimTime,
    publisher: NodeId,
    received: Vec<bool>,
    receivers: u32,
    ldh: u32,
    copies: u64,
}

impl Tracked {
    fn new(nodes: u32, publisher: NodeId) -> Self {
        Self {
            published: SimTime::ZERO,
            publisher,
            received: vec![false; nodes as usize],
            receivers: 0,
            ldh: 0,
            copies: 0,
        }
    }

    fn rmr(&self) -> f64 {
        if self.receivers == 0 {
            return 0.0;
        }
        self.copies as f64 / f64::from(self.receivers) - 1.0
    }
}

/// Summaries of the tracked messages, shared by both strategies.
struct Tally {
    delivery_ratio: f64,
    complete: f64,
    min_ratio: f64,
    rmr: f64,
    ldh_max: u32,
    ldh_mean: f64,
}

fn tally(messages: &[Tracked], net: &Network) -> Tally {
    let live = net.live_count();
    let others = f64::from(live.saturating_sub(1).max(1));
    let mut delivered = 0u64;
    let mut complete = 0u32;
    let mut min_ratio = 1.0f64;
    let mut rmr = 0.0;
    let mut ldh_max = 0;
    let mut ldh_sum = 0.0;
    for m in messages {
        let got = m
            .received
            .iter()
            .enumerate()
            .filter(|&(i, &r)| r && net.is_alive(i as NodeId) && i as NodeId != m.publisher)
            .count() as u64;
        delivered += got;
        let ratio = got as f64 / others;
        if got + 1 >= u64::from(live) {
            complete += 1;
        }
        min_ratio = min_ratio.min(ratio);
        rmr += m.rmr();
        ldh_max = ldh_max.max(m.ldh);
        ldh_sum += f64::from(m.ldh);
    }
    let count = messages.len().max(1) as f64;
    Tally {
        delivery_ratio: delivered as f64 / (others * count),
        complete: f64::from(complete) / count,
        min_ratio,
        rmr: rmr / count,
        ldh_max,
        ldh_mean: ldh_sum / count,
    }
}

fn payload(index: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[..4].copy_from_slice(&index.to_be_bytes());
    p
}

fn payload_index(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?))
}

// ----- ours: HyParView + Plumtree -----

enum Event {
    Join(NodeId),
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Message<NodeId>,
    },
    Timer(NodeId),
    Publish(u32),
    Kill,
    ConnClose,
}

struct Ours<'a> {
    config: &'a GossipSimConfig,
    clock: Clock,
    queue: EventQueue<Event>,
    net: Network,
    nodes: Vec<Broadcast<NodeId, ChaCha8Rng>>,
    armed: Vec<Option<SimTime>>,
    tracked: Vec<Tracked>,
    ids: HashMap<MessageId, u32>,
    latencies: Samples,
    sends: u64,
    measuring: bool,
    measured_msgs: u64,
    measured_bytes: u64,
    rejected: u64,
}

fn run_ours(config: &GossipSimConfig, plan: &Plan) -> GossipReport {
    let wall = Instant::now();
    let n = config.nodes;
    let clock = Clock::new(Instant::now());
    let nodes = (0..n)
        .map(|i| {
            let rng = seeded(config.seed, NODE_STREAMS + u64::from(i));
            Broadcast::new(i, config.broadcast.clone(), rng)
        })
        .collect();
    let mut sim = Ours {
        config,
        clock,
        queue: EventQueue::new(),
        net: plan.network(config.loss),
        nodes,
        armed: vec![None; n as usize],
        tracked: plan
            .publishers
            .iter()
            .map(|&p| Tracked::new(n, p))
            .collect(),
        ids: HashMap::new(),
        latencies: Samples::new(),
        sends: 0,
        measuring: false,
        measured_msgs: 0,
        measured_bytes: 0,
        rejected: 0,
    };
    for i in 0..n {
        sim.queue.schedule(
            SimTime::ZERO.after(config.join_interval * i),
            Event::Join(i),
        );
    }
    let settled = SimTime::ZERO.after(config.join_interval * (n - 1) + config.settle);
    let warmup = config.warmup_messages;
    for k in 0..warmup {
        sim.queue
            .schedule(settled.after(config.interval * k), Event::Publish(k));
    }
    sim.queue
        .schedule(settled.after(config.interval * warmup), Event::Kill);
    for j in 0..config.messages {
        let at = settled.after(config.interval * (warmup + 1 + j));
        sim.queue.schedule(at, Event::Publish(warmup + j));
    }
    let end = settled
        .after(config.interval * (warmup + config.messages))
        .after(config.drain);
    sim.run(end, plan);

    let warm = &sim.tracked[..warmup as usize];
    let (warmup_delivery_ratio, warmup_rmr) = if warm.is_empty() {
        (None, None)
    } else {
        // Every node was alive during the warm-up.
        let all = plan.network(0.0);
        let t = tally(warm, &all);
        (Some(t.delivery_ratio), Some(t.rmr))
    };
    let t = tally(&sim.tracked[warmup as usize..], &sim.net);
    let live = f64::from(sim.net.live_count());
    let m = f64::from(config.messages);
    GossipReport {
        strategy: GossipStrategy::Ours.name().to_owned(),
        nodes: n,
        live_nodes: sim.net.live_count(),
        killed: plan.killed.len() as u32,
        conn_close_ms: config.conn_close_after.map(|d| d.as_millis() as u64),
        messages: config.messages,
        warmup_messages: warmup,
        interval_ms: config.interval.as_millis() as u64,
        loss: config.loss,
        delivery_ratio: t.delivery_ratio,
        complete_messages: t.complete,
        min_message_delivery_ratio: t.min_ratio,
        rmr: t.rmr,
        ldh_max: t.ldh_max,
        ldh_mean: t.ldh_mean,
        latency_ms_p50: sim.latencies.percentile(50.0),
        latency_ms_p99: sim.latencies.percentile(99.0),
        msgs_per_node_per_message: sim.measured_msgs as f64 / live / m,
        bytes_per_node_per_message: sim.measured_bytes as f64 / live / m,
        warmup_delivery_ratio,
        warmup_rmr,
        rejected: sim.rejected,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

impl Ours<'_> {
    fn run(&mut self, end: SimTime, plan: &Plan) {
        let mut rng = seeded(self.config.seed, stream::JOIN);
        while let Some((t, event)) = self.queue.pop() {
            if t > end {
                break;
            }
            let now = self.clock.instant(t);
            match event {
                Event::Join(i) => {
                    let contacts = if i == 0 {
                        Vec::new()
                    } else {
                        vec![rng.random_range(0..i)]
                    };
                    self.nodes[i as usize]
                        .join_topic(now, TOPIC, contacts)
                        .expect("one topic fits the limits");
                    self.drive(i);
                }
                Event::Deliver { from, to, msg } => {
                    if !self.net.is_alive(to) {
                        continue;
                    }
                    if self.nodes[to as usize]
                        .handle_message(now, from, msg)
                        .is_err()
                    {
                        self.rejected += 1;
                    }
                    self.drive(to);
                }
                Event::Timer(i) => {
                    if self.armed[i as usize] != Some(t) || !self.net.is_alive(i) {
                        continue;
                    }
                    self.armed[i as usize] = None;
                    self.nodes[i as usize].handle_timeout(now);
                    self.drive(i);
                }
                Event::Publish(k) => {
                    if k == self.config.warmup_messages {
                        self.measuring = true;
                    }
                    let tr = &mut self.tracked[k as usize];
                    tr.published = t;
                    let publisher = tr.publisher;
                    let body = payload(k, self.config.payload_len());
                    let id = self.nodes[publisher as usize]
                        .publish(now, TOPIC, body)
                        .expect("the topic is joined and the payload fits");
                    self.ids.insert(id, k);
                    self.drive(publisher);
                }
                Event::Kill => {
                    for &k in &plan.killed {
                        self.net.kill(k);
                    }
                    if let Some(d) = self.config.conn_close_after {
                        self.queue.schedule(t.after(d), Event::ConnClose);
                    }
                }
                Event::ConnClose => {
                    for i in 0..self.config.nodes {
                        if !self.net.is_alive(i) {
                            continue;
                        }
                        let dead: Vec<NodeId> = self.nodes[i as usize]
                            .active_view(&TOPIC)
                            .into_iter()
                            .filter(|&p| !self.net.is_alive(p))
                            .collect();
                        for p in &dead {
                            self.nodes[i as usize].peer_down(now, p);
                        }
                        self.drive(i);
                    }
                }
            }
        }
    }

    /// Drains a node's outputs into the network and the counters, then re-arms its timer.
    fn drive(&mut self, node: NodeId) {
        let now = self.queue.now();
        let instant = self.clock.instant(now);
        let mut down = Vec::new();
        loop {
            while let Some((to, msg)) = self.nodes[node as usize].poll_transmit() {
                if !self.net.is_alive(to) {
                    // The connection is reset: the sender learns at once, nothing is delivered.
                    down.push(to);
                    continue;
                }
                if self.measuring {
                    self.measured_msgs += 1;
                    self.measured_bytes += msg.encoded_len_estimate() as u64;
                }
                if let MessageBody::Gossip { id, .. } = &msg.body
                    && let Some(&k) = self.ids.get(id)
                {
                    self.tracked[k as usize].copies += 1;
                }
                self.sends += 1;
                if self
                    .net
                    .is_lost(&[1, u64::from(node), u64::from(to), self.sends])
                {
                    continue;
                }
                let at = now.after(self.net.one_way(node, to));
                self.queue.schedule(
                    at,
                    Event::Deliver {
                        from: node,
                        to,
                        msg,
                    },
                );
            }
            while let Some(event) = self.nodes[node as usize].poll_event() {
                if let BroadcastEvent::Received { payload, hops, .. } = event
                    && let Some(k) = payload_index(&payload)
                    && let Some(tr) = self.tracked.get_mut(k as usize)
                    && !tr.received[node as usize]
                {
                    tr.received[node as usize] = true;
                    tr.receivers += 1;
                    tr.ldh = tr.ldh.max(u32::from(hops));
                    if k >= self.config.warmup_messages {
                        let ms = now.as_millis_f64() - tr.published.as_millis_f64();
                        self.latencies.push(ms);
                    }
                }
            }
            if down.is_empty() {
                break;
            }
            for peer in down.drain(..) {
                self.nodes[node as usize].peer_down(instant, &peer);
            }
        }
        if let Some(at) = self.nodes[node as usize].poll_timeout() {
            let t = deadline_time(&self.clock, at).max(now);
            if self.armed[node as usize] != Some(t) {
                self.armed[node as usize] = Some(t);
                self.queue.schedule(t, Event::Timer(node));
            }
        }
    }
}

// ----- baseline: gossipsub-like mesh -----

enum MeshEvent {
    Deliver {
        from: NodeId,
        to: NodeId,
        index: u32,
        hops: u32,
    },
    Publish(u32),
    Heartbeat,
}

fn run_baseline(config: &GossipSimConfig, plan: &Plan) -> GossipReport {
    let wall = Instant::now();
    let n = config.nodes;
    let mut rng = seeded(config.seed, stream::JOIN ^ 0xba5e);
    let mut net = plan.network(config.loss);
    let mesh = &mut build_mesh(n, &mut rng);
    for &k in &plan.killed {
        net.kill(k);
    }
    let warmup = config.warmup_messages as usize;
    let mut tracked: Vec<Tracked> = plan.publishers[warmup..]
        .iter()
        .map(|&p| Tracked::new(n, p))
        .collect();
    // One full-payload message, as ours would encode it, for the byte count.
    let payload_bytes = Message::<NodeId> {
        topic: TOPIC,
        body: MessageBody::Gossip {
            id: MessageId([0; 32]),
            hops: 0,
            payload: vec![0; config.payload_len()],
        },
    }
    .encoded_len_estimate() as u64;
    let mut queue = EventQueue::new();
    for j in 0..config.messages {
        queue.schedule(
            SimTime::ZERO.after(config.interval * (1 + j)),
            MeshEvent::Publish(j),
        );
    }
    queue.schedule(SimTime::ZERO.after(HEARTBEAT), MeshEvent::Heartbeat);
    let end = SimTime::ZERO
        .after(config.interval * config.messages)
        .after(config.drain);
    let mut latencies = Samples::new();
    let mut sent = 0u64;
    // Forwards message `index` from `node` to its mesh but `except`.
    let mut forward = |queue: &mut EventQueue<MeshEvent>,
                       mesh: &mut Vec<Vec<NodeId>>,
                       net: &Network,
                       tracked: &mut [Tracked],
                       node: NodeId,
                       except: Option<NodeId>,
                       index: u32,
                       hops: u32| {
        let peers = mesh[node as usize].clone();
        for to in peers {
            if Some(to) == except {
                continue;
            }
            if !net.is_alive(to) {
                unlink(mesh, node, to);
                continue;
            }
            sent += 1;
            tracked[index as usize].copies += 1;
            if net.is_lost(&[2, u64::from(node), u64::from(to), u64::from(index)]) {
                continue;
            }
            queue.schedule(
                queue.now().after(net.one_way(node, to)),
                MeshEvent::Deliver {
                    from: node,
                    to,
                    index,
                    hops,
                },
            );
        }
    };
    while let Some((t, event)) = queue.pop() {
        if t > end {
            break;
        }
        match event {
            MeshEvent::Publish(j) => {
                let tr = &mut tracked[j as usize];
                tr.published = t;
                let p = tr.publisher;
                tr.received[p as usize] = true;
                forward(&mut queue, mesh, &net, &mut tracked, p, None, j, 1);
            }
            MeshEvent::Deliver {
                from,
                to,
                index,
                hops,
            } => {
                let tr = &mut tracked[index as usize];
                if !net.is_alive(to) || tr.received[to as usize] {
                    continue;
                }
                tr.received[to as usize] = true;
                tr.receivers += 1;
                tr.ldh = tr.ldh.max(hops);
                latencies.push(t.as_millis_f64() - tr.published.as_millis_f64());
                forward(
                    &mut queue,
                    mesh,
                    &net,
                    &mut tracked,
                    to,
                    Some(from),
                    index,
                    hops + 1,
                );
            }
            MeshEvent::Heartbeat => {
                heartbeat(mesh, &net, &mut rng);
                queue.schedule(t.after(HEARTBEAT), MeshEvent::Heartbeat);
            }
        }
    }
    // Only payloads are sent: the mesh is built for free, without GRAFT messages.
    let t = tally(&tracked, &net);
    let live = f64::from(net.live_count());
    let m = f64::from(config.messages);
    GossipReport {
        strategy: GossipStrategy::Baseline.name().to_owned(),
        nodes: n,
        live_nodes: net.live_count(),
        killed: plan.killed.len() as u32,
        conn_close_ms: config.conn_close_after.map(|d| d.as_millis() as u64),
        messages: config.messages,
        warmup_messages: 0,
        interval_ms: config.interval.as_millis() as u64,
        loss: config.loss,
        delivery_ratio: t.delivery_ratio,
        complete_messages: t.complete,
        min_message_delivery_ratio: t.min_ratio,
        rmr: t.rmr,
        ldh_max: t.ldh_max,
        ldh_mean: t.ldh_mean,
        latency_ms_p50: latencies.percentile(50.0),
        latency_ms_p99: latencies.percentile(99.0),
        msgs_per_node_per_message: sent as f64 / live / m,
        bytes_per_node_per_message: (sent * payload_bytes) as f64 / live / m,
        warmup_delivery_ratio: None,
        warmup_rmr: None,
        rejected: 0,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

/// A random symmetric mesh where (almost) every node has `MESH_D` peers.
fn build_mesh(n: u32, rng: &mut ChaCha8Rng) -> Vec<Vec<NodeId>> {
    let mut mesh: Vec<Vec<NodeId>> = vec![Vec::new(); n as usize];
    let d = MESH_D.min(n as usize - 1);
    for i in 0..n {
        let mut tries = 0;
        while mesh[i as usize].len() < d && tries < 200 {
            tries += 1;
            let j = rng.random_range(0..n);
            // Prefer peers below D; late in the build accept one more so nobody stays short.
            let cap = if tries < 100 { d } else { d + 1 };
            if j == i || mesh[i as usize].contains(&j) || mesh[j as usize].len() >= cap {
                continue;
            }
            mesh[i as usize].push(j);
            mesh[j as usize].push(i);
        }
    }
    mesh
}

fn unlink(mesh: &mut [Vec<NodeId>], a: NodeId, b: NodeId) {
    mesh[a as usize].retain(|&p| p != b);
    mesh[b as usize].retain(|&p| p != a);
}

/// gossipsub's heartbeat, simplified: a live node with fewer than `D_lo` mesh peers grafts random
/// live peers (it knows every subscriber) back up to `D`.
fn heartbeat(mesh: &mut [Vec<NodeId>], net: &Network, rng: &mut ChaCha8Rng) {
    let n = mesh.len() as u32;
    if net.live_count() < 2 {
        return;
    }
    let want = MESH_D.min(net.live_count() as usize - 1);
    for i in 0..n {
        if !net.is_alive(i) || mesh[i as usize].len() >= MESH_D_LO.min(want) {
            continue;
        }
        let mut tries = 0;
        while mesh[i as usize].len() < want && tries < 100 {
            tries += 1;
            let j = rng.random_range(0..n);
            if j == i || !net.is_alive(j) || mesh[i as usize].contains(&j) {
                continue;
            }
            mesh[i as usize].push(j);
            mesh[j as usize].push(i);
        }
    }
}
