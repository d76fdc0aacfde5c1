//! Errors of the broadcast layer.

use super::message::{MessageId, TopicId};

/// Why an input to [`Broadcast`](super::Broadcast) was refused.
///
/// Every variant leaves the state unchanged: the input was checked and dropped before it touched
/// anything, so the driver may log it, count it against the sending peer and carry on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The topic is not joined. Doesn't affect state.
    #[error("topic {0:?} is not joined")]
    UnknownTopic(TopicId),
    /// Joining one more topic would exceed the limit. Doesn't affect state.
    #[error("cannot join another topic: the limit is {max} topics")]
    TooManyTopics {
        /// The configured limit.
        max: usize,
    },
    /// A payload (published or received) is larger than the maximum message size. Doesn't affect
    /// state.
    #[error("payload of {size} bytes exceeds the maximum message size of {max} bytes")]
    MessageTooLarge {
        /// Size of the offending payload.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A received `IHave` announces more ids than allowed. Doesn't affect state.
    #[error("IHave with {count} ids exceeds the limit of {max}")]
    TooManyIds {
        /// Ids in the offending message.
        count: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A received shuffle carries more peers than a shuffle may. Doesn't affect state.
    #[error("shuffle with {count} peers exceeds the limit of {max}")]
    TooManyPeers {
        /// Peers in the offending message.
        count: usize,
        /// The limit (1 + shuffle_active_count + shuffle_passive_count).
        max: usize,
    },
    /// The topic's outbound queue is full: the driver must drain `poll_transmit`. Doesn't affect
    /// state.
    #[error("outbound queue full ({max} messages); drain poll_transmit")]
    TransmitQueueFull {
        /// The configured limit.
        max: usize,
    },
    /// The topic's event queue is full: the application must drain `poll_event`. Doesn't affect
    /// state.
    #[error("event queue full ({max} events); drain poll_event")]
    EventQueueFull {
        /// The configured limit.
        max: usize,
    },
    /// A Plumtree message (`Gossip`, `IHave`, `Graft`, `Prune`) from a peer in neither of the
    /// topic's views: only neighbours take part in the broadcast tree. Doesn't affect state (a
    /// payload is not delivered, not forwarded, its id not remembered; a graft is not answered).
    /// (From a passive peer, a former neighbour whose messages crossed our `Disconnect`, the
    /// message is dropped the same way but without an error.)
    #[error("broadcast message from a peer that is not a neighbour in this topic")]
    NotNeighbor,
    /// A received payload's publisher signature did not verify. Doesn't affect state: the copy
    /// is not delivered, not forwarded and its id is not remembered, so the genuine message is
    /// still accepted when it comes.
    #[error("message {0:?} does not carry a valid signature of its publisher")]
    BadSignature(MessageId),
    /// A received payload carries a signature larger than `max_signature_len`. Doesn't affect
    /// state.
    #[error("signature of {size} bytes exceeds the maximum of {max} bytes")]
    SignatureTooLarge {
        /// Size of the offending signature.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The message claims to come from the local peer. Doesn't affect state.
    #[error("message claims to come from the local peer")]
    FromSelf,
    /// This message id was already published or delivered here. Doesn't affect state.
    #[error("message {0:?} was already published or delivered")]
    DuplicateMessageId(MessageId),
}
