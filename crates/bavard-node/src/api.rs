//! Types of the node's public API, shared by the Rust [`crate::Node`] handle, the HTTP server and
//! the CLI client.

use serde::{Deserialize, Serialize};

/// How many replicas must answer a read or acknowledge a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// One replica.
    One,
    /// A majority of the replication factor: ⌊N/2⌋ + 1.
    #[default]
    Quorum,
    /// Every replica.
    All,
    /// Linearizable: a consensus round (Paxos) on a majority of the key's replicas. A serial
    /// read sees every committed compare-and-set; a serial write is a compare-and-set without a
    /// condition, ordered with every other one (see [`crate::replica`]).
    Serial,
}

impl Consistency {
    /// The number of replicas required out of `n`.
    pub fn required(self, n: usize) -> usize {
        match self {
            Consistency::One => 1,
            Consistency::Quorum | Consistency::Serial => n / 2 + 1,
            Consistency::All => n,
        }
        .max(1)
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Consistency::One),
            "quorum" => Ok(Consistency::Quorum),
            "all" => Ok(Consistency::All),
            "serial" => Ok(Consistency::Serial),
            other => Err(format!(
                "unknown consistency level {other:?} (expected one, quorum, all or serial)"
            )),
        }
    }
}

impl std::fmt::Display for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Consistency::One => "one",
            Consistency::Quorum => "quorum",
            Consistency::All => "all",
            Consistency::Serial => "serial",
        })
    }
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Replicas that must acknowledge.
    pub consistency: Consistency,
    /// Lifetime of the record in seconds; the configured default when `None`.
    pub ttl_secs: Option<u64>,
    /// Apply only if the key's current value matches: a compare-and-set, decided by a
    /// consensus round on the key's replicas (linearizable; `consistency` does not apply).
    pub condition: Option<crate::replica::Condition>,
}

/// Options of a read.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Replicas that must answer.
    pub consistency: Consistency,
}

/// What a write returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PutReply {
    /// The key written.
    pub key: String,
    /// The version the write created, as a decimal string (HLC timestamp).
    pub version: String,
    /// Replicas that acknowledged it durably (for a compare-and-set: the majority that
    /// accepted it).
    pub acks: usize,
    /// Round trips to the replicas a compare-and-set took (2 when uncontended); absent for a
    /// plain write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trips: Option<u32>,
    /// How the request wrote the key (`utf8`, `hex`, `base64url`); set by the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_encoding: Option<String>,
    /// The key's bytes in hex; set by the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hex: Option<String>,
}

/// A value read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReply {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// Its version.
    pub version: String,
}

/// A value read by [`crate::Node::get_value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRead {
    /// The value: inline bytes, or the blob of a large value.
    pub value: KvValue,
    /// Its version.
    pub version: String,
    /// The node that wrote it (it holds a large value's blob), when known.
    pub publisher: Option<libp2p::PeerId>,
}

/// A value's bytes, or where a large value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvValue {
    /// Up to `[store] inline_value_limit` bytes, kept in the record.
    Inline(Vec<u8>),
    /// A larger value: the blob its replicas hold.
    Blob {
        /// The blob's hash.
        hash: bavard_blobs::BlobHash,
        /// The value's size in bytes.
        size: u64,
    },
}

/// A peer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Its known addresses.
    pub addrs: Vec<String>,
}

/// One routing-table bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BucketInfo {
    /// Bucket index (the position of the highest differing bit of the distance).
    pub index: u32,
    /// Entries in the bucket.
    pub len: usize,
    /// The peers it holds.
    pub peers: Vec<String>,
}

/// The routing table as `GET /v1/routing` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoutingInfo {
    /// Bucket size.
    pub k: usize,
    /// Total entries.
    pub size: usize,
    /// Non-empty buckets.
    pub buckets: Vec<BucketInfo>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// Entries in its routing table.
    pub routing_table_size: usize,
    /// Members it sees alive (itself included).
    pub members_alive: usize,
    /// Records in its store.
    pub records_stored: usize,
    /// Peers it is connected to.
    pub connected_peers: usize,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The bavard version.
    pub version: String,
    /// The id of the cluster this node is a member of.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// How far this node's replicas are from its partners'.
    #[serde(default)]
    pub replication: ReplicationStatus,
}

/// Replica health: how far behind a node is, for operators watching a recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicationStatus {
    /// Keys that anti-entropy found newer on a partner and has not stored here yet.
    pub keys_behind: usize,
    /// Differing ranges (leaves of the digest tree) not compared yet in the current or last
    /// failed round.
    pub ranges_pending: usize,
    /// Hints this node keeps for replicas that were down.
    pub hints_queued: usize,
    /// Stale replicas this node repaired while coordinating reads, since it started.
    #[serde(default)]
    pub read_repairs: u64,
    /// Anti-entropy rounds this node ran, since it started.
    #[serde(default)]
    pub anti_entropy_rounds: u64,
    /// Anti-entropy rounds that failed (any reason), since it started.
    #[serde(default)]
    pub anti_entropy_failures: u64,
}

