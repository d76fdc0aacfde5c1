//! The baseline: a gossipsub-like mesh node, and the mesh it starts from.
//!
//! Every node keeps about `D = 6` symmetric mesh peers and, on the first receipt of a message,
//! forwards the full payload to every mesh peer but the sender (no `IHAVE`/`IWANT`), as
//! gossipsub's mesh does. A send to a dead peer fails at once (connection transport) and removes
//! it from the mesh. The mesh is built, and repaired every heartbeat, from global knowledge,
//! without GRAFT messages: only payloads cost anything.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::NodeId;
use crate::harness::{Harness, SimNode};

/// gossipsub's mesh degree and its lower bound.
const MESH_D: usize = 6;
const MESH_D_LO: usize = 4;
/// gossipsub's heartbeat period.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);

/// A full payload: message `index`, `hops` from its publisher, `len` bytes on the wire.
pub(super) struct Payload {
    index: u32,
    hops: u32,
    len: u32,
}

/// What a mesh node reports.
pub(super) enum MeshOut {
    /// Message `index` reached this node (once), after `hops` hops.
    Received { index: u32, hops: u32 },
    /// This node sent a copy of message `index` to a live peer (lost or not).
    CopySent { index: u32 },
}

/// One member of the mesh.
pub(super) struct MeshNode {
    /// Mesh peers, in the order they were linked.
    pub(super) peers: Vec<NodeId>,
    received: Vec<bool>,
    payload_len: u32,
    outbox: VecDeque<(NodeId, Payload)>,
    events: VecDeque<MeshOut>,
}

impl MeshNode {
    /// A node with no mesh peer yet, for `messages` messages of `payload_len` bytes on the wire.
    pub(super) fn new(messages: u32, payload_len: usize) -> Self {
        Self {
            peers: Vec::new(),
            received: vec![false; messages as usize],
            payload_len: u32::try_from(payload_len).expect("payloads are small"),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Publishes message `index`.
    pub(super) fn publish(&mut self, index: u32) {
        self.received[index as usize] = true;
        self.forward(None, index, 1);
    }

    fn forward(&mut self, except: Option<NodeId>, index: u32, hops: u32) {
        for &to in &self.peers {
            if Some(to) != except {
                let len = self.payload_len;
                self.outbox.push_back((to, Payload { index, hops, len }));
            }
        }
    }
}

impl SimNode for MeshNode {
    type Message = Payload;
    type Event = MeshOut;
    type Error = Infallible;

    fn handle_message(&mut self, _: Instant, from: NodeId, msg: Payload) -> Result<(), Infallible> {
        let seen = &mut self.received[msg.index as usize];
        if !*seen {
            *seen = true;
            self.events.push_back(MeshOut::Received {
                index: msg.index,
                hops: msg.hops,
            });
            self.forward(Some(from), msg.index, msg.hops + 1);
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _: Instant) {}

    fn poll_transmit(&mut self) -> Option<(NodeId, Payload)> {
        self.outbox.pop_front()
    }

    fn poll_event(&mut self) -> Option<MeshOut> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn message_len(msg: &Payload) -> usize {
        msg.len as usize
    }

    /// A copy of one message meets the same fate on a link whoever forwards it and whenever.
    fn loss_key(msg: &Payload) -> Option<u64> {
        Some(u64::from(msg.index))
    }

    fn on_sent(&mut self, _: NodeId, msg: &Payload) {
        self.events
            .push_back(MeshOut::CopySent { index: msg.index });
    }

    fn peer_unreachable(&mut self, _: Instant, peer: NodeId) {
        self.peers.retain(|&p| p != peer);
    }
}

/// Links a random symmetric mesh where (almost) every node has `MESH_D` peers.
pub(super) fn build_mesh<X>(h: &mut Harness<MeshNode, X>, rng: &mut ChaCha8Rng) {
    let n = h.len();
    let d = MESH_D.min(n as usize - 1);
    for i in 0..n {
        let mut tries = 0;
        while h.node(i).peers.len() < d && tries < 200 {
            tries += 1;
            let j = rng.random_range(0..n);
            // Prefer peers below D; late in the build accept one more so nobody stays short.
            let cap = if tries < 100 { d } else { d + 1 };
            if j == i || h.node(i).peers.contains(&j) || h.node(j).peers.len() >= cap {
                continue;
            }
            link(h, i, j);
        }
    }
}

fn link<X>(h: &mut Harness<MeshNode, X>, a: NodeId, b: NodeId) {
    h.node_mut(a).peers.push(b);
    h.node_mut(b).peers.push(a);
}

/// gossipsub's heartbeat, simplified: a live node with fewer than `D_lo` mesh peers grafts random
/// live peers (it knows every subscriber) back up to `D`.
pub(super) fn heartbeat<X>(h: &mut Harness<MeshNode, X>, rng: &mut ChaCha8Rng) {
    let n = h.len();
    if h.up_count() < 2 {
        return;
    }
    let want = MESH_D.min(h.up_count() as usize - 1);
    for i in 0..n {
        if !h.is_up(i) || h.node(i).peers.len() >= MESH_D_LO.min(want) {
            continue;
        }
        let mut tries = 0;
        while h.node(i).peers.len() < want && tries < 100 {
            tries += 1;
            let j = rng.random_range(0..n);
            if j == i || !h.is_up(j) || h.node(i).peers.contains(&j) {
                continue;
            }
            link(h, i, j);
        }
    }
}
