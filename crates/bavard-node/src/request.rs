//! Outbound requests on raw protocol streams: their error, and the retry of a broken stream
//! shared by the Kademlia client and the replica client.

use std::time::Duration;

use libp2p::PeerId;

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("the peer does not speak the protocol")]
    Unsupported,
    #[error("cannot reach the peer: {0}")]
    Dial(String),
    #[error("stream error: {0}")]
    Io(String),
    #[error("bad response: {0}")]
    Protocol(String),
    #[error("request timed out")]
    Timeout,
    #[error("request to self")]
    SelfRequest,
}

/// Attempts of one request whose stream broke (see [`retry_broken_stream`]).
const MAX_ATTEMPTS: u32 = 3;

/// Runs `attempt` until it answers or fails for another reason than a broken stream, at most
/// [`MAX_ATTEMPTS`] times, all within `timeout`. A stream can break under load (a peer that
/// restarted, a reset past a limit of a peer configured lower than us); a short backoff keeps
/// the retry out of the same burst. Only for idempotent requests.
pub(crate) async fn retry_broken_stream<T, F, Fut>(
    peer: PeerId,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RequestError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tries = 0;
    loop {
        tries += 1;
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Err(RequestError::Io(e))) if tries < MAX_ATTEMPTS => {
                tracing::debug!(%peer, "request failed ({e}), retrying on a new stream");
                tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
            }
            Ok(r) => return r,
            Err(_) => return Err(RequestError::Timeout),
        }
    }
}

/// Opens a stream of `protocol` to `peer`, with typed errors.
pub(crate) async fn open_stream(
    control: &crate::streams::Control,
    peer: PeerId,
    protocol: libp2p::StreamProtocol,
) -> Result<libp2p::Stream, RequestError> {
    control
        .open_stream(peer, protocol)
        .await
        .map_err(|e| match e {
            crate::streams::OpenStreamError::UnsupportedProtocol(_) => RequestError::Unsupported,
            crate::streams::OpenStreamError::Io(e) => RequestError::Io(e.to_string()),
            other => RequestError::Dial(other.to_string()),
        })
}

/// Outbound streams of one protocol in use per peer, at most `max` at once; more requests
/// wait their turn (within their own deadline) instead of opening streams the peer would reset
/// for exceeding its `limits.max_inbound_streams_per_peer`.
#[derive(Debug)]
pub(crate) struct PeerLimiter {
    max: usize,
    peers:
        std::sync::Mutex<std::collections::HashMap<PeerId, std::sync::Arc<tokio::sync::Semaphore>>>,
}

/// Above this many peers, unused semaphores are purged when one is added.
const LIMITER_PURGE_ABOVE: usize = 256;

impl PeerLimiter {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            peers: Default::default(),
        }
    }

    /// A permit for one stream to `peer` if one is free now.
    pub(crate) fn try_acquire(&self, peer: PeerId) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.semaphore(peer).try_acquire_owned().ok()
    }

    /// A permit for one stream to `peer`, waiting while `max` are in use.
    pub(crate) async fn acquire(&self, peer: PeerId) -> tokio::sync::OwnedSemaphorePermit {
        self.semaphore(peer)
            .acquire_owned()
            .await
            .expect("the limiter never closes its semaphores")
    }

    fn semaphore(&self, peer: PeerId) -> std::sync::Arc<tokio::sync::Semaphore> {
        {
            let mut peers = self.peers.lock().expect("limiter lock");
            if peers.len() > LIMITER_PURGE_ABOVE && !peers.contains_key(&peer) {
                // Held by a permit or a waiter means more than our one reference.
                peers.retain(|_, s| std::sync::Arc::strong_count(s) > 1);
            }
            peers
                .entry(peer)
                .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(self.max)))
                .clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_gets_at_most_max_permits_and_others_are_not_held_up() {
        let limiter = PeerLimiter::new(2);
        let a = PeerId::random();
        let p1 = limiter.acquire(a).await;
        let _p2 = limiter.acquire(a).await;
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(a)).await;
        assert!(third.is_err(), "a third stream to the same peer waits");
        let other = tokio::time::timeout(Duration::from_secs(5), limiter.acquire(PeerId::random()));
        assert!(other.await.is_ok(), "another peer is not held up");
        drop(p1);
        let again = tokio::time::timeout(Duration::from_secs(5), limiter.acquire(a)).await;
        assert!(again.is_ok(), "a released permit is handed on");
    }

    #[tokio::test]
    async fn unused_peers_are_purged() {
        let limiter = PeerLimiter::new(1);
        let held = limiter.acquire(PeerId::random()).await;
        for _ in 0..=LIMITER_PURGE_ABOVE {
            drop(limiter.acquire(PeerId::random()).await);
        }
        let _ = limiter.acquire(PeerId::random()).await;
        let left = limiter.peers.lock().unwrap().len();
        assert!(
            left <= 3,
            "only the held peer and the newest remain, got {left}"
        );
        drop(held);
    }
}
