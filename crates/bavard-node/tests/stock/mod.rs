//! A stock rust-libp2p Kademlia node (libp2p-kad with identify) over MemoryTransport, driven by a
//! spawned task through a command channel, for interoperability tests with bavard nodes.
//!
//! The node runs `kad::Behaviour<MemoryStore>` with the default `/ipfs/kad/1.0.0` protocol and
//! identify; its mode is set explicitly (over MemoryTransport it has no confirmed external
//! address, so the automatic mode would pick client). As rust-libp2p applications do, it adds a
//! peer's identify listen addresses to Kademlia when identify shows the peer serves the Kademlia
//! protocol. Every query answers through a oneshot; every wait on it is bounded.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::kad::store::MemoryStore;
use libp2p::kad::{self, GetProvidersOk, GetRecordOk, Mode, QueryId, QueryResult, Quorum};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport as _, identify, noise, yamux};
use tokio::sync::{mpsc, oneshot};

/// How long a test waits for any one stock-node command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(NetworkBehaviour)]
struct StockBehaviour {
    identify: identify::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
}

/// A record found by a `get_record`, with the peer that returned it (`None`: the local store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub peer: Option<PeerId>,
    pub value: Vec<u8>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    AddAddress(PeerId, Multiaddr, Reply<()>),
    Bootstrap(Reply<()>),
    GetClosestPeers(Vec<u8>, Reply<Vec<PeerId>>),
    PutRecord(Vec<u8>, Vec<u8>, Option<std::time::Duration>, Reply<()>),
    PutRecordTo(Vec<u8>, Vec<u8>, Vec<PeerId>, Reply<()>),
    GetRecord(Vec<u8>, Reply<Vec<Found>>),
    StartProviding(Vec<u8>, Reply<()>),
    GetProviders(Vec<u8>, Reply<HashSet<PeerId>>),
    RoutingTable(Reply<Vec<PeerId>>),
}

/// A query waiting for its final step.
enum Pending {
    Unit(Reply<()>),
    Peers(Reply<Vec<PeerId>>),
    Record(Vec<Found>, Reply<Vec<Found>>),
    Providers(HashSet<PeerId>, Reply<HashSet<PeerId>>),
}

