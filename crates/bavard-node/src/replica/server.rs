//! The replica side of `/bavard/kv/1`: requests answered in order on each stream (the
//! coordinator reuses streams, see [`super::pool`]), each once it is durable.

use std::time::Duration;

use bavard_proto::store as pb;
use bavard_replica::{Request, Response, StoreOutcome};
use bavard_store::{PutOutcome, Record};
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream};

use super::KV_PROTOCOL;
use super::commit::Priority;
use super::service::Replica;
use super::wire::{request_from_pb, response_to_pb};
use crate::config::secs;
use crate::context::Slots;
use crate::inbound::Limit;
use crate::metrics::Stage;
use crate::util::unix_ms;

/// Serves `/bavard/kv/1` until the node shuts down; inbound streams count against `slots`
/// (shared with Kademlia).
pub(crate) async fn run(replica: Replica, slots: Slots) {
    let limit = Limit {
        slots,
        max_per_peer: replica.ctx.config.limits.max_inbound_streams_per_peer,
        reject_reason: "too_many_streams",
    };
    let ctx = replica.ctx.clone();
    crate::inbound::accept(ctx, KV_PROTOCOL, limit, move |peer, stream| {
        let replica = replica.clone();
        async move {
            // Only cluster members hold replicas or send replica requests.
            if crate::admission::protocol::admit_stream(&replica.ctx, peer, "replica").await {
                serve(&replica, peer, stream).await;
            }
        }
    })
    .await;
}

/// Answers the requests of one stream in order, each once it is durable, until the peer closes
/// it, it stays idle for `limits.inbound_idle_timeout_secs`, or it carried
/// `limits.max_requests_per_stream` requests. A request that takes longer than the request
/// timeout ends the stream unanswered.
async fn serve(node: &Replica, peer: PeerId, mut stream: Stream) {
    let limits = &node.ctx.config.limits;
    let idle = secs(limits.inbound_idle_timeout_secs).max(Duration::from_millis(100));
    let timeout = node
        .ctx
        .config
        .kad
        .request_timeout()
        .max(Duration::from_secs(1));
    for _ in 0..limits.max_requests_per_stream {
        let read = crate::wire::read_message(&mut stream, limits.max_message_size);
        let req: pb::Request = match tokio::time::timeout(idle, read).await {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Ok(Some(r))) => r,
            Ok(Err(e)) => {
                node.ctx.metrics.reject("bad_frame");
                tracing::debug!(%peer, "bad replica request: {e}");
                break;
            }
        };
        if !node.ctx.admission.is_admitted(&peer) {
            // Revoked since the stream opened.
            node.ctx.metrics.reject("not_admitted");
            break;
        }

        // A store of large records answers once their blobs are fetched: more time.
        let blob = super::large::largest_blob(req.kind.as_ref());
        let timeout = timeout + super::large::transfer_allowance(blob);
        let started = std::time::Instant::now();
        let handled = tokio::time::timeout(timeout, handle(node, peer, req)).await;
        node.ctx.metrics.stages.since(Stage::replica_serve, started);
        let kind = match handled {
            Ok(Ok(kind)) => kind,
            Ok(Err(msg)) => {
                node.ctx.metrics.reject("bad_replica_request");
                pb::response::Kind::Error(msg)
            }
            Err(_) => {
                tracing::debug!(%peer, "replica request timed out");
                break;
            }
        };
        let resp = pb::Response { kind: Some(kind) };
        if crate::wire::write_message(&mut stream, &resp)
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = stream.close().await;
}

async fn handle(
    node: &Replica,
    peer: PeerId,
    req: pb::Request,
) -> Result<pb::response::Kind, String> {
    let kind = req.kind.ok_or("empty request")?;
    if super::wire::is_paxos_request(&kind) {
        // Compare-and-set rounds: the acceptor (see `super::paxos`).
        node.pace.foreground();
        return node.serve_paxos_pb(peer, kind).await;
    }
    let req = request_from_pb(kind).map_err(|e| e.to_string())?;
    if is_foreground(&req) {
        node.pace.foreground();
    }
    let resp = match req {
        Request::Store { records, hint_for } => node.store(records, hint_for, Some(peer)).await?,
        Request::Fetch { ref keys } if keys.len() <= INLINE_FETCH_KEYS => {
            // A coordinator's read: a few point lookups, answered on the async worker. A hop
            // to the blocking pool costs more than the lookups (two thread wake-ups per read on
            // a busy machine).
            let config = node.sync_config();
            bavard_replica::answer(req, &*node.storage.store, &config, unix_ms()).map_err(|e| {
                tracing::debug!(%peer, "replica request refused: {e}");
                e.to_string()
            })?
        }
        req => {
            // Anti-entropy requests and large fetches: answered by the replica core, off the
            // async workers (they read many keys or hash ranges of the store), on the
            // low-priority background threads.
            let store = node.storage.store.clone();
            let config = node.sync_config();
            node.background
                .run(move || bavard_replica::answer(req, &*store, &config, unix_ms()))
                .await
                .map_err(|e| format!("internal error: {e}"))?
                .map_err(|e| {
                    tracing::debug!(%peer, "replica request refused: {e}");
                    e.to_string()
                })?
        }
    };
    Ok(response_to_pb(resp))
}

