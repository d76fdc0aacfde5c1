//! HyParView: the membership overlay of one topic.
//!
//! João Leitão, José Pereira, Luís Rodrigues, "HyParView: a membership protocol for reliable
//! gossip-based broadcast", DSN 2007. Each node keeps two partial views:
//!
//! - the **active view** (small, `fanout + 1` = 5): symmetric neighbours, over which the broadcast
//!   runs. A link is in A's active view iff it is in B's (kept so by `Neighbor`/`Disconnect`);
//! - the **passive view** (larger, 30): backups, refreshed by periodic shuffles, from which the
//!   active view is repaired as soon as a neighbour fails.
//!
//! Join: the newcomer sends `Join` to a contact, which adds it to its active view and sends a
//! `ForwardJoin` random walk (ARWL hops) to each of its other neighbours; the walk puts the
//! newcomer in a passive view at hop PRWL and in an active view where it ends. A node that adds
//! a peer to its active view without being asked tells it with a high-priority `Neighbor`
//! (which must be accepted) so the link stays symmetric; a full active view evicts a random
//! neighbour with `Disconnect { alive: true }` (both sides keep the other as a passive peer).
//!
//! Repair is reactive: when the driver reports a neighbour down (send failure, failure
//! detector), it is dropped and passive peers are asked with `Neighbor` requests: high priority
//! (must be accepted) if the active view is empty, low (accepted only into a free slot)
//! otherwise. Unanswered requests time out and the peer is dropped from the passive view.
//! Beyond the paper, a periodic repair check also fills a non-full active view with low-priority
//! requests, which recovers from lost messages without ever evicting anyone, and probes an
//! active view that has been silent for a whole repair interval with empty `IHave`s (a
//! keepalive): a node whose neighbours all crashed would otherwise never send, so never find out.
//!
//! Shuffle: periodically a node sends itself plus 3 active and 4 passive peers on a random walk;
//! the node where it ends answers with as many of its passive peers, and both merge the samples
//! into their passive views, evicting first the entries they sent.
//!
//! iroh-gossip's `proto/hyparview.rs` was read for ideas; this is our own implementation.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Instant;

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::config::HyParViewConfig;
use super::error::BroadcastError;
use super::message::{MessageBody, Priority};

/// How many join contacts are remembered for rejoining after isolation.
const MAX_CONTACTS: usize = 16;

/// What the membership layer asks its owner to do.
#[derive(Debug)]
pub(crate) enum HvOutput<P> {
    Send(P, MessageBody<P>),
    NeighborUp(P),
    NeighborDown(P),
}

/// HyParView state for one topic.
#[derive(Debug)]
pub(crate) struct HyParView<P> {
    me: P,
    config: HyParViewConfig,
    active: Vec<P>,
    passive: Vec<P>,
    /// Outstanding `Neighbor` requests and when they time out.
    pending: BTreeMap<P, Instant>,
    /// The contacts given at join, used to join again if the node ends up isolated (both views
    /// empty, e.g. after every peer it knew crashed).
    contacts: Vec<P>,
    /// Peers sent in our last shuffle, evicted first when the reply is merged.
    last_shuffle: Vec<P>,
    next_shuffle: Instant,
    next_repair: Instant,
    /// When a message last came from an active-view neighbour (or a keepalive was last sent).
    last_heard: Instant,
}

impl<P: Clone + Eq + Hash + Ord + Debug> HyParView<P> {
    pub(crate) fn new(me: P, config: HyParViewConfig, now: Instant, rng: &mut impl Rng) -> Self {
        // Spread the periodic work of nodes that start together.
        let jitter = config.shuffle_interval.mul_f64(rng.random_range(0.5..1.0));
        let next_repair = now + config.repair_interval;
        Self {
            me,
            active: Vec::new(),
            passive: Vec::new(),
            pending: BTreeMap::new(),
            contacts: Vec::new(),
            last_shuffle: Vec::new(),
            next_shuffle: now + jitter,
            next_repair,
            last_heard: now,
            config,
        }
    }

    pub(crate) fn active(&self) -> &[P] {
        &self.active
    }

