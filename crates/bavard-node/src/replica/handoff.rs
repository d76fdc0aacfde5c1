//! Hinted handoff: delivering the hints this node keeps ([`super::hints`]) to their owners.
//!
//! Every owner the membership does not hold for dead is served, several at a time, each with all
//! its hints in batches bounded in records and bytes (below the frame limit, paced with
//! anti-entropy); hints are deleted only after the owner acknowledged them durably, so one
//! owner's backlog neither starves nor delays the others'.
//!
//! The hint store is a redb file: every read and every delete (an fsync) runs on the
//! low-priority background threads, never on an async worker, where it would hold up the
//! client requests that worker serves.

use bavard_proto::store as pb;
use libp2p::PeerId;

use super::hints::Hints;
use super::service::Replica;
use super::wire::record_to_pb;
use crate::util::unix_ms;

/// Delivers queued hints every `replication.hint_delivery_interval_secs` until shutdown.
pub(crate) async fn run(node: Replica) {
    let every = crate::config::secs(node.ctx.config.replication.hint_delivery_interval_secs)
        .max(std::time::Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = node.ctx.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                deliver(&node).await;
            }
        }
    }
}

/// Hands queued hints to their owners; returns how many were delivered.
///
/// Owners are served concurrently (up to [`PARALLEL_OWNERS`] at once), each with all of its
/// hints in byte-bounded batches, so one owner's backlog neither starves nor delays the
/// others'. Owners the membership declared dead or gone are skipped until they are back.
pub(crate) async fn deliver(node: &Replica) -> usize {
    use futures::StreamExt as _;
    let policy = node.handoff_policy();
    let owners: Vec<PeerId> = on_hints(node, |h| h.owners(unix_ms()))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|o| policy.deliverable(node.ctx.members.is_down(o)))
        .collect();
    let delivered: usize = futures::stream::iter(owners)
        .map(|owner| deliver_to(node, owner))
        .buffer_unordered(PARALLEL_OWNERS)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    if delivered > 0 {
        node.ctx.metrics.hints_delivered.inc_by(delivered as u64);
    }
    if let Some(queued) = on_hints(node, Hints::len).await {
        node.ctx.metrics.hints_queued.set(queued as i64);
    }
    delivered
}

/// Runs `f` on the hint store on the background threads; `None` if the job was lost (the
/// threads are gone: the node is shutting down).
async fn on_hints<R, F>(node: &Replica, f: F) -> Option<R>
where
    R: Send + 'static,
    F: FnOnce(&Hints) -> R + Send + 'static,
{
    let owner = node.clone();
    node.background.run(move || f(&owner.hints)).await.ok()
}

/// Owners whose hints are delivered at the same time.
const PARALLEL_OWNERS: usize = 8;

async fn deliver_to(node: &Replica, owner: PeerId) -> usize {
    let policy = node.handoff_policy();
    let mut after: Option<Vec<u8>> = None;
    let mut delivered = 0;
    loop {
        let from = after.take();
        let Some((batch, more)) = on_hints(node, move |h| {
            h.pending_for(&owner, from.as_deref(), &policy, unix_ms())
        })
        .await
        else {
            break;
        };
        let Some(last) = batch.last() else { break };
        after = Some(last.stored_key.clone());
        let bytes: usize = batch
            .iter()
            .map(|h| bavard_replica::sync::record_size(&h.record))
            .sum();
        node.pace.take(bytes).await;
        let req = pb::request::Kind::Store(pb::StoreRequest {
            records: batch.iter().map(|h| record_to_pb(&h.record)).collect(),
            hint_for: Vec::new(),
        });
        match node.request(owner, req).await {
            Ok(pb::response::Kind::Store(resp)) if resp.results.len() == batch.len() => {
                // Stored, unchanged or stale: the owner has this version or a newer one. A
                // rejected hint stays (and expires with the hint TTL).
                let done: Vec<_> = batch
                    .iter()
                    .zip(&resp.results)
                    .filter(|(_, r)| r.outcome != pb::Outcome::Rejected as i32)
                    .map(|(h, _)| h)
                    .collect();
                delivered += done.len();
                let keys: Vec<Vec<u8>> = done.iter().map(|h| h.stored_key.clone()).collect();
                on_hints(node, move |h| h.remove_many(&keys)).await;
                // The owner holds the blobs of delivered large records now.
                let records: Vec<_> = done.iter().map(|h| &h.record).collect();
                node.hints_delivered(&records).await;
            }
            Ok(other) => {
                tracing::debug!(%owner, "unexpected answer to a hint delivery: {other:?}");
                break;
            }
            // The owner is still unreachable: try again next round.
            Err(e) => {
                tracing::debug!(%owner, "hint delivery failed: {e}");
                break;
            }
        }
        if !more {
            break;
        }
    }
    delivered
}
