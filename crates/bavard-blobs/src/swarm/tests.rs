//! The scheduler against simulated providers in virtual time: each provider serves its
//! requests in order, one block at a time, at its own rate after a fixed latency.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::ranges::BLOCK_SIZE;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Good,
    /// Sends a corrupt block as its `n`th delivery (counting from 0).
    CorruptAt(u64),
    /// Delivers `n` blocks, then nothing, ever.
    StallAfter(u64),
}

#[derive(Debug)]
struct Model {
    rate: f64,
    latency: Duration,
    behaviour: Behaviour,
    /// (request, next block, end, arrives at the provider)
    queue: VecDeque<(RequestId, u64, u64, Instant)>,
    free_at: Instant,
    delivered: u64,
    dead: bool,
}

impl Model {
    fn new(rate_mib: f64, behaviour: Behaviour, start: Instant) -> Self {
        Model {
            rate: rate_mib * MIB,
            latency: Duration::from_millis(20),
            behaviour,
            queue: VecDeque::new(),
            free_at: start,
            delivered: 0,
            dead: false,
        }
    }

    /// When the head request's next block is done, if anything is to be delivered.
    fn next_done(&self, size: u64) -> Option<Instant> {
        if self.dead {
            return None;
        }
        if let Behaviour::StallAfter(n) = self.behaviour
            && self.delivered >= n
        {
            return None;
        }
        let &(_, block, _, arrives) = self.queue.front()?;
        let bytes = block_bytes(size, block);
        let secs = (bytes.end - bytes.start) as f64 / self.rate;
        Some(self.free_at.max(arrives) + Duration::from_secs_f64(secs))
    }
}

struct Sim {
    fetch: Fetch<u64, ChaCha8Rng>,
    models: BTreeMap<u64, Model>,
    start: Instant,
    now: Instant,
    log: Vec<(Duration, Action<u64>)>,
    max_in_flight_seen: usize,
}

impl Sim {
    fn new(size: u64, config: FetchConfig, seed: u64) -> Self {
        let start = Instant::now();
        let fetch = Fetch::new(
            size,
            &BlockRanges::new(),
            config,
            ChaCha8Rng::seed_from_u64(seed),
        );
        Sim {
            fetch,
            models: BTreeMap::new(),
            start,
            now: start,
            log: Vec::new(),
            max_in_flight_seen: 0,
        }
    }

    fn add(&mut self, id: u64, rate_mib: f64, behaviour: Behaviour) {
        self.models
            .insert(id, Model::new(rate_mib, behaviour, self.now));
        self.fetch.add_provider(id, Availability::All, self.now);
        self.drain();
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn drain(&mut self) {
        while let Some(action) = self.fetch.poll_action() {
            match &action {
                Action::Request {
                    id,
                    provider,
                    blocks,
                } => {
                    let model = self.models.get_mut(provider).expect("known provider");
                    assert!(!model.dead, "a request to dropped provider {provider}");
                    model.queue.push_back((
                        *id,
                        blocks.start,
                        blocks.end,
                        self.now + model.latency,
                    ));
                }
                Action::Cancel { id, provider } => {
                    if let Some(model) = self.models.get_mut(provider) {
                        model.queue.retain(|(r, ..)| r != id);
                    }
                }
                Action::DropProvider { provider, .. } => {
                    if let Some(model) = self.models.get_mut(provider) {
                        model.dead = true;
                        model.queue.clear();
                    }
                }
                Action::NeedProviders | Action::Complete => {}
            }
            self.log.push((self.elapsed(), action));
        }
        for (provider, status) in self.fetch.providers() {
            let limit = self.fetch.config.max_requests_per_provider;
            assert!(status.in_flight <= limit, "provider {provider}: {status:?}");
            self.max_in_flight_seen = self.max_in_flight_seen.max(status.in_flight);
        }
    }

    /// Runs until the fetch completes, nothing can happen any more, or `limit` passes.
    fn run(&mut self, limit: Duration) {
        let size = self.fetch.size();
        while !self.fetch.is_complete() && self.elapsed() < limit {
            let delivery = self
                .models
                .iter()
                .filter_map(|(id, m)| m.next_done(size).map(|t| (t, *id)))
                .min();
            let timeout = self.fetch.poll_timeout();
            let next = match (delivery, timeout) {
                (Some((t, _)), Some(d)) => t.min(d),
                (Some((t, _)), None) => t,
                (None, Some(d)) => d,
                (None, None) => return,
            };
            self.now = self.now.max(next);
            if let Some((t, provider)) = delivery
                && t <= self.now
            {
                self.deliver(provider);
            }
            self.fetch.handle_timeout(self.now);
            self.drain();
        }
    }

    fn deliver(&mut self, provider: u64) {
        let model = self.models.get_mut(&provider).expect("known provider");
        let Some((id, block, end, arrives)) = model.queue.pop_front() else {
            return;
        };
        model.free_at = self.now;
        let n = model.delivered;
        model.delivered += 1;
        if block + 1 < end {
            model.queue.push_front((id, block + 1, end, arrives));
        }
        if model.behaviour == Behaviour::CorruptAt(n) {
            // The node's decoder rejects the block: the request and the provider are done.
            self.fetch.handle_bad_data(&provider, self.now);
        } else {
            self.fetch.handle_block(&provider, id, block, self.now);
        }
    }

    fn bytes_from(&self, provider: u64) -> u64 {
        self.fetch
            .providers()
            .find(|(p, _)| **p == provider)
            .map_or(0, |(_, s)| s.bytes)
    }

    fn requests_to(&self, provider: u64) -> Vec<(Duration, Range<u64>)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Request {
                    provider: p,
                    blocks,
                    ..
                } if *p == provider => Some((*t, blocks.clone())),
                _ => None,
            })
            .collect()
    }

    fn count(&self, wanted: impl Fn(&Action<u64>) -> bool) -> usize {
        self.log.iter().filter(|(_, a)| wanted(a)).count()
    }
}

