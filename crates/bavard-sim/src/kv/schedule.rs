//! The fault schedule: which faults happen, in what order, and when each may start.
//!
//! `partitions` network partitions (the nodes cut in two random halves, healed
//! `partition_for` later) and `kills` crashes (a random node down for `down_for`, then
//! restarted with its state kept: the store is durable) are shuffled into one sequence from the
//! seed. Fault `j` of `F` falls due once `(j + 1) · ops / (2 (F + 1))` client operations were
//! issued, so the faults are spread over the first half of the workload (the second half
//! leaves room for the waits); a fault that is due waits until it may start, and the ones after
//! it wait behind it:
//!
//! - **one replica set's worth down at a time**: a node is only killed if it shares no key with
//!   a node that is down or came back less than `gap` ago (it is not one of their anti-entropy
//!   partners in the full membership), so every key keeps a quorum of its replicas up;
//! - **partitions and crashes do not overlap**: a partition starts only when no node is down and
//!   the last restart is `gap` old, and nobody is killed during a partition or less than `gap`
//!   after it healed.
//!
//! The gap gives hints and anti-entropy time to bring back what a replica missed before the
//! next fault may hit the same keys: with two faults on one replica set at once, a key has no
//! quorum left that saw every write, and no coordinator can promise what R + W > N promises.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::NodeId;

/// One fault of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// Cut the network in two random halves.
    Partition,
    /// Crash a random node (then restart it).
    Kill,
}

/// The sequence of faults and when each falls due.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    faults: Vec<(u64, FaultKind)>,
    next: usize,
    pub(crate) gap: Duration,
}

impl Schedule {
    /// `partitions` partitions and `kills` crashes spread over `ops` operations.
    pub(crate) fn new(
        partitions: u32,
        kills: u32,
        ops: u64,
        gap: Duration,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut kinds: Vec<FaultKind> =
            std::iter::repeat_n(FaultKind::Partition, partitions as usize)
                .chain(std::iter::repeat_n(FaultKind::Kill, kills as usize))
                .collect();
        kinds.shuffle(rng);
        let f = kinds.len() as u64;
        let faults = kinds
            .into_iter()
            .enumerate()
            .map(|(j, k)| ((j as u64 + 1) * ops / (2 * (f + 1)), k))
            .collect();
        Self {
            faults,
            next: 0,
            gap,
        }
    }

    /// The next fault, if it is due after `issued` operations.
    pub(crate) fn due(&self, issued: u64) -> Option<FaultKind> {
        self.faults
            .get(self.next)
            .filter(|(at, _)| issued >= *at)
            .map(|(_, k)| *k)
    }

    /// The due fault started.
    pub(crate) fn started(&mut self) {
        self.next += 1;
    }

    /// Faults not started yet.
    pub(crate) fn remaining(&self) -> usize {
        self.faults.len() - self.next
    }
}

/// Two random halves of `nodes` nodes.
pub(crate) fn halves(nodes: u32, rng: &mut ChaCha8Rng) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = (0..nodes).collect();
    ids.shuffle(rng);
    ids.truncate(nodes as usize / 2);
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    #[test]
    fn faults_are_spread_over_the_operations_in_a_seeded_order() {
        let mut s = Schedule::new(2, 3, 1_200, Duration::from_secs(1), &mut seeded(3, 1));
        assert_eq!(s.remaining(), 5);
        assert_eq!(s.due(99), None);
        let mut kinds = Vec::new();
        for issued in [100, 200, 300, 400, 500] {
            kinds.push(s.due(issued).expect("due"));
            s.started();
        }
        assert_eq!(
            kinds.iter().filter(|k| **k == FaultKind::Partition).count(),
            2
        );
        assert_eq!(s.remaining(), 0);
        let again = Schedule::new(2, 3, 1_200, Duration::from_secs(1), &mut seeded(3, 1));
        assert_eq!(again.faults, s.faults);
    }

    #[test]
    fn halves_split_the_nodes_evenly() {
        let h = halves(10, &mut seeded(1, 1));
        assert_eq!(h.len(), 5);
        assert!(h.windows(2).all(|w| w[0] < w[1]));
    }
}
