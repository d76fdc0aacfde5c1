//! [`Broadcast`]: the sans-IO state machine for every topic a node has joined.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::time::Instant;

use rand::Rng;

use super::auth::{AuthBox, Authenticator};
use super::config::BroadcastConfig;
use super::error::BroadcastError;
use super::event::BroadcastEvent;
use super::message::{Message, MessageId, TopicId};
use super::topic::Topic;
use crate::NoAuth;

/// Topic broadcast (HyParView + Plumtree) for one node, across all the topics it joined.
///
/// Sans-IO: it neither sends nor sleeps; the driver (the node, a simulator, a test) moves
/// messages and time. Generic over the peer identity `P` (tests use `u64`) and the random
/// number generator `R` (seeded by the caller, so runs replay exactly).
///
/// Its methods come in four kinds:
///
/// - **commands** from the application: [`join_topic`](Self::join_topic),
///   [`leave_topic`](Self::leave_topic), [`publish`](Self::publish),
///   [`publish_with_id`](Self::publish_with_id);
/// - **inputs** from the driver: [`handle_message`](Self::handle_message) for every message
///   received, [`peer_down`](Self::peer_down) when a peer is unreachable (a send failed, a
///   connection closed, the failure detector declared it dead), and
///   [`handle_timeout`](Self::handle_timeout) when the deadline of
///   [`poll_timeout`](Self::poll_timeout) has passed (extra calls are harmless no-ops);
/// - **outputs**: [`poll_transmit`](Self::poll_transmit) (messages to send: the transport must be
///   able to reach any peer id, as shuffle replies and neighbour requests go to non-neighbours),
///   [`poll_event`](Self::poll_event) (deliveries and neighbour changes),
///   [`poll_timeout`](Self::poll_timeout) (the next deadline);
/// - **getters**: [`active_view`](Self::active_view), [`passive_view`](Self::passive_view),
///   [`eager_peers`](Self::eager_peers), [`lazy_peers`](Self::lazy_peers), …
///
/// After every command or input, the driver drains `poll_transmit` and `poll_event` until they
/// return `None`, then re-reads `poll_timeout` and arms its timer. Queues are bounded (see
/// [`Limits`](super::Limits)): a driver that does not drain them gets
/// [`BroadcastError::TransmitQueueFull`] / [`BroadcastError::EventQueueFull`] and the input is
/// dropped, state unchanged.
///
/// # Trust
///
/// Set the authenticator with [`with_authenticator`](Self::with_authenticator); the default,
/// [`NoAuth`], signs nothing and accepts everything. The rules:
///
/// - a message this node publishes is signed by it (publisher, topic, id, payload) when it is
///   published; the signature travels with every copy, eager pushes and graft answers alike;
/// - a received `Gossip` is verified before anything else happens to it: one whose signature
///   does not verify is dropped ([`BroadcastError::BadSignature`]): not delivered, not
///   forwarded, its id not remembered. [`BroadcastEvent::Received`](super::BroadcastEvent)
///   names the verified publisher;
/// - Plumtree messages (`Gossip`, `IHave`, `Graft`, `Prune`) are only taken from the topic's
///   active-view neighbours: from a stranger they are refused ([`BroadcastError::NotNeighbor`]),
///   from a passive peer (a link being torn down) dropped without an error; HyParView's come
///   from anyone, as the protocol needs;
/// - a message id is remembered once the first genuine copy is delivered; later copies under
///   that id are duplicates whatever they carry, so a forged copy, before or after, neither
///   displaces nor blocks the genuine one.
///
/// Every refusal is an error that leaves the state unchanged, so the driver counts them. What
/// the signatures do not give: freshness (a genuine message replayed after
/// `message_cache_ttl` is delivered again, as before) and exclusive ids (a member allowed to
/// publish may publish under an id another publisher uses; see
/// [`publish_with_id`](Self::publish_with_id)).
#[derive(Debug)]
pub struct Broadcast<P, R> {
    me: P,
    config: BroadcastConfig,
    rng: R,
    topics: BTreeMap<TopicId, Topic<P>>,
    /// Goodbyes of topics already left.
    leaving: VecDeque<(P, Message<P>)>,
    /// Where the round-robin over topics resumes in `poll_transmit` / `poll_event`.
    transmit_cursor: Option<TopicId>,
    event_cursor: Option<TopicId>,
    /// Sequence number of our next publication, part of its generated id.
    next_seq: u64,
    /// Hash of `me`, part of generated ids.
    me_hash: u64,
    auth: AuthBox<P>,
}

