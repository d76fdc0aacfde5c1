use bytes::Bytes;
use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::hash::BlobHash;
use crate::ranges::{BLOCK_SIZE, BlockRanges, block_bytes, block_count};

fn random_bytes(len: usize, seed: u64) -> Bytes {
    let mut data = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data.into()
}

/// The frames of a response, as the sender produces them.
fn frames(blob: &MemBlob, ranges: &BlockRanges) -> Vec<Bytes> {
    RangeEncoder::new(blob, ranges)
        .expect("ranges in bounds")
        .collect::<Result<_, _>>()
        .expect("a good blob encodes")
}

/// Decodes `wire` pushed in pieces of `piece` bytes; returns the blocks verified before the
/// first error, and that error.
fn decode(
    hash: BlobHash,
    size: u64,
    ranges: &BlockRanges,
    wire: &[u8],
    piece: usize,
) -> (Vec<VerifiedBlock>, Result<(), DecodeError>) {
    let mut decoder = RangeDecoder::new(hash, size, ranges).expect("ranges in bounds");
    let mut blocks = Vec::new();
    for part in wire.chunks(piece.max(1)) {
        if let Err(e) = decoder.push(part) {
            return (blocks, Err(e));
        }
        while let Some(block) = decoder.next_block() {
            match block {
                Ok(block) => blocks.push(block),
                Err(e) => return (blocks, Err(e)),
            }
        }
    }
    // An empty block needs no bytes: it is yielded on the first drain, pushed or not.
    while let Some(block) = decoder.next_block() {
        match block {
            Ok(block) => blocks.push(block),
            Err(e) => return (blocks, Err(e)),
        }
    }
    (blocks, decoder.finish())
}

const EDGE_SIZES: &[u64] = &[
    0,
    1,
    1023,
    1024,
    1025,
    BLOCK_SIZE - 1,
    BLOCK_SIZE,
    BLOCK_SIZE + 1,
    2 * BLOCK_SIZE,
    3 * BLOCK_SIZE + 5,
    3 * 1024 * 1024 + 17,
];

#[test]
fn whole_blob_round_trips_at_edge_sizes() {
    for &size in EDGE_SIZES {
        let data = random_bytes(size as usize, size);
        let blob = MemBlob::new(data.clone());
        assert_eq!(blob.hash(), BlobHash::of(&data), "size {size}");
        assert_eq!(
            hash_reader(&data[..]).unwrap(),
            (blob.hash(), size),
            "size {size}"
        );
        let ranges = BlockRanges::all(size);
        let wire: Vec<u8> = frames(&blob, &ranges).concat();
        let (blocks, end) = decode(blob.hash(), size, &ranges, &wire, 4096);
        end.unwrap_or_else(|e| panic!("size {size}: {e}"));
        assert_eq!(blocks.len() as u64, block_count(size), "size {size}");
        let mut copy = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            assert_eq!(block.block(), i as u64);
            assert_eq!(block.offset(), copy.len() as u64);
            copy.extend_from_slice(block.data());
        }
        assert_eq!(copy, data, "size {size}");
    }
}

