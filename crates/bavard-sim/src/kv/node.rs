//! [`KvNode`]: one simulated bavard node of the replicated store — the SWIM membership core and
//! a replica driving the real replica core, as `bavard-node`'s replica service does.
//!
//! - **Membership**: a [`Membership`] core; its view (alive and suspect members, this node
//!   included) is the member set keys are placed on ([`Views`]).
//! - **Storage**: a [`MemoryStore`] (durable in the simulation: a crash keeps it), a hint store
//!   (owner, time kept, key → record), and an [`Hlc`] on the node's own, possibly skewed, clock:
//!   every version this node stamps comes from it and every version it stores is checked
//!   against it first (refused when more than 500 ms ahead), as `Replica::store` does.
//! - **Coordination**: a client operation runs a [`Write`] or a [`Read`] against the preference
//!   list of the node's current view (and the nearest fallbacks for hints), sends what the core
//!   asks, serves its own share locally, and reports the result as soon as the core has one
//!   (the coordination goes on: remaining replicas, hints, read repair).
//! - **Serving**: stores (hints kept for `hint_for`), fetches and anti-entropy requests
//!   ([`answer`]).
//! - **Anti-entropy**, scheduled as `bavard-node`'s driver does: every check period, partners
//!   seen for the first time get a round at once; every interval, the next partner in turn; a
//!   round that moved many keys is followed at once by another. One round at a time. One
//!   difference: the node recomputes its partners whenever its view changed; the simulated node
//!   waits until the view held still for two check periods (after a partition heals, deaths and
//!   refutations change a thousand views many times a second, and each distinct view costs a
//!   walk over the 65,536 leaves).
//! - **Hinted handoff**: every delivery period, each owner not held for dead or departed gets
//!   its hints in byte-bounded batches ([`HandoffPolicy`]); a hint goes once the owner holds it.
//!
//! A crash ([`SimNode::on_crash`]) loses what a process keeps in memory: coordinations,
//! requests in flight, the anti-entropy round. The store, the hints, the clock and (as in a
//! pause) the membership view survive.
//!
//! [`Broken`] builds deliberately faulty variants for the checker's own tests.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bavard_gossip::membership::{
    MemberState, Membership, MembershipError, MembershipEvent, Message as SwimMessage, Update,
};
use bavard_replica::paxos::{
    Acceptor, Completion, Condition, Operation, PaxosConfig, PaxosRequest, PaxosResponse, Proposer,
    Update as CasUpdate,
};
use bavard_replica::sync::record_size;
use bavard_replica::{
    AnswerTime, Coordination, Failure, HandoffPolicy, Initiator, Placement, Read, ReadOptions,
    Request, RequestId, Response, Step, StoreOutcome, SyncConfig, Write, answer,
};
use bavard_routing::Key;
use bavard_store::{
    Hlc, HlcTimestamp, MemoryStore, PutOutcome, Record, RecordStore, StoreConfig, Version,
};
use rand_chacha::ChaCha8Rng;

use super::views::{View, Views, bitset, node_key};
use crate::NodeId;
use crate::harness::SimNode;

/// What the unix clock of every node reads at virtual time zero (before its skew).
const BASE_UNIX_MS: u64 = 1_700_000_000_000;

/// A round that moved at least this many keys is followed at once by another (as the node).
const CATCH_UP_THRESHOLD: usize = 256;

/// How a coordinator counts replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// One replica.
    One,
    /// A majority: ⌊N/2⌋ + 1.
    Quorum,
    /// Every replica.
    All,
}

impl Consistency {
    /// Replicas required out of `n` (as the node's `Consistency::required`).
    pub fn required(self, n: usize) -> usize {
        match self {
            Consistency::One => 1,
            Consistency::Quorum => n / 2 + 1,
            Consistency::All => n,
        }
        .max(1)
    }
}

/// Deliberately broken variants of the node, so that tests can show the checker catches what
/// each one breaks. All off by default; not reachable from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Broken {
    /// Replicas acknowledge a store at once and apply it only this long after (a write-back
    /// cache): a crash in between loses acknowledged records.
    pub ack_before_store: Option<Duration>,
    /// Coordinators read from a single replica (the farthest of the preference list) and take
    /// its answer, whatever the consistency level claims.
    pub read_one_replica: bool,
    /// This node answers every fetch with a value nobody wrote, newer than what it holds.
    pub liar: Option<NodeId>,
    /// Each coordinator runs its compare-and-set rounds on one replica of the key's N, a
    /// different one per coordinator: "majorities" that do not intersect, so two coordinators
    /// can both commit on the version they read.
    pub disjoint_cas_quorums: bool,
}

/// What every node shares: parameters and the view cache.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) nodes: u32,
    pub(crate) n: usize,
    pub(crate) fallbacks: usize,
    pub(crate) request_timeout: Duration,
    /// How long a compare-and-set or serial read may run before it is decided as it stands
    /// (the node's request deadline).
    pub(crate) cas_deadline: Duration,
    pub(crate) ae_check: Duration,
    pub(crate) ae_interval: Duration,
    pub(crate) hint_interval: Duration,
    pub(crate) sync: SyncConfig,
    pub(crate) handoff: HandoffPolicy,
    pub(crate) broken: Broken,
    pub(crate) views: RefCell<Views>,
}

