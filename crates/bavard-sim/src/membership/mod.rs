//! The membership experiment: how fast bavard's SWIM + Lifeguard failure detector
//! ([`bavard_gossip::membership`]) finds crashed members, how often it accuses live ones, and
//! what it costs.
//!
//! **Cluster.** `nodes` [`Membership`] cores with memberlist's LAN profile by default
//! ([`MembershipConfig::lan`]: probe every second, 500 ms probe timeout, gossip every 200 ms) on the
//! latency plane of [`LatencyModel`]. The cluster starts in one of two ways ([`Start`]):
//!
//! - [`Start::Join`]: node `i ≥ 1` joins through node 0 at `i × join_interval` (10 ms: 100 joins
//!   per second). Each join is an update every member must receive; at 10 ms the broadcast
//!   queues keep up at 1,000 members but not at 2,000 (measured: not converged after 140 s,
//!   205 live members declared dead), because every member piggybacks a bounded number of
//!   updates per gossip round while the joins arrive faster than `retransmit_mult · log10 N`
//!   sends each drain. Real clusters do not start thousands of members in a few seconds;
//! - [`Start::Converged`]: every member starts knowing every other as alive at incarnation 0
//!   ([`Membership::seed_alive_members`], the metadata shared between views), as a cluster that
//!   has been running for a while does; the experiment then measures the steady state and the
//!   detection, which is what SWIM's figures are about. The CLI uses it above 1,000 members.
//!
//! Every second of virtual time the simulator checks whether the views have converged: every
//! node knows all `nodes` members and holds none of them dead (alive or suspect: under loss a
//! few members are always briefly suspected somewhere before they refute). Convergence is waited for at most
//! `converge_cap` after the last join; a run that never converges says so (`converged: false`)
//! and goes on.
//!
//! **Steady state.** From convergence, `steady` of virtual time is observed: the messages and
//! (estimated, [`Message::encoded_len_estimate`](bavard_gossip::membership::Message::encoded_len_estimate)) bytes sent in that window give
//! `msgs_per_member_s` and `bytes_per_member_s`.
//!
//! **Failures.** Then `kill` random members crash at once: they receive and send nothing from then
//! on. The run goes on until every live member has declared every killed member dead (its
//! `MemberDown` event), or `detect_cap` (120 s by default) after the crash. SWIM (Das et al., DSN
//! 2002) bounds the first detection by a few protocol periods; Lifeguard's dynamic suspicion
//! (Dadgar et al., 2018) then declares death after `suspicion_mult · log10 N · probe_interval`
//! (×`suspicion_max_timeout_mult` without confirmations) and the death spreads by gossip.
//!
//! **Figures** ([`MembershipReport`]):
//! - `detect_s_p50`/`_p99`: per killed member, the time from the crash until the *last* live
//!   member declared it dead (a member not detected everywhere by the cap counts as the cap, and
//!   `undetected` says how many); `first_detect_s_p50`: until the first declaration;
//! - `false_positives`: live members declared dead by anyone at any time after convergence (the
//!   number of distinct members; `false_positive_events` counts every declaration);
//!   `suspected_live`/`suspicions`: the same for suspicions, which Lifeguard expects and refutes;
//! - loss applies to every message, join requests included, with the probability `loss`.

mod node;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bavard_gossip::membership::{Membership, MembershipConfig, MembershipEvent};
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::NodeId;
use crate::engine::SimTime;
use crate::error::SimError;
use crate::harness::{Fault, Harness, Network, Step, Traffic};
use crate::latency::{LatencyConfig, LatencyModel};
use crate::loss::Loss;
use crate::rng::{hash_words, seeded, stream};
use crate::stats::Samples;

/// How often convergence is checked.
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// Parameters of [`run_membership_sim`].
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipSimConfig {
    /// Number of members (at least 2). Default 1,000.
    pub nodes: u32,
    /// Members crashed at once after the steady state; at least 2 must stay alive. Default 10.
    pub kill: u32,
    /// The seed every random choice derives from. Default 0.
    pub seed: u64,
    /// Probability that a message is lost, in `[0, 1)`. Default 0.
    pub loss: f64,
    /// How the cluster is formed. Default [`Start::Join`].
    pub start: Start,
    /// Virtual time between two joins with [`Start::Join`]. Default 10 ms.
    pub join_interval: Duration,
    /// How long convergence is waited for after the last join. Default 120 s.
    pub converge_cap: Duration,
    /// The steady-state window observed between convergence and the crash. Default 30 s.
    pub steady: Duration,
    /// How long detection is waited for after the crash. Default 120 s.
    pub detect_cap: Duration,
    /// Size of every member's metadata (its address). Default 24 bytes.
    pub meta_len: usize,
    /// The membership core's parameters. Default: the LAN profile.
    pub membership: MembershipConfig,
    /// The latency model.
    pub latency: LatencyConfig,
}

