//! Whole-overlay tests of HyParView + Plumtree, driven by a small discrete-event simulator:
//! virtual time, seeded per-link latency (10–100 ms), optional loss, crashes detected by send
//! failures and by a delayed failure detector. Quality figures (RMR, LDH, reliability) are
//! asserted, and printed with `--nocapture`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bavard_gossip::broadcast::{
    Broadcast, BroadcastConfig, BroadcastError, BroadcastEvent, IHaveEntry, Message, MessageBody,
    MessageId, TopicId,
};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TOPIC: TopicId = TopicId([7; 32]);

type Node = Broadcast<u64, ChaCha8Rng>;

/// A message in flight, ordered by delivery time then by send order (so each link is FIFO).
struct InFlight {
    at: Instant,
    seq: u64,
    from: u64,
    to: u64,
    msg: Message<u64>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Decides whether a message is dropped in flight (beyond random loss).
type Filter = Box<dyn FnMut(u64, u64, &Message<u64>) -> bool>;

struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<Node>,
    alive: Vec<bool>,
    queue: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Failure-detector reports still to come: (when, dead peer).
    detections: VecDeque<(Instant, u64)>,
    seq: u64,
    loss: f64,
    rng: ChaCha8Rng,
    filter: Option<Filter>,
    /// Received events per (node, message).
    deliveries: HashMap<(u64, MessageId), u32>,
    /// Hop count of each delivery, per message.
    hops: HashMap<MessageId, Vec<u16>>,
    /// Payload copies sent per message.
    payload_copies: HashMap<MessageId, u64>,
    /// Every message sent: (from, to, body), when recording is on.
    log: Option<Vec<(u64, u64, MessageBody<u64>)>>,
}