/// What nodes send each other.
#[derive(Debug, Clone)]
pub(crate) enum Msg {
    /// The membership protocol.
    Swim(SwimMessage<NodeId>),
    /// A replica-protocol request; the answer carries the same tag.
    Request { tag: u64, req: Request<NodeId> },
    /// The answer to the request `tag`.
    Response {
        tag: u64,
        answer: Result<Response, Failure>,
    },
    /// A Paxos request (compare-and-set rounds); the answer carries the same tag.
    Paxos { tag: u64, req: PaxosRequest },
    /// The answer to the Paxos request `tag`.
    PaxosAnswer {
        tag: u64,
        answer: Result<PaxosResponse, Failure>,
    },
}

impl Msg {
    /// Estimated size on the wire.
    pub(crate) fn len(&self) -> usize {
        match self {
            Msg::Swim(m) => m.encoded_len_estimate(),
            Msg::Request { req, .. } => 16 + request_len(req),
            Msg::Response { answer, .. } => 16 + answer.as_ref().map_or(64, response_len),
            Msg::Paxos { req, .. } => 48 + paxos_request_len(req),
            Msg::PaxosAnswer { answer, .. } => 16 + answer.as_ref().map_or(64, paxos_answer_len),
        }
    }
}

fn request_len(req: &Request<NodeId>) -> usize {
    match req {
        Request::Store { records, .. } => records.iter().map(record_size).sum(),
        Request::Fetch { keys } => keys.iter().map(|k| 8 + k.len()).sum(),
        Request::Tree { hashes, .. } => bavard_replica::LEAF_SET_BYTES + hashes.len() * 9,
        Request::Leaves { hashes } => hashes.len() * 16,
        Request::Entries { leaves, after } => {
            16 + leaves.len() * 4 + after.as_ref().map_or(0, Vec::len)
        }
    }
}

fn paxos_request_len(req: &PaxosRequest) -> usize {
    match req {
        PaxosRequest::Prepare { key, .. } => key.len(),
        PaxosRequest::Propose { proposal, .. } | PaxosRequest::Commit { proposal, .. } => {
            record_size(proposal)
        }
    }
}

fn paxos_answer_len(resp: &PaxosResponse) -> usize {
    match resp {
        PaxosResponse::Promise {
            current, accepted, ..
        } => {
            48 + current.as_ref().map_or(0, record_size)
                + accepted.as_ref().map_or(0, |a| record_size(&a.proposal))
        }
        PaxosResponse::Accepted | PaxosResponse::Committed => 0,
        PaxosResponse::Rejected { .. } => 24,
    }
}

fn response_len(resp: &Response) -> usize {
    match resp {
        Response::Store { results } => results.len() * 4,
        Response::Fetch { records, .. } => 8 + records.iter().map(record_size).sum::<usize>(),
        Response::Tree { differing } => differing.len() * 2,
        Response::Leaves { differing } => differing.len() * 3,
        Response::Entries { entries, .. } => {
            entries.iter().map(bavard_replica::sync::entry_size).sum()
        }
    }
}

/// A client operation given to a coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientOp {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
    },
    /// A linearizable read: a Paxos round that sees every committed compare-and-set.
    SerialRead {
        key: String,
    },
    /// A compare-and-set: write `value` if `condition` holds.
    Cas {
        key: String,
        condition: Condition,
        value: String,
    },
}

/// How a client operation ended, as the coordinator reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpResult {
    /// A put or delete acknowledged by enough replicas, with the version it wrote.
    Written(u64),
    /// A put or delete too few replicas acknowledged, with the version it tried to write. Not
    /// a refusal: the replicas that stored it keep it, and hints and anti-entropy spread it.
    Unacknowledged(u64),
    /// A get: the newest record of the replicas that answered (tombstones included).
    Read(Option<Record>),
    /// A get too few replicas answered.
    Failed,
    /// A serial read or a compare-and-set, as the proposer ended it.
    Paxos(Completion),
}

/// What a node reports to the experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    /// Client operation `op` ended.
    Done { op: u64, result: OpResult },
}

/// Why a node refused a message.
#[derive(Debug)]
pub(crate) enum KvError {
    /// The membership core refused it.
    Membership(#[allow(dead_code)] MembershipError),
}

/// Per-node counters, summed by the experiment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NodeStats {
    pub(crate) swim_msgs: u64,
    pub(crate) op_msgs: u64,
    pub(crate) ae_msgs: u64,
    pub(crate) hint_msgs: u64,
    pub(crate) hints_handed: u64,
    pub(crate) hints_delivered: u64,
    pub(crate) read_repairs: u64,
    pub(crate) ae_rounds: u64,
    pub(crate) ae_failed: u64,
    pub(crate) ae_keys_moved: u64,
    pub(crate) clock_refusals: u64,
}

enum Coord {
    Write { w: Write<NodeId>, version: u64 },
    Read(Read<NodeId>),
}

impl Coord {
    fn c(&mut self) -> &mut dyn Coordination<NodeId> {
        match self {
            Coord::Write { w, .. } => w,
            Coord::Read(r) => r,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Coord::Write { w, .. } => w.poll_timeout(),
            Coord::Read(r) => r.poll_timeout(),
        }
    }

    fn result(&self) -> Option<OpResult> {
        Some(match self {
            Coord::Write { w, version } => match w.result()? {
                Ok(_) => OpResult::Written(*version),
                Err(_) => OpResult::Unacknowledged(*version),
            },
            Coord::Read(r) => match r.result()? {
                Ok(found) => OpResult::Read(found.clone()),
                Err(_) => OpResult::Failed,
            },
        })
    }
}

