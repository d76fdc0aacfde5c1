use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::encoding::{
    MemBlob, RangeDecoder, RangeEncoder, VerifiedBlock, encode_size_proof, verify_size_proof,
};
use crate::ranges::{BLOCK_SIZE, BlockRanges, block_count};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn random_blob(len: u64, seed: u64) -> MemBlob {
    let mut data = vec![0u8; len as usize];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    MemBlob::new(Bytes::from(data))
}

/// The verified blocks a provider holding `source` would send for `ranges`.
fn fetched(source: &MemBlob, ranges: &BlockRanges) -> Vec<VerifiedBlock> {
    let mut decoder = RangeDecoder::new(source.hash(), source.size(), ranges).unwrap();
    let mut out = Vec::new();
    for frame in RangeEncoder::new(source, ranges).unwrap() {
        decoder.push(&frame.unwrap()).unwrap();
        while let Some(block) = decoder.next_block() {
            out.push(block.unwrap());
        }
    }
    while let Some(block) = decoder.next_block() {
        out.push(block.unwrap());
    }
    decoder.finish().unwrap();
    out
}

fn size_proof(source: &MemBlob) -> VerifiedBlock {
    let proof = encode_size_proof(source).unwrap();
    verify_size_proof(source.hash(), source.size(), &proof).unwrap()
}

/// Reads a blob back through a reader, as the HTTP side would.
fn read_all(store: &mut Store, hash: BlobHash) -> Vec<u8> {
    let reader = store.reader(hash, at(0)).unwrap();
    let mut buf = vec![0u8; reader.size() as usize];
    reader.read_at(0, &mut buf).unwrap();
    buf
}

/// Serves `ranges` from the store and verifies them as a peer would.
fn serve_and_verify(store: &mut Store, hash: BlobHash, ranges: &BlockRanges) -> Vec<u8> {
    let reader = store.reader(hash, at(0)).unwrap();
    let mut decoder = RangeDecoder::new(hash, reader.size(), ranges).unwrap();
    let mut bytes = Vec::new();
    for frame in reader.encoder(ranges).unwrap() {
        decoder.push(&frame.unwrap()).unwrap();
        while let Some(block) = decoder.next_block() {
            bytes.extend_from_slice(block.unwrap().data());
        }
    }
    decoder.finish().unwrap();
    bytes
}

fn open(dir: &std::path::Path, config: StoreConfig) -> Store {
    Store::open(dir, config).unwrap()
}

#[test]
fn an_added_blob_is_listed_read_back_and_served_verified() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), StoreConfig::default());
    let source = random_blob(5 * BLOCK_SIZE + 77, 1);
    let added = store.add_bytes(source.data(), true, at(1)).unwrap();
    assert_eq!(
        added,
        Added {
            hash: source.hash(),
            size: source.size(),
            new: true
        }
    );
    let info = store.info(added.hash).unwrap();
    assert!(info.complete && info.pinned);
    assert_eq!(info.verified_bytes, source.size());
    assert_eq!(read_all(&mut store, added.hash), source.data().to_vec());
    let served = serve_and_verify(&mut store, added.hash, &BlockRanges::from_range(2..6));
    assert_eq!(served, source.data()[(2 * BLOCK_SIZE) as usize..].to_vec());
    // Adding it again reads and hashes, and changes nothing else.
    let again = store.add_bytes(source.data(), false, at(2)).unwrap();
    assert!(!again.new);
    assert!(store.info(added.hash).unwrap().pinned);
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.used_bytes(), source.size() + 5 * 64);
}

