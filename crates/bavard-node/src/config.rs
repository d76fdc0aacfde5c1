//! Node configuration: the command-line settings and the protocol parameters, loadable from TOML.
//!
//! Every interval is configurable (in seconds, fractional allowed) so that tests can run the
//! periodic jobs in well under a second. Unknown keys are rejected so that a typo in a config file
//! is an error rather than a silently ignored setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// Everything a node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory holding the identity key, the records and `node.json`.
    pub data_dir: PathBuf,
    /// Addresses to listen on (`/ip4/127.0.0.1/tcp/0`, `/ip4/0.0.0.0/udp/4001/quic-v1`, `/memory/7`).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; each must end in `/p2p/PEER_ID`. A `/dns4/NAME/…` (or `/dns/`,
    /// `/dns6/`) address is resolved at start and again at every bootstrap.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses other nodes reach this one at, announced (to Kademlia through identify, to the
    /// membership, in join tokens) instead of the addresses it listens on. Empty: announce the
    /// bound listen addresses. Set it behind NAT or a port mapping, or when listening on
    /// 0.0.0.0 in a container whose interface address others cannot reach.
    pub advertise: Vec<Multiaddr>,
    /// Address of the HTTP API; `None` runs no API server (library use).
    pub api: Option<SocketAddr>,
    /// Kademlia protocol parameters.
    pub kad: KadConfig,
    /// The replicated store: anti-entropy, hinted handoff, read repair.
    pub replication: ReplicationConfig,
    /// Record store limits.
    pub store: StoreConfig,
    /// DHT records (the open DHT's PUT_VALUE/GET_VALUE, apart from the KV store).
    pub dht: DhtConfig,
    /// Cluster admission.
    pub cluster: ClusterConfig,
    /// Limits on what a single remote peer may cost us.
    pub limits: LimitsConfig,
    /// HTTP API settings.
    pub http: HttpConfig,
    /// Membership (SWIM) and topic broadcast (HyParView + Plumtree) settings.
    pub gossip: GossipConfig,
    /// Content-addressed blobs: quota, upload and fetch bounds, serving limits.
    pub blobs: crate::blobs::BlobsConfig,
    /// Test-only delay, jitter and loss on outgoing traffic (off unless `enabled`).
    pub fault_injection: crate::fault::FaultConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("bavard-data"),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            advertise: Vec::new(),
            api: Some(SocketAddr::from(([127, 0, 0, 1], 5001))),
            kad: KadConfig::default(),
            replication: ReplicationConfig::default(),
            store: StoreConfig::default(),
            dht: DhtConfig::default(),
            cluster: ClusterConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            gossip: GossipConfig::default(),
            blobs: crate::blobs::BlobsConfig::default(),
            fault_injection: crate::fault::FaultConfig::default(),
        }
    }
}

impl NodeConfig {
    /// Reads a TOML config file; every missing key takes its default.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }

    /// Checks the settings that can be wrong in ways serde cannot see.
    pub fn validate(&self) -> anyhow::Result<()> {
        for addr in &self.bootstrap {
            if crate::util::peer_id_of(addr).is_none() {
                anyhow::bail!("bootstrap address {addr} does not end in /p2p/PEER_ID");
            }
        }
        for addr in &self.advertise {
            use libp2p::multiaddr::Protocol;
            if crate::util::peer_id_of(addr).is_some() {
                anyhow::bail!("advertised address {addr} must not end in /p2p/ (the node adds it)");
            }
            let unspecified = match addr.iter().next() {
                Some(Protocol::Ip4(ip)) => ip.is_unspecified(),
                Some(Protocol::Ip6(ip)) => ip.is_unspecified(),
                _ => false,
            };
            if unspecified {
                anyhow::bail!(
                    "advertised address {addr} is unspecified: give the address others dial"
                );
            }
        }
        if self.kad.k == 0 || self.kad.alpha == 0 || self.kad.replication_factor == 0 {
            anyhow::bail!("kad.k, kad.alpha and kad.replication_factor must be at least 1");
        }
        self.fault_injection.validate()?;
        self.blobs.validate()?;
        if self.limits.max_message_size < 16 * 1024 {
            anyhow::bail!(
                "limits.max_message_size must be at least 16384 bytes (an anti-entropy tree \
                 request is 10.5 KiB)"
            );
        }
        let rc = &self.replication;
        if rc.max_batch_bytes + 4096 > self.limits.max_message_size {
            anyhow::bail!(
                "replication.max_batch_bytes ({}) must stay at least 4096 bytes below \
                 limits.max_message_size ({})",
                rc.max_batch_bytes,
                self.limits.max_message_size
            );
        }
        let largest_record = self.store.max_value_size + self.store.max_key_size + 1024;
        if largest_record > rc.max_batch_bytes {
            anyhow::bail!(
                "store.max_value_size + store.max_key_size ({largest_record} bytes with \
                 overhead) must fit in replication.max_batch_bytes ({}): a record is sent in \
                 one message",
                rc.max_batch_bytes
            );
        }
        if self.store.inline_value_limit > self.store.max_value_size {
            anyhow::bail!(
                "store.inline_value_limit ({}) must not exceed store.max_value_size ({}): an \
                 inline value must fit in a record",
                self.store.inline_value_limit,
                self.store.max_value_size
            );
        }
        let max_blob = bavard_blobs::protocol::Limits::default().max_blob_size;
        if self.store.max_large_value_size < self.store.inline_value_limit as u64
            || self.store.max_large_value_size > max_blob
        {
            anyhow::bail!(
                "store.max_large_value_size ({}) must be between store.inline_value_limit ({}) \
                 and the largest blob the blob protocol carries ({max_blob})",
                self.store.max_large_value_size,
                self.store.inline_value_limit
            );
        }
        if rc.max_batch_records == 0 || rc.max_digest_entries == 0 {
            anyhow::bail!(
                "replication.max_batch_records and max_digest_entries must be at least 1"
            );
        }
        if let Some(ms) = rc.speculative_read_ms
            && !(ms.is_finite() && ms >= 0.0)
        {
            anyhow::bail!(
                "replication.speculative_read_ms must be a number of milliseconds, 0 or more; \
                 got {ms}"
            );
        }
        if rc.background_threads == 0 || rc.background_threads > 64 {
            anyhow::bail!(
                "replication.background_threads must be between 1 and 64, got {}",
                rc.background_threads
            );
        }
        Ok(())
    }
}

/// Kademlia parameters. Defaults follow rust-libp2p's `libp2p-kad` where it has one, except the
/// lookup termination rule (see `bavard-routing`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KadConfig {
    /// Bucket size and the number of closest peers a lookup returns.
    pub k: usize,
    /// Requests in flight per lookup.
    pub alpha: usize,
    /// A lookup ends once this many of the closest peers have answered.
    pub beta: usize,
    /// ... and once this many of the k closest known peers have answered (0 = go-libp2p-kad-dht's
    /// rule, β only; k or more = wait for all k, rust-libp2p's result set). Trades latency for
    /// how many of the true k closest a lookup returns: in bavard-sim at 10,000 nodes, 16
    /// returns 81% of them with a median of 435 ms, waiting for all 20 returns 100% in 565 ms
    /// (rust-libp2p's classic rule: 980 ms). See `bavard_routing::Termination::Beta`.
    pub burst_quorum: usize,
    /// Disjoint lookup paths (S/Kademlia); 1 turns the feature off.
    pub disjoint_paths: usize,
    /// Disjoint lookup paths while the routing table is under IP-diversity pressure (the filter
    /// refused a peer within the last `refresh_interval_secs`); 1 never switches.
    pub disjoint_paths_under_pressure: usize,
    /// Peers of one IP group (IPv4 /24, IPv6 /48) in the routing table, and in one lookup's
    /// candidates (see `crate::diversity`; public addresses only; cluster members exempt;
    /// 0: no limit).
    pub max_peers_per_ip_group: usize,
    /// Peers of one IP group in one bucket (0: no limit).
    pub max_peers_per_ip_group_per_bucket: usize,
    /// How many of the closest nodes store each record.
    pub replication_factor: usize,
    /// Time allowed for one request to one peer.
    pub request_timeout_secs: f64,
    /// Time allowed for a whole lookup.
    pub lookup_timeout_secs: f64,
    /// How often buckets not looked up recently are refreshed (and the bootstrap repeated).
    pub refresh_interval_secs: f64,
    /// How often stored records are re-replicated to the current closest nodes.
    pub replicate_interval_secs: f64,
    /// How often records and provider records this node originated are republished.
    pub republish_interval_secs: f64,
    /// Lifetime of a value record when the writer gives none.
    pub record_ttl_secs: f64,
    /// Lifetime of a provider record.
    pub provider_ttl_secs: f64,
    /// How often expired records are purged from the store.
    pub expire_interval_secs: f64,
}

