//! `/bavard/stream-probe/1`: the raw rate of one libp2p stream between two nodes, the
//! transport's ceiling that `cargo xtask bench blobs` compares blob fetches with.
//!
//! The asking node opens a stream and sends a big-endian `u64`, a byte count; the serving
//! node writes that many zero bytes from memory and closes. No disk, no hashing, no
//! framing: what is measured is Noise, yamux and the socket. The server runs only with
//! `[blobs] stream_probe = true` (it lets a peer make the node send data), one stream per
//! peer, at most [`MAX_PROBE_BYTES`] per request.

use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};

use super::{BlobError, Blobs};
use crate::context::Slots;
use crate::inbound::Limit;
use crate::request::open_stream;

/// The probe protocol.
pub const PROBE_PROTOCOL: StreamProtocol = StreamProtocol::new("/bavard/stream-probe/1");

/// The most bytes one probe may ask for (4 GiB).
pub const MAX_PROBE_BYTES: u64 = 4 << 30;

/// What a probe measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProbeReport {
    /// The peer that sent.
    pub peer_id: String,
    /// Bytes received.
    pub bytes: u64,
    /// Seconds from the request to the last byte.
    pub secs: f64,
    /// `bytes / secs`.
    pub bytes_per_sec: f64,
}

/// Serves probes until the node shuts down (only when enabled).
pub(crate) async fn run(blobs: Blobs) {
    let limit = Limit {
        slots: Slots::default(),
        max_per_peer: 1,
        reject_reason: "probe_too_many_streams",
    };
    let ctx = blobs.ctx().clone();
    crate::inbound::accept(ctx, PROBE_PROTOCOL, limit, move |peer, stream| {
        let blobs = blobs.clone();
        async move {
            if let Err(e) = serve(&blobs, peer, stream).await {
                tracing::debug!(%peer, "stream probe ended: {e}");
            }
        }
    })
    .await;
}

async fn serve(blobs: &Blobs, peer: PeerId, mut stream: Stream) -> std::io::Result<()> {
    let mut ask = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut ask))
        .await
        .map_err(|_| std::io::Error::other("no request"))??;
    let bytes = u64::from_be_bytes(ask);
    if bytes > MAX_PROBE_BYTES {
        blobs.ctx().metrics.reject("probe_too_large");
        return Ok(());
    }
    if !blobs.ctx().admit_request(peer) {
        return Ok(());
    }
    let zeros = vec![0u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        stream.write_all(&zeros[..n]).await?;
        left -= n as u64;
    }
    stream.close().await
}

impl Blobs {
    /// Asks `peer` for `bytes` zero bytes over one stream and times them.
    pub async fn probe_stream(&self, peer: PeerId, bytes: u64) -> Result<ProbeReport, BlobError> {
        if bytes == 0 || bytes > MAX_PROBE_BYTES {
            return Err(BlobError::Probe(format!(
                "a probe asks for 1 to {MAX_PROBE_BYTES} bytes, not {bytes}"
            )));
        }
        let failed = |e: &dyn std::fmt::Display| BlobError::Probe(format!("to {peer}: {e}"));
        let started = Instant::now();
        let mut stream = open_stream(&self.ctx().control, peer, PROBE_PROTOCOL)
            .await
            .map_err(|e| failed(&e))?;
        stream
            .write_all(&bytes.to_be_bytes())
            .await
            .map_err(|e| failed(&e))?;
        stream.flush().await.map_err(|e| failed(&e))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        let stall = crate::config::secs(self.config().stall_timeout_secs);
        while got < bytes {
            let n = tokio::time::timeout(stall, stream.read(&mut buf))
                .await
                .map_err(|_| failed(&format!("no data for {stall:?}")))?
                .map_err(|e| failed(&e))?;
            if n == 0 {
                return Err(failed(&format!("the stream ended after {got} bytes")));
            }
            got += n as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(ProbeReport {
            peer_id: peer.to_string(),
            bytes: got,
            secs,
            bytes_per_sec: got as f64 / secs.max(1e-9),
        })
    }
}
