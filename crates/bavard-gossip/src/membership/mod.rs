//! SWIM membership with Lifeguard, sans-IO.
//!
//! # The protocol
//!
//! **SWIM** (A. Das, I. Gupta, A. Motivala, *SWIM: Scalable Weakly-consistent Infection-style
//! Process Group Membership Protocol*, DSN 2002) separates failure detection from dissemination.
//! Every protocol period a member probes one other member, taken round-robin from a list that is
//! reshuffled after each pass (new members go to a random position), which bounds the time to
//! first detection. A probe is a direct `Ping`; without an `Ack` within the probe timeout the
//! prober sends `PingReq` to `indirect_checks` random members, which ping the target on its
//! behalf and forward the ack (and pings the target once more itself, memberlist's fallback
//! ping: [`MembershipConfig::fallback_ping`]). Without any ack by the end of the period the
//! target becomes *suspect*; unless it refutes in time it is declared *dead*. Membership changes are not sent
//! separately but piggybacked on the probe traffic (infection-style dissemination), each update
//! `retransmit_mult · ceil(log10(N + 1))` times.
//!
//! **Incarnations and precedence.** Each member owns an incarnation number that only it
//! increases: to refute a suspicion, to change its metadata, to leave. Claims are ordered by
//! (incarnation, state) with `Alive < Suspect < Dead < Left` at equal incarnation, and a claim
//! replaces the current one only if it is greater (see [`member`] docs for the
//! rules: `Suspect(i)` beats `Alive(i)`, `Alive(j > i)` beats `Suspect(i)`, `Dead(j ≥ i)` beats
//! both, `Left(j ≥ i)` beats all). So a forged or stale `Alive(i)` never clears a suspicion or a
//! death at `i`, and views converge whatever the delivery order. A claim about the local node
//! that would make it suspect, dead or out of date is refuted: the node bumps its incarnation
//! above the claim and gossips `Alive`. `Alive` and `Left` claims are only accepted from the
//! member itself (the `from` of the [`Update`]), signed by it.
//!
//! **Trust** (ours; SWIM and memberlist trust every member). A member's claims about itself are
//! signed by it through an [`Authenticator`] and relayed with the original signature, so a
//! relay can repeat them but nobody can forge them; `Suspect` and `Dead` are unsigned
//! statements about others, bounded by [`MembershipConfig::max_incarnation_jump`] so that
//! nobody can pin a member at `u64::MAX`; incarnations only grow with checked arithmetic. The
//! rules are listed on [`Membership`] ("Trust"); what is dropped is counted in
//! [`RejectedUpdates`].
//!
//! **Lifeguard** (A. Dadgar, J. Phillips, J. Currey, *Lifeguard: Local Health Awareness for More
//! Accurate Failure Detection*, 2018, arXiv:1707.00788) cuts false positives:
//! - *local health awareness* (`awareness.rs`): a saturating score raised by failed
//!   probes, missing nacks and refutations, lowered by successful probes; probe interval and
//!   timeout are multiplied by `score + 1`. Ping-req relays send a `Nack` when the target did not
//!   answer them, so that a prober can tell "the target is down" from "I am the slow one";
//! - *dynamic suspicion* ([`suspicion`]): the timeout starts at
//!   `max = suspicion_max_timeout_mult · min`, with
//!   `min = suspicion_mult · max(1, log10 N) · probe_interval`, and falls with independent
//!   confirmations (`max − log(c + 1)/log(k + 1) · (max − min)`, `k = suspicion_mult − 2`);
//! - *buddy system*: a suspect is told directly, and pings to a suspect carry its suspicion first.
//!
//! **From memberlist** (HashiCorp's Go implementation, whose LAN profile gives the
//! [defaults](MembershipConfig::lan)): piggyback-only gossip every 200 ms to 3 members, a full
//! state push-pull with a random member every 30 s (which heals partitions; a remote "dead" is
//! merged as a suspicion), dead members gossiped to and kept for 30 s before they are reaped,
//! join by push-pull with a seed, and a 1400-byte budget per packet.
//!
//! **Ours**, measured in `bavard-sim` (docs/PERFORMANCE.md: at 1,000 members with 10% loss they
//! took the p99 detection time from 20.3 s to 17.2 s and removed the rare false positive):
//! - *ring monitor* (`ring_probe_every`): every other period probes a ring neighbour (the next,
//!   then the previous live member in id order) instead of the next round-robin member. The
//!   round-robin bounds the time until *each* member probes a crashed one, but the wait until
//!   *anyone* does is exponential; with the ring every member is also probed by both neighbours
//!   every few periods, and the two are independent confirmations (cf. Rapid's rings, Suresh et
//!   al., USENIX ATC 2018);
//! - *last chance*: a suspicion that got no confirmation in its whole (maximum) timeout is sent
//!   to the suspect before the member is declared dead; a live member answers a stale suspicion
//!   with its current incarnation, so a node that missed a refutation is corrected instead of
//!   declaring a false death. Silence for two periods, or a confirmation meanwhile, ends it.
//!
//! # Bounds
//!
//! Everything received is untrusted. A message carrying more than `max_updates_per_message`
//! updates (push-pull: `max_members`), metadata over `max_meta_len`, a signature over
//! `max_signature_len`, or enough new members to
//! grow the view past `max_members` is rejected whole with a [`MembershipError`] before anything
//! is applied. The broadcast queue holds at most `max_queued_updates` (one per member, the most
//! retransmitted dropped first) and at most `max_pending_relays` ping-reqs are served at once.
//! Outgoing messages and events queue until the driver polls them; it must drain both after
//! every call.
//!
//! # Use
//!
//! [`Membership`] is the state machine; its docs describe the driving protocol. The messages are
//! plain Rust values ([`Message`]); the node converts them to protobuf.

mod auth;
mod awareness;
mod broadcast_queue;
mod config;
mod error;
mod event;
pub mod member;
mod message;
pub mod suspicion;
mod swim;

pub use crate::NoAuth;
pub use auth::{Authenticator, RejectedUpdates, SignedFields};
pub use config::MembershipConfig;
pub use error::MembershipError;
pub use event::MembershipEvent;
pub use member::{Member, MemberState};
pub use message::{ID_LEN_ESTIMATE, Message, Update};
pub use swim::Membership;
