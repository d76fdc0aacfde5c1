//! Per-key compare-and-set over Paxos, on a tiny deterministic in-memory network: scripted
//! scenarios (round trips, races, a crashed proposer's leftovers, contention, lost answers),
//! and a property test whose random interleavings — drops, duplicates, reorderings, replicas
//! down, proposers crashing, clocks skewed — must produce linearizable histories with every
//! committed increment present.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bavard_replica::paxos::{
    Acceptor, Cause, Completion, Condition, Operation, Outcome, Outgoing, PaxosConfig,
    PaxosRequest, PaxosResponse, Proposer, Update,
};
use bavard_store::{Hlc, HlcTimestamp, Record, Version};
use bavard_tests::linearizable::{self, Budget, Call, RegisterOp, Return};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KEY: &[u8] = b"counter";

/// One replica: its acceptor rows as the bytes a node would persist, and a last-writer-wins
/// store.
#[derive(Default)]
struct Replica {
    rows: BTreeMap<Vec<u8>, Vec<u8>>,
    store: BTreeMap<Vec<u8>, Record>,
}

impl Replica {
    /// What the node's IO shell does: load, run the rule, persist, then answer.
    fn serve(&mut self, request: PaxosRequest) -> PaxosResponse {
        let key = request.key().to_vec();
        let state = self.acceptor(&key);
        let step = state.handle(request, self.store.get(&key).cloned());
        if let Some(next) = step.persist {
            self.rows.insert(key, next.encode());
        }
        if let Some(record) = step.apply {
            self.put(record);
        }
        step.answer
    }

    fn acceptor(&self, key: &[u8]) -> Acceptor {
        self.rows.get(key).map_or_else(Acceptor::default, |row| {
            Acceptor::decode(key, row).expect("rows this replica wrote decode")
        })
    }

    /// A last-writer-wins put (a commit, or a plain write).
    fn put(&mut self, record: Record) {
        if self
            .store
            .get(&record.key)
            .is_none_or(|cur| cur.version < record.version)
        {
            self.store.insert(record.key.clone(), record);
        }
    }

    fn value(&self) -> Option<&[u8]> {
        self.store.get(KEY).and_then(Record::data)
    }
}

/// A proposing node: its id and its hybrid logical clock, `skew_ms` ahead of true time.
struct Node {
    id: Vec<u8>,
    hlc: Hlc,
    skew_ms: u64,
}

impl Node {
    fn new(id: u8, skew_ms: u64) -> Self {
        Self {
            id: vec![id],
            hlc: Hlc::default(),
            skew_ms,
        }
    }

    fn timestamp(&mut self, now_ms: u64) -> HlcTimestamp {
        self.hlc.now(1_000_000 + now_ms + self.skew_ms)
    }
}

fn config() -> PaxosConfig {
    PaxosConfig {
        timeout: Duration::from_millis(100),
        max_attempts: 10,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(100),
        wait_for_commit: false,
    }
}

fn cas(condition: Condition, value: &str) -> Operation {
    Operation::Cas {
        condition,
        update: Update::put(value.as_bytes().to_vec()),
    }
}

/// Scripted runs: the test decides which requests reach which replica; answers come back at
/// once; time moves only to the proposer's next deadline.
struct Script {
    replicas: Vec<Replica>,
    t0: Instant,
    /// Virtual time since `t0` (not whole milliseconds: backoffs are not).
    elapsed: Duration,
}

