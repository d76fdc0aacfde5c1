//! Global knowledge of the key space: every live node's key, sorted, for the ground truth.
//!
//! In a sorted list of 256-bit keys, the keys that share their first `b` bits with some key form
//! a contiguous range (a subtree of the binary trie over the key space). Two consequences give
//! cheap answers without scanning every node:
//!
//! - **the true k closest to a target** under XOR: descend the trie along the target's bits while
//!   the subtree still holds at least `k` keys; every key inside the last such subtree is closer
//!   to the target than every key outside it (they share a longer prefix), so the answer is the
//!   k smallest distances within it: `O(256 log N + k log k)`;
//! - **the members of bucket `i` of a node**: the keys sharing the node's first `255 − i` bits and
//!   differing at the next one, again a range (used by fast join to fill tables).

use std::cmp::Ordering;
use std::ops::Range;

use bavard_routing::Key;

use crate::NodeId;

/// The keys of a set of nodes, sorted.
#[derive(Debug, Clone, Default)]
pub struct KeyIndex {
    sorted: Vec<(Key, NodeId)>,
}

/// Compares the first `bits` bits of two keys.
fn prefix_cmp(a: &Key, b: &Key, bits: u32) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let full = (bits / 8) as usize;
    match a[..full].cmp(&b[..full]) {
        Ordering::Equal => {}
        other => return other,
    }
    let rest = bits % 8;
    if rest == 0 {
        return Ordering::Equal;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask).cmp(&(b[full] & mask))
}

/// `key` with bit `p` flipped, bits numbered from the most significant (0) to 255.
fn flip_bit(key: &Key, p: u32) -> Key {
    let mut bytes = *key.as_bytes();
    bytes[(p / 8) as usize] ^= 0x80 >> (p % 8);
    Key::from_raw(bytes)
}

impl KeyIndex {
    /// Indexes `(key, node)` pairs (any order).
    pub fn new(mut entries: Vec<(Key, NodeId)>) -> Self {
        entries.sort_unstable();
        Self { sorted: entries }
    }

    /// The number of indexed nodes.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether no node is indexed.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The sorted entries.
    pub fn entries(&self) -> &[(Key, NodeId)] {
        &self.sorted
    }

    /// The index range of the keys sharing their first `bits` bits with `key`.
    pub fn prefix_range(&self, key: &Key, bits: u32) -> Range<usize> {
        let lo = self
            .sorted
            .partition_point(|(k, _)| prefix_cmp(k, key, bits) == Ordering::Less);
        let hi = self
            .sorted
            .partition_point(|(k, _)| prefix_cmp(k, key, bits) != Ordering::Greater);
        lo..hi
    }

    /// The index range of the nodes that fall in bucket `index` of a table around `local`.
    pub fn bucket_range(&self, local: &Key, index: u8) -> Range<usize> {
        let p = 255 - u32::from(index);
        self.prefix_range(&flip_bit(local, p), p + 1)
    }

    /// The `k` indexed nodes closest to `target` by XOR distance, closest first.
    pub fn closest(&self, target: &Key, k: usize) -> Vec<NodeId> {
        if k == 0 {
            return Vec::new();
        }
        let mut range = 0..self.sorted.len();
        for bits in 1..=256 {
            let sub = self.prefix_range(target, bits);
            if sub.len() < k {
                break;
            }
            range = sub;
        }
        let mut found: Vec<(bavard_routing::Distance, NodeId)> = self.sorted[range]
            .iter()
            .map(|(key, n)| (target.distance(key), *n))
            .collect();
        if found.len() > k {
            found.select_nth_unstable(k - 1);
            found.truncate(k);
        }
        found.sort_unstable();
        found.into_iter().map(|(_, n)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    fn index(n: u32) -> (Vec<(Key, NodeId)>, KeyIndex) {
        let entries: Vec<_> = (0..n).map(|i| (Key::hash(&i.to_be_bytes()), i)).collect();
        (entries.clone(), KeyIndex::new(entries))
    }

    #[test]
    fn closest_matches_a_full_sort_by_xor_distance() {
        let (entries, idx) = index(2_000);
        let mut rng = seeded(5, 0);
        for _ in 0..50 {
            let target = Key::random(&mut rng);
            let mut all = entries.clone();
            all.sort_by_key(|(k, _)| target.distance(k));
            let want: Vec<NodeId> = all.iter().take(20).map(|(_, n)| *n).collect();
            assert_eq!(idx.closest(&target, 20), want);
        }
    }

    #[test]
    fn closest_with_fewer_nodes_than_k_returns_them_all_sorted() {
        let (_, idx) = index(5);
        let target = Key::hash(b"t");
        let got = idx.closest(&target, 20);
        assert_eq!(got.len(), 5);
        assert!(idx.closest(&target, 0).is_empty());
        assert!(KeyIndex::default().closest(&target, 3).is_empty());
    }

    #[test]
    fn bucket_range_holds_exactly_the_nodes_of_that_bucket() {
        let (entries, idx) = index(3_000);
        let local = Key::hash(b"local");
        let mut total = 0;
        for i in 0..=255u8 {
            let range = idx.bucket_range(&local, i);
            total += range.len();
            for (k, _) in &idx.entries()[range] {
                assert_eq!(local.distance(k).bucket_index(), Some(i));
            }
        }
        assert_eq!(total, entries.len());
    }
}