impl Default for KadConfig {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            beta: 3,
            burst_quorum: 16,
            disjoint_paths: 1,
            disjoint_paths_under_pressure: 4,
            max_peers_per_ip_group: 3,
            max_peers_per_ip_group_per_bucket: 2,
            replication_factor: 3,
            request_timeout_secs: 10.0,
            lookup_timeout_secs: 60.0,
            refresh_interval_secs: 300.0,
            replicate_interval_secs: 3600.0,
            republish_interval_secs: 22.0 * 3600.0,
            record_ttl_secs: 48.0 * 3600.0,
            provider_ttl_secs: 48.0 * 3600.0,
            expire_interval_secs: 60.0,
        }
    }
}

impl KadConfig {
    /// The per-request timeout as a `Duration`.
    pub fn request_timeout(&self) -> Duration {
        secs(self.request_timeout_secs)
    }
    /// The whole-lookup deadline as a `Duration`.
    pub fn lookup_timeout(&self) -> Duration {
        secs(self.lookup_timeout_secs)
    }
}

/// The replicated store (see `crate::replica`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// How often this node runs an anti-entropy round with one partner (a partner that joins or
    /// comes back gets one at once, and a round that moved many keys is followed at once by the
    /// next).
    pub anti_entropy_interval_secs: f64,
    /// Most keys and versions in one anti-entropy listing answer.
    pub max_digest_entries: usize,
    /// Most records in one store or fetch request.
    pub max_batch_records: usize,
    /// Largest anti-entropy, hint or fetch batch built, in bytes; must leave room below
    /// `limits.max_message_size` (every reader refuses larger frames).
    pub max_batch_bytes: usize,
    /// Bytes per second that anti-entropy and hint delivery may move (catch-up after an
    /// outage) while the node serves no client; 0 = unlimited.
    pub sync_max_bytes_per_sec: u64,
    /// The same while the node serves clients (a coordinated write or read, or a replica
    /// request for one record, within `sync_busy_window_secs`), so their latency holds during a
    /// catch-up; 0 = unlimited.
    pub sync_busy_bytes_per_sec: u64,
    /// How long after a client request background transfers keep the busy rate.
    pub sync_busy_window_secs: f64,
    /// Threads that run anti-entropy's CPU work (hashing, reading, building batches, answering
    /// partners), at `background_priority`.
    pub background_threads: usize,
    /// Their scheduling priority: `normal`, `low` (nice 10) or `idle` (Linux `SCHED_IDLE`:
    /// only on an idle core). See [`crate::background`].
    pub background_priority: crate::background::BackgroundPriority,
    /// Most hints kept for replicas that are down; a full hint store refuses new hints.
    pub max_hints: usize,
    /// Hints older than this are dropped (anti-entropy repairs what they carried).
    pub hint_ttl_secs: f64,
    /// How often queued hints are offered to their owners.
    pub hint_delivery_interval_secs: f64,
    /// How often this node checks whether its membership grew; when it did, the records it
    /// holds but does not replicate (written while it did not know every member, or taken over
    /// by a member that joined) are written to their replicas at quorum. Each check that finds
    /// a new member scans the whole store once. 0 = never (re-replication still moves them,
    /// every `kad.replicate_interval_secs`).
    pub rehome_interval_secs: f64,
    /// Send the newest version to replicas that answered a read with an older one.
    pub read_repair: bool,
    /// A read asks only as many replicas as its consistency level needs (this node first when
    /// it is one), and asks the others if they have not all answered after this many
    /// milliseconds, or at once when one fails. Unset (the default): adapt to the answers seen
    /// (their smoothed mean plus four deviations, at least 1 ms, at most the request timeout;
    /// 100 ms before the first answer). 0: ask every replica at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speculative_read_ms: Option<f64>,
    /// Tombstones are purged this long after the delete. Must exceed the anti-entropy cycle plus
    /// the longest outage a replica may have, or a deleted value can come back.
    pub tombstone_grace_secs: f64,
    /// Idle replica streams kept per peer for the next requests (0: a new stream per request).
    /// Each one holds a slot of the peer's `limits.max_inbound_streams_per_peer`.
    pub max_idle_streams_per_peer: usize,
    /// An idle replica stream unused this long is dropped (keep it below the peers'
    /// `limits.inbound_idle_timeout_secs`, after which they close it).
    pub idle_stream_secs: f64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            anti_entropy_interval_secs: 10.0,
            max_digest_entries: 4096,
            max_batch_records: 256,
            max_batch_bytes: 96 * 1024,
            sync_max_bytes_per_sec: 32 * 1024 * 1024,
            sync_busy_bytes_per_sec: 4 * 1024 * 1024,
            sync_busy_window_secs: 1.0,
            background_threads: 2,
            background_priority: crate::background::BackgroundPriority::Low,
            max_hints: 100_000,
            hint_ttl_secs: 3.0 * 3600.0,
            hint_delivery_interval_secs: 5.0,
            rehome_interval_secs: 30.0,
            read_repair: true,
            speculative_read_ms: None,
            tombstone_grace_secs: 10.0 * 24.0 * 3600.0,
            max_idle_streams_per_peer: 32,
            idle_stream_secs: 10.0,
        }
    }
}