impl Script {
    fn new(n: usize) -> Self {
        Self {
            replicas: (0..n).map(|_| Replica::default()).collect(),
            t0: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed
    }

    fn now_ms(&self) -> u64 {
        self.elapsed.as_millis() as u64
    }

    fn start(&mut self, node: &mut Node, op: Operation, config: PaxosConfig) -> Proposer<usize> {
        let ts = node.timestamp(self.now_ms());
        Proposer::new(
            KEY.to_vec(),
            op,
            node.id.clone(),
            (0..self.replicas.len()).collect(),
            config,
            ts,
            self.now(),
            u64::from(node.id[0]),
        )
    }

    /// Sends everything `p` has to send (and what that leads to) without moving time; requests
    /// `deliver` refuses get no answer.
    fn pump(
        &mut self,
        p: &mut Proposer<usize>,
        node: &mut Node,
        deliver: &dyn Fn(&Outgoing<usize>) -> bool,
    ) {
        loop {
            if let Some(floor) = p.poll_ballot() {
                node.hlc.observe_persisted(floor);
                let ts = node.timestamp(self.now_ms());
                p.handle_ballot(self.now(), ts);
                continue;
            }
            let Some(out) = p.poll_send() else { return };
            if deliver(&out) {
                let answer = self.replicas[out.to].serve(out.request);
                p.handle_response(self.now(), out.id, Ok(answer));
            }
        }
    }

    /// Drives `p` until it is finished, moving time to each deadline.
    fn run(
        &mut self,
        p: &mut Proposer<usize>,
        node: &mut Node,
        deliver: &dyn Fn(&Outgoing<usize>) -> bool,
    ) -> Completion {
        for _ in 0..1000 {
            self.pump(p, node, deliver);
            if p.is_finished() {
                return p.result().cloned().expect("finished means decided");
            }
            let next = p
                .poll_timeout()
                .expect("an unfinished proposer waits for something");
            self.elapsed = self.elapsed.max(next - self.t0);
            p.handle_timeout(self.now());
        }
        panic!("the proposer never finished");
    }

    /// Like [`Script::run`], but the requests `late` picks arrive late: each is delivered only
    /// once `p` has nothing else to send, so whatever `p` sends right after it overtakes it.
    fn run_overtaken(
        &mut self,
        p: &mut Proposer<usize>,
        node: &mut Node,
        late: &dyn Fn(&Outgoing<usize>) -> bool,
    ) -> Completion {
        let held = std::cell::RefCell::new(Vec::new());
        for _ in 0..1000 {
            self.pump(p, node, &|out| {
                let on_time = !late(out);
                if !on_time {
                    held.borrow_mut().push(out.clone());
                }
                on_time
            });
            if let Some(done) = p.result() {
                return done.clone();
            }
            let held = held.take();
            if held.is_empty() {
                let next = p.poll_timeout().expect("waits for something");
                self.elapsed = self.elapsed.max(next - self.t0);
                p.handle_timeout(self.now());
            }
            for out in held {
                let answer = self.replicas[out.to].serve(out.request);
                p.handle_response(self.now(), out.id, Ok(answer));
            }
        }
        panic!("the proposer never decided");
    }
}

/// The current value a failed condition reports; panics on any other outcome.
fn condition_failed_on(done: &Completion) -> &Record {
    let Outcome::ConditionFailed {
        current: Some(current),
    } = &done.outcome
    else {
        panic!("{done:?}");
    };
    current
}

fn all(_: &Outgoing<usize>) -> bool {
    true
}

#[test]
fn an_uncontended_cas_takes_two_round_trips_and_a_serial_read_one() {
    let mut s = Script::new(3);
    let mut node = Node::new(1, 0);
    let mut p = s.start(&mut node, cas(Condition::Absent, "one"), config());
    let done = s.run(&mut p, &mut node, &all);
    let Outcome::Committed { version } = &done.outcome else {
        panic!("{done:?}");
    };
    assert_eq!(
        (done.round_trips, done.attempts, done.contention_retries),
        (2, 1, 0)
    );
    // The version is the ballot; the early commit reached every replica.
    assert_eq!(version, p.ballot().as_version());
    assert!(s.replicas.iter().all(|r| r.value() == Some(&b"one"[..])));

    let mut r = s.start(&mut node, Operation::SerialRead, config());
    let read = s.run(&mut r, &mut node, &all);
    assert_eq!(read.round_trips, 1);
    let Outcome::Read {
        current: Some(current),
    } = read.outcome
    else {
        panic!("{read:?}");
    };
    assert_eq!(&current.version, version);

    // A conditional write on that version, then a conditional delete, then if-absent again.
    let mut p = s.start(
        &mut node,
        cas(Condition::Version(version.hlc), "two"),
        config(),
    );
    let Outcome::Committed { version: v2 } = s.run(&mut p, &mut node, &all).outcome else {
        panic!("the version matched");
    };
    let delete = Operation::Cas {
        condition: Condition::Version(v2.hlc),
        update: Update::delete(5),
    };
    let mut p = s.start(&mut node, delete, config());
    assert!(matches!(
        s.run(&mut p, &mut node, &all).outcome,
        Outcome::Committed { .. }
    ));
    let mut p = s.start(&mut node, cas(Condition::Absent, "three"), config());
    let done = s.run(&mut p, &mut node, &all);
    assert!(matches!(done.outcome, Outcome::Committed { .. }));
    assert_eq!(done.round_trips, 2);
}

#[test]
fn a_failed_condition_writes_nothing_and_reports_the_current_value() {
    let mut s = Script::new(3);
    let mut node = Node::new(1, 0);
    let mut p = s.start(&mut node, cas(Condition::Absent, "one"), config());
    s.run(&mut p, &mut node, &all);
    let rows_before: Vec<_> = s.replicas.iter().map(|r| r.store.clone()).collect();
    let mut p = s.start(&mut node, cas(Condition::Version(12345), "two"), config());
    let done = s.run(&mut p, &mut node, &all);
    let Outcome::ConditionFailed {
        current: Some(current),
    } = &done.outcome
    else {
        panic!("{done:?}");
    };
    assert_eq!(current.data(), Some(&b"one"[..]));
    assert_eq!(done.round_trips, 1, "no proposal after a failed condition");
    let rows_after: Vec<_> = s.replicas.iter().map(|r| r.store.clone()).collect();
    assert_eq!(rows_before, rows_after);
}

#[test]
fn waiting_for_the_commit_costs_a_third_round_trip() {
    let mut s = Script::new(3);
    let mut node = Node::new(1, 0);
    let cfg = PaxosConfig {
        wait_for_commit: true,
        ..config()
    };
    let mut p = s.start(&mut node, cas(Condition::Absent, "one"), cfg);
    s.pump(&mut p, &mut node, &all);
    let done = p.result().expect("decided").clone();
    assert!(matches!(done.outcome, Outcome::Committed { .. }));
    assert_eq!(done.round_trips, 3);
    assert!(p.is_finished());
}

#[test]
fn a_replica_down_does_not_stop_a_majority_but_two_down_do() {
    let mut s = Script::new(3);
    let mut node = Node::new(1, 0);
    let mut p = s.start(&mut node, cas(Condition::Absent, "one"), config());
    let done = s.run(&mut p, &mut node, &|o| o.to != 2);
    assert!(matches!(done.outcome, Outcome::Committed { .. }));
    assert_eq!(done.round_trips, 2);

    let mut p = s.start(&mut node, cas(Condition::Always, "two"), config());
    let done = s.run(&mut p, &mut node, &|o| o.to == 0);
    assert_eq!(
        done.outcome,
        Outcome::NotApplied {
            cause: Cause::NoQuorum {
                answered: 1,
                required: 2
            }
        }
    );
    assert_eq!(done.attempts, 10, "every attempt was tried, after backoffs");
    assert_eq!(done.contention_retries, 0, "nobody else was proposing");
}

#[test]
fn two_proposers_racing_from_the_same_version_never_both_succeed() {
    // Every interleaving of two if-absent CAS, one request at a time, chosen by the seed.
    for seed in 0..200u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Script::new(3);
        let mut nodes = [Node::new(1, 0), Node::new(2, rng.random_range(0..5))];
        let mut ps: Vec<Proposer<usize>> = Vec::new();
        for (i, v) in ["a", "b"].into_iter().enumerate() {
            ps.push(s.start(&mut nodes[i], cas(Condition::Absent, v), config()));
        }
        let mut queue: Vec<(usize, Outgoing<usize>)> = Vec::new();
        for _ in 0..10_000 {
            for (i, p) in ps.iter_mut().enumerate() {
                if let Some(floor) = p.poll_ballot() {
                    nodes[i].hlc.observe_persisted(floor);
                    let ts = nodes[i].timestamp(s.now_ms());
                    p.handle_ballot(s.now(), ts);
                }
                while let Some(out) = p.poll_send() {
                    queue.push((i, out));
                }
            }
            if queue.is_empty() {
                if ps.iter().all(Proposer::is_finished) {
                    break;
                }
                let next = ps.iter().filter_map(Proposer::poll_timeout).min().unwrap();
                s.elapsed = s.elapsed.max(next - s.t0);
                for p in &mut ps {
                    p.handle_timeout(s.now());
                }
                continue;
            }
            let (i, out) = queue.remove(rng.random_range(0..queue.len()));
            let answer = s.replicas[out.to].serve(out.request);
            ps[i].handle_response(s.now(), out.id, Ok(answer));
        }
        let outcomes: Vec<&Outcome> = ps
            .iter()
            .map(|p| &p.result().expect("decided").outcome)
            .collect();
        let committed = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Committed { .. }))
            .count();
        assert_eq!(committed, 1, "seed {seed}: {outcomes:?}");
        // The loser saw the winner's value, gave up knowing it had no effect, or — when part of
        // its proposal was accepted before it lost — cannot tell whether it would have.
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                Outcome::Committed { .. }
                    | Outcome::ConditionFailed { current: Some(_) }
                    | Outcome::NotApplied { .. }
                    | Outcome::Unknown { .. }
            )),
            "seed {seed}: {outcomes:?}"
        );
        // Every replica that got the commit holds the winner's value, never the loser's.
        let winner = ps
            .iter()
            .position(|p| matches!(p.result().unwrap().outcome, Outcome::Committed { .. }))
            .unwrap();
        let value = [&b"a"[..], &b"b"[..]][winner];
        assert!(
            s.replicas
                .iter()
                .all(|r| r.value().is_none_or(|v| v == value)),
            "seed {seed}"
        );
    }
}