impl Sim {
    fn new(n: usize, seed: u64, config: BroadcastConfig) -> Self {
        let nodes = (0..n as u64)
            .map(|i| {
                let rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i));
                Broadcast::new(i, config.clone(), rng)
            })
            .collect();
        Self {
            seed,
            now: Instant::now(),
            nodes,
            alive: vec![true; n],
            queue: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            detections: VecDeque::new(),
            seq: 0,
            loss: 0.0,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            filter: None,
            deliveries: HashMap::new(),
            hops: HashMap::new(),
            payload_copies: HashMap::new(),
            log: None,
        }
    }

    /// Fixed latency of the link a–b, 10–100 ms, derived from the seed (symmetric).
    fn latency(&self, a: u64, b: u64) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut x = self.seed ^ (lo << 32) ^ hi ^ 0x9e37_79b9_7f4a_7c15;
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        Duration::from_millis(10 + x % 91)
    }

    /// Moves a node's outputs into the network, its events into the counters, and re-arms its
    /// timer.
    fn drain(&mut self, node: u64) {
        while let Some((to, msg)) = self.nodes[node as usize].poll_transmit() {
            if let MessageBody::Gossip { id, .. } = &msg.body
                && msg.carries_payload()
            {
                *self.payload_copies.entry(*id).or_default() += 1;
            }
            if let Some(log) = &mut self.log {
                log.push((node, to, msg.body.clone()));
            }
            if !self.alive[to as usize] {
                // The connection to a crashed peer fails at once.
                let now = self.now;
                self.nodes[node as usize].peer_down(now, &to);
                continue;
            }
            if self.loss > 0.0 && self.rng.random_bool(self.loss) {
                continue;
            }
            if let Some(filter) = &mut self.filter
                && filter(node, to, &msg)
            {
                continue;
            }
            self.seq += 1;
            let at = self.now + self.latency(node, to);
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from: node,
                to,
                msg,
            }));
        }
        while let Some(event) = self.nodes[node as usize].poll_event() {
            if let BroadcastEvent::Received { id, hops, .. } = event {
                *self.deliveries.entry((node, id)).or_default() += 1;
                self.hops.entry(id).or_default().push(hops);
            }
        }
        if let Some(t) = self.nodes[node as usize].poll_timeout() {
            self.timers.push(Reverse((t, node)));
        }
    }

    fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            let next_msg = self.queue.peek().map(|Reverse(m)| m.at);
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let next_detection = self.detections.front().map(|(t, _)| *t);
            let Some(next) = [next_msg, next_timer, next_detection]
                .into_iter()
                .flatten()
                .min()
            else {
                break;
            };
            if next > end {
                break;
            }
            self.now = next;
            if next_detection == Some(next) {
                let (_, dead) = self.detections.pop_front().expect("peeked");
                for i in 0..self.nodes.len() as u64 {
                    if self.alive[i as usize] {
                        self.nodes[i as usize].peer_down(next, &dead);
                        self.drain(i);
                    }
                }
            } else if next_msg == Some(next) {
                let Reverse(m) = self.queue.pop().expect("peeked");
                if !self.alive[m.to as usize] {
                    if self.alive[m.from as usize] {
                        self.nodes[m.from as usize].peer_down(next, &m.to);
                        self.drain(m.from);
                    }
                    continue;
                }
                let result = self.nodes[m.to as usize].handle_message(next, m.from, m.msg);
                assert_eq!(result, Ok(()), "a well-behaved network produces no errors");
                self.drain(m.to);
            } else {
                let Reverse((_, node)) = self.timers.pop().expect("peeked");
                if !self.alive[node as usize] {
                    continue;
                }
                match self.nodes[node as usize].poll_timeout() {
                    Some(t) if t <= next => {
                        self.nodes[node as usize].handle_timeout(next);
                        self.drain(node);
                    }
                    _ => {}
                }
            }
        }
        self.now = end;
    }

    /// Node 0 starts the topic; every other node joins through a random earlier node, one every
    /// 20 ms; then the overlay settles for `settle`.
    fn join_all(&mut self, settle: Duration) {
        let now = self.now;
        self.nodes[0].join_topic(now, TOPIC, vec![]).unwrap();
        self.drain(0);
        for i in 1..self.nodes.len() as u64 {
            let contact = self.rng.random_range(0..i);
            let now = self.now;
            self.nodes[i as usize]
                .join_topic(now, TOPIC, vec![contact])
                .unwrap();
            self.drain(i);
            self.run_for(Duration::from_millis(20));
        }
        self.run_for(settle);
    }

    fn publish(&mut self, from: u64, payload: Vec<u8>) -> MessageId {
        let now = self.now;
        let id = self.nodes[from as usize]
            .publish(now, TOPIC, payload)
            .unwrap();
        self.drain(from);
        id
    }

    fn alive_nodes(&self) -> Vec<u64> {
        (0..self.nodes.len() as u64)
            .filter(|i| self.alive[*i as usize])
            .collect()
    }

    fn crash(&mut self, node: u64, detection_delay: Duration) {
        self.alive[node as usize] = false;
        self.detections
            .push_back((self.now + detection_delay, node));
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
        for p in sim.nodes[n as usize].active_view(&TOPIC) {
            if sim.alive[p as usize] && seen.insert(p) {
                todo.push(p);
            }
        }
    }
    seen.len() == alive.len()
}

