//! Gossip in the node: SWIM membership and topic broadcast over libp2p.
//!
//! One task (the *driver*) owns the two sans-IO state machines of `bavard-gossip`:
//! [`Membership`] (SWIM with Lifeguard, Das et al. 2002, Dadgar et al. 2018) and [`Broadcast`]
//! (HyParView + Plumtree, Leitão et al. 2007). It feeds them the frames the transport receives
//! (with the authenticated remote peer as sender), the application's commands and the timer,
//! then drains their transmits and events and sleeps until the earliest `poll_timeout`.
//!
//! **Membership ⇄ DHT.** A member's metadata is its listen addresses (`meta.rs`); when it comes
//! up its addresses enter the address book, and when it is declared dead or leaves it leaves the
//! routing table and every topic's views. Lookups seed themselves with the closest alive members
//! (`MembershipView::closest_alive`), so in a converged cluster a lookup starts at the true closest
//! nodes. The node joins through its bootstrap peers; while it is alone, and every push-pull
//! interval, it also pushes its state to routing-table peers it does not see as members, which
//! heals partitions after the members on the other side were forgotten.
//!
//! **Topics.** A topic's overlay is found through the DHT: a subscriber provides the key
//! `/bavard/topic/NAME` and joins through the providers it finds, again while it has no
//! neighbour and every ten retry periods otherwise (so islands formed by simultaneous joins
//! merge). The topic id is SHA-256 of that key. A publisher that has not subscribed joins as a
//! publisher (without providing). Deliveries go to subscribers through one
//! `tokio::sync::broadcast` channel per topic.
//!
//! **Fault injection (tests only).** [`crate::Node::gossip_block`] makes the transport drop every gossip
//! frame to and from a peer, to cut a cluster in two; it does not touch the DHT.

mod auth;
mod meta;
mod transport;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, BroadcastError, BroadcastEvent, MessageBody, MessageId, TopicId,
};
use bavard_gossip::membership::{
    MemberState, Membership, MembershipConfig, MembershipEvent, Message as MMessage,
};
use bavard_routing::Key;
use libp2p::PeerId;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use sha2::Digest as _;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::api::{MemberInfo, NodeError, TopicEvent, TopicInfo};
use crate::config::{GossipConfig, secs};
use crate::context::{Context, peer_key};
use crate::kad::client::Kad;
use crate::members::MemberRow;
use crate::util::peer_id_of;
use wire::Frame;

/// Prefix of a topic's DHT key.
pub const TOPIC_KEY_PREFIX: &[u8] = b"/bavard/topic/";
/// Longest topic name accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Events buffered per topic for slow subscribers (older ones are dropped for them).
const TOPIC_CHANNEL: usize = 1024;

/// The DHT key under which a topic's members are providers.
pub fn topic_key(topic: &str) -> Vec<u8> {
    let mut key = TOPIC_KEY_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key
}

/// The broadcast topic id: SHA-256 of the topic key.
pub fn topic_id(topic: &str) -> TopicId {
    TopicId(sha2::Sha256::digest(topic_key(topic)).into())
}

enum Command {
    JoinTopic {
        topic: TopicId,
        contacts: Vec<PeerId>,
    },
    Publish {
        topic: TopicId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, BroadcastError>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    /// Join again after a leave: a new membership instance (it outbids the old incarnation).
    Rejoin,
    /// Each joined topic's place in its broadcast tree.
    Views {
        reply: oneshot::Sender<HashMap<TopicId, TopicView>>,
    },
}

/// One topic's neighbours as the broadcast core holds them.
#[derive(Default)]
struct TopicView {
    eager: Vec<PeerId>,
    lazy: Vec<PeerId>,
    passive: usize,
    seen: usize,
}

struct TopicEntry {
    name: String,
    tx: broadcast::Sender<TopicEvent>,
    /// Neighbours in the active view.
    active: Arc<AtomicUsize>,
    subscriber: bool,
}

/// The gossip service: membership and topics (cheap to clone).
#[derive(Clone)]
pub(crate) struct Gossip(Arc<Shared>);

/// What the gossip service holds, shared with its driver task.
pub(crate) struct Shared {
    ctx: Context,
    kad: Kad,
    commands: mpsc::UnboundedSender<Command>,
    command_rx: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    topics: Mutex<HashMap<TopicId, TopicEntry>>,
    /// Test-only fault layer: peers whose gossip frames are dropped both ways.
    blocked: Mutex<HashSet<PeerId>>,
    /// Set by [`Gossip::mark_killed`]: shut down without the graceful leave.
    killed: AtomicBool,
}

impl std::ops::Deref for Gossip {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Gossip {
    pub(crate) fn new(ctx: Context, kad: Kad) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        Self(Arc::new(Shared {
            ctx,
            kad,
            commands,
            command_rx: Mutex::new(Some(rx)),
            topics: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashSet::new()),
            killed: AtomicBool::new(false),
        }))
    }

