//! The [`Node`] handle and its background tasks.
//!
//! Start-up builds the swarm, opens the store, binds the listen addresses, then spawns:
//! - the swarm task, which owns the `Swarm` and turns its events into address-book and routing
//!   table updates (a peer enters the table only once identify shows it serves `/ipfs/kad/1.0.0`,
//!   or once it has answered one of our requests);
//! - the Kademlia server, which accepts inbound streams (bounded per peer) and answers requests;
//! - the jobs: bootstrap, bucket refresh, re-replication, republishing and expiry.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bavard_routing::{InsertOutcome, Key, RoutingTable, TableConfig};
use bavard_store::{
    Hlc, HlcTimestamp, MemoryStore, PutOutcome, Record, RecordStore, RedbStore,
    StoreConfig as BackendConfig, StoreLimits, Version,
};
use futures::StreamExt as _;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, identify};
use tokio::sync::{mpsc, watch};

use crate::addresses::AddressBook;
use crate::api::{
    BucketInfo, Consistency, GetOptions, GetReply, NodeError, PeerInfo, PutOptions, PutReply,
    RoutingInfo, Status,
};
use crate::config::{NodeConfig, secs};
use crate::kad::lookup::LookupKind;
use crate::kad::{KAD_PROTOCOL, KadPeer, Request, Response, WireRecord};
use crate::metrics::Metrics;
use crate::swarm::BehaviourEvent;
use crate::util::{peer_id_of, unix_ms};

/// A running bavard node. Cheap to clone; every clone drives the same node.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) enum SwarmCommand {
    Dial(Multiaddr),
    Block(PeerId),
    Unblock(PeerId),
}

pub(crate) struct Inner {
    pub(crate) peer_id: PeerId,
    pub(crate) local_key: Key,
    pub(crate) config: NodeConfig,
    pub(crate) table: Mutex<RoutingTable<PeerId, Vec<Multiaddr>>>,
    pub(crate) store: Arc<crate::closable::Closable>,
    pub(crate) hlc: Mutex<Hlc>,
    /// The persisted upper bound on issued timestamps (see [`crate::clock`]); locked after
    /// `hlc`, only by [`Node::next_version`].
    lease: Mutex<crate::clock::ClockLease>,
    /// Idle `/bavard/kv/1` streams for reuse (see [`crate::replica::pool`]).
    pub(crate) kv_streams: crate::replica::pool::StreamPool<libp2p::Stream>,
    pub(crate) book: AddressBook,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) metrics: Metrics,
    commands: mpsc::UnboundedSender<SwarmCommand>,
    connected: Mutex<HashSet<PeerId>>,
    listen_addrs: Mutex<Vec<Multiaddr>>,
    started: Instant,
    shutdown_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Peers whose abuse was already logged, so a flood is logged once.
    pub(crate) warned: Mutex<HashSet<PeerId>>,
    /// Inbound streams open per peer.
    pub(crate) inbound: Mutex<HashMap<PeerId, usize>>,
    /// Membership and topic broadcast (driven by the gossip task).
    pub(crate) gossip: crate::gossip::Gossip,
    /// The test-only fault layer, when `[fault_injection]` enables it.
    pub(crate) faults: Option<crate::fault::FaultLayer>,
    /// Peers that identified as speaking the replica protocol (bavard nodes, not stock ones).
    pub(crate) kv_peers: Mutex<HashSet<PeerId>>,
    /// Group commit for every local write.
    pub(crate) committer: crate::replica::commit::Committer,
    /// Hints kept for replicas that were down.
    pub(crate) hints: crate::replica::hints::Hints,
    /// The placement of keys, rebuilt when the members change.
    pub(crate) placement: crate::replica::PlacementCache,
    /// Anti-entropy progress and views.
    pub(crate) sync: crate::replica::antientropy::SyncState,
    /// The byte budget of background transfers (anti-entropy, hint delivery).
    pub(crate) sync_pace: crate::replica::pace::Pace,
}

