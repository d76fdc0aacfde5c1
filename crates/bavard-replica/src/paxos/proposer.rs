//! The proposer: one compare-and-set or serial read, coordinated against a key's replicas.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bavard_store::{HlcTimestamp, Record, Value, Version};

use crate::coordinator::RequestId;
use crate::protocol::Failure;

use super::backoff::Backoff;
use super::ballot::Ballot;
use super::message::{Accepted, PaxosRequest, PaxosResponse};

/// The proposer's tunables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaxosConfig {
    /// How long each request waits for its answer.
    pub timeout: Duration,
    /// Prepare rounds one operation may start (the first included) before it gives up.
    pub max_attempts: u32,
    /// The fixed part of the backoff between contended attempts.
    pub backoff_base: Duration,
    /// The cap of the backoff's random part.
    pub backoff_max: Duration,
    /// Report a committed CAS only once a quorum applied the commit (3 round trips), so that
    /// quorum reads see it at once. By default the commit is sent without waiting ("early
    /// commit", 2 round trips): the value is chosen once a quorum accepted it, serial reads and
    /// later CAS see it at once, and quorum reads once the commit reached them.
    pub wait_for_commit: bool,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            max_attempts: 10,
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            wait_for_commit: false,
        }
    }
}

/// What a compare-and-set expects of the key's current live value (a tombstone counts as
/// absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No live value.
    Absent,
    /// A live value whose version has this HLC timestamp (as `?if_version=` and
    /// `x-bavard-version` show it). Values written by CAS have strictly increasing timestamps,
    /// so the timestamp alone names one of them.
    Version(u64),
    /// Nothing: an unconditional write that is still ordered with every other CAS (a serial
    /// write).
    Always,
}

impl Condition {
    /// Whether the condition holds for `live` (the current value, `None` when absent or a
    /// tombstone).
    pub fn holds(&self, live: Option<&Record>) -> bool {
        match (self, live) {
            (Condition::Always, _) | (Condition::Absent, None) => true,
            (Condition::Version(v), Some(r)) => r.version.hlc == *v,
            (Condition::Absent, Some(_)) | (Condition::Version(_), None) => false,
        }
    }
}

/// What a successful compare-and-set writes: a value or a tombstone, and the record's
/// metadata. The version is the ballot's, set by the proposer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The new value, or a tombstone for a conditional delete.
    pub value: Value,
    /// Expiry, unix ms.
    pub expires_at_ms: Option<u64>,
    /// The publisher's peer id.
    pub publisher: Option<Vec<u8>>,
}

impl Update {
    /// Writes `value`.
    pub fn put(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: Value::Data(value.into()),
            expires_at_ms: None,
            publisher: None,
        }
    }

    /// Deletes (a tombstone dated `deleted_at_ms`, unix ms).
    pub fn delete(deleted_at_ms: u64) -> Self {
        Self {
            value: Value::Tombstone { deleted_at_ms },
            expires_at_ms: None,
            publisher: None,
        }
    }

    /// Sets the expiry (unix ms).
    #[must_use]
    pub fn with_expiry(mut self, expires_at_ms: u64) -> Self {
        self.expires_at_ms = Some(expires_at_ms);
        self
    }

    /// Sets the publisher.
    #[must_use]
    pub fn with_publisher(mut self, publisher: impl Into<Vec<u8>>) -> Self {
        self.publisher = Some(publisher.into());
        self
    }

    fn to_record(&self, key: &[u8], version: Version) -> Record {
        Record {
            key: key.to_vec(),
            value: self.value.clone(),
            publisher: self.publisher.clone(),
            expires_at_ms: self.expires_at_ms,
            version,
        }
    }
}

/// What a [`Proposer`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Write `update` if `condition` holds for the newest committed value.
    Cas {
        /// What the current value must be.
        condition: Condition,
        /// What to write.
        update: Update,
    },
    /// Read the newest committed value, finishing any proposal in progress first
    /// (`consistency=serial`).
    SerialRead,
}

