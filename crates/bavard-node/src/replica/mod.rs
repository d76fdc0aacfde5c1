//! The replicated key-value store, in the spirit of Dynamo (DeCandia et al., SOSP 2007) and
//! Cassandra, over the replica protocol `/bavard/kv/1`.
//!
//! - **Replicas.** A key's preference list is its `replication_factor` (N) closest nodes by XOR
//!   distance: the closest peers a lookup finds (which, seeded from a converged membership view,
//!   takes one round trip) merged with the routing table and this node.
//! - **Coordination.** The node a client talks to coordinates: a write goes to all N and is
//!   acknowledged once W answered that it is on disk; a read asks the N and returns the newest
//!   version once R answered. W and R come from the consistency level (`one`, `quorum` =
//!   ⌊N/2⌋+1, `all`). Too few answers within the request timeout is an error naming how many
//!   answered, never a hang.
//! - **Sloppy quorum and hinted handoff.** A preference-list node that does not answer a write
//!   is replaced by the next live node beyond the list, which stores the record as a durable hint
//!   for the owner (bounded in count and age) and hands it over when the owner answers again.
//! - **Read repair.** Replicas that answered a read with an older version (or none) are sent the
//!   newest, in the background.
//! - **Anti-entropy.** Periodically each node compares, with one peer it shares keys with, a
//!   256-bucket hash of the keys both replicate (a two-level Merkle tree: bucket hashes first,
//!   then the keys and versions of differing buckets only), then pushes what the peer lacks and
//!   pulls what it lacks. Replicas converge after a partition heals even for keys nobody reads,
//!   and keys move to nodes that became replicas when membership changed.
//! - **Versions.** Every write carries a hybrid logical clock timestamp (Kulkarni et al. 2014)
//!   and the writer's peer id; replicas keep the highest (last writer wins by HLC, ties by writer
//!   id), so every replica picks the same winner. Timestamps more than `max_clock_drift_ms` ahead
//!   of the local clock are refused. **Concurrent writes to one key resolve by LWW**: one of them
//!   wins and the others are silently superseded. Clients that must not lose an update use
//!   conditional writes (`if_version` / `if_absent`), which apply only when the newest version a
//!   quorum reports is the expected one (a check-then-write, not a consensus round: two
//!   conditional writers racing inside one round trip can both succeed, and LWW then keeps one).
//! - **Deletes** are tombstones, replicated and repaired like values, purged after the tombstone
//!   grace period.
//! - **Durability.** A replica answers a store only after its commit is fsynced (group commit
//!   batches concurrent writes into one fsync, see [`commit`]); the coordinator counts only such
//!   answers.

pub(crate) mod antientropy;
pub mod commit;
pub(crate) mod coordinator;
pub(crate) mod hints;
pub(crate) mod pool;
pub(crate) mod server;
pub mod wire;

pub use coordinator::Condition;

/// The libp2p protocol of the replica protocol.
pub const KV_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bavard/kv/1");
