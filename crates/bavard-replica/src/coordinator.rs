//! Write and read coordination as state machines (Dynamo §4.5: the node a client talks to
//! coordinates the request against the key's preference list).
//!
//! - [`Write`]: sends the record to the N preferred replicas and succeeds once W of them hold it
//!   durably. A preferred replica that fails (no answer in time, a refusal) is replaced by the
//!   next fallback member, which keeps the record as a *hint* for it (hinted handoff); the
//!   coordinator's own replica is never hinted. **A hint is not an acknowledgement**: only the
//!   preferred replicas themselves count towards W, as in Cassandra (where hints count only
//!   for consistency level `ANY`). Dynamo's sloppy quorum counts them, and then a quorum write
//!   acknowledged by one replica and one hint holder is missed by a later quorum read of the
//!   two other replicas until the hint is handed over: R + W > N no longer makes quorum reads
//!   see quorum writes. Fails with [`QuorumError`] as soon as fewer than W replicas can still
//!   hold it; the hints are still handed out, so the write reaches every replica later.
//! - [`Read`]: asks R of the N preferred replicas (in the order given, so a coordinator that is
//!   a replica puts itself first and reads locally) and succeeds with the newest version
//!   (tombstones included) once R answered. A replica that fails is replaced by the next one at
//!   once; if no result came within [`ReadOptions::speculate_after`], every replica not asked
//!   yet is asked too (Cassandra's *speculative retry*; `Duration::ZERO` asks all N at once, as
//!   Dynamo does). Then it waits for the stragglers (at most `repair_wait`) and sends the newest
//!   version to every replica that answered with an older one or none (read repair). A replica
//!   that was never asked is not repaired by the read: anti-entropy brings it up to date.
//!
//! Both keep running after their result is known (the remaining replicas still get the write;
//! stragglers are still repaired): a driver reports the result at once and keeps driving until
//! [`Coordination::is_finished`].
//!
//! # Driving protocol
//!
//! The same for both, through [`Coordination`]:
//!
//! 1. build it with the current time;
//! 2. send every [`Outgoing`] of [`Coordination::poll_send`] (a send to the coordinator itself is
//!    served locally by the driver);
//! 3. feed each answer or failure to [`Coordination::handle_response`], and call
//!    [`Coordination::handle_timeout`] when [`Coordination::poll_timeout`]'s deadline passes
//!    (extra calls are harmless); after each, go back to 2;
//! 4. [`Write::result`] / [`Read::result`] is `Some` once decided; stop when
//!    [`Coordination::is_finished`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bavard_replica::coordinator::{Coordination, Write};
//! use bavard_replica::{Request, Response, StoreOutcome};
//! use bavard_store::{Record, Version};
//!
//! let now = Instant::now();
//! let record = Record::new(b"k".to_vec(), b"v".to_vec(), Version::default());
//! // Replicas 1, 2, 3 preferred, 4 a fallback; this node is 1; quorum of 2.
//! let mut w = Write::new(record, 1u64, vec![1, 2, 3], vec![4], 2, now, Duration::from_secs(1));
//! let mut sent = Vec::new();
//! while let Some(out) = w.poll_send() {
//!     sent.push(out);
//! }
//! assert_eq!(sent.len(), 3);
//! let ok = || Ok(Response::Store { results: vec![StoreOutcome::Stored] });
//! w.handle_response(now, sent[0].id, ok());
//! assert!(w.result().is_none());
//! w.handle_response(now, sent[1].id, ok());
//! assert_eq!(w.result(), Some(&Ok(2)));
//! // Replica 3 never answers: at the deadline the fallback 4 gets a hint for it.
//! w.handle_timeout(now + Duration::from_secs(1));
//! let hint = w.poll_send().unwrap();
//! assert_eq!(hint.to, 4);
//! assert!(matches!(hint.request, Request::Store { hint_for: Some(3), .. }));
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bavard_store::Record;

use crate::protocol::{Failure, Request, Response};

