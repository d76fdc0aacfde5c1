//! Membership messages, as plain Rust values; the node converts them to protobuf at the edge.
//!
//! Probes, acks, ping-reqs, nacks and gossip are small, datagram-like messages kept under
//! `max_packet_size` (1400 bytes by default) by the piggyback byte budget. Push-pull carries the
//! whole view (about 100 bytes per member) and is meant for a reliable stream, as in memberlist.

use super::member::MemberState;

/// Bytes budgeted for one peer id whatever `P` is: a libp2p `PeerId` (an identity multihash of an
/// ed25519 key) is 38 bytes, plus its length prefix.
pub const ID_LEN_ESTIMATE: usize = 40;

/// One membership claim: "`member` is `state` at `incarnation`", as asserted by `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<P> {
    /// The member the claim is about.
    pub member: P,
    /// The member's incarnation the claim refers to.
    pub incarnation: u64,
    /// The claimed state.
    pub state: MemberState,
    /// The member's metadata; only meaningful (and only sent) with [`MemberState::Alive`].
    pub meta: Vec<u8>,
    /// The member's own signature of an `Alive` or `Left` claim (see
    /// [`Authenticator`](super::Authenticator)), made once by the member and relayed unchanged
    /// by everyone else; empty for `Suspect` and `Dead` (ignored if present) and with
    /// [`NoAuth`](crate::NoAuth).
    pub signature: Vec<u8>,
    /// Who asserted the claim: the member itself for `Alive` and `Left` (anything else is
    /// ignored), the suspecting member for `Suspect` (so that independent confirmations can be
    /// counted, Lifeguard §4.2), the member that declared it for `Dead`.
    pub from: P,
}

impl<P> Update<P> {
    /// Whether the claim is one only the member itself makes (and signs): `Alive` or `Left`.
    pub(crate) fn is_self_claim(&self) -> bool {
        matches!(self.state, MemberState::Alive | MemberState::Left)
    }

    /// Estimated size on the wire: two ids, a varint incarnation, the state, the metadata, the
    /// signature (if any) and protobuf framing.
    pub fn encoded_len(&self) -> usize {
        let signature = if self.signature.is_empty() {
            0
        } else {
            1 + varint_len(self.signature.len() as u64) + self.signature.len()
        };
        2 * ID_LEN_ESTIMATE + varint_len(self.incarnation) + 2 + self.meta.len() + 8 + signature
    }
}

/// A message of the membership protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<P> {
    /// Direct probe (SWIM's *ping*); answered by an [`Message::Ack`] with the same `seq`.
    Ping {
        /// Sequence number chosen by the sender.
        seq: u64,
        /// Piggybacked membership updates.
        piggyback: Vec<Update<P>>,
    },
    /// Answer to a ping; also forwarded by a ping-req relay to the original requester.
    Ack {
        /// The `seq` of the ping (or ping-req) being answered.
        seq: u64,
        /// Piggybacked membership updates.
        piggyback: Vec<Update<P>>,
    },
    /// Indirect probe request (SWIM's *ping-req*): "ping `target` for me".
    PingReq {
        /// Sequence number of the requester's probe, echoed in the forwarded ack or the nack.
        seq: u64,
        /// The member to probe.
        target: P,
        /// Piggybacked membership updates.
        piggyback: Vec<Update<P>>,
    },
    /// Sent by a ping-req relay when the target did not answer it in time (Lifeguard §4.1): the
    /// requester learns that the relay itself is fine, so its own failure is not a local problem.
    Nack {
        /// The `seq` of the ping-req.
        seq: u64,
    },
    /// Piggyback-only message sent every `gossip_interval` to `gossip_nodes` members.
    Gossip {
        /// The updates.
        piggyback: Vec<Update<P>>,
    },
    /// Full-state exchange (anti-entropy); a request is answered with the receiver's own state.
    PushPull {
        /// The sender is joining the cluster through the receiver.
        join: bool,
        /// This is the answer to a push-pull request (and must not be answered).
        reply: bool,
        /// The sender's whole view, itself included.
        states: Vec<Update<P>>,
    },
}

impl<P> Message<P> {
    /// Estimated size of the message once encoded, for byte budgets and simulators.
    pub fn encoded_len_estimate(&self) -> usize {
        let updates = |u: &[Update<P>]| u.iter().map(|u| u.encoded_len() + 2).sum::<usize>();
        match self {
            Message::Ping { seq, piggyback } | Message::Ack { seq, piggyback } => {
                HEADER_LEN + varint_len(*seq) + updates(piggyback)
            }
            Message::PingReq { seq, piggyback, .. } => {
                HEADER_LEN + varint_len(*seq) + ID_LEN_ESTIMATE + updates(piggyback)
            }
            Message::Nack { seq } => HEADER_LEN + varint_len(*seq),
            Message::Gossip { piggyback } => HEADER_LEN + updates(piggyback),
            Message::PushPull { states, .. } => HEADER_LEN + 4 + updates(states),
        }
    }

    /// The updates carried by the message (piggyback or full state).
    pub fn updates(&self) -> &[Update<P>] {
        match self {
            Message::Ping { piggyback, .. }
            | Message::Ack { piggyback, .. }
            | Message::PingReq { piggyback, .. }
            | Message::Gossip { piggyback } => piggyback,
            Message::PushPull { states, .. } => states,
            Message::Nack { .. } => &[],
        }
    }
}

/// Message tag, length prefix and framing.
pub(crate) const HEADER_LEN: usize = 8;

pub(crate) fn varint_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).max(1).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_length_matches_protobuf() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn message_estimate_grows_with_piggyback() {
        let u = Update {
            member: 1u64,
            incarnation: 3,
            state: MemberState::Alive,
            meta: vec![0; 30],
            signature: vec![],
            from: 1,
        };
        let empty: Message<u64> = Message::Ping {
            seq: 1,
            piggyback: vec![],
        };
        let full = Message::Ping {
            seq: 1,
            piggyback: vec![u.clone(), u.clone()],
        };
        assert_eq!(
            full.encoded_len_estimate(),
            empty.encoded_len_estimate() + 2 * (u.encoded_len() + 2)
        );
    }

    #[test]
    fn a_signature_counts_in_the_size_estimate() {
        let unsigned = Update {
            member: 1u64,
            incarnation: 3,
            state: MemberState::Alive,
            meta: vec![],
            signature: vec![],
            from: 1,
        };
        let signed = Update {
            signature: vec![0; 64],
            ..unsigned.clone()
        };
        assert_eq!(signed.encoded_len(), unsigned.encoded_len() + 66);
    }
}
