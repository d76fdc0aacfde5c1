//! The sans-IO Kademlia core: 256-bit keys, XOR distance, k-buckets and the iterative lookup.
//!
//! - [`Key`], [`Distance`]: the key space and its XOR metric (`key.rs`); [`KadKey`] and
//!   [`Timestamp`], what a routing table needs of its keys and times, so that a simulator can
//!   give a million tables 64-bit keys and 4-byte times (`u64` is a [`KadKey`]).
//! - [`RoutingTable`]: 256 k-buckets around the local key, least-recently-seen eviction with
//!   a ping of the oldest entry, replacement caches, an [`AdmissionFilter`] hook and refresh
//!   bookkeeping (`table.rs`, `bucket.rs`); generic over the key and time types, [`Key`] and
//!   `Instant` by default.
//! - [`Lookup`]: the iterative, parallel lookup state machine, with classic and β termination and
//!   S/Kademlia disjoint paths (`lookup.rs`). The default stopping rule is go-libp2p-kad-dht's β
//!   rule (β = 3 closest answered) plus a finishing burst to the rest of the k closest that ends
//!   on a quorum (16 of k = 20) instead of the slowest link: Kademlia's classic rule costs at
//!   least ⌈k/α⌉ round trips (7 at k = 20, α = 3), this one about 3–4 RTTs in all (see
//!   [`Termination`]).
//! - [`TableConfig`], [`LookupConfig`]: parameters and defaults (`config.rs`).
//!
//! Nothing here does IO or reads the clock: time comes in as `now: Instant` (or the table's `T`), randomness as an
//! `R: rand::Rng`, and the peer identity is a type parameter (tests use `u64`).

mod bucket;
mod config;
mod key;
mod lookup;
mod table;

pub use bucket::{AcceptAll, AdmissionFilter, BucketView, Entry};
pub use config::{ConfigError, LookupConfig, TableConfig, Termination};
pub use key::{Distance, KadKey, Key, Timestamp};
pub use lookup::{Lookup, LookupAction, LookupResult, LookupStats};
pub use table::{InsertOutcome, PingOutcome, RejectReason, Removal, RoutingTable};
