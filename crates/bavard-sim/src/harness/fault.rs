//! [`Fault`]: what the harness can do to the network and its nodes, now or at a given time.

use super::partition::Partition;
use super::skew::Skew;
use crate::NodeId;

/// A change to the network or to a node, applied by
/// [`Harness::inject`](super::Harness::inject) now or scheduled with
/// [`Harness::schedule_fault`](super::Harness::schedule_fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The node stops: it receives nothing, its timers do not fire, it takes no command. Messages
    /// it sent before still arrive. It is told with [`SimNode::on_crash`](super::SimNode::on_crash),
    /// to drop what a process loses in a crash. No effect on a node already down.
    Crash(NodeId),
    /// A crashed node starts again, keeping or losing its state (see [`Restart`]), and is driven
    /// at once (its outputs drained, its timer armed). No effect on a node that is up.
    Restart(NodeId, Restart),
    /// Installs a partition, replacing any other.
    Partition(Partition),
    /// Removes the partition.
    Heal,
    /// Sets a node's clock offset; its pending deadline moves with its clock.
    Skew(NodeId, Skew),
}

/// What a restarted node remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The process comes back with its state as it was (a pause, or state recovered from disk).
    StateKept,
    /// A new node is built by the harness's constructor, as on a fresh disk.
    StateLost,
}
