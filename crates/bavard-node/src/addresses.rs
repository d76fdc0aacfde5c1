//! A bounded address book that tells the swarm where to dial a peer.
//!
//! The stream behaviour (`crate::streams`) dials a peer by id when we open a stream to it; the
//! swarm asks every behaviour for addresses, and this one answers from what identify, Kademlia responses and bootstrap
//! addresses taught us.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Known addresses per peer, most recent first, bounded per peer and in peers.
#[derive(Clone, Default)]
pub struct AddressBook {
    inner: Arc<Mutex<Book>>,
}

#[derive(Default)]
struct Book {
    addrs: HashMap<PeerId, VecDeque<Multiaddr>>,
    /// Insertion order of peers, to evict the oldest when full.
    order: VecDeque<PeerId>,
}

/// The most peers whose addresses are remembered; the oldest are forgotten first.
const MAX_PEERS: usize = 100_000;

impl AddressBook {
    /// Records an address for a peer; keeps at most `max_per_peer`, newest first.
    pub fn add(&self, peer: PeerId, addr: Multiaddr, max_per_peer: usize) {
        let addr = crate::util::without_peer_id(&addr);
        let mut book = self.inner.lock().expect("address book lock");
        if !book.addrs.contains_key(&peer) {
            if book.order.len() >= MAX_PEERS
                && let Some(old) = book.order.pop_front()
            {
                book.addrs.remove(&old);
            }
            book.order.push_back(peer);
        }
        let list = book.addrs.entry(peer).or_default();
        list.retain(|a| a != &addr);
        list.push_front(addr);
        list.truncate(max_per_peer.max(1));
    }

    /// The addresses known for a peer.
    pub fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let book = self.inner.lock().expect("address book lock");
        book.addrs
            .get(peer)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The behaviour half of the address book: answers the swarm's "where is this peer?".
pub struct Behaviour {
    book: AddressBook,
}

impl Behaviour {
    /// A behaviour backed by `book`.
    pub fn new(book: AddressBook) -> Self {
        Self { book }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        maybe_peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(maybe_peer.map(|p| self.book.get(&p)).unwrap_or_default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
