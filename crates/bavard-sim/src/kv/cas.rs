//! The compare-and-set experiment (`bavard-sim kv --cas`): clients increment counters on a few
//! hot keys through linearizable operations — a serial read, then a compare-and-set of the
//! value read plus one, conditioned on the version read — while nodes crash, the network
//! splits and clocks are skewed; the history is judged by the linearizability checker
//! (`bavard_tests::linearizable`), and every counter's final value against the increments that
//! were acknowledged.
//!
//! **Clients.** Each client repeats: pick a hot key (`k0` … uniformly), serial-read it through
//! a random live node, then compare-and-set `n + 1` (`n` the value read, 0 when absent) if the
//! version is still the one read (`Condition::Absent` when absent), through another random live
//! node; 10–100 ms of thinking between operations. A serial read that fails is dropped from the
//! history (it observed nothing); the client reads again.
//!
//! **Outcomes.** A committed CAS is `ok`, a failed condition a `mismatch`, `not applied` a
//! `fail` (known not to have taken effect), `unknown` — or a coordinator that crashed with the
//! operation, seen as a client timeout — `unknown`: it may take effect at any later point, or
//! never; the checker tries both.
//!
//! **Verdict.** Once the workload ended and the replicas converged, every hot key is read once
//! more, serially (these reads are in the history too). The run is valid when the checker finds
//! the history linearizable (or runs out of budget: `unknown`, which is reported, not a
//! failure), no counter is below its acknowledged increments (a lost acknowledged CAS), and no
//! counter is above its acknowledged plus unknown ones (an increment from nowhere).

use std::collections::BTreeMap;

use bavard_replica::paxos::{Completion, Condition, Outcome};
use bavard_store::Record;
use bavard_tests::counter::{Tristate, check_counters};
use bavard_tests::linearizable::{self, Budget, Call, RegisterOp, Return};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::node::ClientOp;

/// What the compare-and-set run found (flattened into the `kv` report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CasReport {
    /// The checker's verdict on the whole history.
    pub linearizable: Tristate,
    /// Compare-and-sets committed (acknowledged increments).
    pub cas_ok: u64,
    /// Compare-and-sets known not to have taken effect: failed conditions and `not applied`.
    pub cas_failed: u64,
    /// Of them, failed conditions.
    pub cas_condition_failed: u64,
    /// Compare-and-sets whose outcome is unknown (an undecided round, a crashed coordinator).
    pub cas_unknown: u64,
    /// Serial reads answered.
    pub serial_reads_ok: u64,
    /// Serial reads that failed (no quorum in time).
    pub serial_reads_failed: u64,
    /// Round trips of a committed compare-and-set, median (2: uncontended Paxos v2 shape).
    pub round_trips_per_cas_p50: f64,
    /// The same, 99th percentile.
    pub round_trips_per_cas_p99: f64,
    /// Round trips of a serial read, median.
    pub round_trips_per_serial_read_p50: f64,
    /// Contention retries, all operations together.
    pub contention_retries: u64,
    /// The hot keys' final values, summed (each counter counts its committed increments).
    pub final_counter: u64,
    /// Acknowledged increments, all keys.
    pub acknowledged_increments: u64,
    /// Increments acknowledged but missing from their counter's final value.
    pub lost_increments: u64,
    /// Counter value beyond the acknowledged and unknown increments (from nowhere).
    pub phantom_increments: u64,
    /// Hot keys whose final serial read failed (their counters are not judged).
    pub finals_unread: u64,
    /// Checker steps taken (for budget tuning).
    pub checker_steps: u64,
}

impl CasReport {
    /// Whether the checker found no violation and no increment was lost or invented.
    pub fn is_valid(&self) -> bool {
        self.linearizable != Tristate::No
            && self.lost_increments == 0
            && self.phantom_increments == 0
            && self.finals_unread == 0
    }
}

/// Where a client is in its increment.
#[derive(Debug, Clone)]
enum Next {
    /// A serial read of a key of its choosing.
    Read,
    /// The compare-and-set of `key` from what it read.
    Cas {
        key: String,
        seen: Option<(u64, u64)>,
    },
}

/// An operation in flight.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    client: usize,
    key: String,
    call: Call<u64>,
    invoked_us: u64,
}

/// The clients' state and the history.
pub(crate) struct CasClients {
    keys: u32,
    next: Vec<Next>,
    history: Vec<RegisterOp<u64>>,
    cas_round_trips: Vec<u32>,
    read_round_trips: Vec<u32>,
    contention_retries: u64,
    counts: Counts,
    /// Final serial reads: key → value (`None`: absent), or missing when it failed.
    finals: BTreeMap<String, Option<u64>>,
    finals_failed: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ok: u64,
    condition_failed: u64,
    not_applied: u64,
    unknown: u64,
    reads_ok: u64,
    reads_failed: u64,
}

