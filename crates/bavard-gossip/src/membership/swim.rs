//! The SWIM + Lifeguard state machine.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;

use super::auth::{AuthBox, Authenticator, RejectedUpdates, SignedFields};
use super::awareness::Awareness;
use super::broadcast_queue::{BroadcastQueue, retransmit_limit};
use super::config::MembershipConfig;
use super::error::MembershipError;
use super::event::MembershipEvent;
use super::member::{Member, MemberState, supersedes};
use super::message::{HEADER_LEN, ID_LEN_ESTIMATE, Message, Update};
use super::suspicion::{Suspicion, min_suspicion_timeout};
use crate::NoAuth;

/// Estimated fixed part of a ping or ack (header and a 10-byte seq).
const PROBE_BASE_LEN: usize = HEADER_LEN + 10;

/// The probe of the current protocol period.
#[derive(Debug, Clone)]
struct Probe<P> {
    target: P,
    seq: u64,
    timeout_at: Instant,
    indirect_sent: bool,
    acked: bool,
    relays: Vec<P>,
    nacks: Vec<P>,
}

/// An indirect probe we run on behalf of a ping-req requester.
#[derive(Debug, Clone)]
struct Relay<P> {
    requester: P,
    their_seq: u64,
    target: P,
    nack_at: Instant,
    expires: Instant,
    nacked: bool,
}

#[derive(Debug, Clone)]
struct JoinState<P> {
    seeds: Vec<P>,
    next: usize,
    next_attempt: Instant,
}

/// A sans-IO SWIM membership with Lifeguard's refinements.
///
/// # Driving protocol
///
/// The state machine does no IO and reads no clock; the driver owns the sockets and the timer.
/// Its methods come in four kinds:
///
/// - **inputs**: [`handle_message`](Self::handle_message) for every message received from a peer,
///   [`handle_timeout`](Self::handle_timeout) when the deadline given by
///   [`poll_timeout`](Self::poll_timeout) is reached (calling it early or twice is harmless);
/// - **commands**: [`join`](Self::join), [`leave`](Self::leave),
///   [`set_local_meta`](Self::set_local_meta);
/// - **outputs**: after any input or command, drain [`poll_transmit`](Self::poll_transmit) (send
///   each message to its peer; ping, ack, ping-req, nack and gossip fit a datagram of
///   `max_packet_size`, push-pull belongs on a stream) and [`poll_event`](Self::poll_event), then
///   re-arm the timer with [`poll_timeout`](Self::poll_timeout);
/// - **getters**: [`members`](Self::members), [`member`](Self::member),
///   [`alive_count`](Self::alive_count), [`local_incarnation`](Self::local_incarnation),
///   [`health_score`](Self::health_score), [`rejected_updates`](Self::rejected_updates), …
///
/// Every `now` passed in must be monotonic. Randomness (probe order, indirect relays, gossip
/// targets) comes only from the `R` given to [`new`](Self::new), so a seeded run replays exactly.
///
/// # Trust
///
/// Every member may relay every claim, but only a member speaks for itself (see
/// [`Authenticator`]). Set the authenticator with
/// [`with_authenticator`](Self::with_authenticator); the default, [`NoAuth`], signs nothing and
/// accepts everything. The rules:
///
/// - every `Alive` (announcement, metadata change, refutation) and `Left` the local node makes
///   about itself is signed when it is made; the signature is kept with the local member and
///   sent with every copy of the claim;
/// - a received `Alive` or `Left` is only taken from the member itself (`from == member`) and,
///   if it would change the view (a new member, or a claim that supersedes the known one), only
///   if [`Authenticator::verify`] accepts it; the signature is then kept with the member, so
///   relays (piggyback, push-pull) forward the original signature unchanged. A claim that does
///   not verify is dropped and counted in [`RejectedUpdates::bad_signature`]; the state does not
///   change. A claim equal to or older than the known one changes nothing and is not verified.
///   The same check applies to claims about the local node (a previous life of its id), which
///   it would otherwise outbid: a forged one is dropped instead of raising the incarnation;
/// - `Suspect` and `Dead` carry no signature (they are about someone else, by whoever probed;
///   the node only takes membership messages from admitted members). One that is more than
///   [`max_incarnation_jump`](MembershipConfig::max_incarnation_jump) above the incarnation
///   known for its member is ignored and counted in [`RejectedUpdates::incarnation_jump`], so
///   nobody can pin a member (or the local node) at `u64::MAX`;
/// - incarnations are raised with checked arithmetic: a refutation that would need more than
///   `u64::MAX` is not made (counted in [`RejectedUpdates::incarnation_exhausted`]), nothing
///   panics.
///
/// A dropped claim never fails the whole message (the others in it are applied), so these are
/// counters rather than errors.
///
/// # Example
///
/// Two nodes in memory, with instant delivery and virtual time:
///
/// ```
/// use std::time::{Duration, Instant};
/// use bavard_gossip::membership::{Membership, MembershipConfig, MemberState};
/// use rand::SeedableRng;
/// use rand_chacha::ChaCha8Rng;
///
/// let start = Instant::now();
/// let new = |id: u64| {
///     let rng = ChaCha8Rng::seed_from_u64(id);
///     Membership::new(id, b"addr".to_vec(), MembershipConfig::default(), rng, start)
/// };
/// let mut nodes = [new(0), new(1)];
/// nodes[1].join(start, vec![0]);
/// let mut now = start;
/// while now < start + Duration::from_secs(5) {
///     // Deliver everything that is queued, then advance to the earliest deadline.
///     for i in 0..2 {
///         while let Some((to, msg)) = nodes[i].poll_transmit() {
///             nodes[to as usize].handle_message(now, i as u64, msg).unwrap();
///         }
///         while let Some(_event) = nodes[i].poll_event() {}
///     }
///     now = nodes.iter().filter_map(|n| n.poll_timeout()).min().unwrap().max(now);
///     nodes.iter_mut().for_each(|n| n.handle_timeout(now));
/// }
/// assert_eq!(nodes[0].member(&1).unwrap().state(), MemberState::Alive);
/// assert_eq!(nodes[1].alive_count(), 2);
/// ```
#[derive(Debug)]
pub struct Membership<P, R> {
    config: MembershipConfig,
    rng: R,
    local: P,
    /// Every known member, the local node included. A `BTreeMap` (not a `HashMap`) so that
    /// iteration order, hence behaviour, depends on the seed only.
    members: BTreeMap<P, Member<P>>,
    alive: usize,
    suspect: usize,
    /// Every member but the local one, in probe order (SWIM §4.3 round-robin probe selection).
    probe_list: Vec<P>,
    probe_index: usize,
    /// Probes started so far: every `ring_probe_every`-th goes to the ring successor.
    probes_started: u64,
    probe: Option<Probe<P>>,
    next_probe: Instant,
    next_gossip: Instant,
    next_push_pull: Instant,
    next_seq: u64,
    suspicions: BTreeMap<P, Suspicion<P>>,
    relays: BTreeMap<u64, Relay<P>>,
    reap_queue: BTreeSet<(Instant, P)>,
    broadcasts: BroadcastQueue<P>,
    awareness: Awareness,
    auth: AuthBox<P>,
    rejected: RejectedUpdates,
    join: Option<JoinState<P>>,
    left: bool,
    transmits: VecDeque<(P, Message<P>)>,
    events: VecDeque<MembershipEvent<P>>,
}

