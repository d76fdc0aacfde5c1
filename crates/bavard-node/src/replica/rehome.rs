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
//! The local copy stays: deleting it safely would need a delete conditional on the version, and
//! a copy kept by a non-replica is never read.

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
                let sent = rehome(&node).await;
                if sent > 0 {
                    tracing::info!(
                        sent,
                        "sent records this node does not replicate to their replicas"
                    );
                }
            }
        }
    }
}

/// Sends every record this node holds but does not replicate (in its current placement) to
/// the key's replicas, in byte-bounded store batches per replica (as hints are delivered);
/// returns how many records at least a quorum of their replicas acknowledged.
async fn rehome(node: &Replica) -> usize {
    let me = node.ctx.peer_id;
    let quorum = Consistency::Quorum.required(node.ctx.config.kad.replication_factor);
    let mut after: Option<Vec<u8>> = None;
    let mut sent = 0;
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
                return sent;
            }
            Err(_) => return sent,
        };
        if node.ctx.is_shutting_down() {
            return sent;
        }
        sent += send(node, foreign, quorum).await;
        match next {
            Some(key) => after = Some(key),
            None => return sent,
        }
    }
}

/// A record this node holds without replicating it, and the replicas it goes to.
struct Foreign {
    record: Record,
    replicas: Vec<PeerId>,
}

/// Sends `foreign` to their replicas, each replica's share in batches, the replicas at once;
/// returns how many records `quorum` replicas acknowledged.
async fn send(node: &Replica, foreign: Vec<Foreign>, quorum: usize) -> usize {
    use futures::StreamExt as _;
    let mut by_replica: BTreeMap<PeerId, Vec<usize>> = BTreeMap::new();
    for (i, f) in foreign.iter().enumerate() {
        for peer in &f.replicas {
            by_replica.entry(*peer).or_default().push(i);
        }
    }
    let foreign = &foreign;
    let acked: Vec<Vec<usize>> = futures::stream::iter(by_replica)
        .map(|(peer, indexes)| send_to(node, peer, foreign, indexes))
        .buffer_unordered(PARALLEL_REPLICAS)
        .collect()
        .await;
    let mut acks = vec![0usize; foreign.len()];
    for i in acked.into_iter().flatten() {
        acks[i] += 1;
    }
    let sent = acks
        .iter()
        .zip(foreign)
        .filter(|(n, f)| **n >= quorum.min(f.replicas.len()))
        .count();
    node.ctx.metrics.records_rehomed.inc_by(sent as u64);
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
