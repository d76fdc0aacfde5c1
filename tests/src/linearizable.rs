//! A linearizability checker for register histories: reads, writes and compare-and-set, each
//! with the outcome the client saw.
//!
//! A history is linearizable (Herlihy and Wing, *Linearizability: A Correctness Condition for
//! Concurrent Objects*, TOPLAS 1990) when every operation can be given a point between its
//! invocation and its completion such that, taken in the order of those points, the operations
//! are a legal run of one sequential register. Keys are independent registers (linearizability
//! is compositional), so [`check`] partitions a history by key and checks each key alone.
//!
//! # The search
//!
//! The Wing–Gong algorithm (Wing and Gong, *Testing and Verifying Concurrent Objects*, JPDC
//! 1993) with Lowe's memoisation (Lowe, *Testing for Linearizability*, CCPE 2017), as
//! [Knossos](https://github.com/jepsen-io/knossos) and
//! [Porcupine](https://github.com/anishathalye/porcupine) implement it: the invocations and
//! completions of a key's operations are put in one list in time order; the search repeatedly
//! takes an operation whose invocation comes before the first pending completion, applies it
//! to the model and removes it from the list, and backtracks when it reaches a completion whose
//! operation it could not place. A cache of the states already explored — the set of operations
//! linearized (a bitset) and the register's value — prunes every path that reaches one again,
//! which turns the factorial search into one that handles thousands of operations in
//! practice. The problem is NP-complete in general (Gibbons and Korach, 1997), so a
//! [`Budget`] bounds the steps and the time; when it runs out the verdict is
//! [`Verdict::Unknown`], never a guess.
//!
//! # Outcomes
//!
//! - [`Return::Read`], [`Return::Ok`], [`Return::Mismatch`]: the operation took effect (a
//!   mismatch is a CAS that found another value and wrote nothing) at one point of its
//!   interval.
//! - [`Return::Fail`]: known not to have taken effect; dropped.
//! - [`Return::Unknown`] (a timeout, "indeterminate"): a write or CAS may take effect at any
//!   point after its invocation, even after the history ends, or never; the search tries both.
//!   An unknown read tells nothing and is dropped.
//!
//! Operation `a` precedes `b` when `a` completed strictly before `b` was invoked; equal times
//! are concurrent. Times are any unit (ms, logical steps).
//!
//! # Counterexamples
//!
//! For a key that is not linearizable, [`Counterexample`] gives the shortest prefix of the
//! history (the first operations to complete, with those still running then counted as
//! unknown) that is already not linearizable — found by bisection, since a prefix of a
//! linearizable history is linearizable — and, within it, the longest linearization the
//! search found and the operation that could not follow it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a client invoked on a register. `None` is the absent value (the initial state; a
/// delete writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Call<V> {
    /// A read.
    Read,
    /// An unconditional write.
    Write(Option<V>),
    /// Write `new` if the value is `expected`.
    Cas {
        /// The value the register must hold.
        expected: Option<V>,
        /// The value to write.
        new: Option<V>,
    },
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Return<V> {
    /// A read returned this value.
    Read(Option<V>),
    /// A write or a CAS took effect.
    Ok,
    /// A CAS found a value other than the expected one and wrote nothing.
    Mismatch,
    /// Known not to have taken effect.
    Fail,
    /// May or may not have taken effect, at any point after the invocation.
    Unknown,
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp<V> {
    /// The client that ran it.
    pub client: usize,
    /// The key (the register).
    pub key: String,
    /// What was invoked.
    pub call: Call<V>,
    /// How it ended.
    pub ret: Return<V>,
    /// When it was invoked.
    pub invoked: u64,
    /// When it completed (ignored for [`Return::Unknown`]).
    pub completed: u64,
}

/// An operation whose outcome does not fit its call, or whose times are reversed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} of the history (client {client}, key {key:?}): {problem}")]
pub struct HistoryError {
    /// Its index in the history.
    pub index: usize,
    /// Its client.
    pub client: usize,
    /// Its key.
    pub key: String,
    /// What is wrong.
    pub problem: &'static str,
}

/// How much work the search may do per key before answering [`Verdict::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps (one per operation tried or backtracked).
    pub max_steps: u64,
    /// Wall-clock time, if bounded (a step bound alone keeps verdicts deterministic).
    pub max_time: Option<Duration>,
}

