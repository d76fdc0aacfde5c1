//! [`Traffic`]: what happened to the messages of a run.

/// Counters of the messages of a run, from its start. Subtract two snapshots
/// ([`Traffic::since`]) to measure a window.
///
/// Every message a node emits is either refused (`unreachable`) or `sent`; a sent one is then
/// `delivered`, `lost`, `cut`, `dropped`, or `undelivered` (its receiver was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Messages that left a node (lost ones included).
    pub sent: u64,
    /// Their total size, from [`SimNode::message_len`](super::SimNode::message_len).
    pub bytes: u64,
    /// Messages handed to their receiver (rejected ones included).
    pub delivered: u64,
    /// Messages lost at the loss rate.
    pub lost: u64,
    /// Messages that crossed a partition.
    pub cut: u64,
    /// Messages removed by the experiment's drop rule.
    pub dropped: u64,
    /// Messages whose receiver was down when they were sent (datagram transport) or arrived.
    pub undelivered: u64,
    /// Sends refused because the peer was down (connection transport): not sent.
    pub unreachable: u64,
    /// Delivered messages the receiving core refused.
    pub rejected: u64,
}

impl Traffic {
    /// The counts between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            sent: self.sent - earlier.sent,
            bytes: self.bytes - earlier.bytes,
            delivered: self.delivered - earlier.delivered,
            lost: self.lost - earlier.lost,
            cut: self.cut - earlier.cut,
            dropped: self.dropped - earlier.dropped,
            undelivered: self.undelivered - earlier.undelivered,
            unreachable: self.unreachable - earlier.unreachable,
            rejected: self.rejected - earlier.rejected,
        }
    }
}
