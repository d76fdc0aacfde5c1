//! One topic: a HyParView overlay with a Plumtree broadcast on top.
//!
//! Membership messages go to [`HyParView`], broadcast messages to [`Plumtree`]; every change of
//! the active view is passed on to Plumtree (a new neighbour starts eager, a removed one leaves
//! both the eager and the lazy set) and reported to the application. Outgoing messages and
//! events wait in bounded per-topic queues.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Instant;

use rand::Rng;

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

    pub(crate) fn publish(
        &mut self,
        now: Instant,
        id: MessageId,
        payload: Vec<u8>,
    ) -> Result<(), BroadcastError> {
        self.check_queues()?;
        let mut out = std::mem::take(&mut self.pt_out);
        let result = self.pt.broadcast(now, id, payload, &mut out);
        self.apply_pt(&mut out);
        self.pt_out = out;
        result
    }

    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        from: P,
        body: MessageBody<P>,
        rng: &mut impl Rng,
    ) -> Result<(), BroadcastError> {
        self.check_queues()?;
        self.hv.heard_from(now, &from);
        match body {
            MessageBody::Gossip { .. }
            | MessageBody::IHave { .. }
            | MessageBody::Graft { .. }
            | MessageBody::Prune => {
                self.pt.validate(&body)?;
                let is_neighbor = self.hv.is_active(&from);
                let mut out = std::mem::take(&mut self.pt_out);
                self.pt.handle(now, from, is_neighbor, body, &mut out);
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
        for output in out.drain(..) {
            match output {
                HvOutput::Send(peer, body) => self.outbox.push_back((peer, body)),
                HvOutput::NeighborUp(peer) => {
                    self.pt.neighbor_up(peer.clone());
                    let mut pt_out = std::mem::take(&mut self.pt_out);
                    self.pt.announce_recent(now, peer.clone(), &mut pt_out);
                    self.apply_pt(&mut pt_out);
                    self.pt_out = pt_out;
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
    }

    fn apply_pt(&mut self, out: &mut Vec<PtOutput<P>>) {
        for output in out.drain(..) {
            match output {
                PtOutput::Send(peer, body) => self.outbox.push_back((peer, body)),
                PtOutput::Deliver {
                    id,
                    payload,
                    from,
                    hops,
                } => {
                    self.events.push_back(BroadcastEvent::Received {
                        topic: self.id,
                        id,
                        payload,
                        from,
                        hops,
                    });
                }
            }
        }
    }
}
