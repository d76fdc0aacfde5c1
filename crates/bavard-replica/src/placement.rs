//! Placement: which members hold a key, and which parts of the keyspace two members share.
//!
//! A key lives on the `n` members whose keys are closest to the key's hash by XOR distance
//! (Kademlia's metric, so the DHT and the store agree on who is "close"), skipping members the
//! failure detector declared dead: Dynamo's preference list, with its sloppy quorum folded into
//! the choice of members (a key stays writable and readable at quorum while up to `n - 1` of its
//! owners are down). Every caller — writes, reads, hints, read repair, anti-entropy,
//! re-replication — asks the same [`Placement`], so they agree on the replica set.
//!
//! Anti-entropy compares whole leaves of the key-hash space ([`bavard_store::digest`]), not
//! single keys, so it also needs the *leaves* two members share. Within one leaf (keys sharing
//! their first 16 hash bits) the distance from a member to every key of the leaf has the same
//! first 16 bits, so members whose keys differ in those bits rank the same way for every key of
//! the leaf; only members whose keys share their first 16 bits may swap places from one key to
//! the next. [`Placement::leaf_candidates`] therefore returns, for a leaf, the members ranked
//! among the first `n` for *some* key of it: exact except for such ties, which it includes
//! whole. A member pair compares a leaf when both are candidates; per-key placement then
//! decides exactly which of its keys they exchange.

use bavard_routing::Key;

use crate::leafset::LeafSet;

/// Where keys live, over one view of the healthy members.
#[derive(Clone, Debug)]
pub struct Placement<P> {
    /// Sorted by key.
    members: Vec<(P, Key)>,
    /// The first 16 bits of each member's key, in the same order.
    tops: Vec<u16>,
    n: usize,
}

impl<P: Clone + PartialEq> Placement<P> {
    /// The placement over `members` (the healthy ones: alive or suspect, this node included if
    /// it is a member), each key on its `n` closest. A member listed twice counts once.
    pub fn new(members: impl IntoIterator<Item = (P, Key)>, n: usize) -> Self {
        let mut list: Vec<(P, Key)> = Vec::new();
        for (id, key) in members {
            if !list.iter().any(|(p, _)| *p == id) {
                list.push((id, key));
            }
        }
        list.sort_by_key(|m| m.1);
        let tops = list.iter().map(|(_, k)| top16(k)).collect();
        Self {
            members: list,
            tops,
            n: n.max(1),
        }
    }

    /// The replication factor.
    pub fn replication_factor(&self) -> usize {
        self.n
    }

    /// How many members the placement spreads keys over.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `id` is one of the members.
    pub fn contains(&self, id: &P) -> bool {
        self.members.iter().any(|(p, _)| p == id)
    }

    /// The members, in key order.
    pub fn members(&self) -> impl Iterator<Item = &P> {
        self.members.iter().map(|(p, _)| p)
    }

    /// Every member, nearest to `target` first: the preference list is the first `n`, the rest
    /// are the fallbacks that keep hints for preferred members that do not answer.
    pub fn ranked(&self, target: &Key) -> Vec<P> {
        let mut order: Vec<&(P, Key)> = self.members.iter().collect();
        order.sort_by_key(|(_, k)| k.distance(target));
        order.into_iter().map(|(p, _)| p.clone()).collect()
    }

    /// The preference list of `target`: its `n` closest members, nearest first.
    pub fn preference_list(&self, target: &Key) -> Vec<P> {
        self.nearest(target, self.n)
    }

    /// The `count` members closest to `target`, nearest first: the first `n` of
    /// [`Placement::ranked`] are the preference list, the rest the nearest fallbacks. Costs a
    /// selection, not a sort of every member.
    pub fn nearest(&self, target: &Key, count: usize) -> Vec<P> {
        let mut order: Vec<&(P, Key)> = self.members.iter().collect();
        if count == 0 {
            return Vec::new();
        }
        if order.len() > count {
            order.select_nth_unstable_by_key(count - 1, |(_, k)| k.distance(target));
            order.truncate(count);
        }
        order.sort_by_key(|(_, k)| k.distance(target));
        order.into_iter().map(|(p, _)| p.clone()).collect()
    }