impl Default for Budget {
    /// Ten million steps, no time bound.
    fn default() -> Self {
        Self {
            max_steps: 10_000_000,
            max_time: None,
        }
    }
}

/// What the search found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<V> {
    /// There is a linearization.
    Linearizable,
    /// There is none; why.
    NotLinearizable(Box<Counterexample<V>>),
    /// The budget ran out first.
    Unknown {
        /// Steps taken.
        steps: u64,
    },
}

/// Why a key's history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample<V> {
    /// The shortest failing prefix: the operations that had completed when the violation
    /// became certain, and those running then (as [`Return::Unknown`]), in invocation order.
    pub prefix: Vec<RegisterOp<V>>,
    /// The longest linearization of part of that prefix the search found.
    pub linearized: Vec<RegisterOp<V>>,
    /// The register's value after `linearized`.
    pub state: Option<V>,
    /// An operation that completed before some operation not in `linearized` started — so it
    /// had to come next — and that no order let the model accept.
    pub blocked: Option<RegisterOp<V>>,
}

impl<V: fmt::Debug> fmt::Display for Counterexample<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not linearizable; the shortest failing prefix:")?;
        for op in &self.prefix {
            writeln!(f, "  {}", Show(op))?;
        }
        writeln!(f, "longest linearization found:")?;
        for op in &self.linearized {
            writeln!(f, "  {}", Show(op))?;
        }
        write!(f, "value then: {:?}", self.state)?;
        if let Some(op) = &self.blocked {
            write!(f, "\ncannot be placed next: {}", Show(op))?;
        }
        Ok(())
    }
}

struct Show<'a, V>(&'a RegisterOp<V>);

impl<V: fmt::Debug> fmt::Display for Show<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0;
        let end = match op.ret {
            Return::Unknown => "?".to_string(),
            _ => op.completed.to_string(),
        };
        write!(
            f,
            "client {} [{}, {}] {:?} -> {:?}",
            op.client, op.invoked, end, op.call, op.ret
        )
    }
}

/// The verdict for every key of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<V> {
    /// Per key.
    pub keys: BTreeMap<String, Verdict<V>>,
}

impl<V> Report<V> {
    /// `Some(true)` when every key is linearizable, `Some(false)` when one is not, `None` when
    /// none is known not to be but the budget ran out on one (the JSON `linearizable`:
    /// true / false / unknown).
    pub fn linearizable(&self) -> Option<bool> {
        let mut unknown = false;
        for v in self.keys.values() {
            match v {
                Verdict::NotLinearizable(_) => return Some(false),
                Verdict::Unknown { .. } => unknown = true,
                Verdict::Linearizable => {}
            }
        }
        (!unknown).then_some(true)
    }

    /// The counterexamples, by key.
    pub fn violations(&self) -> impl Iterator<Item = (&str, &Counterexample<V>)> {
        self.keys.iter().filter_map(|(k, v)| match v {
            Verdict::NotLinearizable(c) => Some((k.as_str(), &**c)),
            _ => None,
        })
    }
}

/// Checks every key of `history` (each key a register starting absent), each within `budget`.
///
/// # Errors
///
/// [`HistoryError`] for an operation whose outcome does not fit its call (a read answered
/// `Ok`, a write answered `Mismatch`…) or that completed before it was invoked.
pub fn check<V: Clone + Eq + Hash>(
    history: &[RegisterOp<V>],
    budget: Budget,
) -> Result<Report<V>, HistoryError> {
    for (index, op) in history.iter().enumerate() {
        validate(op).map_err(|problem| HistoryError {
            index,
            client: op.client,
            key: op.key.clone(),
            problem,
        })?;
    }
    let mut by_key: BTreeMap<&str, Vec<RegisterOp<V>>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    let keys = by_key
        .into_iter()
        .map(|(key, ops)| (key.to_string(), check_key(&ops, budget)))
        .collect();
    Ok(Report { keys })
}

