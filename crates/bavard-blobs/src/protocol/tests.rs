use std::time::{Duration, UNIX_EPOCH};

use bavard_proto::FrameDecoder;
use bavard_proto::blobs as proto;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::encoding::{MemBlob, RangeEncoder, encode_size_proof};
use crate::ranges::BLOCK_SIZE;
use crate::store::{Store, StoreConfig};

fn hash() -> BlobHash {
    BlobHash::of(b"a blob")
}

/// Through the wire: framed, cut by bavard-proto's decoder, decoded.
fn request_round_trip(request: &Request) -> Request {
    let frame = request.to_frame();
    let mut buf = BytesMut::from(&frame[..]);
    let payload = FrameDecoder::default()
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    Request::decode(&payload, &Limits::default()).unwrap()
}

fn response_round_trip(response: &Response) -> Response {
    let frame = response.to_frame();
    let mut buf = BytesMut::from(&frame[..]);
    let payload = FrameDecoder::default()
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    Response::decode(&payload, &Limits::default()).unwrap()
}

fn decode_request(message: proto::Request) -> Result<Request, WireError> {
    Request::decode(&message.encode_to_vec(), &Limits::default())
}

fn decode_response(kind: proto::response::Kind) -> Result<Response, WireError> {
    let message = proto::Response { kind: Some(kind) };
    Response::decode(&message.encode_to_vec(), &Limits::default())
}

fn get(ranges: &[(u64, u64)]) -> proto::Request {
    proto::Request {
        hash: hash().as_bytes().to_vec(),
        kind: Some(proto::request::Kind::Get(proto::Get {
            ranges: ranges
                .iter()
                .map(|&(start, end)| proto::BlockRange { start, end })
                .collect(),
        })),
    }
}

#[test]
fn every_message_round_trips() {
    for request in [
        Request::Size { hash: hash() },
        Request::Have { hash: hash() },
        Request::Get {
            hash: hash(),
            ranges: [0..4, 10..11].into_iter().collect(),
        },
    ] {
        assert_eq!(request_round_trip(&request), request);
    }
    let size = 40 * BLOCK_SIZE + 3;
    for response in [
        Response::Header { size },
        Response::Data(Bytes::from(vec![7u8; 1000])),
        Response::Size {
            size,
            proof: Bytes::from_static(b"proof"),
        },
        Response::Have(HaveAnswer {
            size,
            blocks: BlockRanges::all(size),
            complete: true,
        }),
        Response::Have(HaveAnswer {
            size,
            blocks: [2..5, 30..41].into_iter().collect(),
            complete: false,
        }),
        Response::error(ErrorCode::NotAvailable, "block 3"),
    ] {
        assert_eq!(response_round_trip(&response), response);
    }
    // A partial have answer is only as long as its last block needs.
    let short = Response::Have(HaveAnswer {
        size,
        blocks: BlockRanges::from_range(0..3),
        complete: false,
    });
    let proto::Response {
        kind: Some(proto::response::Kind::Have(have)),
    } = proto::Response::from(&short)
    else {
        panic!("a have answer");
    };
    assert_eq!(have.bitfield, vec![0b111]);
}

#[test]
fn bad_requests_are_refused_with_what_is_wrong() {
    let mut short_hash = get(&[(0, 1)]);
    short_hash.hash.pop();
    assert_eq!(
        decode_request(short_hash),
        Err(WireError::Hash(ParseHashError::Length(31)))
    );
    let mut no_kind = get(&[(0, 1)]);
    no_kind.kind = None;
    assert_eq!(decode_request(no_kind), Err(WireError::NoKind));
    assert_eq!(decode_request(get(&[])), Err(WireError::EmptyGet));
    assert_eq!(
        decode_request(get(&[(5, 5)])),
        Err(WireError::EmptyRange { start: 5, end: 5 })
    );
    assert_eq!(
        decode_request(get(&[(9, 3)])),
        Err(WireError::EmptyRange { start: 9, end: 3 })
    );
    assert_eq!(
        decode_request(get(&[(4, 8), (0, 2)])),
        Err(WireError::UnsortedRanges)
    );
    assert_eq!(
        decode_request(get(&[(0, 4), (3, 6)])),
        Err(WireError::UnsortedRanges)
    );
    let many: Vec<(u64, u64)> = (0..257).map(|i| (2 * i, 2 * i + 1)).collect();
    assert_eq!(
        decode_request(get(&many)),
        Err(WireError::TooManyRanges {
            count: 257,
            max: 256
        })
    );
    // A range of 2^64 blocks costs nothing to refuse.
    assert_eq!(
        decode_request(get(&[(0, u64::MAX)])),
        Err(WireError::TooManyBlocks {
            count: u64::MAX,
            max: 4096
        })
    );
    assert!(matches!(
        Request::decode(b"\xff\xff\xff", &Limits::default()),
        Err(WireError::Malformed(_))
    ));
    let tight = Limits {
        max_message_len: 10,
        ..Limits::default()
    };
    assert_eq!(
        Request::decode(&get(&[(0, 1)]).encode_to_vec(), &tight),
        Err(WireError::TooLong { len: 40, max: 10 })
    );
}