    pub(crate) fn passive(&self) -> &[P] {
        &self.passive
    }

    pub(crate) fn is_active(&self, peer: &P) -> bool {
        self.active.contains(peer)
    }

    pub(crate) fn is_passive(&self, peer: &P) -> bool {
        self.passive.contains(peer)
    }

    /// A message came from `peer`: if it is a neighbour, the active view is not silent.
    pub(crate) fn heard_from(&mut self, now: Instant, peer: &P) {
        if self.is_active(peer) {
            self.last_heard = now;
        }
    }

    /// Joins through the first contact; the others become passive peers, so that repair can use
    /// them if the first one does not answer.
    pub(crate) fn join(
        &mut self,
        contacts: Vec<P>,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        let mut first = None;
        for contact in contacts {
            if contact == self.me || self.active.contains(&contact) {
                continue;
            }
            if first.is_none() {
                first = Some(contact.clone());
            }
            if !self.contacts.contains(&contact) && self.contacts.len() < MAX_CONTACTS {
                self.contacts.push(contact.clone());
            }
            self.add_passive(contact, rng, &[]);
        }
        if let Some(contact) = first {
            out.push(HvOutput::Send(contact, MessageBody::Join));
        }
    }

    /// Leaves the overlay: tells every neighbour, forgets everything.
    pub(crate) fn leave(&mut self, out: &mut Vec<HvOutput<P>>) {
        for peer in self.active.drain(..) {
            out.push(HvOutput::Send(
                peer.clone(),
                MessageBody::Disconnect { alive: false },
            ));
            out.push(HvOutput::NeighborDown(peer));
        }
        self.passive.clear();
        self.pending.clear();
        self.contacts.clear();
    }

    /// Checks a membership message before it touches any state.
    pub(crate) fn validate(&self, body: &MessageBody<P>) -> Result<(), BroadcastError> {
        let max = 1 + self.config.shuffle_active_count + self.config.shuffle_passive_count;
        match body {
            MessageBody::Shuffle { peers, .. } | MessageBody::ShuffleReply { peers }
                if peers.len() > max =>
            {
                Err(BroadcastError::TooManyPeers {
                    count: peers.len(),
                    max,
                })
            }
            _ => Ok(()),
        }
    }

