//! The coordinator's IO: the node a client talks to runs each write and read by driving the
//! replica core's state machines ([`bavard_replica::Write`], [`bavard_replica::Read`]) over the
//! replica protocol. The core decides whom to ask, what counts as an acknowledgement, when to
//! hint and what to repair; this module only sends, serves its own share locally, and sleeps
//! until the core's next deadline.

use std::time::{Duration, Instant};

use bavard_replica::{
    Coordination, Failure, Outgoing, QuorumError, Read, ReadOptions, Request, Response, Write,
};
use bavard_routing::Key;
use bavard_store::{Record, RecordStore as _};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::service::Replica;
use crate::api::{Consistency, NodeError, PutReply};
use crate::context::peer_key;
use crate::kad::lookup::LookupKind;
use crate::metrics::Stage;
use crate::util::unix_ms;

/// What a conditional write expects to find: it is a compare-and-set, decided by a consensus
/// round on the key's replicas (see [`super::paxos`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The current live value's version has this HLC timestamp (as `x-bavard-version` and a
    /// write's `version` show it).
    Version(u64),
    /// No live value (absent or deleted).
    Absent,
}

impl Replica {
    /// The preference list of `key` and the fallbacks beyond it.
    ///
    /// Once the membership knows other members, the placement's N closest healthy members and
    /// the rest in order (zero-hop, as Dynamo and Cassandra route: every node of a converged
    /// cluster computes the same list without a round trip). Before that, the N closest among
    /// the live bavard peers a lookup finds, the routing table (which may still hold a replica
    /// that is down) and this node.
    pub(super) async fn place(&self, key: &[u8]) -> Result<(Vec<PeerId>, Vec<PeerId>), NodeError> {
        let n = self.ctx.config.kad.replication_factor;
        let target = Key::hash(key);
        let (placement, converged) = self.placement_view();
        if converged {
            let mut ranked = placement.ranked(&target);
            let fallbacks = ranked.split_off(n.min(ranked.len()));
            return Ok((ranked, fallbacks));
        }
        // Only bavard nodes (which speak the replica protocol) hold replicas; stock libp2p
        // Kademlia nodes in the same DHT are routed through but never chosen.
        let kv_peers = self.ctx.kv_peers.lock().expect("kv peers lock").clone();
        let live: Vec<PeerId> = self
            .kad
            .lookup(key, LookupKind::FindNode)
            .await?
            .closest
            .into_iter()
            .filter(|p| kv_peers.contains(p) && self.ctx.admission.is_admitted(p))
            .collect();
        let mut all: Vec<PeerId> = live.clone();
        all.extend(
            self.ctx
                .table
                .lock()
                .expect("table lock")
                .closest(&target, n + 8)
                .into_iter()
                .map(|e| e.peer)
                .filter(|p| kv_peers.contains(p) && self.ctx.admission.is_admitted(p)),
        );
        all.push(self.ctx.peer_id);
        all.sort_by_key(|p| peer_key(p).distance(&target));
        all.dedup();
        let preferred: Vec<PeerId> = all.iter().take(n).copied().collect();
        let fallbacks = live
            .into_iter()
            .filter(|p| !preferred.contains(p))
            .collect();
        Ok((preferred, fallbacks))
    }

