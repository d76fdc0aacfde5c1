//! The coordinator: the node a client talks to runs each write and read against the key's
//! preference list, counting durable acknowledgements (writes) or answers (reads).

use bavard_store::RecordStore as _;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bavard_proto::store as pb;
use bavard_routing::Key;
use bavard_store::{PutOutcome, Record};
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::KV_PROTOCOL;
use super::wire::record_to_pb;
use crate::api::{Consistency, NodeError, PutReply};
use crate::kad::lookup::LookupKind;
use crate::node::{Node, RequestError, peer_key, retry_broken_stream};

/// What a conditional write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The newest version a quorum reports has this HLC timestamp.
    Version(u64),
    /// No live value (absent or deleted).
    Absent,
}

/// A key's preference list and the live nodes beyond it (fallbacks for hinted handoff).
struct Placement {
    preferred: Vec<PeerId>,
    fallbacks: VecDeque<PeerId>,
}

impl Node {
    /// Sends one replica-protocol request to `peer` under the request timeout.
    ///
    /// A request whose stream breaks before the answer (a yamux stream reset or a closed
    /// substream under load) is sent again on a fresh stream ([`retry_broken_stream`]): every
    /// request of this protocol is idempotent (a store of the same version is `UNCHANGED`), so a
    /// retry cannot double-apply.
    pub(crate) async fn kv_request(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
    ) -> Result<pb::response::Kind, RequestError> {
        if peer == self.inner.peer_id {
            return Err(RequestError::SelfRequest);
        }
        let timeout = self.inner.config.kad.request_timeout();
        retry_broken_stream(peer, timeout, || self.kv_request_once(peer, kind.clone())).await
    }

    async fn kv_request_once(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
    ) -> Result<pb::response::Kind, RequestError> {
        if let Some(faults) = &self.inner.faults
            && faults.outbound(&peer).await.is_err()
        {
            // A lost request looks like an unanswered one: the caller's deadline ends it.
            std::future::pending::<()>().await;
        }
        let max = self.inner.config.limits.max_message_size;
        let req = pb::Request { kind: Some(kind) };
        let pool = &self.inner.kv_streams;
        if let Some(stream) = pool.take(&peer, std::time::Instant::now()) {
            match self.exchange(stream, &req, max).await {
                Ok((resp, stream)) => {
                    pool.put(peer, stream, std::time::Instant::now());
                    return resp
                        .kind
                        .ok_or_else(|| RequestError::Protocol("empty response".into()));
                }
                // A pooled stream the peer closed meanwhile (or that broke): the request is
                // idempotent, send it on a new stream.
                Err(e) => tracing::debug!(%peer, "pooled replica stream failed ({e}), opening one"),
            }
        }
        let mut control = self.inner.control.clone();
        let stream = control
            .open_stream(peer, KV_PROTOCOL)
            .await
            .map_err(|e| match e {
                libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => RequestError::Unsupported,
                other => RequestError::Dial(other.to_string()),
            })?;
        let (resp, stream) = self.exchange(stream, &req, max).await?;
        pool.put(peer, stream, std::time::Instant::now());
        resp.kind
            .ok_or_else(|| RequestError::Protocol("empty response".into()))
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
        self.inner.metrics.bytes_out.inc_by(sent as u64);
        let resp: pb::Response = crate::wire::read_message(&mut stream, max)
            .await
            .map_err(|e| RequestError::Io(e.to_string()))?
            .ok_or_else(|| RequestError::Io("stream closed before the response".into()))?;
        self.inner
            .metrics
            .bytes_in
            .inc_by(prost::Message::encoded_len(&resp) as u64);
        Ok((resp, stream))
    }