/// The routing key of a peer: SHA-256 of its id's bytes, as libp2p-kad.
pub(crate) fn peer_key(peer: &PeerId) -> Key {
    Key::hash(&peer.to_bytes())
}

impl Node {
    /// Starts a node: identity, store, swarm, listeners, background jobs and bootstrap.
    ///
    /// Returns once every listen address is bound (so [`Node::listen_addrs`] is complete).
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        config.validate()?;
        if !config.store.fsync && !config.store.in_memory {
            tracing::warn!(
                "store.fsync = false: commits are not synced, a crash may lose acknowledged writes"
            );
        }
        let keypair = crate::identity::load_or_create(&config.data_dir)?;
        let peer_id = keypair.public().to_peer_id();

        let limits = StoreLimits {
            max_value_bytes: config.store.max_value_size,
            max_key_bytes: config.store.max_key_size,
            max_records: config.store.max_records,
            max_providers_per_key: config.store.max_providers_per_key,
            max_provided_keys: config.store.max_provided_keys,
            ..StoreLimits::default()
        };
        let backend = BackendConfig::new(peer_id.to_bytes())
            .with_fsync(config.store.fsync)
            .with_limits(limits)
            .with_tombstone_grace_ms(
                secs(config.replication.tombstone_grace_secs).as_millis() as u64
            );
        let store: Arc<dyn RecordStore> = if config.store.in_memory {
            Arc::new(MemoryStore::new(backend))
        } else {
            let path = config.data_dir.join("records.redb");
            Arc::new(
                RedbStore::open(&path, backend)
                    .with_context(|| format!("cannot open the record store {}", path.display()))?,
            )
        };
        let store = Arc::new(crate::closable::Closable::new(store));
        let lease =
            crate::clock::ClockLease::open((!config.store.in_memory).then_some(&config.data_dir))?;
        let mut hlc = Hlc::new(bavard_store::hlc::DEFAULT_MAX_DRIFT_MS);
        hlc.observe_persisted(HlcTimestamp::new(lease.until_ms(), 0));
        let behind_ms = lease.until_ms().saturating_sub(unix_ms());
        if behind_ms > hlc.max_drift_ms() {
            tracing::warn!(
                behind_ms,
                "the wall clock is behind the versions this node issued before it restarted; \
                 replicas refuse its writes until the clock catches up"
            );
        }