#[test]
fn a_proposal_left_by_a_crashed_proposer_is_finished_by_the_next_one() {
    let mut s = Script::new(3);
    let mut a = Node::new(1, 0);
    let mut b = Node::new(2, 0);
    // A's proposal reaches replica 0 only; then A crashes.
    let mut pa = s.start(&mut a, cas(Condition::Absent, "from-a"), config());
    s.pump(&mut pa, &mut a, &|o| {
        !matches!(o.request, PaxosRequest::Propose { .. }) || o.to == 0
    });
    assert!(pa.result().is_none());
    assert!(s.replicas[0].acceptor(KEY).accepted().is_some());
    drop(pa);

    // B's majority includes replica 0: it finds A's proposal, commits it, then evaluates its
    // own condition against it.
    let mut pb = s.start(&mut b, cas(Condition::Absent, "from-b"), config());
    let done = s.run(&mut pb, &mut b, &|o| o.to != 2);
    let current = condition_failed_on(&done);
    assert_eq!(current.data(), Some(&b"from-a"[..]));
    // Prepare, re-propose A's value, commit it (waiting for a majority), prepare again.
    assert_eq!(
        (done.round_trips, done.attempts, done.contention_retries),
        (4, 2, 1)
    );
    // A's value kept A's version (what A would have told its client).
    assert_eq!(current.version.writer, vec![1]);
    assert_eq!(s.replicas[0].value(), Some(&b"from-a"[..]));
    assert_eq!(s.replicas[1].value(), Some(&b"from-a"[..]));
}