    /// The index of `id` in [`Placement::members`], if it is a member.
    pub fn index_of(&self, id: &P) -> Option<usize> {
        self.members.iter().position(|(p, _)| p == id)
    }

    /// Whether `id` is in the preference list of `target`.
    pub fn is_replica(&self, target: &Key, id: &P) -> bool {
        let Some((_, key)) = self.members.iter().find(|(p, _)| p == id) else {
            return false;
        };
        let mine = key.distance(target);
        // Strictly closer members; XOR distances to distinct keys never tie.
        self.members
            .iter()
            .filter(|(_, k)| k.distance(target) < mine)
            .count()
            < self.n
    }

    /// The members that are among the `n` closest for at least one key of `leaf` (see the
    /// module docs), as indexes into [`Placement::members`].
    pub fn leaf_candidates(&self, leaf: u16) -> Vec<usize> {
        let m = self.members.len();
        if m <= self.n {
            return (0..m).collect();
        }
        // The deepest prefix of the leaf shared by at least n members: every member outside it
        // is farther from every key of the leaf than every member inside.
        let mut range = 0..m;
        for bits in 1..=16u32 {
            let mask = !u16::MAX.checked_shr(bits).unwrap_or(0);
            let lo = leaf & mask;
            let hi = lo | !mask;
            let start = range.start + self.tops[range.clone()].partition_point(|t| *t < lo);
            let end = range.start + self.tops[range.clone()].partition_point(|t| *t <= hi);
            if end - start < self.n {
                break;
            }
            range = start..end;
        }
        let mut inside: Vec<(u16, usize)> = range.map(|i| (self.tops[i] ^ leaf, i)).collect();
        inside.sort_unstable();
        // The first n, and whoever ties with the n-th on the leaf's 16 bits.
        let cut = inside[self.n - 1].0;
        inside
            .into_iter()
            .take_while(|(d, _)| *d <= cut)
            .map(|(_, i)| i)
            .collect()
    }

    /// The member at index `i` of [`Placement::members`].
    pub fn member(&self, i: usize) -> Option<&P> {
        self.members.get(i).map(|(p, _)| p)
    }

    /// Calls `each(leaf, candidates)` for every leaf, in order, with the candidates of
    /// [`Placement::leaf_candidates`], in one depth-first walk of the trie of the members' first
    /// 16 bits: each trie node splits its members' range once (2^17 small searches in all,
    /// instead of 32 searches from the root per leaf), and a leaf's candidates come from the
    /// deepest range on its path that still holds `n` members.
    pub(crate) fn for_each_leaf(&self, mut each: impl FnMut(u16, &[usize])) {
        let m = self.members.len();
        if m <= self.n {
            let all: Vec<usize> = (0..m).collect();
            for leaf in 0..=u16::MAX {
                each(leaf, &all);
            }
            return;
        }
        let mut scratch: Vec<(u16, usize)> = Vec::new();
        let mut out: Vec<usize> = Vec::new();
        self.walk(0, 0, 0..m, 0..m, &mut scratch, &mut out, &mut each);
    }

