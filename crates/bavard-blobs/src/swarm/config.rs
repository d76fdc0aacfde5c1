//! The scheduler's settings.

use std::time::Duration;

/// The order in which a fetch asks for the blocks nobody asked for yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceOrder {
    /// From the first block to the last: best for a reader streaming the blob as it
    /// arrives (an HTTP response), worst for a swarm of leechers that all start together,
    /// who then all hold the same prefix and have nothing to trade.
    Sequential,
    /// Sequential from a starting block drawn from the fetch's RNG (aligned to
    /// [`FetchConfig::max_request_blocks`]), wrapping around at the end: each leecher soon
    /// holds blocks the others lack, as rarest-first gives BitTorrent, while every request
    /// stays one contiguous range.
    Spread,
}

/// Settings of a [`Fetch`](super::Fetch). The defaults suit 16 KiB blocks over libp2p
/// streams on links from a few MB/s to a few hundred.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchConfig {
    /// Requests in flight to one provider once its rate is known (default 4): enough to
    /// keep its link busy while responses travel back, few enough that a provider which
    /// slows down holds little. A provider whose rate is not known yet gets one request,
    /// of [`min_request_blocks`](Self::min_request_blocks).
    pub max_requests_per_provider: usize,
    /// The fewest blocks in a request (default 4, 64 KiB).
    pub min_request_blocks: u64,
    /// The most blocks in a request (default 64, 1 MiB).
    pub max_request_blocks: u64,
    /// Requests are sized so that those in flight to a provider take about this long at its
    /// measured rate (default 1 s), within the bounds above: faster providers get bigger
    /// requests, so the bytes in flight to each are proportional to its rate (libtorrent
    /// sizes its request queues the same way), and a slow one holds little at the end.
    pub target_queue_duration: Duration,
    /// A provider with requests in flight that delivers no block for this long is dropped
    /// and its ranges go to others (default 10 s).
    pub stall_timeout: Duration,
    /// In endgame, how many providers may be asked for the same outstanding range at once
    /// (default 2: the original and one duplicate).
    pub endgame_copies: usize,
    /// The order of new requests (default [`PieceOrder::Spread`]); a priority range
    /// ([`Fetch::set_priority`](super::Fetch::set_priority)) always comes first.
    pub order: PieceOrder,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            max_requests_per_provider: 4,
            min_request_blocks: 4,
            max_request_blocks: 64,
            target_queue_duration: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(10),
            endgame_copies: 2,
            order: PieceOrder::Spread,
        }
    }
}
