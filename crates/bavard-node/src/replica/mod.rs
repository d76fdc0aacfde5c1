//! The replicated key-value store, in the spirit of Dynamo (DeCandia et al., SOSP 2007) and
//! Cassandra, over the replica protocol `/bavard/kv/1`.
//!
//! - **Replicas.** A key's preference list is its `replication_factor` (N) closest healthy
//!   members by XOR distance ([`bavard_replica::Placement`], one rule for every path); before the
//!   membership knows other members, the closest peers a lookup finds merged with the routing
//!   table and this node.
//! - **Coordination.** The node a client talks to coordinates: a write goes to all N and is
//!   acknowledged once W answered that it is on disk; a read asks R of the N (itself first when
//!   it is one), the others too when one fails or the answers are late (speculative retry,
//!   `[replication] speculative_read_ms`), and returns the newest version once R answered. W
//!   and R come from the consistency level (`one`, `quorum` = ⌊N/2⌋+1, `all`). Too few answers within the request timeout is an error naming how many
//!   answered, never a hang.
//! - **Sloppy quorum and hinted handoff.** A preference-list node that does not answer a write
//!   is replaced by the next live node beyond the list, which stores the record as a durable hint
//!   for the owner (bounded in count and age) and hands it over when the owner answers again.
//! - **Read repair.** Replicas that answered a read with an older version (or none) are sent the
//!   newest, in the background.
//! - **Anti-entropy.** Each node compares, with the partners it shares keys with, a three-level
//!   hash tree over the leaves of the keyspace both replicate (maintained by the store on every
//!   write, so a round costs the differences, not a scan), then pulls what it lacks and pushes
//!   what the partner lacks, in byte-bounded batches ([`bavard_replica::sync`], driven by
//!   [`antientropy`]). Replicas converge after a partition heals or a replica returns, even for
//!   keys nobody reads, and keys move to nodes that became replicas when membership changed.
//! - **Rehoming.** A node that learns a new member sends the records it holds but does not
//!   replicate to their replicas ([`rehome`]): a write placed while it knew only some members
//!   reaches the key's real replicas.
//! - **Versions.** Every write carries a hybrid logical clock timestamp (Kulkarni et al. 2014)
//!   and the writer's peer id; replicas keep the highest (last writer wins by HLC, ties by writer
//!   id), so every replica picks the same winner. Timestamps more than `max_clock_drift_ms` ahead
//!   of the local clock are refused. **Concurrent writes to one key resolve by LWW**: one of them
//!   wins and the others are silently superseded. Clients that must not lose an update use
//!   conditional writes (`if_version` / `if_absent`), which are a consensus round on the key's
//!   replicas (single-decree Paxos, [`paxos`]): linearizable compare-and-set — of two writers
//!   conditioned on one version exactly one succeeds. `consistency=serial` reads and writes go
//!   through the same rounds. Mixing them with plain LWW writes on one key loses the guarantee
//!   (see [`paxos`] and `docs/OPERATIONS.md`).
//! - **Deletes** are tombstones, replicated and repaired like values, purged after the tombstone
//!   grace period.
//! - **Large values** (above `[store] inline_value_limit`) are blobs held by every replica of
//!   the key, the record carrying the blob's hash; a replica stores such a record only once it
//!   holds the blob durably, on every path ([`large`]).
//! - **Durability.** A replica answers a store only after its commit is fsynced (group commit
//!   batches concurrent writes into one fsync, see [`commit`]); the coordinator counts only such
//!   answers.

pub(crate) mod antientropy;
pub mod commit;
pub(crate) mod coordinator;
pub(crate) mod handoff;
pub(crate) mod hints;
pub(crate) mod large;
pub(crate) mod pace;
pub mod paxos;
pub(crate) mod pool;
pub(crate) mod progress;
pub(crate) mod rehome;
pub(crate) mod server;
pub(crate) mod service;
pub mod wire;

pub use coordinator::Condition;

use std::sync::{Arc, Mutex};

use bavard_replica::Placement;
use libp2p::PeerId;

use crate::context::Context;

/// A placement and the (sorted) members it was built from.
type Built = (Vec<PeerId>, Arc<Placement<PeerId>>);

/// The last placement built.
#[derive(Default)]
pub(crate) struct PlacementCache(Mutex<Option<Built>>);

impl PlacementCache {
    /// The placement for `members` (sorted), built by `build` unless it is the last one.
    fn get_or_build(
        &self,
        members: Vec<PeerId>,
        build: impl FnOnce(&[PeerId]) -> Placement<PeerId>,
    ) -> Arc<Placement<PeerId>> {
        let mut cache = self.0.lock().expect("placement lock");
        if let Some((ids, p)) = cache.as_ref()
            && *ids == members
        {
            return p.clone();
        }
        let p = Arc::new(build(&members));
        *cache = Some((members, p.clone()));
        p
    }
}

/// The members keys are placed on, and whether they come from the membership: the healthy
/// members of the gossip membership (alive or suspect; dead and departed ones are skipped,
/// Dynamo's sloppy quorum) once it knows others and this node; before that, this node and the
/// bavard peers of its routing table.
fn placement_members(ctx: &Context) -> (Vec<PeerId>, bool) {
    let me = ctx.peer_id;
    // Only admitted members hold replicas (a revoked one leaves every placement at once).
    let mut healthy = ctx.members.healthy();
    healthy.retain(|p| ctx.admission.is_admitted(p));
    if healthy.len() > 1 && healthy.contains(&me) {
        return (healthy, true);
    }
    let kv = ctx.kv_peers.lock().expect("kv peers lock").clone();
    let mut members: Vec<PeerId> = ctx
        .table
        .lock()
        .expect("table lock")
        .iter()
        .map(|e| e.peer)
        .filter(|p| kv.contains(p) && ctx.admission.is_admitted(p))
        .collect();
    members.push(me);
    (members, false)
}

/// The libp2p protocol of the replica protocol.
pub const KV_PROTOCOL: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bavard/kv/1");
