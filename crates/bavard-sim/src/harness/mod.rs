//! The simulation harness: one discrete-event loop that drives any number of sans-IO cores over a
//! simulated network, shared by every experiment and simulation test.
//!
//! What it owns, so that no experiment repeats it:
//!
//! - **virtual time** and the `(time, sequence)`-ordered event queue of [`crate::engine`];
//! - **delivery** with a per-link [`Latency`] (the plane model of [`crate::latency`], a constant,
//!   or a closure), **loss** at a rate decided per message by a hash ([`Loss`]), an optional
//!   **drop rule** for targeted faults, and two [`Transport`]s (datagrams vanish when their peer is
//!   down; connections are refused at once and the sender is told);
//! - **partitions** ([`Partition`]), **crashes and restarts** with state kept or lost
//!   ([`Fault`], [`Restart`]; a lost state is rebuilt by the experiment's constructor), and a
//!   **clock skew** per node ([`Skew`]: the core sees `now + skew`), applied now or at given times;
//! - **timers**: one armed deadline per node, read from [`SimNode::poll_timeout`]; a deadline that
//!   changed leaves a stale event in the queue, which is ignored when it pops;
//! - **counting** of messages and bytes ([`Traffic`]).
//!
//! What stays in the experiment: its adapter ([`SimNode`]), its own events (joins, publications,
//! lookups, client requests, measurement checkpoints: the `X` of [`Harness`]), and what it makes
//! of the nodes' outputs. A run is a pure function of the constructor, the schedule and the seeds:
//! nothing reads the host clock but the base [`Instant`] that virtual time counts from.

mod fault;
mod network;
mod node;
mod partition;
mod skew;
mod traffic;
mod transport;

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

pub use fault::{Fault, Restart};
pub use network::Network;
pub use node::SimNode;
pub use partition::Partition;
pub use skew::Skew;
pub use traffic::Traffic;
pub use transport::Transport;

use crate::NodeId;
use crate::engine::{Clock, EventQueue, SimTime};
use crate::latency::Latency;
use crate::loss::Loss;

/// What the harness hands back to the experiment, in virtual-time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<E, X> {
    /// An event the experiment scheduled with [`Harness::schedule`] fell due: act on it.
    External {
        /// When.
        at: SimTime,
        /// The event.
        event: X,
    },
    /// What `node` reported ([`SimNode::poll_event`]) after one input or command, in order.
    Output {
        /// When (the time of the input).
        at: SimTime,
        /// The node.
        node: NodeId,
        /// Its events, never empty.
        events: Vec<E>,
    },
}

impl<E, X> Step<E, X> {
    /// The virtual time of the step.
    pub fn at(&self) -> SimTime {
        match self {
            Step::External { at, .. } | Step::Output { at, .. } => *at,
        }
    }
}

/// What the queue holds.
enum Event<M, X> {
    Deliver { from: NodeId, to: NodeId, msg: M },
    Timer(NodeId),
    Fault(Fault),
    External(X),
}

/// Decides whether a message is dropped in flight (see [`Harness::set_drop_rule`]).
pub type DropRule<M> = Box<dyn FnMut(NodeId, NodeId, &M) -> bool>;

/// Builds the node `id` at the node's time `now`: every node at the start, and a node restarted
/// with [`Restart::StateLost`].
pub type Constructor<N> = Box<dyn FnMut(NodeId, Instant) -> N>;