#[test]
fn a_blob_spooled_apart_from_the_store_is_committed_and_a_failed_spool_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(
        dir.path(),
        StoreConfig {
            max_blob_size: 4 * BLOCK_SIZE,
            ..StoreConfig::default()
        },
    );
    let source = random_blob(3 * BLOCK_SIZE + 5, 21);
    // The slow part runs without the store (the node does it without the store's lock).
    let first = store.spooler();
    let second = store.spooler();
    let spooled = first.spool(&source.data()[..]).unwrap();
    assert_eq!(
        (spooled.hash(), spooled.size()),
        (source.hash(), source.size())
    );
    // Over the size limit: refused, and its files are gone.
    let big = random_blob(4 * BLOCK_SIZE + 1, 22);
    assert!(matches!(
        second.spool(&big.data()[..]),
        Err(StoreError::TooLarge { .. })
    ));
    let added = store.commit_spooled(spooled, false, at(1)).unwrap();
    assert!(added.new);
    assert_eq!(read_all(&mut store, added.hash), source.data().to_vec());
    // A spool dropped without a commit removes its files too.
    drop(store.spooler().spool(&source.data()[..]).unwrap());
    // The same content again: nothing new, and nothing left behind.
    let again = store.spooler().spool(&source.data()[..]).unwrap();
    assert!(!store.commit_spooled(again, true, at(2)).unwrap().new);
    assert!(store.info(added.hash).unwrap().pinned);
    let leftovers = fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "tmp/ is empty");
}

#[test]
fn edge_sizes_are_added_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), StoreConfig::default());
    for size in [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1] {
        let source = random_blob(size, size);
        let added = store.add_bytes(source.data(), false, at(1)).unwrap();
        assert_eq!(added.hash, source.hash(), "size {size}");
        let served = serve_and_verify(&mut store, added.hash, &BlockRanges::all(size));
        assert_eq!(served, source.data().to_vec(), "size {size}");
        let proof = store
            .reader(added.hash, at(1))
            .unwrap()
            .size_proof()
            .unwrap();
        verify_size_proof(added.hash, size, &proof).unwrap();
    }
}

#[test]
fn verified_blocks_survive_a_restart_and_the_fetch_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let source = random_blob(10 * BLOCK_SIZE + 5, 2);
    let hash = source.hash();
    {
        let mut store = open(dir.path(), StoreConfig::default());
        let start = store.begin_fetch(&size_proof(&source), at(1)).unwrap();
        assert_eq!(
            start,
            FetchStart::Partial {
                verified: BlockRanges::from_range(10..11)
            }
        );
        for block in fetched(&source, &BlockRanges::from_range(0..4)) {
            assert_eq!(store.write_block(&block).unwrap(), WriteOutcome::Written);
        }
        store.sync().unwrap();
        // Verified after the last checkpoint, then the process dies: not claimed.
        for block in fetched(&source, &BlockRanges::from_range(6..7)) {
            store.write_block(&block).unwrap();
        }
    }
    let mut store = open(dir.path(), StoreConfig::default());
    assert!(store.open_problems().is_empty());
    let info = store.info(hash).unwrap();
    assert!(!info.complete);
    assert_eq!(info.verified_bytes, 4 * BLOCK_SIZE + 5);
    let remembered: BlockRanges = [0..4, 10..11].into_iter().collect();
    assert_eq!(store.have(hash), Some((source.size(), remembered.clone())));
    // Resuming: the same proof again, and only the missing blocks are fetched.
    let start = store.begin_fetch(&size_proof(&source), at(2)).unwrap();
    assert_eq!(
        start,
        FetchStart::Partial {
            verified: remembered
        }
    );
    let mut outcomes = Vec::new();
    for block in fetched(&source, &BlockRanges::from_range(4..10)) {
        outcomes.push(store.write_block(&block).unwrap());
    }
    assert_eq!(outcomes.last(), Some(&WriteOutcome::Completed));
    assert!(outcomes[..5].iter().all(|o| *o == WriteOutcome::Written));
    drop(store);
    let mut store = open(dir.path(), StoreConfig::default());
    assert!(store.info(hash).unwrap().complete);
    assert_eq!(read_all(&mut store, hash), source.data().to_vec());
}

#[test]
fn checkpoints_happen_by_themselves_every_checkpoint_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let source = random_blob(8 * BLOCK_SIZE, 3);
    let config = StoreConfig {
        checkpoint_bytes: 2 * BLOCK_SIZE,
        ..StoreConfig::default()
    };
    {
        let mut store = open(dir.path(), config.clone());
        store.begin_fetch(&size_proof(&source), at(1)).unwrap();
        for block in fetched(&source, &BlockRanges::from_range(0..2)) {
            store.write_block(&block).unwrap();
        }
        // No sync: the proof block (7) and block 0 made 32 KiB, a checkpoint; block 1 waits
        // for the next one, which never comes.
    }
    let store = open(dir.path(), config);
    let (_, verified) = store.have(source.hash()).unwrap();
    assert_eq!(verified, [0..1, 7..8].into_iter().collect());
}

