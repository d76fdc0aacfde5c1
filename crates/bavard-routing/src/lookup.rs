//! The iterative, parallel Kademlia lookup as a sans-IO state machine.
//!
//! Kademlia (Maymounkov & Mazières 2002, §2.3): the initiator keeps the candidates it knows,
//! sorted by XOR distance to the target, sends FIND_NODE to α of the closest it has not queried,
//! merges the closer peers each answer returns, and repeats. Two stopping rules are offered
//! ([`Termination`]):
//!
//! - **Classic**: α requests in flight until the k closest known (non-failed) candidates have all
//!   answered. At least ⌈k/α⌉ round trips (7 with k = 20, α = 3).
//! - **Beta(β)** (default, β = 3), after the IPFS DHT (go-libp2p-kad-dht ends a lookup when the
//!   β closest have answered): α in flight while converging; as soon as the closest known
//!   candidate has answered (or the β closest, with `burst_on_closest = false`), the remaining
//!   unqueried among the k closest are queried *all at once* (up to k in flight). The lookup ends
//!   once the β closest known have answered (so no pending or unqueried candidate is closer than
//!   them) **and** at least `burst_quorum` (default 16) of the k closest known have answered, or
//!   all of them have. Waiting for all k (`burst_quorum ≥ k`) returns Classic's set in about one
//!   round trip instead of ⌈k/α⌉, but pays the slowest of ~17 links; the quorum pays only the
//!   fastest ones. If a finishing answer reveals a peer closer than the closest, parallelism
//!   drops back to α until that peer has answered. See [`Termination::Beta`] for figures.
//!
//! Both rules also end the lookup when no candidate is left to query, and at the lookup deadline.
//! A request unanswered after `request_timeout` is sent again to the same peer, up to
//! `attempts` requests in all (a lost message is not a dead peer); after the last one the peer
//! counts as failed. A late answer to any attempt is still used.
//!
//! **Disjoint paths** (S/Kademlia, Baumgart & Mies 2007): with `disjoint_paths = d > 1`, the seeds,
//! sorted by distance, are dealt round-robin to `d` paths. Each path only queries peers it learned
//! itself (its seeds, or from answers of its own peers), and a peer belongs to the first path that
//! learns it, so no peer is queried by two paths; each path runs the stopping rule on its own
//! candidates, and the result merges the k closest answering peers of all paths.
//!
//! **Bounded memory**: per path, at most `max_candidates` (default 4k) *unqueried* candidates are
//! kept (the farthest are dropped: with `max_candidates ≥ k` they cannot be among the k closest
//! that the rules query). Every contacted peer is remembered, so none is queried twice; that is
//! one entry per request sent.
//!
//! **Hops**: a seed is contacted at hop 1; a peer learned from the answer of a hop-`h` peer is
//! contacted at hop `h + 1` (the smallest such `h` if learned several times on its path).
//! [`LookupStats::hops`] is the largest hop among the returned peers: the length of the longest
//! chain of requests that led to the final result.

use std::time::{Duration, Instant};

use crate::config::{ConfigError, LookupConfig, Termination};
use crate::key::{Distance, Key};

/// What the driver of a [`Lookup`] should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAction<P> {
    /// Send FIND_NODE (or GET_VALUE, GET_PROVIDERS) for the target to `peer`, then report with
    /// [`Lookup::on_success`] or [`Lookup::on_failure`].
    Send {
        /// The peer to query.
        peer: P,
    },
    /// Nothing to send now: call `poll` again when an answer arrives or at `until` (the next
    /// request timeout or the lookup deadline).
    Wait {
        /// The next deadline.
        until: Instant,
    },
    /// The lookup is over: take [`Lookup::result`].
    Done,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult<P> {
    /// The (at most k) closest peers that answered, closest first.
    pub peers: Vec<(P, Key)>,
    /// Counters.
    pub stats: LookupStats,
}

