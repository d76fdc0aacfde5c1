//! A deterministic discrete-event simulator that drives bavard's sans-IO cores at scale.
//!
//! - [`engine`]: virtual time ([`SimTime`], [`Clock`]) and the `(time, sequence)`-ordered
//!   [`EventQueue`];
//! - [`latency`]: per-link latency from random positions on a plane ([`LatencyModel`]);
//! - [`network`]: latency, per-message loss and node liveness, i.e. churn ([`Network`]);
//! - [`rng`]: every random choice derives from one `u64` seed (ChaCha8 streams);
//! - [`keyspace`]: global knowledge of the key space for ground truth ([`KeyIndex`]);
//! - [`stats`]: means and percentiles ([`Samples`]);
//! - [`lookup`]: the lookup experiment — N routing tables joined through a bootstrap node, then
//!   lookups with bavard's termination and libp2p's classic one, compared with the true k
//!   closest ([`run_lookup_sim`], [`LookupSimConfig`], [`StrategyReport`]).
//!
//! Nodes are `u32` ids indexing `Vec`s of state, so 100,000 nodes fit in memory. A run is a pure
//! function of its configuration and seed: everything it reports except `wall_s` replays exactly.

pub mod engine;
mod error;
pub mod keyspace;
pub mod latency;
pub mod lookup;
pub mod network;
pub mod rng;
pub mod stats;

pub use engine::{Clock, EventQueue, SimTime};
pub use error::SimError;
pub use keyspace::KeyIndex;
pub use latency::{LatencyConfig, LatencyModel};
pub use lookup::{LookupSimConfig, Strategy, StrategyReport, run_lookup_sim};
pub use network::Network;
pub use stats::Samples;

/// A simulated node: an index into the simulator's per-node vectors.
pub type NodeId = u32;