/// A network of `n` nodes of type `N`, numbered `0..n`, and the experiment's events of type `X`.
///
/// # Driving protocol
///
/// 1. **Build**: describe the [`Network`] (node count, [`Latency`], and optionally [`Loss`],
///    [`Transport`], clock [`Skew`]s) and [`build`](Network::build) it with a constructor for the
///    nodes. Every node is built at virtual time zero (on its own clock) and is up, but idle: its
///    first timer is armed the first time it is driven (a command, a message, a restart). An
///    experiment starts a node with [`act`](Self::act), even with a closure that does nothing.
/// 2. **Schedule** the experiment's own events with [`schedule`](Self::schedule) and faults with
///    [`schedule_fault`](Self::schedule_fault) (or apply one now with [`inject`](Self::inject)).
/// 3. **Step**: [`step`](Self::step) or [`step_until`](Self::step_until) run deliveries, timers
///    and faults internally and return each [`Step`]: an [`External`](Step::External) event (the
///    experiment acts on it: [`act`](Self::act) to give a node a command, `inject`, `schedule`…)
///    or an [`Output`](Step::Output) (what a node reported after one input). Outputs of a
///    command come back from the next `step`, at the same virtual time.
///
/// Every input to a node (a message, a timer, a command, a restart) is followed by the same
/// **drive**: drain [`poll_transmit`](SimNode::poll_transmit) (each message is counted, then put
/// through the transport, the partition, the loss, the drop rule and the link latency), drain
/// [`poll_event`](SimNode::poll_event) into one `Output` step, report sends the transport refused
/// with [`peer_unreachable`](SimNode::peer_unreachable) and drain again, then arm the node's one
/// timer from [`poll_timeout`](SimNode::poll_timeout).
///
/// Events due at the same instant run in the order they were scheduled, so the same seeds give
/// the same run, step for step.
///
/// # Example
///
/// Node 0 pings node 1 every second; node 1 answers. The link takes 50 ms each way.
///
/// ```
/// use std::collections::VecDeque;
/// use std::convert::Infallible;
/// use std::time::{Duration, Instant};
/// use bavard_sim::harness::{Fault, Harness, Network, Restart, SimNode, Step};
/// use bavard_sim::{NodeId, SimTime};
///
/// struct Pinger {
///     next_ping: Option<Instant>,
///     outbox: VecDeque<(NodeId, &'static str)>,
///     heard: VecDeque<&'static str>,
/// }
///
/// impl SimNode for Pinger {
///     type Message = &'static str;
///     type Event = &'static str;
///     type Error = Infallible;
///     fn handle_message(&mut self, _: Instant, from: NodeId, msg: &'static str) -> Result<(), Infallible> {
///         if msg == "ping" {
///             self.outbox.push_back((from, "pong"));
///         }
///         self.heard.push_back(msg);
///         Ok(())
///     }
///     fn handle_timeout(&mut self, now: Instant) {
///         if self.next_ping.is_some_and(|t| t <= now) {
///             self.outbox.push_back((1, "ping"));
///             self.next_ping = Some(now + Duration::from_secs(1));
///         }
///     }
///     fn poll_transmit(&mut self) -> Option<(NodeId, &'static str)> { self.outbox.pop_front() }
///     fn poll_event(&mut self) -> Option<&'static str> { self.heard.pop_front() }
///     fn poll_timeout(&self) -> Option<Instant> { self.next_ping }
///     fn message_len(msg: &&'static str) -> usize { msg.len() }
/// }
///
/// let network = Network::new(2, Duration::from_millis(50));
/// let mut h: Harness<Pinger, ()> = network.build(|id, now| Pinger {
///     next_ping: (id == 0).then_some(now),
///     outbox: VecDeque::new(),
///     heard: VecDeque::new(),
/// });
/// h.act(0, |_, _| ()); // start node 0: arms its first timer (now)
/// // Node 1 is down from 1.5 s to 2.5 s; it comes back as it was.
/// let at = |ms| SimTime::ZERO.after(Duration::from_millis(ms));
/// h.schedule_fault(at(1_500), Fault::Crash(1));
/// h.schedule_fault(at(2_500), Fault::Restart(1, Restart::StateKept));
///
/// let mut pongs = Vec::new();
/// while let Some(step) = h.step_until(at(3_500)) {
///     if let Step::Output { at, node: 0, events } = step {
///         pongs.extend(events.iter().map(|_| at.as_micros() / 1000));
///     }
/// }
/// // Pings at 0, 1, 2 and 3 s; the one at 2 s finds node 1 down.
/// assert_eq!(pongs, [100, 1_100, 3_100]);
/// assert_eq!((h.traffic().sent, h.traffic().undelivered), (7, 1));
/// ```
pub struct Harness<N: SimNode, X> {
    clock: Clock,
    queue: EventQueue<Event<N::Message, X>>,
    nodes: Vec<N>,
    up: Vec<bool>,
    up_count: u32,
    /// The time of each node's timer event that counts; any other is stale.
    armed: Vec<Option<SimTime>>,
    skew: Vec<Skew>,
    /// The last time each node was given, so that its clock never goes back.
    last_seen: Vec<Instant>,
    constructor: Constructor<N>,
    latency: Box<dyn Latency>,
    loss: Loss,
    transport: Transport,
    partition: Option<Partition>,
    drop_rule: Option<DropRule<N::Message>>,
    traffic: Traffic,
    /// Outputs not yet returned by `step`.
    outputs: VecDeque<(SimTime, NodeId, Vec<N::Event>)>,
}