#[test]
fn a_partial_blob_serves_its_verified_blocks_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), StoreConfig::default());
    let source = random_blob(6 * BLOCK_SIZE, 4);
    let hash = source.hash();
    store.begin_fetch(&size_proof(&source), at(1)).unwrap();
    for block in fetched(&source, &BlockRanges::from_range(1..3)) {
        store.write_block(&block).unwrap();
    }
    let served = serve_and_verify(&mut store, hash, &BlockRanges::from_range(1..3));
    assert_eq!(
        served,
        source.data()[BLOCK_SIZE as usize..(3 * BLOCK_SIZE) as usize].to_vec()
    );
    let reader = store.reader(hash, at(2)).unwrap();
    assert!(!reader.is_complete());
    assert!(matches!(
        reader.encoder(&BlockRanges::from_range(2..4)),
        Err(StoreError::NotAvailable { block: 3, .. })
    ));
    let mut buf = [0u8; 10];
    assert!(matches!(
        reader.read_at(BLOCK_SIZE - 5, &mut buf),
        Err(StoreError::NotAvailable { block: 0, .. })
    ));
    reader.read_at(BLOCK_SIZE, &mut buf).unwrap();
    // A second copy of a block (the endgame's loser) is not written twice.
    let again = fetched(&source, &BlockRanges::from_range(1..2));
    assert_eq!(
        store.write_block(&again[0]).unwrap(),
        WriteOutcome::Duplicate
    );
}

#[test]
fn blocks_for_a_blob_not_being_fetched_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), StoreConfig::default());
    let source = random_blob(3 * BLOCK_SIZE, 5);
    let block = &fetched(&source, &BlockRanges::from_range(0..1))[0];
    assert!(matches!(
        store.write_block(block),
        Err(StoreError::NotFetching(h)) if h == source.hash()
    ));
}

#[test]
fn eviction_removes_the_least_recently_used_unpinned_blob() {
    let dir = tempfile::tempdir().unwrap();
    let blob = |seed| random_blob(4 * BLOCK_SIZE, seed);
    let (a, b, c, d) = (blob(10), blob(11), blob(12), blob(13));
    let each = 4 * BLOCK_SIZE + 3 * 64;
    let config = StoreConfig {
        quota: Some(3 * each),
        ..StoreConfig::default()
    };
    let mut store = open(dir.path(), config.clone());
    store.add_bytes(a.data(), false, at(1)).unwrap();
    store.add_bytes(b.data(), false, at(2)).unwrap();
    store.add_bytes(c.data(), true, at(3)).unwrap();
    // Reading a makes b the least recently used.
    store.reader(a.hash(), at(4)).unwrap();
    store.add_bytes(d.data(), false, at(5)).unwrap();
    assert_eq!(store.poll_evicted(), Some(b.hash()));
    assert_eq!(store.poll_evicted(), None);
    assert!(store.info(b.hash()).is_none());
    assert!(!dir.path().join(format!("{}.data", b.hash())).exists());
    assert_eq!(store.used_bytes(), 3 * each);
    // With everything else pinned, nothing can make room: refused, and nothing evicted.
    store.pin(a.hash(), at(6)).unwrap();
    store.pin(d.hash(), at(6)).unwrap();
    let error = store.add_bytes(b.data(), false, at(7)).unwrap_err();
    assert!(
        matches!(error, StoreError::QuotaExceeded { evictable: 0, .. }),
        "{error}"
    );
    assert_eq!(store.list().len(), 3);
    // Unpinning makes it a candidate again; the pins survive a restart.
    store.unpin(a.hash()).unwrap();
    drop(store);
    let mut store = open(dir.path(), config);
    assert!(store.info(d.hash()).unwrap().pinned);
    assert!(!store.info(a.hash()).unwrap().pinned);
    store.add_bytes(b.data(), false, at(8)).unwrap();
    assert_eq!(store.poll_evicted(), Some(a.hash()));
}

