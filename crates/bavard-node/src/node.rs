//! The [`Node`] handle: start and stop, and the public API, each call handed to the service
//! that does the work.
//!
//! Start-up builds the swarm, opens local storage, binds the listen addresses, builds the
//! [context](crate::context) the services share and the services themselves — the Kademlia
//! client ([`crate::kad`]), the replica service ([`crate::replica`]), gossip
//! ([`crate::gossip`]) — then spawns their tasks:
//! - the swarm task ([`crate::swarm`]): identify results into the address book and the routing
//!   table, dials and blocks;
//! - the Kademlia and replica servers, through one accept loop ([`crate::inbound`]);
//! - the gossip driver and transport;
//! - anti-entropy and hint delivery ([`crate::replica`]);
//! - the periodic jobs ([`crate::jobs`]): bootstrap, bucket refresh, re-replication, republish,
//!   expiry;
//! - the blob server and the resumption of interrupted blob fetches ([`crate::blobs`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bavard_routing::{RoutingTable, TableConfig};
use bavard_store::{Record, RecordStore as _};
use futures::StreamExt as _;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc};

use crate::admission::{Admission, JoinToken, Startup};
use crate::api::{
    BucketInfo, Consistency, GetOptions, GetReply, KvRead, KvValue, MemberInfo, NodeError,
    PeerInfo, PutOptions, PutReply, RoutingInfo, Status, TopicEvent,
};
use crate::config::{NodeConfig, secs};
use crate::context::{Context, Parts, Slots, SwarmCommand, peer_key};
use crate::gossip::Gossip;
use crate::kad::client::Kad;
use crate::kad::lookup::LookupKind;
use crate::replica::service::Replica;
use crate::storage::Storage;
use crate::util::{peer_id_of, unix_ms};