    /// The trie node of `depth` bits `prefix`, whose members are `range`; `best` is the deepest
    /// range on the path with at least `n` members.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        depth: u32,
        prefix: u32,
        range: std::ops::Range<usize>,
        best: std::ops::Range<usize>,
        scratch: &mut Vec<(u16, usize)>,
        out: &mut Vec<usize>,
        each: &mut impl FnMut(u16, &[usize]),
    ) {
        if depth == 16 {
            let leaf = prefix as u16;
            scratch.clear();
            scratch.extend(best.map(|i| (self.tops[i] ^ leaf, i)));
            scratch.sort_unstable();
            // The first n, and whoever ties with the n-th on the leaf's 16 bits.
            let cut = scratch[self.n - 1].0;
            out.clear();
            out.extend(
                scratch
                    .iter()
                    .take_while(|(d, _)| *d <= cut)
                    .map(|(_, i)| *i),
            );
            each(leaf, out);
            return;
        }
        let bit = 0x8000u16 >> depth;
        let split = range.start + self.tops[range.clone()].partition_point(|t| t & bit == 0);
        for (child, sub) in [(0, range.start..split), (1, split..range.end)] {
            let best = if sub.len() >= self.n {
                sub.clone()
            } else {
                best.clone()
            };
            self.walk(
                depth + 1,
                prefix << 1 | child,
                sub,
                best,
                scratch,
                out,
                each,
            );
        }
    }

    /// The leaves for which both `a` and `b` are candidates: what an anti-entropy round between
    /// them compares.
    pub fn shared_leaves(&self, a: &P, b: &P) -> LeafSet {
        let (Some(ia), Some(ib)) = (self.index_of(a), self.index_of(b)) else {
            return LeafSet::empty();
        };
        let mut set = LeafSet::empty();
        self.for_each_leaf(|leaf, c| {
            if c.contains(&ia) && c.contains(&ib) {
                set.insert(leaf);
            }
        });
        set
    }

    /// The members other than `local` that share at least one leaf with it — the partners of
    /// its anti-entropy rounds — each with the leaves they share, in one pass over the leaves.
    pub fn shared_with(&self, local: &P) -> Vec<(P, LeafSet)> {
        let Some(me) = self.index_of(local) else {
            return Vec::new();
        };
        let mut shared: Vec<Option<LeafSet>> = vec![None; self.members.len()];
        self.for_each_leaf(|leaf, c| {
            if c.contains(&me) {
                for &i in c.iter().filter(|i| **i != me) {
                    shared[i].get_or_insert_with(LeafSet::empty).insert(leaf);
                }
            }
        });
        shared
            .into_iter()
            .enumerate()
            .filter_map(|(i, set)| Some((self.members[i].0.clone(), set?)))
            .collect()
    }

    /// The members other than `local` that share at least one leaf with it.
    pub fn partners(&self, local: &P) -> Vec<P> {
        self.shared_with(local)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}

