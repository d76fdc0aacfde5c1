//! Reading a stored blob: its verified blocks, to serve them or hand them to a local reader.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::StoreError;
use crate::encoding::{BlobSource, EncodeError, RangeEncoder, encode_size_proof};
use crate::hash::BlobHash;
use crate::ranges::{BlockRanges, block_count, blocks_for_bytes};

/// A handle on one stored blob, complete or still being fetched, for reading the blocks
/// that were verified when it was opened ([`Store::reader`](super::Store::reader)).
///
/// It holds its own file handles, so it can be used without the store (on another thread,
/// after the store's lock is released) and stays readable if the blob is evicted or deleted
/// meanwhile (the files live on until the handle is dropped). Blocks verified after it was
/// opened are not visible through it: open a new one.
#[derive(Debug)]
pub struct BlobReader {
    pub(super) hash: BlobHash,
    pub(super) size: u64,
    pub(super) verified: BlockRanges,
    pub(super) data: File,
    pub(super) outboard: File,
}

impl BlobReader {
    /// The blob's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blocks that may be read and served.
    pub fn verified(&self) -> &BlockRanges {
        &self.verified
    }

    /// Whether every block is verified.
    pub fn is_complete(&self) -> bool {
        self.verified.block_count() == block_count(self.size)
    }

    /// A response for `ranges`, all of which must be verified here
    /// ([`StoreError::NotAvailable`] names the first that is not).
    pub fn encoder(&self, ranges: &BlockRanges) -> Result<RangeEncoder<&Self>, StoreError> {
        if let Some(block) = first_missing(&self.verified, ranges) {
            return Err(StoreError::NotAvailable {
                hash: self.hash,
                block,
            });
        }
        RangeEncoder::new(self, ranges).map_err(|e| match e {
            EncodeError::OutOfBounds { block, .. } => StoreError::NotAvailable {
                hash: self.hash,
                block,
            },
            other => StoreError::Encode(other),
        })
    }

    /// Like [`encoder`](Self::encoder), but owning the reader, to stream a response from
    /// another thread or task.
    pub fn into_encoder(self, ranges: &BlockRanges) -> Result<RangeEncoder<Self>, StoreError> {
        if let Some(block) = first_missing(&self.verified, ranges) {
            return Err(StoreError::NotAvailable {
                hash: self.hash,
                block,
            });
        }
        let hash = self.hash;
        RangeEncoder::new(self, ranges).map_err(|e| match e {
            EncodeError::OutOfBounds { block, .. } => StoreError::NotAvailable { hash, block },
            other => StoreError::Encode(other),
        })
    }

    /// The proof of this blob's size (its last block), for a size query.
    pub fn size_proof(&self) -> Result<Bytes, StoreError> {
        let last = block_count(self.size) - 1;
        if !self.verified.contains(last) {
            return Err(StoreError::NotAvailable {
                hash: self.hash,
                block: last,
            });
        }
        encode_size_proof(self).map_err(StoreError::Encode)
    }

    /// Reads `buf.len()` bytes at `offset` for a local consumer (an HTTP response). Every
    /// block they touch must be verified. The bytes were verified when they were written and
    /// are not hashed again here; what goes to *peers* is, by [`encoder`](Self::encoder).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.size {
            return Err(StoreError::NotAvailable {
                hash: self.hash,
                block: block_count(self.size),
            });
        }
        if buf.is_empty() {
            return Ok(());
        }
        let blocks = BlockRanges::from_range(blocks_for_bytes(self.size, offset..end));
        if let Some(block) = first_missing(&self.verified, &blocks) {
            return Err(StoreError::NotAvailable {
                hash: self.hash,
                block,
            });
        }
        self.data
            .read_exact_at(buf, offset)
            .map_err(|source| StoreError::Io {
                op: "reading",
                path: format!("{}.data", self.hash).into(),
                source,
            })
    }
}

fn first_missing(have: &BlockRanges, want: &BlockRanges) -> Option<u64> {
    if have.contains_all(want) {
        return None;
    }
    want.iter().flatten().find(|&b| !have.contains(b))
}

impl BlobSource for BlobReader {
    fn hash(&self) -> BlobHash {
        self.hash
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn read_data(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.data.read_exact_at(buf, offset)
    }
    fn read_outboard(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.outboard.read_exact_at(buf, offset)
    }
}