#[test]
fn bad_responses_are_refused_with_what_is_wrong() {
    use proto::response::Kind;
    let long = vec![0u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        decode_response(Kind::Data(proto::Data {
            encoded: long.clone()
        })),
        Err(WireError::FrameTooLong {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    assert!(matches!(
        decode_response(Kind::Size(proto::Size {
            size: 1,
            proof: long
        })),
        Err(WireError::FrameTooLong { .. })
    ));
    assert_eq!(
        decode_response(Kind::Header(proto::Header { size: u64::MAX })),
        Err(WireError::SizeTooLarge {
            size: u64::MAX,
            max: 1 << 40
        })
    );
    let have = |size, complete, bitfield: Vec<u8>| {
        decode_response(Kind::Have(proto::Have {
            size,
            complete,
            bitfield,
        }))
    };
    assert_eq!(
        have(BLOCK_SIZE, true, vec![1]),
        Err(WireError::CompleteWithBitfield)
    );
    // 3 blocks: one byte, and bits 3..8 must be clear.
    let size = 3 * BLOCK_SIZE;
    assert!(have(size, false, vec![0b0000_0101]).is_ok());
    assert!(matches!(
        have(size, false, vec![0b0000_1000]),
        Err(WireError::BadBitfield { .. })
    ));
    assert!(matches!(
        have(size, false, vec![0, 0]),
        Err(WireError::BadBitfield { .. })
    ));
    assert!(matches!(
        have(1 << 40, false, vec![0xff; 64 * 1024 + 1]),
        Err(WireError::BadBitfield { .. })
    ));
    // A shorter bitfield covers a prefix.
    let Ok(Response::Have(prefix)) = have(1 << 30, false, vec![0xff]) else {
        panic!("a prefix bitfield is fine");
    };
    assert_eq!(prefix.blocks, BlockRanges::from_range(0..8));
    assert_eq!(
        decode_response(Kind::Error(proto::Error {
            code: 99,
            message: String::new()
        })),
        Err(WireError::UnknownErrorCode(99))
    );
    assert_eq!(
        decode_response(Kind::Error(proto::Error {
            code: 0,
            message: String::new()
        })),
        Err(WireError::UnknownErrorCode(0))
    );
    assert_eq!(
        decode_response(Kind::Error(proto::Error {
            code: 1,
            message: "x".repeat(300)
        })),
        Err(WireError::ErrorMessageTooLong { len: 300 })
    );
    assert_eq!(
        Response::decode(&[], &Limits::default()),
        Err(WireError::NoKind)
    );
}

#[test]
fn error_messages_are_cut_at_a_character_boundary() {
    let Response::Error { message, .. } = Response::error(ErrorCode::Busy, "é".repeat(200)) else {
        panic!("an error");
    };
    assert_eq!(message.len(), 256);
    let cut = Response::error(ErrorCode::Busy, "é".repeat(200));
    assert_eq!(response_round_trip(&cut), cut);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Request::decode(&bytes, &Limits::default());
        let _ = Response::decode(&bytes, &Limits::default());
    }

    #[test]
    fn decoded_gets_are_always_within_the_limits(
        ranges in prop::collection::vec((0u64..10_000, 0u64..200), 0..300),
    ) {
        let message = get(&ranges.iter().map(|&(s, l)| (s, s + l)).collect::<Vec<_>>());
        if let Ok(Request::Get { ranges, .. }) = decode_request(message) {
            let limits = Limits::default();
            prop_assert!(ranges.range_count() <= limits.max_ranges);
            prop_assert!(ranges.block_count() <= limits.max_blocks_per_get);
            prop_assert!(!ranges.is_empty());
        }
    }
}

// ----- both ends over a store -----

fn at(secs: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn content(len: u64) -> Bytes {
    (0..len)
        .map(|i| (i * 31 % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn respond_refuses_what_the_store_cannot_prove() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let limits = Limits::default();
    let missing = Request::Size { hash: hash() };
    assert!(matches!(
        respond(&mut store, &missing, &limits, at(0)),
        Answer::One(Response::Error {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    // A partial blob: only its last block (from the size proof) is here.
    let source = MemBlob::new(content(5 * BLOCK_SIZE));
    let proof = encode_size_proof(&source).unwrap();
    let proven = check_size_answer(
        source.hash(),
        Response::Size {
            size: source.size(),
            proof,
        },
    )
    .unwrap();
    store.begin_fetch(&proven, at(1)).unwrap();
    let hash = source.hash();
    let answer = |store: &mut Store, request| respond(store, &request, &limits, at(2));
    assert!(matches!(
        answer(
            &mut store,
            Request::Get {
                hash,
                ranges: BlockRanges::from_range(3..5)
            }
        ),
        Answer::One(Response::Error {
            code: ErrorCode::NotAvailable,
            ..
        })
    ));
    assert!(matches!(
        answer(
            &mut store,
            Request::Get {
                hash,
                ranges: BlockRanges::from_range(4..6)
            }
        ),
        Answer::One(Response::Error {
            code: ErrorCode::BadRequest,
            ..
        })
    ));
    let Answer::One(Response::Have(have)) = answer(&mut store, Request::Have { hash }) else {
        panic!("a have answer");
    };
    assert_eq!(
        have,
        HaveAnswer {
            size: 5 * BLOCK_SIZE,
            blocks: BlockRanges::from_range(4..5),
            complete: false
        }
    );
    // It can already serve the size proof and its last block.
    assert!(matches!(
        answer(&mut store, Request::Size { hash }),
        Answer::One(Response::Size { .. })
    ));
    let Answer::Stream { header, frames } = answer(
        &mut store,
        Request::Get {
            hash,
            ranges: BlockRanges::from_range(4..5),
        },
    ) else {
        panic!("a stream");
    };
    assert_eq!(
        header,
        Response::Header {
            size: 5 * BLOCK_SIZE
        }
    );
    assert_eq!(frames.count(), 1);
}

#[test]
fn download_classifies_what_goes_wrong_for_the_scheduler() {
    let source = MemBlob::new(content(4 * BLOCK_SIZE));
    let ranges = BlockRanges::from_range(0..4);
    let new = || Download::new(source.hash(), source.size(), &ranges).unwrap();
    let frames: Vec<Bytes> = RangeEncoder::new(&source, &ranges)
        .unwrap()
        .map(Result::unwrap)
        .collect();

    let mut d = new();
    let e = d.handle(Response::Data(frames[0].clone())).unwrap_err();
    assert_eq!(e.verdict(), Verdict::BadData);

    let mut d = new();
    let e = d.handle(Response::Header { size: 1 }).unwrap_err();
    assert_eq!(e.verdict(), Verdict::BadData);

    let mut d = new();
    let e = d
        .handle(Response::error(ErrorCode::NotAvailable, "evicted"))
        .unwrap_err();
    assert_eq!(e.verdict(), Verdict::NotAvailable);

    assert_eq!(new().finish().unwrap_err().verdict(), Verdict::Failed);

    // A corrupt frame: the blocks before it are verified, the bad one is bad data.
    let mut d = new();
    d.handle(Response::Header {
        size: source.size(),
    })
    .unwrap();
    let mut corrupt = frames[2].to_vec();
    corrupt[100] ^= 4;
    let mut good = 0;
    let mut error = None;
    for frame in [frames[0].clone(), frames[1].clone(), Bytes::from(corrupt)] {
        d.handle(Response::Data(frame)).unwrap();
        while let Some(block) = d.next_block() {
            match block {
                Ok(_) => good += 1,
                Err(e) => error = Some(e),
            }
        }
    }
    assert_eq!(good, 2);
    let error = error.expect("the bad block is reported");
    assert_eq!(error.verdict(), Verdict::BadData);
    assert_eq!(
        error,
        DownloadError::Decode(crate::encoding::DecodeError::BadBlock { block: 2 })
    );

    // Cut short after the header: not bad faith.
    let mut d = new();
    d.handle(Response::Header {
        size: source.size(),
    })
    .unwrap();
    d.handle(Response::Data(frames[0].clone())).unwrap();
    while d.next_block().is_some() {}
    assert_eq!(d.finish().unwrap_err().verdict(), Verdict::Failed);
}
