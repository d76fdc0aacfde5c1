//! One stock rust-libp2p Kademlia node on TCP loopback, driven by a task through a command
//! channel.
//!
//! The node is what a rust-libp2p application would build, with the library's defaults: TCP +
//! Noise + yamux, `kad::Behaviour<MemoryStore>` on `/ipfs/kad/1.0.0` (k = 20, α = 3, record
//! replication to the 20 closest), and identify; it runs in server mode (set explicitly: on
//! loopback it has no confirmed external address, so the automatic mode would pick client) and,
//! as rust-libp2p applications do, adds a peer's identify listen addresses to Kademlia when the
//! peer serves the Kademlia protocol. It is the same node as the interop tests' stock helper
//! (`crates/bavard-node/tests/stock/mod.rs`) on TCP instead of MemoryTransport.
//!
//! Every answer goes back through a oneshot; the caller bounds every wait.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::kad::{self, GetRecordOk, Mode, QueryId, QueryResult, QueryStats, Quorum};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
struct StockBehaviour {
    identify: identify::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    AddAddress(PeerId, Multiaddr),
    Bootstrap,
    Put(Vec<u8>, Vec<u8>, Reply<u32>),
    Get(Vec<u8>, GetUntil, Reply<(Vec<u8>, u32)>),
    RoutingTableSize(oneshot::Sender<usize>),
}

/// When a `get` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GetUntil {
    /// At the first record another peer returns; the query is then finished.
    First,
    /// When the query ends by itself (the 20 closest peers have answered), with the first
    /// record another peer returned.
    Last,
}

/// A query waiting for its answer (with the number of Kademlia requests it sent).
enum Pending {
    Put(Reply<u32>),
    Get(Reply<(Vec<u8>, u32)>),
    /// A `GetUntil::Last` get, with the first remote record found so far.
    GetAll(Option<Vec<u8>>, Reply<(Vec<u8>, u32)>),
}

/// A handle on a running node; dropping it stops the node.
pub(crate) struct Node {
    peer_id: PeerId,
    addr: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Node {
    /// Starts a node listening on a free TCP port of 127.0.0.1, storing at most `max_records`.
    pub(crate) async fn start(max_records: usize) -> anyhow::Result<Node> {
        let mut swarm = build_swarm(max_records)?;
        swarm.behaviour_mut().kad.set_mode(Some(Mode::Server));
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        let addr = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address;
                }
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("no listen address within 10 s"))?;
        swarm.add_external_address(addr.clone());
        let peer_id = *swarm.local_peer_id();
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(swarm, rx));
        Ok(Node {
            peer_id,
            addr,
            commands,
            task,
        })
    }

    /// Its listen address with `/p2p/PEER_ID`.
    pub(crate) fn p2p_addr(&self) -> Multiaddr {
        self.addr.clone().with(Protocol::P2p(self.peer_id))
    }

    fn send(&self, c: Command) -> Result<(), String> {
        self.commands
            .send(c)
            .map_err(|_| "the node stopped".to_string())
    }

    /// Adds a peer's address (ending in `/p2p/PEER_ID`) to its routing table.
    pub(crate) fn add_address(&self, addr: &Multiaddr) -> Result<(), String> {
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(format!("{addr} does not end in /p2p/PEER_ID"));
        };
        self.send(Command::AddAddress(peer, addr.clone()))
    }

    /// Starts a Kademlia bootstrap (its own id, then a random id per bucket), without waiting.
    pub(crate) fn bootstrap(&self) -> Result<(), String> {
        self.send(Command::Bootstrap)
    }

    /// How many peers its routing table holds.
    pub(crate) async fn routing_table_size(&self) -> Result<usize, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::RoutingTableSize(tx))?;
        rx.await
            .map_err(|_| "the node dropped the reply".to_string())
    }

    /// `put_record` with `Quorum::One`, answered when the query finishes: after the lookup of
    /// the 20 closest peers and the first of their PUT_VALUE acknowledgements. Returns the
    /// Kademlia requests the query sent (lookup and PUT_VALUE).
    pub(crate) async fn put(&self, key: &[u8], value: &[u8]) -> Result<u32, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Put(key.to_vec(), value.to_vec(), tx))?;
        rx.await
            .map_err(|_| "the node dropped the reply".to_string())?
    }

    /// `get_record`, answered by the first record another peer returns (the query is then
    /// finished) or, with `GetUntil::Last`, when the query ends; the node's own copy does not
    /// count (see the crate docs). Returns the value and the Kademlia requests the query had
    /// sent by then.
    pub(crate) async fn get(&self, key: &[u8], until: GetUntil) -> Result<(Vec<u8>, u32), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Get(key.to_vec(), until, tx))?;
        rx.await
            .map_err(|_| "the node dropped the reply".to_string())?
    }
}