/// Counters of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LookupStats {
    /// The largest hop among the returned peers (see the module docs); 0 if none answered.
    pub hops: u32,
    /// Requests sent (one per [`LookupAction::Send`]).
    pub messages_sent: u32,
    /// Distinct peers contacted: `messages_sent` less the retries of lost requests.
    pub peers_contacted: u32,
    /// Answers received (late answers included).
    pub responses: u32,
    /// Requests reported failed with [`Lookup::on_failure`].
    pub failures: u32,
    /// Requests that reached `request_timeout` unanswered.
    pub timeouts: u32,
    /// From `new` to the end (or to the last `now` seen if the lookup is still running).
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotContacted,
    Waiting { timeout_at: Instant },
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate<P> {
    peer: P,
    key: Key,
    distance: Distance,
    path: usize,
    hop: u32,
    state: State,
    /// Requests sent to this peer so far.
    attempts: u32,
}

/// An iterative Kademlia lookup for one target.
///
/// Driving protocol (quinn-style; the lookup never does IO nor reads the clock):
/// 1. [`Lookup::new`] with seeds (usually the local table's `closest(target, k)`), then
/// 2. call [`Lookup::poll`]`(now)` repeatedly: for each [`LookupAction::Send`], send the request;
///    stop polling on [`LookupAction::Wait`] (arm a timer for `until`) or [`LookupAction::Done`];
/// 3. on an answer call [`Lookup::on_success`] with the peers it returned (the driver must leave
///    out its own id, or call [`Lookup::ignore_peer`] once with it); on an error call
///    [`Lookup::on_failure`]; on the timer do nothing more; then go back to step 2. Timeouts are
///    detected inside `poll`, and extra `poll` calls are harmless;
/// 4. [`Lookup::finish`] stops early (e.g. a GET found its value); [`Lookup::result`] gives the
///    closest answering peers and the [`LookupStats`].
#[derive(Debug, Clone)]
pub struct Lookup<P> {
    target: Key,
    config: LookupConfig,
    started: Instant,
    last_now: Instant,
    deadline_at: Instant,
    /// Sorted by distance to the target (ties keep insertion order).
    candidates: Vec<Candidate<P>>,
    ignored: Vec<P>,
    finished_at: Option<Instant>,
    /// The path served first by the next `poll` (round-robin between paths).
    next_path: usize,
    stats: LookupStats,
}

/// What one path may do now.
struct PathStatus {
    /// Index in `candidates` of the next peer to query, if the rule allows one now.
    next: Option<usize>,
    /// Whether the path still has unqueried or pending peers among its k closest.
    active: bool,
}

impl<P: Clone + Eq> Lookup<P> {
    /// Starts a lookup for `target` from `seeds` (duplicates ignored).
    pub fn new(
        now: Instant,
        target: Key,
        seeds: Vec<(P, Key)>,
        config: LookupConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut lookup = Self {
            target,
            deadline_at: now + config.deadline,
            config,
            started: now,
            last_now: now,
            candidates: Vec::new(),
            ignored: Vec::new(),
            finished_at: None,
            next_path: 0,
            stats: LookupStats::default(),
        };
        let mut seeds: Vec<(P, Key, Distance)> = seeds
            .into_iter()
            .map(|(p, k)| (p, k, target.distance(&k)))
            .collect();
        seeds.sort_by_key(|s| s.2);
        let mut dealt = 0;
        for (peer, key, _) in seeds {
            if lookup.position(&peer).is_none() {
                let path = dealt % lookup.config.disjoint_paths;
                dealt += 1;
                lookup.add(peer, key, path, 1);
            }
        }
        Ok(lookup)
    }

    /// The target key.
    pub fn target(&self) -> &Key {
        &self.target
    }