impl Default for MembershipSimConfig {
    fn default() -> Self {
        Self {
            nodes: 1_000,
            kill: 10,
            seed: 0,
            loss: 0.0,
            start: Start::Join,
            join_interval: Duration::from_millis(10),
            converge_cap: Duration::from_secs(120),
            steady: Duration::from_secs(30),
            detect_cap: Duration::from_secs(120),
            meta_len: 24,
            membership: MembershipConfig::lan(),
            latency: LatencyConfig::default(),
        }
    }
}

/// How the simulated cluster is formed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Node `i` joins through node 0 at `i × join_interval`.
    Join,
    /// Every member starts knowing every other as alive.
    Converged,
}

impl Start {
    /// Above this many members [`Start::for_nodes`] picks [`Start::Converged`]: join mode at
    /// 100 joins per second converges at 1,000 members (77 s after the first join, seed 7, 10%
    /// loss) but not at 2,000 (not within its 140 s cap, 205 live members declared dead).
    pub const JOIN_MAX_NODES: u32 = 1_000;

    /// The CLI's default: joins up to [`Self::JOIN_MAX_NODES`] members, a converged start above.
    pub fn for_nodes(nodes: u32) -> Self {
        if nodes <= Self::JOIN_MAX_NODES {
            Start::Join
        } else {
            Start::Converged
        }
    }
}

impl MembershipSimConfig {
    /// Checks that the configuration can run.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::TooFewNodes(self.nodes));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(SimError::LossOutOfRange(self.loss));
        }
        if self.kill > self.nodes - 2 {
            return Err(SimError::TooManyKilled {
                killed: self.kill,
                nodes: self.nodes,
            });
        }
        Ok(())
    }
}

/// The figures of one run. Every field but `wall_s`, `peak_rss_mb` and `bytes_per_node` is a pure function
/// of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipReport {
    /// Members in the cluster.
    pub nodes: u32,
    /// How the cluster was formed.
    pub start: Start,
    /// Members crashed.
    pub killed: u32,
    /// Message loss probability.
    pub loss: f64,
    /// Whether every member knew every other as alive or suspect (none dead) before the crash.
    pub converged: bool,
    /// Virtual seconds from the start (first join) to convergence (or to the cap).
    pub converge_s: f64,
    /// Virtual seconds of steady state observed.
    pub steady_s: f64,
    /// Median over killed members of the time until every live member declared it dead.
    pub detect_s_p50: f64,
    /// 99th percentile of the same.
    pub detect_s_p99: f64,
    /// The slowest killed member.
    pub detect_s_max: f64,
    /// Median over killed members of the time until the first member declared it dead.
    pub first_detect_s_p50: f64,
    /// Killed members that some live member had not declared dead by the cap.
    pub undetected: u32,
    /// Live members declared dead by anyone after convergence.
    pub false_positives: u32,
    /// Every such declaration (one member may be declared dead by several).
    pub false_positive_events: u64,
    /// Live members suspected by anyone after convergence.
    pub suspected_live: u32,
    /// Every such suspicion event, counted at every member that raised or heard it (one
    /// suspicion gossiped to the whole cluster counts about `nodes` times).
    pub suspicions: u64,
    /// Messages sent per member per second in the steady state.
    pub msgs_per_member_s: f64,
    /// Estimated bytes sent per member per second in the steady state.
    pub bytes_per_member_s: f64,
    /// Messages the cores rejected (should be 0).
    pub rejected: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Peak resident memory of the process, MiB (Linux; 0 elsewhere): see [`crate::memory`].
    pub peak_rss_mb: u64,
    /// The peak resident memory divided by the nodes, in bytes.
    pub bytes_per_node: u64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
}

/// Runs the membership experiment.
pub fn run_membership_sim(config: &MembershipSimConfig) -> Result<MembershipReport, SimError> {
    config.validate()?;
    let wall = Instant::now();
    let mut h = cluster(config);
    match config.start {
        Start::Join => {
            for i in 0..config.nodes {
                h.schedule(
                    SimTime::ZERO.after(config.join_interval * i),
                    Event::Join(i),
                );
            }
        }
        Start::Converged => seed_views(&mut h, config),
    }
    h.schedule(SimTime::ZERO.after(CHECK_PERIOD), Event::Check);
    let mut sim = Sim::new(config);
    let virtual_end = sim.run(&mut h);
    Ok(sim.report(&h, virtual_end, wall))
}

type Node = Membership<NodeId, ChaCha8Rng>;

/// The experiment's own events.
enum Event {
    Join(NodeId),
    Check,
    Kill,
}

