//! The anti-entropy driver: runs the replica core's rounds ([`bavard_replica::sync`]) with this
//! node's partners over `/bavard/kv/1`.
//!
//! A round compares a three-level hash tree of the leaves two replicas share, lists the entries
//! of the leaves that differ, pulls what the peer has newer and pushes what it lacks, every
//! message bounded in bytes below the frame limit. Scheduling:
//!
//! - every `replication.anti_entropy_interval_secs`, a round with the next partner in turn;
//! - a partner seen for the first time — this node just started, or the partner joined or came
//!   back after being declared dead — gets a round at once;
//! - a round that moved many keys is followed at once by a round with the next partner, so a
//!   replica that missed writes pulls them at the speed of the network and the disk (paced by
//!   `replication.sync_max_bytes_per_sec` so client requests keep their latency) rather than
//!   one round per interval.
//!
//! Failed rounds are counted in `bavard_anti_entropy_failures_total{reason}` and logged at warn
//! once per peer and reason. How far behind this node is (keys known newer elsewhere and not yet
//! stored, differing ranges not yet compared) is in `/v1/status` and two gauges.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bavard_replica::{Initiator, Step, SyncStats};
use bavard_store::PutOutcome;
use libp2p::PeerId;

use super::progress::SyncView;
use super::service::Replica;
use super::wire::{WireError, request_to_pb, response_from_pb};
use crate::config::secs;
use crate::request::RequestError;
use crate::util::unix_ms;

/// A round that moved at least this many keys is followed at once by another.
const CATCH_UP_THRESHOLD: usize = 256;

/// Most (peer, reason) pairs remembered for warn-once logging.
const MAX_WARNED: usize = 1024;

/// Why a round failed, as a metric label.
fn reason(e: &RequestError) -> &'static str {
    match e {
        RequestError::Timeout => "timeout",
        RequestError::Dial(_) | RequestError::Unsupported | RequestError::SelfRequest => {
            "unreachable"
        }
        RequestError::Io(_) => "stream",
        RequestError::Protocol(_) => "protocol",
    }
}

struct RoundError {
    reason: &'static str,
    message: String,
}

impl RoundError {
    fn new(reason: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            reason,
            message: message.to_string(),
        }
    }
}

/// The view for the current placement, recomputed (off the async workers) when it changed.
async fn view(node: &Replica) -> Arc<SyncView> {
    let placement = node.placement_view().0;
    if let Some(v) = node.sync.view.lock().expect("view lock").as_ref()
        && Arc::ptr_eq(&v.placement, &placement)
    {
        return v.clone();
    }
    let me = node.ctx.peer_id;
    let p = placement.clone();
    let shared = node
        .background
        .run(move || p.shared_with(&me))
        .await
        .unwrap_or_default();
    let view = Arc::new(SyncView { placement, shared });
    *node.sync.view.lock().expect("view lock") = Some(view.clone());
    view
}

/// Runs anti-entropy rounds until the node shuts down (see the module docs for the schedule).
pub(crate) async fn run(node: Replica) {
    let every =
        secs(node.ctx.config.replication.anti_entropy_interval_secs).max(Duration::from_millis(50));
    let check = every.min(Duration::from_secs(1));
    let shutdown = node.ctx.shutdown_signal();
    tokio::pin!(shutdown);
    let mut seen: HashSet<PeerId> = HashSet::new();
    let mut next_periodic = tokio::time::Instant::now() + every;
    let mut turn = 0usize;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(check) => {}
        }
        let view = view(&node).await;
        let mut partners = view.partners();
        partners.sort();
        let mut queue: VecDeque<PeerId> = partners
            .iter()
            .filter(|p| !seen.contains(p))
            .copied()
            .collect();
        // Forgetting departed partners makes them fresh again when they come back.
        seen = partners.iter().copied().collect();
        let now = tokio::time::Instant::now();
        if now >= next_periodic {
            next_periodic = now + every;
            if !partners.is_empty() && queue.is_empty() {
                queue.push_back(partners[turn % partners.len()]);
                turn += 1;
            }
        }
        while let Some(peer) = queue.pop_front() {
            if node.ctx.is_shutting_down() {
                return;
            }
            let moved = match round_logged(&node, &view, peer).await {
                Some(stats) => stats.keys_pulled + stats.keys_pushed,
                None => 0,
            };
            if moved >= CATCH_UP_THRESHOLD && queue.is_empty() && !partners.is_empty() {
                queue.push_back(partners[turn % partners.len()]);
                turn += 1;
            }
        }
    }
}

