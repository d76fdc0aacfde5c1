//! The serving side of `/bavard/blobs/1`: one request per stream, answered from the store
//! by [`respond`] — only verified blocks, re-hashed as they are read, those of a blob still
//! being fetched included.
//!
//! Open to every peer (see the [module docs](super)), within bounds: each peer holds at
//! most `[blobs] max_streams_per_peer` streams (through the node's one accept loop) and is
//! subject to the node's request rate limit; at most `max_concurrent_serves` gets are
//! served at once over all peers (more are answered busy); and each peer's data is paced
//! to `serve_bytes_per_sec_per_peer`. A request that does not decode is counted in
//! `bavard_inbound_rejected{reason="blobs_bad_request"}` (or `blobs_bad_frame`), answered
//! with a bad-request error when possible, and its stream closed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bavard_blobs::BlobHash;
use bavard_blobs::encoding::EncodeError;
use bavard_blobs::protocol::{Answer, DataFrames, ErrorCode, Request, Response, respond};
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream};

use super::{BLOBS_PROTOCOL, Blobs};
use crate::config::secs;
use crate::context::Slots;
use crate::inbound::Limit;

/// Data frames read from disk (and re-hashed) per blocking task, then written at once.
const FRAMES_PER_BATCH: usize = 16;

/// Serves `/bavard/blobs/1` until the node shuts down.
pub(crate) async fn run(blobs: Blobs) {
    let limit = Limit {
        slots: Slots::default(),
        max_per_peer: blobs.config().max_streams_per_peer,
        reject_reason: "blobs_too_many_streams",
    };
    let ctx = blobs.ctx().clone();
    crate::inbound::accept(ctx, BLOBS_PROTOCOL, limit, move |peer, stream| {
        let blobs = blobs.clone();
        async move { serve(&blobs, peer, stream).await }
    })
    .await;
}

async fn serve(blobs: &Blobs, peer: PeerId, mut stream: Stream) {
    let ctx = blobs.ctx();
    let limits = &blobs.0.limits;
    let timeout = secs(blobs.config().request_timeout_secs);
    let payload = match tokio::time::timeout(
        timeout,
        crate::wire::read_frame(&mut stream, limits.max_message_len),
    )
    .await
    {
        Err(_) | Ok(Ok(None)) => return,
        Ok(Ok(Some(payload))) => payload,
        Ok(Err(e)) => {
            ctx.metrics.reject("blobs_bad_frame");
            ctx.warn_once(peer, &format!("blobs: {e}"));
            return;
        }
    };
    if !ctx.admit_request(peer) {
        return;
    }
    let request = match Request::decode(&payload, limits) {
        Ok(request) => request,
        Err(e) => {
            ctx.metrics.reject("blobs_bad_request");
            ctx.warn_once(peer, &format!("blobs: {e}"));
            let _ = send(&mut stream, &Response::error(ErrorCode::BadRequest, &e)).await;
            let _ = stream.close().await;
            return;
        }
    };
    // Only gets hold the serving side for long; queries are one small answer.
    let _permit = if matches!(request, Request::Get { .. }) {
        match blobs.0.serving.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                ctx.metrics.reject("blobs_busy");
                let busy = Response::error(ErrorCode::Busy, "serving too many requests");
                let _ = send(&mut stream, &busy).await;
                let _ = stream.close().await;
                return;
            }
        }
    } else {
        None
    };
    let hash = request.hash();
    let limits_for_store = limits.clone();
    let answer = blobs
        .with_store(move |s| respond(s, &request, &limits_for_store, SystemTime::now()))
        .await;
    let result = match answer {
        Err(e) => {
            tracing::warn!(%hash, "cannot answer a blob request: {e}");
            return;
        }
        Ok(Answer::One(response)) => send(&mut stream, &response).await,
        Ok(Answer::Stream { header, frames }) => match send(&mut stream, &header).await {
            Ok(()) => stream_frames(blobs, peer, hash, &mut stream, frames).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        tracing::debug!(%peer, %hash, "blob stream ended early: {e}");
    }
    let _ = stream.close().await;
}

async fn send(stream: &mut Stream, response: &Response) -> std::io::Result<()> {
    stream.write_all(&response.to_frame()).await?;
    stream.flush().await
}

