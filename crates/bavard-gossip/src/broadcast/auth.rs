//! Signed topic messages: every payload carries its publisher's signature.
//!
//! Plumtree relays payloads hop by hop, so the neighbour a message comes from is rarely its
//! publisher. The publisher therefore signs `(publisher, topic, id, payload)` once, when it
//! publishes; the signature travels in every copy (eager pushes and graft answers) and every
//! node verifies it before the message is remembered, delivered or forwarded. A relay can
//! repeat a message; it cannot alter one or make one up in another member's name. The hop count
//! is not signed: it only steers the tree, and each relay rewrites it.

use std::fmt;

use super::message::{MessageId, TopicId};

/// The fields of a topic message that its publisher's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedGossip<'a, P> {
    /// Who published the message (and signed it).
    pub publisher: &'a P,
    /// The topic it was published on.
    pub topic: &'a TopicId,
    /// Its id.
    pub id: &'a MessageId,
    /// The application payload.
    pub payload: &'a [u8],
}

impl<P> SignedGossip<'_, P> {
    /// Domain-separation prefix of [`signing_bytes`](Self::signing_bytes), so that a signature
    /// over a topic message can never be replayed as a signature over anything else.
    pub const DOMAIN: &'static [u8] = b"bavard/plumtree/gossip/v1";

    /// A canonical, unambiguous encoding of the fields for a signature scheme, given the bytes
    /// of the publisher id (the core is generic over the id and cannot serialise it):
    ///
    /// `DOMAIN ‖ u64be(len(publisher)) ‖ publisher ‖ topic (32 bytes) ‖ id (32 bytes) ‖
    /// u64be(len(payload)) ‖ payload`.
    pub fn signing_bytes(&self, publisher: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            Self::DOMAIN.len() + 8 + publisher.len() + 64 + 8 + self.payload.len(),
        );
        out.extend_from_slice(Self::DOMAIN);
        out.extend_from_slice(&(publisher.len() as u64).to_be_bytes());
        out.extend_from_slice(publisher);
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&(self.payload.len() as u64).to_be_bytes());
        out.extend_from_slice(self.payload);
        out
    }
}

/// Signs the topic messages this node publishes and verifies those it receives.
///
/// The publisher signs (publisher, topic, id, payload) once, when it publishes; the signature
/// travels in every copy (eager pushes and graft answers) and every node verifies it before the
/// message is remembered, delivered or forwarded: a relay can repeat a message, not alter one or
/// make one up in another member's name. The hop count is not signed (each relay rewrites it).
/// The full rules are on [`Broadcast`](super::Broadcast) ("Trust").
///
/// The node implements it with the publisher's ed25519 peer key; [`NoAuth`](crate::NoAuth)
/// signs nothing and accepts everything.
pub trait Authenticator<P>: Send {
    /// Signs a message this node publishes (`message.publisher` is the local id). Called once
    /// per publication, after the message passed the size and duplicate checks.
    fn sign(&mut self, message: &SignedGossip<'_, P>) -> Vec<u8>;

    /// Whether `signature` is `message.publisher`'s signature of this message and the publisher
    /// may publish on the topic. Called for every payload received from a neighbour, before it
    /// touches any state; a `false` drops it
    /// ([`BroadcastError::BadSignature`](super::BroadcastError::BadSignature)).
    fn verify(&self, message: &SignedGossip<'_, P>, signature: &[u8]) -> bool;
}

/// The boxed authenticator, so that `Broadcast` can stay `Debug`.
pub(crate) struct AuthBox<P>(pub(crate) Box<dyn Authenticator<P>>);

impl<P> fmt::Debug for AuthBox<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Authenticator")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_bytes_separate_every_field() {
        let (t1, t2) = (TopicId([1; 32]), TopicId([2; 32]));
        let (i1, i2) = (MessageId([1; 32]), MessageId([2; 32]));
        let f = |publisher: &[u8], topic, id, payload: &[u8]| {
            SignedGossip {
                publisher: &(),
                topic,
                id,
                payload,
            }
            .signing_bytes(publisher)
        };
        let base = f(b"ab", &t1, &i1, b"c");
        assert!(base.starts_with(SignedGossip::<()>::DOMAIN));
        assert_ne!(base, f(b"a", &t1, &i1, b"bc"));
        assert_ne!(base, f(b"ab", &t2, &i1, b"c"));
        assert_ne!(base, f(b"ab", &t1, &i2, b"c"));
        assert_ne!(base, f(b"ab", &t1, &i1, b"d"));
        assert_eq!(base, f(b"ab", &t1, &i1, b"c"));
    }
}
