//! Fuzz targets (stable Rust, proptest; see `bavard_tests::fuzz`) for every decoder of the node:
//! Kademlia requests and responses, the replica protocol (and the replica core answering what
//! decodes), gossip frames, admission certificates, revocation lists and join tokens, signed DHT
//! records, and the async frame reader driven over in-memory byte streams. Each is fed arbitrary
//! bytes, valid encodings and mutants of valid encodings, and asserts: no panic; a typed error or
//! a valid value; valid values round-trip; signed objects never verify once altered; and the
//! frame reader's memory follows the bytes that arrived, never a claimed length.
//!
//! `BAVARD_FUZZ_CASES=1000000 cargo test --release -p bavard-node --test fuzz_wire`

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bavard_gossip::broadcast::{
    IHaveEntry, Message as BMessage, MessageBody, MessageId, Priority, TopicId,
};
use bavard_gossip::membership::{MemberState, Message as MMessage, Update};
use bavard_node::admission::{Authority, Certificate, JoinToken, Revocations};
use bavard_node::gossip::wire::Frame;
use bavard_node::kad::records::{self, Kind, SignedRecord};
use bavard_node::kad::{KadPeer, Request, Response, WireRecord};
use bavard_node::replica::wire as rwire;
use bavard_proto::{gossip as gpb, kad as kpb, store as spb};
use bavard_replica::{LeafSet, StoreOutcome, SyncConfig};
use bavard_store::{DigestEntry, MemoryStore, Record, RecordStore as _, Value, Version};
use bavard_tests::fuzz::{self, blob};
use libp2p::identity::{Keypair, ed25519};
use libp2p::{Multiaddr, PeerId};
use proptest::prelude::*;
use prost::Message as _;

/// A few fixed identities (seeded: the targets replay exactly).
fn keys() -> &'static [Keypair] {
    static KEYS: OnceLock<Vec<Keypair>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (1u8..=6)
            .map(|i| Keypair::ed25519_from_bytes([i; 32]).unwrap())
            .collect()
    })
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    (0..keys().len()).prop_map(|i| keys()[i].public().to_peer_id())
}

fn multiaddr() -> impl Strategy<Value = Multiaddr> {
    (0usize..4, any::<u16>()).prop_map(|(kind, port)| {
        let text = match kind {
            0 => format!("/ip4/127.0.0.1/tcp/{port}"),
            1 => format!("/ip6/::1/udp/{port}/quic-v1"),
            2 => format!("/memory/{port}"),
            _ => format!("/dns4/node.invalid/tcp/{port}"),
        };
        text.parse().unwrap()
    })
}

fn kad_peer() -> impl Strategy<Value = KadPeer> {
    (
        peer_id(),
        prop::collection::vec(multiaddr(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(id, addrs, connected)| KadPeer {
            id,
            addrs,
            connected,
        })
}

const MAX_KEY: usize = 80;
const MAX_PEERS: usize = 20;

fn wire_record() -> impl Strategy<Value = WireRecord> {
    (
        blob(1..MAX_KEY),
        blob(0..64),
        prop::option::of(peer_id()),
        any::<u32>(),
    )
        .prop_map(|(key, value, publisher, ttl_secs)| WireRecord {
            key,
            value,
            publisher,
            ttl_secs,
        })
}

/// A valid request from the sender `keys()[0]`.
fn kad_request() -> impl Strategy<Value = Request> {
    let sender = keys()[0].public().to_peer_id();
    let key = blob(1..MAX_KEY).boxed();
    prop_oneof![
        key.clone().prop_map(|key| Request::FindNode { key }),
        key.clone().prop_map(|key| Request::GetValue { key }),
        key.clone().prop_map(|key| Request::GetProviders { key }),
        wire_record().prop_map(|record| Request::PutValue { record }),
        (key, kad_peer()).prop_map(move |(key, mut provider)| {
            provider.id = sender;
            Request::AddProvider { key, provider }
        }),
        Just(Request::Ping),
    ]
}

fn peers() -> impl Strategy<Value = Vec<KadPeer>> {
    prop::collection::vec(kad_peer(), 0..4)
}

fn kad_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        peers().prop_map(|closer| Response::FindNode { closer }),
        (prop::option::of(wire_record()), peers())
            .prop_map(|(record, closer)| Response::GetValue { record, closer }),
        (peers(), peers())
            .prop_map(|(providers, closer)| Response::GetProviders { providers, closer }),
        wire_record().prop_map(|record| Response::PutValue { record }),
        Just(Response::Ping),
    ]
}

