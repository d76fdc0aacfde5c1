//! The acceptor side: one key's Paxos step on this replica, durable before it is answered.

use bavard_proto::store as pb;
use bavard_replica::paxos::{Acceptor, PaxosRequest, PaxosResponse, StateDecodeError};
use bavard_store::{HlcTimestamp, RecordStore, StoreError};
use libp2p::PeerId;

use crate::replica::service::Replica;
use crate::replica::wire::{paxos_request_from_pb, paxos_response_to_pb};
use crate::util::unix_ms;

/// Why this replica refused a Paxos request. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptorError {
    /// The key's acceptor row does not decode: the key's requests are refused until it is
    /// repaired (reading it as empty could forget a promise).
    #[error("the acceptor state of this key is unreadable: {0}")]
    State(#[from] StateDecodeError),
    /// The store refused or failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl Replica {
    /// Serves a Paxos request from the replica protocol (`peer` is an admitted member).
    pub(crate) async fn serve_paxos_pb(
        &self,
        peer: PeerId,
        kind: pb::request::Kind,
    ) -> Result<pb::response::Kind, String> {
        let req = paxos_request_from_pb(kind).map_err(|e| e.to_string())?;
        let answer = self.serve_paxos(Some(peer), req).await?;
        Ok(paxos_response_to_pb(answer))
    }

    /// Runs one acceptor step for `req` — from `from`, or from this node's own proposer when
    /// `None` — and answers once its state (and a commit's record) is durable.
    pub(crate) async fn serve_paxos(
        &self,
        from: Option<PeerId>,
        req: PaxosRequest,
    ) -> Result<PaxosResponse, String> {
        if let Some(e) = self.storage.failure() {
            return Err(format!("this replica's storage failed: {e}"));
        }
        if let Some(peer) = from
            && req.ballot().node() != peer.to_bytes().as_slice()
        {
            return Err("the ballot is not the sender's".into());
        }
        let max_key = self.ctx.config.store.max_key_size;
        if req.key().len() > max_key {
            return Err(format!(
                "the key is {} bytes, over the {max_key}-byte limit",
                req.key().len()
            ));
        }
        let now = unix_ms();
        // Ballots and versions from the future would win every later comparison.
        self.storage
            .check_timestamp(req.ballot().timestamp(), now)?;
        if let PaxosRequest::Propose { proposal, .. } | PaxosRequest::Commit { proposal, .. } = &req
        {
            self.storage
                .check_timestamp(HlcTimestamp::from_u64(proposal.version.hlc), now)?;
        }
        let key = req.key().to_vec();
        let guard = self.storage.acceptor_locks.lock(key.clone()).await;
        let store = self.storage.store.clone();
        // The guard moves into the blocking task: if this request is abandoned (its deadline),
        // the key stays locked until the step is written.
        let step = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            step(&*store, &key, req, now)
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?;
        step.map_err(|e| {
            tracing::debug!("paxos request refused: {e}");
            e.to_string()
        })
    }
}

/// Loads the key's state, runs the rule, persists its state and record in one transaction, and
/// returns the answer.
pub(crate) fn step(
    store: &dyn RecordStore,
    key: &[u8],
    req: PaxosRequest,
    now_ms: u64,
) -> Result<PaxosResponse, AcceptorError> {
    let state = match store.paxos_row(key)? {
        None => Acceptor::default(),
        Some(row) => Acceptor::decode(key, &row)?,
    };
    let current = match &req {
        PaxosRequest::Prepare { .. } => match store.get(key, now_ms) {
            Ok(current) => current,
            // A corrupt record counts as absent, as for a fetch: the other replicas' answers
            // carry the value, and the next commit rewrites it.
            Err(StoreError::Corrupt { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        PaxosRequest::Propose { .. } | PaxosRequest::Commit { .. } => None,
    };
    let step = state.handle(req, current);
    if step.persist.is_some() || step.apply.is_some() {
        let row = step.persist.as_ref().map(Acceptor::encode);
        store.paxos_write(key, row.as_deref(), step.apply, now_ms)?;
    }
    Ok(step.answer)
}

#[cfg(test)]
mod tests {
    use bavard_replica::paxos::Ballot;
    use bavard_store::{MemoryStore, Record, StoreConfig};

    use super::*;

    fn ballot(t: u64) -> Ballot {
        Ballot::new(HlcTimestamp::new(t, 0), b"p".to_vec())
    }

    #[test]
    fn a_step_persists_before_answering_and_a_commit_applies_its_record() {
        let store = MemoryStore::new(StoreConfig::new(b"me".to_vec()));
        let b = ballot(10);
        let prepare = PaxosRequest::Prepare {
            key: b"k".to_vec(),
            ballot: b.clone(),
        };
        assert!(matches!(
            step(&store, b"k", prepare, 0).unwrap(),
            PaxosResponse::Promise { current: None, .. }
        ));
        let row = store
            .paxos_row(b"k")
            .unwrap()
            .expect("the promise is persisted");
        assert_eq!(Acceptor::decode(b"k", &row).unwrap().promised(), Some(&b));
        let record = Record::new(b"k".to_vec(), b"v".to_vec(), b.as_version().clone());
        let propose = PaxosRequest::Propose {
            ballot: b.clone(),
            proposal: record.clone(),
        };
        assert_eq!(
            step(&store, b"k", propose, 0).unwrap(),
            PaxosResponse::Accepted
        );
        assert_eq!(store.get(b"k", 0).unwrap(), None, "accepted is not applied");
        let commit = PaxosRequest::Commit {
            ballot: b.clone(),
            proposal: record.clone(),
        };
        assert_eq!(
            step(&store, b"k", commit, 0).unwrap(),
            PaxosResponse::Committed
        );
        assert_eq!(store.get(b"k", 0).unwrap(), Some(record));
        let row = store.paxos_row(b"k").unwrap().unwrap();
        let state = Acceptor::decode(b"k", &row).unwrap();
        assert_eq!((state.accepted(), state.committed()), (None, Some(&b)));
        // A lower ballot is refused and changes nothing.
        let stale = PaxosRequest::Prepare {
            key: b"k".to_vec(),
            ballot: ballot(5),
        };
        assert!(matches!(
            step(&store, b"k", stale, 0).unwrap(),
            PaxosResponse::Rejected { .. }
        ));
        assert_eq!(store.paxos_row(b"k").unwrap().unwrap(), row);
    }

    #[test]
    fn an_unreadable_row_refuses_the_key_instead_of_forgetting_its_promise() {
        let store = MemoryStore::new(StoreConfig::new(b"me".to_vec()));
        store.paxos_write(b"k", Some(&[9, 9]), None, 0).unwrap();
        let prepare = PaxosRequest::Prepare {
            key: b"k".to_vec(),
            ballot: ballot(10),
        };
        assert!(matches!(
            step(&store, b"k", prepare, 0),
            Err(AcceptorError::State(_))
        ));
        assert_eq!(store.paxos_row(b"k").unwrap().unwrap(), vec![9, 9]);
    }
}
