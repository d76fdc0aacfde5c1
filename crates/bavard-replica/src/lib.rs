//! Sans-IO replication for bavard's key-value store (Dynamo, DeCandia et al., SOSP 2007;
//! Cassandra): the decisions, with no network, no clock and no runtime.
//!
//! - [`Placement`]: where keys live — each on its N closest healthy members by XOR distance —
//!   and which parts of the keyspace two members share. Every path that places data (writes,
//!   reads, hints, read repair, anti-entropy, re-replication) asks the same placement.
//! - [`sync`]: anti-entropy as a three-level hash tree over the store's digest index
//!   ([`bavard_store::digest`]): an [`Initiator`] state machine and a stateless [`answer`], with
//!   every request and answer bounded in bytes.
//! - [`coordinator`]: write and read coordination ([`Write`], [`Read`]) as state machines —
//!   quorums, sloppy quorum with hints on fallbacks, read repair — behind one driving interface,
//!   [`Coordination`].
//! - [`handoff`]: the hinted-handoff policy — whom hints go to, in what batches, when they
//!   expire.
//! - [`paxos`]: linearizable compare-and-set per key — Paxos on the key's replicas
//!   ([`paxos::Proposer`], [`paxos::Acceptor`]).
//! - [`Request`] / [`Response`]: the replica protocol's messages as domain types.
//! - [`LeafSet`]: which leaves of the key-hash space a round compares; [`LeafMap`]: every
//!   member's partners and shared leaves from one pass over a placement's leaves.
//!
//! The node (`bavard-node`) drives these over libp2p streams; the simulator drives them over
//! simulated links. Time is a parameter (`now_ms`), peers are any `Clone + PartialEq` id (tests
//! use `u64`).

#![deny(missing_docs, unreachable_pub)]

pub mod coordinator;
pub mod handoff;
mod leafmap;
mod leafset;
pub mod paxos;
mod placement;
mod protocol;
pub mod sync;

pub use coordinator::{
    AnswerTime, Coordination, Outgoing, QuorumError, Read, ReadOptions, RequestId, Write,
};
pub use handoff::{HandoffPolicy, HintBatch};
pub use leafmap::LeafMap;
pub use leafset::{LEAF_SET_BYTES, LeafSet, LeafSetSizeError};
pub use placement::Placement;
pub use protocol::{Failure, Request, Response, StoreOutcome};
pub use sync::{Initiator, Step, SyncConfig, SyncError, SyncStats, answer};
