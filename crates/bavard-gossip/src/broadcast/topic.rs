//! One topic: a HyParView overlay with a Plumtree broadcast on top.
//!
//! Membership messages go to [`HyParView`], broadcast messages to [`Plumtree`]; every change of
//! the active view is passed on to Plumtree (a new neighbour starts eager, a removed one leaves
//! both the eager and the lazy set) and reported to the application. Outgoing messages and
//! events wait in bounded per-topic queues.
//!
//! The topic is also where broadcast messages are admitted. HyParView's messages (`Join`,
//! `ForwardJoin`, `Neighbor`, `NeighborReply`, `Disconnect`, `Shuffle`, `ShuffleReply`) come
//! from non-neighbours by design; Plumtree's (`Gossip`, `IHave`, `Graft`, `Prune`) only ever go
//! to active-view neighbours, so one from anyone else is dropped: a stranger cannot inject
//! payloads, fill the table of missing messages with announcements, or get payloads sent to it
//! with grafts. From a stranger (in neither view) that is an error
//! ([`BroadcastError::NotNeighbor`]); from a passive peer it is the normal race of a link being
//! torn down (we evicted it and it spoke before our `Disconnect` arrived), dropped without one. A payload must
//! also carry a valid signature of its publisher ([`BroadcastError::BadSignature`]). Both are
//! checked before anything changes. Links are FIFO (one stream per peer in the node), and every
//! message that makes a peer a neighbour (`Neighbor`, `NeighborReply`) is queued before the
//! first Plumtree message to it, so a new neighbour is never refused.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Instant;

use rand::Rng;

use super::auth::{Authenticator, SignedGossip};
use super::config::{BroadcastConfig, Limits};
use super::error::BroadcastError;
use super::event::BroadcastEvent;
use super::hyparview::{HvOutput, HyParView};
use super::message::{MessageBody, MessageId, TopicId};
use super::plumtree::{Plumtree, PtOutput};

/// The state of one joined topic.
#[derive(Debug)]
pub(crate) struct Topic<P> {
    id: TopicId,
    hv: HyParView<P>,
    pt: Plumtree<P>,
    limits: Limits,
    outbox: VecDeque<(P, MessageBody<P>)>,
    events: VecDeque<BroadcastEvent<P>>,
    hv_out: Vec<HvOutput<P>>,
    pt_out: Vec<PtOutput<P>>,
}

