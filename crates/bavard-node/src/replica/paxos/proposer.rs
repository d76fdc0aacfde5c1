//! The proposer side: one linearizable operation driven against the key's replicas.

use std::time::{Duration, Instant};

use bavard_gossip::membership::MemberState;
use bavard_replica::paxos::{
    Cause, Completion, Condition, Operation, Outcome, Outgoing, PaxosConfig, PaxosRequest,
    PaxosResponse, Proposer, Update,
};
use bavard_replica::{Failure, Placement, RequestId};
use bavard_routing::Key;
use bavard_store::{HlcTimestamp, Record};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use tokio::sync::oneshot;

use crate::api::{NodeError, PutReply, Undecided};
use crate::config::secs;
use crate::context::peer_key;
use crate::replica::service::Replica;
use crate::replica::wire::{WireError, paxos_request_to_pb, paxos_response_from_pb};

/// What a client is told about why an operation was not decided.
fn cause_text(cause: &Cause) -> String {
    match cause {
        Cause::Contention => {
            "other writers kept winning the key's consensus rounds (contention)".into()
        }
        Cause::NoQuorum { answered, required } => {
            format!("only {answered} of the {required} required replicas answered")
        }
        Cause::Overtaken { .. } => "the value changed after an earlier attempt of this write \
                                    may have been accepted"
            .into(),
        Cause::Deadline => "the request deadline passed before the round was decided".into(),
    }
}

fn undecided(outcome: Undecided, cause: &Cause) -> NodeError {
    NodeError::Undecided {
        outcome,
        reason: cause_text(cause),
    }
}

impl Replica {
    /// Writes `update` to `key` if `condition` holds for its current value, as one consensus
    /// round on its replicas (a linearizable compare-and-set).
    pub(crate) async fn cas(
        &self,
        key: Vec<u8>,
        condition: Condition,
        update: Update,
    ) -> Result<PutReply, NodeError> {
        let shown = String::from_utf8_lossy(&key).into_owned();
        let (done, quorum) = self
            .paxos(key, Operation::Cas { condition, update })
            .await?;
        match done.outcome {
            Outcome::Committed { version } => Ok(PutReply {
                key: shown,
                version: version.hlc.to_string(),
                acks: quorum,
                round_trips: Some(done.round_trips),
                key_encoding: None,
                key_hex: None,
            }),
            Outcome::ConditionFailed { current } => Err(NodeError::Conflict {
                current: current.map_or_else(|| "none".into(), |r| r.version.hlc.to_string()),
            }),
            Outcome::NotApplied { cause } => Err(undecided(Undecided::NotApplied, &cause)),
            Outcome::Unknown { cause } => Err(undecided(Undecided::Unknown, &cause)),
            Outcome::Read { .. } => Err(NodeError::Storage(
                "internal error: a compare-and-set answered like a read".into(),
            )),
        }
    }

    /// Reads `key` through a consensus round: the newest committed value (tombstones count as
    /// absent), after finishing any write in progress.
    pub(crate) async fn serial_read(&self, key: Vec<u8>) -> Result<Option<Record>, NodeError> {
        let (done, _) = self.paxos(key, Operation::SerialRead).await?;
        match done.outcome {
            Outcome::Read { current } => Ok(current),
            Outcome::NotApplied { cause } | Outcome::Unknown { cause } => {
                Err(undecided(Undecided::NotApplied, &cause))
            }
            other => Err(NodeError::Storage(format!(
                "internal error: a serial read answered {other:?}"
            ))),
        }
    }

    /// Runs `op` on `key` against its N preferred replicas until decided or the request
    /// deadline; returns the completion and the quorum. The round goes on in the background
    /// after the answer (the commit to every replica).
    async fn paxos(&self, key: Vec<u8>, op: Operation) -> Result<(Completion, usize), NodeError> {
        self.pace.foreground();
        // The deadline of the whole operation: inside the HTTP request deadline, so that the
        // client hears whether the outcome is known rather than a bare 504.
        let request = secs(self.ctx.config.http.request_timeout_secs);
        let deadline = Instant::now() + request.mul_f64(0.9);
        let replicas = self.paxos_replicas(&key).await?;
        let config = PaxosConfig {
            timeout: self.ctx.config.kad.request_timeout(),
            ..PaxosConfig::default()
        };
        let ballot = self.storage.next_ballot(HlcTimestamp::ZERO)?;
        let proposer = Proposer::new(
            key,
            op,
            self.ctx.peer_id.to_bytes(),
            replicas,
            config,
            ballot,
            Instant::now(),
            rand::random(),
        );
        let quorum = proposer.quorum();
        let (tx, rx) = oneshot::channel();
        let replica = self.clone();
        tokio::spawn(async move { replica.drive_paxos(proposer, deadline, tx).await });
        let done = rx.await.map_err(|_| NodeError::ShuttingDown)?;
        self.ctx.metrics.cas.observe(&done);
        Ok((done, quorum))
    }

