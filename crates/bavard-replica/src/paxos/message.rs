//! The Paxos messages between a proposer and a key's replicas, as domain types (the node
//! converts them to and from its wire protocol; the simulator and the tests pass them as they
//! are).

use bavard_store::Record;

use super::ballot::Ballot;

/// A proposal an acceptor accepted under a ballot and has not seen committed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The ballot it was accepted under.
    pub ballot: Ballot,
    /// The record it would write (its key is the key of the round; its version is the ballot
    /// of the proposer that first proposed it, which a proposer finishing it keeps).
    pub proposal: Record,
}

/// What a proposer asks one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaxosRequest {
    /// Phase 1 merged with the read (Paxos v2): promise to ignore lower ballots, and send back
    /// the key's current record and any accepted, uncommitted proposal.
    Prepare {
        /// The key.
        key: Vec<u8>,
        /// The proposer's ballot.
        ballot: Ballot,
    },
    /// Phase 2: accept `proposal` (for the key `proposal.key`) under `ballot`.
    Propose {
        /// The proposer's ballot.
        ballot: Ballot,
        /// The record to accept.
        proposal: Record,
    },
    /// The proposal was chosen under `ballot`: apply it to the store and forget it as in
    /// progress.
    Commit {
        /// The ballot it was chosen under.
        ballot: Ballot,
        /// The chosen record.
        proposal: Record,
    },
}

impl PaxosRequest {
    /// The key the request is about.
    pub fn key(&self) -> &[u8] {
        match self {
            PaxosRequest::Prepare { key, .. } => key,
            PaxosRequest::Propose { proposal, .. } | PaxosRequest::Commit { proposal, .. } => {
                &proposal.key
            }
        }
    }

    /// The request's ballot.
    pub fn ballot(&self) -> &Ballot {
        match self {
            PaxosRequest::Prepare { ballot, .. }
            | PaxosRequest::Propose { ballot, .. }
            | PaxosRequest::Commit { ballot, .. } => ballot,
        }
    }
}

/// What a replica answers.
// A promise carries two records, the other answers nothing: boxing them would cost an
// allocation per message to save a few hundred bytes on a value that is moved once, between a
// network read and the proposer.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaxosResponse {
    /// The prepare is promised: this replica will refuse every lower ballot from now on.
    Promise {
        /// The key's record in this replica's store (tombstones included; `None` when absent
        /// or expired).
        current: Option<Record>,
        /// The proposal accepted here and not yet committed, if any.
        accepted: Option<Accepted>,
        /// The highest ballot this replica saw committed for the key.
        committed: Option<Ballot>,
    },
    /// The proposal is accepted.
    Accepted,
    /// The commit is applied (durably).
    Committed,
    /// A prepare or proposal refused: the replica promised `promised`, which is at least as
    /// high (or saw it committed already).
    Rejected {
        /// The replica's promise.
        promised: Ballot,
    },
}

impl PaxosResponse {
    /// The message kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PaxosResponse::Promise { .. } => "promise",
            PaxosResponse::Accepted => "accepted",
            PaxosResponse::Committed => "committed",
            PaxosResponse::Rejected { .. } => "rejected",
        }
    }
}
