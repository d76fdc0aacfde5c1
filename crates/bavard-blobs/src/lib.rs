//! Content-addressed blobs (placeholder docs).

mod bitfield;
pub mod encoding;
pub mod hash;
pub mod protocol;
pub mod ranges;
pub mod store;
pub mod swarm;

pub use hash::BlobHash;
pub use ranges::{BLOCK_SIZE, BlockRanges};
