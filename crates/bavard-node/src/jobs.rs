//! Periodic jobs: bootstrap, bucket refresh, re-replication, republishing and expiry
//! (anti-entropy and hint delivery run in tasks of their own: [`crate::replica`]).
//!
//! - Bootstrap: look up our own id (which fills the buckets near us), retried every few seconds
//!   until the routing table holds a peer, then repeated with every refresh.
//! - Refresh: every `refresh_interval`, a lookup for a random key in each bucket not looked up
//!   within the interval (Kademlia §2.3).
//! - Re-replication: every `replicate_interval`, each stored record is sent to the current
//!   closest nodes of its key, so records follow membership changes.
//! - Republish: every `republish_interval`, the records and provider records this node
//!   originated are written again (they would otherwise expire).
//! - Expiry: every `expire_interval`, expired records, providers and old tombstones are purged.

use bavard_store::RecordStore as _;
use std::time::{Duration, Instant};

use bavard_routing::Key;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::api::Consistency;
use crate::config::secs;
use crate::kad::lookup::LookupKind;
use crate::node::Node;
use crate::util::unix_ms;

/// Records re-replicated per page of the store scan.
const SCAN_PAGE: usize = 256;

pub(crate) async fn run(node: Node) {
    let cfg = node.inner.config.kad.clone();
    let shutdown = node.shutdown_signal();
    tokio::pin!(shutdown);
    let mut rng = StdRng::from_os_rng();

    // Bootstrap: retry quickly until we know someone (or there is nobody to know).
    let mut bootstrapped = node.inner.config.bootstrap.is_empty();
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
            if bootstrap(&node).await {
                bootstrapped = true;
            } else {
                retry = (retry * 2).min(Duration::from_secs(5));
            }
            continue;
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = refresh.tick() => {
                bootstrap(&node).await;
                refresh_buckets(&node, &mut rng).await;
            }
            _ = replicate.tick() => replicate_records(&node, false).await,
            _ = republish.tick() => {
                replicate_records(&node, true).await;
                republish_providers(&node).await;
            }
            _ = expire.tick() => {
                if let Err(e) = node.inner.store.expire(unix_ms()) {
                    tracing::warn!("expiry failed: {e}");
                }
                node.inner.refresh_gauges();
            }
        }
    }
}

fn interval(s: f64) -> Duration {
    secs(s).max(Duration::from_millis(50))
}

/// Looks up our own id; true when the routing table holds at least one peer afterwards.
async fn bootstrap(node: &Node) -> bool {
    let own = node.peer_id().to_bytes();
    if let Err(e) = node.lookup(&own, LookupKind::FindNode).await {
        tracing::debug!("bootstrap lookup failed: {e}");
    }
    let size = node.inner.table.lock().expect("table lock").len();
    if size > 0 {
        tracing::debug!(size, "bootstrapped");
    }
    size > 0
}

async fn refresh_buckets(node: &Node, rng: &mut StdRng) {
    let due = node
        .inner
        .table
        .lock()
        .expect("table lock")
        .buckets_due_for_refresh(Instant::now());
    for index in due {
        if let Err(e) = node.lookup_bucket(index, rng).await {
            tracing::debug!("refresh of bucket {index} failed: {e}");
        }
    }
}

/// Sends every stored record (or only those this node published) to its current replicas.
async fn replicate_records(node: &Node, own_only: bool) {
    let me = node.peer_id().to_bytes();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = match node
            .inner
            .store
            .scan(after.as_deref(), SCAN_PAGE, unix_ms())
        {
            Ok(p) => p,
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
            if let Err(e) = node.replicate_record(record, Consistency::One).await {
                tracing::debug!("re-replication failed: {e}");
            }
            if node.is_shutting_down() {
                return;
            }
        }
        if done {
            return;
        }
    }
}

async fn republish_providers(node: &Node) {
    let provided = match node.inner.store.provided(unix_ms()) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot list provided keys: {e}");
            return;
        }
    };
    for p in provided {
        if let Err(e) = node.provide(p.key).await {
            tracing::debug!("provider republish failed: {e}");
        }
    }
}

impl Node {
    /// A FIND_NODE walk into bucket `index` of our routing table.
    ///
    /// The wire carries pre-image keys that the receiver hashes, so we search for a random
    /// pre-image whose hash falls in the bucket (as libp2p-kad does for refreshes); a bucket
    /// that needs more than `2^16` tries (only reachable in networks of ~65k nodes and more) is
    /// walked with the closest miss instead.
    pub(crate) async fn lookup_bucket(
        &self,
        index: u8,
        rng: &mut StdRng,
    ) -> Result<(), crate::api::NodeError> {
        let mut best: Option<([u8; 32], u8)> = None;
        for _ in 0..(1u32 << 16) {
            let pre: [u8; 32] = rng.random();
            let Some(i) = Key::hash(&pre)
                .distance(&self.inner.local_key)
                .bucket_index()
            else {
                continue;
            };
            if i == index {
                best = Some((pre, i));
                break;
            }
            if best.is_none_or(|(_, b)| i.abs_diff(index) < b.abs_diff(index)) {
                best = Some((pre, i));
            }
        }
        let Some((pre, _)) = best else { return Ok(()) };
        self.lookup(&pre, LookupKind::FindNode).await.map(|_| ())
    }
}
