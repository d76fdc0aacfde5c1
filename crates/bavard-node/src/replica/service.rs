//! The replica service: what every part of the replicated store shares — the context, the
//! Kademlia client (placement before the membership converged), local storage, hints, the pool
//! of replica streams, the placement, anti-entropy state and the pace of background transfers —
//! and the replica protocol's client side.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use bavard_proto::store as pb;
use bavard_replica::{Failure, HandoffPolicy, Placement, Request, Response, SyncConfig};
use libp2p::PeerId;

use super::KV_PROTOCOL;
use super::hints::Hints;
use super::pace::Pace;
use super::pool::StreamPool;
use super::progress::SyncState;
use super::wire::{WireError, request_to_pb, response_from_pb};
use crate::api::ReplicationStatus;
use crate::config::secs;
use crate::context::{Context, peer_key};
use crate::kad::client::Kad;
use crate::metrics::Stage;
use crate::request::{PeerLimiter, RequestError, open_stream, retry_broken_stream};
use crate::storage::Storage;
use tokio::sync::OwnedSemaphorePermit;

/// The replica service (cheap to clone).
#[derive(Clone)]
pub(crate) struct Replica(Arc<Shared>);

/// What the replica service holds.
pub(crate) struct Shared {
    pub(crate) ctx: Context,
    pub(crate) kad: Kad,
    pub(crate) storage: Arc<Storage>,
    /// Hints kept for replicas that were down.
    pub(crate) hints: Hints,
    /// Idle `/bavard/kv/1` streams for reuse (see [`super::pool`]).
    streams: StreamPool<(libp2p::Stream, OwnedSemaphorePermit)>,
    /// Streams per peer, busy or idle (each holds a permit): within the peer's inbound limit.
    limiter: PeerLimiter,
    /// Anti-entropy progress and views.
    pub(crate) sync: SyncState,
    /// The byte budget of background transfers (anti-entropy, hint delivery).
    pub(crate) pace: Pace,
    /// Low-priority threads for anti-entropy's CPU work (see [`crate::background`]).
    pub(crate) background: crate::background::Background,
    placement: super::PlacementCache,
    /// How long replicas take to answer this node's reads (when a read asks the others).
    pub(crate) answer_time: std::sync::Mutex<bavard_replica::AnswerTime>,
    /// The blob service: large values live in blobs (see [`super::large`]).
    pub(crate) blobs: crate::blobs::Blobs,
    /// Which blobs this node's records and hints reference.
    pub(crate) refs: super::large::BlobRefs,
}

impl Deref for Replica {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Replica {
    /// The service over `storage`, with its hint store (`DATA_DIR/hints.redb`).
    pub(crate) fn open(
        ctx: Context,
        kad: Kad,
        storage: Arc<Storage>,
        blobs: crate::blobs::Blobs,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let config = &ctx.config;
        let hints_path = config.data_dir.join("hints.redb");
        let hints = Hints::open(
            (!config.store.in_memory).then_some(hints_path.as_path()),
            &ctx.peer_id,
            config.replication.max_hints,
            config.store.max_key_size,
            config.store.max_value_size,
        )
        .with_context(|| format!("cannot open the hint store {}", hints_path.display()))?;
        let refs = super::large::BlobRefs::scan(&*storage.store)
            .context("cannot list the blobs the stored records reference")?;
        let rc = &config.replication;
        Ok(Self(Arc::new(Shared {
            blobs,
            refs,
            streams: StreamPool::new(rc.max_idle_streams_per_peer, secs(rc.idle_stream_secs)),
            limiter: PeerLimiter::new(config.limits.max_inbound_streams_per_peer),
            pace: Pace::new(
                rc.sync_max_bytes_per_sec,
                rc.sync_busy_bytes_per_sec,
                secs(rc.sync_busy_window_secs),
            ),
            background: crate::background::Background::start(
                rc.background_threads,
                rc.background_priority,
            )
            .context("cannot start the background threads")?,
            hints,
            sync: SyncState::default(),
            placement: super::PlacementCache::default(),
            answer_time: std::sync::Mutex::default(),
            ctx,
            kad,
            storage,
        })))
    }

