//! The acceptor: one key's Paxos state on one replica, and the three rules that change it.

use bavard_store::Record;

use super::ballot::Ballot;
use super::message::{Accepted, PaxosRequest, PaxosResponse};

/// One key's acceptor state on one replica (Lamport, *Paxos Made Simple*, 2001, §2.2, with
/// Cassandra's per-partition bookkeeping): the highest ballot promised, the proposal accepted
/// and not yet seen committed, and the highest ballot seen committed.
///
/// Pure: each rule takes the current state and returns a [`Step`] — the state to persist, the
/// record to apply to the store, the answer — and changes nothing itself. The IO shell loads
/// the state (an absent row is [`Acceptor::default`]), runs the rule, writes
/// [`Step::persist`] (encoded with [`Acceptor::encode`]) and [`Step::apply`] in **one durable
/// transaction**, and only then sends [`Step::answer`]. Answering first would let a replica
/// that crashes forget a promise or an acceptance it already reported, and Paxos's safety rests
/// on acceptors never doing that.
///
/// Invariants (checked when decoding): `accepted.ballot > committed`, and `promised` is at
/// least both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acceptor {
    pub(super) promised: Option<Ballot>,
    pub(super) accepted: Option<Accepted>,
    pub(super) committed: Option<Ballot>,
}

/// What one acceptor rule decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the state must be persisted and the answer sent"]
pub struct Step {
    /// The new state to persist before answering; `None` when it did not change (a refusal, a
    /// duplicate message).
    pub persist: Option<Acceptor>,
    /// A chosen record to write to the key-value store (under last-writer-wins), in the same
    /// transaction as `persist`.
    pub apply: Option<Record>,
    /// The answer to send once `persist` and `apply` are durable.
    pub answer: PaxosResponse,
}

impl Acceptor {
    /// The highest ballot promised (or accepted, or committed: each implies a promise).
    pub fn promised(&self) -> Option<&Ballot> {
        self.promised.as_ref()
    }

    /// The proposal accepted and not yet seen committed.
    pub fn accepted(&self) -> Option<&Accepted> {
        self.accepted.as_ref()
    }

    /// The highest ballot seen committed.
    pub fn committed(&self) -> Option<&Ballot> {
        self.committed.as_ref()
    }

    /// Whether the state holds nothing worth keeping (an absent row means the same).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Runs the rule for `request`. `current` is the key's record in this replica's store
    /// (read in the transaction that will persist the step; `None` when absent or expired); only
    /// a prepare uses it.
    pub fn handle(&self, request: PaxosRequest, current: Option<Record>) -> Step {
        match request {
            PaxosRequest::Prepare { ballot, .. } => self.prepare(ballot, current),
            PaxosRequest::Propose { ballot, proposal } => self.propose(ballot, proposal),
            PaxosRequest::Commit { ballot, proposal } => self.commit(ballot, proposal),
        }
    }

    /// Phase 1 with the read merged in: promises `ballot` unless a ballot at least as high was
    /// promised (a repeat of the promised ballot is promised again, so a duplicated message is
    /// harmless) or one at least as high committed. The promise carries `current`, the
    /// accepted proposal and the last committed ballot.
    pub fn prepare(&self, ballot: Ballot, current: Option<Record>) -> Step {
        if !self.may_promise(&ballot) {
            return self.reject();
        }
        let mut next = self.clone();
        next.promised = Some(ballot);
        Step {
            answer: PaxosResponse::Promise {
                current,
                accepted: self.accepted.clone(),
                committed: self.committed.clone(),
            },
            persist: (next != *self).then_some(next),
            apply: None,
        }
    }

    /// Phase 2: accepts `proposal` under `ballot` unless a higher ballot was promised or one at
    /// least as high committed.
    pub fn propose(&self, ballot: Ballot, proposal: Record) -> Step {
        if !self.may_promise(&ballot) {
            return self.reject();
        }
        let next = Acceptor {
            promised: Some(ballot.clone()),
            accepted: Some(Accepted { ballot, proposal }),
            committed: self.committed.clone(),
        };
        Step {
            answer: PaxosResponse::Accepted,
            persist: (next != *self).then_some(next),
            apply: None,
        }
    }

