//! The bavard node: libp2p assembly of the Kademlia, store and gossip cores.