/// A handle on a running stock node. Dropping it stops the node's task.
pub struct StockNode {
    peer_id: PeerId,
    addr: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StockNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StockNode {
    /// Starts a stock node listening on `/memory/0` in `mode`.
    pub async fn start(mode: Mode) -> StockNode {
        let mut swarm = build_swarm();
        swarm.behaviour_mut().kad.set_mode(Some(mode));
        swarm
            .listen_on("/memory/0".parse().expect("valid multiaddr"))
            .expect("listen on memory");
        let addr = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address;
                }
            }
        })
        .await
        .expect("stock node listen address within 10 s");
        swarm.add_external_address(addr.clone());
        let peer_id = *swarm.local_peer_id();
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(swarm, rx));
        StockNode {
            peer_id,
            addr,
            commands,
            task,
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The listen address with its `/p2p/` suffix.
    pub fn p2p_addr(&self) -> Multiaddr {
        self.addr.clone().with(Protocol::P2p(self.peer_id))
    }

    async fn call<T>(
        &self,
        what: &str,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| format!("{what}: the stock node stopped"))?;
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Err(_) => Err(format!("{what}: no answer within {COMMAND_TIMEOUT:?}")),
            Ok(Err(_)) => Err(format!("{what}: the stock node dropped the reply")),
            Ok(Ok(result)) => result.map_err(|e| format!("{what}: {e}")),
        }
    }

    /// Adds `addr` (ending in `/p2p/PEER`) to Kademlia's routing table.
    pub async fn add_address(&self, addr: &Multiaddr) -> Result<(), String> {
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => peer,
            _ => return Err(format!("{addr} does not end in /p2p/PEER_ID")),
        };
        let addr = addr.clone();
        self.call("add_address", |tx| Command::AddAddress(peer, addr, tx))
            .await
    }

    /// Runs a bootstrap to its last step.
    pub async fn bootstrap(&self) -> Result<(), String> {
        self.call("bootstrap", Command::Bootstrap).await
    }

    pub async fn get_closest_peers(&self, key: &[u8]) -> Result<Vec<PeerId>, String> {
        let key = key.to_vec();
        self.call("get_closest_peers", |tx| Command::GetClosestPeers(key, tx))
            .await
    }

    /// `put_record` with `Quorum::One`.
    pub async fn put_record(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.put_record_with_ttl(key, value, None).await
    }

    /// `put_record` with an expiry `ttl` from now (sent as the record's TTL).
    pub async fn put_record_with_ttl(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<std::time::Duration>,
    ) -> Result<(), String> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.call("put_record", |tx| Command::PutRecord(key, value, ttl, tx))
            .await
    }

    /// `put_record_to` the given peers with `Quorum::One` (not stored locally).
    pub async fn put_record_to(
        &self,
        key: &[u8],
        value: &[u8],
        peers: Vec<PeerId>,
    ) -> Result<(), String> {
        let (key, value) = (key.to_vec(), value.to_vec());
        self.call("put_record_to", |tx| {
            Command::PutRecordTo(key, value, peers, tx)
        })
        .await
    }

    /// Every record the lookup found, local and remote, once the query finished.
    pub async fn get_record(&self, key: &[u8]) -> Result<Vec<Found>, String> {
        let key = key.to_vec();
        self.call("get_record", |tx| Command::GetRecord(key, tx))
            .await
    }

    pub async fn start_providing(&self, key: &[u8]) -> Result<(), String> {
        let key = key.to_vec();
        self.call("start_providing", |tx| Command::StartProviding(key, tx))
            .await
    }

    /// Every provider found, once the query finished.
    pub async fn get_providers(&self, key: &[u8]) -> Result<HashSet<PeerId>, String> {
        let key = key.to_vec();
        self.call("get_providers", |tx| Command::GetProviders(key, tx))
            .await
    }

    /// The peers in Kademlia's routing table.
    pub async fn routing_table(&self) -> Vec<PeerId> {
        self.call("routing_table", Command::RoutingTable)
            .await
            .expect("routing table")
    }
}

fn build_swarm() -> Swarm<StockBehaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            // The same stack as bavard's in-process transport (crates/bavard-node/src/swarm.rs).
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                MemoryTransport::default()
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .expect("memory transport")
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mut config = kad::Config::new(kad::PROTOCOL_NAME);
            config.set_query_timeout(Duration::from_secs(20));
            StockBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    "/ipfs/id/1.0.0".to_string(),
                    key.public(),
                )),
                kad: kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), config),
            }
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn answer<T>(tx: Reply<T>, result: Result<T, String>) {
    let _ = tx.send(result);
}

async fn run(mut swarm: Swarm<StockBehaviour>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut pending: HashMap<QueryId, Pending> = HashMap::new();
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                command(&mut swarm, &mut pending, cmd);
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(StockBehaviourEvent::Identify(identify::Event::Received {
                    peer_id,
                    info,
                    ..
                })) if info.protocols.contains(&kad::PROTOCOL_NAME) => {
                    for addr in info.listen_addrs {
                        swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                SwarmEvent::Behaviour(StockBehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed { id, result, step, .. },
                )) => progress(&mut pending, id, result, step.last),
                _ => {}
            },
        }
    }
}

