//! The bandwidth model: every node has an upload and a download capacity, shared fairly among
//! the transfers it takes part in at the moment each block leaves.

use std::cell::Cell;
use std::time::Duration;

use crate::NodeId;

/// Each node's capacities (bytes per second) and its transfers in progress, both ways.
///
/// A transfer (one request being served) from `from` to `to` sends its blocks one after the
/// other; each block takes `bytes / min(up[from] / up_flows[from], down[to] / down_flows[to])`,
/// with the counts read when the block starts. Flows that come and go change the rate of the
/// next block, not of the one on the wire, so this is processor sharing at block granularity.
/// What it does not do: hand a share a receiver cannot absorb to the sender's other flows
/// (max-min fairness, TCP's backpressure); with capacities of one order of magnitude it rarely
/// matters, because a busy sender's share is far below any receiver's.
///
/// The counts are shared by every node of the run (the simulator's global knowledge of the
/// links), behind `Cell`s: a run is single-threaded.
#[derive(Debug)]
pub(crate) struct Links {
    up: Vec<f64>,
    down: Vec<f64>,
    up_flows: Vec<Cell<u32>>,
    down_flows: Vec<Cell<u32>>,
}

impl Links {
    /// Nodes with these capacities, in bytes per second, and no transfer.
    pub(crate) fn new(up: Vec<f64>, down: Vec<f64>) -> Self {
        let n = up.len();
        Self {
            up,
            down,
            up_flows: (0..n).map(|_| Cell::new(0)).collect(),
            down_flows: (0..n).map(|_| Cell::new(0)).collect(),
        }
    }

    /// A transfer from `from` to `to` begins.
    pub(crate) fn start(&self, from: NodeId, to: NodeId) {
        let (f, t) = (&self.up_flows[from as usize], &self.down_flows[to as usize]);
        f.set(f.get() + 1);
        t.set(t.get() + 1);
    }

    /// A transfer from `from` to `to` ends (done, cancelled, or its sender crashed).
    pub(crate) fn stop(&self, from: NodeId, to: NodeId) {
        let (f, t) = (&self.up_flows[from as usize], &self.down_flows[to as usize]);
        f.set(f.get().saturating_sub(1));
        t.set(t.get().saturating_sub(1));
    }

    /// How long `bytes` of a transfer from `from` to `to` take at the current shares.
    pub(crate) fn transfer_time(&self, from: NodeId, to: NodeId, bytes: u64) -> Duration {
        let up = self.up[from as usize] / f64::from(self.up_flows[from as usize].get().max(1));
        let down = self.down[to as usize] / f64::from(self.down_flows[to as usize].get().max(1));
        Duration::from_secs_f64(bytes as f64 / up.min(down))
    }

    /// Node `id`'s upload capacity, bytes per second.
    pub(crate) fn upload(&self, id: NodeId) -> f64 {
        self.up[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_takes_the_smaller_of_the_two_fair_shares() {
        let links = Links::new(vec![1_000.0, 1_000.0, 1_000.0], vec![500.0, 500.0, 500.0]);
        links.start(0, 1);
        // Alone: the receiver's 500 B/s is the bottleneck.
        assert_eq!(links.transfer_time(0, 1, 1_000), Duration::from_secs(2));
        links.start(0, 2);
        links.start(0, 2);
        // Three flows out of node 0: 333 B/s each, below the receiver's 500.
        assert_eq!(
            links.transfer_time(0, 1, 1_000).as_millis(),
            Duration::from_secs(3).as_millis()
        );
        links.stop(0, 2);
        links.stop(0, 2);
        assert_eq!(links.transfer_time(0, 1, 1_000), Duration::from_secs(2));
    }
}
