//! The whole sans-IO stack as the node drives it, over stores on disk and messages that go
//! through the wire encoding: a size query, the scheduler handing out requests, providers
//! answering from their stores, the fetching side verifying and storing block by block.
//! One provider serves corrupted data; an interrupted fetch resumes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bavard_blobs::BlockRanges;
use bavard_blobs::protocol::{
    Answer, Download, Limits, Request, Response, Verdict, check_size_answer, respond,
};
use bavard_blobs::store::{FetchStart, Store, StoreConfig, WriteOutcome};
use bavard_blobs::swarm::{Action, Availability, DropReason, Fetch, FetchConfig, RequestId};
use bavard_blobs::{BLOCK_SIZE, BlobHash};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn wall(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// Through the wire encoding and back, as the node's streams would carry it.
fn wire(response: Response) -> Response {
    let frame = response.to_frame();
    let mut buf = bytes::BytesMut::from(&frame[..]);
    let payload = bavard_proto::FrameDecoder::default()
        .decode(&mut buf)
        .expect("a valid frame")
        .expect("a whole frame");
    Response::decode(&payload, &Limits::default()).expect("a valid response")
}

fn content(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

struct Provider {
    store: Store,
    /// The test switch: flips a byte in every data frame it sends.
    corrupt: bool,
    /// Virtual time one block takes.
    per_block: Duration,
}

struct Run {
    fetch: Fetch<u64, ChaCha8Rng>,
    requested: BlockRanges,
    drops: Vec<(u64, DropReason)>,
    blocks_written: u64,
}

/// Drives a fetch of `hash` into `leecher` until it completes or `budget` blocks were
/// delivered (an interruption).
fn drive(
    hash: BlobHash,
    leecher: &mut Store,
    providers: &mut BTreeMap<u64, Provider>,
    budget: u64,
) -> Run {
    let limits = Limits::default();
    let mut now = Instant::now();

    // 1. The size, proven by the first provider's answer.
    let first = providers.keys().next().copied().expect("a provider");
    let Answer::One(answer) = respond(
        &mut providers.get_mut(&first).expect("provider").store,
        &Request::Size { hash },
        &limits,
        wall(1),
    ) else {
        panic!("a size query gets one answer");
    };
    let proven = check_size_answer(hash, wire(answer)).expect("the size proof verifies");
    let size = proven.size();
    let verified = match leecher.begin_fetch(&proven, wall(1)).expect("room for it") {
        FetchStart::Complete => BlockRanges::all(size),
        FetchStart::Partial { verified } => verified,
    };

    // 2. The scheduler, fed the providers the DHT would find.
    let config = FetchConfig {
        stall_timeout: Duration::from_secs(5),
        ..FetchConfig::default()
    };
    let mut fetch = Fetch::new(size, &verified, config, ChaCha8Rng::seed_from_u64(42));
    for &p in providers.keys() {
        fetch.add_provider(p, Availability::All, now);
    }

    let mut run = Run {
        fetch,
        requested: BlockRanges::new(),
        drops: Vec::new(),
        blocks_written: 0,
    };
    let mut queue: VecDeque<(RequestId, u64, std::ops::Range<u64>)> = VecDeque::new();
    let mut dropped: BTreeSet<u64> = BTreeSet::new();
    let mut delivered = 0;
    loop {
        while let Some(action) = run.fetch.poll_action() {
            match action {
                Action::Request {
                    id,
                    provider,
                    blocks,
                } => {
                    run.requested.insert(blocks.clone());
                    queue.push_back((id, provider, blocks));
                }
                Action::Cancel { id, .. } => queue.retain(|(r, ..)| *r != id),
                Action::DropProvider { provider, reason } => {
                    dropped.insert(provider);
                    run.drops.push((provider, reason));
                    queue.retain(|(_, p, _)| *p != provider);
                }
                Action::NeedProviders => panic!("ran out of providers"),
                Action::Complete => return run,
            }
        }
        if delivered >= budget {
            return run;
        }
        // 3. Serve the oldest request: the provider answers from its store, the leecher
        // verifies each frame, stores each block, and tells the scheduler.
        let Some((id, p, blocks)) = queue.pop_front() else {
            panic!("nothing to do and not complete");
        };
        let provider = providers.get_mut(&p).expect("provider");
        let request = Request::Get {
            hash,
            ranges: BlockRanges::from_range(blocks.clone()),
        };
        let Answer::Stream { header, frames } =
            respond(&mut provider.store, &request, &limits, wall(2))
        else {
            panic!("a complete provider serves any range");
        };
        let mut download = Download::new(hash, size, &BlockRanges::from_range(blocks)).unwrap();
        let mut failed = download.handle(wire(header)).err();
        for frame in frames {
            if failed.is_some() || delivered >= budget {
                break;
            }
            let mut frame = frame.expect("the provider's files are fine");
            if provider.corrupt
                && let Response::Data(bytes) = &frame
            {
                let mut bytes = bytes.to_vec();
                let last = bytes.len() - 1;
                bytes[last] ^= 0x55;
                frame = Response::Data(bytes.into());
            }
            if let Err(e) = download.handle(wire(frame)) {
                failed = Some(e);
                break;
            }
            while let Some(block) = download.next_block() {
                match block {
                    Ok(block) => {
                        now += provider.per_block;
                        delivered += 1;
                        let outcome = leecher
                            .write_block(&block)
                            .expect("the leecher's disk is fine");
                        if outcome != WriteOutcome::Duplicate {
                            run.blocks_written += 1;
                        }
                        run.fetch.handle_block(&p, id, block.block(), now);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(error) = failed {
            match error.verdict() {
                Verdict::BadData => run.fetch.handle_bad_data(&p, now),
                Verdict::NotAvailable => run.fetch.handle_not_available(id, now),
                Verdict::Failed => run.fetch.handle_request_failed(id, now),
            }
        }
        run.fetch.handle_timeout(now);
        assert!(
            queue.iter().all(|(_, q, _)| !dropped.contains(q)),
            "a request queued for a dropped provider"
        );
    }
}

fn provider(dir: &std::path::Path, data: &[u8], corrupt: bool, per_block_ms: u64) -> Provider {
    let mut store = Store::open(dir, StoreConfig::default()).unwrap();
    store.add_bytes(data, true, wall(0)).unwrap();
    Provider {
        store,
        corrupt,
        per_block: Duration::from_millis(per_block_ms),
    }
}

#[test]
fn a_swarm_fetch_over_real_stores_drops_the_corrupt_provider_and_gets_every_byte_right() {
    let data = content(3 * 1024 * 1024 + 1234, 1);
    let hash = BlobHash::of(&data);
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut providers = BTreeMap::new();
    providers.insert(1, provider(dirs[0].path(), &data, false, 2));
    providers.insert(2, provider(dirs[1].path(), &data, true, 1));
    providers.insert(3, provider(dirs[2].path(), &data, false, 4));
    providers.insert(4, provider(dirs[3].path(), &data, false, 8));
    let mut leecher = Store::open(dirs[4].path(), StoreConfig::default()).unwrap();

    let run = drive(hash, &mut leecher, &mut providers, u64::MAX);

    assert!(run.fetch.is_complete());
    assert_eq!(run.drops, vec![(2, DropReason::BadData)]);
    let from: BTreeMap<u64, u64> = run.fetch.providers().map(|(p, s)| (*p, s.bytes)).collect();
    assert_eq!(
        from.get(&2).copied().unwrap_or(0),
        0,
        "no byte from the corrupt one"
    );
    assert!(
        from.values().filter(|&&b| b > 0).count() >= 3,
        "bytes from each provider: {from:?}"
    );
    let info = leecher.info(hash).unwrap();
    assert!(info.complete);
    let reader = leecher.reader(hash, wall(3)).unwrap();
    let mut copy = vec![0u8; data.len()];
    reader.read_at(0, &mut copy).unwrap();
    assert_eq!(BlobHash::of(&copy), hash);
    assert_eq!(copy, data);
}

#[test]
fn an_interrupted_fetch_resumes_without_downloading_verified_blocks_again() {
    let data = content(2 * 1024 * 1024, 2);
    let hash = BlobHash::of(&data);
    let blocks = (data.len() as u64).div_ceil(BLOCK_SIZE);
    let seed_dir = tempfile::tempdir().unwrap();
    let leecher_dir = tempfile::tempdir().unwrap();
    let mut providers = BTreeMap::new();
    providers.insert(1, provider(seed_dir.path(), &data, false, 1));
    // Checkpoints every 4 blocks, so a crash loses at most 3 of them.
    let config = StoreConfig {
        checkpoint_bytes: 4 * BLOCK_SIZE,
        ..StoreConfig::default()
    };

    let first = {
        let mut leecher = Store::open(leecher_dir.path(), config.clone()).unwrap();
        drive(hash, &mut leecher, &mut providers, 50)
        // Dropped without sync: a crash.
    };
    assert!(!first.fetch.is_complete());

    let mut leecher = Store::open(leecher_dir.path(), config).unwrap();
    let (_, kept) = leecher.have(hash).expect("the partial blob is remembered");
    // The 50 delivered blocks (and the size proof's block) less at most 3 since the last
    // checkpoint.
    assert!(kept.block_count() >= 48, "kept {kept:?}");
    let second = drive(hash, &mut leecher, &mut providers, u64::MAX);
    assert!(second.fetch.is_complete());
    for block in kept.iter().flatten() {
        assert!(
            !second.requested.contains(block),
            "block {block} was verified before the crash and fetched again"
        );
    }
    assert_eq!(second.blocks_written + kept.block_count(), blocks);
    let reader = leecher.reader(hash, wall(5)).unwrap();
    let mut copy = vec![0u8; data.len()];
    reader.read_at(0, &mut copy).unwrap();
    assert_eq!(copy, data);
}