/// `nodes` members on the latency plane, each with its own RNG stream and its id as metadata.
fn cluster(config: &MembershipSimConfig) -> Harness<Node, Event> {
    let n = config.nodes;
    let latency =
        LatencyModel::random(n, config.latency, &mut seeded(config.seed, stream::LATENCY));
    let (seed, meta_len, membership) = (config.seed, config.meta_len, config.membership.clone());
    Network::new(n, latency)
        .with_loss(Loss::new(config.loss, hash_words(&[config.seed, 0x051f])).with_stream(3))
        .build(move |i, now| {
            let rng = seeded(seed, stream::NODES + u64::from(i));
            Membership::new(i, meta_of(i, meta_len), membership.clone(), rng, now)
        })
}

/// Member `i`'s metadata: its id, big-endian, padded with zeros to `meta_len` bytes.
fn meta_of(i: NodeId, meta_len: usize) -> Vec<u8> {
    let mut meta = vec![0u8; meta_len];
    let id = i.to_be_bytes();
    let l = id.len().min(meta.len());
    meta[..l].copy_from_slice(&id[..l]);
    meta
}

/// [`Start::Converged`]: every member learns every other, alive at incarnation 0, with one
/// shared copy of each member's metadata for the whole cluster (N² entries, N metadata buffers).
fn seed_views(h: &mut Harness<Node, Event>, config: &MembershipSimConfig) {
    let n = config.nodes;
    let metas: Vec<Arc<[u8]>> = (0..n)
        .map(|i| Arc::from(meta_of(i, config.meta_len)))
        .collect();
    for i in 0..n {
        h.act(i, |m, now| {
            m.seed_alive_members(now, (0..n).map(|j| (j, 0, Arc::clone(&metas[j as usize]))))
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Joining,
    Steady,
    Detecting,
}

/// What the experiment tracks; the harness holds the cluster.
struct Sim<'a> {
    config: &'a MembershipSimConfig,
    phase: Phase,
    converged: Option<SimTime>,
    steady_start: Option<SimTime>,
    kill_at: Option<SimTime>,
    /// Traffic when the steady state started, then what it sent.
    steady_from: Traffic,
    steady: Traffic,
    /// Index of each node in the kill list, if it is to be killed.
    victim: Vec<Option<u32>>,
    victims: Vec<NodeId>,
    /// Per victim, per node: when that node declared the victim dead.
    declared: Vec<Vec<Option<SimTime>>>,
    pending: u64,
    /// Per node: declared dead / suspected while alive, after convergence.
    accused: Vec<bool>,
    suspected: Vec<bool>,
    false_positive_events: u64,
    suspicions: u64,
}

impl<'a> Sim<'a> {
    fn new(config: &'a MembershipSimConfig) -> Self {
        let n = config.nodes;
        let mut victims: Vec<NodeId> = sample(
            &mut seeded(config.seed, stream::CHURN),
            n as usize,
            config.kill as usize,
        )
        .into_iter()
        .map(|i| i as NodeId)
        .collect();
        victims.sort_unstable();
        let mut victim = vec![None; n as usize];
        for (k, &v) in victims.iter().enumerate() {
            victim[v as usize] = Some(k as u32);
        }
        Self {
            config,
            phase: Phase::Joining,
            converged: None,
            steady_start: None,
            kill_at: None,
            steady_from: Traffic::default(),
            steady: Traffic::default(),
            declared: vec![vec![None; n as usize]; victims.len()],
            victim,
            victims,
            pending: 0,
            accused: vec![false; n as usize],
            suspected: vec![false; n as usize],
            false_positive_events: 0,
            suspicions: 0,
        }
    }

    fn last_join(&self) -> SimTime {
        SimTime::ZERO.after(self.config.join_interval * (self.config.nodes - 1))
    }

    /// Runs until every live member declared every victim dead, or the detection cap; returns the
    /// virtual time the run stopped at: that of the first event it did not run.
    fn run(&mut self, h: &mut Harness<Node, Event>) -> SimTime {
        loop {
            let step = match self.kill_at {
                Some(_) if self.pending == 0 => break,
                Some(kill) => h.step_until(kill.after(self.config.detect_cap)),
                None => h.step(),
            };
            match step {
                None => break,
                Some(Step::External { at, event }) => match event {
                    Event::Join(i) => {
                        h.act(i, |m, now| {
                            if i != 0 {
                                m.join(now, vec![0]);
                            }
                        });
                    }
                    Event::Check => self.check(h, at),
                    Event::Kill => {
                        self.phase = Phase::Detecting;
                        self.kill_at = Some(at);
                        self.steady = h.traffic().since(&self.steady_from);
                        for &v in &self.victims {
                            h.inject(Fault::Crash(v));
                        }
                        self.pending = self.victims.len() as u64 * u64::from(h.up_count());
                    }
                },
                Some(Step::Output { at, node, events }) => {
                    for event in events {
                        self.observe(h, at, node, event);
                    }
                }
            }
        }
        h.next_event_at().unwrap_or(h.now())
    }

    /// During the join: has every node seen every other alive? Once it has (or the cap passed),
    /// the steady state starts and the crash is scheduled after it.
    fn check(&mut self, h: &mut Harness<Node, Event>, t: SimTime) {
        if self.phase != Phase::Joining {
            return;
        }
        let n = self.config.nodes;
        // Live = alive or suspect: under loss some member is always briefly suspected somewhere,
        // and Lifeguard refutes it, so "nobody suspect anywhere" may never hold.
        let all = (0..n).all(|i| h.node(i).live_count() == n as usize);
        let capped = t > self.last_join().after(self.config.converge_cap);
        if all || capped {
            if all {
                self.converged = Some(t);
            }
            self.phase = Phase::Steady;
            h.schedule(t.after(self.config.steady), Event::Kill);
            // Measurements start now; `converged` stays `None` when capped.
            self.steady_start = Some(t);
            self.steady_from = *h.traffic();
        } else {
            h.schedule(t.after(CHECK_PERIOD), Event::Check);
        }
    }

    /// Records what `node` concluded about a member.
    fn observe(
        &mut self,
        h: &Harness<Node, Event>,
        now: SimTime,
        node: NodeId,
        event: MembershipEvent<NodeId>,
    ) {
        if self.phase == Phase::Joining {
            return;
        }
        let (id, dead) = match event {
            MembershipEvent::MemberDown { id, .. } => (id, true),
            MembershipEvent::MemberSuspect { id, .. } => (id, false),
            _ => return,
        };
        let crashed = self.phase == Phase::Detecting && !h.is_up(id);
        if crashed {
            if dead
                && let Some(k) = self.victim[id as usize]
                && h.is_up(node)
            {
                let slot = &mut self.declared[k as usize][node as usize];
                if slot.is_none() {
                    *slot = Some(now);
                    self.pending -= 1;
                }
            }
            return;
        }
        if dead {
            self.false_positive_events += 1;
            self.accused[id as usize] = true;
        } else {
            self.suspicions += 1;
            self.suspected[id as usize] = true;
        }
    }

    fn report(
        &self,
        h: &Harness<Node, Event>,
        virtual_end: SimTime,
        wall: Instant,
    ) -> MembershipReport {
        let cap_s = self.config.detect_cap.as_secs_f64();
        let mut last = Samples::new();
        let mut first = Samples::new();
        let mut undetected = 0;
        if let Some(kill) = self.kill_at {
            for declared in &self.declared {
                let mut latest: Option<f64> = Some(0.0);
                let mut earliest: Option<f64> = None;
                for (node, at) in declared.iter().enumerate() {
                    if !h.is_up(node as NodeId) {
                        continue;
                    }
                    match at {
                        Some(at) => {
                            let s = secs_between(kill, *at);
                            latest = latest.map(|l| l.max(s));
                            earliest = Some(earliest.map_or(s, |e| e.min(s)));
                        }
                        None => latest = None,
                    }
                }
                if latest.is_none() {
                    undetected += 1;
                }
                last.push(latest.unwrap_or(cap_s));
                first.push(earliest.unwrap_or(cap_s));
            }
        }
        let steady_s = match (self.steady_start, self.kill_at) {
            (Some(s), Some(k)) => secs_between(s, k),
            _ => 0.0,
        };
        let per_member_s = f64::from(self.config.nodes) * steady_s.max(f64::MIN_POSITIVE);
        MembershipReport {
            nodes: self.config.nodes,
            start: self.config.start,
            killed: self.victims.len() as u32,
            loss: self.config.loss,
            converged: self.converged.is_some(),
            converge_s: self
                .steady_start
                .map_or(0.0, |t| secs_between(SimTime::ZERO, t)),
            steady_s,
            detect_s_p50: last.percentile(50.0),
            detect_s_p99: last.percentile(99.0),
            detect_s_max: last.percentile(100.0),
            first_detect_s_p50: first.percentile(50.0),
            undetected,
            false_positives: self.accused.iter().filter(|&&a| a).count() as u32,
            false_positive_events: self.false_positive_events,
            suspected_live: self.suspected.iter().filter(|&&a| a).count() as u32,
            suspicions: self.suspicions,
            msgs_per_member_s: self.steady.sent as f64 / per_member_s,
            bytes_per_member_s: self.steady.bytes as f64 / per_member_s,
            rejected: h.traffic().rejected,
            virtual_s: virtual_end.as_micros() as f64 / 1e6,
            peak_rss_mb: crate::memory::peak_rss_mb(),
            bytes_per_node: crate::memory::bytes_per_node(self.config.nodes),
            wall_s: wall.elapsed().as_secs_f64(),
        }
    }
}

fn secs_between(a: SimTime, b: SimTime) -> f64 {
    b.as_micros().saturating_sub(a.as_micros()) as f64 / 1e6
}