fn build_swarm(max_records: usize) -> anyhow::Result<Swarm<StockBehaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let store = MemoryStore::with_config(
                peer_id,
                MemoryStoreConfig {
                    max_records,
                    ..MemoryStoreConfig::default()
                },
            );
            StockBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    "/ipfs/id/1.0.0".to_string(),
                    key.public(),
                )),
                kad: kad::Behaviour::with_config(
                    peer_id,
                    store,
                    kad::Config::new(kad::PROTOCOL_NAME),
                ),
            }
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build())
}

async fn drive(mut swarm: Swarm<StockBehaviour>, mut commands: mpsc::UnboundedReceiver<Command>) {
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
                    kad::Event::OutboundQueryProgressed { id, result, step, stats },
                )) => progress(&mut swarm, &mut pending, id, result, &stats, step.last),
                _ => {}
            },
        }
    }
}

fn command(swarm: &mut Swarm<StockBehaviour>, pending: &mut HashMap<QueryId, Pending>, c: Command) {
    let kad = &mut swarm.behaviour_mut().kad;
    match c {
        Command::AddAddress(peer, addr) => {
            kad.add_address(&peer, addr);
        }
        Command::Bootstrap => {
            // Fails only with an empty routing table; the caller retries.
            let _ = kad.bootstrap();
        }
        Command::Put(key, value, tx) => {
            let record = kad::Record::new(kad::RecordKey::new(&key), value);
            match kad.put_record(record, Quorum::One) {
                Ok(id) => {
                    pending.insert(id, Pending::Put(tx));
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("put_record: {e}")));
                }
            }
        }
        Command::Get(key, until, tx) => {
            let id = kad.get_record(kad::RecordKey::new(&key));
            let p = match until {
                GetUntil::First => Pending::Get(tx),
                GetUntil::Last => Pending::GetAll(None, tx),
            };
            pending.insert(id, p);
        }
        Command::RoutingTableSize(tx) => {
            let n = kad.kbuckets().map(|b| b.num_entries()).sum();
            let _ = tx.send(n);
        }
    }
}

fn progress(
    swarm: &mut Swarm<StockBehaviour>,
    pending: &mut HashMap<QueryId, Pending>,
    id: QueryId,
    result: QueryResult,
    stats: &QueryStats,
    last: bool,
) {
    let sent = stats.num_requests();
    match (pending.get_mut(&id), result) {
        (
            Some(Pending::GetAll(found, _)),
            QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(r))),
        ) if r.peer.is_some() => {
            found.get_or_insert(r.record.value);
            if last {
                finish_get_all(pending, id, sent);
            }
        }
        (Some(Pending::Get(_)), QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(r))))
            if r.peer.is_some() =>
        {
            if let Some(Pending::Get(tx)) = pending.remove(&id) {
                let _ = tx.send(Ok((r.record.value, sent)));
            }
            if let Some(mut q) = swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
        _ if !last => {}
        (Some(Pending::Put(_)), QueryResult::PutRecord(r)) => {
            if let Some(Pending::Put(tx)) = pending.remove(&id) {
                let _ = tx.send(r.map(|_| sent).map_err(|e| format!("put_record: {e}")));
            }
        }
        (Some(Pending::GetAll(..)), QueryResult::GetRecord(_)) => {
            finish_get_all(pending, id, sent);
        }
        (Some(Pending::Get(_)), QueryResult::GetRecord(r)) => {
            if let Some(Pending::Get(tx)) = pending.remove(&id) {
                let why = match r {
                    Err(e) => e.to_string(),
                    Ok(_) => "only the local copy was found".to_string(),
                };
                let _ = tx.send(Err(format!("get_record: {why}")));
            }
        }
        _ => {}
    }
}

/// Answers a `GetUntil::Last` get whose query ended.
fn finish_get_all(pending: &mut HashMap<QueryId, Pending>, id: QueryId, sent: u32) {
    if let Some(Pending::GetAll(found, tx)) = pending.remove(&id) {
        let _ = tx.send(
            found
                .map(|v| (v, sent))
                .ok_or_else(|| "get_record: no other peer returned the record".to_string()),
        );
    }
}