#[test]
fn a_fetch_in_progress_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let source = random_blob(4 * BLOCK_SIZE, 20);
    let other = random_blob(4 * BLOCK_SIZE, 21);
    let each = 4 * BLOCK_SIZE + 3 * 64;
    let mut store = open(
        dir.path(),
        StoreConfig {
            quota: Some(each + 10),
            ..StoreConfig::default()
        },
    );
    store.begin_fetch(&size_proof(&source), at(1)).unwrap();
    assert!(matches!(
        store.add_bytes(other.data(), false, at(2)),
        Err(StoreError::QuotaExceeded { .. })
    ));
    assert!(store.info(source.hash()).is_some());
}

#[test]
fn a_lowered_quota_evicts_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (random_blob(BLOCK_SIZE, 30), random_blob(BLOCK_SIZE, 31));
    {
        let mut store = open(dir.path(), StoreConfig::default());
        store.add_bytes(a.data(), false, at(1)).unwrap();
        store.add_bytes(b.data(), false, at(2)).unwrap();
    }
    let mut store = open(
        dir.path(),
        StoreConfig {
            quota: Some(BLOCK_SIZE),
            ..StoreConfig::default()
        },
    );
    assert_eq!(store.poll_evicted(), Some(a.hash()));
    assert_eq!(store.list().len(), 1);
}

#[test]
fn a_quota_below_the_pinned_blobs_does_not_stop_the_store_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        random_blob(BLOCK_SIZE, 32),
        random_blob(BLOCK_SIZE, 33),
        random_blob(BLOCK_SIZE, 34),
    );
    {
        let mut store = open(dir.path(), StoreConfig::default());
        store.add_bytes(a.data(), true, at(1)).unwrap();
        store.add_bytes(b.data(), true, at(2)).unwrap();
        store.add_bytes(c.data(), false, at(3)).unwrap();
    }
    let config = StoreConfig {
        quota: Some(BLOCK_SIZE),
        ..StoreConfig::default()
    };
    let mut store = open(dir.path(), config);
    // The unpinned one goes; the pinned ones stay, over the quota; new blobs are refused.
    assert_eq!(store.poll_evicted(), Some(c.hash()));
    assert_eq!(store.list().len(), 2);
    assert!(matches!(
        store.add_bytes(c.data(), false, at(4)),
        Err(StoreError::QuotaExceeded { .. })
    ));
}

#[test]
fn damaged_entries_are_quarantined_at_open_and_the_rest_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<MemBlob> = (0..4)
        .map(|i| random_blob(3 * BLOCK_SIZE, 40 + i))
        .collect();
    {
        let mut store = open(dir.path(), StoreConfig::default());
        for blob in &blobs {
            store.add_bytes(blob.data(), false, at(1)).unwrap();
        }
    }
    let path = |i: usize, ext: &str| dir.path().join(format!("{}.{ext}", blobs[i].hash()));
    // 0: a flipped byte in the meta file; 1: a truncated data file; 2: a missing meta file
    // (an add interrupted before its commit point); 3: untouched.
    let mut meta = std::fs::read(path(0, "meta")).unwrap();
    meta[20] ^= 1;
    std::fs::write(path(0, "meta"), meta).unwrap();
    let data = File::options().write(true).open(path(1, "data")).unwrap();
    data.set_len(100).unwrap();
    std::fs::remove_file(path(2, "meta")).unwrap();
    // A meta file that claims to be huge is read only up to the longest valid one.
    let garbage = blake3::hash(b"x").to_hex();
    std::fs::write(
        dir.path().join(format!("{garbage}.meta")),
        vec![0xff; 1 << 20],
    )
    .unwrap();

    let store = open(dir.path(), StoreConfig::default());
    let listed: Vec<BlobHash> = store.list().iter().map(|b| b.hash).collect();
    assert_eq!(listed, vec![blobs[3].hash()]);
    let problems = store.open_problems();
    assert!(problems.iter().any(|p| matches!(
        &p.action,
        OpenAction::Quarantined(StoreError::CorruptMeta {
            source: MetaError::BadChecksum,
            ..
        })
    )));
    assert!(problems.iter().any(|p| matches!(
        &p.action,
        OpenAction::Quarantined(StoreError::WrongLength { got: 100, .. })
    )));
    assert!(
        problems
            .iter()
            .any(|p| matches!(p.action, OpenAction::RemovedOrphan))
    );
    assert!(
        dir.path()
            .join("corrupt")
            .join(format!("{}.meta", blobs[0].hash()))
            .exists()
    );
    assert!(!path(2, "data").exists());
}

