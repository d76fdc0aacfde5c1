//! The libp2p swarm: TCP, QUIC and in-process memory transports, Noise, yamux, identify, ping,
//! raw protocol streams, and the address book.

// The `NetworkBehaviour` derive generates an undocumented `BehaviourEvent` enum.
#![allow(missing_docs)]

use std::time::Duration;

use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, Transport as _, allow_block_list, identify, noise, ping, tcp, yamux};

use crate::addresses;

/// The protocol version string identify advertises.
pub const IDENTIFY_PROTOCOL: &str = "/bavard/id/1.0.0";

/// The composed behaviour of a bavard node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Learns each peer's listen addresses and protocols (and advertises ours, `/ipfs/kad/1.0.0`
    /// among them, so stock libp2p nodes add us to their routing tables).
    pub identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub ping: ping::Behaviour,
    /// Raw streams for our protocols (Kademlia, gossip, replication).
    pub stream: libp2p_stream::Behaviour,
    /// Tells the swarm where to dial a peer.
    pub addresses: addresses::Behaviour,
    /// Peers we refuse to talk to (operator bans, and the fault injection of tests).
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
}

/// Builds the swarm for `keypair`.
pub fn build(
    keypair: Keypair,
    book: addresses::AddressBook,
    idle_timeout: Duration,
) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_quic()
        .with_other_transport(|key| {
            // In-process transport for tests and embedded use: `/memory/N` addresses.
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                MemoryTransport::default()
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })?
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                    .with_agent_version(format!("bavard/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            stream: libp2p_stream::Behaviour::new(),
            addresses: addresses::Behaviour::new(book),
            blocked: allow_block_list::Behaviour::default(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}