        let book = AddressBook::default();
        let mut swarm = crate::swarm::build(keypair, book.clone(), Duration::from_secs(120))?;
        let control = swarm.behaviour().stream.new_control();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
        }
        // Wait until every listener reports its address (port 0 resolves here).
        let mut listen_addrs = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while listen_addrs.len() < config.listen.len() {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address),
                    SwarmEvent::ListenerError { error, .. } => anyhow::bail!("listener failed: {error}"),
                    SwarmEvent::ListenerClosed { reason: Err(error), addresses, .. } => {
                        anyhow::bail!("listener on {addresses:?} closed: {error}")
                    }
                    _ => {}
                },
                _ = &mut deadline => anyhow::bail!("listen addresses not bound within 10 s"),
            }
        }
        for addr in &listen_addrs {
            swarm.add_external_address(addr.clone());
        }

        let table_config = TableConfig {
            k: config.kad.k,
            refresh_interval: secs(config.kad.refresh_interval_secs),
            ping_timeout: config.kad.request_timeout(),
            ..TableConfig::default()
        };
        let table = RoutingTable::new(peer_key(&peer_id), table_config)
            .map_err(|e| anyhow::anyhow!("invalid routing table settings: {e}"))?;
        let local_key = peer_key(&peer_id);
        let committer = crate::replica::commit::Committer::start(
            store.clone() as Arc<dyn RecordStore>,
            config.replication.max_batch_records,
        )
        .context("cannot start the committer thread")?;
        let hints_path = config.data_dir.join("hints.redb");
        let hints = crate::replica::hints::Hints::open(
            (!config.store.in_memory).then_some(hints_path.as_path()),
            &peer_id,
            config.replication.max_hints,
            config.store.max_key_size,
            config.store.max_value_size,
            secs(config.replication.hint_ttl_secs).as_millis() as u64,
        )
        .with_context(|| format!("cannot open the hint store {}", hints_path.display()))?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, _) = watch::channel(false);
        let metrics = Metrics::new();
        let inner = Arc::new(Inner {
            peer_id,
            local_key,
            table: Mutex::new(table),
            store,
            hlc: Mutex::new(hlc),
            lease: Mutex::new(lease),
            kv_streams: crate::replica::pool::StreamPool::new(
                config.replication.max_idle_streams_per_peer,
                secs(config.replication.idle_stream_secs),
            ),
            book,
            control,
            metrics,
            commands,
            connected: Mutex::new(HashSet::new()),
            listen_addrs: Mutex::new(listen_addrs),
            started: Instant::now(),
            shutdown_tx,
            tasks: Mutex::new(Vec::new()),
            warned: Mutex::new(HashSet::new()),
            inbound: Mutex::new(HashMap::new()),
            gossip: crate::gossip::Gossip::new(),
            kv_peers: Mutex::new(HashSet::new()),
            faults: crate::fault::FaultLayer::new(&config.fault_injection),
            committer,
            hints,
            placement: crate::replica::PlacementCache::default(),
            sync: crate::replica::antientropy::SyncState::default(),
            sync_pace: crate::replica::pace::Pace::new(config.replication.sync_max_bytes_per_sec),
            config,
        });
        let node = Node { inner };
        node.inner.refresh_gauges();

        let swarm_task = tokio::spawn(run_swarm(node.clone(), swarm, command_rx));
        let kv_task = tokio::spawn(crate::replica::server::run(node.clone()));
        let server_task = tokio::spawn(crate::kad::server::run(node.clone()));
        let jobs_task = tokio::spawn(crate::jobs::run(node.clone()));
        let sync_task = tokio::spawn(crate::replica::antientropy::run(node.clone()));
        let hints_task = tokio::spawn(crate::replica::hints::run(node.clone()));
        node.inner.tasks.lock().expect("tasks lock").extend([
            swarm_task,
            server_task,
            jobs_task,
            kv_task,
            sync_task,
            hints_task,
        ]);
        let gossip_tasks = crate::gossip::spawn(&node);
        node.inner
            .tasks
            .lock()
            .expect("tasks lock")
            .extend(gossip_tasks);

        for addr in node.inner.config.bootstrap.clone() {
            if let Some(peer) = peer_id_of(&addr) {
                node.inner.book.add(
                    peer,
                    addr.clone(),
                    node.inner.config.limits.max_addrs_per_peer,
                );
                let _ = node.inner.commands.send(SwarmCommand::Dial(addr));
            }
        }
        Ok(node)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The addresses this node listens on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.listen_addrs.lock().expect("listen lock").clone()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> NodeConfig {
        self.inner.config.clone()
    }

    /// A future that resolves when the node shuts down.
    pub fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown_tx.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Whether [`Node::shutdown`] was called.
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown_tx.borrow()
    }

    /// Stops every task and closes the swarm. Idempotent.
    pub async fn shutdown(&self) {
        if !self.is_shutting_down() {
            self.gossip_leave().await;
        }
        self.inner.shutdown_tx.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("a background task did not stop within 5 s");
            }
        }
        // Release the storage engines now: tasks spawned for single requests may still hold the
        // node for a moment, and a restart on the same data dir must be able to open them.
        self.inner.store.close();
        self.inner.hints.close();
    }

    /// Dials an address (it must end in `/p2p/PEER_ID`); the peer enters the routing table once
    /// it identifies as a Kademlia server.
    pub fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        let peer = peer_id_of(&addr)
            .ok_or_else(|| NodeError::BadRequest(format!("{addr} does not end in /p2p/PEER_ID")))?;
        self.inner.book.add(
            peer,
            addr.clone(),
            self.inner.config.limits.max_addrs_per_peer,
        );
        self.inner
            .commands
            .send(SwarmCommand::Dial(addr))
            .map_err(|_| NodeError::ShuttingDown)
    }

    /// Refuses every connection to and from `peer` and closes the open ones, until
    /// [`Node::unblock_peer`]. Operators use it to ban a peer; tests use it to cut the network.
    pub fn block_peer(&self, peer: PeerId) {
        let _ = self.inner.commands.send(SwarmCommand::Block(peer));
    }

    /// Lifts a [`Node::block_peer`].
    pub fn unblock_peer(&self, peer: PeerId) {
        let _ = self.inner.commands.send(SwarmCommand::Unblock(peer));
    }

    /// The record this node itself stores under `key` (tombstones included), without asking any
    /// other node: what an operator inspects to see whether a replica has converged.
    pub fn local_record(&self, key: &[u8]) -> Result<Option<Record>, NodeError> {
        self.inner
            .store
            .get(key, unix_ms())
            .map_err(|e| NodeError::Storage(e.to_string()))
    }

    /// Runs one anti-entropy round with `peer` now (it also runs periodically); returns how
    /// many keys were exchanged.
    pub async fn anti_entropy_with(&self, peer: PeerId) -> Result<usize, NodeError> {
        crate::replica::antientropy::round_now(self, peer)
            .await
            .map_err(NodeError::Timeout)
    }

    /// The limits of anti-entropy rounds, from the configuration.
    pub(crate) fn sync_config(&self) -> bavard_replica::SyncConfig {
        let rc = &self.inner.config.replication;
        bavard_replica::SyncConfig {
            max_batch_bytes: rc.max_batch_bytes,
            max_batch_records: rc.max_batch_records,
            max_entries: rc.max_digest_entries,
            ..bavard_replica::SyncConfig::default()
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), NodeError> {
        let max = self.inner.config.store.max_key_size;
        if key.is_empty() {
            return Err(NodeError::BadRequest("the key is empty".into()));
        }
        if key.len() > max {
            return Err(NodeError::BadRequest(format!(
                "the key is {} bytes, over the {max}-byte limit",
                key.len()
            )));
        }
        Ok(())
    }

    /// A new version for a local write, covered by the durable clock lease.
    fn next_version(&self) -> Result<Version, NodeError> {
        let mut hlc = self.inner.hlc.lock().expect("hlc lock");
        let ts = hlc.now(unix_ms());
        self.inner
            .lease
            .lock()
            .expect("lease lock")
            .cover(ts.physical_ms())
            .map_err(|e| NodeError::Storage(format!("cannot extend the clock lease: {e:#}")))?;
        drop(hlc);
        Ok(Version::new(ts, self.inner.peer_id.to_bytes()))
    }

    /// Stores `value` under `key` on the `replication_factor` closest nodes and returns once
    /// `opts.consistency` of them acknowledged it durably.
    pub async fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        opts: PutOptions,
    ) -> Result<PutReply, NodeError> {
        self.check_key(&key)?;
        let max = self.inner.config.store.max_value_size;
        if value.len() > max {
            return Err(NodeError::BadRequest(format!(
                "the value is {} bytes, over the {max}-byte limit",
                value.len()
            )));
        }
        if let Some(condition) = opts.condition {
            self.check_condition(&key, condition).await?;
        }
        let ttl = opts
            .ttl_secs
            .map(Duration::from_secs)
            .unwrap_or_else(|| secs(self.inner.config.kad.record_ttl_secs));
        let record = Record::new(key, value, self.next_version()?)
            .with_publisher(self.inner.peer_id.to_bytes())
            .with_expiry(unix_ms().saturating_add(ttl.as_millis() as u64));
        self.replicate_record(record, opts.consistency).await
    }

    /// Deletes `key` by writing a tombstone to its replicas.
    pub async fn delete(&self, key: Vec<u8>, opts: PutOptions) -> Result<PutReply, NodeError> {
        self.check_key(&key)?;
        if let Some(condition) = opts.condition {
            self.check_condition(&key, condition).await?;
        }
        let now = unix_ms();
        let record = Record::tombstone(key, now, self.next_version()?)
            .with_publisher(self.inner.peer_id.to_bytes());
        self.replicate_record(record, opts.consistency).await
    }

    /// Writes `record` to its replicas (see [`crate::replica`]).
    pub(crate) async fn replicate_record(
        &self,
        record: Record,
        consistency: Consistency,
    ) -> Result<PutReply, NodeError> {
        self.coordinate_write(record, consistency).await
    }

    /// Stores a record in the local store, durably (group commit).
    pub(crate) async fn store_local(&self, record: Record) -> Result<PutOutcome, NodeError> {
        let out = self
            .inner
            .committer
            .put(record)
            .await
            .map_err(|e| NodeError::Storage(e.to_string()));
        self.inner.refresh_gauges();
        out
    }

    /// Reads `key` from its replicas and returns the newest version once `opts.consistency` of
    /// them answered. `Ok(None)` when absent or deleted.
    pub async fn get(&self, key: &[u8], opts: GetOptions) -> Result<Option<GetReply>, NodeError> {
        self.check_key(key)?;
        let mut best = self.coordinate_read(key, opts.consistency).await?;
        if best.is_none() {
            // Records put by stock libp2p nodes may live outside our preference list (they
            // replicate to their own k closest): fall back to a Kademlia GET_VALUE walk.
            best = self
                .lookup(key, LookupKind::GetValue { want: 1 })
                .await?
                .records
                .into_iter()
                .max_by(|a, b| a.version.cmp(&b.version));
        }
        Ok(best.and_then(|r| {
            let version = r.version.hlc.to_string();
            r.data().map(|v| GetReply {
                value: v.to_vec(),
                version,
            })
        }))
    }

    /// Announces this node as a provider of `key` to the k closest nodes; returns how many
    /// accepted the announcement (this node included).
    pub async fn provide(&self, key: Vec<u8>) -> Result<usize, NodeError> {
        self.check_key(&key)?;
        let now = unix_ms();
        let ttl = secs(self.inner.config.kad.provider_ttl_secs).as_millis() as u64;
        let addrs: Vec<Vec<u8>> = self.listen_addrs().iter().map(|a| a.to_vec()).collect();
        let local = bavard_store::ProviderRecord::new(
            key.clone(),
            self.inner.peer_id.to_bytes(),
            addrs,
            now.saturating_add(ttl),
        );
        self.inner
            .store
            .add_provider(local, now)
            .map_err(|e| NodeError::BadRequest(e.to_string()))?;
        let outcome = self.lookup(&key, LookupKind::FindNode).await?;
        let me = KadPeer {
            id: self.inner.peer_id,
            addrs: self.listen_addrs(),
            connected: true,
        };
        let sends = outcome.closest.into_iter().map(|peer| {
            let node = self.clone();
            let req = Request::AddProvider {
                key: key.clone(),
                provider: me.clone(),
            };
            async move { node.request(peer, req).await.is_ok() }
        });
        let acks = futures::future::join_all(sends)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count();
        Ok(acks + 1)
    }

    /// The providers of `key` known locally and found by a lookup.
    pub async fn providers(&self, key: Vec<u8>) -> Result<Vec<PeerInfo>, NodeError> {
        self.check_key(&key)?;
        let mut found: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        let local = self
            .inner
            .store
            .providers(&key, unix_ms())
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        for p in local {
            if let Ok(id) = PeerId::from_bytes(&p.provider) {
                let addrs = p
                    .addrs
                    .into_iter()
                    .filter_map(|a| Multiaddr::try_from(a).ok())
                    .collect();
                found.insert(id, addrs);
            }
        }
        let outcome = self.lookup(&key, LookupKind::GetProviders).await?;
        for p in outcome.providers {
            let entry = found.entry(p.id).or_default();
            if entry.is_empty() {
                *entry = p.addrs;
            }
        }
        let mut list: Vec<PeerInfo> = found
            .into_iter()
            .map(|(id, addrs)| PeerInfo {
                peer_id: id.to_string(),
                addrs: addrs.iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(list)
    }

    /// The k closest peers to `key` that answered a lookup.
    pub async fn closest_peers(&self, key: &[u8]) -> Result<Vec<PeerId>, NodeError> {
        Ok(self.lookup(key, LookupKind::FindNode).await?.closest)
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        // Read each lock in its own statement: temporaries in a struct literal live until the end
        // of the statement, and two guards on one mutex would deadlock.
        let records = self.inner.store.len().unwrap_or(0);
        let routing_table_size = self.inner.table.lock().expect("table lock").len();
        let connected = self.inner.connected.lock().expect("connected lock").len();
        let (keys_behind, ranges_pending) = self.inner.sync.behind();
        Status {
            peer_id: self.inner.peer_id.to_string(),
            listen_addrs: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            routing_table_size,
            members_alive: self.inner.gossip.alive_count(),
            records_stored: records,
            connected_peers: connected,
            uptime_s: self.inner.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            replication: crate::api::ReplicationStatus {
                keys_behind,
                ranges_pending,
                hints_queued: self.inner.hints.len(),
            },
        }
    }

    /// Peers with an open connection.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let connected: Vec<PeerId> = self
            .inner
            .connected
            .lock()
            .expect("connected lock")
            .iter()
            .copied()
            .collect();
        let mut list: Vec<PeerInfo> = connected
            .into_iter()
            .map(|p| PeerInfo {
                peer_id: p.to_string(),
                addrs: self
                    .inner
                    .book
                    .get(&p)
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        list
    }

    /// The routing table's buckets.
    pub fn routing(&self) -> RoutingInfo {
        let table = self.inner.table.lock().expect("table lock");
        let mut buckets: HashMap<u32, Vec<String>> = HashMap::new();
        for entry in table.iter() {
            if let Some(index) = entry.key.distance(&self.inner.local_key).bucket_index() {
                buckets
                    .entry(u32::from(index))
                    .or_default()
                    .push(entry.peer.to_string());
            }
        }
        let mut buckets: Vec<BucketInfo> = buckets
            .into_iter()
            .map(|(index, peers)| BucketInfo {
                index,
                len: peers.len(),
                peers,
            })
            .collect();
        buckets.sort_by_key(|b| b.index);
        RoutingInfo {
            k: self.inner.config.kad.k,
            size: table.len(),
            buckets,
        }
    }

    /// The Prometheus text exposition of the node's metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.refresh_gauges();
        self.inner.metrics.encode()
    }

    /// Sends one Kademlia request to `peer` and waits for its response (`None` for requests that
    /// have none), under the configured request timeout. A peer that answers enters the routing
    /// table: it has just proved that it serves the protocol.
    ///
    /// A request whose stream breaks before the answer is sent again on a fresh stream (see
    /// [`retry_broken_stream`]): every Kademlia request is idempotent.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        req: Request,
    ) -> Result<Option<Response>, RequestError> {
        if peer == self.inner.peer_id {
            return Err(RequestError::SelfRequest);
        }
        let timeout = self.inner.config.kad.request_timeout();
        let result = retry_broken_stream(peer, timeout, || self.request_inner(peer, &req)).await;
        match result {
            Ok(resp) => {
                let addrs = self.inner.book.get(&peer);
                self.inner.add_to_table(self, peer, addrs);
                Ok(resp)
            }
            Err(e) => {
                if matches!(e, RequestError::Unsupported | RequestError::Dial(_)) {
                    self.inner.table.lock().expect("table lock").remove(&peer);
                }
                Err(e)
            }
        }
    }

    async fn request_inner(
        &self,
        peer: PeerId,
        req: &Request,
    ) -> Result<Option<Response>, RequestError> {
        use futures::AsyncWriteExt as _;
        if let Some(faults) = &self.inner.faults
            && faults.outbound(&peer).await.is_err()
        {
            // A lost request looks like an unanswered one: the caller's timeout ends it.
            std::future::pending::<()>().await;
        }
        let mut control = self.inner.control.clone();
        let mut stream = control
            .open_stream(peer, KAD_PROTOCOL)
            .await
            .map_err(|e| match e {
                libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => RequestError::Unsupported,
                other => RequestError::Dial(other.to_string()),
            })?;
        let sent = crate::wire::write_message(&mut stream, &req.to_pb())
            .await
            .map_err(|e| RequestError::Io(e.to_string()))?;
        self.inner.metrics.bytes_out.inc_by(sent as u64);
        if !req.expects_response() {
            let _ = stream.close().await;
            return Ok(None);
        }
        let max = self.inner.config.limits.max_message_size;
        let msg: bavard_proto::kad::Message = crate::wire::read_message(&mut stream, max)
            .await
            .map_err(|e| RequestError::Io(e.to_string()))?
            .ok_or_else(|| RequestError::Io("stream closed before the response".into()))?;
        self.inner
            .metrics
            .bytes_in
            .inc_by(prost::Message::encoded_len(&msg) as u64);
        let _ = stream.close().await;
        let resp = Response::from_pb(msg, req, self.inner.config.limits.max_peers_per_response)
            .map_err(|e| RequestError::Protocol(e.to_string()))?;
        for p in response_peers(&resp) {
            for a in &p.addrs {
                self.inner
                    .book
                    .add(p.id, a.clone(), self.inner.config.limits.max_addrs_per_peer);
            }
        }
        Ok(Some(resp))
    }
}

