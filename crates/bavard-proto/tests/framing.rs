//! The framing and the Kademlia wire types, fed good and hostile input.

use bavard_proto::framing::{
    DEFAULT_MAX_MESSAGE_SIZE, FrameDecoder, FrameError, decode_message, decode_one, encode_frame,
};
use bavard_proto::kad::message::{ConnectionType, MessageType, Peer};
use bavard_proto::kad::{Message, Record};
use bavard_proto::varint;
use bytes::BytesMut;
use proptest::prelude::*;

fn find_node(key: &[u8]) -> Message {
    Message {
        r#type: MessageType::FindNode as i32,
        key: key.to_vec(),
        ..Message::default()
    }
}

fn prefix(len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(len, &mut out);
    out
}

#[test]
fn wire_layout_matches_the_libp2p_kademlia_spec() {
    let msg = Message {
        r#type: MessageType::GetValue as i32,
        cluster_level_raw: 1,
        key: b"k".to_vec(),
        record: Some(Record {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            time_received: "t".into(),
            publisher: b"p".to_vec(),
            ttl: 1,
        }),
        closer_peers: vec![Peer {
            id: b"i".to_vec(),
            addrs: vec![b"a".to_vec()],
            connection: ConnectionType::CannotConnect as i32,
        }],
        provider_peers: vec![Peer::default()],
    };
    let record = [
        0x0a, 1, b'k', // key = 1
        0x12, 1, b'v', // value = 2
        0x2a, 1, b't', // timeReceived = 5
        0xd2, 0x29, 1, b'p', // publisher = 666 (bytes)
        0xc8, 0x30, 1, // ttl = 777 (varint)
    ];
    let peer = [
        0x0a, 1, b'i', // id = 1
        0x12, 1, b'a', // addrs = 2
        0x18, 3, // connection = 3: CANNOT_CONNECT = 3
    ];
    let mut expected = vec![0x08, 1]; // type = 1: GET_VALUE = 1
    expected.extend([0x12, 1, b'k']); // key = 2
    expected.extend([0x1a, record.len() as u8]); // record = 3
    expected.extend(record);
    expected.extend([0x42, peer.len() as u8]); // closerPeers = 8
    expected.extend(peer);
    expected.extend([0x4a, 0]); // providerPeers = 9
    expected.extend([0x50, 1]); // clusterLevelRaw = 10

    let frame = encode_frame(&msg);

    assert_eq!(frame[0] as usize, expected.len());
    assert_eq!(&frame[1..], &expected[..]);
    assert_eq!(decode_message::<Message>(&expected).unwrap(), msg);
}

#[test]
fn enum_values_match_the_spec() {
    let types = [
        (MessageType::PutValue, 0, "PUT_VALUE"),
        (MessageType::GetValue, 1, "GET_VALUE"),
        (MessageType::AddProvider, 2, "ADD_PROVIDER"),
        (MessageType::GetProviders, 3, "GET_PROVIDERS"),
        (MessageType::FindNode, 4, "FIND_NODE"),
        (MessageType::Ping, 5, "PING"),
    ];
    for (ty, value, name) in types {
        assert_eq!((ty as i32, ty.as_str_name()), (value, name));
    }
    let connections = [
        (ConnectionType::NotConnected, 0),
        (ConnectionType::Connected, 1),
        (ConnectionType::CanConnect, 2),
        (ConnectionType::CannotConnect, 3),
    ];
    for (connection, value) in connections {
        assert_eq!(connection as i32, value);
    }
}