    /// The placement every replication path uses, and whether it comes from a membership that
    /// knows other members (see [`super::placement_members`]).
    pub(crate) fn placement_view(&self) -> (Arc<Placement<PeerId>>, bool) {
        let (mut members, converged) = super::placement_members(&self.ctx);
        members.sort();
        members.dedup();
        let built = self.placement.get_or_build(members, |members| {
            Placement::new(
                members.iter().map(|id| (*id, peer_key(id))),
                self.ctx.config.kad.replication_factor,
            )
        });
        (built, converged)
    }

    /// The limits of anti-entropy rounds, from the configuration.
    pub(crate) fn sync_config(&self) -> SyncConfig {
        let rc = &self.ctx.config.replication;
        SyncConfig {
            max_batch_bytes: rc.max_batch_bytes,
            max_batch_records: rc.max_batch_records,
            max_entries: rc.max_digest_entries,
            ..SyncConfig::default()
        }
    }

    /// The hinted-handoff policy, from the configuration.
    pub(crate) fn handoff_policy(&self) -> HandoffPolicy {
        let rc = &self.ctx.config.replication;
        HandoffPolicy {
            ttl_ms: secs(rc.hint_ttl_secs).as_millis() as u64,
            max_records: rc.max_batch_records,
            max_bytes: rc.max_batch_bytes,
        }
    }

    /// How far this node's replicas are from its partners'.
    pub(crate) fn status(&self) -> ReplicationStatus {
        let (keys_behind, ranges_pending) = self.sync.behind();
        let m = &self.ctx.metrics;
        ReplicationStatus {
            keys_behind,
            ranges_pending,
            hints_queued: self.hints.len(),
            read_repairs: m.read_repairs.get(),
            anti_entropy_rounds: m.anti_entropy_rounds.get(),
            anti_entropy_failures: m.anti_entropy_failures_total(),
        }
    }

    /// Updates the anti-entropy progress gauges.
    pub(crate) fn refresh_sync_gauges(&self) {
        let (keys, ranges) = self.sync.behind();
        self.ctx.metrics.anti_entropy_keys_behind.set(keys as i64);
        self.ctx
            .metrics
            .anti_entropy_ranges_pending
            .set(ranges as i64);
    }

    /// Releases the hint store (the record store is the storage's).
    pub(crate) fn close(&self) {
        self.hints.close();
    }

    /// Sends one replica-protocol request to `peer` and returns its answer; a refusal or a
    /// malformed answer is a [`Failure`].
    pub(crate) async fn call(
        &self,
        peer: PeerId,
        request: Request<PeerId>,
    ) -> Result<Response, Failure> {
        let started = std::time::Instant::now();
        let answer = self.request(peer, request_to_pb(request)).await;
        self.ctx.metrics.stages.since(Stage::replica_call, started);
        let answer = answer.map_err(|e| Failure::NoAnswer(e.to_string()))?;
        response_from_pb(answer).map_err(|e| match e {
            WireError::Refused(m) => Failure::Refused(m),
            other => Failure::Refused(format!("malformed answer: {other}")),
        })
    }

    /// Sends one replica-protocol request to `peer` under the request timeout.
    ///
    /// A request whose stream breaks before the answer (a yamux stream reset or a closed
    /// substream under load) is sent again on a fresh stream ([`retry_broken_stream`]): every
    /// request of this protocol is idempotent (a store of the same version is `UNCHANGED`), so a
    /// retry cannot double-apply.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
    ) -> Result<pb::response::Kind, RequestError> {
        if peer == self.ctx.peer_id {
            return Err(RequestError::SelfRequest);
        }
        // A store of large records waits for the receiver to fetch their blobs.
        let blob = super::large::largest_blob(Some(&kind));
        let timeout =
            self.ctx.config.kad.request_timeout() + super::large::transfer_allowance(blob);
        retry_broken_stream(peer, timeout, || self.request_once(peer, kind.clone())).await
    }