/// Identifies one request of a coordination.
pub type RequestId = u64;

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<P> {
    /// Pass it back with the answer.
    pub id: RequestId,
    /// The peer (possibly the coordinator itself).
    pub to: P,
    /// What to send.
    pub request: Request<P>,
}

/// Too few replicas answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("only {answered} of the {required} required replicas answered")]
pub struct QuorumError {
    /// Replicas that answered (reads) or hold the write (writes).
    pub answered: usize,
    /// Replicas the consistency level requires.
    pub required: usize,
}

/// The driving interface shared by [`Write`] and [`Read`] (see the module docs).
pub trait Coordination<P> {
    /// The next request to send, if any.
    fn poll_send(&mut self) -> Option<Outgoing<P>>;
    /// The answer to request `id` (or why there was none). Unknown ids are ignored.
    fn handle_response(&mut self, now: Instant, id: RequestId, answer: Result<Response, Failure>);
    /// Fails every request whose deadline has passed, and does what is due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`Coordination::handle_timeout`] should be called next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Whether nothing remains to send or wait for.
    fn is_finished(&self) -> bool;
}

/// Requests in flight, with their deadlines.
#[derive(Debug)]
struct Flight<T> {
    next_id: RequestId,
    pending: HashMap<RequestId, (T, Instant)>,
}

impl<T> Flight<T> {
    fn new() -> Self {
        Self {
            next_id: 0,
            pending: HashMap::new(),
        }
    }

    fn start(&mut self, what: T, deadline: Instant) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, (what, deadline));
        id
    }

    fn finish(&mut self, id: RequestId) -> Option<T> {
        self.pending.remove(&id).map(|(t, _)| t)
    }

    fn expired(&mut self, now: Instant) -> Vec<T> {
        let ids: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut out: Vec<(RequestId, T)> = ids
            .into_iter()
            .filter_map(|id| self.finish(id).map(|t| (id, t)))
            .collect();
        // Deterministic order whatever the map's.
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, t)| t).collect()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|(_, d)| *d).min()
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// One preferred replica's part of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The replica has not answered yet.
    Pending,
    /// The replica holds the write: it counts towards W.
    Held,
    /// The replica failed; a fallback is being asked to keep a hint for it.
    Hinting,
    /// A fallback keeps a hint for the replica (which does not count towards W).
    Hinted,
    /// The replica failed and no fallback keeps a hint for it.
    Failed,
}

/// A write coordinated against a preference list (see the module docs).
#[derive(Debug)]
pub struct Write<P> {
    record: Record,
    local: P,
    required: usize,
    timeout: Duration,
    preferred: Vec<P>,
    slots: Vec<Slot>,
    fallbacks: VecDeque<P>,
    /// In flight: (slot, whether it is a hint).
    flight: Flight<(usize, bool)>,
    outbox: VecDeque<Outgoing<P>>,
    held: usize,
    hints_handed: usize,
    result: Option<Result<usize, QuorumError>>,
}

impl<P: Clone + PartialEq> Write<P> {
    /// A write of `record` to `preferred` (the preference list; `local` is this node, which may
    /// be in it), with `fallbacks` (the next members, nearest first) for hints; it succeeds once
    /// `required` hold it. Every request gets `timeout`.
    pub fn new(
        record: Record,
        local: P,
        preferred: Vec<P>,
        fallbacks: Vec<P>,
        required: usize,
        now: Instant,
        timeout: Duration,
    ) -> Self {
        let mut w = Self {
            record,
            local,
            required: required.max(1),
            timeout,
            slots: vec![Slot::Pending; preferred.len()],
            preferred,
            fallbacks: fallbacks.into(),
            flight: Flight::new(),
            outbox: VecDeque::new(),
            held: 0,
            hints_handed: 0,
            result: None,
        };
        for slot in 0..w.preferred.len() {
            let to = w.preferred[slot].clone();
            w.send(now, slot, to, None);
        }
        w.decide();
        w
    }

