//! The `/ipfs/kad/1.0.0` messages as domain types.
//!
//! The prost structs from `bavard-proto` never leave this module: inbound messages are converted
//! with `TryFrom`, where every malformed field (an unknown message type, a peer id that does not
//! parse, a missing record) becomes a [`ProtocolError`] and the offending stream is dropped.
//! Unparseable multiaddrs inside an otherwise valid peer are skipped, as rust-libp2p does, so one
//! bad address does not discard a useful peer.

use bavard_proto::kad as pb;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// The protocol name of the libp2p Kademlia DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");

/// Why an inbound message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The message type is not one the spec defines.
    #[error("unknown message type {0}")]
    UnknownType(i32),
    /// A peer entry carried bytes that are not a peer id.
    #[error("invalid peer id in message")]
    InvalidPeerId,
    /// A PUT_VALUE carried no record.
    #[error("PUT_VALUE without a record")]
    MissingRecord,
    /// A PUT_VALUE record's key differs from the message key.
    #[error("record key does not match the message key")]
    KeyMismatch,
    /// ADD_PROVIDER must announce the sender itself.
    #[error("ADD_PROVIDER for a peer other than the sender")]
    ForeignProvider,
    /// The response does not answer the request that was sent.
    #[error("unexpected response type {0}")]
    UnexpectedResponse(i32),
    /// A key was empty or over the size limit.
    #[error("key of {len} bytes is outside 1..={max}")]
    BadKey {
        /// The key's length.
        len: usize,
        /// The largest key accepted.
        max: usize,
    },
}

/// A peer as the protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KadPeer {
    /// The peer's id.
    pub id: PeerId,
    /// Its addresses (possibly empty).
    pub addrs: Vec<Multiaddr>,
    /// Whether the sender is connected to it.
    pub connected: bool,
}

/// A value record on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    /// The record key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The original publisher, when known.
    pub publisher: Option<PeerId>,
    /// Remaining lifetime in seconds (rust-libp2p's extension; 0 means unspecified).
    pub ttl_secs: u32,
}

/// A request a peer sends us (or we send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The k closest peers to a key.
    FindNode {
        /// The target key (a peer id's bytes or any key).
        key: Vec<u8>,
    },
    /// The value stored under a key, and closer peers.
    GetValue {
        /// The record key.
        key: Vec<u8>,
    },
    /// Store a record.
    PutValue {
        /// The record.
        record: WireRecord,
    },
    /// Providers of a key, and closer peers.
    GetProviders {
        /// The key.
        key: Vec<u8>,
    },
    /// The sender provides a key (no response).
    AddProvider {
        /// The key.
        key: Vec<u8>,
        /// The provider: must be the sender.
        provider: KadPeer,
    },
    /// Deprecated liveness check; answered, never sent.
    Ping,
}

/// A response to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Answer to FIND_NODE.
    FindNode {
        /// Closer peers.
        closer: Vec<KadPeer>,
    },
    /// Answer to GET_VALUE.
    GetValue {
        /// The record, when the peer has it.
        record: Option<WireRecord>,
        /// Closer peers.
        closer: Vec<KadPeer>,
    },
    /// Answer to PUT_VALUE: the stored record is echoed.
    PutValue {
        /// The record as stored.
        record: WireRecord,
    },
    /// Answer to GET_PROVIDERS.
    GetProviders {
        /// Providers known for the key.
        providers: Vec<KadPeer>,
        /// Closer peers.
        closer: Vec<KadPeer>,
    },
    /// Answer to PING.
    Ping,
}

fn peer_from_pb(p: pb::message::Peer) -> Result<KadPeer, ProtocolError> {
    let id = PeerId::from_bytes(&p.id).map_err(|_| ProtocolError::InvalidPeerId)?;
    let addrs = p
        .addrs
        .into_iter()
        .filter_map(|a| Multiaddr::try_from(a).ok())
        .collect();
    Ok(KadPeer {
        id,
        addrs,
        connected: p.connection == pb::message::ConnectionType::Connected as i32,
    })
}

fn peer_to_pb(p: &KadPeer) -> pb::message::Peer {
    pb::message::Peer {
        id: p.id.to_bytes(),
        addrs: p.addrs.iter().map(|a| a.to_vec()).collect(),
        connection: if p.connected {
            pb::message::ConnectionType::Connected as i32
        } else {
            pb::message::ConnectionType::CanConnect as i32
        },
    }
}

/// Peers in a response; entries with bad ids are dropped rather than failing the response, so a
/// single garbage entry from a buggy peer does not waste the round trip.
fn peers_from_pb(list: Vec<pb::message::Peer>, max: usize) -> Vec<KadPeer> {
    list.into_iter()
        .take(max)
        .filter_map(|p| peer_from_pb(p).ok())
        .collect()
}

