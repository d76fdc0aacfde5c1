//! Sans-IO gossip protocols: SWIM membership with Lifeguard, HyParView partial views and
//! Plumtree epidemic broadcast.
//!
//! Both authenticate gossip *content* through an injected authenticator
//! ([`membership::Authenticator`], [`broadcast::Authenticator`]): a member's claims about itself
//! and a publisher's topic messages carry their author's signature, which relays forward
//! unchanged. [`NoAuth`], the default, signs nothing and accepts everything.

pub mod broadcast;
pub mod membership;

mod no_auth;

pub use no_auth::NoAuth;