    fn send(&mut self, now: Instant, slot: usize, to: P, hint_for: Option<P>) {
        let hint = hint_for.is_some();
        let id = self.flight.start((slot, hint), now + self.timeout);
        self.outbox.push_back(Outgoing {
            id,
            to,
            request: Request::Store {
                records: vec![self.record.clone()],
                hint_for,
            },
        });
    }

    /// `Some(Ok(acks))` once `required` replicas hold the write, `Some(Err(_))` once that can
    /// no longer happen; `None` before.
    pub fn result(&self) -> Option<&Result<usize, QuorumError>> {
        self.result.as_ref()
    }

    /// Preferred replicas that hold the write so far (hints not included).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Hints fallbacks accepted for preferred replicas that failed (they do not count towards
    /// W).
    pub fn hints_handed(&self) -> usize {
        self.hints_handed
    }

    fn outcome(&mut self, now: Instant, slot: usize, hint: bool, held: bool) {
        if held && hint {
            self.slots[slot] = Slot::Hinted;
            self.hints_handed += 1;
        } else if held {
            self.slots[slot] = Slot::Held;
            self.held += 1;
        } else if !hint && self.preferred[slot] == self.local {
            // Our own store failed: nobody else keeps a hint for us.
            self.slots[slot] = Slot::Failed;
        } else if let Some(fallback) = self.fallbacks.pop_front() {
            self.slots[slot] = Slot::Hinting;
            let owner = self.preferred[slot].clone();
            self.send(now, slot, fallback, Some(owner));
        } else {
            self.slots[slot] = Slot::Failed;
        }
        self.decide();
    }

    fn decide(&mut self) {
        if self.result.is_some() {
            return;
        }
        // Only a replica that has not answered yet may still count: a hint never does.
        let possible = self.held + self.slots.iter().filter(|s| **s == Slot::Pending).count();
        if self.held >= self.required {
            self.result = Some(Ok(self.held));
        } else if possible < self.required {
            self.result = Some(Err(QuorumError {
                answered: self.held,
                required: self.required,
            }));
        }
    }
}

impl<P: Clone + PartialEq> Coordination<P> for Write<P> {
    fn poll_send(&mut self) -> Option<Outgoing<P>> {
        self.outbox.pop_front()
    }

    fn handle_response(&mut self, now: Instant, id: RequestId, answer: Result<Response, Failure>) {
        let Some((slot, hint)) = self.flight.finish(id) else {
            return;
        };
        let held = matches!(
            answer,
            Ok(Response::Store { ref results }) if results.first().is_some_and(|r| r.holds())
        );
        self.outcome(now, slot, hint, held);
    }

    fn handle_timeout(&mut self, now: Instant) {
        for (slot, hint) in self.flight.expired(now) {
            self.outcome(now, slot, hint, false);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.flight.next_deadline()
    }

    fn is_finished(&self) -> bool {
        self.flight.is_empty() && self.outbox.is_empty()
    }
}

/// How a [`Read`] asks, waits and repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// How long a replica has to answer.
    pub timeout: Duration,
    /// Whether replicas that answered with an older version (or none) are sent the newest.
    pub read_repair: bool,
    /// How long after the result the repair waits for the stragglers.
    pub repair_wait: Duration,
    /// How long to wait for the result before asking the replicas not asked yet;
    /// `Duration::ZERO` asks every preferred replica at once.
    pub speculate_after: Duration,
}

/// How long replicas take to answer a read, estimated from the answers seen: the
/// retransmission-timer estimator of RFC 6298 (a smoothed mean plus four smoothed mean
/// deviations), which sits near the high percentiles without keeping a histogram. A coordinator
/// asks the replicas it did not ask first once a read has waited that long
/// ([`ReadOptions::speculate_after`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerTime {
    /// Smoothed mean and mean deviation, in seconds; `None` before the first answer.
    estimate: Option<(f64, f64)>,
}

