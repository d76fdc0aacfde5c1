//! Records held by a node that does not replicate them go to their replicas when the
//! membership grows.
//!
//! A node places a write on the N closest members *it knows*. Until its membership knows every
//! member (just after it started, or while a partition hid some members from it), those can be
//! members that are none of the key's replicas in the full view. The write is acknowledged and
//! durable, but quorum reads ask the real replicas and miss it; anti-entropy syncs replicas
//! with replicas and never moves it, and re-replication runs hourly. A member that joins also
//! takes over keys from the nodes that replicated them before.
//!
//! So every `replication.rehome_interval_secs` a node compares its placement's members with
//! those of its last pass. When a member was added, it scans its store (off the async workers,
//! on the background threads) and sends each record it is not a replica of to the key's
//! current replicas: byte-bounded store batches per replica, as hints are delivered, paced with
//! the other background transfers. The record keeps its version, so a replica that holds it or
//! a newer one answers "unchanged" or "stale". A member that comes back after it was declared
//! dead makes this move its share: while it was dead, the next-closest member took its writes.
//!
//! Once a quorum of its replicas acknowledged a record, the node drops its own copy, if that
//! copy still has the version sent ([`RecordStore::remove_unchanged`]; a record written since
//! stays). A copy kept by a non-replica is never read and never sees the key's later deletes:
//! sent again after the replicas purged the delete's tombstone (`tombstone_grace_secs`), by a
//! later pass or by re-replication, it would bring a deleted value back. Records whose value is
//! a blob keep their copy (their blob references are counted per node).

use std::collections::{BTreeMap, BTreeSet};

use bavard_proto::store as pb;
use bavard_routing::Key;
use bavard_store::{Record, RecordStore as _};
use libp2p::PeerId;

use super::service::Replica;
use super::wire::record_to_pb;
use crate::api::Consistency;
use crate::util::unix_ms;

/// Records read per page of the store scan.
const SCAN_PAGE: usize = 256;

/// Checks for membership growth every `replication.rehome_interval_secs` until shutdown.
pub(crate) async fn run(node: Replica) {
    let every = node.ctx.config.replication.rehome_interval_secs;
    if every <= 0.0 {
        return;
    }
    let every = crate::config::secs(every).max(std::time::Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = node.ctx.shutdown_signal();
    tokio::pin!(shutdown);
    let mut last: BTreeSet<PeerId> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                let (placement, converged) = node.placement_view();
                if !converged {
                    continue;
                }
                let members: BTreeSet<PeerId> = placement.members().copied().collect();
                let grew = !members.is_subset(&last);
                last = members;
                if !grew {
                    continue;
                }
                let (sent, dropped) = rehome(&node).await;
                if sent > 0 {
                    tracing::info!(
                        sent,
                        dropped,
                        "sent records this node does not replicate to their replicas, and \
                         dropped the copies they acknowledged"
                    );
                }
            }
        }
    }
}

/// Sends every record this node holds but does not replicate (in its current placement) to
/// the key's replicas, in byte-bounded store batches per replica (as hints are delivered), and
/// drops the copies a quorum of them acknowledged; returns how many records were acknowledged
/// and how many copies dropped.
async fn rehome(node: &Replica) -> (usize, usize) {
    let me = node.ctx.peer_id;
    let quorum = Consistency::Quorum.required(node.ctx.config.kad.replication_factor);
    let mut after: Option<Vec<u8>> = None;
    let (mut sent, mut dropped) = (0, 0);
    loop {
        let (placement, _) = node.placement_view();
        let store = node.storage.store.clone();
        let from = after.take();
        // The scan and the placement checks run on the background threads.
        let page = node
            .background
            .run(move || -> Result<(Vec<Foreign>, Option<Vec<u8>>), String> {
                let page = store
                    .scan(from.as_deref(), SCAN_PAGE, unix_ms())
                    .map_err(|e| e.to_string())?;
                let next = (page.len() == SCAN_PAGE)
                    .then(|| page.last().map(|r| r.key.clone()))
                    .flatten();
                let foreign = page
                    .into_iter()
                    .filter_map(|record| {
                        let target = Key::hash(&record.key);
                        (!placement.is_replica(&target, &me)).then(|| Foreign {
                            replicas: placement.preference_list(&target),
                            record,
                        })
                    })
                    .collect();
                Ok((foreign, next))
            })
            .await;
        let (foreign, next) = match page {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!("cannot scan the store for records to send to their replicas: {e}");
                return (sent, dropped);
            }
            Err(_) => return (sent, dropped),
        };
        if node.ctx.is_shutting_down() {
            return (sent, dropped);
        }
        let acked = send(node, &foreign, quorum).await;
        sent += acked.len();
        dropped += drop_copies(node, &foreign, &acked).await;
        match next {
            Some(key) => after = Some(key),
            None => return (sent, dropped),
        }
    }
}