/// The request a response answers, by type.
fn request_for(ty: i32) -> Request {
    use kpb::message::MessageType as T;
    let key = b"k".to_vec();
    match T::try_from(ty) {
        Ok(T::FindNode) => Request::FindNode { key },
        Ok(T::GetValue) => Request::GetValue { key },
        Ok(T::GetProviders) => Request::GetProviders { key },
        Ok(T::PutValue) => Request::PutValue {
            record: WireRecord {
                key,
                value: Vec::new(),
                publisher: None,
                ttl_secs: 0,
            },
        },
        _ => Request::Ping,
    }
}

fn version() -> impl Strategy<Value = Version> {
    (any::<u64>(), blob(0..40)).prop_map(|(hlc, writer)| Version { hlc, writer })
}

fn record() -> impl Strategy<Value = Record> {
    (
        blob(1..24),
        prop_oneof![
            blob(0..48).prop_map(Value::Data),
            (1u64..u64::MAX).prop_map(|deleted_at_ms| Value::Tombstone { deleted_at_ms }),
        ],
        prop::option::of(blob(1..40)),
        prop::option::of(1u64..u64::MAX),
        version(),
    )
        .prop_map(|(key, value, publisher, expires_at_ms, version)| Record {
            key,
            value,
            publisher,
            expires_at_ms,
            version,
        })
}

fn replica_request() -> impl Strategy<Value = bavard_replica::Request<PeerId>> {
    use bavard_replica::Request as R;
    prop_oneof![
        (
            prop::collection::vec(record(), 0..4),
            prop::option::of(peer_id())
        )
            .prop_map(|(records, hint_for)| R::Store { records, hint_for }),
        prop::collection::vec(blob(0..24), 0..6).prop_map(|keys| R::Fetch { keys }),
        (
            prop::collection::vec(any::<u16>(), 0..8),
            prop_oneof![
                Just(vec![0u64; 256]),
                prop::collection::vec(any::<u64>(), 0..260)
            ]
        )
            .prop_map(|(leaves, hashes)| R::Tree {
                leaves: leaves.into_iter().collect::<LeafSet>(),
                hashes
            }),
        prop::collection::vec((any::<u16>(), any::<u64>()), 0..8)
            .prop_map(|hashes| R::Leaves { hashes }),
        (
            prop::collection::btree_set(any::<u16>(), 0..8),
            prop::option::of(blob(1..24))
        )
            .prop_map(|(leaves, after)| R::Entries {
                leaves: leaves.into_iter().collect(),
                after
            }),
    ]
}

fn replica_response() -> impl Strategy<Value = bavard_replica::Response> {
    use bavard_replica::Response as R;
    let outcome = prop_oneof![
        Just(StoreOutcome::Stored),
        Just(StoreOutcome::Unchanged),
        version().prop_map(|current| StoreOutcome::Stale { current }),
        ".{0,20}".prop_map(StoreOutcome::Rejected),
    ];
    prop_oneof![
        prop::collection::vec(outcome, 0..4).prop_map(|results| R::Store { results }),
        (
            prop::collection::vec(record(), 0..4),
            0usize..u32::MAX as usize
        )
            .prop_map(|(records, covered)| R::Fetch { records, covered }),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|differing| R::Tree { differing }),
        prop::collection::vec(any::<u16>(), 0..8).prop_map(|differing| R::Leaves { differing }),
        (
            prop::collection::vec(
                (blob(0..24), version()).prop_map(|(key, version)| DigestEntry { key, version }),
                0..4
            ),
            any::<bool>()
        )
            .prop_map(|(entries, more)| R::Entries { entries, more }),
    ]
}

