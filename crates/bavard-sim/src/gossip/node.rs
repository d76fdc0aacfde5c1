//! bavard's broadcast core as the gossip experiment drives it: [`Broadcast`] as it is, plus a
//! count of the payload copies it sends (for the RMR).

use std::collections::VecDeque;
use std::time::Instant;

use bavard_gossip::broadcast::{
    Broadcast, BroadcastError, BroadcastEvent, Message, MessageBody, MessageId,
};
use rand_chacha::ChaCha8Rng;

use crate::NodeId;
use crate::harness::SimNode;

/// What a broadcast node reports to the experiment.
pub(super) enum Out {
    /// A message reached this node (once per message).
    Received {
        /// Its payload (the experiment reads its index from it).
        payload: Vec<u8>,
        /// Hops from its publisher.
        hops: u16,
    },
    /// This node sent a copy of the payload of `id` to a live peer (lost or not).
    PayloadSent(MessageId),
}

/// A [`Broadcast`] core. Runs on a connection transport: a send to a crashed peer fails at once
/// and the core is told with [`Broadcast::peer_down`].
pub(super) struct GossipNode {
    pub(super) core: Broadcast<NodeId, ChaCha8Rng>,
    sent: VecDeque<MessageId>,
}

impl GossipNode {
    pub(super) fn new(core: Broadcast<NodeId, ChaCha8Rng>) -> Self {
        Self {
            core,
            sent: VecDeque::new(),
        }
    }
}

impl SimNode for GossipNode {
    type Message = Message<NodeId>;
    type Event = Out;
    type Error = BroadcastError;

    fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        msg: Message<NodeId>,
    ) -> Result<(), BroadcastError> {
        self.core.handle_message(now, from, msg)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Message<NodeId>)> {
        self.core.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Out> {
        if let Some(id) = self.sent.pop_front() {
            return Some(Out::PayloadSent(id));
        }
        // Neighbour changes are not measured.
        loop {
            if let BroadcastEvent::Received { payload, hops, .. } = self.core.poll_event()? {
                return Some(Out::Received { payload, hops });
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    fn message_len(msg: &Message<NodeId>) -> usize {
        msg.encoded_len_estimate()
    }

    fn on_sent(&mut self, _to: NodeId, msg: &Message<NodeId>) {
        if let MessageBody::Gossip { id, .. } = &msg.body {
            self.sent.push_back(*id);
        }
    }

    fn peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        self.core.peer_down(now, &peer);
    }
}