#[test]
fn a_finished_proposal_is_committed_before_the_next_prepare_can_overtake_it() {
    let mut s = Script::new(3);
    let mut a = Node::new(1, 0);
    let mut b = Node::new(2, 0);
    // A's value is chosen, but none of its commits arrives (A crashed after the proposals).
    let mut pa = s.start(&mut a, cas(Condition::Absent, "from-a"), config());
    s.pump(&mut pa, &mut a, &|o| {
        !matches!(o.request, PaxosRequest::Commit { .. })
    });
    drop(pa);

    // B's commits travel slowly: each one arrives only once B has nothing else to send, so a
    // prepare sent right after a commit overtakes it. B must wait for its commits of A's
    // value, or every attempt finds A's value still in progress until B gives up.
    let mut pb = s.start(&mut b, cas(Condition::Absent, "from-b"), config());
    let done = s.run_overtaken(&mut pb, &mut b, &|o| {
        matches!(o.request, PaxosRequest::Commit { .. })
    });
    assert_eq!(condition_failed_on(&done).data(), Some(&b"from-a"[..]));
    assert_eq!((done.attempts, done.contention_retries), (2, 1));
}

#[test]
fn a_serial_read_finishes_a_proposal_in_progress_before_answering() {
    let mut s = Script::new(3);
    let mut a = Node::new(1, 0);
    let mut pa = s.start(&mut a, cas(Condition::Absent, "pending"), config());
    s.pump(&mut pa, &mut a, &|o| {
        !matches!(o.request, PaxosRequest::Propose { .. }) || o.to == 2
    });
    drop(pa);
    let mut b = Node::new(2, 0);
    let mut r = s.start(&mut b, Operation::SerialRead, config());
    let done = s.run(&mut r, &mut b, &|o| o.to != 0);
    let Outcome::Read {
        current: Some(current),
    } = done.outcome
    else {
        panic!("{done:?}");
    };
    assert_eq!(current.data(), Some(&b"pending"[..]));
    // Once read, it stays: a read through another majority sees it too.
    let mut r = s.start(&mut b, Operation::SerialRead, config());
    let again = s.run(&mut r, &mut b, &|o| o.to != 2);
    assert!(matches!(again.outcome, Outcome::Read { current: Some(c) } if c == current));
}

