//! `cargo xtask bench antientropy`: what an anti-entropy round costs, measured on the real store.
//!
//! Two figures (issue 12):
//!
//! 1. **An idle round**: two `RedbStore`s holding the same `--keys` records (1,000,000 by
//!    default; built once under `--dir` and reused), both replicas of every key (the worst case:
//!    all 65,536 leaves shared); `--rounds` rounds between them (100), the initiator and the
//!    responder in this process, timed in wall time per round and in CPU time over all rounds
//!    (this thread's, from `/proc/thread-self/schedstat`, whose resolution may be a scheduler
//!    tick: hence the average over many rounds).
//! 2. **A catch-up**: a replica that missed `--catch-up` writes of `--value-size` bytes (100,000
//!    of 1 KiB by default) pulls them from one that has them, round after round, until a round
//!    finds nothing; time, rounds, requests, bytes. (The same over real processes and the network
//!    is `cargo xtask scenario outage`.)
//!
//! Run with `cargo run --release -p bavard-replica --example antientropy -- [--json]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bavard_replica::{Initiator, Placement, Request, Response, Step, StoreOutcome, SyncConfig};
use bavard_routing::Key;
use bavard_store::{HlcTimestamp, Record, RecordStore, RedbStore, StoreConfig, Version};

const NOW: u64 = 1_700_000_000_000;

