//! The membership view: the latest snapshot of the gossip membership, written by the gossip
//! driver and read by every service that places or routes by it (lookups seed from the closest
//! alive members, replication places keys on the healthy ones, hint delivery skips the dead).

use std::sync::Mutex;

use bavard_gossip::membership::MemberState;
use bavard_routing::Key;
use libp2p::{Multiaddr, PeerId};

/// One member as the view shows it.
#[derive(Clone, Debug)]
pub(crate) struct MemberRow {
    pub(crate) id: PeerId,
    pub(crate) key: Key,
    pub(crate) state: MemberState,
    pub(crate) incarnation: u64,
    pub(crate) addrs: Vec<Multiaddr>,
    /// For a suspect: when the suspicion expires, and its independent confirmations so far.
    pub(crate) suspicion: Option<(std::time::Instant, u32)>,
}

/// The shared snapshot.
#[derive(Default)]
pub(crate) struct MembershipView {
    rows: Mutex<Vec<MemberRow>>,
}

impl MembershipView {
    /// Replaces the snapshot.
    pub(crate) fn set(&self, rows: Vec<MemberRow>) {
        *self.rows.lock().expect("members lock") = rows;
    }

    /// Every member, as last snapshotted.
    pub(crate) fn rows(&self) -> Vec<MemberRow> {
        self.rows.lock().expect("members lock").clone()
    }

    /// Members seen alive, this node included (1 before the driver's first snapshot).
    pub(crate) fn alive_count(&self) -> usize {
        let rows = self.rows.lock().expect("members lock");
        rows.iter()
            .filter(|m| m.state == MemberState::Alive)
            .count()
            .max(1)
    }

    /// Members that are alive or suspect (not declared dead, not departed), this node included
    /// when it is a member.
    pub(crate) fn healthy(&self) -> Vec<PeerId> {
        let rows = self.rows.lock().expect("members lock");
        rows.iter()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .map(|m| m.id)
            .collect()
    }

    /// Whether the membership holds `peer` for dead or departed.
    pub(crate) fn is_down(&self, peer: &PeerId) -> bool {
        let rows = self.rows.lock().expect("members lock");
        rows.iter()
            .any(|m| m.id == *peer && matches!(m.state, MemberState::Dead | MemberState::Left))
    }

    /// The `n` alive members closest to `target`, `local` excluded, nearest first.
    pub(crate) fn closest_alive(
        &self,
        local: &PeerId,
        target: &Key,
        n: usize,
    ) -> Vec<(PeerId, Key)> {
        let rows = self.rows.lock().expect("members lock");
        let mut alive: Vec<(PeerId, Key)> = rows
            .iter()
            .filter(|m| m.state == MemberState::Alive && &m.id != local)
            .map(|m| (m.id, m.key))
            .collect();
        drop(rows);
        alive.sort_by_key(|(_, k)| k.distance(target));
        alive.truncate(n);
        alive
    }
}
