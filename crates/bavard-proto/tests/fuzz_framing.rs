//! Fuzz targets (stable Rust, proptest; see `bavard_tests::fuzz`) for bavard-proto's decoders:
//! the varint, the incremental [`FrameDecoder`] fed in chunks, the one-shot [`decode_one`], and
//! the protobuf decoding of every protocol's messages, on arbitrary bytes and on mutants of valid
//! frames. Each asserts: no panic; a typed error or a valid value; a frame never longer than the
//! limit; memory bounded by the limit, never by a claimed length; decoded messages re-encode to
//! what decodes to the same message.
//!
//! `BAVARD_FUZZ_CASES=1000000 cargo test --release -p bavard-proto --test fuzz_framing`

use bavard_proto::framing::{FrameDecoder, decode_message, decode_one, encode_frame};
use bavard_proto::kad::message::Peer;
use bavard_proto::kad::{Message, Record};
use bavard_proto::{admission, blobs, gossip, store, varint};
use bavard_tests::fuzz::{self, blob};
use bytes::BytesMut;
use proptest::prelude::*;

fn peer() -> impl Strategy<Value = Peer> {
    (
        blob(0..40),
        prop::collection::vec(blob(0..24), 0..3),
        -1i32..5,
    )
        .prop_map(|(id, addrs, connection)| Peer {
            id,
            addrs,
            connection,
        })
}

fn kad_message() -> impl Strategy<Value = Message> {
    let record = (
        blob(0..32),
        blob(0..64),
        ".{0,8}",
        blob(0..40),
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
        -1i32..7,
        blob(0..48),
        prop::option::of(record),
        prop::collection::vec(peer(), 0..4),
        prop::collection::vec(peer(), 0..3),
        any::<i32>(),
    )
        .prop_map(
            |(r#type, key, record, closer_peers, provider_peers, cluster_level_raw)| Message {
                r#type,
                cluster_level_raw,
                key,
                record,
                closer_peers,
                provider_peers,
            },
        )
}

/// One to three valid frames back to back.
fn valid_frames() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(kad_message(), 1..4)
        .prop_map(|msgs| msgs.iter().flat_map(encode_frame).collect())
}

