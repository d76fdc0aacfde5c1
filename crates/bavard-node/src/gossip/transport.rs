//! The gossip transport: `/bavard/gossip/1` streams carrying length-prefixed
//! [`GossipMessage`](bavard_proto::gossip::GossipMessage) frames.
//!
//! **Outbound.** Each peer we talk to gets a small sender task with a bounded queue; it opens one
//! stream on the first frame, writes frames in order, reopens the stream once if a write fails,
//! and exits after an idle period (a frame for it later starts a new task). When a stream cannot
//! be opened or written, the frames queued are dropped and the peer is reported as failed, which
//! the driver turns into `Broadcast::peer_down`. A full queue drops the frame: SWIM and Plumtree
//! both tolerate loss, and the queue bound keeps a slow peer from costing memory.
//!
//! **Inbound.** Each peer may hold `max_inbound_streams_per_peer` streams at once (more are
//! reset); a stream is read frame by frame under `max_message_size` (an oversized or malformed
//! frame drops the stream) and a token bucket of `max_frames_per_sec_per_stream` (excess frames
//! are dropped and counted). The sender of every frame is the stream's authenticated remote peer,
//! never a field of the message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bavard_proto::gossip as pb;
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc;

use super::wire::Frame;
use crate::context::{Context, Slots};
use crate::inbound::Limit;

/// The gossip protocol name.
pub(crate) const GOSSIP_PROTOCOL: StreamProtocol =
    StreamProtocol::new(bavard_proto::gossip::PROTOCOL_NAME);

/// Frames queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 256;
/// A sender with nothing to send for this long closes its stream and exits.
const SENDER_IDLE: Duration = Duration::from_secs(30);
/// An inbound stream idle for this long is closed.
const INBOUND_IDLE: Duration = Duration::from_secs(60);

/// The outbound half: one sender task per peer.
pub(crate) struct Outbound {
    control: crate::streams::Control,
    senders: HashMap<PeerId, mpsc::Sender<Vec<u8>>>,
    failures: mpsc::UnboundedSender<PeerId>,
    open_timeout: Duration,
}

/// What happened to a frame handed to [`Outbound::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    Queued,
    QueueFull,
}

impl Outbound {
    pub(crate) fn new(
        control: crate::streams::Control,
        failures: mpsc::UnboundedSender<PeerId>,
        open_timeout: Duration,
    ) -> Self {
        Self {
            control,
            senders: HashMap::new(),
            failures,
            open_timeout,
        }
    }

    /// Queues an encoded frame (length prefix included) for `peer`.
    pub(crate) fn send(&mut self, peer: PeerId, bytes: Vec<u8>) -> Sent {
        if let Some(tx) = self.senders.get(&peer) {
            match tx.try_send(bytes) {
                Ok(()) => return Sent::Queued,
                Err(mpsc::error::TrySendError::Full(_)) => return Sent::QueueFull,
                Err(mpsc::error::TrySendError::Closed(b)) => {
                    self.senders.remove(&peer);
                    return self.spawn(peer, b);
                }
            }
        }
        self.spawn(peer, bytes)
    }

    fn spawn(&mut self, peer: PeerId, bytes: Vec<u8>) -> Sent {
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        // A fresh channel has room for one frame.
        let _ = tx.try_send(bytes);
        self.senders.insert(peer, tx);
        tokio::spawn(run_sender(
            self.control.clone(),
            peer,
            rx,
            self.failures.clone(),
            self.open_timeout,
        ));
        // Forget senders that exited, so the map does not grow with every peer ever seen.
        if self.senders.len() > 64 {
            self.senders.retain(|_, tx| !tx.is_closed());
        }
        Sent::Queued
    }
}

async fn open(
    control: &mut crate::streams::Control,
    peer: PeerId,
    timeout: Duration,
) -> Option<Stream> {
    match tokio::time::timeout(timeout, control.open_stream(peer, GOSSIP_PROTOCOL)).await {
        Ok(Ok(s)) => Some(s),
        _ => None,
    }
}