impl<P, R> Membership<P, R>
where
    P: Clone + Eq + Hash + Ord + Debug,
    R: Rng,
{
    /// A single-member view holding the local node, alive at incarnation 0 with `local_meta`,
    /// with the [`NoAuth`] authenticator (see [`with_authenticator`](Self::with_authenticator)).
    ///
    /// `local_meta` should fit `config.max_meta_len`, or other members will reject the messages
    /// that carry it.
    pub fn new(
        local: P,
        local_meta: Vec<u8>,
        config: MembershipConfig,
        mut rng: R,
        now: Instant,
    ) -> Self {
        let mut members = BTreeMap::new();
        members.insert(
            local.clone(),
            Member {
                id: local.clone(),
                incarnation: 0,
                state: MemberState::Alive,
                meta: local_meta.into(),
                signature: None,
                state_changed: now,
            },
        );
        let broadcasts = BroadcastQueue::new(config.max_queued_updates);
        // Random phases keep nodes started together from probing and pushing in lockstep.
        let next_probe = now + config.probe_interval.mul_f64(rng.random::<f64>());
        let next_push_pull = now + config.push_pull_interval.mul_f64(rng.random::<f64>());
        let next_seq = u64::from(rng.random::<u32>());
        let mut membership = Self {
            awareness: Awareness::new(config.awareness_max_multiplier),
            broadcasts,
            next_gossip: now + config.gossip_interval,
            config,
            rng,
            local,
            members,
            alive: 1,
            suspect: 0,
            probe_list: Vec::new(),
            probe_index: 0,
            probes_started: 0,
            probe: None,
            next_probe,
            next_push_pull,
            next_seq,
            suspicions: BTreeMap::new(),
            relays: BTreeMap::new(),
            reap_queue: BTreeSet::new(),
            join: None,
            left: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            auth: AuthBox(Box::new(NoAuth)),
            rejected: RejectedUpdates::default(),
        };
        // memberlist announces itself on start: the first members we talk to spread our
        // existence, not only the seed that answers the join.
        let announce = membership.sign_local_claim();
        membership.broadcasts.push_urgent(announce);
        membership
    }

    /// Replaces the authenticator (by default [`NoAuth`]), which signs the local node's claims
    /// about itself and verifies other members' (see "Trust" above). The local node's current
    /// claim is signed again with it and queued for dissemination in place of the old one, so
    /// call it right after [`new`](Self::new), before anything is sent.
    pub fn with_authenticator(mut self, auth: Box<dyn Authenticator<P>>) -> Self {
        self.auth = AuthBox(auth);
        let claim = self.sign_local_claim();
        self.broadcasts.push_urgent(claim);
        self
    }

    // ----- getters -----

    /// The local node's id.
    pub fn local_id(&self) -> &P {
        &self.local
    }

    /// The configuration.
    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// Every known member, the local node included, dead and departed ones until they are reaped.
    pub fn members(&self) -> impl Iterator<Item = &Member<P>> + '_ {
        self.members.values()
    }

    /// What is known about `id`.
    pub fn member(&self, id: &P) -> Option<&Member<P>> {
        self.members.get(id)
    }

    /// Number of members in state [`MemberState::Alive`], the local node included.
    pub fn alive_count(&self) -> usize {
        self.alive
    }

    /// Number of alive or suspect members, the local node included (the `N` of the timeouts).
    pub fn live_count(&self) -> usize {
        self.alive + self.suspect
    }

    /// The local node's incarnation.
    pub fn local_incarnation(&self) -> u64 {
        self.members[&self.local].incarnation
    }

    /// The Lifeguard local health score, in `0..awareness_max_multiplier` (0 = healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// The current protocol period: `probe_interval · (health_score + 1)`.
    pub fn current_probe_interval(&self) -> Duration {
        self.awareness.scale(self.config.probe_interval)
    }

    /// When the running suspicion about `id` will declare it dead, if `id` is suspected.
    pub fn suspicion_deadline(&self, id: &P) -> Option<Instant> {
        self.suspicions.get(id).map(Suspicion::deadline)
    }

    /// Independent confirmations counted for the suspicion about `id`.
    pub fn suspicion_confirmations(&self, id: &P) -> Option<u32> {
        self.suspicions.get(id).map(Suspicion::confirmations)
    }

    /// Whether a join is in progress (no seed has answered yet).
    pub fn is_joining(&self) -> bool {
        self.join.is_some()
    }

    /// Whether [`leave`](Self::leave) was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Number of updates waiting to be disseminated.
    pub fn queued_updates(&self) -> usize {
        self.broadcasts.len()
    }

    /// Updates dropped by the trust rules so far (bad signatures, incarnation jumps); each of
    /// them left the state unchanged.
    pub fn rejected_updates(&self) -> RejectedUpdates {
        self.rejected
    }

    // ----- commands -----

    /// Joins a cluster through `seeds`: sends a push-pull join request to the first seed, then to
    /// the next one every `join_retry_interval` until one answers (or until some member is
    /// learned otherwise). Seeds equal to the local id are ignored. A node that has left cannot
    /// join again: start a new instance (it will outbid its old incarnation).
    pub fn join(&mut self, now: Instant, seeds: Vec<P>) {
        if self.left {
            return;
        }
        let mut seen = HashSet::new();
        let seeds: Vec<P> = seeds
            .into_iter()
            .filter(|s| *s != self.local && seen.insert(s.clone()))
            .collect();
        if seeds.is_empty() {
            return;
        }
        self.join = Some(JoinState {
            seeds,
            next: 0,
            next_attempt: now,
        });
        self.tick_join(now);
    }

    /// Leaves gracefully: bumps the local incarnation, gossips `Left` right away and keeps
    /// disseminating it on the gossip timer; stops probing, push-pull and joining.
    pub fn leave(&mut self, now: Instant) {
        if self.left {
            return;
        }
        self.left = true;
        self.join = None;
        self.probe = None;
        let m = self
            .members
            .get_mut(&self.local)
            .expect("local member exists");
        let old = m.state;
        // `Left` outranks every state at the same incarnation, so at `u64::MAX` leaving without
        // a bump still supersedes whatever others hold.
        m.incarnation = m.incarnation.saturating_add(1);
        m.state = MemberState::Left;
        m.state_changed = now;
        self.count(old, false);
        let claim = self.sign_local_claim();
        self.broadcasts.push_urgent(claim);
        let targets = self.sample(self.config.gossip_nodes.max(1), |m| m.state.is_live());
        for t in targets {
            let piggyback = self.piggyback(&t, HEADER_LEN);
            if piggyback.is_empty() {
                break;
            }
            self.send(t, Message::Gossip { piggyback });
        }
    }

    /// Replaces the local metadata: bumps the local incarnation and gossips the new, signed
    /// `Alive`. At incarnation `u64::MAX` nothing can outbid the current claim: the metadata is
    /// left as it is (counted in [`RejectedUpdates::incarnation_exhausted`]).
    pub fn set_local_meta(&mut self, meta: Vec<u8>) {
        if self.left {
            return;
        }
        let m = self
            .members
            .get_mut(&self.local)
            .expect("local member exists");
        let Some(next) = m.incarnation.checked_add(1) else {
            self.rejected.incarnation_exhausted += 1;
            return;
        };
        m.incarnation = next;
        m.meta = meta.into();
        let claim = self.sign_local_claim();
        self.broadcasts.push_urgent(claim);
    }

    /// Adds `members` to the view as alive, as a driver that already knows the cluster from
    /// outside the protocol would (a simulator's converged start, a restored snapshot): no
    /// message, no event, nothing queued for dissemination, no signature checked; it is trusted
    /// input. Each entry is `(id, incarnation, metadata)`; the local id, ids already known and
    /// repeated ids are skipped, and nothing is added beyond `max_members`. Returns the number
    /// of members added.
    ///
    /// The new members go into the part of the probe list not yet probed in this pass, in an
    /// order drawn from the core's RNG (a seeded run replays). The entries carry no signature:
    /// with an authenticator other than [`NoAuth`], other members only take them from push-pull
    /// once the members' own signed claims have replaced them here. Passing the same `Arc` to
    /// every view shares the metadata bytes between them.
    pub fn seed_alive_members<I>(&mut self, now: Instant, members: I) -> usize
    where
        I: IntoIterator<Item = (P, u64, Arc<[u8]>)>,
    {
        let room = self.config.max_members.saturating_sub(self.members.len());
        let mut new: BTreeMap<P, Member<P>> = BTreeMap::new();
        for (id, incarnation, meta) in members {
            if new.len() >= room {
                break;
            }
            if id == self.local || self.members.contains_key(&id) || new.contains_key(&id) {
                continue;
            }
            let member = Member {
                id: id.clone(),
                incarnation,
                state: MemberState::Alive,
                meta,
                signature: None,
                state_changed: now,
            };
            new.insert(id, member);
        }
        let added = new.len();
        let start = self.probe_list.len();
        self.probe_list.extend(new.keys().cloned());
        self.alive += added;
        // `append` rebuilds the tree from both sorted sequences with full nodes: about half the
        // memory of one insert per member, which matters at N² entries across a simulation.
        self.members.append(&mut new);
        let unprobed = self.probe_index.min(start);
        self.probe_list[unprobed..].shuffle(&mut self.rng);
        added
    }

    // ----- inputs -----

    /// Handles a message received from `from`.
    ///
    /// Bounds are checked first: on error the message is dropped whole and the state is
    /// unchanged (see [`MembershipError`]).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: P,
        msg: Message<P>,
    ) -> Result<(), MembershipError> {
        self.validate(&from, &msg)?;
        match msg {
            Message::Ping { seq, piggyback } => {
                // Apply first: if the ping tells us we are suspected, the ack carries the refutation.
                let _ = self.apply_all(now, piggyback, false);
                let piggyback = self.piggyback(&from, PROBE_BASE_LEN);
                self.send(from, Message::Ack { seq, piggyback });
            }
            Message::Ack { seq, piggyback } => {
                self.handle_ack(&from, seq);
                if self.apply_all(now, piggyback, false) {
                    self.correct(from);
                }
            }
            Message::PingReq {
                seq,
                target,
                piggyback,
            } => {
                if self.apply_all(now, piggyback, false) {
                    self.correct(from.clone());
                }
                self.relay(now, from, seq, target);
            }
            Message::Nack { seq } => {
                if let Some(p) = self.probe.as_mut()
                    && p.seq == seq
                    && p.relays.contains(&from)
                    && !p.nacks.contains(&from)
                {
                    p.nacks.push(from);
                }
            }
            Message::Gossip { piggyback } => {
                if self.apply_all(now, piggyback, false) {
                    self.correct(from);
                }
            }
            Message::PushPull {
                join: _,
                reply,
                states,
            } => {
                // A request is answered with our state, which carries the correction anyway.
                if self.apply_all(now, states, true) && reply {
                    self.correct(from.clone());
                }
                if !reply {
                    let states = self.full_state();
                    self.send(
                        from.clone(),
                        Message::PushPull {
                            join: false,
                            reply: true,
                            states,
                        },
                    );
                }
                if reply && self.join.is_some() {
                    self.join = None;
                    self.events.push_back(MembershipEvent::Joined { via: from });
                }
            }
        }
        Ok(())
    }

    /// Runs every timer due at `now`: join retries, the probe period (direct, then indirect, then
    /// suspicion), gossip, push-pull, suspicion timeouts, ping-req relays and reaping. Harmless
    /// when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick_join(now);
        if !self.left {
            self.tick_probe(now);
            self.tick_push_pull(now);
        }
        self.tick_gossip(now);
        self.tick_suspicions(now);
        self.tick_relays(now);
        self.tick_reap(now);
    }

    // ----- outputs -----

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.left {
            consider(self.next_probe);
            consider(self.next_push_pull);
        }
        if let Some(p) = &self.probe
            && !p.acked
            && !p.indirect_sent
        {
            consider(p.timeout_at);
        }
        if !self.broadcasts.is_empty() {
            consider(self.next_gossip);
        }
        if let Some(j) = &self.join {
            consider(j.next_attempt);
        }
        for s in self.suspicions.values() {
            consider(s.deadline());
        }
        for r in self.relays.values() {
            consider(if r.nacked { r.expires } else { r.nack_at });
        }
        if let Some((at, _)) = self.reap_queue.first() {
            consider(*at);
        }
        next
    }

    /// The next message to send, with its destination.
    pub fn poll_transmit(&mut self) -> Option<(P, Message<P>)> {
        self.transmits.pop_front()
    }

    /// The next membership event.
    pub fn poll_event(&mut self) -> Option<MembershipEvent<P>> {
        self.events.pop_front()
    }

    // ----- message handling -----

    fn validate(&self, from: &P, msg: &Message<P>) -> Result<(), MembershipError> {
        if *from == self.local {
            return Err(MembershipError::FromSelf);
        }
        let updates = msg.updates();
        let limit = match msg {
            Message::PushPull { .. } => self.config.max_members,
            _ => self.config.max_updates_per_message,
        };
        if updates.len() > limit {
            return Err(MembershipError::TooManyUpdates {
                count: updates.len(),
                limit,
            });
        }
        if let Some(u) = updates
            .iter()
            .find(|u| u.meta.len() > self.config.max_meta_len)
        {
            return Err(MembershipError::MetaTooLarge {
                len: u.meta.len(),
                limit: self.config.max_meta_len,
            });
        }
        if let Some(u) = updates
            .iter()
            .find(|u| u.signature.len() > self.config.max_signature_len)
        {
            return Err(MembershipError::SignatureTooLarge {
                len: u.signature.len(),
                limit: self.config.max_signature_len,
            });
        }
        // Only an `Alive` claimed by the member itself adds an unknown member. Counting the
        // unknown ones costs a lookup each: skipped when even all of them would fit (the common
        // case, and the simulator of 10,000 members spent a tenth of its time here).
        let claims = updates
            .iter()
            .filter(|u| u.state == MemberState::Alive && u.from == u.member);
        if self.members.len() + claims.clone().count() <= self.config.max_members {
            return Ok(());
        }
        let new: HashSet<&P> = claims
            .filter(|u| !self.members.contains_key(&u.member))
            .map(|u| &u.member)
            .collect();
        let would_be = self.members.len() + new.len();
        if !new.is_empty() && would_be > self.config.max_members {
            return Err(MembershipError::TooManyMembers {
                would_be,
                limit: self.config.max_members,
            });
        }
        Ok(())
    }

    fn handle_ack(&mut self, from: &P, seq: u64) {
        if let Some(p) = self.probe.as_mut()
            && p.seq == seq
        {
            if !p.acked && (*from == p.target || p.relays.contains(from)) {
                p.acked = true;
                self.awareness.apply(-1);
            }
            return;
        }
        if self.relays.get(&seq).is_some_and(|r| r.target == *from) {
            let r = self.relays.remove(&seq).expect("checked above");
            let piggyback = self.piggyback(&r.requester, PROBE_BASE_LEN);
            self.send(
                r.requester,
                Message::Ack {
                    seq: r.their_seq,
                    piggyback,
                },
            );
        }
    }

    fn relay(&mut self, now: Instant, requester: P, their_seq: u64, target: P) {
        if self.left || target == self.local || self.relays.len() >= self.config.max_pending_relays
        {
            return;
        }
        let seq = self.take_seq();
        let piggyback = self.piggyback(&target, PROBE_BASE_LEN);
        self.send(target.clone(), Message::Ping { seq, piggyback });
        // Nack a little before the requester's period ends, so that it arrives in time.
        let nack_at = now + self.config.probe_timeout.mul_f64(0.8);
        let expires = now + self.config.probe_interval;
        self.relays.insert(
            seq,
            Relay {
                requester,
                their_seq,
                target,
                nack_at,
                expires,
                nacked: false,
            },
        );
    }

    /// Applies every claim; true if one of them was an outdated suspicion or death of the
    /// local node, i.e. the sender has not heard of our refutation.
    fn apply_all(&mut self, now: Instant, updates: Vec<Update<P>>, from_push_pull: bool) -> bool {
        let mut stale_about_us = false;
        for u in updates {
            stale_about_us |= self.apply_update(now, u, from_push_pull);
        }
        stale_about_us
    }

    /// Tells `to` directly that we are alive, at our current incarnation.
    fn correct(&mut self, to: P) {
        let alive = self.local_claim();
        self.send(
            to,
            Message::Gossip {
                piggyback: vec![alive],
            },
        );
    }

    /// Applies one claim under SWIM precedence (see [`super::member`]) and the trust rules (see
    /// the type's docs); true if it was an outdated suspicion or death of the local node.
    fn apply_update(&mut self, now: Instant, mut u: Update<P>, from_push_pull: bool) -> bool {
        // Canonical form: only `Alive` has metadata, only a member's own claims are signed (a
        // leave is signed without metadata, so every relay sends the bytes that were signed).
        match u.state {
            MemberState::Alive => {}
            MemberState::Left => u.meta.clear(),
            MemberState::Suspect | MemberState::Dead => {
                u.meta.clear();
                u.signature.clear();
            }
        }
        if u.member == self.local {
            return self.apply_about_self(u);
        }
        // Only the member itself says it is alive or leaving.
        if matches!(u.state, MemberState::Alive | MemberState::Left) && u.from != u.member {
            return false;
        }
        // memberlist: a remote full state's "dead" is only taken as a suspicion, so that a stale
        // or partitioned view cannot kill members outright; they get a chance to refute.
        if from_push_pull && u.state == MemberState::Dead {
            u.state = MemberState::Suspect;
        }
        let Some(m) = self.members.get(&u.member) else {
            // Suspicions and deaths of members we never saw alive are not worth tracking (nor
            // bounded: they change nothing).
            if u.state == MemberState::Alive && self.verify(&u) {
                self.insert_member(now, u);
            }
            return false;
        };
        let (known_incarnation, known_state) = (m.incarnation, m.state);
        if !u.is_self_claim() && self.jumps_too_far(u.incarnation, known_incarnation) {
            return false;
        }
        if supersedes(u.incarnation, u.state, known_incarnation, known_state) {
            // Verified only now: a claim that changes nothing costs no signature check.
            if u.is_self_claim() && !self.verify(&u) {
                return false;
            }
            self.change_state(now, u);
        } else if u.state == MemberState::Suspect
            && known_state == MemberState::Suspect
            && u.incarnation == known_incarnation
            // A full-state push repeats what its sender heard, often the very suspicion we
            // already count: it is not an independent confirmation (Lifeguard counts only
            // suspicions a member raised or relayed in gossip), or a few push-pulls cut the
            // timeout to its minimum before the suspect had a chance to refute.
            && !from_push_pull
        {
            // Lifeguard: an independent confirmation shortens the timeout; pass it on so that
            // others count it too.
            if let Some(s) = self.suspicions.get_mut(&u.member)
                && s.confirm(u.from.clone())
            {
                self.broadcasts.push(u);
            }
        }
        false
    }

    fn apply_about_self(&mut self, u: Update<P>) -> bool {
        if self.left {
            return false;
        }
        let local_inc = self.local_incarnation();
        let self_claim = u.is_self_claim();
        if !self_claim && self.jumps_too_far(u.incarnation, local_inc) {
            return false;
        }
        let refute = match u.state {
            // Someone holds an alive claim newer than ours: a previous life of this id.
            MemberState::Alive => u.incarnation > local_inc,
            _ => u.incarnation >= local_inc,
        };
        if refute {
            // A previous life signed it with our key; a forgery is dropped here as everywhere
            // else, rather than outbid (which would let anyone drive our incarnation up).
            if self_claim && (u.from != u.member || !self.verify(&u)) {
                return false;
            }
            self.refute(u.incarnation);
            return false;
        }
        // An outdated suspicion: our refutation has not reached everyone (its retransmissions
        // are limited), so spread it again. Not in SWIM or memberlist, which leave this to the
        // next push-pull; it costs one queued update and makes refutations stick.
        let stale = u.state != MemberState::Alive;
        if stale {
            let alive = self.local_claim();
            self.broadcasts.push_urgent(alive);
        }
        stale
    }

    /// SWIM §4.2: only the member itself refutes, by outbidding the claim's incarnation, with a
    /// newly signed `Alive`.
    fn refute(&mut self, claimed: u64) {
        let m = self
            .members
            .get_mut(&self.local)
            .expect("local member exists");
        let Some(next) = m.incarnation.max(claimed).checked_add(1) else {
            // Only a claim at `u64::MAX` gets here (suspicions that high are bounded away, so it
            // is our own signature from a previous life): nothing outbids it.
            self.rejected.incarnation_exhausted += 1;
            return;
        };
        m.incarnation = next;
        let update = self.sign_local_claim();
        // Lifeguard: being suspected is a hint that we are the slow one.
        self.awareness.apply(1);
        self.broadcasts.push_urgent(update);
    }

    /// Whether the authenticator accepts `u` (an `Alive` or `Left` about its own member);
    /// counts a refusal.
    fn verify(&mut self, u: &Update<P>) -> bool {
        let fields = SignedFields {
            member: &u.member,
            incarnation: u.incarnation,
            state: u.state,
            meta: &u.meta,
        };
        let ok = self.auth.0.verify(&fields, &u.signature);
        if !ok {
            self.rejected.bad_signature += 1;
        }
        ok
    }

    /// Whether a suspicion or death at `claimed` is further above `known` than
    /// `max_incarnation_jump`; counts it.
    fn jumps_too_far(&mut self, claimed: u64, known: u64) -> bool {
        let too_far = claimed > known.saturating_add(self.config.max_incarnation_jump);
        if too_far {
            self.rejected.incarnation_jump += 1;
        }
        too_far
    }

    /// Signs the local node's current claim about itself (`Alive` with its metadata, or `Left`
    /// once it left), keeps the signature with the local member so that every later copy
    /// carries it, and returns the claim.
    fn sign_local_claim(&mut self) -> Update<P> {
        let m = &self.members[&self.local];
        let (incarnation, state) = (m.incarnation, m.state);
        let meta = if state == MemberState::Alive {
            m.meta.to_vec()
        } else {
            Vec::new()
        };
        let signature = self.auth.0.sign(&SignedFields {
            member: &self.local,
            incarnation,
            state,
            meta: &meta,
        });
        let m = self
            .members
            .get_mut(&self.local)
            .expect("local member exists");
        m.signature = shared_signature(&signature);
        Update {
            member: self.local.clone(),
            incarnation,
            state,
            meta,
            signature,
            from: self.local.clone(),
        }
    }

    /// The local node's current claim about itself, with the signature made when it was.
    fn local_claim(&self) -> Update<P> {
        let m = &self.members[&self.local];
        Update {
            member: self.local.clone(),
            incarnation: m.incarnation,
            state: m.state,
            meta: if m.state == MemberState::Alive {
                m.meta.to_vec()
            } else {
                Vec::new()
            },
            signature: m.signature().to_vec(),
            from: self.local.clone(),
        }
    }

    fn insert_member(&mut self, now: Instant, u: Update<P>) {
        let id = u.member.clone();
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                incarnation: u.incarnation,
                state: MemberState::Alive,
                meta: Arc::from(&u.meta[..]),
                signature: shared_signature(&u.signature),
                state_changed: now,
            },
        );
        self.count(MemberState::Alive, true);
        // memberlist: a new member goes to a random position of the probe list.
        let n = self.probe_list.len();
        self.probe_list.push(id.clone());
        let at = self.rng.random_range(0..=n);
        self.probe_list.swap(at, n);
        self.events.push_back(MembershipEvent::MemberUp {
            id,
            meta: u.meta.clone(),
        });
        self.broadcasts.push(u);
    }

    fn change_state(&mut self, now: Instant, u: Update<P>) {
        let id = u.member.clone();
        let m = self.members.get_mut(&id).expect("caller checked");
        let old = m.state;
        let meta_changed = u.state == MemberState::Alive && m.meta[..] != u.meta[..];
        m.incarnation = u.incarnation;
        m.state = u.state;
        m.state_changed = now;
        // Unchanged bytes keep their (shared) allocation.
        if meta_changed {
            m.meta = Arc::from(&u.meta[..]);
        }
        // The member's own signature while its own claim stands; a suspicion or death is not
        // its claim, and only a newer signed one can replace it.
        if m.signature() != &u.signature[..] {
            m.signature = shared_signature(&u.signature);
        }
        // For the events of an `Alive` only.
        let meta = if u.state == MemberState::Alive {
            m.meta.to_vec()
        } else {
            Vec::new()
        };
        self.count(old, false);
        self.count(u.state, true);
        let incarnation = u.incarnation;
        match u.state {
            MemberState::Alive => {
                self.suspicions.remove(&id);
                match old {
                    MemberState::Suspect => {
                        self.events.push_back(MembershipEvent::MemberRecovered {
                            id: id.clone(),
                            incarnation,
                        });
                        if meta_changed {
                            self.events
                                .push_back(MembershipEvent::MemberMetaChanged { id, meta });
                        }
                    }
                    MemberState::Dead | MemberState::Left => self
                        .events
                        .push_back(MembershipEvent::MemberUp { id, meta }),
                    MemberState::Alive => {
                        if meta_changed {
                            self.events
                                .push_back(MembershipEvent::MemberMetaChanged { id, meta });
                        }
                    }
                }
            }
            MemberState::Suspect => {
                if let Some(s) = self.suspicions.get_mut(&id) {
                    s.incarnation = incarnation;
                    s.confirm(u.from.clone());
                } else {
                    let s = self.new_suspicion(u.from.clone(), incarnation, now);
                    self.suspicions.insert(id.clone(), s);
                }
                if old != MemberState::Suspect {
                    self.events
                        .push_back(MembershipEvent::MemberSuspect { id, incarnation });
                }
            }
            MemberState::Dead | MemberState::Left => {
                self.suspicions.remove(&id);
                self.reap_queue
                    .insert((now + self.config.gossip_to_the_dead_time, id.clone()));
                self.events.push_back(if u.state == MemberState::Dead {
                    MembershipEvent::MemberDown { id, incarnation }
                } else {
                    MembershipEvent::MemberLeft { id, incarnation }
                });
            }
        }
        if u.state == MemberState::Alive && old == MemberState::Suspect {
            self.broadcasts.push_refutation(u);
        } else {
            self.broadcasts.push(u);
        }
    }

    fn new_suspicion(&self, from: P, incarnation: u64, now: Instant) -> Suspicion<P> {
        let n = self.live_count();
        let min = min_suspicion_timeout(self.config.suspicion_mult, n, self.config.probe_interval);
        let max = min * self.config.suspicion_max_timeout_mult.max(1);
        // memberlist: expect suspicion_mult − 2 confirmations, none in clusters too small to
        // provide them.
        let mut expected = self.config.suspicion_mult.saturating_sub(2);
        if (n as u64).saturating_sub(2) < u64::from(expected) {
            expected = 0;
        }
        Suspicion::new(from, incarnation, now, min, max, expected)
    }

    fn count(&mut self, state: MemberState, add: bool) {
        let counter = match state {
            MemberState::Alive => &mut self.alive,
            MemberState::Suspect => &mut self.suspect,
            _ => return,
        };
        if add {
            *counter += 1;
        } else {
            *counter -= 1;
        }
    }

    // ----- timers -----

    fn tick_join(&mut self, now: Instant) {
        let Some(j) = self.join.as_mut() else { return };
        if now < j.next_attempt {
            return;
        }
        if j.next > 0 && self.alive + self.suspect > 1 {
            // Someone else brought us into the cluster meanwhile.
            self.join = None;
            return;
        }
        let seed = j.seeds[j.next % j.seeds.len()].clone();
        j.next += 1;
        j.next_attempt = now + self.config.join_retry_interval;
        let states = self.full_state();
        self.send(
            seed,
            Message::PushPull {
                join: true,
                reply: false,
                states,
            },
        );
    }

    fn tick_probe(&mut self, now: Instant) {
        let indirect_due = self
            .probe
            .as_ref()
            .is_some_and(|p| !p.acked && !p.indirect_sent && now >= p.timeout_at);
        if indirect_due {
            self.send_indirect();
        }
        if now < self.next_probe {
            return;
        }
        self.finish_probe(now);
        self.start_probe(now);
        self.next_probe = now + self.awareness.scale(self.config.probe_interval);
    }

    fn send_indirect(&mut self) {
        let Some(p) = self.probe.as_ref() else { return };
        let (target, seq) = (p.target.clone(), p.seq);
        let relays = self.sample(self.config.indirect_checks, |m| {
            m.state == MemberState::Alive && m.id != target
        });
        for r in &relays {
            let piggyback = self.piggyback(r, PROBE_BASE_LEN + ID_LEN_ESTIMATE);
            self.send(
                r.clone(),
                Message::PingReq {
                    seq,
                    target: target.clone(),
                    piggyback,
                },
            );
        }
        if self.config.fallback_ping {
            let piggyback = self.piggyback(&target, PROBE_BASE_LEN);
            self.send(target, Message::Ping { seq, piggyback });
        }
        let p = self.probe.as_mut().expect("checked above");
        p.indirect_sent = true;
        p.relays = relays;
    }

    /// End of a protocol period: a probe without ack makes the target suspect.
    fn finish_probe(&mut self, now: Instant) {
        let Some(p) = self.probe.take() else { return };
        if p.acked {
            return;
        }
        // Lifeguard: relays that did not even nack hint at a local problem; without relays the
        // failed probe itself counts against us.
        let delta = if p.relays.is_empty() {
            1
        } else {
            (p.relays.len() - p.nacks.len()) as i64
        };
        self.awareness.apply(delta);
        let Some(m) = self.members.get(&p.target) else {
            return;
        };
        if !m.state.is_live() {
            return;
        }
        let was_alive = m.state == MemberState::Alive;
        let u = Update {
            member: p.target.clone(),
            incarnation: m.incarnation,
            state: MemberState::Suspect,
            meta: Vec::new(),
            signature: Vec::new(),
            from: self.local.clone(),
        };
        self.apply_update(now, u.clone(), false);
        if was_alive {
            // Lifeguard: tell the suspect directly so that it refutes without waiting for gossip.
            self.send(p.target, Message::Gossip { piggyback: vec![u] });
        }
    }

    /// The next live member of the round-robin probe list (SWIM §4.3), reshuffling the list at
    /// the end of each pass.
    fn next_round_robin(&mut self) -> Option<P> {
        for _ in 0..=2 * self.probe_list.len() {
            if self.probe_index >= self.probe_list.len() {
                // A new random order every pass bounds the time to first detection.
                let members = &self.members;
                self.probe_list.retain(|p| members.contains_key(p));
                self.probe_list.shuffle(&mut self.rng);
                self.probe_index = 0;
                if self.probe_list.is_empty() {
                    return None;
                }
            }
            let candidate = &self.probe_list[self.probe_index];
            self.probe_index += 1;
            if self
                .members
                .get(candidate)
                .is_some_and(|m| m.state.is_live())
            {
                return Some(candidate.clone());
            }
        }
        None
    }

    /// The ring neighbour on one side: the next live member after the local node in id order
    /// (`successor`) or before it, wrapping around.
    fn ring_neighbour(&self, successor: bool) -> Option<P> {
        let live = |(id, m): (&P, &Member<P>)| m.state.is_live().then(|| id.clone());
        let after = (Excluded(&self.local), Unbounded);
        let before = (Unbounded, Excluded(&self.local));
        if successor {
            let mut wrapped = self.members.range(before);
            self.members
                .range(after)
                .find_map(live)
                .or_else(|| wrapped.find_map(live))
        } else {
            let mut wrapped = self.members.range(after).rev();
            self.members
                .range(before)
                .rev()
                .find_map(live)
                .or_else(|| wrapped.find_map(live))
        }
    }

    fn start_probe(&mut self, now: Instant) {
        self.probes_started += 1;
        let every = u64::from(self.config.ring_probe_every);
        let ring = if every > 0 && self.probes_started.is_multiple_of(every) {
            // Alternate sides: each neighbour is probed every `2 · every` periods.
            self.ring_neighbour((self.probes_started / every) % 2 == 1)
        } else {
            None
        };
        let target = ring.or_else(|| self.next_round_robin());
        let Some(target) = target else { return };
        let seq = self.take_seq();
        let piggyback = self.piggyback(&target, PROBE_BASE_LEN);
        self.send(target.clone(), Message::Ping { seq, piggyback });
        self.probe = Some(Probe {
            target,
            seq,
            timeout_at: now + self.awareness.scale(self.config.probe_timeout),
            indirect_sent: false,
            acked: false,
            relays: Vec::new(),
            nacks: Vec::new(),
        });
    }

    fn tick_gossip(&mut self, now: Instant) {
        if now < self.next_gossip {
            return;
        }
        self.next_gossip = now + self.config.gossip_interval;
        if self.broadcasts.is_empty() {
            return;
        }
        // memberlist gossips to recently dead members too: if they are only partitioned away,
        // they learn about the suspicion and refute.
        let targets = self.sample(self.config.gossip_nodes, |m| {
            m.state.is_live() || m.state == MemberState::Dead
        });
        for t in targets {
            let piggyback = self.piggyback(&t, HEADER_LEN);
            if piggyback.is_empty() {
                break;
            }
            self.send(t, Message::Gossip { piggyback });
        }
    }

    fn tick_push_pull(&mut self, now: Instant) {
        if now < self.next_push_pull {
            return;
        }
        self.next_push_pull =
            now + push_pull_scale(self.config.push_pull_interval, self.live_count());
        // Dead members are candidates as well (as Serf's reconnect does): after a partition each
        // side holds the other as dead, and this is how the two views meet again.
        let target = self
            .sample(1, |m| m.state.is_live() || m.state == MemberState::Dead)
            .pop();
        if let Some(target) = target {
            let states = self.full_state();
            self.send(
                target,
                Message::PushPull {
                    join: false,
                    reply: false,
                    states,
                },
            );
        }
    }

    fn tick_suspicions(&mut self, now: Instant) {
        let expired: Vec<P> = self
            .suspicions
            .iter()
            .filter(|(_, s)| s.deadline() <= now)
            .map(|(p, _)| p.clone())
            .collect();
        let grace = self.config.probe_interval * 2;
        for id in expired {
            if let Some(s) = self.suspicions.get_mut(&id)
                && s.needs_last_chance()
            {
                // Nobody confirmed in the whole (maximum) timeout: a crashed member would have
                // been probed by many. Before declaring it dead, ask it directly, as Lifeguard
                // tells a suspect it is suspected; a live member answers a stale suspicion with
                // its current incarnation (see `correct`). Not in memberlist: without it, a
                // node that heard a suspicion but missed the refutation (its retransmissions
                // are limited) declares a live member dead.
                s.give_last_chance(now + grace);
                let suspect = Update {
                    member: id.clone(),
                    incarnation: s.incarnation,
                    state: MemberState::Suspect,
                    meta: Vec::new(),
                    signature: Vec::new(),
                    from: self.local.clone(),
                };
                self.send(
                    id,
                    Message::Gossip {
                        piggyback: vec![suspect],
                    },
                );
                continue;
            }
            self.suspicions.remove(&id);
            let Some(m) = self.members.get(&id) else {
                continue;
            };
            if m.state == MemberState::Suspect {
                let u = Update {
                    member: id,
                    incarnation: m.incarnation,
                    state: MemberState::Dead,
                    meta: Vec::new(),
                    signature: Vec::new(),
                    from: self.local.clone(),
                };
                self.apply_update(now, u, false);
            }
        }
    }

    fn tick_relays(&mut self, now: Instant) {
        let mut nacks = Vec::new();
        for r in self.relays.values_mut() {
            if !r.nacked && now >= r.nack_at {
                r.nacked = true;
                nacks.push((r.requester.clone(), r.their_seq));
            }
        }
        for (to, seq) in nacks {
            self.send(to, Message::Nack { seq });
        }
        self.relays.retain(|_, r| r.expires > now);
    }

    fn tick_reap(&mut self, now: Instant) {
        while let Some((at, id)) = self.reap_queue.first().cloned() {
            if at > now {
                break;
            }
            self.reap_queue.pop_first();
            let due = self.members.get(&id).is_some_and(|m| {
                matches!(m.state, MemberState::Dead | MemberState::Left)
                    && m.state_changed + self.config.gossip_to_the_dead_time <= now
            });
            if due {
                self.members.remove(&id);
                if let Some(pos) = self.probe_list.iter().position(|p| *p == id) {
                    self.probe_list.remove(pos);
                    if pos < self.probe_index {
                        self.probe_index -= 1;
                    }
                }
                self.events.push_back(MembershipEvent::MemberReaped { id });
            }
        }
    }

    // ----- helpers -----

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = s.wrapping_add(1);
        s
    }

    fn send(&mut self, to: P, msg: Message<P>) {
        self.transmits.push_back((to, msg));
    }

    /// Updates to piggyback on a message to `to` whose own size is `base_len`.
    fn piggyback(&mut self, to: &P, base_len: usize) -> Vec<Update<P>> {
        let mut out = Vec::new();
        let mut budget = self.config.max_packet_size.saturating_sub(base_len);
        // Whoever still talks to a departed node learns that it left, even once the leave has
        // used up its retransmissions.
        if self.left {
            let u = self.local_claim();
            budget = budget.saturating_sub(u.encoded_len() + 2);
            out.push(u);
        }
        // Lifeguard's buddy system: a suspect we talk to hears about its suspicion first. We
        // extend it to the dead we still gossip to: if one is alive after all (a healed
        // partition), it refutes at once.
        if let Some(m) = self.members.get(to)
            && matches!(m.state, MemberState::Suspect | MemberState::Dead)
        {
            let u = Update {
                member: to.clone(),
                incarnation: m.incarnation,
                state: m.state,
                meta: Vec::new(),
                signature: Vec::new(),
                from: self.local.clone(),
            };
            budget = budget.saturating_sub(u.encoded_len() + 2);
            out.push(u);
        }
        let limit = retransmit_limit(self.config.retransmit_mult, self.live_count());
        let count = self.config.max_piggyback_updates.saturating_sub(out.len());
        out.extend(self.broadcasts.fetch(count, budget, limit));
        out
    }

    /// The local view as a list of claims, for push-pull: members' own claims with their own
    /// signatures, suspicions and deaths as ours.
    fn full_state(&self) -> Vec<Update<P>> {
        self.members
            .values()
            .map(|m| {
                let own = matches!(m.state, MemberState::Alive | MemberState::Left);
                Update {
                    member: m.id.clone(),
                    incarnation: m.incarnation,
                    state: m.state,
                    meta: if m.state == MemberState::Alive {
                        m.meta.to_vec()
                    } else {
                        Vec::new()
                    },
                    signature: if own {
                        m.signature().to_vec()
                    } else {
                        Vec::new()
                    },
                    from: if own {
                        m.id.clone()
                    } else {
                        self.local.clone()
                    },
                }
            })
            .collect()
    }

    /// Up to `k` distinct random members (never the local one) satisfying `ok`.
    fn sample(&mut self, k: usize, mut ok: impl FnMut(&Member<P>) -> bool) -> Vec<P> {
        let list = &self.probe_list;
        let members = &self.members;
        if k == 0 || list.is_empty() {
            return Vec::new();
        }
        if list.len() <= 64 {
            let mut candidates: Vec<&P> = list
                .iter()
                .filter(|p| members.get(*p).is_some_and(&mut ok))
                .collect();
            let (chosen, _) = candidates.partial_shuffle(&mut self.rng, k);
            return chosen.iter().map(|p| (*p).clone()).collect();
        }
        // Large views: rejection sampling instead of a scan of every member.
        let mut out: Vec<P> = Vec::with_capacity(k);
        for _ in 0..8 * k + 16 {
            if out.len() >= k {
                break;
            }
            let p = &list[self.rng.random_range(0..list.len())];
            if !out.contains(p) && members.get(p).is_some_and(&mut ok) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// A member's signature as stored in the view: no allocation when there is none.
fn shared_signature(signature: &[u8]) -> Option<Arc<[u8]>> {
    (!signature.is_empty()).then(|| Arc::from(signature))
}

/// memberlist's `pushPullScale`: above 32 members the push-pull interval grows with
/// `ceil(log2 N − log2 32) + 1`, so the total push-pull load stays bounded.
fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    const THRESHOLD: usize = 32;
    if n <= THRESHOLD {
        return interval;
    }
    let mult = ((n as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
    interval.mul_f64(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pull_interval_grows_above_32_members() {
        let i = Duration::from_secs(30);
        assert_eq!(push_pull_scale(i, 10), i);
        assert_eq!(push_pull_scale(i, 64), i * 2);
        assert_eq!(push_pull_scale(i, 1000), i * 6);
    }
}
