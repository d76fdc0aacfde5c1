//! Content-addressed blobs (placeholder docs).

pub mod encoding;
pub mod hash;
pub mod ranges;
pub mod store;

pub use hash::BlobHash;
pub use ranges::{BLOCK_SIZE, BlockRanges};