async fn run_sender(
    mut control: crate::streams::Control,
    peer: PeerId,
    mut rx: mpsc::Receiver<Vec<u8>>,
    failures: mpsc::UnboundedSender<PeerId>,
    open_timeout: Duration,
) {
    let mut stream: Option<Stream> = None;
    loop {
        let bytes = match tokio::time::timeout(SENDER_IDLE, rx.recv()).await {
            Ok(Some(b)) => b,
            Ok(None) | Err(_) => break,
        };
        let mut sent = false;
        for _ in 0..2 {
            if stream.is_none() {
                stream = open(&mut control, peer, open_timeout).await;
            }
            let Some(s) = stream.as_mut() else { break };
            let write = async {
                s.write_all(&bytes).await?;
                s.flush().await
            };
            match tokio::time::timeout(open_timeout, write).await {
                Ok(Ok(())) => {
                    sent = true;
                    break;
                }
                _ => stream = None,
            }
        }
        if !sent {
            let _ = failures.send(peer);
            break;
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
}

/// Sends frames straight away, each on its own stream, all within `deadline` (used for the
/// goodbye messages on shutdown, when the driver is about to stop).
pub(crate) async fn send_now(
    control: &crate::streams::Control,
    frames: Vec<(PeerId, Vec<u8>)>,
    deadline: Duration,
) {
    let sends = frames.into_iter().map(|(peer, bytes)| {
        let mut control = control.clone();
        async move {
            if let Some(mut s) = open(&mut control, peer, deadline).await {
                let _ = s.write_all(&bytes).await;
                let _ = s.close().await;
            }
        }
    });
    let _ = tokio::time::timeout(deadline, futures::future::join_all(sends)).await;
}

/// Accepts inbound gossip streams until the node shuts down (at most
/// `gossip.max_inbound_streams_per_peer` per peer), handing every valid frame to the driver
/// through `frames` (bounded: a slow driver slows the readers down).
pub(crate) async fn accept(ctx: Context, frames: mpsc::Sender<(PeerId, Frame)>) {
    let limit = Limit {
        slots: Slots::default(),
        max_per_peer: ctx.config.gossip.max_inbound_streams_per_peer,
        reject_reason: "gossip_too_many_streams",
    };
    let reader = ctx.clone();
    crate::inbound::accept(ctx, GOSSIP_PROTOCOL, limit, move |peer, stream| {
        let ctx = reader.clone();
        let frames = frames.clone();
        async move {
            // Only cluster members gossip: membership and topics alike.
            if crate::admission::protocol::admit_stream(&ctx, peer, "gossip").await {
                read_stream(&ctx, peer, stream, &frames).await;
            }
        }
    })
    .await;
}

async fn read_stream(
    node: &Context,
    peer: PeerId,
    mut stream: Stream,
    frames: &mpsc::Sender<(PeerId, Frame)>,
) {
    let cfg = &node.config.gossip;
    let rate = f64::from(cfg.max_frames_per_sec_per_stream.max(1));
    let mut tokens = rate;
    let mut last = Instant::now();
    loop {
        let msg = match tokio::time::timeout(
            INBOUND_IDLE,
            crate::wire::read_message::<pb::GossipMessage, _>(&mut stream, cfg.max_message_size),
        )
        .await
        {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Ok(Some(msg))) => msg,
            Ok(Err(e)) => {
                node.metrics.reject("gossip_bad_frame");
                tracing::debug!(%peer, "dropping gossip stream: {e}");
                break;
            }
        };
        node.metrics
            .bytes_in
            .inc_by(prost::Message::encoded_len(&msg) as u64);
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
        last = now;
        if tokens < 1.0 {
            node.metrics.reject("gossip_rate_limited");
            continue;
        }
        tokens -= 1.0;
        if !node.admission.is_admitted(&peer) {
            // Revoked (or its certificate expired) since the stream opened.
            node.metrics.reject("not_admitted");
            break;
        }
        match Frame::try_from(msg) {
            Ok(frame) => {
                if frames.send((peer, frame)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                node.metrics.reject("gossip_malformed");
                tracing::debug!(%peer, "dropping gossip stream: {e}");
                break;
            }
        }
    }
    let _ = stream.close().await;
}
