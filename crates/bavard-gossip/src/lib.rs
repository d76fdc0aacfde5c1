//! Sans-IO gossip protocols: SWIM membership with Lifeguard, HyParView partial views and
//! Plumtree epidemic broadcast.

pub mod broadcast;
pub mod membership;