fn top16(key: &Key) -> u16 {
    let b = key.as_bytes();
    u16::from_be_bytes([b[0], b[1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng as _, SeedableRng as _};

    fn members(count: u64) -> Vec<(u64, Key)> {
        (0..count)
            .map(|i| (i, Key::hash(&i.to_be_bytes())))
            .collect()
    }

    fn key_in_leaf(leaf: u16, rng: &mut impl rand::Rng) -> Key {
        let mut b: [u8; 32] = rng.random();
        b[..2].copy_from_slice(&leaf.to_be_bytes());
        Key::from_raw(b)
    }

    #[test]
    fn the_preference_list_is_the_n_closest_members() {
        let p = Placement::new(members(10), 3);
        let target = Key::hash(b"some key");
        let mut all = members(10);
        all.sort_by_key(|(_, k)| k.distance(&target));
        let want: Vec<u64> = all.iter().take(3).map(|(i, _)| *i).collect();
        assert_eq!(p.preference_list(&target), want);
        assert_eq!(&p.ranked(&target)[..3], &want[..]);
        for (i, _) in &all {
            assert_eq!(p.is_replica(&target, i), want.contains(i));
        }
        assert!(!p.is_replica(&target, &99));
    }

    #[test]
    fn the_nearest_members_are_the_head_of_the_ranking() {
        let p = Placement::new(members(50), 3);
        let target = Key::hash(b"another key");
        let ranked = p.ranked(&target);
        for count in [0, 1, 3, 8, 50, 60] {
            assert_eq!(p.nearest(&target, count), ranked[..count.min(50)]);
        }
    }

    #[test]
    fn a_leaf_map_answers_as_shared_with_does_for_every_member() {
        for (count, n) in [(1u64, 3), (2, 3), (5, 3), (40, 3), (200, 3), (60, 5)] {
            let p = Placement::new(members(count), n);
            let map = crate::LeafMap::new(&p);
            // shared_with walks every leaf per member: check a sample of the large cases.
            for id in (0..count).step_by(if count > 50 { 23 } else { 1 }) {
                let me = p.index_of(&id).unwrap();
                let want = p.shared_with(&id);
                let partners: Vec<u64> = map
                    .partners(me)
                    .into_iter()
                    .map(|i| *p.member(i).unwrap())
                    .collect();
                let mut want_partners: Vec<u64> = want.iter().map(|(q, _)| *q).collect();
                let mut got_partners = partners.clone();
                want_partners.sort_unstable();
                got_partners.sort_unstable();
                assert_eq!(got_partners, want_partners, "{count} members, member {id}");
                for (q, leaves) in &want {
                    let other = p.index_of(q).unwrap();
                    assert_eq!(&map.shared_leaves(me, other), leaves);
                }
            }
            assert!(map.leaves_of(count as usize + 7).is_empty());
        }
    }

    #[test]
    fn fewer_members_than_n_all_hold_every_key() {
        let p = Placement::new(members(2), 3);
        assert_eq!(p.preference_list(&Key::hash(b"k")).len(), 2);
        assert_eq!(p.shared_leaves(&0, &1), LeafSet::full());
        assert_eq!(p.partners(&0), vec![1]);
    }

    #[test]
    fn leaf_candidates_cover_every_key_of_the_leaf() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for count in [4u64, 7, 50, 300] {
            let p = Placement::new(members(count), 3);
            for _ in 0..200 {
                let leaf: u16 = rng.random();
                let candidates: Vec<u64> = p
                    .leaf_candidates(leaf)
                    .into_iter()
                    .map(|i| *p.member(i).unwrap())
                    .collect();
                assert!(candidates.len() >= 3);
                for _ in 0..20 {
                    let key = key_in_leaf(leaf, &mut rng);
                    for r in p.preference_list(&key) {
                        assert!(candidates.contains(&r), "{count} members, leaf {leaf}");
                    }
                }
            }
        }
    }

    #[test]
    fn members_sharing_their_first_bits_are_both_candidates() {
        // Two members whose keys agree on the first 16 bits swap places across the leaf.
        let mut a = [0u8; 32];
        a[0] = 0x80;
        let mut b = a;
        b[31] = 1;
        let far = Key::from_raw([0xff; 32]);
        let p = Placement::new(
            [
                (1u64, Key::from_raw(a)),
                (2, Key::from_raw(b)),
                (3, far),
                (4, Key::from_raw([0x7f; 32])),
            ],
            1,
        );
        let c = p.leaf_candidates(0x8000);
        assert_eq!(c.len(), 2, "both tied members, nobody else");
        assert!(p.shared_leaves(&1, &2).contains(0x8000));
    }

    #[test]
    fn the_walk_over_every_leaf_gives_each_leaf_its_candidates() {
        for (count, n) in [
            (2u64, 3),
            (3, 3),
            (4, 3),
            (40, 3),
            (300, 3),
            (50, 5),
            (9, 1),
        ] {
            let p = Placement::new(members(count), n);
            let mut seen = 0u32;
            p.for_each_leaf(|leaf, c| {
                assert_eq!(u32::from(leaf), seen, "leaves come in order");
                seen += 1;
                let mut want = p.leaf_candidates(leaf);
                want.sort_unstable();
                let mut got = c.to_vec();
                got.sort_unstable();
                assert_eq!(got, want, "{count} members, leaf {leaf}");
            });
            assert_eq!(seen, 65_536);
        }
    }

    #[test]
    fn shared_leaves_are_where_both_may_be_replicas() {
        let p = Placement::new(members(5), 3);
        let shared = p.shared_leaves(&0, &1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..2000 {
            let key = Key::random(&mut rng);
            let leaf = u16::from_be_bytes([key.as_bytes()[0], key.as_bytes()[1]]);
            if p.is_replica(&key, &0) && p.is_replica(&key, &1) {
                assert!(shared.contains(leaf));
            }
        }
        // 5 members, n = 3: a pair shares about 3/10 of the keyspace.
        let fraction = shared.len() as f64 / 65536.0;
        assert!(fraction > 0.05 && fraction < 0.8, "{fraction}");
        assert_eq!(p.partners(&0).len(), 4);
        let with = p.shared_with(&0);
        assert_eq!(with.iter().find(|(q, _)| *q == 1).unwrap().1, shared);
    }
}
