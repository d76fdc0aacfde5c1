//! Failing disks: what the node does when its storage fails, and how it comes back.
//!
//! On a storage-engine error (a full disk, an I/O error; redb then fails every later call) the
//! node stops taking writes — client writes get 507, replica stores are refused, so coordinators
//! hint them to other nodes — and leaves the membership gracefully, so every other node places
//! the keys elsewhere at once instead of waiting for the failure detector. It then tries to
//! reopen its stores with an exponential backoff (1 s to 30 s); opening commits, so it succeeds
//! once the disk takes writes again. Then it joins the membership again and anti-entropy brings
//! its replicas up to date. Nothing it acknowledged is lost: every acknowledged write was
//! committed before its acknowledgement, and redb's commits survive the failure.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::gossip::Gossip;
use crate::replica::service::Replica;
use crate::storage::Storage;

/// Watches the storage until the node shuts down (see the module docs).
pub(crate) async fn run(ctx: Context, storage: Arc<Storage>, replica: Replica, gossip: Gossip) {
    let shutdown = ctx.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = storage.failed() => {}
        }
        let why = storage.failure().unwrap_or_default();
        tracing::error!(
            "storage failed ({why}): refusing writes, leaving the cluster, retrying the store"
        );
        ctx.metrics.storage_failures.inc();
        ctx.metrics.storage_failed.set(1);
        gossip.leave().await;
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let (s, r) = (storage.clone(), replica.clone());
            let reopened = tokio::task::spawn_blocking(move || {
                s.reopen()?;
                r.hints.reopen().map_err(anyhow::Error::from)
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
            match reopened {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!("the store does not reopen yet: {e:#}");
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
        ctx.metrics.storage_failed.set(0);
        tracing::info!("storage works again: rejoining the cluster");
        gossip.rejoin();
    }
}
