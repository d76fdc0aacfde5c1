//! Whole-cluster tests of the SWIM + Lifeguard membership: an in-memory network with virtual
//! time, seeded latency and loss, crashes and partitions, driving N state machines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bavard_gossip::membership::{
    MemberState, Membership, MembershipConfig, MembershipError, MembershipEvent, Message, Update,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Node = Membership<u64, ChaCha8Rng>;

/// A seeded in-memory network delivering messages between membership instances.
struct Net {
    base: Instant,
    now: Instant,
    config: MembershipConfig,
    nodes: BTreeMap<u64, Node>,
    /// In flight: (delivery time, sequence) → (from, to, message).
    in_flight: BTreeMap<(Instant, u64), (u64, u64, Message<u64>)>,
    sent: u64,
    rng: ChaCha8Rng,
    loss: f64,
    /// When set, messages between the two sides are dropped.
    partition: Option<BTreeSet<u64>>,
    /// Nodes that receive nothing (but still send).
    deaf: BTreeSet<u64>,
    events: Vec<(Duration, u64, MembershipEvent<u64>)>,
    errors: Vec<(u64, MembershipError)>,
    max_packet: usize,
    bytes_sent: u64,
    pings_sent: BTreeMap<u64, u64>,
}

impl Net {
    fn new(seed: u64, loss: f64) -> Self {
        // Replay or explore other seeds with MEMBERSHIP_SEED=n.
        let seed =
            std::env::var("MEMBERSHIP_SEED").map_or(seed, |s| s.parse().expect("a u64 seed"));
        let base = Instant::now();
        Self {
            base,
            now: base,
            config: MembershipConfig::default(),
            nodes: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            sent: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            loss,
            partition: None,
            deaf: BTreeSet::new(),
            events: Vec::new(),
            errors: Vec::new(),
            max_packet: 0,
            bytes_sent: 0,
            pings_sent: BTreeMap::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn add(&mut self, id: u64) {
        let rng = ChaCha8Rng::seed_from_u64(self.rng.random());
        let meta = format!("/ip4/10.0.0.{id}/udp/4001/quic-v1").into_bytes();
        self.nodes.insert(
            id,
            Membership::new(id, meta, self.config.clone(), rng, self.now),
        );
    }

    fn join(&mut self, id: u64, seeds: Vec<u64>) {
        let now = self.now;
        self.nodes.get_mut(&id).unwrap().join(now, seeds);
        self.flush(id);
    }

    fn kill(&mut self, id: u64) -> Node {
        self.nodes.remove(&id).unwrap()
    }

    /// `n` nodes all joining through node 0, not yet run.
    fn joining(seed: u64, loss: f64, n: u64) -> Self {
        let mut net = Self::new(seed, loss);
        for id in 0..n {
            net.add(id);
        }
        for id in 1..n {
            net.join(id, vec![0]);
        }
        net
    }

    /// A formed cluster of `n` nodes (every node knows every other as live), run `settle` more.
    fn cluster(seed: u64, loss: f64, n: u64, settle: Duration) -> Self {
        let mut net = Self::joining(seed, loss, n);
        let n = n as usize;
        net.run_until_true(secs(90), |net| {
            net.nodes.values().all(|m| m.live_count() == n)
        })
        .expect("the cluster forms within 90 s");
        net.run_for(settle);
        net
    }

    /// Runs in 100 ms steps until `cond` holds; the virtual time it took, or `None` after
    /// `limit`.
    fn run_until_true(&mut self, limit: Duration, cond: impl Fn(&Net) -> bool) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if cond(self) {
                return Some(self.now - start);
            }
            self.run_for(Duration::from_millis(100));
        }
        cond(self).then(|| self.now - start)
    }

