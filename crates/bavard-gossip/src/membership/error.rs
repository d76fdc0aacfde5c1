//! Errors of the membership state machine.

/// Why [`Membership::handle_message`](super::Membership::handle_message) rejected a message.
///
/// Every variant is detected before anything is applied: a rejected message **doesn't affect
/// state** (no update applied, nothing sent). The driver may count it against the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Applying the message would grow the view beyond `max_members`. Doesn't affect state.
    #[error(
        "message would grow the membership to {would_be} members, over the limit of {limit}; message ignored"
    )]
    TooManyMembers {
        /// Members the view would hold.
        would_be: usize,
        /// The configured `max_members`.
        limit: usize,
    },
    /// The message carries more updates than accepted in one message. Doesn't affect state.
    #[error("message carries {count} updates, over the limit of {limit}; message ignored")]
    TooManyUpdates {
        /// Updates in the message.
        count: usize,
        /// The configured limit (`max_updates_per_message`, or `max_members` for push-pull).
        limit: usize,
    },
    /// An update carries metadata larger than `max_meta_len`. Doesn't affect state.
    #[error("member metadata of {len} bytes exceeds the limit of {limit} bytes; message ignored")]
    MetaTooLarge {
        /// Size of the offending metadata.
        len: usize,
        /// The configured `max_meta_len`.
        limit: usize,
    },
    /// An update carries a signature larger than `max_signature_len`. Doesn't affect state.
    #[error("update signature of {len} bytes exceeds the limit of {limit} bytes; message ignored")]
    SignatureTooLarge {
        /// Size of the offending signature.
        len: usize,
        /// The configured `max_signature_len`.
        limit: usize,
    },
    /// The message claims to come from the local node itself. Doesn't affect state.
    #[error("message claims to come from the local node; message ignored")]
    FromSelf,
}