/// Errors of the node API, each mapped to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// Too few replicas answered (503).
    #[error(
        "only {answered} of the {required} required replicas answered{}",
        unavailable_hint(*.live_members, *.required, *.replication_factor)
    )]
    Unavailable {
        /// Replicas that answered.
        answered: usize,
        /// Replicas required by the consistency level.
        required: usize,
        /// Live members this node knows (itself included).
        live_members: usize,
        /// N, the replicas each key has.
        replication_factor: usize,
    },
    /// A conditional write found another version (409).
    #[error("version conflict: current version is {current}")]
    Conflict {
        /// The version found (`none` when the key is absent).
        current: String,
    },
    /// A linearizable operation (a conditional write, a serial read or write) could not be
    /// decided: too few replicas answered, or other writers kept winning (503). `outcome` says
    /// whether the write may still take effect.
    #[error("{reason} ({})", outcome.explain())]
    Undecided {
        /// Whether the write may still take effect.
        outcome: Undecided,
        /// What went wrong.
        reason: String,
    },
    /// The operation did not finish in time (504).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node is shutting down (503).
    #[error("node is shutting down")]
    ShuttingDown,
    /// Local storage failed (500).
    #[error("storage error: {0}")]
    Storage(String),
    /// A configured limit on what clients may create was reached (429).
    #[error("{0}")]
    Limit(String),
    /// This node's storage failed (a full or failing disk): it takes no writes and has left the
    /// cluster until the store works again (507).
    #[error(
        "this node's storage failed ({0}); it takes no writes and left the cluster until its \
         disk works again: use another node"
    )]
    StorageFailed(String),
    /// A value over `[store] max_large_value_size` (413).
    #[error(
        "the value is {size} bytes or more, over the {max}-byte limit ([store] \
         max_large_value_size)"
    )]
    ValueTooLarge {
        /// The value's size, or the bytes received when the limit was crossed.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A compare-and-set (`if_version`, `if_absent`, `consistency=serial`) of a value above
    /// `[store] inline_value_limit`: not supported, nothing written (400).
    #[error(
        "a compare-and-set (if_version, if_absent or consistency=serial) takes values up to \
         [store] inline_value_limit ({limit} bytes); this one is larger: write it without a \
         condition"
    )]
    LargeValueCondition {
        /// The inline limit.
        limit: usize,
    },
    /// Storing or reading a large value's blob failed (the blob's status: 400 for a body cut
    /// short, 404 when no replica has it, 502 for a failed fetch, 507 for a full blob store…).
    #[error("large value: {0}")]
    LargeValue(crate::blobs::BlobError),
}

/// What a client may assume about a compare-and-set that could not be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undecided {
    /// The write may have been accepted by some replicas: a later round that finds it will
    /// finish it, so it may still take effect, or never.
    Unknown,
    /// The write was accepted nowhere and never takes effect (for a read: the read failed).
    NotApplied,
}

impl Undecided {
    /// `unknown` or `not_applied`, as the HTTP API's `outcome` field says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Undecided::Unknown => "unknown",
            Undecided::NotApplied => "not_applied",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Undecided::Unknown => "outcome unknown: the write may still take effect",
            Undecided::NotApplied => "not applied: the write never takes effect",
        }
    }
}

/// A membership entry as `GET /v1/members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberInfo {
    /// Its peer id.
    pub peer_id: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    /// Its incarnation number (raised by the member to refute suspicions and to leave).
    pub incarnation: u64,
    /// The listen addresses it announced.
    pub addrs: Vec<String>,
    /// For a suspect: milliseconds left before this node declares it dead unless it refutes
    /// (Lifeguard shortens the timeout as independent confirmations arrive). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicion_timeout_ms: Option<u64>,
    /// For a suspect: how many other members independently confirmed the suspicion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicion_confirmations: Option<u32>,
}

/// A topic this node takes part in, as `GET /v1/topics` shows it: its place in the topic's
/// broadcast tree (Plumtree's eager and lazy neighbours over HyParView's active view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicInfo {
    /// The topic's name.
    pub topic: String,
    /// Whether this node subscribed to it (false: it only published on it).
    pub subscriber: bool,
    /// Neighbours this node forwards whole messages to (the tree's edges).
    pub eager: Vec<String>,
    /// Neighbours this node sends only message ids to (repair links).
    pub lazy: Vec<String>,
    /// How many peers the passive view holds (replacements for failed neighbours).
    pub passive: usize,
    /// Messages of the topic this node has seen and still remembers.
    pub seen: usize,
}

/// A message delivered on a subscribed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEvent {
    /// The message id, hex.
    pub message_id: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What `POST /v1/topics/{topic}` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishReply {
    /// The message id, hex.
    pub message_id: String,
}

/// Why a quorum could not be met, and what to do, when the cluster is too small for it.
fn unavailable_hint(live_members: usize, required: usize, replication_factor: usize) -> String {
    if live_members >= required {
        return String::new();
    }
    let members = if live_members == 1 {
        "1 live member (itself)".to_owned()
    } else {
        format!("{live_members} live members")
    };
    format!(
        ": this node knows {members} and keys have {replication_factor} replicas; \
         write with consistency one (`--consistency one`, `?consistency=one`) or start more nodes"
    )
}
