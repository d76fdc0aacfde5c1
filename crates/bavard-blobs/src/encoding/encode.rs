//! The sending side: a range response, one frame per block, checked as it is read.

use std::io;
use std::ops::Range;

use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{BaoTree, ChunkNum, TreeNode};
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use bytes::Bytes;

use super::outboard::{Outboard, OutboardError, compute_outboard};
use crate::hash::BlobHash;
use crate::ranges::{BAO_BLOCK_SIZE, BLOCK_CHUNK_LOG, BlockRanges, block_count};

/// Where a [`RangeEncoder`] reads a blob from: its bytes and its pre-order outboard.
///
/// Implemented by [`MemBlob`] and by the store's [`BlobReader`](crate::store::BlobReader).
pub trait BlobSource {
    /// The blob's root hash.
    fn hash(&self) -> BlobHash;
    /// The blob's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the blob's bytes at `offset` (all of them, or an error).
    fn read_data(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Fills `buf` with the outboard's bytes at `offset` (all of them, or an error).
    fn read_outboard(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl<S: BlobSource + ?Sized> BlobSource for &S {
    fn hash(&self) -> BlobHash {
        (**self).hash()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_data(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_data(offset, buf)
    }
    fn read_outboard(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_outboard(offset, buf)
    }
}

/// A whole blob in memory with its outboard.
#[derive(Clone, Debug)]
pub struct MemBlob {
    data: Bytes,
    outboard: Outboard,
}

impl MemBlob {
    /// Hashes `data` and computes its outboard.
    pub fn new(data: Bytes) -> Self {
        let outboard = compute_outboard(&data[..], data.len() as u64)
            .expect("reading from memory cannot fail");
        MemBlob { data, outboard }
    }

    /// Pairs bytes with an outboard, which must be for a blob of the same size (nothing
    /// else is checked: a mismatch shows up as a corrupt block when encoding).
    pub fn from_parts(data: Bytes, outboard: Outboard) -> Result<Self, OutboardError> {
        if data.len() as u64 != outboard.size() {
            return Err(OutboardError::Length {
                size: outboard.size(),
                expected: outboard.size(),
                got: data.len() as u64,
            });
        }
        Ok(MemBlob { data, outboard })
    }

    /// The root hash.
    pub fn hash(&self) -> BlobHash {
        self.outboard.hash()
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The outboard.
    pub fn outboard(&self) -> &Outboard {
        &self.outboard
    }
}

fn read_slice(src: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    match start
        .checked_add(buf.len())
        .and_then(|end| src.get(start..end))
    {
        Some(bytes) => {
            buf.copy_from_slice(bytes);
            Ok(())
        }
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

impl BlobSource for MemBlob {
    fn hash(&self) -> BlobHash {
        self.outboard.hash()
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_data(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(&self.data, offset, buf)
    }
    fn read_outboard(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self.outboard.as_bytes(), offset, buf)
    }
}

/// Why a range could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Reading the data or the outboard failed.
    #[error("reading the blob failed: {0}")]
    Io(#[from] io::Error),
    /// What is on disk does not match the blob's hash (bit rot, a torn write, a tampered
    /// file): nothing of these blocks was sent. The store should forget them so they are
    /// fetched again ([`crate::store::Store::forget_blocks`]).
    #[error("blocks {}..{} do not match the blob's hash", blocks.start, blocks.end)]
    Corrupt {
        /// The blocks that cannot be proven.
        blocks: Range<u64>,
    },
    /// A requested block is past the end of the blob.
    #[error("block {block} is past the end of a blob of {blocks} blocks")]
    OutOfBounds {
        /// The first block past the end.
        block: u64,
        /// How many blocks the blob has.
        blocks: u64,
    },
}

/// Encodes the response to a request for some blocks of a blob: an iterator of frames, one
/// per block, each holding the tree parents that precede the block and the block's bytes.
///
/// Everything read is verified against the root hash before it is yielded (the validated
/// encoding of bao-tree), so a corrupt file is an [`EncodeError::Corrupt`], never a bad frame
/// on the wire that would get *us* dropped by the receiver. BLAKE3 is fast enough that this
/// costs little next to the network.
pub struct RangeEncoder<S> {
    source: S,
    tree: BaoTree,
    items: ResponseIter,
    stack: Vec<blake3::Hash>,
    done: bool,
}

impl<S: BlobSource> RangeEncoder<S> {
    /// An encoder for `ranges` of `source`.
    pub fn new(source: S, ranges: &BlockRanges) -> Result<Self, EncodeError> {
        let size = source.size();
        let blocks = block_count(size);
        if ranges.end() > blocks {
            return Err(EncodeError::OutOfBounds {
                block: blocks,
                blocks,
            });
        }
        let tree = BaoTree::new(size, BAO_BLOCK_SIZE);
        let items = ResponseIter::new(tree, ranges.to_chunk_ranges(size));
        let stack = vec![source.hash().to_blake3()];
        Ok(RangeEncoder {
            source,
            tree,
            items,
            stack,
            done: false,
        })
    }

    fn next_frame(&mut self) -> Result<Option<Bytes>, EncodeError> {
        let mut frame = Vec::new();
        let size = self.tree.size();
        for item in self.items.by_ref() {
            match item {
                BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    let corrupt = || EncodeError::Corrupt {
                        blocks: node_blocks(node, size),
                    };
                    let offset = self.tree.pre_order_offset(node).ok_or_else(corrupt)?;
                    let mut pair = [0u8; 64];
                    self.source.read_outboard(offset * 64, &mut pair)?;
                    let l: ChainingValue = pair[..32].try_into().expect("32 bytes");
                    let r: ChainingValue = pair[32..].try_into().expect("32 bytes");
                    let actual = if is_root {
                        merge_subtrees_root(&l, &r, Mode::Hash)
                    } else {
                        blake3::Hash::from(merge_subtrees_non_root(&l, &r, Mode::Hash))
                    };
                    if self.stack.pop() != Some(actual) {
                        return Err(corrupt());
                    }
                    if right {
                        self.stack.push(blake3::Hash::from(r));
                    }
                    if left {
                        self.stack.push(blake3::Hash::from(l));
                    }
                    frame.extend_from_slice(&pair);
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size: len,
                    is_root,
                    ..
                } => {
                    let block = start_chunk.0 >> BLOCK_CHUNK_LOG;
                    let at = frame.len();
                    frame.resize(at + len, 0);
                    self.source
                        .read_data(start_chunk.to_bytes(), &mut frame[at..])?;
                    let data = &frame[at..];
                    let actual = if is_root {
                        blake3::hash(data)
                    } else {
                        let mut hasher = blake3::Hasher::new();
                        hasher.set_input_offset(start_chunk.to_bytes());
                        hasher.update(data);
                        blake3::Hash::from(hasher.finalize_non_root())
                    };
                    if self.stack.pop() != Some(actual) {
                        return Err(EncodeError::Corrupt {
                            blocks: block..block + 1,
                        });
                    }
                    return Ok(Some(frame.into()));
                }
            }
        }
        Ok(None)
    }
}

impl<S: BlobSource> Iterator for RangeEncoder<S> {
    type Item = Result<Bytes, EncodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_frame().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

impl<S> std::fmt::Debug for RangeEncoder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeEncoder")
            .field("size", &self.tree.size())
            .field("done", &self.done)
            .finish()
    }
}

/// The blocks under tree node `node` of a blob of `size` bytes.
pub(super) fn node_blocks(node: TreeNode, size: u64) -> Range<u64> {
    let chunks = node.chunk_range();
    let end = chunks.end.0.min(ChunkNum::chunks(size).0.max(1));
    (chunks.start.0 >> BLOCK_CHUNK_LOG)..end.div_ceil(1 << BLOCK_CHUNK_LOG)
}

/// The proof of a blob's size: the frame of its last block (see the module docs).
pub fn encode_size_proof(source: impl BlobSource) -> Result<Bytes, EncodeError> {
    let last = block_count(source.size()) - 1;
    let mut encoder = RangeEncoder::new(source, &BlockRanges::from_range(last..last + 1))?;
    match encoder.next() {
        Some(frame) => frame,
        None => Err(EncodeError::Corrupt {
            blocks: last..last + 1,
        }),
    }
}
