//! The discrete-event engine: a virtual clock and a deterministic event queue.
//!
//! Virtual time is a `u64` count of microseconds since the start of the run ([`SimTime`]). The
//! sans-IO cores want a `std::time::Instant`; [`Clock`] maps one to the other from a fixed base
//! `Instant`, so only offsets ever matter and a run does not depend on the host clock.
//!
//! [`EventQueue`] is a binary heap ordered by `(time, sequence number)`: two events due at the
//! same instant pop in the order they were scheduled, so a run is a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A point of virtual time: microseconds since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(u64);

impl SimTime {
    /// The start of the run.
    pub const ZERO: SimTime = SimTime(0);

    /// The time `micros` microseconds after the start.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Microseconds since the start.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Milliseconds since the start, as a float (for reports).
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// This time plus a duration (saturating at the end of time).
    pub fn after(self, d: Duration) -> Self {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(micros))
    }
}

/// Maps virtual time to the `Instant`s the cores expect, and back.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock whose [`SimTime::ZERO`] is `base`. Any `Instant` works: results only depend on
    /// offsets from it.
    pub fn new(base: Instant) -> Self {
        Self { base }
    }

    /// The `Instant` of a virtual time.
    pub fn instant(&self, t: SimTime) -> Instant {
        self.base + Duration::from_micros(t.0)
    }

    /// The virtual time of an `Instant` (rounded down to the microsecond; `ZERO` if before the
    /// base).
    pub fn sim_time(&self, i: Instant) -> SimTime {
        let d = i.saturating_duration_since(self.base);
        SimTime(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// The virtual time at which a core's deadline `at` falls due, rounded *up* to the
    /// microsecond: rounding down would wake the core just before its deadline, where it has
    /// nothing to do, forever.
    pub fn deadline(&self, at: Instant) -> SimTime {
        let t = self.sim_time(at);
        if self.instant(t) < at {
            SimTime(t.0 + 1)
        } else {
            t
        }
    }
}

struct Scheduled<E> {
    at: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    // Reversed: `BinaryHeap` is a max-heap, we want the earliest (then first scheduled) on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A queue of future events of type `E`, popped in `(time, scheduling order)`.
///
/// Popping an event advances [`EventQueue::now`] to its time; scheduling in the past is clamped
/// to `now` (an event can never make time go backwards).
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
    now: SimTime,
}

impl<E> std::fmt::Debug for EventQueue<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("now", &self.now)
            .field("pending", &self.heap.len())
            .finish()
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    /// An empty queue at [`SimTime::ZERO`].
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
            now: SimTime::ZERO,
        }
    }

    /// The current virtual time: that of the last popped event.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Schedules `event` at `at` (or now, if `at` is in the past).
    pub fn schedule(&mut self, at: SimTime, event: E) {
        let at = at.max(self.now);
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
        self.seq += 1;
    }

    /// Moves the clock forward to `t` without popping anything (no effect if `t` is not later
    /// than now). Used to end a run at a given time: events still pending stay pending.
    pub fn advance_to(&mut self, t: SimTime) {
        self.now = self.now.max(t);
    }

    /// The time of the next pending event, without popping it.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|s| s.at)
    }

    /// Schedules `event` after `delay` from now.
    pub fn schedule_in(&mut self, delay: Duration, event: E) {
        self.schedule(self.now.after(delay), event);
    }

    /// The next event, advancing the clock to its time.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let s = self.heap.pop()?;
        self.now = s.at;
        Some((s.at, s.event))
    }

    /// The number of pending events.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_in_time_order_and_ties_in_scheduling_order() {
        let mut q = EventQueue::new();
        q.schedule(SimTime::from_micros(30), "c");
        q.schedule(SimTime::from_micros(10), "a1");
        q.schedule(SimTime::from_micros(20), "b");
        q.schedule(SimTime::from_micros(10), "a2");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![
                (SimTime::from_micros(10), "a1"),
                (SimTime::from_micros(10), "a2"),
                (SimTime::from_micros(20), "b"),
                (SimTime::from_micros(30), "c"),
            ]
        );
        assert_eq!(q.now(), SimTime::from_micros(30));
        assert!(q.is_empty());
    }

    #[test]
    fn scheduling_in_the_past_is_clamped_to_now() {
        let mut q = EventQueue::new();
        q.schedule(SimTime::from_micros(50), 1);
        assert_eq!(q.pop(), Some((SimTime::from_micros(50), 1)));
        q.schedule(SimTime::from_micros(5), 2);
        q.schedule_in(Duration::from_micros(7), 3);
        assert_eq!(q.pop(), Some((SimTime::from_micros(50), 2)));
        assert_eq!(q.pop(), Some((SimTime::from_micros(57), 3)));
    }

    #[test]
    fn clock_round_trips_between_virtual_time_and_instants() {
        let base = Instant::now();
        let clock = Clock::new(base);
        let t = SimTime::from_micros(1_234_567);
        assert_eq!(clock.sim_time(clock.instant(t)), t);
        assert_eq!(clock.instant(SimTime::ZERO), base);
        assert_eq!(clock.sim_time(base - Duration::from_secs(1)), SimTime::ZERO);
        assert_eq!(t.after(Duration::from_millis(1)).as_micros(), 1_235_567);
    }

    #[test]
    fn a_deadline_between_two_microseconds_falls_due_at_the_later_one() {
        let base = Instant::now();
        let clock = Clock::new(base);
        let exact = base + Duration::from_micros(10);
        assert_eq!(clock.deadline(exact), SimTime::from_micros(10));
        assert_eq!(
            clock.deadline(exact + Duration::from_nanos(1)),
            SimTime::from_micros(11)
        );
    }

    #[test]
    fn peeking_and_advancing_leave_pending_events_in_place() {
        let mut q = EventQueue::new();
        q.schedule(SimTime::from_micros(40), "later");
        assert_eq!(q.peek_time(), Some(SimTime::from_micros(40)));
        q.advance_to(SimTime::from_micros(30));
        q.advance_to(SimTime::from_micros(20));
        assert_eq!(q.now(), SimTime::from_micros(30));
        assert_eq!(q.pop(), Some((SimTime::from_micros(40), "later")));
        assert_eq!(q.peek_time(), None);
    }
}