fn response_peers(resp: &Response) -> Vec<&KadPeer> {
    match resp {
        Response::FindNode { closer } | Response::GetValue { closer, .. } => {
            closer.iter().collect()
        }
        Response::GetProviders { providers, closer } => providers.iter().chain(closer).collect(),
        Response::PutValue { .. } | Response::Ping => Vec::new(),
    }
}

/// Attempts of one request whose stream broke (see [`retry_broken_stream`]).
const MAX_ATTEMPTS: u32 = 3;

/// Runs `attempt` until it answers or fails for another reason than a broken stream, at most
/// [`MAX_ATTEMPTS`] times, all within `timeout`. libp2p-stream drops inbound streams when the
/// remote acceptor falls behind a burst; a short backoff keeps the retry out of the same burst.
/// Only for idempotent requests.
pub(crate) async fn retry_broken_stream<T, F, Fut>(
    peer: PeerId,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RequestError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Err(RequestError::Io(e))) if tries < MAX_ATTEMPTS => {
                tracing::debug!(%peer, "request failed ({e}), retrying on a new stream");
                tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
            }
            Ok(r) => return r,
            Err(_) => return Err(RequestError::Timeout),
        }
    }
}

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("the peer does not speak /ipfs/kad/1.0.0")]
    Unsupported,
    #[error("cannot reach the peer: {0}")]
    Dial(String),
    #[error("stream error: {0}")]
    Io(String),
    #[error("bad response: {0}")]
    Protocol(String),
    #[error("request timed out")]
    Timeout,
    #[error("request to self")]
    SelfRequest,
}

