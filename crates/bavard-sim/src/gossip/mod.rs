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
//! connection-oriented transport sees a reset, [`Transport::Connection`]): the harness reports
//! [`Broadcast::peer_down`] at once and the message is not delivered. A node whose every active
//! neighbour died sends nothing, so with this rule alone it stays cut off until its next shuffle
//! (30–60 s); `conn_close_after` adds what a transport with keepalives reports: the connections
//! to crashed neighbours close that long after the crash.
//!
//! **Measurement.** `messages` messages from random live publishers, one every `interval`; the
//! run ends `drain` after the last. Every link has the plane's one-way latency and is FIFO; with
//! `loss` each message is dropped with that probability (decided by a hash of sender, receiver
//! and send number, see [`crate::loss`]).
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
//!
//! Both strategies run on the [harness](crate::harness): ours through an adapter that counts the
//! payload copies its core sends (`node.rs`), the mesh as a node of its own (`mesh.rs`).

mod mesh;
mod node;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, Message, MessageBody, MessageId, TopicId,
};
use rand::Rng;
use rand::seq::index::sample;
use serde::Serialize;

use self::mesh::{HEARTBEAT, MeshNode, MeshOut, build_mesh, heartbeat};
use self::node::{GossipNode, Out};
use crate::NodeId;
use crate::engine::SimTime;
use crate::error::SimError;
use crate::harness::{Fault, Harness, Network, Step, Transport};
use crate::latency::{LatencyConfig, LatencyModel};
use crate::loss::Loss;
use crate::rng::{hash_words, seeded, stream};
use crate::stats::Samples;

/// The topic every node joins.
const TOPIC: TopicId = TopicId([0x5e; 32]);

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

