//! A bounded address book that tells the swarm where to dial a peer.
//!
//! The stream behaviour (`crate::streams`) dials a peer by id when we open a stream to it; the
//! swarm asks every behaviour for addresses, and this one answers from what identify, Kademlia
//! responses, signed membership metadata and bootstrap addresses taught us.
//!
//! Addresses have a provenance. **Confirmed** ones come from the peer itself (identify, a
//! membership claim it signed), from a connection we dialled, or from the operator (bootstrap,
//! `dial`); **hearsay** ones come from third parties (a FIND_NODE answer). Hearsay is kept apart
//! and capped at [`MAX_HEARSAY`] per peer, tried after every confirmed address, and never evicts
//! one: a peer that answers a lookup with made-up addresses for someone cannot displace that
//! someone's real addresses (issue 12). A hearsay address that is later confirmed moves over.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use libp2p::core::{Endpoint, transport::PortUse};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Where an address was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From the peer itself, a connection we dialled, or the operator.
    Confirmed,
    /// From a third party (a Kademlia answer).
    Hearsay,
}

/// Known addresses per peer, most recent first, bounded per peer and in peers.
#[derive(Clone, Default)]
pub struct AddressBook {
    inner: Arc<Mutex<Book>>,
}

#[derive(Default)]
struct Addrs {
    confirmed: VecDeque<Multiaddr>,
    hearsay: VecDeque<Multiaddr>,
}

#[derive(Default)]
struct Book {
    addrs: HashMap<PeerId, Addrs>,
    /// Insertion order of peers, to evict the oldest when full.
    order: VecDeque<PeerId>,
}

/// The most peers whose addresses are remembered; the oldest are forgotten first.
const MAX_PEERS: usize = 100_000;

/// Hearsay addresses kept per peer.
pub const MAX_HEARSAY: usize = 2;

impl AddressBook {
    /// Records a confirmed address for a peer; keeps at most `max_per_peer`, newest first.
    pub fn add(&self, peer: PeerId, addr: Multiaddr, max_per_peer: usize) {
        self.add_from(peer, addr, max_per_peer, Source::Confirmed);
    }

    /// Records an address learned from `source`.
    pub fn add_from(&self, peer: PeerId, addr: Multiaddr, max_per_peer: usize, source: Source) {
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
        let entry = book.addrs.entry(peer).or_default();
        match source {
            Source::Confirmed => {
                entry.hearsay.retain(|a| a != &addr);
                entry.confirmed.retain(|a| a != &addr);
                entry.confirmed.push_front(addr);
                entry.confirmed.truncate(max_per_peer.max(1));
            }
            Source::Hearsay => {
                if entry.confirmed.contains(&addr) {
                    return;
                }
                entry.hearsay.retain(|a| a != &addr);
                entry.hearsay.push_front(addr);
                entry.hearsay.truncate(MAX_HEARSAY.min(max_per_peer.max(1)));
            }
        }
    }

    /// The addresses known for a peer: confirmed ones first, then hearsay.
    pub fn get(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let book = self.inner.lock().expect("address book lock");
        book.addrs
            .get(peer)
            .map(|e| e.confirmed.iter().chain(&e.hearsay).cloned().collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/203.0.113.7/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn hearsay_never_displaces_confirmed_addresses_and_is_capped() {
        let book = AddressBook::default();
        let peer = PeerId::random();
        book.add(peer, addr(1), 8);
        book.add(peer, addr(2), 8);
        // A lookup answer claims 8 made-up addresses for the peer.
        for port in 100..108 {
            book.add_from(peer, addr(port), 8, Source::Hearsay);
        }
        let known = book.get(&peer);
        assert_eq!(
            &known[..2],
            &[addr(2), addr(1)],
            "the real ones come first, kept"
        );
        assert_eq!(known.len(), 2 + MAX_HEARSAY, "hearsay is capped");
        // Hearsay that the peer later confirms moves over (and leaves the hearsay list).
        book.add(peer, addr(107), 8);
        let known = book.get(&peer);
        assert_eq!(known[0], addr(107));
        assert_eq!(known.iter().filter(|a| **a == addr(107)).count(), 1);
        // Hearsay repeating a confirmed address changes nothing.
        book.add_from(peer, addr(1), 8, Source::Hearsay);
        assert_eq!(book.get(&peer).iter().filter(|a| **a == addr(1)).count(), 1);
    }

    #[test]
    fn confirmed_addresses_are_bounded_newest_first() {
        let book = AddressBook::default();
        let peer = PeerId::random();
        for port in 0..10 {
            book.add(peer, addr(port), 3);
        }
        assert_eq!(book.get(&peer), vec![addr(9), addr(8), addr(7)]);
        assert!(book.get(&PeerId::random()).is_empty());
    }
}
