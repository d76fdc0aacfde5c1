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
}

impl Consistency {
    /// The number of replicas required out of `n`.
    pub fn required(self, n: usize) -> usize {
        match self {
            Consistency::One => 1,
            Consistency::Quorum => n / 2 + 1,
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
            other => Err(format!(
                "unknown consistency level {other:?} (expected one, quorum or all)"
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
    /// Apply only if the newest version a quorum reports matches (conditional write).
    pub condition: Option<crate::replica::Condition>,
}

/// Options of a read.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Replicas that must answer.
    pub consistency: Consistency,
}

/// What a write returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    /// The key written.
    pub key: String,
    /// The version the write created, as a decimal string (HLC timestamp).
    pub version: String,
    /// Replicas that acknowledged it durably.
    pub acks: usize,
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

/// A peer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Its known addresses.
    pub addrs: Vec<String>,
}

/// One routing-table bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Bucket index (the position of the highest differing bit of the distance).
    pub index: u32,
    /// Entries in the bucket.
    pub len: usize,
    /// The peers it holds.
    pub peers: Vec<String>,
}

/// The routing table as `GET /v1/routing` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingInfo {
    /// Bucket size.
    pub k: usize,
    /// Total entries.
    pub size: usize,
    /// Non-empty buckets.
    pub buckets: Vec<BucketInfo>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Keys that anti-entropy found newer on a partner and has not stored here yet.
    pub keys_behind: usize,
    /// Differing ranges (leaves of the digest tree) not compared yet in the current or last
    /// failed round.
    pub ranges_pending: usize,
    /// Hints this node keeps for replicas that were down.
    pub hints_queued: usize,
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
        /// The version found.
        current: String,
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
}

/// A membership entry as `GET /v1/members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its peer id.
    pub peer_id: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    /// Its incarnation number (raised by the member to refute suspicions and to leave).
    pub incarnation: u64,
    /// The listen addresses it announced.
    pub addrs: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
