//! [`Network`]: the simulated network a [`Harness`] is built on.

use std::time::Instant;

use super::skew::Skew;
use super::transport::Transport;
use super::{Harness, SimNode};
use crate::NodeId;
use crate::latency::Latency;
use crate::loss::Loss;

/// The network of a run: its size, link latency, loss, transport and the nodes' clock offsets.
/// [`build`](Self::build) it with a constructor for the nodes to get a [`Harness`].
pub struct Network {
    nodes: u32,
    latency: Box<dyn Latency>,
    loss: Loss,
    transport: Transport,
    skew: Vec<Skew>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nodes)
            .field("loss", &self.loss)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// `nodes` nodes, numbered `0..nodes`, on links of the given latency; no loss, datagram
    /// transport, every clock on virtual time.
    pub fn new(nodes: u32, latency: impl Latency + 'static) -> Self {
        Self {
            nodes,
            latency: Box::new(latency),
            loss: Loss::NONE,
            transport: Transport::Datagram,
            skew: vec![Skew::NONE; nodes as usize],
        }
    }

    /// Messages are lost as `loss` decides.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// Sends to a node that is down behave as `transport` says.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Node `node`'s clock is off by `skew` from the start (it is built at its skewed time).
    pub fn with_skew(mut self, node: NodeId, skew: Skew) -> Self {
        self.skew[node as usize] = skew;
        self
    }

    /// Builds every node with `constructor(id, now)`, `now` being the node's clock at virtual
    /// time zero, and returns the harness that drives them. The constructor is kept to rebuild
    /// a node restarted with [`Restart::StateLost`](super::Restart::StateLost).
    pub fn build<N: SimNode, X>(
        self,
        constructor: impl FnMut(NodeId, Instant) -> N + 'static,
    ) -> Harness<N, X> {
        Harness::new(
            self.nodes,
            self.latency,
            self.loss,
            self.transport,
            self.skew,
            Box::new(constructor),
        )
    }
}