struct Op {
    coord: Coord,
    reported: bool,
    tags: Vec<u64>,
}

enum Call {
    Op {
        op: u64,
        id: RequestId,
        /// When a read's fetch went out (its answer time feeds the speculation delay).
        fetch_sent: Option<Instant>,
    },
    Sync {
        deadline: Instant,
    },
    Hints {
        owner: NodeId,
        keys: Vec<HintKey>,
        deadline: Instant,
    },
    /// A request of compare-and-set `op` (the proposer keeps its deadline).
    Paxos {
        op: u64,
        id: RequestId,
    },
}

/// A compare-and-set or serial read this node coordinates.
struct CasOp {
    p: Proposer<NodeId>,
    /// When it is decided as it stands ([`Proposer::handle_deadline`]).
    deadline: Instant,
    reported: bool,
    tags: Vec<u64>,
}

/// A hint's place in the hint store: the owner, when it was kept (local ms), the key.
type HintKey = (NodeId, u64, Vec<u8>);

struct Round {
    init: Initiator<NodeId>,
    peer: NodeId,
}

/// Anti-entropy scheduling (see the module docs).
struct AntiEntropy {
    next_check: Instant,
    next_periodic: Instant,
    /// The view the partners were computed for, and them.
    partners: Option<(Rc<View>, Vec<NodeId>)>,
    seen: Vec<NodeId>,
    queue: VecDeque<NodeId>,
    turn: usize,
    round: Option<Round>,
}

/// One simulated node (see the module docs).
pub(crate) struct KvNode {
    id: NodeId,
    shared: Rc<Shared>,
    pub(crate) swim: Membership<NodeId, ChaCha8Rng>,
    pub(crate) store: MemoryStore,
    pub(crate) hints: BTreeMap<HintKey, Record>,
    hlc: Hlc,
    /// The unskewed instant of virtual time zero: `now - epoch` is virtual time plus skew.
    epoch: Instant,
    view: Option<Rc<View>>,
    /// The last view built, and since when (the node's time) it is the node's view.
    last_view: Option<Rc<View>>,
    view_since: Instant,
    /// The time of the input being handled.
    now: Instant,
    ops: BTreeMap<u64, Op>,
    cas_ops: BTreeMap<u64, CasOp>,
    calls: HashMap<u64, Call>,
    /// How long replicas take to answer this node's reads (when to speculate).
    answer_time: AnswerTime,
    next_tag: u64,
    ae: AntiEntropy,
    next_handoff: Instant,
    handing: BTreeSet<NodeId>,
    /// Broken variant: stores acknowledged but not applied yet, and when they will be.
    unflushed: VecDeque<(Instant, Vec<Record>)>,
    outbox: VecDeque<(NodeId, Msg)>,
    events: VecDeque<Out>,
    pub(crate) stats: NodeStats,
}

impl KvNode {
    /// Node `id` built at its local time `now` (its clock is `skew` off virtual time).
    pub(crate) fn new(
        id: NodeId,
        shared: Rc<Shared>,
        swim: Membership<NodeId, ChaCha8Rng>,
        now: Instant,
        epoch: Instant,
        phase: Duration,
    ) -> Self {
        let ae = AntiEntropy {
            next_check: now + phase.mul_f64(0.1),
            next_periodic: now + phase,
            partners: None,
            seen: Vec::new(),
            queue: VecDeque::new(),
            turn: 0,
            round: None,
        };
        let next_handoff = now + shared.hint_interval.mul_f64(phase.as_secs_f64().fract());
        Self {
            id,
            store: MemoryStore::new(StoreConfig::new(id.to_be_bytes().to_vec())),
            shared,
            swim,
            hints: BTreeMap::new(),
            hlc: Hlc::default(),
            epoch,
            view: None,
            last_view: None,
            view_since: now,
            now,
            ops: BTreeMap::new(),
            cas_ops: BTreeMap::new(),
            calls: HashMap::new(),
            next_tag: 0,
            ae,
            next_handoff,
            handing: BTreeSet::new(),
            answer_time: AnswerTime::default(),
            unflushed: VecDeque::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
        }
    }

    /// The node's unix clock, ms.
    fn unix_ms(&self, now: Instant) -> u64 {
        if now >= self.epoch {
            BASE_UNIX_MS + (now - self.epoch).as_millis() as u64
        } else {
            BASE_UNIX_MS - (self.epoch - now).as_millis() as u64
        }
    }

    /// The current view (rebuilt from the membership when it changed).
    fn view(&mut self) -> Rc<View> {
        if let Some(v) = &self.view {
            return v.clone();
        }
        let live = self
            .swim
            .members()
            .filter(|m| m.state().is_live())
            .map(|m| *m.id());
        let members = bitset(self.shared.nodes, live);
        let v = self.shared.views.borrow_mut().get(members);
        if self
            .last_view
            .as_ref()
            .is_none_or(|old| !Rc::ptr_eq(old, &v))
        {
            self.view_since = self.now;
            self.last_view = Some(v.clone());
        }
        self.view = Some(v.clone());
        v
    }

