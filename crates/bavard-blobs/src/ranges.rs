//! Blocks, the unit of transfer and verification, and sets of block ranges.
//!
//! A blob is cut into blocks of [`BLOCK_SIZE`] bytes (16 KiB, the last one shorter). A block
//! is one BLAKE3 *chunk group* of 16 chunks of 1 KiB: the leaves of the verification tree
//! that bavard stores and sends (see [`crate::encoding`]). Requests, the have-bitfield, the
//! store's verified bitfield and the scheduler all count in blocks; bytes appear only at the
//! edges (HTTP `Range`, status figures).

use std::fmt;
use std::ops::Range;

use bao_tree::{BlockSize, ChunkNum, ChunkRanges};

/// log2 of the number of 1 KiB BLAKE3 chunks in a block.
pub(crate) const BLOCK_CHUNK_LOG: u8 = 4;

/// The chunk group size given to bao-tree.
pub(crate) const BAO_BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(BLOCK_CHUNK_LOG);

/// The size of a block: 16 KiB.
pub const BLOCK_SIZE: u64 = 1024 << BLOCK_CHUNK_LOG;

/// The number of blocks of a blob of `size` bytes.
///
/// The empty blob has one block, of zero bytes: its hash is still checked (against the hash
/// of nothing), so fetching it is a one-block transfer like any other small blob.
pub fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE).max(1)
}

/// The byte range that block `block` covers in a blob of `size` bytes (empty past the end).
pub fn block_bytes(size: u64, block: u64) -> Range<u64> {
    let start = block.saturating_mul(BLOCK_SIZE).min(size);
    let end = block.saturating_add(1).saturating_mul(BLOCK_SIZE).min(size);
    start..end
}

/// The blocks that hold the bytes `bytes` of a blob of `size` bytes (clamped to the blob).
pub fn blocks_for_bytes(size: u64, bytes: Range<u64>) -> Range<u64> {
    let count = block_count(size);
    let start = (bytes.start / BLOCK_SIZE).min(count);
    let end = bytes.end.min(size).div_ceil(BLOCK_SIZE).min(count);
    if size == 0 && bytes.start == 0 {
        // The empty blob's single (empty) block.
        return 0..1;
    }
    start..end.max(start)
}

/// A set of block indices, kept as sorted, disjoint, non-adjacent half-open ranges.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct BlockRanges(Vec<Range<u64>>);

impl BlockRanges {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks `range.start..range.end`.
    pub fn from_range(range: Range<u64>) -> Self {
        let mut set = Self::new();
        set.insert(range);
        set
    }

    /// Every block of a blob of `size` bytes.
    pub fn all(size: u64) -> Self {
        Self::from_range(0..block_count(size))
    }

    /// Adds `range` (empty ranges are ignored), merging it with its neighbours.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        // First range that ends at or after range.start: it may touch or overlap.
        let first = self.0.partition_point(|r| r.end < range.start);
        // First range that starts after range.end: it neither touches nor overlaps.
        let last = self.0.partition_point(|r| r.start <= range.end);
        let mut merged = range;
        if first < last {
            merged.start = merged.start.min(self.0[first].start);
            merged.end = merged.end.max(self.0[last - 1].end);
        }
        self.0.splice(first..last, std::iter::once(merged));
    }

    /// Whether block `block` is in the set.
    pub fn contains(&self, block: u64) -> bool {
        let i = self.0.partition_point(|r| r.end <= block);
        self.0.get(i).is_some_and(|r| r.start <= block)
    }

    /// Whether every block of `other` is in this set.
    pub fn contains_all(&self, other: &BlockRanges) -> bool {
        other.0.iter().all(|r| {
            let i = self.0.partition_point(|mine| mine.end <= r.start);
            self.0
                .get(i)
                .is_some_and(|mine| mine.start <= r.start && r.end <= mine.end)
        })
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.0.iter().cloned()
    }

    /// The number of disjoint ranges.
    pub fn range_count(&self) -> usize {
        self.0.len()
    }

    /// The number of blocks in the set.
    pub fn block_count(&self) -> u64 {
        self.0.iter().map(|r| r.end - r.start).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first block past the last range (0 for the empty set).
    pub fn end(&self) -> u64 {
        self.0.last().map_or(0, |r| r.end)
    }

    /// The bytes these blocks hold in a blob of `size` bytes.
    pub fn byte_len(&self, size: u64) -> u64 {
        self.0
            .iter()
            .map(|r| {
                let bytes = block_bytes(size, r.start).start..block_bytes(size, r.end - 1).end;
                bytes.end - bytes.start
            })
            .sum()
    }

    /// The same set as BLAKE3 chunk ranges for a blob of `size` bytes, in bao-tree's
    /// canonical form (a range that reaches the last chunk is open-ended, which is how the
    /// empty blob's single empty block is asked for).
    pub(crate) fn to_chunk_ranges(&self, size: u64) -> ChunkRanges {
        let mut out = ChunkRanges::empty();
        for r in &self.0 {
            let start = ChunkNum(r.start.saturating_mul(1 << BLOCK_CHUNK_LOG));
            let end = ChunkNum(r.end.saturating_mul(1 << BLOCK_CHUNK_LOG));
            out |= ChunkRanges::from(start..end);
        }
        let truncated = bao_tree::io::sync::truncate_ranges(&out, size);
        ChunkRanges::new(truncated.boundaries().iter().copied().collect())
            .expect("a prefix of valid boundaries is valid")
    }
}

impl FromIterator<Range<u64>> for BlockRanges {
    fn from_iter<I: IntoIterator<Item = Range<u64>>>(iter: I) -> Self {
        let mut set = Self::new();
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl fmt::Debug for BlockRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn block_geometry_covers_edge_sizes() {
        assert_eq!(block_count(0), 1);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(BLOCK_SIZE), 1);
        assert_eq!(block_count(BLOCK_SIZE + 1), 2);
        assert_eq!(block_bytes(BLOCK_SIZE + 1, 1), BLOCK_SIZE..BLOCK_SIZE + 1);
        assert_eq!(block_bytes(0, 0), 0..0);
        assert_eq!(blocks_for_bytes(0, 0..0), 0..1);
        assert_eq!(blocks_for_bytes(3 * BLOCK_SIZE, 1..BLOCK_SIZE + 1), 0..2);
        assert_eq!(blocks_for_bytes(3 * BLOCK_SIZE, 0..u64::MAX), 0..3);
    }

    #[test]
    fn byte_len_counts_the_short_last_block() {
        let size = 2 * BLOCK_SIZE + 10;
        assert_eq!(BlockRanges::all(size).byte_len(size), size);
        assert_eq!(BlockRanges::from_range(2..3).byte_len(size), 10);
    }

    proptest! {
        #[test]
        fn insert_matches_a_plain_set(ranges in prop::collection::vec((0u64..200, 0u64..20), 0..30)) {
            let mut set = BlockRanges::new();
            let mut plain = std::collections::BTreeSet::new();
            for (start, len) in ranges {
                set.insert(start..start + len);
                plain.extend(start..start + len);
            }
            for b in 0..230 {
                prop_assert_eq!(set.contains(b), plain.contains(&b));
            }
            prop_assert_eq!(set.block_count(), plain.len() as u64);
            // Normal form: sorted, disjoint, not touching.
            let v: Vec<_> = set.iter().collect();
            for w in v.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
        }
    }
}