impl<N: SimNode, X> fmt::Debug for Harness<N, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("now", &self.queue.now())
            .field("nodes", &self.nodes.len())
            .field("up", &self.up_count)
            .field("traffic", &self.traffic)
            .finish_non_exhaustive()
    }
}

impl<N: SimNode, X> Harness<N, X> {
    /// See [`Network::build`].
    fn new(
        nodes: u32,
        latency: Box<dyn Latency>,
        loss: Loss,
        transport: Transport,
        skew: Vec<Skew>,
        mut constructor: Constructor<N>,
    ) -> Self {
        // Any base works, only offsets from it matter; a day of headroom lets a clock run behind
        // virtual time zero.
        let clock = Clock::new(Instant::now() + Skew::MAX);
        let start = clock.instant(SimTime::ZERO);
        let last_seen: Vec<Instant> = skew.iter().map(|s| s.apply(start)).collect();
        let n = nodes as usize;
        Self {
            clock,
            queue: EventQueue::new(),
            nodes: (0..nodes)
                .map(|id| constructor(id, last_seen[id as usize]))
                .collect(),
            up: vec![true; n],
            up_count: nodes,
            armed: vec![None; n],
            skew,
            last_seen,
            constructor,
            latency,
            loss,
            transport,
            partition: None,
            drop_rule: None,
            traffic: Traffic::default(),
            outputs: VecDeque::new(),
        }
    }

    // ----- time -----

    /// The current virtual time.
    pub fn now(&self) -> SimTime {
        self.queue.now()
    }

    /// The clock mapping virtual time to the `Instant`s of unskewed nodes.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// What `node`'s clock reads now (virtual time plus its skew).
    pub fn local_time(&self, node: NodeId) -> Instant {
        let i = node as usize;
        self.skew[i]
            .apply(self.clock.instant(self.queue.now()))
            .max(self.last_seen[i])
    }

    /// The time given to `node`'s core: its clock, remembered so that it never goes back.
    fn core_time(&mut self, node: NodeId) -> Instant {
        let t = self.local_time(node);
        self.last_seen[node as usize] = t;
        t
    }

    /// The time of the next queued event (delivery, timer, fault or experiment event, stale
    /// timers included), if any; outputs not yet returned by `step` are not events.
    pub fn next_event_at(&self) -> Option<SimTime> {
        self.queue.peek_time()
    }

    // ----- nodes -----

    /// The number of nodes, up or down.
    pub fn len(&self) -> u32 {
        u32::try_from(self.nodes.len()).expect("node ids are u32")
    }

    /// Whether the network has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `id`, up or down (a crashed node keeps its state until restarted).
    pub fn node(&self, id: NodeId) -> &N {
        &self.nodes[id as usize]
    }

    /// Node `id`, to change it without driving it (settings, state the experiment fills from
    /// global knowledge). A change that makes it send or report something must go through
    /// [`act`](Self::act), or the outputs wait for its next input.
    pub fn node_mut(&mut self, id: NodeId) -> &mut N {
        &mut self.nodes[id as usize]
    }