/// Record store limits (see `bavard_store::StoreLimits`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Largest inline value a record may carry, in bytes (what a replica accepts from its
    /// peers; a write through the API keeps inline only values up to `inline_value_limit`).
    pub max_value_size: usize,
    /// Values up to this many bytes are stored inline in their record; larger ones are stored
    /// as a blob held by each of the key's replicas, the record carrying its hash (see
    /// `bavard_node::replica::large`). At most `max_value_size`.
    pub inline_value_limit: usize,
    /// Largest value a KV write accepts, in bytes (413 past it); values above
    /// `inline_value_limit` are stored as blobs, so this is bounded by the blob protocol's
    /// largest blob, not by `max_value_size`.
    pub max_large_value_size: u64,
    /// Largest key accepted, in bytes.
    pub max_key_size: usize,
    /// Most records one node stores.
    pub max_records: usize,
    /// Most provider records kept per key.
    pub max_providers_per_key: usize,
    /// Most keys this node itself provides.
    pub max_provided_keys: usize,
    /// Keep everything in memory (tests); the default persists to `data_dir/records.redb`.
    pub in_memory: bool,
    /// Fsync every commit before acknowledging it (default). `false` is for benchmarks that
    /// measure the cost of durability: a crash may then lose acknowledged writes.
    pub fsync: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_value_size: 64 * 1024,
            inline_value_limit: 16 * 1024,
            max_large_value_size: 1 << 30,
            max_key_size: 1024,
            max_records: 100_000,
            max_providers_per_key: 20,
            max_provided_keys: 10_000,
            in_memory: false,
            fsync: true,
        }
    }
}

