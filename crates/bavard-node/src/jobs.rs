//! Periodic jobs: bootstrap, bucket refresh, re-replication, republishing and expiry
//! (anti-entropy and hint delivery run in tasks of their own: [`crate::replica`]).
//!
//! - Bootstrap: look up our own id (which fills the buckets near us), retried every few seconds
//!   until the routing table holds a peer, then repeated with every refresh.
//! - Refresh: every `refresh_interval`, a lookup for a random key in each bucket not looked up
//!   within the interval (Kademlia §2.3).
//! - Re-replication: every `replicate_interval`, each stored record is sent to the current
//!   closest nodes of its key, so records follow membership changes (KV records to their
//!   replicas, DHT records to the k closest by PUT_VALUE).
//! - Republish: every `republish_interval`, the records and provider records this node
//!   originated are written again (they would otherwise expire).
//! - Expiry: every `expire_interval`, expired records, providers and old tombstones are purged.

use bavard_store::RecordStore as _;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::rngs::StdRng;

use crate::api::Consistency;
use crate::config::secs;
use crate::kad::client::Kad;
use crate::kad::lookup::LookupKind;
use crate::replica::service::Replica;
use crate::util::unix_ms;

/// Records re-replicated per page of the store scan.
const SCAN_PAGE: usize = 256;

/// Runs the jobs until the node shuts down.
pub(crate) async fn run(kad: Kad, replica: Replica) {
    let cfg = kad.ctx.config.kad.clone();
    let shutdown = kad.ctx.shutdown_signal();
    tokio::pin!(shutdown);
    let mut rng = StdRng::from_os_rng();

    // Bootstrap: retry quickly until we know someone (or there is nobody to know).
    let mut bootstrapped = kad.ctx.config.bootstrap.is_empty();
    let mut retry = Duration::from_millis(200);
    let start = tokio::time::Instant::now();
    let mut refresh = tokio::time::interval_at(
        start + interval(cfg.refresh_interval_secs),
        interval(cfg.refresh_interval_secs),
    );
    let mut replicate = tokio::time::interval_at(
        start + interval(cfg.replicate_interval_secs),
        interval(cfg.replicate_interval_secs),
    );
    let mut republish = tokio::time::interval_at(
        start + interval(cfg.republish_interval_secs),
        interval(cfg.republish_interval_secs),
    );
    let mut expire = tokio::time::interval_at(
        start + interval(cfg.expire_interval_secs),
        interval(cfg.expire_interval_secs),
    );
    for t in [&mut refresh, &mut replicate, &mut republish, &mut expire] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        if !bootstrapped {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(retry) => {}
            }
            if bootstrap(&kad).await {
                bootstrapped = true;
            } else {
                retry = (retry * 2).min(Duration::from_secs(5));
            }
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = refresh.tick() => {
                bootstrap(&kad).await;
                refresh_buckets(&kad, &mut rng).await;
            }
            _ = replicate.tick() => {
                replicate_records(&replica, false).await;
                replicate_dht_records(&kad, false).await;
            }
            _ = republish.tick() => {
                replicate_records(&replica, true).await;
                replicate_dht_records(&kad, true).await;
                republish_providers(&kad).await;
            }
            _ = expire.tick() => {
                for store in [&kad.storage.store, &kad.storage.dht] {
                    match store.expire(unix_ms()) {
                        Ok(stats) if stats.corrupt_rows_skipped > 0 => {
                            kad.ctx.metrics.store_corrupt_rows.inc_by(stats.corrupt_rows_skipped as u64);
                            tracing::warn!(rows = stats.corrupt_rows_skipped, "expiry skipped corrupt rows");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!("expiry failed: {e}"),
                    }
                }
                kad.ctx.metrics.records_stored.set(kad.storage.len() as i64);
            }
        }
    }
}

fn interval(s: f64) -> Duration {
    secs(s).max(Duration::from_millis(50))
}

/// Looks up our own id; true when the routing table holds at least one peer afterwards.
async fn bootstrap(kad: &Kad) -> bool {
    // Names are resolved again each time: a seed may have come back with a new address.
    if kad.ctx.config.bootstrap.iter().any(is_dns) {
        crate::node::dial_bootstrap(&kad.ctx, false).await;
    }
    let own = kad.ctx.peer_id.to_bytes();
    if let Err(e) = kad.lookup(&own, LookupKind::FindNode).await {
        tracing::debug!("bootstrap lookup failed: {e}");
    }
    let size = kad.ctx.table.lock().expect("table lock").len();
    if size > 0 {
        tracing::debug!(size, "bootstrapped");
    }
    size > 0
}

fn is_dns(addr: &libp2p::Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    matches!(
        addr.iter().next(),
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_))
    )
}

async fn refresh_buckets(kad: &Kad, rng: &mut StdRng) {
    let due = kad
        .ctx
        .table
        .lock()
        .expect("table lock")
        .buckets_due_for_refresh(Instant::now());
    for index in due {
        if let Err(e) = kad.lookup_bucket(index, rng).await {
            tracing::debug!("refresh of bucket {index} failed: {e}");
        }
    }
}

/// Sends every stored record (or only those this node published) to its current replicas.
async fn replicate_records(replica: &Replica, own_only: bool) {
    let me = replica.ctx.peer_id.to_bytes();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = match replica
            .storage
            .store
            .scan(after.as_deref(), SCAN_PAGE, unix_ms())
        {
            Ok(p) => p,
            Err(bavard_store::StoreError::Corrupt { key, .. }) => {
                // One bad row must not stop the rest: skip past it, count it.
                replica.ctx.metrics.store_corrupt_rows.inc();
                tracing::warn!("skipping a corrupt record row (key {})", hex::encode(&key));
                after = Some(key);
                continue;
            }
            Err(e) => {
                tracing::warn!("store scan failed: {e}");
                return;
            }
        };
        let Some(last) = page.last() else { return };
        after = Some(last.key.clone());
        let done = page.len() < SCAN_PAGE;
        for record in page {
            if own_only && record.publisher.as_deref() != Some(me.as_slice()) {
                continue;
            }
            if let Err(e) = replica.write(record, Consistency::One).await {
                tracing::debug!("re-replication failed: {e}");
            }
            if replica.ctx.is_shutting_down() {
                return;
            }
        }
        if done {
            return;
        }
    }
}

/// Sends every DHT record (or only those this node published) to the current k closest nodes
/// of its key, as libp2p-kad replicates and republishes.
async fn replicate_dht_records(kad: &Kad, own_only: bool) {
    let me = kad.ctx.peer_id.to_bytes();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = match kad.storage.dht.scan(after.as_deref(), SCAN_PAGE, unix_ms()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("DHT store scan failed: {e}");
                return;
            }
        };
        let Some(last) = page.last() else { return };
        after = Some(last.key.clone());
        let done = page.len() < SCAN_PAGE;
        for record in page {
            if own_only && record.publisher.as_deref() != Some(me.as_slice()) {
                continue;
            }
            if let Err(e) = kad.replicate_dht(&record).await {
                tracing::debug!("DHT record replication failed: {e}");
            }
            if kad.ctx.is_shutting_down() {
                return;
            }
        }
        if done {
            return;
        }
    }
}

async fn republish_providers(kad: &Kad) {
    let provided = match kad.storage.store.provided(unix_ms()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot list provided keys: {e}");
            return;
        }
    };
    for p in provided {
        if let Err(e) = kad.provide(p.key).await {
            tracing::debug!("provider republish failed: {e}");
        }
    }
}
