//! Protocol parameters of the SWIM membership, with memberlist's LAN profile as defaults.

use std::time::Duration;

/// Parameters of a [`Membership`](super::Membership) state machine.
///
/// [`MembershipConfig::default`] (= [`MembershipConfig::lan`]) is HashiCorp memberlist's
/// `DefaultLANConfig`: probe every 1 s with a 500 ms timeout, indirect checks (5 here, 3 in
/// memberlist) and a fallback direct ping, suspicion
/// multiplier 4 (max ×6), retransmit multiplier 4, gossip every 200 ms to 3 nodes, push-pull every
/// 30 s, dead members gossiped to and kept for 30 s, awareness multiplier up to 8, 1400-byte
/// packets. The bounds (`max_*`) are bavard's own and protect the state machine from hostile input;
/// so is the ring monitor (`ring_probe_every`: every other period probes a ring neighbour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Length of one protocol period: one member is probed per period (scaled by the local
    /// health multiplier, Lifeguard §4.1).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking `indirect_checks` others to ping-req
    /// (scaled by the local health multiplier).
    pub probe_timeout: Duration,
    /// Number of members asked to probe the target indirectly (SWIM's `k`). bavard's default
    /// is 5, memberlist's 3: a live member is falsely suspected only when every path to it
    /// fails, and each path through a relay takes four messages, so at 10% loss a relayed probe
    /// fails 34% of the time and three of them all fail 4.1% of the time, five 0.48%. Each false
    /// suspicion costs every member two updates to relay (the suspicion and its refutation),
    /// and their number grows with the cluster: at 10,000 members with 10% loss, three relays
    /// let the false suspicions outgrow what the gossip can carry (17 live members declared
    /// dead in `cargo xtask sim membership --nodes 10000 --kill 100 --loss 0.1 --seed 7`),
    /// five do not. The two extra ping-reqs are sent only when the direct and the fallback
    /// pings both went unanswered.
    pub indirect_checks: usize,
    /// With the indirect probes, ping the target directly once more (memberlist's fallback
    /// ping, which it sends over TCP: `DisableTcpPings` is off by default). A lost ping or ack
    /// is the common cause of a failed direct probe on a lossy network, and a second try cuts
    /// the false suspicions, each of which every member has to relay twice (the suspicion and
    /// its refutation), by about the loss of one round trip (5× at 10% loss).
    pub fallback_ping: bool,
    /// Every `ring_probe_every`-th protocol period probes a ring neighbour (the next live member
    /// in id order, then the previous one, alternately) instead of the next member of the
    /// round-robin list; 0 turns this off (pure SWIM). Not in memberlist. SWIM's randomised
    /// round-robin bounds the time until *each* member probes a crashed one, but the time until
    /// *anyone* does is exponential (each period nobody probes a given member with probability
    /// about 1/e), so with ten crashes one of them now and then goes unprobed for 5–7 s, a delay
    /// that adds to the 12 s suspicion timeout. With the ring every member is also probed by both
    /// neighbours, each every `2 · ring_probe_every` periods, at no extra message cost (the
    /// round-robin runs that much slower), and the two neighbours are two independent
    /// confirmations for Lifeguard's dynamic suspicion. Rapid (Suresh et al., USENIX ATC 2018)
    /// monitors members along rings in the same way.
    pub ring_probe_every: u32,
    /// Suspicion timeout multiplier: the minimum suspicion timeout is
    /// `suspicion_mult · max(1, log10 N) · probe_interval`.
    pub suspicion_mult: u32,
    /// The maximum suspicion timeout is `suspicion_max_timeout_mult ×` the minimum
    /// (Lifeguard dynamic suspicion starts there and falls with confirmations).
    pub suspicion_max_timeout_mult: u32,
    /// Each update is retransmitted `retransmit_mult · ceil(log10(N + 1))` times.
    pub retransmit_mult: u32,
    /// Period of the piggyback-only gossip messages (memberlist's `GossipInterval`).
    pub gossip_interval: Duration,
    /// Number of random members each gossip round sends to (memberlist's `GossipNodes`).
    pub gossip_nodes: usize,
    /// Period of the full-state push-pull exchange with one random member (scaled up above 32
    /// members as memberlist does).
    pub push_pull_interval: Duration,
    /// How long dead members are still gossiped to (and kept) before they are reaped.
    pub gossip_to_the_dead_time: Duration,
    /// Upper bound of the Lifeguard local health multiplier: timeouts are scaled by at most
    /// this factor.
    pub awareness_max_multiplier: u32,
    /// Delay before a join request is retried with the next seed.
    pub join_retry_interval: Duration,
    /// Byte budget of one datagram-style message (ping, ack, ping-req, gossip): piggybacked
    /// updates are added while the estimated size stays under it.
    pub max_packet_size: usize,
    /// Maximum number of updates piggybacked on one outgoing message.
    pub max_piggyback_updates: usize,
    /// Maximum number of updates accepted in one incoming piggyback; a message carrying more is
    /// rejected whole.
    pub max_updates_per_message: usize,
    /// Maximum number of members (including the local node); a message that would grow the view
    /// beyond it is rejected whole.
    pub max_members: usize,
    /// Maximum size of a member's metadata (`addr` payload).
    pub max_meta_len: usize,
    /// Maximum size of the signature carried by an update (an ed25519 signature is 64 bytes); a
    /// message carrying a larger one is rejected whole. Bounds what a member entry may hold.
    pub max_signature_len: usize,
    /// A `Suspect` or `Dead` claim whose incarnation is more than this above the incarnation
    /// the local node knows for the member (its own, for claims about itself) is ignored and
    /// counted in [`RejectedUpdates::incarnation_jump`](super::RejectedUpdates). Only the
    /// member itself raises its incarnation, one step per refutation or metadata change, so an
    /// honest claim is at most a few steps ahead of what we know; without the bound one hostile
    /// member could suspect another at `u64::MAX` and leave it nothing to refute with. With
    /// 65,536 (`1 << 16`) a hostile member needs 2^48 suspicions to exhaust a victim's
    /// incarnations, while a member would need 65,536 refutations we missed to be wrongly
    /// ignored. Claims about members not known yet are not bounded because they are not
    /// applied at all (suspicions and deaths of members never seen alive are ignored). A
    /// member restarting with a fresh incarnation more than this below its previous life's
    /// learns the old one from its own signed `Alive` or `Left` (not bounded); if the cluster
    /// only remembers it as dead, it is taken back as new once that entry is reaped
    /// (`gossip_to_the_dead_time`).
    pub max_incarnation_jump: u64,
    /// Maximum number of updates waiting in the broadcast queue; the most retransmitted are
    /// dropped first.
    pub max_queued_updates: usize,
    /// Maximum number of indirect probes relayed for others at once; further ping-reqs are
    /// dropped.
    pub max_pending_relays: usize,
}

impl MembershipConfig {
    /// memberlist's LAN profile (`DefaultLANConfig`) with bavard's bounds.
    pub fn lan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 5,
            fallback_ping: true,
            ring_probe_every: 2,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(30),
            gossip_to_the_dead_time: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            join_retry_interval: Duration::from_secs(2),
            max_packet_size: 1400,
            max_piggyback_updates: 24,
            max_updates_per_message: 64,
            max_members: 65_536,
            max_meta_len: 512,
            max_signature_len: 256,
            max_incarnation_jump: 1 << 16,
            max_queued_updates: 4096,
            max_pending_relays: 256,
        }
    }
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self::lan()
    }
}
