//! [`Views`]: one placement (and one [`LeafMap`]) per distinct member set, shared by every node
//! whose membership view holds that set.
//!
//! Every simulated node places keys over its own membership view, as the node does. Building a
//! placement is cheap, but its leaf map (who shares which leaves with whom, for anti-entropy)
//! walks the 65,536 leaves of the key-hash space: at a thousand nodes, per node and per view
//! change, it would dominate the run. Views are therefore keyed by their member set (a bitset
//! of node ids) and built once; the leaf map only when some node starts an anti-entropy round
//! over that view. Nodes hold an `Rc` to their current view; a view nobody holds any more is
//! dropped once the cache grows past [`KEEP`] entries.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bavard_replica::{LeafMap, Placement};
use bavard_routing::Key;

use crate::NodeId;

/// Views kept in the cache even when no node holds them.
const KEEP: usize = 64;

/// The placement over one member set.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) placement: Arc<Placement<NodeId>>,
    leaf_map: OnceCell<LeafMap>,
}

impl View {
    /// The leaf map, built on first use.
    pub(crate) fn leaf_map(&self, built: &std::cell::Cell<u64>) -> &LeafMap {
        self.leaf_map.get_or_init(|| {
            built.set(built.get() + 1);
            LeafMap::new(&self.placement)
        })
    }

    /// The anti-entropy partners of `node` in this view, ascending, with their member indexes.
    pub(crate) fn partners(&self, node: NodeId, built: &std::cell::Cell<u64>) -> Vec<NodeId> {
        let Some(me) = self.placement.index_of(&node) else {
            return Vec::new();
        };
        let mut out: Vec<NodeId> = self
            .leaf_map(built)
            .partners(me)
            .into_iter()
            .filter_map(|i| self.placement.member(i).copied())
            .collect();
        out.sort_unstable();
        out
    }
}

/// The cache of views by member set.
#[derive(Debug)]
pub(crate) struct Views {
    n: usize,
    /// Each node's key in the placement's metric.
    keys: Vec<Key>,
    cache: HashMap<Vec<u64>, Rc<View>>,
    /// Placements built so far.
    pub(crate) placements_built: u64,
    /// Leaf maps built so far.
    pub(crate) leaf_maps_built: std::cell::Cell<u64>,
}

/// The key of node `id`: where it sits in the key space.
pub(crate) fn node_key(id: NodeId) -> Key {
    Key::hash(&id.to_be_bytes())
}

impl Views {
    /// An empty cache for `nodes` nodes, keys on `n` replicas.
    pub(crate) fn new(nodes: u32, n: usize) -> Self {
        Self {
            n,
            keys: (0..nodes).map(node_key).collect(),
            cache: HashMap::new(),
            placements_built: 0,
            leaf_maps_built: std::cell::Cell::new(0),
        }
    }

    /// The view over `members` (a bitset of node ids).
    pub(crate) fn get(&mut self, members: Vec<u64>) -> Rc<View> {
        if let Some(v) = self.cache.get(&members) {
            return v.clone();
        }
        if self.cache.len() >= KEEP {
            self.cache.retain(|_, v| Rc::strong_count(v) > 1);
        }
        let placement = Placement::new(
            bits(&members).map(|id| (id, self.keys[id as usize])),
            self.n,
        );
        self.placements_built += 1;
        let view = Rc::new(View {
            placement: Arc::new(placement),
            leaf_map: OnceCell::new(),
        });
        self.cache.insert(members, view.clone());
        view
    }
}

/// The ids set in a bitset.
fn bits(words: &[u64]) -> impl Iterator<Item = NodeId> + '_ {
    words.iter().enumerate().flat_map(|(w, &word)| {
        (0..64u32)
            .filter(move |b| word & (1 << b) != 0)
            .map(move |b| w as u32 * 64 + b)
    })
}

/// A bitset of `nodes` bits with `ids` set.
pub(crate) fn bitset(nodes: u32, ids: impl IntoIterator<Item = NodeId>) -> Vec<u64> {
    let mut words = vec![0u64; (nodes as usize).div_ceil(64)];
    for id in ids {
        words[id as usize / 64] |= 1 << (id % 64);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_member_set_is_built_once_and_shared() {
        let mut views = Views::new(10, 3);
        let a = views.get(bitset(10, [1, 2, 5, 9]));
        let b = views.get(bitset(10, [9, 5, 2, 1]));
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(views.placements_built, 1);
        assert_eq!(
            a.placement
                .members()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            [1, 2, 5, 9].into()
        );
        let other = views.get(bitset(10, [1, 2]));
        assert!(!Rc::ptr_eq(&a, &other));
        // Four members, three replicas: everyone shares leaves with everyone.
        assert_eq!(a.partners(5, &views.leaf_maps_built), vec![1, 2, 9]);
        assert_eq!(views.leaf_maps_built.get(), 1);
        assert!(a.partners(3, &views.leaf_maps_built).is_empty());
    }
}