#[test]
fn a_frame_split_anywhere_decodes_once_complete() {
    let frame = encode_frame(&find_node(b"hello"));
    for split in 0..frame.len() {
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&frame[..split]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None, "split at {split}");
        assert_eq!(
            buf.len(),
            split,
            "an incomplete frame is left in the buffer"
        );
        buf.extend_from_slice(&frame[split..]);
        let payload = decoder.decode(&mut buf).unwrap().expect("complete frame");
        assert_eq!(
            decode_message::<Message>(&payload).unwrap(),
            find_node(b"hello")
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn several_frames_in_one_buffer_come_out_in_order() {
    let mut buf = BytesMut::new();
    for key in [&b"a"[..], b"", b"ccc"] {
        buf.extend_from_slice(&encode_frame(&find_node(key)));
    }
    buf.extend_from_slice(&[0x05, 0x08]); // the start of a fourth frame
    let mut decoder = FrameDecoder::default();

    let mut keys = Vec::new();
    while let Some(payload) = decoder.decode(&mut buf).unwrap() {
        keys.push(decode_message::<Message>(&payload).unwrap().key);
    }

    assert_eq!(keys, [b"a".to_vec(), vec![], b"ccc".to_vec()]);
    assert_eq!(&buf[..], [0x05, 0x08]);
}

#[test]
fn oversized_prefix_is_rejected_before_the_body_is_buffered() {
    let mut decoder = FrameDecoder::new(1024);
    let mut buf = BytesMut::from(&prefix(1 << 40)[..]);
    let capacity = buf.capacity();

    let err = decoder.decode(&mut buf).unwrap_err();

    assert!(matches!(err, FrameError::TooLarge { len, max: 1024 } if len == 1 << 40));
    assert_eq!(
        buf.capacity(),
        capacity,
        "nothing was reserved for the body"
    );
    assert_eq!(
        err.to_string(),
        "frame of 1099511627776 bytes exceeds the 1024-byte limit"
    );
}

#[test]
fn the_limit_is_inclusive() {
    let mut decoder = FrameDecoder::new(3);
    let mut buf = BytesMut::from(&[0x03, 1, 2, 3][..]);
    assert_eq!(&decoder.decode(&mut buf).unwrap().unwrap()[..], [1, 2, 3]);
    let mut buf = BytesMut::from(&[0x04][..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(FrameError::TooLarge { len: 4, max: 3 })
    ));
}

#[test]
fn default_decoder_uses_the_documented_limit() {
    assert_eq!(FrameDecoder::default().max_size, DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(DEFAULT_MAX_MESSAGE_SIZE, 128 * 1024);
}

#[test]
fn overlong_varint_prefix_is_rejected() {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(&[0xff; 11][..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(FrameError::VarintOverflow)
    ));
    assert_eq!(buf.len(), 11, "nothing is consumed on error");
    assert!(matches!(
        decode_one::<Message>(&[0x80; 12], usize::MAX),
        Err(FrameError::VarintOverflow)
    ));
}

#[test]
fn non_minimal_varint_prefix_is_rejected() {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(&[0x81, 0x00, 0x00][..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(FrameError::NonMinimalVarint)
    ));
}

#[test]
fn truncated_input_is_an_error_for_the_one_shot_decoder() {
    let frame = encode_frame(&find_node(b"truncated"));
    for end in 0..frame.len() {
        assert!(
            matches!(
                decode_one::<Message>(&frame[..end], 1024),
                Err(FrameError::Truncated)
            ),
            "cut at {end}"
        );
    }
    // A prefix cut inside the varint, too.
    assert!(matches!(
        decode_one::<Message>(&[0x80, 0x80], 1024),
        Err(FrameError::Truncated)
    ));
}

#[test]
fn one_shot_decoder_returns_the_bytes_after_the_frame() {
    let mut input = encode_frame(&find_node(b"x"));
    input.extend_from_slice(b"rest");
    let (msg, rest) = decode_one::<Message>(&input, 1024).unwrap();
    assert_eq!(msg, find_node(b"x"));
    assert_eq!(rest, b"rest");
}

#[test]
fn one_shot_decoder_enforces_the_limit_even_when_the_bytes_are_there() {
    let frame = encode_frame(&find_node(&[7; 100]));
    assert!(matches!(
        decode_one::<Message>(&frame, 50),
        Err(FrameError::TooLarge { max: 50, .. })
    ));
}

#[test]
fn malformed_protobuf_is_a_typed_error() {
    // Field 1 announced as a varint, then the input ends.
    assert!(matches!(
        decode_message::<Message>(&[0x08]),
        Err(FrameError::Malformed(_))
    ));
    // Field 2 (bytes) announcing 5 bytes, only 1 present.
    assert!(matches!(
        decode_message::<Message>(&[0x12, 5, 0]),
        Err(FrameError::Malformed(_))
    ));
    // Wire type 7 does not exist.
    assert!(matches!(
        decode_message::<Message>(&[0x0f]),
        Err(FrameError::Malformed(_))
    ));
    // Field number 0 is invalid.
    assert!(matches!(
        decode_message::<Message>(&[0x00, 0x00]),
        Err(FrameError::Malformed(_))
    ));
    // The same through the one-shot decoder: a valid frame around a bad payload.
    assert!(matches!(
        decode_one::<Message>(&[0x03, 0xff, 0xff, 0xff], 1024),
        Err(FrameError::Malformed(_))
    ));
    // timeReceived is a proto3 string: invalid UTF-8 is malformed.
    let record = [0x2a, 1, 0xff];
    let mut msg = vec![0x1a, record.len() as u8];
    msg.extend(record);
    assert!(matches!(
        decode_message::<Message>(&msg),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn unknown_enum_values_decode_to_the_raw_integer() {
    // type = 42, and a closer peer with connection = 9: neither value exists.
    let bytes = [0x08, 42, 0x42, 2, 0x18, 9];
    let msg = decode_message::<Message>(&bytes).unwrap();

    assert_eq!(msg.r#type, 42);
    assert!(
        MessageType::try_from(msg.r#type).is_err(),
        "the node can reject it"
    );
    assert_eq!(msg.closer_peers[0].connection, 9);
    assert!(ConnectionType::try_from(msg.closer_peers[0].connection).is_err());
}

#[test]
fn unknown_fields_are_skipped() {
    // Field 99 (varint 5), then type = FIND_NODE.
    let bytes = [0x98, 0x06, 5, 0x08, 4];
    let msg = decode_message::<Message>(&bytes).unwrap();
    assert_eq!(msg.r#type(), MessageType::FindNode);
}

#[test]
fn empty_payload_is_the_default_message() {
    let (msg, rest) = decode_one::<Message>(&[0x00], 0).unwrap();
    assert_eq!(msg, Message::default());
    assert!(rest.is_empty());
}

fn arb_peer() -> impl Strategy<Value = Peer> {
    (
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..3),
        -1..5i32,
    )
        .prop_map(|(id, addrs, connection)| Peer {
            id,
            addrs,
            connection,
        })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let record = (
        proptest::collection::vec(any::<u8>(), 0..32),
        proptest::collection::vec(any::<u8>(), 0..300),
        "[a-z0-9:-]{0,20}",
        proptest::collection::vec(any::<u8>(), 0..40),
        any::<u32>(),
    )
        .prop_map(|(key, value, time_received, publisher, ttl)| Record {
            key,
            value,
            time_received,
            publisher,
            ttl,
        });
    (
        -1..7i32,
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::option::of(record),
        proptest::collection::vec(arb_peer(), 0..5),
        proptest::collection::vec(arb_peer(), 0..3),
    )
        .prop_map(
            |(r#type, cluster_level_raw, key, record, closer_peers, provider_peers)| Message {
                r#type,
                cluster_level_raw,
                key,
                record,
                closer_peers,
                provider_peers,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn messages_roundtrip_through_frames_fed_in_arbitrary_chunks(
        messages in proptest::collection::vec(arb_message(), 1..4),
        chunk in 1usize..64,
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(encode_frame).collect();
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(payload) = decoder.decode(&mut buf).unwrap() {
                decoded.push(decode_message::<Message>(&payload).unwrap());
            }
        }
        prop_assert_eq!(decoded, messages);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn one_shot_decoding_inverts_encode_frame(msg in arb_message()) {
        let frame = encode_frame(&msg);
        let (decoded, rest) = decode_one::<Message>(&frame, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        prop_assert_eq!(decoded, msg);
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        max in 0usize..512,
    ) {
        let mut decoder = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&bytes[..]);
        // Each successful call consumes at least one byte, so this ends.
        while let Ok(Some(payload)) = decoder.decode(&mut buf) {
            prop_assert!(payload.len() <= max);
            let _ = decode_message::<Message>(&payload);
        }
        let _ = decode_one::<Message>(&bytes, max);
        let _ = decode_message::<Message>(&bytes);
    }
}
