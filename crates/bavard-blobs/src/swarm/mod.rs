//! The swarm scheduler: which blocks of one blob to ask which provider for, and when to
//! give up on a provider.
//!
//! # The algorithm
//!
//! It is BitTorrent's piece picking (Cohen, *Incentives Build Robustness in BitTorrent*,
//! 2003) for one blob whose blocks are verified one by one:
//!
//! - **Pipelining.** Each provider has several requests in flight (bounded by
//!   [`FetchConfig::max_requests_per_provider`]), so its link never idles while a response
//!   travels back. A new request goes out as soon as one completes: a provider gets work at
//!   the pace it finishes it, so faster providers get more.
//! - **Requests sized by rate.** A provider's rate is measured from its verified blocks
//!   (a moving average over its busy time), and requests are sized so that those in flight
//!   to a provider take about [`FetchConfig::target_queue_duration`] at that rate: the
//!   bytes in flight to each provider are proportional to its rate, enough to cover the
//!   round trip, and a slow provider holds little hostage.
//!   A new provider gets a single small request as a probe.
//! - **Order.** Rarest-first does not apply to a single blob held whole by every provider,
//!   so new requests follow a priority range if the reader set one (the HTTP `Range` being
//!   streamed), then either the blob's order or, by default, that order rotated to a
//!   starting block drawn from the seed ([`PieceOrder::Spread`]), which spreads concurrent
//!   leechers over the blob so that they can serve each other. Providers that hold only
//!   part of the blob (a have-bitfield) are asked only for what they hold.
//! - **Endgame.** When every missing block has been requested, an idle provider is given a
//!   copy of the remaining part of the outstanding request that has gone longest without
//!   progress (at most [`FetchConfig::endgame_copies`] providers per range); whichever copy
//!   delivers first wins and the others are cancelled once all their blocks are verified.
//!   This is what keeps one slow provider from holding up the last percent.
//! - **Dropping providers.** A provider that sends one block that fails verification is
//!   dropped at once and banned from this fetch (a wrong block is never an accident with a
//!   hash tree: it is a broken or hostile peer). One that has requests in flight and
//!   delivers nothing for [`FetchConfig::stall_timeout`] is dropped as stalled; one whose
//!   stream fails is dropped as failed. Either way its unfinished ranges are requested
//!   again from the others.
//!
//! # Driving protocol
//!
//! [`Fetch`] does no IO and reads no clock; the node owns the streams, the store and the
//! timer. Its methods come in four kinds:
//!
//! - **inputs**: [`handle_block`](Fetch::handle_block) for every block verified by the
//!   request's [`RangeDecoder`](crate::encoding::RangeDecoder) (after the store wrote it),
//!   [`handle_bad_data`](Fetch::handle_bad_data) when a decoder reports a bad block or
//!   parent, [`handle_request_failed`](Fetch::handle_request_failed) when a request's
//!   stream fails or ends early, [`handle_not_available`](Fetch::handle_not_available) when
//!   a provider answers that it lacks the range, [`handle_timeout`](Fetch::handle_timeout)
//!   at the deadline given by [`poll_timeout`](Fetch::poll_timeout) (early or repeated calls
//!   are harmless);
//! - **commands**: [`add_provider`](Fetch::add_provider) as the DHT finds providers (and
//!   their have-answers come in), [`remove_provider`](Fetch::remove_provider) when one
//!   disconnects, [`set_priority`](Fetch::set_priority);
//! - **outputs**: after any input or command, drain [`poll_action`](Fetch::poll_action)
//!   (open a request stream, cancel one, forget a provider, look for more providers, or
//!   finish), then re-arm the timer with [`poll_timeout`](Fetch::poll_timeout);
//! - **getters**: [`verified_bytes`](Fetch::verified_bytes), [`providers`](Fetch::providers)
//!   (bytes from each, for the status endpoint), [`is_complete`](Fetch::is_complete), …
//!
//! Every `now` must be monotonic. Randomness (the spread start and the order among
//! providers of equal rate) comes only from the `R` given to [`Fetch::new`], so a seeded
//! run replays exactly.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bavard_blobs::swarm::{Action, Availability, Fetch, FetchConfig};
//! use bavard_blobs::BlockRanges;
//! use rand::SeedableRng;
//!
//! let now = Instant::now();
//! let size = 40 * 16 * 1024;
//! let rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let mut fetch: Fetch<u64, _> = Fetch::new(size, &BlockRanges::new(), FetchConfig::default(), rng);
//! fetch.add_provider(1, Availability::All, now);
//! let Some(Action::Request { id, provider, blocks }) = fetch.poll_action() else { panic!() };
//! assert_eq!(provider, 1);
//! // ... send the request, decode the response; for each verified block:
//! for block in blocks {
//!     fetch.handle_block(&provider, id, block, now + Duration::from_millis(200));
//! }
//! assert!(fetch.verified_bytes() > 0);
//! ```

