//! Conversion between the `bavard.gossip` protobuf frames and the `bavard-gossip` domain messages.
//!
//! Decoding is `TryFrom` for [`Frame`] (and plain functions for the parts, as both sides of those
//! conversions are foreign types): every malformed field (a peer id that is not a multihash, an unknown or
//! unspecified enum value, a message or topic id that is not 32 bytes, a hop count over `u16`, a
//! signature over [`MAX_SIGNATURE_LEN`], a frame without a body) is a [`WireError`], never a
//! panic. The sender of a frame is not part of it: the transport passes the authenticated remote
//! peer to the state machines.
//!
//! Signatures (a member's on its own `Alive`/`Left` updates, a publisher's on its topic messages)
//! are carried as opaque bytes, absent meaning empty; checking them is the state machines' job,
//! through their authenticators. A topic message's publisher is required: it names whose
//! signature to check.

use bavard_gossip::broadcast::{
    IHaveEntry, Message as BMessage, MessageBody, MessageId, Priority, TopicId,
};
use bavard_gossip::membership::{MemberState, Message as MMessage, Update};
use bavard_proto::gossip as pb;
use libp2p::PeerId;

/// A frame of `/bavard/gossip/1`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A SWIM membership message.
    Membership(MMessage<PeerId>),
    /// A topic broadcast message.
    Broadcast(BMessage<PeerId>),
}

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A oneof body was absent.
    #[error("{0} has no body")]
    MissingBody(&'static str),
    /// A peer id field is not a valid libp2p peer id.
    #[error("field {0} is not a valid peer id")]
    BadPeerId(&'static str),
    /// An enum field holds an unknown or unspecified value.
    #[error("field {field} holds the invalid value {value}")]
    BadEnum {
        /// The field.
        field: &'static str,
        /// The raw value.
        value: i32,
    },
    /// A fixed-length id has the wrong length.
    #[error("field {field} is {len} bytes, expected 32")]
    BadIdLength {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A hop count or ttl does not fit 16 bits.
    #[error("field {field} = {value} exceeds 65535")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: u32,
    },
    /// A signature is longer than [`MAX_SIGNATURE_LEN`].
    #[error("field {field} is a signature of {len} bytes, over the limit of {max}")]
    SignatureTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Largest signature accepted in a frame: an ed25519 signature is 64 bytes, so 256 leaves room
/// for other schemes while bounding what a member entry or a cached payload may hold.
pub const MAX_SIGNATURE_LEN: usize = 256;

fn signature(bytes: Vec<u8>, field: &'static str) -> Result<Vec<u8>, WireError> {
    if bytes.len() > MAX_SIGNATURE_LEN {
        return Err(WireError::SignatureTooLong {
            field,
            len: bytes.len(),
            max: MAX_SIGNATURE_LEN,
        });
    }
    Ok(bytes)
}

fn peer(bytes: &[u8], field: &'static str) -> Result<PeerId, WireError> {
    PeerId::from_bytes(bytes).map_err(|_| WireError::BadPeerId(field))
}

fn id32(bytes: &[u8], field: &'static str) -> Result<[u8; 32], WireError> {
    bytes.try_into().map_err(|_| WireError::BadIdLength {
        field,
        len: bytes.len(),
    })
}

fn u16_of(value: u32, field: &'static str) -> Result<u16, WireError> {
    u16::try_from(value).map_err(|_| WireError::OutOfRange { field, value })
}

fn state_to_pb(s: MemberState) -> pb::MemberState {
    match s {
        MemberState::Alive => pb::MemberState::Alive,
        MemberState::Suspect => pb::MemberState::Suspect,
        MemberState::Dead => pb::MemberState::Dead,
        MemberState::Left => pb::MemberState::Left,
    }
}

fn state_from_pb(v: i32) -> Result<MemberState, WireError> {
    match pb::MemberState::try_from(v) {
        Ok(pb::MemberState::Alive) => Ok(MemberState::Alive),
        Ok(pb::MemberState::Suspect) => Ok(MemberState::Suspect),
        Ok(pb::MemberState::Dead) => Ok(MemberState::Dead),
        Ok(pb::MemberState::Left) => Ok(MemberState::Left),
        Ok(pb::MemberState::Unspecified) | Err(_) => Err(WireError::BadEnum {
            field: "update.state",
            value: v,
        }),
    }
}

fn update_to_pb(u: &Update<PeerId>) -> pb::Update {
    pb::Update {
        member: u.member.to_bytes(),
        incarnation: u.incarnation,
        state: state_to_pb(u.state) as i32,
        meta: u.meta.clone(),
        from: u.from.to_bytes(),
        signature: u.signature.clone(),
    }
}

fn updates_to_pb(us: &[Update<PeerId>]) -> Vec<pb::Update> {
    us.iter().map(update_to_pb).collect()
}

/// Decodes one membership update.
pub fn update_from_pb(u: pb::Update) -> Result<Update<PeerId>, WireError> {
    Ok(Update {
        member: peer(&u.member, "update.member")?,
        incarnation: u.incarnation,
        state: state_from_pb(u.state)?,
        meta: u.meta,
        signature: signature(u.signature, "update.signature")?,
        from: peer(&u.from, "update.from")?,
    })
}

fn updates_from_pb(us: Vec<pb::Update>) -> Result<Vec<Update<PeerId>>, WireError> {
    us.into_iter().map(update_from_pb).collect()
}

fn membership_to_pb(m: &MMessage<PeerId>) -> pb::MembershipMessage {
    use pb::membership_message::Kind;
    let kind = match m {
        MMessage::Ping { seq, piggyback } => Kind::Ping(pb::Ping {
            seq: *seq,
            piggyback: updates_to_pb(piggyback),
        }),
        MMessage::Ack { seq, piggyback } => Kind::Ack(pb::Ack {
            seq: *seq,
            piggyback: updates_to_pb(piggyback),
        }),
        MMessage::PingReq {
            seq,
            target,
            piggyback,
        } => Kind::PingReq(pb::PingReq {
            seq: *seq,
            target: target.to_bytes(),
            piggyback: updates_to_pb(piggyback),
        }),
        MMessage::Nack { seq } => Kind::Nack(pb::Nack { seq: *seq }),
        MMessage::Gossip { piggyback } => Kind::Gossip(pb::MembershipGossip {
            piggyback: updates_to_pb(piggyback),
        }),
        MMessage::PushPull {
            join,
            reply,
            states,
        } => Kind::PushPull(pb::PushPull {
            join: *join,
            reply: *reply,
            states: updates_to_pb(states),
        }),
    };
    pb::MembershipMessage { kind: Some(kind) }
}

/// Decodes a membership message.
pub fn membership_from_pb(m: pb::MembershipMessage) -> Result<MMessage<PeerId>, WireError> {
    {
        use pb::membership_message::Kind;
        Ok(match m.kind.ok_or(WireError::MissingBody("membership"))? {
            Kind::Ping(p) => MMessage::Ping {
                seq: p.seq,
                piggyback: updates_from_pb(p.piggyback)?,
            },
            Kind::Ack(p) => MMessage::Ack {
                seq: p.seq,
                piggyback: updates_from_pb(p.piggyback)?,
            },
            Kind::PingReq(p) => MMessage::PingReq {
                seq: p.seq,
                target: peer(&p.target, "ping_req.target")?,
                piggyback: updates_from_pb(p.piggyback)?,
            },
            Kind::Nack(n) => MMessage::Nack { seq: n.seq },
            Kind::Gossip(g) => MMessage::Gossip {
                piggyback: updates_from_pb(g.piggyback)?,
            },
            Kind::PushPull(p) => MMessage::PushPull {
                join: p.join,
                reply: p.reply,
                states: updates_from_pb(p.states)?,
            },
        })
    }
}

fn peers_to_pb(ps: &[PeerId]) -> Vec<Vec<u8>> {
    ps.iter().map(|p| p.to_bytes()).collect()
}

fn peers_from_pb(ps: Vec<Vec<u8>>, field: &'static str) -> Result<Vec<PeerId>, WireError> {
    ps.iter().map(|p| peer(p, field)).collect()
}

fn broadcast_to_pb(m: &BMessage<PeerId>) -> pb::BroadcastMessage {
    use pb::broadcast_message::Kind;
    let kind = match &m.body {
        MessageBody::Join => Kind::Join(pb::Join {}),
        MessageBody::ForwardJoin { peer, ttl } => Kind::ForwardJoin(pb::ForwardJoin {
            peer: peer.to_bytes(),
            ttl: u32::from(*ttl),
        }),
        MessageBody::Neighbor { priority } => Kind::Neighbor(pb::Neighbor {
            priority: match priority {
                Priority::High => pb::Priority::High,
                Priority::Low => pb::Priority::Low,
            } as i32,
        }),
        MessageBody::NeighborReply { accepted } => Kind::NeighborReply(pb::NeighborReply {
            accepted: *accepted,
        }),
        MessageBody::Disconnect { alive } => Kind::Disconnect(pb::Disconnect { alive: *alive }),
        MessageBody::Shuffle { origin, ttl, peers } => Kind::Shuffle(pb::Shuffle {
            origin: origin.to_bytes(),
            ttl: u32::from(*ttl),
            peers: peers_to_pb(peers),
        }),
        MessageBody::ShuffleReply { peers } => Kind::ShuffleReply(pb::ShuffleReply {
            peers: peers_to_pb(peers),
        }),
        MessageBody::Gossip {
            id,
            hops,
            publisher,
            payload,
            signature,
        } => Kind::Gossip(pb::PlumtreeGossip {
            id: id.as_bytes().to_vec(),
            hops: u32::from(*hops),
            payload: payload.clone(),
            publisher: publisher.to_bytes(),
            signature: signature.clone(),
        }),
        MessageBody::IHave { entries } => Kind::Ihave(pb::IHave {
            entries: entries
                .iter()
                .map(|e| pb::IHaveEntry {
                    id: e.id.as_bytes().to_vec(),
                    hops: u32::from(e.hops),
                })
                .collect(),
        }),
        MessageBody::Graft { id } => Kind::Graft(pb::Graft {
            id: id.map(|i| i.as_bytes().to_vec()).unwrap_or_default(),
        }),
        MessageBody::Prune => Kind::Prune(pb::Prune {}),
    };
    pb::BroadcastMessage {
        topic: m.topic.as_bytes().to_vec(),
        kind: Some(kind),
    }
}

/// Decodes a broadcast message.
pub fn broadcast_from_pb(m: pb::BroadcastMessage) -> Result<BMessage<PeerId>, WireError> {
    {
        use pb::broadcast_message::Kind;
        let topic = TopicId(id32(&m.topic, "broadcast.topic")?);
        let body = match m.kind.ok_or(WireError::MissingBody("broadcast"))? {
            Kind::Join(_) => MessageBody::Join,
            Kind::ForwardJoin(f) => MessageBody::ForwardJoin {
                peer: peer(&f.peer, "forward_join.peer")?,
                ttl: u16_of(f.ttl, "forward_join.ttl")?,
            },
            Kind::Neighbor(n) => MessageBody::Neighbor {
                priority: match pb::Priority::try_from(n.priority) {
                    Ok(pb::Priority::High) => Priority::High,
                    Ok(pb::Priority::Low) => Priority::Low,
                    Ok(pb::Priority::Unspecified) | Err(_) => {
                        return Err(WireError::BadEnum {
                            field: "neighbor.priority",
                            value: n.priority,
                        });
                    }
                },
            },
            Kind::NeighborReply(r) => MessageBody::NeighborReply {
                accepted: r.accepted,
            },
            Kind::Disconnect(d) => MessageBody::Disconnect { alive: d.alive },
            Kind::Shuffle(s) => MessageBody::Shuffle {
                origin: peer(&s.origin, "shuffle.origin")?,
                ttl: u16_of(s.ttl, "shuffle.ttl")?,
                peers: peers_from_pb(s.peers, "shuffle.peers")?,
            },
            Kind::ShuffleReply(r) => MessageBody::ShuffleReply {
                peers: peers_from_pb(r.peers, "shuffle_reply.peers")?,
            },
            Kind::Gossip(g) => MessageBody::Gossip {
                id: MessageId(id32(&g.id, "gossip.id")?),
                hops: u16_of(g.hops, "gossip.hops")?,
                publisher: peer(&g.publisher, "gossip.publisher")?,
                payload: g.payload,
                signature: signature(g.signature, "gossip.signature")?,
            },
            Kind::Ihave(h) => MessageBody::IHave {
                entries: h
                    .entries
                    .into_iter()
                    .map(|e| {
                        Ok(IHaveEntry {
                            id: MessageId(id32(&e.id, "ihave.id")?),
                            hops: u16_of(e.hops, "ihave.hops")?,
                        })
                    })
                    .collect::<Result<_, WireError>>()?,
            },
            Kind::Graft(g) => MessageBody::Graft {
                id: if g.id.is_empty() {
                    None
                } else {
                    Some(MessageId(id32(&g.id, "graft.id")?))
                },
            },
            Kind::Prune(_) => MessageBody::Prune,
        };
        Ok(BMessage { topic, body })
    }
}

impl Frame {
    /// The protobuf form of the frame.
    pub fn to_pb(&self) -> pb::GossipMessage {
        use pb::gossip_message::Body;
        let body = match self {
            Frame::Membership(m) => Body::Membership(membership_to_pb(m)),
            Frame::Broadcast(m) => Body::Broadcast(broadcast_to_pb(m)),
        };
        pb::GossipMessage { body: Some(body) }
    }
}

impl TryFrom<pb::GossipMessage> for Frame {
    type Error = WireError;
    fn try_from(m: pb::GossipMessage) -> Result<Self, WireError> {
        use pb::gossip_message::Body;
        Ok(
            match m.body.ok_or(WireError::MissingBody("gossip message"))? {
                Body::Membership(m) => Frame::Membership(membership_from_pb(m)?),
                Body::Broadcast(m) => Frame::Broadcast(broadcast_from_pb(m)?),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let pb = f.to_pb();
        let bytes = prost::Message::encode_to_vec(&pb);
        let back: pb::GossipMessage = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(Frame::try_from(back).unwrap(), f);
    }

    fn update(p: PeerId, state: MemberState) -> Update<PeerId> {
        Update {
            member: p,
            incarnation: 7,
            state,
            meta: b"meta".to_vec(),
            signature: if matches!(state, MemberState::Alive | MemberState::Left) {
                vec![0x5a; 64]
            } else {
                vec![]
            },
            from: p,
        }
    }

    #[test]
    fn every_membership_message_roundtrips() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let ups = vec![
            update(a, MemberState::Alive),
            update(b, MemberState::Suspect),
            update(a, MemberState::Dead),
            update(b, MemberState::Left),
        ];
        for m in [
            MMessage::Ping {
                seq: 1,
                piggyback: ups.clone(),
            },
            MMessage::Ack {
                seq: 2,
                piggyback: vec![],
            },
            MMessage::PingReq {
                seq: 3,
                target: b,
                piggyback: ups.clone(),
            },
            MMessage::Nack { seq: 4 },
            MMessage::Gossip {
                piggyback: ups.clone(),
            },
            MMessage::PushPull {
                join: true,
                reply: false,
                states: ups,
            },
        ] {
            roundtrip(Frame::Membership(m));
        }
    }

    #[test]
    fn every_broadcast_message_roundtrips() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let topic = TopicId([9; 32]);
        let id = MessageId([3; 32]);
        for body in [
            MessageBody::Join,
            MessageBody::ForwardJoin { peer: a, ttl: 6 },
            MessageBody::Neighbor {
                priority: Priority::High,
            },
            MessageBody::Neighbor {
                priority: Priority::Low,
            },
            MessageBody::NeighborReply { accepted: true },
            MessageBody::Disconnect { alive: false },
            MessageBody::Shuffle {
                origin: a,
                ttl: 3,
                peers: vec![a, b],
            },
            MessageBody::ShuffleReply { peers: vec![b] },
            MessageBody::Gossip {
                id,
                hops: 2,
                publisher: b,
                payload: b"hello".to_vec(),
                signature: vec![0xa5; 64],
            },
            MessageBody::Gossip {
                id,
                hops: 0,
                publisher: a,
                payload: vec![],
                signature: vec![],
            },
            MessageBody::IHave {
                entries: vec![IHaveEntry { id, hops: 1 }],
            },
            MessageBody::Graft { id: Some(id) },
            MessageBody::Graft { id: None },
            MessageBody::Prune,
        ] {
            roundtrip(Frame::Broadcast(BMessage { topic, body }));
        }
    }

    #[test]
    fn malformed_fields_are_typed_errors() {
        let good = PeerId::random().to_bytes();
        let bad_peer = pb::Update {
            member: vec![1, 2, 3],
            incarnation: 0,
            state: 1,
            meta: vec![],
            from: good.clone(),
            signature: vec![],
        };
        assert_eq!(
            update_from_pb(bad_peer),
            Err(WireError::BadPeerId("update.member"))
        );
        for state in [0, 5, -1] {
            let u = pb::Update {
                member: good.clone(),
                incarnation: 0,
                state,
                meta: vec![],
                from: good.clone(),
                signature: vec![],
            };
            assert_eq!(
                update_from_pb(u),
                Err(WireError::BadEnum {
                    field: "update.state",
                    value: state
                })
            );
        }
        let short_topic = pb::BroadcastMessage {
            topic: vec![0; 31],
            kind: Some(pb::broadcast_message::Kind::Prune(pb::Prune {})),
        };
        assert_eq!(
            broadcast_from_pb(short_topic),
            Err(WireError::BadIdLength {
                field: "broadcast.topic",
                len: 31
            })
        );
        let long_id = pb::BroadcastMessage {
            topic: vec![0; 32],
            kind: Some(pb::broadcast_message::Kind::Gossip(pb::PlumtreeGossip {
                id: vec![0; 33],
                hops: 0,
                payload: vec![],
                publisher: good.clone(),
                signature: vec![],
            })),
        };
        assert!(matches!(
            broadcast_from_pb(long_id),
            Err(WireError::BadIdLength { len: 33, .. })
        ));
        let big_ttl = pb::BroadcastMessage {
            topic: vec![0; 32],
            kind: Some(pb::broadcast_message::Kind::ForwardJoin(pb::ForwardJoin {
                peer: good,
                ttl: 70_000,
            })),
        };
        assert!(matches!(
            broadcast_from_pb(big_ttl),
            Err(WireError::OutOfRange { value: 70_000, .. })
        ));
        let priority = pb::BroadcastMessage {
            topic: vec![0; 32],
            kind: Some(pb::broadcast_message::Kind::Neighbor(pb::Neighbor {
                priority: 0,
            })),
        };
        assert!(matches!(
            broadcast_from_pb(priority),
            Err(WireError::BadEnum { .. })
        ));
        assert_eq!(
            Frame::try_from(pb::GossipMessage { body: None }),
            Err(WireError::MissingBody("gossip message"))
        );
        let empty = pb::GossipMessage {
            body: Some(pb::gossip_message::Body::Membership(
                pb::MembershipMessage { kind: None },
            )),
        };
        assert_eq!(
            Frame::try_from(empty),
            Err(WireError::MissingBody("membership"))
        );
    }

    fn pb_gossip(publisher: Vec<u8>, signature: Vec<u8>) -> pb::BroadcastMessage {
        pb::BroadcastMessage {
            topic: vec![0; 32],
            kind: Some(pb::broadcast_message::Kind::Gossip(pb::PlumtreeGossip {
                id: vec![1; 32],
                hops: 0,
                payload: b"x".to_vec(),
                publisher,
                signature,
            })),
        }
    }

    #[test]
    fn signatures_of_any_length_up_to_the_limit_roundtrip_and_longer_ones_are_refused() {
        let p = PeerId::random();
        for len in [0, 64, MAX_SIGNATURE_LEN] {
            let decoded = broadcast_from_pb(pb_gossip(p.to_bytes(), vec![7; len])).unwrap();
            assert!(matches!(
                decoded.body,
                MessageBody::Gossip { publisher, ref signature, .. }
                    if publisher == p && signature.len() == len
            ));
            let mut u = update(p, MemberState::Alive);
            u.signature = vec![7; len];
            assert_eq!(update_from_pb(update_to_pb(&u)), Ok(u));
        }
        let too_long = MAX_SIGNATURE_LEN + 1;
        assert_eq!(
            broadcast_from_pb(pb_gossip(p.to_bytes(), vec![7; too_long])),
            Err(WireError::SignatureTooLong {
                field: "gossip.signature",
                len: too_long,
                max: MAX_SIGNATURE_LEN
            })
        );
        let mut u = update_to_pb(&update(p, MemberState::Left));
        u.signature = vec![7; too_long];
        assert_eq!(
            update_from_pb(u),
            Err(WireError::SignatureTooLong {
                field: "update.signature",
                len: too_long,
                max: MAX_SIGNATURE_LEN
            })
        );
    }

    #[test]
    fn a_topic_message_without_a_valid_publisher_is_refused() {
        for publisher in [vec![], vec![1, 2, 3]] {
            assert_eq!(
                broadcast_from_pb(pb_gossip(publisher, vec![])),
                Err(WireError::BadPeerId("gossip.publisher"))
            );
        }
    }

    #[test]
    fn frames_without_the_new_fields_decode_with_empty_signatures() {
        // What a node from before signatures sends: field 6 of Update absent.
        let p = PeerId::random();
        let old = pb::Update {
            member: p.to_bytes(),
            incarnation: 3,
            state: pb::MemberState::Alive as i32,
            meta: b"m".to_vec(),
            from: p.to_bytes(),
            signature: vec![],
        };
        // proto3 leaves an empty field off the wire: these are the bytes an old node sends.
        let bytes = prost::Message::encode_to_vec(&old);
        let back: pb::Update = prost::Message::decode(bytes.as_slice()).unwrap();
        assert_eq!(update_from_pb(back).unwrap().signature, Vec::<u8>::new());
    }
}