    fn is_blocked(&self, peer: &PeerId) -> bool {
        self.blocked.lock().expect("blocked lock").contains(peer)
    }
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Dead => "dead",
        MemberState::Left => "left",
    }
}

fn membership_config(c: &GossipConfig) -> MembershipConfig {
    let probe = secs(c.probe_interval_secs).max(Duration::from_millis(10));
    MembershipConfig {
        probe_interval: probe,
        probe_timeout: secs(c.probe_timeout_secs).clamp(Duration::from_millis(5), probe),
        suspicion_mult: c.suspicion_mult.max(1),
        gossip_interval: secs(c.gossip_interval_secs).max(Duration::from_millis(10)),
        push_pull_interval: secs(c.push_pull_interval_secs).max(Duration::from_millis(100)),
        gossip_to_the_dead_time: secs(c.dead_member_retention_secs),
        join_retry_interval: secs(c.join_retry_secs).max(Duration::from_millis(50)),
        ring_probe_every: c.ring_probe_every,
        ..MembershipConfig::lan()
    }
}

fn broadcast_config(c: &GossipConfig) -> BroadcastConfig {
    let mut b = BroadcastConfig::default();
    b.plumtree.max_message_size = c.max_payload_size;
    b.hyparview.active_view_capacity = c.topic_active_view.max(1);
    b.hyparview.passive_view_capacity = c.topic_passive_view;
    b
}

impl Gossip {
    /// Spawns the driver and the inbound transport; returns their handles.
    pub(crate) fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let (frames_tx, frames_rx) = mpsc::channel(1024);
        let accept = tokio::spawn(transport::accept(self.ctx.clone(), frames_tx));
        let commands = self.command_rx.lock().expect("gossip command lock").take();
        let Some(commands) = commands else {
            return vec![accept];
        };
        let driver = tokio::spawn(Driver::run(self.clone(), commands, frames_rx));
        vec![accept, driver]
    }
}

/// This node's membership metadata: its certificate and listen addresses ([`meta`]).
fn local_meta(ctx: &Context, max_len: usize) -> Vec<u8> {
    meta::encode(
        &ctx.admission.own_certificate(),
        &ctx.listen_addrs(),
        max_len,
    )
}

fn member_auth(ctx: &Context) -> Box<auth::MemberAuth> {
    Box::new(auth::MemberAuth {
        keypair: ctx.keypair.clone(),
        admission: ctx.admission.clone(),
    })
}

struct Driver {
    gossip: Gossip,
    ctx: Context,
    membership: Membership<PeerId, StdRng>,
    broadcast: Broadcast<PeerId, StdRng>,
    outbound: transport::Outbound,
    keys: HashMap<PeerId, Key>,
    members_dirty: bool,
    last_snapshot: Instant,
    next_rejoin: Instant,
    next_dht_sync: Instant,
    bootstrap: Vec<PeerId>,
    /// The membership's rejected-claim counts already added to the metrics.
    rejected: bavard_gossip::membership::RejectedUpdates,
}