    fn flush(&mut self, id: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = node.poll_event() {
            self.events.push((self.now - self.base, id, e));
        }
        for (to, msg) in out {
            if !matches!(msg, Message::PushPull { .. }) {
                self.max_packet = self.max_packet.max(msg.encoded_len_estimate());
            }
            self.bytes_sent += msg.encoded_len_estimate() as u64;
            if matches!(msg, Message::Ping { .. }) {
                *self.pings_sent.entry(id).or_default() += 1;
            }
            let crosses = self
                .partition
                .as_ref()
                .is_some_and(|side| side.contains(&id) != side.contains(&to));
            let lost = self.rng.random::<f64>() < self.loss;
            if crosses || lost || self.deaf.contains(&to) {
                continue;
            }
            let latency = Duration::from_micros(self.rng.random_range(2_000..8_000));
            self.sent += 1;
            self.in_flight
                .insert((self.now + latency, self.sent), (id, to, msg));
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    fn run_until(&mut self, end: Instant) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < 5_000_000, "simulation does not make progress");
            let timer = self
                .nodes
                .iter()
                .filter_map(|(id, n)| n.poll_timeout().map(|t| (t, *id)))
                .min();
            let msg = self.in_flight.keys().next().copied();
            match (timer, msg) {
                (Some((t, id)), m) if m.is_none_or(|(mt, _)| t <= mt) => {
                    if t > end {
                        break;
                    }
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.nodes.get_mut(&id).unwrap().handle_timeout(now);
                    self.flush(id);
                }
                (_, Some(key)) => {
                    if key.0 > end {
                        break;
                    }
                    self.now = self.now.max(key.0);
                    let (from, to, msg) = self.in_flight.remove(&key).unwrap();
                    let now = self.now;
                    if let Some(node) = self.nodes.get_mut(&to) {
                        if let Err(e) = node.handle_message(now, from, msg) {
                            self.errors.push((to, e));
                        }
                        self.flush(to);
                    }
                }
                (None, None) => break,
                _ => unreachable!(),
            }
        }
        self.now = self.now.max(end);
    }

    fn state_of(&self, observer: u64, id: u64) -> Option<(MemberState, u64)> {
        self.nodes[&observer]
            .member(&id)
            .map(|m| (m.state(), m.incarnation()))
    }

    /// Whether every running node sees every id in `ids` alive (and nothing else alive).
    fn all_see_alive(&self, ids: &[u64]) -> bool {
        self.nodes.values().all(|n| {
            n.alive_count() == ids.len()
                && ids.iter().all(|id| {
                    n.member(id)
                        .is_some_and(|m| m.state() == MemberState::Alive)
                })
        })
    }

    fn downs(&self) -> Vec<(Duration, u64, u64)> {
        self.events
            .iter()
            .filter_map(|(t, obs, e)| match e {
                MembershipEvent::MemberDown { id, .. } => Some((*t, *obs, *id)),
                _ => None,
            })
            .collect()
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn twenty_nodes_joining_through_one_seed_converge_to_all_alive() {
    let mut net = Net::joining(1, 0.0, 20);
    let ids: Vec<u64> = (0..20).collect();
    // Piggybacked gossip usually does it in about a second; push-pull (every 30 s) catches
    // whatever the limited retransmissions missed.
    let converged = net
        .run_until_true(secs(60), |net| net.all_see_alive(&ids))
        .expect("20 nodes converge within 60 s");
    eprintln!("20 nodes converged in {converged:?}");
    let (bytes, start) = (net.bytes_sent, net.elapsed());
    net.run_for(secs(60));
    let per_node = (net.bytes_sent - bytes) as f64 / (net.elapsed() - start).as_secs_f64() / 20.0;
    eprintln!("steady state: {per_node:.0} bytes/s sent per node");
    assert!(net.all_see_alive(&ids));
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert!(net.downs().is_empty());
    for n in net.nodes.values() {
        let m = n.member(&7).unwrap();
        assert_eq!(m.meta(), b"/ip4/10.0.0.7/udp/4001/quic-v1");
    }
}

#[test]
fn datagram_messages_stay_under_the_packet_budget() {
    let mut net = Net::cluster(2, 0.0, 30, secs(20));
    // A burst of changes fills the broadcast queues.
    for id in 20..30 {
        net.kill(id);
    }
    net.run_for(secs(60));
    assert!(
        net.max_packet > 200,
        "piggyback was exercised ({} bytes)",
        net.max_packet
    );
    assert!(
        net.max_packet <= net.config.max_packet_size,
        "{} bytes",
        net.max_packet
    );
}

#[test]
fn killed_node_is_declared_dead_by_all_in_time_and_no_live_node_dies_under_ten_percent_loss() {
    let mut net = Net::cluster(3, 0.10, 20, secs(30));
    // Under loss a member may be briefly suspected (and refute): every node must know all 20
    // as live.
    assert!(
        net.nodes.values().all(|n| n.live_count() == 20),
        "converged despite 10% loss"
    );
    let killed_at = net.elapsed();
    net.kill(7);
    net.run_for(secs(90));
    let downs = net.downs();
    assert!(
        downs.iter().all(|(_, _, id)| *id == 7),
        "a live node was declared dead: {downs:?}"
    );
    // Bound: one full probe pass (19 periods) for a first detection, then at most the maximum
    // suspicion timeout, 6 · 4 · log10(20) s ≈ 31.2 s, plus dissemination slack.
    let bound = secs(19) + Duration::from_secs_f64(31.3) + secs(5);
    let mut latest = Duration::ZERO;
    for observer in net.nodes.keys() {
        let t = downs
            .iter()
            .find(|(_, o, _)| o == observer)
            .map(|(t, _, _)| *t - killed_at)
            .unwrap_or_else(|| panic!("node {observer} never declared 7 dead"));
        assert!(t <= bound, "node {observer} took {t:?}");
        latest = latest.max(t);
    }
    let first = downs.iter().map(|(t, _, _)| *t - killed_at).min().unwrap();
    let false_suspicions: BTreeSet<(u64, u64)> = net
        .events
        .iter()
        .filter_map(|(_, _, e)| match e {
            MembershipEvent::MemberSuspect { id, incarnation } if *id != 7 => {
                Some((*id, *incarnation))
            }
            _ => None,
        })
        .collect();
    eprintln!(
        "node 7 declared dead: first after {first:?}, by all after {latest:?}; {} suspicions \
         of live nodes since start ({:?} of virtual time), all refuted",
        false_suspicions.len(),
        net.elapsed()
    );
    assert!(net.errors.is_empty(), "{:?}", net.errors);
}

#[test]
fn suspected_live_node_refutes_and_stays_alive() {
    let mut net = Net::cluster(4, 0.0, 6, secs(10));
    let ids: Vec<u64> = (0..6).collect();
    assert!(net.all_see_alive(&ids));
    let inc = net.state_of(2, 3).unwrap().1;
    let forged = Update {
        member: 3,
        incarnation: inc,
        state: MemberState::Suspect,
        meta: vec![],
        from: 1,
    };
    let now = net.now;
    net.nodes
        .get_mut(&2)
        .unwrap()
        .handle_message(
            now,
            1,
            Message::Gossip {
                piggyback: vec![forged],
            },
        )
        .unwrap();
    assert_eq!(net.state_of(2, 3).unwrap().0, MemberState::Suspect);
    net.flush(2);
    let refuted = net.run_until_true(secs(40), |net| {
        net.all_see_alive(&ids)
            && net
                .nodes
                .values()
                .all(|n| n.member(&3).unwrap().incarnation() > inc)
    });
    assert!(refuted.is_some(), "everyone sees node 3 alive again");
    assert!(
        net.nodes[&3].local_incarnation() > inc,
        "node 3 refuted by bumping its incarnation"
    );
    for obs in net.nodes.keys() {
        assert_eq!(
            net.state_of(*obs, 3).unwrap().1,
            net.nodes[&3].local_incarnation()
        );
    }
    let recovered = |(_, o, e): &(Duration, u64, MembershipEvent<u64>)| {
        *o == 2 && matches!(e, MembershipEvent::MemberRecovered { id: 3, .. })
    };
    assert!(net.events.iter().any(recovered));
    assert!(net.downs().is_empty());
}

#[test]
fn two_halves_partitioned_until_declared_dead_converge_through_push_pull_after_healing() {
    let mut net = Net::new(5, 0.0);
    // Members must remember the dead ones for longer than the partition plus the detection time,
    // or the halves forget each other (memberlist has the same limit; Serf adds reconnects).
    net.config.gossip_to_the_dead_time = secs(120);
    for id in 0..10 {
        net.add(id);
    }
    for id in 1..10 {
        net.join(id, vec![0]);
    }
    let ids: Vec<u64> = (0..10).collect();
    let formed = net.run_until_true(secs(60), |net| net.all_see_alive(&ids));
    assert!(formed.is_some());
    net.partition = Some((0..5).collect());
    net.run_for(secs(60));
    // Each side has declared all of the other dead and stopped talking about it: only a
    // push-pull (which also targets dead members) can bring them together again.
    for obs in 0..10u64 {
        for id in 0..10u64 {
            let expected = if (obs < 5) == (id < 5) {
                MemberState::Alive
            } else {
                MemberState::Dead
            };
            assert_eq!(
                net.state_of(obs, id).unwrap().0,
                expected,
                "{obs} sees {id}"
            );
        }
        assert_eq!(net.nodes[&obs].queued_updates(), 0);
    }
    net.partition = None;
    let healed = net.elapsed();
    let mut converged = None;
    for _ in 0..1200 {
        net.run_for(Duration::from_millis(100));
        if net.all_see_alive(&ids) {
            converged = Some(net.elapsed() - healed);
            break;
        }
    }
    let converged = converged.expect("halves did not converge within 120 s of healing");
    eprintln!("partition healed in {converged:?}");
    net.run_for(secs(30));
    assert!(net.all_see_alive(&ids));
}

#[test]
fn graceful_leave_shows_left_everywhere_then_is_reaped() {
    let mut net = Net::cluster(6, 0.0, 6, secs(10));
    let now = net.now;
    net.nodes.get_mut(&4).unwrap().leave(now);
    assert!(net.nodes[&4].has_left());
    net.flush(4);
    let seen = net.run_until_true(secs(10), |net| {
        [0, 1, 2, 3, 5]
            .iter()
            .all(|obs| net.state_of(*obs, 4).unwrap().0 == MemberState::Left)
    });
    assert!(seen.is_some());
    for obs in [0, 1, 2, 3, 5] {
        assert_eq!(
            net.state_of(obs, 4).unwrap().0,
            MemberState::Left,
            "seen by {obs}"
        );
    }
    net.kill(4);
    net.run_for(secs(35));
    for obs in [0, 1, 2, 3, 5] {
        assert!(net.state_of(obs, 4).is_none(), "node 4 reaped by {obs}");
    }
    assert!(
        net.downs().is_empty(),
        "a departed node is not reported dead: {:?}",
        net.downs()
    );
}

#[test]
fn restarted_node_rejoins_alive_above_its_previous_incarnation() {
    let mut net = Net::cluster(7, 0.0, 8, secs(10));
    // Give node 5 a non-zero incarnation first.
    let now = net.now;
    let suspect = Update {
        member: 5,
        incarnation: 0,
        state: MemberState::Suspect,
        meta: vec![],
        from: 1,
    };
    net.nodes
        .get_mut(&0)
        .unwrap()
        .handle_message(
            now,
            1,
            Message::Gossip {
                piggyback: vec![suspect],
            },
        )
        .unwrap();
    net.flush(0);
    net.run_for(secs(5));
    let old = net.nodes[&5].local_incarnation();
    assert!(old >= 1);
    net.kill(5);
    let all_dead = net.run_until_true(secs(60), |net| {
        net.nodes
            .values()
            .all(|n| n.member(&5).unwrap().state() == MemberState::Dead)
    });
    assert!(all_dead.is_some());
    for obs in [0, 1, 2, 3, 4, 6, 7] {
        assert_eq!(
            net.state_of(obs, 5),
            Some((MemberState::Dead, old)),
            "seen by {obs}"
        );
    }
    net.add(5);
    assert_eq!(net.nodes[&5].local_incarnation(), 0);
    net.join(5, vec![0]);
    let ids: Vec<u64> = (0..8).collect();
    let rejoined = net.run_until_true(secs(60), |net| {
        let new = net.nodes[&5].local_incarnation();
        net.all_see_alive(&ids)
            && net
                .nodes
                .values()
                .all(|n| n.member(&5).unwrap().incarnation() == new)
    });
    assert!(rejoined.is_some(), "everyone sees the restarted node alive");
    let new = net.nodes[&5].local_incarnation();
    assert!(
        new > old,
        "learned its old incarnation {old} and refuted it: {new}"
    );
    for obs in net.nodes.keys() {
        assert_eq!(net.state_of(*obs, 5), Some((MemberState::Alive, new)));
    }
}

#[test]
fn local_health_rises_when_acks_are_missed_and_probing_slows() {
    let mut net = Net::cluster(8, 0.0, 6, secs(10));
    assert_eq!(net.nodes[&0].health_score(), 0);
    net.deaf.insert(0);
    net.pings_sent.clear();
    net.run_for(secs(20));
    let n0 = &net.nodes[&0];
    assert!(n0.health_score() >= 3, "health score {}", n0.health_score());
    assert!(n0.current_probe_interval() > net.config.probe_interval);
    let deaf_pings = net.pings_sent[&0];
    let healthy_pings = net.pings_sent[&1];
    eprintln!("in 20 s a deaf node sent {deaf_pings} pings, a healthy one {healthy_pings}");
    assert!(deaf_pings * 2 < healthy_pings);
    // Healthy again: successful probes bring the score back down.
    net.deaf.clear();
    net.run_for(secs(120));
    assert_eq!(net.nodes[&0].health_score(), 0);
}

#[test]
fn join_retries_the_next_seed_when_the_first_does_not_answer() {
    let mut net = Net::new(9, 0.0);
    for id in [0, 1] {
        net.add(id);
    }
    net.join(1, vec![42, 0]);
    assert!(net.nodes[&1].is_joining());
    net.run_for(secs(5));
    assert!(!net.nodes[&1].is_joining());
    assert!(
        net.events
            .iter()
            .any(|(_, o, e)| *o == 1 && *e == MembershipEvent::Joined { via: 0 })
    );
    assert!(net.all_see_alive(&[0, 1]));
}
