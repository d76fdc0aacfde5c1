//! Linearizable compare-and-set per key: single-decree Paxos on the key's replicas, in the
//! shape of Cassandra's lightweight transactions (LWT) with Paxos v2's round-trip savings
//! (Lamport, *Paxos Made Simple*, 2001; Cassandra CEP-14, *Paxos Improvements*, 2021).
//!
//! Plain writes in bavard are last-writer-wins: two clients that both read version V and both
//! write can both be told "ok", and one write silently disappears. A compare-and-set here is a
//! consensus round among the key's N replicas instead, so among CAS operations on a key there
//! is one order that every replica agrees on and every client observes (linearizability).
//!
//! # The algorithm
//!
//! Each key has, on each of its replicas, an [`Acceptor`]: the highest ballot promised, the
//! proposal accepted and not yet committed, and the highest ballot committed. A [`Ballot`] is a
//! hybrid-logical-clock timestamp and the proposer's node id, ordered like a record
//! [`Version`](bavard_store::Version). One operation ([`Proposer`]) runs:
//!
//! 1. **Prepare and read** (round trip 1): send `Prepare(ballot)` to all N replicas. Each one
//!    promises to refuse lower ballots and answers with the key's record from its store, its
//!    accepted-but-uncommitted proposal and its last committed ballot — the read that classic
//!    Paxos LWT does as a separate round trip rides on the promise (Paxos v2). Wait for a
//!    majority of promises.
//! 2. **Finish what is in progress.** If the highest-ballot accepted proposal among the
//!    promises is newer than every commit they report, it may have been chosen: re-propose it
//!    under our ballot, commit it, wait for a majority of commit acknowledgements (else the
//!    next prepare can overtake the commit and find the same proposal in progress again), and
//!    start over with a new ballot. (If it was our own operation's earlier attempt, the
//!    operation is then committed.)
//! 3. **Evaluate the condition** ([`Condition`]) against the newest record the majority
//!    reports (tombstones count as absent). If it fails, answer
//!    [`Outcome::ConditionFailed`] with the current value: nothing was proposed. A serial read
//!    ([`Operation::SerialRead`]) answers [`Outcome::Read`] here.
//! 4. **Propose** (round trip 2): send `Propose(ballot, record)`, the record stamped with the
//!    ballot as its version. A majority of acceptances chooses it: the CAS is committed.
//! 5. **Commit**, to all N, without waiting (early commit; [`PaxosConfig::wait_for_commit`]
//!    waits for a majority, a third round trip): each replica applies the record to its store
//!    and clears its accepted proposal.
//!
//! An uncontended CAS therefore costs 2 round trips (Cassandra: 4 with classic LWT, 2 with
//! Paxos v2), a serial read 1. [`Completion::round_trips`] counts them for the metric.
//!
//! A refusal (a replica promised a higher ballot) means another proposer is active: the
//! attempt ends and the next one starts after a randomised exponential backoff with a ballot
//! above every ballot seen, up to [`PaxosConfig::max_attempts`].
//!
//! # What a client is told
//!
//! [`Outcome`] says whether the result is known. [`Outcome::Committed`],
//! [`Outcome::ConditionFailed`] and [`Outcome::NotApplied`] are certain;
//! [`Outcome::Unknown`] means a proposal of the operation may have been accepted by some
//! replicas without the proposer learning of a majority: a later proposer that finds it in
//! progress will finish it, so it may still take effect (Cassandra's `CasWriteUnknownException`,
//! Jepsen's "indeterminate"). An operation that sees its own earlier attempt chosen reports
//! `Committed` with that attempt's version, never a spurious condition failure.
//!
//! # Mixing CAS with plain writes
//!
//! The guarantee holds among CAS operations and serial reads on a key. A CAS compares against
//! the newest record a majority of replicas hold, whatever wrote it: a plain (LWW) write that
//! reached them is seen, and a CAS ballot is always moved above the version of the value it
//! replaces, so a committed CAS wins LWW over what it was compared with. But a plain write
//! takes no part in the consensus: it can land between a CAS's read and its commit, and the
//! CAS then overwrites it without having compared against it (or, with a timestamp from a clock
//! ahead, a plain write makes a committed CAS invisible). As Cassandra documents for LWT and
//! non-LWT writes on the same data: **use only CAS (conditional or [`Condition::Always`]) on
//! keys that need linearizability**; mixing loses the guarantee, not the store's convergence.
//! Quorum reads see a committed CAS once its commit reached them; serial reads see it at once.
//!
//! # What the IO shell must do
//!
//! - **Persist before answering.** An acceptor rule returns a [`Step`]; write its state
//!   ([`Acceptor::encode`], one row per key) and its record in one durable transaction, then
//!   answer. A row that does not decode is a [`StateDecodeError`]: refuse the key's requests,
//!   never treat it as empty (that would forget a promise).
//! - **Unique ballots.** Every ballot is a fresh timestamp of the node's one hybrid logical
//!   clock ([`Proposer::poll_ballot`]), which must never go back across restarts; two
//!   operations with one ballot and different values would break safety.
//! - **Bound ballots from the future** as for versions: a prepare or proposal whose ballot's
//!   timestamp is beyond the clock drift bound is refused before it reaches the acceptor.
//! - **Fixed replica sets.** The replicas of one round are the key's N preferred replicas, no
//!   fallbacks: majorities must intersect. A membership change that moves a key to other
//!   replicas moves its acceptor state too, or in-progress proposals can be lost (Cassandra
//!   has the same hazard during range movements).
//! - **At-most-once requests.** Send each request once; a transport that could duplicate a
//!   proposal would let an explicit refusal hide an earlier acceptance, and
//!   [`Outcome::NotApplied`] relies on refusals.

mod acceptor;
mod backoff;
mod ballot;
mod codec;
mod message;
mod proposer;

pub use acceptor::{Acceptor, Step};
pub use ballot::Ballot;
pub use codec::{STATE_FORMAT_V1, StateDecodeError};
pub use message::{Accepted, PaxosRequest, PaxosResponse};
pub use proposer::{
    Cause, Completion, Condition, Operation, Outcome, Outgoing, PaxosConfig, Proposer, Update,
};