    /// Writes `record` to its preference list; returns once W replicas stored it durably (the
    /// others keep being written, or hinted, in the background).
    pub(crate) async fn write(
        &self,
        record: Record,
        consistency: Consistency,
    ) -> Result<PutReply, NodeError> {
        self.pace.foreground();
        let required = consistency.required(self.ctx.config.kad.replication_factor);
        let stages = &self.ctx.metrics.stages;
        let started = Instant::now();
        let (preferred, fallbacks) = self.place(&record.key).await?;
        stages.since(Stage::place, started);
        let started = Instant::now();
        let key = String::from_utf8_lossy(&record.key).into_owned();
        let version = record.version.hlc.to_string();
        // A large value's replicas answer once they fetched its blob.
        let timeout = self.ctx.config.kad.request_timeout()
            + super::large::transfer_allowance(record.blob().map_or(0, |(_, size)| size));
        let write = Write::new(
            record,
            self.ctx.peer_id,
            preferred,
            fallbacks,
            required,
            Instant::now(),
            timeout,
        );
        let result = self
            .coordinate(
                write,
                |w| w.result().cloned(),
                |replica, w| {
                    replica
                        .ctx
                        .metrics
                        .hints_handed
                        .inc_by(w.hints_handed() as u64);
                },
            )
            .await?;
        stages.since(Stage::coordinate_put, started);
        match result {
            Ok(acks) => Ok(PutReply {
                key,
                version,
                acks,
                round_trips: None,
                key_encoding: None,
                key_hex: None,
            }),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Reads `key` from its preference list; returns the newest record (tombstones included)
    /// once R replicas answered, and repairs stale replicas in the background.
    pub(crate) async fn read(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Record>, NodeError> {
        self.pace.foreground();
        let required = consistency.required(self.ctx.config.kad.replication_factor);
        let stages = &self.ctx.metrics.stages;
        let started = Instant::now();
        let (mut preferred, _) = self.place(key).await?;
        stages.since(Stage::place, started);
        let started = Instant::now();
        // This node reads its own replica first: no round trip.
        if let Some(me) = preferred.iter().position(|p| *p == self.ctx.peer_id) {
            preferred[..=me].rotate_right(1);
        }
        let options = ReadOptions {
            timeout: self.ctx.config.kad.request_timeout(),
            read_repair: self.ctx.config.replication.read_repair,
            repair_wait: self.repair_wait(),
            speculate_after: self.speculate_after(),
        };
        let read = Read::new(key.to_vec(), preferred, required, Instant::now(), options);
        let (result, speculated) = self
            .coordinate(
                read,
                // Whether it asked more replicas is known once it has a result.
                |r| r.result().cloned().map(|result| (result, r.speculated())),
                |replica, r| {
                    replica.ctx.metrics.read_repairs.inc_by(r.repaired() as u64);
                },
            )
            .await?;
        if speculated {
            self.ctx.metrics.read_speculations.inc();
        }
        stages.since(Stage::coordinate_get, started);
        result.map_err(|e| self.unavailable(e))
    }

    /// How long a read waits for its first replicas before asking the others (see
    /// `[replication] speculative_read_ms`).
    fn speculate_after(&self) -> Duration {
        let timeout = self.ctx.config.kad.request_timeout();
        match self.ctx.config.replication.speculative_read_ms {
            Some(ms) => {
                Duration::try_from_secs_f64(ms / 1000.0).map_or(timeout, |d| d.min(timeout))
            }
            None => self
                .answer_time
                .lock()
                .expect("answer time lock")
                .speculate_after(timeout),
        }
    }

    fn unavailable(&self, e: QuorumError) -> NodeError {
        self.ctx.metrics.quorum_failures.inc();
        let (mut live, _) = super::placement_members(&self.ctx);
        live.sort();
        live.dedup();
        NodeError::Unavailable {
            answered: e.answered,
            required: e.required,
            live_members: live.len().max(1),
            replication_factor: self.ctx.config.kad.replication_factor,
        }
    }

    /// Drives `c` in a task of its own until it is finished; returns its result as soon as
    /// `result` has one, and calls `done` at the end (for metrics).
    async fn coordinate<C, T>(
        &self,
        c: C,
        result: fn(&C) -> Option<T>,
        done: fn(&Replica, &C),
    ) -> Result<T, NodeError>
    where
        C: Coordination<PeerId> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let replica = self.clone();
        tokio::spawn(async move {
            let c = replica.drive(c, tx, result).await;
            done(&replica, &c);
        });
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    async fn drive<C, T>(&self, mut c: C, tx: oneshot::Sender<T>, result: fn(&C) -> Option<T>) -> C
    where
        C: Coordination<PeerId>,
    {
        let mut tx = Some(tx);
        let mut in_flight = FuturesUnordered::new();
        loop {
            while let Some(out) = c.poll_send() {
                in_flight.push(self.send(out));
            }
            if tx.is_some()
                && let Some(r) = result(&c)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(r);
            }
            if c.is_finished() || self.ctx.is_shutting_down() {
                return c;
            }
            let deadline = c
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + self.repair_wait());
            tokio::select! {
                Some((id, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                    c.handle_response(Instant::now(), id, answer);
                }
                _ = tokio::time::sleep_until(deadline) => c.handle_timeout(Instant::now()),
            }
        }
    }

    /// Sends one request of a coordination; a request to this node is served locally.
    async fn send(
        &self,
        out: Outgoing<PeerId>,
    ) -> (bavard_replica::RequestId, Result<Response, Failure>) {
        let answer = if out.to == self.ctx.peer_id {
            self.serve_locally(out.request).await
        } else if matches!(out.request, Request::Fetch { .. }) {
            let sent = Instant::now();
            let answer = self.call(out.to, out.request).await;
            if answer.is_ok() {
                self.answer_time
                    .lock()
                    .expect("answer time lock")
                    .observe(sent.elapsed());
            }
            answer
        } else {
            self.call(out.to, out.request).await
        };
        (out.id, answer)
    }

    async fn serve_locally(&self, request: Request<PeerId>) -> Result<Response, Failure> {
        match request {
            Request::Store { records, hint_for } => self
                .store(records, hint_for, None)
                .await
                .map_err(Failure::Refused),
            Request::Fetch { keys } => {
                let now = unix_ms();
                let mut records = Vec::new();
                for key in &keys {
                    match self.storage.store.get(key, now) {
                        Ok(Some(r)) => records.push(r),
                        // A corrupt row counts as absent: the read repair rewrites it.
                        Ok(None) | Err(bavard_store::StoreError::Corrupt { .. }) => {}
                        Err(e) => return Err(Failure::Refused(e.to_string())),
                    }
                }
                Ok(Response::Fetch {
                    records,
                    covered: keys.len(),
                })
            }
            other => Err(Failure::Refused(format!("{other:?} is not served locally"))),
        }
    }
}
