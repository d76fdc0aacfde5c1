//! Wire-level domain messages exchanged between broadcast peers.
//!
//! [`Message`] is a plain enum, independent of any encoding: the node converts it to and from
//! protobuf at the edge (`bavard-proto`), turning every malformed field into a typed error there.
//! HyParView's membership messages and Plumtree's broadcast messages share one envelope, tagged
//! with the [`TopicId`] they belong to, because each topic runs its own overlay.

use std::fmt;

/// Assumed encoded size of one peer identity, used by [`Message::encoded_len_estimate`].
///
/// 38 bytes is the size of a libp2p `PeerId` for an ed25519 key (identity multihash), which is
/// what the node plugs in; the core itself is generic over the peer type and cannot know.
pub const PEER_ID_LEN_ESTIMATE: usize = 38;

/// Identifies a topic: 32 opaque bytes (the node derives them from the topic name).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub [u8; 32]);

impl TopicId {
    /// Wraps 32 bytes as a topic id.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes of this topic id.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Identifies one broadcast message: 32 bytes, unique per message.
///
/// [`Broadcast::publish`](super::Broadcast::publish) builds one from 16 random bytes (from the
/// injected RNG), an 8-byte hash of the publisher id and the publisher's 8-byte sequence
/// number, so ids are unique without the crate depending on a cryptographic hash. A caller that
/// wants content addressing (e.g. SHA-256 of topic ‖ payload) computes the id itself and calls
/// [`Broadcast::publish_with_id`](super::Broadcast::publish_with_id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 32]);

impl MessageId {
    /// Wraps 32 bytes as a message id.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes of this message id.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Priority of a HyParView `Neighbor` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    /// The requester's active view is empty (or it already committed to the link): the receiver
    /// must accept, evicting a random active peer if its view is full.
    High,
    /// The requester only wants to fill a free slot: the receiver accepts only if it has room.
    Low,
}

/// One announced message in an `IHave`: its id and the announcer's hop count for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IHaveEntry {
    /// The announced message.
    pub id: MessageId,
    /// How many hops the announcer is from the publisher (0 for the publisher itself).
    pub hops: u16,
}

/// A message between two broadcast peers, for one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<P> {
    /// The topic whose overlay this message belongs to.
    pub topic: TopicId,
    /// What the message says.
    pub body: MessageBody<P>,
}

/// The protocol messages of HyParView (membership) and Plumtree (broadcast).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody<P> {
    /// HyParView: the sender joins the overlay through the receiver (its contact).
    Join,
    /// HyParView: random walk announcing `peer`, a newcomer; `ttl` counts down each hop.
    ForwardJoin {
        /// The peer that joined.
        peer: P,
        /// Remaining hops of the walk.
        ttl: u16,
    },
    /// HyParView: the sender asks to enter the receiver's active view.
    Neighbor {
        /// Whether the receiver must accept.
        priority: Priority,
    },
    /// HyParView: answer to a [`MessageBody::Neighbor`] request.
    NeighborReply {
        /// True if the receiver added the requester to its active view.
        accepted: bool,
    },
    /// HyParView: the sender removed the receiver from its active view.
    Disconnect {
        /// True if the sender stays in the overlay (the receiver keeps it as a passive peer),
        /// false if it leaves the topic.
        alive: bool,
    },
    /// HyParView: periodic exchange of view samples, forwarded by random walk.
    Shuffle {
        /// The node that started the shuffle; the reply goes straight to it.
        origin: P,
        /// Remaining hops of the walk.
        ttl: u16,
        /// Sample of the origin's views (the origin itself first).
        peers: Vec<P>,
    },
    /// HyParView: answer to a shuffle, a sample of the receiver's passive view.
    ShuffleReply {
        /// Sample of the replier's passive view.
        peers: Vec<P>,
    },
    /// Plumtree: the full payload, eagerly pushed along tree edges (or resent after a graft).
    /// Accepted only from an active-view neighbour and with a valid publisher signature.
    Gossip {
        /// The message id.
        id: MessageId,
        /// Hops travelled before the sender (the publisher sends 0). Not signed.
        hops: u16,
        /// Who published the message (not necessarily the sender).
        publisher: P,
        /// The application payload.
        payload: Vec<u8>,
        /// The publisher's signature of (publisher, topic, id, payload) (see
        /// [`Authenticator`](super::Authenticator)), relayed unchanged; empty with
        /// [`NoAuth`](crate::NoAuth).
        signature: Vec<u8>,
    },
    /// Plumtree: lazy announcement of message ids the sender has delivered.
    IHave {
        /// The announced messages.
        entries: Vec<IHaveEntry>,
    },
    /// Plumtree: the sender asks the receiver to make their link an eager (tree) edge and, if
    /// `id` is set, to resend that message's payload.
    Graft {
        /// The missing message to resend, if any.
        id: Option<MessageId>,
    },
    /// Plumtree: the sender received a duplicate from the receiver; the link becomes lazy.
    Prune,
}

impl<P> Message<P> {
    /// True if this message carries an application payload (a Plumtree `Gossip`), so a simulator
    /// can count payload copies for the relative message redundancy (RMR).
    pub fn carries_payload(&self) -> bool {
        matches!(self.body, MessageBody::Gossip { .. })
    }

    /// Length of the application payload carried, 0 if none.
    pub fn payload_len(&self) -> usize {
        match &self.body {
            MessageBody::Gossip { payload, .. } => payload.len(),
            _ => 0,
        }
    }

    /// A rough upper estimate of the protobuf-encoded size in bytes, for accounting and queue
    /// limits; peer ids count as [`PEER_ID_LEN_ESTIMATE`] bytes.
    pub fn encoded_len_estimate(&self) -> usize {
        // topic: 1 tag + 1 length + 32 bytes; body: 1 tag + up to 3 length bytes + 1 kind field.
        const ENVELOPE: usize = 34 + 6;
        const PEER: usize = PEER_ID_LEN_ESTIMATE + 2;
        const ID: usize = 34;
        const VARINT: usize = 4;
        let body = match &self.body {
            MessageBody::Join | MessageBody::Prune => 0,
            MessageBody::ForwardJoin { .. } => PEER + VARINT,
            MessageBody::Neighbor { .. }
            | MessageBody::NeighborReply { .. }
            | MessageBody::Disconnect { .. } => 2,
            MessageBody::Shuffle { peers, .. } => PEER + VARINT + peers.len() * PEER,
            MessageBody::ShuffleReply { peers } => peers.len() * PEER,
            MessageBody::Gossip {
                payload, signature, ..
            } => {
                let signature = if signature.is_empty() {
                    0
                } else {
                    signature.len() + 3
                };
                ID + VARINT + 5 + PEER + payload.len() + signature
            }
            MessageBody::IHave { entries } => entries.len() * (ID + VARINT + 2),
            MessageBody::Graft { id } => id.map_or(0, |_| ID),
        };
        ENVELOPE + body
    }
}