/// The figures of one strategy. Every field but `wall_s`, `peak_rss_mb` and `bytes_per_node` is a pure
/// function of the configuration.
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
    /// Peak resident memory of the process, MiB (Linux; 0 elsewhere): see [`crate::memory`].
    pub peak_rss_mb: u64,
    /// The peak resident memory divided by the nodes, in bytes.
    pub bytes_per_node: u64,
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

    /// The loss of one strategy's run: `stream` keeps the strategies' decisions apart.
    fn loss(&self, rate: f64, stream: u64) -> Loss {
        Loss::new(rate, self.loss_seed).with_stream(stream)
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

/// `is_up` tells which nodes count (those alive during the messages), `live` how many they are.
fn tally(messages: &[Tracked], is_up: impl Fn(NodeId) -> bool, live: u32) -> Tally {
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
            .filter(|&(i, &r)| r && is_up(i as NodeId) && i as NodeId != m.publisher)
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

/// The events of the run of ours.
enum Event {
    Join(NodeId),
    Publish(u32),
    Kill,
    ConnClose,
}

fn run_ours(config: &GossipSimConfig, plan: &Plan) -> GossipReport {
    let wall = Instant::now();
    let n = config.nodes;
    let (seed, broadcast) = (config.seed, config.broadcast.clone());
    let mut h: Harness<_, Event> = Network::new(n, plan.latency.clone())
        .with_loss(plan.loss(config.loss, 1))
        .with_transport(Transport::Connection)
        .build(move |i, _| {
            let rng = seeded(seed, stream::NODES + u64::from(i));
            GossipNode::new(Broadcast::new(i, broadcast.clone(), rng))
        });
    for i in 0..n {
        h.schedule(
            SimTime::ZERO.after(config.join_interval * i),
            Event::Join(i),
        );
    }
    let settled = SimTime::ZERO.after(config.join_interval * (n - 1) + config.settle);
    let warmup = config.warmup_messages;
    for k in 0..warmup {
        h.schedule(settled.after(config.interval * k), Event::Publish(k));
    }
    h.schedule(settled.after(config.interval * warmup), Event::Kill);
    for j in 0..config.messages {
        let at = settled.after(config.interval * (warmup + 1 + j));
        h.schedule(at, Event::Publish(warmup + j));
    }
    let end = settled
        .after(config.interval * (warmup + config.messages))
        .after(config.drain);

    let mut tracked: Vec<Tracked> = plan
        .publishers
        .iter()
        .map(|&p| Tracked::new(n, p))
        .collect();
    let mut ids: HashMap<MessageId, u32> = HashMap::new();
    let mut latencies = Samples::new();
    let mut measured_from = None;
    let mut rng = seeded(config.seed, stream::JOIN);
    while let Some(step) = h.step_until(end) {
        match step {
            Step::External { at, event } => match event {
                Event::Join(i) => {
                    let contacts = if i == 0 {
                        Vec::new()
                    } else {
                        vec![rng.random_range(0..i)]
                    };
                    h.act(i, |node, now| node.core.join_topic(now, TOPIC, contacts))
                        .expect("nobody is down during the joins")
                        .expect("one topic fits the limits");
                }
                Event::Publish(k) => {
                    if k == warmup {
                        measured_from = Some(*h.traffic());
                    }
                    let tr = &mut tracked[k as usize];
                    tr.published = at;
                    let body = payload(k, config.payload_len());
                    let id = h
                        .act(tr.publisher, |node, now| {
                            node.core.publish(now, TOPIC, body)
                        })
                        .expect("publishers are alive")
                        .expect("the topic is joined and the payload fits");
                    ids.insert(id, k);
                }
                Event::Kill => {
                    for &k in &plan.killed {
                        h.inject(Fault::Crash(k));
                    }
                    if let Some(d) = config.conn_close_after {
                        h.schedule(at.after(d), Event::ConnClose);
                    }
                }
                Event::ConnClose => {
                    for i in 0..n {
                        if !h.is_up(i) {
                            continue;
                        }
                        let dead: Vec<NodeId> = h
                            .node(i)
                            .core
                            .active_view(&TOPIC)
                            .into_iter()
                            .filter(|&p| !h.is_up(p))
                            .collect();
                        h.act(i, |node, now| {
                            for p in &dead {
                                node.core.peer_down(now, p);
                            }
                        });
                    }
                }
            },
            Step::Output { at, node, events } => {
                for event in events {
                    match event {
                        Out::PayloadSent(id) => {
                            if let Some(&k) = ids.get(&id) {
                                tracked[k as usize].copies += 1;
                            }
                        }
                        Out::Received { payload, hops } => {
                            if let Some(k) = payload_index(&payload)
                                && let Some(tr) = tracked.get_mut(k as usize)
                                && !tr.received[node as usize]
                            {
                                tr.received[node as usize] = true;
                                tr.receivers += 1;
                                tr.ldh = tr.ldh.max(u32::from(hops));
                                if k >= warmup {
                                    latencies
                                        .push(at.as_millis_f64() - tr.published.as_millis_f64());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    let warm = &tracked[..warmup as usize];
    let (warmup_delivery_ratio, warmup_rmr) = if warm.is_empty() {
        (None, None)
    } else {
        // Every node was alive during the warm-up.
        let t = tally(warm, |_| true, n);
        (Some(t.delivery_ratio), Some(t.rmr))
    };
    let t = tally(&tracked[warmup as usize..], |i| h.is_up(i), h.up_count());
    let measured = h.traffic().since(&measured_from.unwrap_or_default());
    let live = f64::from(h.up_count());
    let m = f64::from(config.messages);
    GossipReport {
        strategy: GossipStrategy::Ours.name().to_owned(),
        nodes: n,
        live_nodes: h.up_count(),
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
        latency_ms_p50: latencies.percentile(50.0),
        latency_ms_p99: latencies.percentile(99.0),
        msgs_per_node_per_message: measured.sent as f64 / live / m,
        bytes_per_node_per_message: measured.bytes as f64 / live / m,
        warmup_delivery_ratio,
        warmup_rmr,
        rejected: h.traffic().rejected,
        peak_rss_mb: crate::memory::peak_rss_mb(),
        bytes_per_node: crate::memory::bytes_per_node(n),
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

// ----- baseline: gossipsub-like mesh -----

/// The events of the baseline's run.
enum MeshEvent {
    Publish(u32),
    Heartbeat,
}

fn run_baseline(config: &GossipSimConfig, plan: &Plan) -> GossipReport {
    let wall = Instant::now();
    let n = config.nodes;
    let mut rng = seeded(config.seed, stream::JOIN ^ 0xba5e);
    // One full-payload message, as ours would encode it, for the byte count.
    let payload_bytes = Message::<NodeId> {
        topic: TOPIC,
        body: MessageBody::Gossip {
            id: MessageId([0; 32]),
            hops: 0,
            publisher: 0,
            payload: vec![0; config.payload_len()],
            signature: vec![],
        },
    }
    .encoded_len_estimate();
    let messages = config.messages;
    let mut h: Harness<_, MeshEvent> = Network::new(n, plan.latency.clone())
        .with_loss(plan.loss(config.loss, 2))
        .with_transport(Transport::Connection)
        .build(move |_, _| MeshNode::new(messages, payload_bytes));
    build_mesh(&mut h, &mut rng);
    for &k in &plan.killed {
        h.inject(Fault::Crash(k));
    }
    let warmup = config.warmup_messages as usize;
    let mut tracked: Vec<Tracked> = plan.publishers[warmup..]
        .iter()
        .map(|&p| Tracked::new(n, p))
        .collect();
    for j in 0..config.messages {
        h.schedule(
            SimTime::ZERO.after(config.interval * (1 + j)),
            MeshEvent::Publish(j),
        );
    }
    h.schedule(SimTime::ZERO.after(HEARTBEAT), MeshEvent::Heartbeat);
    let end = SimTime::ZERO
        .after(config.interval * config.messages)
        .after(config.drain);
    let mut latencies = Samples::new();
    while let Some(step) = h.step_until(end) {
        match step {
            Step::External { at, event } => match event {
                MeshEvent::Publish(j) => {
                    let tr = &mut tracked[j as usize];
                    tr.published = at;
                    tr.received[tr.publisher as usize] = true;
                    h.act(tr.publisher, |node, _| node.publish(j))
                        .expect("publishers are alive");
                }
                MeshEvent::Heartbeat => {
                    heartbeat(&mut h, &mut rng);
                    h.schedule(at.after(HEARTBEAT), MeshEvent::Heartbeat);
                }
            },
            Step::Output { at, node, events } => {
                for event in events {
                    match event {
                        MeshOut::CopySent { index } => tracked[index as usize].copies += 1,
                        MeshOut::Received { index, hops } => {
                            let tr = &mut tracked[index as usize];
                            tr.received[node as usize] = true;
                            tr.receivers += 1;
                            tr.ldh = tr.ldh.max(hops);
                            latencies.push(at.as_millis_f64() - tr.published.as_millis_f64());
                        }
                    }
                }
            }
        }
    }
    let t = tally(&tracked, |i| h.is_up(i), h.up_count());
    let traffic = h.traffic();
    let live = f64::from(h.up_count());
    let m = f64::from(config.messages);
    GossipReport {
        strategy: GossipStrategy::Baseline.name().to_owned(),
        nodes: n,
        live_nodes: h.up_count(),
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
        msgs_per_node_per_message: traffic.sent as f64 / live / m,
        bytes_per_node_per_message: traffic.bytes as f64 / live / m,
        warmup_delivery_ratio: None,
        warmup_rmr: None,
        rejected: 0,
        peak_rss_mb: crate::memory::peak_rss_mb(),
        bytes_per_node: crate::memory::bytes_per_node(n),
        wall_s: wall.elapsed().as_secs_f64(),
    }
}
