//! How the HTTP API and the CLI name a key's bytes.
//!
//! A key travels as one URL path segment, percent-decoded to bytes, then read as its
//! [`KeyEncoding`] says (the `key_encoding` query parameter):
//!
//! - `utf8` (the default): the segment's bytes are the key, and must be valid UTF-8;
//! - `hex`: the segment is hex digits (either case), e.g. `1220fffe`;
//! - `base64url`: URL-safe base64 (RFC 4648 §5), padding optional;
//! - `cid`: a CID (v0 `Qm…` or v1 in any multibase, e.g. `bafkrei…`); the key is its
//!   **multihash** bytes, as IPFS keys provider records and DHT records by content.
//!
//! The content routes (`/v1/providers/{key}`, `/v1/dht/{key}`) read a segment that parses as a
//! CID as one when no encoding is given ([`KeyRoute::Content`]), so an IPFS user names content
//! as IPFS does; `key_encoding=utf8` forces the string's own bytes. The KV routes never guess.

use std::fmt;

use base64::Engine as _;

/// How a key is written in a URL segment or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// The segment's bytes, which must be UTF-8.
    Utf8,
    /// Hex digits.
    Hex,
    /// URL-safe base64, padding optional.
    Base64Url,
    /// A CID; the key is its multihash.
    Cid,
}

impl KeyEncoding {
    /// The name used in `key_encoding=` and in answers.
    pub fn name(self) -> &'static str {
        match self {
            KeyEncoding::Utf8 => "utf8",
            KeyEncoding::Hex => "hex",
            KeyEncoding::Base64Url => "base64url",
            KeyEncoding::Cid => "cid",
        }
    }
}

impl std::str::FromStr for KeyEncoding {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "utf8" | "utf-8" => Ok(KeyEncoding::Utf8),
            "hex" => Ok(KeyEncoding::Hex),
            "base64url" => Ok(KeyEncoding::Base64Url),
            "cid" => Ok(KeyEncoding::Cid),
            other => Err(KeyError::UnknownEncoding(other.to_owned())),
        }
    }
}

impl fmt::Display for KeyEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rule a route reads its key with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRoute {
    /// KV: UTF-8 unless `key_encoding` says otherwise.
    Kv,
    /// Providers and DHT records: a CID if the segment parses as one, else UTF-8, unless
    /// `key_encoding` says otherwise.
    Content,
}

/// A key as the API received it: its bytes and how they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's bytes (for a CID, its multihash).
    pub bytes: Vec<u8>,
    /// How the request wrote it.
    pub encoding: KeyEncoding,
    /// The key as the request wrote it (percent-decoded; lossy for invalid UTF-8).
    pub written: String,
}

/// Why a key was refused. Each names the key as it was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `key_encoding` named no known encoding.
    #[error("unknown key_encoding {0:?} (use utf8, hex, base64url or cid)")]
    UnknownEncoding(String),
    /// The key is empty.
    #[error("the key is empty")]
    Empty,
    /// The segment is not UTF-8 and no binary encoding was given.
    #[error("key {0:?} is not valid UTF-8; write binary keys with key_encoding=hex or base64url")]
    NotUtf8(String),
    /// Not hex digits.
    #[error("key {0:?} is not hex (key_encoding=hex)")]
    BadHex(String),
    /// Not URL-safe base64.
    #[error("key {0:?} is not URL-safe base64 (key_encoding=base64url)")]
    BadBase64(String),
    /// Not a CID.
    #[error("key {0:?} is not a CID (key_encoding=cid): {1}")]
    BadCid(String, String),
    /// Longer than the node takes.
    #[error("key of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Decodes a raw (still percent-encoded) path segment into a key, by `encoding` if given, else
/// by the route's rule. `max_len` bounds the decoded key.
pub fn decode_segment(
    raw: &str,
    encoding: Option<KeyEncoding>,
    route: KeyRoute,
    max_len: usize,
) -> Result<ApiKey, KeyError> {
    let segment: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    let written = String::from_utf8_lossy(&segment).into_owned();
    if segment.is_empty() {
        return Err(KeyError::Empty);
    }
    let text = || std::str::from_utf8(&segment).map_err(|_| KeyError::NotUtf8(raw.to_owned()));
    let (bytes, encoding) = match encoding {
        Some(KeyEncoding::Utf8) => (text()?.as_bytes().to_vec(), KeyEncoding::Utf8),
        Some(KeyEncoding::Hex) => (
            hex::decode(text().map_err(|_| KeyError::BadHex(raw.to_owned()))?)
                .map_err(|_| KeyError::BadHex(written.clone()))?,
            KeyEncoding::Hex,
        ),
        Some(KeyEncoding::Base64Url) => {
            let s = text().map_err(|_| KeyError::BadBase64(raw.to_owned()))?;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| KeyError::BadBase64(written.clone()))?;
            (bytes, KeyEncoding::Base64Url)
        }
        Some(KeyEncoding::Cid) => {
            let s = text().map_err(|_| KeyError::BadCid(raw.to_owned(), "not UTF-8".into()))?;
            let hash = cid_multihash(s).map_err(|e| KeyError::BadCid(written.clone(), e))?;
            (hash, KeyEncoding::Cid)
        }
        None => {
            let s = text()?;
            match route {
                KeyRoute::Content if looks_like_cid(s) => match cid_multihash(s) {
                    Ok(hash) => (hash, KeyEncoding::Cid),
                    Err(_) => (s.as_bytes().to_vec(), KeyEncoding::Utf8),
                },
                _ => (s.as_bytes().to_vec(), KeyEncoding::Utf8),
            }
        }
    };
    if bytes.is_empty() {
        return Err(KeyError::Empty);
    }
    if bytes.len() > max_len {
        return Err(KeyError::TooLong {
            len: bytes.len(),
            max: max_len,
        });
    }
    Ok(ApiKey {
        bytes,
        encoding,
        written,
    })
}