impl Inner {
    /// Counts an inbound stream of `peer`; false when the peer is at its limit.
    pub(crate) fn acquire_inbound(&self, peer: PeerId) -> bool {
        let max = self.config.limits.max_inbound_streams_per_peer;
        let mut open = self.inbound.lock().expect("inbound lock");
        let count = open.entry(peer).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    /// Releases an inbound stream counted by [`Inner::acquire_inbound`].
    pub(crate) fn release_inbound(&self, peer: PeerId) {
        let mut open = self.inbound.lock().expect("inbound lock");
        if let Some(count) = open.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&peer);
            }
        }
    }

    /// Updates the anti-entropy progress gauges.
    pub(crate) fn refresh_sync_gauges(&self) {
        let (keys, ranges) = self.sync.behind();
        self.metrics.anti_entropy_keys_behind.set(keys as i64);
        self.metrics.anti_entropy_ranges_pending.set(ranges as i64);
    }

    /// Updates the gauges that mirror state kept elsewhere.
    pub(crate) fn refresh_gauges(&self) {
        self.metrics
            .routing_table_size
            .set(self.table.lock().expect("table lock").len() as i64);
        self.metrics
            .records_stored
            .set(self.store.len().unwrap_or(0) as i64);
        self.metrics
            .connected_peers
            .set(self.connected.lock().expect("connected lock").len() as i64);
    }

    /// Adds or refreshes a Kademlia server in the routing table; a full bucket makes us check
    /// its least-recently-seen entry before anything is evicted.
    pub(crate) fn add_to_table(&self, node: &Node, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.peer_id {
            return;
        }
        let outcome = self.table.lock().expect("table lock").insert(
            Instant::now(),
            peer,
            peer_key(&peer),
            addrs,
        );
        if let InsertOutcome::PingOldest { oldest } = outcome {
            let node = node.clone();
            tokio::spawn(async move {
                // The spec forbids PING: a FIND_NODE for our own id checks liveness instead.
                let req = Request::FindNode {
                    key: node.inner.peer_id.to_bytes(),
                };
                let alive = node.request(oldest, req).await.is_ok();
                node.inner.table.lock().expect("table lock").ping_result(
                    Instant::now(),
                    &oldest,
                    alive,
                );
            });
        }
        self.metrics
            .routing_table_size
            .set(self.table.lock().expect("table lock").len() as i64);
    }
}