fn record_from_pb(r: pb::Record) -> WireRecord {
    WireRecord {
        key: r.key,
        value: r.value,
        publisher: PeerId::from_bytes(&r.publisher).ok(),
        ttl_secs: r.ttl,
    }
}

fn record_to_pb(r: &WireRecord) -> pb::Record {
    pb::Record {
        key: r.key.clone(),
        value: r.value.clone(),
        time_received: String::new(),
        publisher: r.publisher.map(|p| p.to_bytes()).unwrap_or_default(),
        ttl: r.ttl_secs,
    }
}

fn message_type(raw: i32) -> Result<pb::message::MessageType, ProtocolError> {
    pb::message::MessageType::try_from(raw).map_err(|_| ProtocolError::UnknownType(raw))
}

fn check_key(key: &[u8], max: usize) -> Result<(), ProtocolError> {
    if key.is_empty() || key.len() > max {
        return Err(ProtocolError::BadKey {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

impl Request {
    /// Parses an inbound request from `sender`, enforcing the key size limit.
    pub fn from_pb(
        msg: pb::Message,
        sender: &PeerId,
        max_key: usize,
    ) -> Result<Self, ProtocolError> {
        use pb::message::MessageType as T;
        Ok(match message_type(msg.r#type)? {
            T::Ping => Request::Ping,
            T::FindNode => {
                check_key(&msg.key, max_key)?;
                Request::FindNode { key: msg.key }
            }
            T::GetValue => {
                check_key(&msg.key, max_key)?;
                Request::GetValue { key: msg.key }
            }
            T::GetProviders => {
                check_key(&msg.key, max_key)?;
                Request::GetProviders { key: msg.key }
            }
            T::PutValue => {
                let record = msg.record.ok_or(ProtocolError::MissingRecord)?;
                if record.key != msg.key {
                    return Err(ProtocolError::KeyMismatch);
                }
                check_key(&record.key, max_key)?;
                Request::PutValue {
                    record: record_from_pb(record),
                }
            }
            T::AddProvider => {
                check_key(&msg.key, max_key)?;
                // The spec says the provider peers carry the sender; anything else is a forgery.
                let provider = msg
                    .provider_peers
                    .into_iter()
                    .filter_map(|p| peer_from_pb(p).ok())
                    .find(|p| &p.id == sender)
                    .ok_or(ProtocolError::ForeignProvider)?;
                Request::AddProvider {
                    key: msg.key,
                    provider,
                }
            }
        })
    }

    /// The wire message for this request.
    pub fn to_pb(&self) -> pb::Message {
        use pb::message::MessageType as T;
        let mut msg = pb::Message::default();
        match self {
            Request::Ping => msg.r#type = T::Ping as i32,
            Request::FindNode { key } => {
                msg.r#type = T::FindNode as i32;
                msg.key = key.clone();
            }
            Request::GetValue { key } => {
                msg.r#type = T::GetValue as i32;
                msg.key = key.clone();
            }
            Request::GetProviders { key } => {
                msg.r#type = T::GetProviders as i32;
                msg.key = key.clone();
            }
            Request::PutValue { record } => {
                msg.r#type = T::PutValue as i32;
                msg.key = record.key.clone();
                msg.record = Some(record_to_pb(record));
            }
            Request::AddProvider { key, provider } => {
                msg.r#type = T::AddProvider as i32;
                msg.key = key.clone();
                msg.provider_peers = vec![peer_to_pb(provider)];
            }
        }
        msg
    }

    /// Whether the protocol expects a response to this request.
    pub fn expects_response(&self) -> bool {
        !matches!(self, Request::AddProvider { .. })
    }
}

impl Response {
    /// Parses the response to `request`; at most `max_peers` peers are kept from each list.
    pub fn from_pb(
        msg: pb::Message,
        request: &Request,
        max_peers: usize,
    ) -> Result<Self, ProtocolError> {
        use pb::message::MessageType as T;
        let ty = message_type(msg.r#type)?;
        let expected = match request {
            Request::Ping => T::Ping,
            Request::FindNode { .. } => T::FindNode,
            Request::GetValue { .. } => T::GetValue,
            Request::GetProviders { .. } => T::GetProviders,
            Request::PutValue { .. } => T::PutValue,
            Request::AddProvider { .. } => T::AddProvider,
        };
        if ty != expected {
            return Err(ProtocolError::UnexpectedResponse(msg.r#type));
        }
        Ok(match ty {
            T::Ping => Response::Ping,
            T::FindNode => Response::FindNode {
                closer: peers_from_pb(msg.closer_peers, max_peers),
            },
            T::GetValue => Response::GetValue {
                record: msg.record.map(record_from_pb),
                closer: peers_from_pb(msg.closer_peers, max_peers),
            },
            T::GetProviders => Response::GetProviders {
                providers: peers_from_pb(msg.provider_peers, max_peers),
                closer: peers_from_pb(msg.closer_peers, max_peers),
            },
            T::PutValue => Response::PutValue {
                record: msg
                    .record
                    .map(record_from_pb)
                    .ok_or(ProtocolError::MissingRecord)?,
            },
            T::AddProvider => return Err(ProtocolError::UnexpectedResponse(msg.r#type)),
        })
    }

    /// The wire message for this response to a request for `key`.
    pub fn to_pb(&self, key: &[u8]) -> pb::Message {
        use pb::message::MessageType as T;
        let mut msg = pb::Message {
            key: key.to_vec(),
            ..Default::default()
        };
        match self {
            Response::Ping => msg.r#type = T::Ping as i32,
            Response::FindNode { closer } => {
                msg.r#type = T::FindNode as i32;
                msg.closer_peers = closer.iter().map(peer_to_pb).collect();
            }
            Response::GetValue { record, closer } => {
                msg.r#type = T::GetValue as i32;
                msg.record = record.as_ref().map(record_to_pb);
                msg.closer_peers = closer.iter().map(peer_to_pb).collect();
            }
            Response::GetProviders { providers, closer } => {
                msg.r#type = T::GetProviders as i32;
                msg.provider_peers = providers.iter().map(peer_to_pb).collect();
                msg.closer_peers = closer.iter().map(peer_to_pb).collect();
            }
            Response::PutValue { record } => {
                msg.r#type = T::PutValue as i32;
                msg.record = Some(record_to_pb(record));
            }
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn every_request_roundtrips_through_the_wire_type() {
        let me = peer();
        let requests = vec![
            Request::FindNode { key: b"k".to_vec() },
            Request::GetValue { key: b"k".to_vec() },
            Request::GetProviders { key: b"k".to_vec() },
            Request::PutValue {
                record: WireRecord {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    publisher: Some(me),
                    ttl_secs: 60,
                },
            },
            Request::AddProvider {
                key: b"k".to_vec(),
                provider: KadPeer {
                    id: me,
                    addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
                    connected: true,
                },
            },
            Request::Ping,
        ];
        for r in requests {
            assert_eq!(Request::from_pb(r.to_pb(), &me, 1024).unwrap(), r);
        }
    }

    #[test]
    fn unknown_message_type_is_a_typed_error() {
        let msg = pb::Message {
            r#type: 42,
            ..Default::default()
        };
        assert!(matches!(
            Request::from_pb(msg, &peer(), 1024),
            Err(ProtocolError::UnknownType(42))
        ));
    }

    #[test]
    fn put_value_without_record_or_with_mismatched_key_is_rejected() {
        let mut msg = Request::PutValue {
            record: WireRecord {
                key: b"a".to_vec(),
                value: vec![],
                publisher: None,
                ttl_secs: 0,
            },
        }
        .to_pb();
        msg.key = b"b".to_vec();
        assert!(matches!(
            Request::from_pb(msg.clone(), &peer(), 1024),
            Err(ProtocolError::KeyMismatch)
        ));
        msg.record = None;
        assert!(matches!(
            Request::from_pb(msg, &peer(), 1024),
            Err(ProtocolError::MissingRecord)
        ));
    }

    #[test]
    fn empty_and_oversized_keys_are_rejected() {
        for key in [vec![], vec![0u8; 2000]] {
            let msg = Request::FindNode { key }.to_pb();
            assert!(matches!(
                Request::from_pb(msg, &peer(), 1024),
                Err(ProtocolError::BadKey { .. })
            ));
        }
    }

    #[test]
    fn add_provider_for_someone_else_is_a_forgery() {
        let msg = Request::AddProvider {
            key: b"k".to_vec(),
            provider: KadPeer {
                id: peer(),
                addrs: vec![],
                connected: false,
            },
        }
        .to_pb();
        assert!(matches!(
            Request::from_pb(msg, &peer(), 1024),
            Err(ProtocolError::ForeignProvider)
        ));
    }

    #[test]
    fn response_of_the_wrong_type_is_rejected_and_bad_peers_are_skipped() {
        let req = Request::FindNode { key: b"k".to_vec() };
        let wrong = Response::Ping.to_pb(b"k");
        assert!(Response::from_pb(wrong, &req, 20).is_err());
        let mut msg = Response::FindNode { closer: vec![] }.to_pb(b"k");
        msg.closer_peers.push(pb::message::Peer {
            id: b"not a peer id".to_vec(),
            addrs: vec![],
            connection: 0,
        });
        msg.closer_peers.push(peer_to_pb(&KadPeer {
            id: peer(),
            addrs: vec![],
            connected: false,
        }));
        match Response::from_pb(msg, &req, 20).unwrap() {
            Response::FindNode { closer } => assert_eq!(closer.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }
}