/// One round with `peer` now, with the current view; returns the keys exchanged.
pub(crate) async fn round_now(node: &Replica, peer: PeerId) -> Result<usize, String> {
    let view = view(node).await;
    round(node, &view, peer)
        .await
        .map(|s| s.keys_pulled + s.keys_pushed)
        .map_err(|e| e.message)
}

/// A round with its figures and failures recorded.
async fn round_logged(node: &Replica, view: &SyncView, peer: PeerId) -> Option<SyncStats> {
    let metrics = &node.ctx.metrics;
    match round(node, view, peer).await {
        Ok(stats) => {
            metrics.anti_entropy_rounds.inc();
            metrics
                .anti_entropy_keys
                .inc_by((stats.keys_pulled + stats.keys_pushed) as u64);
            if stats.keys_pulled + stats.keys_pushed > 0 {
                tracing::debug!(
                    %peer,
                    pulled = stats.keys_pulled,
                    pushed = stats.keys_pushed,
                    leaves = stats.leaves_differing,
                    requests = stats.requests,
                    "anti-entropy round"
                );
            }
            Some(stats)
        }
        Err(e) => {
            metrics.anti_entropy_failure(e.reason);
            let first = {
                let mut warned = node.sync.warned.lock().expect("warned lock");
                if warned.len() >= MAX_WARNED {
                    warned.clear();
                }
                warned.insert((peer, e.reason))
            };
            if first {
                tracing::warn!(%peer, reason = e.reason, "anti-entropy round failed: {} (further failures of this kind with this peer are logged at debug)", e.message);
            } else {
                tracing::debug!(%peer, reason = e.reason, "anti-entropy round failed: {}", e.message);
            }
            None
        }
    }
}

async fn round(node: &Replica, view: &SyncView, peer: PeerId) -> Result<SyncStats, RoundError> {
    let init = Initiator::with_leaves(
        view.placement.clone(),
        node.ctx.peer_id,
        peer,
        view.leaves_with(&peer),
        node.sync_config(),
    );
    let result = drive(node, init, peer).await;
    if result.is_ok() {
        // A failed round leaves its last figures: the keys still known to be behind.
        node.sync
            .progress
            .lock()
            .expect("progress lock")
            .remove(&peer);
        node.refresh_sync_gauges();
    }
    result
}

async fn drive(
    node: &Replica,
    mut init: Initiator<PeerId>,
    peer: PeerId,
) -> Result<SyncStats, RoundError> {
    loop {
        // Counted from before the step: a push's records are counted when it is built.
        let before = init.stats().bytes;
        // The step reads the store (digests, a leaf's index, records to push): off the async
        // workers, on the low-priority background threads.
        let store = node.storage.store.clone();
        let step;
        (init, step) = node
            .background
            .run(move || {
                let step = init.next(&*store, unix_ms());
                (init, step)
            })
            .await
            .map_err(|e| RoundError::new("internal", e))?;
        match step.map_err(|e| RoundError::new("storage", e))? {
            Step::Send(req) => {
                let resp = node
                    .request(peer, request_to_pb(req))
                    .await
                    .map_err(|e| RoundError::new(reason(&e), e))?;
                let resp = response_from_pb(resp).map_err(|e| match e {
                    WireError::Refused(m) => RoundError::new("refused", m),
                    e => RoundError::new("protocol", e),
                })?;
                init.handle_response(resp)
                    .map_err(|e| RoundError::new("protocol", e))?;
                let bytes = init.stats().bytes - before;
                node.ctx.metrics.anti_entropy_bytes.inc_by(bytes as u64);
                node.pace.take(bytes).await;
            }
            Step::Apply(records) => {
                let now = unix_ms();
                let offered = records.len();
                let valid: Vec<_> = records
                    .into_iter()
                    .filter_map(|r| node.storage.check_clock(r, now).ok())
                    .collect();
                if valid.len() < offered {
                    node.ctx.metrics.reject("future_version");
                }
                // A large value's record is applied only once its blob is here (fetched from
                // the partner first); one that cannot be is retried by the next round.
                let stored = node
                    .commit_records(
                        valid,
                        Some(peer),
                        crate::replica::commit::Priority::Background,
                    )
                    .await
                    .into_iter()
                    .filter(|o| {
                        matches!(
                            o,
                            Ok(PutOutcome::Stored
                                | PutOutcome::Unchanged
                                | PutOutcome::Stale { .. })
                        )
                    })
                    .count();
                init.applied(stored);
            }
            Step::Done(stats) => return Ok(stats),
        }
        node.sync
            .progress
            .lock()
            .expect("progress lock")
            .insert(peer, (init.keys_behind(), init.leaves_pending()));
        node.refresh_sync_gauges();
    }
}