/// Why an operation could not be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Other proposers kept promising higher ballots through every attempt.
    Contention,
    /// Too few replicas answered in time (in the last attempt).
    NoQuorum {
        /// Replicas that promised (or accepted).
        answered: usize,
        /// The quorum.
        required: usize,
    },
    /// The value changed after an earlier attempt of this operation may have been accepted:
    /// whether that attempt took effect before the change cannot be told.
    Overtaken {
        /// The current live value.
        current: Option<Record>,
    },
    /// The operation's overall deadline passed before it was decided
    /// ([`Proposer::handle_deadline`]).
    Deadline,
}

/// How an operation ended. Every variant says whether the outcome is known
/// ([`Outcome::is_known`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Known: the CAS took effect, with this version (its ballot, or the ballot of the earlier
    /// attempt of the same operation that was chosen).
    Committed {
        /// The written record's version.
        version: Version,
    },
    /// Known: the condition did not hold, nothing was written.
    ConditionFailed {
        /// The current live value (`None`: absent).
        current: Option<Record>,
    },
    /// A serial read's answer: the newest committed live value.
    Read {
        /// The value (`None`: absent).
        current: Option<Record>,
    },
    /// Known: nothing this operation proposed was accepted anywhere (every proposal was
    /// explicitly refused, or none was sent), so it never takes effect. For a serial read: the
    /// read failed.
    NotApplied {
        /// Why.
        cause: Cause,
    },
    /// Unknown: a proposal of this operation may have been accepted by some replicas; it may
    /// take effect later (when another proposer finishes it) or never.
    Unknown {
        /// Why the operation could not find out.
        cause: Cause,
    },
}

impl Outcome {
    /// Whether the client can know what happened.
    pub fn is_known(&self) -> bool {
        !matches!(self, Outcome::Unknown { .. })
    }
}

/// How an operation ended, and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The outcome.
    pub outcome: Outcome,
    /// Round trips to the replicas (an uncontended CAS: 2; a serial read: 1). A commit sent
    /// without waiting is not counted.
    pub round_trips: u32,
    /// Prepare rounds started (the metric "CAS rounds").
    pub attempts: u32,
    /// Attempts that were followed by another because of other proposers: a higher promise,
    /// another operation's proposal to finish first, a newer version to move above.
    pub contention_retries: u32,
}

/// A request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing<P> {
    /// Pass it back with the answer.
    pub id: RequestId,
    /// The replica (possibly this node).
    pub to: P,
    /// What to send.
    pub request: PaxosRequest,
}

/// Whose proposal a round-2 pass carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// This operation's own new value.
    Fresh,
    /// An earlier attempt of this operation, found in progress.
    FinishOurs,
    /// Another operation's, found in progress: finish it, then start over.
    FinishOther,
}

#[derive(Debug)]
struct Promise {
    current: Option<Record>,
    accepted: Option<Accepted>,
    committed: Option<Ballot>,
}

#[derive(Debug)]
enum Phase {
    Prepare {
        promises: Vec<Promise>,
        rejected: usize,
    },
    Propose {
        proposal: Record,
        purpose: Purpose,
        accepted: usize,
        rejected: usize,
        failed: usize,
    },
    /// Waiting for a quorum of commit acknowledgements: of this operation's value
    /// ([`PaxosConfig::wait_for_commit`]), or of another's that it finished (`start_over`),
    /// before the next attempt prepares. Without that wait the next prepare can overtake the
    /// commit on its way and find the same proposal still in progress, again and again.
    Commit {
        version: Version,
        acked: usize,
        start_over: bool,
    },
    Backoff {
        until: Instant,
    },
    /// Waiting for the driver's fresh ballot timestamp, above `floor`.
    NeedBallot {
        floor: HlcTimestamp,
    },
    Done,
}