fn command(
    swarm: &mut Swarm<StockBehaviour>,
    pending: &mut HashMap<QueryId, Pending>,
    cmd: Command,
) {
    let kad = &mut swarm.behaviour_mut().kad;
    match cmd {
        Command::AddAddress(peer, addr, tx) => {
            let update = kad.add_address(&peer, addr);
            let ok = matches!(
                update,
                kad::RoutingUpdate::Success | kad::RoutingUpdate::Pending
            );
            answer(
                tx,
                if ok {
                    Ok(())
                } else {
                    Err(format!("{update:?}"))
                },
            );
        }
        Command::Bootstrap(tx) => match kad.bootstrap() {
            Ok(id) => {
                pending.insert(id, Pending::Unit(tx));
            }
            Err(e) => answer(tx, Err(e.to_string())),
        },
        Command::GetClosestPeers(key, tx) => {
            let id = kad.get_closest_peers(key);
            pending.insert(id, Pending::Peers(tx));
        }
        Command::PutRecord(key, value, ttl, tx) => {
            let mut record = kad::Record::new(kad::RecordKey::new(&key), value);
            record.expires = ttl.map(|t| std::time::Instant::now() + t);
            match kad.put_record(record, Quorum::One) {
                Ok(id) => {
                    pending.insert(id, Pending::Unit(tx));
                }
                Err(e) => answer(tx, Err(e.to_string())),
            }
        }
        Command::PutRecordTo(key, value, peers, tx) => {
            let record = kad::Record::new(kad::RecordKey::new(&key), value);
            let id = kad.put_record_to(record, peers.into_iter(), Quorum::One);
            pending.insert(id, Pending::Unit(tx));
        }
        Command::GetRecord(key, tx) => {
            let id = kad.get_record(kad::RecordKey::new(&key));
            pending.insert(id, Pending::Record(Vec::new(), tx));
        }
        Command::StartProviding(key, tx) => match kad.start_providing(kad::RecordKey::new(&key)) {
            Ok(id) => {
                pending.insert(id, Pending::Unit(tx));
            }
            Err(e) => answer(tx, Err(e.to_string())),
        },
        Command::GetProviders(key, tx) => {
            let id = kad.get_providers(kad::RecordKey::new(&key));
            pending.insert(id, Pending::Providers(HashSet::new(), tx));
        }
        Command::RoutingTable(tx) => {
            let peers = kad
                .kbuckets()
                .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
                .collect();
            answer(tx, Ok(peers));
        }
    }
}

/// Feeds one query step to its pending command; answers on the last step.
fn progress(pending: &mut HashMap<QueryId, Pending>, id: QueryId, result: QueryResult, last: bool) {
    let Some(mut entry) = pending.remove(&id) else {
        return;
    };
    // Accumulate what intermediate steps report.
    match (&mut entry, &result) {
        (Pending::Record(found, _), QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(r)))) => {
            found.push(Found {
                peer: r.peer,
                value: r.record.value.clone(),
            });
        }
        (
            Pending::Providers(set, _),
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })),
        ) => set.extend(providers.iter().copied()),
        _ => {}
    }
    if !last {
        pending.insert(id, entry);
        return;
    }
    match entry {
        Pending::Unit(tx) => {
            let result = match result {
                QueryResult::Bootstrap(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                QueryResult::PutRecord(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                QueryResult::StartProviding(r) => r.map(|_| ()).map_err(|e| e.to_string()),
                other => Err(format!("unexpected result {other:?}")),
            };
            answer(tx, result);
        }
        Pending::Peers(tx) => {
            let result = match result {
                QueryResult::GetClosestPeers(Ok(ok)) => {
                    Ok(ok.peers.into_iter().map(|p| p.peer_id).collect())
                }
                QueryResult::GetClosestPeers(Err(e)) => Err(e.to_string()),
                other => Err(format!("unexpected result {other:?}")),
            };
            answer(tx, result);
        }
        Pending::Record(found, tx) => match result {
            // NotFound after nothing was found is a valid, empty answer.
            QueryResult::GetRecord(Ok(_))
            | QueryResult::GetRecord(Err(kad::GetRecordError::NotFound { .. })) => {
                answer(tx, Ok(found))
            }
            // A timeout after some records arrived still answers with what was found.
            QueryResult::GetRecord(Err(_)) if !found.is_empty() => answer(tx, Ok(found)),
            QueryResult::GetRecord(Err(e)) => answer(tx, Err(e.to_string())),
            other => answer(tx, Err(format!("unexpected result {other:?}"))),
        },
        Pending::Providers(set, tx) => match result {
            QueryResult::GetProviders(Ok(_)) => answer(tx, Ok(set)),
            QueryResult::GetProviders(Err(_)) if !set.is_empty() => answer(tx, Ok(set)),
            QueryResult::GetProviders(Err(e)) => answer(tx, Err(e.to_string())),
            other => answer(tx, Err(format!("unexpected result {other:?}"))),
        },
    }
}