/// Decodes `payload` as an `M`; if it decodes, its re-encoding decodes to the same message.
fn decodes_consistently<M: prost::Message + Default + PartialEq + std::fmt::Debug>(
    payload: &[u8],
) -> Result<bool, TestCaseError> {
    match decode_message::<M>(payload) {
        Ok(m) => {
            let again = decode_message::<M>(&m.encode_to_vec()).ok();
            prop_assert_eq!(again.as_ref(), Some(&m), "re-encoding round-trips");
            // prost never makes more of a message than its input held.
            prop_assert!(m.encoded_len() <= 10 * payload.len() + 16);
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Every protocol's messages from one payload: none may panic.
fn decode_every_message(payload: &[u8]) -> Result<(), TestCaseError> {
    decodes_consistently::<Message>(payload)?;
    decodes_consistently::<gossip::GossipMessage>(payload)?;
    decodes_consistently::<store::Request>(payload)?;
    decodes_consistently::<store::Response>(payload)?;
    decodes_consistently::<admission::Request>(payload)?;
    decodes_consistently::<admission::Response>(payload)?;
    decodes_consistently::<blobs::Request>(payload)?;
    decodes_consistently::<blobs::Response>(payload)?;
    Ok(())
}

proptest! {
    #![proptest_config(fuzz::config(4.0))]

    #[test]
    fn fuzz_varint_reads_at_most_ten_bytes_and_accepts_only_canonical_encodings(
        input in fuzz::inputs(any::<u64>().prop_map(|v| { let mut o = Vec::new(); varint::encode(v, &mut o); o }), 16),
    ) {
        let bytes = input.bytes();
        match varint::decode(bytes) {
            Ok(Some((value, len))) => {
                prop_assert!(len <= varint::MAX_LEN && len <= bytes.len());
                let mut again = Vec::new();
                varint::encode(value, &mut again);
                prop_assert_eq!(&again[..], &bytes[..len]);
            }
            Ok(None) => prop_assert!(bytes.len() < varint::MAX_LEN, "an incomplete varint is shorter than ten bytes"),
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    #[test]
    fn fuzz_frame_decoder_in_chunks_agrees_with_one_shot_and_stays_within_its_limit(
        input in fuzz::inputs(valid_frames(), 600),
        max_size in prop_oneof![Just(bavard_proto::DEFAULT_MAX_MESSAGE_SIZE), 0usize..2048],
        chunk in 1usize..64,
    ) {
        let bytes = input.bytes();
        // Fed in pieces.
        let mut decoder = FrameDecoder::new(max_size);
        let mut buf = BytesMut::new();
        let mut chunked = Vec::new();
        let mut failed = false;
        'feed: for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        prop_assert!(frame.len() <= max_size);
                        chunked.push(frame);
                    }
                    Ok(None) => {
                        // Waiting for the rest of a frame reserves at most the limit: never
                        // what a hostile prefix claims.
                        prop_assert!(
                            buf.capacity() <= 2 * (max_size + varint::MAX_LEN + bytes.len()) + 64,
                            "capacity {} for a limit of {max_size}", buf.capacity()
                        );
                        break;
                    }
                    Err(_) => {
                        failed = true;
                        break 'feed;
                    }
                }
            }
        }
        // All at once.
        let mut whole = BytesMut::from(bytes);
        let mut at_once = Vec::new();
        let mut whole_failed = false;
        loop {
            match decoder.decode(&mut whole) {
                Ok(Some(frame)) => at_once.push(frame),
                Ok(None) => break,
                Err(_) => { whole_failed = true; break; }
            }
        }
        prop_assert_eq!(&chunked, &at_once, "chunking does not change the frames");
        prop_assert_eq!(failed, whole_failed);
        if input.must_decode() && max_size == bavard_proto::DEFAULT_MAX_MESSAGE_SIZE {
            prop_assert!(!failed && whole.is_empty(), "valid frames decode completely");
        }
        for frame in &chunked {
            decode_every_message(frame)?;
            if input.must_decode() {
                prop_assert!(decode_message::<Message>(frame).is_ok());
            }
        }
    }

    #[test]
    fn fuzz_decode_one_consumes_exactly_one_frame_within_the_limit(
        input in fuzz::inputs(valid_frames(), 600),
        max_size in prop_oneof![Just(bavard_proto::DEFAULT_MAX_MESSAGE_SIZE), 0usize..2048],
    ) {
        let bytes = input.bytes();
        match decode_one::<Message>(bytes, max_size) {
            Ok((msg, rest)) => {
                let consumed = bytes.len() - rest.len();
                prop_assert!(consumed <= varint::MAX_LEN + max_size);
                prop_assert_eq!(decode_one::<Message>(&encode_frame(&msg), usize::MAX).ok().map(|(m, _)| m), Some(msg));
            }
            Err(_) => prop_assert!(!(input.must_decode() && max_size == bavard_proto::DEFAULT_MAX_MESSAGE_SIZE)),
        }
    }

    #[test]
    fn fuzz_every_protocol_message_decodes_to_a_value_or_a_typed_error(
        input in fuzz::inputs(kad_message().prop_map(|m| prost::Message::encode_to_vec(&m)), 600),
    ) {
        decode_every_message(input.bytes())?;
        if input.must_decode() {
            prop_assert!(decode_message::<Message>(input.bytes()).is_ok());
        }
    }
}

#[test]
fn fuzz_a_hostile_length_prefix_reserves_nothing_beyond_the_limit() {
    // The regression every mutant with a huge varint exercises, spelled out: a prefix claiming
    // 2^40 bytes is refused at once, having reserved nothing for the body.
    let mut wire = Vec::new();
    varint::encode(1 << 40, &mut wire);
    let mut buf = BytesMut::from(&wire[..]);
    let before = buf.capacity();
    assert!(FrameDecoder::new(1024).decode(&mut buf).is_err());
    assert_eq!(buf.capacity(), before);
}