impl<P, R> Broadcast<P, R>
where
    P: Clone + Eq + Hash + Ord + Debug,
    R: Rng,
{
    /// A node `local` with no topic joined yet, with the [`NoAuth`] authenticator (see
    /// [`with_authenticator`](Self::with_authenticator)).
    pub fn new(local: P, config: BroadcastConfig, rng: R) -> Self {
        let mut hasher = DefaultHasher::new();
        local.hash(&mut hasher);
        Self {
            me_hash: hasher.finish(),
            me: local,
            config,
            rng,
            topics: BTreeMap::new(),
            leaving: VecDeque::new(),
            transmit_cursor: None,
            event_cursor: None,
            next_seq: 0,
            auth: AuthBox(Box::new(NoAuth)),
        }
    }

    /// Replaces the authenticator (by default [`NoAuth`]) that signs this node's publications and
    /// verifies received ones (see "Trust" above).
    pub fn with_authenticator(mut self, auth: Box<dyn Authenticator<P>>) -> Self {
        self.auth = AuthBox(auth);
        self
    }

    /// The local peer id.
    pub fn local_peer(&self) -> &P {
        &self.me
    }

    /// The configuration in use.
    pub fn config(&self) -> &BroadcastConfig {
        &self.config
    }

    /// Joins `topic` through `contacts` (peers already in it): a `Join` goes to the first one,
    /// the others are kept as passive peers to fall back on. With no contacts the node starts a
    /// new overlay and waits for others to join through it. Joining a topic already joined just
    /// joins again through the new contacts.
    pub fn join_topic(
        &mut self,
        now: Instant,
        topic: TopicId,
        contacts: Vec<P>,
    ) -> Result<(), BroadcastError> {
        if !self.topics.contains_key(&topic) && self.topics.len() >= self.config.limits.max_topics {
            return Err(BroadcastError::TooManyTopics {
                max: self.config.limits.max_topics,
            });
        }
        let state = self.topics.entry(topic).or_insert_with(|| {
            Topic::new(self.me.clone(), topic, &self.config, now, &mut self.rng)
        });
        state.join(now, contacts, &mut self.rng);
        Ok(())
    }

    /// Leaves `topic`: sends `Disconnect` to every neighbour and drops its state (queued messages
    /// for it are still sent). Returns false if it was not joined.
    pub fn leave_topic(&mut self, now: Instant, topic: TopicId) -> bool {
        let Some(state) = self.topics.remove(&topic) else {
            return false;
        };
        let goodbyes = state.leave(now);
        self.leaving.extend(
            goodbyes
                .into_iter()
                .map(|(peer, body)| (peer, Message { topic, body })),
        );
        true
    }

    /// Publishes `payload` on `topic` with a generated id (16 random bytes ‖ 8-byte hash of the
    /// local id ‖ 8-byte sequence number) and returns it. The node itself gets no `Received`
    /// event for its own message.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: TopicId,
        payload: Vec<u8>,
    ) -> Result<MessageId, BroadcastError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes[..16]);
        bytes[16..24].copy_from_slice(&self.me_hash.to_be_bytes());
        bytes[24..].copy_from_slice(&self.next_seq.to_be_bytes());
        let id = MessageId(bytes);
        self.publish_with_id(now, topic, id, payload)?;
        self.next_seq += 1;
        Ok(id)
    }

    /// Publishes `payload` on `topic` under an id chosen by the caller (e.g. a SHA-256 of the
    /// content), signed by the authenticator. Publishing an id already seen is refused.
    ///
    /// Ids are first come, first served: a member allowed to publish can publish its own
    /// message under an id another publisher uses, and each node keeps whichever copy it saw
    /// first. Where that matters, derive ids from the publisher and the content (e.g. SHA-256 of
    /// publisher ‖ topic ‖ payload) and have [`Authenticator::verify`] check the derivation.
    pub fn publish_with_id(
        &mut self,
        now: Instant,
        topic: TopicId,
        id: MessageId,
        payload: Vec<u8>,
    ) -> Result<(), BroadcastError> {
        let state = self
            .topics
            .get_mut(&topic)
            .ok_or(BroadcastError::UnknownTopic(topic))?;
        state.publish(now, id, self.me.clone(), payload, self.auth.0.as_mut())
    }

    /// Handles a message received from `from`. Errors leave the state unchanged (a message for
    /// a topic not joined, an oversized payload, too many ids, full queues, a Plumtree message
    /// from a non-neighbour, a payload whose signature does not verify…).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: P,
        msg: Message<P>,
    ) -> Result<(), BroadcastError> {
        if from == self.me {
            return Err(BroadcastError::FromSelf);
        }
        let state = self
            .topics
            .get_mut(&msg.topic)
            .ok_or(BroadcastError::UnknownTopic(msg.topic))?;
        state.handle_message(now, from, msg.body, &mut self.rng, self.auth.0.as_ref())
    }

    /// The driver reports `peer` unreachable: it is dropped from every topic's views and the
    /// active views are repaired from the passive ones.
    pub fn peer_down(&mut self, now: Instant, peer: &P) {
        for state in self.topics.values_mut() {
            state.peer_down(now, peer, &mut self.rng);
        }
    }

    /// Runs the timers due at `now`. Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for state in self.topics.values_mut() {
            if state.poll_timeout() <= now {
                state.handle_timeout(now, &mut self.rng);
            }
        }
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) must be called,
    /// `None` if no topic is joined.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.topics.values().map(Topic::poll_timeout).min()
    }

    /// The next message to send, round-robin over topics.
    pub fn poll_transmit(&mut self) -> Option<(P, Message<P>)> {
        if let Some(msg) = self.leaving.pop_front() {
            return Some(msg);
        }
        let order = rotation(&self.topics, self.transmit_cursor);
        for topic in order {
            let state = self
                .topics
                .get_mut(&topic)
                .expect("topic listed by rotation");
            if let Some((peer, body)) = state.pop_transmit() {
                self.transmit_cursor = Some(topic);
                return Some((peer, Message { topic, body }));
            }
        }
        None
    }

    /// The next event for the application, round-robin over topics.
    pub fn poll_event(&mut self) -> Option<BroadcastEvent<P>> {
        let order = rotation(&self.topics, self.event_cursor);
        for topic in order {
            let state = self
                .topics
                .get_mut(&topic)
                .expect("topic listed by rotation");
            if let Some(event) = state.pop_event() {
                self.event_cursor = Some(topic);
                return Some(event);
            }
        }
        None
    }

    /// The topics joined.
    pub fn topics(&self) -> impl Iterator<Item = &TopicId> {
        self.topics.keys()
    }

    /// True if `topic` is joined.
    pub fn is_joined(&self, topic: &TopicId) -> bool {
        self.topics.contains_key(topic)
    }

    /// The active view (broadcast neighbours) of `topic`; empty if not joined.
    pub fn active_view(&self, topic: &TopicId) -> Vec<P> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.hyparview().active().to_vec())
    }

    /// The passive view (backup peers) of `topic`; empty if not joined.
    pub fn passive_view(&self, topic: &TopicId) -> Vec<P> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.hyparview().passive().to_vec())
    }

    /// The eager-push peers (tree edges) of `topic`, sorted; empty if not joined.
    pub fn eager_peers(&self, topic: &TopicId) -> Vec<P> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.plumtree().eager().iter().cloned().collect())
    }

    /// The lazy-push peers of `topic`, sorted; empty if not joined.
    pub fn lazy_peers(&self, topic: &TopicId) -> Vec<P> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.plumtree().lazy().iter().cloned().collect())
    }

    /// How many message ids `topic` currently remembers (bounded by
    /// `PlumtreeConfig::seen_cache_capacity`); 0 if not joined.
    pub fn seen_messages(&self, topic: &TopicId) -> usize {
        self.topics
            .get(topic)
            .map_or(0, |t| t.plumtree().seen_len())
    }
}

/// Topic ids starting just after `cursor`, wrapping around.
fn rotation<T>(topics: &BTreeMap<TopicId, T>, cursor: Option<TopicId>) -> Vec<TopicId> {
    match cursor {
        None => topics.keys().copied().collect(),
        Some(c) => topics
            .range((Bound::Excluded(c), Bound::Unbounded))
            .chain(topics.range(..=c))
            .map(|(k, _)| *k)
            .collect(),
    }
}
