//! The context the node's services share: what a service needs from the node — configuration,
//! metrics, stream control, the address book, the routing table, the membership view, shutdown —
//! without naming the node. It is cheap to clone; every clone is the same context.
//!
//! Services (the Kademlia client, the replica service, gossip, the jobs, the swarm task) each
//! take a context and the other services they use, never the [`crate::Node`] handle, so they can
//! be built and tested alone and no import runs back up to `node.rs`.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bavard_routing::{Key, RoutingTable};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};

use crate::addresses::AddressBook;
use crate::config::NodeConfig;
use crate::members::MembershipView;
use crate::metrics::Metrics;

/// Most peers remembered as already warned about.
const MAX_WARNED: usize = 10_000;

/// What the swarm task is asked to do.
pub(crate) enum SwarmCommand {
    Dial(Multiaddr),
    Block(PeerId),
    Unblock(PeerId),
}

/// The shared context (see the module docs).
#[derive(Clone)]
pub(crate) struct Context(Arc<Shared>);

/// What the context holds.
pub(crate) struct Shared {
    pub(crate) peer_id: PeerId,
    /// When the routing table last refused a peer for IP diversity.
    pub(crate) pressure: Arc<crate::diversity::Pressure>,
    /// This node's identity key (signs its gossip claims and messages).
    pub(crate) keypair: libp2p::identity::Keypair,
    /// SHA-256 of the peer id: this node's place in the keyspace.
    pub(crate) local_key: Key,
    pub(crate) config: NodeConfig,
    pub(crate) metrics: Metrics,
    /// Who is a member of the cluster (certificates, revocations).
    pub(crate) admission: std::sync::Arc<crate::admission::Admission>,
    /// Opens and accepts raw protocol streams.
    pub(crate) control: crate::streams::Control,
    pub(crate) book: AddressBook,
    pub(crate) table: Mutex<RoutingTable<PeerId, Vec<Multiaddr>>>,
    pub(crate) members: MembershipView,
    /// Peers that identified as speaking the replica protocol (bavard nodes, not stock ones).
    pub(crate) kv_peers: Mutex<HashSet<PeerId>>,
    pub(crate) connected: Mutex<HashSet<PeerId>>,
    pub(crate) listen_addrs: Mutex<Vec<Multiaddr>>,
    /// The test-only fault layer, when `[fault_injection]` enables it.
    pub(crate) faults: Option<crate::fault::FaultLayer>,
    /// Per-peer and per-IP request rates.
    pub(crate) rate: crate::rate::RateLimits,
    /// The IP address of each connected peer (set by the swarm task).
    pub(crate) peer_ips: Mutex<HashMap<PeerId, std::net::IpAddr>>,
    pub(crate) started: Instant,
    commands: mpsc::UnboundedSender<SwarmCommand>,
    shutdown: watch::Sender<bool>,
    /// Peers whose abuse was already logged, so a flood is logged once.
    warned: Mutex<HashSet<PeerId>>,
}

impl Deref for Context {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of a context that come from start-up.
pub(crate) struct Parts {
    pub(crate) peer_id: PeerId,
    pub(crate) config: NodeConfig,
    pub(crate) admission: std::sync::Arc<crate::admission::Admission>,
    pub(crate) metrics: Metrics,
    pub(crate) keypair: libp2p::identity::Keypair,
    pub(crate) control: crate::streams::Control,
    pub(crate) book: AddressBook,
    pub(crate) table: RoutingTable<PeerId, Vec<Multiaddr>>,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    pub(crate) commands: mpsc::UnboundedSender<SwarmCommand>,
}

impl Context {
    pub(crate) fn new(parts: Parts) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self(Arc::new(Shared {
            peer_id: parts.peer_id,
            keypair: parts.keypair,
            pressure: Arc::default(),
            local_key: peer_key(&parts.peer_id),
            faults: crate::fault::FaultLayer::new(&parts.config.fault_injection),
            rate: crate::rate::RateLimits::new(
                parts.config.limits.max_requests_per_sec_per_peer,
                parts.config.limits.max_requests_per_sec_per_ip,
            ),
            peer_ips: Mutex::new(HashMap::new()),
            config: parts.config,
            metrics: parts.metrics,
            admission: parts.admission,
            control: parts.control,
            book: parts.book,
            table: Mutex::new(parts.table),
            members: MembershipView::default(),
            kv_peers: Mutex::new(HashSet::new()),
            connected: Mutex::new(HashSet::new()),
            listen_addrs: Mutex::new(parts.listen_addrs),
            started: Instant::now(),
            commands: parts.commands,
            shutdown,
            warned: Mutex::new(HashSet::new()),
        }))
    }

