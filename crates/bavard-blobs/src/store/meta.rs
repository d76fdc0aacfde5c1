//! The `<hash>.meta` file: what the store knows about a blob, checksummed.
//!
//! ```text
//!  0..8    magic "bvblob\0\x01" (format version 1)
//!  8       flags: bit 0 complete, bit 1 pinned; other bits must be 0
//!  9..16   zero
//! 16..24   size, u64 little-endian
//! 24..32   last access, milliseconds since the Unix epoch, u64 little-endian
//! 32..40   n, the length of the bitfield that follows: 0 when complete, else ⌈blocks / 8⌉
//! 40..40+n bitfield of verified blocks (see bitfield.rs)
//! then     32 bytes: BLAKE3 of everything before
//! ```
//!
//! The file is replaced atomically (written beside, fsynced, renamed, directory fsynced), so
//! it is either the old or the new version, never a mix; the checksum catches the rest (a
//! truncated copy, a disk that returns garbage).

use crate::bitfield::Bitfield;
use crate::ranges::block_count;

const MAGIC: [u8; 8] = *b"bvblob\0\x01";
const HEADER_LEN: usize = 40;
const CHECKSUM_LEN: usize = 32;
const COMPLETE: u8 = 1;
const PINNED: u8 = 2;

/// What a meta file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) size: u64,
    pub(crate) pinned: bool,
    pub(crate) last_access_ms: u64,
    /// `None` when the blob is complete.
    pub(crate) verified: Option<Bitfield>,
}

/// Why a meta file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Shorter than a header and checksum.
    #[error("{0} bytes, shorter than any meta file")]
    TooShort(usize),
    /// Not a meta file of a version we know.
    #[error("not a bavard blob meta file (bad magic or version)")]
    BadMagic,
    /// The checksum does not match: the file is damaged.
    #[error("checksum mismatch: the file is damaged")]
    BadChecksum,
    /// A flag bit we do not know is set.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The size is over the store's limit, so we will not allocate for it.
    #[error("size {size} is over the limit of {max}")]
    TooLarge {
        /// The size in the file.
        size: u64,
        /// The store's limit.
        max: u64,
    },
    /// The bitfield's length does not fit the size (or the complete flag).
    #[error("a bitfield of {got} bytes does not fit {size} bytes ({expected} expected)")]
    BitfieldLength {
        /// The size in the file.
        size: u64,
        /// The length it needs.
        expected: u64,
        /// The length in the file.
        got: u64,
    },
}

impl Meta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let bits: &[u8] = self.verified.as_ref().map_or(&[], |b| b.as_bytes());
        let mut out = Vec::with_capacity(HEADER_LEN + bits.len() + CHECKSUM_LEN);
        out.extend_from_slice(&MAGIC);
        let mut flags = 0;
        if self.verified.is_none() {
            flags |= COMPLETE;
        }
        if self.pinned {
            flags |= PINNED;
        }
        out.push(flags);
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.last_access_ms.to_le_bytes());
        out.extend_from_slice(&(bits.len() as u64).to_le_bytes());
        out.extend_from_slice(bits);
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// The longest meta file a blob of at most `max_size` bytes has.
    pub(crate) fn max_len(max_size: u64) -> u64 {
        HEADER_LEN as u64 + Bitfield::byte_len(block_count(max_size)) + CHECKSUM_LEN as u64
    }

    pub(crate) fn decode(bytes: &[u8], max_size: u64) -> Result<Meta, MetaError> {
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(MetaError::TooShort(bytes.len()));
        }
        if bytes[..8] != MAGIC {
            return Err(MetaError::BadMagic);
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes()[..] != checksum[..] {
            return Err(MetaError::BadChecksum);
        }
        let flags = body[8];
        if flags & !(COMPLETE | PINNED) != 0 || body[9..16].iter().any(|&b| b != 0) {
            return Err(MetaError::UnknownFlags(flags));
        }
        let u64_at = |at: usize| {
            let mut le = [0u8; 8];
            le.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(le)
        };
        let size = u64_at(16);
        let last_access_ms = u64_at(24);
        let bits_len = u64_at(32);
        if size > max_size {
            return Err(MetaError::TooLarge {
                size,
                max: max_size,
            });
        }
        let complete = flags & COMPLETE != 0;
        let blocks = block_count(size);
        let expected = if complete {
            0
        } else {
            Bitfield::byte_len(blocks)
        };
        let got = (body.len() - HEADER_LEN) as u64;
        if bits_len != expected || got != expected {
            return Err(MetaError::BitfieldLength {
                size,
                expected,
                got: bits_len.max(got),
            });
        }
        let verified = if complete {
            None
        } else {
            let field = Bitfield::from_bytes(body[HEADER_LEN..].to_vec(), blocks).ok_or(
                MetaError::BitfieldLength {
                    size,
                    expected,
                    got,
                },
            )?;
            Some(field)
        };
        Ok(Meta {
            size,
            pinned: flags & PINNED != 0,
            last_access_ms,
            verified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::BLOCK_SIZE;

    const MAX: u64 = 1 << 40;

    fn partial() -> Meta {
        let mut bits = Bitfield::new(20);
        bits.set(3);
        bits.set(19);
        Meta {
            size: 20 * BLOCK_SIZE - 5,
            pinned: true,
            last_access_ms: 1234,
            verified: Some(bits),
        }
    }

    #[test]
    fn meta_round_trips() {
        for meta in [
            partial(),
            Meta {
                size: 0,
                pinned: false,
                last_access_ms: 0,
                verified: None,
            },
        ] {
            assert_eq!(Meta::decode(&meta.encode(), MAX), Ok(meta));
        }
    }

    #[test]
    fn damaged_meta_files_are_refused_with_what_is_wrong() {
        let good = partial().encode();
        assert_eq!(Meta::decode(&good[..10], MAX), Err(MetaError::TooShort(10)));
        assert_eq!(
            Meta::decode(&good[..good.len() - 1], MAX),
            Err(MetaError::BadChecksum)
        );
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(Meta::decode(&bad, MAX).is_err(), "flip at {at} accepted");
        }
        assert!(matches!(
            Meta::decode(&good, BLOCK_SIZE),
            Err(MetaError::TooLarge { .. })
        ));
        // A well-formed file whose bitfield does not fit its size.
        let mut meta = partial();
        meta.size = 100 * BLOCK_SIZE;
        assert!(matches!(
            Meta::decode(&meta.encode(), MAX),
            Err(MetaError::BitfieldLength { .. })
        ));
    }
}
