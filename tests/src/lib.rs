//! Black-box test support for bavard: the history checkers of the replicated store (this page:
//! lost writes and stale reads; [`linearizable`]: linearizability of register histories with
//! compare-and-set; [`counter`]: counters built from compare-and-set increments).
//!
//! A test (or `cargo xtask scenario`) records every client operation it runs against a cluster
//! as an [`Op`]: what it invoked, how it ended (`ok`, `fail`, or `unknown` when the client cannot
//! tell, e.g. a timeout), the value written or read and the version the store returned. After the
//! faults stop and the cluster healed, it reads every key once more at quorum ([`FinalRead`]) and
//! [`check`] says whether the store kept its promises:
//!
//! - **no acknowledged write is lost**: every write acknowledged `ok` is still the newest version
//!   of its key, unless a write (or delete) with a higher version superseded it;
//! - **no phantom reads**: every value any read returned was written by some write (one that
//!   succeeded, failed or ended unknown: a failed write may still have reached a replica);
//! - the caller checks convergence separately (all replicas agree);
//! - with [`stale_reads`], **no quorum read misses a quorum write acknowledged before it
//!   started** (R + W > N).
//!
//! Written values must be unique per operation (e.g. `"c3-17"`), so a value identifies its
//! write.

pub mod checker;
pub mod counter;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod linearizable;

pub use checker::{FinalRead, Op, OpKind, Outcome, Verdict, check, stale_reads};
