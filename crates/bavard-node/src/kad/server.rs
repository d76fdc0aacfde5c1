//! The inbound side of `/ipfs/kad/1.0.0`: accepts streams, serves requests.
//!
//! One stream may carry several requests in sequence (the spec requires it; go-libp2p reuses
//! streams). Each peer may hold at most `max_inbound_streams_per_peer` streams at once and a
//! stream serves at most `max_requests_per_stream` requests; an idle stream is closed. Oversized,
//! truncated or malformed frames and invalid requests drop the stream; the first offence of a peer
//! is logged at warn level, the rest at debug, so a flood cannot flood the log.

use bavard_store::RecordStore as _;
use std::time::Duration;

use bavard_proto::kad as pb;
use bavard_routing::Key;
use bavard_store::{ProviderRecord, PutOutcome};
use futures::AsyncWriteExt as _;
use libp2p::{Multiaddr, PeerId, Stream};

use super::client::Kad;
use crate::config::secs;
use crate::context::Slots;
use crate::inbound::Limit;
use crate::kad::lookup::to_wire;
use crate::kad::{KAD_PROTOCOL, KadPeer, Request, Response};
use crate::metrics::{RequestKind, RequestLabels};
use crate::util::unix_ms;

/// Serves `/ipfs/kad/1.0.0` until the node shuts down; inbound streams count against `slots`
/// (shared with the replica protocol).
pub(crate) async fn run(kad: Kad, slots: Slots) {
    let limit = Limit {
        slots,
        max_per_peer: kad.ctx.config.limits.max_inbound_streams_per_peer,
        reject_reason: "too_many_streams",
    };
    let ctx = kad.ctx.clone();
    crate::inbound::accept(ctx, KAD_PROTOCOL, limit, move |peer, stream| {
        let kad = kad.clone();
        async move { serve_stream(&kad, peer, stream).await }
    })
    .await;
}

async fn serve_stream(node: &Kad, peer: PeerId, mut stream: Stream) {
    let limits = &node.ctx.config.limits;
    let idle = secs(limits.inbound_idle_timeout_secs).max(Duration::from_millis(100));
    for _ in 0..limits.max_requests_per_stream {
        let msg = match tokio::time::timeout(
            idle,
            crate::wire::read_message::<pb::Message, _>(&mut stream, limits.max_message_size),
        )
        .await
        {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Ok(Some(msg))) => msg,
            Ok(Err(e)) => {
                node.ctx.metrics.reject("bad_frame");
                node.ctx.warn_once(peer, &e.to_string());
                break;
            }
        };
        node.ctx
            .metrics
            .bytes_in
            .inc_by(prost::Message::encoded_len(&msg) as u64);
        if !node.ctx.admit_request(peer) {
            break;
        }
        let key = msg.key.clone();
        let request = match Request::from_pb(msg, &peer, node.ctx.config.store.max_key_size) {
            Ok(r) => r,
            Err(e) => {
                node.ctx.metrics.reject("bad_request");
                node.ctx.warn_once(peer, &e.to_string());
                break;
            }
        };
        let Some(response) = handle(node, peer, request).await else {
            continue;
        };
        match crate::wire::write_message(&mut stream, &response.to_pb(&key)).await {
            Ok(n) => {
                node.ctx.metrics.bytes_out.inc_by(n as u64);
            }
            Err(_) => break,
        }
    }
    let _ = stream.close().await;
}

fn count(node: &Kad, kind: RequestKind) {
    node.ctx
        .metrics
        .requests_served
        .get_or_create(&RequestLabels { kind })
        .inc();
}