    /// Tells the membership about every member at once, as the push-pull answer of a seed
    /// would (the experiment starts from a converged membership).
    pub(crate) fn bootstrap(&mut self, now: Instant, from: NodeId, states: Vec<Update<NodeId>>) {
        self.now = now;
        let msg = SwimMessage::PushPull {
            join: false,
            reply: true,
            states,
        };
        let _ = self.swim.handle_message(now, from, msg);
        self.flush_swim();
        // The cluster starts in sync (every store empty): the partners of the first view are
        // not new ones to catch up with, only the periodic rounds run.
        let view = self.view();
        let partners = {
            let views = self.shared.views.borrow();
            view.partners(self.id, &views.leaf_maps_built)
        };
        self.ae.seen = partners.clone();
        self.ae.partners = Some((view, partners));
    }

    fn flush_swim(&mut self) {
        while let Some((to, m)) = self.swim.poll_transmit() {
            self.stats.swim_msgs += 1;
            self.outbox.push_back((to, Msg::Swim(m)));
        }
        while let Some(ev) = self.swim.poll_event() {
            if matches!(
                ev,
                MembershipEvent::MemberUp { .. }
                    | MembershipEvent::MemberDown { .. }
                    | MembershipEvent::MemberLeft { .. }
                    | MembershipEvent::MemberReaped { .. }
            ) {
                self.view = None;
            }
        }
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    // ----- coordination -----

    /// Starts client operation `op` at consistency `level`.
    pub(crate) fn client(&mut self, now: Instant, op: u64, what: ClientOp, level: Consistency) {
        self.now = now;
        let n = self.shared.n;
        let required = level.required(n);
        let key = match &what {
            ClientOp::Put { key, .. } | ClientOp::Delete { key } | ClientOp::Get { key } => {
                key.clone().into_bytes()
            }
            ClientOp::SerialRead { key } => {
                return self.start_cas(now, op, key.clone().into_bytes(), Operation::SerialRead);
            }
            ClientOp::Cas {
                key,
                condition,
                value,
            } => {
                let operation = Operation::Cas {
                    condition: *condition,
                    update: CasUpdate::put(value.clone().into_bytes()),
                };
                return self.start_cas(now, op, key.clone().into_bytes(), operation);
            }
        };
        let view = self.view();
        let mut preferred = view
            .placement
            .nearest(&Key::hash(&key), n + self.shared.fallbacks);
        let fallbacks = preferred.split_off(n.min(preferred.len()));
        let timeout = self.shared.request_timeout;
        let coord = match what {
            ClientOp::Get { .. } => {
                let (preferred, required) = if self.shared.broken.read_one_replica {
                    (preferred.last().copied().into_iter().collect(), 1)
                } else {
                    (preferred, required)
                };
                let options = ReadOptions {
                    timeout,
                    read_repair: true,
                    repair_wait: timeout,
                    speculate_after: self.answer_time.speculate_after(timeout),
                };
                Coord::Read(Read::new(key, preferred, required, now, options))
            }
            ClientOp::Put { value, .. } => {
                let version = self.stamp(now);
                let hlc = version.hlc;
                let record = Record::new(key, value.into_bytes(), version);
                Coord::Write {
                    w: Write::new(
                        record, self.id, preferred, fallbacks, required, now, timeout,
                    ),
                    version: hlc,
                }
            }
            ClientOp::SerialRead { .. } | ClientOp::Cas { .. } => unreachable!("started above"),
            ClientOp::Delete { .. } => {
                let version = self.stamp(now);
                let hlc = version.hlc;
                let record = Record::tombstone(key, self.unix_ms(now), version);
                Coord::Write {
                    w: Write::new(
                        record, self.id, preferred, fallbacks, required, now, timeout,
                    ),
                    version: hlc,
                }
            }
        };
        self.ops.insert(
            op,
            Op {
                coord,
                reported: false,
                tags: Vec::new(),
            },
        );
        self.pump(now, op);
    }

    // ----- compare-and-set (as `bavard-node`'s `replica::paxos`) -----

    /// The replicas of `key`'s consensus rounds: its N closest members, those held for down
    /// included (only departed ones are left out), so that the set does not move when a
    /// replica crashes.
    fn paxos_replicas(&self, key: &[u8]) -> Vec<NodeId> {
        let members = self
            .swim
            .members()
            .filter(|m| m.state() != MemberState::Left)
            .map(|m| (*m.id(), node_key(*m.id())));
        let replicas = Placement::new(members, self.shared.n).preference_list(&Key::hash(key));
        if self.shared.broken.disjoint_cas_quorums && !replicas.is_empty() {
            return vec![replicas[self.id as usize % replicas.len()]];
        }
        replicas
    }

    fn start_cas(&mut self, now: Instant, op: u64, key: Vec<u8>, operation: Operation) {
        let replicas = self.paxos_replicas(&key);
        let config = PaxosConfig {
            timeout: self.shared.request_timeout,
            ..PaxosConfig::default()
        };
        let ts = self.stamp(now).timestamp();
        // The backoff's seed: any value unique to the operation replays from the run's seed.
        let seed = (u64::from(self.id) << 40) ^ op;
        let p = Proposer::new(
            key,
            operation,
            self.id.to_be_bytes().to_vec(),
            replicas,
            config,
            ts,
            now,
            seed,
        );
        self.cas_ops.insert(
            op,
            CasOp {
                p,
                deadline: now + self.shared.cas_deadline,
                reported: false,
                tags: Vec::new(),
            },
        );
        self.pump_cas(now, op);
    }

    /// Sends what compare-and-set `op` asks (its own share served at once), hands it fresh
    /// ballots, reports its result once decided and forgets it once finished.
    fn pump_cas(&mut self, now: Instant, op: u64) {
        let Some(mut o) = self.cas_ops.remove(&op) else {
            return;
        };
        loop {
            while let Some(out) = o.p.poll_send() {
                if out.to == self.id {
                    let answer = self.serve_paxos(now, self.id, out.request);
                    o.p.handle_response(now, out.id, answer);
                } else {
                    let tag = self.tag();
                    o.tags.push(tag);
                    self.calls.insert(tag, Call::Paxos { op, id: out.id });
                    self.stats.op_msgs += 1;
                    self.outbox.push_back((
                        out.to,
                        Msg::Paxos {
                            tag,
                            req: out.request,
                        },
                    ));
                }
            }
            let Some(floor) = o.p.poll_ballot() else {
                break;
            };
            self.hlc.observe_persisted(floor);
            let ts = self.hlc.now(self.unix_ms(now));
            o.p.handle_ballot(now, ts);
        }
        if !o.reported
            && let Some(done) = o.p.result()
        {
            o.reported = true;
            self.events.push_back(Out::Done {
                op,
                result: OpResult::Paxos(done.clone()),
            });
        }
        if o.p.is_finished() {
            for tag in &o.tags {
                self.calls.remove(tag);
            }
        } else {
            self.cas_ops.insert(op, o);
        }
    }

    /// One acceptor step, as the node's IO shell does it: ballots (and proposals) from beyond
    /// the clock drift bound refused, the key's row loaded, the rule run, its row and record
    /// written in one store transaction, then the answer.
    fn serve_paxos(
        &mut self,
        now: Instant,
        from: NodeId,
        req: PaxosRequest,
    ) -> Result<PaxosResponse, Failure> {
        let now_ms = self.unix_ms(now);
        if req.ballot().node() != from.to_be_bytes() {
            return Err(Failure::Refused("the ballot is not the sender's".into()));
        }
        let mut stamps = vec![req.ballot().timestamp()];
        if let PaxosRequest::Propose { proposal, .. } | PaxosRequest::Commit { proposal, .. } = &req
        {
            stamps.push(proposal.version.timestamp());
        }
        for ts in stamps {
            if let Err(e) = self.hlc.update(ts, now_ms) {
                self.stats.clock_refusals += 1;
                return Err(Failure::Refused(e.to_string()));
            }
        }
        let key = req.key().to_vec();
        let refused = |e: &dyn std::fmt::Display| Failure::Refused(e.to_string());
        let state = match self.store.paxos_row(&key).map_err(|e| refused(&e))? {
            None => Acceptor::default(),
            Some(row) => Acceptor::decode(&key, &row).map_err(|e| refused(&e))?,
        };
        let current = match &req {
            PaxosRequest::Prepare { .. } => self.store.get(&key, now_ms).ok().flatten(),
            _ => None,
        };
        let step = state.handle(req, current);
        if step.persist.is_some() || step.apply.is_some() {
            let row = step.persist.as_ref().map(Acceptor::encode);
            self.store
                .paxos_write(&key, row.as_deref(), step.apply, now_ms)
                .map_err(|e| refused(&e))?;
        }
        Ok(step.answer)
    }

    fn stamp(&mut self, now: Instant) -> Version {
        let ts = self.hlc.now(self.unix_ms(now));
        Version::new(ts, self.id.to_be_bytes().to_vec())
    }

    /// Sends what coordination `op` asks (serving its own share at once), reports its result
    /// once known, and forgets it once finished.
    fn pump(&mut self, now: Instant, op: u64) {
        let Some(mut o) = self.ops.remove(&op) else {
            return;
        };
        while let Some(out) = o.coord.c().poll_send() {
            if out.to == self.id {
                let answer = self.serve(now, out.request);
                o.coord.c().handle_response(now, out.id, answer);
            } else {
                let tag = self.tag();
                o.tags.push(tag);
                let fetch_sent = matches!(out.request, Request::Fetch { .. }).then_some(now);
                self.calls.insert(
                    tag,
                    Call::Op {
                        op,
                        id: out.id,
                        fetch_sent,
                    },
                );
                self.stats.op_msgs += 1;
                self.outbox.push_back((
                    out.to,
                    Msg::Request {
                        tag,
                        req: out.request,
                    },
                ));
            }
        }
        if !o.reported
            && let Some(result) = o.coord.result()
        {
            o.reported = true;
            self.events.push_back(Out::Done { op, result });
        }
        if o.coord.c().is_finished() {
            for tag in &o.tags {
                self.calls.remove(tag);
            }
            match &o.coord {
                Coord::Write { w, .. } => self.stats.hints_handed += w.hints_handed() as u64,
                Coord::Read(r) => self.stats.read_repairs += r.repaired() as u64,
            }
        } else {
            self.ops.insert(op, o);
        }
    }

    // ----- serving -----

    /// Answers one replica-protocol request from this node's store and hints.
    fn serve(&mut self, now: Instant, req: Request<NodeId>) -> Result<Response, Failure> {
        let now_ms = self.unix_ms(now);
        match req {
            Request::Store { records, hint_for } => Ok(self.store_records(now, records, hint_for)),
            Request::Fetch { keys } if self.shared.broken.liar == Some(self.id) => {
                let records = keys
                    .iter()
                    .map(|k| {
                        let held = self.store.get(k, now_ms).ok().flatten();
                        let version = held.map_or(
                            Version::new(HlcTimestamp::new(now_ms, 0), vec![0xff]),
                            |r| Version {
                                hlc: r.version.hlc + 1,
                                writer: r.version.writer,
                            },
                        );
                        let value = format!("invented-by-{}-{}", self.id, version.hlc);
                        Record::new(k.clone(), value.into_bytes(), version)
                    })
                    .collect();
                Ok(Response::Fetch {
                    records,
                    covered: keys.len(),
                })
            }
            req => answer(req, &self.store, &self.shared.sync, now_ms)
                .map_err(|e| Failure::Refused(e.to_string())),
        }
    }

    /// Stores records (or keeps them as hints for `hint_for`) after checking each one's clock,
    /// as `Replica::store` does. One outcome per record.
    fn store_records(
        &mut self,
        now: Instant,
        records: Vec<Record>,
        hint_for: Option<NodeId>,
    ) -> Response {
        let now_ms = self.unix_ms(now);
        let mut results: Vec<Option<StoreOutcome>> = Vec::with_capacity(records.len());
        let mut valid = Vec::new();
        for record in records {
            match self
                .hlc
                .update(HlcTimestamp::from_u64(record.version.hlc), now_ms)
            {
                Ok(_) => {
                    results.push(None);
                    valid.push(record);
                }
                Err(e) => {
                    self.stats.clock_refusals += 1;
                    results.push(Some(StoreOutcome::Rejected(e.to_string())));
                }
            }
        }
        let stored: Vec<StoreOutcome> = match hint_for {
            Some(owner) => valid
                .into_iter()
                .map(|r| {
                    let key = (owner, now_ms, r.key.clone());
                    match self.hints.get(&key) {
                        Some(old) if old.version >= r.version => {}
                        _ => {
                            self.hints.insert(key, r);
                        }
                    }
                    StoreOutcome::Stored
                })
                .collect(),
            None if self.shared.broken.ack_before_store.is_some() => {
                let delay = self.shared.broken.ack_before_store.unwrap_or_default();
                let count = valid.len();
                self.unflushed.push_back((now + delay, valid));
                vec![StoreOutcome::Stored; count]
            }
            None => {
                let count = valid.len();
                match self.store.put_batch(valid, now_ms) {
                    Ok(outcomes) => outcomes
                        .into_iter()
                        .map(|o| match o {
                            PutOutcome::Stored => StoreOutcome::Stored,
                            PutOutcome::Unchanged => StoreOutcome::Unchanged,
                            PutOutcome::Stale { current } => StoreOutcome::Stale { current },
                            PutOutcome::Expired => {
                                StoreOutcome::Rejected("record already expired".into())
                            }
                        })
                        .collect(),
                    Err(e) => vec![StoreOutcome::Rejected(e.to_string()); count],
                }
            }
        };
        let mut stored = stored.into_iter();
        let results = results
            .into_iter()
            .map(|r| {
                r.or_else(|| stored.next())
                    .unwrap_or_else(|| StoreOutcome::Rejected("internal error".into()))
            })
            .collect();
        Response::Store { results }
    }

    // ----- anti-entropy -----

    fn ae_check(&mut self, now: Instant) {
        self.ae.next_check = now + self.shared.ae_check;
        if self.ae.round.is_some() {
            return;
        }
        let view = self.view();
        let partners = match &self.ae.partners {
            Some((v, p)) if Rc::ptr_eq(v, &view) => p.clone(),
            // A view that changed less than a check period ago is still moving (a death or a
            // refutation spreading): the previous partners serve until it holds still.
            Some((_, p)) if now < self.view_since + self.shared.ae_check * 2 => p.clone(),
            _ => {
                let p = {
                    let views = self.shared.views.borrow();
                    view.partners(self.id, &views.leaf_maps_built)
                };
                self.ae.partners = Some((view, p.clone()));
                p
            }
        };
        for p in &partners {
            if self.ae.seen.binary_search(p).is_err() && !self.ae.queue.contains(p) {
                self.ae.queue.push_back(*p);
            }
        }
        // Forgetting departed partners makes them fresh again when they come back.
        self.ae.seen = partners.clone();
        if now >= self.ae.next_periodic {
            self.ae.next_periodic = now + self.shared.ae_interval;
            if !partners.is_empty() && self.ae.queue.is_empty() {
                self.ae
                    .queue
                    .push_back(partners[self.ae.turn % partners.len()]);
                self.ae.turn += 1;
            }
        }
        self.next_round(now);
    }

    /// Starts a round with the next queued partner, if no round runs.
    fn next_round(&mut self, now: Instant) {
        while self.ae.round.is_none() {
            let Some(peer) = self.ae.queue.pop_front() else {
                return;
            };
            let Some((view, _)) = self.ae.partners.clone() else {
                return;
            };
            let placement = &view.placement;
            let (Some(me), Some(them)) = (placement.index_of(&self.id), placement.index_of(&peer))
            else {
                continue;
            };
            let leaves = {
                let views = self.shared.views.borrow();
                view.leaf_map(&views.leaf_maps_built)
                    .shared_leaves(me, them)
            };
            let init = Initiator::with_leaves(
                placement.clone(),
                self.id,
                peer,
                leaves,
                self.shared.sync.clone(),
            );
            self.ae.round = Some(Round { init, peer });
            self.step_round(now);
        }
    }

    /// Runs the round until it waits for the peer or ends.
    fn step_round(&mut self, now: Instant) {
        let now_ms = self.unix_ms(now);
        loop {
            let Some(round) = self.ae.round.as_mut() else {
                return;
            };
            match round.init.next(&self.store, now_ms) {
                Ok(Step::Send(req)) => {
                    let peer = round.peer;
                    let tag = self.tag();
                    self.calls.insert(
                        tag,
                        Call::Sync {
                            deadline: now + self.shared.request_timeout,
                        },
                    );
                    self.stats.ae_msgs += 1;
                    self.outbox.push_back((peer, Msg::Request { tag, req }));
                    return;
                }
                Ok(Step::Apply(records)) => {
                    let valid: Vec<Record> = records
                        .into_iter()
                        .filter(|r| {
                            self.hlc
                                .update(HlcTimestamp::from_u64(r.version.hlc), now_ms)
                                .is_ok()
                        })
                        .collect();
                    let stored = self
                        .store
                        .put_batch(valid, now_ms)
                        .map(|o| {
                            o.iter()
                                .filter(|o| {
                                    matches!(
                                        o,
                                        PutOutcome::Stored
                                            | PutOutcome::Unchanged
                                            | PutOutcome::Stale { .. }
                                    )
                                })
                                .count()
                        })
                        .unwrap_or(0);
                    if let Some(round) = self.ae.round.as_mut() {
                        round.init.applied(stored);
                    }
                }
                Ok(Step::Done(stats)) => {
                    self.ae.round = None;
                    self.stats.ae_rounds += 1;
                    let moved = stats.keys_pulled + stats.keys_pushed;
                    self.stats.ae_keys_moved += moved as u64;
                    let partners = self.ae.partners.as_ref().map(|(_, p)| p.clone());
                    if moved >= CATCH_UP_THRESHOLD
                        && self.ae.queue.is_empty()
                        && let Some(p) = partners.filter(|p| !p.is_empty())
                    {
                        self.ae.queue.push_back(p[self.ae.turn % p.len()]);
                        self.ae.turn += 1;
                    }
                    self.next_round(now);
                    return;
                }
                Err(_) => {
                    self.abort_round(now);
                    return;
                }
            }
        }
    }

    fn abort_round(&mut self, now: Instant) {
        self.ae.round = None;
        self.stats.ae_failed += 1;
        self.next_round(now);
    }

    fn ae_answer(&mut self, now: Instant, answer: Result<Response, Failure>) {
        let Some(round) = self.ae.round.as_mut() else {
            return;
        };
        let ok = answer.is_ok_and(|resp| round.init.handle_response(resp).is_ok());
        if ok {
            self.step_round(now);
        } else {
            self.abort_round(now);
        }
    }

    // ----- hinted handoff -----

    fn deliver_hints(&mut self, now: Instant) {
        self.next_handoff = now + self.shared.hint_interval;
        let mut owner = match self.hints.keys().next() {
            Some((o, _, _)) => *o,
            None => return,
        };
        loop {
            let down = self
                .swim
                .member(&owner)
                .is_some_and(|m| !m.state().is_live());
            if !self.handing.contains(&owner) && self.shared.handoff.deliverable(down) {
                self.send_hints(now, owner, None);
            }
            match self
                .hints
                .range((owner + 1, 0, Vec::new())..)
                .next()
                .map(|(k, _)| k.0)
            {
                Some(next) => owner = next,
                None => return,
            }
        }
    }

    /// Sends `owner` its next batch of hints, after `after` if given.
    fn send_hints(&mut self, now: Instant, owner: NodeId, after: Option<HintKey>) {
        let now_ms = self.unix_ms(now);
        let policy = self.shared.handoff;
        let mut batch = policy.batch();
        let mut keys = Vec::new();
        let mut expired = Vec::new();
        let start = match &after {
            Some(k) => std::ops::Bound::Excluded(k.clone()),
            None => std::ops::Bound::Included((owner, 0, Vec::new())),
        };
        let end = std::ops::Bound::Excluded((owner + 1, 0, Vec::new()));
        for (k, r) in self.hints.range((start, end)) {
            if policy.expired(k.1, now_ms) {
                expired.push(k.clone());
                continue;
            }
            if batch.offer(r.clone()).is_err() {
                break;
            }
            keys.push(k.clone());
        }
        for k in expired {
            self.hints.remove(&k);
        }
        if keys.is_empty() {
            self.handing.remove(&owner);
            return;
        }
        self.handing.insert(owner);
        let tag = self.tag();
        self.calls.insert(
            tag,
            Call::Hints {
                owner,
                keys,
                deadline: now + self.shared.request_timeout,
            },
        );
        self.stats.hint_msgs += 1;
        let req = Request::Store {
            records: batch.into_records(),
            hint_for: None,
        };
        self.outbox.push_back((owner, Msg::Request { tag, req }));
    }

    fn hints_answer(
        &mut self,
        now: Instant,
        owner: NodeId,
        keys: Vec<HintKey>,
        answer: Result<Response, Failure>,
    ) {
        match answer {
            Ok(Response::Store { results }) if results.len() == keys.len() => {
                let last = keys.last().cloned();
                for (k, r) in keys.into_iter().zip(&results) {
                    // Stored, unchanged or stale: the owner holds this version or a newer one.
                    if r.holds() {
                        self.hints.remove(&k);
                        self.stats.hints_delivered += 1;
                    }
                }
                self.send_hints(now, owner, last);
            }
            _ => {
                self.handing.remove(&owner);
            }
        }
    }

    // ----- timers -----

    fn flush_due(&mut self, now: Instant) {
        let now_ms = self.unix_ms(now);
        while self.unflushed.front().is_some_and(|(at, _)| *at <= now) {
            let (_, records) = self.unflushed.pop_front().expect("front exists");
            let _ = self.store.put_batch(records, now_ms);
        }
    }

    fn expire_calls(&mut self, now: Instant) {
        let mut due: Vec<(u64, Call)> = Vec::new();
        let expired: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| match c {
                Call::Op { .. } | Call::Paxos { .. } => false,
                Call::Sync { deadline } | Call::Hints { deadline, .. } => *deadline <= now,
            })
            .map(|(t, _)| *t)
            .collect();
        for tag in expired {
            if let Some(c) = self.calls.remove(&tag) {
                due.push((tag, c));
            }
        }
        due.sort_by_key(|(t, _)| *t);
        for (_, call) in due {
            self.answered(now, call, Err(Failure::NoAnswer("timeout".into())));
        }
    }