#[test]
fn an_operation_that_finds_its_own_earlier_attempt_reports_it_committed() {
    let mut s = Script::new(3);
    let mut a = Node::new(1, 0);
    let mut p = s.start(&mut a, cas(Condition::Absent, "mine"), config());
    // The first proposal reaches replica 0 only and the others' answers are lost: the
    // attempt times out and is retried. The retry's majority includes replica 0.
    s.pump(&mut p, &mut a, &|o| {
        !matches!(o.request, PaxosRequest::Propose { .. }) || o.to == 0
    });
    let first = p.ballot().clone();
    let done = s.run(&mut p, &mut a, &|o| o.to != 2);
    assert_eq!(
        done.outcome,
        Outcome::Committed {
            version: first.into_version()
        },
        "not a condition failure against its own value"
    );
    assert_eq!(done.attempts, 2);
}

#[test]
fn refused_proposals_are_known_not_applied_and_lost_answers_unknown() {
    let cfg = PaxosConfig {
        max_attempts: 1,
        ..config()
    };
    // A prepares; B prepares higher before A proposes: every replica refuses A's proposal.
    let mut s = Script::new(3);
    let (mut a, mut b) = (Node::new(1, 0), Node::new(2, 10));
    let mut pa = s.start(&mut a, cas(Condition::Absent, "a"), cfg.clone());
    let prepares: Vec<_> = std::iter::from_fn(|| pa.poll_send()).collect();
    let mut proposals = Vec::new();
    for out in prepares {
        let answer = s.replicas[out.to].serve(out.request);
        pa.handle_response(s.now(), out.id, Ok(answer));
        proposals.extend(std::iter::from_fn(|| pa.poll_send()));
    }
    assert_eq!(proposals.len(), 3);
    // B's prepares all go out at once (as a driver sends them) and reach every replica.
    let mut pb = s.start(&mut b, Operation::SerialRead, cfg.clone());
    let prepares: Vec<_> = std::iter::from_fn(|| pb.poll_send()).collect();
    for out in prepares {
        let answer = s.replicas[out.to].serve(out.request);
        pb.handle_response(s.now(), out.id, Ok(answer));
    }
    assert!(matches!(
        pb.result().unwrap().outcome,
        Outcome::Read { current: None }
    ));
    for out in proposals {
        let answer = s.replicas[out.to].serve(out.request);
        assert!(matches!(answer, PaxosResponse::Rejected { .. }));
        pa.handle_response(s.now(), out.id, Ok(answer));
    }
    assert_eq!(
        pa.result().unwrap().outcome,
        Outcome::NotApplied {
            cause: Cause::Contention
        }
    );

    // A proposal accepted by one replica whose other answers are lost: unknown.
    let mut s = Script::new(3);
    let mut pa = s.start(&mut a, cas(Condition::Absent, "a"), cfg);
    let done = s.run(&mut pa, &mut a, &|o| {
        !matches!(o.request, PaxosRequest::Propose { .. }) || o.to == 1
    });
    assert!(matches!(
        done.outcome,
        Outcome::Unknown {
            cause: Cause::NoQuorum { answered: 1, .. }
        }
    ));
    assert!(!done.outcome.is_known());
}

#[test]
fn a_ballot_behind_the_current_version_moves_above_it() {
    let mut s = Script::new(3);
    // A plain LWW write stamped by a clock far ahead.
    let ahead = Version::new(HlcTimestamp::new(5_000_000, 0), vec![9]);
    for r in &mut s.replicas {
        r.put(Record::new(KEY.to_vec(), b"plain".to_vec(), ahead.clone()));
    }
    let mut node = Node::new(1, 0);
    let mut p = s.start(
        &mut node,
        cas(Condition::Version(ahead.hlc), "cas"),
        config(),
    );
    let done = s.run(&mut p, &mut node, &all);
    let Outcome::Committed { version } = done.outcome else {
        panic!("{done:?}");
    };
    assert!(version.hlc > ahead.hlc, "the CAS value wins LWW");
    assert!(s.replicas.iter().all(|r| r.value() == Some(&b"cas"[..])));
    assert_eq!(done.round_trips, 3, "one extra prepare");
    assert_eq!(done.contention_retries, 1);
}

// ---------------------------------------------------------------------------------------------
// The property test: several clients incrementing one counter by CAS over a faulty network.

/// What a client is doing.
enum Doing {
    Read,
    Cas {
        expected: Option<String>,
        new: String,
    },
}

struct Task {
    proposer: Proposer<usize>,
    serial: u64,
    doing: Doing,
    invoked: u64,
}

