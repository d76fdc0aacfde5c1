//! Content-addressed blobs (placeholder docs).

pub mod encoding;
pub mod hash;
pub mod ranges;

pub use hash::BlobHash;
pub use ranges::{BLOCK_SIZE, BlockRanges};