impl Driver {
    async fn run(
        gossip: Gossip,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut frames: mpsc::Receiver<(PeerId, Frame)>,
    ) {
        let ctx = gossip.ctx.clone();
        let cfg = ctx.config.gossip.clone();
        let mcfg = membership_config(&cfg);
        let now = Instant::now();
        let local = ctx.peer_id;
        let meta = local_meta(&ctx, mcfg.max_meta_len);
        let membership = Membership::new(local, meta, mcfg, StdRng::from_os_rng(), now)
            .with_authenticator(member_auth(&ctx));
        let broadcast = Broadcast::new(local, broadcast_config(&cfg), StdRng::from_os_rng())
            .with_authenticator(Box::new(auth::TopicAuth {
                keypair: ctx.keypair.clone(),
                me: local,
                admission: ctx.admission.clone(),
            }));
        let (fail_tx, mut failures) = mpsc::unbounded_channel();
        let open_timeout = ctx.config.kad.request_timeout().min(Duration::from_secs(5));
        let outbound = transport::Outbound::new(ctx.control.clone(), fail_tx, open_timeout);
        let bootstrap: Vec<PeerId> = ctx.config.bootstrap.iter().filter_map(peer_id_of).collect();
        let mut d = Driver {
            gossip,
            ctx,
            membership,
            broadcast,
            outbound,
            keys: HashMap::new(),
            members_dirty: true,
            last_snapshot: now,
            next_rejoin: now,
            next_dht_sync: now + secs(cfg.push_pull_interval_secs),
            bootstrap,
            rejected: Default::default(),
        };
        d.membership.join(now, d.bootstrap.clone());
        d.flush();
        let shutdown = d.ctx.shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let deadline = [
                d.membership.poll_timeout(),
                d.broadcast.poll_timeout(),
                Some(d.next_rejoin),
                Some(d.next_dht_sync),
                Some(d.last_snapshot + Duration::from_millis(250)),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                _ = &mut shutdown => break,
                Some(cmd) = commands.recv() => {
                    if let Command::Leave { reply } = cmd {
                        d.leave().await;
                        let _ = reply.send(());
                    } else {
                        d.command(cmd);
                    }
                }
                Some((peer, frame)) = frames.recv() => d.receive(peer, frame),
                Some(peer) = failures.recv() => {
                    d.broadcast.peer_down(Instant::now(), &peer);
                }
                _ = sleep => d.timeout(),
            }
            d.flush();
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::JoinTopic { topic, contacts } => {
                if let Err(e) = self.broadcast.join_topic(now, topic, contacts) {
                    tracing::warn!("cannot join topic {topic:?}: {e}");
                }
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                let r = self.broadcast.publish(now, topic, payload);
                if r.is_ok() {
                    self.ctx.metrics.gossip_published.inc();
                }
                let _ = reply.send(r);
            }
            Command::Leave { reply } => {
                let _ = reply.send(());
            }
            Command::Views { reply } => {
                let b = &self.broadcast;
                let views = b
                    .topics()
                    .map(|t| {
                        let view = TopicView {
                            eager: b.eager_peers(t),
                            lazy: b.lazy_peers(t),
                            passive: b.passive_view(t).len(),
                            seen: b.seen_messages(t),
                        };
                        (*t, view)
                    })
                    .collect();
                let _ = reply.send(views);
            }
            Command::Rejoin => {
                let cfg = membership_config(&self.ctx.config.gossip);
                let meta = local_meta(&self.ctx, cfg.max_meta_len);
                self.membership =
                    Membership::new(self.ctx.peer_id, meta, cfg, StdRng::from_os_rng(), now)
                        .with_authenticator(member_auth(&self.ctx));
                let mut seeds = self.bootstrap.clone();
                seeds.extend(self.table_peers());
                self.membership.join(now, seeds);
                self.members_dirty = true;
            }
        }
    }

    fn receive(&mut self, peer: PeerId, frame: Frame) {
        if self.gossip.is_blocked(&peer) {
            return;
        }
        let now = Instant::now();
        let ctx = self.ctx.clone();
        let metrics = &ctx.metrics;
        match frame {
            Frame::Membership(msg) => {
                if matches!(msg, MMessage::Ack { .. }) {
                    metrics.gossip_probe_acks.inc();
                }
                if let Err(e) = self.membership.handle_message(now, peer, msg) {
                    metrics.reject("gossip_membership_rejected");
                    tracing::debug!(%peer, "membership message rejected: {e}");
                }
                self.members_dirty = true;
            }
            Frame::Broadcast(msg) => {
                let gossip_id = match &msg.body {
                    MessageBody::Gossip { id, .. } => Some(*id),
                    _ => None,
                };
                match self.broadcast.handle_message(now, peer, msg) {
                    Ok(()) => {}
                    Err(BroadcastError::UnknownTopic(_)) => {
                        metrics.reject("gossip_unknown_topic");
                        return;
                    }
                    Err(BroadcastError::DuplicateMessageId(_)) => {
                        metrics.gossip_duplicates.inc();
                        return;
                    }
                    Err(e) => {
                        metrics.reject("gossip_broadcast_rejected");
                        tracing::debug!(%peer, "broadcast message rejected: {e}");
                        return;
                    }
                }
                if let Some(id) = gossip_id {
                    let delivered = self.drain_broadcast_events(Some(id));
                    if !delivered {
                        metrics.gossip_duplicates.inc();
                    }
                }
            }
        }
    }

    fn timeout(&mut self) {
        let now = Instant::now();
        self.membership.handle_timeout(now);
        self.broadcast.handle_timeout(now);
        self.members_dirty = true;
        self.count_rejected_updates();
        // A certificate that arrived (a join finished) or addresses that changed: announce them.
        let meta = local_meta(&self.ctx, self.membership.config().max_meta_len);
        if self
            .membership
            .member(&self.ctx.peer_id)
            .is_some_and(|m| m.meta() != meta.as_slice())
        {
            self.membership.set_local_meta(meta);
        }
        let cfg = &self.ctx.config.gossip;
        if now >= self.next_rejoin {
            self.next_rejoin = now + secs(cfg.join_retry_secs).max(Duration::from_millis(50));
            if self.membership.live_count() <= 1 && !self.membership.has_left() {
                let mut seeds = self.bootstrap.clone();
                seeds.extend(self.table_peers());
                seeds.shuffle(&mut rand::rng());
                if !seeds.is_empty() {
                    self.membership.join(now, seeds);
                }
            }
        }
        if now >= self.next_dht_sync {
            self.next_dht_sync =
                now + secs(cfg.push_pull_interval_secs).max(Duration::from_secs(1));
            // Routing-table peers we do not see as members: a partition or a forgotten member.
            let mut strangers: Vec<PeerId> = self
                .table_peers()
                .into_iter()
                .filter(|p| {
                    self.membership
                        .member(p)
                        .is_none_or(|m| !m.state().is_live())
                })
                .collect();
            strangers.shuffle(&mut rand::rng());
            if let Some(p) = strangers.first()
                && !self.membership.has_left()
            {
                self.membership.join(now, vec![*p]);
            }
        }
    }

    /// Routing-table peers that are admitted cluster members (the open DHT also holds stock
    /// nodes and other clusters' nodes, which never see our membership).
    fn table_peers(&self) -> Vec<PeerId> {
        let table = self.ctx.table.lock().expect("table lock");
        table
            .iter()
            .map(|e| e.peer)
            .filter(|p| self.ctx.admission.is_admitted(p))
            .take(64)
            .collect()
    }

    /// Delivers broadcast events; true if `want` was delivered among them.
    fn drain_broadcast_events(&mut self, want: Option<MessageId>) -> bool {
        let mut delivered = false;
        while let Some(ev) = self.broadcast.poll_event() {
            match ev {
                BroadcastEvent::Received {
                    topic, id, payload, ..
                } => {
                    delivered |= Some(id) == want;
                    self.ctx.metrics.gossip_delivered.inc();
                    let topics = self.gossip.topics.lock().expect("topics lock");
                    if let Some(t) = topics.get(&topic) {
                        let _ = t.tx.send(TopicEvent {
                            message_id: hex::encode(id.as_bytes()),
                            payload,
                        });
                    }
                }
                BroadcastEvent::NeighborUp { topic, .. }
                | BroadcastEvent::NeighborDown { topic, .. } => {
                    let n = self.broadcast.active_view(&topic).len();
                    let topics = self.gossip.topics.lock().expect("topics lock");
                    if let Some(t) = topics.get(&topic) {
                        t.active.store(n, Ordering::Relaxed);
                    }
                }
            }
        }
        delivered
    }

    /// Adds the membership's newly rejected claims to `bavard_inbound_rejected`.
    fn count_rejected_updates(&mut self) {
        let now = self.membership.rejected_updates();
        let before = std::mem::replace(&mut self.rejected, now);
        let metrics = &self.ctx.metrics;
        for (reason, n, was) in [
            (
                "gossip_bad_signature",
                now.bad_signature,
                before.bad_signature,
            ),
            (
                "gossip_incarnation_jump",
                now.incarnation_jump,
                before.incarnation_jump,
            ),
            (
                "gossip_incarnation_exhausted",
                now.incarnation_exhausted,
                before.incarnation_exhausted,
            ),
        ] {
            // A rejoin starts a fresh membership (counts from 0): count what is new since.
            let new = if n >= was { n - was } else { n };
            if new > 0 {
                metrics.rejected(reason).inc_by(new);
            }
        }
    }

    /// Drains both state machines: sends their messages, applies their events.
    fn flush(&mut self) {
        let now = Instant::now();
        let max_addrs = self.ctx.config.limits.max_addrs_per_peer;
        while let Some(ev) = self.membership.poll_event() {
            self.members_dirty = true;
            match ev {
                MembershipEvent::MemberUp { id, meta }
                | MembershipEvent::MemberMetaChanged { id, meta } => {
                    for a in meta::addrs(&meta, max_addrs) {
                        self.ctx.book.add(id, a, max_addrs);
                    }
                }
                MembershipEvent::MemberDown { id, .. } | MembershipEvent::MemberLeft { id, .. } => {
                    self.ctx.table.lock().expect("table lock").remove(&id);
                    self.broadcast.peer_down(now, &id);
                }
                MembershipEvent::MemberReaped { id } => {
                    self.keys.remove(&id);
                }
                MembershipEvent::MemberSuspect { .. }
                | MembershipEvent::MemberRecovered { .. }
                | MembershipEvent::Joined { .. } => {}
            }
        }
        while let Some((peer, msg)) = self.membership.poll_transmit() {
            self.send(peer, Frame::Membership(msg));
        }
        while let Some((peer, msg)) = self.broadcast.poll_transmit() {
            self.send(peer, Frame::Broadcast(msg));
        }
        self.drain_broadcast_events(None);
        if self.members_dirty && now >= self.last_snapshot + Duration::from_millis(50)
            || now >= self.last_snapshot + Duration::from_millis(250)
        {
            self.snapshot(now);
        }
    }

    fn send(&mut self, peer: PeerId, frame: Frame) {
        if self.gossip.is_blocked(&peer) {
            return;
        }
        if let Some(faults) = &self.ctx.faults
            && faults.drops(&peer)
        {
            return;
        }
        let bytes = prost::Message::encode_length_delimited_to_vec(&frame.to_pb());
        if bytes.len() > self.ctx.config.gossip.max_message_size {
            self.ctx.metrics.reject("gossip_outbound_too_large");
            return;
        }
        self.ctx.metrics.bytes_out.inc_by(bytes.len() as u64);
        if self.outbound.send(peer, bytes) == transport::Sent::QueueFull {
            self.ctx.metrics.reject("gossip_outbound_queue_full");
        }
    }

    fn snapshot(&mut self, now: Instant) {
        self.members_dirty = false;
        self.last_snapshot = now;
        let max_addrs = self.ctx.config.limits.max_addrs_per_peer;
        let mut counts = [0i64; 4];
        let rows: Vec<MemberRow> = self
            .membership
            .members()
            .map(|m| {
                let id = *m.id();
                let key = *self.keys.entry(id).or_insert_with(|| peer_key(&id));
                counts[usize::from(m.state().rank())] += 1;
                MemberRow {
                    id,
                    key,
                    state: m.state(),
                    incarnation: m.incarnation(),
                    addrs: meta::addrs(m.meta(), max_addrs),
                    suspicion: self.membership.suspicion_deadline(&id).map(|at| {
                        let confirmations = self.membership.suspicion_confirmations(&id);
                        (at, confirmations.unwrap_or(0))
                    }),
                }
            })
            .collect();
        for (state, n) in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Left,
        ]
        .into_iter()
        .zip(counts)
        {
            self.ctx
                .metrics
                .gossip_members
                .get_or_create(&crate::metrics::MemberStateLabels {
                    state: state_name(state).to_string(),
                })
                .set(n);
        }
        self.ctx.members.set(rows);
    }

    async fn leave(&mut self) {
        let now = Instant::now();
        self.membership.leave(now);
        let mut frames = Vec::new();
        while let Some((peer, msg)) = self.membership.poll_transmit() {
            let bytes =
                prost::Message::encode_length_delimited_to_vec(&Frame::Membership(msg).to_pb());
            frames.push((peer, bytes));
        }
        let deadline = secs(self.ctx.config.gossip.leave_timeout_secs);
        transport::send_now(&self.ctx.control, frames, deadline).await;
    }
}

