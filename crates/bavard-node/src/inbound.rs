//! The one accept loop of the node's stream protocols (Kademlia, replica, gossip).
//!
//! Registers a protocol with the stream behaviour ([`crate::streams`]) and serves each inbound stream in its own task until
//! the node shuts down, after taking one of the peer's slots ([`Slots`]): a peer over its limit
//! has the stream dropped (reset), counted under `reject_reason` and logged once.

use std::future::Future;

use futures::StreamExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};

use crate::context::{Context, Slots};

/// How many streams a peer may hold open at once, and what a refusal is counted as.
pub(crate) struct Limit {
    pub(crate) slots: Slots,
    pub(crate) max_per_peer: usize,
    pub(crate) reject_reason: &'static str,
}

/// Serves `protocol` with `serve` until the node shuts down.
pub(crate) async fn accept<F, Fut>(ctx: Context, protocol: StreamProtocol, limit: Limit, serve: F)
where
    F: Fn(PeerId, Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let control = ctx.control.clone();
    let mut incoming = match control.accept(protocol.clone()) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!("cannot register {protocol}: {e}");
            return;
        }
    };
    let shutdown = ctx.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                let Some(slot) = limit.slots.acquire(peer, limit.max_per_peer) else {
                    ctx.metrics.reject(limit.reject_reason);
                    ctx.warn_once(
                        peer,
                        &format!("more than {} concurrent inbound {protocol} streams", limit.max_per_peer),
                    );
                    continue; // dropping the stream resets it
                };
                let served = serve(peer, stream);
                let stop = ctx.shutdown_signal();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop => {}
                        _ = served => {}
                    }
                    drop(slot);
                });
            }
        }
    }
}
