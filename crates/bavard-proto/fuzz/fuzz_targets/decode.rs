//! Fuzzes every decoding path of bavard-proto with arbitrary bytes: the varint, the
//! incremental frame decoder (fed in chunks whose size the input chooses), the one-shot
//! decoder and the Kademlia message decoder. None may panic, and every frame the
//! incremental decoder yields must respect its size limit.
#![no_main]

use bavard_proto::framing::{FrameDecoder, decode_message, decode_one};
use bavard_proto::kad::Message;
use bavard_proto::varint;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    // The first byte picks the limit and the chunk size, so both get explored.
    let max_size = usize::from(control) * 64;
    let chunk = usize::from(control % 16) + 1;

    if let Ok(Some((value, len))) = varint::decode(input) {
        assert!(len <= varint::MAX_LEN);
        let mut reencoded = Vec::new();
        varint::encode(value, &mut reencoded);
        assert_eq!(&reencoded[..], &input[..len], "accepted varints are canonical");
    }

    let _ = decode_one::<Message>(input, max_size);
    let _ = decode_message::<Message>(input);

    let mut decoder = FrameDecoder::new(max_size);
    let mut buf = BytesMut::new();
    'feed: for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max_size);
                    let _ = decode_message::<Message>(&frame);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
});
