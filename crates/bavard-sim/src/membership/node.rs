//! The membership core as the harness drives it: [`Membership`] is a [`SimNode`] as it is.

use std::time::Instant;

use bavard_gossip::membership::{Membership, MembershipError, MembershipEvent, Message};
use rand::Rng;

use crate::NodeId;
use crate::harness::SimNode;

/// SWIM runs on datagrams: a probe to a crashed member just goes unanswered, so the default
/// [`Transport::Datagram`](crate::harness::Transport::Datagram) and no `peer_unreachable`.
impl<R: Rng> SimNode for Membership<NodeId, R> {
    type Message = Message<NodeId>;
    type Event = MembershipEvent<NodeId>;
    type Error = MembershipError;

    fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        msg: Message<NodeId>,
    ) -> Result<(), MembershipError> {
        Membership::handle_message(self, now, from, msg)
    }

    fn handle_timeout(&mut self, now: Instant) {
        Membership::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Message<NodeId>)> {
        Membership::poll_transmit(self)
    }

    fn poll_event(&mut self) -> Option<MembershipEvent<NodeId>> {
        Membership::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Membership::poll_timeout(self)
    }

    fn message_len(msg: &Message<NodeId>) -> usize {
        msg.encoded_len_estimate()
    }
}