fn validate<V>(op: &RegisterOp<V>) -> Result<(), &'static str> {
    let fits = matches!(
        (&op.call, &op.ret),
        (_, Return::Fail | Return::Unknown)
            | (Call::Read, Return::Read(_))
            | (Call::Write(_), Return::Ok)
            | (Call::Cas { .. }, Return::Ok | Return::Mismatch)
    );
    if !fits {
        return Err("the outcome does not fit the call");
    }
    if !matches!(op.ret, Return::Unknown) && op.completed < op.invoked {
        return Err("completed before it was invoked");
    }
    Ok(())
}

/// Checks one register's operations (their keys are ignored), already validated.
fn check_key<V: Clone + Eq + Hash>(ops: &[RegisterOp<V>], budget: Budget) -> Verdict<V> {
    let full = Search::new(ops).run(budget);
    match full {
        Outcome::Linearizable => Verdict::Linearizable,
        Outcome::Unknown { steps } => Verdict::Unknown { steps },
        Outcome::Not(deepest) => {
            Verdict::NotLinearizable(Box::new(shortest_counterexample(ops, budget, deepest)))
        }
    }
}

/// Bisects on the number of completed operations for the shortest failing prefix.
fn shortest_counterexample<V: Clone + Eq + Hash>(
    ops: &[RegisterOp<V>],
    budget: Budget,
    full: Deepest<V>,
) -> Counterexample<V> {
    let mut ends: Vec<u64> = ops
        .iter()
        .filter(|o| !matches!(o.ret, Return::Unknown | Return::Fail))
        .map(|o| o.completed)
        .collect();
    ends.sort_unstable();
    ends.dedup();
    // Invariant: the prefix up to ends[hi] fails (or hi is past the end: the whole history).
    let (mut lo, mut hi) = (0, ends.len());
    let mut best: Option<(Vec<RegisterOp<V>>, Deepest<V>)> = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let prefix = prefix_until(ops, ends[mid]);
        match Search::new(&prefix).run(budget) {
            Outcome::Not(deepest) => {
                best = Some((prefix, deepest));
                hi = mid;
            }
            // Linearizable, or unknown (then the bisection just stays on the safe side).
            _ => lo = mid + 1,
        }
    }
    let (mut prefix, deepest) = best.unwrap_or_else(|| (ops.to_vec(), full));
    prefix.sort_by_key(|o| o.invoked);
    Counterexample {
        prefix,
        linearized: deepest.linearized,
        state: deepest.state,
        blocked: deepest.blocked,
    }
}

/// The operations invoked by `t`, those that completed after `t` turned into unknowns.
fn prefix_until<V: Clone>(ops: &[RegisterOp<V>], t: u64) -> Vec<RegisterOp<V>> {
    ops.iter()
        .filter(|o| o.invoked <= t)
        .map(|o| {
            let mut o = o.clone();
            if !matches!(o.ret, Return::Unknown) && o.completed > t {
                o.ret = Return::Unknown;
            }
            o
        })
        .collect()
}

/// How a search ended.
enum Outcome<V> {
    Linearizable,
    Not(Deepest<V>),
    Unknown { steps: u64 },
}

/// The deepest point a failed search reached.
struct Deepest<V> {
    linearized: Vec<RegisterOp<V>>,
    state: Option<V>,
    blocked: Option<RegisterOp<V>>,
}

/// A set of operation indexes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

const NIL: usize = usize::MAX;

/// One event of the list: an operation's invocation or completion.
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For an invocation: its completion's entry ([`NIL`] for an unknown operation, which
    /// never completes).
    ret: usize,
    prev: usize,
    next: usize,
}

