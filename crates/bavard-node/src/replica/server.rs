//! The replica side of `/bavard/kv/1`: requests answered in order on each stream (the
//! coordinator reuses streams, see [`super::pool`]), each once it is durable.

use std::time::Duration;

use bavard_proto::store as pb;
use bavard_store::PutOutcome;
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream};

use super::KV_PROTOCOL;
use super::wire::{sync_request_from_pb, sync_response_to_pb, version_to_pb};
use crate::config::secs;
use crate::node::Node;
use crate::util::unix_ms;

/// Accepts inbound replica streams until the node shuts down.
pub(crate) async fn run(node: Node) {
    crate::inbound::accept(node, KV_PROTOCOL, |node, peer, stream| async move {
        serve(&node, peer, stream).await;
    })
    .await;
}

/// Answers the requests of one stream in order, each once it is durable, until the peer closes
/// it, it stays idle for `limits.inbound_idle_timeout_secs`, or it carried
/// `limits.max_requests_per_stream` requests. A request that takes longer than the request
/// timeout ends the stream unanswered.
async fn serve(node: &Node, peer: PeerId, mut stream: Stream) {
    let limits = &node.inner.config.limits;
    let idle = secs(limits.inbound_idle_timeout_secs).max(Duration::from_millis(100));
    let timeout = node
        .inner
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
                node.inner.metrics.reject("bad_frame");
                tracing::debug!(%peer, "bad replica request: {e}");
                break;
            }
        };
        let kind = match tokio::time::timeout(timeout, handle(node, peer, req)).await {
            Ok(Ok(kind)) => kind,
            Ok(Err(msg)) => {
                node.inner.metrics.reject("bad_replica_request");
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

async fn handle(node: &Node, peer: PeerId, req: pb::Request) -> Result<pb::response::Kind, String> {
    match req.kind {
        None => Err("empty request".into()),
        Some(pb::request::Kind::Store(store)) => store_batch(node, store).await,
        Some(kind) => {
            // Digest trees, listings and fetches: answered by the replica core, off the async
            // workers (they read the store).
            let req = sync_request_from_pb(kind).map_err(|e| e.to_string())?;
            let store = node.inner.store.clone();
            let config = node.sync_config();
            let resp = tokio::task::spawn_blocking(move || {
                bavard_replica::answer(req, &*store, &config, unix_ms())
            })
            .await
            .map_err(|e| format!("internal error: {e}"))?
            .map_err(|e| {
                tracing::debug!(%peer, "replica request refused: {e}");
                e.to_string()
            })?;
            Ok(sync_response_to_pb(resp))
        }
    }
}

fn rejected(error: String) -> pb::StoreResult {
    pb::StoreResult {
        outcome: pb::Outcome::Rejected as i32,
        current: None,
        error,
    }
}

fn outcome(o: pb::Outcome) -> pb::StoreResult {
    pb::StoreResult {
        outcome: o as i32,
        current: None,
        error: String::new(),
    }
}

/// Stores a batch of records (or hints for `hint_for`) durably, after checking each one's
/// clock; the records share group commits. One result per record, in order.
async fn store_batch(node: &Node, store: pb::StoreRequest) -> Result<pb::response::Kind, String> {
    let max = node.inner.config.replication.max_batch_records;
    if store.records.len() > max {
        return Err(format!(
            "{} records in one request, over the limit of {max}",
            store.records.len()
        ));
    }
    let hint_for = if store.hint_for.is_empty() {
        None
    } else {
        Some(
            PeerId::from_bytes(&store.hint_for)
                .map_err(|_| "invalid hint_for peer id".to_string())?,
        )
    };
    let now = unix_ms();
    let mut results: Vec<Option<pb::StoreResult>> = Vec::with_capacity(store.records.len());
    let mut valid = Vec::new();
    for r in store.records {
        let checked = super::wire::record_from_pb(r)
            .map_err(|e| e.to_string())
            .and_then(|record| super::check_clock(node, record, now));
        match checked {
            Ok(record) => {
                results.push(None);
                valid.push(record);
            }
            Err(e) => results.push(Some(rejected(e))),
        }
    }
    let stored: Vec<pb::StoreResult> = match hint_for {
        Some(owner) => match node.inner.hints.add_many(owner, valid.clone(), now) {
            Ok(()) => valid.iter().map(|_| outcome(pb::Outcome::Stored)).collect(),
            Err(e) => valid.iter().map(|_| rejected(e.clone())).collect(),
        },
        None => node
            .inner
            .committer
            .put_many(valid)
            .await
            .into_iter()
            .map(|o| match o {
                Ok(PutOutcome::Stored) => outcome(pb::Outcome::Stored),
                Ok(PutOutcome::Unchanged) => outcome(pb::Outcome::Unchanged),
                Ok(PutOutcome::Stale { current }) => pb::StoreResult {
                    outcome: pb::Outcome::Stale as i32,
                    current: Some(version_to_pb(&current)),
                    error: String::new(),
                },
                Ok(PutOutcome::Expired) => rejected("record already expired".into()),
                Err(e) => rejected(e.to_string()),
            })
            .collect(),
    };
    let mut stored = stored.into_iter();
    let results = results
        .into_iter()
        .map(|r| {
            r.or_else(|| stored.next())
                .unwrap_or_else(|| rejected("internal error".into()))
        })
        .collect();
    Ok(pb::response::Kind::Store(pb::StoreResponse { results }))
}