/// Fetches of at most this many keys are answered on the async worker (see [`handle`]).
const INLINE_FETCH_KEYS: usize = 4;

/// Whether `req` is a coordinator's (a client's write or read, or a read repair): one record
/// to store as a replica, or one key to fetch. Anti-entropy and hint batches carry more, and
/// their level-1 to level-3 requests none; a hint batch of one is rare enough to be counted too.
fn is_foreground(req: &Request<PeerId>) -> bool {
    match req {
        Request::Store { records, hint_for } => hint_for.is_none() && records.len() == 1,
        Request::Fetch { keys } => keys.len() == 1,
        _ => false,
    }
}

impl Replica {
    /// Stores a batch of records (or hints for `hint_for`) durably, after checking each one's
    /// clock; the records share group commits. One outcome per record, in order. The replica
    /// server and the coordinator's own share of a write both store through it.
    ///
    /// A record referencing a blob (a large value) is stored, or kept as a hint, only once
    /// this node holds the blob (fetched from `from`, the sender, or the DHT's providers; see
    /// [`super::large`]); one whose blob cannot be had is rejected.
    pub(crate) async fn store(
        &self,
        records: Vec<Record>,
        hint_for: Option<PeerId>,
        from: Option<PeerId>,
    ) -> Result<Response, String> {
        let node = self;
        let max = node.ctx.config.replication.max_batch_records;
        if records.len() > max {
            return Err(format!(
                "{} records in one request, over the limit of {max}",
                records.len()
            ));
        }
        if let Some(e) = node.storage.failure() {
            // The coordinator hints these to another node.
            let refusal = StoreOutcome::Rejected(format!("this replica's storage failed: {e}"));
            return Ok(Response::Store {
                results: vec![refusal; records.len()],
            });
        }
        // A client's write stores one record; repair traffic (anti-entropy, hint delivery)
        // comes in batches and waits behind client writes at the committer.
        let priority = if records.len() == 1 {
            Priority::Foreground
        } else {
            Priority::Background
        };
        let now = unix_ms();
        let mut results: Vec<Option<StoreOutcome>> = Vec::with_capacity(records.len());
        let mut valid = Vec::new();
        for record in records {
            match node.storage.check_clock(record, now) {
                Ok(record) => {
                    results.push(None);
                    valid.push(record);
                }
                Err(e) => results.push(Some(StoreOutcome::Rejected(e))),
            }
        }
        let stored: Vec<StoreOutcome> = match hint_for {
            Some(owner) => {
                // The hint holder holds the blobs of large records too, until delivery: its
                // acknowledgement counts toward W like a replica's.
                let held = self.hold_all(&valid, from).await;
                let mut outcomes = Vec::with_capacity(valid.len());
                let mut keep = Vec::new();
                let mut blobs = Vec::new();
                for (record, held) in valid.into_iter().zip(held) {
                    match held {
                        Ok(blob) => {
                            outcomes.push(None);
                            blobs.push(blob);
                            keep.push(record);
                        }
                        Err(e) => outcomes.push(Some(StoreOutcome::Rejected(e))),
                    }
                }
                // A hint write is a commit of its own (fsync): off the async workers.
                let replica = self.clone();
                let added = if keep.is_empty() {
                    Ok(())
                } else {
                    tokio::task::spawn_blocking(move || replica.hints.add_many(owner, keep, now))
                        .await
                        .unwrap_or_else(|e| Err(format!("hint write failed: {e}")))
                };
                self.settle_hints(&blobs, added.is_ok()).await;
                let outcome = match added {
                    Ok(()) => StoreOutcome::Stored,
                    Err(e) => StoreOutcome::Rejected(e),
                };
                outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| outcome.clone()))
                    .collect()
            }
            None => node
                .commit_records(valid, from, priority)
                .await
                .into_iter()
                .map(|o| match o {
                    Ok(PutOutcome::Stored) => StoreOutcome::Stored,
                    Ok(PutOutcome::Unchanged) => StoreOutcome::Unchanged,
                    Ok(PutOutcome::Stale { current }) => StoreOutcome::Stale { current },
                    Ok(PutOutcome::Expired) => {
                        StoreOutcome::Rejected("record already expired".into())
                    }
                    Err(e) => StoreOutcome::Rejected(e),
                })
                .collect(),
        };
        let mut stored = stored.into_iter();
        let results = results
            .into_iter()
            .map(|r| {
                r.or_else(|| stored.next())
                    .unwrap_or_else(|| StoreOutcome::Rejected("internal error".into()))
            })
            .collect();
        Ok(Response::Store { results })
    }
}
