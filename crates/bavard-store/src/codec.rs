//! The persistent row encoding: small, hand-written, versioned, decoded defensively.
//!
//! Every row starts with a format byte ([`FORMAT_V1`]) so a later format can coexist with old
//! rows. Integers are big-endian; byte strings are a `u32` length then the bytes. A record row
//! (the key is the table key, not repeated in the row):
//!
//! ```text
//! u8  format = 1
//! u64 version.hlc
//! u32 len, [u8] version.writer
//! u8  value tag: 0 = Data (u32 len, [u8] bytes) | 1 = Tombstone (u64 deleted_at_ms)
//!                | 2 = Blob ([u8; 32] BLAKE3 hash, u64 size)
//! u8  publisher tag: 0 = none | 1 = (u32 len, [u8] publisher)
//! u8  expiry tag: 0 = none | 1 = (u64 expires_at_ms)
//! ```
//!
//! A provider row (the table key is [`provider_key`]):
//!
//! ```text
//! u8  format = 1
//! u64 expires_at_ms
//! u32 count, count × (u32 len, [u8] addr)
//! ```
//!
//! Decoding never panics and never allocates more than the row's own length: truncation, an
//! unknown format or tag, and trailing bytes are each a [`DecodeError`].

use crate::provider::ProviderRecord;
use crate::record::{Record, Value};
use crate::version::Version;

/// The current row format.
pub const FORMAT_V1: u8 = 1;

/// Why a stored row could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The row ended before a field did.
    #[error("row truncated: {field} needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes it needed.
        needed: usize,
        /// Bytes left in the row.
        remaining: usize,
    },
    /// The row's format byte is not one this version understands.
    #[error("unknown row format {0}")]
    UnknownFormat(u8),
    /// A tag byte has no meaning.
    #[error("invalid tag {tag} for {field}")]
    InvalidTag {
        /// The field.
        field: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// Bytes remain after the last field.
    #[error("{0} trailing bytes after the row")]
    TrailingBytes(usize),
}

/// Encodes a record's row (everything but the key, which is the table key).
pub(crate) fn encode_record(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + record.data().map_or(0, <[u8]>::len));
    out.push(FORMAT_V1);
    out.extend_from_slice(&record.version.hlc.to_be_bytes());
    put_bytes(&mut out, &record.version.writer);
    match &record.value {
        Value::Data(bytes) => {
            out.push(0);
            put_bytes(&mut out, bytes);
        }
        Value::Tombstone { deleted_at_ms } => {
            out.push(1);
            out.extend_from_slice(&deleted_at_ms.to_be_bytes());
        }
        Value::Blob { hash, size } => {
            out.push(2);
            out.extend_from_slice(hash);
            out.extend_from_slice(&size.to_be_bytes());
        }
    }
    match &record.publisher {
        None => out.push(0),
        Some(publisher) => {
            out.push(1);
            put_bytes(&mut out, publisher);
        }
    }
    match record.expires_at_ms {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            out.extend_from_slice(&at.to_be_bytes());
        }
    }
    out
}

/// Decodes a record row stored under `key`.
pub(crate) fn decode_record(key: &[u8], row: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader(row);
    r.format()?;
    let hlc = r.u64("version.hlc")?;
    let writer = r.bytes("version.writer")?.to_vec();
    let value = match r.u8("value tag")? {
        0 => Value::Data(r.bytes("value")?.to_vec()),
        1 => Value::Tombstone {
            deleted_at_ms: r.u64("deleted_at_ms")?,
        },
        2 => {
            let hash = r.array::<32>("blob hash")?;
            Value::Blob {
                hash,
                size: r.u64("blob size")?,
            }
        }
        tag => {
            return Err(DecodeError::InvalidTag {
                field: "value",
                tag,
            });
        }
    };
    let publisher = match r.u8("publisher tag")? {
        0 => None,
        1 => Some(r.bytes("publisher")?.to_vec()),
        tag => {
            return Err(DecodeError::InvalidTag {
                field: "publisher",
                tag,
            });
        }
    };
    let expires_at_ms = match r.u8("expiry tag")? {
        0 => None,
        1 => Some(r.u64("expires_at_ms")?),
        tag => {
            return Err(DecodeError::InvalidTag {
                field: "expiry",
                tag,
            });
        }
    };
    r.finish()?;
    Ok(Record {
        key: key.to_vec(),
        value,
        publisher,
        expires_at_ms,
        version: Version { hlc, writer },
    })
}

/// The provider table key: `u32 key_len ‖ key ‖ provider`. The length prefix makes
/// [`provider_prefix`] select exactly one key's providers.
pub(crate) fn provider_key(key: &[u8], provider: &[u8]) -> Vec<u8> {
    let mut out = provider_prefix(key);
    out.extend_from_slice(provider);
    out
}

/// The prefix shared by all of `key`'s rows in the provider table.
pub(crate) fn provider_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + 48);
    put_bytes(&mut out, key);
    out
}

/// Splits a provider table key into `(key, provider)`.
pub(crate) fn split_provider_key(table_key: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader(table_key);
    let key = r.bytes("provider key")?;
    Ok((key, r.0))
}

