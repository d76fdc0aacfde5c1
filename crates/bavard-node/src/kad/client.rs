//! The Kademlia client: outbound requests and the routing table's admissions. Lookups are in
//! [`super::lookup`], provider records in [`super::providers`].

use std::sync::Arc;
use std::time::Instant;

use bavard_routing::InsertOutcome;
use libp2p::{Multiaddr, PeerId};

use super::{KAD_PROTOCOL, KadPeer, Request, Response};
use crate::context::{Context, peer_key};
use crate::request::{PeerLimiter, RequestError, open_stream, retry_broken_stream};
use crate::storage::Storage;

/// The Kademlia client service (cheap to clone).
#[derive(Clone)]
pub(crate) struct Kad {
    pub(crate) ctx: Context,
    pub(crate) storage: Arc<Storage>,
    /// Our streams per peer stay within the peer's inbound limit (same configuration assumed).
    limiter: Arc<PeerLimiter>,
}

impl Kad {
    pub(crate) fn new(ctx: Context, storage: Arc<Storage>) -> Self {
        let limiter = Arc::new(PeerLimiter::new(
            ctx.config.limits.max_inbound_streams_per_peer,
        ));
        Self {
            ctx,
            storage,
            limiter,
        }
    }

    /// Sends one Kademlia request to `peer` and waits for its response (`None` for requests that
    /// have none), under the configured request timeout. A peer that answers enters the routing
    /// table: it has just proved that it serves the protocol.
    ///
    /// A request whose stream breaks before the answer is sent again on a fresh stream (see
    /// [`retry_broken_stream`]): every Kademlia request is idempotent.
    pub(crate) async fn request(
        &self,
        peer: PeerId,
        req: Request,
    ) -> Result<Option<Response>, RequestError> {
        if peer == self.ctx.peer_id {
            return Err(RequestError::SelfRequest);
        }
        let timeout = self.ctx.config.kad.request_timeout();
        let result = retry_broken_stream(peer, timeout, || self.request_once(peer, &req)).await;
        match result {
            Ok(resp) => {
                let addrs = self.ctx.book.get(&peer);
                self.add_to_table(peer, addrs);
                Ok(resp)
            }
            Err(e) => {
                if matches!(e, RequestError::Unsupported | RequestError::Dial(_)) {
                    self.ctx.table.lock().expect("table lock").remove(&peer);
                }
                Err(e)
            }
        }
    }

    async fn request_once(
        &self,
        peer: PeerId,
        req: &Request,
    ) -> Result<Option<Response>, RequestError> {
        use futures::AsyncWriteExt as _;
        if let Some(faults) = &self.ctx.faults
            && faults.outbound(&peer).await.is_err()
        {
            // A lost request looks like an unanswered one: the caller's timeout ends it.
            std::future::pending::<()>().await;
        }
        let _permit = self.limiter.acquire(peer).await;
        let mut stream = open_stream(&self.ctx.control, peer, KAD_PROTOCOL).await?;
        let sent = crate::wire::write_message(&mut stream, &req.to_pb())
            .await
            .map_err(|e| RequestError::Io(e.to_string()))?;
        self.ctx.metrics.bytes_out.inc_by(sent as u64);
        if !req.expects_response() {
            let _ = stream.close().await;
            return Ok(None);
        }
        let limits = &self.ctx.config.limits;
        let msg: bavard_proto::kad::Message =
            crate::wire::read_message(&mut stream, limits.max_message_size)
                .await
                .map_err(|e| RequestError::Io(e.to_string()))?
                .ok_or_else(|| RequestError::Io("stream closed before the response".into()))?;
        self.ctx
            .metrics
            .bytes_in
            .inc_by(prost::Message::encoded_len(&msg) as u64);
        let _ = stream.close().await;
        let resp = Response::from_pb(msg, req, limits.max_peers_per_response)
            .map_err(|e| RequestError::Protocol(e.to_string()))?;
        for p in response_peers(&resp) {
            for a in &p.addrs {
                self.ctx.hear_addr(p.id, a.clone());
            }
        }
        Ok(Some(resp))
    }

    /// Adds or refreshes a Kademlia server in the routing table; a full bucket makes us check
    /// its least-recently-seen entry before anything is evicted.
    pub(crate) fn add_to_table(&self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.ctx.peer_id {
            return;
        }
        let mut table = self.ctx.table.lock().expect("table lock");
        let max = self.ctx.config.kad.max_peers_per_ip_group;
        if !self.ctx.admission.is_admitted(&peer) && super::group_full(&table, &peer, &addrs, max) {
            drop(table);
            self.ctx.pressure.refused(Instant::now());
            self.ctx.metrics.reject("ip_diversity");
            return;
        }
        let outcome = table.insert(Instant::now(), peer, peer_key(&peer), addrs);
        drop(table);
        if let InsertOutcome::Rejected(bavard_routing::RejectReason::Filtered) = outcome {
            self.ctx.metrics.reject("ip_diversity");
        }
        if let InsertOutcome::PingOldest { oldest } = outcome {
            let kad = self.clone();
            tokio::spawn(async move {
                // The spec forbids PING: a FIND_NODE for our own id checks liveness instead.
                let req = Request::FindNode {
                    key: kad.ctx.peer_id.to_bytes(),
                };
                let alive = kad.request(oldest, req).await.is_ok();
                kad.ctx.table.lock().expect("table lock").ping_result(
                    Instant::now(),
                    &oldest,
                    alive,
                );
            });
        }
        self.ctx.refresh_gauges();
    }
}

fn response_peers(resp: &Response) -> Vec<&KadPeer> {
    match resp {
        Response::FindNode { closer } | Response::GetValue { closer, .. } => {
            closer.iter().collect()
        }
        Response::GetProviders { providers, closer } => providers.iter().chain(closer).collect(),
        Response::PutValue { .. } | Response::Ping => Vec::new(),
    }
}