struct Client {
    node: Node,
    task: Option<Task>,
    /// The value the last serial read returned, to increment next.
    last_read: Option<Option<Record>>,
    increments_left: usize,
    crashed: bool,
    /// Only reads once, then stops (the final read after the faults stop).
    final_reader: bool,
    done: bool,
}

enum Payload {
    Request {
        to: usize,
        id: u64,
        request: PaxosRequest,
    },
    Response {
        id: u64,
        answer: PaxosResponse,
    },
}

struct Msg {
    client: usize,
    serial: u64,
    payload: Payload,
}

#[derive(Clone, Copy, Debug)]
struct Faults {
    drop_pct: u32,
    dup_pct: u32,
    crash_permille: u32,
    replica_flap_permille: u32,
}

const NO_FAULTS: Faults = Faults {
    drop_pct: 0,
    dup_pct: 0,
    crash_permille: 0,
    replica_flap_permille: 0,
};

struct Sim {
    rng: ChaCha8Rng,
    t0: Instant,
    elapsed: Duration,
    /// Logical time of the history: every invocation and completion gets the next tick, so
    /// the history has the exact real-time order of the simulation.
    tick: u64,
    replicas: Vec<Replica>,
    down: Option<usize>,
    clients: Vec<Client>,
    net: Vec<Msg>,
    serial: u64,
    faults: Faults,
    history: Vec<RegisterOp<String>>,
    round_trips: Vec<u32>,
}

fn text(r: &Option<Record>) -> Option<String> {
    r.as_ref()
        .and_then(Record::data)
        .map(|d| String::from_utf8(d.to_vec()).expect("values are text"))
}

fn counter(v: &Option<String>) -> u64 {
    v.as_ref().map_or(0, |s| {
        s.split(':').next().unwrap().parse().expect("n:client:seq")
    })
}

