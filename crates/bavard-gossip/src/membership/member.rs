//! A member of the view, its state, and the SWIM precedence between states.
//!
//! Every claim about a member is a pair (incarnation, state). Only the member itself increases
//! its incarnation (to refute a suspicion, to change its metadata, or to leave), so a higher
//! incarnation is always newer. At equal incarnation the states are ordered
//! `Alive < Suspect < Dead < Left`. A claim replaces the current one iff it is greater in the
//! lexicographic order on (incarnation, state rank), which gives SWIM's rules (§4.2 of the paper):
//!
//! - `Suspect(i)` overrides `Alive(i)`: a forged or stale `Alive(i)` cannot clear a suspicion;
//! - `Alive(j)` overrides `Suspect(i)` and `Alive(i)` only when `j > i` (a refutation);
//! - `Dead(j)` (SWIM's *confirm*) overrides `Alive(i)` and `Suspect(i)` when `j >= i`;
//! - `Left(j)` (a graceful leave) overrides everything at `j >= i`, including `Dead(j)`;
//! - `Alive(j)` with `j > i` revives a `Dead(i)` or `Left(i)` member (a rejoin).
//!
//! Because this is a total order and every node keeps the maximum it has seen, the views
//! converge whatever the order of delivery (a join-semilattice).

use std::sync::Arc;
use std::time::Instant;

/// The state of a member as seen by the local node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberState {
    /// Answering probes, or not yet suspected.
    Alive,
    /// Failed a probe; declared dead unless it refutes before the suspicion timeout.
    Suspect,
    /// Did not refute in time (SWIM's *confirm*); kept for `gossip_to_the_dead_time`, then reaped.
    Dead,
    /// Left gracefully; kept for `gossip_to_the_dead_time`, then reaped.
    Left,
}

impl MemberState {
    /// Rank of the state among claims with the same incarnation.
    pub fn rank(self) -> u8 {
        match self {
            MemberState::Alive => 0,
            MemberState::Suspect => 1,
            MemberState::Dead => 2,
            MemberState::Left => 3,
        }
    }

    /// Whether the member is still taking part (alive or suspect).
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }
}

/// Whether the claim `(new_incarnation, new_state)` replaces `(old_incarnation, old_state)`
/// under SWIM precedence (see the module docs). Equal claims do not replace each other.
pub fn supersedes(
    new_incarnation: u64,
    new_state: MemberState,
    old_incarnation: u64,
    old_state: MemberState,
) -> bool {
    (new_incarnation, new_state.rank()) > (old_incarnation, old_state.rank())
}

/// What the local node knows about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<P> {
    pub(crate) id: P,
    pub(crate) incarnation: u64,
    pub(crate) state: MemberState,
    /// Shared, not copied: a view of N members holds N of these, and a cluster of N views holds
    /// N² of them, most with the same bytes (a driver that hands the same `Arc` to every view,
    /// as the simulator's converged start does, stores each member's metadata once). An
    /// unchanged claim keeps the `Arc` it has.
    pub(crate) meta: Arc<[u8]>,
    /// The member's signature of its current `Alive` or `Left` claim, relayed with every copy
    /// of it; `None` while it is suspect or dead (those claims are not its own) and with
    /// [`NoAuth`](crate::NoAuth), so that an unsigned entry costs no allocation.
    pub(crate) signature: Option<Arc<[u8]>>,
    pub(crate) state_changed: Instant,
}

impl<P> Member<P> {
    /// The member's identity.
    pub fn id(&self) -> &P {
        &self.id
    }

    /// The highest incarnation seen for this member.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The member's current state.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// The member's opaque metadata (the node stores its multiaddrs there).
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// The member's own signature of its current `Alive` or `Left` claim (see
    /// [`Authenticator`](super::Authenticator)); empty while it is suspect or dead, and with
    /// [`NoAuth`](crate::NoAuth).
    pub fn signature(&self) -> &[u8] {
        self.signature.as_deref().unwrap_or_default()
    }

    /// When the state last changed, as seen locally.
    pub fn state_changed(&self) -> Instant {
        self.state_changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATES: [MemberState; 4] = [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Dead,
        MemberState::Left,
    ];

    #[test]
    fn suspect_overrides_alive_with_the_same_incarnation_but_not_the_reverse() {
        assert!(supersedes(3, MemberState::Suspect, 3, MemberState::Alive));
        assert!(!supersedes(3, MemberState::Alive, 3, MemberState::Suspect));
    }

    #[test]
    fn only_a_higher_incarnation_alive_clears_suspicion_or_death() {
        assert!(supersedes(4, MemberState::Alive, 3, MemberState::Suspect));
        assert!(supersedes(4, MemberState::Alive, 3, MemberState::Dead));
        assert!(!supersedes(3, MemberState::Alive, 3, MemberState::Dead));
        assert!(!supersedes(2, MemberState::Alive, 3, MemberState::Alive));
    }

    #[test]
    fn dead_overrides_alive_and_suspect_at_equal_or_higher_incarnation() {
        assert!(supersedes(3, MemberState::Dead, 3, MemberState::Suspect));
        assert!(supersedes(3, MemberState::Dead, 3, MemberState::Alive));
        assert!(!supersedes(2, MemberState::Dead, 3, MemberState::Alive));
        assert!(supersedes(3, MemberState::Left, 3, MemberState::Dead));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn applying_claims_in_any_order_converges_to_the_same_claim(
            claims in proptest::collection::vec((0u64..5, 0usize..4), 1..12),
            seed in any::<u64>(),
        ) {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            let fold = |claims: &[(u64, usize)]| {
                let mut cur = (claims[0].0, STATES[claims[0].1]);
                for &(inc, s) in &claims[1..] {
                    if supersedes(inc, STATES[s], cur.0, cur.1) {
                        cur = (inc, STATES[s]);
                    }
                }
                cur
            };
            let mut shuffled = claims.clone();
            shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            prop_assert_eq!(fold(&claims), fold(&shuffled));
        }
    }
}