/// The closest peers we know to `key`, excluding the requester.
fn closer_peers(node: &Kad, key: &[u8], requester: &PeerId) -> Vec<KadPeer> {
    let n = node
        .ctx
        .config
        .kad
        .k
        .min(node.ctx.config.limits.max_peers_per_response);
    let entries = node
        .ctx
        .table
        .lock()
        .expect("table lock")
        .closest(&Key::hash(key), n + 1);
    entries
        .into_iter()
        .filter(|e| &e.peer != requester)
        .take(n)
        .map(|e| {
            let mut addrs = node.ctx.book.get(&e.peer);
            if addrs.is_empty() {
                addrs = e.value.clone();
            }
            KadPeer {
                id: e.peer,
                addrs,
                connected: false,
            }
        })
        .collect()
}

/// Answers one request; `None` for requests without a response (ADD_PROVIDER).
async fn handle(node: &Kad, peer: PeerId, request: Request) -> Option<Response> {
    let now = unix_ms();
    let store = &node.storage.store;
    match request {
        Request::Ping => {
            count(node, RequestKind::Ping);
            Some(Response::Ping)
        }
        Request::FindNode { key } => {
            count(node, RequestKind::FindNode);
            Some(Response::FindNode {
                closer: closer_peers(node, &key, &peer),
            })
        }
        Request::GetValue { key } => {
            count(node, RequestKind::GetValue);
            // DHT records only: the KV store is never served through Kademlia.
            let record = match node.storage.dht.get(&key, now) {
                Ok(Some(r)) if !r.is_tombstone() => Some(to_wire(&r, now)),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!("store read failed: {e}");
                    None
                }
            };
            Some(Response::GetValue {
                record,
                closer: closer_peers(node, &key, &peer),
            })
        }
        Request::PutValue { record } => {
            count(node, RequestKind::PutValue);
            // Into the DHT record store, validated by namespace: never the KV store.
            let stored = node
                .store_dht(
                    record.key.clone(),
                    record.value.clone(),
                    peer,
                    record.publisher,
                    record.ttl_secs,
                )
                .await;
            match stored {
                Ok(PutOutcome::Stored | PutOutcome::Unchanged) => {
                    Some(Response::PutValue { record })
                }
                Ok(outcome) => {
                    // An older signed record, or an expired one: not stored, not echoed.
                    node.ctx.metrics.reject("put_not_newer");
                    tracing::debug!(%peer, "PUT_VALUE not stored: {outcome:?}");
                    None
                }
                Err(e) => {
                    // The spec has no error response: not echoing tells the writer it failed.
                    node.ctx.metrics.reject("put_rejected");
                    tracing::debug!(%peer, "PUT_VALUE rejected: {e}");
                    None
                }
            }
        }
        Request::GetProviders { key } => {
            count(node, RequestKind::GetProviders);
            let providers = store
                .providers(&key, now)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    let id = PeerId::from_bytes(&p.provider).ok()?;
                    let addrs = p
                        .addrs
                        .into_iter()
                        .filter_map(|a| Multiaddr::try_from(a).ok())
                        .collect();
                    Some(KadPeer {
                        id,
                        addrs,
                        connected: false,
                    })
                })
                .collect();
            Some(Response::GetProviders {
                providers,
                closer: closer_peers(node, &key, &peer),
            })
        }
        Request::AddProvider { key, provider } => {
            count(node, RequestKind::AddProvider);
            let ttl_ms = secs(node.ctx.config.kad.provider_ttl_secs).as_millis() as u64;
            let mut addrs = provider.addrs;
            if addrs.is_empty() {
                addrs = node.ctx.book.get(&peer);
            }
            addrs.truncate(node.ctx.config.limits.max_addrs_per_peer);
            let record = ProviderRecord::new(
                key,
                provider.id.to_bytes(),
                addrs.iter().map(|a| a.to_vec()).collect(),
                now.saturating_add(ttl_ms),
            );
            // A durable write: off the async workers.
            let store = node.storage.store.clone();
            let added = tokio::task::spawn_blocking(move || store.add_provider(record, now)).await;
            if let Ok(Err(e)) = added {
                node.ctx.metrics.reject("provider_rejected");
                tracing::debug!(%peer, "ADD_PROVIDER rejected: {e}");
            }
            None
        }
    }
}