    /// Whether `id` is up (not crashed). Ids outside the network are down.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.up.get(id as usize).copied().unwrap_or(false)
    }

    /// The number of nodes up.
    pub fn up_count(&self) -> u32 {
        self.up_count
    }

    /// Gives node `id` a command at its current time, then drives it. Returns what `command`
    /// returned, or `None` without calling it if the node is down: a crashed node takes no
    /// command.
    pub fn act<T>(&mut self, id: NodeId, command: impl FnOnce(&mut N, Instant) -> T) -> Option<T> {
        if !self.is_up(id) {
            return None;
        }
        let now = self.core_time(id);
        let result = command(&mut self.nodes[id as usize], now);
        self.drive(id);
        Some(result)
    }

    // ----- the network -----

    /// Messages counted so far.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The loss in force.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// Changes the loss from now on.
    pub fn set_loss(&mut self, loss: Loss) {
        self.loss = loss;
    }

    /// The partition in force, if any.
    pub fn partition(&self) -> Option<&Partition> {
        self.partition.as_ref()
    }

    /// From now on, also drops every message `(from, to, msg)` for which `rule` returns true
    /// (asked after the partition and the loss, for messages that would otherwise go through):
    /// one-way cuts, a node that hears nothing, "lose every payload for node 7". `None` removes it.
    pub fn set_drop_rule(&mut self, rule: Option<DropRule<N::Message>>) {
        self.drop_rule = rule;
    }

    // ----- events and faults -----

    /// Schedules an experiment event: [`step`](Self::step) returns it at `at` (or now, if `at` is
    /// past).
    pub fn schedule(&mut self, at: SimTime, event: X) {
        self.queue.schedule(at, Event::External(event));
    }

    /// Schedules a fault at `at` (or now, if `at` is past).
    pub fn schedule_fault(&mut self, at: SimTime, fault: Fault) {
        self.queue.schedule(at, Event::Fault(fault));
    }

    /// Applies a fault now.
    pub fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Crash(id) => {
                let i = id as usize;
                if std::mem::replace(&mut self.up[i], false) {
                    self.up_count -= 1;
                    self.armed[i] = None;
                    let node = &mut self.nodes[i];
                    node.on_crash();
                    while node.poll_transmit().is_some() {}
                    while node.poll_event().is_some() {}
                }
            }
            Fault::Restart(id, restart) => {
                let i = id as usize;
                if self.up[i] {
                    return;
                }
                self.up[i] = true;
                self.up_count += 1;
                if restart == Restart::StateLost {
                    let now = self.core_time(id);
                    self.nodes[i] = (self.constructor)(id, now);
                }
                self.drive(id);
            }
            Fault::Partition(p) => self.partition = Some(p),
            Fault::Heal => self.partition = None,
            Fault::Skew(id, skew) => {
                let i = id as usize;
                self.skew[i] = skew;
                // Its pending deadline falls at another virtual time now.
                if self.armed[i].is_some() {
                    self.armed[i] = None;
                    self.arm(id);
                }
            }
        }
    }

    // ----- running -----

    /// Runs until the next step and returns it; `None` once nothing is left to run.
    pub fn step(&mut self) -> Option<Step<N::Event, X>> {
        loop {
            if let Some((at, node, events)) = self.outputs.pop_front() {
                return Some(Step::Output { at, node, events });
            }
            let (at, event) = self.queue.pop()?;
            if let Some(event) = self.run_event(at, event) {
                return Some(Step::External { at, event });
            }
        }
    }

    /// Like [`step`](Self::step), but leaves events later than `end` in the queue: `None` once
    /// nothing is left to run up to `end`, the clock then reading `end` (if it was earlier).
    pub fn step_until(&mut self, end: SimTime) -> Option<Step<N::Event, X>> {
        loop {
            if let Some((at, node, events)) = self.outputs.pop_front() {
                return Some(Step::Output { at, node, events });
            }
            if self.queue.peek_time().is_none_or(|t| t > end) {
                self.queue.advance_to(end);
                return None;
            }
            let (at, event) = self.queue.pop().expect("peeked");
            if let Some(event) = self.run_event(at, event) {
                return Some(Step::External { at, event });
            }
        }
    }

    /// Runs up to `end`, handing every step to `on_step` (which may act on the harness).
    pub fn run_until(
        &mut self,
        end: SimTime,
        mut on_step: impl FnMut(&mut Self, Step<N::Event, X>),
    ) {
        while let Some(step) = self.step_until(end) {
            on_step(self, step);
        }
    }

    /// Runs one queued event; returns it if it is the experiment's.
    fn run_event(&mut self, at: SimTime, event: Event<N::Message, X>) -> Option<X> {
        match event {
            Event::Deliver { from, to, msg } => {
                if !self.up[to as usize] {
                    self.traffic.undelivered += 1;
                    return None;
                }
                self.traffic.delivered += 1;
                let now = self.core_time(to);
                if self.nodes[to as usize]
                    .handle_message(now, from, msg)
                    .is_err()
                {
                    self.traffic.rejected += 1;
                }
                self.drive(to);
            }
            Event::Timer(id) => {
                let i = id as usize;
                if self.armed[i] != Some(at) || !self.up[i] {
                    return None;
                }
                self.armed[i] = None;
                let now = self.core_time(id);
                self.nodes[i].handle_timeout(now);
                self.drive(id);
            }
            Event::Fault(fault) => self.inject(fault),
            Event::External(x) => return Some(x),
        }
        None
    }

    /// Moves a node's messages into the network and its events into an output step, then arms
    /// its timer.
    fn drive(&mut self, id: NodeId) {
        let i = id as usize;
        let now = self.queue.now();
        let mut events = Vec::new();
        let mut refused = Vec::new();
        loop {
            while let Some((to, msg)) = self.nodes[i].poll_transmit() {
                self.send(id, to, msg, &mut refused);
            }
            while let Some(event) = self.nodes[i].poll_event() {
                events.push(event);
            }
            if refused.is_empty() {
                break;
            }
            let local = self.core_time(id);
            for peer in refused.drain(..) {
                self.nodes[i].peer_unreachable(local, peer);
            }
        }
        if !events.is_empty() {
            self.outputs.push_back((now, id, events));
        }
        self.arm(id);
    }

    /// Schedules the node's timer at its deadline, unless one is already armed for that time.
    fn arm(&mut self, id: NodeId) {
        let i = id as usize;
        let now = self.queue.now();
        if let Some(deadline) = self.nodes[i].poll_timeout() {
            let t = self.clock.deadline(self.skew[i].remove(deadline)).max(now);
            if self.armed[i] != Some(t) {
                self.armed[i] = Some(t);
                self.queue.schedule(t, Event::Timer(id));
            }
        }
    }

    /// One message from `from` to `to`: refused, or counted and then delivered or not.
    fn send(&mut self, from: NodeId, to: NodeId, msg: N::Message, refused: &mut Vec<NodeId>) {
        let reachable = self.is_up(to);
        if !reachable && self.transport == Transport::Connection {
            self.traffic.unreachable += 1;
            refused.push(to);
            return;
        }
        self.traffic.sent += 1;
        self.traffic.bytes += N::message_len(&msg) as u64;
        self.nodes[from as usize].on_sent(to, &msg);
        if !reachable {
            self.traffic.undelivered += 1;
            return;
        }
        if self
            .partition
            .as_ref()
            .is_some_and(|p| p.separates(from, to))
        {
            self.traffic.cut += 1;
            return;
        }
        let key = N::loss_key(&msg).unwrap_or(self.traffic.sent);
        if self.loss.is_lost(from, to, key) {
            self.traffic.lost += 1;
            return;
        }
        if let Some(rule) = &mut self.drop_rule
            && rule(from, to, &msg)
        {
            self.traffic.dropped += 1;
            return;
        }
        let at = self.queue.now().after(self.latency.one_way(from, to));
        self.queue.schedule(at, Event::Deliver { from, to, msg });
    }
}