impl Sim {
    fn new(seed: u64, clients: usize, increments: usize, faults: Faults) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let clients = (0..clients)
            .map(|i| Client {
                node: Node::new(i as u8 + 1, rng.random_range(0..200)),
                task: None,
                last_read: None,
                increments_left: increments,
                crashed: false,
                final_reader: false,
                done: false,
            })
            .collect();
        Self {
            rng,
            t0: Instant::now(),
            elapsed: Duration::ZERO,
            tick: 0,
            replicas: (0..3).map(|_| Replica::default()).collect(),
            down: None,
            clients,
            net: Vec::new(),
            serial: 0,
            faults,
            history: Vec::new(),
            round_trips: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Lets every client start, send, take ballots and finish what it can.
    fn act(&mut self) {
        for c in 0..self.clients.len() {
            if self.clients[c].crashed || self.clients[c].done {
                continue;
            }
            if self.clients[c].task.is_none() {
                self.start_next(c);
            }
            let now = self.now();
            let now_ms = self.elapsed.as_millis() as u64;
            let client = &mut self.clients[c];
            let Some(task) = &mut client.task else {
                continue;
            };
            loop {
                if let Some(floor) = task.proposer.poll_ballot() {
                    client.node.hlc.observe_persisted(floor);
                    let ts = client.node.timestamp(now_ms);
                    task.proposer.handle_ballot(now, ts);
                }
                let Some(out) = task.proposer.poll_send() else {
                    break;
                };
                self.net.push(Msg {
                    client: c,
                    serial: task.serial,
                    payload: Payload::Request {
                        to: out.to,
                        id: out.id,
                        request: out.request,
                    },
                });
            }
            if task.proposer.result().is_some() {
                self.complete(c);
            }
        }
    }

    fn start_next(&mut self, c: usize) {
        let client = &self.clients[c];
        if client.increments_left == 0 && !(client.final_reader && client.last_read.is_none()) {
            self.clients[c].done = true;
            return;
        }
        let (op, doing) = match &client.last_read {
            None => (Operation::SerialRead, Doing::Read),
            Some(current) => {
                let expected = text(current);
                let new = format!(
                    "{}:{}:{}",
                    counter(&expected) + 1,
                    c,
                    client.increments_left
                );
                let condition = current
                    .as_ref()
                    .map_or(Condition::Absent, |r| Condition::Version(r.version.hlc));
                let op = Operation::Cas {
                    condition,
                    update: Update::put(new.clone().into_bytes()),
                };
                (op, Doing::Cas { expected, new })
            }
        };
        self.serial += 1;
        let invoked = self.next_tick();
        let now = self.now();
        let seed = self.rng.random();
        let client = &mut self.clients[c];
        let ts = client.node.timestamp(self.elapsed.as_millis() as u64);
        let proposer = Proposer::new(
            KEY.to_vec(),
            op,
            client.node.id.clone(),
            vec![0, 1, 2],
            config(),
            ts,
            now,
            seed,
        );
        client.task = Some(Task {
            proposer,
            serial: self.serial,
            doing,
            invoked,
        });
    }

    /// Records a decided operation and moves the client on. (Its commits, already handed to
    /// the network, still travel.)
    fn complete(&mut self, c: usize) {
        let completed = self.next_tick();
        let task = self.clients[c].task.take().expect("a task");
        let done = task.proposer.result().expect("decided").clone();
        let client = &mut self.clients[c];
        let (call, ret) = match (task.doing, done.outcome) {
            (Doing::Read, Outcome::Read { current }) => {
                let value = text(&current);
                client.last_read = Some(current);
                if client.final_reader {
                    client.done = true;
                }
                (Call::Read, Return::Read(value))
            }
            (Doing::Read, _) => (Call::Read, Return::Fail),
            (Doing::Cas { expected, new }, outcome) => {
                client.increments_left -= 1;
                client.last_read = None;
                self.round_trips.push(done.round_trips);
                let ret = match outcome {
                    Outcome::Committed { .. } => Return::Ok,
                    Outcome::ConditionFailed { .. } => Return::Mismatch,
                    Outcome::NotApplied { .. } => Return::Fail,
                    Outcome::Unknown { .. } => Return::Unknown,
                    Outcome::Read { .. } => unreachable!("a CAS does not read"),
                };
                let call = Call::Cas {
                    expected,
                    new: Some(new),
                };
                (call, ret)
            }
        };
        self.history.push(RegisterOp {
            client: c,
            key: "counter".into(),
            call,
            ret,
            invoked: task.invoked,
            completed,
        });
    }

    fn deliver(&mut self) {
        let i = self.rng.random_range(0..self.net.len());
        let msg = self.net.swap_remove(i);
        if self.rng.random_ratio(self.faults.drop_pct, 100) {
            return;
        }
        // Requests are sent once by a real transport; the proposer's "not applied" verdict
        // relies on that for proposals, so only other messages are duplicated.
        let is_proposal = matches!(
            msg.payload,
            Payload::Request {
                request: PaxosRequest::Propose { .. },
                ..
            }
        );
        let duplicate = !is_proposal && self.rng.random_ratio(self.faults.dup_pct, 100);
        match msg.payload {
            Payload::Request { to, id, request } => {
                if self.down == Some(to) {
                    return;
                }
                if duplicate {
                    self.net.push(Msg {
                        client: msg.client,
                        serial: msg.serial,
                        payload: Payload::Request {
                            to,
                            id,
                            request: request.clone(),
                        },
                    });
                }
                let answer = self.replicas[to].serve(request);
                self.net.push(Msg {
                    client: msg.client,
                    serial: msg.serial,
                    payload: Payload::Response { id, answer },
                });
            }
            Payload::Response { id, answer } => {
                if duplicate {
                    self.net.push(Msg {
                        client: msg.client,
                        serial: msg.serial,
                        payload: Payload::Response {
                            id,
                            answer: answer.clone(),
                        },
                    });
                }
                let now = self.now();
                let client = &mut self.clients[msg.client];
                if let Some(task) = &mut client.task
                    && task.serial == msg.serial
                    && !client.crashed
                {
                    task.proposer.handle_response(now, id, Ok(answer));
                }
            }
        }
    }

    fn advance(&mut self) {
        let next = self
            .clients
            .iter()
            .filter_map(|c| c.task.as_ref())
            .filter_map(|t| t.proposer.poll_timeout())
            .min();
        let step = Duration::from_millis(self.rng.random_range(1..=20));
        self.elapsed = match next {
            // Nothing in the network: jump to the deadline.
            Some(next) if self.net.is_empty() => self.elapsed.max(next - self.t0),
            _ => self.elapsed + step,
        };
        let now = self.now();
        for c in &mut self.clients {
            if let Some(t) = &mut c.task {
                t.proposer.handle_timeout(now);
            }
        }
    }

    fn inject_faults(&mut self) {
        if self.rng.random_ratio(self.faults.crash_permille, 1000) {
            let c = self.rng.random_range(0..self.clients.len());
            let client = &mut self.clients[c];
            if !client.crashed && !client.done {
                client.crashed = true;
                // Whatever it was doing may or may not take effect.
                if let Some(Task {
                    doing: Doing::Cas { expected, new },
                    invoked,
                    ..
                }) = client.task.take()
                {
                    self.history.push(RegisterOp {
                        client: c,
                        key: "counter".into(),
                        call: Call::Cas {
                            expected,
                            new: Some(new),
                        },
                        ret: Return::Unknown,
                        invoked,
                        completed: 0,
                    });
                }
            }
        }
        if self
            .rng
            .random_ratio(self.faults.replica_flap_permille, 1000)
        {
            // At most one of the three replicas down at a time, so a majority stays.
            self.down = match self.down {
                Some(_) => None,
                None => Some(self.rng.random_range(0..3)),
            };
        }
    }

    /// Runs until every client is done or crashed; false if it did not end in `max_steps`.
    fn run(&mut self, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            self.act();
            if self.clients.iter().all(|c| c.done || c.crashed) {
                return true;
            }
            self.inject_faults();
            if !self.net.is_empty() && self.rng.random_ratio(9, 10) {
                self.deliver();
            } else {
                self.advance();
            }
        }
        false
    }

