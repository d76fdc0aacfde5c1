//! Computing a blob's hash and outboard from a reader, in one streaming pass.

use std::io::{self, Read};

use bao_tree::BaoTree;
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::WriteAt;

use crate::hash::BlobHash;
use crate::ranges::BAO_BLOCK_SIZE;

/// A blob's outboard held in memory: the parents of its tree in pre-order, 64 bytes each.
///
/// About 1/256 of the blob's size (4 MiB for 1 GiB). The store keeps outboards in files;
/// this form is for hashing in memory, tests, and small blobs.
#[derive(Clone, PartialEq, Eq)]
pub struct Outboard {
    hash: BlobHash,
    size: u64,
    bytes: Vec<u8>,
}

impl Outboard {
    /// Checks that `bytes` has the length a blob of `size` bytes needs (its content is
    /// checked only when used: a wrong parent fails verification).
    pub fn from_parts(hash: BlobHash, size: u64, bytes: Vec<u8>) -> Result<Self, OutboardError> {
        let expected = outboard_len(size);
        if bytes.len() as u64 != expected {
            return Err(OutboardError::Length {
                size,
                expected,
                got: bytes.len() as u64,
            });
        }
        Ok(Outboard { hash, size, bytes })
    }

    /// The root hash: the blob's name.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The pre-order parents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for Outboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outboard")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Why an outboard does not fit its blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboardError {
    /// An outboard of a blob of `size` bytes is `64 · (blocks − 1)` bytes long.
    #[error("an outboard for {size} bytes is {expected} bytes long, got {got}")]
    Length {
        /// The blob's size.
        size: u64,
        /// The length it needs.
        expected: u64,
        /// The length given.
        got: u64,
    },
}

/// The length of the outboard of a blob of `size` bytes.
pub(crate) fn outboard_len(size: u64) -> u64 {
    BaoTree::new(size, BAO_BLOCK_SIZE).outboard_size()
}

/// Reads exactly `size` bytes from `reader` (16 KiB at a time) and returns the blob's hash
/// and outboard. A reader that ends early is an [`io::ErrorKind::UnexpectedEof`] error;
/// bytes after `size` are not read.
///
/// The size must be known up front because it fixes the tree's shape; to hash a stream of
/// unknown length, spool it somewhere first ([`crate::store::Store::add_reader`] does this
/// into the data file) or use [`hash_reader`] for the hash alone.
pub fn compute_outboard(reader: impl Read, size: u64) -> io::Result<Outboard> {
    let mut bytes = Vec::new();
    let hash = write_outboard(reader, size, &mut bytes)?;
    // The Vec grows only to the offsets bao-tree writes; pad in case the last write was
    // not the highest one (never the case today, but cheap to guarantee).
    bytes.resize(outboard_len(size) as usize, 0);
    Ok(Outboard { hash, size, bytes })
}

/// Streams `size` bytes from `reader` and writes the pre-order outboard into `target`
/// (positioned writes), returning the root hash.
pub(crate) fn write_outboard<W: WriteAt>(
    reader: impl Read,
    size: u64,
    target: W,
) -> io::Result<BlobHash> {
    let tree = BaoTree::new(size, BAO_BLOCK_SIZE);
    let mut outboard = PreOrderOutboard {
        root: blake3::Hash::from_bytes([0; 32]),
        tree,
        data: target,
    };
    let root = bao_tree::io::sync::outboard(reader, tree, &mut outboard)?;
    Ok(root.into())
}

/// The hash and length of everything `reader` yields, without an outboard and without
/// knowing the length in advance (BLAKE3's incremental hasher).
pub fn hash_reader(mut reader: impl Read) -> io::Result<(BlobHash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((hasher.finalize().into(), len))
}