    /// A future that resolves when the node shuts down.
    pub(crate) fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Whether the node is shutting down.
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells every task to stop.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Asks the swarm task to do something; false once it has stopped.
    pub(crate) fn swarm(&self, command: SwarmCommand) -> bool {
        self.commands.send(command).is_ok()
    }

    /// The addresses this node listens on.
    pub(crate) fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.lock().expect("listen lock").clone()
    }

    /// Records a confirmed address for `peer` (from the peer itself, a dialled connection or
    /// the operator), within the per-peer limit.
    pub(crate) fn learn_addr(&self, peer: PeerId, addr: Multiaddr) {
        self.book
            .add(peer, addr, self.config.limits.max_addrs_per_peer);
    }

    /// Records an address a third party gave for `peer` (see [`crate::addresses::Source`]).
    pub(crate) fn hear_addr(&self, peer: PeerId, addr: Multiaddr) {
        self.book.add_from(
            peer,
            addr,
            self.config.limits.max_addrs_per_peer,
            crate::addresses::Source::Hearsay,
        );
    }

    /// Admits one inbound request of `peer` under the rate limits; counts and logs a refusal.
    pub(crate) fn admit_request(&self, peer: PeerId) -> bool {
        let ip = self.peer_ips.lock().expect("ips lock").get(&peer).copied();
        match self.rate.check(&peer, ip, Instant::now()) {
            Ok(()) => true,
            Err(which) => {
                let reason = match which {
                    crate::rate::Limited::Peer => "rate_limited_peer",
                    crate::rate::Limited::Ip => "rate_limited_ip",
                };
                self.metrics.reject(reason);
                self.warn_once(peer, &format!("request rate over the limit ({reason})"));
                false
            }
        }
    }

    /// Logs a peer's first offence at warn level and the rest at debug, so a flood cannot
    /// flood the log (the set of peers already warned about is bounded).
    pub(crate) fn warn_once(&self, peer: PeerId, what: &str) {
        let first = {
            let mut warned = self.warned.lock().expect("warned lock");
            if warned.len() >= MAX_WARNED {
                warned.clear();
            }
            warned.insert(peer)
        };
        if first {
            tracing::warn!(%peer, "dropping an inbound stream: {what} (further offences logged at debug)");
        } else {
            tracing::debug!(%peer, "dropping an inbound stream: {what}");
        }
    }

    /// Updates the gauges that mirror the routing table and the connections.
    pub(crate) fn refresh_gauges(&self) {
        self.metrics
            .routing_table_size
            .set(self.table.lock().expect("table lock").len() as i64);
        self.metrics
            .connected_peers
            .set(self.connected.lock().expect("connected lock").len() as i64);
    }
}

/// The routing key of a peer: SHA-256 of its id's bytes, as libp2p-kad.
pub(crate) fn peer_key(peer: &PeerId) -> Key {
    Key::hash(&peer.to_bytes())
}

/// Inbound streams open per peer, counted against a limit.
#[derive(Clone, Default)]
pub(crate) struct Slots(Arc<Mutex<HashMap<PeerId, usize>>>);

/// One counted inbound stream; released when dropped.
pub(crate) struct Slot {
    slots: Slots,
    peer: PeerId,
}

impl Slots {
    /// A slot for one more stream of `peer`, unless it already holds `max`.
    pub(crate) fn acquire(&self, peer: PeerId, max: usize) -> Option<Slot> {
        let mut open = self.0.lock().expect("slots lock");
        let count = open.entry(peer).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.0.lock().expect("slots lock");
        if let Some(count) = open.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}
