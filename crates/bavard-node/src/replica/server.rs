//! The replica side of `/bavard/kv/1`: requests answered in order on each stream (the
//! coordinator reuses streams, see [`super::pool`]), each once it is durable.

use bavard_store::RecordStore as _;
use std::time::Duration;

use bavard_proto::store as pb;
use bavard_store::{HlcTimestamp, PutOutcome};
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream};

use super::KV_PROTOCOL;
use super::wire::{record_to_pb, version_to_pb};
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
    let limits = &node.inner.config.replication;
    match req.kind {
        None => Err("empty request".into()),
        Some(pb::request::Kind::Store(store)) => {
            if store.records.len() > limits.max_batch_records {
                return Err(format!(
                    "{} records in one request, over the limit of {}",
                    store.records.len(),
                    limits.max_batch_records
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
            let mut results = Vec::with_capacity(store.records.len());
            for r in store.records {
                results.push(store_one(node, r, hint_for).await);
            }
            Ok(pb::response::Kind::Store(pb::StoreResponse { results }))
        }
        Some(pb::request::Kind::Fetch(fetch)) => {
            if fetch.keys.len() > limits.max_batch_records {
                return Err(format!(
                    "{} keys in one request, over the limit of {}",
                    fetch.keys.len(),
                    limits.max_batch_records
                ));
            }
            let now = unix_ms();
            let mut records = Vec::new();
            for key in fetch.keys {
                match node.inner.store.get(&key, now) {
                    Ok(Some(r)) => records.push(record_to_pb(&r)),
                    Ok(None) => {}
                    Err(e) => return Err(format!("storage error: {e}")),
                }
            }
            Ok(pb::response::Kind::Fetch(pb::FetchResponse { records }))
        }
        Some(pb::request::Kind::Digest(digest)) => {
            let theirs: Vec<u64> = digest.buckets;
            if theirs.len() != super::antientropy::BUCKETS {
                return Err(format!(
                    "a digest has {} buckets, got {}",
                    super::antientropy::BUCKETS,
                    theirs.len()
                ));
            }
            let resp = super::antientropy::answer_digest(node, peer, &theirs)?;
            Ok(pb::response::Kind::Digest(resp))
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

/// Stores one record (or a hint for `hint_for`), durably, after checking its clock.
async fn store_one(node: &Node, r: pb::Record, hint_for: Option<PeerId>) -> pb::StoreResult {
    let record = match super::wire::record_from_pb(r) {
        Ok(r) => r,
        Err(e) => return rejected(e.to_string()),
    };
    let now = unix_ms();
    // A version far ahead of our clock would win every future LWW comparison: refuse it.
    if let Err(e) = node
        .inner
        .hlc
        .lock()
        .expect("hlc lock")
        .update(HlcTimestamp::from_u64(record.version.hlc), now)
    {
        return rejected(e.to_string());
    }
    if let Some(owner) = hint_for {
        return match node.inner.hints.add(owner, record, now) {
            Ok(()) => pb::StoreResult {
                outcome: pb::Outcome::Stored as i32,
                current: None,
                error: String::new(),
            },
            Err(e) => rejected(e),
        };
    }
    match node.inner.committer.put(record).await {
        Ok(PutOutcome::Stored) => pb::StoreResult {
            outcome: pb::Outcome::Stored as i32,
            current: None,
            error: String::new(),
        },
        Ok(PutOutcome::Unchanged) => pb::StoreResult {
            outcome: pb::Outcome::Unchanged as i32,
            current: None,
            error: String::new(),
        },
        Ok(PutOutcome::Stale { current }) => pb::StoreResult {
            outcome: pb::Outcome::Stale as i32,
            current: Some(version_to_pb(&current)),
            error: String::new(),
        },
        Ok(PutOutcome::Expired) => rejected("record already expired".into()),
        Err(e) => rejected(e.to_string()),
    }
}
