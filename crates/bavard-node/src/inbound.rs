//! The accept loop shared by the node's stream protocols.
//!
//! Registers a protocol with libp2p-stream and serves each inbound stream in its own task, after
//! checking the per-peer limit (`limits.max_inbound_streams_per_peer`, counted across protocols):
//! a peer over it has the stream dropped (reset), counted as `too_many_streams` and logged once.

use std::future::Future;

use futures::StreamExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};

use crate::node::Node;

/// Serves `protocol` with `serve` until the node shuts down.
pub(crate) async fn accept<F, Fut>(node: Node, protocol: StreamProtocol, serve: F)
where
    F: Fn(Node, PeerId, Stream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut control = node.inner.control.clone();
    let mut incoming = match control.accept(protocol.clone()) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!("cannot register {protocol}: {e}");
            return;
        }
    };
    let shutdown = node.shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                if !node.inner.acquire_inbound(peer) {
                    node.inner.metrics.reject("too_many_streams");
                    let max = node.inner.config.limits.max_inbound_streams_per_peer;
                    warn_once(&node, peer, &format!("more than {max} concurrent inbound streams"));
                    continue; // dropping the stream resets it
                }
                let served = serve(node.clone(), peer, stream);
                let node = node.clone();
                tokio::spawn(async move {
                    served.await;
                    node.inner.release_inbound(peer);
                });
            }
        }
    }
}

/// Logs a peer's first offence at warn level and the rest at debug, so a flood cannot flood the
/// log.
pub(crate) fn warn_once(node: &Node, peer: PeerId, what: &str) {
    if node.inner.warned.lock().expect("warned lock").insert(peer) {
        tracing::warn!(%peer, "dropping an inbound stream: {what} (further offences logged at debug)");
    } else {
        tracing::debug!(%peer, "dropping an inbound stream: {what}");
    }
}