fn check_topic(topic: &str) -> Result<(), NodeError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(NodeError::BadRequest(format!(
            "topic names are 1 to {MAX_TOPIC_LEN} bytes, got {}",
            topic.len()
        )));
    }
    Ok(())
}

impl Gossip {
    /// Every member this node knows, itself included, sorted by peer id.
    pub(crate) fn members(&self) -> Vec<MemberInfo> {
        let rows = self.ctx.members.rows();
        let now = Instant::now();
        let mut list: Vec<MemberInfo> = rows
            .into_iter()
            .map(|m| MemberInfo {
                peer_id: m.id.to_string(),
                state: state_name(m.state).to_string(),
                incarnation: m.incarnation,
                addrs: m.addrs.iter().map(|a| a.to_string()).collect(),
                suspicion_timeout_ms: m
                    .suspicion
                    .filter(|_| m.state == MemberState::Suspect)
                    .map(|(at, _)| at.saturating_duration_since(now).as_millis() as u64),
                suspicion_confirmations: m
                    .suspicion
                    .filter(|_| m.state == MemberState::Suspect)
                    .map(|(_, n)| n),
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        list
    }

    /// Every topic this node takes part in, with its neighbours in the topic's tree, sorted by
    /// name.
    pub(crate) async fn topics(&self) -> Result<Vec<TopicInfo>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Views { reply })
            .map_err(|_| NodeError::ShuttingDown)?;
        let mut views = rx.await.map_err(|_| NodeError::ShuttingDown)?;
        let ids = |peers: &[PeerId]| peers.iter().map(PeerId::to_string).collect();
        let topics = self.topics.lock().expect("topics lock");
        let mut list: Vec<TopicInfo> = topics
            .iter()
            .map(|(id, t)| {
                let view = views.remove(id).unwrap_or_default();
                TopicInfo {
                    topic: t.name.clone(),
                    subscriber: t.subscriber,
                    eager: ids(&view.eager),
                    lazy: ids(&view.lazy),
                    passive: view.passive,
                    seen: view.seen,
                }
            })
            .collect();
        list.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(list)
    }

