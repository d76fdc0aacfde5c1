//! The receiving side: an incremental, push-fed verifier of range responses.

use std::ops::Range;

use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{BaoTree, TreeNode};

use super::encode::node_blocks;
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use bytes::{Buf, Bytes, BytesMut};

use super::MAX_FRAME_LEN;
use crate::hash::BlobHash;
use crate::ranges::{BAO_BLOCK_SIZE, BLOCK_CHUNK_LOG, BlockRanges, block_count};

/// A parent of the tree, as received and verified: its node and `left ‖ right`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) node: TreeNode,
    pub(crate) pair: [u8; 64],
}

/// A block whose bytes were checked against the blob's root hash.
///
/// Only a [`RangeDecoder`] (or [`verify_size_proof`]) makes these, so holding one is proof
/// that its bytes belong to blob [`hash`](Self::hash) of size [`size`](Self::size) at block
/// [`block`](Self::block). It also carries the tree parents received on its path, which the
/// store saves so that it can later prove this block to others.
#[derive(Clone)]
pub struct VerifiedBlock {
    hash: BlobHash,
    size: u64,
    block: u64,
    data: Bytes,
    parents: Vec<Parent>,
}

impl VerifiedBlock {
    /// The blob this block belongs to.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The size of the blob, as proven by the verification.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The block's index.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// The block's first byte in the blob.
    pub fn offset(&self) -> u64 {
        self.block << (10 + BLOCK_CHUNK_LOG)
    }

    /// The block's bytes (16 KiB, less for the last block).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The tree parents received on this block's path, for the store's outboard.
    pub(crate) fn parents(&self) -> &[Parent] {
        &self.parents
    }
}

impl std::fmt::Debug for VerifiedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBlock")
            .field("hash", &self.hash)
            .field("block", &self.block)
            .field("len", &self.data.len())
            .field("parents", &self.parents.len())
            .finish()
    }
}

/// Why a range response was refused.
///
/// Every variant leaves the decoder failed: further [`RangeDecoder::push`] calls return
/// [`DecodeError::Failed`] and [`RangeDecoder::next_block`] returns `None`. Blocks yielded
/// before the error were verified and stay good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A block's bytes do not hash to what the tree says: the sender sent corrupt data.
    #[error("block {block} does not match the blob's hash")]
    BadBlock {
        /// The block's index.
        block: u64,
    },
    /// A parent's hashes do not combine to what its own parent says: the sender sent a
    /// corrupt tree node. Reported with the first block below it, the first block that can
    /// no longer be verified.
    #[error("tree node above blocks {}..{} does not match the blob's hash", blocks.start, blocks.end)]
    BadParent {
        /// The blocks under the bad node.
        blocks: Range<u64>,
    },
    /// More bytes than the requested blocks and their proofs need.
    #[error("the response has bytes past its last block")]
    TrailingData,
    /// The response ended before block `block` (or one of its parents) was complete.
    #[error("the response ended before block {block} was complete")]
    Truncated {
        /// The first block not received in full.
        block: u64,
    },
    /// More bytes were pushed without draining than a frame can hold.
    #[error("{buffered} bytes buffered, more than the {limit}-byte limit")]
    Overfull {
        /// Bytes that would have been buffered.
        buffered: usize,
        /// The limit.
        limit: usize,
    },
    /// A block index past the end of the blob was asked for.
    #[error("block {block} is past the end of a blob of {blocks} blocks")]
    OutOfBounds {
        /// The first bad block.
        block: u64,
        /// How many blocks the blob has.
        blocks: u64,
    },
    /// The decoder already failed; the error was returned before.
    #[error("the decoder already failed")]
    Failed,
}

impl DecodeError {
    /// The first block this error concerns, for the errors caused by bad bytes (not for
    /// misuse or truncation).
    pub fn bad_block(&self) -> Option<u64> {
        match self {
            DecodeError::BadBlock { block } => Some(*block),
            DecodeError::BadParent { blocks } => Some(blocks.start),
            _ => None,
        }
    }
}