    /// The replicas of `key`'s consensus rounds: its N closest members by the placement rule,
    /// counting members that are down (suspect or dead) and leaving out only those that left or
    /// were revoked. The set must not move when a replica crashes: majorities of one key's rounds
    /// must intersect, and a crashed replica's accepted proposal must still be found when it
    /// returns (a round with a replica down goes on with the other two). Plain writes, which
    /// need no intersection, place on the healthy members instead. Before the membership knows
    /// other members, the preference list of plain writes.
    async fn paxos_replicas(&self, key: &[u8]) -> Result<Vec<PeerId>, NodeError> {
        let me = self.ctx.peer_id;
        let mut members: Vec<PeerId> = self
            .ctx
            .members
            .rows()
            .into_iter()
            .filter(|m| m.state != MemberState::Left && self.ctx.admission.is_admitted(&m.id))
            .map(|m| m.id)
            .collect();
        if members.len() > 1 && members.contains(&me) {
            members.sort();
            members.dedup();
            let placement = Placement::new(
                members.iter().map(|id| (*id, peer_key(id))),
                self.ctx.config.kad.replication_factor,
            );
            return Ok(placement.preference_list(&Key::hash(key)));
        }
        Ok(self.place(key).await?.0)
    }

    /// Drives `p` until it is finished (see the core's driving protocol); sends its completion
    /// on `tx` as soon as it has one, deciding it at `deadline` if it has none by then.
    async fn drive_paxos(
        &self,
        mut p: Proposer<PeerId>,
        deadline: Instant,
        tx: oneshot::Sender<Completion>,
    ) {
        let mut tx = Some(tx);
        let mut in_flight = FuturesUnordered::new();
        loop {
            loop {
                while let Some(out) = p.poll_send() {
                    in_flight.push(self.paxos_send(out));
                }
                let Some(floor) = p.poll_ballot() else { break };
                match self.storage.next_ballot(floor) {
                    Ok(ts) => p.handle_ballot(Instant::now(), ts),
                    Err(e) => {
                        tracing::warn!("no ballot for a compare-and-set: {e}");
                        p.handle_deadline();
                    }
                }
            }
            if self.ctx.is_shutting_down() {
                p.handle_deadline();
            }
            if let Some(done) = p.result()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(done.clone());
            }
            if p.is_finished() || self.ctx.is_shutting_down() {
                return;
            }
            let mut wake = p
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
            if tx.is_some() {
                wake = wake.min(deadline);
            }
            tokio::select! {
                Some((id, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                    p.handle_response(Instant::now(), id, answer);
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    let now = Instant::now();
                    if tx.is_some() && now >= deadline {
                        p.handle_deadline();
                    }
                    p.handle_timeout(now);
                }
            }
        }
    }

    /// Sends one request of a round; a request to this node goes to the local acceptor.
    async fn paxos_send(
        &self,
        out: Outgoing<PeerId>,
    ) -> (RequestId, Result<PaxosResponse, Failure>) {
        let answer = if out.to == self.ctx.peer_id {
            self.serve_paxos(None, out.request)
                .await
                .map_err(Failure::Refused)
        } else {
            self.paxos_call(out.to, &out.request).await
        };
        (out.id, answer)
    }

    /// One Paxos request to `peer`: a proposal at most once, a prepare or a commit (which repeat
    /// harmlessly) with the retry of broken streams.
    async fn paxos_call(&self, peer: PeerId, req: &PaxosRequest) -> Result<PaxosResponse, Failure> {
        let kind = paxos_request_to_pb(req);
        let answer = match req {
            PaxosRequest::Propose { .. } => self.request_at_most_once(peer, kind).await,
            PaxosRequest::Prepare { .. } | PaxosRequest::Commit { .. } => {
                self.request(peer, kind).await
            }
        };
        let answer = answer.map_err(|e| Failure::NoAnswer(e.to_string()))?;
        paxos_response_from_pb(answer).map_err(|e| match e {
            WireError::Refused(m) => Failure::Refused(m),
            other => Failure::Refused(format!("malformed answer: {other}")),
        })
    }
}