impl<P: Clone + Eq + Hash + Ord + Debug> Topic<P> {
    pub(crate) fn new(
        me: P,
        id: TopicId,
        config: &BroadcastConfig,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Self {
        Self {
            id,
            hv: HyParView::new(me, config.hyparview.clone(), now, rng),
            pt: Plumtree::new(config.plumtree.clone()),
            limits: config.limits.clone(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            hv_out: Vec::new(),
            pt_out: Vec::new(),
        }
    }

    pub(crate) fn hyparview(&self) -> &HyParView<P> {
        &self.hv
    }

    pub(crate) fn plumtree(&self) -> &Plumtree<P> {
        &self.pt
    }

    pub(crate) fn join(&mut self, now: Instant, contacts: Vec<P>, rng: &mut impl Rng) {
        let mut out = std::mem::take(&mut self.hv_out);
        self.hv.join(contacts, rng, &mut out);
        self.apply_hv(now, &mut out);
        self.hv_out = out;
    }

    /// Says goodbye to every neighbour; returns what is left to send.
    pub(crate) fn leave(mut self, now: Instant) -> VecDeque<(P, MessageBody<P>)> {
        let mut out = std::mem::take(&mut self.hv_out);
        self.hv.leave(&mut out);
        self.apply_hv(now, &mut out);
        self.outbox
    }

    /// Refuses new work while the driver has not drained the queues.
    fn check_queues(&self) -> Result<(), BroadcastError> {
        if self.outbox.len() >= self.limits.max_queued_transmits {
            return Err(BroadcastError::TransmitQueueFull {
                max: self.limits.max_queued_transmits,
            });
        }
        if self.events.len() >= self.limits.max_queued_events {
            return Err(BroadcastError::EventQueueFull {
                max: self.limits.max_queued_events,
            });
        }
        Ok(())
    }

    /// Publishes a message of `publisher` (the local id), signed by `auth` once it passed the
    /// checks.
    pub(crate) fn publish(
        &mut self,
        now: Instant,
        id: MessageId,
        publisher: P,
        payload: Vec<u8>,
        auth: &mut dyn Authenticator<P>,
    ) -> Result<(), BroadcastError> {
        self.check_queues()?;
        let mut out = std::mem::take(&mut self.pt_out);
        let topic = self.id;
        let signer = publisher.clone();
        let sign = |payload: &[u8]| {
            auth.sign(&SignedGossip {
                publisher: &signer,
                topic: &topic,
                id: &id,
                payload,
            })
        };
        let result = self
            .pt
            .broadcast(now, id, publisher, payload, sign, &mut out);
        self.apply_pt(&mut out);
        self.pt_out = out;
        result
    }

    /// Handles a message from `from`; payloads are verified with `auth`. Every error is
    /// returned before anything changed.
    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        from: P,
        body: MessageBody<P>,
        rng: &mut impl Rng,
        auth: &dyn Authenticator<P>,
    ) -> Result<(), BroadcastError> {
        self.check_queues()?;
        match body {
            MessageBody::Gossip { .. }
            | MessageBody::IHave { .. }
            | MessageBody::Graft { .. }
            | MessageBody::Prune => {
                if !self.hv.is_active(&from) {
                    // A link being torn down: we dropped the peer (an eviction, a full view
                    // answering a late reply) and it sent this before our `Disconnect` reached
                    // it. Normal, so not an error; dropped all the same.
                    if self.hv.is_passive(&from) {
                        return Ok(());
                    }
                    return Err(BroadcastError::NotNeighbor);
                }
                self.pt.validate(&body)?;
                if let MessageBody::Gossip {
                    id,
                    publisher,
                    payload,
                    signature,
                    ..
                } = &body
                {
                    let signed = SignedGossip {
                        publisher,
                        topic: &self.id,
                        id,
                        payload,
                    };
                    if !auth.verify(&signed, signature) {
                        return Err(BroadcastError::BadSignature(*id));
                    }
                }
                self.hv.heard_from(now, &from);
                let mut out = std::mem::take(&mut self.pt_out);
                self.pt.handle(now, from, body, &mut out);
                self.apply_pt(&mut out);
                self.pt_out = out;
            }
            MessageBody::Join
            | MessageBody::ForwardJoin { .. }
            | MessageBody::Neighbor { .. }
            | MessageBody::NeighborReply { .. }
            | MessageBody::Disconnect { .. }
            | MessageBody::Shuffle { .. }
            | MessageBody::ShuffleReply { .. } => {
                self.hv.validate(&body)?;
                self.hv.heard_from(now, &from);
                let mut out = std::mem::take(&mut self.hv_out);
                self.hv.handle(now, from, body, rng, &mut out);
                self.apply_hv(now, &mut out);
                self.hv_out = out;
            }
        }
        Ok(())
    }

    pub(crate) fn peer_down(&mut self, now: Instant, peer: &P, rng: &mut impl Rng) {
        let mut out = std::mem::take(&mut self.hv_out);
        self.hv.peer_down(now, peer, rng, &mut out);
        self.apply_hv(now, &mut out);
        self.hv_out = out;
    }

    pub(crate) fn poll_timeout(&self) -> Instant {
        let hv = self.hv.poll_timeout();
        self.pt.poll_timeout().map_or(hv, |pt| pt.min(hv))
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, rng: &mut impl Rng) {
        let mut hv_out = std::mem::take(&mut self.hv_out);
        self.hv.handle_timeout(now, rng, &mut hv_out);
        self.apply_hv(now, &mut hv_out);
        self.hv_out = hv_out;
        let mut pt_out = std::mem::take(&mut self.pt_out);
        self.pt.handle_timeout(now, &mut pt_out);
        self.apply_pt(&mut pt_out);
        self.pt_out = pt_out;
    }

    pub(crate) fn pop_transmit(&mut self) -> Option<(P, MessageBody<P>)> {
        self.outbox.pop_front()
    }

    pub(crate) fn pop_event(&mut self) -> Option<BroadcastEvent<P>> {
        self.events.pop_front()
    }

    /// Applies HyParView's outputs; new neighbours are told about recent messages.
    fn apply_hv(&mut self, now: Instant, out: &mut Vec<HvOutput<P>>) {
        let mut new_neighbors = Vec::new();
        for output in out.drain(..) {
            match output {
                HvOutput::Send(peer, body) => self.outbox.push_back((peer, body)),
                HvOutput::NeighborUp(peer) => {
                    self.pt.neighbor_up(peer.clone());
                    if !new_neighbors.contains(&peer) {
                        new_neighbors.push(peer.clone());
                    }
                    self.events.push_back(BroadcastEvent::NeighborUp {
                        topic: self.id,
                        peer,
                    });
                }
                HvOutput::NeighborDown(peer) => {
                    self.pt.neighbor_down(&peer);
                    self.events.push_back(BroadcastEvent::NeighborDown {
                        topic: self.id,
                        peer,
                    });
                }
            }
        }
        // After the batch's sends: HyParView reports a new neighbour before it queues the
        // `Neighbor` or `NeighborReply` that makes the link mutual, and the peer refuses
        // Plumtree messages (these `IHave`s) from a non-neighbour.
        for peer in new_neighbors {
            if !self.hv.is_active(&peer) {
                continue; // evicted again within the same batch
            }
            let mut pt_out = std::mem::take(&mut self.pt_out);
            self.pt.announce_recent(now, peer, &mut pt_out);
            self.apply_pt(&mut pt_out);
            self.pt_out = pt_out;
        }
    }

    fn apply_pt(&mut self, out: &mut Vec<PtOutput<P>>) {
        for output in out.drain(..) {
            match output {
                PtOutput::Send(peer, body) => self.outbox.push_back((peer, body)),
                PtOutput::Deliver {
                    id,
                    payload,
                    publisher,
                    from,
                    hops,
                } => {
                    self.events.push_back(BroadcastEvent::Received {
                        topic: self.id,
                        id,
                        payload,
                        publisher,
                        from,
                        hops,
                    });
                }
            }
        }
    }
}
