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
    /// Peers to join through; each must end in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// Address of the HTTP API; `None` runs no API server (library use).
    pub api: Option<SocketAddr>,
    /// Kademlia protocol parameters.
    pub kad: KadConfig,
    /// Record store limits.
    pub store: StoreConfig,
    /// Limits on what a single remote peer may cost us.
    pub limits: LimitsConfig,
    /// HTTP API settings.
    pub http: HttpConfig,
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
            api: Some(SocketAddr::from(([127, 0, 0, 1], 5001))),
            kad: KadConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
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
        if self.kad.k == 0 || self.kad.alpha == 0 || self.kad.replication_factor == 0 {
            anyhow::bail!("kad.k, kad.alpha and kad.replication_factor must be at least 1");
        }
        if self.limits.max_message_size < 1024 {
            anyhow::bail!("limits.max_message_size must be at least 1024 bytes");
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
    /// Disjoint lookup paths (S/Kademlia); 1 turns the feature off.
    pub disjoint_paths: usize,
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
            disjoint_paths: 1,
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

/// Record store limits (see `bavard_store::StoreLimits`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Largest value accepted, in bytes.
    pub max_value_size: usize,
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_value_size: 64 * 1024,
            max_key_size: 1024,
            max_records: 100_000,
            max_providers_per_key: 20,
            max_provided_keys: 10_000,
            in_memory: false,
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30.0,
            max_body_size: 1024 * 1024,
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