/// Verifies a range response incrementally against a blob's root hash.
///
/// Feed it the response's bytes as they arrive with [`push`](Self::push) (split anyhow, at
/// most [`MAX_FRAME_LEN`] bytes per push), and after each push take out the blocks that are
/// complete with [`next_block`](Self::next_block) until it returns `None`. When the stream
/// ends, drain [`next_block`](Self::next_block) once more (the empty blob's block needs no
/// bytes at all), then [`finish`](Self::finish) says whether everything requested arrived. The first bad block or parent is reported as an error at once, and the
/// decoder then stops.
///
/// ```
/// use bavard_blobs::encoding::{MemBlob, RangeDecoder, RangeEncoder};
/// use bavard_blobs::BlockRanges;
///
/// let blob = MemBlob::new(vec![7u8; 100_000].into());
/// let ranges = BlockRanges::from_range(2..4);
/// let mut decoder = RangeDecoder::new(blob.hash(), blob.size(), &ranges)?;
/// for frame in RangeEncoder::new(&blob, &ranges)? {
///     decoder.push(&frame?)?;
///     while let Some(block) = decoder.next_block() {
///         let block = block?;
///         assert_eq!(block.data().len(), 16 * 1024);
///     }
/// }
/// decoder.finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RangeDecoder {
    hash: BlobHash,
    size: u64,
    items: ResponseIter,
    /// The item being waited for, taken from `items`.
    current: Option<BaoChunk>,
    /// Hashes vouched for and not yet consumed, the next one on top (bao's decoding stack).
    stack: Vec<blake3::Hash>,
    buf: BytesMut,
    parents: Vec<Parent>,
    failed: bool,
}

impl RangeDecoder {
    /// How many bytes may wait in the decoder: two frames.
    pub const BUFFER_LIMIT: usize = 2 * MAX_FRAME_LEN;

    /// A decoder for the response to a request for `ranges` of the blob `hash` of `size`
    /// bytes. Fails if a range reaches past the blob's last block.
    pub fn new(hash: BlobHash, size: u64, ranges: &BlockRanges) -> Result<Self, DecodeError> {
        let blocks = block_count(size);
        if ranges.end() > blocks {
            let block = ranges
                .iter()
                .map(|r| r.end.max(blocks) - 1)
                .find(|&b| b >= blocks)
                .unwrap_or(blocks);
            return Err(DecodeError::OutOfBounds { block, blocks });
        }
        let tree = BaoTree::new(size, BAO_BLOCK_SIZE);
        let items = ResponseIter::new(tree, ranges.to_chunk_ranges(size));
        Ok(RangeDecoder {
            hash,
            size,
            items,
            current: None,
            stack: vec![hash.to_blake3()],
            buf: BytesMut::new(),
            parents: Vec::new(),
            failed: false,
        })
    }

