//! A set of blocks, one bit per block: the store's verified blocks, the scheduler's
//! verified and requested blocks.

use crate::ranges::BlockRanges;

/// One bit per block, bit `i % 8` of byte `i / 8` for block `i`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Bitfield {
    bits: Vec<u8>,
    len: u64,
    ones: u64,
}

impl Bitfield {
    /// The number of bytes a bitfield of `len` bits takes.
    pub(crate) fn byte_len(len: u64) -> u64 {
        len.div_ceil(8)
    }

    /// `len` bits, all clear.
    pub(crate) fn new(len: u64) -> Self {
        Bitfield {
            bits: vec![0; Self::byte_len(len) as usize],
            len,
            ones: 0,
        }
    }

    /// `len` bits, all set.
    pub(crate) fn full(len: u64) -> Self {
        let mut field = Self::new(len);
        for i in 0..len {
            field.set(i);
        }
        field
    }

    /// Reads `len` bits from `bytes`, which must be exactly long enough and have no bit set
    /// past `len` (a set padding bit means the bytes are not ours).
    pub(crate) fn from_bytes(bytes: Vec<u8>, len: u64) -> Option<Self> {
        if bytes.len() as u64 != Self::byte_len(len) {
            return None;
        }
        let tail = len % 8;
        if tail != 0 && bytes.last().is_some_and(|&b| b >> tail != 0) {
            return None;
        }
        let ones = bytes.iter().map(|b| u64::from(b.count_ones())).sum();
        Some(Bitfield {
            bits: bytes,
            len,
            ones,
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    pub(crate) fn get(&self, i: u64) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether it was clear.
    pub(crate) fn set(&mut self, i: u64) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] |= 1 << (i % 8);
        self.ones += 1;
        true
    }

    /// Clears bit `i`; returns whether it was set.
    pub(crate) fn clear(&mut self, i: u64) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] &= !(1 << (i % 8));
        self.ones -= 1;
        true
    }

    pub(crate) fn count_ones(&self) -> u64 {
        self.ones
    }

    pub(crate) fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// The set bits as ranges.
    pub(crate) fn to_ranges(&self) -> BlockRanges {
        let mut out = BlockRanges::new();
        let mut i = 0;
        while i < self.len {
            // Skip whole bytes of zeros or ones quickly: bitfields of big blobs are long.
            let byte = self.bits[(i / 8) as usize];
            if i % 8 == 0 && byte == 0 {
                i += 8;
                continue;
            }
            if self.get(i) {
                let start = i;
                while i < self.len && self.get(i) {
                    i += if i % 8 == 0 && self.bits[(i / 8) as usize] == 0xff && i + 8 <= self.len {
                        8
                    } else {
                        1
                    };
                }
                out.insert(start..i);
            } else {
                i += 1;
            }
        }
        out
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn padding_bits_must_be_clear() {
        assert!(Bitfield::from_bytes(vec![0b0000_0111], 3).is_some());
        assert!(Bitfield::from_bytes(vec![0b0000_1111], 3).is_none());
        assert!(Bitfield::from_bytes(vec![0, 0], 3).is_none());
        assert_eq!(Bitfield::full(10).count_ones(), 10);
    }

    proptest! {
        #[test]
        fn ranges_match_the_bits(len in 1u64..300, set in prop::collection::vec(0u64..300, 0..200)) {
            let mut field = Bitfield::new(len);
            for &i in &set {
                field.set(i);
            }
            let ranges = field.to_ranges();
            for i in 0..len {
                prop_assert_eq!(ranges.contains(i), field.get(i));
            }
            prop_assert_eq!(ranges.block_count(), field.count_ones());
            let again = Bitfield::from_bytes(field.as_bytes().to_vec(), len).unwrap();
            prop_assert_eq!(again, field);
        }
    }
}