/// DHT records: what anyone in the open DHT may put and get, validated by namespace (`/pk/`
/// public keys, `/signed/` signed mutable records) and kept apart from the KV store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhtConfig {
    /// Accept records under keys in no known namespace, as opaque records (rust-libp2p
    /// validates nothing, so interoperating with it needs this); they never touch the KV store.
    pub accept_unvalidated: bool,
    /// Largest DHT record value accepted, in bytes (stock rust-libp2p refuses frames over
    /// 16 KiB).
    pub max_value_size: usize,
    /// Most DHT records this node keeps.
    pub max_records: usize,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            accept_unvalidated: true,
            max_value_size: 16 * 1024,
            max_records: 20_000,
        }
    }
}

/// Cluster admission (see `bavard_node::admission`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// A join token (`bavard cluster token`) to redeem at start when the data directory holds
    /// no certificate yet; without one (and without a certificate) the node creates a new
    /// cluster. Ignored once the node is a member.
    pub join: Option<String>,
    /// How long the certificates this node issues (as the cluster's authority) are valid.
    pub certificate_days: u64,
    /// Time allowed at start to redeem the join token.
    pub join_timeout_secs: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            join: None,
            certificate_days: 365,
            join_timeout_secs: 60.0,
        }
    }
}

/// What one remote peer may cost this node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest protocol message accepted, in bytes; larger frames drop the stream.
    pub max_message_size: usize,
    /// Inbound protocol streams one peer may hold open at once; more are reset.
    pub max_inbound_streams_per_peer: usize,
    /// Requests served on one inbound stream before it is closed.
    pub max_requests_per_stream: usize,
    /// An inbound stream idle this long is closed.
    pub inbound_idle_timeout_secs: f64,
    /// Closer peers returned in one response (at most k are ever sent).
    pub max_peers_per_response: usize,
    /// Addresses kept per peer.
    pub max_addrs_per_peer: usize,
    /// Kademlia requests accepted per second from one peer (burst: as many); more drop the
    /// stream. (Replica requests come from admitted members only and are not limited.)
    /// 0: unlimited.
    pub max_requests_per_sec_per_peer: u32,
    /// The same, summed over every peer connecting from one IP address (many identities on one
    /// host share it); loopback is exempt. 0: unlimited.
    pub max_requests_per_sec_per_ip: u32,
    /// Inbound connections established at once, over all peers.
    pub max_connections: u32,
    /// Inbound connections still being set up (Noise, yamux) at once.
    pub max_pending_connections: u32,
    /// Connections to one peer.
    pub max_connections_per_peer: u32,
    /// Connections from one IP address (loopback is exempt).
    pub max_connections_per_ip: u32,
    /// Inbound streams of one protocol negotiated but not yet taken by its accept loop; past
    /// this a stream is dropped (counted as `accept_queue_full`). The loops only spawn a task
    /// per stream, so the queue is empty unless a peer floods faster than that.
    pub max_queued_inbound_streams: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_size: bavard_proto::framing::DEFAULT_MAX_MESSAGE_SIZE,
            max_inbound_streams_per_peer: 32,
            max_requests_per_stream: 1024,
            inbound_idle_timeout_secs: 30.0,
            max_peers_per_response: 20,
            max_addrs_per_peer: 8,
            max_requests_per_sec_per_peer: 500,
            max_requests_per_sec_per_ip: 2000,
            max_connections: 1024,
            max_pending_connections: 128,
            max_connections_per_peer: 8,
            max_connections_per_ip: 32,
            max_queued_inbound_streams: 1024,
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Deadline for every API request.
    pub request_timeout_secs: f64,
    /// Largest request body accepted, in bytes.
    pub max_body_size: usize,
    /// Host names the API answers for besides IP addresses and `localhost` (a request naming
    /// another host gets 421, which defeats DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30.0,
            max_body_size: 1024 * 1024,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Gossip settings: SWIM membership with Lifeguard (defaults: memberlist's LAN profile) and topic
/// broadcast, over `/bavard/gossip/1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    /// Length of one SWIM protocol period (one member probed per period).
    pub probe_interval_secs: f64,
    /// Time to wait for a direct ack before asking others to probe indirectly.
    pub probe_timeout_secs: f64,
    /// Every this many protocol periods, probe a ring neighbour (next or previous member in
    /// peer-id order, alternately) instead of the next round-robin member, so that a crashed
    /// member is probed within a few periods; 0 = pure SWIM round-robin.
    pub ring_probe_every: u32,
    /// Suspicion timeout multiplier (minimum timeout `mult · max(1, log10 N) · probe_interval`).
    pub suspicion_mult: u32,
    /// Period of the piggyback-only membership gossip.
    pub gossip_interval_secs: f64,
    /// Period of the full-state push-pull with a random member (heals partitions).
    pub push_pull_interval_secs: f64,
    /// How long dead members are still gossiped to and kept before being forgotten.
    pub dead_member_retention_secs: f64,
    /// Delay between join attempts while this node knows no other member.
    pub join_retry_secs: f64,
    /// Largest gossip frame accepted, in bytes; larger frames drop the stream.
    pub max_message_size: usize,
    /// Largest published payload, in bytes.
    pub max_payload_size: usize,
    /// Inbound gossip streams one peer may hold open at once; more are reset.
    pub max_inbound_streams_per_peer: usize,
    /// Frames accepted per second from one stream (burst: as many); more are dropped.
    pub max_frames_per_sec_per_stream: u32,
    /// Neighbours per topic in the broadcast overlay (HyParView active view). More give a
    /// shallower broadcast tree (fewer hops per message) and more resilience, for one small
    /// announcement per extra neighbour and message; see docs/PERFORMANCE.md.
    pub topic_active_view: usize,
    /// Backup peers remembered per topic to repair the active view (HyParView passive view).
    pub topic_passive_view: usize,
    /// How often a subscribed topic with no neighbour looks for its providers again (and, ten
    /// times slower, how often a subscribed topic refreshes its contacts).
    pub topic_retry_secs: f64,
    /// Time allowed on shutdown to send the goodbye (`Left`) messages.
    pub leave_timeout_secs: f64,
    /// Most topics this node joins (subscribed to or published on); creating one more through
    /// the API is refused with 429.
    pub max_topics: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            probe_interval_secs: 1.0,
            probe_timeout_secs: 0.5,
            ring_probe_every: 2,
            suspicion_mult: 4,
            gossip_interval_secs: 0.2,
            push_pull_interval_secs: 30.0,
            dead_member_retention_secs: 30.0,
            join_retry_secs: 2.0,
            max_message_size: 256 * 1024,
            max_payload_size: 64 * 1024,
            max_inbound_streams_per_peer: 8,
            max_frames_per_sec_per_stream: 1000,
            topic_active_view: 12,
            topic_passive_view: 30,
            topic_retry_secs: 2.0,
            leave_timeout_secs: 0.5,
            max_topics: 1024,
        }
    }
}