impl AnswerTime {
    /// Counts one answer that took `took`.
    pub fn observe(&mut self, took: Duration) {
        let r = took.as_secs_f64();
        self.estimate = Some(match self.estimate {
            None => (r, r / 2.0),
            Some((mean, dev)) => (
                0.875 * mean + 0.125 * r,
                0.75 * dev + 0.25 * (mean - r).abs(),
            ),
        });
    }

    /// The shortest delay [`AnswerTime::speculate_after`] gives: answers faster than a
    /// millisecond are not worth a second request.
    pub const FLOOR: Duration = Duration::from_millis(1);

    /// The delay before the first answer was seen (RFC 6298 starts at 1 s; replicas are
    /// asked far more often than a TCP connection opens, so a first read that was unlucky
    /// costs less than a second of waiting).
    pub const INITIAL: Duration = Duration::from_millis(100);

    /// Mean plus four deviations, at least [`AnswerTime::FLOOR`] and at most `ceiling`;
    /// [`AnswerTime::INITIAL`] (at most `ceiling`) before any answer.
    pub fn speculate_after(&self, ceiling: Duration) -> Duration {
        let Some((mean, dev)) = self.estimate else {
            return Self::INITIAL.min(ceiling);
        };
        Duration::try_from_secs_f64(mean + 4.0 * dev)
            .unwrap_or(ceiling)
            .clamp(Self::FLOOR, ceiling.max(Self::FLOOR))
    }
}

/// A read coordinated against a preference list (see the module docs).
#[derive(Debug)]
pub struct Read<P> {
    key: Vec<u8>,
    required: usize,
    timeout: Duration,
    read_repair: bool,
    repair_wait: Duration,
    /// Preferred replicas not asked yet, in preference order.
    spare: VecDeque<P>,
    /// When the spares are asked if the result is still unknown.
    speculate_at: Option<Instant>,
    /// Whether replicas beyond the first R were asked.
    speculated: bool,
    fetches: Flight<P>,
    repairs: Flight<P>,
    outbox: VecDeque<Outgoing<P>>,
    answers: Vec<(P, Option<Record>)>,
    result: Option<Result<Option<Record>, QuorumError>>,
    /// When the result was decided, while the repair is still to be sent.
    repair_due: Option<Instant>,
    repaired: usize,
}

impl<P: Clone + PartialEq> Read<P> {
    /// A read of `key` from `preferred` (in preference order), succeeding once `required`
    /// answered. With `read_repair`, stale replicas are sent the newest version once every
    /// replica asked answered or `repair_wait` after the result, whichever comes first.
    pub fn new(
        key: Vec<u8>,
        preferred: Vec<P>,
        required: usize,
        now: Instant,
        options: ReadOptions,
    ) -> Self {
        let required = required.max(1);
        let mut r = Self {
            key,
            required,
            timeout: options.timeout,
            read_repair: options.read_repair,
            repair_wait: options.repair_wait,
            spare: preferred.into(),
            speculate_at: None,
            speculated: false,
            fetches: Flight::new(),
            repairs: Flight::new(),
            outbox: VecDeque::new(),
            answers: Vec::new(),
            result: None,
            repair_due: None,
            repaired: 0,
        };
        if options.speculate_after.is_zero() {
            r.ask(now, usize::MAX);
        } else {
            r.ask(now, required);
            if !r.spare.is_empty() {
                r.speculate_at = Some(now + options.speculate_after);
            }
        }
        r.decide(now);
        r
    }

    /// Asks up to `n` more replicas, in preference order.
    fn ask(&mut self, now: Instant, n: usize) {
        for _ in 0..n {
            let Some(to) = self.spare.pop_front() else {
                break;
            };
            let id = self.fetches.start(to.clone(), now + self.timeout);
            self.outbox.push_back(Outgoing {
                id,
                to,
                request: Request::Fetch {
                    keys: vec![self.key.clone()],
                },
            });
        }
        if self.spare.is_empty() {
            self.speculate_at = None;
        }
    }

    /// Asks a spare replica for each of `failed` fetches, while the result is unknown.
    fn replace_failed(&mut self, now: Instant, failed: usize) {
        if self.result.is_none() && failed > 0 && !self.spare.is_empty() {
            self.speculated = true;
            self.ask(now, failed);
        }
    }

