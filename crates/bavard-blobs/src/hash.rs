//! A blob's name: the BLAKE3 hash of its content, and its multihash / CID forms.

use std::fmt;
use std::str::FromStr;

/// The multicodec code of the BLAKE3 hash function in a multihash (`blake3`, 0x1e).
pub const MULTIHASH_BLAKE3: u8 = 0x1e;

/// The multicodec code of raw binary content in a CID (`raw`, 0x55).
pub const MULTICODEC_RAW: u8 = 0x55;

/// The length of a BLAKE3 digest, in bytes.
pub const HASH_LEN: usize = 32;

/// The name of a blob: the plain BLAKE3 hash of its bytes, 32 bytes.
///
/// It is the same value `b3sum` prints for the file and the same digest iroh-blobs names
/// the content by: the verification tree (see [`crate::encoding`]) changes how the hash is
/// *checked* piece by piece, not what it is. So the hash can be computed by anyone without
/// this crate, and wrapped as a standard multihash ([`multihash`](Self::multihash)) and CID
/// ([`cid_v1_raw`](Self::cid_v1_raw)) without any bavard-specific code.
///
/// Displayed and parsed as 64 lowercase hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobHash([u8; HASH_LEN]);

impl BlobHash {
    /// The hash of the empty blob.
    pub const EMPTY: BlobHash = BlobHash([
        0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9,
        0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f,
        0x32, 0x62,
    ]);

    /// Wraps a digest.
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        BlobHash(bytes)
    }

    /// Hashes `data` in memory (for small values; use [`crate::encoding::hash_reader`] or the
    /// store for anything large).
    pub fn of(data: &[u8]) -> Self {
        BlobHash(*blake3::hash(data).as_bytes())
    }

    /// The 32 digest bytes.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// The digest as a multihash: `0x1e` (blake3), `0x20` (32 bytes), digest.
    ///
    /// Both codes are below 0x80, so each varint is one byte.
    pub fn multihash(&self) -> [u8; 2 + HASH_LEN] {
        let mut out = [0u8; 2 + HASH_LEN];
        out[0] = MULTIHASH_BLAKE3;
        out[1] = HASH_LEN as u8;
        out[2..].copy_from_slice(&self.0);
        out
    }

    /// Parses a multihash, which must be a 32-byte blake3 one.
    pub fn from_multihash(bytes: &[u8]) -> Result<Self, ParseHashError> {
        match bytes {
            [MULTIHASH_BLAKE3, 32, digest @ ..] => Self::try_from(digest),
            [MULTIHASH_BLAKE3, ..] => Err(ParseHashError::Length(bytes.len().saturating_sub(2))),
            _ => Err(ParseHashError::NotBlake3Multihash),
        }
    }

    /// The binary CIDv1 naming this blob as raw content: `0x01` (version), `0x55` (raw),
    /// then the [`multihash`](Self::multihash). Its usual text form is multibase base32
    /// (`b…`), which is left to the caller (issue 19).
    pub fn cid_v1_raw(&self) -> [u8; 4 + HASH_LEN] {
        let mut out = [0u8; 4 + HASH_LEN];
        out[0] = 0x01;
        out[1] = MULTICODEC_RAW;
        out[2..].copy_from_slice(&self.multihash());
        out
    }

    /// Lowercase hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn to_blake3(self) -> blake3::Hash {
        blake3::Hash::from_bytes(self.0)
    }
}

impl From<blake3::Hash> for BlobHash {
    fn from(hash: blake3::Hash) -> Self {
        BlobHash(*hash.as_bytes())
    }
}

impl TryFrom<&[u8]> for BlobHash {
    type Error = ParseHashError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let digest: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| ParseHashError::Length(bytes.len()))?;
        Ok(BlobHash(digest))
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short enough for logs and test failures, long enough to tell blobs apart.
        write!(f, "BlobHash({}…)", &self.to_hex()[..12])
    }
}

impl FromStr for BlobHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 2 * HASH_LEN {
            return Err(ParseHashError::HexLength(s.len()));
        }
        let mut digest = [0u8; HASH_LEN];
        hex::decode_to_slice(s, &mut digest).map_err(|_| ParseHashError::NotHex)?;
        Ok(BlobHash(digest))
    }
}

/// Why bytes or text are not a blob hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHashError {
    /// A digest must be exactly 32 bytes.
    #[error("a blob hash is 32 bytes, got {0}")]
    Length(usize),
    /// The text form is 64 hexadecimal digits.
    #[error("a blob hash is 64 hexadecimal digits, got {0} characters")]
    HexLength(usize),
    /// The text has a character that is not a hexadecimal digit.
    #[error("a blob hash is hexadecimal; found another character")]
    NotHex,
    /// The multihash names another hash function than blake3 (0x1e).
    #[error("not a blake3 multihash (code 0x1e)")]
    NotBlake3Multihash,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hash_is_blake3_of_nothing() {
        assert_eq!(BlobHash::of(b""), BlobHash::EMPTY);
        assert_eq!(
            BlobHash::EMPTY.to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn hex_round_trips_and_bad_text_is_refused() {
        let h = BlobHash::of(b"bavard");
        assert_eq!(h.to_string().parse::<BlobHash>(), Ok(h));
        assert_eq!("abc".parse::<BlobHash>(), Err(ParseHashError::HexLength(3)));
        let not_hex = "z".repeat(64);
        assert_eq!(not_hex.parse::<BlobHash>(), Err(ParseHashError::NotHex));
    }

    #[test]
    fn multihash_and_cid_carry_the_multiformats_codes() {
        let h = BlobHash::of(b"bavard");
        let mh = h.multihash();
        assert_eq!(&mh[..2], &[0x1e, 0x20]);
        assert_eq!(BlobHash::from_multihash(&mh), Ok(h));
        let cid = h.cid_v1_raw();
        assert_eq!(&cid[..4], &[0x01, 0x55, 0x1e, 0x20]);
        assert_eq!(&cid[4..], h.as_bytes());
        let mut sha = mh;
        sha[0] = 0x12;
        assert_eq!(
            BlobHash::from_multihash(&sha),
            Err(ParseHashError::NotBlake3Multihash)
        );
        assert_eq!(
            BlobHash::from_multihash(&mh[..20]),
            Err(ParseHashError::Length(18))
        );
    }
}