    async fn request_once(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
    ) -> Result<pb::response::Kind, RequestError> {
        if let Some(faults) = &self.ctx.faults
            && faults.outbound(&peer).await.is_err()
        {
            // A lost request looks like an unanswered one: the caller's deadline ends it.
            std::future::pending::<()>().await;
        }
        let max = self.ctx.config.limits.max_message_size;
        let req = pb::Request { kind: Some(kind) };
        let (pooled, permit) = self.stream_slot(peer).await;
        if let Some(stream) = pooled {
            match self.exchange(stream, &req, max).await {
                Ok((resp, stream)) => {
                    self.streams
                        .put(peer, (stream, permit), std::time::Instant::now());
                    return resp
                        .kind
                        .ok_or_else(|| RequestError::Protocol("empty response".into()));
                }
                // A pooled stream the peer closed meanwhile (or that broke): the request is
                // idempotent, send it on a new stream (under the same permit).
                Err(e) => tracing::debug!(%peer, "pooled replica stream failed ({e}), opening one"),
            }
        }
        let opening = std::time::Instant::now();
        let stream = open_stream(&self.ctx.control, peer, KV_PROTOCOL).await;
        self.ctx.metrics.stages.since(Stage::stream_open, opening);
        let (resp, stream) = self.exchange(stream?, &req, max).await?;
        self.streams
            .put(peer, (stream, permit), std::time::Instant::now());
        resp.kind
            .ok_or_else(|| RequestError::Protocol("empty response".into()))
    }

    /// A slot for one request to `peer`: an idle stream (with its permit), else a free permit
    /// for a new stream, else whichever of the two comes first.
    async fn stream_slot(&self, peer: PeerId) -> (Option<libp2p::Stream>, OwnedSemaphorePermit) {
        let waited = std::time::Instant::now();
        let slot = loop {
            let returned = self.streams.returned();
            if let Some((stream, permit)) = self.streams.take(&peer, std::time::Instant::now()) {
                break (Some(stream), permit);
            }
            if let Some(permit) = self.limiter.try_acquire(peer) {
                break (None, permit);
            }
            tokio::select! {
                permit = self.limiter.acquire(peer) => break (None, permit),
                () = returned => {}
            }
        };
        self.ctx.metrics.stages.since(Stage::stream_permit, waited);
        slot
    }

    /// Sends one request to `peer` **at most once**, under the request timeout: on an idle
    /// pooled stream if there is one, else on a new stream, and never again on another if the
    /// exchange fails (the answer is then an error, whatever the peer did). For requests that
    /// must not be duplicated: a repeated Paxos proposal could turn an acceptance into a later
    /// refusal and hide it from the proposer (see [`super::paxos`]).
    pub(crate) async fn request_at_most_once(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
    ) -> Result<pb::response::Kind, RequestError> {
        if peer == self.ctx.peer_id {
            return Err(RequestError::SelfRequest);
        }
        let timeout = self.ctx.config.kad.request_timeout();
        let once = async {
            if let Some(faults) = &self.ctx.faults
                && faults.outbound(&peer).await.is_err()
            {
                std::future::pending::<()>().await;
            }
            let max = self.ctx.config.limits.max_message_size;
            let req = pb::Request { kind: Some(kind) };
            let (pooled, permit) = self.stream_slot(peer).await;
            let stream = match pooled {
                Some(stream) => stream,
                None => open_stream(&self.ctx.control, peer, KV_PROTOCOL).await?,
            };
            let (resp, stream) = self.exchange(stream, &req, max).await?;
            self.streams
                .put(peer, (stream, permit), std::time::Instant::now());
            resp.kind
                .ok_or_else(|| RequestError::Protocol("empty response".into()))
        };
        tokio::time::timeout(timeout, once)
            .await
            .unwrap_or(Err(RequestError::Timeout))
    }

    /// Sends one request on `stream` and reads its response; the stream is handed back only
    /// after a complete exchange, so it can carry the next request.
    async fn exchange(
        &self,
        mut stream: libp2p::Stream,
        req: &pb::Request,
        max: usize,
    ) -> Result<(pb::Response, libp2p::Stream), RequestError> {
        let sent = crate::wire::write_message(&mut stream, req)
            .await
            .map_err(|e| RequestError::Io(e.to_string()))?;
        self.ctx.metrics.bytes_out.inc_by(sent as u64);
        let resp: pb::Response = crate::wire::read_message(&mut stream, max)
            .await
            .map_err(|e| RequestError::Io(e.to_string()))?
            .ok_or_else(|| RequestError::Io("stream closed before the response".into()))?;
        self.ctx
            .metrics
            .bytes_in
            .inc_by(prost::Message::encoded_len(&resp) as u64);
        Ok((resp, stream))
    }

    /// The time a read waits for stragglers before repairing the replicas behind.
    pub(crate) fn repair_wait(&self) -> Duration {
        self.ctx.config.kad.request_timeout()
    }
}