/// Removes this node's copies of `foreign[acked]`, each only if it still has the version sent
/// (inline values only); returns how many were removed.
async fn drop_copies(node: &Replica, foreign: &[Foreign], acked: &[usize]) -> usize {
    let expected: Vec<(Vec<u8>, bavard_store::Version)> = acked
        .iter()
        .map(|&i| &foreign[i].record)
        .filter(|r| r.blob().is_none())
        .map(|r| (r.key.clone(), r.version.clone()))
        .collect();
    if expected.is_empty() {
        return 0;
    }
    let store = node.storage.store.clone();
    match node
        .background
        .run(move || store.remove_unchanged(&expected))
        .await
    {
        Ok(Ok(removed)) => {
            node.ctx
                .metrics
                .rehomed_copies_dropped
                .inc_by(removed as u64);
            removed
        }
        Ok(Err(e)) => {
            tracing::warn!("cannot drop the copies of records sent to their replicas: {e}");
            0
        }
        Err(_) => 0,
    }
}

/// A record this node holds without replicating it, and the replicas it goes to.
struct Foreign {
    record: Record,
    replicas: Vec<PeerId>,
}

/// Sends `foreign` to their replicas, each replica's share in batches, the replicas at once;
/// returns the indexes of the records `quorum` replicas acknowledged.
async fn send(node: &Replica, foreign: &[Foreign], quorum: usize) -> Vec<usize> {
    use futures::StreamExt as _;
    let mut by_replica: BTreeMap<PeerId, Vec<usize>> = BTreeMap::new();
    for (i, f) in foreign.iter().enumerate() {
        for peer in &f.replicas {
            by_replica.entry(*peer).or_default().push(i);
        }
    }
    let acked: Vec<Vec<usize>> = futures::stream::iter(by_replica)
        .map(|(peer, indexes)| send_to(node, peer, foreign, indexes))
        .buffer_unordered(PARALLEL_REPLICAS)
        .collect()
        .await;
    let mut acks = vec![0usize; foreign.len()];
    for i in acked.into_iter().flatten() {
        acks[i] += 1;
    }
    let sent: Vec<usize> = acks
        .iter()
        .zip(foreign)
        .enumerate()
        .filter(|(_, (n, f))| **n >= quorum.min(f.replicas.len()))
        .map(|(i, _)| i)
        .collect();
    node.ctx.metrics.records_rehomed.inc_by(sent.len() as u64);
    sent
}

/// Replicas sent to at the same time.
const PARALLEL_REPLICAS: usize = 4;

/// Sends `foreign[indexes]` to `peer` in byte-bounded batches; returns the indexes it stored or
/// already held (a newer version included).
async fn send_to(
    node: &Replica,
    peer: PeerId,
    foreign: &[Foreign],
    indexes: Vec<usize>,
) -> Vec<usize> {
    let policy = node.handoff_policy();
    let mut acked = Vec::new();
    let mut rest = indexes.into_iter().peekable();
    while rest.peek().is_some() {
        let mut batch = policy.batch();
        let mut in_batch = Vec::new();
        while let Some(&i) = rest.peek() {
            if batch.offer(foreign[i].record.clone()).is_err() {
                break;
            }
            in_batch.push(i);
            rest.next();
        }
        let records = batch.into_records();
        let bytes = records.iter().map(bavard_replica::sync::record_size).sum();
        node.pace.take(bytes).await;
        let req = pb::request::Kind::Store(pb::StoreRequest {
            records: records.iter().map(record_to_pb).collect(),
            hint_for: Vec::new(),
        });
        match node.request(peer, req).await {
            Ok(pb::response::Kind::Store(resp)) if resp.results.len() == in_batch.len() => {
                acked.extend(
                    in_batch
                        .iter()
                        .zip(&resp.results)
                        .filter(|(_, r)| r.outcome != pb::Outcome::Rejected as i32)
                        .map(|(i, _)| *i),
                );
            }
            Ok(other) => {
                tracing::debug!(%peer, "unexpected answer to rehomed records: {other:?}");
                break;
            }
            Err(e) => {
                tracing::debug!(%peer, "cannot send rehomed records: {e}");
                break;
            }
        }
    }
    acked
}