    fn answered(&mut self, now: Instant, call: Call, answer: Result<Response, Failure>) {
        match call {
            Call::Op { op, id, fetch_sent } => {
                if let Some(sent) = fetch_sent
                    && answer.is_ok()
                {
                    self.answer_time
                        .observe(now.saturating_duration_since(sent));
                }
                if let Some(o) = self.ops.get_mut(&op) {
                    o.coord.c().handle_response(now, id, answer);
                    self.pump(now, op);
                }
            }
            Call::Sync { .. } => self.ae_answer(now, answer),
            Call::Hints { owner, keys, .. } => self.hints_answer(now, owner, keys, answer),
            // A replica-protocol answer under a Paxos tag: not ours to use.
            Call::Paxos { .. } => {}
        }
    }
}

impl SimNode for KvNode {
    type Message = Msg;
    type Event = Out;
    type Error = KvError;

    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Msg) -> Result<(), KvError> {
        self.now = now;
        match msg {
            Msg::Swim(m) => {
                let r = self.swim.handle_message(now, from, m);
                self.flush_swim();
                r.map_err(KvError::Membership)
            }
            Msg::Request { tag, req } => {
                let answer = self.serve(now, req);
                self.outbox.push_back((from, Msg::Response { tag, answer }));
                Ok(())
            }
            Msg::Response { tag, answer } => {
                if let Some(call) = self.calls.remove(&tag) {
                    self.answered(now, call, answer);
                }
                Ok(())
            }
            Msg::Paxos { tag, req } => {
                let answer = self.serve_paxos(now, from, req);
                self.outbox
                    .push_back((from, Msg::PaxosAnswer { tag, answer }));
                Ok(())
            }
            Msg::PaxosAnswer { tag, answer } => {
                if let Some(Call::Paxos { op, id }) = self.calls.remove(&tag)
                    && let Some(o) = self.cas_ops.get_mut(&op)
                {
                    o.p.handle_response(now, id, answer);
                    self.pump_cas(now, op);
                }
                Ok(())
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.swim.handle_timeout(now);
        self.flush_swim();
        self.flush_due(now);
        let due: Vec<u64> = self
            .ops
            .iter_mut()
            .filter(|(_, o)| o.coord.poll_timeout().is_some_and(|t| t <= now))
            .map(|(op, _)| *op)
            .collect();
        for op in due {
            if let Some(o) = self.ops.get_mut(&op) {
                o.coord.c().handle_timeout(now);
            }
            self.pump(now, op);
        }
        let due: Vec<u64> = self
            .cas_ops
            .iter()
            .filter(|(_, o)| {
                o.p.poll_timeout().is_some_and(|t| t <= now) || (!o.reported && o.deadline <= now)
            })
            .map(|(op, _)| *op)
            .collect();
        for op in due {
            if let Some(o) = self.cas_ops.get_mut(&op) {
                if o.deadline <= now {
                    o.p.handle_deadline();
                }
                o.p.handle_timeout(now);
            }
            self.pump_cas(now, op);
        }
        self.expire_calls(now);
        if now >= self.ae.next_check {
            self.ae_check(now);
        }
        if now >= self.next_handoff {
            self.deliver_hints(now);
        }
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Msg)> {
        self.outbox.pop_front()
    }

    fn poll_event(&mut self) -> Option<Out> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut next = [
            self.swim.poll_timeout(),
            Some(self.ae.next_check),
            Some(self.next_handoff),
            self.unflushed.front().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for o in self.ops.values() {
            consider(o.coord.poll_timeout());
        }
        for o in self.cas_ops.values() {
            consider(o.p.poll_timeout());
            if !o.reported {
                consider(Some(o.deadline));
            }
        }
        for c in self.calls.values() {
            match c {
                Call::Op { .. } | Call::Paxos { .. } => {}
                Call::Sync { deadline } | Call::Hints { deadline, .. } => consider(Some(*deadline)),
            }
        }
        next
    }

    fn message_len(msg: &Msg) -> usize {
        msg.len()
    }

    fn on_crash(&mut self) {
        self.ops.clear();
        self.cas_ops.clear();
        self.calls.clear();
        self.ae.round = None;
        self.ae.queue.clear();
        self.handing.clear();
        self.unflushed.clear();
        self.outbox.clear();
        self.events.clear();
    }
}
