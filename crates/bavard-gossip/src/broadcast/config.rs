//! Protocol parameters for HyParView, Plumtree and the multi-topic [`Broadcast`](super::Broadcast).
//!
//! Defaults follow the papers (HyParView: passive view 30, ARWL 6, PRWL 3, shuffles of 3 active +
//! 4 passive entries) and iroh-gossip where the papers leave a value open, except the active view:
//! 12 rather than the paper's 5 (see [`HyParViewConfig::active_view_capacity`]).

use std::time::Duration;

/// HyParView membership parameters (one overlay per topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyParViewConfig {
    /// Size of the active view (symmetric neighbours the broadcast runs over). The paper uses
    /// fanout + 1 = 5 (so does iroh-gossip); we use 12, gossipsub's `D_high`. Plumtree's tree is
    /// shared by every publisher, and its lazy links are what tree optimisation shortens paths
    /// with: more of them give a shallower tree and fewer grafts, for one small `IHave` per extra
    /// link and message. Measured (`cargo xtask sim gossip --nodes 1000 --messages 100 --seed 7`,
    /// random publishers): 5 → last delivery hop 20 (mean 16.0), RMR 0.22, latency p99 1.05 s,
    /// 5.5 frames per node and message; 8 → 15 (12.0), 0.11, 0.81 s, 8.2; 12 → 13 (9.9), 0.08,
    /// 0.72 s, 12.0. With half the nodes killed, 12 still delivers 100%.
    pub active_view_capacity: usize,
    /// Size of the passive view (backup peers used to repair the active view).
    pub passive_view_capacity: usize,
    /// Active random walk length (ARWL): hops a `ForwardJoin` travels.
    pub active_random_walk_length: u16,
    /// Passive random walk length (PRWL): the hop at which a `ForwardJoin` puts the newcomer in
    /// the passive view. Must be ≤ ARWL.
    pub passive_random_walk_length: u16,
    /// Hops a `Shuffle` travels before it is answered.
    pub shuffle_random_walk_length: u16,
    /// Active-view entries included in a shuffle.
    pub shuffle_active_count: usize,
    /// Passive-view entries included in a shuffle.
    pub shuffle_passive_count: usize,
    /// Period of the shuffle.
    pub shuffle_interval: Duration,
    /// Period of the repair check: if the active view is not full, ask passive peers (with low
    /// priority, so nobody evicts anyone) to fill it. The paper only repairs on failures; this
    /// also recovers from lost messages and rejected requests.
    pub repair_interval: Duration,
    /// How long to wait for a `NeighborReply` before treating the passive peer as dead.
    pub neighbor_request_timeout: Duration,
}

impl Default for HyParViewConfig {
    fn default() -> Self {
        Self {
            active_view_capacity: 12,
            passive_view_capacity: 30,
            active_random_walk_length: 6,
            passive_random_walk_length: 3,
            shuffle_random_walk_length: 6,
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            shuffle_interval: Duration::from_secs(60),
            repair_interval: Duration::from_secs(5),
            neighbor_request_timeout: Duration::from_secs(2),
        }
    }
}

