//! [`Partition`]: groups of nodes that cannot reach each other.

use crate::NodeId;

/// A network split into groups: a message between two nodes of different groups is dropped when
/// it is sent. Nodes listed in no group form one more group, "the rest".
///
/// A message already in flight when a partition is installed still arrives (it is past the cut);
/// one sent after the heal goes through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Partition {
    /// Per node id: 0 for the rest, `k + 1` for the k-th group.
    side: Vec<u32>,
}

impl Partition {
    /// Splits the listed groups from each other and from the rest. A node listed twice belongs to
    /// its last group.
    pub fn between<G, I>(groups: G) -> Self
    where
        G: IntoIterator<Item = I>,
        I: IntoIterator<Item = NodeId>,
    {
        let mut side = Vec::new();
        for (k, group) in groups.into_iter().enumerate() {
            let k = u32::try_from(k + 1).expect("fewer than 2^32 groups");
            for node in group {
                let i = node as usize;
                if side.len() <= i {
                    side.resize(i + 1, 0);
                }
                side[i] = k;
            }
        }
        Self { side }
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(node: NodeId) -> Self {
        Self::between([[node]])
    }

    /// Whether `a` and `b` are on different sides.
    pub fn separates(&self, a: NodeId, b: NodeId) -> bool {
        self.side_of(a) != self.side_of(b)
    }

    fn side_of(&self, node: NodeId) -> u32 {
        self.side.get(node as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_one_group_talk_and_groups_do_not() {
        let p = Partition::between([vec![0, 1], vec![2]]);
        assert!(!p.separates(0, 1));
        assert!(p.separates(1, 2));
        // 3 and 4 are the rest: together, apart from both groups.
        assert!(!p.separates(3, 4));
        assert!(p.separates(0, 3) && p.separates(2, 4));
        let alone = Partition::isolate(5);
        assert!(alone.separates(5, 0) && !alone.separates(0, 9));
    }
}