async fn run_swarm(
    node: Node,
    mut swarm: libp2p::Swarm<crate::swarm::Behaviour>,
    mut commands: mpsc::UnboundedReceiver<SwarmCommand>,
) {
    let mut shutdown = node.inner.shutdown_tx.subscribe();
    let max_addrs = node.inner.config.limits.max_addrs_per_peer;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
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
                SwarmEvent::NewListenAddr { address, .. } => {
                    let mut addrs = node.inner.listen_addrs.lock().expect("listen lock");
                    if !addrs.contains(&address) {
                        addrs.push(address);
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    tracing::debug!(%peer_id, ?endpoint, "connected");
                    node.inner.connected.lock().expect("connected lock").insert(peer_id);
                    if endpoint.is_dialer() {
                        node.inner.book.add(peer_id, endpoint.get_remote_address().clone(), max_addrs);
                    }
                    node.inner.refresh_gauges();
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } if num_established > 0 => {
                    tracing::debug!(%peer_id, ?cause, "one of several connections closed");
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                    tracing::debug!(%peer_id, ?cause, "connection closed");
                    node.inner.connected.lock().expect("connected lock").remove(&peer_id);
                    node.inner.refresh_gauges();
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    tracing::debug!(%peer_id, protocols = ?info.protocols, "identified");
                    for addr in info.listen_addrs.iter().take(max_addrs) {
                        node.inner.book.add(peer_id, addr.clone(), max_addrs);
                    }
                    {
                        let mut kv = node.inner.kv_peers.lock().expect("kv peers lock");
                        if info.protocols.contains(&crate::replica::KV_PROTOCOL) {
                            kv.insert(peer_id);
                        } else {
                            kv.remove(&peer_id);
                        }
                    }
                    if info.protocols.contains(&KAD_PROTOCOL) {
                        node.inner.add_to_table(&node, peer_id, info.listen_addrs.clone());
                    } else {
                        // A client-mode or non-Kademlia peer never enters the table.
                        node.inner.table.lock().expect("table lock").remove(&peer_id);
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

pub(crate) fn record_from_wire(
    wire: &WireRecord,
    version: Version,
    now_ms: u64,
    default_ttl: Duration,
) -> Record {
    let ttl_ms = if wire.ttl_secs > 0 {
        u64::from(wire.ttl_secs) * 1000
    } else {
        default_ttl.as_millis() as u64
    };
    let mut r = Record::new(wire.key.clone(), wire.value.clone(), version)
        .with_expiry(now_ms.saturating_add(ttl_ms));
    if let Some(p) = wire.publisher {
        r = r.with_publisher(p.to_bytes());
    }
    r
}