    /// The proposal was chosen under `ballot`: apply it (always: the store's last-writer-wins
    /// merge makes a late or repeated commit harmless), remember the ballot as committed, and
    /// drop the accepted proposal if it is no newer. Never refused.
    pub fn commit(&self, ballot: Ballot, proposal: Record) -> Step {
        let mut next = self.clone();
        if next.committed.as_ref().is_none_or(|c| *c < ballot) {
            next.committed = Some(ballot.clone());
        }
        // A commit is evidence that a quorum promised its ballot: refusing lower ballots from
        // now on costs nothing and turns away stale messages sooner.
        if next.promised.as_ref().is_none_or(|p| *p < ballot) {
            next.promised = Some(ballot.clone());
        }
        if next.accepted.as_ref().is_some_and(|a| a.ballot <= ballot) {
            next.accepted = None;
        }
        Step {
            answer: PaxosResponse::Committed,
            persist: (next != *self).then_some(next),
            apply: Some(proposal),
        }
    }

    fn may_promise(&self, ballot: &Ballot) -> bool {
        self.promised.as_ref().is_none_or(|p| ballot >= p)
            && self.committed.as_ref().is_none_or(|c| ballot > c)
    }

    fn reject(&self) -> Step {
        let promised = match (&self.promised, &self.committed) {
            (Some(p), Some(c)) => p.max(c).clone(),
            (Some(b), None) | (None, Some(b)) => b.clone(),
            // may_promise refuses nothing without a promise or a commit.
            (None, None) => Ballot::default(),
        };
        Step {
            persist: None,
            apply: None,
            answer: PaxosResponse::Rejected { promised },
        }
    }