/// Plumtree broadcast parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlumtreeConfig {
    /// `IHave` announcements to lazy peers are batched and flushed at this period.
    pub ihave_interval: Duration,
    /// After the first `IHave` for an unknown message, wait this long for the payload before
    /// grafting the announcer. The paper ties it to the overlay diameter: a tree shared by all
    /// publishers is about 10–13 hops deep at 100 nodes, so on 10–100 ms links the eager path
    /// often lags a lazy announcement by more than 80 ms (iroh-gossip's value), and every such
    /// graft costs two extra payloads (the resend and the late duplicate). Measured in our
    /// simulator (100 nodes, 10–100 ms links): 80 ms gives RMR ≈ 0.5, 250 ms ≈ 0.2, 400 ms ≈ 0.1.
    /// 250 ms trades a little recovery latency for a tree that stays a tree.
    pub graft_timeout_1: Duration,
    /// After a `Graft`, wait this long before grafting the next announcer (about one round trip,
    /// as the paper suggests).
    pub graft_timeout_2: Duration,
    /// Tree optimisation: when an `IHave` shows that the announcer would have delivered a message
    /// at least this many hops sooner than the current parent did (whether the announcement came
    /// before or after the payload), graft the announcer and prune the parent. 2 (iroh-gossip
    /// uses 7): the tree is shared by every publisher, so the paths that matter are those
    /// between two arbitrary nodes, and only a small gap keeps them short. Measured in our
    /// simulator (1,000 nodes, 100 messages from random publishers, active view 12, seeds 1–4
    /// and 7): threshold 3 gives a last delivery hop of 12–16 (RMR 0.06–0.12), 2 gives 13–14
    /// (mean 9.9–10.4, RMR 0.08–0.10), 1 gives 12–16 (RMR 0.06–0.10). With an active view of 5
    /// (seed 7, before new neighbours were told about recent messages): 4 → 21, 3 → 21, 2 → 19,
    /// 1 → 22.
    pub optimization_threshold: u16,
    /// How long delivered message ids (and cached payloads) are remembered.
    pub message_cache_ttl: Duration,
    /// Maximum number of remembered message ids; the oldest are forgotten first. A duplicate
    /// arriving after its id was forgotten would be delivered again, so keep this well above
    /// the number of messages per `message_cache_ttl`.
    pub seen_cache_capacity: usize,
    /// Maximum number of payloads kept to answer `Graft`s.
    pub payload_cache_capacity: usize,
    /// Maximum total bytes of payloads kept to answer `Graft`s.
    pub payload_cache_bytes: usize,
    /// Largest payload accepted from the application or the network. 64 KiB, as rust-libp2p
    /// gossipsub.
    pub max_message_size: usize,
    /// Largest publisher signature accepted from the network (an ed25519 signature is 64
    /// bytes); it is kept with the payload for grafts.
    pub max_signature_len: usize,
    /// Largest number of ids in one `IHave`; larger batches are split when sending and rejected
    /// when received.
    pub max_ihave_ids: usize,
    /// When a neighbour joins the active view, the ids of this many of the most recent cached
    /// messages are announced to it in `IHave`s, so that it grafts those it missed: messages
    /// published while two parts of the overlay were cut apart reach the other part once a link
    /// between them comes back (Plumtree alone never resends old messages). 0 turns it off.
    /// 256 (four `IHave` frames, ~10 KB): the link usually comes back seconds after the heal,
    /// when newer messages already fill the most recent slots; with 64, a 30 s partition at 5
    /// messages per second lost 22 of 357 deliveries in the partition scenario.
    pub announce_to_new_neighbors: usize,
    /// Largest number of announced-but-missing messages tracked at once; further announcements
    /// are ignored (the lazy path is best effort).
    pub max_missing: usize,
    /// Largest number of announcers remembered per missing message.
    pub max_announcers: usize,
}

impl Default for PlumtreeConfig {
    fn default() -> Self {
        Self {
            ihave_interval: Duration::from_millis(50),
            graft_timeout_1: Duration::from_millis(250),
            graft_timeout_2: Duration::from_millis(100),
            optimization_threshold: 2,
            message_cache_ttl: Duration::from_secs(120),
            seen_cache_capacity: 65_536,
            payload_cache_capacity: 4_096,
            payload_cache_bytes: 32 * 1024 * 1024,
            max_message_size: 64 * 1024,
            max_signature_len: 256,
            max_ihave_ids: 64,
            announce_to_new_neighbors: 256,
            max_missing: 4_096,
            max_announcers: 8,
        }
    }
}

/// Parameters of a [`Broadcast`](super::Broadcast) (all topics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastConfig {
    /// Membership parameters, shared by all topics.
    pub hyparview: HyParViewConfig,
    /// Broadcast parameters, shared by all topics.
    pub plumtree: PlumtreeConfig,
    /// Limits that bound memory under floods.
    pub limits: Limits,
}

/// Bounds on the state a [`Broadcast`](super::Broadcast) keeps, so floods cost bounded memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of topics joined at once.
    pub max_topics: usize,
    /// When a topic has this many messages waiting in `poll_transmit`, new inputs for it are
    /// rejected (state unchanged) until the driver drains the queue. A single input may push
    /// the queue a little past the bound (at most one message per neighbour plus one per
    /// `IHave` batch).
    pub max_queued_transmits: usize,
    /// Same for application events waiting in `poll_event`.
    pub max_queued_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_topics: 64,
            max_queued_transmits: 4_096,
            max_queued_events: 4_096,
        }
    }
}
