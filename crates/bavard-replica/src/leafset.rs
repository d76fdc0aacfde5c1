//! [`LeafSet`]: a set of leaves of the key-hash space, as a bitmap.

use bavard_store::LEAF_COUNT;

/// Bytes of a [`LeafSet`] on the wire: one bit per leaf.
pub const LEAF_SET_BYTES: usize = LEAF_COUNT / 8;

const WORDS: usize = LEAF_COUNT / 64;

/// A set of leaves (see [`bavard_store::digest`]): which parts of the key-hash space an
/// anti-entropy round compares.
#[derive(Clone, PartialEq, Eq)]
pub struct LeafSet {
    words: Vec<u64>,
}

/// A leaf bitmap of the wrong size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a leaf set is {LEAF_SET_BYTES} bytes, got {0}")]
pub struct LeafSetSizeError(pub usize);

impl Default for LeafSet {
    fn default() -> Self {
        Self::empty()
    }
}

impl LeafSet {
    /// No leaf.
    pub fn empty() -> Self {
        Self {
            words: vec![0; WORDS],
        }
    }

    /// Every leaf.
    pub fn full() -> Self {
        Self {
            words: vec![u64::MAX; WORDS],
        }
    }

    /// Adds `leaf`.
    pub fn insert(&mut self, leaf: u16) {
        self.words[usize::from(leaf) / 64] |= 1 << (leaf % 64);
    }

    /// Whether `leaf` is in the set.
    pub fn contains(&self, leaf: u16) -> bool {
        self.words[usize::from(leaf) / 64] & (1 << (leaf % 64)) != 0
    }

    /// How many leaves the set holds.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set holds no leaf.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The leaves, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|l| self.contains(*l))
    }

    /// The leaves of subtree `subtree` (the leaves whose first byte it is), ascending.
    pub fn iter_subtree(&self, subtree: u8) -> impl Iterator<Item = u16> + '_ {
        let first = u16::from(subtree) << 8;
        (first..=first | 0xff).filter(|l| self.contains(*l))
    }

    /// The wire form: [`LEAF_SET_BYTES`] bytes, bit `i` of byte `j` standing for leaf `8j + i`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Reads the wire form of [`LeafSet::to_bytes`].
    ///
    /// # Errors
    ///
    /// [`LeafSetSizeError`] when `bytes` is not [`LEAF_SET_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LeafSetSizeError> {
        if bytes.len() != LEAF_SET_BYTES {
            return Err(LeafSetSizeError(bytes.len()));
        }
        let words = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        Ok(Self { words })
    }
}

impl std::fmt::Debug for LeafSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeafSet({} leaves)", self.len())
    }
}

impl FromIterator<u16> for LeafSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut set = Self::empty();
        for leaf in iter {
            set.insert(leaf);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_round_trips_and_bit_order_is_documented() {
        let set: LeafSet = [0u16, 9, 0x1234, u16::MAX].into_iter().collect();
        let bytes = set.to_bytes();
        assert_eq!(bytes.len(), LEAF_SET_BYTES);
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes[1], 1 << 1);
        assert_eq!(LeafSet::from_bytes(&bytes).unwrap(), set);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 9, 0x1234, u16::MAX]);
        assert_eq!(set.iter_subtree(0x12).collect::<Vec<_>>(), vec![0x1234]);
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn a_bitmap_of_the_wrong_size_is_refused() {
        assert_eq!(LeafSet::from_bytes(&[0; 3]), Err(LeafSetSizeError(3)));
        assert!(LeafSet::empty().is_empty());
        assert_eq!(LeafSet::full().len(), LEAF_COUNT);
    }
}
