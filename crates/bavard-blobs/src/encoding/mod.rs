//! BLAKE3 verified streaming: the tree over a blob, encoding ranges with their proofs, and
//! verifying them block by block as they arrive.
//!
//! # The tree
//!
//! BLAKE3 already hashes its input as a binary Merkle tree: 1 KiB chunks are the leaves, each
//! parent is the compression of its two children, and the root is the hash. Bao (Jack
//! O'Connor's "verified streaming") stores the inner nodes beside the data (the *outboard*),
//! so that any range can be sent with the sibling hashes on its path to the root and checked
//! piece by piece against the root hash alone. bavard uses bao-tree's variant with **chunk
//! groups**: the tree is only kept down to groups of 16 chunks (16 KiB, a *block*), so the
//! outboard costs 64 bytes per 16 KiB (0.4 % of the data) instead of 6 %, and a block is the
//! smallest piece that can be verified, stored or sent on its own.
//!
//! The outboard is stored in *pre-order* (bao's layout): parent `n` of the tree (numbered in a
//! depth-first, left-to-right walk) is the 64 bytes `left ‖ right` at offset `64 · n`, and a
//! blob of `b` blocks has `b − 1` parents. Unwritten parents read as zeros, which never verify.
//!
//! # A range response
//!
//! For the blocks asked for, the sender walks the tree in pre-order and sends each parent on
//! the way (64 bytes) before the blocks below it, then each block's bytes. The receiver knows
//! the root hash and the blob size, hence the tree's shape, hence exactly what comes next; it
//! checks every parent against the hash its own parent vouched for, and every block against
//! its parent's half. So the first corrupted byte is caught at the block (or parent) that
//! holds it, before anything after it is even read: [`RangeDecoder`] reports it as a
//! [`DecodeError`] naming the block, and yields only [`VerifiedBlock`]s, which the store
//! ([`crate::store`]) takes as its only way to write fetched data.
//!
//! Each block travels in one *frame*: the parents that precede it and its bytes, at most
//! [`MAX_FRAME_LEN`] bytes, so the receiver buffers one frame at a time.
//!
//! # The size
//!
//! A response is checked against a claimed size: the size fixes the tree's shape. A range on
//! the left of the tree can verify under a wrong size (the left subtree is the same for many
//! sizes), so a size is only proven by the **last block** verifying under it: its position
//! (BLAKE3 hashes each chunk's index) and its length are bound to the root. A fetch therefore
//! starts with a size proof ([`encode_size_proof`], [`verify_size_proof`]) before it trusts a
//! size or allocates anything.
//!
//! # Why BLAKE3 and bao-tree rather than BitTorrent v2's SHA-256 tree
//!
//! Both give per-16-KiB verification against one root. We chose BLAKE3 because:
//!
//! - **The name is the plain content hash.** The root of the BLAKE3 tree *is* `BLAKE3(content)`,
//!   whatever the chunk group size, so a blob's name is what `b3sum` prints and wraps as a
//!   standard multihash (0x1e) and raw CID (0x55) that any multiformats tool checks without
//!   knowing our tree. BitTorrent v2's root is a Merkle root over zero-padded 16 KiB leaves
//!   (`pieces root`), which is *not* `SHA-256(content)`: a sha2-256 (0x12) CID over it would lie
//!   about what it hashes, and checking it needs BitTorrent's tree code anyway.
//! - **A maintained library made for exactly this job.** bao-tree (n0, used in production by
//!   iroh-blobs) gives the tree geometry, outboards and range encoding with chunk groups; its
//!   wire encoding is iroh's, so the format has been exercised far beyond our tests. We use it
//!   without its tokio and fs features and drive it from our own sans-IO decoder.
//! - **Speed.** BLAKE3 hashes several GB/s per core (SIMD), SHA-256 a few hundred MB/s without
//!   SHA extensions; on the 2-core machines we run on, hashing must not be the bottleneck of a
//!   256 MiB swarm fetch.
//! - **Same granularity, same overhead.** 16 KiB blocks and 64 bytes of tree per block, as
//!   BitTorrent v2; arbitrary block ranges are provable, not just whole pieces.
//!
//! What we give up: BitTorrent v2 interop (not a goal: blobs travel over `/bavard/blobs/1`), and
//! SHA-256's wider hardware support; BLAKE3's security margin is the accepted one of iroh,
//! IPFS (blake3 multihash) and Bao.

mod decode;
mod encode;
mod outboard;

pub use decode::{DecodeError, RangeDecoder, VerifiedBlock, verify_size_proof};
pub use encode::{BlobSource, EncodeError, MemBlob, RangeEncoder, encode_size_proof};
pub use outboard::{Outboard, OutboardError, compute_outboard, hash_reader};

pub(crate) use outboard::{outboard_len, write_outboard};

/// The largest frame a block is sent in: 16 KiB of data and up to 64 parents of 64 bytes (a
/// tree over 2^64 bytes has fewer than 64 levels above the blocks).
pub const MAX_FRAME_LEN: usize = crate::ranges::BLOCK_SIZE as usize + 64 * 64;

#[cfg(test)]
mod tests;