mod config;
mod throughput;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::ops::Range;
use std::time::Instant;

use rand::Rng;

pub use config::{FetchConfig, PieceOrder};

use self::throughput::Throughput;
use crate::bitfield::Bitfield;
use crate::ranges::{BLOCK_SIZE, BlockRanges, block_bytes, block_count};

/// Names one request of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

/// Which blocks a provider can serve (its answer to a have query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// The whole blob (a complete provider; also what a provider record implies until a
    /// have answer says otherwise).
    All,
    /// Only these blocks (a provider still fetching).
    Blocks(BlockRanges),
}

impl Availability {
    fn has(&self, block: u64) -> bool {
        match self {
            Availability::All => true,
            Availability::Blocks(ranges) => ranges.contains(block),
        }
    }
}

/// Why the fetch stopped using a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It sent a block or tree node that failed verification. Banned from this fetch.
    BadData,
    /// It had requests in flight and delivered nothing for the stall timeout.
    Stalled,
    /// A request's stream failed or ended early.
    Failed,
}

/// What the node should do next, from [`Fetch::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Ask `provider` for `blocks` of the blob, reporting what comes back under `id`.
    Request {
        /// The request's name in later calls.
        id: RequestId,
        /// Whom to ask.
        provider: P,
        /// The blocks (one contiguous range).
        blocks: Range<u64>,
    },
    /// Stop the request `id` (its blocks arrived from elsewhere, or its provider was
    /// dropped); blocks it still delivers are harmless.
    Cancel {
        /// The request.
        id: RequestId,
        /// Its provider.
        provider: P,
    },
    /// The fetch no longer uses `provider` (its requests were cancelled just before).
    DropProvider {
        /// The provider.
        provider: P,
        /// Why.
        reason: DropReason,
    },
    /// No provider is left and blocks are missing: look for more (DHT providers query).
    NeedProviders,
    /// Every block is verified. Nothing follows.
    Complete,
}

/// A provider's part in the fetch, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderStatus {
    /// New verified bytes it delivered (duplicates not counted).
    pub bytes: u64,
    /// Its measured rate in bytes per second, while it is in the fetch.
    pub rate: Option<f64>,
    /// Its requests in flight.
    pub in_flight: usize,
    /// Whether it is still in the fetch (false once dropped or removed).
    pub active: bool,
}

#[derive(Debug)]
struct Provider {
    have: Availability,
    throughput: Throughput,
    in_flight: usize,
    /// The last block delivered, or when it last became busy: the stall clock.
    last_progress: Instant,
    /// Breaks ties between providers of equal rate; drawn from the RNG.
    tiebreak: u64,
}

#[derive(Debug, Clone)]
struct Request<P> {
    provider: P,
    blocks: Range<u64>,
    /// The first block not delivered yet: responses come in block order.
    next: u64,
}

/// The scheduler of one blob's fetch. See the [module docs](self) for the algorithm and the
/// driving protocol.
#[derive(Debug)]
pub struct Fetch<P, R> {
    config: FetchConfig,
    rng: R,
    size: u64,
    blocks: u64,
    verified: Bitfield,
    /// Blocks covered by at least one outstanding request.
    requested: Bitfield,
    /// Blocks neither verified nor requested.
    free: u64,
    /// First block of the scan order.
    start: u64,
    /// Scan position (in scan order) before which no block is free.
    cursor: u64,
    priority: Option<Range<u64>>,
    providers: BTreeMap<P, Provider>,
    banned: BTreeSet<P>,
    requests: BTreeMap<RequestId, Request<P>>,
    contributed: BTreeMap<P, u64>,
    wasted: u64,
    next_id: u64,
    actions: VecDeque<Action<P>>,
    complete: bool,
    asked_for_providers: bool,
}