    /// The blob being verified.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// Adds received bytes. Drain [`next_block`](Self::next_block) between pushes: more
    /// than [`BUFFER_LIMIT`](Self::BUFFER_LIMIT) bytes waiting is an error, which pushes of
    /// at most [`MAX_FRAME_LEN`] bytes between drains never reach (what waits after a drain
    /// is less than one frame).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError::Failed);
        }
        if bytes.is_empty() {
            return Ok(());
        }
        if self.current.is_none() && self.stack.is_empty() {
            return Err(self.fail(DecodeError::TrailingData));
        }
        let buffered = self.buf.len() + bytes.len();
        if buffered > Self::BUFFER_LIMIT {
            return Err(self.fail(DecodeError::Overfull {
                buffered,
                limit: Self::BUFFER_LIMIT,
            }));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next block that is complete and verified, an error at the first bad block, or
    /// `None` when more bytes are needed (or the response is done, or the decoder failed).
    pub fn next_block(&mut self) -> Option<Result<VerifiedBlock, DecodeError>> {
        if self.failed {
            return None;
        }
        loop {
            if self.current.is_none() {
                self.current = self.items.next();
            }
            let Some(item) = self.current else {
                if !self.buf.is_empty() {
                    return Some(Err(self.fail(DecodeError::TrailingData)));
                }
                return None;
            };
            match item {
                BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    if self.buf.len() < 64 {
                        return None;
                    }
                    let mut pair = [0u8; 64];
                    self.buf.copy_to_slice(&mut pair);
                    self.current = None;
                    let l: ChainingValue = pair[..32].try_into().expect("32 bytes");
                    let r: ChainingValue = pair[32..].try_into().expect("32 bytes");
                    let actual = if is_root {
                        merge_subtrees_root(&l, &r, Mode::Hash)
                    } else {
                        blake3::Hash::from(merge_subtrees_non_root(&l, &r, Mode::Hash))
                    };
                    // The stack is never empty while items remain: it starts with the root
                    // and every parent pushes the children that the iterator will visit.
                    let expected = self.stack.pop();
                    if expected != Some(actual) {
                        let blocks = node_blocks(node, self.size);
                        return Some(Err(self.fail(DecodeError::BadParent { blocks })));
                    }
                    if right {
                        self.stack.push(blake3::Hash::from(r));
                    }
                    if left {
                        self.stack.push(blake3::Hash::from(l));
                    }
                    self.parents.push(Parent { node, pair });
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size,
                    is_root,
                    ..
                } => {
                    if self.buf.len() < size {
                        return None;
                    }
                    let data = self.buf.split_to(size).freeze();
                    self.current = None;
                    let block = start_chunk.0 >> BLOCK_CHUNK_LOG;
                    let actual = if is_root {
                        blake3::hash(&data)
                    } else {
                        let mut hasher = blake3::Hasher::new();
                        hasher.set_input_offset(start_chunk.to_bytes());
                        hasher.update(&data);
                        blake3::Hash::from(hasher.finalize_non_root())
                    };
                    if self.stack.pop() != Some(actual) {
                        return Some(Err(self.fail(DecodeError::BadBlock { block })));
                    }
                    return Some(Ok(VerifiedBlock {
                        hash: self.hash,
                        size: self.size,
                        block,
                        data,
                        parents: std::mem::take(&mut self.parents),
                    }));
                }
            }
        }
    }

    /// Whether every requested block has been verified and yielded.
    pub fn is_done(&mut self) -> bool {
        if self.current.is_none() {
            self.current = self.items.next();
        }
        !self.failed && self.current.is_none()
    }

    /// Ends the response: an error if a requested block never arrived in full (or bytes
    /// are left over). Call after draining [`next_block`](Self::next_block).
    pub fn finish(mut self) -> Result<(), DecodeError> {
        if self.failed {
            return Err(DecodeError::Failed);
        }
        if self.current.is_none() {
            self.current = self.items.next();
        }
        match self.current {
            None if self.buf.is_empty() => Ok(()),
            None => Err(DecodeError::TrailingData),
            Some(BaoChunk::Leaf { start_chunk, .. }) => Err(DecodeError::Truncated {
                block: start_chunk.0 >> BLOCK_CHUNK_LOG,
            }),
            Some(BaoChunk::Parent { node, .. }) => Err(DecodeError::Truncated {
                block: node_blocks(node, self.size).start,
            }),
        }
    }

    fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.failed = true;
        self.buf.clear();
        error
    }
}

impl std::fmt::Debug for RangeDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeDecoder")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("buffered", &self.buf.len())
            .field("failed", &self.failed)
            .finish()
    }
}

/// Checks a size proof (see [`super::encode_size_proof`]): the last block of blob `hash`
/// under the claimed `size`. On success the size is proven and the block can be stored.
pub fn verify_size_proof(
    hash: BlobHash,
    size: u64,
    proof: &[u8],
) -> Result<VerifiedBlock, DecodeError> {
    let last = block_count(size) - 1;
    let mut decoder = RangeDecoder::new(hash, size, &BlockRanges::from_range(last..last + 1))?;
    decoder.push(proof)?;
    let block = match decoder.next_block() {
        Some(block) => block?,
        None => return Err(DecodeError::Truncated { block: last }),
    };
    decoder.finish()?;
    Ok(block)
}