/// Redeems the join token with the cluster's authority, retrying until
/// `[cluster] join_timeout_secs` (the authority's node may still be starting).
async fn join(ctx: &Context, token: &JoinToken) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + secs(ctx.config.cluster.join_timeout_secs);
    let mut wait = Duration::from_millis(100);
    loop {
        match crate::admission::protocol::join(ctx, token).await {
            Ok(id) => {
                tracing::info!(cluster = %id, "joined the cluster");
                return Ok(());
            }
            Err(e) if e.to_string().contains("refused the token") => return Err(e),
            Err(e) if tokio::time::Instant::now() + wait >= deadline => {
                return Err(e.context(format!(
                    "could not redeem the join token with {} within {:?}",
                    token.admin,
                    secs(ctx.config.cluster.join_timeout_secs)
                )));
            }
            Err(e) => {
                tracing::debug!("join attempt failed: {e:#}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Dials every bootstrap address (resolving `/dns*` names first, see
/// [`crate::util::resolve_dns`]) and remembers it as its peer's address. A name that does not
/// resolve is logged (at warn on the node's `first` attempt, then at debug: the bootstrap
/// retries every few seconds) and tried again at the next bootstrap.
pub(crate) async fn dial_bootstrap(ctx: &Context, first: bool) {
    for addr in &ctx.config.bootstrap {
        let Some(peer) = peer_id_of(addr) else {
            continue;
        };
        match crate::util::resolve_dns(addr, Duration::from_secs(5)).await {
            Ok(resolved) => {
                for a in resolved {
                    ctx.learn_addr(peer, a.clone());
                    ctx.swarm(SwarmCommand::Dial(a));
                }
            }
            Err(e) if first => tracing::warn!(
                "bootstrap address {addr}: {e:#} (retried at each bootstrap, logged at debug)"
            ),
            Err(e) => tracing::debug!("bootstrap address {addr}: {e:#}"),
        }
    }
}

/// The compare-and-set condition of a write that goes through a consensus round: its own
/// condition, or none for a serial write; `None` for a plain (last-writer-wins) write.
fn serial_condition(opts: &PutOptions) -> Option<bavard_replica::paxos::Condition> {
    use bavard_replica::paxos::Condition as Paxos;
    match opts.condition {
        Some(crate::replica::Condition::Version(v)) => Some(Paxos::Version(v)),
        Some(crate::replica::Condition::Absent) => Some(Paxos::Absent),
        None if opts.consistency == Consistency::Serial => Some(Paxos::Always),
        None => None,
    }
}

/// A running bavard node. Cheap to clone; every clone drives the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    storage: Arc<Storage>,
    kad: Kad,
    replica: Replica,
    gossip: Gossip,
    blobs: crate::blobs::Blobs,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
        let (admission, startup) = Admission::open(
            &config.data_dir,
            peer_id,
            config.cluster.join.as_deref(),
            config.cluster.certificate_days,
        )?;
        match &startup {
            Startup::Created(id) => tracing::info!(
                cluster = %id,
                "created a new cluster; this node holds its authority (DATA_DIR/{})",
                crate::admission::KEY_FILE
            ),
            Startup::Member(id) => tracing::info!(cluster = %id, "member of cluster"),
            Startup::Joining(t) => tracing::info!(
                cluster = %crate::admission::cluster_id(&t.authority),
                "joining cluster with a token"
            ),
        }
        let mut metrics = crate::metrics::Metrics::new();
        let blob_metrics = crate::blobs::BlobMetrics::register(metrics.registry_mut());
        let storage = Arc::new(Storage::open(&config, &peer_id, metrics.stages.clone())?);

        let book = crate::addresses::AddressBook::default();
        let mut swarm = crate::swarm::build(
            keypair.clone(),
            book.clone(),
            Duration::from_secs(120),
            &config.limits,
            metrics.rejected("accept_queue_full"),
        )?;
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
        // What others are told to dial: the advertised addresses when set, else the bound ones.
        let listen_addrs = if config.advertise.is_empty() {
            listen_addrs
        } else {
            config.advertise.clone()
        };
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
        let (commands, command_rx) = mpsc::unbounded_channel();
        let ctx = Context::new(Parts {
            peer_id,
            config,
            admission: Arc::new(admission),
            metrics,
            keypair,
            control,
            book,
            table,
            listen_addrs,
            commands,
        });
        crate::kad::install_diversity_filter(&ctx);
        let kad = Kad::new(ctx.clone(), storage.clone());
        let blobs = crate::blobs::Blobs::open(ctx.clone(), kad.clone(), blob_metrics).await?;
        let replica = Replica::open(ctx.clone(), kad.clone(), storage.clone(), blobs.clone())?;
        let gossip = Gossip::new(ctx.clone(), kad.clone());
        ctx.metrics.records_stored.set(storage.len() as i64);
        ctx.refresh_gauges();

        let mut tasks = vec![
            tokio::spawn(crate::swarm::run(kad.clone(), swarm, command_rx)),
            tokio::spawn(crate::admission::protocol::run(ctx.clone())),
        ];
        dial_bootstrap(&ctx, true).await;
        if let Startup::Joining(token) = &startup
            && let Err(e) = join(&ctx, token).await
        {
            ctx.begin_shutdown();
            for task in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
            storage.close();
            replica.close();
            return Err(e);
        }
        // Kademlia and replica streams share the per-peer limit.
        let slots = Slots::default();
        tasks.extend([
            tokio::spawn(crate::kad::server::run(kad.clone(), slots.clone())),
            tokio::spawn(crate::replica::server::run(replica.clone(), slots)),
            tokio::spawn(crate::jobs::run(kad.clone(), replica.clone())),
            tokio::spawn(crate::replica::antientropy::run(replica.clone())),
            tokio::spawn(crate::replica::handoff::run(replica.clone())),
            tokio::spawn(crate::replica::rehome::run(replica.clone())),
            tokio::spawn(crate::blobs::server::run(blobs.clone())),
            tokio::spawn(blobs.clone().resume()),
            tokio::spawn(crate::recovery::run(
                ctx.clone(),
                storage.clone(),
                replica.clone(),
                gossip.clone(),
            )),
        ]);
        tasks.extend(gossip.spawn());
        if ctx.config.blobs.stream_probe {
            tracing::warn!("[blobs] stream_probe is on: any peer may make this node send data");
            tasks.push(tokio::spawn(crate::blobs::probe::run(blobs.clone())));
        }
        Ok(Node {
            inner: Arc::new(Inner {
                ctx,
                storage,
                kad,
                replica,
                gossip,
                blobs,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// The blob service: add, fetch, read, list, pin and unpin content-addressed blobs.
    pub fn blobs(&self) -> crate::blobs::Blobs {
        self.inner.blobs.clone()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.ctx.peer_id
    }

    /// The addresses this node listens on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.ctx.listen_addrs()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> NodeConfig {
        self.inner.ctx.config.clone()
    }

    /// A future that resolves when the node shuts down.
    pub fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.inner.ctx.shutdown_signal()
    }

    /// Stops every task and closes the swarm. Idempotent.
    pub async fn shutdown(&self) {
        if !self.inner.ctx.is_shutting_down() {
            self.inner.gossip.leave().await;
        }
        self.inner.ctx.begin_shutdown();
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.tasks.lock().expect("tasks lock"));
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("a background task did not stop within 5 s");
            }
        }
        // Checkpoint partial blobs, so that their fetches resume with every verified block.
        self.inner.blobs.close().await;
        // Release the storage engines now: tasks spawned for single requests may still hold the
        // node for a moment, and a restart on the same data dir must be able to open them.
        self.inner.storage.close();
        self.inner.replica.close();
    }

    /// Stops the node like a crash: no graceful leave, so the others must detect the failure.
    /// For tests and fault drills.
    pub async fn kill(&self) {
        self.inner.gossip.mark_killed();
        self.shutdown().await;
    }

    /// Dials an address (it must end in `/p2p/PEER_ID`); the peer enters the routing table once
    /// it identifies as a Kademlia server.
    pub fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        let peer = peer_id_of(&addr)
            .ok_or_else(|| NodeError::BadRequest(format!("{addr} does not end in /p2p/PEER_ID")))?;
        self.inner.ctx.learn_addr(peer, addr.clone());
        if self.inner.ctx.swarm(SwarmCommand::Dial(addr)) {
            Ok(())
        } else {
            Err(NodeError::ShuttingDown)
        }
    }

    /// Refuses every connection to and from `peer` and closes the open ones, until
    /// [`Node::unblock_peer`]. Operators use it to ban a peer; tests use it to cut the network.
    pub fn block_peer(&self, peer: PeerId) {
        self.inner.ctx.swarm(SwarmCommand::Block(peer));
    }

    /// Lifts a [`Node::block_peer`].
    pub fn unblock_peer(&self, peer: PeerId) {
        self.inner.ctx.swarm(SwarmCommand::Unblock(peer));
    }

    /// The record this node itself stores under `key` (tombstones included), without asking any
    /// other node: what an operator inspects to see whether a replica has converged.
    pub fn local_record(&self, key: &[u8]) -> Result<Option<Record>, NodeError> {
        self.inner
            .storage
            .store
            .get(key, unix_ms())
            .map_err(|e| NodeError::Storage(e.to_string()))
    }

    /// Runs one anti-entropy round with `peer` now (it also runs periodically); returns how
    /// many keys were exchanged.
    pub async fn anti_entropy_with(&self, peer: PeerId) -> Result<usize, NodeError> {
        crate::replica::antientropy::round_now(&self.inner.replica, peer)
            .await
            .map_err(NodeError::Timeout)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), NodeError> {
        let max = self.inner.ctx.config.store.max_key_size;
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

    /// Stores `value` under `key` on the `replication_factor` closest nodes and returns once
    /// `opts.consistency` of them acknowledged it durably. With a condition, or at
    /// [`Consistency::Serial`], the write is a compare-and-set decided by a consensus round on
    /// the key's replicas (linearizable; see [`crate::replica`]): a failed condition is
    /// [`NodeError::Conflict`], an undecided round [`NodeError::Undecided`].
    pub async fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        opts: PutOptions,
    ) -> Result<PutReply, NodeError> {
        self.check_key(&key)?;
        self.inner.storage.check_writable()?;
        let config = &self.inner.ctx.config;
        if value.len() > config.store.inline_value_limit {
            let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(
                bytes::Bytes::from(value),
            )]);
            return self.put_large(key, body, opts).await;
        }
        let ttl = opts
            .ttl_secs
            .map(Duration::from_secs)
            .unwrap_or_else(|| secs(config.kad.record_ttl_secs));
        let expires_at_ms = unix_ms().saturating_add(ttl.as_millis() as u64);
        if let Some(condition) = serial_condition(&opts) {
            let update = bavard_replica::paxos::Update::put(value)
                .with_publisher(self.peer_id().to_bytes())
                .with_expiry(expires_at_ms);
            return self.inner.replica.cas(key, condition, update).await;
        }
        let record = Record::new(key, value, self.inner.storage.next_version()?)
            .with_publisher(self.peer_id().to_bytes())
            .with_expiry(expires_at_ms);
        self.inner.replica.write(record, opts.consistency).await
    }

    /// Stores the value streamed by `body` under `key`, as [`Node::put`] does: a value up to
    /// `[store] inline_value_limit` bytes is kept inline in its record; a larger one (up to
    /// `[store] max_large_value_size`, else [`NodeError::ValueTooLarge`]) is spooled into the
    /// blob store as it arrives (never whole in memory) and its replicas hold it as a blob
    /// (see [`crate::replica`]'s large values). A body that fails or stalls for the HTTP
    /// request timeout is [`NodeError::LargeValue`]; a large value with a condition is
    /// [`NodeError::LargeValueCondition`].
    pub async fn put_stream<S, E>(
        &self,
        key: Vec<u8>,
        body: S,
        opts: PutOptions,
    ) -> Result<PutReply, NodeError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let limit = self.inner.ctx.config.store.inline_value_limit;
        let mut body = body;
        let mut head = Vec::new();
        // Read up to the inline limit: a value that ends within it is an ordinary record.
        loop {
            let idle = secs(self.inner.ctx.config.http.request_timeout_secs);
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    return Err(NodeError::LargeValue(crate::blobs::BlobError::Upload(
                        format!("no data for {idle:?} ([http] request_timeout_secs)"),
                    )));
                }
                Ok(None) => return self.put(key, head, opts).await,
                Ok(Some(Err(e))) => {
                    return Err(NodeError::LargeValue(crate::blobs::BlobError::Upload(
                        e.to_string(),
                    )));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            if head.len() + chunk.len() > limit {
                let first = futures::stream::iter([
                    Ok::<_, String>(bytes::Bytes::from(std::mem::take(&mut head))),
                    Ok(chunk),
                ]);
                let rest = body.map(|c| c.map_err(|e| e.to_string()));
                return self.put_large(key, first.chain(rest), opts).await;
            }
            head.extend_from_slice(&chunk);
        }
    }

    /// Stores a value above the inline limit (see [`Node::put_stream`]).
    async fn put_large<S, E>(
        &self,
        key: Vec<u8>,
        body: S,
        opts: PutOptions,
    ) -> Result<PutReply, NodeError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.check_key(&key)?;
        self.inner.storage.check_writable()?;
        let config = &self.inner.ctx.config;
        if serial_condition(&opts).is_some() {
            return Err(NodeError::LargeValueCondition {
                limit: config.store.inline_value_limit,
            });
        }
        let max = config.store.max_large_value_size;
        let added = match self.inner.blobs.add_stream_within(body, max).await {
            Ok(added) => added,
            Err(crate::blobs::BlobError::TooLarge { size, max }) => {
                return Err(NodeError::ValueTooLarge { size, max });
            }
            Err(e) => return Err(NodeError::LargeValue(e)),
        };
        let hash = crate::blobs::parse_hash(&added.hash).map_err(NodeError::LargeValue)?;
        self.inner.ctx.metrics.kv_large_writes.inc();
        let ttl = opts
            .ttl_secs
            .map(Duration::from_secs)
            .unwrap_or_else(|| secs(config.kad.record_ttl_secs));
        let expires_at_ms = unix_ms().saturating_add(ttl.as_millis() as u64);
        let version = match self.inner.storage.next_version() {
            Ok(v) => v,
            Err(e) => {
                self.inner
                    .replica
                    .release_blobs(vec![*hash.as_bytes()])
                    .await;
                return Err(e);
            }
        };
        let record = Record::blob_ref(key, *hash.as_bytes(), added.size, version)
            .with_publisher(self.peer_id().to_bytes())
            .with_expiry(expires_at_ms);
        // The upload pinned the blob; once the write is over, only the records referencing it
        // keep it pinned here (this node may not be one of the key's replicas). A task of its
        // own, so that a client that gives up does not leave the pin behind.
        let replica = self.inner.replica.clone();
        let consistency = opts.consistency;
        let hash = *hash.as_bytes();
        tokio::spawn(async move {
            let written = replica.write(record, consistency).await;
            replica.release_blobs(vec![hash]).await;
            written
        })
        .await
        .map_err(|_| NodeError::ShuttingDown)?
    }

    /// Deletes `key` by writing a tombstone to its replicas (a compare-and-set with a condition
    /// or at [`Consistency::Serial`], as [`Node::put`]).
    pub async fn delete(&self, key: Vec<u8>, opts: PutOptions) -> Result<PutReply, NodeError> {
        self.check_key(&key)?;
        self.inner.storage.check_writable()?;
        if let Some(condition) = serial_condition(&opts) {
            let update = bavard_replica::paxos::Update::delete(unix_ms())
                .with_publisher(self.peer_id().to_bytes());
            return self.inner.replica.cas(key, condition, update).await;
        }
        let record = Record::tombstone(key, unix_ms(), self.inner.storage.next_version()?)
            .with_publisher(self.peer_id().to_bytes());
        self.inner.replica.write(record, opts.consistency).await
    }

    /// Reads `key` from its replicas and returns the newest version once `opts.consistency` of
    /// them answered (at [`Consistency::Serial`], through a consensus round that sees every
    /// committed compare-and-set). `Ok(None)` when absent or deleted. Only the KV store answers: DHT records
    /// ([`Node::dht_get`]) never do.
    pub async fn get(&self, key: &[u8], opts: GetOptions) -> Result<Option<GetReply>, NodeError> {
        self.check_key(key)?;
        let best = if opts.consistency == Consistency::Serial {
            self.inner.replica.serial_read(key.to_vec()).await?
        } else {
            self.inner.replica.read(key, opts.consistency).await?
        };
        let Some(found) = self.kv_value(best) else {
            return Ok(None);
        };
        let value = match found.value {
            KvValue::Inline(value) => value,
            // The whole value in memory: the HTTP API streams it instead (`Node::get_value`).
            KvValue::Blob { .. } => {
                let mut read = self
                    .open_value(&found)
                    .await
                    .map_err(NodeError::LargeValue)?;
                let mut value = Vec::with_capacity(read.size().min(1 << 24) as usize);
                while (value.len() as u64) < read.size() {
                    let chunk = read
                        .read(value.len() as u64, 1 << 20)
                        .await
                        .map_err(NodeError::LargeValue)?;
                    if chunk.is_empty() {
                        break;
                    }
                    value.extend_from_slice(&chunk);
                }
                value
            }
        };
        Ok(Some(GetReply {
            value,
            version: found.version,
        }))
    }

    /// Reads `key` as [`Node::get`] does, without reading a large value's blob: the answer
    /// names it, for [`Node::open_value`] to stream.
    pub async fn get_value(
        &self,
        key: &[u8],
        opts: GetOptions,
    ) -> Result<Option<KvRead>, NodeError> {
        self.check_key(key)?;
        let best = if opts.consistency == Consistency::Serial {
            self.inner.replica.serial_read(key.to_vec()).await?
        } else {
            self.inner.replica.read(key, opts.consistency).await?
        };
        Ok(self.kv_value(best))
    }

    fn kv_value(&self, best: Option<Record>) -> Option<KvRead> {
        let r = best?;
        let version = r.version.hlc.to_string();
        let publisher = r
            .publisher
            .as_deref()
            .and_then(|p| PeerId::from_bytes(p).ok());
        let value = match r.value {
            bavard_store::Value::Data(v) => KvValue::Inline(v),
            bavard_store::Value::Blob { hash, size } => {
                self.inner.ctx.metrics.kv_large_reads.inc();
                KvValue::Blob {
                    hash: bavard_blobs::BlobHash::from_bytes(hash),
                    size,
                }
            }
            bavard_store::Value::Tombstone { .. } => return None,
        };
        Some(KvRead {
            value,
            version,
            publisher,
        })
    }

    /// Opens the blob of a large value read by [`Node::get_value`]: at once when it is here,
    /// else fetched from its holders (the writer first, then the DHT's providers, which the
    /// replicas are). An inline value is refused ([`crate::blobs::BlobError::Store`]).
    pub async fn open_value(
        &self,
        read: &KvRead,
    ) -> Result<crate::blobs::BlobRead, crate::blobs::BlobError> {
        let KvValue::Blob { hash, size } = read.value else {
            return Err(crate::blobs::BlobError::Store(
                "an inline value has no blob".into(),
            ));
        };
        let blobs = &self.inner.blobs;
        let here = matches!(blobs.status(hash).await, Ok(s) if s.complete);
        if !here && let Some(writer) = read.publisher {
            self.inner.replica.name_provider(hash, writer);
        }
        let blob = blobs.open_read(hash).await?;
        if blob.size() != size {
            return Err(crate::blobs::BlobError::FetchFailed {
                hash,
                why: format!(
                    "the record says the value is {size} bytes, the blob is {}",
                    blob.size()
                ),
            });
        }
        Ok(blob)
    }

    /// Puts a DHT record (the open DHT's PUT_VALUE, apart from the KV store) on this node and the
    /// k closest nodes, after validating it by namespace (`/pk/`, `/signed/`, opaque); returns
    /// how many nodes stored it, this one included.
    pub async fn dht_put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<usize, NodeError> {
        self.check_key(&key)?;
        self.inner.kad.dht_put(key, value).await
    }

    /// The best valid copy of the DHT record under `key` (this node's, or found by a
    /// GET_VALUE walk); `None` when nobody has one.
    pub async fn dht_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        self.check_key(key)?;
        self.inner.kad.dht_get(key).await
    }

    /// Puts a signed mutable record (BEP 44 style), refusing an older sequence number and,
    /// with `cas`, a record whose predecessor is not sequence `cas`; returns how many nodes
    /// stored it.
    pub async fn signed_put(
        &self,
        record: crate::kad::records::SignedRecord,
        cas: Option<u64>,
    ) -> Result<usize, NodeError> {
        self.inner.kad.signed_put(record, cas).await
    }

    /// The newest valid signed record of `public_key` with `salt`.
    pub async fn signed_get(
        &self,
        public_key: &[u8; 32],
        salt: &[u8],
    ) -> Result<Option<crate::kad::records::SignedRecord>, NodeError> {
        self.inner.kad.signed_get(public_key, salt).await
    }

    /// Announces this node as a provider of `key` to the k closest nodes; returns how many
    /// accepted the announcement (this node included).
    pub async fn provide(&self, key: Vec<u8>) -> Result<usize, NodeError> {
        self.check_key(&key)?;
        self.inner.kad.provide(key).await
    }

    /// The providers of `key` known locally and found by a lookup.
    pub async fn providers(&self, key: Vec<u8>) -> Result<Vec<PeerInfo>, NodeError> {
        self.check_key(&key)?;
        self.inner.kad.providers(key).await
    }

    /// The k closest peers to `key` that answered a lookup.
    pub async fn closest_peers(&self, key: &[u8]) -> Result<Vec<PeerId>, NodeError> {
        Ok(self
            .inner
            .kad
            .lookup(key, LookupKind::FindNode)
            .await?
            .closest)
    }

    /// The id of this node's cluster.
    pub fn cluster_id(&self) -> Option<String> {
        self.inner.ctx.admission.cluster_id()
    }

    /// A join token for one new node, valid `ttl` (only on the node holding the cluster's
    /// authority).
    pub fn join_token(&self, ttl: Duration) -> Result<String, NodeError> {
        self.inner
            .ctx
            .admission
            .issue_token(self.listen_addrs(), ttl.as_millis() as u64)
            .map(|t| t.encode())
            .map_err(|e| NodeError::BadRequest(format!("{e:#}")))
    }

    /// Revokes `peer` from the cluster (only on the node holding the authority) and pushes the
    /// new revocation list to every member; returns the list's version.
    pub async fn revoke(&self, peer: PeerId) -> Result<u64, NodeError> {
        let ctx = &self.inner.ctx;
        ctx.admission
            .revoke(peer)
            .map_err(|e| NodeError::BadRequest(format!("{e:#}")))?;
        let members: Vec<PeerId> = ctx.members.rows().iter().map(|m| m.id).collect();
        crate::admission::protocol::push_revocations(ctx, members).await;
        Ok(ctx.admission.revocations_version())
    }

    /// The node's status.
    pub fn status(&self) -> Status {
        let ctx = &self.inner.ctx;
        // Read each lock in its own statement: temporaries in a struct literal live until the end
        // of the statement, and two guards on one mutex would deadlock.
        let routing_table_size = ctx.table.lock().expect("table lock").len();
        let connected = ctx.connected.lock().expect("connected lock").len();
        Status {
            peer_id: ctx.peer_id.to_string(),
            listen_addrs: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            routing_table_size,
            members_alive: ctx.members.alive_count(),
            records_stored: self.inner.storage.len(),
            connected_peers: connected,
            uptime_s: ctx.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            cluster_id: ctx.admission.cluster_id(),
            replication: self.inner.replica.status(),
        }
    }

    /// Peers with an open connection.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let ctx = &self.inner.ctx;
        let connected: Vec<PeerId> = ctx
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
                addrs: ctx.book.get(&p).iter().map(|a| a.to_string()).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        list
    }

    /// The routing table's buckets.
    pub fn routing(&self) -> RoutingInfo {
        let ctx = &self.inner.ctx;
        let table = ctx.table.lock().expect("table lock");
        let mut buckets: HashMap<u32, Vec<String>> = HashMap::new();
        for entry in table.iter() {
            if let Some(index) = entry.key.distance(&ctx.local_key).bucket_index() {
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
            k: ctx.config.kad.k,
            size: table.len(),
            buckets,
        }
    }

    /// The stage timers of the request path (`bavard_stage_seconds`).
    pub fn stages(&self) -> &crate::metrics::Stages {
        &self.inner.ctx.metrics.stages
    }

    /// The Prometheus text exposition of the node's metrics.
    pub fn metrics_text(&self) -> String {
        let ctx = &self.inner.ctx;
        ctx.refresh_gauges();
        ctx.metrics
            .records_stored
            .set(self.inner.storage.len() as i64);
        self.inner
            .ctx
            .metrics
            .hints_queued
            .set(self.inner.replica.hints.len() as i64);
        ctx.metrics.encode()
    }

    /// Every member this node knows, itself included, sorted by peer id.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.inner.gossip.members()
    }

    /// Every topic this node takes part in, with its neighbours in the topic's broadcast tree.
    pub async fn topics(&self) -> Result<Vec<crate::api::TopicInfo>, NodeError> {
        self.inner.gossip.topics().await
    }

    /// Subscribes to `topic`: joins its overlay (through its providers in the DHT, as a provider
    /// itself) and returns a receiver of every message published on it (this node's own included).
    pub fn subscribe(&self, topic: &str) -> Result<broadcast::Receiver<TopicEvent>, NodeError> {
        self.inner.gossip.subscribe(topic)
    }

    /// Publishes `payload` on `topic` and returns its message id (hex). A node that has not
    /// joined the topic joins it first, as a publisher, and waits (a few retry periods at most)
    /// for a neighbour.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<String, NodeError> {
        self.inner.gossip.publish(topic, payload).await
    }

    /// The number of neighbours (active view) this node has in `topic`; 0 if not joined.
    pub fn topic_neighbors(&self, topic: &str) -> usize {
        self.inner.gossip.topic_neighbors(topic)
    }

    /// Test-only fault injection: drop every gossip frame to and from `peer` (the DHT is not
    /// affected). Used to cut a cluster in two.
    pub fn gossip_block(&self, peer: PeerId) {
        self.inner.gossip.block(peer);
    }

    /// Undoes [`Node::gossip_block`].
    pub fn gossip_unblock(&self, peer: PeerId) {
        self.inner.gossip.unblock(peer);
    }
}
