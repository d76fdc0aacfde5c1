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
    /// The message claims to come from the local peer. Doesn't affect state.
    #[error("message claims to come from the local peer")]
    FromSelf,
    /// This message id was already published or delivered here. Doesn't affect state.
    #[error("message {0:?} was already published or delivered")]
    DuplicateMessageId(MessageId),
}