    /// The preference list of `key`.
    ///
    /// When the gossip membership knows other members, it is the N closest healthy members
    /// (zero-hop, as Dynamo and Cassandra route: every node of a converged cluster computes the
    /// same list without a round trip; members the failure detector declared dead are skipped).
    /// Otherwise it is the N closest among the live peers a lookup finds, the routing table (which
    /// may still hold a replica that is down) and this node.
    async fn placement(&self, key: &[u8]) -> Result<Placement, NodeError> {
        let n = self.inner.config.kad.replication_factor;
        let target = Key::hash(key);
        let me = self.inner.peer_id;
        let (placement, converged) = super::placement_view(self);
        if converged {
            // As Dynamo's sloppy quorum: the first N *healthy* members, skipping those the
            // failure detector declared dead, so a key stays writable and readable at quorum
            // while up to N-1 of its owners are down; anti-entropy and read repair bring an owner
            // up to date when it is back. The rest are the fallbacks that keep hints.
            let mut ranked = placement.ranked(&target);
            let fallbacks = ranked.split_off(n.min(ranked.len()));
            return Ok(Placement {
                preferred: ranked,
                fallbacks: fallbacks.into(),
            });
        }
        // Only bavard nodes (which speak the replica protocol) hold replicas; stock libp2p
        // Kademlia nodes in the same DHT are routed through but never chosen.
        let kv_peers = self.inner.kv_peers.lock().expect("kv peers lock").clone();
        let live: Vec<PeerId> = self
            .lookup(key, LookupKind::FindNode)
            .await?
            .closest
            .into_iter()
            .filter(|p| kv_peers.contains(p))
            .collect();
        let mut all: Vec<PeerId> = live.clone();
        all.extend(
            self.inner
                .table
                .lock()
                .expect("table lock")
                .closest(&target, n + 8)
                .into_iter()
                .map(|e| e.peer)
                .filter(|p| kv_peers.contains(p)),
        );
        all.push(me);
        all.sort_by_key(|p| peer_key(p).distance(&target));
        all.dedup();
        let preferred: Vec<PeerId> = all.iter().take(n).copied().collect();
        let fallbacks = live
            .into_iter()
            .filter(|p| !preferred.contains(p))
            .collect();
        Ok(Placement {
            preferred,
            fallbacks,
        })
    }