fn mib(n: u64) -> u64 {
    n * 1024 * 1024
}

#[test]
fn faster_providers_deliver_more_bytes_and_together_beat_the_fastest_alone() {
    let size = mib(16);
    let mut sim = Sim::new(size, FetchConfig::default(), 1);
    sim.add(1, 1.0, Behaviour::Good);
    sim.add(2, 3.0, Behaviour::Good);
    sim.add(3, 9.0, Behaviour::Good);
    sim.run(Duration::from_secs(60));
    assert!(sim.fetch.is_complete());
    let (b1, b2, b3) = (sim.bytes_from(1), sim.bytes_from(2), sim.bytes_from(3));
    assert_eq!(b1 + b2 + b3, size);
    assert!(b3 > b2 && b2 > b1, "bytes by provider: {b1} {b2} {b3}");
    assert!(b3 > size / 2, "the 9 MiB/s provider gave {b3} of {size}");
    // 13 MiB/s together; the fastest alone would need 16/9 = 1.78 s.
    let took = sim.elapsed();
    if took >= Duration::from_millis(1500) {
        for (t, a) in sim.log.iter().rev().take(40).rev() {
            eprintln!("{t:?} {a:?}");
        }
        eprintln!("{b1} {b2} {b3} wasted {}", sim.fetch.wasted_bytes());
    }
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    // Requests grew with the measured rate, within the bound (the median, since endgame
    // duplicates copy another provider's request whatever its size).
    let median = |p| {
        let mut lens: Vec<u64> = sim
            .requests_to(p)
            .iter()
            .map(|(_, r)| r.end - r.start)
            .collect();
        lens.sort();
        lens[lens.len() / 2]
    };
    assert!(
        median(3) > median(2) && median(2) > median(1),
        "{} {} {}",
        median(1),
        median(2),
        median(3)
    );
    let biggest = sim
        .log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Request { blocks, .. } => Some(blocks.end - blocks.start),
            _ => None,
        })
        .max();
    assert_eq!(biggest, Some(FetchConfig::default().max_request_blocks));
    assert_eq!(sim.max_in_flight_seen, 4);
}