fn symmetric_fraction(sim: &Sim) -> f64 {
    let (mut links, mut symmetric) = (0, 0);
    for a in sim.alive_nodes() {
        for b in sim.nodes[a as usize].active_view(&TOPIC) {
            links += 1;
            if sim.nodes[b as usize].active_view(&TOPIC).contains(&a) {
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
    for node in &sim.nodes {
        let active = node.active_view(&TOPIC);
        assert!(
            !active.is_empty()
                && active.len() <= BroadcastConfig::default().hyparview.active_view_capacity
        );
        assert!(node.passive_view(&TOPIC).len() <= 30);
        let mut tree: Vec<u64> = node.eager_peers(&TOPIC);
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
        for node in 0..100u64 {
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

    let mut victims: Vec<u64> = (0..100).collect();
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
        let active = sim.nodes[node as usize].active_view(&TOPIC);
        assert!(
            active.iter().all(|p| sim.alive[*p as usize]),
            "no dead neighbour is kept"
        );
    }
}

#[test]
fn lossy_links_still_deliver_every_message_through_ihave_and_graft() {
    let mut sim = Sim::new(40, 3, BroadcastConfig::default());
    sim.join_all(Duration::from_secs(5));
    sim.loss = 0.05;
    let mut ids = Vec::new();
    for k in 0..20u32 {
        let from = sim.rng.random_range(0..40);
        ids.push((from, sim.publish(from, k.to_be_bytes().to_vec())));
        sim.run_for(Duration::from_millis(200));
    }
    sim.loss = 0.0;
    sim.run_for(Duration::from_secs(3));
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
        sim.publish(k as u64, k.to_be_bytes().to_vec());
        sim.run_for(Duration::from_millis(300));
    }
    let victim = 17u64;
    let publisher = 3u64;
    assert!(
        !sim.nodes[victim as usize].lazy_peers(&TOPIC).is_empty(),
        "victim has lazy links"
    );
    // Drop every payload for the victim until the victim has sent a Graft.
    let grafted = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = grafted.clone();
    sim.filter = Some(Box::new(move |from, to, msg| {
        if from == victim && matches!(msg.body, MessageBody::Graft { id: Some(_) }) {
            flag.set(true);
        }
        to == victim && msg.carries_payload() && !flag.get()
    }));
    sim.log = Some(Vec::new());
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

fn two_neighbours() -> (Node, Instant) {
    let now = Instant::now();
    let mut a = Broadcast::new(
        0u64,
        BroadcastConfig::default(),
        ChaCha8Rng::seed_from_u64(9),
    );
    a.join_topic(now, TOPIC, vec![]).unwrap();
    for peer in [1, 2] {
        a.handle_message(
            now,
            peer,
            Message {
                topic: TOPIC,
                body: MessageBody::Join,
            },
        )
        .unwrap();
    }
    while a.poll_transmit().is_some() {}
    while a.poll_event().is_some() {}
    (a, now)
}

#[test]
fn duplicate_payload_is_answered_with_prune_and_the_link_turns_lazy() {
    let (mut a, now) = two_neighbours();
    assert_eq!(a.eager_peers(&TOPIC), vec![1, 2]);
    let gossip = MessageBody::Gossip {
        id: MessageId([1; 32]),
        hops: 0,
        payload: b"x".to_vec(),
    };
    a.handle_message(
        now,
        1,
        Message {
            topic: TOPIC,
            body: gossip.clone(),
        },
    )
    .unwrap();
    let forwarded: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].0, 2);
    assert!(matches!(
        forwarded[0].1.body,
        MessageBody::Gossip { hops: 1, .. }
    ));
    assert!(matches!(
        a.poll_event(),
        Some(BroadcastEvent::Received {
            from: 1,
            hops: 1,
            ..
        })
    ));

    a.handle_message(
        now,
        2,
        Message {
            topic: TOPIC,
            body: gossip,
        },
    )
    .unwrap();
    assert_eq!(
        a.poll_transmit(),
        Some((
            2,
            Message {
                topic: TOPIC,
                body: MessageBody::Prune
            }
        ))
    );
    assert_eq!(a.poll_event(), None, "a duplicate is not delivered again");
    assert_eq!(a.eager_peers(&TOPIC), vec![1]);
    assert_eq!(a.lazy_peers(&TOPIC), vec![2]);
}

#[test]
fn oversized_publish_and_oversized_received_payload_are_rejected() {
    let (mut a, now) = two_neighbours();
    let max = a.config().plumtree.max_message_size;
    assert_eq!(
        a.publish(now, TOPIC, vec![0; max + 1]),
        Err(BroadcastError::MessageTooLarge { size: max + 1, max })
    );
    assert!(
        a.publish(now, TOPIC, vec![0; max]).is_ok(),
        "the limit itself is allowed"
    );
    while a.poll_transmit().is_some() {}
    let big = MessageBody::Gossip {
        id: MessageId([2; 32]),
        hops: 0,
        payload: vec![0; max + 1],
    };
    assert_eq!(
        a.handle_message(
            now,
            1,
            Message {
                topic: TOPIC,
                body: big
            }
        ),
        Err(BroadcastError::MessageTooLarge { size: max + 1, max })
    );
    assert_eq!(a.poll_transmit(), None);
    assert_eq!(a.poll_event(), None);
}

#[test]
fn message_for_an_unknown_topic_is_rejected_without_touching_state() {
    let (mut a, now) = two_neighbours();
    let other = TopicId([9; 32]);
    let result = a.handle_message(
        now,
        5,
        Message {
            topic: other,
            body: MessageBody::Join,
        },
    );
    assert_eq!(result, Err(BroadcastError::UnknownTopic(other)));
    assert_eq!(
        a.publish(now, other, vec![1]),
        Err(BroadcastError::UnknownTopic(other))
    );
    assert_eq!(a.poll_transmit(), None);
    assert!(!a.is_joined(&other));
    assert_eq!(a.active_view(&TOPIC), vec![1, 2]);
    let from_self = a.handle_message(
        now,
        0,
        Message {
            topic: TOPIC,
            body: MessageBody::Prune,
        },
    );
    assert_eq!(from_self, Err(BroadcastError::FromSelf));
}

#[test]
fn floods_are_rejected_with_typed_errors() {
    let (mut a, now) = two_neighbours();
    let entries = vec![
        IHaveEntry {
            id: MessageId([3; 32]),
            hops: 1
        };
        65
    ];
    assert_eq!(
        a.handle_message(
            now,
            1,
            Message {
                topic: TOPIC,
                body: MessageBody::IHave { entries }
            }
        ),
        Err(BroadcastError::TooManyIds { count: 65, max: 64 })
    );
    let peers: Vec<u64> = (10..40).collect();
    let shuffle = MessageBody::Shuffle {
        origin: 1,
        ttl: 3,
        peers,
    };
    assert_eq!(
        a.handle_message(
            now,
            1,
            Message {
                topic: TOPIC,
                body: shuffle
            }
        ),
        Err(BroadcastError::TooManyPeers { count: 30, max: 8 })
    );

    let mut config = BroadcastConfig::default();
    config.limits.max_topics = 2;
    config.limits.max_queued_transmits = 10;
    let mut b = Broadcast::new(0u64, config, ChaCha8Rng::seed_from_u64(1));
    b.join_topic(now, TopicId([1; 32]), vec![]).unwrap();
    b.join_topic(now, TopicId([2; 32]), vec![]).unwrap();
    assert_eq!(
        b.join_topic(now, TopicId([3; 32]), vec![]),
        Err(BroadcastError::TooManyTopics { max: 2 })
    );
    // A peer flooding Joins while nobody drains the queue is refused once it is full.
    let topic = TopicId([1; 32]);
    let mut refused = 0;
    for peer in 1..100u64 {
        match b.handle_message(
            now,
            peer,
            Message {
                topic,
                body: MessageBody::Join,
            },
        ) {
            Ok(()) => {}
            Err(BroadcastError::TransmitQueueFull { max: 10 }) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 80, "the flood was refused, {refused} of 99");
    assert!(
        b.active_view(&topic).len() <= BroadcastConfig::default().hyparview.active_view_capacity
    );
}

#[test]
fn seen_cache_stays_bounded_under_many_messages() {
    let mut config = BroadcastConfig::default();
    config.plumtree.seen_cache_capacity = 50;
    let now = Instant::now();
    let mut a = Broadcast::new(0u64, config, ChaCha8Rng::seed_from_u64(5));
    a.join_topic(now, TOPIC, vec![]).unwrap();
    a.handle_message(
        now,
        1,
        Message {
            topic: TOPIC,
            body: MessageBody::Join,
        },
    )
    .unwrap();
    for n in 0..500u32 {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let body = MessageBody::Gossip {
            id: MessageId(id),
            hops: 0,
            payload: vec![1],
        };
        a.handle_message(now, 1, Message { topic: TOPIC, body })
            .unwrap();
        while a.poll_transmit().is_some() {}
        while a.poll_event().is_some() {}
        assert!(a.seen_messages(&TOPIC) <= 50);
    }
    assert_eq!(a.seen_messages(&TOPIC), 50);
}

#[test]
fn leaving_a_topic_says_goodbye_to_every_neighbour() {
    let (mut a, now) = two_neighbours();
    assert!(a.leave_topic(now, TOPIC));
    let goodbyes: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
    assert_eq!(goodbyes.len(), 2);
    assert!(
        goodbyes
            .iter()
            .all(|(_, m)| m.body == MessageBody::Disconnect { alive: false })
    );
    assert!(!a.is_joined(&TOPIC));
    assert_eq!(a.poll_timeout(), None);
    assert!(!a.leave_topic(now, TOPIC));
}

/// Node 0 publishes three messages while alone in the topic; node 1 then joins through it.
fn late_joiner_receives(config: BroadcastConfig) -> (Sim, Vec<MessageId>) {
    let mut sim = Sim::new(2, 9, config);
    let now = sim.now;
    sim.nodes[0].join_topic(now, TOPIC, vec![]).unwrap();
    sim.drain(0);
    let ids: Vec<MessageId> = (0..3u8).map(|k| sim.publish(0, vec![k])).collect();
    sim.run_for(Duration::from_secs(1));
    let now = sim.now;
    sim.nodes[1].join_topic(now, TOPIC, vec![0]).unwrap();
    sim.drain(1);
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
