//! A deterministic discrete-event simulator that drives bavard's sans-IO cores at scale.
//!
//! - [`engine`]: virtual time ([`SimTime`], [`Clock`]) and the `(time, sequence)`-ordered
//!   [`EventQueue`];
//! - [`latency`]: per-link latency ([`Latency`]), from random positions on a plane
//!   ([`LatencyModel`]);
//! - [`loss`]: per-message loss decided by a hash of the message ([`Loss`]);
//! - [`harness`]: the one discrete-event loop every experiment and simulation test runs on
//!   ([`Harness`]): it drives any sans-IO core that implements [`SimNode`] over the simulated
//!   network, with timers, latency, loss, partitions, crashes and restarts, clock skew, and
//!   message counts;
//! - [`rng`]: every random choice derives from one `u64` seed (ChaCha8 streams);
//! - [`keyspace`]: global knowledge of the key space for ground truth ([`KeyIndex`]);
//! - [`stats`]: means and percentiles ([`Samples`]);
//! - [`memory`]: the peak resident set every experiment reports, in all and per node;
//! - [`lookup`]: the lookup experiment — N routing tables joined through a bootstrap node, then
//!   lookups with bavard's termination and libp2p's classic one, compared with the true k
//!   closest ([`run_lookup_sim`], [`LookupSimConfig`], [`StrategyReport`]);
//! - [`gossip`]: the gossip experiment — HyParView + Plumtree topic broadcast over N nodes,
//!   delivery, redundancy (RMR), last delivery hop and latency, with failures, against a
//!   gossipsub-like mesh ([`run_gossip_sim`], [`GossipSimConfig`], [`GossipReport`]);
//! - [`membership`]: the membership experiment — SWIM + Lifeguard over N members, time to detect
//!   crashed members everywhere, false positives and cost ([`run_membership_sim`],
//!   [`MembershipSimConfig`], [`MembershipReport`]);
//! - [`kv`]: the replicated-store experiment — the replica core and the membership on N nodes
//!   under partitions, crashes and clock skew, every client operation checked by the history
//!   checker of `bavard-tests` for lost writes, phantom and stale reads, and the time the
//!   replicas take to converge ([`run_kv_sim`], [`KvSimConfig`], [`KvReport`]);
//! - [`blobs`]: the swarm experiment — leechers fetching one blob with the real swarm scheduler
//!   over links of limited bandwidth, completion times and how evenly upload was spread, against
//!   one provider at a time ([`run_blobs_sim`], [`BlobsSimConfig`], [`BlobsReport`]).
//!
//! Nodes are `u32` ids indexing `Vec`s of state, and a node keeps only its own state (shared
//! configuration and keys live once, tables hold compact keys and times): a million nodes' lookup
//! experiment fits in a few GB. A run is a pure function of its configuration and seed:
//! everything it reports except `wall_s`, `peak_rss_mb` and `bytes_per_node` replays exactly.
//!
//! The whole-network tests of the cores run on the same harness (`tests/kademlia_network.rs`,
//! `tests/broadcast_overlay.rs`, `tests/membership_cluster.rs`), next to the harness's own
//! (`tests/harness.rs`).

pub mod blobs;
pub mod engine;
mod error;
pub mod gossip;
pub mod harness;
pub mod keyspace;
pub mod kv;
pub mod latency;
pub mod lookup;
pub mod loss;
pub mod membership;
pub mod memory;
pub mod rng;
pub mod stats;

pub use blobs::{BlobsReport, BlobsSimConfig, run_blobs_sim};
pub use engine::{Clock, EventQueue, SimTime};
pub use error::SimError;
pub use gossip::{GossipReport, GossipSimConfig, GossipStrategy, run_gossip_sim};
pub use harness::{Harness, Network, SimNode, Step};
pub use keyspace::KeyIndex;
pub use kv::{KvReport, KvSimConfig, run_kv_sim};
pub use latency::{Latency, LatencyConfig, LatencyModel};
pub use lookup::{Attack, LookupSimConfig, Strategy, StrategyReport, run_lookup_sim};
pub use loss::Loss;
pub use membership::{MembershipReport, MembershipSimConfig, Start, run_membership_sim};
pub use stats::Samples;

/// A simulated node: an index into the simulator's per-node vectors.
pub type NodeId = u32;
