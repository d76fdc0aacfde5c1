//! [`SimNode`]: what a sans-IO core, or an adapter around one, offers the harness.

use std::time::Instant;

use crate::NodeId;

/// A node the [`Harness`](super::Harness) can drive: a sans-IO core (or a thin adapter around
/// one) with the quinn-style shape of bavard's cores.
///
/// - **inputs**: [`handle_message`](Self::handle_message) for every message delivered to it,
///   [`handle_timeout`](Self::handle_timeout) when its deadline falls due (calling it early or
///   twice must be harmless), [`peer_unreachable`](Self::peer_unreachable) when a send failed on
///   a connection transport;
/// - **outputs**: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event) (what
///   the experiment observes), [`poll_timeout`](Self::poll_timeout) (one deadline);
/// - **accounting**: [`message_len`](Self::message_len) for the byte counts,
///   [`loss_key`](Self::loss_key) to name a message for the loss decision,
///   [`on_sent`](Self::on_sent) to observe what actually left;
/// - **faults**: [`on_crash`](Self::on_crash) to forget what a crash loses.
///
/// Every `now` passed in is the node's own clock (virtual time plus its skew), never earlier than
/// a `now` it was given before. Commands specific to a core (join, publish, put…) are not part of
/// the trait: the experiment calls them through [`Harness::act`](super::Harness::act), which then
/// drains the outputs.
pub trait SimNode {
    /// What nodes send each other.
    type Message;
    /// What a node reports to the experiment.
    type Event;
    /// Why a node refuses a message (counted in [`Traffic::rejected`](super::Traffic::rejected);
    /// an adapter that wants the detail turns it into an event).
    type Error;

    /// A message from `from` arrived.
    fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        msg: Self::Message,
    ) -> Result<(), Self::Error>;

    /// The deadline of [`poll_timeout`](Self::poll_timeout) has passed.
    fn handle_timeout(&mut self, now: Instant);

    /// The next message to send and its destination.
    fn poll_transmit(&mut self) -> Option<(NodeId, Self::Message)>;

    /// The next event for the experiment.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// The next deadline, on this node's clock.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The size of `msg` on the wire (an estimate is fine), for [`Traffic::bytes`](super::Traffic::bytes).
    fn message_len(msg: &Self::Message) -> usize;

    /// A name for `msg` that decides its fate under loss (see [`crate::loss`]). `None` (the
    /// default): the harness names it by its send number in the run.
    fn loss_key(_msg: &Self::Message) -> Option<u64> {
        None
    }

    /// `msg` left for `to`: it is counted and on the wire (it may still be lost, cut by a
    /// partition, or find `to` crashed on a datagram transport). Not called for a send refused by
    /// a connection transport. Default: nothing.
    fn on_sent(&mut self, _to: NodeId, _msg: &Self::Message) {}

    /// On a [connection transport](super::Transport::Connection), a send to `peer` failed
    /// because it is down; the message was not sent. Default: nothing.
    fn peer_unreachable(&mut self, _now: Instant, _peer: NodeId) {}

    /// The node crashed ([`Fault::Crash`](super::Fault::Crash)): drop what a real process keeps
    /// only in memory (requests in flight, unflushed buffers) and keep what it keeps on disk.
    /// What remains is what [`Restart::StateKept`](super::Restart::StateKept) brings back.
    /// Anything it queues meanwhile is discarded: a crashed process sends and reports nothing.
    /// Default: nothing is lost (the crash is a pause).
    fn on_crash(&mut self) {}
}