#[test]
fn a_provider_that_sends_a_bad_block_is_dropped_at_once_and_its_ranges_go_to_others() {
    let size = mib(4);
    let mut sim = Sim::new(size, FetchConfig::default(), 2);
    sim.add(1, 2.0, Behaviour::Good);
    sim.add(2, 2.0, Behaviour::CorruptAt(2));
    sim.add(3, 2.0, Behaviour::Good);
    sim.run(Duration::from_secs(60));
    assert!(sim.fetch.is_complete());
    let drops: Vec<_> = sim
        .log
        .iter()
        .filter_map(|(t, a)| match a {
            Action::DropProvider { provider, reason } => Some((*t, *provider, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(drops.len(), 1);
    let (dropped_at, provider, reason) = drops[0];
    assert_eq!((provider, reason), (2, DropReason::BadData));
    // Dropped on its first bad block: it delivered two good ones, counted.
    assert_eq!(sim.bytes_from(2), 2 * BLOCK_SIZE);
    assert!(sim.requests_to(2).iter().all(|(t, _)| *t <= dropped_at));
    // Every block is verified, all from the good providers but those two.
    assert_eq!(sim.fetch.verified_bytes(), size);
    assert_eq!(sim.bytes_from(1) + sim.bytes_from(3), size - 2 * BLOCK_SIZE);
    // Banned: the DHT offering it again changes nothing.
    assert!(sim.fetch.is_banned(&2));
    assert!(!sim.fetch.add_provider(2, Availability::All, sim.now));
}

#[test]
fn a_stalled_provider_is_dropped_after_the_stall_timeout_and_its_ranges_reassigned() {
    let size = mib(4);
    let config = FetchConfig {
        stall_timeout: Duration::from_secs(2),
        ..FetchConfig::default()
    };
    let mut sim = Sim::new(size, config, 3);
    sim.add(1, 1.0, Behaviour::Good);
    sim.add(2, 1.0, Behaviour::StallAfter(5));
    sim.run(Duration::from_secs(60));
    assert!(sim.fetch.is_complete());
    let stalled: Vec<Duration> = sim
        .log
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::DropProvider {
                    provider: 2,
                    reason: DropReason::Stalled
                }
            )
        })
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(stalled.len(), 1);
    // It stopped after 5 blocks at 1 MiB/s (about 80 ms) and was dropped 2 s later.
    assert!(
        stalled[0] > Duration::from_secs(2) && stalled[0] < Duration::from_millis(2300),
        "dropped at {:?}",
        stalled[0]
    );
    assert_eq!(sim.bytes_from(2), 5 * BLOCK_SIZE);
    assert_eq!(sim.fetch.verified_bytes(), size);
    // Not banned: a stall may be the network's fault.
    assert!(!sim.fetch.is_banned(&2));
}

/// A fast provider and one so slow that its first request (4 blocks) takes 4 s.
fn fast_and_very_slow(endgame_copies: usize) -> Sim {
    let config = FetchConfig {
        endgame_copies,
        stall_timeout: Duration::from_secs(30),
        ..FetchConfig::default()
    };
    let mut sim = Sim::new(mib(2), config, 4);
    sim.add(1, 16.0 / 1024.0, Behaviour::Good);
    sim.add(2, 10.0, Behaviour::Good);
    sim.run(Duration::from_secs(60));
    sim
}

#[test]
fn endgame_duplicates_the_slow_tail_elsewhere_and_cancels_the_losers() {
    let with = fast_and_very_slow(2);
    assert!(with.fetch.is_complete());
    assert!(
        with.elapsed() < Duration::from_secs(1),
        "took {:?}",
        with.elapsed()
    );
    // The slow provider's request was cancelled once the fast one had delivered its blocks.
    assert!(with.count(|a| matches!(a, Action::Cancel { provider: 1, .. })) >= 1);
    assert_eq!(with.count(|a| matches!(a, Action::Complete)), 1);
    // What the duplicates cost: at most the slow provider's share, a few blocks.
    assert!(with.fetch.wasted_bytes() <= 4 * BLOCK_SIZE);

    // Without endgame the last blocks wait for the slow provider.
    let without = fast_and_very_slow(1);
    assert!(without.fetch.is_complete());
    assert!(
        without.elapsed() > Duration::from_secs(3),
        "took {:?}",
        without.elapsed()
    );
}

#[test]
fn completion_is_reported_once_and_a_resumed_fetch_asks_only_for_what_is_missing() {
    let size = 100 * BLOCK_SIZE;
    let start = Instant::now();
    let mut fetch: Fetch<u64, _> = Fetch::new(
        size,
        &BlockRanges::from_range(0..50),
        FetchConfig::default(),
        ChaCha8Rng::seed_from_u64(5),
    );
    assert_eq!(fetch.verified_bytes(), 50 * BLOCK_SIZE);
    fetch.add_provider(1, Availability::All, start);
    let mut now = start;
    let mut completes = 0;
    let mut requested = BlockRanges::new();
    let mut pending: VecDeque<(RequestId, Range<u64>)> = VecDeque::new();
    for _ in 0..10_000 {
        while let Some(action) = fetch.poll_action() {
            match action {
                Action::Request { id, blocks, .. } => {
                    requested.insert(blocks.clone());
                    pending.push_back((id, blocks));
                }
                Action::Complete => completes += 1,
                Action::Cancel { .. } | Action::DropProvider { .. } | Action::NeedProviders => {
                    panic!("unexpected {action:?}")
                }
            }
        }
        let Some((id, blocks)) = pending.pop_front() else {
            break;
        };
        for block in blocks {
            now += Duration::from_millis(10);
            fetch.handle_block(&1, id, block, now);
        }
    }
    assert!(fetch.is_complete());
    assert_eq!(completes, 1);
    assert_eq!(requested, BlockRanges::from_range(50..100));
    // Nothing more, whatever comes in late.
    fetch.handle_timeout(now + Duration::from_secs(100));
    fetch.add_provider(2, Availability::All, now);
    assert_eq!(fetch.poll_action(), None);

    let mut done: Fetch<u64, _> = Fetch::new(
        size,
        &BlockRanges::all(size),
        FetchConfig::default(),
        ChaCha8Rng::seed_from_u64(5),
    );
    assert_eq!(done.poll_action(), Some(Action::Complete));
    assert_eq!(done.poll_action(), None);
}

#[test]
fn the_same_seed_replays_the_same_schedule_and_seeds_spread_the_start() {
    let run = |seed| {
        let mut sim = Sim::new(mib(8), FetchConfig::default(), seed);
        sim.add(1, 2.0, Behaviour::Good);
        sim.add(2, 2.0, Behaviour::Good);
        sim.add(3, 5.0, Behaviour::CorruptAt(7));
        sim.run(Duration::from_secs(60));
        sim.log
    };
    assert_eq!(run(9), run(9));
    let first_blocks: Vec<u64> = (0..8)
        .map(|seed| match &run(seed)[0].1 {
            Action::Request { blocks, .. } => blocks.start,
            other => panic!("{other:?}"),
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = first_blocks.iter().collect();
    assert!(distinct.len() > 3, "starts: {first_blocks:?}");
    // Sequential order always starts at block 0.
    let config = FetchConfig {
        order: PieceOrder::Sequential,
        ..FetchConfig::default()
    };
    let mut sim = Sim::new(mib(8), config, 11);
    sim.add(1, 1.0, Behaviour::Good);
    assert_eq!(sim.requests_to(1)[0].1.start, 0);
}

#[test]
fn providers_that_leave_have_their_ranges_reassigned_and_the_last_one_asks_for_more() {
    let size = mib(2);
    let mut sim = Sim::new(size, FetchConfig::default(), 6);
    sim.add(1, 1.0, Behaviour::Good);
    sim.add(2, 1.0, Behaviour::Good);
    sim.run(Duration::from_millis(300));
    assert!(!sim.fetch.is_complete());
    sim.fetch.remove_provider(&1, sim.now);
    sim.models.get_mut(&1).expect("model").dead = true;
    sim.drain();
    sim.run(Duration::from_millis(600));
    sim.fetch.remove_provider(&2, sim.now);
    sim.models.get_mut(&2).expect("model").dead = true;
    sim.drain();
    assert_eq!(sim.log.last().map(|(_, a)| a), Some(&Action::NeedProviders));
    assert_eq!(sim.fetch.in_flight(), 0);
    let before = sim.fetch.verified_bytes();
    sim.add(3, 4.0, Behaviour::Good);
    sim.run(Duration::from_secs(60));
    assert!(sim.fetch.is_complete());
    assert_eq!(sim.bytes_from(3), size - before);
    // Removed providers keep their share in the status.
    let inactive: Vec<u64> = sim
        .fetch
        .providers()
        .filter(|(_, s)| !s.active)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(inactive, vec![1, 2]);
}

#[test]
fn a_priority_range_is_requested_first() {
    let mut sim = Sim::new(mib(16), FetchConfig::default(), 7);
    sim.fetch.set_priority(Some(500..520), sim.now);
    sim.add(1, 1.0, Behaviour::Good);
    assert_eq!(sim.requests_to(1)[0].1.start, 500);
    sim.run(Duration::from_secs(60));
    let priority_done = sim
        .requests_to(1)
        .iter()
        .position(|(_, r)| r.end == 520)
        .expect("the priority range was requested");
    let first_other = sim
        .requests_to(1)
        .iter()
        .position(|(_, r)| r.start < 500 || r.start >= 520)
        .expect("other blocks were requested");
    assert!(priority_done < first_other);
}

#[test]
fn providers_holding_part_of_the_blob_are_asked_only_for_what_they_hold() {
    let size = 100 * BLOCK_SIZE;
    let start = Instant::now();
    let mut fetch: Fetch<u64, _> = Fetch::new(
        size,
        &BlockRanges::new(),
        FetchConfig {
            order: PieceOrder::Sequential,
            ..FetchConfig::default()
        },
        ChaCha8Rng::seed_from_u64(8),
    );
    fetch.add_provider(
        1,
        Availability::Blocks(BlockRanges::from_range(40..60)),
        start,
    );
    let mut requested = Vec::new();
    while let Some(action) = fetch.poll_action() {
        if let Action::Request { id, blocks, .. } = action {
            requested.push((id, blocks));
        }
    }
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].1, 40..44);
    // It then says it lacks 40..44 after all (evicted): not asked for them again.
    fetch.handle_not_available(requested[0].0, start);
    match fetch.poll_action() {
        Some(Action::Request { blocks, .. }) => assert_eq!(blocks, 44..48),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_request_drops_its_provider_without_banning_it() {
    let start = Instant::now();
    let mut fetch: Fetch<u64, _> = Fetch::new(
        10 * BLOCK_SIZE,
        &BlockRanges::new(),
        FetchConfig::default(),
        ChaCha8Rng::seed_from_u64(9),
    );
    fetch.add_provider(1, Availability::All, start);
    let Some(Action::Request { id, blocks, .. }) = fetch.poll_action() else {
        panic!("a request");
    };
    fetch.handle_request_failed(id, start);
    assert_eq!(
        fetch.poll_action(),
        Some(Action::Cancel { id, provider: 1 })
    );
    assert_eq!(
        fetch.poll_action(),
        Some(Action::DropProvider {
            provider: 1,
            reason: DropReason::Failed
        })
    );
    assert_eq!(fetch.poll_action(), Some(Action::NeedProviders));
    // Offered again, it gets the same blocks again.
    assert!(fetch.add_provider(1, Availability::All, start));
    match fetch.poll_action() {
        Some(Action::Request { blocks: again, .. }) => assert_eq!(again, blocks),
        other => panic!("{other:?}"),
    }
}

#[test]
fn blocks_a_driver_skips_are_asked_for_again() {
    let start = Instant::now();
    let mut fetch: Fetch<u64, _> = Fetch::new(
        8 * BLOCK_SIZE,
        &BlockRanges::new(),
        FetchConfig {
            order: PieceOrder::Sequential,
            ..FetchConfig::default()
        },
        ChaCha8Rng::seed_from_u64(10),
    );
    fetch.add_provider(1, Availability::All, start);
    let Some(Action::Request { id, blocks, .. }) = fetch.poll_action() else {
        panic!("a request");
    };
    assert_eq!(blocks, 0..4);
    // Block 2 arrives first: 0 and 1 will not come from this request any more.
    fetch.handle_block(&1, id, 2, start);
    fetch.handle_block(&1, id, 3, start);
    let mut again = BlockRanges::new();
    while let Some(action) = fetch.poll_action() {
        if let Action::Request { blocks, .. } = action {
            again.insert(blocks);
        }
    }
    assert!(again.contains(0) && again.contains(1), "{again:?}");
}

proptest::proptest! {
    /// `pick` for a partial provider visits only its ranges, a word at a time; it must pick the
    /// same first block as testing every position of the scan order.
    #[test]
    fn a_partial_provider_gets_the_first_free_block_it_holds_in_scan_order(
        blocks in 1u64..700,
        seed in 0u64..1_000,
        verified in proptest::collection::vec(0u64..700, 0..400),
        requested in proptest::collection::vec(0u64..700, 0..400),
        held in proptest::collection::vec((0u64..700, 1u64..200), 0..6),
        cursor in 0u64..700,
    ) {
        let size = blocks * BLOCK_SIZE;
        let verified: BlockRanges = verified.iter().filter(|&&b| b < blocks).map(|&b| b..b + 1).collect();
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let mut fetch: Fetch<u64, _> = Fetch::new(size, &verified, FetchConfig::default(), rng);
        for b in requested.into_iter().filter(|&b| b < blocks) {
            if !fetch.verified.get(b) && fetch.requested.set(b) {
                fetch.free -= 1;
            }
        }
        fetch.cursor = cursor.min(blocks);
        let have = Availability::Blocks(
            held.iter().map(|&(s, l)| s.min(blocks)..(s + l).min(blocks)).collect(),
        );
        let mut naive = fetch.cursor;
        while naive < blocks && !fetch.is_free(fetch.block_at(naive)) {
            naive += 1;
        }
        let expected = (naive..blocks)
            .map(|pos| fetch.block_at(pos))
            .find(|&b| fetch.is_free(b) && have.has(b));
        let picked = fetch.pick(&have, 1).map(|r| r.start);
        proptest::prop_assert_eq!(picked, expected);
    }
}