struct Args {
    keys: usize,
    catch_up: usize,
    value_size: usize,
    rounds: usize,
    dir: PathBuf,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        keys: 1_000_000,
        catch_up: 100_000,
        value_size: 1024,
        rounds: 100,
        dir: PathBuf::from("target/bench-antientropy"),
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--keys" => a.keys = number(value("--keys")?)?,
            "--catch-up" => a.catch_up = number(value("--catch-up")?)?,
            "--value-size" => a.value_size = number(value("--value-size")?)?,
            "--rounds" => a.rounds = number(value("--rounds")?)?.max(1),
            "--dir" => a.dir = PathBuf::from(value("--dir")?),
            "--json" => a.json = true,
            "-h" | "--help" => {
                return Err(
                    "usage: antientropy [--keys N] [--catch-up N] [--value-size B] \
                            [--rounds R] [--dir DIR] [--json]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// This thread's CPU time (Linux), or `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn record(i: usize, value_size: usize, prefix: &str) -> Record {
    Record::new(
        format!("{prefix}{i:08}").into_bytes(),
        vec![(i % 251) as u8; value_size],
        Version::new(HlcTimestamp::new(NOW, 0), b"bench-writer".to_vec()),
    )
}

/// Opens `path` holding exactly `n` records `prefix0…`, writing them if it does not yet.
fn filled(path: &Path, n: usize, value_size: usize, prefix: &str) -> RedbStore {
    let mut config = StoreConfig::new(b"bench".to_vec());
    config.limits.max_records = n.max(1) * 2;
    config.limits.max_value_bytes = value_size.max(1024);
    let store = RedbStore::open(path, config.clone()).expect("open the store");
    if store.len().expect("count") == n {
        return store;
    }
    drop(store);
    let _ = std::fs::remove_file(path);
    let store = RedbStore::open(path, config).expect("create the store");
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
        let batch = chunk
            .iter()
            .map(|&i| record(i, value_size, prefix))
            .collect();
        store.put_batch(batch, NOW).expect("fill");
    }
    eprintln!(
        "built {} ({n} records) in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    store
}

/// Two members holding every key (N = 3 over 2 members).
fn placement() -> Arc<Placement<u64>> {
    Arc::new(Placement::new(
        (0..2u64).map(|i| (i, Key::hash(&i.to_be_bytes()))),
        3,
    ))
}

#[derive(Default)]
struct Round {
    requests: usize,
    bytes: usize,
    pulled: usize,
    pushed: usize,
    leaves_differing: usize,
}

/// One round of `mine` (member 0) with `theirs` (member 1).
fn round(placement: &Arc<Placement<u64>>, mine: &RedbStore, theirs: &RedbStore) -> Round {
    let config = SyncConfig::default();
    let mut init = Initiator::new(placement.clone(), 0u64, 1u64, config.clone());
    loop {
        match init.next(mine, NOW).expect("round step") {
            Step::Send(req) => {
                let resp = match req {
                    Request::Store { records, .. } => {
                        let results = theirs
                            .put_batch(records, NOW)
                            .expect("push")
                            .into_iter()
                            .map(|_| StoreOutcome::Stored)
                            .collect();
                        Response::Store { results }
                    }
                    req => bavard_replica::answer(req, theirs, &config, NOW).expect("answer"),
                };
                init.handle_response(resp).expect("response");
            }
            Step::Apply(records) => {
                let n = records.len();
                mine.put_batch(records, NOW).expect("apply");
                init.applied(n);
            }
            Step::Done(stats) => {
                return Round {
                    requests: stats.requests,
                    bytes: stats.bytes,
                    pulled: stats.keys_pulled,
                    pushed: stats.keys_pushed,
                    leaves_differing: stats.leaves_differing,
                };
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&a.dir).expect("create the bench directory");
    let placement = placement();

    // 1. Idle, converged round.
    let left = filled(&a.dir.join("idle-a.redb"), a.keys, 100, "k");
    let right = filled(&a.dir.join("idle-b.redb"), a.keys, 100, "k");
    let mut wall_ms = Vec::new();
    let mut idle = Round::default();
    let cpu_before = thread_cpu();
    for _ in 0..a.rounds {
        let w0 = Instant::now();
        idle = round(&placement, &left, &right);
        wall_ms.push(w0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            idle.pulled + idle.pushed,
            0,
            "identical stores exchange nothing"
        );
    }
    let cpu_per_round_ms = match (cpu_before, thread_cpu()) {
        (Some(c0), Some(c1)) => Some((c1 - c0).as_secs_f64() * 1e3 / a.rounds as f64),
        _ => None,
    };
    wall_ms.sort_by(f64::total_cmp);
    drop((left, right));

    // 2. Catch-up.
    let source = filled(
        &a.dir.join("catchup-source.redb"),
        a.catch_up,
        a.value_size,
        "c",
    );
    let behind_path = a.dir.join("catchup-behind.redb");
    let _ = std::fs::remove_file(&behind_path);
    let mut config = StoreConfig::new(b"behind".to_vec());
    config.limits.max_records = a.catch_up.max(1) * 2;
    config.limits.max_value_bytes = a.value_size.max(1024);
    let behind = RedbStore::open(&behind_path, config).expect("open");
    let started = Instant::now();
    let (mut rounds, mut requests, mut bytes, mut moved) = (0usize, 0usize, 0usize, 0usize);
    loop {
        let r = round(&placement, &behind, &source);
        rounds += 1;
        requests += r.requests;
        bytes += r.bytes;
        moved += r.pulled;
        if r.pulled == 0 && r.leaves_differing == 0 {
            break;
        }
        assert!(rounds < 10_000, "the catch-up does not converge");
    }
    let catch_up_s = started.elapsed().as_secs_f64();
    let held = behind.len().expect("count");
    assert_eq!(held, a.catch_up, "every key caught up");

    if a.json {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.3}"));
        println!(
            "{{\"keys\":{},\"idle_rounds\":{},\"idle_round_cpu_ms\":{},\
             \"idle_round_wall_ms_max\":{:.3},\"idle_round_wall_ms_p50\":{:.3},\
             \"idle_round_requests\":{},\"idle_round_bytes\":{},\"catch_up_keys\":{},\
             \"catch_up_value_size\":{},\"catch_up_s\":{:.3},\"catch_up_rounds\":{},\
             \"catch_up_requests\":{},\"catch_up_bytes\":{},\"catch_up_keys_moved\":{},\
             \"keys_missing\":{}}}",
            a.keys,
            a.rounds,
            opt(cpu_per_round_ms),
            percentile(&wall_ms, 1.0),
            percentile(&wall_ms, 0.5),
            idle.requests,
            idle.bytes,
            a.catch_up,
            a.value_size,
            catch_up_s,
            rounds,
            requests,
            bytes,
            moved,
            a.catch_up - held,
        );
    } else {
        println!(
            "idle round, {} keys on both replicas (all 65,536 leaves shared), {} rounds:",
            a.keys, a.rounds
        );
        match cpu_per_round_ms {
            Some(cpu) => println!(
                "  cpu {cpu:.3} ms per round; wall p50 {:.3} ms, max {:.3} ms; {} request(s), \
                 {} bytes",
                percentile(&wall_ms, 0.5),
                percentile(&wall_ms, 1.0),
                idle.requests,
                idle.bytes
            ),
            None => println!(
                "  wall p50 {:.3} ms (no thread CPU clock here); {} request(s), {} bytes",
                percentile(&wall_ms, 0.5),
                idle.requests,
                idle.bytes
            ),
        }
        println!(
            "catch-up of {} keys of {} bytes: {catch_up_s:.2} s, {rounds} rounds, {requests} \
             requests, {:.1} MB, {moved} keys moved, {} missing",
            a.catch_up,
            a.value_size,
            bytes as f64 / 1e6,
            a.catch_up - held
        );
    }
}
