//! Fuzz targets (stable Rust, proptest; see `bavard_tests::fuzz`) for the `/bavard/blobs/1`
//! decoders: requests and responses (arbitrary bytes and mutants of valid frames), size proofs
//! and data frames of a real blob fed to the verifying decoder. Each asserts: no panic; a typed
//! error or a value within the [`Limits`]; valid values round-trip; and no byte that was not
//! in the blob is ever yielded as verified.
//!
//! `BAVARD_FUZZ_CASES=1000000 cargo test --release -p bavard-blobs --test fuzz_protocol`

use std::sync::OnceLock;

use bavard_blobs::encoding::{MAX_FRAME_LEN, MemBlob, RangeEncoder, encode_size_proof};
use bavard_blobs::protocol::{
    Download, ErrorCode, HaveAnswer, Limits, Request, Response, check_size_answer,
};
use bavard_blobs::{BLOCK_SIZE, BlobHash, BlockRanges};
use bavard_tests::fuzz::{self, blob};
use bytes::Bytes;
use proptest::prelude::*;

/// Decodes a frame as the node does: bavard-proto's decoder cuts it, then the payload decodes.
fn payload(frame: &[u8]) -> Vec<u8> {
    let (_, prefix) = bavard_proto::varint::decode(frame).unwrap().unwrap();
    frame[prefix..].to_vec()
}

fn hash() -> impl Strategy<Value = BlobHash> {
    blob(0..64).prop_map(|b| BlobHash::of(&b))
}

fn ranges() -> impl Strategy<Value = BlockRanges> {
    prop::collection::vec((0u64..64, 1u64..16), 1..6).prop_map(|rs| {
        let mut out = BlockRanges::new();
        let mut at = 0;
        for (gap, len) in rs {
            out.insert(at + gap..at + gap + len);
            at += gap + len + 1;
        }
        out
    })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        hash().prop_map(|hash| Request::Size { hash }),
        hash().prop_map(|hash| Request::Have { hash }),
        (hash(), ranges()).prop_map(|(hash, ranges)| Request::Get { hash, ranges }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    let code = prop_oneof![
        Just(ErrorCode::NotFound),
        Just(ErrorCode::NotAvailable),
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::Busy),
    ];
    prop_oneof![
        (0u64..1 << 40).prop_map(|size| Response::Header { size }),
        blob(0..200).prop_map(|b| Response::Data(Bytes::from(b))),
        (0u64..1 << 30, blob(0..200)).prop_map(|(size, p)| Response::Size {
            size,
            proof: Bytes::from(p)
        }),
        (1u64..1 << 22, any::<bool>(), ranges()).prop_map(|(size, complete, blocks)| {
            let last = bavard_blobs::ranges::block_count(size);
            let blocks = if complete {
                BlockRanges::all(size)
            } else {
                let mut kept = BlockRanges::new();
                for r in blocks.iter().filter(|r| r.start < last) {
                    kept.insert(r.start..r.end.min(last));
                }
                kept
            };
            Response::Have(HaveAnswer {
                size,
                blocks,
                complete,
            })
        }),
        (code, ".{0,40}").prop_map(|(code, message)| Response::Error { code, message }),
    ]
}

/// A real blob of three and a half blocks, its frames for every block, and its size proof.
struct Fixture {
    blob: Bytes,
    hash: BlobHash,
    frames: Vec<Bytes>,
    proof: Bytes,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let blob: Bytes = (0..3 * BLOCK_SIZE + BLOCK_SIZE / 2)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>()
            .into();
        let source = MemBlob::new(blob.clone());
        let frames = RangeEncoder::new(source.clone(), &BlockRanges::all(source.size()))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        Fixture {
            hash: source.hash(),
            proof: encode_size_proof(&source).unwrap(),
            blob,
            frames,
        }
    })
}