/// One compare-and-set or serial read against a key's replicas: single-decree Paxos per round,
/// in the shape of Cassandra's lightweight transactions with Paxos v2's merged prepare-and-read
/// (see the [module docs](super) for the algorithm and its guarantees).
///
/// # Driving protocol
///
/// Like [`crate::coordinator::Coordination`], with one more input — ballots come from the
/// node's hybrid logical clock, so that two operations of one node never share one:
///
/// 1. build it with [`Proposer::new`], the current time and a fresh timestamp of the node's
///    clock;
/// 2. send every [`Outgoing`] of [`Proposer::poll_send`] (a send to this node is served by the
///    local acceptor), **each once**: the proposer never resends, and its conclusion that an
///    explicitly refused proposal was not accepted relies on that;
/// 3. if [`Proposer::poll_ballot`] returns `Some(floor)`, make the clock observe `floor` and
///    pass a fresh timestamp to [`Proposer::handle_ballot`] (with the node's [`bavard_store::Hlc`]:
///    `hlc.observe_persisted(floor); hlc.now(unix_ms)`), then go back to 2;
/// 4. feed each answer or failure to [`Proposer::handle_response`], and call
///    [`Proposer::handle_timeout`] when [`Proposer::poll_timeout`]'s deadline passes (extra
///    calls are harmless); after each, go back to 2;
/// 5. [`Proposer::result`] is `Some` once decided; keep driving until
///    [`Proposer::is_finished`] (the commit still goes out to every replica).
///
/// ```
/// use std::time::Instant;
/// use bavard_replica::paxos::{
///     Acceptor, Condition, Operation, Outcome, PaxosConfig, Proposer, Update,
/// };
/// use bavard_store::{Hlc, Record};
///
/// // Three replicas (ids 0, 1, 2), each an acceptor and a store of one key; this node is 0.
/// let mut acceptors = vec![Acceptor::default(); 3];
/// let mut stores: Vec<Option<Record>> = vec![None; 3];
/// let mut hlc = Hlc::default();
/// let now = Instant::now();
/// let op = Operation::Cas { condition: Condition::Absent, update: Update::put(b"v1".to_vec()) };
/// let mut p = Proposer::new(
///     b"k".to_vec(), op, b"node-0".to_vec(), vec![0usize, 1, 2],
///     PaxosConfig::default(), hlc.now(1_000), now, 42,
/// );
/// while !p.is_finished() {
///     let Some(out) = p.poll_send() else { break };
///     // The replica's IO shell: run the rule, persist, then answer.
///     let step = acceptors[out.to].handle(out.request, stores[out.to].clone());
///     if let Some(state) = step.persist {
///         acceptors[out.to] = state; // one durable transaction with `apply`
///     }
///     if let Some(record) = step.apply {
///         stores[out.to] = Some(record);
///     }
///     p.handle_response(now, out.id, Ok(step.answer));
/// }
/// let done = p.result().unwrap();
/// assert!(matches!(done.outcome, Outcome::Committed { .. }));
/// assert_eq!(done.round_trips, 2);
/// assert!(stores.iter().all(|s| s.as_ref().and_then(|r| r.data()) == Some(&b"v1"[..])));
/// ```
#[derive(Debug)]
pub struct Proposer<P> {
    key: Vec<u8>,
    op: Operation,
    node: Vec<u8>,
    replicas: Vec<P>,
    quorum: usize,
    config: PaxosConfig,
    backoff: Backoff,
    ballot: Ballot,
    /// The highest timestamp seen in any ballot or version: the next ballot goes above it.
    highest_seen: HlcTimestamp,
    /// Versions of the proposals this operation made (one per attempt that proposed).
    ours: Vec<Version>,
    /// Whether a proposal of this operation may have been accepted somewhere.
    maybe_applied: bool,
    attempts: u32,
    round_trips: u32,
    contention_retries: u32,
    /// Backoffs so far (the exponent of the next one).
    backoffs: u32,
    phase: Phase,
    next_id: RequestId,
    /// The current phase's requests: id → deadline.
    flight: BTreeMap<RequestId, Instant>,
    /// Commits not waited for: id → deadline (kept so the driver can finish them).
    commits: BTreeMap<RequestId, Instant>,
    outbox: VecDeque<Outgoing<P>>,
    result: Option<Completion>,
}