/// The Wing–Gong search over one register's operations, with Lowe's cache.
///
/// Two reductions keep histories with many unknown outcomes tractable (a run with faults
/// leaves hundreds of timed-out CAS on a hot key):
///
/// - An unknown operation has no completion in the list, and "never took effect" is not a
///   choice the search makes: such an operation just stays pending, and the search succeeds
///   once every definite operation is placed. Placing it as a no-op instead would give a
///   second cache entry per pending unknown and per prefix for the same future.
/// - Unknown operations with the same call are interchangeable once both are invoked (neither
///   has a completion to meet), so only the earliest-invoked one still pending of each such
///   class is tried: the others would lead to the same states under other names.
struct Search<'a, V> {
    ops: Vec<&'a RegisterOp<V>>,
    /// Entry 0 is the head sentinel.
    list: Vec<Entry>,
    /// For an unknown operation: the unknown operations with the same call, in invocation
    /// order (empty for definite operations).
    twins: Vec<std::rc::Rc<[usize]>>,
    /// Definite operations: those the linearization must contain.
    definite: usize,
}

impl<'a, V: Clone + Eq + Hash> Search<'a, V> {
    fn new(all: &'a [RegisterOp<V>]) -> Self {
        // Failed operations did nothing; unknown reads tell nothing.
        let ops: Vec<&RegisterOp<V>> = all
            .iter()
            .filter(|o| match o.ret {
                Return::Fail => false,
                Return::Unknown => !matches!(o.call, Call::Read),
                _ => true,
            })
            .collect();
        // (time, completion after invocation at equal times, op): equal times are concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            events.push((o.invoked, false, i));
            if !matches!(o.ret, Return::Unknown) {
                events.push((o.completed, true, i));
            }
        }
        events.sort_unstable();
        let mut list = vec![Entry {
            op: NIL,
            is_call: false,
            ret: NIL,
            prev: NIL,
            next: NIL,
        }];
        let mut ret_of = vec![NIL; ops.len()];
        let mut classes: Vec<(&Call<V>, Vec<usize>)> = Vec::new();
        let mut class_of = vec![NIL; ops.len()];
        for (_, is_ret, op) in &events {
            let idx = list.len();
            list.push(Entry {
                op: *op,
                is_call: !is_ret,
                ret: NIL,
                prev: idx - 1,
                next: NIL,
            });
            list[idx - 1].next = idx;
            if *is_ret {
                ret_of[*op] = idx;
            } else if matches!(ops[*op].ret, Return::Unknown) {
                // In invocation order, since the events are.
                let call = &ops[*op].call;
                let class = match classes.iter().position(|(c, _)| *c == call) {
                    Some(class) => class,
                    None => {
                        classes.push((call, Vec::new()));
                        classes.len() - 1
                    }
                };
                classes[class].1.push(*op);
                class_of[*op] = class;
            }
        }
        for e in list.iter_mut().skip(1) {
            if e.is_call {
                e.ret = ret_of[e.op];
            }
        }
        let shared: Vec<std::rc::Rc<[usize]>> = classes
            .into_iter()
            .map(|(_, members)| members.into())
            .collect();
        let twins = class_of
            .iter()
            .map(|&c| {
                if c == NIL {
                    std::rc::Rc::from(Vec::new())
                } else {
                    shared[c].clone()
                }
            })
            .collect();
        let definite = ops
            .iter()
            .filter(|o| !matches!(o.ret, Return::Unknown))
            .count();
        Self {
            ops,
            list,
            twins,
            definite,
        }
    }

    /// Removes an invocation and its completion from the list.
    fn lift(&mut self, call: usize) {
        for idx in [call, self.list[call].ret] {
            if idx == NIL {
                continue;
            }
            let Entry { prev, next, .. } = self.list[idx];
            self.list[prev].next = next;
            if next != NIL {
                self.list[next].prev = prev;
            }
        }
    }

    /// Puts them back (in the reverse order of [`Search::lift`]).
    fn unlift(&mut self, call: usize) {
        for idx in [self.list[call].ret, call] {
            if idx == NIL {
                continue;
            }
            let Entry { prev, next, .. } = self.list[idx];
            self.list[prev].next = idx;
            if next != NIL {
                self.list[next].prev = idx;
            }
        }
    }

    /// The register after `op` from `state`, if the model accepts it there (an unknown write
    /// or CAS as taking effect: that it may not is the search leaving it pending).
    fn step(&self, op: usize, state: &Option<V>) -> Option<Option<V>> {
        match (&self.ops[op].call, &self.ops[op].ret) {
            (Call::Read, Return::Read(v)) => (v == state).then(|| state.clone()),
            (Call::Write(v), _) => Some(v.clone()),
            (Call::Cas { expected, .. }, Return::Mismatch) => {
                (expected != state).then(|| state.clone())
            }
            (Call::Cas { expected, new }, _) => (expected == state).then(|| new.clone()),
            _ => None,
        }
    }

    /// Whether `op` is the one of its unknown twins the search tries: the earliest invoked
    /// not yet placed. Always true for a definite operation.
    fn is_first_twin(&self, op: usize, linearized: &Bits) -> bool {
        self.twins[op]
            .iter()
            .find(|&&t| !linearized.has(t))
            .is_none_or(|&t| t == op)
    }

    fn run(mut self, budget: Budget) -> Outcome<V> {
        let started = Instant::now();
        let mut cache: HashSet<(Bits, Option<V>)> = HashSet::new();
        let mut linearized = Bits::new(self.ops.len());
        let mut state: Option<V> = None;
        // (invocation entry, state before it)
        let mut stack: Vec<(usize, Option<V>)> = Vec::new();
        let mut deepest = Deepest {
            linearized: Vec::new(),
            state: None,
            blocked: None,
        };
        let mut entry = self.list[0].next;
        let mut definite_left = self.definite;
        let mut steps = 0u64;
        while definite_left > 0 {
            steps += 1;
            if steps > budget.max_steps
                || (steps.is_multiple_of(4096)
                    && budget.max_time.is_some_and(|t| started.elapsed() > t))
            {
                return Outcome::Unknown { steps };
            }
            if entry != NIL && self.list[entry].is_call {
                let op = self.list[entry].op;
                let mut placed = false;
                if self.is_first_twin(op, &linearized)
                    && let Some(next_state) = self.step(op, &state)
                {
                    let mut next_set = linearized.clone();
                    next_set.set(op);
                    if cache.insert((next_set.clone(), next_state.clone())) {
                        stack.push((entry, std::mem::replace(&mut state, next_state)));
                        linearized = next_set;
                        self.lift(entry);
                        if self.list[entry].ret != NIL {
                            definite_left -= 1;
                        }
                        placed = true;
                    }
                }
                if placed {
                    if stack.len() > deepest.linearized.len() {
                        deepest = Deepest {
                            linearized: stack
                                .iter()
                                .map(|(e, _)| self.ops[self.list[*e].op].clone())
                                .collect(),
                            state: state.clone(),
                            blocked: None,
                        };
                    }
                    entry = self.list[0].next;
                } else {
                    entry = self.list[entry].next;
                }
            } else {
                // A completion whose operation is not placed: what is linearized so far
                // cannot be extended. Undo the last choice and try the next operation.
                if entry != NIL
                    && stack.len() == deepest.linearized.len()
                    && deepest.blocked.is_none()
                {
                    deepest.blocked = Some(self.ops[self.list[entry].op].clone());
                }
                let Some((call, before)) = stack.pop() else {
                    return Outcome::Not(deepest);
                };
                linearized.clear(self.list[call].op);
                state = before;
                self.unlift(call);
                if self.list[call].ret != NIL {
                    definite_left += 1;
                }
                entry = self.list[call].next;
            }
        }
        Outcome::Linearizable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op = RegisterOp<u32>;

    fn op(client: usize, call: Call<u32>, ret: Return<u32>, invoked: u64, completed: u64) -> Op {
        RegisterOp {
            client,
            key: "k".into(),
            call,
            ret,
            invoked,
            completed,
        }
    }

    fn write(c: usize, v: u32, t0: u64, t1: u64) -> Op {
        op(c, Call::Write(Some(v)), Return::Ok, t0, t1)
    }

    fn read(c: usize, v: Option<u32>, t0: u64, t1: u64) -> Op {
        op(c, Call::Read, Return::Read(v), t0, t1)
    }

    fn cas(c: usize, from: Option<u32>, to: u32, ret: Return<u32>, t0: u64, t1: u64) -> Op {
        op(
            c,
            Call::Cas {
                expected: from,
                new: Some(to),
            },
            ret,
            t0,
            t1,
        )
    }

    fn verdict(history: &[Op]) -> Option<bool> {
        check(history, Budget::default()).unwrap().linearizable()
    }

    fn counterexample(history: &[Op]) -> Counterexample<u32> {
        let report = check(history, Budget::default()).unwrap();
        let (_, c) = report.violations().next().expect("a violation");
        c.clone()
    }

    #[test]
    fn porcupine_register_a_read_may_see_a_concurrent_write_or_not() {
        // Porcupine's TestRegisterModel, linearizable case.
        let h = [
            write(0, 100, 0, 100),
            read(1, Some(100), 25, 75),
            read(2, None, 30, 60),
        ];
        assert_eq!(verdict(&h), Some(true));
    }

    #[test]
    fn porcupine_register_a_read_cannot_go_back_after_another_saw_the_write() {
        // Porcupine's TestRegisterModel, non-linearizable case.
        let h = [
            write(0, 200, 0, 100),
            read(1, Some(200), 10, 30),
            read(2, None, 40, 90),
        ];
        assert_eq!(verdict(&h), Some(false));
    }

    #[test]
    fn concurrent_writes_seen_in_opposite_orders_are_not_linearizable() {
        let h = [
            write(0, 1, 0, 100),
            write(1, 2, 0, 100),
            read(2, Some(1), 10, 20),
            read(2, Some(2), 30, 40),
            read(3, Some(2), 10, 20),
            read(3, Some(1), 30, 40),
        ];
        assert_eq!(verdict(&h), Some(false));
        // One reader alone is fine: the writes took effect in its order.
        assert_eq!(verdict(&h[..4]), Some(true));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught_with_a_short_counterexample() {
        let h = [
            write(0, 1, 0, 10),
            write(0, 2, 20, 30),
            read(1, Some(1), 40, 50),
            // Later, unrelated operations stay out of the counterexample.
            write(2, 3, 60, 70),
            read(2, Some(3), 80, 90),
        ];
        assert_eq!(verdict(&h), Some(false));
        let c = counterexample(&h);
        assert_eq!(c.prefix, h[..3].to_vec());
        assert_eq!(c.blocked, Some(h[2].clone()));
        assert_eq!(c.state, Some(2));
        let text = c.to_string();
        assert!(
            text.contains("cannot be placed next: client 1 [40, 50]"),
            "{text}"
        );
    }

    #[test]
    fn two_successful_cas_from_the_same_expected_value_are_not_linearizable() {
        let h = [
            write(0, 0, 0, 5),
            cas(1, Some(0), 1, Return::Ok, 10, 20),
            cas(2, Some(0), 2, Return::Ok, 10, 20),
        ];
        assert_eq!(verdict(&h), Some(false));
        // One of them finding the other's value instead is linearizable, in either order.
        let mut ok = h.clone();
        ok[2].ret = Return::Mismatch;
        assert_eq!(verdict(&ok), Some(true));
        // But a mismatch that saw the expected value is not.
        let lone = [
            write(0, 0, 0, 5),
            cas(1, Some(0), 1, Return::Mismatch, 10, 20),
        ];
        assert_eq!(verdict(&lone), Some(false));
    }

    #[test]
    fn cas_if_absent_and_deletes_use_the_absent_value() {
        let h = [
            cas(0, None, 1, Return::Ok, 0, 10),
            op(1, Call::Write(None), Return::Ok, 20, 30),
            cas(2, None, 2, Return::Ok, 40, 50),
            read(0, Some(2), 60, 70),
        ];
        assert_eq!(verdict(&h), Some(true));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never_but_only_once() {
        let maybe = op(0, Call::Write(Some(7)), Return::Unknown, 0, 0);
        // Never observed: fine.
        assert_eq!(
            verdict(&[maybe.clone(), read(1, None, 100, 110)]),
            Some(true)
        );
        // Observed long after its client gave up: fine.
        assert_eq!(
            verdict(&[maybe.clone(), read(1, Some(7), 100, 110)]),
            Some(true)
        );
        // Observed, then gone with nothing else written: not linearizable.
        let h = [
            maybe.clone(),
            read(1, Some(7), 100, 110),
            read(1, None, 120, 130),
        ];
        assert_eq!(verdict(&h), Some(false));
        // But it cannot take effect before it was invoked.
        assert_eq!(
            verdict(&[read(1, Some(7), 0, 5), {
                let mut m = maybe;
                m.invoked = 10;
                m
            }]),
            Some(false)
        );
    }

    #[test]
    fn an_unknown_cas_takes_effect_only_where_its_condition_holds() {
        let h = [
            write(0, 1, 0, 10),
            cas(1, Some(1), 2, Return::Unknown, 20, 0),
            write(0, 3, 30, 40),
            read(2, Some(2), 50, 60),
        ];
        // The CAS could only have applied while the value was 1, before the write of 3.
        assert_eq!(verdict(&h), Some(false));
        let mut fine = h.clone();
        fine[3] = read(2, Some(3), 50, 60);
        assert_eq!(verdict(&fine), Some(true));
    }

    #[test]
    fn failed_operations_did_nothing() {
        let h = [
            op(0, Call::Write(Some(9)), Return::Fail, 0, 10),
            read(1, Some(9), 20, 30),
        ];
        assert_eq!(verdict(&h), Some(false));
        let h = [
            op(0, Call::Write(Some(9)), Return::Fail, 0, 10),
            op(1, Call::Read, Return::Unknown, 0, 0),
            read(1, None, 20, 30),
        ];
        assert_eq!(verdict(&h), Some(true));
    }

    #[test]
    fn keys_are_checked_apart_and_the_report_names_the_bad_one() {
        let mut h = vec![write(0, 1, 0, 10), read(1, Some(1), 20, 30)];
        let mut other = vec![write(0, 1, 0, 10), read(1, Some(5), 20, 30)];
        for o in &mut other {
            o.key = "bad".into();
        }
        h.extend(other);
        let report = check(&h, Budget::default()).unwrap();
        assert_eq!(report.linearizable(), Some(false));
        assert_eq!(report.keys["k"], Verdict::Linearizable);
        assert_eq!(
            report.violations().map(|(k, _)| k).collect::<Vec<_>>(),
            ["bad"]
        );
    }

    #[test]
    fn an_exhausted_budget_is_an_unknown_verdict_not_a_guess() {
        // Many concurrent unknown writes and a read nobody wrote: the search must explore a
        // lot before refuting it.
        let mut h: Vec<Op> = (0..10)
            .map(|i| op(i, Call::Write(Some(i as u32)), Return::Unknown, 0, 0))
            .collect();
        h.push(read(99, Some(1000), 10, 20));
        let tight = Budget {
            max_steps: 50,
            max_time: None,
        };
        let report = check(&h, tight).unwrap();
        assert!(matches!(report.keys["k"], Verdict::Unknown { steps: 51 }));
        assert_eq!(report.linearizable(), None);
        assert_eq!(
            verdict(&h),
            Some(false),
            "with the default budget it decides"
        );
    }

    #[test]
    fn memoisation_refutes_a_long_history_with_lingering_unknowns_within_a_small_budget() {
        // 200 rounds of 3 concurrent increments by CAS (one wins each round), 4 CAS that timed
        // out and never could apply, and a final read of a value nobody wrote. Refuting it
        // means trying every place for each unknown no-op after every prefix; the cache makes
        // that about (rounds × 2^4) states instead of exponentially many orders.
        let mut h = Vec::new();
        for round in 0..200u32 {
            let t = u64::from(round) * 10;
            for c in 0..3usize {
                let ret = if c == 2 { Return::Ok } else { Return::Mismatch };
                let from = if round == 0 { None } else { Some(round) };
                h.push(cas(c, from, round + 1, ret, t, t + 5));
            }
        }
        for c in 10..14 {
            h.push(cas(c, Some(9999), 1, Return::Unknown, 0, 0));
        }
        h.push(read(20, Some(7), 2000, 2010));
        let budget = Budget {
            max_steps: 300_000,
            max_time: None,
        };
        let report = check(&h, budget).unwrap();
        assert_eq!(report.linearizable(), Some(false));
        let (_, c) = report.violations().next().unwrap();
        assert_eq!(c.blocked.as_ref().map(|o| o.client), Some(20));
        // Without the bad read, it is linearizable.
        h.pop();
        assert_eq!(check(&h, budget).unwrap().linearizable(), Some(true));
    }

    #[test]
    fn interchangeable_unknown_cas_are_each_still_usable_once() {
        // Two identical CAS that timed out: both had to take effect, at different times.
        let u = |c| cas(c, Some(1), 2, Return::Unknown, 5, 0);
        let h = [
            write(0, 1, 0, 10),
            u(1),
            u(2),
            read(3, Some(2), 20, 30),
            write(0, 1, 40, 50),
            read(3, Some(2), 60, 70),
        ];
        assert_eq!(verdict(&h), Some(true));
        // A third time needs a third one.
        let mut three = h.to_vec();
        three.push(write(0, 1, 80, 90));
        three.push(read(3, Some(2), 100, 110));
        assert_eq!(verdict(&three), Some(false));
        three.push(u(4));
        assert_eq!(verdict(&three), Some(true));
    }

    /// A hot counter under faults, as `scenario cas --netns` records one: `rounds` increments
    /// by 4 clients, where in each round one CAS wins (acknowledged, or timed out and then
    /// seen by the next round), one finds the value moved, and two time out without taking
    /// effect.
    fn faulty_counter(rounds: u32) -> Vec<Op> {
        let mut h = Vec::new();
        for round in 0..rounds {
            let t = u64::from(round) * 10;
            let from = (round > 0).then_some(round);
            let winner = if round % 3 == 0 {
                Return::Unknown
            } else {
                Return::Ok
            };
            h.push(cas(0, from, round + 1, winner, t, t + 5));
            h.push(cas(1, from, round + 1, Return::Mismatch, t, t + 5));
            h.push(cas(2, from, round + 1, Return::Unknown, t, 0));
            h.push(cas(3, from, round + 1, Return::Unknown, t + 1, 0));
            h.push(read(4, Some(round + 1), t + 6, t + 9));
        }
        h
    }

    #[test]
    fn hundreds_of_timed_out_cas_on_one_key_are_decided_within_a_small_budget() {
        let budget = Budget {
            max_steps: 1_000_000,
            max_time: None,
        };
        let mut h = faulty_counter(300);
        assert_eq!(
            h.iter().filter(|o| o.ret == Return::Unknown).count(),
            700,
            "300 rounds leave 700 unknown outcomes"
        );
        assert_eq!(check(&h, budget).unwrap().linearizable(), Some(true));
        // A read that goes back a step is caught, and the counterexample ends at it.
        h.push(read(5, Some(150), 3000, 3001));
        let report = check(&h, budget).unwrap();
        assert_eq!(report.linearizable(), Some(false));
        let (_, c) = report.violations().next().unwrap();
        assert_eq!(c.blocked.as_ref().map(|o| o.client), Some(5));
    }

    #[test]
    fn malformed_operations_are_refused_by_index() {
        let h = [write(0, 1, 0, 10), op(1, Call::Read, Return::Ok, 20, 30)];
        let err = check(&h, Budget::default()).unwrap_err();
        assert_eq!(err.index, 1);
        let h = [write(0, 1, 10, 5)];
        assert_eq!(
            check(&h, Budget::default()).unwrap_err().problem,
            "completed before it was invoked"
        );
    }
}