    /// Whether it asked more than R replicas, because the first ones were slow or failed.
    pub fn speculated(&self) -> bool {
        self.speculated
    }

    /// `Some(Ok(newest))` once `required` replicas answered (`newest` is `None` when none of
    /// them has the key; tombstones are returned as such), `Some(Err(_))` once that can no
    /// longer happen; `None` before.
    pub fn result(&self) -> Option<&Result<Option<Record>, QuorumError>> {
        self.result.as_ref()
    }

    /// Replicas that accepted a read repair.
    pub fn repaired(&self) -> usize {
        self.repaired
    }

    fn newest(&self) -> Option<Record> {
        self.answers
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .max_by(|a, b| a.version.cmp(&b.version))
            .cloned()
    }

    fn decide(&mut self, now: Instant) {
        if self.result.is_none() {
            if let Some(at) = self.speculate_at
                && now >= at
            {
                self.speculated = true;
                self.ask(now, usize::MAX);
            }
            if self.answers.len() >= self.required {
                self.speculate_at = None;
                let newest = self.newest();
                if self.read_repair && newest.is_some() {
                    self.repair_due = Some(now + self.repair_wait);
                }
                self.result = Some(Ok(newest));
            } else if self.fetches.is_empty() {
                if self.spare.is_empty() {
                    self.result = Some(Err(QuorumError {
                        answered: self.answers.len(),
                        required: self.required,
                    }));
                } else {
                    let missing = self.required - self.answers.len();
                    self.replace_failed(now, missing);
                }
            }
        }
        if let Some(due) = self.repair_due
            && (self.fetches.is_empty() || now >= due)
        {
            self.repair_due = None;
            self.send_repairs(now);
        }
    }

    /// Sends the newest version to every replica that answered with an older one or none.
    fn send_repairs(&mut self, now: Instant) {
        let Some(Ok(Some(best))) = &self.result else {
            return;
        };
        let best = best.clone();
        let behind: Vec<P> = self
            .answers
            .iter()
            .filter(|(_, r)| r.as_ref().is_none_or(|r| r.version < best.version))
            .map(|(p, _)| p.clone())
            .collect();
        for to in behind {
            let id = self.repairs.start(to.clone(), now + self.timeout);
            self.outbox.push_back(Outgoing {
                id,
                to,
                request: Request::Store {
                    records: vec![best.clone()],
                    hint_for: None,
                },
            });
        }
    }
}

impl<P: Clone + PartialEq> Coordination<P> for Read<P> {
    fn poll_send(&mut self) -> Option<Outgoing<P>> {
        self.outbox.pop_front()
    }

    fn handle_response(&mut self, now: Instant, id: RequestId, answer: Result<Response, Failure>) {
        if self.repairs.finish(id).is_some() {
            if matches!(
                answer,
                Ok(Response::Store { ref results }) if results.first().is_some_and(|r| r.holds())
            ) {
                self.repaired += 1;
            }
            return;
        }
        let Some(from) = self.fetches.finish(id) else {
            return;
        };
        if let Ok(Response::Fetch { records, .. }) = answer {
            // Only the key asked for counts: anything else in the answer is ignored.
            let found = records.into_iter().find(|r| r.key == self.key);
            // A straggler after the repair went out is not repaired again.
            if self.result.is_none() || self.repair_due.is_some() {
                self.answers.push((from, found));
            }
        } else {
            self.replace_failed(now, 1);
        }
        self.decide(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let expired = self.fetches.expired(now).len();
        self.replace_failed(now, expired);
        self.repairs.expired(now);
        self.decide(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.fetches.next_deadline(),
            self.repairs.next_deadline(),
            self.repair_due,
            self.speculate_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn is_finished(&self) -> bool {
        self.fetches.is_empty()
            && self.repairs.is_empty()
            && self.outbox.is_empty()
            && self.repair_due.is_none()
    }
}