fn check_limits(r: &Response, limits: &Limits) -> Result<(), TestCaseError> {
    match r {
        Response::Header { size } => prop_assert!(*size <= limits.max_blob_size),
        Response::Data(d) => prop_assert!(d.len() <= MAX_FRAME_LEN),
        Response::Size { size, proof } => {
            prop_assert!(*size <= limits.max_blob_size && proof.len() <= MAX_FRAME_LEN)
        }
        Response::Have(h) => {
            prop_assert!(h.size <= limits.max_blob_size);
            prop_assert!(h.blocks.end() <= bavard_blobs::ranges::block_count(h.size));
        }
        Response::Error { message, .. } => prop_assert!(message.len() <= 256),
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz::config(1.0))]

    #[test]
    fn fuzz_requests_decode_within_the_limits_or_fail_typed(
        input in fuzz::inputs(request().prop_map(|r| payload(&r.to_frame())), 300),
    ) {
        let limits = Limits::default();
        match Request::decode(input.bytes(), &limits) {
            Ok(request) => {
                if let Request::Get { ranges, .. } = &request {
                    prop_assert!(!ranges.is_empty());
                    prop_assert!(ranges.range_count() <= limits.max_ranges);
                    prop_assert!(ranges.block_count() <= limits.max_blocks_per_get);
                }
                prop_assert_eq!(Request::decode(&payload(&request.to_frame()), &limits), Ok(request));
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_responses_decode_within_the_limits_or_fail_typed(
        input in fuzz::inputs(response().prop_map(|r| payload(&r.to_frame())), 300),
    ) {
        let limits = Limits::default();
        match Response::decode(input.bytes(), &limits) {
            Ok(response) => {
                check_limits(&response, &limits)?;
                prop_assert_eq!(Response::decode(&payload(&response.to_frame()), &limits), Ok(response));
            }
            Err(_) => prop_assert!(!input.must_decode()),
        }
    }

    #[test]
    fn fuzz_a_mutated_size_proof_never_proves_a_wrong_size_or_block(
        proof in fuzz::inputs(Just(fixture().proof.to_vec()), 64),
        size_delta in prop_oneof![3 => Just(0i64), 1 => -70_000i64..70_000],
    ) {
        let f = fixture();
        let size = (f.blob.len() as i64 + size_delta).max(0) as u64;
        let answer = Response::Size { size, proof: Bytes::from(proof.bytes().to_vec()) };
        match check_size_answer(f.hash, answer) {
            Ok(block) => {
                prop_assert_eq!(block.size(), f.blob.len() as u64, "only the true size is proven");
                let start = block.offset() as usize;
                prop_assert_eq!(&block.data()[..], &f.blob[start..start + block.data().len()]);
            }
            Err(_) => prop_assert!(!(proof.must_decode() && size_delta == 0)),
        }
    }

    #[test]
    fn fuzz_mutated_data_frames_yield_only_true_blocks(
        which in 0usize..4,
        frame in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(fuzz::mutation(), 0..4),
    ) {
        let f = fixture();
        let mut download = Download::new(f.hash, f.blob.len() as u64, &BlockRanges::all(f.blob.len() as u64)).unwrap();
        download.handle(Response::Header { size: f.blob.len() as u64 }).unwrap();
        let bad = frame.index(f.frames.len());
        let mut verified = 0;
        let mut failed = false;
        'frames: for (i, data) in f.frames.iter().enumerate() {
            let mut data = data.to_vec();
            if i == bad && which > 0 {
                for m in &mutations {
                    fuzz::apply(&mut data, m);
                }
            }
            if download.handle(Response::Data(Bytes::from(data))).is_err() {
                failed = true;
                break;
            }
            while let Some(block) = download.next_block() {
                match block {
                    Ok(block) => {
                        let start = block.offset() as usize;
                        prop_assert_eq!(&block.data()[..], &f.blob[start..start + block.data().len()]);
                        verified += 1;
                    }
                    Err(_) => { failed = true; break 'frames; }
                }
            }
        }
        if !failed {
            let finished = download.finish();
            if finished.is_ok() {
                prop_assert_eq!(verified, f.frames.len());
            }
        }
        if which == 0 || mutations.is_empty() {
            prop_assert!(!failed && verified == f.frames.len(), "unmodified frames all verify");
        }
    }
}
