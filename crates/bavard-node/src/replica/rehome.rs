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
//! on the background threads) and writes each record it is not a replica of to the key's
//! current replicas at quorum, paced with the other background transfers. The record keeps its
//! version, so a replica that holds it or a newer one answers "unchanged" or "stale". The local
//! copy stays: deleting it safely would need a delete conditional on the version, and a copy
//! kept by a non-replica is never read.

use std::collections::BTreeSet;

use bavard_routing::Key;
use bavard_store::{Record, RecordStore as _};
use libp2p::PeerId;

use super::service::Replica;
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
                if members.is_subset(&last) {
                    last = members;
                    continue;
                }
                last = members;
                let sent = rehome(&node).await;
                if sent > 0 {
                    tracing::info!(sent, "sent records this node does not replicate to their replicas");
                }
            }
        }
    }
}

/// Writes every record this node holds but does not replicate (in its current placement) to
/// the key's replicas; returns how many such writes reached a quorum.
pub(crate) async fn rehome(node: &Replica) -> usize {
    let me = node.ctx.peer_id;
    let mut after: Option<Vec<u8>> = None;
    let mut sent = 0;
    loop {
        let (placement, _) = node.placement_view();
        let store = node.storage.store.clone();
        let from = after.take();
        // The scan and the placement checks run on the background threads.
        let page = node
            .background
            .run(move || -> Result<(Vec<Record>, Option<Vec<u8>>), String> {
                let page = store
                    .scan(from.as_deref(), SCAN_PAGE, unix_ms())
                    .map_err(|e| e.to_string())?;
                let next = (page.len() == SCAN_PAGE)
                    .then(|| page.last().map(|r| r.key.clone()))
                    .flatten();
                let foreign = page
                    .into_iter()
                    .filter(|r| !placement.is_replica(&Key::hash(&r.key), &me))
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
        for record in foreign {
            if node.ctx.is_shutting_down() {
                return sent;
            }
            node.pace
                .take(bavard_replica::sync::record_size(&record))
                .await;
            let key = hex::encode(&record.key);
            match node.write(record, Consistency::Quorum).await {
                Ok(_) => {
                    sent += 1;
                    node.ctx.metrics.records_rehomed.inc();
                }
                Err(e) => tracing::debug!(key, "cannot send a record to its replicas: {e}"),
            }
        }
        match next {
            Some(key) => after = Some(key),
            None => return sent,
        }
    }
}
