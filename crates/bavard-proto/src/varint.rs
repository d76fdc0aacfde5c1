//! Unsigned LEB128 varints, as the multiformats `unsigned-varint` spec defines them.
//!
//! Seven bits per byte, least significant group first; the high bit of each byte says
//! another byte follows. libp2p prefixes every Kademlia message with its length in this
//! encoding. A `u64` needs at most [`MAX_LEN`] bytes, so the decoder never looks further
//! than that: a hostile peer cannot make it scan an unbounded prefix.
//!
//! The decoder is strict, like rust-libp2p's `unsigned-varint` crate: it rejects encodings
//! longer than 10 bytes or above `u64::MAX` ([`FrameError::VarintOverflow`]) and
//! non-minimal ones such as `0x80 0x00` for 0 ([`FrameError::NonMinimalVarint`]), so every
//! value has exactly one accepted encoding.

use crate::framing::FrameError;

/// The most bytes a `u64` varint can take: ⌈64 / 7⌉.
pub const MAX_LEN: usize = 10;

/// Appends the varint encoding of `value` to `out`.
pub fn encode(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        // Truncation is the point: keep the low seven bits, flag a continuation.
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The number of bytes [`encode`] writes for `value` (1 to [`MAX_LEN`]).
pub fn encoded_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Decodes a varint from the start of `input`.
///
/// Returns `Ok(Some((value, bytes_read)))` for a complete varint, `Ok(None)` when `input`
/// ends before the varint does (fewer than [`MAX_LEN`] bytes, all with the continuation
/// bit), and an error for an overlong, overflowing or non-minimal encoding. Reads at most
/// [`MAX_LEN`] bytes of `input`.
pub fn decode(input: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().take(MAX_LEN).enumerate() {
        let group = u64::from(byte & 0x7f);
        // The tenth byte carries bit 63 only; anything more overflows a u64, and a
        // continuation bit there would make the varint longer than any u64 needs.
        if i == MAX_LEN - 1 && (byte & 0x80 != 0 || group > 1) {
            return Err(FrameError::VarintOverflow);
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            // A final zero group after other groups adds nothing: a longer-than-needed
            // encoding, which the spec forbids.
            if i > 0 && byte == 0 {
                return Err(FrameError::NonMinimalVarint);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    #[test]
    fn known_values_encode_as_the_multiformats_spec_shows() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(1), [0x01]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(128), [0x80, 0x01]);
        assert_eq!(encoded(255), [0xff, 0x01]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(encoded(16384), [0x80, 0x80, 0x01]);
        assert_eq!(encoded(u64::MAX).len(), MAX_LEN);
    }

    #[test]
    fn incomplete_varint_asks_for_more_bytes() {
        assert_eq!(decode(&[]).unwrap(), None);
        assert_eq!(decode(&[0x80]).unwrap(), None);
        assert_eq!(decode(&[0xff; MAX_LEN - 1]).unwrap(), None);
    }

    #[test]
    fn eleven_byte_varint_is_an_overflow_not_a_request_for_more() {
        assert!(matches!(
            decode(&[0xff; 11]),
            Err(FrameError::VarintOverflow)
        ));
        // Ten bytes whose last still has the continuation bit: already overlong.
        assert!(matches!(
            decode(&[0x80; MAX_LEN]),
            Err(FrameError::VarintOverflow)
        ));
    }

    #[test]
    fn value_above_u64_max_is_an_overflow() {
        let mut bytes = [0xff; MAX_LEN];
        bytes[MAX_LEN - 1] = 0x02; // bit 64
        assert!(matches!(decode(&bytes), Err(FrameError::VarintOverflow)));
        bytes[MAX_LEN - 1] = 0x01;
        assert_eq!(decode(&bytes).unwrap(), Some((u64::MAX, MAX_LEN)));
    }

    #[test]
    fn non_minimal_encodings_are_rejected() {
        assert!(matches!(
            decode(&[0x80, 0x00]),
            Err(FrameError::NonMinimalVarint)
        ));
        assert!(matches!(
            decode(&[0x81, 0x80, 0x00]),
            Err(FrameError::NonMinimalVarint)
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_u64_roundtrips_and_trailing_bytes_are_left_alone(
            value: u64,
            trailing in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut bytes = encoded(value);
            prop_assert_eq!(bytes.len(), encoded_len(value));
            let len = bytes.len();
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(decode(&bytes).unwrap(), Some((value, len)));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_read_past_ten_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            if let Ok(Some((value, len))) = decode(&bytes) {
                prop_assert!(len <= MAX_LEN);
                prop_assert_eq!(&encoded(value)[..], &bytes[..len]);
            }
        }
    }
}