    /// Handles a membership message (validated by [`Self::validate`]); other bodies are ignored.
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        from: P,
        body: MessageBody<P>,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        match body {
            MessageBody::Join => self.on_join(from, rng, out),
            MessageBody::ForwardJoin { peer, ttl } => {
                self.on_forward_join(from, peer, ttl, rng, out)
            }
            MessageBody::Neighbor { priority } => self.on_neighbor(from, priority, rng, out),
            MessageBody::NeighborReply { accepted } => {
                self.on_neighbor_reply(now, from, accepted, rng, out)
            }
            MessageBody::Disconnect { alive } => self.on_disconnect(now, from, alive, rng, out),
            MessageBody::Shuffle { origin, ttl, peers } => {
                self.on_shuffle(from, origin, ttl, peers, rng, out)
            }
            MessageBody::ShuffleReply { peers } => {
                let sent = std::mem::take(&mut self.last_shuffle);
                for peer in peers {
                    self.add_passive(peer, rng, &sent);
                }
            }
            MessageBody::Gossip { .. }
            | MessageBody::IHave { .. }
            | MessageBody::Graft { .. }
            | MessageBody::Prune => {}
        }
    }

    /// The driver says `peer` is unreachable: forget it and repair the active view.
    pub(crate) fn peer_down(
        &mut self,
        now: Instant,
        peer: &P,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        let was_pending = self.pending.remove(peer).is_some();
        self.passive.retain(|p| p != peer);
        if self.remove_active(peer, out) || was_pending {
            self.fill_active(now, rng, out);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Instant {
        let periodic = self.next_shuffle.min(self.next_repair);
        self.pending
            .values()
            .copied()
            .min()
            .map_or(periodic, |p| p.min(periodic))
    }

    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        let expired: Vec<P> = self
            .pending
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in &expired {
            // No answer: presume it dead rather than ask it again and again.
            self.pending.remove(peer);
            self.passive.retain(|p| p != peer);
        }
        let mut repair = !expired.is_empty();
        if now >= self.next_repair {
            self.next_repair = now + self.config.repair_interval;
            repair = true;
        }
        if now >= self.next_shuffle {
            self.next_shuffle = now + self.config.shuffle_interval;
            self.shuffle(rng, out);
        }
        if repair {
            self.probe_silent_view(now, out);
            self.fill_active(now, rng, out);
            if self.active.is_empty() && self.pending.is_empty() && self.passive.is_empty() {
                // Isolated: nobody left to ask but the contacts we joined through.
                if let Some(contact) = self.contacts.choose(rng) {
                    out.push(HvOutput::Send(contact.clone(), MessageBody::Join));
                }
            }
        }
    }

    /// A node whose neighbours all crashed hears nothing and, sending nothing, never notices:
    /// a transport without keepalives would leave it cut off until its next shuffle. When no
    /// neighbour has said anything for a whole `repair_interval`, send each one an empty
    /// `IHave` (a no-op for Plumtree) so that a dead connection fails and the driver reports
    /// [`Self::peer_down`]. Silent views only: a busy topic never pays for it.
    fn probe_silent_view(&mut self, now: Instant, out: &mut Vec<HvOutput<P>>) {
        if self.active.is_empty()
            || now.saturating_duration_since(self.last_heard) < self.config.repair_interval
        {
            return;
        }
        self.last_heard = now;
        for peer in &self.active {
            out.push(HvOutput::Send(
                peer.clone(),
                MessageBody::IHave {
                    entries: Vec::new(),
                },
            ));
        }
    }

    fn on_join(&mut self, from: P, rng: &mut impl Rng, out: &mut Vec<HvOutput<P>>) {
        if from == self.me {
            return;
        }
        self.add_active(from.clone(), rng, out);
        out.push(HvOutput::Send(
            from.clone(),
            MessageBody::Neighbor {
                priority: Priority::High,
            },
        ));
        let ttl = self.config.active_random_walk_length;
        for peer in self.active.iter().filter(|p| **p != from) {
            out.push(HvOutput::Send(
                peer.clone(),
                MessageBody::ForwardJoin {
                    peer: from.clone(),
                    ttl,
                },
            ));
        }
    }

    fn on_forward_join(
        &mut self,
        from: P,
        peer: P,
        ttl: u16,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        if peer == self.me || self.active.contains(&peer) {
            return;
        }
        // A remote peer cannot make the walk longer than ours.
        let ttl = ttl.min(self.config.active_random_walk_length);
        if ttl == 0 || self.active.len() <= 1 {
            self.connect(peer, rng, out);
            return;
        }
        if ttl == self.config.passive_random_walk_length {
            self.add_passive(peer.clone(), rng, &[]);
        }
        let candidates: Vec<&P> = self
            .active
            .iter()
            .filter(|p| **p != from && **p != peer)
            .collect();
        match candidates.choose(rng) {
            Some(next) => {
                let next = (*next).clone();
                out.push(HvOutput::Send(
                    next,
                    MessageBody::ForwardJoin { peer, ttl: ttl - 1 },
                ));
            }
            None => self.connect(peer, rng, out),
        }
    }

    fn on_neighbor(
        &mut self,
        from: P,
        priority: Priority,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        if from == self.me {
            return;
        }
        let accepted = self.active.contains(&from)
            || priority == Priority::High
            || self.active.len() < self.config.active_view_capacity;
        if accepted {
            self.add_active(from.clone(), rng, out);
        }
        out.push(HvOutput::Send(
            from,
            MessageBody::NeighborReply { accepted },
        ));
    }

    fn on_neighbor_reply(
        &mut self,
        now: Instant,
        from: P,
        accepted: bool,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        let requested = self.pending.remove(&from).is_some();
        if accepted {
            if self.active.contains(&from) {
                return;
            }
            if requested || self.active.len() < self.config.active_view_capacity {
                self.add_active(from, rng, out);
            } else {
                // The peer thinks we are neighbours but we never asked and have no room.
                out.push(HvOutput::Send(
                    from.clone(),
                    MessageBody::Disconnect { alive: true },
                ));
                self.add_passive(from, rng, &[]);
            }
        } else if requested && self.active.is_empty() {
            // Isolated: ask again at once, now with high priority (which cannot be refused).
            // Otherwise wait for the periodic repair rather than ping-pong with full peers.
            self.fill_active(now, rng, out);
        }
    }

    fn on_disconnect(
        &mut self,
        now: Instant,
        from: P,
        alive: bool,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        self.pending.remove(&from);
        let was_active = self.remove_active(&from, out);
        if alive {
            self.add_passive(from, rng, &[]);
        } else {
            self.passive.retain(|p| *p != from);
        }
        if was_active {
            self.fill_active(now, rng, out);
        }
    }

    fn on_shuffle(
        &mut self,
        from: P,
        origin: P,
        ttl: u16,
        peers: Vec<P>,
        rng: &mut impl Rng,
        out: &mut Vec<HvOutput<P>>,
    ) {
        if origin == self.me {
            return;
        }
        let ttl = ttl.min(self.config.shuffle_random_walk_length);
        if ttl > 0 && self.active.len() > 1 {
            let candidates: Vec<&P> = self
                .active
                .iter()
                .filter(|p| **p != from && **p != origin)
                .collect();
            if let Some(next) = candidates.choose(rng) {
                let next = (*next).clone();
                out.push(HvOutput::Send(
                    next,
                    MessageBody::Shuffle {
                        origin,
                        ttl: ttl - 1,
                        peers,
                    },
                ));
                return;
            }
        }
        let reply: Vec<P> = self
            .passive
            .choose_multiple(rng, peers.len())
            .cloned()
            .collect();
        out.push(HvOutput::Send(
            origin.clone(),
            MessageBody::ShuffleReply {
                peers: reply.clone(),
            },
        ));
        for peer in peers {
            self.add_passive(peer, rng, &reply);
        }
    }

    fn shuffle(&mut self, rng: &mut impl Rng, out: &mut Vec<HvOutput<P>>) {
        let Some(target) = self.active.choose(rng).cloned() else {
            return;
        };
        let mut peers = vec![self.me.clone()];
        let others: Vec<&P> = self.active.iter().filter(|p| **p != target).collect();
        peers.extend(
            others
                .choose_multiple(rng, self.config.shuffle_active_count)
                .map(|p| (*p).clone()),
        );
        peers.extend(
            self.passive
                .choose_multiple(rng, self.config.shuffle_passive_count)
                .cloned(),
        );
        self.last_shuffle = peers[1..].to_vec();
        out.push(HvOutput::Send(
            target,
            MessageBody::Shuffle {
                origin: self.me.clone(),
                ttl: self.config.shuffle_random_walk_length,
                peers,
            },
        ));
    }

    /// Adds `peer` to the active view on our own initiative and tells it (high priority, so the
    /// link is symmetric).
    fn connect(&mut self, peer: P, rng: &mut impl Rng, out: &mut Vec<HvOutput<P>>) {
        if self.add_active(peer.clone(), rng, out) {
            out.push(HvOutput::Send(
                peer,
                MessageBody::Neighbor {
                    priority: Priority::High,
                },
            ));
        }
    }

    /// Asks passive peers to fill the free slots of the active view.
    fn fill_active(&mut self, now: Instant, rng: &mut impl Rng, out: &mut Vec<HvOutput<P>>) {
        let free = self
            .config
            .active_view_capacity
            .saturating_sub(self.active.len() + self.pending.len());
        if free == 0 {
            return;
        }
        let priority = if self.active.is_empty() {
            Priority::High
        } else {
            Priority::Low
        };
        let mut candidates: Vec<P> = self
            .passive
            .iter()
            .filter(|p| !self.pending.contains_key(p))
            .cloned()
            .collect();
        candidates.shuffle(rng);
        for peer in candidates.into_iter().take(free) {
            self.pending
                .insert(peer.clone(), now + self.config.neighbor_request_timeout);
            out.push(HvOutput::Send(peer, MessageBody::Neighbor { priority }));
        }
    }

    /// Returns true if `peer` was newly added.
    fn add_active(&mut self, peer: P, rng: &mut impl Rng, out: &mut Vec<HvOutput<P>>) -> bool {
        if peer == self.me || self.active.contains(&peer) {
            return false;
        }
        if self.active.len() >= self.config.active_view_capacity {
            let idx = rng.random_range(0..self.active.len());
            let evicted = self.active.swap_remove(idx);
            out.push(HvOutput::Send(
                evicted.clone(),
                MessageBody::Disconnect { alive: true },
            ));
            out.push(HvOutput::NeighborDown(evicted.clone()));
            self.add_passive(evicted, rng, &[]);
        }
        self.passive.retain(|p| *p != peer);
        self.pending.remove(&peer);
        self.active.push(peer.clone());
        out.push(HvOutput::NeighborUp(peer));
        true
    }

    fn remove_active(&mut self, peer: &P, out: &mut Vec<HvOutput<P>>) -> bool {
        match self.active.iter().position(|p| p == peer) {
            Some(idx) => {
                self.active.swap_remove(idx);
                out.push(HvOutput::NeighborDown(peer.clone()));
                true
            }
            None => false,
        }
    }

    /// Adds `peer` to the passive view, evicting first one of `prefer_evict`, else at random.
    fn add_passive(&mut self, peer: P, rng: &mut impl Rng, prefer_evict: &[P]) {
        if peer == self.me || self.active.contains(&peer) || self.passive.contains(&peer) {
            return;
        }
        if self.config.passive_view_capacity == 0 {
            return;
        }
        if self.passive.len() >= self.config.passive_view_capacity {
            let idx = self
                .passive
                .iter()
                .position(|p| prefer_evict.contains(p) && !self.pending.contains_key(p))
                .unwrap_or_else(|| rng.random_range(0..self.passive.len()));
            let evicted = self.passive.swap_remove(idx);
            self.pending.remove(&evicted);
        }
        self.passive.push(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::time::Duration;

    /// A node with the paper's small active view (5), so that tests fill it quickly.
    fn setup(me: u64) -> (HyParView<u64>, ChaCha8Rng, Instant) {
        let mut rng = ChaCha8Rng::seed_from_u64(me);
        let now = Instant::now();
        let config = HyParViewConfig {
            active_view_capacity: 5,
            ..HyParViewConfig::default()
        };
        (HyParView::new(me, config, now, &mut rng), rng, now)
    }

    fn sends(out: &[HvOutput<u64>]) -> Vec<(u64, MessageBody<u64>)> {
        out.iter()
            .filter_map(|o| match o {
                HvOutput::Send(p, b) => Some((*p, b.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn contact_accepts_a_joiner_and_forwards_the_join_to_its_other_neighbours() {
        let (mut hv, mut rng, now) = setup(0);
        let mut out = Vec::new();
        for p in 1..=3 {
            hv.handle(
                now,
                p,
                MessageBody::Neighbor {
                    priority: Priority::High,
                },
                &mut rng,
                &mut out,
            );
        }
        out.clear();
        hv.handle(now, 9, MessageBody::Join, &mut rng, &mut out);
        assert!(hv.is_active(&9));
        let sent = sends(&out);
        assert!(sent.contains(&(
            9,
            MessageBody::Neighbor {
                priority: Priority::High
            }
        )));
        for p in 1..=3 {
            assert!(sent.contains(&(p, MessageBody::ForwardJoin { peer: 9, ttl: 6 })));
        }
    }

    #[test]
    fn full_active_view_evicts_a_neighbour_for_a_high_priority_request_but_rejects_a_low_one() {
        let (mut hv, mut rng, now) = setup(0);
        let mut out = Vec::new();
        for p in 1..=5 {
            hv.handle(
                now,
                p,
                MessageBody::Neighbor {
                    priority: Priority::Low,
                },
                &mut rng,
                &mut out,
            );
        }
        assert_eq!(hv.active().len(), 5);
        out.clear();
        hv.handle(
            now,
            7,
            MessageBody::Neighbor {
                priority: Priority::Low,
            },
            &mut rng,
            &mut out,
        );
        assert!(!hv.is_active(&7));
        assert_eq!(
            sends(&out),
            vec![(7, MessageBody::NeighborReply { accepted: false })]
        );
        out.clear();
        hv.handle(
            now,
            8,
            MessageBody::Neighbor {
                priority: Priority::High,
            },
            &mut rng,
            &mut out,
        );
        assert!(hv.is_active(&8));
        assert_eq!(hv.active().len(), 5);
        let evicted: Vec<u64> = sends(&out)
            .into_iter()
            .filter(|(_, b)| *b == MessageBody::Disconnect { alive: true })
            .map(|(p, _)| p)
            .collect();
        assert_eq!(evicted.len(), 1);
        assert!(
            hv.passive().contains(&evicted[0]),
            "an evicted neighbour becomes passive"
        );
    }

    #[test]
    fn a_silent_active_view_is_probed_with_empty_ihaves_but_a_busy_one_is_not() {
        let (mut hv, mut rng, now) = setup(0);
        let mut out = Vec::new();
        for p in [1, 2] {
            hv.handle(
                now,
                p,
                MessageBody::Neighbor {
                    priority: Priority::High,
                },
                &mut rng,
                &mut out,
            );
        }
        let interval = HyParViewConfig::default().repair_interval;
        let keepalives = |out: &[HvOutput<u64>]| -> Vec<u64> {
            let mut peers: Vec<u64> = sends(out)
                .into_iter()
                .filter(|(_, b)| *b == MessageBody::IHave { entries: vec![] })
                .map(|(p, _)| p)
                .collect();
            peers.sort_unstable();
            peers
        };
        // Neighbour 1 spoke just before the repair check: no probe.
        let t1 = now + interval;
        hv.heard_from(t1 - Duration::from_millis(10), &1);
        out.clear();
        hv.handle_timeout(t1, &mut rng, &mut out);
        assert!(keepalives(&out).is_empty());
        // A stranger speaking does not count; a whole silent interval later both are probed.
        let t2 = t1 + interval;
        hv.heard_from(t2 - Duration::from_millis(10), &9);
        out.clear();
        hv.handle_timeout(t2, &mut rng, &mut out);
        assert_eq!(keepalives(&out), vec![1, 2]);
        // Probing counts as activity: the next check does not probe again at once.
        out.clear();
        hv.handle_timeout(t2 + interval / 2, &mut rng, &mut out);
        assert!(keepalives(&out).is_empty());
    }

    #[test]
    fn failed_neighbour_is_replaced_from_the_passive_view() {
        let (mut hv, mut rng, now) = setup(0);
        let mut out = Vec::new();
        hv.handle(
            now,
            1,
            MessageBody::Neighbor {
                priority: Priority::High,
            },
            &mut rng,
            &mut out,
        );
        hv.handle(
            now,
            2,
            MessageBody::Disconnect { alive: true },
            &mut rng,
            &mut out,
        );
        assert!(hv.passive().contains(&2));
        out.clear();
        hv.peer_down(now, &1, &mut rng, &mut out);
        assert!(hv.active().is_empty());
        assert!(matches!(out[0], HvOutput::NeighborDown(1)));
        assert!(sends(&out).contains(&(
            2,
            MessageBody::Neighbor {
                priority: Priority::High
            }
        )));
        out.clear();
        hv.handle(
            now,
            2,
            MessageBody::NeighborReply { accepted: true },
            &mut rng,
            &mut out,
        );
        assert_eq!(hv.active(), &[2]);
    }

    #[test]
    fn oversized_shuffle_is_rejected() {
        let (hv, _, _) = setup(0);
        let body = MessageBody::Shuffle {
            origin: 3,
            ttl: 2,
            peers: (0..100).collect(),
        };
        assert_eq!(
            hv.validate(&body),
            Err(BroadcastError::TooManyPeers { count: 100, max: 8 })
        );
    }
}