    /// The configuration.
    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// Whether the lookup is over.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    /// Requests sent and not yet answered, failed or timed out.
    pub fn in_flight(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Waiting { .. }))
            .count()
    }

    /// Requests sent to `peer` so far (1 for the first, 2 after a retry, …; 0 if unknown).
    pub fn attempts_of(&self, peer: &P) -> u32 {
        self.position(peer)
            .map_or(0, |i| self.candidates[i].attempts)
    }

    /// The path (0..disjoint_paths) a known peer belongs to.
    pub fn path_of(&self, peer: &P) -> Option<usize> {
        self.position(peer).map(|i| self.candidates[i].path)
    }

    /// The counters so far.
    pub fn stats(&self) -> LookupStats {
        let end = self.finished_at.unwrap_or(self.last_now);
        LookupStats {
            elapsed: end.saturating_duration_since(self.started),
            ..self.stats
        }
    }

    /// Never query `peer` (typically the local node, which other peers return as "closer").
    /// Drops it if it is a not-yet-queried candidate.
    pub fn ignore_peer(&mut self, peer: P) {
        if let Some(i) = self.position(&peer)
            && self.candidates[i].state == State::NotContacted
        {
            self.candidates.remove(i);
        }
        if !self.ignored.contains(&peer) {
            self.ignored.push(peer);
        }
    }

    /// The next thing to do. See the driving protocol on the type.
    pub fn poll(&mut self, now: Instant) -> LookupAction<P> {
        self.observe(now);
        if self.finished_at.is_some() {
            return LookupAction::Done;
        }
        if now >= self.deadline_at {
            // Polled late or not: the lookup ended at its deadline.
            self.finished_at = Some(self.deadline_at);
            return LookupAction::Done;
        }
        for c in &mut self.candidates {
            if let State::Waiting { timeout_at } = c.state
                && now >= timeout_at
            {
                self.stats.timeouts += 1;
                c.state = if c.attempts < self.config.attempts {
                    State::NotContacted
                } else {
                    State::Failed
                };
            }
        }
        let paths = self.config.disjoint_paths;
        let mut active = false;
        for offset in 0..paths {
            let path = (self.next_path + offset) % paths;
            let status = self.path_status(path);
            active |= status.active;
            if let Some(i) = status.next {
                let c = &mut self.candidates[i];
                c.state = State::Waiting {
                    timeout_at: now + self.config.request_timeout,
                };
                c.attempts += 1;
                self.stats.messages_sent += 1;
                if c.attempts == 1 {
                    self.stats.peers_contacted += 1;
                }
                self.next_path = (path + 1) % paths;
                return LookupAction::Send {
                    peer: c.peer.clone(),
                };
            }
        }
        let next_timeout = self
            .candidates
            .iter()
            .filter_map(|c| match c.state {
                State::Waiting { timeout_at } => Some(timeout_at),
                _ => None,
            })
            .min();
        match next_timeout {
            Some(t) if active => LookupAction::Wait {
                until: t.min(self.deadline_at),
            },
            _ => {
                self.finished_at = Some(now);
                LookupAction::Done
            }
        }
    }

    /// `from` answered with the peers it knows closest to the target. Answers from peers that
    /// were not queried, or duplicates, are ignored; a late answer (after the timeout) is used.
    pub fn on_success(&mut self, now: Instant, from: &P, closer: Vec<(P, Key)>) {
        self.observe(now);
        if self.finished_at.is_some() {
            return;
        }
        let Some(i) = self.position(from) else { return };
        let c = &mut self.candidates[i];
        if c.attempts == 0 || c.state == State::Succeeded {
            return;
        }
        c.state = State::Succeeded;
        self.stats.responses += 1;
        let (path, hop) = (c.path, c.hop + 1);
        for (peer, key) in closer {
            if self.ignored.contains(&peer) {
                continue;
            }
            match self.position(&peer) {
                Some(j) => {
                    let known = &mut self.candidates[j];
                    if known.path == path && known.state == State::NotContacted && hop < known.hop {
                        known.hop = hop;
                    }
                }
                None => self.add(peer, key, path, hop),
            }
        }
    }

    /// The request to `from` failed (connection error, bad answer). Unknown peers are ignored.
    pub fn on_failure(&mut self, now: Instant, from: &P) {
        self.observe(now);
        if let Some(i) = self.position(from) {
            let c = &mut self.candidates[i];
            if matches!(c.state, State::Waiting { .. }) {
                c.state = State::Failed;
                self.stats.failures += 1;
            }
        }
    }

    /// Ends the lookup now (e.g. a GET found its value). Later `poll`s return `Done`.
    pub fn finish(&mut self) {
        if self.finished_at.is_none() {
            self.finished_at = Some(self.last_now);
        }
    }

    /// The k closest peers that answered, closest first, and the counters.
    pub fn result(self) -> LookupResult<P> {
        let mut stats = self.stats();
        let best: Vec<&Candidate<P>> = self
            .candidates
            .iter()
            .filter(|c| c.state == State::Succeeded)
            .take(self.config.k)
            .collect();
        stats.hops = best.iter().map(|c| c.hop).max().unwrap_or(0);
        let peers = best.into_iter().map(|c| (c.peer.clone(), c.key)).collect();
        LookupResult { peers, stats }
    }

    fn observe(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    fn position(&self, peer: &P) -> Option<usize> {
        self.candidates.iter().position(|c| &c.peer == peer)
    }

    /// Inserts a new candidate in distance order, keeping at most `max_candidates` unqueried ones
    /// on its path: when full, the newcomer must beat the farthest unqueried one, which it evicts.
    /// A peer waiting for a retry (its request timed out) is not "unqueried": evicting it would
    /// forget how often it was asked, and a later answer naming it again would ask it afresh.
    fn add(&mut self, peer: P, key: Key, path: usize, hop: u32) {
        let distance = self.target.distance(&key);
        let mut unqueried = 0;
        let mut farthest = None;
        for (j, c) in self.candidates.iter().enumerate() {
            if c.path == path && c.state == State::NotContacted && c.attempts == 0 {
                unqueried += 1;
                farthest = Some(j);
            }
        }
        if unqueried >= self.config.max_candidates {
            match farthest {
                Some(f) if self.candidates[f].distance > distance => {
                    self.candidates.remove(f);
                }
                _ => return,
            }
        }
        let at = self.candidates.partition_point(|c| c.distance <= distance);
        let state = State::NotContacted;
        let candidate = Candidate {
            peer,
            key,
            distance,
            path,
            hop,
            state,
            attempts: 0,
        };
        self.candidates.insert(at, candidate);
    }

    /// Applies the stopping rule to one path.
    fn path_status(&self, path: usize) -> PathStatus {
        let k = self.config.k;
        let beta = match self.config.termination {
            Termination::Classic => None,
            Termination::Beta(b) => Some(b),
        };
        let mut in_flight = 0;
        let mut seen = 0; // non-failed candidates of the path visited so far (the k closest)
        let mut answered = 0; // of those, the ones that answered
        let mut beta_answered = true;
        let mut closest_answered = false;
        let mut first_unqueried = None;
        let mut active = false;
        for (i, c) in self.candidates.iter().enumerate() {
            if c.path != path {
                continue;
            }
            let waiting = matches!(c.state, State::Waiting { .. });
            if waiting {
                in_flight += 1;
            }
            if c.state == State::Failed || seen >= k {
                continue;
            }
            if beta.is_some_and(|b| seen < b) && c.state != State::Succeeded {
                beta_answered = false;
            }
            if seen == 0 {
                closest_answered = c.state == State::Succeeded;
            }
            seen += 1;
            if c.state == State::Succeeded {
                answered += 1;
            }
            if c.state == State::NotContacted && first_unqueried.is_none() {
                first_unqueried = Some(i);
            }
            active |= waiting || c.state == State::NotContacted;
        }
        if beta.is_some() && beta_answered && answered >= self.config.burst_quorum {
            // The β closest are confirmed and the quorum of the k closest is in: the path is
            // done, whatever the rest of the burst still has in flight.
            return PathStatus {
                next: None,
                active: false,
            };
        }
        let parallelism = match beta {
            Some(_) if beta_answered || (self.config.burst_on_closest && closest_answered) => k,
            _ => self.config.alpha,
        };
        let next = if in_flight < parallelism {
            first_unqueried
        } else {
            None
        };
        PathStatus { next, active }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Key = Key::from_raw([0; 32]);

    /// The key at distance `n` from `TARGET`: peer `n` is closer than peer `n + 1`.
    fn key(n: u64) -> Key {
        let mut b = [0u8; 32];
        b[24..].copy_from_slice(&n.to_be_bytes());
        Key::from_raw(b)
    }

    fn peers(ids: impl IntoIterator<Item = u64>) -> Vec<(u64, Key)> {
        ids.into_iter().map(|i| (i, key(i))).collect()
    }

    fn config(termination: Termination, k: usize, alpha: usize) -> LookupConfig {
        LookupConfig {
            k,
            alpha,
            termination,
            // One request per peer: most tests check the rules, not the retries.
            attempts: 1,
            ..LookupConfig::default()
        }
    }

    /// Polls until `Wait` or `Done`, returning the peers to send to and the final action.
    fn drain(lookup: &mut Lookup<u64>, now: Instant) -> (Vec<u64>, LookupAction<u64>) {
        let mut sent = Vec::new();
        loop {
            match lookup.poll(now) {
                LookupAction::Send { peer } => sent.push(peer),
                other => return (sent, other),
            }
        }
    }

    /// Runs a lookup where every peer answers at once with nothing new; returns the rounds.
    fn run_silent(lookup: &mut Lookup<u64>, now: Instant) -> Vec<Vec<u64>> {
        let mut rounds = Vec::new();
        loop {
            let (sent, action) = drain(lookup, now);
            if sent.is_empty() {
                assert_eq!(action, LookupAction::Done);
                return rounds;
            }
            for p in &sent {
                lookup.on_success(now, p, Vec::new());
            }
            rounds.push(sent);
        }
    }

    #[test]
    fn invalid_config_is_refused() {
        let bad = LookupConfig {
            alpha: 0,
            ..LookupConfig::default()
        };
        let err = Lookup::new(Instant::now(), TARGET, peers([1]), bad).unwrap_err();
        assert_eq!(err, ConfigError::ZeroAlpha);
    }

    #[test]
    fn lookup_respects_alpha_in_flight_and_queries_the_closest_first() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers([9, 3, 7, 1, 5, 2]),
            config(Termination::Classic, 20, 3),
        )
        .unwrap();
        let (sent, action) = drain(&mut l, now);
        assert_eq!(sent, vec![1, 2, 3]);
        assert_eq!(
            action,
            LookupAction::Wait {
                until: now + Duration::from_secs(10)
            }
        );
        assert_eq!(l.in_flight(), 3);
        l.on_success(now, &2, Vec::new());
        assert_eq!(l.poll(now), LookupAction::Send { peer: 5 });
        assert!(matches!(l.poll(now), LookupAction::Wait { .. }));
    }

    #[test]
    fn classic_termination_waits_for_the_k_closest_alpha_at_a_time() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers(1..=6),
            config(Termination::Classic, 4, 1),
        )
        .unwrap();
        let rounds = run_silent(&mut l, now);
        assert_eq!(rounds, vec![vec![1], vec![2], vec![3], vec![4]]);
        let r = l.result();
        assert_eq!(r.peers, peers(1..=4));
        assert_eq!(r.stats.messages_sent, 4);
    }

    #[test]
    fn beta_termination_queries_the_rest_of_the_k_closest_in_one_burst() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers(1..=6),
            config(Termination::Beta(1), 4, 1),
        )
        .unwrap();
        let rounds = run_silent(&mut l, now);
        assert_eq!(rounds, vec![vec![1], vec![2, 3, 4]]);
        assert_eq!(l.result().peers, peers(1..=4));
    }

    #[test]
    fn beta_termination_falls_back_to_alpha_when_a_closer_peer_appears() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers([10, 20, 30]),
            config(Termination::Beta(1), 3, 1),
        )
        .unwrap();
        assert_eq!(drain(&mut l, now).0, vec![10]);
        l.on_success(now, &10, Vec::new());
        assert_eq!(drain(&mut l, now).0, vec![20, 30]);
        // 20 reveals 1 and 2, closer than 10: back to α = 1 in flight.
        l.on_success(now, &20, peers([1, 2]));
        l.on_success(now, &30, Vec::new());
        assert_eq!(drain(&mut l, now).0, vec![1]);
        l.on_success(now, &1, Vec::new());
        // The β closest answered again: burst the rest of the 3 closest.
        assert_eq!(drain(&mut l, now).0, vec![2]);
        l.on_success(now, &2, Vec::new());
        assert_eq!(l.poll(now), LookupAction::Done);
        assert_eq!(l.result().peers, peers([1, 2, 10]));
    }

    #[test]
    fn beta_termination_ends_once_the_beta_closest_and_a_quorum_of_the_k_closest_answered() {
        let now = Instant::now();
        let cfg = LookupConfig {
            burst_quorum: 3,
            ..config(Termination::Beta(1), 4, 1)
        };
        let mut l = Lookup::new(now, TARGET, peers(1..=6), cfg).unwrap();
        assert_eq!(drain(&mut l, now).0, vec![1]);
        l.on_success(now, &1, Vec::new());
        assert_eq!(drain(&mut l, now).0, vec![2, 3, 4]);
        l.on_success(now, &3, Vec::new());
        assert!(matches!(l.poll(now), LookupAction::Wait { .. }));
        // 1, 2 and 3 of the 4 closest answered: the slow 4 is not waited for.
        l.on_success(now, &2, Vec::new());
        assert_eq!(l.poll(now), LookupAction::Done);
        l.on_success(now, &4, Vec::new());
        let r = l.result();
        assert_eq!(r.peers, peers(1..=3));
        assert_eq!((r.stats.messages_sent, r.stats.responses), (4, 3));
    }

    #[test]
    fn the_quorum_never_ends_a_lookup_before_the_beta_closest_answered() {
        let now = Instant::now();
        let cfg = LookupConfig {
            burst_quorum: 0,
            ..config(Termination::Beta(2), 4, 2)
        };
        let mut l = Lookup::new(now, TARGET, peers([10, 20, 30]), cfg).unwrap();
        assert_eq!(drain(&mut l, now).0, vec![10, 20]);
        // 20 answers first and reveals 1, closer than everyone: 1 must answer before the end.
        l.on_success(now, &20, peers([1]));
        assert_eq!(drain(&mut l, now).0, vec![1]);
        l.on_success(now, &10, Vec::new());
        let (sent, action) = drain(&mut l, now);
        assert_eq!(sent, vec![30]);
        assert!(matches!(action, LookupAction::Wait { .. }));
        l.on_success(now, &1, Vec::new());
        // Quorum 0 is the go-libp2p-kad-dht rule: done once the β = 2 closest (1, 10) answered,
        // whatever is still in flight (30).
        assert_eq!(l.poll(now), LookupAction::Done);
        assert_eq!(l.result().peers, peers([1, 10, 20]));
    }

    #[test]
    fn a_quorum_of_k_waits_for_all_the_k_closest_like_classic() {
        let now = Instant::now();
        let cfg = LookupConfig {
            burst_quorum: 4,
            ..config(Termination::Beta(1), 4, 1)
        };
        let mut l = Lookup::new(now, TARGET, peers(1..=6), cfg).unwrap();
        assert_eq!(drain(&mut l, now).0, vec![1]);
        l.on_success(now, &1, Vec::new());
        assert_eq!(drain(&mut l, now).0, vec![2, 3, 4]);
        l.on_success(now, &2, Vec::new());
        l.on_success(now, &3, Vec::new());
        assert!(matches!(l.poll(now), LookupAction::Wait { .. }));
        l.on_success(now, &4, Vec::new());
        assert_eq!(l.poll(now), LookupAction::Done);
        assert_eq!(l.result().peers, peers(1..=4));
    }

    #[test]
    fn request_timeout_marks_failure_and_moves_on() {
        let t0 = Instant::now();
        let mut l = Lookup::new(
            t0,
            TARGET,
            peers([1, 2]),
            config(Termination::Classic, 20, 1),
        )
        .unwrap();
        assert_eq!(l.poll(t0), LookupAction::Send { peer: 1 });
        let timeout = t0 + Duration::from_secs(10);
        assert_eq!(l.poll(t0), LookupAction::Wait { until: timeout });
        assert_eq!(
            l.poll(timeout - Duration::from_millis(1)),
            LookupAction::Wait { until: timeout }
        );
        assert_eq!(l.poll(timeout), LookupAction::Send { peer: 2 });
        assert_eq!(l.stats().timeouts, 1);
        // A late answer is still used.
        l.on_success(timeout, &1, Vec::new());
        l.on_success(timeout, &2, Vec::new());
        assert_eq!(l.poll(timeout), LookupAction::Done);
        let r = l.result();
        assert_eq!(r.peers, peers([1, 2]));
        assert_eq!((r.stats.timeouts, r.stats.responses), (1, 2));
    }

    #[test]
    fn a_timed_out_request_is_sent_again_until_attempts_run_out() {
        let t0 = Instant::now();
        let cfg = LookupConfig {
            attempts: 2,
            ..config(Termination::Classic, 20, 1)
        };
        let mut l = Lookup::new(t0, TARGET, peers([1, 2]), cfg).unwrap();
        assert_eq!(l.poll(t0), LookupAction::Send { peer: 1 });
        assert_eq!(l.attempts_of(&1), 1);
        let t1 = t0 + Duration::from_secs(10);
        // The first request to 1 was lost: 1 is asked again, before anyone farther.
        assert_eq!(l.poll(t1), LookupAction::Send { peer: 1 });
        assert_eq!(l.attempts_of(&1), 2);
        let t2 = t1 + Duration::from_secs(10);
        // The second timed out too: 1 is failed, the lookup moves on.
        assert_eq!(l.poll(t2), LookupAction::Send { peer: 2 });
        l.on_success(t2, &2, Vec::new());
        assert_eq!(l.poll(t2), LookupAction::Done);
        let r = l.result();
        assert_eq!(r.peers, peers([2]));
        assert_eq!(
            (
                r.stats.timeouts,
                r.stats.messages_sent,
                r.stats.peers_contacted
            ),
            (2, 3, 2)
        );
    }

    #[test]
    fn an_answer_to_the_first_attempt_counts_while_the_retry_waits() {
        let t0 = Instant::now();
        let cfg = LookupConfig {
            attempts: 3,
            ..config(Termination::Classic, 20, 1)
        };
        let mut l = Lookup::new(t0, TARGET, peers([1]), cfg).unwrap();
        assert_eq!(l.poll(t0), LookupAction::Send { peer: 1 });
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(l.poll(t1), LookupAction::Send { peer: 1 });
        // The first answer was only slow: it arrives now and ends the lookup.
        l.on_success(t1, &1, Vec::new());
        assert_eq!(l.poll(t1), LookupAction::Done);
        let r = l.result();
        assert_eq!(r.peers, peers([1]));
        assert_eq!((r.stats.responses, r.stats.messages_sent), (1, 2));
    }

    #[test]
    fn a_failed_request_is_not_retried_and_is_left_out_of_the_result() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers([1, 2]),
            config(Termination::Classic, 20, 1),
        )
        .unwrap();
        assert_eq!(l.poll(now), LookupAction::Send { peer: 1 });
        l.on_failure(now, &1);
        assert_eq!(l.poll(now), LookupAction::Send { peer: 2 });
        l.on_success(now, &2, peers([1]));
        assert_eq!(l.poll(now), LookupAction::Done);
        let r = l.result();
        assert_eq!(r.peers, peers([2]));
        assert_eq!((r.stats.failures, r.stats.messages_sent), (1, 2));
    }

    #[test]
    fn deadline_ends_the_lookup() {
        let t0 = Instant::now();
        let cfg = LookupConfig {
            request_timeout: Duration::from_secs(100),
            ..config(Termination::Classic, 20, 1)
        };
        let mut l = Lookup::new(t0, TARGET, peers([1, 2]), cfg).unwrap();
        assert_eq!(l.poll(t0), LookupAction::Send { peer: 1 });
        let deadline = t0 + Duration::from_secs(60);
        assert_eq!(l.poll(t0), LookupAction::Wait { until: deadline });
        assert_eq!(l.poll(deadline), LookupAction::Done);
        assert!(l.is_finished());
        // Answers after the end change nothing.
        l.on_success(deadline, &1, peers([0]));
        let r = l.result();
        assert!(r.peers.is_empty());
        assert_eq!(r.stats.elapsed, Duration::from_secs(60));
    }

    #[test]
    fn finish_stops_the_lookup_early() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers(1..=5),
            config(Termination::Classic, 20, 1),
        )
        .unwrap();
        assert_eq!(l.poll(now), LookupAction::Send { peer: 1 });
        l.on_success(now, &1, Vec::new());
        l.finish();
        assert_eq!(l.poll(now), LookupAction::Done);
        assert_eq!(l.result().peers, peers([1]));
    }

    #[test]
    fn no_seeds_means_done_at_once() {
        let now = Instant::now();
        let mut l = Lookup::<u64>::new(now, TARGET, Vec::new(), LookupConfig::default()).unwrap();
        assert_eq!(l.poll(now), LookupAction::Done);
        assert_eq!(l.result().stats, LookupStats::default());
    }

    #[test]
    fn stats_count_hops_messages_and_elapsed_time() {
        let t0 = Instant::now();
        let mut l =
            Lookup::new(t0, TARGET, peers([10]), config(Termination::Classic, 1, 1)).unwrap();
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.poll(t0), LookupAction::Send { peer: 10 });
        l.on_success(t1, &10, peers([5]));
        assert_eq!(l.poll(t1), LookupAction::Send { peer: 5 });
        let t2 = t1 + Duration::from_millis(100);
        l.on_success(t2, &5, peers([1]));
        assert_eq!(l.poll(t2), LookupAction::Send { peer: 1 });
        let t3 = t2 + Duration::from_millis(100);
        l.on_success(t3, &1, peers([5, 10]));
        assert_eq!(l.poll(t3), LookupAction::Done);
        let r = l.result();
        assert_eq!(r.peers, peers([1]));
        let want = LookupStats {
            hops: 3,
            messages_sent: 3,
            peers_contacted: 3,
            responses: 3,
            failures: 0,
            timeouts: 0,
            elapsed: Duration::from_millis(300),
        };
        assert_eq!(r.stats, want);
    }

    #[test]
    fn answers_from_unqueried_peers_and_duplicates_are_ignored() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers([5, 6]),
            config(Termination::Classic, 20, 1),
        )
        .unwrap();
        l.on_success(now, &99, peers([1]));
        l.on_success(now, &6, peers([2]));
        assert_eq!(l.poll(now), LookupAction::Send { peer: 5 });
        l.on_success(now, &5, Vec::new());
        l.on_success(now, &5, peers([3]));
        assert_eq!(l.stats().responses, 1);
        assert_eq!(l.poll(now), LookupAction::Send { peer: 6 });
        assert_eq!(l.path_of(&1), None);
        assert_eq!(l.path_of(&3), None);
    }

    #[test]
    fn ignored_peers_are_never_queried() {
        let now = Instant::now();
        let mut l = Lookup::new(
            now,
            TARGET,
            peers([0, 5]),
            config(Termination::Classic, 20, 1),
        )
        .unwrap();
        l.ignore_peer(0);
        assert_eq!(l.poll(now), LookupAction::Send { peer: 5 });
        l.on_success(now, &5, peers([0]));
        assert_eq!(l.poll(now), LookupAction::Done);
    }

    #[test]
    fn unqueried_candidates_are_bounded_and_the_closest_kept() {
        let now = Instant::now();
        let cfg = LookupConfig {
            max_candidates: 4,
            ..config(Termination::Classic, 2, 1)
        };
        let mut l = Lookup::new(now, TARGET, peers([1000]), cfg).unwrap();
        assert_eq!(l.poll(now), LookupAction::Send { peer: 1000 });
        l.on_success(now, &1000, peers((1..=500).rev()));
        assert_eq!(l.candidates.len(), 5);
        let ids: Vec<u64> = l.candidates.iter().map(|c| c.peer).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 1000]);
    }

    #[test]
    fn disjoint_paths_deal_seeds_round_robin_and_keep_learned_peers_on_their_path() {
        let now = Instant::now();
        let cfg = LookupConfig {
            disjoint_paths: 2,
            ..config(Termination::Classic, 20, 1)
        };
        let mut l = Lookup::new(now, TARGET, peers([10, 20, 30, 40]), cfg).unwrap();
        assert_eq!(
            (l.path_of(&10), l.path_of(&20), l.path_of(&30)),
            (Some(0), Some(1), Some(0))
        );
        let (sent, _) = drain(&mut l, now);
        assert_eq!(sent, vec![10, 20]);
        l.on_success(now, &10, peers([1, 20]));
        l.on_success(now, &20, peers([1, 2]));
        // 1 was claimed by path 0 first; 20 stays on path 1.
        assert_eq!(
            (l.path_of(&1), l.path_of(&2), l.path_of(&20)),
            (Some(0), Some(1), Some(1))
        );
    }
}