/// Encodes a provider row (expiry and addresses).
pub(crate) fn encode_provider(record: &ProviderRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + record.addrs.iter().map(|a| 4 + a.len()).sum::<usize>());
    out.push(FORMAT_V1);
    out.extend_from_slice(&record.expires_at_ms.to_be_bytes());
    put_len(&mut out, record.addrs.len());
    for addr in &record.addrs {
        put_bytes(&mut out, addr);
    }
    out
}

/// Decodes a provider row stored under the table key `table_key`.
pub(crate) fn decode_provider(table_key: &[u8], row: &[u8]) -> Result<ProviderRecord, DecodeError> {
    let (key, provider) = split_provider_key(table_key)?;
    let mut r = Reader(row);
    r.format()?;
    let expires_at_ms = r.u64("expires_at_ms")?;
    let count = r.u32("address count")? as usize;
    // Each address takes at least its 4-byte length, so a corrupt count cannot make us allocate
    // more than the row's length.
    let mut addrs = Vec::with_capacity(count.min(r.0.len() / 4));
    for _ in 0..count {
        addrs.push(r.bytes("address")?.to_vec());
    }
    r.finish()?;
    Ok(ProviderRecord {
        key: key.to_vec(),
        provider: provider.to_vec(),
        addrs,
        expires_at_ms,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Limits keep every length far below 4 GiB; saturate rather than wrap if misconfigured, so
    // an oversized field yields a row that fails to decode instead of one that decodes wrongly.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A cursor over a row that returns errors instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, needed: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < needed {
            return Err(DecodeError::Truncated {
                field,
                needed,
                remaining: self.0.len(),
            });
        }
        let (head, tail) = self.0.split_at(needed);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        self.take(field, len)
    }

    fn format(&mut self) -> Result<(), DecodeError> {
        match self.u8("format")? {
            FORMAT_V1 => Ok(()),
            other => Err(DecodeError::UnknownFormat(other)),
        }
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.0.len()))
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::HlcTimestamp;
    use proptest::prelude::*;

    fn sample() -> Record {
        Record::new(
            b"key".to_vec(),
            b"value".to_vec(),
            Version::new(HlcTimestamp::new(42, 3), b"writer".to_vec()),
        )
        .with_publisher(b"pub".to_vec())
        .with_expiry(1_000)
    }

    #[test]
    fn record_round_trips() {
        let r = sample();
        assert_eq!(decode_record(b"key", &encode_record(&r)), Ok(r));
        let t = Record::tombstone(b"k".to_vec(), 7, Version::default());
        assert_eq!(decode_record(b"k", &encode_record(&t)), Ok(t));
        let b = Record::blob_ref(b"k".to_vec(), [9; 32], 5 << 20, Version::default());
        let row = encode_record(&b);
        assert_eq!(decode_record(b"k", &row), Ok(b));
        for len in 0..row.len() {
            assert!(decode_record(b"k", &row[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn provider_round_trips_and_key_splits() {
        let p = ProviderRecord::new(
            b"key".to_vec(),
            b"peer".to_vec(),
            vec![vec![1, 2], vec![]],
            9,
        );
        let tk = provider_key(&p.key, &p.provider);
        assert!(tk.starts_with(&provider_prefix(b"key")));
        assert!(!tk.starts_with(&provider_prefix(b"ke")));
        assert_eq!(decode_provider(&tk, &encode_provider(&p)), Ok(p));
    }

    #[test]
    fn every_truncation_of_a_row_is_an_error() {
        let row = encode_record(&sample());
        for len in 0..row.len() {
            assert!(decode_record(b"key", &row[..len]).is_err(), "prefix {len}");
        }
        let p = ProviderRecord::new(b"k".to_vec(), b"p".to_vec(), vec![vec![1; 5]], 1);
        let row = encode_provider(&p);
        for len in 0..row.len() {
            assert!(decode_provider(&provider_key(b"k", b"p"), &row[..len]).is_err());
        }
    }

    #[test]
    fn unknown_format_bad_tag_and_trailing_bytes_are_typed_errors() {
        let mut row = encode_record(&sample());
        row.push(0);
        assert_eq!(
            decode_record(b"key", &row),
            Err(DecodeError::TrailingBytes(1))
        );
        row[0] = 9;
        assert_eq!(
            decode_record(b"key", &row),
            Err(DecodeError::UnknownFormat(9))
        );
        let mut row = encode_record(&Record::tombstone(b"k".to_vec(), 1, Version::default()));
        // format(1) + hlc(8) + writer len(4) + writer(0) = 13: the value tag.
        row[13] = 7;
        assert_eq!(
            decode_record(b"k", &row),
            Err(DecodeError::InvalidTag {
                field: "value",
                tag: 7
            })
        );
    }

    #[test]
    fn huge_address_count_does_not_allocate_and_fails() {
        let mut row = vec![FORMAT_V1];
        row.extend_from_slice(&0u64.to_be_bytes());
        row.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_provider(&provider_key(b"k", b"p"), &row),
            Err(DecodeError::Truncated { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_accepts_only_canonical_rows(
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            table_key in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            // Most rows start with the right format byte so the decoder gets past it.
            let mut row = vec![FORMAT_V1];
            row.extend_from_slice(&tail);
            if let Ok(record) = decode_record(b"k", &row) {
                prop_assert_eq!(encode_record(&record), row.clone());
            }
            if let Ok(provider) = decode_provider(&table_key, &row) {
                prop_assert_eq!(encode_provider(&provider), row);
            }
        }
    }
}
