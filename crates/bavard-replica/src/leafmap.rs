//! [`LeafMap`]: every member's anti-entropy partners and shared leaves, from one pass over the
//! leaves of a [`Placement`].
//!
//! [`Placement::shared_with`] answers for one member and walks all 65,536 leaves to do it: a
//! node calls it once per membership change, for itself. A simulator that runs a thousand nodes
//! over the same view would walk them a thousand times. A `LeafMap` walks them once and keeps,
//! for every leaf, its candidates ([`Placement::leaf_candidates`]: the members that may
//! replicate some key of it), and for every member the leaves it is a candidate for. Then
//!
//! - the partners of a member are the other candidates of its leaves, and
//! - the leaves two members share are those of the first whose candidates include the second,
//!
//! which is exactly what [`Placement::shared_with`] and [`Placement::shared_leaves`] return,
//! for a few lookups each. Memory: about 4 bytes per (leaf, candidate) pair, twice (about
//! 2 MiB at n = 3, whatever the number of members).

use crate::leafset::LeafSet;
use crate::placement::Placement;

/// The candidates of every leaf and the leaves of every member of one placement (see the
/// module docs). Members are named by their index in [`Placement::members`].
#[derive(Clone, Debug)]
pub struct LeafMap {
    /// `candidates[starts[l]..starts[l + 1]]`: the candidates of leaf `l`, ascending.
    starts: Vec<u32>,
    candidates: Vec<u32>,
    /// `leaves[member_starts[m]..member_starts[m + 1]]`: the leaves member `m` is a candidate
    /// for, ascending.
    member_starts: Vec<u32>,
    leaves: Vec<u16>,
}

impl LeafMap {
    /// The map of `placement`: one pass over the leaves.
    pub fn new<P: Clone + PartialEq>(placement: &Placement<P>) -> Self {
        let mut starts = Vec::with_capacity(crate::sync::SUBTREES * 256 + 1);
        let mut candidates: Vec<u32> = Vec::new();
        let mut per_member = vec![0u32; placement.len()];
        placement.for_each_leaf(|_, c| {
            starts.push(candidates.len() as u32);
            let first = candidates.len();
            candidates.extend(c.iter().map(|&i| i as u32));
            candidates[first..].sort_unstable();
            for &i in c {
                per_member[i] += 1;
            }
        });
        starts.push(candidates.len() as u32);
        // Counting sort of (member, leaf) pairs by member; leaves come out ascending.
        let mut member_starts = Vec::with_capacity(per_member.len() + 1);
        let mut total = 0u32;
        for count in &per_member {
            member_starts.push(total);
            total += count;
        }
        member_starts.push(total);
        let mut fill: Vec<u32> = member_starts[..per_member.len()].to_vec();
        let mut leaves = vec![0u16; total as usize];
        for leaf in 0..starts.len() - 1 {
            for &m in &candidates[starts[leaf] as usize..starts[leaf + 1] as usize] {
                leaves[fill[m as usize] as usize] = leaf as u16;
                fill[m as usize] += 1;
            }
        }
        Self {
            starts,
            candidates,
            member_starts,
            leaves,
        }
    }

    /// The candidates of `leaf`, as member indexes, ascending.
    pub fn candidates(&self, leaf: u16) -> &[u32] {
        let l = usize::from(leaf);
        &self.candidates[self.starts[l] as usize..self.starts[l + 1] as usize]
    }

    /// The leaves member `member` is a candidate for, ascending (empty for an unknown index).
    pub fn leaves_of(&self, member: usize) -> &[u16] {
        match (
            self.member_starts.get(member),
            self.member_starts.get(member + 1),
        ) {
            (Some(&a), Some(&b)) => &self.leaves[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The members other than `member` that share at least one leaf with it, ascending: its
    /// anti-entropy partners.
    pub fn partners(&self, member: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .leaves_of(member)
            .iter()
            .flat_map(|&l| self.candidates(l))
            .map(|&i| i as usize)
            .filter(|&i| i != member)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The leaves both `a` and `b` are candidates for: what a round between them compares.
    pub fn shared_leaves(&self, a: usize, b: usize) -> LeafSet {
        self.leaves_of(a)
            .iter()
            .copied()
            .filter(|&l| self.candidates(l).binary_search(&(b as u32)).is_ok())
            .collect()
    }
}