/// Decodes a key given on the command line (not percent-encoded) with `encoding`, for callers
/// that need the bytes themselves (the API takes the written form and `key_encoding`).
pub fn decode_arg(arg: &str, encoding: KeyEncoding) -> Result<Vec<u8>, KeyError> {
    let raw = percent_encoding::utf8_percent_encode(arg, percent_encoding::NON_ALPHANUMERIC);
    decode_segment(&raw.to_string(), Some(encoding), KeyRoute::Kv, usize::MAX).map(|k| k.bytes)
}

/// Whether `s` is shaped like a CID: v0 (`Qm` + 44 base58 characters) or a multibase string
/// long enough to hold a v1 CID. Cheap; [`cid_multihash`] decides.
fn looks_like_cid(s: &str) -> bool {
    (s.len() == 46 && s.starts_with("Qm")) || (s.len() >= 10 && s.is_ascii() && !s.contains('/'))
}

/// The multihash bytes of the CID `s` (v0 or v1, any multibase).
pub fn cid_multihash(s: &str) -> Result<Vec<u8>, String> {
    let cid = cid::Cid::try_from(s).map_err(|e| e.to_string())?;
    Ok(cid.hash().to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CIDv1 (raw, sha2-256) of the bytes "hello world", and its CIDv0 twin's multihash.
    const CID_V1: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
    const HASH_HEX: &str = "1220b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    fn content(raw: &str, encoding: Option<KeyEncoding>) -> Result<ApiKey, KeyError> {
        decode_segment(raw, encoding, KeyRoute::Content, 1024)
    }

    #[test]
    fn a_cid_names_its_multihash_on_content_routes_only() {
        let k = content(CID_V1, None).unwrap();
        assert_eq!(hex::encode(&k.bytes), HASH_HEX);
        assert_eq!(k.encoding, KeyEncoding::Cid);
        // CIDv0 of the same content (dag-pb would differ; the multihash is what counts).
        let v0 = cid::Cid::new_v0(cid::multihash::Multihash::from_bytes(&k.bytes).unwrap())
            .unwrap()
            .to_string();
        assert_eq!(content(&v0, None).unwrap().bytes, k.bytes);
        // KV never guesses; and utf8 forces the string's bytes.
        let kv = decode_segment(CID_V1, None, KeyRoute::Kv, 1024).unwrap();
        assert_eq!(kv.bytes, CID_V1.as_bytes());
        let forced = content(CID_V1, Some(KeyEncoding::Utf8)).unwrap();
        assert_eq!(forced.bytes, CID_V1.as_bytes());
        // A word that is not a CID stays a word.
        let word = content("stock-provided", None).unwrap();
        assert_eq!(
            (word.bytes.as_slice(), word.encoding),
            (&b"stock-provided"[..], KeyEncoding::Utf8)
        );
    }

    #[test]
    fn binary_keys_round_trip_through_hex_and_base64url() {
        let hex = content("1220FFfe", Some(KeyEncoding::Hex)).unwrap();
        assert_eq!(hex.bytes, [0x12, 0x20, 0xff, 0xfe]);
        let b64 = content("EiD__g", Some(KeyEncoding::Base64Url)).unwrap();
        assert_eq!(b64.bytes, [0x12, 0x20, 0xff, 0xfe]);
        let padded = content("EiD__g%3D%3D", Some(KeyEncoding::Base64Url)).unwrap();
        assert_eq!(padded.bytes, b64.bytes);
        assert_eq!(decode_arg("1220fffe", KeyEncoding::Hex).unwrap(), hex.bytes);
    }

    #[test]
    fn malformed_keys_are_refused_with_an_error_naming_them() {
        let cases: [(&str, Option<KeyEncoding>, KeyError); 5] = [
            (
                "%12%20%ff%fe",
                None,
                KeyError::NotUtf8("%12%20%ff%fe".into()),
            ),
            (
                "12zz",
                Some(KeyEncoding::Hex),
                KeyError::BadHex("12zz".into()),
            ),
            (
                "123",
                Some(KeyEncoding::Hex),
                KeyError::BadHex("123".into()),
            ),
            (
                "a+b/",
                Some(KeyEncoding::Base64Url),
                KeyError::BadBase64("a+b/".into()),
            ),
            ("", None, KeyError::Empty),
        ];
        for (raw, encoding, want) in cases {
            let err = content(raw, encoding).unwrap_err();
            assert_eq!(err, want, "{raw}");
            assert!(err.to_string().contains(raw), "{err} names {raw}");
        }
        // A lone "%" is not an escape: it decodes to itself, a one-byte UTF-8 key.
        assert_eq!(content("%", None).unwrap().bytes, b"%");
        assert!(matches!(
            content("bafy-not-a-cid", Some(KeyEncoding::Cid)),
            Err(KeyError::BadCid(..))
        ));
        assert_eq!(
            content("abcd", Some(KeyEncoding::Hex)).map(|k| k.bytes),
            Ok(vec![0xab, 0xcd])
        );
        assert_eq!(
            decode_segment("abcdef", None, KeyRoute::Kv, 4),
            Err(KeyError::TooLong { len: 6, max: 4 })
        );
        assert!(matches!(
            "nope".parse::<KeyEncoding>(),
            Err(KeyError::UnknownEncoding(_))
        ));
    }
}
