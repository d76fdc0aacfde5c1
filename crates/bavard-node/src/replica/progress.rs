//! Anti-entropy state kept across rounds: the leaves shared with each partner for the current
//! placement, each partner's progress (how far behind this node is), and the failures already
//! logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bavard_replica::{LeafSet, Placement};
use libp2p::PeerId;

/// The leaves this node shares with each partner, for one placement.
pub(crate) struct SyncView {
    pub(crate) placement: Arc<Placement<PeerId>>,
    pub(crate) shared: Vec<(PeerId, LeafSet)>,
}

impl SyncView {
    pub(crate) fn partners(&self) -> Vec<PeerId> {
        self.shared.iter().map(|(p, _)| *p).collect()
    }

    pub(crate) fn leaves_with(&self, peer: &PeerId) -> LeafSet {
        self.shared
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// Anti-entropy state kept across rounds.
#[derive(Default)]
pub(crate) struct SyncState {
    pub(crate) view: Mutex<Option<Arc<SyncView>>>,
    /// Per partner: keys behind and leaves pending, from the last (or current) round.
    pub(crate) progress: Mutex<HashMap<PeerId, (usize, usize)>>,
    pub(crate) warned: Mutex<HashSet<(PeerId, &'static str)>>,
}

impl SyncState {
    /// Keys known to be newer on a partner and not stored here yet, and differing leaves not
    /// compared yet, summed over partners.
    pub(crate) fn behind(&self) -> (usize, usize) {
        let progress = self.progress.lock().expect("progress lock");
        progress
            .values()
            .fold((0, 0), |(k, l), (pk, pl)| (k + pk, l + pl))
    }
}
