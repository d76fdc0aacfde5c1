//! Events the broadcast layer reports to the application.

use super::message::{MessageId, TopicId};

/// Something the application should know about, returned by
/// [`Broadcast::poll_event`](super::Broadcast::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BroadcastEvent<P> {
    /// A message published by another node reached this one. Reported exactly once per message
    /// (while its id is remembered, see `PlumtreeConfig::message_cache_ttl`); a node's own
    /// publications are not reported back to it.
    Received {
        /// The topic it was published on.
        topic: TopicId,
        /// Its id.
        id: MessageId,
        /// The application payload.
        payload: Vec<u8>,
        /// Who published it, as its signature proves (see
        /// [`Authenticator`](super::Authenticator); with [`NoAuth`](crate::NoAuth) whoever the
        /// message claims).
        publisher: P,
        /// The neighbour it came from (not necessarily the publisher).
        from: P,
        /// Hops it travelled from the publisher (1 for a direct neighbour).
        hops: u16,
    },
    /// `peer` entered this node's active view for `topic`.
    NeighborUp {
        /// The topic.
        topic: TopicId,
        /// The new neighbour.
        peer: P,
    },
    /// `peer` left this node's active view for `topic` (disconnected, evicted or failed).
    NeighborDown {
        /// The topic.
        topic: TopicId,
        /// The former neighbour.
        peer: P,
    },
}