/// Converts configured seconds to a `Duration`, clamping nonsense (negative, NaN) to zero.
pub fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_speculation(line: &str) -> anyhow::Result<NodeConfig> {
        let c: NodeConfig = toml::from_str(&format!("[replication]\n{line}\n"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_speculation_delay_is_adaptive_unless_set_and_never_negative() {
        let adaptive = with_speculation("").unwrap();
        assert_eq!(adaptive.replication.speculative_read_ms, None);
        // Unset stays unset through a round trip (`bavard config` prints it back).
        let printed = toml::to_string(&adaptive).unwrap();
        assert!(!printed.contains("speculative_read_ms"), "{printed}");
        let again: NodeConfig = toml::from_str(&printed).unwrap();
        assert_eq!(again.replication.speculative_read_ms, None);

        let fixed = with_speculation("speculative_read_ms = 2.5").unwrap();
        assert_eq!(fixed.replication.speculative_read_ms, Some(2.5));
        assert!(with_speculation("speculative_read_ms = 0").is_ok());
        for bad in ["-1.0", "nan", "inf"] {
            let err = with_speculation(&format!("speculative_read_ms = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("speculative_read_ms"), "{bad}: {err}");
        }
        assert!(with_speculation("speculative_read_ms = \"fast\"").is_err());
    }
}
