//! The libp2p swarm: TCP, QUIC and in-process memory transports, Noise, yamux, identify, ping,
//! raw protocol streams, and the address book; and the task that owns it.
//!
//! The swarm task turns the swarm's events into address-book and routing-table updates (a peer
//! enters the table only once identify shows it serves `/ipfs/kad/1.0.0`, or once it has
//! answered one of our requests) and carries out dials and blocks asked through the context.

// The `NetworkBehaviour` derive generates an undocumented `BehaviourEvent` enum.
#![allow(missing_docs)]

use std::time::Duration;

use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Swarm, Transport as _, allow_block_list, connection_limits, identify, noise, ping, tcp, yamux,
};

use futures::StreamExt as _;
use libp2p::swarm::SwarmEvent;
use tokio::sync::mpsc;

use crate::addresses;
use crate::context::SwarmCommand;
use crate::kad::KAD_PROTOCOL;
use crate::kad::client::Kad;

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
    pub stream: crate::streams::Behaviour,
    /// Tells the swarm where to dial a peer.
    pub addresses: addresses::Behaviour,
    /// Peers we refuse to talk to (operator bans, and the fault injection of tests).
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Bounds on connections: established and pending inbound ones, and per peer.
    pub limits: connection_limits::Behaviour,
}

/// The connection bounds of [`build`], from `[limits]`.
pub fn connection_limits(
    limits: &crate::config::LimitsConfig,
) -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(limits.max_connections))
        .with_max_pending_incoming(Some(limits.max_pending_connections))
        .with_max_established_per_peer(Some(limits.max_connections_per_peer))
}

/// Builds the swarm for `keypair`, within `limits` (connections: see [`connection_limits`];
/// streams: each protocol queues `max_queued_inbound_streams` for its accept loop, and drops
/// past that are counted in `dropped_streams`).
pub fn build(
    keypair: Keypair,
    book: addresses::AddressBook,
    idle_timeout: Duration,
    limits: &crate::config::LimitsConfig,
    dropped_streams: prometheus_client::metrics::counter::Counter,
) -> anyhow::Result<Swarm<Behaviour>> {
    let queued = limits.max_queued_inbound_streams;
    let limits = connection_limits(limits);
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
            stream: crate::streams::Behaviour::new(queued, dropped_streams),
            addresses: addresses::Behaviour::new(book),
            blocked: allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(limits),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}

/// Owns the swarm until the node shuts down.
pub(crate) async fn run(
    kad: Kad,
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::UnboundedReceiver<SwarmCommand>,
) {
    let ctx = kad.ctx.clone();
    let shutdown = ctx.shutdown_signal();
    tokio::pin!(shutdown);
    let mut per_ip = PerIp::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(cmd) = commands.recv() => match cmd {
                SwarmCommand::Dial(addr) => {
                    if let Err(e) = swarm.dial(addr.clone()) {
                        tracing::warn!("cannot dial {addr}: {e}");
                    }
                }
                SwarmCommand::Block(peer) => {
                    swarm.behaviour_mut().blocked.block_peer(peer);
                }
                SwarmCommand::Unblock(peer) => {
                    swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
            },
            event = swarm.select_next_some() => match event {
                // Advertised addresses replace the bound ones (see `NodeConfig::advertise`).
                SwarmEvent::NewListenAddr { address, .. } if ctx.config.advertise.is_empty() => {
                    let mut addrs = ctx.listen_addrs.lock().expect("listen lock");
                    if !addrs.contains(&address) {
                        addrs.push(address);
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
                    tracing::debug!(%peer_id, ?endpoint, "connected");
                    if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                        ctx.peer_ips.lock().expect("ips lock").insert(peer_id, ip);
                        if !per_ip.open(connection_id, ip, ctx.config.limits.max_connections_per_ip) {
                            ctx.metrics.reject("too_many_connections_per_ip");
                            ctx.warn_once(peer_id, &format!("more than {} connections from {ip}", ctx.config.limits.max_connections_per_ip));
                            swarm.close_connection(connection_id);
                            continue;
                        }
                    }
                    ctx.connected.lock().expect("connected lock").insert(peer_id);
                    if endpoint.is_dialer() {
                        ctx.learn_addr(peer_id, endpoint.get_remote_address().clone());
                    }
                    ctx.refresh_gauges();
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established, cause, connection_id, .. } if num_established > 0 => {
                    per_ip.close(connection_id);
                    tracing::debug!(%peer_id, ?cause, "one of several connections closed");
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, connection_id, .. } => {
                    per_ip.close(connection_id);
                    tracing::debug!(%peer_id, ?cause, "connection closed");
                    ctx.connected.lock().expect("connected lock").remove(&peer_id);
                    ctx.peer_ips.lock().expect("ips lock").remove(&peer_id);
                    ctx.refresh_gauges();
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    tracing::debug!(%peer_id, protocols = ?info.protocols, "identified");
                    let max_addrs = ctx.config.limits.max_addrs_per_peer;
                    for addr in info.listen_addrs.iter().take(max_addrs) {
                        ctx.learn_addr(peer_id, addr.clone());
                    }
                    let bavard = info.protocols.contains(&crate::replica::KV_PROTOCOL);
                    {
                        let mut kv = ctx.kv_peers.lock().expect("kv peers lock");
                        if bavard {
                            if kv.len() >= MAX_KV_PEERS {
                                // Keep the ones still in the routing table.
                                let table = ctx.table.lock().expect("table lock");
                                kv.retain(|p| table.iter().any(|e| e.peer == *p));
                            }
                            kv.insert(peer_id);
                        } else {
                            kv.remove(&peer_id);
                        }
                    }
                    if bavard && !ctx.admission.is_admitted(&peer_id) {
                        // Show each other our certificates now, before either needs them.
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            let _ = crate::admission::protocol::hello_with(&ctx, peer_id).await;
                        });
                    }
                    if info.protocols.contains(&KAD_PROTOCOL) {
                        kad.add_to_table(peer_id, info.listen_addrs.clone());
                    } else {
                        // A client-mode or non-Kademlia peer never enters the table.
                        ctx.table.lock().expect("table lock").remove(&peer_id);
                    }
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    tracing::debug!(?peer_id, "dial failed: {error}");
                }
                _ => {}
            },
        }
    }
    // Dropping the swarm closes every connection.
    drop(swarm);
}

/// Most peers remembered as bavard nodes.
const MAX_KV_PEERS: usize = 10_000;

/// The IP address of a multiaddr, if it has one.
fn ip_of(addr: &libp2p::Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// Connections open per IP address (loopback is not counted: local testbeds run every node on
/// one address).
#[derive(Default)]
struct PerIp {
    by_connection: std::collections::HashMap<libp2p::swarm::ConnectionId, std::net::IpAddr>,
    count: std::collections::HashMap<std::net::IpAddr, u32>,
}

impl PerIp {
    /// Counts a new connection from `ip`; false (and not counted) when `ip` is at `max`.
    fn open(&mut self, id: libp2p::swarm::ConnectionId, ip: std::net::IpAddr, max: u32) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let n = self.count.entry(ip).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        self.by_connection.insert(id, ip);
        true
    }

    fn close(&mut self, id: libp2p::swarm::ConnectionId) {
        if let Some(ip) = self.by_connection.remove(&id)
            && let Some(n) = self.count.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.count.remove(&ip);
            }
        }
    }
}
