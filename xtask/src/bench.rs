//! `cargo xtask bench dht`: put/get throughput and latency against a local cluster.
//!
//! Starts a cluster with the `cluster` code (or reuses a running one with `--reuse`), waits until
//! it has joined, then writes K keys through random nodes' HTTP APIs with C client threads, then
//! reads every key back through a different random node, checking the value. Prints throughput
//! and p50/p99 latency per operation, and the errors; tears the cluster down unless reused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cluster::{self, ClusterState, UpArgs};
use crate::http;
use crate::runs::{Teardown, quantile_ms as quantile};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Put/get throughput and latency through the HTTP API of a local cluster.
    Dht(DhtArgs),
    /// The replicated store: quorum writes and reads on a 5-node cluster (issue 5's targets),
    /// with fsync on every commit (default) or off (`--no-fsync`) to show what durability costs.
    Kv(KvArgs),
    /// Anti-entropy: the CPU of an idle round on a converged store of 1,000,000 keys, and a
    /// catch-up of 100,000 keys of 1 KiB (in-process, on the real store).
    Antientropy(crate::antientropy::AntiEntropyArgs),
}

#[derive(Debug, clap::Args)]
struct KvArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Number of keys to put, then get.
    #[arg(long, default_value_t = 2000)]
    keys: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Consistency level of puts and gets (one, quorum, all).
    #[arg(long, default_value = "quorum")]
    consistency: String,
    /// Commit without fsync (benchmark only: a crash may lose acknowledged writes).
    #[arg(long)]
    no_fsync: bool,
    /// Use this bavard binary instead of building one.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Seed of the choice of nodes [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct DhtArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Number of keys to put, then get.
    #[arg(long, default_value_t = 200)]
    keys: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Consistency level of puts and gets (one, quorum, all).
    #[arg(long, default_value = "quorum")]
    consistency: String,
    /// Use the cluster already running in --dir instead of starting one.
    #[arg(long)]
    reuse: bool,
    /// Cluster directory [default: target/cluster with --reuse, else target/bench-cluster].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use this bavard binary instead of building one.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Seed of the choice of nodes [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The figures a run produces.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Report {
    put_ops_s: f64,
    put_p50_ms: f64,
    put_p99_ms: f64,
    get_ops_s: f64,
    get_p50_ms: f64,
    get_p99_ms: f64,
    errors: usize,
    put_errors: usize,
    get_errors: usize,
    nodes: usize,
    keys: usize,
}

/// Runs `cargo xtask bench …`.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Bench::Dht(a) => dht(a, None),
        Bench::Antientropy(a) => crate::antientropy::run(a),
        Bench::Kv(k) => {
            let dir = crate::workspace_root()
                .join("target")
                .join("bench-kv-cluster");
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("bench-kv.toml");
            std::fs::write(&config, format!("[store]\nfsync = {}\n", !k.no_fsync))?;
            let a = DhtArgs {
                nodes: k.nodes,
                keys: k.keys,
                concurrency: k.concurrency,
                value_size: k.value_size,
                consistency: k.consistency.clone(),
                reuse: false,
                dir: Some(dir),
                bin: k.bin.clone(),
                seed: k.seed,
                json: k.json,
            };
            dht(&a, Some(config))
        }
    }
}

fn dht(a: &DhtArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    if a.keys == 0 || a.concurrency == 0 {
        bail!("--keys and --concurrency must be at least 1");
    }
    let label = if config.is_some() { "kv" } else { "dht" };
    let dir = a.dir.clone().unwrap_or_else(|| {
        if a.reuse {
            cluster::default_dir()
        } else {
            crate::workspace_root().join("target").join("bench-cluster")
        }
    });
    let (state, _teardown) = if a.reuse {
        let state = cluster::load(&dir)?;
        cluster::wait_joined(&state, Instant::now() + Duration::from_secs(60))?;
        (state, None)
    } else {
        let up = UpArgs {
            nodes: a.nodes,
            quic: false,
            timeout: 180,
            bin: a.bin.clone(),
            config,
        };
        // Never tear down a cluster that is not ours; arm the teardown before starting, so
        // that a failed start is cleaned up too.
        cluster::ensure_not_running(&dir)?;
        let guard = Teardown(dir.clone());
        (cluster::up(&dir, &up)?, Some(guard))
    };
    let report = measure(&state, a, &dir)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", human(&report, a, label));
    }
    Ok(())
}

/// A small xorshift generator: enough to spread requests over nodes, no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// For each key, the node it is put through and a different node it is read from (the same
/// one only in a one-node cluster).
fn assign_nodes(keys: usize, nodes: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = XorShift::new(seed);
    (0..keys)
        .map(|_| {
            let put = rng.below(nodes);
            let get = if nodes > 1 {
                (put + 1 + rng.below(nodes - 1)) % nodes
            } else {
                put
            };
            (put, get)
        })
        .collect()
}

/// The value written under key `i`: `size` bytes depending on `i`.
fn value(i: usize, size: usize) -> Vec<u8> {
    let tag = format!("{i}:");
    tag.bytes().cycle().take(size).collect()
}

