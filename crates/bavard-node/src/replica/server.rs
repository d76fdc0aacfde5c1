//! The replica side of `/bavard/kv/1`: requests answered in order on each stream (the
//! coordinator reuses streams, see [`super::pool`]), each once it is durable.

use std::time::Duration;

use bavard_proto::store as pb;
use bavard_replica::{Request, Response, StoreOutcome};
use bavard_store::{PutOutcome, Record};
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream};

use super::KV_PROTOCOL;
use super::wire::{request_from_pb, response_to_pb};
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
    let kind = req.kind.ok_or("empty request")?;
    let req = request_from_pb(kind).map_err(|e| e.to_string())?;
    let resp = match req {
        Request::Store { records, hint_for } => store_batch(node, records, hint_for).await?,
        req => {
            // Fetches and anti-entropy requests: answered by the replica core, off the async
            // workers (they read the store).
            let store = node.inner.store.clone();
            let config = node.sync_config();
            tokio::task::spawn_blocking(move || {
                bavard_replica::answer(req, &*store, &config, unix_ms())
            })
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

/// Stores a batch of records (or hints for `hint_for`) durably, after checking each one's
/// clock; the records share group commits. One outcome per record, in order.
async fn store_batch(
    node: &Node,
    records: Vec<Record>,
    hint_for: Option<PeerId>,
) -> Result<Response, String> {
    let max = node.inner.config.replication.max_batch_records;
    if records.len() > max {
        return Err(format!(
            "{} records in one request, over the limit of {max}",
            records.len()
        ));
    }
    let now = unix_ms();
    let mut results: Vec<Option<StoreOutcome>> = Vec::with_capacity(records.len());
    let mut valid = Vec::new();
    for record in records {
        match super::check_clock(node, record, now) {
            Ok(record) => {
                results.push(None);
                valid.push(record);
            }
            Err(e) => results.push(Some(StoreOutcome::Rejected(e))),
        }
    }
    let stored: Vec<StoreOutcome> = match hint_for {
        Some(owner) => {
            let count = valid.len();
            let outcome = match node.inner.hints.add_many(owner, valid, now) {
                Ok(()) => StoreOutcome::Stored,
                Err(e) => StoreOutcome::Rejected(e),
            };
            vec![outcome; count]
        }
        None => node
            .inner
            .committer
            .put_many(valid)
            .await
            .into_iter()
            .map(|o| match o {
                Ok(PutOutcome::Stored) => StoreOutcome::Stored,
                Ok(PutOutcome::Unchanged) => StoreOutcome::Unchanged,
                Ok(PutOutcome::Stale { current }) => StoreOutcome::Stale { current },
                Ok(PutOutcome::Expired) => StoreOutcome::Rejected("record already expired".into()),
                Err(e) => StoreOutcome::Rejected(e.to_string()),
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