    /// Writes `record` to its preference list; returns once W replicas stored it durably.
    pub(crate) async fn coordinate_write(
        &self,
        record: Record,
        consistency: Consistency,
    ) -> Result<PutReply, NodeError> {
        let n = self.inner.config.kad.replication_factor;
        let required = consistency.required(n);
        let placement = self.placement(&record.key).await?;
        let key = String::from_utf8_lossy(&record.key).into_owned();
        let version = record.version.hlc.to_string();
        let fallbacks = Arc::new(Mutex::new(placement.fallbacks));
        let (tx, mut rx) = mpsc::unbounded_channel::<bool>();
        for replica in placement.preferred {
            let node = self.clone();
            let record = record.clone();
            let fallbacks = fallbacks.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let ok = node.store_at(replica, &record, None).await;
                let ok = if ok || replica == node.inner.peer_id {
                    ok
                } else {
                    // Sloppy quorum: the next live node keeps a hint for the missing replica.
                    let mut ok = false;
                    loop {
                        let next = fallbacks.lock().expect("fallbacks lock").pop_front();
                        let Some(f) = next else { break };
                        if node.store_at(f, &record, Some(replica)).await {
                            node.inner.metrics.hints_handed.inc();
                            ok = true;
                            break;
                        }
                    }
                    ok
                };
                let _ = tx.send(ok);
            });
        }
        drop(tx);
        let mut acks = 0;
        while let Some(ok) = rx.recv().await {
            if ok {
                acks += 1;
                if acks >= required {
                    return Ok(PutReply { key, version, acks });
                }
            }
        }
        self.inner.metrics.quorum_failures.inc();
        Err(NodeError::Unavailable {
            answered: acks,
            required,
        })
    }

    /// Stores `record` on `peer` (this node included), as a hint for `hint_for` if given; true
    /// once it is durable there.
    async fn store_at(&self, peer: PeerId, record: &Record, hint_for: Option<PeerId>) -> bool {
        if peer == self.inner.peer_id {
            return matches!(
                self.inner.committer.put(record.clone()).await,
                Ok(PutOutcome::Stored | PutOutcome::Unchanged | PutOutcome::Stale { .. })
            );
        }
        let req = pb::request::Kind::Store(pb::StoreRequest {
            records: vec![record_to_pb(record)],
            hint_for: hint_for.map(|p| p.to_bytes()).unwrap_or_default(),
        });
        match self.kv_request(peer, req).await {
            Ok(pb::response::Kind::Store(resp)) => resp
                .results
                .first()
                .is_some_and(|r| r.outcome != pb::Outcome::Rejected as i32),
            Ok(other) => {
                tracing::debug!(%peer, "unexpected answer to a store: {other:?}");
                false
            }
            Err(e) => {
                tracing::debug!(%peer, "store failed: {e}");
                false
            }
        }
    }

    /// Reads `key` from its preference list; returns the newest record (tombstones included) once
    /// R replicas answered, and repairs stale replicas in the background.
    pub(crate) async fn coordinate_read(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Record>, NodeError> {
        let n = self.inner.config.kad.replication_factor;
        let required = consistency.required(n);
        let placement = self.placement(key).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<(PeerId, Option<Record>)>();
        for replica in placement.preferred.iter().copied() {
            let node = self.clone();
            let tx = tx.clone();
            let key = key.to_vec();
            tokio::spawn(async move {
                if let Some(answer) = node.fetch_at(replica, &key).await {
                    let _ = tx.send((replica, answer));
                }
            });
        }
        drop(tx);
        let mut answers: Vec<(PeerId, Option<Record>)> = Vec::new();
        while answers.len() < required {
            match rx.recv().await {
                Some(a) => answers.push(a),
                None => break,
            }
        }
        if answers.len() < required {
            self.inner.metrics.quorum_failures.inc();
            return Err(NodeError::Unavailable {
                answered: answers.len(),
                required,
            });
        }
        let newest = newest(&answers);
        if self.inner.config.replication.read_repair
            && let Some(best) = newest.clone()
        {
            // Wait for the stragglers in the background, then repair everyone behind.
            let node = self.clone();
            let wait = self.inner.config.kad.request_timeout();
            tokio::spawn(async move {
                let deadline = tokio::time::sleep(wait);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        a = rx.recv() => match a { Some(a) => answers.push(a), None => break },
                        _ = &mut deadline => break,
                    }
                }
                node.repair(&best, &answers).await;
            });
        }
        Ok(newest)
    }

    /// Sends `best` to the replicas that answered with an older version or none.
    async fn repair(&self, best: &Record, answers: &[(PeerId, Option<Record>)]) {
        let mut repaired = HashSet::new();
        for (peer, answer) in answers {
            let behind = answer.as_ref().is_none_or(|r| r.version < best.version);
            if behind && repaired.insert(*peer) && self.store_at(*peer, best, None).await {
                self.inner.metrics.read_repairs.inc();
            }
        }
    }

    /// Reads `key` on `peer`; `None` when it did not answer, `Some(None)` when it has no record.
    async fn fetch_at(&self, peer: PeerId, key: &[u8]) -> Option<Option<Record>> {
        if peer == self.inner.peer_id {
            return self.inner.store.get(key, crate::util::unix_ms()).ok();
        }
        let req = pb::request::Kind::Fetch(pb::FetchRequest {
            keys: vec![key.to_vec()],
        });
        match self.kv_request(peer, req).await {
            Ok(pb::response::Kind::Fetch(f)) => Some(
                f.records
                    .into_iter()
                    .filter_map(|r| super::wire::record_from_pb(r).ok())
                    .find(|r| r.key == key),
            ),
            Ok(other) => {
                tracing::debug!(%peer, "unexpected answer to a fetch: {other:?}");
                None
            }
            Err(e) => {
                tracing::debug!(%peer, "fetch failed: {e}");
                None
            }
        }
    }

    /// Checks a conditional write's expectation against the newest version a quorum reports.
    pub(crate) async fn check_condition(
        &self,
        key: &[u8],
        condition: Condition,
    ) -> Result<(), NodeError> {
        let current = self.coordinate_read(key, Consistency::Quorum).await?;
        let live = current.filter(|r| !r.is_tombstone());
        let ok = match (condition, &live) {
            (Condition::Absent, None) => true,
            (Condition::Absent, Some(_)) => false,
            (Condition::Version(v), Some(r)) => r.version.hlc == v,
            (Condition::Version(_), None) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(NodeError::Conflict {
                current: live
                    .map(|r| r.version.hlc.to_string())
                    .unwrap_or_else(|| "none".into()),
            })
        }
    }
}

fn newest(answers: &[(PeerId, Option<Record>)]) -> Option<Record> {
    answers
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .max_by(|a, b| a.version.cmp(&b.version))
        .cloned()
}