    /// Whether the invariants hold (see the type's docs).
    pub(super) fn is_consistent(&self) -> bool {
        let accepted_ok = self.accepted.as_ref().is_none_or(|a| {
            self.committed.as_ref().is_none_or(|c| a.ballot > *c)
                && self.promised.as_ref().is_some_and(|p| *p >= a.ballot)
        });
        let committed_ok = self
            .committed
            .as_ref()
            .is_none_or(|c| self.promised.as_ref().is_some_and(|p| p >= c));
        accepted_ok && committed_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_store::HlcTimestamp;

    fn ballot(t: u64, node: u8) -> Ballot {
        Ballot::new(HlcTimestamp::new(t, 0), vec![node])
    }

    fn record(v: &str, version: &Ballot) -> Record {
        Record::new(
            b"k".to_vec(),
            v.as_bytes().to_vec(),
            version.as_version().clone(),
        )
    }

    /// Applies a step the way the shell does (persist, then answer).
    fn run(step: Step, state: &mut Acceptor) -> PaxosResponse {
        if let Some(next) = step.persist {
            *state = next;
        }
        step.answer
    }

    #[test]
    fn a_prepare_is_promised_and_persisted_before_its_answer() {
        let a = Acceptor::default();
        let step = a.prepare(ballot(5, 1), None);
        assert_eq!(
            step.persist.as_ref().unwrap().promised(),
            Some(&ballot(5, 1))
        );
        assert_eq!(
            step.answer,
            PaxosResponse::Promise {
                current: None,
                accepted: None,
                committed: None
            }
        );
        assert!(step.apply.is_none());
    }

    #[test]
    fn lower_ballots_are_refused_with_the_promise_and_change_nothing() {
        let mut a = Acceptor::default();
        run(a.prepare(ballot(5, 2), None), &mut a);
        for lower in [ballot(5, 1), ballot(4, 9)] {
            let step = a.prepare(lower.clone(), None);
            assert_eq!(step.persist, None);
            assert_eq!(
                step.answer,
                PaxosResponse::Rejected {
                    promised: ballot(5, 2)
                }
            );
            let step = a.propose(lower.clone(), record("x", &lower));
            assert_eq!(step.persist, None);
            assert!(matches!(step.answer, PaxosResponse::Rejected { .. }));
        }
    }

    #[test]
    fn a_duplicate_prepare_is_promised_again_without_a_write() {
        let mut a = Acceptor::default();
        run(a.prepare(ballot(5, 1), None), &mut a);
        let step = a.prepare(ballot(5, 1), None);
        assert_eq!(step.persist, None);
        assert!(matches!(step.answer, PaxosResponse::Promise { .. }));
    }

    #[test]
    fn an_accepted_proposal_is_reported_by_the_next_promise_until_committed() {
        let mut a = Acceptor::default();
        let b1 = ballot(5, 1);
        run(a.prepare(b1.clone(), None), &mut a);
        assert_eq!(
            run(a.propose(b1.clone(), record("x", &b1)), &mut a),
            PaxosResponse::Accepted
        );
        let PaxosResponse::Promise { accepted, .. } = run(a.prepare(ballot(6, 2), None), &mut a)
        else {
            panic!("expected a promise");
        };
        assert_eq!(accepted.unwrap().proposal, record("x", &b1));
        // The proposer of ballot 6 finishes it: re-proposes it under its ballot, commits.
        run(a.propose(ballot(6, 2), record("x", &b1)), &mut a);
        let step = a.commit(ballot(6, 2), record("x", &b1));
        assert_eq!(step.apply, Some(record("x", &b1)));
        run(step, &mut a);
        assert_eq!(a.accepted(), None);
        assert_eq!(a.committed(), Some(&ballot(6, 2)));
        let PaxosResponse::Promise {
            accepted,
            committed,
            ..
        } = run(a.prepare(ballot(7, 1), None), &mut a)
        else {
            panic!("expected a promise");
        };
        assert_eq!((accepted, committed), (None, Some(ballot(6, 2))));
    }

    #[test]
    fn a_stale_commit_is_applied_but_keeps_a_newer_acceptance() {
        let mut a = Acceptor::default();
        let (b1, b2) = (ballot(5, 1), ballot(6, 1));
        run(a.propose(b2.clone(), record("new", &b2)), &mut a);
        let step = a.commit(b1.clone(), record("old", &b1));
        assert_eq!(step.apply, Some(record("old", &b1)));
        run(step, &mut a);
        assert_eq!(a.accepted().unwrap().ballot, b2);
        assert_eq!(a.committed(), Some(&b1));
        assert_eq!(a.promised(), Some(&b2));
        assert!(a.is_consistent());
    }

    #[test]
    fn after_a_commit_its_ballot_and_lower_ones_are_refused() {
        let mut a = Acceptor::default();
        let b = ballot(5, 1);
        run(a.commit(b.clone(), record("x", &b)), &mut a);
        let step = a.propose(b.clone(), record("x", &b));
        assert_eq!(
            step.answer,
            PaxosResponse::Rejected {
                promised: b.clone()
            }
        );
        assert!(matches!(
            a.prepare(b.clone(), None).answer,
            PaxosResponse::Rejected { .. }
        ));
        assert!(matches!(
            a.prepare(ballot(5, 2), None).answer,
            PaxosResponse::Promise { .. }
        ));
    }

    #[test]
    fn handle_dispatches_each_request_to_its_rule() {
        let a = Acceptor::default();
        let b = ballot(1, 1);
        let current = Some(record("cur", &ballot(0, 1)));
        let step = a.handle(
            PaxosRequest::Prepare {
                key: b"k".to_vec(),
                ballot: b.clone(),
            },
            current.clone(),
        );
        assert!(matches!(step.answer, PaxosResponse::Promise { current: c, .. } if c == current));
        let step = a.handle(
            PaxosRequest::Commit {
                ballot: b.clone(),
                proposal: record("x", &b),
            },
            None,
        );
        assert_eq!(step.answer, PaxosResponse::Committed);
    }
}