    /// Subscribes to `topic`: joins its overlay (through its providers in the DHT, as a provider
    /// itself) and returns a receiver of every message published on it (this node's own included).
    pub(crate) fn subscribe(
        &self,
        topic: &str,
    ) -> Result<broadcast::Receiver<TopicEvent>, NodeError> {
        check_topic(topic)?;
        Ok(self.ensure_topic(topic, true)?.0)
    }

    /// Publishes `payload` on `topic` and returns its message id (hex). A node that has not
    /// joined the topic joins it first, as a publisher, and waits (a few retry periods at most)
    /// for a neighbour.
    pub(crate) async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<String, NodeError> {
        check_topic(topic)?;
        let max = self.ctx.config.gossip.max_payload_size;
        if payload.len() > max {
            return Err(NodeError::BadRequest(format!(
                "the message is {} bytes, over the {max}-byte limit",
                payload.len()
            )));
        }
        let (_rx, active, created) = self.ensure_topic(topic, false)?;
        if created {
            let wait =
                secs(self.ctx.config.gossip.topic_retry_secs * 3.0).max(Duration::from_secs(1));
            let deadline = tokio::time::Instant::now() + wait;
            while active.load(Ordering::Relaxed) == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let (reply, rx) = oneshot::channel();
        let local_copy = payload.clone();
        self.commands
            .send(Command::Publish {
                topic: topic_id(topic),
                payload,
                reply,
            })
            .map_err(|_| NodeError::ShuttingDown)?;
        let id = rx
            .await
            .map_err(|_| NodeError::ShuttingDown)?
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        let message_id = hex::encode(id.as_bytes());
        // The broadcast core never delivers a node's own messages back to it: hand them to this
        // node's own subscribers here, so every subscriber sees every message of the topic.
        if let Some(t) = self
            .topics
            .lock()
            .expect("topics lock")
            .get(&topic_id(topic))
            && t.subscriber
        {
            let _ = t.tx.send(TopicEvent {
                message_id: message_id.clone(),
                payload: local_copy,
            });
        }
        Ok(message_id)
    }

    /// The number of neighbours (active view) this node has in `topic`; 0 if not joined.
    pub(crate) fn topic_neighbors(&self, topic: &str) -> usize {
        let topics = self.topics.lock().expect("topics lock");
        topics
            .get(&topic_id(topic))
            .map_or(0, |t| t.active.load(Ordering::Relaxed))
    }

    /// Test-only fault injection: drop every gossip frame to and from `peer` (the DHT is not
    /// affected). Used to cut a cluster in two.
    pub(crate) fn block(&self, peer: PeerId) {
        self.blocked.lock().expect("blocked lock").insert(peer);
    }

    /// Undoes [`Gossip::block`].
    pub(crate) fn unblock(&self, peer: PeerId) {
        self.blocked.lock().expect("blocked lock").remove(&peer);
    }

    /// Joins the membership again after [`Gossip::leave`] (a node whose storage recovered).
    pub(crate) fn rejoin(&self) {
        let _ = self.commands.send(Command::Rejoin);
    }

    /// The node is stopping like a crash: no graceful leave at shutdown.
    pub(crate) fn mark_killed(&self) {
        self.killed.store(true, Ordering::Relaxed);
    }

    /// Leaves the membership gracefully (gossips `Left`), unless the node is being killed.
    pub(crate) async fn leave(&self) {
        if self.killed.load(Ordering::Relaxed) {
            return;
        }
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Leave { reply }).is_ok() {
            let wait = secs(self.ctx.config.gossip.leave_timeout_secs) + Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }

    /// The topic's channel, creating the topic (and its maintenance task) if needed, unless
    /// this node already has `gossip.max_topics` topics.
    fn ensure_topic(
        &self,
        topic: &str,
        subscriber: bool,
    ) -> Result<(broadcast::Receiver<TopicEvent>, Arc<AtomicUsize>, bool), NodeError> {
        let id = topic_id(topic);
        let mut topics = self.topics.lock().expect("topics lock");
        let max = self.ctx.config.gossip.max_topics;
        if !topics.contains_key(&id) && topics.len() >= max {
            return Err(NodeError::Limit(format!(
                "this node already has the maximum of {max} topics (gossip.max_topics); \
                 topic {topic:?} was not created"
            )));
        }
        if let Some(t) = topics.get_mut(&id) {
            let upgrade = subscriber && !t.subscriber;
            t.subscriber |= subscriber;
            let out = (t.tx.subscribe(), t.active.clone(), false);
            drop(topics);
            if upgrade {
                let kad = self.kad.clone();
                let key = topic_key(topic);
                tokio::spawn(async move {
                    let _ = kad.provide(key).await;
                });
            }
            return Ok(out);
        }
        let (tx, rx) = broadcast::channel(TOPIC_CHANNEL);
        let active = Arc::new(AtomicUsize::new(0));
        topics.insert(
            id,
            TopicEntry {
                name: topic.to_string(),
                tx,
                active: active.clone(),
                subscriber,
            },
        );
        drop(topics);
        let _ = self.commands.send(Command::JoinTopic {
            topic: id,
            contacts: Vec::new(),
        });
        let gossip = self.clone();
        let name = topic.to_string();
        let maintain_active = active.clone();
        tokio::spawn(async move {
            let shutdown = gossip.ctx.shutdown_signal();
            tokio::select! {
                _ = shutdown => {}
                _ = maintain_topic(&gossip, &name, subscriber, &maintain_active) => {}
            }
        });
        Ok((rx, active, true))
    }
}

/// Keeps a topic connected: provides its key (subscribers), then joins through its providers
/// while it has no neighbour, and every ten periods anyway.
async fn maintain_topic(node: &Gossip, topic: &str, subscriber: bool, active: &AtomicUsize) {
    let key = topic_key(topic);
    let id = topic_id(topic);
    let period = secs(node.ctx.config.gossip.topic_retry_secs).max(Duration::from_millis(50));
    let mut provided = !subscriber;
    let mut round: u64 = 0;
    loop {
        if !provided {
            provided = node.kad.provide(key.clone()).await.is_ok();
        }
        if (active.load(Ordering::Relaxed) == 0 || round.is_multiple_of(10))
            && let Ok(found) = node.kad.providers(key.clone()).await
        {
            {
                let mut contacts: Vec<PeerId> = Vec::new();
                for p in found
                    .iter()
                    .filter_map(|p| p.peer_id.parse::<PeerId>().ok())
                {
                    // Anyone may provide the topic key in the open DHT; only members are
                    // neighbours in a topic.
                    if p != node.ctx.peer_id
                        && crate::admission::protocol::ensure_admitted(&node.ctx, p).await
                    {
                        contacts.push(p);
                    }
                }
                contacts.shuffle(&mut rand::rng());
                if !contacts.is_empty() {
                    let _ = node.commands.send(Command::JoinTopic {
                        topic: id,
                        contacts,
                    });
                }
            }
        }
        round += 1;
        tokio::time::sleep(period).await;
    }
}