#[test]
fn a_block_damaged_on_disk_is_caught_when_serving_then_forgotten_and_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), StoreConfig::default());
    let source = random_blob(4 * BLOCK_SIZE, 50);
    let hash = source.hash();
    store.add_bytes(source.data(), false, at(1)).unwrap();
    let data = File::options()
        .write(true)
        .open(dir.path().join(format!("{hash}.data")))
        .unwrap();
    data.write_all_at(b"rot", 2 * BLOCK_SIZE + 9).unwrap();

    let reader = store.reader(hash, at(2)).unwrap();
    let frames: Vec<_> = reader
        .encoder(&BlockRanges::all(source.size()))
        .unwrap()
        .collect();
    let Some(Err(EncodeError::Corrupt { blocks })) = frames.last() else {
        panic!("the damaged block must not be served: {frames:?}");
    };
    assert_eq!(frames.len(), 3);
    store.forget_blocks(hash, blocks.clone()).unwrap();
    assert!(!store.info(hash).unwrap().complete);
    assert!(matches!(
        store
            .reader(hash, at(3))
            .unwrap()
            .encoder(&BlockRanges::from_range(2..3)),
        Err(StoreError::NotAvailable { block: 2, .. })
    ));
    // Fetching it again completes the blob.
    let start = store.begin_fetch(&size_proof(&source), at(4)).unwrap();
    assert_eq!(
        start,
        FetchStart::Partial {
            verified: [0..2, 3..4].into_iter().collect()
        }
    );
    let block = &fetched(&source, &BlockRanges::from_range(2..3))[0];
    assert_eq!(store.write_block(block).unwrap(), WriteOutcome::Completed);
    assert_eq!(read_all(&mut store, hash), source.data().to_vec());
}

#[test]
fn delete_and_size_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(
        dir.path(),
        StoreConfig {
            max_blob_size: 2 * BLOCK_SIZE,
            ..StoreConfig::default()
        },
    );
    let small = random_blob(BLOCK_SIZE, 60);
    let big = random_blob(3 * BLOCK_SIZE, 61);
    store.add_bytes(small.data(), true, at(1)).unwrap();
    assert!(matches!(
        store.add_bytes(big.data(), false, at(1)),
        Err(StoreError::TooLarge { max, .. }) if max == 2 * BLOCK_SIZE
    ));
    assert!(matches!(
        store.begin_fetch(&size_proof(&big), at(1)),
        Err(StoreError::TooLarge { .. })
    ));
    // Nothing of the refused add is left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    store.delete(small.hash()).unwrap();
    assert!(store.list().is_empty());
    assert_eq!(store.used_bytes(), 0);
    assert!(matches!(
        store.delete(small.hash()),
        Err(StoreError::NotFound(_))
    ));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("tmp")]);
}

#[test]
fn adding_a_blob_being_fetched_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path(), StoreConfig::default());
    let source = random_blob(3 * BLOCK_SIZE, 70);
    store.begin_fetch(&size_proof(&source), at(1)).unwrap();
    let added = store.add_bytes(source.data(), false, at(2)).unwrap();
    assert!(added.new);
    assert!(store.info(source.hash()).unwrap().complete);
    assert_eq!(store.used_bytes(), 3 * BLOCK_SIZE + 2 * 64);
    assert_eq!(read_all(&mut store, source.hash()), source.data().to_vec());
    assert_eq!(block_count(source.size()), 3);
}
