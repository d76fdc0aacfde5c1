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
/// [`MAX_ATTEMPTS`] times, all within `timeout`. libp2p-stream drops inbound streams when the
/// remote acceptor falls behind a burst; a short backoff keeps the retry out of the same burst.
/// Only for idempotent requests.
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
    control: &libp2p_stream::Control,
    peer: PeerId,
    protocol: libp2p::StreamProtocol,
) -> Result<libp2p::Stream, RequestError> {
    let mut control = control.clone();
    control
        .open_stream(peer, protocol)
        .await
        .map_err(|e| match e {
            libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => RequestError::Unsupported,
            other => RequestError::Dial(other.to_string()),
        })
}