fn update() -> impl Strategy<Value = Update<PeerId>> {
    (
        peer_id(),
        any::<u64>(),
        prop_oneof![
            Just(MemberState::Alive),
            Just(MemberState::Suspect),
            Just(MemberState::Dead),
            Just(MemberState::Left)
        ],
        blob(0..64),
        blob(0..80),
        peer_id(),
    )
        .prop_map(
            |(member, incarnation, state, meta, signature, from)| Update {
                member,
                incarnation,
                state,
                meta,
                signature,
                from,
            },
        )
}

fn gossip_frame() -> impl Strategy<Value = Frame> {
    let ups = || prop::collection::vec(update(), 0..3);
    let membership = prop_oneof![
        (any::<u64>(), ups()).prop_map(|(seq, piggyback)| MMessage::Ping { seq, piggyback }),
        (any::<u64>(), ups()).prop_map(|(seq, piggyback)| MMessage::Ack { seq, piggyback }),
        (any::<u64>(), peer_id(), ups()).prop_map(|(seq, target, piggyback)| MMessage::PingReq {
            seq,
            target,
            piggyback
        }),
        any::<u64>().prop_map(|seq| MMessage::Nack { seq }),
        ups().prop_map(|piggyback| MMessage::Gossip { piggyback }),
        (any::<bool>(), any::<bool>(), ups()).prop_map(|(join, reply, states)| {
            MMessage::PushPull {
                join,
                reply,
                states,
            }
        }),
    ];
    let id = any::<[u8; 32]>().prop_map(MessageId);
    let body = prop_oneof![
        Just(MessageBody::Join),
        (peer_id(), any::<u16>()).prop_map(|(peer, ttl)| MessageBody::ForwardJoin { peer, ttl }),
        prop_oneof![Just(Priority::High), Just(Priority::Low)]
            .prop_map(|priority| MessageBody::Neighbor { priority }),
        any::<bool>().prop_map(|accepted| MessageBody::NeighborReply { accepted }),
        any::<bool>().prop_map(|alive| MessageBody::Disconnect { alive }),
        (
            peer_id(),
            any::<u16>(),
            prop::collection::vec(peer_id(), 0..4)
        )
            .prop_map(|(origin, ttl, peers)| MessageBody::Shuffle { origin, ttl, peers }),
        prop::collection::vec(peer_id(), 0..4)
            .prop_map(|peers| MessageBody::ShuffleReply { peers }),
        (
            id.clone(),
            any::<u16>(),
            peer_id(),
            blob(0..64),
            blob(0..80)
        )
            .prop_map(
                |(id, hops, publisher, payload, signature)| MessageBody::Gossip {
                    id,
                    hops,
                    publisher,
                    payload,
                    signature
                }
            ),
        prop::collection::vec(
            (id.clone(), any::<u16>()).prop_map(|(id, hops)| IHaveEntry { id, hops }),
            0..4
        )
        .prop_map(|entries| MessageBody::IHave { entries }),
        prop::option::of(id).prop_map(|id| MessageBody::Graft { id }),
        Just(MessageBody::Prune),
    ];
    let broadcast = (any::<[u8; 32]>(), body).prop_map(|(t, body)| BMessage {
        topic: TopicId(t),
        body,
    });
    prop_oneof![
        membership.prop_map(Frame::Membership),
        broadcast.prop_map(Frame::Broadcast),
    ]
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    #[test]
    fn fuzz_kademlia_requests_parse_to_a_valid_request_or_a_typed_error(
        input in fuzz::inputs(kad_request().prop_map(|r| r.to_pb().encode_to_vec()), 400),
    ) {
        let sender = keys()[0].public().to_peer_id();
        let Ok(msg) = kpb::Message::decode(input.bytes()) else {
            prop_assert!(!input.must_decode());
            return Ok(());
        };
        match Request::from_pb(msg, &sender, MAX_KEY) {
            Ok(request) => {
                match &request {
                    Request::FindNode { key } | Request::GetValue { key } | Request::GetProviders { key } => {
                        prop_assert!((1..=MAX_KEY).contains(&key.len()));
                    }
                    Request::PutValue { record } => prop_assert!((1..=MAX_KEY).contains(&record.key.len())),
                    Request::AddProvider { key, provider } => {
                        prop_assert!((1..=MAX_KEY).contains(&key.len()));
                        prop_assert_eq!(provider.id, sender, "only the sender may announce itself");
                    }
                    Request::Ping => {}
                }
                prop_assert_eq!(Request::from_pb(request.to_pb(), &sender, MAX_KEY).ok(), Some(request));
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_kademlia_responses_keep_at_most_max_peers_and_round_trip(
        input in fuzz::inputs(kad_response().prop_map(|r| r.to_pb(b"k").encode_to_vec()), 400),
    ) {
        let Ok(msg) = kpb::Message::decode(input.bytes()) else {
            prop_assert!(!input.must_decode());
            return Ok(());
        };
        let request = request_for(msg.r#type);
        match Response::from_pb(msg, &request, MAX_PEERS) {
            Ok(response) => {
                match &response {
                    Response::FindNode { closer } | Response::GetValue { closer, .. } => {
                        prop_assert!(closer.len() <= MAX_PEERS)
                    }
                    Response::GetProviders { providers, closer } => {
                        prop_assert!(providers.len() <= MAX_PEERS && closer.len() <= MAX_PEERS)
                    }
                    Response::PutValue { .. } | Response::Ping => {}
                }
                prop_assert_eq!(Response::from_pb(response.to_pb(b"k"), &request, MAX_PEERS).ok(), Some(response));
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_replica_requests_decode_round_trip_and_are_answered_without_panic(
        input in fuzz::inputs(replica_request().prop_map(|r| spb::Request { kind: Some(rwire::request_to_pb(r)) }.encode_to_vec()), 400),
    ) {
        let Ok(spb::Request { kind: Some(kind) }) = spb::Request::decode(input.bytes()) else {
            prop_assert!(!input.must_decode());
            return Ok(());
        };
        match rwire::request_from_pb(kind) {
            Ok(request) => {
                let again = rwire::request_from_pb(rwire::request_to_pb(request.clone()));
                prop_assert_eq!(again.ok(), Some(request.clone()));
                if !matches!(request, bavard_replica::Request::Store { .. }) {
                    // What the replica server does next: the core answers, or refuses typed.
                    let _ = bavard_replica::answer(request, replica_store(), &SyncConfig::default(), 1_000);
                }
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_replica_responses_decode_and_round_trip(
        input in fuzz::inputs(replica_response().prop_map(|r| spb::Response { kind: Some(rwire::response_to_pb(r)) }.encode_to_vec()), 400),
    ) {
        let Ok(spb::Response { kind: Some(kind) }) = spb::Response::decode(input.bytes()) else {
            prop_assert!(!input.must_decode());
            return Ok(());
        };
        match rwire::response_from_pb(kind) {
            Ok(response) => {
                let again = rwire::response_from_pb(rwire::response_to_pb(response.clone()));
                prop_assert_eq!(again.ok(), Some(response));
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_gossip_frames_decode_to_a_frame_or_a_typed_error_and_round_trip(
        input in fuzz::inputs(gossip_frame().prop_map(|f| f.to_pb().encode_to_vec()), 400),
    ) {
        let Ok(msg) = gpb::GossipMessage::decode(input.bytes()) else {
            prop_assert!(!input.must_decode());
            return Ok(());
        };
        match Frame::try_from(msg) {
            Ok(frame) => {
                prop_assert_eq!(Frame::try_from(frame.to_pb()).ok(), Some(frame));
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }
}

/// A store with a few records, for the replica core to answer from.
fn replica_store() -> &'static MemoryStore {
    static STORE: OnceLock<MemoryStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = MemoryStore::new(bavard_store::StoreConfig::new(vec![0u8]));
        for i in 0u8..16 {
            let r = Record::new(
                vec![i],
                vec![i; 8],
                Version {
                    hlc: 1 + u64::from(i),
                    writer: vec![1],
                },
            );
            store.put(r, 0).unwrap();
        }
        store
    })
}

/// The cluster authority of the admission targets, and what it signed.
struct Signed {
    authority: Authority,
    cert: Vec<u8>,
    revocations: Vec<u8>,
    token: JoinToken,
    record: SignedRecord,
}

fn signed() -> &'static Signed {
    static SIGNED: OnceLock<Signed> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let authority = Authority::from_secret(&[9u8; 32]).unwrap();
        let member = keys()[1].public().to_peer_id();
        let revoked = keys()[2..]
            .iter()
            .map(|k| k.public().to_peer_id())
            .collect();
        let owner = ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes([7u8; 32]).unwrap());
        Signed {
            cert: authority.certify(member, 5_000).encode(),
            revocations: authority.revocations(3, revoked).encode(),
            token: JoinToken {
                authority: authority.public(),
                admin: keys()[0].public().to_peer_id(),
                addrs: vec![
                    "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                    "/memory/9".parse().unwrap(),
                ],
                secret: [5; 16],
                not_after_ms: 77,
            },
            record: SignedRecord::sign(&owner, b"salt", 42, b"a signed value".to_vec()),
            authority,
        }
    })
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    #[test]
    fn fuzz_certificates_decode_canonically_and_never_verify_once_altered(
        input in fuzz::inputs(Just(signed().cert.clone()), 300),
    ) {
        let s = signed();
        match Certificate::decode(input.bytes()) {
            Ok(cert) => {
                prop_assert_eq!(&cert.encode(), input.bytes(), "the encoding is canonical");
                if cert.verify(&s.authority.public(), &cert.peer, 0).is_ok() {
                    prop_assert_eq!(input.bytes(), &s.cert[..], "an altered certificate verified");
                }
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_revocation_lists_verify_only_as_signed(
        input in fuzz::inputs(Just(signed().revocations.clone()), 300),
    ) {
        let s = signed();
        match Revocations::decode_verified(input.bytes(), &s.authority.public()) {
            Ok(list) => {
                prop_assert!(input.bytes().is_empty() || input.bytes() == &s.revocations[..],
                    "an altered revocation list verified");
                prop_assert_eq!(&list.encode(), input.bytes());
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_join_tokens_decode_to_a_token_or_a_typed_error(
        text in prop_oneof![
            ".{0,80}",
            // The token's bytes mutated, re-wrapped in its text form.
            fuzz::mutants(Just(token_bytes(&signed().token))).prop_map(|b| wrap_token(&b)),
            // The text itself mutated.
            fuzz::mutants(Just(signed().token.encode().into_bytes()))
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
    ) {
        if let Ok(token) = JoinToken::decode(&text) {
            prop_assert!(token.addrs.len() <= 4);
            prop_assert_eq!(JoinToken::decode(&token.encode()), Ok(token));
        }
        prop_assert_eq!(JoinToken::decode(&signed().token.encode()), Ok(signed().token.clone()));
    }

    #[test]
    fn fuzz_signed_dht_records_decode_canonically_and_never_validate_once_altered(
        input in fuzz::inputs(Just(signed().record.encode()), 300),
        key in prop_oneof![
            3 => Just(signed().record.key()),
            1 => blob(0..48),
            1 => blob(0..40).prop_map(|b| [records::PK_PREFIX, &b].concat()),
            1 => blob(0..40).prop_map(|b| [records::SIGNED_PREFIX, &b].concat()),
        ],
        accept_unvalidated in any::<bool>(),
    ) {
        let s = signed();
        match SignedRecord::decode(input.bytes()) {
            Ok(r) => prop_assert_eq!(&r.encode(), input.bytes(), "the encoding is canonical"),
            Err(_) => prop_assert!(!input.must_decode()),
        }
        match records::validate(&key, input.bytes(), accept_unvalidated, 16 * 1024) {
            Ok(Kind::Signed(r)) => {
                prop_assert_eq!(input.bytes(), &s.record.encode()[..], "an altered record validated");
                prop_assert_eq!(r, s.record.clone());
            }
            Ok(Kind::PublicKey) => prop_assert!(key.starts_with(records::PK_PREFIX)),
            Ok(Kind::Opaque) => prop_assert!(accept_unvalidated),
            Err(_) => prop_assert!(!(input.must_decode() && key == s.record.key())),
        }
    }
}

/// The bytes inside a join token's text form.
fn token_bytes(token: &JoinToken) -> Vec<u8> {
    use base64::Engine as _;
    let text = token.encode();
    let body = text.strip_prefix("bavard-join-1.").unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .unwrap()
}

fn wrap_token(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "bavard-join-1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// An in-memory byte stream that hands out at most `chunk` bytes per read and remembers the
/// largest buffer a reader offered it: what the reader had allocated before the bytes came.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
    largest_buffer: usize,
}

impl futures::AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        self.largest_buffer = self.largest_buffer.max(buf.len());
        let n = buf.len().min(self.chunk).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    #[test]
    fn fuzz_the_async_frame_reader_follows_the_bytes_that_arrived(
        input in fuzz::inputs(
            prop::collection::vec(kad_request(), 1..3).prop_map(|rs| rs.iter().flat_map(|r| r.to_pb().encode_length_delimited_to_vec()).collect()),
            300,
        ),
        chunk in 1usize..64,
        max in prop_oneof![Just(128 * 1024), 0usize..512],
    ) {
        let bytes = input.bytes().to_vec();
        let total = bytes.len();
        let mut stream = Trickle { data: bytes, at: 0, chunk, largest_buffer: 0 };
        let frames = run(async {
            let mut frames = Vec::new();
            loop {
                // Every await bounded, although an in-memory stream never blocks.
                let read = bavard_node::wire::read_message::<kpb::Message, _>(&mut stream, max);
                match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
                    Ok(Ok(Some(m))) => frames.push(m),
                    Ok(Ok(None)) => break Ok(frames),
                    Ok(Err(e)) => break Err(e.to_string()),
                    Err(_) => break Err("timed out".into()),
                }
            }
        });
        prop_assert!(
            stream.largest_buffer <= 2 * total + 4096 + 64,
            "the reader offered a buffer of {} bytes for a stream of {total}", stream.largest_buffer
        );
        match frames {
            Ok(frames) => {
                for m in &frames {
                    prop_assert!(m.encoded_len() <= 10 * max + 16);
                }
                if input.must_decode() && max == 128 * 1024 {
                    prop_assert!(!frames.is_empty());
                }
            }
            Err(e) => {
                prop_assert!(!(input.must_decode() && max == 128 * 1024), "{}", e);
                prop_assert!(e != "timed out");
            }
        }
    }
}

#[test]
fn fuzz_a_claimed_length_allocates_nothing_before_the_bytes_arrive() {
    // Regression: read_frame used to allocate the whole announced length (up to the limit, e.g.
    // 4 MiB on /bavard/admit/1, which any stranger may open) before reading any of it.
    let mut prefix = Vec::new();
    prost::encoding::encode_varint(4 << 20, &mut prefix);
    prefix.extend_from_slice(b"only a few bytes");
    let mut stream = Trickle {
        data: prefix,
        at: 0,
        chunk: 4096,
        largest_buffer: 0,
    };
    let result = run(bavard_node::wire::read_frame(&mut stream, 4 << 20));
    assert!(result.is_err(), "a truncated frame is an error");
    assert!(
        stream.largest_buffer <= 64 * 1024,
        "the reader offered {} bytes for 16 that came",
        stream.largest_buffer
    );
}