/// Streams a get's data frames: read and re-verified in batches on blocking tasks, paced
/// per peer, written a batch at a time. A block found corrupt on disk ends the stream (the
/// peer sees a short answer) and is forgotten, to be fetched again.
async fn stream_frames(
    blobs: &Blobs,
    peer: PeerId,
    hash: BlobHash,
    stream: &mut Stream,
    frames: DataFrames,
) -> std::io::Result<()> {
    let corrupt = blobs
        .ctx()
        .faults
        .as_ref()
        .is_some_and(|f| f.corrupts_blobs());
    let mut frames = Some(frames);
    while let Some(iter) = frames.take() {
        let batch = tokio::task::spawn_blocking(move || read_batch(iter))
            .await
            .map_err(std::io::Error::other)?;
        if !batch.frames.is_empty() {
            let mut buf = Vec::with_capacity(batch.data + batch.frames.len() * 8);
            for response in &batch.frames {
                match response {
                    Response::Data(bytes) if corrupt => {
                        // Test switch ([fault_injection] corrupt_blob_blocks): flip a bit of
                        // the block's last byte, which every frame ends with.
                        let mut bad = bytes.to_vec();
                        if let Some(last) = bad.last_mut() {
                            *last ^= 1;
                        }
                        buf.extend_from_slice(&Response::Data(bad.into()).to_frame());
                    }
                    other => buf.extend_from_slice(&other.to_frame()),
                }
            }
            blobs.0.pacer.wait(peer, buf.len() as u64).await;
            stream.write_all(&buf).await?;
            blobs.0.metrics.served_bytes.inc_by(batch.data as u64);
        }
        if let Some(e) = batch.failure {
            if let EncodeError::Corrupt { blocks } = &e {
                tracing::warn!(%hash, ?blocks, "a stored blob block is corrupt on disk; forgetting it");
                let blocks = blocks.clone();
                let forgot = blobs
                    .with_store(move |s| s.forget_blocks(hash, blocks))
                    .await;
                if let Ok(Err(e)) = forgot {
                    tracing::warn!(%hash, "cannot forget the corrupt blocks: {e}");
                }
            }
            return Err(std::io::Error::other(e));
        }
        frames = batch.rest;
    }
    stream.flush().await
}

/// Up to [`FRAMES_PER_BATCH`] frames of a get, read from disk.
struct Batch {
    frames: Vec<Response>,
    /// Block bytes among them.
    data: usize,
    /// The frames still to read, unless they ran out or failed.
    rest: Option<DataFrames>,
    failure: Option<EncodeError>,
}

fn read_batch(mut frames: DataFrames) -> Batch {
    let mut batch = Batch {
        frames: Vec::with_capacity(FRAMES_PER_BATCH),
        data: 0,
        rest: None,
        failure: None,
    };
    for _ in 0..FRAMES_PER_BATCH {
        match frames.next() {
            None => return batch,
            Some(Ok(response)) => {
                if let Response::Data(bytes) = &response {
                    batch.data += bytes.len();
                }
                batch.frames.push(response);
            }
            Some(Err(e)) => {
                batch.failure = Some(e);
                return batch;
            }
        }
    }
    batch.rest = Some(frames);
    batch
}

/// Paces the blob data sent to each peer to a rate (a virtual-clock token bucket with a
/// burst of 100 ms), or not at all.
pub(crate) struct Pacer {
    bytes_per_sec: u64,
    /// When each peer's sent bytes will have "drained" at the rate.
    peers: Mutex<HashMap<PeerId, Instant>>,
}

/// What a peer may send ahead of its rate.
const PACER_BURST: Duration = Duration::from_millis(100);
/// Above this many peers, idle ones are forgotten.
const PACER_PURGE_ABOVE: usize = 1024;

impl Pacer {
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `bytes` more may be sent to `peer`.
    pub(crate) async fn wait(&self, peer: PeerId, bytes: u64) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let now = Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let until = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            if peers.len() > PACER_PURGE_ABOVE {
                peers.retain(|_, t| *t > now);
            }
            let drained = peers.entry(peer).or_insert(now);
            *drained = (*drained).max(now) + cost;
            *drained
        };
        if let Some(wait) = until.checked_duration_since(now + PACER_BURST) {
            tokio::time::sleep(wait).await;
        }
    }
}
