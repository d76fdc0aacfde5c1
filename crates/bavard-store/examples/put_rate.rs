//! How fast a [`RedbStore`] takes group-committed writes as it fills (not part of CI): preloads
//! `PRELOAD` records (default 1,000,000; batches of 1,000 without fsync), then times batches of
//! `BATCH` (default 14) new records with fsync, as the node's group committer writes them.
//!
//! `cargo run --release -p bavard-store --example put_rate -- [PRELOAD] [BATCH] [SECONDS] [DIR]`

use std::time::{Duration, Instant};

use bavard_store::{HlcTimestamp, Record, RecordStore as _, RedbStore, StoreConfig, Version};

fn record(prefix: &str, i: u64, hlc: u64) -> Record {
    Record::new(
        format!("{prefix}{i}").into_bytes(),
        vec![b'v'; 100],
        Version::new(HlcTimestamp::new(hlc, 0), b"w".to_vec()),
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let preload: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("PRELOAD"));
    let batch: u64 = args.next().map_or(14, |a| a.parse().expect("BATCH"));
    let seconds: f64 = args.next().map_or(10.0, |a| a.parse().expect("SECONDS"));
    let dir = args.next().map_or_else(
        || std::env::temp_dir().join("bavard-put-rate"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("records.redb");
    let _ = std::fs::remove_file(&path);
    let mut config = StoreConfig::new(b"me".to_vec());
    config.limits.max_records = usize::MAX;
    config.fsync = false;
    let started = Instant::now();
    {
        let store = RedbStore::open(&path, config.clone()).expect("open");
        let mut i = 0;
        while i < preload {
            let n = 1_000.min(preload - i);
            let records = (i..i + n).map(|j| record("pre-", j, 1 + j)).collect();
            store.put_batch(records, 0).expect("preload");
            i += n;
        }
    }
    eprintln!(
        "preloaded {preload} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    config.fsync = true;
    let store = RedbStore::open(&path, config).expect("reopen");
    let started = Instant::now();
    let mut commits = Vec::new();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        let records = (i..i + batch)
            .map(|j| record("run-", j, 10_000_000 + j))
            .collect();
        let t = Instant::now();
        store.put_batch(records, 0).expect("put");
        commits.push(t.elapsed());
        i += batch;
    }
    let wall = started.elapsed().as_secs_f64();
    commits.sort_unstable();
    let q = |p: f64| commits[((commits.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "preload {preload}, batch {batch}: {:.0} records/s, {} commits, commit p50 {:.2} ms p99 {:.2} ms",
        i as f64 / wall,
        commits.len(),
        q(0.5),
        q(0.99)
    );
}