/// Runs `op(i)` for every i in 0..n on `threads` threads; returns the latencies of the
/// successes, the number of failures and the wall time.
fn phase(
    n: usize,
    threads: usize,
    label: &'static str,
    op: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> (Vec<Duration>, usize, Duration, Vec<String>) {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::with_capacity(n));
    let errs = Mutex::new(Vec::new());
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:<5} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let t = Instant::now();
                    match op(i) {
                        Ok(()) => lat.lock().expect("lock").push(t.elapsed()),
                        Err(e) => errs.lock().expect("lock").push(format!("{e:#}")),
                    }
                    bar.inc(1);
                }
            });
        }
    });
    let wall = start.elapsed();
    bar.finish_and_clear();
    let errs = errs.into_inner().expect("lock");
    let mut lat = lat.into_inner().expect("lock");
    lat.sort_unstable();
    (lat, errs.len(), wall, errs)
}

fn measure(state: &ClusterState, a: &DhtArgs, dir: &Path) -> anyhow::Result<Report> {
    let n = state.nodes.len();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let plan = assign_nodes(a.keys, n, seed);
    let run_id = format!("{seed:x}");
    let key = |i: usize| format!("bench-{run_id}-{i}");
    let timeout = Duration::from_secs(30);
    let q = &a.consistency;

    let (put_lat, put_errors, put_wall, put_msgs) = phase(a.keys, a.concurrency, "put", |i| {
        let node = &state.nodes[plan[i].0];
        let path = format!("/v1/kv/{}?consistency={q}", key(i));
        let r = http::request(&node.api, "PUT", &path, &value(i, a.value_size), timeout)?;
        if r.status != 200 {
            bail!(
                "PUT on node {}: HTTP {}: {}",
                node.index,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(())
    });
    let (get_lat, get_errors, get_wall, get_msgs) = phase(a.keys, a.concurrency, "get", |i| {
        let node = &state.nodes[plan[i].1];
        let path = format!("/v1/kv/{}?consistency={q}", key(i));
        let r = http::request(&node.api, "GET", &path, &[], timeout)?;
        if r.status != 200 {
            bail!(
                "GET on node {}: HTTP {}: {}",
                node.index,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        if r.body != value(i, a.value_size) {
            bail!("GET on node {}: wrong value for {}", node.index, key(i));
        }
        Ok(())
    });
    for (what, msgs) in [("put", &put_msgs), ("get", &get_msgs)] {
        for m in msgs.iter().take(5) {
            eprintln!("{what} error: {m}");
        }
        if msgs.len() > 5 {
            eprintln!(
                "… and {} more {what} errors (node logs: {})",
                msgs.len() - 5,
                dir.display()
            );
        }
    }
    let rate = |ok: usize, wall: Duration| ok as f64 / wall.as_secs_f64().max(1e-9);
    Ok(Report {
        put_ops_s: rate(put_lat.len(), put_wall),
        put_p50_ms: quantile(&put_lat, 0.50),
        put_p99_ms: quantile(&put_lat, 0.99),
        get_ops_s: rate(get_lat.len(), get_wall),
        get_p50_ms: quantile(&get_lat, 0.50),
        get_p99_ms: quantile(&get_lat, 0.99),
        errors: put_errors + get_errors,
        put_errors,
        get_errors,
        nodes: n,
        keys: a.keys,
    })
}

fn human(r: &Report, a: &DhtArgs, label: &str) -> String {
    format!(
        "bench {label}: {} nodes, {} keys, {} clients, {}-byte values, consistency {}\n\
         put  {:>8.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}\n\
         get  {:>8.1} ops/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {}\n",
        r.nodes,
        r.keys,
        a.concurrency,
        a.value_size,
        a.consistency,
        r.put_ops_s,
        r.put_p50_ms,
        r.put_p99_ms,
        r.put_errors,
        r.get_ops_s,
        r.get_p50_ms,
        r.get_p99_ms,
        r.get_errors,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read_from_a_node_other_than_the_one_it_was_put_through() {
        let plan = assign_nodes(500, 7, 42);
        assert!(plan.iter().all(|&(p, g)| p < 7 && g < 7 && p != g));
        // The choice spreads over every node.
        for node in 0..7 {
            assert!(plan.iter().any(|&(p, _)| p == node));
            assert!(plan.iter().any(|&(_, g)| g == node));
        }
        assert_eq!(plan, assign_nodes(500, 7, 42), "same seed, same plan");
    }

    #[test]
    fn a_one_node_cluster_reads_from_the_node_it_wrote_to() {
        assert_eq!(assign_nodes(3, 1, 9), [(0, 0), (0, 0), (0, 0)]);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&samples, 0.5), 50.0);
        assert_eq!(quantile(&samples, 0.99), 99.0);
        assert_eq!(quantile(&[ms(7)], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn values_have_the_requested_size_and_differ_per_key() {
        assert_eq!(value(3, 100).len(), 100);
        assert_eq!(value(3, 0).len(), 0);
        assert_ne!(value(1, 10), value(2, 10));
    }

    #[test]
    fn the_json_report_has_the_documented_fields() {
        let r = Report {
            put_ops_s: 1.0,
            put_p50_ms: 2.0,
            put_p99_ms: 3.0,
            get_ops_s: 4.0,
            get_p50_ms: 5.0,
            get_p99_ms: 6.0,
            errors: 0,
            put_errors: 0,
            get_errors: 0,
            nodes: 20,
            keys: 200,
        };
        let v = serde_json::to_value(&r).unwrap();
        for f in [
            "put_ops_s",
            "put_p50_ms",
            "put_p99_ms",
            "get_ops_s",
            "get_p50_ms",
            "get_p99_ms",
            "errors",
            "nodes",
            "keys",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
    }
}