impl<P: Clone + PartialEq> Proposer<P> {
    /// An operation on `key` against `replicas` (the key's preference list: exactly its N
    /// replicas, never fallbacks — quorums must intersect). `node` is this node's id (the
    /// ballots' tie-breaker), `timestamp` a fresh reading of its hybrid logical clock, `seed`
    /// the backoff's randomness. The first prepare is ready to send.
    #[allow(clippy::too_many_arguments)] // each is a distinct input the driver owns
    pub fn new(
        key: Vec<u8>,
        op: Operation,
        node: Vec<u8>,
        replicas: Vec<P>,
        config: PaxosConfig,
        timestamp: HlcTimestamp,
        now: Instant,
        seed: u64,
    ) -> Self {
        let mut unique: Vec<P> = Vec::with_capacity(replicas.len());
        for r in replicas {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        let mut p = Self {
            quorum: unique.len() / 2 + 1,
            replicas: unique,
            key,
            op,
            ballot: Ballot::new(timestamp, node.clone()),
            node,
            backoff: Backoff::new(seed, config.backoff_base, config.backoff_max),
            config,
            highest_seen: HlcTimestamp::ZERO,
            ours: Vec::new(),
            maybe_applied: false,
            attempts: 0,
            round_trips: 0,
            contention_retries: 0,
            backoffs: 0,
            phase: Phase::Done,
            next_id: 0,
            flight: BTreeMap::new(),
            commits: BTreeMap::new(),
            outbox: VecDeque::new(),
            result: None,
        };
        if p.replicas.is_empty() {
            p.finish(Outcome::NotApplied {
                cause: Cause::NoQuorum {
                    answered: 0,
                    required: 1,
                },
            });
        } else {
            p.start_attempt(now);
        }
        p
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current (or last) attempt's ballot.
    pub fn ballot(&self) -> &Ballot {
        &self.ballot
    }

    /// The quorum: a majority of the replicas.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// `Some` once the operation is decided.
    pub fn result(&self) -> Option<&Completion> {
        self.result.as_ref()
    }

    /// The next request to send, if any.
    pub fn poll_send(&mut self) -> Option<Outgoing<P>> {
        while let Some(out) = self.outbox.pop_front() {
            // A request of a phase that ended before it was sent is no longer wanted.
            if self.flight.contains_key(&out.id) || self.commits.contains_key(&out.id) {
                return Some(out);
            }
        }
        None
    }

    /// `Some(floor)` when the next attempt waits for a fresh timestamp of the node's clock,
    /// which must have observed `floor` (see the driving protocol).
    pub fn poll_ballot(&self) -> Option<HlcTimestamp> {
        match self.phase {
            Phase::NeedBallot { floor } => Some(floor),
            _ => None,
        }
    }

    /// The fresh timestamp asked for by [`Proposer::poll_ballot`]: starts the next attempt.
    /// Ignored when none was asked for.
    pub fn handle_ballot(&mut self, now: Instant, timestamp: HlcTimestamp) {
        if matches!(self.phase, Phase::NeedBallot { .. }) {
            self.ballot = Ballot::new(timestamp, self.node.clone());
            self.start_attempt(now);
        }
    }

    /// The answer to request `id` (or why there was none). Unknown ids, and answers to a phase
    /// that already ended, are ignored.
    pub fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        answer: Result<PaxosResponse, Failure>,
    ) {
        if self.commits.remove(&id).is_some() {
            return;
        }
        if self.flight.remove(&id).is_none() {
            return;
        }
        self.observe(&answer);
        match &mut self.phase {
            Phase::Prepare { promises, rejected } => {
                match answer {
                    Ok(PaxosResponse::Promise {
                        current,
                        accepted,
                        committed,
                    }) if current.as_ref().is_none_or(|r| r.key == self.key)
                        && accepted.as_ref().is_none_or(|a| a.proposal.key == self.key) =>
                    {
                        promises.push(Promise {
                            current,
                            accepted,
                            committed,
                        });
                    }
                    Ok(PaxosResponse::Rejected { .. }) => *rejected += 1,
                    // A failure, or an answer that does not fit (another key, another kind):
                    // the replica did not promise.
                    _ => {}
                }
                self.check_prepare(now);
            }
            Phase::Propose {
                accepted,
                rejected,
                failed,
                ..
            } => {
                match answer {
                    Ok(PaxosResponse::Accepted) => *accepted += 1,
                    Ok(PaxosResponse::Rejected { .. }) => *rejected += 1,
                    _ => *failed += 1,
                }
                self.check_propose(now);
            }
            Phase::Commit { acked, .. } => {
                if matches!(answer, Ok(PaxosResponse::Committed)) {
                    *acked += 1;
                }
                self.check_commit(now);
            }
            Phase::Backoff { .. } | Phase::NeedBallot { .. } | Phase::Done => {}
        }
    }

    /// Fails every request whose deadline passed, and ends a backoff that is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.commits.retain(|_, deadline| *deadline > now);
        let expired: Vec<RequestId> = self
            .flight
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.handle_response(now, id, Err(Failure::NoAnswer("timed out".into())));
        }
        if let Phase::Backoff { until } = self.phase
            && now >= until
        {
            self.phase = Phase::NeedBallot {
                floor: self.highest_seen.max(self.ballot.timestamp()),
            };
        }
    }

    /// The operation's overall deadline (the client's request deadline) passed: decide now. An
    /// operation already decided is left as it is. Otherwise it ends
    /// [`Outcome::Unknown`] when one of its own proposals may have been accepted somewhere (an
    /// earlier attempt, or the current proposal with answers outstanding), and
    /// [`Outcome::NotApplied`] when none was ever sent — cause [`Cause::Deadline`]. Requests
    /// still in flight are forgotten (their answers are ignored); commits already sent are
    /// kept, so the driver may still finish them.
    pub fn handle_deadline(&mut self) {
        if self.result.is_some() {
            return;
        }
        let proposing_ours = matches!(
            self.phase,
            Phase::Propose {
                purpose: Purpose::Fresh | Purpose::FinishOurs,
                ..
            }
        );
        let outcome = if self.maybe_applied || proposing_ours {
            Outcome::Unknown {
                cause: Cause::Deadline,
            }
        } else {
            Outcome::NotApplied {
                cause: Cause::Deadline,
            }
        };
        self.finish(outcome);
    }

    /// When [`Proposer::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let backoff = match self.phase {
            Phase::Backoff { until } => Some(until),
            _ => None,
        };
        self.flight
            .values()
            .chain(self.commits.values())
            .copied()
            .chain(backoff)
            .min()
    }

    /// Whether nothing remains to send or wait for.
    pub fn is_finished(&self) -> bool {
        self.result.is_some() && self.flight.is_empty() && self.commits.is_empty()
    }

    fn observe(&mut self, answer: &Result<PaxosResponse, Failure>) {
        let mut seen = |ts: HlcTimestamp| self.highest_seen = self.highest_seen.max(ts);
        match answer {
            Ok(PaxosResponse::Rejected { promised }) => seen(promised.timestamp()),
            Ok(PaxosResponse::Promise {
                current,
                accepted,
                committed,
            }) => {
                if let Some(r) = current {
                    seen(r.version.timestamp());
                }
                if let Some(a) = accepted {
                    seen(a.ballot.timestamp());
                    seen(a.proposal.version.timestamp());
                }
                if let Some(c) = committed {
                    seen(c.timestamp());
                }
            }
            _ => {}
        }
    }

    fn send_all(&mut self, now: Instant, request: &PaxosRequest, tracked_as_commit: bool) {
        for to in self.replicas.clone() {
            let id = self.next_id;
            self.next_id += 1;
            let deadline = now + self.config.timeout;
            if tracked_as_commit {
                self.commits.insert(id, deadline);
            } else {
                self.flight.insert(id, deadline);
            }
            self.outbox.push_back(Outgoing {
                id,
                to,
                request: request.clone(),
            });
        }
    }

    fn start_attempt(&mut self, now: Instant) {
        self.attempts += 1;
        self.round_trips += 1;
        self.flight.clear();
        self.phase = Phase::Prepare {
            promises: Vec::new(),
            rejected: 0,
        };
        let request = PaxosRequest::Prepare {
            key: self.key.clone(),
            ballot: self.ballot.clone(),
        };
        self.send_all(now, &request, false);
    }

    /// Starts over with a new ballot: at once (`backoff` false: the last attempt made progress,
    /// finishing another's proposal) or after a randomised backoff.
    fn retry(&mut self, now: Instant, cause: Cause, backoff: bool) {
        self.flight.clear();
        if self.attempts >= self.config.max_attempts {
            let outcome = if self.maybe_applied {
                Outcome::Unknown { cause }
            } else {
                Outcome::NotApplied { cause }
            };
            self.finish(outcome);
            return;
        }
        if cause == Cause::Contention {
            self.contention_retries += 1;
        }
        let floor = self.highest_seen.max(self.ballot.timestamp());
        if backoff {
            self.backoffs += 1;
            self.phase = Phase::Backoff {
                until: now + self.backoff.delay(self.backoffs),
            };
        } else {
            self.phase = Phase::NeedBallot { floor };
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.flight.clear();
        self.phase = Phase::Done;
        self.result = Some(Completion {
            outcome,
            round_trips: self.round_trips,
            attempts: self.attempts,
            contention_retries: self.contention_retries,
        });
    }

    fn check_prepare(&mut self, now: Instant) {
        let Phase::Prepare { promises, rejected } = &mut self.phase else {
            return;
        };
        if promises.len() >= self.quorum {
            let promises = std::mem::take(promises);
            self.flight.clear();
            self.promised(now, promises);
        } else if promises.len() + self.flight.len() < self.quorum {
            let cause = if *rejected > 0 {
                Cause::Contention
            } else {
                Cause::NoQuorum {
                    answered: promises.len(),
                    required: self.quorum,
                }
            };
            self.retry(now, cause, true);
        }
    }

    /// A quorum promised: finish what is in progress, or evaluate the condition on the newest
    /// committed value and propose.
    fn promised(&mut self, now: Instant, promises: Vec<Promise>) {
        let max_committed = promises.iter().filter_map(|p| p.committed.as_ref()).max();
        // The highest-ballot accepted proposal is in progress unless a commit at least as
        // recent was seen (Paxos's rule: a value possibly chosen must be re-proposed).
        let in_progress = promises
            .iter()
            .filter_map(|p| p.accepted.as_ref())
            .max_by(|a, b| a.ballot.cmp(&b.ballot))
            .filter(|a| max_committed.is_none_or(|c| a.ballot > *c))
            .cloned();
        if let Some(Accepted { proposal, .. }) = in_progress {
            let purpose = if self.ours.contains(&proposal.version) {
                Purpose::FinishOurs
            } else {
                Purpose::FinishOther
            };
            self.propose(now, proposal, purpose);
            return;
        }
        let newest = promises
            .into_iter()
            .filter_map(|p| p.current)
            .max_by(|a, b| a.version.cmp(&b.version));
        if let Some(r) = &newest
            && self.ours.contains(&r.version)
        {
            // An earlier attempt of ours was chosen and someone committed it.
            let version = r.version.clone();
            self.finish(Outcome::Committed { version });
            return;
        }
        let live = newest.clone().filter(|r| !r.is_tombstone());
        let (condition, update) = match &self.op {
            Operation::SerialRead => {
                self.finish(Outcome::Read { current: live });
                return;
            }
            Operation::Cas { condition, update } => (*condition, update.clone()),
        };
        if !condition.holds(live.as_ref()) {
            let outcome = if self.maybe_applied {
                Outcome::Unknown {
                    cause: Cause::Overtaken { current: live },
                }
            } else {
                Outcome::ConditionFailed { current: live }
            };
            self.finish(outcome);
            return;
        }
        if newest
            .as_ref()
            .is_some_and(|r| r.version.hlc >= self.ballot.timestamp().as_u64())
        {
            // Our version would not be the newest (a value from a clock ahead of ours, or a
            // plain write): last-writer-wins would drop the commit. Start over above it.
            self.retry(now, Cause::Contention, false);
            return;
        }
        let proposal = update.to_record(&self.key, self.ballot.as_version().clone());
        self.ours.push(proposal.version.clone());
        self.propose(now, proposal, Purpose::Fresh);
    }

    fn propose(&mut self, now: Instant, proposal: Record, purpose: Purpose) {
        self.round_trips += 1;
        let request = PaxosRequest::Propose {
            ballot: self.ballot.clone(),
            proposal: proposal.clone(),
        };
        self.phase = Phase::Propose {
            proposal,
            purpose,
            accepted: 0,
            rejected: 0,
            failed: 0,
        };
        self.send_all(now, &request, false);
    }

    fn check_propose(&mut self, now: Instant) {
        let Phase::Propose {
            proposal,
            purpose,
            accepted,
            rejected,
            failed,
        } = &self.phase
        else {
            return;
        };
        let (purpose, accepted, rejected, failed) = (*purpose, *accepted, *rejected, *failed);
        let pending = self.flight.len();
        if accepted >= self.quorum {
            // Chosen. Commit everywhere; the outcome does not depend on the commit.
            let proposal = proposal.clone();
            let version = proposal.version.clone();
            self.flight.clear();
            let request = PaxosRequest::Commit {
                ballot: self.ballot.clone(),
                proposal,
            };
            match purpose {
                Purpose::FinishOther => {
                    self.round_trips += 1;
                    self.phase = Phase::Commit {
                        version,
                        acked: 0,
                        start_over: true,
                    };
                    self.send_all(now, &request, false);
                }
                Purpose::Fresh | Purpose::FinishOurs if self.config.wait_for_commit => {
                    self.round_trips += 1;
                    self.phase = Phase::Commit {
                        version,
                        acked: 0,
                        start_over: false,
                    };
                    self.send_all(now, &request, false);
                }
                Purpose::Fresh | Purpose::FinishOurs => {
                    self.send_all(now, &request, true);
                    self.finish(Outcome::Committed { version });
                }
            }
        } else if accepted + pending < self.quorum {
            let ours = purpose != Purpose::FinishOther;
            if ours && pending > 0 {
                // Lost, but wait for the stragglers (at most the timeout): each explicit
                // refusal proves the proposal is not accepted there, which may let the
                // operation end "not applied" rather than "unknown".
                return;
            }
            if ours && (accepted > 0 || failed > 0) {
                self.maybe_applied = true;
            }
            let cause = if rejected > 0 {
                Cause::Contention
            } else {
                Cause::NoQuorum {
                    answered: accepted,
                    required: self.quorum,
                }
            };
            self.retry(now, cause, true);
        }
    }

    fn check_commit(&mut self, now: Instant) {
        let Phase::Commit {
            version,
            acked,
            start_over,
        } = &self.phase
        else {
            return;
        };
        // Chosen already: the outcome is known whatever the commits do; waiting only makes it
        // visible to quorum reads (and to the next prepare) before going on.
        if *acked >= self.quorum || self.flight.is_empty() {
            if *start_over {
                self.retry(now, Cause::Contention, false);
            } else {
                let version = version.clone();
                self.finish(Outcome::Committed { version });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hlc: u64, tombstone: bool) -> Record {
        let v = Version::new(HlcTimestamp::from_u64(hlc), b"w".to_vec());
        if tombstone {
            Record::tombstone(b"k".to_vec(), 1, v)
        } else {
            Record::new(b"k".to_vec(), b"v".to_vec(), v)
        }
    }

    #[test]
    fn conditions_compare_against_the_live_value() {
        let live = record(7, false);
        assert!(Condition::Absent.holds(None));
        assert!(!Condition::Absent.holds(Some(&live)));
        assert!(Condition::Version(7).holds(Some(&live)));
        assert!(!Condition::Version(8).holds(Some(&live)));
        assert!(!Condition::Version(7).holds(None));
        assert!(Condition::Always.holds(None) && Condition::Always.holds(Some(&live)));
    }

    #[test]
    fn an_operation_without_replicas_is_not_applied_at_once() {
        let p: Proposer<u64> = Proposer::new(
            b"k".to_vec(),
            Operation::SerialRead,
            b"n".to_vec(),
            vec![],
            PaxosConfig::default(),
            HlcTimestamp::new(1, 0),
            Instant::now(),
            0,
        );
        assert!(p.is_finished());
        assert!(matches!(
            p.result().unwrap().outcome,
            Outcome::NotApplied {
                cause: Cause::NoQuorum { .. }
            }
        ));
    }

    fn proposer(op: Operation) -> Proposer<u64> {
        Proposer::new(
            b"k".to_vec(),
            op,
            b"n".to_vec(),
            vec![1, 2, 3],
            PaxosConfig::default(),
            HlcTimestamp::new(1, 0),
            Instant::now(),
            0,
        )
    }

    fn promise() -> PaxosResponse {
        PaxosResponse::Promise {
            current: None,
            accepted: None,
            committed: None,
        }
    }

    #[test]
    fn a_deadline_before_any_proposal_is_not_applied_and_after_one_is_unknown() {
        let now = Instant::now();
        let cas = Operation::Cas {
            condition: Condition::Absent,
            update: Update::put(b"v".to_vec()),
        };
        // Still preparing: nothing of ours can have been accepted.
        let mut p = proposer(cas.clone());
        let prepares: Vec<_> = std::iter::from_fn(|| p.poll_send()).collect();
        assert_eq!(prepares.len(), 3);
        p.handle_deadline();
        assert_eq!(
            p.result().unwrap().outcome,
            Outcome::NotApplied {
                cause: Cause::Deadline
            }
        );
        assert!(p.is_finished(), "the prepares in flight are forgotten");
        // Proposing: the proposal may have been accepted by the replicas still silent.
        let mut p = proposer(cas);
        let prepares: Vec<_> = std::iter::from_fn(|| p.poll_send()).collect();
        for out in &prepares[..2] {
            p.handle_response(now, out.id, Ok(promise()));
        }
        let proposes: Vec<_> = std::iter::from_fn(|| p.poll_send()).collect();
        assert!(
            proposes
                .iter()
                .all(|o| matches!(o.request, PaxosRequest::Propose { .. }))
        );
        p.handle_deadline();
        assert_eq!(
            p.result().unwrap().outcome,
            Outcome::Unknown {
                cause: Cause::Deadline
            }
        );
        // A decided operation keeps its outcome.
        let mut p = proposer(Operation::SerialRead);
        let prepares: Vec<_> = std::iter::from_fn(|| p.poll_send()).collect();
        for out in &prepares[..2] {
            p.handle_response(now, out.id, Ok(promise()));
        }
        p.handle_deadline();
        assert_eq!(p.result().unwrap().outcome, Outcome::Read { current: None });
    }

    #[test]
    fn only_unknown_outcomes_are_unknown() {
        assert!(
            !Outcome::Unknown {
                cause: Cause::Contention
            }
            .is_known()
        );
        assert!(
            Outcome::NotApplied {
                cause: Cause::Contention
            }
            .is_known()
        );
        assert!(Outcome::ConditionFailed { current: None }.is_known());
    }
}
