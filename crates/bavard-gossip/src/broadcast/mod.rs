//! Topic broadcast: HyParView partial views with Plumtree epidemic broadcast trees on top.
//!
//! - HyParView: João Leitão, José Pereira, Luís Rodrigues, "HyParView: a membership protocol
//!   for reliable gossip-based broadcast", DSN 2007.
//! - Plumtree: João Leitão, José Pereira, Luís Rodrigues, "Epidemic Broadcast Trees",
//!   SRDS 2007.
//!
//! Each joined topic runs its own overlay: a symmetric **active view** (12 peers, the paper has 5; see [`HyParViewConfig::active_view_capacity`]) kept
//! connected by random-walk joins, periodic shuffles and reactive repair from a **passive view**
//! (30 peers), and a broadcast tree over it: payloads are pushed eagerly along tree edges, ids
//! are announced lazily (`IHave`) on the other links, duplicates prune links and missing
//! messages graft them back. In a stable overlay a message costs about one payload per node
//! (relative message redundancy near 0) while the lazy links keep delivery reliable under
//! failures.
//!
//! Payloads are signed by their publisher and verified by every node ([`Authenticator`]), and
//! the tree's messages are only taken from neighbours; see "Trust" on [`Broadcast`].
//!
//! [`Broadcast`] is the entry point; its documentation describes how a driver runs it.
//! iroh-gossip (n0-computer, `src/proto/`) is the closest Rust implementation and was read for
//! ideas; this one is written from the papers.

mod auth;
pub mod config;
pub mod error;
pub mod event;
pub mod message;

mod cache;
mod hyparview;
mod plumtree;
mod state;
mod topic;

pub use crate::NoAuth;
pub use auth::{Authenticator, SignedGossip};
pub use config::{BroadcastConfig, HyParViewConfig, Limits, PlumtreeConfig};
pub use error::BroadcastError;
pub use event::BroadcastEvent;
pub use message::{IHaveEntry, Message, MessageBody, MessageId, Priority, TopicId};
pub use state::Broadcast;