/// The counter's value in a record (a decimal number; anything else counts as 0, which no
/// client writes).
fn value_of(r: &Record) -> u64 {
    r.data()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl CasClients {
    pub(crate) fn new(clients: usize, keys: u32) -> Self {
        Self {
            keys: keys.max(1),
            next: vec![Next::Read; clients],
            history: Vec::new(),
            cas_round_trips: Vec::new(),
            read_round_trips: Vec::new(),
            contention_retries: 0,
            counts: Counts::default(),
            finals: BTreeMap::new(),
            finals_failed: 0,
        }
    }

    /// The hot keys.
    pub(crate) fn hot_keys(&self) -> Vec<String> {
        (0..self.keys).map(|k| format!("k{k}")).collect()
    }

    /// Client `c`'s next operation, invoked at `at_us`.
    pub(crate) fn next_op(
        &mut self,
        c: usize,
        rng: &mut ChaCha8Rng,
        at_us: u64,
    ) -> (ClientOp, InFlight) {
        match self.next[c].clone() {
            Next::Read => {
                let key = format!("k{}", rng.random_range(0..self.keys));
                let op = ClientOp::SerialRead { key: key.clone() };
                let flight = InFlight {
                    client: c,
                    key,
                    call: Call::Read,
                    invoked_us: at_us,
                };
                (op, flight)
            }
            Next::Cas { key, seen } => {
                let (expected, condition) = match seen {
                    Some((version, value)) => (Some(value), Condition::Version(version)),
                    None => (None, Condition::Absent),
                };
                let new = expected.unwrap_or(0) + 1;
                let op = ClientOp::Cas {
                    key: key.clone(),
                    condition,
                    value: new.to_string(),
                };
                let flight = InFlight {
                    client: c,
                    key,
                    call: Call::Cas {
                        expected,
                        new: Some(new),
                    },
                    invoked_us: at_us,
                };
                (op, flight)
            }
        }
    }

    /// An operation ended at `at_us`: with the proposer's completion, or `None` when the client
    /// gave up waiting (its coordinator crashed).
    pub(crate) fn done(&mut self, f: InFlight, at_us: u64, done: Option<&Completion>) {
        let c = f.client;
        let ret = match (&f.call, done.map(|d| &d.outcome)) {
            (Call::Read, Some(Outcome::Read { current })) => {
                self.counts.reads_ok += 1;
                if let Some(d) = done {
                    self.read_round_trips.push(d.round_trips);
                }
                let seen = current.as_ref().map(|r| (r.version.hlc, value_of(r)));
                self.next[c] = Next::Cas {
                    key: f.key.clone(),
                    seen,
                };
                Return::Read(seen.map(|(_, v)| v))
            }
            (Call::Read, _) => {
                self.counts.reads_failed += 1;
                self.next[c] = Next::Read;
                Return::Fail
            }
            (_, outcome) => {
                self.next[c] = Next::Read;
                match outcome {
                    Some(Outcome::Committed { .. }) => {
                        self.counts.ok += 1;
                        if let Some(d) = done {
                            self.cas_round_trips.push(d.round_trips);
                        }
                        Return::Ok
                    }
                    Some(Outcome::ConditionFailed { .. }) => {
                        self.counts.condition_failed += 1;
                        Return::Mismatch
                    }
                    Some(Outcome::NotApplied { .. }) => {
                        self.counts.not_applied += 1;
                        Return::Fail
                    }
                    Some(Outcome::Unknown { .. } | Outcome::Read { .. }) | None => {
                        self.counts.unknown += 1;
                        Return::Unknown
                    }
                }
            }
        };
        if let Some(d) = done {
            self.contention_retries += u64::from(d.contention_retries);
        }
        self.history.push(RegisterOp {
            client: c,
            key: f.key,
            call: f.call,
            ret,
            invoked: f.invoked_us,
            completed: at_us,
        });
    }

    /// A final serial read of `key` (by the pseudo-client `client`) ended.
    pub(crate) fn final_read(
        &mut self,
        client: usize,
        key: String,
        invoked_us: u64,
        at_us: u64,
        done: Option<&Completion>,
    ) {
        match done.map(|d| &d.outcome) {
            Some(Outcome::Read { current }) => {
                let value = current.as_ref().map(value_of);
                self.finals.insert(key.clone(), value);
                self.history.push(RegisterOp {
                    client,
                    key,
                    call: Call::Read,
                    ret: Return::Read(value),
                    invoked: invoked_us,
                    completed: at_us,
                });
            }
            _ => self.finals_failed += 1,
        }
    }

    /// Judges the history.
    pub(crate) fn report(&self) -> (CasReport, Vec<String>) {
        let mut examples = Vec::new();
        let (linearizable, steps) = match linearizable::check(&self.history, Budget::default()) {
            Ok(report) => {
                for (key, c) in report.violations().take(3) {
                    examples.push(format!("not linearizable on {key}: {c}"));
                }
                let steps = report
                    .keys
                    .values()
                    .map(|v| match v {
                        linearizable::Verdict::Unknown { steps } => *steps,
                        _ => 0,
                    })
                    .sum();
                (Tristate::from(report.linearizable()), steps)
            }
            Err(e) => {
                examples.push(format!("malformed history: {e}"));
                (Tristate::No, 0)
            }
        };
        let counters = check_counters(&self.history, &self.finals);
        examples.extend(counters.problems.iter().cloned());
        let quantile = |v: &[u32], q: f64| {
            let mut v = v.to_vec();
            v.sort_unstable();
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            f64::from(v[rank - 1])
        };
        let c = self.counts;
        let report = CasReport {
            linearizable,
            cas_ok: c.ok,
            cas_failed: c.condition_failed + c.not_applied,
            cas_condition_failed: c.condition_failed,
            cas_unknown: c.unknown,
            serial_reads_ok: c.reads_ok,
            serial_reads_failed: c.reads_failed,
            round_trips_per_cas_p50: quantile(&self.cas_round_trips, 0.5),
            round_trips_per_cas_p99: quantile(&self.cas_round_trips, 0.99),
            round_trips_per_serial_read_p50: quantile(&self.read_round_trips, 0.5),
            contention_retries: self.contention_retries,
            final_counter: counters.final_counter,
            acknowledged_increments: counters.acknowledged_increments,
            lost_increments: counters.lost_increments,
            phantom_increments: counters.phantom_increments,
            finals_unread: self.finals_failed,
            checker_steps: steps,
        };
        (report, examples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_replica::paxos::Cause;
    use bavard_store::Version;

    fn completion(outcome: Outcome, round_trips: u32) -> Completion {
        Completion {
            outcome,
            round_trips,
            attempts: 1,
            contention_retries: 0,
        }
    }

    fn record(value: u64, hlc: u64) -> Record {
        Record::new(
            b"k0".to_vec(),
            value.to_string().into_bytes(),
            Version::new(bavard_store::HlcTimestamp::from_u64(hlc), b"n".to_vec()),
        )
    }

    #[test]
    fn a_client_reads_then_sets_the_value_read_plus_one_on_the_version_read() {
        let mut clients = CasClients::new(1, 1);
        let mut rng = crate::rng::seeded(1, 1);
        let (op, f) = clients.next_op(0, &mut rng, 0);
        assert_eq!(op, ClientOp::SerialRead { key: "k0".into() });
        clients.done(f, 5, Some(&completion(Outcome::Read { current: None }, 1)));
        let (op, f) = clients.next_op(0, &mut rng, 6);
        assert_eq!(
            op,
            ClientOp::Cas {
                key: "k0".into(),
                condition: Condition::Absent,
                value: "1".into()
            }
        );
        let v = Version::default();
        clients.done(
            f,
            9,
            Some(&completion(Outcome::Committed { version: v }, 2)),
        );
        let (_, f) = clients.next_op(0, &mut rng, 10);
        let current = Some(record(1, 77));
        clients.done(f, 12, Some(&completion(Outcome::Read { current }, 1)));
        let (op, f) = clients.next_op(0, &mut rng, 13);
        assert_eq!(
            op,
            ClientOp::Cas {
                key: "k0".into(),
                condition: Condition::Version(77),
                value: "2".into()
            }
        );
        // Its coordinator crashed: unknown.
        clients.done(f, 20, None);
        clients.final_read(
            9,
            "k0".into(),
            30,
            31,
            Some(&completion(
                Outcome::Read {
                    current: Some(record(2, 90)),
                },
                1,
            )),
        );
        let (r, examples) = clients.report();
        assert!(examples.is_empty(), "{examples:?}");
        assert_eq!(r.linearizable, Tristate::Yes);
        assert_eq!((r.cas_ok, r.cas_unknown, r.final_counter), (1, 1, 2));
        assert_eq!((r.lost_increments, r.phantom_increments), (0, 0));
        assert_eq!(r.round_trips_per_cas_p50, 2.0);
        assert!(r.is_valid());
    }

    #[test]
    fn a_lost_acknowledged_increment_or_a_double_success_fails_the_run() {
        let mut clients = CasClients::new(2, 1);
        let mut rng = crate::rng::seeded(1, 1);
        // Both clients read absent, both CAS succeed: not linearizable, and one is lost.
        for c in 0..2 {
            let (_, f) = clients.next_op(c, &mut rng, 0);
            clients.done(f, 1, Some(&completion(Outcome::Read { current: None }, 1)));
        }
        for c in 0..2 {
            let (_, f) = clients.next_op(c, &mut rng, 2);
            let version = Version::default();
            clients.done(f, 3, Some(&completion(Outcome::Committed { version }, 2)));
        }
        let not_applied = Outcome::NotApplied {
            cause: Cause::Contention,
        };
        let (_, f) = clients.next_op(0, &mut rng, 4);
        clients.done(f, 5, Some(&completion(not_applied, 3)));
        clients.final_read(
            9,
            "k0".into(),
            10,
            11,
            Some(&completion(
                Outcome::Read {
                    current: Some(record(1, 5)),
                },
                1,
            )),
        );
        let (r, examples) = clients.report();
        assert_eq!(r.linearizable, Tristate::No);
        assert_eq!(r.lost_increments, 1);
        assert_eq!(r.serial_reads_failed, 1, "a failed read is counted");
        assert!(!r.is_valid());
        assert!(examples.iter().any(|e| e.contains("not linearizable")));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["linearizable"], serde_json::json!(false));
    }
}