    /// Stops the faults and reads the counter once more, serially.
    fn final_read(&mut self) -> Option<String> {
        self.faults = NO_FAULTS;
        self.down = None;
        let id = self.clients.len();
        self.clients.push(Client {
            node: Node::new(id as u8 + 1, 0),
            task: None,
            last_read: None,
            increments_left: 0,
            crashed: false,
            final_reader: true,
            done: false,
        });
        assert!(self.run(100_000), "the final read ends");
        let last = self.clients.last().unwrap();
        text(last.last_read.as_ref().expect("the final read succeeded"))
    }
}

fn check_run(seed: u64, clients: usize, increments: usize, faults: Faults) -> Result<(), String> {
    let mut sim = Sim::new(seed, clients, increments, faults);
    if !sim.run(500_000) {
        return Err("the clients did not finish".into());
    }
    let final_value = sim.final_read();
    let report = linearizable::check(&sim.history, Budget::default())
        .map_err(|e| format!("malformed history: {e}"))?;
    match report.linearizable() {
        Some(true) => {}
        Some(false) => {
            let (_, c) = report.violations().next().unwrap();
            return Err(format!("not linearizable:\n{c}"));
        }
        None => return Err("the checker ran out of budget".into()),
    }
    let cas = |ret: fn(&Return<String>) -> bool| {
        sim.history
            .iter()
            .filter(|o| matches!(o.call, Call::Cas { .. }) && ret(&o.ret))
            .count() as u64
    };
    let committed = cas(|r| matches!(r, Return::Ok));
    let unknown = cas(|r| matches!(r, Return::Unknown));
    let n = counter(&final_value);
    if !(committed <= n && n <= committed + unknown) {
        return Err(format!(
            "final counter {n}, but {committed} increments committed and {unknown} unknown"
        ));
    }
    for r in &sim.replicas {
        r.acceptor(KEY); // every persisted row decodes
    }
    Ok(())
}

#[test]
fn contended_increments_on_a_faulty_network_are_linearizable_and_none_is_lost() {
    let faults = Faults {
        drop_pct: 10,
        dup_pct: 10,
        crash_permille: 2,
        replica_flap_permille: 5,
    };
    for seed in 0..16 {
        check_run(seed, 5, 8, faults).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn increments_without_faults_all_commit_or_fail_knowingly_and_cost_two_round_trips_alone() {
    let mut sim = Sim::new(3, 1, 10, NO_FAULTS);
    assert!(sim.run(100_000));
    assert!(
        sim.history
            .iter()
            .all(|o| matches!(o.ret, Return::Ok | Return::Read(_))),
        "one client alone: every CAS commits"
    );
    assert_eq!(sim.round_trips, vec![2; 10]);
    assert_eq!(counter(&sim.final_read()), 10);
    // Several clients: contention costs retries, never correctness.
    check_run(4, 5, 6, NO_FAULTS).unwrap();
}

proptest! {
    // A fixed seed: the cases, and so the test, are the same on every run.
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: RngSeed::Fixed(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_interleavings_drops_duplicates_and_crashes_keep_cas_linearizable(
        seed in any::<u64>(),
        clients in 2usize..6,
        increments in 1usize..8,
        drop_pct in 0u32..25,
        dup_pct in 0u32..15,
        crash_permille in 0u32..5,
        replica_flap_permille in 0u32..10,
    ) {
        let faults = Faults { drop_pct, dup_pct, crash_permille, replica_flap_permille };
        let result = check_run(seed, clients, increments, faults);
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}