#[test]
fn the_wire_format_is_bao_trees_own_encoding() {
    // Our frames concatenated are exactly what bao-tree's (and so iroh-blobs') validated
    // encoder writes for the same ranges.
    let size = 7 * BLOCK_SIZE + 300;
    let blob = MemBlob::new(random_bytes(size as usize, 7));
    let ranges: BlockRanges = [1..3, 5..8].into_iter().collect();
    let ours: Vec<u8> = frames(&blob, &ranges).concat();
    let outboard = bao_tree::io::outboard::PreOrderOutboard {
        root: blob.hash().to_blake3(),
        tree: bao_tree::BaoTree::new(size, crate::ranges::BAO_BLOCK_SIZE),
        data: blob.outboard().as_bytes(),
    };
    let mut theirs = Vec::new();
    bao_tree::io::sync::encode_ranges_validated(
        &blob.data()[..],
        &outboard,
        &ranges.to_chunk_ranges(size),
        &mut theirs,
    )
    .unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn each_frame_holds_one_block_within_the_frame_limit() {
    let size = 3 * 1024 * 1024 + 17;
    let blob = MemBlob::new(random_bytes(size as usize, 3));
    let all = frames(&blob, &BlockRanges::all(size));
    assert_eq!(all.len() as u64, block_count(size));
    assert!(all.iter().all(|f| f.len() <= MAX_FRAME_LEN));
    // A block in the middle of a range needs no parents: they came with the range's start.
    assert_eq!(all[1].len() as u64, BLOCK_SIZE);
}

#[test]
fn a_flipped_bit_anywhere_fails_at_the_block_that_holds_it() {
    let size = 11 * BLOCK_SIZE + 100;
    let blob = MemBlob::new(random_bytes(size as usize, 11));
    let ranges = BlockRanges::all(size);
    let frames = frames(&blob, &ranges);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut frame_start = 0;
    for (block, frame) in frames.iter().enumerate() {
        let block = block as u64;
        let data_len = block_bytes(size, block).end - block_bytes(size, block).start;
        let parents_len = frame.len() - data_len as usize;
        // Every parent (a byte in each hash of the pair) and four places in the data.
        let mut positions: Vec<usize> = (0..parents_len / 64)
            .flat_map(|p| [p * 64, p * 64 + 32 + rng.random_range(0..32)])
            .collect();
        let data_at = parents_len;
        positions.extend([
            data_at,
            data_at + 1023.min(data_len as usize - 1),
            data_at + rng.random_range(0..data_len as usize),
            frame.len() - 1,
        ]);
        for at in positions {
            let mut wire: Vec<u8> = frames.concat();
            wire[frame_start + at] ^= 1 << rng.random_range(0..8);
            let (good, end) = decode(blob.hash(), size, &ranges, &wire, 1500);
            let error = end.expect_err("a flipped bit is caught");
            assert_eq!(
                error.bad_block(),
                Some(block),
                "flip at byte {at} of frame {block}: {error}"
            );
            if at < parents_len {
                assert!(matches!(error, DecodeError::BadParent { .. }), "{error}");
            } else {
                assert_eq!(error, DecodeError::BadBlock { block });
            }
            // Everything before the bad block was verified and handed out.
            assert_eq!(good.len() as u64, block);
        }
        frame_start += frame.len();
    }
}

#[test]
fn a_truncated_response_names_the_first_missing_block() {
    let size = 4 * BLOCK_SIZE;
    let blob = MemBlob::new(random_bytes(size as usize, 4));
    let ranges = BlockRanges::all(size);
    let wire: Vec<u8> = frames(&blob, &ranges).concat();
    let (good, end) = decode(blob.hash(), size, &ranges, &wire[..wire.len() - 10], 999);
    assert_eq!(good.len(), 3);
    assert_eq!(end, Err(DecodeError::Truncated { block: 3 }));
}

#[test]
fn bytes_past_the_last_block_are_refused() {
    let size = 2 * BLOCK_SIZE;
    let blob = MemBlob::new(random_bytes(size as usize, 2));
    let ranges = BlockRanges::from_range(0..1);
    let mut wire: Vec<u8> = frames(&blob, &ranges).concat();
    wire.extend_from_slice(b"extra");
    let (good, end) = decode(blob.hash(), size, &ranges, &wire, wire.len());
    assert_eq!(good.len(), 1);
    assert_eq!(end, Err(DecodeError::TrailingData));
}

#[test]
fn pushing_more_than_the_buffer_limit_without_draining_is_refused() {
    let size = 20 * BLOCK_SIZE;
    let blob = MemBlob::new(random_bytes(size as usize, 20));
    let ranges = BlockRanges::all(size);
    let wire: Vec<u8> = frames(&blob, &ranges).concat();
    let mut decoder = RangeDecoder::new(blob.hash(), size, &ranges).unwrap();
    let error = decoder.push(&wire).unwrap_err();
    assert!(matches!(error, DecodeError::Overfull { .. }), "{error}");
    assert_eq!(decoder.push(b"x"), Err(DecodeError::Failed));
    assert!(decoder.next_block().is_none());
}

#[test]
fn ranges_past_the_end_are_refused_on_both_sides() {
    let size = 2 * BLOCK_SIZE;
    let blob = MemBlob::new(random_bytes(size as usize, 2));
    let ranges = BlockRanges::from_range(1..3);
    assert!(matches!(
        RangeDecoder::new(blob.hash(), size, &ranges),
        Err(DecodeError::OutOfBounds {
            block: 2,
            blocks: 2
        })
    ));
    assert!(matches!(
        RangeEncoder::new(&blob, &ranges),
        Err(EncodeError::OutOfBounds { .. })
    ));
}

#[test]
fn the_encoder_refuses_to_send_corrupt_data_or_tree() {
    let size = 5 * BLOCK_SIZE;
    let good = MemBlob::new(random_bytes(size as usize, 5));
    let mut data = good.data().to_vec();
    data[(3 * BLOCK_SIZE + 7) as usize] ^= 0x10;
    let bad_data = MemBlob::from_parts(data.into(), good.outboard().clone()).unwrap();
    let results: Vec<_> = RangeEncoder::new(&bad_data, &BlockRanges::all(size))
        .unwrap()
        .collect();
    // Blocks 0..3 go out, block 3 is refused, and the encoder stops there.
    assert_eq!(results.len(), 4);
    assert!(results[..3].iter().all(Result::is_ok));
    assert!(matches!(
        &results[3],
        Err(EncodeError::Corrupt { blocks }) if *blocks == (3..4)
    ));

    let mut tree = good.outboard().as_bytes().to_vec();
    tree[0] ^= 1; // the root's pair
    let outboard = Outboard::from_parts(good.hash(), size, tree).unwrap();
    let bad_tree = MemBlob::from_parts(good.data().clone(), outboard).unwrap();
    let first = RangeEncoder::new(&bad_tree, &BlockRanges::from_range(4..5))
        .unwrap()
        .next()
        .unwrap();
    assert!(matches!(first, Err(EncodeError::Corrupt { blocks }) if blocks == (0..5)));
}

#[test]
fn outboards_of_the_wrong_length_are_refused() {
    let error = Outboard::from_parts(BlobHash::EMPTY, 3 * BLOCK_SIZE, vec![0; 64]).unwrap_err();
    assert_eq!(
        error,
        OutboardError::Length {
            size: 3 * BLOCK_SIZE,
            expected: 128,
            got: 64
        }
    );
    assert!(compute_outboard(&[0u8; 10][..], 11).is_err());
}

#[test]
fn a_size_is_proven_only_by_its_last_block() {
    let size = 3 * BLOCK_SIZE;
    let blob = MemBlob::new(random_bytes(size as usize, 3));
    // Block 0 verifies under a wrong size of 4 blocks: the left half of the tree is the
    // same. This is why a fetch starts with a size proof.
    let first = BlockRanges::from_range(0..1);
    let wire: Vec<u8> = frames(&blob, &first).concat();
    let (blocks, end) = decode(blob.hash(), 4 * BLOCK_SIZE, &first, &wire, wire.len());
    assert_eq!((blocks.len(), end), (1, Ok(())));

    let proof = encode_size_proof(&blob).unwrap();
    let last = verify_size_proof(blob.hash(), size, &proof).unwrap();
    assert_eq!((last.block(), last.size()), (2, size));
    for wrong in [size - 1, size + 1, 4 * BLOCK_SIZE, 2 * BLOCK_SIZE, 1, 0] {
        assert!(
            verify_size_proof(blob.hash(), wrong, &proof).is_err(),
            "size {wrong} must not verify"
        );
    }
}

#[test]
fn the_empty_blob_has_one_empty_block_that_verifies() {
    let blob = MemBlob::new(Bytes::new());
    assert_eq!(blob.hash(), BlobHash::EMPTY);
    let proof = encode_size_proof(&blob).unwrap();
    assert!(proof.is_empty());
    let block = verify_size_proof(BlobHash::EMPTY, 0, &proof).unwrap();
    assert!(block.data().is_empty());
    // The same empty proof does not prove the empty content for another hash.
    assert!(verify_size_proof(BlobHash::of(b"x"), 0, &proof).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_ranges_round_trip(
        size in 0u64..(24 * BLOCK_SIZE),
        seed: u64,
        picks in prop::collection::vec((0u64..24, 1u64..6), 1..5),
        piece in 1usize..MAX_FRAME_LEN,
    ) {
        let data = random_bytes(size as usize, seed);
        let blob = MemBlob::new(data.clone());
        let blocks = block_count(size);
        let ranges: BlockRanges = picks
            .into_iter()
            .map(|(start, len)| (start % blocks)..((start % blocks) + len).min(blocks))
            .collect();
        let wire: Vec<u8> = frames(&blob, &ranges).concat();
        let (got, end) = decode(blob.hash(), size, &ranges, &wire, piece);
        prop_assert_eq!(end, Ok(()));
        let wanted: Vec<u64> = ranges.iter().flatten().collect();
        let got_blocks: Vec<u64> = got.iter().map(VerifiedBlock::block).collect();
        prop_assert_eq!(got_blocks, wanted);
        for block in &got {
            let bytes = block_bytes(size, block.block());
            prop_assert_eq!(&block.data()[..], &data[bytes.start as usize..bytes.end as usize]);
        }
    }

    #[test]
    fn a_random_flip_never_yields_a_wrong_block(
        seed: u64,
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let size = 6 * BLOCK_SIZE + 1000;
        let data = random_bytes(size as usize, seed);
        let blob = MemBlob::new(data.clone());
        let ranges = BlockRanges::from_range(1..7);
        let mut wire: Vec<u8> = frames(&blob, &ranges).concat();
        let at = at.index(wire.len());
        wire[at] ^= 1 << bit;
        let (got, end) = decode(blob.hash(), size, &ranges, &wire, 5000);
        prop_assert!(end.is_err());
        for block in &got {
            let bytes = block_bytes(size, block.block());
            prop_assert_eq!(&block.data()[..], &data[bytes.start as usize..bytes.end as usize]);
        }
    }
}