impl<P, R> Fetch<P, R>
where
    P: Clone + Ord + Debug,
    R: Rng,
{
    /// A fetch of a blob of `size` bytes (proven: see
    /// [`verify_size_proof`](crate::encoding::verify_size_proof)) of which `verified` blocks
    /// are already in the store (a resumed fetch).
    pub fn new(size: u64, verified: &BlockRanges, config: FetchConfig, mut rng: R) -> Self {
        let blocks = block_count(size);
        let mut done = Bitfield::new(blocks);
        for block in verified.iter().flatten() {
            done.set(block);
        }
        let start = match config.order {
            PieceOrder::Sequential => 0,
            PieceOrder::Spread => {
                let align = config.max_request_blocks.max(1);
                rng.random_range(0..blocks) / align * align
            }
        };
        let free = blocks - done.count_ones();
        let mut fetch = Fetch {
            config,
            rng,
            size,
            blocks,
            verified: done,
            requested: Bitfield::new(blocks),
            free,
            start,
            cursor: 0,
            priority: None,
            providers: BTreeMap::new(),
            banned: BTreeSet::new(),
            requests: BTreeMap::new(),
            contributed: BTreeMap::new(),
            wasted: 0,
            next_id: 0,
            actions: VecDeque::new(),
            complete: false,
            asked_for_providers: false,
        };
        fetch.check_complete();
        fetch
    }

    // ----- getters -----

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether every block is verified.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Bytes verified so far (including those the fetch started with).
    pub fn verified_bytes(&self) -> u64 {
        self.verified.to_ranges().byte_len(self.size)
    }

    /// Blocks verified so far.
    pub fn verified(&self) -> BlockRanges {
        self.verified.to_ranges()
    }

    /// Bytes received twice (endgame duplicates and late blocks of cancelled requests).
    pub fn wasted_bytes(&self) -> u64 {
        self.wasted
    }

    /// Every provider that took part, with the bytes it delivered; dropped ones included.
    pub fn providers(&self) -> impl Iterator<Item = (&P, ProviderStatus)> + '_ {
        let mut all: BTreeMap<&P, ProviderStatus> = BTreeMap::new();
        for (p, bytes) in &self.contributed {
            all.insert(
                p,
                ProviderStatus {
                    bytes: *bytes,
                    rate: None,
                    in_flight: 0,
                    active: false,
                },
            );
        }
        for (p, provider) in &self.providers {
            let status = all.entry(p).or_insert(ProviderStatus {
                bytes: 0,
                rate: None,
                in_flight: 0,
                active: true,
            });
            status.rate = provider.throughput.rate();
            status.in_flight = provider.in_flight;
            status.active = true;
        }
        all.into_iter()
    }

    /// Whether `provider` was banned from this fetch for bad data.
    pub fn is_banned(&self, provider: &P) -> bool {
        self.banned.contains(provider)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    // ----- outputs -----

    /// The next thing to do, if any. Drain after every input or command.
    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next: the earliest
    /// moment a busy provider would count as stalled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.providers
            .values()
            .filter(|p| p.in_flight > 0)
            .map(|p| p.last_progress + self.config.stall_timeout)
            .min()
    }

    // ----- commands -----

    /// Adds a provider, or updates what it holds. Ignored (returns false) for a provider
    /// banned from this fetch, and once the fetch is complete.
    pub fn add_provider(&mut self, provider: P, have: Availability, now: Instant) -> bool {
        if self.banned.contains(&provider) || self.complete {
            return false;
        }
        match self.providers.get_mut(&provider) {
            Some(existing) => existing.have = have,
            None => {
                let tiebreak = self.rng.random();
                self.providers.insert(
                    provider,
                    Provider {
                        have,
                        throughput: Throughput::default(),
                        in_flight: 0,
                        last_progress: now,
                        tiebreak,
                    },
                );
            }
        }
        self.asked_for_providers = false;
        self.schedule(now);
        true
    }

    /// Forgets a provider that went away (disconnected, or the node gave up on it): its
    /// requests are forgotten without [`Action::Cancel`] and their blocks asked of others.
    pub fn remove_provider(&mut self, provider: &P, now: Instant) {
        if self.providers.contains_key(provider) {
            self.drop_provider(provider, None, now);
        }
    }

    /// Fetch blocks `blocks` before any other (a reader is waiting for them). Replaces the
    /// previous priority; `None` clears it.
    pub fn set_priority(&mut self, blocks: Option<Range<u64>>, now: Instant) {
        self.priority = blocks.map(|b| b.start.min(self.blocks)..b.end.min(self.blocks));
        self.schedule(now);
    }

    // ----- inputs -----

    /// Block `block` of request `id` from `provider` was verified (and stored).
    ///
    /// Late blocks of cancelled requests are fine: they count as verified if they are new.
    pub fn handle_block(&mut self, provider: &P, id: RequestId, block: u64, now: Instant) {
        if block >= self.blocks {
            return;
        }
        let bytes = {
            let range = block_bytes(self.size, block);
            range.end - range.start
        };
        if let Some(p) = self.providers.get_mut(provider) {
            p.throughput.record(bytes, now);
            p.last_progress = now;
        }
        let mut finished = false;
        let mut skipped = 0..0;
        if let Some(request) = self.requests.get_mut(&id)
            && request.provider == *provider
            && block >= request.next
        {
            // Responses come in block order; a block past `next` means the ones between
            // will not come from this request (a driver that skipped them).
            skipped = request.next..block;
            request.next = block + 1;
            finished = request.next >= request.blocks.end;
        }
        for b in skipped {
            self.release(b);
        }
        if finished {
            self.finish_request(id, now);
        }
        if self.verified.set(block) {
            if !self.requested.get(block) {
                // A late block of a request whose blocks were already handed back.
                self.free -= 1;
            }
            *self.contributed.entry(provider.clone()).or_default() += bytes;
            self.cancel_superseded(now);
        } else {
            self.wasted += bytes;
        }
        self.check_complete();
        self.schedule(now);
    }

    /// `provider` sent a block or tree node that failed verification: it is dropped and
    /// banned from this fetch, and its ranges are requested from others.
    pub fn handle_bad_data(&mut self, provider: &P, now: Instant) {
        self.banned.insert(provider.clone());
        if self.providers.contains_key(provider) {
            self.drop_provider(provider, Some(DropReason::BadData), now);
        }
    }

    /// Request `id`'s stream failed, or ended before its last block: its provider is
    /// dropped (not banned: the DHT may offer it again later).
    pub fn handle_request_failed(&mut self, id: RequestId, now: Instant) {
        if let Some(request) = self.requests.get(&id) {
            let provider = request.provider.clone();
            self.drop_provider(&provider, Some(DropReason::Failed), now);
        }
    }

    /// The provider of request `id` answered that it does not hold the range: it is no
    /// longer asked for those blocks, and the request's blocks go to others.
    pub fn handle_not_available(&mut self, id: RequestId, now: Instant) {
        let Some(request) = self.requests.get(&id).cloned() else {
            return;
        };
        if let Some(p) = self.providers.get_mut(&request.provider) {
            let mut holds = match &p.have {
                Availability::All => BlockRanges::from_range(0..self.blocks),
                Availability::Blocks(ranges) => ranges.clone(),
            };
            holds = holds
                .iter()
                .flat_map(|r| {
                    [
                        r.start..r.end.min(request.blocks.start),
                        r.start.max(request.blocks.end)..r.end,
                    ]
                })
                .collect();
            p.have = Availability::Blocks(holds);
        }
        self.finish_request(id, now);
        self.schedule(now);
    }

    /// Drops providers that stalled. Harmless to call at any time.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stalled: Vec<P> = self
            .providers
            .iter()
            .filter(|(_, p)| p.in_flight > 0 && now >= p.last_progress + self.config.stall_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for provider in stalled {
            self.drop_provider(&provider, Some(DropReason::Stalled), now);
        }
    }

    // ----- internals -----

    /// Removes a provider and its requests; `reason` `None` is a silent removal.
    fn drop_provider(&mut self, provider: &P, reason: Option<DropReason>, now: Instant) {
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.provider == *provider)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.finish_request(id, now);
            if reason.is_some() {
                self.actions.push_back(Action::Cancel {
                    id,
                    provider: provider.clone(),
                });
            }
        }
        self.providers.remove(provider);
        if let Some(reason) = reason {
            self.actions.push_back(Action::DropProvider {
                provider: provider.clone(),
                reason,
            });
        }
        self.schedule(now);
    }

    /// Removes a request (done, cancelled or failed) and frees its blocks that no other
    /// request covers and that are not verified.
    fn finish_request(&mut self, id: RequestId, now: Instant) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        if let Some(p) = self.providers.get_mut(&request.provider) {
            p.in_flight -= 1;
            if p.in_flight == 0 {
                p.throughput.stop(now);
                p.last_progress = now;
            }
        }
        for block in request.next..request.blocks.end {
            self.release(block);
        }
    }

    /// Makes `block` free again unless it is verified or another request still covers it.
    fn release(&mut self, block: u64) {
        if self.verified.get(block) || self.covered_elsewhere(block) {
            return;
        }
        if self.requested.clear(block) {
            self.free += 1;
            self.cursor = self.cursor.min(self.position(block));
        }
    }

    fn covered_elsewhere(&self, block: u64) -> bool {
        self.requests
            .values()
            .any(|r| r.next <= block && block < r.blocks.end)
    }

    /// Cancels requests whose remaining blocks all arrived from elsewhere.
    fn cancel_superseded(&mut self, now: Instant) {
        let done: Vec<(RequestId, P)> = self
            .requests
            .iter()
            .filter(|(_, r)| (r.next..r.blocks.end).all(|b| self.verified.get(b)))
            .map(|(id, r)| (*id, r.provider.clone()))
            .collect();
        for (id, provider) in done {
            // Nothing to free: all its blocks are verified. Providers' clocks are not
            // touched: the cancellation is not their doing.
            if let Some(request) = self.requests.remove(&id)
                && let Some(p) = self.providers.get_mut(&request.provider)
            {
                p.in_flight -= 1;
                if p.in_flight == 0 {
                    p.throughput.stop(now);
                }
            }
            self.actions.push_back(Action::Cancel { id, provider });
        }
    }

    fn check_complete(&mut self) {
        if self.complete || self.verified.count_ones() < self.blocks {
            return;
        }
        self.complete = true;
        let outstanding: Vec<(RequestId, P)> = self
            .requests
            .iter()
            .map(|(id, r)| (*id, r.provider.clone()))
            .collect();
        self.requests.clear();
        for (id, provider) in outstanding {
            self.actions.push_back(Action::Cancel { id, provider });
        }
        for p in self.providers.values_mut() {
            p.in_flight = 0;
        }
        self.actions.push_back(Action::Complete);
    }

    fn position(&self, block: u64) -> u64 {
        (block + self.blocks - self.start) % self.blocks
    }

    fn block_at(&self, position: u64) -> u64 {
        (position + self.start) % self.blocks
    }

    fn is_free(&self, block: u64) -> bool {
        !self.verified.get(block) && !self.requested.get(block)
    }

    /// How many requests a provider may have in flight.
    fn capacity(&self, p: &Provider) -> usize {
        if p.throughput.rate().is_some() {
            self.config.max_requests_per_provider.max(1)
        } else {
            1
        }
    }

    /// How many blocks to ask a provider for at once.
    fn request_len(&self, p: &Provider) -> u64 {
        let min = self.config.min_request_blocks.max(1);
        let max = self.config.max_request_blocks.max(min);
        match p.throughput.rate() {
            None => min,
            Some(rate) => {
                // The requests in flight together take about the target queue time.
                let per_request = self.config.target_queue_duration.as_secs_f64()
                    / self.config.max_requests_per_provider.max(1) as f64;
                let blocks = rate * per_request / BLOCK_SIZE as f64;
                (blocks as u64).clamp(min, max)
            }
        }
    }

    /// Providers in the order they are served: fastest first, unmeasured last.
    fn provider_order(&self) -> Vec<P> {
        let mut order: Vec<(&P, &Provider)> = self.providers.iter().collect();
        order.sort_by(|a, b| {
            let rate = |p: &Provider| p.throughput.rate().unwrap_or(-1.0);
            rate(b.1)
                .total_cmp(&rate(a.1))
                .then(a.1.tiebreak.cmp(&b.1.tiebreak))
                .then(a.0.cmp(b.0))
        });
        order.into_iter().map(|(p, _)| p.clone()).collect()
    }

    /// The next free range of at most `len` blocks that `have` holds.
    fn pick(&mut self, have: &Availability, len: u64) -> Option<Range<u64>> {
        let extend = |this: &Self, first: u64, limit: u64| {
            let mut end = first + 1;
            while end < limit && end - first < len && this.is_free(end) && have.has(end) {
                end += 1;
            }
            first..end
        };
        if let Some(priority) = self.priority.clone()
            && let Some(first) = priority.clone().find(|&b| self.is_free(b) && have.has(b))
        {
            return Some(extend(self, first, priority.end));
        }
        while self.cursor < self.blocks && !self.is_free(self.block_at(self.cursor)) {
            self.cursor += 1;
        }
        let first = match have {
            Availability::All => (self.cursor..self.blocks)
                .map(|pos| self.block_at(pos))
                .find(|&b| self.is_free(b)),
            // The same first block in scan order as testing every position, but only the
            // provider's ranges are visited, a word of the bitfields at a time: a partial
            // provider with nothing new would otherwise cost a scan of the whole blob at
            // every input.
            Availability::Blocks(ranges) => self.scan_segments().into_iter().find_map(|seg| {
                ranges.iter().find_map(|r| {
                    let (lo, hi) = (r.start.max(seg.start), r.end.min(seg.end));
                    (lo < hi).then(|| self.first_free_in(lo..hi)).flatten()
                })
            }),
        };
        first.map(|first| extend(self, first, self.blocks))
    }

    /// The blocks at positions `cursor..blocks` of the scan order, as two ascending ranges
    /// (the second may be empty), in scan order.
    fn scan_segments(&self) -> [Range<u64>; 2] {
        let s0 = self.start + self.cursor;
        if s0 < self.blocks {
            [s0..self.blocks, 0..self.start]
        } else {
            [s0 - self.blocks..self.start, 0..0]
        }
    }

    /// The first free block of `range`, skipping 64 blocks at a time where none is free.
    fn first_free_in(&self, range: Range<u64>) -> Option<u64> {
        let (verified, requested) = (self.verified.as_bytes(), self.requested.as_bytes());
        let word = |bits: &[u8], at: usize| {
            u64::from_le_bytes(bits[at..at + 8].try_into().expect("8 bytes"))
        };
        let mut b = range.start;
        while b < range.end {
            if b.is_multiple_of(64) && b + 64 <= range.end {
                let at = (b / 8) as usize;
                if word(verified, at) | word(requested, at) == u64::MAX {
                    b += 64;
                    continue;
                }
            }
            if self.is_free(b) {
                return Some(b);
            }
            b += 1;
        }
        None
    }

    /// In endgame: the remaining part of the outstanding request of another provider that
    /// `provider` could duplicate, the one longest without progress first.
    fn pick_duplicate(&self, provider: &P, have: &Availability) -> Option<Range<u64>> {
        let copies = |block: u64| {
            self.requests
                .values()
                .filter(|r| r.next <= block && block < r.blocks.end)
                .count()
        };
        self.requests
            .values()
            .filter(|r| r.provider != *provider)
            .filter_map(|r| {
                let first = (r.next..r.blocks.end).find(|&b| !self.verified.get(b))?;
                let remaining = first..r.blocks.end;
                let mine = self.requests.values().any(|m| {
                    m.provider == *provider && m.blocks.start <= first && first < m.blocks.end
                });
                let holds = remaining.clone().all(|b| have.has(b));
                (!mine && holds && copies(first) < self.config.endgame_copies.max(1)).then(|| {
                    (
                        self.providers.get(&r.provider).map(|p| p.last_progress),
                        remaining,
                    )
                })
            })
            .min_by(|a, b| a.0.cmp(&b.0).then(a.1.start.cmp(&b.1.start)))
            .map(|(_, remaining)| remaining)
    }

    /// Hands out requests to every provider with room, then endgame duplicates.
    fn schedule(&mut self, now: Instant) {
        if self.complete {
            return;
        }
        if self.providers.is_empty() {
            if !self.asked_for_providers {
                self.asked_for_providers = true;
                self.actions.push_back(Action::NeedProviders);
            }
            return;
        }
        for provider in self.provider_order() {
            while let Some(p) = self.providers.get(&provider) {
                if p.in_flight >= self.capacity(p) {
                    break;
                }
                let len = self.request_len(p);
                let have = p.have.clone();
                let blocks = if self.free > 0 {
                    self.pick(&have, len)
                } else {
                    None
                };
                let blocks = match blocks {
                    Some(blocks) => blocks,
                    None if self.free == 0 => match self.pick_duplicate(&provider, &have) {
                        Some(blocks) => blocks,
                        None => break,
                    },
                    None => break,
                };
                self.send(provider.clone(), blocks, now);
            }
        }
    }

    fn send(&mut self, provider: P, blocks: Range<u64>, now: Instant) {
        for block in blocks.clone() {
            if !self.verified.get(block) && self.requested.set(block) {
                self.free -= 1;
            }
        }
        if let Some(p) = self.providers.get_mut(&provider) {
            if p.in_flight == 0 {
                p.throughput.start(now);
                p.last_progress = now;
            }
            p.in_flight += 1;
        }
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.requests.insert(
            id,
            Request {
                provider: provider.clone(),
                blocks: blocks.clone(),
                next: blocks.start,
            },
        );
        self.actions.push_back(Action::Request {
            id,
            provider,
            blocks,
        });
    }
}

#[cfg(test)]
mod tests;
