//! [`Transport`]: what a sender learns when its peer is down.

/// How a send to a node that is down (crashed, or an id outside the network) behaves.
///
/// Partitions, loss and the drop rule are silent on both: a sender never learns that a message
/// was lost in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// UDP-like (SWIM's probes, Kademlia requests): the message is sent and counted, and vanishes.
    /// The sender finds out, if ever, by a timeout of its own.
    #[default]
    Datagram,
    /// Connection-oriented (QUIC, TCP): the connection is refused or reset at once; the message is
    /// neither sent nor counted, and the sender is told through
    /// [`SimNode::peer_unreachable`](super::SimNode::peer_unreachable). A message already in
    /// flight when its receiver crashes is lost silently.
    Connection,
}
