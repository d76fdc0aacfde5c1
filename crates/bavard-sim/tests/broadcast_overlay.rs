//! Whole-overlay tests of HyParView + Plumtree on the harness: virtual time, seeded per-link
//! latency (10–100 ms), optional loss, crashes detected by send failures (connection transport)
//! and by a delayed failure detector. Quality figures (RMR, LDH, reliability) are asserted, and
//! printed with `--nocapture`.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, BroadcastError, BroadcastEvent, Message, MessageBody, MessageId,
    TopicId,
};
use bavard_sim::harness::{Fault, Harness, Network, SimNode, Step, Transport};
use bavard_sim::rng::splitmix64;
use bavard_sim::{Loss, NodeId};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPIC: TopicId = TopicId([7; 32]);

/// A broadcast core that also reports what it sends (for RMR and the message log).
struct Node {
    core: Broadcast<NodeId, ChaCha8Rng>,
    /// Report every message sent, body included.
    logging: bool,
    sent: VecDeque<Ev>,
}

enum Ev {
    Received {
        id: MessageId,
        hops: u16,
    },
    PayloadSent(MessageId),
    Sent {
        to: NodeId,
        body: MessageBody<NodeId>,
    },
}

impl SimNode for Node {
    type Message = Message<NodeId>;
    type Event = Ev;
    type Error = BroadcastError;

    fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        msg: Message<NodeId>,
    ) -> Result<(), BroadcastError> {
        self.core.handle_message(now, from, msg)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Message<NodeId>)> {
        self.core.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Ev> {
        if let Some(ev) = self.sent.pop_front() {
            return Some(ev);
        }
        loop {
            if let BroadcastEvent::Received { id, hops, .. } = self.core.poll_event()? {
                return Some(Ev::Received { id, hops });
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    fn message_len(msg: &Message<NodeId>) -> usize {
        msg.encoded_len_estimate()
    }

    fn on_sent(&mut self, to: NodeId, msg: &Message<NodeId>) {
        if let MessageBody::Gossip { id, .. } = &msg.body
            && msg.carries_payload()
        {
            self.sent.push_back(Ev::PayloadSent(*id));
        }
        if self.logging {
            self.sent.push_back(Ev::Sent {
                to,
                body: msg.body.clone(),
            });
        }
    }

    /// The connection to a crashed peer fails at once.
    fn peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        self.core.peer_down(now, &peer);
    }
}

/// The failure detector declares `dead` down to every live node.
struct Detection {
    dead: NodeId,
}

struct Sim {
    seed: u64,
    h: Harness<Node, Detection>,
    rng: ChaCha8Rng,
    /// Received events per (node, message).
    deliveries: HashMap<(NodeId, MessageId), u32>,
    /// Hop count of each delivery, per message.
    hops: HashMap<MessageId, Vec<u16>>,
    /// Payload copies sent per message.
    payload_copies: HashMap<MessageId, u64>,
    /// Every message sent: (from, to, body), when recording is on.
    log: Option<Vec<(NodeId, NodeId, MessageBody<NodeId>)>>,
}

/// Fixed latency of the link a–b, 10–100 ms, derived from the seed (symmetric).
fn latency(seed: u64, a: NodeId, b: NodeId) -> Duration {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let x = splitmix64(seed ^ (u64::from(lo) << 32) ^ u64::from(hi) ^ 0x9e37_79b9_7f4a_7c15);
    Duration::from_millis(10 + x % 91)
}

impl Sim {
    fn new(n: u32, seed: u64, config: BroadcastConfig) -> Self {
        let h = Network::new(n, move |a, b| latency(seed, a, b))
            .with_transport(Transport::Connection)
            .build(move |i, _| {
                let rng = ChaCha8Rng::seed_from_u64(
                    seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i)),
                );
                Node {
                    core: Broadcast::new(i, config.clone(), rng),
                    logging: false,
                    sent: VecDeque::new(),
                }
            });
        Self {
            seed,
            h,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            deliveries: HashMap::new(),
            hops: HashMap::new(),
            payload_copies: HashMap::new(),
            log: None,
        }
    }

    fn set_loss(&mut self, rate: f64) {
        self.h.set_loss(Loss::new(rate, self.seed));
    }

    fn record(&mut self, log: bool) {
        self.log = log.then(Vec::new);
        for i in 0..self.h.len() {
            self.h.node_mut(i).logging = log;
        }
    }

    fn run_for(&mut self, duration: Duration) {
        let end = self.h.now().after(duration);
        while let Some(step) = self.h.step_until(end) {
            match step {
                Step::External { event, .. } => {
                    for i in 0..self.h.len() {
                        self.h.act(i, |n, now| n.core.peer_down(now, &event.dead));
                    }
                }
                Step::Output { node, events, .. } => {
                    for event in events {
                        match event {
                            Ev::Received { id, hops } => {
                                *self.deliveries.entry((node, id)).or_default() += 1;
                                self.hops.entry(id).or_default().push(hops);
                            }
                            Ev::PayloadSent(id) => *self.payload_copies.entry(id).or_default() += 1,
                            Ev::Sent { to, body } => {
                                if let Some(log) = &mut self.log {
                                    log.push((node, to, body));
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(
            self.h.traffic().rejected,
            0,
            "a well-behaved network produces no errors"
        );
    }

    fn join(&mut self, node: NodeId, contacts: Vec<NodeId>) {
        self.h
            .act(node, |n, now| n.core.join_topic(now, TOPIC, contacts))
            .expect("joiners are alive")
            .unwrap();
    }

    /// Node 0 starts the topic; every other node joins through a random earlier node, one every
    /// 20 ms; then the overlay settles for `settle`.
    fn join_all(&mut self, settle: Duration) {
        self.join(0, vec![]);
        for i in 1..self.h.len() {
            let contact = self.rng.random_range(0..i);
            self.join(i, vec![contact]);
            self.run_for(Duration::from_millis(20));
        }
        self.run_for(settle);
    }

    fn publish(&mut self, from: NodeId, payload: Vec<u8>) -> MessageId {
        self.h
            .act(from, |n, now| n.core.publish(now, TOPIC, payload))
            .expect("publishers are alive")
            .unwrap()
    }

    fn alive_nodes(&self) -> Vec<NodeId> {
        (0..self.h.len()).filter(|&i| self.h.is_up(i)).collect()
    }

    fn active_view(&self, node: NodeId) -> Vec<NodeId> {
        self.h.node(node).core.active_view(&TOPIC)
    }

    /// Crashes `node`; the failure detector tells everyone `detection_delay` later.
    fn crash(&mut self, node: NodeId, detection_delay: Duration) {
        self.h.inject(Fault::Crash(node));
        let at = self.h.now().after(detection_delay);
        self.h.schedule(at, Detection { dead: node });
    }

    /// Relative message redundancy of one message over `receivers` + 1 nodes.
    fn rmr(&self, id: &MessageId, receivers: usize) -> f64 {
        let copies = self.payload_copies.get(id).copied().unwrap_or(0) as f64;
        copies / receivers as f64 - 1.0
    }

    fn ldh(&self, id: &MessageId) -> u16 {
        self.hops
            .get(id)
            .and_then(|h| h.iter().max().copied())
            .unwrap_or(0)
    }
}

fn is_connected(sim: &Sim) -> bool {
    let alive = sim.alive_nodes();
    let mut seen = BTreeSet::from([alive[0]]);
    let mut todo = vec![alive[0]];
    while let Some(n) = todo.pop() {
        for p in sim.active_view(n) {
            if sim.h.is_up(p) && seen.insert(p) {
                todo.push(p);
            }
        }
    }
    seen.len() == alive.len()
}

fn symmetric_fraction(sim: &Sim) -> f64 {
    let (mut links, mut symmetric) = (0, 0);
    for a in sim.alive_nodes() {
        for b in sim.active_view(a) {
            links += 1;
            if sim.active_view(b).contains(&a) {
                symmetric += 1;
            }
        }
    }
    symmetric as f64 / links as f64
}

#[test]
fn hundred_nodes_form_a_connected_symmetric_overlay_and_deliver_every_message_exactly_once() {
    let mut sim = Sim::new(100, 1, BroadcastConfig::default());
    sim.join_all(Duration::from_secs(5));

    assert!(is_connected(&sim), "the active views connect every node");
    let symmetric = symmetric_fraction(&sim);
    assert!(
        symmetric >= 0.98,
        "active views are symmetric, got {symmetric:.3}"
    );
    for i in 0..100 {
        let node = &sim.h.node(i).core;
        let active = node.active_view(&TOPIC);
        assert!(
            !active.is_empty()
                && active.len() <= BroadcastConfig::default().hyparview.active_view_capacity
        );
        assert!(node.passive_view(&TOPIC).len() <= 30);
        let mut tree: Vec<NodeId> = node.eager_peers(&TOPIC);
        tree.extend(node.lazy_peers(&TOPIC));
        tree.sort();
        let mut sorted = active.clone();
        sorted.sort();
        assert_eq!(tree, sorted, "eager ∪ lazy is exactly the active view");
    }

    let mut ids = Vec::new();
    for k in 0..50u32 {
        let from = sim.rng.random_range(0..100);
        ids.push((from, sim.publish(from, k.to_be_bytes().to_vec())));
        // One message at a time: concurrent messages prune the same cycle in two places and
        // the tree is grafted back together (see the report's RMR figures).
        sim.run_for(Duration::from_secs(1));
    }
    sim.run_for(Duration::from_secs(3));

    for (publisher, id) in &ids {
        for node in 0..100 {
            let count = sim.deliveries.get(&(node, *id)).copied().unwrap_or(0);
            let expected = u32::from(node != *publisher);
            assert_eq!(
                count, expected,
                "node {node} got message {id:?} {count} times"
            );
        }
    }

    // Quality once the tree has settled: the last 25 messages.
    let late = &ids[25..];
    let rmr = late.iter().map(|(_, id)| sim.rmr(id, 99)).sum::<f64>() / late.len() as f64;
    let ldh = late
        .iter()
        .map(|(_, id)| f64::from(sim.ldh(id)))
        .sum::<f64>()
        / late.len() as f64;
    let first_rmr = sim.rmr(&ids[0].1, 99);
    println!(
        "100 nodes: first message RMR {first_rmr:.2}; settled RMR {rmr:.3}, mean LDH {ldh:.1}"
    );
    assert!(rmr < 0.5, "settled tree RMR {rmr:.3} should be below 0.5");
    assert!(first_rmr > rmr, "the first flood is pruned into a tree");
}

#[test]
fn survivors_still_receive_messages_after_thirty_percent_of_nodes_crash() {
    let mut sim = Sim::new(100, 2, BroadcastConfig::default());
    // Long enough for every node to have shuffled once, filling the passive views.
    sim.join_all(Duration::from_secs(65));
    for k in 0..10u32 {
        let from = sim.rng.random_range(0..100);
        sim.publish(from, k.to_be_bytes().to_vec());
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(1));

    let mut victims: Vec<NodeId> = (0..100).collect();
    victims.shuffle(&mut sim.rng);
    for &v in &victims[..30] {
        sim.crash(v, Duration::from_secs(2));
    }
    sim.run_for(Duration::from_millis(100));

    let survivors = sim.alive_nodes();
    let mut ids = Vec::new();
    for k in 0..50u32 {
        let from = *survivors.choose(&mut sim.rng).unwrap();
        ids.push((from, sim.publish(from, k.to_be_bytes().to_vec())));
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(5));

    let (mut expected, mut got) = (0usize, 0usize);
    for (publisher, id) in &ids {
        for &node in &survivors {
            if node == *publisher {
                continue;
            }
            expected += 1;
            let count = sim.deliveries.get(&(node, *id)).copied().unwrap_or(0);
            assert!(count <= 1, "never delivered twice");
            got += count as usize;
        }
    }
    let reliability = got as f64 / expected as f64;
    let late = &ids[40..];
    let rmr = late.iter().map(|(_, id)| sim.rmr(id, 69)).sum::<f64>() / late.len() as f64;
    println!(
        "30% crashed: reliability {:.4}, RMR of the last 10 {rmr:.3}",
        reliability
    );
    assert!(
        reliability >= 0.99,
        "survivors got {reliability:.4} of later messages"
    );
    assert!(is_connected(&sim), "the survivors' overlay was repaired");
    for &node in &survivors {
        assert!(
            sim.active_view(node).iter().all(|&p| sim.h.is_up(p)),
            "no dead neighbour is kept"
        );
    }
}

#[test]
fn lossy_links_still_deliver_every_message_through_ihave_and_graft() {
    let mut sim = Sim::new(40, 3, BroadcastConfig::default());
    sim.join_all(Duration::from_secs(5));
    sim.set_loss(0.05);
    let mut ids = Vec::new();
    for k in 0..20u32 {
        let from = sim.rng.random_range(0..40);
        ids.push((from, sim.publish(from, k.to_be_bytes().to_vec())));
        sim.run_for(Duration::from_millis(200));
    }
    sim.set_loss(0.0);
    sim.run_for(Duration::from_secs(3));
    assert!(sim.h.traffic().lost > 0, "messages were lost");
    let (mut expected, mut got) = (0, 0);
    for (publisher, id) in &ids {
        for node in (0..40).filter(|n| n != publisher) {
            expected += 1;
            let count = sim.deliveries.get(&(node, *id)).copied().unwrap_or(0);
            assert!(count <= 1);
            got += count;
        }
    }
    let reliability = f64::from(got) / f64::from(expected);
    println!("5% loss: reliability {reliability:.4}");
    assert!(
        reliability >= 0.99,
        "reliability under 5% loss was {reliability:.4}"
    );
}

#[test]
fn lost_eager_push_is_recovered_by_grafting_an_ihave_announcer() {
    let mut sim = Sim::new(30, 4, BroadcastConfig::default());
    sim.join_all(Duration::from_secs(5));
    for k in 0..10u32 {
        sim.publish(k, k.to_be_bytes().to_vec());
        sim.run_for(Duration::from_millis(300));
    }
    let victim = 17;
    let publisher = 3;
    assert!(
        !sim.h.node(victim).core.lazy_peers(&TOPIC).is_empty(),
        "victim has lazy links"
    );
    // Drop every payload for the victim until the victim has sent a Graft.
    let grafted = Rc::new(Cell::new(false));
    let flag = grafted.clone();
    sim.h
        .set_drop_rule(Some(Box::new(move |from, to, msg: &Message<NodeId>| {
            if from == victim && matches!(msg.body, MessageBody::Graft { id: Some(_) }) {
                flag.set(true);
            }
            to == victim && msg.carries_payload() && !flag.get()
        })));
    sim.record(true);
    let id = sim.publish(publisher, b"recover me".to_vec());
    sim.run_for(Duration::from_secs(2));

    assert!(grafted.get(), "the victim grafted an announcer");
    let log = sim.log.take().unwrap();
    let ihave_to_victim = log.iter().any(|(_, to, body)| {
        *to == victim
            && matches!(body, MessageBody::IHave { entries } if entries.iter().any(|e| e.id == id))
    });
    assert!(ihave_to_victim, "the message was announced to the victim");
    assert_eq!(
        sim.deliveries.get(&(victim, id)),
        Some(&1),
        "recovered, exactly once"
    );
    for node in (0..30).filter(|n| *n != publisher) {
        assert_eq!(sim.deliveries.get(&(node, id)), Some(&1));
    }
}

/// Node 0 publishes three messages while alone in the topic; node 1 then joins through it.
fn late_joiner_receives(config: BroadcastConfig) -> (Sim, Vec<MessageId>) {
    let mut sim = Sim::new(2, 9, config);
    sim.join(0, vec![]);
    let ids: Vec<MessageId> = (0..3u8).map(|k| sim.publish(0, vec![k])).collect();
    sim.run_for(Duration::from_secs(1));
    sim.join(1, vec![0]);
    sim.run_for(Duration::from_secs(5));
    (sim, ids)
}

#[test]
fn a_new_neighbour_is_told_about_recent_messages_and_grafts_those_it_missed() {
    let (sim, ids) = late_joiner_receives(BroadcastConfig::default());
    for id in &ids {
        assert_eq!(
            sim.deliveries.get(&(1, *id)),
            Some(&1),
            "delivered exactly once"
        );
    }

    let mut off = BroadcastConfig::default();
    off.plumtree.announce_to_new_neighbors = 0;
    let (sim, ids) = late_joiner_receives(off);
    assert!(
        ids.iter().all(|id| !sim.deliveries.contains_key(&(1, *id))),
        "without the announcement, Plumtree never resends old messages"
    );
}
