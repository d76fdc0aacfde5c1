//! Whole-cluster tests of the SWIM + Lifeguard membership on the harness: virtual time, seeded
//! latency (2–8 ms per message) and loss, crashes, restarts, partitions and a deaf node, driving N
//! state machines.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_gossip::membership::{
    MemberState, Membership, MembershipConfig, MembershipError, MembershipEvent, Message, Update,
};
use bavard_sim::harness::{Fault, Harness, Network, Partition, Restart, SimNode, Step};
use bavard_sim::{Loss, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A membership core that also counts what it sends.
struct Member {
    core: Membership<NodeId, ChaCha8Rng>,
    /// Pings sent since the count was last reset.
    pings: u64,
    /// The largest datagram sent (push-pull goes on a stream and is left out).
    max_packet: usize,
    rejected: Vec<MembershipError>,
}

enum Out {
    Event(MembershipEvent<NodeId>),
    Rejected(MembershipError),
}

impl SimNode for Member {
    type Message = Message<NodeId>;
    type Event = Out;
    type Error = ();

    fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        msg: Message<NodeId>,
    ) -> Result<(), ()> {
        self.core.handle_message(now, from, msg).map_err(|e| {
            // Reported as an event, so that a test can say which error it was.
            self.rejected.push(e);
        })
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Message<NodeId>)> {
        self.core.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Out> {
        if let Some(e) = self.rejected.pop() {
            return Some(Out::Rejected(e));
        }
        self.core.poll_event().map(Out::Event)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    fn message_len(msg: &Message<NodeId>) -> usize {
        msg.encoded_len_estimate()
    }

    fn on_sent(&mut self, _: NodeId, msg: &Message<NodeId>) {
        if !matches!(msg, Message::PushPull { .. }) {
            self.max_packet = self.max_packet.max(msg.encoded_len_estimate());
        }
        if matches!(msg, Message::Ping { .. }) {
            self.pings += 1;
        }
    }
}

/// A seeded simulated network of membership instances.
struct Net {
    h: Harness<Member, ()>,
    config: MembershipConfig,
    events: Vec<(Duration, NodeId, MembershipEvent<NodeId>)>,
    errors: Vec<(NodeId, MembershipError)>,
    /// Nodes that receive nothing (but still send).
    deaf: Rc<RefCell<BTreeSet<NodeId>>>,
}

impl Net {
    /// `n` nodes started (their timers running), none joined yet.
    fn new(seed: u64, loss: f64, n: u32, config: MembershipConfig) -> Self {
        // Replay or explore other seeds with MEMBERSHIP_SEED=n.
        let seed =
            std::env::var("MEMBERSHIP_SEED").map_or(seed, |s| s.parse().expect("a u64 seed"));
        let mut jitter = ChaCha8Rng::seed_from_u64(seed ^ 0x1a7e);
        let latency =
            move |_: NodeId, _: NodeId| Duration::from_micros(jitter.random_range(2_000..8_000));
        // Every node, and every node restarted with its state lost, draws its own seed.
        let mut seeds = ChaCha8Rng::seed_from_u64(seed);
        let member_config = config.clone();
        let mut h = Network::new(n, latency)
            .with_loss(Loss::new(loss, seed))
            .build(move |id, now| {
                let rng = ChaCha8Rng::seed_from_u64(seeds.random());
                let meta = format!("/ip4/10.0.0.{id}/udp/4001/quic-v1").into_bytes();
                Member {
                    core: Membership::new(id, meta, member_config.clone(), rng, now),
                    pings: 0,
                    max_packet: 0,
                    rejected: Vec::new(),
                }
            });
        for id in 0..n {
            h.act(id, |_, _| ());
        }
        let deaf = Rc::new(RefCell::new(BTreeSet::new()));
        let deaf_rule = deaf.clone();
        h.set_drop_rule(Some(Box::new(move |_, to, _| {
            deaf_rule.borrow().contains(&to)
        })));
        Self {
            h,
            config,
            events: Vec::new(),
            errors: Vec::new(),
            deaf,
        }
    }

    fn elapsed(&self) -> Duration {
        Duration::from_micros(self.h.now().as_micros())
    }

    fn node(&self, id: NodeId) -> &Membership<NodeId, ChaCha8Rng> {
        &self.h.node(id).core
    }

    /// The nodes running (not killed).
    fn running(&self) -> impl Iterator<Item = &Membership<NodeId, ChaCha8Rng>> + '_ {
        (0..self.h.len())
            .filter(|&id| self.h.is_up(id))
            .map(|id| self.node(id))
    }

    fn running_ids(&self) -> Vec<NodeId> {
        (0..self.h.len()).filter(|&id| self.h.is_up(id)).collect()
    }

    fn join(&mut self, id: NodeId, seeds: Vec<NodeId>) {
        self.h.act(id, |m, now| m.core.join(now, seeds));
    }

    /// Gives node `id` a message as if `from` had sent it.
    fn inject(&mut self, id: NodeId, from: NodeId, msg: Message<NodeId>) {
        self.h
            .act(id, |m, now| m.core.handle_message(now, from, msg))
            .expect("the node is running")
            .unwrap();
    }

    fn kill(&mut self, id: NodeId) {
        self.h.inject(Fault::Crash(id));
    }

    /// Restarts a killed node as a new process: a fresh state, incarnation 0.
    fn restart_fresh(&mut self, id: NodeId) {
        self.h.inject(Fault::Restart(id, Restart::StateLost));
    }

    /// `n` nodes all joining through node 0, not yet run.
    fn joining(seed: u64, loss: f64, n: u32) -> Self {
        let mut net = Self::new(seed, loss, n, MembershipConfig::default());
        for id in 1..n {
            net.join(id, vec![0]);
        }
        net
    }

    /// A formed cluster of `n` nodes (every node knows every other as live), run `settle` more.
    fn cluster(seed: u64, loss: f64, n: u32, settle: Duration) -> Self {
        let mut net = Self::joining(seed, loss, n);
        let n = n as usize;
        net.run_until_true(secs(90), |net| net.running().all(|m| m.live_count() == n))
            .expect("the cluster forms within 90 s");
        net.run_for(settle);
        net
    }

    /// Runs in 100 ms steps until `cond` holds; the virtual time it took, or `None` after
    /// `limit`.
    fn run_until_true(&mut self, limit: Duration, cond: impl Fn(&Net) -> bool) -> Option<Duration> {
        let start = self.elapsed();
        while self.elapsed() - start < limit {
            if cond(self) {
                return Some(self.elapsed() - start);
            }
            self.run_for(Duration::from_millis(100));
        }
        cond(self).then(|| self.elapsed() - start)
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.h.now().after(d);
        while let Some(step) = self.h.step_until(end) {
            if let Step::Output { at, node, events } = step {
                let at = Duration::from_micros(at.as_micros());
                for out in events {
                    match out {
                        Out::Event(e) => self.events.push((at, node, e)),
                        Out::Rejected(e) => self.errors.push((node, e)),
                    }
                }
            }
        }
    }

    fn max_packet(&self) -> usize {
        (0..self.h.len())
            .map(|id| self.h.node(id).max_packet)
            .max()
            .unwrap_or(0)
    }

    fn state_of(&self, observer: NodeId, id: NodeId) -> Option<(MemberState, u64)> {
        self.node(observer)
            .member(&id)
            .map(|m| (m.state(), m.incarnation()))
    }

    /// Whether every running node sees every id in `ids` alive (and nothing else alive).
    fn all_see_alive(&self, ids: &[NodeId]) -> bool {
        self.running().all(|n| {
            n.alive_count() == ids.len()
                && ids.iter().all(|id| {
                    n.member(id)
                        .is_some_and(|m| m.state() == MemberState::Alive)
                })
        })
    }

    fn downs(&self) -> Vec<(Duration, NodeId, NodeId)> {
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
    let ids: Vec<NodeId> = (0..20).collect();
    // Piggybacked gossip usually does it in about a second; push-pull (every 30 s) catches
    // whatever the limited retransmissions missed.
    let converged = net
        .run_until_true(secs(60), |net| net.all_see_alive(&ids))
        .expect("20 nodes converge within 60 s");
    eprintln!("20 nodes converged in {converged:?}");
    let (bytes, start) = (net.h.traffic().bytes, net.elapsed());
    net.run_for(secs(60));
    let per_node =
        (net.h.traffic().bytes - bytes) as f64 / (net.elapsed() - start).as_secs_f64() / 20.0;
    eprintln!("steady state: {per_node:.0} bytes/s sent per node");
    assert!(net.all_see_alive(&ids));
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert!(net.downs().is_empty());
    for n in net.running() {
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
    let max_packet = net.max_packet();
    assert!(
        max_packet > 200,
        "piggyback was exercised ({max_packet} bytes)"
    );
    assert!(
        max_packet <= net.config.max_packet_size,
        "{max_packet} bytes"
    );
}

#[test]
fn killed_node_is_declared_dead_by_all_in_time_and_no_live_node_dies_under_ten_percent_loss() {
    let mut net = Net::cluster(3, 0.10, 20, secs(30));
    // Under loss a member may be briefly suspected (and refute): every node must know all 20
    // as live.
    assert!(
        net.running().all(|n| n.live_count() == 20),
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
    for observer in net.running_ids() {
        let t = downs
            .iter()
            .find(|(_, o, _)| *o == observer)
            .map(|(t, _, _)| *t - killed_at)
            .unwrap_or_else(|| panic!("node {observer} never declared 7 dead"));
        assert!(t <= bound, "node {observer} took {t:?}");
        latest = latest.max(t);
    }
    let first = downs.iter().map(|(t, _, _)| *t - killed_at).min().unwrap();
    let false_suspicions: BTreeSet<(NodeId, u64)> = net
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
    let ids: Vec<NodeId> = (0..6).collect();
    assert!(net.all_see_alive(&ids));
    let inc = net.state_of(2, 3).unwrap().1;
    let forged = Update {
        member: 3,
        incarnation: inc,
        state: MemberState::Suspect,
        meta: vec![],
        signature: vec![],
        from: 1,
    };
    net.inject(
        2,
        1,
        Message::Gossip {
            piggyback: vec![forged],
        },
    );
    assert_eq!(net.state_of(2, 3).unwrap().0, MemberState::Suspect);
    let refuted = net.run_until_true(secs(40), |net| {
        net.all_see_alive(&ids)
            && net
                .running()
                .all(|n| n.member(&3).unwrap().incarnation() > inc)
    });
    assert!(refuted.is_some(), "everyone sees node 3 alive again");
    assert!(
        net.node(3).local_incarnation() > inc,
        "node 3 refuted by bumping its incarnation"
    );
    for obs in net.running_ids() {
        assert_eq!(
            net.state_of(obs, 3).unwrap().1,
            net.node(3).local_incarnation()
        );
    }
    let recovered = |(_, o, e): &(Duration, NodeId, MembershipEvent<NodeId>)| {
        *o == 2 && matches!(e, MembershipEvent::MemberRecovered { id: 3, .. })
    };
    assert!(net.events.iter().any(recovered));
    assert!(net.downs().is_empty());
}

#[test]
fn two_halves_partitioned_until_declared_dead_converge_through_push_pull_after_healing() {
    // Members must remember the dead ones for longer than the partition plus the detection time,
    // or the halves forget each other (memberlist has the same limit; Serf adds reconnects).
    let config = MembershipConfig {
        gossip_to_the_dead_time: secs(120),
        ..MembershipConfig::default()
    };
    let mut net = Net::new(5, 0.0, 10, config);
    for id in 1..10 {
        net.join(id, vec![0]);
    }
    let ids: Vec<NodeId> = (0..10).collect();
    let formed = net.run_until_true(secs(60), |net| net.all_see_alive(&ids));
    assert!(formed.is_some());
    net.h.inject(Fault::Partition(Partition::between([
        (0..5).collect::<Vec<_>>()
    ])));
    net.run_for(secs(60));
    // Each side has declared all of the other dead and stopped talking about it: only a
    // push-pull (which also targets dead members) can bring them together again.
    for obs in 0..10 {
        for id in 0..10 {
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
        assert_eq!(net.node(obs).queued_updates(), 0);
    }
    net.h.inject(Fault::Heal);
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
    net.h.act(4, |m, now| m.core.leave(now));
    assert!(net.node(4).has_left());
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
    let suspect = Update {
        member: 5,
        incarnation: 0,
        state: MemberState::Suspect,
        meta: vec![],
        signature: vec![],
        from: 1,
    };
    net.inject(
        0,
        1,
        Message::Gossip {
            piggyback: vec![suspect],
        },
    );
    net.run_for(secs(5));
    let old = net.node(5).local_incarnation();
    assert!(old >= 1);
    net.kill(5);
    let all_dead = net.run_until_true(secs(60), |net| {
        net.running()
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
    net.restart_fresh(5);
    assert_eq!(net.node(5).local_incarnation(), 0);
    net.join(5, vec![0]);
    let ids: Vec<NodeId> = (0..8).collect();
    let rejoined = net.run_until_true(secs(60), |net| {
        let new = net.node(5).local_incarnation();
        net.all_see_alive(&ids)
            && net
                .running()
                .all(|n| n.member(&5).unwrap().incarnation() == new)
    });
    assert!(rejoined.is_some(), "everyone sees the restarted node alive");
    let new = net.node(5).local_incarnation();
    assert!(
        new > old,
        "learned its old incarnation {old} and refuted it: {new}"
    );
    for obs in net.running_ids() {
        assert_eq!(net.state_of(obs, 5), Some((MemberState::Alive, new)));
    }
}

#[test]
fn local_health_rises_when_acks_are_missed_and_probing_slows() {
    let mut net = Net::cluster(8, 0.0, 6, secs(10));
    assert_eq!(net.node(0).health_score(), 0);
    net.deaf.borrow_mut().insert(0);
    for id in 0..6 {
        net.h.node_mut(id).pings = 0;
    }
    net.run_for(secs(20));
    let n0 = net.node(0);
    assert!(n0.health_score() >= 3, "health score {}", n0.health_score());
    assert!(n0.current_probe_interval() > net.config.probe_interval);
    let deaf_pings = net.h.node(0).pings;
    let healthy_pings = net.h.node(1).pings;
    eprintln!("in 20 s a deaf node sent {deaf_pings} pings, a healthy one {healthy_pings}");
    assert!(deaf_pings * 2 < healthy_pings);
    // Healthy again: successful probes bring the score back down.
    net.deaf.borrow_mut().clear();
    net.run_for(secs(120));
    assert_eq!(net.node(0).health_score(), 0);
}

#[test]
fn join_retries_the_next_seed_when_the_first_does_not_answer() {
    // Node 42 does not exist: a datagram to it goes nowhere.
    let mut net = Net::new(9, 0.0, 2, MembershipConfig::default());
    net.join(1, vec![42, 0]);
    assert!(net.node(1).is_joining());
    net.run_for(secs(5));
    assert!(!net.node(1).is_joining());
    assert!(
        net.events
            .iter()
            .any(|(_, o, e)| *o == 1 && *e == MembershipEvent::Joined { via: 0 })
    );
    assert!(net.all_see_alive(&[0, 1]));
}
